/* SPDX-License-Identifier: MIT */
/* A context many threads derive from, split per CPU: references and children. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "shard.h"
#include "tree.h"

/*
 * In the manner of Linux's percpu_ref: a context that threads on several
 * CPUs keep deriving from gets an array of shards, one per CPU, each on
 * its own two cache lines. A child made on CPU k counts its reference on
 * shard k and enters shard k's children set; it leaves the set through
 * its slot and drops the reference on the shard of the CPU it is
 * released on. While the shards live, only they are written per op; the
 * context's own lines (state, walkers, the shard pointer) are only read,
 * so they stay in every core's cache.
 *
 * Invariants
 *  (I1) p's share word goes from whole to SPLIT (with the shards'
 *       address, by the CAS that wins the promotion) to CLOSED (keeping
 *       it), and never back; the shards are freed with p. A context is
 *       split only while it is whole, and the tag and miss count
 *       change only then.
 *  (I2) While p is SPLIT, p->refs holds RCTX_REF_BIAS plus every
 *       reference not counted on a shard (its creator's, rctx_retain's,
 *       a canceller's or an after-func's hold, children made before the
 *       split), and the references on p are refs - BIAS + the sum of the
 *       shards' counts (a shard may be negative: a child may be released
 *       on another CPU than it was made on). refs falls to BIAS exactly
 *       when the last reference outside the shards goes; that put closes
 *       the shards: each is exchanged for RCTX_SHARD_CLOSED and its count
 *       added to refs, then BIAS is taken off in one add with the sum, so
 *       refs never reaches 0 before the true count does. A get or put
 *       that finds its shard closed uses refs: the close counted the
 *       shard as it stood when it closed it, and everything after that
 *       goes to refs.
 *  (I3) No lost child (tree.B) with shards: the promotion publishes the
 *       array and SPLIT in one seq_cst CAS. An
 *       inserter that saw SPLIT (acquire) inserts with a seq_cst CAS,
 *       ordered after that RMW; a canceller loads the share word with
 *       seq_cst after its state CAS and walks the shards when it is set.
 *       In the single total order either the walk sees the child or the
 *       child sees the cancel, as for the context's own set.
 *
 * Ordering
 *  shard.A A shard put is a release CAS; the close's exchange of that
 *      shard is acq_rel, and the add that takes BIAS off is acq_rel on
 *      refs, so whoever frees p (the close or a later put reaching 0)
 *      sees every write made before a reference was dropped, as with
 *      rctx_ref_put alone.
 *  shard.B The CAS that sets SPLIT (seq_cst, so also a release) pairs
 *      with the acquire in rctx_share: a thread that sees it sees the
 *      shards' initialised contents.
 */

/* This thread's tag (rctx_share_mine); 0 until it allocates. */
RCTX_TLS uint16_t rctx_shard_my_tag;

static unsigned shard_n;
static pthread_once_t shard_once = PTHREAD_ONCE_INIT;

static void
shard_setup(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);

	shard_n = n < 1 ? 1u : n > 4096 ? 4096u : (unsigned)n;
}

unsigned
rctx_shard_count(void)
{
	(void)pthread_once(&shard_once, shard_setup);
	return shard_n;
}

/* The shard of the CPU we run on (any shard is correct, this one is
 * cheap). p is split: shard_n is set. */
static inline struct rctx_shard *
shard_here(struct rctx *p)
{
	int cpu = sched_getcpu();
	unsigned k = cpu < 0 ? 0u : (unsigned)cpu;
	/* relaxed: I1, the acquire in rctx_share made it visible */
	struct rctx_shard *s = rctx_share_shards(
	    atomic_load_explicit(&p->share, memory_order_relaxed));

	return &s[k < shard_n ? k : k % shard_n];
}

static bool rctx_shard_get(struct rctx *p);

/* A hash of a thread-local address: threads differ, never 0. */
void
rctx_shard_tag_init(void)
{
	uint64_t h =
	    (uint64_t)(uintptr_t)&rctx_shard_my_tag * 0x9e3779b97f4a7c15ull;

	rctx_shard_my_tag = (uint16_t)((h >> 48) | 1);
}

