/* SPDX-License-Identifier: MIT */
/* rctx: Go's context package for C, lock-free on the hot path. */
#ifndef RCTX_H
#define RCTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RCTX_VERSION_MAJOR 0
#define RCTX_VERSION_MINOR 2
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
 * cancelled by that cancel or born done (tree.B in src/tree.c).
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
 * Observers. NULL is treated as rctx_background(). Lock-free: one acquire
 * load of the context's state, except while a cancel of a context that
 * has an eventfd (rctx_fd) is publishing: then observers spin briefly
 * (yielding every 64 rounds) until the canceller has written the fd, so
 * that "done" and "the fd is readable" agree. They never sleep.
 * rctx_err: 0, ECANCELED or ETIMEDOUT.
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
 * Contexts the caller still holds survive a shutdown: their memory is
 * never reused while a reference is held, cancels still reach them and
 * their after-funcs still run. Their pending deadlines are kept (parked)
 * and fire once the library restarts: at the next deadline armed, the
 * next rctx_wait, or the next rctx_loop_new. One released while parked
 * is freed at that restart or at the next rctx_shutdown.
 *
 * fork(): the library's own threads (timer owners, the reclaimer) are
 * parked across fork by its atfork handlers, so the child inherits no lock
 * they held; contexts and armed deadlines keep working in both processes:
 * the child's fork handler restarts the timer threads that ran (so a
 * deadline armed before fork fires in a child that only polls rctx_done
 * or an fd it took itself), the reclaimer starts on first use. An fd
 * taken before fork is one eventfd shared by both processes. Freed contexts that the
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
 * rctx_loop_new - create a loop owned by the calling thread, whatever the
 *   program did before (deadlines armed, library timer threads running:
 *   those keep being served where they are). Deadlines armed on this
 *   thread go to this loop; those armed on threads that own no loop go to
 *   library threads (or to the loops: rctx_timer_threads).
 *   Returns: the loop; NULL with errno ENOMEM/EMFILE on failure, EBUSY if
 *   this thread already owns a loop.
 * rctx_loop_fd - an fd that polls readable when a deadline earlier than
 *   the loop's planned wake-up was armed from another thread, or while a
 *   loop after-func waits to run; poll it with the loop's other fds.
 *   Returns: the fd; -EINVAL for a NULL loop. Any thread.
 * rctx_loop_next - the absolute time at which to call rctx_loop_run next:
 *   the exact deadline (ns) of the next timer once it is within about two
 *   ticks (2^20 ns each), else an earlier time at which the loop takes the
 *   next timers in hand (that run then fires nothing). Never later than
 *   the earliest deadline.
 *   Returns: that time (>= 0); -1 if none; -EINVAL for a NULL loop.
 *   Owner thread only.
 * rctx_loop_timeout_ms - the same, as an epoll_wait timeout from now.
 *   Returns: milliseconds (>= 0, rounded up); -1 for none; -EINVAL for a
 *   NULL loop (check it: epoll_wait would take it as "forever").
 *   Owner thread only.
 * rctx_loop_run - fire every deadline due at now, rounded down to the
 *   tick (never one whose deadline is after now), then run the loop
 *   after-funcs waiting.
 *   Returns: how many deadlines fired plus how many calls ran; -EINVAL
 *   for a NULL loop. Owner thread only.
 * rctx_loop_free - drop the loop; its pending deadlines move to library
 *   threads (no-thread mode: to the remaining loops, or they wait for the
 *   next rctx_loop_new); its pending loop after-funcs never run (their
 *   stops return true). NULL: no-op.
 *   Owner thread only.
 * Ordering: a deadline whose arm (on any thread) returned before a call
 * to rctx_loop_next or rctx_loop_run began is taken by that call.
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

