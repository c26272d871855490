/* SPDX-License-Identifier: MIT */
/* Leak reports: an opt-in side table of each context's site and times. */
#ifndef RCTX_LEAK_H
#define RCTX_LEAK_H

#include "internal.h"

/*
 * Off by default. When off, each hook below costs one relaxed load of a
 * flag no hot path writes, and a branch; no struct rctx field is used.
 */
extern _Atomic bool rctx_leak_on;

static inline bool
rctx_leak_enabled(void)
{
	/* relaxed: a context made while the flag flips is either tracked or
	 * not; the table's own lock orders everything else (leak.c) */
	return atomic_load_explicit(&rctx_leak_on, memory_order_relaxed);
}

/* c was made at site (a return address in the caller of the API). */
void rctx_leak_made(struct rctx *c, const void *site);
/* c (cancelable) became done. */
void rctx_leak_done(struct rctx *c);
/* c's last reference is gone (before its memory can be reused). */
void rctx_leak_freed(struct rctx *c);
/* ns since c was made, or -1 if it is not tracked. */
rctx_time_t rctx_leak_age(const struct rctx *c);

/* api.c */
int rctx_leak_set(bool on);
int rctx_leak_do_report(rctx_time_t older_than,
			int (*fn)(const rctx_leak_site_t *, void *), void *arg);
int rctx_leak_do_report_fd(rctx_time_t older_than, int fd);

/* Format one line (at most 512 bytes) and write it all to fd: 0 or
 * -errno. No stdio stream (dprintf leaks its buffer on a bad fd). */
int rctx_fd_printf(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* RCTX_LEAK_H */
