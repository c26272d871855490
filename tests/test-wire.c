/* SPDX-License-Identifier: MIT */
/* Deadlines across services: wire formats, budgets, named causes. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault.h"
#include "rctx.h"

#define MIN_NS (60 * RCTX_SEC)
#define HOUR   (3600 * RCTX_SEC)

/* A value a failed parse must leave alone. */
#define UNTOUCHED ((rctx_time_t)0x5a5a5a5a5a5a)

/* Nanoseconds of a grpc-timeout unit letter; 0 if not a unit. */
static rctx_time_t
unit_ns(char u)
{
	switch (u) {
	case 'n':
		return 1;
	case 'u':
		return RCTX_USEC;
	case 'm':
		return RCTX_MSEC;
	case 'S':
		return RCTX_SEC;
	case 'M':
		return MIN_NS;
	case 'H':
		return HOUR;
	default:
		return 0;
	}
}

static rctx_time_t
parse_ok(const char *s)
{
	rctx_time_t t = UNTOUCHED;

	assert_int_equal(rctx_grpc_timeout_parse(s, strlen(s), &t), 0);
	return t;
}

static void
format_is(rctx_time_t t, const char *want)
{
	char buf[RCTX_GRPC_TIMEOUT_SIZE];
	int n = rctx_grpc_timeout_format(t, buf, sizeof(buf));

	if (n < 0 || strcmp(buf, want) != 0)
		fail_msg("format(%lld) = %d \"%s\", want \"%s\"", (long long)t,
			 n, n < 0 ? "" : buf, want);
	assert_int_equal(n, (int)strlen(want));
}

/*
 * Vectors. "go" marks the cases of grpc-go's TestEncodeDuration
 * (internal/grpcutil/encode_duration_test.go): grpc-go writes the coarsest
 * unit that divides exactly ("1S"), rctx the finest that fits ("1000000u");
 * both read back to the same value, checked below.
 */
static void
test_grpc_format_vectors(void **state)
{
	(void)state;
	static const struct {
		rctx_time_t t;
		const char *rctx, *go; /* go: grpc-go's encoding, or NULL */
	} v[] = {
		{ 1, "1n", "1n" },
		{ 99999999, "99999999n", "99999999n" },
		{ RCTX_USEC, "1000n", "1u" },
		{ 99999999 * RCTX_USEC, "99999999u", "99999999u" },
		{ RCTX_MSEC, "1000000n", "1m" },
		{ 99999999 * RCTX_MSEC, "99999999m", "99999999m" },
		{ RCTX_SEC, "1000000u", "1S" },
		{ 99999999 * RCTX_SEC, "99999999S", "99999999S" },
		{ MIN_NS, "60000000u", "1M" },
		{ 99999999 * MIN_NS, "99999999M", "99999999M" },
		{ HOUR, "3600000m", "1H" },
		/* grpc-go's rounding cases: rctx agrees on every one. */
		{ 100000001, "100001u", "100001u" },
		{ 100000001 * RCTX_USEC, "100001m", "100001m" },
		{ 100000001 * RCTX_MSEC, "100001S", "100001S" },
		{ 100000000 * RCTX_SEC, "1666667M", "1666667M" },
		{ 100000000 * MIN_NS, "1666667H", "1666667H" },
		{ INT64_MAX, "2562048H", "2562048H" }, /* max Duration */
		/* Rounding up that carries into a ninth digit moves a unit. */
		{ 99999999999, "100000m", NULL },
		{ 100000000, "100000u", NULL },
		{ 99999999 * RCTX_USEC + 1, "100000m", NULL },
		{ 1500 * RCTX_MSEC, "1500000u", NULL },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		format_is(v[i].t, v[i].rctx);
		if (v[i].go != NULL && strcmp(v[i].go, v[i].rctx) != 0)
			assert_int_equal(parse_ok(v[i].go),
					 parse_ok(v[i].rctx));
	}
}

/*
 * Envoy's toGrpcTimeout (source/common/grpc/common.cc) takes whole ms and
 * writes m, S, M or H, truncating when it moves to a coarser unit and
 * clipping at 99999999H. Where it truncates, its value reads back earlier
 * than the timeout; rctx's never does.
 */
static void
test_grpc_format_vs_envoy(void **state)
{
	(void)state;
	static const struct {
		int64_t ms;
		const char *envoy, *rctx;
		bool early; /* Envoy's value reads back before the timeout */
	} v[] = {
		{ 1, "1m", "1000000n", false },
		{ 99999999, "99999999m", "99999999m", false },
		{ 100000000, "100000S", "100000S", false },
		{ 100000001, "100000S", "100001S", true }, /* 1 ms */
		{ 60000000000, "60000000S", "60000000S", false },
		{ 100000000000, "1666666M", "1666667M", true }, /* 40 s */
		{ 3600000000000, "60000000M", "60000000M", false },
		{ 6000000000000, "1666666H", "1666667H", true }, /* 40 min */
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		rctx_time_t t = v[i].ms * RCTX_MSEC;

		format_is(t, v[i].rctx);
		assert_true(parse_ok(v[i].rctx) >= t);
		if (v[i].early)
			assert_true(parse_ok(v[i].envoy) < t);
		else
			assert_int_equal(parse_ok(v[i].envoy), t);
	}
	/* Envoy clips at 99999999H; rctx reads that back saturated. */
	assert_int_equal(parse_ok("99999999H"), INT64_MAX);
}

