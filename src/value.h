/* SPDX-License-Identifier: MIT */
/* Value lookups, cached per depth so their cost does not grow with depth. */
#ifndef RCTX_VALUE_H
#define RCTX_VALUE_H

#include "internal.h"

/*
 * Value contexts find the previous value context through their parent
 * (rctx_vprev: the parent itself, or the nearest value context above a
 * run of other kinds), and every RCTX_VINDEX_EVERY-th value depth may hold a lazily built,
 * immutable index of every key at or above it (nearest wins). A lookup
 * walks to the nearest index and probes it; the first lookup on a chain
 * costs O(depth), later ones O(1) (value.c, Cost).
 */
#define RCTX_VINDEX_EVERY 8
/* vdepth is kept modulo 256 (internal.h): the stride must divide it. */
_Static_assert(256 % RCTX_VINDEX_EVERY == 0, "vdepth wraps at 256");

/* Is a value context at depth d (modulo 256) one that may hold an index
 * (and so is allocated with room for it, RCTX_F_VINDEX)? */
static inline bool
rctx_value_depth_indexed(uint8_t d)
{
	return d % RCTX_VINDEX_EVERY == 0;
}
/* An index is built only while it holds at most this many keys; past it
 * lookups walk (value.c: memory stays linear in depth). */
#define RCTX_VINDEX_MAX_KEYS 65536

/* The value of the nearest ancestor of vtop (inclusive) with key. */
void *rctx_value_lookup(struct rctx *vtop, const void *key);

/* Free v's index, if built (v is being freed). */
void rctx_value_free(struct rctx *v);

/*
 * Test builds count the work of lookups (value links followed, index
 * entries written or scanned) in a thread-local counter, so tests can
 * check costs without timing anything.
 */
#ifdef RCTX_FAULT_INJECTION
extern RCTX_TLS uint64_t rctx_value_work;
#define RCTX_VALUE_WORK(n) ((void)(rctx_value_work += (n)))
#else
#define RCTX_VALUE_WORK(n) ((void)0)
#endif

/* Bytes held by v's index (tests, design notes). */
size_t rctx_value_index_bytes(struct rctx *v);

#endif /* RCTX_VALUE_H */
