/* SPDX-License-Identifier: MIT */
/* Event-loop mode tests: controllable clock, fd wake-ups, loop migration. */
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "timer.h"
#include "util.h"

uint64_t rctx_timer_wakeups(void);

struct lt {
	struct rctx_timer t;
	_Atomic int fired;
	_Atomic int dead;
	rctx_time_t fired_now; /* the `now` the loop was run with */
	rctx_time_t fired_real;
};

/* The `now` the test passes to rctx_loop_run; -1: use rctx_now(). */
static _Atomic rctx_time_t cur_now = -1;
static _Atomic long n_fired, n_dead, n_early;

static struct lt *
lt_of(struct rctx_timer *t)
{
	return (struct lt *)(void *)((char *)t - offsetof(struct lt, t));
}

static void
l_fire(struct rctx_timer *t)
{
	struct lt *x = lt_of(t);
	rctx_time_t now = atomic_load(&cur_now);

	x->fired_real = rctx_now();
	x->fired_now = now < 0 ? x->fired_real : now;
	if (x->fired_now < t->expires)
		atomic_fetch_add(&n_early, 1);
	atomic_fetch_add(&x->fired, 1);
	atomic_fetch_add(&n_fired, 1);
}

static void
l_dead(struct rctx_timer *t)
{
	atomic_fetch_add(&lt_of(t)->dead, 1);
	atomic_fetch_add(&n_dead, 1);
}

static int
setup(void **state)
{
	(void)state;
	rctx_timer_setup(l_fire, l_dead);
	atomic_store(&cur_now, -1);
	atomic_store(&n_fired, 0);
	atomic_store(&n_dead, 0);
	atomic_store(&n_early, 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	rctx_timer_shutdown();
	return 0;
}

/* No library timer threads: arms from loopless threads go to the loops. */
static int
setup_nothreads(void **state)
{
	setup(state);
	assert_int_equal(rctx_timer_set_threads(false), 0);
	return 0;
}

static int
teardown_nothreads(void **state)
{
	(void)state;
	rctx_timer_shutdown();
	assert_int_equal(rctx_timer_set_threads(true), 0);
	return 0;
}

static int
run_at(rctx_loop_t *loop, rctx_time_t now)
{
	atomic_store(&cur_now, now);
	return rctx_loop_run(loop, now);
}

static bool
fd_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* One timer: next, timeout_ms and run with a clock the test controls. */
static void
test_basic(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_time_t base, next;
	struct lt a;
	int ms;

	(void)state;
	assert_non_null(loop);
	assert_true(rctx_loop_fd(loop) >= 0);
	assert_null(rctx_loop_new());
	assert_int_equal(errno, EBUSY);
	assert_int_equal(rctx_loop_next(loop), -1);
	assert_int_equal(rctx_loop_timeout_ms(loop), -1);

	memset(&a, 0, sizeof(a));
	rctx_timer_init(&a.t);
	base = rctx_now();
	assert_int_equal(rctx_timer_arm(&a.t, base + 10 * RCTX_MSEC), 0);
	next = rctx_loop_next(loop);
	assert_true(next != -1);
	assert_true(next <= base + 10 * RCTX_MSEC + (1 << 20));
	ms = rctx_loop_timeout_ms(loop);
	assert_true(ms >= 0 && ms <= 12);
	/* Never early, even one nanosecond before. */
	assert_int_equal(run_at(loop, base + 10 * RCTX_MSEC - 1), 0);
	assert_int_equal(atomic_load(&a.fired), 0);
	assert_int_equal(run_at(loop, base + 12 * RCTX_MSEC), 1);
	assert_int_equal(atomic_load(&a.fired), 1);
	assert_true(a.fired_now >= a.t.expires);
	assert_int_equal(rctx_loop_next(loop), -1);
	rctx_timer_release(&a.t);
	assert_int_equal(atomic_load(&a.dead), 1);
	rctx_loop_free(loop);
}

/* Many timers, a stepped clock: next never later than the earliest. */
static void
test_stepped_clock(void **state)
{
	enum { N = 3000 };
	struct lt *v = calloc(N, sizeof(*v));
	rctx_loop_t *loop = rctx_loop_new();
	rctx_time_t base = rctx_now(), now, tick = (rctx_time_t)1 << 20;
	uint64_t seed = rnd_seed(0);
	int i, fired = 0;

	(void)state;
	assert_non_null(v);
	assert_non_null(loop);
	for (i = 0; i < N; i++) {
		rctx_timer_init(&v[i].t);
		assert_int_equal(
		    rctx_timer_arm(
			&v[i].t, base + (rctx_time_t)rnd_below(&seed, 500000) *
					    RCTX_USEC),
		    0);
		if (i % 5 == 0)
			rctx_timer_cancel(&v[i].t);
	}
	for (now = base; fired < N - N / 5;
	     now += (rctx_time_t)rnd_below(&seed, 3000) * RCTX_USEC) {
		rctx_time_t next = rctx_loop_next(loop), min = INT64_MAX;

		for (i = 0; i < N; i++)
			if (i % 5 && !atomic_load(&v[i].fired) &&
			    v[i].t.expires < min)
				min = v[i].t.expires;
		assert_true(next != -1);
		/* Next is at most the earliest pending one, rounded up. */
		assert_true(next <= min + tick);
		fired += run_at(loop, now);
		assert_int_equal(atomic_load(&n_early), 0);
		assert_true(now < base + 2 * RCTX_SEC);
	}
	for (i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&v[i].fired), i % 5 ? 1 : 0);
		rctx_timer_release(&v[i].t);
		/* Fired ones are held by nobody: they die at once. */
		if (i % 5)
			assert_int_equal(atomic_load(&v[i].dead), 1);
	}
	/* Cancelled ones still sit in the wheel: the owner's next look. */
	rctx_loop_next(loop);
	for (i = 0; i < N; i++)
		assert_int_equal(atomic_load(&v[i].dead), 1);
	rctx_loop_free(loop);
	free(v);
}

