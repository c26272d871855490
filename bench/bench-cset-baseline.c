/* SPDX-License-Identifier: MIT */
/* C side of bench-cset: the rctx children set and the cds_lfht baseline. */

/*
 * The children set's header is C11 (<stdatomic.h>, _Atomic), which the C++
 * harness cannot include, so both sets are reached through the plain C
 * functions below. Each operation is one out-of-line call for both sets
 * (rctx_cset_insert is out of line anyway; rctx_cset_remove is inline in
 * the library and becomes one call here), so the call cost is the same
 * on both sides.
 *
 * The baseline is liburcu's cds_lfht with the bp flavor, as the library
 * would use it: the node is intrusive (it would live in the child context;
 * here it is memory the harness hands in), cds_lfht_add (a child is never
 * inserted twice, so no uniqueness check) and cds_lfht_del on the
 * remembered node, each inside an RCU read-side critical section, as the
 * API requires.
 */

#include <malloc.h>
#include <stdlib.h>

#include "bench-cset.h"
#include "children.h"

#include <urcu/rculfhash.h>

struct bench_cset {
	struct rctx_cset s;
};

struct bench_cset *
bench_cset_new(void)
{
	struct bench_cset *b = malloc(sizeof(*b));

	if (b != NULL)
		rctx_cset_init(&b->s);
	return b;
}

void
bench_cset_free(struct bench_cset *b)
{
	rctx_cset_fini(&b->s);
	free(b);
}

void *
bench_cset_insert(struct bench_cset *b, uintptr_t e)
{
	return (void *)rctx_cset_insert(&b->s, e);
}

int
bench_cset_remove(void *slot, uintptr_t e)
{
	return rctx_cset_remove((_Atomic uintptr_t *)slot, e);
}

static void
sum_one(_Atomic uintptr_t *slot, uintptr_t e, void *arg)
{
	(void)slot;
	*(uintptr_t *)arg += e;
}

uintptr_t
bench_cset_walk(struct bench_cset *b)
{
	uintptr_t sum = 0;

	rctx_cset_foreach(&b->s, sum_one, &sum);
	return sum;
}

size_t
bench_cset_count(struct bench_cset *b)
{
	return rctx_cset_count(&b->s);
}

size_t
bench_cset_capacity(struct bench_cset *b)
{
	return rctx_cset_capacity(&b->s);
}

size_t
bench_cset_tables(struct bench_cset *b)
{
	size_t n = 0;
	/* acquire: pairs with the CASes that published the block and the
	 * table */
	struct rctx_ext *x =
	    atomic_load_explicit(&b->s.x, memory_order_acquire);

	for (struct rctx_ctable *t =
		 x ? atomic_load_explicit(&x->top, memory_order_acquire) : NULL;
	     t; t = t->prev)
		n++;
	return n;
}

size_t
bench_cset_table_header(void)
{
	return sizeof(struct rctx_ctable);
}

size_t
bench_cset_inline_bytes(void)
{
	return sizeof(struct rctx_cset);
}

size_t
bench_cset_inline_slots(void)
{
	return RCTX_CSET_INLINE;
}

size_t
bench_cset_ext_bytes(void)
{
	return sizeof(struct rctx_ext);
}

/* --- the baseline: cds_lfht, bp flavor --- */

static unsigned long
hash_node(const void *p)
{
	uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;

	return (unsigned long)(x ^ (x >> 29));
}

struct bench_lfht *
bench_lfht_new(void)
{
	return (struct bench_lfht *)cds_lfht_new(
	    1, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
}

void
bench_lfht_free(struct bench_lfht *h)
{
	(void)cds_lfht_destroy((struct cds_lfht *)h, NULL);
}

void
bench_lfht_add(struct bench_lfht *h, void *n)
{
	struct cds_lfht_node *node = n;

	cds_lfht_node_init(node);
	rcu_read_lock();
	cds_lfht_add((struct cds_lfht *)h, hash_node(node), node);
	rcu_read_unlock();
}

int
bench_lfht_del(struct bench_lfht *h, void *n)
{
	int r;

	rcu_read_lock();
	r = cds_lfht_del((struct cds_lfht *)h, n);
	rcu_read_unlock();
	return r == 0;
}

uintptr_t
bench_lfht_walk(struct bench_lfht *h)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	uintptr_t sum = 0;

	rcu_read_lock();
	cds_lfht_for_each((struct cds_lfht *)h, &it, node) sum +=
	    (uintptr_t)node;
	rcu_read_unlock();
	return sum;
}

size_t
bench_lfht_count(struct bench_lfht *h)
{
	long before, after;
	unsigned long count;

	rcu_read_lock();
	cds_lfht_count_nodes((struct cds_lfht *)h, &before, &count, &after);
	rcu_read_unlock();
	return count;
}

void
bench_lfht_grace(void)
{
	synchronize_rcu();
}

size_t
bench_lfht_node_bytes(void)
{
	return sizeof(struct cds_lfht_node);
}

/* --- heap in use, all arenas (glibc mallinfo2 walks every arena) --- */

size_t
bench_heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}
