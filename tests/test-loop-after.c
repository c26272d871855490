/* SPDX-License-Identifier: MIT */
/* Loop after-funcs: callbacks on the loop's own thread, stop, loop free. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "loopafter.h"
#include "rctx.h"
#include "util.h" /* WCHECK: checks off the cmocka thread */

/*
 * Count the process's mallocs inside a window (glibc: the executable's
 * malloc interposes the library's). Not under sanitizers, which bring
 * their own allocator.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(RCTX_TSAN)
#define LA_NO_MALLOC_COUNT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define LA_NO_MALLOC_COUNT 1
#endif
#endif
#ifndef LA_NO_MALLOC_COUNT
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
static _Atomic long n_mallocs;
static _Atomic bool counting;

void *
malloc(size_t n)
{
	if (atomic_load_explicit(&counting, memory_order_relaxed))
		atomic_fetch_add(&n_mallocs, 1);
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t m)
{
	if (atomic_load_explicit(&counting, memory_order_relaxed))
		atomic_fetch_add(&n_mallocs, 1);
	return __libc_calloc(n, m);
}

void *
realloc(void *p, size_t n)
{
	if (atomic_load_explicit(&counting, memory_order_relaxed))
		atomic_fetch_add(&n_mallocs, 1);
	return __libc_realloc(p, n);
}
#endif

#ifndef RCTX_STRESS_SCALE
#define RCTX_STRESS_SCALE 1
#endif

struct rec {
	rctx_after_t reg;
	_Atomic int ran;
	_Atomic int finished;
	pthread_t thread;
	rctx_time_t at;	       /* rctx_now() when fn ran */
	_Atomic int inside;    /* stop called from within fn: its result */
	struct rec *stop_next; /* fn stops this one (or NULL) */
	_Atomic int next_stopped;
	rctx_loop_t *loop; /* for fns that wait for a stopper */
};

static void
on_done(void *arg)
{
	struct rec *r = arg;

	r->thread = pthread_self();
	r->at = rctx_now();
	atomic_fetch_add(&r->ran, 1);
	if (r->stop_next)
		atomic_store(&r->next_stopped,
			     rctx_after_stop(&r->stop_next->reg) ? 1 : 0);
	atomic_store(&r->finished, 1);
}

static bool
fd_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static int
teardown(void **state)
{
	(void)state;
	rctx_shutdown();
	return 0;
}

static void *
cancel_main(void *arg)
{
	WCHECK(rctx_cancel(arg) == 0);
	return NULL;
}

static void
cancel_elsewhere(rctx_t *ctx)
{
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, cancel_main, ctx), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
}

static void
test_null(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };

	(void)state;
	assert_non_null(loop);
	assert_int_equal(rctx_loop_after_func(NULL, ctx, &r.reg, on_done, &r),
			 -EINVAL);
	assert_int_equal(rctx_loop_after_func(loop, NULL, &r.reg, on_done, &r),
			 -EINVAL);
	assert_int_equal(rctx_loop_after_func(loop, ctx, NULL, on_done, &r),
			 -EINVAL);
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, NULL, &r),
			 -EINVAL);
	assert_false(rctx_after_stop(NULL));
	assert_int_equal(refs_of(ctx), 1);
	rctx_release(ctx);
	rctx_loop_free(loop);
}

/* Cancelled on another thread: fn waits for the owner's rctx_loop_run. */
static void
test_runs_on_owner(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };
	int fd;

	(void)state;
	assert_non_null(loop);
	fd = rctx_loop_fd(loop);
	(void)rctx_loop_next(loop); /* empties the fd */
	assert_false(fd_readable(fd, 0));
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, on_done, &r),
			 0);
	assert_int_equal(refs_of(ctx), 2); /* the registration holds one */
	assert_false(fd_readable(fd, 0));  /* no wake while not done */
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 0);
	cancel_elsewhere(ctx);
	assert_int_equal(atomic_load(&r.ran), 0); /* not on the canceller */
	assert_true(fd_readable(fd, 0));
	/* rctx_loop_next empties the fd, but a call still waits. */
	(void)rctx_loop_timeout_ms(loop);
	assert_true(fd_readable(fd, 0));
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 1);
	assert_int_equal(atomic_load(&r.ran), 1);
	assert_true(pthread_equal(r.thread, pthread_self()));
	assert_int_equal(refs_of(ctx), 1);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 0);
	(void)rctx_loop_next(loop);
	assert_false(fd_readable(fd, 0)); /* nothing waits any more */
	assert_false(rctx_after_stop(&r.reg));
	assert_int_equal(atomic_load(&r.ran), 1);
	rctx_release(ctx);
	rctx_loop_free(loop);
}

