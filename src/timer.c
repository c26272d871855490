/* SPDX-License-Identifier: MIT */
/* Timer service: arm, cancel and release one-shot timers (the routing). */

/*
 * The generic timer service. It knows nothing of contexts: the core
 * installs its callbacks (rctx_timer_setup, rctx_timer_set_cycle_hook)
 * and embeds struct rctx_timer (timer-types.h). The rooms:
 *   twheel.c  an owned wheel: hand-off queue, flags, take/drain/fire/plan
 *             (the flag protocol and twheel.A-E are stated there);
 *   stage.c   per-thread stages of library-mode arms;
 *   owner.c   the library's owner threads, shutdown and fork hooks;
 *   loop.c    event-loop mode (wheels owned by the application's loops);
 *   timer.c   (here) which wheel an arm goes to, cancel and release.
 *
 * Routing of an arm
 *  1. the calling thread owns a loop: it files t in its own wheel at once
 *     (it is the owner: no queue, no wake-up);
 *  2. library threads allowed (the default): the library wheel of the
 *     calling thread's CPU, started on first use, whether or not loops
 *     exist (a loop never runs expiry work for threads not its own):
 *     staged on the calling thread if due at least RCTX_STAGE_MIN_TICKS
 *     ticks after `now` (stage.c; the stage keeps the wheel of the CPU
 *     it was made on, stage.I3), else pushed on the wheel's queue
 *     (twheel.A/B);
 *  3. no library threads (rctx_timer_set_threads(false)): hand t to one
 *     of the loops (by CPU), inside an RCU read-side section (loop.B);
 *     with no loop at all the arm fails with -EAGAIN.
 *
 * Invariants
 *  I1. A timer is armed at most once (ARMED); a second arm is ignored.
 *  I2. The route is chosen once, at arm; only migration (loop.c I1)
 *      changes t->home afterwards.
 *  I3. No library owner starts while the mode says "no threads": the
 *      mode is written and read under the service lock wherever a thread
 *      may start (rctx_timer_set_threads, rctx_route_start; loop.c's
 *      rehome), and switching it off fails while one runs.
 *
 * Ordering
 *  timer.A arm publishes t->home (and expires) with the release fetch_or
 *      that sets ARMED|QUEUED (or WHEEL); rctx_timer_release loads flags
 *      with acquire before it reads home.
 *  timer.B cancel's acq_rel fetch_or is ordered against the owner's FIRING
 *      CAS (twheel.D); release's acq_rel CAS against the owner's CASes
 *      (twheel.E): whichever side leaves the holder bits clear with DEAD
 *      set calls dead (twheel.I1).
 *
 * Progress: arm (steady state), cancel and release are lock-free and make
 * no system call unless they must wake an owner (twheel.B). The first arm
 * on a CPU takes the service lock and starts a thread (owner.c).
 * Partners: loop.c (rctx_loop_pick_rcu, rctx_loop_any, rctx_loop_ever),
 * owner.c (rctx_owner_route, rctx_owner_start_locked), stage.c
 * (rctx_stage_self, rctx_stage_push), twheel.c (push, wake, flags).
 */

#include <errno.h>

#include <urcu-bp.h>

#include "loop.h"
#include "owner.h"
#include "park.h"
#include "stage.h"
#include "timer.h"
#include "twheel.h"

void
rctx_timer_setup(rctx_timer_fn fire, rctx_timer_fn dead)
{
	rctx_tw_setup(fire, dead);
}

void
rctx_timer_set_cycle_hook(void (*fn)(void))
{
	rctx_owner_set_cycle_hook(fn);
}

void
rctx_timer_set_tick_shift(unsigned shift)
{
	rctx_tw_set_tick_shift(shift);
}

uint64_t
rctx_timer_wakeups(void)
{
	return rctx_tw_wakeups();
}

uint64_t
rctx_timer_owner_runs(void)
{
	return rctx_tw_owner_runs();
}

void
rctx_timer_init(struct rctx_timer *t)
{
	rctx_wheel_timer_init(&t->wt);
	t->qnext = NULL;
	t->expires = 0;
	/* Relaxed: t is not yet shared. */
	atomic_init(&t->home, NULL);
	atomic_init(&t->flags, 0);
}

static int rctx_route_start(void);

