/* SPDX-License-Identifier: MIT */
/* Waiting for done: a futex on the state word, and a lazy eventfd. */
#ifndef RCTX_WAIT_H
#define RCTX_WAIT_H

#include "internal.h"

/* Block until src is done or timeout ns pass (< 0: forever). */
int rctx_wait_src(struct rctx *src, rctx_time_t timeout);

/* The eventfd of cancelable src, created on first call. */
int rctx_fd_src(struct rctx *src);

/* Cascade hook: c was just made done with state st; wake its waiters (its
 * eventfd was written when it was made done, tree.c F). */
void rctx_wait_notify(struct rctx *c, uint64_t st);

/* Close c's eventfd, if any (c is being freed). */
void rctx_wait_close(struct rctx *c);

/* Sleep for timeout ns (< 0: forever) on a context that is never done. */
int rctx_wait_never(rctx_time_t timeout);

#endif /* RCTX_WAIT_H */
