/* SPDX-License-Identifier: MIT */
/* Example: an HTTP/1.1 proxy on epoll workers, with loop after-funcs. */

/*
 * proxy               self-test: fork a server, send it requests (one
 *                     times out, one disconnects), SIGTERM it, check.
 * proxy --serve [P]   serve on 127.0.0.1:P (0 or none: any port) until
 *                     SIGTERM; prints "proxy <port>" on stdout, then at
 *                     exit the counters and the deadline lateness.
 * proxy --serve-plain [P]  the same proxy without rctx: no contexts, no
 *                     deadlines (the baseline of perf/proxy-load).
 *
 * The server process runs:
 *  - an upstream on loopback: "GET /sleep/<ms>" answers after <ms>, or
 *    counts a cut if the proxy closes the connection first;
 *  - W epoll workers, each owning an rctx_loop. Per request: a context
 *    under the server root with the deadline of the `x-timeout-ms` header,
 *    and an upstream sub-call under it (capped at UPSTREAM_CAP_MS). One
 *    rctx_loop_after_func on the sub-call ends the request on its own
 *    worker when it is done, whoever made it done: its deadline (504),
 *    the client going away (cancel with cause ECONNRESET, no answer) or
 *    the drain (the root cancelled by the signal thread: 503);
 *  - the root is a drain's context (rctx_drain_init): each request with a
 *    context enters the drain before it is made and leaves once its
 *    contexts are released; a request that comes after the drain began
 *    cannot enter and is answered 503 at once;
 *  - on SIGTERM: rctx_drain_cancel_join cancels the root and waits, at
 *    most DRAIN_BOUND_MS, for every request to leave; then the workers
 *    stop, and the process exits 0 only if rctx_stats counts no context
 *    left (and rctx_shutdown then stops the library).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rctx.h>

#define WORKERS		2
#define UPSTREAM_CAP_MS 30000
#define REQ_MAX		2048
#define RESP_MAX	4096
#define DRAIN_BOUND_MS	10000 /* SIGTERM: the longest wait for requests */

static rctx_drain_t drain; /* the requests in flight */
static rctx_t *root;	   /* rctx_drain_ctx(&drain) */
static uint64_t live_base; /* rctx_stats live with no request made */
static int up_port;
static int stop_fd;	     /* eventfd, readable once draining */
static bool use_rctx = true; /* false: --serve-plain */

/* Lateness of the 504s (ns past the deadline), the first LATE_MAX. */
#define LATE_MAX 65536
static rctx_time_t late[LATE_MAX];
static _Atomic long n_late;

/* Counters, reported at exit. */
static _Atomic long n_ok, n_timeout, n_early, n_gone, n_drained, n_bad;
static _Atomic long n_up_closed; /* upstream fds closed by an after-func */
static _Atomic long up_cut, up_live;

enum { READ_REQ, UP_WRITE, UP_READ };

struct worker;

struct req {
	struct worker *w;
	struct req *prev, *next; /* the worker's connections */
	struct req *grave;	 /* ended, freed after this batch */
	bool dead;
	bool entered; /* counted in the drain; leaves in req_free */
	int cfd, ufd, state, sleep_ms;
	rctx_t *ctx, *up; /* the request, and its upstream sub-call */
	rctx_after_t reg; /* loop after-func on up */
	size_t inlen, outlen;
	char in[REQ_MAX], out[RESP_MAX];
};

struct worker {
	pthread_t th;
	int ep, lfd;
	rctx_loop_t *loop;
	struct req *conns;
	struct req *grave; /* ended requests, freed after each batch */
	long live;	   /* requests with a context */
};

/* ---- helpers ----------------------------------------------------------- */

static int
listen_on(int port, int flags)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1,
	    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fd, 512) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	getsockname(fd, (struct sockaddr *)&a, &len);
	return ntohs(a.sin_port);
}

static int
connect_to(int port, bool nonblock)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(
	    AF_INET,
	    SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the peer is gone: nothing to do */
		p += w;
		n -= (size_t)w;
	}
}

static void
reply(int fd, int code, const char *reason, const char *body)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s",
			 code, reason, strlen(body), body);

	write_all(fd, buf, (size_t)n);
}

