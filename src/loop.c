/* SPDX-License-Identifier: MIT */
/* Event-loop mode: wheels owned by the application's own loop threads. */

/*
 * A loop is an owned wheel (twheel.c) whose owner is the thread that
 * created it: it drives the wheel through rctx_loop_next/run, sleeps in
 * its own epoll_wait (rctx_loop_epoll_wait: epoll_pwait2 to the
 * nanosecond), and is woken by an eventfd write. A loop can be created
 * whatever ran before (library owners, armed deadlines): those stay
 * where they are. By default only the loop's own thread arms into it;
 * arms from threads owning no loop go to library owners (timer.c). In
 * no-thread mode (rctx_timer_set_threads(false)) those arms are spread
 * over the loops instead (an RCU-protected set).
 * When a loop is freed its pending timers move to a library wheel (the
 * default), else to another loop, else they are parked (an "orphan"
 * loop) until the next loop or library wheel starts and adopts them.
 * rctx_loop_next returns the owner's next look (twheel.c rctx_tw_next):
 * the exact earliest deadline once it is within about two ticks.
 *
 * Invariants
 *  I1. A timer in the wheel of twheel X has t->home == X; t->home changes
 *      only while the mover holds QUEUED with t in no queue (migration in
 *      rctx_loop_rehome, adoption in rctx_loop_adopt_orphans_locked).
 *  I2. A loop twheel is freed only after no producer can hold a pointer
 *      to it: after three RCU grace periods (rctx_loop_destroy: after
 *      unpublishing, after unhooking its timers, after re-homing them).
 *  I3. The loop set, the orphan table and nloops change only under the
 *      service lock (owner.h).
 *
 * Ordering
 *  loop.A A new set is published with rcu_assign_pointer (a release
 *      store) after it is filled; rctx_loop_pick_rcu reads it with
 *      rcu_dereference. Growing in place stores loop[n] then n, both
 *      release; the picker loads n with acquire first.
 *  loop.B Arms to loops and re-queues by rctx_timer_release
 *      run inside an RCU read-side section that begins before the route
 *      is chosen (release: before its CAS); rctx_loop_destroy unpublishes
 *      the loop and waits for grace periods before draining, so no push
 *      lands in a freed loop (I2).
 *
 * Progress: the owner's calls (next, run) are lock-free as twheel.c's
 * owner side; create and destroy block (service lock, grace periods).
 * Partners: timer.c (routing, rctx_owner_threads_off), owner.c (service
 * lock, rctx_owner_any_locked), twheel.c (drain, collect, next, plan).
 */

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urcu-bp.h>

#include "clock.h"
#include "fault.h"
#include "loop.h"
#include "owner.h"
#include "park.h"

/* Loops that non-owner arms are spread over; RCU-protected. */
struct rctx_loopset {
	_Atomic unsigned n;
	unsigned cap;
	struct rctx_loop *_Atomic loop[];
};

RCTX_TLS struct rctx_loop *rctx_loop_mine;
static struct rctx_loopset *rctx_loop_set; /* RCU pointer (loop.A) */
static _Atomic unsigned rctx_loop_n;
static _Atomic bool rctx_loop_used; /* a loop was ever created */
static struct rctx_loop *rctx_loop_orphans[RCTX_TIMER_MAX_WHEELS];

/* Wait for a grace period; tell TSan what it orders (internal.h). */
static void
rctx_loop_sync(void)
{
	synchronize_rcu();
	rctx_tsan_acquire(&rctx_rcu_token);
}

bool
rctx_loop_any(void)
{
	/* Relaxed: a hint; the service lock re-checks (I3). */
	return atomic_load_explicit(&rctx_loop_n, memory_order_relaxed) != 0;
}

bool
rctx_loop_ever(void)
{
	/* Relaxed: a timer of a loop was armed after the store that made
	 * this true, by a thread the releasing one synchronised with. */
	return atomic_load_explicit(&rctx_loop_used, memory_order_relaxed);
}

unsigned
rctx_loop_count_locked(void)
{
	/* Relaxed: written under the service lock, which we hold. */
	return atomic_load_explicit(&rctx_loop_n, memory_order_relaxed);
}

