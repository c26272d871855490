/* SPDX-License-Identifier: MIT */
/* The cancellation tree: derive, cancel cascade, references and freeing. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
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
 *       p = c->parent->src exists and is not done is an entry of p's
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
	.deadline = INT64_MAX,
	.fd = -1,
};

struct rctx rctx_root_todo = {
	.refs = 1,
	.kind = RCTX_KIND_ROOT,
#ifdef RCTX_DEBUG
	.magic = RCTX_MAGIC_LIVE,
#endif
	.deadline = INT64_MAX,
	.fd = -1,
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

static struct rctx *
ctx_new(struct rctx *parent, uint8_t kind)
{
	struct rctx *c = rctx_ctx_alloc();

	if (RCTX_UNLIKELY(c == NULL)) {
		errno = ENOMEM;
		return NULL;
	}
	atomic_init(&c->refs, 1);
	c->kind = kind;
	c->registered = 0;
	c->has_deadline = parent->has_deadline;
	c->armed = 0;
	atomic_init(&c->fd_written, 0);
	c->wslot = NULL;
	c->defer_free = 0;
#ifdef RCTX_DEBUG
	c->magic = RCTX_MAGIC_LIVE;
#endif
	c->parent = parent;
	c->src = parent->src;
	c->deadline = parent->deadline;
	c->vtop = parent->vtop;
	c->key = NULL;
	c->val = NULL;
	c->vprev = NULL;
	c->vdepth = 0;
	atomic_init(&c->vindex, NULL);
	c->slot = NULL;
	c->cparent = NULL;
	c->work_next = NULL;
	c->dcause = 0;
	c->free_next = NULL;
	return c;
}

static inline void
parent_get(struct rctx *p)
{
	if (p->kind != RCTX_KIND_ROOT)
		rctx_ref_get(p);
}

static void
init_cancelable(struct rctx *c)
{
	c->src = c;
	atomic_init(&c->state, 0);
	atomic_init(&c->fd, -1);
	rctx_cset_init(&c->children);
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
	uint64_t s;

	if (p == NULL)
		return 0;
	s = rctx_state_load(p);
	if (rctx_st_err(s)) {
		/* relaxed: c is not yet visible to any other thread */
		atomic_store_explicit(&c->state, s & RCTX_ST_FINAL_MASK,
				      memory_order_relaxed);
		rctx_stats_done(c, 0, s);
		return 0;
	}
	slot = rctx_cset_insert(&p->children, (uintptr_t)c);
	if (RCTX_UNLIKELY(slot == NULL))
		return -ENOMEM;
	c->slot = slot;
	c->cparent = p;
	c->registered = 1;
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
	struct rctx *c = ctx_new(parent, RCTX_KIND_CANCEL);

	if (c == NULL)
		return NULL;
	init_cancelable(c);
	if (RCTX_UNLIKELY(attach(c, parent->src) < 0)) {
		rctx_ctx_free_now(c);
		errno = ENOMEM;
		return NULL;
	}
	parent_get(parent);
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
	int r;

	if (parent->has_deadline && parent->deadline <= deadline)
		return rctx_tree_with_cancel(parent);
	c = ctx_new(parent, RCTX_KIND_TIMER);
	if (c == NULL)
		return NULL;
	init_cancelable(c);
	c->deadline = deadline;
	c->has_deadline = 1;
	c->dcause = cause;
	rctx_timer_init(&c->timer);
	if (RCTX_UNLIKELY(attach(c, parent->src) < 0)) {
		rctx_ctx_free_now(c);
		errno = ENOMEM;
		return NULL;
	}
	parent_get(parent);
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
	c->armed = 1;
	r = rctx_timer_arm_at(&c->timer, deadline, now);
	if (RCTX_UNLIKELY(r < 0)) {
		c->armed = 0; /* never handed over: nobody else reads it */
		/* api.c did not count it made; its free counts it freed */
		rctx_stat_add(RCTX_STAT_FREED, -1);
		/* Leaves the parent as it was: the free path removes c from
		 * its set (a racing canceller may still hold c; then it
		 * frees c). */
		rctx_tree_release(c);
		errno = -r;
		return NULL;
	}
	rctx_stats_timer_armed(c);
	if (rctx_st_err(rctx_state_load(c)))
		rctx_timer_cancel(&c->timer); /* cancelled while arming */
	return c;
}

