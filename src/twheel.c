/* SPDX-License-Identifier: MIT */
/* An owned wheel: a timing wheel, its hand-off queue and its owner's cycle. */

/*
 * Owner rule
 * ----------
 * A twheel is a pure timing wheel (wheel.c) plus a hand-off queue. It has
 * exactly one owner thread, which alone calls the rctx_wheel_* functions
 * on it and alone touches t->wt of the timers filed in it: a library
 * owner thread (owner.c) or the thread that created a loop (loop.c). Any
 * other thread hands a timer to the owner by pushing it on the twheel's
 * queue (an intrusive Treiber stack through t->qnext; the owner takes the
 * whole stack with one exchange, so there is no ABA). A library wheel's
 * owner also steals the arming threads' stages (stage.c) through the
 * steal/busy hooks owner.c installs. Beside the wheel the owner keeps the
 * near run (near.c): the timers of the wheel's next slot, sorted by exact
 * deadline, taken out about a tick before the slot comes due
 * (rctx_tw_pull), so that it sleeps until the exact earliest deadline.
 * WHEEL covers both: a timer in the run is still held by the owner.
 *
 * Flag protocol (t->flags, RCTX_TIMER_F_*)
 * ----------------------------------------
 *   ARMED     set once by arm.
 *   QUEUED    t is in (or being pushed to) a hand-off queue or a stage;
 *             that holds a pointer to t. Set by arm, by release
 *             (re-queue), by migration; cleared only by the thread that
 *             pops t.
 *   STAGED    (with QUEUED) t is in its arming thread's stage (stage.c).
 *   WHEEL     the owner holds t: filed in its wheel or on the list of due
 *             timers it is about to fire. Set and cleared by the owner.
 *   FIRING    the owner is running fire(t). Set and cleared by the owner.
 *   CANCELLED set by cancel (lazy: the owner skips t when due).
 *   DEAD      set by release (or by shutdown): dead(t) must follow.
 *
 * Wake-up rule
 * ------------
 * Each twheel publishes `planned`: the time by which its owner will next
 * look at its queue (RCTX_PLANNED_WOKEN once a producer has woken it; the
 * low bit RCTX_PLANNED_POLL when that time is at most a tick away).
 *   - arm wakes the owner only if expires < planned;
 *   - release of a timer the owner holds wakes it only if now + tick <
 *     planned (no clock read at all while the POLL bit is set);
 *   - cancel never wakes anybody (lazy).
 * The owner sleeps until its next look (rctx_tw_next: the run's head to
 * the nanosecond, or a tick before the wheel's next slot), or only until
 * the next tick when its queue is non-empty or its last cycle took
 * something (then it "polls", and a stream of hand-offs costs producers
 * no system call at all). In loop mode the owner's sleep is the caller's
 * epoll wait (rctx_loop_epoll_wait), and a wake-up is an eventfd write.
 *
 * Invariants
 * ----------
 * I1. dead(t) is called exactly once, by the thread that makes
 *     (flags & (QUEUED|WHEEL|FIRING)) == 0 while DEAD is set, or that sets
 *     DEAD while those bits are clear. After that no service structure
 *     holds t.
 * I2. FIRING is only set by a CAS that sees neither CANCELLED nor DEAD,
 *     and only for a timer with expires <= the `now` passed to
 *     rctx_tw_collect (library mode: a clock read; the wheel itself may
 *     have been advanced up to two ticks further, never firing on that).
 * I5. A timer the owner holds (WHEEL) is in the wheel, in the near run,
 *     or on the due list being fired; rctx_tw_unfile takes it out of
 *     whichever structure holds it.
 * I3. WHEEL and FIRING are never set together; QUEUED and FIRING are
 *     never set together (release re-queues only a WHEEL timer).
 * I4. No thread reads or writes t after the RMW by which it gives up its
 *     last holder bit, unless that RMW makes it the caller of dead (I1):
 *     another thread may kill t at once.
 * (Where a timer lives and when a twheel may be freed: loop.I1, loop.I2,
 * owner.I2.)
 *
 * Ordering guarantees
 * -------------------
 * twheel.A Everything a producer wrote to t before pushing it (expires,
 *    home, flags) is visible to the owner that pops it: seq_cst CAS in
 *    rctx_tw_push (and rctx_stage_push), seq_cst exchange in rctx_tw_drain
 *    (and rctx_stage_steal).
 * twheel.B Wake-up (Dekker): a producer pushes (seq_cst), then loads
 *    tw->planned (seq_cst, rctx_tw_wake_if). The owner stores tw->planned
 *    (seq_cst), then loads tw->queue and the stages (seq_cst, rctx_tw_plan)
 *    before sleeping. In the single total order of seq_cst operations
 *    either the producer's load sees the new planned (and wakes the owner
 *    if its need-by is earlier) or the owner's load sees the pushed timer
 *    (and sleeps at most one tick). So a hand-off is never left unseen
 *    past its need-by, give or take one tick.
 * twheel.C A producer that decides to wake first CASes planned to
 *    RCTX_PLANNED_WOKEN; only the CAS winner makes the system call, and
 *    others see WOKEN and stay quiet. The owner reads its futex word
 *    (acquire, rctx_owner_thread) before publishing planned, so a futex
 *    wake that follows the CAS makes FUTEX_WAIT return at once.
 * twheel.D rctx_timer_cancel's RMW on flags and the owner's FIRING CAS
 *    (rctx_tw_fire) are ordered in flags' modification order: if cancel
 *    came first the owner sees CANCELLED and does not fire; so no fire
 *    starts after cancel returns.
 * twheel.E fire(t) happens before dead(t): the owner clears FIRING with an
 *    acq_rel RMW after fire returns; whichever side then sees DEAD with
 *    the other bits clear calls dead (I1).
 *
 * Progress guarantees
 * -------------------
 * Pushes and wake-ups are lock-free and make a system call only to wake
 * an owner (twheel.B/C). The owner takes the whole queue with one
 * exchange; its flag CASes retry only when a producer's RMW on the same
 * timer intervened (at most a few per timer), so it is lock-free and in
 * practice wait-free.
 */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "fault.h"
