/* SPDX-License-Identifier: MIT */
/* A weakly consistent dump of a subtree, safe under concurrent churn. */
#ifndef RCTX_DUMP_H
#define RCTX_DUMP_H

#include "internal.h"

_Static_assert((int)RCTX_DUMP_ROOT == (int)RCTX_KIND_ROOT &&
		   (int)RCTX_DUMP_CANCEL == (int)RCTX_KIND_CANCEL &&
		   (int)RCTX_DUMP_TIMER == (int)RCTX_KIND_TIMER &&
		   (int)RCTX_DUMP_VALUE == (int)RCTX_KIND_VALUE &&
		   (int)RCTX_DUMP_WITHOUT == (int)RCTX_KIND_WITHOUT,
	       "public dump kinds are the internal kinds");

/* Arguments checked by api.c. */
int rctx_dump_do(struct rctx *ctx, size_t max_nodes,
		 int (*fn)(const rctx_dump_node_t *, void *), void *arg);
int rctx_dump_do_fd(struct rctx *ctx, size_t max_nodes, int fd);

#endif /* RCTX_DUMP_H */
