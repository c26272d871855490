/* SPDX-License-Identifier: MIT */
/* Hierarchical timing wheel: a pure, single-owner data structure. */
#ifndef RCTX_WHEEL_H
#define RCTX_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rctx.h"

/*
 * The wheel never reads a clock and never starts a thread: the owner passes
 * `now` in. It is not thread-safe: exactly one thread (the owner) calls these
 * functions for a given wheel. 64 slots per level with a 64-bit occupancy
 * bitmap per level; enough levels to cover every int64 nanosecond deadline
 * (deadlines beyond the top level are clamped into it and re-filed as time
 * advances, so they still fire on time, never early). In precise mode each
 * level below the top has a second bank of 64 slots for its next turn,
 * which advances fill ahead of time (the pre-cascade, wheel.c).
 */
#define RCTX_WHEEL_SLOT_BITS	      6
#define RCTX_WHEEL_SLOTS	      (1u << RCTX_WHEEL_SLOT_BITS)
#define RCTX_WHEEL_LEVELS	      11
#define RCTX_WHEEL_TICK_SHIFT_DEFAULT 20 /* 2^20 ns ~ 1.05 ms */

/* Intrusive timer node. Owner-only fields; embed it in your own object. */
struct rctx_wheel_timer {
	struct rctx_wheel_timer *next;	 /* slot list, or expired list */
	struct rctx_wheel_timer **pprev; /* NULL when not in the wheel */
	rctx_time_t expires;		 /* absolute deadline, ns */
	uint8_t level;			 /* where it is filed (owner only) */
	uint8_t slot;
	uint8_t bank; /* which of the level's two banks (wheel.c (d)) */
};

/*
 * A slot's timers are spread over a few lists ("lanes", chosen by a hash
 * of the node's address) so that walking a due slot keeps several cache
 * misses in flight instead of chasing one chain.
 */
#define RCTX_WHEEL_LANE_BITS 2
#define RCTX_WHEEL_LANES     (1u << RCTX_WHEEL_LANE_BITS)

struct rctx_wheel_slot {
	struct rctx_wheel_timer *head[RCTX_WHEEL_LANES];
};

/*
 * Floor of the pre-cascade's work per level and tick, in timers (a wheel's
 * `chunk` starts at this; tests lower it to see partial pre-cascades).
 */
#define RCTX_WHEEL_CHUNK 256u

struct rctx_wheel {
	rctx_time_t now;     /* last time passed to add/advance (ns) */
	uint64_t curtick;    /* now >> tick_shift, processed up to here */
	unsigned tick_shift; /* log2 of the tick in ns */
	bool precise;	     /* re-file into finer levels before firing */
	size_t count;	     /* timers in the wheel */
	size_t chunk;	     /* pre-cascade floor, RCTX_WHEEL_CHUNK */
	uint8_t cur[RCTX_WHEEL_LEVELS]; /* the bank that is level l now */
	/* Tick at which level l's next turn was last pre-cascaded. */
	uint64_t pre_tick[RCTX_WHEEL_LEVELS];
	/* Occupancy bitmap per level and bank. */
	uint64_t pending[RCTX_WHEEL_LEVELS][2];
	struct rctx_wheel_slot slot[RCTX_WHEEL_LEVELS][2][RCTX_WHEEL_SLOTS];
	/* Timers in each slot's lanes, beside the slots rather than in them:
	 * a 32-byte slot never straddles a cache line (a 40-byte one did,
	 * and add+del cost 2-3 ns more). */
	size_t n[RCTX_WHEEL_LEVELS][2][RCTX_WHEEL_SLOTS];
};

/* Set up an empty wheel whose clock starts at now. precise: see below. */
void rctx_wheel_init(struct rctx_wheel *w, rctx_time_t now, unsigned tick_shift,
		     bool precise);

/* Initialise a node (not in any wheel). */
static inline void
rctx_wheel_timer_init(struct rctx_wheel_timer *t)
{
	t->next = NULL;
	t->pprev = NULL;
	t->expires = 0;
	t->level = 0;
	t->slot = 0;
	t->bank = 0;
}

/* True while t is filed in a wheel. */
static inline bool
rctx_wheel_timer_pending(const struct rctx_wheel_timer *t)
{
	return t->pprev != NULL;
}

