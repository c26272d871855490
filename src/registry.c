/* SPDX-License-Identifier: MIT */
/* Per-thread records: each live thread claims one record of a registry. */

/*
 * A registry is a push-only list of records (after.c's runner records,
 * stage.c's stages). A thread claims one record at its first use and
 * gives it back at exit, so records are reused by later threads and the
 * list stays as long as the peak number of threads. Records are never
 * unlinked before rctx_reg_take_all (shutdown), so any thread may walk
 * the list at any time without a lock or RCU.
 *
 * Invariants
 *  I1. A record's `owned` is 1 exactly while one live thread caches it in
 *      its thread-local slot with the registry's current generation.
 *  I2. `next` never changes once the record is pushed; records are freed
 *      only by the caller of rctx_reg_take_all, which bumps `gen` first
 *      so that no thread (including its exit hook) touches them again.
 *
 * Ordering
 *  registry.A The push (release CAS in rctx_reg_claim) publishes the
 *      record's initialised fields; walkers load the head with acquire
 *      (rctx_reg_first), and `next` links were written before the push.
 *  registry.B A thread giving its record up (release store of owned = 0
 *      in rctx_reg_exit) pairs with the acquire CAS of the next claimer
 *      (rctx_reg_claim), so the new owner sees what the old one left.
 *
 * Progress: claim is lock-free but for the first call on a registry
 * (pthread_key_create under a mutex) and malloc; walks are wait-free.
 */

#include <stdlib.h>

#include "fault.h"
#include "registry.h"

RCTX_TLS struct rctx_reg_mine rctx_reg_tls[RCTX_REG_NSLOTS];

/* Thread exit: the key's value is the registry (never freed). */
void
rctx_reg_exit(void *arg)
{
	struct rctx_reg *r = arg;
	struct rctx_reg_rec *rec = rctx_reg_mine(r);

	rctx_reg_tls[r->slot].rec = NULL;
	if (rec == NULL)
		return; /* freed by a shutdown since (I2) */
	if (r->exit)
		r->exit(rec);
	/* release: registry.B, pairs with the acquire CAS in rctx_reg_claim */
	atomic_store_explicit(&rec->owned, 0, memory_order_release);
}

int
rctx_tkey_set(struct rctx_tkey *k, void *val)
{
	int err = 0;

	/* acquire: pairs with the release store below (the key is made) */
	if (RCTX_UNLIKELY(
		!atomic_load_explicit(&k->made, memory_order_acquire))) {
		pthread_mutex_lock(&k->lock);
		/* relaxed: under the lock that writes it */
		if (!atomic_load_explicit(&k->made, memory_order_relaxed)) {
			err = pthread_key_create(&k->key, k->dtor);
			if (err == 0)
				/* release: publishes the key; pairs with the
				 * acquire load above */
				atomic_store_explicit(&k->made, true,
						      memory_order_release);
		}
		pthread_mutex_unlock(&k->lock);
		if (err)
			return err;
	}
	return pthread_setspecific(k->key, val);
}

void
rctx_tkey_drop(struct rctx_tkey *k)
{
	pthread_mutex_lock(&k->lock);
	/* relaxed: under the lock; callers are quiescent, and the next
	 * rctx_tkey_set happens after the shutdown that drops */
	if (atomic_load_explicit(&k->made, memory_order_relaxed)) {
		(void)pthread_key_delete(k->key);
		atomic_store_explicit(&k->made, false, memory_order_relaxed);
	}
	pthread_mutex_unlock(&k->lock);
}

/* An idle record for which match holds, now owned by the caller; or NULL. */
static struct rctx_reg_rec *
take_idle(struct rctx_reg *r,
	  bool (*match)(const struct rctx_reg_rec *, const void *),
	  const void *arg)
{
	for (struct rctx_reg_rec *rec = rctx_reg_first(r); rec;
	     rec = rec->next) {
		uint32_t zero = 0;

		/* acquire: registry.B, pairs with the release store in
		 * rctx_reg_exit */
		if ((match == NULL || match(rec, arg)) &&
		    atomic_compare_exchange_strong_explicit(
			&rec->owned, &zero, 1, memory_order_acquire,
			memory_order_relaxed))
			return rec;
	}
	return NULL;
}

/* Make rec the calling thread's, of generation gen. */
static struct rctx_reg_rec *
adopt(struct rctx_reg *r, struct rctx_reg_rec *rec, unsigned gen)
{
	/* Without the key the record is given back only at shutdown. */
	(void)rctx_tkey_set(&r->key, r);
	rctx_reg_tls[r->slot].rec = rec;
	rctx_reg_tls[r->slot].gen = gen;
	return rec;
}

struct rctx_reg_rec *
rctx_reg_claim(struct rctx_reg *r,
	       bool (*match)(const struct rctx_reg_rec *, const void *),
	       void (*init)(struct rctx_reg_rec *, const void *),
	       const void *arg)
{
	/* relaxed: see rctx_reg_mine */
	unsigned gen = atomic_load_explicit(&r->gen, memory_order_relaxed);
	struct rctx_reg_rec *rec = take_idle(r, match, arg);

	if (rec)
		return adopt(r, rec, gen);
	rec = rctx_calloc(1, r->size);
	if (rec == NULL)
		return NULL;
	atomic_init(&rec->owned, 1);
	if (init)
		init(rec, arg);
	/* relaxed: the CAS below publishes */
	rec->next = atomic_load_explicit(&r->head, memory_order_relaxed);
	/* release: registry.A, publishes the record; pairs with the acquire
	 * load in rctx_reg_first */
	while (!atomic_compare_exchange_weak_explicit(&r->head, &rec->next, rec,
						      memory_order_release,
						      memory_order_relaxed))
		;
	return adopt(r, rec, gen);
}

struct rctx_reg_rec *
rctx_reg_claim_idle(struct rctx_reg *r)
{
	/* relaxed: see rctx_reg_mine */
	unsigned gen = atomic_load_explicit(&r->gen, memory_order_relaxed);
	struct rctx_reg_rec *rec = take_idle(r, NULL, NULL);

	return rec ? adopt(r, rec, gen) : NULL;
}

struct rctx_reg_rec *
rctx_reg_take_all(struct rctx_reg *r)
{
	/* acquire: pairs with the pushes (registry.A); callers are quiet */
	struct rctx_reg_rec *rec =
	    atomic_exchange_explicit(&r->head, NULL, memory_order_acquire);

	/* relaxed: see rctx_reg_mine (I2) */
	atomic_fetch_add_explicit(&r->gen, 1, memory_order_relaxed);
	rctx_reg_tls[r->slot].rec = NULL;
	rctx_tkey_drop(&r->key);
	return rec;
}
