/* SPDX-License-Identifier: MIT */
/* The public API through the shared library: argument errors as API.md says. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <rctx.h>

static char key;

static void
fn_count(void *arg)
{
	(*(int *)arg)++;
}

#define EXPECT_EINVAL_NULL(call)                                               \
	do {                                                                   \
		errno = 0;                                                     \
		assert_null(call);                                             \
		assert_int_equal(errno, EINVAL);                               \
	} while (0)

static void
test_constructors_null_parent(void **state)
{
	(void)state;
	rctx_time_t far = rctx_now() + 3600 * RCTX_SEC;

	EXPECT_EINVAL_NULL(rctx_with_cancel(NULL));
	EXPECT_EINVAL_NULL(rctx_with_deadline(NULL, far));
	EXPECT_EINVAL_NULL(rctx_with_timeout(NULL, RCTX_SEC));
	EXPECT_EINVAL_NULL(rctx_with_deadline_cause(NULL, far, 3));
	EXPECT_EINVAL_NULL(rctx_with_timeout_cause(NULL, RCTX_SEC, 3));
	EXPECT_EINVAL_NULL(rctx_with_value(NULL, &key, NULL));
	EXPECT_EINVAL_NULL(rctx_without_cancel(NULL));
	/* Past deadlines and bad keys are checked after the parent too. */
	EXPECT_EINVAL_NULL(rctx_with_deadline(NULL, 0));
	EXPECT_EINVAL_NULL(rctx_with_timeout(NULL, -1));
	EXPECT_EINVAL_NULL(rctx_with_value(NULL, NULL, NULL));
}

static void
test_value_null_key(void **state)
{
	(void)state;
	rctx_t *c = rctx_with_cancel(rctx_background());
	assert_non_null(c);

	EXPECT_EINVAL_NULL(rctx_with_value(rctx_background(), NULL, &key));
	EXPECT_EINVAL_NULL(rctx_with_value(c, NULL, NULL));
	/* A lookup with a NULL key finds nothing. */
	rctx_t *v = rctx_with_value(c, &key, &key);
	assert_non_null(v);
	assert_null(rctx_value(v, NULL));
	assert_ptr_equal(rctx_value(v, &key), &key);
	rctx_release(v);
	rctx_release(c);
}

static void
test_cancel_invalid(void **state)
{
	(void)state;
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_t *v = rctx_with_value(c, &key, NULL);
	rctx_t *w = rctx_without_cancel(c);
	assert_non_null(c);
	assert_non_null(v);
	assert_non_null(w);

	assert_int_equal(rctx_cancel(NULL), -EINVAL);
	assert_int_equal(rctx_cancel_cause(NULL, 5), -EINVAL);
	assert_int_equal(rctx_cancel(rctx_background()), -EINVAL);
	assert_int_equal(rctx_cancel(rctx_todo()), -EINVAL);
	assert_int_equal(rctx_cancel_cause(rctx_todo(), 5), -EINVAL);
	assert_int_equal(rctx_cancel(v), -EINVAL);
	assert_int_equal(rctx_cancel_cause(v, 5), -EINVAL);
	assert_int_equal(rctx_cancel(w), -EINVAL);
	/* None of that changed anything. */
	assert_false(rctx_done(c));
	assert_false(rctx_done(rctx_background()));
	assert_int_equal(rctx_cancel_cause(c, 5), 0);
	assert_int_equal(rctx_cancel(c), -EALREADY);
	assert_int_equal(rctx_cause(v), 5);
	assert_int_equal(rctx_cancel(v), -EINVAL);
	assert_false(rctx_done(w));
	rctx_release(w);
	rctx_release(v);
	rctx_release(c);
}

static void
test_observers_null(void **state)
{
	(void)state;
	rctx_time_t d = 12345;

	assert_int_equal(rctx_err(NULL), 0);
	assert_int_equal(rctx_cause(NULL), 0);
	assert_false(rctx_done(NULL));
	assert_false(rctx_deadline(NULL, &d));
	assert_int_equal(d, 12345);
	assert_false(rctx_deadline(NULL, NULL));
	assert_null(rctx_value(NULL, &key));
	assert_null(rctx_value(NULL, NULL));
	assert_int_equal(rctx_wait(NULL, 0), 0);
	assert_int_equal(rctx_wait(NULL, RCTX_MSEC), 0);
	assert_int_equal(rctx_wait(rctx_todo(), 0), 0);
}

