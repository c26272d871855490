/* SPDX-License-Identifier: MIT */
/* Context benchmarks: rctx against the mutex baseline and std::stop_source. */

/*
 * Every workload runs for three libraries, under the names
 *
 *	BM_<lib>_<Workload>[/<param>:<value>...]
 *
 * with <lib> one of rctx, mctx (bench/baseline, Go's design with locks)
 * and std (C++20 std::stop_source/std::stop_callback, only where it has
 * the operation). <Workload> is the join key with the Go benchmarks: the
 * table in perf/report.py maps each one to its Go name.
 *
 * Each benchmark reports ns/op (real time) and, like Go's -benchmem,
 * allocs/op and B/op from the malloc interposer in alloc-count.cc. The
 * workloads whose op is "one child" or "one level" measure a batch and
 * report the time per child or level themselves (manual time), so every
 * ns/op printed here is already per op.
 *
 * The std "context" is a stop_source; a child under a live parent is a
 * stop_source plus a stop_callback on the parent's token that requests
 * stop on the child, which is how C++20 code links cancellation.
 */

#include <benchmark/benchmark.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "mctx.h"
#include "rctx.h"

#include "alloc-count.h"
/*
 * bench/meson.build compiles one source per benchmark program; the
 * interposer must live in the executable, so it is compiled in here.
 */
#include "alloc-count.cc"

namespace {

/* ------------------------------------------------------------------ */
/* Library traits: one interface over rctx and mctx.                    */

struct RctxLib {
	using ctx_t = rctx_t;
	using after_t = rctx_after_t;
	static constexpr const char *name = "rctx";
	static constexpr int64_t sec = RCTX_SEC;
	static ctx_t *background() { return rctx_background(); }
	static ctx_t *with_cancel(ctx_t *p) { return rctx_with_cancel(p); }
	static ctx_t *with_timeout(ctx_t *p, int64_t t)
	{
		return rctx_with_timeout(p, t);
	}
	static ctx_t *with_value(ctx_t *p, const void *k, void *v)
	{
		return rctx_with_value(p, k, v);
	}
	static int cancel(ctx_t *c) { return rctx_cancel(c); }
	static int cancel_cause(ctx_t *c, int cause)
	{
		return rctx_cancel_cause(c, cause);
	}
	static void release(ctx_t *c) { rctx_release(c); }
	static int err(const ctx_t *c) { return rctx_err(c); }
	static int cause(const ctx_t *c) { return rctx_cause(c); }
	static bool done(const ctx_t *c) { return rctx_done(c); }
	static void *value(const ctx_t *c, const void *k)
	{
		return rctx_value(c, k);
	}
	static int fd(ctx_t *c) { return rctx_fd(c); }
	static int after_func(ctx_t *c, after_t *r, void (*fn)(void *), void *a)
	{
		return rctx_after_func(c, r, fn, a);
	}
	static bool after_stop(after_t *r) { return rctx_after_stop(r); }
};

struct MctxLib {
	using ctx_t = mctx_t;
	using after_t = mctx_after_t;
	static constexpr const char *name = "mctx";
	static constexpr int64_t sec = MCTX_SEC;
	static ctx_t *background() { return mctx_background(); }
	static ctx_t *with_cancel(ctx_t *p) { return mctx_with_cancel(p); }
	static ctx_t *with_timeout(ctx_t *p, int64_t t)
	{
		return mctx_with_timeout(p, t);
	}
	static ctx_t *with_value(ctx_t *p, const void *k, void *v)
	{
		return mctx_with_value(p, k, v);
	}
	static int cancel(ctx_t *c) { return mctx_cancel(c); }
	static int cancel_cause(ctx_t *c, int cause)
	{
		return mctx_cancel_cause(c, cause);
	}
	static void release(ctx_t *c) { mctx_release(c); }
	static int err(const ctx_t *c) { return mctx_err(c); }
	static int cause(const ctx_t *c) { return mctx_cause(c); }
	static bool done(const ctx_t *c) { return mctx_done(c); }
	static void *value(const ctx_t *c, const void *k)
	{
		return mctx_value(c, k);
	}
	static int fd(ctx_t *c) { return mctx_fd(c); }
	static int after_func(ctx_t *c, after_t *r, void (*fn)(void *), void *a)
	{
		return mctx_after_func(c, r, fn, a);
	}
	static bool after_stop(after_t *r) { return mctx_after_stop(r); }
};

/* std: a child stop_source linked to its parent's token. */
struct StdForward {
	std::stop_source *to;
	void operator()() noexcept { to->request_stop(); }
};

struct StdChild {
	std::stop_source src;
	std::stop_callback<StdForward> link;