#include "twheel.h"

static _Atomic unsigned rctx_tw_tick_shift = RCTX_WHEEL_TICK_SHIFT_DEFAULT;
static _Atomic(rctx_timer_fn) rctx_tw_fire_fn;
static _Atomic(rctx_timer_fn) rctx_tw_dead_fn;

/* Statistics for tests and benchmarks (relaxed counters). */
static _Atomic uint64_t rctx_tw_stat_wakes;	 /* producer wake calls */
static _Atomic uint64_t rctx_tw_stat_owner_runs; /* owner cycles */

uint64_t
rctx_tw_wakeups(void)
{
	/* Relaxed: a statistic, read after the measured work joined. */
	return atomic_load_explicit(&rctx_tw_stat_wakes, memory_order_relaxed);
}

uint64_t
rctx_tw_owner_runs(void)
{
	/* Relaxed: a statistic. */
	return atomic_load_explicit(&rctx_tw_stat_owner_runs,
				    memory_order_relaxed);
}

void
rctx_tw_count_run(void)
{
	/* Relaxed: a statistic. */
	atomic_fetch_add_explicit(&rctx_tw_stat_owner_runs, 1,
				  memory_order_relaxed);
}

void
rctx_tw_stats_reset(void)
{
	/* Relaxed: statistics. */
	atomic_store_explicit(&rctx_tw_stat_wakes, 0, memory_order_relaxed);
	atomic_store_explicit(&rctx_tw_stat_owner_runs, 0,
			      memory_order_relaxed);
}

void
rctx_tw_call_dead(struct rctx_timer *t)
{
	/* Acquire: pairs with the release store in rctx_tw_setup. */
	rctx_timer_fn fn =
	    atomic_load_explicit(&rctx_tw_dead_fn, memory_order_acquire);

	if (fn)
		fn(t);
}

static void
rctx_tw_call_fire(struct rctx_timer *t)
{
	/* Acquire: pairs with the release store in rctx_tw_setup. */
	rctx_timer_fn fn =
	    atomic_load_explicit(&rctx_tw_fire_fn, memory_order_acquire);

	if (fn)
		fn(t);
}

void
rctx_tw_setup(rctx_timer_fn fire, rctx_timer_fn dead)
{
	/* Release: publishes the callbacks' code/data; pairs with the
	 * acquire loads in rctx_tw_call_fire and rctx_tw_call_dead. */
	atomic_store_explicit(&rctx_tw_fire_fn, fire, memory_order_release);
	atomic_store_explicit(&rctx_tw_dead_fn, dead, memory_order_release);
}

void
rctx_tw_set_tick_shift(unsigned shift)
{
	if (shift > 30)
		shift = 30; /* the wheel's limit */
	/* Relaxed: read when a wheel is created, under the service lock. */
	atomic_store_explicit(&rctx_tw_tick_shift, shift, memory_order_relaxed);
}

