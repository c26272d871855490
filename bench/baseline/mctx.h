/* SPDX-License-Identifier: MIT */
/* mctx: the mutex baseline, Go's context design transcribed to C with locks. */
#ifndef MCTX_H
#define MCTX_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MCTX_VERSION_MAJOR 0
#define MCTX_VERSION_MINOR 1
#define MCTX_VERSION_PATCH 0

#define MCTX_API

/* An opaque context. Every function below is safe from any thread. */
typedef struct mctx mctx_t;

/* Nanoseconds on the CLOCK_MONOTONIC clock. */
typedef int64_t mctx_time_t;

#define MCTX_NSEC ((mctx_time_t)1)
#define MCTX_USEC ((mctx_time_t)1000)
#define MCTX_MSEC ((mctx_time_t)1000000)
#define MCTX_SEC  ((mctx_time_t)1000000000)

/*
 * mctx_now - CLOCK_MONOTONIC now, in nanoseconds.
 * Returns: the time. Any thread.
 */
MCTX_API mctx_time_t mctx_now(void);

/*
 * mctx_background, mctx_todo - the two static roots.
 * Returns: a context that is never done, has no deadline and no values.
 * Any thread. retain/release on them are no-ops; cancel gives -EINVAL.
 */
MCTX_API mctx_t *mctx_background(void);
MCTX_API mctx_t *mctx_todo(void);

/*
 * Derivation. Each constructor:
 * Returns: a new context holding one reference owned by the caller;
 *          NULL, errno EINVAL: parent (or key) is NULL;
 *          NULL, errno ENOMEM: out of memory (parent left unchanged).
 * Any thread. A child of a done parent is returned already done. A child
 * registering under a parent that another thread is cancelling is either
 * cancelled by that cancel or born done (see docs/design.md, order B).
 */
MCTX_API mctx_t *mctx_with_cancel(mctx_t *parent);
MCTX_API mctx_t *mctx_with_deadline(mctx_t *parent, mctx_time_t deadline);
MCTX_API mctx_t *mctx_with_timeout(mctx_t *parent, mctx_time_t timeout);
MCTX_API mctx_t *mctx_with_deadline_cause(mctx_t *parent, mctx_time_t deadline,
					  int cause);
MCTX_API mctx_t *mctx_with_timeout_cause(mctx_t *parent, mctx_time_t timeout,
					 int cause);
MCTX_API mctx_t *mctx_with_value(mctx_t *parent, const void *key, void *value);
MCTX_API mctx_t *mctx_without_cancel(mctx_t *parent);

/*
 * mctx_cancel, mctx_cancel_cause - cancel ctx and all its descendants.
 * Returns: 0 if this call cancelled ctx;
 *          -EALREADY if ctx was already done (first cancel wins);
 *          -EINVAL for NULL or a context that cannot be cancelled.
 * Any thread. Every descendant is done before the call returns; err and
 * cause are published together with release order.
 */
MCTX_API int mctx_cancel(mctx_t *ctx);
MCTX_API int mctx_cancel_cause(mctx_t *ctx, int cause);

/*
 * Observers. NULL is treated as mctx_background(). Never block.
 * mctx_err: 0, ECANCELED or ETIMEDOUT (one acquire load).
 * mctx_cause: 0 while not done, else the cause.
 * mctx_done: mctx_err(ctx) != 0.
 * mctx_deadline: true and *deadline set if ctx has one; false otherwise.
 * mctx_value: the value of the nearest ancestor with key; NULL if absent.
 */
MCTX_API int mctx_err(const mctx_t *ctx);
MCTX_API int mctx_cause(const mctx_t *ctx);
MCTX_API bool mctx_done(const mctx_t *ctx);
MCTX_API bool mctx_deadline(const mctx_t *ctx, mctx_time_t *deadline);
MCTX_API void *mctx_value(const mctx_t *ctx, const void *key);