void
rctx_timer_poke(void)
{
	rctx_owner_poke();
	/* Deadlines parked by a shutdown: restart the service for them. */
	if (RCTX_UNLIKELY(rctx_park_pending()))
		(void)rctx_route_start();
}

/* Hand t to tw's owner through its queue. */
static void
rctx_route_hand(struct rctx_twheel *tw, struct rctx_timer *t,
		rctx_time_t expires)
{
	rctx_timer_set_expires(t, expires);
	/* Relaxed: published by the fetch_or below (timer.A). */
	atomic_store_explicit(&t->home, tw, memory_order_relaxed);
	/*
	 * Release: timer.A, publishes home to a rctx_timer_release that sees
	 * QUEUED (pairs with its acquire load); the push publishes all of t
	 * to the owner (twheel.A).
	 */
	atomic_fetch_or_explicit(&t->flags,
				 RCTX_TIMER_F_ARMED | RCTX_TIMER_F_QUEUED,
				 memory_order_release);
	rctx_tw_push(tw, t);
	/* Only an earlier deadline than the owner planned wakes it. */
	rctx_tw_wake_if(tw, expires);
}

int
rctx_timer_set_threads(bool enable)
{
	int err = 0;

	(void)rctx_owner_init();
	rctx_owner_lock();
	if (!enable && rctx_owner_nrunning_locked())
		err = -EBUSY; /* I3: some already run */
	else
		rctx_owner_set_threads_off_locked(!enable);
	rctx_owner_unlock();
	return err;
}

/*
 * Slow path: start the library wheel of this CPU (then adopt timers
 * parked by a loop's free). No-thread mode: 0 if a loop appeared (the
 * caller routes again), else -EAGAIN.
 */
static int
rctx_route_start(void)
{
	struct rctx_twheel *tw;
	int err = 0;

	(void)rctx_owner_init();
	rctx_owner_lock();
	if (rctx_owner_threads_off()) {
		if (rctx_loop_count_locked() == 0)
			err = -EAGAIN;
	} else {
		err = rctx_owner_start_locked(rctx_owner_cpu(), &tw);
		if (!err) {
			rctx_loop_adopt_orphans_locked(tw);
			rctx_park_adopt_locked(tw);
		}
	}
	rctx_owner_unlock();
	return err;
}

int
rctx_timer_arm(struct rctx_timer *t, rctx_time_t expires)
{
	return rctx_timer_arm_at(t, expires, RCTX_NEVER);
}

int
rctx_timer_arm_at(struct rctx_timer *t, rctx_time_t expires, rctx_time_t now)
{
	struct rctx_loop *own = rctx_loop_mine;
	struct rctx_twheel *tw;
	int err;

	/* Relaxed: only the arming thread should touch t before arm. */
	if (atomic_load_explicit(&t->flags, memory_order_relaxed) &
	    RCTX_TIMER_F_ARMED)
		return 0; /* I1: armed twice, a contract violation: ignore */
	if (own) {
		/* The owner files directly: no queue, no wake-up needed. */
		rctx_timer_set_expires(t, expires);
		/* Relaxed: published by the fetch_or below (timer.A). */
		atomic_store_explicit(&t->home, &own->tw, memory_order_relaxed);
		/*
		 * Release: timer.A, publishes home to a rctx_timer_release
		 * that sees WHEEL (pairs with its acquire load); wt is ours.
		 */
		atomic_fetch_or_explicit(
		    &t->flags, RCTX_TIMER_F_ARMED | RCTX_TIMER_F_WHEEL,
		    memory_order_release);
		rctx_wheel_add(&own->tw.w, &t->wt, expires);
		return 0;
	}
	for (;;) {
		if (rctx_owner_threads_off()) {
			if (rctx_loop_any()) {
				rcu_read_lock(); /* loop.B */
				tw = rctx_loop_pick_rcu();
				if (tw) {
					rctx_route_hand(tw, t, expires);
					rctx_rcu_read_unlock();
					return 0;
				}
				rctx_rcu_read_unlock();
			}
		} else if ((tw = rctx_owner_route()) != NULL) {
			struct rctx_stage *st;

			if (now != RCTX_NEVER &&
			    expires - now >=
				RCTX_STAGE_MIN_TICKS * rctx_tw_tick(tw) &&
			    (st = rctx_stage_self(tw)) != NULL) {
				rctx_stage_push(st, t, expires);
				return 0;
			}
			rctx_route_hand(tw, t, expires);
			return 0;
		}
		err = rctx_route_start();
		if (err)
			return err;
	}
}

