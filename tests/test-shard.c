/* SPDX-License-Identifier: MIT */
/* A parent many threads derive from: the split per CPU (shard.c). */

#include <errno.h>
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

#include "children.h"
#include "fault.h"
#include "internal.h"
#include "rctx.h"
#include "shard.h"
#include "util.h"

#define HOUR (3600 * RCTX_SEC)

static int key_a;

static uint64_t
live_now(void)
{
	rctx_stats_t s;

	WCHECK(rctx_stats(&s, sizeof(s)) == 0);
	return s.live;
}

static uint8_t
sharded_of(rctx_t *c)
{
	/* relaxed: read while no other thread touches c */
	return (uint8_t)(atomic_load_explicit(&c->share, memory_order_relaxed) &
			 RCTX_SHARE_STATE);
}

/* c's shards, NULL while it is whole. */
static struct rctx_shard *
shards_of(rctx_t *c)
{
	/* relaxed: as above */
	uint64_t w = atomic_load_explicit(&c->share, memory_order_relaxed);

	return w & RCTX_SHARE_STATE ? rctx_share_shards(w) : NULL;
}

static void
count_entry(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	(void)slot;
	(void)e;
	(*(size_t *)arg)++;
}

/* Entries of c's set and of its shards' sets. */
static size_t
children_of(rctx_t *c)
{
	size_t n = 0;

	rctx_children_foreach(c, count_entry, &n);
	return n;
}

/* Sum of c's shard counts (closed shards excluded). */
static int64_t
shard_sum(rctx_t *c)
{
	struct rctx_shard *s = shards_of(c);
	int64_t sum = 0;

	for (unsigned i = 0; i < rctx_shard_count(); i++) {
		int64_t v =
		    atomic_load_explicit(&s[i].refs, memory_order_relaxed);

		if (v != RCTX_SHARD_CLOSED)
			sum += v;
	}
	return sum;
}

/* Run fn(arg) on a thread of its own and wait for it. */
static void
on_other_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	WCHECK(pthread_create(&t, NULL, fn, arg) == 0);
	WCHECK(pthread_join(t, NULL) == 0);
}

static void *
derive_release(void *arg)
{
	rctx_t *c = rctx_with_cancel(arg);

	WCHECK(c != NULL);
	rctx_release(c);
	return NULL;
}

/*
 * A parent is split once derives under it have changed thread
 * RCTX_SHARD_PROMOTE times, and not before; a parent one thread derives
 * from is never split.
 */
static void
test_split_after_turns(void **state)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *q = rctx_with_cancel(rctx_background());

	(void)state;
	assert_non_null(p);
	assert_non_null(q);
	for (int i = 0; i < 10000; i++)
		derive_release(q);
	assert_int_equal(sharded_of(q), 0);

	/* the maker's own derive is no change of thread */
	derive_release(p);
	for (int turn = 1; turn < RCTX_SHARD_PROMOTE; turn++) {
		if (turn % 2)
			on_other_thread(derive_release, p);
		else
			derive_release(p);
		assert_int_equal(sharded_of(p), 0);
	}
	/* the RCTX_SHARD_PROMOTE-th change splits it */
	if (RCTX_SHARD_PROMOTE % 2)
		on_other_thread(derive_release, p);
	else
		derive_release(p);
	assert_int_equal(sharded_of(p), 1);
	assert_int_equal(refs_of(p), RCTX_REF_BIAS + 1);
	assert_int_equal(shard_sum(p), 0);
	rctx_release(p);
	rctx_release(q);
}

/*
 * A value context shared by threads is split for its references, and the
 * cancelable context above it, whose set the children enter, for its
 * set.
 */
static void
test_split_through_value(void **state)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *v = rctx_with_value(p, &key_a, NULL);

	(void)state;
	assert_non_null(v);
	for (int turn = 0; turn < 2 * RCTX_SHARD_PROMOTE; turn++) {
		if (turn % 2 == 0)
			on_other_thread(derive_release, v);
		else
			derive_release(v);
	}
	assert_int_equal(sharded_of(v), 1);
	assert_int_equal(sharded_of(p), 1);
	rctx_release(v);
	rctx_release(p);
}

