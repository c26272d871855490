/* SPDX-License-Identifier: MIT */
/* Per-thread allocation counters kept by the malloc interposer (Go's -benchmem). */
#ifndef RCTX_BENCH_ALLOC_COUNT_H
#define RCTX_BENCH_ALLOC_COUNT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the calling thread has allocated since it started. */
struct alloc_counts {
	uint64_t allocs; /* malloc, calloc, realloc(NULL or moving), memalign */
	uint64_t bytes;	 /* bytes requested by those calls */
	uint64_t frees;	 /* free of a non-NULL pointer, realloc(p, 0) */
};

/*
 * alloc_count_read - copy the calling thread's counters into *out.
 * Any thread; only ever sees its own thread's allocations.
 */
void alloc_count_read(struct alloc_counts *out);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_BENCH_ALLOC_COUNT_H */
