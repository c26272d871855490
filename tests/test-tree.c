/* SPDX-License-Identifier: MIT */
/* Tree, SEMANTICS 1-4, 19, 28: roots, derive, without_cancel, lifetime. */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc.h"
#include "children.h"
#include "fault.h"
#include "internal.h"
#include "rctx.h"
#include "util.h"

static int key_a, key_b;
static int val_1, val_2;

#define HOUR (3600 * RCTX_SEC)

/* ------------------------------------------------ roots and derivation */

/*
 * SEMANTICS 1: "rctx_background()/rctx_todo(): distinct, never done, err 0,
 * cause 0, no deadline, no values, no fd (-EOPNOTSUPP), wait with a timeout
 * returns 0 after it; retain/release/cancel on them change nothing
 * (rctx_cancel gives -EINVAL)."
 */
static void
test_s01_roots(void **state)
{
	rctx_t *roots[] = { rctx_background(), rctx_todo() };

	(void)state;
	assert_non_null(roots[0]);
	assert_non_null(roots[1]);
	assert_ptr_not_equal(roots[0], roots[1]);
	for (int i = 0; i < 2; i++) {
		rctx_t *r = roots[i];
		rctx_time_t d = 123, t0;

		assert_int_equal(rctx_err(r), 0);
		assert_int_equal(rctx_cause(r), 0);
		assert_false(rctx_done(r));
		assert_false(rctx_deadline(r, &d));
		assert_int_equal(d, 123);
		assert_null(rctx_value(r, &key_a));
		assert_int_equal(rctx_fd(r), -EOPNOTSUPP);
		t0 = rctx_now();
		assert_int_equal(rctx_wait(r, 2 * RCTX_MSEC), 0);
		/* returns only after the timeout (never early) */
		assert_true(rctx_now() - t0 >= 2 * RCTX_MSEC);
		assert_int_equal(rctx_wait(r, 0), 0);
		assert_ptr_equal(rctx_retain(r), r);
		rctx_release(r);
		rctx_release(r);
		assert_int_equal(rctx_cancel(r), -EINVAL);
		assert_int_equal(rctx_cancel_cause(r, 77), -EINVAL);
		assert_false(rctx_done(r));
		assert_int_equal(rctx_cause(r), 0);
		assert_ptr_equal(r, i ? rctx_todo() : rctx_background());
	}
	/* Children of the roots still work after all that. */
	rctx_t *c = rctx_with_cancel(rctx_todo());
	assert_non_null(c);
	assert_false(rctx_done(c));
	rctx_release(c);
}

/* Contexts kept alive so that the allocator's caches stay empty. */
struct keep {
	rctx_t **v;
	size_t n, cap;
};

static void
keep_push(struct keep *k, rctx_t *c)
{
	if (k->n == k->cap) {
		k->cap = k->cap ? 2 * k->cap : 256;
		k->v = realloc(k->v, k->cap * sizeof(*k->v));
		assert_non_null(k->v);
	}
	k->v[k->n++] = c;
}

static void
keep_release(struct keep *k)
{
	for (size_t i = 0; i < k->n; i++)
		rctx_release(k->v[i]);
	free(k->v);
	memset(k, 0, sizeof(*k));
}

enum ctor_kind {
	CTOR_CANCEL,
	CTOR_DEADLINE,
	CTOR_TIMEOUT_CAUSE,
	CTOR_VALUE,
	CTOR_WITHOUT,
	CTOR_NKINDS
};

static rctx_t *
ctor(enum ctor_kind k, rctx_t *parent)
{
	switch (k) {
	case CTOR_CANCEL:
		return rctx_with_cancel(parent);
	case CTOR_DEADLINE:
		return rctx_with_deadline(parent, rctx_now() + HOUR);
	case CTOR_TIMEOUT_CAUSE:
		return rctx_with_timeout_cause(parent, HOUR, 1234);
	case CTOR_VALUE:
		return rctx_with_value(parent, &key_a, &val_1);
	case CTOR_WITHOUT:
		return rctx_without_cancel(parent);
	default:
		return NULL;
	}
}