/* The value of header `name` (case-insensitive) as a number, or -1. */
static long
header_num(const char *req, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = strstr(req, "\r\n"); p; p = strstr(p, "\r\n")) {
		p += 2;
		if (strncasecmp(p, name, len) == 0 && p[len] == ':') {
			char *end;
			long v = strtol(p + len + 1, &end, 10);

			return end == p + len + 1 || v < 0 ? -1 : v;
		}
	}
	return -1;
}

/* ---- the upstream: one thread per connection ---------------------------- */

static void *
up_conn(void *arg)
{
	int fd = (int)(intptr_t)arg, ms = -1;
	char buf[1024];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (n > 0) {
		buf[n] = 0;
		if (sscanf(buf, "GET /sleep/%d", &ms) != 1)
			ms = -1;
	}
	if (ms < 0) {
		reply(fd, 400, "Bad Request", "");
	} else if (poll(&p, 1, ms) > 0) {
		atomic_fetch_add(&up_cut, 1); /* the proxy closed first */
	} else {
		snprintf(buf, sizeof(buf), "slept %d\n", ms);
		reply(fd, 200, "OK", buf);
	}
	close(fd);
	atomic_fetch_sub(&up_live, 1);
	return NULL;
}

static void *
up_main(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pthread_attr_t at;
		pthread_t th;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* shut down */
		}
		atomic_fetch_add(&up_live, 1);
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &at, up_conn, (void *)(intptr_t)fd)) {
			close(fd);
			atomic_fetch_sub(&up_live, 1);
		}
		pthread_attr_destroy(&at);
	}
}

/* ---- the proxy ---------------------------------------------------------- */

#define TAG_UP ((uintptr_t)1) /* epoll data: a request's upstream fd */

static void
watch(struct worker *w, int op, int fd, uint32_t ev, void *ptr)
{
	struct epoll_event e = { .events = ev, .data.ptr = ptr };

	epoll_ctl(w->ep, op, fd, &e);
}

/* End a request: its fds and contexts go now, its memory after the batch
 * of events (a later event in the batch may still point at it). */
static void
req_free(struct req *r)
{
	struct worker *w = r->w;

	if (r->ufd >= 0)
		close(r->ufd);
	close(r->cfd);
	if (r->ctx) {
		rctx_release(r->up);
		rctx_release(r->ctx);
		w->live--;
	}
	if (r->entered && rctx_drain_leave(&drain) != 0)
		abort(); /* every leave has its enter */
	if (r->prev)
		r->prev->next = r->next;
	else
		w->conns = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->dead = true;
	r->grave = w->grave;
	w->grave = r;
}

static void
bury(struct worker *w)
{
	while (w->grave) {
		struct req *r = w->grave;

		w->grave = r->grave;
		free(r);
	}
}

/* The loop after-func: the sub-call is done before the request ended.
 * Runs on the request's own worker, inside rctx_loop_run. */
static void
req_done(void *arg)
{
	struct req *r = arg;
	rctx_time_t dl;

	close(r->ufd); /* safe: this worker is the only one using it */
	r->ufd = -1;
	atomic_fetch_add(&n_up_closed, 1);
	if (rctx_err(r->up) == ETIMEDOUT) {
		rctx_time_t now = rctx_now();
		long i;

		if (rctx_deadline(r->up, &dl) && now < dl)
			atomic_fetch_add(&n_early, 1);
		i = atomic_fetch_add(&n_late, 1);
		if (i < LATE_MAX)
			late[i] = now - dl;
		atomic_fetch_add(&n_timeout, 1);
		reply(r->cfd, 504, "Gateway Timeout", "deadline exceeded\n");
	} else if (rctx_cause(r->up) == ECONNRESET) {
		atomic_fetch_add(&n_gone, 1); /* nobody to answer */
	} else {
		atomic_fetch_add(&n_drained, 1);
		reply(r->cfd, 503, "Service Unavailable", "draining\n");
	}
	req_free(r); /* r->reg goes with r: allowed */
}

