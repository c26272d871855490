/* SPDX-License-Identifier: MIT */
/* Loop after-funcs: callbacks run on an event loop's owner thread. */

/*
 * Design
 * ------
 * rctx_loop_after_func(loop, ctx, reg, fn, arg) is an ordinary after-func
 * registration (after.c) whose 32-bit `aux` word is non-zero: its low
 * three bits are this module's state (LA_*), the rest the loop's handle
 * (slot index and generation). When ctx is done, after.c claims the
 * registration exactly as for any after-func, but instead of fn it calls
 * rctx_lafter_fire on the claiming thread, which pushes the registration
 * on its loop's incoming stack (through the registration's own `onext`
 * word: no allocation) and writes the loop's eventfd if the stack was
 * empty. The owner thread pops the calls in rctx_loop_run and runs fn
 * there. All 64 bytes of rctx_after_t are in use while the registration
 * is pending (after.c's eight words), so the loop is named by a handle
 * in aux rather than by a pointer.
 *
 * Slots. Each loop gets one entry of a static table (rctx_la_slots) for its
 * life; the handle is the slot index plus a generation bumped at each
 * attach. Everything a stopper or a late canceller touches lives in the
 * slot, which is never freed, so no pointer to a freed loop is ever
 * followed: a canceller that finds the slot's handle changed knows the
 * loop is gone.
 *
 * States (aux & 7), and who moves them:
 *   ARMED   registered, ctx not yet done: after.c owns the arbitration.
 *   QUEUED  claimed by a canceller, on the slot's incoming stack or ready
 *           list; holds a reference to ctx. (fire: ARMED -> QUEUED)
 *   STARTED the owner took it and runs (or ran) fn. (run, under mu)
 *   STOPPED a stop returned true. (stop)
 *   ORPHAN  claimed, but the loop was freed or its owner exited: fn will
 *           never run; the next stop returns true. (fire, or detach
 *           under mu)
 *
 * Invariants
 *  I1. A registration is on its slot's incoming stack or ready list iff
 *      its state is QUEUED, except between fire's store of QUEUED and its
 *      push (a stop that saw QUEUED waits for the push: rctx_la_unlink);
 *      both lists change only under the slot's mu, except that fire
 *      pushes on incoming without it.
 *  I2. slot->running is the registration whose fn the owner is running,
 *      else NULL; it is set and cleared under mu.
 *  I3. A QUEUED registration holds one reference to its ctx, dropped by
 *      whoever moves it out of QUEUED (run after fn returns, a winning
 *      stop, or detach).
 *  I4. After rctx_lafter_detach returns, no registration of that loop is
 *      QUEUED and none will become QUEUED (fire sees the handle changed).
 *
 * Ordering
 *  A. Publication: the registrant writes fn, arg, ctx and aux before
 *     after.c's seq_cst insert; the claimer reads them through its
 *     acq_rel claim (after.c C). fire writes onext and the QUEUED state
 *     before its seq_cst push CAS; the owner's seq_cst exchange in
 *     rctx_lafter_run (and a stopper's acquire load of incoming in
 *     rctx_la_unlink) read them.
 *  B. Wake-up (Dekker): fire pushes (seq_cst CAS), then writes the
 *     eventfd if the stack was empty. rctx_lafter_rearm runs after
 *     rctx_loop_next read the eventfd empty, and loads incoming (seq_cst):
 *     either it sees the push and writes the eventfd again, or the push
 *     came later, found the stack empty (nothing else drains it but the
 *     owner) and writes it itself. So the fd polls readable while a call
 *     waits.
 *  C. Loop free: detach stores handle = 0 (seq_cst), waits for an RCU
 *     grace period, then drains the lists under mu. fire reads the handle
 *     inside an RCU read-side section that also covers its push and its
 *     eventfd write, so a fire that saw the old handle has finished
 *     before the drain, and one that starts later sees 0 (I4).
 *  D. Stop against fire: a stopper that finds ARMED calls after.c's
 *     unregister; if it loses, the claimer announced itself before
 *     claiming and unregister waits until the claimer's run_claimed (and
 *     so fire) returned (after.c A, B), so the stopper's acquire load of
 *     aux then sees QUEUED or ORPHAN (release/seq_cst writes in fire).
 *  E. Stop against run: QUEUED -> STARTED and QUEUED -> STOPPED both
 *     happen under mu after re-reading the state there: exactly one
 *     wins. A stopper that finds STARTED with running == reg waits on cv
 *     under mu until run clears running (under mu, after fn returned).
 *
 * Progress: register and fire are lock-free (after.c's insert, one CAS
 * push) and make a system call only to wake the loop. Stop of an ARMED
 * registration is after.c's; of a QUEUED one takes mu and walks the lists
 * (linear in the calls waiting on that loop); of a running one blocks
 * until fn returns, as the API requires. The owner holds mu only between
 * calls, never while fn runs.
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <urcu-bp.h>

#include "after.h"
#include "loop.h"
#include "loopafter.h"
#include "registry.h"
#include "tree.h"

#define RCTX_LA_SLOTS	 1024u /* loops with after-funcs at once */
#define RCTX_LA_IDX_BITS 10
#define RCTX_LA_GEN_MAX	 (1u << (32 - 3 - RCTX_LA_IDX_BITS))
#define RCTX_LA_ST	 7u

