/* SPDX-License-Identifier: MIT */
/* Death tests: debug builds abort on use after release and on misuse. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rctx.h"
#include "util.h"

#ifdef RCTX_DEBUG
/*
 * Run fn(ctx) in a child with stderr on a pipe. Returns the wait status and
 * what the child wrote.
 */
static int
run_child(void (*fn)(void), char *out, size_t outlen)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], STDERR_FILENO);
		close(fds[1]);
		fn();
		_exit(0); /* reached only if the library did not abort */
	}
	close(fds[1]);
	size_t len = 0;
	ssize_t n;
	while (len + 1 < outlen &&
	       (n = read(fds[0], out + len, outlen - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n > 0);
		len += (size_t)n;
	}
	out[len] = '\0';
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static char expect_ptr[64];

static void
use_after_release(void)
{
	rctx_t *c = rctx_with_cancel(rctx_background());
	snprintf(expect_ptr, sizeof(expect_ptr), "%p", (void *)c);
	fprintf(stderr, "ptr %s\n", expect_ptr);
	rctx_release(c);
	(void)rctx_err(c);
}

static void
double_release(void)
{
	rctx_t *c = rctx_with_value(rctx_background(), &expect_ptr, NULL);
	snprintf(expect_ptr, sizeof(expect_ptr), "%p", (void *)c);
	fprintf(stderr, "ptr %s\n", expect_ptr);
	rctx_release(c);
	rctx_release(c);
}

static void
cancel_after_release(void)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_timeout(p, 3600 * RCTX_SEC);
	snprintf(expect_ptr, sizeof(expect_ptr), "%p", (void *)c);
	fprintf(stderr, "ptr %s\n", expect_ptr);
	rctx_release(c);
	(void)rctx_cancel(c);
}

static void
drain_leave_without_enter(void)
{
	static rctx_drain_t d;

	if (rctx_drain_init(&d, rctx_background()) != 0)
		_exit(3);
	snprintf(expect_ptr, sizeof(expect_ptr), "%p", (void *)&d);
	fprintf(stderr, "ptr %s\n", expect_ptr);
	(void)rctx_drain_leave(&d);
}

/* The child aborted and its message names the API call and the context. */
static void
expect_death(void (*fn)(void), const char *call)
{
	char out[4096];
	int status = run_child(fn, out, sizeof(out));

	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
		fail_msg("child did not abort (status %#x), stderr:\n%s",
			 status, out);
	/* The child printed the pointer first; find it again after. */
	char ptr[64];
	assert_int_equal(sscanf(out, "ptr %63s", ptr), 1);
	const char *msg = strchr(out, '\n');
	assert_non_null(msg);
	if (strstr(msg, ptr) == NULL || strstr(msg, call) == NULL)
		fail_msg("abort message does not name %s and %s:\n%s", call,
			 ptr, msg);
}

static void
test_use_after_release(void **state)
{
	(void)state;
	expect_death(use_after_release, "rctx_err");
}

static void
test_double_release(void **state)
{
	(void)state;
	expect_death(double_release, "rctx_release");
}

static void
test_cancel_after_release(void **state)
{
	(void)state;
	expect_death(cancel_after_release, "rctx_cancel");
}

/* A leave without an enter aborts, naming the call and the drain. */
static void
test_drain_leave_without_enter(void **state)
{
	(void)state;
	expect_death(drain_leave_without_enter, "rctx_drain_leave");
}

/* The checks stay quiet on correct use. */
static void
test_no_false_alarm(void **state)
{
	(void)state;
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(p);
	rctx_release(p); /* c still holds p */
	assert_int_equal(rctx_cancel(c), 0);
	rctx_retain(c);
	rctx_release(c);
	assert_int_equal(rctx_err(c), ECANCELED);
	rctx_release(c);
	rctx_release(NULL);
	rctx_release(rctx_background());
	rctx_release(rctx_background());
	assert_false(rctx_done(rctx_background()));
	/* balanced enters and leaves: no abort */
	rctx_drain_t d;
	assert_int_equal(rctx_drain_init(&d, rctx_background()), 0);
	assert_int_equal(rctx_drain_enter(&d), 0);
	assert_int_equal(rctx_drain_enter(&d), 0);
	assert_int_equal(rctx_drain_leave(&d), 0);
	assert_int_equal(rctx_drain_leave(&d), 0);
	assert_int_equal(rctx_drain_join(&d, 0), 0);
	assert_int_equal(rctx_drain_destroy(&d), 0);
}
#endif

int
main(void)
{
#ifndef RCTX_DEBUG
	/*
	 * Without the debug checks there is nothing to test; say so in TAP
	 * (cmocka's skip() prints "not ok # SKIP", which meson counts as a
	 * failure).
	 */
	printf("1..0 # SKIP debug checks are off (-Ddebug_checks=enabled)\n");
	return 0;
#else
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_use_after_release),
		cmocka_unit_test(test_double_release),
		cmocka_unit_test(test_cancel_after_release),
		cmocka_unit_test(test_drain_leave_without_enter),
		cmocka_unit_test(test_no_false_alarm),
	};
	return RUN_TESTS(tests);
#endif
}