static uint16_t
my_tag(void)
{
	if (RCTX_UNLIKELY(rctx_shard_my_tag == 0))
		rctx_shard_tag_init();
	return rctx_shard_my_tag;
}

/* Forget p's misses (while whole): out of memory for the shards. */
static void
misses_reset(struct rctx *p)
{
	/* relaxed: a heuristic; the CAS keeps the state bits (I1) */
	uint64_t s = atomic_load_explicit(&p->share, memory_order_relaxed);

	while (!(s & RCTX_SHARE_STATE) &&
	       !atomic_compare_exchange_weak_explicit(
		   &p->share, &s, s & ~RCTX_SHARE_MISSES, memory_order_relaxed,
		   memory_order_relaxed))
		;
}

void
rctx_shard_miss(struct rctx *p)
{
	uint64_t t = (uint64_t)my_tag() << RCTX_SHARE_TAG_SHIFT;
	/* relaxed: a heuristic; a lost count only delays the split, and
	 * the CAS never changes the state bits (I1) */
	uint64_t s = atomic_load_explicit(&p->share, memory_order_relaxed);

	for (;;) {
		uint64_t m = (s & RCTX_SHARE_MISSES) / RCTX_SHARE_MISS1 + 1;

		if ((s & RCTX_SHARE_STATE) || (s & RCTX_SHARE_TAG) == t)
			return;
		if (m >= RCTX_SHARD_PROMOTE) {
			if (rctx_shard_promote(p) < 0)
				misses_reset(p);
			return;
		}
		/* relaxed: as above */
		if (atomic_compare_exchange_weak_explicit(
			&p->share, &s, m * RCTX_SHARE_MISS1 | t,
			memory_order_relaxed, memory_order_relaxed))
			return;
	}
}

bool
rctx_shard_parent_get(struct rctx *p)
{
	if (rctx_share(p) & RCTX_SHARE_STATE)
		return rctx_shard_get(p);
	rctx_shard_miss(p);
	rctx_ref_get(p);
	return false;
}

int
rctx_shard_promote(struct rctx *p)
{
	unsigned n = rctx_shard_count();
	struct rctx_shard *s;
	/* relaxed: the CAS below decides */
	uint64_t w = atomic_load_explicit(&p->share, memory_order_relaxed);

	if (w & RCTX_SHARE_STATE)
		return 0;
	s = rctx_aligned_alloc(_Alignof(struct rctx_shard),
			       (size_t)n * sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		atomic_init(&s[i].refs, 0);
		rctx_cset_init(&s[i].set);
	}
	/* The bias goes in before the split shows (I2). relaxed: the
	 * caller holds a reference, so refs cannot reach 0 meanwhile, and
	 * no shard count exists yet to pair with; a put that meets the
	 * bias before the split finds nothing to close (rctx_shard_close) */
	atomic_fetch_add_explicit(&p->refs, RCTX_REF_BIAS,
				  memory_order_relaxed);
	/* seq_cst: I3 and shard.B, publishes the array with SPLIT; relaxed
	 * on failure: a miss count changed (retry) or another thread split
	 * p (take our bias back) */
	while (!atomic_compare_exchange_weak_explicit(
	    &p->share, &w, (uint64_t)(uintptr_t)s | RCTX_SHARE_SPLIT,
	    memory_order_seq_cst, memory_order_relaxed)) {
		if (w & RCTX_SHARE_STATE) {
			/* relaxed: as the add */
			atomic_fetch_sub_explicit(&p->refs, RCTX_REF_BIAS,
						  memory_order_relaxed);
			free(s);
			return 0;
		}
	}
	return 0;
}

