/* SPDX-License-Identifier: MIT */
/* Tree, SEMANTICS 5-12: cancellation and causes. */

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

static int key_a;
static int val_1;

#define HOUR (3600 * RCTX_SEC)

/* ------------------------------------------------------- cancellation */

/*
 * SEMANTICS 5: "Cancelling a context makes it and every descendant
 * (through value layers, timer contexts, any depth) done before
 * rctx_cancel returns, with ECANCELED and the cause."
 */
static void
test_s05_cancel_reaches_every_descendant(void **state)
{
	enum { DEPTH = 300 };
	rctx_t *nodes[DEPTH], *side[DEPTH];
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *top = rctx_retain(root);
	int fd;

	(void)state;
	/* A chain mixing every kind; each node also has a side leaf. */
	for (int i = 0; i < DEPTH; i++) {
		switch (i % 4) {
		case 0:
			nodes[i] = rctx_with_value(top, &key_a, &val_1);
			break;
		case 1:
			nodes[i] = rctx_with_deadline(top, rctx_now() + HOUR);
			break;
		case 2:
			nodes[i] = rctx_with_cancel(top);
			break;
		default:
			nodes[i] = rctx_with_timeout_cause(top, HOUR - i, 5);
			break;
		}
		assert_non_null(nodes[i]);
		side[i] = rctx_with_cancel(nodes[i]);
		assert_non_null(side[i]);
		rctx_release(top);
		top = rctx_retain(nodes[i]);
	}
	fd = rctx_fd(nodes[DEPTH - 1]);
	assert_true(fd >= 0);
	assert_false(readable(fd));
	for (int i = 0; i < DEPTH; i++) {
		assert_false(rctx_done(nodes[i]));
		assert_false(rctx_done(side[i]));
	}
	assert_int_equal(rctx_cancel_cause(root, 555), 0);
	/* no waiting: everything is done when cancel returns */
	for (int i = 0; i < DEPTH; i++) {
		assert_int_equal(rctx_err(nodes[i]), ECANCELED);
		assert_int_equal(rctx_cause(nodes[i]), 555);
		assert_int_equal(rctx_err(side[i]), ECANCELED);
		assert_int_equal(rctx_cause(side[i]), 555);
	}
	assert_true(readable(fd));
	for (int i = 0; i < DEPTH; i++) {
		rctx_release(side[i]);
		rctx_release(nodes[i]);
	}
	rctx_release(top);
	rctx_release(root);
}

/*
 * SEMANTICS 6: "Cancelling a child leaves the parent and siblings
 * untouched and removes the child from the parent's children set (the set
 * returns to its size before the child was made; after a million
 * derive/cancel cycles under one parent, memory is back where it
 * started)."
 */