/*
 * Sleeping to the nanosecond (declared without <time.h>/<sys/epoll.h>).
 * rctx_loop_timeout_ts - rctx_loop_next as a relative timeout for
 *   ppoll, epoll_pwait2 or io_uring: *ts >= 0, never shorter than the time
 *   to the next deadline.
 *   Returns: 1 with *ts set; 0 if no deadline (wait without timeout);
 *   -EINVAL for a NULL loop or ts. Owner thread only.
 * rctx_loop_epoll_wait - epoll_pwait2(epfd, events, maxevents, that
 *   timeout, NULL): waits for an event on epfd (add rctx_loop_fd to it) or
 *   the loop's next deadline, never returning before it; falls back to
 *   epoll_wait with milliseconds rounded up where epoll_pwait2 is missing.
 *   It runs nothing: call rctx_loop_run after it. The kernel may wake the
 *   thread later by its timer slack (50 us by default, 0.1% of waits
 *   over 50 ms).
 *   Returns: the number of events (0: timed out); -errno from epoll
 *   (-EINTR on a signal); -EINVAL for a NULL loop or events or
 *   maxevents <= 0. Owner thread only.
 */
struct timespec;
struct epoll_event;
RCTX_API int rctx_loop_timeout_ts(rctx_loop_t *loop, struct timespec *ts);
RCTX_API int rctx_loop_epoll_wait(rctx_loop_t *loop, int epfd,
				  struct epoll_event *events, int maxevents);

/*
 * rctx_timer_threads - allow (true, the default) or refuse (false) the
 *   library's own timer threads. Refused: deadlines armed on threads that
 *   own no loop go to the loops (spread by CPU) and run there; with no loop
 *   at all, deadline constructors fail with EAGAIN. Call it before the
 *   first deadline (or after rctx_shutdown); the choice survives
 *   rctx_shutdown.
 *   Returns: 0; -EBUSY when refusing while library timer threads run.
 *   Any thread.
 */
RCTX_API int rctx_timer_threads(bool enable);

/*
 * ---- Deadlines across services (0.2) ----
 *
 * Time left, the gRPC grpc-timeout header, Envoy's millisecond timeout
 * headers, ingress and egress budgets, and causes that have names and map
 * to gRPC and HTTP statuses. Every function here is pure or an observer:
 * none blocks, none allocates (the budgets' context constructors aside).
 */

#define RCTX_FOREVER INT64_MAX

/*
 * rctx_remaining - nanoseconds until ctx's effective deadline, against
 * rctx_now(). NULL is treated as rctx_background().
 * Returns: > 0 while time is left;
 *          0 once the deadline has passed or ctx is done (for any reason);
 *          RCTX_FOREVER if ctx has no deadline and is not done.
 * Any thread; never blocks. Reads the state with acquire (as rctx_err).
 */
RCTX_API rctx_time_t rctx_remaining(const rctx_t *ctx);

/* Room for any grpc-timeout value: 8 digits, a unit and a NUL. */
#define RCTX_GRPC_TIMEOUT_SIZE 10

/*
 * rctx_grpc_timeout_format - write timeout (ns) as a grpc-timeout value
 * (1 to 8 digits then H, M, S, m, u or n) in the finest unit that fits 8
 * digits, rounded up within that unit; NUL-terminated.
 * Returns: the length written (2 to 9);
 *          -EINVAL if timeout <= 0 (nothing left: do not send the call)
 *          or buf is NULL;
 *          -ENOBUFS if size is below the length plus the NUL.
 * Any thread; pure, no allocation.
 */
RCTX_API int rctx_grpc_timeout_format(rctx_time_t timeout, char *buf,
				      size_t size);

/*
 * rctx_grpc_timeout_parse - read exactly len bytes of a grpc-timeout value
 * (no NUL needed) into *timeout, in ns, saturating at INT64_MAX.
 * Returns: 0 (a zero value in any unit gives 0);
 *          -EINVAL for NULL value or timeout, an empty value, more than 8
 *          digits, a sign, spaces, a missing or unknown unit or trailing
 *          bytes; *timeout is then left untouched.
 * Any thread; pure, no allocation.
 */
RCTX_API int rctx_grpc_timeout_parse(const char *value, size_t len,
				     rctx_time_t *timeout);

