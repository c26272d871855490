/* SPDX-License-Identifier: MIT */
/* Unit tests of mctx, the mutex baseline that serves as the fuzzers' oracle. */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "mctx.h"
#include "util.h"

#define HOUR (3600 * MCTX_SEC)

static int key_a, key_b, key_c, key_d;

static int
teardown(void **state)
{
	(void)state;
	mctx_shutdown();
	return 0;
}

/* ------------------------------------------------------------- roots */

static void
test_roots(void **state)
{
	mctx_t *roots[] = { mctx_background(), mctx_todo(), NULL };
	mctx_time_t d = 123;

	(void)state;
	assert_ptr_not_equal(mctx_background(), mctx_todo());
	for (int i = 0; i < 3; i++) {
		mctx_t *r = roots[i];

		assert_int_equal(mctx_err(r), 0);
		assert_int_equal(mctx_cause(r), 0);
		assert_false(mctx_done(r));
		assert_false(mctx_deadline(r, &d));
		assert_int_equal(d, 123);
		assert_null(mctx_value(r, &key_a));
		assert_int_equal(mctx_fd(r), -EOPNOTSUPP);
		assert_int_equal(mctx_wait(r, MCTX_MSEC), 0);
		assert_int_equal(mctx_cancel(r), -EINVAL);
		assert_int_equal(mctx_cancel_cause(r, 5), -EINVAL);
		assert_ptr_equal(mctx_retain(r), r);
		mctx_release(r);
		assert_false(mctx_done(r));
	}
}

static void
test_constructor_einval(void **state)
{
	(void)state;
	errno = 0;
	assert_null(mctx_with_cancel(NULL));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_with_deadline(NULL, 5));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_with_timeout(NULL, 5));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_with_deadline_cause(NULL, 5, 1));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_with_timeout_cause(NULL, 5, 1));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_with_value(NULL, &key_a, NULL));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_with_value(mctx_background(), NULL, NULL));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(mctx_without_cancel(NULL));
	assert_int_equal(errno, EINVAL);
	mctx_release(NULL);
}

/* -------------------------------------------------------- cancellation */

static void
test_cancel_rules(void **state)
{
	mctx_t *a = mctx_with_cancel(mctx_background());
	mctx_t *b = mctx_with_cancel(mctx_background());
	mctx_t *c = mctx_with_cancel(mctx_background());
	mctx_t *v = mctx_with_value(a, &key_a, NULL);
	mctx_t *w = mctx_without_cancel(a);

	(void)state;
	assert_int_equal(mctx_cause(a), 0);
	assert_int_equal(mctx_cancel(NULL), -EINVAL);
	assert_int_equal(mctx_cancel(v), -EINVAL);
	assert_int_equal(mctx_cancel(w), -EINVAL);
	assert_false(mctx_done(a));

	assert_int_equal(mctx_cancel(a), 0);
	assert_int_equal(mctx_err(a), ECANCELED);
	assert_int_equal(mctx_cause(a), ECANCELED);
	assert_int_equal(mctx_cancel_cause(a, 9), -EALREADY);
	assert_int_equal(mctx_cause(a), ECANCELED);
	assert_int_equal(mctx_cancel(v), -EINVAL);

	assert_int_equal(mctx_cancel_cause(b, 0), 0);
	assert_int_equal(mctx_cause(b), ECANCELED);
	assert_int_equal(mctx_cancel_cause(c, 42), 0);
	assert_int_equal(mctx_err(c), ECANCELED);
	assert_int_equal(mctx_cause(c), 42);
	assert_int_equal(mctx_cancel(c), -EALREADY);
	assert_int_equal(mctx_cause(c), 42);

	mctx_release(v);
	mctx_release(w);
	mctx_release(a);
	mctx_release(b);
	mctx_release(c);
}

static void
test_cancel_tree(void **state)
{
	mctx_t *root = mctx_with_cancel(mctx_background());
	mctx_t *v1 = mctx_with_value(root, &key_a, &key_a);
	mctx_t *c1 = mctx_with_cancel(v1);
	mctx_t *t1 = mctx_with_timeout(c1, HOUR);
	mctx_t *v2 = mctx_with_value(t1, &key_b, NULL);
	mctx_t *c2 = mctx_with_cancel(v2);
	mctx_t *sib = mctx_with_cancel(root);
	mctx_t *own = mctx_with_cancel(c1);
	mctx_t *all[] = { root, v1, c1, t1, v2, c2, sib };

	(void)state;
	/* A child cancelled first keeps its own cause. */
	assert_int_equal(mctx_cancel_cause(own, 77), 0);
	/* Cancelling a child leaves parent and siblings alone. */
	assert_int_equal(mctx_cancel(sib), 0);
	assert_false(mctx_done(root));
	assert_false(mctx_done(c1));
	assert_false(mctx_done(c2));

	assert_int_equal(mctx_cancel_cause(root, 13), 0);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(mctx_err(all[i]), ECANCELED);
		assert_int_equal(mctx_cause(all[i]), 13);
	}
	assert_int_equal(mctx_cause(sib), ECANCELED);
	assert_int_equal(mctx_cause(own), 77);
	assert_int_equal(mctx_cancel(c2), -EALREADY);
	assert_int_equal(mctx_cancel(t1), -EALREADY);
	mctx_release(own);
	for (size_t i = 7; i-- > 0;)
		mctx_release(all[i]);
}

