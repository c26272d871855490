/* SPDX-License-Identifier: MIT */
/* The shared pool of reclaimed contexts and the reclaimer thread. */

/*
 * The second half of the allocator: alloc.c keeps the per-thread caches;
 * here are the global pool they refill from and overflow to, the batches
 * waiting for a grace period, the reclaimer thread that waits them out,
 * and the trim that gives a quiet pool's surplus back to malloc. The
 * invariants (I1-I4) and orders (alloc.A, alloc.B, trim.B) are stated in
 * alloc.c's opening comment, the module's one record.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <urcu-bp.h>

#include "alloc.h"
#include "clock.h"
#include "fault.h"
#include "fork.h"
#include "reclaim.h"

/* One pool per allocation class: a batch holds contexts of one class. */
static _Atomic(struct rctx *) pool_head[RCTX_CLASSES]; /* by batch_next */
static _Atomic long outstanding; /* malloc'd, not yet freed */
/* Refills pop from pool_list, one batch each, under pool_lock (alloc.A). */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
/* Written under pool_lock; atomic only for rctx_pool_take's unlocked hint. */
static _Atomic(struct rctx *) pool_list[RCTX_CLASSES];
/* Refills, mallocs and pushes (I4): a trim waits for it to stand still.
 * Pushes count so that a long release is trimmed once, at its end. */
static _Atomic unsigned long pool_traffic;
static _Atomic bool trim_armed; /* the pool grew since the last trim */
static _Atomic long trim_freed; /* contexts the reclaimer trimmed (tests) */
/* RCTX_TRIM_QUIET; tests shorten it, or stop trims (< 0) */
static _Atomic rctx_time_t trim_quiet = RCTX_TRIM_QUIET;
/* The reclaimer's own: pool_traffic when last seen, and since when. */
static unsigned long trim_traffic;
static rctx_time_t trim_since;

/*
 * The reclaimer: one thread of ours waits for grace periods on behalf of
 * every freeing thread, taking all flushed batches at once (so one grace
 * period serves many), and hands them to the pool. Not liburcu's call_rcu:
 * its worker cannot be parked cheaply around fork (liburcu's pause polls
 * a real-time worker that sleeps 10 ms: fork() took 8.5 ms instead of
 * 0.3), and its default worker is never joined (docs/design.md).
 */
static _Atomic(struct rctx *) gp_head; /* batches linked by batch_next */
/* Held by the reclaimer for a round; guards the fields below it. */
static pthread_mutex_t rcl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t rcl_thread;
static bool rcl_running;
static _Atomic bool rcl_started; /* flush's hint: rcl_running */
static bool rcl_held;	      /* under rcl_lock: a shutdown runs, start none */
static _Atomic bool rcl_stop; /* shutdown asks the reclaimer to exit */
static _Atomic bool rcl_unparked; /* starting up: fork waits (fork.c) */
static _Atomic bool rcl_sleeping; /* asleep on rcl_futex (alloc.B) */
static _Atomic uint32_t rcl_futex;
static _Atomic long rcl_batches; /* reclaimed by the thread (tests) */

/* While batches keep coming the reclaimer polls at this period. */
#define RCTX_RECLAIM_POLL (10 * RCTX_MSEC)

void
rctx_pool_push(struct rctx *batch)
{
	_Atomic(struct rctx *) *head = &pool_head[rctx_class_of(batch)];
	/* relaxed: the CAS below publishes */
	struct rctx *old = atomic_load_explicit(head, memory_order_relaxed);
	do {
		batch->batch_next = old;
		/* seq_cst: its release publishes the batch links, pairing
		 * with the acquire exchanges in rctx_pool_take and rctx_pool_trim
		 * (alloc.A); it is ordered before rctx_pool_kick's exchange
		 * (trim.B) */
	} while (!atomic_compare_exchange_weak_explicit(
	    head, &old, batch, memory_order_seq_cst, memory_order_relaxed));
	/* relaxed: a count the reclaimer compares (I4), no data */
	atomic_fetch_add_explicit(&pool_traffic, 1, memory_order_relaxed);
}

