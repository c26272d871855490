/* SPDX-License-Identifier: MIT */
/* Percentiles, JSON lines and raw sample files for the perf/ programs. */
#ifndef RCTX_PERF_PSTATS_H
#define RCTX_PERF_PSTATS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pstats {
	size_t n;
	int64_t min, p50, p90, p99, p999, max;
	double mean;
};

static int
pstats_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array; q in (0, 1]. */
static int64_t
pstats_rank(const int64_t *v, size_t n, double q)
{
	size_t k = (size_t)(q * (double)n + 0.999999999);

	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/* Sorts v in place and fills *s. n may be 0 (all fields 0). */
static void
pstats_compute(int64_t *v, size_t n, struct pstats *s)
{
	double sum = 0;

	memset(s, 0, sizeof(*s));
	s->n = n;
	if (n == 0)
		return;
	qsort(v, n, sizeof(v[0]), pstats_cmp);
	for (size_t i = 0; i < n; i++)
		sum += (double)v[i];
	s->mean = sum / (double)n;
	s->min = v[0];
	s->p50 = pstats_rank(v, n, 0.50);
	s->p90 = pstats_rank(v, n, 0.90);
	s->p99 = pstats_rank(v, n, 0.99);
	s->p999 = pstats_rank(v, n, 0.999);
	s->max = v[n - 1];
}

/* The common tail of a JSON line: the statistics, in nanoseconds. */
static void
pstats_print(FILE *f, const struct pstats *s)
{
	fprintf(f,
		"\"samples\":%zu,\"min_ns\":%lld,\"p50_ns\":%lld,"
		"\"p90_ns\":%lld,\"p99_ns\":%lld,\"p999_ns\":%lld,"
		"\"max_ns\":%lld,\"mean_ns\":%.1f",
		s->n, (long long)s->min, (long long)s->p50, (long long)s->p90,
		(long long)s->p99, (long long)s->p999, (long long)s->max,
		s->mean);
}

/*
 * Write at most `limit` of the samples (evenly strided; v sorted or not)
 * to dir/name, one value in ns per line. Returns 0 or -errno.
 */
static int
pstats_write_raw(const char *dir, const char *name, const int64_t *v, size_t n,
		 size_t limit)
{
	char path[4096];
	size_t stride = n > limit ? (n + limit - 1) / limit : 1;
	FILE *f;

	if (dir == NULL)
		return 0;
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	for (size_t i = 0; i < n; i += stride)
		fprintf(f, "%lld\n", (long long)v[i]);
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

#endif /* RCTX_PERF_PSTATS_H */
