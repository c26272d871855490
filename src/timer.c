/* SPDX-License-Identifier: MIT */
/* Timer service: per-CPU wheels, their owner threads, event-loop mode. */

/*
 * Who owns what
 * -------------
 * A "twheel" is a pure timing wheel (wheel.c) plus a hand-off queue. Each
 * twheel has exactly one owner thread that alone calls the rctx_wheel_*
 * functions on it and alone touches t->wt of the timers filed in it:
 *   - library mode: one twheel per CPU, served by a thread the service
 *     starts lazily on the first arm routed to that CPU;
 *   - loop mode: one twheel per rctx_loop, owned by the thread that
 *     created the loop (it drives it through rctx_loop_next/run).
 * Any other thread hands a timer to the owner by pushing it on the
 * twheel's queue (an intrusive Treiber stack through t->qnext; the owner
 * takes the whole stack with one exchange, so there is no ABA).
 *
 * Flag protocol (t->flags, RCTX_TIMER_F_*)
 * ----------------------------------------
 *   ARMED     set once by arm.
 *   QUEUED    t is in (or being pushed to) a hand-off queue; the queue
 *             holds a pointer to t. Set by arm, by release (re-queue), by
 *             migration; cleared only by the thread that pops t.
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
 * The owner sleeps until the wheel's next expiry, or only until the next
 * tick when its queue is non-empty or its last cycle took something
 * (then it "polls", and a stream of hand-offs costs producers no system
 * call at all). In loop mode the owner's sleep is the caller's
 * epoll_wait with rctx_loop_timeout_ms, and a wake-up is an eventfd write.
 *
 * Invariants
 * ----------
 * I1. dead(t) is called exactly once, by the thread that makes
 *     (flags & (QUEUED|WHEEL|FIRING)) == 0 while DEAD is set, or that sets
 *     DEAD while those bits are clear. After that no service structure
 *     holds t.
 * I2. FIRING is only set by a CAS that sees neither CANCELLED nor DEAD,
 *     and only for a timer with expires <= the `now` the wheel advanced
 *     to (library mode: a rctx_now() read before advancing).
 * I3. WHEEL and FIRING are never set together; QUEUED and FIRING are
 *     never set together (release re-queues only a WHEEL timer).
 * I4. A timer in the wheel of twheel X has t->home == X; t->home changes
 *     only while the mover holds QUEUED with t in no queue (migration).
 * I5. A twheel is freed only after no producer can hold a pointer to it:
 *     loop twheels after three RCU grace periods (loop_free: after
 *     unpublishing, after unhooking its timers, after re-homing them),
 *     library twheels at shutdown (callers are quiescent by contract).
 * I6. Only the owner touches tw->w; a library owner holds tw->lock while
 *     it does (never while calling fire), so fork sees a sound wheel.
 * I7. No thread reads or writes t after the RMW by which it gives up its
 *     last holder bit, unless that RMW makes it the caller of dead (I1):
 *     another thread may kill t at once.
 *
 * Ordering guarantees
 * -------------------
 * A. Everything a producer wrote to t before pushing it (expires, home,
 *    flags) is visible to the owner that pops it: seq_cst CAS in
 *    rctx_tw_push, seq_cst exchange in rctx_tw_drain.
 * B. Wake-up (Dekker): a producer pushes (seq_cst), then loads
 *    tw->planned (seq_cst). The owner stores tw->planned (seq_cst), then
 *    loads tw->queue (seq_cst) before sleeping. In the single total order
 *    of seq_cst operations either the producer's load sees the new planned
 *    (and wakes the owner if its need-by is earlier) or the owner's load
 *    sees the pushed timer (and sleeps at most one tick). So a hand-off is
 *    never left unseen past its need-by, give or take one tick.
 * C. A producer that decides to wake first CASes planned to
 *    RCTX_PLANNED_WOKEN; only the CAS winner makes the system call, and
 *    others see WOKEN and stay quiet. The owner reads its futex word
 *    (acquire) before publishing planned, so a futex wake that follows
 *    the CAS makes FUTEX_WAIT return at once (word changed).
 * D. rctx_timer_cancel's RMW on flags and the owner's FIRING CAS are
 *    ordered in flags' modification order: if cancel came first the owner
 *    sees CANCELLED and does not fire; so no fire starts after cancel
 *    returns.
 * E. fire(t) happens before dead(t): the owner clears FIRING with an
 *    acq_rel RMW after fire returns; whichever side then sees DEAD with the
 *    other bits clear calls dead (I1).
 * F. Arms to loops and re-queues by release run inside an RCU read-side
 *    section that begins before the route is chosen (release: before its
 *    CAS); rctx_loop_free unpublishes the loop and waits for grace periods
 *    before draining, so no push can land in a freed loop (I5).
 *
 * Progress guarantees
 * -------------------
 * - rctx_timer_arm (steady state), rctx_timer_cancel and
 *   rctx_timer_release are lock-free and make no system call unless they
 *   must wake an owner (ordering B). First use of a CPU's wheel takes a
 *   mutex and starts a thread.
 * - Owners take the whole queue with one exchange; their flag CASes retry
 *   only when a producer's RMW on the same timer intervened (at most a
 *   few per timer), so they are lock-free and in practice wait-free.
 * - rctx_loop_new/free and rctx_timer_shutdown block (mutex, RCU grace
 *   periods, joins); they are not hot paths.
 */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include <urcu-bp.h>

#include "alloc.h"
#include "fault.h"
#include "fork.h"
#include "internal.h"
#include "loopafter.h"
#include "timer.h"
#include "wheel.h"

/*
 * Loop twheels are freed after synchronize_rcu; TSan learns what a grace
 * period orders through the token of internal.h (release at each unlock,
 * acquire after each grace period).
 */
#define rctx_tmr_read_unlock() rctx_rcu_read_unlock()
#define rctx_tmr_sync()                                                        \
	do {                                                                   \
		synchronize_rcu();                                             \
		rctx_tsan_acquire(&rctx_rcu_token);                            \
	} while (0)

#define RCTX_TIMER_F_ARMED     0x01u
#define RCTX_TIMER_F_QUEUED    0x02u
#define RCTX_TIMER_F_WHEEL     0x04u
#define RCTX_TIMER_F_FIRING    0x08u
#define RCTX_TIMER_F_CANCELLED 0x10u
#define RCTX_TIMER_F_DEAD      0x20u
#define RCTX_TIMER_F_STAGED    0x40u /* in its arming thread's stage */

#define RCTX_TIMER_HELD                                                        \
	(RCTX_TIMER_F_QUEUED | RCTX_TIMER_F_WHEEL | RCTX_TIMER_F_FIRING)

#define RCTX_TIMER_MAX_WHEELS 256
#define RCTX_PLANNED_WOKEN    INT64_MIN
#define RCTX_PLANNED_POLL     ((rctx_time_t)1) /* low bit: looks in a tick */
#define RCTX_NEVER	      INT64_MAX

#define rctx_tcontainer(p, type, member)                                       \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

struct rctx_twheel {
	struct rctx_wheel w;		    /* owner only */
	_Atomic(struct rctx_timer *) queue; /* hand-off stack head */
	_Atomic rctx_time_t planned;	    /* owner's next look at queue */
	_Atomic uint32_t futex;		    /* library mode wake word */
	int efd;			    /* loop mode eventfd, else -1 */
	bool is_loop;
	/* library mode only */
	pthread_mutex_t lock; /* owner holds it while touching w (fork) */
	pthread_t thread;
	_Atomic bool running;
	_Atomic bool stop;
	bool had_thread; /* ran before fork: restart in the child */
	/* The owner may hold locks not ours (allocator, callbacks' own):
	 * from thread creation to its first statement, and while firing.
	 * Set under lock (or rctx_tmr_lock at creation); see fork below. */
	_Atomic bool unparked;
};

struct rctx_loop {
	struct rctx_twheel tw; /* first: a loop is a twheel */
};

/* Loops that non-owner arms are spread over; RCU-protected. */
struct rctx_loopset {
	_Atomic unsigned n;
	unsigned cap;
	struct rctx_loop *_Atomic loop[];
};

