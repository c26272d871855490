/* SPDX-License-Identifier: MIT */
/* io_uring bridge: deadlines as link timeouts, cancels when contexts end. */
/*
 * Two independent tools, both on rctx's public API:
 *
 * Deadlines. rctx_uring_prep_deadline links an IORING_OP_LINK_TIMEOUT to a
 * request, absolute (IORING_TIMEOUT_ABS) on CLOCK_MONOTONIC, the clock of
 * rctx_time_t, at the context's deadline. The kernel's hrtimer fires at or
 * after that time, so the request is never cut short before the deadline;
 * the context itself turns ETIMEDOUT when rctx's own timer fires, which
 * may be a little later than the request's -ECANCELED.
 *
 * Cancellation. A bridge serves one ring and its owner thread (the only
 * thread that may touch the SQ ring). rctx_uring_watch registers an
 * after-func on the request's context; the after-func runs on whichever
 * thread makes the context done (a canceller, a timer thread, a loop) and
 * so never touches the ring: it pushes the request on the bridge's
 * lock-free stack and, if the stack was empty, writes the bridge's
 * eventfd. The ring polls that eventfd (a one-shot IORING_OP_POLL_ADD,
 * user_data RCTX_URING_WAKE), so an owner sleeping in io_uring_wait_cqe
 * wakes; rctx_uring_cqe then drains the eventfd, re-arms the poll, pops
 * the stack and queues one IORING_OP_ASYNC_CANCEL per request, by its
 * user_data, for the owner's next submit.
 *
 * Invariants:
 * I1 A watched request is in exactly one place: registered (its after-func
 *    not run), on the stack, on the owner's pending list (popped, cancel
 *    not yet queued: the SQ ring was full), or done (cancel queued).
 * I2 The stack is pushed by any thread and only emptied, all at once, by
 *    the owner (exchange with NULL): no pop of one node, so no ABA.
 * I3 The bridge outlives every after-func that may touch it:
 *    rctx_uring_free refuses while a request is watched, and unwatch
 *    returns only once the after-func is not running (rctx_after_stop).
 *
 * Ordering:
 * uring.A push (rctx_uring_on_done): release CAS on the stack head
 *         publishes the node's next link; pairs with the acquire exchange
 *         in rctx_uring_take.
 * uring.B No lost wake-up: the owner reads the eventfd empty before it
 *         takes the stack; a push after the take finds the stack empty
 *         and writes the eventfd again, which the re-armed poll reports.
 *         A push between the drain and the take is taken now and its
 *         write only causes one spurious wake-up.
 * uring.C A cancel never overtakes its request: the request's SQE is
 *         queued before the owner's next flush (the contract of watch),
 *         and the kernel consumes SQEs in ring order, even with SQPOLL.
 *
 * Progress: the after-func is lock-free (one CAS loop, one write(2) at
 * most). Owner calls never block, except unwatch, which waits for an
 * after-func already running on another thread to return.
 *
 * Caveat: a cancel targets a user_data, so a cancel that races with the
 * request's completion may find nothing (-ENOENT) or, if the program
 * reuses that user_data at once for a new request queued after the
 * cancel was queued, cancel that one. Use unique user_data values.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rctx-uring.h"

enum rctx_uring_state {
	RCTX_URING_IDLE,	/* unwatched */
	RCTX_URING_WATCHED,	/* after-func registered (maybe run) */
	RCTX_URING_CANCEL_SENT, /* cancel queued: off the stack and list */
};

struct rctx_uring_w {
	rctx_after_t after;
	struct rctx_uring_w *next; /* stack, then the owner's pending list */
	struct rctx_uring *br;
	uint64_t user_data;
	enum rctx_uring_state state; /* owner only */
};

_Static_assert(sizeof(struct rctx_uring_w) <= sizeof(rctx_uring_req_t),
	       "rctx_uring_req_t is too small");
_Static_assert(_Alignof(struct rctx_uring_w) <= _Alignof(rctx_uring_req_t),
	       "rctx_uring_req_t is under-aligned");

