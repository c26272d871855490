/* SPDX-License-Identifier: MIT */
/* Example: drive rctx deadlines from your own epoll loop, no library thread. */
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <rctx.h>

/*
 * One event loop thread owns an rctx_loop: deadlines armed on this thread
 * go to its wheel, and the loop fires them itself. The loop sleeps in
 * epoll_wait with the timeout rctx gives it, and watches the loop's fd
 * (another thread armed an earlier deadline) and each request's fd.
 */
int
main(void)
{
	rctx_loop_t *loop = rctx_loop_new();
	struct epoll_event ev = { .events = EPOLLIN };
	int ep, fired = 0, done = 0;

	if (loop == NULL) {
		perror("rctx_loop_new");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.data.u64 = 0;
	epoll_ctl(ep, EPOLL_CTL_ADD, rctx_loop_fd(loop), &ev);

	/* A request with a 20 ms budget, and a sub-call with 5 ms. */
	rctx_t *req = rctx_with_timeout(rctx_background(), 20 * RCTX_MSEC);
	rctx_t *sub = rctx_with_timeout(req, 5 * RCTX_MSEC);
	ev.data.u64 = 1;
	epoll_ctl(ep, EPOLL_CTL_ADD, rctx_fd(sub), &ev);
	ev.data.u64 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, rctx_fd(req), &ev);

	while (done != 3) {
		struct epoll_event out[4];
		int n = epoll_wait(ep, out, 4, rctx_loop_timeout_ms(loop));

		fired += rctx_loop_run(loop, rctx_now());
		for (int i = 0; i < n; i++) {
			unsigned id = (unsigned)out[i].data.u64;

			if (id == 0 || (done & id))
				continue;
			done |= id;
			epoll_ctl(ep, EPOLL_CTL_DEL,
				  id == 1 ? rctx_fd(sub) : rctx_fd(req), NULL);
			printf("%s done: %s\n",
			       id == 1 ? "sub-call" : "request",
			       rctx_err(id == 1 ? sub : req) == ETIMEDOUT
				   ? "deadline exceeded"
				   : "cancelled");
		}
	}
	printf("the loop fired %d deadlines\n", fired);
	rctx_release(sub);
	rctx_release(req);
	close(ep);
	rctx_loop_free(loop);
	rctx_shutdown();
	return fired == 2 ? 0 : 1;
}
