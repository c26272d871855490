/* SPDX-License-Identifier: MIT */
/* Bytes per live context by kind: RSS and malloc in-use deltas over 200,000. */

/*
 * For each kind a fresh child process derives N contexts and holds them
 * all: value, cancel and timer (1 h) under the background context, and
 * child, a cancel context under one live parent (its share of the
 * parent's children set included). It reads two figures before and
 * after:
 *	rss	resident set size (/proc/self/statm), in bytes
 *	heap	malloc's bytes in use (mallinfo2: uordblks + hblkhd)
 * and prints one JSON line per kind with both deltas divided by N. A
 * fresh process per kind keeps memory freed by one kind from serving the
 * next. One context of the kind is made and released first, so lazily
 * started threads and per-thread caches are not counted.
 *
 * Usage: footprint [--contexts N]
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rctx.h"

enum kind { KIND_VALUE, KIND_CANCEL, KIND_TIMER, KIND_CHILD, KIND_COUNT };

static const char *const kind_names[] = { "value", "cancel", "timer", "child" };
static char key;
static rctx_t *live; /* the parent of KIND_CHILD */

static rctx_t *
make(enum kind k)
{
	switch (k) {
	case KIND_VALUE:
		return rctx_with_value(rctx_background(), &key, &key);
	case KIND_CANCEL:
		return rctx_with_cancel(rctx_background());
	case KIND_TIMER:
		return rctx_with_timeout(rctx_background(), 3600 * RCTX_SEC);
	default:
		return rctx_with_cancel(live);
	}
}

static long
rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static long
heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (long)(mi.uordblks + mi.hblkhd);
}

/* In the child: measure one kind and print its JSON line. */
static int
measure(enum kind k, size_t n)
{
	rctx_t **v = calloc(n, sizeof(*v));
	rctx_t *warm;
	long rss0, heap0, rss1, heap1;
	size_t made = 0;

	if (k == KIND_CHILD &&
	    (live = rctx_with_cancel(rctx_background())) == NULL)
		return 1;
	warm = make(k);
	if (v == NULL || warm == NULL) {
		fprintf(stderr, "footprint: %s: setup failed: %s\n",
			kind_names[k], strerror(errno));
		return 1;
	}
	/* touch the array now so its pages are not counted */
	memset(v, 0xff, n * sizeof(*v));
	rctx_cancel(warm);
	rctx_release(warm);
	rss0 = rss_bytes();
	heap0 = heap_bytes();
	for (; made < n; made++) {
		v[made] = make(k);
		if (v[made] == NULL)
			break;
	}
	rss1 = rss_bytes();
	heap1 = heap_bytes();
	if (made < n) {
		fprintf(stderr, "footprint: %s: context %zu failed: %s\n",
			kind_names[k], made, strerror(errno));
	} else {
		printf("{\"bench\": \"footprint\", \"lib\": \"rctx\", "
		       "\"kind\": \"%s\", \"contexts\": %zu, "
		       "\"rss_bytes_per_ctx\": %.1f, "
		       "\"heap_bytes_per_ctx\": %.1f}\n",
		       kind_names[k], n, (double)(rss1 - rss0) / (double)n,
		       (double)(heap1 - heap0) / (double)n);
		fflush(stdout);
	}
	for (size_t i = 0; i < made; i++) {
		rctx_cancel(v[i]);
		rctx_release(v[i]);
	}
	free(v);
	if (live != NULL) {
		rctx_cancel(live);
		rctx_release(live);
	}
	rctx_shutdown();
	return made < n || rss0 < 0 || rss1 < 0;
}

int
main(int argc, char **argv)
{
	size_t n = 200000;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--contexts") == 0 && i + 1 < argc) {
			n = strtoull(argv[++i], NULL, 10);
		} else {
			fprintf(stderr, "usage: footprint [--contexts N]\n");
			return 2;
		}
	}
	if (n == 0)
		return 2;
	for (int k = 0; k < KIND_COUNT; k++) {
		int status;
		pid_t pid = fork();

		if (pid < 0) {
			perror("footprint: fork");
			return 1;
		}
		if (pid == 0)
			_exit(measure((enum kind)k, n));
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			rc = 1;
	}
	return rc;
}
