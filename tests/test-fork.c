/* SPDX-License-Identifier: MIT */
/* fork() with live contexts and armed deadlines: both sides keep working. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rctx.h"

#include "rawctx.h"
#include "util.h" /* white-box: rctx_alloc_outstanding */

/* Generous bound for a wait that must end (never a timing assertion). */
#define LONG_WAIT (10 * RCTX_SEC)

static char key;

struct shared {
	rctx_t *root;  /* live cancel context */
	rctx_t *armed; /* deadline 50 ms after fork time */
	rctx_t *far;   /* deadline an hour away */
	rctx_t *val;   /* value over root */
};

static void
child_work(struct shared *s, bool arm_first)
{
	if (arm_first) {
		/* A new timeout in the child: the service must run here. */
		rctx_t *t =
		    rctx_with_timeout_cause(s->root, 10 * RCTX_MSEC, 61);
		CHILD_CHECK(t != NULL);
		CHILD_CHECK(rctx_wait(t, LONG_WAIT) == ETIMEDOUT);
		CHILD_CHECK(rctx_cause(t) == 61);
		rctx_release(t);
	}
	/* A deadline armed before fork expires in the child too. */
	CHILD_CHECK(rctx_wait(s->armed, LONG_WAIT) == ETIMEDOUT);
	/* Inherited contexts work: derive, values, cancel. */
	rctx_t *c = rctx_with_cancel(s->val);
	CHILD_CHECK(c != NULL);
	CHILD_CHECK(rctx_value(c, &key) == &key);
	int fd = rctx_fd(c);
	CHILD_CHECK(fd >= 0);
	CHILD_CHECK(rctx_cancel_cause(s->root, 62) == 0);
	CHILD_CHECK(rctx_err(c) == ECANCELED && rctx_cause(c) == 62);
	CHILD_CHECK(rctx_done(s->far));
	struct pollfd p = { .fd = fd, .events = POLLIN };
	CHILD_CHECK(poll(&p, 1, 0) == 1);
	if (!arm_first) {
		rctx_t *t =
		    rctx_with_timeout(rctx_background(), 10 * RCTX_MSEC);
		CHILD_CHECK(t != NULL);
		CHILD_CHECK(rctx_wait(t, LONG_WAIT) == ETIMEDOUT);
		rctx_release(t);
	}
	rctx_release(c);
	/* The child's copies are its own: released, with the library shut
	 * down, nothing is left (the parent's timer owners, which do not
	 * exist here, held no cache at fork: alloc.c, thread flush). */
	rctx_release(s->far);
	rctx_release(s->armed);
	rctx_release(s->val);
	rctx_release(s->root);
	rctx_shutdown();
	CHILD_CHECK(rctx_alloc_outstanding() == 0);
	_exit(0);
}

static void
fork_and_check(bool arm_first)
{
	struct shared s;

	s.root = rctx_with_cancel(rctx_background());
	s.val = rctx_with_value(s.root, &key, &key);
	s.armed = rctx_with_timeout(s.val, 50 * RCTX_MSEC);
	s.far = rctx_with_timeout(s.root, 3600 * RCTX_SEC);
	assert_non_null(s.root);
	assert_non_null(s.val);
	assert_non_null(s.armed);
	assert_non_null(s.far);

	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_work(&s, arm_first);

	/* The parent's contexts are untouched by the child's cancel. */
	assert_int_equal(rctx_wait(s.armed, LONG_WAIT), ETIMEDOUT);
	assert_false(rctx_done(s.root));
	assert_false(rctx_done(s.far));
	rctx_t *t = rctx_with_timeout_cause(s.root, 10 * RCTX_MSEC, 71);
	assert_non_null(t);
	assert_int_equal(rctx_wait(t, LONG_WAIT), ETIMEDOUT);
	assert_int_equal(rctx_cause(t), 71);

	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(rctx_cancel(s.root), 0);
	assert_true(rctx_done(s.far));
	rctx_release(t);
	rctx_release(s.far);
	rctx_release(s.armed);
	rctx_release(s.val);
	rctx_release(s.root);
}

static void
test_fork_child_arms_first(void **state)
{
	(void)state;
	fork_and_check(true);
}

static void
test_fork_child_waits_first(void **state)
{
	(void)state;
	fork_and_check(false);
}

/*
 * fork while another thread is inside the library.
 *
 * Under AddressSanitizer the churning thread parks between iterations
 * around fork, through an atfork handler of the test's own. clang 14's
 * ASan allocator has no fork handler: a child forked while any thread is
 * inside malloc inherits that lock held and hangs at its next allocation
 * (a limit of the sanitizer, google/sanitizers#1814). The library parks
 * its own threads (see src/fork.c); a user's threads are the user's to
 * park, as here. Other builds fork with the thread anywhere.
 */
