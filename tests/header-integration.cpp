/* SPDX-License-Identifier: MIT */
/* The integration header check, compiled as C++ (extern "C" guards). */
#include "header-integration.c"