static void
test_grpc_format_errors(void **state)
{
	(void)state;
	char buf[RCTX_GRPC_TIMEOUT_SIZE];

	/* Nothing left: do not send. */
	assert_int_equal(rctx_grpc_timeout_format(0, buf, sizeof(buf)),
			 -EINVAL);
	assert_int_equal(rctx_grpc_timeout_format(-1, buf, sizeof(buf)),
			 -EINVAL);
	assert_int_equal(rctx_grpc_timeout_format(INT64_MIN, buf, sizeof(buf)),
			 -EINVAL);
	assert_int_equal(rctx_grpc_timeout_format(1, NULL, 10), -EINVAL);
	assert_int_equal(rctx_grpc_timeout_format(1, NULL, 0), -EINVAL);

	/* Too small: -ENOBUFS and buf untouched; exactly enough works. */
	static const rctx_time_t ts[] = { 1, 99999999, RCTX_SEC, INT64_MAX };
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		int len = rctx_grpc_timeout_format(ts[i], buf, sizeof(buf));

		assert_true(len >= 2 && len <= 9);
		for (int size = 0; size <= len; size++) {
			memset(buf, '#', sizeof(buf));
			assert_int_equal(
			    rctx_grpc_timeout_format(ts[i], buf, size),
			    -ENOBUFS);
			for (size_t k = 0; k < sizeof(buf); k++)
				assert_int_equal(buf[k], '#');
		}
		assert_int_equal(rctx_grpc_timeout_format(ts[i], buf, len + 1),
				 len);
		assert_int_equal(buf[len], '\0');
	}
	/* The longest value fits RCTX_GRPC_TIMEOUT_SIZE. */
	assert_int_equal(rctx_grpc_timeout_format(99999999, buf, sizeof(buf)),
			 9);
}

/*
 * grpc-go's decodeTimeout (internal/transport/http_util.go) accepts 2 to 9
 * bytes, digits through strconv.ParseUint (leading zeros fine, no sign),
 * and clamps hours past math.MaxInt64 / time.Hour = 2562047 to MaxInt64.
 */
static void
test_grpc_parse_vectors(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		rctx_time_t t;
	} v[] = {
		{ "1n", 1 },
		{ "1u", RCTX_USEC },
		{ "1m", RCTX_MSEC },
		{ "1S", RCTX_SEC },
		{ "1M", MIN_NS },
		{ "1H", HOUR },
		{ "12S", 12 * RCTX_SEC },
		{ "00000001S", RCTX_SEC },
		{ "99999999n", 99999999 },
		{ "99999999M", 99999999 * MIN_NS },
		{ "2562047H", 2562047 * HOUR },
		{ "2562048H", INT64_MAX },
		{ "99999999H", INT64_MAX },
		{ "0n", 0 },
		{ "0u", 0 },
		{ "0m", 0 },
		{ "0S", 0 }, /* grpc-go's encoding of an expired timeout */
		{ "0M", 0 },
		{ "0H", 0 },
		{ "00000000H", 0 },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_equal(parse_ok(v[i].s), v[i].t);

	/*
	 * Envoy's getGrpcTimeout rounds u and n up to whole ms ("1n" is 1 ms,
	 * "1500u" 2 ms); rctx keeps the ns, never later than Envoy's reading
	 * and earlier by less than a ms.
	 */
	static const struct {
		const char *s;
		int64_t envoy_ms;
	} e[] = { { "1n", 1 },
		  { "1500u", 2 },
		  { "999999n", 1 },
		  { "1000000n", 1 },
		  { "99999999u", 100000 } };
	for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		rctx_time_t t = parse_ok(e[i].s);

		assert_true(t <= e[i].envoy_ms * RCTX_MSEC);
		assert_true(e[i].envoy_ms * RCTX_MSEC - t < RCTX_MSEC);
	}

	/* Exactly len bytes are read; no NUL is needed. */
	rctx_time_t t = UNTOUCHED;
	assert_int_equal(rctx_grpc_timeout_parse("7Sjunk", 2, &t), 0);
	assert_int_equal(t, 7 * RCTX_SEC);
	char raw[3] = { '4', '2', 'm' };
	assert_int_equal(rctx_grpc_timeout_parse(raw, 3, &t), 0);
	assert_int_equal(t, 42 * RCTX_MSEC);
}