static void
test_born_done(void **state)
{
	mctx_t *p = mctx_with_cancel(mctx_background());
	mctx_t *v = mctx_with_value(p, &key_a, NULL);
	mctx_t *vv = mctx_with_value(v, &key_b, NULL);
	mctx_t *kids[6];
	int n = 0;

	(void)state;
	assert_int_equal(mctx_cancel_cause(p, 31), 0);
	kids[n++] = mctx_with_cancel(vv);
	kids[n++] = mctx_with_timeout(vv, HOUR);
	kids[n++] = mctx_with_deadline_cause(vv, mctx_now() + HOUR, 8);
	kids[n++] = mctx_with_timeout_cause(vv, -1, 8);
	kids[n++] = mctx_with_value(vv, &key_c, NULL);
	kids[n++] = mctx_with_deadline(vv, 0);
	for (int i = 0; i < n; i++) {
		assert_non_null(kids[i]);
		assert_int_equal(mctx_err(kids[i]), ECANCELED);
		assert_int_equal(mctx_cause(kids[i]), 31);
	}
	assert_int_equal(mctx_cancel(kids[0]), -EALREADY);
	for (int i = 0; i < n; i++)
		mctx_release(kids[i]);

	/* without_cancel is never done, even under a done parent. */
	mctx_t *w = mctx_without_cancel(vv);

	assert_false(mctx_done(w));
	assert_int_equal(mctx_cause(w), 0);
	mctx_release(w);
	mctx_release(vv);
	mctx_release(v);
	mctx_release(p);
}

/* The chain of SEMANTICS 8 and 28: 200,000 deep, no recursion. */
static void
test_deep_chain(void **state)
{
	enum { DEPTH = 200000 };
	mctx_t *root = mctx_with_cancel(mctx_background());
	mctx_t *c = mctx_retain(root), *n;
	mctx_t *mid = NULL;

	(void)state;
	for (int i = 0; i < DEPTH; i++) {
		if (i % 3 == 0)
			n = mctx_with_value(c, &key_a, NULL);
		else if (i % 3 == 1)
			n = mctx_with_cancel(c);
		else
			n = mctx_with_timeout(c, HOUR);
		assert_non_null(n);
		if (i == DEPTH / 2)
			mid = mctx_retain(n);
		mctx_release(c);
		c = n;
	}
	assert_false(mctx_done(c));
	assert_int_equal(mctx_cancel_cause(root, 5), 0);
	assert_int_equal(mctx_err(c), ECANCELED);
	assert_int_equal(mctx_cause(c), 5);
	assert_int_equal(mctx_cause(mid), 5);
	mctx_release(root);
	mctx_release(mid);
	mctx_release(c); /* frees the whole chain, iteratively */

	/* And a live chain freed without being cancelled. */
	c = mctx_with_cancel(mctx_background());
	for (int i = 0; i < DEPTH; i++) {
		n = mctx_with_cancel(c);
		mctx_release(c);
		c = n;
	}
	mctx_release(c);
}