/* Allocate contexts of kind until the allocator had to call malloc: the
 * caches of its layout's size are empty, so the next context of that
 * kind comes from malloc again. */
static void
drain_cache(struct keep *k, enum ctor_kind kind)
{
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	while (rctx_fault_calls(RCTX_FAULT_MALLOC) == 0) {
		rctx_t *c = ctor(kind, rctx_background());

		assert_non_null(c);
		keep_push(k, c);
	}
}

/*
 * SEMANTICS 2: "Every constructor given a NULL parent returns NULL with
 * errno == EINVAL; rctx_with_value with a NULL key likewise. A constructor
 * that fails for lack of memory returns NULL/ENOMEM and leaves the parent
 * unchanged."
 */
static void
test_s02_null_parent_and_enomem(void **state)
{
	struct keep keep = { 0 };
	rctx_t *p, *kids[RCTX_CSET_INLINE];

	(void)state;
#define EXPECT_EINVAL(call)                                                    \
	do {                                                                   \
		errno = 0;                                                     \
		assert_null(call);                                             \
		assert_int_equal(errno, EINVAL);                               \
	} while (0)
	EXPECT_EINVAL(rctx_with_cancel(NULL));
	EXPECT_EINVAL(rctx_with_deadline(NULL, rctx_now() + HOUR));
	EXPECT_EINVAL(rctx_with_deadline_cause(NULL, rctx_now() + HOUR, 3));
	EXPECT_EINVAL(rctx_with_timeout(NULL, HOUR));
	EXPECT_EINVAL(rctx_with_timeout_cause(NULL, HOUR, 3));
	EXPECT_EINVAL(rctx_with_value(NULL, &key_a, &val_1));
	EXPECT_EINVAL(rctx_with_value(NULL, NULL, &val_1));
	EXPECT_EINVAL(rctx_with_value(rctx_background(), NULL, &val_1));
	EXPECT_EINVAL(rctx_without_cancel(NULL));
#undef EXPECT_EINVAL

	/*
	 * Out of memory. The parent has its inline slots full, so a
	 * cancelable child needs three mallocs (the context, the children
	 * set's extension block, then a table of the set). Make the 1st,
	 * then the 2nd, then the 3rd fail. The thread
	 * stays on one CPU: a deadline armed on a CPU whose wheel does not
	 * exist yet allocates it, and that allocation failing is tolerated
	 * (the deadline goes to another wheel), which would shift the count.
	 */
	cpu_set_t all, one;
	int cpu = sched_getcpu();

	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(cpu >= 0 ? cpu : 0, &one);
	(void)sched_setaffinity(0, sizeof(one), &one);
	reclaim();
	for (int k = 0; k < CTOR_NKINDS; k++) {
		int maxn = (k == CTOR_VALUE || k == CTOR_WITHOUT) ? 1 : 3;
		rctx_t *c;

		/* Warm up: the thread's optional records (a timer stage, its
		 * cache's exit hook) are claimed once, from malloc, and a
		 * failure there is tolerated; claim them before counting. */
		rctx_t *q = rctx_with_cancel(rctx_background());

		assert_non_null(q);
		c = ctor((enum ctor_kind)k, q);
		assert_non_null(c);
		rctx_release(c);
		assert_int_equal(rctx_cancel(q), 0);
		rctx_release(q);

		/* p from malloc: a reused context keeps its set's extension
		 * block, and would need one malloc fewer */
		drain_cache(&keep, CTOR_CANCEL);
		p = rctx_with_cancel(rctx_background());
		assert_non_null(p);
		for (int i = 0; i < RCTX_CSET_INLINE; i++) {
			kids[i] = rctx_with_cancel(p);
			assert_non_null(kids[i]);
		}
		for (int n = 1; n <= maxn; n++) {
			uint32_t refs = refs_of(p);
			size_t cnt = rctx_cset_count(&p->children);
			size_t cap = rctx_cset_capacity(&p->children);

			drain_cache(&keep, (enum ctor_kind)k);
			rctx_fault_arm(RCTX_FAULT_MALLOC, (unsigned long)n);
			errno = 0;
			c = ctor((enum ctor_kind)k, p);
			rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
			if (c != NULL)
				print_error(
				    "kind %d, malloc #%d failed but the "
				    "constructor succeeded\n",
				    k, n);
			assert_null(c);
			assert_int_equal(errno, ENOMEM);
			assert_int_equal(refs_of(p), refs);
			assert_int_equal(rctx_cset_count(&p->children), cnt);
			assert_int_equal(rctx_cset_capacity(&p->children), cap);
			assert_false(rctx_done(p));
		}
		/* Without injected faults the same constructor works. */
		c = ctor((enum ctor_kind)k, p);
		assert_non_null(c);
		/* The parent still cancels its children normally. */
		assert_int_equal(rctx_cancel_cause(p, 2), 0);
		assert_int_equal(rctx_err(c),
				 k == CTOR_WITHOUT ? 0 : ECANCELED);
		rctx_release(c);
		for (int i = 0; i < RCTX_CSET_INLINE; i++) {
			assert_int_equal(rctx_cause(kids[i]), 2);
			rctx_release(kids[i]);
		}
		rctx_release(p);
	}
	keep_release(&keep);
	(void)sched_setaffinity(0, sizeof(all), &all);
}

