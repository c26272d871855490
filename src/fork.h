/* SPDX-License-Identifier: MIT */
/* fork(): the library's one set of atfork handlers, in a fixed order. */
#ifndef RCTX_FORK_H
#define RCTX_FORK_H

/*
 * Install the handlers (once per process; later calls return 0 at once).
 * Called by every module that starts a thread, before it starts one.
 * Returns 0, or -ENOMEM if pthread_atfork failed (retried next call).
 */
int rctx_fork_register(void);

/* Hooks the handlers call; each module keeps its own fork logic. */
void rctx_timer_before_fork(void);
void rctx_timer_after_fork_parent(void);
void rctx_timer_after_fork_child(void);
void rctx_alloc_before_fork(void);
void rctx_alloc_after_fork_parent(void);
void rctx_alloc_after_fork_child(void);

#endif /* RCTX_FORK_H */