static pthread_mutex_t rctx_tmr_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t rctx_tmr_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned rctx_tmr_nwheels_a; /* set once (pthread_once) */
#define rctx_tmr_nwheels                                                       \
	atomic_load_explicit(&rctx_tmr_nwheels_a, memory_order_relaxed)
static struct rctx_twheel *_Atomic rctx_tmr_lib[RCTX_TIMER_MAX_WHEELS];
static unsigned rctx_tmr_nrunning; /* library threads; under the lock */
static bool rctx_tmr_restart_all;  /* child after fork; under the lock */
/* A fork child has wheels to restart (lazily: see rctx_timer_poke). */
static _Atomic bool rctx_tmr_fork_pending;
static struct rctx_loopset *rctx_tmr_loops; /* RCU pointer */
static _Atomic unsigned rctx_tmr_nloops;
static struct rctx_loop *rctx_tmr_orphans[RCTX_TIMER_MAX_WHEELS];
static _Atomic unsigned rctx_tmr_tick_shift = RCTX_WHEEL_TICK_SHIFT_DEFAULT;
static _Atomic(rctx_timer_fn) rctx_tmr_fire_fn;
static _Atomic(rctx_timer_fn) rctx_tmr_dead_fn;
static RCTX_TLS struct rctx_loop *rctx_tmr_own_loop;
static _Atomic bool rctx_tmr_loops_used; /* a loop was ever created */

/*
 * Stages (library mode). A timer due at least RCTX_STAGE_MIN_TICKS ticks
 * from now is not pushed on its wheel's shared queue: it goes on a list
 * of its arming thread's own (the stage), which the wheel's owner steals
 * whole at every cycle while any stage is non-empty, and which the
 * arming thread flushes itself every RCTX_STAGE_FLUSH arms. A timer
 * released before either happens (a request that finished quickly) is
 * freed by the thread that flushes it, without the owner ever seeing it:
 * no shared cache line is written on arm or release. The STAGED flag
 * (with QUEUED) marks such a timer; whoever pops it clears both.
 * Records are never freed before shutdown (a stealer may read them).
 */
#define RCTX_STAGE_MIN_TICKS 4
#define RCTX_STAGE_FLUSH     64

struct rctx_stage {
	_Atomic(struct rctx_timer *) head; /* staged timers, through qnext */
	struct rctx_twheel *tw;		   /* the wheel that steals it */
	unsigned n;			   /* arms since the last flush */
	_Atomic uint32_t owned;		   /* a live thread uses it */
	struct rctx_stage *next;	   /* registry, immutable once pushed */
};

static _Atomic(struct rctx_stage *) rctx_tmr_stages;
static _Atomic unsigned rctx_tmr_stage_gen = 1; /* bumped by shutdown */
static RCTX_TLS struct rctx_stage *rctx_tmr_my_stage;
static RCTX_TLS unsigned rctx_tmr_my_stage_gen;
static pthread_key_t rctx_tmr_stage_key;
static pthread_once_t rctx_tmr_stage_once = PTHREAD_ONCE_INIT;

/* Statistics for tests and benchmarks (relaxed counters). */
static _Atomic uint64_t rctx_timer_stat_wakes;	    /* producer wake calls */
static _Atomic uint64_t rctx_timer_stat_owner_runs; /* owner cycles */

uint64_t rctx_timer_wakeups(void);
uint64_t rctx_timer_owner_runs(void);

uint64_t
rctx_timer_wakeups(void)
{
	/* Relaxed: a statistic, read after the measured work joined. */
	return atomic_load_explicit(&rctx_timer_stat_wakes,
				    memory_order_relaxed);
}

uint64_t
rctx_timer_owner_runs(void)
{
	/* Relaxed: a statistic. */
	return atomic_load_explicit(&rctx_timer_stat_owner_runs,
				    memory_order_relaxed);
}

/* The wheel whose owner this thread is (fork from a fire callback). */
static RCTX_TLS struct rctx_twheel *rctx_tmr_self;

static void
rctx_tmr_once_init(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);

	if (n < 1)
		n = 1;
	if (n > RCTX_TIMER_MAX_WHEELS)
		n = RCTX_TIMER_MAX_WHEELS;
	/* Release: pairs with the acquire in rctx_timer_arm. */
	atomic_store_explicit(&rctx_tmr_nwheels_a, (unsigned)n,
			      memory_order_release);
}

static unsigned
rctx_tmr_cpu(void)
{
	int c = sched_getcpu();

	return c < 0 ? 0u : (unsigned)c;
}

static rctx_time_t
rctx_tw_tick(const struct rctx_twheel *tw)
{
	return (rctx_time_t)1 << tw->w.tick_shift;
}

static void
rctx_tmr_call_dead(struct rctx_timer *t)
{
	/* Acquire: pairs with the release store in rctx_timer_setup. */
	rctx_timer_fn fn =
	    atomic_load_explicit(&rctx_tmr_dead_fn, memory_order_acquire);

	if (fn)
		fn(t);
}

static void
rctx_tmr_call_fire(struct rctx_timer *t)
{
	/* Acquire: pairs with the release store in rctx_timer_setup. */
	rctx_timer_fn fn =
	    atomic_load_explicit(&rctx_tmr_fire_fn, memory_order_acquire);

	if (fn)
		fn(t);
}

void
rctx_timer_setup(rctx_timer_fn fire, rctx_timer_fn dead)
{
	/* Release: publishes the callbacks' code/data to the owners. */
	atomic_store_explicit(&rctx_tmr_fire_fn, fire, memory_order_release);
	atomic_store_explicit(&rctx_tmr_dead_fn, dead, memory_order_release);
}

void
rctx_timer_init(struct rctx_timer *t)
{
	rctx_wheel_timer_init(&t->wt);
	t->qnext = NULL;
	t->expires = 0;
	t->home = NULL;
	/* Relaxed: t is not yet shared. */
	atomic_init(&t->flags, 0);
}

void
rctx_timer_set_tick_shift(unsigned shift)
{
	if (shift > 30)
		shift = 30; /* the wheel's limit */
	/* Relaxed: read when a wheel is created, under the service lock. */
	atomic_store_explicit(&rctx_tmr_tick_shift, shift,
			      memory_order_relaxed);
}

/* ---- wake-ups ---------------------------------------------------------- */

