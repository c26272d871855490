/* SPDX-License-Identifier: MIT */
/* libFuzzer target: timing wheel ops checked against a sorted-list model. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wheelcheck.h"

/*
 * Input: byte 0 picks the tick shift (low 5 bits, capped at 30) and the
 * mode (bit 7: precise); bytes 1-2 pick the start time (and, XORed with
 * byte 0, their low 2 bits the pre-cascade chunk: 1-4 timers a level and
 * tick, so that precise runs leave sources half moved at turn
 * boundaries). Then each op is a byte whose low 2 bits choose arm/cancel,
 * advance, next-probe or re-arm, followed by its operands. Properties (abort on violation):
 *  - the invariant checker holds after every op (with the next-turn
 *    banks and their partly moved sources);
 *  - nothing fires early, twice, or without being armed;
 *  - precise: exactly the timers with expires <= now and (armed in the
 *    past or ceil(expires / tick) <= now / tick) fire;
 *  - non-precise: a timer fires by the time its tick plus one slot width of
 *    the level of its distance in ticks (at arming) has passed;
 *  - next never lies after the model's deadline and nothing fires before
 *    it; nothing is lost at the end of time.
 */
#define FNODES 32

#define REQUIRE(cond)                                                          \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz-wheel: %s:%d: %s\n", __FILE__,   \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

struct fstate {
	struct rctx_wheel w;
	struct rctx_wheel_timer t[FNODES];
	rctx_time_t exp[FNODES];
	uint64_t bound[FNODES];
	bool past[FNODES];
	bool armed[FNODES];
	bool seen[FNODES];
	int sorted[FNODES]; /* armed ids by (expires, id): the model */
	int nsorted;
	const uint8_t *p, *end;
};

static unsigned
take(struct fstate *s)
{
	return s->p < s->end ? *s->p++ : 0;
}

static uint64_t
take_n(struct fstate *s, unsigned bytes)
{
	uint64_t v = 0;

	while (bytes-- > 0)
		v = v << 8 | take(s);
	return v;
}

static uint64_t
lasttick(const struct fstate *s)
{
	return (uint64_t)INT64_MAX >> s->w.tick_shift;
}

static uint64_t
tick_of(const struct fstate *s, rctx_time_t e)
{
	unsigned sh = s->w.tick_shift;
	uint64_t t = ((uint64_t)e + ((UINT64_C(1) << sh) - 1)) >> sh;

	return t > lasttick(s) ? lasttick(s) : t;
}

static void
model_drop(struct fstate *s, int id)
{
	int i = 0;

	while (s->sorted[i] != id)
		i++;
	memmove(&s->sorted[i], &s->sorted[i + 1],
		(size_t)(s->nsorted - i - 1) * sizeof(int));
	s->nsorted--;
	s->armed[id] = false;
}

static void
arm(struct fstate *s, int id, rctx_time_t e)
{
	uint64_t c = s->w.curtick, et;
	unsigned lvl = 0;
	int i = s->nsorted;

	s->exp[id] = e;
	s->past[id] = e <= s->w.now;
	et = s->past[id] ? c : tick_of(s, e);
	if (et > c)
		lvl = (unsigned)(63 - __builtin_clzll(et - c)) / 6;
	s->bound[id] = et + (UINT64_C(1) << (6 * lvl)) - 1;
	if (s->bound[id] < et || s->bound[id] > lasttick(s))
		s->bound[id] = lasttick(s);
	rctx_wheel_add(&s->w, &s->t[id], e);
	REQUIRE(rctx_wheel_timer_pending(&s->t[id]));
	while (i > 0 &&
	       (s->exp[s->sorted[i - 1]] > e ||
		(s->exp[s->sorted[i - 1]] == e && s->sorted[i - 1] > id))) {
		s->sorted[i] = s->sorted[i - 1];
		i--;
	}
	s->sorted[i] = id;
	s->nsorted++;
	s->armed[id] = true;
}

static rctx_time_t
pick_expiry(struct fstate *s)
{
	unsigned b = take(s);
	rctx_time_t now = s->w.now, room = INT64_MAX - now;
	uint64_t d;

	switch (b >> 5) {
	case 0:
		return now - (rctx_time_t)(b & 31);
	case 1:
		return INT64_MAX - (rctx_time_t)(b & 31);
	case 2: /* a few ticks, on or off tick boundaries */
		d = take_n(s, 1) << s->w.tick_shift;
		if (d + 15 > (uint64_t)room)
			return INT64_MAX;
		/* offset in -16..15, added last: never past INT64_MAX */
		return now + (rctx_time_t)d + ((rctx_time_t)(b & 31) - 16);
	case 3:
		d = take_n(s, 2) << s->w.tick_shift;
		break;
	default: /* 2^0 .. 2^62 ns, any digits */
		d = take_n(s, 3) << (b & 31) << ((b >> 5) & 1) * 31;
		break;
	}
	return d > (uint64_t)room ? INT64_MAX : now + (rctx_time_t)d;
}

