/* SPDX-License-Identifier: MIT */
/* After-funcs: callbacks run once a context is done, in caller storage. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "after.h"
#include "children.h"
#include "fault.h"
#include "loopafter.h"
#include "tree.h"

_Static_assert(sizeof(struct rctx_after_impl) <= sizeof(rctx_after_t),
	       "rctx_after_t too small");

/*
 * A registration is an entry of its context's children set, tagged so the
 * cascade tells it from a child. Its slot is the single arbiter: whoever
 * CASes the slot from the entry to 0 owns the registration. The stopper
 * that wins returns true; the canceller (or registerer, if the context was
 * done by then) that wins runs fn.
 *
 * A stopper that loses must not return while fn runs on another thread,
 * yet fn may free the registration, so nothing may be written to it after
 * fn returns. So the thread that runs fn announces it in its own runner
 * record (running = reg) BEFORE its claiming CAS, and clears it after fn
 * returns; a losing stopper waits until no runner record names reg.
 *
 * Ordering
 *  (A) running = reg (seq_cst) precedes the claim CAS (acq_rel). A stopper
 *      whose CAS fails read the claimer's CAS result, so it sees the
 *      announcement when it scans the records.
 *  (B) The runner clears running (seq_cst) then reads waiters (seq_cst);
 *      a waiter bumps waiters (seq_cst) then reads running (seq_cst): one
 *      of them sees the other, so no waiter sleeps through the end of fn.
 *  (C) The registerer writes the fields, then inserts with a seq_cst CAS;
 *      the claimer's acq_rel CAS reads that entry and so sees the fields.
 *
 *
 * Overflow. Registering must never allocate, but the children set grows
 * by allocating a table. So a registration that finds no free slot in the
 * set as it is goes onto the context's overflow list instead, linked
 * through its own storage, under a spin bit in the context (olock). List
 * membership is then the arbiter: the canceller (or the registrant, if it
 * sees the context done after pushing) that unlinks it runs fn, a stopper
 * that unlinks it returns true. A claimer announces itself (A) before it
 * drops the lock, so a stopper that finds the registration gone sees it.
 *  (D) The push is a seq_cst store followed by a seq_cst load of the
 *      state; the canceller's leaf check loads aover (seq_cst) after its
 *      seq_cst state CAS: either the canceller takes the slow path and
 *      drains the list, or the registrant sees the context done.
 *
 * Progress: register and a winning stop are lock-free while the set has a
 * free slot; on a crowded context they take its spin bit for a few
 * stores. A losing stop waits (futex) for the running fn, as the API
 * requires.
 */

struct rctx_runner {
	_Atomic(void *) running; /* registration whose fn runs here */
	_Atomic uint32_t seq;	 /* bumped when running is cleared */
	_Atomic uint32_t waiters;
	_Atomic uint32_t owned; /* a live thread uses this record */
	struct rctx_runner *next;
};

static _Atomic(struct rctx_runner *) runners;
static RCTX_TLS unsigned in_cascade; /* running a cascade's after-funcs */
static _Atomic unsigned runner_gen;  /* bumped by shutdown */
static RCTX_TLS struct rctx_runner *my_runner;
static RCTX_TLS unsigned my_gen;
static pthread_key_t runner_key;
static pthread_once_t runner_once = PTHREAD_ONCE_INIT;

static void
runner_exit(void *arg)
{
	struct rctx_runner *r = arg;

	/* release: a later owner of the record sees it idle; pairs with the
	 * acquire CAS in runner_self */
	atomic_store_explicit(&r->owned, 0, memory_order_release);
}

static void
runner_make_key(void)
{
	(void)pthread_key_create(&runner_key, runner_exit);
}

/* This thread's runner record, or NULL when none could be had. */
static struct rctx_runner *
runner_self(void)
{
	/* relaxed: the generation only tells whether shutdown freed the
	 * records; shutdown requires every other thread to be quiet */
	unsigned gen = atomic_load_explicit(&runner_gen, memory_order_relaxed);
	struct rctx_runner *r;

	if (RCTX_LIKELY(my_runner != NULL && my_gen == gen))
		return my_runner;
	/* acquire: pairs with the release CAS that pushed each record */
	for (r = atomic_load_explicit(&runners, memory_order_acquire); r;
	     r = r->next) {
		uint32_t zero = 0;

		/* acquire: pairs with the release store in runner_exit */
		if (atomic_compare_exchange_strong_explicit(
			&r->owned, &zero, 1, memory_order_acquire,
			memory_order_relaxed))
			goto got;
	}
	r = rctx_calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	atomic_init(&r->owned, 1);
	/* relaxed: the CAS below publishes */
	r->next = atomic_load_explicit(&runners, memory_order_relaxed);
	/* release: publishes the record's fields; pairs with the acquire
	 * loads of runners */
	while (!atomic_compare_exchange_weak_explicit(
	    &runners, &r->next, r, memory_order_release, memory_order_relaxed))
		;
got:
	(void)pthread_once(&runner_once, runner_make_key);
	(void)pthread_setspecific(runner_key, r);
	my_runner = r;
	my_gen = gen;
	return r;
}