/* One batch of class cls from the pool (its batch_next cleared), or NULL. */
struct rctx *
rctx_pool_take(enum rctx_class cls)
{
	struct rctx *b;

	/* relaxed pre-checks: an empty pool needs no lock; a stale answer
	 * costs one malloc */
	if (atomic_load_explicit(&pool_list[cls], memory_order_relaxed) ==
		NULL &&
	    atomic_load_explicit(&pool_head[cls], memory_order_relaxed) == NULL)
		return NULL;
	pthread_mutex_lock(&pool_lock);
	/* relaxed: pool_list is written under pool_lock, which we hold */
	b = atomic_load_explicit(&pool_list[cls], memory_order_relaxed);
	if (b == NULL)
		/* acquire: pairs with the release CAS in rctx_pool_push (alloc.A) */
		b = atomic_exchange_explicit(&pool_head[cls], NULL,
					     memory_order_acquire);
	if (b) {
		/* relaxed: under pool_lock */
		atomic_store_explicit(&pool_list[cls], rctx_batch_next(b),
				      memory_order_relaxed);
		b->batch_next = NULL;
		/* relaxed: a count the reclaimer compares (I4), no data */
		atomic_fetch_add_explicit(&pool_traffic, 1,
					  memory_order_relaxed);
	}
	pthread_mutex_unlock(&pool_lock);
	return b;
}

char rctx_rcu_token;

/*
 * One reclaim round (caller holds rcl_lock): every batch flushed so far
 * waits out one grace period and joins the pool. Returns how many.
 */
static long
reclaim_round(void)
{
	/* acquire: pairs with the release of rctx_gp_push's CAS (alloc.A) */
	struct rctx *b =
	    atomic_exchange_explicit(&gp_head, NULL, memory_order_acquire);

	long n = 0;

	if (b == NULL)
		return 0;
	synchronize_rcu();
	/* For TSan only: a grace period has passed, so every reader that
	 * could see these contexts has left its section (internal.h). */
	rctx_tsan_acquire(&rctx_rcu_token);
	while (b) {
		struct rctx *next = b->batch_next;

		rctx_pool_push(b);
		b = next;
		n++;
	}
	return n;
}

/* Return a list (through free_next) to malloc; how many it held. */
long
rctx_reclaim_free_list(struct rctx *c)
{
	long n = 0;

	while (c) {
		struct rctx *next = c->free_next;

		/* the set's block stays with a cancelable layout's memory
		 * (children.c I3): it goes with it; relaxed: c is past its
		 * grace period, nothing reads it */
		if (rctx_class_of(c) != RCTX_CLASS_VALUE)
			free(atomic_load_explicit(&c->children.x,
						  memory_order_relaxed));
		free(c);
		n++;
		c = next;
	}
	/* relaxed: a statistic for tests, no ordering */
	atomic_fetch_sub_explicit(&outstanding, n, memory_order_relaxed);
	return n;
}

/*
 * Keep the first batches of class cls's pool, up to about keep contexts,
 * and free the rest (I4). The pool is emptied under pool_lock and the
 * kept batches go back under it; a refill in between finds it empty and
 * mallocs. Returns how many contexts went back to malloc.
 */