void
rctx_timer_cancel(struct rctx_timer *t)
{
	/*
	 * acq_rel: timer.B, ordered against the FIRING CAS in rctx_tw_fire
	 * in flags' modification order (twheel.D); release publishes the
	 * caller's prior writes to the owner that skips t (the acquire of
	 * its CAS in rctx_tw_take or rctx_tw_fire).
	 */
	atomic_fetch_or_explicit(&t->flags, RCTX_TIMER_F_CANCELLED,
				 memory_order_acq_rel);
}

void
rctx_timer_release(struct rctx_timer *t)
{
	struct rctx_twheel *tw;
	uint32_t f, nf;
	bool push;
	/*
	 * Only loop wheels are freed before shutdown (loop.B): a program
	 * that never made a loop needs no read-side section.
	 */
	bool rcu = rctx_loop_ever();

	if (rcu)
		rcu_read_lock(); /* before the CAS: loop.B */
	/* Acquire: timer.A, pairs with the release fetch_or of the arm
	 * (rctx_route_hand, rctx_stage_push, rctx_timer_arm_at). */
	f = atomic_load_explicit(&t->flags, memory_order_acquire);
	for (;;) {
		if (f & RCTX_TIMER_F_DEAD) {
			if (rcu)
				rctx_rcu_read_unlock();
			return; /* released twice or killed by shutdown */
		}
		/*
		 * Read home before the CAS: once DEAD is set, an owner that
		 * holds t may kill it at any moment, so t must not be read
		 * after the CAS unless we took QUEUED ourselves (twheel.I4).
		 * Relaxed: a migration may rewrite it; both the old and the
		 * new owner stay alive until our read-side section ends
		 * (loop.B).
		 */
		tw = atomic_load_explicit(&t->home, memory_order_relaxed);
		nf = f | RCTX_TIMER_F_DEAD | RCTX_TIMER_F_CANCELLED;
		push = (f & RCTX_TIMER_F_WHEEL) && !(f & RCTX_TIMER_F_QUEUED);
		if (push)
			nf |= RCTX_TIMER_F_QUEUED;
		/*
		 * acq_rel: timer.B; acquire pairs with the release of the
		 * owner's CASes in rctx_tw_take and rctx_tw_fire (we see what
		 * it holds, twheel.E); release hands our DEAD to it. Acquire
		 * on failure: the retry reads home again, published as above.
		 */
		if (atomic_compare_exchange_weak_explicit(&t->flags, &f, nf,
							  memory_order_acq_rel,
							  memory_order_acquire))
			break;
	}
	if (!(f & RCTX_TIMER_HELD)) {
		if (rcu)
			rctx_rcu_read_unlock();
		rctx_tw_call_dead(t); /* twheel.I1: nobody holds t */
		return;
	}
	if (f & RCTX_TIMER_F_STAGED) {
		/* Its stage's flush or the owner's steal kills it. */
		if (rcu)
			rctx_rcu_read_unlock();
		return;
	}
	/*
	 * The owner holds t (queue or wheel): it must look within about a
	 * tick. We touch t again only to push it, which our QUEUED bit
	 * keeps alive until the owner pops it.
	 */
	if (push)
		rctx_tw_push(tw, t);
	if ((f & RCTX_TIMER_F_FIRING) ||
	    (rctx_loop_mine && tw == &rctx_loop_mine->tw)) {
		/*
		 * The owner is awake: it sees DEAD after fire, or it is us
		 * and looks at its queue before it sleeps (loop_next/run).
		 */
		if (rcu)
			rctx_rcu_read_unlock();
		return;
	}
	rctx_tw_wake_soon(tw);
	if (rcu)
		rctx_rcu_read_unlock();
}

void
rctx_timer_shutdown(void)
{
	rctx_owner_shutdown();
	rctx_owner_lock();
	/* Orphaned loops' live timers are parked too, dead ones killed. */
	rctx_loop_adopt_orphans_locked(rctx_park_home());
	rctx_park_sweep();
	rctx_owner_unlock();
	/* Reset the statistics too, so that runs start from zero. */
	rctx_tw_stats_reset();
}
