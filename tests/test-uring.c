/* SPDX-License-Identifier: MIT */
/* librctx-uring: argument errors, link timeouts, a full SQ ring, races. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include <rctx-uring.h>

#define RING_SIZE 128
#define NRACE	  64 /* requests cancelled from two threads at once */

static struct io_uring ring;

static int
teardown(void **state)
{
	(void)state;
	io_uring_queue_exit(&ring);
	rctx_shutdown();
	return 0;
}

/* Submit and reap until the ring is idle: every CQE must be the bridge's. */
static void
drain(rctx_uring_t *br)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_nsec = 20 * 1000 * 1000 };

	assert_true(io_uring_submit(&ring) >= 0);
	while (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) == 0) {
		if (br)
			assert_int_equal(rctx_uring_cqe(br, cqe), 1);
		io_uring_cqe_seen(&ring, cqe);
		assert_true(io_uring_submit(&ring) >= 0);
	}
}

/*
 * Wait for a CQE; 30 s is only a hang guard. It sleeps in poll(2) on the
 * ring's fd: valgrind 3.19 holds every other thread while io_uring_enter
 * blocks, so the cancelling threads could not run.
 */
static void
wait_cqe(struct io_uring_cqe **cqe)
{
	struct pollfd pfd = { .fd = ring.ring_fd, .events = POLLIN };

	while (io_uring_peek_cqe(&ring, cqe) != 0) {
		int n = poll(&pfd, 1, 30000);

		assert_true(n == 1 || (n < 0 && errno == EINTR));
	}
}

/* A NOP with its own user_data (io_uring_prep_nop keeps a stale one). */
#define NOP_DATA 999
static void
prep_nop(struct io_uring_sqe *sqe)
{
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, NOP_DATA);
}

static void *
watch_elsewhere(void *arg)
{
	rctx_uring_req_t req;

	return (void *)(intptr_t)rctx_uring_watch(arg, &req, rctx_background(),
						  1);
}

static void
test_bad_input(void **state)
{
	struct io_uring_cqe cqe = { .user_data = 7 };
	struct io_uring_sqe dummy = { .opcode = IORING_OP_NOP };
	struct __kernel_timespec ts;
	rctx_uring_req_t req;
	rctx_uring_t *br;
	pthread_t t;
	void *ret;

	(void)state;
	errno = 0;
	assert_null(rctx_uring_new(NULL));
	assert_int_equal(errno, EINVAL);
	br = rctx_uring_new(&ring);
	assert_non_null(br);
	assert_int_equal(rctx_uring_watch(NULL, &req, rctx_background(), 1),
			 -EINVAL);
	assert_int_equal(rctx_uring_watch(br, NULL, rctx_background(), 1),
			 -EINVAL);
	assert_int_equal(rctx_uring_watch(br, &req, NULL, 1), -EINVAL);
	for (uint64_t d = RCTX_URING_RESERVED; d != 0; d++)
		assert_int_equal(
		    rctx_uring_watch(br, &req, rctx_background(), d), -EINVAL);
	assert_int_equal(rctx_uring_unwatch(NULL, &req), -EINVAL);
	assert_int_equal(rctx_uring_unwatch(br, NULL), -EINVAL);
	assert_int_equal(rctx_uring_cqe(NULL, &cqe), -EINVAL);
	assert_int_equal(rctx_uring_cqe(br, NULL), -EINVAL);
	assert_int_equal(rctx_uring_cqe(br, &cqe), 0); /* the caller's */
	cqe.user_data = RCTX_URING_CANCEL;
	assert_int_equal(rctx_uring_cqe(br, &cqe), 1);
	assert_int_equal(rctx_uring_flush(NULL), -EINVAL);
	assert_int_equal(rctx_uring_free(NULL), -EINVAL);
	assert_int_equal(
	    rctx_uring_prep_deadline(NULL, &dummy, rctx_background(), &ts),
	    -EINVAL);
	assert_int_equal(
	    rctx_uring_prep_deadline(&ring, NULL, rctx_background(), &ts),
	    -EINVAL);
	/* Only the owner thread may touch the bridge. */
	assert_int_equal(pthread_create(&t, NULL, watch_elsewhere, br), 0);
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_int_equal((int)(intptr_t)ret, -EPERM);
	/* A background context is never done: watching is harmless. */
	assert_int_equal(rctx_uring_watch(br, &req, rctx_background(), 1), 0);
	assert_int_equal(rctx_uring_free(br), -EBUSY);
	assert_int_equal(rctx_uring_unwatch(br, &req), 0);
	assert_int_equal(rctx_uring_unwatch(br, &req), -EINVAL); /* twice */
	assert_int_equal(rctx_uring_free(br), 0);
	drain(NULL);
}