static void
test_grpc_parse_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t len;
	} bad[] = {
		{ "", 0 },
		{ "S", 1 },
		{ "1", 1 },
		{ "12", 2 },
		{ "123456789S", 10 }, /* 9 digits */
		{ "000000000S", 10 },
		{ "+1S", 3 },
		{ "-1S", 3 },
		{ " 1S", 3 },
		{ "1S ", 3 },
		{ "1 S", 3 },
		{ "1S\r", 3 },
		{ "1s", 2 }, /* unknown unit */
		{ "1h", 2 },
		{ "1x", 2 },
		{ "1SS", 3 },
		{ "1.5S", 4 },
		{ "0x1S", 4 },
		{ "1\0S", 3 },
		{ "\xd9\xa1S", 3 }, /* a non-ASCII digit */
		{ "7Sjunk", 6 },
		{ "12S", 2 }, /* len cuts the unit off */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rctx_time_t t = UNTOUCHED;

		if (rctx_grpc_timeout_parse(bad[i].s, bad[i].len, &t) !=
		    -EINVAL)
			fail_msg("parse \"%.*s\" accepted", (int)bad[i].len,
				 bad[i].s);
		assert_int_equal(t, UNTOUCHED);
	}
	rctx_time_t t = UNTOUCHED;
	assert_int_equal(rctx_grpc_timeout_parse(NULL, 2, &t), -EINVAL);
	assert_int_equal(rctx_grpc_timeout_parse(NULL, 0, &t), -EINVAL);
	assert_int_equal(rctx_grpc_timeout_parse("1S", 2, NULL), -EINVAL);
	assert_int_equal(t, UNTOUCHED);
}

static uint64_t
rnd(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* The properties the fuzz target checks, on a deterministic sweep. */
static void
check_round_trip(rctx_time_t t)
{
	char buf[RCTX_GRPC_TIMEOUT_SIZE];
	int len = rctx_grpc_timeout_format(t, buf, sizeof(buf));
	rctx_time_t back = UNTOUCHED, u;

	assert_true(len >= 2 && len <= 9);
	assert_int_equal(strlen(buf), (size_t)len);
	assert_int_equal(rctx_grpc_timeout_parse(buf, len, &back), 0);
	u = unit_ns(buf[len - 1]);
	/* Never earlier; later by less than one unit (or saturated). */
	assert_true(back >= t);
	assert_true(back - t < u || back == INT64_MAX);
	/* The finest unit that fits: one finer would need a ninth digit. */
	if (u > 1) {
		rctx_time_t finer = u == MIN_NS ? RCTX_SEC
				    : u == HOUR ? MIN_NS
						: u / 1000;

		assert_true(t / finer + (t % finer != 0) > 99999999);
	}
}

static void
test_grpc_round_trip_sweep(void **state)
{
	(void)state;
	uint64_t st = 0x9e3779b97f4a7c15ull;

	for (int shift = 0; shift < 63; shift++) {
		rctx_time_t p = (rctx_time_t)1 << shift;

		check_round_trip(p);
		check_round_trip(p + 1);
		if (p > 1)
			check_round_trip(p - 1);
	}
	/* Each unit's edges: 99999999 and 100000000 units, plus/minus 1. */
	for (char *u = "numSMH"; *u; u++) {
		rctx_time_t n = unit_ns(*u);

		for (rctx_time_t k = 99999998; k <= 100000001; k++) {
			if (k > INT64_MAX / n)
				break;
			check_round_trip(k * n - 1);
			check_round_trip(k * n);
			check_round_trip(k * n + 1);
		}
	}
	for (int i = 0; i < 200000; i++) {
		uint64_t r = rnd(&st);
		rctx_time_t t = (rctx_time_t)(r >> (1 + r % 63));

		if (t > 0)
			check_round_trip(t);
	}
	check_round_trip(INT64_MAX);
	check_round_trip(INT64_MAX - 1);
}

static void
test_envoy_headers(void **state)
{
	(void)state;
	char buf[RCTX_ENVOY_TIMEOUT_SIZE];
	rctx_time_t t;

	static const struct {
		rctx_time_t t;
		const char *s;
	} f[] = {
		{ 1, "1" }, /* never "0": Envoy reads 0 as no timeout */
		{ RCTX_MSEC, "1" },
		{ RCTX_MSEC + 1, "2" },
		{ 15 * RCTX_SEC, "15000" },
		{ INT64_MAX, "9223372036855" },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		int n = rctx_envoy_timeout_format(f[i].t, buf, sizeof(buf));

		assert_int_equal(n, (int)strlen(f[i].s));
		assert_string_equal(buf, f[i].s);
		/* Too small by one: -ENOBUFS, buf untouched. */
		memset(buf, '#', sizeof(buf));
		assert_int_equal(rctx_envoy_timeout_format(f[i].t, buf, n),
				 -ENOBUFS);
		assert_int_equal(buf[0], '#');
	}
	assert_int_equal(rctx_envoy_timeout_format(0, buf, sizeof(buf)),
			 -EINVAL);
	assert_int_equal(rctx_envoy_timeout_format(-5, buf, sizeof(buf)),
			 -EINVAL);
	assert_int_equal(rctx_envoy_timeout_format(1, NULL, 14), -EINVAL);

	static const struct {
		const char *s;
		rctx_time_t t;
	} p[] = {
		{ "0", RCTX_FOREVER }, /* Envoy: 0 is no timeout */
		{ "1", RCTX_MSEC },
		{ "15000", 15 * RCTX_SEC },
		{ "0015", 15 * RCTX_MSEC },
		{ "9223372036854", 9223372036854 * RCTX_MSEC },
		{ "9223372036855", INT64_MAX },
		{ "18446744073709551615", INT64_MAX }, /* UINT64_MAX ms */
	};
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		t = UNTOUCHED;
		assert_int_equal(
		    rctx_envoy_timeout_parse(p[i].s, strlen(p[i].s), &t), 0);
		assert_int_equal(t, p[i].t);
	}
	static const char *bad[] = { "",
				     "+1",
				     "-1",
				     " 1",
				     "1 ",
				     "1.0",
				     "1e3",
				     "0x10",
				     "10ms",
				     "18446744073709551616",
				     "000000000000000000001" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = UNTOUCHED;
		assert_int_equal(
		    rctx_envoy_timeout_parse(bad[i], strlen(bad[i]), &t),
		    -EINVAL);
		assert_int_equal(t, UNTOUCHED);
	}
	assert_int_equal(rctx_envoy_timeout_parse(NULL, 1, &t), -EINVAL);
	assert_int_equal(rctx_envoy_timeout_parse("1", 1, NULL), -EINVAL);
	/* Exactly len bytes. */
	assert_int_equal(rctx_envoy_timeout_parse("250ms", 3, &t), 0);
	assert_int_equal(t, 250 * RCTX_MSEC);
}

