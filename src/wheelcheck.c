/* SPDX-License-Identifier: MIT */
/* The timing wheel's invariant checker (wheel.c's (a)-(e), design.md §8). */
#include <stdint.h>

#include "wheelcheck.h"

#define CHECK(cond, msg)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			if (why != NULL)                                       \
				*why = (msg);                                  \
			return false;                                          \
		}                                                              \
	} while (0)

/* Where t sits (the due slot, or a slot of a current bank or of a
 * next-turn bank, `next`, starting at tick `start`, `width` ticks wide)
 * can neither fire it early nor leave it behind the clock. */
static bool
rctx_wheel_check_place(const struct rctx_wheel *w,
		       const struct rctx_wheel_timer *t, bool due, bool next,
		       uint64_t start, uint64_t width, const char **why)
{
	uint64_t c = w->curtick;
	uint64_t e = rctx_wheel_tick_up(w, t->expires);

	if (due) {
		CHECK(t->expires <= w->now || e <= c,
		      "due slot holds a future timer");
		return true;
	}
	CHECK(e > c || t->expires <= w->now,
	      "timer past its tick not in due slot");
	if (next) /* (d): in T_l, at its digit, which is [start, +width) */
		CHECK(w->precise && e >= start && e - start < width,
		      "next-turn bank: tick outside its turn or slot");
	else if (w->precise)
		CHECK(e >= start && e - start < width,
		      "precise: tick outside its slot");
	else /* rounded up by less than its distance level's width */
		CHECK((e > start ? e - start : start - e) < width,
		      "coarse: tick too far from its slot");
	return true;
}

/* One bank of level l: its bitmap, counts, lists and every node's place.
 * `base` is the first tick of the turn it holds. */
static bool
rctx_wheel_check_bank(const struct rctx_wheel *w, unsigned l, unsigned b,
		      uint64_t base, size_t *cnt, const char **why)
{
	unsigned sh = RCTX_WHEEL_LVL_SHIFT(l);
	unsigned cd = rctx_wheel_digit(w->curtick, l);
	bool next = b != w->cur[l];
	uint64_t width = UINT64_C(1) << sh;
	uint64_t busy = 0, bits;
	uintptr_t any = 0;

	/* Empty slots first, in one cheap pass: the common case. */
	for (unsigned s = 0; s < RCTX_WHEEL_SLOTS; s++) {
		const struct rctx_wheel_slot *sl = &w->slot[l][b][s];

		if (w->n[l][b][s] != 0) {
			busy |= UINT64_C(1) << s;
			continue;
		}
		for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++)
			any |= (uintptr_t)sl->head[i];
	}
	CHECK(busy == w->pending[l][b], "bitmap bit disagrees with n (e)");
	CHECK(any == 0, "nodes in a slot whose n is 0 (e)");
	for (bits = busy; bits != 0; bits &= bits - 1) {
		unsigned s = (unsigned)__builtin_ctzll(bits);
		const struct rctx_wheel_slot *sl = &w->slot[l][b][s];
		bool due = !next && l == 0 && s == cd;
		uint64_t start = base | ((uint64_t)s << sh);
		size_t n = 0;

		CHECK(!next || (w->precise && l + 1 < RCTX_WHEEL_LEVELS),
		      "timers in a next-turn bank that must stay empty (d)");
		CHECK(next || due || s > cd, "busy slot behind the clock (a)");
		for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++) {
			struct rctx_wheel_timer *const *pp = &sl->head[i];
			const struct rctx_wheel_timer *t;

			for (t = *pp; t != NULL; pp = &t->next, t = t->next) {
				CHECK(t->pprev == pp, "pprev does not point at "
						      "the link to the node");
				CHECK(t->level == l && t->bank == b &&
					  t->slot == s &&
					  rctx_wheel_lane(t) == i,
				      "node level/bank/slot/lane disagree "
				      "with where it is");
				CHECK(++*cnt <= w->count,
				      "more nodes than count (or a cycle)");
				CHECK(++n <= w->n[l][b][s],
				      "more nodes than n (e)");
				if (!rctx_wheel_check_place(w, t, due, next,
							    start, width, why))
					return false;
			}
		}
		CHECK(n == w->n[l][b][s], "n disagrees with the nodes (e)");
	}
	return true;
}

bool
rctx_wheel_check(const struct rctx_wheel *w, const char **why)
{
	uint64_t c = w->curtick;
	size_t cnt = 0;

	CHECK(w->now >= 0, "now is negative");
	CHECK(w->tick_shift <= 30, "tick_shift out of range");
	CHECK(c == (uint64_t)w->now >> w->tick_shift,
	      "curtick != now >> shift");
	CHECK(w->chunk >= 1, "pre-cascade chunk is 0");
	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		bool top = l + 1 == RCTX_WHEEL_LEVELS;
		uint64_t u = rctx_wheel_turn(c, l);
		unsigned b = w->cur[l];

		CHECK(b < 2, "bank index out of range");
		CHECK(w->pre_tick[l] <= c, "pre-cascade tick ahead of clock");
		if (!rctx_wheel_check_bank(
			w, l, b, top ? 0 : rctx_wheel_turn_start(u, l), &cnt,
			why))
			return false;
		/* The top level's spare bank is never used: base 0 is only
		 * a placeholder (it must be empty). */
		if (!rctx_wheel_check_bank(
			w, l, b ^ 1u, top ? 0 : rctx_wheel_turn_start(u + 1, l),
			&cnt, why))
			return false;
	}
	CHECK(cnt == w->count, "count disagrees with the nodes");
	return true;
}
