/* SPDX-License-Identifier: MIT */
/* One test per numbered behaviour of docs/semantics.md (1 to 28). */

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
#include "value.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#ifndef RCTX_STRESS_SCALE
#define RCTX_STRESS_SCALE 1
#endif
#define SCALED(n) ((long)(n)*RCTX_STRESS_SCALE)

#define HOUR (3600 * RCTX_SEC)

static int key_a, key_b, key_c, key_d;
static int val_1, val_2, val_3;

/* ----------------------------------------------------------- helpers */

static bool
readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Block until fd is readable; fails the test only if it never becomes so
 * (the bound is a hang guard, not a timing assertion). */
static bool
becomes_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 60 * 1000) == 1 && (p.revents & POLLIN);
}

static uint32_t
refs_of(rctx_t *c)
{
	/* relaxed: read while no other thread touches c */
	return atomic_load_explicit(&c->refs, memory_order_relaxed);
}

/* Let every context freed so far reach the allocator's pool. */
static void
reclaim(void)
{
	rctx_alloc_flush();
	rctx_alloc_barrier();
}

/* Deterministic pseudo-random numbers (xorshift64*). */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void
xpthread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
}

static void
spin_delay(long n)
{
	for (volatile long i = n; i > 0; i--)
		;
}

/*
 * Two threads meet: each bumps `arrived` and spins until the other has
 * too. Spinning (yielding only after a long while, so that a descheduled
 * partner still gets a CPU) lines the two up within about a microsecond,
 * where a futex barrier leaves them several microseconds apart. The last
 * to arrive still leaves first, by a cache-line transfer; with `jitter`, a
 * delay that differs from round to round and between the two sides sweeps
 * the offset of the halves across that gap.
 */
static void
rendezvous(_Atomic long *arrived, long *gen, unsigned salt, bool jitter)
{
	long target = (*gen += 2);
	unsigned spins = 0;
	uint32_t h = (uint32_t)target * 2654435761u ^ salt;
	/* valgrind runs one thread at a time: spinning only burns time */
	unsigned every = RUNNING_ON_VALGRIND ? 1 : 1u << 16;

	atomic_fetch_add(arrived, 1);
	while (atomic_load(arrived) < target)
		if (++spins % every == 0)
			sched_yield();
	if (jitter)
		spin_delay((h >> 11) % 512);
}

/*
 * A pair of threads running one round at a time: main and a side thread
 * meet, each runs its half, and both meet again before main checks the
 * round's outcome.
 */
struct duo {
	_Atomic long arrived;
	long gen_main, gen_side;
	void (*side)(void *);
	void *arg;
	bool quit;
	pthread_t th;
};

static void *
duo_main(void *p)
{
	struct duo *d = p;

	for (;;) {
		/* twice: the second meeting finds both threads running */
		rendezvous(&d->arrived, &d->gen_side, 0, false);
		rendezvous(&d->arrived, &d->gen_side, 0x5a5a5a5a, true);
		if (d->quit)
			break;
		d->side(d->arg);
		rendezvous(&d->arrived, &d->gen_side, 0, false);
	}
	return NULL;
}

static void
duo_start(struct duo *d, void (*side)(void *), void *arg)
{
	atomic_init(&d->arrived, 0);
	d->gen_main = 0;
	d->gen_side = 0;
	d->side = side;
	d->arg = arg;
	d->quit = false;
	xpthread_create(&d->th, duo_main, d);
}

static void
duo_round(struct duo *d, void (*mine)(void *))
{
	rendezvous(&d->arrived, &d->gen_main, 0, false);
	rendezvous(&d->arrived, &d->gen_main, 0, true);
	mine(d->arg);
	rendezvous(&d->arrived, &d->gen_main, 0, false);
}

static void
duo_stop(struct duo *d)
{
	d->quit = true; /* published by the rendezvous' seq_cst add */
	rendezvous(&d->arrived, &d->gen_main, 0, false);
	rendezvous(&d->arrived, &d->gen_main, 0, false);
	pthread_join(d->th, NULL);
}

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

/* Allocate until the allocator had to call malloc: its caches are empty,
 * so the next context comes from malloc again. */
