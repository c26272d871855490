/* SPDX-License-Identifier: MIT */
/* Children set: unit tests, a randomized model test and a concurrent stress. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "children.h"
#include "fault.h"
#include "util.h"

/*
 * Entries are fake pointers: multiples of 16 from a base that no real
 * allocation is needed for (the set never dereferences an entry). Tagged
 * entries (after-func registrations) set bit 0.
 */
#define ENTRY_BASE ((uintptr_t)0x7f0000100000ull)

/* The set's newest table, NULL if it has none (or no block yet). */
static struct rctx_ctable *
set_top(struct rctx_cset *s)
{
	struct rctx_ext *x = atomic_load(&s->x);

	return x ? atomic_load(&x->top) : NULL;
}

static uintptr_t
entry(size_t i)
{
	return ENTRY_BASE + (uintptr_t)i * 16;
}

static uintptr_t
tagged(size_t i)
{
	return entry(i) | RCTX_CSET_TAG_AFTER;
}

static void
checked(struct rctx_cset *s)
{
	const char *why = NULL;

	if (!rctx_cset_check(s, &why))
		fail_msg("cset check failed: %s", why);
}

/* foreach collectors */
struct seen {
	uintptr_t *e;
	_Atomic uintptr_t **slot;
	size_t n, cap;
};

static void
seen_one(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	struct seen *s = arg;

	assert_true(s->n < s->cap);
	s->e[s->n] = e;
	s->slot[s->n] = slot;
	s->n++;
}

static struct seen
seen_new(size_t cap)
{
	struct seen s = { .cap = cap };

	s.e = calloc(cap, sizeof(*s.e));
	s.slot = calloc(cap, sizeof(*s.slot));
	assert_non_null(s.e);
	assert_non_null(s.slot);
	return s;
}

static void
seen_free(struct seen *s)
{
	free(s->e);
	free(s->slot);
}

static ptrdiff_t
seen_find(const struct seen *s, uintptr_t e)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->e[i] == e)
			return (ptrdiff_t)i;
	return -1;
}

static void
test_empty(void **state)
{
	struct rctx_cset s;

	(void)state;
	rctx_cset_init(&s);
	checked(&s);
	assert_int_equal(rctx_cset_count(&s), 0);
	assert_int_equal(rctx_cset_capacity(&s), RCTX_CSET_INLINE);
	rctx_cset_fini(&s);
	assert_int_equal(rctx_cset_capacity(&s), RCTX_CSET_INLINE);
}

static void
test_inline_first(void **state)
{
	struct rctx_cset s;
	_Atomic uintptr_t *slot[RCTX_CSET_INLINE];

	(void)state;
	rctx_cset_init(&s);
	for (int i = 0; i < RCTX_CSET_INLINE; i++) {
		slot[i] = rctx_cset_insert(&s, entry((size_t)i));
		assert_non_null(slot[i]);
		/* the first entries take the inline slots: no allocation */
		assert_true(slot[i] >= &s.inl[0] &&
			    slot[i] < &s.inl[RCTX_CSET_INLINE]);
		assert_int_equal(atomic_load(slot[i]), entry((size_t)i));
		assert_null(set_top(&s));
		assert_int_equal(rctx_cset_capacity(&s), RCTX_CSET_INLINE);
		assert_int_equal(rctx_cset_count(&s), (size_t)i + 1);
		checked(&s);
	}
	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(slot[i], slot[j]);
	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		assert_true(rctx_cset_remove(slot[i], entry((size_t)i)));
	assert_int_equal(rctx_cset_count(&s), 0);
	checked(&s);
	rctx_cset_fini(&s);
}