/*
 * Envoy's x-envoy-upstream-rq-timeout-ms and x-envoy-expected-rq-timeout-ms
 * carry a decimal count of milliseconds; Envoy reads "0" as "no timeout".
 * RCTX_ENVOY_TIMEOUT_SIZE holds any value format writes (13 digits + NUL).
 *
 * rctx_envoy_timeout_format - write timeout (ns) in ms, rounded up (so
 * never "0", which Envoy would read as no timeout); NUL-terminated.
 * Returns: the length written (1 to 13);
 *          -EINVAL if timeout <= 0 or buf is NULL;
 *          -ENOBUFS if size is below the length plus the NUL.
 * rctx_envoy_timeout_parse - read exactly len bytes: 1 to 20 ASCII digits,
 * a count of ms up to UINT64_MAX; stores ns (saturating at INT64_MAX) in
 * *timeout, and RCTX_FOREVER for "0".
 * Returns: 0;
 *          -EINVAL for NULL value or timeout, an empty value, any byte
 *          that is not a digit, or a count beyond UINT64_MAX; *timeout is
 *          then left untouched.
 * Any thread; pure, no allocation.
 */
#define RCTX_ENVOY_TIMEOUT_SIZE 14
RCTX_API int rctx_envoy_timeout_format(rctx_time_t timeout, char *buf,
				       size_t size);
RCTX_API int rctx_envoy_timeout_parse(const char *value, size_t len,
				      rctx_time_t *timeout);

/*
 * Causes with names. A cause is still an int: the errno values, or a code
 * that rctx_cause_register hands out (from RCTX_CAUSE_NAMED up), so a
 * named cause goes wherever a cause goes (rctx_cancel_cause, the _cause
 * constructors) and every descendant reads it back with rctx_cause.
 * Each named cause has a kind, which says how a request that ended with
 * it ends on the wire:
 *
 *   kind                       gRPC status            HTTP status
 *   RCTX_CAUSE_KIND_CLIENT     CANCELLED (1)          499 (client closed)
 *   RCTX_CAUSE_KIND_SERVER     CANCELLED (1)          503 (unavailable)
 *   RCTX_CAUSE_KIND_DEADLINE   DEADLINE_EXCEEDED (4)  504 (gateway timeout)
 *
 * A context that is done with a cause that is not named maps by its
 * error: ETIMEDOUT (or the cause ETIMEDOUT) as DEADLINE, else as CLIENT.
 *
 * Four named causes are built in. rctx_ingress gives its deadline
 * RCTX_CAUSE_PEER_DEADLINE when the peer's timeout set it and
 * RCTX_CAUSE_CAP_DEADLINE when the budget's cap did, so "which deadline
 * fired?" has an answer: the request's (one of those two), or a sub-call's
 * (the cause its _cause constructor was given).
 */
#define RCTX_CAUSE_KIND_CLIENT	 1
#define RCTX_CAUSE_KIND_SERVER	 2
#define RCTX_CAUSE_KIND_DEADLINE 3

#define RCTX_CAUSE_NAMED	 0x10000
#define RCTX_CAUSE_PEER_DEADLINE (RCTX_CAUSE_NAMED + 0) /* "peer deadline" */
#define RCTX_CAUSE_CAP_DEADLINE	 (RCTX_CAUSE_NAMED + 1) /* "deadline cap" */
#define RCTX_CAUSE_CLIENT_GONE	 (RCTX_CAUSE_NAMED + 2) /* "client gone" */
#define RCTX_CAUSE_SHUTDOWN	 (RCTX_CAUSE_NAMED + 3) /* "shutting down" */

/*
 * rctx_cause_register - give a cause a name and a kind. The string is not
 * copied: it must stay valid for as long as anyone reads the name (a
 * string literal is the usual choice).
 * Returns: the cause code (>= RCTX_CAUSE_NAMED); the same code again for a
 *          name already registered with the same kind;
 *          -EINVAL for a NULL or empty name or an unknown kind;
 *          -EEXIST if the name is registered with another kind;
 *          -ENOSPC once all 256 names (4 built in) are taken.
 * Any thread (registrations serialize on a mutex; readers never wait).
 * Release: publishes the name; pairs with the acquire in rctx_cause_name.
 */