static void
drain_cache(struct keep *k)
{
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	while (rctx_fault_calls(RCTX_FAULT_MALLOC) == 0) {
		rctx_t *c = rctx_with_cancel(rctx_background());

		assert_non_null(c);
		keep_push(k, c);
	}
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
	 * cancelable child needs two mallocs (the context, then a table of
	 * the children set). Make the 1st, then the 2nd, fail.
	 */
	reclaim();
	for (int k = 0; k < CTOR_NKINDS; k++) {
		int maxn = (k == CTOR_VALUE || k == CTOR_WITHOUT) ? 1 : 2;
		rctx_t *c;

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

			drain_cache(&keep);
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
	uint64_t seed = 0x5eed7;
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

/* ---------------------------------------------------------- deadlines */

/*
 * SEMANTICS 13: "rctx_deadline reports the effective deadline: the
 * requested one, or the parent's when that is earlier (then the child is a
 * plain cancel context under the parent's deadline). Value and cancel
 * children inherit it; without_cancel has none."
 */
static void
test_s13_effective_deadline(void **state)
{
	rctx_time_t now = rctx_now(), d = 0;
	rctx_t *p = rctx_with_deadline(rctx_background(), now + HOUR);
	rctx_t *later = rctx_with_deadline(p, now + 2 * HOUR);
	rctx_t *same = rctx_with_deadline(p, now + HOUR);
	rctx_t *earlier = rctx_with_deadline(p, now + HOUR / 2);
	rctx_t *to = rctx_with_timeout(p, 3 * HOUR);
	rctx_t *v = rctx_with_value(p, &key_a, &val_1);
	rctx_t *cc = rctx_with_cancel(v);
	rctx_t *w = rctx_without_cancel(p);
	rctx_t *wc = rctx_with_cancel(w);
	rctx_t *wd = rctx_with_deadline(w, now + 5 * HOUR);

	(void)state;
	assert_true(rctx_deadline(p, &d));
	assert_int_equal(d, now + HOUR);
	assert_int_equal(p->kind, RCTX_KIND_TIMER);
	assert_true(rctx_deadline(later, &d));
	assert_int_equal(d, now + HOUR);
	assert_int_equal(later->kind, RCTX_KIND_CANCEL);
	assert_true(rctx_deadline(same, &d));
	assert_int_equal(d, now + HOUR);
	assert_true(rctx_deadline(to, &d));
	assert_int_equal(d, now + HOUR);
	assert_int_equal(to->kind, RCTX_KIND_CANCEL);
	assert_true(rctx_deadline(earlier, &d));
	assert_int_equal(d, now + HOUR / 2);
	assert_int_equal(earlier->kind, RCTX_KIND_TIMER);
	assert_true(rctx_deadline(v, &d));
	assert_int_equal(d, now + HOUR);
	assert_true(rctx_deadline(cc, &d));
	assert_int_equal(d, now + HOUR);
	d = 99;
	assert_false(rctx_deadline(w, &d));
	assert_int_equal(d, 99);
	assert_false(rctx_deadline(wc, &d));
	assert_true(rctx_deadline(wd, &d));
	assert_int_equal(d, now + 5 * HOUR);
	assert_false(rctx_deadline(rctx_background(), NULL));
	assert_true(rctx_deadline(p, NULL));
	/* the plain-cancel child is still cancelled by the parent */
	assert_int_equal(rctx_cancel_cause(p, 3), 0);
	assert_int_equal(rctx_cause(later), 3);
	assert_false(rctx_done(wc));
	rctx_t *all[] = { wd, wc, w, cc, v, to, earlier, same, later, p };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rctx_release(all[i]);
}

/*
 * SEMANTICS 14: "A deadline equal to or before now gives a context already
 * done with ETIMEDOUT when the constructor returns; its cancel returns
 * -EALREADY."
 */
static void
test_s14_past_deadline_born_done(void **state)
{
	rctx_t *cs[7];
	int n = 0;

	(void)state;
	cs[n++] = rctx_with_deadline(rctx_background(), rctx_now());
	cs[n++] = rctx_with_deadline(rctx_background(), rctx_now() - RCTX_SEC);
	cs[n++] = rctx_with_deadline(rctx_background(), INT64_MIN);
	cs[n++] = rctx_with_deadline(rctx_background(), 0);
	cs[n++] = rctx_with_timeout(rctx_background(), 0);
	cs[n++] = rctx_with_timeout(rctx_background(), -HOUR);
	cs[n++] = rctx_with_deadline_cause(rctx_background(), rctx_now(), 61);
	for (int i = 0; i < n; i++) {
		assert_non_null(cs[i]);
		assert_int_equal(rctx_err(cs[i]), ETIMEDOUT);
		assert_int_equal(rctx_cause(cs[i]), i == 6 ? 61 : ETIMEDOUT);
		assert_true(rctx_deadline(cs[i], NULL));
		assert_int_equal(rctx_cancel(cs[i]), -EALREADY);
		assert_int_equal(rctx_err(cs[i]), ETIMEDOUT);
		assert_int_equal(rctx_wait(cs[i], 0), ETIMEDOUT);
		rctx_release(cs[i]);
	}
	/* also under a live parent, which stays live */
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_deadline(p, rctx_now() - 1);
	assert_int_equal(rctx_err(c), ETIMEDOUT);
	assert_false(rctx_done(p));
	assert_int_equal(rctx_cset_count(&p->children), 0);
	rctx_release(c);
	rctx_release(p);
}

/* Behaviour 15: a thread that spins on done and checks the clock. */
struct spin15 {
	rctx_t *c;
	rctx_time_t deadline;
	int early;
};

static void *
spin15_thread(void *arg)
{
	struct spin15 *s = arg;
	unsigned spins = 0;

	while (!rctx_done(s->c))
		if (++spins % 1024 == 0)
			sched_yield();
	if (rctx_now() < s->deadline)
		s->early = 1;
	return NULL;
}

/*
 * SEMANTICS 15: "Expiry is never early (rctx_now() >= deadline when first
 * seen done) and never lost (20,000 contexts with deadlines spread over
 * 200 ms all expire). Lateness is bounded by the wheel's tick plus
 * scheduling."
 */
static void
test_s15_expiry_never_early_never_lost(void **state)
{
	enum { N = 20000, SPINNERS = 50 };
	rctx_t **cs = malloc(N * sizeof(*cs));
	rctx_time_t *dl = malloc(N * sizeof(*dl));
	rctx_time_t t0;

	(void)state;
	assert_non_null(cs);
	assert_non_null(dl);
	/* Observers that spin on rctx_done, one context at a time. */
	for (int i = 0; i < SPINNERS; i++) {
		struct spin15 s = { .deadline =
					rctx_now() + (i % 7) * RCTX_MSEC / 3 };
		pthread_t th;

		s.c = i % 2 ? rctx_with_deadline(rctx_background(), s.deadline)
			    : rctx_with_timeout(rctx_background(),
						s.deadline - rctx_now());
		if (i % 2 == 0)
			assert_true(rctx_deadline(s.c, &s.deadline));
		xpthread_create(&th, spin15_thread, &s);
		pthread_join(th, NULL);
		assert_int_equal(s.early, 0);
		assert_int_equal(rctx_err(s.c), ETIMEDOUT);
		rctx_release(s.c);
	}
	/* 20,000 deadlines spread over 200 ms, some under value layers. */
	t0 = rctx_now();
	for (int i = 0; i < N; i++) {
		dl[i] = t0 + (rctx_time_t)i * (200 * RCTX_MSEC / N);
		cs[i] = rctx_with_deadline(rctx_background(), dl[i]);
		assert_non_null(cs[i]);
	}
	for (int i = 0; i < N; i++) {
		rctx_t *w = i % 5 ? rctx_retain(cs[i])
				  : rctx_with_value(cs[i], &key_a, &val_1);
		int e = rctx_wait(w, -1);

		if (rctx_now() < dl[i])
			fail_msg("context %d seen done before its deadline", i);
		assert_int_equal(e, ETIMEDOUT);
		assert_int_equal(rctx_cause(cs[i]), ETIMEDOUT);
		rctx_release(w);
	}
	for (int i = 0; i < N; i++)
		rctx_release(cs[i]);
	free(cs);
	free(dl);
}

/*
 * SEMANTICS 16: "Cancelling or releasing a deadline context stops its
 * timer: nothing fires into freed memory."
 *
 * Contexts are recycled by the library, so a timer that fired into freed
 * memory would cancel whichever new context reuses it: after the old
 * deadlines pass, no new context may be done. Under ASan/valgrind the
 * memory is really freed at rctx_shutdown.
 */
static void
test_s16_cancel_or_release_stops_timer(void **state)
{
	enum { N = 10000 };
	rctx_t **cs = malloc(N * sizeof(*cs));
	rctx_t *guard;
	rctx_time_t due = rctx_now() + 60 * RCTX_MSEC;

	(void)state;
	assert_non_null(cs);
	for (int i = 0; i < N; i++) {
		cs[i] = rctx_with_deadline_cause(rctx_background(),
						 due + i * RCTX_USEC, 1616);
		assert_non_null(cs[i]);
	}
	for (int i = 0; i < N; i++) {
		/* (an already expired one gives -EALREADY: a slow run) */
		if (i % 2) {
			int r = rctx_cancel(cs[i]);

			assert_true(r == 0 || (r == -EALREADY &&
					       rctx_err(cs[i]) == ETIMEDOUT));
		}
		rctx_release(cs[i]);
	}
	/* far-future ones: released without cancel */
	for (int i = 0; i < N; i++) {
		cs[i] = rctx_with_deadline(rctx_background(),
					   rctx_now() + HOUR + i);
		rctx_release(cs[i]);
	}
	reclaim();
	/* New contexts reuse that memory. */
	for (int i = 0; i < N; i++) {
		cs[i] = rctx_with_cancel(rctx_background());
		assert_non_null(cs[i]);
	}
	/* Let the old deadlines pass (a timer of our own, later than all). */
	guard = rctx_with_deadline(rctx_background(),
				   due + N * RCTX_USEC + 50 * RCTX_MSEC);
	assert_int_equal(rctx_wait(guard, -1), ETIMEDOUT);
	for (int i = 0; i < N; i++) {
		if (rctx_done(cs[i]))
			fail_msg("context %d was hit by a stale timer "
				 "(cause %d)",
				 i, rctx_cause(cs[i]));
		rctx_release(cs[i]);
	}
	rctx_release(guard);
	free(cs);
}

/* ------------------------------------------------------------- values */

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
	uint64_t seed = 0xfeed18;

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
		args[i] = (struct v18_arg){ .v = v, .seed = 0x1234 + i };
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

/* ----------------------------------------------------- without_cancel */

static void
count_fn(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
}

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

/* ----------------------------------------------------------- afterfunc */

struct rec20 {
	_Atomic int ran;
	pthread_t who;
	rctx_t *ctx;
	int err_seen, cause_seen;
};

static void
rec20_fn(void *arg)
{
	struct rec20 *r = arg;

	r->who = pthread_self();
	r->err_seen = rctx_err(r->ctx);
	r->cause_seen = rctx_cause(r->ctx);
	atomic_fetch_add(&r->ran, 1);
}

struct cancel_arg {
	rctx_t *c;
	int cause;
	int r;
	pthread_t self;
};

static void *
cancel_thread(void *p)
{
	struct cancel_arg *a = p;

	a->self = pthread_self();
	a->r = rctx_cancel_cause(a->c, a->cause);
	return NULL;
}

/* Behaviour 20 under a race: parent and context cancelled at once. */
struct race20 {
	rctx_t *p, *c;
	rctx_after_t reg;
	struct rec20 rec;
	int rp, rc;
	pthread_t side;
};

static void
race20_parent(void *arg)
{
	struct race20 *r = arg;

	r->rp = rctx_cancel_cause(r->p, 1);
}

static void
race20_child(void *arg)
{
	struct race20 *r = arg;

	r->side = pthread_self();
	r->rc = rctx_cancel_cause(r->c, 2);
}

/*
 * SEMANTICS 20: "fn runs exactly once after the context is done, on the
 * thread that made it done; on an already-done context, at once on the
 * registering thread. Never on a context that can never be done."
 */
static void
test_s20_after_func_runs_once_on_done_thread(void **state)
{
	rctx_after_t reg, reg2, reg3, reg4;
	struct rec20 r = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 };
	struct cancel_arg ca;
	pthread_t th;
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(root);
	rctx_t *v = rctx_with_value(c, &key_a, &val_1);

	(void)state;
	/* made done by another thread, through an ancestor */
	r.ctx = v;
	assert_int_equal(rctx_after_func(v, &reg, rec20_fn, &r), 0);
	assert_int_equal(atomic_load(&r.ran), 0);
	ca = (struct cancel_arg){ .c = root, .cause = 20 };
	xpthread_create(&th, cancel_thread, &ca);
	pthread_join(th, NULL);
	assert_int_equal(ca.r, 0);
	assert_int_equal(atomic_load(&r.ran), 1);
	assert_true(pthread_equal(r.who, ca.self));
	/* fn saw the context done, with its cause */
	assert_int_equal(r.err_seen, ECANCELED);
	assert_int_equal(r.cause_seen, 20);
	/* exactly once */
	assert_int_equal(rctx_cancel(c), -EALREADY);
	assert_false(rctx_after_stop(&reg));
	assert_int_equal(atomic_load(&r.ran), 1);

	/* already done: at once, on this thread, before returning */
	r2.ctx = c;
	assert_int_equal(rctx_after_func(c, &reg2, rec20_fn, &r2), 0);
	assert_int_equal(atomic_load(&r2.ran), 1);
	assert_true(pthread_equal(r2.who, pthread_self()));
	assert_false(rctx_after_stop(&reg2));

	/* by a deadline: once, on a thread that is not ours (we wait) */
	rctx_t *t = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	r3.ctx = t;
	assert_int_equal(rctx_after_func(t, &reg3, rec20_fn, &r3), 0);
	assert_int_equal(rctx_wait(t, -1), ETIMEDOUT);
	while (atomic_load(&r3.ran) == 0)
		sched_yield(); /* fn may still be on its way on the timer */
	assert_false(rctx_after_stop(&reg3)); /* and waits for fn */
	assert_int_equal(atomic_load(&r3.ran), 1);
	assert_false(pthread_equal(r3.who, pthread_self()));
	assert_int_equal(r3.err_seen, ETIMEDOUT);

	/* never on a context that can never be done */
	rctx_t *p2 = rctx_with_cancel(rctx_background());
	rctx_t *w = rctx_without_cancel(p2);
	rctx_after_t regs[3];
	assert_int_equal(
	    rctx_after_func(rctx_background(), &regs[0], rec20_fn, &r4), 0);
	assert_int_equal(rctx_after_func(rctx_todo(), &regs[1], rec20_fn, &r4),
			 0);
	assert_int_equal(rctx_after_func(w, &regs[2], rec20_fn, &r4), 0);
	assert_int_equal(rctx_cancel(p2), 0);
	assert_int_equal(atomic_load(&r4.ran), 0);
	for (int i = 0; i < 3; i++)
		assert_true(rctx_after_stop(&regs[i]));
	assert_int_equal(atomic_load(&r4.ran), 0);
	assert_int_equal(rctx_after_func(NULL, &reg4, rec20_fn, &r4), -EINVAL);
	assert_int_equal(rctx_after_func(c, NULL, rec20_fn, &r4), -EINVAL);
	assert_int_equal(rctx_after_func(c, &reg4, NULL, &r4), -EINVAL);

	/* Two cancellers at once (the context and its parent): fn runs once,
	 * on the thread whose cancel made the context done. */
	struct race20 rr;
	struct duo d;
	long rounds = SCALED(10000), side_won = 0;

	duo_start(&d, race20_child, &rr);
	for (long i = 0; i < rounds; i++) {
		rr.p = rctx_with_cancel(rctx_background());
		rr.c = rctx_with_cancel(rr.p);
		memset(&rr.rec, 0, sizeof(rr.rec));
		rr.rec.ctx = rr.c;
		assert_int_equal(
		    rctx_after_func(rr.c, &rr.reg, rec20_fn, &rr.rec), 0);
		duo_round(&d, race20_parent);
		assert_int_equal(rr.rp, 0);
		assert_int_equal(atomic_load(&rr.rec.ran), 1);
		if (rr.rc == 0) {
			side_won++;
			assert_true(pthread_equal(rr.rec.who, rr.side));
			assert_int_equal(rr.rec.cause_seen, 2);
		} else {
			assert_int_equal(rr.rc, -EALREADY);
			assert_true(pthread_equal(rr.rec.who, pthread_self()));
			assert_int_equal(rr.rec.cause_seen, 1);
		}
		assert_false(rctx_after_stop(&rr.reg));
		rctx_release(rr.c);
		rctx_release(rr.p);
	}
	duo_stop(&d);
	print_message("# s20: the context's own cancel won %ld of %ld "
		      "rounds\n",
		      side_won, rounds);
	rctx_release(w);
	rctx_release(p2);
	rctx_release(t);
	rctx_release(v);
	rctx_release(c);
	rctx_release(root);
}

/* Behaviour 21: stop racing cancel. */
struct race21 {
	rctx_t *c;
	rctx_after_t reg;
	_Atomic int ran;
	bool stopped;
};

static void
race21_cancel(void *arg)
{
	struct race21 *r = arg;

	assert_int_equal(rctx_cancel(r->c), 0);
}

static void
race21_stop(void *arg)
{
	struct race21 *r = arg;

	r->stopped = rctx_after_stop(&r->reg);
}

/*
 * SEMANTICS 21: "stop before done -> true and fn never runs; after fn
 * started -> false; a second stop -> false. Stop racing cancel: exactly
 * one of "fn ran" and "stop returned true"."
 */
static void
test_s21_stop_semantics_and_race(void **state)
{
	struct race21 r;
	struct duo d;
	long rounds = SCALED(20000);
	long stops = 0, runs = 0;

	(void)state;
	/* stop before done */
	r.c = rctx_with_cancel(rctx_background());
	atomic_store(&r.ran, 0);
	assert_int_equal(rctx_after_func(r.c, &r.reg, count_fn, &r.ran), 0);
	assert_true(rctx_after_stop(&r.reg));
	assert_false(rctx_after_stop(&r.reg));
	assert_int_equal(rctx_cancel(r.c), 0);
	assert_int_equal(atomic_load(&r.ran), 0);
	/* after fn ran */
	assert_int_equal(rctx_after_func(r.c, &r.reg, count_fn, &r.ran), 0);
	assert_int_equal(atomic_load(&r.ran), 1);
	assert_false(rctx_after_stop(&r.reg));
	assert_false(rctx_after_stop(&r.reg));
	rctx_release(r.c);
	r.c = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_after_func(r.c, &r.reg, count_fn, &r.ran), 0);
	assert_int_equal(rctx_cancel(r.c), 0);
	assert_int_equal(atomic_load(&r.ran), 2);
	assert_false(rctx_after_stop(&r.reg));
	assert_false(rctx_after_stop(&r.reg));
	rctx_release(r.c);

	/* the race */
	duo_start(&d, race21_stop, &r);
	for (long i = 0; i < rounds; i++) {
		r.c = rctx_with_cancel(rctx_background());
		atomic_store(&r.ran, 0);
		r.stopped = false;
		assert_int_equal(rctx_after_func(r.c, &r.reg, count_fn, &r.ran),
				 0);
		duo_round(&d, race21_cancel);
		if (atomic_load(&r.ran) + (int)r.stopped != 1)
			fail_msg("round %ld: ran %d, stop returned %d", i,
				 atomic_load(&r.ran), r.stopped);
		stops += r.stopped;
		runs += atomic_load(&r.ran);
		assert_false(rctx_after_stop(&r.reg));
		assert_int_equal(rctx_cset_count(&r.c->children), 0);
		rctx_release(r.c);
	}
	duo_stop(&d);
	print_message("# s21: %ld stops won, %ld fns ran\n", stops, runs);
}

