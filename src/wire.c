/* SPDX-License-Identifier: MIT */
/* Deadlines on the wire: grpc-timeout and Envoy ms headers, budgets. */
#include <errno.h>
#include <string.h>

#include "clock.h"
#include "tree.h"
#include "wire.h"

/*
 * grpc-timeout (gRPC's doc/PROTOCOL-HTTP2.md): 1 to 8 ASCII digits, then
 * one unit. How the engines read and write it, and where rctx stands:
 *
 *  - grpc-go (internal/transport/http_util.go decodeTimeout) takes 2 to 9
 *    bytes, digits by strconv.ParseUint, and clamps hours beyond
 *    INT64_MAX ns to INT64_MAX; its encoder
 *    (internal/grpcutil/encode_duration.go) picks the coarsest unit that
 *    divides the value exactly, rounds up to fit 8 digits, and sends "0S"
 *    (older releases "0n") for a timeout <= 0.
 *  - Envoy (source/common/grpc/common.cc getGrpcTimeout) rounds u and n
 *    up to whole milliseconds on reading; toGrpcTimeout writes only m, S,
 *    M and H, truncating when it moves to a coarser unit, and clips at
 *    99999999H.
 *  - grpc core (src/core/lib/transport/timeout_encoding.cc) rounds up to
 *    about three significant figures.
 *
 * rctx writes the finest unit that fits, rounding up within it, so the
 * value read back is never earlier than the one written and later by less
 * than one unit; a timeout <= 0 is not written at all (the caller should
 * not send the call). It reads strictly: exactly the grammar, nothing
 * around it.
 */

struct rctx_wire_unit {
	char sym;
	rctx_time_t ns;
};

/* Finest first: format takes the first that fits. */
static const struct rctx_wire_unit rctx_wire_units[] = {
	{ 'n', RCTX_NSEC }, { 'u', RCTX_USEC },	    { 'm', RCTX_MSEC },
	{ 'S', RCTX_SEC },  { 'M', 60 * RCTX_SEC }, { 'H', 3600 * RCTX_SEC },
};
#define RCTX_WIRE_NUNITS (sizeof(rctx_wire_units) / sizeof(rctx_wire_units[0]))

/* a / b rounded up, for a > 0 and b > 0 (no overflow: no a + b - 1). */
static inline int64_t
rctx_wire_div_up(int64_t a, int64_t b)
{
	return a / b + (a % b != 0);
}

/*
 * Write v in decimal, then `unit` unless it is 0, then a NUL, into buf of
 * `size` bytes. Returns the length without the NUL, or -ENOBUFS (buf is
 * then left unchanged).
 */
static int
rctx_wire_put(uint64_t v, char unit, char *buf, size_t size)
{
	char tmp[24];
	size_t n = 0, len;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	len = n + (unit != 0);
	if (size < len + 1)
		return -ENOBUFS;
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	if (unit != 0)
		buf[n] = unit;
	buf[len] = '\0';
	return (int)len;
}

int
rctx_wire_grpc_format(rctx_time_t timeout, char *buf, size_t size)
{
	int64_t v = RCTX_GRPC_TIMEOUT_MAX;
	char sym = 'H';

	for (size_t i = 0; i < RCTX_WIRE_NUNITS; i++) {
		int64_t q = rctx_wire_div_up(timeout, rctx_wire_units[i].ns);

		if (q <= RCTX_GRPC_TIMEOUT_MAX) {
			v = q;
			sym = rctx_wire_units[i].sym;
			break;
		}
	}
	/* No unit fits only past 99999999H, beyond int64 ns: kept as the
	 * contract's clip, should rctx_time_t ever widen. */
	return rctx_wire_put((uint64_t)v, sym, buf, size);
}

