/* SPDX-License-Identifier: MIT */
/* bench-timer: C functions over the rctx timer service and a heap baseline. */
#ifndef RCTX_BENCH_TIMER_H
#define RCTX_BENCH_TIMER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int64_t bench_timer_now(void); /* rctx_now() */

/*
 * The rctx timer service in library-thread mode (src/timer.h). A pool of
 * n timers used round-robin: op(i) waits until slot i's previous use is
 * dead (counted as a stall), then arms it, cancels it and releases it,
 * from the calling (non-owner) thread.
 */
struct bench_tpool;
struct bench_tpool *bench_tpool_new(size_t n);
void bench_tpool_op(struct bench_tpool *p, size_t i, int64_t expires);
uint64_t bench_tpool_stalls(const struct bench_tpool *p);
/* Keep k more timers pending at `expires` until bench_tpool_free. */
void bench_tpool_pending(struct bench_tpool *p, size_t k, int64_t expires);
void bench_tpool_free(struct bench_tpool *p); /* shuts the service down */
uint64_t bench_timer_wakeups(void);	      /* producer futex/eventfd wakes */
uint64_t bench_timer_owner_runs(void);	      /* owner thread cycles */

/*
 * Baseline: a binary min-heap under one mutex, served by one thread that
 * sleeps on a condition variable until the earliest deadline. op(i) arms
 * slot i then cancels it (removes it from the heap).
 */
struct bench_hpool;
struct bench_hpool *bench_hpool_new(size_t n);
void bench_hpool_op(struct bench_hpool *p, size_t i, int64_t expires);
uint64_t bench_hpool_signals(const struct bench_hpool *p);
/* Keep k more timers pending at `expires` until bench_hpool_free. */
void bench_hpool_pending(struct bench_hpool *p, size_t k, int64_t expires);
void bench_hpool_free(struct bench_hpool *p);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_BENCH_TIMER_H */
