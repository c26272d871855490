/* SPDX-License-Identifier: MIT */
/* Timer service: arm, cancel and release one-shot timers (the routing). */
#ifndef RCTX_TIMER_H
#define RCTX_TIMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rctx.h"
#include "timer-types.h"

/*
 * Callbacks the core installs once (rctx_timer_setup). fire runs on the
 * owner thread of the wheel; dead runs on the owner thread or inside
 * rctx_timer_release (rctx_timer_fn: timer-types.h).
 */
void rctx_timer_setup(rctx_timer_fn fire, rctx_timer_fn dead);

/*
 * A hook the core installs too: a library owner thread calls it after each
 * cycle in which it fired or killed timers (the core gives back what those
 * callbacks freed: a parked owner holds no allocator cache).
 */
void rctx_timer_set_cycle_hook(void (*fn)(void));

void rctx_timer_init(struct rctx_timer *t);

/*
 * rctx_timer_arm - hand t to the wheel of the calling thread's CPU (or its
 * loop) to fire at `expires`.
 * Returns: 0; -EAGAIN/-ENOMEM if the service thread could not be started
 *          (t is then not armed and may be released).
 * Any thread. No lock and no system call in steady state; wakes the owner
 * (one futex or eventfd write) only when expires is earlier than the
 * owner's planned wake-up.
 */
int rctx_timer_arm(struct rctx_timer *t, rctx_time_t expires);

/*
 * rctx_timer_arm_at - the same, given the caller's reading of rctx_now().
 * A timer due at least a few ticks after now is staged on the calling
 * thread (no shared write; see timer.c), so one released soon after is
 * freed without involving the owner. now = INT64_MAX: never stage.
 */
int rctx_timer_arm_at(struct rctx_timer *t, rctx_time_t expires,
		      rctx_time_t now);

/*
 * rctx_timer_cancel - after this returns, fire(t) will not be started
 * (a fire already running may finish). Lazy: no lock, no system call.
 */
void rctx_timer_cancel(struct rctx_timer *t);

/*
 * rctx_timer_release - the user is done with t. dead(t) is then called
 * exactly once, when the service holds no pointer to t and no fire(t) is
 * running: at once inside this call if t is in no service structure,
 * otherwise by the owner within about a tick. Any thread.
 */
void rctx_timer_release(struct rctx_timer *t);

/*
 * In a forked child, restart the wheels that had threads (cheap no-op
 * otherwise). rctx_wait calls it before sleeping; arming does it too.
 */
void rctx_timer_poke(void);

/*
 * rctx_timer_set_threads - allow (the default) or refuse library owner
 * threads. Refused: arms from threads owning no loop go to the loops
 * (-EAGAIN when there is none) and a freed loop's timers go to the other
 * loops or wait for the next one. Returns 0; -EBUSY when refusing while
 * library threads run. Any thread; the mode survives rctx_shutdown.
 */
int rctx_timer_set_threads(bool enable);

/* Stop every service thread and free every wheel (rctx_shutdown). */
void rctx_timer_shutdown(void);

/* Tick used by new wheels: 2^shift ns (tests may lower it before use). */
void rctx_timer_set_tick_shift(unsigned shift);

/* Statistics (tests, benchmarks): producer wake-up calls, owner cycles. */
uint64_t rctx_timer_wakeups(void);
uint64_t rctx_timer_owner_runs(void);

#endif /* RCTX_TIMER_H */
