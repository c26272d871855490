/* SPDX-License-Identifier: MIT */
/* rctx-uv: serve an rctx loop from a libuv uv_loop_t (librctx-uv). */
#ifndef RCTX_UV_H
#define RCTX_UV_H

#include <uv.h>

#include <rctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A driver: one rctx loop served by one uv_loop_t. */
typedef struct rctx_uv rctx_uv_t;

/*
 * rctx_uv_start - make an rctx loop owned by the calling thread and serve
 *   it from uv: the loop's fd as a uv_poll_t, its next expiry as a
 *   uv_timer_t, both re-planned by a uv_prepare_t before every poll, so
 *   deadlines armed by uv callbacks on this thread are seen at once. The
 *   three handles are unreferenced: they never keep uv_run alive.
 * Returns: the driver;
 *          NULL, errno EINVAL: uv is NULL;
 *          NULL, errno EBUSY: this thread already owns an rctx loop (or,
 *          in rctx 0.1, library timer threads already run);
 *          NULL, errno ENOMEM/EMFILE or the libuv error as an errno.
 * Call on the thread that runs uv_run(uv, ...).
 */
RCTX_API rctx_uv_t *rctx_uv_start(uv_loop_t *uv);

/*
 * rctx_uv_loop - the driver's rctx loop (for rctx_loop_after_func).
 * Returns: the loop; NULL for a NULL driver. Any thread.
 */
RCTX_API rctx_loop_t *rctx_uv_loop(const rctx_uv_t *drv);

/*
 * rctx_uv_stop - free the rctx loop (its pending deadlines move to other
 *   loops or to library threads) and close the handles; the driver's
 *   memory is freed by their close callbacks, so run the uv loop once more
 *   (as before any uv_loop_close).
 * Returns: 0;
 *          -EINVAL for a NULL driver;
 *          -EPERM when called on another thread than rctx_uv_start's.
 * The thread that called rctx_uv_start, outside rctx_loop_run.
 */
RCTX_API int rctx_uv_stop(rctx_uv_t *drv);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_UV_H */
