#!/bin/sh
# SPDX-License-Identifier: MIT
# Check that the libraries meson installs carry no fault-injection hooks
# (fault.c's rctx_fault_arm/rctx_fault_calls, an out-of-line rctx_fault_hit),
# and, so that the check cannot pass vacuously, that the test archive does.
#
#   check-no-fault.sh LIB... [--hooked TEST_ARCHIVE]
set -eu
# The hooks as nm prints them: the counters' API, and a global (not a
# static inline, which a -O0 build keeps as a local 't') rctx_fault_hit.
hooks() {
	nm -A "$1" 2>/dev/null | grep -E \
		' [A-Za-z] rctx_fault_(arm|calls)$| [TU] rctx_fault_hit$' || true
}
status=0
while [ $# -gt 0 ]; do
	if [ "$1" = --hooked ]; then
		if [ -z "$(hooks "$2")" ]; then
			echo "FAIL: $2 has no fault hooks: the pattern is stale"
			status=1
		else
			echo "ok: $2 (test archive) has the hooks"
		fi
		shift 2
		continue
	fi
	found=$(hooks "$1")
	if [ -n "$found" ]; then
		echo "FAIL: $1 carries fault-injection symbols:"
		echo "$found"
		status=1
	else
		echo "ok: $1 has no fault-injection symbols"
	fi
	shift
done
exit $status
