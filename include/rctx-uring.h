/* SPDX-License-Identifier: MIT */
/* rctx-uring: context deadlines and cancels for io_uring (librctx-uring). */
#ifndef RCTX_URING_H
#define RCTX_URING_H

#include <liburing.h>

#include <rctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * user_data values at or above RCTX_URING_RESERVED are not yours: the
 * bridge's wake-up poll, its cancel requests and the link timeouts of
 * rctx_uring_prep_deadline use three of them, and liburing keeps
 * UINT64_MAX (LIBURING_UDATA_TIMEOUT) for itself. Skip their CQEs
 * (rctx_uring_cqe tells you) after marking them seen.
 */
#define RCTX_URING_RESERVED UINT64_C(0xfffffffffffffff0)
#define RCTX_URING_TIMEOUT  UINT64_C(0xfffffffffffffffc)
#define RCTX_URING_CANCEL   UINT64_C(0xfffffffffffffffd)
#define RCTX_URING_WAKE	    UINT64_C(0xfffffffffffffffe)

/*
 * rctx_uring_prep_deadline - bound the request in sqe by ctx's deadline:
 *   mark sqe IOSQE_IO_LINK and queue, as the very next SQE, an
 *   IORING_OP_LINK_TIMEOUT with IORING_TIMEOUT_ABS on CLOCK_MONOTONIC at
 *   the deadline (user_data RCTX_URING_TIMEOUT). If it expires the request
 *   completes with -ECANCELED, never before the deadline. Call it right
 *   after preparing sqe, before taking another SQE; *ts must stay valid
 *   until io_uring_submit returns.
 * Returns: 1 if the link timeout was queued;
 *          0 if ctx has no deadline (nothing queued);
 *          -EINVAL for a NULL ring, sqe, ctx or ts;
 *          -EBUSY if the SQ ring is full (sqe left unchanged).
 * The ring's submitting thread.
 */
RCTX_API int rctx_uring_prep_deadline(struct io_uring *ring,
				      struct io_uring_sqe *sqe,
				      const rctx_t *ctx,
				      struct __kernel_timespec *ts);

/* A bridge: cancels a ring's in-flight requests when their contexts end. */
typedef struct rctx_uring rctx_uring_t;

/* Storage for one watched request, owned by the caller. */
typedef struct rctx_uring_req {
	void *opaque[12];
} rctx_uring_req_t;

/*
 * rctx_uring_new - a bridge for ring, owned by the calling thread (the
 *   ring's submitter). It queues a poll on its own eventfd (user_data
 *   RCTX_URING_WAKE), submitted with your next io_uring_submit.
 * Returns: the bridge;
 *          NULL, errno EINVAL: ring is NULL;
 *          NULL, errno ENOMEM/EMFILE/ENFILE.
 */
RCTX_API rctx_uring_t *rctx_uring_new(struct io_uring *ring);

/*
 * rctx_uring_watch - once ctx is done, queue IORING_OP_ASYNC_CANCEL for
 *   the request with user_data (on the owner thread, from rctx_uring_cqe
 *   or rctx_uring_flush). The request's SQE must be queued before the
 *   owner's next rctx_uring_cqe/flush, so the cancel follows it in the SQ
 *   ring. req must stay valid until rctx_uring_unwatch.
 * Returns: 0;
 *          -EINVAL for a NULL br, req or ctx, or a reserved user_data;
 *          -EPERM on another thread than the owner.
 */
RCTX_API int rctx_uring_watch(rctx_uring_t *br, rctx_uring_req_t *req,
			      rctx_t *ctx, uint64_t user_data);

/*
 * rctx_uring_unwatch - forget req; call it when the request's CQE arrived,
 *   before reusing or freeing req. A cancel not yet queued never will be.
 *   May wait for the after-func if it is running on another thread.
 * Returns: 1 if ctx became done while watched (a cancel was or would have
 *          been queued); 0 if not;
 *          -EINVAL for a NULL br or req; -EPERM on another thread.
 */
RCTX_API int rctx_uring_unwatch(rctx_uring_t *br, rctx_uring_req_t *req);

/*
 * rctx_uring_cqe - give every CQE to the bridge before handling it.
 *   For the wake-up CQE it drains the eventfd, re-arms the poll and
 *   queues the cancels due (submit them with your next io_uring_submit).
 * Returns: 1 if the CQE is the bridge's (skip it; still mark it seen);
 *          0 if it is yours;
 *          -EINVAL for a NULL br or cqe; -EPERM on another thread.
 */
RCTX_API int rctx_uring_cqe(rctx_uring_t *br, const struct io_uring_cqe *cqe);

/*
 * rctx_uring_flush - queue a cancel for every watched request whose
 *   context is done (and the wake-up poll if it could not be queued).
 *   rctx_uring_cqe calls it; call it yourself after the SQ ring was full.
 * Returns: the number of cancels queued (>= 0);
 *          -EBUSY if the SQ ring filled before all were queued;
 *          -EINVAL for a NULL br; -EPERM on another thread.
 */
RCTX_API int rctx_uring_flush(rctx_uring_t *br);

/*
 * rctx_uring_free - free the bridge; queues a removal of its poll, whose
 *   CQEs (reserved user_data) may still arrive after this: skip them.
 * Returns: 0;
 *          -EBUSY if a request is still watched (nothing freed);
 *          -EINVAL for a NULL br; -EPERM on another thread.
 */
RCTX_API int rctx_uring_free(rctx_uring_t *br);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_URING_H */
