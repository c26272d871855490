/* SPDX-License-Identifier: MIT */
/* Value lookups, cached per depth so their cost does not grow with depth. */
#ifndef RCTX_VALUE_H
#define RCTX_VALUE_H

#include "internal.h"

/*
 * Value contexts link straight to the previous value context (vprev), and
 * every RCTX_VINDEX_EVERY-th value depth holds a lazily built, immutable
 * index of every key at or above it (nearest wins). A lookup walks at most
 * RCTX_VINDEX_EVERY value links, then probes one index.
 */
#define RCTX_VINDEX_EVERY 8
/* An index is built only while it holds at most this many keys; past it
 * lookups walk (memory stays linear in depth times this cap). */
#define RCTX_VINDEX_MAX_KEYS 4096

/* The value of the nearest ancestor of vtop (inclusive) with key. */
void *rctx_value_lookup(struct rctx *vtop, const void *key);

/* Free v's index, if built (v is being freed). */
void rctx_value_free(struct rctx *v);

/* Bytes held by v's index (tests, design notes). */
size_t rctx_value_index_bytes(struct rctx *v);

#endif /* RCTX_VALUE_H */