int
rctx_wire_grpc_parse(const char *value, size_t len, rctx_time_t *out)
{
	const struct rctx_wire_unit *u = NULL;
	int64_t v = 0;

	if (len < 2 || len > 9)
		return -EINVAL;
	for (size_t i = 0; i < RCTX_WIRE_NUNITS; i++)
		if (value[len - 1] == rctx_wire_units[i].sym)
			u = &rctx_wire_units[i];
	if (u == NULL)
		return -EINVAL;
	for (size_t i = 0; i < len - 1; i++) {
		if (value[i] < '0' || value[i] > '9')
			return -EINVAL;
		v = v * 10 + (value[i] - '0');
	}
	/* v <= 99999999: only hours can pass INT64_MAX ns. */
	*out = v > INT64_MAX / u->ns ? INT64_MAX : v * u->ns;
	return 0;
}

/*
 * Envoy's x-envoy-upstream-rq-timeout-ms and x-envoy-expected-rq-timeout-ms
 * (source/common/router/router.cc): read with absl::SimpleAtoi into a
 * uint64 of ms; 0 means no timeout, so Envoy itself sends 1 ms, not 0,
 * when the time is up. rctx reads digits only and writes ms rounded up.
 */
int
rctx_wire_envoy_format(rctx_time_t timeout, char *buf, size_t size)
{
	return rctx_wire_put((uint64_t)rctx_wire_div_up(timeout, RCTX_MSEC), 0,
			     buf, size);
}

int
rctx_wire_envoy_parse(const char *value, size_t len, rctx_time_t *out)
{
	uint64_t v = 0;

	if (len < 1 || len > 20)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(unsigned char)value[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (v == 0)
		*out = RCTX_FOREVER;
	else if (v > (uint64_t)(INT64_MAX / RCTX_MSEC))
		*out = INT64_MAX;
	else
		*out = (rctx_time_t)v * RCTX_MSEC;
	return 0;
}

rctx_time_t
rctx_wire_remaining(const struct rctx *c, rctx_time_t now)
{
	rctx_time_t left = RCTX_FOREVER, d;
	const struct rctx *src = rctx_src(c);

	if (rctx_deadline_get(c, &d)) {
		/* deadline <= INT64_MAX and now >= 0: no overflow. */
		left = d > now ? d - now : 0;
		if (left == RCTX_FOREVER)
			left--; /* a deadline is never "no deadline" */
	}
	/* rctx_state_load's acquire pairs with the CAS that publishes err
	 * and cause (tree.C), as in rctx_err. */
	if (left > 0 && src != NULL &&
	    (rctx_state_load(src) & RCTX_ST_ERR_MASK) != 0)
		left = 0;
	return left;
}

int
rctx_wire_ingress(rctx_t *parent, rctx_time_t timeout,
		  const rctx_budget_t *budget, rctx_t **out)
{
	rctx_time_t t = RCTX_FOREVER;
	int cause = RCTX_CAUSE_PEER_DEADLINE;
	rctx_t *c;

	if (timeout != RCTX_FOREVER)
		t = timeout - budget->margin; /* both >= 0: no overflow */
	if (budget->cap > 0 && budget->cap < t) {
		t = budget->cap;
		cause = RCTX_CAUSE_CAP_DEADLINE;
	}
	if (budget->cause != 0)
		cause = budget->cause;
	if (t == RCTX_FOREVER)
		c = rctx_with_cancel(parent);
	else
		c = rctx_with_timeout_cause(parent, t, cause);
	if (c == NULL)
		return -errno;
	*out = c;
	return 0;
}

int
rctx_wire_egress(const struct rctx *c, rctx_time_t margin, rctx_time_t *timeout)
{
	rctx_time_t left = rctx_wire_remaining(c, rctx_clock_now());
	int err;

	if (left == RCTX_FOREVER) {
		*timeout = RCTX_FOREVER;
		return 0;
	}
	if (left == 0) {
		/* Done or due: say which, if it is done already. */
		err = rctx_err(c);
		return err == ECANCELED ? -ECANCELED : -ETIMEDOUT;
	}
	if (left <= margin)
		return -ETIMEDOUT;
	*timeout = left - margin;
	return 0;
}
