/* SPDX-License-Identifier: MIT */
/* rctx_stats and rctx_metrics: counts through cascades, deadlines, exits. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fault.h"
#include "rctx.h"
#include "util.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static char key;

/* A hang guard only: "eventually" never depends on the machine's speed. */
#define HANG_GUARD (30 * RCTX_SEC)

static rctx_stats_t
snap(void)
{
	rctx_stats_t s;

	assert_int_equal(rctx_stats(&s, sizeof(s)), 0);
	return s;
}

static rctx_metrics_t *
msnap(void)
{
	rctx_metrics_t *m = malloc(sizeof(*m));

	assert_non_null(m);
	assert_int_equal(rctx_metrics(m, sizeof(*m)), 0);
	return m;
}

/* Poll until field of the stats reaches want (counts land just after the
 * state a waiter sees); fail at the hang guard. */
#define EVENTUALLY(field, want)                                                \
	do {                                                                   \
		rctx_time_t give_up_ = rctx_now() + HANG_GUARD;                \
		while (snap().field != (want) && rctx_now() < give_up_)        \
			usleep(100);                                           \
		assert_int_equal(snap().field, (want));                        \
	} while (0)

static void
test_size_handling(void **state)
{
	rctx_stats_t s;
	unsigned char big[sizeof(rctx_stats_t) + 16];
	rctx_metrics_t *m, *m0;
	unsigned char part[16];

	(void)state;
	assert_int_equal(rctx_stats(NULL, sizeof(s)), -EINVAL);
	assert_int_equal(rctx_stats(&s, 0), -EINVAL);
	assert_int_equal(rctx_stats(&s, 5 * sizeof(uint64_t) - 1), -EINVAL);
	assert_int_equal(rctx_stats(&s, 5 * sizeof(uint64_t)), 0);
	/* A larger copy (a newer caller): the tail is zeroed. */
	memset(big, 0xa5, sizeof(big));
	assert_int_equal(rctx_stats((rctx_stats_t *)(void *)big, sizeof(big)),
			 0);
	for (size_t i = sizeof(rctx_stats_t); i < sizeof(big); i++)
		assert_int_equal(big[i], 0);

	assert_int_equal(rctx_metrics(NULL, sizeof(*m)), -EINVAL);
	assert_int_equal(rctx_metrics((rctx_metrics_t *)(void *)part, 0),
			 -EINVAL);
	/* A smaller copy: only its bytes are written. */
	memset(part, 0xa5, sizeof(part));
	assert_int_equal(rctx_metrics((rctx_metrics_t *)(void *)part, 8), 0);
	for (size_t i = 8; i < sizeof(part); i++)
		assert_int_equal(part[i], 0xa5);
	m = msnap();
	free(m);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 1);
	assert_int_equal(rctx_metrics(m0 = malloc(sizeof(*m0)), sizeof(*m0)),
			 -ENOMEM);
	rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
	free(m0);
}

static void
test_counts_through_cascade(void **state)
{
	rctx_stats_t s0 = snap(), s;
	rctx_t *root, *a, *b, *v, *c, *wo, *born;

	(void)state;
	root = rctx_with_cancel(rctx_background());
	a = rctx_with_cancel(root);
	b = rctx_with_timeout(root, 3600 * RCTX_SEC);
	v = rctx_with_value(b, &key, NULL);
	c = rctx_with_cancel(v); /* registers under b, through v */
	wo = rctx_without_cancel(root);
	assert_non_null(root && a && b && v && c && wo);
	s = snap();
	assert_int_equal(s.created - s0.created, 6);
	assert_int_equal(s.live - s0.live, 6);
	assert_int_equal(s.timers - s0.timers, 1);
	assert_int_equal(s.cancelled, s0.cancelled);

	/* Every cancelable descendant is counted once, before cancel
	 * returns; the value and without_cancel contexts are not. */
	assert_int_equal(rctx_cancel(root), 0);
	s = snap();
	assert_int_equal(s.cancelled - s0.cancelled, 4);
	assert_int_equal(s.timers, s0.timers); /* withdrawn */
	assert_int_equal(rctx_cancel(a), -EALREADY);
	assert_int_equal(snap().cancelled - s0.cancelled, 4);

	/* Born done under a done parent: counted too. */
	born = rctx_with_cancel(c);
	assert_true(rctx_done(born));
	s = snap();
	assert_int_equal(s.cancelled - s0.cancelled, 5);
	assert_int_equal(s.created - s0.created, 7);

	rctx_release(born);
	rctx_release(wo);
	rctx_release(c);
	rctx_release(v);
	rctx_release(b);
	rctx_release(a);
	assert_int_equal(snap().live - s0.live, 1);
	rctx_release(root);
	s = snap();
	assert_int_equal(s.live, s0.live);
	assert_int_equal(s.timers, s0.timers);
	assert_int_equal(s.timed_out, s0.timed_out);
}