/* Run a claimed registration's fn; we own it. */
static void
run_claimed(struct rctx_after_impl *a, struct rctx_runner *me)
{
	void (*fn)(void *) = a->fn;
	void *arg = a->arg;
	struct rctx *ctx = a->ctx;

	/* relaxed: read only by stop on the registering side, which also
	 * synchronised through the slot CAS (A) */
	atomic_store_explicit(&a->state, RCTX_AFTER_FIRED,
			      memory_order_relaxed);
	/* fn sees the context as observers do: done, fd readable (wait.c
	 * B); a registrant may have claimed on a PENDING word */
	if (a->src != NULL)
		(void)rctx_state_load(a->src);
	/* relaxed: aux was published with the registration (C) */
	if (atomic_load_explicit(&a->aux, memory_order_relaxed))
		rctx_lafter_fire(a); /* a loop's: queue it there */
	else
		fn(arg); /* may free a: it is not touched after this */
	if (me) {
		/* seq_cst: order B, pairs with the waiter's increment */
		atomic_store_explicit(&me->running, NULL, memory_order_seq_cst);
		/* seq_cst: order B; also makes futex waiters' value stale */
		atomic_fetch_add_explicit(&me->seq, 1, memory_order_seq_cst);
		/* seq_cst: order B, pairs with the waiter's increment */
		if (atomic_load_explicit(&me->waiters, memory_order_seq_cst))
			rctx_futex(&me->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
				   0);
	}
	if (ctx)
		rctx_tree_release(ctx);
}

static inline bool
claim(_Atomic uintptr_t *slot, uintptr_t entry)
{
	/* acq_rel: acquire pairs with the registerer's seq_cst insert (C);
	 * release pairs with a stopper's failed CAS (A). relaxed on failure
	 * for the claimer; the stopper re-reads with its own ordering */
	return atomic_compare_exchange_strong_explicit(
	    slot, &entry, 0, memory_order_acq_rel, memory_order_acquire);
}

void
rctx_after_fire(_Atomic uintptr_t *slot, uintptr_t entry)
{
	struct rctx_after_impl *a = (void *)(entry & ~RCTX_CSET_TAG_AFTER);
	struct rctx_runner *me = runner_self();

	if (me)
		/* seq_cst: announce before claiming (A) */
		atomic_store_explicit(&me->running, a, memory_order_seq_cst);
	if (!claim(slot, entry)) {
		if (me)
			/* relaxed: we announced nothing that ran */
			atomic_store_explicit(&me->running, NULL,
					      memory_order_relaxed);
		return;
	}
	run_claimed(a, me);
}

static void
olock(struct rctx *c)
{
	unsigned spins = 0;

	/* acquire: pairs with the release in ounlock; the critical section
	 * is a few pointer stores, so spin, yielding now and then */
	while (
	    atomic_flag_test_and_set_explicit(&c->olock, memory_order_acquire))
		if (++spins % 64 == 0)
			sched_yield();
}

static void
ounlock(struct rctx *c)
{
	/* release: publishes the list changes; pairs with olock */
	atomic_flag_clear_explicit(&c->olock, memory_order_release);
}

/* Under c->olock: unlink a from c's overflow list. */
static void
ounlink(struct rctx *c, struct rctx_after_impl *a)
{
	struct rctx_after_impl **pp = a->opprev;

	if (pp == NULL)
		return;
	if (a->onext)
		a->onext->opprev = pp;
	if (pp == (struct rctx_after_impl **)(void *)&c->aover)
		/* relaxed: under the lock; the lock orders readers */
		atomic_store_explicit(&c->aover, a->onext,
				      memory_order_relaxed);
	else
		*pp = a->onext;
	a->opprev = NULL;
}

/* Under src->olock: claim a if still listed; announce before unlock. */
static bool
oclaim(struct rctx *src, struct rctx_after_impl *a, struct rctx_runner *me)
{
	if (a->opprev == NULL)
		return false;
	ounlink(src, a);
	if (me)
		/* seq_cst: order A, visible to a stopper that locks next */
		atomic_store_explicit(&me->running, a, memory_order_seq_cst);
	return true;
}

