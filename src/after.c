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

#include <ck_backoff.h>

#include "after.h"
#include "children.h"
#include "fault.h"
#include "registry.h"
#include "tree.h"

_Static_assert(sizeof(struct rctx_after_impl) <= sizeof(rctx_after_t),
	       "rctx_after_t too small");

/*
 * A registration is an entry of its context's children set, tagged so the
 * cascade tells it from a child. A stopper that loses must not return
 * while fn runs on another thread, yet fn may free the registration, so
 * the thread that runs fn announces it in its own runner record (a
 * per-thread record of registry.c: running[depth] = reg, one slot per
 * nesting level, since fn may cancel a context or register on a done one
 * and so run other fns inside it) BEFORE its claiming CAS, and clears it
 * after fn returns; a losing stopper waits until no runner record names
 * reg.
 *
 * Overflow. Registering must never allocate, but the children set grows
 * by allocating a table. So a registration that finds no free slot in the
 * set as it is goes onto the context's overflow list instead, linked
 * through its own storage, under a spin bit in the context (olock).
 *
 * Invariants
 *  I1. One arbiter per registration: its slot (whoever CASes it from the
 *      entry to 0 owns the registration), or for an overflowed one its
 *      list membership (whoever unlinks it under olock). The stopper that
 *      wins returns true; the canceller (or the registrant, if the
 *      context was done by then) that wins runs fn. Exactly one wins.
 *  I2. Nothing is written to a registration after its fn returns (fn may
 *      free it).
 *  I3. A stopper that loses returns only once no runner record names the
 *      registration (so fn has returned), unless it is called from fn
 *      itself.
 *
 * Ordering
 *  after.A running = reg (seq_cst, rctx_after_fire) precedes the claim CAS
 *      (acq_rel, claim). A stopper whose CAS fails read the claimer's CAS
 *      result (acquire), so it sees the announcement when it scans the
 *      records (wait_not_running). An overflow claimer announces itself
 *      before it drops olock, so a stopper that finds the registration
 *      gone sees it.
 *  after.B The runner clears running (seq_cst) then reads waiters
 *      (seq_cst, run_claimed); a waiter bumps waiters (seq_cst) then reads
 *      running (seq_cst, wait_not_running): one of them sees the other,
 *      so no waiter sleeps through the end of fn.
 *  after.C The registerer writes the fields, then inserts with a seq_cst
 *      CAS (rctx_after_register); the claimer's acq_rel CAS (claim) reads
 *      that entry and so sees the fields.
 *  after.D Overflow: the push is a seq_cst store followed by a seq_cst
 *      load of the state; the canceller's leaf check loads aover
 *      (seq_cst, tree.c) after its seq_cst state CAS: either the canceller
 *      takes the slow path and drains the list, or the registrant sees the
 *      context done.
 *  after.E Unnamed runs. A run nested deeper than RCTX_AFTER_NEST, or on a
 *      thread that has no record (out of memory, or a run inside a
 *      registration, which never allocates one: then it counts in the
 *      static runner_spare, so running an after-func never needs an
 *      allocation to be safe), is only counted in its record's `deep`
 *      (seq_cst increment before the claim, as after.A; seq_cst decrement
 *      after fn, as after.B). A stopper that finds reg named nowhere waits
 *      until every such count it can see drops to zero: conservative (it
 *      may wait for an unrelated fn), never early.
 *  after.F A stopper reads src (state, slot, olock), which only the
 *      registration's reference keeps alive, so it first CASes the state
 *      PENDING -> STOPPING; a claimer CASes PENDING -> FIRED before fn.
 *      One CAS wins (acq_rel on both sides). If the claimer's wins, the
 *      stopper never touches src. If the stopper's wins, the claimer
 *      keeps the reference alive for it: it stores HANDOFF (release; the
 *      stopper's acquire load waits for it) and does not release ctx;
 *      the stopper drops the reference once fn has returned.
 *
 * Progress: register and a winning stop are lock-free while the set has a
 * free slot; on a crowded context they take its spin bit for a few
 * stores. A losing stop waits (futex) for the running fn, as the API
 * requires.
 */

