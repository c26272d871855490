/* SPDX-License-Identifier: MIT */
/* The near run: timers due within a tick or two, sorted by exact deadline. */
#ifndef RCTX_NEAR_H
#define RCTX_NEAR_H

#include <stdbool.h>
#include <stddef.h>

#include "wheel.h"

/*
 * A pure, single-owner sorted list of wheel nodes (no clock, no lock, no
 * allocation): the owner moves the timers of the wheel's next slot here
 * to sleep until the exact earliest deadline (twheel.c). Those already due
 * when moved wait on a second, unsorted list. A node on either has level
 * RCTX_NEAR_LEVEL and a non-NULL pprev; rctx_wheel_del must not be called
 * on it (rctx_tw_unfile picks the right one).
 */
#define RCTX_NEAR_LEVEL 0xffu

struct rctx_near {
	struct rctx_wheel_timer *head;	/* ascending expires */
	struct rctx_wheel_timer *ready; /* already due when merged: unsorted */
	rctx_time_t ready_min; /* <= every expires in ready (maybe stale) */
	size_t count;	       /* both lists */
};

static inline void
rctx_near_init(struct rctx_near *r)
{
	r->head = NULL;
	r->ready = NULL;
	r->ready_min = INT64_MAX;
	r->count = 0;
}

/* True while t sits in a run. */
static inline bool
rctx_near_has(const struct rctx_wheel_timer *t)
{
	return t->pprev != NULL && t->level == RCTX_NEAR_LEVEL;
}

/* The earliest deadline in r (after a removal from the ready list maybe
 * an earlier time, never a later one), or INT64_MAX when it is empty. */
static inline rctx_time_t
rctx_near_first(const struct rctx_near *r)
{
	rctx_time_t h = r->head ? r->head->expires : INT64_MAX;

	return r->ready && r->ready_min < h ? r->ready_min : h;
}

/*
 * Merge a ->next list of n unfiled nodes (pprev NULL, expires set) into r.
 * Nodes already due at now (expires <= now) go on the ready list unsorted:
 * only those still ahead pay for the sort, so an owner that wakes late
 * (or takes a long-due slot) fires them in O(n). The others:
 * O(m log m + r->count) for m of them.
 */
void rctx_near_merge(struct rctx_near *r, struct rctx_wheel_timer *list,
		     size_t n, rctx_time_t now);

/* Remove t (rctx_near_has(t)). O(1). */
void rctx_near_del(struct rctx_near *r, struct rctx_wheel_timer *t);

/* Unlink and return (a ->next list, pprev NULL) every node with
 * expires <= now: the ready ones in no order, then the run's, earliest
 * first. O(ready + popped). */
struct rctx_wheel_timer *rctx_near_pop(struct rctx_near *r, rctx_time_t now);

/* Unlink and return every node (a ->next list, pprev NULL). */
struct rctx_wheel_timer *rctx_near_drain(struct rctx_near *r);

#endif /* RCTX_NEAR_H */