/* Behaviour 21: a stop made after the context was seen done. */
enum { SEEN21_KIDS = 10000 };

struct seen21 {
	rctx_t *c;
	rctx_after_t reg;
	_Atomic int ran;
	int stopped;
};

static void
seen21_cancel(void *arg)
{
	struct seen21 *r = arg;

	assert_int_equal(rctx_cancel(r->c), 0);
}

static void
seen21_stop(void *arg)
{
	struct seen21 *r = arg;
	unsigned spins = 0;

	while (!rctx_done(r->c))
		if (++spins % 16384 == 0)
			sched_yield();
	r->stopped = rctx_after_stop(&r->reg);
}

/*
 * SEMANTICS 21 read with 20 ("fn runs exactly once after the context is
 * done") and Go (once Err() is non-nil, the AfterFunc has been started and
 * stop returns false): a stop issued after the context was seen done must
 * return false, and fn must run. The context has many children, so its
 * cancel takes a while between publishing done and running after-funcs.
 */
static void
test_s21_stop_after_done_seen_is_false(void **state)
{
	static struct seen21 r;
	rctx_t **kids = malloc(SEEN21_KIDS * sizeof(*kids));
	struct duo d;
	long rounds = SCALED(100), bad = 0;

	(void)state;
	assert_non_null(kids);
	duo_start(&d, seen21_stop, &r);
	for (long i = 0; i < rounds; i++) {
		r.c = rctx_with_cancel(rctx_background());
		for (int k = 0; k < SEEN21_KIDS; k++)
			kids[k] = rctx_with_cancel(r.c);
		atomic_store(&r.ran, 0);
		r.stopped = -1;
		assert_int_equal(rctx_after_func(r.c, &r.reg, count_fn, &r.ran),
				 0);
		duo_round(&d, seen21_cancel);
		/* exactly one, whatever happens */
		assert_int_equal(atomic_load(&r.ran) + r.stopped, 1);
		bad += r.stopped;
		for (int k = 0; k < SEEN21_KIDS; k++)
			rctx_release(kids[k]);
		rctx_release(r.c);
	}
	duo_stop(&d);
	free(kids);
	if (bad)
		fail_msg("KNOWN DEFECT (stop-after-done-wins): "
			 "in %ld of %ld rounds rctx_after_stop, called after "
			 "rctx_done() was seen true, returned true and fn "
			 "never ran",
			 bad, rounds);
}

