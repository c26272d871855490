/* SPDX-License-Identifier: MIT */
/* Timing wheel benchmarks against an indexed binary heap (the baseline). */

/*
 * Every workload runs on both queues, as BM_<queue>_<Workload>, with
 * <queue> one of wheel (precise mode, the library default), coarse (the
 * wheel in non-precise mode, where it differs) and heap
 * (bench/bench-wheel-baseline.c). Time is simulated: the owner passes
 * `now` in, ticks are 2^20 ns, deadlines are spread over about a second.
 * The "ns/op" counter is the time per operation the workload names:
 *
 *  ArmCancel/live:N  one arm plus one cancel of a hot timer while N other
 *                    timers are live
 *  Mixed/live:N      one op = a cancel and re-arm of a random live timer
 *                    (99%) or the expiry and re-arm of one (about 1%)
 *  MixedFifo         the same with victims taken in arm order
 *  ColdCancel/live:N one cancel of a random timer among N (cache-cold)
 *  Storm/live:N      one fired timer when all N (random deadlines, so the
 *                    lists jump around memory) expire in one advance,
 *                    including the caller's walk over the returned list;
 *                    adv_ns is the advance alone
 *  StormOrdered      the same with deadlines rising with the node address
 *  StormTicking      one fired timer when N expire over ~1000 advances of
 *                    one tick each (includes the wheel's re-filing)
 *
 * Batch workloads time themselves with the thread's CPU clock, so other
 * users of a shared machine do not inflate them (their cache traffic
 * still can).
 */

#include <benchmark/benchmark.h>

#include <time.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" {
#include "wheelcheck.h"
}
#include "heap-timer.h"

namespace
{

constexpr int64_t kStart = int64_t{ 1 } << 40;
constexpr int64_t kSpread = int64_t{ 1 } << 30; /* ~1.07 s of deadlines */
constexpr unsigned kTickShift = RCTX_WHEEL_TICK_SHIFT_DEFAULT;

/* splitmix64: cheap, deterministic, the same stream for every queue. */
struct Rng {
	uint64_t s;
	uint64_t next()
	{
		uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		return z ^ (z >> 31);
	}
};

template <bool Precise> struct WheelQ {
	using Node = rctx_wheel_timer;
	rctx_wheel w;

	WheelQ()
	{
		rctx_wheel_init(&w, kStart, kTickShift, Precise);
	}
	static void init(Node *t)
	{
		rctx_wheel_timer_init(t);
	}
	void add(Node *t, int64_t e)
	{
		rctx_wheel_add(&w, t, e);
	}
	void del(Node *t)
	{
		rctx_wheel_del(&w, t);
	}
	Node *advance(int64_t now, size_t *n)
	{
		return rctx_wheel_advance(&w, now, n);
	}
	int64_t now() const
	{
		return w.now;
	}
	size_t size() const
	{
		return w.count;
	}
	bool check() const
	{
		return rctx_wheel_check(&w, nullptr);
	}
};

struct HeapQ {
	using Node = rctx_heap_timer;
	rctx_heap h;

