/* SPDX-License-Identifier: MIT */
/* The library's owner threads: one wheel per CPU, started on first use. */

/*
 * Library mode: one owned wheel (twheel.c) per CPU, served by a thread
 * started lazily by the first arm routed to that CPU (timer.c). The
 * owner's cycle: read the futex word, publish "awake, looking within a
 * tick", drain the queue and steal the stages, collect what is due at a
 * clock read (twheel.c: the wheel's next slot goes to the near run),
 * fire, plan the next look (twheel.B: the exact earliest deadline when
 * near), sleep on the futex until then (an absolute CLOCK_MONOTONIC
 * timeout, so never early; late by the kernel's timer slack, which each
 * owner sets to RCTX_OWNER_SLACK_NS when it starts, and by however long
 * the woken thread then waits for a CPU).
 *
 * Invariants
 *  I1. Only the owner touches tw->w; it holds tw->lock while it does
 *      (never while calling fire), so fork sees a sound wheel.
 *  I2. rctx_owner_lib[] entries, `running` and the restart state change
 *      only under the service lock; a library wheel is freed only by
 *      shutdown, after its thread was joined (callers are quiescent by
 *      contract), so a producer's pointer to one stays valid.
 *  I3. `unparked` is true while the owner may hold a lock not ours: from
 *      its creation to its first statement, and while firing and
 *      flushing. It is set under tw->lock (or the service lock before
 *      the thread exists), so the fork prepare hook, which holds both,
 *      reads a value that can only go from true to false.
 *
 * Ordering
 *  owner.A A wheel is published in rctx_owner_lib[] (release store) after
 *      its initialisation and `running` is set (release) after the thread
 *      was created; rctx_owner_route loads both with acquire.
 *  owner.B The owner clears `unparked` (release) after fire's callbacks
 *      and the cycle hook returned; the fork prepare hook waits for it
 *      with acquire (rctx_fork_park), so the child sees the owner's
 *      locks of others released.
 *  owner.C shutdown sets `stop` (release) then kicks; the owner loads it
 *      (acquire) each cycle, after the futex word, so a kick that follows
 *      the store makes the owner see it.
 *
 * fork() (fork.c calls the hooks here first in prepare, last after): the
 * prepare hook takes the service lock and every library wheel's lock, so
 * the child's copy of each wheel is consistent (no owner was inside a
 * wheel operation), and then waits until each owner is parked: blocked on
 * its wheel's lock or asleep, not starting up and not firing. A firing
 * owner runs the core's cancellation and callbacks, which allocate; a
 * child that inherited an allocator lock held by a thread it does not
 * have could never allocate (seen with ASan's allocator, which has no
 * fork handler of its own in clang 14: the child's restarted owner hung
 * in malloc). The wait is bounded (RCTX_FORK_PARK_WAIT), so a callback
 * that blocks on something the forking thread holds delays fork, never
 * deadlocks it; an owner forking from its own callback is not waited for.
 * In the child the threads are gone: the wheels keep their pending timers,
 * and the child hook restarts every wheel that had a thread, so timers
 * armed before fork fire there even in a child that only polls (if a
 * start fails, the child's first arm or wait tries again).
 *
 * Progress: starting a wheel takes the service lock and creates a thread;
 * the owner's cycle is lock-free towards producers (it holds only its own
 * wheel's lock, which fork alone contends).
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#include "clock.h"
#include "fault.h"
#include "fork.h"
#include "owner.h"
#include "park.h"
#include "stage.h"

static pthread_mutex_t rctx_owner_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t rctx_owner_once_ctl = PTHREAD_ONCE_INIT;
_Atomic unsigned rctx_owner_nwheels_a; /* set once (pthread_once) */
struct rctx_twheel *_Atomic rctx_owner_lib[RCTX_TIMER_MAX_WHEELS];
static unsigned rctx_owner_nrunning; /* under the lock */
static bool rctx_owner_restart_all;  /* child after fork; under the lock */
/* A fork child has wheels to restart (lazily: see rctx_owner_poke). */
static _Atomic bool rctx_owner_fork_pending;
/* The wheel whose owner this thread is (fork from a fire callback). */
static RCTX_TLS struct rctx_twheel *rctx_owner_self;
static _Atomic(void (*)(void)) rctx_owner_cycle_hook;