/* Behaviour 22: stop while fn runs. */
struct race22 {
	rctx_t *c;
	rctx_after_t reg;
	_Atomic int started, finished;
	int stopped; /* 1 true, 0 false, 42/43 order violated */
	bool wait_started;
	int inner_stop; /* fn's own stop: -1 not called, else its result */
	bool self_stop;
};

static void
slow_fn(void *arg)
{
	struct race22 *r = arg;

	atomic_store(&r->started, 1);
	if (r->self_stop)
		r->inner_stop = rctx_after_stop(&r->reg);
	/* Give the stopper time to arrive while fn still runs; the test
	 * asserts only the order of events, never how long this takes. */
	for (int i = 0; i < 3; i++) {
		sched_yield();
		usleep(50);
	}
	atomic_store(&r->finished, 1);
}

static void
race22_cancel(void *arg)
{
	struct race22 *r = arg;

	assert_int_equal(rctx_cancel(r->c), 0);
}

static void
race22_stop(void *arg)
{
	struct race22 *r = arg;

	if (r->wait_started)
		while (atomic_load(&r->started) == 0)
			sched_yield();
	r->stopped = rctx_after_stop(&r->reg) ? 1 : 0;
	/* On return fn is not running: it finished, or never started. */
	if (!r->stopped && atomic_load(&r->finished) != 1)
		r->stopped = 42; /* flagged below */
	if (r->stopped == 1 && atomic_load(&r->started))
		r->stopped = 43;
}

