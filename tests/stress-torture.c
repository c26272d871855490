/* SPDX-License-Identifier: MIT */
/* Torture: every public call at once from 4 threads, with invariant checks. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rctx.h"
#include "util.h"

/*
 * The invariants checked, and the defect each would have caught:
 *  - rctx_done (or rctx_wait returning err) implies every fd of the
 *    context polls readable (issue 10 item 8);
 *  - when rctx_cancel returns, whoever won, every descendant is done
 *    (item 11);
 *  - no eventfd of ours, opened where a released context's fd was, ever
 *    turns readable (item 1: a cascade writing a closed fd);
 *  - an after-func runs at most once, and at the end exactly once unless
 *    a stop returned true;
 *  - rctx_after_stop never returns while fn runs, nested after-funcs
 *    on fn's thread included (item 5; TORTURE_CHECK_STOP_WHILE_RUNNING=0
 *    turns the check off);
 *  - a fork child's observers finish (item 6), and its rctx_shutdown
 *    does not touch the parent's other threads' caches;
 *  - values are the nearest ancestor's; a deadline is never early.
 * Rounds alternate loop mode (thread 0 owns a loop that serves every
 * deadline) and library timer threads, with rctx_shutdown in between.
 */
#ifndef TORTURE_CHECK_STOP_WHILE_RUNNING
#define TORTURE_CHECK_STOP_WHILE_RUNNING 1
#endif

#define NTHREADS 4
#define NSLOTS	 48
#define NKEYS	 6
#define NCANARY	 64
#define FAN	 40
#define OPS	 (12000 * RCTX_STRESS_SCALE)
#define ROUNDS	 4

enum kind { K_CANCEL, K_TIMER, K_VALUE, K_WITHOUT };

/* A context and what the test knows of it; holds one reference to its
 * context and one to its parent node. */
struct node {
	_Atomic int refs;
	rctx_t *ctx;
	struct node *parent;
	enum kind kind;
	const void *key;
	void *val;
	_Atomic int fd; /* -1 until rctx_fd was called */
};

struct slot {
	pthread_mutex_t m;
	struct node *n;
};

/* An after-func registration and its record. */
struct areg {
	rctx_after_t reg;
	_Atomic int ran;
	_Atomic int running;
	bool stopped; /* a stop returned true (owner thread only) */
	bool stop_tried;
	struct areg *next;
};

static struct slot slots[NSLOTS];
/* What happened, for the log (not checked: it depends on scheduling). */
static struct {
	_Atomic long cancels, lost, ran, stopped, timedout, fds;
} stats;
static char keys[NKEYS];
static _Atomic(struct areg *) nested_regs; /* registered from within fn */
static _Atomic int loop_round;		   /* thread 0 owns a loop */
static struct node *root;		   /* cancelled only at the end */

struct worker {
	int id;
	uint64_t seed;
	struct areg *regs;
	int nregs;
	int canary[NCANARY];
	int ncanary;
	long forks;
	rctx_loop_t *loop; /* owned by this thread, or NULL */
};

/* --- nodes --- */

static struct node *
node_new(rctx_t *ctx, struct node *parent, enum kind k)
{
	struct node *n = calloc(1, sizeof(*n));

	WCHECK(n != NULL);
	atomic_init(&n->refs, 1);
	atomic_init(&n->fd, -1);
	n->ctx = ctx;
	n->parent = parent;
	n->kind = k;
	if (parent)
		atomic_fetch_add(&parent->refs, 1);
	return n;
}

/* Drop a node reference; a freed node whose context had an fd leaves a
 * canary where the fd was. */
static void
node_put(struct worker *w, struct node *n)
{
	while (n && atomic_fetch_sub(&n->refs, 1) == 1) {
		struct node *p = n->parent;
		bool had_fd = atomic_load(&n->fd) >= 0;

		rctx_release(n->ctx);
		if (had_fd && w && w->ncanary < NCANARY) {
			/* the lowest free number: most likely n's fd */
			int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

			if (fd >= 0)
				w->canary[w->ncanary++] = fd;
		}
		free(n);
		n = p;
	}
}

static void
canaries_check(struct worker *w)
{
	for (int i = 0; i < w->ncanary; i++) {
		if (readable(w->canary[i])) {
			fprintf(stderr, "torture: a released context's fd "
					"was written after reuse\n");
			abort();
		}
		close(w->canary[i]);
	}
	w->ncanary = 0;
}

