/* SPDX-License-Identifier: MIT */
/* Stress: derive racing cancel, many cancellers per node, err/cause pairs. */
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

#include <cmocka.h>

#include "rctx.h"

#include "util.h"

/* A failed check in a worker thread, with a message (see WCHECK). */
#define WFAIL(...)                                                             \
	do {                                                                   \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		abort();                                                       \
	} while (0)

static char key;

/* ---- SEMANTICS 4: derive racing cancel ------------------------------- */

#define DR_ROUNDS   (3000 * RCTX_STRESS_SCALE)
#define DR_CHILDREN 24

struct dr {
	rctx_t *parent;	 /* a cancel context */
	rctx_t *vparent; /* a value context over it */
	rctx_t *kids[DR_CHILDREN];
	struct gate gate;
	int cause;
};

static void *
dr_deriver(void *arg)
{
	struct dr *d = arg;

	gate_pass(&d->gate);
	for (int i = 0; i < DR_CHILDREN; i++) {
		rctx_t *p = i & 1 ? d->vparent : d->parent;
		switch (i % 4) {
		case 0:
			d->kids[i] = rctx_with_cancel(p);
			break;
		case 1:
			d->kids[i] = rctx_with_timeout(p, 3600 * RCTX_SEC);
			break;
		case 2:
			d->kids[i] = rctx_with_value(p, &key, NULL);
			break;
		default:
			d->kids[i] = rctx_with_deadline_cause(
			    p, rctx_now() + 3600 * RCTX_SEC, 5);
			break;
		}
		WCHECK((d->kids[i]) != NULL);
	}
	return NULL;
}