/* Relaxed: set once under pthread_once, before any wheel exists. */
#define rctx_owner_nwheels                                                     \
	atomic_load_explicit(&rctx_owner_nwheels_a, memory_order_relaxed)

void
rctx_owner_lock(void)
{
	pthread_mutex_lock(&rctx_owner_mutex);
}

void
rctx_owner_unlock(void)
{
	pthread_mutex_unlock(&rctx_owner_mutex);
}

/* Library owner threads refused (rctx_timer_set_threads(false)). */
static _Atomic bool rctx_owner_nothreads;

bool
rctx_owner_threads_off(void)
{
	/* Relaxed: a mode flag; where a thread may start it is read again
	 * under the service lock that writes it (timer.c I3). */
	return atomic_load_explicit(&rctx_owner_nothreads,
				    memory_order_relaxed);
}

void
rctx_owner_set_threads_off_locked(bool off)
{
	/* Relaxed: under the service lock (timer.c I3). */
	atomic_store_explicit(&rctx_owner_nothreads, off, memory_order_relaxed);
}

static void
rctx_owner_once(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);

	if (n < 1)
		n = 1;
	if (n > RCTX_TIMER_MAX_WHEELS)
		n = RCTX_TIMER_MAX_WHEELS;
	/* Release: pairs with the acquire in rctx_owner_route. */
	atomic_store_explicit(&rctx_owner_nwheels_a, (unsigned)n,
			      memory_order_release);
}

unsigned
rctx_owner_init(void)
{
	pthread_once(&rctx_owner_once_ctl, rctx_owner_once);
	return rctx_owner_nwheels;
}

void
rctx_owner_set_cycle_hook(void (*fn)(void))
{
	/* Release: publishes the hook's code/data; pairs with the acquire
	 * load in rctx_owner_thread. */
	atomic_store_explicit(&rctx_owner_cycle_hook, fn, memory_order_release);
}

