/* SPDX-License-Identifier: MIT */
/* Timer service stress: arm, cancel, release and fire racing on 3 threads. */
#include <poll.h>
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

#include "timer.h"

#include "util.h"

#define THREADS 3
#define SLOTS	256
#define ITERS	(30000 * RCTX_STRESS_SCALE)

/*
 * One test timer. A slot is reused only after its dead() ran; `gen`
 * changes on each use so that a late callback of an old use is caught.
 */
struct st {
	struct rctx_timer t;
	_Atomic int fired;
	_Atomic int dead;
	_Atomic int in_fire;
	_Atomic rctx_time_t cancel_done; /* rctx_now() after cancel, or 0 */
};

static _Atomic long n_bad, n_fired, n_dead, n_armed;

/* Hand-off of armed timers to the next thread, which releases them. */
static pthread_mutex_t box_lock = PTHREAD_MUTEX_INITIALIZER;
static struct st *box[THREADS][SLOTS];
static int box_n[THREADS];

static struct st *
st_of(struct rctx_timer *t)
{
	return (struct st *)(void *)((char *)t - offsetof(struct st, t));
}

static void
bad(const char *what)
{
	fprintf(stderr, "stress-timers: %s\n", what);
	/* relaxed: a counter, read after the threads are joined */
	atomic_fetch_add_explicit(&n_bad, 1, memory_order_relaxed);
}

static void
s_fire(struct rctx_timer *t)
{
	struct st *x = st_of(t);
	rctx_time_t now = rctx_now();
	rctx_time_t cd;

	/* seq_cst: checked by s_dead (dead never overlaps fire) */
	atomic_store(&x->in_fire, 1);
	if (now < t->expires)
		bad("fired early");
	if (atomic_load(&x->dead))
		bad("fired after dead");
	cd = atomic_load(&x->cancel_done);
	if (cd && cd < t->expires)
		bad("fired after cancel returned before the deadline");
	if (atomic_fetch_add(&x->fired, 1) != 0)
		bad("fired twice");
	/* relaxed: a counter */
	atomic_fetch_add_explicit(&n_fired, 1, memory_order_relaxed);
	atomic_store(&x->in_fire, 0);
}

static void
s_dead(struct rctx_timer *t)
{
	struct st *x = st_of(t);

	if (atomic_load(&x->in_fire))
		bad("dead while fire runs");
	/* relaxed: a counter */
	atomic_fetch_add_explicit(&n_dead, 1, memory_order_relaxed);
	/* seq_cst: the slot's owner waits for it before reuse */
	if (atomic_fetch_add(&x->dead, 1) != 0)
		bad("dead twice");
}

static void
cancel(struct st *x)
{
	rctx_timer_cancel(&x->t);
	atomic_store(&x->cancel_done, rctx_now());
}

static void
take_box(int id, uint64_t *s)
{
	struct st *got[SLOTS];
	int n, i;

	pthread_mutex_lock(&box_lock);
	n = box_n[id];
	memcpy(got, box[id], (size_t)n * sizeof(got[0]));
	box_n[id] = 0;
	pthread_mutex_unlock(&box_lock);
	for (i = 0; i < n; i++) {
		if (rnd(s) & 1)
			cancel(got[i]);
		rctx_timer_release(&got[i]->t);
	}
}

static void
wait_dead(struct st *x, int id, uint64_t *s)
{
	struct timespec ts = { 0, 50000 };
	rctx_time_t end = rctx_now() + 30 * RCTX_SEC;

	while (!atomic_load(&x->dead)) {
		if (rctx_now() > end) {
			fprintf(
			    stderr, "flags %#x expires-now %lld ms fired %d\n",
			    (unsigned)atomic_load(&x->t.flags),
			    (long long)(x->t.expires - rctx_now()) / 1000000,
			    atomic_load(&x->fired));
			bad("dead never came");
			abort();
		}
		/*
		 * x may sit in a box whose thread has finished or waits too:
		 * serve every box (still not the thread that armed them).
		 */
		for (int b = 0; b < THREADS; b++)
			if (b != id)
				take_box(b, s);
		nanosleep(&ts, NULL);
	}
}