static void
test_s06_child_leaves_parent_set(void **state)
{
	enum { CHUNK = 10000 };
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *sib = rctx_with_cancel(p);
	rctx_t *vs = rctx_with_value(p, &key_a, &val_1);
	size_t cnt0 = rctx_cset_count(&p->children);
	size_t cap0 = rctx_cset_capacity(&p->children);
	long cycles = SCALED(1000000), out0;

	(void)state;
	assert_int_equal(cnt0, 1);
	rctx_t *c = rctx_with_cancel(vs);
	assert_int_equal(rctx_cset_count(&p->children), cnt0 + 1);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_cset_count(&p->children), cnt0);
	assert_false(rctx_done(p));
	assert_false(rctx_done(sib));
	assert_false(rctx_done(vs));
	rctx_release(c);

	/* A timer child too. */
	c = rctx_with_deadline(p, rctx_now() + HOUR);
	assert_int_equal(rctx_cset_count(&p->children), cnt0 + 1);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_cset_count(&p->children), cnt0);
	rctx_release(c);

	/* A million cycles: the set's footprint and the number of contexts
	 * taken from malloc do not grow with the number of cycles. Between
	 * chunks every freed context is reclaimed, so no chunk can need more
	 * than CHUNK fresh contexts. */
	reclaim();
	out0 = rctx_alloc_outstanding();
	for (long i = 0; i < cycles; i++) {
		c = rctx_with_cancel(i & 1 ? vs : p);
		assert_non_null(c);
		if (RCTX_UNLIKELY(rctx_cancel(c) != 0))
			fail_msg("cycle %ld: cancel failed", i);
		rctx_release(c);
		if (i % CHUNK == CHUNK - 1)
			reclaim();
	}
	assert_int_equal(rctx_cset_count(&p->children), cnt0);
	assert_int_equal(rctx_cset_capacity(&p->children), cap0);
	assert_true(rctx_alloc_outstanding() - out0 <= CHUNK);
	assert_false(rctx_done(p));
	assert_false(rctx_done(sib));

	/* The same with many live siblings (the set has tables). */
	enum { SIBS = 100 };
	rctx_t *sibs[SIBS];
	for (int i = 0; i < SIBS; i++)
		sibs[i] = rctx_with_cancel(p);
	cnt0 = rctx_cset_count(&p->children);
	assert_int_equal(cnt0, SIBS + 1);
	for (long i = 0; i < CHUNK; i++) {
		c = rctx_with_cancel(p);
		rctx_cancel(c);
		rctx_release(c);
	}
	cap0 = rctx_cset_capacity(&p->children);
	reclaim();
	out0 = rctx_alloc_outstanding();
	for (long i = 0; i < cycles / 4; i++) {
		c = rctx_with_cancel(p);
		assert_non_null(c);
		rctx_cancel(c);
		rctx_release(c);
		if (i % CHUNK == CHUNK - 1)
			reclaim();
	}
	assert_int_equal(rctx_cset_count(&p->children), cnt0);
	assert_int_equal(rctx_cset_capacity(&p->children), cap0);
	assert_true(rctx_alloc_outstanding() - out0 <= CHUNK);
	for (int i = 0; i < SIBS; i++) {
		assert_false(rctx_done(sibs[i]));
		rctx_release(sibs[i]);
	}
	rctx_release(vs);
	rctx_release(sib);
	rctx_release(p);
}

/* Behaviour 7a: two threads cancel the same context. */
struct race7 {
	rctx_t *p; /* (a'): the parent of c */
	rctx_t *c;
	int ra, rb;
	long round;
};

static void
race7_parent(void *arg)
{
	struct race7 *r = arg;

	r->ra = rctx_cancel_cause(r->p, 1);
}

static void
race7_a(void *arg)
{
	struct race7 *r = arg;

	r->ra = rctx_cancel_cause(r->c, 1);
}

static void
race7_b(void *arg)
{
	struct race7 *r = arg;

	r->rb = rctx_cancel_cause(r->c, 2);
}

/* Behaviour 7b: a callback on the parent cancels the child. */
struct cb7 {
	rctx_t *child;
	int r;
	int ran;
};

static void
cb7_cancel_child(void *arg)
{
	struct cb7 *cb = arg;

	cb->r = rctx_cancel_cause(cb->child, 66);
	cb->ran++;
}

/* Behaviour 7c: every node of a 100-node tree from several threads. */
enum { TREE_N = 100, TREE_THREADS = 3 };

struct tree7 {
	rctx_t *node[TREE_N];
	int parent[TREE_N]; /* index of the cancelable parent, -1: root */
	int order[TREE_THREADS][TREE_N];
	int won[TREE_N][TREE_THREADS];
	pthread_barrier_t go;
};

struct tree7_arg {
	struct tree7 *t;
	int id;
};

static int
tree7_cause(int thread, int node)
{
	return (thread + 1) * 1000 + node + 1;
}