static void
test_deep_and_wide_cascade(void **state)
{
	enum { DEPTH = 1000, WIDE = 300 };
	rctx_stats_t s0 = snap(), s;
	rctx_metrics_t *m0 = msnap(), *m;
	rctx_t **chain = calloc(DEPTH + WIDE, sizeof(*chain));
	rctx_t *root;

	(void)state;
	assert_non_null(chain);
	root = rctx_with_cancel(rctx_background());
	chain[0] = root;
	for (int i = 1; i < DEPTH; i++)
		chain[i] = rctx_with_cancel(chain[i - 1]);
	for (int i = DEPTH; i < DEPTH + WIDE; i++)
		chain[i] = rctx_with_cancel(chain[DEPTH / 2]);
	assert_int_equal(rctx_cancel_cause(root, 4242), 0);
	s = snap();
	m = msnap();
	assert_int_equal(s.cancelled - s0.cancelled, DEPTH + WIDE);
	/* one cascade of 1300 contexts: bucket 11 holds [1024, 2048) */
	assert_int_equal(m->cascade[11] - m0->cascade[11], 1);
	assert_int_equal(m->cascade_sum - m0->cascade_sum, DEPTH + WIDE);
	/* 4242 is not below RCTX_METRICS_CAUSES: the "other" slot */
	assert_int_equal(m->cancelled_by_cause[RCTX_METRICS_CAUSES] -
			     m0->cancelled_by_cause[RCTX_METRICS_CAUSES],
			 DEPTH + WIDE);
	for (int i = DEPTH + WIDE - 1; i >= 0; i--)
		rctx_release(chain[i]);
	assert_int_equal(snap().live, s0.live);
	free(chain);
	free(m0);
	free(m);
}

static void
test_causes(void **state)
{
	rctx_metrics_t *m0 = msnap(), *m;
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *ch = rctx_with_cancel(p);
	rctx_t *q = rctx_with_cancel(rctx_background());
	rctx_t *l = rctx_with_cancel(rctx_background());
	rctx_t *t = rctx_with_timeout_cause(rctx_background(), 0, 77);

	(void)state;
	assert_int_equal(rctx_cancel_cause(p, 42), 0);
	assert_int_equal(rctx_cancel(q), 0);
	rctx_release(l); /* never done */
	m = msnap();
	assert_int_equal(m->cancelled_by_cause[42] - m0->cancelled_by_cause[42],
			 2);
	assert_int_equal(m->cancelled_by_cause[ECANCELED] -
			     m0->cancelled_by_cause[ECANCELED],
			 1);
	assert_int_equal(m->timed_out_by_cause[77] - m0->timed_out_by_cause[77],
			 1);
	assert_int_equal(m->released_live - m0->released_live, 1);
	rctx_release(ch);
	rctx_release(p);
	rctx_release(q);
	rctx_release(t);
	free(m0);
	free(m);
}