RCTX_API int rctx_cause_register(const char *name, int kind);

/*
 * rctx_cause_name - the name of a cause.
 * Returns: the registered name of a named cause; the errno's symbolic name
 *          ("ECANCELED", "ETIMEDOUT") for an errno value; NULL for 0 and
 *          for codes that name nothing.
 * Any thread; never blocks, never allocates.
 * rctx_cause_kind - a named cause's kind; 0 for any other code.
 * rctx_reason - rctx_cause_name(rctx_cause(ctx)): NULL while ctx is not
 *          done. NULL ctx is treated as rctx_background().
 */
RCTX_API const char *rctx_cause_name(int cause);
RCTX_API int rctx_cause_kind(int cause);
RCTX_API const char *rctx_reason(const rctx_t *ctx);

/*
 * rctx_grpc_status, rctx_http_status - the status a server sends for a
 * request whose context is ctx, by the table above.
 * Returns: 0 while ctx is not done (gRPC OK; for HTTP, the handler's own
 *          status); else 1 or 4 (gRPC), 499, 503 or 504 (HTTP).
 * Any thread; NULL is treated as rctx_background(); never blocks.
 */
RCTX_API int rctx_grpc_status(const rctx_t *ctx);
RCTX_API int rctx_http_status(const rctx_t *ctx);

/*
 * A budget policy for requests arriving from a peer (rctx_ingress):
 *   cap:    the most time a request may get, whatever the peer asks;
 *           0 for no cap.
 *   margin: subtracted from the peer's timeout for the hop (the time the
 *           request spent reaching us); 0 for none.
 *   cause:  the cause the request's deadline fires with; 0 for the
 *           built-in RCTX_CAUSE_PEER_DEADLINE or RCTX_CAUSE_CAP_DEADLINE,
 *           whichever of the two set the deadline.
 * Zero-initialize and set what you need.
 */
typedef struct rctx_budget {
	rctx_time_t cap;
	rctx_time_t margin;
	int cause;
} rctx_budget_t;

/*
 * rctx_ingress - derive a request context from a peer's timeout (ns;
 * RCTX_FOREVER when the peer sent none). Its deadline is now plus the
 * smaller of (timeout - margin) and cap; never later than parent's, so an
 * untrusted peer can only shorten. With no timeout and no cap it is a
 * plain rctx_with_cancel child. Little or no time left gives a context
 * that is already done (ETIMEDOUT).
 * rctx_ingress_grpc - the same from a grpc-timeout value of len bytes.
 * Returns: 0 and *out, a new context holding one reference;
 *          -EINVAL for a NULL argument, timeout < 0, cap or margin < 0,
 *          or a malformed value (then nothing is made and *out is left
 *          untouched);
 *          -ENOMEM, -EAGAIN as the constructors (nothing made).
 * Any thread.
 */
RCTX_API int rctx_ingress(rctx_t *parent, rctx_time_t timeout,
			  const rctx_budget_t *budget, rctx_t **out);
RCTX_API int rctx_ingress_grpc(rctx_t *parent, const char *value, size_t len,
			       const rctx_budget_t *budget, rctx_t **out);

/*
 * rctx_egress - what is left of ctx for a call to send on, minus margin.
 * Returns: 0 and *timeout (RCTX_FOREVER if ctx has no deadline: send no
 *          timeout header);
 *          -ETIMEDOUT: don't send, no time is left (margin included);
 *          -ECANCELED: don't send, ctx was cancelled;
 *          -EINVAL for a NULL ctx or timeout, or margin < 0.
 * rctx_egress_grpc - the same, written as a grpc-timeout value into buf.
 * Returns: the length written (2 to 9);
 *          0 if ctx has no deadline (send no header; buf holds "" when
 *          size > 0);
 *          -ETIMEDOUT, -ECANCELED: don't send (as above);
 *          -EINVAL for a NULL ctx or buf, or margin < 0;
 *          -ENOBUFS if size is too small (RCTX_GRPC_TIMEOUT_SIZE is enough).
 * Any thread; never blocks, never allocates.
 */
