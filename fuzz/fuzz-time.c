/* SPDX-License-Identifier: MIT */
/* Fuzz target: deadline arithmetic near the int64 limits, against a model. */

/*
 * The input is a list of records: an operation byte, a selector byte and
 * eight raw bytes that together name a time value (raw, a limit, or an
 * offset from the real clock). Operations derive timeout and deadline
 * contexts (plain and _cause) under a parent from the pool, cancel, and
 * advance a virtual clock that runs the event loops of rctx and of the
 * mutex baseline mctx. Each library is checked against the model: the
 * effective deadline (now + timeout saturates at INT64_MAX and never
 * wraps; the earlier of own and parent's wins), done-ness at construction
 * (a deadline at or before now is done at once; a later one is not), and
 * expiry by loop runs (every deadline due at the virtual now fires; none
 * fires early). Where a real-clock read makes the answer depend on timing,
 * the model keeps a range and accepts either outcome at its edge.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mctx.h"
#include "rctx.h"
#include "wheel.h"

#define MAXNODES 48
#define MAXOPS	 200

/*
 * Deviations these targets found, both fixed since; 1 accepts them again:
 * TOLERATE_CLAMPED_TIMEOUT: rctx_with_timeout(p, t <= 0) reports the
 *   deadline now instead of now + t (API.md: now + t).
 * TOLERATE_MAX_NO_DEADLINE: mctx reports no deadline for a deadline of
 *   exactly INT64_MAX (rctx reports INT64_MAX).
 */
/*
 * Lateness allowed to a loop run: the wheel files deadlines in ticks, so a
 * deadline fires at the first run at or after the end of its tick, and
 * loop_next may name that tick's end. Never early is checked exactly.
 */
#define LATE ((int64_t)1 << RCTX_WHEEL_TICK_SHIFT_DEFAULT)

#ifndef TOLERATE_CLAMPED_TIMEOUT
#define TOLERATE_CLAMPED_TIMEOUT 0
#endif
#ifndef TOLERATE_MAX_NO_DEADLINE
#define TOLERATE_MAX_NO_DEADLINE 0
#endif

enum kind { K_CANCEL, K_TIMER, K_WITHOUT };

/* One library behind a table, so the same checks drive rctx and mctx. */
struct lib {
	const char *name;
	void *(*background)(void);
	void *(*with_cancel)(void *p);
	void *(*with_deadline)(void *p, int64_t d, bool cause, int c);
	void *(*with_timeout)(void *p, int64_t t, bool cause, int c);
	void *(*without_cancel)(void *p);
	int (*cancel)(void *c, int cause);
	int (*err)(void *c);
	int (*cause)(void *c);
	bool (*deadline)(void *c, int64_t *d);
	void (*release)(void *c);
	void *(*loop_new)(void);
	int64_t (*loop_next)(void *l);
	int (*loop_timeout_ms)(void *l);
	int (*loop_run)(void *l, int64_t now);
	void (*loop_free)(void *l);
};

static void *
r_background(void)
{
	return rctx_background();
}
static void *
r_with_cancel(void *p)
{
	return rctx_with_cancel(p);
}
static void *
r_with_deadline(void *p, int64_t d, bool cause, int c)
{
	return cause ? rctx_with_deadline_cause(p, d, c)
		     : rctx_with_deadline(p, d);
}
static void *
r_with_timeout(void *p, int64_t t, bool cause, int c)
{
	return cause ? rctx_with_timeout_cause(p, t, c)
		     : rctx_with_timeout(p, t);
}
static void *
r_without_cancel(void *p)
{
	return rctx_without_cancel(p);
}
static int
r_cancel(void *c, int cause)
{
	return cause ? rctx_cancel_cause(c, cause) : rctx_cancel(c);
}
static int
r_err(void *c)
{
	return rctx_err(c);
}
static int
r_cause(void *c)
{
	return rctx_cause(c);
}
static bool
r_deadline(void *c, int64_t *d)
{
	return rctx_deadline(c, d);
}
static void
r_release(void *c)
{
	rctx_release(c);
}
static void *
r_loop_new(void)
{
	return rctx_loop_new();
}
static int64_t
r_loop_next(void *l)
{
	return rctx_loop_next(l);
}
static int
r_loop_timeout_ms(void *l)
{
	return rctx_loop_timeout_ms(l);
}
static int
r_loop_run(void *l, int64_t now)
{
	return rctx_loop_run(l, now);
}
static void
r_loop_free(void *l)
{
	rctx_loop_free(l);
}

