/* SPDX-License-Identifier: MIT */
/* fork(): the library's one set of atfork handlers, in a fixed order. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fork.h"
#include "internal.h"

/*
 * The library runs threads of its own: timer owners and the call_rcu
 * worker. At fork each is parked where it holds no lock of anyone's (not
 * the allocator's, not liburcu's), so that the child, which inherits every
 * lock but none of these threads, can allocate and start threads again.
 *
 * Prepare order matters, and runs from the most dependent part down:
 *  1. timer owners park first: a firing owner may still need RCU and the
 *     allocator, which the later steps lock;
 *  2. call_rcu workers pause (liburcu's call_rcu_before_fork): a worker
 *     may be waiting for a grace period, which needs urcu-bp's locks free;
 *  3. urcu-bp's registry locks last.
 * The parent and the child undo it in the reverse order.
 *
 * An application must not call liburcu's call_rcu or urcu-bp fork hooks
 * itself: these handlers already do, and those locks are not recursive.
 */
static pthread_mutex_t rctx_fork_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool rctx_fork_installed;

static void
rctx_fork_prepare(void)
{
	rctx_timer_before_fork();
	rctx_alloc_before_fork();
	urcu_bp_before_fork();
}

static void
rctx_fork_parent(void)
{
	urcu_bp_after_fork_parent();
	rctx_alloc_after_fork_parent();
	rctx_timer_after_fork_parent();
}

static void
rctx_fork_child(void)
{
	/* Forget the parent's other threads' RCU registrations first. */
	urcu_bp_after_fork_child();
	rctx_alloc_after_fork_child();
	rctx_timer_after_fork_child();
}

int
rctx_fork_register(void)
{
	int err = 0;

	/* acquire: pairs with the release below; nothing else to see */
	if (RCTX_LIKELY(atomic_load_explicit(&rctx_fork_installed,
					     memory_order_acquire)))
		return 0;
	pthread_mutex_lock(&rctx_fork_lock);
	/* relaxed: under the lock that writes it */
	if (!atomic_load_explicit(&rctx_fork_installed, memory_order_relaxed)) {
		/* Not pthread_once: a failure (ENOMEM) is retried next time. */
		err = pthread_atfork(rctx_fork_prepare, rctx_fork_parent,
				     rctx_fork_child);
		if (err == 0)
			/* release: pairs with the acquire above */
			atomic_store_explicit(&rctx_fork_installed, true,
					      memory_order_release);
	}
	pthread_mutex_unlock(&rctx_fork_lock);
	return -err;
}