static void
test_derive_vs_cancel(void **state)
{
	(void)state;
	for (int r = 0; r < DR_ROUNDS; r++) {
		struct dr d;
		pthread_t th;

		memset(&d, 0, sizeof(d));
		d.parent = rctx_with_cancel(rctx_background());
		d.vparent = rctx_with_value(d.parent, &key, &d);
		d.cause = 1000 + r;
		gate_init(&d.gate, 2);
		assert_int_equal(pthread_create(&th, NULL, dr_deriver, &d), 0);
		gate_pass(&d.gate);
		/* Let the deriver get a little way in, by round. */
		for (volatile int spin = 0; spin < (r % 32) * 50; spin++)
			;
		assert_int_equal(rctx_cancel_cause(d.parent, d.cause), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
		for (int i = 0; i < DR_CHILDREN; i++) {
			/* Cancelled by that cancel or born done: never live. */
			if (rctx_err(d.kids[i]) != ECANCELED ||
			    rctx_cause(d.kids[i]) != d.cause)
				fail_msg("round %d child %d: err %d cause %d",
					 r, i, rctx_err(d.kids[i]),
					 rctx_cause(d.kids[i]));
			rctx_release(d.kids[i]);
		}
		rctx_release(d.vparent);
		rctx_release(d.parent);
	}
}

/* ---- SEMANTICS 7: every node of a tree cancelled by many threads ----- */

#define TREE_N	     100
#define TREE_THREADS 4
#define TREE_ROUNDS  (300 * RCTX_STRESS_SCALE)

struct tree {
	rctx_t *node[TREE_N];
	int parent[TREE_N];
	bool cancelable[TREE_N];
	_Atomic int wins[TREE_N];
	_Atomic int winner[TREE_N]; /* thread whose cancel won */
	struct gate gate;
};

struct tree_arg {
	struct tree *t;
	int thread;
	uint64_t seed;
};

static int
tree_cause(int thread, int node)
{
	return (thread + 1) * 1000 + node;
}

static void *
tree_canceller(void *arg)
{
	struct tree_arg *a = arg;
	struct tree *t = a->t;
	int order[TREE_N];

	for (int i = 0; i < TREE_N; i++)
		order[i] = i;
	for (int i = TREE_N - 1; i > 0; i--) {
		int j = (int)(rnd(&a->seed) % (uint64_t)(i + 1));
		int x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	gate_pass(&t->gate);
	for (int k = 0; k < TREE_N; k++) {
		int i = order[k];
		int rc =
		    rctx_cancel_cause(t->node[i], tree_cause(a->thread, i));
		if (!t->cancelable[i]) {
			WCHECK((rc) == (-EINVAL));
			continue;
		}
		WCHECK(rc == 0 || rc == -EALREADY);
		if (rc == 0) {
			/* relaxed: read after join */
			atomic_fetch_add_explicit(&t->wins[i], 1,
						  memory_order_relaxed);
			atomic_store_explicit(&t->winner[i], a->thread,
					      memory_order_relaxed);
		}
		/* Our cancel (won or not) returned: the node is done. */
		WCHECK(rctx_done(t->node[i]));
	}
	return NULL;
}

static void
test_cancel_every_node(void **state)
{
	(void)state;
	uint64_t seed = rnd_seed(0);

	for (int r = 0; r < TREE_ROUNDS; r++) {
		struct tree *t = calloc(1, sizeof(*t));
		struct tree_arg ta[TREE_THREADS];

		assert_non_null(t);
		gate_init(&t->gate, TREE_THREADS);
		for (int i = 0; i < TREE_N; i++) {
			int p = i == 0 ? -1 : (int)(rnd(&seed) % (uint64_t)i);
			rctx_t *pc = p < 0 ? rctx_background() : t->node[p];
			unsigned k = i == 0 ? 0 : rnd(&seed) % 8;
			t->parent[i] = p;
			t->cancelable[i] = k < 6;
			if (k < 4)
				t->node[i] = rctx_with_cancel(pc);
			else if (k < 6)
				t->node[i] =
				    rctx_with_timeout(pc, 3600 * RCTX_SEC);
			else
				t->node[i] = rctx_with_value(pc, &key, NULL);
			assert_non_null(t->node[i]);
		}
		for (int k = 0; k < TREE_THREADS; k++) {
			ta[k].t = t;
			ta[k].thread = k;
			ta[k].seed =
			    rnd_seed(1 + (uint64_t)r * TREE_THREADS + k);
		}
		tg_run(TREE_THREADS, tree_canceller, ta, sizeof(ta[0]));
		for (int i = 0; i < TREE_N; i++) {
			int err = rctx_err(t->node[i]);
			int cause = rctx_cause(t->node[i]);
			/* seq_cst: workers joined; the join orders it */
			int wins = atomic_load(&t->wins[i]);

			assert_int_equal(err, ECANCELED);
			if (!t->cancelable[i])
				continue;
			assert_true(wins <= 1);
			if (wins == 1) {
				/* The winner's cause stays. */
				assert_int_equal(
				    cause,
				    tree_cause(atomic_load(&t->winner[i]), i));
				continue;
			}
			/* Cancelled through an ancestor whose cancel won. */
			int j = cause % 1000, th_id = cause / 1000 - 1;
			bool found = false;
			for (int a = t->parent[i]; a >= 0; a = t->parent[a])
				if (a == j)
					found = true;
			if (!found || atomic_load(&t->wins[j]) != 1 ||
			    atomic_load(&t->winner[j]) != th_id)
				fail_msg("round %d node %d: cause %d names no "
					 "winning ancestor",
					 r, i, cause);
		}
		for (int i = TREE_N - 1; i >= 0; i--)
			rctx_release(t->node[i]);
		free(t);
	}
}

/* ---- SEMANTICS 12: err and cause are published together -------------- */

#define PAIR_ROUNDS (2000 * RCTX_STRESS_SCALE)

struct pair {
	rctx_t *c, *child, *val;
	int cause;
	struct gate gate;
};

static void
check_seen(rctx_t *c, int want_err, int want_cause)
{
	int err = rctx_err(c);
	if (err == 0)
		return;
	int cause = rctx_cause(c);
	if (err != want_err || cause != want_cause)
		WFAIL("saw err %d with cause %d, want %d/%d", err, cause,
		      want_err, want_cause);
}

static void *
pair_reader(void *arg)
{
	struct pair *p = arg;

	gate_pass(&p->gate);
	while (!rctx_done(p->val)) {
		for (int i = 0; i < 64; i++) {
			check_seen(p->c, ECANCELED, p->cause);
			check_seen(p->child, ECANCELED, p->cause);
		}
		sched_yield(); /* 2 shared cores: let the canceller run */
	}
	check_seen(p->val, ECANCELED, p->cause);
	return NULL;
}

static void
test_err_cause_together(void **state)
{
	(void)state;
	for (int r = 0; r < PAIR_ROUNDS; r++) {
		struct pair p;
		pthread_t th;

		memset(&p, 0, sizeof(p));
		p.c = rctx_with_cancel(rctx_background());
		p.child = rctx_with_cancel(p.c);
		p.val = rctx_with_value(p.child, &key, NULL);
		p.cause = r % 2 ? 77 + r : 0 - r - 1;
		gate_init(&p.gate, 2);
		assert_int_equal(pthread_create(&th, NULL, pair_reader, &p), 0);
		gate_pass(&p.gate);
		assert_int_equal(rctx_cancel_cause(p.c, p.cause), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(rctx_cause(p.val), p.cause);
		rctx_release(p.val);
		rctx_release(p.child);
		rctx_release(p.c);
	}
}

/* Deadlines: ETIMEDOUT comes with the deadline's cause, on the timer thread. */
static void
test_err_cause_deadline(void **state)
{
	(void)state;
	for (int r = 0; r < 200 * RCTX_STRESS_SCALE; r++) {
		int cause = 500 + r;
		rctx_t *c = rctx_with_timeout_cause(
		    rctx_background(), (r % 3) * RCTX_USEC * 300, cause);
		assert_non_null(c);
		rctx_t *v = rctx_with_value(c, &key, NULL);
		while (!rctx_done(v)) {
			int err = rctx_err(c);
			if (err != 0)
				assert_int_equal(rctx_cause(c), cause);
			sched_yield();
		}
		assert_int_equal(rctx_err(v), ETIMEDOUT);
		assert_int_equal(rctx_cause(v), cause);
		rctx_release(v);
		rctx_release(c);
	}
}

/* ---- I3 under overlapping cancels ------------------------------------ */

#define MID_WIDTH  400
#define MID_ROUNDS (60 * RCTX_STRESS_SCALE)

struct mid {
	rctx_t *root, *mid, *leaf[MID_WIDTH], *grand[MID_WIDTH];
	_Atomic int go;
};

static void *
mid_canceller(void *arg)
{
	struct mid *m = arg;

	/* seq_cst: pairs with the store of go in the test */
	while (!atomic_load(&m->go))
		sched_yield();
	WCHECK(rctx_cancel_cause(m->mid, 2) == 0);
	return NULL;
}

/*
 * A cancel of the root racing a cancel of a middle node: when the root's
 * cancel returns, every leaf under the middle node is done too (SEMANTICS
 * 5, tree.c I3), although the other thread may still be walking them.
 */
static void
test_overlapping_cancels(void **state)
{
	(void)state;
	struct mid *m = calloc(1, sizeof(*m));
	assert_non_null(m);

	for (int r = 0; r < MID_ROUNDS; r++) {
		pthread_t th;

		m->root = rctx_with_cancel(rctx_background());
		m->mid = rctx_with_cancel(m->root);
		for (int i = 0; i < MID_WIDTH; i++) {
			m->leaf[i] = rctx_with_cancel(m->mid);
			m->grand[i] = rctx_with_cancel(m->leaf[i]);
		}
		atomic_store(&m->go, 0);
		assert_int_equal(pthread_create(&th, NULL, mid_canceller, m),
				 0);
		/* seq_cst: pairs with the spin in mid_canceller */
		atomic_store(&m->go, 1);
		/* Odd rounds: the other canceller is half way through. */
		rctx_t *seen = r & 1 ? m->leaf[MID_WIDTH / 2] : m->mid;
		while (!rctx_done(seen))
			sched_yield();
		int rc = rctx_cancel_cause(m->root, 1);
		assert_int_equal(rc, 0);
		int live = 0;
		for (int i = 0; i < MID_WIDTH; i++)
			live +=
			    !rctx_done(m->leaf[i]) + !rctx_done(m->grand[i]);
		assert_int_equal(pthread_join(th, NULL), 0);
		if (live)
			fail_msg("round %d: rctx_cancel(root) returned with "
				 "%d of %d descendants live",
				 r, live, 2 * MID_WIDTH);
		for (int i = 0; i < MID_WIDTH; i++) {
			rctx_release(m->grand[i]);
			rctx_release(m->leaf[i]);
		}
		rctx_release(m->mid);
		rctx_release(m->root);
	}
	free(m);
}

/*
 * A stop racing the cancel that claims its registration, when the
 * registration holds the context's last reference: the claimer runs fn
 * and drops that reference, the context is freed at once, and the
 * canceller's next derive reuses its memory. The stop must not read the
 * context (its state, its children slot) once that can happen; TSan
 * reported the stop's read racing the new context's initialisation
 * (issue 10's torture, after.c after.F).
 */
struct last_ref {
	rctx_t *p;
	rctx_after_t reg;
	_Atomic int ran;
};

static void
last_ref_cancel(void *arg)
{
	struct last_ref *l = arg;
	rctx_t *x;

	(void)rctx_cancel(l->p);
	/* reuse the memory the cascade just freed */
	x = rctx_with_cancel(rctx_background());
	WCHECK(x != NULL);
	rctx_release(x);
}

static void
last_ref_stop(void *arg)
{
	struct last_ref *l = arg;
	bool stopped = rctx_after_stop(&l->reg);

	/* stop true: fn never runs; false: fn has returned already */
	WCHECK(atomic_load(&l->ran) == (stopped ? 0 : 1));
}

static void
test_stop_vs_last_reference(void **state)
{
	enum { ROUNDS = 20000 * RCTX_STRESS_SCALE };
	struct last_ref l;
	struct duo d;

	(void)state;
	duo_start(&d, last_ref_cancel, &l);
	for (long i = 0; i < ROUNDS; i++) {
		rctx_t *c;

		l.p = rctx_with_cancel(rctx_background());
		c = rctx_with_cancel(l.p);
		WCHECK(l.p != NULL && c != NULL);
		atomic_store(&l.ran, 0);
		WCHECK(rctx_after_func(c, &l.reg, count_fn, &l.ran) == 0);
		rctx_release(c); /* the registration holds the last one */
		duo_round(&d, last_ref_stop);
		rctx_release(l.p);
	}
	duo_stop(&d);
}

static rctx_time_t test_t0;

static int
timer_start(void **state)
{
	(void)state;
	test_t0 = rctx_now();
	return 0;
}

static int
timer_stop(void **state)
{
	(void)state;
	print_message("# %.2f s\n", (double)(rctx_now() - test_t0) / 1e9);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_derive_vs_cancel,
						timer_start, timer_stop),
		cmocka_unit_test_setup_teardown(test_cancel_every_node,
						timer_start, timer_stop),
		cmocka_unit_test_setup_teardown(test_err_cause_together,
						timer_start, timer_stop),
		cmocka_unit_test_setup_teardown(test_err_cause_deadline,
						timer_start, timer_stop),
		cmocka_unit_test_setup_teardown(test_overlapping_cancels,
						timer_start, timer_stop),
		cmocka_unit_test_setup_teardown(test_stop_vs_last_reference,
						timer_start, timer_stop),
	};
	return RUN_TESTS(tests);
}