/* Already done: not inside the call, at the next rctx_loop_run. */
static void
test_already_done(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };

	(void)state;
	assert_non_null(loop);
	(void)rctx_loop_next(loop);
	assert_int_equal(rctx_cancel(ctx), 0);
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, on_done, &r),
			 0);
	assert_int_equal(atomic_load(&r.ran), 0);
	assert_true(fd_readable(rctx_loop_fd(loop), 0));
	/* The registration keeps ctx alive until fn has run. */
	assert_int_equal(refs_of(ctx), 2);
	rctx_release(ctx);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 1);
	assert_int_equal(atomic_load(&r.ran), 1);
	assert_true(pthread_equal(r.thread, pthread_self()));
	rctx_loop_free(loop);
}

/* A deadline on the loop's own wheel: run counts the fire and the call. */
static void
test_deadline(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx;
	rctx_time_t deadline, guard;
	struct rec r = { 0 };
	int total = 0;

	(void)state;
	assert_non_null(loop);
	ctx = rctx_with_timeout(rctx_background(), 2 * RCTX_MSEC);
	assert_non_null(ctx);
	assert_true(rctx_deadline(ctx, &deadline));
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, on_done, &r),
			 0);
	guard = rctx_now() + 10 * RCTX_SEC; /* hang guard only */
	while (atomic_load(&r.ran) == 0 && rctx_now() < guard) {
		struct pollfd p = { .fd = rctx_loop_fd(loop),
				    .events = POLLIN };

		(void)poll(&p, 1, rctx_loop_timeout_ms(loop));
		total += rctx_loop_run(loop, rctx_now());
	}
	assert_int_equal(atomic_load(&r.ran), 1);
	assert_int_equal(total, 2);    /* one deadline fired + one call run */
	assert_true(r.at >= deadline); /* never early */
	assert_int_equal(rctx_err(ctx), ETIMEDOUT);
	assert_true(pthread_equal(r.thread, pthread_self()));
	rctx_release(ctx);
	rctx_loop_free(loop);
}

/* Stop before done: true, fn never runs, the reference is given back. */
static void
test_stop_armed(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };

	(void)state;
	assert_non_null(loop);
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, on_done, &r),
			 0);
	assert_true(rctx_after_stop(&r.reg));
	assert_false(rctx_after_stop(&r.reg));
	assert_int_equal(refs_of(ctx), 1);
	assert_int_equal(rctx_cancel(ctx), 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 0);
	assert_int_equal(atomic_load(&r.ran), 0);
	rctx_release(ctx);
	rctx_loop_free(loop);
}

/* Stop once done but before the loop ran it: withdrawn from the queue,
 * wherever it sits (head, middle or tail of the incoming stack, or the
 * ready list from within another call). */
static void
test_stop_queued(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r[6];

	(void)state;
	memset(r, 0, sizeof(r));
	assert_non_null(loop);
	for (int i = 0; i < 6; i++)
		assert_int_equal(
		    rctx_loop_after_func(loop, ctx, &r[i].reg, on_done, &r[i]),
		    0);
	/* whichever of r[0] and r[4] runs first stops the other, which then
	 * sits on the loop's ready list */
	r[0].stop_next = &r[4];
	r[4].stop_next = &r[0];
	assert_int_equal(rctx_cancel(ctx), 0);
	assert_int_equal(refs_of(ctx), 7);
	/* withdrawn from the incoming stack, wherever the cascade put them */
	assert_true(rctx_after_stop(&r[5].reg));
	assert_true(rctx_after_stop(&r[2].reg));
	assert_true(rctx_after_stop(&r[1].reg));
	assert_false(rctx_after_stop(&r[1].reg));
	assert_int_equal(refs_of(ctx), 4);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 2);
	assert_int_equal(atomic_load(&r[0].ran) + atomic_load(&r[4].ran), 1);
	assert_int_equal(atomic_load(&r[0].next_stopped) +
			     atomic_load(&r[4].next_stopped),
			 1);
	assert_int_equal(atomic_load(&r[3].ran), 1);
	for (int i = 1; i < 6; i++)
		if (i != 3 && i != 4)
			assert_int_equal(atomic_load(&r[i].ran), 0);
	assert_int_equal(refs_of(ctx), 1);
	/* a stopped registration's storage may be reused at once */
	assert_int_equal(
	    rctx_loop_after_func(loop, ctx, &r[1].reg, on_done, &r[1]), 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 1);
	assert_int_equal(atomic_load(&r[1].ran), 1);
	rctx_release(ctx);
	rctx_loop_free(loop);
}

