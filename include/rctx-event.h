/* SPDX-License-Identifier: MIT */
/* rctx-event: serve an rctx loop from a libevent event_base (librctx-event). */
#ifndef RCTX_EVENT_H
#define RCTX_EVENT_H

#include <event2/event.h>

#include <rctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A driver: one rctx loop served by one event_base. */
typedef struct rctx_event rctx_event_t;

/*
 * rctx_event_start - make an rctx loop owned by the calling thread and
 *   serve it from base: the loop's fd as a persistent read event, its next
 *   expiry as a timer event. libevent 2.1 has no hook before it blocks, so
 *   a deadline armed by a callback on this thread is planned only by the
 *   next rctx_event_update, or between iterations of rctx_event_dispatch.
 *   The fd event is a normal one: event_base_dispatch does not return
 *   while the driver runs (end it with event_base_loopexit/loopbreak).
 * Returns: the driver;
 *          NULL, errno EINVAL: base is NULL;
 *          NULL, errno EBUSY: this thread already owns an rctx loop (or,
 *          in rctx 0.1, library timer threads already run);
 *          NULL, errno ENOMEM/EMFILE; EIO if libevent refused the event.
 * Call on the thread that runs the base's loop.
 */
RCTX_API rctx_event_t *rctx_event_start(struct event_base *base);

/*
 * rctx_event_loop - the driver's rctx loop (for rctx_loop_after_func).
 * Returns: the loop; NULL for a NULL driver. Any thread.
 */
RCTX_API rctx_loop_t *rctx_event_loop(const rctx_event_t *drv);

/*
 * rctx_event_update - re-plan the timer after this thread armed deadlines
 *   from a callback (not needed under rctx_event_dispatch).
 * Returns: 0; -EINVAL for a NULL driver; -EPERM on another thread.
 * The driver's thread.
 */
RCTX_API int rctx_event_update(rctx_event_t *drv);

/*
 * rctx_event_dispatch - event_base_dispatch with the timer re-planned
 *   before every wait: it runs event_base_loop(base, EVLOOP_ONCE) and
 *   rctx_event_update in turn.
 * Returns: 0 after event_base_loopexit, event_base_loopbreak or
 *            rctx_event_stop (from a callback; the driver is freed then);
 *          1 when the base has no event left;
 *          -EINVAL for a NULL driver; -EPERM on another thread;
 *          -EBUSY when called from inside itself;
 *          a negative errno (-EIO if none) when libevent failed.
 * The driver's thread.
 */
RCTX_API int rctx_event_dispatch(rctx_event_t *drv);

/*
 * rctx_event_stop - delete and free the events, free the rctx loop (its
 *   pending deadlines move to other loops or to library threads) and the
 *   driver (from a callback under rctx_event_dispatch: when that returns).
 * Returns: 0;
 *          -EINVAL for a NULL driver;
 *          -EPERM when called on another thread than rctx_event_start's.
 * The thread that called rctx_event_start, outside rctx_loop_run.
 */
RCTX_API int rctx_event_stop(rctx_event_t *drv);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_EVENT_H */