static void *
m_background(void)
{
	return mctx_background();
}
static void *
m_with_cancel(void *p)
{
	return mctx_with_cancel(p);
}
static void *
m_with_deadline(void *p, int64_t d, bool cause, int c)
{
	return cause ? mctx_with_deadline_cause(p, d, c)
		     : mctx_with_deadline(p, d);
}
static void *
m_with_timeout(void *p, int64_t t, bool cause, int c)
{
	return cause ? mctx_with_timeout_cause(p, t, c)
		     : mctx_with_timeout(p, t);
}
static void *
m_without_cancel(void *p)
{
	return mctx_without_cancel(p);
}
static int
m_cancel(void *c, int cause)
{
	return cause ? mctx_cancel_cause(c, cause) : mctx_cancel(c);
}
static int
m_err(void *c)
{
	return mctx_err(c);
}
static int
m_cause(void *c)
{
	return mctx_cause(c);
}
static bool
m_deadline(void *c, int64_t *d)
{
	return mctx_deadline(c, d);
}
static void
m_release(void *c)
{
	mctx_release(c);
}
static void *
m_loop_new(void)
{
	return mctx_loop_new();
}
static int64_t
m_loop_next(void *l)
{
	return mctx_loop_next(l);
}
static int
m_loop_timeout_ms(void *l)
{
	return mctx_loop_timeout_ms(l);
}
static int
m_loop_run(void *l, int64_t now)
{
	return mctx_loop_run(l, now);
}
static void
m_loop_free(void *l)
{
	mctx_loop_free(l);
}

static const struct lib libs[2] = {
	{ "rctx", r_background, r_with_cancel, r_with_deadline, r_with_timeout,
	  r_without_cancel, r_cancel, r_err, r_cause, r_deadline, r_release,
	  r_loop_new, r_loop_next, r_loop_timeout_ms, r_loop_run, r_loop_free },
	{ "mctx", m_background, m_with_cancel, m_with_deadline, m_with_timeout,
	  m_without_cancel, m_cancel, m_err, m_cause, m_deadline, m_release,
	  m_loop_new, m_loop_next, m_loop_timeout_ms, m_loop_run, m_loop_free },
};

/* The model of one node as seen by one library. */
struct node {
	void *c;
	int parent;  /* -1: background */
	int cparent; /* nearest ancestor that can cancel it */
	enum kind kind;
	bool has_dl;
	int64_t dl_lo, dl_hi; /* effective deadline range */
	bool own;	      /* has its own timer over [own_lo, own_hi] */
	int64_t own_lo, own_hi;
	int dcause;
	int err, cause;
};

static struct {
	const struct lib *lib;
	const uint8_t *p, *end;
	int opno;
	int n;
	struct node node[MAXNODES];
	int64_t real0, vnow;
	void *loop;
} S;

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz-time: %s: op %d: ", S.lib->name, S.opno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			fail(__VA_ARGS__);                                     \
	} while (0)

static uint8_t
next_byte(void)
{
	return S.p < S.end ? *S.p++ : 0;
}

static int64_t
min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* A time value: selector byte plus eight raw bytes. */
static int64_t
next_time(void)
{
	uint8_t sel = next_byte();
	uint64_t raw = 0;
	for (int i = 0; i < 8; i++)
		raw = raw << 8 | next_byte();
	int64_t small = (int64_t)(raw % (1u << 24)) - (1 << 23);

	switch (sel % 16) {
	case 0:
		return (int64_t)raw;
	case 1:
		return INT64_MIN;
	case 2:
		return INT64_MIN + 1;
	case 3:
		return -1;
	case 4:
		return 0;
	case 5:
		return 1;
	case 6:
		return INT64_MAX;
	case 7:
		return INT64_MAX - 1;
	case 8:
		return S.real0 + small;
	case 9:
		return INT64_MAX - S.real0 + small;
	case 10:
		return -S.real0 + small;
	case 11:
		return (int64_t)(raw >> 24);
	case 12:
		return INT64_MAX - (int64_t)(raw >> 40);
	case 13:
		return rctx_clock_add(S.vnow,
				      (int64_t)(raw % ((uint64_t)1 << 34)));
	case 14:
		return small;
	default:
		return -(int64_t)(raw >> 24);
	}
}