static void *
tree7_thread(void *p)
{
	struct tree7_arg *a = p;
	struct tree7 *t = a->t;

	pthread_barrier_wait(&t->go);
	for (int i = 0; i < TREE_N; i++) {
		int n = t->order[a->id][i];
		int r = rctx_cancel_cause(t->node[n], tree7_cause(a->id, n));

		if (r != 0 && r != -EALREADY)
			t->won[n][a->id] = 100; /* impossible result */
		else
			t->won[n][a->id] = (r == 0);
	}
	return NULL;
}

/*
 * SEMANTICS 7: "Cancel is idempotent and thread-safe: concurrent cancels
 * of the same context, of a parent and child at once (a callback on the
 * parent cancelling the child), and of every node of a 100-node tree in
 * random order from many threads never deadlock, and exactly one cancel
 * wins."
 */
static void
test_s07_concurrent_cancels_one_winner(void **state)
{
	struct race7 r;
	struct duo d;
	uint64_t seed = rnd_seed(7);
	long rounds = SCALED(20000);

	(void)state;
	/* Idempotent. */
	rctx_t *c = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_cancel_cause(c, 8), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rctx_cancel(c), -EALREADY);
		assert_int_equal(rctx_cancel_cause(c, 9), -EALREADY);
	}
	assert_int_equal(rctx_cause(c), 8);
	rctx_release(c);

	/* (a) The same context from two threads. */
	duo_start(&d, race7_b, &r);
	for (r.round = 0; r.round < rounds; r.round++) {
		r.c = rctx_with_cancel(rctx_background());
		duo_round(&d, race7_a);
		/* one returned 0, the other -EALREADY */
		assert_true((r.ra == 0) != (r.rb == 0));
		assert_int_equal(r.ra == 0 ? r.rb : r.ra, -EALREADY);
		assert_int_equal(rctx_cause(r.c), r.ra == 0 ? 1 : 2);
		rctx_release(r.c);
	}
	/* (a') a parent (main, cause 1) and its child (side, cause 2). */
	for (r.round = 0; r.round < rounds; r.round++) {
		r.p = rctx_with_cancel(rctx_background());
		r.c = rctx_with_cancel(r.p);
		duo_round(&d, race7_parent);
		assert_int_equal(r.ra, 0);
		assert_true(r.rb == 0 || r.rb == -EALREADY);
		/* the child's one winner: its own cancel or the parent's */
		assert_int_equal(rctx_cause(r.c), r.rb == 0 ? 2 : 1);
		assert_int_equal(rctx_err(r.c), ECANCELED);
		assert_int_equal(rctx_cset_count(&r.p->children), 0);
		rctx_release(r.c);
		rctx_release(r.p);
	}
	duo_stop(&d);

	/* (b) A callback on the parent cancels the child: the cascade has
	 * already made the child done, so the callback's cancel loses. */
	for (int i = 0; i < 100; i++) {
		rctx_t *p = rctx_with_cancel(rctx_background());
		rctx_after_t reg;
		struct cb7 cb = { .child = rctx_with_cancel(p), .r = 1 };

		assert_int_equal(
		    rctx_after_func(p, &reg, cb7_cancel_child, &cb), 0);
		assert_int_equal(rctx_cancel_cause(p, 11), 0);
		assert_int_equal(cb.ran, 1);
		assert_int_equal(cb.r, -EALREADY);
		assert_int_equal(rctx_cause(cb.child), 11);
		rctx_release(cb.child);
		rctx_release(p);
	}

	/* (c) Every node of a 100-node tree, random order, three threads.
	 * Each node's cause names who won it: a thread's direct cancel of
	 * that node (then that call, and only it, returned 0), or the
	 * cascade from its parent (then no direct call returned 0). */
	struct tree7 *t = calloc(1, sizeof(*t));
	long trees = SCALED(1000);

	assert_non_null(t);
	for (long round = 0; round < trees; round++) {
		pthread_t th[TREE_THREADS];
		struct tree7_arg args[TREE_THREADS];

		for (int n = 0; n < TREE_N; n++) {
			int pi = n ? (int)(rnd(&seed) % (uint64_t)n) : -1;
			rctx_t *pc = pi < 0 ? rctx_background() : t->node[pi];

			t->parent[n] = pi;
			switch (rnd(&seed) % 3) {
			case 0:
				t->node[n] = rctx_with_cancel(pc);
				break;
			case 1:
				t->node[n] = rctx_with_deadline(
				    pc, rctx_now() + HOUR + n);
				break;
			default: {
				rctx_t *v = rctx_with_value(pc, &key_a, &val_1);

				t->node[n] = rctx_with_cancel(v);
				rctx_release(v);
				break;
			}
			}
			assert_non_null(t->node[n]);
		}
		for (int th_i = 0; th_i < TREE_THREADS; th_i++) {
			for (int n = 0; n < TREE_N; n++)
				t->order[th_i][n] = n;
			for (int n = TREE_N - 1; n > 0; n--) {
				int j = (int)(rnd(&seed) % (uint64_t)(n + 1));
				int tmp = t->order[th_i][n];

				t->order[th_i][n] = t->order[th_i][j];
				t->order[th_i][j] = tmp;
			}
		}
		memset(t->won, 0, sizeof(t->won));
		pthread_barrier_init(&t->go, NULL, TREE_THREADS);
		for (int i = 0; i < TREE_THREADS; i++) {
			args[i] = (struct tree7_arg){ .t = t, .id = i };
			xpthread_create(&th[i], tree7_thread, &args[i]);
		}
		for (int i = 0; i < TREE_THREADS; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&t->go);
		for (int n = 0; n < TREE_N; n++) {
			int cause = rctx_cause(t->node[n]);
			int who = cause / 1000 - 1, which = cause % 1000 - 1;
			int wins = 0;

			assert_int_equal(rctx_err(t->node[n]), ECANCELED);
			for (int i = 0; i < TREE_THREADS; i++) {
				assert_true(t->won[n][i] <= 1);
				wins += t->won[n][i];
			}
			assert_true(who >= 0 && who < TREE_THREADS);
			if (which == n) {
				/* won directly by thread `who` */
				assert_int_equal(wins, 1);
				assert_int_equal(t->won[n][who], 1);
			} else {
				/* won by the cascade from the parent */
				assert_int_equal(wins, 0);
				assert_true(t->parent[n] >= 0);
				assert_int_equal(
				    cause, rctx_cause(t->node[t->parent[n]]));
			}
		}
		for (int n = TREE_N - 1; n >= 0; n--)
			rctx_release(t->node[n]);
	}
	free(t);
}