static void
test_prep_deadline(void **state)
{
	struct __kernel_timespec ts;
	struct io_uring_sqe *sqe, *t;
	rctx_time_t d;
	rctx_t *ctx;
	unsigned n;

	(void)state;
	/* No deadline: nothing linked. */
	sqe = io_uring_get_sqe(&ring);
	prep_nop(sqe);
	n = io_uring_sq_ready(&ring);
	assert_int_equal(
	    rctx_uring_prep_deadline(&ring, sqe, rctx_background(), &ts), 0);
	assert_int_equal(io_uring_sq_ready(&ring), n);
	assert_false(sqe->flags & IOSQE_IO_LINK);
	/* A deadline: the next SQE is its absolute link timeout. */
	ctx = rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	assert_non_null(ctx);
	assert_true(rctx_deadline(ctx, &d));
	sqe = io_uring_get_sqe(&ring);
	prep_nop(sqe);
	assert_int_equal(rctx_uring_prep_deadline(&ring, sqe, ctx, &ts), 1);
	assert_int_equal(io_uring_sq_ready(&ring), n + 2);
	assert_true(sqe->flags & IOSQE_IO_LINK);
	t = &ring.sq.sqes[((unsigned)(sqe - ring.sq.sqes) + 1) &
			  *ring.sq.kring_mask];
	assert_int_equal(t->opcode, IORING_OP_LINK_TIMEOUT);
	assert_true(t->timeout_flags & IORING_TIMEOUT_ABS);
	assert_int_equal(t->user_data, RCTX_URING_TIMEOUT);
	assert_ptr_equal((void *)(uintptr_t)t->addr, &ts);
	assert_int_equal(ts.tv_sec * RCTX_SEC + ts.tv_nsec, d);
	drain(NULL); /* the nop completes; its timeout is cancelled */
	/* A full SQ ring: -EBUSY, sqe left alone. */
	sqe = io_uring_get_sqe(&ring);
	prep_nop(sqe);
	while ((t = io_uring_get_sqe(&ring)) != NULL)
		prep_nop(t);
	assert_int_equal(rctx_uring_prep_deadline(&ring, sqe, ctx, &ts),
			 -EBUSY);
	assert_false(sqe->flags & IOSQE_IO_LINK);
	drain(NULL);
	rctx_release(ctx);
}

static void
test_unwatch_withdraws(void **state)
{
	rctx_uring_req_t req[2];
	rctx_uring_t *br;
	rctx_t *ctx[2];

	(void)state;
	br = rctx_uring_new(&ring);
	assert_non_null(br);
	drain(br); /* the wake-up poll is in flight */
	for (int i = 0; i < 2; i++) {
		ctx[i] = rctx_with_cancel(rctx_background());
		assert_non_null(ctx[i]);
		assert_int_equal(rctx_uring_watch(br, &req[i], ctx[i], 10 + i),
				 0);
	}
	/* Unwatched before done: the cancel never comes. */
	assert_int_equal(rctx_uring_unwatch(br, &req[0]), 0);
	assert_int_equal(rctx_cancel(ctx[0]), 0);
	/* Done (pushed) but not flushed: unwatch takes it back. */
	assert_int_equal(rctx_cancel(ctx[1]), 0);
	assert_int_equal(rctx_uring_unwatch(br, &req[1]), 1);
	assert_int_equal(rctx_uring_flush(br), 0);
	assert_int_equal(io_uring_sq_ready(&ring), 0);
	drain(br); /* the eventfd wake-up: still nothing to cancel */
	assert_int_equal(io_uring_sq_ready(&ring), 0);
	assert_int_equal(rctx_uring_free(br), 0);
	drain(NULL);
	for (int i = 0; i < 2; i++)
		rctx_release(ctx[i]);
}