static const int causes[] = { 0, ECANCELED, ETIMEDOUT, -7, INT_MAX, 99 };

static int
next_cause(void)
{
	return causes[next_byte() % (sizeof(causes) / sizeof(causes[0]))];
}

static int
parent_src(int p)
{
	if (p < 0)
		return -1;
	return S.node[p].kind == K_WITHOUT ? -1 : p;
}

/* Children of a node done (in this step or before) follow it. */
static void
settle(void)
{
	for (int i = 0; i < S.n; i++) {
		struct node *x = &S.node[i];
		if (x->kind != K_WITHOUT && x->err == 0 && x->cparent >= 0 &&
		    S.node[x->cparent].err != 0) {
			x->err = S.node[x->cparent].err;
			x->cause = S.node[x->cparent].cause;
			x->own = false;
		}
	}
}

static void
check_node(int i)
{
	struct node *x = &S.node[i];
	int64_t d = 0;
	int err = S.lib->err(x->c);
	int cause = S.lib->cause(x->c);
	bool has = S.lib->deadline(x->c, &d);

	CHECK(err == x->err && cause == x->cause,
	      "node %d: err/cause %d/%d, model %d/%d", i, err, cause, x->err,
	      x->cause);
	CHECK(has == x->has_dl || (TOLERATE_MAX_NO_DEADLINE && x->has_dl &&
				   x->dl_lo == INT64_MAX),
	      "node %d: has deadline %d, model %d", i, has, x->has_dl);
	if (has)
		CHECK(d >= x->dl_lo && d <= x->dl_hi,
		      "node %d: deadline %lld, model [%lld, %lld]", i,
		      (long long)d, (long long)x->dl_lo, (long long)x->dl_hi);
}

static void
op_derive(int what)
{
	int pi = (int)(next_byte() % (MAXNODES + 1)) - 1;
	if (pi >= S.n)
		pi = -1;
	bool use_cause = next_byte() & 1;
	int dc = use_cause ? next_cause() : 0;
	int64_t v = next_time();
	if (S.n == MAXNODES)
		return;

	void *pc = pi >= 0 ? S.node[pi].c : S.lib->background();
	struct node *p = pi >= 0 ? &S.node[pi] : NULL;
	struct node *x = &S.node[S.n];
	memset(x, 0, sizeof(*x));
	x->parent = pi;
	x->cparent = parent_src(pi);
	bool p_has = p != NULL && p->has_dl;

	if (what == 0) {
		x->kind = K_CANCEL;
		x->c = S.lib->with_cancel(pc);
		x->has_dl = p_has;
		if (p_has) {
			x->dl_lo = p->dl_lo;
			x->dl_hi = p->dl_hi;
		}
	} else if (what == 3) {
		x->kind = K_WITHOUT;
		x->cparent = -1;
		x->c = S.lib->without_cancel(pc);
	} else {
		bool timeout = what == 2;
		int64_t t0 = rctx_now();
		x->kind = K_TIMER;
		x->c = timeout ? S.lib->with_timeout(pc, v, use_cause, dc)
			       : S.lib->with_deadline(pc, v, use_cause, dc);
		int64_t t1 = rctx_now();
		int64_t lo = timeout ? rctx_clock_add(t0, v) : v;
		int64_t hi = timeout ? rctx_clock_add(t1, v) : v;
		if (TOLERATE_CLAMPED_TIMEOUT && timeout && v <= 0)
			hi = t1;
		x->has_dl = true;
		x->dl_lo = p_has ? min64(p->dl_lo, lo) : lo;
		x->dl_hi = p_has ? min64(p->dl_hi, hi) : hi;
		x->dcause = dc;
		if (!p_has || hi < p->dl_lo) {
			x->own = true;
			x->own_lo = lo;
			x->own_hi = hi;
		} else if (lo > p->dl_hi) {
			x->own = false;
		} else {
			/* Equal to the parent's, give or take the clock. */
			x->own = true;
			x->own_lo = lo;
			x->own_hi = hi;
		}
		CHECK(x->c != NULL, "derive failed: %s", strerror(errno));
		bool pdone = x->cparent >= 0 && S.node[x->cparent].err != 0;
		int err = S.lib->err(x->c);
		int cause = S.lib->cause(x->c);
		bool strict_own = !p_has || hi < p->dl_lo;
		int tc = dc ? dc : ETIMEDOUT;
		if (!pdone && strict_own) {
			/* Done at once iff deadline <= a now in [t0, t1]. */
			if (hi <= t0)
				CHECK(err == ETIMEDOUT && cause == tc,
				      "deadline %lld <= now %lld: err/cause "
				      "%d/%d",
				      (long long)hi, (long long)t0, err, cause);
			else if (lo > t1)
				CHECK(err == 0,
				      "deadline %lld > now %lld "
				      "but done %d/%d",
				      (long long)lo, (long long)t1, err, cause);
			else
				CHECK(err == 0 ||
					  (err == ETIMEDOUT && cause == tc),
				      "deadline at now: err/cause %d/%d", err,
				      cause);
		} else if (!pdone) {
			/*
			 * The parent's deadline is as early or earlier but
			 * has not fired. Go makes a plain cancel child (live
			 * until the parent fires); API.md's "a deadline in
			 * the past gives a done context" allows done too.
			 */
			if (lo > t1)
				CHECK(err == 0,
				      "deadline %lld > now %lld "
				      "but done %d/%d",
				      (long long)lo, (long long)t1, err, cause);
			else
				CHECK(err == 0 || err == ETIMEDOUT,
				      "past deadline under live parent: %d/%d",
				      err, cause);
		}
		if (!pdone) {
			x->err = err;
			x->cause = cause;
			if (err != 0)
				x->own = false;
		}
	}
	CHECK(x->c != NULL, "derive %d failed: %s", what, strerror(errno));
	S.n++;
	settle();
}

