/* SPDX-License-Identifier: MIT */
/* The cancellation tree: derive, cancel cascade, references and freeing. */
#ifndef RCTX_TREE_H
#define RCTX_TREE_H

#include <stdio.h>
#include <stdlib.h>

#include "cascade.h"
#include "internal.h"
#include "shard.h"
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
struct rctx *rctx_tree_with_value(struct rctx *parent, const void *key,
				  void *value);
struct rctx *rctx_tree_without_cancel(struct rctx *parent);

/* Drop a reference; frees c and, iteratively, ancestors that hit zero. */
void rctx_tree_release(struct rctx *c);

/* Install the timer callbacks (idempotent). */
void rctx_tree_init(void);

#endif /* RCTX_TREE_H */
