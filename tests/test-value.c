/* SPDX-License-Identifier: MIT */
/* Values: the cache against a model of the chain; SEMANTICS 17-18. */
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
#include "util.h"
#include "value.h"

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
		assert_int_equal(ctx[i]->vdepth, (uint8_t)(i + 1));
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
	uint64_t seed = rnd_seed(0);
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
	uint64_t seed = rnd_seed(1);
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
	uint64_t seed = rnd_seed(2);
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
		/* the value depth counts value contexts only (modulo 256) */
		if (rctx_vtop(ctx[i]) != NULL)
			assert_int_equal(rctx_vtop(ctx[i])->vdepth,
					 (uint8_t)nvalue);
		p = ctx[i];
	}
	assert_true(ncancel > 100 && nwithout > 100 && ntimer > 50);
	assert_int_equal(rctx_vtop(ctx[N - 1])->vdepth, (uint8_t)nvalue);

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
	struct gate *start;
	size_t wrong;
};

static void *
looker_main(void *arg)
{
	struct looker *l = arg;
	size_t n = l->nq;

	gate_pass(l->start);
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
	uint64_t seed = rnd_seed(3);
	size_t nq = CDEPTH * QPER;
	struct query *q = calloc(nq, sizeof(*q));

	(void)state;
	assert_non_null(q);
	for (size_t r = 0; r < rounds; r++) {
		rctx_t **ctx = value_chain(CDEPTH, mixed_key, &seed, true);
		struct gate start;
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
		gate_init(&start, LOOKERS);
		for (size_t i = 0; i < LOOKERS; i++) {
			l[i] = (struct looker){
				.id = i + r, .q = q, .nq = nq, .start = &start
			};
		}
		tg_run(LOOKERS, looker_main, l, sizeof(l[0]));
		for (size_t i = 0; i < LOOKERS; i++)
			assert_int_equal(l[i].wrong, 0);
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
	uint64_t seed = rnd_seed(4);
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

/* --------------------------- SEMANTICS 17-18: lookups, as users see them */

static int key_a, key_b, key_c, key_d;
static int val_1, val_2, val_3;

#define HOUR (3600 * RCTX_SEC)

/*
 * SEMANTICS 17: "Keys compare by pointer. The nearest ancestor with the
 * key wins (so a child can shadow a key, also with a NULL value). Missing
 * keys give NULL. Lookups pass through cancel, timer and without_cancel
 * layers and still work after cancellation."
 */
static void
test_s17_value_lookup_rules(void **state)
{
	static const char k1[] = "same", k2[] = "same";
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *v1 = rctx_with_value(root, k1, &val_1);
	rctx_t *v2 = rctx_with_value(v1, k2, &val_2);
	rctx_t *c = rctx_with_cancel(v2);
	rctx_t *t = rctx_with_deadline(c, rctx_now() + HOUR);
	rctx_t *w = rctx_without_cancel(t);
	rctx_t *v3 = rctx_with_value(w, &key_a, &val_1);
	rctx_t *sh = rctx_with_value(v3, &key_a, &val_3); /* shadow */
	rctx_t *nul = rctx_with_value(sh, k1, NULL);	  /* NULL shadow */
	rctx_t *deep = rctx_retain(nul);

	(void)state;
	assert_ptr_not_equal(k1, k2);
	assert_ptr_equal(rctx_value(v2, k1), &val_1);
	assert_ptr_equal(rctx_value(v2, k2), &val_2);
	assert_ptr_equal(rctx_value(v1, k2), NULL);
	assert_null(rctx_value(root, k1));
	assert_ptr_equal(rctx_value(c, k1), &val_1);
	assert_ptr_equal(rctx_value(t, k2), &val_2);
	assert_ptr_equal(rctx_value(w, k1), &val_1);
	assert_ptr_equal(rctx_value(v3, &key_a), &val_1);
	assert_ptr_equal(rctx_value(sh, &key_a), &val_3);
	assert_ptr_equal(rctx_value(v3, &key_a), &val_1); /* parent intact */
	assert_null(rctx_value(nul, k1));
	assert_ptr_equal(rctx_value(nul, k2), &val_2);
	assert_null(rctx_value(nul, &key_b));
	assert_null(rctx_value(nul, NULL));
	/* deeper than the index stride, through mixed layers */
	for (int i = 0; i < 40; i++) {
		void *val = (void *)(intptr_t)(i + 1);
		rctx_t *n = i % 3 ? rctx_with_value(deep, &key_c, val)
				  : rctx_with_cancel(deep);

		rctx_release(deep);
		deep = n;
	}
	assert_null(rctx_value(deep, k1));
	assert_ptr_equal(rctx_value(deep, k2), &val_2);
	assert_ptr_equal(rctx_value(deep, &key_a), &val_3);
	assert_ptr_equal(rctx_value(deep, &key_c), (void *)(intptr_t)39);
	assert_null(rctx_value(deep, &key_d));
	/* after cancellation */
	assert_int_equal(rctx_cancel(root), 0);
	assert_true(rctx_done(t));
	assert_ptr_equal(rctx_value(t, k1), &val_1);
	assert_ptr_equal(rctx_value(c, k2), &val_2);
	assert_ptr_equal(rctx_value(deep, &key_a), &val_3);
	assert_null(rctx_value(deep, k1));
	rctx_t *all[] = { deep, nul, sh, v3, w, t, c, v2, v1, root };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rctx_release(all[i]);
}

/* Behaviour 18: lookups at depth from several threads. */
enum { V18_DEPTH = 2500, V18_KEYS = 61, V18_TREES = 2, V18_THREADS = 3 };

static char v18_keys[V18_KEYS + 2];

struct v18 {
	rctx_t *node[V18_TREES][V18_DEPTH];
	int key[V18_DEPTH]; /* key index set at each depth, -1: none */
	long lookups;
	int bad;
};

/* Model: the value node d of tree t answers for key k. */
static void *
v18_expect(const struct v18 *v, int tree, int d, int k)
{
	for (; d >= 0; d--) {
		if (v->key[d] != k)
			continue;
		if (k == V18_KEYS) /* the NULL shadow key */
			return d >= 2000 ? NULL
					 : (void *)(intptr_t)((tree << 20) | d);
		return (void *)(intptr_t)((tree << 20) | d);
	}
	return NULL;
}

struct v18_arg {
	struct v18 *v;
	uint64_t seed;
};

static void *
v18_thread(void *p)
{
	struct v18_arg *a = p;
	struct v18 *v = a->v;

	for (long i = 0; i < v->lookups; i++) {
		int tree = (int)(rnd(&a->seed) % V18_TREES);
		int d = (int)(rnd(&a->seed) % V18_DEPTH);
		int k = (int)(rnd(&a->seed) % (V18_KEYS + 2));

		if (i % 4 == 0)
			d = V18_DEPTH - 1 - (int)(rnd(&a->seed) % 16);
		if (rctx_value(v->node[tree][d], &v18_keys[k]) !=
		    v18_expect(v, tree, d, k))
			v->bad++;
	}
	return NULL;
}

/*
 * SEMANTICS 18: "Lookups return the same answers no matter how often they
 * are repeated or from which thread (the per-depth cache must never serve
 * a stale or foreign answer), at any depth (2,000 and more)."
 */
static void
test_s18_lookups_any_thread_any_depth(void **state)
{
	struct v18 *v = calloc(1, sizeof(*v));
	struct v18_arg args[V18_THREADS];
	pthread_t th[V18_THREADS];
	uint64_t seed = rnd_seed(18);

	(void)state;
	assert_non_null(v);
	/* The same key layout in two trees with different values; key
	 * V18_KEYS gets a value near the top and a NULL shadow at depth
	 * 2000; key V18_KEYS + 1 is never set. Every fifth node is a
	 * cancel layer (no key). */
	for (int d = 0; d < V18_DEPTH; d++) {
		if (d % 5 == 4)
			v->key[d] = -1;
		else if (d == 10 || d == 2000)
			v->key[d] = V18_KEYS;
		else
			v->key[d] = (int)(rnd(&seed) % V18_KEYS);
	}
	for (int t = 0; t < V18_TREES; t++) {
		rctx_t *top = rctx_with_cancel(rctx_background());

		for (int d = 0; d < V18_DEPTH; d++) {
			int k = v->key[d];
			void *val = (d == 2000)
					? NULL
					: (void *)(intptr_t)((t << 20) | d);

			v->node[t][d] =
			    k < 0 ? rctx_with_cancel(top)
				  : rctx_with_value(top, &v18_keys[k], val);
			assert_non_null(v->node[t][d]);
			rctx_release(top);
			top = v->node[t][d];
			rctx_retain(top);
		}
		rctx_release(top);
	}
	/* Single-threaded first, deepest first (so caches are built from
	 * the bottom), and every answer twice. */
	for (int t = 0; t < V18_TREES; t++)
		for (int d = V18_DEPTH - 1; d >= 0; d -= 7)
			for (int k = 0; k < V18_KEYS + 2; k += 3)
				for (int rep = 0; rep < 2; rep++)
					if (rctx_value(v->node[t][d],
						       &v18_keys[k]) !=
					    v18_expect(v, t, d, k))
						fail_msg("tree %d depth %d "
							 "key %d",
							 t, d, k);
	assert_null(rctx_value(v->node[0][V18_DEPTH - 1], &v18_keys[V18_KEYS]));
	assert_non_null(rctx_value(v->node[0][1999], &v18_keys[V18_KEYS]));
	assert_null(
	    rctx_value(v->node[1][V18_DEPTH - 1], &v18_keys[V18_KEYS + 1]));
	/* Then from several threads at once. */
	v->lookups = SCALED(100000);
	for (int i = 0; i < V18_THREADS; i++) {
		args[i] =
		    (struct v18_arg){ .v = v,
				      .seed = rnd_seed(1800 + (uint64_t)i) };
		xpthread_create(&th[i], v18_thread, &args[i]);
	}
	for (int i = 0; i < V18_THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(v->bad, 0);
	/* Still the same after cancelling the trees. */
	assert_int_equal(rctx_cancel(v->node[0][4]), 0);
	assert_int_equal(rctx_cancel(v->node[1][4]), 0);
	for (int t = 0; t < V18_TREES; t++)
		for (int d = V18_DEPTH - 1; d >= 0; d -= 13)
			for (int k = 0; k < V18_KEYS + 2; k++)
				assert_ptr_equal(
				    rctx_value(v->node[t][d], &v18_keys[k]),
				    v18_expect(v, t, d, k));
	for (int t = 0; t < V18_TREES; t++)
		for (int d = V18_DEPTH - 1; d >= 0; d--)
			rctx_release(v->node[t][d]);
	free(v);
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
		cmocka_unit_test(test_s17_value_lookup_rules),
		cmocka_unit_test(test_s18_lookups_any_thread_any_depth),
#ifdef RCTX_FAULT_INJECTION
		cmocka_unit_test(test_fault_index),
#endif
	};

	return RUN_TESTS(tests);
}
