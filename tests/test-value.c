/* SPDX-License-Identifier: MIT */
/* Value cache: every lookup checked against a model that walks the chain. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault.h"
#include "value.h"

#ifndef RCTX_STRESS_SCALE
#define RCTX_STRESS_SCALE 1
#endif

/* Keys are addresses in this array; key(i) for i < NKEYS. */
#define NKEYS (RCTX_VINDEX_MAX_KEYS + 4096)
static char keyspace[NKEYS];
static char never_used_key;

static const void *
key(size_t i)
{
	return &keyspace[i];
}

/* Distinct, non-NULL values that say which depth set them. */
static void *
val(size_t depth)
{
	return (void *)(uintptr_t)((depth << 4) | 8);
}

static uint64_t
rnd(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545f4914f6cdd1dull;
}

/*
 * The model: walk parent links (not vprev, not any index) to the root and
 * return the nearest value context's value for k.
 */
static void *
model(const struct rctx *c, const void *k)
{
	for (; c != NULL && c->kind != RCTX_KIND_ROOT; c = c->parent)
		if (c->kind == RCTX_KIND_VALUE && c->key == k)
			return c->val;
	return NULL;
}

static void *
model_present(const struct rctx *c, const void *k, bool *found)
{
	for (; c != NULL && c->kind != RCTX_KIND_ROOT; c = c->parent) {
		if (c->kind == RCTX_KIND_VALUE && c->key == k) {
			*found = true;
			return c->val;
		}
	}
	*found = false;
	return NULL;
}

/* Look k up in c and compare with the model. */
static void
same(rctx_t *c, const void *k)
{
	void *want = model(c, k), *got = rctx_value(c, k);

	if (got != want)
		fail_msg("lookup of key %td: got %p, model says %p",
			 (const char *)k - keyspace, got, want);
}

/* A chain of n value contexts on background; ctx[i] has value depth i+1
 * and key keyof(i). */
static rctx_t **
value_chain(size_t n, const void *(*keyof)(size_t, void *), void *arg,
	    bool null_some)
{
	rctx_t **ctx = calloc(n, sizeof(*ctx));
	rctx_t *p = rctx_background();

	assert_non_null(ctx);
	for (size_t i = 0; i < n; i++) {
		void *v = null_some && i % 5 == 3 ? NULL : val(i + 1);

		ctx[i] = rctx_with_value(p, keyof(i, arg), v);
		assert_non_null(ctx[i]);
		assert_int_equal(ctx[i]->vdepth, i + 1);
		p = ctx[i];
	}
	return ctx;
}

static void
release_all(rctx_t **ctx, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rctx_release(ctx[i]);
	free(ctx);
}

static const void *
distinct_key(size_t i, void *arg)
{
	(void)arg;
	return key(i);
}

/* Distinct keys: key(i) is set at depth i+1 and only there. */
static void
check_distinct_at(rctx_t **ctx, size_t d, uint64_t *seed)
{
	rctx_t *c = ctx[d - 1];
	size_t j = rnd(seed) % d;

	assert_ptr_equal(rctx_value(c, key(d - 1)), val(d));
	if (d > 1)
		assert_ptr_equal(rctx_value(c, key(d - 2)), val(d - 1));
	assert_ptr_equal(rctx_value(c, key(0)), val(1));
	assert_ptr_equal(rctx_value(c, key(j)), val(j + 1));
	assert_null(rctx_value(c, key(d))); /* set only deeper */
	assert_null(rctx_value(c, &never_used_key));
	same(c, key(j));
	same(c, key(d));
}

