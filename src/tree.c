/* SPDX-License-Identifier: MIT */
/* The cancellation tree: derive, references and freeing (cancel: cascade.c). */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "after.h"
#include "alloc.h"
#include "children.h"
#include "fault.h"
#include "timer.h"
#include "stats.h"
#include "tree.h"
#include "value.h"
#include "wait.h"

/*
 * Invariants
 *  (I1) Every cancelable context c that is not done and whose src-parent
 *       p = rctx_src(c->parent) exists and is not done is an entry of p's
 *       children set. Value and without_cancel contexts are never in a
 *       set: their children register with the nearest cancelable ancestor.
 *  (I2) A context's state word goes from live to done exactly once (one
 *       CAS wins); err and cause never change afterwards.
 *  (I3) When a cancel returns, every descendant is done: the cascade
 *       marks children before it runs any callback, and walks through
 *       children another canceller made done (their cascade may still
 *       be running) to mark what is still live beneath them. A marked
 *       node leaves its parent's set only after its canceller has marked
 *       every node, so such a walk always finds the unfinished ones.
 *  (I4) A child holds a reference to its parent; a context's memory is
 *       reused only after its last reference is dropped and no walk can
 *       still use a pointer to it read from a set: at once when tree.E
 *       shows no walk could have read it, else after an RCU grace period
 *       (alloc.c I1). So a canceller that read a child pointer from a set
 *       inside rcu_read_lock() may try-retain it.
 *
 * Ordering
 *  tree.A A constructor initialises the child, then inserts it with a seq_cst
 *      CAS; the cascade reads slots with seq_cst loads, so it sees a fully
 *      initialised child.
 *  tree.B No lost cancellation (SEMANTICS 4). The child: insert (seq_cst
 *      CAS), then load parent state (seq_cst). The canceller: CAS parent state
 *      (seq_cst), then load slots (seq_cst). In the single total order of
 *      seq_cst operations one comes first: either the walk sees the child,
 *      or the child sees the parent done and cancels itself. Both may
 *      happen; the child's own CAS (I2) makes it count once.
 *  tree.C err and cause are written by one seq_cst CAS of the state word and
 *      read by one acquire load (rctx_state_load), so a thread that sees
 *      err sees the cause that came with it.
 *  tree.D A child's state CAS in the cascade happens before the cascade
 *      returns, so rctx_cancel's caller sees every descendant done (I3).
 *  tree.E Reuse without a grace period. A cascade counts itself in a node's
 *      walkers (seq_cst) before it reads the node's slots, and leaves
 *      after it has finished with every pointer it read there. A freed
 *      child leaves its set (seq_cst CAS; a canceller that removed it
 *      earlier handed it on through its reference) and then loads the
 *      set owner's walkers (seq_cst): if that is 0, every walk that could
 *      have read its pointer is over, so its memory may be reused at
 *      once; otherwise it waits for a grace period (I4).
 *  tree.F No write into a closed fd. A context's eventfd is closed when its
 *      last reference goes (free_one), so a canceller that marks a child
 *      it holds no reference to writes the child's fd only after a
 *      successful try-retain (publish_done): a child whose count reached
 *      zero is unreachable and its fd may already be someone else's.
 *      PENDING: every cancel CASes err, cause and PENDING in, then loads
 *      the fd (seq_cst, after the CAS: wait.B), writes it, and clears
 *      PENDING (release). An observer that meets PENDING does the same
 *      itself (rctx_state_settle: fd write, then a CAS clearing it), so
 *      no observer ever waits for another thread, which in a fork child
 *      may not exist.
 *  tree.G A losing cancel returns after the subtree is done (I3), as Go's
 *      second cancel waits on the mutex. The winning CAS sets CASCADE on
 *      every node it marks; the owner clears it with a release store once
 *      the node's whole subtree is marked (a leaf at once, others after
 *      step 1 of the cascade). A cancel that finds err set loads the state
 *      with acquire: without CASCADE, the clear (or the leaf's CAS)
 *      happened before and every descendant's mark is visible: it
 *      returns (one load). With CASCADE it does not wait: it walks the
 *      subtree like a cascade (cascade_assist), marking what is still
 *      live, so it is lock-free and finishes in a fork child whose owner
 *      thread is gone. A walk skips a done child without CASCADE (its
 *      subtree is done: acquire load in mark_child).
 *
 * Progress: derive is lock-free (children set CAS), cancel is lock-free
 * and takes no lock while running callbacks; the cascade is iterative
 * (an intrusive work list), so depth costs no stack.
 */

