/* SPDX-License-Identifier: MIT */
/* Children set: inline slots, then a chain of lock-free open-addressing tables. */
#ifndef RCTX_CHILDREN_H
#define RCTX_CHILDREN_H

#include "internal.h"

/*
 * An entry is a non-zero uintptr_t: a child context pointer, or an
 * after-func registration pointer tagged with RCTX_CSET_TAG_AFTER. Slots
 * never move, so the slot address returned by insert stays valid for the
 * life of the set; removal is one CAS of that slot from the entry to 0.
 * See children.c for the ordering argument.
 */

struct rctx_ctable {
	struct rctx_ctable *prev; /* older, smaller table */
	uint32_t mask;		  /* slots - 1 */
	_Atomic uintptr_t slot[];
};

static inline void
rctx_cset_init(struct rctx_cset *s)
{
	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		atomic_init(&s->inl[i], 0);
	atomic_init(&s->x, NULL);
}

/* Empty the inline slots of a set that keeps its extension block (a
 * context's, on reuse: children.c I3); the block's tables are gone
 * (rctx_cset_destroy) and its context part is reset by the caller. */
static inline void
rctx_cset_reinit(struct rctx_cset *s)
{
	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		atomic_init(&s->inl[i], 0);
}

/*
 * Insert entry. Returns its slot, or NULL when a new table could not be
 * allocated (ENOMEM). The insert is a seq_cst CAS: the caller follows it
 * with a seq_cst load of the owner's state (tree.B).
 */
_Atomic uintptr_t *rctx_cset_insert(struct rctx_cset *s, uintptr_t entry);

/* Insert entry only if a slot is free without growing the set. */
_Atomic uintptr_t *rctx_cset_insert_noalloc(struct rctx_cset *s,
					    uintptr_t entry);

/* Remove entry from its slot. True if this call removed it. */
bool rctx_cset_remove_hinted(struct rctx_cset *s, _Atomic uintptr_t *slot,
			     uintptr_t entry);

static inline bool
rctx_cset_remove(_Atomic uintptr_t *slot, uintptr_t entry)
{
	/* relaxed: an entry is inserted once and removed once (I1), so a
	 * slot that no longer holds it will not again; the CAS below would
	 * fail with relaxed ordering, and a failed locked CAS costs as much
	 * as a successful one (a release after a cancel met it every time) */
	if (atomic_load_explicit(slot, memory_order_relaxed) != entry)
		return false;
	/* seq_cst: orders the remover's prior writes before the slot is
	 * reused (release), and is the store half of the Dekker pair with a
	 * cascade's walkers count (tree.E); relaxed on failure: someone
	 * else removed it and nothing is read */
	return atomic_compare_exchange_strong_explicit(
	    slot, &entry, 0, memory_order_seq_cst, memory_order_relaxed);
}

/*
 * True if the set may hold an entry. The loads are seq_cst: they are the
 * canceller's half of children.A, exactly as the walk in rctx_cset_foreach.
 */
static inline bool
rctx_cset_maybe_nonempty(struct rctx_cset *s)
{
	uintptr_t any = 0;

	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		/* seq_cst: children.A, pairs with the inserter's seq_cst CAS */
		any |= atomic_load_explicit(&s->inl[i], memory_order_seq_cst);
	if (any != 0)
		return true;
	/* seq_cst: children.A (a table published before our state CAS) */
	struct rctx_ext *x = atomic_load_explicit(&s->x, memory_order_seq_cst);

	return x != NULL &&
	       atomic_load_explicit(&x->top, memory_order_seq_cst) != NULL;
}

/* Visit every slot that holds an entry. fn returns nothing; it may remove
 * entries. Entries inserted during the walk may or may not be visited. */
typedef void (*rctx_cset_fn)(_Atomic uintptr_t *slot, uintptr_t entry,
			     void *arg);
void rctx_cset_foreach(struct rctx_cset *s, rctx_cset_fn fn, void *arg);

/* Entries present now (a snapshot; exact when quiescent). */
size_t rctx_cset_count(struct rctx_cset *s);

/* Total slots (inline + tables): the set's memory footprint. */
size_t rctx_cset_capacity(struct rctx_cset *s);

/* Free the tables; the extension block stays (children.c I3). The set
 * must be empty and unreachable. */
void rctx_cset_destroy(struct rctx_cset *s);

/* rctx_cset_destroy, and free the extension block too. */
void rctx_cset_fini(struct rctx_cset *s);

/* Invariant checker (quiescent set): tables strictly growing, masks are
 * powers of two minus one, no entry appears twice. */
bool rctx_cset_check(struct rctx_cset *s, const char **why);

#endif /* RCTX_CHILDREN_H */
