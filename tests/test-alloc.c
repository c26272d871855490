/* SPDX-License-Identifier: MIT */
/* Allocator, white-box: per-thread caches, the reclaimer, grace periods. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "alloc.h"
#include "rawctx.h"
#include "internal.h"
#include "util.h"

/*
 * Only alloc.h's functions are used: contexts are opaque memory here, and
 * where a context came from is seen through rctx_alloc_outstanding()
 * (contexts taken from malloc and not yet returned): an allocation that
 * leaves it unchanged reused a context.
 */

/* A set of contexts, for "came from there" checks. */
struct cset {
	struct rctx **v;
	size_t n, cap;
};

static void
cs_add(struct cset *s, struct rctx *c)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		WCHECK(s->v != NULL);
	}
	s->v[s->n++] = c;
}

/* Remove c if present; true if it was. */
static bool
cs_take(struct cset *s, struct rctx *c)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i] == c) {
			s->v[i] = s->v[--s->n];
			return true;
		}
	}
	return false;
}

static void
cs_free_now(struct cset *s)
{
	for (size_t i = 0; i < s->n; i++)
		rctx_ctx_free_now(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Start from nothing: every cached context of this thread and the pool
 * back to malloc, and nothing outstanding (no other thread holds any). */
static int
fresh(void **state)
{
	(void)state;
	rctx_alloc_shutdown();
	return rctx_alloc_outstanding() == 0 ? 0 : -1;
}

static struct rctx *
xalloc(void)
{
	struct rctx *c = raw_ctx_alloc();

	WCHECK(c != NULL);
	return c;
}

/* ------------------------------------------------------ per-thread cache */

/* A context freed at once is reused by the same thread, not malloc'd. */
static void
test_cache_reuse_same_thread(void **state)
{
	enum { N = 3 };
	struct cset got = { 0 }, again = { 0 };

	(void)state;
	for (int i = 0; i < N; i++)
		cs_add(&got, xalloc());
	assert_int_equal(rctx_alloc_outstanding(), N);
	for (size_t i = 0; i < got.n; i++)
		rctx_ctx_free_now(got.v[i]);
	for (int i = 0; i < N; i++) {
		struct rctx *c = xalloc();

		assert_true(cs_take(&got, c));
		cs_add(&again, c);
	}
	assert_int_equal(rctx_alloc_outstanding(), N);
	cs_free_now(&again);
	free(got.v);
	rctx_alloc_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
}

struct worker {
	int nfree_now, nfree_rcu;
	bool flush_and_wait; /* flush while alive, then wait for go */
	struct gate flushed, go;
	struct cset made;
};

/* Allocate, give back (at once or after a grace period), then either
 * exit (the thread-exit hand-off) or flush and stay alive. */
static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct rctx *now[RCTX_CACHE_MAX + RCTX_FREE_BATCH];
	struct rctx *rcu[RCTX_FREE_BATCH];

	WCHECK(w->nfree_now <= (int)(sizeof(now) / sizeof(now[0])));
	WCHECK(w->nfree_rcu < RCTX_FREE_BATCH); /* stays pending */
	for (int i = 0; i < w->nfree_now; i++)
		cs_add(&w->made, now[i] = xalloc());
	for (int i = 0; i < w->nfree_rcu; i++)
		cs_add(&w->made, rcu[i] = xalloc());
	for (int i = 0; i < w->nfree_now; i++)
		rctx_ctx_free_now(now[i]);
	for (int i = 0; i < w->nfree_rcu; i++)
		rctx_ctx_free_rcu(rcu[i]);
	if (w->flush_and_wait) {
		if (w->nfree_now <= RCTX_CACHE_MAX)
			rctx_alloc_thread_flush();
		gate_pass(&w->flushed);
		gate_pass(&w->go);
	}
	return NULL;
}

/*
 * Take contexts on this thread until one has to come from malloc; each
 * one reused must be one of `from` (removed from it). All go to `kept`,
 * the malloc'd one too (so that it is not reused by the next call).
 * Returns how many were reused.
 */
static size_t
take_until_malloc(struct cset *from, struct cset *kept)
{
	long out = rctx_alloc_outstanding();
	size_t n = 0;

	for (;;) {
		struct rctx *c = xalloc();

		cs_add(kept, c);
		if (rctx_alloc_outstanding() != out)
			return n;
		assert_true(cs_take(from, c));
		n++;
	}
}

/* At thread exit the cache and the pending batch go to the shared pool:
 * another thread then reuses all of them, none from malloc. */
static void
test_cache_handed_over_at_thread_exit(void **state)
{
	struct worker w = { .nfree_now = 40, .nfree_rcu = 10 };
	struct cset kept = { 0 };
	pthread_t th;

	(void)state;
	xpthread_create(&th, worker_main, &w);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rctx_alloc_outstanding(), 50);
	rctx_alloc_barrier(); /* the pending ten past their grace period */
	assert_int_equal(take_until_malloc(&w.made, &kept), 50);
	assert_int_equal(w.made.n, 0);
	assert_int_equal(rctx_alloc_outstanding(), 50 + 1);
	cs_free_now(&kept);
	free(w.made.v);
}

