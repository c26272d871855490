/* SPDX-License-Identifier: MIT */
/* Deadlines on the wire: grpc-timeout and Envoy ms headers, budgets. */
#ifndef RCTX_WIRE_H
#define RCTX_WIRE_H

#include "internal.h"

/* The largest value a grpc-timeout may carry: 8 digits. */
#define RCTX_GRPC_TIMEOUT_MAX 99999999

/* Time left on c (not NULL); see rctx_remaining in rctx.h. */
rctx_time_t rctx_wire_remaining(const struct rctx *c, rctx_time_t now);

/* The four below take checked arguments (api.c): timeout > 0, buf, value
 * and out not NULL. Results as their public names in rctx.h. */
int rctx_wire_grpc_format(rctx_time_t timeout, char *buf, size_t size);
int rctx_wire_grpc_parse(const char *value, size_t len, rctx_time_t *out);
int rctx_wire_envoy_format(rctx_time_t timeout, char *buf, size_t size);
int rctx_wire_envoy_parse(const char *value, size_t len, rctx_time_t *out);

/* Budgets, on checked arguments (api.c). */
int rctx_wire_ingress(rctx_t *parent, rctx_time_t timeout,
		      const rctx_budget_t *budget, rctx_t **out);
int rctx_wire_egress(const struct rctx *c, rctx_time_t margin,
		     rctx_time_t *timeout);

#endif /* RCTX_WIRE_H */