struct kids {
	rctx_t *parent;
	rctx_t *kid[64];
	int n, cancelable;
	rctx_after_t reg;
	_Atomic int fired;
};

static void
count_fire(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
}

static void *
make_kids(void *arg)
{
	struct kids *k = arg;

	for (int i = 0; i < k->n; i++) {
		k->kid[i] = i % 3 == 0 ? rctx_with_timeout(k->parent, HOUR)
			    : i % 3 == 1
				? rctx_with_cancel(k->parent)
				: rctx_with_value(k->parent, &key_a, NULL);
		WCHECK(k->kid[i] != NULL);
		k->cancelable += i % 3 != 2;
	}
	/* one after-func on a child that lives in a shard */
	WCHECK(rctx_after_func(k->kid[1], &k->reg, count_fire, &k->fired) == 0);
	return NULL;
}

/*
 * Children in the shards' sets, several per shard (past the inline slots
 * into tables), are all cancelled with the parent's cause, and leave the
 * sets; their references keep the parent alive after its maker releases
 * it, and the last one frees it.
 */
static void
test_cancel_reaches_shards(void **state)
{
	uint64_t live0 = live_now();
	rctx_t *p = rctx_with_cancel(rctx_background());
	struct kids k[4];
	int cancelable = 0;

	(void)state;
	assert_int_equal(rctx_shard_promote(p), 0);
	assert_int_equal(sharded_of(p), 1);
	for (int t = 0; t < 4; t++) {
		k[t].parent = p;
		k[t].n = t == 0 ? 64 : 9;
		k[t].cancelable = 0;
		atomic_init(&k[t].fired, 0);
		on_other_thread(make_kids, &k[t]);
		cancelable += k[t].cancelable;
	}
	/* every cancelable child is in a set (values are not) */
	assert_int_equal(cancelable, 43 + 3 * 6);
	assert_int_equal(children_of(p), cancelable);
	assert_int_equal(refs_of(p) - RCTX_REF_BIAS + shard_sum(p),
			 1 + 64 + 3 * 9);
	assert_int_equal(rctx_cancel_cause(p, 4242), 0);
	for (int t = 0; t < 4; t++) {
		for (int i = 0; i < k[t].n; i++) {
			assert_int_equal(rctx_err(k[t].kid[i]), ECANCELED);
			assert_int_equal(rctx_cause(k[t].kid[i]), 4242);
		}
		assert_int_equal(atomic_load(&k[t].fired), 1);
	}
	assert_int_equal(children_of(p), 0);
	/* the maker's release closes the shards, the children hold p */
	rctx_release(p);
	assert_int_equal(sharded_of(p), 2);
	assert_int_equal(refs_of(p), 64 + 3 * 9);
	assert_int_equal(live_now(), live0 + 1 + 64 + 3 * 9);
	for (int t = 0; t < 4; t++)
		for (int i = 0; i < k[t].n; i++)
			rctx_release(k[t].kid[i]);
	assert_int_equal(live_now(), live0);
}

/* A child leaves its shard's set when cancelled alone or released live. */
static void
test_children_leave_shards(void **state)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c[40];

	(void)state;
	assert_int_equal(rctx_shard_promote(p), 0);
	for (int i = 0; i < 40; i++)
		assert_non_null(c[i] = rctx_with_cancel(p));
	assert_int_equal(children_of(p), 40);
	for (int i = 0; i < 40; i += 2)
		assert_int_equal(rctx_cancel(c[i]), 0);
	assert_int_equal(children_of(p), 20);
	for (int i = 1; i < 40; i += 2)
		rctx_release(c[i]);
	assert_int_equal(children_of(p), 0);
	for (int i = 0; i < 40; i += 2)
		rctx_release(c[i]);
	/* the emptied sets take children again */
	for (int i = 0; i < 40; i++)
		assert_non_null(c[i] = rctx_with_cancel(p));
	assert_int_equal(children_of(p), 40);
	assert_int_equal(rctx_err(p), 0);
	for (int i = 0; i < 40; i++)
		rctx_release(c[i]);
	rctx_release(p);
}