/* timeout_ms is rounded up: now + timeout never before next. */
static void
test_timeout_ms(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	struct lt a;
	rctx_time_t t1, next;
	int ms;

	(void)state;
	assert_non_null(loop);
	memset(&a, 0, sizeof(a));
	rctx_timer_init(&a.t);
	assert_int_equal(
	    rctx_timer_arm(&a.t, rctx_now() + 7 * RCTX_MSEC + 333 * RCTX_USEC),
	    0);
	ms = rctx_loop_timeout_ms(loop);
	t1 = rctx_now();
	next = rctx_loop_next(loop);
	assert_true(ms >= 0);
	assert_true(t1 + ms * RCTX_MSEC >= next);
	rctx_timer_release(&a.t);
	/* The owner frees it at its next look. */
	rctx_loop_next(loop);
	assert_int_equal(atomic_load(&a.dead), 1);
	assert_int_equal(rctx_loop_next(loop), -1);
	rctx_loop_free(loop);
}

/* No-thread mode: a thread that owns no loop arms into the loop, whose fd
 * wakes only if earlier. */
struct xarm {
	struct lt *t;
	rctx_time_t expires;
	bool release;
};

static void *
xarm_main(void *arg)
{
	struct xarm *x = arg;

	if (x->release)
		rctx_timer_release(&x->t->t);
	else
		(void)rctx_timer_arm(&x->t->t, x->expires);
	return NULL;
}

static void
cross(struct lt *t, rctx_time_t expires, bool release)
{
	struct xarm x = { t, expires, release };
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, xarm_main, &x), 0);
	pthread_join(th, NULL);
}

