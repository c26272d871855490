/* SPDX-License-Identifier: MIT */
/* Context allocator: per-thread caches refilled from RCU-reclaimed batches. */
#include <pthread.h>
#include <stdlib.h>

#include "alloc.h"
#include "shard.h"
#include "fault.h"
#include "reclaim.h"
#include "registry.h"

/*
 * Invariants
 *  (I1) A context handed to rctx_ctx_free_rcu is reused or returned to
 *       malloc only after an RCU grace period that began after the call,
 *       so a canceller that read its pointer from a children set inside
 *       rcu_read_lock() may still try-retain it safely.
 *  (I2) Each context is in at most one of: in use, a thread's free cache,
 *       a thread's pending batch, a batch waiting for a grace period
 *       (gp_head, or taken by a reclaim round), the global pool
 *       (pool_head or pool_list), a trim's surplus being freed.
 *  (I3) A thread's ready cache holds at most RCTX_CACHE_MAX contexts of
 *       each class: it is refilled, when empty, with one pool batch of
 *       that class (at most that many).
 *  (I5) Every list and batch holds contexts of one class (one layout's
 *       size, internal.h), named by the class of its contexts' kind.
 *  (I4) After RCTX_TRIM_QUIET without traffic (a refill from the pool, a
 *       malloc, a push), the reclaimer frees what the pool holds beyond
 *       RCTX_POOL_RESERVE. Pool contexts are past their grace period (I1),
 *       so nothing can still read them.
 *
 * Ordering
 *  alloc.A Batches enter the global pool by a release CAS on pool_head and
 *      leave it by an acquire exchange of the whole list, so the thread
 *      that takes a batch sees the links written by the thread that made
 *      it. Taking the whole list at once makes the stack immune to ABA.
 *      gp_head works the same way. The list taken goes to pool_list, from
 *      which refills pop one batch at a time under pool_lock.
 *  alloc.B The reclaimer sleeps only after it has published rcl_sleeping and
 *      then seen gp_head empty; a flush pushes on gp_head and then reads
 *      rcl_sleeping (all seq_cst), so one of the two sees the other: a
 *      pushed batch is never left with the reclaimer asleep.
 *  trim.B A thread other than the reclaimer that pushes to the pool then
 *      sets trim_armed (pool_kick); the reclaimer clears it before a trim
 *      takes the pool (all seq_cst). Either the trim sees the batch, or
 *      the pusher sees the flag clear and wakes the reclaimer, which reads
 *      rcl_futex before trim_armed (as alloc.B) and so cannot sleep through
 *      it: no batch is left untrimmed with the reclaimer asleep for good.
 *
 * Progress: alloc and free are wait-free on the thread's cache; refill is
 * one batch under a short lock (pool_lock); a flush is one CAS, and a
 * system call only when the reclaimer sleeps (it stays awake, polling,
 * while batches come). Trimming runs on the reclaimer.
 */

RCTX_TLS struct rctx_tcache rctx_tcache;
#define tcache rctx_tcache

/* Bytes malloc'd for a context of each class. */
static const size_t class_size[RCTX_CLASSES] = {
	[RCTX_CLASS_VALUE] = RCTX_SIZE_VALUE,
	[RCTX_CLASS_CANCEL] = RCTX_SIZE_CANCEL,
	[RCTX_CLASS_TIMER] = RCTX_SIZE_TIMER,
};

/*
 * Each thread with a cache holds a record of the shared per-thread
 * registry (registry.c): its exit hook gives the cache back, and
 * shutdown finds every live thread's cache through it and deletes the
 * key, so that no destructor of ours outlives a dlclose.
 */
struct rctx_cache_rec {
	struct rctx_reg_rec rec; /* first: registry record */
	struct rctx_tcache *tc;	 /* its thread's cache */
};

static void thread_exit(struct rctx_reg_rec *rec);
static struct rctx_reg cache_reg =
    RCTX_REG_INIT(RCTX_REG_CACHE, sizeof(struct rctx_cache_rec), thread_exit);

/* The thread-exit hook is armed: its record is still ours (rctx_reg_mine
 * says no once shutdown took the registry). The fast paths read the
 * thread's own flag, which follows it. */