static void
rctx_tw_kick(struct rctx_twheel *tw)
{
	/* Relaxed: a statistic. */
	atomic_fetch_add_explicit(&rctx_timer_stat_wakes, 1,
				  memory_order_relaxed);
	if (tw->is_loop) {
		uint64_t one = 1;
		ssize_t r;

		do {
			r = write(tw->efd, &one, sizeof(one));
		} while (r < 0 && errno == EINTR);
		return;
	}
	/* Release: pairs with the acquire load of futex in the owner loop. */
	atomic_fetch_add_explicit(&tw->futex, 1, memory_order_release);
	rctx_futex(&tw->futex, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
}

/* Wake the owner if it plans to look at its queue later than needby. */
static void
rctx_tw_wake_if(struct rctx_twheel *tw, rctx_time_t needby)
{
	/* seq_cst: Dekker with the owner's planned store / queue load (B). */
	rctx_time_t p =
	    atomic_load_explicit(&tw->planned, memory_order_seq_cst);

	while (needby < p) {
		/*
		 * Relaxed CAS: only elects one waker (C); the futex/eventfd
		 * system call orders the wake-up itself.
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
 * Wake the owner unless it will look at its queue within about a tick
 * (used by release). The low bit of planned says "polling: I look again
 * within a tick", which spares the clock read in the steady state.
 */
static void
rctx_tw_wake_soon(struct rctx_twheel *tw)
{
	/* seq_cst: Dekker with the owner's planned store / queue load (B). */
	rctx_time_t p =
	    atomic_load_explicit(&tw->planned, memory_order_seq_cst);

	if (p == RCTX_PLANNED_WOKEN || (p & RCTX_PLANNED_POLL))
		return;
	rctx_tw_wake_if(tw, rctx_now() + rctx_tw_tick(tw));
}

/* Push t on tw's hand-off stack. */
static void
rctx_tw_push(struct rctx_twheel *tw, struct rctx_timer *t)
{
	/* Relaxed: the CAS below validates the value. */
	struct rctx_timer *head =
	    atomic_load_explicit(&tw->queue, memory_order_relaxed);

	do {
		t->qnext = head;
		/*
		 * seq_cst: publishes t to the owner's exchange (A) and is the
		 * store half of the Dekker pair with the owner (B).
		 */
	} while (!atomic_compare_exchange_weak_explicit(
	    &tw->queue, &head, t, memory_order_seq_cst, memory_order_relaxed));
}

/* ---- owner side -------------------------------------------------------- */

/* The owner takes t off its queue and files, drops or kills it. */
static void
rctx_tw_take(struct rctx_twheel *tw, struct rctx_timer *t)
{
	/* Relaxed: the CAS below validates; A ordered the fields. */
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
			rctx_wheel_del(&tw->w, &t->wt);
		/*
		 * acq_rel: acquire pairs with release/cancel's RMW (we act on
		 * what they set); release orders our wheel work before any
		 * later reader of the flags.
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
		rctx_tmr_call_dead(t); /* I1: we cleared the last holder bit */
		break;
	case DEL: /* unlinked above; t is not ours any more */
	case NONE:
		break;
	}
}

/* Take every stage that tw serves; returns how many timers it held. */
static size_t
rctx_tw_steal_stages(struct rctx_twheel *tw)
{
	size_t n = 0;

	/* acquire: pairs with the release CAS that pushed each record */
	for (struct rctx_stage *st =
		 atomic_load_explicit(&rctx_tmr_stages, memory_order_acquire);
	     st; st = st->next) {
		struct rctx_timer *t, *next;

		/* relaxed pre-check: an empty stage needs no exchange */
		if (st->tw != tw ||
		    !atomic_load_explicit(&st->head, memory_order_relaxed))
			continue;
		/* seq_cst: acquires the stager's pushes (A) and is ordered
		 * after our planned store (B, stages) */
		t = atomic_exchange_explicit(&st->head, NULL,
					     memory_order_seq_cst);
		for (; t; t = next) {
			next = t->qnext;
			rctx_tw_take(tw, t);
			n++;
		}
	}
	return n;
}

/* True if a stage that tw serves holds timers (Dekker half, B). */
static bool
rctx_tw_stages_busy(struct rctx_twheel *tw)
{
	/* acquire: pairs with the release CAS that pushed each record */
	for (struct rctx_stage *st =
		 atomic_load_explicit(&rctx_tmr_stages, memory_order_acquire);
	     st; st = st->next)
		/* seq_cst: load half of the Dekker pair with stage_push */
		if (st->tw == tw &&
		    atomic_load_explicit(&st->head, memory_order_seq_cst))
			return true;
	return false;
}

/* Take the whole queue. Returns how many timers were handed over. */
static size_t
rctx_tw_drain(struct rctx_twheel *tw)
{
	/*
	 * seq_cst: acquires the producers' pushes (A) and is ordered after
	 * the owner's planned store in the total order (B).
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
	if (!tw->is_loop)
		n += rctx_tw_steal_stages(tw);
	return n;
}

/*
 * Advance the wheel to now and return the due timers (linked through
 * wt.next), never one with expires > now.
 */
static struct rctx_wheel_timer *
rctx_tw_collect(struct rctx_twheel *tw, rctx_time_t now)
{
	size_t n;
	struct rctx_wheel_timer *l = rctx_wheel_advance(&tw->w, now, &n);
	struct rctx_wheel_timer *due = NULL, *next, *wt;

	for (wt = l; wt; wt = next) {
		struct rctx_timer *t =
		    rctx_tcontainer(wt, struct rctx_timer, wt);

		next = wt->next;
		if (t->expires > now) {
			/* Never early (the wheel promises it): re-file. */
			rctx_wheel_add(&tw->w, wt, t->expires);
			continue;
		}
		wt->next = due;
		due = wt;
	}
	return due;
}

/* Fire the collected timers. Returns how many fire(t) calls were made. */
static int
rctx_tw_fire(struct rctx_wheel_timer *due)
{
	struct rctx_wheel_timer *wt, *next;
	int fired = 0;

	for (wt = due; wt; wt = next) {
		struct rctx_timer *t =
		    rctx_tcontainer(wt, struct rctx_timer, wt);
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
			 * acq_rel: acquire pairs with cancel/release's RMW
			 * (D); release pairs with release's CAS so it sees
			 * FIRING and leaves dead to us (E).
			 */
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->flags, &f, nf, memory_order_acq_rel,
		    memory_order_relaxed));
		if (!fire) {
			if ((f & RCTX_TIMER_F_DEAD) &&
			    !(f & RCTX_TIMER_F_QUEUED))
				rctx_tmr_call_dead(t);
			continue;
		}
		rctx_tmr_call_fire(t);
		fired++;
		/*
		 * acq_rel: release orders fire's effects before dead (E);
		 * acquire pairs with a release that set DEAD meanwhile.
		 */
		f = atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_F_FIRING,
					      memory_order_acq_rel);
		if (f & RCTX_TIMER_F_DEAD)
			rctx_tmr_call_dead(t);
	}
	return fired;
}

/*
 * Publish the owner's planned wake-up before it sleeps; returns the time
 * it must actually wake up: `soon` (a tick away) when the queue is not
 * empty or `active` (this cycle took something: more is likely to come,
 * and polling each tick saves the producers their wake-up calls), else
 * next. Ordering B.
 */
static rctx_time_t
rctx_tw_plan(struct rctx_twheel *tw, rctx_time_t next, rctx_time_t soon,
	     bool active)
{
	/* seq_cst: load half of the Dekker pair (B). */
	bool busy = active ||
		    atomic_load_explicit(&tw->queue, memory_order_seq_cst) ||
		    (!tw->is_loop && rctx_tw_stages_busy(tw));
	rctx_time_t until = (busy && soon < next) ? soon : next;

	/* seq_cst: store half of the Dekker pair (B). */
	atomic_store_explicit(&tw->planned,
			      busy ? until | RCTX_PLANNED_POLL
				   : until & ~RCTX_PLANNED_POLL,
			      memory_order_seq_cst);
	/* seq_cst: load half of the Dekker pair (B). */
	if (!busy &&
	    (atomic_load_explicit(&tw->queue, memory_order_seq_cst) ||
	     (!tw->is_loop && rctx_tw_stages_busy(tw))) &&
	    soon < until)
		until = soon;
	return until;
}

static void *
rctx_tw_thread(void *arg)
{
	struct rctx_twheel *tw = arg;
	sigset_t all;

	rctx_tmr_self = tw;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* Release: pairs with the acquire in rctx_tmr_park; past the
	 * thread library's (and a sanitizer's) start-up allocations. */
	atomic_store_explicit(&tw->unparked, false, memory_order_release);
	for (;;) {
		struct rctx_wheel_timer *due;
		rctx_time_t now, next, until, tick;
		struct timespec ts;
		uint32_t seq;
		size_t took;

		/* Acquire: pairs with the release increment in rctx_tw_kick. */
		seq = atomic_load_explicit(&tw->futex, memory_order_acquire);
		/* Acquire: pairs with the release store in shutdown. */
		if (atomic_load_explicit(&tw->stop, memory_order_acquire))
			break;
		/* Relaxed: a statistic. */
		atomic_fetch_add_explicit(&rctx_timer_stat_owner_runs, 1,
					  memory_order_relaxed);
		pthread_mutex_lock(&tw->lock);
		tick = rctx_tw_tick(tw);
		now = rctx_now();
		/*
		 * seq_cst: while awake the owner promises to look at the queue
		 * within a tick; producers with an earlier need wake it (B).
		 */
		atomic_store_explicit(&tw->planned,
				      (now + tick) | RCTX_PLANNED_POLL,
				      memory_order_seq_cst);
		took = rctx_tw_drain(tw);
		due = rctx_tw_collect(tw, now);
		if (due || took)
			/* Relaxed: under tw->lock, which fork's prepare takes
			 * before it reads this (rctx_tmr_park). */
			atomic_store_explicit(&tw->unparked, true,
					      memory_order_relaxed);
		pthread_mutex_unlock(&tw->lock);

		if (due || took) {
			rctx_tw_fire(due);
			/* What fire and the drain's dead calls freed goes to
			 * the shared pool: a parked owner holds no cache. */
			rctx_alloc_thread_flush();
			/* Release: pairs with the acquire in rctx_tmr_park;
			 * fire's callbacks and the flush have returned. */
			atomic_store_explicit(&tw->unparked, false,
					      memory_order_release);
		}

		pthread_mutex_lock(&tw->lock);
		next = rctx_wheel_next(&tw->w);
		pthread_mutex_unlock(&tw->lock);
		until = rctx_tw_plan(tw, next, now + tick, took != 0);
		if (until <= rctx_now())
			continue;
		if (until == RCTX_NEVER) {
			rctx_futex(&tw->futex,
				   FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, seq,
				   NULL, FUTEX_BITSET_MATCH_ANY);
			continue;
		}
		ts.tv_sec = until / RCTX_SEC;
		ts.tv_nsec = until % RCTX_SEC;
		rctx_futex(&tw->futex, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
			   seq, &ts, FUTEX_BITSET_MATCH_ANY);
	}
	return NULL;
}

