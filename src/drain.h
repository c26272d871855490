/* SPDX-License-Identifier: MIT */
/* Draining: count work in and out under a context, and wait for none. */
#ifndef RCTX_DRAIN_H
#define RCTX_DRAIN_H

#include "internal.h"

/*
 * The body of rctx_drain_t. `word` is the futex word: the number of
 * pieces of work inside, times 2, plus RCTX_DRAIN_WAITERS while a joiner
 * sleeps.
 */
struct rctx_drain_impl {
	struct rctx *ctx;      /* with_cancel of the parent; ours */
	_Atomic uint32_t word; /* see above */
	uint32_t magic;	       /* RCTX_DRAIN_MAGIC while initialised */
};

#define RCTX_DRAIN_WAITERS 1u
#define RCTX_DRAIN_ONE	   2u
#define RCTX_DRAIN_MAGIC   0x44524e31u /* "DRN1" */

_Static_assert(sizeof(struct rctx_drain_impl) <= sizeof(rctx_drain_t),
	       "rctx_drain_t too small");

int rctx_drain_do_init(struct rctx_drain_impl *d, struct rctx *parent);
int rctx_drain_do_enter(struct rctx_drain_impl *d);
int rctx_drain_do_leave(struct rctx_drain_impl *d);
int rctx_drain_do_run(struct rctx_drain_impl *d, void (*fn)(void *), void *arg);
int rctx_drain_do_join(struct rctx_drain_impl *d, rctx_time_t timeout);
int rctx_drain_do_cancel_join(struct rctx_drain_impl *d, rctx_time_t timeout);
int rctx_drain_do_destroy(struct rctx_drain_impl *d);

#endif /* RCTX_DRAIN_H */