static void
stop_self(void *arg)
{
	struct rec *r = arg;

	atomic_store(&r->inside, rctx_after_stop(&r->reg) ? 1 : 2);
	atomic_fetch_add(&r->ran, 1);
}

/* From within fn, stop returns false at once. */
static void
test_stop_inside(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };

	(void)state;
	assert_non_null(loop);
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, stop_self, &r),
			 0);
	assert_int_equal(rctx_cancel(ctx), 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 1);
	assert_int_equal(atomic_load(&r.inside), 2);
	assert_false(rctx_after_stop(&r.reg));
	rctx_release(ctx);
	rctx_loop_free(loop);
}

static _Atomic int freed_count;

static void
free_self(void *arg)
{
	free(arg); /* the registration lives inside */
	atomic_fetch_add(&freed_count, 1);
}

/* fn may free the memory holding reg (ASan/valgrind check the rest). */
static void
test_fn_frees_reg(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());

	(void)state;
	assert_non_null(loop);
	atomic_store(&freed_count, 0);
	for (int i = 0; i < 8; i++) {
		struct rec *r = calloc(1, sizeof(*r));

		assert_non_null(r);
		assert_int_equal(
		    rctx_loop_after_func(loop, ctx, &r->reg, free_self, r), 0);
	}
	cancel_elsewhere(ctx);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 8);
	assert_int_equal(atomic_load(&freed_count), 8);
	rctx_release(ctx);
	rctx_loop_free(loop);
}

/* A context that can never be done never runs fn; stop says it stopped. */
static void
test_never_done(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *wc = rctx_without_cancel(rctx_background());
	struct rec a = { 0 }, b = { 0 };

	(void)state;
	assert_non_null(loop);
	assert_int_equal(
	    rctx_loop_after_func(loop, rctx_background(), &a.reg, on_done, &a),
	    0);
	assert_int_equal(rctx_loop_after_func(loop, wc, &b.reg, on_done, &b),
			 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 0);
	assert_true(rctx_after_stop(&a.reg));
	assert_true(rctx_after_stop(&b.reg));
	assert_false(rctx_after_stop(&b.reg));
	assert_int_equal(atomic_load(&a.ran) + atomic_load(&b.ran), 0);
	rctx_release(wc);
	rctx_loop_free(loop);
}

/*
 * rctx_loop_free with calls pending (waiting for ctx, queued, or on a
 * never-done context): none ever runs, each stop returns true once, and
 * every reference goes back. A new loop in the same slot is not fooled.
 */
static void
test_free_pending(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *c1 = rctx_with_cancel(rctx_background());
	rctx_t *c2 = rctx_with_cancel(rctx_background());
	struct rec r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	(void)state;
	assert_non_null(loop);
	assert_int_equal(rctx_loop_after_func(loop, c1, &r1.reg, on_done, &r1),
			 0);
	assert_int_equal(rctx_loop_after_func(loop, c2, &r2.reg, on_done, &r2),
			 0);
	assert_int_equal(rctx_loop_after_func(loop, rctx_background(), &r3.reg,
					      on_done, &r3),
			 0);
	assert_int_equal(rctx_cancel(c2), 0); /* r2 queued */
	rctx_loop_free(loop);
	assert_int_equal(refs_of(c2), 1);
	loop = rctx_loop_new(); /* likely the same slot, a new generation */
	assert_non_null(loop);
	assert_int_equal(rctx_cancel(c1), 0); /* r1 fires after the free */
	assert_int_equal(refs_of(c1), 1);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 0);
	assert_int_equal(atomic_load(&r1.ran) + atomic_load(&r2.ran) +
			     atomic_load(&r3.ran),
			 0);
	assert_true(rctx_after_stop(&r1.reg));
	assert_true(rctx_after_stop(&r2.reg));
	assert_true(rctx_after_stop(&r3.reg));
	assert_false(rctx_after_stop(&r1.reg));
	assert_false(rctx_after_stop(&r2.reg));
	rctx_release(c1);
	rctx_release(c2);
	rctx_loop_free(loop);
}

