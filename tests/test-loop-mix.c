/* SPDX-License-Identifier: MIT */
/* Loops beside library threads: start order, who serves what, no-thread mode. */
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
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "near.h"
#include "owner.h"
#include "rctx.h"

/* A deadline context and where and when its after-func ran. */
struct rec {
	rctx_after_t reg;
	rctx_t *ctx;
	rctx_time_t deadline;
	rctx_time_t at;
	pthread_t who;
	_Atomic int fired;
	bool born_done; /* the deadline had passed when it was armed */
};

static void
on_done(void *arg)
{
	struct rec *r = arg;

	r->at = rctx_now();
	r->who = pthread_self();
	/* Release: publishes at/who; pairs with the acquire in wait_fired. */
	atomic_store_explicit(&r->fired, 1, memory_order_release);
}

static void
rec_arm(struct rec *r, rctx_time_t deadline)
{
	memset(r, 0, sizeof(*r));
	r->deadline = deadline;
	r->ctx = rctx_with_deadline(rctx_background(), deadline);
	assert_non_null(r->ctx);
	/* A thread that lost the CPU past the deadline made it done at
	 * once: its after-func then runs here, on the arming thread. */
	r->born_done = rctx_done(r->ctx);
	assert_int_equal(rctx_after_func(r->ctx, &r->reg, on_done, r), 0);
}

static bool
is_fired(struct rec *r)
{
	/* Acquire: pairs with the release in on_done. */
	return atomic_load_explicit(&r->fired, memory_order_acquire) != 0;
}

/* Hang guard only: the deadlines are milliseconds away. */
static void
wait_fired(struct rec *r, size_t n)
{
	rctx_time_t end = rctx_now() + 30 * RCTX_SEC;
	size_t i;

	for (i = 0; i < n; i++) {
		while (!is_fired(&r[i]) && rctx_now() < end)
			usleep(500);
		assert_true(is_fired(&r[i]));
		assert_true(r[i].at >= r[i].deadline); /* never early */
	}
}

static unsigned
library_threads(void)
{
	unsigned n;

	rctx_owner_lock();
	n = rctx_owner_nrunning_locked();
	rctx_owner_unlock();
	return n;
}

static int
setup(void **state)
{
	(void)state;
	rctx_shutdown(); /* no library thread, no loop */
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	rctx_shutdown();
	assert_int_equal(rctx_timer_threads(true), 0);
	return 0;
}

/* A loop run on its own thread until told to stop. */
struct looper {
	pthread_t th;
	pthread_barrier_t ready;
	_Atomic bool stop;
	long ran; /* sum of rctx_loop_run results */
};

static void *
looper_main(void *arg)
{
	struct looper *l = arg;
	rctx_loop_t *loop = rctx_loop_new();

	assert_non_null(loop);
	pthread_barrier_wait(&l->ready);
	while (!atomic_load(&l->stop)) {
		struct pollfd p = { .fd = rctx_loop_fd(loop),
				    .events = POLLIN };
		int ms = rctx_loop_timeout_ms(loop);

		(void)poll(&p, 1, ms < 0 || ms > 2 ? 2 : ms);
		l->ran += rctx_loop_run(loop, rctx_now());
	}
	rctx_loop_free(loop);
	return NULL;
}

static void
looper_start(struct looper *l)
{
	memset(l, 0, sizeof(*l));
	pthread_barrier_init(&l->ready, NULL, 2);
	assert_int_equal(pthread_create(&l->th, NULL, looper_main, l), 0);
	pthread_barrier_wait(&l->ready);
}

static void
looper_stop(struct looper *l)
{
	atomic_store(&l->stop, true);
	pthread_join(l->th, NULL);
	pthread_barrier_destroy(&l->ready);
}

/* Run the calling thread's loop with rctx_loop_epoll_wait until r fired. */
static long
run_own_loop(rctx_loop_t *loop, struct rec *r)
{
	struct epoll_event ev = { .events = EPOLLIN }, out[4];
	rctx_time_t end = rctx_now() + 30 * RCTX_SEC;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	long ran = 0;

	assert_true(ep >= 0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, rctx_loop_fd(loop), &ev),
			 0);
	while (!is_fired(r) && rctx_now() < end) {
		int n = rctx_loop_epoll_wait(loop, ep, out, 4);

		assert_true(n >= 0 || n == -EINTR);
		ran += rctx_loop_run(loop, rctx_now());
	}
	close(ep);
	return ran;
}

