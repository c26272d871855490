/* SPDX-License-Identifier: MIT */
/* Value lookups, cached per depth so their cost does not grow with depth. */
#include <stdlib.h>

#include "fault.h"
#include "value.h"

/*
 * Invariants
 *  (I1) An index at value node v (RCTX_F_VINDEX: vdepth % EVERY == 0)
 *       maps each key of v and its value ancestors to the value of the
 *       nearest one, and is never changed once published. RCTX_VINDEX_NONE instead says the
 *       chain holds more keys than an index may: lookups walk past v.
 *  (I2) An index lives as long as its node: a reader holds a reference to
 *       a descendant, which keeps every ancestor and its index alive.
 *
 * Cost
 *  A lookup walks at most EVERY links to an indexed node. If that node has
 *  no index yet, index_make builds one in a single walk up to the nearest
 *  built index above (or the top), copying that index: work is linear in
 *  the depth, never in depth times the number of indexes on the way (the
 *  old builder made every index above first). To keep memory linear in
 *  depth, an index is built only if it covers at least 1/SPREAD as many
 *  new links as the base index it copies holds keys; otherwise the lookup
 *  walks on to that base (at most nkeys/SPREAD links) and probes it.
 *
 * Ordering
 *  value.A The builder fills the table, then publishes it (or NONE) with a
 *      release CAS on v->vindex (acq_rel: a loser acquires the winner's
 *      table); a reader's acquire load pairs with it. Two builders may
 *      race: the loser frees its own copy. No grace period is needed
 *      because of I2.
 *
 * Progress: lookups are wait-free once indexes exist; building is
 * lock-free and, if memory runs out, lookups fall back to walking.
 */

/* Published instead of an index when the chain has too many keys. */
#define RCTX_VINDEX_NONE ((struct rctx_vindex *)(uintptr_t)1)
/* Build an index only if hops * SPREAD >= the base index's key count. */
#define RCTX_VINDEX_SPREAD 32

#ifdef RCTX_FAULT_INJECTION
RCTX_TLS uint64_t rctx_value_work;
#endif

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
	return (v->flags & RCTX_F_VINDEX) != 0;
}

/* Add key -> val unless key is present (a nearer value). Table has
 * room. Returns true if the key was new. */