static void
test_deadlines(void **state)
{
	enum { N = 8, KIDS = 3 };
	rctx_stats_t s0 = snap(), s;
	rctx_metrics_t *m0 = msnap(), *m;
	rctx_t *p[N], *kid[N][KIDS], *far, *gone;
	uint64_t late0 = 0, late = 0;

	(void)state;
	for (int i = 0; i < N; i++) {
		p[i] = rctx_with_timeout(rctx_background(), RCTX_MSEC);
		for (int k = 0; k < KIDS; k++)
			kid[i][k] = rctx_with_cancel(p[i]);
	}
	/* A deadline withdrawn by release: out of timers at once. */
	far = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	gone = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	assert_true(snap().timers - s0.timers >= 2);
	rctx_release(gone);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < KIDS; k++)
			assert_int_equal(rctx_wait(kid[i][k], -1), ETIMEDOUT);
	/* Each parent and its children timed out once; only `far` is left
	 * armed. */
	EVENTUALLY(timed_out, s0.timed_out + N * (1 + KIDS));
	EVENTUALLY(timers, s0.timers + 1);
	s = snap();
	assert_int_equal(s.cancelled, s0.cancelled);
	/* Each fire that timed a context out measured its lateness (a
	 * deadline already past at creation times out without a fire). */
	m = msnap();
	for (int b = 0; b < RCTX_METRICS_BUCKETS; b++) {
		late0 += m0->lateness[b];
		late += m->lateness[b];
	}
	assert_true(late - late0 <= N);
	assert_int_equal(m->timed_out_by_cause[ETIMEDOUT] -
			     m0->timed_out_by_cause[ETIMEDOUT],
			 N * (1 + KIDS));
	assert_int_equal(rctx_cancel(far), 0);
	assert_int_equal(snap().timers, s0.timers);
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < KIDS; k++)
			rctx_release(kid[i][k]);
		rctx_release(p[i]);
	}
	rctx_release(far);
	/* a firing timer may hold the last reference a moment longer */
	EVENTUALLY(live, s0.live);
	free(m0);
	free(m);
}

static void
test_lateness_recorded(void **state)
{
	rctx_metrics_t *m0 = msnap(), *m = NULL;
	rctx_t *t;
	uint64_t n0 = 0, n;
	rctx_time_t give_up = rctx_now() + HANG_GUARD;

	(void)state;
	for (int b = 0; b < RCTX_METRICS_BUCKETS; b++)
		n0 += m0->lateness[b];
	/* Far enough ahead to be armed, so a timer fires it. */
	t = rctx_with_timeout(rctx_background(), 20 * RCTX_MSEC);
	assert_int_equal(rctx_wait(t, -1), ETIMEDOUT);
	do {
		free(m);
		m = msnap();
		n = 0;
		for (int b = 0; b < RCTX_METRICS_BUCKETS; b++)
			n += m->lateness[b];
	} while (n == n0 && rctx_now() < give_up);
	assert_int_equal(n - n0, 1);
	rctx_release(t);
	free(m0);
	free(m);
}

/* --- threads that exit --- */

#define PER_THREAD 200
struct worker {
	pthread_t tid;
	rctx_t *kept[PER_THREAD / 4];
	rctx_t *timer;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	rctx_t *root = rctx_with_cancel(rctx_background());

	WCHECK(root != NULL);
	for (int i = 0; i < PER_THREAD; i++) {
		rctx_t *c = rctx_with_cancel(root);

		WCHECK(c != NULL);
		if (i % 4 == 0)
			w->kept[i / 4] = c; /* handed to main, still live */
		else if (i % 4 == 1)
			rctx_release(c);
		else {
			WCHECK(rctx_cancel(c) == 0);
			rctx_release(c);
		}
	}
	rctx_release(root); /* kept children still hold it */
	w->timer = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	WCHECK(w->timer != NULL);
	return NULL;
}

