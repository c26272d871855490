/* SPDX-License-Identifier: MIT */
/* Value lookups, cached per depth so their cost does not grow with depth. */
#include <stdlib.h>

#include "fault.h"
#include "value.h"

/*
 * Invariants
 *  (I1) An index at value node v (v->vdepth % EVERY == 0) maps each key of
 *       v and its value ancestors to the value of the nearest one, and is
 *       never changed once published.
 *  (I2) An index lives as long as its node: a reader holds a reference to
 *       a descendant, which keeps every ancestor and its index alive.
 *
 * Ordering
 *  value.A The builder fills the table, then publishes it with a release CAS
 *      on v->vindex (acq_rel: a loser acquires the winner's table); a
 *      reader's acquire load pairs with it. Two builders may race: the
 *      loser frees its own copy. No grace period is needed because of I2.
 *
 * Progress: lookups are wait-free once indexes exist; building is
 * lock-free and, if memory runs out, lookups fall back to walking.
 */

struct rctx_ventry {
	const void *key;
	void *val;
};

struct rctx_vindex {
	uint32_t mask;
	uint32_t nkeys;
	struct rctx_ventry e[];
};

static inline uint32_t
hash_key(const void *k)
{
	uint64_t h = (uint64_t)(uintptr_t)k * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32);
}

static inline bool
is_indexed(const struct rctx *v)
{
	return v->vdepth % RCTX_VINDEX_EVERY == 0;
}

/* Set key -> val (overwrite). Table has room. Returns true if new key. */
static bool
index_put(struct rctx_vindex *ix, const void *key, void *val)
{
	for (uint32_t i = hash_key(key);; i++) {
		struct rctx_ventry *e = &ix->e[i & ix->mask];

		if (e->key == key) {
			e->val = val;
			return false;
		}
		if (e->key == NULL) {
			e->key = key;
			e->val = val;
			return true;
		}
	}
}

static inline const struct rctx_ventry *
index_find(const struct rctx_vindex *ix, const void *key)
{
	for (uint32_t i = hash_key(key);; i++) {
		const struct rctx_ventry *e = &ix->e[i & ix->mask];

		if (e->key == key)
			return e;
		if (e->key == NULL)
			return NULL;
	}
}

static inline struct rctx_vindex *
index_get(struct rctx *v)
{
	/* acquire: pairs with the publishing CAS (value.A) */
	return atomic_load_explicit(&v->vindex, memory_order_acquire);
}

/* The indexed node EVERY value links above indexed node v, or NULL. */
static struct rctx *
indexed_above(struct rctx *v)
{
	struct rctx *u = v->vprev;

	while (u && !is_indexed(u))
		u = u->vprev;
	return u;
}

/*
 * Build v's index from base (the indexed node above v, already built, or
 * NULL at the top). NULL if out of memory or over the key cap.
 */
static struct rctx_vindex *
index_build(struct rctx *v, struct rctx *base)
{
	struct rctx_vindex *bix = base ? index_get(base) : NULL;
	uint32_t want = (bix ? bix->nkeys : 0) + RCTX_VINDEX_EVERY;
	uint32_t size = 16;
	struct rctx_vindex *ix, *expect = NULL;
	struct rctx *chain[RCTX_VINDEX_EVERY];
	int n = 0;

	if (base && bix == NULL)
		return NULL;
	if (want > RCTX_VINDEX_MAX_KEYS)
		return NULL;
	while (size < want * 2)
		size *= 2;
	ix = rctx_calloc(1, sizeof(*ix) + size * sizeof(ix->e[0]));
	if (ix == NULL)
		return NULL;
	ix->mask = size - 1;
	if (bix) {
		for (uint32_t i = 0; i <= bix->mask; i++)
			if (bix->e[i].key)
				ix->nkeys +=
				    index_put(ix, bix->e[i].key, bix->e[i].val);
	}
	/* Nodes strictly below base down to v, applied top-down so the
	 * nearest value wins. */
	for (struct rctx *u = v; u != base; u = u->vprev)
		chain[n++] = u;
	while (n > 0) {
		struct rctx *u = chain[--n];

		ix->nkeys += index_put(ix, u->key, u->val);
	}
	/* acq_rel: release publishes the table (value.A); acquire on failure
	 * takes the winner's table */
	if (!atomic_compare_exchange_strong_explicit(&v->vindex, &expect, ix,
						     memory_order_acq_rel,
						     memory_order_acquire)) {
		free(ix);
		return expect;
	}
	return ix;
}

/* v's index, building it (and the unbuilt ones above it) if needed. */
static struct rctx_vindex *
index_of(struct rctx *v)
{
	struct rctx_vindex *ix = index_get(v);

	while (ix == NULL) {
		/* Find the topmost unbuilt indexed node on v's path, whose
		 * base is built (or absent), and build it; repeat. */
		struct rctx *top = v, *u;

		for (u = indexed_above(v); u && index_get(u) == NULL;
		     u = indexed_above(u))
			top = u;
		if (index_build(top, indexed_above(top)) == NULL)
			return NULL;
		ix = index_get(v);
	}
	return ix;
}

void *
rctx_value_lookup(struct rctx *v, const void *key)
{
	int hops = 0;

	for (; v; v = v->vprev) {
		if (v->key == key)
			return v->val;
		if (is_indexed(v) && hops >= 0) {
			struct rctx_vindex *ix = index_of(v);

			if (ix) {
				const struct rctx_ventry *e =
				    index_find(ix, key);

				return e ? e->val : NULL;
			}
			hops = -1; /* no index to be had: walk the rest */
		}
	}
	return NULL;
}

void
rctx_value_free(struct rctx *v)
{
	/* relaxed: v is unreachable (its last reference was dropped) */
	free(atomic_load_explicit(&v->vindex, memory_order_relaxed));
}

size_t
rctx_value_index_bytes(struct rctx *v)
{
	struct rctx_vindex *ix = index_get(v);

	return ix ? sizeof(*ix) + (ix->mask + 1) * sizeof(ix->e[0]) : 0;
}