/* A split child's own children, in its shards, are reached by a cancel
 * that starts above it. */
static void
test_cascade_through_split_child(void **state)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(p);
	rctx_t *g[8];

	(void)state;
	assert_int_equal(rctx_shard_promote(c), 0);
	for (int i = 0; i < 8; i++)
		assert_non_null(g[i] = rctx_with_cancel(c));
	assert_int_equal(rctx_cancel(p), 0);
	assert_int_equal(rctx_err(c), ECANCELED);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(rctx_err(g[i]), ECANCELED);
		rctx_release(g[i]);
	}
	assert_int_equal(children_of(c), 0);
	rctx_release(c);
	rctx_release(p);
}

static int
count_node(const rctx_dump_node_t *node, void *arg)
{
	size_t *n = arg;

	if (node->depth == 0)
		n[1] = node->children;
	n[0]++;
	return 0;
}

/* rctx_dump reports the children in the shards, and counts them. */
static void
test_dump_sees_shards(void **state)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	struct kids k = { .parent = p, .n = 12 };
	size_t n[2] = { 0, 0 };

	(void)state;
	atomic_init(&k.fired, 0);
	assert_int_equal(rctx_shard_promote(p), 0);
	on_other_thread(make_kids, &k);
	/* p and its cancelable children (a dump, like a cancel, finds
	 * contexts through the sets, where values are not) */
	assert_int_equal(rctx_dump(p, 100, count_node, n), 1 + k.cancelable);
	assert_int_equal(n[0], 1 + k.cancelable);
	assert_int_equal(n[1], k.cancelable);
	assert_int_equal(rctx_cancel(p), 0);
	for (int i = 0; i < k.n; i++)
		rctx_release(k.kid[i]);
	rctx_release(p);
}

/*
 * A child made on one CPU and released on another: one shard goes up,
 * the other down, and the sum is what counts (I2).
 */
static void
test_release_on_other_cpu(void **state)
{
	cpu_set_t old;
	uint64_t live0 = live_now();
	rctx_t *p, *c;

	(void)state;
	WCHECK(sched_getaffinity(0, sizeof(old), &old) == 0);
	if (CPU_COUNT(&old) < 2 || !CPU_ISSET(0, &old) || !CPU_ISSET(1, &old))
		TEST_SKIP("needs CPUs 0 and 1");
	p = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_shard_promote(p), 0);
	struct rctx_shard *s = shards_of(p);

	if (!pin_cpu(0)) {
		WCHECK(sched_setaffinity(0, sizeof(old), &old) == 0);
		rctx_release(p);
		TEST_SKIP("cannot pin to CPU 0");
	}
	assert_non_null(c = rctx_with_cancel(p));
	assert_int_equal(atomic_load(&s[0].refs), 1);
	if (!pin_cpu(1)) {
		WCHECK(sched_setaffinity(0, sizeof(old), &old) == 0);
		rctx_release(c);
		rctx_release(p);
		TEST_SKIP("cannot pin to CPU 1");
	}
	rctx_release(c);
	assert_int_equal(atomic_load(&s[0].refs), 1);
	assert_int_equal(atomic_load(&s[1].refs), -1);
	assert_int_equal(shard_sum(p), 0);
	WCHECK(sched_setaffinity(0, sizeof(old), &old) == 0);
	rctx_release(p); /* the sum is 0: this frees p */
	assert_int_equal(live_now(), live0);
}

/*
 * After the shards are closed a child's release goes to the count of the
 * context itself, and the last one frees it; rctx_retain and a try-get
 * by a canceller while split use that count too.
 */