static void
test_threads_that_exit(void **state)
{
	enum { T = 4 };
	struct worker w[T];
	rctx_stats_t s0 = snap(), s;

	(void)state;
	memset(w, 0, sizeof(w));
	for (int i = 0; i < T; i++)
		assert_int_equal(
		    pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < T; i++)
		assert_int_equal(pthread_join(w[i].tid, NULL), 0);
	/* Their counts outlive them. */
	s = snap();
	assert_int_equal(s.created - s0.created, T * (PER_THREAD + 2));
	assert_int_equal(s.cancelled - s0.cancelled, T * PER_THREAD / 2);
	/* live: the kept children, their roots, the timers */
	assert_int_equal(s.live - s0.live, T * (PER_THREAD / 4 + 2));
	assert_int_equal(s.timers - s0.timers, T);
	/* Freed on another thread than the one that made them. */
	for (int i = 0; i < T; i++) {
		for (int k = 0; k < PER_THREAD / 4; k++)
			rctx_release(w[i].kept[k]);
		rctx_release(w[i].timer);
	}
	s = snap();
	assert_int_equal(s.live, s0.live);
	assert_int_equal(s.timers, s0.timers);
	assert_int_equal(s.created - s0.created, T * (PER_THREAD + 2));
}

/* A fork while other threads have counted: the child reads and counts. */
static void
test_fork_child_counts(void **state)
{
	struct worker w;
	rctx_stats_t s0;
	pid_t pid;
	int st;

	(void)state;
#ifdef UNDER_TSAN
	TEST_SKIP("TSan cannot start threads after a multi-threaded fork");
#endif
	memset(&w, 0, sizeof(w));
	assert_int_equal(pthread_create(&w.tid, NULL, worker_main, &w), 0);
	assert_int_equal(pthread_join(w.tid, NULL), 0);
	s0 = snap();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		rctx_stats_t s;
		struct worker w2;
		int ok = 1;

		memset(&w2, 0, sizeof(w2));
		ok &= rctx_stats(&s, sizeof(s)) == 0 && s.live == s0.live &&
		      s.created == s0.created;
		ok &= pthread_create(&w2.tid, NULL, worker_main, &w2) == 0;
		ok &= pthread_join(w2.tid, NULL) == 0;
		ok &= rctx_stats(&s, sizeof(s)) == 0 &&
		      s.created == s0.created + PER_THREAD + 2;
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	for (int k = 0; k < PER_THREAD / 4; k++)
		rctx_release(w.kept[k]);
	rctx_release(w.timer);
	assert_int_equal(snap().live, s0.live - (PER_THREAD / 4 + 2));
}

/* --- races: counts settle back whatever order cancel and free take --- */

struct race {
	rctx_t *parent;
	_Atomic int go;
};

static void *
race_deriver(void *arg)
{
	struct race *r = arg;
	rctx_t *kids[64];

	while (!atomic_load(&r->go))
		;
	for (int i = 0; i < 64; i++) {
		/* far deadlines (armed), near ones (may fire), due ones */
		rctx_time_t t = i % 3 == 0   ? 3600 * RCTX_SEC
				: i % 3 == 1 ? (rctx_time_t)(i * 10) * RCTX_USEC
					     : 0;

		kids[i] = rctx_with_timeout(r->parent, t);
		WCHECK(kids[i] != NULL);
		if (i % 2)
			rctx_release(kids[i]); /* released while maybe live */
	}
	for (int i = 0; i < 64; i += 2)
		rctx_release(kids[i]);
	return NULL;
}

static void *
race_canceller(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->go))
		;
	sched_yield();
	WCHECK(rctx_cancel(r->parent) == 0);
	return NULL;
}

static void
test_races_settle(void **state)
{
	enum { ROUNDS = 200 * RCTX_STRESS_SCALE };
	rctx_stats_t s0 = snap(), s;

	(void)state;
	for (int i = 0; i < ROUNDS; i++) {
		struct race r = { .parent =
				      rctx_with_cancel(rctx_background()) };
		pthread_t a, b;

		assert_non_null(r.parent);
		assert_int_equal(pthread_create(&a, NULL, race_deriver, &r), 0);
		assert_int_equal(pthread_create(&b, NULL, race_canceller, &r),
				 0);
		atomic_store(&r.go, 1);
		assert_int_equal(pthread_join(a, NULL), 0);
		assert_int_equal(pthread_join(b, NULL), 0);
		rctx_release(r.parent);
	}
	/* Every deadline was fired, withdrawn by the cancel, or released;
	 * every context freed; and each done context counted once. */
	EVENTUALLY(timers, s0.timers);
	EVENTUALLY(live, s0.live); /* firing timers hold references */
	s = snap();
	assert_int_equal(s.created - s0.created, ROUNDS * 65);
	assert_true((s.cancelled - s0.cancelled) +
			(s.timed_out - s0.timed_out) <=
		    (uint64_t)ROUNDS * 65);
	assert_true(s.cancelled - s0.cancelled >= ROUNDS); /* the parents */
}