enum {
	LA_ARMED = 1,
	LA_QUEUED = 2,
	LA_STARTED = 3,
	LA_STOPPED = 4,
	LA_ORPHAN = 5,
};

struct rctx_lslot {
	pthread_mutex_t mu; /* lists (consumer side), running, waiters */
	pthread_cond_t cv;  /* stoppers waiting for a running fn */
	_Atomic(struct rctx_after_impl *) incoming; /* pushed by fire */
	_Atomic(struct rctx_after_impl *) head;	    /* ready FIFO (mu) */
	struct rctx_after_impl *tail;		    /* under mu */
	struct rctx_after_impl *running;	    /* under mu (I2) */
	unsigned waiters;			    /* under mu */
	unsigned nready;			    /* under mu */
	_Atomic(rctx_loop_t *) loop;		    /* NULL when free */
	_Atomic uint32_t handle; /* aux bits of its registrations; 0: none */
	_Atomic bool alive;	 /* the owner thread has not exited */
	_Atomic bool used;	 /* ever held a loop: probes continue */
	int efd;		 /* the loop's eventfd */
	uint32_t gen;		 /* under rctx_la_lock */
	bool inited;		 /* mu and cv initialised; under rctx_la_lock */
} __attribute__((aligned(64)));

static struct rctx_lslot rctx_la_slots[RCTX_LA_SLOTS];
static pthread_mutex_t rctx_la_lock = PTHREAD_MUTEX_INITIALIZER; /* attach */
static void rctx_la_thread_exit(void *arg);
/* Set while the thread owns an attached loop; see rctx_lafter_shutdown. */
static struct rctx_tkey rctx_la_key = RCTX_TKEY_INIT(rctx_la_thread_exit);
static RCTX_TLS struct rctx_lslot *rctx_la_mine; /* this thread's loop's slot */
static RCTX_TLS struct rctx *rctx_la_cur_ctx;	 /* ctx being registered */

static inline struct rctx_after_impl *
rctx_la_impl(const rctx_after_t *reg)
{
	return (struct rctx_after_impl *)(void *)reg;
}

static inline struct rctx_lslot *
rctx_la_slot_of(uint32_t aux)
{
	return &rctx_la_slots[(aux >> 3) & (RCTX_LA_SLOTS - 1)];
}

static unsigned
rctx_la_hash(const void *p)
{
	uint64_t x = (uint64_t)(uintptr_t)p >> 4;

	x *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(x >> (64 - RCTX_LA_IDX_BITS));
}

/* The slot of a live loop, or NULL (no slot was free at its creation). */
static struct rctx_lslot *
rctx_la_find(const rctx_loop_t *loop)
{
	struct rctx_lslot *s = rctx_la_mine;
	unsigned h = rctx_la_hash(loop);

	/* relaxed: our own thread attached it */
	if (s && atomic_load_explicit(&s->loop, memory_order_relaxed) == loop)
		return s;
	for (unsigned i = 0; i < RCTX_LA_SLOTS; i++) {
		s = &rctx_la_slots[(h + i) & (RCTX_LA_SLOTS - 1)];
		/* acquire: pairs with the release store in attach, so the
		 * slot's efd, handle and mutex are seen initialised */
		if (atomic_load_explicit(&s->loop, memory_order_acquire) ==
		    loop)
			return s;
		/* relaxed: only ends the probe; set before loop (release) */
		if (!atomic_load_explicit(&s->used, memory_order_relaxed))
			return NULL;
	}
	return NULL;
}