static void
test_distinct_keys(void **state)
{
	enum { N = 3000 };
	uint64_t seed = 42;
	rctx_t **ctx;

	(void)state;
	/* shallow to deep: indexes get built one level at a time */
	ctx = value_chain(N, distinct_key, NULL, false);
	for (size_t d = 1; d <= N; d++)
		check_distinct_at(ctx, d, &seed);
	/* only every 8th value depth may hold an index, the first does,
	 * and their memory stays linear in depth (value.c, Cost) */
	size_t total = 0;

	for (size_t d = 1; d <= N; d++) {
		size_t b = rctx_value_index_bytes(ctx[d - 1]);

		if (d % RCTX_VINDEX_EVERY != 0)
			assert_int_equal(b, 0);
		total += b;
	}
	assert_true(rctx_value_index_bytes(ctx[RCTX_VINDEX_EVERY - 1]) > 0);
	assert_true(total <= N * 2048);
	release_all(ctx, N);

	/* deep to shallow on a fresh chain: the first lookup builds them
	 * all, top-down */
	ctx = value_chain(N, distinct_key, NULL, false);
	for (size_t d = N; d >= 1; d--)
		check_distinct_at(ctx, d, &seed);
	/* every key at the bottom, and at a middle depth */
	for (size_t i = 0; i < N; i++) {
		assert_ptr_equal(rctx_value(ctx[N - 1], key(i)), val(i + 1));
		assert_ptr_equal(rctx_value(ctx[N / 2], key(i)),
				 i <= N / 2 ? val(i + 1) : NULL);
	}
	release_all(ctx, N);
}

/* Repeated keys: a handful of keys set again and again (nearest wins),
 * some shadowing with NULL. */
static const void *
few_keys(size_t i, void *arg)
{
	uint64_t *seed = arg;

	(void)i;
	return key(rnd(seed) % 6);
}

static void
test_shadowing(void **state)
{
	enum { N = 1500 };
	uint64_t seed = 7;
	rctx_t **ctx = value_chain(N, few_keys, &seed, true);

	(void)state;
	for (size_t d = 1; d <= N; d++) {
		for (size_t k = 0; k < 7; k++) /* key 6 never set */
			same(ctx[d - 1], key(k));
		same(ctx[d - 1], &never_used_key);
	}
	/* A NULL shadow hides an outer non-NULL value. */
	size_t shadows = 0;

	for (size_t d = 2; d <= N; d++) {
		rctx_t *c = ctx[d - 1];
		bool found;

		if (c->val != NULL)
			continue;
		if (model_present(c->parent, c->key, &found) != NULL) {
			assert_null(rctx_value(c, c->key));
			shadows++;
		}
		(void)found;
	}
	assert_true(shadows > 10);
	release_all(ctx, N);

	/* a short one by hand: a, b, a=NULL, c, b=NULL */
	rctx_t *a1 = rctx_with_value(rctx_background(), key(1), val(1));
	rctx_t *b1 = rctx_with_value(a1, key(2), val(2));
	rctx_t *a2 = rctx_with_value(b1, key(1), NULL);
	rctx_t *c1 = rctx_with_value(a2, key(3), val(4));
	rctx_t *b2 = rctx_with_value(c1, key(2), NULL);

	assert_ptr_equal(rctx_value(b1, key(1)), val(1));
	assert_null(rctx_value(a2, key(1)));
	assert_ptr_equal(rctx_value(a2, key(2)), val(2));
	assert_null(rctx_value(b2, key(1)));
	assert_null(rctx_value(b2, key(2)));
	assert_ptr_equal(rctx_value(b2, key(3)), val(4));
	assert_ptr_equal(rctx_value(c1, key(2)), val(2));
	rctx_release(b2);
	rctx_release(c1);
	rctx_release(a2);
	rctx_release(b1);
	rctx_release(a1);
}

/*
 * Value layers interleaved with cancel, timer and without_cancel layers:
 * the value chain skips them (vprev links value contexts only), and
 * cancelling some of them does not change any value.
 */
