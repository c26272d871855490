/* SPDX-License-Identifier: MIT */
/* The clock and saturating time arithmetic, shared by every module. */
#ifndef RCTX_CLOCK_H
#define RCTX_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "rctx.h"

/*
 * CLOCK_MONOTONIC now, in nanoseconds (the public rctx_now is this). Inline
 * so that the runtime reads the clock without depending on api.c.
 */
static inline rctx_time_t
rctx_clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (rctx_time_t)ts.tv_sec * RCTX_SEC + ts.tv_nsec;
}

/* a + b, saturating at INT64_MAX and INT64_MIN instead of wrapping. */
static inline rctx_time_t
rctx_clock_add(rctx_time_t a, rctx_time_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

#endif /* RCTX_CLOCK_H */
