#!/bin/sh
# SPDX-License-Identifier: MIT
# Run Go's context benchmarks offline and write their medians as JSON.
#
# Usage: run.sh [--quick] [--go GO] [--benchtime T] [--bench REGEX]
#               OUT.json [COUNT]
#   COUNT      -count for go test (default 5; --quick makes it 1)
#   --quick    count 1 and -benchtime 20ms: a smoke run
#   --go GO    the go binary to use (default: $GO, else `go` on PATH)
#   --benchtime, --bench  passed to go test (defaults 1s, .)
# The raw go test output is kept beside OUT.json as OUT.json.txt.
# GOCACHE and GOPATH live under $RCTX_GO_WORK (default
# ${TMPDIR:-/tmp}/rctxbench-go-<uid>); no network is used.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
go=${GO:-go}
count=5
benchtime=1s
bench=.
quick=0

while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1; shift ;;
	--go) go=$2; shift 2 ;;
	--benchtime) benchtime=$2; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	-h|--help) sed -n '3,13p' "$0"; exit 0 ;;
	--*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: run.sh [--quick] [--go GO] [--benchtime T]" \
		"[--bench RE] OUT.json [COUNT]" >&2
	exit 2
fi
out=$1
case $out in
/*) ;;
*) out="$(pwd)/$out" ;;
esac
if [ $quick = 1 ]; then
	count=1
	benchtime=20ms
fi
[ $# -eq 2 ] && count=$2
case $count in
''|*[!0-9]*) echo "run.sh: COUNT must be a number" >&2; exit 2 ;;
esac

work=${RCTX_GO_WORK:-${TMPDIR:-/tmp}/rctxbench-go-$(id -u)}
mkdir -p "$work/cache" "$work/path"
export GOCACHE="$work/cache" GOPATH="$work/path"
export GOFLAGS= GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GO111MODULE=on
export GOTELEMETRY=off

version=$("$go" env GOVERSION 2>/dev/null || "$go" version | awk '{print $3}')
echo "run.sh: $("$go" version) ($(command -v "$go" || echo "$go"))" >&2

raw="$out.txt"
cd "$here"
status=0
"$go" test -v -run '^$' -bench "$bench" -benchmem -benchtime "$benchtime" \
	-count "$count" -timeout 0 . >"$raw" 2>&1 || status=$?
cd - >/dev/null
grep -E '^(Benchmark|--- (SKIP|FAIL)|goos|goarch|cpu|PASS|FAIL|ok)' "$raw" |
	grep -v '^Benchmark[^ 	]*$' >&2 || true
python3 "$here/gobench2json.py" "$version" <"$raw" >"$out" || status=$?
if [ $status -ne 0 ]; then
	echo "run.sh: go test failed (status $status); see $raw" >&2
	exit $status
fi
echo "run.sh: wrote $out" >&2
