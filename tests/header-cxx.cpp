// SPDX-License-Identifier: MIT
// The public header compiles alone as C++ (extern "C" guards).
#include <rctx.h>

static_assert(sizeof(rctx_after_t) == 64, "rctx_after_t is 64 bytes");

int
main()
{
	rctx_t *bg = rctx_background();
	return rctx_done(bg) ? 1 : 0;
}
