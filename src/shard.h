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

/*
 * A context's share word. Bits 0-1 its state: 0 whole, RCTX_SHARE_SPLIT,
 * RCTX_SHARE_CLOSED (shard.c I1). Whole: bits 8-23 the tag of the last
 * thread that derived under it, 24-31 how often that changed. Split or
 * closed: the rest is the address of its shards (128-byte aligned), so
 * the pointer costs no field of its own.
 */
#define RCTX_SHARE_STATE     0x3ull
#define RCTX_SHARE_SPLIT     0x1ull
#define RCTX_SHARE_CLOSED    0x2ull
#define RCTX_SHARE_TAG_SHIFT 8
#define RCTX_SHARE_TAG	     0xffff00ull
#define RCTX_SHARE_MISSES    0xff000000ull
#define RCTX_SHARE_MISS1     0x1000000ull
#define RCTX_SHARE_PTR	     (~(uint64_t)0x7f)

/* This thread's tag: set by rctx_shard_tag_init (never 0) before the
 * thread makes its first context (alloc.c). */
extern RCTX_TLS uint16_t rctx_shard_my_tag;
void rctx_shard_tag_init(void);

/* The share word of a context this thread makes: whole, ours. */
static inline uint64_t
rctx_share_new(void)
{
	return (uint64_t)rctx_shard_my_tag << RCTX_SHARE_TAG_SHIFT;
}

/* p's share word. acquire: pairs with the promotion's seq_cst CAS
 * (shard.B), so a thread that sees the split sees the shards. */
static inline uint64_t
rctx_share(struct rctx *p)
{
	return atomic_load_explicit(&p->share, memory_order_acquire);
}

/* Is this share word's context whole, and this thread its last deriver?
 * Then a derive under it costs nothing more. */
static inline bool
rctx_share_mine(uint64_t share)
{
	return ((share ^ rctx_share_new()) &
		(RCTX_SHARE_TAG | RCTX_SHARE_STATE)) == 0;
}

/* The shards named by a split or closed share word. */
static inline struct rctx_shard *
rctx_share_shards(uint64_t share)
{
	return (struct rctx_shard *)(uintptr_t)(share & RCTX_SHARE_PTR);
}

/* The deriving thread changed: count it, and split p past the limit. */
void rctx_shard_miss(struct rctx *p);

/* Give p its shards now. 0, or -ENOMEM. Idempotent. */
int rctx_shard_promote(struct rctx *p);

/* A child's reference on p (not a root) when p is split or this thread
 * did not derive under it last; true if it was counted on a shard (the
 * child then drops it with rctx_shard_put). */
bool rctx_shard_parent_get(struct rctx *p);

/* Drop a reference taken by rctx_shard_get; true if it was p's last. */
bool rctx_shard_put(struct rctx *p);

/* refs just fell to RCTX_REF_BIAS: close the shards. True if p's last
 * reference is gone (the caller frees p). */
bool rctx_shard_close(struct rctx *p);

/* Insert entry in the set of this CPU's shard of sharded p. */
_Atomic uintptr_t *rctx_shard_insert(struct rctx *p, uintptr_t entry);

/* c (registered in a shard) leaves its src-parent's shard set. */
void rctx_shard_leave(struct rctx *c, _Atomic uintptr_t *slot);

/* c (registered) leaves its src-parent p's set through slot. */
static inline void
rctx_set_leave_from(struct rctx *c, struct rctx *p, _Atomic uintptr_t *slot)
{
	if (RCTX_LIKELY(c->registered == 1))
		rctx_cset_remove_hinted(&p->children, slot, (uintptr_t)c);
	else
		rctx_shard_leave(c, slot);
}

/* c (registered) leaves its src-parent's set through slot. */
static inline void
rctx_set_leave(struct rctx *c, _Atomic uintptr_t *slot)
{
	rctx_set_leave_from(c, rctx_src(c->parent), slot);
}

/* Every entry of n's children set and of its shards' sets. */
void rctx_children_foreach(struct rctx *n, rctx_cset_fn fn, void *arg);

/* May n have children? The loads are seq_cst (tree.B, children.A). */
static inline bool
rctx_children_maybe_nonempty(struct rctx *n)
{
	/* seq_cst: tree.B; a child that entered a shard saw the split
	 * before its insert (shard.c I3) */
	return rctx_cset_maybe_nonempty(&n->children) ||
	       (atomic_load_explicit(&n->share, memory_order_seq_cst) &
		RCTX_SHARE_STATE) != 0;
}

/* Free p's shards (p unreachable; their sets empty). */
void rctx_shards_free(struct rctx *p);

#endif /* RCTX_SHARD_H */
