/* SPDX-License-Identifier: MIT */
/* Shutdown with live contexts, threads outliving it, nested after-funcs. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "rctx.h"

#include "../src/alloc.h" /* white-box: rctx_alloc_outstanding */
#include "../src/fault.h" /* white-box: allocation failure injection */

/* Generous bound for a wait that must end (never a timing assertion). */
#define LONG_WAIT (30 * RCTX_SEC)

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
count_fn(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
}

/*
 * Item 2: a shutdown must not free (and hand out again) contexts the
 * caller still holds because their deadline was armed; their deadlines
 * fire after the restart, cancels reach them, after-funcs run.
 */
static void
test_shutdown_keeps_held_contexts(void **state)
{
	enum { NNEW = 4096 };
	static rctx_t *fresh[NNEW];
	_Atomic int ran = 0;
	rctx_after_t reg;
	(void)state;

	rctx_t *parent = rctx_with_cancel(rctx_background());
	rctx_t *far = rctx_with_timeout(parent, 3600 * RCTX_SEC);
	/* before the arm: soon's deadline is at least t0 + 50 ms */
	rctx_time_t t0 = rctx_now();
	rctx_t *soon = rctx_with_timeout(rctx_background(), 50 * RCTX_MSEC);
	rctx_t *early = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	assert_non_null(parent);
	assert_non_null(far);
	assert_non_null(soon);
	assert_non_null(early);
	assert_int_equal(rctx_after_func(far, &reg, count_fn, (void *)&ran), 0);

	rctx_shutdown();

	/* Nothing the caller holds is handed out again. */
	for (int i = 0; i < NNEW; i++) {
		fresh[i] = rctx_with_cancel(rctx_background());
		assert_non_null(fresh[i]);
		assert_ptr_not_equal(fresh[i], far);
		assert_ptr_not_equal(fresh[i], soon);
		assert_ptr_not_equal(fresh[i], early);
	}
	for (int i = 0; i < NNEW; i++)
		rctx_release(fresh[i]);

	/* Their deadlines fire after the restart, never early. */
	assert_int_equal(rctx_wait(soon, LONG_WAIT), ETIMEDOUT);
	assert_true(rctx_now() - t0 >= 50 * RCTX_MSEC);
	assert_int_equal(rctx_wait(early, LONG_WAIT), ETIMEDOUT);
	assert_false(rctx_done(far));

	/* Cancelling the parent reaches the child; its after-func runs. */
	assert_int_equal(rctx_cancel_cause(parent, 77), 0);
	assert_int_equal(rctx_err(far), ECANCELED);
	assert_int_equal(rctx_cause(far), 77);
	assert_int_equal(atomic_load(&ran), 1);

	rctx_release(early);
	rctx_release(soon);
	rctx_release(far);
	rctx_release(parent);
	rctx_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
}

/*
 * Item 2 with precise expiry: a deadline the owner has already taken out
 * of the wheel into its near run (about a tick before it is due) is
 * parked by shutdown like any other and fires after the restart, never
 * early. Shutdown is swept across the last few ticks before the deadline
 * so that some rounds meet the timer in the near run; a round that
 * misses it (the timer fired first) checks the same things.
 */
static void
test_shutdown_parks_near_run_timers(void **state)
{
	(void)state;
	for (int k = 0; k < 40; k++) {
		rctx_time_t timeout = 4 * RCTX_MSEC;
		rctx_time_t t0 = rctx_now();
		rctx_t *c = rctx_with_timeout(rctx_background(), timeout);
		rctx_t *held = rctx_with_timeout(rctx_background(), timeout);

		assert_non_null(c);
		assert_non_null(held);
		/* Shut down 0 to 3.9 ms after arming. */
		struct timespec ts = { 0, (long)(k % 40) * 100000L };
		nanosleep(&ts, NULL);
		rctx_release(c); /* queued for the owner as the wheel stops */
		rctx_shutdown();
		assert_int_equal(rctx_wait(held, LONG_WAIT), ETIMEDOUT);
		assert_true(rctx_now() - t0 >= timeout);
		rctx_release(held);
	}
	rctx_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
}

