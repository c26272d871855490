/* SPDX-License-Identifier: MIT */
/* Waiting and fds, SEMANTICS 26-27. */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc.h"
#include "children.h"
#include "fault.h"
#include "internal.h"
#include "rctx.h"
#include "util.h"

static int key_a, key_b;
static int val_1, val_2;

#define HOUR (3600 * RCTX_SEC)

/* ---------------------------------------------------- waiting and fds */

enum { WAITERS = 6 };

struct wait26 {
	rctx_t *target;
	pthread_barrier_t go, done;
	int result[WAITERS];
	bool quit;
};

struct wait26_arg {
	struct wait26 *w;
	int id;
};

static void *
wait26_thread(void *p)
{
	struct wait26_arg *a = p;
	struct wait26 *w = a->w;

	for (;;) {
		pthread_barrier_wait(&w->go);
		if (w->quit)
			break;
		/* half wait forever, half with a timeout never reached */
		w->result[a->id] = rctx_wait(w->target, a->id % 2 ? HOUR : -1);
		pthread_barrier_wait(&w->done);
	}
	return NULL;
}

/*
 * SEMANTICS 26: "rctx_wait returns the err once done (also when done
 * before the call), or 0 after the timeout; many threads can wait on one
 * context and all wake on cancel."
 */
static void
test_s26_wait_and_many_waiters(void **state)
{
	struct wait26 w = { 0 };
	struct wait26_arg args[WAITERS];
	pthread_t th[WAITERS];
	long rounds = SCALED(2000);
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_time_t t0;

	(void)state;
	t0 = rctx_now();
	assert_int_equal(rctx_wait(c, RCTX_MSEC), 0);
	assert_true(rctx_now() - t0 >= RCTX_MSEC); /* never early */
	assert_int_equal(rctx_wait(c, 0), 0);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_wait(c, -1), ECANCELED);
	assert_int_equal(rctx_wait(c, 0), ECANCELED);
	assert_int_equal(rctx_wait(c, HOUR), ECANCELED);
	rctx_release(c);
	c = rctx_with_timeout(rctx_background(), 0);
	assert_int_equal(rctx_wait(c, 0), ETIMEDOUT);
	rctx_release(c);

	pthread_barrier_init(&w.go, NULL, WAITERS + 1);
	pthread_barrier_init(&w.done, NULL, WAITERS + 1);
	for (int i = 0; i < WAITERS; i++) {
		args[i] = (struct wait26_arg){ .w = &w, .id = i };
		xpthread_create(&th[i], wait26_thread, &args[i]);
	}
	for (long i = 0; i < rounds; i++) {
		rctx_t *root = rctx_with_cancel(rctx_background());
		rctx_t *v = rctx_with_value(root, &key_a, &val_1);

		/* waiters on the root itself, or on a value child, or on a
		 * cancel child */
		w.target = i % 3 == 0	? root
			   : i % 3 == 1 ? v
					: rctx_with_cancel(v);
		for (int k = 0; k < WAITERS; k++)
			w.result[k] = -1;
		pthread_barrier_wait(&w.go);
		if (i % 2)
			for (int k = 0; k < 3; k++)
				sched_yield(); /* let some go to sleep */
		assert_int_equal(rctx_cancel_cause(root, 26), 0);
		pthread_barrier_wait(&w.done);
		for (int k = 0; k < WAITERS; k++)
			assert_int_equal(w.result[k], ECANCELED);
		if (i % 3 == 2)
			rctx_release(w.target);
		rctx_release(v);
		rctx_release(root);
	}
	/* and on a deadline */
	w.target = rctx_with_timeout(rctx_background(), 2 * RCTX_MSEC);
	pthread_barrier_wait(&w.go);
	pthread_barrier_wait(&w.done);
	for (int k = 0; k < WAITERS; k++)
		assert_int_equal(w.result[k], ETIMEDOUT);
	rctx_release(w.target);
	w.quit = true;
	pthread_barrier_wait(&w.go);
	for (int i = 0; i < WAITERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&w.go);
	pthread_barrier_destroy(&w.done);
}

/* Behaviour 27: a thread that sees done polls the fd. */
struct race27 {
	rctx_t *root, *leaf;
	int fd;
	bool ready;
	bool done_seen; /* done when the fd was first seen readable */
	bool by_leaf;	/* cancel the leaf itself, not the root */
};

static void
race27_cancel(void *arg)
{
	struct race27 *r = arg;

	assert_int_equal(rctx_cancel(r->root), 0);
}

static void
race27_cancel_either(void *arg)
{
	struct race27 *r = arg;

	assert_int_equal(rctx_cancel(r->by_leaf ? r->leaf : r->root), 0);
}

/* The other direction: a thread that finds the fd readable sees done. */
static void
race27_poll(void *arg)
{
	struct race27 *r = arg;

	while (!readable(r->fd))
		;
	r->done_seen = rctx_done(r->leaf) && rctx_err(r->leaf) != 0;
}

static void
race27_observe(void *arg)
{
	struct race27 *r = arg;
	unsigned spins = 0;

	while (!rctx_done(r->leaf))
		if (++spins % 16384 == 0)
			sched_yield();
	r->ready = readable(r->fd);
}

/*
 * SEMANTICS 27: "rctx_fd is created once per context (same fd on every
 * call), polls readable (level-triggered) once the context is done,
 * including via an ancestor or a deadline, and immediately if it was
 * created after done. Value contexts give their cancellation source's fd."
 */