/* rctx_alloc_thread_flush hands everything over while the thread lives. */
static void
test_thread_flush_hands_over(void **state)
{
	struct worker w = { .nfree_now = 30,
			    .nfree_rcu = 7,
			    .flush_and_wait = true };
	struct cset kept = { 0 };
	pthread_t th;

	(void)state;
	gate_init(&w.flushed, 2);
	gate_init(&w.go, 2);
	xpthread_create(&th, worker_main, &w);
	gate_pass(&w.flushed);
	rctx_alloc_barrier();
	assert_int_equal(take_until_malloc(&w.made, &kept), 37);
	assert_int_equal(w.made.n, 0);
	gate_pass(&w.go);
	assert_int_equal(pthread_join(th, NULL), 0);
	/* nothing was left in its cache to hand over at exit */
	assert_int_equal(take_until_malloc(&w.made, &kept), 0);
	assert_int_equal(rctx_alloc_outstanding(), 37 + 2);
	cs_free_now(&kept);
	free(w.made.v);
}

/* A thread's cache is bounded: beyond RCTX_CACHE_MAX, freed contexts
 * reach the pool while the thread still lives (a timer owner frees far
 * more than it allocates); the rest follow at its exit. */
static void
test_cache_bounded_overflow_to_pool(void **state)
{
	enum { N = RCTX_CACHE_MAX + RCTX_FREE_BATCH / 2 };
	struct worker w = { .nfree_now = N, .flush_and_wait = true };
	struct cset kept = { 0 };
	pthread_t th;
	size_t before_exit, at_exit;

	(void)state;
	gate_init(&w.flushed, 2);
	gate_init(&w.go, 2);
	xpthread_create(&th, worker_main, &w);
	gate_pass(&w.flushed); /* it did not flush: N > RCTX_CACHE_MAX */
	before_exit = take_until_malloc(&w.made, &kept);
	assert_true(before_exit >= (size_t)(N - RCTX_CACHE_MAX));
	assert_true(before_exit < (size_t)N);
	gate_pass(&w.go);
	assert_int_equal(pthread_join(th, NULL), 0);
	at_exit = take_until_malloc(&w.made, &kept);
	assert_int_equal(before_exit + at_exit, N);
	assert_int_equal(w.made.n, 0);
	assert_int_equal(rctx_alloc_outstanding(), N + 2);
	cs_free_now(&kept);
	free(w.made.v);
}

/* A thread that takes one context from the pool while another waits. */
struct taker {
	struct gate took, go;
};

static void *
taker_main(void *arg)
{
	struct taker *t = arg;
	struct rctx *c = xalloc();

	gate_pass(&t->took);
	gate_pass(&t->go);
	rctx_ctx_free_now(c);
	return NULL;
}

