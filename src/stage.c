/* SPDX-License-Identifier: MIT */
/* Stages: timers parked on their arming thread until its wheel steals them. */

/*
 * A timer due at least RCTX_STAGE_MIN_TICKS ticks from now is not pushed
 * on its wheel's shared queue: it goes on a list of its arming thread's
 * own (the stage), which the wheel's owner steals whole at every cycle
 * while any stage is non-empty, and which the arming thread flushes
 * itself every RCTX_STAGE_FLUSH arms. A timer released before either
 * happens (a request that finished quickly) is freed by the thread that
 * flushes it, without the owner ever seeing it: no shared cache line is
 * written on arm or release. Library mode only.
 *
 * Invariants
 *  I1. A staged timer has QUEUED and STAGED set; whoever pops it from the
 *      stage (the flushing thread, the stealing owner, shutdown) clears
 *      STAGED, and QUEUED too if it kills it or files it (twheel.I1).
 *  I2. Only the stage's thread pushes; anyone may take the whole list
 *      with one exchange (no ABA: nobody pops a single element).
 *  I3. A stage is bound to one wheel (st->tw) for its life: the wheel of
 *      the CPU its thread first staged on. The thread keeps staging there
 *      when it runs on another CPU; handing each such arm to that CPU's
 *      queue instead wrote a shared line and woke its owner on every arm
 *      and release (issue 13: a thread moved by the scheduler after its
 *      first arm handed off 40% of its arms, at 3x the cost).
 *  I4. Stage records are never freed before shutdown (a stealer may read
 *      any record of the registry at any time, registry.c).
 *
 * Ordering
 *  stage.A The push (seq_cst CAS in rctx_stage_push) publishes t to the
 *      exchange of rctx_stage_steal or rctx_stage_flush, as twheel.A.
 *  stage.B The push is also the producer's store half of twheel.B: the
 *      owner's rctx_tw_plan loads the stages (rctx_stage_busy, seq_cst)
 *      after storing planned, and the stager loads planned after its push
 *      (rctx_tw_wake_if). So a staged timer is stolen at least two ticks
 *      before it is due, or the stager wakes the owner.
 *
 * Progress: push and flush are lock-free (the flush CAS on each timer's
 * flags retries only against a concurrent release); the first arm of a
 * thread may allocate its record.
 */

#include <stdlib.h>

#include "registry.h"
#include "stage.h"

struct rctx_stage {
	struct rctx_reg_rec rec;	   /* first: registry record */
	_Atomic(struct rctx_timer *) head; /* staged timers, through qnext */
	struct rctx_twheel *tw;		   /* the wheel that steals it */
	unsigned n;			   /* arms since the last flush */
};

static void rctx_stage_exit(struct rctx_reg_rec *rec);

static struct rctx_reg rctx_stage_reg =
    RCTX_REG_INIT(RCTX_REG_STAGE, sizeof(struct rctx_stage), rctx_stage_exit);

/* Flush a stage: free what was released, hand the rest to the owner. */
static void
rctx_stage_flush(struct rctx_stage *st)
{
	/* seq_cst: takes the pushes of rctx_stage_push (stage.A) */
	struct rctx_timer *t =
	    atomic_exchange_explicit(&st->head, NULL, memory_order_seq_cst);
	struct rctx_timer *next;
	rctx_time_t earliest = RCTX_NEVER;

	st->n = 0;
	for (; t; t = next) {
		/* Relaxed: the CAS below validates. */
		uint32_t f =
		    atomic_load_explicit(&t->flags, memory_order_relaxed);
		uint32_t nf;

		next = t->qnext;
		do {
			nf = f & ~RCTX_TIMER_F_STAGED;
			if (f & RCTX_TIMER_F_DEAD)
				nf &= ~RCTX_TIMER_F_QUEUED;
			/* acq_rel: acquire pairs with the CAS in
			 * rctx_timer_release (it set DEAD); release hands t
			 * on with what we wrote */
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->flags, &f, nf, memory_order_acq_rel,
		    memory_order_relaxed));
		if (f & RCTX_TIMER_F_DEAD) {
			rctx_tw_call_dead(t); /* twheel.I1: we cleared QUEUED */
			continue;
		}
		/* Still QUEUED: it moves to the owner's queue. */
		rctx_tw_push(st->tw, t);
		if (t->expires < earliest)
			earliest = t->expires;
	}
	if (earliest != RCTX_NEVER)
		rctx_tw_wake_if(st->tw, earliest - 2 * rctx_tw_tick(st->tw));
}

/* Thread exit (the registry calls it while the record is still ours). */
static void
rctx_stage_exit(struct rctx_reg_rec *rec)
{
	rctx_stage_flush((struct rctx_stage *)rec);
}

static bool
rctx_stage_match(const struct rctx_reg_rec *rec, const void *tw)
{
	return ((const struct rctx_stage *)rec)->tw == tw;
}