static void
test_wide(void **state)
{
	enum { N = 100000 };
	mctx_t *p = mctx_with_cancel(mctx_background());
	mctx_t **kids = malloc(N * sizeof(*kids));

	(void)state;
	assert_non_null(kids);
	for (int i = 0; i < N; i++)
		kids[i] = mctx_with_cancel(p);
	/* Cancel every other one first: they leave the parent's list. */
	for (int i = 0; i < N; i += 2)
		assert_int_equal(mctx_cancel_cause(kids[i], 2), 0);
	assert_int_equal(mctx_cancel_cause(p, 3), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(mctx_cause(kids[i]), i % 2 ? 3 : 2);
	for (int i = 0; i < N; i++)
		mctx_release(kids[i]);
	free(kids);
	mctx_release(p);
}

/* ---------------------------------------------------------- deadlines */

static void
test_deadline_inherit(void **state)
{
	mctx_time_t base = mctx_now() + HOUR, d;
	mctx_t *t = mctx_with_deadline(mctx_background(), base);
	mctx_t *later = mctx_with_deadline_cause(t, base + 5, 99);
	mctx_t *sooner = mctx_with_deadline(t, base - 5);
	mctx_t *v = mctx_with_value(t, &key_a, NULL);
	mctx_t *c = mctx_with_cancel(v);
	mctx_t *w = mctx_without_cancel(t);
	mctx_t *big = mctx_with_timeout(mctx_background(), INT64_MAX);

	(void)state;
	assert_true(mctx_deadline(t, &d));
	assert_int_equal(d, base);
	assert_true(mctx_deadline(later, &d));
	assert_int_equal(d, base);
	assert_true(mctx_deadline(sooner, &d));
	assert_int_equal(d, base - 5);
	assert_true(mctx_deadline(v, &d));
	assert_int_equal(d, base);
	assert_true(mctx_deadline(c, &d));
	assert_int_equal(d, base);
	assert_false(mctx_deadline(w, &d));
	assert_true(mctx_deadline(t, NULL));
	/* now + INT64_MAX saturates: no wrap into the past, never done. */
	assert_false(mctx_done(big));
	assert_true(mctx_deadline(big, &d));
	assert_int_equal(d, INT64_MAX);
	/* An equal deadline: a plain child of the parent's deadline. */
	mctx_t *same = mctx_with_deadline_cause(big, INT64_MAX, 3);

	assert_true(mctx_deadline(same, &d));
	assert_int_equal(d, INT64_MAX);
	assert_int_equal(mctx_cancel(big), 0);
	assert_int_equal(mctx_cause(same), ECANCELED);
	mctx_release(same);
	mctx_release(big);
	mctx_release(w);
	mctx_release(c);
	mctx_release(v);
	mctx_release(sooner);
	mctx_release(later);
	mctx_release(t);
}

static void
test_deadline_past(void **state)
{
	mctx_t *a = mctx_with_deadline(mctx_background(), mctx_now() - 1);
	mctx_t *b = mctx_with_timeout(mctx_background(), 0);
	mctx_t *c = mctx_with_timeout_cause(mctx_background(), -5, 66);
	mctx_t *d = mctx_with_deadline_cause(mctx_background(), INT64_MIN, 0);

	(void)state;
	assert_int_equal(mctx_err(a), ETIMEDOUT);
	assert_int_equal(mctx_cause(a), ETIMEDOUT);
	assert_int_equal(mctx_err(b), ETIMEDOUT);
	assert_int_equal(mctx_err(c), ETIMEDOUT);
	assert_int_equal(mctx_cause(c), 66);
	assert_int_equal(mctx_err(d), ETIMEDOUT);
	assert_int_equal(mctx_cancel(a), -EALREADY);
	assert_int_equal(mctx_cancel_cause(c, 3), -EALREADY);
	assert_int_equal(mctx_cause(c), 66);
	mctx_release(a);
	mctx_release(b);
	mctx_release(c);
	mctx_release(d);
}

/* Deadlines served by an event loop with a caller-supplied now. */
static void
test_loop_expiry(void **state)
{
	mctx_loop_t *loop = mctx_loop_new();
	mctx_time_t base = mctx_now() + HOUR;
	mctx_t *p, *k, *v, *q, *ign, *tie, *x;

	(void)state;
	assert_non_null(loop);
	assert_int_equal(mctx_loop_next(loop), -1);
	assert_int_equal(mctx_loop_timeout_ms(loop), -1);
	errno = 0;
	assert_null(mctx_loop_new());
	assert_int_equal(errno, EBUSY);

	p = mctx_with_deadline_cause(mctx_background(), base, 99);
	k = mctx_with_cancel(p);
	v = mctx_with_value(k, &key_a, NULL);
	/* Deadlines at or after the parent's: their causes are ignored. */
	ign = mctx_with_deadline_cause(p, base + 10, 55);
	tie = mctx_with_deadline_cause(p, base, 44);
	q = mctx_with_deadline_cause(mctx_background(), base + 20, 12);
	x = mctx_with_deadline_cause(mctx_background(), base + 30, 0);
	assert_int_equal(mctx_loop_next(loop), base);
	assert_true(mctx_loop_timeout_ms(loop) > 0);

	/* Never early. */
	assert_int_equal(mctx_loop_run(loop, base - 1), 0);
	assert_false(mctx_done(p));
	assert_false(mctx_done(tie));

	/* p fires; its children get its cause, never their own. */
	assert_int_equal(mctx_loop_run(loop, base), 1);
	assert_int_equal(mctx_err(p), ETIMEDOUT);
	assert_int_equal(mctx_cause(p), 99);
	assert_int_equal(mctx_err(v), ETIMEDOUT);
	assert_int_equal(mctx_cause(v), 99);
	assert_int_equal(mctx_cause(ign), 99);
	assert_int_equal(mctx_cause(tie), 99);
	assert_int_equal(mctx_cancel(k), -EALREADY);
	assert_int_equal(mctx_loop_next(loop), base + 20);

	/* Cancel before expiry: ECANCELED with the cancel's cause. */
	assert_int_equal(mctx_cancel_cause(q, 7), 0);
	assert_int_equal(mctx_err(q), ECANCELED);
	assert_int_equal(mctx_cause(q), 7);
	assert_int_equal(mctx_loop_next(loop), base + 30);
	assert_int_equal(mctx_loop_run(loop, base + 25), 0);
	assert_int_equal(mctx_cause(q), 7);

	/* Releasing a pending deadline context removes its timer. */
	mctx_release(x);
	assert_int_equal(mctx_loop_next(loop), -1);
	assert_int_equal(mctx_loop_run(loop, INT64_MAX - 1), 0);

	mctx_release(q);
	mctx_release(tie);
	mctx_release(ign);
	mctx_release(v);
	mctx_release(k);
	mctx_release(p);
	mctx_loop_free(loop);
}

struct arm_arg {
	mctx_t *ctx;
	mctx_time_t when;
};

static void *
arm_main(void *p)
{
	struct arm_arg *a = p;

	a->ctx = mctx_with_deadline(mctx_background(), a->when);
	return NULL;
}

static void
test_loop_fd_and_free(void **state)
{
	mctx_loop_t *loop = mctx_loop_new();
	mctx_time_t base = mctx_now() + HOUR;
	mctx_t *mine = mctx_with_deadline(mctx_background(), base);
	struct arm_arg a = { .when = base - 10 };
	pthread_t th;
	int lfd;

	(void)state;
	assert_non_null(loop);
	lfd = mctx_loop_fd(loop);
	assert_true(lfd >= 0);
	assert_false(readable(lfd));
	/* Another thread arms an earlier deadline: the loop is poked. */
	assert_int_equal(pthread_create(&th, NULL, arm_main, &a), 0);
	pthread_join(th, NULL);
	assert_non_null(a.ctx);
	assert_true(readable(lfd));
	assert_int_equal(mctx_loop_next(loop), base - 10);
	assert_false(readable(lfd));
	assert_int_equal(mctx_loop_run(loop, base), 2);
	assert_int_equal(mctx_err(a.ctx), ETIMEDOUT);
	mctx_release(a.ctx);
	mctx_release(mine);

	/* Freeing the loop hands pending deadlines to the library thread. */
	mine = mctx_with_timeout(mctx_background(), 5 * MCTX_MSEC);
	mctx_loop_free(loop);
	assert_int_equal(mctx_wait(mine, -1), ETIMEDOUT);
	/* A timer thread runs now: no loop until shutdown. */
	errno = 0;
	assert_null(mctx_loop_new());
	assert_int_equal(errno, EBUSY);
	mctx_release(mine);
	mctx_shutdown();
	loop = mctx_loop_new();
	assert_non_null(loop);
	mctx_loop_free(loop);
}

static void
test_thread_expiry(void **state)
{
	mctx_t *c[8];
	mctx_time_t d;

	(void)state;
	for (int i = 0; i < 8; i++)
		c[i] = mctx_with_timeout_cause(mctx_background(),
					       (8 - i) * 2 * MCTX_MSEC, i);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(mctx_wait(c[i], -1), ETIMEDOUT);
		assert_true(mctx_deadline(c[i], &d));
		assert_true(mctx_now() >= d);
		assert_int_equal(mctx_cause(c[i]), i ? i : ETIMEDOUT);
		mctx_release(c[i]);
	}
}

