/* SPDX-License-Identifier: MIT */
/* Stress: threads derive, cancel, release and register on one shared tree. */

/*
 * Each round, NTHREADS threads grow a random tree of published nodes (a
 * node is retained before it is stored in the shared array, so the array
 * owns one reference for the whole round) and, at random, cancel nodes
 * with a cause that names the node, derive private children that they
 * cancel or drop at once, register after-funcs (some of which cancel
 * another node from inside fn) and stop them, and read err/cause pairs.
 * Timeout nodes of 1-3 ms expire on the library's timer threads meanwhile.
 *
 * After the threads are joined, the round is checked:
 *  - a node's cause names the node X whose cancel (or deadline) decided
 *    it; X is the node itself or an ancestor reachable without crossing a
 *    without_cancel, X's err kind matches, and X's own cancel won;
 *  - no ancestor Y whose winning cancel RETURNED before X's cancel was
 *    CALLED lies on that path (the first cancel wins, as linearised by a
 *    global ticket counter);
 *  - a live node has no winning ancestor on its path;
 *  - each node has at most one winning cancel;
 *  - then every node is cancelled, and every after-func either ran exactly
 *    once or its stop returned true, never both, never neither.
 * At the end all references are dropped, rctx_shutdown() runs and every
 * context obtained from malloc must have been returned.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "rctx.h"

/* Checks for worker threads: cmocka's asserts must stay on the main thread. */

#include "util.h"

#define NTHREADS	4
#define NODES		600
#define OPS_PER_THREAD	2000
#define REGS_PER_THREAD 200
#define ROUNDS		(40 * RCTX_STRESS_SCALE)
#define CAUSE_BASE	(1 << 20) /* cancel cause of node i: CAUSE_BASE + i */
#define TCAUSE_BASE	(1 << 24) /* deadline cause of node i */
#define FINAL_CAUSE	7

enum kind { K_CANCEL, K_TIMEOUT, K_VALUE, K_WITHOUT };

struct snode {
	_Atomic(rctx_t *) ctx; /* published with release; one ref */
	int parent;	       /* index, -1 for background */
	enum kind kind;
	bool short_t;	  /* a timeout that expires within the round */
	_Atomic int wins; /* cancels of this node that returned 0 */
	_Atomic uint64_t before, after; /* tickets around the winning call */
};

struct sreg {
	rctx_after_t reg;
	int node;
	int target; /* node fn cancels, or -1 */
	_Atomic int ran;
	bool registered;
	bool stopped_true;
};

static struct snode nodes[NODES];
static _Atomic int nclaimed;
static _Atomic uint64_t ticket;
static struct sreg regs[NTHREADS][REGS_PER_THREAD];
static int nregs[NTHREADS];
static _Atomic long total_ops;
static char key;

/* A published node, or -1 (none yet, or an unpublished claim). */
static int
pick(uint64_t *s, rctx_t **c)
{
	/* acquire: pairs with nothing; any count is a valid bound */
	int n = atomic_load_explicit(&nclaimed, memory_order_acquire);
	if (n > NODES)
		n = NODES;
	if (n == 0)
		return -1;
	int i = (int)(rnd(s) % (uint64_t)n);
	/* acquire: pairs with the release store in publish() so the node's
	 * metadata and the context's construction are visible */
	*c = atomic_load_explicit(&nodes[i].ctx, memory_order_acquire);
	return *c ? i : -1;
}

/* Cancel node i with its own cause; record a win with its tickets. */
static void
cancel_node(int i, rctx_t *c)
{
	/* seq_cst: tickets order the calls globally (see the top comment) */
	/* seq_cst: the ticket counter is one total order (top comment) */
	uint64_t b = atomic_fetch_add(&ticket, 1);
	int rc = rctx_cancel_cause(c, CAUSE_BASE + i);
	uint64_t a = atomic_fetch_add(&ticket, 1);

	if (nodes[i].kind == K_VALUE || nodes[i].kind == K_WITHOUT) {
		WCHECK((rc) == (-EINVAL));
		return;
	}
	WCHECK(rc == 0 || rc == -EALREADY);
	if (rc == 0) {
		/* relaxed: read after the threads are joined */
		atomic_store_explicit(&nodes[i].before, b,
				      memory_order_relaxed);
		atomic_store_explicit(&nodes[i].after, a, memory_order_relaxed);
		atomic_fetch_add_explicit(&nodes[i].wins, 1,
					  memory_order_relaxed);
	}
}

