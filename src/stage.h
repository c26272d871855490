/* SPDX-License-Identifier: MIT */
/* Stages: timers parked on their arming thread until its wheel steals them. */
#ifndef RCTX_STAGE_H
#define RCTX_STAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "twheel.h"

/* A timer due at least this many ticks after now may be staged. */
#define RCTX_STAGE_MIN_TICKS 4
/* The arming thread flushes its stage itself every this many arms. */
#define RCTX_STAGE_FLUSH 64

struct rctx_stage;

/*
 * This thread's stage: its existing one (bound to whichever wheel it was
 * made for), else a new one bound to tw; NULL only when out of memory
 * (hand off directly).
 */
struct rctx_stage *rctx_stage_self(struct rctx_twheel *tw);

/* Stage t (already initialised, not armed) to fire at expires. */
void rctx_stage_push(struct rctx_stage *st, struct rctx_timer *t,
		     rctx_time_t expires);

/* Owner of tw: take every stage it serves; returns how many timers. */
size_t rctx_stage_steal(struct rctx_twheel *tw);

/* Owner of tw: true if a stage it serves holds timers (twheel.B). */
bool rctx_stage_busy(struct rctx_twheel *tw);

/*
 * Shutdown, owners joined: move every staged timer to its wheel's queue
 * and free the records (threads still pointing at theirs see that).
 */
void rctx_stage_shutdown(void);

#endif /* RCTX_STAGE_H */