struct rctx_twheel *
rctx_tw_new(bool is_loop, size_t size)
{
	struct rctx_twheel *tw = rctx_calloc(1, size);

	if (!tw)
		return NULL;
	rctx_near_init(&tw->near);
	rctx_wheel_init(
	    &tw->w, rctx_clock_now(),
	    /* Relaxed: a configuration knob set before use. */
	    atomic_load_explicit(&rctx_tw_tick_shift, memory_order_relaxed),
	    true);
	atomic_init(&tw->queue, NULL);
	/* Nothing planned: the first arm wakes the owner. */
	atomic_init(&tw->planned, RCTX_NEVER & ~RCTX_PLANNED_POLL);
	atomic_init(&tw->futex, 0);
	atomic_init(&tw->running, false);
	atomic_init(&tw->stop, false);
	tw->efd = -1;
	tw->is_loop = is_loop;
	if (!is_loop)
		pthread_mutex_init(&tw->lock, NULL);
	return tw;
}

/* ---- wake-ups ---------------------------------------------------------- */

void
rctx_tw_kick(struct rctx_twheel *tw)
{
	/* Relaxed: a statistic. */
	atomic_fetch_add_explicit(&rctx_tw_stat_wakes, 1, memory_order_relaxed);
	if (tw->is_loop) {
		uint64_t one = 1;
		ssize_t r;

		do {
			r = write(tw->efd, &one, sizeof(one));
		} while (r < 0 && errno == EINTR);
		return;
	}
	/* Release: pairs with the acquire load of futex in
	 * rctx_owner_thread (twheel.C). */
	atomic_fetch_add_explicit(&tw->futex, 1, memory_order_release);
	rctx_futex(&tw->futex, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
}

void
rctx_tw_wake_if(struct rctx_twheel *tw, rctx_time_t needby)
{
	/* seq_cst: the producer's load half of twheel.B; pairs with the
	 * planned store in rctx_tw_plan. */
	rctx_time_t p =
	    atomic_load_explicit(&tw->planned, memory_order_seq_cst);

	while (needby < p) {
		/*
		 * Relaxed CAS: only elects one waker (twheel.C); the futex or
		 * eventfd system call orders the wake-up itself.
		 */
		if (atomic_compare_exchange_weak_explicit(
			&tw->planned, &p, RCTX_PLANNED_WOKEN,
			memory_order_relaxed, memory_order_relaxed)) {
			rctx_tw_kick(tw);
			return;
		}
	}
}

/*
 * The low bit of planned says "polling: I look again within a tick", which
 * spares the clock read in the steady state.
 */
void
rctx_tw_wake_soon(struct rctx_twheel *tw)
{
	/* seq_cst: the producer's load half of twheel.B; pairs with the
	 * planned store in rctx_tw_plan. */
	rctx_time_t p =
	    atomic_load_explicit(&tw->planned, memory_order_seq_cst);

	if (p == RCTX_PLANNED_WOKEN || (p & RCTX_PLANNED_POLL))
		return;
	rctx_tw_wake_if(tw, rctx_clock_now() + rctx_tw_tick(tw));
}

void
rctx_tw_push(struct rctx_twheel *tw, struct rctx_timer *t)
{
	/* Relaxed: the CAS below validates the value. */
	struct rctx_timer *head =
	    atomic_load_explicit(&tw->queue, memory_order_relaxed);

	do {
		t->qnext = head;
		/*
		 * seq_cst: publishes t to the exchange in rctx_tw_drain
		 * (twheel.A) and is the store half of the producer's side of
		 * twheel.B (its load is in rctx_tw_wake_if).
		 */
	} while (!atomic_compare_exchange_weak_explicit(
	    &tw->queue, &head, t, memory_order_seq_cst, memory_order_relaxed));
}

/* ---- owner side -------------------------------------------------------- */

void
rctx_tw_take(struct rctx_twheel *tw, struct rctx_timer *t)
{
	/* Relaxed: the CAS below validates; twheel.A ordered the fields. */
	uint32_t f = atomic_load_explicit(&t->flags, memory_order_relaxed);
	uint32_t nf;
	enum { NONE, ADD, DEL, KILL } act;

	for (;;) {
		nf = f & ~(RCTX_TIMER_F_QUEUED | RCTX_TIMER_F_STAGED);
		if (f & RCTX_TIMER_F_DEAD) {
			nf &= ~RCTX_TIMER_F_WHEEL;
			act = KILL;
		} else if (f & RCTX_TIMER_F_CANCELLED) {
			nf &= ~RCTX_TIMER_F_WHEEL;
			act = (f & RCTX_TIMER_F_WHEEL) ? DEL : NONE;
		} else if (f & RCTX_TIMER_F_WHEEL) {
			act = NONE;
		} else {
			nf |= RCTX_TIMER_F_WHEEL;
			act = ADD;
		}
		/*
		 * Unlink before the CAS gives up WHEEL: once it is clear a
		 * release may kill t at once (idempotent on a retry).
		 */
		if (act == DEL || act == KILL)
			rctx_tw_unfile(tw, t);
		/*
		 * acq_rel: acquire pairs with the flag RMWs in
		 * rctx_timer_release and rctx_timer_cancel (we act on what
		 * they set); release pairs with the acquire of
		 * rctx_timer_release's CAS, so it sees our wheel work done.
		 */
		if (atomic_compare_exchange_weak_explicit(&t->flags, &f, nf,
							  memory_order_acq_rel,
							  memory_order_relaxed))
			break;
	}
	switch (act) {
	case ADD:
		rctx_wheel_add(&tw->w, &t->wt, t->expires);
		break;
	case KILL:
		rctx_tw_call_dead(t); /* I1: we cleared the last holder bit */
		break;
	case DEL: /* unlinked above; t is not ours any more */
	case NONE:
		break;
	}
}

size_t
rctx_tw_drain(struct rctx_twheel *tw)
{
	/*
	 * seq_cst: acquires the pushes of rctx_tw_push (twheel.A) and comes
	 * after the owner's planned store in the total order (twheel.B).
	 */
	struct rctx_timer *t =
	    atomic_exchange_explicit(&tw->queue, NULL, memory_order_seq_cst);
	struct rctx_timer *next;
	size_t n = 0;

	for (; t; t = next) {
		next = t->qnext;
		rctx_tw_take(tw, t);
		n++;
	}
	if (tw->steal)
		n += tw->steal(tw);
	return n;
}

void
rctx_tw_unfile(struct rctx_twheel *tw, struct rctx_timer *t)
{
	if (rctx_near_has(&t->wt))
		rctx_near_del(&tw->near, &t->wt);
	else
		rctx_wheel_del(&tw->w, &t->wt);
}

struct rctx_wheel_timer *
rctx_tw_unfile_all(struct rctx_twheel *tw)
{
	size_t n;
	struct rctx_wheel_timer *l = rctx_wheel_drain(&tw->w, &n);
	struct rctx_wheel_timer *r = rctx_near_drain(&tw->near), **tail = &l;

	while (*tail)
		tail = &(*tail)->next;
	*tail = r;
	return l;
}

/*
 * Precision. The wheel files by tick; the owner takes the wheel's next
 * slot into the near run (near.c) about a tick before the slot comes
 * due, by advancing the wheel to now + tick: the wheel's clock runs up to
 * two ticks ahead of real time, and every timer still in the wheel has
 * expires > rctx_wheel_next - tick (precise mode: a slot starting at tick
 * S holds timers of ticks >= S; the due slot is reported as w->now and
 * taken at the next pull). While the run's head is later than that bound
 * the next slot is taken too, so the head is then the exact earliest
 * deadline. The wheel never reads a clock: `now` is the owner's.
 */
static void
rctx_tw_pull(struct rctx_twheel *tw, rctx_time_t now)
{
	rctx_time_t tick = rctx_tw_tick(tw), h = rctx_clock_add(now, tick);
	rctx_time_t wn;
	struct rctx_wheel_timer *l;
	unsigned i;
	size_t n;

	/* Bounded: each round moves the wheel's clock to its next slot. */
	for (i = 0; i <= RCTX_WHEEL_LEVELS; i++) {
		l = rctx_wheel_advance(&tw->w, h, &n);
		rctx_near_merge(&tw->near, l, n, now);
		wn = rctx_wheel_next(&tw->w);
		if (wn == INT64_MAX)
			break;
		if (wn > tw->w.now && rctx_near_first(&tw->near) <= wn - tick)
			break; /* the head is the earliest */
		if (wn > tw->w.now && tw->near.head == NULL)
			break; /* nothing near: look at wn - tick */
		h = wn > tw->w.now ? wn : tw->w.now;
	}
}

struct rctx_wheel_timer *
rctx_tw_collect(struct rctx_twheel *tw, rctx_time_t now)
{
	rctx_tw_pull(tw, now);
	return rctx_near_pop(&tw->near, now);
}

rctx_time_t
rctx_tw_next(struct rctx_twheel *tw, rctx_time_t now)
{
	rctx_time_t wn, first;

	rctx_tw_pull(tw, now);
	first = rctx_near_first(&tw->near);
	wn = rctx_wheel_next(&tw->w);
	if (wn == INT64_MAX)
		return first;
	wn -= rctx_tw_tick(tw);
	return wn < first ? wn : first;
}

int
rctx_tw_fire(struct rctx_wheel_timer *due)
{
	struct rctx_wheel_timer *wt, *next;
	int fired = 0;

	for (wt = due; wt; wt = next) {
		struct rctx_timer *t =
		    rctx_container_of(wt, struct rctx_timer, wt);
		uint32_t f, nf;
		bool fire;

		next = wt->next;
		/* Relaxed: the CAS below validates. */
		f = atomic_load_explicit(&t->flags, memory_order_relaxed);
		do {
			nf = f & ~RCTX_TIMER_F_WHEEL;
			fire =
			    !(f & (RCTX_TIMER_F_CANCELLED | RCTX_TIMER_F_DEAD));
			if (fire)
				nf |= RCTX_TIMER_F_FIRING;
			/*
			 * acq_rel: acquire pairs with the RMWs of
			 * rctx_timer_cancel and rctx_timer_release
			 * (twheel.D); release pairs with the acquire of
			 * rctx_timer_release's CAS, so it sees FIRING and
			 * leaves dead to us (twheel.E).
			 */
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->flags, &f, nf, memory_order_acq_rel,
		    memory_order_relaxed));
		if (!fire) {
			if ((f & RCTX_TIMER_F_DEAD) &&
			    !(f & RCTX_TIMER_F_QUEUED))
				rctx_tw_call_dead(t);
			continue;
		}
		rctx_tw_call_fire(t);
		fired++;
		/*
		 * acq_rel: release orders fire's effects before dead
		 * (twheel.E); acquire pairs with the CAS of a
		 * rctx_timer_release that set DEAD meanwhile.
		 */
		f = atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_F_FIRING,
					      memory_order_acq_rel);
		if (f & RCTX_TIMER_F_DEAD)
			rctx_tw_call_dead(t);
	}
	return fired;
}

