/* SPDX-License-Identifier: MIT */
/* Deadlines, SEMANTICS 13-16: effective deadline, expiry, stopping timers. */

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_s13_effective_deadline),
		cmocka_unit_test(test_s14_past_deadline_born_done),
		cmocka_unit_test(test_s15_expiry_never_early_never_lost),
		cmocka_unit_test(test_s16_cancel_or_release_stops_timer),
	};

	return RUN_TESTS(tests);
}
