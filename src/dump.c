/* SPDX-License-Identifier: MIT */
/* A weakly consistent dump of a subtree, safe under concurrent churn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "children.h"
#include "shard.h"
#include "dump.h"
#include "fault.h"
#include "leak.h"
#include "tree.h"

/*
 * The walk is the cancel cascade's, read-only: a node on the stack holds a
 * reference (so its children set stays valid), its set is read inside an
 * RCU read-side section while the walk counts itself in the node's
 * walkers (tree.c order E: a child freed meanwhile then waits a grace
 * period before reuse), and each child is try-retained before it is
 * pushed. Nodes are copied into an array first; the caller's callback
 * runs after the walk, outside any RCU section and holding nothing.
 */

/* has_dl, dl: the node's deadline, passed down so that no node walks up
 * for it (a deep chain of cancel contexts would make the dump quadratic). */
struct frame {
	struct rctx *c;
	unsigned depth;
	bool has_dl;
	rctx_time_t dl;
};

struct walk {
	struct frame *stack;
	size_t nstack, cap;
	rctx_dump_node_t *out;
	size_t nout, max;
	rctx_dump_node_t *cur; /* the node whose set is being read */
	struct frame curf;     /* and its frame */
	int err;
};

static bool
push(struct walk *w, struct frame f)
{
	if (w->nstack == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct frame *v = rctx_malloc(cap * sizeof(*v));

		if (v == NULL)
			return false;
		if (w->nstack)
			memcpy(v, w->stack, w->nstack * sizeof(*v));
		free(w->stack);
		w->stack = v;
		w->cap = cap;
	}
	w->stack[w->nstack++] = f;
	return true;
}

static void
visit_child(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	struct walk *w = arg;
	struct rctx *ch = (struct rctx *)e;

	(void)slot;
	if (e & RCTX_CSET_TAG_AFTER) {
		w->cur->afters++;
		return;
	}
	w->cur->children++;
	/* Room for it? Every pushed node is reported (max bounds both). */
	if (w->err || w->nout + w->nstack >= w->max)
		return;
	if (!rctx_ref_tryget(ch))
		return; /* its last reference is going */
	/* ch is cancelable, and below w->cur through value contexts only
	 * (a without_cancel would have cut it off): its deadline is its
	 * own if a timer, else w->cur's */
	struct frame f = { ch, w->cur->depth + 1, w->curf.has_dl, w->curf.dl };

	if (ch->kind == RCTX_KIND_TIMER) {
		f.has_dl = true;
		f.dl = ch->timer.expires;
	}
	if (!push(w, f)) {
		w->err = -ENOMEM;
		rctx_tree_release(ch);
	}
}

static void
describe(rctx_dump_node_t *n, const struct frame *f, rctx_time_t now)
{
	struct rctx *c = f->c;
	struct rctx *src = rctx_src(c);
	rctx_time_t d = f->dl;

	memset(n, 0, sizeof(*n));
	n->ctx = c;
	n->depth = f->depth;

	n->kind = c->kind;
	if (src) {
		uint64_t s = rctx_state_load(src);

		n->err = rctx_st_err(s);
		n->cause = n->err ? rctx_st_cause(s) : 0;
	}
	if (!f->has_dl)
		n->remaining = RCTX_DUMP_FOREVER;
	else if (n->err || d <= now)
		n->remaining = 0;
	else
		n->remaining = d - now;
	n->age = rctx_leak_enabled() ? rctx_leak_age(c) : -1;
}