static void
req_start(struct req *r)
{
	long ms = header_num(r->in, "x-timeout-ms");
	char line[128];

	if (strncmp(r->in, "GET /stats ", 11) == 0) {
		rctx_stats_t st;

		/* Two contexts per request: what the library counts. */
		rctx_stats(&st, sizeof(st));
		snprintf(line, sizeof(line), "live %ld\n",
			 (long)(st.live - live_base) / 2);
		reply(r->cfd, 200, "OK", line);
		req_free(r);
		return;
	}
	if (sscanf(r->in, "GET /sleep/%d ", &r->sleep_ms) != 1 ||
	    r->sleep_ms < 0) {
		atomic_fetch_add(&n_bad, 1);
		reply(r->cfd, 400, "Bad Request", "GET /sleep/<ms>\n");
		req_free(r);
		return;
	}
	if (!use_rctx) { /* the baseline: no context, no deadline */
		r->ufd = connect_to(up_port, true);
		if (r->ufd < 0) {
			reply(r->cfd, 500, "Internal Server Error", "");
			req_free(r);
			return;
		}
		r->state = UP_WRITE;
		watch(r->w, EPOLL_CTL_ADD, r->ufd, EPOLLOUT,
		      (void *)((uintptr_t)r | TAG_UP));
		return;
	}
	if (rctx_drain_enter(&drain) != 0) { /* draining: do not start */
		atomic_fetch_add(&n_drained, 1);
		reply(r->cfd, 503, "Service Unavailable", "draining\n");
		req_free(r);
		return;
	}
	r->entered = true;
	r->ctx = ms >= 0 ? rctx_with_timeout(root, ms * RCTX_MSEC)
			 : rctx_with_cancel(root);
	r->up = r->ctx ? rctx_with_timeout(r->ctx, UPSTREAM_CAP_MS * RCTX_MSEC)
		       : NULL;
	r->ufd = connect_to(up_port, true);
	if (r->up == NULL || r->ufd < 0) {
		if (r->up)
			rctx_release(r->up);
		if (r->ctx)
			rctx_release(r->ctx);
		r->ctx = r->up = NULL;
		reply(r->cfd, 500, "Internal Server Error", "");
		req_free(r);
		return;
	}
	r->w->live++;
	r->state = UP_WRITE;
	watch(r->w, EPOLL_CTL_ADD, r->ufd, EPOLLOUT,
	      (void *)((uintptr_t)r | TAG_UP));
	/* From here the request ends in req_done if up is done first. An
	 * already-done up (the root is draining) still ends there, at this
	 * loop's next rctx_loop_run. */
	if (rctx_loop_after_func(r->w->loop, r->up, &r->reg, req_done, r))
		abort(); /* cannot fail on our own live loop */
}

/* The request ended before its sub-call was done. */
static void
req_finish(struct req *r)
{
	if (r->ctx && !rctx_after_stop(&r->reg))
		abort(); /* req_done would have freed r: we cannot be here */
	write_all(r->cfd, r->out, r->outlen);
	atomic_fetch_add(&n_ok, 1);
	req_free(r);
}

static void
on_client(struct req *r, uint32_t ev)
{
	ssize_t n;

	if (r->state != READ_REQ) {
		/* Only a hang-up is expected now: the client is gone. */
		watch(r->w, EPOLL_CTL_DEL, r->cfd, 0, NULL);
		if (r->ctx == NULL) { /* the baseline: end it here */
			req_free(r);
			return;
		}
		rctx_cancel_cause(r->ctx, ECONNRESET); /* req_done follows */
		return;
	}
	n = read(r->cfd, r->in + r->inlen, sizeof(r->in) - 1 - r->inlen);
	if (n <= 0 || (ev & (EPOLLHUP | EPOLLERR))) {
		if (n < 0 && errno == EAGAIN)
			return;
		req_free(r);
		return;
	}
	r->inlen += (size_t)n;
	r->in[r->inlen] = 0;
	if (strstr(r->in, "\r\n\r\n")) {
		r->state = UP_WRITE;
		/* Keep watching for the client hanging up. */
		watch(r->w, EPOLL_CTL_MOD, r->cfd, EPOLLRDHUP, r);
		req_start(r);
	} else if (r->inlen == sizeof(r->in) - 1) {
		reply(r->cfd, 431, "Request Header Fields Too Large", "");
		req_free(r);
	}
}

