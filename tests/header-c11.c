/* SPDX-License-Identifier: MIT */
/* The public header compiles alone under C11 -pedantic-errors. */
#include <rctx.h>

int
main(void)
{
	rctx_t *bg = rctx_background();
	rctx_after_t reg;
	(void)reg;
	return rctx_err(bg) == 0 && sizeof(rctx_after_t) == 64 ? 0 : 1;
}