/* Nested runs a record names one by one; deeper ones are only counted. */
#define RCTX_AFTER_NEST 8

struct rctx_runner {
	struct rctx_reg_rec rec; /* first: registry record (registry.c) */
	/* running[d]: the registration whose fn runs at nesting depth d on
	 * this thread (fn cancelled a context, or registered on a done one,
	 * and a nested fn runs inside it), NULL if none */
	_Atomic(void *) running[RCTX_AFTER_NEST];
	_Atomic uint32_t deep; /* runs named nowhere (after.E) */
	_Atomic uint32_t seq;  /* bumped when a run ends */
	_Atomic uint32_t waiters;
};

static RCTX_TLS unsigned in_cascade; /* running a cascade's after-funcs */
static RCTX_TLS unsigned run_depth;  /* fns running on this thread */
static RCTX_TLS unsigned spare_mine; /* of them, counted in runner_spare */
static struct rctx_reg runner_reg =
    RCTX_REG_INIT(RCTX_REG_RUNNER, sizeof(struct rctx_runner), NULL);
/* Stands in for the record of a thread that could not get one (after.E). */
static struct rctx_runner runner_spare;

/*
 * This thread's runner record, or the shared spare (never NULL). A new
 * record is allocated only where the caller may allocate (a cancel, the
 * timer service); registering never allocates (SEMANTICS 25), so there a
 * thread without a record takes an idle one or counts in the spare.
 */
static struct rctx_runner *
runner_self(bool may_alloc)
{
	struct rctx_reg_rec *rec = rctx_reg_mine(&runner_reg);

	if (RCTX_LIKELY(rec != NULL))
		return (struct rctx_runner *)rec;
	rec = may_alloc ? rctx_reg_claim(&runner_reg, NULL, NULL, NULL)
			: rctx_reg_claim_idle(&runner_reg);
	return rec ? (struct rctx_runner *)rec : &runner_spare;
}

/* Announce that a's fn is about to run here (after.A); before the claim. */
static void
announce(struct rctx_runner *me, struct rctx_after_impl *a)
{
	if (me != &runner_spare && run_depth < RCTX_AFTER_NEST) {
		/* seq_cst: after.A, read by wait_not_running */
		atomic_store_explicit(&me->running[run_depth], a,
				      memory_order_seq_cst);
	} else {
		if (me == &runner_spare)
			spare_mine++;
		/* seq_cst: after.A/after.E, read by wait_not_running */
		atomic_fetch_add_explicit(&me->deep, 1, memory_order_seq_cst);
	}
	run_depth++;
}

