/* SPDX-License-Identifier: MIT */
/* An integration header compiles alone (C11 and C++) and links its library. */
/*
 * Built once per integration with RCTX_HEADER (the header, in <>) and
 * RCTX_START (its constructor) defined on the command line; the C++ build
 * compiles this same file as C++ (header-integration.cpp includes it).
 */
#include RCTX_HEADER

int
main(void)
{
	/* The constructor rejects NULL as documented, through the library. */
	return RCTX_START(NULL) == NULL ? 0 : 1;
}
