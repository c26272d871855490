/* SPDX-License-Identifier: MIT */
/* Children set benchmarks: rctx's set against liburcu's cds_lfht (bp). */

/*
 * Names are BM_<set>_<Workload>/<param>, <set> one of rctx (the children
 * set, src/children.c) and lfht (cds_lfht with CDS_LFHT_AUTO_RESIZE |
 * CDS_LFHT_ACCOUNTING, the baseline). Workloads:
 *
 *	InsertRemove/base:N	insert one entry and remove it again, in a
 *				set already holding N entries (one thread)
 *	InsertRemove2T/base:N	the same on two threads at once, one set
 *	Iterate/n:N		walk a set of N entries (per_entry: time
 *				per entry)
 *	IterateShrunk/n:1000	walk 1000 entries left in a set that once
 *				held 100,000
 *	Footprint/n:N		heap bytes per entry (counters; one pass)
 *	Grace			one synchronize_rcu, which lfht needs
 *				before a removed node is inserted again
 *
 * Entries of the rctx set are fake context pointers, 256 bytes apart like
 * the allocator's contexts (the set never dereferences them). lfht nodes
 * are real memory: intrusive nodes as they would sit inside contexts.
 *
 * Reusing an lfht node needs a grace period after its removal (a reader,
 * e.g. the resize worker, may still be on it). The churn loops cycle
 * through RING nodes and run synchronize_rcu every RING/2 operations with
 * the timer paused, so lfht is charged for the set operations only, as
 * the rctx set is (in the library the context's own RCU-deferred free
 * would provide that grace period for an embedded node).
 */

#include <benchmark/benchmark.h>

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <vector>

#include "bench-cset.h"

namespace
{

constexpr uintptr_t entry_base = 0x7f0000000000ull;
constexpr size_t ring = 4096; /* churn entries per thread */

uintptr_t
entry(size_t i)
{
	return entry_base + (uintptr_t)i * 256;
}

/* Entries for thread t's churn: far from the base entries. */
uintptr_t
churn_entry(int t, size_t i)
{
	return entry(((size_t)(t + 1) << 24) + i);
}

void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, nullptr);
}

/* Wait until the heap stops changing (lfht resizes in a worker thread). */
void
settle()
{
	size_t last = bench_heap_in_use();

	for (int i = 0; i < 200; i++) {
		sleep_ms(10);
		size_t now = bench_heap_in_use();

		if (now == last && i >= 2)
			return;
		last = now;
	}
}

/* ---- rctx children set ---- */

struct RctxSet {
	bench_cset *s = bench_cset_new();
	std::vector<void *> slot; /* slot of entry(i), nullptr if out */

	void fill(size_t n)
	{
		slot.resize(n);
		for (size_t i = 0; i < n; i++)
			slot[i] = bench_cset_insert(s, entry(i));
	}
	void remove(size_t i)
	{
		if (slot[i] != nullptr && !bench_cset_remove(slot[i], entry(i)))
			abort();
		slot[i] = nullptr;
	}
	~RctxSet()
	{
		for (size_t i = 0; i < slot.size(); i++)
			remove(i);
		bench_cset_free(s);
	}
};

/* ---- cds_lfht ---- */

struct Nodes {
	size_t nb = bench_lfht_node_bytes();
	char *mem;

	explicit Nodes(size_t n)
	    : mem(static_cast<char *>(aligned_alloc(16, (n ? n : 1) * nb)))
	{
	}
	~Nodes()
	{
		free(mem);
	}
	void *at(size_t i)
	{
		return mem + i * nb;
	}
};

struct LfhtSet {
	bench_lfht *h = bench_lfht_new();
	Nodes nodes;
	std::vector<bool> in;

	explicit LfhtSet(size_t cap) : nodes(cap), in(cap)
	{
	}
	void fill(size_t n)
	{
		for (size_t i = 0; i < n; i++) {
			bench_lfht_add(h, nodes.at(i));
			in[i] = true;
		}
	}
	void remove(size_t i)
	{
		if (in[i] && !bench_lfht_del(h, nodes.at(i)))
			abort();
		in[i] = false;
	}
	~LfhtSet()
	{
		for (size_t i = 0; i < in.size(); i++)
			remove(i);
		bench_lfht_grace(); /* before the nodes' memory goes */
		bench_lfht_free(h);
	}
};

/* ---- insert + remove, one thread ---- */