/* A new record: bound to tw before the registry publishes it (I3). */
static void
rctx_stage_init(struct rctx_reg_rec *rec, const void *tw)
{
	((struct rctx_stage *)rec)->tw = (struct rctx_twheel *)tw;
}

struct rctx_stage *
rctx_stage_self(struct rctx_twheel *tw)
{
	struct rctx_stage *st =
	    (struct rctx_stage *)rctx_reg_mine(&rctx_stage_reg);

	if (RCTX_LIKELY(st != NULL))
		return st; /* I3: whatever CPU we run on now */
	return (struct rctx_stage *)rctx_reg_claim(
	    &rctx_stage_reg, rctx_stage_match, rctx_stage_init, tw);
}

void
rctx_stage_push(struct rctx_stage *st, struct rctx_timer *t,
		rctx_time_t expires)
{
	struct rctx_twheel *tw = st->tw;
	/* Relaxed: only we push (I2); the CAS validates against steals. */
	struct rctx_timer *head =
	    atomic_load_explicit(&st->head, memory_order_relaxed);

	rctx_timer_set_expires(t, expires);
	/* Relaxed: published by the fetch_or below. */
	atomic_store_explicit(&t->home, tw, memory_order_relaxed);
	/*
	 * Release: publishes home to a rctx_timer_release that sees QUEUED
	 * (pairs with its acquire load); the push publishes all of t to a
	 * stealer (stage.A).
	 */
	atomic_fetch_or_explicit(&t->flags,
				 RCTX_TIMER_F_ARMED | RCTX_TIMER_F_QUEUED |
				     RCTX_TIMER_F_STAGED,
				 memory_order_release);
	do {
		t->qnext = head;
		/* seq_cst: publishes t to rctx_stage_steal's exchange
		 * (stage.A) and is the store half of stage.B */
	} while (!atomic_compare_exchange_weak_explicit(
	    &st->head, &head, t, memory_order_seq_cst, memory_order_relaxed));
	/*
	 * The owner must steal it two ticks before it is due: if its plan
	 * does not promise to look by then (it polls each tick while any
	 * stage is busy), wake it. In steady state this makes no call.
	 */
	rctx_tw_wake_if(tw, expires - 2 * rctx_tw_tick(tw));
	if (++st->n >= RCTX_STAGE_FLUSH)
		rctx_stage_flush(st);
}

size_t
rctx_stage_steal(struct rctx_twheel *tw)
{
	struct rctx_reg_rec *rec;
	size_t n = 0;

	for (rec = rctx_reg_first(&rctx_stage_reg); rec; rec = rec->next) {
		struct rctx_stage *st = (struct rctx_stage *)rec;
		struct rctx_timer *t, *next;

		/* Relaxed pre-check: an empty stage needs no exchange; a
		 * push we miss is seen by rctx_stage_busy (stage.B). */
		if (st->tw != tw ||
		    !atomic_load_explicit(&st->head, memory_order_relaxed))
			continue;
		/* seq_cst: acquires the pushes of rctx_stage_push (stage.A)
		 * and comes after our planned store (stage.B) */
		t = atomic_exchange_explicit(&st->head, NULL,
					     memory_order_seq_cst);
		for (; t; t = next) {
			next = t->qnext;
			rctx_tw_take(tw, t);
			n++;
		}
	}
	return n;
}

bool
rctx_stage_busy(struct rctx_twheel *tw)
{
	struct rctx_reg_rec *rec;

	for (rec = rctx_reg_first(&rctx_stage_reg); rec; rec = rec->next) {
		struct rctx_stage *st = (struct rctx_stage *)rec;

		/* seq_cst: the owner's load half of stage.B; pairs with the
		 * push CAS in rctx_stage_push */
		if (st->tw == tw &&
		    atomic_load_explicit(&st->head, memory_order_seq_cst))
			return true;
	}
	return false;
}

void
rctx_stage_shutdown(void)
{
	struct rctx_reg_rec *rec = rctx_reg_take_all(&rctx_stage_reg);

	while (rec) {
		struct rctx_stage *st = (struct rctx_stage *)rec;
		struct rctx_reg_rec *rnext = rec->next;
		/* seq_cst: as in rctx_stage_steal (stage.A) */
		struct rctx_timer *t = atomic_exchange_explicit(
		    &st->head, NULL, memory_order_seq_cst);

		while (t) {
			struct rctx_timer *tn = t->qnext;

			/* acq_rel: as in rctx_stage_flush; still QUEUED, it
			 * joins the wheel's queue, which shutdown kills */
			atomic_fetch_and_explicit(&t->flags,
						  ~RCTX_TIMER_F_STAGED,
						  memory_order_acq_rel);
			rctx_tw_push(st->tw, t);
			t = tn;
		}
		free(st);
		rec = rnext;
	}
}
