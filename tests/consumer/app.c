/* SPDX-License-Identifier: MIT */
/* A program outside the tree, built against an installed rctx. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rctx.h>

static const char id_key; /* keys compare by address */

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "consumer: check failed: %s\n",        \
				#cond);                                        \
			return 1;                                              \
		}                                                              \
	} while (0)

int
main(void)
{
	rctx_t *req = rctx_with_timeout(rctx_background(), 60 * RCTX_SEC);
	CHECK(req != NULL);
	rctx_t *ctx = rctx_with_value(req, &id_key, "req-1");
	CHECK(ctx != NULL);
	/* A deadline fired by the library's timer thread. */
	rctx_t *call = rctx_with_timeout(ctx, 2 * RCTX_MSEC);
	CHECK(call != NULL);
	/* 0.2: time left, and what a call made under req would send. */
	rctx_time_t left = rctx_remaining(call);
	CHECK(left > 0 && left <= 2 * RCTX_MSEC);
	char hdr[RCTX_GRPC_TIMEOUT_SIZE];
	rctx_time_t sent = 0;
	CHECK(rctx_egress_grpc(ctx, 0, hdr, sizeof hdr) >= 2);
	CHECK(rctx_grpc_timeout_parse(hdr, strlen(hdr), &sent) == 0);
	CHECK(sent > 0 && sent <= 60 * RCTX_SEC);
	CHECK(rctx_wait(call, -1) == ETIMEDOUT);
	CHECK(rctx_remaining(call) == 0);
	CHECK(strcmp(rctx_reason(call), "ETIMEDOUT") == 0);
	CHECK(rctx_grpc_status(call) == 4 && rctx_http_status(call) == 504);
	CHECK(strcmp(rctx_value(call, &id_key), "req-1") == 0);
	CHECK(!rctx_done(ctx));
	/* A cancel with a cause reaches the value child. */
	CHECK(rctx_cancel_cause(req, EPIPE) == 0);
	CHECK(rctx_err(ctx) == ECANCELED && rctx_cause(ctx) == EPIPE);
	CHECK(rctx_grpc_status(ctx) == 1 && rctx_http_status(ctx) == 499);
	rctx_release(call);
	rctx_release(ctx);
	rctx_release(req);
	rctx_shutdown();
	printf("consumer (C): rctx %d.%d.%d ok\n", RCTX_VERSION_MAJOR,
	       RCTX_VERSION_MINOR, RCTX_VERSION_PATCH);
	return 0;
}