/* ------------------------------------------------------------- values */

static void
test_values(void **state)
{
	enum { DEPTH = 2000 };
	mctx_t *a = mctx_with_value(mctx_background(), &key_a, &key_a);
	mctx_t *t = mctx_with_timeout(a, HOUR);
	mctx_t *b = mctx_with_value(t, &key_b, &key_b);
	mctx_t *w = mctx_without_cancel(b);
	mctx_t *s = mctx_with_value(w, &key_a, NULL); /* shadow with NULL */
	mctx_t *c = mctx_with_cancel(b);
	mctx_t *deep = mctx_retain(c), *n;

	(void)state;
	assert_ptr_equal(mctx_value(b, &key_a), &key_a);
	assert_ptr_equal(mctx_value(b, &key_b), &key_b);
	assert_null(mctx_value(b, &key_c));
	assert_ptr_equal(mctx_value(w, &key_a), &key_a);
	assert_null(mctx_value(s, &key_a));
	assert_ptr_equal(mctx_value(s, &key_b), &key_b);
	assert_ptr_equal(mctx_value(c, &key_a), &key_a);
	for (int i = 0; i < DEPTH; i++) {
		n = i == DEPTH / 2 ? mctx_with_value(deep, &key_c, &key_b)
				   : mctx_with_cancel(deep);
		mctx_release(deep);
		deep = n;
	}
	assert_int_equal(mctx_cancel(t), 0);
	for (int rep = 0; rep < 3; rep++) {
		assert_ptr_equal(mctx_value(deep, &key_a), &key_a);
		assert_ptr_equal(mctx_value(deep, &key_b), &key_b);
		assert_ptr_equal(mctx_value(deep, &key_c), &key_b);
		assert_null(mctx_value(deep, &key_d));
	}
	assert_null(mctx_value(c, &key_c));
	mctx_release(deep);
	mctx_release(c);
	mctx_release(s);
	mctx_release(w);
	mctx_release(b);
	mctx_release(t);
	mctx_release(a);
}

