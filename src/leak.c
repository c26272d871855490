/* SPDX-License-Identifier: MIT */
/* Leak reports: an opt-in side table of each context's site and times. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fault.h"
#include "leak.h"
#include "stats.h"
#include "wait.h" /* rctx_state_load */

/*
 * Invariants
 *  (I1) An entry for context c exists only between c's creation (while
 *       tracking was on) and its last release: rctx_leak_freed removes it
 *       under the stripe lock before c's memory can be reused, so a
 *       holder of the stripe lock may read any context it finds there.
 *  (I2) Entries are added only under their stripe lock with tracking on;
 *       turning tracking off clears every stripe under its lock, so no
 *       stale entry outlives a context made while it was on.
 *
 * Ordering: everything but the on/off flag is under the stripe locks; the
 * flag is relaxed (leak.h). Cost when off: nothing but the flag's load.
 */

#define NBUCKETS 16384
#define NSTRIPES 64

struct entry {
	struct rctx *c;
	const void *site;
	rctx_time_t made;
	rctx_time_t done; /* 0 until the context is done */
	struct entry *next;
};

_Atomic bool rctx_leak_on;
static struct entry *buckets[NBUCKETS];
static pthread_mutex_t stripes[NSTRIPES]; /* set up at load, below */

static size_t
bucket_of(const struct rctx *c)
{
	uint64_t h = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 50) % NBUCKETS;
}

static pthread_mutex_t *
stripe_of(size_t b)
{
	return &stripes[b % NSTRIPES];
}

/* Under the stripe lock of b. */
static struct entry **
find(size_t b, const struct rctx *c)
{
	struct entry **pp = &buckets[b];

	while (*pp && (*pp)->c != c)
		pp = &(*pp)->next;
	return pp;
}

void
rctx_leak_made(struct rctx *c, const void *site)
{
	size_t b = bucket_of(c);
	struct entry *e = rctx_malloc(sizeof(*e));

	if (e == NULL)
		return; /* untracked: it cannot be reported */
	e->c = c;
	e->site = site;
	e->made = rctx_clock_now();
	e->done = 0;
	pthread_mutex_lock(stripe_of(b));
	if (!rctx_leak_enabled()) { /* turned off meanwhile (I2) */
		pthread_mutex_unlock(stripe_of(b));
		free(e);
		return;
	}
	e->next = buckets[b];
	buckets[b] = e;
	pthread_mutex_unlock(stripe_of(b));
}

void
rctx_leak_done(struct rctx *c)
{
	size_t b = bucket_of(c);
	rctx_time_t now = rctx_clock_now();
	struct entry *e;

	pthread_mutex_lock(stripe_of(b));
	e = *find(b, c);
	if (e && e->done == 0)
		e->done = now;
	pthread_mutex_unlock(stripe_of(b));
}

void
rctx_leak_freed(struct rctx *c)
{
	size_t b = bucket_of(c);
	struct entry **pp, *e;

	pthread_mutex_lock(stripe_of(b));
	pp = find(b, c);
	e = *pp;
	if (e)
		*pp = e->next;
	pthread_mutex_unlock(stripe_of(b));
	free(e);
}

rctx_time_t
rctx_leak_age(const struct rctx *c)
{
	size_t b = bucket_of(c);
	rctx_time_t made = -1;
	struct entry *e;

	if (!rctx_leak_enabled())
		return -1;
	pthread_mutex_lock(stripe_of(b));
	e = *find(b, c);
	if (e)
		made = e->made;
	pthread_mutex_unlock(stripe_of(b));
	return made < 0 ? -1 : rctx_clock_now() - made;
}

int
rctx_leak_set(bool on)
{
	if (on) {
		/* relaxed: see rctx_leak_enabled */
		atomic_store_explicit(&rctx_leak_on, true,
				      memory_order_relaxed);
		/* relaxed: as rctx_leak_on; the stats hooks now take their
		 * slow paths, which call ours (stats.h) */
		atomic_store_explicit(&rctx_stats_fast_state, RCTX_TSTATS_SLOW,
				      memory_order_relaxed);
		return 0;
	}
	/* relaxed: each stripe's lock below orders the clear (I2) */
	atomic_store_explicit(&rctx_leak_on, false, memory_order_relaxed);
	/* relaxed: as above */
	atomic_store_explicit(&rctx_stats_fast_state, RCTX_TSTATS_LISTED,
			      memory_order_relaxed);
	for (size_t s = 0; s < NSTRIPES; s++) {
		pthread_mutex_lock(&stripes[s]);
		for (size_t b = s; b < NBUCKETS; b += NSTRIPES) {
			struct entry *e = buckets[b], *next;

			for (; e; e = next) {
				next = e->next;
				free(e);
			}
			buckets[b] = NULL;
		}
		pthread_mutex_unlock(&stripes[s]);
	}
	return 0;
}