static void
test_release_after_close(void **state)
{
	uint64_t live0 = live_now();
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c1, *c2;

	(void)state;
	assert_int_equal(rctx_shard_promote(p), 0);
	assert_non_null(c1 = rctx_with_cancel(p));
	assert_non_null(c2 = rctx_with_timeout(p, HOUR));
	assert_ptr_equal(rctx_retain(p), p);
	assert_int_equal(refs_of(p), RCTX_REF_BIAS + 2);
	rctx_release(p);
	assert_int_equal(sharded_of(p), 1);
	rctx_release(p); /* the maker's: closes */
	assert_int_equal(sharded_of(p), 2);
	assert_int_equal(refs_of(p), 2);
	rctx_release(c1);
	assert_int_equal(refs_of(p), 1);
	assert_int_equal(rctx_err(p), 0);
	rctx_release(c2); /* the last: frees p */
	assert_int_equal(live_now(), live0);
}

/*
 * Make p's next malloc fail and run fn(p): true if that malloc was the
 * one to fail. The fault counter is global, so a library thread (the
 * reclaimer, a timer owner) may take the failure first; the caller then
 * tries again with a new context.
 */
static bool
fail_next_malloc(rctx_t *p, int (*fn)(rctx_t *), int *ret)
{
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	*ret = fn(p);
	/* countdown left at 1: nobody allocated; disarm either way */
	bool hit = rctx_fault_calls(RCTX_FAULT_MALLOC) == 1;
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	return hit;
}

static int
promote_fn(rctx_t *p)
{
	return rctx_shard_promote(p);
}

/* The change of thread that reaches the limit: another thread's tag,
 * one change short. */
static int
last_miss_fn(rctx_t *p)
{
	atomic_store(&p->share, (RCTX_SHARD_PROMOTE - 1) * RCTX_SHARE_MISS1 |
				    ((uint64_t)(rctx_shard_my_tag ^ 2)
				     << RCTX_SHARE_TAG_SHIFT));
	rctx_shard_miss(p);
	return 0;
}

/* Out of memory for the shards: the parent stays whole and works; the
 * miss count starts again. */
static void
test_split_out_of_memory(void **state)
{
	int r = 0, tries = 0;
	rctx_t *p;

	(void)state;
	for (;;) {
		assert_true(++tries < 100);
		p = rctx_with_cancel(rctx_background());
		if (fail_next_malloc(p, promote_fn, &r))
			break;
		rctx_release(p);
	}
	assert_int_equal(r, -ENOMEM);
	assert_int_equal(sharded_of(p), 0);
	assert_null(shards_of(p));
	rctx_release(p);

	for (tries = 0;;) {
		assert_true(++tries < 100);
		p = rctx_with_cancel(rctx_background());
		if (fail_next_malloc(p, last_miss_fn, &r))
			break;
		rctx_release(p);
	}
	assert_int_equal(sharded_of(p), 0);
	assert_int_equal(atomic_load(&p->share) & RCTX_SHARE_MISSES, 0);
	rctx_t *c = rctx_with_cancel(p);
	assert_non_null(c);
	assert_int_equal(rctx_cancel(p), 0);
	assert_int_equal(rctx_err(c), ECANCELED);
	rctx_release(c);
	rctx_release(p);
}

/* ------------------------------------------------------- concurrency */

struct racer {
	rctx_t *p;
	_Atomic int *go;
	_Atomic int *cancelled; /* set once rctx_cancel(p) returned */
	long made, late;
};

static void *
race_derive(void *arg)
{
	struct racer *r = arg;
	rctx_t *kids[16];

	while (atomic_load(r->go) == 0)
		sched_yield();
	for (long i = 0; i < SCALED(2000); i++) {
		int n = (int)(i % 16) + 1;

		for (int j = 0; j < n; j++) {
			kids[j] = j % 2 ? rctx_with_cancel(r->p)
					: rctx_with_timeout(r->p, HOUR);
			WCHECK(kids[j] != NULL);
			r->made++;
		}
		for (int j = 0; j < n; j++) {
			/* made (its derive returned) before we look: if the
			 * parent's cancel has returned by then, the child is
			 * done, whether the walk found it in a shard or it
			 * saw the parent done itself (tree.B, I3) */
			if (atomic_load(r->cancelled) && !rctx_err(kids[j]))
				r->late++;
			if (j % 3 == 0)
				(void)rctx_cancel(kids[j]);
			rctx_release(kids[j]);
		}
	}
	return NULL;
}

