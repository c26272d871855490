/* SPDX-License-Identifier: MIT */
/* Cancel-to-seen latency on another thread: rctx_wait, rctx_fd in epoll, polling. */

/*
 * One trial: the main thread makes a context and hands it to the observer
 * thread, which gets ready to observe it in one of three ways and says so:
 *
 *	wait	blocked in rctx_wait(ctx, forever)
 *	fd	blocked in epoll_wait on rctx_fd(ctx)
 *	poll	spinning on rctx_done(ctx)
 *
 * The main thread lets it settle (so a blocking observer is really asleep),
 * reads the clock, cancels, and the observer reads the clock as soon as
 * it sees the context done. The sample is the difference: it includes the
 * cancel itself, the wake-up and the scheduler.
 *
 * A wake-up that finds the context not done yet breaks the contract
 * ("polls readable once ctx is done"): such early wakes are counted, the
 * observer then spins until done is visible (that is the sample), and the
 * program exits 1.
 *
 * Output: one JSON line per library and mode on stdout; with --raw DIR,
 * the sorted samples in DIR/cancel-latency-<lib>-<mode>.txt.
 * Usage: cancel-latency [--trials N] [--settle-us N] [--raw DIR]
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "plib.h"
#include "pstats.h"

enum mode { MODE_WAIT, MODE_FD, MODE_POLL, MODE_COUNT };

static const char *const mode_names[MODE_COUNT] = { "wait", "fd", "poll" };

struct shared {
	const struct plib *lib;
	enum mode mode;
	int epfd;
	void *ctx;		/* written before seq is published */
	_Atomic uint64_t seq;	/* trial number the main thread started */
	_Atomic uint64_t ready; /* trial the observer is about to observe */
	_Atomic uint64_t seen;	/* trial the observer has seen done */
	_Atomic bool quit;
	int64_t t_seen; /* written before seen is published */
	int error;	/* observer's failure, before seen */
	size_t early;	/* wakes before done; observer only until joined */
};

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Spin, yielding now and then so two spinners cannot starve each other. */
static inline void
spin_pause(unsigned *n)
{
	if (++*n % 1024 == 0)
		sched_yield();
	else
		cpu_relax();
}

static int
observe_one(struct shared *sh, void *ctx, uint64_t s)
{
	const struct plib *lib = sh->lib;
	struct epoll_event ev;
	int fd = -1, r;

	if (sh->mode == MODE_FD) {
		fd = lib->fd(ctx);
		if (fd < 0)
			return fd;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
			return -errno;
	}
	/* release: the epoll registration is in place; pairs with main's acquire */
	atomic_store_explicit(&sh->ready, s, memory_order_release);
	switch (sh->mode) {
	case MODE_WAIT:
		r = lib->wait(ctx, -1);
		if (r != ECANCELED)
			return -EPROTO;
		break;
	case MODE_FD:
		do
			r = epoll_wait(sh->epfd, &ev, 1, -1);
		while (r < 0 && errno == EINTR);
		if (r != 1)
			return r < 0 ? -errno : -EPROTO;
		break;
	default:
		/*
		 * Pure spin, no pause instruction: a yield, or a VM exit on
		 * pause-loop detection, would be measured as latency.
		 */
		while (!lib->done(ctx))
			;
		break;
	}
	sh->t_seen = lib->now();
	if (!lib->done(ctx)) {
		sh->early++;
		while (!lib->done(ctx))
			;
		sh->t_seen = lib->now();
	}
	if (fd >= 0 && epoll_ctl(sh->epfd, EPOLL_CTL_DEL, fd, NULL) != 0)
		return -errno;
	return 0;
}

static void *
observer(void *arg)
{
	struct shared *sh = arg;
	uint64_t last = 0, s;
	unsigned n = 0;

	for (;;) {
		/* acquire: sh->ctx was written before seq; pairs with main */
		while ((s = atomic_load_explicit(
			    &sh->seq, memory_order_acquire)) == last) {
			/* relaxed: only a stop flag, set after the last trial */
			if (atomic_load_explicit(&sh->quit,
						 memory_order_relaxed))
				return NULL;
			spin_pause(&n);
		}
		last = s;
		sh->error = observe_one(sh, sh->ctx, s);
		/* release: publishes t_seen and error; pairs with main */
		atomic_store_explicit(&sh->seen, s, memory_order_release);
	}
}

static void
busy_until(const struct plib *lib, int64_t t)
{
	while (lib->now() < t)
		cpu_relax();
}

