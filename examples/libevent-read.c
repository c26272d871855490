/* SPDX-License-Identifier: MIT */
/* Example: socket reads on libevent, stopped by rctx_cancel and a deadline. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/thread.h>
#include <rctx-event.h>

/*
 * The loop thread owns an rctx loop through rctx_event_start and runs the
 * base with rctx_event_dispatch. Each read is bound to a context: an
 * after-func wakes the loop with event_active on a "done" event (thread
 * safe once evthread_use_pthreads ran; the after-func may run on any
 * thread: here, the cancelling one) and that event's callback stops the
 * read. Read 1 is cancelled from another thread; read 2 has a 20 ms
 * deadline armed by a callback on the loop thread, which the driver plans
 * between iterations of rctx_event_dispatch and fires: its after-func
 * must run on the loop thread. Read 3's 20 ms deadline is armed on another
 * thread, which owns no loop, so a library thread fires it; that thread
 * binds the read with rctx_loop_after_func instead, whose call the driver
 * runs on the loop thread once the loop's fd wakes it. No peer writes
 * until its read was stopped, and the byte written then must still be
 * unread at the end: the stopped read took nothing although the loop
 * polled on.
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
	struct event *rd;
	struct event *wake; /* the context is done: stop the read */
	rctx_t *ctx;
	rctx_after_t after;
	int sv[2];
	int got; /* bytes the read delivered: must stay 0 */
	int err; /* rctx_err when the loop saw the context done */
};

static struct event_base *base;
static rctx_event_t *drv;
static struct read_op ops[3];
static pthread_t armer, loop_thread;

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct read_op *op = arg;
	char c;

	(void)what;
	if (read(fd, &c, 1) == 1)
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
	event_active(op->wake, EV_READ, 0);
}

static void start_read(struct read_op *op);

/* From a callback: rctx_event_dispatch returns 0 and frees the driver. */
static void
on_finish(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	CHECK(rctx_event_dispatch(drv) == -EBUSY); /* not inside itself */
	CHECK(rctx_event_stop(drv) == 0);
}
static void bind_read(struct read_op *op, rctx_t *ctx);
static void *arm_elsewhere(void *arg);

static void stop_read(struct read_op *op);

/* Loop thread: the context is done; the read stops here. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	stop_read(arg);
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

	op->err = rctx_err(op->ctx);
	CHECK(op->err != 0);
	if (rctx_deadline(op->ctx, &deadline))
		CHECK(now >= deadline); /* never early */
	CHECK(event_del(op->rd) == 0);
	CHECK(write(op->sv[1], "x", 1) == 1); /* too late for the read */
	if (op == &ops[0]) {
		/* Read 2: armed on this thread, planned between iterations. */
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
	/* Poll once more with the reads stopped, then stop the driver. */
	CHECK(event_base_once(base, -1, EV_TIMEOUT, on_finish, NULL,
			      &(struct timeval){ 0, 1000 }) == 0);
}

static void
start_read(struct read_op *op)
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, op->sv) == 0);
	op->rd = event_new(base, op->sv[0], EV_READ | EV_PERSIST, on_read, op);
	op->wake = event_new(base, -1, 0, on_wake, op);
	CHECK(op->rd != NULL && op->wake != NULL);
	CHECK(event_add(op->rd, NULL) == 0);
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
on_guard(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
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
	CHECK(rctx_loop_after_func(rctx_event_loop(drv), op->ctx, &op->after,
				   on_loop_done, op) == 0);
	return NULL;
}

int
main(void)
{
	struct timeval hang = { 30, 0 };
	struct event *guard;
	pthread_t t;
	char c;

	loop_thread = pthread_self();
	CHECK(evthread_use_pthreads() == 0); /* event_active from any thread */
	base = event_base_new();
	CHECK(base != NULL);
	errno = 0;
	CHECK(rctx_event_start(NULL) == NULL && errno == EINVAL);
	CHECK(rctx_event_stop(NULL) == -EINVAL);
	CHECK(rctx_event_update(NULL) == -EINVAL);
	CHECK(rctx_event_dispatch(NULL) == -EINVAL);
	drv = rctx_event_start(base);
	if (!drv) {
		perror("rctx_event_start");
		return 1;
	}
	errno = 0;
	CHECK(rctx_event_start(base) == NULL && errno == EBUSY);
	CHECK(rctx_event_loop(drv) != NULL);
	CHECK(rctx_event_update(drv) == 0);

	guard = evtimer_new(base, on_guard, NULL);
	CHECK(guard != NULL);
	CHECK(event_add(guard, &hang) == 0);
	/* Read 1, cancelled from another thread. */
	start_read(&ops[0]);
	bind_read(&ops[0], rctx_with_cancel(rctx_background()));
	CHECK(pthread_create(&t, NULL, canceller, ops[0].ctx) == 0);
	CHECK(rctx_event_dispatch(drv) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(pthread_join(armer, NULL) == 0);

	CHECK(ops[0].err == ECANCELED);
	CHECK(ops[1].err == ETIMEDOUT);
	CHECK(ops[2].err == ETIMEDOUT);
	for (int i = 0; i < 3; i++) {
		CHECK(ops[i].got == 0);
		/* The byte written after the stop is still unread. */
		CHECK(recv(ops[i].sv[0], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 1);
		event_free(ops[i].rd);
		event_free(ops[i].wake);
		close(ops[i].sv[0]);
		close(ops[i].sv[1]);
		rctx_release(ops[i].ctx);
	}
	printf("read 1: cancelled; reads 2, 3: deadline exceeded, not early\n");
	event_free(guard);
	event_base_free(base);
	libevent_global_shutdown();
	rctx_shutdown();
	return 0;
}