static void *
race_cancel(void *arg)
{
	struct racer *r = arg;

	while (atomic_load(r->go) == 0)
		sched_yield();
	spin_delay(20000);
	(void)rctx_cancel(r->p);
	atomic_store(r->cancelled, 1);
	return NULL;
}

/*
 * Threads derive, cancel and release under one split parent while another
 * cancels it: no child is left live under it once its cancel returns
 * (tree.B through the shards), and every context is freed (checked at
 * shutdown). Meant for TSan as much as for its assertions.
 */
static void
test_race_derive_cancel(void **state)
{
	uint64_t live0 = live_now();

	(void)state;
	for (int round = 0; round < (int)SCALED(8); round++) {
		_Atomic int go = 0, cancelled = 0;
		struct racer r[3];
		struct tgroup g;
		rctx_t *p = rctx_with_cancel(rctx_background());

		assert_int_equal(rctx_shard_promote(p), 0);
		for (int i = 0; i < 3; i++)
			r[i] = (struct racer){ .p = p,
					       .go = &go,
					       .cancelled = &cancelled };
		g.n = 0;
		tg_add(&g, race_derive, &r[0]);
		tg_add(&g, race_derive, &r[1]);
		tg_add(&g, race_cancel, &r[2]);
		atomic_store(&go, 1);
		tg_join(&g, NULL);
		assert_int_equal(rctx_err(p), ECANCELED);
		assert_int_equal(children_of(p), 0);
		assert_int_equal(r[0].late + r[1].late, 0);
		assert_true(r[0].made > 0 && r[1].made > 0);
		rctx_release(p);
	}
	assert_int_equal(live_now(), live0);
}

struct churn {
	rctx_t *p;
	long n;
};

static void *
churn_main(void *arg)
{
	struct churn *c = arg;

	for (long i = 0; i < c->n; i++) {
		rctx_t *k = rctx_with_cancel(c->p);

		WCHECK(k != NULL);
		if (i % 2)
			(void)rctx_cancel(k);
		rctx_release(k);
	}
	rctx_release(c->p); /* each thread held one; the last closes */
	return NULL;
}

/*
 * The references race the close: threads derive and release children
 * while the other references go, the last of them on any thread; the
 * parent is freed exactly once, when the last child goes.
 */
static void
test_race_release_close(void **state)
{
	uint64_t live0 = live_now();

	(void)state;
	for (int round = 0; round < (int)SCALED(20); round++) {
		rctx_t *p = rctx_with_cancel(rctx_background());
		struct churn c[3];

		for (int i = 0; i < 3; i++) {
			c[i] = (struct churn){ .p = rctx_retain(p),
					       .n = SCALED(3000) };
		}
		/* half the rounds split it first; the others may split
		 * on their own, as the threads take turns */
		if (round % 2 == 0)
			assert_int_equal(rctx_shard_promote(p), 0);
		rctx_release(p);
		tg_run(3, churn_main, c, sizeof(c[0]));
		assert_int_equal(live_now(), live0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_after_turns),
		cmocka_unit_test(test_split_through_value),
		cmocka_unit_test(test_cancel_reaches_shards),
		cmocka_unit_test(test_children_leave_shards),
		cmocka_unit_test(test_cascade_through_split_child),
		cmocka_unit_test(test_dump_sees_shards),
		cmocka_unit_test(test_release_on_other_cpu),
		cmocka_unit_test(test_release_after_close),
		cmocka_unit_test(test_split_out_of_memory),
		cmocka_unit_test(test_race_derive_cancel),
		cmocka_unit_test(test_race_release_close),
	};

	return RUN_TESTS(tests);
}