/* A run named in me ended: bump its sequence, wake stoppers asleep on it. */
static inline void
wake_waiters(struct rctx_runner *me)
{
	/* seq_cst: after.B; also makes futex waiters' value stale */
	atomic_fetch_add_explicit(&me->seq, 1, memory_order_seq_cst);
	/* seq_cst: after.B, pairs with the waiters increment in
	 * wait_not_running */
	if (atomic_load_explicit(&me->waiters, memory_order_seq_cst))
		rctx_futex(&me->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
}

/* Undo announce: nothing ran (the claim failed). */
static void
retract(struct rctx_runner *me)
{
	run_depth--;
	if (me != &runner_spare && run_depth < RCTX_AFTER_NEST) {
		/* relaxed: we announced nothing that ran */
		atomic_store_explicit(&me->running[run_depth], NULL,
				      memory_order_relaxed);
	} else {
		if (me == &runner_spare)
			spare_mine--;
		/* relaxed: as above; a waiter re-checks after its futex */
		atomic_fetch_sub_explicit(&me->deep, 1, memory_order_relaxed);
		/* a waiter may sleep on our count: let it look again */
		wake_waiters(me);
	}
}

/* fn has returned: the announcement ends (after.B). */
static void
finish(struct rctx_runner *me)
{
	run_depth--;
	if (me != &runner_spare && run_depth < RCTX_AFTER_NEST) {
		/* seq_cst: after.B, pairs with the waiters increment in
		 * wait_not_running */
		atomic_store_explicit(&me->running[run_depth], NULL,
				      memory_order_seq_cst);
	} else {
		if (me == &runner_spare)
			spare_mine--;
		/* seq_cst: after.B, as above */
		atomic_fetch_sub_explicit(&me->deep, 1, memory_order_seq_cst);
	}
	wake_waiters(me);
}

/* Run a claimed registration's fn; we own it. */
/*
 * Where a registration with an aux word goes once claimed: loopafter.c
 * installs it at load (a constructor, before any thread), so after.c
 * does not depend on the loop modules.
 */
static void (*aux_fire)(struct rctx_after_impl *a);

void
rctx_after_set_aux_fire(void (*fn)(struct rctx_after_impl *a))
{
	aux_fire = fn;
}

static void
run_claimed(struct rctx_after_impl *a, struct rctx_runner *me)
{
	void (*fn)(void *) = a->fn;
	void *arg = a->arg;
	struct rctx *ctx = a->ctx;
	uint32_t st = RCTX_AFTER_PENDING;

	/* acq_rel: after.F, against the stopper's CAS to STOPPING. A stopper
	 * that got there first is reading src: the context's reference goes
	 * to it (HANDOFF, release: pairs with its acquire load), and it drops
	 * the reference once fn has returned and it no longer looks. */
	if (!atomic_compare_exchange_strong_explicit(
		&a->state, &st, RCTX_AFTER_FIRED, memory_order_acq_rel,
		memory_order_acquire)) {
		atomic_store_explicit(&a->state, RCTX_AFTER_HANDOFF,
				      memory_order_release);
		ctx = NULL;
	}
	/* fn sees the context as observers do: done, fd readable
	 * (wait.B); a registrant may have claimed on a PENDING word */
	if (a->src != NULL)
		(void)rctx_state_load(a->src);
	/* relaxed: aux was published with the registration (after.C) */
	if (atomic_load_explicit(&a->aux, memory_order_relaxed))
		aux_fire(a); /* a loop's: queue it there (loopafter.c) */
	else
		fn(arg); /* may free a: it is not touched after this */
	finish(me);
	if (ctx)
		rctx_tree_release(ctx);
}

static inline bool
claim(_Atomic uintptr_t *slot, uintptr_t entry)
{
	/* acq_rel: acquire pairs with the registerer's seq_cst insert in
	 * rctx_after_register (after.C); release pairs with the acquire of a
	 * stopper's failed claim in rctx_after_unregister (after.A).
	 * Acquire on failure: the failing side (a stopper) has read the
	 * winner's CAS, so its scan in wait_not_running sees the winner's
	 * announcement (after.A) */
	return atomic_compare_exchange_strong_explicit(
	    slot, &entry, 0, memory_order_acq_rel, memory_order_acquire);
}

void
rctx_after_fire(_Atomic uintptr_t *slot, uintptr_t entry)
{
	struct rctx_after_impl *a = (void *)(entry & ~RCTX_CSET_TAG_AFTER);
	struct rctx_runner *me = runner_self(true);

	announce(me, a); /* before claiming (after.A) */
	if (!claim(slot, entry)) {
		retract(me);
		return;
	}
	run_claimed(a, me);
}

/* Past this backoff ceiling a waiter for olock yields instead of spinning. */
#define OLOCK_SPIN_MAX (CK_BACKOFF_INITIALIZER << 4)

static void
olock(struct rctx *c)
{
	ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;

	/* acquire: pairs with the release in ounlock; the critical section
	 * is a few pointer stores, so spin with ck's exponential backoff
	 * (a local loop, no shared access), then yield */
	while (atomic_flag_test_and_set_explicit(&c->olock,
						 memory_order_acquire)) {
		if (backoff < OLOCK_SPIN_MAX)
			ck_backoff_eb(&backoff);
		else
			sched_yield();
	}
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
	announce(me, a); /* after.A: seen by a stopper that locks next */
	return true;
}

void
rctx_after_fire_overflow(struct rctx *c)
{
	struct rctx_runner *me;

	/* acquire: pairs with the seq_cst store in register_overflow; a
	 * push we miss sees c done and claims itself (after.D) */
	if (atomic_load_explicit(&c->aover, memory_order_acquire) == NULL)
		return;
	me = runner_self(true);
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
	/* seq_cst: after.D, pairs with the aover loads of tree.c's
	 * cascade (leaf check) and mark_child */
	atomic_store_explicit(&src->aover, a, memory_order_seq_cst);
	ounlock(src);
	/* seq_cst: after.D, pairs with the state CAS in tree.c's
	 * publish_done */
	if (!rctx_st_err(
		atomic_load_explicit(&src->state, memory_order_seq_cst)))
		return;
	me = runner_self(false);
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
	struct rctx *src = rctx_src(ctx);
	_Atomic uintptr_t *slot;
	uintptr_t entry = (uintptr_t)a | RCTX_CSET_TAG_AFTER;

	a->fn = fn;
	a->arg = arg;
	a->ctx = NULL;
	a->src = src;
	a->slot = NULL;
	a->onext = NULL;
	a->opprev = NULL;
	/* relaxed: published with the other fields (after.C) */
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
		struct rctx_runner *me = runner_self(false);

		/* relaxed: no stop can run before we return (run_claimed's
		 * CAS needs PENDING) */
		atomic_store_explicit(&a->state, RCTX_AFTER_PENDING,
				      memory_order_relaxed);
		announce(me, a); /* lets fn's own stop see it runs */
		run_claimed(a, me);
		return 0;
	}
	rctx_ref_get(ctx);
	a->ctx = ctx;
	/* relaxed: published by the seq_cst insert below (after.C) */
	atomic_store_explicit(&a->state, RCTX_AFTER_PENDING,
			      memory_order_relaxed);
	slot = rctx_cset_insert_noalloc(&src->children, entry);
	if (slot == NULL) {
		register_overflow(src, a); /* never allocates */
		return 0;
	}
	a->slot = slot;
	/* seq_cst: tree.B: the seq_cst insert above, then this
	 * seq_cst load, so a cancel whose walk missed our entry is seen */
	if (rctx_st_err(
		atomic_load_explicit(&src->state, memory_order_seq_cst)))
		rctx_after_fire(slot, entry);
	return 0;
}