/*
 * A thread refilling its empty cache takes about RCTX_CACHE_MAX / 2 from
 * the pool and leaves the rest to others. It used to take the whole pool:
 * two threads allocating at once then traded it back and forth, each
 * context crossing cores (issue 13); here the other thread found the pool
 * empty and reused none while the taker lived.
 */
static void
test_refill_leaves_the_rest(void **state)
{
	enum { N = 4 * RCTX_CACHE_MAX };
	struct cset made = { 0 }, kept = { 0 };
	struct taker t;
	pthread_t th;
	size_t while_alive, at_exit;

	(void)state;
	for (int i = 0; i < N; i++)
		cs_add(&made, xalloc());
	for (size_t i = 0; i < made.n; i++)
		rctx_ctx_free_now(made.v[i]);
	rctx_alloc_thread_flush(); /* all N in the pool, none cached here */
	gate_init(&t.took, 2);
	gate_init(&t.go, 2);
	xpthread_create(&th, taker_main, &t);
	gate_pass(&t.took);
	while_alive = take_until_malloc(&made, &kept);
	/* one refill keeps at most RCTX_CACHE_MAX / 2 plus one batch, and a
	 * batch (a flushed cache) holds at most RCTX_CACHE_MAX */
	assert_true(while_alive + RCTX_CACHE_MAX / 2 + RCTX_CACHE_MAX >= N);
	gate_pass(&t.go);
	assert_int_equal(pthread_join(th, NULL), 0);
	at_exit = take_until_malloc(&made, &kept);
	assert_int_equal(while_alive + at_exit, N);
	assert_int_equal(rctx_alloc_outstanding(), N + 2);
	cs_free_now(&kept);
	free(made.v);
}

/* --------------------------------------------------------- reclaimer */

/* A full batch of deferred frees goes to the reclaimer thread, which
 * returns it to the pool by itself (no barrier from us). */
static void
test_reclaimer_returns_batches(void **state)
{
	struct cset made = { 0 }, kept = { 0 };
	long b0 = rctx_alloc_reclaimer_batches();
	rctx_time_t give_up = rctx_now() + 60 * RCTX_SEC; /* hang guard */

	(void)state;
	for (int i = 0; i < RCTX_FREE_BATCH; i++)
		cs_add(&made, xalloc());
	for (size_t i = 0; i < made.n; i++)
		rctx_ctx_free_rcu(made.v[i]); /* the last one flushes */
	while (rctx_alloc_reclaimer_batches() == b0 && rctx_now() < give_up) {
		struct timespec ts = { 0, RCTX_MSEC };

		nanosleep(&ts, NULL);
	}
	assert_true(rctx_alloc_reclaimer_batches() > b0);
	assert_int_equal(take_until_malloc(&made, &kept), RCTX_FREE_BATCH);
	assert_int_equal(rctx_alloc_outstanding(), RCTX_FREE_BATCH + 1);
	cs_free_now(&kept);
	free(made.v);
}

/* Many threads allocate and free both ways; after rctx_alloc_shutdown
 * every context has gone back to malloc. */
struct churn {
	uint64_t seed;
	long ops;
};

static void *
churn_main(void *arg)
{
	struct churn *ch = arg;
	struct rctx *held[64];
	int n = 0;

	for (long k = 0; k < ch->ops; k++) {
		uint64_t r = rnd(&ch->seed);

		if (n < 64 && (n == 0 || r % 3 != 0)) {
			held[n++] = xalloc();
			continue;
		}
		int i = (int)((r >> 8) % (uint64_t)n);
		struct rctx *c = held[i];

		held[i] = held[--n];
		if (r & 0x10000)
			rctx_ctx_free_rcu(c);
		else
			rctx_ctx_free_now(c);
	}
	while (n > 0)
		rctx_ctx_free_rcu(held[--n]);
	return NULL;
}