static bool
rctx_shard_get(struct rctx *p)
{
	struct rctx_shard *s = shard_here(p);
	/* relaxed: as rctx_ref_get, the caller holds a reference */
	int64_t v = atomic_load_explicit(&s->refs, memory_order_relaxed);

	while (v != RCTX_SHARD_CLOSED)
		/* relaxed: as rctx_ref_get */
		if (atomic_compare_exchange_weak_explicit(&s->refs, &v, v + 1,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	rctx_ref_get(p); /* I2: closed, count on refs */
	return false;
}

bool
rctx_shard_put(struct rctx *p)
{
	struct rctx_shard *s = shard_here(p);
	/* relaxed: the CAS below decides */
	int64_t v = atomic_load_explicit(&s->refs, memory_order_relaxed);

	while (v != RCTX_SHARD_CLOSED)
		/* release: shard.A, pairs with the close's exchange;
		 * relaxed on failure: we retry with the value read */
		if (atomic_compare_exchange_weak_explicit(&s->refs, &v, v - 1,
							  memory_order_release,
							  memory_order_relaxed))
			return false; /* I2: refs still holds BIAS */
	return rctx_ref_put(p);
}

bool
rctx_shard_close(struct rctx *p)
{
	int64_t sum = 0;
	uint32_t add, old;
	struct rctx_shard *s;
	/* relaxed: the CAS below decides */
	uint64_t st = atomic_load_explicit(&p->share, memory_order_relaxed);

	do {
		/* another put already closes them, or p has no shards */
		if ((st & RCTX_SHARE_STATE) != RCTX_SHARE_SPLIT)
			return false;
		/* acquire: pairs with the promotion's RMW (shard.B) */
	} while (!atomic_compare_exchange_weak_explicit(
	    &p->share, &st, (st & ~RCTX_SHARE_STATE) | RCTX_SHARE_CLOSED,
	    memory_order_acquire, memory_order_relaxed));
	s = rctx_share_shards(st); /* I1, seen through the acquire above */
	for (unsigned i = 0; i < shard_n; i++)
		/* acq_rel: shard.A, pairs with every put on the shard */
		sum += atomic_exchange_explicit(&s[i].refs, RCTX_SHARD_CLOSED,
						memory_order_acq_rel);
	add = (uint32_t)(sum - (int64_t)RCTX_REF_BIAS);
	/* acq_rel: shard.A, as rctx_ref_put */
	old = atomic_fetch_add_explicit(&p->refs, add, memory_order_acq_rel);
	return (uint32_t)(old + add) == 0;
}

_Atomic uintptr_t *
rctx_shard_insert(struct rctx *p, uintptr_t entry)
{
	return rctx_cset_insert(&shard_here(p)->set, entry);
}

void
rctx_shard_leave(struct rctx *c, _Atomic uintptr_t *slot)
{
	struct rctx *p = rctx_src(c->parent);
	struct rctx_shard *s;
	uintptr_t off;

	/* relaxed: I1, c entered a shard, so the array was seen then */
	s = rctx_share_shards(
	    atomic_load_explicit(&p->share, memory_order_relaxed));
	off = (uintptr_t)slot - (uintptr_t)s;
	/* An inline slot names its shard, which takes the hint; a table's
	 * slot does not say whose it is. */
	if (off < (uintptr_t)shard_n * sizeof(*s))
		rctx_cset_remove_hinted(&s[off / sizeof(*s)].set, slot,
					(uintptr_t)c);
	else
		(void)rctx_cset_remove(slot, (uintptr_t)c);
}

void
rctx_children_foreach(struct rctx *n, rctx_cset_fn fn, void *arg)
{
	struct rctx_shard *s;
	uint64_t w;

	rctx_cset_foreach(&n->children, fn, arg);
	/* seq_cst: I3, the canceller's load after its state CAS */
	w = atomic_load_explicit(&n->share, memory_order_seq_cst);
	if (!(w & RCTX_SHARE_STATE))
		return;
	s = rctx_share_shards(w);
	for (unsigned i = 0; i < shard_n; i++)
		rctx_cset_foreach(&s[i].set, fn, arg);
}

void
rctx_shards_free(struct rctx *p)
{
	/* relaxed: p is unreachable (its last reference is gone) */
	uint64_t w = atomic_load_explicit(&p->share, memory_order_relaxed);
	struct rctx_shard *s = rctx_share_shards(w);

	if (!(w & RCTX_SHARE_STATE))
		return;
	for (unsigned i = 0; i < shard_n; i++)
		rctx_cset_fini(&s[i].set);
	free(s);
	/* relaxed: as above; whole again until reuse sets it */
	atomic_store_explicit(&p->share, 0, memory_order_relaxed);
}