/*
 * A deadline armed before the first loop: the loop is still made (0.1:
 * EBUSY until rctx_shutdown), and the deadline fires on a library thread,
 * not in the loop. A deadline armed on the loop's thread fires in it.
 */
static void
test_arm_before_loop(void **state)
{
	struct rec a, b;
	rctx_loop_t *loop;
	long ran = 0;
	rctx_time_t end;

	(void)state;
	rec_arm(&a, rctx_now() + 5 * RCTX_MSEC);
	loop = rctx_loop_new();
	assert_non_null(loop);
	end = rctx_now() + 30 * RCTX_SEC;
	while (!is_fired(&a) && rctx_now() < end) {
		struct pollfd p = { .fd = rctx_loop_fd(loop),
				    .events = POLLIN };

		(void)poll(&p, 1, 2);
		ran += rctx_loop_run(loop, rctx_now());
	}
	wait_fired(&a, 1);
	/* a was armed before this thread owned a loop: a library thread
	 * fires it, or, if this thread's stage still held it when the loop
	 * came, the loop does; either way exactly once, never early. */
	if (a.born_done)
		assert_int_equal(ran, 0);
	else if (pthread_equal(a.who, pthread_self()))
		assert_int_equal(ran, 1);
	else
		assert_int_equal(ran, 0);

	rec_arm(&b, rctx_now() + 3 * RCTX_MSEC);
	ran = run_own_loop(loop, &b);
	wait_fired(&b, 1);
	assert_true(pthread_equal(b.who, pthread_self()));
	assert_int_equal(ran, b.born_done ? 0 : 1);
	rctx_release(a.ctx);
	rctx_release(b.ctx);
	rctx_loop_free(loop);
}

static int
count_born_done(const struct rec *r, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += r[i].born_done;
	return k;
}

/* Deadlines of a loopless thread never run inside another thread's loop. */
static void
test_loopless_not_in_loop(void **state)
{
	enum { N = 40 };
	struct rec *r = calloc(N, sizeof(*r));
	struct looper l;
	int i;

	(void)state;
	assert_non_null(r);
	looper_start(&l);
	for (i = 0; i < N; i++)
		rec_arm(&r[i], rctx_now() + (1 + i % 10) * RCTX_MSEC);
	wait_fired(r, N);
	looper_stop(&l);
	assert_int_equal(l.ran, 0);
	for (i = 0; i < N; i++) {
		assert_false(pthread_equal(r[i].who, l.th));
		if (!r[i].born_done)
			assert_false(pthread_equal(r[i].who, pthread_self()));
		rctx_release(r[i].ctx);
	}
	assert_true(library_threads() > 0);
	free(r);
}

/*
 * No-thread mode: no loop, no deadline (EAGAIN); loopless deadlines run in
 * the loop; a freed loop's deadline waits for the next loop; no library
 * timer thread ever starts. Refusing threads while some run: EBUSY.
 */
static void
test_no_threads(void **state)
{
	enum { N = 20 };
	struct rec *r = calloc(N, sizeof(*r));
	struct rec late;
	struct looper l;
	rctx_loop_t *loop;
	long ran;
	int i;

	(void)state;
	assert_non_null(r);
	assert_int_equal(rctx_timer_threads(false), 0);
	errno = 0;
	assert_null(rctx_with_timeout(rctx_background(), RCTX_MSEC));
	assert_int_equal(errno, EAGAIN);

	looper_start(&l);
	for (i = 0; i < N; i++)
		rec_arm(&r[i], rctx_now() + (1 + i % 5) * RCTX_MSEC);
	wait_fired(r, N);
	for (i = 0; i < N; i++)
		assert_true(r[i].born_done || pthread_equal(r[i].who, l.th));
	/* Pending when its loop goes: parked until the next loop (2 s: the
	 * looper must stop before it is due, even under valgrind). */
	rec_arm(&late, rctx_now() + 2 * RCTX_SEC);
	looper_stop(&l);
	assert_true(l.ran >= N - count_born_done(r, N));
	assert_false(is_fired(&late));
	loop = rctx_loop_new();
	assert_non_null(loop);
	ran = run_own_loop(loop, &late);
	wait_fired(&late, 1);
	assert_true(pthread_equal(late.who, pthread_self()));
	assert_int_equal(ran, 1);
	assert_int_equal(library_threads(), 0);
	rctx_loop_free(loop);
	for (i = 0; i < N; i++)
		rctx_release(r[i].ctx);
	rctx_release(late.ctx);

	/* Threads allowed again: a loopless deadline starts one. */
	assert_int_equal(rctx_timer_threads(true), 0);
	rec_arm(&late, rctx_now() + RCTX_MSEC);
	wait_fired(&late, 1);
	assert_false(pthread_equal(late.who, pthread_self()));
	assert_int_equal(rctx_timer_threads(false), -EBUSY);
	rctx_release(late.ctx);
	free(r);
}

