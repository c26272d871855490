/* SPDX-License-Identifier: MIT */
/* Shared bits of the stress tests: a check usable off the cmocka thread. */
#ifndef RCTX_STRESS_UTIL_H
#define RCTX_STRESS_UTIL_H

#include <stdio.h>
#include <stdlib.h>

/* Size multiplier, set by meson (-Dstress_scale). */
#ifndef RCTX_STRESS_SCALE
#define RCTX_STRESS_SCALE 1
#endif

/* cmocka asserts may only run on the test's own thread: workers abort. */
#define WCHECK(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

#endif /* RCTX_STRESS_UTIL_H */
