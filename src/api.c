/* SPDX-License-Identifier: MIT */
/* The public API: argument checks in one place, then dispatch. */
#include <errno.h>
#include <time.h>

#include "after.h"
#include "alloc.h"
#include "internal.h"
#include "loopafter.h"
#include "timer.h"
#include "tree.h"
#include "value.h"
#include "wait.h"

/*
 * One macro checks every argument (dav1d's validate_input_or_ret): on a
 * false condition the function returns `ret`, with errno set for the
 * constructors that return NULL.
 */
#define rctx_validate_or_ret(cond, ret)                                        \
	do {                                                                   \
		if (RCTX_UNLIKELY(!(cond)))                                    \
			return (ret);                                          \
	} while (0)
#define rctx_validate_or_null(cond, err)                                       \
	do {                                                                   \
		if (RCTX_UNLIKELY(!(cond))) {                                  \
			errno = (err);                                         \
			return NULL;                                           \
		}                                                              \
	} while (0)

/* Observers treat NULL as background and check liveness in debug builds. */
static inline const struct rctx *
observed(const rctx_t *ctx, const char *what)
{
	if (ctx == NULL)
		return &rctx_root_background;
	rctx_debug_check(ctx, what);
	return ctx;
}

static inline bool
cancelable(const struct rctx *c)
{
	return c->kind == RCTX_KIND_CANCEL || c->kind == RCTX_KIND_TIMER;
}

static rctx_time_t
sat_add(rctx_time_t a, rctx_time_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

RCTX_API rctx_time_t
rctx_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (rctx_time_t)ts.tv_sec * RCTX_SEC + ts.tv_nsec;
}

RCTX_API rctx_t *
rctx_background(void)
{
	return &rctx_root_background;
}

RCTX_API rctx_t *
rctx_todo(void)
{
	return &rctx_root_todo;
}

RCTX_API rctx_t *
rctx_with_cancel(rctx_t *parent)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_cancel");
	return rctx_tree_with_cancel(parent);
}

RCTX_API rctx_t *
rctx_with_deadline_cause(rctx_t *parent, rctx_time_t deadline, int cause)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_deadline");
	return rctx_tree_with_deadline(parent, deadline, cause);
}

RCTX_API rctx_t *
rctx_with_deadline(rctx_t *parent, rctx_time_t deadline)
{
	return rctx_with_deadline_cause(parent, deadline, 0);
}

RCTX_API rctx_t *
rctx_with_timeout_cause(rctx_t *parent, rctx_time_t timeout, int cause)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_timeout");
	/* now + timeout, saturating both ways (a timeout <= 0 is due). */
	rctx_time_t now = rctx_now();

	return rctx_tree_with_deadline_at(parent, sat_add(now, timeout), cause,
					  now);
}

RCTX_API rctx_t *
rctx_with_timeout(rctx_t *parent, rctx_time_t timeout)
{
	return rctx_with_timeout_cause(parent, timeout, 0);
}

RCTX_API rctx_t *
rctx_with_value(rctx_t *parent, const void *key, void *value)
{
	rctx_validate_or_null(parent != NULL && key != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_value");
	return rctx_tree_with_value(parent, key, value);
}

RCTX_API rctx_t *
rctx_without_cancel(rctx_t *parent)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_without_cancel");
	return rctx_tree_without_cancel(parent);
}

RCTX_API int
rctx_cancel_cause(rctx_t *ctx, int cause)
{
	rctx_validate_or_ret(ctx != NULL, -EINVAL);
	rctx_debug_check(ctx, "rctx_cancel");
	rctx_validate_or_ret(cancelable(ctx), -EINVAL);
	return rctx_tree_cancel(ctx, RCTX_ST_CANCELED,
				cause ? cause : ECANCELED);
}

RCTX_API int
rctx_cancel(rctx_t *ctx)
{
	return rctx_cancel_cause(ctx, 0);
}

RCTX_API int
rctx_err(const rctx_t *ctx)
{
	const struct rctx *src = observed(ctx, "rctx_err")->src;

	return src ? rctx_st_err(rctx_state_load(src)) : 0;
}

RCTX_API bool
rctx_done(const rctx_t *ctx)
{
	const struct rctx *src = observed(ctx, "rctx_done")->src;

	return src && (rctx_state_load(src) & RCTX_ST_ERR_MASK) != 0;
}

RCTX_API int
rctx_cause(const rctx_t *ctx)
{
	const struct rctx *src = observed(ctx, "rctx_cause")->src;
	uint64_t s;

	if (src == NULL)
		return 0;
	s = rctx_state_load(src);
	return rctx_st_err(s) ? rctx_st_cause(s) : 0;
}

RCTX_API bool
rctx_deadline(const rctx_t *ctx, rctx_time_t *deadline)
{
	const struct rctx *c = observed(ctx, "rctx_deadline");

	if (!c->has_deadline)
		return false;
	if (deadline)
		*deadline = c->deadline;
	return true;
}

RCTX_API void *
rctx_value(const rctx_t *ctx, const void *key)
{
	const struct rctx *c = observed(ctx, "rctx_value");

	if (key == NULL || c->vtop == NULL)
		return NULL;
	return rctx_value_lookup(c->vtop, key);
}

RCTX_API int
rctx_wait(rctx_t *ctx, rctx_time_t timeout)
{
	struct rctx *src = (struct rctx *)observed(ctx, "rctx_wait")->src;

	if (src == NULL)
		return rctx_wait_never(timeout);
	return rctx_wait_src(src, timeout);
}

RCTX_API int
rctx_fd(rctx_t *ctx)
{
	struct rctx *src = (struct rctx *)observed(ctx, "rctx_fd")->src;

	rctx_validate_or_ret(src != NULL, -EOPNOTSUPP);
	return rctx_fd_src(src);
}

RCTX_API int
rctx_after_func(rctx_t *ctx, rctx_after_t *reg, void (*fn)(void *arg),
		void *arg)
{
	rctx_validate_or_ret(ctx != NULL && reg != NULL && fn != NULL, -EINVAL);
	rctx_debug_check(ctx, "rctx_after_func");
	return rctx_after_register(ctx, reg, fn, arg);
}

RCTX_API bool
rctx_after_stop(rctx_after_t *reg)
{
	rctx_validate_or_ret(reg != NULL, false);
	if (rctx_lafter_is(reg)) /* made by rctx_loop_after_func */
		return rctx_lafter_stop(reg);
	return rctx_after_unregister(reg);
}

RCTX_API rctx_t *
rctx_retain(rctx_t *ctx)
{
	if (ctx == NULL || ctx->kind == RCTX_KIND_ROOT)
		return ctx;
	rctx_debug_check(ctx, "rctx_retain");
	rctx_ref_get(ctx);
	return ctx;
}

RCTX_API void
rctx_release(rctx_t *ctx)
{
	rctx_tree_release(ctx);
}

RCTX_API void
rctx_shutdown(void)
{
	rctx_timer_shutdown();
	rctx_alloc_shutdown();
	rctx_after_shutdown();
}

RCTX_API int
rctx_loop_after_func(rctx_loop_t *loop, rctx_t *ctx, rctx_after_t *reg,
		     void (*fn)(void *arg), void *arg)
{
	rctx_validate_or_ret(
	    loop != NULL && ctx != NULL && reg != NULL && fn != NULL, -EINVAL);
	rctx_debug_check(ctx, "rctx_loop_after_func");
	return rctx_lafter_register(loop, ctx, reg, fn, arg);
}