/* Precision in loop mode: the exact deadline once it is near. */
static void
test_loop_exact_next(void **state)
{
	rctx_loop_t *loop = rctx_loop_new();
	rctx_time_t now = rctx_now(), d, next;
	struct timespec ts;
	struct rec a, far;
	int tries;

	(void)state;
	assert_non_null(loop);
	assert_int_equal(rctx_loop_timeout_ts(loop, &ts), 0); /* none */
	rec_arm(&far, now + 10 * RCTX_SEC);
	next = rctx_loop_next(loop);
	assert_true(next > now && next <= far.deadline);
	/* A deadline 100 us away: if the thread lost the CPU for longer
	 * than that, the context is born done and armed nothing; try again
	 * (the check is of the loop, not of the machine's speed). */
	for (tries = 0;; tries++) {
		now = rctx_now();
		d = now + 100 * RCTX_USEC + 7;
		rec_arm(&a, d);
		if (!rctx_done(a.ctx) || tries == 1000)
			break;
		assert_true(rctx_after_stop(&a.reg) || is_fired(&a));
		rctx_release(a.ctx);
	}
	assert_false(rctx_done(a.ctx));
	assert_int_equal(rctx_loop_next(loop), d);
	assert_int_equal(rctx_loop_timeout_ts(loop, &ts), 1);
	assert_true(ts.tv_sec == 0 && ts.tv_nsec <= d - now);
	assert_int_equal(rctx_loop_run(loop, d - 1), 0); /* never early */
	assert_false(is_fired(&a));
	assert_int_equal(rctx_loop_run(loop, d), 1);
	assert_true(is_fired(&a));
	next = rctx_loop_next(loop);
	assert_true(next > d && next <= far.deadline);
	rctx_release(a.ctx);
	rctx_release(far.ctx);
	rctx_loop_free(loop);
}

/* Bad input to the new entry points. */
static void
test_bad_input(void **state)
{
	struct epoll_event ev;
	struct timespec ts;
	rctx_loop_t *loop;

	(void)state;
	assert_int_equal(rctx_loop_timeout_ts(NULL, &ts), -EINVAL);
	assert_int_equal(rctx_loop_epoll_wait(NULL, 0, &ev, 1), -EINVAL);
	loop = rctx_loop_new();
	assert_non_null(loop);
	assert_int_equal(rctx_loop_timeout_ts(loop, NULL), -EINVAL);
	assert_int_equal(rctx_loop_epoll_wait(loop, 0, NULL, 1), -EINVAL);
	assert_int_equal(rctx_loop_epoll_wait(loop, 0, &ev, 0), -EINVAL);
	assert_int_equal(rctx_loop_epoll_wait(loop, -1, &ev, 1), -EBADF);
	rctx_loop_free(loop);
}

