// SPDX-License-Identifier: MIT
// Timer service: arm+cancel+release from a non-owner thread vs a locked heap.
//
// BM_rctx_ArmCancelRelease drives the rctx timer service in library-thread
// mode from the benchmark thread, which owns no wheel: every operation is
// a hand-off through the lock-free queue. Counters per operation:
//   wakes/op   producer wake-ups (futex or eventfd system calls) -- the
//              service's claim is 0 in steady state;
//   owner/op   owner thread cycles (its own timed sleeps, not the caller's);
//   stalls     times the pool waited for a slot's dead() (owner lag).
// BM_heap_ArmCancel is the classic design beside it: a binary heap under a
// mutex, a timer thread on a condition variable, signalled when an arm
// becomes the earliest deadline.
// Arg "pending": that many longer-lived timers sit in the structure, with
// deadlines earlier than the measured ones (so a heap arm is not the
// earliest and needs no signal).
#include <benchmark/benchmark.h>

#include <stdint.h>

#include "bench-timer.h"

namespace
{

constexpr size_t kPool = 1 << 16;
constexpr int64_t kSec = 1000000000;

void
BM_rctx_ArmCancelRelease(benchmark::State &state)
{
	struct bench_tpool *p = bench_tpool_new(kPool);
	int64_t base = bench_timer_now();
	size_t i = 0;

	if (!p) {
		state.SkipWithError("out of memory");
		return;
	}
	if (state.range(0))
		bench_tpool_pending(p, (size_t)state.range(0), base + kSec / 2);
	uint64_t w0 = bench_timer_wakeups();
	uint64_t o0 = bench_timer_owner_runs();
	for (auto _ : state) {
		if ((i & 4095) == 0)
			base = bench_timer_now();
		bench_tpool_op(p, i, base + kSec);
		i++;
	}
	uint64_t w = bench_timer_wakeups() - w0;
	uint64_t o = bench_timer_owner_runs() - o0;
	state.counters["wakes/op"] =
	    benchmark::Counter((double)w, benchmark::Counter::kAvgIterations);
	state.counters["wakes"] = (double)w;
	state.counters["owner/op"] =
	    benchmark::Counter((double)o, benchmark::Counter::kAvgIterations);
	state.counters["stalls"] = (double)bench_tpool_stalls(p);
	bench_tpool_free(p);
}

void
BM_heap_ArmCancel(benchmark::State &state)
{
	struct bench_hpool *p = bench_hpool_new(kPool);
	int64_t base = bench_timer_now();
	size_t i = 0;

	if (!p) {
		state.SkipWithError("out of memory");
		return;
	}
	if (state.range(0))
		bench_hpool_pending(p, (size_t)state.range(0), base + kSec / 2);
	uint64_t s0 = bench_hpool_signals(p);
	for (auto _ : state) {
		if ((i & 4095) == 0)
			base = bench_timer_now();
		bench_hpool_op(p, i, base + kSec);
		i++;
	}
	state.counters["signals/op"] =
	    benchmark::Counter((double)(bench_hpool_signals(p) - s0),
			       benchmark::Counter::kAvgIterations);
	bench_hpool_free(p);
}

} // namespace

BENCHMARK(BM_rctx_ArmCancelRelease)
    ->ArgName("pending")
    ->Arg(0)
    ->Arg(1000)
    ->UseRealTime();
BENCHMARK(BM_heap_ArmCancel)
    ->ArgName("pending")
    ->Arg(0)
    ->Arg(1000)
    ->UseRealTime();

BENCHMARK_MAIN();