struct rctx rctx_root_background = {
	.refs = 1,
	.kind = RCTX_KIND_ROOT,
#ifdef RCTX_DEBUG
	.magic = RCTX_MAGIC_LIVE,
#endif
};

struct rctx rctx_root_todo = {
	.refs = 1,
	.kind = RCTX_KIND_ROOT,
#ifdef RCTX_DEBUG
	.magic = RCTX_MAGIC_LIVE,
#endif
};

#ifdef RCTX_DEBUG
void
rctx_debug_dead(const struct rctx *c, const char *what)
{
	fprintf(stderr,
		"rctx: %s: context %p was used after its last release\n", what,
		(const void *)c);
	abort();
}
#endif

static void timer_fire(struct rctx_timer *t);
static void timer_dead(struct rctx_timer *t);

static pthread_once_t tree_once = PTHREAD_ONCE_INIT;

static void
tree_setup(void)
{
	rctx_timer_setup(timer_fire, timer_dead);
	/* What a timer owner's callbacks freed goes back to the pool. */
	rctx_timer_set_cycle_hook(rctx_alloc_thread_flush);
	/* A fork child that only waits restarts its timer threads. */
	rctx_wait_set_sleep_hook(rctx_timer_poke);
}

void
rctx_tree_init(void)
{
	(void)pthread_once(&tree_once, tree_setup);
}

static void
init_cancelable(struct rctx *c)
{
	/* relaxed: c is not yet visible to any other thread; a block kept
	 * from an earlier life has its fd closed and its tables freed */
	struct rctx_ext *x =
	    atomic_load_explicit(&c->children.x, memory_order_relaxed);

	atomic_init(&c->state, 0);
	rctx_cset_reinit(&c->children);
	if (x)
		atomic_init(&x->fd_written, 0);
	atomic_init(&c->aover, NULL);
	atomic_init(&c->walkers, 0);
	atomic_flag_clear_explicit(&c->olock, memory_order_relaxed);
}

/*
 * Register cancelable c under p (its parent's src). 0, or -ENOMEM. On
 * return c is either in p's set or done with p's err and cause (tree.B).
 */
static int
attach(struct rctx *c, struct rctx *p)
{
	_Atomic uintptr_t *slot;
	uint64_t s, sh;

	if (p == NULL)
		return 0;
	s = rctx_state_load(p);
	if (rctx_st_err(s)) {
		/* relaxed: c is not yet visible to any other thread */
		uint64_t old =
		    atomic_load_explicit(&c->state, memory_order_relaxed);

		atomic_store_explicit(&c->state, s & RCTX_ST_FINAL_MASK,
				      memory_order_relaxed);
		rctx_stats_done(c, old, s); /* takes back a TIMER bit (I3) */
		return 0;
	}
	sh = rctx_share(p);
	if (RCTX_UNLIKELY(sh & RCTX_SHARE_STATE)) {
		slot = rctx_shard_insert(p, (uintptr_t)c);
		c->registered = 2;
	} else {
		/* p == c->parent: rctx_parent_get notes the derive */
		if (p != c->parent && RCTX_UNLIKELY(!rctx_share_mine(sh)))
			rctx_shard_miss(p);
		slot = rctx_cset_insert(&p->children, (uintptr_t)c);
		c->registered = 1;
	}
	if (RCTX_UNLIKELY(slot == NULL)) {
		c->registered = 0;
		return -ENOMEM;
	}
	/* relaxed: a canceller that found c stores the same address */
	atomic_store_explicit(&c->slot, slot, memory_order_relaxed);
	/* seq_cst: tree.B, pairs with the canceller's seq_cst state CAS.
	 * The insert was a seq_cst CAS, so it precedes this load in the
	 * single total order of seq_cst operations: no fence is needed. */
	s = atomic_load_explicit(&p->state, memory_order_seq_cst);
	if (rctx_st_err(s))
		(void)rctx_tree_cancel(c, (unsigned)(s & RCTX_ST_ERR_MASK),
				       rctx_st_cause(s));
	return 0;
}

