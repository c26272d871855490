/* SPDX-License-Identifier: MIT */
/* Context allocator: per-thread caches refilled from RCU-reclaimed batches. */
#include <pthread.h>
#include <stdlib.h>

#include "alloc.h"
#include "fault.h"
#include "fork.h"

/*
 * Invariants
 *  (I1) A context handed to rctx_ctx_free_rcu is reused or returned to
 *       malloc only after an RCU grace period that began after the call,
 *       so a canceller that read its pointer from a children set inside
 *       rcu_read_lock() may still try-retain it safely.
 *  (I2) Each context is in at most one of: in use, a thread's free cache,
 *       a thread's pending batch, a batch in flight through call_rcu, the
 *       global pool.
 *
 * Ordering
 *  (A) Batches enter the global pool by a release CAS on pool_head and
 *      leave it by an acquire exchange of the whole list, so the thread
 *      that takes a batch sees the links written by the thread that made
 *      it. Taking the whole list at once makes the stack immune to ABA.
 *
 * Progress: alloc and free are wait-free on the thread's cache; refill is
 * lock-free (one exchange); call_rcu only enqueues.
 */

struct rctx_tcache {
	struct rctx *free; /* ready for reuse */
	unsigned nfree;
	struct rctx *pend; /* waiting for a grace period */
	unsigned npend;
	bool registered; /* thread-exit destructor armed */
};

static RCTX_TLS struct rctx_tcache tcache;
static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;
static _Atomic(struct rctx *) pool_head; /* batches linked by work_next */
static _Atomic long outstanding;	 /* malloc'd, not yet freed */

/*
 * Our own call_rcu worker, so that rctx_shutdown can stop it (liburcu's
 * default worker lives until exit). Each thread points liburcu at it on
 * its first flush after the worker was (re)created: crdp_gen tells.
 */
static struct call_rcu_data *crdp;
static _Atomic unsigned crdp_gen = 1;
static RCTX_TLS unsigned my_crdp_gen;
static pthread_mutex_t crdp_lock = PTHREAD_MUTEX_INITIALIZER;

/* A reclaimed batch: its first context heads the list through free_next. */
static inline struct rctx *
batch_next(struct rctx *b)
{
	return b->work_next;
}

static void
pool_push(struct rctx *batch)
{
	/* relaxed: the CAS below publishes */
	struct rctx *old =
	    atomic_load_explicit(&pool_head, memory_order_relaxed);
	do {
		batch->work_next = old;
		/* release: publishes the batch links; pairs with the acquire
		 * exchange in pool_take (A) */
	} while (!atomic_compare_exchange_weak_explicit(&pool_head, &old, batch,
							memory_order_release,
							memory_order_relaxed));
}

static struct rctx *
pool_take(void)
{
	/* relaxed pre-check: an empty pool needs no exchange */
	if (atomic_load_explicit(&pool_head, memory_order_relaxed) == NULL)
		return NULL;
	/* acquire: pairs with the release CAS in pool_push (A) */
	return atomic_exchange_explicit(&pool_head, NULL, memory_order_acquire);
}

char rctx_rcu_token;

static void
batch_reclaimed(struct rcu_head *head)
{
	struct rctx *b = rctx_container_of(head, struct rctx, rcu);

	/* For TSan only: a grace period has passed, so every reader that
	 * could see these contexts has left its section (internal.h), and
	 * the freeing thread's last writes precede call_rcu. */
	rctx_tsan_acquire(&rctx_rcu_token);
	rctx_tsan_acquire(b);

	pool_push(b);
}

static void
thread_exit(void *arg)
{
	(void)arg;
	/*
	 * Other thread-exit destructors (the timer stage's flush) may free
	 * contexts after this one ran: clearing the flag makes such a free
	 * register again, and glibc then runs this destructor once more.
	 */
	tcache.registered = false;
	rctx_alloc_flush();
	/* Cached, already reclaimed contexts go back as one batch. */
	if (tcache.free) {
		pool_push(tcache.free);
		tcache.free = NULL;
		tcache.nfree = 0;
	}
}

static void
make_key(void)
{
	(void)pthread_key_create(&tcache_key, thread_exit);
}

static void
tcache_register(void)
{
	(void)pthread_once(&tcache_once, make_key);
	/* A non-NULL value makes the destructor run at thread exit. */
	if (pthread_setspecific(tcache_key, &tcache) == 0)
		tcache.registered = true;
}

/* Splice a reclaimed batch list (batches chained by work_next) in. */
static void
tcache_adopt(struct rctx *batches)
{
	while (batches) {
		struct rctx *next = batch_next(batches);
		struct rctx *c = batches;

		while (c) {
			struct rctx *n = c->free_next;

			c->free_next = tcache.free;
			tcache.free = c;
			tcache.nfree++;
			c = n;
		}
		batches = next;
	}
}

struct rctx *
rctx_ctx_alloc(void)
{
	struct rctx *c = tcache.free;

	if (RCTX_UNLIKELY(c == NULL)) {
		/* Arm the exit destructor before the cache can hold anything:
		 * a thread that only ever takes batches from the pool would
		 * otherwise lose them when it exits. */
		if (RCTX_UNLIKELY(!tcache.registered))
			tcache_register();
		tcache_adopt(pool_take());
		c = tcache.free;
		if (c == NULL) {
			c = rctx_malloc(sizeof(*c));
			if (c == NULL)
				return NULL;
			/* relaxed: a statistic for tests, no ordering */
			atomic_fetch_add_explicit(&outstanding, 1,
						  memory_order_relaxed);
			return c;
		}
	}
	tcache.free = c->free_next;
	tcache.nfree--;
	return c;
}