#if defined(__SANITIZE_ADDRESS__)
#define FORK_PARKS_CHURN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FORK_PARKS_CHURN 1
#endif
#endif
#ifndef FORK_PARKS_CHURN
#define FORK_PARKS_CHURN 0
#endif

static _Atomic bool stop_churn;
static _Atomic int churn_gate; /* 0 run, 1 park requested, 2 parked */
static _Atomic bool churn_live;

static void *
churn(void *arg)
{
	(void)arg;
	/* seq_cst: pairs with the store in test_fork_during_churn */
	while (!atomic_load(&stop_churn)) {
		/* seq_cst: the gate's handshake with churn_prepare */
		if (atomic_load(&churn_gate) == 1) {
			atomic_store(&churn_gate, 2);
			while (atomic_load(&churn_gate) == 2)
				sched_yield();
		}
		rctx_t *c = rctx_with_timeout(rctx_background(), RCTX_MSEC);
		rctx_t *d = rctx_with_cancel(c);
		rctx_cancel(c);
		rctx_release(d);
		rctx_release(c);
	}
	return NULL;
}

static void
churn_prepare(void)
{
	/* seq_cst: the gate's handshake with churn */
	if (!atomic_load(&churn_live))
		return;
	atomic_store(&churn_gate, 1);
	while (atomic_load(&churn_gate) != 2)
		sched_yield();
}

static void
churn_resume(void)
{
	/* seq_cst: the gate's handshake with churn */
	atomic_store(&churn_gate, 0);
}

