/* SPDX-License-Identifier: MIT */
/* Hierarchical timing wheel: placement, expiry, next deadline, checker. */
#include <assert.h>
#include <stdint.h>

#include "wheel.h"

/*
 * Layout. Time is cut into ticks of 2^tick_shift ns; a tick count is an
 * unsigned 64-bit number read as base-64 digits, one digit per level.
 * Level L has 64 slots of 2^(6L) ticks each and a bitmap of non-empty
 * slots. A timer whose tick E is later than the current tick C is filed at
 * the level of the highest digit in which E and C differ, in the slot named
 * by E's digit there. So, for every filed timer (the invariants):
 *
 *  (a) E and C agree on every digit above the timer's level L, and the
 *      slot index is greater than C's digit at L: the slot lies ahead of
 *      the clock inside the current turn of level L+1.
 *  (b) the slot starts at tick S = (C's digits above L, slot, zeros); in
 *      precise mode S <= E < S + 2^(6L); in non-precise mode E was first
 *      rounded up to the width of the level its distance from C picks
 *      (the level below or at L), so |E - S| < 2^(6L), and usually S >= E:
 *      the slot comes due when the timer does and nothing is re-filed.
 *  (c) the one exception is level 0, slot (C & 63), the "due slot": it
 *      holds timers that were filed with expires <= now (they fire at the
 *      next advance) and, at the very end of the int64 range only, timers
 *      whose rounded tick saturated at the last representable tick.
 *
 * Since 11 levels hold 66 bits of digits, every 64-bit tick fits: there is
 * no overflow list. The "clamp into the top level" of the interface is
 * the saturation at the last tick (INT64_MAX >> tick_shift).
 *
 * Never early: a slot comes due when the clock reaches S; each timer taken
 * from a due slot fires only if expires <= now (and, in precise mode above
 * level 0, only if its own tick has been reached), otherwise it is filed
 * again relative to the new clock, which always puts it at a lower level
 * (it shares all digits from L up with the new clock) or in the due slot.
 *
 * Banks. (a)-(c) describe each level's current bank, w->cur[L]. Each level
 * L below the top has a second one, its next-turn bank, for T_L, the turn
 * of level L after the current one: the ticks E with
 * E >> 6(L+1) == (C >> 6(L+1)) + 1. Without it, T_L's timers wait in one
 * slot of level L+1 until the clock enters T_L and are all re-filed then,
 * in one advance: with 1M live timers that was one owner pull of 1.5-3.6
 * ms per level-1 slot and of 26-42 ms per level-2 slot, and whatever came
 * due meanwhile fired that late (docs/design.md, section 9). So:
 *
 *  (d) a timer in the next-turn bank of level L, slot s, has its tick E in
 *      T_L and E's digit at L equal to s (precise mode only: non-precise
 *      mode leaves every next-turn bank empty, and the top level, whose
 *      turn never ends, has none). Nodes record their bank. When the clock
 *      enters T_L the two banks swap roles (cur[L] flips): no node moves
 *      and delete stays O(1).
 *  (e) every slot's n is the number of timers in its lanes, and its bitmap
 *      bit is set exactly when n > 0.
 *
 * The source of T_L is the slot that holds the rest of T_L's timers:
 * slot (C's digit at L+1) + 1 of level L+1, or, when that digit is 63
 * (T_L also begins the next turn of L+1), slot 0 of L+1's next-turn bank.
 * A source holds only timers filed before it became one: filing ("file
 * next") sends a timer whose place would be the source of T_L to T_L's
 * bank instead, and one level lower again while that place is itself a
 * source. After each advance, for each level L whose source is not empty
 * and which it has not served in this tick, the pre-cascade moves
 * max(chunk, ceil(rest / ticks left)) of the source's timers into T_L's
 * bank, "ticks left" running to the start of T_L or, for L > 0 while C's
 * digit at L is below 63, to the start of the last turn of level L-1 in
 * front of T_L (so slot 0 of T_L's bank, the source of T_{L-1} during that
 * turn, is complete when its own pre-cascade starts). Served each tick,
 * a source is empty when its turn begins; what is left when advances come
 * more rarely (or time jumps) is a slot that comes due at the boundary
 * and is re-filed there, as before, so lateness never depends on it, only
 * the length of the advance that crosses the boundary.
 */

