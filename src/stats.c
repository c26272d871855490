/* SPDX-License-Identifier: MIT */
/* Statistics and metrics: per-thread counters, summed when read. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fault.h"
#include "fork.h"
#include "registry.h"
#include "stats.h"

/*
 * Invariants
 *  (I1) A thread's block is in the registry (state LISTED) from its first
 *       count until its exit destructor, which folds the block into
 *       `gone` and unlinks it under the registry lock; a count made after
 *       that (a later destructor freeing a context) goes straight into
 *       `gone` under the lock (state GONE). So a reader, holding the lock,
 *       never reads a dead thread's memory, and no count is lost.
 *  (I2) Only the owner thread writes its block's counters; the sums over
 *       `gone` and every listed block change only by adding counts.
 *  (I3) A deadline is in `timers` exactly while its context's state word
 *       carries RCTX_ST_TIMER: the constructor sets the bit in the
 *       initial state, before the context can be seen by another thread
 *       (tree.c, rctx_tree_with_deadline_at), and counts it; whichever
 *       single write clears it takes it back: the CAS that makes the
 *       context done (the bit is never carried into a done state), the
 *       store of a context born done (attach), or the CAS of the free of
 *       a live context. So `timers` also holds a deadline being armed.
 *  (I4) A context made done is counted once, in one place: for a plain
 *       end (rctx_cancel's defaults, RCTX_ST_PLAIN), v[DONE_PLAIN] or, for
 *       a leaf cancel, v[LEAF_PLAIN], which stands for its one-node
 *       cascade too; otherwise the cause row of its thread's metrics
 *       block (or of `gone_m`), or, for a thread without a block,
 *       v[CANCELLED] or v[TIMED_OUT]. Readers add these into the public
 *       counters, the ECANCELED row and cascade[1], so the hot path
 *       writes once.
 *
 * Ordering: counters are relaxed (I2); the registry lock orders a block's
 * registration and retirement with readers. Progress: counting is
 * wait-free; only registration, thread exit and reading take the lock.
 */

RCTX_TLS struct rctx_tstats rctx_tstats_self;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rctx_tstats *registry; /* listed blocks, under the lock */
static int64_t gone[RCTX_STAT_N];    /* exited threads', under the lock */
static struct rctx_tmetrics gone_m;  /* the same for metrics */
static void thread_exit(void *arg);
static struct rctx_tkey exit_key = RCTX_TKEY_INIT(thread_exit);

/* Add block m's metrics into dst (both under the lock or owned). */
static void
metrics_fold(struct rctx_tmetrics *dst, struct rctx_tmetrics *m)
{
	_Atomic uint64_t *d = (_Atomic uint64_t *)(void *)dst;
	_Atomic uint64_t *s = (_Atomic uint64_t *)(void *)m;
	size_t n = sizeof(*m) / sizeof(*s);

	for (size_t i = 0; i < n; i++)
		/* relaxed: the lock (or ownership) orders; see I2 */
		atomic_store_explicit(
		    &d[i],
		    atomic_load_explicit(&d[i], memory_order_relaxed) +
			atomic_load_explicit(&s[i], memory_order_relaxed),
		    memory_order_relaxed);
}

/* Unlink t and fold its counts into `gone` (under the lock). */
static void
retire(struct rctx_tstats *t)
{
	for (int i = 0; i < RCTX_STAT_N; i++)
		/* relaxed: the owner is exiting (or gone, in a fork child) */
		gone[i] += atomic_load_explicit(&t->v[i], memory_order_relaxed);
	if (t->m) {
		metrics_fold(&gone_m, t->m);
		free(t->m);
		t->m = NULL;
	}
	if (t->prev)
		t->prev->next = t->next;
	else
		registry = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->next = t->prev = NULL;
}

static void
thread_exit(void *arg)
{
	struct rctx_tstats *t = arg;

	pthread_mutex_lock(&registry_lock);
	retire(t);
	pthread_mutex_unlock(&registry_lock);
	t->state = RCTX_TSTATS_GONE;
}