void
rctx_ctx_free_now(struct rctx *c)
{
	c->free_next = tcache.free;
	tcache.free = c;
	if (RCTX_UNLIKELY(!tcache.registered))
		tcache_register();
	if (RCTX_UNLIKELY(++tcache.nfree > RCTX_CACHE_MAX)) {
		/* A thread that frees more than it allocates (a timer owner)
		 * hands a batch to the pool; these need no grace period. */
		struct rctx *b = tcache.free, *last = b;

		for (unsigned i = 1; i < RCTX_FREE_BATCH; i++)
			last = last->free_next;
		tcache.free = last->free_next;
		last->free_next = NULL;
		tcache.nfree -= RCTX_FREE_BATCH;
		pool_push(b);
	}
}

/* Cold path: once per thread per worker generation (a lock is fine). */
static void
crdp_attach(void)
{
	unsigned gen;

	pthread_mutex_lock(&crdp_lock);
	/* Before the worker exists: its fork hooks must be in place (a
	 * failure leaves them out until a later attach installs them). */
	(void)rctx_fork_register();
	/* RT: the worker polls for callbacks (every 10 ms while it has
	 * none), so call_rcu never makes a system call to wake it; on a
	 * virtual machine one futex wake costs as much as a thousand
	 * derive/cancel cycles. */
	if (crdp == NULL)
		crdp = create_call_rcu_data(URCU_CALL_RCU_RT, -1);
	/* relaxed: written under crdp_lock, which we hold */
	gen = atomic_load_explicit(&crdp_gen, memory_order_relaxed);
	pthread_mutex_unlock(&crdp_lock);
	set_thread_call_rcu_data(crdp);
	my_crdp_gen = gen;
}

void
rctx_alloc_flush(void)
{
	struct rctx *b = tcache.pend;

	if (b == NULL)
		return;
	/* relaxed: a stale generation only sends us through crdp_attach,
	 * which takes the lock */
	if (RCTX_UNLIKELY(my_crdp_gen != atomic_load_explicit(
					     &crdp_gen, memory_order_relaxed)))
		crdp_attach();
	tcache.pend = NULL;
	tcache.npend = 0;
	rctx_tsan_release(b); /* pairs with batch_reclaimed (TSan only) */
	call_rcu(&b->rcu, batch_reclaimed);
}

void
rctx_ctx_free_rcu(struct rctx *c)
{
	c->free_next = tcache.pend;
	tcache.pend = c;
	if (RCTX_UNLIKELY(!tcache.registered))
		tcache_register();
	if (++tcache.npend >= RCTX_FREE_BATCH)
		rctx_alloc_flush();
}

static void
free_list(struct rctx *c)
{
	while (c) {
		struct rctx *n = c->free_next;

		free(c);
		/* relaxed: a statistic for tests, no ordering */
		atomic_fetch_sub_explicit(&outstanding, 1,
					  memory_order_relaxed);
		c = n;
	}
}

void
rctx_alloc_shutdown(void)
{
	struct rctx *b;

	rctx_alloc_flush();
	rcu_barrier(); /* every batch in flight has reached the pool */
	pthread_mutex_lock(&crdp_lock);
	if (crdp != NULL) {
		set_thread_call_rcu_data(NULL);
		call_rcu_data_free(crdp);
		crdp = NULL;
		/* relaxed: read under the lock or as a hint (crdp_attach) */
		atomic_fetch_add_explicit(&crdp_gen, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&crdp_lock);
	free_list(tcache.free);
	tcache.free = NULL;
	tcache.nfree = 0;
	b = pool_take();
	while (b) {
		struct rctx *next = batch_next(b);

		free_list(b);
		b = next;
	}
}

/*
 * fork (called by fork.c's handlers): no thread is inside crdp_attach, and
 * every call_rcu worker is paused where it holds no lock. The child has no
 * worker: liburcu's hook starts a new default one, moves the callbacks
 * still queued (batches the parent had in flight) onto it and frees the
 * parent's workers' records, ours included; the child's next flush
 * attaches a worker of our own again.
 */
void
rctx_alloc_before_fork(void)
{
	pthread_mutex_lock(&crdp_lock);
	call_rcu_before_fork();
}

void
rctx_alloc_after_fork_parent(void)
{
	call_rcu_after_fork_parent();
	pthread_mutex_unlock(&crdp_lock);
}

void
rctx_alloc_after_fork_child(void)
{
	call_rcu_after_fork_child();
	crdp = NULL;
	/* relaxed: the child is single-threaded here */
	atomic_fetch_add_explicit(&crdp_gen, 1, memory_order_relaxed);
	pthread_mutex_unlock(&crdp_lock); /* this thread took it */
}

long
rctx_alloc_outstanding(void)
{
	/* relaxed: a statistic for tests, read after threads are joined */
	return atomic_load_explicit(&outstanding, memory_order_relaxed);
}