/* ---- library wheels ---------------------------------------------------- */

static struct rctx_twheel *
rctx_tw_new(bool is_loop, size_t size)
{
	struct rctx_twheel *tw = rctx_calloc(1, size);

	if (!tw)
		return NULL;
	rctx_wheel_init(
	    &tw->w, rctx_now(),
	    /* Relaxed: a configuration knob set before use. */
	    atomic_load_explicit(&rctx_tmr_tick_shift, memory_order_relaxed),
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

/* Start tw's owner thread. Caller holds rctx_tmr_lock. */
static int
rctx_tw_start(struct rctx_twheel *tw)
{
	int err;

	/* Relaxed: written under rctx_tmr_lock, which we hold. */
	if (atomic_load_explicit(&tw->running, memory_order_relaxed))
		return 0;
	if (rctx_fault_hit(RCTX_FAULT_THREAD))
		return -EAGAIN;
	err = rctx_fork_register();
	if (err)
		return err;
	/* Relaxed: the thread is not running; pthread_create orders it. */
	atomic_store_explicit(&tw->stop, false, memory_order_relaxed);
	/* Relaxed: under rctx_tmr_lock, which fork's prepare takes first. */
	atomic_store_explicit(&tw->unparked, true, memory_order_relaxed);
	/* Default stack: fire runs the core's cancellation, maybe deep. */
	err = pthread_create(&tw->thread, NULL, rctx_tw_thread, tw);
	if (err) {
		/* Relaxed: no thread; under rctx_tmr_lock. */
		atomic_store_explicit(&tw->unparked, false,
				      memory_order_relaxed);
		return -EAGAIN;
	}
	tw->had_thread = true;
	rctx_tmr_nrunning++;
	/* Release: pairs with the acquire in rctx_timer_arm's fast path. */
	atomic_store_explicit(&tw->running, true, memory_order_release);
	return 0;
}

static void rctx_tmr_adopt_orphans(struct rctx_twheel *to);

/*
 * Slow path of arm: create and start the wheel of `cpu` (and after fork,
 * restart every wheel of the parent). Returns 0 (also when loops appeared
 * meanwhile: the caller retries its routing) or a negative errno.
 */
static int
rctx_tmr_lib_start(unsigned cpu)
{
	struct rctx_twheel *tw;
	int err = 0;
	unsigned i;

	pthread_once(&rctx_tmr_once, rctx_tmr_once_init);
	pthread_mutex_lock(&rctx_tmr_lock);
	/* Relaxed: written under rctx_tmr_lock, which we hold. */
	if (atomic_load_explicit(&rctx_tmr_nloops, memory_order_relaxed))
		goto out;
	if (rctx_tmr_restart_all) {
		for (i = 0; i < rctx_tmr_nwheels; i++) {
			/* Relaxed: under the lock that writes it. */
			tw = atomic_load_explicit(&rctx_tmr_lib[i],
						  memory_order_relaxed);
			if (tw && tw->had_thread && (err = rctx_tw_start(tw)))
				goto out;
		}
		rctx_tmr_restart_all = false;
		/* relaxed: under the lock; rctx_timer_poke re-checks under it */
		atomic_store_explicit(&rctx_tmr_fork_pending, false,
				      memory_order_relaxed);
	}
	cpu %= rctx_tmr_nwheels;
	/* Relaxed: under the lock that writes it. */
	tw = atomic_load_explicit(&rctx_tmr_lib[cpu], memory_order_relaxed);
	if (!tw) {
		tw = rctx_tw_new(false, sizeof(*tw));
		if (!tw) {
			err = -ENOMEM;
			goto out;
		}
		/* Release: pairs with the acquire in rctx_timer_arm. */
		atomic_store_explicit(&rctx_tmr_lib[cpu], tw,
				      memory_order_release);
	}
	err = rctx_tw_start(tw);
	if (!err)
		rctx_tmr_adopt_orphans(tw);
out:
	pthread_mutex_unlock(&rctx_tmr_lock);
	return err;
}

void
rctx_timer_poke(void)
{
	unsigned i;

	/* relaxed: a hint; the work is done under rctx_tmr_lock */
	if (RCTX_LIKELY(!atomic_load_explicit(&rctx_tmr_fork_pending,
					      memory_order_relaxed)))
		return;
	pthread_mutex_lock(&rctx_tmr_lock);
	if (rctx_tmr_restart_all) {
		int err = 0;

		for (i = 0; i < rctx_tmr_nwheels && !err; i++) {
			/* Relaxed: under the lock that writes it. */
			struct rctx_twheel *tw = atomic_load_explicit(
			    &rctx_tmr_lib[i], memory_order_relaxed);

			if (tw && tw->had_thread)
				err = rctx_tw_start(tw);
		}
		if (!err)
			rctx_tmr_restart_all = false;
	}
	if (!rctx_tmr_restart_all)
		/* relaxed: under the lock */
		atomic_store_explicit(&rctx_tmr_fork_pending, false,
				      memory_order_relaxed);
	pthread_mutex_unlock(&rctx_tmr_lock);
}

/* ---- arm / cancel / release -------------------------------------------- */

static void
rctx_tw_hand(struct rctx_twheel *tw, struct rctx_timer *t, rctx_time_t expires)
{
	t->expires = expires;
	t->home = tw;
	/*
	 * Release: publishes home to a release that sees QUEUED (pairs with
	 * the acquire of its CAS); the push publishes all of t to the owner.
	 */
	atomic_fetch_or_explicit(&t->flags,
				 RCTX_TIMER_F_ARMED | RCTX_TIMER_F_QUEUED,
				 memory_order_release);
	rctx_tw_push(tw, t);
	/* Only an earlier deadline than the owner planned wakes it (B). */
	rctx_tw_wake_if(tw, expires);
}

/* Flush a stage: free what was released, hand the rest to the owner. */
static void
rctx_stage_flush(struct rctx_stage *st)
{
	/* seq_cst: as the owner's steal (A) */
	struct rctx_timer *t =
	    atomic_exchange_explicit(&st->head, NULL, memory_order_seq_cst);
	struct rctx_timer *next;
	rctx_time_t earliest = RCTX_NEVER;

	st->n = 0;
	for (; t; t = next) {
		/* Relaxed: the CAS below validates. */
		uint32_t f =
		    atomic_load_explicit(&t->flags, memory_order_relaxed);
		uint32_t nf;

		next = t->qnext;
		do {
			nf = f & ~RCTX_TIMER_F_STAGED;
			if (f & RCTX_TIMER_F_DEAD)
				nf &= ~RCTX_TIMER_F_QUEUED;
			/* acq_rel: acquire pairs with release's CAS (it set
			 * DEAD); release hands t on with what we wrote */
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->flags, &f, nf, memory_order_acq_rel,
		    memory_order_relaxed));
		if (f & RCTX_TIMER_F_DEAD) {
			rctx_tmr_call_dead(t); /* I1: we cleared QUEUED */
			continue;
		}
		/* Still QUEUED: it moves to the owner's queue. */
		rctx_tw_push(st->tw, t);
		if (t->expires < earliest)
			earliest = t->expires;
	}
	if (earliest != RCTX_NEVER)
		rctx_tw_wake_if(st->tw, earliest - 2 * rctx_tw_tick(st->tw));
}

static void
rctx_stage_exit(void *arg)
{
	struct rctx_stage *st = arg;

	/* relaxed: shutdown (which bumps it) needs quiescent threads */
	if (rctx_tmr_my_stage_gen !=
	    atomic_load_explicit(&rctx_tmr_stage_gen, memory_order_relaxed))
		return; /* freed by a shutdown since */
	rctx_stage_flush(st);
	rctx_tmr_my_stage = NULL;
	/* release: the next owner sees it empty; pairs with the CAS below */
	atomic_store_explicit(&st->owned, 0, memory_order_release);
}

static void
rctx_stage_make_key(void)
{
	(void)pthread_key_create(&rctx_tmr_stage_key, rctx_stage_exit);
}

/* This thread's stage for wheel tw, or NULL (then hand off directly). */
static struct rctx_stage *
rctx_stage_self(struct rctx_twheel *tw)
{
	/* relaxed: see rctx_stage_exit */
	unsigned gen =
	    atomic_load_explicit(&rctx_tmr_stage_gen, memory_order_relaxed);
	struct rctx_stage *st = rctx_tmr_my_stage;

	if (RCTX_LIKELY(st != NULL && rctx_tmr_my_stage_gen == gen &&
			st->tw == tw))
		return st;
	if (st != NULL && rctx_tmr_my_stage_gen == gen)
		return NULL; /* bound to another wheel: hand off directly */
	/* acquire: pairs with the release CAS that pushed each record */
	for (st = atomic_load_explicit(&rctx_tmr_stages, memory_order_acquire);
	     st; st = st->next) {
		uint32_t zero = 0;

		/* acquire: pairs with the release store in rctx_stage_exit */
		if (st->tw == tw &&
		    atomic_compare_exchange_strong_explicit(
			&st->owned, &zero, 1, memory_order_acquire,
			memory_order_relaxed))
			goto got;
	}
	st = rctx_calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->tw = tw;
	atomic_init(&st->owned, 1);
	/* relaxed: the CAS below publishes */
	st->next = atomic_load_explicit(&rctx_tmr_stages, memory_order_relaxed);
	/* release: publishes the record; pairs with the acquire walks */
	while (!atomic_compare_exchange_weak_explicit(
	    &rctx_tmr_stages, &st->next, st, memory_order_release,
	    memory_order_relaxed))
		;
got:
	(void)pthread_once(&rctx_tmr_stage_once, rctx_stage_make_key);
	(void)pthread_setspecific(rctx_tmr_stage_key, st);
	rctx_tmr_my_stage = st;
	rctx_tmr_my_stage_gen = gen;
	return st;
}

/* Stage t on st (see the comment on stages). */
static void
rctx_stage_push(struct rctx_stage *st, struct rctx_timer *t,
		rctx_time_t expires)
{
	struct rctx_twheel *tw = st->tw;
	/* Relaxed: only we push; the CAS validates against steals. */
	struct rctx_timer *head =
	    atomic_load_explicit(&st->head, memory_order_relaxed);

	t->expires = expires;
	t->home = tw;
	/*
	 * Release: publishes home to a release that sees QUEUED (as in
	 * rctx_tw_hand); the push publishes all of t to a stealer.
	 */
	atomic_fetch_or_explicit(&t->flags,
				 RCTX_TIMER_F_ARMED | RCTX_TIMER_F_QUEUED |
				     RCTX_TIMER_F_STAGED,
				 memory_order_release);
	do {
		t->qnext = head;
		/* seq_cst: publishes t to the steal (A) and is the store
		 * half of the Dekker pair with the owner's plan (B) */
	} while (!atomic_compare_exchange_weak_explicit(
	    &st->head, &head, t, memory_order_seq_cst, memory_order_relaxed));
	/*
	 * The owner must steal it two ticks before it is due: if its plan
	 * does not promise to look by then (it polls each tick while any
	 * stage is busy), wake it. In steady state this makes no call.
	 */
	rctx_tw_wake_if(tw, expires - 2 * rctx_tw_tick(tw));
	if (++st->n >= RCTX_STAGE_FLUSH)
		rctx_stage_flush(st);
}

int
rctx_timer_arm(struct rctx_timer *t, rctx_time_t expires)
{
	return rctx_timer_arm_at(t, expires, RCTX_NEVER);
}

int
rctx_timer_arm_at(struct rctx_timer *t, rctx_time_t expires, rctx_time_t now)
{
	struct rctx_loop *own = rctx_tmr_own_loop;
	struct rctx_twheel *tw;
	unsigned cpu, n;
	int err;

	/* Relaxed: only the arming thread should touch t before arm. */
	if (atomic_load_explicit(&t->flags, memory_order_relaxed) &
	    RCTX_TIMER_F_ARMED)
		return 0; /* armed twice: contract violation, ignore */
	if (own) {
		/* The owner files directly: no queue, no wake-up needed. */
		t->expires = expires;
		t->home = &own->tw;
		/*
		 * Release: publishes home to a release that sees WHEEL (pairs
		 * with the acquire of its CAS); wt is ours alone.
		 */
		atomic_fetch_or_explicit(
		    &t->flags, RCTX_TIMER_F_ARMED | RCTX_TIMER_F_WHEEL,
		    memory_order_release);
		rctx_wheel_add(&own->tw.w, &t->wt, expires);
		return 0;
	}
	for (;;) {
		/* Relaxed: a hint; the lock in the slow path re-checks. */
		if (atomic_load_explicit(&rctx_tmr_nloops,
					 memory_order_relaxed)) {
			struct rctx_loopset *set;

			rcu_read_lock();
			set = rcu_dereference(rctx_tmr_loops);
			/* Acquire: pairs with the release of n in loop_new. */
			n = set ? atomic_load_explicit(&set->n,
						       memory_order_acquire)
				: 0;
			if (n) {
				/* Relaxed: rcu_dereference ordered the set. */
				struct rctx_loop *l = atomic_load_explicit(
				    &set->loop[rctx_tmr_cpu() % n],
				    memory_order_relaxed);

				rctx_tw_hand(&l->tw, t, expires);
				rctx_tmr_read_unlock();
				return 0;
			}
			rctx_tmr_read_unlock();
		}
		/* Acquire: pairs with the release in rctx_tmr_once_init. */
		n = atomic_load_explicit(&rctx_tmr_nwheels_a,
					 memory_order_acquire);
		cpu = n ? rctx_tmr_cpu() % n : 0;
		/* Acquire: pairs with the release in rctx_tmr_lib_start. */
		tw = atomic_load_explicit(&rctx_tmr_lib[cpu],
					  memory_order_acquire);
		/* Acquire: pairs with the release in rctx_tw_start. */
		if (tw &&
		    atomic_load_explicit(&tw->running, memory_order_acquire)) {
			struct rctx_stage *st;

			if (now != RCTX_NEVER &&
			    expires - now >=
				RCTX_STAGE_MIN_TICKS * rctx_tw_tick(tw) &&
			    (st = rctx_stage_self(tw)) != NULL) {
				rctx_stage_push(st, t, expires);
				return 0;
			}
			rctx_tw_hand(tw, t, expires);
			return 0;
		}
		err = rctx_tmr_lib_start(rctx_tmr_cpu());
		if (err)
			return err;
	}
}

void
rctx_timer_cancel(struct rctx_timer *t)
{
	/*
	 * acq_rel: ordered against the owner's FIRING CAS in flags'
	 * modification order (D); release publishes the caller's prior
	 * writes to the owner that skips t.
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
	 * Only loop wheels are freed before shutdown (ordering F): a program
	 * that never made a loop needs no read-side section. Relaxed: a
	 * timer of a loop was armed after the store that made this true,
	 * by a thread the releasing one synchronised with.
	 */
	bool rcu =
	    atomic_load_explicit(&rctx_tmr_loops_used, memory_order_relaxed);

	if (rcu)
		rcu_read_lock(); /* before the CAS: ordering F */
	/* Acquire: pairs with arm's release fetch_or (publishes home). */
	f = atomic_load_explicit(&t->flags, memory_order_acquire);
	for (;;) {
		if (f & RCTX_TIMER_F_DEAD) {
			if (rcu)
				rctx_tmr_read_unlock();
			return; /* released twice or killed by shutdown */
		}
		/*
		 * Read home before the CAS: once DEAD is set, an owner that
		 * holds t may kill it at any moment, so t must not be read
		 * after the CAS unless we took QUEUED ourselves. Relaxed: a
		 * migration may rewrite it; both the old and the new owner
		 * stay alive until our read-side section ends (F).
		 */
		tw = __atomic_load_n(&t->home, __ATOMIC_RELAXED);
		nf = f | RCTX_TIMER_F_DEAD | RCTX_TIMER_F_CANCELLED;
		push = (f & RCTX_TIMER_F_WHEEL) && !(f & RCTX_TIMER_F_QUEUED);
		if (push)
			nf |= RCTX_TIMER_F_QUEUED;
		/*
		 * acq_rel: acquire pairs with the owner's CASes (we see what
		 * it holds, E); release hands our DEAD to it.
		 */
		if (atomic_compare_exchange_weak_explicit(&t->flags, &f, nf,
							  memory_order_acq_rel,
							  memory_order_acquire))
			break;
	}
	if (!(f & RCTX_TIMER_HELD)) {
		if (rcu)
			rctx_tmr_read_unlock();
		rctx_tmr_call_dead(t); /* I1: nobody holds t */
		return;
	}
	if (f & RCTX_TIMER_F_STAGED) {
		/* Its stage's flush or the owner's steal kills it. */
		if (rcu)
			rctx_tmr_read_unlock();
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
	    (rctx_tmr_own_loop && tw == &rctx_tmr_own_loop->tw)) {
		/*
		 * The owner is awake: it sees DEAD after fire, or it is us
		 * and looks at its queue before it sleeps (loop_next/run).
		 */
		if (rcu)
			rctx_tmr_read_unlock();
		return;
	}
	rctx_tw_wake_soon(tw);
	if (rcu)
		rctx_tmr_read_unlock();
}

/* ---- event loops ------------------------------------------------------- */

static void
rctx_loop_clear_fd(struct rctx_loop *loop)
{
	uint64_t v;
	ssize_t r;

	do {
		r = read(loop->tw.efd, &v, sizeof(v));
	} while (r < 0 && errno == EINTR);
}

rctx_loop_t *
rctx_loop_new(void)
{
	struct rctx_loopset *set, *old;
	struct rctx_loop *loop;
	unsigned n;

	if (rctx_tmr_own_loop) {
		errno = EBUSY;
		return NULL;
	}
	pthread_once(&rctx_tmr_once, rctx_tmr_once_init);
	pthread_mutex_lock(&rctx_tmr_lock);
	if (rctx_tmr_nrunning) {
		pthread_mutex_unlock(&rctx_tmr_lock);
		errno = EBUSY;
		return NULL;
	}
	loop = (struct rctx_loop *)rctx_tw_new(true, sizeof(*loop));
	if (!loop)
		goto nomem;
	if (rctx_fault_hit(RCTX_FAULT_EVENTFD)) {
		errno = EMFILE;
		goto fail;
	}
	loop->tw.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->tw.efd < 0)
		goto fail;
	old = rctx_tmr_loops;
	/* Relaxed: the set is only grown under rctx_tmr_lock. */
	n = old ? atomic_load_explicit(&old->n, memory_order_relaxed) : 0;
	if (!old || n == old->cap) {
		unsigned cap = old ? old->cap * 2 : 4, i;

		set = rctx_calloc(1, sizeof(*set) + cap * sizeof(set->loop[0]));
		if (!set) {
			close(loop->tw.efd);
			goto nomem;
		}
		set->cap = cap;
		for (i = 0; i < n; i++)
			/* Relaxed: set is not yet published. */
			atomic_init(&set->loop[i],
				    atomic_load_explicit(&old->loop[i],
							 memory_order_relaxed));
		atomic_init(&set->loop[n], loop);
		atomic_init(&set->n, n + 1);
		rcu_assign_pointer(rctx_tmr_loops, set);
	} else {
		set = NULL;
		/* Release: the loop is initialised before readers see it. */
		atomic_store_explicit(&old->loop[n], loop,
				      memory_order_release);
		/* Release: publishes loop[n] to readers that see n + 1. */
		atomic_store_explicit(&old->n, n + 1, memory_order_release);
	}
	/* Relaxed: readers treat it as a hint (the lock re-checks). */
	/* relaxed: see rctx_timer_release (its readers synchronise through
	 * the timers armed to the loop afterwards) */
	atomic_store_explicit(&rctx_tmr_loops_used, true, memory_order_relaxed);
	atomic_fetch_add_explicit(&rctx_tmr_nloops, 1, memory_order_relaxed);
	rctx_tmr_own_loop = loop;
	/* Timers parked by a loop_free that found no owner: ours now. */
	rctx_tmr_adopt_orphans(&loop->tw);
	pthread_mutex_unlock(&rctx_tmr_lock);
	if (set && old) {
		rctx_tmr_sync();
		free(old);
	}
	rctx_lafter_attach(loop, loop->tw.efd); /* loop after-funcs */
	return loop;
nomem:
	errno = ENOMEM;
fail:
	free(loop);
	pthread_mutex_unlock(&rctx_tmr_lock);
	return NULL;
}