static void
test_mixed_layers(void **state)
{
	enum { N = 2500 };
	uint64_t seed = 99;
	rctx_t **ctx = calloc(N, sizeof(*ctx));
	rctx_t *p = rctx_background();
	size_t nvalue = 0, ntimer = 0, ncancel = 0, nwithout = 0;

	(void)state;
	assert_non_null(ctx);
	for (size_t i = 0; i < N; i++) {
		unsigned r = (unsigned)(rnd(&seed) % 100);

		if (r < 60) {
			/* half distinct keys, half from a small set */
			size_t k = r % 2 ? 1000 + i : rnd(&seed) % 40;

			ctx[i] = rctx_with_value(
			    p, key(k), r % 7 == 0 ? NULL : val(i + 1));
			nvalue++;
		} else if (r < 75) {
			ctx[i] = rctx_with_cancel(p);
			ncancel++;
		} else if (r < 85 && ntimer < 200) {
			ctx[i] = rctx_with_timeout(p, 3600 * RCTX_SEC);
			ntimer++;
		} else {
			ctx[i] = rctx_without_cancel(p);
			nwithout++;
		}
		assert_non_null(ctx[i]);
		/* the value depth counts value contexts only */
		if (ctx[i]->vtop != NULL)
			assert_true(ctx[i]->vtop->vdepth <= nvalue);
		p = ctx[i];
	}
	assert_true(ncancel > 100 && nwithout > 100 && ntimer > 50);
	assert_int_equal(ctx[N - 1]->vtop->vdepth, nvalue);

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < N; i++) {
			rctx_t *c = ctx[i];

			for (size_t k = 0; k < 40; k += 3)
				same(c, key(k));
			same(c, key(1000 + i));
			same(c, key(1000 + rnd(&seed) % N));
			same(c, &never_used_key);
		}
		/* Between passes, cancel a cancel layer halfway down: its
		 * subtree is done, and no value changes. */
		for (size_t i = N / 2; pass == 0 && i < N; i++) {
			if (ctx[i]->kind == RCTX_KIND_CANCEL) {
				assert_int_equal(rctx_cancel(ctx[i]), 0);
				assert_true(rctx_done(ctx[i]));
				break;
			}
		}
	}
	release_all(ctx, N);
}

/*
 * Several threads look things up in the same fresh deep chain at once:
 * the indexes are built lazily and raced; every answer must be right.
 */
#define LOOKERS 4
#define CDEPTH	3000
#define QPER	4

struct query {
	rctx_t *ctx;
	const void *key;
	void *want;
};

struct looker {
	size_t id;
	struct query *q;
	size_t nq;
	pthread_barrier_t *start;
	size_t wrong;
};

static void *
looker_main(void *arg)
{
	struct looker *l = arg;
	size_t n = l->nq;

	pthread_barrier_wait(l->start);
	/* Each thread its own order: deepest first, shallowest first,
	 * or strided from an offset, so builds collide at every level. */
	for (size_t k = 0; k < n; k++) {
		size_t i;

		switch (l->id % 4) {
		case 0:
			i = n - 1 - k;
			break;
		case 1:
			i = k;
			break;
		default:
			i = (k * 7919 + l->id * 1013) % n;
			break;
		}
		if (rctx_value(l->q[i].ctx, l->q[i].key) != l->q[i].want)
			l->wrong++;
	}
	return NULL;
}

static const void *
mixed_key(size_t i, void *arg)
{
	uint64_t *seed = arg;

	return rnd(seed) % 3 ? key(i % NKEYS) : key(rnd(seed) % 20);
}

static void
test_concurrent_lookups(void **state)
{
	size_t rounds = 12 * RCTX_STRESS_SCALE;
	uint64_t seed = 1234;
	size_t nq = CDEPTH * QPER;
	struct query *q = calloc(nq, sizeof(*q));

	(void)state;
	assert_non_null(q);
	for (size_t r = 0; r < rounds; r++) {
		rctx_t **ctx = value_chain(CDEPTH, mixed_key, &seed, true);
		pthread_barrier_t start;
		pthread_t t[LOOKERS];
		struct looker l[LOOKERS];

		/* the model's answers, computed before any index exists */
		for (size_t d = 0; d < CDEPTH; d++) {
			const void *ks[QPER] = {
				key(rnd(&seed) % 20),
				key(rnd(&seed) % (d + 1)),
				key(rnd(&seed) % CDEPTH),
				&never_used_key,
			};

			for (size_t j = 0; j < QPER; j++) {
				struct query *x = &q[d * QPER + j];

				x->ctx = ctx[d];
				x->key = ks[j];
				x->want = model(ctx[d], ks[j]);
			}
			assert_int_equal(rctx_value_index_bytes(ctx[d]), 0);
		}
		assert_int_equal(pthread_barrier_init(&start, NULL, LOOKERS),
				 0);
		for (size_t i = 0; i < LOOKERS; i++) {
			l[i] = (struct looker){
				.id = i + r, .q = q, .nq = nq, .start = &start
			};
			assert_int_equal(
			    pthread_create(&t[i], NULL, looker_main, &l[i]), 0);
		}
		for (size_t i = 0; i < LOOKERS; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			assert_int_equal(l[i].wrong, 0);
		}
		pthread_barrier_destroy(&start);
		/* and once more, single-threaded, over the built indexes */
		for (size_t i = 0; i < nq; i++)
			assert_ptr_equal(rctx_value(q[i].ctx, q[i].key),
					 q[i].want);
		size_t built = 0;

		for (size_t d = 0; d < CDEPTH; d++)
			built += rctx_value_index_bytes(ctx[d]);
		assert_true(built > 0);
		release_all(ctx, CDEPTH);
	}
	free(q);
}