static void
rctx_la_wake(int efd)
{
	uint64_t one = 1;
	ssize_t r;

	do {
		r = write(efd, &one, sizeof(one));
	} while (r < 0 && errno == EINTR);
	/* EAGAIN: the counter is saturated, the fd is readable anyway */
}

static void
rctx_la_thread_exit(void *arg)
{
	struct rctx_lslot *s = arg;

	/* release: pairs with the acquire loads in register and fire */
	atomic_store_explicit(&s->alive, false, memory_order_release);
}

void
rctx_lafter_attach(rctx_loop_t *loop, int efd)
{
	unsigned h = rctx_la_hash(loop), i;
	struct rctx_lslot *s = NULL;
	uint32_t handle;

	pthread_mutex_lock(&rctx_la_lock);
	for (i = 0; i < RCTX_LA_SLOTS && !s; i++) {
		s = &rctx_la_slots[(h + i) & (RCTX_LA_SLOTS - 1)];
		/* relaxed: slots are taken and freed under rctx_la_lock */
		if (atomic_load_explicit(&s->loop, memory_order_relaxed))
			s = NULL;
	}
	if (s == NULL) { /* no slot: rctx_loop_after_func gives -ENOSPC */
		pthread_mutex_unlock(&rctx_la_lock);
		return;
	}
	if (!s->inited) {
		pthread_mutex_init(&s->mu, NULL);
		pthread_cond_init(&s->cv, NULL);
		s->inited = true;
	}
	s->gen = s->gen + 1 < RCTX_LA_GEN_MAX ? s->gen + 1 : 1;
	handle = (uint32_t)(s - rctx_la_slots) << 3 |
		 s->gen << (3 + RCTX_LA_IDX_BITS);
	pthread_mutex_lock(&s->mu);
	s->efd = efd;
	s->running = NULL;
	s->tail = NULL;
	s->nready = 0;
	/* relaxed: under mu; the release store of loop publishes */
	atomic_store_explicit(&s->head, NULL, memory_order_relaxed);
	atomic_store_explicit(&s->alive, true, memory_order_relaxed);
	atomic_store_explicit(&s->used, true, memory_order_relaxed);
	/* seq_cst: a fire of the previous generation reads handle inside an
	 * RCU section detach waited for, so it cannot see this one (C) */
	atomic_store_explicit(&s->handle, handle, memory_order_seq_cst);
	pthread_mutex_unlock(&s->mu);
	/* release: publishes the fields above; pairs with rctx_la_find */
	atomic_store_explicit(&s->loop, loop, memory_order_release);
	pthread_mutex_unlock(&rctx_la_lock);
	rctx_la_mine = s;
	(void)rctx_tkey_set(&rctx_la_key, s);
}

void
rctx_lafter_shutdown(void)
{
	bool attached = false;

	pthread_mutex_lock(&rctx_la_lock);
	for (unsigned i = 0; i < RCTX_LA_SLOTS; i++)
		/* relaxed: slots are taken and freed under rctx_la_lock */
		if (atomic_load_explicit(&rctx_la_slots[i].loop,
					 memory_order_relaxed))
			attached = true;
	pthread_mutex_unlock(&rctx_la_lock);
	/* A loop alive across the shutdown still needs its thread-exit mark
	 * (alive); such a program keeps using the library, so it keeps the
	 * key. Once every loop is freed, the key goes with the shutdown. */
	if (!attached)
		rctx_tkey_drop(&rctx_la_key);
}

/* Under s->mu: move the incoming stack to the tail of the ready list. */
static unsigned
rctx_la_take_incoming(struct rctx_lslot *s)
{
	/* seq_cst: pairs with the pushers' seq_cst CAS in fire (A, B) */
	struct rctx_after_impl *a =
	    atomic_exchange_explicit(&s->incoming, NULL, memory_order_seq_cst);
	struct rctx_after_impl *first = NULL, *last = a;
	unsigned n = 0;

	while (a) { /* the stack is newest first: reverse it */
		struct rctx_after_impl *next = a->onext;

		a->onext = first;
		first = a;
		a = next;
		n++;
	}
	if (first == NULL)
		return 0;
	if (s->tail)
		s->tail->onext = first;
	else
		/* relaxed: under mu; run's unlocked peek is only a hint */
		atomic_store_explicit(&s->head, first, memory_order_relaxed);
	s->tail = last;
	s->nready += n;
	return n;
}

