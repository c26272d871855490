/* SPDX-License-Identifier: MIT */
/* The shared pool and the reclaimer (reclaim.c), alloc.c's second half. */
#ifndef RCTX_RECLAIM_H
#define RCTX_RECLAIM_H

#include "internal.h"

/* A reclaimed batch: its first context heads the list through free_next;
 * batches chain through batch_next. A batch holds one class. */
static inline struct rctx *
rctx_batch_next(struct rctx *b)
{
	return b->batch_next;
}

/* The pools (alloc.A), one per class: push one batch, or a chain of
 * batches of one class; take one batch of class cls (NULL if empty). */
void rctx_pool_push(struct rctx *batch);
void rctx_pool_push_chain(struct rctx *first);
struct rctx *rctx_pool_take(enum rctx_class cls);
/* After a push by a thread other than the reclaimer: arm the trim (trim.B). */
void rctx_pool_kick(void);
/* Free what the pool holds beyond keep contexts; how many were freed. */
long rctx_pool_trim(long keep);

/* Hand a batch (through free_next) to the reclaimer for a grace period. */
void rctx_gp_push(struct rctx *b);
/* Return a list (through free_next) to malloc; how many it held. */
long rctx_reclaim_free_list(struct rctx *c);
/* A context came from malloc (counted; pool traffic, I4). */
void rctx_reclaim_count_malloc(void);
/* Reclaim every batch flushed so far (after the reclaimer's round). */
void rctx_reclaim_round(void);
/*
 * Shutdown: stop and join the reclaimer, disarm the trim, and start no
 * reclaimer (batches wait for rctx_reclaim_round) until resumed. A
 * shutdown that started a thread only to join it would be waste, and in
 * a fork child under TSan fatal.
 */
void rctx_reclaim_stop(void);
/* The end of a shutdown: the next push may start a reclaimer again. */
void rctx_reclaim_resume(void);

#endif /* RCTX_RECLAIM_H */
