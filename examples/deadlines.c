/* SPDX-License-Identifier: MIT */
/* Example: a deadline arrives in grpc-timeout, and leaves on a backend call. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rctx.h>

/* The part the README shows: a handler in a service between two hops. */
static int
handle(const char *grpc_timeout, size_t len)
{
	rctx_budget_t budget = { .cap = 30 * RCTX_SEC, .margin = RCTX_MSEC };
	char hdr[RCTX_GRPC_TIMEOUT_SIZE];
	rctx_t *req;

	/* Ingress: the peer can only shorten our 30 s cap. */
	if (rctx_ingress_grpc(rctx_background(), grpc_timeout, len, &budget,
			      &req) < 0)
		return 400; /* malformed header: nothing was made */
	/* Egress: what is left, less 2 ms for the next hop. */
	int n = rctx_egress_grpc(req, 2 * RCTX_MSEC, hdr, sizeof(hdr));
	if (n > 0)
		printf("backend call, grpc-timeout: %s\n", hdr);
	else if (n < 0) /* -ETIMEDOUT or -ECANCELED: don't send */
		printf("not sent: %s\n", rctx_reason(req));
	/* ... wait for the backend, or for req to be done ... */
	int status = rctx_http_status(req); /* 0, or 499, 503, 504 */
	rctx_release(req);
	return status ? status : 200;
}

int
main(void)
{
	static const struct {
		const char *header;
		int status;
	} cases[] = {
		{ "20S", 200 },	 /* 20 s from the peer: ~19.997 s goes on */
		{ "1H", 200 },	 /* capped to 30 s */
		{ "0n", 504 },	 /* nothing left: not sent, gateway timeout */
		{ "2 S", 400 },	 /* malformed */
		{ "-1S", 400 },	 /* malformed */
		{ "500u", 504 }, /* less than the margins: not sent */
	};
	int bad = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *h = cases[i].header;
		int status = handle(h, strlen(h));

		printf("grpc-timeout \"%s\" -> HTTP %d\n", h, status);
		if (status != cases[i].status) {
			fprintf(stderr, "expected %d\n", cases[i].status);
			bad = 1;
		}
	}
	rctx_shutdown();
	return bad;
}