static void
test_without_cancel(void **state)
{
	mctx_t *p = mctx_with_timeout(mctx_background(), HOUR);
	mctx_t *v = mctx_with_value(p, &key_a, &key_b);
	mctx_t *w = mctx_without_cancel(v);
	mctx_t *k = mctx_with_cancel(w);
	mctx_t *kv = mctx_with_value(w, &key_b, NULL);

	(void)state;
	assert_int_equal(mctx_cancel_cause(p, 4), 0);
	assert_false(mctx_done(w));
	assert_int_equal(mctx_cause(w), 0);
	assert_false(mctx_deadline(w, NULL));
	assert_ptr_equal(mctx_value(w, &key_a), &key_b);
	assert_int_equal(mctx_fd(w), -EOPNOTSUPP);
	assert_int_equal(mctx_fd(kv), -EOPNOTSUPP);
	assert_int_equal(mctx_cancel(w), -EINVAL);
	assert_false(mctx_done(k));
	assert_false(mctx_deadline(k, NULL));
	assert_int_equal(mctx_cancel(k), 0);
	assert_int_equal(mctx_err(k), ECANCELED);
	assert_false(mctx_done(w));
	assert_int_equal(mctx_wait(w, MCTX_MSEC), 0);
	mctx_release(kv);
	mctx_release(k);
	mctx_release(w);
	mctx_release(v);
	mctx_release(p);
}

/* --------------------------------------------------------- after-func */

struct rec {
	atomic_int runs;
	pthread_t thr;
	mctx_after_t *self;
	bool stop_in_fn;
	bool stop_in_fn_ret;
	mctx_t *to_cancel;
	mctx_after_t *sibling;
	bool sibling_ret;
};

static void
rec_fn(void *p)
{
	struct rec *r = p;

	atomic_fetch_add(&r->runs, 1);
	r->thr = pthread_self();
	if (r->stop_in_fn)
		r->stop_in_fn_ret = mctx_after_stop(r->self);
	if (r->to_cancel)
		mctx_cancel_cause(r->to_cancel, 21);
	if (r->sibling)
		r->sibling_ret = mctx_after_stop(r->sibling);
}

static void
test_after_basic(void **state)
{
	mctx_t *c = mctx_with_cancel(mctx_background());
	mctx_t *other = mctx_with_cancel(mctx_background());
	mctx_after_t r1, r2, r3;
	struct rec a = { 0 }, b = { 0 }, s = { 0 };

	(void)state;
	assert_int_equal(mctx_after_func(NULL, &r1, rec_fn, &a), -EINVAL);
	assert_int_equal(mctx_after_func(c, NULL, rec_fn, &a), -EINVAL);
	assert_int_equal(mctx_after_func(c, &r1, NULL, &a), -EINVAL);

	a.self = &r1;
	a.stop_in_fn = true;
	a.to_cancel = other;
	assert_int_equal(mctx_after_func(c, &r1, rec_fn, &a), 0);
	assert_int_equal(mctx_after_func(c, &r2, rec_fn, &b), 0);
	assert_int_equal(mctx_after_func(c, &r3, rec_fn, &s), 0);
	assert_int_equal(atomic_load(&a.runs), 0);
	/* Stop before done: true, and fn never runs; a second stop: false. */
	assert_true(mctx_after_stop(&r3));
	assert_false(mctx_after_stop(&r3));

	assert_int_equal(mctx_cancel(c), 0);
	assert_int_equal(atomic_load(&a.runs), 1);
	assert_int_equal(atomic_load(&b.runs), 1);
	assert_int_equal(atomic_load(&s.runs), 0);
	assert_true(pthread_equal(a.thr, pthread_self()));
	assert_false(a.stop_in_fn_ret); /* inside fn: false at once */
	assert_int_equal(mctx_cause(other), 21);
	assert_false(mctx_after_stop(&r1));
	assert_false(mctx_after_stop(&r2));
	assert_int_equal(mctx_cancel(c), -EALREADY);
	assert_int_equal(atomic_load(&a.runs), 1);

	/* On a done context: at once, on this thread. */
	struct rec d = { 0 };

	assert_int_equal(mctx_after_func(c, &r1, rec_fn, &d), 0);
	assert_int_equal(atomic_load(&d.runs), 1);
	assert_false(mctx_after_stop(&r1));
	mctx_release(other);
	mctx_release(c);
}