int
rctx_loop_fd(const rctx_loop_t *loop)
{
	return loop ? loop->tw.efd : -EINVAL;
}

rctx_time_t
rctx_loop_next(rctx_loop_t *loop)
{
	rctx_time_t now, next, until, tick;
	int round;

	if (!loop)
		return -1;
	tick = rctx_tw_tick(&loop->tw);
	rctx_loop_clear_fd(loop);
	rctx_lafter_rearm(loop); /* a loop after-func waits: fd readable */
	for (round = 0;; round++) {
		now = rctx_now();
		/* seq_cst: the owner is awake, looks within a tick (B). */
		atomic_store_explicit(&loop->tw.planned,
				      (now + tick) | RCTX_PLANNED_POLL,
				      memory_order_seq_cst);
		rctx_tw_drain(&loop->tw);
		next = rctx_wheel_next(&loop->tw.w);
		until = rctx_tw_plan(&loop->tw, next, now + tick, false);
		if (until == next || round == 3)
			break;
		/* The queue filled meanwhile: take it now rather than later. */
	}
	return until == RCTX_NEVER ? -1 : until;
}

int
rctx_loop_timeout_ms(rctx_loop_t *loop)
{
	rctx_time_t next = rctx_loop_next(loop), now, ms;

	if (next < 0)
		return -1;
	now = rctx_now();
	if (next <= now)
		return 0;
	/* Round up so that epoll_wait never returns before the deadline. */
	ms = (next - now + RCTX_MSEC - 1) / RCTX_MSEC;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

int
rctx_loop_run(rctx_loop_t *loop, rctx_time_t now)
{
	struct rctx_wheel_timer *due;
	int n;

	if (!loop)
		return -EINVAL;
	rctx_tw_drain(&loop->tw);
	due = rctx_tw_collect(&loop->tw, now);
	n = rctx_tw_fire(due);
	return n + rctx_lafter_run(loop); /* loop after-funcs */
}

/*
 * Give timers (a ->qnext list, each with QUEUED held by us) to another
 * owner: a remaining loop, else a library wheel, else park them.
 * Caller holds rctx_tmr_lock.
 */
static void
rctx_tmr_rehome(struct rctx_loop *from, struct rctx_timer *list)
{
	struct rctx_loopset *set = rctx_tmr_loops;
	struct rctx_twheel *to = NULL;
	struct rctx_timer *t, *next;
	rctx_time_t first = RCTX_NEVER;
	unsigned i, n;

	if (!list)
		return;
	/* Relaxed: the set changes only under the lock we hold. */
	n = set ? atomic_load_explicit(&set->n, memory_order_relaxed) : 0;
	if (n) {
		to = &atomic_load_explicit(&set->loop[0], memory_order_relaxed)
			  ->tw;
	} else {
		unsigned cpu = rctx_tmr_cpu() % rctx_tmr_nwheels;

		for (i = 0; i < rctx_tmr_nwheels && !to; i++) {
			/* Relaxed: under the lock that writes it. */
			to = atomic_load_explicit(
			    &rctx_tmr_lib[(cpu + i) % rctx_tmr_nwheels],
			    memory_order_relaxed);
		}
		if (!to) {
			to = rctx_tw_new(false, sizeof(*to));
			if (to)
				/* Release: pairs with the acquire in arm. */
				atomic_store_explicit(&rctx_tmr_lib[cpu], to,
						      memory_order_release);
		}
		if (to && rctx_tw_start(to))
			to = NULL; /* no thread: park below */
	}
	if (!to) {
		/* Park: the next library start adopts them (no memory). */
		for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++)
			if (!rctx_tmr_orphans[i])
				break;
		if (i < RCTX_TIMER_MAX_WHEELS) {
			for (t = list; t; t = next) {
				next = t->qnext;
				rctx_tw_push(&from->tw, t);
			}
			rctx_tmr_orphans[i] = from;
			return;
		}
		abort(); /* cannot happen with fewer than 256 loops */
	}
	for (t = list; t; t = next) {
		next = t->qnext;
		/* I4: we hold QUEUED; relaxed: see rctx_timer_release. */
		__atomic_store_n(&t->home, to, __ATOMIC_RELAXED);
		if (t->expires < first)
			first = t->expires;
		rctx_tw_push(to, t);
	}
	/* Within a tick: a release may have woken the old owner instead. */
	if (rctx_now() + rctx_tw_tick(to) < first)
		first = rctx_now() + rctx_tw_tick(to);
	rctx_tw_wake_if(to, first);
}

