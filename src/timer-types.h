/* SPDX-License-Identifier: MIT */
/* The timer object a deadline context embeds (fields owned by timer.c). */
#ifndef RCTX_TIMER_TYPES_H
#define RCTX_TIMER_TYPES_H

#include <stdatomic.h>
#include <stdint.h>

#include "rctx.h"
#include "wheel.h"

struct rctx_twheel; /* an owned wheel (twheel.h) */

/*
 * A one-shot timer embedded in its user's object (a deadline context).
 * Life cycle: init -> arm (at most once) -> [cancel] -> release -> dead_fn.
 * Fields other than `wt` are the service's; `wt` belongs to the owner of
 * the wheel the timer sits in (twheel.c, owner rule).
 */
struct rctx_timer {
	struct rctx_wheel_timer wt;	  /* owner thread only */
	struct rctx_timer *qnext;	  /* hand-off queue link */
	rctx_time_t expires;		  /* set by arm, read by the owner */
	struct rctx_twheel *_Atomic home; /* wheel chosen at arm time */
	_Atomic uint32_t flags;		  /* RCTX_TIMER_F_* hand-off state */
};

/* A callback on a timer: fire and dead, which the core installs. */
typedef void (*rctx_timer_fn)(struct rctx_timer *t);

#endif /* RCTX_TIMER_TYPES_H */
