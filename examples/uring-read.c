/* SPDX-License-Identifier: MIT */
/* Example: io_uring reads cut by rctx_cancel and by a context's deadline. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rctx-uring.h>

/*
 * One thread owns the ring and a bridge. Read 1 (a recv on a socketpair)
 * is watched by the bridge and its context cancelled from another thread:
 * the bridge's eventfd poll wakes the owner, which queues an
 * IORING_OP_ASYNC_CANCEL, and the recv completes cancelled. Read 2 carries
 * its context's 20 ms deadline as a linked absolute timeout: it completes
 * cancelled, never before the deadline, and the link timeout's own CQE
 * says it expired (-ETIME). Read 2 is not watched, so only the kernel's
 * timeout can end it, not a cancel queued when rctx's timer fires the
 * context (a watched request would take whichever comes first). Each peer
 * writes a byte only
 * after its read ended; the byte must still be unread: the read took
 * nothing. Exit 77 (a meson SKIP) where io_uring is not available.
 */
#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                 \
			exit(1);                                               \
		}                                                              \
	} while (0)

static struct io_uring ring;
static rctx_uring_t *br;
static int timeout_res = 1; /* the last link timeout's CQE; 1: none yet */

/*
 * Submit, then wait for request ud, feeding every CQE to the bridge. It
 * sleeps in poll(2) on the ring's fd, as a program whose ring sits in an
 * event loop would; io_uring_wait_cqe works as well, except under
 * valgrind 3.19, which holds every other thread while io_uring_enter
 * blocks (so the canceller could not run).
 */
static int
wait_for(uint64_t ud, bool and_timeout)
{
	bool got = false;
	int ret = 0;

	for (;;) {
		struct pollfd pfd = { .fd = ring.ring_fd, .events = POLLIN };
		struct io_uring_cqe *cqe;

		CHECK(io_uring_submit(&ring) >= 0);
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			uint64_t data = cqe->user_data;
			int res = cqe->res, mine = rctx_uring_cqe(br, cqe);

			CHECK(mine == 0 || mine == 1);
			io_uring_cqe_seen(&ring, cqe);
			if (data == RCTX_URING_TIMEOUT)
				timeout_res = res;
			if (mine)
				continue; /* the bridge's: cancels go next */
			CHECK(data == ud);
			got = true;
			ret = res;
		}
		if (got && (!and_timeout || timeout_res != 1))
			return ret;
		if (io_uring_sq_ready(&ring))
			continue; /* the bridge queued cancels: submit them */
		switch (poll(&pfd, 1, 30000)) {
		case 0:
			fprintf(stderr, "hang guard: no completion in 30 s\n");
			exit(1);
		case -1:
			CHECK(errno == EINTR);
		}
	}
}

/* Queue a 1-byte recv on fd, bounded by ctx's deadline if it has one. */
static void
queue_recv(int fd, char *buf, rctx_t *ctx, uint64_t ud,
	   struct __kernel_timespec *ts, int want)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	CHECK(sqe != NULL);
	io_uring_prep_recv(sqe, fd, buf, 1, 0);
	io_uring_sqe_set_data64(sqe, ud);
	CHECK(rctx_uring_prep_deadline(&ring, sqe, ctx, ts) == want);
}

static void *
canceller(void *arg)
{
	CHECK(rctx_cancel(arg) == 0);
	return NULL;
}

static int
skip(const char *why, int err)
{
	printf("SKIP: io_uring unavailable: %s (%s)\n", why, strerror(err));
	return 77;
}

