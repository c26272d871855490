/* SPDX-License-Identifier: MIT */
/* mctx: Go's context design in C with mutexes; benchmark baseline, oracle. */

/*
 * This file is deliberately simple. It is the benchmark peer of rctx and
 * the oracle the fuzzers compare rctx against, so every rule is written
 * the obvious way, the way Go's src/context/context.go does it:
 *
 *  - Every cancelable context (CANCEL, TIMER) has a mutex. It protects
 *    err, cause, the children list, the after-func list, the fd and the
 *    condition variable used by mctx_wait.
 *  - A cancelable child is linked into the children list of its nearest
 *    cancelable ancestor (`cparent`). Value and without_cancel contexts are
 *    never linked; a value context answers through `src`, the cancelable
 *    context it inherits cancellation from.
 *  - Cancel locks the context and marks it done, then marks each of its
 *    children done while holding its lock, as Go does. Children that have
 *    children go on a work stack (walk_up links, holding a reference) and
 *    are visited the same way, so a chain 200,000 deep needs no recursion
 *    and no more than two context locks are held at once.
 *  - Lock order: a context before its descendants; any context before
 *    `timer_mu` and before `after_mu`; `timer_mu` and `after_mu` are never
 *    held together and never held while taking a context lock.
 *  - Deadlines sit in binary min-heaps ordered by (expiry, creation
 *    sequence) under `timer_mu`: one heap served by one library thread, or
 *    one heap per event loop served by mctx_loop_run with the caller's now.
 *  - After-funcs run after every lock is dropped, on the cancelling thread.
 *    Whether an fn has finished is recorded in the runner's batch (on its
 *    stack), never in the registration, because fn may free it.
 */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "mctx.h"

enum mctx_kind {
	MCTX_KIND_ROOT = 1,
	MCTX_KIND_CANCEL = 2,
	MCTX_KIND_TIMER = 3,
	MCTX_KIND_VALUE = 4,
	MCTX_KIND_WITHOUT = 5,
};

#define MCTX_NONE  INT64_MAX /* deadline field when there is none */
#define MCTX_NOIDX SIZE_MAX  /* not in a heap */

struct mctx_heap {
	struct mctx **v;
	size_t n;
	size_t cap;
};

struct mctx_areg;

struct mctx {
	atomic_uint refs;
	int kind;
	struct mctx *parent; /* holds one reference; NULL for roots */
	/* src: self if cancelable, else the nearest cancelable ancestor;
	 * NULL if this context can never be done. */
	struct mctx *src;
	mctx_time_t deadline; /* effective, if has_deadline */
	bool has_deadline;    /* INT64_MAX is a deadline, never reached */
	const void *key;      /* VALUE */
	void *val;	      /* VALUE */

	/* cancelable only; everything below is under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* broadcast when done (mctx_wait) */
	int err;
	int cause;
	int fd;			 /* eventfd, -1 until mctx_fd */
	struct mctx *cparent;	 /* list we are linked in (its mu) */
	struct mctx *cprev;	 /* under cparent->mu */
	struct mctx *cnext;	 /* under cparent->mu */
	int linked;		 /* under cparent->mu */
	struct mctx *chead;	 /* our children */
	struct mctx_areg *ahead; /* our pending after-funcs, oldest first */
	struct mctx_areg *atail;
	struct mctx *walk_up; /* cancel work stack: its one canceller */

	/* TIMER only; heap fields under timer_mu */
	int dcause;
	uint64_t seq;
	size_t hidx;
	struct mctx_heap *heap;
};

struct mctx_loop {
	struct mctx_heap heap; /* under timer_mu */
	int efd;
	pthread_t owner;
	struct mctx_loop *next; /* under timer_mu */
};

/* ---------------------------------------------------------------- roots */

static struct mctx mctx_bg = { .kind = MCTX_KIND_ROOT,
			       .deadline = MCTX_NONE,
			       .fd = -1 };
static struct mctx mctx_td = { .kind = MCTX_KIND_ROOT,
			       .deadline = MCTX_NONE,
			       .fd = -1 };

mctx_t *
mctx_background(void)
{
	return &mctx_bg;
}

mctx_t *
mctx_todo(void)
{
	return &mctx_td;
}

mctx_time_t
mctx_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (mctx_time_t)ts.tv_sec * MCTX_SEC + ts.tv_nsec;
}

