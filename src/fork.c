/* SPDX-License-Identifier: MIT */
/* fork(): the library's one set of atfork handlers, in a fixed order. */
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fork.h"
#include "internal.h"
#include "stats.h"

/*
 * The library runs threads of its own: timer owners and the call_rcu
 * worker. At fork each is parked where it holds no lock of anyone's (not
 * the allocator's, not liburcu's), so that the child, which inherits every
 * lock but none of these threads, can allocate and start threads again.
 *
 * Prepare order matters, and runs from the most dependent part down:
 *  1. timer owners park first: a firing owner frees contexts, which may
 *     hand a batch to the reclaimer (step 2's lock);
 *  2. the reclaimer parks (alloc.c): between rounds, so not inside a
 *     grace period, which needs urcu-bp's locks free;
 *  3. urcu-bp's registry locks last.
 * The parent and the child undo it in the reverse order.
 *
 * An application must not call urcu-bp's fork hooks itself: these
 * handlers already do, and its locks are not recursive.
 */
static pthread_mutex_t rctx_fork_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool rctx_fork_installed;

void
rctx_fork_park(_Atomic bool *unparked, rctx_time_t give_up)
{
	unsigned spins = 0;

	/* acquire: pairs with the thread's release store of false */
	while (atomic_load_explicit(unparked, memory_order_acquire)) {
		if (++spins < 64) {
			sched_yield();
			continue;
		}
		if (rctx_now() >= give_up)
			return;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 50000 };

		nanosleep(&ts, NULL);
	}
}

static void
rctx_fork_prepare(void)
{
	rctx_timer_before_fork();
	rctx_alloc_before_fork();
	urcu_bp_before_fork();
	rctx_stats_before_fork();
}

static void
rctx_fork_parent(void)
{
	rctx_stats_after_fork_parent();
	urcu_bp_after_fork_parent();
	rctx_alloc_after_fork_parent();
	rctx_timer_after_fork_parent();
}

static void
rctx_fork_child(void)
{
	rctx_stats_after_fork_child();
	/* Forget the parent's other threads' RCU registrations first. */
	urcu_bp_after_fork_child();
	rctx_alloc_after_fork_child();
	rctx_timer_after_fork_child();
}

/*
 * Registered when the library is loaded, while the process normally has
 * one thread: a fork racing the first thread start could otherwise catch
 * rctx_fork_lock held, before any handler existed. The call at thread
 * start remains, to retry after a failure here.
 */
__attribute__((constructor)) static void
rctx_fork_load(void)
{
	(void)rctx_fork_register();
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