/*
 * mctx_wait - block until ctx is done or timeout ns pass (< 0: forever).
 * Returns: mctx_err(ctx) once done; 0 if the timeout passed first.
 * Any thread, any number at once.
 */
MCTX_API int mctx_wait(mctx_t *ctx, mctx_time_t timeout);

/*
 * mctx_fd - a file descriptor that polls readable once ctx is done.
 * Returns: the fd (owned by the context; never read or close it);
 *          -EOPNOTSUPP if ctx can never be done;
 *          -EMFILE, -ENFILE, -ENOMEM on resource failure.
 * Any thread; the same fd on every call.
 */
MCTX_API int mctx_fd(mctx_t *ctx);

/* Storage for an after-func registration, owned by the caller. */
typedef struct mctx_after {
	void *opaque[8];
} mctx_after_t;

/*
 * mctx_after_func - run fn(arg) once, after ctx is done.
 * Returns: 0; -EINVAL for a NULL ctx, reg or fn.
 * Any thread. Never allocates. fn runs on the thread that made ctx done,
 * or at once on this thread if ctx is already done; never if ctx can
 * never be done. fn may call any rctx function and may free reg.
 */
MCTX_API int mctx_after_func(mctx_t *ctx, mctx_after_t *reg,
			     void (*fn)(void *arg), void *arg);

/*
 * mctx_after_stop - stop a registration.
 * Returns: true if this call stopped fn from running; false if fn already
 *          started or the registration was already stopped.
 * Any thread. On return fn is not running and will not run (unless called
 * from within fn itself, which returns false at once).
 */
MCTX_API bool mctx_after_stop(mctx_after_t *reg);

/*
 * mctx_retain - take a reference. Returns ctx. Any thread.
 * mctx_release - drop a reference; the last one frees ctx (NULL: no-op).
 */
MCTX_API mctx_t *mctx_retain(mctx_t *ctx);
MCTX_API void mctx_release(mctx_t *ctx);

/*
 * mctx_shutdown - stop every thread the library started and release its
 * global memory. Call when no other thread uses rctx. The library starts
 * again lazily on next use.
 */
MCTX_API void mctx_shutdown(void);

/*
 * Event-loop mode: a thread that runs its own loop owns a timing wheel
 * and no library thread serves it.
 *
 * mctx_loop_new - create a loop owned by the calling thread. Deadlines
 *   armed on this thread go to this loop; deadlines armed on threads that
 *   own no loop are spread over the loops. Once a loop exists, the library
 *   starts no timer thread of its own.
 *   Returns: the loop; NULL with errno ENOMEM/EMFILE on failure, EBUSY if
 *   this thread already owns a loop or library timer threads are running.
 * mctx_loop_fd - an fd that polls readable when a deadline earlier than
 *   the loop's planned wake-up was armed from another thread; poll it with
 *   the loop's other fds.
 * mctx_loop_next - the absolute time at which the next deadline is due,
 *   or -1 if none. Owner thread only.
 * mctx_loop_timeout_ms - the same, as an epoll_wait timeout from now
 *   (rounded up, -1 for none). Owner thread only.
 * mctx_loop_run - fire every deadline due at now. Returns how many fired.
 *   Owner thread only.
 * mctx_loop_free - drop the loop; its pending deadlines move to the
 *   remaining loops, or to library threads if none remain. Owner only.
 */
typedef struct mctx_loop mctx_loop_t;
MCTX_API mctx_loop_t *mctx_loop_new(void);
MCTX_API int mctx_loop_fd(const mctx_loop_t *loop);
MCTX_API mctx_time_t mctx_loop_next(mctx_loop_t *loop);
MCTX_API int mctx_loop_timeout_ms(mctx_loop_t *loop);
MCTX_API int mctx_loop_run(mctx_loop_t *loop, mctx_time_t now);
MCTX_API void mctx_loop_free(mctx_loop_t *loop);

#ifdef __cplusplus
}
#endif

#endif /* MCTX_H */