struct rctx *
rctx_tree_with_cancel(struct rctx *parent)
{
	struct rctx *c =
	    rctx_ctx_new(parent, RCTX_KIND_CANCEL, RCTX_CLASS_CANCEL);

	if (c == NULL)
		return NULL;
	init_cancelable(c);
	if (RCTX_UNLIKELY(attach(c, rctx_src(parent)) < 0)) {
		rctx_ctx_free_now(c);
		errno = ENOMEM;
		return NULL;
	}
	rctx_parent_get(c, parent);
	return c;
}

struct rctx *
rctx_tree_with_deadline(struct rctx *parent, rctx_time_t deadline, int cause)
{
	return rctx_tree_with_deadline_at(parent, deadline, cause,
					  RCTX_NOW_UNKNOWN);
}

struct rctx *
rctx_tree_with_deadline_at(struct rctx *parent, rctx_time_t deadline, int cause,
			   rctx_time_t now)
{
	struct rctx *c;
	rctx_time_t pd;
	int r;

	if (rctx_deadline_get(parent, &pd) && pd <= deadline)
		return rctx_tree_with_cancel(parent);
	c = rctx_ctx_new(parent, RCTX_KIND_TIMER, RCTX_CLASS_TIMER);
	if (c == NULL)
		return NULL;
	init_cancelable(c);
	rctx_timer_init(&c->timer);
	c->timer.expires = deadline; /* the deadline, read by anyone */
	c->timer.aux = cause;
	if (deadline != INT64_MAX) {
		/* stats.c I3: counted from here, before c can be seen, so
		 * that no RMW is needed; the write that ends c (done CAS, or
		 * free while live) takes it back */
		atomic_init(&c->state, RCTX_ST_TIMER);
		rctx_stat_add(RCTX_STAT_TIMERS, 1);
	}
	if (RCTX_UNLIKELY(attach(c, rctx_src(parent)) < 0)) {
		/* relaxed: c was never seen */
		if (atomic_load_explicit(&c->state, memory_order_relaxed) &
		    RCTX_ST_TIMER)
			rctx_stat_add(RCTX_STAT_TIMERS, -1);
		rctx_ctx_free_now(c);
		errno = ENOMEM;
		return NULL;
	}
	rctx_parent_get(c, parent);
	if (rctx_st_err(rctx_state_load(c)))
		return c; /* born done under a done parent */
	if (now == RCTX_NOW_UNKNOWN)
		now = rctx_clock_now();
	if (deadline <= now) {
		(void)rctx_tree_cancel(c, RCTX_ST_TIMEDOUT,
				       cause ? cause : ETIMEDOUT);
		return c;
	}
	if (deadline == INT64_MAX)
		return c; /* the clock never gets there: no timer */
	rctx_tree_init();
	/* Before the hand-off: once armed, a fire and the free path on the
	 * owner thread may read it. */
	c->flags |= RCTX_F_ARMED;
	r = rctx_timer_arm_at(&c->timer, deadline, now);
	if (RCTX_UNLIKELY(r < 0)) {
		/* never handed over: nobody else reads it */
		c->flags &= (uint8_t)~RCTX_F_ARMED;
		/* api.c did not count it made; its free counts it freed */
		rctx_stat_add(RCTX_STAT_FREED, -1);
		/* Leaves the parent as it was: the free path removes c from
		 * its set (a racing canceller may still hold c; then it
		 * frees c). */
		rctx_tree_release(c);
		errno = -r;
		return NULL;
	}
	if (rctx_st_err(rctx_state_load(c)))
		rctx_timer_cancel(&c->timer); /* cancelled while arming */
	return c;
}

