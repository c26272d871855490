/* SPDX-License-Identifier: MIT */
/* Loop after-funcs: callbacks run on an event loop's owner thread. */
#ifndef RCTX_LOOPAFTER_H
#define RCTX_LOOPAFTER_H

#include "internal.h"

struct rctx_after_impl;

/* Register (rctx_loop_after_func, arguments checked): 0, -ENOSPC if the
 * loop has no slot (more than RCTX_LA_SLOTS loops), -EOWNERDEAD if the
 * loop's owner thread has exited. */
int rctx_lafter_register(rctx_loop_t *loop, struct rctx *ctx, rctx_after_t *reg,
			 void (*fn)(void *), void *arg);

/* True if reg was last registered by rctx_lafter_register. */
bool rctx_lafter_is(const rctx_after_t *reg);

/* rctx_after_stop for such a registration. */
bool rctx_lafter_stop(rctx_after_t *reg);

/* after.c hook: a claimed loop registration; queue it on its loop. */
void rctx_lafter_fire(struct rctx_after_impl *a);

/* Loop-mode hooks (owner thread): rctx_loop_new on success, rctx_loop_free
 * first thing, rctx_loop_next after clearing the fd, rctx_loop_run after
 * the deadlines (returns the number of calls run). */
void rctx_lafter_attach(rctx_loop_t *loop, int efd);
void rctx_lafter_detach(rctx_loop_t *loop);
void rctx_lafter_rearm(rctx_loop_t *loop);
int rctx_lafter_run(rctx_loop_t *loop);

/* rctx_shutdown: delete the thread-exit key unless a loop is attached. */
void rctx_lafter_shutdown(void);

/* Tests: stoppers now waiting for one of loop's calls to return. */
unsigned rctx_lafter_waiters(rctx_loop_t *loop);

#endif /* RCTX_LOOPAFTER_H */
