/* SPDX-License-Identifier: MIT */
/* libuv driver: an rctx loop served by a uv_loop_t, on rctx's public API. */
/*
 * Design (uv.A-D name the guarantees other comments point at):
 *
 * A driver owns one rctx loop, created on the thread that runs uv_run, and
 * three uv handles on that thread's uv_loop_t:
 *   - poll: rctx_loop_fd, readable when another thread armed a deadline
 *     earlier than the planned wake-up (or queued loop work). Its callback
 *     runs rctx_loop_run.
 *   - timer: one-shot, set to the loop's next expiry. Its callback runs
 *     rctx_loop_run.
 *   - prepare: runs after every batch of callbacks and before uv computes
 *     its poll timeout. It calls rctx_loop_next, which drains the loop's fd
 *     and tells other threads when this thread next looks, and re-arms the
 *     timer when the expiry changed.
 *
 * uv.A Never early. rctx_loop_run(loop, rctx_now()) never fires a deadline
 *      after now, whatever woke the loop; the timer is only a wake-up. An
 *      early wake-up fires nothing and the prepare re-arms the timer.
 * uv.B The timer is not early either, so no wake-up is wasted: uv fires a
 *      timer once its cached millisecond clock (uv_now, read from
 *      CLOCK_MONOTONIC or its coarse twin, never ahead of uv_hrtime)
 *      reaches start + timeout. rctx_uv_plan reads rctx_now() and then
 *      uv_hrtime(), so hr is at least the uv time of that rctx_now();
 *      hr + (next - now), rounded up to a millisecond, is then at or after
 *      next on uv's clock, and the timeout is counted from uv_now, which
 *      may lag but never leads.
 * uv.C Deadlines armed by callbacks on this thread go straight into the
 *      loop's wheel without a wake-up; the prepare handle runs before uv
 *      sleeps, so the next sleep is planned with them.
 * uv.D The handles are unreferenced: a pending deadline does not keep
 *      uv_run alive (the I/O it bounds does). rctx_uv_stop frees the rctx
 *      loop at once and the driver in the last close callback.
 *
 * Single-threaded: every function except rctx_uv_loop runs on the owner
 * thread, as libuv requires of its handles; nothing here is atomic.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "rctx-uv.h"

struct rctx_uv {
	uv_poll_t poll;
	uv_timer_t timer;
	uv_prepare_t prepare;
	uv_loop_t *uv;
	rctx_loop_t *loop;
	rctx_time_t armed; /* the expiry the timer is set for; -1: none */
	pthread_t owner;
	int open; /* handles not yet closed */
};

static void
rctx_uv_run(rctx_uv_t *drv)
{
	rctx_loop_run(drv->loop, rctx_now());
}

static void
rctx_uv_on_fd(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	rctx_uv_run(h->data);
}

static void
rctx_uv_on_timer(uv_timer_t *h)
{
	rctx_uv_t *drv = h->data;

	drv->armed = -1; /* one-shot: it is no longer set */
	rctx_uv_run(drv);
}

/* Before each poll: plan the next wake-up (uv.B, uv.C). */
static void
rctx_uv_on_prepare(uv_prepare_t *h)
{
	rctx_uv_t *drv = h->data;
	rctx_time_t next = rctx_loop_next(drv->loop), now, rem;
	uint64_t hr, due, cur;

	if (next == drv->armed)
		return;
	if (next < 0) {
		uv_timer_stop(&drv->timer);
		drv->armed = -1;
		return;
	}
	now = rctx_now();
	hr = uv_hrtime(); /* after now: hr is not behind now's uv time */
	rem = next > now ? next - now : 0;
	due = (hr + (uint64_t)rem + 999999) / 1000000;
	cur = uv_now(drv->uv);
	uv_timer_start(&drv->timer, rctx_uv_on_timer, due > cur ? due - cur : 0,
		       0);
	drv->armed = next;
}

static void
rctx_uv_on_close(uv_handle_t *h)
{
	rctx_uv_t *drv = h->data;

	if (--drv->open == 0)
		free(drv);
}

static void
rctx_uv_close(rctx_uv_t *drv)
{
	drv->open = 3;
	uv_close((uv_handle_t *)&drv->poll, rctx_uv_on_close);
	uv_close((uv_handle_t *)&drv->timer, rctx_uv_on_close);
	uv_close((uv_handle_t *)&drv->prepare, rctx_uv_on_close);
}

rctx_uv_t *
rctx_uv_start(uv_loop_t *uv)
{
	rctx_uv_t *drv;
	int err;

	if (!uv) {
		errno = EINVAL;
		return NULL;
	}
	drv = calloc(1, sizeof(*drv));
	if (!drv) {
		errno = ENOMEM;
		return NULL;
	}
	drv->uv = uv;
	drv->armed = -1;
	drv->owner = pthread_self();
	drv->loop = rctx_loop_new();
	if (!drv->loop) {
		err = errno;
		free(drv);
		errno = err;
		return NULL;
	}
	/* The one init that can fail comes first: nothing to close yet. */
	err = uv_poll_init(uv, &drv->poll, rctx_loop_fd(drv->loop));
	if (err) {
		rctx_loop_free(drv->loop);
		free(drv);
		errno = -err;
		return NULL;
	}
	uv_timer_init(uv, &drv->timer);
	uv_prepare_init(uv, &drv->prepare);
	drv->poll.data = drv->timer.data = drv->prepare.data = drv;
	err = uv_poll_start(&drv->poll, UV_READABLE, rctx_uv_on_fd);
	if (!err)
		err = uv_prepare_start(&drv->prepare, rctx_uv_on_prepare);
	if (err) {
		rctx_loop_free(drv->loop);
		rctx_uv_close(drv); /* frees drv when uv runs */
		errno = -err;
		return NULL;
	}
	/* uv.D */
	uv_unref((uv_handle_t *)&drv->poll);
	uv_unref((uv_handle_t *)&drv->timer);
	uv_unref((uv_handle_t *)&drv->prepare);
	return drv;
}

rctx_loop_t *
rctx_uv_loop(const rctx_uv_t *drv)
{
	return drv ? drv->loop : NULL;
}

int
rctx_uv_stop(rctx_uv_t *drv)
{
	if (!drv)
		return -EINVAL;
	if (!pthread_equal(drv->owner, pthread_self()))
		return -EPERM;
	rctx_loop_free(drv->loop);
	drv->loop = NULL;
	rctx_uv_close(drv); /* uv.D: stops them; frees drv when uv runs */
	return 0;
}
