/* SPDX-License-Identifier: MIT */
/* The timing wheel's invariant checker, for tests and fuzzers. */
#ifndef RCTX_WHEELCHECK_H
#define RCTX_WHEELCHECK_H

#include "wheel.h"

/*
 * Invariant checker: every bitmap bit and slot count matches its slot,
 * every node's pprev/level/slot/bank agree with where it is, count is
 * right, no node is filed at a slot that would fire it early, and each
 * next-turn bank holds only its turn's timers (wheel.c (a)-(f)). Returns true if sound;
 * on failure writes a reason to *why (if non-NULL).
 */
bool rctx_wheel_check(const struct rctx_wheel *w, const char **why);

#endif /* RCTX_WHEELCHECK_H */
