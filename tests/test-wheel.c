/* SPDX-License-Identifier: MIT */
/* Timing wheel: unit tests and a randomized test against a sorted model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"
#include "wheelcheck.h"

#define NODES 64

static struct rctx_wheel wheel;
static struct rctx_wheel_timer node[NODES];

static void
checked(const struct rctx_wheel *w)
{
	const char *why = NULL;

	if (!rctx_wheel_check(w, &why))
		fail_msg("wheel check failed: %s", why);
}

static void
setup_wheel(rctx_time_t now, unsigned shift, bool precise)
{
	rctx_wheel_init(&wheel, now, shift, precise);
	for (int i = 0; i < NODES; i++)
		rctx_wheel_timer_init(&node[i]);
	checked(&wheel);
}

/* Advance and return the number fired; each fired node gets mark set. */
static size_t
adv(rctx_time_t now, bool mark[NODES])
{
	size_t n = 0, walked = 0;
	struct rctx_wheel_timer *t = rctx_wheel_advance(&wheel, now, &n);

	for (; t != NULL; t = t->next) {
		ptrdiff_t id = t - node;

		assert_true(id >= 0 && id < NODES);
		assert_null(t->pprev);
		assert_true(t->expires <= wheel.now); /* never early */
		if (mark != NULL) {
			assert_false(mark[id]);
			mark[id] = true;
		}
		walked++;
	}
	assert_int_equal(walked, n);
	checked(&wheel);
	return n;
}

static void
test_empty(void **state)
{
	size_t n = 7;

	(void)state;
	setup_wheel(1000, 4, true);
	assert_int_equal(rctx_wheel_next(&wheel), INT64_MAX);
	assert_null(rctx_wheel_advance(&wheel, 5000, &n));
	assert_int_equal(n, 0);
	assert_int_equal(wheel.now, 5000);
	/* Going back in time is ignored. */
	assert_null(rctx_wheel_advance(&wheel, 10, &n));
	assert_int_equal(wheel.now, 5000);
	checked(&wheel);
	assert_null(rctx_wheel_drain(&wheel, &n));
	assert_int_equal(n, 0);
}

static void
test_add_del(void **state)
{
	(void)state;
	setup_wheel(0, 4, true);
	rctx_wheel_add(&wheel, &node[0], 100);
	assert_true(rctx_wheel_timer_pending(&node[0]));
	assert_int_equal(wheel.count, 1);
	checked(&wheel);
	rctx_wheel_add(&wheel, &node[1], 100);
	rctx_wheel_add(&wheel, &node[2], 100);
	checked(&wheel);
	/* Middle, head and last of one slot list. */
	rctx_wheel_del(&wheel, &node[1]);
	checked(&wheel);
	rctx_wheel_del(&wheel, &node[2]);
	checked(&wheel);
	assert_int_not_equal(wheel.pending[node[0].level][node[0].bank], 0);
	rctx_wheel_del(&wheel, &node[0]);
	assert_false(rctx_wheel_timer_pending(&node[0]));
	assert_int_equal(wheel.count, 0);
	for (int l = 0; l < RCTX_WHEEL_LEVELS; l++) {
		assert_int_equal(wheel.pending[l][0], 0);
		assert_int_equal(wheel.pending[l][1], 0);
	}
	/* Deleting a node that is not pending is a no-op. */
	rctx_wheel_del(&wheel, &node[0]);
	assert_int_equal(wheel.count, 0);
	checked(&wheel);
	assert_int_equal(rctx_wheel_next(&wheel), INT64_MAX);
	assert_int_equal(adv(1000000, NULL), 0);
}

static void
test_precise_rounding(void **state)
{
	bool m[NODES] = { 0 };

	(void)state;
	/* Tick 16 ns: 100 rounds up to 112; 96 is on a tick. */
	setup_wheel(0, 4, true);
	rctx_wheel_add(&wheel, &node[0], 100);
	rctx_wheel_add(&wheel, &node[1], 96);
	assert_true(rctx_wheel_next(&wheel) <= 96);
	assert_int_equal(adv(95, m), 0);
	assert_int_equal(adv(96, m), 1);
	assert_true(m[1]);
	assert_true(rctx_wheel_next(&wheel) <= 112);
	assert_int_equal(adv(100, m), 0); /* due, but its tick is 112 */
	assert_int_equal(adv(111, m), 0);
	assert_int_equal(adv(112, m), 1);
	assert_true(m[0]);
	assert_int_equal(wheel.count, 0);
}