/* Walk the subtree of ctx into w->out. 0 or -ENOMEM. */
static int
walk(struct rctx *ctx, struct walk *w)
{
	rctx_time_t now = rctx_clock_now();
	size_t outcap = w->max < 64 ? w->max : 64;

	w->out = rctx_malloc(outcap * sizeof(*w->out));
	if (w->out == NULL)
		return -ENOMEM;

	struct frame top = { ctx, 0, false, INT64_MAX };

	top.has_dl = rctx_deadline_get(ctx, &top.dl);
	if (ctx->kind != RCTX_KIND_ROOT)
		rctx_ref_get(ctx); /* uniform: every frame holds one */
	if (!push(w, top)) {
		rctx_tree_release(ctx);
		return -ENOMEM;
	}
	while (w->nstack > 0) {
		struct frame f = w->stack[--w->nstack];

		if (w->err == 0 && w->nout == outcap) {
			size_t cap = outcap * 2 < w->max ? outcap * 2 : w->max;
			rctx_dump_node_t *v = rctx_malloc(cap * sizeof(*v));

			if (v == NULL) {
				w->err = -ENOMEM;
			} else {
				memcpy(v, w->out, w->nout * sizeof(*v));
				free(w->out);
				w->out = v;
				outcap = cap;
			}
		}
		if (w->err == 0) {
			w->cur = &w->out[w->nout++];
			w->curf = f;
			describe(w->cur, &f, now);
			if (rctx_is_cancelable(f.c)) {
				rcu_read_lock();
				/* seq_cst: tree.c order E, before any slot
				 * of the set is read */
				atomic_fetch_add_explicit(&f.c->walkers, 1,
							  memory_order_seq_cst);
				rctx_children_foreach(f.c, visit_child, w);
				/* release: done with every pointer read
				 * from the set; pairs with the freeing
				 * child's load of walkers (order E) */
				atomic_fetch_sub_explicit(&f.c->walkers, 1,
							  memory_order_release);
				rctx_rcu_read_unlock();
			}
		}
		rctx_tree_release(f.c); /* roots: a no-op */
	}
	free(w->stack);
	return w->err;
}

int
rctx_dump_do(struct rctx *ctx, size_t max_nodes,
	     int (*fn)(const rctx_dump_node_t *, void *), void *arg)
{
	struct walk w = { .max = max_nodes };
	int r = walk(ctx, &w);

	if (r < 0) {
		free(w.out);
		return r;
	}
	for (size_t i = 0; i < w.nout; i++) {
		if (fn(&w.out[i], arg) != 0) {
			r = (int)i + 1;
			break;
		}
		r = (int)i + 1;
	}
	free(w.out);
	return r;
}

static const char *const kind_names[] = {
	[RCTX_DUMP_ROOT] = "root",	 [RCTX_DUMP_CANCEL] = "cancel",
	[RCTX_DUMP_TIMER] = "deadline",	 [RCTX_DUMP_VALUE] = "value",
	[RCTX_DUMP_WITHOUT] = "without",
};

static int
print_node(const rctx_dump_node_t *n, void *arg)
{
	int fd = *(int *)arg;
	char rem[32], age[32];
	int r;

	if (n->remaining == RCTX_DUMP_FOREVER)
		snprintf(rem, sizeof(rem), "none");
	else
		snprintf(rem, sizeof(rem), "%.6fs", (double)n->remaining / 1e9);
	if (n->age < 0)
		snprintf(age, sizeof(age), "?");
	else
		snprintf(age, sizeof(age), "%.6fs", (double)n->age / 1e9);
	if ((r = rctx_fd_printf(
		 fd,
		 "%*s%s %p %s cause=%d left=%s children=%u afters=%u "
		 "age=%s\n",
		 (int)(2 * n->depth), "", kind_names[n->kind],
		 (const void *)n->ctx,
		 n->err == 0	       ? "live"
		 : n->err == ECANCELED ? "cancelled"
				       : "timed-out",
		 n->cause, rem, n->children, n->afters, age)) < 0) {
		*(int *)arg = r;
		return 1;
	}
	return 0;
}

int
rctx_dump_do_fd(struct rctx *ctx, size_t max_nodes, int fd)
{
	int st = fd;
	int r = rctx_dump_do(ctx, max_nodes, print_node, &st);

	return st < 0 ? st : r;
}
