/* SPDX-License-Identifier: MIT */
/* libevent driver: an rctx loop served by an event_base, on the public API. */
/*
 * Design (event.A-D name the guarantees other comments point at):
 *
 * A driver owns one rctx loop, created on the thread that runs the base's
 * loop, and two events on that base:
 *   - fd: persistent read event on rctx_loop_fd, readable when another
 *     thread armed a deadline earlier than the planned wake-up (or queued
 *     loop work). Its callback runs rctx_loop_run and re-plans.
 *   - timer: one-shot, set to the loop's next expiry. Its callback runs
 *     rctx_loop_run and re-plans.
 * Re-planning (rctx_event_plan) calls rctx_loop_next, which drains the
 * loop's fd and tells other threads when this thread next looks, and
 * re-arms the timer when the expiry changed.
 *
 * event.A Never early. rctx_loop_run(loop, rctx_now()) never fires a
 *         deadline after now, whatever woke the loop; the timer is only a
 *         wake-up.
 * event.B The timer may wake a little early, harmlessly: libevent counts
 *         timeouts from its cached monotonic time, which may be the coarse
 *         clock (up to a jiffy behind CLOCK_MONOTONIC). rctx_event_plan
 *         refreshes the cache first (event_base_update_cache_time) and
 *         rounds the timeout up to a microsecond, so the wake-up is early
 *         by at most the coarse clock's lag; such a wake-up fires nothing
 *         and re-arms (event.A).
 * event.C libevent 2.1 has no prepare hook. A deadline armed by a callback
 *         on this thread goes into the loop's wheel without a wake-up, so
 *         it is planned by rctx_event_update, or by rctx_event_dispatch,
 *         which re-plans between EVLOOP_ONCE iterations (before every
 *         wait). Deadlines armed on other threads wake the fd event.
 * event.D The fd event is persistent and counts as a pending event: the
 *         base's loop does not exit on its own while the driver runs.
 *
 * Single-threaded: every function except rctx_event_loop runs on the owner
 * thread; nothing here is atomic.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "rctx-event.h"

struct rctx_event {
	struct event_base *base;
	struct event *fd;
	struct event *timer;
	rctx_loop_t *loop;
	rctx_time_t armed; /* the expiry the timer is set for; -1: none */
	pthread_t owner;
	bool dispatching; /* inside rctx_event_dispatch */
	bool stopped;	  /* rctx_event_stop ran there: dispatch frees drv */
};

static void
rctx_event_plan(rctx_event_t *drv)
{
	rctx_time_t next = rctx_loop_next(drv->loop), now, rem;
	struct timeval tv;

	if (next == drv->armed)
		return;
	if (next < 0) {
		event_del(drv->timer);
		drv->armed = -1;
		return;
	}
	event_base_update_cache_time(drv->base); /* event.B */
	now = rctx_now();
	rem = next > now ? (next - now + RCTX_USEC - 1) / RCTX_USEC : 0;
	tv.tv_sec = (time_t)(rem / 1000000);
	tv.tv_usec = (suseconds_t)(rem % 1000000);
	if (event_add(drv->timer, &tv) == 0)
		drv->armed = next;
	else
		drv->armed = -1; /* retried at the next plan */
}

static void
rctx_event_on_fd(evutil_socket_t fd, short what, void *arg)
{
	rctx_event_t *drv = arg;

	(void)fd;
	(void)what;
	rctx_loop_run(drv->loop, rctx_now());
	rctx_event_plan(drv);
}

static void
rctx_event_on_timer(evutil_socket_t fd, short what, void *arg)
{
	rctx_event_t *drv = arg;

	(void)fd;
	(void)what;
	drv->armed = -1; /* one-shot: it is no longer pending */
	rctx_loop_run(drv->loop, rctx_now());
	rctx_event_plan(drv);
}

rctx_event_t *
rctx_event_start(struct event_base *base)
{
	rctx_event_t *drv;
	int err = ENOMEM;

	if (!base) {
		errno = EINVAL;
		return NULL;
	}
	drv = calloc(1, sizeof(*drv));
	if (!drv) {
		errno = ENOMEM;
		return NULL;
	}
	drv->base = base;
	drv->armed = -1;
	drv->owner = pthread_self();
	drv->loop = rctx_loop_new();
	if (!drv->loop) {
		err = errno;
		free(drv);
		errno = err;
		return NULL;
	}
	drv->fd = event_new(base, rctx_loop_fd(drv->loop), EV_READ | EV_PERSIST,
			    rctx_event_on_fd, drv);
	drv->timer = evtimer_new(base, rctx_event_on_timer, drv);
	if (drv->fd && drv->timer) {
		err = EIO;
		if (event_add(drv->fd, NULL) == 0) {
			rctx_event_plan(drv);
			return drv;
		}
	}
	if (drv->fd)
		event_free(drv->fd);
	if (drv->timer)
		event_free(drv->timer);
	rctx_loop_free(drv->loop);
	free(drv);
	errno = err;
	return NULL;
}

rctx_loop_t *
rctx_event_loop(const rctx_event_t *drv)
{
	return drv ? drv->loop : NULL;
}

static int
rctx_event_check(const rctx_event_t *drv)
{
	if (!drv)
		return -EINVAL;
	if (!pthread_equal(drv->owner, pthread_self()))
		return -EPERM;
	return 0;
}

int
rctx_event_update(rctx_event_t *drv)
{
	int err = rctx_event_check(drv);

	if (err)
		return err;
	rctx_event_plan(drv);
	return 0;
}

int
rctx_event_dispatch(rctx_event_t *drv)
{
	int err = rctx_event_check(drv), r;

	if (err)
		return err;
	if (drv->dispatching)
		return -EBUSY;
	drv->dispatching = true;
	for (;;) {
		rctx_event_plan(drv); /* event.C */
		errno = 0;
		r = event_base_loop(drv->base, EVLOOP_ONCE);
		if (r < 0)
			r = errno ? -errno : -EIO;
		else if (drv->stopped ||
			 /* Both hold until the next event_base_loop starts. */
			 event_base_got_exit(drv->base) ||
			 event_base_got_break(drv->base))
			r = 0;
		else if (r == 0)
			continue;
		break;
	}
	drv->dispatching = false;
	if (drv->stopped)
		free(drv);
	return r;
}

int
rctx_event_stop(rctx_event_t *drv)
{
	int err = rctx_event_check(drv);

	if (err)
		return err;
	event_free(drv->fd); /* deletes it if pending */
	event_free(drv->timer);
	rctx_loop_free(drv->loop);
	if (drv->dispatching)
		drv->stopped = true; /* rctx_event_dispatch returns, frees */
	else
		free(drv);
	return 0;
}