	explicit StdChild(const std::stop_token &parent)
	    : src(), link(parent, StdForward{ &src })
	{
	}
	StdChild(const StdChild &) = delete;
	StdChild &operator=(const StdChild &) = delete;
};

struct StdCount {
	std::atomic<uint64_t> *n;
	void operator()() noexcept
	{
		/* relaxed: a statistic, read after the benchmark joins */
		n->fetch_add(1, std::memory_order_relaxed);
	}
};

std::atomic<uint64_t> fired;

void
count_fire(void *arg)
{
	/* relaxed: a statistic, read after the benchmark joins */
	static_cast<std::atomic<uint64_t> *>(arg)->fetch_add(1,
		std::memory_order_relaxed);
}

void
noop_fn(void *arg)
{
	(void)arg;
}

/* ------------------------------------------------------------------ */
/* Allocation meter: Go's allocs/op and B/op.                           */

class AllocMeter {
public:
	/* per: ops per iteration (children, levels) when the time is per op */
	explicit AllocMeter(benchmark::State &st, double per = 1.0)
	    : st_(st), per_(per)
	{
		resume();
	}

	/* Count only between resume() and pause() (Go's StopTimer). */
	void
	pause()
	{
		struct alloc_counts now;

		alloc_count_read(&now);
		allocs_ += now.allocs - start_.allocs;
		bytes_ += now.bytes - start_.bytes;
		running_ = false;
	}

	void
	resume()
	{
		alloc_count_read(&start_);
		running_ = true;
	}