/*
 * The key cap: with more distinct keys than RCTX_VINDEX_MAX_KEYS, the
 * deepest lookups walk; they must still answer right, and above the cap
 * indexes still serve. With a few repeated keys the cap is never
 * reached, however deep, and each index stays small.
 */
static void
test_key_cap(void **state)
{
	enum { N = RCTX_VINDEX_MAX_KEYS + 3000 };
	uint64_t seed = 5;
	rctx_t **ctx = value_chain(N, distinct_key, NULL, false);
	const size_t bottom = N - N % RCTX_VINDEX_EVERY; /* indexed depth */

	(void)state;
	for (size_t d = N; d >= 1; d -= 1 + d / 10)
		check_distinct_at(ctx, d, &seed);
	for (size_t i = 0; i < N; i += 997)
		assert_ptr_equal(rctx_value(ctx[N - 1], key(i)), val(i + 1));
	/* over the cap: no index at the bottom; under it: one */
	assert_int_equal(rctx_value_index_bytes(ctx[bottom - 1]), 0);
	size_t under = 0;

	for (size_t d = 1; d <= RCTX_VINDEX_MAX_KEYS; d++)
		under += rctx_value_index_bytes(ctx[d - 1]);
	assert_true(under > 0);
	release_all(ctx, N);

	/* repeated keys: indexed all the way down, each index small */
	enum { M = 6000 };
	uint64_t s2 = 11;
	rctx_t **rc = value_chain(M, few_keys, &s2, true);

	for (size_t d = M; d >= 1; d -= 1 + d / 500)
		for (size_t k = 0; k < 7; k++)
			same(rc[d - 1], key(k));
	size_t b = rctx_value_index_bytes(rc[M - 1 - M % 8]);

	assert_true(b > 0);
	assert_true(b <= 2048);
	release_all(rc, M);
}

#ifdef RCTX_FAULT_INJECTION
/* An index that cannot be allocated, at its first allocation or while
 * it grows: the lookup walks and is still right; a later lookup builds
 * the index. */
static void
test_fault_index(void **state)
{
	enum { N = 64 };
	rctx_t **ctx;

	(void)state;
	for (unsigned long nth = 1; nth <= 3; nth++) {
		ctx = value_chain(N, distinct_key, NULL, false);
		rctx_fault_arm(RCTX_FAULT_MALLOC, nth);
		assert_ptr_equal(rctx_value(ctx[N - 1], key(0)), val(1));
		assert_true(rctx_fault_calls(RCTX_FAULT_MALLOC) >= nth);
		rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
		for (size_t d = 1; d <= N; d++)
			assert_int_equal(rctx_value_index_bytes(ctx[d - 1]), 0);
		assert_null(rctx_value(ctx[N - 1], &never_used_key));
		assert_true(rctx_value_index_bytes(ctx[N - 1]) > 0);
		for (size_t d = 1; d <= N; d++)
			for (size_t i = 0; i < N; i++)
				assert_ptr_equal(rctx_value(ctx[d - 1], key(i)),
						 i < d ? val(i + 1) : NULL);
		release_all(ctx, N);
	}
}
#endif

static int
teardown(void **state)
{
	(void)state;
	rctx_shutdown();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_distinct_keys),
		cmocka_unit_test(test_shadowing),
		cmocka_unit_test(test_mixed_layers),
		cmocka_unit_test(test_concurrent_lookups),
		cmocka_unit_test(test_key_cap),
#ifdef RCTX_FAULT_INJECTION
		cmocka_unit_test(test_fault_index),
#endif
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