#define LVL_SHIFT(l) RCTX_WHEEL_LVL_SHIFT(l)
#define SLOT_MASK    RCTX_WHEEL_SLOT_MASK

_Static_assert(RCTX_WHEEL_SLOTS == 64 && RCTX_WHEEL_SLOT_BITS == 6,
	       "one 64-bit bitmap per level; the level table assumes 6 bits");
_Static_assert((RCTX_WHEEL_LEVELS * RCTX_WHEEL_SLOT_BITS) >= 64,
	       "the levels must cover every 64-bit tick");

/* Level holding each bit of a tick: bit / 6. */
/* clang-format off */
static const uint8_t rctx_wheel_bit_level[64] = {
	0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
	2, 2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5,
	5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7,
	8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10,
};
/* clang-format on */

/* Level of the highest differing digit; x != 0. */
static inline unsigned
rctx_wheel_level_of(uint64_t x)
{
	return rctx_wheel_bit_level[63 ^ __builtin_clzll(x)];
}

/* Bits strictly above bit c. */
static inline uint64_t
rctx_wheel_above(unsigned c)
{
	return ~((UINT64_C(2) << c) - 1);
}

static inline void
rctx_wheel_link(struct rctx_wheel *w, struct rctx_wheel_timer *t, unsigned lvl,
		unsigned b, unsigned s)
{
	struct rctx_wheel_timer **head =
	    &w->slot[lvl][b][s].head[rctx_wheel_lane(t)];

	t->next = *head;
	if (*head != NULL)
		(*head)->pprev = &t->next;
	*head = t;
	t->pprev = head;
	t->level = (uint8_t)lvl;
	t->slot = (uint8_t)s;
	t->bank = (uint8_t)b;
	w->n[lvl][b][s]++;
	w->pending[lvl][b] |= UINT64_C(1) << s; /* (e) */
}

/*
 * File next: t, of tick e in T_k (precise mode), into T_k's bank, or lower
 * while its slot there would be the source of the turn below: slot 0 of
 * level k's next turn while C's digit at k is 63 is the source of T_{k-1},
 * and e is then in T_{k-1} (invariant (d)).
 */
static inline void
rctx_wheel_file_next(struct rctx_wheel *w, struct rctx_wheel_timer *t,
		     uint64_t e, unsigned k)
{
	uint64_t c = w->curtick;

	while (k > 0 && rctx_wheel_digit(e, k) == 0 &&
	       rctx_wheel_digit(c, k) == SLOT_MASK)
		k--;
	rctx_wheel_link(w, t, k, w->cur[k] ^ 1u, rctx_wheel_digit(e, k));
}

/*
 * File t by t->expires relative to w->curtick; count unchanged. Adding
 * (past_due) puts a deadline at or before now in the due slot; re-filing
 * goes by the tick alone, so a precise timer waits for its own tick.
 */
static inline void
rctx_wheel_file(struct rctx_wheel *w, struct rctx_wheel_timer *t, bool past_due)
{
	uint64_t c = w->curtick;
	uint64_t e;
	unsigned lvl, s;

	if (past_due && t->expires <= w->now)
		goto due;
	e = rctx_wheel_tick_up(w, t->expires);
	if (e <= c)
		goto due; /* saturated at the last tick */
	if (!w->precise && e - c >= RCTX_WHEEL_SLOTS) {
		/* Round up to the slot width of the level the distance alone
		 * would pick: the timer then fires at that slot without
		 * re-filing, unless the rounded tick crossed into a coarser
		 * slot, which re-files it (never later than the rounded
		 * tick) when that slot comes due. */
		unsigned lr = rctx_wheel_level_of(e - c);
		uint64_t g = (UINT64_C(1) << LVL_SHIFT(lr)) - 1;
		uint64_t max = rctx_wheel_maxtick(w);

		e = (e + g) & ~g;
		if (e > max)
			e = max;
	}
	lvl = rctx_wheel_level_of(e ^ c);
	s = rctx_wheel_digit(e, lvl);
	if (w->precise && lvl > 0 && s == rctx_wheel_digit(c, lvl) + 1) {
		/* The source of T_{lvl-1}: e is in that turn (d). */
		rctx_wheel_file_next(w, t, e, lvl - 1);
		return;
	}
	rctx_wheel_link(w, t, lvl, w->cur[lvl], s);
	return;
due:
	rctx_wheel_link(w, t, 0, w->cur[0], (unsigned)(c & SLOT_MASK));
}