void
BM_rctx_InsertRemove(benchmark::State &state)
{
	RctxSet set;
	size_t i = 0;

	set.fill((size_t)state.range(0));
	for (auto _ : state) {
		uintptr_t e = churn_entry(0, i++ & (ring - 1));
		void *slot = bench_cset_insert(set.s, e);

		benchmark::DoNotOptimize(slot);
		if (!bench_cset_remove(slot, e))
			abort();
	}
	state.counters["capacity"] = (double)bench_cset_capacity(set.s);
}

void
BM_lfht_InsertRemove(benchmark::State &state)
{
	LfhtSet set((size_t)state.range(0));
	Nodes churn(ring);
	size_t i = 0;

	set.fill((size_t)state.range(0));
	settle();
	for (auto _ : state) {
		void *n = churn.at(i & (ring - 1));

		bench_lfht_add(set.h, n);
		if (!bench_lfht_del(set.h, n))
			abort();
		if ((++i & (ring / 2 - 1)) == 0) {
			state.PauseTiming();
			bench_lfht_grace();
			state.ResumeTiming();
		}
	}
	bench_lfht_grace();
}

/* ---- insert + remove, two threads, one set ---- */

RctxSet *shared_rctx;
LfhtSet *shared_lfht;

void
BM_rctx_InsertRemove2T(benchmark::State &state)
{
	int t = state.thread_index();
	size_t i = 0;

	if (t == 0) {
		shared_rctx = new RctxSet;
		shared_rctx->fill((size_t)state.range(0));
	}
	/* the loop starts when every thread is here (benchmark's barrier) */
	for (auto _ : state) {
		uintptr_t e = churn_entry(t, i++ & (ring - 1));
		void *slot = bench_cset_insert(shared_rctx->s, e);

		benchmark::DoNotOptimize(slot);
		if (!bench_cset_remove(slot, e))
			abort();
	}
	state.SetItemsProcessed(state.iterations());
	if (t == 0) {
		/* every thread has left the loop */
		state.counters["capacity"] =
		    (double)bench_cset_capacity(shared_rctx->s);
		delete shared_rctx;
		shared_rctx = nullptr;
	}
}

void
BM_lfht_InsertRemove2T(benchmark::State &state)
{
	int t = state.thread_index();
	Nodes churn(ring);
	size_t i = 0;

	if (t == 0) {
		shared_lfht = new LfhtSet((size_t)state.range(0));
		shared_lfht->fill((size_t)state.range(0));
		settle();
	}
	for (auto _ : state) {
		void *n = churn.at(i & (ring - 1));

		bench_lfht_add(shared_lfht->h, n);
		if (!bench_lfht_del(shared_lfht->h, n))
			abort();
		if ((++i & (ring / 2 - 1)) == 0) {
			state.PauseTiming();
			bench_lfht_grace();
			state.ResumeTiming();
		}
	}
	state.SetItemsProcessed(state.iterations());
	bench_lfht_grace(); /* before this thread's nodes go */
	if (t == 0) {
		delete shared_lfht;
		shared_lfht = nullptr;
	}
}

/* ---- iteration ---- */

void
per_entry(benchmark::State &state, size_t n)
{
	/* entries per second, inverted: seconds per entry (shown as ns) */
	state.counters["per_entry"] = benchmark::Counter(
	    (double)n, benchmark::Counter::kIsIterationInvariantRate |
			   benchmark::Counter::kInvert);
}

void
BM_rctx_Iterate(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	RctxSet set;

	set.fill(n);
	for (auto _ : state)
		benchmark::DoNotOptimize(bench_cset_walk(set.s));
	per_entry(state, n);
}

void
BM_lfht_Iterate(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	LfhtSet set(n);

	set.fill(n);
	settle();
	for (auto _ : state)
		benchmark::DoNotOptimize(bench_lfht_walk(set.h));
	per_entry(state, n);
}

/* 100,000 in, then all but the first n out: the walk cost of a set that
 * once was big (rctx keeps its tables; lfht shrinks in the background) */
constexpr size_t shrunk_from = 100000;

void
BM_rctx_IterateShrunk(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	RctxSet set;

	set.fill(shrunk_from);
	for (size_t i = n; i < shrunk_from; i++)
		set.remove(i);
	if (bench_cset_count(set.s) != n)
		abort();
	for (auto _ : state)
		benchmark::DoNotOptimize(bench_cset_walk(set.s));
	per_entry(state, n);
	state.counters["capacity"] = (double)bench_cset_capacity(set.s);
}

