/* SPDX-License-Identifier: MIT */
/* Statistics and metrics: per-thread counters, summed when read. */
#ifndef RCTX_STATS_H
#define RCTX_STATS_H

#include "internal.h"
#include "leak.h"

/*
 * Each thread counts into its own block (a thread-local, so no shared
 * cache line is written on derive, cancel or release); rctx_stats sums
 * every registered block plus what exited threads left behind. Only the
 * owner thread writes its counters (a relaxed load and store, no RMW);
 * readers take relaxed loads, so a snapshot is weakly consistent: exact
 * once the threads that count are quiet. A counter may go negative on one
 * thread (a context made here and freed there); only the sum means
 * anything.
 */
enum rctx_stat {
	RCTX_STAT_CREATED,
	RCTX_STAT_FREED, /* live = created - freed, at read */
	/* Contexts done with ECANCELED / ETIMEDOUT, counted here only by a
	 * thread without a metrics block: the others count them in their
	 * cause rows, which the reader adds in (one write per done). */
	RCTX_STAT_CANCELLED,
	RCTX_STAT_TIMED_OUT,
	RCTX_STAT_TIMERS,
	RCTX_STAT_RELEASED_LIVE, /* cancelable, freed before done */
	RCTX_STAT_CASCADE1, /* cascades of one context: cascade[1], at read */
	RCTX_STAT_N
};

/* Metrics, kept beside the counters in a block allocated on first use. */
struct rctx_tmetrics {
	_Atomic uint64_t cause[2][RCTX_METRICS_CAUSES + 1];
	_Atomic uint64_t lateness[RCTX_METRICS_BUCKETS];
	_Atomic uint64_t cascade[RCTX_METRICS_BUCKETS];
	_Atomic uint64_t lateness_sum; /* ns */
	_Atomic uint64_t cascade_sum;  /* contexts */
};

#define RCTX_STAT_CAUSE_ROW ((RCTX_METRICS_CAUSES + 1) * sizeof(uint64_t))

struct rctx_tstats {
	_Atomic int64_t v[RCTX_STAT_N];
	struct rctx_tmetrics *m;	 /* NULL if it could not be allocated */
	uint8_t state;			 /* RCTX_TSTATS_* below; owner only */
	struct rctx_tstats *next, *prev; /* under the registry lock */
};

#define RCTX_TSTATS_NEW	   0 /* not yet registered */
#define RCTX_TSTATS_LISTED 1 /* in the registry: count here */
#define RCTX_TSTATS_GONE   2 /* thread exiting: count into the total */

extern RCTX_TLS struct rctx_tstats rctx_tstats_self;

void rctx_stat_add_slow(enum rctx_stat i, int64_t d);
void rctx_stat_metric_slow(size_t off, unsigned idx, uint64_t d);
void rctx_stats_done_slow(unsigned timedout, unsigned b, bool timer);

static inline void
rctx_stat_add(enum rctx_stat i, int64_t d)
{
	struct rctx_tstats *t = &rctx_tstats_self;

	if (RCTX_UNLIKELY(t->state != RCTX_TSTATS_LISTED)) {
		rctx_stat_add_slow(i, d);
		return;
	}
	/* relaxed: this thread is the only writer; readers want a value,
	 * not an ordering (the snapshot is weakly consistent) */
	atomic_store_explicit(
	    &t->v[i], atomic_load_explicit(&t->v[i], memory_order_relaxed) + d,
	    memory_order_relaxed);
}

/* Log2 bucket of x: 0 for 0, else 1 + floor(log2 x), capped. */
static inline unsigned
rctx_stat_bucket(uint64_t x)
{
	unsigned b = x ? 64u - (unsigned)__builtin_clzll(x) : 0u;

	return b < RCTX_METRICS_BUCKETS ? b : RCTX_METRICS_BUCKETS - 1;
}

