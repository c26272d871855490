/* SPDX-License-Identifier: MIT */
/* rctx: Go's context package for C, lock-free on the hot path. */
#ifndef RCTX_H
#define RCTX_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RCTX_VERSION_MAJOR 0
#define RCTX_VERSION_MINOR 1
#define RCTX_VERSION_PATCH 0

#if defined(RCTX_BUILDING) && defined(__GNUC__)
#define RCTX_API __attribute__((visibility("default")))
#else
#define RCTX_API
#endif

/* An opaque context. Every function below is safe from any thread. */
typedef struct rctx rctx_t;

/* Nanoseconds on the CLOCK_MONOTONIC clock. */
typedef int64_t rctx_time_t;

#define RCTX_NSEC ((rctx_time_t)1)
#define RCTX_USEC ((rctx_time_t)1000)
#define RCTX_MSEC ((rctx_time_t)1000000)
#define RCTX_SEC  ((rctx_time_t)1000000000)

/*
 * rctx_now - CLOCK_MONOTONIC now, in nanoseconds.
 * Returns: the time. Any thread.
 */
RCTX_API rctx_time_t rctx_now(void);

/*
 * rctx_background, rctx_todo - the two static roots.
 * Returns: a context that is never done, has no deadline and no values.
 * Any thread. retain/release on them are no-ops; cancel gives -EINVAL.
 */
RCTX_API rctx_t *rctx_background(void);
RCTX_API rctx_t *rctx_todo(void);

/*
 * Derivation. Each constructor:
 * Returns: a new context holding one reference owned by the caller;
 *          NULL, errno EINVAL: parent (or key) is NULL;
 *          NULL, errno ENOMEM: out of memory (parent left unchanged);
 *          NULL, errno EAGAIN: (deadline constructors) the timer thread
 *          could not be started (parent left unchanged).
 * Any thread. A child of a done parent is returned already done. A child
 * registering under a parent that another thread is cancelling is either
 * cancelled by that cancel or born done (see docs/design.md, order B).
 */
RCTX_API rctx_t *rctx_with_cancel(rctx_t *parent);
RCTX_API rctx_t *rctx_with_deadline(rctx_t *parent, rctx_time_t deadline);
RCTX_API rctx_t *rctx_with_timeout(rctx_t *parent, rctx_time_t timeout);
RCTX_API rctx_t *rctx_with_deadline_cause(rctx_t *parent, rctx_time_t deadline,
					  int cause);
RCTX_API rctx_t *rctx_with_timeout_cause(rctx_t *parent, rctx_time_t timeout,
					 int cause);
RCTX_API rctx_t *rctx_with_value(rctx_t *parent, const void *key, void *value);
RCTX_API rctx_t *rctx_without_cancel(rctx_t *parent);

/*
 * rctx_cancel, rctx_cancel_cause - cancel ctx and all its descendants.
 * Returns: 0 if this call cancelled ctx;
 *          -EALREADY if ctx was already done (first cancel wins);
 *          -EINVAL for NULL or a context that cannot be cancelled.
 * Any thread. Every descendant is done before the call returns; err and
 * cause are published together with release order.
 */
RCTX_API int rctx_cancel(rctx_t *ctx);
RCTX_API int rctx_cancel_cause(rctx_t *ctx, int cause);

/*
 * Observers. NULL is treated as rctx_background(). Never block.
 * rctx_err: 0, ECANCELED or ETIMEDOUT (one acquire load).
 * rctx_cause: 0 while not done, else the cause.
 * rctx_done: rctx_err(ctx) != 0.
 * rctx_deadline: true and *deadline set if ctx has one; false otherwise.
 * rctx_value: the value of the nearest ancestor with key; NULL if absent.
 */
RCTX_API int rctx_err(const rctx_t *ctx);
RCTX_API int rctx_cause(const rctx_t *ctx);
RCTX_API bool rctx_done(const rctx_t *ctx);
RCTX_API bool rctx_deadline(const rctx_t *ctx, rctx_time_t *deadline);
RCTX_API void *rctx_value(const rctx_t *ctx, const void *key);

/*
 * rctx_wait - block until ctx is done or timeout ns pass (< 0: forever).
 * Returns: rctx_err(ctx) once done; 0 if the timeout passed first.
 * Any thread, any number at once.
 */
RCTX_API int rctx_wait(rctx_t *ctx, rctx_time_t timeout);

/*
 * rctx_fd - a file descriptor that polls readable once ctx is done.
 * Returns: the fd (owned by the context; never read or close it);
 *          -EOPNOTSUPP if ctx can never be done;
 *          -EMFILE, -ENFILE, -ENOMEM on resource failure.
 * Any thread; the same fd on every call.
 */
RCTX_API int rctx_fd(rctx_t *ctx);

/* Storage for an after-func registration, owned by the caller. */
typedef struct rctx_after {
	void *opaque[8];
} rctx_after_t;

