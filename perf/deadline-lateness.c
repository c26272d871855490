/* SPDX-License-Identifier: MIT */
/* Deadline lateness (fire time - deadline) with 1k, 100k and 1M live timers. */

/*
 * For each population size N, N deadline contexts are made under the
 * background root, each with a deadline `lead + U(0, window)` after its
 * creation (lead is longer than it takes to make them all, so all N are
 * live when the first ones expire: the plan's lead, or eight times the
 * time making N is expected to take, from a timed batch made and
 * cancelled beforehand, if that is longer on a loaded machine). Timers
 * due before the last one was made (a machine too loaded even for that)
 * are checked like the others but left out of the lateness sample: a loop
 * busy making timers does not expire them. Each carries an after-func that reads
 * the clock when it runs, on the thread that expired the context. The
 * sample is (that time - requested deadline).
 *
 * A sample below zero means a deadline fired early: the program counts
 * them and exits 1 if there is any, as it does if a timer is lost (not
 * fired within window + 10 s) or a context expires with an error other
 * than ETIMEDOUT.
 *
 * Two modes. "threads": the contexts are made on a thread that owns no
 * loop, so library timer threads expire them (rctx and the mutex
 * baseline). "loop": rctx only; the thread that makes them owns an
 * rctx_loop and expires them itself, sleeping in rctx_loop_epoll_wait
 * and calling rctx_loop_run when it wakes, as an event loop would. Built
 * with -DPERF_LOOP_MS it sleeps in epoll_wait on rctx_loop_timeout_ms
 * instead (for measuring trees older than rctx_loop_epoll_wait).
 *
 * Output: one JSON line per library, mode and size on stdout (the loop
 * mode's lib is "rctx-loop"; "sleeps" counts the process's voluntary
 * context switches while the timers fired); with --raw DIR, sorted
 * samples (at most 100,000, evenly strided) in
 * DIR/deadline-lateness-<lib>-<N>.txt.
 * Usage: deadline-lateness [--max N] [--mode threads|loop] [--raw DIR]
 */

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "plib.h"
#include "pstats.h"

struct rec {
	union plib_after reg;
	const struct plib *lib;
	void *ctx;
	int64_t deadline;
	int64_t fired;
	int err;
};

static _Atomic size_t nfired;

static void
on_fire(void *arg)
{
	struct rec *r = arg;

	r->fired = r->lib->now();
	r->err = r->lib->err(r->ctx);
	/* release: publishes fired/err; pairs with the acquire in run */
	atomic_fetch_add_explicit(&nfired, 1, memory_order_release);
}

/* A cheap, fixed pseudo-random spread (splitmix64). */
static uint64_t
mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct size_plan {
	size_t n;
	const char *label;
	int64_t lead;	/* after creation, before the window opens */
	int64_t window; /* deadlines spread uniformly over this */
};

static const struct size_plan plans[] = {
	{ 1000, "1k", 20 * RCTX_MSEC, 200 * RCTX_MSEC },
	{ 100000, "100k", 400 * RCTX_MSEC, 1000 * RCTX_MSEC },
	{ 1000000, "1M", 3000 * RCTX_MSEC, 2000 * RCTX_MSEC },
};

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The loop-mode round's loop, or NULL in threads mode. */
static rctx_loop_t *loop_of_round;
static int loop_ep = -1;

/* Loop mode: sleep to the loop's next deadline (or a loop fd event),
 * then expire what is due. Returns false when nothing is left to wait
 * for. */
static bool
loop_turn(void)
{
	struct epoll_event ev[4];
	int rc;

	if (rctx_loop_next(loop_of_round) < 0)
		return false;
#ifdef PERF_LOOP_MS
	rc = epoll_wait(loop_ep, ev, 4, rctx_loop_timeout_ms(loop_of_round));
	if (rc < 0)
		rc = -errno;
#else
	rc = rctx_loop_epoll_wait(loop_of_round, loop_ep, ev, 4);
#endif
	if (rc < 0 && rc != -EINTR) {
		fprintf(stderr, "deadline-lateness: epoll: %s\n",
			strerror(-rc));
		exit(2);
	}
	if (rctx_loop_run(loop_of_round, rctx_now()) < 0) {
		fprintf(stderr, "deadline-lateness: rctx_loop_run failed\n");
		exit(2);
	}
	return true;
}

/* Eight times the expected time to make n timers, from a batch made (all
 * live at once, far deadlines) and cancelled now. */
static int64_t
calibrated_lead(const struct plib *lib, size_t n)
{
	enum { BATCH = 8192 };
	static union plib_after reg[BATCH];
	static void *c[BATCH];
	int64_t t0 = lib->now(), per;

	for (size_t i = 0; i < BATCH; i++) {
		c[i] = lib->with_deadline(lib->background(),
					  lib->now() + 3600 * RCTX_SEC);
		if (c[i] == NULL ||
		    lib->after_func(c[i], &reg[i], on_fire, NULL) != 0) {
			fprintf(stderr, "deadline-lateness: calibration\n");
			exit(2);
		}
	}
	per = (lib->now() - t0) / BATCH;
	for (size_t i = 0; i < BATCH; i++) {
		lib->after_stop(&reg[i]);
		lib->cancel(c[i]);
		lib->release(c[i]);
	}
	return 8 * per * (int64_t)n;
}