/* Grow far past the inline slots; every earlier slot keeps its entry. */
static void
test_growth_stable_slots(void **state)
{
	enum { N = 5000 };
	struct rctx_cset s;
	_Atomic uintptr_t **slot = calloc(N, sizeof(*slot));
	size_t cap_before = RCTX_CSET_INLINE, growths = 0;

	(void)state;
	assert_non_null(slot);
	rctx_cset_init(&s);
	for (size_t i = 0; i < N; i++) {
		slot[i] = rctx_cset_insert(&s, entry(i));
		assert_non_null(slot[i]);
		assert_int_equal(atomic_load(slot[i]), entry(i));
		size_t cap = rctx_cset_capacity(&s);

		assert_true(cap >= cap_before);
		if (cap != cap_before) {
			growths++;
			/* a growth never moves an existing entry */
			for (size_t j = 0; j < i; j++)
				assert_int_equal(atomic_load(slot[j]),
						 entry(j));
			checked(&s);
		}
		cap_before = cap;
	}
	assert_true(growths >= 2);
	assert_true(rctx_cset_capacity(&s) >= N);
	/* tables double: capacity is inline plus 16 * (2^k - 1) */
	size_t t = rctx_cset_capacity(&s) - RCTX_CSET_INLINE;
	assert_int_equal(t % 16, 0);
	assert_int_equal((t / 16 + 1) & (t / 16), 0);
	assert_int_equal(rctx_cset_count(&s), N);
	checked(&s);

	/* foreach hands out the very slots insert returned */
	struct seen sn = seen_new(N);

	rctx_cset_foreach(&s, seen_one, &sn);
	assert_int_equal(sn.n, N);
	for (size_t k = 0; k < sn.n; k++) {
		size_t i = (size_t)(sn.e[k] - ENTRY_BASE) / 16;

		assert_true(i < N);
		assert_ptr_equal(sn.slot[k], slot[i]);
	}
	seen_free(&sn);

	for (size_t i = 0; i < N; i++)
		assert_true(rctx_cset_remove(slot[i], entry(i)));
	assert_int_equal(rctx_cset_count(&s), 0);
	checked(&s);
	rctx_cset_fini(&s);
	assert_null(set_top(&s));
	free(slot);
}

static void
test_remove_by_slot(void **state)
{
	struct rctx_cset s;
	_Atomic uintptr_t *slot[40];

	(void)state;
	rctx_cset_init(&s);
	for (size_t i = 0; i < 40; i++)
		slot[i] = rctx_cset_insert(&s, entry(i));
	/* the wrong entry at a slot: no change */
	assert_false(rctx_cset_remove(slot[3], entry(4)));
	assert_false(rctx_cset_remove(slot[30], tagged(30)));
	assert_int_equal(rctx_cset_count(&s), 40);
	/* the right one: removed exactly once */
	assert_true(rctx_cset_remove(slot[3], entry(3)));
	assert_false(rctx_cset_remove(slot[3], entry(3)));
	assert_true(rctx_cset_remove(slot[30], entry(30)));
	assert_false(rctx_cset_remove(slot[30], entry(30)));
	assert_int_equal(atomic_load(slot[3]), 0);
	assert_int_equal(rctx_cset_count(&s), 38);
	checked(&s);

	struct seen sn = seen_new(40);

	rctx_cset_foreach(&s, seen_one, &sn);
	assert_int_equal(sn.n, 38);
	assert_true(seen_find(&sn, entry(3)) < 0);
	assert_true(seen_find(&sn, entry(30)) < 0);
	for (size_t i = 0; i < 40; i++)
		if (i != 3 && i != 30)
			assert_true(seen_find(&sn, entry(i)) >= 0);
	seen_free(&sn);
	for (size_t i = 0; i < 40; i++)
		if (i != 3 && i != 30)
			assert_true(rctx_cset_remove(slot[i], entry(i)));
	rctx_cset_fini(&s);
}