/* First count of this thread: list its block. */
static void
tstats_register(struct rctx_tstats *t)
{
	/* Without the destructor the block would outlive its thread in the
	 * registry: count into `gone` instead. */
	if (rctx_tkey_set(&exit_key, t) != 0) {
		t->state = RCTX_TSTATS_GONE;
		return;
	}
	t->m = rctx_malloc(sizeof(*t->m));
	if (t->m)
		memset(t->m, 0, sizeof(*t->m));
	pthread_mutex_lock(&registry_lock);
	t->prev = NULL;
	t->next = registry;
	if (registry)
		registry->prev = t;
	registry = t;
	pthread_mutex_unlock(&registry_lock);
	t->state = RCTX_TSTATS_LISTED;
}

void
rctx_stat_add_slow(enum rctx_stat i, int64_t d)
{
	struct rctx_tstats *t = &rctx_tstats_self;

	if (t->state == RCTX_TSTATS_NEW)
		tstats_register(t);
	if (t->state == RCTX_TSTATS_LISTED) {
		rctx_stat_add(i, d);
		return;
	}
	pthread_mutex_lock(&registry_lock);
	gone[i] += d;
	pthread_mutex_unlock(&registry_lock);
}

void
rctx_stat_metric_slow(size_t off, unsigned idx, uint64_t d)
{
	struct rctx_tstats *t = &rctx_tstats_self;
	_Atomic uint64_t *p;

	if (t->state == RCTX_TSTATS_NEW)
		tstats_register(t);
	if (t->state == RCTX_TSTATS_LISTED) {
		if (t->m)
			rctx_stat_metric(off, idx, d);
		return; /* no block: the sample is lost (rctx.h) */
	}
	pthread_mutex_lock(&registry_lock);
	p = (_Atomic uint64_t *)(void *)((char *)&gone_m + off) + idx;
	/* relaxed: under the lock */
	atomic_store_explicit(p,
			      atomic_load_explicit(p, memory_order_relaxed) + d,
			      memory_order_relaxed);
	pthread_mutex_unlock(&registry_lock);
}

_Atomic uint8_t rctx_stats_fast_state = RCTX_TSTATS_LISTED;

void
rctx_stats_made_slow(struct rctx *c, const void *site)
{
	rctx_stat_add(RCTX_STAT_CREATED, 1);
	if (rctx_leak_enabled())
		rctx_leak_made(c, site);
}

void
rctx_stats_freed_slow(struct rctx *c)
{
	rctx_stat_add(RCTX_STAT_FREED, 1);
	if (rctx_leak_enabled())
		rctx_leak_freed(c);
}

void
rctx_stats_done_slow(struct rctx *c, uint64_t old, uint64_t ns, bool leaf)
{
	struct rctx_tstats *t = &rctx_tstats_self;
	unsigned timedout = (ns & RCTX_ST_ERR_MASK) == RCTX_ST_TIMEDOUT;
	int cause = (int)(int32_t)(ns >> 32);
	unsigned b = cause >= 0 && cause < RCTX_METRICS_CAUSES
			 ? (unsigned)cause
			 : RCTX_METRICS_CAUSES;

	if (t->state == RCTX_TSTATS_NEW)
		tstats_register(t);
	if (rctx_leak_enabled())
		rctx_leak_done(c);
	if (t->state == RCTX_TSTATS_LISTED &&
	    (ns & RCTX_ST_FINAL_MASK) == RCTX_ST_PLAIN) {
		/* the fast path's counters (registered just now, or leak
		 * tracking sent us here) */
		rctx_stats_end_fast(t, old, leaf);
		return;
	}
	if (t->state == RCTX_TSTATS_LISTED && t->m == NULL) {
		/* no block: the cause is lost (rctx.h), not the count */
		rctx_stat_add(
		    timedout ? RCTX_STAT_TIMED_OUT : RCTX_STAT_CANCELLED, 1);
	} else {
		/* listed with a block, or gone: the row counts it */
		rctx_stat_metric(offsetof(struct rctx_tmetrics, cause) +
				     timedout * RCTX_STAT_CAUSE_ROW,
				 b, 1);
	}
	if (old & RCTX_ST_TIMER)
		rctx_stat_add(RCTX_STAT_TIMERS, -1);
	if (leaf)
		rctx_stats_cascade(1);
}

