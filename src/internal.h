/* SPDX-License-Identifier: MIT */
/* Struct bodies shared by the modules; nothing here is public. */
#ifndef RCTX_INTERNAL_H
#define RCTX_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>
#include <sys/syscall.h>

#include <urcu-bp.h>

#include "clock.h"
#include "rctx.h"
#include "timer-types.h"

/*
 * Thread-locals use the initial-exec model: the library is linked at
 * start-up (or statically), and the default general-dynamic model of PIC
 * code costs a __tls_get_addr call per access on the hot path.
 */
#define RCTX_TLS __thread __attribute__((tls_model("initial-exec")))

/*
 * ThreadSanitizer cannot see the happens-before that liburcu provides (it
 * is not instrumented): a grace period orders every read-side section that
 * could see an object before the object's reuse. rctx tells TSan so: each
 * reader releases a token when it leaves its read-side section, and the
 * code that runs after a grace period acquires it (alloc.c, tree.c).
 */
#if defined(__SANITIZE_THREAD__)
#define RCTX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RCTX_TSAN 1
#endif
#endif
#ifdef RCTX_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define rctx_tsan_acquire(p) __tsan_acquire((void *)(p))
#define rctx_tsan_release(p) __tsan_release((void *)(p))
#else
#define rctx_tsan_acquire(p) ((void)0)
#define rctx_tsan_release(p) ((void)0)
#endif

/* The token readers release (see above); its address is what matters. */
extern char rctx_rcu_token;

/* Leave an RCU read-side section (with the TSan release above). */
static inline void
rctx_rcu_read_unlock(void)
{
	rctx_tsan_release(&rctx_rcu_token);
	rcu_read_unlock();
}

/* The futex system call on a 32-bit word (glibc has no wrapper). */
static inline long
rctx_futex(void *word, int op, uint32_t val, const struct timespec *ts,
	   uint32_t mask)
{
	return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, mask);
}

#define RCTX_LIKELY(x)	 __builtin_expect(!!(x), 1)
#define RCTX_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define rctx_container_of(p, type, member)                                     \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Kinds of context. */
enum rctx_kind {
	RCTX_KIND_ROOT = 1,    /* background, todo: static, never done */
	RCTX_KIND_CANCEL = 2,  /* with_cancel */
	RCTX_KIND_TIMER = 3,   /* with_deadline/with_timeout with own timer */
	RCTX_KIND_VALUE = 4,   /* with_value */
	RCTX_KIND_WITHOUT = 5, /* without_cancel */
};

/*
 * The state word of a cancelable context (one atomic 64-bit word):
 *   bits 0-1   err: 0 live, 1 ECANCELED, 2 ETIMEDOUT
 *   bit  2     WAITERS: a thread sleeps in rctx_wait on the low half
 *   bit  3     PENDING: err and cause are final, the eventfd (if any)
 *              is being written; an observer writes it and clears the
 *              bit itself rather than wait (tree.F)
 *   bit  4     CASCADE: done, but some descendant may not be yet; a
 *              losing canceller walks the subtree itself (tree.G)
 *   bit  5     TIMER: live, and its deadline counts in rctx_stats' timers
 *   bits 32-63 cause (int32)
 * err and cause change together in one CAS, so any thread that sees err
 * sees its cause. The low 32 bits (err + WAITERS) are the futex word.
 * Once err is set only the winner clears PENDING and CASCADE (stores),
 * and observers clear PENDING (CAS): no other bit changes.
 */
#define RCTX_ST_ERR_MASK 0x3u
#define RCTX_ST_CANCELED 0x1u
#define RCTX_ST_TIMEDOUT 0x2u
#define RCTX_ST_WAITERS	 0x4u
#define RCTX_ST_PENDING	 0x8u  /* done, eventfd being written (wait.B) */
#define RCTX_ST_CASCADE	 0x10u /* done, subtree not all marked (tree.G) */
/* err and cause: what a context's done state passes to its children */
#define RCTX_ST_FINAL_MASK (0xffffffff00000000ull | RCTX_ST_ERR_MASK)

/* live, and its deadline counted in stats (stats.c I3) */
#define RCTX_ST_TIMER 0x20u

static inline uint64_t
rctx_st_make(unsigned err_code, int cause)
{
	return (uint64_t)err_code | ((uint64_t)(uint32_t)cause << 32);
}

static inline int
rctx_st_err(uint64_t s)
{
	static const int map[4] = { 0, ECANCELED, ETIMEDOUT, 0 };
	return map[s & RCTX_ST_ERR_MASK];
}

