/* SPDX-License-Identifier: MIT */
/* Per-thread records: each live thread claims one record of a registry. */
#ifndef RCTX_REGISTRY_H
#define RCTX_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "internal.h"

/*
 * A pthread key that shutdown deletes and the next use makes again, so
 * that no destructor of the library is left in any thread once it has
 * shut down (a dlclose may follow). Every key of the library is one.
 */
struct rctx_tkey {
	pthread_mutex_t lock; /* makes and deletes the key */
	_Atomic bool made;
	pthread_key_t key;
	void (*dtor)(void *);
};

#define RCTX_TKEY_INIT(dtor_)                                                  \
	{                                                                      \
		.lock = PTHREAD_MUTEX_INITIALIZER, .dtor = (dtor_),            \
	}

/* Set the calling thread's value (making the key first if need be);
 * 0, or a positive errno when the key cannot be made or set. */
int rctx_tkey_set(struct rctx_tkey *k, void *val);

/* Shutdown (no other thread uses k): delete the key; values set in
 * live threads are dropped without their destructor running. */
void rctx_tkey_drop(struct rctx_tkey *k);

/* The header every record starts with. */
struct rctx_reg_rec {
	_Atomic uint32_t owned;	   /* a live thread uses this record */
	struct rctx_reg_rec *next; /* immutable once pushed */
};

/* One thread-local slot per registry (the fast path's cache). */
enum rctx_reg_slot {
	RCTX_REG_RUNNER = 0, /* after.c: who runs which after-func */
	RCTX_REG_STAGE = 1,  /* stage.c: staged timers */
	RCTX_REG_CACHE = 2,  /* alloc.c: context caches */
	RCTX_REG_NSLOTS
};

struct rctx_reg {
	_Atomic(struct rctx_reg_rec *) head; /* records, newest first */
	_Atomic unsigned gen;		     /* bumped by rctx_reg_take_all */
	enum rctx_reg_slot slot;
	size_t size; /* bytes per record, header first */
	/* Called at thread exit while the record is still the thread's. */
	void (*exit)(struct rctx_reg_rec *rec);
	struct rctx_tkey key; /* its destructor is rctx_reg_exit */
};

#define RCTX_REG_INIT(slot_, size_, exit_)                                     \
	{                                                                      \
		.gen = 1, .slot = (slot_), .size = (size_), .exit = (exit_),   \
		.key = RCTX_TKEY_INIT(rctx_reg_exit),                          \
	}

/* The destructor of every registry's key (arg: the registry). */
void rctx_reg_exit(void *arg);

struct rctx_reg_mine {
	struct rctx_reg_rec *rec;
	unsigned gen;
};

extern RCTX_TLS struct rctx_reg_mine rctx_reg_tls[RCTX_REG_NSLOTS];

/* The calling thread's record in r, or NULL if it has none (yet). */
static inline struct rctx_reg_rec *
rctx_reg_mine(struct rctx_reg *r)
{
	/* relaxed: the generation only tells whether rctx_reg_take_all
	 * freed the records, and that requires every other thread quiet */
	unsigned gen = atomic_load_explicit(&r->gen, memory_order_relaxed);
	struct rctx_reg_mine *m = &rctx_reg_tls[r->slot];

	return RCTX_LIKELY(m->rec != NULL && m->gen == gen) ? m->rec : NULL;
}

/*
 * Claim a record for the calling thread: an idle one for which match(rec,
 * arg) holds (match NULL: any), else a new zeroed one, which init(rec,
 * arg) fills before it is published (init may be NULL). NULL when out of
 * memory. The record stays the thread's until it exits.
 */
struct rctx_reg_rec *
rctx_reg_claim(struct rctx_reg *r,
	       bool (*match)(const struct rctx_reg_rec *, const void *),
	       void (*init)(struct rctx_reg_rec *, const void *),
	       const void *arg);

/*
 * Claim an idle record (one a thread gave back at exit) and never
 * allocate: NULL if there is none. Records carry no init here.
 */
struct rctx_reg_rec *rctx_reg_claim_idle(struct rctx_reg *r);

/* The newest record (walk on through ->next); any thread, any time. */
static inline struct rctx_reg_rec *
rctx_reg_first(struct rctx_reg *r)
{
	/* acquire: pairs with the release CAS in rctx_reg_claim that pushed
	 * the record, so its fields (and every older record's) are seen */
	return atomic_load_explicit(&r->head, memory_order_acquire);
}

/*
 * Shutdown (no other thread uses r): unlink every record and return them
 * for the caller to empty and free; threads that still cache theirs see
 * the generation change and neither use nor touch it again. The key is
 * deleted, so no destructor of ours is left in any thread (dlclose); the
 * next claim makes a new one.
 */
struct rctx_reg_rec *rctx_reg_take_all(struct rctx_reg *r);

#endif /* RCTX_REGISTRY_H */
