/* SPDX-License-Identifier: MIT */
/* Causes in words: a registry of named causes, and status mapping. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "cause.h"
#include "fork.h"

/*
 * A named cause is the code RCTX_CAUSE_NAMED + i for slot i of a fixed
 * table; slots fill in order and are never emptied, so a name read once
 * stays valid. A cause travels through the tree as the plain int it
 * always was (the core stores and propagates it unchanged), and a reader
 * turns it back into words with one bounds check and one load.
 *
 * Ordering
 *  cause.A rctx_cause_add fills a slot's kind, then publishes its name with a
 *      release store; rctx_cause_lookup and rctx_cause_kind_of load the
 *      name with acquire, so a reader that sees the name sees its kind.
 *  cause.B Writers serialize on one mutex (registration is rare: once per
 *      name per program); the dedup scan and the slot claim happen under
 *      it, so a name gets one code even when two threads race to add it.
 *      fork takes it in prepare (fork.c's slot order; no other lock is
 *      taken under it), so a child never inherits it held by a thread
 *      that does not exist there.
 *  cause.C A thread that learned a code from another thread learned it
 *      through some synchronization (the cause was published by a
 *      cancel's CAS, tree.C), which orders the registration before its
 *      read; the acquire in cause.A covers readers who only guess a code.
 */

struct rctx_cause_slot {
	_Atomic(const char *) name; /* NULL: free */
	int kind;
};

static struct rctx_cause_slot rctx_cause_tab[RCTX_CAUSE_NAMES] = {
	[0] = { "peer deadline", RCTX_CAUSE_KIND_DEADLINE },
	[1] = { "deadline cap", RCTX_CAUSE_KIND_DEADLINE },
	[2] = { "client gone", RCTX_CAUSE_KIND_CLIENT },
	[3] = { "shutting down", RCTX_CAUSE_KIND_SERVER },
};
#define RCTX_CAUSE_BUILTIN 4

static pthread_mutex_t rctx_cause_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned rctx_cause_used = RCTX_CAUSE_BUILTIN; /* under the lock */

int
rctx_cause_add(const char *name, int kind)
{
	int ret = -ENOSPC;

	pthread_mutex_lock(&rctx_cause_lock);
	for (unsigned i = 0; i < rctx_cause_used; i++) {
		/* relaxed: slots below rctx_cause_used were written under
		 * this lock (cause.B) */
		const char *n = atomic_load_explicit(&rctx_cause_tab[i].name,
						     memory_order_relaxed);

		if (strcmp(n, name) == 0) {
			ret = rctx_cause_tab[i].kind == kind
				  ? RCTX_CAUSE_NAMED + (int)i
				  : -EEXIST;
			goto out;
		}
	}
	if (rctx_cause_used < RCTX_CAUSE_NAMES) {
		struct rctx_cause_slot *s = &rctx_cause_tab[rctx_cause_used];

		s->kind = kind;
		/* release: publishes kind with the name; pairs with the
		 * acquire in rctx_cause_lookup and rctx_cause_kind_of (cause.A) */
		atomic_store_explicit(&s->name, name, memory_order_release);
		ret = RCTX_CAUSE_NAMED + (int)rctx_cause_used++;
	}
out:
	pthread_mutex_unlock(&rctx_cause_lock);
	return ret;
}

static void
rctx_cause_before_fork(void)
{
	pthread_mutex_lock(&rctx_cause_lock);
}

/* Parent and child: the forking thread took it in prepare. */
static void
rctx_cause_after_fork(void)
{
	pthread_mutex_unlock(&rctx_cause_lock);
}

static const struct rctx_fork_hooks rctx_cause_fork_hooks = {
	.prepare = rctx_cause_before_fork,
	.parent = rctx_cause_after_fork,
	.child = rctx_cause_after_fork,
};

/* At load, like fork.c's own handler: a fork may come at any time. */
__attribute__((constructor)) static void
rctx_cause_load(void)
{
	rctx_fork_hooks_set(RCTX_FORK_SLOT_CAUSE, &rctx_cause_fork_hooks);
}

/* The slot of a named cause whose name is published, or NULL. */
static const struct rctx_cause_slot *
rctx_cause_slot(int cause, const char **name)
{
	const struct rctx_cause_slot *s;

	if (cause < RCTX_CAUSE_NAMED ||
	    cause - RCTX_CAUSE_NAMED >= RCTX_CAUSE_NAMES)
		return NULL;
	s = &rctx_cause_tab[cause - RCTX_CAUSE_NAMED];
	/* acquire: pairs with the release store in rctx_cause_add (cause.A) */
	*name = atomic_load_explicit(&((struct rctx_cause_slot *)s)->name,
				     memory_order_acquire);
	return *name != NULL ? s : NULL;
}

const char *
rctx_cause_lookup(int cause)
{
	const char *name = NULL;

	if (rctx_cause_slot(cause, &name) != NULL)
		return name;
	if (cause <= 0 || cause >= RCTX_CAUSE_NAMED)
		return NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
	return strerrorname_np(cause); /* static strings; NULL if unknown */
#else
	return cause == ECANCELED   ? "ECANCELED"
	       : cause == ETIMEDOUT ? "ETIMEDOUT"
				    : NULL;
#endif
}

int
rctx_cause_kind_of(int cause)
{
	const char *name;
	const struct rctx_cause_slot *s = rctx_cause_slot(cause, &name);

	return s != NULL ? s->kind : 0;
}

/* The kind a done context maps by: its cause's, else by its error. */
static int
rctx_cause_end(int err, int cause)
{
	int kind = rctx_cause_kind_of(cause);

	if (kind != 0)
		return kind;
	if (err == ETIMEDOUT || cause == ETIMEDOUT)
		return RCTX_CAUSE_KIND_DEADLINE;
	return RCTX_CAUSE_KIND_CLIENT;
}

int
rctx_cause_grpc(int err, int cause)
{
	/* gRPC status codes: CANCELLED 1, DEADLINE_EXCEEDED 4. */
	return rctx_cause_end(err, cause) == RCTX_CAUSE_KIND_DEADLINE ? 4 : 1;
}

int
rctx_cause_http(int err, int cause)
{
	switch (rctx_cause_end(err, cause)) {
	case RCTX_CAUSE_KIND_DEADLINE:
		return 504;
	case RCTX_CAUSE_KIND_SERVER:
		return 503;
	default:
		return 499;
	}
}
