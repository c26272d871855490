/* SPDX-License-Identifier: MIT */
/* The public API: argument checks in one place, then dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "after.h"
#include "alloc.h"
#include "drain.h"
#include "dump.h"
#include "fault.h"
#include "internal.h"
#include "loop.h"
#include "loopafter.h"
#include "leak.h"
#include "stats.h"
#include "timer.h"
#include "tree.h"
#include "value.h"
#include "wait.h"

/*
 * One macro checks every argument (dav1d's validate_input_or_ret): on a
 * false condition the function does `fail` (returns -EINVAL, or sets errno
 * and returns NULL for a constructor). In debug builds (RCTX_DEBUG) it
 * first prints the check that failed and the function to stderr.
 */
#ifdef RCTX_DEBUG
#define rctx_validate_report(check)                                            \
	fprintf(stderr, "rctx: %s: check failed: %s\n", __func__, check)
#else
#define rctx_validate_report(check) ((void)0)
#endif
#define rctx_validate(cond, ...)                                               \
	do {                                                                   \
		if (RCTX_UNLIKELY(!(cond))) {                                  \
			rctx_validate_report(#cond);                           \
			__VA_ARGS__;                                           \
		}                                                              \
	} while (0)
#define rctx_validate_or_ret(cond, ret) rctx_validate(cond, return (ret))
#define rctx_validate_or_null(cond, err)                                       \
	rctx_validate(cond, errno = (err); return NULL)

/* Observers treat NULL as background and check liveness in debug builds. */
/* Where the application called us from (leak reports). */
#define RCTX_SITE __builtin_return_address(0)

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

RCTX_API rctx_time_t
rctx_now(void)
{
	return rctx_clock_now();
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
	return rctx_stats_made(rctx_tree_with_cancel(parent), RCTX_SITE);
}

/* The deadline constructors share a body that is given the caller's site
 * (leak reports), so that the short forms report their own caller. */
static inline rctx_t *
with_deadline(rctx_t *parent, rctx_time_t deadline, int cause, const void *site)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_deadline");
	return rctx_stats_made(rctx_tree_with_deadline(parent, deadline, cause),
			       site);
}

RCTX_API rctx_t *
rctx_with_deadline_cause(rctx_t *parent, rctx_time_t deadline, int cause)
{
	return with_deadline(parent, deadline, cause, RCTX_SITE);
}

RCTX_API rctx_t *
rctx_with_deadline(rctx_t *parent, rctx_time_t deadline)
{
	return with_deadline(parent, deadline, 0, RCTX_SITE);
}

static inline rctx_t *
with_timeout(rctx_t *parent, rctx_time_t timeout, int cause, const void *site)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_timeout");
	/* now + timeout, saturating both ways (a timeout <= 0 is due). */
	rctx_time_t now = rctx_clock_now();

	return rctx_stats_made(
	    rctx_tree_with_deadline_at(parent, rctx_clock_add(now, timeout),
				       cause, now),
	    site);
}

RCTX_API rctx_t *
rctx_with_timeout_cause(rctx_t *parent, rctx_time_t timeout, int cause)
{
	return with_timeout(parent, timeout, cause, RCTX_SITE);
}

RCTX_API rctx_t *
rctx_with_timeout(rctx_t *parent, rctx_time_t timeout)
{
	return with_timeout(parent, timeout, 0, RCTX_SITE);
}