RCTX_API int rctx_egress(const rctx_t *ctx, rctx_time_t margin,
			 rctx_time_t *timeout);
RCTX_API int rctx_egress_grpc(const rctx_t *ctx, rctx_time_t margin, char *buf,
			      size_t size);

/* --- 0.2: statistics, metrics and draining (issue 14) --- */

/* A snapshot of the library's counters (see rctx_stats). */
typedef struct rctx_stats {
	uint64_t live;	  /* contexts made and not yet freed (roots excluded) */
	uint64_t created; /* contexts made since start */
	uint64_t cancelled; /* contexts that became done with ECANCELED */
	uint64_t timed_out; /* contexts that became done with ETIMEDOUT */
	uint64_t timers; /* deadlines armed and neither fired nor withdrawn */
	/* more fields may follow; callers pass sizeof their copy */
} rctx_stats_t;

/*
 * rctx_stats - fill the first `size` bytes of *stats with counters summed
 * over all threads (bytes past the fields this library knows are zeroed).
 * Returns: 0;
 *          -EINVAL for a NULL stats or a size below the five fields above.
 * Any thread; takes a lock that only thread start and exit also take, so
 * it never blocks derive, cancel or release (they write only counters of
 * their own thread). The snapshot is weakly consistent: exact once the
 * counting threads are quiet. Counts survive the threads that made them.
 * cancelled and timed_out count cancelable contexts (with_cancel,
 * with_deadline, with_timeout), each once, including every descendant a
 * cascade makes done and children born done under a done parent; value
 * and without_cancel contexts share their ancestor's state and are not
 * counted there. A context counts as freed (live) when its last
 * reference is dropped, before its memory is reclaimed.
 */
RCTX_API int rctx_stats(rctx_stats_t *stats, size_t size);

/* Metrics (see rctx_metrics). Buckets are log2: see below. */
#define RCTX_METRICS_CAUSES  128
#define RCTX_METRICS_BUCKETS 32
typedef struct rctx_metrics {
	/* cancelable contexts freed while not done */
	uint64_t released_live;
	/* contexts that became done, by err and cause: [c] for a cause c
	 * in 0..RCTX_METRICS_CAUSES-1, the last slot for any other cause */
	uint64_t cancelled_by_cause[RCTX_METRICS_CAUSES + 1];
	uint64_t timed_out_by_cause[RCTX_METRICS_CAUSES + 1];
	/* deadline lateness (fire time - deadline, ns) of each context a
	 * deadline timed out: bucket 0 holds 0, bucket b (1..30) holds
	 * [2^(b-1), 2^b), bucket 31 everything from 2^30 ns (~1.07 s) */
	uint64_t lateness[RCTX_METRICS_BUCKETS];
	/* cascade sizes: contexts a cancel made done (itself included),
	 * in the same buckets (bucket 1: one context, 2: 2-3, 3: 4-7...) */
	uint64_t cascade[RCTX_METRICS_BUCKETS];
	uint64_t lateness_sum_ns; /* sum of the lateness samples */
	uint64_t cascade_sum;	  /* sum of the cascade sizes */
	/* more fields may follow; callers pass sizeof their copy */
} rctx_metrics_t;

/*
 * rctx_metrics - fill the first `size` bytes of *m with the metrics,
 * summed over all threads as rctx_stats does (bytes past the fields this
 * library knows are zeroed).
 * Returns: 0; -EINVAL for a NULL m or a size of 0; -ENOMEM (nothing
 *          written).
 * Any thread; same cost and consistency as rctx_stats. A thread that could
 * not allocate its metrics block (2.6 KiB, on first use) loses its
 * samples; the counters of rctx_stats are never lost.
 */
RCTX_API int rctx_metrics(rctx_metrics_t *m, size_t size);

/*
 * Draining: wait until the work registered under a drain has finished
 * (Go's errgroup.Wait, stdexec's counting_scope, a Trio nursery). A drain
 * owns a context derived with rctx_with_cancel from the parent it was
 * made with; work runs under rctx_drain_ctx(d), and rctx_drain_cancel_join
 * cancels that context and waits for the work to leave.
 */
