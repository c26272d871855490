/* SPDX-License-Identifier: MIT */
/* Fuzz target: grpc-timeout and Envoy ms values, parse and format round trips. */

/*
 * The input is used three ways:
 *  1. As a grpc-timeout value of `size` bytes: rctx_grpc_timeout_parse
 *     must agree with a model of the grammar (2 to 9 bytes, 1 to 8 ASCII
 *     digits then one of H M S m u n; value saturating at INT64_MAX),
 *     leave *timeout untouched when it refuses, and for an accepted value
 *     t > 0, format(t) must parse back to >= t (never earlier).
 *  2. The same for rctx_envoy_timeout_parse (1 to 20 digits, a count of
 *     ms up to UINT64_MAX, "0" meaning no timeout).
 *  3. Its first 8 bytes (zero-padded) as a timeout t in ns, for both
 *     formats: t <= 0 is refused with -EINVAL; otherwise the output obeys
 *     the grammar, is NUL-terminated, fits the documented size, parses to
 *     >= t and less than one unit later (the finest unit that fits 8
 *     digits, for grpc-timeout), and one byte less of buffer gives
 *     -ENOBUFS with the buffer untouched.
 * Any violation aborts with a message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rctx.h"

#define MAXV	  99999999
#define UNTOUCHED ((rctx_time_t)0x5a5a5a5a5a5a)

/* The models compute exactly, without the overflow checks under test. */
__extension__ typedef unsigned __int128 rctx_u128;

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz-grpc: ");
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

static rctx_time_t
unit_ns(uint8_t u)
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
		return 60 * RCTX_SEC;
	case 'H':
		return 3600 * RCTX_SEC;
	default:
		return 0;
	}
}

/* The next finer unit than u (u > 1 ns). */
static rctx_time_t
finer_ns(rctx_time_t u)
{
	if (u == 3600 * RCTX_SEC)
		return 60 * RCTX_SEC;
	if (u == 60 * RCTX_SEC)
		return RCTX_SEC;
	return u / 1000;
}