/* Move parked loops' queues into `to`. Caller holds rctx_tmr_lock. */
static void
rctx_tmr_adopt_orphans(struct rctx_twheel *to)
{
	struct rctx_timer *t, *next;
	unsigned i;

	for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++) {
		struct rctx_loop *o = rctx_tmr_orphans[i];

		if (!o)
			continue;
		/* seq_cst: as in rctx_tw_drain (A). */
		t = atomic_exchange_explicit(&o->tw.queue, NULL,
					     memory_order_seq_cst);
		for (; t; t = next) {
			next = t->qnext;
			/* Relaxed: see rctx_timer_release. */
			__atomic_store_n(&t->home, to, __ATOMIC_RELAXED);
			rctx_tw_push(to, t);
		}
		rctx_tw_wake_if(to, RCTX_PLANNED_WOKEN + 1);
		/* Releases that read the old home are done (F). */
		rctx_tmr_sync();
		close(o->tw.efd);
		free(o);
		rctx_tmr_orphans[i] = NULL;
	}
}

void
rctx_loop_free(rctx_loop_t *loop)
{
	struct rctx_loopset *set;
	struct rctx_wheel_timer *wt, *wnext;
	struct rctx_timer *t, *next, *move = NULL;
	unsigned i, n;
	size_t cnt;
	bool parked;

	if (!loop)
		return;
	rctx_lafter_detach(loop); /* pending loop after-funcs never run */
	if (rctx_tmr_own_loop == loop)
		rctx_tmr_own_loop = NULL;
	pthread_mutex_lock(&rctx_tmr_lock);
	set = rctx_tmr_loops;
	/* Relaxed: the set changes only under the lock we hold. */
	n = set ? atomic_load_explicit(&set->n, memory_order_relaxed) : 0;
	for (i = 0; i < n; i++) {
		/* Relaxed: under the lock. */
		if (atomic_load_explicit(&set->loop[i], memory_order_relaxed) ==
		    loop) {
			struct rctx_loop *last = atomic_load_explicit(
			    &set->loop[n - 1], memory_order_relaxed);

			/*
			 * Release stores: pair with arm's acquire of n and
			 * carry the moved loop's initialisation (we saw it
			 * under the lock). A reader that still picks this
			 * loop is inside a read-side section the grace
			 * period below waits for (F).
			 */
			atomic_store_explicit(&set->loop[i], last,
					      memory_order_release);
			atomic_store_explicit(&set->n, n - 1,
					      memory_order_release);
			break;
		}
	}
	/* Relaxed: a hint for arm's fast path. */
	atomic_fetch_sub_explicit(&rctx_tmr_nloops, 1, memory_order_relaxed);
	if (n == 1) {
		rcu_assign_pointer(rctx_tmr_loops, NULL);
	} else {
		set = NULL;
	}
	/* No new arm can choose this loop once readers drain (F). */
	rctx_tmr_sync();
	free(set);

	wt = rctx_wheel_drain(&loop->tw.w, &cnt);
	for (; wt; wt = wnext) {
		uint32_t f, nf;

		wnext = wt->next;
		t = rctx_tcontainer(wt, struct rctx_timer, wt);
		/* Relaxed: the CAS below validates. */
		f = atomic_load_explicit(&t->flags, memory_order_relaxed);
		do {
			nf = f & ~RCTX_TIMER_F_WHEEL;
			if (!(f & (RCTX_TIMER_F_QUEUED |
				   RCTX_TIMER_F_CANCELLED | RCTX_TIMER_F_DEAD)))
				nf |= RCTX_TIMER_F_QUEUED;
			/* acq_rel: as in rctx_tw_take. */
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->flags, &f, nf, memory_order_acq_rel,
		    memory_order_relaxed));
		if (nf & RCTX_TIMER_F_QUEUED) {
			if (!(f & RCTX_TIMER_F_QUEUED)) {
				t->qnext = move;
				move = t;
			}
		} else if (f & RCTX_TIMER_F_DEAD) {
			rctx_tmr_call_dead(t);
		}
	}
	/* In-flight re-queues by release land before we drain (F). */
	rctx_tmr_sync();
	/* seq_cst: as in rctx_tw_drain (A). */
	t = atomic_exchange_explicit(&loop->tw.queue, NULL,
				     memory_order_seq_cst);
	for (; t; t = next) {
		uint32_t f, nf;

		next = t->qnext;
		/* Relaxed: the CAS below validates. */
		f = atomic_load_explicit(&t->flags, memory_order_relaxed);
		do {
			nf = f;
			if (f & (RCTX_TIMER_F_CANCELLED | RCTX_TIMER_F_DEAD))
				nf &= ~RCTX_TIMER_F_QUEUED;
			/* acq_rel: as in rctx_tw_take. */
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->flags, &f, nf, memory_order_acq_rel,
		    memory_order_relaxed));
		if (nf & RCTX_TIMER_F_QUEUED) {
			t->qnext = move;
			move = t;
		} else if (f & RCTX_TIMER_F_DEAD) {
			rctx_tmr_call_dead(t);
		}
	}
	rcu_read_lock();
	rctx_tmr_rehome(loop, move);
	rctx_tmr_read_unlock();
	parked = false;
	for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++)
		if (rctx_tmr_orphans[i] == loop)
			parked = true;
	pthread_mutex_unlock(&rctx_tmr_lock);
	if (!parked) {
		/* Releases that read the old home are done (F). */
		rctx_tmr_sync();
		close(loop->tw.efd);
		free(loop);
	}
}