/*
 * Registering, the hand-off to the loop, running and stopping allocate
 * nothing, whether the context is live, done, or full of registrations.
 */
static void
test_no_alloc(void **state)
{
#ifdef LA_NO_MALLOC_COUNT
	(void)state;
	TEST_SKIP("sanitizers bring their own malloc: nothing to count");
#else
	enum { N = 64 };
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	rctx_t *done = rctx_with_cancel(rctx_background());
	static struct rec r[N], d[N];

	(void)state;
	assert_non_null(loop);
	assert_int_equal(rctx_cancel(done), 0);
	/* Warm up this thread's one-time records: its runner record is
	 * claimed by its first cancel that runs an after-func (registering
	 * never allocates one). */
	rctx_t *warm = rctx_with_cancel(rctx_background());
	assert_non_null(warm);
	assert_int_equal(
	    rctx_loop_after_func(loop, warm, &d[1].reg, on_done, &d[1]), 0);
	assert_int_equal(rctx_cancel(warm), 0);
	rctx_release(warm);
	assert_int_equal(
	    rctx_loop_after_func(loop, done, &d[0].reg, on_done, &d[0]), 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 2);
	memset(d, 0, sizeof(d));
	atomic_store(&n_mallocs, 0);
	atomic_store(&counting, true);
	for (int i = 0; i < N; i++) {
		assert_int_equal(
		    rctx_loop_after_func(loop, ctx, &r[i].reg, on_done, &r[i]),
		    0); /* past 4, the set is full: its overflow list */
		assert_int_equal(
		    rctx_loop_after_func(loop, done, &d[i].reg, on_done, &d[i]),
		    0);
	}
	assert_true(rctx_after_stop(&r[0].reg));     /* pending */
	assert_true(rctx_after_stop(&d[0].reg));     /* queued */
	assert_true(rctx_after_stop(&r[N - 1].reg)); /* overflow list */
	assert_int_equal(rctx_cancel(ctx), 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 2 * N - 3);
	atomic_store(&counting, false);
	assert_int_equal(atomic_load(&n_mallocs), 0);
	rctx_release(ctx);
	rctx_release(done);
	rctx_loop_free(loop);
#endif
}

/* ---- a loop on its own thread ------------------------------------------ */

struct owner {
	pthread_t th;
	_Atomic(rctx_loop_t *) loop;
	_Atomic int quit;
	_Atomic long ran; /* rctx_loop_run's total */
};

static void *
owner_main(void *arg)
{
	struct owner *o = arg;
	rctx_loop_t *loop = rctx_loop_new();

	WCHECK(loop != NULL);
	atomic_store(&o->loop, loop);
	loop_serve(loop, &o->quit, &o->ran, 5);
	rctx_loop_free(loop);
	return NULL;
}

static rctx_loop_t *
owner_start(struct owner *o)
{
	memset(o, 0, sizeof(*o));
	assert_int_equal(pthread_create(&o->th, NULL, owner_main, o), 0);
	while (atomic_load(&o->loop) == NULL)
		sched_yield();
	return atomic_load(&o->loop);
}

static void
owner_stop(struct owner *o)
{
	atomic_store(&o->quit, 1);
	assert_int_equal(pthread_join(o->th, NULL), 0);
}

static void
wait_for_stopper(void *arg)
{
	struct rec *r = arg;

	atomic_fetch_add(&r->ran, 1);
	/* Return only once the stopper sleeps, waiting for us. */
	while (rctx_lafter_waiters(r->loop) == 0)
		sched_yield();
	atomic_store(&r->finished, 1);
}