static void *
rctx_owner_thread(void *arg)
{
	struct rctx_twheel *tw = arg;
	sigset_t all;

	rctx_owner_self = tw;
	/* Best effort: on failure the owner is only as late as before. */
	(void)prctl(PR_SET_TIMERSLACK, RCTX_OWNER_SLACK_NS, 0, 0, 0);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* Release: owner.B, pairs with the acquire load in rctx_fork_park;
	 * past the thread library's (and a sanitizer's) start-up. */
	atomic_store_explicit(&tw->unparked, false, memory_order_release);
	for (;;) {
		struct rctx_wheel_timer *due;
		rctx_time_t now, next, until, tick;
		struct timespec ts;
		uint32_t seq;
		size_t took;

		/* Acquire: twheel.C, pairs with the release increment in
		 * rctx_tw_kick. */
		seq = atomic_load_explicit(&tw->futex, memory_order_acquire);
		/* Acquire: owner.C, pairs with the release store in
		 * rctx_owner_shutdown. */
		if (atomic_load_explicit(&tw->stop, memory_order_acquire))
			break;
		rctx_tw_count_run();
		pthread_mutex_lock(&tw->lock);
		tick = rctx_tw_tick(tw);
		now = rctx_clock_now();
		/*
		 * seq_cst: while awake the owner promises to look at the queue
		 * within a tick; producers with an earlier need wake it
		 * (twheel.B: pairs with the load in rctx_tw_wake_if).
		 */
		atomic_store_explicit(&tw->planned,
				      (now + tick) | RCTX_PLANNED_POLL,
				      memory_order_seq_cst);
		took = rctx_tw_drain(tw);
		due = rctx_tw_collect(tw, now);
		if (due || took)
			/* Relaxed: under tw->lock, which the fork prepare
			 * hook takes before it reads this (I3). */
			atomic_store_explicit(&tw->unparked, true,
					      memory_order_relaxed);
		pthread_mutex_unlock(&tw->lock);

		if (due || took) {
			/* Acquire: pairs with the release store in
			 * rctx_owner_set_cycle_hook. */
			void (*hook)(void) = atomic_load_explicit(
			    &rctx_owner_cycle_hook, memory_order_acquire);

			rctx_tw_fire(due);
			if (hook)
				hook();
			/* Release: owner.B, pairs with the acquire load in
			 * rctx_fork_park; fire's callbacks and the hook have
			 * returned. */
			atomic_store_explicit(&tw->unparked, false,
					      memory_order_release);
		}

		pthread_mutex_lock(&tw->lock);
		next = rctx_tw_next(tw, now);
		pthread_mutex_unlock(&tw->lock);
		until = rctx_tw_plan(tw, next, now + tick, took != 0);
		if (until <= rctx_clock_now())
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

/* A library wheel: an owned wheel whose owner also steals the stages. */
static struct rctx_twheel *
rctx_owner_new_wheel(void)
{
	struct rctx_twheel *tw = rctx_tw_new(false, sizeof(*tw));

	if (tw) {
		tw->steal = rctx_stage_steal;
		tw->busy = rctx_stage_busy;
	}
	return tw;
}

/* Start tw's owner thread. Caller holds the service lock. */
static int
rctx_owner_start(struct rctx_twheel *tw)
{
	int err;

	/* Relaxed: written under the service lock, which we hold. */
	if (atomic_load_explicit(&tw->running, memory_order_relaxed))
		return 0;
	if (rctx_fault_hit(RCTX_FAULT_THREAD))
		return -EAGAIN;
	err = rctx_fork_register();
	if (err)
		return err;
	/* Relaxed: the thread is not running; pthread_create orders it. */
	atomic_store_explicit(&tw->stop, false, memory_order_relaxed);
	/* Relaxed: under the service lock, which fork's prepare takes (I3). */
	atomic_store_explicit(&tw->unparked, true, memory_order_relaxed);
	/* Default stack: fire runs the core's cancellation, maybe deep. */
	err = pthread_create(&tw->thread, NULL, rctx_owner_thread, tw);
	if (err) {
		/* Relaxed: no thread; under the service lock. */
		atomic_store_explicit(&tw->unparked, false,
				      memory_order_relaxed);
		return -EAGAIN;
	}
	tw->had_thread = true;
	rctx_owner_nrunning++;
	/* Release: owner.A, pairs with the acquire in rctx_owner_route. */
	atomic_store_explicit(&tw->running, true, memory_order_release);
	return 0;
}

/* Restart every wheel that had a thread before fork (I2: under lock). */
static int
rctx_owner_restart_locked(void)
{
	unsigned i;
	int err = 0;

	for (i = 0; i < rctx_owner_nwheels && !err; i++) {
		/* Relaxed: under the lock that writes it. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_owner_lib[i], memory_order_relaxed);

		if (tw && tw->had_thread)
			err = rctx_owner_start(tw);
	}
	if (!err) {
		rctx_owner_restart_all = false;
		/* relaxed: under the lock; rctx_owner_poke re-checks under
		 * it */
		atomic_store_explicit(&rctx_owner_fork_pending, false,
				      memory_order_relaxed);
	}
	return err;
}

int
rctx_owner_start_locked(unsigned cpu, struct rctx_twheel **twp)
{
	struct rctx_twheel *tw;
	int err;

	if (rctx_owner_restart_all && (err = rctx_owner_restart_locked()))
		return err;
	cpu %= rctx_owner_nwheels;
	/* Relaxed: under the lock that writes it. */
	tw = atomic_load_explicit(&rctx_owner_lib[cpu], memory_order_relaxed);
	if (!tw) {
		tw = rctx_owner_new_wheel();
		if (!tw)
			return -ENOMEM;
		/* Release: owner.A, pairs with the acquire in
		 * rctx_owner_route. */
		atomic_store_explicit(&rctx_owner_lib[cpu], tw,
				      memory_order_release);
	}
	err = rctx_owner_start(tw);
	if (!err)
		*twp = tw;
	return err;
}

struct rctx_twheel *
rctx_owner_any_locked(void)
{
	unsigned n = rctx_owner_nwheels, cpu = rctx_owner_cpu() % n, i;
	struct rctx_twheel *to = NULL;

	for (i = 0; i < n && !to; i++)
		/* Relaxed: under the lock that writes it. */
		to = atomic_load_explicit(&rctx_owner_lib[(cpu + i) % n],
					  memory_order_relaxed);
	if (!to) {
		to = rctx_owner_new_wheel();
		if (to)
			/* Release: owner.A, pairs with the acquire in
			 * rctx_owner_route. */
			atomic_store_explicit(&rctx_owner_lib[cpu], to,
					      memory_order_release);
	}
	if (to && rctx_owner_start(to))
		to = NULL;
	return to;
}

unsigned
rctx_owner_nrunning_locked(void)
{
	return rctx_owner_nrunning;
}

void
rctx_owner_poke(void)
{
	/* relaxed: a hint; the work is done under the service lock */
	if (RCTX_LIKELY(!atomic_load_explicit(&rctx_owner_fork_pending,
					      memory_order_relaxed)))
		return;
	rctx_owner_lock();
	if (rctx_owner_restart_all)
		(void)rctx_owner_restart_locked();
	else
		/* relaxed: under the lock */
		atomic_store_explicit(&rctx_owner_fork_pending, false,
				      memory_order_relaxed);
	rctx_owner_unlock();
}

void
rctx_owner_shutdown(void)
{
	struct rctx_twheel *tws[RCTX_TIMER_MAX_WHEELS];
	unsigned i, n = rctx_owner_init();

	rctx_owner_lock();
	for (i = 0; i < n; i++) {
		/* Relaxed: under the lock that writes it. */
		tws[i] = atomic_load_explicit(&rctx_owner_lib[i],
					      memory_order_relaxed);
		atomic_store_explicit(&rctx_owner_lib[i], NULL,
				      memory_order_relaxed);
		/* Relaxed: under the lock that writes it. */
		if (tws[i] && atomic_load_explicit(&tws[i]->running,
						   memory_order_relaxed)) {
			/* Release: owner.C, pairs with the acquire in
			 * rctx_owner_thread. */
			atomic_store_explicit(&tws[i]->stop, true,
					      memory_order_release);
			rctx_tw_kick(tws[i]);
		}
	}
	rctx_owner_nrunning = 0;
	rctx_owner_restart_all = false;
	rctx_owner_unlock();
	for (i = 0; i < n; i++) {
		/* Relaxed: only we and the joined thread ever wrote it. */
		if (tws[i] && atomic_load_explicit(&tws[i]->running,
						   memory_order_relaxed))
			pthread_join(tws[i]->thread, NULL);
	}
	rctx_owner_lock();
	/* Staged timers join their wheel's queue, which kill_all empties. */
	rctx_stage_shutdown();
	for (i = 0; i < n; i++) {
		if (!tws[i])
			continue;
		/* Released timers die; live contexts' deadlines wait for
		 * the restart (park.c). */
		rctx_park_wheel(tws[i]);
		pthread_mutex_destroy(&tws[i]->lock);
		free(tws[i]);
	}
	rctx_owner_unlock();
}

/* ---- fork hooks (fork.c runs them; see the opening comment) ------------ */

/* Wait for tw's owner to park (not if we are it: fork from a callback). */
static void
rctx_owner_park(struct rctx_twheel *tw, rctx_time_t give_up)
{
	if (tw != rctx_owner_self)
		rctx_fork_park(&tw->unparked, give_up);
}

static void
rctx_owner_before_fork(void)
{
	rctx_time_t give_up = rctx_clock_now() + RCTX_FORK_PARK_WAIT;
	unsigned i;

	rctx_owner_lock();
	for (i = 0; i < rctx_owner_nwheels; i++) {
		/* Relaxed: under the lock that writes it. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_owner_lib[i], memory_order_relaxed);

		if (!tw)
			continue;
		pthread_mutex_lock(&tw->lock);
		/* Relaxed: under the service lock, which writes it. */
		if (atomic_load_explicit(&tw->running, memory_order_relaxed))
			rctx_owner_park(tw, give_up);
	}
}

static void
rctx_owner_after_fork_parent(void)
{
	unsigned i;

	for (i = 0; i < rctx_owner_nwheels; i++) {
		/* Relaxed: under the lock that writes it. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_owner_lib[i], memory_order_relaxed);

		if (tw)
			pthread_mutex_unlock(&tw->lock);
	}
	rctx_owner_unlock();
}

static void
rctx_owner_after_fork_child(void)
{
	unsigned i;

	for (i = 0; i < rctx_owner_nwheels; i++) {
		/* Relaxed: the child is single-threaded. */
		struct rctx_twheel *tw = atomic_load_explicit(
		    &rctx_owner_lib[i], memory_order_relaxed);

		if (!tw)
			continue;
		pthread_mutex_init(&tw->lock, NULL);
		/* Relaxed: the child is single-threaded. */
		if (atomic_load_explicit(&tw->running, memory_order_relaxed))
			rctx_owner_restart_all = true;
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
	rctx_owner_nrunning = 0;
	pthread_mutex_init(&rctx_owner_mutex, NULL);
	/*
	 * Restart the owners here, so that a deadline armed before fork
	 * fires in a child that only polls (rctx_done, or poll(2) on an fd
	 * of its own), which makes no call that could restart them lazily.
	 * Not POSIX async-signal-safe, but neither is the rest of these
	 * handlers (they take and reset locks, and the child allocates):
	 * glibc resets its thread list, stack cache, loader and malloc
	 * locks before it runs child handlers, and our prepare hooks parked
	 * every thread of ours outside any lock; fork.c runs this hook after
	 * the allocator's and liburcu-bp's, so the new owners find them
	 * usable. Only wheels that had a thread are restarted (a process
	 * that never used the timer service pays nothing). If a start fails,
	 * the lazy path stays armed: the child's first arm or wait
	 * (rctx_owner_poke) tries again. A fork from an owner's own callback
	 * is left to that lazy path (its thread, the child's only one, is
	 * still inside the owner's loop), and so is every child under
	 * ThreadSanitizer, which kills a child of a multi-threaded process
	 * that starts a thread (die_after_fork): a child that only forks to
	 * observe, or to exec, must survive it.
	 */
	if (rctx_owner_restart_all) {
		/* relaxed: the child is single-threaded here */
		atomic_store_explicit(&rctx_owner_fork_pending, true,
				      memory_order_relaxed);
#ifndef RCTX_TSAN
		if (rctx_owner_self == NULL) {
			rctx_owner_lock();
			(void)rctx_owner_restart_locked();
			rctx_owner_unlock();
		}
#endif
	}
	rctx_owner_self = NULL;
}

static const struct rctx_fork_hooks rctx_owner_fork_hooks = {
	.prepare = rctx_owner_before_fork,
	.parent = rctx_owner_after_fork_parent,
	.child = rctx_owner_after_fork_child,
};

/* At load, like fork.c's own handler: a fork may come at any time. */
__attribute__((constructor)) static void
rctx_owner_load(void)
{
	rctx_fork_hooks_set(RCTX_FORK_SLOT_TIMER, &rctx_owner_fork_hooks);
}
