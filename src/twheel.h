/* SPDX-License-Identifier: MIT */
/* An owned wheel: a timing wheel, its hand-off queue and its owner's cycle. */
#ifndef RCTX_TWHEEL_H
#define RCTX_TWHEEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "internal.h"
#include "near.h"
#include "timer-types.h"
#include "wheel.h"

/* Hand-off state of a timer (t->flags); twheel.c states the protocol. */
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

struct rctx_twheel;

/* Extra work sources of a library wheel (the stages, stage.c). */
typedef size_t (*rctx_tw_steal_fn)(struct rctx_twheel *tw);
typedef bool (*rctx_tw_busy_fn)(struct rctx_twheel *tw);

struct rctx_twheel {
	struct rctx_wheel w;		    /* owner only */
	struct rctx_near near;		    /* owner only: next to fire */
	_Atomic(struct rctx_timer *) queue; /* hand-off stack head */
	_Atomic rctx_time_t planned;	    /* owner's next look at queue */
	_Atomic uint32_t futex;		    /* library mode wake word */
	int efd;			    /* loop mode eventfd, else -1 */
	bool is_loop;
	rctx_tw_steal_fn steal; /* library mode: take the stages */
	rctx_tw_busy_fn busy;	/* library mode: a stage holds timers */
	/* library mode only (owner.c) */
	pthread_mutex_t lock; /* owner holds it while touching w (fork) */
	pthread_t thread;
	_Atomic bool running;
	_Atomic bool stop;
	bool had_thread; /* ran before fork: restart in the child */
	/* The owner may hold locks not ours (allocator, callbacks' own):
	 * from thread creation to its first statement, and while firing
	 * (owner.c, fork). */
	_Atomic bool unparked;
};

/* A new wheel of `size` bytes (a loop embeds one first); NULL: ENOMEM. */
struct rctx_twheel *rctx_tw_new(bool is_loop, size_t size);

static inline rctx_time_t
rctx_tw_tick(const struct rctx_twheel *tw)
{
	return (rctx_time_t)1 << tw->w.tick_shift;
}

/* Push t on tw's hand-off stack (twheel.A, twheel.B). */
void rctx_tw_push(struct rctx_twheel *tw, struct rctx_timer *t);

/* Wake the owner if it plans to look at its queue later than needby. */
void rctx_tw_wake_if(struct rctx_twheel *tw, rctx_time_t needby);

/* Wake the owner unless it looks at its queue within about a tick. */
void rctx_tw_wake_soon(struct rctx_twheel *tw);

/* Wake the owner unconditionally (shutdown; counted as a wake-up). */
void rctx_tw_kick(struct rctx_twheel *tw);

/* Owner: take the queue (and stages); returns how many timers it took. */
size_t rctx_tw_drain(struct rctx_twheel *tw);

/* Owner: file, drop or kill one timer taken off a queue or a stage. */
void rctx_tw_take(struct rctx_twheel *tw, struct rctx_timer *t);

/* Owner: take t out of the wheel or the near run (no-op if in neither). */
void rctx_tw_unfile(struct rctx_twheel *tw, struct rctx_timer *t);

/* Owner: every timer filed in the wheel or the run, as a ->wt.next list. */
struct rctx_wheel_timer *rctx_tw_unfile_all(struct rctx_twheel *tw);

/* Owner: the due timers at now, earliest first (never one with
 * expires > now). */
struct rctx_wheel_timer *rctx_tw_collect(struct rctx_twheel *tw,
					 rctx_time_t now);

/*
 * Owner: when to look next, given the time now: the exact earliest
 * deadline if it is within about two ticks, else an earlier time at which
 * the next slot must be taken in hand; RCTX_NEVER if nothing is filed.
 */
rctx_time_t rctx_tw_next(struct rctx_twheel *tw, rctx_time_t now);

/* Owner: fire the collected timers; returns how many fire calls ran. */
int rctx_tw_fire(struct rctx_wheel_timer *due);

/*
 * Owner: publish the planned next look at the queue before sleeping and
 * return the time to wake up (twheel.B).
 */
rctx_time_t rctx_tw_plan(struct rctx_twheel *tw, rctx_time_t next,
			 rctx_time_t soon, bool active);

/* Kill every timer tw still holds (its owner is gone: shutdown). */
void rctx_tw_kill_all(struct rctx_twheel *tw);

/* Call the core's dead callback (twheel.I1 makes the caller the one). */
void rctx_tw_call_dead(struct rctx_timer *t);

/* Callbacks (rctx_timer_setup), the tick knob, statistics. */
void rctx_tw_setup(rctx_timer_fn fire, rctx_timer_fn dead);
void rctx_tw_set_tick_shift(unsigned shift);
void rctx_tw_count_run(void);
uint64_t rctx_tw_wakeups(void);
uint64_t rctx_tw_owner_runs(void);
void rctx_tw_stats_reset(void);

#endif /* RCTX_TWHEEL_H */