/* A freed slot is used again: churn does not grow the set. */
static void
test_reinsert_reuses(void **state)
{
	struct rctx_cset s;
	_Atomic uintptr_t *slot[RCTX_CSET_INLINE], *again;

	(void)state;
	rctx_cset_init(&s);
	for (size_t i = 0; i < RCTX_CSET_INLINE; i++)
		slot[i] = rctx_cset_insert(&s, entry(i));
	assert_true(rctx_cset_remove(slot[1], entry(1)));
	again = rctx_cset_insert(&s, entry(100));
	assert_ptr_equal(again, slot[1]); /* the free inline slot */
	assert_null(set_top(&s));
	assert_true(rctx_cset_remove(again, entry(100)));

	/* Past the inline slots: a set holding 100 entries with one more
	 * coming and going (the same one, then fresh ones). */
	_Atomic uintptr_t *big[100];

	for (size_t i = 0; i < 100; i++)
		big[i] = rctx_cset_insert(&s, entry(1000 + i));
	size_t cap;
	_Atomic uintptr_t *first = rctx_cset_insert(&s, entry(5000));

	assert_non_null(first);
	cap = rctx_cset_capacity(&s);
	for (int r = 0; r < 1000; r++) {
		assert_true(rctx_cset_remove(first, entry(5000)));
		again = rctx_cset_insert(&s, entry(5000));
		assert_ptr_equal(again, first);
		assert_int_equal(rctx_cset_capacity(&s), cap);
	}
	assert_true(rctx_cset_remove(first, entry(5000)));
	for (size_t r = 0; r < 20000; r++) {
		_Atomic uintptr_t *p = rctx_cset_insert(&s, entry(10000 + r));

		assert_non_null(p);
		assert_true(rctx_cset_remove(p, entry(10000 + r)));
	}
	/* 101 live at most: the set may have grown a little, not without
	 * bound (a table with 16-slot probes at 101/1024 load is plenty) */
	assert_true(rctx_cset_capacity(&s) <= RCTX_CSET_INLINE + 16 * 127);
	assert_int_equal(rctx_cset_count(&s), 100 + RCTX_CSET_INLINE - 1);
	checked(&s);
	/*
	 * All of the set emptied, then refilled, again and again. Inserts
	 * probe only the newest table, so a refill may add a table or two
	 * (the free slots of older tables are not reused), but the newest
	 * table soon holds everything and the growth stops.
	 */
	for (size_t i = 0; i < RCTX_CSET_INLINE; i++)
		if (i != 1)
			assert_true(rctx_cset_remove(slot[i], entry(i)));
	for (size_t i = 0; i < 100; i++)
		assert_true(rctx_cset_remove(big[i], entry(1000 + i)));
	size_t caps[12];

	for (int r = 0; r < 12; r++) {
		for (size_t i = 0; i < 100; i++)
			big[i] = rctx_cset_insert(&s, entry(1000 + i));
		caps[r] = rctx_cset_capacity(&s);
		for (size_t i = 0; i < 100; i++)
			assert_true(rctx_cset_remove(big[i], entry(1000 + i)));
		checked(&s);
	}
	assert_true(caps[11] <= RCTX_CSET_INLINE + 16 * 63); /* top <= 512 */
	for (int r = 4; r < 12; r++)
		assert_int_equal(caps[r], caps[3]);
	rctx_cset_fini(&s);
}

/* Tagged (after-func) entries sit beside plain ones with the same base. */
static void
test_tagged(void **state)
{
	struct rctx_cset s;
	_Atomic uintptr_t *ps[10], *pt[10];

	(void)state;
	rctx_cset_init(&s);
	for (size_t i = 0; i < 10; i++) {
		ps[i] = rctx_cset_insert(&s, entry(i));
		pt[i] = rctx_cset_insert(&s, tagged(i));
		assert_ptr_not_equal(ps[i], pt[i]);
	}
	assert_int_equal(rctx_cset_count(&s), 20);
	checked(&s);

	struct seen sn = seen_new(20);
	size_t ntag = 0;

	rctx_cset_foreach(&s, seen_one, &sn);
	for (size_t k = 0; k < sn.n; k++)
		ntag += (sn.e[k] & RCTX_CSET_TAG_AFTER) != 0;
	assert_int_equal(ntag, 10);
	for (size_t i = 0; i < 10; i++) {
		ptrdiff_t a = seen_find(&sn, entry(i));
		ptrdiff_t b = seen_find(&sn, tagged(i));

		assert_true(a >= 0 && b >= 0);
		assert_ptr_equal(sn.slot[a], ps[i]);
		assert_ptr_equal(sn.slot[b], pt[i]);
	}
	seen_free(&sn);

	/* the untagged value does not remove the tagged entry, nor back */
	assert_false(rctx_cset_remove(pt[5], entry(5)));
	assert_false(rctx_cset_remove(ps[5], tagged(5)));
	for (size_t i = 0; i < 10; i++) {
		assert_true(rctx_cset_remove(pt[i], tagged(i)));
		assert_int_equal(atomic_load(ps[i]), entry(i));
	}
	assert_int_equal(rctx_cset_count(&s), 10);
	for (size_t i = 0; i < 10; i++)
		assert_true(rctx_cset_remove(ps[i], entry(i)));
	checked(&s);
	rctx_cset_fini(&s);
}