struct rctx *
rctx_tree_with_value(struct rctx *parent, const void *key, void *value)
{
	struct rctx *c = ctx_new(parent, RCTX_KIND_VALUE);

	if (c == NULL)
		return NULL;
	c->key = key;
	c->val = value;
	c->vprev = parent->vtop;
	c->vdepth = (c->vprev ? c->vprev->vdepth : 0) + 1;
	c->vtop = c;
	parent_get(parent);
	return c;
}

struct rctx *
rctx_tree_without_cancel(struct rctx *parent)
{
	struct rctx *c = ctx_new(parent, RCTX_KIND_WITHOUT);

	if (c == NULL)
		return NULL;
	c->src = NULL;
	c->has_deadline = 0;
	c->deadline = INT64_MAX;
	parent_get(parent);
	return c;
}

/* --- cancellation --- */

/*
 * The cascade's walk. Nodes whose state CAS we won are ours: they go on
 * `work` through their own work_next (no other thread touches it) and we
 * wake their waiters and run their after-funcs. A child that is already
 * done was made done by another canceller whose cascade may still be
 * marking beneath it; we must not return before its subtree is done
 * either (I3), so we walk it too, through a local stack (`assist`), giving
 * any still-live descendant its nearest done ancestor's err and cause, but
 * leave its wake-ups and callbacks to its owner.
 */
#define ASSIST_INLINE 16

struct walk {
	struct rctx *work;    /* ours, to visit; each holds a reference */
	struct rctx *done;    /* ours, visited */
	uint64_t cur;	      /* err and cause of the node being walked */
	struct rctx **assist; /* done by others, to visit; referenced */
	size_t nassist, cap;
	struct rctx *assist_inl[ASSIST_INLINE];
	uint64_t marked; /* nodes whose state CAS we won (stats) */
};

/* c's eventfd, or -1: loaded after the state CAS that made c done. */
static inline int
fd_after_cas(struct rctx *c)
{
	/* seq_cst: wait.B, pairs with the CAS that installs the fd in
	 * rctx_fd_src: an fd installed after our state CAS is written by
	 * its creator, one installed before is seen here */
	return atomic_load_explicit(&c->fd, memory_order_seq_cst);
}

/* Write c's eventfd fd and say so (wait.B). The caller holds a
 * reference on c, so the fd is still c's (tree.F). */
static void
write_fd(struct rctx *c, int fd)
{
	(void)eventfd_write(fd, 1);
	/* release: pairs with the acquire in rctx_fd_src's fast path */
	atomic_store_explicit(&c->fd_written, 1, memory_order_release);
}

uint64_t
rctx_state_settle(const struct rctx *cc)
{
	struct rctx *c = (struct rctx *)cc;
	/* acquire: pairs with the release that clears PENDING */
	uint64_t s = atomic_load_explicit(&c->state, memory_order_acquire);

	while (s & RCTX_ST_PENDING) {
		/* Finish the canceller's job ourselves (tree.F): err and
		 * cause are final, only the fd write is missing. */
		int fd = fd_after_cas(c);

		if (fd >= 0)
			write_fd(c, fd);
		/* release: the fd is written before done shows; acquire on
		 * failure: pairs with the canceller's clearing store */
		if (atomic_compare_exchange_weak_explicit(
			&c->state, &s, s & ~(uint64_t)RCTX_ST_PENDING,
			memory_order_acq_rel, memory_order_acquire))
			return s & ~(uint64_t)RCTX_ST_PENDING;
	}
	return s;
}

/*
 * Make c done: CAS its state from *s to ns (false, *s updated, if it
 * changed). The word goes through PENDING while c's eventfd, if any, is
 * written (tree.F), so "done" and "the fd is readable" agree both ways
 * (wait.B). *held: the caller holds a reference on c; if not, one is
 * taken (and *held set) only to write an fd.
 */