/* ---- shutdown and fork ------------------------------------------------- */

/* Kill every timer tw still holds (its owner is gone). */
static void
rctx_tw_kill_all(struct rctx_twheel *tw)
{
	struct rctx_wheel_timer *wt, *wnext;
	struct rctx_timer *t, *next;
	size_t n;

	/* seq_cst: as in rctx_tw_drain (A). */
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
			rctx_wheel_del(&tw->w, &t->wt);
		rctx_tmr_call_dead(t);
	}
	wt = rctx_wheel_drain(&tw->w, &n);
	for (; wt; wt = wnext) {
		wnext = wt->next;
		t = rctx_tcontainer(wt, struct rctx_timer, wt);
		/* acq_rel: as above. */
		atomic_fetch_or_explicit(
		    &t->flags, RCTX_TIMER_F_CANCELLED | RCTX_TIMER_F_DEAD,
		    memory_order_acq_rel);
		/* Relaxed: no other holder remains. */
		atomic_fetch_and_explicit(&t->flags, ~RCTX_TIMER_HELD,
					  memory_order_relaxed);
		rctx_tmr_call_dead(t);
	}
}

void
rctx_timer_shutdown(void)
{
	struct rctx_twheel *tws[RCTX_TIMER_MAX_WHEELS];
	unsigned i, n;

	pthread_once(&rctx_tmr_once, rctx_tmr_once_init);
	pthread_mutex_lock(&rctx_tmr_lock);
	n = rctx_tmr_nwheels;
	for (i = 0; i < n; i++) {
		/* Relaxed: under the lock that writes it. */
		tws[i] = atomic_load_explicit(&rctx_tmr_lib[i],
					      memory_order_relaxed);
		atomic_store_explicit(&rctx_tmr_lib[i], NULL,
				      memory_order_relaxed);
		/* Relaxed: under the lock that writes it. */
		if (tws[i] && atomic_load_explicit(&tws[i]->running,
						   memory_order_relaxed)) {
			/* Release: pairs with the acquire in the thread. */
			atomic_store_explicit(&tws[i]->stop, true,
					      memory_order_release);
			rctx_tw_kick(tws[i]);
		}
	}
	rctx_tmr_nrunning = 0;
	rctx_tmr_restart_all = false;
	pthread_mutex_unlock(&rctx_tmr_lock);
	for (i = 0; i < n; i++) {
		/* Relaxed: only we and the joined thread ever wrote it. */
		if (tws[i] && atomic_load_explicit(&tws[i]->running,
						   memory_order_relaxed))
			pthread_join(tws[i]->thread, NULL);
	}
	pthread_mutex_lock(&rctx_tmr_lock);
	/* Staged timers join their wheel's queue, which kill_all empties;
	 * then the records go (threads that still point at theirs see the
	 * generation change). */
	/* acquire: pairs with the record pushes; callers are quiescent */
	struct rctx_stage *st = atomic_exchange_explicit(&rctx_tmr_stages, NULL,
							 memory_order_acquire);
	while (st) {
		struct rctx_stage *snext = st->next;
		/* seq_cst: as the owner's steal (A) */
		struct rctx_timer *t = atomic_exchange_explicit(
		    &st->head, NULL, memory_order_seq_cst);

		while (t) {
			struct rctx_timer *tn = t->qnext;

			/* acq_rel: as in rctx_stage_flush */
			atomic_fetch_and_explicit(&t->flags,
						  ~RCTX_TIMER_F_STAGED,
						  memory_order_acq_rel);
			rctx_tw_push(st->tw, t);
			t = tn;
		}
		free(st);
		st = snext;
	}
	/* relaxed: see rctx_stage_exit */
	atomic_fetch_add_explicit(&rctx_tmr_stage_gen, 1, memory_order_relaxed);
	rctx_tmr_my_stage = NULL;
	for (i = 0; i < n; i++) {
		if (!tws[i])
			continue;
		rctx_tw_kill_all(tws[i]);
		pthread_mutex_destroy(&tws[i]->lock);
		free(tws[i]);
	}
	for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++) {
		struct rctx_loop *o = rctx_tmr_orphans[i];

		if (!o)
			continue;
		rctx_tw_kill_all(&o->tw);
		close(o->tw.efd);
		free(o);
		rctx_tmr_orphans[i] = NULL;
	}
	pthread_mutex_unlock(&rctx_tmr_lock);
	/* Reset the statistics too, so that runs start from zero. */
	/* Relaxed: statistics. */
	atomic_store_explicit(&rctx_timer_stat_wakes, 0, memory_order_relaxed);
	atomic_store_explicit(&rctx_timer_stat_owner_runs, 0,
			      memory_order_relaxed);
}