static void
test_outstanding_zero_after_shutdown(void **state)
{
	enum { THREADS = 4 };
	struct churn ch[THREADS];

	(void)state;
	for (int i = 0; i < THREADS; i++)
		ch[i] = (struct churn){ rnd_seed(100 + (uint64_t)i),
					SCALED(200000) };
	tg_run(THREADS, churn_main, ch, sizeof(ch[0]));
	assert_true(rctx_alloc_outstanding() > 0);
	rctx_alloc_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
	/* and the allocator works again afterwards */
	struct rctx *c = xalloc();

	assert_int_equal(rctx_alloc_outstanding(), 1);
	rctx_ctx_free_rcu(c);
	rctx_alloc_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
}

/* The whole library: contexts with timers and after-funcs, released,
 * then rctx_shutdown leaves nothing outstanding. */
static void
test_library_shutdown_returns_everything(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *kids[100];

	(void)state;
	assert_non_null(root);
	for (int i = 0; i < 100; i++) {
		kids[i] = i % 2 ? rctx_with_timeout(root, (i % 3) * RCTX_MSEC)
				: rctx_with_cancel(i ? kids[i - 1] : root);
		assert_non_null(kids[i]);
	}
	assert_true(rctx_alloc_outstanding() >= 101);
	assert_int_equal(rctx_cancel(root), 0);
	for (int i = 99; i >= 0; i--)
		rctx_release(kids[i]);
	rctx_release(root);
	assert_true(shutdown_clean());
}

/* ---------------------------------------------- grace periods (I1, E) */

struct reader {
	struct gate in, out;
};

static void *
reader_main(void *arg)
{
	struct reader *r = arg;

	rcu_read_lock();
	gate_pass(&r->in);
	gate_pass(&r->out);
	rcu_read_unlock();
	return NULL;
}

/*
 * alloc.c I1, the allocator's half of tree.c's order E: a context given
 * to rctx_ctx_free_rcu is not reused while a reader that entered its RCU
 * read-side section before the free is still inside it, however hard the
 * freeing thread allocates and however long it waits; once the reader
 * leaves, the context comes back.
 */
static void
test_free_rcu_waits_for_readers(void **state)
{
	struct reader r;
	struct cset probes = { 0 }, back = { 0 }, mine = { 0 };
	struct rctx *c;
	long b0;
	pthread_t th;

	(void)state;
	gate_init(&r.in, 2);
	gate_init(&r.out, 2);
	xpthread_create(&th, reader_main, &r);
	gate_pass(&r.in); /* the reader is inside its section */
	c = xalloc();
	cs_add(&mine, c);
	rctx_ctx_free_rcu(c);
	rctx_alloc_flush(); /* to the reclaimer, which now waits */
	b0 = rctx_alloc_reclaimer_batches();
	for (int round = 0; round < 20; round++) {
		struct timespec ts = { 0, 2 * RCTX_MSEC };

		/* more than a cache and a batch: any pool content shows */
		for (int i = 0; i < RCTX_CACHE_MAX + RCTX_FREE_BATCH; i++) {
			struct rctx *p = xalloc();

			assert_ptr_not_equal(p, c);
			cs_add(&probes, p);
		}
		nanosleep(&ts, NULL);
	}
	/* the reclaimer has not finished a round: its grace period waits */
	assert_int_equal(rctx_alloc_reclaimer_batches(), b0);
	gate_pass(&r.out);
	assert_int_equal(pthread_join(th, NULL), 0);
	rctx_alloc_barrier();
	assert_int_equal(take_until_malloc(&mine, &back), 1);
	assert_ptr_equal(back.v[0], c);
	cs_free_now(&back);
	cs_free_now(&probes);
	free(mine.v);
}

/* A context freed at once (never visible to a reader) is reused at once,
 * even while a reader is inside its section. */