/* A thread alive across rctx_shutdown: phase 1 counts, 2 counts again. */
struct across {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int phase, done;
};

static void
across_step(struct across *a, int done, int wait_for)
{
	pthread_mutex_lock(&a->mu);
	a->done = done;
	pthread_cond_broadcast(&a->cv);
	while (a->phase < wait_for)
		pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
}

static void
across_make(int n)
{
	for (int i = 0; i < n; i++) {
		rctx_t *c = rctx_with_cancel(rctx_background());

		WCHECK(c != NULL);
		rctx_release(c);
	}
}

static void *
across_thread(void *arg)
{
	struct across *a = arg;

	across_make(10);
	across_step(a, 1, 2); /* counted; wait out the shutdown */
	across_make(7);
	across_step(a, 2, 3);
	return NULL; /* its exit folds its block once more */
}

static void
across_wait(struct across *a, int done)
{
	pthread_mutex_lock(&a->mu);
	while (a->done < done)
		pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
}

static void
across_phase(struct across *a, int phase)
{
	pthread_mutex_lock(&a->mu);
	a->phase = phase;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/*
 * Shutdown folds every live thread's counts into the totals and deletes
 * the thread-exit key (nothing of ours is left for a dlclose): the sums
 * do not move, a thread that counts again after it registers again, and
 * its exit neither loses nor doubles its counts.
 */
static void
test_counts_across_shutdown(void **state)
{
	struct across a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    0, 0 };
	pthread_t th;
	uint64_t c0;

	(void)state;
	c0 = snap().created;
	assert_int_equal(pthread_create(&th, NULL, across_thread, &a), 0);
	across_wait(&a, 1);
	assert_int_equal(snap().created, c0 + 10);
	rctx_shutdown();
	assert_int_equal(snap().created, c0 + 10);
	across_phase(&a, 2);
	across_wait(&a, 2);
	assert_int_equal(snap().created, c0 + 17);
	across_phase(&a, 3);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(snap().created, c0 + 17);
}

/*
 * The plain end (rctx_cancel's defaults) is counted by one counter that
 * stands for the ECANCELED row, and for a leaf also for its one-node
 * cascade: the public figures must not tell which path counted.
 */
static void
test_plain_ends(void **state)
{
	enum { KIDS = 5 };
	rctx_stats_t s0 = snap(), s;
	rctx_metrics_t *m0 = msnap(), *m;
	rctx_t *leaf = rctx_with_cancel(rctx_background());
	rctx_t *root = rctx_with_cancel(rctx_background());
	rctx_t *tl = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	rctx_t *kid[KIDS];

	(void)state;
	for (int i = 0; i < KIDS; i++)
		kid[i] = rctx_with_cancel(root);
	assert_int_equal(rctx_cancel(leaf), 0); /* a leaf */
	assert_int_equal(rctx_cancel(tl), 0);	/* a leaf with a deadline */
	assert_int_equal(rctx_cancel(root), 0); /* 1 + KIDS */
	s = snap();
	m = msnap();
	assert_int_equal(s.cancelled - s0.cancelled, 3 + KIDS);
	assert_int_equal(m->cancelled_by_cause[ECANCELED] -
			     m0->cancelled_by_cause[ECANCELED],
			 3 + KIDS);
	assert_int_equal(s.timers, s0.timers);
	/* two cascades of one context, one of 1 + KIDS (bucket 3: [4, 8)) */
	assert_int_equal(m->cascade[1] - m0->cascade[1], 2);
	assert_int_equal(m->cascade[3] - m0->cascade[3], 1);
	assert_int_equal(m->cascade_sum - m0->cascade_sum, 3 + KIDS);
	assert_int_equal(m->released_live, m0->released_live);
	for (int i = 0; i < KIDS; i++)
		rctx_release(kid[i]);
	rctx_release(root);
	rctx_release(tl);
	rctx_release(leaf);
	assert_int_equal(snap().live, s0.live);
	free(m0);
	free(m);
}

