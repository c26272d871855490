#!/bin/sh
# SPDX-License-Identifier: MIT
# List every RCTX_API function of the public header that no manual page
# names in its NAME section (.Nm), and fail if there is any.
#
#   check-names.sh include/rctx.h man/
set -eu
hdr=$1
dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -v '^#' "$hdr" | grep -oE 'RCTX_API [^(]*\(' |
	sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort -u >"$tmp/declared"
# The names between ".Sh NAME" and ".Nd" of every page.
for p in "$dir"/*.[0-9]; do
	sed -n '/^\.Sh NAME/,/^\.Nd/s/^\.Nm \([a-z_0-9]*\).*/\1/p' "$p"
done | sort -u >"$tmp/named"
if [ ! -s "$tmp/declared" ]; then
	echo "FAIL: no RCTX_API function found in $hdr"
	exit 1
fi
missing=$(comm -23 "$tmp/declared" "$tmp/named")
if [ -n "$missing" ]; then
	echo "FAIL: RCTX_API functions without a manual page naming them:"
	printf '  %s\n' $missing
	exit 1
fi
echo "ok: all $(wc -l <"$tmp/declared") RCTX_API functions have a manual page"
