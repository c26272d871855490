// SPDX-License-Identifier: MIT
// The same checks from C++: rctx.h has extern "C" guards.
#include <cerrno>
#include <cstdio>
#include <memory>

#include <rctx.h>

namespace
{
struct release {
	void operator()(rctx_t *c) const
	{
		rctx_release(c);
	}
};
using ctx_ptr = std::unique_ptr<rctx_t, release>;
} // namespace

int
main()
{
	ctx_ptr req(rctx_with_cancel(rctx_background()));
	ctx_ptr call(rctx_with_timeout(req.get(), 2 * RCTX_MSEC));
	if (!req || !call || rctx_wait(call.get(), -1) != ETIMEDOUT ||
	    rctx_cancel(req.get()) != 0 || rctx_err(req.get()) != ECANCELED) {
		std::fprintf(stderr, "consumer (C++): check failed\n");
		return 1;
	}
	call.reset();
	req.reset();
	rctx_shutdown();
	std::printf("consumer (C++): ok\n");
	return 0;
}