/* Builds a child of `kind` under parent through `layers` value layers. */
static rctx_t *
child_through_values(rctx_t *parent, enum ctor_kind kind, int layers)
{
	rctx_t *top = rctx_retain(parent), *c;

	for (int i = 0; i < layers; i++) {
		rctx_t *v = rctx_with_value(top, &key_b, &val_2);

		assert_non_null(v);
		rctx_release(top);
		top = v;
	}
	c = ctor(kind, top);
	assert_non_null(c);
	rctx_release(top);
	return c;
}

/*
 * SEMANTICS 3: "A child of a done context is born done with the parent's
 * err and cause — for every kind of child, through any number of value
 * layers."
 */
static void
test_s03_child_of_done_born_done(void **state)
{
	rctx_t *cp = rctx_with_cancel(rctx_background());
	rctx_t *tp = rctx_with_timeout_cause(rctx_background(), -1, 4242);

	(void)state;
	assert_int_equal(rctx_cancel_cause(cp, 31), 0);
	assert_int_equal(rctx_err(tp), ETIMEDOUT);
	for (int k = 0; k < CTOR_NKINDS; k++) {
		if (k == CTOR_WITHOUT)
			continue; /* never done by definition (19) */
		for (int layers = 0; layers <= 20; layers += 5) {
			rctx_t *c = child_through_values(cp, k, layers);

			assert_int_equal(rctx_err(c), ECANCELED);
			assert_int_equal(rctx_cause(c), 31);
			assert_true(rctx_done(c));
			if (k != CTOR_VALUE)
				assert_int_equal(rctx_cancel(c), -EALREADY);
			rctx_release(c);

			c = child_through_values(tp, k, layers);
			assert_int_equal(rctx_err(c), ETIMEDOUT);
			assert_int_equal(rctx_cause(c), 4242);
			rctx_release(c);
		}
	}
	/* Grandchildren of a done context, and a without_cancel child of a
	 * done context (never done, by behaviour 19). */
	rctx_t *c = rctx_with_cancel(cp);
	rctx_t *g = rctx_with_deadline(c, rctx_now() + HOUR);
	assert_int_equal(rctx_err(g), ECANCELED);
	assert_int_equal(rctx_cause(g), 31);
	rctx_t *w = rctx_without_cancel(c);
	assert_false(rctx_done(w));
	rctx_release(w);
	rctx_release(g);
	rctx_release(c);
	rctx_release(cp);
	rctx_release(tp);
}

/* Behaviour 4: a derive racing a cancel of the parent. */
enum { RACE4_KIDS = 1024 };

struct race4 {
	rctx_t *parent;
	rctx_t *vlayer; /* a value context under parent */
	rctx_t *child[RACE4_KIDS];
	int n;		 /* children derived this round */
	int live_before; /* derives that began with the parent still live */
	long round;
};

