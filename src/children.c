/* SPDX-License-Identifier: MIT */
/* Children set: inline slots, then a chain of lock-free open-addressing tables. */
#include <stdlib.h>

#include "children.h"
#include "fault.h"

/*
 * Layout. RCTX_CSET_INLINE slots live in the context itself, so the usual
 * 0-2 children cost no allocation. Past that, entries go to the newest
 * table of a chain, which hangs off the set's extension block (struct
 * rctx_ext, made on first need); each new table doubles the previous one. Tables never
 * move and are never copied: a child's slot address is fixed for its life,
 * which makes removal a single CAS with no migration protocol. Older tables
 * keep serving inserts (newest first) and are freed with the set.
 *
 * Invariants
 *  (I1) An entry is in at most one slot (a child is inserted once in its
 *       life and removed at most once).
 *  (I2) top only grows: each table's prev is the table it replaced
 *       as top, and tables are freed only by rctx_cset_destroy.
 *  (I3) s->x is set once (NULL to a block) and kept until rctx_cset_fini:
 *       a context keeps its block across reuse (alloc.c), so a stale
 *       reader of a freed context still reads valid memory (tree.E).
 *
 * Ordering
 *  children.A Insert is a seq_cst CAS 0 -> entry. The caller then does a
 *      seq_cst load of the owner's state; a canceller does a seq_cst CAS on
 *      that state and then seq_cst loads of the slots. Either the canceller's
 *      walk sees the entry or the inserter sees the cancel (tree.B).
 *  children.B A new table is published by a seq_cst CAS on top after
 *      its slots are zeroed; readers load top with acquire (paired).
 *  children.C The extension block is published by a seq_cst CAS on s->x
 *      after it is initialised; readers load x with acquire or seq_cst
 *      (paired). seq_cst, so that the fd, which lives in it, keeps the
 *      single total order its protocol relies on (wait.B).
 *
 * Progress: insert is lock-free (a failed CAS means another insert
 * succeeded); removal is wait-free; foreach is wait-free per slot.
 */

#define PROBE_LIMIT 16
#define FIRST_TABLE 16

static inline uint32_t
hash_ptr(uintptr_t p)
{
	uint64_t h = (uint64_t)p * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32);
}

static inline bool
try_slot(_Atomic uintptr_t *slot, uintptr_t entry)
{
	uintptr_t expect = 0;

	/* relaxed pre-check: skip occupied slots without a locked op */
	if (atomic_load_explicit(slot, memory_order_relaxed) != 0)
		return false;
	/* seq_cst: children.A, pairs with the canceller's seq_cst state CAS
	 * and slot loads; relaxed on failure: nothing is read */
	return atomic_compare_exchange_strong_explicit(
	    slot, &expect, entry, memory_order_seq_cst, memory_order_relaxed);
}

static struct rctx_ctable *
table_new(struct rctx_ctable *prev)
{
	uint32_t n = prev ? (prev->mask + 1) * 2 : FIRST_TABLE;
	struct rctx_ctable *t;

	t = rctx_malloc(sizeof(*t) + (size_t)n * sizeof(t->slot[0]));
	if (t == NULL)
		return NULL;
	t->prev = prev;
	t->mask = n - 1;
	for (uint32_t i = 0; i < n; i++)
		atomic_init(&t->slot[i], 0);
	return t;
}

/* Probe table t for a free slot along entry's hash. */
static _Atomic uintptr_t *
probe_top(struct rctx_ctable *t, uintptr_t entry)
{
	uint32_t h = hash_ptr(entry);
	uint32_t lim = t->mask + 1 < PROBE_LIMIT ? t->mask + 1 : PROBE_LIMIT;

	for (uint32_t i = 0; i < lim; i++) {
		_Atomic uintptr_t *slot = &t->slot[(h + i) & t->mask];

		if (try_slot(slot, entry))
			return slot;
	}
	return NULL;
}

bool
rctx_cset_remove_hinted(struct rctx_cset *s, _Atomic uintptr_t *slot,
			uintptr_t entry)
{
	struct rctx_ext *x;

	if (!rctx_cset_remove(slot, entry))
		return false;
	/* An inline slot is found without a hint; a table slot means the
	 * block exists. acquire: children.C */
	if ((uintptr_t)slot - (uintptr_t)s->inl < sizeof(s->inl) ||
	    (x = atomic_load_explicit(&s->x, memory_order_acquire)) == NULL)
		return true;
	/* release: the slot lives as long as the set, but its table's
	 * initialisation must be visible to the inserter that follows the
	 * hint (we saw it through the acquire on top); pairs with try_hint */
	atomic_store_explicit(&x->hint, slot, memory_order_release);
	return true;
}