/*
 * SEMANTICS 22: "stop from another thread while fn runs returns only
 * after fn returns; stop from inside fn returns false at once."
 */
static void
test_s22_stop_waits_for_running_fn(void **state)
{
	struct race22 r;
	struct duo d;
	long rounds = SCALED(3000);

	(void)state;
	duo_start(&d, race22_stop, &r);
	for (long i = 0; i < rounds; i++) {
		r.c = rctx_with_cancel(rctx_background());
		atomic_store(&r.started, 0);
		atomic_store(&r.finished, 0);
		r.stopped = 0;
		r.self_stop = false;
		r.inner_stop = -1;
		/* a third of the rounds stop only once fn has started */
		r.wait_started = i % 3 == 0;
		assert_int_equal(rctx_after_func(r.c, &r.reg, slow_fn, &r), 0);
		duo_round(&d, race22_cancel);
		assert_true(r.stopped == 0 || r.stopped == 1);
		if (r.wait_started)
			assert_false(r.stopped);
		if (r.stopped)
			assert_int_equal(atomic_load(&r.started), 0);
		else
			assert_int_equal(atomic_load(&r.finished), 1);
		rctx_release(r.c);
	}
	duo_stop(&d);

	/* From inside fn: false at once (no self-deadlock), on the cancel
	 * path and on the already-done path. */
	for (int path = 0; path < 2; path++) {
		r.c = rctx_with_cancel(rctx_background());
		atomic_store(&r.started, 0);
		atomic_store(&r.finished, 0);
		r.self_stop = true;
		r.inner_stop = -1;
		if (path == 1)
			assert_int_equal(rctx_cancel(r.c), 0);
		assert_int_equal(rctx_after_func(r.c, &r.reg, slow_fn, &r), 0);
		if (path == 0)
			assert_int_equal(rctx_cancel(r.c), 0);
		assert_int_equal(atomic_load(&r.finished), 1);
		assert_int_equal(r.inner_stop, 0);
		assert_false(rctx_after_stop(&r.reg));
		rctx_release(r.c);
	}
}

/* Behaviour 23: fn calls rctx and frees its registration. */
struct cb23 {
	rctx_after_t *self; /* malloc'd: fn frees it */
	rctx_t *other;	    /* fn cancels it */
	rctx_t *done_ctx;   /* the context fn runs for */
	rctx_t *born;	    /* fn derives it from done_ctx */
	rctx_t *fresh;	    /* fn derives it from background */
	rctx_after_t nested_reg, live_reg;
	_Atomic int nested_ran, live_ran;
	int stop_in_fn;
	int r_cancel, r_nested, r_live;
	_Atomic int finished;
};

static void
cb23_fn(void *arg)
{
	struct cb23 *cb = arg;

	cb->r_cancel = rctx_cancel_cause(cb->other, 230);
	cb->born = rctx_with_cancel(cb->done_ctx);
	cb->fresh = rctx_with_cancel(rctx_background());
	/* register on the done context: runs nested, at once */
	cb->r_nested = rctx_after_func(cb->done_ctx, &cb->nested_reg, count_fn,
				       &cb->nested_ran);
	/* register on a live one */
	cb->r_live =
	    rctx_after_func(cb->fresh, &cb->live_reg, count_fn, &cb->live_ran);
	cb->stop_in_fn = rctx_after_stop(cb->self);
	free(cb->self);
	cb->self = NULL;
	atomic_store(&cb->finished, 1);
}

/*
 * SEMANTICS 23: "fn may call rctx functions (cancel other contexts,
 * derive, register) and may free the memory holding its registration."
 */