static void
on_upstream(struct req *r)
{
	ssize_t n;

	if (r->state == UP_WRITE) {
		char buf[128];
		int len =
		    snprintf(buf, sizeof(buf),
			     "GET /sleep/%d HTTP/1.1\r\nHost: upstream\r\n"
			     "Connection: close\r\n\r\n",
			     r->sleep_ms);

		write_all(r->ufd, buf, (size_t)len); /* small: one write */
		r->state = UP_READ;
		watch(r->w, EPOLL_CTL_MOD, r->ufd, EPOLLIN,
		      (void *)((uintptr_t)r | TAG_UP));
		return;
	}
	n = read(r->ufd, r->out + r->outlen, sizeof(r->out) - r->outlen);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0 && r->outlen + (size_t)n < sizeof(r->out)) {
		r->outlen += (size_t)n;
		return;
	}
	req_finish(r); /* EOF (or error, or full): relay what we have */
}

static void
on_accept(struct worker *w)
{
	for (;;) {
		int fd =
		    accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct req *r;

		if (fd < 0)
			return;
		r = calloc(1, sizeof(*r));
		if (r == NULL) {
			close(fd);
			return;
		}
		r->w = w;
		r->cfd = fd;
		r->ufd = -1;
		r->next = w->conns;
		if (w->conns)
			w->conns->prev = r;
		w->conns = r;
		watch(w, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, r);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	bool stopping = false;

	w->loop = rctx_loop_new();
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->loop == NULL || w->ep < 0)
		abort();
	watch(w, EPOLL_CTL_ADD, rctx_loop_fd(w->loop), EPOLLIN, &w->loop);
	watch(w, EPOLL_CTL_ADD, w->lfd, EPOLLIN | EPOLLEXCLUSIVE, &w->lfd);
	watch(w, EPOLL_CTL_ADD, stop_fd, EPOLLIN, &stop_fd);
	while (!(stopping && w->live == 0)) {
		struct epoll_event ev[64];
		int n =
		    epoll_wait(w->ep, ev, 64, rctx_loop_timeout_ms(w->loop));

		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;

			if (p == &w->loop)
				continue; /* rctx_loop_run below */
			if (p == &w->lfd) {
				on_accept(w);
			} else if (p == &stop_fd) {
				stopping = true; /* no new connections */
				watch(w, EPOLL_CTL_DEL, w->lfd, 0, NULL);
				watch(w, EPOLL_CTL_DEL, stop_fd, 0, NULL);
			} else if ((uintptr_t)p & TAG_UP) {
				struct req *r =
				    (void *)((uintptr_t)p & ~TAG_UP);

				if (!r->dead)
					on_upstream(r);
			} else if (!((struct req *)p)->dead) {
				on_client(p, ev[i].events);
			}
		}
		/* Fire due deadlines, then run the loop after-funcs queued for
		 * this worker (by any thread). */
		rctx_loop_run(w->loop, rctx_now());
		bury(w);
	}
	while (w->conns) /* connections that never sent a request */
		req_free(w->conns);
	bury(w);
	close(w->ep);
	rctx_loop_free(w->loop);
	return NULL;
}

static int
cmp_time(const void *a, const void *b)
{
	rctx_time_t x = *(const rctx_time_t *)a, y = *(const rctx_time_t *)b;

	return (x > y) - (x < y);
}

static void
report_lateness(FILE *out)
{
	long n = atomic_load(&n_late);

	if (n > LATE_MAX)
		n = LATE_MAX;
	if (n == 0)
		return;
	qsort(late, (size_t)n, sizeof(late[0]), cmp_time);
	fprintf(out, "lateness n %ld p50_us %.1f p99_us %.1f max_us %.1f\n", n,
		late[n / 2] / 1e3, late[n * 99 / 100] / 1e3, late[n - 1] / 1e3);
}