static long
pool_trim_class(enum rctx_class cls, long keep)
{
	struct rctx *lists[2], *kfirst = NULL, *klast = NULL;
	long kept = 0, freed = 0;

	pthread_mutex_lock(&pool_lock);
	/* relaxed: under pool_lock */
	lists[0] = atomic_load_explicit(&pool_list[cls], memory_order_relaxed);
	atomic_store_explicit(&pool_list[cls], NULL, memory_order_relaxed);
	/* seq_cst: its acquire pairs with rctx_pool_push's CAS (alloc.A); it is
	 * ordered after the clear of trim_armed in rcl_trim (trim.B) */
	lists[1] = atomic_exchange_explicit(&pool_head[cls], NULL,
					    memory_order_seq_cst);
	pthread_mutex_unlock(&pool_lock);
	for (int i = 0; i < 2; i++) {
		struct rctx *b = lists[i];

		while (b) {
			struct rctx *next = rctx_batch_next(b);

			if (kept >= keep) {
				freed += rctx_reclaim_free_list(b);
				b = next;
				continue;
			}
			for (struct rctx *c = b; c; c = c->free_next)
				kept++;
			b->batch_next = NULL;
			if (klast)
				klast->batch_next = b;
			else
				kfirst = b;
			klast = b;
			b = next;
		}
	}
	if (kfirst) {
		pthread_mutex_lock(&pool_lock);
		/* relaxed: under pool_lock */
		klast->batch_next =
		    atomic_load_explicit(&pool_list[cls], memory_order_relaxed);
		atomic_store_explicit(&pool_list[cls], kfirst,
				      memory_order_relaxed);
		pthread_mutex_unlock(&pool_lock);
	}
	return freed;
}

long
rctx_pool_trim(long keep)
{
	long freed = 0;

	for (int cls = 0; cls < RCTX_CLASSES; cls++)
		freed += pool_trim_class((enum rctx_class)cls, keep);
	return freed;
}

/* Trim the pool under rcl_lock (fork finds us between rounds; tests see
 * the pool and trim_freed agree), then hand the freed pages back to the
 * system. Returns how many were freed. */
static long
trim_now(bool reclaimer)
{
	long freed = 0;

	pthread_mutex_lock(&rcl_lock);
	/* relaxed: written under rcl_lock, which we hold */
	if (!atomic_load_explicit(&rcl_stop, memory_order_relaxed))
		freed = rctx_pool_trim(RCTX_POOL_RESERVE);
	if (reclaimer)
		/* relaxed: a statistic for tests, read under rcl_lock */
		atomic_fetch_add_explicit(&trim_freed, freed,
					  memory_order_relaxed);
	pthread_mutex_unlock(&rcl_lock);
#ifdef __GLIBC__
	if (freed)
		(void)malloc_trim(0);
#endif
	return freed;
}

/*
 * The reclaimer, idle, with trim_armed set: trim once the pool has seen
 * no traffic for RCTX_TRIM_QUIET. Returns 0 when it trimmed, else how long
 * to wait before looking again.
 */
static rctx_time_t
rcl_trim_check(void)
{
	rctx_time_t now = rctx_clock_now();
	/* relaxed: a count compared with its last value; a stale one only
	 * moves the trim later */
	unsigned long d =
	    atomic_load_explicit(&pool_traffic, memory_order_relaxed);

	/* relaxed: a test's switch, no data */
	rctx_time_t quiet =
	    atomic_load_explicit(&trim_quiet, memory_order_relaxed);

	if (quiet < 0)
		return RCTX_TRIM_QUIET; /* held by a test: look again later */
	if (trim_since == 0 || d != trim_traffic) {
		trim_traffic = d;
		trim_since = now;
	}
	if (now - trim_since < quiet) {
		rctx_time_t left = trim_since + quiet - now;

		/* Look four times a period: the trim comes at most a quarter
		 * period late after the last traffic. */
		return left > quiet / 4 && quiet >= 4 ? quiet / 4 : left;
	}
	trim_since = 0;
	/* seq_cst: the clear half of trim.B, before rctx_pool_trim's exchange */
	atomic_store_explicit(&trim_armed, false, memory_order_seq_cst);
	(void)trim_now(true);
	return 0;
}