struct rctx_twheel *
rctx_loop_pick_rcu(void)
{
	struct rctx_loopset *set = rcu_dereference(rctx_loop_set);
	/* Acquire: loop.A, pairs with the release stores of n in
	 * rctx_loop_create and rctx_loop_destroy. */
	unsigned n =
	    set ? atomic_load_explicit(&set->n, memory_order_acquire) : 0;

	if (n == 0)
		return NULL;
	/* Relaxed: the acquire of n (or rcu_dereference) ordered it. */
	return &atomic_load_explicit(&set->loop[rctx_owner_cpu() % n],
				     memory_order_relaxed)
		    ->tw;
}

static void
rctx_loop_clear_fd(struct rctx_loop *loop)
{
	uint64_t v;
	ssize_t r;

	do {
		r = read(loop->tw.efd, &v, sizeof(v));
	} while (r < 0 && errno == EINTR);
}

/* Set once at load by loopafter.c, before any thread (loop.h). */
static const struct rctx_loop_hooks *loop_hooks;

void
rctx_loop_set_hooks(const struct rctx_loop_hooks *hooks)
{
	loop_hooks = hooks;
}

struct rctx_loop *
rctx_loop_create(void)
{
	struct rctx_loopset *set, *old;
	struct rctx_loop *loop;
	unsigned n;

	if (rctx_loop_mine) {
		errno = EBUSY;
		return NULL;
	}
	(void)rctx_owner_init();
	rctx_owner_lock();
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
	old = rctx_loop_set;
	/* Relaxed: the set is only changed under the service lock (I3). */
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
		/* Release: loop.A, publishes the filled set; pairs with the
		 * rcu_dereference in rctx_loop_pick_rcu. */
		rcu_assign_pointer(rctx_loop_set, set);
	} else {
		set = NULL;
		/* Release: loop.A, the loop is initialised before pickers
		 * see it; pairs with the acquire of n in rctx_loop_pick_rcu. */
		atomic_store_explicit(&old->loop[n], loop,
				      memory_order_release);
		/* Release: loop.A, publishes loop[n] to pickers that see
		 * n + 1 (the acquire in rctx_loop_pick_rcu). */
		atomic_store_explicit(&old->n, n + 1, memory_order_release);
	}
	/* relaxed: see rctx_loop_ever */
	atomic_store_explicit(&rctx_loop_used, true, memory_order_relaxed);
	/* Relaxed: readers treat it as a hint (the lock re-checks, I3). */
	atomic_fetch_add_explicit(&rctx_loop_n, 1, memory_order_relaxed);
	rctx_loop_mine = loop;
	/* Timers parked by a destroy that found no owner: ours now. */
	rctx_loop_adopt_orphans_locked(&loop->tw);
	rctx_park_adopt_locked(&loop->tw); /* and those of a shutdown */
	rctx_owner_unlock();
	if (set && old) {
		rctx_loop_sync();
		free(old);
	}
	if (loop_hooks)
		loop_hooks->attach(loop, loop->tw.efd); /* loop after-funcs */
	return loop;
nomem:
	errno = ENOMEM;
fail:
	free(loop);
	rctx_owner_unlock();
	return NULL;
}

int
rctx_loop_efd(const struct rctx_loop *loop)
{
	return loop->tw.efd;
}

rctx_time_t
rctx_loop_plan_next(struct rctx_loop *loop)
{
	rctx_time_t now, next, until, tick;
	int round;

	tick = rctx_tw_tick(&loop->tw);
	rctx_loop_clear_fd(loop);
	if (loop_hooks) /* a loop after-func waits: fd readable */
		loop_hooks->rearm(loop);
	for (round = 0;; round++) {
		now = rctx_clock_now();
		/* seq_cst: the owner is awake and looks within a tick
		 * (twheel.B: pairs with the load in rctx_tw_wake_if). */
		atomic_store_explicit(&loop->tw.planned,
				      (now + tick) | RCTX_PLANNED_POLL,
				      memory_order_seq_cst);
		rctx_tw_drain(&loop->tw);
		next = rctx_tw_next(&loop->tw, now);
		until = rctx_tw_plan(&loop->tw, next, now + tick, false);
		if (until == next || round == 3)
			break;
		/* The queue filled meanwhile: take it now rather than later. */
	}
	return until == RCTX_NEVER ? -1 : until;
}

