/* SPDX-License-Identifier: MIT */
/* fork(): the library's one set of atfork handlers, in a fixed order. */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "clock.h"
#include "fork.h"
#include "internal.h"

/*
 * The library runs threads of its own: timer owners (owner.c) and the
 * reclaimer (alloc.c). At fork each is parked where it holds no lock of
 * anyone's (not the allocator's, not liburcu's), so that the child, which
 * inherits every lock but none of these threads, can allocate and start
 * threads again. Each module installs its hooks in its slot at load time
 * (rctx_fork_hooks_set); this file calls them and depends on none.
 *
 * Invariants
 *  I1. The atfork handlers are installed at most once per process (at
 *      load, or by the first rctx_fork_register that succeeds), before
 *      any library thread starts.
 *  I2. A slot's hooks, once set, never change (static tables).
 *
 * Ordering
 *  fork.A Prepare order matters, and runs from the most dependent part
 *      down:
 *      1. timer owners park first: a firing owner frees contexts, which
 *         may hand a batch to the reclaimer (step 2's lock);
 *      2. the reclaimer parks: between rounds, so not inside a grace
 *         period, which needs urcu-bp's locks free;
 *      3. the statistics registry's lock, then the cause names' lock
 *         (leaves: nothing is locked under them);
 *      4. urcu-bp's registry locks last.
 *      The parent and the child undo it in the reverse order.
 *  fork.B A hook table is published by a release store in
 *      rctx_fork_hooks_set and read with acquire by the handlers, so a
 *      handler that sees a table sees its contents.
 *  fork.C rctx_fork_park's acquire load of the thread's flag pairs with
 *      the thread's release store of false (owner.B, alloc.c), so what
 *      the thread did before parking is visible to the forking thread.
 *
 * Progress: the prepare hooks block (locks, a bounded wait for threads
 * to park); everything else here is wait-free.
 *
 * An application must not call urcu-bp's fork hooks itself: these
 * handlers already do, and its locks are not recursive.
 */
static pthread_mutex_t rctx_fork_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool rctx_fork_installed;
static const struct rctx_fork_hooks *_Atomic rctx_fork_table[RCTX_FORK_NSLOTS];

void
rctx_fork_hooks_set(enum rctx_fork_slot slot,
		    const struct rctx_fork_hooks *hooks)
{
	/* release: fork.B, publishes *hooks; pairs with the acquire load
	 * in rctx_fork_hooks */
	atomic_store_explicit(&rctx_fork_table[slot], hooks,
			      memory_order_release);
}

static const struct rctx_fork_hooks *
rctx_fork_hooks(int slot)
{
	/* acquire: fork.B, pairs with the release in rctx_fork_hooks_set */
	return atomic_load_explicit(&rctx_fork_table[slot],
				    memory_order_acquire);
}

void
rctx_fork_park(_Atomic bool *unparked, rctx_time_t give_up)
{
	unsigned spins = 0;

	/* acquire: fork.C, pairs with the thread's release store of false
	 * (rctx_owner_thread, the reclaimer in alloc.c) */
	while (atomic_load_explicit(unparked, memory_order_acquire)) {
		if (++spins < 64) {
			sched_yield();
			continue;
		}
		if (rctx_clock_now() >= give_up)
			return;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 50000 };

		nanosleep(&ts, NULL);
	}
}

static void
rctx_fork_prepare(void)
{
	int i;

	for (i = 0; i < RCTX_FORK_NSLOTS; i++) {
		const struct rctx_fork_hooks *h = rctx_fork_hooks(i);

		if (h)
			h->prepare();
	}
	urcu_bp_before_fork();
}

static void
rctx_fork_parent(void)
{
	int i;

	urcu_bp_after_fork_parent();
	for (i = RCTX_FORK_NSLOTS - 1; i >= 0; i--) {
		const struct rctx_fork_hooks *h = rctx_fork_hooks(i);

		if (h)
			h->parent();
	}
}

static void
rctx_fork_child(void)
{
	int i;

	/* Forget the parent's other threads' RCU registrations first. */
	urcu_bp_after_fork_child();
	for (i = RCTX_FORK_NSLOTS - 1; i >= 0; i--) {
		const struct rctx_fork_hooks *h = rctx_fork_hooks(i);

		if (h)
			h->child();
	}
}

/*
 * liburcu-bp makes a pthread key when it is loaded and does not delete it
 * when it is unloaded (0.13). Loaded only on our behalf, it would go with
 * a dlclose of rctx, and every live thread that used RCU would then call
 * into unmapped code at its exit. Pin it for the life of the process
 * (every key of rctx's own is deleted by rctx_shutdown instead).
 */
static void
rctx_fork_pin_urcu(void)
{
	union {
		void (*fn)(void);
		void *p;
	} sym = { .fn = synchronize_rcu };
	Dl_info info;

	if (dladdr(sym.p, &info) && info.dli_fname)
		(void)dlopen(info.dli_fname,
			     RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
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
	rctx_fork_pin_urcu();
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