void
rctx_wheel_init(struct rctx_wheel *w, rctx_time_t now, unsigned tick_shift,
		bool precise)
{
	assert(now >= 0);
	assert(tick_shift <= 30);
	if (now < 0)
		now = 0;
	w->now = now;
	w->tick_shift = tick_shift;
	w->curtick = (uint64_t)now >> tick_shift;
	w->precise = precise;
	w->count = 0;
	w->chunk = RCTX_WHEEL_CHUNK;
	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		w->cur[l] = 0;
		w->pre_tick[l] = w->curtick;
		for (unsigned b = 0; b < 2; b++) {
			w->pending[l][b] = 0;
			for (unsigned s = 0; s < RCTX_WHEEL_SLOTS; s++) {
				struct rctx_wheel_slot *sl = &w->slot[l][b][s];

				for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++)
					sl->head[i] = NULL;
				w->n[l][b][s] = 0;
			}
		}
	}
}

void
rctx_wheel_add(struct rctx_wheel *w, struct rctx_wheel_timer *t,
	       rctx_time_t expires)
{
	assert(t->pprev == NULL);
	t->expires = expires;
	rctx_wheel_file(w, t, true);
	w->count++;
}

void
rctx_wheel_del(struct rctx_wheel *w, struct rctx_wheel_timer *t)
{
	struct rctx_wheel_timer *next = t->next;
	struct rctx_wheel_timer **pprev = t->pprev;

	if (pprev == NULL)
		return;
	*pprev = next;
	if (next != NULL)
		next->pprev = pprev;
	if (--w->n[t->level][t->bank][t->slot] == 0) /* (e) */
		w->pending[t->level][t->bank] &= ~(UINT64_C(1) << t->slot);
	t->pprev = NULL;
	t->next = NULL;
	w->count--;
}

rctx_time_t
rctx_wheel_next(const struct rctx_wheel *w)
{
	uint64_t c = w->curtick, best = UINT64_MAX;

	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		unsigned sh = LVL_SHIFT(l);
		unsigned cd = rctx_wheel_digit(c, l);
		unsigned b = w->cur[l];
		uint64_t bits = w->pending[l][b], s, start;

		if (bits != 0) {
			if (l == 0 && (bits & (UINT64_C(1) << cd)))
				return w->now; /* due slot: the next advance */
			s = (uint64_t)__builtin_ctzll(bits &
						      rctx_wheel_above(cd));
			start = (l + 1 < RCTX_WHEEL_LEVELS
				     ? rctx_wheel_turn_start(
					   rctx_wheel_turn(c, l), l)
				     : 0) |
				s << sh;
			/* Level 0's slots all start before T_0, where every
			 * other bank and slot begins (a), (d). */
			if (l == 0)
				return (rctx_time_t)(start << w->tick_shift);
			if (start < best)
				best = start;
		}
		bits = l + 1 < RCTX_WHEEL_LEVELS ? w->pending[l][b ^ 1u] : 0;
		if (bits != 0) { /* T_l's bank (d) */
			s = (uint64_t)__builtin_ctzll(bits);
			start = rctx_wheel_turn_start(rctx_wheel_turn(c, l) + 1,
						      l) |
				s << sh;
			if (start < best)
				best = start;
		}
	}
	return best == UINT64_MAX ? INT64_MAX
				  : (rctx_time_t)(best << w->tick_shift);
}

/*
 * Take the slots in `bits` of level l, bank b out of the wheel and walk
 * all their lanes side by side, one node of each list per round: the
 * lists' nodes are independent loads, so a storm of cache-cold timers
 * waits for memory once per round rather than once per node. Due timers
 * are appended at *tailp, the others re-filed relative to the (already
 * advanced) clock.
 */