static int
run(const struct plib *lib, enum mode mode, size_t trials, int64_t settle,
    const char *raw)
{
	struct shared sh;
	pthread_t th;
	int64_t *lat, *call;
	struct pstats st, cst;
	char name[128];
	int rc = 0;

	memset(&sh, 0, sizeof(sh));
	sh.lib = lib;
	sh.mode = mode;
	sh.epfd = epoll_create1(EPOLL_CLOEXEC);
	lat = calloc(trials, sizeof(*lat));
	call = calloc(trials, sizeof(*call));
	if (sh.epfd < 0 || lat == NULL || call == NULL) {
		perror("cancel-latency: setup");
		exit(2);
	}
	if (pthread_create(&th, NULL, observer, &sh) != 0) {
		fprintf(stderr, "cancel-latency: pthread_create failed\n");
		exit(2);
	}
	for (size_t i = 0; i < trials; i++) {
		uint64_t s = i + 1;
		void *c = lib->with_cancel(lib->background());
		unsigned n = 0;
		int64_t t0, t1;

		if (c == NULL) {
			perror("cancel-latency: with_cancel");
			exit(2);
		}
		sh.ctx = c;
		/* release: publishes sh.ctx; pairs with the observer's acquire */
		atomic_store_explicit(&sh.seq, s, memory_order_release);
		/* acquire: the observer's fd registration is done */
		while (atomic_load_explicit(&sh.ready, memory_order_acquire) !=
		       s) {
			/* acquire: an observer failure is published via seen */
			if (atomic_load_explicit(&sh.seen,
						 memory_order_acquire) == s)
				break;
			spin_pause(&n);
		}
		busy_until(lib, lib->now() + settle);
		t0 = lib->now();
		lib->cancel(c);
		t1 = lib->now();
		/* acquire: t_seen and error; pairs with the observer's release */
		while (atomic_load_explicit(&sh.seen, memory_order_acquire) !=
		       s)
			spin_pause(&n);
		lib->release(c);
		if (sh.error != 0) {
			fprintf(stderr, "cancel-latency: %s/%s: %s\n",
				lib->name, mode_names[mode],
				strerror(-sh.error));
			rc = 1;
			trials = i;
			break;
		}
		lat[i] = sh.t_seen - t0;
		call[i] = t1 - t0;
	}
	/* relaxed: the observer only needs to see it eventually */
	atomic_store_explicit(&sh.quit, true, memory_order_relaxed);
	pthread_join(th, NULL);
	close(sh.epfd);

	if (sh.early != 0) {
		fprintf(
		    stderr,
		    "cancel-latency: %s/%s: %zu of %zu wake-ups came before "
		    "the context was done\n",
		    lib->name, mode_names[mode], sh.early, trials);
		rc = 1;
	}
	pstats_compute(lat, trials, &st);
	pstats_compute(call, trials, &cst);
	printf("{\"bench\":\"cancel-latency\",\"lib\":\"%s\",\"mode\":\"%s\","
	       "\"settle_ns\":%lld,\"cancel_call_p50_ns\":%lld,"
	       "\"cancel_call_p99_ns\":%lld,\"early_wakes\":%zu,",
	       lib->name, mode_names[mode], (long long)settle,
	       (long long)cst.p50, (long long)cst.p99, sh.early);
	pstats_print(stdout, &st);
	printf("}\n");
	fflush(stdout);
	snprintf(name, sizeof(name), "cancel-latency-%s-%s.txt", lib->name,
		 mode_names[mode]);
	if (pstats_write_raw(raw, name, lat, trials, 100000) != 0) {
		fprintf(stderr, "cancel-latency: cannot write %s/%s\n", raw,
			name);
		rc = 1;
	}
	free(call);
	free(lat);
	return rc;
}

static void
usage(void)
{
	fprintf(stderr, "usage: cancel-latency [--trials N] [--settle-us N] "
			"[--raw DIR]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	size_t trials = 20000;
	int64_t settle = 20 * RCTX_USEC;
	const char *raw = NULL;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--trials") == 0 && i + 1 < argc)
			trials = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--settle-us") == 0 && i + 1 < argc)
			settle = strtoll(argv[++i], NULL, 10) * RCTX_USEC;
		else if (strcmp(argv[i], "--raw") == 0 && i + 1 < argc)
			raw = argv[++i];
		else
			usage();
	}
	if (trials == 0)
		usage();
	for (size_t l = 0; l < PLIB_COUNT; l++) {
		for (int m = 0; m < MODE_COUNT; m++)
			rc |= run(plibs[l], (enum mode)m, trials, settle, raw);
		plibs[l]->shutdown();
	}
	return rc;
}
