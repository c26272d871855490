/* SPDX-License-Identifier: MIT */
/* Draining: enter/leave/join, cancel then wait, misuse, a drain under load. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rctx.h"
#include "util.h"

static void
never(void *arg)
{
	(void)arg;
	fail_msg("ran");
}

static void
test_bad_input(void **state)
{
	rctx_drain_t d, zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	assert_int_equal(rctx_drain_init(NULL, rctx_background()), -EINVAL);
	assert_int_equal(rctx_drain_init(&d, NULL), -EINVAL);
	assert_null(rctx_drain_ctx(NULL));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(rctx_drain_ctx(&zero));
	assert_int_equal(errno, EINVAL);
	/* NULL or never initialised: -EINVAL everywhere. */
	rctx_drain_t *bad[] = { NULL, &zero };
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(rctx_drain_enter(bad[i]), -EINVAL);
		assert_int_equal(rctx_drain_leave(bad[i]), -EINVAL);
		assert_int_equal(rctx_drain_join(bad[i], 0), -EINVAL);
		assert_int_equal(rctx_drain_cancel_join(bad[i], 0), -EINVAL);
		assert_int_equal(rctx_drain_run(bad[i], never, NULL), -EINVAL);
		assert_int_equal(rctx_drain_destroy(bad[i]), -EINVAL);
	}
	assert_int_equal(rctx_drain_init(&d, rctx_background()), 0);
	assert_int_equal(rctx_drain_run(&d, NULL, NULL), -EINVAL);
	assert_int_equal(rctx_drain_destroy(&d), 0);
	/* destroyed: no longer a drain */
	assert_int_equal(rctx_drain_enter(&d), -EINVAL);
}

static void
test_enter_leave_join(void **state)
{
	rctx_stats_t s0, s;
	rctx_drain_t d;
	rctx_time_t t0;

	(void)state;
	assert_int_equal(rctx_stats(&s0, sizeof(s0)), 0);
	assert_int_equal(rctx_drain_init(&d, rctx_background()), 0);
	assert_non_null(rctx_drain_ctx(&d));
	assert_false(rctx_done(rctx_drain_ctx(&d)));
	assert_int_equal(rctx_drain_join(&d, 0), 0); /* empty */
	for (int i = 0; i < 3; i++)
		assert_int_equal(rctx_drain_enter(&d), 0);
	assert_int_equal(rctx_drain_join(&d, 0), -ETIMEDOUT);
	t0 = rctx_now();
	assert_int_equal(rctx_drain_join(&d, 10 * RCTX_MSEC), -ETIMEDOUT);
	assert_true(rctx_now() - t0 >= 10 * RCTX_MSEC); /* never early */
	assert_int_equal(rctx_drain_destroy(&d), -EBUSY);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rctx_drain_join(&d, 0), -ETIMEDOUT);
		assert_int_equal(rctx_drain_leave(&d), 0);
	}
	assert_int_equal(rctx_drain_join(&d, 0), 0);
	assert_int_equal(rctx_drain_join(&d, -1), 0);
	/* The drain's context is counted like any other. */
	assert_int_equal(rctx_stats(&s, sizeof(s)), 0);
	assert_int_equal(s.live - s0.live, 1);
	assert_int_equal(rctx_drain_destroy(&d), 0);
	assert_int_equal(rctx_stats(&s, sizeof(s)), 0);
	assert_int_equal(s.live, s0.live);
}