static bool
publish_done(struct rctx *c, uint64_t *s, uint64_t ns, bool *held)
{
	int fd;

	/* seq_cst: publishes err+cause (tree.C), is the canceller's half of
	 * tree.B and wait.A/B; acquire on failure: a lost race reads
	 * the winner's word (tree.G) */
	if (!atomic_compare_exchange_weak_explicit(
		&c->state, s, ns | RCTX_ST_PENDING, memory_order_seq_cst,
		memory_order_acquire))
		return false;
	fd = fd_after_cas(c);
	if (fd >= 0 && (*held || (*held = rctx_ref_tryget(c))))
		write_fd(c, fd);
	/* release: observers that saw PENDING wait for nothing (they help),
	 * but those that see it clear must see the fd written; no waiter
	 * can set WAITERS meanwhile since err is set (wait.A) */
	atomic_store_explicit(&c->state, ns, memory_order_release);
	return true;
}

static bool
assist_push(struct walk *w, struct rctx *c)
{
	if (w->nassist == w->cap) {
		size_t cap = w->cap * 2;
		struct rctx **v = rctx_malloc(cap * sizeof(*v));

		if (v == NULL)
			return false;
		memcpy(v, w->assist, w->nassist * sizeof(*v));
		if (w->assist != w->assist_inl)
			free(w->assist);
		w->assist = v;
		w->cap = cap;
	}
	w->assist[w->nassist++] = c;
	return true;
}

static void
mark_child(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	struct walk *w = arg;
	struct rctx *ch = (struct rctx *)e;
	bool held = false;
	uint64_t cs, ns;

	if (e & RCTX_CSET_TAG_AFTER)
		return; /* after-funcs run once every descendant is done */
	/*
	 * No reference yet: ch's memory stays valid while we walk (tree.E
	 * and the RCU read section), even if its last reference is being
	 * dropped. acquire: pairs with the release that clears CASCADE
	 * (tree.G), so a finished subtree's marks are visible.
	 */
	cs = atomic_load_explicit(&ch->state, memory_order_acquire);
	for (;;) {
		if (cs & RCTX_ST_ERR_MASK) {
			/* Done by another canceller (it keeps its own err
			 * and cause). Its subtree is done unless CASCADE:
			 * then walk it, or, if we cannot get memory for
			 * that, leave it to its owner. */
			if (!(cs & RCTX_ST_CASCADE))
				return;
			if (rctx_ref_tryget(ch) && !assist_push(w, ch))
				rctx_tree_release(ch);
			return;
		}
		ns = (cs & RCTX_ST_WAITERS) | (w->cur & RCTX_ST_FINAL_MASK) |
		     RCTX_ST_CASCADE;
		if (publish_done(ch, &cs, ns, &held))
			break;
	}
	rctx_stats_done(ch, cs, ns);
	w->marked++;
	/*
	 * A plain leaf needs nothing more: no waiter to wake (none can
	 * appear once err is set), its fd written, no timer, no children
	 * and no after-func (any that arrive see it done and finish
	 * themselves, tree.B). It leaves the set at once.
	 */
	if (ch->kind == RCTX_KIND_CANCEL && !(ns & RCTX_ST_WAITERS) &&
	    !rctx_cset_maybe_nonempty(&ch->children) &&
	    /* seq_cst: as in the leaf check of cascade */
	    atomic_load_explicit(&ch->aover, memory_order_seq_cst) == NULL) {
		/* release: tree.G, its (empty) subtree is done */
		atomic_store_explicit(&ch->state,
				      ns & ~(uint64_t)RCTX_ST_CASCADE,
				      memory_order_release);
		rctx_cset_remove(slot, e);
		if (held)
			rctx_tree_release(ch);
		return;
	}
	if (!held && !rctx_ref_tryget(ch))
		return; /* its last reference is going: its free cleans up */
	/* ch stays in the set until every node is marked: a canceller that
	 * finds an ancestor done walks through it to ch's children (I3) */
	ch->wslot = slot;
	ch->work_next = w->work;
	w->work = ch;
}