void
rctx_after_fire_overflow(struct rctx *c)
{
	struct rctx_runner *me;

	/* acquire: pairs with the push's seq_cst store; a push we miss
	 * sees c done and claims itself (D) */
	if (atomic_load_explicit(&c->aover, memory_order_acquire) == NULL)
		return;
	me = runner_self();
	for (;;) {
		struct rctx_after_impl *a;

		olock(c);
		/* relaxed: under the lock */
		a = atomic_load_explicit(&c->aover, memory_order_relaxed);
		if (a == NULL || !oclaim(c, a, me)) {
			ounlock(c);
			return;
		}
		ounlock(c);
		run_claimed(a, me);
	}
}

static void
register_overflow(struct rctx *src, struct rctx_after_impl *a)
{
	struct rctx_runner *me;
	bool mine;

	olock(src);
	/* relaxed: under the lock */
	a->onext = atomic_load_explicit(&src->aover, memory_order_relaxed);
	if (a->onext)
		a->onext->opprev = &a->onext;
	a->opprev = (struct rctx_after_impl **)(void *)&src->aover;
	/* seq_cst: order D, pairs with the canceller's leaf check */
	atomic_store_explicit(&src->aover, a, memory_order_seq_cst);
	ounlock(src);
	/* seq_cst: order D, pairs with the canceller's state CAS */
	if (!rctx_st_err(
		atomic_load_explicit(&src->state, memory_order_seq_cst)))
		return;
	me = runner_self();
	olock(src);
	mine = oclaim(src, a, me);
	ounlock(src);
	if (mine)
		run_claimed(a, me);
}

int
rctx_after_register(struct rctx *ctx, rctx_after_t *reg, void (*fn)(void *),
		    void *arg)
{
	return rctx_after_register_aux(ctx, reg, fn, arg, 0);
}

int
rctx_after_register_aux(struct rctx *ctx, rctx_after_t *reg, void (*fn)(void *),
			void *arg, uint32_t aux)
{
	struct rctx_after_impl *a = (struct rctx_after_impl *)(void *)reg;
	struct rctx *src = ctx->src;
	_Atomic uintptr_t *slot;
	uintptr_t entry = (uintptr_t)a | RCTX_CSET_TAG_AFTER;

	a->fn = fn;
	a->arg = arg;
	a->ctx = NULL;
	a->src = src;
	a->slot = NULL;
	a->onext = NULL;
	a->opprev = NULL;
	/* relaxed: published with the other fields (C) */
	atomic_store_explicit(&a->aux, aux, memory_order_relaxed);
	if (src == NULL) {
		/* Never done: fn never runs; stop still reports it stopped. */
		/* relaxed: registration storage is the caller's; publishing it
		 * to another thread is the caller's business */
		atomic_store_explicit(&a->state, RCTX_AFTER_PENDING,
				      memory_order_relaxed);
		return 0;
	}
	if (rctx_st_err(rctx_state_load(src))) {
		struct rctx_runner *me = runner_self();

		if (me)
			/* seq_cst: lets fn's own stop see it runs (A) */
			atomic_store_explicit(&me->running, a,
					      memory_order_seq_cst);
		run_claimed(a, me);
		return 0;
	}
	rctx_ref_get(ctx);
	a->ctx = ctx;
	/* relaxed: published by the seq_cst insert below (C) */
	atomic_store_explicit(&a->state, RCTX_AFTER_PENDING,
			      memory_order_relaxed);
	slot = rctx_cset_insert_noalloc(&src->children, entry);
	if (slot == NULL) {
		register_overflow(src, a); /* never allocates */
		return 0;
	}
	a->slot = slot;
	/* seq_cst: order B of tree.c: the seq_cst insert above, then this
	 * seq_cst load, so a cancel whose walk missed our entry is seen */
	if (rctx_st_err(
		atomic_load_explicit(&src->state, memory_order_seq_cst)))
		rctx_after_fire(slot, entry);
	return 0;
}

static void
wait_not_running(struct rctx_after_impl *a)
{
	/* acquire: pairs with the release CAS that pushed each record */
	for (struct rctx_runner *r =
		 atomic_load_explicit(&runners, memory_order_acquire);
	     r; r = r->next) {
		/* seq_cst: order A, sees an announcement made before the
		 * claim CAS our failed CAS read */
		if (atomic_load_explicit(&r->running, memory_order_seq_cst) !=
		    a)
			continue;
		/* seq_cst: order B, pairs with the runner's clear */
		atomic_fetch_add_explicit(&r->waiters, 1, memory_order_seq_cst);
		for (;;) {
			/* seq_cst: read seq before running, so a clear after
			 * our check changes seq and the futex returns */
			uint32_t s =
			    atomic_load_explicit(&r->seq, memory_order_seq_cst);
			if (atomic_load_explicit(&r->running,
						 memory_order_seq_cst) != a)
				break;
			rctx_futex(&r->seq, FUTEX_WAIT_PRIVATE, s, NULL, 0);
		}
		/* relaxed: only a hint for the runner's wake decision */
		atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_relaxed);
	}
}