/* Item 2: a held context released after shutdown, before any restart. */
static void
test_shutdown_then_release_held(void **state)
{
	(void)state;
	rctx_t *a = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	rctx_t *b = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(rctx_cancel(b), 0);

	rctx_shutdown();
	rctx_release(a);
	rctx_release(b);
	/* The next shutdown returns them, with or without a restart. */
	rctx_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);

	/* And the library still works. */
	rctx_t *c = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	assert_non_null(c);
	assert_int_equal(rctx_wait(c, LONG_WAIT), ETIMEDOUT);
	rctx_release(c);
	rctx_shutdown();
	assert_int_equal(rctx_alloc_outstanding(), 0);
}

/* ---- item 3: a thread that used rctx exits after the shutdown --------- */

struct outlive {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int phase; /* 1: the thread used rctx; 2: it may exit */
};

static void
outlive_set(struct outlive *o, int phase)
{
	pthread_mutex_lock(&o->mu);
	o->phase = phase;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

static void
outlive_wait(struct outlive *o, int phase)
{
	pthread_mutex_lock(&o->mu);
	while (o->phase < phase)
		pthread_cond_wait(&o->cv, &o->mu);
	pthread_mutex_unlock(&o->mu);
}

/* Uses every per-thread record: after-func runner, timer stage, cache. */
static void *
outlive_thread(void *arg)
{
	struct outlive *o = arg;
	_Atomic int ran = 0;
	rctx_after_t reg;

	for (int round = 0; round < 2; round++) {
		rctx_t *c = rctx_with_cancel(rctx_background());
		rctx_t *t = rctx_with_timeout(c, 3600 * RCTX_SEC);
		if (c == NULL || t == NULL ||
		    rctx_after_func(c, &reg, count_fn, (void *)&ran) != 0)
			abort();
		(void)rctx_cancel(c);
		rctx_release(t);
		rctx_release(c);
		outlive_set(o, 1 + 2 * round);
		/* Round 0: the library is shut down meanwhile; round 1 uses
		 * it again after the restart, then exits after a shutdown. */
		outlive_wait(o, 2 + 2 * round);
	}
	if (atomic_load(&ran) != 2)
		abort();
	return NULL;
}

static void
test_thread_exits_after_shutdown(void **state)
{
	struct outlive o = { PTHREAD_MUTEX_INITIALIZER,
			     PTHREAD_COND_INITIALIZER, 0 };
	pthread_t th;
	(void)state;

	assert_int_equal(pthread_create(&th, NULL, outlive_thread, &o), 0);
	outlive_wait(&o, 1);
	rctx_shutdown();
	outlive_set(&o, 2);
	outlive_wait(&o, 3);
	rctx_shutdown();
	outlive_set(&o, 4);
	assert_int_equal(pthread_join(th, NULL), 0);
	/* Whatever the thread's exit did, the library works afterwards. */
	rctx_t *c = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	assert_non_null(c);
	assert_int_equal(rctx_wait(c, LONG_WAIT), ETIMEDOUT);
	rctx_release(c);
	rctx_shutdown();
}

/* ---- item 5: a nested after-func must not hide the outer one ---------- */

struct nested {
	rctx_t *other;	   /* cancelled from inside the outer fn */
	rctx_t *done;	   /* registered on from inside the outer fn */
	_Atomic int phase; /* 1: outer fn started its nested work */
	_Atomic int finished;
	_Atomic int inner;
	_Atomic int stopper_returned;
	_Atomic bool outer_done;
};

static void
inner_fn(void *arg)
{
	struct nested *n = arg;

	atomic_fetch_add(&n->inner, 1);
}

static void
outer_fn(void *arg)
{
	struct nested *n = arg;
	rctx_after_t reg;

	/* A nested after-func through a cancel, and one through a
	 * registration on a done context: both run on this thread. */
	(void)rctx_cancel(n->other);
	assert_int_equal(rctx_after_func(n->done, &reg, inner_fn, n), 0);
	atomic_store(&n->phase, 1);
	/* The stopper must still be waiting: give it every chance to
	 * return early (a hang guard bounds it). */
	for (int i = 0; i < 200 && !atomic_load(&n->stopper_returned); i++)
		sleep_ms(1);
	atomic_store(&n->outer_done, atomic_load(&n->stopper_returned) == 0);
	atomic_store(&n->finished, 1);
}

struct stopper_arg {
	struct nested *n;
	rctx_after_t *reg;
	_Atomic int finished_at_return;
};

static void *
stopper_thread(void *arg)
{
	struct stopper_arg *s = arg;

	while (atomic_load(&s->n->phase) == 0)
		sched_yield();
	bool stopped = rctx_after_stop(s->reg);
	atomic_store(&s->finished_at_return,
		     stopped ? -1 : atomic_load(&s->n->finished));
	atomic_store(&s->n->stopper_returned, 1);
	return NULL;
}

static void
test_stop_waits_through_nested_after_func(void **state)
{
	struct nested n = { 0 };
	struct stopper_arg s = { 0 };
	rctx_after_t reg, oreg;
	pthread_t th;
	(void)state;

	rctx_t *c = rctx_with_cancel(rctx_background());
	n.other = rctx_with_cancel(rctx_background());
	n.done = rctx_with_cancel(rctx_background());
	assert_non_null(c);
	assert_non_null(n.other);
	assert_non_null(n.done);
	assert_int_equal(rctx_cancel(n.done), 0);
	assert_int_equal(rctx_after_func(n.other, &oreg, inner_fn, &n), 0);
	assert_int_equal(rctx_after_func(c, &reg, outer_fn, &n), 0);
	s.n = &n;
	s.reg = &reg;
	assert_int_equal(pthread_create(&th, NULL, stopper_thread, &s), 0);
	assert_int_equal(rctx_cancel(c), 0); /* runs outer_fn here */
	assert_int_equal(pthread_join(th, NULL), 0);
	/* stop lost (fn had started) and returned only after fn returned */
	assert_int_equal(atomic_load(&s.finished_at_return), 1);
	assert_true(atomic_load(&n.outer_done));
	assert_int_equal(atomic_load(&n.inner), 2);
	rctx_release(n.done);
	rctx_release(n.other);
	rctx_release(c);
}

#ifdef RCTX_FAULT_INJECTION
/* ---- item 9: a run whose thread gets no runner record ----------------- */

struct norec {
	rctx_t *c;
	_Atomic int started, finished, stopper_returned;
};

static void
slow_fn(void *arg)
{
	struct norec *n = arg;

	atomic_store(&n->started, 1);
	for (int i = 0; i < 200 && !atomic_load(&n->stopper_returned); i++)
		sleep_ms(1);
	atomic_store(&n->finished, 1);
}

static void *
norec_canceller(void *arg)
{
	struct norec *n = arg;

	/* The first allocation of this fresh thread is its runner record
	 * (no idle record exists after the shutdown): make it fail. */
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	(void)rctx_cancel(n->c);
	return NULL;
}

static void
test_stop_waits_without_runner_record(void **state)
{
	struct norec n = { 0 };
	rctx_after_t reg;
	pthread_t th;
	(void)state;

	n.c = rctx_with_cancel(rctx_background());
	assert_non_null(n.c);
	assert_int_equal(rctx_after_func(n.c, &reg, slow_fn, &n), 0);
	rctx_shutdown(); /* no runner record left to reuse */
	assert_int_equal(pthread_create(&th, NULL, norec_canceller, &n), 0);
	while (!atomic_load(&n.started))
		sched_yield();
	assert_false(rctx_after_stop(&reg));
	int finished = atomic_load(&n.finished);
	atomic_store(&n.stopper_returned, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	unsigned long calls = rctx_fault_calls(RCTX_FAULT_MALLOC);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	assert_true(calls >= 1); /* the injected failure was reached */
	assert_int_equal(finished, 1);
	rctx_release(n.c);
}
#endif

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shutdown_keeps_held_contexts),
		cmocka_unit_test(test_shutdown_then_release_held),
		cmocka_unit_test(test_shutdown_parks_near_run_timers),
		cmocka_unit_test(test_thread_exits_after_shutdown),
		cmocka_unit_test(test_stop_waits_through_nested_after_func),
#ifdef RCTX_FAULT_INJECTION
		cmocka_unit_test(test_stop_waits_without_runner_record),
#endif
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* one test, by name */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