int
rctx_loop_plan_ms(struct rctx_loop *loop)
{
	rctx_time_t next = rctx_loop_plan_next(loop), now, ms;

	if (next < 0)
		return -1;
	now = rctx_clock_now();
	if (next <= now)
		return 0;
	/* Round up so that epoll_wait never returns before the deadline. */
	ms = (next - now + RCTX_MSEC - 1) / RCTX_MSEC;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* The relative wait until next (>= 0), in a timespec; false if none. */
static bool
rctx_loop_plan_ts(struct rctx_loop *loop, struct timespec *ts)
{
	rctx_time_t next = rctx_loop_plan_next(loop), now, d;

	if (next < 0)
		return false;
	now = rctx_clock_now();
	d = next > now ? next - now : 0;
	ts->tv_sec = (time_t)(d / RCTX_SEC);
	ts->tv_nsec = (long)(d % RCTX_SEC);
	return true;
}

int
rctx_loop_plan_timespec(struct rctx_loop *loop, struct timespec *ts)
{
	return rctx_loop_plan_ts(loop, ts) ? 1 : 0;
}

int
rctx_loop_wait_epoll(struct rctx_loop *loop, int epfd,
		     struct epoll_event *events, int max)
{
	struct timespec ts;
	bool timed = rctx_loop_plan_ts(loop, &ts);
	int n;

	/* The kernel adds ts to its own, later, reading of the clock: the
	 * wait never ends before the deadline. */
	n = epoll_pwait2(epfd, events, max, timed ? &ts : NULL, NULL);
	if (n < 0 && errno == ENOSYS) {
		/* Before Linux 5.11: milliseconds, rounded up. */
		rctx_time_t ms = timed ? ((rctx_time_t)ts.tv_sec * RCTX_SEC +
					  ts.tv_nsec + RCTX_MSEC - 1) /
					     RCTX_MSEC
				       : -1;

		n = epoll_wait(epfd, events, max,
			       ms > INT_MAX ? INT_MAX : (int)ms);
	}
	return n < 0 ? -errno : n;
}

int
rctx_loop_fire_due(struct rctx_loop *loop, rctx_time_t now)
{
	rctx_tw_drain(&loop->tw);
	int n = rctx_tw_fire(rctx_tw_collect(&loop->tw, now));

	return loop_hooks ? n + loop_hooks->run(loop) : n;
}

/*
 * Give timers (a ->qnext list, each with QUEUED held by us) to another
 * owner: a library wheel (started if need be), else a remaining loop,
 * else park them; in no-thread mode (timer.c I3) a remaining loop, else
 * park them. Caller holds the service lock.
 */
static void
rctx_loop_rehome(struct rctx_loop *from, struct rctx_timer *list)
{
	struct rctx_loopset *set = rctx_loop_set;
	struct rctx_twheel *to = NULL;
	struct rctx_timer *t, *next;
	rctx_time_t first = RCTX_NEVER;
	unsigned i, n;

	if (!list)
		return;
	/* Relaxed: the set changes only under the lock we hold (I3). */
	n = set ? atomic_load_explicit(&set->n, memory_order_relaxed) : 0;
	if (!rctx_owner_threads_off())
		to = rctx_owner_any_locked();
	if (!to && n)
		/* Relaxed: as above. */
		to = &atomic_load_explicit(&set->loop[0], memory_order_relaxed)
			  ->tw;
	if (!to) {
		/* Park: the next loop or library start adopts them. */
		for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++)
			if (!rctx_loop_orphans[i])
				break;
		if (i < RCTX_TIMER_MAX_WHEELS) {
			for (t = list; t; t = next) {
				next = t->qnext;
				rctx_tw_push(&from->tw, t);
			}
			rctx_loop_orphans[i] = from;
			return;
		}
		abort(); /* cannot happen with fewer than 256 loops */
	}
	for (t = list; t; t = next) {
		next = t->qnext;
		/* I1: we hold QUEUED. Relaxed: rctx_timer_release reads it
		 * relaxed too; both homes live until its section ends
		 * (loop.B), and the push below publishes it to the owner. */
		atomic_store_explicit(&t->home, to, memory_order_relaxed);
		if (t->expires < first)
			first = t->expires;
		rctx_tw_push(to, t);
	}
	/* Within a tick: a release may have woken the old owner instead. */
	if (rctx_clock_now() + rctx_tw_tick(to) < first)
		first = rctx_clock_now() + rctx_tw_tick(to);
	rctx_tw_wake_if(to, first);
}