static struct node *
slot_get(int i)
{
	struct node *n;

	pthread_mutex_lock(&slots[i].m);
	n = slots[i].n;
	if (n)
		atomic_fetch_add(&n->refs, 1);
	pthread_mutex_unlock(&slots[i].m);
	return n;
}

static void
slot_set(struct worker *w, int i, struct node *n)
{
	struct node *old;

	pthread_mutex_lock(&slots[i].m);
	old = slots[i].n;
	slots[i].n = n;
	pthread_mutex_unlock(&slots[i].m);
	node_put(w, old);
}

/* rctx_done(n) implies its fd, if made, polls readable. */
static void
check_done_fd(struct node *n)
{
	int fd = atomic_load(&n->fd);

	if (rctx_done(n->ctx) && fd >= 0 && !readable(fd)) {
		fprintf(stderr, "torture: done but fd %d not readable\n", fd);
		abort();
	}
}

/* Can n never be done (its nearest non-value ancestor is a without)? */
static bool
never_done(struct node *n)
{
	while (n && n->kind == K_VALUE)
		n = n->parent;
	return n && n->kind == K_WITHOUT;
}

/* Is d below a (inclusive) on a path that cancellation follows? */
static bool
reached_by(struct node *d, struct node *a)
{
	for (struct node *q = d; q; q = q->parent) {
		if (q == a)
			return true;
		if (q->kind == K_WITHOUT)
			return false;
	}
	return false;
}

/* After a cancel of a returned: every node below it is done. */
static void
check_subtree_done(struct node *a)
{
	for (int i = 0; i < NSLOTS; i++) {
		struct node *n = slot_get(i);

		if (n && reached_by(n, a) && !rctx_done(n->ctx)) {
			fprintf(stderr, "torture: rctx_cancel returned with a "
					"descendant not done\n");
			abort();
		}
		node_put(NULL, n);
	}
}

/* --- after-funcs --- */

static void after_fn(void *arg);

static void
nested_register(struct node *n)
{
	struct areg *r = calloc(1, sizeof(*r));

	WCHECK(r != NULL);
	/* list first: the registration may run at once */
	r->next = atomic_load(&nested_regs);
	while (!atomic_compare_exchange_weak(&nested_regs, &r->next, r))
		;
	WCHECK(rctx_after_func(n->ctx, &r->reg, after_fn, r) == 0);
}

static void
after_fn(void *arg)
{
	struct areg *r = arg;
	uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;

	atomic_store(&r->running, 1);
	WCHECK(atomic_fetch_add(&r->ran, 1) == 0); /* at most once */
	atomic_fetch_add(&stats.ran, 1);
	/* nested work on this thread: a cascade, or an immediate run */
	switch (rnd(&s) % 4) {
	case 0: {
		struct node *n = slot_get((int)(rnd(&s) % NSLOTS));

		if (n && (n->kind == K_CANCEL || n->kind == K_TIMER))
			(void)rctx_cancel_cause(n->ctx, 9);
		node_put(NULL, n);
		break;
	}
	case 1: {
		struct node *n = slot_get((int)(rnd(&s) % NSLOTS));

		if (n && rctx_done(n->ctx))
			nested_register(n);
		node_put(NULL, n);
		break;
	}
	default:
		break;
	}
	sched_yield(); /* fn still runs after its nested work */
	atomic_store(&r->running, 0);
}

static void
stop_one(struct areg *r)
{
	bool stopped;

	if (r->stop_tried)
		return;
	r->stop_tried = true;
	stopped = rctx_after_stop(&r->reg);
	if (stopped) {
		atomic_fetch_add(&stats.stopped, 1);
		r->stopped = true;
		WCHECK(atomic_load(&r->ran) == 0);
	}
#if TORTURE_CHECK_STOP_WHILE_RUNNING
	if (atomic_load(&r->running)) {
		fprintf(stderr, "torture: rctx_after_stop returned while "
				"fn runs\n");
		abort();
	}
#endif
}

/* --- one operation --- */

