/* SPDX-License-Identifier: MIT */
/* Per-thread records (registry.c): claim, reuse at thread exit, shutdown. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "rctx.h"

#include "../src/registry.h"

struct rec {
	struct rctx_reg_rec hdr;
	int tag;
};

static _Atomic int exits;

static void
rec_exit(struct rctx_reg_rec *r)
{
	(void)r;
	atomic_fetch_add(&exits, 1);
}

/*
 * This binary arms no timer, so the stage slot is free for a registry of
 * the test's own.
 */
static struct rctx_reg reg =
    RCTX_REG_INIT(RCTX_REG_STAGE, sizeof(struct rec), rec_exit);

static bool
match_tag(const struct rctx_reg_rec *r, const void *arg)
{
	return ((const struct rec *)r)->tag == *(const int *)arg;
}

static void
init_tag(struct rctx_reg_rec *r, const void *arg)
{
	((struct rec *)r)->tag = *(const int *)arg;
}

static void *
claim_thread(void *arg)
{
	struct rctx_reg_rec *r = rctx_reg_claim(&reg, match_tag, init_tag, arg);

	/* The fast path returns the same record until the thread exits. */
	if (r == NULL || rctx_reg_mine(&reg) != r)
		return NULL;
	return r;
}

static size_t
count(void)
{
	size_t n = 0;

	for (struct rctx_reg_rec *r = rctx_reg_first(&reg); r; r = r->next)
		n++;
	return n;
}

static void
free_all(void)
{
	struct rctx_reg_rec *r = rctx_reg_take_all(&reg);

	while (r) {
		struct rctx_reg_rec *n = r->next;

		free(r);
		r = n;
	}
}

/* A record given up at thread exit is reused by the next matching claim,
 * and only a matching one. */
static void
test_reuse_after_exit(void **state)
{
	int one = 1, two = 2;
	pthread_t t;
	void *a, *b, *c;

	(void)state;
	atomic_store(&exits, 0);
	assert_int_equal(pthread_create(&t, NULL, claim_thread, &one), 0);
	assert_int_equal(pthread_join(t, &a), 0);
	assert_non_null(a);
	assert_int_equal(atomic_load(&exits), 1);
	assert_int_equal(pthread_create(&t, NULL, claim_thread, &one), 0);
	assert_int_equal(pthread_join(t, &b), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(pthread_create(&t, NULL, claim_thread, &two), 0);
	assert_int_equal(pthread_join(t, &c), 0);
	assert_non_null(c);
	assert_ptr_not_equal(a, c);
	assert_int_equal(((struct rec *)c)->tag, 2);
	assert_int_equal(count(), 2);
	assert_int_equal(atomic_load(&exits), 3);
	free_all();
	assert_int_equal(count(), 0);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;

static void
set_phase(int p)
{
	pthread_mutex_lock(&mu);
	phase = p;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void
wait_phase(int p)
{
	pthread_mutex_lock(&mu);
	while (phase < p)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void *
hold_thread(void *arg)
{
	void *r = claim_thread(arg);

	set_phase(1);
	wait_phase(2); /* the records are freed meanwhile */
	return r;      /* the exit hook must not touch the freed record */
}

/* A thread that exits after the records were taken (shutdown) neither
 * calls the exit hook nor writes to its freed record. */
static void
test_exit_after_take_all(void **state)
{
	int one = 1;
	pthread_t t;
	void *r;

	(void)state;
	atomic_store(&exits, 0);
	phase = 0;
	assert_int_equal(pthread_create(&t, NULL, hold_thread, &one), 0);
	wait_phase(1);
	assert_int_equal(count(), 1);
	free_all();
	set_phase(2);
	assert_int_equal(pthread_join(t, &r), 0);
	assert_non_null(r);
	assert_int_equal(atomic_load(&exits), 0);
	/* Claims start over. */
	assert_int_equal(pthread_create(&t, NULL, claim_thread, &one), 0);
	assert_int_equal(pthread_join(t, &r), 0);
	assert_non_null(r);
	assert_int_equal(count(), 1);
	free_all();
}

static void
after_fn(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
}

static void *
after_thread(void *arg)
{
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_after_t reg_after;

	/* This thread runs fn, so it claims an after-func runner record. */
	if (c == NULL || rctx_after_func(c, &reg_after, after_fn, arg) != 0)
		return NULL;
	rctx_cancel(c);
	rctx_release(c);
	set_phase(1);
	wait_phase(2); /* rctx_shutdown frees the runner records */
	return c;
}

/*
 * The same through the public API: a thread that ran an after-func exits
 * after rctx_shutdown. Before the shared registry its exit handler wrote
 * to its freed runner record (a heap-use-after-free under ASan and
 * valgrind, which run this suite).
 */
static void
test_after_runner_exit_after_shutdown(void **state)
{
	_Atomic int ran = 0;
	pthread_t t;
	void *r;

	(void)state;
	phase = 0;
	assert_int_equal(pthread_create(&t, NULL, after_thread, &ran), 0);
	wait_phase(1);
	assert_int_equal(atomic_load(&ran), 1);
	rctx_shutdown();
	set_phase(2);
	assert_int_equal(pthread_join(t, &r), 0);
	assert_non_null(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reuse_after_exit),
		cmocka_unit_test(test_exit_after_take_all),
		cmocka_unit_test(test_after_runner_exit_after_shutdown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