static void
test_s23_fn_calls_rctx_and_frees_reg(void **state)
{
	(void)state;
	for (int path = 0; path < 3; path++) {
		struct cb23 cb = { 0 };
		rctx_t *c = rctx_with_cancel(rctx_background());
		rctx_t *wc = path == 2 ? rctx_with_timeout(c, RCTX_MSEC)
				       : rctx_retain(c);

		cb.self = malloc(sizeof(*cb.self));
		assert_non_null(cb.self);
		cb.other = rctx_with_cancel(rctx_background());
		cb.done_ctx = wc;
		if (path == 1)
			assert_int_equal(rctx_cancel(c), 0);
		assert_int_equal(rctx_after_func(wc, cb.self, cb23_fn, &cb), 0);
		if (path == 0)
			assert_int_equal(rctx_cancel(c), 0);
		if (path == 2) {
			assert_int_equal(rctx_wait(wc, -1), ETIMEDOUT);
			while (atomic_load(&cb.finished) == 0)
				sched_yield(); /* fn runs on the timer */
		}
		assert_int_equal(atomic_load(&cb.finished), 1);
		assert_null(cb.self);
		assert_int_equal(cb.r_cancel, 0);
		assert_int_equal(cb.r_nested, 0);
		assert_int_equal(cb.r_live, 0);
		assert_int_equal(cb.stop_in_fn, 0);
		assert_int_equal(rctx_err(cb.other), ECANCELED);
		assert_int_equal(rctx_cause(cb.other), 230);
		assert_non_null(cb.born);
		assert_true(rctx_done(cb.born));
		assert_int_equal(atomic_load(&cb.nested_ran), 1);
		assert_int_equal(atomic_load(&cb.live_ran), 0);
		assert_int_equal(rctx_cancel(cb.fresh), 0);
		assert_int_equal(atomic_load(&cb.live_ran), 1);
		rctx_release(cb.fresh);
		rctx_release(cb.born);
		rctx_release(cb.other);
		rctx_release(wc);
		rctx_release(c);
	}
}

/*
 * SEMANTICS 24: "A pending registration keeps its context alive: released
 * by the user, it still fires when an ancestor is cancelled."
 */
static void
test_s24_pending_registration_keeps_context(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(root);
	rctx_t *v = rctx_with_value(c, &key_a, &val_1);
	rctx_after_t reg, reg2;
	struct rec20 r = { .ctx = v };

	(void)state;
	assert_int_equal(rctx_after_func(v, &reg, rec20_fn, &r), 0);
	rctx_release(v);
	rctx_release(c);
	/* both still alive: v held by the registration, c by v */
	assert_true(refs_of(v) >= 1);
	assert_true(refs_of(c) >= 1);
	assert_int_equal(rctx_cset_count(&root->children), 1);
	assert_int_equal(rctx_cancel_cause(root, 24), 0);
	assert_int_equal(atomic_load(&r.ran), 1);
	assert_int_equal(r.err_seen, ECANCELED); /* fn could read it */
	assert_int_equal(r.cause_seen, 24);
	assert_false(rctx_after_stop(&reg));

	/* A stopped registration gives its reference back. */
	rctx_t *c2 = rctx_with_cancel(rctx_background());
	uint32_t refs = refs_of(c2);
	assert_int_equal(rctx_after_func(c2, &reg2, rec20_fn, &r), 0);
	assert_int_equal(refs_of(c2), refs + 1);
	assert_true(rctx_after_stop(&reg2));
	assert_int_equal(refs_of(c2), refs);
	rctx_release(c2);
	rctx_release(root);

	/* Released under a deadline ancestor: fires when the timer does. */
	rctx_t *tr = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	rctx_t *tc = rctx_with_cancel(tr);
	struct rec20 rt = { .ctx = tc };

	assert_int_equal(rctx_after_func(tc, &reg, rec20_fn, &rt), 0);
	rctx_release(tc);
	assert_int_equal(rctx_wait(tr, -1), ETIMEDOUT);
	/* tr is done; tc is made done by the same cascade, on the timer
	 * thread, which then runs fn: wait for that, then stop says false */
	while (atomic_load(&rt.ran) == 0)
		sched_yield();
	assert_false(rctx_after_stop(&reg)); /* returns once fn is done */
	assert_int_equal(atomic_load(&rt.ran), 1);
	assert_int_equal(rt.err_seen, ETIMEDOUT);
	assert_int_equal(rt.cause_seen, ETIMEDOUT);
	rctx_release(tr);
}

/*
 * SEMANTICS 25: "Registering and stopping never allocate and never leave
 * anything in the context's children set afterwards."
 */
static void
test_s25_register_and_stop_do_not_allocate(void **state)
{
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_t *kid = rctx_with_cancel(c);
	rctx_t *v = rctx_with_value(c, &key_a, &val_1);
	rctx_after_t reg[2];
	_Atomic int ran = 0;
	size_t cnt0 = rctx_cset_count(&c->children);
	size_t cap0 = rctx_cset_capacity(&c->children);
	long out0 = rctx_alloc_outstanding();

	(void)state;
	assert_int_equal(cnt0, 1);
	/* A context with free inline slots: no allocation at all. */
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	assert_int_equal(rctx_after_func(c, &reg[0], count_fn, &ran), 0);
	assert_int_equal(rctx_after_func(v, &reg[1], count_fn, &ran), 0);
	assert_int_equal(rctx_cset_count(&c->children), cnt0 + 2);
	assert_true(rctx_after_stop(&reg[0]));
	assert_true(rctx_after_stop(&reg[1]));
	assert_int_equal(rctx_fault_calls(RCTX_FAULT_MALLOC), 0);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	assert_int_equal(rctx_cset_count(&c->children), cnt0);
	/* Many cycles leave the set and the allocator as they were. */
	for (long i = 0; i < SCALED(100000); i++) {
		assert_int_equal(
		    rctx_after_func(i & 1 ? v : c, &reg[0], count_fn, &ran), 0);
		if (RCTX_UNLIKELY(!rctx_after_stop(&reg[0])))
			fail_msg("stop %ld failed", i);
	}
	assert_int_equal(rctx_cset_count(&c->children), cnt0);
	assert_int_equal(rctx_cset_capacity(&c->children), cap0);
	assert_int_equal(rctx_alloc_outstanding(), out0);
	/* Fired registrations leave nothing either. */
	assert_int_equal(rctx_after_func(c, &reg[0], count_fn, &ran), 0);
	assert_int_equal(rctx_after_func(v, &reg[1], count_fn, &ran), 0);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(atomic_load(&ran), 2);
	assert_int_equal(rctx_cset_count(&c->children), 0);
	rctx_release(v);
	rctx_release(kid);
	rctx_release(c);
}

/*
 * SEMANTICS 25, with API.md ("registering never allocates"; "Returns 0,
 * or -EINVAL for a NULL argument"): a context whose inline slots are all
 * taken by children must not need memory to register either.
 */
static void
test_s25_register_on_full_set_does_not_allocate(void **state)
{
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_t *kids[RCTX_CSET_INLINE];
	rctx_after_t reg;
	_Atomic int ran = 0;
	unsigned long calls;
	size_t cap0, cnt0;
	int r;

	(void)state;
	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		kids[i] = rctx_with_cancel(c);
	cnt0 = rctx_cset_count(&c->children);
	cap0 = rctx_cset_capacity(&c->children);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	r = rctx_after_func(c, &reg, count_fn, &ran);
	calls = rctx_fault_calls(RCTX_FAULT_MALLOC);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	if (r == 0) {
		assert_true(rctx_after_stop(&reg));
		assert_int_equal(rctx_cset_count(&c->children), cnt0);
	}
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(atomic_load(&ran), 0);
	for (int i = 0; i < RCTX_CSET_INLINE; i++)
		rctx_release(kids[i]);
	rctx_release(c);
	if (r != 0 || calls != 0)
		fail_msg("KNOWN DEFECT (after-func-allocates): "
			 "rctx_after_func on a context with %zu children "
			 "(capacity %zu) returned %d after %lu allocation(s)",
			 cnt0, cap0, r, calls);
}