/* Walk n's children set, counted in n's walkers (tree.E). */
static void
walk_children(struct rctx *n, struct walk *w)
{
	/* seq_cst: tree.E, before any slot of n is read */
	atomic_fetch_add_explicit(&n->walkers, 1, memory_order_seq_cst);
	rctx_cset_foreach(&n->children, mark_child, w);
	/* release: every pointer read from n's slots is done with; pairs
	 * with the freeing child's load of walkers (tree.E) */
	atomic_fetch_sub_explicit(&n->walkers, 1, memory_order_release);
}

static void
fire_after(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	(void)arg;
	if (e & RCTX_CSET_TAG_AFTER)
		rctx_after_fire(slot, e);
}

/* Step 1 of a cascade: mark every descendant done (I3), iteratively. */
static void
cascade_mark(struct walk *w)
{
	struct rctx *n;

	rcu_read_lock();
	for (;;) {
		if ((n = w->work) != NULL) {
			w->work = n->work_next;
			/* relaxed: we wrote it (our CAS); children take
			 * their parent's err and cause, which is st unless n
			 * was found beneath another canceller's node */
			w->cur = atomic_load_explicit(&n->state,
						      memory_order_relaxed);
			walk_children(n, w);
			n->work_next = w->done;
			w->done = n;
		} else if (w->nassist > 0) {
			n = w->assist[--w->nassist];
			w->cur = rctx_state_load(n);
			walk_children(n, w);
			rctx_tree_release(n);
		} else {
			break;
		}
	}
	rctx_rcu_read_unlock();
	if (w->assist != w->assist_inl)
		free(w->assist);
}

/* Steps 2 and 3 for the nodes w made done; c: the cascade's root, or
 * NULL when the walk only assisted (cascade_assist). */
static void
cascade_finish(struct walk *w, struct rctx *c)
{
	struct rctx *n;

	/* 2. Every node leaves its parent's set, now that all are marked
	 * (a cancelled parent's set ends up empty, as Go clears its map);
	 * its subtree is done; stop timers, wake waiters. */
	for (n = w->done; n; n = n->work_next) {
		/* relaxed: we made the last change to it (err set: no
		 * waiter can add WAITERS any more, wait.A; PENDING is
		 * clear since publish_done) */
		uint64_t st =
		    atomic_load_explicit(&n->state, memory_order_relaxed) &
		    ~(uint64_t)RCTX_ST_CASCADE;

		/* release: tree.G, every descendant of n is marked */
		atomic_store_explicit(&n->state, st, memory_order_release);
		if (n == c && n->wslot) /* c's parent takes new children */
			rctx_cset_remove_hinted(&c->cparent->children, n->wslot,
						(uintptr_t)n);
		else if (n->wslot)
			rctx_cset_remove(n->wslot, (uintptr_t)n);
		if (n->kind == RCTX_KIND_TIMER)
			rctx_timer_cancel(&n->timer);
		rctx_wait_notify(n, st);
	}

	if (c != NULL)
		rctx_stats_cascade(1 + w->marked);

	/* 3. Run after-funcs, outside any lock, and drop the list's
	 * references (children come before their parents on the list). */
	rctx_after_cascade_enter();
	n = w->done;
	while (n) {
		struct rctx *next = n->work_next;

		if (rctx_cset_maybe_nonempty(&n->children) ||
		    /* seq_cst: as in the leaf check of cascade */
		    atomic_load_explicit(&n->aover, memory_order_seq_cst)) {
			rctx_cset_foreach(&n->children, fire_after, NULL);
			rctx_after_fire_overflow(n);
		}
		rctx_tree_release(n);
		n = next;
	}
	rctx_after_cascade_leave();
}

static void
walk_init(struct walk *w)
{
	w->work = NULL;
	w->done = NULL;
	w->assist = w->assist_inl;
	w->cap = ASSIST_INLINE;
	w->nassist = 0;
	w->marked = 0;
}