typedef struct rctx_drain {
	void *opaque[4];
} rctx_drain_t;

/*
 * rctx_drain_init - make *d a drain under parent.
 * Returns: 0; -EINVAL for a NULL argument; -ENOMEM.
 * Any thread; *d must not be in use.
 * rctx_drain_ctx - the drain's context (owned by d; retain it to keep it
 *   past rctx_drain_destroy). NULL for a NULL d.
 */
RCTX_API int rctx_drain_init(rctx_drain_t *d, rctx_t *parent);
RCTX_API rctx_t *rctx_drain_ctx(rctx_drain_t *d);

/*
 * rctx_drain_enter - count one piece of work in.
 * Returns: 0; -EINVAL for NULL; ECANCELED or ETIMEDOUT, negated, if the
 *          drain's context is done (nothing entered: do not start).
 * rctx_drain_leave - count it out (any thread, not only the one that
 *   entered).
 * Returns: 0; -EINVAL for NULL; -EPERM for a leave without an enter
 *          (debug builds, RCTX_DEBUG, abort with a message instead).
 * Any thread. Both are lock-free (one atomic RMW, a wake-up only when the
 * last piece leaves while someone joins). A leave's writes happen before
 * the return of a join that sees the drain empty. An enter that succeeds
 * is waited for by every cancel_join, or fails if its cancel came first.
 */
RCTX_API int rctx_drain_enter(rctx_drain_t *d);
RCTX_API int rctx_drain_leave(rctx_drain_t *d);

/*
 * rctx_drain_run - enter, run fn(arg) on this thread, leave. While fn runs,
 * a join of d on this thread returns -EDEADLK instead of waiting forever.
 * Returns: 0 once fn returned; -EINVAL for NULL; enter's error (fn not
 *          run).
 * Any thread.
 */
RCTX_API int rctx_drain_run(rctx_drain_t *d, void (*fn)(void *arg), void *arg);

/*
 * rctx_drain_join - wait until no work is inside d, or timeout ns pass
 * (< 0: forever, 0: just look).
 * Returns: 0 (the drain was seen empty);
 *          -ETIMEDOUT if the timeout passed first;
 *          -EDEADLK if called from inside work of d run by rctx_drain_run
 *          on this thread (that work could never leave); a join from
 *          inside work entered with rctx_drain_enter is not detected:
 *          give it a timeout;
 *          -EINVAL for NULL.
 * Any thread, any number at once.
 * rctx_drain_cancel_join - cancel the drain's context (cause ECANCELED;
 *   no-op if done), then join. Same returns.
 */
RCTX_API int rctx_drain_join(rctx_drain_t *d, rctx_time_t timeout);
RCTX_API int rctx_drain_cancel_join(rctx_drain_t *d, rctx_time_t timeout);

/*
 * rctx_drain_destroy - release the drain's context.
 * Returns: 0; -EINVAL for NULL; -EBUSY while work is inside (d unchanged).
 * Any thread, once no other thread uses d.
 */
RCTX_API int rctx_drain_destroy(rctx_drain_t *d);

/*
 * A dump of a subtree, weakly consistent: each node is read once, while
 * other threads may derive and cancel; a node made or cancelled during
 * the walk may or may not be seen. The walk follows children sets, which
 * hold only cancelable contexts (with_cancel, with_deadline, with_timeout):
 * a value or without_cancel context appears only as the dump's root, and
 * the cancelable contexts below a value context appear under its nearest
 * cancelable ancestor. A cancelled context leaves its parent's set (as in
 * Go), so done contexts appear only as the dump's root.
 */
enum rctx_dump_kind {
	RCTX_DUMP_ROOT = 1,    /* background, todo */
	RCTX_DUMP_CANCEL = 2,  /* with_cancel (or a deadline no earlier than
				* its parent's) */
	RCTX_DUMP_TIMER = 3,   /* with_deadline, with_timeout */
	RCTX_DUMP_VALUE = 4,   /* with_value */
	RCTX_DUMP_WITHOUT = 5, /* without_cancel */
};