/*
 * SEMANTICS 8: "Depth and width have no limit but memory: a chain 200,000
 * deep cancels and frees without recursion; 100,000 children of one
 * parent all cancel."
 */
static void
test_s08_deep_and_wide(void **state)
{
	enum { DEEP = 200000, WIDE = 100000 };
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *top = rctx_retain(root), *mid = NULL;
	rctx_t **kids;

	(void)state;
	for (int i = 0; i < DEEP; i++) {
		rctx_t *c = (i % 3 == 2) ? rctx_with_value(top, &key_a, &val_1)
					 : rctx_with_cancel(top);

		assert_non_null(c);
		if (i == DEEP / 2)
			mid = rctx_retain(c);
		rctx_release(top); /* the child keeps it alive */
		top = c;
	}
	assert_false(rctx_done(top));
	assert_int_equal(rctx_cancel_cause(root, 808), 0);
	assert_int_equal(rctx_err(top), ECANCELED);
	assert_int_equal(rctx_cause(top), 808);
	assert_int_equal(rctx_cause(mid), 808);
	assert_ptr_equal(rctx_value(top, &key_a), &val_1);
	rctx_release(mid);
	rctx_release(root);
	rctx_release(top); /* frees 200,000 contexts in a loop */

	/* The deep chain again, this time cancelled from the middle and
	 * released without cancelling the rest. */
	root = rctx_with_cancel(rctx_background());
	top = rctx_retain(root);
	for (int i = 0; i < DEEP; i++) {
		rctx_t *c = rctx_with_cancel(top);

		if (i == DEEP / 2)
			mid = rctx_retain(c);
		rctx_release(top);
		top = c;
	}
	assert_int_equal(rctx_cancel(mid), 0);
	assert_true(rctx_done(top));
	assert_false(rctx_done(root));
	rctx_release(mid);
	rctx_release(top);
	rctx_release(root);

	/* 100,000 children of one parent. */
	root = rctx_with_cancel(rctx_background());
	kids = malloc(WIDE * sizeof(*kids));
	assert_non_null(kids);
	for (int i = 0; i < WIDE; i++) {
		kids[i] = i % 10 == 9
			      ? rctx_with_deadline(root, rctx_now() + HOUR)
			      : rctx_with_cancel(root);
		assert_non_null(kids[i]);
	}
	assert_int_equal(rctx_cset_count(&root->children), WIDE);
	assert_int_equal(rctx_cancel_cause(root, 909), 0);
	for (int i = 0; i < WIDE; i++) {
		if (rctx_cause(kids[i]) != 909)
			fail_msg("child %d not cancelled", i);
		assert_int_equal(rctx_err(kids[i]), ECANCELED);
	}
	assert_int_equal(rctx_cset_count(&root->children), 0);
	for (int i = 0; i < WIDE; i++)
		rctx_release(kids[i]);
	free(kids);
	rctx_release(root);
}