static mctx_time_t
mctx_sat_add(mctx_time_t a, mctx_time_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

static struct timespec
mctx_abs_ts(mctx_time_t t)
{
	struct timespec ts;

	if (t < 0)
		t = 0;
	ts.tv_sec = (time_t)(t / MCTX_SEC);
	ts.tv_nsec = (long)(t % MCTX_SEC);
	return ts;
}

/* Condition variables all wait on CLOCK_MONOTONIC. */
static pthread_condattr_t mctx_cattr;
static pthread_once_t mctx_cattr_once = PTHREAD_ONCE_INIT;

static void
mctx_cattr_init(void)
{
	pthread_condattr_init(&mctx_cattr);
	pthread_condattr_setclock(&mctx_cattr, CLOCK_MONOTONIC);
}

static void
mctx_cond_init(pthread_cond_t *cv)
{
	pthread_once(&mctx_cattr_once, mctx_cattr_init);
	pthread_cond_init(cv, &mctx_cattr);
}

static bool
mctx_cancelable(const struct mctx *c)
{
	return c->kind == MCTX_KIND_CANCEL || c->kind == MCTX_KIND_TIMER;
}

/* -------------------------------------------------------------- timers */

static pthread_mutex_t timer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_cv; /* under timer_mu */
static bool timer_cv_ready;	/* under timer_mu */
static bool timer_running;	/* under timer_mu */
static bool timer_stop;		/* under timer_mu */
static pthread_t timer_thread;
static struct mctx_heap timer_heap; /* served by timer_thread */
static struct mctx_loop *loops;	    /* under timer_mu */
static struct mctx_loop *loop_rr;   /* under timer_mu */
static uint64_t timer_seq;	    /* under timer_mu */
static _Thread_local struct mctx_loop *my_loop;

static bool
mctx_heap_less(const struct mctx *a, const struct mctx *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->seq < b->seq;
}

static void
mctx_heap_set(struct mctx_heap *h, size_t i, struct mctx *c)
{
	h->v[i] = c;
	c->hidx = i;
}

static void
mctx_heap_up(struct mctx_heap *h, size_t i)
{
	struct mctx *c = h->v[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!mctx_heap_less(c, h->v[p]))
			break;
		mctx_heap_set(h, i, h->v[p]);
		i = p;
	}
	mctx_heap_set(h, i, c);
}

static void
mctx_heap_down(struct mctx_heap *h, size_t i)
{
	struct mctx *c = h->v[i];

	for (;;) {
		size_t l = 2 * i + 1, m = i;
		struct mctx *best = c;

		if (l < h->n && mctx_heap_less(h->v[l], best)) {
			m = l;
			best = h->v[l];
		}
		if (l + 1 < h->n && mctx_heap_less(h->v[l + 1], best))
			m = l + 1;
		if (m == i)
			break;
		mctx_heap_set(h, i, h->v[m]);
		i = m;
	}
	mctx_heap_set(h, i, c);
}

static int
mctx_heap_push(struct mctx_heap *h, struct mctx *c)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		struct mctx **v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	c->heap = h;
	mctx_heap_set(h, h->n++, c);
	mctx_heap_up(h, c->hidx);
	return 0;
}

static void
mctx_heap_remove(struct mctx *c)
{
	struct mctx_heap *h = c->heap;
	size_t i = c->hidx;

	if (i == MCTX_NOIDX)
		return;
	c->hidx = MCTX_NOIDX;
	c->heap = NULL;
	if (i == --h->n)
		return;
	mctx_heap_set(h, i, h->v[h->n]);
	mctx_heap_down(h, i);
	mctx_heap_up(h, h->v[i]->hidx);
}

static void
mctx_heap_free(struct mctx_heap *h)
{
	for (size_t i = 0; i < h->n; i++) {
		h->v[i]->hidx = MCTX_NOIDX;
		h->v[i]->heap = NULL;
	}
	free(h->v);
	memset(h, 0, sizeof(*h));
}

