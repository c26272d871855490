/* SPDX-License-Identifier: MIT */
/* The cancellation tree: derive, cancel cascade, references and freeing. */
#ifndef RCTX_TREE_H
#define RCTX_TREE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "cascade.h"
#include "internal.h"
#include "shard.h"
#include "value.h"
#include "wait.h"

extern struct rctx rctx_root_background;
extern struct rctx rctx_root_todo;

#ifdef RCTX_DEBUG
void rctx_debug_dead(const struct rctx *c, const char *what);
static inline void
rctx_debug_check(const struct rctx *c, const char *what)
{
	if (RCTX_UNLIKELY(c->magic != RCTX_MAGIC_LIVE))
		rctx_debug_dead(c, what);
}
#else
static inline void
rctx_debug_check(const struct rctx *c, const char *what)
{
	(void)c;
	(void)what;
}
#endif

/* Take a reference; the caller already holds one. */
static inline void
rctx_ref_get(struct rctx *c)
{
	/* relaxed: the caller's own reference keeps c alive, and taking
	 * another publishes nothing (the usual refcount argument) */
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

/*
 * Take a reference on a context found through a children set, which may be
 * on its way to being freed. False if its count already reached zero. The
 * caller is inside rcu_read_lock(), so the memory itself stays valid.
 */
static inline bool
rctx_ref_tryget(struct rctx *c)
{
	/* relaxed: memory safety comes from RCU, not from this load */
	uint32_t r = atomic_load_explicit(&c->refs, memory_order_relaxed);

	while (r != 0) {
		/* acquire: pairs with the release decrement of the thread
		 * that dropped the previous last reference we now extend,
		 * so we see the context as that thread left it */
		if (atomic_compare_exchange_weak_explicit(&c->refs, &r, r + 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
	}
	return false;
}

/* Drop a reference; true if it was the last one (caller frees). */
static inline bool
rctx_ref_put(struct rctx *c)
{
	/* acq_rel: release orders our writes to c before whoever frees it;
	 * acquire (taking effect on the last reference) pairs with every
	 * other thread's release decrement. An RMW rather than a fence
	 * after it: ThreadSanitizer does not model standalone fences, and
	 * on x86 the RMW is a full barrier either way. */
	uint32_t old =
	    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
#ifdef RCTX_DEBUG
	if (RCTX_UNLIKELY(old == 0))
		rctx_debug_dead(c, "rctx_release (double release)");
#endif
	if (old == 1)
		return true;
	/* the last reference outside c's shards went (shard.c I2) */
	return RCTX_UNLIKELY(old == RCTX_REF_BIAS + 1) && rctx_shard_close(c);
}

/* Constructors (arguments already checked by api.c). NULL + errno. */
struct rctx *rctx_tree_with_cancel(struct rctx *parent);
struct rctx *rctx_tree_with_deadline(struct rctx *parent, rctx_time_t deadline,
				     int cause);
/* The same, given the caller's reading of rctx_now() (one clock read per
 * with_timeout; reading it costs tens of ns on a VM). */
#define RCTX_NOW_UNKNOWN INT64_MIN
struct rctx *rctx_tree_with_deadline_at(struct rctx *parent,
					rctx_time_t deadline, int cause,
					rctx_time_t now);
struct rctx *rctx_tree_without_cancel(struct rctx *parent);

/* A context of kind, allocated in class cls (its layout's size). */
static inline __attribute__((always_inline)) struct rctx *
rctx_ctx_new(struct rctx *parent, uint8_t kind, enum rctx_class cls)
{
	struct rctx *c = rctx_ctx_alloc(cls);

	if (RCTX_UNLIKELY(c == NULL)) {
		errno = ENOMEM;
		return NULL;
	}
	atomic_init(&c->refs, 1);
	c->kind = kind;
	c->registered = 0;
	c->pshard = 0;
	c->flags = (uint8_t)cls;
#ifdef RCTX_DEBUG
	c->magic = RCTX_MAGIC_LIVE;
#endif
	c->parent = parent;
	/*
	 * Left as they are, each written before it is read: key, val and
	 * vindex (by with_value); state, the set and the rest (by
	 * init_cancelable); slot (once registered); work_next (by the
	 * cascade that lists the node); the timer (by with_deadline).
	 */
	/* whole; its maker derives under it first */
	atomic_init(&c->share, rctx_share_new());
	return c;
}

/* Take c's reference on its parent p, on p's shard if p is split. */
static inline void
rctx_parent_get(struct rctx *c, struct rctx *p)
{
	if (p->kind == RCTX_KIND_ROOT)
		return;
	if (RCTX_UNLIKELY(!rctx_share_mine(rctx_share(p)))) {
		c->pshard = rctx_shard_parent_get(p);
		return;
	}
	rctx_ref_get(p);
}

/* Inline: a value context is a few stores, and the API wrapper's call
 * and this function's frame cost as much again (issue 13). */
static inline struct rctx *
rctx_tree_with_value(struct rctx *parent, const void *key, void *value)
{
	struct rctx *vprev = rctx_vtop(parent);
	uint8_t depth = (uint8_t)((vprev ? vprev->vdepth : 0) + 1);
	bool indexed = rctx_value_depth_indexed(depth);
	struct rctx *c =
	    rctx_ctx_new(parent, RCTX_KIND_VALUE,
			 indexed ? RCTX_CLASS_CANCEL : RCTX_CLASS_VALUE);

	if (c == NULL)
		return NULL;
	c->key = key;
	c->val = value;
	c->vdepth = depth;
	if (RCTX_UNLIKELY(indexed)) {
		c->flags |= RCTX_F_VINDEX;
		atomic_init(&c->vindex, NULL);
	}
	rctx_parent_get(c, parent);
	return c;
}

/* Drop a reference; frees c and, iteratively, ancestors that hit zero. */
void rctx_tree_release(struct rctx *c);

/* Install the timer callbacks (idempotent). */
void rctx_tree_init(void);

#endif /* RCTX_TREE_H */