/* ------------------------------------------------------------- causes */

/*
 * SEMANTICS 9: "0 while not done. rctx_cancel -> ECANCELED.
 * rctx_cancel_cause(c, X) -> X; X = 0 -> ECANCELED. The first cancel wins:
 * a later cancel changes neither err nor cause."
 */
static void
test_s09_cause_values(void **state)
{
	rctx_t *a = rctx_with_cancel(rctx_background());
	rctx_t *b = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_t *t = rctx_with_deadline(rctx_background(), rctx_now() + HOUR);

	(void)state;
	assert_int_equal(rctx_cause(a), 0);
	assert_int_equal(rctx_cause(t), 0);
	assert_int_equal(rctx_cancel(a), 0);
	assert_int_equal(rctx_err(a), ECANCELED);
	assert_int_equal(rctx_cause(a), ECANCELED);
	assert_int_equal(rctx_cancel_cause(b, 4711), 0);
	assert_int_equal(rctx_err(b), ECANCELED);
	assert_int_equal(rctx_cause(b), 4711);
	assert_int_equal(rctx_cancel_cause(c, 0), 0);
	assert_int_equal(rctx_cause(c), ECANCELED);
	/* negative and large causes are kept as given */
	assert_int_equal(rctx_cancel_cause(t, -17), 0);
	assert_int_equal(rctx_cause(t), -17);
	assert_int_equal(rctx_err(t), ECANCELED);
	/* the first cancel wins */
	assert_int_equal(rctx_cancel_cause(a, 5), -EALREADY);
	assert_int_equal(rctx_cancel_cause(b, 5), -EALREADY);
	assert_int_equal(rctx_cancel(b), -EALREADY);
	assert_int_equal(rctx_cause(a), ECANCELED);
	assert_int_equal(rctx_cause(b), 4711);
	assert_int_equal(rctx_err(b), ECANCELED);
	rctx_t *m = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_cancel_cause(m, INT32_MAX), 0);
	assert_int_equal(rctx_cause(m), INT32_MAX);
	rctx_release(m);
	rctx_release(a);
	rctx_release(b);
	rctx_release(c);
	rctx_release(t);
}

/*
 * SEMANTICS 10: "Through a parent: the child gets the parent's cause. If
 * the child was cancelled first, it keeps its own cause when the parent is
 * cancelled later. Value contexts report the cause of the context they
 * inherit cancellation from."
 */