/*
 * fork() (fork.c calls these first in prepare, last after): the prepare
 * hook takes the service lock and every library wheel's lock, so the
 * child's copy of each wheel is consistent (no owner was inside a wheel
 * operation), and then waits until each owner is parked: blocked on its
 * wheel's lock or asleep, not starting up and not firing. A firing owner
 * runs the core's cancellation and callbacks, which allocate; a child
 * that inherited an allocator lock held by a thread it does not have
 * could never allocate (seen with ASan's allocator, which has no fork
 * handler of its own in clang 14: the child's restarted owner hung in
 * malloc). The wait is bounded (RCTX_FORK_PARK_WAIT), so a callback that
 * blocks on something the forking thread holds delays fork, never
 * deadlocks it; an owner forking from its own callback is not waited for.
 *
 * In the child the threads are gone: the wheels keep their pending timers
 * and are marked for restart; the child's first arm or wait restarts
 * every wheel that had a thread, so timers armed before fork fire in the
 * child too.
 */
/* Wait for tw's owner to park (not if we are it: fork from a callback). */
static void
rctx_tmr_park(struct rctx_twheel *tw, rctx_time_t give_up)
{
	if (tw != rctx_tmr_self)
		rctx_fork_park(&tw->unparked, give_up);
}

void
rctx_timer_before_fork(void)
{
	rctx_time_t give_up = rctx_now() + RCTX_FORK_PARK_WAIT;
	unsigned i;

	pthread_mutex_lock(&rctx_tmr_lock);
	for (i = 0; i < rctx_tmr_nwheels; i++) {
		/* Relaxed: under the lock that writes it. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_tmr_lib[i], memory_order_relaxed);

		if (!tw)
			continue;
		pthread_mutex_lock(&tw->lock);
		/* Relaxed: under rctx_tmr_lock, which writes it. */
		if (atomic_load_explicit(&tw->running, memory_order_relaxed))
			rctx_tmr_park(tw, give_up);
	}
}

void
rctx_timer_after_fork_parent(void)
{
	unsigned i;

	for (i = 0; i < rctx_tmr_nwheels; i++) {
		/* Relaxed: under the lock that writes it. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_tmr_lib[i], memory_order_relaxed);

		if (tw)
			pthread_mutex_unlock(&tw->lock);
	}
	pthread_mutex_unlock(&rctx_tmr_lock);
}

void
rctx_timer_after_fork_child(void)
{
	unsigned i;

	for (i = 0; i < rctx_tmr_nwheels; i++) {
		/* Relaxed: the child is single-threaded. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_tmr_lib[i], memory_order_relaxed);

		if (!tw)
			continue;
		pthread_mutex_init(&tw->lock, NULL);
		/* Relaxed: the child is single-threaded. */
		if (atomic_load_explicit(&tw->running, memory_order_relaxed))
			rctx_tmr_restart_all = true;
		atomic_store_explicit(&tw->running, false,
				      memory_order_relaxed);
		atomic_store_explicit(&tw->stop, false, memory_order_relaxed);
		atomic_store_explicit(&tw->unparked, false,
				      memory_order_relaxed);
		/* No owner: the restarted one re-reads everything. */
		atomic_store_explicit(&tw->planned,
				      RCTX_NEVER & ~RCTX_PLANNED_POLL,
				      memory_order_relaxed);
	}
	rctx_tmr_nrunning = 0;
	rctx_tmr_self = NULL;
	pthread_mutex_init(&rctx_tmr_lock, NULL);
	/*
	 * No thread is started from this handler (the least work between
	 * fork and the child's own code): the child's first arm
	 * (rctx_tmr_lib_start) or wait (rctx_timer_poke) restarts every
	 * wheel that had a thread, so a deadline armed before fork still
	 * expires in a child that only waits. relaxed: the child is
	 * single-threaded here.
	 */
	if (rctx_tmr_restart_all)
		atomic_store_explicit(&rctx_tmr_fork_pending, true,
				      memory_order_relaxed);
}