typedef struct rctx_dump_node {
	const rctx_t *ctx;     /* identity only: not retained for the caller */
	unsigned depth;	       /* 0 for the dump's root */
	int kind;	       /* enum rctx_dump_kind */
	int err;	       /* 0, ECANCELED or ETIMEDOUT */
	int cause;	       /* 0 while not done */
	rctx_time_t remaining; /* as rctx_remaining: RCTX_DUMP_FOREVER if no
				* deadline, 0 if passed or done */
	uint32_t children;     /* cancelable children registered under it */
	uint32_t afters;       /* pending after-func registrations */
	rctx_time_t age;       /* ns since it was made; -1 unless leak
				* tracking (rctx_leak_track) was on then */
} rctx_dump_node_t;

#define RCTX_DUMP_FOREVER INT64_MAX

/*
 * rctx_dump - report ctx and the contexts below it, depth first, parents
 * before children, at most max_nodes of them: fn(node, arg) per node,
 * called after the walk (no lock held, no rctx lock or RCU section);
 * a nonzero return from fn stops the report.
 * Returns: the number of nodes reported;
 *          -EINVAL for a NULL ctx or fn or a max_nodes of 0;
 *          -ENOMEM (nothing reported).
 * Any thread, while other threads derive, cancel and release: each node
 * is held by a reference while the walk reads it (a node whose last
 * reference is being dropped is skipped).
 * rctx_dump_fd - the same, written to fd as one text line per node:
 *   indent, kind, state, cause, remaining, children, afters, age.
 * Returns: the number of nodes written; -EINVAL, -ENOMEM, or the negated
 *          errno of a failed write.
 */
RCTX_API int rctx_dump(rctx_t *ctx, size_t max_nodes,
		       int (*fn)(const rctx_dump_node_t *node, void *arg),
		       void *arg);
RCTX_API int rctx_dump_fd(rctx_t *ctx, size_t max_nodes, int fd);

/*
 * Leak reports. Off by default; RCTX_LEAK_TRACK=1 in the environment turns
 * tracking on at load, rctx_leak_track(true) at any time (only contexts
 * made while it is on are tracked; turning it off forgets them all).
 * While on, each context made records its creation site (the return
 * address in the code that called the constructor) and time in a side
 * table (no field of the context; a lock striped by address). When off,
 * it costs one load of a flag and a branch per derive, cancel and free.
 */
typedef struct rctx_leak_site {
	const void *site;   /* return address in the code that made them */
	const char *symbol; /* the function around it (dladdr), or NULL:
			     * link with -rdynamic to name executables'
			     * functions */
	const char *object; /* the executable or library, or NULL */
	uintptr_t offset;   /* site - symbol (or - object base) */
	bool done;	    /* true: done for longer than the threshold and
			     * still referenced; false: not done, made
			     * longer ago than the threshold */
	uint64_t count;	    /* contexts of this site and kind */
	rctx_time_t oldest; /* the longest such time among them, ns */
} rctx_leak_site_t;

/*
 * rctx_leak_track - turn tracking on or off. Returns 0. Any thread.
 * rctx_leak_report - group the tracked contexts that are done for longer
 *   than older_than ns but still referenced, or not done and made longer
 *   than older_than ns ago, by site and kind; call fn(site, arg) for each
 *   group, with no lock held (strings valid during the call); a nonzero
 *   return from fn stops the report. A value or without_cancel context is
 *   done when its cancelable ancestor is; its time since made is used.
 * Returns: the number of groups reported; -EINVAL for a NULL fn or a
 *          negative older_than; -ENOMEM.
 * rctx_leak_report_fd - the same, one text line per group, to fd.
 * Returns: the number of groups written; -EINVAL; -ENOMEM; the negated
 *          errno of a failed write.
 * Any thread.
 */
RCTX_API int rctx_leak_track(bool on);
typedef int (*rctx_leak_fn)(const rctx_leak_site_t *site, void *arg);
RCTX_API int rctx_leak_report(rctx_time_t older_than, rctx_leak_fn fn,
			      void *arg);
RCTX_API int rctx_leak_report_fd(rctx_time_t older_than, int fd);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_H */