static void
op_cancel(void)
{
	int i = next_byte() % MAXNODES;
	int cause = next_cause();
	if (i >= S.n)
		return;
	struct node *x = &S.node[i];
	int rc = S.lib->cancel(x->c, cause);
	int want;
	if (x->kind == K_WITHOUT)
		want = -EINVAL;
	else if (x->err != 0)
		want = -EALREADY;
	else
		want = 0;
	CHECK(rc == want, "cancel node %d: %d, model %d", i, rc, want);
	if (want == 0) {
		x->err = ECANCELED;
		x->cause = cause ? cause : ECANCELED;
		x->own = false;
	}
	settle();
}

static void
op_advance(void)
{
	uint8_t how = next_byte();
	int64_t v = next_time();
	int64_t to;

	if (how & 1 && S.n > 0) {
		/* Land on a node's deadline, or just before it. */
		struct node *x = &S.node[v < 0 ? (uint64_t) - (v + 1) % S.n
					       : (uint64_t)v % S.n];
		to = how & 2 ? x->dl_hi : rctx_clock_add(x->dl_lo, -1);
	} else {
		to = v;
	}
	if (to == INT64_MAX)
		to = INT64_MAX - 1; /* a saturated deadline means never */
	if (to < S.vnow)
		to = S.vnow;
	S.vnow = to;

	S.lib->loop_run(S.loop, S.vnow);
	for (int i = 0; i < S.n; i++) {
		struct node *x = &S.node[i];
		if (x->err != 0)
			continue;
		int err = S.lib->err(x->c);
		int cause = S.lib->cause(x->c);
		bool from_parent =
		    x->cparent >= 0 && S.node[x->cparent].err != 0;
		if (from_parent) {
			/*
			 * The parent fired in this run. If this node's own
			 * timer was due too, either may have come first.
			 */
			struct node *cp = &S.node[x->cparent];
			bool own_due = x->own && x->own_lo <= S.vnow;
			bool via_parent = err == cp->err && cause == cp->cause;
			bool via_own =
			    own_due && err == ETIMEDOUT &&
			    cause == (x->dcause ? x->dcause : ETIMEDOUT);
			CHECK(via_parent || via_own,
			      "node %d: %d/%d after parent %d fired %d/%d", i,
			      err, cause, x->cparent, cp->err, cp->cause);
			x->err = err;
			x->cause = cause;
			x->own = false;
			continue;
		}
		if (!x->own)
			continue;
		int tc = x->dcause ? x->dcause : ETIMEDOUT;
		if (rctx_clock_add(x->own_hi, LATE) <= S.vnow)
			CHECK(err == ETIMEDOUT && cause == tc,
			      "node %d: deadline %lld due at %lld: %d/%d", i,
			      (long long)x->own_hi, (long long)S.vnow, err,
			      cause);
		else if (x->own_lo > S.vnow)
			CHECK(err == 0,
			      "node %d: deadline %lld fired early "
			      "at %lld",
			      i, (long long)x->own_lo, (long long)S.vnow);
		else
			CHECK(err == 0 || (err == ETIMEDOUT && cause == tc),
			      "node %d at its deadline: %d/%d", i, err, cause);
		if (err != 0) {
			x->err = err;
			x->cause = cause;
			x->own = false;
		}
	}
	settle();
}