static inline int
rctx_st_cause(uint64_t s)
{
	return (int)(int32_t)(s >> 32);
}

/*
 * Children set of a cancelable context. Entries are child contexts, or
 * after-func registrations tagged with bit 0. The first RCTX_CSET_INLINE
 * live inline; past that the set grows by chaining tables of doubling
 * size, which hang off the set's extension block (allocated on first
 * need). A table never moves, so a child's slot address is fixed for its
 * life and removal is one CAS. See children.h for the protocol.
 */
#define RCTX_CSET_INLINE    2
#define RCTX_CSET_TAG_AFTER ((uintptr_t)1)

struct rctx_ctable;

/* An after-func registration (after.h). */
struct rctx_after_impl;

/*
 * What a cancelable context rarely needs, off its hot struct: allocated
 * the first time it is needed (a third child, rctx_fd) and kept with the
 * context's memory from then on, so a reader that still holds a stale
 * pointer to a freed context (tree.E) never reads freed memory; it goes
 * back to malloc with the context (children.c I3). A bare set (a
 * shard's) has one too, and uses only the set part.
 */
struct rctx_ext {
	/* the set's growth: */
	_Atomic(struct rctx_ctable *) top; /* newest (largest) table */
	_Atomic(_Atomic uintptr_t *) hint; /* a recently freed slot */
	/* the context's: */
	_Atomic int fd;		    /* eventfd, -1 until rctx_fd */
	_Atomic uint8_t fd_written; /* someone wrote the eventfd (wait.B) */
};

struct rctx_cset {
	_Atomic uintptr_t inl[RCTX_CSET_INLINE];
	_Atomic(struct rctx_ext *) x; /* NULL until needed */
};

/* A per-CPU part of a context many threads derive from (shard.h). */
struct rctx_shard;

/* Lazily built value index (value.c). */
struct rctx_vindex;

/* struct rctx flags */
#define RCTX_F_CLASS  0x3u  /* enum rctx_class: the size it was given */
#define RCTX_F_ARMED  0x4u  /* TIMER: the timer was handed to the service */
#define RCTX_F_DEFER  0x8u  /* reuse only after a grace period (tree.E) */
#define RCTX_F_VINDEX 0x10u /* VALUE at an indexed depth: vindex exists */

/*
 * One layout per kind, each a prefix of struct rctx (docs/design.md,
 * "A layout per kind"): a value context is allocated up to `vindex`, a
 * cancel or without_cancel context up to `timer`, a timer context whole.
 * A field past a kind's end must never be touched for that kind; the
 * unions name what each kind keeps at an offset. Derived facts are not
 * stored, as Go does not store them: the cancellation source (rctx_src),
 * the deadline (rctx_deadline_get) and the nearest value context
 * (rctx_vtop) are found by walking up to the kind that defines them.
 *
 * Offsets 24 and 32 are what the allocator links freed contexts through
 * (free_next; batch_next on a batch's head): no thread reads them in a
 * context it holds no reference to (tree.E), whose memory may be freed.
 */
struct rctx {
	/* --- every kind --- */
	_Atomic uint32_t refs; /* references; 0 means being freed */
	uint8_t kind;	       /* enum rctx_kind */
	union {
		uint8_t registered; /* cancelable: in src-parent's set: 1
				     * its own set, 2 one of its shards' */
		uint8_t vdepth;	    /* VALUE: 1 + vprev's, modulo 256 */
	};
	uint8_t pshard; /* our reference on parent is on one of its shards */
	uint8_t flags;	/* RCTX_F_* */
	struct rctx *parent; /* direct parent; holds one reference */
#ifdef RCTX_DEBUG
	uint32_t magic; /* RCTX_MAGIC_LIVE / RCTX_MAGIC_DEAD */
#endif
	/* split per CPU (shard.h): whole, with the tag of the last thread
	 * that derived under us and how often it changed, or the shards */
	_Atomic uint64_t share;
	union {
		const void *key;	/* VALUE */
		struct rctx *work_next; /* cancelable: the cascade's list
					 * (canceller only) */
		struct rctx *free_next; /* freed: cache and batch lists */
	};
	union {
		void *val; /* VALUE */
		/* cancelable: our entry in our src-parent's set (or a
		 * shard's), written by us when registered and by the
		 * canceller that lists us (the same address) */
		_Atomic(_Atomic uintptr_t *) slot;
		struct rctx *batch_next; /* freed: a batch's next batch */
	};
	/* --- a value context ends here --- */
	union {
		/* VALUE at an indexed depth (RCTX_F_VINDEX) */
		_Atomic(struct rctx_vindex *) vindex;
		_Atomic uint64_t state; /* cancelable: see RCTX_ST_* */
	};
	struct rctx_cset children; /* cancelable */
	/* after-funcs that found the set full: a list through their own
	 * storage, under olock (after.c, overflow); registering never
	 * allocates, so this is not in the extension block */
	_Atomic(struct rctx_after_impl *) aover;
	_Atomic uint32_t walkers; /* cascades walking our children set */
	atomic_flag olock;
	/* --- a cancel or without_cancel context ends here --- */
	struct rctx_timer timer; /* TIMER; timer.expires is the deadline,
				  * timer.aux the cause given */
};