static void
test_s10_cause_through_parent(void **state)
{
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c1 = rctx_with_cancel(p);
	rctx_t *c2 = rctx_with_cancel(p);
	rctx_t *v1 = rctx_with_value(c1, &key_a, &val_1);
	rctx_t *v2 = rctx_with_value(c2, &key_a, &val_1);
	rctx_t *vp = rctx_with_value(p, &key_a, &val_1);
	rctx_t *g = rctx_with_cancel(v1);

	(void)state;
	assert_int_equal(rctx_cause(v1), 0);
	assert_int_equal(rctx_cancel_cause(c1, 21), 0);
	assert_int_equal(rctx_cause(v1), 21);
	assert_int_equal(rctx_cause(g), 21);
	assert_int_equal(rctx_cause(vp), 0);
	assert_int_equal(rctx_cancel_cause(p, 20), 0);
	assert_int_equal(rctx_cause(c1), 21); /* keeps its own */
	assert_int_equal(rctx_cause(v1), 21);
	assert_int_equal(rctx_cause(g), 21);
	assert_int_equal(rctx_cause(c2), 20); /* inherits */
	assert_int_equal(rctx_cause(v2), 20);
	assert_int_equal(rctx_cause(vp), 20);
	assert_int_equal(rctx_err(v2), ECANCELED);

	/* A value context under a timer reports the timer's cause. */
	rctx_t *t = rctx_with_timeout_cause(rctx_background(), RCTX_MSEC, 33);
	rctx_t *vt = rctx_with_value(t, &key_a, &val_1);
	assert_int_equal(rctx_wait(vt, -1), ETIMEDOUT);
	assert_int_equal(rctx_cause(vt), 33);
	rctx_release(vt);
	rctx_release(t);

	rctx_release(g);
	rctx_release(vp);
	rctx_release(v2);
	rctx_release(v1);
	rctx_release(c2);
	rctx_release(c1);
	rctx_release(p);
}

/*
 * SEMANTICS 11: "Deadlines: expiry gives ETIMEDOUT and cause ETIMEDOUT, or
 * the cause given to _cause variants. Cancelling a deadline context before
 * expiry gives ECANCELED and the cancel's own cause (never the deadline
 * cause). A deadline cause is ignored when the parent's deadline is
 * earlier."
 */
static void
test_s11_deadline_causes(void **state)
{
	rctx_t *a = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	rctx_t *b = rctx_with_timeout_cause(rctx_background(), RCTX_MSEC, 77);
	rctx_t *b2 = rctx_with_deadline_cause(rctx_background(),
					      rctx_now() + RCTX_MSEC, 78);
	rctx_t *c = rctx_with_timeout_cause(rctx_background(), HOUR, 79);
	rctx_t *e =
	    rctx_with_deadline_cause(rctx_background(), rctx_now() + HOUR, 80);
	rctx_t *p =
	    rctx_with_timeout_cause(rctx_background(), 3 * RCTX_MSEC, 11);
	rctx_t *ch = rctx_with_timeout_cause(p, HOUR, 22);
	rctx_t *ch2 = rctx_with_deadline_cause(p, rctx_now() + HOUR, 23);

	(void)state;
	assert_int_equal(rctx_wait(a, -1), ETIMEDOUT);
	assert_int_equal(rctx_cause(a), ETIMEDOUT);
	assert_int_equal(rctx_wait(b, -1), ETIMEDOUT);
	assert_int_equal(rctx_cause(b), 77);
	assert_int_equal(rctx_wait(b2, -1), ETIMEDOUT);
	assert_int_equal(rctx_cause(b2), 78);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_err(c), ECANCELED);
	assert_int_equal(rctx_cause(c), ECANCELED);
	assert_int_equal(rctx_cancel_cause(e, 81), 0);
	assert_int_equal(rctx_err(e), ECANCELED);
	assert_int_equal(rctx_cause(e), 81);
	assert_int_equal(rctx_wait(ch, -1), ETIMEDOUT);
	assert_int_equal(rctx_cause(ch), 11);
	assert_int_equal(rctx_wait(ch2, -1), ETIMEDOUT);
	assert_int_equal(rctx_cause(ch2), 11);
	assert_int_equal(rctx_cause(p), 11);
	/* expired contexts stay as they are */
	assert_int_equal(rctx_cancel_cause(b, 5), -EALREADY);
	assert_int_equal(rctx_cause(b), 77);
	assert_int_equal(rctx_err(b), ETIMEDOUT);
	rctx_release(ch2);
	rctx_release(ch);
	rctx_release(p);
	rctx_release(e);
	rctx_release(c);
	rctx_release(b2);
	rctx_release(b);
	rctx_release(a);
}