static void
test_deadline_null_out(void **state)
{
	(void)state;
	rctx_t *c = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	assert_non_null(c);
	assert_true(rctx_deadline(c, NULL));
	rctx_release(c);
}

static void
test_fd_never_done(void **state)
{
	(void)state;
	rctx_t *w = rctx_without_cancel(rctx_background());
	rctx_t *v = rctx_with_value(rctx_background(), &key, NULL);
	rctx_t *vw = rctx_with_value(w, &key, NULL);
	assert_non_null(w);
	assert_non_null(v);
	assert_non_null(vw);

	assert_int_equal(rctx_fd(NULL), -EOPNOTSUPP);
	assert_int_equal(rctx_fd(rctx_background()), -EOPNOTSUPP);
	assert_int_equal(rctx_fd(rctx_todo()), -EOPNOTSUPP);
	assert_int_equal(rctx_fd(w), -EOPNOTSUPP);
	assert_int_equal(rctx_fd(v), -EOPNOTSUPP);
	assert_int_equal(rctx_fd(vw), -EOPNOTSUPP);

	/* A context that can be done has one, the same every time. */
	rctx_t *c = rctx_with_cancel(w);
	int fd = rctx_fd(c);
	assert_true(fd >= 0);
	assert_int_equal(rctx_fd(c), fd);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(poll(&p, 1, 0), 1);
	rctx_release(c);
	rctx_release(vw);
	rctx_release(v);
	rctx_release(w);
}

static void
test_after_func_invalid(void **state)
{
	(void)state;
	rctx_after_t reg;
	int n = 0;
	rctx_t *c = rctx_with_cancel(rctx_background());
	assert_non_null(c);

	assert_int_equal(rctx_after_func(NULL, &reg, fn_count, &n), -EINVAL);
	assert_int_equal(rctx_after_func(c, NULL, fn_count, &n), -EINVAL);
	assert_int_equal(rctx_after_func(c, &reg, NULL, &n), -EINVAL);
	assert_int_equal(rctx_after_func(c, &reg, fn_count, &n), 0);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(n, 1);
	assert_false(rctx_after_stop(&reg));

	/* On a root: accepted, never runs, stop succeeds. */
	assert_int_equal(rctx_after_func(rctx_background(), &reg, fn_count, &n),
			 0);
	assert_true(rctx_after_stop(&reg));
	assert_false(rctx_after_stop(&reg));
	assert_int_equal(n, 1);
	rctx_release(c);
}

static void
test_refs_on_roots(void **state)
{
	(void)state;
	rctx_release(NULL);
	assert_ptr_equal(rctx_retain(rctx_background()), rctx_background());
	assert_ptr_equal(rctx_retain(rctx_todo()), rctx_todo());
	for (int i = 0; i < 10; i++) {
		rctx_release(rctx_background());
		rctx_release(rctx_todo());
	}
	assert_ptr_not_equal(rctx_background(), rctx_todo());
	rctx_t *c = rctx_with_cancel(rctx_todo());
	assert_non_null(c);
	assert_ptr_equal(rctx_retain(c), c);
	rctx_release(c);
	assert_false(rctx_done(c));
	rctx_release(c);
	assert_false(rctx_done(rctx_background()));
	assert_false(rctx_deadline(rctx_todo(), NULL));
}

static void
test_version(void **state)
{
	(void)state;
	assert_true(RCTX_VERSION_MAJOR >= 0 && RCTX_VERSION_MINOR >= 0 &&
		    RCTX_VERSION_PATCH >= 0);
	assert_int_equal(RCTX_SEC, 1000 * RCTX_MSEC);
	assert_int_equal(sizeof(rctx_after_t), 8 * sizeof(void *));
	assert_true(rctx_now() > 0);
}

static int
teardown(void **state)
{
	(void)state;
	rctx_shutdown();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_constructors_null_parent),
		cmocka_unit_test(test_value_null_key),
		cmocka_unit_test(test_cancel_invalid),
		cmocka_unit_test(test_observers_null),
		cmocka_unit_test(test_deadline_null_out),
		cmocka_unit_test(test_fd_never_done),
		cmocka_unit_test(test_after_func_invalid),
		cmocka_unit_test(test_refs_on_roots),
		cmocka_unit_test(test_version),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