/* Take a reference unless the last one is already gone. */
static bool
mctx_tryget(struct mctx *c)
{
	/* relaxed: a successful increment from non-zero needs no ordering. */
	unsigned r = atomic_load_explicit(&c->refs, memory_order_relaxed);

	while (r != 0) {
		/* relaxed: same as above; failure reloads r. */
		if (atomic_compare_exchange_weak_explicit(&c->refs, &r, r + 1,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
	return false;
}

static int mctx_cancel_with(struct mctx *c, int err, int cause);
static void mctx_free_chain(struct mctx *c);

static int
mctx_expire(struct mctx *c)
{
	int cause = c->dcause ? c->dcause : ETIMEDOUT;

	return mctx_cancel_with(c, ETIMEDOUT, cause) == 0;
}

static void
mctx_put(struct mctx *c)
{
	/* acq_rel: orders our writes before the free; pairs with itself. */
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		mctx_free_chain(c);
}

/* Pop the heap top if due at now; returns it with a reference, or NULL. */
static struct mctx *
mctx_heap_pop_due(struct mctx_heap *h, mctx_time_t now, bool *more)
{
	while (h->n > 0 && h->v[0]->deadline <= now) {
		struct mctx *c = h->v[0];

		mctx_heap_remove(c);
		if (mctx_tryget(c)) {
			*more = true;
			return c;
		}
		/* Being freed: its free path finds it out of the heap. */
	}
	*more = false;
	return NULL;
}

static void *
mctx_timer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&timer_mu);
	while (!timer_stop) {
		mctx_time_t now = mctx_now();
		bool more;
		struct mctx *c = mctx_heap_pop_due(&timer_heap, now, &more);

		if (c) {
			pthread_mutex_unlock(&timer_mu);
			mctx_expire(c);
			mctx_put(c);
			pthread_mutex_lock(&timer_mu);
			continue;
		}
		if (timer_heap.n == 0) {
			pthread_cond_wait(&timer_cv, &timer_mu);
		} else {
			struct timespec ts;

			ts = mctx_abs_ts(timer_heap.v[0]->deadline);
			pthread_cond_timedwait(&timer_cv, &timer_mu, &ts);
		}
	}
	pthread_mutex_unlock(&timer_mu);
	return NULL;
}

static void
mctx_loop_poke(struct mctx_loop *l)
{
	uint64_t one = 1;

	if (write(l->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, so it is readable. */
	}
}

/* Put c (locked, live, TIMER) into a heap. Called with c->mu held. */
static int
mctx_timer_arm(struct mctx *c)
{
	struct mctx_heap *h;
	struct mctx_loop *l = NULL;
	int r;

	pthread_mutex_lock(&timer_mu);
	c->seq = timer_seq++;
	if (my_loop) {
		l = my_loop;
	} else if (loops) {
		l = loop_rr && loop_rr->next ? loop_rr->next : loops;
		loop_rr = l;
	}
	if (l) {
		h = &l->heap;
	} else {
		h = &timer_heap;
		if (!timer_cv_ready) {
			mctx_cond_init(&timer_cv);
			timer_cv_ready = true;
		}
		if (!timer_running) {
			timer_stop = false;
			if (pthread_create(&timer_thread, NULL, mctx_timer_main,
					   NULL) != 0) {
				pthread_mutex_unlock(&timer_mu);
				return -ENOMEM;
			}
			timer_running = true;
		}
	}
	r = mctx_heap_push(h, c);
	if (r == 0 && c->hidx == 0) {
		if (l && !pthread_equal(l->owner, pthread_self()))
			mctx_loop_poke(l);
		else if (!l)
			pthread_cond_signal(&timer_cv);
	}
	pthread_mutex_unlock(&timer_mu);
	return r;
}

static void
mctx_timer_disarm(struct mctx *c)
{
	pthread_mutex_lock(&timer_mu);
	mctx_heap_remove(c);
	pthread_mutex_unlock(&timer_mu);
}

/* ---------------------------------------------------------- after-funcs */

enum mctx_areg_state {
	MCTX_A_PARKED = 1,  /* on a never-done context: never runs */
	MCTX_A_LISTED = 2,  /* in where->ahead (where's mu + after_mu) */
	MCTX_A_QUEUED = 3,  /* in a canceller's batch (after_mu) */
	MCTX_A_RUNNING = 4, /* fn started (it may since have returned) */
	MCTX_A_STOPPED = 5,
};

struct mctx_batch;

struct mctx_areg {
	struct mctx *ctx; /* the context given; one reference */
	void *where;	  /* LISTED: its src; QUEUED: the batch */
	void (*fn)(void *arg);
	void *arg;
	struct mctx_areg *prev;
	struct mctx_areg *next;
	int state; /* under after_mu once published */
};

_Static_assert(sizeof(struct mctx_areg) <= sizeof(mctx_after_t),
	       "mctx_after_t too small");
_Static_assert(_Alignof(struct mctx_areg) <= _Alignof(mctx_after_t),
	       "mctx_after_t underaligned");

/* Registrations one canceller runs once its locks are dropped. */
struct mctx_batch {
	struct mctx_areg *head;
	struct mctx_areg *tail;
	struct mctx_areg *cur; /* fn running now, or NULL */
	pthread_t thr;
	struct mctx_batch *next;
	bool listed; /* in after_batches */
};

static pthread_mutex_t after_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t after_cv = PTHREAD_COND_INITIALIZER;
static struct mctx_batch *after_batches; /* under after_mu */

static void
mctx_batch_add_locked(struct mctx_batch *b, struct mctx_areg *a)
{
	if (!b->listed) {
		b->thr = pthread_self();
		b->next = after_batches;
		after_batches = b;
		b->listed = true;
	}
	a->state = MCTX_A_QUEUED;
	a->where = b;
	a->next = NULL;
	a->prev = b->tail;
	if (b->tail)
		b->tail->next = a;
	else
		b->head = a;
	b->tail = a;
}

static void
mctx_batch_unlink_locked(struct mctx_batch *b, struct mctx_areg *a)
{
	if (a->prev)
		a->prev->next = a->next;
	else
		b->head = a->next;
	if (a->next)
		a->next->prev = a->prev;
	else
		b->tail = a->prev;
}

/* Move c's pending registrations into b. Called with c->mu held. */
static void
mctx_collect_after(struct mctx *c, struct mctx_batch *b)
{
	struct mctx_areg *a = c->ahead, *next;

	if (!a)
		return;
	pthread_mutex_lock(&after_mu);
	for (; a; a = next) {
		next = a->next;
		mctx_batch_add_locked(b, a);
	}
	pthread_mutex_unlock(&after_mu);
	c->ahead = c->atail = NULL;
}

/* Run every registration of b, one at a time. Called with no lock held. */
static void
mctx_batch_run(struct mctx_batch *b)
{
	struct mctx_batch **pp;

	if (!b->listed)
		return;
	pthread_mutex_lock(&after_mu);
	while (b->head) {
		struct mctx_areg *a = b->head;
		void (*fn)(void *) = a->fn;
		void *arg = a->arg;
		struct mctx *ctx = a->ctx;

		mctx_batch_unlink_locked(b, a);
		a->state = MCTX_A_RUNNING;
		b->cur = a;
		pthread_mutex_unlock(&after_mu);
		fn(arg); /* may free a: not touched again */
		pthread_mutex_lock(&after_mu);
		b->cur = NULL;
		pthread_cond_broadcast(&after_cv);
		pthread_mutex_unlock(&after_mu);
		mctx_put(ctx);
		pthread_mutex_lock(&after_mu);
	}
	for (pp = &after_batches; *pp != b; pp = &(*pp)->next)
		;
	*pp = b->next;
	b->listed = false;
	pthread_mutex_unlock(&after_mu);
}

/* -------------------------------------------------------- cancellation */

static void
mctx_unlink_child(struct mctx *p, struct mctx *c)
{
	if (c->cprev)
		c->cprev->cnext = c->cnext;
	else
		p->chead = c->cnext;
	if (c->cnext)
		c->cnext->cprev = c->cprev;
	c->cprev = c->cnext = NULL;
	c->linked = 0;
}

/* Mark c (locked, live) done and queue its after-funcs. */
static void
mctx_mark(struct mctx *c, int err, int cause, struct mctx_batch *b)
{
	c->err = err;
	c->cause = cause;
	pthread_cond_broadcast(&c->cv);
	if (c->fd >= 0) {
		uint64_t one = 1;

		if (write(c->fd, &one, sizeof(one)) < 0) {
			/* Saturated counter: already readable. */
		}
	}
	/* hidx is timer_mu's: test it there, not here. */
	if (c->kind == MCTX_KIND_TIMER)
		mctx_timer_disarm(c);
	mctx_collect_after(c, b);
}

/*
 * Cancel every descendant of root (locked by the caller, marked). As in
 * Go, a context's lock is held while its children are cancelled. Go then
 * recurses with every lock of the path held; here a child that has
 * children of its own goes on a work stack instead (walk_up links, one
 * reference each), so any depth needs no stack and at most two context
 * locks. Returns the contexts that were on the stack, still referenced:
 * the caller drops them once it holds no lock (a drop may free, and a
 * free locks the parent).
 */
static struct mctx *
mctx_cascade(struct mctx *root, int err, int cause, struct mctx_batch *b)
{
	struct mctx *work = NULL, *held = NULL, *n = root, *ch;

	for (;;) {
		while ((ch = n->chead) != NULL) {
			mctx_unlink_child(n, ch);
			pthread_mutex_lock(&ch->mu);
			/* Done already: its own cancel took its children. */
			if (!ch->err) {
				mctx_mark(ch, err, cause, b);
				/* A done context gains no children: only one
				 * that has some needs a visit. */
				if (ch->chead && mctx_tryget(ch)) {
					ch->walk_up = work;
					work = ch;
				}
			}
			pthread_mutex_unlock(&ch->mu);
		}
		if (n != root) {
			pthread_mutex_unlock(&n->mu);
			n->walk_up = held;
			held = n;
		}
		if (!work)
			return held;
		n = work;
		work = n->walk_up;
		pthread_mutex_lock(&n->mu);
	}
}

/* Returns 0 if this call made c done, -EALREADY if it was done. */
static int
mctx_cancel_with(struct mctx *c, int err, int cause)
{
	struct mctx_batch b = { 0 };
	struct mctx *p = c->cparent, *held, *next;

	pthread_mutex_lock(&c->mu);
	if (c->err) {
		pthread_mutex_unlock(&c->mu);
		return -EALREADY;
	}
	mctx_mark(c, err, cause, &b);
	held = mctx_cascade(c, err, cause, &b);
	pthread_mutex_unlock(&c->mu);
	if (p) {
		pthread_mutex_lock(&p->mu);
		if (c->linked)
			mctx_unlink_child(p, c);
		pthread_mutex_unlock(&p->mu);
	}
	for (; held; held = next) {
		next = held->walk_up;
		mctx_put(held);
	}
	mctx_batch_run(&b);
	return 0;
}

int
mctx_cancel_cause(mctx_t *ctx, int cause)
{
	if (!ctx || !mctx_cancelable(ctx))
		return -EINVAL;
	return mctx_cancel_with(ctx, ECANCELED, cause ? cause : ECANCELED);
}

int
mctx_cancel(mctx_t *ctx)
{
	return mctx_cancel_cause(ctx, ECANCELED);
}

/* ----------------------------------------------------------- lifetime */

mctx_t *
mctx_retain(mctx_t *ctx)
{
	if (ctx && ctx->kind != MCTX_KIND_ROOT)
		/* relaxed: the caller already holds a reference. */
		atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	return ctx;
}

void
mctx_release(mctx_t *ctx)
{
	if (ctx && ctx->kind != MCTX_KIND_ROOT)
		mctx_put(ctx);
}

/* Free c (no references left) and every ancestor it held the last one of. */
static void
mctx_free_chain(struct mctx *c)
{
	while (c) {
		struct mctx *p = c->parent;

		if (mctx_cancelable(c)) {
			if (c->cparent) {
				pthread_mutex_lock(&c->cparent->mu);
				if (c->linked)
					mctx_unlink_child(c->cparent, c);
				pthread_mutex_unlock(&c->cparent->mu);
			}
			if (c->kind == MCTX_KIND_TIMER)
				mctx_timer_disarm(c);
			if (c->fd >= 0)
				close(c->fd);
			pthread_cond_destroy(&c->cv);
			pthread_mutex_destroy(&c->mu);
		}
		free(c);
		c = NULL;
		/* acq_rel: as in mctx_put. */
		if (p && p->kind != MCTX_KIND_ROOT &&
		    atomic_fetch_sub_explicit(&p->refs, 1,
					      memory_order_acq_rel) == 1)
			c = p;
	}
}

/* --------------------------------------------------------- derivation */

static struct mctx *
mctx_alloc(struct mctx *parent, int kind)
{
	struct mctx *c = calloc(1, sizeof(*c));

	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	/* relaxed: c is not shared yet. */
	atomic_init(&c->refs, 1);
	c->kind = kind;
	c->parent = mctx_retain(parent);
	c->deadline = parent->deadline;
	c->has_deadline = parent->has_deadline;
	c->src = parent->src;
	c->fd = -1;
	c->hidx = MCTX_NOIDX;
	if (kind == MCTX_KIND_CANCEL || kind == MCTX_KIND_TIMER) {
		pthread_mutex_init(&c->mu, NULL);
		mctx_cond_init(&c->cv);
		c->cparent = parent->src;
		c->src = c;
	}
	return c;
}

/* Link c under its cancelable ancestor, or make it born done (Go's
 * propagateCancel). Returns true if c is live. */
static bool
mctx_propagate(struct mctx *c)
{
	struct mctx *p = c->cparent;
	bool live = true;

	if (!p)
		return true;
	pthread_mutex_lock(&p->mu);
	if (p->err) {
		c->err = p->err;
		c->cause = p->cause;
		live = false;
	} else {
		c->cnext = p->chead;
		if (p->chead)
			p->chead->cprev = c;
		p->chead = c;
		c->linked = 1;
	}
	pthread_mutex_unlock(&p->mu);
	return live;
}

mctx_t *
mctx_with_cancel(mctx_t *parent)
{
	struct mctx *c;

	if (!parent) {
		errno = EINVAL;
		return NULL;
	}
	c = mctx_alloc(parent, MCTX_KIND_CANCEL);
	if (c)
		mctx_propagate(c);
	return c;
}

mctx_t *
mctx_with_deadline_cause(mctx_t *parent, mctx_time_t deadline, int cause)
{
	struct mctx *c;

	if (!parent) {
		errno = EINVAL;
		return NULL;
	}
	/*
	 * The parent's deadline comes first: a plain cancel context. (Go
	 * tests "strictly before"; with equal deadlines the parent's timer
	 * fires first anyway, so taking ties here, as rctx does, changes
	 * nothing anyone can observe and saves a timer.)
	 */
	if (parent->has_deadline && parent->deadline <= deadline)
		return mctx_with_cancel(parent);
	c = mctx_alloc(parent, MCTX_KIND_TIMER);
	if (!c)
		return NULL;
	c->deadline = deadline;
	c->has_deadline = true;
	c->dcause = cause;
	if (!mctx_propagate(c))
		return c;
	if (deadline <= mctx_now()) {
		mctx_expire(c);
		return c;
	}
	if (deadline == INT64_MAX)
		return c; /* the clock never gets there: no timer */
	pthread_mutex_lock(&c->mu);
	if (!c->err && mctx_timer_arm(c) != 0) {
		pthread_mutex_unlock(&c->mu);
		/* Undo: c was never seen by anyone but a cancelling parent. */
		if (c->cparent) {
			pthread_mutex_lock(&c->cparent->mu);
			if (c->linked)
				mctx_unlink_child(c->cparent, c);
			pthread_mutex_unlock(&c->cparent->mu);
		}
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		mctx_release(c->parent);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_unlock(&c->mu);
	return c;
}

mctx_t *
mctx_with_deadline(mctx_t *parent, mctx_time_t deadline)
{
	return mctx_with_deadline_cause(parent, deadline, 0);
}

mctx_t *
mctx_with_timeout_cause(mctx_t *parent, mctx_time_t timeout, int cause)
{
	if (!parent) {
		errno = EINVAL;
		return NULL;
	}
	return mctx_with_deadline_cause(
	    parent, mctx_sat_add(mctx_now(), timeout), cause);
}

mctx_t *
mctx_with_timeout(mctx_t *parent, mctx_time_t timeout)
{
	return mctx_with_timeout_cause(parent, timeout, 0);
}

mctx_t *
mctx_with_value(mctx_t *parent, const void *key, void *value)
{
	struct mctx *c;

	if (!parent || !key) {
		errno = EINVAL;
		return NULL;
	}
	c = mctx_alloc(parent, MCTX_KIND_VALUE);
	if (c) {
		c->key = key;
		c->val = value;
	}
	return c;
}

mctx_t *
mctx_without_cancel(mctx_t *parent)
{
	struct mctx *c;

	if (!parent) {
		errno = EINVAL;
		return NULL;
	}
	c = mctx_alloc(parent, MCTX_KIND_WITHOUT);
	if (c) {
		c->src = NULL;
		c->deadline = MCTX_NONE;
		c->has_deadline = false;
	}
	return c;
}

/* ---------------------------------------------------------- observers */

static struct mctx *
mctx_src(const mctx_t *ctx)
{
	return ctx ? ctx->src : NULL;
}

int
mctx_err(const mctx_t *ctx)
{
	struct mctx *s = mctx_src(ctx);
	int err;

	if (!s)
		return 0;
	pthread_mutex_lock(&s->mu);
	err = s->err;
	pthread_mutex_unlock(&s->mu);
	return err;
}

int
mctx_cause(const mctx_t *ctx)
{
	struct mctx *s = mctx_src(ctx);
	int cause;

	if (!s)
		return 0;
	pthread_mutex_lock(&s->mu);
	cause = s->err ? s->cause : 0;
	pthread_mutex_unlock(&s->mu);
	return cause;
}

bool
mctx_done(const mctx_t *ctx)
{
	return mctx_err(ctx) != 0;
}

bool
mctx_deadline(const mctx_t *ctx, mctx_time_t *deadline)
{
	if (!ctx || !ctx->has_deadline)
		return false;
	if (deadline)
		*deadline = ctx->deadline;
	return true;
}

void *
mctx_value(const mctx_t *ctx, const void *key)
{
	for (; ctx; ctx = ctx->parent)
		if (ctx->kind == MCTX_KIND_VALUE && ctx->key == key)
			return ctx->val;
	return NULL;
}

/* ------------------------------------------------------------- waiting */

int
mctx_wait(mctx_t *ctx, mctx_time_t timeout)
{
	struct mctx *s = mctx_src(ctx);
	mctx_time_t until =
	    timeout < 0 ? MCTX_NONE : mctx_sat_add(mctx_now(), timeout);
	int err;

	if (!s) {
		for (;;) {
			mctx_time_t now = mctx_now();
			struct timespec ts;

			if (timeout >= 0 && now >= until)
				return 0;
			ts = mctx_abs_ts(timeout < 0 ? MCTX_SEC : until - now);
			nanosleep(&ts, NULL);
		}
	}
	pthread_mutex_lock(&s->mu);
	while (!s->err) {
		if (timeout < 0) {
			pthread_cond_wait(&s->cv, &s->mu);
		} else {
			struct timespec ts = mctx_abs_ts(until);

			if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) ==
				ETIMEDOUT &&
			    mctx_now() >= until)
				break;
		}
	}
	err = s->err;
	pthread_mutex_unlock(&s->mu);
	return err;
}

int
mctx_fd(mctx_t *ctx)
{
	struct mctx *s = mctx_src(ctx);
	int fd;

	if (!s)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&s->mu);
	if (s->fd < 0) {
		fd = eventfd(s->err ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd < 0) {
			fd = -errno;
			pthread_mutex_unlock(&s->mu);
			return fd;
		}
		s->fd = fd;
	}
	fd = s->fd;
	pthread_mutex_unlock(&s->mu);
	return fd;
}

