#!/bin/sh
# SPDX-License-Identifier: MIT
# Check that the shared library exports exactly the functions the public
# header declares: nothing internal leaks, nothing declared is missing.
set -eu
lib=$1
hdr=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort)
declared=$(grep -v '^#' "$hdr" | grep -oE 'RCTX_API [^(]*\(' | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort)
if [ "$exported" != "$declared" ]; then
	echo "exported and declared symbols differ:"
	printf '%s\n' "$exported" > /tmp/rctx-exp.$$
	printf '%s\n' "$declared" | diff /tmp/rctx-exp.$$ - || true
	rm -f /tmp/rctx-exp.$$
	exit 1
fi
echo "ok: $(printf '%s\n' "$exported" | wc -l) symbols exported, all declared"
