/* SPDX-License-Identifier: MIT */
/* Draining: count work in and out under a context, and wait for none. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "drain.h"
#include "tree.h"

/*
 * Invariants
 *  (I1) word / 2 is the number of enters not yet matched by a leave;
 *       WAITERS is set only by a joiner that saw that number above 0, and
 *       cleared by the leave that takes it to 0 (in the same CAS).
 *  (I2) A thread's `running` list holds the drains whose rctx_drain_run
 *       is on its stack; a join of one of them would wait for itself.
 *
 * Ordering
 *  (A) Leave is a release CAS; a join's acquire load that reads a count
 *      of 0 reads a value at the end of the release sequence of every
 *      leave before it, so the work's writes happen before join returns.
 *  (B) No lost enter across a cancel: enter adds to word (seq_cst) then
 *      loads the context's state (seq_cst); cancel_join CASes the state
 *      (seq_cst, tree.c) then loads word (seq_cst). In the total order of
 *      seq_cst operations one comes first: the enter sees the cancel and
 *      backs out, or the join sees the enter and waits for its leave.
 *  (C) A joiner sets WAITERS with a CAS on the value it then sleeps on;
 *      the leave that takes the count to 0 changes the word (so a joiner
 *      that has not slept yet does not) and wakes every sleeper.
 *
 * Progress: enter is wait-free (one RMW and a load); leave is lock-free
 * (a CAS loop, so that a leave without an enter never shows a negative
 * count); the wake is one system call, only when a joiner sleeps.
 */

struct run_frame {
	struct rctx_drain_impl *d;
	struct run_frame *up;
};

static RCTX_TLS struct run_frame *running;

int
rctx_drain_do_init(struct rctx_drain_impl *d, struct rctx *parent)
{
	struct rctx *c = rctx_tree_with_cancel(parent);

	if (c == NULL)
		return -ENOMEM;
	d->ctx = c;
	atomic_init(&d->word, 0);
	d->magic = RCTX_DRAIN_MAGIC;
	return 0;
}

int
rctx_drain_do_leave(struct rctx_drain_impl *d)
{
	/* relaxed: a first guess for the CAS */
	uint32_t v = atomic_load_explicit(&d->word, memory_order_relaxed);
	uint32_t nv;

	do {
		if (RCTX_UNLIKELY(v < RCTX_DRAIN_ONE)) {
#ifdef RCTX_DEBUG
			fprintf(stderr,
				"rctx: rctx_drain_leave: drain %p has no work "
				"inside (a leave without an enter)\n",
				(void *)d);
			abort();
#endif
			return -EPERM;
		}
		nv = v - RCTX_DRAIN_ONE;
		if (nv == RCTX_DRAIN_WAITERS)
			nv = 0; /* the last one out clears WAITERS (I1) */
		/* release: order A, pairs with the acquire load in join;
		 * relaxed on failure: we retry with the value read */
	} while (!atomic_compare_exchange_weak_explicit(
	    &d->word, &v, nv, memory_order_release, memory_order_relaxed));
	if (v == (RCTX_DRAIN_ONE | RCTX_DRAIN_WAITERS))
		rctx_futex(&d->word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
	return 0;
}

int
rctx_drain_do_enter(struct rctx_drain_impl *d)
{
	uint64_t s;

	/* seq_cst: order B, before the state load below */
	atomic_fetch_add_explicit(&d->word, RCTX_DRAIN_ONE,
				  memory_order_seq_cst);
	/* seq_cst: order B, pairs with the cancel's state CAS */
	s = atomic_load_explicit(&d->ctx->state, memory_order_seq_cst);
	if (RCTX_UNLIKELY(s & RCTX_ST_ERR_MASK)) {
		(void)rctx_drain_do_leave(d); /* wakes a joiner it held up */
		return -rctx_st_err(s);
	}
	return 0;
}

int
rctx_drain_do_run(struct rctx_drain_impl *d, void (*fn)(void *), void *arg)
{
	struct run_frame f = { .d = d, .up = running };
	int r = rctx_drain_do_enter(d);

	if (r < 0)
		return r;
	running = &f;
	fn(arg);
	running = f.up;
	return rctx_drain_do_leave(d);
}

static bool
inside(struct rctx_drain_impl *d)
{
	for (struct run_frame *f = running; f; f = f->up)
		if (f->d == d)
			return true;
	return false;
}

static int
join(struct rctx_drain_impl *d, rctx_time_t timeout)
{
	rctx_time_t end =
	    timeout < 0 ? INT64_MAX : rctx_clock_add(rctx_clock_now(), timeout);

	for (;;) {
		/* seq_cst: acquire for order A (pairs with the release CAS
		 * in leave), and cancel_join's half of order B (pairs with
		 * the enter's fetch_add); a plain load on x86 */
		uint32_t v =
		    atomic_load_explicit(&d->word, memory_order_seq_cst);
		struct timespec ts, *tsp = NULL;

		if (v < RCTX_DRAIN_ONE)
			return 0;
		if (end != INT64_MAX) {
			rctx_time_t left = end - rctx_now();

			if (left <= 0)
				return -ETIMEDOUT;
			ts.tv_sec = left / RCTX_SEC;
			ts.tv_nsec = left % RCTX_SEC;
			tsp = &ts;
		}
		if (!(v & RCTX_DRAIN_WAITERS)) {
			/* relaxed: the flag only asks for a wake-up (C);
			 * the load above orders what we return on */
			if (!atomic_compare_exchange_strong_explicit(
				&d->word, &v, v | RCTX_DRAIN_WAITERS,
				memory_order_relaxed, memory_order_relaxed))
				continue;
			v |= RCTX_DRAIN_WAITERS;
		}
		rctx_futex(&d->word, FUTEX_WAIT_PRIVATE, v, tsp, 0);
	}
}

int
rctx_drain_do_join(struct rctx_drain_impl *d, rctx_time_t timeout)
{
	if (inside(d))
		return -EDEADLK;
	return join(d, timeout);
}

int
rctx_drain_do_cancel_join(struct rctx_drain_impl *d, rctx_time_t timeout)
{
	if (inside(d))
		return -EDEADLK; /* and no cancel: the call had no effect */
	(void)rctx_tree_cancel(d->ctx, RCTX_ST_CANCELED, ECANCELED);
	return join(d, timeout);
}

int
rctx_drain_do_destroy(struct rctx_drain_impl *d)
{
	/* acquire: as join's load, so the work's writes are ours too */
	if (atomic_load_explicit(&d->word, memory_order_acquire) >=
	    RCTX_DRAIN_ONE)
		return -EBUSY;
	d->magic = 0;
	rctx_tree_release(d->ctx);
	d->ctx = NULL;
	return 0;
}