/* A stop from another thread while fn runs waits until fn returned. */
static void
test_stop_waits(void **state)
{
	struct owner o;
	rctx_loop_t *loop = owner_start(&o);
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };

	(void)state;
	r.loop = loop;
	assert_int_equal(
	    rctx_loop_after_func(loop, ctx, &r.reg, wait_for_stopper, &r), 0);
	assert_int_equal(rctx_cancel(ctx), 0);
	while (atomic_load(&r.ran) == 0)
		sched_yield();
	assert_false(rctx_after_stop(&r.reg));
	assert_int_equal(atomic_load(&r.finished), 1);
	owner_stop(&o);
	rctx_release(ctx);
}

struct race {
	rctx_t *ctx;
	rctx_after_t *reg;
	pthread_barrier_t bar;
	bool stopped;
	_Atomic int going; /* the canceller is about to cancel */
	int rounds;
};

static void
jitter(unsigned n)
{
	for (volatile unsigned k = 0; k < n; k++)
		;
}

static void *
race_cancel(void *arg)
{
	struct race *x = arg;

	for (int i = 0; i < x->rounds; i++) {
		pthread_barrier_wait(&x->bar);
		atomic_store(&x->going, i + 1);
		(void)rctx_cancel(x->ctx);
		pthread_barrier_wait(&x->bar);
	}
	return NULL;
}

static void *
race_stop(void *arg)
{
	struct race *x = arg;

	for (int i = 0; i < x->rounds; i++) {
		pthread_barrier_wait(&x->bar);
		while (atomic_load(&x->going) != i + 1)
			;
		jitter((unsigned)(i % 64) * 64);
		x->stopped = rctx_after_stop(x->reg);
		pthread_barrier_wait(&x->bar);
	}
	return NULL;
}

/*
 * Stop racing a cancel on another thread: the stop meets the registration
 * before the claim (after.c's arbitration), during it (it waits for the
 * claimer's hand-off) or queued (withdrawn); the loop runs after both, so
 * stop wins each time, and fn must then never run. test_stop_races_run
 * has the loop running meanwhile.
 */
static void
test_stop_races_cancel(void **state)
{
	enum { N = 2000 * RCTX_STRESS_SCALE };
	rctx_loop_t *loop = rctx_loop_new();
	struct race x = { .rounds = N };
	pthread_t a, b;
	int wins = 0;

	(void)state;
	assert_non_null(loop);
	pthread_barrier_init(&x.bar, NULL, 3);
	assert_int_equal(pthread_create(&a, NULL, race_cancel, &x), 0);
	assert_int_equal(pthread_create(&b, NULL, race_stop, &x), 0);
	for (int i = 0; i < N; i++) {
		struct rec r = { 0 };

		x.ctx = rctx_with_cancel(rctx_background());
		x.reg = &r.reg;
		assert_int_equal(
		    rctx_loop_after_func(loop, x.ctx, &r.reg, on_done, &r), 0);
		pthread_barrier_wait(&x.bar); /* go */
		pthread_barrier_wait(&x.bar); /* both done */
		(void)rctx_loop_run(loop, rctx_now());
		assert_int_equal(atomic_load(&r.ran) + (x.stopped ? 1 : 0), 1);
		assert_int_equal(refs_of(x.ctx), 1);
		wins += x.stopped;
		rctx_release(x.ctx);
	}
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	print_message("# stop won %d of %d races\n", wins, N);
	pthread_barrier_destroy(&x.bar);
	rctx_loop_free(loop);
}

/*
 * The loop runs on its own thread while others cancel and stop: a stop
 * that returns false finds fn finished; one that returns true means fn
 * never runs.
 */
struct churn {
	rctx_loop_t *loop;
	_Atomic long ran_false, stopped_true;
};

static void *
churn_main(void *arg)
{
	struct churn *c = arg;
	enum { N = 3000 * RCTX_STRESS_SCALE };

	for (int i = 0; i < N; i++) {
		rctx_t *ctx = rctx_with_cancel(rctx_background());
		struct rec *r = calloc(1, sizeof(*r));

		WCHECK(r != NULL);
		WCHECK((rctx_loop_after_func(c->loop, ctx, &r->reg, on_done,
					     r)) == 0);
		if (i % 3 != 0)
			(void)rctx_cancel(ctx);
		if (i % 5 == 0)
			sched_yield();
		if (rctx_after_stop(&r->reg)) {
			atomic_fetch_add(&c->stopped_true, 1);
			(void)rctx_cancel(ctx); /* still never runs */
			WCHECK(atomic_load(&r->ran) == 0);
		} else {
			WCHECK(atomic_load(&r->finished) == 1);
			atomic_fetch_add(&c->ran_false, 1);
		}
		rctx_release(ctx);
		free(r); /* nothing refers to it any more */
	}
	return NULL;
}

