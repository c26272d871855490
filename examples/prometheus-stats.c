/* SPDX-License-Identifier: MIT */
/* Example: expose rctx_stats and rctx_metrics in Prometheus text format. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <rctx.h>

/*
 * A service would serve this text on GET /metrics; here we make some
 * contexts end in different ways first, then print it once. The format is
 * Prometheus' text exposition format 0.0.4: counters end in _total,
 * histograms have cumulative _bucket{le=...} lines, _sum and _count.
 */

/* Upper bound of log2 bucket b (see rctx.h): values below 2^b. */
static double
bucket_le(unsigned b)
{
	return b == 0 ? 0.0 : (double)((uint64_t)1 << b) - 1.0;
}

static void
histogram(const char *name, const char *help, const uint64_t *buckets,
	  uint64_t sum, double scale)
{
	uint64_t cum = 0;

	printf("# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (unsigned b = 0; b + 1 < RCTX_METRICS_BUCKETS; b++) {
		cum += buckets[b];
		printf("%s_bucket{le=\"%.9g\"} %" PRIu64 "\n", name,
		       bucket_le(b) * scale, cum);
	}
	cum += buckets[RCTX_METRICS_BUCKETS - 1];
	printf("%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	printf("%s_sum %.9g\n%s_count %" PRIu64 "\n", name, (double)sum * scale,
	       name, cum);
}

static void
ended(const char *err, const uint64_t *by_cause)
{
	for (unsigned c = 0; c <= RCTX_METRICS_CAUSES; c++) {
		if (by_cause[c] == 0)
			continue;
		if (c < RCTX_METRICS_CAUSES)
			printf(
			    "rctx_contexts_ended_total{err=\"%s\",cause=\"%u\"}"
			    " %" PRIu64 "\n",
			    err, c, by_cause[c]);
		else
			printf("rctx_contexts_ended_total{err=\"%s\","
			       "cause=\"other\"} %" PRIu64 "\n",
			       err, by_cause[c]);
	}
}

static int
print_metrics(void)
{
	rctx_stats_t s;
	rctx_metrics_t *m = malloc(sizeof(*m));

	if (m == NULL || rctx_stats(&s, sizeof(s)) != 0 ||
	    rctx_metrics(m, sizeof(*m)) != 0) {
		free(m);
		return -1;
	}
	printf("# HELP rctx_contexts_live Contexts made and not yet freed.\n"
	       "# TYPE rctx_contexts_live gauge\n"
	       "rctx_contexts_live %" PRIu64 "\n",
	       s.live);
	printf("# HELP rctx_contexts_created_total Contexts made.\n"
	       "# TYPE rctx_contexts_created_total counter\n"
	       "rctx_contexts_created_total %" PRIu64 "\n",
	       s.created);
	printf("# HELP rctx_timers_armed Deadlines armed, not fired or "
	       "withdrawn.\n"
	       "# TYPE rctx_timers_armed gauge\n"
	       "rctx_timers_armed %" PRIu64 "\n",
	       s.timers);
	printf("# HELP rctx_contexts_ended_total Cancelable contexts ended, by "
	       "how.\n"
	       "# TYPE rctx_contexts_ended_total counter\n");
	ended("ECANCELED", m->cancelled_by_cause);
	ended("ETIMEDOUT", m->timed_out_by_cause);
	printf("rctx_contexts_ended_total{err=\"none\",cause=\"released\"} "
	       "%" PRIu64 "\n",
	       m->released_live);
	histogram("rctx_deadline_lateness_seconds",
		  "Time from a deadline to the fire that timed it out.",
		  m->lateness, m->lateness_sum_ns, 1e-9);
	histogram("rctx_cancel_cascade_contexts",
		  "Contexts one cancel made done, itself included.", m->cascade,
		  m->cascade_sum, 1.0);
	free(m);
	return 0;
}

int
main(void)
{
	rctx_t *req[3], *kids[10], *t;
	int i;

	/* A small cascade, a cancel with a cause, a timeout, a release. */
	req[0] = rctx_with_cancel(rctx_background());
	for (i = 0; i < 10; i++)
		kids[i] = rctx_with_cancel(req[0]);
	req[1] = rctx_with_cancel(rctx_background());
	req[2] = rctx_with_cancel(rctx_background());
	t = rctx_with_timeout(rctx_background(), 2 * RCTX_MSEC);
	if (req[0] == NULL || req[1] == NULL || req[2] == NULL || t == NULL) {
		perror("rctx_with_*");
		return 1;
	}
	rctx_cancel(req[0]);
	rctx_cancel_cause(req[1], ESHUTDOWN);
	if (rctx_wait(t, -1) != ETIMEDOUT)
		return 1;
	for (i = 0; i < 10; i++)
		rctx_release(kids[i]);
	for (i = 0; i < 3; i++)
		rctx_release(req[i]);
	rctx_release(t);

	/* Everything this program made is released: none is live. The
	 * timer thread that fired t may still hold its reference for a
	 * moment (the counts are exact once the counting threads are
	 * quiet), so wait for it, with a generous bound as a hang guard. */
	rctx_stats_t s;
	rctx_time_t give_up = rctx_now() + 10 * RCTX_SEC;
	struct timespec ms = { 0, 1000000 };
	while (rctx_stats(&s, sizeof(s)) == 0 && s.live != 0 &&
	       rctx_now() < give_up)
		nanosleep(&ms, NULL);
	if (rctx_stats(&s, sizeof(s)) != 0 || s.live != 0 || s.created != 14) {
		fprintf(stderr, "unexpected counts: live %llu created %llu\n",
			(unsigned long long)s.live,
			(unsigned long long)s.created);
		return 1;
	}
	if (print_metrics() != 0) {
		fprintf(stderr, "rctx_stats/rctx_metrics failed\n");
		return 1;
	}
	return 0;
}