static inline bool
tcache_registered(void)
{
	tcache.registered = rctx_reg_mine(&cache_reg) != NULL;
	return tcache.registered;
}
/*
 * At thread exit, and by timer owners after each cycle that freed: the
 * thread's cache goes to the shared pool and batch, so that nothing is
 * left where only this thread could reach it (fork: a parked owner holds
 * no cache, and the child, which has no owner threads, loses nothing).
 */
static void
thread_exit(struct rctx_reg_rec *rec)
{
	(void)rec;
	/*
	 * Other thread-exit destructors (the timer stage's flush) may free
	 * contexts after this one ran: the registry has dropped our record,
	 * so such a free registers again, and glibc then runs the
	 * destructor once more.
	 */
	tcache.registered = false;
	rctx_alloc_thread_flush();
}

void
rctx_alloc_thread_flush(void)
{
	rctx_alloc_flush();
	/* Cached, already reclaimed contexts go back as one batch a class. */
	for (int k = 0; k < RCTX_CLASSES; k++) {
		struct rctx_tclass *tc = &tcache.cl[k];

		if (tc->free) {
			rctx_pool_push(tc->free);
			tc->free = NULL;
			tc->nfree = 0;
			rctx_pool_kick();
		}
	}
}

/* Arm the exit hook; out of memory, the next free tries again. */
static void
tcache_register(void)
{
	/* Every thread comes here before it makes its first context: tag
	 * it for the contexts it makes and derives under (shard.h). */
	rctx_shard_tag_init();
	struct rctx_cache_rec *r = (struct rctx_cache_rec *)rctx_reg_claim(
	    &cache_reg, NULL, NULL, NULL);

	if (r) {
		r->tc = &tcache; /* read by shutdown only (quiescent) */
		tcache.registered = true;
	}
}

/*
 * Splice reclaimed batches (chained by batch_next) in until the cache holds
 * RCTX_CACHE_MAX / 2, and put the rest back in the pool. Adopting the
 * whole pool made threads that allocate at once trade it back and forth:
 * the taker overflowed its cache and pushed batches out on every free,
 * which the other then took, and each context crossed cores (issue 13,
 * docs/scale.md).
 */
static void
tcache_adopt(struct rctx_tclass *tc, struct rctx *batches)
{
	while (batches) {
		struct rctx *next = rctx_batch_next(batches);
		struct rctx *c = batches;

		if (tc->nfree >= RCTX_CACHE_MAX / 2) {
			rctx_pool_push_chain(batches);
			return;
		}

		while (c) {
			struct rctx *n = c->free_next;

			c->free_next = tc->free;
			tc->free = c;
			tc->nfree++;
			c = n;
		}
		batches = next;
	}
}

struct rctx *
rctx_ctx_alloc_slow(enum rctx_class cls)
{
	struct rctx_tclass *tc = &tcache.cl[cls];
	struct rctx *c;

	/* Arm the exit destructor before the cache can hold anything: a
	 * thread that only ever takes batches from the pool would otherwise
	 * lose them when it exits. */
	if (RCTX_UNLIKELY(!tcache_registered()))
		tcache_register();
	tcache_adopt(tc, rctx_pool_take(cls));
	c = tc->free;
	if (c == NULL) {
		c = rctx_malloc(class_size[cls]);
		if (c == NULL)
			return NULL;
		/* The set's block stays with the memory from its first need
		 * on (children.c I3): none yet. */
		if (cls != RCTX_CLASS_VALUE)
			atomic_init(&c->children.x, NULL);
		rctx_reclaim_count_malloc();
		return c;
	}
	tc->free = c->free_next;
	tc->nfree--;
	return c;
}

/* After a free that found the thread unregistered (its first free, or
 * after a shutdown or its exit hook) or its cache of that class full. */
void
rctx_ctx_free_now_slow(struct rctx_tclass *tc)
{
	if (RCTX_UNLIKELY(!tcache_registered()))
		tcache_register();
	if (RCTX_UNLIKELY(tc->nfree > RCTX_CACHE_MAX)) {
		/* A thread that frees more than it allocates (a timer owner)
		 * hands a batch to the pool; these need no grace period. */
		struct rctx *b = tc->free, *last = b;

		for (unsigned i = 1; i < RCTX_FREE_BATCH; i++)
			last = last->free_next;
		tc->free = last->free_next;
		last->free_next = NULL;
		tc->nfree -= RCTX_FREE_BATCH;
		rctx_pool_push(b);
		rctx_pool_kick();
	}
}

