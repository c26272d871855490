/* SPDX-License-Identifier: MIT */
/* Example: socket reads on libev, stopped by rctx_cancel and by a deadline. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rctx-ev.h>

/*
 * The loop thread owns an rctx loop through rctx_ev_start. Each read is
 * bound to a context: an after-func wakes the loop with an ev_async (the
 * after-func may run on any thread: here, the cancelling one) and the
 * async callback stops the read. Read 1 is cancelled from another thread;
 * read 2 has a 20 ms deadline armed on the loop thread, which the driver
 * plans before libev blocks and fires: its after-func must run on the loop
 * thread. Read 3's 20 ms deadline is armed on another thread, which owns
 * no loop, so a library thread fires it; that thread binds the read with
 * rctx_loop_after_func instead, whose call the driver runs on the loop
 * thread once the loop's fd wakes it. No peer writes until its read was
 * stopped, and the byte written then must still be unread at the end: the
 * stopped read took nothing although the loop polled on.
 */
#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                 \
			exit(1);                                               \
		}                                                              \
	} while (0)

struct read_op {
	ev_io io;
	ev_async wake; /* the context is done: stop the read */
	rctx_t *ctx;
	rctx_after_t after;
	int sv[2];
	int got; /* bytes the read delivered: must stay 0 */
	int err; /* rctx_err when the loop saw the context done */
};

static struct ev_loop *ev;
static ev_timer guard;
static struct read_op ops[3];
static pthread_t armer, loop_thread;
static rctx_ev_t *drv;

static void
on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct read_op *op = w->data;
	char c;

	(void)loop;
	(void)revents;
	if (read(w->fd, &c, 1) == 1)
		op->got++;
}

/* Any thread: only wake the loop. */
static void
on_ctx_done(void *arg)
{
	struct read_op *op = arg;

	/* Read 2's deadline was armed on the loop thread: the driver's
	 * rctx_loop_run fired it, so its after-func runs there. */
	if (op == &ops[1])
		CHECK(pthread_equal(pthread_self(), loop_thread));
	ev_async_send(ev, &op->wake);
}

static void start_read(struct read_op *op);
static void bind_read(struct read_op *op, rctx_t *ctx);
static void *arm_elsewhere(void *arg);

static void stop_read(struct ev_loop *loop, struct read_op *op);

/* Loop thread: the context is done; the read stops here. */
static void
on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)revents;
	stop_read(loop, w->data);
}

/* Read 3's loop after-func: the driver runs it inside rctx_loop_run. */
static void
on_loop_done(void *arg)
{
	CHECK(pthread_equal(pthread_self(), loop_thread));
	stop_read(ev, arg);
}

static void
stop_read(struct ev_loop *loop, struct read_op *op)
{
	rctx_time_t deadline, now = rctx_now();

	op->err = rctx_err(op->ctx);
	CHECK(op->err != 0);
	if (rctx_deadline(op->ctx, &deadline))
		CHECK(now >= deadline); /* never early */
	ev_io_stop(loop, &op->io);
	ev_async_stop(loop, &op->wake);
	CHECK(write(op->sv[1], "x", 1) == 1); /* too late for the read */
	if (op == &ops[0]) {
		/* Read 2: armed on this thread, fired by the driver. */
		start_read(&ops[1]);
		bind_read(&ops[1],
			  rctx_with_timeout(rctx_background(), 20 * RCTX_MSEC));
		return;
	}
	if (op == &ops[1]) {
		/* Read 3: its deadline is armed on another thread. */
		start_read(&ops[2]);
		CHECK(pthread_create(&armer, NULL, arm_elsewhere, &ops[2]) ==
		      0);
		return;
	}
	ev_timer_stop(loop, &guard); /* nothing is left: ev_run returns */
}

static void
start_read(struct read_op *op)
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, op->sv) == 0);
	ev_io_init(&op->io, on_read, op->sv[0], EV_READ);
	ev_async_init(&op->wake, on_wake);
	op->io.data = op->wake.data = op;
	ev_io_start(ev, &op->io);
	ev_async_start(ev, &op->wake);
}

/* Any thread: bind the read to ctx; its end stops the read. */
static void
bind_read(struct read_op *op, rctx_t *ctx)
{
	CHECK(ctx != NULL);
	op->ctx = ctx; /* read by on_wake, after the after-func ran */
	CHECK(rctx_after_func(ctx, &op->after, on_ctx_done, op) == 0);
}

static void
on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	fprintf(stderr, "hang guard: a read was not stopped in 30 s\n");
	exit(1);
}

static void *
canceller(void *arg)
{
	CHECK(rctx_cancel(arg) == 0);
	return NULL;
}

/* A thread without a loop: a library thread fires this deadline, and the
 * loop after-func hands the stop to the loop thread. */
static void *
arm_elsewhere(void *arg)
{
	struct read_op *op = arg;

	op->ctx = rctx_with_timeout(rctx_background(), 20 * RCTX_MSEC);
	CHECK(op->ctx != NULL);
	CHECK(rctx_loop_after_func(rctx_ev_loop(drv), op->ctx, &op->after,
				   on_loop_done, op) == 0);
	return NULL;
}

int
main(void)
{
	pthread_t t;
	char c;

	loop_thread = pthread_self();
	ev = ev_loop_new(EVFLAG_AUTO);
	CHECK(ev != NULL);
	errno = 0;
	CHECK(rctx_ev_start(NULL) == NULL && errno == EINVAL);
	CHECK(rctx_ev_stop(NULL) == -EINVAL);
	drv = rctx_ev_start(ev);
	if (!drv) {
		perror("rctx_ev_start");
		return 1;
	}
	errno = 0;
	CHECK(rctx_ev_start(ev) == NULL && errno == EBUSY); /* one per thread */
	CHECK(rctx_ev_loop(drv) != NULL);

	ev_timer_init(&guard, on_guard, 30., 0.);
	ev_timer_start(ev, &guard);
	/* Read 1, cancelled from another thread. */
	start_read(&ops[0]);
	bind_read(&ops[0], rctx_with_cancel(rctx_background()));
	CHECK(pthread_create(&t, NULL, canceller, ops[0].ctx) == 0);
	ev_run(ev, 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(pthread_join(armer, NULL) == 0);

	CHECK(ops[0].err == ECANCELED);
	CHECK(ops[1].err == ETIMEDOUT);
	CHECK(ops[2].err == ETIMEDOUT);
	for (int i = 0; i < 3; i++) {
		CHECK(ops[i].got == 0);
		/* The byte written after the stop is still unread. */
		CHECK(recv(ops[i].sv[0], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 1);
		close(ops[i].sv[0]);
		close(ops[i].sv[1]);
		rctx_release(ops[i].ctx);
	}
	printf("read 1: cancelled; reads 2, 3: deadline exceeded, not early\n");
	CHECK(rctx_ev_stop(drv) == 0);
	ev_loop_destroy(ev);
	rctx_shutdown();
	return 0;
}
