/* SPDX-License-Identifier: MIT */
/* After-funcs: callbacks run once a context is done, in caller storage. */
#ifndef RCTX_AFTER_H
#define RCTX_AFTER_H

#include "internal.h"

/* The layout behind rctx_after_t (caller-owned, 64 bytes). */
struct rctx_after_impl {
	struct rctx *ctx;	 /* reference held while pending */
	struct rctx *src;	 /* whose children set holds us */
	_Atomic uintptr_t *slot; /* our entry in src's set */
	void (*fn)(void *arg);
	void *arg;
	_Atomic uint32_t state; /* RCTX_AFTER_* */
	_Atomic uint32_t aux;	/* 0, or a loop registration (loopafter.c) */
	/* overflow list (slot == NULL), under src->olock */
	struct rctx_after_impl *onext;
	struct rctx_after_impl **opprev; /* NULL when not linked */
};

enum {
	RCTX_AFTER_IDLE = 0,	 /* stopped, fired, or never registered */
	RCTX_AFTER_PENDING = 1,	 /* in src's set, or on a never-done ctx */
	RCTX_AFTER_FIRED = 2,	 /* fn claimed by a canceller */
	RCTX_AFTER_STOPPING = 3, /* a stopper reads src (after.c, after.F) */
	RCTX_AFTER_HANDOFF = 4,	 /* claimed; the stopper holds the reference */
};

/* Always 0: a full set sends the registration to the overflow list. */
int rctx_after_register(struct rctx *ctx, rctx_after_t *reg, void (*fn)(void *),
			void *arg);
/* The same, with aux stored before the entry is published; a non-zero aux
 * hands the claimed registration to rctx_lafter_fire instead of fn. */
int rctx_after_register_aux(struct rctx *ctx, rctx_after_t *reg,
			    void (*fn)(void *), void *arg, uint32_t aux);
bool rctx_after_unregister(rctx_after_t *reg);

/* Cascade hook: a tagged entry of a done context's set; claim and run. */
void rctx_after_fire(_Atomic uintptr_t *slot, uintptr_t entry);

/* Cascade hook: run the registrations on done context c's overflow list. */
void rctx_after_fire_overflow(struct rctx *c);

/* Bracket the cascade's after-func phase on this thread (see stop). */
void rctx_after_cascade_enter(void);
void rctx_after_cascade_leave(void);

/* Free the runner records (rctx_shutdown). */
void rctx_after_shutdown(void);

/* Install, at load, the function that takes a claimed registration whose
 * aux word is set (loopafter.c: queue it on its loop). */
void rctx_after_set_aux_fire(void (*fn)(struct rctx_after_impl *a));

#endif /* RCTX_AFTER_H */
