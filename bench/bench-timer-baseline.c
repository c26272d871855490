/* SPDX-License-Identifier: MIT */
/* bench-timer C side: rctx timer pool; mutex + heap + condvar baseline. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "bench-timer.h"
#include "timer.h"

int64_t
bench_timer_now(void)
{
	return rctx_now();
}

/* ---- rctx timer service ------------------------------------------------ */

uint64_t rctx_timer_wakeups(void);
uint64_t rctx_timer_owner_runs(void);

struct bench_tslot {
	struct rctx_timer t;
	_Atomic int dead;
	bool used;
};

struct bench_tpool {
	size_t n;
	uint64_t stalls;
	struct bench_tslot *s;
	size_t npend;
	struct bench_tslot *pend;
};

static void
bench_t_fire(struct rctx_timer *t)
{
	(void)t; /* every timer is cancelled at once: never reached */
}

static void
bench_t_dead(struct rctx_timer *t)
{
	struct bench_tslot *s = (struct bench_tslot *)(void *)t;

	/* Release: pairs with the acquire in bench_tpool_op before reuse. */
	atomic_store_explicit(&s->dead, 1, memory_order_release);
}

static void
bench_tslot_wait(struct bench_tpool *p, struct bench_tslot *s)
{
	/* Acquire: pairs with the release in bench_t_dead. */
	while (!atomic_load_explicit(&s->dead, memory_order_acquire)) {
		p->stalls++;
		sched_yield();
	}
}

struct bench_tpool *
bench_tpool_new(size_t n)
{
	struct bench_tpool *p = calloc(1, sizeof(*p));
	struct bench_tslot warm = { 0 };

	if (!p)
		return NULL;
	p->n = n;
	p->s = calloc(n, sizeof(*p->s));
	if (!p->s) {
		free(p);
		return NULL;
	}
	rctx_timer_setup(bench_t_fire, bench_t_dead);
	/* Start the service (threads, wheels) outside the measurement. */
	rctx_timer_init(&warm.t);
	if (rctx_timer_arm(&warm.t, rctx_now()) == 0) {
		rctx_timer_release(&warm.t);
		bench_tslot_wait(p, &warm);
	}
	p->stalls = 0;
	return p;
}

void
bench_tpool_op(struct bench_tpool *p, size_t i, int64_t expires)
{
	struct bench_tslot *s = &p->s[i % p->n];

	if (s->used)
		bench_tslot_wait(p, s);
	/* Relaxed: nobody else holds the slot once it is dead. */
	atomic_store_explicit(&s->dead, 0, memory_order_relaxed);
	s->used = true;
	rctx_timer_init(&s->t);
	if (rctx_timer_arm(&s->t, expires))
		abort();
	rctx_timer_cancel(&s->t);
	rctx_timer_release(&s->t);
}

void
bench_tpool_pending(struct bench_tpool *p, size_t k, int64_t expires)
{
	size_t i;

	p->pend = calloc(k, sizeof(*p->pend));
	if (!p->pend)
		abort();
	p->npend = k;
	for (i = 0; i < k; i++) {
		rctx_timer_init(&p->pend[i].t);
		if (rctx_timer_arm(&p->pend[i].t, expires))
			abort();
		p->pend[i].used = true;
	}
}

uint64_t
bench_tpool_stalls(const struct bench_tpool *p)
{
	return p->stalls;
}

void
bench_tpool_free(struct bench_tpool *p)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (p->s[i].used)
			bench_tslot_wait(p, &p->s[i]);
	for (i = 0; i < p->npend; i++) {
		rctx_timer_release(&p->pend[i].t);
		bench_tslot_wait(p, &p->pend[i]);
	}
	rctx_timer_shutdown();
	free(p->pend);
	free(p->s);
	free(p);
}

uint64_t
bench_timer_wakeups(void)
{
	return rctx_timer_wakeups();
}

uint64_t
bench_timer_owner_runs(void)
{
	return rctx_timer_owner_runs();
}

/* ---- baseline: binary heap + mutex + condition variable ---------------- */

#define BENCH_NOT_IN_HEAP ((size_t)-1)

struct bench_hnode {
	int64_t expires;
	size_t idx; /* position in the heap, or BENCH_NOT_IN_HEAP */
};