/* The loop must never plan to sleep past a live deadline. */
static void
check_loop(void)
{
	int64_t live = INT64_MAX;
	for (int i = 0; i < S.n; i++) {
		struct node *x = &S.node[i];
		if (x->own && x->err == 0 && x->own_hi < live)
			live = x->own_hi;
	}
	int64_t next = S.lib->loop_next(S.loop);
	/* Overdue timers (armed behind the virtual clock) are due now. */
	if (live != INT64_MAX && rctx_clock_add(live, LATE) < S.vnow)
		live = S.vnow;
	else if (live != INT64_MAX)
		live = rctx_clock_add(live, LATE);
	if (live != INT64_MAX)
		CHECK(next != -1 && next <= live,
		      "loop_next %lld, live deadline at %lld", (long long)next,
		      (long long)live);
	/*
	 * The timeout may end before the next deadline (the loop then takes
	 * timers in hand and plans again: precise expiry), but never sleeps
	 * past a live one by more than its rounding up to a millisecond.
	 */
	int64_t t0 = rctx_now();
	int ms = S.lib->loop_timeout_ms(S.loop);
	next = S.lib->loop_next(S.loop);
	CHECK(ms >= -1, "loop_timeout_ms %d", ms);
	CHECK((ms == -1) == (next == -1),
	      "loop_timeout_ms %d but loop_next %lld", ms, (long long)next);
	if (ms >= 0 && ms < INT_MAX && live != INT64_MAX)
		CHECK(t0 + (int64_t)ms * RCTX_MSEC <=
			  rctx_clock_add(live > t0 ? live : t0, RCTX_MSEC),
		      "loop_timeout_ms %d sleeps past live deadline %lld "
		      "(now %lld)",
		      ms, (long long)live, (long long)t0);
}

static void
run_one(const struct lib *lib, const uint8_t *data, size_t size)
{
	memset(&S, 0, sizeof(S));
	S.lib = lib;
	S.p = data;
	S.end = data + size;
	S.loop = lib->loop_new();
	if (S.loop == NULL)
		fail("loop_new: %s", strerror(errno));
	S.real0 = rctx_now();
	S.vnow = S.real0;
	for (S.opno = 0; S.opno < MAXOPS && S.p < S.end; S.opno++) {
		uint8_t op = next_byte();
		switch (op % 8) {
		case 0:
		case 1:
		case 2:
			op_derive(1 + (op >> 3) % 2);
			break;
		case 3:
			op_derive((op >> 3) % 2 ? 0 : 3);
			break;
		case 4:
			op_cancel();
			break;
		default:
			op_advance();
			break;
		}
		for (int i = 0; i < S.n; i++)
			check_node(i);
		check_loop();
	}
	for (int i = S.n - 1; i >= 0; i--)
		lib->release(S.node[i].c);
	lib->loop_run(S.loop, S.vnow);
	lib->loop_free(S.loop);
}

/* Once, at exit: stop the libraries so LeakSanitizer sees a clean heap. */
static void
shutdown_all(void)
{
	rctx_shutdown();
	mctx_shutdown();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	if (!once) {
		once = true;
		atexit(shutdown_all);
	}
	run_one(&libs[0], data, size);
	run_one(&libs[1], data, size);
	return 0;
}