static void
test_s27_fd_readable_once_done(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(root);
	rctx_t *v = rctx_with_value(c, &key_a, &val_1);
	rctx_t *vv = rctx_with_value(v, &key_b, &val_2);
	int fd = rctx_fd(c), rfd = rctx_fd(root);

	(void)state;
	assert_true(fd >= 0);
	assert_true(rfd >= 0);
	assert_int_not_equal(fd, rfd);
	assert_int_equal(rctx_fd(c), fd);
	assert_int_equal(rctx_fd(v), fd);
	assert_int_equal(rctx_fd(vv), fd);
	assert_false(readable(fd));
	assert_false(readable(rfd));
	assert_int_equal(rctx_cancel(root), 0); /* via an ancestor */
	assert_true(readable(fd));
	assert_true(readable(fd)); /* level-triggered */
	assert_true(readable(rfd));
	assert_int_equal(rctx_fd(vv), fd);
	assert_true(readable(rctx_fd(v)));

	/* created after done: readable at once */
	rctx_t *late = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_cancel(late), 0);
	int lfd = rctx_fd(late);
	assert_true(lfd >= 0);
	assert_true(readable(lfd));
	assert_int_equal(rctx_fd(late), lfd);
	rctx_t *born = rctx_with_cancel(late);
	assert_true(readable(rctx_fd(born)));

	/* via a deadline, fd made before expiry, and after */
	rctx_t *t = rctx_with_timeout(rctx_background(), 2 * RCTX_MSEC);
	rctx_t *tv = rctx_with_value(t, &key_a, &val_1);
	int tfd = rctx_fd(tv);
	assert_int_equal(tfd, rctx_fd(t));
	assert_false(readable(tfd) && !rctx_done(t));
	assert_true(becomes_readable(tfd));
	long early = !rctx_done(t); /* readable before done (checked below) */
	assert_true(readable(tfd));
	rctx_t *t2 = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	assert_int_equal(rctx_wait(t2, -1), ETIMEDOUT);
	assert_true(becomes_readable(rctx_fd(t2)));
	rctx_t *t3 = rctx_with_timeout(rctx_background(), -1);
	assert_true(readable(rctx_fd(t3)));

	/* A thread that sees done (cancelled on another thread) finds the
	 * fd readable. */
	struct race27 r;
	struct duo d;
	long bad = 0, rounds = SCALED(10000);

	duo_start(&d, race27_observe, &r);
	for (long i = 0; i < rounds; i++) {
		r.root = rctx_with_cancel(rctx_background());
		r.leaf = rctx_with_cancel(r.root);
		r.fd = rctx_fd(r.leaf);
		assert_true(r.fd >= 0);
		r.ready = false;
		duo_round(&d, race27_cancel);
		bad += !r.ready;
		rctx_release(r.leaf);
		rctx_release(r.root);
	}
	duo_stop(&d);

	/* The same with a wide cascade: the watched child is the first one
	 * the cancel marks done, 20,000 siblings are marked after it. */
	enum { WIDE27 = 20000, WIDE_ROUNDS = 40 };
	rctx_t **kids = malloc(WIDE27 * sizeof(*kids));
	long wide_bad = 0;

	assert_non_null(kids);
	duo_start(&d, race27_observe, &r);
	for (int i = 0; i < WIDE_ROUNDS; i++) {
		r.root = rctx_with_cancel(rctx_background());
		for (int k = 0; k < WIDE27; k++)
			kids[k] = rctx_with_cancel(r.root);
		r.leaf = kids[0];
		r.fd = rctx_fd(r.leaf);
		r.ready = false;
		duo_round(&d, race27_cancel);
		wide_bad += !r.ready;
		for (int k = 0; k < WIDE27; k++)
			rctx_release(kids[k]);
		rctx_release(r.root);
	}
	duo_stop(&d);
	free(kids);

	/* Readable means done: rctx_err() of a context whose fd a poller
	 * found readable is not 0 (Go: once Done is closed, Err is non-nil). */
	duo_start(&d, race27_poll, &r);
	for (long i = 0; i < rounds; i++) {
		r.root = rctx_with_cancel(rctx_background());
		r.leaf = rctx_with_cancel(r.root);
		r.fd = rctx_fd(r.leaf);
		r.by_leaf = i % 2;
		r.done_seen = false;
		duo_round(&d, race27_cancel_either);
		early += !r.done_seen;
		rctx_release(r.leaf);
		rctx_release(r.root);
	}
	duo_stop(&d);

	rctx_t *all[] = { t3, t2, tv, t, born, late, vv, v, c, root };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rctx_release(all[i]);
	/* Known defects, reported by name so the suite keeps showing them. */
	if (early)
		fail_msg(
		    "KNOWN DEFECT (fd-readable-before-done): "
		    "the fd polled readable while rctx_done() was false in "
		    "%ld of %ld rounds",
		    early, rounds + 1);
	if (bad || wide_bad)
		fail_msg("KNOWN DEFECT (fd-readable-after-done): "
			 "rctx_done() was true but the fd not yet readable in "
			 "%ld of %ld narrow and %ld of %d wide rounds",
			 bad, rounds, wide_bad, (int)WIDE_ROUNDS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s26_wait_and_many_waiters),
		cmocka_unit_test(test_s27_fd_readable_once_done),
	};

	return RUN_TESTS(tests);
}
