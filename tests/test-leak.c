/* SPDX-License-Identifier: MIT */
/* Leak reports: a planted leak is reported with its creation site. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "rctx.h"

static char key;

/* The planted leaks: each made in a function of its own (the site). */
__attribute__((noinline)) rctx_t *
plant_leak(void)
{
	rctx_t *c = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);

	__asm__ volatile("" ::: "memory"); /* not a tail call */
	return c;
}

__attribute__((noinline)) rctx_t *
plant_done_leak(rctx_t *parent)
{
	rctx_t *c = rctx_with_value(parent, &key, NULL);

	__asm__ volatile("" ::: "memory");
	return c;
}

#define MAXG 64
struct groups {
	rctx_leak_site_t g[MAXG];
	int n;
};

static int
collect(const rctx_leak_site_t *s, void *arg)
{
	struct groups *g = arg;

	if (g->n < MAXG) {
		g->g[g->n] = *s;
		/* strings are valid during the call only */
		g->g[g->n].symbol = NULL;
		g->g[g->n].object = NULL;
	}
	g->n++;
	return 0;
}

/* The group whose site lies in fn (by dladdr), or NULL. */
static const rctx_leak_site_t *
group_in(struct groups *g, uintptr_t fn, bool done)
{
	for (int i = 0; i < g->n && i < MAXG; i++) {
		Dl_info info;

		if (g->g[i].done == done && dladdr(g->g[i].site, &info) &&
		    (uintptr_t)info.dli_saddr == fn)
			return &g->g[i];
	}
	return NULL;
}

static int
named(const rctx_leak_site_t *s, void *arg)
{
	int *hits = arg;

	if (s->symbol && strcmp(s->symbol, "plant_leak") == 0 && s->object &&
	    s->offset > 0)
		(*hits)++;
	return 0;
}

static void
test_bad_input(void **state)
{
	(void)state;
	assert_int_equal(rctx_leak_report(0, NULL, NULL), -EINVAL);
	assert_int_equal(rctx_leak_report(-1, collect, NULL), -EINVAL);
	assert_int_equal(rctx_leak_report_fd(0, -1), -EINVAL);
	assert_int_equal(rctx_leak_report_fd(-1, 2), -EINVAL);
}

static void
test_planted_leak(void **state)
{
	rctx_t *leaks[3], *parent, *done_leak;
	struct groups g = { .n = 0 };
	const rctx_leak_site_t *s;
	int hits = 0;

	(void)state;
	assert_int_equal(rctx_leak_track(true), 0);
	for (int i = 0; i < 3; i++)
		leaks[i] = plant_leak();
	parent = rctx_with_cancel(rctx_background());
	done_leak = plant_done_leak(parent);
	assert_int_equal(rctx_cancel(parent), 0);
	rctx_release(parent); /* done_leak still holds it */

	/* Reported, grouped by site: three alive from plant_leak, one done
	 * but referenced from plant_done_leak. */
	assert_true(rctx_leak_report(0, collect, &g) >= 2);
	s = group_in(&g, (uintptr_t)plant_leak, false);
	assert_non_null(s);
	assert_int_equal(s->count, 3);
	assert_true(s->oldest >= 0);
	s = group_in(&g, (uintptr_t)plant_done_leak, true);
	assert_non_null(s);
	assert_int_equal(s->count, 1);
	assert_null(group_in(&g, (uintptr_t)plant_done_leak, false));
	/* Symbolized (the test is linked with -rdynamic). */
	assert_int_equal(rctx_leak_report(0, named, &hits) >= 2, 1);
	assert_int_equal(hits, 1);

	/* Not old enough: nothing. */
	g.n = 0;
	(void)rctx_leak_report(3600 * RCTX_SEC, collect, &g);
	assert_null(group_in(&g, (uintptr_t)plant_leak, false));
	assert_null(group_in(&g, (uintptr_t)plant_done_leak, true));

	/* Freed: no longer reported. */
	for (int i = 0; i < 3; i++)
		rctx_release(leaks[i]);
	rctx_release(done_leak);
	g.n = 0;
	(void)rctx_leak_report(0, collect, &g);
	assert_null(group_in(&g, (uintptr_t)plant_leak, false));
	assert_null(group_in(&g, (uintptr_t)plant_done_leak, true));
	assert_int_equal(rctx_leak_track(false), 0);
}

static void
test_off_tracks_nothing(void **state)
{
	rctx_t *c;
	struct groups g = { .n = 0 };

	(void)state;
	assert_int_equal(rctx_leak_track(true), 0);
	c = plant_leak();
	assert_int_equal(rctx_leak_track(false), 0); /* forgets c */
	assert_int_equal(rctx_leak_report(0, collect, &g), 0);
	rctx_release(c);
	c = plant_leak(); /* made while off */
	assert_int_equal(rctx_leak_track(true), 0);
	assert_int_equal(rctx_leak_report(0, collect, &g), 0);
	rctx_release(c);
	assert_int_equal(rctx_leak_track(false), 0);
}

static void
test_report_fd(void **state)
{
	rctx_t *c;
	FILE *f = tmpfile();
	char buf[4096];
	size_t n;

	(void)state;
	assert_non_null(f);
	assert_int_equal(rctx_leak_track(true), 0);
	c = plant_leak();
	assert_int_equal(rctx_leak_report_fd(0, fileno(f)), 1);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	assert_non_null(strstr(buf, "1 context(s) alive"));
	assert_non_null(strstr(buf, "plant_leak+0x"));
	assert_int_equal(rctx_leak_report_fd(0, 1000), -EBADF);
	rctx_release(c);
	fclose(f);
	assert_int_equal(rctx_leak_track(false), 0);
}

static void
test_out_of_memory(void **state)
{
	rctx_t *c;
	struct groups g = { .n = 0 };

	(void)state;
	assert_int_equal(rctx_leak_track(true), 0);
	/* The context is made; only its record is lost. */
	rctx_fault_arm(RCTX_FAULT_MALLOC, 2); /* after the context's own */
	c = plant_leak();
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	assert_non_null(c);
	rctx_release(c);
	c = plant_leak();
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	assert_int_equal(rctx_leak_report(0, collect, &g), -ENOMEM);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(rctx_leak_report(0, collect, &g), 1);
	rctx_release(c);
	assert_int_equal(rctx_leak_track(false), 0);
}

/* This binary's path, from main's argv[0] (under valgrind /proc/self/exe
 * names valgrind, not us). */
static const char *self_path = "/proc/self/exe";

/* RCTX_LEAK_TRACK=1 in the environment: a child run of this binary. */
static void
test_env_var(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { "test-leak", "--env-child", NULL };
		char *envp[] = { "RCTX_LEAK_TRACK=1", NULL };

		execve(self_path, argv, envp);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static int
env_child(void)
{
	struct groups g = { .n = 0 };
	rctx_t *c = plant_leak();
	int ok = rctx_leak_report(0, collect, &g) == 1 &&
		 group_in(&g, (uintptr_t)plant_leak, false) != NULL;

	rctx_release(c);
	return ok ? 0 : 1;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_planted_leak),
		cmocka_unit_test(test_off_tracks_nothing),
		cmocka_unit_test(test_report_fd),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_env_var),
	};

	if (argc > 0 && strchr(argv[0], '/') != NULL)
		self_path = argv[0];
	if (argc > 1 && strcmp(argv[1], "--env-child") == 0)
		return env_child();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