void
BM_lfht_IterateShrunk(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	LfhtSet set(shrunk_from);

	set.fill(shrunk_from);
	settle();
	for (size_t i = n; i < shrunk_from; i++)
		set.remove(i);
	settle();
	if (bench_lfht_count(set.h) != n)
		abort();
	for (auto _ : state)
		benchmark::DoNotOptimize(bench_lfht_walk(set.h));
	per_entry(state, n);
}

/* ---- memory footprint ---- */

void
BM_rctx_Footprint(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	double heap = 0, calc = 0;

	for (auto _ : state) {
		state.PauseTiming();
		{
			RctxSet set;

			set.slot.reserve(n); /* not the set's memory */
			size_t before = bench_heap_in_use();
			set.fill(n);
			size_t after = bench_heap_in_use();
			size_t cap = bench_cset_capacity(set.s);
			size_t inl = bench_cset_inline_bytes();

			/* heap: the extension block and the tables as
			 * malloc holds them, plus the 24-byte set that lives
			 * inside the context */
			heap = (double)(after - before + inl) / (double)n;
			/* calc: slots beyond the inline ones at 8 bytes,
			 * table headers, the block (if any), the inline set */
			size_t tables = bench_cset_tables(set.s);
			calc = (double)((cap - bench_cset_inline_slots()) * 8 +
					tables * bench_cset_table_header() +
					(tables ? bench_cset_ext_bytes() : 0) +
					inl) /
			       (double)n;
			state.counters["capacity"] = (double)cap;
			state.counters["tables"] =
			    (double)bench_cset_tables(set.s);
		}
		state.ResumeTiming();
	}
	state.counters["B_per_entry_heap"] = heap;
	state.counters["B_per_entry_calc"] = calc;
}

void
BM_lfht_Footprint(benchmark::State &state)
{
	size_t n = (size_t)state.range(0);
	double heap = 0, total = 0;

	for (auto _ : state) {
		state.PauseTiming();
		{
			Nodes nodes(n); /* counted separately below */
			settle();
			size_t before = bench_heap_in_use();
			bench_lfht *h = bench_lfht_new();

			for (size_t i = 0; i < n; i++)
				bench_lfht_add(h, nodes.at(i));
			settle();
			size_t after = bench_heap_in_use();

			/* heap: the table object and its buckets (nodes
			 * excluded); total: plus one intrusive node (16 B)
			 * per entry */
			heap = (double)(after - before) / (double)n;
			total = heap + (double)bench_lfht_node_bytes();
			for (size_t i = 0; i < n; i++)
				bench_lfht_del(h, nodes.at(i));
			bench_lfht_grace();
			bench_lfht_free(h);
		}
		state.ResumeTiming();
	}
	state.counters["B_per_entry_heap"] = heap;
	state.counters["B_per_entry_total"] = total;
}

void
BM_lfht_Grace(benchmark::State &state)
{
	for (auto _ : state)
		bench_lfht_grace();
}

} // namespace

BENCHMARK(BM_rctx_InsertRemove)
    ->ArgName("base")
    ->Arg(0)
    ->Arg(4)
    ->Arg(1000)
    ->Arg(100000);
BENCHMARK(BM_lfht_InsertRemove)
    ->ArgName("base")
    ->Arg(0)
    ->Arg(4)
    ->Arg(1000)
    ->Arg(100000);
BENCHMARK(BM_rctx_InsertRemove2T)
    ->ArgName("base")
    ->Arg(0)
    ->Arg(1000)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_lfht_InsertRemove2T)
    ->ArgName("base")
    ->Arg(0)
    ->Arg(1000)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_rctx_Iterate)->ArgName("n")->Arg(1000)->Arg(100000);
BENCHMARK(BM_lfht_Iterate)->ArgName("n")->Arg(1000)->Arg(100000);
BENCHMARK(BM_rctx_IterateShrunk)->ArgName("n")->Arg(1000);
BENCHMARK(BM_lfht_IterateShrunk)->ArgName("n")->Arg(1000);
BENCHMARK(BM_rctx_Footprint)
    ->ArgName("n")
    ->Arg(4)
    ->Arg(1000)
    ->Arg(100000)
    ->Iterations(1);
BENCHMARK(BM_lfht_Footprint)
    ->ArgName("n")
    ->Arg(4)
    ->Arg(1000)
    ->Arg(100000)
    ->Iterations(1);
BENCHMARK(BM_lfht_Grace);

BENCHMARK_MAIN();