/* Under s->mu: pop the ready list's first entry, or NULL. */
static struct rctx_after_impl *
rctx_la_pop(struct rctx_lslot *s)
{
	/* relaxed: under mu */
	struct rctx_after_impl *a =
	    atomic_load_explicit(&s->head, memory_order_relaxed);

	if (a == NULL)
		return NULL;
	/* relaxed: under mu */
	atomic_store_explicit(&s->head, a->onext, memory_order_relaxed);
	if (a->onext == NULL)
		s->tail = NULL;
	s->nready--;
	return a;
}

void
rctx_lafter_detach(rctx_loop_t *loop)
{
	struct rctx_lslot *s = rctx_la_find(loop);
	struct rctx_after_impl *a;

	if (s == NULL)
		return;
	/* seq_cst: fire's handle check sees 0 after the grace period (C) */
	atomic_store_explicit(&s->handle, 0, memory_order_seq_cst);
	synchronize_rcu();
	rctx_tsan_acquire(&rctx_rcu_token);
	pthread_mutex_lock(&s->mu);
	(void)rctx_la_take_incoming(s);
	while ((a = rctx_la_pop(s)) != NULL) {
		struct rctx *ctx = a->ctx;
		/* relaxed: under mu */
		uint32_t aux =
		    atomic_load_explicit(&a->aux, memory_order_relaxed);

		/* release: a stopper that sees ORPHAN without mu owns reg
		 * again; pairs with the acquire load in stop */
		atomic_store_explicit(&a->aux, (aux & ~RCTX_LA_ST) | LA_ORPHAN,
				      memory_order_release);
		pthread_mutex_unlock(&s->mu);
		rctx_tree_release(ctx); /* I3 */
		pthread_mutex_lock(&s->mu);
	}
	/* relaxed: nothing reads them for this loop any more */
	atomic_store_explicit(&s->alive, false, memory_order_relaxed);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&rctx_la_lock);
	/* relaxed: the slot is free; rctx_la_lock orders the next attach */
	atomic_store_explicit(&s->loop, NULL, memory_order_relaxed);
	pthread_mutex_unlock(&rctx_la_lock);
	if (rctx_la_mine == s) {
		rctx_la_mine = NULL;
		(void)rctx_tkey_set(&rctx_la_key, NULL);
	}
}

int
rctx_lafter_register(rctx_loop_t *loop, struct rctx *ctx, rctx_after_t *reg,
		     void (*fn)(void *), void *arg)
{
	struct rctx_lslot *s = rctx_la_find(loop);
	struct rctx *prev = rctx_la_cur_ctx;
	uint32_t h;
	int rc;

	if (s == NULL)
		return -ENOSPC;
	/* acquire: pairs with the release store in rctx_la_thread_exit */
	if (!atomic_load_explicit(&s->alive, memory_order_acquire))
		return -EOWNERDEAD;
	/* relaxed: published to us by rctx_la_find's acquire of loop */
	h = atomic_load_explicit(&s->handle, memory_order_relaxed);
	rctx_la_cur_ctx =
	    ctx; /* for fire, if after.c claims inside this call */
	rc = rctx_after_register_aux(ctx, reg, fn, arg, h | LA_ARMED);
	rctx_la_cur_ctx = prev;
	return rc;
}

bool
rctx_lafter_is(const rctx_after_t *reg)
{
	/* relaxed: the caller got reg from its registrant through its own
	 * synchronisation (as for any after-func) */
	return atomic_load_explicit(&rctx_la_impl(reg)->aux,
				    memory_order_relaxed) != 0;
}

void
rctx_lafter_fire(struct rctx_after_impl *a)
{
	/* relaxed: published with the registration (A) */
	uint32_t aux = atomic_load_explicit(&a->aux, memory_order_relaxed);
	uint32_t h = aux & ~RCTX_LA_ST;
	struct rctx_lslot *s = rctx_la_slot_of(aux);
	struct rctx *ctx = a->ctx ? a->ctx : rctx_la_cur_ctx;
	struct rctx_after_impl *old;

	rcu_read_lock();
	/* seq_cst: order C, pairs with detach's store; acquire (alive):
	 * pairs with rctx_la_thread_exit */
	if (atomic_load_explicit(&s->handle, memory_order_seq_cst) != h ||
	    !atomic_load_explicit(&s->alive, memory_order_acquire)) {
		rctx_rcu_read_unlock();
		/* release: order D, seen by a stopper's acquire of aux */
		atomic_store_explicit(&a->aux, h | LA_ORPHAN,
				      memory_order_release);
		return;
	}
	rctx_ref_get(ctx); /* I3; run_claimed drops after.c's own */
	/* Only a registration made on a done context has none yet (no stop
	 * can run then); otherwise a stopper may read a->ctx (after.F). */
	if (a->ctx == NULL)
		a->ctx = ctx;
	/* relaxed: published by the push CAS below (A) */
	atomic_store_explicit(&a->aux, h | LA_QUEUED, memory_order_relaxed);
	/* relaxed: the CAS below validates */
	old = atomic_load_explicit(&s->incoming, memory_order_relaxed);
	do {
		a->onext = old;
		/* seq_cst: order A (publishes a) and B (before the wake
		 * decision); relaxed on failure: we retry with the new head */
	} while (!atomic_compare_exchange_weak_explicit(
	    &s->incoming, &old, a, memory_order_seq_cst, memory_order_relaxed));
	if (old == NULL)
		rctx_la_wake(s->efd);
	rctx_rcu_read_unlock();
}

