/* SPDX-License-Identifier: MIT */
/* Shared test helpers: seeded random numbers, threads, checks, teardown. */
#ifndef RCTX_TEST_UTIL_H
#define RCTX_TEST_UTIL_H

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "rctx.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Size multiplier, set by meson (-Dstress_scale). */
#ifndef RCTX_STRESS_SCALE
#define RCTX_STRESS_SCALE 1
#endif
#define SCALED(n) ((long)(n)*RCTX_STRESS_SCALE)

/* cmocka asserts may only run on the test's own thread: workers abort. */
#define WCHECK(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

/* In a fork child: a failed check exits with status 100, naming the line. */
#define CHILD_CHECK(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "child: line %d: %s\n", __LINE__,      \
				#cond);                                        \
			_exit(100);                                            \
		}                                                              \
	} while (0)

/* ------------------------------------------------------ random numbers */

/*
 * The one generator of the tests: xorshift64* on a never-zero state.
 * Every stream starts from rnd_seed(salt), which mixes the run's base
 * seed with a salt naming the stream (a test, a thread). The base seed
 * is fixed, so runs are deterministic; RCTX_TEST_SEED=<number> replaces
 * it and RCTX_TEST_SEED=random draws one from the clock. The base seed
 * is printed on stderr once per binary, so a failure can be replayed.
 */
#define RCTX_TEST_SEED_DEFAULT 0x5eed2026c0ffee01ull

static inline uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static inline uint64_t
rnd_base_seed(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static bool chosen;
	static uint64_t base;

	pthread_mutex_lock(&lock);
	if (!chosen) {
		const char *e = getenv("RCTX_TEST_SEED");
		struct timespec ts;

		base = RCTX_TEST_SEED_DEFAULT;
		if (e != NULL && strcmp(e, "random") == 0) {
			clock_gettime(CLOCK_REALTIME, &ts);
			base = (uint64_t)ts.tv_sec * 1000000007ull ^
			       (uint64_t)ts.tv_nsec;
		} else if (e != NULL && *e != '\0') {
			base = strtoull(e, NULL, 0);
		}
		fprintf(stderr, "# RCTX_TEST_SEED=0x%016" PRIx64 "\n", base);
		chosen = true;
	}
	pthread_mutex_unlock(&lock);
	return base;
}

/* A stream's starting state: the base seed and salt, mixed (splitmix64). */
static inline uint64_t
rnd_seed(uint64_t salt)
{
	uint64_t z = rnd_base_seed() + (salt + 1) * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return z != 0 ? z : 1;
}

/* A number in [0, n), n > 0. */
static inline uint64_t
rnd_below(uint64_t *s, uint64_t n)
{
	return rnd(s) % n;
}

/* ---------------------------------------------------------- contexts */

static inline bool
readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Block until fd is readable; false only if it never becomes so (the
 * bound is a hang guard, not a timing assertion). */
static inline bool
becomes_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 60 * 1000) == 1 && (p.revents & POLLIN);
}

static inline uint32_t
refs_of(rctx_t *c)
{
	/* relaxed: read while no other thread touches c */
	return atomic_load_explicit(&c->refs, memory_order_relaxed);
}

/* Let every context freed so far reach the allocator's pool. */
static inline void
reclaim(void)
{
	rctx_alloc_flush();
	rctx_alloc_barrier();
}

/* An after-func that counts its runs in the _Atomic int at arg. */
static inline void
count_fn(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
}

/* ------------------------------------------------------------- threads */

/*
 * An event loop's owner: sleep in poll on the loop's fd for the loop's
 * timeout (at most cap_ms), run what is due, until *quit; add what
 * rctx_loop_run returned to *ran.
 */
static inline void
loop_serve(rctx_loop_t *loop, _Atomic int *quit, _Atomic long *ran, int cap_ms)
{
	while (!atomic_load(quit)) {
		int ms = rctx_loop_timeout_ms(loop);
		struct pollfd p = { .fd = rctx_loop_fd(loop),
				    .events = POLLIN };

		(void)poll(&p, 1, ms < 0 || ms > cap_ms ? cap_ms : ms);
		atomic_fetch_add(ran, rctx_loop_run(loop, rctx_now()));
	}
}

static inline void
xpthread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	WCHECK(pthread_create(t, NULL, fn, arg) == 0);
}

#define TG_MAX 64

/* A group of threads started together and joined together. */
struct tgroup {
	pthread_t th[TG_MAX];
	int n;
};

/* Add one thread running fn(arg) to the group. */
static inline void
tg_add(struct tgroup *g, void *(*fn)(void *), void *arg)
{
	WCHECK(g->n < TG_MAX);
	WCHECK(pthread_create(&g->th[g->n], NULL, fn, arg) == 0);
	g->n++;
}

/* Start n threads: thread i runs fn(args + i * size), or fn(NULL). */
static inline void
tg_start(struct tgroup *g, int n, void *(*fn)(void *), void *args, size_t size)
{
	g->n = 0;
	for (int i = 0; i < n; i++)
		tg_add(g, fn, args ? (char *)args + (size_t)i * size : NULL);
}

/* Join every thread of the group; rets[i], if rets, gets i's result. */
static inline void
tg_join(struct tgroup *g, void **rets)
{
	for (int i = 0; i < g->n; i++)
		WCHECK(pthread_join(g->th[i], rets ? &rets[i] : NULL) == 0);
	g->n = 0;
}

/* Run n threads as tg_start does and wait for all of them. */
static inline void
tg_run(int n, void *(*fn)(void *), void *args, size_t size)
{
	struct tgroup g;

	tg_start(&g, n, fn, args, size);
	tg_join(&g, NULL);
}