	HeapQ()
	{
		if (rctx_heap_init(&h, 1 << 21, kStart) != 0)
			std::abort();
	}
	~HeapQ()
	{
		rctx_heap_fini(&h);
	}
	static void init(Node *t)
	{
		rctx_heap_timer_init(t);
	}
	void add(Node *t, int64_t e)
	{
		if (rctx_heap_add(&h, t, e) != 0)
			std::abort();
	}
	void del(Node *t)
	{
		rctx_heap_del(&h, t);
	}
	Node *advance(int64_t now, size_t *n)
	{
		return rctx_heap_advance(&h, now, n);
	}
	int64_t now() const
	{
		return h.now;
	}
	size_t size() const
	{
		return h.n;
	}
	bool check() const
	{
		return rctx_heap_check(&h);
	}
};

/* The queue (heap allocated: the wheel struct is ~6 KiB) and its nodes. */
template <class Q> struct Fixture {
	Q *q = new Q();
	std::vector<typename Q::Node> nodes;
	Rng rng{ 42 };

	explicit Fixture(size_t n) : nodes(n)
	{
		for (auto &t : nodes)
			Q::init(&t);
	}
	~Fixture()
	{
		delete q;
	}
	/* Random deadlines, or (ordered) deadlines rising with the address,
	 * as when each request of a stream gets the same timeout. */
	void fill(bool ordered = false)
	{
		int64_t now = q->now(), step = kSpread / (int64_t)nodes.size();

		for (size_t i = 0; i < nodes.size(); i++) {
			int64_t d = ordered ? (int64_t)i * step
					    : (int64_t)(rng.next() % kSpread);

			q->add(&nodes[i], now + d);
		}
	}
	Fixture(const Fixture &) = delete;
	Fixture &operator=(const Fixture &) = delete;
};

/* Thread CPU time: other users of the machine do not inflate it. */
double
cpu_now()
{
	timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
per_op(benchmark::State &state, double ops)
{
	state.counters["ns/op"] =
	    benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsRate |
					       benchmark::Counter::kInvert);
}

template <class Q>
void
ArmCancel(benchmark::State &state)
{
	Fixture<Q> f((size_t)state.range(0));
	typename Q::Node hot[64];
	int64_t delay[4096];
	size_t i = 0;

	f.fill();
	for (auto &t : hot)
		Q::init(&t);
	for (auto &d : delay)
		d = (int64_t)(f.rng.next() % kSpread);
	for (auto _ : state) {
		typename Q::Node *t = &hot[i & 63];

		f.q->add(t, f.q->now() + delay[i & 4095]);
		f.q->del(t);
		i++;
	}
	per_op(state, (double)state.iterations());
}

/*
 * Random victims are cache-cold (the DRAM-bound worst case); Fifo victims
 * go in arm order, as when a stream of requests with similar run times
 * finishes in the order it started.
 */
template <class Q, bool Fifo>
void
Mixed(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	Fixture<Q> f(n);
	/* About one expiry per 99 cancels at the steady deadline density. */
	const int64_t dt = kSpread / (int64_t)n;
	double ops = 0, fired = 0;
	size_t cursor = 0;

	f.fill();
	for (auto _ : state) {
		int64_t now = f.q->now();
		size_t k;

		for (int j = 0; j < 99; j++) {
			size_t v = Fifo ? cursor++ : (size_t)f.rng.next();
			typename Q::Node *t = &f.nodes[v % n];

			f.q->del(t);
			f.q->add(t, now + (int64_t)(f.rng.next() % kSpread));
		}
		now += dt;
		for (typename Q::Node *t = f.q->advance(now, &k), *next;
		     t != nullptr; t = next) {
			next = t->next;
			f.q->add(t, now + (int64_t)(f.rng.next() % kSpread));
		}
		ops += 99 + (double)k;
		fired += (double)k;
	}
	if (!f.q->check() || f.q->size() != n)
		state.SkipWithError("queue broken after the run");
	per_op(state, ops);
	state.counters["expired%"] = 100.0 * fired / ops;
}

bool
pending(const rctx_wheel_timer *t)
{
	return rctx_wheel_timer_pending(t);
}

bool
pending(const rctx_heap_timer *t)
{
	return t->idx != RCTX_HEAP_NONE;
}

template <class Q>
void
ColdCancel(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	Fixture<Q> f(n);
	constexpr size_t kBatch = 8192;
	std::vector<typename Q::Node *> pick(kBatch);
	std::vector<uint8_t> taken(n);
	double ops = 0;

	f.fill();
	for (auto _ : state) {
		/* Distinct random nodes, picked before the clock starts. */
		for (size_t j = 0; j < kBatch; j++) {
			size_t r;

			do
				r = f.rng.next() % n;
			while (taken[r]);
			taken[r] = 1;
			pick[j] = &f.nodes[r];
		}
		double t0 = cpu_now();
		for (auto *t : pick)
			f.q->del(t);
		state.SetIterationTime(cpu_now() - t0);
		for (auto *t : pick) {
			if (pending(t))
				std::abort();
			taken[(size_t)(t - f.nodes.data())] = 0;
			f.q->add(t, f.q->now() +
					(int64_t)(f.rng.next() % kSpread));
		}
		ops += kBatch;
	}
	if (!f.q->check() || f.q->size() != n)
		state.SkipWithError("queue broken after the run");
	per_op(state, ops);
}

/*
 * All n expire in one advance, or (Ticking) over one-tick advances. The
 * time is the advances plus the caller's walk over the returned lists;
 * "adv_ns" is the advances alone, per fired timer.
 */
template <class Q, bool Ticking, bool Ordered>
void
Storm(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	Fixture<Q> f(n);
	double ops = 0, adv = 0;
	int64_t sum = 0;

	for (auto _ : state) {
		int64_t now = f.q->now(), end = now + 2 * kSpread;
		size_t total = 0, k;
		double spent = 0;

		f.fill(Ordered);
		for (int64_t at = Ticking ? now : end; at <= end;
		     at += int64_t{ 1 } << kTickShift) {
			double t0 = cpu_now();
			typename Q::Node *t = f.q->advance(at, &k);
			double t1 = cpu_now();

			for (; t != nullptr; t = t->next)
				sum += t->expires; /* the caller touches each */
			spent += cpu_now() - t0;
			adv += t1 - t0;
			total += k;
		}
		state.SetIterationTime(spent);
		if (total != n || f.q->size() != 0)
			state.SkipWithError("storm lost timers");
		ops += (double)total;
	}
	benchmark::DoNotOptimize(sum);
	per_op(state, ops);
	state.counters["adv_ns"] = adv * 1e9 / ops;
}

using Wheel = WheelQ<true>;
using Coarse = WheelQ<false>;

void
live_sizes(benchmark::internal::Benchmark *b)
{
	b->ArgName("live")->Arg(1000)->Arg(100000)->Arg(1000000);
}

} // namespace