/*
 * The owner sleeps until `next`, or only until `soon` (a tick away) when
 * the queue or a stage is not empty or `active` (this cycle took
 * something: more is likely to come, and polling each tick saves the
 * producers their wake-up calls). twheel.B.
 */
rctx_time_t
rctx_tw_plan(struct rctx_twheel *tw, rctx_time_t next, rctx_time_t soon,
	     bool active)
{
	/* seq_cst: the owner's load half of twheel.B; pairs with the push
	 * CAS in rctx_tw_push (and rctx_stage_push, via tw->busy). */
	bool busy = active ||
		    atomic_load_explicit(&tw->queue, memory_order_seq_cst) ||
		    (tw->busy && tw->busy(tw));
	rctx_time_t until = (busy && soon < next) ? soon : next;

	/* seq_cst: the owner's store half of twheel.B; pairs with the
	 * planned load in rctx_tw_wake_if. */
	atomic_store_explicit(&tw->planned,
			      busy ? until | RCTX_PLANNED_POLL
				   : until & ~RCTX_PLANNED_POLL,
			      memory_order_seq_cst);
	/* seq_cst: the owner's load half of twheel.B, after the store. */
	if (!busy &&
	    (atomic_load_explicit(&tw->queue, memory_order_seq_cst) ||
	     (tw->busy && tw->busy(tw))) &&
	    soon < until)
		until = soon;
	return until;
}