/* At load, before any context can be made: the locks, and
 * RCTX_LEAK_TRACK=1 in the environment turns tracking on. */
__attribute__((constructor)) static void
rctx_leak_load(void)
{
	const char *v = getenv("RCTX_LEAK_TRACK");

	for (size_t s = 0; s < NSTRIPES; s++)
		(void)pthread_mutex_init(&stripes[s], NULL);
	if (v && *v && strcmp(v, "0") != 0)
		(void)rctx_leak_set(true);
}

/* --- reports --- */

struct groups {
	rctx_leak_site_t *v;
	size_t n, cap;
};

static int
group_add(struct groups *g, const void *site, bool done, rctx_time_t age)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->v[i].site == site && g->v[i].done == done) {
			g->v[i].count++;
			if (age > g->v[i].oldest)
				g->v[i].oldest = age;
			return 0;
		}
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		rctx_leak_site_t *v = rctx_malloc(cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		if (g->n)
			memcpy(v, g->v, g->n * sizeof(*v));
		free(g->v);
		g->v = v;
		g->cap = cap;
	}
	g->v[g->n++] = (rctx_leak_site_t){
		.site = site, .done = done, .count = 1, .oldest = age
	};
	return 0;
}

/* Under the stripe lock: classify e, add it to g if it is a leak. */
static int
classify(struct groups *g, struct entry *e, rctx_time_t now,
	 rctx_time_t older_than)
{
	const struct rctx *src = rctx_src(e->c); /* alive: I1, held by c */
	bool done = src && rctx_st_err(rctx_state_load(src));
	rctx_time_t since = done && e->done ? e->done : e->made;

	if (now - since < older_than)
		return 0;
	return group_add(g, e->site, done, now - since);
}

int
rctx_leak_do_report(rctx_time_t older_than,
		    int (*fn)(const rctx_leak_site_t *, void *), void *arg)
{
	struct groups g = { NULL, 0, 0 };
	rctx_time_t now = rctx_clock_now();
	int r = 0;

	for (size_t s = 0; s < NSTRIPES && r == 0; s++) {
		pthread_mutex_lock(&stripes[s]);
		for (size_t b = s; b < NBUCKETS && r == 0; b += NSTRIPES)
			for (struct entry *e = buckets[b]; e && r == 0;
			     e = e->next)
				r = classify(&g, e, now, older_than);
		pthread_mutex_unlock(&stripes[s]);
	}
	if (r < 0) {
		free(g.v);
		return r;
	}
	for (size_t i = 0; i < g.n; i++) {
		Dl_info info;

		if (dladdr(g.v[i].site, &info) && info.dli_fname) {
			g.v[i].object = info.dli_fname;
			g.v[i].symbol = info.dli_sname;
			g.v[i].offset =
			    (uintptr_t)g.v[i].site -
			    (uintptr_t)(info.dli_sname ? info.dli_saddr
						       : info.dli_fbase);
		}
		if (fn(&g.v[i], arg) != 0) {
			free(g.v);
			return (int)i + 1;
		}
	}
	free(g.v);
	return (int)g.n;
}

int
rctx_fd_printf(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	for (int off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, (size_t)(n - off));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += (int)w;
	}
	return 0;
}

static int
print_site(const rctx_leak_site_t *s, void *arg)
{
	int fd = *(int *)arg;
	int r;

	if ((r = rctx_fd_printf(
		 fd,
		 "rctx leak: %llu context(s) %s, oldest %.3f s, made at "
		 "%s+0x%lx (%s) [%p]\n",
		 (unsigned long long)s->count,
		 s->done ? "done but still referenced" : "alive",
		 (double)s->oldest / 1e9, s->symbol ? s->symbol : "?",
		 (unsigned long)s->offset, s->object ? s->object : "?",
		 s->site)) < 0) {
		*(int *)arg = r;
		return 1;
	}
	return 0;
}

int
rctx_leak_do_report_fd(rctx_time_t older_than, int fd)
{
	int st = fd;
	int r = rctx_leak_do_report(older_than, print_site, &st);

	return st < 0 ? st : r;
}