static int
run(const struct plib *lib, const char *label, const struct size_plan *pl,
    const char *raw)
{
	size_t n = pl->n, early = 0, lost = 0, wrong = 0, skipped = 0, got,
	       m = 0;
	struct rec *recs = calloc(n, sizeof(*recs));
	int64_t *late = calloc(n, sizeof(*late));
	struct rusage ru0, ru1;
	int64_t t_start, t_made, give_up, lead = calibrated_lead(lib, n);
	struct pstats st;
	char name[128];
	int rc = 0;

	if (recs == NULL || late == NULL) {
		fprintf(stderr, "deadline-lateness: out of memory\n");
		exit(2);
	}
	if (lead < pl->lead)
		lead = pl->lead;
	/* relaxed: no timer of this round exists yet */
	atomic_store_explicit(&nfired, 0, memory_order_relaxed);
	t_start = lib->now();
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &recs[i];
		int64_t d = lib->now() + lead +
			    (int64_t)(mix(i) % (uint64_t)pl->window);

		r->lib = lib;
		r->deadline = d;
		r->ctx = lib->with_deadline(lib->background(), d);
		if (r->ctx == NULL) {
			perror("deadline-lateness: with_deadline");
			exit(2);
		}
		if (lib->after_func(r->ctx, &r->reg, on_fire, r) != 0) {
			fprintf(stderr, "deadline-lateness: after_func\n");
			exit(2);
		}
	}
	t_made = lib->now();
	getrusage(RUSAGE_SELF, &ru0);
	give_up = t_made + lead + pl->window + 10 * RCTX_SEC;
	/* acquire: every counted fire's fields; pairs with on_fire */
	while ((got = atomic_load_explicit(&nfired, memory_order_acquire)) <
	       n) {
		if (lib->now() > give_up)
			break;
		if (loop_of_round == NULL)
			sleep_ms(5);
		else if (!loop_turn())
			break;
	}
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &recs[i];

		/* a fire still missing is lost: stop it before reading */
		if (got < n && lib->after_stop(&r->reg)) {
			lost++;
			continue;
		}
		if (r->fired < r->deadline)
			early++;
		if (r->err != ETIMEDOUT)
			wrong++;
		/* due while timers were still being made: not a sample */
		if (r->deadline < t_made)
			skipped++;
		else
			late[m++] = r->fired - r->deadline;
	}
	for (size_t i = 0; i < n; i++)
		lib->release(recs[i].ctx);

	getrusage(RUSAGE_SELF, &ru1);
	pstats_compute(late, m, &st);
	printf("{\"bench\":\"deadline-lateness\",\"lib\":\"%s\","
	       "\"timers\":%zu,\"label\":\"%s\",\"create_ns_per_timer\":%.1f,"
	       "\"lead_ms\":%.1f,\"due_while_making\":%zu,\"early\":%zu,"
	       "\"lost\":%zu,\"wrong_err\":%zu,\"sleeps\":%ld,",
	       label, n, pl->label, (double)(t_made - t_start) / (double)n,
	       (double)lead / 1e6, skipped, early, lost, wrong,
	       ru1.ru_nvcsw - ru0.ru_nvcsw);
	pstats_print(stdout, &st);
	printf("}\n");
	fflush(stdout);
	if (early != 0 || lost != 0 || wrong != 0) {
		fprintf(stderr,
			"deadline-lateness: %s/%s: %zu early, %zu lost, "
			"%zu wrong err\n",
			label, pl->label, early, lost, wrong);
		rc = 1;
	}
	if (t_made - t_start > lead)
		fprintf(stderr,
			"deadline-lateness: %s/%s: making the timers took "
			"longer than the lead; %zu due before all %zu were "
			"live are left out of the sample\n",
			label, pl->label, skipped, n);
	snprintf(name, sizeof(name), "deadline-lateness-%s-%s.txt", label,
		 pl->label);
	if (pstats_write_raw(raw, name, late, m, 100000) != 0) {
		fprintf(stderr, "deadline-lateness: cannot write %s/%s\n", raw,
			name);
		rc = 1;
	}
	free(late);
	free(recs);
	return rc;
}

/* One loop-mode round on the calling thread, which owns the loop. */
static int
run_loop(const struct size_plan *pl, const char *raw)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int rc;

	loop_of_round = rctx_loop_new();
	loop_ep = epoll_create1(EPOLL_CLOEXEC);
	if (loop_of_round == NULL || loop_ep < 0 ||
	    epoll_ctl(loop_ep, EPOLL_CTL_ADD, rctx_loop_fd(loop_of_round),
		      &ev) != 0) {
		perror("deadline-lateness: loop setup");
		exit(2);
	}
	rc = run(&rctx_plib, "rctx-loop", pl, raw);
	rctx_loop_free(loop_of_round);
	loop_of_round = NULL;
	close(loop_ep);
	loop_ep = -1;
	return rc;
}

static void
usage(void)
{
	fprintf(stderr, "usage: deadline-lateness [--max N] "
			"[--mode threads|loop] [--raw DIR]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	size_t max = SIZE_MAX;
	const char *raw = NULL, *mode = NULL;
	size_t nplans = sizeof(plans) / sizeof(plans[0]);
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--raw") == 0 && i + 1 < argc)
			raw = argv[++i];
		else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
			mode = argv[++i];
		else
			usage();
	}
	if (mode != NULL && strcmp(mode, "threads") != 0 &&
	    strcmp(mode, "loop") != 0)
		usage();
	for (size_t l = 0; l < PLIB_COUNT; l++) {
		if (mode != NULL && strcmp(mode, "threads") != 0)
			break;
		for (size_t p = 0; p < nplans; p++)
			if (plans[p].n <= max)
				rc |= run(plibs[l], plibs[l]->name, &plans[p],
					  raw);
		plibs[l]->shutdown();
	}
	if (mode == NULL || strcmp(mode, "loop") == 0) {
		for (size_t p = 0; p < nplans; p++)
			if (plans[p].n <= max)
				rc |= run_loop(&plans[p], raw);
		rctx_shutdown();
	}
	return rc;
}