/* Try the slot a removal last freed: under churn it is usually free. */
static inline _Atomic uintptr_t *
try_hint(struct rctx_ext *x, uintptr_t entry)
{
	/* acquire: pairs with the release store in rctx_cset_remove_hinted
	 * (the hinted slot's table is initialised) */
	_Atomic uintptr_t *h =
	    atomic_load_explicit(&x->hint, memory_order_acquire);

	return h != NULL && try_slot(h, entry) ? h : NULL;
}

struct rctx_ext *
rctx_cset_ext(struct rctx_cset *s)
{
	/* acquire: children.C */
	struct rctx_ext *x = atomic_load_explicit(&s->x, memory_order_acquire);
	struct rctx_ext *none = NULL;

	if (x != NULL)
		return x;
	x = rctx_malloc(sizeof(*x));
	if (x == NULL)
		return NULL;
	atomic_init(&x->top, NULL);
	atomic_init(&x->hint, NULL);
	atomic_init(&x->fd, -1);
	atomic_init(&x->fd_written, 0);
	/* seq_cst: children.C; acquire on failure: another thread
	 * installed its block first, and we use that one */
	if (atomic_compare_exchange_strong_explicit(
		&s->x, &none, x, memory_order_seq_cst, memory_order_acquire))
		return x;
	free(x);
	return none;
}

/*
 * The inline slots, then the hint: every insert tries these first. A bool
 * and an out-parameter, so that an inline hit returns without a NULL test.
 */
static inline bool
insert_fast(struct rctx_cset *s, uintptr_t entry, _Atomic uintptr_t **slot)
{
	struct rctx_ext *x;

	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		if (try_slot(&s->inl[i], entry)) {
			*slot = &s->inl[i];
			return true;
		}
	/* acquire: children.C */
	x = atomic_load_explicit(&s->x, memory_order_acquire);
	return x != NULL && (*slot = try_hint(x, entry)) != NULL;
}

/* The set's newest table, or NULL. acquire: pairs with the seq_cst CAS
 * that published it (children.B) and its block (children.C). */
static inline struct rctx_ctable *
top_acquire(struct rctx_cset *s)
{
	struct rctx_ext *x = atomic_load_explicit(&s->x, memory_order_acquire);

	return x ? atomic_load_explicit(&x->top, memory_order_acquire) : NULL;
}

/* Newest table first, then the older ones: under steady churn their
 * freed slots are reused instead of growing again. */
static inline _Atomic uintptr_t *
probe_tables(struct rctx_ctable *t, uintptr_t entry)
{
	for (; t; t = t->prev) {
		_Atomic uintptr_t *slot = probe_top(t, entry);

		if (slot)
			return slot;
	}
	return NULL;
}

_Atomic uintptr_t *
rctx_cset_insert_noalloc(struct rctx_cset *s, uintptr_t entry)
{
	_Atomic uintptr_t *h;

	if (insert_fast(s, entry, &h))
		return h;
	return probe_tables(top_acquire(s), entry);
}

_Atomic uintptr_t *
rctx_cset_insert(struct rctx_cset *s, uintptr_t entry)
{
	_Atomic uintptr_t *h;
	struct rctx_ext *x;

	if (insert_fast(s, entry, &h))
		return h;
	if ((x = rctx_cset_ext(s)) == NULL)
		return NULL;
	for (;;) {
		/* acquire: pairs with the seq_cst CAS that published the
		 * table (children.B), so its zeroed slots are visible */
		struct rctx_ctable *t =
		    atomic_load_explicit(&x->top, memory_order_acquire);

		if ((h = probe_tables(t, entry)) != NULL)
			return h;
		/* Every table is crowded along this probe: add one. */
		struct rctx_ctable *n = table_new(t);

		if (n == NULL)
			return NULL;
		/* seq_cst: publishes the table (children.B); on failure another
		 * thread grew the set and we retry in its table (acquire:
		 * pairs with that thread's publishing CAS) */
		if (!atomic_compare_exchange_strong_explicit(
			&x->top, &t, n, memory_order_seq_cst,
			memory_order_acquire))
			free(n);
	}
}

