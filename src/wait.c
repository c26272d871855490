/* SPDX-License-Identifier: MIT */
/* Waiting for done: a futex on the state word, and a lazy eventfd. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "wait.h"

/*
 * The futex word is the low half of the 64-bit state word: err in bits 0-1
 * and WAITERS in bit 2. A waiter sets WAITERS with a CAS that requires err
 * to be 0, so once a cancel has published err no waiter can announce
 * itself any more: the cancel's CAS result tells exactly whether to wake.
 *
 * Invariants
 *  I1. WAITERS is set only while err is 0 (the waiter's CAS requires it),
 *      so the cancel's CAS result says whether anyone may sleep.
 *  I2. PENDING is set only together with the final err and cause, by the
 *      canceller that won the state CAS, and cleared by that canceller
 *      once it has written the eventfd (tree.c publish_done).
 *  I3. A context's eventfd, once installed (x->fd >= 0 in its extension
 *      block), never changes until the context is freed
 *      (rctx_wait_close).
 *
 * Ordering
 *  wait.A The waiter's CAS (seq_cst) and the canceller's CAS (seq_cst) hit
 *      the same word: one is first. If the waiter's is, the cancel sees
 *      WAITERS and wakes; if the cancel's is, the waiter's CAS fails and it
 *      re-reads err. FUTEX_WAIT compares the word in the kernel, so a
 *      change between our load and the sleep returns at once.
 *  wait.B Done and "the eventfd is readable" agree both ways, as in Go (which
 *      closes Done under the lock that sets err). A canceller CASes the
 *      state to the final err and cause plus PENDING, then loads the fd
 *      (seq_cst), writes it if there is one, then clears PENDING
 *      (release); an observer that sees PENDING does the write and the
 *      clearing itself (tree.F), so done is never visible before the fd
 *      is readable, and the fd is never readable before done is. For an
 *      fd created during the cancel: rctx_fd installs it (seq_cst CAS)
 *      then reads the state (seq_cst). In the total order either the
 *      install precedes the canceller's fd load (the canceller writes it
 *      before clearing PENDING) or the creator's state load follows the
 *      cancel CAS (the creator writes it before returning it). A thread
 *      that gets an fd another creator installed but has not yet written
 *      (rctx_fd's fast path) checks the state (seq_cst) and fd_written
 *      and writes it itself if done: so no thread holds a done context's
 *      fd that does not poll readable, and a waiter woken by the cancel
 *      finds its fd readable.
 */

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the futex word is the low half of the state word: little-endian only"
#endif

static inline uint32_t *
futex_word(struct rctx *c)
{
	return (uint32_t *)(void *)&c->state;
}

/* Called before each sleep; the core installs rctx_timer_poke. */
static _Atomic(void (*)(void)) sleep_hook;

void
rctx_wait_set_sleep_hook(void (*fn)(void))
{
	/* release: publishes the hook; pairs with the acquire in
	 * rctx_wait_src */
	atomic_store_explicit(&sleep_hook, fn, memory_order_release);
}

int
rctx_wait_src(struct rctx *c, rctx_time_t timeout)
{
	rctx_time_t end =
	    timeout < 0 ? INT64_MAX : rctx_clock_add(rctx_clock_now(), timeout);

	for (;;) {
		uint64_t s = rctx_state_load(c);
		struct timespec ts, *tsp = NULL;

		if (rctx_st_err(s))
			return rctx_st_err(s);
		if (!(s & RCTX_ST_WAITERS)) {
			/* seq_cst: wait.A, pairs with the cancel CAS;
			 * relaxed on failure: we loop and reload */
			if (!atomic_compare_exchange_strong_explicit(
				&c->state, &s, s | RCTX_ST_WAITERS,
				memory_order_seq_cst, memory_order_relaxed))
				continue;
			s |= RCTX_ST_WAITERS;
		}
		/* acquire: pairs with rctx_wait_set_sleep_hook's release */
		void (*hook)(void) =
		    atomic_load_explicit(&sleep_hook, memory_order_acquire);

		if (hook)
			hook(); /* a fork child restarts its timer threads */
		if (end != INT64_MAX) {
			rctx_time_t left = end - rctx_clock_now();

			if (left <= 0)
				return 0;
			ts.tv_sec = left / RCTX_SEC;
			ts.tv_nsec = left % RCTX_SEC;
			tsp = &ts;
		}
		rctx_futex(futex_word(c), FUTEX_WAIT_PRIVATE, (uint32_t)s, tsp,
			   0);
	}
}

void
rctx_wait_notify(struct rctx *c, uint64_t st)
{
	if (st & RCTX_ST_WAITERS)
		rctx_futex(futex_word(c), FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
}

/* Make fd readable and say so (wait.B). */
static void
fd_signal(struct rctx_ext *x, int fd)
{
	(void)eventfd_write(fd, 1);
	/* release: pairs with the acquire in rctx_fd_src's fast path */
	atomic_store_explicit(&x->fd_written, 1, memory_order_release);
}

/* fd, installed by another thread: make sure it polls readable if c is
 * done (wait.B: its creator may not have written it yet). */
static int
fd_theirs(struct rctx *c, struct rctx_ext *x, int fd)
{
	/* acquire: pairs with fd_signal's release (and tree.c's) */
	if (!atomic_load_explicit(&x->fd_written, memory_order_acquire) &&
	    /* seq_cst: wait.B, after our load of the fd */
	    rctx_st_err(atomic_load_explicit(&c->state, memory_order_seq_cst)))
		fd_signal(x, fd);
	return fd;
}

int
rctx_fd_src(struct rctx *c)
{
	/* The fd lives in the extension block, made here if missing: its
	 * seq_cst install comes before the fd's, so a canceller that saw
	 * no block is followed by our state load (wait.B). */
	struct rctx_ext *x = rctx_ext_get(c);
	int fd, expect = -1;

	if (x == NULL)
		return -ENOMEM;
	/* acquire: pairs with the CAS below on another thread */
	fd = atomic_load_explicit(&x->fd, memory_order_acquire);
	if (fd >= 0)
		return fd_theirs(c, x, fd);
	if (rctx_fault_hit(RCTX_FAULT_EVENTFD))
		return -EMFILE;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	/* seq_cst: wait.B; acquire on failure: take the winner's fd */
	if (!atomic_compare_exchange_strong_explicit(&x->fd, &expect, fd,
						     memory_order_seq_cst,
						     memory_order_acquire)) {
		close(fd);
		return fd_theirs(c, x, expect);
	}
	/* seq_cst: wait.B, pairs with the cancel CAS */
	if (rctx_st_err(atomic_load_explicit(&c->state, memory_order_seq_cst)))
		fd_signal(x, fd);
	return fd;
}

void
rctx_wait_close(struct rctx *c)
{
	/* relaxed: the context is unreachable (last reference dropped) */
	struct rctx_ext *x =
	    atomic_load_explicit(&c->children.x, memory_order_relaxed);
	int fd;

	if (x == NULL)
		return;
	/* relaxed: as above */
	fd = atomic_load_explicit(&x->fd, memory_order_relaxed);
	if (fd >= 0) {
		close(fd);
		/* the block outlives this context's life (children.c I3) */
		atomic_store_explicit(&x->fd, -1, memory_order_relaxed);
	}
}

int
rctx_wait_never(rctx_time_t timeout)
{
	struct timespec ts;

	if (timeout < 0) {
		for (;;)
			pause();
	}
	ts.tv_sec = timeout / RCTX_SEC;
	ts.tv_nsec = timeout % RCTX_SEC;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}
