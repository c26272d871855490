/* SPDX-License-Identifier: MIT */
/* Example: socket reads on libuv, stopped by rctx_cancel and by a deadline. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rctx-uv.h>

/*
 * The loop thread owns an rctx loop through rctx_uv_start. Each read is
 * bound to a context: an after-func wakes the loop with a uv_async_t (the
 * after-func may run on any thread: here, the cancelling one) and the
 * async callback stops the read. Read 1 is cancelled from another thread;
 * read 2 has a 20 ms deadline armed on the loop thread, which the driver
 * plans before uv sleeps and fires: its after-func must run on the loop
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
	uv_pipe_t pipe;
	uv_async_t wake; /* the context is done: stop the read */
	rctx_t *ctx;
	rctx_after_t after;
	int sv[2];
	int got; /* bytes the read delivered: must stay 0 */
	int err; /* rctx_err when the loop saw the context done */
	bool stopped;
};

static uv_loop_t uv;
static uv_timer_t guard;
static struct read_op ops[3];
static pthread_t armer, loop_thread;
static rctx_uv_t *drv;

static void
on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	static char byte;

	(void)h;
	(void)size;
	*buf = uv_buf_init(&byte, 1);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct read_op *op = s->data;

	(void)buf;
	if (n > 0)
		op->got += (int)n;
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
	uv_async_send(&op->wake);
}

static void start_read(struct read_op *op);
static void bind_read(struct read_op *op, rctx_t *ctx);
static void *arm_elsewhere(void *arg);

static void stop_read(struct read_op *op);

/* Loop thread: the context is done; the read stops here. */
static void
on_wake(uv_async_t *a)
{
	stop_read(a->data);
}

/* Read 3's loop after-func: the driver runs it inside rctx_loop_run. */
static void
on_loop_done(void *arg)
{
	CHECK(pthread_equal(pthread_self(), loop_thread));
	stop_read(arg);
}

static void
stop_read(struct read_op *op)
{
	rctx_time_t deadline, now = rctx_now();

	if (op->stopped)
		return;
	op->err = rctx_err(op->ctx);
	CHECK(op->err != 0);
	if (rctx_deadline(op->ctx, &deadline))
		CHECK(now >= deadline); /* never early */
	uv_read_stop((uv_stream_t *)&op->pipe);
	op->stopped = true;
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
	/* The stopped pipes are inactive: uv_run returns once these close. */
	uv_close((uv_handle_t *)&guard, NULL);
	for (int i = 0; i < 3; i++)
		uv_close((uv_handle_t *)&ops[i].wake, NULL);
}

static void
start_read(struct read_op *op)
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, op->sv) == 0);
	CHECK(uv_pipe_init(&uv, &op->pipe, 0) == 0);
	CHECK(uv_pipe_open(&op->pipe, op->sv[0]) == 0);
	CHECK(uv_async_init(&uv, &op->wake, on_wake) == 0);
	op->pipe.data = op->wake.data = op;
	CHECK(uv_read_start((uv_stream_t *)&op->pipe, on_alloc, on_read) == 0);
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
on_guard(uv_timer_t *t)
{
	(void)t;
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
	CHECK(rctx_loop_after_func(rctx_uv_loop(drv), op->ctx, &op->after,
				   on_loop_done, op) == 0);
	return NULL;
}

int
main(void)
{
	pthread_t t;
	char c;

	loop_thread = pthread_self();
	CHECK(uv_loop_init(&uv) == 0);
	errno = 0;
	CHECK(rctx_uv_start(NULL) == NULL && errno == EINVAL);
	CHECK(rctx_uv_stop(NULL) == -EINVAL);
	drv = rctx_uv_start(&uv);
	if (!drv) {
		perror("rctx_uv_start");
		return 1;
	}
	errno = 0;
	CHECK(rctx_uv_start(&uv) == NULL &&
	      errno == EBUSY); /* one per thread */
	CHECK(rctx_uv_loop(drv) != NULL);

	CHECK(uv_timer_init(&uv, &guard) == 0);
	CHECK(uv_timer_start(&guard, on_guard, 30000, 0) == 0);
	/* Read 1, cancelled from another thread. */
	start_read(&ops[0]);
	bind_read(&ops[0], rctx_with_cancel(rctx_background()));
	CHECK(pthread_create(&t, NULL, canceller, ops[0].ctx) == 0);
	CHECK(uv_run(&uv, UV_RUN_DEFAULT) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(pthread_join(armer, NULL) == 0);

	CHECK(ops[0].err == ECANCELED);
	CHECK(ops[1].err == ETIMEDOUT);
	CHECK(ops[2].err == ETIMEDOUT);
	for (int i = 0; i < 3; i++) {
		CHECK(ops[i].got == 0);
		/* The byte written after the stop is still unread. */
		CHECK(recv(ops[i].sv[0], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 1);
		uv_close((uv_handle_t *)&ops[i].pipe, NULL); /* closes sv[0] */
		close(ops[i].sv[1]);
		rctx_release(ops[i].ctx);
	}
	printf("read 1: cancelled; reads 2, 3: deadline exceeded, not early\n");
	CHECK(rctx_uv_stop(drv) == 0);
	CHECK(uv_run(&uv, UV_RUN_DEFAULT) == 0); /* the closes */
	CHECK(uv_loop_close(&uv) == 0);
	rctx_shutdown();
	return 0;
}