BENCHMARK(ArmCancel<Wheel>)->Name("BM_wheel_ArmCancel")->Apply(live_sizes);
BENCHMARK(ArmCancel<HeapQ>)->Name("BM_heap_ArmCancel")->Apply(live_sizes);

#define MIXED(q, Q, name, fifo)                                                \
	BENCHMARK(Mixed<Q, fifo>)                                              \
	    ->Name("BM_" #q "_" name)                                          \
	    ->ArgName("live")                                                  \
	    ->Arg(1000000)

MIXED(wheel, Wheel, "Mixed", false);
MIXED(coarse, Coarse, "Mixed", false);
MIXED(heap, HeapQ, "Mixed", false);
MIXED(wheel, Wheel, "MixedFifo", true);
MIXED(coarse, Coarse, "MixedFifo", true);
MIXED(heap, HeapQ, "MixedFifo", true);

BENCHMARK(ColdCancel<Wheel>)
    ->Name("BM_wheel_ColdCancel")
    ->ArgName("live")
    ->Arg(1000000)
    ->UseManualTime();
BENCHMARK(ColdCancel<HeapQ>)
    ->Name("BM_heap_ColdCancel")
    ->ArgName("live")
    ->Arg(1000000)
    ->UseManualTime();

#define STORM(q, Q, name, ticking, ordered)                                    \
	BENCHMARK(Storm<Q, ticking, ordered>)                                  \
	    ->Name("BM_" #q "_" name)                                          \
	    ->ArgName("live")                                                  \
	    ->Arg(1000000)                                                     \
	    ->UseManualTime()                                                  \
	    ->Iterations(4)

STORM(wheel, Wheel, "Storm", false, false);
STORM(heap, HeapQ, "Storm", false, false);
STORM(wheel, Wheel, "StormOrdered", false, true);
STORM(heap, HeapQ, "StormOrdered", false, true);
STORM(wheel, Wheel, "StormTicking", true, false);
STORM(coarse, Coarse, "StormTicking", true, false);
STORM(heap, HeapQ, "StormTicking", true, false);

BENCHMARK_MAIN();