static void
op_derive(struct worker *w, struct node *p)
{
	unsigned k = (unsigned)(rnd(&w->seed) % 8);
	rctx_t *c;
	struct node *n;
	enum kind kind = K_CANCEL;

	switch (k) {
	case 0:
	case 1:
		c = rctx_with_cancel(p->ctx);
		break;
	case 2:
		kind = K_TIMER;
		c = rctx_with_timeout(
		    p->ctx, (rctx_time_t)(rnd(&w->seed) % 2000) * RCTX_USEC);
		break;
	case 3:
		kind = K_TIMER;
		c = rctx_with_deadline_cause(
		    p->ctx,
		    rctx_now() +
			(rctx_time_t)(rnd(&w->seed) % 3000) * RCTX_USEC,
		    (int)(rnd(&w->seed) % 50) + 1);
		break;
	case 4:
		kind = K_TIMER;
		c = rctx_with_timeout_cause(p->ctx, 500 * RCTX_USEC, 7);
		break;
	case 5:
	case 6: {
		const void *key = &keys[rnd(&w->seed) % NKEYS];
		void *val = (void *)(uintptr_t)(rnd(&w->seed) | 1);

		kind = K_VALUE;
		c = rctx_with_value(p->ctx, key, val);
		WCHECK(c != NULL);
		n = node_new(c, p, kind);
		n->key = key;
		n->val = val;
		slot_set(w, (int)(rnd(&w->seed) % NSLOTS), n);
		return;
	}
	default:
		kind = K_WITHOUT;
		c = rctx_without_cancel(p->ctx);
		break;
	}
	WCHECK(c != NULL);
	n = node_new(c, p, kind);
	slot_set(w, (int)(rnd(&w->seed) % NSLOTS), n);
}

static void
op_value(struct worker *w, struct node *n)
{
	const void *key = &keys[rnd(&w->seed) % NKEYS];
	void *want = NULL;

	for (struct node *q = n; q; q = q->parent)
		if (q->kind == K_VALUE && q->key == key) {
			want = q->val;
			break;
		}
	WCHECK(rctx_value(n->ctx, key) == want);
}

static void
op_observe(struct node *n)
{
	int err = rctx_err(n->ctx);
	rctx_time_t d;

	if (err == 0)
		return;
	WCHECK(err == ECANCELED || err == ETIMEDOUT);
	WCHECK(rctx_done(n->ctx));
	WCHECK(rctx_cause(n->ctx) != 0);
	/* never early */
	if (err == ETIMEDOUT)
		atomic_fetch_add(&stats.timedout, 1);
	if (err == ETIMEDOUT && rctx_deadline(n->ctx, &d))
		WCHECK(rctx_now() >= d);
	check_done_fd(n);
}

static void
op_fork(struct worker *w, struct node *n)
{
	pid_t pid = fork();
	int st;

	WCHECK(pid >= 0);
	if (pid == 0) {
		int fd = atomic_load(&n->fd);

		alarm(20);
		if (rctx_done(n->ctx)) {
			if (rctx_err(n->ctx) == 0 || rctx_cause(n->ctx) == 0)
				_exit(3);
			if (fd >= 0 && !readable(fd))
				_exit(4);
		}
		/* Shut the library down: the parent's other threads and
		 * their thread-local caches do not exist here (their stacks
		 * may be unmapped), and shutdown must not reach for them.
		 * Then end by exec: their contexts, unreachable here, are
		 * not the child's to free (valgrind's leak check would count
		 * them at exit). */
		rctx_shutdown();
		execl("/bin/true", "true", (char *)NULL);
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0)
		WCHECK(errno == EINTR);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "torture: fork child failed (status %#x)\n",
			st);
		abort();
	}
	w->forks++;
}

/* Every child of a fan still held is done, and its fd readable. */
static void
fan_check(struct node **kids, int nk)
{
	for (int i = 0; i < nk; i++) {
		if (kids[i] == NULL)
			continue;
		if (!rctx_done(kids[i]->ctx)) {
			fprintf(stderr,
				"torture: a losing rctx_cancel returned "
				"before the deadline's cascade ended\n");
			abort();
		}
		check_done_fd(kids[i]);
	}
}

/*
 * A deadline over a wide fan-out, raced on purpose. As soon as the fan
 * shows done, its cascade (on a timer thread, or the loop) may still be
 * marking the children: cancel the fan (a losing cancel: item 11), and
 * make fds on some children (item 8) and release others that have fds
 * (item 1), in either order.
 */