/* The callback may remove what it is handed (the cascade does). */
static void
remove_it(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	size_t *n = arg;

	assert_true(rctx_cset_remove(slot, e));
	(*n)++;
}

static void
test_foreach_removes(void **state)
{
	struct rctx_cset s;
	size_t n = 0;

	(void)state;
	rctx_cset_init(&s);
	for (size_t i = 0; i < 300; i++)
		assert_non_null(
		    rctx_cset_insert(&s, i % 3 ? entry(i) : tagged(i)));
	rctx_cset_foreach(&s, remove_it, &n);
	assert_int_equal(n, 300);
	assert_int_equal(rctx_cset_count(&s), 0);
	checked(&s);
	/* capacity stays: tables live until destroy */
	assert_true(rctx_cset_capacity(&s) >= 300);
	rctx_cset_fini(&s);
	assert_int_equal(rctx_cset_capacity(&s), RCTX_CSET_INLINE);
	/* a destroyed set is empty and usable again */
	for (size_t i = 0; i < 10; i++)
		assert_non_null(rctx_cset_insert(&s, entry(i)));
	assert_int_equal(rctx_cset_count(&s), 10);
	n = 0;
	rctx_cset_foreach(&s, remove_it, &n);
	assert_int_equal(n, 10);
	rctx_cset_fini(&s);
}

#ifdef RCTX_FAULT_INJECTION
/* A table that cannot be allocated: insert says so and changes nothing. */
static void
test_insert_enomem(void **state)
{
	struct rctx_cset s;
	_Atomic uintptr_t *slot[RCTX_CSET_INLINE + 1];

	(void)state;
	rctx_cset_init(&s);
	for (size_t i = 0; i < RCTX_CSET_INLINE; i++)
		slot[i] = rctx_cset_insert(&s, entry(i));
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	assert_null(rctx_cset_insert(&s, entry(99)));
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	assert_null(set_top(&s));
	assert_int_equal(rctx_cset_count(&s), RCTX_CSET_INLINE);
	checked(&s);
	slot[RCTX_CSET_INLINE] = rctx_cset_insert(&s, entry(99));
	assert_non_null(slot[RCTX_CSET_INLINE]);
	assert_int_equal(rctx_cset_count(&s), RCTX_CSET_INLINE + 1);
	for (size_t i = 0; i < RCTX_CSET_INLINE; i++)
		assert_true(rctx_cset_remove(slot[i], entry(i)));
	assert_true(rctx_cset_remove(slot[RCTX_CSET_INLINE], entry(99)));
	checked(&s);
	rctx_cset_fini(&s);
}
#endif

/*
 * Randomized model test: a pool of entries, each in or out of the set; the
 * model is the remembered slot per entry (NULL when out). Phases change the
 * bias so the set grows large, shrinks and churns. After every step the
 * checker runs and the count matches; now and then foreach must produce
 * exactly the model.
 */
static void
model_compare(struct rctx_cset *s, _Atomic uintptr_t **slot, size_t pool)
{
	struct seen sn = seen_new(pool);
	size_t live = 0;

	rctx_cset_foreach(s, seen_one, &sn);
	for (size_t k = 0; k < sn.n; k++) {
		uintptr_t e = sn.e[k] & ~RCTX_CSET_TAG_AFTER;
		size_t i = (size_t)(e - ENTRY_BASE) / 16;

		assert_true(e >= ENTRY_BASE && i < pool);
		assert_int_equal(sn.e[k], i & 1 ? tagged(i) : entry(i));
		assert_ptr_equal(sn.slot[k], slot[i]);
	}
	for (size_t i = 0; i < pool; i++)
		live += slot[i] != NULL;
	assert_int_equal(sn.n, live);
	seen_free(&sn);
}