static void
test_stop_races_run(void **state)
{
	struct owner o;
	struct churn c = { .loop = owner_start(&o) };
	pthread_t th[3];

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, churn_main, &c),
				 0);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	owner_stop(&o);
	print_message("# %ld stopped, %ld ran\n", atomic_load(&c.stopped_true),
		      atomic_load(&c.ran_false));
	assert_int_equal(atomic_load(&o.ran), atomic_load(&c.ran_false));
	assert_int_equal(atomic_load(&c.ran_false) +
			     atomic_load(&c.stopped_true),
			 3 * 3000 * RCTX_STRESS_SCALE);
}

struct reg_many {
	rctx_loop_t *loop;
	rctx_t *root;
	rctx_t *done;
	struct rec *recs;
	int n;
};

static void *
register_main(void *arg)
{
	struct reg_many *m = arg;

	for (int i = 0; i < m->n; i++) {
		rctx_t *c = i % 4 == 0 ? m->done : m->root;

		WCHECK((rctx_loop_after_func(m->loop, c, &m->recs[i].reg,
					     on_done, &m->recs[i])) == 0);
	}
	return NULL;
}

/* Many threads register at once; a cancel on yet another thread; every
 * fn runs once, on the owner. */
static void
test_many_registrants(void **state)
{
	enum { T = 4, N = 500 * RCTX_STRESS_SCALE };
	rctx_loop_t *loop = rctx_loop_new();
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *done = rctx_with_cancel(rctx_background());
	struct rec *recs = calloc(T * N, sizeof(*recs));
	struct reg_many m[T];
	pthread_t th[T];
	rctx_time_t guard;
	long total = 0;

	(void)state;
	assert_non_null(loop);
	assert_non_null(recs);
	assert_int_equal(rctx_cancel(done), 0);
	for (int t = 0; t < T; t++) {
		m[t] = (struct reg_many){ loop, root, done, recs + t * N, N };
		assert_int_equal(
		    pthread_create(&th[t], NULL, register_main, &m[t]), 0);
	}
	for (int t = 0; t < T; t++)
		pthread_join(th[t], NULL);
	cancel_elsewhere(root);
	guard = rctx_now() + 30 * RCTX_SEC; /* hang guard only */
	while (total < T * N && rctx_now() < guard) {
		(void)fd_readable(rctx_loop_fd(loop), 100);
		total += rctx_loop_run(loop, rctx_now());
	}
	assert_int_equal(total, T * N);
	for (int i = 0; i < T * N; i++) {
		assert_int_equal(atomic_load(&recs[i].ran), 1);
		assert_true(pthread_equal(recs[i].thread, pthread_self()));
	}
	assert_int_equal(refs_of(root), 1);
	assert_int_equal(refs_of(done), 1);
	rctx_release(root);
	rctx_release(done);
	free(recs);
	rctx_loop_free(loop);
}

/*
 * Two threads stop the same queued calls while the owner frees the loop:
 * each call is stopped exactly once (one true between the two stoppers)
 * and none runs.
 */
enum { DS_N = 256 };

struct dstop {
	struct rec r[DS_N];
	_Atomic int wins[DS_N];
	pthread_barrier_t bar;
	rctx_t *ctx;
};

static void *
dstop_main(void *arg)
{
	struct dstop *x = arg;

	pthread_barrier_wait(&x->bar);
	for (int i = 0; i < DS_N; i++)
		if (rctx_after_stop(&x->r[i].reg))
			atomic_fetch_add(&x->wins[i], 1);
	return NULL;
}

static void *
dstop_owner(void *arg)
{
	struct dstop *x = arg;
	rctx_loop_t *loop = rctx_loop_new();

	WCHECK(loop != NULL);
	for (int i = 0; i < DS_N; i++)
		WCHECK(rctx_loop_after_func(loop, x->ctx, &x->r[i].reg, on_done,
					    &x->r[i]) == 0);
	pthread_barrier_wait(&x->bar);
	rctx_loop_free(loop); /* races the stoppers */
	return NULL;
}