static void *
worker(void *arg)
{
	int id = (int)(intptr_t)arg, next = (id + 1) % THREADS;
	struct st *pool = calloc(SLOTS, sizeof(*pool));
	bool used[SLOTS] = { false };
	uint64_t s = rnd_seed((uint64_t)id);
	long it;

	if (!pool)
		abort();
	for (it = 0; it < ITERS; it++) {
		struct st *x = &pool[rnd(&s) % SLOTS];
		rctx_time_t now = rctx_now(), exp;
		unsigned what = (unsigned)(rnd(&s) % 8);

		if (used[x - pool])
			wait_dead(x, id, &s);
		memset(x, 0, sizeof(*x));
		rctx_timer_init(&x->t);
		used[x - pool] = true;
		switch (rnd(&s) % 4) {
		case 0:
			exp = now - RCTX_MSEC; /* already due */
			break;
		case 1:
			exp = now + 3600 * RCTX_SEC;
			break;
		default:
			exp = now + (rctx_time_t)(rnd(&s) % 2000) * RCTX_USEC;
			break;
		}
		if (rctx_timer_arm(&x->t, exp)) {
			bad("arm failed");
			rctx_timer_release(&x->t);
			continue;
		}
		/* relaxed: a counter */
		atomic_fetch_add_explicit(&n_armed, 1, memory_order_relaxed);
		switch (what) {
		case 0:
		case 1: /* cancel, release */
			cancel(x);
			rctx_timer_release(&x->t);
			break;
		case 2: /* release at once (a release also stops it) */
			rctx_timer_release(&x->t);
			break;
		case 3:
		case 4: /* another thread cancels or releases it */
			pthread_mutex_lock(&box_lock);
			if (box_n[next] < SLOTS) {
				box[next][box_n[next]++] = x;
				x = NULL;
			}
			pthread_mutex_unlock(&box_lock);
			if (x)
				rctx_timer_release(&x->t);
			break;
		default: /* let it run a little, then release */
			if (rnd(&s) % 16 == 0) {
				struct timespec ts = { 0, 200000 };

				nanosleep(&ts, NULL);
			}
			rctx_timer_release(&x->t);
			break;
		}
		if (it % 64 == 0)
			take_box(id, &s);
	}
	return pool;
}

static void
test_stress_timers(void **state)
{
	struct tgroup g = { .n = 0 };
	void *pools[THREADS];
	uint64_t s = rnd_seed(THREADS);
	int i, j;

	(void)state;
	rctx_timer_setup(s_fire, s_dead);
	for (i = 0; i < THREADS; i++)
		tg_add(&g, worker, (void *)(intptr_t)i);
	tg_join(&g, pools);
	/* Release what is still boxed, then every timer must die. */
	for (i = 0; i < THREADS; i++)
		take_box(i, &s);
	for (i = 0; i < THREADS; i++) {
		struct st *pool = pools[i];

		for (j = 0; j < SLOTS; j++)
			if (pool[j].t.flags)
				wait_dead(&pool[j], -1, &s);
		free(pool);
	}
	print_message("# armed %ld, fired %ld, dead %ld\n",
		      atomic_load(&n_armed), atomic_load(&n_fired),
		      atomic_load(&n_dead));
	assert_int_equal(atomic_load(&n_dead), atomic_load(&n_armed));
	assert_true(atomic_load(&n_fired) > 0);
	assert_int_equal(atomic_load(&n_bad), 0);
	rctx_timer_shutdown();
}

/* Event-loop mode: one long-lived loop, one loop created and freed over
 * and over (migrating its timers), and the same three workers. */
static _Atomic int loops_stop;
static _Atomic long loop_cycles;