static void
after_fn(void *arg)
{
	struct sreg *r = arg;

	/* relaxed: read after the threads are joined */
	atomic_fetch_add_explicit(&r->ran, 1, memory_order_relaxed);
	if (r->target >= 0) {
		/* acquire: pairs with the release store in publish() */
		rctx_t *c = atomic_load_explicit(&nodes[r->target].ctx,
						 memory_order_acquire);
		if (c)
			cancel_node(r->target, c);
	}
}

/* err and cause must be published together (SEMANTICS 12). */
static void
check_pair(rctx_t *c)
{
	int err = rctx_err(c);
	int cause = rctx_cause(c);

	if (err == 0)
		return;
	if (err == ECANCELED)
		WCHECK((cause >= CAUSE_BASE && cause < CAUSE_BASE + NODES) ||
		       cause == FINAL_CAUSE);
	else
		WCHECK(err == ETIMEDOUT && cause >= TCAUSE_BASE &&
		       cause < TCAUSE_BASE + NODES);
}

static void
derive(uint64_t *s)
{
	rctx_t *p = NULL;
	int pi = rnd(s) % 8 == 0 ? -1 : pick(s, &p);
	if (pi < 0)
		p = rctx_background();
	/* relaxed: the claim only needs to be unique */
	int i = atomic_fetch_add_explicit(&nclaimed, 1, memory_order_relaxed);
	if (i >= NODES)
		return;
	struct snode *n = &nodes[i];
	rctx_t *c;
	unsigned k = rnd(s) % 10;

	n->parent = pi;
	n->short_t = false;
	if (k < 4) {
		n->kind = K_CANCEL;
		c = rctx_with_cancel(p);
	} else if (k < 7) {
		n->kind = K_TIMEOUT;
		n->short_t = rnd(s) % 3 == 0;
		rctx_time_t t =
		    n->short_t ? (1 + rnd(s) % 3) * RCTX_MSEC : 3600 * RCTX_SEC;
		c = rctx_with_timeout_cause(p, t, TCAUSE_BASE + i);
	} else if (k < 9) {
		n->kind = K_VALUE;
		c = rctx_with_value(p, &key, n);
	} else {
		n->kind = K_WITHOUT;
		c = rctx_without_cancel(p);
	}
	WCHECK((c) != NULL);
	rctx_retain(c); /* the array's reference */
	/* release: publishes the node's metadata and the context; pairs with
	 * the acquire loads in pick() and after_fn() */
	atomic_store_explicit(&n->ctx, c, memory_order_release);
	check_pair(c);
	rctx_release(c); /* ours */
}

/* A private child, cancelled or dropped at once, racing everything. */
static void
private_child(uint64_t *s)
{
	rctx_t *p;
	if (pick(s, &p) < 0)
		return;
	rctx_t *c = rnd(s) & 1 ? rctx_with_cancel(p)
			       : rctx_with_timeout(p, (rnd(s) % 2) * RCTX_MSEC);
	WCHECK((c) != NULL);
	rctx_t *v = rctx_with_value(c, &key, NULL);
	WCHECK((v) != NULL);
	if (rnd(s) & 1) {
		int rc = rctx_cancel(c);
		WCHECK(rc == 0 || rc == -EALREADY);
		WCHECK(rctx_done(v));
	}
	rctx_release(c);
	rctx_release(v);
}

static void
register_after(int t, uint64_t *s)
{
	rctx_t *c;
	int i = pick(s, &c);
	if (i < 0 || nregs[t] == REGS_PER_THREAD)
		return;
	struct sreg *r = &regs[t][nregs[t]++];
	r->node = i;
	r->target = rnd(s) % 4 == 0 ? (int)(rnd(s) % NODES) : -1;
	atomic_init(&r->ran, 0);
	WCHECK(rctx_after_func(c, &r->reg, after_fn, r) == 0);
	r->registered = true;
}