static void
test_cross_thread_wake(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	struct lt a, b, c;
	rctx_time_t now = rctx_now(), next;
	uint64_t w0;
	int fd;

	(void)state;
	assert_non_null(loop);
	fd = rctx_loop_fd(loop);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	rctx_timer_init(&a.t);
	rctx_timer_init(&b.t);
	rctx_timer_init(&c.t);
	assert_int_equal(rctx_loop_next(loop), -1); /* planned: never */
	assert_false(fd_readable(fd, 0));
	w0 = rctx_timer_wakeups();
	cross(&a, now + 50 * RCTX_MSEC, false);
	assert_true(fd_readable(fd, 10000));
	assert_int_equal(rctx_timer_wakeups(), w0 + 1);
	next = rctx_loop_next(loop); /* clears the fd, takes a */
	assert_false(fd_readable(fd, 0));
	assert_true(next != -1 && next <= now + 51 * RCTX_MSEC + (1 << 20));
	/*
	 * Later than the planned wake-up: no wake-up needed (the planned
	 * wake-up is at most a tick later than a's deadline).
	 */
	cross(&b, now + 3600 * RCTX_SEC, false);
	assert_false(fd_readable(fd, 0));
	assert_int_equal(rctx_timer_wakeups(), w0 + 1);
	/*
	 * Earlier than planned: wakes. Not now + 1 ms: the plan may be a
	 * slot boundary before a's deadline (rctx_wheel_next may be early),
	 * which once fell within a millisecond of now (ASan run, about 1 in
	 * 60); a deadline just before the plan is always earlier.
	 */
	rctx_time_t planned = next;

	cross(&c, planned - 1000, false); /* 1 us: clear of the POLL bit */
	assert_true(fd_readable(fd, 10000));
	next = rctx_loop_next(loop);
	assert_true(next <= planned - 1000 + (1 << 20));
	assert_int_equal(run_at(loop, now + 100 * RCTX_MSEC), 2);
	assert_true(a.fired_now >= a.t.expires);
	assert_true(c.fired_now >= c.t.expires);
	/*
	 * Now the loop plans to sleep until b, an hour away, or until the
	 * level boundary where b re-files, which may come first: boundaries
	 * are aligned in absolute time (b crosses the 2^44 ns one whenever
	 * the monotonic clock is in the hour before it, as at 3.9-4.9 h of
	 * uptime). Nothing is due before the loop's time.
	 */
	next = rctx_loop_next(loop);
	assert_true(next > now + 100 * RCTX_MSEC);
	assert_true(next <= b.t.expires + (1 << 20));
	assert_false(fd_readable(fd, 0));
	/* Releasing b from another thread: the loop must look promptly. */
	cross(&b, 0, true);
	assert_true(fd_readable(fd, 10000));
	assert_int_equal(atomic_load(&b.dead), 0);
	rctx_loop_next(loop);
	assert_int_equal(atomic_load(&b.dead), 1);
	assert_int_equal(rctx_loop_next(loop), -1);
	rctx_timer_release(&a.t);
	rctx_timer_release(&c.t);
	assert_int_equal(atomic_load(&a.dead) + atomic_load(&c.dead), 2);
	rctx_loop_free(loop);
}

/* No-thread mode: loop_free moves pending timers to another loop. */
static pthread_barrier_t mig_bar;

static void *
mig_loop_main(void *arg)
{
	rctx_loop_t *loop = rctx_loop_new();
	long want = (long)arg;
	rctx_time_t end;

	(void)arg;
	pthread_barrier_wait(&mig_bar); /* B exists */
	pthread_barrier_wait(&mig_bar); /* A freed: timers are ours */
	end = rctx_now() + 20 * RCTX_SEC;
	while (atomic_load(&n_fired) < want && rctx_now() < end) {
		int ms = rctx_loop_timeout_ms(loop);
		struct pollfd p = { .fd = rctx_loop_fd(loop),
				    .events = POLLIN };

		poll(&p, 1, ms < 0 || ms > 100 ? 100 : ms);
		rctx_loop_run(loop, rctx_now());
	}
	pthread_barrier_wait(&mig_bar); /* main released them */
	rctx_loop_next(loop);
	rctx_loop_free(loop);
	return NULL;
}

static void
test_free_migrates(void **state)
{
	enum { N = 200 };
	struct lt *v = calloc(N, sizeof(*v));
	rctx_loop_t *a;
	pthread_t th;
	rctx_time_t now;
	int i;

	(void)state;
	assert_non_null(v);
	pthread_barrier_init(&mig_bar, NULL, 2);
	assert_int_equal(
	    pthread_create(&th, NULL, mig_loop_main, (void *)(long)(N - N / 4)),
	    0);
	pthread_barrier_wait(&mig_bar);
	a = rctx_loop_new();
	assert_non_null(a);
	now = rctx_now();
	for (i = 0; i < N; i++) {
		rctx_timer_init(&v[i].t);
		assert_int_equal(
		    rctx_timer_arm(&v[i].t, now + (20 + i % 30) * RCTX_MSEC),
		    0);
	}
	rctx_loop_next(a);
	for (i = 0; i < N / 4; i++)
		rctx_timer_cancel(&v[i].t);
	for (i = 0; i < N / 8; i++)
		rctx_timer_release(&v[i].t); /* A frees them */
	rctx_loop_free(a);
	pthread_barrier_wait(&mig_bar);
	/* B fires the rest with the real clock. */
	for (i = N / 4; i < N; i++) {
		rctx_time_t end = rctx_now() + 20 * RCTX_SEC;

		while (!atomic_load(&v[i].fired) && rctx_now() < end)
			usleep(1000);
		assert_int_equal(atomic_load(&v[i].fired), 1);
		assert_true(v[i].fired_real >= v[i].t.expires);
	}
	for (i = 0; i < N / 4; i++)
		assert_int_equal(atomic_load(&v[i].fired), 0);
	for (i = N / 8; i < N; i++)
		rctx_timer_release(&v[i].t);
	pthread_barrier_wait(&mig_bar);
	pthread_join(th, NULL);
	for (i = 0; i < N; i++)
		assert_int_equal(atomic_load(&v[i].dead), 1);
	pthread_barrier_destroy(&mig_bar);
	free(v);
}