static void *
reclaimer(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* release: pairs with the acquire in rctx_fork_park; past the
	 * thread library's (and a sanitizer's) start-up allocations */
	atomic_store_explicit(&rcl_unparked, false, memory_order_release);
	for (;;) {
		bool stop;
		long worked = 0;

		pthread_mutex_lock(&rcl_lock);
		/* relaxed: written under rcl_lock, which we hold */
		stop = atomic_load_explicit(&rcl_stop, memory_order_relaxed);
		if (!stop)
			worked = reclaim_round();
		pthread_mutex_unlock(&rcl_lock);
		if (stop)
			break;
		if (worked) {
			/* relaxed: a statistic for tests */
			atomic_fetch_add_explicit(&rcl_batches, worked,
						  memory_order_relaxed);
			/* relaxed: our own pushes, which we read back
			 * ourselves (trim.B is for other threads' pushes) */
			atomic_store_explicit(&trim_armed, true,
					      memory_order_relaxed);
			/* Batches are coming: poll, so flushes need no wake. */
			struct timespec ts = { 0, RCTX_RECLAIM_POLL };

			nanosleep(&ts, NULL);
			continue;
		}
		/* acquire: pairs with the release increments (wake, stop) */
		uint32_t seq =
		    atomic_load_explicit(&rcl_futex, memory_order_acquire);
		struct timespec tmo, *tp = NULL;

		/* relaxed: read after seq; a rctx_pool_kick whose flag we miss has
		 * bumped rcl_futex since (trim.B) */
		if (atomic_load_explicit(&trim_armed, memory_order_relaxed)) {
			rctx_time_t left = rcl_trim_check();

			if (left == 0)
				continue;
			tmo.tv_sec = (time_t)(left / RCTX_SEC);
			tmo.tv_nsec = (long)(left % RCTX_SEC);
			tp = &tmo;
		}
		/* seq_cst: store half of alloc.B */
		atomic_store_explicit(&rcl_sleeping, true,
				      memory_order_seq_cst);
		/* seq_cst: load half of alloc.B; rcl_stop is ordered by seq */
		if (atomic_load_explicit(&gp_head, memory_order_seq_cst) ==
			NULL &&
		    !atomic_load_explicit(&rcl_stop, memory_order_relaxed))
			rctx_futex(&rcl_futex, FUTEX_WAIT_PRIVATE, seq, tp, 0);
		/* relaxed: only a hint for flushes; alloc.B re-publishes it */
		atomic_store_explicit(&rcl_sleeping, false,
				      memory_order_relaxed);
	}
	return NULL;
}