void
rctx_after_cascade_enter(void)
{
	in_cascade++;
}

void
rctx_after_cascade_leave(void)
{
	in_cascade--;
}

/*
 * The context is done: fn belongs to its canceller (Go: once Err() is
 * visible, stop returns false and f has started). Wait until the entry
 * has been claimed, by the canceller or by the registrant that saw done;
 * both are already on their way, so the wait is short. Not when this
 * thread is itself running a cascade's after-funcs: the claimer may be
 * us, further down the same walk, so we take the registration instead.
 */
static bool
done_wait_claimed(struct rctx_after_impl *a)
{
	if (in_cascade)
		return false;
	for (unsigned spins = 0;; spins++) {
		bool listed;

		if (a->slot != NULL) {
			/* acquire: pairs with the claimer's acq_rel CAS */
			listed = atomic_load_explicit(a->slot,
						      memory_order_acquire) ==
				 ((uintptr_t)a | RCTX_CSET_TAG_AFTER);
		} else {
			olock(a->src);
			listed = a->opprev != NULL;
			ounlock(a->src);
		}
		if (!listed)
			return true;
		if (spins % 16 == 15)
			sched_yield();
	}
}

/* An unregister that withdrew a before any canceller claimed it. */
static bool
unregister_won(struct rctx_after_impl *a)
{
	struct rctx *ctx = a->ctx;

	/* relaxed: registration storage is the caller's */
	atomic_store_explicit(&a->state, RCTX_AFTER_IDLE, memory_order_relaxed);
	a->ctx = NULL;
	rctx_tree_release(ctx);
	return true;
}

bool
rctx_after_unregister(rctx_after_t *reg)
{
	struct rctx_after_impl *a = (struct rctx_after_impl *)(void *)reg;
	/* acquire: pairs with run_claimed's store through the slot CAS */
	uint32_t st = atomic_load_explicit(&a->state, memory_order_acquire);
	struct rctx_runner *me;

	if (st == RCTX_AFTER_IDLE)
		return false;
	if (st == RCTX_AFTER_PENDING && a->slot == NULL && a->src == NULL) {
		/* relaxed: registration storage belongs to the caller */
		atomic_store_explicit(&a->state, RCTX_AFTER_IDLE,
				      memory_order_relaxed);
		return true;
	}
	/* acquire: pairs with the state CAS that made src done (tree.c C) */
	if (st == RCTX_AFTER_PENDING &&
	    rctx_st_err(
		atomic_load_explicit(&a->src->state, memory_order_acquire)) &&
	    done_wait_claimed(a)) {
		/* fall through: claimed by the canceller (or registrant) */
	} else if (st == RCTX_AFTER_PENDING && a->slot == NULL) {
		/* On the overflow list: unlinking it is winning. */
		struct rctx *src = a->src;
		bool won;

		olock(src);
		won = a->opprev != NULL;
		if (won)
			ounlink(src, a);
		ounlock(src);
		if (won)
			return unregister_won(a);
	} else if (st == RCTX_AFTER_PENDING &&
		   claim(a->slot, (uintptr_t)a | RCTX_CSET_TAG_AFTER)) {
		return unregister_won(a);
	}
	/* fn was claimed by a canceller: from inside fn, return at once. */
	me = my_runner;
	if (me != NULL &&
	    /* relaxed: our own thread wrote it */
	    atomic_load_explicit(&me->running, memory_order_relaxed) == a)
		return false;
	wait_not_running(a);
	return false;
}

void
rctx_after_shutdown(void)
{
	/* acquire: pairs with the pushes; no thread uses rctx any more */
	struct rctx_runner *r =
	    atomic_exchange_explicit(&runners, NULL, memory_order_acquire);

	while (r) {
		struct rctx_runner *n = r->next;

		free(r);
		r = n;
	}
	/* relaxed: see runner_self */
	atomic_fetch_add_explicit(&runner_gen, 1, memory_order_relaxed);
	my_runner = NULL;
	(void)pthread_once(&runner_once, runner_make_key);
	(void)pthread_setspecific(runner_key, NULL);
}
