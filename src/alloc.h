/* SPDX-License-Identifier: MIT */
/* Context allocator: per-thread caches refilled from RCU-reclaimed batches. */
#ifndef RCTX_ALLOC_H
#define RCTX_ALLOC_H

#include "internal.h"

#define RCTX_FREE_BATCH 32
/* A thread's cache holds at most this many ready contexts of a class. */
#define RCTX_CACHE_MAX (8 * RCTX_FREE_BATCH)

/* A thread's cache (alloc.c), one list pair per allocation class: each
 * layout has its own size (internal.h). */
struct rctx_tclass {
	struct rctx *free; /* ready for reuse */
	unsigned nfree;
	struct rctx *pend; /* waiting for a grace period */
	unsigned npend;
};

struct rctx_tcache {
	struct rctx_tclass cl[RCTX_CLASSES];
	bool registered; /* its exit hook is armed (alloc.c) */
};

extern RCTX_TLS struct rctx_tcache rctx_tcache;

struct rctx *rctx_ctx_alloc_slow(enum rctx_class cls);
void rctx_ctx_free_now_slow(struct rctx_tclass *tc);

/*
 * Get an uninitialised context of class cls (its kind's layout size; the
 * caller records cls in its flags, RCTX_F_CLASS): from the calling
 * thread's cache, else from the global pool of reclaimed batches, else
 * malloc. NULL when out of memory (errno is not touched).
 */
static inline struct rctx *
rctx_ctx_alloc(enum rctx_class cls)
{
	struct rctx_tclass *tc = &rctx_tcache.cl[cls];
	struct rctx *c = tc->free;

	if (RCTX_UNLIKELY(c == NULL))
		return rctx_ctx_alloc_slow(cls);
	tc->free = c->free_next;
	tc->nfree--;
	return c;
}

/*
 * Give back a context that no other thread can be reading without a
 * reference: one never inserted in a children set (so no canceller can
 * have read its pointer), or a failed constructor's. Reused at once.
 */
static inline void
rctx_ctx_free_now(struct rctx *c)
{
	struct rctx_tclass *tc = &rctx_tcache.cl[rctx_class_of(c)];

	c->free_next = tc->free;
	tc->free = c;
	if (RCTX_UNLIKELY(++tc->nfree > RCTX_CACHE_MAX ||
			  !rctx_tcache.registered))
		rctx_ctx_free_now_slow(tc);
}

/*
 * Give back a context other threads may still be reading inside an RCU
 * read-side critical section. It is reused only after a grace period.
 * Frees are batched: the thread hands RCTX_FREE_BATCH contexts at a time
 * to the library's reclaimer thread, which waits out a grace period for
 * all batches at once.
 */
void rctx_ctx_free_rcu(struct rctx *c);

/* Push this thread's pending batch through RCU now (tests, shutdown). */
void rctx_alloc_flush(void);

/*
 * Give this thread's whole cache back: its pending batch to the reclaimer,
 * its ready contexts to the pool (thread exit; timer owners, which free
 * far more than they allocate, after each cycle).
 */
void rctx_alloc_thread_flush(void);

/*
 * Flush, then wait until every batch flushed so far (by any thread) is
 * back in the pool. Not inside an RCU read-side section (tests, shutdown).
 */
void rctx_alloc_barrier(void);

/* The start of rctx_shutdown: the reclaimer stops, and none starts. */
void rctx_alloc_shutdown_begin(void);

/*
 * Wait for every deferred free, then return every cached context to the
 * system (rctx_shutdown), other live threads' caches included.
 */
void rctx_alloc_shutdown(void);

/*
 * Fork child (single-threaded): forget every other thread's cache. Those
 * threads do not exist here and their thread-local storage may be
 * unmapped, so shutdown must not reach their caches (their contexts are
 * lost to the child, as include/rctx.h says).
 */
void rctx_alloc_fork_child_orphan(void);

/* Batches the reclaimer thread has returned to the pool (tests). */
long rctx_alloc_reclaimer_batches(void);

/* Contexts obtained from malloc and not yet returned to it (tests). */
long rctx_alloc_outstanding(void);

/* A trim keeps about this many contexts in the shared pool... */
#define RCTX_POOL_RESERVE (16 * RCTX_CACHE_MAX)
/* ...once it has seen no traffic (refill, malloc, push) for this long. */
#define RCTX_TRIM_QUIET RCTX_SEC

/*
 * Free what the pool holds beyond RCTX_POOL_RESERVE now, and give the
 * pages back to the system (the reclaimer does it after RCTX_TRIM_QUIET
 * of quiet; tests). Returns how many contexts it freed.
 */
long rctx_alloc_trim(void);

/*
 * Set the quiet period before the reclaimer trims by itself (tests): < 0
 * stops it trimming at all, RCTX_TRIM_QUIET is the default.
 */
void rctx_alloc_trim_quiet(rctx_time_t quiet);

/* Contexts the reclaimer's own trims have freed (tests). */
long rctx_alloc_trimmed(void);

/* Contexts in the shared pool now, never mid-trim (tests; walks it). */
long rctx_alloc_pool_count(void);

/* Ready contexts in the calling thread's cache (tests). */
unsigned rctx_alloc_cached(void);

#endif /* RCTX_ALLOC_H */
