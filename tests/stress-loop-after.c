/* SPDX-License-Identifier: MIT */
/* Stress: loop after-funcs handed between producers, cancellers and loops. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rctx.h"
#include "util.h"

/*
 * LOOPS owner threads run their loops. PRODUCERS threads register batches
 * of calls, spread over the loops, on contexts under a shared root that a
 * canceller thread cancels and replaces all the time; they also cancel
 * some contexts themselves, then stop every call in a random order. Each
 * call must end exactly one way: its stop returns true and fn never runs,
 * or fn runs once, on its loop's owner, and has returned when the stop
 * (false) returns.
 */
#define LOOPS	  2
#define PRODUCERS 2
#define BATCH	  48
#define ROUNDS	  (600 * RCTX_STRESS_SCALE)

struct call {
	rctx_after_t reg;
	pthread_t owner;
	_Atomic int ran;
	_Atomic int finished;
};

struct owner {
	pthread_t th;
	_Atomic(rctx_loop_t *) loop;
	_Atomic long ran;
};

static struct owner owners[LOOPS];
static _Atomic int quit_loops, quit_cancel;
static pthread_mutex_t root_mu = PTHREAD_MUTEX_INITIALIZER;
static rctx_t *root; /* under root_mu */
static _Atomic long n_ran, n_stopped, n_roots;

static void
on_done(void *arg)
{
	struct call *c = arg;

	WCHECK(pthread_equal(pthread_self(), c->owner));
	WCHECK(atomic_fetch_add(&c->ran, 1) == 0);
	atomic_store(&c->finished, 1);
}

static void *
owner_main(void *arg)
{
	struct owner *o = arg;
	rctx_loop_t *loop = rctx_loop_new();

	WCHECK(loop != NULL);
	atomic_store(&o->loop, loop);
	loop_serve(loop, &quit_loops, &o->ran, 2);
	rctx_loop_free(loop);
	return NULL;
}

static rctx_t *
root_get(void)
{
	rctx_t *r;

	pthread_mutex_lock(&root_mu);
	r = rctx_retain(root);
	pthread_mutex_unlock(&root_mu);
	return r;
}

static void *
canceller_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&quit_cancel)) {
		rctx_t *fresh = rctx_with_cancel(rctx_background()), *old;

		WCHECK(fresh != NULL);
		pthread_mutex_lock(&root_mu);
		old = root;
		root = fresh;
		pthread_mutex_unlock(&root_mu);
		rctx_cancel(old); /* hands many calls to the loops at once */
		rctx_release(old);
		atomic_fetch_add(&n_roots, 1);
		for (int i = 0; i < 4; i++)
			sched_yield();
	}
	return NULL;
}

static void *
producer_main(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	struct call *calls = calloc(BATCH, sizeof(*calls));
	rctx_t *ctx[BATCH];
	int order[BATCH];

	WCHECK(calls != NULL);
	for (int round = 0; round < ROUNDS; round++) {
		rctx_t *r = root_get();

		memset(calls, 0, BATCH * sizeof(*calls));
		for (int i = 0; i < BATCH; i++) {
			struct owner *o = &owners[rand_r(&seed) % LOOPS];

			ctx[i] = rctx_with_cancel(r);
			WCHECK(ctx[i] != NULL);
			calls[i].owner = o->th;
			WCHECK(rctx_loop_after_func(atomic_load(&o->loop),
						    ctx[i], &calls[i].reg,
						    on_done, &calls[i]) == 0);
			if (rand_r(&seed) % 4 == 0)
				(void)rctx_cancel(ctx[i]);
			order[i] = i;
		}
		rctx_release(r);
		for (int i = BATCH - 1; i > 0; i--) {
			int j = (int)(rand_r(&seed) % (unsigned)(i + 1)), t;

			t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		if (round % 3 == 0)
			sched_yield(); /* let the loops run some */
		for (int k = 0; k < BATCH; k++) {
			struct call *c = &calls[order[k]];

			if (rctx_after_stop(&c->reg)) {
				atomic_fetch_add(&n_stopped, 1);
				WCHECK(atomic_load(&c->ran) == 0);
			} else {
				WCHECK(atomic_load(&c->finished) == 1);
				atomic_fetch_add(&n_ran, 1);
			}
			WCHECK(!rctx_after_stop(&c->reg));
			rctx_release(ctx[order[k]]);
		}
		/* every call ended: none runs later (calls is reused) */
	}
	free(calls);
	return NULL;
}

static void
test_handoff(void **state)
{
	pthread_t prod[PRODUCERS], canc;
	long loop_ran = 0;

	(void)state;
	root = rctx_with_cancel(rctx_background());
	for (int i = 0; i < LOOPS; i++) {
		assert_int_equal(
		    pthread_create(&owners[i].th, NULL, owner_main, &owners[i]),
		    0);
		while (atomic_load(&owners[i].loop) == NULL)
			sched_yield();
	}
	assert_int_equal(pthread_create(&canc, NULL, canceller_main, NULL), 0);
	for (int i = 0; i < PRODUCERS; i++)
		assert_int_equal(pthread_create(&prod[i], NULL, producer_main,
						(void *)(uintptr_t)(i + 1)),
				 0);
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(prod[i], NULL);
	atomic_store(&quit_cancel, 1);
	pthread_join(canc, NULL);
	atomic_store(&quit_loops, 1);
	for (int i = 0; i < LOOPS; i++) {
		pthread_join(owners[i].th, NULL);
		loop_ran += atomic_load(&owners[i].ran);
	}
	print_message("# %ld ran, %ld stopped, %ld roots cancelled\n",
		      atomic_load(&n_ran), atomic_load(&n_stopped),
		      atomic_load(&n_roots));
	assert_int_equal(atomic_load(&n_ran) + atomic_load(&n_stopped),
			 (long)PRODUCERS * ROUNDS * BATCH);
	assert_int_equal(loop_ran, atomic_load(&n_ran)); /* no deadlines */
	rctx_release(root);
	rctx_shutdown();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handoff),
	};

	return RUN_TESTS(tests);
}