static void
test_double_stop_vs_free(void **state)
{
	(void)state;
	for (int round = 0; round < 20 * RCTX_STRESS_SCALE; round++) {
		struct dstop *x = calloc(1, sizeof(*x));
		pthread_t th[3];

		assert_non_null(x);
		x->ctx = rctx_with_cancel(rctx_background());
		assert_int_equal(rctx_cancel(x->ctx), 0); /* calls queue */
		pthread_barrier_init(&x->bar, NULL, 3);
		assert_int_equal(pthread_create(&th[0], NULL, dstop_owner, x),
				 0);
		assert_int_equal(pthread_create(&th[1], NULL, dstop_main, x),
				 0);
		assert_int_equal(pthread_create(&th[2], NULL, dstop_main, x),
				 0);
		for (int i = 0; i < 3; i++)
			pthread_join(th[i], NULL);
		for (int i = 0; i < DS_N; i++) {
			assert_int_equal(atomic_load(&x->wins[i]), 1);
			assert_int_equal(atomic_load(&x->r[i].ran), 0);
		}
		assert_int_equal(refs_of(x->ctx), 1);
		rctx_release(x->ctx);
		pthread_barrier_destroy(&x->bar);
		free(x);
	}
}

/* ---- more loops than after-func slots --------------------------------- */

#define NS_LOOPS 1025 /* one more than loops with after-funcs at once */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int made; /* loops made so far, under mu */
	bool quit;
} ns = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false };
static rctx_loop_t *ns_loop[NS_LOOPS];

static void *
ns_owner(void *arg)
{
	rctx_loop_t **out = arg;
	rctx_loop_t *loop = rctx_loop_new();

	pthread_mutex_lock(&ns.mu);
	*out = loop;
	ns.made++;
	pthread_cond_broadcast(&ns.cv);
	while (!ns.quit)
		pthread_cond_wait(&ns.cv, &ns.mu);
	pthread_mutex_unlock(&ns.mu);
	rctx_loop_free(loop);
	return NULL;
}

/*
 * 1,025 loops at once, each on its own thread: the last one made gets no
 * after-func slot, and registering on it says so (-ENOSPC) at once while
 * the others still take registrations. Once they are gone, a new loop
 * has a slot again.
 */
static void
test_no_slot(void **state)
{
	static pthread_t th[NS_LOOPS];
	rctx_t *ctx = rctx_with_cancel(rctx_background());
	struct rec r = { 0 };
	pthread_attr_t attr;
	struct rlimit rl;
	rctx_loop_t *loop;
	int n = 0;

	(void)state;
	/* Each loop holds an eventfd (and an epoll, timer fds): room for them. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4 * NS_LOOPS &&
	    rl.rlim_max >= 4 * NS_LOOPS) {
		rl.rlim_cur = 4 * NS_LOOPS;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 4 * NS_LOOPS) {
		rctx_release(ctx);
		TEST_SKIP("too few file descriptors for 1,025 loops");
	}
	assert_int_equal(pthread_attr_init(&attr), 0);
	assert_int_equal(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
	for (; n < NS_LOOPS; n++) {
		if (pthread_create(&th[n], &attr, ns_owner, &ns_loop[n]) != 0)
			break;
		pthread_mutex_lock(&ns.mu);
		while (ns.made <= n)
			pthread_cond_wait(&ns.cv, &ns.mu);
		pthread_mutex_unlock(&ns.mu);
		if (ns_loop[n] == NULL)
			break;
	}
	pthread_attr_destroy(&attr);
	if (n == NS_LOOPS) {
		assert_int_equal(rctx_loop_after_func(ns_loop[NS_LOOPS - 1],
						      ctx, &r.reg, on_done, &r),
				 -ENOSPC);
		assert_int_equal(
		    rctx_loop_after_func(ns_loop[0], ctx, &r.reg, on_done, &r),
		    0);
		assert_true(rctx_after_stop(&r.reg));
	}
	pthread_mutex_lock(&ns.mu);
	ns.quit = true;
	pthread_cond_broadcast(&ns.cv);
	pthread_mutex_unlock(&ns.mu);
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(refs_of(ctx), 1);
	if (n < NS_LOOPS) { /* threads or fds ran out first */
		rctx_release(ctx);
		TEST_SKIP("threads or fds ran out before 1,025 loops");
	}
	loop = rctx_loop_new();
	assert_non_null(loop);
	assert_int_equal(rctx_loop_after_func(loop, ctx, &r.reg, on_done, &r),
			 0);
	assert_int_equal(rctx_cancel(ctx), 0);
	assert_int_equal(rctx_loop_run(loop, rctx_now()), 1);
	assert_int_equal(atomic_load(&r.ran), 1);
	rctx_release(ctx);
	rctx_loop_free(loop);
}