/* Serve until SIGTERM; report on `out`; 0 if the drain left nothing. */
static int
serve(int port, FILE *out)
{
	struct worker w[WORKERS];
	int lfd = listen_on(port, SOCK_NONBLOCK), ulfd = listen_on(0, 0), sig;
	pthread_t up_th;
	sigset_t set;
	rctx_stats_t st;
	int joined;
	bool clean;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits it */
	signal(SIGPIPE, SIG_IGN);
	stop_fd = eventfd(0, EFD_CLOEXEC);
	if (lfd < 0 || ulfd < 0 || stop_fd < 0)
		return 2;
	up_port = port_of(ulfd);
	rctx_stats(&st, sizeof(st));
	live_base = st.live + 1; /* and the drain's own context */
	if (rctx_drain_init(&drain, rctx_background()) != 0)
		return 2;
	root = rctx_drain_ctx(&drain);
	pthread_create(&up_th, NULL, up_main, (void *)(intptr_t)ulfd);
	for (int i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ .lfd = lfd };
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	fprintf(out, "proxy %d\n", port_of(lfd));
	fflush(out);

	/* This thread handles signals. Cancelling the root here runs no
	 * request code on this thread: each request's after-func runs on
	 * its own worker, ends the request and leaves the drain. */
	while (sigwait(&set, &sig) != 0)
		;
	joined = rctx_drain_cancel_join(&drain, DRAIN_BOUND_MS * RCTX_MSEC);
	if (joined != 0) { /* a request ignored the cancel: give up on it */
		fprintf(out, "drain: %s after %d ms\n", strerror(-joined),
			DRAIN_BOUND_MS);
		fflush(out);
		_exit(1);
	}
	eventfd_write(stop_fd, 1); /* no new connections */
	for (int i = 0; i < WORKERS; i++)
		pthread_join(w[i].th, NULL);
	close(lfd);
	/* Every upstream fd is closed: its handler sees EOF and ends. */
	while (atomic_load(&up_live) > 0)
		usleep(1000);
	shutdown(ulfd, SHUT_RDWR);
	pthread_join(up_th, NULL);
	close(ulfd);
	close(stop_fd);
	if (rctx_drain_destroy(&drain) != 0)
		abort(); /* nothing can enter once the workers are gone */
	/* What the drain left: every context made since start is freed. */
	rctx_stats(&st, sizeof(st));
	rctx_shutdown(); /* no library thread or memory left either */
	clean = st.live == live_base - 1 && atomic_load(&n_early) == 0;
	fprintf(out,
		"ok %ld timeout %ld early %ld gone %ld drained %ld bad %ld "
		"up_closed %ld up_cut %ld live %ld join %d\n",
		atomic_load(&n_ok), atomic_load(&n_timeout),
		atomic_load(&n_early), atomic_load(&n_gone),
		atomic_load(&n_drained), atomic_load(&n_bad),
		atomic_load(&n_up_closed), atomic_load(&up_cut),
		(long)(st.live - (live_base - 1)), joined);
	report_lateness(out);
	fflush(out);
	return clean ? 0 : 1;
}

/* ---- self-test ---------------------------------------------------------- */

static int proxy_port;
static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__,          \
				__LINE__, #cond);                              \
			failures++;                                            \
		}                                                              \
	} while (0)

/* One request; returns the status code (0: no answer). */
static int
get(const char *path, long timeout_ms, char *body, size_t cap)
{
	char buf[RESP_MAX];
	int fd = connect_to(proxy_port, false), code = 0, len;
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	len = timeout_ms < 0
		  ? snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\n\r\n", path)
		  : snprintf(buf, sizeof(buf),
			     "GET %s HTTP/1.1\r\nX-Timeout-Ms: %ld\r\n\r\n",
			     path, timeout_ms);
	write_all(fd, buf, (size_t)len);
	while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = 0;
	close(fd);
	if (sscanf(buf, "HTTP/1.1 %d", &code) != 1)
		return 0;
	if (body) {
		const char *b = strstr(buf, "\r\n\r\n");

		snprintf(body, cap, "%s", b ? b + 4 : "");
	}
	return code;
}

static long
live_requests(void)
{
	char body[64];
	long n = -1;

	if (get("/stats", -1, body, sizeof(body)) == 200)
		sscanf(body, "live %ld", &n);
	return n;
}

struct call {
	pthread_t th;
	const char *path;
	long timeout_ms;
	int code;
};