/* c was just made done by us with state st; finish the job. */
static void
cascade(struct rctx *c, uint64_t st)
{
	struct walk w;

	if (!rctx_cset_maybe_nonempty(&c->children) &&
	    /* seq_cst: as the set's loads; an overflowed registration
	     * that is not seen here sees c done (after.c, overflow) */
	    atomic_load_explicit(&c->aover, memory_order_seq_cst) == NULL) {
		/* A leaf (the common case): no descendant to mark and no
		 * after-func to run. A child or registration inserted after
		 * the check above sees c done and finishes itself (tree.B). The
		 * caller's reference keeps c alive. */
		st &= ~(uint64_t)RCTX_ST_CASCADE;
		/* release: tree.G, c's (empty) subtree is done */
		atomic_store_explicit(&c->state, st, memory_order_release);
		if (c->registered)
			rctx_cset_remove_hinted(&c->cparent->children, c->slot,
						(uintptr_t)c);
		if (c->kind == RCTX_KIND_TIMER)
			rctx_timer_cancel(&c->timer);
		rctx_wait_notify(c, st);
		rctx_stats_cascade(1);
		return;
	}
	walk_init(&w);
	rctx_ref_get(c); /* uniform: every node on the list holds one */
	c->work_next = NULL;
	c->wslot = c->registered ? c->slot : NULL;
	w.work = c;
	cascade_mark(&w);
	cascade_finish(&w, c);
}

/*
 * c was done, but its subtree maybe not yet (CASCADE): walk it as a
 * cascade would, marking what is still live (tree.G). The caller holds
 * a reference on c.
 */
static void
cascade_assist(struct rctx *c)
{
	struct walk w;

	walk_init(&w);
	rctx_ref_get(c); /* the assist list holds references */
	w.assist[w.nassist++] = c;
	cascade_mark(&w);
	cascade_finish(&w, NULL);
}

int
rctx_tree_cancel(struct rctx *c, unsigned code, int cause)
{
	/* acquire: tree.G, pairs with the release that clears CASCADE
	 * (or the winning CAS): a finished cascade costs this one load */
	uint64_t s = atomic_load_explicit(&c->state, memory_order_acquire);
	uint64_t ns;
	bool held = true; /* the caller's reference */

	do {
		if (s & RCTX_ST_ERR_MASK) {
			if (RCTX_UNLIKELY(s & RCTX_ST_CASCADE))
				cascade_assist(c);
			return -EALREADY;
		}
		ns = (s & RCTX_ST_WAITERS) | rctx_st_make(code, cause) |
		     RCTX_ST_CASCADE;
	} while (!publish_done(c, &s, ns, &held));
	rctx_stats_done(c, s, ns);
	cascade(c, ns);
	return 0;
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
			     c->dcause ? c->dcause : ETIMEDOUT) == 0)
		rctx_stats_late(c->deadline);
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
	if (!c->defer_free) {
		rctx_ctx_free_now(c);
		return;
	}
#endif
	rctx_ctx_free_rcu(c);
}

/*
 * May a canceller still hold c's pointer without a reference? Only if c
 * was in a set whose owner is being walked now (tree.E). Called after c
 * left its set, while c->cparent is alive (c still holds its parent).
 */
static bool
needs_grace(struct rctx *c)
{
	/* seq_cst: tree.E, after our seq_cst removal from the set */
	return c->registered && atomic_load_explicit(&c->cparent->walkers,
						     memory_order_seq_cst) != 0;
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
	if (c->registered)
		rctx_cset_remove_hinted(&c->cparent->children, c->slot,
					(uintptr_t)c);
	if (c->src == c) {
		rctx_cset_destroy(&c->children);
		rctx_wait_close(c);
	}
	if (c->kind == RCTX_KIND_VALUE)
		rctx_value_free(c);
#ifdef RCTX_DEBUG
	c->magic = RCTX_MAGIC_DEAD;
#endif
	c->defer_free = needs_grace(c);
	if (c->kind == RCTX_KIND_TIMER && c->armed)
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
		struct rctx *parent;

		rctx_debug_check(c, "rctx_release");
		if (!rctx_ref_put(c))
			return;
		parent = c->parent;
		free_one(c);
		c = parent;
	}
}