/* Add d to element idx of the metric at byte offset off of the block. */
static inline void
rctx_stat_metric(size_t off, unsigned idx, uint64_t d)
{
	struct rctx_tstats *t = &rctx_tstats_self;
	_Atomic uint64_t *p;

	if (RCTX_UNLIKELY(t->state != RCTX_TSTATS_LISTED || t->m == NULL)) {
		rctx_stat_metric_slow(off, idx, d);
		return;
	}
	p = (_Atomic uint64_t *)(void *)((char *)t->m + off) + idx;
	/* relaxed: single writer, as in rctx_stat_add */
	atomic_store_explicit(p,
			      atomic_load_explicit(p, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

/* --- the hooks the tree calls --- */

/* A context was made at site (api.c, on success). Returns c. */
static inline struct rctx *
rctx_stats_made(struct rctx *c, const void *site)
{
	if (RCTX_LIKELY(c != NULL)) {
		rctx_stat_add(RCTX_STAT_CREATED, 1);
		if (RCTX_UNLIKELY(rctx_leak_enabled()))
			rctx_leak_made(c, site);
	}
	return c;
}

/*
 * A cancelable context went from state old to done state ns (the winner
 * of its done CAS, or a child born done: old 0).
 */
static inline void
rctx_stats_done(struct rctx *c, uint64_t old, uint64_t ns)
{
	struct rctx_tstats *t = &rctx_tstats_self;
	unsigned timedout = (ns & RCTX_ST_ERR_MASK) == RCTX_ST_TIMEDOUT;
	int cause = (int)(int32_t)(ns >> 32);
	unsigned b = cause >= 0 && cause < RCTX_METRICS_CAUSES
			 ? (unsigned)cause
			 : RCTX_METRICS_CAUSES;

	if (RCTX_LIKELY(t->state == RCTX_TSTATS_LISTED && t->m != NULL)) {
		_Atomic uint64_t *p = &t->m->cause[timedout][b];

		/* relaxed: single writer, as in rctx_stat_add; this row
		 * also counts the context in cancelled or timed_out */
		atomic_store_explicit(
		    p, atomic_load_explicit(p, memory_order_relaxed) + 1,
		    memory_order_relaxed);
		if (old & RCTX_ST_TIMER) /* withdrawn or fired */
			rctx_stat_add(RCTX_STAT_TIMERS, -1);
	} else {
		rctx_stats_done_slow(timedout, b, old & RCTX_ST_TIMER);
	}
	if (RCTX_UNLIKELY(rctx_leak_enabled()))
		rctx_leak_done(c);
}

/*
 * c's deadline was handed to the timer service: count it, unless c is
 * already done (a racing cancel), in one CAS that sets RCTX_ST_TIMER so
 * that exactly one of done (rctx_stats_done) or free takes it back.
 */
void rctx_stats_timer_armed(struct rctx *c);

void rctx_stats_freed_live(struct rctx *c, uint64_t s);

/* c's last reference was dropped (tree.c free_one). */
static inline void
rctx_stats_freed(struct rctx *c)
{
	rctx_stat_add(RCTX_STAT_FREED, 1);
	if (RCTX_UNLIKELY(rctx_leak_enabled()))
		rctx_leak_freed(c);
	if (c->src == c) {
		/* relaxed: a racing canceller's CAS is settled in the callee
		 * by a CAS of our own (I3 in stats.c) */
		uint64_t s =
		    atomic_load_explicit(&c->state, memory_order_relaxed);

		if (!(s & RCTX_ST_ERR_MASK))
			rctx_stats_freed_live(c, s);
	}
}

/* The deadline of a context that this fire timed out. */
void rctx_stats_late(rctx_time_t deadline);

/* A cancel marked n contexts (itself and its descendants). */
static inline void
rctx_stats_cascade(uint64_t n)
{
	if (RCTX_LIKELY(n == 1)) { /* the common leaf: one counter */
		rctx_stat_add(RCTX_STAT_CASCADE1, 1);
		return;
	}
	rctx_stat_metric(offsetof(struct rctx_tmetrics, cascade),
			 rctx_stat_bucket(n), 1);
	rctx_stat_metric(offsetof(struct rctx_tmetrics, cascade_sum), 0, n);
}

/* Sums (api.c): the five public counters, or the metrics. */
void rctx_stats_read(rctx_stats_t *s);
int rctx_stats_read_metrics(rctx_metrics_t *m); /* 0 or -ENOMEM */

/* rctx_shutdown, last: the blocks fold into the totals, the key goes. */
void rctx_stats_shutdown(void);

#endif /* RCTX_STATS_H */
