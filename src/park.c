/* SPDX-License-Identifier: MIT */
/* Parked timers: live contexts' deadlines kept across rctx_shutdown. */

/*
 * rctx_shutdown stops the owner threads and frees their wheels, but a
 * context the caller still holds keeps its deadline: its timer moves to
 * the parking wheel below, a static twheel that no thread owns and that
 * is never freed, and goes to the first wheel that starts afterwards
 * (the next arm, a rctx_wait, a new loop), which files it as any
 * hand-off. Released timers are killed at once, as before.
 *
 * Invariants
 *  I1. A parked timer has QUEUED set (and neither WHEEL nor FIRING): it
 *      is in the parking queue, which holds a pointer to it, so a release
 *      leaves it to whoever pops it (twheel.I1).
 *  I2. The parking wheel is static: a release that read it as t->home
 *      before an adoption re-homed t may still wake it (a futex word
 *      nobody waits on), never freed memory.
 *
 * Ordering
 *  park.A Parking and adoption push with rctx_tw_push (seq_cst, twheel.A)
 *      and take the whole queue with a seq_cst exchange, so the taker
 *      sees what the parker wrote to t (expires, home).
 *
 * Progress: all of it runs under the service lock, at shutdown or when a
 * wheel starts; releases of parked timers stay lock-free.
 */

#include "park.h"

static struct rctx_twheel rctx_park_tw = {
	.efd = -1,
	.planned = RCTX_NEVER & ~RCTX_PLANNED_POLL,
};

struct rctx_twheel *
rctx_park_home(void)
{
	return &rctx_park_tw;
}

bool
rctx_park_pending(void)
{
	/* relaxed: a hint; adoption re-reads under the service lock */
	return atomic_load_explicit(&rctx_park_tw.queue,
				    memory_order_relaxed) != NULL;
}

/* Kill t (released), now that we hold its last holder bit. */
static void
rctx_park_kill(struct rctx_timer *t)
{
	/* Relaxed: shutdown's callers are quiescent (no other holder). */
	atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_HELD,
				  memory_order_relaxed);
	rctx_tw_call_dead(t);
}

/* Park live t (taken off tw by its owner's stand-in): I1. */
static void
rctx_park_one(struct rctx_timer *t)
{
	/* Relaxed: the push below publishes it (park.A). */
	atomic_store_explicit(&t->home, &rctx_park_tw, memory_order_relaxed);
	rctx_tw_push(&rctx_park_tw, t);
}

void
rctx_park_wheel(struct rctx_twheel *tw)
{
	struct rctx_wheel_timer *wt, *wnext;
	struct rctx_timer *t, *next;

	/* seq_cst: as in rctx_tw_drain (twheel.A). */
	t = atomic_exchange_explicit(&tw->queue, NULL, memory_order_seq_cst);
	for (; t; t = next) {
		/* acquire: pairs with the release of the arm's or release's
		 * RMW (timer.A, timer.B); the owner is gone */
		uint32_t f =
		    atomic_load_explicit(&t->flags, memory_order_acquire);

		next = t->qnext;
		if (f & RCTX_TIMER_F_WHEEL)
			rctx_tw_unfile(tw, t); /* the wheel or the near run */
		if (f & RCTX_TIMER_F_DEAD) {
			rctx_park_kill(t);
			continue;
		}
		/* Relaxed: quiescent; QUEUED stays set (I1). */
		atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_F_WHEEL,
					  memory_order_relaxed);
		rctx_park_one(t);
	}
	wt = rctx_tw_unfile_all(tw);
	for (; wt; wt = wnext) {
		uint32_t f;

		wnext = wt->next;
		t = rctx_container_of(wt, struct rctx_timer, wt);
		/* acquire: as above */
		f = atomic_load_explicit(&t->flags, memory_order_acquire);
		if (f & RCTX_TIMER_F_DEAD) {
			rctx_park_kill(t);
			continue;
		}
		/* Relaxed: quiescent; from the wheel to the queue (I1). */
		atomic_fetch_xor_explicit(
		    &t->flags, RCTX_TIMER_F_WHEEL | RCTX_TIMER_F_QUEUED,
		    memory_order_relaxed);
		rctx_park_one(t);
	}
}

void
rctx_park_sweep(void)
{
	/* seq_cst: park.A */
	struct rctx_timer *t = atomic_exchange_explicit(
	    &rctx_park_tw.queue, NULL, memory_order_seq_cst);
	struct rctx_timer *next, *keep = NULL;

	for (; t; t = next) {
		/* acquire: pairs with the release CAS of rctx_timer_release
		 * that set DEAD (timer.B) */
		uint32_t f =
		    atomic_load_explicit(&t->flags, memory_order_acquire);

		next = t->qnext;
		if (f & RCTX_TIMER_F_DEAD) {
			rctx_park_kill(t);
			continue;
		}
		t->qnext = keep;
		keep = t;
	}
	for (; keep; keep = next) {
		next = keep->qnext;
		rctx_tw_push(&rctx_park_tw, keep);
	}
}

void
rctx_park_adopt_locked(struct rctx_twheel *to)
{
	/* seq_cst: park.A */
	struct rctx_timer *t = atomic_exchange_explicit(
	    &rctx_park_tw.queue, NULL, memory_order_seq_cst);
	struct rctx_timer *next;

	if (t == NULL)
		return;
	for (; t; t = next) {
		next = t->qnext;
		/* Relaxed: a release may read either home (I2); the push
		 * publishes it to the new owner (twheel.A). */
		atomic_store_explicit(&t->home, to, memory_order_relaxed);
		rctx_tw_push(to, t);
	}
	rctx_tw_wake_if(to, RCTX_PLANNED_WOKEN + 1);
}
