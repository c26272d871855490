/* SPDX-License-Identifier: MIT */
/* libev driver: an rctx loop served by an ev_loop, on rctx's public API. */
/*
 * Design (ev.A-D name the guarantees other comments point at):
 *
 * A driver owns one rctx loop, created on the thread that runs ev_run, and
 * three watchers on that thread's ev_loop:
 *   - io: rctx_loop_fd, readable when another thread armed a deadline
 *     earlier than the planned wake-up (or queued loop work). Its callback
 *     runs rctx_loop_run.
 *   - timer: one-shot, set to the loop's next expiry. Its callback runs
 *     rctx_loop_run.
 *   - prepare: runs before libev computes how long to block. It calls
 *     rctx_loop_next, which drains the loop's fd and tells other threads
 *     when this thread next looks, and re-arms the timer when the expiry
 *     changed.
 *
 * ev.A Never early. rctx_loop_run(loop, rctx_now()) never fires a deadline
 *      after now, whatever woke the loop; the timer is only a wake-up.
 * ev.B The timer is not early either: libev fires a timer once its
 *      CLOCK_MONOTONIC time, cached at each loop iteration, has passed
 *      at = cached + after. The cache may be stale by the callbacks'
 *      run time, so rctx_ev_plan reads t0 = rctx_now() first, then
 *      refreshes the cache (ev_now_update, only when re-arming) so that
 *      it is not behind t0, and sets after = next - t0: then at is not
 *      before next.
 * ev.C Deadlines armed by callbacks on this thread go straight into the
 *      loop's wheel without a wake-up; the prepare watcher runs before
 *      libev blocks, so the next sleep is planned with them.
 * ev.D Every watcher is unreferenced while active (ev_unref after each
 *      start, ev_ref before each stop and in the one-shot timer's
 *      callback, which libev stopped already), so a pending deadline does
 *      not keep ev_run alive.
 *
 * Single-threaded: every function except rctx_ev_loop runs on the owner
 * thread, as libev requires of its watchers; nothing here is atomic.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "rctx-ev.h"

struct rctx_ev {
	ev_io io;
	ev_timer timer;
	ev_prepare prepare;
	struct ev_loop *ev;
	rctx_loop_t *loop;
	rctx_time_t armed; /* the expiry the timer is set for; -1: none */
	pthread_t owner;
};

static void
rctx_ev_on_fd(struct ev_loop *ev, ev_io *w, int revents)
{
	rctx_ev_t *drv = w->data;

	(void)ev;
	(void)revents;
	rctx_loop_run(drv->loop, rctx_now());
}

static void
rctx_ev_on_timer(struct ev_loop *ev, ev_timer *w, int revents)
{
	rctx_ev_t *drv = w->data;

	(void)revents;
	ev_ref(ev); /* ev.D: libev stopped the one-shot timer */
	drv->armed = -1;
	rctx_loop_run(drv->loop, rctx_now());
}

static void
rctx_ev_timer_stop(rctx_ev_t *drv)
{
	if (drv->armed < 0)
		return;
	ev_ref(drv->ev); /* ev.D */
	ev_timer_stop(drv->ev, &drv->timer);
	drv->armed = -1;
}

/* Before libev blocks: plan the next wake-up (ev.B, ev.C). */
static void
rctx_ev_on_prepare(struct ev_loop *ev, ev_prepare *w, int revents)
{
	rctx_ev_t *drv = w->data;
	rctx_time_t next = rctx_loop_next(drv->loop), t0;

	(void)revents;
	if (next == drv->armed)
		return;
	rctx_ev_timer_stop(drv);
	if (next < 0)
		return;
	t0 = rctx_now();
	ev_now_update(ev); /* ev.B: the cache is not behind t0 */
	ev_timer_set(&drv->timer, next > t0 ? (double)(next - t0) / 1e9 : 0.,
		     0.);
	ev_timer_start(ev, &drv->timer);
	ev_unref(ev);
	drv->armed = next;
}

rctx_ev_t *
rctx_ev_start(struct ev_loop *ev)
{
	rctx_ev_t *drv;
	int err;

	if (!ev) {
		errno = EINVAL;
		return NULL;
	}
	drv = calloc(1, sizeof(*drv));
	if (!drv) {
		errno = ENOMEM;
		return NULL;
	}
	drv->ev = ev;
	drv->armed = -1;
	drv->owner = pthread_self();
	drv->loop = rctx_loop_new();
	if (!drv->loop) {
		err = errno;
		free(drv);
		errno = err;
		return NULL;
	}
	ev_io_init(&drv->io, rctx_ev_on_fd, rctx_loop_fd(drv->loop), EV_READ);
	ev_timer_init(&drv->timer, rctx_ev_on_timer, 0., 0.);
	ev_prepare_init(&drv->prepare, rctx_ev_on_prepare);
	drv->io.data = drv->timer.data = drv->prepare.data = drv;
	ev_io_start(ev, &drv->io);
	ev_unref(ev); /* ev.D */
	ev_prepare_start(ev, &drv->prepare);
	ev_unref(ev);
	return drv;
}

rctx_loop_t *
rctx_ev_loop(const rctx_ev_t *drv)
{
	return drv ? drv->loop : NULL;
}

int
rctx_ev_stop(rctx_ev_t *drv)
{
	if (!drv)
		return -EINVAL;
	if (!pthread_equal(drv->owner, pthread_self()))
		return -EPERM;
	rctx_ev_timer_stop(drv);
	ev_ref(drv->ev); /* ev.D */
	ev_prepare_stop(drv->ev, &drv->prepare);
	ev_ref(drv->ev);
	ev_io_stop(drv->ev, &drv->io);
	rctx_loop_free(drv->loop);
	free(drv);
	return 0;
}