static void
test_past_and_now(void **state)
{
	bool m[NODES] = { 0 };

	(void)state;
	setup_wheel(1000, 4, true);
	rctx_wheel_add(&wheel, &node[0], 1000); /* == now */
	rctx_wheel_add(&wheel, &node[1], 5);	/* long past */
	rctx_wheel_add(&wheel, &node[2], -50);	/* negative deadline */
	rctx_wheel_add(&wheel, &node[3], 1001); /* mid-tick, future */
	checked(&wheel);
	assert_int_equal(rctx_wheel_next(&wheel), 1000);
	/* An advance to the same time fires the past timers. */
	assert_int_equal(adv(1000, m), 3);
	assert_true(m[0] && m[1] && m[2] && !m[3]);
	assert_true(rctx_wheel_next(&wheel) > 1000);
	assert_true(rctx_wheel_next(&wheel) <= 1008);
	assert_int_equal(adv(1007, m), 0);
	assert_int_equal(adv(1008, m), 1);
	assert_true(m[3]);
}

static void
test_int64_max(void **state)
{
	for (int p = 0; p < 2; p++) {
		for (unsigned shift = 0; shift <= 30; shift += 10) {
			bool m[NODES] = { 0 };

			(void)state;
			setup_wheel(0, shift, p);
			rctx_wheel_add(&wheel, &node[0], INT64_MAX);
			rctx_wheel_add(&wheel, &node[1], INT64_MAX - 1);
			checked(&wheel);
			assert_true(rctx_wheel_next(&wheel) <= INT64_MAX);
			assert_true(rctx_wheel_next(&wheel) > 0);
			assert_int_equal(adv(INT64_MAX / 2, m), 0);
			assert_int_equal(adv(INT64_MAX - 2, m), 0);
			assert_int_equal(adv(INT64_MAX - 1, m), 1);
			assert_true(m[1]);
			/* A later add in the saturated last tick. */
			rctx_wheel_add(&wheel, &node[2], INT64_MAX);
			checked(&wheel);
			assert_int_equal(adv(INT64_MAX - 1, m), 0);
			assert_int_equal(adv(INT64_MAX, m), 2);
			assert_true(m[0] && m[2]);
			assert_int_equal(wheel.count, 0);
		}
	}
}

/* One timer per level; jumps fire exactly the passed ones in one call. */
static void
test_time_jumps(void **state)
{
	for (int p = 0; p < 2; p++) {
		bool m[NODES] = { 0 };
		rctx_time_t start = 12345;
		rctx_time_t exp[RCTX_WHEEL_LEVELS];
		size_t fired = 0;

		(void)state;
		setup_wheel(start, 0, p);
		for (int l = 0; l < RCTX_WHEEL_LEVELS; l++) {
			exp[l] = start + ((rctx_time_t)1 << (6 * l)) + 3;
			if (l == RCTX_WHEEL_LEVELS - 1)
				exp[l] = INT64_MAX - 77;
			rctx_wheel_add(&wheel, &node[l], exp[l]);
			checked(&wheel);
			/* Precise: the first slot ahead of a level is the
			 * source of the turn below it, so a timer bound there
			 * goes to that turn's bank, a level lower. */
			if (p && node[l].bank != wheel.cur[node[l].level])
				assert_int_equal(node[l].level, l - 1);
			else
				assert_int_equal(node[l].level, l);
		}
		for (int l = 0; l < RCTX_WHEEL_LEVELS; l++) {
			/* Jump to just before: nothing new may fire early. */
			fired += adv(exp[l] - 1, m);
			for (int k = l; k < RCTX_WHEEL_LEVELS; k++)
				assert_false(m[k]);
			if (p) {
				/* Precise with 1 ns ticks: exactly on time. */
				assert_int_equal(fired, (size_t)l);
				assert_true(rctx_wheel_next(&wheel) <= exp[l]);
				fired += adv(exp[l], m);
				assert_true(m[l]);
			}
		}
		fired += adv(INT64_MAX, m);
		assert_int_equal(fired, RCTX_WHEEL_LEVELS);
	}
}

