/* SPDX-License-Identifier: MIT */
/* The near run: timers due within a tick or two, sorted by exact deadline. */

/*
 * The wheel (wheel.c) files a timer by tick, so an owner that slept until
 * a slot boundary would fire up to a tick late. Instead, the owner
 * (twheel.c) takes a slot out of the wheel about a tick before it comes
 * due and merges its timers here; the run is sorted by exact deadline, so
 * its head is the time to sleep until, to the nanosecond. Only timers
 * that come within a tick or two of firing pay for the sort: the ~99%
 * that are cancelled earlier never leave the wheel.
 *
 * A slot taken late (the owner was preempted, or busy) holds timers that
 * are already due: sorting them would only delay them, and a sort of a
 * few hundred thousand nodes scattered in memory takes tens of
 * milliseconds, during which more come due, so an owner that fell behind
 * stayed behind (1M timers fired seconds late). Those go on the ready
 * list unsorted and fire at the next pop, in O(n).
 *
 * Invariants
 *  I1. head..tail is in ascending expires order; count is the length of
 *      the run plus that of the ready list.
 *  I2. Every node in the run or on the ready list has level
 *      RCTX_NEAR_LEVEL and pprev pointing at the link that points to it
 *      (head, ready, or the previous node's next); a node out of both has
 *      pprev NULL.
 *  I3. ready_min <= the expires of every node on the ready list.
 *
 * No atomics, no ordering: one owner thread (twheel.c's owner rule).
 */

#include "near.h"

/* Merge two ascending ->next lists (pprev left for the caller). */
static struct rctx_wheel_timer *
rctx_near_join(struct rctx_wheel_timer *a, struct rctx_wheel_timer *b)
{
	struct rctx_wheel_timer *head = NULL, **tail = &head;

	while (a && b) {
		if (b->expires < a->expires) {
			*tail = b;
			b = b->next;
		} else {
			*tail = a;
			a = a->next;
		}
		tail = &(*tail)->next;
	}
	*tail = a ? a : b;
	return head;
}

/* Bottom-up merge sort of a ->next list: bin i holds 2^i sorted nodes. */
static struct rctx_wheel_timer *
rctx_near_sort(struct rctx_wheel_timer *list)
{
	struct rctx_wheel_timer *bin[64] = { NULL }, *t, *carry;
	unsigned i, top = 0;

	while (list) {
		t = list;
		list = list->next;
		t->next = NULL;
		carry = t;
		for (i = 0; bin[i]; i++) {
			carry = rctx_near_join(bin[i], carry);
			bin[i] = NULL;
		}
		bin[i] = carry;
		if (i >= top)
			top = i + 1;
	}
	carry = NULL;
	for (i = 0; i < top; i++)
		if (bin[i])
			carry = rctx_near_join(bin[i], carry);
	return carry;
}

/* Push t on the ready list (I2, I3). */
static void
rctx_near_ready(struct rctx_near *r, struct rctx_wheel_timer *t)
{
	t->next = r->ready;
	if (t->next)
		t->next->pprev = &t->next;
	r->ready = t;
	t->pprev = &r->ready;
	t->level = RCTX_NEAR_LEVEL;
	if (t->expires < r->ready_min)
		r->ready_min = t->expires;
}

void
rctx_near_merge(struct rctx_near *r, struct rctx_wheel_timer *list, size_t n,
		rctx_time_t now)
{
	struct rctx_wheel_timer **pp, *t, *ahead = NULL, **at = &ahead;

	r->count += n;
	for (t = list; t; t = list) {
		list = t->next;
		if (t->expires <= now) {
			rctx_near_ready(r, t);
		} else {
			*at = t;
			at = &t->next;
		}
	}
	*at = NULL;
	if (!ahead)
		return;
	list = rctx_near_sort(ahead);
	/* Skip the prefix of the run that comes before the batch (I1): its
	 * links stay right. */
	pp = &r->head;
	while (*pp && (*pp)->expires <= list->expires)
		pp = &(*pp)->next;
	*pp = rctx_near_join(*pp, list);
	for (t = *pp; t; t = t->next) {
		t->pprev = pp; /* I2 */
		t->level = RCTX_NEAR_LEVEL;
		pp = &t->next;
	}
}

void
rctx_near_del(struct rctx_near *r, struct rctx_wheel_timer *t)
{
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->pprev = NULL;
	t->next = NULL;
	r->count--;
}

/* The run's part of rctx_near_pop. */
static struct rctx_wheel_timer *
rctx_near_pop_run(struct rctx_near *r, rctx_time_t now)
{
	struct rctx_wheel_timer *head = r->head, *t, **pp = &r->head;

	for (t = head; t && t->expires <= now; t = t->next) {
		t->pprev = NULL;
		pp = &t->next;
		r->count--;
	}
	if (t == head)
		return NULL;
	r->head = t;
	if (t)
		t->pprev = &r->head;
	*pp = NULL;
	return head;
}

struct rctx_wheel_timer *
rctx_near_pop(struct rctx_near *r, rctx_time_t now)
{
	struct rctx_wheel_timer *out = NULL, **tail = &out, *t, *next;
	rctx_time_t min = INT64_MAX;

	if (r->ready && r->ready_min <= now) {
		/* Due ones leave in any order; the rest stay (a caller's
		 * clock may lag the one they were merged at), and ready_min
		 * becomes exact again (I3). */
		for (t = r->ready; t; t = next) {
			next = t->next;
			if (t->expires > now) {
				if (t->expires < min)
					min = t->expires;
				continue;
			}
			*t->pprev = next;
			if (next)
				next->pprev = t->pprev;
			t->pprev = NULL;
			*tail = t;
			tail = &t->next;
			r->count--;
		}
		r->ready_min = min;
	}
	*tail = rctx_near_pop_run(r, now);
	return out;
}

struct rctx_wheel_timer *
rctx_near_drain(struct rctx_near *r)
{
	struct rctx_wheel_timer *head = r->ready, *t, **tail = &head;

	for (t = r->ready; t; t = t->next) {
		t->pprev = NULL;
		tail = &t->next;
	}
	*tail = r->head;
	for (t = r->head; t; t = t->next)
		t->pprev = NULL;
	rctx_near_init(r);
	return head;
}
