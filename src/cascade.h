/* SPDX-License-Identifier: MIT */
/* The cancel cascade (cascade.c), the cancel half of the tree module. */
#ifndef RCTX_CASCADE_H
#define RCTX_CASCADE_H

#include "internal.h"

/* Cancel c (cancelable) with err code and cause: 0 or -EALREADY. Returns
 * only once every descendant of c is done, whoever won (tree.G). */
int rctx_tree_cancel(struct rctx *c, unsigned code, int cause);

#endif /* RCTX_CASCADE_H */
