/* SPDX-License-Identifier: MIT */
/* The library's owner threads: one wheel per CPU, started on first use. */
#ifndef RCTX_OWNER_H
#define RCTX_OWNER_H

#include <sched.h>

#include "twheel.h"

/*
 * Timer slack of an owner thread, ns (prctl PR_SET_TIMERSLACK): the most
 * the kernel may delay its futex timeout to batch it with other timers.
 * The inherited default, 50 us, was half of the p50 lateness budget of
 * 100 us (issue 11); an owner's wake-ups are its whole job.
 */
#define RCTX_OWNER_SLACK_NS 1000L

/* The service lock: guards starting wheels and the loop set (loop.c). */
void rctx_owner_lock(void);
void rctx_owner_unlock(void);

/* True while library owner threads are refused (rctx_timer_set_threads
 * (false)); a hint, re-read under the service lock where a thread may
 * start (timer.c I3). */
bool rctx_owner_threads_off(void);
/* Refuse (true) or allow them; the caller holds the service lock. */
void rctx_owner_set_threads_off_locked(bool off);

/* Size the wheel table (once); returns the number of library wheels. */
unsigned rctx_owner_init(void);

static inline unsigned
rctx_owner_cpu(void)
{
	int c = sched_getcpu();

	return c < 0 ? 0u : (unsigned)c;
}

/* Set once by rctx_owner_init; the table of library wheels. */
extern _Atomic unsigned rctx_owner_nwheels_a;
extern struct rctx_twheel *_Atomic rctx_owner_lib[RCTX_TIMER_MAX_WHEELS];

/* The running library wheel of the calling thread's CPU, or NULL. */
static inline struct rctx_twheel *
rctx_owner_route(void)
{
	/* Acquire: pairs with the release store in rctx_owner_once. */
	unsigned n =
	    atomic_load_explicit(&rctx_owner_nwheels_a, memory_order_acquire);
	unsigned cpu = n ? rctx_owner_cpu() % n : 0;
	/* Acquire: pairs with the release store in rctx_owner_start_locked
	 * (or rctx_owner_any_locked) that published the wheel. */
	struct rctx_twheel *tw =
	    atomic_load_explicit(&rctx_owner_lib[cpu], memory_order_acquire);

	/* Acquire: pairs with the release store in rctx_owner_start. */
	if (tw && atomic_load_explicit(&tw->running, memory_order_acquire))
		return tw;
	return NULL;
}

/*
 * Slow path of arm, under the service lock: create and start the wheel of
 * `cpu` (and, in a fork child, restart every wheel of the parent). 0 and
 * *twp set, or a negative errno.
 */
int rctx_owner_start_locked(unsigned cpu, struct rctx_twheel **twp);

/* A started library wheel to move timers to, or NULL. Under the lock. */
struct rctx_twheel *rctx_owner_any_locked(void);

/* How many library owner threads run. Under the lock. */
unsigned rctx_owner_nrunning_locked(void);

/* In a fork child, restart the wheels that had threads (cheap no-op). */
void rctx_owner_poke(void);

/* Stop and join every owner, then kill every timer they held. */
void rctx_owner_shutdown(void);

/* What an owner calls after a cycle that fired or killed timers. */
void rctx_owner_set_cycle_hook(void (*fn)(void));

#endif /* RCTX_OWNER_H */