static void
race4_cancel(void *arg)
{
	struct race4 *r = arg;

	spin_delay(r->round * 37 % 2000);
	assert_int_equal(rctx_cancel_cause(r->parent, 100 + (int)r->round), 0);
}

/* Derive children until a few after the parent is seen done, so that the
 * cancel lands among the derives. */
static void
race4_derive(void *arg)
{
	struct race4 *r = arg;
	int after = 0;

	r->live_before = 0;
	for (r->n = 0; r->n < RACE4_KIDS && after < 4; r->n++) {
		rctx_t **c = &r->child[r->n];

		if (rctx_done(r->parent))
			after++;
		else
			r->live_before++;
		switch ((r->round + r->n) % 4) {
		case 0:
			*c = rctx_with_cancel(r->parent);
			break;
		case 1:
			*c = rctx_with_deadline(r->parent, rctx_now() + HOUR);
			break;
		case 2:
			*c = rctx_with_cancel(r->vlayer);
			break;
		default:
			*c = rctx_with_timeout_cause(r->vlayer, HOUR, 9);
			break;
		}
	}
}

/*
 * SEMANTICS 4: "A child being derived while its parent is being cancelled
 * on another thread is either cancelled by that cancel or born done: it is
 * never left live under a done parent (run it thousands of times in a
 * race)."
 */
static void
test_s04_derive_racing_cancel(void **state)
{
	struct duo d;
	static struct race4 r;
	long rounds = SCALED(3000), overlaps = 0, straddles = 0;

	(void)state;
	duo_start(&d, race4_derive, &r);
	for (r.round = 0; r.round < rounds; r.round++) {
		r.parent = rctx_with_cancel(rctx_background());
		r.vlayer = rctx_with_value(r.parent, &key_a, &val_1);
		duo_round(&d, race4_cancel);
		for (int k = 0; k < r.n; k++) {
			rctx_t *c = r.child[k];

			assert_non_null(c);
			if (RCTX_UNLIKELY(rctx_err(c) != ECANCELED))
				fail_msg("round %ld child %d left live under "
					 "a done parent",
					 r.round, k);
			assert_int_equal(rctx_cause(c), 100 + (int)r.round);
			assert_int_equal(rctx_cancel(c), -EALREADY);
			rctx_release(c);
		}
		/* none is left in the done parent's set */
		assert_int_equal(rctx_cset_count(&r.parent->children), 0);
		overlaps += r.live_before;
		straddles += r.live_before > 0;
		rctx_release(r.vlayer);
		rctx_release(r.parent);
	}
	duo_stop(&d);
	print_message("# s04: %ld derives began with the parent live; the "
		      "cancel fell inside the derive loop in %ld of %ld "
		      "rounds\n",
		      overlaps, straddles, rounds);
}

/* ----------------------------------------------------- without_cancel */

/*
 * SEMANTICS 19: "Keeps values; never done even when the parent is
 * cancelled; no deadline even under a deadline; cause 0; no fd; cannot be
 * cancelled itself; children made under it live on their own."
 */