/* ---------------------------------------------------- waiting and fds */

enum { WAITERS = 6 };

struct wait26 {
	rctx_t *target;
	pthread_barrier_t go, done;
	int result[WAITERS];
	bool quit;
};

struct wait26_arg {
	struct wait26 *w;
	int id;
};

static void *
wait26_thread(void *p)
{
	struct wait26_arg *a = p;
	struct wait26 *w = a->w;

	for (;;) {
		pthread_barrier_wait(&w->go);
		if (w->quit)
			break;
		/* half wait forever, half with a timeout never reached */
		w->result[a->id] = rctx_wait(w->target, a->id % 2 ? HOUR : -1);
		pthread_barrier_wait(&w->done);
	}
	return NULL;
}

/*
 * SEMANTICS 26: "rctx_wait returns the err once done (also when done
 * before the call), or 0 after the timeout; many threads can wait on one
 * context and all wake on cancel."
 */
static void
test_s26_wait_and_many_waiters(void **state)
{
	struct wait26 w = { 0 };
	struct wait26_arg args[WAITERS];
	pthread_t th[WAITERS];
	long rounds = SCALED(2000);
	rctx_t *c = rctx_with_cancel(rctx_background());
	rctx_time_t t0;

	(void)state;
	t0 = rctx_now();
	assert_int_equal(rctx_wait(c, RCTX_MSEC), 0);
	assert_true(rctx_now() - t0 >= RCTX_MSEC); /* never early */
	assert_int_equal(rctx_wait(c, 0), 0);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_wait(c, -1), ECANCELED);
	assert_int_equal(rctx_wait(c, 0), ECANCELED);
	assert_int_equal(rctx_wait(c, HOUR), ECANCELED);
	rctx_release(c);
	c = rctx_with_timeout(rctx_background(), 0);
	assert_int_equal(rctx_wait(c, 0), ETIMEDOUT);
	rctx_release(c);

	pthread_barrier_init(&w.go, NULL, WAITERS + 1);
	pthread_barrier_init(&w.done, NULL, WAITERS + 1);
	for (int i = 0; i < WAITERS; i++) {
		args[i] = (struct wait26_arg){ .w = &w, .id = i };
		xpthread_create(&th[i], wait26_thread, &args[i]);
	}
	for (long i = 0; i < rounds; i++) {
		rctx_t *root = rctx_with_cancel(rctx_background());
		rctx_t *v = rctx_with_value(root, &key_a, &val_1);

		/* waiters on the root itself, or on a value child, or on a
		 * cancel child */
		w.target = i % 3 == 0	? root
			   : i % 3 == 1 ? v
					: rctx_with_cancel(v);
		for (int k = 0; k < WAITERS; k++)
			w.result[k] = -1;
		pthread_barrier_wait(&w.go);
		if (i % 2)
			for (int k = 0; k < 3; k++)
				sched_yield(); /* let some go to sleep */
		assert_int_equal(rctx_cancel_cause(root, 26), 0);
		pthread_barrier_wait(&w.done);
		for (int k = 0; k < WAITERS; k++)
			assert_int_equal(w.result[k], ECANCELED);
		if (i % 3 == 2)
			rctx_release(w.target);
		rctx_release(v);
		rctx_release(root);
	}
	/* and on a deadline */
	w.target = rctx_with_timeout(rctx_background(), 2 * RCTX_MSEC);
	pthread_barrier_wait(&w.go);
	pthread_barrier_wait(&w.done);
	for (int k = 0; k < WAITERS; k++)
		assert_int_equal(w.result[k], ETIMEDOUT);
	rctx_release(w.target);
	w.quit = true;
	pthread_barrier_wait(&w.go);
	for (int i = 0; i < WAITERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&w.go);
	pthread_barrier_destroy(&w.done);
}

/* Behaviour 27: a thread that sees done polls the fd. */
struct race27 {
	rctx_t *root, *leaf;
	int fd;
	bool ready;
	bool done_seen; /* done when the fd was first seen readable */
	bool by_leaf;	/* cancel the leaf itself, not the root */
};

static void
race27_cancel(void *arg)
{
	struct race27 *r = arg;

	assert_int_equal(rctx_cancel(r->root), 0);
}

static void
race27_cancel_either(void *arg)
{
	struct race27 *r = arg;

	assert_int_equal(rctx_cancel(r->by_leaf ? r->leaf : r->root), 0);
}

/* The other direction: a thread that finds the fd readable sees done. */
static void
race27_poll(void *arg)
{
	struct race27 *r = arg;

	while (!readable(r->fd))
		;
	r->done_seen = rctx_done(r->leaf) && rctx_err(r->leaf) != 0;
}

static void
race27_observe(void *arg)
{
	struct race27 *r = arg;
	unsigned spins = 0;

	while (!rctx_done(r->leaf))
		if (++spins % 16384 == 0)
			sched_yield();
	r->ready = readable(r->fd);
}

/*
 * SEMANTICS 27: "rctx_fd is created once per context (same fd on every
 * call), polls readable (level-triggered) once the context is done,
 * including via an ancestor or a deadline, and immediately if it was
 * created after done. Value contexts give their cancellation source's fd."
 */