static void
test_model(void **state)
{
	enum { POOL = 2048 };
	static const unsigned bias[] = { 90, 50, 10, 70, 30, 50, 5, 95, 50 };
	size_t steps = 6000 * RCTX_STRESS_SCALE;
	_Atomic uintptr_t **slot = calloc(POOL, sizeof(*slot));
	uint64_t seed = rnd_seed(0);
	struct rctx_cset s;
	size_t live = 0;

	(void)state;
	assert_non_null(slot);
	rctx_cset_init(&s);
	for (size_t ph = 0; ph < sizeof(bias) / sizeof(bias[0]); ph++) {
		for (size_t k = 0; k < steps; k++) {
			size_t i = rnd(&seed) % POOL;
			uintptr_t e = i & 1 ? tagged(i) : entry(i);
			bool want_in = rnd(&seed) % 100 < bias[ph];

			if (slot[i] == NULL && want_in) {
				slot[i] = rctx_cset_insert(&s, e);
				assert_non_null(slot[i]);
				assert_int_equal(atomic_load(slot[i]), e);
				live++;
			} else if (slot[i] != NULL && !want_in) {
				assert_true(rctx_cset_remove(slot[i], e));
				/* a second removal finds nothing */
				assert_false(rctx_cset_remove(slot[i], e));
				slot[i] = NULL;
				live--;
			}
			checked(&s);
			assert_int_equal(rctx_cset_count(&s), live);
			if (k % 512 == 0)
				model_compare(&s, slot, POOL);
		}
		model_compare(&s, slot, POOL);
	}
	/* every remembered slot still holds its entry, then drain */
	for (size_t i = 0; i < POOL; i++) {
		if (slot[i] == NULL)
			continue;
		uintptr_t e = i & 1 ? tagged(i) : entry(i);

		assert_int_equal(atomic_load(slot[i]), e);
		assert_true(rctx_cset_remove(slot[i], e));
	}
	assert_int_equal(rctx_cset_count(&s), 0);
	checked(&s);
	rctx_cset_fini(&s);
	free(slot);
}

/*
 * Concurrent stress: WORKERS threads insert and remove their own entries
 * on one set while a walker runs foreach. Each worker also keeps PINNED
 * entries in the set throughout: since slots never move, every walk must
 * see each pinned entry exactly once, however the set grows around it.
 */
#define WORKERS	   3
#define PER_WORKER 600
#define PINNED	   8

static struct rctx_cset stress_set;
static _Atomic bool stress_stop;
static struct gate stress_start;

struct worker {
	size_t id;
	_Atomic uintptr_t *slot[PER_WORKER];
	size_t ops;
	size_t failures; /* checked on the main thread */
};

static uintptr_t
worker_entry(size_t w, size_t i)
{
	size_t n = w * PER_WORKER + i;

	return i % 5 == 4 ? tagged(n) : entry(n);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = rnd_seed(1 + w->id);

	for (size_t i = 0; i < PINNED; i++) {
		w->slot[i] =
		    rctx_cset_insert(&stress_set, worker_entry(w->id, i));
		if (w->slot[i] == NULL)
			w->failures++;
	}
	gate_pass(&stress_start);
	for (size_t k = 0; k < w->ops; k++) {
		size_t i = PINNED + rnd(&seed) % (PER_WORKER - PINNED);
		uintptr_t e = worker_entry(w->id, i);

		if (w->slot[i] == NULL) {
			w->slot[i] = rctx_cset_insert(&stress_set, e);
			if (w->slot[i] == NULL)
				w->failures++;
		} else {
			if (!rctx_cset_remove(w->slot[i], e))
				w->failures++;
			w->slot[i] = NULL;
		}
	}
	return NULL;
}

struct walk_stats {
	size_t walks;
	size_t bad;	     /* entries that belong to no worker */
	size_t pinned_wrong; /* walks that saw a pinned entry != once */
	unsigned char hits[WORKERS * PER_WORKER];
};