static size_t
rctx_wheel_expire(struct rctx_wheel *w, unsigned l, unsigned b, uint64_t bits,
		  rctx_time_t now, struct rctx_wheel_timer ***tailp)
{
	struct rctx_wheel_timer *cur[RCTX_WHEEL_SLOTS * RCTX_WHEEL_LANES];
	struct rctx_wheel_timer **tail = *tailp;
	uint64_t nw = w->curtick;
	bool tick_rule = l > 0 && w->precise;
	unsigned k = 0;
	size_t fired = 0;

	bits &= w->pending[l][b];
	w->pending[l][b] &= ~bits;
	while (bits != 0) {
		unsigned s = (unsigned)__builtin_ctzll(bits);
		struct rctx_wheel_slot *sl = &w->slot[l][b][s];

		bits &= bits - 1;
		for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++) {
			if (sl->head[i] != NULL)
				cur[k++] = sl->head[i];
			sl->head[i] = NULL;
		}
		w->n[l][b][s] = 0;
	}
	while (k > 0) {
		for (unsigned i = 0; i < k;) {
			struct rctx_wheel_timer *t = cur[i];
			struct rctx_wheel_timer *next = t->next;

			if (next != NULL) {
				__builtin_prefetch(next, 1);
				cur[i++] = next;
			} else {
				cur[i] = cur[--k];
			}
			if (t->expires <= now &&
			    (!tick_rule ||
			     rctx_wheel_tick_up(w, t->expires) <= nw)) {
				t->pprev = NULL;
				*tail = t;
				tail = &t->next;
				fired++;
			} else {
				rctx_wheel_file(w, t, false);
			}
		}
	}
	*tailp = tail;
	return fired;
}

/* Where the source of T_k is (level k+1; see the top comment). */
static inline struct rctx_wheel_slot *
rctx_wheel_source(struct rctx_wheel *w, unsigned k, unsigned *lvl, unsigned *b,
		  unsigned *s)
{
	unsigned d = rctx_wheel_digit(w->curtick, k + 1);

	*lvl = k + 1;
	if (d < SLOT_MASK) {
		*b = w->cur[k + 1];
		*s = d + 1;
	} else { /* below the top: the top digit never reaches 63 */
		*b = w->cur[k + 1] ^ 1u;
		*s = 0;
	}
	return &w->slot[*lvl][*b][*s];
}

/*
 * Move up to `quota` timers from the source of T_k into T_k's bank (file
 * next), taking them from the heads of the source's lanes in turn: as in
 * expire, the lanes' nodes are independent loads.
 */
static void
rctx_wheel_precascade(struct rctx_wheel *w, unsigned k, size_t quota)
{
	struct rctx_wheel_timer *cur[RCTX_WHEEL_LANES];
	unsigned lvl, b, s;
	struct rctx_wheel_slot *sl = rctx_wheel_source(w, k, &lvl, &b, &s);
	size_t moved = 0;
	bool more = true;

	for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++)
		cur[i] = sl->head[i];
	while (more && moved < quota) {
		more = false;
		for (unsigned i = 0; i < RCTX_WHEEL_LANES && moved < quota;
		     i++) {
			struct rctx_wheel_timer *t = cur[i];

			if (t == NULL)
				continue;
			cur[i] = t->next;
			if (cur[i] != NULL) {
				__builtin_prefetch(cur[i], 1);
				more = true;
			}
			rctx_wheel_file_next(
			    w, t, rctx_wheel_tick_up(w, t->expires), k);
			moved++;
		}
	}
	for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++) {
		sl->head[i] = cur[i];
		if (cur[i] != NULL)
			cur[i]->pprev = &sl->head[i];
	}
	w->n[lvl][b][s] -= moved;
	if (w->n[lvl][b][s] == 0) /* (e) */
		w->pending[lvl][b] &= ~(UINT64_C(1) << s);
}

/* The pre-cascade's round after an advance (precise mode): see the top
 * comment for the quota. */
