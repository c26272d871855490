/* SPDX-License-Identifier: MIT */
/* dlopen, use, shutdown, dlclose: threads that used rctx outlive the unload. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "rctx.h"

/* The public entry points this test calls, looked up in the library. */
struct api {
	rctx_t *(*background)(void);
	rctx_t *(*with_cancel)(rctx_t *);
	rctx_t *(*with_timeout)(rctx_t *, rctx_time_t);
	int (*after_func)(rctx_t *, rctx_after_t *, void (*)(void *), void *);
	int (*cancel)(rctx_t *);
	int (*wait)(rctx_t *, rctx_time_t);
	void (*release)(rctx_t *);
	void (*shutdown)(void);
};

static void *
sym(void *h, const char *name)
{
	void *p = dlsym(h, name);

	if (p == NULL) {
		fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
		abort();
	}
	return p;
}

static void
load_api(void *h, struct api *a)
{
	*(void **)&a->background = sym(h, "rctx_background");
	*(void **)&a->with_cancel = sym(h, "rctx_with_cancel");
	*(void **)&a->with_timeout = sym(h, "rctx_with_timeout");
	*(void **)&a->after_func = sym(h, "rctx_after_func");
	*(void **)&a->cancel = sym(h, "rctx_cancel");
	*(void **)&a->wait = sym(h, "rctx_wait");
	*(void **)&a->release = sym(h, "rctx_release");
	*(void **)&a->shutdown = sym(h, "rctx_shutdown");
}

struct user {
	struct api *api;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int phase; /* 1: used rctx; 2: the library is gone, exit */
	int ran;
};

static void
set_phase(struct user *u, int phase)
{
	pthread_mutex_lock(&u->mu);
	u->phase = phase;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

static void
wait_phase(struct user *u, int phase)
{
	pthread_mutex_lock(&u->mu);
	while (u->phase < phase)
		pthread_cond_wait(&u->cv, &u->mu);
	pthread_mutex_unlock(&u->mu);
}

static void
bump(void *arg)
{
	(*(int *)arg)++;
}

/* Touches every per-thread structure: cache, runner, stage, RCU. */
static void *
user_thread(void *arg)
{
	struct user *u = arg;
	struct api *a = u->api;
	rctx_after_t reg;

	for (int i = 0; i < 100; i++) {
		rctx_t *c = a->with_cancel(a->background());
		rctx_t *t = a->with_timeout(c, 3600 * RCTX_SEC);
		rctx_t *s = a->with_timeout(c, RCTX_MSEC);
		if (c == NULL || t == NULL || s == NULL ||
		    a->after_func(c, &reg, bump, &u->ran) != 0)
			abort();
		if (i == 0 && a->wait(s, 30 * RCTX_SEC) != ETIMEDOUT)
			abort();
		(void)a->cancel(c);
		a->release(s);
		a->release(t);
		a->release(c);
	}
	set_phase(u, 1);
	wait_phase(u, 2); /* outlive the unload, then exit */
	return NULL;
}

static void
test_unload_cycles(void **state)
{
	(void)state;
	for (int cycle = 0; cycle < 3; cycle++) {
		struct api api;
		struct user u = { &api, PTHREAD_MUTEX_INITIALIZER,
				  PTHREAD_COND_INITIALIZER, 0, 0 };
		pthread_t th;
		void *h = dlopen(RCTX_LIB_PATH, RTLD_NOW | RTLD_LOCAL);

		assert_non_null(h);
		load_api(h, &api);
		assert_int_equal(pthread_create(&th, NULL, user_thread, &u), 0);
		wait_phase(&u, 1);
		assert_int_equal(u.ran, 100);
		/* This thread used it too. */
		rctx_t *c = api.with_timeout(api.background(), 3600 * RCTX_SEC);
		assert_non_null(c);
		api.release(c);
		api.shutdown();
		assert_int_equal(dlclose(h), 0);
		/* Really unloaded: nothing else holds it. */
		assert_null(dlopen(RCTX_LIB_PATH, RTLD_NOW | RTLD_NOLOAD));
		set_phase(&u, 2); /* the thread exits: no destructor of ours */
		assert_int_equal(pthread_join(th, NULL), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unload_cycles),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