/* Bytes allocated for each layout. */
#define RCTX_SIZE_VALUE	 offsetof(struct rctx, vindex)
#define RCTX_SIZE_CANCEL offsetof(struct rctx, timer)
#define RCTX_SIZE_TIMER	 sizeof(struct rctx)

/* Allocation classes: value, cancel (and without_cancel, and a value
 * with an index), timer. */
enum rctx_class {
	RCTX_CLASS_VALUE,
	RCTX_CLASS_CANCEL,
	RCTX_CLASS_TIMER,
	RCTX_CLASSES
};

/* The class c was allocated in: kept in its flags from construction to
 * reuse (the allocator's lists go by it). */
static inline enum rctx_class
rctx_class_of(const struct rctx *c)
{
	return (enum rctx_class)(c->flags & RCTX_F_CLASS);
}

static inline bool
rctx_is_cancelable(const struct rctx *c)
{
	/* CANCEL and TIMER are 2 and 3: one unsigned compare */
	return (unsigned)(c->kind - RCTX_KIND_CANCEL) < 2u;
}

/*
 * c's cancellation source: c if cancelable, else the nearest cancelable
 * ancestor through value contexts, NULL if c can never be done (a root,
 * without_cancel, or values above one).
 */
static inline struct rctx *
rctx_src(const struct rctx *c)
{
	/* cancelable first: an observer's usual case costs one compare */
	while (!rctx_is_cancelable(c)) {
		if (c->kind != RCTX_KIND_VALUE)
			return NULL;
		c = c->parent;
	}
	return (struct rctx *)c;
}

/* Nearest value context at or above c, NULL if none. */
static inline struct rctx *
rctx_vtop(const struct rctx *c)
{
	while (c->kind != RCTX_KIND_VALUE && c->kind != RCTX_KIND_ROOT)
		c = c->parent;
	return c->kind == RCTX_KIND_VALUE ? (struct rctx *)c : NULL;
}

/* VALUE v: the nearest value context above its parent. */
static inline struct rctx *
rctx_vprev(const struct rctx *v)
{
	return rctx_vtop(v->parent);
}

/*
 * c's deadline into *d: its own if a timer, else its parent's, none
 * past a root or without_cancel. True if it has one.
 */
static inline bool
rctx_deadline_get(const struct rctx *c, rctx_time_t *d)
{
	for (;;) {
		switch (c->kind) {
		case RCTX_KIND_TIMER:
			*d = c->timer.expires;
			return true;
		case RCTX_KIND_CANCEL:
		case RCTX_KIND_VALUE:
			c = c->parent;
			break;
		default:
			*d = INT64_MAX;
			return false;
		}
	}
}

/* c's deadline, INT64_MAX if none. */
static inline rctx_time_t
rctx_deadline_of(const struct rctx *c)
{
	rctx_time_t d;

	(void)rctx_deadline_get(c, &d);
	return d;
}

/* The extension block of cancelable c, or NULL if it has none yet.
 * seq_cst: it is installed with seq_cst (children.C), and the readers
 * of fd rely on the single total order (wait.B). */
static inline struct rctx_ext *
rctx_ext_peek(struct rctx *c)
{
	return atomic_load_explicit(&c->children.x, memory_order_seq_cst);
}

/* The set's extension block, made if missing; NULL out of memory. */
struct rctx_ext *rctx_cset_ext(struct rctx_cset *s);

static inline struct rctx_ext *
rctx_ext_get(struct rctx *c)
{
	return rctx_cset_ext(&c->children);
}

#ifdef RCTX_DEBUG
#define RCTX_MAGIC_LIVE 0x52435458u /* "RCTX" */
#define RCTX_MAGIC_DEAD 0xdeadc7c7u
#endif

#endif /* RCTX_INTERNAL_H */