static void *
call_main(void *arg)
{
	struct call *c = arg;

	c->code = get(c->path, c->timeout_ms, NULL, 0);
	return NULL;
}

static int
self_test(void)
{
	struct call many[8],
	    inflight = { .path = "/sleep/60000", .timeout_ms = -1 };
	char body[128], report[256] = "";
	int pipefd[2], status = 0, fd;
	rctx_time_t t0, dt;
	long v[10] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1 };
	FILE *in;
	pid_t pid;

	alarm(60); /* a hang fails the test */
	if (pipe(pipefd) < 0)
		return 2;
	pid = fork();
	if (pid == 0) {
		FILE *out = fdopen(pipefd[1], "w");

		alarm(60); /* alarms are not inherited */
		close(pipefd[0]);
		_exit(serve(0, out));
	}
	close(pipefd[1]);
	in = fdopen(pipefd[0], "r");
	if (fscanf(in, "proxy %d", &proxy_port) != 1)
		return 2;

	/* A fast call within its deadline. */
	CHECK(get("/sleep/5", 2000, body, sizeof(body)) == 200);
	CHECK(strcmp(body, "slept 5\n") == 0);
	/* No header: no deadline of its own. */
	CHECK(get("/sleep/1", -1, NULL, 0) == 200);
	/* A slow upstream: 504 at the deadline, never before it. */
	t0 = rctx_now();
	CHECK(get("/sleep/20000", 100, NULL, 0) == 504);
	dt = rctx_now() - t0;
	CHECK(dt >= 100 * RCTX_MSEC);
	CHECK(dt < 20000 * RCTX_MSEC);
	/* A bad request. */
	CHECK(get("/nowhere", 1000, NULL, 0) == 400);
	/* The client goes away: the proxy cancels and closes upstream. */
	fd = connect_to(proxy_port, false);
	write_all(fd, "GET /sleep/20000 HTTP/1.1\r\n\r\n", 30);
	while (live_requests() < 1)
		usleep(1000);
	close(fd);
	while (live_requests() != 0)
		usleep(1000);
	/* Concurrent calls, each within its deadline. */
	for (int i = 0; i < 8; i++) {
		many[i] =
		    (struct call){ .path = "/sleep/10", .timeout_ms = 5000 };
		pthread_create(&many[i].th, NULL, call_main, &many[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(many[i].th, NULL);
		CHECK(many[i].code == 200);
	}
	/* The server may answer before it releases a call's contexts: wait
	 * until they are gone, or the wait below could see one of theirs
	 * and signal before the next call arrives (seen once under load). */
	while (live_requests() != 0)
		usleep(1000);
	/* In flight at SIGTERM: the drain answers it 503. */
	pthread_create(&inflight.th, NULL, call_main, &inflight);
	while (live_requests() < 1)
		usleep(1000);
	kill(pid, SIGTERM);
	pthread_join(inflight.th, NULL);
	CHECK(inflight.code == 503);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	while (fgets(report, sizeof(report), in) && report[0] != 'o')
		; /* the rest of the "proxy" line */
	fclose(in);
	printf("server: %s", report);
	CHECK(
	    sscanf(report,
		   "ok %ld timeout %ld early %ld gone %ld drained %ld bad %ld "
		   "up_closed %ld up_cut %ld live %ld join %ld",
		   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
		   &v[8], &v[9]) == 10);
	CHECK(v[0] == 10 && v[1] == 1 && v[2] == 0 && v[3] == 1 && v[4] == 1);
	CHECK(v[5] == 1);
	/* every after-func closed its upstream, and upstream saw each cut */
	CHECK(v[6] == 3 && v[7] == 3);
	/* the drain saw every request leave, and rctx_stats counts no
	 * context left behind */
	CHECK(v[9] == 0);
	CHECK(v[8] == 0);
	printf("%s\n", failures ? "FAILED" : "all checks passed");
	return failures ? 1 : 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--serve-plain") == 0)
		use_rctx = false;
	if (argc >= 2 && (strcmp(argv[1], "--serve") == 0 || !use_rctx))
		return serve(argc >= 3 ? atoi(argv[2]) : 0, stdout);
	return self_test();
}