static void
op_fan(struct worker *w, struct node *p)
{
	struct node *f, *kids[FAN];
	int nk = FAN / 2 + (int)(rnd(&w->seed) % (FAN / 2));
	rctx_time_t dt = (rctx_time_t)(rnd(&w->seed) % 300) * RCTX_USEC;
	rctx_t *c = rctx_with_timeout(p->ctx, dt);
	bool cancel_first = rnd(&w->seed) % 2;

	WCHECK(c != NULL);
	f = node_new(c, p, K_TIMER);
	for (int i = 0; i < nk; i++) {
		kids[i] = node_new(rctx_with_cancel(f->ctx), f, K_CANCEL);
		WCHECK(kids[i]->ctx != NULL);
		if (i % 3 == 0) /* with an fd before the race */
			atomic_store(&kids[i]->fd, rctx_fd(kids[i]->ctx));
	}
	while (!rctx_done(f->ctx)) {
		if (w->loop)
			(void)rctx_loop_run(w->loop, rctx_now());
		else
			sched_yield();
	}
	if (cancel_first) {
		WCHECK(rctx_cancel(f->ctx) == -EALREADY);
		fan_check(kids, nk);
	}
	/* from the far end: we meet the cascade's walk somewhere */
	for (int i = nk - 1; i >= 0; i--) {
		if (i % 3 == 0 && rnd(&w->seed) % 2) {
			node_put(w, kids[i]); /* closes its fd */
			kids[i] = NULL;
		} else if (i % 3 == 1) {
			int fd = rctx_fd(kids[i]->ctx);

			WCHECK(fd >= 0);
			atomic_store(&kids[i]->fd, fd);
			check_done_fd(kids[i]);
		}
	}
	WCHECK(rctx_cancel(f->ctx) == -EALREADY);
	fan_check(kids, nk);
	for (int i = 0; i < nk; i++)
		node_put(w, kids[i]);
	if (rnd(&w->seed) % 2)
		slot_set(w, (int)(rnd(&w->seed) % NSLOTS), f);
	else
		node_put(w, f);
}

static void
one_op(struct worker *w)
{
	int i = (int)(rnd(&w->seed) % NSLOTS);
	struct node *n = slot_get(i);
	unsigned op = (unsigned)(rnd(&w->seed) % 100);

	if (n == NULL)
		return;
	if (op < 4) {
		op_fan(w, n);
	} else if (op < 30) {
		op_derive(w, n);
	} else if (op < 40 && n != root) {
		int r = rctx_cancel_cause(n->ctx, (int)(op % 5));

		atomic_fetch_add(&stats.cancels, 1);
		if (r == -EALREADY)
			atomic_fetch_add(&stats.lost, 1);
		if (n->kind == K_VALUE || n->kind == K_WITHOUT) {
			WCHECK(r == -EINVAL);
		} else {
			WCHECK(r == 0 || r == -EALREADY);
			WCHECK(rctx_done(n->ctx));
			check_subtree_done(n);
		}
	} else if (op < 47) {
		int fd = rctx_fd(n->ctx);

		if (fd >= 0) {
			atomic_fetch_add(&stats.fds, 1);
			atomic_store(&n->fd, fd);
			check_done_fd(n);
		} else {
			WCHECK(fd == -EOPNOTSUPP && never_done(n));
		}
	} else if (op < 52) {
		int r =
		    rctx_wait(n->ctx, (rctx_time_t)(op % 3) * 50 * RCTX_USEC);

		WCHECK(r == 0 || r == rctx_err(n->ctx));
		if (r)
			check_done_fd(n);
	} else if (op < 60) {
		struct areg *r = calloc(1, sizeof(*r));

		WCHECK(r != NULL);
		r->next = w->regs;
		w->regs = r;
		w->nregs++;
		WCHECK(rctx_after_func(n->ctx, &r->reg, after_fn, r) == 0);
	} else if (op < 66) {
		/* stop a recent registration, one whose fn runs if any */
		struct areg *r = w->regs, *pick = NULL;

		for (int k = 0; r && k < 16; k++, r = r->next)
			if (!r->stop_tried &&
			    (pick == NULL || atomic_load(&r->running)))
				pick = r;
		if (pick)
			stop_one(pick);
	} else if (op < 78) {
		op_value(w, n);
	} else if (op < 90) {
		op_observe(n);
	} else if (op < 97) {
		slot_set(w, i, NULL); /* release */
	} else if (op == 97 && w->id == 1 && w->forks < 4) {
		op_fork(w, n);
	} else {
		(void)rctx_retain(n->ctx);
		rctx_release(n->ctx);
	}
	node_put(w, n);
	if (w->ncanary >= NCANARY - FAN)
		canaries_check(w);
}

/* --- threads and rounds --- */

static pthread_barrier_t start_line;

/* Refill empty slots, and some holding done contexts, with fresh
 * children of the root, so the tree stays live and busy. */
