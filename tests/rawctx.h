/* SPDX-License-Identifier: MIT */
/* Tests of the allocator: a context straight from it, as the tree gets it. */
#ifndef RCTX_TEST_RAWCTX_H
#define RCTX_TEST_RAWCTX_H

#include "alloc.h"

/*
 * A whole-size context (the timer class), its kind set as the tree sets
 * it: a free finds the class, and so the list to go on, by the kind.
 * NULL out of memory.
 */
static inline struct rctx *
raw_ctx_alloc(void)
{
	struct rctx *c = rctx_ctx_alloc(RCTX_CLASS_TIMER);

	if (c) {
		c->kind = RCTX_KIND_TIMER;
		c->flags = RCTX_CLASS_TIMER;
	}
	return c;
}

#endif /* RCTX_TEST_RAWCTX_H */