/* Freeing the last loop hands its timers to library threads; a loop can
 * then still be made (0.1 refused it with EBUSY: the start-order trap). */
static void
test_free_last_to_library(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	struct lt a;
	rctx_time_t end;

	(void)state;
	assert_non_null(loop);
	memset(&a, 0, sizeof(a));
	rctx_timer_init(&a.t);
	assert_int_equal(rctx_timer_arm(&a.t, rctx_now() + 5 * RCTX_MSEC), 0);
	rctx_loop_free(loop);
	end = rctx_now() + 20 * RCTX_SEC;
	while (!atomic_load(&a.fired) && rctx_now() < end)
		usleep(1000);
	assert_int_equal(atomic_load(&a.fired), 1);
	assert_true(a.fired_real >= a.t.expires);
	/* Library threads now run, and a loop can still be made. */
	loop = rctx_loop_new();
	assert_non_null(loop);
	rctx_timer_release(&a.t);
	end = rctx_now() + 20 * RCTX_SEC;
	while (!atomic_load(&a.dead) && rctx_now() < end)
		usleep(1000);
	assert_int_equal(atomic_load(&a.dead), 1);
	rctx_loop_free(loop);
}

#ifdef RCTX_FAULT_INJECTION
static void
test_faults(void **state)
{
	rctx_loop_t *loop;

	(void)state;
	rctx_fault_arm(RCTX_FAULT_EVENTFD, 1);
	assert_null(rctx_loop_new());
	assert_int_equal(errno, EMFILE);
	rctx_fault_arm(RCTX_FAULT_EVENTFD, 0);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	assert_null(rctx_loop_new());
	assert_int_equal(errno, ENOMEM);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	loop = rctx_loop_new();
	assert_non_null(loop);
	rctx_loop_free(loop);
}

/* The last loop freed while no thread can start: its timers wait, parked,
 * and fire once a library thread starts. */
static void
test_free_parks(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	struct lt a, b;
	rctx_time_t end;

	(void)state;
	assert_non_null(loop);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	rctx_timer_init(&a.t);
	rctx_timer_init(&b.t);
	assert_int_equal(rctx_timer_arm(&a.t, rctx_now() + 2 * RCTX_MSEC), 0);
	rctx_fault_arm(RCTX_FAULT_THREAD, 1);
	rctx_loop_free(loop);
	rctx_fault_arm(RCTX_FAULT_THREAD, 0);
	usleep(20000);
	assert_int_equal(atomic_load(&a.fired), 0); /* no owner yet */
	/* The next arm starts a thread, which adopts the parked timer. */
	assert_int_equal(rctx_timer_arm(&b.t, rctx_now() + 2 * RCTX_MSEC), 0);
	end = rctx_now() + 20 * RCTX_SEC;
	while ((!atomic_load(&a.fired) || !atomic_load(&b.fired)) &&
	       rctx_now() < end)
		usleep(1000);
	assert_int_equal(atomic_load(&a.fired), 1);
	assert_int_equal(atomic_load(&b.fired), 1);
	assert_true(a.fired_real >= a.t.expires);
	rctx_timer_release(&a.t);
	rctx_timer_release(&b.t);
	assert_int_equal(atomic_load(&a.dead) + atomic_load(&b.dead), 2);
}
#endif

/* A NULL loop: -EINVAL from every entry point that returns a status,
 * rctx_loop_free(NULL) a no-op (api.c validates them all). */
static void
test_null_loop(void **state)
{
	(void)state;
	assert_int_equal(rctx_loop_fd(NULL), -EINVAL);
	assert_int_equal(rctx_loop_next(NULL), -EINVAL);
	assert_int_equal(rctx_loop_timeout_ms(NULL), -EINVAL);
	assert_int_equal(rctx_loop_run(NULL, rctx_now()), -EINVAL);
	rctx_loop_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stepped_clock, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_timeout_ms, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cross_thread_wake,
						setup_nothreads,
						teardown_nothreads),
		cmocka_unit_test_setup_teardown(
		    test_free_migrates, setup_nothreads, teardown_nothreads),
		cmocka_unit_test_setup_teardown(test_free_last_to_library,
						setup, teardown),
		cmocka_unit_test(test_null_loop),
#ifdef RCTX_FAULT_INJECTION
		cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_parks, setup,
						teardown),
#endif
	};

	return RUN_TESTS(tests);
}