static void
rcl_wake(void)
{
	/* release: pairs with the reclaimer's acquire of rcl_futex */
	atomic_fetch_add_explicit(&rcl_futex, 1, memory_order_release);
	rctx_futex(&rcl_futex, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
}

/* Cold path: start the reclaimer (once, and again after shutdown/fork). */
static void
rcl_start(void)
{
	pthread_mutex_lock(&rcl_lock);
	/* Its fork hooks go in before the thread exists. On failure (of
	 * either) batches wait on gp_head and the next flush tries again. */
	if (!rcl_running && !rcl_held && rctx_fork_register() == 0) {
		/* relaxed: the new thread is ordered by pthread_create */
		atomic_store_explicit(&rcl_stop, false, memory_order_relaxed);
		/* relaxed: under rcl_lock, which fork's prepare takes first */
		atomic_store_explicit(&rcl_unparked, true,
				      memory_order_relaxed);
		if (!rctx_fault_hit(RCTX_FAULT_THREAD) &&
		    pthread_create(&rcl_thread, NULL, reclaimer, NULL) == 0) {
			rcl_running = true;
			/* release: pairs with the acquire in rctx_gp_push */
			atomic_store_explicit(&rcl_started, true,
					      memory_order_release);
		} else {
			/* relaxed: no thread; under rcl_lock */
			atomic_store_explicit(&rcl_unparked, false,
					      memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&rcl_lock);
}

/* After a push by another thread than the reclaimer: see it trimmed. */
void
rctx_pool_kick(void)
{
	/* seq_cst: the set half of trim.B, after rctx_pool_push's CAS */
	if (atomic_exchange_explicit(&trim_armed, true, memory_order_seq_cst))
		return;
	/* acquire: pairs with the release in rcl_start */
	if (!atomic_load_explicit(&rcl_started, memory_order_acquire))
		rcl_start();
	else
		rcl_wake();
}

/* Hand a batch to the reclaimer. */
void
rctx_gp_push(struct rctx *b)
{
	/* relaxed: the CAS below publishes */
	struct rctx *old = atomic_load_explicit(&gp_head, memory_order_relaxed);

	do {
		b->batch_next = old;
		/* seq_cst: release publishes the links (alloc.A); store half of
		 * (alloc.B) */
	} while (!atomic_compare_exchange_weak_explicit(
	    &gp_head, &old, b, memory_order_seq_cst, memory_order_relaxed));
	/* acquire: pairs with the release in rcl_start */
	if (RCTX_UNLIKELY(
		!atomic_load_explicit(&rcl_started, memory_order_acquire))) {
		rcl_start();
		return;
	}
	/* seq_cst: load half of alloc.B; the exchange makes one flush the
	 * waker (relaxed: the futex increment orders the wake-up) */
	if (atomic_load_explicit(&rcl_sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&rcl_sleeping, false,
				     memory_order_relaxed))
		rcl_wake();
}

/*
 * Push a chain of batches (linked by batch_next, all of one class) back. The pool is usually
 * still empty since our rctx_pool_take: then one CAS from NULL puts the whole
 * chain back. Otherwise the chain's last batch is linked to the new head,
 * which takes a walk (a long chain, after a burst of frees, would make
 * that walk on every refill costly).
 */
void
rctx_pool_push_chain(struct rctx *first)
{
	struct rctx *last = first;
	struct rctx *old = NULL;
	_Atomic(struct rctx *) *head = &pool_head[rctx_class_of(first)];

	/* release: publishes the chain's links; pairs with the acquire
	 * exchange in rctx_pool_take (alloc.A). Relaxed on failure: old is only
	 * linked to below, never read through. */
	if (atomic_compare_exchange_strong_explicit(
		head, &old, first, memory_order_release, memory_order_relaxed))
		return;
	while (rctx_batch_next(last))
		last = rctx_batch_next(last);
	do {
		last->batch_next = old;
		/* release: publishes the chain's links; pairs with the
		 * acquire exchange in rctx_pool_take (alloc.A) */
	} while (!atomic_compare_exchange_weak_explicit(
	    head, &old, first, memory_order_release, memory_order_relaxed));
}

/*
 * fork (called by fork.c's handlers): holding rcl_lock, the reclaimer is
 * between rounds (asleep, polling, or blocked on the lock), so it holds no
 * lock and no batch of its own; the wait covers a thread still starting.
 * Every unreclaimed batch is on gp_head, in both processes. The child has
 * no reclaimer: its next flush starts one.
 */
static void
rctx_alloc_before_fork(void)
{
	pthread_mutex_lock(&rcl_lock);
	rctx_fork_park(&rcl_unparked, rctx_clock_now() + RCTX_FORK_PARK_WAIT);
	/* After rcl_lock, as trim_now: the pool is whole in the child. */
	pthread_mutex_lock(&pool_lock);
}

static void
rctx_alloc_after_fork_parent(void)
{
	pthread_mutex_unlock(&pool_lock);
	pthread_mutex_unlock(&rcl_lock);
}

static void
rctx_alloc_after_fork_child(void)
{
	/* relaxed: the child is single-threaded here */
	rcl_running = false;
	atomic_store_explicit(&rcl_started, false, memory_order_relaxed);
	atomic_store_explicit(&rcl_unparked, false, memory_order_relaxed);
	atomic_store_explicit(&rcl_sleeping, false, memory_order_relaxed);
	atomic_store_explicit(&rcl_stop, false, memory_order_relaxed);
	/* No reclaimer will trim: the next push starts one (rctx_pool_kick). */
	atomic_store_explicit(&trim_armed, false, memory_order_relaxed);
	rctx_alloc_fork_child_orphan();
	pthread_mutex_unlock(&pool_lock); /* this thread took both */
	pthread_mutex_unlock(&rcl_lock);
}

static const struct rctx_fork_hooks rctx_alloc_fork_hooks = {
	.prepare = rctx_alloc_before_fork,
	.parent = rctx_alloc_after_fork_parent,
	.child = rctx_alloc_after_fork_child,
};

/* At load, like fork.c's own handler: a fork may come at any time. */
__attribute__((constructor)) static void
rctx_alloc_load(void)
{
	rctx_fork_hooks_set(RCTX_FORK_SLOT_ALLOC, &rctx_alloc_fork_hooks);
}

long
rctx_alloc_reclaimer_batches(void)
{
	/* relaxed: a statistic for tests */
	return atomic_load_explicit(&rcl_batches, memory_order_relaxed);
}

long
rctx_alloc_outstanding(void)
{
	/* relaxed: a statistic for tests, read after threads are joined */
	return atomic_load_explicit(&outstanding, memory_order_relaxed);
}

long
rctx_alloc_trim(void)
{
	return trim_now(false);
}

void
rctx_alloc_trim_quiet(rctx_time_t quiet)
{
	/* relaxed: a setting, no data; the reclaimer reads it when it next
	 * looks at the pool */
	atomic_store_explicit(&trim_quiet, quiet < 0 ? -1 : quiet,
			      memory_order_relaxed);
}

long
rctx_alloc_trimmed(void)
{
	/* relaxed: a statistic for tests */
	return atomic_load_explicit(&trim_freed, memory_order_relaxed);
}

long
rctx_alloc_pool_count(void)
{
	long n = 0;

	/* rcl_lock: not in the middle of a trim */
	pthread_mutex_lock(&rcl_lock);
	pthread_mutex_lock(&pool_lock);
	/* relaxed: pool_list under pool_lock; pool_head is only read (a
	 * test's snapshot), and the acquire pairs with rctx_pool_push (alloc.A) */
	for (int i = 0; i < 2 * RCTX_CLASSES; i++) {
		int cls = i / 2;
		struct rctx *b =
		    i % 2 ? atomic_load_explicit(&pool_head[cls],
						 memory_order_acquire)
			  : atomic_load_explicit(&pool_list[cls],
						 memory_order_relaxed);

		for (; b; b = rctx_batch_next(b))
			for (struct rctx *c = b; c; c = c->free_next)
				n++;
	}
	pthread_mutex_unlock(&pool_lock);
	pthread_mutex_unlock(&rcl_lock);
	return n;
}

void
rctx_reclaim_count_malloc(void)
{
	/* relaxed: a statistic for tests, no ordering */
	atomic_fetch_add_explicit(&outstanding, 1, memory_order_relaxed);
	/* relaxed: traffic, compared by the reclaimer (I4) */
	atomic_fetch_add_explicit(&pool_traffic, 1, memory_order_relaxed);
}

void
rctx_reclaim_round(void)
{
	/* A round the reclaimer is in finishes first (the lock), then ours
	 * takes whatever is left. */
	pthread_mutex_lock(&rcl_lock);
	(void)reclaim_round();
	pthread_mutex_unlock(&rcl_lock);
}

void
rctx_reclaim_stop(void)
{
	pthread_mutex_lock(&rcl_lock);
	bool joined = rcl_running;

	rcl_held = true; /* until rctx_reclaim_resume */

	if (rcl_running) {
		/* relaxed: the reclaimer reads it under rcl_lock, or after
		 * the acquire of rcl_futex that rcl_wake's release orders */
		atomic_store_explicit(&rcl_stop, true, memory_order_relaxed);
		rcl_running = false;
		/* relaxed: shutdown needs quiescent threads (no flush) */
		atomic_store_explicit(&rcl_started, false,
				      memory_order_relaxed);
		rcl_wake();
	}
	pthread_mutex_unlock(&rcl_lock);
	if (joined)
		pthread_join(rcl_thread, NULL);
	/* relaxed: quiescent; the next push starts a reclaimer (pool_kick) */
	atomic_store_explicit(&trim_armed, false, memory_order_relaxed);
}

void
rctx_reclaim_resume(void)
{
	pthread_mutex_lock(&rcl_lock);
	rcl_held = false;
	pthread_mutex_unlock(&rcl_lock);
}