struct rctx *
rctx_tree_without_cancel(struct rctx *parent)
{
	struct rctx *c =
	    rctx_ctx_new(parent, RCTX_KIND_WITHOUT, RCTX_CLASS_CANCEL);

	if (c == NULL)
		return NULL;
	rctx_parent_get(c, parent);
	return c;
}

static void
timer_fire(struct rctx_timer *t)
{
	struct rctx *c = rctx_container_of(t, struct rctx, timer);

	/* The service calls dead(t) only after fire returns, so c's memory
	 * is valid; a zero count means it is being freed: nothing to do. */
	if (!rctx_ref_tryget(c))
		return;
	if (rctx_tree_cancel(c, RCTX_ST_TIMEDOUT,
			     c->timer.aux ? c->timer.aux : ETIMEDOUT) == 0)
		rctx_stats_late(c->timer.expires);
	rctx_tree_release(c);
}

/*
 * Return c's memory. Only a canceller walking a children set reads a
 * context it holds no reference to (I4), so a context that was never in a
 * set can be reused at once; one that was waits for a grace period. Debug
 * builds always wait, so that a use after release finds poisoned memory.
 */
static void
ctx_free(struct rctx *c)
{
#ifndef RCTX_DEBUG
	if (!(c->flags & RCTX_F_DEFER)) {
		rctx_ctx_free_now(c);
		return;
	}
#endif
	rctx_ctx_free_rcu(c);
}

static void
timer_dead(struct rctx_timer *t)
{
	ctx_free(rctx_container_of(t, struct rctx, timer));
}

/* --- freeing --- */

static void
free_one(struct rctx *c)
{
	rctx_stats_freed(c);
	if (rctx_is_cancelable(c)) {
		struct rctx_ext *x;

		if (c->registered) {
			/* alive: c still holds its parent */
			struct rctx *p = rctx_src(c->parent);

			/* relaxed: ours, or the same address from a
			 * canceller that handed c on through its reference */
			rctx_set_leave_from(
			    c, p,
			    atomic_load_explicit(&c->slot,
						 memory_order_relaxed));
			/*
			 * May a canceller still hold c's pointer without a
			 * reference? Only if it walks p's set now (tree.E).
			 * seq_cst: after our seq_cst removal from the set.
			 */
			if (atomic_load_explicit(&p->walkers,
						 memory_order_seq_cst) != 0)
				c->flags |= RCTX_F_DEFER;
		}
		rctx_stats_freed_cancelable(c);
		/* relaxed: c is unreachable; most contexts never needed the
		 * block (a third child, an fd) */
		x = atomic_load_explicit(&c->children.x, memory_order_relaxed);
		if (RCTX_UNLIKELY(x != NULL)) {
			rctx_cset_destroy(&c->children);
			rctx_wait_close(c);
		}
	}
	/* relaxed: c is unreachable; its promotion, made by a holder,
	 * finished before the holder's put */
	if (RCTX_UNLIKELY(
		atomic_load_explicit(&c->share, memory_order_relaxed) &
		RCTX_SHARE_STATE))
		rctx_shards_free(c);
	if (RCTX_UNLIKELY(c->flags & RCTX_F_VINDEX))
		rctx_value_free(c);
#ifdef RCTX_DEBUG
	c->magic = RCTX_MAGIC_DEAD;
#endif
	if (c->kind == RCTX_KIND_TIMER && (c->flags & RCTX_F_ARMED))
		rctx_timer_release(&c->timer); /* timer_dead frees c */
	else
		ctx_free(c);
}

void
rctx_tree_release(struct rctx *c)
{
	/* Iterative: a chain whose references all reach zero is freed
	 * bottom-up in this loop, never by recursion. */
	while (c != NULL && c->kind != RCTX_KIND_ROOT) {
		rctx_debug_check(c, "rctx_release");
		if (!rctx_ref_put(c))
			return;
		for (;;) {
			struct rctx *parent = c->parent;
			bool on_shard = c->pshard; /* then parent is split */

			free_one(c);
			c = parent;
			if (RCTX_LIKELY(!on_shard))
				break;
			if (!rctx_shard_put(c))
				return;
		}
	}
}