static void
test_remaining(void **state)
{
	(void)state;
	rctx_t *c, *t, *v, *w, *past;
	rctx_time_t before, after, r, d;

	assert_int_equal(rctx_remaining(NULL), RCTX_FOREVER);
	assert_int_equal(rctx_remaining(rctx_background()), RCTX_FOREVER);
	assert_int_equal(rctx_remaining(rctx_todo()), RCTX_FOREVER);

	c = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_remaining(c), RCTX_FOREVER);

	before = rctx_now();
	t = rctx_with_timeout(c, HOUR);
	after = rctx_now();
	assert_true(rctx_deadline(t, &d));
	r = rctx_remaining(t);
	assert_true(r > 0 && r <= HOUR);
	assert_true(r <= d - after && d - before <= HOUR + (after - before));
	/* A value child reads its parent's; without_cancel has none. */
	v = rctx_with_value(t, &before, NULL);
	assert_true(rctx_remaining(v) > 0 && rctx_remaining(v) <= r);
	w = rctx_without_cancel(v);
	assert_int_equal(rctx_remaining(w), RCTX_FOREVER);

	/* Done for any reason: 0, deadline or not. */
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_remaining(c), 0);
	assert_int_equal(rctx_remaining(t), 0);
	assert_int_equal(rctx_remaining(v), 0);
	assert_int_equal(rctx_remaining(w), RCTX_FOREVER);

	past = rctx_with_deadline(rctx_background(), rctx_now() - 1);
	assert_int_equal(rctx_remaining(past), 0);

	rctx_release(past);
	rctx_release(w);
	rctx_release(v);
	rctx_release(t);
	rctx_release(c);

	/* A deadline that expires: 0 once err says so. */
	t = rctx_with_timeout(rctx_background(), RCTX_MSEC);
	assert_int_equal(rctx_wait(t, 60 * RCTX_SEC), ETIMEDOUT);
	assert_int_equal(rctx_remaining(t), 0);
	rctx_release(t);
}

/* ingress with value s under budget b: checks the deadline is now plus
 * want (bracketed by clock reads), never later than parent's. */
static rctx_t *
ingress_at(rctx_t *parent, const char *s, const rctx_budget_t *b,
	   rctx_time_t want)
{
	rctx_t *out = NULL;
	rctx_time_t before = rctx_now(), after, d, pd;

	assert_int_equal(rctx_ingress_grpc(parent, s, strlen(s), b, &out), 0);
	after = rctx_now();
	assert_non_null(out);
	assert_true(rctx_deadline(out, &d));
	if (rctx_deadline(parent, &pd) && pd < before + want)
		assert_int_equal(d, pd);
	else
		assert_true(d >= before + want && d <= after + want);
	return out;
}

static void
test_ingress_budget(void **state)
{
	(void)state;
	rctx_budget_t b = { 0 };
	rctx_t *c, *p, *out;

	c = ingress_at(rctx_background(), "10S", &b, 10 * RCTX_SEC);
	assert_false(rctx_done(c));
	rctx_release(c);

	b.margin = RCTX_SEC;
	c = ingress_at(rctx_background(), "10S", &b, 9 * RCTX_SEC);
	rctx_release(c);

	b.cap = 5 * RCTX_SEC;
	c = ingress_at(rctx_background(), "10S", &b, 5 * RCTX_SEC);
	rctx_release(c);
	c = ingress_at(rctx_background(), "3S", &b, 2 * RCTX_SEC);
	rctx_release(c);

	/* Never later than the parent: a peer can only shorten. */
	p = rctx_with_timeout(rctx_background(), 2 * RCTX_SEC);
	b = (rctx_budget_t){ 0 };
	c = ingress_at(p, "1H", &b, HOUR);
	rctx_release(c);
	c = ingress_at(p, "99999999H", &b, INT64_MAX / 2);
	rctx_release(c);
	rctx_release(p);

	/* No header, no cap: a plain cancelable child, no deadline. */
	out = NULL;
	assert_int_equal(
	    rctx_ingress(rctx_background(), RCTX_FOREVER, &b, &out), 0);
	assert_false(rctx_deadline(out, NULL));
	assert_false(rctx_done(out));
	assert_int_equal(rctx_cancel(out), 0);
	rctx_release(out);
	/* No header with a cap: the cap. */
	b.cap = 2 * RCTX_SEC;
	rctx_time_t before = rctx_now(), d;
	assert_int_equal(
	    rctx_ingress(rctx_background(), RCTX_FOREVER, &b, &out), 0);
	assert_true(rctx_deadline(out, &d));
	assert_true(d >= before + 2 * RCTX_SEC &&
		    d <= rctx_now() + 2 * RCTX_SEC);
	rctx_release(out);

	/* Nothing left ("0n", or less than the margin): born done. */
	b = (rctx_budget_t){ .margin = 5 * RCTX_SEC };
	static const char *gone[] = { "0n", "0H", "4S", "5S" };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		out = NULL;
		assert_int_equal(rctx_ingress_grpc(rctx_background(), gone[i],
						   strlen(gone[i]), &b, &out),
				 0);
		assert_int_equal(rctx_err(out), ETIMEDOUT);
		assert_int_equal(rctx_cause(out), RCTX_CAUSE_PEER_DEADLINE);
		rctx_release(out);
	}
}