void
rctx_loop_adopt_orphans_locked(struct rctx_twheel *to)
{
	struct rctx_timer *t, *next;
	unsigned i;

	for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++) {
		struct rctx_loop *o = rctx_loop_orphans[i];

		if (!o)
			continue;
		/* seq_cst: as in rctx_tw_drain (twheel.A). */
		t = atomic_exchange_explicit(&o->tw.queue, NULL,
					     memory_order_seq_cst);
		for (; t; t = next) {
			next = t->qnext;
			/* I1; relaxed: as in rctx_loop_rehome. */
			atomic_store_explicit(&t->home, to,
					      memory_order_relaxed);
			rctx_tw_push(to, t);
		}
		rctx_tw_wake_if(to, RCTX_PLANNED_WOKEN + 1);
		/* Releases that read the old home are done (loop.B). */
		rctx_loop_sync();
		close(o->tw.efd);
		free(o);
		rctx_loop_orphans[i] = NULL;
	}
}

void
rctx_loop_kill_orphans_locked(void)
{
	unsigned i;

	for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++) {
		struct rctx_loop *o = rctx_loop_orphans[i];

		if (!o)
			continue;
		rctx_tw_kill_all(&o->tw);
		close(o->tw.efd);
		free(o);
		rctx_loop_orphans[i] = NULL;
	}
}

/* Unpublish loop from the set (under the service lock). */
static void
rctx_loop_unpublish(struct rctx_loop *loop)
{
	struct rctx_loopset *set = rctx_loop_set;
	/* Relaxed: the set changes only under the lock we hold (I3). */
	unsigned i,
	    n = set ? atomic_load_explicit(&set->n, memory_order_relaxed) : 0;

	for (i = 0; i < n; i++) {
		/* Relaxed: under the lock. */
		if (atomic_load_explicit(&set->loop[i], memory_order_relaxed) ==
		    loop) {
			struct rctx_loop *last = atomic_load_explicit(
			    &set->loop[n - 1], memory_order_relaxed);

			/*
			 * Release stores: loop.A, pair with the acquire of n
			 * in rctx_loop_pick_rcu and carry the moved loop's
			 * initialisation (we saw it under the lock). A
			 * picker that still picks this loop is inside a
			 * read-side section the grace period in
			 * rctx_loop_destroy waits for (loop.B).
			 */
			atomic_store_explicit(&set->loop[i], last,
					      memory_order_release);
			atomic_store_explicit(&set->n, n - 1,
					      memory_order_release);
			break;
		}
	}
	/* Relaxed: a hint for arm's fast path (I3). */
	atomic_fetch_sub_explicit(&rctx_loop_n, 1, memory_order_relaxed);
	if (n == 1) {
		/* Release (rcu_assign_pointer): loop.A; NULL publishes
		 * nothing, pickers then see no set. */
		rcu_assign_pointer(rctx_loop_set, NULL);
		/* No new arm can choose this loop once readers drain. */
		rctx_loop_sync();
		free(set);
	} else {
		rctx_loop_sync();
	}
}

/* Take loop's timers off its wheel and queue: a list of those to move. */
static struct rctx_timer *
rctx_loop_unhook(struct rctx_loop *loop)
{
	struct rctx_wheel_timer *wt, *wnext;
	struct rctx_timer *t, *next, *move = NULL;

	wt = rctx_tw_unfile_all(&loop->tw);
	for (; wt; wt = wnext) {
		uint32_t f, nf;

		wnext = wt->next;
		t = rctx_container_of(wt, struct rctx_timer, wt);
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
			rctx_tw_call_dead(t);
		}
	}
	/* In-flight re-queues by release land before we drain (loop.B). */
	rctx_loop_sync();
	/* seq_cst: as in rctx_tw_drain (twheel.A). */
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
			rctx_tw_call_dead(t);
		}
	}
	return move;
}

void
rctx_loop_destroy(struct rctx_loop *loop)
{
	struct rctx_timer *move;
	bool parked = false;
	unsigned i;

	if (loop_hooks) /* pending loop after-funcs never run */
		loop_hooks->detach(loop);
	if (rctx_loop_mine == loop)
		rctx_loop_mine = NULL;
	rctx_owner_lock();
	rctx_loop_unpublish(loop);
	move = rctx_loop_unhook(loop);
	rcu_read_lock();
	rctx_loop_rehome(loop, move);
	rctx_rcu_read_unlock();
	for (i = 0; i < RCTX_TIMER_MAX_WHEELS; i++)
		if (rctx_loop_orphans[i] == loop)
			parked = true;
	rctx_owner_unlock();
	if (!parked) {
		/* Releases that read the old home are done (loop.B). */
		rctx_loop_sync();
		close(loop->tw.efd);
		free(loop);
	}
}