void
rctx_cset_foreach(struct rctx_cset *s, rctx_cset_fn fn, void *arg)
{
	for (int i = 0; i < RCTX_CSET_INLINE; i++) {
		/* seq_cst: children.A, pairs with the inserter's seq_cst CAS */
		uintptr_t e =
		    atomic_load_explicit(&s->inl[i], memory_order_seq_cst);
		if (e)
			fn(&s->inl[i], e, arg);
	}
	/* seq_cst: children.A (a table published before the canceller's state
	 * CAS is seen); also acquires the table's contents (children.B, C) */
	struct rctx_ext *x = atomic_load_explicit(&s->x, memory_order_seq_cst);
	struct rctx_ctable *t =
	    x ? atomic_load_explicit(&x->top, memory_order_seq_cst) : NULL;
	for (; t; t = t->prev) {
		for (uint32_t i = 0; i <= t->mask; i++) {
			/* seq_cst: children.A, as above */
			uintptr_t e = atomic_load_explicit(
			    &t->slot[i], memory_order_seq_cst);
			if (e)
				fn(&t->slot[i], e, arg);
		}
	}
}

static void
count_one(_Atomic uintptr_t *slot, uintptr_t entry, void *arg)
{
	(void)slot;
	(void)entry;
	(*(size_t *)arg)++;
}

size_t
rctx_cset_count(struct rctx_cset *s)
{
	size_t n = 0;

	rctx_cset_foreach(s, count_one, &n);
	return n;
}

size_t
rctx_cset_capacity(struct rctx_cset *s)
{
	size_t n = RCTX_CSET_INLINE;

	for (struct rctx_ctable *t = top_acquire(s); t; t = t->prev)
		n += (size_t)t->mask + 1;
	return n;
}

void
rctx_cset_destroy(struct rctx_cset *s)
{
	/* relaxed: the set is unreachable; the last reference's release
	 * ordering already made every write to it visible */
	struct rctx_ext *x = atomic_load_explicit(&s->x, memory_order_relaxed);
	struct rctx_ctable *t;

	if (x == NULL)
		return;
	/* relaxed: as above */
	t = atomic_load_explicit(&x->top, memory_order_relaxed);
	while (t) {
		struct rctx_ctable *p = t->prev;

		free(t);
		t = p;
	}
	atomic_store_explicit(&x->top, NULL, memory_order_relaxed);
	atomic_store_explicit(&x->hint, NULL, memory_order_relaxed);
}

void
rctx_cset_fini(struct rctx_cset *s)
{
	rctx_cset_destroy(s);
	/* relaxed: as in rctx_cset_destroy */
	free(atomic_load_explicit(&s->x, memory_order_relaxed));
	atomic_store_explicit(&s->x, NULL, memory_order_relaxed);
}

static int
cmp_uptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;

	return x < y ? -1 : x > y;
}

static void
collect_one(_Atomic uintptr_t *slot, uintptr_t entry, void *arg)
{
	uintptr_t **p = arg;

	(void)slot;
	*(*p)++ = entry;
}

bool
rctx_cset_check(struct rctx_cset *s, const char **why)
{
	const char *dummy;
	size_t n, cap = RCTX_CSET_INLINE;
	uint32_t prev_size = 0;
	struct rctx_ctable *t = top_acquire(s);

	if (why == NULL)
		why = &dummy;
	for (; t; t = t->prev) {
		uint32_t size = t->mask + 1;

		if (size & t->mask) {
			*why = "table size not a power of two";
			return false;
		}
		if (prev_size && size * 2 != prev_size) {
			*why = "tables do not halve down the chain";
			return false;
		}
		prev_size = size;
		cap += size;
	}
	n = rctx_cset_count(s);
	if (n > cap) {
		*why = "more entries than slots";
		return false;
	}
	if (n == 0)
		return true;
	uintptr_t *v = malloc(n * sizeof(*v)), *p = v;
	if (v == NULL)
		return true; /* cannot check without memory; not a failure */
	rctx_cset_foreach(s, collect_one, &p);
	qsort(v, (size_t)(p - v), sizeof(*v), cmp_uptr);
	for (uintptr_t *q = v + 1; q < p; q++) {
		if (q[0] == q[-1]) {
			free(v);
			*why = "an entry appears twice";
			return false;
		}
	}
	free(v);
	return true;
}