static void
stop_after(int t, uint64_t *s)
{
	if (nregs[t] == 0)
		return;
	struct sreg *r = &regs[t][rnd(s) % nregs[t]];
	if (!r->registered || r->stopped_true)
		return;
	if (rctx_after_stop(&r->reg))
		r->stopped_true = true;
}

struct targ {
	int t;
	uint64_t seed;
};

static void *
worker(void *arg)
{
	struct targ *ta = arg;
	uint64_t s = ta->seed;
	long ops = 0;

	for (int k = 0; k < OPS_PER_THREAD; k++, ops++) {
		rctx_t *c;
		int i;
		unsigned op = rnd(&s) % 100;
		if (op < 30) {
			derive(&s);
		} else if (op < 42) {
			if ((i = pick(&s, &c)) >= 0)
				cancel_node(i, c);
		} else if (op < 55) {
			private_child(&s);
		} else if (op < 68) {
			register_after(ta->t, &s);
		} else if (op < 75) {
			stop_after(ta->t, &s);
		} else if ((i = pick(&s, &c)) >= 0) {
			rctx_retain(c);
			check_pair(c);
			WCHECK(rctx_value(c, &key) != NULL ||
			       nodes[i].kind != K_VALUE);
			rctx_release(c);
		}
	}
	/* relaxed: a statistic read after join */
	atomic_fetch_add_explicit(&total_ops, ops, memory_order_relaxed);
	return NULL;
}

/* Nodes on the path from i up to (not across) a without_cancel. */
static bool
on_path(int i, int x)
{
	for (int a = i; a >= 0; a = nodes[a].parent) {
		if (a == x)
			return true;
		if (nodes[a].kind == K_WITHOUT)
			return false;
	}
	return false;
}

/*
 * Let every expiry of the round finish before checking: wait until each
 * node under a short timeout is done (its cascade has reached it), then
 * stop every after-func that cancels another node, which waits for a
 * running fn (rctx_after_stop returns only when fn is not running).
 */
static void
quiesce(int n)
{
	for (int i = 0; i < n; i++) {
		for (int a = i; a >= 0; a = nodes[a].parent) {
			if (nodes[a].kind == K_WITHOUT)
				break;
			if (nodes[a].short_t) {
				/* seq_cst: workers joined (check_round) */
				rctx_t *c = atomic_load(&nodes[i].ctx);
				assert_int_not_equal(rctx_wait(c, -1), 0);
				break;
			}
		}
	}
	for (int t = 0; t < NTHREADS; t++)
		for (int k = 0; k < nregs[t]; k++) {
			struct sreg *r = &regs[t][k];
			if (r->target >= 0 && !r->stopped_true &&
			    rctx_after_stop(&r->reg))
				r->stopped_true = true;
		}
}

static void
dump_path(int i)
{
	/*
	 * Default (seq_cst) atomics below: the workers are joined, so the join
	 * orders everything; the atomic accessors only match the types.
	 */
	for (int a = i; a >= 0; a = nodes[a].parent) {
		rctx_t *c = atomic_load(&nodes[a].ctx);
		print_message("  node %d kind %d err %d cause %d wins %d "
			      "tickets %llu..%llu\n",
			      a, nodes[a].kind, rctx_err(c), rctx_cause(c),
			      atomic_load(&nodes[a].wins),
			      (unsigned long long)atomic_load(&nodes[a].before),
			      (unsigned long long)atomic_load(&nodes[a].after));
	}
}