/*
 * A deadline is counted from its constructor's first step; every way a
 * deadline context can end before its timer runs takes it back once.
 */
static void
test_timer_count_edges(void **state)
{
	rctx_stats_t s0 = snap(), s;
	rctx_t *p = rctx_with_cancel(rctx_background());
	rctx_t *born, *past, *live;

	(void)state;
	assert_int_equal(rctx_cancel(p), 0);
	born = rctx_with_timeout(p, 3600 * RCTX_SEC); /* born done */
	past = rctx_with_timeout(rctx_background(), -RCTX_SEC);
	live = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	assert_non_null(born && past && live);
	assert_int_equal(rctx_err(born), ECANCELED);
	assert_int_equal(rctx_err(past), ETIMEDOUT);
	s = snap();
	assert_int_equal(s.timers - s0.timers, 1); /* live only */
	assert_int_equal(s.cancelled - s0.cancelled, 2);
	assert_int_equal(s.timed_out - s0.timed_out, 1);
	rctx_release(live); /* released live: withdrawn */
	assert_int_equal(snap().timers, s0.timers);
	rctx_release(past);
	rctx_release(born);
	rctx_release(p);
	assert_int_equal(snap().live, s0.live);
}

/* With leak tracking on every hook takes its slow path: same counts. */
static void
test_counts_with_tracking_on(void **state)
{
	rctx_stats_t s0, s;
	rctx_metrics_t *m0, *m;
	rctx_t *a, *b, *c, *v;

	(void)state;
	assert_int_equal(rctx_leak_track(true), 0);
	s0 = snap();
	m0 = msnap();
	a = rctx_with_cancel(rctx_background());
	b = rctx_with_timeout(a, 3600 * RCTX_SEC);
	c = rctx_with_cancel(rctx_background());
	v = rctx_with_value(c, &key, NULL);
	s = snap();
	assert_int_equal(s.created - s0.created, 4);
	assert_int_equal(s.timers - s0.timers, 1);
	assert_int_equal(rctx_cancel(a), 0);
	assert_int_equal(rctx_cancel(c), 0);
	s = snap();
	m = msnap();
	assert_int_equal(s.cancelled - s0.cancelled, 3);
	assert_int_equal(s.timers, s0.timers);
	assert_int_equal(m->cascade[1] - m0->cascade[1], 1);
	assert_int_equal(m->cascade[2] - m0->cascade[2], 1);
	assert_int_equal(m->cancelled_by_cause[ECANCELED] -
			     m0->cancelled_by_cause[ECANCELED],
			 3);
	rctx_release(v);
	rctx_release(c);
	rctx_release(b);
	rctx_release(a);
	assert_int_equal(snap().live, s0.live);
	assert_int_equal(rctx_leak_track(false), 0);
	free(m0);
	free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_handling),
		cmocka_unit_test(test_counts_through_cascade),
		cmocka_unit_test(test_deep_and_wide_cascade),
		cmocka_unit_test(test_causes),
		cmocka_unit_test(test_plain_ends),
		cmocka_unit_test(test_timer_count_edges),
		cmocka_unit_test(test_counts_with_tracking_on),
		cmocka_unit_test(test_deadlines),
		cmocka_unit_test(test_lateness_recorded),
		cmocka_unit_test(test_threads_that_exit),
		cmocka_unit_test(test_counts_across_shutdown),
		cmocka_unit_test(test_races_settle),
		cmocka_unit_test(test_fork_child_counts),
	};

	return RUN_TESTS(tests);
}