struct rctx_uring {
	struct rctx_uring_w *_Atomic stack; /* pushed by after-funcs (I2) */
	struct rctx_uring_w *pending;	    /* owner: taken, not yet sent */
	struct io_uring *ring;
	pthread_t owner;
	unsigned watched; /* owner: requests between watch and unwatch */
	int efd;
	bool poll_armed; /* owner: the wake-up poll is in flight */
	bool poll_dead;	 /* owner: the kernel refused it; flush only */
};

static struct rctx_uring_w *
rctx_uring_w(rctx_uring_req_t *req)
{
	return (struct rctx_uring_w *)(void *)req;
}

int
rctx_uring_prep_deadline(struct io_uring *ring, struct io_uring_sqe *sqe,
			 const rctx_t *ctx, struct __kernel_timespec *ts)
{
	struct io_uring_sqe *t;
	rctx_time_t d;

	if (!ring || !sqe || !ctx || !ts)
		return -EINVAL;
	if (!rctx_deadline(ctx, &d))
		return 0;
	t = io_uring_get_sqe(ring);
	if (!t)
		return -EBUSY;
	if (d < 0)
		d = 0;
	ts->tv_sec = d / RCTX_SEC;
	ts->tv_nsec = d % RCTX_SEC;
	io_uring_prep_link_timeout(t, ts, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(t, RCTX_URING_TIMEOUT);
	sqe->flags |= IOSQE_IO_LINK;
	return 1;
}

/* The after-func: any thread; never touches the ring (uring.A, I3). */
static void
rctx_uring_on_done(void *arg)
{
	struct rctx_uring_w *w = arg;
	struct rctx_uring *br = w->br;
	/* Relaxed: only a guess for the CAS, which re-reads on failure. */
	struct rctx_uring_w *old =
	    atomic_load_explicit(&br->stack, memory_order_relaxed);
	uint64_t one = 1;
	ssize_t r;

	do {
		w->next = old;
		/* Release: publishes w->next; pairs with rctx_uring_take. */
	} while (!atomic_compare_exchange_weak_explicit(
	    &br->stack, &old, w, memory_order_release, memory_order_relaxed));
	if (old)
		return; /* the owner has a wake-up coming (uring.B) */
	do {
		r = write(br->efd, &one, sizeof(one));
	} while (r < 0 && errno == EINTR);
}

/* Owner: move the stack, oldest first, to the end of the pending list. */
static void
rctx_uring_take(struct rctx_uring *br)
{
	struct rctx_uring_w *list, *rev = NULL, **tail;

	/*
	 * Acquire: pairs with the release CAS in rctx_uring_on_done. An RMW
	 * reads the last value in the stack's modification order, so every
	 * push that happened before this call (the one whose eventfd write
	 * the owner drained, or whose after-func rctx_after_stop waited for
	 * in rctx_uring_unwatch) is taken.
	 */
	list = atomic_exchange_explicit(&br->stack, NULL, memory_order_acquire);
	while (list) {
		struct rctx_uring_w *next = list->next;

		list->next = rev;
		rev = list;
		list = next;
	}
	for (tail = &br->pending; *tail; tail = &(*tail)->next)
		;
	*tail = rev;
}

static void
rctx_uring_arm_poll(struct rctx_uring *br)
{
	struct io_uring_sqe *sqe;

	if (br->poll_armed || br->poll_dead)
		return;
	sqe = io_uring_get_sqe(br->ring);
	if (!sqe)
		return; /* retried by the next flush */
	io_uring_prep_poll_add(sqe, br->efd, POLLIN);
	io_uring_sqe_set_data64(sqe, RCTX_URING_WAKE);
	br->poll_armed = true;
}

static int
rctx_uring_check(const struct rctx_uring *br)
{
	if (!br)
		return -EINVAL;
	if (!pthread_equal(br->owner, pthread_self()))
		return -EPERM;
	return 0;
}

rctx_uring_t *
rctx_uring_new(struct io_uring *ring)
{
	struct rctx_uring *br;
	int err;

	if (!ring) {
		errno = EINVAL;
		return NULL;
	}
	br = calloc(1, sizeof(*br));
	if (!br) {
		errno = ENOMEM;
		return NULL;
	}
	br->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (br->efd < 0) {
		err = errno;
		free(br);
		errno = err;
		return NULL;
	}
	atomic_init(&br->stack, NULL);
	br->ring = ring;
	br->owner = pthread_self();
	rctx_uring_arm_poll(br);
	return br;
}

int
rctx_uring_watch(rctx_uring_t *br, rctx_uring_req_t *req, rctx_t *ctx,
		 uint64_t user_data)
{
	struct rctx_uring_w *w = rctx_uring_w(req);
	int err = rctx_uring_check(br);

	if (err)
		return err;
	if (!req || !ctx || user_data >= RCTX_URING_RESERVED)
		return -EINVAL;
	w->br = br;
	w->user_data = user_data;
	w->next = NULL;
	w->state = RCTX_URING_WATCHED;
	/* Registration orders w's fields before the after-func reads them. */
	err = rctx_after_func(ctx, &w->after, rctx_uring_on_done, w);
	if (err) {
		w->state = RCTX_URING_IDLE;
		return err;
	}
	br->watched++;
	return 0;
}

int
rctx_uring_unwatch(rctx_uring_t *br, rctx_uring_req_t *req)
{
	struct rctx_uring_w *w = rctx_uring_w(req), **p;
	int err = rctx_uring_check(br);

	if (err)
		return err;
	if (!req || w->br != br || w->state == RCTX_URING_IDLE)
		return -EINVAL;
	br->watched--;
	if (rctx_after_stop(&w->after)) {
		w->state = RCTX_URING_IDLE;
		return 0; /* never pushed (I1) */
	}
	if (w->state == RCTX_URING_WATCHED) {
		/* Pushed, maybe not taken yet: take, then unlink it (I1). */
		rctx_uring_take(br);
		for (p = &br->pending; *p != w; p = &(*p)->next)
			;
		*p = w->next;
	}
	w->state = RCTX_URING_IDLE;
	return 1;
}

int
rctx_uring_flush(rctx_uring_t *br)
{
	struct rctx_uring_w *w;
	struct io_uring_sqe *sqe;
	int err = rctx_uring_check(br), n = 0;

	if (err)
		return err;
	rctx_uring_arm_poll(br);
	rctx_uring_take(br);
	while ((w = br->pending) != NULL) {
		sqe = io_uring_get_sqe(br->ring);
		if (!sqe)
			return -EBUSY; /* the rest stay pending */
		io_uring_prep_cancel64(sqe, w->user_data, 0);
		io_uring_sqe_set_data64(sqe, RCTX_URING_CANCEL);
		br->pending = w->next;
		w->state = RCTX_URING_CANCEL_SENT;
		n++;
	}
	return n;
}

int
rctx_uring_cqe(rctx_uring_t *br, const struct io_uring_cqe *cqe)
{
	int err = rctx_uring_check(br);
	uint64_t v;
	ssize_t r;

	if (err)
		return err;
	if (!cqe)
		return -EINVAL;
	if (cqe->user_data < RCTX_URING_RESERVED)
		return 0;
	if (cqe->user_data != RCTX_URING_WAKE)
		return 1; /* a cancel's or a link timeout's result */
	br->poll_armed = false;
	if (cqe->res < 0 && cqe->res != -ECANCELED)
		br->poll_dead = true; /* do not spin on a refused poll */
	/* uring.B: drain before taking. */
	do {
		r = read(br->efd, &v, sizeof(v));
	} while (r < 0 && errno == EINTR);
	rctx_uring_flush(br); /* -EBUSY: the rest wait for the next flush */
	return 1;
}

int
rctx_uring_free(rctx_uring_t *br)
{
	struct io_uring_sqe *sqe;
	int err = rctx_uring_check(br);

	if (err)
		return err;
	if (br->watched)
		return -EBUSY;
	if (br->poll_armed && (sqe = io_uring_get_sqe(br->ring)) != NULL) {
		io_uring_prep_poll_remove(sqe, RCTX_URING_WAKE);
		io_uring_sqe_set_data64(sqe, RCTX_URING_CANCEL);
	}
	close(br->efd); /* an in-flight poll keeps its own reference */
	free(br);
	return 0;
}
