/* SPDX-License-Identifier: MIT */
/* Test-only failure injection counters (compiled with -Dfault_injection). */
#include "fault.h"

#ifdef RCTX_FAULT_INJECTION
#include <stdatomic.h>

/*
 * Per site: the countdown to the failing call (0 = disarmed) and the calls
 * seen since armed. Relaxed throughout: tests arm a site and then run the
 * workload on the same thread, or join threads before reading the count;
 * no other memory is published through these counters.
 */
static _Atomic unsigned long countdown[RCTX_FAULT_NSITES];
static _Atomic unsigned long calls[RCTX_FAULT_NSITES];

bool
rctx_fault_hit(enum rctx_fault_site site)
{
	/* relaxed: a statistics counter, see above */
	atomic_fetch_add_explicit(&calls[site], 1, memory_order_relaxed);
	unsigned long c =
	    atomic_load_explicit(&countdown[site], memory_order_relaxed);
	while (c != 0) {
		/* relaxed: only the value matters; exactly one caller wins 1->0 */
		if (atomic_compare_exchange_weak_explicit(
			&countdown[site], &c, c - 1, memory_order_relaxed,
			memory_order_relaxed))
			return c == 1;
	}
	return false;
}

void
rctx_fault_arm(enum rctx_fault_site site, unsigned long n)
{
	/* relaxed: see the comment on the counters */
	atomic_store_explicit(&calls[site], 0, memory_order_relaxed);
	atomic_store_explicit(&countdown[site], n, memory_order_relaxed);
}

unsigned long
rctx_fault_calls(enum rctx_fault_site site)
{
	/* relaxed: see the comment on the counters */
	return atomic_load_explicit(&calls[site], memory_order_relaxed);
}
#endif