/*
 * File t to expire at `expires` (absolute ns). O(1). t must not be pending.
 * A deadline at or before w->now is filed so that the next advance fires it.
 */
void rctx_wheel_add(struct rctx_wheel *w, struct rctx_wheel_timer *t,
		    rctx_time_t expires);

/* Remove a pending t. O(1). No-op if t is not pending. */
void rctx_wheel_del(struct rctx_wheel *w, struct rctx_wheel_timer *t);

/*
 * The earliest time at which an advance may have something to fire, or
 * INT64_MAX when the wheel is empty. Never later than the earliest expiry
 * rounded up to a tick (in non-precise mode: rounded up to its slot, which
 * is when it will fire), and w->now when the next advance has work at once;
 * may be earlier (a slot that will only re-file). Use it as the sleep
 * deadline. O(levels): bitmaps only.
 */
rctx_time_t rctx_wheel_next(const struct rctx_wheel *w);

/*
 * Advance the wheel's clock to now (ignored if now < w->now) and unlink
 * every timer that is due. In precise mode it then moves a bounded share
 * of the timers of each level's next turn into that turn's bank (at most
 * once per level and tick; see wheel.c), so that no turn boundary
 * re-files a whole slot at once. Returns them as a list linked through ->next
 * (NULL-terminated; each has pprev == NULL) and their count in *n. The
 * caller fires them after this returns, so callbacks may add and delete.
 * Never early: every returned timer has expires <= now.
 * Lateness: in precise mode, a timer fires at the first advance with
 * now >= expires rounded up to a tick; otherwise up to one slot of the
 * level it sits in (see docs/design.md for the table).
 */
struct rctx_wheel_timer *rctx_wheel_advance(struct rctx_wheel *w,
					    rctx_time_t now, size_t *n);

/*
 * Remove every pending timer and return them as a ->next list (used to
 * move timers to another wheel). *n gets the count.
 */
struct rctx_wheel_timer *rctx_wheel_drain(struct rctx_wheel *w, size_t *n);

/* --- tick arithmetic, shared by wheel.c and its checker (wheelcheck.c) --- */

#define RCTX_WHEEL_LVL_SHIFT(l) (RCTX_WHEEL_SLOT_BITS * (unsigned)(l))
#define RCTX_WHEEL_SLOT_MASK	((uint64_t)RCTX_WHEEL_SLOTS - 1)

/* Last tick whose start is a representable time. */
static inline uint64_t
rctx_wheel_maxtick(const struct rctx_wheel *w)
{
	return (uint64_t)INT64_MAX >> w->tick_shift;
}

/* Tick at or after expires (expires >= 0), saturated at the last tick. */
static inline uint64_t
rctx_wheel_tick_up(const struct rctx_wheel *w, rctx_time_t expires)
{
	uint64_t mask = ((uint64_t)1 << w->tick_shift) - 1;
	uint64_t e = ((uint64_t)expires + mask) >> w->tick_shift;
	uint64_t max = rctx_wheel_maxtick(w);

	return e > max ? max : e;
}

/* Lane of a node: the top bits of a multiplicative hash of its address. */
static inline unsigned
rctx_wheel_lane(const struct rctx_wheel_timer *t)
{
	uint64_t h = (uint64_t)(uintptr_t)t * UINT64_C(0x9e3779b97f4a7c15);

	return (unsigned)(h >> (64 - RCTX_WHEEL_LANE_BITS));
}

/* Digit of tick x at level l. */
static inline unsigned
rctx_wheel_digit(uint64_t x, unsigned l)
{
	return (unsigned)(x >> RCTX_WHEEL_LVL_SHIFT(l)) & RCTX_WHEEL_SLOT_MASK;
}

/* The number of x's turn of level l: its digits above l (0 at the top). */
static inline uint64_t
rctx_wheel_turn(uint64_t x, unsigned l)
{
	return l + 1 < RCTX_WHEEL_LEVELS ? x >> RCTX_WHEEL_LVL_SHIFT(l + 1) : 0;
}

/* First tick of turn number u of level l (l below the top). */
static inline uint64_t
rctx_wheel_turn_start(uint64_t u, unsigned l)
{
	return u << RCTX_WHEEL_LVL_SHIFT(l + 1);
}

#endif /* RCTX_WHEEL_H */