struct bench_hpool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct bench_hnode **heap;
	size_t len;
	struct bench_hnode *nodes;
	size_t n;
	struct bench_hnode *pend;
	size_t npend;
	bool stop;
	uint64_t signals;
	uint64_t fired;
	pthread_t th;
};

static void
bench_h_set(struct bench_hpool *p, size_t i, struct bench_hnode *x)
{
	p->heap[i] = x;
	x->idx = i;
}

static void
bench_h_up(struct bench_hpool *p, size_t i)
{
	struct bench_hnode *x = p->heap[i];

	while (i > 0) {
		size_t up = (i - 1) / 2;

		if (p->heap[up]->expires <= x->expires)
			break;
		bench_h_set(p, i, p->heap[up]);
		i = up;
	}
	bench_h_set(p, i, x);
}

static void
bench_h_down(struct bench_hpool *p, size_t i)
{
	struct bench_hnode *x = p->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= p->len)
			break;
		if (c + 1 < p->len &&
		    p->heap[c + 1]->expires < p->heap[c]->expires)
			c++;
		if (x->expires <= p->heap[c]->expires)
			break;
		bench_h_set(p, i, p->heap[c]);
		i = c;
	}
	bench_h_set(p, i, x);
}

static void
bench_h_remove(struct bench_hpool *p, struct bench_hnode *x)
{
	size_t i = x->idx;
	struct bench_hnode *last = p->heap[--p->len];

	x->idx = BENCH_NOT_IN_HEAP;
	if (last == x)
		return;
	bench_h_set(p, i, last);
	bench_h_up(p, i);
	bench_h_down(p, last->idx);
}

static void *
bench_h_thread(void *arg)
{
	struct bench_hpool *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		int64_t now = rctx_now();
		struct timespec ts;

		if (p->len == 0) {
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		if (p->heap[0]->expires <= now) {
			bench_h_remove(p, p->heap[0]);
			p->fired++;
			continue;
		}
		ts.tv_sec = p->heap[0]->expires / 1000000000;
		ts.tv_nsec = p->heap[0]->expires % 1000000000;
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct bench_hpool *
bench_hpool_new(size_t n)
{
	struct bench_hpool *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;
	size_t i;

	if (!p)
		return NULL;
	p->n = n;
	p->heap = calloc(n, sizeof(*p->heap));
	p->nodes = calloc(n, sizeof(*p->nodes));
	if (!p->heap || !p->nodes) {
		free(p->heap);
		free(p->nodes);
		free(p);
		return NULL;
	}
	for (i = 0; i < n; i++)
		p->nodes[i].idx = BENCH_NOT_IN_HEAP;

	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&p->th, NULL, bench_h_thread, p))
		abort();
	return p;
}

void
bench_hpool_op(struct bench_hpool *p, size_t i, int64_t expires)
{
	struct bench_hnode *x = &p->nodes[i % p->n];

	pthread_mutex_lock(&p->mu);
	if (x->idx != BENCH_NOT_IN_HEAP)
		bench_h_remove(p, x);
	x->expires = expires;
	bench_h_set(p, p->len++, x);
	bench_h_up(p, x->idx);
	if (x->idx == 0) {
		/* New earliest deadline: the timer thread must re-plan. */
		p->signals++;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);

	pthread_mutex_lock(&p->mu);
	if (x->idx != BENCH_NOT_IN_HEAP)
		bench_h_remove(p, x);
	pthread_mutex_unlock(&p->mu);
}

void
bench_hpool_pending(struct bench_hpool *p, size_t k, int64_t expires)
{
	struct bench_hnode **heap;
	size_t i;

	pthread_mutex_lock(&p->mu); /* the timer thread reads p->heap */
	heap = realloc(p->heap, (p->n + k) * sizeof(*heap));
	p->pend = calloc(k, sizeof(*p->pend));
	if (!heap || !p->pend)
		abort();
	p->heap = heap;
	p->npend = k;
	for (i = 0; i < k; i++) {
		p->pend[i].expires = expires;
		bench_h_set(p, p->len++, &p->pend[i]);
		bench_h_up(p, p->pend[i].idx);
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

uint64_t
bench_hpool_signals(const struct bench_hpool *p)
{
	return p->signals;
}

void
bench_hpool_free(struct bench_hpool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->th, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->heap);
	free(p->nodes);
	free(p->pend);
	free(p);
}