	void
	report()
	{
		if (running_)
			pause();
		st_.counters["allocs/op"] = benchmark::Counter(
			double(allocs_) / per_,
			benchmark::Counter::kAvgIterations);
		st_.counters["B/op"] = benchmark::Counter(double(bytes_) / per_,
			benchmark::Counter::kAvgIterations);
	}

private:
	benchmark::State &st_;
	double per_;
	struct alloc_counts start_;
	uint64_t allocs_ = 0, bytes_ = 0;
	bool running_ = false;
};

double
now_sec()
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

#define NEED(st, x)                                                       \
	do {                                                              \
		if (!(x)) {                                               \
			(st).SkipWithError("failed: " #x);                \
			return;                                           \
		}                                                         \
	} while (0)

/* Keys: addresses of distinct static bytes. */
char key_a, key_b;
int val_a = 1, val_b = 2;

/* ------------------------------------------------------------------ */
/* DeriveCancelRelease/parent:{background,live,value3}                  */

enum ParentKind { PARENT_BACKGROUND, PARENT_LIVE, PARENT_VALUE3 };

char value3_keys[3];

template <class L>
void
derive_cancel_release(benchmark::State &st, ParentKind kind)
{
	typename L::ctx_t *live = nullptr, *vals[3] = {}, *p = L::background();

	if (kind != PARENT_BACKGROUND) {
		live = L::with_cancel(p);
		NEED(st, live);
		p = live;
	}
	if (kind == PARENT_VALUE3) {
		for (int i = 0; i < 3; i++) {
			vals[i] = L::with_value(p, &value3_keys[i], &val_a);
			NEED(st, vals[i]);
			p = vals[i];
		}
	}
	AllocMeter m(st);
	for (auto _ : st) {
		typename L::ctx_t *c = L::with_cancel(p);
		L::cancel(c);
		L::release(c);
	}
	m.report();
	for (int i = 2; i >= 0; i--)
		L::release(vals[i]);
	if (live != nullptr) {
		L::cancel(live);
		L::release(live);
	}
}

void
std_derive_cancel_release(benchmark::State &st, ParentKind kind)
{
	std::stop_source parent;
	std::stop_token tok = parent.get_token();
	AllocMeter m(st);

	if (kind == PARENT_BACKGROUND) {
		for (auto _ : st) {
			std::stop_source c;
			c.request_stop();
			benchmark::DoNotOptimize(c);
		}
	} else {
		for (auto _ : st) {
			StdChild c(tok);
			c.src.request_stop();
			benchmark::DoNotOptimize(c);
		}
	}
	m.report();
}

/* ------------------------------------------------------------------ */
/* DeriveFdCancelRelease: Go's lazy Done channel, made every time.      */

template <class L>
void
derive_fd_cancel_release(benchmark::State &st)
{
	AllocMeter m(st);

	for (auto _ : st) {
		typename L::ctx_t *c = L::with_cancel(L::background());
		if (L::fd(c) < 0) {
			L::release(c);
			st.SkipWithError("fd failed");
			break;
		}
		L::cancel(c);
		L::release(c);
	}
	m.report();
}

/* ------------------------------------------------------------------ */
/* WithTimeoutCancel/timers:N: N other deadlines pending meanwhile.     */

/*
 * Building a million timers takes a while, and Google Benchmark calls a
 * benchmark function several times while it sizes the run; the live
 * population is therefore kept between calls and rebuilt only when a
 * benchmark asks for another library or size.
 */
struct Population {
	virtual ~Population() = default;
};

template <class L>
struct TimerPopulation : Population {
	std::vector<typename L::ctx_t *> v;

	explicit TimerPopulation(size_t n)
	{
		v.reserve(n);
		for (size_t i = 0; i < n; i++) {
			/* one hour, spread so they do not share one slot */
			typename L::ctx_t *c = L::with_timeout(L::background(),
				3600 * L::sec + int64_t(i % 4096) * 1000000);
			if (c == nullptr)
				break;
			v.push_back(c);
		}
	}
	~TimerPopulation() override
	{
		for (auto *c : v) {
			L::cancel(c);
			L::release(c);
		}
	}
};

std::unique_ptr<Population> population;
std::string population_key;

void
population_drop()
{
	population.reset();
	population_key.clear();
}

template <class L>
bool
timer_population(size_t n)
{
	std::string key = std::string(L::name) + ":" + std::to_string(n);

	if (population_key == key)
		return true;
	population_drop();
	auto *p = new TimerPopulation<L>(n);
	population.reset(p);
	population_key = key;
	return p->v.size() == n;
}

template <class L>
void
with_timeout_cancel(benchmark::State &st, size_t timers)
{
	NEED(st, timer_population<L>(timers));
	AllocMeter m(st);
	for (auto _ : st) {
		typename L::ctx_t *c = L::with_timeout(L::background(),
			3600 * L::sec);
		L::cancel(c);
		L::release(c);
	}
	m.report();
}

/* ------------------------------------------------------------------ */
/* WithValue                                                            */

template <class L>
void
with_value(benchmark::State &st)
{
	AllocMeter m(st);

	for (auto _ : st) {
		typename L::ctx_t *c = L::with_value(L::background(), &key_a,
			&val_a);
		L::release(c);
	}
	m.report();
}

/* ------------------------------------------------------------------ */
/* Value/depth:D/find:{nearest,deepest,miss}                            */

enum Find { FIND_NEAREST, FIND_DEEPEST, FIND_MISS };

template <class L>
void
value_lookup(benchmark::State &st, int depth, Find find)
{
	std::vector<char> keys(size_t(depth) + 1);
	std::vector<typename L::ctx_t *> chain;
	typename L::ctx_t *live = L::with_cancel(L::background());
	typename L::ctx_t *p = live;

	NEED(st, live);
	for (int i = 0; i < depth; i++) {
		p = L::with_value(p, &keys[size_t(i)], &keys[size_t(i)]);
		NEED(st, p);
		chain.push_back(p);
	}
	const void *k = find == FIND_NEAREST ? &keys[size_t(depth) - 1] :
		find == FIND_DEEPEST ? &keys[0] : &keys[size_t(depth)];
	void *want = find == FIND_MISS ? nullptr : const_cast<void *>(k);
	if (L::value(p, k) != want) {
		st.SkipWithError("wrong value");
	} else {
		AllocMeter m(st);
		for (auto _ : st)
			benchmark::DoNotOptimize(L::value(p, k));
		m.report();
	}
	for (size_t i = chain.size(); i-- > 0;)
		L::release(chain[i]);
	L::cancel(live);
	L::release(live);
}

/* ------------------------------------------------------------------ */
/* CancelFanout/children:N (time per child)                             */

/*
 * One op is one child cancelled by its parent's cancel. Each iteration
 * builds groups of N children (enough groups for 10,000 children, so the
 * clock reads cost nothing per child), times only the parents' cancels,
 * and releases everything outside the timed region. Allocations are
 * counted in the timed region only, as Go's StopTimer does.
 */
size_t
fanout_groups(size_t n)
{
	return n >= 10000 ? 1 : 10000 / n;
}

template <class L>
void
cancel_fanout(benchmark::State &st, size_t n)
{
	size_t groups = fanout_groups(n);
	std::vector<typename L::ctx_t *> parents(groups);
	std::vector<typename L::ctx_t *> kids(groups * n);
	AllocMeter m(st, double(groups * n));

	m.pause();
	for (auto _ : st) {
		for (size_t g = 0; g < groups; g++) {
			parents[g] = L::with_cancel(L::background());
			NEED(st, parents[g]);
			for (size_t i = 0; i < n; i++) {
				kids[g * n + i] = L::with_cancel(parents[g]);
				NEED(st, kids[g * n + i]);
			}
		}
		m.resume();
		double t0 = now_sec();
		for (size_t g = 0; g < groups; g++)
			L::cancel(parents[g]);
		double t1 = now_sec();
		m.pause();
		for (size_t i = 0; i < groups * n; i++) {
			if (!L::done(kids[i])) {
				st.SkipWithError("child not done");
				return;
			}
			L::release(kids[i]);
		}
		for (size_t g = 0; g < groups; g++)
			L::release(parents[g]);
		st.SetIterationTime((t1 - t0) / double(groups * n));
	}
	m.report();
}

void
std_cancel_fanout(benchmark::State &st, size_t n)
{
	size_t groups = fanout_groups(n);
	AllocMeter m(st, double(groups * n));

	m.pause();
	for (auto _ : st) {
		std::vector<std::stop_source> parents(groups);
		std::vector<std::unique_ptr<StdChild>> kids;
		kids.reserve(groups * n);
		for (size_t g = 0; g < groups; g++)
			for (size_t i = 0; i < n; i++)
				kids.push_back(std::make_unique<StdChild>(
					parents[g].get_token()));
		m.resume();
		double t0 = now_sec();
		for (size_t g = 0; g < groups; g++)
			parents[g].request_stop();
		double t1 = now_sec();
		m.pause();
		for (auto &k : kids) {
			if (!k->src.stop_requested()) {
				st.SkipWithError("child not stopped");
				return;
			}
		}
		kids.clear();
		st.SetIterationTime((t1 - t0) / double(groups * n));
	}
	m.report();
}

/* ------------------------------------------------------------------ */
/* ChainCancel/depth:D: build a chain, cancel its root, release (per level) */

template <class L>
void
chain_cancel(benchmark::State &st, size_t depth)
{
	std::vector<typename L::ctx_t *> chain(depth);
	AllocMeter m(st, double(depth));

	for (auto _ : st) {
		double t0 = now_sec();
		typename L::ctx_t *p = L::background();
		for (size_t i = 0; i < depth; i++) {
			p = L::with_cancel(p);
			chain[i] = p;
		}
		L::cancel(chain[0]);
		for (size_t i = depth; i-- > 0;)
			L::release(chain[i]);
		double t1 = now_sec();
		st.SetIterationTime((t1 - t0) / double(depth));
	}
	m.report();
}

void
std_chain_cancel(benchmark::State &st, size_t depth)
{
	AllocMeter m(st, double(depth));

	for (auto _ : st) {
		double t0 = now_sec();
		std::stop_source root;
		std::vector<std::unique_ptr<StdChild>> chain;
		chain.reserve(depth - 1);
		std::stop_token tok = root.get_token();
		for (size_t i = 1; i < depth; i++) {
			chain.push_back(std::make_unique<StdChild>(tok));
			tok = chain.back()->src.get_token();
		}
		root.request_stop();
		if (!tok.stop_requested()) {
			st.SkipWithError("leaf not stopped");
			return;
		}
		while (!chain.empty())
			chain.pop_back();
		double t1 = now_sec();
		st.SetIterationTime((t1 - t0) / double(depth));
	}
	m.report();
}

/* ------------------------------------------------------------------ */
/* Observers on a live context: DonePoll, Err, Cause                   */

enum Observer { OBS_DONE, OBS_ERR, OBS_CAUSE };

template <class L>
void
observe(benchmark::State &st, Observer what)
{
	typename L::ctx_t *c = L::with_cancel(L::background());

	NEED(st, c);
	{
		AllocMeter m(st);
		switch (what) {
		case OBS_DONE:
			for (auto _ : st)
				benchmark::DoNotOptimize(L::done(c));
			break;
		case OBS_ERR:
			for (auto _ : st)
				benchmark::DoNotOptimize(L::err(c));
			break;
		case OBS_CAUSE:
			for (auto _ : st)
				benchmark::DoNotOptimize(L::cause(c));
			break;
		}
		m.report();
	}
	L::cancel(c);
	L::release(c);
}

void
std_done_poll(benchmark::State &st)
{
	std::stop_source s;
	std::stop_token tok = s.get_token();
	AllocMeter m(st);

	for (auto _ : st)
		benchmark::DoNotOptimize(tok.stop_requested());
	m.report();
}

/* ------------------------------------------------------------------ */
/* AfterFunc/op:{register-stop,register-fire}                           */

template <class L>
void
after_register_stop(benchmark::State &st)
{
	typename L::ctx_t *c = L::with_cancel(L::background());
	typename L::after_t reg;

	NEED(st, c);
	{
		AllocMeter m(st);
		for (auto _ : st) {
			L::after_func(c, &reg, noop_fn, nullptr);
			if (!L::after_stop(&reg)) {
				st.SkipWithError("stop returned false");
				break;
			}
		}
		m.report();
	}
	L::cancel(c);
	L::release(c);
}

template <class L>
void
after_register_fire(benchmark::State &st)
{
	typename L::ctx_t *parent = L::with_cancel(L::background());
	typename L::after_t reg;

	NEED(st, parent);
	/* relaxed: single-threaded here; fn runs on this thread */
	fired.store(0, std::memory_order_relaxed);
	{
		AllocMeter m(st);
		for (auto _ : st) {
			typename L::ctx_t *c = L::with_cancel(parent);
			L::after_func(c, &reg, count_fire, &fired);
			L::cancel(c);
			L::release(c);
		}
		m.report();
	}
	/* relaxed: fn ran on this thread */
	if (fired.load(std::memory_order_relaxed) != uint64_t(st.iterations()))
		st.SkipWithError("fn did not run once per op");
	L::cancel(parent);
	L::release(parent);
}

void
std_after_register_stop(benchmark::State &st)
{
	std::stop_source s;
	std::stop_token tok = s.get_token();
	AllocMeter m(st);

	for (auto _ : st) {
		std::stop_callback<StdCount> cb(tok, StdCount{ &fired });
		benchmark::DoNotOptimize(cb);
	}
	m.report();
}

void
std_after_register_fire(benchmark::State &st)
{
	std::stop_source parent;
	std::stop_token ptok = parent.get_token();
	AllocMeter m(st);

	/* relaxed: single-threaded here */
	fired.store(0, std::memory_order_relaxed);
	for (auto _ : st) {
		StdChild c(ptok);
		std::stop_callback<StdCount> cb(c.src.get_token(),
			StdCount{ &fired });
		c.src.request_stop();
	}
	m.report();
	/* relaxed: callbacks ran on this thread */
	if (fired.load(std::memory_order_relaxed) != uint64_t(st.iterations()))
		st.SkipWithError("callback did not run once per op");
}

/* ------------------------------------------------------------------ */
/* SharedParent: every thread derives and cancels under one parent.     */

void *shared_parent;
std::stop_source *shared_std;

template <class L>
void
shared_parent_bench(benchmark::State &st)
{
	if (st.thread_index() == 0)
		shared_parent = L::with_cancel(L::background());
	/* the benchmark loop starts behind a barrier: thread 0's store is seen */
	AllocMeter m(st);
	for (auto _ : st) {
		auto *p = static_cast<typename L::ctx_t *>(shared_parent);
		typename L::ctx_t *c = L::with_cancel(p);
		L::cancel(c);
		L::release(c);
	}
	m.report();
	/* the loop also ends behind a barrier: nobody uses the parent now */
	if (st.thread_index() == 0) {
		auto *p = static_cast<typename L::ctx_t *>(shared_parent);
		L::cancel(p);
		L::release(p);
		shared_parent = nullptr;
	}
}

void
std_shared_parent(benchmark::State &st)
{
	if (st.thread_index() == 0)
		shared_std = new std::stop_source();
	AllocMeter m(st);
	for (auto _ : st) {
		StdChild c(shared_std->get_token());
		c.src.request_stop();
		benchmark::DoNotOptimize(c);
	}
	m.report();
	if (st.thread_index() == 0) {
		delete shared_std;
		shared_std = nullptr;
	}
}

/* ------------------------------------------------------------------ */
/* Request: the shape of one server request.                            */

/*
 * Per op: a request context with a 1 s timeout under a long-lived root,
 * two values, three sub-calls each with its own timeout doing a value
 * lookup and an err check, then everything cancelled and released.
 */
template <class L>
void
request(benchmark::State &st)
{
	typename L::ctx_t *root = L::with_cancel(L::background());

	NEED(st, root);
	{
		AllocMeter m(st);
		for (auto _ : st) {
			typename L::ctx_t *r = L::with_timeout(root, L::sec);
			typename L::ctx_t *v1 = L::with_value(r, &key_a,
				&val_a);
			typename L::ctx_t *v2 = L::with_value(v1, &key_b,
				&val_b);
			for (int i = 0; i < 3; i++) {
				typename L::ctx_t *s = L::with_timeout(v2,
					L::sec / 10);
				benchmark::DoNotOptimize(L::value(s, &key_a));
				benchmark::DoNotOptimize(L::err(s));
				L::cancel(s);
				L::release(s);
			}
			L::cancel(r);
			L::release(v2);
			L::release(v1);
			L::release(r);
		}
		m.report();
	}
	L::cancel(root);
	L::release(root);
}

/* ------------------------------------------------------------------ */
/* Parallel: the same op on every thread, with and without a shared line */

/*
 * Parallel/op:{derive,timeout,request}/parent:{shared,own,background}
 * runs one op on each of T threads (Google Benchmark's /threads:T) and
 * reports wall time over all threads' ops, as SharedParent does:
 *	derive	with_cancel(parent), cancel, release
 *	timeout	with_timeout(parent, 1 h), cancel, release
 *	request	the Request op below, rooted at parent
 * parent:shared is one live context made by thread 0 for all threads,
 * parent:own a live context per thread, parent:background the background
 * context. Comparing own with background and with 1 thread shows what
 * the threads share besides the parent (timer staging, the allocator's
 * pool, global counters). A thread's own parent is made in its first
 * iteration: before the start barrier thread 0 may be resetting the
 * library (reg() below).
 */
enum ParOp { PAR_DERIVE, PAR_TIMEOUT, PAR_REQUEST };
enum ParParent { PAR_SHARED, PAR_OWN, PAR_BACKGROUND };

void *par_shared;

template <class L>
inline void
request_op(typename L::ctx_t *root)
{
	typename L::ctx_t *r = L::with_timeout(root, L::sec);
	typename L::ctx_t *v1 = L::with_value(r, &key_a, &val_a);
	typename L::ctx_t *v2 = L::with_value(v1, &key_b, &val_b);

	for (int i = 0; i < 3; i++) {
		typename L::ctx_t *s = L::with_timeout(v2, L::sec / 10);
		benchmark::DoNotOptimize(L::value(s, &key_a));
		benchmark::DoNotOptimize(L::err(s));
		L::cancel(s);
		L::release(s);
	}
	L::cancel(r);
	L::release(v2);
	L::release(v1);
	L::release(r);
}

template <class L>
void
parallel_bench(benchmark::State &st, ParOp op, ParParent pk)
{
	typename L::ctx_t *own = nullptr, *p = L::background();

	if (pk == PAR_SHARED && st.thread_index() == 0)
		par_shared = L::with_cancel(L::background());
	/* the loop starts behind a barrier: thread 0's store is seen */
	AllocMeter m(st);
	for (auto _ : st) {
		if (pk == PAR_SHARED) {
			p = static_cast<typename L::ctx_t *>(par_shared);
		} else if (pk == PAR_OWN && own == nullptr) {
			own = L::with_cancel(L::background());
			p = own;
		}
		if (op == PAR_REQUEST) {
			request_op<L>(p);
		} else {
			typename L::ctx_t *c = op == PAR_DERIVE ?
				L::with_cancel(p) :
				L::with_timeout(p, 3600 * L::sec);
			L::cancel(c);
			L::release(c);
		}
	}
	m.report();
	if (own != nullptr) {
		L::cancel(own);
		L::release(own);
	}
	/* the loop ends behind a barrier: nobody uses the shared parent */
	if (pk == PAR_SHARED && st.thread_index() == 0) {
		auto *sp = static_cast<typename L::ctx_t *>(par_shared);
		L::cancel(sp);
		L::release(sp);
		par_shared = nullptr;
	}
}

/* ------------------------------------------------------------------ */
/* ColdDerive: mallocs per context before any cache is warm.            */

/*
 * Registered first and run once: 10,000 contexts held at the same time,
 * so no free list can serve them. allocs/op is the number of malloc calls
 * per context in that cold phase (the target is at most one).
 */
template <class L>
void
cold_derive(benchmark::State &st)
{
	const size_t n = 10000;
	std::vector<typename L::ctx_t *> v(n);
	AllocMeter m(st, double(n));

	for (auto _ : st) {
		double t0 = now_sec();
		for (size_t i = 0; i < n; i++)
			v[i] = L::with_cancel(L::background());
		double t1 = now_sec();
		st.SetIterationTime((t1 - t0) / double(n));
		/* count only the derivations */
		m.report();
		for (size_t i = 0; i < n; i++) {
			L::cancel(v[i]);
			L::release(v[i]);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Registration                                                         */

benchmark::internal::Benchmark *
reg(const char *lib, const std::string &name,
    std::function<void(benchmark::State &)> fn)
{
	std::string full = std::string("BM_") + lib + "_" + name;
	bool timers = name.rfind("WithTimeoutCancel/", 0) == 0;

	/*
	 * Work a library defers to its own threads (RCU reclamation, the
	 * timer service freeing a million released timers) must not spill
	 * into the next benchmark on a 2-core machine: drop the live-timer
	 * population and let both libraries drain and stop their threads
	 * (they restart lazily) before each run, outside the timed loop.
	 * WithTimeoutCancel keeps its population alive between its calls.
	 * In threaded runs only thread 0 does it: the others touch no
	 * context before the loop's start barrier, which thread 0 reaches
	 * after this.
	 */
	return benchmark::RegisterBenchmark(full.c_str(),
		[fn, timers](benchmark::State &st) {
			if (!timers && st.thread_index() == 0) {
				population_drop();
				rctx_shutdown();
				mctx_shutdown();
			}
			fn(st);
		});
}

const char *const parent_names[] = { "background", "live", "value3" };

template <class L>
void
register_lib()
{
	const char *n = L::name;

	reg(n, "ColdDerive", cold_derive<L>)->UseManualTime()->Iterations(1)
		->Repetitions(1);
	for (int k = PARENT_BACKGROUND; k <= PARENT_VALUE3; k++)
		reg(n, std::string("DeriveCancelRelease/parent:") +
			parent_names[k], [k](benchmark::State &st) {
			derive_cancel_release<L>(st, ParentKind(k));
		});
	reg(n, "DeriveFdCancelRelease", derive_fd_cancel_release<L>);
	static const char *const tnames[] = { "1k", "100k", "1M" };
	static const size_t tcounts[] = { 1000, 100000, 1000000 };
	for (int i = 0; i < 3; i++) {
		size_t t = tcounts[i];
		reg(n, std::string("WithTimeoutCancel/timers:") + tnames[i],
			[t](benchmark::State &st) {
				with_timeout_cancel<L>(st, t);
			});
	}
	reg(n, "WithValue", with_value<L>);
	static const char *const finds[] = { "nearest", "deepest", "miss" };
	for (int d : { 1, 8, 64, 1000 })
		for (int f = FIND_NEAREST; f <= FIND_MISS; f++)
			reg(n, "Value/depth:" + std::to_string(d) + "/find:" +
				finds[f], [d, f](benchmark::State &st) {
				value_lookup<L>(st, d, Find(f));
			});
	for (size_t c : { 1, 100, 10000, 1000000 })
		reg(n, "CancelFanout/children:" + std::to_string(c),
			[c](benchmark::State &st) {
				cancel_fanout<L>(st, c);
			})->UseManualTime()->Iterations(c >= 1000000 ? 2 : 30);
	reg(n, "ChainCancel/depth:1000", [](benchmark::State &st) {
		chain_cancel<L>(st, 1000);
	})->UseManualTime()->Iterations(300);
	reg(n, "DonePoll", [](benchmark::State &st) {
		observe<L>(st, OBS_DONE);
	});
	reg(n, "Err", [](benchmark::State &st) { observe<L>(st, OBS_ERR); });
	reg(n, "Cause", [](benchmark::State &st) {
		observe<L>(st, OBS_CAUSE);
	});
	reg(n, "AfterFunc/op:register-stop", after_register_stop<L>);
	reg(n, "AfterFunc/op:register-fire", after_register_fire<L>);
	auto *b = reg(n, "SharedParent", shared_parent_bench<L>)
		->UseRealTime();
	for (long t = 1, nproc = sysconf(_SC_NPROCESSORS_ONLN); t <= nproc;
	     t *= 2) {
		b->Threads(int(t));
		if (t < nproc && t * 2 > nproc)
			b->Threads(int(nproc));
	}
	reg(n, "Request", request<L>);
}

void
register_std()
{
	const char *n = "std";

	for (int k = PARENT_BACKGROUND; k <= PARENT_LIVE; k++)
		reg(n, std::string("DeriveCancelRelease/parent:") +
			parent_names[k], [k](benchmark::State &st) {
			std_derive_cancel_release(st, ParentKind(k));
		});
	for (size_t c : { 1, 100, 10000, 1000000 })
		reg(n, "CancelFanout/children:" + std::to_string(c),
			[c](benchmark::State &st) {
				std_cancel_fanout(st, c);
			})->UseManualTime()->Iterations(c >= 1000000 ? 2 : 30);
	reg(n, "ChainCancel/depth:1000", [](benchmark::State &st) {
		std_chain_cancel(st, 1000);
	})->UseManualTime()->Iterations(300);
	reg(n, "DonePoll", std_done_poll);
	reg(n, "AfterFunc/op:register-stop", std_after_register_stop);
	reg(n, "AfterFunc/op:register-fire", std_after_register_fire);
	auto *b = reg(n, "SharedParent", std_shared_parent)->UseRealTime();
	for (long t = 1, nproc = sysconf(_SC_NPROCESSORS_ONLN); t <= nproc;
	     t *= 2) {
		b->Threads(int(t));
		if (t < nproc && t * 2 > nproc)
			b->Threads(int(nproc));
	}
}

/* 1 thread and nproc threads (the rows the report compares). */
void
one_and_nproc(benchmark::internal::Benchmark *b)
{
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);

	b->UseRealTime()->Threads(1);
	if (nproc > 1)
		b->Threads(int(nproc));
}

template <class L>
void
register_parallel()
{
	static const char *const ops[] = { "derive", "timeout", "request" };
	static const char *const parents[] = { "shared", "own",
		"background" };

	for (int o = PAR_DERIVE; o <= PAR_REQUEST; o++)
		for (int k = PAR_SHARED; k <= PAR_BACKGROUND; k++) {
			/* derive under a shared parent is SharedParent */
			if (o == PAR_DERIVE && k == PAR_SHARED)
				continue;
			/* timeout: background is the 1-thread row's twin */
			if (o == PAR_TIMEOUT && k != PAR_BACKGROUND)
				continue;
			one_and_nproc(reg(L::name,
				std::string("Parallel/op:") + ops[o] +
					"/parent:" + parents[k],
				[o, k](benchmark::State &st) {
					parallel_bench<L>(st, ParOp(o),
						ParParent(k));
				}));
		}
}

} /* namespace */

int
main(int argc, char **argv)
{
	register_lib<RctxLib>();
	register_parallel<RctxLib>();
	register_lib<MctxLib>();
	register_std();
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	population_drop();
	rctx_shutdown();
	mctx_shutdown();
	return 0;
}