void
rctx_tw_kill_all(struct rctx_twheel *tw)
{
	struct rctx_wheel_timer *wt, *wnext;
	struct rctx_timer *t, *next;

	/* seq_cst: as in rctx_tw_drain (twheel.A). */
	t = atomic_exchange_explicit(&tw->queue, NULL, memory_order_seq_cst);
	for (; t; t = next) {
		uint32_t f;

		next = t->qnext;
		/* acq_rel: as in rctx_tw_take; the owner is gone. */
		f = atomic_fetch_or_explicit(
		    &t->flags, RCTX_TIMER_F_CANCELLED | RCTX_TIMER_F_DEAD,
		    memory_order_acq_rel);
		/* Relaxed: no other holder remains. */
		atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_HELD,
					  memory_order_relaxed);
		if (f & RCTX_TIMER_F_WHEEL)
			rctx_tw_unfile(tw, t);
		rctx_tw_call_dead(t);
	}
	wt = rctx_tw_unfile_all(tw);
	for (; wt; wt = wnext) {
		wnext = wt->next;
		t = rctx_container_of(wt, struct rctx_timer, wt);
		/* acq_rel: as above. */
		atomic_fetch_or_explicit(
		    &t->flags, RCTX_TIMER_F_CANCELLED | RCTX_TIMER_F_DEAD,
		    memory_order_acq_rel);
		/* Relaxed: no other holder remains. */
		atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_HELD,
					  memory_order_relaxed);
		rctx_tw_call_dead(t);
	}
}