void
rctx_stats_freed_live(struct rctx *c, uint64_t s)
{
	rctx_stat_add(RCTX_STAT_RELEASED_LIVE, 1);
	/* A canceller that found c in a set may still make it done (tree.c
	 * I4): whichever of us clears the bit counts the deadline out (I3). */
	while ((s & RCTX_ST_TIMER) && !(s & RCTX_ST_ERR_MASK)) {
		/* relaxed: the bit only has to be cleared once (I3);
		 * an RMW keeps the release sequence of the state word */
		if (atomic_compare_exchange_weak_explicit(
			&c->state, &s, s & ~(uint64_t)RCTX_ST_TIMER,
			memory_order_relaxed, memory_order_relaxed)) {
			rctx_stat_add(RCTX_STAT_TIMERS, -1);
			return;
		}
	}
}

void
rctx_stats_late(rctx_time_t deadline)
{
	rctx_time_t now = rctx_clock_now();
	uint64_t late = now > deadline ? (uint64_t)(now - deadline) : 0;

	rctx_stat_metric(offsetof(struct rctx_tmetrics, lateness),
			 rctx_stat_bucket(late), 1);
	rctx_stat_metric(offsetof(struct rctx_tmetrics, lateness_sum), 0, late);
}

/* Add the cause rows of m into v's cancelled and timed_out (I4). */
static void
rows_add(int64_t v[RCTX_STAT_N], struct rctx_tmetrics *m)
{
	for (size_t i = 0; i <= RCTX_METRICS_CAUSES; i++) {
		/* relaxed: a snapshot (I2) */
		v[RCTX_STAT_CANCELLED] += (int64_t)atomic_load_explicit(
		    &m->cause[0][i], memory_order_relaxed);
		v[RCTX_STAT_TIMED_OUT] += (int64_t)atomic_load_explicit(
		    &m->cause[1][i], memory_order_relaxed);
	}
}

/* Sum every block into v and (if m) m, under the lock. */
static void
sum(int64_t v[RCTX_STAT_N], struct rctx_tmetrics *m)
{
	pthread_mutex_lock(&registry_lock);
	memcpy(v, gone, sizeof(gone));
	rows_add(v, &gone_m);
	if (m)
		metrics_fold(m, &gone_m);
	for (struct rctx_tstats *t = registry; t; t = t->next) {
		for (int i = 0; i < RCTX_STAT_N; i++)
			/* relaxed: a snapshot (I2) */
			v[i] += atomic_load_explicit(&t->v[i],
						     memory_order_relaxed);
		if (t->m)
			rows_add(v, t->m);
		if (m && t->m)
			metrics_fold(m, t->m);
	}
	pthread_mutex_unlock(&registry_lock);
}

/* A sum that is transiently negative (counted in, not yet out) reads 0. */
static uint64_t
clamp(int64_t x)
{
	return x > 0 ? (uint64_t)x : 0;
}

void
rctx_stats_read(rctx_stats_t *s)
{
	int64_t v[RCTX_STAT_N];

	sum(v, NULL);
	v[RCTX_STAT_CANCELLED] +=
	    v[RCTX_STAT_DONE_PLAIN] + v[RCTX_STAT_LEAF_PLAIN];
	s->live = clamp(v[RCTX_STAT_CREATED] - v[RCTX_STAT_FREED]);
	s->created = clamp(v[RCTX_STAT_CREATED]);
	s->cancelled = clamp(v[RCTX_STAT_CANCELLED]);
	s->timed_out = clamp(v[RCTX_STAT_TIMED_OUT]);
	s->timers = clamp(v[RCTX_STAT_TIMERS]);
}

