/* SPDX-License-Identifier: MIT */
/* A context many threads derive from, split per CPU: references and children. */
#ifndef RCTX_SHARD_H
#define RCTX_SHARD_H

#include "children.h"
#include "internal.h"

/*
 * A parent shared by threads on several CPUs would have every derive,
 * cancel and release write its reference count and its children set, so
 * each op moves those cache lines between cores (docs/design.md,
 * "A parent many threads derive from"). Once a context sees derives from
 * threads that keep taking turns, it gets one shard per CPU, each on its
 * own lines: a child counts its reference on, and enters, the shard of the
 * CPU it is made on, and nothing shared is written per op.
 */

/* Held in refs while the shards count references (shard.c I2). */
#define RCTX_REF_BIAS (1u << 30)

/* Changes of deriving thread before a context is split (shard.c). */
#define RCTX_SHARD_PROMOTE 32

struct rctx_shard {
	_Atomic int64_t refs; /* children's references taken here, less
			       * those dropped here; RCTX_SHARD_CLOSED once
			       * moved back into the context's refs */
	struct rctx_cset set; /* children inserted on this CPU */
} __attribute__((aligned(128)));

#define RCTX_SHARD_CLOSED INT64_MIN

/* Shards per split context: the CPUs the system may have. */
unsigned rctx_shard_count(void);

/* Its address differs per thread (shard.c). */
extern RCTX_TLS char rctx_shard_anchor;

/* This thread's tag: a hash of a thread-local address, never 0. */
static inline uint16_t
rctx_shard_tag(void)
{
	uint64_t h =
	    (uint64_t)(uintptr_t)&rctx_shard_anchor * 0x9e3779b97f4a7c15ull;

	return (uint16_t)((h >> 48) | 1);
}

/* The deriving thread changed: count it, and split p past the limit. */
void rctx_shard_miss(struct rctx *p, uint16_t tag);

/* Note a derive under p (not a root) by this thread. */
static inline void
rctx_shard_note(struct rctx *p)
{
	uint16_t t = rctx_shard_tag();

	/* relaxed: a hint; a lost update only delays the split */
	if (RCTX_UNLIKELY(
		atomic_load_explicit(&p->dtag, memory_order_relaxed) != t))
		rctx_shard_miss(p, t);
}

/* Give p its shards now. 0, or -ENOMEM. Idempotent. */
int rctx_shard_promote(struct rctx *p);

/* p has shards (1) or had (2): the acquire makes p->shards visible. */
static inline uint8_t
rctx_sharded(struct rctx *p)
{
	/* acquire: pairs with the store in rctx_shard_promote */
	return atomic_load_explicit(&p->sharded, memory_order_acquire);
}

/* Take a child's reference on sharded p; true if it was counted on a
 * shard (the child then drops it with rctx_shard_put). */
bool rctx_shard_get(struct rctx *p);

/* Drop a reference taken by rctx_shard_get; true if it was p's last. */
bool rctx_shard_put(struct rctx *p);

/* refs just fell to RCTX_REF_BIAS: close the shards. True if p's last
 * reference is gone (the caller frees p). */
bool rctx_shard_close(struct rctx *p);

/* Insert entry in the set of this CPU's shard of sharded p. */
_Atomic uintptr_t *rctx_shard_insert(struct rctx *p, uintptr_t entry);

/* c (registered) leaves its src-parent's set through slot. */
void rctx_set_leave(struct rctx *c, _Atomic uintptr_t *slot);

/* Every entry of n's children set and of its shards' sets. */
void rctx_children_foreach(struct rctx *n, rctx_cset_fn fn, void *arg);

/* May n have children? The loads are seq_cst (tree.B, children.A). */
static inline bool
rctx_children_maybe_nonempty(struct rctx *n)
{
	/* seq_cst: tree.B; a child that entered a shard saw sharded set
	 * before its insert (shard.c I3) */
	return rctx_cset_maybe_nonempty(&n->children) ||
	       atomic_load_explicit(&n->sharded, memory_order_seq_cst) != 0;
}

/* Free p's shards (p unreachable; their sets empty). */
void rctx_shards_free(struct rctx *p);

#endif /* RCTX_SHARD_H */