static void
test_after_never_done(void **state)
{
	mctx_t *v = mctx_with_value(mctx_background(), &key_a, NULL);
	mctx_t *w = mctx_without_cancel(v);
	mctx_after_t r1, r2;
	struct rec a = { 0 };

	(void)state;
	assert_int_equal(mctx_after_func(w, &r1, rec_fn, &a), 0);
	assert_int_equal(mctx_after_func(mctx_background(), &r2, rec_fn, &a),
			 0);
	assert_true(mctx_after_stop(&r1));
	assert_false(mctx_after_stop(&r1));
	assert_true(mctx_after_stop(&r2));
	assert_int_equal(atomic_load(&a.runs), 0);
	mctx_release(w);
	mctx_release(v);
}

/* Stopping a later registration from inside an earlier fn of one cancel. */
static void
test_after_stop_sibling(void **state)
{
	mctx_t *c = mctx_with_cancel(mctx_background());
	mctx_after_t r1, r2;
	struct rec a = { 0 }, b = { 0 };
	struct rec *first;

	(void)state;
	assert_int_equal(mctx_after_func(c, &r1, rec_fn, &a), 0);
	assert_int_equal(mctx_after_func(c, &r2, rec_fn, &b), 0);
	/* Whichever runs first stops the other before it started. */
	a.sibling = &r2;
	b.sibling = &r1;
	assert_int_equal(mctx_cancel(c), 0);
	assert_int_equal(atomic_load(&a.runs) + atomic_load(&b.runs), 1);
	first = atomic_load(&a.runs) ? &a : &b;
	assert_true(first->sibling_ret);
	mctx_release(c);
}

struct freer {
	mctx_after_t reg;
	int *flag;
};

static void
free_fn(void *p)
{
	struct freer *f = p;

	*f->flag += 1;
	free(f); /* fn frees its own registration */
}

static void
test_after_free_and_keepalive(void **state)
{
	mctx_t *p = mctx_with_cancel(mctx_background());
	mctx_t *v = mctx_with_value(p, &key_a, NULL);
	int fired = 0;

	(void)state;
	for (int i = 0; i < 3; i++) {
		struct freer *f = malloc(sizeof(*f));

		assert_non_null(f);
		f->flag = &fired;
		assert_int_equal(
		    mctx_after_func(i ? v : p, &f->reg, free_fn, f), 0);
	}
	/* A pending registration keeps v alive after its owner drops it. */
	mctx_release(v);
	assert_int_equal(fired, 0);
	assert_int_equal(mctx_cancel(p), 0);
	assert_int_equal(fired, 3);
	mctx_release(p);
}

struct slow {
	atomic_int entered;
	atomic_int finished;
	mctx_t *ctx;
};

static void
slow_fn(void *p)
{
	struct slow *s = p;
	struct timespec ts = { 0, 30 * 1000 * 1000 };

	atomic_store(&s->entered, 1);
	nanosleep(&ts, NULL);
	atomic_store(&s->finished, 1);
}

static void *
cancel_main(void *p)
{
	struct slow *s = p;

	mctx_cancel(s->ctx);
	return NULL;
}

/* Stop from another thread while fn runs returns only after fn returned. */
static void
test_after_stop_waits(void **state)
{
	struct slow s = { .ctx = mctx_with_cancel(mctx_background()) };
	mctx_after_t reg;
	pthread_t th;

	(void)state;
	assert_int_equal(mctx_after_func(s.ctx, &reg, slow_fn, &s), 0);
	assert_int_equal(pthread_create(&th, NULL, cancel_main, &s), 0);
	while (!atomic_load(&s.entered))
		sched_yield();
	assert_false(mctx_after_stop(&reg));
	assert_int_equal(atomic_load(&s.finished), 1);
	pthread_join(th, NULL);
	mctx_release(s.ctx);
}

/* Stop racing cancel: exactly one of "fn ran" and "stop returned true". */
static void
test_after_stop_race(void **state)
{
	(void)state;
	for (int i = 0; i < 200; i++) {
		struct slow s = { .ctx = mctx_with_cancel(mctx_background()) };
		mctx_after_t reg;
		pthread_t th;
		bool stopped;

		assert_int_equal(mctx_after_func(s.ctx, &reg, slow_fn, &s), 0);
		assert_int_equal(pthread_create(&th, NULL, cancel_main, &s), 0);
		stopped = mctx_after_stop(&reg);
		if (!stopped)
			assert_int_equal(atomic_load(&s.finished), 1);
		pthread_join(th, NULL);
		assert_int_equal(stopped, !atomic_load(&s.entered));
		mctx_release(s.ctx);
	}
}