/* Every malformed header, bad budget or NULL: -EINVAL, nothing made. */
static void
test_ingress_bad_input(void **state)
{
	(void)state;
	rctx_budget_t b = { 0 };
	rctx_t *parent = rctx_with_cancel(rctx_background());
	rctx_t *sentinel = (rctx_t *)&b, *out = sentinel;
	static const char *bad[] = { "",    "S",	  "10",	 "+1S",
				     "-1S", " 1S",	  "1S ", "1s",
				     "1SS", "123456789S", "1.S", "0x1S" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    rctx_ingress_grpc(parent, bad[i], strlen(bad[i]), &b, &out),
		    -EINVAL);
		assert_ptr_equal(out, sentinel);
	}
	assert_int_equal(rctx_ingress_grpc(NULL, "1S", 2, &b, &out), -EINVAL);
	assert_int_equal(rctx_ingress_grpc(parent, NULL, 2, &b, &out), -EINVAL);
	assert_int_equal(rctx_ingress_grpc(parent, "1S", 2, NULL, &out),
			 -EINVAL);
	assert_int_equal(rctx_ingress_grpc(parent, "1S", 2, &b, NULL), -EINVAL);
	assert_int_equal(rctx_ingress(NULL, RCTX_SEC, &b, &out), -EINVAL);
	assert_int_equal(rctx_ingress(parent, -1, &b, &out), -EINVAL);
	b.cap = -1;
	assert_int_equal(rctx_ingress(parent, RCTX_SEC, &b, &out), -EINVAL);
	b = (rctx_budget_t){ .margin = -1 };
	assert_int_equal(rctx_ingress(parent, RCTX_SEC, &b, &out), -EINVAL);
	assert_ptr_equal(out, sentinel);

	/* The parent is unchanged: live, no deadline, cancels cleanly, and
	 * no child was attached (a cancel reaches nothing but itself). */
	assert_false(rctx_done(parent));
	assert_false(rctx_deadline(parent, NULL));
	assert_int_equal(rctx_cancel(parent), 0);
	assert_int_equal(rctx_cause(parent), ECANCELED);
	rctx_release(parent);
}

#ifdef RCTX_FAULT_INJECTION
/* Out of memory: -ENOMEM, *out untouched, the parent unchanged. */
static void
test_ingress_enomem(void **state)
{
	(void)state;
	rctx_budget_t b = { 0 };
	rctx_t *parent = rctx_with_cancel(rctx_background());
	rctx_t *sentinel = (rctx_t *)&b;
	int failures = 0;

	rctx_shutdown(); /* empty the caches: the next context is malloced */
	for (unsigned long n = 1; n <= 8; n++) {
		rctx_t *out = sentinel;
		int rc;

		rctx_fault_arm(RCTX_FAULT_MALLOC, n);
		rc = rctx_ingress_grpc(parent, "5S", 2, &b, &out);
		rctx_fault_arm(RCTX_FAULT_MALLOC, 0);
		if (rc == -ENOMEM || rc == -EAGAIN) {
			failures++;
			assert_ptr_equal(out, sentinel);
		} else {
			assert_int_equal(rc, 0);
			rctx_release(out);
		}
		rctx_shutdown();
	}
	assert_true(failures > 0);
	assert_false(rctx_done(parent));
	rctx_release(parent);
}
#endif