RCTX_API rctx_t *
rctx_with_value(rctx_t *parent, const void *key, void *value)
{
	rctx_validate_or_null(parent != NULL && key != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_with_value");
	return rctx_stats_made(rctx_tree_with_value(parent, key, value),
			       RCTX_SITE);
}

RCTX_API rctx_t *
rctx_without_cancel(rctx_t *parent)
{
	rctx_validate_or_null(parent != NULL, EINVAL);
	rctx_debug_check(parent, "rctx_without_cancel");
	return rctx_stats_made(rctx_tree_without_cancel(parent), RCTX_SITE);
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
	const struct rctx *src = rctx_src(observed(ctx, "rctx_err"));

	return src ? rctx_st_err(rctx_state_load(src)) : 0;
}

RCTX_API bool
rctx_done(const rctx_t *ctx)
{
	const struct rctx *src = rctx_src(observed(ctx, "rctx_done"));

	return src && (rctx_state_load(src) & RCTX_ST_ERR_MASK) != 0;
}

RCTX_API int
rctx_cause(const rctx_t *ctx)
{
	const struct rctx *src = rctx_src(observed(ctx, "rctx_cause"));
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
	rctx_time_t d;

	if (!rctx_deadline_get(c, &d))
		return false;
	if (deadline)
		*deadline = d;
	return true;
}

RCTX_API void *
rctx_value(const rctx_t *ctx, const void *key)
{
	const struct rctx *c = observed(ctx, "rctx_value");
	struct rctx *top;

	if (key == NULL || (top = rctx_vtop(c)) == NULL)
		return NULL;
	return rctx_value_lookup(top, key);
}

RCTX_API int
rctx_wait(rctx_t *ctx, rctx_time_t timeout)
{
	struct rctx *src = rctx_src(observed(ctx, "rctx_wait"));

	if (src == NULL)
		return rctx_wait_never(timeout);
	return rctx_wait_src(src, timeout);
}

RCTX_API int
rctx_fd(rctx_t *ctx)
{
	struct rctx *src = rctx_src(observed(ctx, "rctx_fd"));

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
	rctx_alloc_shutdown_begin();
	rctx_timer_shutdown();
	rctx_alloc_shutdown();
	rctx_after_shutdown();
	/* No pthread key of ours outlives a shutdown (dlclose may follow). */
	rctx_lafter_shutdown();
	rctx_stats_shutdown();
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

RCTX_API rctx_loop_t *
rctx_loop_new(void)
{
	return rctx_loop_create();
}

RCTX_API int
rctx_loop_fd(const rctx_loop_t *loop)
{
	rctx_validate_or_ret(loop != NULL, -EINVAL);
	return rctx_loop_efd(loop);
}

RCTX_API rctx_time_t
rctx_loop_next(rctx_loop_t *loop)
{
	rctx_validate_or_ret(loop != NULL, -EINVAL);
	return rctx_loop_plan_next(loop);
}

RCTX_API int
rctx_loop_timeout_ms(rctx_loop_t *loop)
{
	rctx_validate_or_ret(loop != NULL, -EINVAL);
	return rctx_loop_plan_ms(loop);
}

RCTX_API int
rctx_loop_run(rctx_loop_t *loop, rctx_time_t now)
{
	rctx_validate_or_ret(loop != NULL, -EINVAL);
	return rctx_loop_fire_due(loop, now);
}

RCTX_API void
rctx_loop_free(rctx_loop_t *loop)
{
	if (loop == NULL)
		return; /* a no-op, like free(NULL) */
	rctx_loop_destroy(loop);
}

RCTX_API int
rctx_timer_threads(bool enable)
{
	return rctx_timer_set_threads(enable);
}

RCTX_API int
rctx_loop_timeout_ts(rctx_loop_t *loop, struct timespec *ts)
{
	rctx_validate_or_ret(loop != NULL && ts != NULL, -EINVAL);
	return rctx_loop_plan_timespec(loop, ts);
}

RCTX_API int
rctx_loop_epoll_wait(rctx_loop_t *loop, int epfd, struct epoll_event *events,
		     int maxevents)
{
	rctx_validate_or_ret(loop != NULL && events != NULL && maxevents > 0,
			     -EINVAL);
	return rctx_loop_wait_epoll(loop, epfd, events, maxevents);
}

/* ---- Deadlines across services (0.2): wire.c, cause.c ---- */
#include "cause.h"
#include "wire.h"

RCTX_API rctx_time_t
rctx_remaining(const rctx_t *ctx)
{
	return rctx_wire_remaining(observed(ctx, "rctx_remaining"), rctx_now());
}

RCTX_API int
rctx_grpc_timeout_format(rctx_time_t timeout, char *buf, size_t size)
{
	rctx_validate_or_ret(timeout > 0 && buf != NULL, -EINVAL);
	return rctx_wire_grpc_format(timeout, buf, size);
}

RCTX_API int
rctx_grpc_timeout_parse(const char *value, size_t len, rctx_time_t *timeout)
{
	rctx_validate_or_ret(value != NULL && timeout != NULL, -EINVAL);
	return rctx_wire_grpc_parse(value, len, timeout);
}

RCTX_API int
rctx_envoy_timeout_format(rctx_time_t timeout, char *buf, size_t size)
{
	rctx_validate_or_ret(timeout > 0 && buf != NULL, -EINVAL);
	return rctx_wire_envoy_format(timeout, buf, size);
}

RCTX_API int
rctx_envoy_timeout_parse(const char *value, size_t len, rctx_time_t *timeout)
{
	rctx_validate_or_ret(value != NULL && timeout != NULL, -EINVAL);
	return rctx_wire_envoy_parse(value, len, timeout);
}

RCTX_API int
rctx_cause_register(const char *name, int kind)
{
	rctx_validate_or_ret(name != NULL && name[0] != '\0', -EINVAL);
	rctx_validate_or_ret(kind >= RCTX_CAUSE_KIND_CLIENT &&
				 kind <= RCTX_CAUSE_KIND_DEADLINE,
			     -EINVAL);
	return rctx_cause_add(name, kind);
}

RCTX_API const char *
rctx_cause_name(int cause)
{
	return rctx_cause_lookup(cause);
}

RCTX_API int
rctx_cause_kind(int cause)
{
	return rctx_cause_kind_of(cause);
}

RCTX_API const char *
rctx_reason(const rctx_t *ctx)
{
	return rctx_cause_lookup(rctx_cause(ctx));
}

RCTX_API int
rctx_grpc_status(const rctx_t *ctx)
{
	const struct rctx *src = rctx_src(observed(ctx, "rctx_grpc_status"));
	uint64_t s = src ? rctx_state_load(src) : 0;

	return rctx_st_err(s)
		   ? rctx_cause_grpc(rctx_st_err(s), rctx_st_cause(s))
		   : 0;
}

RCTX_API int
rctx_http_status(const rctx_t *ctx)
{
	const struct rctx *src = rctx_src(observed(ctx, "rctx_http_status"));
	uint64_t s = src ? rctx_state_load(src) : 0;

	return rctx_st_err(s)
		   ? rctx_cause_http(rctx_st_err(s), rctx_st_cause(s))
		   : 0;
}

RCTX_API int
rctx_ingress(rctx_t *parent, rctx_time_t timeout, const rctx_budget_t *budget,
	     rctx_t **out)
{
	rctx_validate_or_ret(parent != NULL && budget != NULL && out != NULL,
			     -EINVAL);
	rctx_validate_or_ret(
	    timeout >= 0 && budget->cap >= 0 && budget->margin >= 0, -EINVAL);
	rctx_debug_check(parent, "rctx_ingress");
	return rctx_wire_ingress(parent, timeout, budget, out);
}

RCTX_API int
rctx_ingress_grpc(rctx_t *parent, const char *value, size_t len,
		  const rctx_budget_t *budget, rctx_t **out)
{
	rctx_time_t timeout;

	rctx_validate_or_ret(parent != NULL && value != NULL &&
				 budget != NULL && out != NULL,
			     -EINVAL);
	rctx_validate_or_ret(rctx_wire_grpc_parse(value, len, &timeout) == 0,
			     -EINVAL);
	return rctx_ingress(parent, timeout, budget, out);
}

RCTX_API int
rctx_egress(const rctx_t *ctx, rctx_time_t margin, rctx_time_t *timeout)
{
	rctx_validate_or_ret(ctx != NULL && timeout != NULL && margin >= 0,
			     -EINVAL);
	rctx_debug_check(ctx, "rctx_egress");
	return rctx_wire_egress(ctx, margin, timeout);
}

RCTX_API int
rctx_egress_grpc(const rctx_t *ctx, rctx_time_t margin, char *buf, size_t size)
{
	rctx_time_t left;
	int ret;

	rctx_validate_or_ret(buf != NULL, -EINVAL);
	ret = rctx_egress(ctx, margin, &left);
	if (ret < 0)
		return ret;
	if (left == RCTX_FOREVER) {
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	return rctx_wire_grpc_format(left, buf, size);
}

/* --- 0.2: statistics, metrics and draining (issue 14) --- */

RCTX_API int
rctx_stats(rctx_stats_t *stats, size_t size)
{
	rctx_stats_t s;

	/* The five fields of 0.2 are the least a caller may ask for. */
	rctx_validate_or_ret(stats != NULL &&
				 size >= offsetof(rctx_stats_t, timers) +
					     sizeof(s.timers),
			     -EINVAL);
	rctx_stats_read(&s);
	memcpy(stats, &s, size < sizeof(s) ? size : sizeof(s));
	if (size > sizeof(s))
		memset((char *)stats + sizeof(s), 0, size - sizeof(s));
	return 0;
}

RCTX_API int
rctx_metrics(rctx_metrics_t *m, size_t size)
{
	rctx_metrics_t *s;
	int r;

	rctx_validate_or_ret(m != NULL && size > 0, -EINVAL);
	if (size >= sizeof(*s)) {
		r = rctx_stats_read_metrics(m);
		if (r == 0)
			memset((char *)m + sizeof(*s), 0, size - sizeof(*s));
		return r;
	}
	s = rctx_malloc(sizeof(*s));
	rctx_validate_or_ret(s != NULL, -ENOMEM);
	r = rctx_stats_read_metrics(s);
	if (r == 0)
		memcpy(m, s, size);
	free(s);
	return r;
}

/* A drain argument: non-NULL and initialised. */
static inline struct rctx_drain_impl *
drain_of(rctx_drain_t *d)
{
	return (struct rctx_drain_impl *)(void *)d;
}

#define rctx_drain_ok(d) ((d) != NULL && drain_of(d)->magic == RCTX_DRAIN_MAGIC)

RCTX_API int
rctx_drain_init(rctx_drain_t *d, rctx_t *parent)
{
	int r;

	rctx_validate_or_ret(d != NULL && parent != NULL, -EINVAL);
	rctx_debug_check(parent, "rctx_drain_init");
	r = rctx_drain_do_init(drain_of(d), parent);
	if (r == 0)
		(void)rctx_stats_made(drain_of(d)->ctx, RCTX_SITE);
	return r;
}

RCTX_API rctx_t *
rctx_drain_ctx(rctx_drain_t *d)
{
	rctx_validate_or_null(rctx_drain_ok(d), EINVAL);
	return drain_of(d)->ctx;
}

RCTX_API int
rctx_drain_enter(rctx_drain_t *d)
{
	rctx_validate_or_ret(rctx_drain_ok(d), -EINVAL);
	return rctx_drain_do_enter(drain_of(d));
}

RCTX_API int
rctx_drain_leave(rctx_drain_t *d)
{
	rctx_validate_or_ret(rctx_drain_ok(d), -EINVAL);
	return rctx_drain_do_leave(drain_of(d));
}

RCTX_API int
rctx_drain_run(rctx_drain_t *d, void (*fn)(void *arg), void *arg)
{
	rctx_validate_or_ret(rctx_drain_ok(d) && fn != NULL, -EINVAL);
	return rctx_drain_do_run(drain_of(d), fn, arg);
}

RCTX_API int
rctx_drain_join(rctx_drain_t *d, rctx_time_t timeout)
{
	rctx_validate_or_ret(rctx_drain_ok(d), -EINVAL);
	return rctx_drain_do_join(drain_of(d), timeout);
}

RCTX_API int
rctx_drain_cancel_join(rctx_drain_t *d, rctx_time_t timeout)
{
	rctx_validate_or_ret(rctx_drain_ok(d), -EINVAL);
	return rctx_drain_do_cancel_join(drain_of(d), timeout);
}

RCTX_API int
rctx_drain_destroy(rctx_drain_t *d)
{
	rctx_validate_or_ret(rctx_drain_ok(d), -EINVAL);
	return rctx_drain_do_destroy(drain_of(d));
}

RCTX_API int
rctx_dump(rctx_t *ctx, size_t max_nodes,
	  int (*fn)(const rctx_dump_node_t *node, void *arg), void *arg)
{
	rctx_validate_or_ret(ctx != NULL && fn != NULL && max_nodes > 0,
			     -EINVAL);
	rctx_debug_check(ctx, "rctx_dump");
	return rctx_dump_do(ctx, max_nodes, fn, arg);
}

RCTX_API int
rctx_dump_fd(rctx_t *ctx, size_t max_nodes, int fd)
{
	rctx_validate_or_ret(ctx != NULL && max_nodes > 0 && fd >= 0, -EINVAL);
	rctx_debug_check(ctx, "rctx_dump_fd");
	return rctx_dump_do_fd(ctx, max_nodes, fd);
}

RCTX_API int
rctx_leak_track(bool on)
{
	return rctx_leak_set(on);
}

RCTX_API int
rctx_leak_report(rctx_time_t older_than, rctx_leak_fn fn, void *arg)
{
	rctx_validate_or_ret(fn != NULL && older_than >= 0, -EINVAL);
	return rctx_leak_do_report(older_than, fn, arg);
}

RCTX_API int
rctx_leak_report_fd(rctx_time_t older_than, int fd)
{
	rctx_validate_or_ret(fd >= 0 && older_than >= 0, -EINVAL);
	return rctx_leak_do_report_fd(older_than, fd);
}
