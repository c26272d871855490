/* SPDX-License-Identifier: MIT */
/* rctx_dump: fields per node, bounds, fd output, and concurrent churn. */
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
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "rctx.h"
#include "util.h"

static char key;

struct seen {
	rctx_dump_node_t n[64];
	int count;
	int stop_after; /* 0: never */
};

static int
collect(const rctx_dump_node_t *node, void *arg)
{
	struct seen *s = arg;

	if (s->count < 64)
		s->n[s->count] = *node;
	s->count++;
	return s->stop_after && s->count >= s->stop_after;
}

static const rctx_dump_node_t *
find(struct seen *s, const rctx_t *c)
{
	for (int i = 0; i < s->count && i < 64; i++)
		if (s->n[i].ctx == c)
			return &s->n[i];
	return NULL;
}

static int
never(const rctx_dump_node_t *node, void *arg)
{
	(void)node;
	(void)arg;
	return 0;
}

static void
after_fn(void *arg)
{
	(void)arg;
}

static void
test_bad_input(void **state)
{
	(void)state;
	assert_int_equal(rctx_dump(NULL, 10, never, NULL), -EINVAL);
	assert_int_equal(rctx_dump(rctx_background(), 10, NULL, NULL), -EINVAL);
	assert_int_equal(rctx_dump(rctx_background(), 0, never, NULL), -EINVAL);
	assert_int_equal(rctx_dump_fd(NULL, 10, 1), -EINVAL);
	assert_int_equal(rctx_dump_fd(rctx_background(), 10, -1), -EINVAL);
	assert_int_equal(rctx_dump_fd(rctx_background(), 0, 1), -EINVAL);
}

static void
test_fields(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *a = rctx_with_timeout(root, 3600 * RCTX_SEC);
	rctx_t *b = rctx_with_cancel(root);
	rctx_t *v = rctx_with_value(b, &key, NULL);
	rctx_t *c = rctx_with_cancel(v);
	rctx_after_t reg;
	struct seen s = { .count = 0 };
	const rctx_dump_node_t *n;

	(void)state;
	assert_int_equal(rctx_after_func(b, &reg, after_fn, NULL), 0);
	assert_int_equal(rctx_dump(root, 100, collect, &s), 4);
	assert_int_equal(s.count, 4);
	assert_ptr_equal(s.n[0].ctx, root); /* the root first */
	assert_int_equal(s.n[0].depth, 0);
	assert_int_equal(s.n[0].kind, RCTX_DUMP_CANCEL);
	assert_int_equal(s.n[0].children, 2);
	assert_int_equal(s.n[0].afters, 0);
	assert_int_equal(s.n[0].remaining, RCTX_DUMP_FOREVER);
	assert_int_equal(s.n[0].age, -1); /* leak tracking is off */
	n = find(&s, a);
	assert_non_null(n);
	assert_int_equal(n->kind, RCTX_DUMP_TIMER);
	assert_int_equal(n->depth, 1);
	assert_true(n->remaining > 0 && n->remaining <= 3600 * RCTX_SEC);
	n = find(&s, b);
	assert_non_null(n);
	assert_int_equal(n->children, 1); /* c, through the value context */
	assert_int_equal(n->afters, 1);
	assert_int_equal(n->err, 0);
	n = find(&s, c);
	assert_non_null(n);
	assert_int_equal(n->depth, 2);
	assert_null(find(&s, v)); /* value contexts are in no set */
	/* parents come before their children */
	assert_true(find(&s, b) < find(&s, c));

	/* Bounded, and a callback can stop the report. */
	s.count = 0;
	assert_int_equal(rctx_dump(root, 2, collect, &s), 2);
	assert_int_equal(s.count, 2);
	s.count = 0;
	s.stop_after = 1;
	assert_int_equal(rctx_dump(root, 100, collect, &s), 1);
	s.stop_after = 0;

	/* A cancelled node leaves its parent's set (as in Go); dumped
	 * itself, it shows err and cause, and its set is emptied. */
	assert_int_equal(rctx_cancel_cause(b, 9), 0);
	s.count = 0;
	assert_int_equal(rctx_dump(root, 100, collect, &s), 2);
	assert_null(find(&s, b));
	s.count = 0;
	assert_int_equal(rctx_dump(b, 100, collect, &s), 1);
	n = find(&s, b);
	assert_non_null(n);
	assert_int_equal(n->err, ECANCELED);
	assert_int_equal(n->cause, 9);
	assert_int_equal(n->children, 0);
	assert_int_equal(n->remaining, RCTX_DUMP_FOREVER);

	/* Other roots: the node alone. */
	s.count = 0;
	assert_int_equal(rctx_dump(v, 100, collect, &s), 1);
	assert_int_equal(s.n[0].kind, RCTX_DUMP_VALUE);
	assert_int_equal(s.n[0].err, ECANCELED); /* through b */
	s.count = 0;
	assert_int_equal(rctx_dump(rctx_background(), 100, collect, &s), 1);
	assert_int_equal(s.n[0].kind, RCTX_DUMP_ROOT);

	rctx_release(c);
	rctx_release(v);
	rctx_release(b);
	rctx_release(a);
	rctx_release(root);
}

static void
test_age_with_tracking(void **state)
{
	rctx_t *c;
	struct seen s = { .count = 0 };

	(void)state;
	assert_int_equal(rctx_leak_track(true), 0);
	c = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_dump(c, 10, collect, &s), 1);
	assert_true(s.n[0].age >= 0);
	rctx_release(c);
	assert_int_equal(rctx_leak_track(false), 0);
}