static void
test_leave_without_enter(void **state)
{
	rctx_drain_t d;

	(void)state;
	assert_int_equal(rctx_drain_init(&d, rctx_background()), 0);
#ifdef RCTX_DEBUG
	{
		pid_t pid = fork();
		int st;

		assert_true(pid >= 0);
		if (pid == 0) {
			(void)rctx_drain_leave(&d);
			_exit(0); /* not reached: the leave aborts */
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	}
#else
	assert_int_equal(rctx_drain_leave(&d), -EPERM);
	assert_int_equal(rctx_drain_enter(&d), 0);
	assert_int_equal(rctx_drain_leave(&d), 0);
	assert_int_equal(rctx_drain_leave(&d), -EPERM);
	/* the count never went below zero */
	assert_int_equal(rctx_drain_join(&d, 0), 0);
#endif
	assert_int_equal(rctx_drain_destroy(&d), 0);
}

static void
test_cancel_join(void **state)
{
	rctx_drain_t d;
	rctx_t *parent = rctx_with_cancel(rctx_background());
	rctx_t *work;

	(void)state;
	assert_int_equal(rctx_drain_init(&d, parent), 0);
	work = rctx_with_cancel(rctx_drain_ctx(&d));
	assert_int_equal(rctx_drain_enter(&d), 0);
	assert_int_equal(rctx_drain_cancel_join(&d, 0), -ETIMEDOUT);
	/* cancelled: work under it sees it; the parent does not */
	assert_int_equal(rctx_err(work), ECANCELED);
	assert_false(rctx_done(parent));
	/* new work is refused; the piece inside may still leave */
	assert_int_equal(rctx_drain_enter(&d), -ECANCELED);
	assert_int_equal(rctx_drain_leave(&d), 0);
	assert_int_equal(rctx_drain_cancel_join(&d, -1), 0);
	assert_int_equal(rctx_drain_destroy(&d), 0);

	/* A drain under a parent that times out refuses with ETIMEDOUT. */
	rctx_t *t = rctx_with_timeout(parent, 0);
	assert_int_equal(rctx_drain_init(&d, t), 0);
	assert_int_equal(rctx_drain_enter(&d), -ETIMEDOUT);
	assert_int_equal(rctx_drain_join(&d, -1), 0);
	assert_int_equal(rctx_drain_destroy(&d), 0);
	rctx_release(t);
	rctx_release(work);
	rctx_release(parent);
}

struct self_join {
	rctx_drain_t *d, *other;
	int join, cancel_join, other_join;
};

static void
join_self(void *arg)
{
	struct self_join *sj = arg;

	sj->join = rctx_drain_join(sj->d, -1);
	sj->cancel_join = rctx_drain_cancel_join(sj->d, -1);
	sj->other_join = rctx_drain_join(sj->other, -1);
}

static void
run_nested(void *arg)
{
	struct self_join *sj = arg;

	/* inside `other`, then inside d: both are ours */
	assert_int_equal(rctx_drain_run(sj->d, join_self, sj), 0);
}

static void
test_join_from_inside(void **state)
{
	rctx_drain_t d, other;
	struct self_join sj = { &d, &other, 1, 1, 1 };

	(void)state;
	assert_int_equal(rctx_drain_init(&d, rctx_background()), 0);
	assert_int_equal(rctx_drain_init(&other, rctx_background()), 0);
	assert_int_equal(rctx_drain_run(&d, join_self, &sj), 0);
	assert_int_equal(sj.join, -EDEADLK);
	assert_int_equal(sj.cancel_join, -EDEADLK);
	assert_int_equal(sj.other_join, 0);	     /* another drain: fine */
	assert_false(rctx_done(rctx_drain_ctx(&d))); /* no effect */
	assert_int_equal(rctx_drain_join(&d, 0), 0); /* run left */

	sj.other_join = 1;
	assert_int_equal(rctx_drain_run(&other, run_nested, &sj), 0);
	assert_int_equal(sj.join, -EDEADLK);
	assert_int_equal(sj.other_join, -EDEADLK);
	assert_int_equal(rctx_drain_destroy(&d), 0);
	assert_int_equal(rctx_drain_destroy(&other), 0);
}

/* --- a drain under load --- */

#define WORKERS 4
struct load {
	rctx_drain_t d;
	_Atomic int inside;    /* workers between enter and leave */
	_Atomic long pieces;   /* pieces of work done */
	long written[WORKERS]; /* plain writes the joiner must see */
	_Atomic int started;
};

struct worker {
	struct load *l;
	int id;
	pthread_t tid;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct load *l = w->l;

	atomic_fetch_add(&l->started, 1);
	for (;;) {
		int r = rctx_drain_enter(&l->d);

		if (r == -ECANCELED)
			break;
		WCHECK(r == 0);
		WCHECK(!rctx_done(rctx_drain_ctx(&l->d)) ||
		       rctx_err(rctx_drain_ctx(&l->d)) == ECANCELED);
		atomic_fetch_add(&l->inside, 1);
		l->written[w->id]++;
		atomic_fetch_add(&l->pieces, 1);
		if (l->written[w->id] % 64 == 0)
			sched_yield();
		atomic_fetch_sub(&l->inside, 1);
		WCHECK(rctx_drain_leave(&l->d) == 0);
	}
	return NULL;
}

/* Work handed off: entered by main, left by a thread of its own. */
static void *
handed_off(void *arg)
{
	struct load *l = arg;

	atomic_fetch_add(&l->inside, 1);
	usleep(1000);
	atomic_fetch_sub(&l->inside, 1);
	WCHECK(rctx_drain_leave(&l->d) == 0);
	return NULL;
}

static void
test_drain_under_load(void **state)
{
	enum { ROUNDS = 20 * RCTX_STRESS_SCALE, HANDOFFS = 8 };
	rctx_stats_t s0, s;

	(void)state;
	assert_int_equal(rctx_stats(&s0, sizeof(s0)), 0);
	for (int round = 0; round < ROUNDS; round++) {
		struct load *l = calloc(1, sizeof(*l));
		struct worker w[WORKERS];
		pthread_t h[HANDOFFS];
		long total = 0;

		assert_non_null(l);
		assert_int_equal(rctx_drain_init(&l->d, rctx_background()), 0);
		for (int i = 0; i < WORKERS; i++) {
			w[i] = (struct worker){ .l = l, .id = i };
			assert_int_equal(
			    pthread_create(&w[i].tid, NULL, worker_main, &w[i]),
			    0);
		}
		for (int i = 0; i < HANDOFFS; i++) {
			assert_int_equal(rctx_drain_enter(&l->d), 0);
			assert_int_equal(
			    pthread_create(&h[i], NULL, handed_off, l), 0);
		}
		while (atomic_load(&l->started) < WORKERS ||
		       atomic_load(&l->pieces) < 1000)
			sched_yield();
		/* Cancel, then wait for every piece inside to leave. */
		assert_int_equal(rctx_drain_cancel_join(&l->d, -1), 0);
		assert_int_equal(atomic_load(&l->inside), 0);
		/* Nothing enters afterwards. */
		assert_int_equal(rctx_drain_enter(&l->d), -ECANCELED);
		/* Plain writes made before each leave are visible (order A):
		 * read them before the workers are joined. */
		for (int i = 0; i < WORKERS; i++)
			total += l->written[i];
		assert_int_equal(total, atomic_load(&l->pieces));
		for (int i = 0; i < WORKERS; i++)
			assert_int_equal(pthread_join(w[i].tid, NULL), 0);
		for (int i = 0; i < HANDOFFS; i++)
			assert_int_equal(pthread_join(h[i], NULL), 0);
		assert_int_equal(rctx_drain_destroy(&l->d), 0);
		free(l);
	}
	assert_int_equal(rctx_stats(&s, sizeof(s)), 0);
	assert_int_equal(s.live, s0.live);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_enter_leave_join),
		cmocka_unit_test(test_leave_without_enter),
		cmocka_unit_test(test_cancel_join),
		cmocka_unit_test(test_join_from_inside),
		cmocka_unit_test(test_drain_under_load),
	};

	return RUN_TESTS(tests);
}