static void
rctx_wheel_precascade_all(struct rctx_wheel *w)
{
	uint64_t c = w->curtick;

	for (unsigned k = 0; k + 1 < RCTX_WHEEL_LEVELS; k++) {
		unsigned lvl, b, s;
		size_t r, quota;
		uint64_t left;

		(void)rctx_wheel_source(w, k, &lvl, &b, &s);
		r = w->n[lvl][b][s];
		if (r == 0 || w->pre_tick[k] == c)
			continue;
		w->pre_tick[k] = c;
		/* Ticks to the start of T_k; c < last tick < 2^63, so the
		 * start fits. */
		left = rctx_wheel_turn_start(rctx_wheel_turn(c, k) + 1, k) - c;
		if (k > 0 && rctx_wheel_digit(c, k) < SLOT_MASK)
			left -= UINT64_C(1) << LVL_SHIFT(k); /* >= 1 still */
		quota = (size_t)((r + left - 1) / left);
		if (quota < w->chunk)
			quota = w->chunk;
		rctx_wheel_precascade(w, k, quota);
	}
}

struct rctx_wheel_timer *
rctx_wheel_advance(struct rctx_wheel *w, rctx_time_t now, size_t *n)
{
	struct rctx_wheel_timer *head = NULL, **tail = &head;
	uint64_t old = w->curtick, nw;
	size_t fired = 0;

	if (now < w->now)
		now = w->now;
	nw = (uint64_t)now >> w->tick_shift;
	w->now = now;
	w->curtick = nw;

	/*
	 * Bottom up: timers re-filed from level L land below L (or in the
	 * due slot, or a next-turn bank below L), which are already done and
	 * whose banks already match the new clock, so no slot is visited
	 * twice.
	 */
	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		unsigned sh = LVL_SHIFT(l);
		unsigned c = rctx_wheel_digit(old, l);
		unsigned d = rctx_wheel_digit(nw, l);
		uint64_t ot = rctx_wheel_turn(old, l);
		uint64_t nt = rctx_wheel_turn(nw, l);
		unsigned b = w->cur[l];
		uint64_t mask, upto_d = (UINT64_C(2) << d) - 1;

		/* Equal digits from l up: nothing at l or above came due. */
		if (l > 0 && (old >> sh) == (nw >> sh))
			break;
		mask = rctx_wheel_above(c);
		if (l == 0)
			mask |= UINT64_C(1) << c; /* the old due slot */
		if (ot == nt) {
			fired += rctx_wheel_expire(w, l, b, mask & upto_d, now,
						   &tail);
			continue;
		}
		/* The rest of the old turn is due. */
		fired += rctx_wheel_expire(w, l, b, mask, now, &tail);
		if (nt == ot + 1) {
			/* The clock entered T_l: its bank becomes level l
			 * (d), and its slots up to the new digit are due. */
			w->cur[l] = (uint8_t)(b ^ 1u);
			fired +=
			    rctx_wheel_expire(w, l, b ^ 1u, upto_d, now, &tail);
		} else {
			/* T_l passed whole: every timer in its bank is due. */
			fired += rctx_wheel_expire(w, l, b ^ 1u, UINT64_MAX,
						   now, &tail);
		}
	}
	*tail = NULL;
	w->count -= fired;
	*n = fired;
	if (w->precise)
		rctx_wheel_precascade_all(w);
	return head;
}

struct rctx_wheel_timer *
rctx_wheel_drain(struct rctx_wheel *w, size_t *n)
{
	struct rctx_wheel_timer *head = NULL, **tail = &head;
	size_t cnt = 0;

	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		for (unsigned b = 0; b < 2; b++) {
			uint64_t bits = w->pending[l][b];

			while (bits != 0) {
				unsigned s = (unsigned)__builtin_ctzll(bits);
				struct rctx_wheel_slot *sl = &w->slot[l][b][s];

				bits &= bits - 1;
				for (unsigned i = 0; i < RCTX_WHEEL_LANES;
				     i++) {
					struct rctx_wheel_timer *t =
					    sl->head[i];

					sl->head[i] = NULL;
					for (; t != NULL; t = t->next) {
						t->pprev = NULL;
						*tail = t;
						tail = &t->next;
						cnt++;
					}
				}
				w->n[l][b][s] = 0;
			}
			w->pending[l][b] = 0;
		}
	}
	*tail = NULL;
	w->count = 0;
	*n = cnt;
	return head;
}