static void
test_fd(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *a = rctx_with_timeout(root, 3600 * RCTX_SEC);
	rctx_t *b = rctx_with_cancel(root);
	FILE *f = tmpfile();
	char buf[4096];
	size_t n;

	(void)state;
	assert_non_null(f);
	assert_int_equal(rctx_dump_fd(root, 100, fileno(f)), 3);
	assert_int_equal(rctx_cancel(root), 0);
	assert_int_equal(rctx_dump_fd(root, 100, fileno(f)), 1);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	assert_non_null(strstr(buf, "cancel "));
	assert_non_null(strstr(buf, "children=2"));
	assert_non_null(strstr(buf, "  deadline "));
	assert_non_null(strstr(buf, "cancelled cause=125"));
	fclose(f);
	/* A failed write is reported. */
	assert_int_equal(rctx_dump_fd(root, 100, 1000), -EBADF);
	rctx_release(b);
	rctx_release(a);
	rctx_release(root);
}

/* Out of memory at each allocation in turn: -ENOMEM, nothing held. */
static void
test_out_of_memory(void **state)
{
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *kids[200];
	rctx_stats_t s0, s;
	int failed = 0;

	(void)state;
	for (int i = 0; i < 200; i++) /* enough for the walk to grow twice */
		kids[i] = rctx_with_cancel(i < 100 ? root : kids[i - 100]);
	assert_int_equal(rctx_stats(&s0, sizeof(s0)), 0);
	for (unsigned long k = 1; k < 20; k++) {
		struct seen sn = { .count = 0 };
		int r;

		rctx_fault_arm(RCTX_FAULT_MALLOC, k);
		r = rctx_dump(root, 1000, collect, &sn);
		rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
		if (r == -ENOMEM) {
			failed++;
			assert_int_equal(sn.count, 0); /* nothing reported */
		} else {
			assert_int_equal(r, 201);
		}
		assert_int_equal(rctx_stats(&s, sizeof(s)), 0);
		assert_int_equal(s.live, s0.live); /* references returned */
	}
	assert_true(failed >= 3); /* output, stack, their growth */
	for (int i = 199; i >= 0; i--)
		rctx_release(kids[i]);
	rctx_release(root);
}

/* --- the dump under churn: run it under TSan --- */

struct churn {
	rctx_t *root;
	_Atomic bool stop;
	unsigned seed;
};

static void *
churner(void *arg)
{
	struct churn *ch = arg;
	unsigned seed = __atomic_add_fetch(&ch->seed, 7, __ATOMIC_RELAXED);
	rctx_t *held[32] = { 0 };

	while (!atomic_load(&ch->stop)) {
		int i = (int)(rand_r(&seed) % 32);
		rctx_t *parent =
		    held[(i + 1) % 32] ? held[(i + 1) % 32] : ch->root;

		if (held[i]) {
			if (rand_r(&seed) % 2)
				(void)rctx_cancel(held[i]);
			rctx_release(held[i]);
			held[i] = NULL;
		} else {
			switch (rand_r(&seed) % 3) {
			case 0:
				held[i] = rctx_with_cancel(parent);
				break;
			case 1:
				held[i] = rctx_with_timeout(
				    parent, (rctx_time_t)(rand_r(&seed) % 50) *
						RCTX_USEC);
				break;
			default: {
				rctx_t *v = rctx_with_value(parent, &key, NULL);

				WCHECK(v != NULL);
				held[i] = rctx_with_cancel(v);
				rctx_release(v);
			}
			}
			WCHECK(held[i] != NULL);
		}
	}
	for (int i = 0; i < 32; i++)
		rctx_release(held[i]);
	return NULL;
}

struct check {
	int count;
	unsigned last_depth;
	int bad;
};

static int
check_node(const rctx_dump_node_t *n, void *arg)
{
	struct check *c = arg;

	if (c->count == 0 ? n->depth != 0 : n->depth > c->last_depth + 1)
		c->bad++;
	if (n->err != 0 && n->err != ECANCELED && n->err != ETIMEDOUT)
		c->bad++;
	if (n->remaining < 0)
		c->bad++;
	c->last_depth = n->depth;
	c->count++;
	return 0;
}

static void
test_churn(void **state)
{
	enum { THREADS = 2, DUMPS = 300 * RCTX_STRESS_SCALE, MAX = 50 };
	struct churn ch = { .root = rctx_with_cancel(rctx_background()) };
	pthread_t t[THREADS];
	rctx_stats_t s0, s;
	rctx_t *kids[3];

	(void)state;
	assert_int_equal(rctx_stats(&s0, sizeof(s0)), 0);
	for (int i = 0; i < 3; i++) /* always there: every dump sees them */
		kids[i] = rctx_with_cancel(ch.root);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churner, &ch), 0);
	for (int i = 0; i < DUMPS; i++) {
		struct check c = { 0 };
		int r = rctx_dump(ch.root, MAX, check_node, &c);

		assert_true(r >= 4 && r <= MAX);
		assert_int_equal(r, c.count);
		assert_int_equal(c.bad, 0);
	}
	atomic_store(&ch.stop, true);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < 3; i++)
		rctx_release(kids[i]);
	rctx_release(ch.root);
	/* Every reference the dumps took was given back (a firing timer
	 * may hold one a moment longer: wait, with a hang guard). */
	rctx_time_t give_up = rctx_now() + 30 * RCTX_SEC;

	do {
		assert_int_equal(rctx_stats(&s, sizeof(s)), 0);
	} while (s.live != s0.live - 1 && rctx_now() < give_up &&
		 usleep(100) == 0);
	assert_int_equal(s.live, s0.live - 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_age_with_tracking),
		cmocka_unit_test(test_fd),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_churn),
	};

	return RUN_TESTS(tests);
}
