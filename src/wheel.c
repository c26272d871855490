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
 */

#define LVL_SHIFT(l) (RCTX_WHEEL_SLOT_BITS * (unsigned)(l))
#define SLOT_MASK    ((uint64_t)RCTX_WHEEL_SLOTS - 1)

_Static_assert(RCTX_WHEEL_SLOTS == 64 && RCTX_WHEEL_SLOT_BITS == 6,
	       "one 64-bit bitmap per level; the level table assumes 6 bits");
_Static_assert((RCTX_WHEEL_LEVELS * RCTX_WHEEL_SLOT_BITS) >= 64,
	       "the levels must cover every 64-bit tick");

/* Last tick whose start is a representable time. */
static inline uint64_t
rctx_wheel_maxtick(const struct rctx_wheel *w)
{
	return (uint64_t)INT64_MAX >> w->tick_shift;
}

/* Tick at or after expires (expires >= 0), saturated at the last tick. */
static inline uint64_t
rctx_wheel_tick_up(const struct rctx_wheel *w, rctx_time_t expires)
{
	uint64_t mask = ((uint64_t)1 << w->tick_shift) - 1;
	uint64_t e = ((uint64_t)expires + mask) >> w->tick_shift;
	uint64_t max = rctx_wheel_maxtick(w);

	return e > max ? max : e;
}

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

/* Lane of a node: the top bits of a multiplicative hash of its address. */
static inline unsigned
rctx_wheel_lane(const struct rctx_wheel_timer *t)
{
	uint64_t h = (uint64_t)(uintptr_t)t * UINT64_C(0x9e3779b97f4a7c15);

	return (unsigned)(h >> (64 - RCTX_WHEEL_LANE_BITS));
}

static inline bool
rctx_wheel_slot_empty(const struct rctx_wheel_slot *sl)
{
	uintptr_t any = 0;

	for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++)
		any |= (uintptr_t)sl->head[i];
	return any == 0;
}

static inline void
rctx_wheel_link(struct rctx_wheel *w, struct rctx_wheel_timer *t, unsigned lvl,
		unsigned s)
{
	struct rctx_wheel_timer **head =
	    &w->slot[lvl][s].head[rctx_wheel_lane(t)];

	t->next = *head;
	if (*head != NULL)
		(*head)->pprev = &t->next;
	*head = t;
	t->pprev = head;
	t->level = (uint8_t)lvl;
	t->slot = (uint8_t)s;
	w->pending[lvl] |= UINT64_C(1) << s;
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
	unsigned lvl;

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
	rctx_wheel_link(w, t, lvl, (unsigned)(e >> LVL_SHIFT(lvl)) & SLOT_MASK);
	return;
due:
	rctx_wheel_link(w, t, 0, (unsigned)(c & SLOT_MASK));
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
	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		w->pending[l] = 0;
		for (unsigned s = 0; s < RCTX_WHEEL_SLOTS; s++)
			for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++)
				w->slot[l][s].head[i] = NULL;
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
	else if (rctx_wheel_slot_empty(&w->slot[t->level][t->slot]))
		w->pending[t->level] &= ~(UINT64_C(1) << t->slot);
	t->pprev = NULL;
	t->next = NULL;
	w->count--;
}

rctx_time_t
rctx_wheel_next(const struct rctx_wheel *w)
{
	uint64_t c = w->curtick;

	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		unsigned sh = LVL_SHIFT(l);
		unsigned cd = (unsigned)(c >> sh) & SLOT_MASK;
		uint64_t bits = w->pending[l];
		uint64_t base, s;

		if (bits == 0)
			continue;
		if (l == 0 && (bits & (UINT64_C(1) << cd)))
			return w->now; /* due slot: the next advance fires */
		/* Lower levels' slots all start before any slot of a higher
		 * level (invariant (a)), so the first busy level decides. */
		s = (uint64_t)__builtin_ctzll(bits & rctx_wheel_above(cd));
		base = sh + RCTX_WHEEL_SLOT_BITS >= 64
			   ? 0
			   : (c >> (sh + RCTX_WHEEL_SLOT_BITS))
				 << (sh + RCTX_WHEEL_SLOT_BITS);
		return (rctx_time_t)((base | (s << sh)) << w->tick_shift);
	}
	return INT64_MAX;
}

/*
 * Take the slots in `bits` of level l out of the wheel and walk all their
 * lanes side by side, one node of each list per round: the lists' nodes
 * are independent loads, so a storm of cache-cold timers waits for memory
 * once per round rather than once per node. Due timers are appended at
 * *tailp, the others re-filed relative to the (already advanced) clock.
 */