/* Behaviour 12: observers see err and cause together. */
struct race12 {
	rctx_t *root, *leaf;
	rctx_t *timer;
	int cause;
	int seen_err, seen_cause;
	int timer_err, timer_cause;
};

static void
race12_cancel(void *arg)
{
	struct race12 *r = arg;

	assert_int_equal(rctx_cancel_cause(r->root, r->cause), 0);
	/* racing the timer: either may win */
	(void)rctx_cancel_cause(r->timer, r->cause);
}

static void
race12_observe(void *arg)
{
	struct race12 *r = arg;
	int e, spins = 0;

	while ((e = rctx_err(r->leaf)) == 0)
		if (++spins % 16384 == 0)
			sched_yield();
	r->seen_err = e;
	r->seen_cause = rctx_cause(r->leaf);
	while ((e = rctx_err(r->timer)) == 0)
		if (++spins % 16384 == 0)
			sched_yield();
	r->timer_err = e;
	r->timer_cause = rctx_cause(r->timer);
}

/*
 * SEMANTICS 12: "err and cause are published together: a thread that sees
 * a non-zero err sees the matching cause (race it)."
 */
static void
test_s12_err_and_cause_together(void **state)
{
	struct race12 r;
	struct duo d;
	long rounds = SCALED(10000);

	(void)state;
	duo_start(&d, race12_observe, &r);
	for (long i = 0; i < rounds; i++) {
		rctx_t *v;

		r.root = rctx_with_cancel(rctx_background());
		v = rctx_with_value(r.root, &key_a, &val_1);
		r.leaf = rctx_with_cancel(v);
		rctx_release(v);
		/* a timer due about now: its expiry races the cancel */
		r.timer = rctx_with_deadline_cause(rctx_background(),
						   rctx_now() + 20 * RCTX_USEC,
						   -(int)i - 1);
		r.cause = (int)i + 1;
		duo_round(&d, race12_cancel);
		assert_int_equal(r.seen_err, ECANCELED);
		assert_int_equal(r.seen_cause, r.cause);
		if (r.timer_err == ETIMEDOUT)
			assert_int_equal(r.timer_cause, -(int)i - 1);
		else {
			assert_int_equal(r.timer_err, ECANCELED);
			assert_int_equal(r.timer_cause, r.cause);
		}
		assert_int_equal(rctx_err(r.timer), r.timer_err);
		assert_int_equal(rctx_cause(r.timer), r.timer_cause);
		rctx_release(r.timer);
		rctx_release(r.leaf);
		rctx_release(r.root);
	}
	duo_stop(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s05_cancel_reaches_every_descendant),
		cmocka_unit_test(test_s06_child_leaves_parent_set),
		cmocka_unit_test(test_s07_concurrent_cancels_one_winner),
		cmocka_unit_test(test_s08_deep_and_wide),
		cmocka_unit_test(test_s09_cause_values),
		cmocka_unit_test(test_s10_cause_through_parent),
		cmocka_unit_test(test_s11_deadline_causes),
		cmocka_unit_test(test_s12_err_and_cause_together),
	};

	return RUN_TESTS(tests);
}