/* Does r name a at some depth? (a == NULL: does r count unnamed runs?) */
static bool
runs(struct rctx_runner *r, const struct rctx_after_impl *a)
{
	if (a == NULL)
		/* seq_cst: after.B/after.E, pairs with announce/finish */
		return atomic_load_explicit(&r->deep, memory_order_seq_cst) !=
		       0;
	for (unsigned d = 0; d < RCTX_AFTER_NEST; d++)
		/* seq_cst: after.A, sees an announcement made before the
		 * claim CAS our failed CAS read */
		if (atomic_load_explicit(&r->running[d],
					 memory_order_seq_cst) == a)
			return true;
	return false;
}

/* Sleep until runs(r, a) is false. */
static void
wait_on(struct rctx_runner *r, const struct rctx_after_impl *a)
{
	/* seq_cst: after.B, pairs with the seq_cst ends in finish */
	atomic_fetch_add_explicit(&r->waiters, 1, memory_order_seq_cst);
	for (;;) {
		/* seq_cst: read seq before the slots, so an end after our
		 * check changes seq and the futex returns */
		uint32_t s =
		    atomic_load_explicit(&r->seq, memory_order_seq_cst);

		if (!runs(r, a))
			break;
		rctx_futex(&r->seq, FUTEX_WAIT_PRIVATE, s, NULL, 0);
	}
	/* relaxed: only a hint for the runner's wake decision */
	atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_relaxed);
}

/*
 * Return once fn of a (claimed by someone else) has returned. Our own
 * record is skipped: if it names a we are inside fn (I3). If no record
 * names a, fn has returned, or it runs unnamed (after.E): then wait for
 * every unnamed run to end.
 */