static void
test_free_now_needs_no_grace_period(void **state)
{
	struct reader r;
	struct rctx *c, *d;
	pthread_t th;

	(void)state;
	gate_init(&r.in, 2);
	gate_init(&r.out, 2);
	xpthread_create(&th, reader_main, &r);
	gate_pass(&r.in);
	c = xalloc();
	rctx_ctx_free_now(c);
	d = xalloc();
	assert_ptr_equal(d, c);
	assert_int_equal(rctx_alloc_outstanding(), 1);
	gate_pass(&r.out);
	assert_int_equal(pthread_join(th, NULL), 0);
	rctx_ctx_free_now(d);
}

/* ------------------------------------------------------------- trim */

enum { SPIKE = 8 * RCTX_POOL_RESERVE };

/* A spike: SPIKE contexts from malloc, half freed at once, half through
 * RCU, and all of them in the pool at the end (this thread keeps none). */
static void
spike_to_pool(void)
{
	struct rctx **v = calloc(SPIKE, sizeof(*v));

	WCHECK(v != NULL);
	for (int i = 0; i < SPIKE; i++)
		v[i] = xalloc();
	assert_int_equal(rctx_alloc_outstanding(), SPIKE);
	for (int i = 0; i < SPIKE; i++) {
		if (i % 2)
			rctx_ctx_free_rcu(v[i]);
		else
			rctx_ctx_free_now(v[i]);
	}
	free(v);
	rctx_alloc_barrier();	   /* the deferred half reaches the pool */
	rctx_alloc_thread_flush(); /* and this thread's cache */
	assert_int_equal(rctx_alloc_cached(), 0);
}

/* A refill takes one batch, not the whole pool: after a spike the
 * thread's cache stays within RCTX_CACHE_MAX and the rest stays shared. */
static void
test_refill_bounded(void **state)
{
	struct rctx *c;

	(void)state;
	rctx_alloc_trim_quiet(-1);
	spike_to_pool();
	assert_int_equal(rctx_alloc_pool_count(), SPIKE);
	c = xalloc();
	assert_int_equal(rctx_alloc_outstanding(), SPIKE); /* reused */
	assert_true(rctx_alloc_cached() < RCTX_CACHE_MAX);
	assert_int_equal(rctx_alloc_pool_count() + rctx_alloc_cached() + 1,
			 SPIKE);
	rctx_ctx_free_now(c);
	rctx_alloc_trim_quiet(RCTX_TRIM_QUIET);
}

/* A trim frees the pool down to its reserve, which then still serves
 * allocations without malloc. */
static void
test_trim_keeps_reserve(void **state)
{
	long freed, left;
	struct cset got = { 0 };

	(void)state;
	rctx_alloc_trim_quiet(-1);
	spike_to_pool();
	freed = rctx_alloc_trim();
	left = rctx_alloc_pool_count();
	assert_true(left >= RCTX_POOL_RESERVE);
	assert_true(left <= RCTX_POOL_RESERVE + RCTX_CACHE_MAX);
	assert_int_equal(freed, SPIKE - left);
	assert_int_equal(rctx_alloc_outstanding(), left);
	assert_int_equal(rctx_alloc_trim(), 0); /* nothing beyond the reserve */
	for (long i = 0; i < left; i++)
		cs_add(&got, xalloc());
	assert_int_equal(rctx_alloc_outstanding(), left); /* no malloc */
	assert_int_equal(rctx_alloc_pool_count(), 0);
	cs_free_now(&got);
	rctx_alloc_trim_quiet(RCTX_TRIM_QUIET);
}

/* Left alone, the reclaimer trims the pool by itself once no thread has
 * asked it for contexts for a while (RCTX_TRIM_QUIET). */