/* The near run (near.c): sorted merges, O(1) removal, pop by time. */
static void
test_near_run(void **state)
{
	enum { N = 500 };
	struct rctx_wheel_timer *v = calloc(N, sizeof(*v)), *l = NULL, *t;
	struct rctx_near r;
	unsigned seed = 7;
	rctx_time_t last = 0;
	size_t got = 0;
	int i;

	(void)state;
	assert_non_null(v);
	rctx_near_init(&r);
	for (i = 0; i < N; i++) {
		rctx_wheel_timer_init(&v[i]);
		v[i].expires = rand_r(&seed) % 100000;
		v[i].next = l;
		l = &v[i];
		if (i % 100 == 99) { /* five batches */
			rctx_near_merge(&r, l, 100, INT64_MIN);
			l = NULL;
		}
	}
	assert_int_equal(r.count, N);
	for (i = 0; i < N; i += 3) {
		assert_true(rctx_near_has(&v[i]));
		rctx_near_del(&r, &v[i]);
		assert_false(rctx_near_has(&v[i]));
	}
	t = rctx_near_pop(&r, 50000);
	for (; t; t = t->next, got++) {
		assert_true(t->expires >= last && t->expires <= 50000);
		assert_null(t->pprev);
		last = t->expires;
	}
	assert_true(rctx_near_first(&r) > 50000);
	for (t = rctx_near_drain(&r); t; t = t->next, got++) {
		assert_true(t->expires >= last);
		last = t->expires;
	}
	assert_int_equal(got, N - (N + 2) / 3);
	assert_int_equal(r.count, 0);
	assert_int_equal(rctx_near_first(&r), INT64_MAX);
	free(v);
}

/*
 * Nodes already due when merged skip the sort (the ready list): a pop
 * takes exactly those due at its own time (a clock behind the merge's
 * keeps the rest), first() is never later than the earliest left, and
 * removal and drain reach both lists.
 */
static void
test_near_ready(void **state)
{
	enum { N = 600 };
	struct rctx_wheel_timer *v = calloc(N, sizeof(*v)), *l = NULL, *t;
	rctx_time_t min_left = INT64_MAX, last = INT64_MIN;
	struct rctx_near r;
	unsigned seed = 11;
	size_t got = 0, dels = 0, ready = 0;
	int i;

	(void)state;
	assert_non_null(v);
	rctx_near_init(&r);
	for (i = 0; i < N; i++) {
		rctx_wheel_timer_init(&v[i]);
		v[i].expires = rand_r(&seed) % 100000;
		ready += v[i].expires <= 60000;
		v[i].next = l;
		l = &v[i];
		if (i % 200 == 199) { /* three batches, merged at 60000 */
			rctx_near_merge(&r, l, 200, 60000);
			l = NULL;
		}
	}
	assert_true(ready > 0 && ready < N);
	assert_int_equal(r.count, N);
	for (i = 0; i < N; i += 5) {
		assert_true(rctx_near_has(&v[i]));
		rctx_near_del(&r, &v[i]);
		assert_false(rctx_near_has(&v[i]));
		dels++;
	}
	assert_int_equal(r.count, N - dels);
	for (i = 0; i < N; i++)
		if (i % 5 != 0 && v[i].expires < min_left)
			min_left = v[i].expires;
	assert_true(rctx_near_first(&r) <= min_left);
	/* A pop at 30000, behind the merge's clock: only those due then. */
	for (t = rctx_near_pop(&r, 30000); t; t = t->next, got++) {
		assert_true(t->expires <= 30000);
		assert_null(t->pprev);
	}
	min_left = INT64_MAX;
	for (i = 0; i < N; i++) {
		if (i % 5 == 0 || v[i].expires <= 30000)
			continue;
		assert_true(rctx_near_has(&v[i]));
		if (v[i].expires < min_left)
			min_left = v[i].expires;
	}
	assert_int_equal(rctx_near_first(&r), min_left); /* exact again */
	for (t = rctx_near_pop(&r, 60000); t; t = t->next, got++)
		assert_true(t->expires > 30000 && t->expires <= 60000);
	assert_true(rctx_near_first(&r) > 60000);
	for (t = rctx_near_drain(&r); t; t = t->next, got++) {
		assert_true(t->expires > 60000 && t->expires >= last);
		assert_null(t->pprev);
		last = t->expires;
	}
	assert_int_equal(got, N - dels);
	assert_int_equal(r.count, 0);
	assert_int_equal(rctx_near_first(&r), INT64_MAX);
	free(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_arm_before_loop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_loopless_not_in_loop,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_threads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_loop_exact_next, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup,
						teardown),
		cmocka_unit_test(test_near_run),
		cmocka_unit_test(test_near_ready),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