static void
wait_not_running(struct rctx_after_impl *a, struct rctx_runner *me)
{
	struct rctx_runner *first =
	    (struct rctx_runner *)rctx_reg_first(&runner_reg);
	bool named = false;

	/* rctx_reg_first's acquire pairs with the push (registry.A) */
	for (struct rctx_runner *r = first; r;
	     r = (struct rctx_runner *)r->rec.next)
		if (r != me && runs(r, a)) {
			named = true;
			wait_on(r, a);
		}
	if (named)
		return;
	for (struct rctx_runner *r = first; r;
	     r = (struct rctx_runner *)r->rec.next)
		if (r != me && runs(r, NULL))
			wait_on(r, NULL);
	/* Not if we count there ourselves: we cannot wait for us. */
	if (spare_mine == 0 && runs(&runner_spare, NULL))
		wait_on(&runner_spare, NULL);
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
			/* acquire: pairs with the acq_rel CAS in claim */
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

/*
 * Withdraw a registration this stopper marked STOPPING if no canceller
 * has claimed it: true if we won. src is alive throughout (after.F).
 */
static bool
withdraw(struct rctx_after_impl *a)
{
	/* acquire: pairs with the state CAS that made src done (tree.C) */
	if (rctx_st_err(
		atomic_load_explicit(&a->src->state, memory_order_acquire)) &&
	    done_wait_claimed(a))
		return false; /* claimed by the canceller */
	if (a->slot == NULL) {
		/* On the overflow list: unlinking it is winning. */
		struct rctx *src = a->src;
		bool won;

		olock(src);
		won = a->opprev != NULL;
		if (won)
			ounlink(src, a);
		ounlock(src);
		return won;
	}
	return claim(a->slot, (uintptr_t)a | RCTX_CSET_TAG_AFTER);
}

bool
rctx_after_unregister(rctx_after_t *reg)
{
	struct rctx_after_impl *a = (struct rctx_after_impl *)(void *)reg;
	/* acquire: pairs with run_claimed's CAS through the slot CAS */
	uint32_t st = atomic_load_explicit(&a->state, memory_order_acquire);
	struct rctx *ctx;

	if (st == RCTX_AFTER_IDLE)
		return false;
	if (st == RCTX_AFTER_PENDING && a->slot == NULL && a->src == NULL) {
		/* relaxed: registration storage belongs to the caller */
		atomic_store_explicit(&a->state, RCTX_AFTER_IDLE,
				      memory_order_relaxed);
		return true;
	}
	/* acq_rel: after.F, against run_claimed's CAS to FIRED */
	if (st != RCTX_AFTER_PENDING ||
	    !atomic_compare_exchange_strong_explicit(
		&a->state, &st, RCTX_AFTER_STOPPING, memory_order_acq_rel,
		memory_order_acquire)) {
		/* fn was claimed before we looked: wait until it has
		 * returned, or return at once from inside fn
		 * (wait_not_running skips us). src is not touched. */
		wait_not_running(
		    a, (struct rctx_runner *)rctx_reg_mine(&runner_reg));
		return false;
	}
	if (withdraw(a))
		return unregister_won(a);
	/* A canceller claimed it while we looked: it hands us the
	 * reference (run_claimed), right after its claim. */
	for (unsigned spins = 0;
	     /* acquire: pairs with the release store of HANDOFF */
	     atomic_load_explicit(&a->state, memory_order_acquire) !=
	     RCTX_AFTER_HANDOFF;
	     spins++)
		if (spins % 16 == 15)
			sched_yield();
	ctx = a->ctx;
	wait_not_running(a, (struct rctx_runner *)rctx_reg_mine(&runner_reg));
	/* relaxed: registration storage is the caller's */
	atomic_store_explicit(&a->state, RCTX_AFTER_FIRED,
			      memory_order_relaxed);
	rctx_tree_release(ctx);
	return false;
}

void
rctx_after_shutdown(void)
{
	/* no thread uses rctx any more (registry.I2) */
	struct rctx_reg_rec *r = rctx_reg_take_all(&runner_reg);

	while (r) {
		struct rctx_reg_rec *n = r->next;

		free(r);
		r = n;
	}
}
