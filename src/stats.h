/* SPDX-License-Identifier: MIT */
/* Statistics and metrics: per-thread counters, summed when read. */
#ifndef RCTX_STATS_H
#define RCTX_STATS_H

#include <errno.h>

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
	/*
	 * The common ends, one counter each so that the hot path writes
	 * once (I4): a context done "plain" (rctx_cancel's defaults:
	 * ECANCELED with cause ECANCELED) counts in DONE_PLAIN, and a plain
	 * leaf cancel (a cascade of one context) in LEAF_PLAIN. The reader
	 * adds both to the ECANCELED cause row and to cancelled, and
	 * LEAF_PLAIN to cascade[1] and cascade_sum.
	 */
	RCTX_STAT_DONE_PLAIN,
	RCTX_STAT_LEAF_PLAIN,
	RCTX_STAT_N
};

/* The final state word of a plain end (see RCTX_STAT_DONE_PLAIN). */
#define RCTX_ST_PLAIN (RCTX_ST_CANCELED | ((uint64_t)ECANCELED << 32))

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
void rctx_stats_done_slow(struct rctx *c, uint64_t old, uint64_t ns, bool leaf);

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

/* Add d to counter i of t, listed (single writer: relaxed, I2). */
static inline void
rctx_stat_bump(struct rctx_tstats *t, enum rctx_stat i, int64_t d)
{
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

/*
 * The state a thread's block must have for a hook to count inline:
 * RCTX_TSTATS_LISTED, or RCTX_TSTATS_SLOW while leak tracking is on
 * (leak.c), so that one compare sends every hook to its slow path, which
 * also feeds the leak table: the hot path tests one byte, not two.
 */
#define RCTX_TSTATS_SLOW 0xff
extern _Atomic uint8_t rctx_stats_fast_state;

static inline bool
rctx_stats_fast(const struct rctx_tstats *t)
{
	/* relaxed: a hook that races a switch of leak tracking counts
	 * either way; the leak table's lock orders the rest (leak.c) */
	return t->state == atomic_load_explicit(&rctx_stats_fast_state,
						memory_order_relaxed);
}

void rctx_stats_made_slow(struct rctx *c, const void *site);
void rctx_stats_freed_slow(struct rctx *c);

/* A context was made at site (api.c, on success). Returns c. */
static inline struct rctx *
rctx_stats_made(struct rctx *c, const void *site)
{
	struct rctx_tstats *t = &rctx_tstats_self;

	if (RCTX_LIKELY(c != NULL)) {
		if (RCTX_LIKELY(rctx_stats_fast(t)))
			rctx_stat_bump(t, RCTX_STAT_CREATED, 1);
		else
			rctx_stats_made_slow(c, site);
	}
	return c;
}

/* A plain end (RCTX_ST_PLAIN) on listed t: see rctx_stats_end. */
static inline void
rctx_stats_end_fast(struct rctx_tstats *t, uint64_t old, bool leaf)
{
	rctx_stat_bump(t, leaf ? RCTX_STAT_LEAF_PLAIN : RCTX_STAT_DONE_PLAIN,
		       1);
	if (old & RCTX_ST_TIMER) /* withdrawn: a plain end is a cancel */
		rctx_stat_bump(t, RCTX_STAT_TIMERS, -1);
}

/*
 * A cancelable context went from state old to done state ns (the winner
 * of its done CAS, or a child born done: old is then its state before).
 * If old carried RCTX_ST_TIMER, the deadline leaves `timers` (I3).
 * leaf: the context was the whole of a cancel's cascade (no descendant
 * marked), which is counted with it.
 */
static inline void
rctx_stats_end(struct rctx *c, uint64_t old, uint64_t ns, bool leaf)
{
	struct rctx_tstats *t = &rctx_tstats_self;

	if (RCTX_LIKELY(rctx_stats_fast(t) &&
			(ns & RCTX_ST_FINAL_MASK) == RCTX_ST_PLAIN))
		rctx_stats_end_fast(t, old, leaf);
	else
		rctx_stats_done_slow(c, old, ns, leaf);
}

static inline void
rctx_stats_done(struct rctx *c, uint64_t old, uint64_t ns)
{
	rctx_stats_end(c, old, ns, false);
}

void rctx_stats_freed_live(struct rctx *c, uint64_t s);

/* c's last reference was dropped (tree.c free_one). */
static inline void
rctx_stats_freed(struct rctx *c)
{
	struct rctx_tstats *t = &rctx_tstats_self;

	if (RCTX_LIKELY(rctx_stats_fast(t)))
		rctx_stat_bump(t, RCTX_STAT_FREED, 1);
	else
		rctx_stats_freed_slow(c);
}

/* The same for a cancelable c, after rctx_stats_freed. */
static inline void
rctx_stats_freed_cancelable(struct rctx *c)
{
	/* relaxed: a racing canceller's CAS is settled in the callee by a
	 * CAS of our own (I3 in stats.c) */
	uint64_t s = atomic_load_explicit(&c->state, memory_order_relaxed);

	if (!(s & RCTX_ST_ERR_MASK))
		rctx_stats_freed_live(c, s);
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
