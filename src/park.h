/* SPDX-License-Identifier: MIT */
/* Parked timers: live contexts' deadlines kept across rctx_shutdown. */
#ifndef RCTX_PARK_H
#define RCTX_PARK_H

#include <stdbool.h>

#include "twheel.h"

/*
 * Shutdown, tw's owner joined (under the service lock): kill the timers
 * tw holds that were released, park the others (live contexts' deadlines)
 * until the library restarts. tw may then be freed.
 */
void rctx_park_wheel(struct rctx_twheel *tw);

/* Shutdown, after every wheel was parked: kill parked timers released
 * since an earlier shutdown (under the service lock). */
void rctx_park_sweep(void);

/* True if timers wait for a restart (a hint: relaxed). */
bool rctx_park_pending(void);

/* A wheel was started (under the service lock): it takes them all. */
void rctx_park_adopt_locked(struct rctx_twheel *to);

/* The parking wheel (a loop orphan's timers go there at shutdown). */
struct rctx_twheel *rctx_park_home(void);

#endif /* RCTX_PARK_H */
