/* SPDX-License-Identifier: MIT */
/* One table of entry points over rctx and the mutex baseline for perf/ programs. */
#ifndef RCTX_PERF_PLIB_H
#define RCTX_PERF_PLIB_H

#include <stdbool.h>
#include <stdint.h>

#include "rctx.h"
#ifdef PERF_HAVE_MCTX
#include "mctx.h"
#endif

/* Storage for either library's after-func registration. */
union plib_after {
	rctx_after_t r;
#ifdef PERF_HAVE_MCTX
	mctx_after_t m;
#endif
};

struct plib {
	const char *name;
	int64_t (*now)(void);
	void *(*background)(void);
	void *(*with_cancel)(void *parent);
	void *(*with_deadline)(void *parent, int64_t deadline);
	int (*cancel)(void *ctx);
	void (*release)(void *ctx);
	int (*err)(const void *ctx);
	bool (*done)(const void *ctx);
	int (*wait)(void *ctx, int64_t timeout);
	int (*fd)(void *ctx);
	int (*after_func)(void *ctx, union plib_after *reg,
			  void (*fn)(void *arg), void *arg);
	bool (*after_stop)(union plib_after *reg);
	void (*shutdown)(void);
};

/* Each wrapper only converts pointer types; the compiler inlines them. */
#define PLIB_WRAPPERS(p)                                                       \
	static int64_t p##_w_now(void)                                         \
	{                                                                      \
		return p##_now();                                              \
	}                                                                      \
	static void *p##_w_background(void)                                    \
	{                                                                      \
		return p##_background();                                       \
	}                                                                      \
	static void *p##_w_with_cancel(void *a)                                \
	{                                                                      \
		return p##_with_cancel(a);                                     \
	}                                                                      \
	static void *p##_w_with_deadline(void *a, int64_t d)                   \
	{                                                                      \
		return p##_with_deadline(a, d);                                \
	}                                                                      \
	static int p##_w_cancel(void *a)                                       \
	{                                                                      \
		return p##_cancel(a);                                          \
	}                                                                      \
	static void p##_w_release(void *a)                                     \
	{                                                                      \
		p##_release(a);                                                \
	}                                                                      \
	static int p##_w_err(const void *a)                                    \
	{                                                                      \
		return p##_err(a);                                             \
	}                                                                      \
	static bool p##_w_done(const void *a)                                  \
	{                                                                      \
		return p##_done(a);                                            \
	}                                                                      \
	static int p##_w_wait(void *a, int64_t t)                              \
	{                                                                      \
		return p##_wait(a, t);                                         \
	}                                                                      \
	static int p##_w_fd(void *a)                                           \
	{                                                                      \
		return p##_fd(a);                                              \
	}                                                                      \
	static int p##_w_after_func(void *a, union plib_after *r,              \
				    void (*fn)(void *), void *arg)             \
	{                                                                      \
		return p##_after_func(a, (void *)r, fn, arg);                  \
	}                                                                      \
	static bool p##_w_after_stop(union plib_after *r)                      \
	{                                                                      \
		return p##_after_stop((void *)r);                              \
	}                                                                      \
	static void p##_w_shutdown(void)                                       \
	{                                                                      \
		p##_shutdown();                                                \
	}                                                                      \
	static const struct plib p##_plib = {                                  \
		.name = #p,                                                    \
		.now = p##_w_now,                                              \
		.background = p##_w_background,                                \
		.with_cancel = p##_w_with_cancel,                              \
		.with_deadline = p##_w_with_deadline,                          \
		.cancel = p##_w_cancel,                                        \
		.release = p##_w_release,                                      \
		.err = p##_w_err,                                              \
		.done = p##_w_done,                                            \
		.wait = p##_w_wait,                                            \
		.fd = p##_w_fd,                                                \
		.after_func = p##_w_after_func,                                \
		.after_stop = p##_w_after_stop,                                \
		.shutdown = p##_w_shutdown,                                    \
	}

PLIB_WRAPPERS(rctx);
#ifdef PERF_HAVE_MCTX
PLIB_WRAPPERS(mctx);
#endif

/* The libraries this program was built with, rctx first. */
static const struct plib *const plibs[] = {
	&rctx_plib,
#ifdef PERF_HAVE_MCTX
	&mctx_plib,
#endif
};

#define PLIB_COUNT (sizeof(plibs) / sizeof(plibs[0]))

#endif /* RCTX_PERF_PLIB_H */