/*
 * rctx_after_func - run fn(arg) once, after ctx is done.
 * Returns: 0; -EINVAL for a NULL ctx, reg or fn.
 * Any thread. Never allocates. fn runs on the thread that made ctx done,
 * or at once on this thread if ctx is already done; never if ctx can
 * never be done. fn may call any rctx function and may free reg.
 */
RCTX_API int rctx_after_func(rctx_t *ctx, rctx_after_t *reg,
			     void (*fn)(void *arg), void *arg);

/*
 * rctx_after_stop - stop a registration.
 * Returns: true if this call stopped fn from running; false if fn already
 *          started or the registration was already stopped.
 * Any thread. On return fn is not running and will not run (unless called
 * from within fn itself, which returns false at once).
 */
RCTX_API bool rctx_after_stop(rctx_after_t *reg);

/*
 * rctx_retain - take a reference. Returns ctx. Any thread.
 * rctx_release - drop a reference; the last one frees ctx (NULL: no-op).
 */
RCTX_API rctx_t *rctx_retain(rctx_t *ctx);
RCTX_API void rctx_release(rctx_t *ctx);

/*
 * rctx_shutdown - stop every thread the library started and release its
 * global memory. Call when no other thread uses rctx. The library starts
 * again lazily on next use.
 *
 * fork(): the library's own threads (timer owners, the reclaimer) are
 * parked across fork by its atfork handlers, so the child inherits no lock
 * they held; contexts and armed deadlines keep working in both processes,
 * and the child restarts the threads on first use. Freed contexts that the
 * application's other threads keep cached for reuse (at most a few hundred
 * per thread) stay with those threads, so the child never gets them back.
 * The application must not call liburcu-bp's fork hooks itself (rctx
 * does).
 */
RCTX_API void rctx_shutdown(void);

/*
 * Event-loop mode: a thread that runs its own loop owns a timing wheel
 * and no library thread serves it.
 *
 * rctx_loop_new - create a loop owned by the calling thread. Deadlines
 *   armed on this thread go to this loop; deadlines armed on threads that
 *   own no loop are spread over the loops. Once a loop exists, the library
 *   starts no timer thread of its own.
 *   Returns: the loop; NULL with errno ENOMEM/EMFILE on failure, EBUSY if
 *   this thread already owns a loop or library timer threads are running.
 * rctx_loop_fd - an fd that polls readable when a deadline earlier than
 *   the loop's planned wake-up was armed from another thread, or while a
 *   loop after-func waits to run; poll it with the loop's other fds.
 * rctx_loop_next - the absolute time at which the next deadline is due,
 *   rounded up to the wheel's tick (2^20 ns), or -1 if none. Owner only.
 * rctx_loop_timeout_ms - the same, as an epoll_wait timeout from now
 *   (rounded up, -1 for none). Owner thread only.
 * rctx_loop_run - fire every deadline due at now, rounded down to the
 *   tick (never one whose deadline is after now), then run the loop
 *   after-funcs waiting. Returns how many deadlines fired plus how many
 *   calls ran. Owner thread only.
 * rctx_loop_free - drop the loop; its pending deadlines move to the
 *   remaining loops, or to library threads if none remain; its pending
 *   loop after-funcs never run. Owner only.
 */
typedef struct rctx_loop rctx_loop_t;
RCTX_API rctx_loop_t *rctx_loop_new(void);
RCTX_API int rctx_loop_fd(const rctx_loop_t *loop);
RCTX_API rctx_time_t rctx_loop_next(rctx_loop_t *loop);
RCTX_API int rctx_loop_timeout_ms(rctx_loop_t *loop);
RCTX_API int rctx_loop_run(rctx_loop_t *loop, rctx_time_t now);
RCTX_API void rctx_loop_free(rctx_loop_t *loop);

/*
 * rctx_loop_after_func - run fn(arg) once, after ctx is done, on loop's
 *   owner thread inside rctx_loop_run: never on the cancelling thread or
 *   a library thread. If ctx is already done, fn runs at the loop's next
 *   rctx_loop_run, not inside this call; never if ctx can never be done.
 *   rctx_loop_fd polls readable while a call waits to run; rctx_loop_run
 *   counts the calls it ran with the deadlines it fired. Stop with
 *   rctx_after_stop (same contract; it waits for a running fn except from
 *   within fn). fn may free reg; it must not call rctx_loop_run or
 *   rctx_loop_free on its own loop. rctx_loop_free with calls still
 *   pending: they never run and their stops return true (stop them before
 *   reusing reg). Calls pending when the owner thread exits never run
 *   either.
 * Returns: 0; -EINVAL for a NULL loop, ctx, reg or fn;
 *          -EOWNERDEAD if loop's owner thread has exited;
 *          -ENOSPC if more than 1024 loops existed when loop was made.
 * Any thread. Never allocates; makes a system call only to wake the loop
 * (one eventfd write). Everything before the cancel that made ctx done
 * happens before fn.
 */
RCTX_API int rctx_loop_after_func(rctx_loop_t *loop, rctx_t *ctx,
				  rctx_after_t *reg, void (*fn)(void *arg),
				  void *arg);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_H */