/* ---------------------------------------------------------- after-func */

int
mctx_after_func(mctx_t *ctx, mctx_after_t *reg, void (*fn)(void *arg),
		void *arg)
{
	struct mctx_areg *a = (struct mctx_areg *)(void *)reg;
	struct mctx *s;
	struct mctx_batch b = { 0 };

	if (!ctx || !reg || !fn)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->fn = fn;
	a->arg = arg;
	s = ctx->src;
	if (!s) {
		a->state = MCTX_A_PARKED;
		return 0;
	}
	a->ctx = mctx_retain(ctx);
	pthread_mutex_lock(&s->mu);
	if (!s->err) {
		a->state = MCTX_A_LISTED;
		a->where = s;
		a->prev = s->atail;
		if (s->atail)
			s->atail->next = a;
		else
			s->ahead = a;
		s->atail = a;
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	pthread_mutex_unlock(&s->mu);
	/* Already done: run it here, as a batch of one. */
	pthread_mutex_lock(&after_mu);
	mctx_batch_add_locked(&b, a);
	pthread_mutex_unlock(&after_mu);
	mctx_batch_run(&b);
	return 0;
}

/* Is a running in some batch? Sets *mine if on this thread. after_mu held. */
static bool
mctx_after_running(struct mctx_areg *a, bool *mine)
{
	for (struct mctx_batch *b = after_batches; b; b = b->next) {
		if (b->cur == a) {
			*mine = pthread_equal(b->thr, pthread_self());
			return true;
		}
	}
	return false;
}

bool
mctx_after_stop(mctx_after_t *reg)
{
	struct mctx_areg *a = (struct mctx_areg *)(void *)reg;
	struct mctx *pin, *s;
	bool mine;

	if (!reg)
		return false;
	pthread_mutex_lock(&after_mu);
	for (;;) {
		switch (a->state) {
		case MCTX_A_PARKED:
			a->state = MCTX_A_STOPPED;
			pthread_mutex_unlock(&after_mu);
			return true;
		case MCTX_A_QUEUED:
			mctx_batch_unlink_locked(a->where, a);
			a->state = MCTX_A_STOPPED;
			pthread_mutex_unlock(&after_mu);
			mctx_put(a->ctx);
			return true;
		case MCTX_A_RUNNING:
			while (mctx_after_running(a, &mine) && !mine)
				pthread_cond_wait(&after_cv, &after_mu);
			pthread_mutex_unlock(&after_mu);
			return false;
		case MCTX_A_LISTED:
			/* Our listing holds a reference: pin it, relock. */
			pin = mctx_retain(a->ctx);
			s = a->where;
			pthread_mutex_unlock(&after_mu);
			pthread_mutex_lock(&s->mu);
			pthread_mutex_lock(&after_mu);
			if (a->state == MCTX_A_LISTED) {
				if (a->prev)
					a->prev->next = a->next;
				else
					s->ahead = a->next;
				if (a->next)
					a->next->prev = a->prev;
				else
					s->atail = a->prev;
				a->state = MCTX_A_STOPPED;
				pthread_mutex_unlock(&after_mu);
				pthread_mutex_unlock(&s->mu);
				mctx_put(pin);
				mctx_put(a->ctx);
				return true;
			}
			pthread_mutex_unlock(&s->mu);
			pthread_mutex_unlock(&after_mu);
			mctx_put(pin);
			pthread_mutex_lock(&after_mu);
			continue;
		default:
			pthread_mutex_unlock(&after_mu);
			return false;
		}
	}
}

/* --------------------------------------------------------- event loops */

mctx_loop_t *
mctx_loop_new(void)
{
	struct mctx_loop *l;

	pthread_mutex_lock(&timer_mu);
	if (my_loop || timer_running) {
		pthread_mutex_unlock(&timer_mu);
		errno = EBUSY;
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		pthread_mutex_unlock(&timer_mu);
		errno = ENOMEM;
		return NULL;
	}
	l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->efd < 0) {
		int e = errno;

		pthread_mutex_unlock(&timer_mu);
		free(l);
		errno = e;
		return NULL;
	}
	l->owner = pthread_self();
	l->next = loops;
	loops = l;
	my_loop = l;
	/* Deadlines left in the thread heap (its thread not running). */
	while (timer_heap.n > 0) {
		struct mctx *c = timer_heap.v[0];

		mctx_heap_remove(c);
		if (mctx_heap_push(&l->heap, c) != 0)
			break;
	}
	pthread_mutex_unlock(&timer_mu);
	return l;
}