static void
serve(rctx_loop_t *loop, rctx_time_t until)
{
	do {
		struct pollfd p = { .fd = rctx_loop_fd(loop),
				    .events = POLLIN };
		int ms = rctx_loop_timeout_ms(loop);

		poll(&p, 1, ms < 0 || ms > 1 ? 1 : ms);
		rctx_loop_run(loop, rctx_now());
	} while (rctx_now() < until && !atomic_load(&loops_stop));
}

static void *
long_loop(void *arg)
{
	rctx_loop_t *loop = arg;

	while (!atomic_load(&loops_stop))
		serve(loop, rctx_now() + RCTX_MSEC);
	/* Take what is left (released timers die at the owner's look). */
	rctx_loop_next(loop);
	rctx_loop_run(loop, rctx_now());
	rctx_loop_free(loop);
	return NULL;
}

static void *
churn_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&loops_stop)) {
		rctx_loop_t *loop = rctx_loop_new();

		if (!loop) {
			bad("loop_new failed");
			return NULL;
		}
		serve(loop, rctx_now() + 2 * RCTX_MSEC);
		rctx_loop_free(loop); /* its timers move to the long loop */
		/* relaxed: a counter */
		atomic_fetch_add_explicit(&loop_cycles, 1,
					  memory_order_relaxed);
	}
	return NULL;
}

struct start {
	rctx_loop_t *loop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *
long_loop_start(void *arg)
{
	struct start *st = arg;
	rctx_loop_t *loop = rctx_loop_new();

	pthread_mutex_lock(&st->mu);
	st->loop = loop;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
	if (!loop) {
		bad("first loop_new failed");
		return NULL;
	}
	return long_loop(loop);
}

static void
test_stress_loops(void **state)
{
	struct start st = { NULL, PTHREAD_MUTEX_INITIALIZER,
			    PTHREAD_COND_INITIALIZER };
	struct tgroup g = { .n = 0 };
	pthread_t lt, ct;
	void *pools[THREADS];
	uint64_t s = rnd_seed(THREADS + 1);
	int i, j;

	(void)state;
	rctx_timer_shutdown(); /* no library thread: loops may exist */
	rctx_timer_setup(s_fire, s_dead);
	atomic_store(&n_armed, 0);
	atomic_store(&n_fired, 0);
	atomic_store(&n_dead, 0);
	assert_int_equal(pthread_create(&lt, NULL, long_loop_start, &st), 0);
	pthread_mutex_lock(&st.mu);
	while (!st.loop)
		pthread_cond_wait(&st.cv, &st.mu);
	pthread_mutex_unlock(&st.mu);
	assert_int_equal(pthread_create(&ct, NULL, churn_loop, NULL), 0);
	for (i = 0; i < THREADS; i++)
		tg_add(&g, worker, (void *)(intptr_t)i);
	tg_join(&g, pools);
	for (i = 0; i < THREADS; i++)
		take_box(i, &s);
	for (i = 0; i < THREADS; i++) {
		struct st *pool = pools[i];

		for (j = 0; j < SLOTS; j++)
			if (pool[j].t.flags)
				wait_dead(&pool[j], -1, &s);
		free(pool);
	}
	atomic_store(&loops_stop, 1);
	pthread_join(ct, NULL);
	pthread_join(lt, NULL);
	print_message("# loops: armed %ld, fired %ld, dead %ld, %ld loop "
		      "cycles\n",
		      atomic_load(&n_armed), atomic_load(&n_fired),
		      atomic_load(&n_dead), atomic_load(&loop_cycles));
	assert_int_equal(atomic_load(&n_dead), atomic_load(&n_armed));
	assert_true(atomic_load(&loop_cycles) > 0);
	assert_int_equal(atomic_load(&n_bad), 0);
	rctx_timer_shutdown();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_timers),
		cmocka_unit_test(test_stress_loops),
	};

	return RUN_TESTS(tests);
}