static bool
all_digits(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* Model of the grpc-timeout grammar: true and *t if valid. */
static bool
model_grpc(const uint8_t *p, size_t n, rctx_time_t *t)
{
	uint64_t v = 0;
	rctx_time_t u;

	if (n < 2 || n > 9 || (u = unit_ns(p[n - 1])) == 0 ||
	    !all_digits(p, n - 1))
		return false;
	for (size_t i = 0; i + 1 < n; i++)
		v = v * 10 + (p[i] - '0');
	rctx_u128 ns = (rctx_u128)v * (uint64_t)u;
	*t = ns > INT64_MAX ? INT64_MAX : (rctx_time_t)ns;
	return true;
}

/* Model of Envoy's ms header: true and *t if valid. */
static bool
model_envoy(const uint8_t *p, size_t n, rctx_time_t *t)
{
	rctx_u128 v = 0;

	if (n < 1 || n > 20 || !all_digits(p, n))
		return false;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (p[i] - '0');
	if (v > UINT64_MAX)
		return false;
	if (v == 0)
		*t = RCTX_FOREVER;
	else
		*t = v * RCTX_MSEC > INT64_MAX ? INT64_MAX
					       : (rctx_time_t)(v * RCTX_MSEC);
	return true;
}

/* Format t as grpc-timeout and check every property of the output. */
static void
check_grpc_format(rctx_time_t t)
{
	char buf[RCTX_GRPC_TIMEOUT_SIZE + 4], small[RCTX_GRPC_TIMEOUT_SIZE];
	int len = rctx_grpc_timeout_format(t, buf, RCTX_GRPC_TIMEOUT_SIZE);
	rctx_time_t back = UNTOUCHED, model, u;

	if (t <= 0) {
		CHECK(len == -EINVAL, "format(%lld) = %d", (long long)t, len);
		return;
	}
	CHECK(len >= 2 && len <= 9, "format(%lld) = %d", (long long)t, len);
	CHECK(buf[len] == '\0' && strlen(buf) == (size_t)len,
	      "format(%lld): not NUL-terminated at %d", (long long)t, len);
	CHECK(model_grpc((const uint8_t *)buf, len, &model),
	      "format(%lld) = \"%s\": not in the grammar", (long long)t, buf);
	CHECK(rctx_grpc_timeout_parse(buf, len, &back) == 0 && back == model,
	      "parse(\"%s\") = %lld, model %lld", buf, (long long)back,
	      (long long)model);
	u = unit_ns((uint8_t)buf[len - 1]);
	CHECK(back >= t, "\"%s\" reads %lld, earlier than %lld", buf,
	      (long long)back, (long long)t);
	CHECK(back - t < u || back == INT64_MAX,
	      "\"%s\" reads %lld, a unit or more after %lld", buf,
	      (long long)back, (long long)t);
	if (u > 1) {
		rctx_time_t f = finer_ns(u);

		CHECK(t / f + (t % f != 0) > MAXV,
		      "format(%lld) = \"%s\": a finer unit fits", (long long)t,
		      buf);
	}
	memset(small, '#', sizeof(small));
	CHECK(rctx_grpc_timeout_format(t, small, len) == -ENOBUFS,
	      "format(%lld) into %d bytes did not refuse", (long long)t, len);
	for (size_t i = 0; i < sizeof(small); i++)
		CHECK(small[i] == '#', "-ENOBUFS wrote to the buffer");
}

static void
check_envoy_format(rctx_time_t t)
{
	char buf[RCTX_ENVOY_TIMEOUT_SIZE], small[RCTX_ENVOY_TIMEOUT_SIZE];
	int len = rctx_envoy_timeout_format(t, buf, sizeof(buf));
	rctx_time_t back = UNTOUCHED;

	if (t <= 0) {
		CHECK(len == -EINVAL, "envoy format(%lld) = %d", (long long)t,
		      len);
		return;
	}
	CHECK(len >= 1 && len <= 13 && buf[len] == '\0',
	      "envoy format(%lld) = %d", (long long)t, len);
	CHECK(all_digits((const uint8_t *)buf, len) && strcmp(buf, "0") != 0,
	      "envoy format(%lld) = \"%s\"", (long long)t, buf);
	CHECK(rctx_envoy_timeout_parse(buf, len, &back) == 0,
	      "envoy parse(\"%s\") refused", buf);
	CHECK(back >= t && (back - t < RCTX_MSEC || back == INT64_MAX),
	      "envoy \"%s\" reads %lld for %lld", buf, (long long)back,
	      (long long)t);
	memset(small, '#', sizeof(small));
	CHECK(rctx_envoy_timeout_format(t, small, len) == -ENOBUFS,
	      "envoy format(%lld) into %d bytes did not refuse", (long long)t,
	      len);
	CHECK(small[0] == '#', "envoy -ENOBUFS wrote to the buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so reading past it is caught. */
	char *p = malloc(size ? size : 1);
	rctx_time_t t = UNTOUCHED, model = 0;
	bool valid;
	int rc;

	if (p == NULL)
		return 0;
	if (size)
		memcpy(p, data, size);

	/* 1. grpc-timeout: parse agrees with the model; round trip. */
	valid = model_grpc(data, size, &model);
	rc = rctx_grpc_timeout_parse(p, size, &t);
	if (valid) {
		CHECK(rc == 0 && t == model,
		      "parse(\"%.*s\") = %d, %lld; model %lld", (int)size, p,
		      rc, (long long)t, (long long)model);
		if (t > 0)
			check_grpc_format(t);
		else
			CHECK(rctx_grpc_timeout_format(t, p, size) == -EINVAL,
			      "format(0) did not refuse");
	} else {
		CHECK(rc == -EINVAL && t == UNTOUCHED,
		      "parse(\"%.*s\") = %d, changed %d", (int)size, p, rc,
		      t != UNTOUCHED);
	}

	/* 2. Envoy's ms headers. */
	t = UNTOUCHED;
	valid = model_envoy(data, size, &model);
	rc = rctx_envoy_timeout_parse(p, size, &t);
	if (valid) {
		CHECK(rc == 0 && t == model, "envoy parse(\"%.*s\") = %d, %lld",
		      (int)size, p, rc, (long long)t);
		check_envoy_format(t);
	} else {
		CHECK(rc == -EINVAL && t == UNTOUCHED,
		      "envoy parse(\"%.*s\") = %d", (int)size, p, rc);
	}

	/* 3. The first 8 bytes as a timeout in ns. */
	uint64_t raw = 0;
	memcpy(&raw, data, size < 8 ? size : 8);
	t = (rctx_time_t)raw;
	check_grpc_format(t);
	check_envoy_format(t);
	/* Narrow values reach the finer units more often. */
	check_grpc_format(t >> (raw % 64));

	free(p);
	return 0;
}