static void
test_s19_without_cancel(void **state)
{
	rctx_t *p = rctx_with_deadline(rctx_background(), rctx_now() + HOUR);
	rctx_t *v = rctx_with_value(p, &key_a, &val_1);
	rctx_t *w = rctx_without_cancel(v);
	rctx_t *wv = rctx_with_value(w, &key_b, &val_2);
	rctx_t *c = rctx_with_cancel(wv);
	rctx_t *c2 = rctx_with_cancel(w);
	rctx_after_t reg;
	_Atomic int ran = 0;

	(void)state;
	assert_ptr_equal(rctx_value(w, &key_a), &val_1);
	assert_ptr_equal(rctx_value(c, &key_a), &val_1);
	assert_ptr_equal(rctx_value(c, &key_b), &val_2);
	assert_false(rctx_deadline(w, NULL));
	assert_false(rctx_deadline(c, NULL));
	assert_int_equal(rctx_fd(w), -EOPNOTSUPP);
	assert_int_equal(rctx_fd(wv), -EOPNOTSUPP);
	assert_int_equal(rctx_cancel(w), -EINVAL);
	assert_int_equal(rctx_cancel_cause(w, 3), -EINVAL);
	assert_int_equal(rctx_after_func(w, &reg, count_fn, &ran), 0);
	assert_int_equal(rctx_cancel_cause(p, 19), 0);
	assert_int_equal(rctx_err(v), ECANCELED);
	assert_false(rctx_done(w));
	assert_int_equal(rctx_err(w), 0);
	assert_int_equal(rctx_cause(w), 0);
	assert_int_equal(rctx_wait(w, RCTX_MSEC), 0);
	assert_false(rctx_done(c));
	assert_false(rctx_done(c2));
	assert_ptr_equal(rctx_value(w, &key_a), &val_1);
	assert_int_equal(atomic_load(&ran), 0);
	/* its children live on their own */
	assert_int_equal(rctx_cancel_cause(c, 190), 0);
	assert_int_equal(rctx_cause(c), 190);
	assert_false(rctx_done(c2));
	assert_false(rctx_done(w));
	assert_true(rctx_after_stop(&reg));
	assert_int_equal(atomic_load(&ran), 0);
	rctx_t *all[] = { c2, c, wv, w, v, p };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rctx_release(all[i]);
}

/* ------------------------------------------- references and lifetime */

/*
 * SEMANTICS 28: "A child keeps its parent alive; releasing the last
 * reference frees a context (no leak under valgrind / LeakSanitizer once
 * rctx_shutdown() has run). Releasing long chains (200,000) frees
 * iteratively."
 */
static void
test_s28_references_and_lifetime(void **state)
{
	enum { CHAIN = 200000 };
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *pv = rctx_with_value(p, &key_a, &val_1);
	rctx_t *c = rctx_with_cancel(pv);
	long out0 = 0, out1;

	(void)state;
	assert_int_equal(refs_of(p), 2); /* ours and pv's */
	assert_ptr_equal(rctx_retain(p), p);
	assert_int_equal(refs_of(p), 3);
	rctx_release(p);
	rctx_release(p);
	rctx_release(pv);
	assert_int_equal(refs_of(p), 1); /* held by pv, held by c */
	assert_int_equal(refs_of(pv), 1);
	assert_ptr_equal(rctx_value(c, &key_a), &val_1);
	assert_int_equal(rctx_cset_count(&p->children), 1);
	/* the parent still cancels the child */
	assert_int_equal(rctx_cancel_cause(p, 28), 0);
	assert_int_equal(rctx_cause(c), 28);
	rctx_release(c); /* frees c, pv and p */

	/*
	 * Releasing a long chain frees every context: once reclaimed, a
	 * second chain of the same length is built entirely from reused
	 * memory (no new context is taken from malloc).
	 */
	for (int round = 0; round < 3; round++) {
		rctx_t *top = rctx_with_cancel(rctx_background());

		for (int i = 0; i < CHAIN; i++) {
			rctx_t *n;

			switch (i % 4) {
			case 0:
				n = rctx_with_value(top, &key_b, &val_2);
				break;
			case 1:
				n = rctx_without_cancel(top);
				break;
			default:
				n = rctx_with_cancel(top);
				break;
			}
			assert_non_null(n);
			rctx_release(top);
			top = n;
		}
		if (round == 1) {
			out0 = rctx_alloc_outstanding();
		}
		assert_ptr_equal(rctx_value(top, &key_b), &val_2);
		rctx_release(top); /* frees the whole chain, iteratively */
		reclaim();
		if (round == 2) {
			out1 = rctx_alloc_outstanding();
			assert_int_equal(out1, out0);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s01_roots),
		cmocka_unit_test(test_s02_null_parent_and_enomem),
		cmocka_unit_test(test_s03_child_of_done_born_done),
		cmocka_unit_test(test_s04_derive_racing_cancel),
		cmocka_unit_test(test_s19_without_cancel),
		cmocka_unit_test(test_s28_references_and_lifetime),
	};

	return RUN_TESTS(tests);
}
