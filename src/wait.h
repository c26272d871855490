/* SPDX-License-Identifier: MIT */
/* Waiting for done: a futex on the state word, and a lazy eventfd. */
#ifndef RCTX_WAIT_H
#define RCTX_WAIT_H

#include "internal.h"

/* Settle a PENDING state word: write the eventfd and clear PENDING, as
 * the canceller would (tree.F, in tree.c); never waits for another thread. */
uint64_t rctx_state_settle(const struct rctx *c);

/*
 * Load a cancelable context's state word, as observers see it: never
 * PENDING, so done and "the eventfd is readable" agree (wait.B).
 */
static inline uint64_t
rctx_state_load(const struct rctx *c)
{
	/* acquire: pairs with the seq_cst CAS (or, after PENDING, the
	 * release store) that publishes err and cause together (tree.C) */
	uint64_t s = atomic_load_explicit(&((struct rctx *)c)->state,
					  memory_order_acquire);

	if (RCTX_UNLIKELY(s & RCTX_ST_PENDING))
		s = rctx_state_settle(c);
	return s;
}

/* Called before each sleep in rctx_wait_src (the core installs it). */
void rctx_wait_set_sleep_hook(void (*fn)(void));

/* Block until src is done or timeout ns pass (< 0: forever). */
int rctx_wait_src(struct rctx *src, rctx_time_t timeout);

/* The eventfd of cancelable src, created on first call. */
int rctx_fd_src(struct rctx *src);

/* Cascade hook: c was just made done with state st; wake its waiters (its
 * eventfd was written when it was made done, tree.F). */
void rctx_wait_notify(struct rctx *c, uint64_t st);

/* Close c's eventfd, if any (c is being freed). */
void rctx_wait_close(struct rctx *c);

/* Sleep for timeout ns (< 0: forever) on a context that is never done. */
int rctx_wait_never(rctx_time_t timeout);

#endif /* RCTX_WAIT_H */
