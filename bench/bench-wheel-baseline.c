/* SPDX-License-Identifier: MIT */
/* Indexed binary min-heap of timers: the baseline the wheel is measured by. */
#include <errno.h>
#include <stdlib.h>

#include "heap-timer.h"

int
rctx_heap_init(struct rctx_heap *h, size_t cap, int64_t now)
{
	h->n = 0;
	h->cap = cap > 0 ? cap : 16;
	h->now = now;
	h->v = malloc(h->cap * sizeof(*h->v));
	return h->v != NULL ? 0 : -ENOMEM;
}

void
rctx_heap_fini(struct rctx_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

static inline void
rctx_heap_put(struct rctx_heap *h, size_t i, struct rctx_heap_ent e)
{
	h->v[i] = e;
	e.t->idx = i;
}

/* Move e up from hole i; returns where it went. */
static size_t
rctx_heap_up(struct rctx_heap *h, size_t i, struct rctx_heap_ent e)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (h->v[p].key <= e.key)
			break;
		rctx_heap_put(h, i, h->v[p]);
		i = p;
	}
	rctx_heap_put(h, i, e);
	return i;
}

/* Move e down from hole i. */
static void
rctx_heap_down(struct rctx_heap *h, size_t i, struct rctx_heap_ent e)
{
	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].key < h->v[c].key)
			c++;
		if (e.key <= h->v[c].key)
			break;
		rctx_heap_put(h, i, h->v[c]);
		i = c;
	}
	rctx_heap_put(h, i, e);
}

int
rctx_heap_add(struct rctx_heap *h, struct rctx_heap_timer *t, int64_t expires)
{
	struct rctx_heap_ent e = { expires, t };

	if (h->n == h->cap) {
		struct rctx_heap_ent *v =
		    realloc(h->v, 2 * h->cap * sizeof(*h->v));

		if (v == NULL)
			return -ENOMEM;
		h->v = v;
		h->cap *= 2;
	}
	t->expires = expires;
	rctx_heap_up(h, h->n++, e);
	return 0;
}

/* Fill hole i with the last entry. */
static void
rctx_heap_remove_at(struct rctx_heap *h, size_t i)
{
	struct rctx_heap_ent last;

	h->v[i].t->idx = RCTX_HEAP_NONE;
	if (i == --h->n)
		return;
	last = h->v[h->n];
	if (rctx_heap_up(h, i, last) == i)
		rctx_heap_down(h, i, last);
}

void
rctx_heap_del(struct rctx_heap *h, struct rctx_heap_timer *t)
{
	if (t->idx != RCTX_HEAP_NONE)
		rctx_heap_remove_at(h, t->idx);
}

int64_t
rctx_heap_next(const struct rctx_heap *h)
{
	return h->n > 0 ? h->v[0].key : INT64_MAX;
}

struct rctx_heap_timer *
rctx_heap_advance(struct rctx_heap *h, int64_t now, size_t *n)
{
	struct rctx_heap_timer *head = NULL, **tail = &head;
	size_t cnt = 0;

	if (now > h->now)
		h->now = now;
	while (h->n > 0 && h->v[0].key <= h->now) {
		struct rctx_heap_timer *t = h->v[0].t;

		rctx_heap_remove_at(h, 0);
		*tail = t;
		tail = &t->next;
		cnt++;
	}
	*tail = NULL;
	*n = cnt;
	return head;
}

bool
rctx_heap_check(const struct rctx_heap *h)
{
	for (size_t i = 0; i < h->n; i++) {
		if (h->v[i].t->idx != i || h->v[i].t->expires != h->v[i].key)
			return false;
		if (i > 0 && h->v[(i - 1) / 2].key > h->v[i].key)
			return false;
	}
	return true;
}