static void
refill(struct worker *w)
{
	for (int i = 0; i < NSLOTS; i++) {
		struct node *n = slot_get(i);
		bool stale =
		    n == NULL || (rctx_done(n->ctx) && rnd(&w->seed) % 2);

		node_put(w, n);
		if (!stale)
			continue;
		n = node_new(rctx_with_cancel(root->ctx), root, K_CANCEL);
		WCHECK(n->ctx != NULL);
		slot_set(w, i, n);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	rctx_loop_t *loop = NULL;

	if (w->id == 0 && atomic_load(&loop_round)) {
		loop = rctx_loop_new();
		WCHECK(loop != NULL);
		WCHECK(rctx_loop_fd(loop) >= 0);
		w->loop = loop;
	}
	pthread_barrier_wait(&start_line);
	for (int k = 0; k < OPS; k++) {
		one_op(w);
		if (k % 64 == 0)
			refill(w);
		if (loop) {
			(void)rctx_loop_run(loop, rctx_now());
			if (k % 64 == 0) {
				int ms = rctx_loop_timeout_ms(loop);
				rctx_time_t next = rctx_loop_next(loop);

				WCHECK(ms >= -1);
				WCHECK(next == -1 || next > 0);
				(void)readable(rctx_loop_fd(loop));
			}
		}
	}
	canaries_check(w);
	if (loop) {
		w->loop = NULL;
		rctx_loop_free(loop); /* its deadlines move to threads */
	}
	return NULL;
}

static void
round_run(bool loop_mode, uint64_t seed)
{
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	struct worker main_w = { .id = -1 };
	long forks = 0;

	atomic_store(&loop_round, loop_mode);
	root = node_new(rctx_with_cancel(rctx_background()), NULL, K_CANCEL);
	WCHECK(root->ctx != NULL);
	for (int i = 0; i < NSLOTS; i++) {
		atomic_fetch_add(&root->refs, 1);
		slots[i].n = root;
	}
	assert_int_equal(pthread_barrier_init(&start_line, NULL, NTHREADS), 0);
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .id = i, .seed = seed * 31 + i + 1 };
		assert_int_equal(
		    pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start_line);

	/* Everything cancelable below the root ends done, and every
	 * registration ran once or was stopped. */
	int r = rctx_cancel(root->ctx);

	WCHECK(r == 0 || r == -EALREADY);
	check_subtree_done(root);
	for (int i = 0; i < NTHREADS; i++) {
		forks += w[i].forks;
		for (struct areg *r = w[i].regs; r; r = r->next)
			stop_one(r);
		for (struct areg *r = w[i].regs; r; r = r->next)
			WCHECK(atomic_load(&r->ran) == (r->stopped ? 0 : 1));
	}
	for (struct areg *r = atomic_load(&nested_regs); r; r = r->next) {
		stop_one(r);
		WCHECK(atomic_load(&r->ran) == (r->stopped ? 0 : 1));
	}
	for (int i = 0; i < NSLOTS; i++)
		slot_set(&main_w, i, NULL);
	node_put(&main_w, root);
	canaries_check(&main_w);
	for (int i = 0; i < NTHREADS; i++)
		while (w[i].regs) {
			struct areg *r = w[i].regs;

			w[i].regs = r->next;
			free(r);
		}
	while (atomic_load(&nested_regs)) {
		struct areg *r = atomic_load(&nested_regs);

		atomic_store(&nested_regs, r->next);
		free(r);
	}
	fprintf(stderr,
		"# round %s: %ld cancels (%ld lost), %ld after-funcs ran, "
		"%ld stopped, %ld timed out seen, %ld fds, %ld forks\n",
		loop_mode ? "loop" : "threads", atomic_load(&stats.cancels),
		atomic_load(&stats.lost), atomic_load(&stats.ran),
		atomic_load(&stats.stopped), atomic_load(&stats.timedout),
		atomic_load(&stats.fds), forks);
	memset(&stats, 0, sizeof(stats));
	/* the library stops and starts again for the next round */
	rctx_shutdown();
}

static void
test_torture(void **state)
{
	(void)state;
	for (int i = 0; i < NSLOTS; i++)
		pthread_mutex_init(&slots[i].m, NULL);
	for (int r = 0; r < ROUNDS; r++)
		round_run(r % 2 == 1, rnd_seed((uint64_t)r));
	for (int i = 0; i < NSLOTS; i++)
		pthread_mutex_destroy(&slots[i].m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_torture),
	};

	return RUN_TESTS(tests);
}