static bool
index_add(struct rctx_vindex *ix, const void *key, void *val)
{
	for (uint32_t i = hash_key(key);; i++) {
		struct rctx_ventry *e = &ix->e[i & ix->mask];

		RCTX_VALUE_WORK(1);
		if (e->key == key)
			return false;
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

static inline bool
index_real(const struct rctx_vindex *ix)
{
	return ix != NULL && ix != RCTX_VINDEX_NONE;
}

/* Publish ix (or NONE) at v (value.A); returns what v holds afterwards. */
static struct rctx_vindex *
index_publish(struct rctx *v, struct rctx_vindex *ix)
{
	struct rctx_vindex *expect = NULL;

	/* acq_rel: release publishes the table (value.A); acquire on failure
	 * takes the winner's */
	if (atomic_compare_exchange_strong_explicit(&v->vindex, &expect, ix,
						    memory_order_acq_rel,
						    memory_order_acquire))
		return ix;
	if (index_real(ix))
		free(ix);
	return expect;
}

/* An empty table of size slots (a power of two), or NULL. */
static struct rctx_vindex *
index_new(uint32_t size)
{
	struct rctx_vindex *ix =
	    rctx_calloc(1, sizeof(*ix) + size * sizeof(ix->e[0]));

	if (ix)
		ix->mask = size - 1;
	return ix;
}

/*
 * Add key -> val unless present, keeping the load at most 1/2 (doubling
 * the table, amortised O(1) per key). False if memory ran out or the
 * index would exceed RCTX_VINDEX_MAX_KEYS keys (*over set); *pix is then
 * still valid and owned by the caller.
 */
static bool
index_grow_add(struct rctx_vindex **pix, const void *key, void *val, bool *over)
{
	struct rctx_vindex *ix = *pix;

	if ((ix->nkeys + 1) * 2 > ix->mask + 1) {
		struct rctx_vindex *nx;

		if (ix->nkeys + 1 > RCTX_VINDEX_MAX_KEYS) {
			if (index_find(ix, key) != NULL)
				return true; /* not new: no growth needed */
			*over = true;
			return false;
		}
		nx = index_new((ix->mask + 1) * 2);
		if (nx == NULL)
			return false;
		RCTX_VALUE_WORK(ix->mask + 1);
		for (uint32_t i = 0; i <= ix->mask; i++)
			if (ix->e[i].key)
				nx->nkeys +=
				    index_add(nx, ix->e[i].key, ix->e[i].val);
		free(ix);
		*pix = ix = nx;
	}
	ix->nkeys += index_add(ix, key, val);
	return true;
}

/*
 * Build v's index (v is at an indexed depth and has none) in one walk up
 * to the nearest built index (base) or the top, nearest value first, then
 * copy the base's entries under them. Returns v's index, NONE if the
 * chain has too many keys, or NULL if none was built (out of memory, or
 * the base is too close to be worth a copy: the caller walks on).
 */
static struct rctx_vindex *
index_make(struct rctx *v)
{
	struct rctx *base = NULL, *u;
	struct rctx_vindex *bix = NULL, *ix;
	uint32_t hops = 0, size = 16;
	bool over = false;

	for (u = v; u; u = rctx_vprev(u)) {
		RCTX_VALUE_WORK(1);
		if (u != v && is_indexed(u) && (bix = index_get(u)) != NULL) {
			base = u;
			break;
		}
		hops++;
	}
	if (bix == RCTX_VINDEX_NONE)
		return index_publish(v, RCTX_VINDEX_NONE);
	if (bix && (uint64_t)hops * RCTX_VINDEX_SPREAD < bix->nkeys)
		return NULL;
	while (bix && size < (bix->nkeys + RCTX_VINDEX_EVERY) * 2)
		size *= 2;
	ix = index_new(size);
	if (ix == NULL)
		return NULL;
	/* Nearest first: a key already present keeps its nearer value. */
	for (u = v; u != base; u = rctx_vprev(u)) {
		RCTX_VALUE_WORK(1);
		if (!index_grow_add(&ix, u->key, u->val, &over))
			goto fail;
	}
	if (bix) {
		RCTX_VALUE_WORK(bix->mask + 1);
		for (uint32_t i = 0; i <= bix->mask; i++)
			if (bix->e[i].key &&
			    !index_grow_add(&ix, bix->e[i].key, bix->e[i].val,
					    &over))
				goto fail;
	}
	return index_publish(v, ix);
fail:
	free(ix);
	return over ? index_publish(v, RCTX_VINDEX_NONE) : NULL;
}

void *
rctx_value_lookup(struct rctx *v, const void *key)
{
	bool build = true;

	for (; v; v = rctx_vprev(v)) {
		RCTX_VALUE_WORK(1);
		if (v->key == key)
			return v->val;
		if (is_indexed(v)) {
			struct rctx_vindex *ix = index_get(v);

			if (ix == NULL && build)
				ix = index_make(v);
			/* one build attempt per lookup, none past a chain
			 * with too many keys (those above have nearly as
			 * many): the walk stays linear */
			build = false;
			if (index_real(ix)) {
				const struct rctx_ventry *e =
				    index_find(ix, key);

				return e ? e->val : NULL;
			}
		}
	}
	return NULL;
}

void
rctx_value_free(struct rctx *v)
{
	struct rctx_vindex *ix;

	if (!is_indexed(v))
		return;
	/* relaxed: v is unreachable (its last reference was dropped) */
	ix = atomic_load_explicit(&v->vindex, memory_order_relaxed);
	if (index_real(ix))
		free(ix);
}

size_t
rctx_value_index_bytes(struct rctx *v)
{
	struct rctx_vindex *ix = is_indexed(v) ? index_get(v) : NULL;

	return index_real(ix) ? sizeof(*ix) + (ix->mask + 1) * sizeof(ix->e[0])
			      : 0;
}