static void
check_round(int n)
{
	/*
	 * Default (seq_cst) atomics below: the workers are joined, so the join
	 * orders everything; the atomic accessors only match the types.
	 */
	for (int i = 0; i < n; i++) {
		struct snode *d = &nodes[i];
		rctx_t *c = atomic_load(&d->ctx);
		int err = rctx_err(c);
		int cause = rctx_cause(c);
		int wins = atomic_load(&d->wins);

		assert_true(wins <= 1);
		if (wins == 1) {
			assert_int_equal(err, ECANCELED);
			assert_int_equal(cause, CAUSE_BASE + i);
		}
		if (err == 0) {
			assert_int_equal(cause, 0);
			for (int a = i; a >= 0 && d->kind != K_WITHOUT;
			     a = nodes[a].parent) {
				if (nodes[a].kind == K_WITHOUT)
					break;
				if (rctx_done(atomic_load(&nodes[a].ctx)))
					fail_msg("node %d live under done "
						 "node %d",
						 i, a);
			}
			continue;
		}
		int x;
		if (err == ECANCELED) {
			x = cause - CAUSE_BASE;
			assert_true(x >= 0 && x < n);
			assert_int_equal(atomic_load(&nodes[x].wins), 1);
		} else {
			assert_int_equal(err, ETIMEDOUT);
			x = cause - TCAUSE_BASE;
			assert_true(x >= 0 && x < n);
			assert_int_equal(nodes[x].kind, K_TIMEOUT);
			assert_int_equal(rctx_cause(atomic_load(&nodes[x].ctx)),
					 cause);
		}
		if (!on_path(i, x))
			fail_msg("node %d has the cause of node %d, not on its "
				 "path",
				 i, x);
		if (err != ECANCELED)
			continue;
		uint64_t xb = atomic_load(&nodes[x].before);
		for (int a = i; a >= 0; a = nodes[a].parent) {
			if (nodes[a].kind == K_WITHOUT)
				break;
			if (a != x && atomic_load(&nodes[a].wins) &&
			    atomic_load(&nodes[a].after) < xb) {
				dump_path(i);
				fail_msg("node %d took node %d's cause though "
					 "node %d was cancelled first",
					 i, x, a);
			}
		}
	}
}

static void
finish_round(int n)
{
	/*
	 * Default (seq_cst) atomics below: the workers are joined, so the join
	 * orders everything; the atomic accessors only match the types.
	 */
	/* Cancel everything that can be: parents come before children. */
	for (int i = 0; i < n; i++) {
		rctx_t *c = atomic_load(&nodes[i].ctx);
		if (nodes[i].kind == K_CANCEL || nodes[i].kind == K_TIMEOUT) {
			int rc = rctx_cancel_cause(c, FINAL_CAUSE);
			assert_true(rc == 0 || rc == -EALREADY);
			assert_true(rctx_done(c));
		}
	}
	for (int t = 0; t < NTHREADS; t++) {
		for (int k = 0; k < nregs[t]; k++) {
			struct sreg *r = &regs[t][k];
			if (!r->stopped_true && rctx_after_stop(&r->reg))
				r->stopped_true = true;
			int ran = atomic_load(&r->ran);
			if (ran + (int)r->stopped_true != 1)
				fail_msg("after-func on node %d: ran %d, stop "
					 "returned true %d",
					 r->node, ran, r->stopped_true);
		}
	}
	for (int i = 0; i < n; i++) {
		rctx_release(atomic_load(&nodes[i].ctx));
		atomic_store(&nodes[i].ctx, NULL);
		atomic_store(&nodes[i].wins, 0);
	}
	memset(regs, 0, sizeof(regs));
	memset(nregs, 0, sizeof(nregs));
	atomic_store(&nclaimed, 0);
}

static void
test_cascade(void **state)
{
	(void)state;
	for (int round = 0; round < ROUNDS; round++) {
		struct targ ta[NTHREADS];

		for (int t = 0; t < NTHREADS; t++) {
			ta[t].t = t;
			ta[t].seed = rnd_seed((uint64_t)round * 8 + t);
		}
		tg_run(NTHREADS, worker, ta, sizeof(ta[0]));
		/* seq_cst: after join, see the comment in check_round */
		int n = atomic_load(&nclaimed);
		if (n > NODES)
			n = NODES;
		quiesce(n);
		check_round(n);
		finish_round(n);
	}
	assert_true(shutdown_clean());
	printf("# stress-cascade: %ld operations in %d rounds\n",
	       atomic_load(&total_ops), ROUNDS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cascade),
	};
	return RUN_TESTS(tests);
}
