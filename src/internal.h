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
 * size. A table never moves, so a child's slot address is fixed for its
 * life and removal is one CAS. See children.h for the protocol.
 */
#define RCTX_CSET_INLINE    4
#define RCTX_CSET_TAG_AFTER ((uintptr_t)1)

struct rctx_ctable;

struct rctx_cset {
	_Atomic uintptr_t inl[RCTX_CSET_INLINE];
	_Atomic(struct rctx_ctable *) top; /* newest (largest) table */
	_Atomic(_Atomic uintptr_t *) hint; /* a recently freed slot */
};

/* A per-CPU part of a context many threads derive from (shard.h). */
struct rctx_shard;

/* An after-func registration (after.h). */
struct rctx_after_impl;

/* Lazily built value index (value.c). */
struct rctx_vindex;

/*
 * Field order follows use: the first cache line holds what observers and
 * the cancel cascade touch on every context they visit (refs, state, src,
 * fd, the work list), the second the children set; a cascade over a wide
 * fan-out then misses two lines per child, not four.
 */
struct rctx {
	/* --- line 0: observers and the cascade --- */
	_Atomic uint32_t refs;	/* references; 0 means being freed */
	uint8_t kind;		/* enum rctx_kind */
	uint8_t registered;	/* in src-parent's children set: 1 its own
				 * set, 2 one of its shards' (shard.c) */
	uint8_t has_deadline;	/* deadline below is meaningful */
	uint8_t armed;		/* TIMER: the timer was handed to the service */
	_Atomic uint64_t state; /* cancelable: see RCTX_ST_* */
	struct rctx *src;	/* cancellation source: self if cancelable,
				 * nearest cancelable ancestor otherwise,
				 * NULL if this context can never be done */
	_Atomic int fd;		/* eventfd, -1 until rctx_fd */
	_Atomic uint32_t walkers; /* cascades walking our children set */
	struct rctx *work_next;	  /* cascade work list (canceller only) */
	_Atomic uintptr_t *wslot; /* slot the canceller found us in; it
				   * removes us there once every node is
				   * marked (canceller only) */
	/* after-funcs that found the set full: a list through their own
	 * storage, under the spin bit olock (after.c, overflow) */
	_Atomic(struct rctx_after_impl *) aover;
	_Atomic uint8_t fd_written; /* someone wrote the eventfd (wait.B) */
	uint8_t defer_free; /* reuse only after a grace period (tree.E) */
	atomic_flag olock;
	/* per-CPU shards (shard.c): pshard, our reference on parent is
	 * counted on one of its shards; share, whether we are split
	 * (RCTX_SHARE_STATE), the last thread that derived under us and
	 * how often that changed */
	uint8_t pshard;
	_Atomic uint32_t share;

	/* --- line 1: the children set (cancelable) --- */
	struct rctx_cset children;
	struct rctx *parent;  /* direct parent; holds one reference */
	rctx_time_t deadline; /* effective deadline, INT64_MAX if none */

	/* --- values --- */
	struct rctx *vtop; /* nearest value context at or above */
	const void *key;   /* VALUE only */
	void *val;
	struct rctx *vprev; /* VALUE: nearest value context above parent */
	_Atomic(struct rctx_vindex *) vindex; /* VALUE, every k-th depth */
	uint32_t vdepth;		      /* VALUE: 1 + vprev->vdepth */

	/* --- registration and deadline --- */
	int dcause;		 /* TIMER: cause given at construction */
	_Atomic uintptr_t *slot; /* our entry in cparent's children set */
	struct rctx *cparent;	 /* parent->src when registered */
#ifdef RCTX_DEBUG
	uint32_t magic; /* RCTX_MAGIC_LIVE / RCTX_MAGIC_DEAD */
#endif

	/* --- TIMER --- */
	struct rctx_timer timer;

	/* --- allocator --- */
	struct rctx *free_next; /* cache / deferred-free lists */
	struct rctx *gp_next;	/* batch head: next batch waiting for RCU */

	/* --- shared by many threads: per-CPU shards (shard.c) --- */
	_Atomic(struct rctx_shard *) shards;
};

#ifdef RCTX_DEBUG
#define RCTX_MAGIC_LIVE 0x52435458u /* "RCTX" */
#define RCTX_MAGIC_DEAD 0xdeadc7c7u
#endif

#endif /* RCTX_INTERNAL_H */