/*
 * A one-shot start line for `parties` threads: each spins (yielding)
 * until all have arrived, which lines them up closer than a futex
 * barrier does.
 */
struct gate {
	_Atomic int arrived;
	int parties;
};

static inline void
gate_init(struct gate *g, int parties)
{
	atomic_init(&g->arrived, 0);
	g->parties = parties;
}

static inline void
gate_pass(struct gate *g)
{
	/* seq_cst: a counter barrier; pairs with the other parties' add */
	atomic_fetch_add(&g->arrived, 1);
	while (atomic_load(&g->arrived) < g->parties)
		sched_yield();
}

static inline void
spin_delay(long n)
{
	for (volatile long i = n; i > 0; i--)
		;
}

/*
 * Two threads meet: each bumps `arrived` and spins until the other has
 * too. Spinning (yielding only after a long while, so that a descheduled
 * partner still gets a CPU) lines the two up within about a microsecond,
 * where a futex barrier leaves them several microseconds apart. The last
 * to arrive still leaves first, by a cache-line transfer; with `jitter`, a
 * delay that differs from round to round and between the two sides sweeps
 * the offset of the halves across that gap.
 */
static inline void
rendezvous(_Atomic long *arrived, long *gen, unsigned salt, bool jitter)
{
	long target = (*gen += 2);
	unsigned spins = 0;
	uint32_t h = (uint32_t)target * 2654435761u ^ salt;
	/* valgrind runs one thread at a time: spinning only burns time */
	unsigned every = RUNNING_ON_VALGRIND ? 1 : 1u << 16;

	/* seq_cst: pairs with the partner's add and load below */
	atomic_fetch_add(arrived, 1);
	while (atomic_load(arrived) < target)
		if (++spins % every == 0)
			sched_yield();
	if (jitter)
		spin_delay((h >> 11) % 512);
}

/*
 * A pair of threads running one round at a time: main and a side thread
 * meet, each runs its half, and both meet again before main checks the
 * round's outcome.
 */
struct duo {
	_Atomic long arrived;
	long gen_main, gen_side;
	void (*side)(void *);
	void *arg;
	bool quit;
	pthread_t th;
};

static inline void *
duo_main(void *p)
{
	struct duo *d = p;

	for (;;) {
		/* twice: the second meeting finds both threads running */
		rendezvous(&d->arrived, &d->gen_side, 0, false);
		rendezvous(&d->arrived, &d->gen_side, 0x5a5a5a5a, true);
		if (d->quit)
			break;
		d->side(d->arg);
		rendezvous(&d->arrived, &d->gen_side, 0, false);
	}
	return NULL;
}

static inline void
duo_start(struct duo *d, void (*side)(void *), void *arg)
{
	atomic_init(&d->arrived, 0);
	d->gen_main = 0;
	d->gen_side = 0;
	d->side = side;
	d->arg = arg;
	d->quit = false;
	WCHECK(pthread_create(&d->th, NULL, duo_main, d) == 0);
}

static inline void
duo_round(struct duo *d, void (*mine)(void *))
{
	rendezvous(&d->arrived, &d->gen_main, 0, false);
	rendezvous(&d->arrived, &d->gen_main, 0, true);
	mine(d->arg);
	rendezvous(&d->arrived, &d->gen_main, 0, false);
}

static inline void
duo_stop(struct duo *d)
{
	d->quit = true; /* published by the rendezvous' seq_cst add */
	rendezvous(&d->arrived, &d->gen_main, 0, false);
	rendezvous(&d->arrived, &d->gen_main, 0, false);
	WCHECK(pthread_join(d->th, NULL) == 0);
}

/* Pin the calling thread to one CPU (false: the CPU is not ours to use). */
static inline bool
pin_cpu(int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	return sched_setaffinity(0, sizeof(one), &one) == 0 &&
	       sched_getcpu() == cpu;
}

static inline void
unpin(void)
{
	cpu_set_t all;

	CPU_ZERO(&all);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &all);
	sched_setaffinity(0, sizeof(all), &all);
}

/* ------------------------------------------------------------ teardown */

/*
 * Stop the library and report whether every context went back to the
 * system. Only once every thread that used contexts has been joined
 * (their caches go back when they exit).
 */
static inline bool
shutdown_clean(void)
{
	long out;

	rctx_shutdown();
	out = rctx_alloc_outstanding();
	if (out != 0)
		fprintf(stderr, "# %ld contexts outstanding after shutdown\n",
			out);
	return out == 0;
}

/*
 * A test binary's main: RCTX_TEST_ONLY=<pattern> runs a subset (cmocka's
 * filter), then the group runs, then the library shuts down; a context
 * left outstanding fails the binary.
 */
#define RUN_TESTS(tests)                                                       \
	(test_filter_from_env(),                                               \
	 test_finish(cmocka_run_group_tests(tests, NULL, NULL)))

static inline void
test_filter_from_env(void)
{
	const char *only = getenv("RCTX_TEST_ONLY");

	if (only != NULL)
		cmocka_set_test_filter(only);
}

static inline int
test_finish(int failed)
{
	return shutdown_clean() ? failed : failed + 1;
}

/*
 * Leave a test that cannot run in this build or on this machine. Not
 * cmocka's skip(): in TAP mode it prints "not ok N # SKIP", which meson
 * counts as a failure. The reason goes to the log; the test passes.
 */
#define TEST_SKIP(why)                                                         \
	do {                                                                   \
		print_message("# skipped %s: %s\n", __func__, why);            \
		return;                                                        \
	} while (0)

#endif /* RCTX_TEST_UTIL_H */