static void
test_fork_during_churn(void **state)
{
	(void)state;
	pthread_t th;

	atomic_store(&stop_churn, false);
	if (FORK_PARKS_CHURN) {
		static bool installed;

		if (!installed)
			assert_int_equal(pthread_atfork(churn_prepare,
							churn_resume,
							churn_resume),
					 0);
		installed = true;
		atomic_store(&churn_live, true);
	}
	assert_int_equal(pthread_create(&th, NULL, churn, NULL), 0);
	for (int i = 0; i < 5; i++) {
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			rctx_t *t =
			    rctx_with_timeout(rctx_background(), 5 * RCTX_MSEC);
			CHILD_CHECK(t != NULL);
			CHILD_CHECK(rctx_wait(t, LONG_WAIT) == ETIMEDOUT);
			rctx_t *c = rctx_with_cancel(t);
			CHILD_CHECK(rctx_done(c));
			rctx_release(c);
			rctx_release(t);
			rctx_shutdown();
			/* The churning thread's cached contexts are not the
			 * child's to reclaim (include/rctx.h, fork): end as
			 * such children usually do, by exec, which leak
			 * checkers do not count as an exit. */
			execl("/bin/true", "true", (char *)NULL);
			_exit(0);
		}
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	/* seq_cst: pairs with the load in churn */
	atomic_store(&stop_churn, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	atomic_store(&churn_live, false);
}

/*
 * Contexts freed through RCU in the child come back in the child. Their
 * reclaim needs the library's reclaimer thread, and the parent's does not
 * survive fork: a child that kept using it (as with liburcu's call_rcu
 * worker before the fork hooks) never reclaimed its frees, and waiting for
 * them (rcu_barrier, so rctx_shutdown) hung. White-box: the allocator's
 * deferred free is driven directly, because the tree frees through RCU
 * only while a cancel is walking the parent.
 */
#define ROUND 1000

static struct rctx *ctxs[ROUND];

/* Allocate a round and defer-free it; flush it to the reclaimer. */
static bool
rcu_round(void)
{
	for (int i = 0; i < ROUND; i++) {
		ctxs[i] = raw_ctx_alloc();
		if (ctxs[i] == NULL)
			return false;
	}
	for (int i = 0; i < ROUND; i++)
		rctx_ctx_free_rcu(ctxs[i]);
	rctx_alloc_flush();
	return true;
}

/* Wait (no bound: the caller's alarm is one) for the reclaimer thread. */
static void
wait_reclaimer_beyond(long batches)
{
	while (rctx_alloc_reclaimer_batches() <= batches) {
		struct timespec ts = { 0, RCTX_MSEC };

		nanosleep(&ts, NULL);
	}
}

static void
test_fork_child_reclaims(void **state)
{
	(void)state;
	long before = rctx_alloc_reclaimer_batches();

	/* The parent's reclaimer runs, and has batches waiting at fork. */
	assert_true(rcu_round());
	wait_reclaimer_beyond(before);
	assert_true(rcu_round());

	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A hang (the bug) becomes a failure, never a slow pass. */
		alarm(120);
		long base = rctx_alloc_outstanding();
		for (int r = 0; r < 5; r++) {
			long seen = rctx_alloc_reclaimer_batches();

			CHILD_CHECK(rcu_round());
			/* The child's own reclaimer brings them back. */
			wait_reclaimer_beyond(seen);
		}
		/* So allocations reuse them: five rounds cost at most the
		 * contexts of the two rounds still unreclaimed at a time. */
		CHILD_CHECK(rctx_alloc_outstanding() - base <= 2 * ROUND);
		rctx_shutdown(); /* waits for every deferred free */
		CHILD_CHECK(rctx_alloc_outstanding() == 0);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	before = rctx_alloc_reclaimer_batches();
	assert_true(rcu_round()); /* the parent's reclaimer runs on */
	wait_reclaimer_beyond(before);
}

/*
 * Item 7: a deadline armed before fork fires in a child that makes no
 * call that arms or waits: it only polls the context's fd with poll(2),
 * or spins on rctx_done. The child exits 0 iff the deadline fired, and
 * not before it was due; the bounds are hang guards only. The child takes
 * the fd itself: an eventfd made before fork would be the parent's too,
 * and the parent's own fire would make it readable.
 */
static void
child_polls_only(rctx_t *d, rctx_time_t due, bool use_fd)
{
	rctx_time_t give_up = rctx_now() + 30 * RCTX_SEC;

	if (use_fd) {
		struct pollfd p = { .fd = rctx_fd(d), .events = POLLIN };
		int r;

		CHILD_CHECK(p.fd >= 0);
		do {
			r = poll(&p, 1, 30 * 1000);
		} while (r < 0 && errno == EINTR);
		CHILD_CHECK(r == 1); /* 0: it never fired (hang guard) */
	} else {
		while (!rctx_done(d)) {
			CHILD_CHECK(rctx_now() < give_up);
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		}
	}
	CHILD_CHECK(rctx_now() >= due); /* never early */
	CHILD_CHECK(rctx_err(d) == ETIMEDOUT);
	_exit(0);
}

static void
fork_poll_only(bool use_fd)
{
	/* The parent's timer service runs (it started for this deadline). */
	rctx_time_t t0 = rctx_now();
	rctx_t *d = rctx_with_timeout(rctx_background(), 100 * RCTX_MSEC);
	assert_non_null(d);

	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_polls_only(d, t0 + 100 * RCTX_MSEC, use_fd);

	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(rctx_wait(d, LONG_WAIT), ETIMEDOUT);
	rctx_release(d);
}

static void
test_fork_child_polls_fd(void **state)
{
	(void)state;
	fork_poll_only(true);
}

static void
test_fork_child_spins_done(void **state)
{
	(void)state;
	fork_poll_only(false);
}

/*
 * Cause names across fork: another thread registering names while this
 * one forks. Registration serializes on a mutex; a child forked while
 * that thread held it inherited it held forever, and its own first
 * rctx_cause_register hung. The registering thread keeps the lock busy
 * (a full scan of many names each time), so most forks land inside.
 */
static _Atomic bool names_stop;

static void *
names_churn(void *arg)
{
	(void)arg;
	/* seq_cst: pairs with the store in test_fork_during_cause_register */
	while (!atomic_load(&names_stop))
		CHILD_CHECK(rctx_cause_register("fork churn name 199",
						RCTX_CAUSE_KIND_SERVER) >=
			    RCTX_CAUSE_NAMED);
	return NULL;
}

static void
test_fork_during_cause_register(void **state)
{
	static char names[200][32]; /* registered names are not copied */
	pthread_t th;

	(void)state;
	/* Many names, so each registration scans for a while under the
	 * lock. */
	for (int i = 0; i < 200; i++) {
		snprintf(names[i], sizeof(names[i]), "fork churn name %d", i);
		assert_true(
		    rctx_cause_register(names[i], RCTX_CAUSE_KIND_SERVER) >=
		    RCTX_CAUSE_NAMED);
	}
	atomic_store(&names_stop, false);
	assert_int_equal(pthread_create(&th, NULL, names_churn, NULL), 0);
	for (int i = 0; i < 20; i++) {
		fflush(NULL);
		pid_t pid = fork();
		int status;

		assert_true(pid >= 0);
		if (pid == 0) {
			alarm(10); /* a hang ends the child by SIGALRM */
			CHILD_CHECK(
			    rctx_cause_register("fork child name",
						RCTX_CAUSE_KIND_SERVER) >=
			    RCTX_CAUSE_NAMED);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	/* seq_cst: pairs with the load in names_churn */
	atomic_store(&names_stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_child_arms_first),
		cmocka_unit_test(test_fork_child_waits_first),
		cmocka_unit_test(test_fork_during_churn),
		cmocka_unit_test(test_fork_child_reclaims),
		cmocka_unit_test(test_fork_child_polls_fd),
		cmocka_unit_test(test_fork_child_spins_done),
		cmocka_unit_test(test_fork_during_cause_register),
	};
	return RUN_TESTS(tests);
}
