/* SPDX-License-Identifier: MIT */
/* Causes in words: a registry of named causes, and status mapping. */
#ifndef RCTX_CAUSE_H
#define RCTX_CAUSE_H

#include "internal.h"

/* How many names the registry holds (the built-in ones included). */
#define RCTX_CAUSE_NAMES 256

/* See rctx_cause_register in rctx.h; name non-empty, kind checked. */
int rctx_cause_add(const char *name, int kind);

/* Name and kind of a cause (any int); NULL and 0 for none. */
const char *rctx_cause_lookup(int cause);
int rctx_cause_kind_of(int cause);

/* Statuses for a context done with (err, cause); err != 0. */
int rctx_cause_grpc(int err, int cause);
int rctx_cause_http(int err, int cause);

#endif /* RCTX_CAUSE_H */