static void
test_egress(void **state)
{
	(void)state;
	char buf[RCTX_GRPC_TIMEOUT_SIZE];
	rctx_time_t t = UNTOUCHED, d, before, after, got;
	rctx_t *c, *tm, *done;

	/* No deadline: send no timeout. */
	c = rctx_with_cancel(rctx_background());
	assert_int_equal(rctx_egress(c, RCTX_SEC, &t), 0);
	assert_int_equal(t, RCTX_FOREVER);
	memset(buf, '#', sizeof(buf));
	assert_int_equal(rctx_egress_grpc(c, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	assert_int_equal(rctx_egress_grpc(c, 0, buf, 0), 0);

	/* A deadline: what is left minus the margin. */
	tm = rctx_with_timeout(c, 10 * RCTX_SEC);
	assert_true(rctx_deadline(tm, &d));
	before = rctx_now();
	assert_int_equal(rctx_egress(tm, RCTX_SEC, &t), 0);
	after = rctx_now();
	assert_true(t <= d - before - RCTX_SEC && t >= d - after - RCTX_SEC);
	before = rctx_now();
	int n = rctx_egress_grpc(tm, RCTX_SEC, buf, sizeof(buf));
	after = rctx_now();
	assert_true(n >= 2 && n <= 9);
	got = parse_ok(buf);
	assert_true(got >= d - after - RCTX_SEC);
	assert_true(got < d - before - RCTX_SEC + unit_ns(buf[n - 1]));
	/* Too small a buffer. */
	assert_int_equal(rctx_egress_grpc(tm, 0, buf, 2), -ENOBUFS);

	/* Less than the margin left: don't send. */
	assert_int_equal(rctx_egress(tm, 11 * RCTX_SEC, &t), -ETIMEDOUT);
	assert_int_equal(rctx_egress_grpc(tm, 11 * RCTX_SEC, buf, sizeof(buf)),
			 -ETIMEDOUT);

	/* Done: don't send, and say why. */
	done = rctx_with_timeout(c, 0);
	assert_int_equal(rctx_egress(done, 0, &t), -ETIMEDOUT);
	assert_int_equal(rctx_egress_grpc(done, 0, buf, sizeof(buf)),
			 -ETIMEDOUT);
	rctx_release(done);
	assert_int_equal(rctx_cancel(c), 0);
	assert_int_equal(rctx_egress(c, 0, &t), -ECANCELED);
	assert_int_equal(rctx_egress(tm, 0, &t), -ECANCELED);
	assert_int_equal(rctx_egress_grpc(tm, 0, buf, sizeof(buf)), -ECANCELED);

	/* Bad input. */
	t = UNTOUCHED;
	assert_int_equal(rctx_egress(NULL, 0, &t), -EINVAL);
	assert_int_equal(rctx_egress(tm, 0, NULL), -EINVAL);
	assert_int_equal(rctx_egress(tm, -1, &t), -EINVAL);
	assert_int_equal(t, UNTOUCHED);
	assert_int_equal(rctx_egress_grpc(NULL, 0, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(rctx_egress_grpc(tm, 0, NULL, 10), -EINVAL);
	assert_int_equal(rctx_egress_grpc(tm, -1, buf, sizeof(buf)), -EINVAL);
	rctx_release(tm);
	rctx_release(c);
}

static void
test_cause_registry(void **state)
{
	(void)state;
	static const char db[] = "db deadline";
	int code = rctx_cause_register(db, RCTX_CAUSE_KIND_DEADLINE);

	assert_true(code >= RCTX_CAUSE_NAMED);
	assert_ptr_equal(rctx_cause_name(code), db); /* not copied */
	assert_int_equal(rctx_cause_kind(code), RCTX_CAUSE_KIND_DEADLINE);
	/* Registering again: the same code; equal strings are one name. */
	char copy[sizeof(db)];
	memcpy(copy, db, sizeof(db));
	assert_int_equal(rctx_cause_register(copy, RCTX_CAUSE_KIND_DEADLINE),
			 code);
	assert_int_equal(rctx_cause_register(db, RCTX_CAUSE_KIND_CLIENT),
			 -EEXIST);
	assert_int_equal(rctx_cause_register(NULL, RCTX_CAUSE_KIND_CLIENT),
			 -EINVAL);
	assert_int_equal(rctx_cause_register("", RCTX_CAUSE_KIND_CLIENT),
			 -EINVAL);
	assert_int_equal(rctx_cause_register("x", 0), -EINVAL);
	assert_int_equal(rctx_cause_register("x", 4), -EINVAL);

	assert_string_equal(rctx_cause_name(RCTX_CAUSE_PEER_DEADLINE),
			    "peer deadline");
	assert_string_equal(rctx_cause_name(RCTX_CAUSE_CAP_DEADLINE),
			    "deadline cap");
	assert_string_equal(rctx_cause_name(RCTX_CAUSE_CLIENT_GONE),
			    "client gone");
	assert_string_equal(rctx_cause_name(RCTX_CAUSE_SHUTDOWN),
			    "shutting down");
	assert_int_equal(
	    rctx_cause_register("peer deadline", RCTX_CAUSE_KIND_DEADLINE),
	    RCTX_CAUSE_PEER_DEADLINE);
	assert_string_equal(rctx_cause_name(ECANCELED), "ECANCELED");
	assert_string_equal(rctx_cause_name(ETIMEDOUT), "ETIMEDOUT");
	assert_null(rctx_cause_name(0));
	assert_null(rctx_cause_name(-1));
	assert_null(rctx_cause_name(INT_MIN));
	assert_null(rctx_cause_name(INT_MAX));
	assert_null(rctx_cause_name(RCTX_CAUSE_NAMED + 255));
	assert_int_equal(rctx_cause_kind(ECANCELED), 0);
	assert_int_equal(rctx_cause_kind(RCTX_CAUSE_NAMED + 255), 0);
}

/* Readable from any descendant; the status each way of ending maps to. */
static void
test_cause_descendants_and_status(void **state)
{
	(void)state;
	static char key;
	rctx_t *req, *val, *sub, *free_;

	/* Not done: no reason, status 0; NULL reads as background. */
	assert_null(rctx_reason(NULL));
	assert_int_equal(rctx_grpc_status(NULL), 0);
	assert_int_equal(rctx_http_status(NULL), 0);

	static const struct {
		int cause, grpc, http;
		const char *name;
	} v[] = {
		{ 0, 1, 499, "ECANCELED" },
		{ RCTX_CAUSE_CLIENT_GONE, 1, 499, "client gone" },
		{ RCTX_CAUSE_SHUTDOWN, 1, 503, "shutting down" },
		{ RCTX_CAUSE_PEER_DEADLINE, 4, 504, "peer deadline" },
		{ ETIMEDOUT, 4, 504, "ETIMEDOUT" },
		{ EPIPE, 1, 499, "EPIPE" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		req = rctx_with_cancel(rctx_background());
		val = rctx_with_value(req, &key, NULL);
		sub = rctx_with_timeout(val, HOUR);
		free_ = rctx_without_cancel(sub);
		assert_null(rctx_reason(sub));
		assert_int_equal(rctx_grpc_status(sub), 0);
		assert_int_equal(rctx_http_status(sub), 0);

		assert_int_equal(rctx_cancel_cause(req, v[i].cause), 0);
		const rctx_t *all[] = { req, val, sub };
		for (size_t k = 0; k < 3; k++) {
			assert_string_equal(rctx_reason(all[k]), v[i].name);
			assert_int_equal(rctx_grpc_status(all[k]), v[i].grpc);
			assert_int_equal(rctx_http_status(all[k]), v[i].http);
		}
		assert_null(rctx_reason(free_));
		assert_int_equal(rctx_http_status(free_), 0);
		rctx_release(free_);
		rctx_release(sub);
		rctx_release(val);
		rctx_release(req);
	}

	/* A fired deadline without a cause: DEADLINE_EXCEEDED, 504. */
	sub = rctx_with_timeout(rctx_background(), 0);
	assert_int_equal(rctx_grpc_status(sub), 4);
	assert_int_equal(rctx_http_status(sub), 504);
	assert_string_equal(rctx_reason(sub), "ETIMEDOUT");
	rctx_release(sub);
	/* A named cause's kind wins over the error: a deadline that sheds
	 * load is the server's doing. */
	int shed = rctx_cause_register("queue wait", RCTX_CAUSE_KIND_SERVER);
	assert_true(shed >= RCTX_CAUSE_NAMED);
	sub = rctx_with_timeout_cause(rctx_background(), 0, shed);
	assert_int_equal(rctx_err(sub), ETIMEDOUT);
	assert_int_equal(rctx_grpc_status(sub), 1);
	assert_int_equal(rctx_http_status(sub), 503);
	assert_string_equal(rctx_reason(sub), "queue wait");
	rctx_release(sub);
}

/* "Which deadline fired, the request's or the sub-call's?" */
static void
test_which_deadline_fired(void **state)
{
	(void)state;
	int subcall =
	    rctx_cause_register("sub-call deadline", RCTX_CAUSE_KIND_DEADLINE);
	rctx_budget_t b = { 0 };
	rctx_t *req = NULL, *sub;

	/* The sub-call's own deadline fires first. */
	assert_int_equal(
	    rctx_ingress_grpc(rctx_background(), "1H", 2, &b, &req), 0);
	sub = rctx_with_timeout_cause(req, RCTX_MSEC, subcall);
	assert_int_equal(rctx_wait(sub, 60 * RCTX_SEC), ETIMEDOUT);
	assert_string_equal(rctx_reason(sub), "sub-call deadline");
	assert_false(rctx_done(req));
	rctx_release(sub);
	rctx_release(req);

	/* The request's (the peer's) deadline fires first. */
	assert_int_equal(
	    rctx_ingress_grpc(rctx_background(), "1m", 2, &b, &req), 0);
	sub = rctx_with_timeout_cause(req, HOUR, subcall);
	assert_int_equal(rctx_wait(sub, 60 * RCTX_SEC), ETIMEDOUT);
	assert_int_equal(rctx_cause(sub), RCTX_CAUSE_PEER_DEADLINE);
	assert_string_equal(rctx_reason(sub), "peer deadline");
	assert_int_equal(rctx_http_status(sub), 504);
	rctx_release(sub);
	rctx_release(req);

	/* The budget's cap fires: a different name than the peer's. */
	b.cap = RCTX_MSEC;
	assert_int_equal(
	    rctx_ingress_grpc(rctx_background(), "1H", 2, &b, &req), 0);
	assert_int_equal(rctx_wait(req, 60 * RCTX_SEC), ETIMEDOUT);
	assert_string_equal(rctx_reason(req), "deadline cap");
	rctx_release(req);

	/* A budget's own cause overrides both. */
	b.cause = subcall;
	assert_int_equal(
	    rctx_ingress_grpc(rctx_background(), "0n", 2, &b, &req), 0);
	assert_int_equal(rctx_cause(req), subcall);
	rctx_release(req);
}

/* Concurrent registration: one code per name, readers never see junk. */
#define REG_THREADS 4
#define REG_NAMES   16
static const char *reg_names[REG_NAMES] = {
	"r0", "r1", "r2",  "r3",  "r4",	 "r5",	"r6",  "r7",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};
static int reg_codes[REG_THREADS][REG_NAMES];

static void *
reg_thread(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int k = 0; k < REG_NAMES; k++) {
		int i = (k + id * 5) % REG_NAMES;

		reg_codes[id][i] =
		    rctx_cause_register(reg_names[i], RCTX_CAUSE_KIND_CLIENT);
		/* Any code in the table reads as a name or as nothing. */
		for (int c = RCTX_CAUSE_NAMED; c < RCTX_CAUSE_NAMED + 64; c++) {
			const char *n = rctx_cause_name(c);

			if (n != NULL && n[0] == '\0')
				return (void *)1;
		}
	}
	return NULL;
}

static void
test_cause_register_threads(void **state)
{
	(void)state;
	pthread_t th[REG_THREADS];
	void *ret;

	for (int i = 0; i < REG_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reg_thread,
						(void *)(intptr_t)i),
				 0);
	for (int i = 0; i < REG_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
	}
	for (int k = 0; k < REG_NAMES; k++) {
		assert_true(reg_codes[0][k] >= RCTX_CAUSE_NAMED);
		assert_ptr_equal(rctx_cause_name(reg_codes[0][k]),
				 reg_names[k]);
		for (int i = 1; i < REG_THREADS; i++)
			assert_int_equal(reg_codes[i][k], reg_codes[0][k]);
		for (int j = 0; j < k; j++)
			assert_int_not_equal(reg_codes[0][j], reg_codes[0][k]);
	}
}

/* The table fills: -ENOSPC, and every registered name still reads. Runs
 * last (the registry is per process). */
static void
test_cause_register_full(void **state)
{
	(void)state;
	static char names[300][16];
	int last = 0, n;

	for (n = 0; n < 300; n++) {
		snprintf(names[n], sizeof(names[n]), "full-%d", n);
		int code =
		    rctx_cause_register(names[n], RCTX_CAUSE_KIND_SERVER);

		if (code == -ENOSPC)
			break;
		assert_true(code > last);
		last = code;
	}
	assert_true(n < 300);
	assert_int_equal(last, RCTX_CAUSE_NAMED + 255);
	assert_int_equal(
	    rctx_cause_register("one more", RCTX_CAUSE_KIND_CLIENT), -ENOSPC);
	/* Already-registered names still answer with their code. */
	assert_int_equal(rctx_cause_register(names[0], RCTX_CAUSE_KIND_SERVER),
			 last - n + 1);
	assert_string_equal(rctx_cause_name(last), names[n - 1]);
	assert_string_equal(rctx_cause_name(RCTX_CAUSE_SHUTDOWN),
			    "shutting down");
}

/* The wire functions never allocate (malloc's counters do not move). */
static void
test_no_allocation(void **state)
{
	(void)state;
	char buf[RCTX_GRPC_TIMEOUT_SIZE];
	rctx_t *c = rctx_with_timeout(rctx_background(), HOUR);
	rctx_time_t t;
	struct mallinfo2 a, b;
	size_t sum = 0;

	a = mallinfo2();
	for (int i = 1; i < 10000; i++) {
		sum += (size_t)rctx_grpc_timeout_format(i * 7919, buf,
							sizeof(buf));
		sum += (size_t)rctx_grpc_timeout_parse(buf, strlen(buf), &t);
		sum += (size_t)rctx_envoy_timeout_format(i, buf, sizeof(buf));
		sum += (size_t)rctx_envoy_timeout_parse(buf, strlen(buf), &t);
		sum += (size_t)rctx_egress_grpc(c, i, buf, sizeof(buf));
		sum += (size_t)rctx_remaining(c);
		sum += (size_t)(rctx_cause_name(ETIMEDOUT) != NULL);
		sum += (size_t)(rctx_reason(c) != NULL);
		sum += (size_t)rctx_http_status(c);
	}
	b = mallinfo2();
	assert_true(sum != 0);
	assert_int_equal(a.uordblks, b.uordblks);
	assert_int_equal(a.hblkhd, b.hblkhd);
	rctx_release(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grpc_format_vectors),
		cmocka_unit_test(test_grpc_format_vs_envoy),
		cmocka_unit_test(test_grpc_format_errors),
		cmocka_unit_test(test_grpc_parse_vectors),
		cmocka_unit_test(test_grpc_parse_malformed),
		cmocka_unit_test(test_grpc_round_trip_sweep),
		cmocka_unit_test(test_envoy_headers),
		cmocka_unit_test(test_remaining),
		cmocka_unit_test(test_ingress_budget),
		cmocka_unit_test(test_ingress_bad_input),
#ifdef RCTX_FAULT_INJECTION
		cmocka_unit_test(test_ingress_enomem),
#endif
		cmocka_unit_test(test_egress),
		cmocka_unit_test(test_cause_registry),
		cmocka_unit_test(test_cause_descendants_and_status),
		cmocka_unit_test(test_which_deadline_fired),
		cmocka_unit_test(test_cause_register_threads),
		cmocka_unit_test(test_no_allocation),
		cmocka_unit_test(test_cause_register_full),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	rctx_shutdown();
	return rc;
}
