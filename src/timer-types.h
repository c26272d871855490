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
	struct rctx_wheel_timer wt; /* owner thread only */
	struct rctx_timer *qnext;   /* hand-off queue link */
	/* set by its user before arm, or by arm (which leaves an equal
	 * value unwritten: the user may read it meanwhile); read by the
	 * owner */
	rctx_time_t expires;
	struct rctx_twheel *_Atomic home; /* wheel chosen at arm time */
	_Atomic uint32_t flags;		  /* RCTX_TIMER_F_* hand-off state */
	int32_t aux;			  /* the user's (a context's cause) */
};

/* Arm's write of t->expires: none if equal, so that the timer's user
 * may read its own value while another thread arms or files it. */
static inline void
rctx_timer_set_expires(struct rctx_timer *t, rctx_time_t expires)
{
	if (t->expires != expires)
		t->expires = expires;
}

/* A callback on a timer: fire and dead, which the core installs. */
typedef void (*rctx_timer_fn)(struct rctx_timer *t);

#endif /* RCTX_TIMER_TYPES_H */