/* ---- owner thread exits (last: its loop stays behind) ------------------ */

static rctx_t *exit_ctx, *exit_done;
static struct rec exit_rec, exit_queued;

static void *
exiting_owner(void *arg)
{
	rctx_loop_t **out = arg;
	rctx_loop_t *loop = rctx_loop_new();

	WCHECK(loop != NULL);
	WCHECK((rctx_loop_after_func(loop, exit_ctx, &exit_rec.reg, on_done,
				     &exit_rec)) == 0);
	/* already done: queued for a run that never comes */
	WCHECK((rctx_loop_after_func(loop, exit_done, &exit_queued.reg, on_done,
				     &exit_queued)) == 0);
	*out = loop;
	return NULL; /* exits without rctx_loop_free */
}

static void
test_owner_exited(void **state)
{
	rctx_loop_t *loop = NULL;
	struct rec r = { 0 };
	pthread_t th;

	(void)state;
	exit_ctx = rctx_with_cancel(rctx_background());
	exit_done = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_cancel(exit_done), 0);
	assert_int_equal(pthread_create(&th, NULL, exiting_owner, &loop), 0);
	pthread_join(th, NULL);
	assert_non_null(loop);
	assert_int_equal(
	    rctx_loop_after_func(loop, exit_ctx, &r.reg, on_done, &r),
	    -EOWNERDEAD);
	/* a done context changes nothing: the error, not a queued call */
	assert_int_equal(
	    rctx_loop_after_func(loop, exit_done, &r.reg, on_done, &r),
	    -EOWNERDEAD);
	assert_int_equal(rctx_cancel(exit_ctx), 0);
	assert_int_equal(atomic_load(&exit_rec.ran), 0);
	assert_int_equal(atomic_load(&exit_queued.ran), 0);
	assert_int_equal(atomic_load(&r.ran), 0);
	assert_int_equal(refs_of(exit_ctx), 1);
	assert_true(rctx_after_stop(&exit_rec.reg));
	assert_false(rctx_after_stop(&exit_rec.reg));
	/* the queued call holds its reference until stopped */
	assert_true(rctx_after_stop(&exit_queued.reg));
	assert_false(rctx_after_stop(&exit_queued.reg));
	assert_int_equal(refs_of(exit_done), 1);
	rctx_release(exit_ctx);
	rctx_release(exit_done);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_null, teardown),
		cmocka_unit_test_teardown(test_runs_on_owner, teardown),
		cmocka_unit_test_teardown(test_already_done, teardown),
		cmocka_unit_test_teardown(test_deadline, teardown),
		cmocka_unit_test_teardown(test_stop_armed, teardown),
		cmocka_unit_test_teardown(test_stop_queued, teardown),
		cmocka_unit_test_teardown(test_stop_inside, teardown),
		cmocka_unit_test_teardown(test_fn_frees_reg, teardown),
		cmocka_unit_test_teardown(test_never_done, teardown),
		cmocka_unit_test_teardown(test_free_pending, teardown),
		cmocka_unit_test_teardown(test_no_alloc, teardown),
		cmocka_unit_test_teardown(test_stop_waits, teardown),
		cmocka_unit_test_teardown(test_stop_races_cancel, teardown),
		cmocka_unit_test_teardown(test_stop_races_run, teardown),
		cmocka_unit_test_teardown(test_many_registrants, teardown),
		cmocka_unit_test_teardown(test_double_stop_vs_free, teardown),
		cmocka_unit_test_teardown(test_no_slot, teardown),
		cmocka_unit_test_teardown(test_owner_exited, teardown),
	};

	return RUN_TESTS(tests);
}
