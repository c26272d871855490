/* SPDX-License-Identifier: MIT */
/* Event-loop mode: wheels owned by the application's own loop threads. */
#ifndef RCTX_LOOP_H
#define RCTX_LOOP_H

#include <stdbool.h>
#include <time.h>

#include "twheel.h"

struct epoll_event;

struct rctx_loop {
	struct rctx_twheel tw; /* first: a loop is a twheel */
};

/* The loop the calling thread owns, or NULL. */
extern RCTX_TLS struct rctx_loop *rctx_loop_mine;

/* Entry points (api.c checked the arguments: loop is not NULL). */
struct rctx_loop *rctx_loop_create(void);
int rctx_loop_efd(const struct rctx_loop *loop);
rctx_time_t rctx_loop_plan_next(struct rctx_loop *loop);
int rctx_loop_plan_ms(struct rctx_loop *loop);
int rctx_loop_plan_timespec(struct rctx_loop *loop, struct timespec *ts);
int rctx_loop_wait_epoll(struct rctx_loop *loop, int epfd,
			 struct epoll_event *events, int max);
int rctx_loop_fire_due(struct rctx_loop *loop, rctx_time_t now);
void rctx_loop_destroy(struct rctx_loop *loop);

/* True if a loop may exist (a hint: the service lock re-checks). */
bool rctx_loop_any(void);

/* True once a loop was ever created (release needs RCU: loop.B). */
bool rctx_loop_ever(void);

/*
 * Inside rcu_read_lock: the loop that an arm from a thread owning none
 * goes to (spread by CPU), or NULL if there is none.
 */
struct rctx_twheel *rctx_loop_pick_rcu(void);

/* Under the service lock: how many loops exist. */
unsigned rctx_loop_count_locked(void);

/* Under the service lock: move parked loops' timers into `to`. */
void rctx_loop_adopt_orphans_locked(struct rctx_twheel *to);

/* Under the service lock, at shutdown: kill parked loops' timers. */
void rctx_loop_kill_orphans_locked(void);

/*
 * Loop after-funcs' hooks (loopafter.c installs them at load, before any
 * thread): attach on a new loop, detach first thing in a free, rearm after
 * the fd is cleared, run after the due deadlines (the calls run).
 */
struct rctx_loop_hooks {
	void (*attach)(struct rctx_loop *loop, int efd);
	void (*detach)(struct rctx_loop *loop);
	void (*rearm)(struct rctx_loop *loop);
	int (*run)(struct rctx_loop *loop);
};
void rctx_loop_set_hooks(const struct rctx_loop_hooks *hooks);

#endif /* RCTX_LOOP_H */