static void
test_reclaimer_trims_when_quiet(void **state)
{
	long t0 = rctx_alloc_trimmed(), left; /* fresh: only ours to trim */
	rctx_time_t give_up = rctx_now() + 60 * RCTX_SEC; /* hang guard */

	(void)state;
	spike_to_pool();
	while (rctx_alloc_pool_count() > RCTX_POOL_RESERVE + RCTX_CACHE_MAX &&
	       rctx_now() < give_up) {
		struct timespec ts = { 0, 10 * RCTX_MSEC };

		nanosleep(&ts, NULL);
	}
	left = rctx_alloc_pool_count();
	assert_true(left >= RCTX_POOL_RESERVE);
	assert_true(left <= RCTX_POOL_RESERVE + RCTX_CACHE_MAX);
	assert_int_equal(rctx_alloc_outstanding(), left);
	assert_int_equal(rctx_alloc_trimmed() - t0, SPIKE - left);
}

/* Threads allocate and free bursts larger than the reserve while the
 * reclaimer trims as soon as it is idle and this thread trims too: no
 * context is lost or freed twice (ASan, TSan), none is left over. */
struct burst {
	int rounds;
	_Atomic int *running;
};

static void *
burst_main(void *arg)
{
	struct burst *b = arg;
	struct rctx **v = calloc(RCTX_POOL_RESERVE, sizeof(*v));

	WCHECK(v != NULL);
	for (int r = 0; r < b->rounds; r++) {
		for (int i = 0; i < RCTX_POOL_RESERVE; i++)
			v[i] = xalloc();
		for (int i = 0; i < RCTX_POOL_RESERVE; i++) {
			if ((i + r) % 3)
				rctx_ctx_free_rcu(v[i]);
			else
				rctx_ctx_free_now(v[i]);
		}
		rctx_alloc_thread_flush();
	}
	free(v);
	atomic_fetch_sub(b->running, 1);
	return NULL;
}

static void
test_trim_during_churn(void **state)
{
	enum { THREADS = 4 };
	struct burst b[THREADS];
	pthread_t th[THREADS];
	_Atomic int running = THREADS;
	long left;

	(void)state;
	rctx_alloc_trim_quiet(0);
	for (int i = 0; i < THREADS; i++) {
		b[i] = (struct burst){ SCALED(20), &running };
		xpthread_create(&th[i], burst_main, &b[i]);
	}
	while (atomic_load(&running) > 0)
		(void)rctx_alloc_trim();
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	rctx_alloc_trim_quiet(-1);
	rctx_alloc_barrier();
	(void)rctx_alloc_trim();
	left = rctx_alloc_pool_count();
	assert_true(left <= RCTX_POOL_RESERVE + RCTX_CACHE_MAX);
	assert_int_equal(rctx_alloc_outstanding(), left + rctx_alloc_cached());
	rctx_alloc_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
	rctx_alloc_trim_quiet(RCTX_TRIM_QUIET);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cache_reuse_same_thread, fresh),
		cmocka_unit_test_setup(test_cache_handed_over_at_thread_exit,
				       fresh),
		cmocka_unit_test_setup(test_thread_flush_hands_over, fresh),
		cmocka_unit_test_setup(test_cache_bounded_overflow_to_pool,
				       fresh),
		cmocka_unit_test_setup(test_refill_leaves_the_rest, fresh),
		cmocka_unit_test_setup(test_reclaimer_returns_batches, fresh),
		cmocka_unit_test_setup(test_outstanding_zero_after_shutdown,
				       fresh),
		cmocka_unit_test_setup(test_library_shutdown_returns_everything,
				       fresh),
		cmocka_unit_test_setup(test_free_rcu_waits_for_readers, fresh),
		cmocka_unit_test_setup(test_free_now_needs_no_grace_period,
				       fresh),
		cmocka_unit_test_setup(test_refill_bounded, fresh),
		cmocka_unit_test_setup(test_trim_keeps_reserve, fresh),
		cmocka_unit_test_setup(test_reclaimer_trims_when_quiet, fresh),
		cmocka_unit_test_setup(test_trim_during_churn, fresh),
	};

	return RUN_TESTS(tests);
}