void
rctx_lafter_rearm(rctx_loop_t *loop)
{
	struct rctx_lslot *s = rctx_la_find(loop);
	bool pending;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	/* seq_cst: order B, after the caller emptied the eventfd; head:
	 * relaxed under mu */
	pending =
	    atomic_load_explicit(&s->incoming, memory_order_seq_cst) != NULL ||
	    atomic_load_explicit(&s->head, memory_order_relaxed) != NULL;
	pthread_mutex_unlock(&s->mu);
	if (pending)
		rctx_la_wake(s->efd);
}

int
rctx_lafter_run(rctx_loop_t *loop)
{
	struct rctx_lslot *s = rctx_la_find(loop);
	unsigned n, ran = 0;

	if (s == NULL)
		return 0;
	/* relaxed: a peek; a call we miss was announced on the eventfd (B)
	 * and is run at the next rctx_loop_run */
	if (atomic_load_explicit(&s->incoming, memory_order_relaxed) == NULL &&
	    atomic_load_explicit(&s->head, memory_order_relaxed) == NULL)
		return 0;
	pthread_mutex_lock(&s->mu);
	(void)rctx_la_take_incoming(s);
	/* Calls queued before this run; later ones woke the fd (B) and wait
	 * for the next run, so a fn that re-registers cannot keep us here. */
	n = s->nready;
	while (ran < n) {
		struct rctx_after_impl *a = rctx_la_pop(s);
		void (*fn)(void *);
		struct rctx *ctx;
		void *arg;
		uint32_t aux;

		if (a == NULL)
			break;
		/* relaxed: under mu (E) */
		aux = atomic_load_explicit(&a->aux, memory_order_relaxed);
		atomic_store_explicit(&a->aux, (aux & ~RCTX_LA_ST) | LA_STARTED,
				      memory_order_relaxed);
		s->running = a;
		fn = a->fn;
		arg = a->arg;
		ctx = a->ctx;
		pthread_mutex_unlock(&s->mu);
		fn(arg);		/* may free or reuse reg */
		rctx_tree_release(ctx); /* I3 */
		pthread_mutex_lock(&s->mu);
		s->running = NULL;
		if (s->waiters)
			pthread_cond_broadcast(&s->cv);
		ran++;
	}
	pthread_mutex_unlock(&s->mu);
	return (int)ran;
}

/* Under s->mu: unlink QUEUED a from the incoming stack or ready list;
 * false if it is on neither (fire has not pushed it yet). */
static bool
rctx_la_unlink_once(struct rctx_lslot *s, struct rctx_after_impl *a)
{
	struct rctx_after_impl *p, *prev;

	/* acquire: order A, the pushed entries' onext links are visible */
	p = atomic_load_explicit(&s->incoming, memory_order_acquire);
	while (p == a) {
		/* seq_cst: as a push (B); on failure a push made a interior
		 * (acquire: its link is visible) */
		if (atomic_compare_exchange_strong_explicit(
			&s->incoming, &p, a->onext, memory_order_seq_cst,
			memory_order_acquire))
			return true;
	}
	for (; p; p = p->onext) {
		if (p->onext == a) { /* only mu holders write interior links */
			p->onext = a->onext;
			return true;
		}
	}
	prev = NULL;
	/* relaxed: under mu */
	for (p = atomic_load_explicit(&s->head, memory_order_relaxed); p;
	     prev = p, p = p->onext) {
		if (p != a)
			continue;
		if (prev)
			prev->onext = a->onext;
		else
			/* relaxed: under mu */
			atomic_store_explicit(&s->head, a->onext,
					      memory_order_relaxed);
		if (s->tail == a)
			s->tail = prev;
		s->nready--;
		return true;
	}
	return false;
}