/* A jump far ahead fires all passed timers and keeps the rest. */
static void
test_big_jump_partial(void **state)
{
	bool m[NODES] = { 0 };
	const rctx_time_t hour = (rctx_time_t)3600 * 1000000000;

	(void)state;
	setup_wheel(0, RCTX_WHEEL_TICK_SHIFT_DEFAULT, true);
	for (int i = 0; i < NODES; i++)
		rctx_wheel_add(&wheel, &node[i], (rctx_time_t)i * hour / 8 + i);
	checked(&wheel);
	/* 4 hours + 1 tick covers i*hour/8 + i for i <= 32. */
	assert_int_equal(adv(4 * hour + (1 << 20), m), 33);
	for (int i = 0; i < NODES; i++)
		assert_true(m[i] == (i <= 32));
	assert_int_equal(wheel.count, NODES - 33);
	assert_int_equal(adv(40 * hour, m), NODES - 33);
}

/* The owner re-arms from the expired list (a periodic timer pattern). */
static void
test_rearm_from_expired(void **state)
{
	const rctx_time_t period[4] = { 7, 100, 5000, 333333 };
	size_t fires[4] = { 0 };
	rctx_time_t now = 0;

	(void)state;
	setup_wheel(0, 2, true);
	for (int i = 0; i < 4; i++)
		rctx_wheel_add(&wheel, &node[i], period[i]);
	while (now < 2000000) {
		size_t n;
		struct rctx_wheel_timer *t, *next;

		now += 3;
		t = rctx_wheel_advance(&wheel, now, &n);
		for (; t != NULL; t = next) {
			ptrdiff_t id = t - node;

			next = t->next; /* add rewrites ->next */
			assert_true(t->expires <= now);
			/* Precise, 4 ns tick: at most one tick + one step. */
			assert_true(now - t->expires <= 5);
			fires[id]++;
			rctx_wheel_add(&wheel, t, t->expires + period[id]);
			/* Deleting and re-adding inside the walk is fine. */
			if (id == 0) {
				rctx_wheel_del(&wheel, t);
				rctx_wheel_add(&wheel, t, t->expires);
			}
		}
		checked(&wheel);
	}
	/* Last now is 2000001; a fire needs now >= k * period rounded up
	 * to 4 ns, i.e. k * period <= 2000000. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(fires[i], (size_t)(2000000 / period[i]));
}

static void
test_drain(void **state)
{
	struct rctx_wheel other;
	size_t n, walked = 0;
	struct rctx_wheel_timer *t, *next;
	bool m[NODES] = { 0 };

	(void)state;
	setup_wheel(1 << 30, 10, false);
	for (int i = 0; i < NODES; i++)
		rctx_wheel_add(&wheel, &node[i],
			       (1 << 30) + ((rctx_time_t)i << (i % 50)) - 40);
	checked(&wheel);
	t = rctx_wheel_drain(&wheel, &n);
	assert_int_equal(n, NODES);
	assert_int_equal(wheel.count, 0);
	checked(&wheel);
	assert_int_equal(rctx_wheel_next(&wheel), INT64_MAX);
	rctx_wheel_init(&other, 1 << 30, 3, true);
	for (; t != NULL; t = next) {
		next = t->next;
		assert_null(t->pprev);
		assert_false(m[t - node]);
		m[t - node] = true;
		rctx_wheel_add(&other, t, t->expires);
		walked++;
	}
	assert_int_equal(walked, NODES);
	assert_int_equal(other.count, NODES);
	checked(&other);
	t = rctx_wheel_advance(&other, INT64_MAX, &n);
	assert_int_equal(n, NODES);
	checked(&other);
}

/* The checker must be able to fail. */
static void
test_check_detects(void **state)
{
	const char *why = NULL;

	(void)state;
	setup_wheel(0, 4, true);
	rctx_wheel_add(&wheel, &node[0], 1000);
	wheel.pending[node[0].level][node[0].bank] ^= UINT64_C(1)
						      << node[0].slot;
	assert_false(rctx_wheel_check(&wheel, &why));
	assert_non_null(why);
	wheel.pending[node[0].level][node[0].bank] ^= UINT64_C(1)
						      << node[0].slot;
	checked(&wheel);
	wheel.count++;
	assert_false(rctx_wheel_check(&wheel, NULL));
	wheel.count--;
	node[0].slot ^= 1;
	assert_false(rctx_wheel_check(&wheel, NULL));
	node[0].slot ^= 1;
	/* A node sitting in a slot that would fire it early. */
	rctx_wheel_del(&wheel, &node[0]);
	checked(&wheel);
	rctx_wheel_add(&wheel, &node[0], 16); /* tick 1: level 0, slot 1 */
	assert_int_equal(node[0].level, 0);
	assert_int_equal(node[0].slot, 1);
	checked(&wheel);
	node[0].expires = 1000; /* tick 63 */
	assert_false(rctx_wheel_check(&wheel, &why));
	node[0].expires = 16;
	checked(&wheel);
	/* A slot count off by one, and a next-turn bank node (tick 64, T_0)
	 * whose tick is moved into the current turn. */
	wheel.n[0][node[0].bank][node[0].slot]++;
	assert_false(rctx_wheel_check(&wheel, NULL));
	wheel.n[0][node[0].bank][node[0].slot]--;
	rctx_wheel_add(&wheel, &node[1], 64 * 16);
	assert_int_not_equal(node[1].bank, wheel.cur[0]);
	checked(&wheel);
	node[1].expires = 60 * 16;
	assert_false(rctx_wheel_check(&wheel, &why));
	assert_non_null(strstr(why, "next-turn"));
	node[1].expires = 64 * 16;
	checked(&wheel);
}

/* Non-precise: never early, late by less than one slot of its level. */
static void
test_coarse_lateness(void **state)
{
	bool m[NODES] = { 0 };

	(void)state;
	setup_wheel(0, 0, false);
	/* Tick 1 ns; 65 is level 1 (slot width 64): rounded up to 128. */
	rctx_wheel_add(&wheel, &node[0], 65);
	assert_int_equal(node[0].level, 1);
	assert_int_equal(rctx_wheel_next(&wheel), 128);
	assert_int_equal(adv(127, m), 0);
	assert_int_equal(adv(128, m), 1);
	/* Level 0 stays exact. */
	rctx_wheel_add(&wheel, &node[1], 130);
	assert_int_equal(adv(129, m), 0);
	assert_int_equal(adv(130, m), 1);
	/* A short timer across a level-1 boundary is not rounded to it:
	 * 191 -> 193 is filed in level 1 but re-filed at 192. */
	assert_int_equal(adv(191, m), 0);
	rctx_wheel_add(&wheel, &node[2], 193);
	assert_int_equal(node[2].level, 1);
	assert_int_equal(adv(192, m), 0);
	assert_int_equal(node[2].level, 0);
	assert_int_equal(adv(193, m), 1);
	assert_true(m[2]);
}

/* Where node i is: level, and whether in its level's next-turn bank. */
static bool
in_next_bank(int i)
{
	return rctx_wheel_timer_pending(&node[i]) &&
	       node[i].bank != wheel.cur[node[i].level];
}

/* Timers in the source slot of T_k (wheel.c): the slot after the clock's
 * digit at k+1, or slot 0 of k+1's next-turn bank when that digit is 63. */
static size_t
source_n(unsigned k)
{
	unsigned d = (unsigned)(wheel.curtick >> (6 * (k + 1))) & 63;
	unsigned b = wheel.cur[k + 1];

	if (d == 63)
		return wheel.n[k + 1][b ^ 1][0];
	return wheel.n[k + 1][b][d + 1];
}

/* Advance one tick at a time to `to` (1 ns ticks): every node fires at
 * exactly its own tick, none early. */
static void
step_to(rctx_time_t to, bool mark[NODES])
{
	while (wheel.now < to) {
		rctx_time_t t = wheel.now + 1;
		size_t n;
		struct rctx_wheel_timer *l = rctx_wheel_advance(&wheel, t, &n);

		for (; l != NULL; l = l->next) {
			ptrdiff_t id = l - node;

			assert_true(id >= 0 && id < NODES);
			assert_int_equal(l->expires, t); /* on time, exactly */
			assert_false(mark[id]);
			mark[id] = true;
		}
		checked(&wheel);
	}
}

/*
 * The pre-cascade (precise mode, 1 ns ticks, chunk 3): a timer of the next
 * level-0 turn is filed in that turn's bank and deleted from it in O(1);
 * a level-1 slot that becomes the next turn's source moves 3 timers a
 * tick into the bank; a turn that begins with its source only partly
 * moved still fires everything on its own tick; a level-2 slot moves into
 * level 1's next-turn bank, and its first slot on into level 0's, so that
 * one tick before each turn begins all of its timers are at level 0
 * already (before the banks, they sat a level or two up until the turn
 * began, and the advance that crossed into it re-filed them all).
 */
static void
test_precascade(void **state)
{
	bool m[NODES] = { 0 };
	size_t n;
	int i;

	(void)state;
	setup_wheel(0, 0, true);
	wheel.chunk = 3;

	/* Next-turn filing: tick 69 is in T_0 = [64, 128). */
	rctx_wheel_add(&wheel, &node[0], 69);
	assert_true(in_next_bank(0));
	assert_int_equal(node[0].level, 0);
	assert_int_equal(node[0].slot, 5);
	assert_int_equal(rctx_wheel_next(&wheel), 69);
	checked(&wheel);
	/* Delete from the bank: its bit and count go. */
	rctx_wheel_del(&wheel, &node[0]);
	assert_int_equal(wheel.pending[0][wheel.cur[0] ^ 1], 0);
	assert_int_equal(wheel.n[0][wheel.cur[0] ^ 1][5], 0);
	assert_int_equal(rctx_wheel_next(&wheel), INT64_MAX);
	checked(&wheel);
	rctx_wheel_add(&wheel, &node[0], 69);

	/* 21 timers in level 1, slot 2 (ticks 128..188): not yet a source. */
	for (i = 1; i <= 21; i++) {
		rctx_wheel_add(&wheel, &node[i], 128 + 3 * (i - 1));
		assert_int_equal(node[i].level, 1);
		assert_false(in_next_bank(i));
	}
	checked(&wheel);
	/* Enter T_0: the banks swap (node 0 is level 0 now, unmoved) and
	 * slot 2 is the source of the new T_0: 3 go to its bank. */
	assert_null(rctx_wheel_advance(&wheel, 64, &n));
	checked(&wheel);
	assert_false(in_next_bank(0));
	assert_int_equal(source_n(0), 18);
	n = 0;
	for (i = 1; i <= 21; i++)
		n += in_next_bank(i);
	assert_int_equal(n, 3);
	/* Delete one still in the source and one already moved (not node
	 * 1, the first due: the jump below counts on it). */
	for (i = 2; i <= 21 && in_next_bank(i); i++)
		;
	assert_true(i <= 21);
	rctx_wheel_del(&wheel, &node[i]);
	for (i = 2; i <= 21 && !in_next_bank(i); i++)
		;
	assert_true(i <= 21);
	rctx_wheel_del(&wheel, &node[i]);
	checked(&wheel);
	assert_int_equal(source_n(0), 17);
	/* One more chunk per tick, none within a tick. */
	assert_null(rctx_wheel_advance(&wheel, 65, &n));
	assert_int_equal(source_n(0), 14);
	assert_null(rctx_wheel_advance(&wheel, 65, &n));
	assert_int_equal(source_n(0), 14);
	step_to(68, m);
	assert_int_equal(source_n(0), 5);
	step_to(69, m);
	assert_true(m[0]);
	/* Jump to the start of T_0 with 2 left in the source: they are
	 * re-filed there, and everything fires on its tick. */
	assert_int_equal(source_n(0), 2);
	assert_int_equal(adv(128, m), 1); /* tick 128 */
	assert_true(m[1]);
	for (i = 2; i <= 21; i++)
		assert_true(!rctx_wheel_timer_pending(&node[i]) ||
			    (node[i].level == 0 && !in_next_bank(i)));
	step_to(200, m);
	assert_int_equal(wheel.count, 0);

	/* Level 2: ticks 8192.. are in level 2, slot 2, until the clock
	 * enters [4096, 8192), where that slot is the source of T_1. */
	for (i = 0; i < 40; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		rctx_wheel_add(&wheel, &node[i],
			       8192 + (i % 2 ? 64 * (i % 7) : 0) + i);
		assert_int_equal(node[i].level, 2);
	}
	step_to(4096, m);
	assert_int_equal(source_n(1), 40 - 3);
	step_to(4096 + 12, m);
	assert_int_equal(source_n(1), 1);
	step_to(4096 + 13, m);
	assert_int_equal(source_n(1), 0);
	/* All in level 1's next-turn bank; those of T_0 = [8192, 8256) in
	 * its slot 0, which becomes T_0's source at 8128. */
	for (i = 0; i < 40; i++)
		assert_true(node[i].level == 1 && in_next_bank(i));
	step_to(8128, m);
	/* Slot 0 of level 1's next-turn bank is now T_0's source: a new
	 * timer of T_0 skips it for T_0's bank, one level lower. */
	m[50] = false;
	rctx_wheel_add(&wheel, &node[50], 8200);
	assert_int_equal(node[50].level, 0);
	assert_true(in_next_bank(50));
	step_to(8191, m);
	assert_int_equal(source_n(0), 0);
	for (i = 0; i < 40; i++) {
		unsigned want = node[i].expires < 8256 ? 0 : 1;

		assert_int_equal(node[i].level, want);
		assert_true(in_next_bank(i));
	}
	/* Crossing into T_0 (and T_1): the banks become levels 0 and 1. */
	assert_int_equal(adv(8192, m), 1);
	for (i = 1; i < 40; i++)
		if (node[i].expires < 8256)
			assert_true(node[i].level == 0 && !in_next_bank(i));
	step_to(8192 + 64 * 7, m);
	for (i = 0; i < 40; i++)
		assert_true(m[i]);
	assert_true(m[50]);
	assert_int_equal(wheel.count, 0);
}

/*
 * Randomized model test. The model is an array of armed ids kept sorted by
 * (expires, id). What it expects from advance(now), with N = now >> shift,
 * E = ceil(expires / tick) saturated at INT64_MAX >> shift, and "past" =
 * expires <= the wheel's now when the timer was armed:
 *  - never early: everything returned has expires <= now;
 *  - precise mode: exactly the timers with expires <= now and (past or
 *    E <= N) are returned;
 *  - non-precise: every timer with past, or N >= min(E + 2^(6L) - 1,
 *    last tick), must be returned, L being the level of E - C (the level
 *    of its highest base-64 digit), C the clock's tick at arming.
 * Nothing is lost: a final advance to INT64_MAX returns everything left.
 */
#define MNODES 256

struct model {
	struct rctx_wheel w;
	struct rctx_wheel_timer t[MNODES];
	rctx_time_t exp[MNODES];
	uint64_t bound[MNODES]; /* tick by which it must have fired */
	bool past[MNODES];
	bool armed[MNODES];
	bool seen[MNODES];
	int sorted[MNODES];
	int nsorted;
	uint64_t rng;
};

static bool
before(const struct model *m, int a, int b)
{
	return m->exp[a] < m->exp[b] || (m->exp[a] == m->exp[b] && a < b);
}

static void
model_insert(struct model *m, int id)
{
	int i = m->nsorted;

	while (i > 0 && before(m, id, m->sorted[i - 1])) {
		m->sorted[i] = m->sorted[i - 1];
		i--;
	}
	m->sorted[i] = id;
	m->nsorted++;
}

static void
model_remove(struct model *m, int id)
{
	int i = 0;

	while (m->sorted[i] != id)
		i++;
	memmove(&m->sorted[i], &m->sorted[i + 1],
		(size_t)(m->nsorted - i - 1) * sizeof(int));
	m->nsorted--;
}

static uint64_t
tick_of(const struct model *m, rctx_time_t e)
{
	unsigned sh = m->w.tick_shift;
	uint64_t max = (uint64_t)INT64_MAX >> sh;
	uint64_t t = ((uint64_t)e + ((UINT64_C(1) << sh) - 1)) >> sh;

	return t > max ? max : t;
}

static void
model_arm(struct model *m, int id, rctx_time_t e)
{
	uint64_t max = (uint64_t)INT64_MAX >> m->w.tick_shift;
	uint64_t c = m->w.curtick, et;
	unsigned lvl = 0;

	m->exp[id] = e;
	m->past[id] = e <= m->w.now;
	et = m->past[id] ? c : tick_of(m, e);
	if (et > c)
		lvl = (unsigned)(63 - __builtin_clzll(et - c)) / 6;
	m->bound[id] = et + (UINT64_C(1) << (6 * lvl)) - 1;
	if (m->bound[id] > max || m->bound[id] < et)
		m->bound[id] = max;
	m->armed[id] = true;
	rctx_wheel_add(&m->w, &m->t[id], e);
	model_insert(m, id);
}

static void
model_cancel(struct model *m, int id)
{
	rctx_wheel_del(&m->w, &m->t[id]);
	assert_false(rctx_wheel_timer_pending(&m->t[id]));
	m->armed[id] = false;
	model_remove(m, id);
}

static rctx_time_t
pick_expiry(struct model *m)
{
	rctx_time_t now = m->w.now;
	rctx_time_t tick = (rctx_time_t)1 << m->w.tick_shift;
	uint64_t r = rnd(&m->rng);
	rctx_time_t room = INT64_MAX - now, d;

	if (room == 0)
		return now - (rctx_time_t)(r % 3);

	switch (r % 16) {
	case 0:
		return now -
		       (rctx_time_t)(rnd(&m->rng) % 1000); /* past / now */
	case 1:
		return INT64_MAX;
	case 2:
		return now + (rctx_time_t)(rnd(&m->rng) % (uint64_t)room);
	case 3: /* exactly on a tick boundary */
		d = (rctx_time_t)(rnd(&m->rng) % 200) * tick;
		return d > room ? INT64_MAX : (now & ~(tick - 1)) + d;
	case 4:
	case 5:
	case 6:
		d = (rctx_time_t)(rnd(&m->rng) % (uint64_t)(4 * tick));
		break;
	case 7:
	case 8:
	case 9:
		d = (rctx_time_t)(rnd(&m->rng) % (uint64_t)(300 * tick));
		break;
	case 10:
	case 11:
		d = (rctx_time_t)(rnd(&m->rng) % (uint64_t)(20000 * tick));
		break;
	default:
		d = (rctx_time_t)(rnd(&m->rng) >> (rnd(&m->rng) % 64));
		break;
	}
	return d > room ? INT64_MAX : now + d;
}

static size_t
model_advance(struct model *m, rctx_time_t now, bool rearm)
{
	size_t n = 0, walked = 0, want = 0;
	struct rctx_wheel_timer *t;
	uint64_t nt;
	rctx_time_t wnow;
	uint8_t lv[MNODES];

	for (int i = 0; i < MNODES; i++)
		lv[i] = m->t[i].level; /* for the failure message */
	t = rctx_wheel_advance(&m->w, now, &n);
	wnow = m->w.now;
	nt = (uint64_t)wnow >> m->w.tick_shift;
	assert_true(wnow >= now);
	memset(m->seen, 0, sizeof(m->seen));
	for (; t != NULL; t = t->next) {
		int id = (int)(t - m->t);

		assert_true(id >= 0 && id < MNODES);
		if (!m->armed[id] || m->seen[id])
			fail_msg("fired a timer that is not armed: %d", id);
		if (m->exp[id] > wnow)
			fail_msg("early: expires %lld now %lld",
				 (long long)m->exp[id], (long long)wnow);
		assert_null(t->pprev);
		m->seen[id] = true;
		walked++;
	}
	assert_int_equal(walked, n);
	for (int i = 0; i < m->nsorted; i++) {
		int id = m->sorted[i];
		bool must;

		if (m->exp[id] > wnow)
			break;
		if (m->w.precise) {
			must = m->past[id] || tick_of(m, m->exp[id]) <= nt;
			if (must != m->seen[id])
				fail_msg("precise: id %d exp %lld now %lld "
					 "fired %d expected %d (level %d)",
					 id, (long long)m->exp[id],
					 (long long)wnow, m->seen[id], must,
					 lv[id]);
		} else {
			must = m->past[id] || m->bound[id] <= nt;
			if (must && !m->seen[id])
				fail_msg("coarse: id %d exp %lld now %lld "
					 "too late",
					 id, (long long)m->exp[id],
					 (long long)wnow);
		}
		want += m->seen[id];
	}
	assert_int_equal(want, n);
	for (int id = 0; id < MNODES; id++) {
		if (m->seen[id]) {
			m->armed[id] = false;
			model_remove(m, id);
		}
	}
	/* The re-entrancy pattern: re-arm some just-fired timers. */
	for (int id = 0; id < MNODES && rearm; id++)
		if (m->seen[id] && rnd(&m->rng) % 2)
			model_arm(m, id, pick_expiry(m));
	return n;
}

static void
model_check_next(struct model *m)
{
	rctx_time_t nx = rctx_wheel_next(&m->w);
	uint64_t lim = UINT64_MAX;

	if (m->nsorted == 0) {
		assert_int_equal(nx, INT64_MAX);
		return;
	}
	/* next is no later than the time by which the model must fire. */
	for (int i = 0; i < m->nsorted; i++) {
		int id = m->sorted[i];
		uint64_t b;

		if (m->past[id])
			b = m->w.curtick;
		else if (m->w.precise)
			b = tick_of(m, m->exp[id]);
		else
			b = m->bound[id];
		if (b < lim)
			lim = b;
	}
	/* A bound already passed means "advance now". */
	lim <<= m->w.tick_shift;
	if (lim < (uint64_t)m->w.now)
		lim = (uint64_t)m->w.now;
	assert_true(nx >= 0);
	if ((uint64_t)nx > lim)
		fail_msg("next %lld after the model's bound %llu (now %lld "
			 "precise %d)",
			 (long long)nx, (unsigned long long)lim,
			 (long long)m->w.now, m->w.precise);
	/* And nothing comes due before it. */
	if (nx > m->w.now)
		assert_int_equal(model_advance(m, nx - 1, true), 0);
}

struct model_cfg {
	unsigned shift;
	bool precise;
	rctx_time_t start;
	size_t chunk; /* pre-cascade floor; 0: the default */
};

static size_t
run_model(uint64_t seed, const struct model_cfg *cfg, long steps)
{
	rctx_time_t start = cfg->start;
	unsigned shift = cfg->shift;
	bool precise = cfg->precise;
	struct model *m = calloc(1, sizeof(*m));
	size_t n;
	const char *why = NULL;
	rctx_time_t tick = (rctx_time_t)1 << shift;

	assert_non_null(m);
	m->rng = rnd_seed(seed);
	rctx_wheel_init(&m->w, start, shift, precise);
	if (cfg->chunk != 0)
		m->w.chunk = cfg->chunk;
	for (int i = 0; i < MNODES; i++)
		rctx_wheel_timer_init(&m->t[i]);
	for (long step = 0; step < steps; step++) {
		uint64_t r = rnd(&m->rng) % 100;
		int id = (int)(rnd(&m->rng) % MNODES);
		rctx_time_t now = m->w.now, d;

		if (r < 40) {
			if (m->armed[id])
				model_cancel(m, id);
			else
				model_arm(m, id, pick_expiry(m));
		} else if (r < 48) {
			if (m->armed[id])
				model_cancel(m, id);
			model_arm(m, id, pick_expiry(m));
		} else if (r < 93) {
			switch (rnd(&m->rng) % 8) {
			case 0:
				d = -(rctx_time_t)(rnd(&m->rng) % 100);
				break;
			case 1:
				d = 0;
				break;
			case 2:
				d = (rctx_time_t)(rnd(&m->rng) %
						  (uint64_t)(200000 * tick));
				break;
			case 3:
				d = (rnd(&m->rng) % 64) == 0
					? (rctx_time_t)(rnd(&m->rng) >> 20)
					: tick;
				break;
			default:
				d = (rctx_time_t)(rnd(&m->rng) %
						  (uint64_t)(3 * tick));
				break;
			}
			if (d > INT64_MAX - now)
				d = INT64_MAX - now;
			model_advance(m, now + d, true);
		} else {
			model_check_next(m);
		}
		if (!rctx_wheel_check(&m->w, &why))
			fail_msg("seed %llu step %ld: %s",
				 (unsigned long long)seed, step, why);
		assert_int_equal(m->w.count, (size_t)m->nsorted);
	}
	/* Nothing lost: the end of time returns every armed timer. */
	model_advance(m, INT64_MAX, false);
	assert_int_equal(m->nsorted, 0);
	assert_int_equal(m->w.count, 0);
	assert_null(rctx_wheel_drain(&m->w, &n));
	assert_true(rctx_wheel_check(&m->w, NULL));
	free(m);
	return (size_t)steps;
}

static const struct model_cfg cfgs[] = {
	{ 0, true, 0, 0 },
	{ 4, true, 1000, 0 },
	{ 20, true, (rctx_time_t)1 << 40, 0 },
	{ 30, true, 5, 0 },
	{ 20, true, INT64_MAX - ((rctx_time_t)1 << 38), 0 }, /* end of time */
	/* Partial pre-cascades: sources left half moved at boundaries. */
	{ 0, true, 0, 1 },
	{ 4, true, 4000, 2 },
	{ 20, true, INT64_MAX - ((rctx_time_t)1 << 38), 1 },
	{ 0, false, 3, 0 },
	{ 10, false, 77777, 0 },
	{ 20, false, (rctx_time_t)1 << 50, 0 },
	{ 6, false, INT64_MAX - ((rctx_time_t)1 << 25), 0 },
};

#define SEEDS 3
#define STEPS (60000L * RCTX_STRESS_SCALE)

static void
test_model(void **state)
{
	size_t total = 0;

	(void)state;
	for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++)
		for (uint64_t s = 1; s <= SEEDS; s++)
			total += run_model(s * 7919 + c, &cfgs[c], STEPS);
	print_message("# model: %zu random steps\n", total);
	assert_true(total >= 2000000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_add_del),
		cmocka_unit_test(test_precise_rounding),
		cmocka_unit_test(test_past_and_now),
		cmocka_unit_test(test_int64_max),
		cmocka_unit_test(test_time_jumps),
		cmocka_unit_test(test_big_jump_partial),
		cmocka_unit_test(test_rearm_from_expired),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_check_detects),
		cmocka_unit_test(test_coarse_lateness),
		cmocka_unit_test(test_precascade),
		cmocka_unit_test(test_model),
	};

	return RUN_TESTS(tests);
}