static void
flush_class(struct rctx_tclass *tc)
{
	struct rctx *b = tc->pend;

	if (b == NULL)
		return;
	tc->pend = NULL;
	tc->npend = 0;
	rctx_gp_push(b);
}

void
rctx_alloc_flush(void)
{
	for (int k = 0; k < RCTX_CLASSES; k++)
		flush_class(&tcache.cl[k]);
}

void
rctx_ctx_free_rcu(struct rctx *c)
{
	struct rctx_tclass *tc = &tcache.cl[rctx_class_of(c)];

	c->free_next = tc->pend;
	tc->pend = c;
	if (RCTX_UNLIKELY(!tcache.registered) && !tcache_registered())
		tcache_register();
	if (++tc->npend >= RCTX_FREE_BATCH)
		flush_class(tc);
}

/*
 * Shutdown: empty every other live thread's cache (callers are quiescent,
 * so their caches are still) and drop the registry with its key. Their
 * pending contexts wait out one grace period first (I1).
 */
static void
steal_caches(void)
{
	struct rctx_reg_rec *rec = rctx_reg_take_all(&cache_reg), *next;
	struct rctx *pend = NULL;

	for (; rec; rec = next) {
		struct rctx_tcache *tc = ((struct rctx_cache_rec *)rec)->tc;

		next = rec->next;
		/* acquire: registry.B, pairs with the release in its exit */
		if (atomic_load_explicit(&rec->owned, memory_order_acquire) &&
		    tc != NULL && tc != &tcache) {
			for (int k = 0; k < RCTX_CLASSES; k++) {
				struct rctx_tclass *t = &tc->cl[k];

				rctx_reclaim_free_list(t->free);
				while (t->pend) {
					struct rctx *c = t->pend;

					t->pend = c->free_next;
					c->free_next = pend;
					pend = c;
				}
				t->free = NULL;
				t->nfree = 0;
				t->npend = 0;
			}
			tc->registered = false; /* its record goes below */
		}
		free(rec);
	}
	if (pend) {
		synchronize_rcu();
		/* For TSan: see reclaim_round. */
		rctx_tsan_acquire(&rctx_rcu_token);
		rctx_reclaim_free_list(pend);
	}
}

void
rctx_alloc_fork_child_orphan(void)
{
	for (struct rctx_reg_rec *rec = rctx_reg_first(&cache_reg); rec;
	     rec = rec->next) {
		struct rctx_cache_rec *cr = (struct rctx_cache_rec *)rec;

		if (cr->tc == &tcache)
			continue;
		cr->tc = NULL;
		/* relaxed: the child has one thread; a later claim by a new
		 * thread of the child reuses the record */
		atomic_store_explicit(&rec->owned, 0, memory_order_relaxed);
	}
}

void
rctx_alloc_shutdown_begin(void)
{
	rctx_reclaim_stop(); /* the reclaimer joined, trims disarmed */
}

void
rctx_alloc_shutdown(void)
{
	rctx_reclaim_stop();  /* again: idempotent */
	rctx_alloc_barrier(); /* every batch flushed has reached the pool */
	steal_caches();
	tcache.registered = false; /* the registry took our record too */
	for (int k = 0; k < RCTX_CLASSES; k++) {
		rctx_reclaim_free_list(tcache.cl[k].free);
		tcache.cl[k].free = NULL;
		tcache.cl[k].nfree = 0;
	}
	(void)rctx_pool_trim(0);
	rctx_reclaim_resume();
}

void
rctx_alloc_barrier(void)
{
	rctx_alloc_flush();
	rctx_reclaim_round();
}

unsigned
rctx_alloc_cached(void)
{
	unsigned n = 0;

	for (int k = 0; k < RCTX_CLASSES; k++)
		n += tcache.cl[k].nfree;
	return n;
}