/*
 * Under s->mu: unlink QUEUED a. Fire stores QUEUED before it pushes a on
 * incoming (I1), so a stop that lost to the claimer and saw QUEUED can
 * get here first; the push is a few instructions away and takes no lock
 * (mu is not needed for it), so wait for it.
 */
static void
rctx_la_unlink(struct rctx_lslot *s, struct rctx_after_impl *a)
{
	while (!rctx_la_unlink_once(s, a))
		sched_yield();
}

bool
rctx_lafter_stop(rctx_after_t *reg)
{
	struct rctx_after_impl *a = rctx_la_impl(reg);
	/* acquire: order D, pairs with fire's and detach's stores */
	uint32_t aux = atomic_load_explicit(&a->aux, memory_order_acquire);
	struct rctx_lslot *s;
	struct rctx *ctx;

	if ((aux & RCTX_LA_ST) == LA_ARMED) {
		if (rctx_after_unregister(reg)) {
			/* relaxed: reg is the caller's again */
			atomic_store_explicit(&a->aux,
					      (aux & ~RCTX_LA_ST) | LA_STOPPED,
					      memory_order_relaxed);
			return true;
		}
		/* Lost to a claimer (whose fire has returned, D) or to
		 * another stopper, which is about to store STOPPED. */
		for (;;) {
			/* acquire: order D */
			aux =
			    atomic_load_explicit(&a->aux, memory_order_acquire);
			if ((aux & RCTX_LA_ST) != LA_ARMED)
				break;
			sched_yield();
		}
	}
	if ((aux & RCTX_LA_ST) == LA_ORPHAN)
		/* acq_rel: the first stop of an orphan wins; pairs with the
		 * stores of ORPHAN in fire and detach */
		return atomic_compare_exchange_strong_explicit(
		    &a->aux, &aux, (aux & ~RCTX_LA_ST) | LA_STOPPED,
		    memory_order_acq_rel, memory_order_relaxed);
	if ((aux & RCTX_LA_ST) != LA_QUEUED && (aux & RCTX_LA_ST) != LA_STARTED)
		return false;
	s = rctx_la_slot_of(aux);
	pthread_mutex_lock(&s->mu);
	/* relaxed: under mu, where QUEUED is left (E) */
	aux = atomic_load_explicit(&a->aux, memory_order_relaxed);
	switch (aux & RCTX_LA_ST) {
	case LA_QUEUED:
		rctx_la_unlink(s, a);
		ctx = a->ctx;
		/* relaxed: under mu; reg is the caller's again */
		atomic_store_explicit(&a->aux, (aux & ~RCTX_LA_ST) | LA_STOPPED,
				      memory_order_relaxed);
		pthread_mutex_unlock(&s->mu);
		rctx_tree_release(ctx); /* I3 */
		return true;
	case LA_ORPHAN: { /* detach drained it meanwhile */
		/* relaxed: detach stored ORPHAN under mu, which we hold; a
		 * concurrent stop may CAS it without mu: the first CAS wins */
		bool won = atomic_compare_exchange_strong_explicit(
		    &a->aux, &aux, (aux & ~RCTX_LA_ST) | LA_STOPPED,
		    memory_order_relaxed, memory_order_relaxed);

		pthread_mutex_unlock(&s->mu);
		return won;
	}
	case LA_STARTED:
		if (s->running == a && rctx_la_mine != s) {
			/* fn runs on the owner: wait until it returned (E) */
			s->waiters++;
			while (s->running == a)
				pthread_cond_wait(&s->cv, &s->mu);
			s->waiters--;
		}
		/* else: done, or called from within fn itself */
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return false;
}

unsigned
rctx_lafter_waiters(rctx_loop_t *loop)
{
	struct rctx_lslot *s = rctx_la_find(loop);
	unsigned n;

	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->mu);
	n = s->waiters;
	pthread_mutex_unlock(&s->mu);
	return n;
}

static const struct rctx_loop_hooks rctx_la_loop_hooks = {
	.attach = rctx_lafter_attach,
	.detach = rctx_lafter_detach,
	.rearm = rctx_lafter_rearm,
	.run = rctx_lafter_run,
};

/* At load, before any thread: loop.c and after.c call us through these. */
__attribute__((constructor)) static void
rctx_la_load(void)
{
	rctx_loop_set_hooks(&rctx_la_loop_hooks);
	rctx_after_set_aux_fire(rctx_lafter_fire);
}