int
main(void)
{
	struct io_uring_probe *probe;
	struct __kernel_timespec ts;
	rctx_uring_req_t req[3];
	int sv[2][2], r, ok;
	rctx_time_t deadline;
	rctx_t *ctx[3];
	pthread_t t;
	char buf[2], c;

	r = io_uring_queue_init(8, &ring, 0);
	if (r == -ENOSYS || r == -EPERM)
		return skip("io_uring_queue_init", -r);
	CHECK(r == 0);
	probe = io_uring_get_probe_ring(&ring);
	if (!probe)
		return skip("no opcode probe (kernel before 5.6)", ENOSYS);
	ok = io_uring_opcode_supported(probe, IORING_OP_LINK_TIMEOUT) &&
	     io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL) &&
	     io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) &&
	     io_uring_opcode_supported(probe, IORING_OP_RECV);
	io_uring_free_probe(probe);
	if (!ok)
		return skip("an opcode this example needs", EOPNOTSUPP);

	errno = 0;
	CHECK(rctx_uring_new(NULL) == NULL && errno == EINVAL);
	br = rctx_uring_new(&ring);
	CHECK(br != NULL);
	CHECK(rctx_uring_free(NULL) == -EINVAL);
	CHECK(rctx_uring_flush(NULL) == -EINVAL);
	CHECK(rctx_uring_watch(br, &req[0], rctx_background(),
			       RCTX_URING_WAKE) == -EINVAL);
	CHECK(rctx_uring_prep_deadline(&ring, NULL, rctx_background(), &ts) ==
	      -EINVAL);
	for (int i = 0; i < 2; i++)
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				 sv[i]) == 0);

	/* Read 1: cancelled from another thread while in flight. */
	ctx[0] = rctx_with_cancel(rctx_background());
	CHECK(ctx[0] != NULL);
	CHECK(rctx_uring_watch(br, &req[0], ctx[0], 1) == 0);
	queue_recv(sv[0][0], &buf[0], ctx[0], 1, &ts, 0);
	CHECK(io_uring_submit(&ring) >= 1); /* in flight before the cancel */
	CHECK(pthread_create(&t, NULL, canceller, ctx[0]) == 0);
	r = wait_for(1, false);
	CHECK(r == -ECANCELED || r == -EINTR);
	CHECK(rctx_err(ctx[0]) == ECANCELED);
	CHECK(rctx_uring_unwatch(br, &req[0]) == 1);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(write(sv[0][1], "x", 1) == 1); /* too late for read 1 */

	/* Read 2: its deadline as a linked absolute timeout. */
	ctx[1] = rctx_with_timeout(rctx_background(), 20 * RCTX_MSEC);
	CHECK(ctx[1] != NULL && rctx_deadline(ctx[1], &deadline));
	queue_recv(sv[1][0], &buf[1], ctx[1], 2, &ts, 1);
	r = wait_for(2, true);
	CHECK(rctx_now() >= deadline); /* never early */
	CHECK(r == -ECANCELED || r == -EINTR);
	CHECK(timeout_res == -ETIME); /* the kernel's timeout ended it */
	CHECK(write(sv[1][1], "x", 1) == 1);
	CHECK(rctx_wait(ctx[1], 30 * RCTX_SEC) == ETIMEDOUT);
	CHECK(rctx_now() >= deadline);

	/* Done before any flush: unwatch withdraws the cancel unsent. */
	ctx[2] = rctx_with_cancel(rctx_background());
	CHECK(ctx[2] != NULL);
	CHECK(rctx_uring_watch(br, &req[2], ctx[2], 3) == 0);
	CHECK(rctx_uring_free(br) == -EBUSY); /* still watched */
	CHECK(rctx_cancel(ctx[2]) == 0);      /* the after-func runs here */
	CHECK(rctx_uring_unwatch(br, &req[2]) == 1);
	r = (int)io_uring_sq_ready(&ring);
	CHECK(rctx_uring_flush(br) >= 0);
	CHECK((int)io_uring_sq_ready(&ring) == r); /* no cancel for it */

	for (int i = 0; i < 2; i++) {
		/* The byte written after the read ended is still unread. */
		CHECK(recv(sv[i][0], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 1);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	for (int i = 0; i < 3; i++)
		rctx_release(ctx[i]);
	CHECK(rctx_uring_free(br) == 0);
	CHECK(io_uring_submit(&ring) >= 0); /* the poll's removal */
	io_uring_queue_exit(&ring);
	printf("read 1: cancelled; read 2: deadline exceeded, not early\n");
	rctx_shutdown();
	return 0;
}
