/* SPDX-License-Identifier: MIT */
/* Resident memory before, at the peak of, and after a released context spike. */

/*
 * Three spikes, each in a process of its own (forked before the library is
 * used), none followed by rctx_shutdown:
 *
 *	children	N children of one cancelable parent; the parent is
 *			cancelled, then every context released
 *	deadlines	N contexts with a deadline an hour away, each
 *			cancelled and released
 *	chain		a chain of M contexts, each the child of the one
 *			before; the root is cancelled, then all released
 *
 * For each: RSS just before the spike, at its peak (every context live),
 * and then sampled every 50 ms for --settle-ms after the last release.
 * "back" is the first sample within 32 MB of the level before the spike
 * (-1: never within the settle time). Output: a table on stderr and one
 * JSON line per spike on stdout.
 *
 * Usage: rss-spike [--n N] [--chain M] [--settle-ms MS]
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rctx.h"

#define MB	    (1024.0 * 1024.0)
#define BACK_WITHIN (32 * MB)
#define SAMPLE_MS   50

static double
rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, res = 0;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static rctx_t **
must_array(size_t n)
{
	rctx_t **v = calloc(n, sizeof(*v));

	if (v == NULL) {
		perror("rss-spike: calloc");
		exit(1);
	}
	return v;
}

static rctx_t *
must(rctx_t *c, const char *what)
{
	if (c == NULL) {
		fprintf(stderr, "rss-spike: %s: %s\n", what, strerror(errno));
		exit(1);
	}
	return c;
}

/* Each spike makes its contexts, returns the peak RSS, releases them. */
static double
spike_children(size_t n)
{
	rctx_t *parent = must(rctx_with_cancel(rctx_background()), "parent");
	rctx_t **v = must_array(n);
	double peak;

	for (size_t i = 0; i < n; i++)
		v[i] = must(rctx_with_cancel(parent), "child");
	peak = rss_bytes();
	rctx_cancel(parent);
	for (size_t i = 0; i < n; i++)
		rctx_release(v[i]);
	rctx_release(parent);
	free(v);
	return peak;
}

static double
spike_deadlines(size_t n)
{
	rctx_t **v = must_array(n);
	double peak;

	for (size_t i = 0; i < n; i++)
		v[i] =
		    must(rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC),
			 "deadline");
	peak = rss_bytes();
	for (size_t i = 0; i < n; i++) {
		rctx_cancel(v[i]);
		rctx_release(v[i]);
	}
	free(v);
	return peak;
}

static double
spike_chain(size_t n)
{
	rctx_t **v = must_array(n);
	rctx_t *p = rctx_background();
	double peak;

	for (size_t i = 0; i < n; i++)
		p = v[i] = must(rctx_with_cancel(p), "link");
	peak = rss_bytes();
	rctx_cancel(v[0]);
	for (size_t i = n; i-- > 0;)
		rctx_release(v[i]);
	free(v);
	return peak;
}

struct spike {
	const char *name;
	double (*run)(size_t n);
	size_t n;
};

/* In a forked child: one spike, its table row and JSON line. */
static int
measure(const struct spike *sp, long settle_ms)
{
	double before, peak, after = 0;
	long back = -1;

	/* Warm the library up (its threads, caches) before the level. */
	rctx_release(
	    must(rctx_with_timeout(rctx_background(), RCTX_SEC), "warm-up"));
	before = rss_bytes();
	peak = sp->run(sp->n);
	for (long t = 0; t <= settle_ms; t += SAMPLE_MS) {
		after = rss_bytes();
		if (back < 0 && after - before <= BACK_WITHIN)
			back = t;
		if (t < settle_ms)
			sleep_ms(SAMPLE_MS);
	}
	fprintf(stderr, "%-10s %9zu %9.1f %9.1f %9.1f %9.1f %8ld\n", sp->name,
		sp->n, before / MB, peak / MB, after / MB,
		(after - before) / MB, back);
	printf("{\"spike\":\"%s\",\"contexts\":%zu,\"before_mb\":%.1f,"
	       "\"peak_mb\":%.1f,\"after_mb\":%.1f,\"settle_ms\":%ld,"
	       "\"back_ms\":%ld}\n",
	       sp->name, sp->n, before / MB, peak / MB, after / MB, settle_ms,
	       back);
	fflush(stdout);
	return after - before > BACK_WITHIN;
}

int
main(int argc, char **argv)
{
	size_t n = 1000000, chain = 200000;
	long settle_ms = 2000;
	int bad = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--chain") == 0 && i + 1 < argc)
			chain = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--settle-ms") == 0 && i + 1 < argc)
			settle_ms = strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: rss-spike [--n N] [--chain M] "
					"[--settle-ms MS]\n");
			return 2;
		}
	}

	const struct spike spikes[] = {
		{ "children", spike_children, n },
		{ "deadlines", spike_deadlines, n },
		{ "chain", spike_chain, chain },
	};

	fprintf(stderr, "%-10s %9s %9s %9s %9s %9s %8s\n", "spike", "contexts",
		"before", "peak", "after", "excess", "back");
	fprintf(stderr, "%-10s %9s %9s %9s %9s %9s %8s\n", "", "", "MB", "MB",
		"MB", "MB", "ms");
	fflush(stdout);
	for (size_t s = 0; s < sizeof(spikes) / sizeof(spikes[0]); s++) {
		int st;
		pid_t pid = fork();

		if (pid < 0) {
			perror("rss-spike: fork");
			return 1;
		}
		if (pid == 0)
			_exit(measure(&spikes[s], settle_ms));
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			bad = 1;
	}
	return bad;
}