static void
walk_one(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	struct walk_stats *ws = arg;
	uintptr_t p = e & ~RCTX_CSET_TAG_AFTER;
	size_t n = (size_t)(p - ENTRY_BASE) / 16;

	(void)slot;
	if (p < ENTRY_BASE || (p - ENTRY_BASE) % 16 ||
	    n >= WORKERS * PER_WORKER ||
	    e != worker_entry(n / PER_WORKER, n % PER_WORKER)) {
		ws->bad++;
		return;
	}
	if (ws->hits[n] < 255)
		ws->hits[n]++;
}

static void *
walker_main(void *arg)
{
	struct walk_stats *ws = arg;

	gate_pass(&stress_start);
	/* relaxed: a stop flag; the join publishes the results. At least
	 * a few walks even if the workers finish before this thread runs
	 * (a loaded machine): the check must never depend on speed. */
	while (ws->walks < 3 ||
	       !atomic_load_explicit(&stress_stop, memory_order_relaxed)) {
		memset(ws->hits, 0, sizeof(ws->hits));
		rctx_cset_foreach(&stress_set, walk_one, ws);
		for (size_t w = 0; w < WORKERS; w++)
			for (size_t i = 0; i < PINNED; i++)
				if (ws->hits[w * PER_WORKER + i] != 1)
					ws->pinned_wrong++;
		/* (an entry that comes and goes may be seen twice in one
		 * walk: removed from a slot already walked, re-inserted in
		 * one not yet walked; so only pinned ones are counted) */
		ws->walks++;
	}
	return NULL;
}

static void
test_concurrent(void **state)
{
	static struct worker w[WORKERS];
	static struct walk_stats ws;
	struct tgroup g;
	pthread_t tk;

	(void)state;
	rctx_cset_init(&stress_set);
	atomic_store(&stress_stop, false);
	gate_init(&stress_start, WORKERS + 1);
	memset(&ws, 0, sizeof(ws));
	for (size_t i = 0; i < WORKERS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		w[i].ops = 300000 * RCTX_STRESS_SCALE;
	}
	tg_start(&g, WORKERS, worker_main, w, sizeof(w[0]));
	assert_int_equal(pthread_create(&tk, NULL, walker_main, &ws), 0);
	tg_join(&g, NULL);
	atomic_store(&stress_stop, true);
	assert_int_equal(pthread_join(tk, NULL), 0);

	assert_true(ws.walks >= 1);
	assert_int_equal(ws.bad, 0);
	assert_int_equal(ws.pinned_wrong, 0);
	for (size_t i = 0; i < WORKERS; i++)
		assert_int_equal(w[i].failures, 0);
	checked(&stress_set);

	/* The final contents are exactly the workers' models. */
	size_t live = 0;
	struct seen sn = seen_new(WORKERS * PER_WORKER);

	rctx_cset_foreach(&stress_set, seen_one, &sn);
	for (size_t i = 0; i < WORKERS; i++) {
		for (size_t j = 0; j < PER_WORKER; j++) {
			uintptr_t e = worker_entry(i, j);
			ptrdiff_t at = seen_find(&sn, e);

			if (w[i].slot[j] == NULL) {
				assert_true(at < 0);
				continue;
			}
			live++;
			assert_true(at >= 0);
			assert_ptr_equal(sn.slot[at], w[i].slot[j]);
			assert_int_equal(atomic_load(w[i].slot[j]), e);
		}
	}
	assert_int_equal(sn.n, live);
	assert_int_equal(rctx_cset_count(&stress_set), live);
	seen_free(&sn);
	for (size_t i = 0; i < WORKERS; i++)
		for (size_t j = 0; j < PER_WORKER; j++)
			if (w[i].slot[j] != NULL)
				assert_true(rctx_cset_remove(
				    w[i].slot[j], worker_entry(i, j)));
	assert_int_equal(rctx_cset_count(&stress_set), 0);
	checked(&stress_set);
	rctx_cset_fini(&stress_set);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_inline_first),
		cmocka_unit_test(test_growth_stable_slots),
		cmocka_unit_test(test_remove_by_slot),
		cmocka_unit_test(test_reinsert_reuses),
		cmocka_unit_test(test_tagged),
		cmocka_unit_test(test_foreach_removes),
#ifdef RCTX_FAULT_INJECTION
		cmocka_unit_test(test_insert_enomem),
#endif
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_concurrent),
	};

	return RUN_TESTS(tests);
}
