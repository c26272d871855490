/* SPDX-License-Identifier: MIT */
/* Test-only failure injection: make the Nth allocation, eventfd or thread fail. */
#ifndef RCTX_FAULT_H
#define RCTX_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

enum rctx_fault_site {
	RCTX_FAULT_MALLOC = 0,
	RCTX_FAULT_EVENTFD = 1,
	RCTX_FAULT_THREAD = 2,
	RCTX_FAULT_NSITES
};

#ifdef RCTX_FAULT_INJECTION
/* True if this call at `site` must fail (counts down the armed N). */
bool rctx_fault_hit(enum rctx_fault_site site);
/*
 * Arm site so that its nth call from now fails (n >= 1), and only that one;
 * n = 0 disarms. Returns how many calls the site has seen since armed.
 */
void rctx_fault_arm(enum rctx_fault_site site, unsigned long n);
unsigned long rctx_fault_calls(enum rctx_fault_site site);
#else
static inline bool
rctx_fault_hit(enum rctx_fault_site site)
{
	(void)site;
	return false;
}
#endif

/* The library's allocation entry points; all allocation goes through them. */
static inline void *
rctx_malloc(size_t n)
{
	if (rctx_fault_hit(RCTX_FAULT_MALLOC))
		return NULL;
	return malloc(n);
}

static inline void *
rctx_calloc(size_t n, size_t size)
{
	if (rctx_fault_hit(RCTX_FAULT_MALLOC))
		return NULL;
	return calloc(n, size);
}

/* size a multiple of align (a power of two) */
static inline void *
rctx_aligned_alloc(size_t align, size_t size)
{
	if (rctx_fault_hit(RCTX_FAULT_MALLOC))
		return NULL;
	return aligned_alloc(align, size);
}

#endif /* RCTX_FAULT_H */