int
mctx_loop_fd(const mctx_loop_t *loop)
{
	return loop ? loop->efd : -EINVAL;
}

static void
mctx_loop_drain(struct mctx_loop *l)
{
	uint64_t v;

	if (read(l->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing was poked. */
	}
}

mctx_time_t
mctx_loop_next(mctx_loop_t *loop)
{
	mctx_time_t t = -1;

	if (!loop)
		return -1;
	mctx_loop_drain(loop);
	pthread_mutex_lock(&timer_mu);
	if (loop->heap.n > 0)
		t = loop->heap.v[0]->deadline;
	pthread_mutex_unlock(&timer_mu);
	return t;
}

int
mctx_loop_timeout_ms(mctx_loop_t *loop)
{
	mctx_time_t t = mctx_loop_next(loop), d;

	if (t < 0)
		return -1;
	d = t - mctx_now();
	if (d <= 0)
		return 0;
	d = (d + MCTX_MSEC - 1) / MCTX_MSEC;
	return d > INT_MAX ? INT_MAX : (int)d;
}

int
mctx_loop_run(mctx_loop_t *loop, mctx_time_t now)
{
	int fired = 0;
	bool more = true;

	if (!loop)
		return 0;
	mctx_loop_drain(loop);
	while (more) {
		struct mctx *c;

		pthread_mutex_lock(&timer_mu);
		c = mctx_heap_pop_due(&loop->heap, now, &more);
		pthread_mutex_unlock(&timer_mu);
		if (c) {
			fired += mctx_expire(c);
			mctx_put(c);
		}
	}
	return fired;
}

void
mctx_loop_free(mctx_loop_t *loop)
{
	struct mctx_loop **pp;
	struct mctx_heap *to;

	if (!loop)
		return;
	pthread_mutex_lock(&timer_mu);
	for (pp = &loops; *pp && *pp != loop; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = loop->next;
	if (loop_rr == loop)
		loop_rr = NULL;
	if (my_loop == loop)
		my_loop = NULL;
	to = loops ? &loops->heap : &timer_heap;
	while (loop->heap.n > 0) {
		struct mctx *c = loop->heap.v[0];

		mctx_heap_remove(c);
		if (mctx_heap_push(to, c) != 0)
			break;
	}
	mctx_heap_free(&loop->heap);
	if (!loops && timer_heap.n > 0 && !timer_running) {
		if (!timer_cv_ready) {
			mctx_cond_init(&timer_cv);
			timer_cv_ready = true;
		}
		timer_stop = false;
		if (pthread_create(&timer_thread, NULL, mctx_timer_main,
				   NULL) == 0)
			timer_running = true;
	}
	if (loops)
		mctx_loop_poke(loops);
	pthread_mutex_unlock(&timer_mu);
	close(loop->efd);
	free(loop);
}

/* ------------------------------------------------------------ shutdown */

void
mctx_shutdown(void)
{
	bool join;

	pthread_mutex_lock(&timer_mu);
	join = timer_running;
	timer_stop = true;
	if (timer_cv_ready)
		pthread_cond_signal(&timer_cv);
	pthread_mutex_unlock(&timer_mu);
	if (join)
		pthread_join(timer_thread, NULL);
	pthread_mutex_lock(&timer_mu);
	timer_running = false;
	timer_stop = false;
	mctx_heap_free(&timer_heap);
	if (timer_cv_ready) {
		pthread_cond_destroy(&timer_cv);
		timer_cv_ready = false;
	}
	pthread_mutex_unlock(&timer_mu);
}