static void
test_s27_fd_readable_once_done(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *c = rctx_with_cancel(root);
	rctx_t *v = rctx_with_value(c, &key_a, &val_1);
	rctx_t *vv = rctx_with_value(v, &key_b, &val_2);
	int fd = rctx_fd(c), rfd = rctx_fd(root);

	(void)state;
	assert_true(fd >= 0);
	assert_true(rfd >= 0);
	assert_int_not_equal(fd, rfd);
	assert_int_equal(rctx_fd(c), fd);
	assert_int_equal(rctx_fd(v), fd);
	assert_int_equal(rctx_fd(vv), fd);
	assert_false(readable(fd));
	assert_false(readable(rfd));
	assert_int_equal(rctx_cancel(root), 0); /* via an ancestor */
	assert_true(readable(fd));
	assert_true(readable(fd)); /* level-triggered */
	assert_true(readable(rfd));
	assert_int_equal(rctx_fd(vv), fd);
	assert_true(readable(rctx_fd(v)));

	/* created after done: readable at once */
	rctx_t *late = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_cancel(late), 0);
	int lfd = rctx_fd(late);
	assert_true(lfd >= 0);
	assert_true(readable(lfd));
	assert_int_equal(rctx_fd(late), lfd);
	rctx_t *born = rctx_with_cancel(late);
	assert_true(readable(rctx_fd(born)));

	/* via a deadline, fd made before expiry, and after */
	rctx_t *t = rctx_with_timeout(rctx_background(), 2 * RCTX_MSEC);
	rctx_t *tv = rctx_with_value(t, &key_a, &val_1);
	int tfd = rctx_fd(tv);
	assert_int_equal(tfd, rctx_fd(t));
	assert_false(readable(tfd) && !rctx_done(t));
	assert_true(becomes_readable(tfd));
	long early = !rctx_done(t); /* readable before done (checked below) */
	assert_true(readable(tfd));
	rctx_t *t2 = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	assert_int_equal(rctx_wait(t2, -1), ETIMEDOUT);
	assert_true(becomes_readable(rctx_fd(t2)));
	rctx_t *t3 = rctx_with_timeout(rctx_background(), -1);
	assert_true(readable(rctx_fd(t3)));

	/* A thread that sees done (cancelled on another thread) finds the
	 * fd readable. */
	struct race27 r;
	struct duo d;
	long bad = 0, rounds = SCALED(10000);

	duo_start(&d, race27_observe, &r);
	for (long i = 0; i < rounds; i++) {
		r.root = rctx_with_cancel(rctx_background());
		r.leaf = rctx_with_cancel(r.root);
		r.fd = rctx_fd(r.leaf);
		assert_true(r.fd >= 0);
		r.ready = false;
		duo_round(&d, race27_cancel);
		bad += !r.ready;
		rctx_release(r.leaf);
		rctx_release(r.root);
	}
	duo_stop(&d);

	/* The same with a wide cascade: the watched child is the first one
	 * the cancel marks done, 20,000 siblings are marked after it. */
	enum { WIDE27 = 20000, WIDE_ROUNDS = 40 };
	rctx_t **kids = malloc(WIDE27 * sizeof(*kids));
	long wide_bad = 0;

	assert_non_null(kids);
	duo_start(&d, race27_observe, &r);
	for (int i = 0; i < WIDE_ROUNDS; i++) {
		r.root = rctx_with_cancel(rctx_background());
		for (int k = 0; k < WIDE27; k++)
			kids[k] = rctx_with_cancel(r.root);
		r.leaf = kids[0];
		r.fd = rctx_fd(r.leaf);
		r.ready = false;
		duo_round(&d, race27_cancel);
		wide_bad += !r.ready;
		for (int k = 0; k < WIDE27; k++)
			rctx_release(kids[k]);
		rctx_release(r.root);
	}
	duo_stop(&d);
	free(kids);

	/* Readable means done: rctx_err() of a context whose fd a poller
	 * found readable is not 0 (Go: once Done is closed, Err is non-nil). */
	duo_start(&d, race27_poll, &r);
	for (long i = 0; i < rounds; i++) {
		r.root = rctx_with_cancel(rctx_background());
		r.leaf = rctx_with_cancel(r.root);
		r.fd = rctx_fd(r.leaf);
		r.by_leaf = i % 2;
		r.done_seen = false;
		duo_round(&d, race27_cancel_either);
		early += !r.done_seen;
		rctx_release(r.leaf);
		rctx_release(r.root);
	}
	duo_stop(&d);

	rctx_t *all[] = { t3, t2, tv, t, born, late, vv, v, c, root };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rctx_release(all[i]);
	/* Known defects, reported by name so the suite keeps showing them. */
	if (early)
		fail_msg(
		    "KNOWN DEFECT (fd-readable-before-done): "
		    "the fd polled readable while rctx_done() was false in "
		    "%ld of %ld rounds",
		    early, rounds + 1);
	if (bad || wide_bad)
		fail_msg("KNOWN DEFECT (fd-readable-after-done): "
			 "rctx_done() was true but the fd not yet readable in "
			 "%ld of %ld narrow and %ld of %d wide rounds",
			 bad, rounds, wide_bad, (int)WIDE_ROUNDS);
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
		cmocka_unit_test(test_s05_cancel_reaches_every_descendant),
		cmocka_unit_test(test_s06_child_leaves_parent_set),
		cmocka_unit_test(test_s07_concurrent_cancels_one_winner),
		cmocka_unit_test(test_s08_deep_and_wide),
		cmocka_unit_test(test_s09_cause_values),
		cmocka_unit_test(test_s10_cause_through_parent),
		cmocka_unit_test(test_s11_deadline_causes),
		cmocka_unit_test(test_s12_err_and_cause_together),
		cmocka_unit_test(test_s13_effective_deadline),
		cmocka_unit_test(test_s14_past_deadline_born_done),
		cmocka_unit_test(test_s15_expiry_never_early_never_lost),
		cmocka_unit_test(test_s16_cancel_or_release_stops_timer),
		cmocka_unit_test(test_s17_value_lookup_rules),
		cmocka_unit_test(test_s18_lookups_any_thread_any_depth),
		cmocka_unit_test(test_s19_without_cancel),
		cmocka_unit_test(test_s20_after_func_runs_once_on_done_thread),
		cmocka_unit_test(test_s21_stop_semantics_and_race),
		cmocka_unit_test(test_s21_stop_after_done_seen_is_false),
		cmocka_unit_test(test_s22_stop_waits_for_running_fn),
		cmocka_unit_test(test_s23_fn_calls_rctx_and_frees_reg),
		cmocka_unit_test(test_s24_pending_registration_keeps_context),
		cmocka_unit_test(test_s25_register_and_stop_do_not_allocate),
		cmocka_unit_test(
		    test_s25_register_on_full_set_does_not_allocate),
		cmocka_unit_test(test_s26_wait_and_many_waiters),
		cmocka_unit_test(test_s27_fd_readable_once_done),
		cmocka_unit_test(test_s28_references_and_lifetime),
	};
	const char *only = getenv("RCTX_SEM_ONLY");
	int r;

	/* RCTX_SEM_ONLY=test_s08* runs a subset (cmocka's pattern) */
	if (only != NULL)
		cmocka_set_test_filter(only);
	r = cmocka_run_group_tests(tests, NULL, NULL);

	rctx_shutdown();
	return r;
}
