/* SPDX-License-Identifier: MIT */
/* Deadline lateness (fire time - deadline) with 1k, 100k and 1M live timers. */

/*
 * For each population size N, N deadline contexts are made under the
 * background root, each with a deadline `lead + U(0, window)` after its
 * creation (lead is longer than it takes to make them all, so all N are
 * live when the first ones expire). Each carries an after-func that reads
 * the clock when it runs, on the thread that expired the context. The
 * sample is (that time - requested deadline).
 *
 * A sample below zero means a deadline fired early: the program counts
 * them and exits 1 if there is any, as it does if a timer is lost (not
 * fired within window + 10 s) or a context expires with an error other
 * than ETIMEDOUT.
 *
 * Output: one JSON line per library and size on stdout; with --raw DIR,
 * sorted samples (at most 100,000, evenly strided) in
 * DIR/deadline-lateness-<lib>-<N>.txt.
 * Usage: deadline-lateness [--max N] [--raw DIR]
 */

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static int
run(const struct plib *lib, const struct size_plan *pl, const char *raw)
{
	size_t n = pl->n, early = 0, lost = 0, wrong = 0, got, m = 0;
	struct rec *recs = calloc(n, sizeof(*recs));
	int64_t *late = calloc(n, sizeof(*late));
	int64_t t_start, t_made, give_up;
	struct pstats st;
	char name[128];
	int rc = 0;

	if (recs == NULL || late == NULL) {
		fprintf(stderr, "deadline-lateness: out of memory\n");
		exit(2);
	}
	/* relaxed: no timer of this round exists yet */
	atomic_store_explicit(&nfired, 0, memory_order_relaxed);
	t_start = lib->now();
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &recs[i];
		int64_t d = lib->now() + pl->lead +
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
	give_up = t_made + pl->lead + pl->window + 10 * RCTX_SEC;
	/* acquire: every counted fire's fields; pairs with on_fire */
	while ((got = atomic_load_explicit(&nfired, memory_order_acquire)) <
	       n) {
		if (lib->now() > give_up)
			break;
		sleep_ms(5);
	}
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &recs[i];

		/* a fire still missing is lost: stop it before reading */
		if (got < n && lib->after_stop(&r->reg)) {
			lost++;
			continue;
		}
		late[m] = r->fired - r->deadline;
		if (late[m++] < 0)
			early++;
		if (r->err != ETIMEDOUT)
			wrong++;
	}
	for (size_t i = 0; i < n; i++)
		lib->release(recs[i].ctx);

	pstats_compute(late, m, &st);
	printf("{\"bench\":\"deadline-lateness\",\"lib\":\"%s\","
	       "\"timers\":%zu,\"label\":\"%s\",\"create_ns_per_timer\":%.1f,"
	       "\"early\":%zu,\"lost\":%zu,\"wrong_err\":%zu,",
	       lib->name, n, pl->label, (double)(t_made - t_start) / (double)n,
	       early, lost, wrong);
	pstats_print(stdout, &st);
	printf("}\n");
	fflush(stdout);
	if (early != 0 || lost != 0 || wrong != 0) {
		fprintf(stderr,
			"deadline-lateness: %s/%s: %zu early, %zu lost, "
			"%zu wrong err\n",
			lib->name, pl->label, early, lost, wrong);
		rc = 1;
	}
	if (t_made - t_start > pl->lead)
		fprintf(stderr,
			"deadline-lateness: %s/%s: making the timers took "
			"longer than the lead; fewer than %zu were live\n",
			lib->name, pl->label, n);
	snprintf(name, sizeof(name), "deadline-lateness-%s-%s.txt", lib->name,
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

static void
usage(void)
{
	fprintf(stderr, "usage: deadline-lateness [--max N] [--raw DIR]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	size_t max = SIZE_MAX;
	const char *raw = NULL;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--raw") == 0 && i + 1 < argc)
			raw = argv[++i];
		else
			usage();
	}
	for (size_t l = 0; l < PLIB_COUNT; l++) {
		for (size_t p = 0; p < sizeof(plans) / sizeof(plans[0]); p++)
			if (plans[p].n <= max)
				rc |= run(plibs[l], &plans[p], raw);
		plibs[l]->shutdown();
	}
	return rc;
}