static void
test_full_sq_ring(void **state)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	rctx_uring_req_t req[2];
	rctx_uring_t *br;
	rctx_t *ctx[2];
	int cancels = 0, nops = 0;

	(void)state;
	br = rctx_uring_new(&ring);
	assert_non_null(br);
	drain(br);
	for (int i = 0; i < 2; i++) {
		ctx[i] = rctx_with_cancel(rctx_background());
		assert_int_equal(rctx_uring_watch(br, &req[i], ctx[i], 20 + i),
				 0);
		assert_int_equal(rctx_cancel(ctx[i]), 0);
	}
	while ((sqe = io_uring_get_sqe(&ring)) != NULL) {
		prep_nop(sqe);
		nops++;
	}
	assert_int_equal(rctx_uring_flush(br), -EBUSY);
	/* The NOPs go; the two cancels wait, then go with the next flush. */
	assert_true(io_uring_submit(&ring) > 0);
	assert_int_equal(rctx_uring_flush(br), 2);
	assert_int_equal(rctx_uring_flush(br), 0); /* each once */
	assert_true(io_uring_submit(&ring) >= 2);
	while (cancels < 2 || nops > 0) {
		wait_cqe(&cqe);
		if (cqe->user_data == RCTX_URING_CANCEL) {
			/* No request 20 or 21 was in flight. */
			assert_int_equal(cqe->res, -ENOENT);
			cancels++;
		}
		if (rctx_uring_cqe(br, cqe) == 0) {
			assert_int_equal(cqe->user_data, NOP_DATA);
			nops--;
		}
		io_uring_cqe_seen(&ring, cqe);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rctx_uring_unwatch(br, &req[i]), 1);
		rctx_release(ctx[i]);
	}
	drain(br);
	assert_int_equal(rctx_uring_free(br), 0);
	drain(NULL);
}

struct race {
	rctx_t *ctx[NRACE];
	int first;
};

static void *
cancel_half(void *arg)
{
	struct race *r = arg;

	for (int i = r->first; i < NRACE; i += 2)
		assert_int_equal(rctx_cancel(r->ctx[i]), 0);
	return NULL;
}

/*
 * NRACE polls on an eventfd that never turns readable, each watched, their
 * contexts cancelled by two threads at once while the owner reaps: every
 * poll ends cancelled exactly once; 20 rounds (TSan runs this).
 */
static void
cancel_race_round(void)
{
	static rctx_uring_req_t req[NRACE];
	static struct race r[2]; /* static: outlives a failed assertion */
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	bool seen[NRACE] = { false };
	int efd, left = NRACE;
	rctx_uring_t *br;
	pthread_t t[2];

	efd = eventfd(0, EFD_CLOEXEC);
	assert_true(efd >= 0);
	br = rctx_uring_new(&ring);
	assert_non_null(br);
	for (int i = 0; i < NRACE; i++) {
		r[0].ctx[i] = rctx_with_cancel(rctx_background());
		assert_non_null(r[0].ctx[i]);
		r[1].ctx[i] = r[0].ctx[i];
		assert_int_equal(rctx_uring_watch(br, &req[i], r[0].ctx[i], i),
				 0);
		sqe = io_uring_get_sqe(&ring);
		if (!sqe) {
			assert_true(io_uring_submit(&ring) > 0);
			sqe = io_uring_get_sqe(&ring);
		}
		io_uring_prep_poll_add(sqe, efd, POLLIN);
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
	}
	assert_true(io_uring_submit(&ring) > 0);
	for (int k = 0; k < 2; k++) {
		r[k].first = k;
		assert_int_equal(
		    pthread_create(&t[k], NULL, cancel_half, &r[k]), 0);
	}
	while (left) {
		uint64_t d;

		wait_cqe(&cqe);
		d = cqe->user_data;
		if (rctx_uring_cqe(br, cqe) == 0) {
			assert_true(d < NRACE);
			assert_false(seen[d]);
			assert_int_equal(cqe->res, -ECANCELED);
			seen[d] = true;
			left--;
			assert_int_equal(rctx_uring_unwatch(br, &req[d]), 1);
		}
		io_uring_cqe_seen(&ring, cqe);
		assert_true(io_uring_submit(&ring) >= 0);
	}
	for (int k = 0; k < 2; k++)
		assert_int_equal(pthread_join(t[k], NULL), 0);
	drain(br);
	assert_int_equal(rctx_uring_free(br), 0);
	drain(NULL);
	for (int i = 0; i < NRACE; i++)
		rctx_release(r[0].ctx[i]);
	close(efd);
}

static void
test_cancel_race(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++)
		cancel_race_round();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_prep_deadline),
		cmocka_unit_test(test_unwatch_withdraws),
		cmocka_unit_test(test_full_sq_ring),
		cmocka_unit_test(test_cancel_race),
	};

	int err = io_uring_queue_init(RING_SIZE, &ring, 0);

	/* Where the sandbox has no io_uring, skip the whole plan (TAP). */
	if (err == -ENOSYS || err == -EPERM) {
		printf("1..0 # SKIP io_uring unavailable: io_uring_queue_init: "
		       "%s\n",
		       strerror(-err));
		return 0;
	}
	if (err) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-err));
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, teardown);
}