/* ------------------------------------------------------- wait and fds */

struct waiter {
	mctx_t *ctx;
	int ret;
};

static void *
wait_main(void *p)
{
	struct waiter *w = p;

	w->ret = mctx_wait(w->ctx, -1);
	return NULL;
}

static void
test_wait(void **state)
{
	mctx_t *c = mctx_with_cancel(mctx_background());
	mctx_t *v = mctx_with_value(c, &key_a, NULL);
	struct waiter w[4];
	pthread_t th[4];
	mctx_time_t t0;

	(void)state;
	t0 = mctx_now();
	assert_int_equal(mctx_wait(v, 2 * MCTX_MSEC), 0);
	assert_true(mctx_now() - t0 >= 2 * MCTX_MSEC); /* never early */
	for (int i = 0; i < 4; i++) {
		w[i].ctx = i % 2 ? v : c;
		w[i].ret = -1;
		assert_int_equal(pthread_create(&th[i], NULL, wait_main, &w[i]),
				 0);
	}
	assert_int_equal(mctx_cancel_cause(c, 3), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].ret, ECANCELED);
	}
	assert_int_equal(mctx_wait(v, 0), ECANCELED);
	assert_int_equal(mctx_wait(c, -1), ECANCELED);
	mctx_release(v);
	mctx_release(c);
}

static void
test_fd(void **state)
{
	mctx_loop_t *loop = mctx_loop_new();
	mctx_time_t base = mctx_now() + HOUR;
	mctx_t *p = mctx_with_cancel(mctx_background());
	mctx_t *c = mctx_with_cancel(p);
	mctx_t *v = mctx_with_value(c, &key_a, NULL);
	mctx_t *t = mctx_with_deadline(mctx_background(), base);
	mctx_t *late;
	int fd, fdt;

	(void)state;
	assert_non_null(loop);
	fd = mctx_fd(c);
	assert_true(fd >= 0);
	assert_int_equal(mctx_fd(c), fd);
	assert_int_equal(mctx_fd(v), fd);
	assert_false(readable(fd));
	fdt = mctx_fd(t);
	assert_true(fdt >= 0);
	assert_int_not_equal(fdt, fd);

	assert_int_equal(mctx_cancel(p), 0); /* through an ancestor */
	assert_true(readable(fd));
	assert_true(readable(fd));  /* level triggered */
	late = mctx_with_cancel(p); /* fd made after done */
	assert_true(readable(mctx_fd(late)));

	assert_false(readable(fdt));
	assert_int_equal(mctx_loop_run(loop, base), 1);
	assert_true(readable(fdt));

	mctx_release(late);
	mctx_release(t);
	mctx_release(v);
	mctx_release(c);
	mctx_release(p);
	mctx_loop_free(loop);
}

static void
test_refs(void **state)
{
	mctx_t *p = mctx_with_cancel(mctx_background());
	mctx_t *c = mctx_with_value(p, &key_a, &key_b);

	(void)state;
	assert_ptr_equal(mctx_retain(c), c);
	mctx_release(c);
	/* The child keeps its parent alive. */
	mctx_release(p);
	assert_ptr_equal(mctx_value(c, &key_a), &key_b);
	assert_false(mctx_done(c));
	mctx_release(c);
}

/* ---------------------------------------------------------------- races */

struct racer {
	mctx_t *parent;
	int n;
};

static void *
derive_main(void *p)
{
	struct racer *r = p;

	for (int i = 0; i < r->n; i++) {
		mctx_t *c = mctx_with_timeout(r->parent, HOUR);
		mctx_t *k = mctx_with_cancel(c);

		if (i % 2)
			mctx_cancel(k);
		mctx_release(k);
		mctx_release(c);
	}
	return NULL;
}

static void *
born_main(void *p)
{
	struct racer *r = p;
	mctx_t **kids = malloc((size_t)r->n * sizeof(*kids));

	for (int i = 0; i < r->n; i++)
		kids[i] = mctx_with_cancel(r->parent);
	/* The parent is done by now (joined later): so is every child. */
	mctx_wait(r->parent, -1);
	for (int i = 0; i < r->n; i++) {
		if (mctx_err(kids[i]) != ECANCELED || mctx_cause(kids[i]) != 6)
			abort();
		mctx_release(kids[i]);
	}
	free(kids);
	return NULL;
}