int
rctx_stats_read_metrics(rctx_metrics_t *out)
{
	int64_t v[RCTX_STAT_N];
	struct rctx_tmetrics *m = rctx_malloc(sizeof(*m));
	size_t n = RCTX_METRICS_CAUSES + 1;

	if (m == NULL)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	memset(out, 0, sizeof(*out));
	sum(v, m);
	out->released_live = clamp(v[RCTX_STAT_RELEASED_LIVE]);
	for (size_t i = 0; i < n; i++) {
		/* relaxed: m is ours */
		out->cancelled_by_cause[i] =
		    atomic_load_explicit(&m->cause[0][i], memory_order_relaxed);
		out->timed_out_by_cause[i] =
		    atomic_load_explicit(&m->cause[1][i], memory_order_relaxed);
	}
	for (size_t i = 0; i < RCTX_METRICS_BUCKETS; i++) {
		/* relaxed: m is ours */
		out->lateness[i] =
		    atomic_load_explicit(&m->lateness[i], memory_order_relaxed);
		out->cascade[i] =
		    atomic_load_explicit(&m->cascade[i], memory_order_relaxed);
	}
	/* relaxed: m is ours */
	out->lateness_sum_ns =
	    atomic_load_explicit(&m->lateness_sum, memory_order_relaxed);
	out->cascade_sum =
	    atomic_load_explicit(&m->cascade_sum, memory_order_relaxed);
	/* the counters that stand for a row or a bucket (I4) */
	out->cancelled_by_cause[ECANCELED] +=
	    clamp(v[RCTX_STAT_DONE_PLAIN] + v[RCTX_STAT_LEAF_PLAIN]);
	out->cascade[1] +=
	    clamp(v[RCTX_STAT_CASCADE1] + v[RCTX_STAT_LEAF_PLAIN]);
	out->cascade_sum +=
	    clamp(v[RCTX_STAT_CASCADE1] + v[RCTX_STAT_LEAF_PLAIN]);
	free(m);
	return 0;
}

/*
 * Shutdown (no other thread uses rctx): fold every listed block into
 * `gone` and zero it, so that its thread registers again at its next
 * count, and delete the key: no destructor of ours is left in a live
 * thread (a dlclose may follow). The sums are unchanged.
 */
void
rctx_stats_shutdown(void)
{
	struct rctx_tstats *t, *next;

	pthread_mutex_lock(&registry_lock);
	for (t = registry; t; t = next) {
		next = t->next;
		retire(t);
		for (int i = 0; i < RCTX_STAT_N; i++)
			/* relaxed: its thread is quiescent (shutdown) */
			atomic_store_explicit(&t->v[i], 0,
					      memory_order_relaxed);
		t->state = RCTX_TSTATS_NEW;
	}
	pthread_mutex_unlock(&registry_lock);
	rctx_tkey_drop(&exit_key);
}

/* fork: the child inherits the lock free and only the forking thread. */
static void
rctx_stats_before_fork(void)
{
	pthread_mutex_lock(&registry_lock);
}

static void
rctx_stats_after_fork_parent(void)
{
	pthread_mutex_unlock(&registry_lock);
}

static void
rctx_stats_after_fork_child(void)
{
	struct rctx_tstats *t = registry, *next;

	/* The other threads do not exist here and will run no destructor;
	 * their memory may be reused for new threads: fold them now (I1). */
	for (; t; t = next) {
		next = t->next;
		if (t != &rctx_tstats_self)
			retire(t);
	}
	pthread_mutex_unlock(&registry_lock);
}

static const struct rctx_fork_hooks rctx_stats_fork_hooks = {
	.prepare = rctx_stats_before_fork,
	.parent = rctx_stats_after_fork_parent,
	.child = rctx_stats_after_fork_child,
};

/* At load, like fork.c's own handler: a fork may come at any time. */
__attribute__((constructor)) static void
rctx_stats_load(void)
{
	rctx_fork_hooks_set(RCTX_FORK_SLOT_STATS, &rctx_stats_fork_hooks);
}
