/* SPDX-License-Identifier: MIT */
/* Baseline timer queue for the wheel benchmarks: an indexed binary min-heap. */
#ifndef RCTX_HEAP_TIMER_H
#define RCTX_HEAP_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The same operations as the wheel (add, del, next, advance returning a
 * ->next list), on a binary heap whose array holds the key beside the node
 * pointer, so sifting reads no node. Each node keeps its array index for
 * O(log n) deletion. Single-owner, like the wheel.
 */
#define RCTX_HEAP_NONE SIZE_MAX

struct rctx_heap_timer {
	struct rctx_heap_timer *next; /* expired list */
	int64_t expires;
	size_t idx; /* position in the heap, RCTX_HEAP_NONE if not in it */
};

struct rctx_heap_ent {
	int64_t key;
	struct rctx_heap_timer *t;
};

struct rctx_heap {
	struct rctx_heap_ent *v;
	size_t n, cap;
	int64_t now;
};

/* Returns 0, or -ENOMEM. */
int rctx_heap_init(struct rctx_heap *h, size_t cap, int64_t now);
void rctx_heap_fini(struct rctx_heap *h);

static inline void
rctx_heap_timer_init(struct rctx_heap_timer *t)
{
	t->next = NULL;
	t->expires = 0;
	t->idx = RCTX_HEAP_NONE;
}

/* O(log n); t must not be in the heap. Returns 0, or -ENOMEM. */
int rctx_heap_add(struct rctx_heap *h, struct rctx_heap_timer *t,
		  int64_t expires);
/* O(log n); no-op if t is not in the heap. */
void rctx_heap_del(struct rctx_heap *h, struct rctx_heap_timer *t);
/* Earliest deadline, or INT64_MAX when empty. */
int64_t rctx_heap_next(const struct rctx_heap *h);
/* Pop every timer with expires <= now; list through ->next, count in *n. */
struct rctx_heap_timer *rctx_heap_advance(struct rctx_heap *h, int64_t now,
					  size_t *n);
/* True if the heap order and every node's index are right. */
bool rctx_heap_check(const struct rctx_heap *h);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_HEAP_TIMER_H */
