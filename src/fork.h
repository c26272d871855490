/* SPDX-License-Identifier: MIT */
/* fork(): the library's one set of atfork handlers, in a fixed order. */
#ifndef RCTX_FORK_H
#define RCTX_FORK_H

#include <stdatomic.h>
#include <stdbool.h>

#include "rctx.h"

/*
 * Install the handlers (once per process; later calls return 0 at once).
 * Called by every module that starts a thread, before it starts one.
 * Returns 0, or -ENOMEM if pthread_atfork failed (retried next call).
 */
int rctx_fork_register(void);

/*
 * Wait, in a prepare hook, until a thread of ours has cleared *unparked
 * (its flag for "may hold a lock not ours": starting up, or running
 * callbacks), or until the deadline give_up (an rctx_now() time) passes,
 * so that a callback blocked on the forking thread delays fork, never
 * deadlocks it.
 */
void rctx_fork_park(_Atomic bool *unparked, rctx_time_t give_up);

/* How long a prepare hook waits for the library's threads to park. */
#define RCTX_FORK_PARK_WAIT RCTX_SEC

/* Hooks the handlers call; each module keeps its own fork logic. */
void rctx_timer_before_fork(void);
void rctx_timer_after_fork_parent(void);
void rctx_timer_after_fork_child(void);
void rctx_alloc_before_fork(void);
void rctx_alloc_after_fork_parent(void);
void rctx_alloc_after_fork_child(void);

#endif /* RCTX_FORK_H */
