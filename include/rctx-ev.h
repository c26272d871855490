/* SPDX-License-Identifier: MIT */
/* rctx-ev: serve an rctx loop from a libev struct ev_loop (librctx-ev). */
#ifndef RCTX_EV_H
#define RCTX_EV_H

#include <ev.h>

#include <rctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A driver: one rctx loop served by one libev loop. */
typedef struct rctx_ev rctx_ev_t;

/*
 * rctx_ev_start - make an rctx loop owned by the calling thread and serve
 *   it from ev: the loop's fd as an ev_io, its next expiry as an ev_timer,
 *   both re-planned by an ev_prepare before every poll, so deadlines armed
 *   by callbacks on this thread are seen at once. The watchers are
 *   unreferenced (ev_unref): they never keep ev_run alive.
 * Returns: the driver;
 *          NULL, errno EINVAL: ev is NULL;
 *          NULL, errno EBUSY: this thread already owns an rctx loop (or,
 *          in rctx 0.1, library timer threads already run);
 *          NULL, errno ENOMEM/EMFILE.
 * Call on the thread that runs ev_run(ev, ...).
 */
RCTX_API rctx_ev_t *rctx_ev_start(struct ev_loop *ev);

/*
 * rctx_ev_loop - the driver's rctx loop (for rctx_loop_after_func).
 * Returns: the loop; NULL for a NULL driver. Any thread.
 */
RCTX_API rctx_loop_t *rctx_ev_loop(const rctx_ev_t *drv);

/*
 * rctx_ev_stop - stop the watchers, free the rctx loop (its pending
 *   deadlines move to other loops or to library threads) and the driver.
 * Returns: 0;
 *          -EINVAL for a NULL driver;
 *          -EPERM when called on another thread than rctx_ev_start's.
 * The thread that called rctx_ev_start, outside rctx_loop_run.
 */
RCTX_API int rctx_ev_stop(rctx_ev_t *drv);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_EV_H */
