/* SPDX-License-Identifier: MIT */
/* The cancel cascade: marking a subtree done, wake-ups, after-funcs. */

/*
 * rctx_tree_cancel makes a context done and walks its subtree; the
 * invariants (I1-I4) and orders (tree.A-tree.G) it keeps are stated in
 * tree.c's opening comment, the tree's one ordering record: this file is
 * the cancel half of that module, split off to keep each file readable.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "after.h"
#include "alloc.h"
#include "cascade.h"
#include "children.h"
#include "shard.h"
#include "fault.h"
#include "stats.h"
#include "timer.h"
#include "tree.h"
#include "wait.h"

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
	/* seq_cst (both loads): wait.B, pairs with the CASes that install
	 * the block and the fd in rctx_fd_src: an fd installed after our
	 * state CAS is written by its creator, one installed before is
	 * seen here */
	struct rctx_ext *x = rctx_ext_peek(c);

	return x ? atomic_load_explicit(&x->fd, memory_order_seq_cst) : -1;
}

/* Write c's eventfd fd and say so (wait.B). The caller holds a
 * reference on c, so the fd is still c's (tree.F). */
static void
write_fd(struct rctx *c, int fd)
{
	(void)eventfd_write(fd, 1);
	/* release: pairs with the acquire in rctx_fd_src's fast path; the
	 * block exists, it holds the fd */
	atomic_store_explicit(&rctx_ext_peek(c)->fd_written, 1,
			      memory_order_release);
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
static inline __attribute__((always_inline)) bool
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
	    !rctx_children_maybe_nonempty(ch) &&
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
	 * finds an ancestor done walks through it to ch's children (I3).
	 * relaxed: ch stores this same address itself once registered */
	atomic_store_explicit(&ch->slot, slot, memory_order_relaxed);
	ch->work_next = w->work;
	w->work = ch;
}

/* Walk n's children set, counted in n's walkers (tree.E). */
static void
walk_children(struct rctx *n, struct walk *w)
{
	/* seq_cst: tree.E, before any slot of n is read */
	atomic_fetch_add_explicit(&n->walkers, 1, memory_order_seq_cst);
	rctx_children_foreach(n, mark_child, w);
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
		/* relaxed: the slot n was found in (mark_child), or, for
		 * the root, its own */
		if (n != c)
			rctx_cset_remove(atomic_load_explicit(
					     &n->slot, memory_order_relaxed),
					 (uintptr_t)n);
		else if (c->registered) /* c's parent takes new children */
			rctx_set_leave(c, atomic_load_explicit(
					      &c->slot, memory_order_relaxed));
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

		/* after-funcs register in n's own set, never in a shard */
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

/* c was just made done by us, from state old to st; finish the job. */
static void
cascade(struct rctx *c, uint64_t old, uint64_t st)
{
	struct walk w;

	if (!rctx_children_maybe_nonempty(c) &&
	    /* seq_cst: as the set's loads; an overflowed registration
	     * that is not seen here sees c done (after.c, overflow) */
	    atomic_load_explicit(&c->aover, memory_order_seq_cst) == NULL) {
		/* counted with its one-node cascade, before anyone is woken */
		rctx_stats_end(c, old, st, true);
		/* A leaf (the common case): no descendant to mark and no
		 * after-func to run. A child or registration inserted after
		 * the check above sees c done and finishes itself (tree.B). The
		 * caller's reference keeps c alive. */
		st &= ~(uint64_t)RCTX_ST_CASCADE;
		/* release: tree.G, c's (empty) subtree is done */
		atomic_store_explicit(&c->state, st, memory_order_release);
		if (c->registered)
			/* relaxed: ours, or the same address stored by a
			 * canceller of our parent */
			rctx_set_leave(c, atomic_load_explicit(
					      &c->slot, memory_order_relaxed));
		if (c->kind == RCTX_KIND_TIMER)
			rctx_timer_cancel(&c->timer);
		rctx_wait_notify(c, st);
		return;
	}
	rctx_stats_done(c, old, st);
	walk_init(&w);
	rctx_ref_get(c); /* uniform: every node on the list holds one */
	c->work_next = NULL;
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
	cascade(c, s, ns);
	return 0;
}