static void
test_race_derive_cancel(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++) {
		mctx_t *p = mctx_with_cancel(mctx_background());
		struct racer r = { p, 500 };
		pthread_t a, b;

		assert_int_equal(pthread_create(&a, NULL, derive_main, &r), 0);
		assert_int_equal(pthread_create(&b, NULL, born_main, &r), 0);
		assert_int_equal(mctx_cancel_cause(p, 6), 0);
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		mctx_release(p);
	}
}

enum { TREE_N = 100, TREE_THREADS = 4 };

struct tree_run {
	mctx_t **nodes;
	atomic_int *wins;
	uint64_t seed;
};

static void *
tree_cancel_main(void *p)
{
	struct tree_run *t = p;
	int order[TREE_N];

	for (int i = 0; i < TREE_N; i++)
		order[i] = i;
	for (int i = TREE_N - 1; i > 0; i--) {
		int j = (int)rnd_below(&t->seed, (uint64_t)(i + 1));
		int x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	for (int i = 0; i < TREE_N; i++) {
		int r = mctx_cancel_cause(t->nodes[order[i]], order[i] + 1);

		if (r == 0)
			atomic_fetch_add(&t->wins[order[i]], 1);
		else if (r != -EALREADY)
			abort();
	}
	return NULL;
}

/* Many threads cancel every node of a tree in random orders (SEMANTICS 7). */
static void
test_race_tree_cancel(void **state)
{
	(void)state;
	for (int round = 0; round < 30; round++) {
		mctx_t *nodes[TREE_N];
		atomic_int wins[TREE_N];
		struct tree_run runs[TREE_THREADS];
		uint64_t seed = rnd_seed((uint64_t)round);

		nodes[0] = mctx_with_cancel(mctx_background());
		atomic_init(&wins[0], 0);
		for (int i = 1; i < TREE_N; i++) {
			mctx_t *p = nodes[rnd_below(&seed, (uint64_t)i)];

			nodes[i] = i % 3 ? mctx_with_cancel(p)
					 : mctx_with_timeout(p, HOUR);
			atomic_init(&wins[i], 0);
		}
		for (int t = 0; t < TREE_THREADS; t++) {
			runs[t] = (struct tree_run){ nodes, wins,
						     rnd_seed(1000 + t) };
		}
		tg_run(TREE_THREADS, tree_cancel_main, runs, sizeof(runs[0]));
		assert_int_equal(atomic_load(&wins[0]), 1);
		for (int i = 0; i < TREE_N; i++) {
			int cause = mctx_cause(nodes[i]);

			assert_true(atomic_load(&wins[i]) <= 1);
			assert_int_equal(mctx_err(nodes[i]), ECANCELED);
			/* The winner's cause: its own, or an ancestor's. */
			assert_true(cause >= 1 && cause <= TREE_N);
			if (atomic_load(&wins[i]))
				assert_int_equal(cause, i + 1);
		}
		for (int i = TREE_N; i-- > 0;)
			mctx_release(nodes[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_roots, teardown),
		cmocka_unit_test_teardown(test_constructor_einval, teardown),
		cmocka_unit_test_teardown(test_cancel_rules, teardown),
		cmocka_unit_test_teardown(test_cancel_tree, teardown),
		cmocka_unit_test_teardown(test_born_done, teardown),
		cmocka_unit_test_teardown(test_deep_chain, teardown),
		cmocka_unit_test_teardown(test_wide, teardown),
		cmocka_unit_test_teardown(test_deadline_inherit, teardown),
		cmocka_unit_test_teardown(test_deadline_past, teardown),
		cmocka_unit_test_teardown(test_loop_expiry, teardown),
		cmocka_unit_test_teardown(test_loop_fd_and_free, teardown),
		cmocka_unit_test_teardown(test_thread_expiry, teardown),
		cmocka_unit_test_teardown(test_values, teardown),
		cmocka_unit_test_teardown(test_without_cancel, teardown),
		cmocka_unit_test_teardown(test_after_basic, teardown),
		cmocka_unit_test_teardown(test_after_never_done, teardown),
		cmocka_unit_test_teardown(test_after_stop_sibling, teardown),
		cmocka_unit_test_teardown(test_after_free_and_keepalive,
					  teardown),
		cmocka_unit_test_teardown(test_after_stop_waits, teardown),
		cmocka_unit_test_teardown(test_after_stop_race, teardown),
		cmocka_unit_test_teardown(test_wait, teardown),
		cmocka_unit_test_teardown(test_fd, teardown),
		cmocka_unit_test_teardown(test_refs, teardown),
		cmocka_unit_test_teardown(test_race_derive_cancel, teardown),
		cmocka_unit_test_teardown(test_race_tree_cancel, teardown),
	};

	return RUN_TESTS(tests);
}