static size_t
advance(struct fstate *s, rctx_time_t now)
{
	size_t n = 0, walked = 0, want = 0;
	struct rctx_wheel_timer *t = rctx_wheel_advance(&s->w, now, &n);
	rctx_time_t wn = s->w.now;
	uint64_t nt = s->w.curtick;

	REQUIRE(wn >= now);
	memset(s->seen, 0, sizeof(s->seen));
	for (; t != NULL; t = t->next) {
		long id = t - s->t;

		REQUIRE(id >= 0 && id < FNODES);
		REQUIRE(s->armed[id] && !s->seen[id]);
		REQUIRE(t->pprev == NULL);
		REQUIRE(s->exp[id] <= wn); /* never early */
		s->seen[id] = true;
		walked++;
	}
	REQUIRE(walked == n);
	for (int i = 0; i < s->nsorted; i++) {
		int id = s->sorted[i];

		if (s->exp[id] > wn)
			break;
		if (s->w.precise)
			REQUIRE(s->seen[id] ==
				(s->past[id] || tick_of(s, s->exp[id]) <= nt));
		else if (s->past[id] || s->bound[id] <= nt)
			REQUIRE(s->seen[id]);
		want += s->seen[id];
	}
	REQUIRE(want == n);
	for (int id = 0; id < FNODES; id++)
		if (s->seen[id])
			model_drop(s, id);
	return n;
}

static void
probe_next(struct fstate *s)
{
	rctx_time_t nx = rctx_wheel_next(&s->w);
	uint64_t lim = UINT64_MAX;

	if (s->nsorted == 0) {
		REQUIRE(nx == INT64_MAX);
		return;
	}
	for (int i = 0; i < s->nsorted; i++) {
		int id = s->sorted[i];
		uint64_t b = s->past[id]    ? s->w.curtick
			     : s->w.precise ? tick_of(s, s->exp[id])
					    : s->bound[id];

		lim = b < lim ? b : lim;
	}
	lim <<= s->w.tick_shift;
	if (lim < (uint64_t)s->w.now)
		lim = (uint64_t)s->w.now;
	REQUIRE(nx >= 0 && (uint64_t)nx <= lim);
	if (nx > s->w.now)
		REQUIRE(advance(s, nx - 1) == 0);
	/* Then exactly at next: the clock moves on without complaint. */
	advance(s, nx);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fstate s;
	const char *why = NULL;
	unsigned cfg;
	size_t n;
	int ops = 0;

	memset(&s, 0, sizeof(s));
	s.p = data;
	s.end = data + size;
	cfg = take(&s);
	{
		unsigned shift = (cfg & 31) > 30 ? 30 : cfg & 31;
		uint64_t st = take_n(&s, 2);
		/* Start near zero, mid-range, or near the end of time. */
		rctx_time_t start = (cfg & 0x40)
					? INT64_MAX - (rctx_time_t)(st << 24)
					: (rctx_time_t)(st << (st & 31));

		rctx_wheel_init(&s.w, start, shift, cfg & 0x80);
		s.w.chunk = 1 + ((cfg ^ st) & 3);
	}
	for (int i = 0; i < FNODES; i++)
		rctx_wheel_timer_init(&s.t[i]);
	while (s.p < s.end && ops++ < 4096) {
		unsigned op = take(&s);
		int id = (int)(op >> 2) % FNODES;
		rctx_time_t now = s.w.now, room = INT64_MAX - now;
		uint64_t d;

		switch (op & 3) {
		case 0: /* toggle */
			if (s.armed[id]) {
				rctx_wheel_del(&s.w, &s.t[id]);
				REQUIRE(!rctx_wheel_timer_pending(&s.t[id]));
				model_drop(&s, id);
			} else {
				arm(&s, id, pick_expiry(&s));
			}
			break;
		case 1: /* advance: small, or a jump of up to 2^63 ns */
			d = take_n(&s, 1);
			if (op & 0x80)
				d <<= take(&s) % 64;
			else
				d <<= s.w.tick_shift / 2 + (op >> 5 & 3) * 4;
			if (op & 0x40)
				d = 0 - (d & 0xff); /* backwards: ignored */
			if ((int64_t)d > room)
				d = (uint64_t)room;
			advance(&s, now + (rctx_time_t)d);
			break;
		case 2:
			probe_next(&s);
			break;
		default: /* re-arm (cancel if armed, then arm) */
			if (s.armed[id]) {
				rctx_wheel_del(&s.w, &s.t[id]);
				model_drop(&s, id);
			}
			arm(&s, id, pick_expiry(&s));
			break;
		}
		if (!rctx_wheel_check(&s.w, &why)) {
			fprintf(stderr, "fuzz-wheel: check: %s\n", why);
			abort();
		}
		REQUIRE(s.w.count == (size_t)s.nsorted);
	}
	/* Nothing lost. Drain half the time, else advance to the end. */
	if (cfg & 0x20) {
		struct rctx_wheel_timer *t = rctx_wheel_drain(&s.w, &n);

		REQUIRE(n == (size_t)s.nsorted);
		for (; t != NULL; t = t->next)
			REQUIRE(t->pprev == NULL && s.armed[t - s.t]);
	} else {
		advance(&s, INT64_MAX);
		REQUIRE(s.nsorted == 0);
	}
	REQUIRE(s.w.count == 0 && rctx_wheel_check(&s.w, NULL));
	return 0;
}
