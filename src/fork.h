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

/*
 * Hooks the handlers call; each module keeps its own fork logic and
 * installs it here (at load time), so fork.c depends on no module. The
 * slot fixes the order: prepare runs slots in increasing order, then
 * urcu-bp's; parent and child run urcu-bp's, then slots in decreasing
 * order (fork.A).
 */
struct rctx_fork_hooks {
	void (*prepare)(void);
	void (*parent)(void);
	void (*child)(void);
};

enum rctx_fork_slot {
	RCTX_FORK_SLOT_TIMER = 0, /* owner.c: timer owners park first */
	RCTX_FORK_SLOT_ALLOC = 1, /* alloc.c: then the reclaimer */
	RCTX_FORK_SLOT_STATS = 2, /* stats.c: its registry lock */
	RCTX_FORK_SLOT_CAUSE = 3, /* cause.c: the names' lock (a leaf), last */
	RCTX_FORK_NSLOTS
};

void rctx_fork_hooks_set(enum rctx_fork_slot slot,
			 const struct rctx_fork_hooks *hooks);

#endif /* RCTX_FORK_H */