static size_t
rctx_wheel_expire(struct rctx_wheel *w, unsigned l, uint64_t bits,
		  rctx_time_t now, struct rctx_wheel_timer ***tailp)
{
	struct rctx_wheel_timer *cur[RCTX_WHEEL_SLOTS * RCTX_WHEEL_LANES];
	struct rctx_wheel_timer **tail = *tailp;
	uint64_t nw = w->curtick;
	bool tick_rule = l > 0 && w->precise;
	unsigned k = 0;
	size_t fired = 0;

	while (bits != 0) {
		unsigned s = (unsigned)__builtin_ctzll(bits);

		bits &= bits - 1;
		for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++) {
			if (w->slot[l][s].head[i] != NULL)
				cur[k++] = w->slot[l][s].head[i];
			w->slot[l][s].head[i] = NULL;
		}
		w->pending[l] &= ~(UINT64_C(1) << s);
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
	 * due slot), which are already done, so no slot is visited twice.
	 */
	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		unsigned sh = LVL_SHIFT(l);
		unsigned c = (unsigned)(old >> sh) & SLOT_MASK;
		unsigned d = (unsigned)(nw >> sh) & SLOT_MASK;
		bool same_turn;
		uint64_t mask, bits;

		/* Equal digits from l up: nothing at l or above came due. */
		if (l > 0 && (old >> sh) == (nw >> sh))
			break;
		same_turn = sh + RCTX_WHEEL_SLOT_BITS >= 64 ||
			    (old >> (sh + RCTX_WHEEL_SLOT_BITS)) ==
				(nw >> (sh + RCTX_WHEEL_SLOT_BITS));
		mask = rctx_wheel_above(c);
		if (same_turn)
			mask &= (UINT64_C(2) << d) - 1;
		if (l == 0)
			mask |= UINT64_C(1) << c; /* the old due slot */
		bits = w->pending[l] & mask;
		if (bits != 0)
			fired += rctx_wheel_expire(w, l, bits, now, &tail);
	}
	*tail = NULL;
	w->count -= fired;
	*n = fired;
	return head;
}

struct rctx_wheel_timer *
rctx_wheel_drain(struct rctx_wheel *w, size_t *n)
{
	struct rctx_wheel_timer *head = NULL, **tail = &head;
	size_t cnt = 0;

	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		uint64_t bits = w->pending[l];

		while (bits != 0) {
			unsigned s = (unsigned)__builtin_ctzll(bits);

			bits &= bits - 1;
			for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++) {
				struct rctx_wheel_timer *t =
				    w->slot[l][s].head[i];

				w->slot[l][s].head[i] = NULL;
				for (; t != NULL; t = t->next) {
					t->pprev = NULL;
					*tail = t;
					tail = &t->next;
					cnt++;
				}
			}
		}
		w->pending[l] = 0;
	}
	*tail = NULL;
	w->count = 0;
	*n = cnt;
	return head;
}

#define CHECK(cond, msg)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			if (why != NULL)                                       \
				*why = (msg);                                  \
			return false;                                          \
		}                                                              \
	} while (0)

/* Where t sits (due slot, or a slot from `start` of `width` ticks) can
 * neither fire it early nor leave it behind the clock. */
static bool
rctx_wheel_check_place(const struct rctx_wheel *w,
		       const struct rctx_wheel_timer *t, bool due,
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
	if (w->precise)
		CHECK(e >= start && e - start < width,
		      "precise: tick outside its slot");
	else /* rounded up by less than its distance level's width */
		CHECK((e > start ? e - start : start - e) < width,
		      "coarse: tick too far from its slot");
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
	for (unsigned l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		unsigned sh = LVL_SHIFT(l);
		unsigned cd = (unsigned)(c >> sh) & SLOT_MASK;
		uint64_t base = sh + RCTX_WHEEL_SLOT_BITS >= 64
				    ? 0
				    : (c >> (sh + RCTX_WHEEL_SLOT_BITS))
					  << (sh + RCTX_WHEEL_SLOT_BITS);
		uint64_t width = UINT64_C(1) << sh;

		for (unsigned s = 0; s < RCTX_WHEEL_SLOTS; s++) {
			const struct rctx_wheel_slot *sl = &w->slot[l][s];
			bool bit = (w->pending[l] >> s) & 1;
			bool busy = !rctx_wheel_slot_empty(sl);
			bool due = l == 0 && s == cd;
			uint64_t start = base | ((uint64_t)s << sh);

			CHECK(bit == busy, "bitmap bit disagrees with slot");
			if (!busy)
				continue;
			CHECK(due || s > cd, "busy slot behind the clock");
			for (unsigned i = 0; i < RCTX_WHEEL_LANES; i++) {
				struct rctx_wheel_timer *const *pp =
				    &sl->head[i];
				const struct rctx_wheel_timer *t;

				for (t = *pp; t != NULL;
				     pp = &t->next, t = t->next) {
					CHECK(t->pprev == pp,
					      "pprev does not point at the "
					      "link to the node");
					CHECK(t->level == l && t->slot == s &&
						  rctx_wheel_lane(t) == i,
					      "node level/slot/lane disagree "
					      "with where it is");
					CHECK(++cnt <= w->count,
					      "more nodes than count (or a "
					      "cycle)");
					if (!rctx_wheel_check_place(
						w, t, due, start, width, why))
						return false;
				}
			}
		}
	}
	CHECK(cnt == w->count, "count disagrees with the nodes");
	return true;
}
