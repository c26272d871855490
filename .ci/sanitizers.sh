#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sanitizer CI: TSan stress, ASan+UBSan units, fuzz replays, libFuzzer, valgrind.
#
# Usage: .ci/sanitizers.sh            (from anywhere; needs clang 14)
# Environment:
#   BUILD_PREFIX   build directory prefix (default: build-san)
#   FUZZ_SECONDS   libFuzzer time per target (default: 60; 0 skips)
#   JOBS           ninja jobs (default: 2)
# Prints one line per step ("step <name>: PASS|FAIL|SKIP (<s> s)") and
# exits non-zero if any step failed. Sized for ~14 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
prefix=${BUILD_PREFIX:-build-san}
fuzz_seconds=${FUZZ_SECONDS:-60}
jobs=${JOBS:-2}
logdir=$src/$prefix-logs
mkdir -p "$logdir"

results=()
failed=0

# step NAME TIMEOUT CMD...: run CMD with a time limit, log it, record result.
step() {
	local name=$1 limit=$2
	shift 2
	local t0 rc
	t0=$(date +%s)
	echo "=== $name"
	timeout --kill-after=10 "$limit" "$@" >"$logdir/$name.log" 2>&1
	rc=$?
	local dt=$(($(date +%s) - t0))
	if [ $rc -eq 0 ]; then
		results+=("step $name: PASS ($dt s)")
	else
		results+=("step $name: FAIL rc=$rc ($dt s), see $logdir/$name.log")
		failed=$((failed + 1))
		tail -n 30 "$logdir/$name.log"
	fi
	echo "${results[-1]}"
}

skip() {
	results+=("step $1: SKIP ($2)")
	echo "${results[-1]}"
}

# "setup DIR OPTIONS...": configure (fresh) and build; a command, so that
# step can put a time limit on it.
setup=(bash -c 'd=$1; shift
if [ -d "$d" ]; then meson setup --wipe "$d" "$@"; else meson setup "$d" "$@"; fi &&
ninja -C "$d" -j "$JOBS"' setup)
export JOBS=$jobs

if ! command -v clang >/dev/null 2>&1; then
	echo "clang not found: sanitizer CI needs clang"
	exit 1
fi
export CC=clang CXX=clang++

# Sanitizer run-time options: stop at the first report, fail the test.
export TSAN_OPTIONS="suppressions=$src/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1 exitcode=66"
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"

# 1. ThreadSanitizer: the stress suite (stress_scale=1 keeps it short),
# the suites holding issue 10's defect tests (reliability, lifecycle,
# after, alloc, value), issue 14's (stats, dump under churn, drain,
# leak) and the split parent's races (shard). The fork suite stays out: its children start
# timer threads, and TSan kills a fork child of a multi-threaded process
# that starts a thread (die_after_fork).
step tsan-build 900 "${setup[@]}" "$prefix-tsan" -Db_sanitize=thread \
	-Db_lundef=false -Dtests=enabled -Dbenchmarks=disabled -Dbuildtype=debugoptimized
step tsan-stress 600 meson test -C "$prefix-tsan" --suite stress \
	--suite reliability --suite lifecycle --suite after --suite alloc \
	--suite value --suite stats --suite dump --suite drain --suite leak \
	--suite shard --num-processes 1 --print-errorlogs

# 2. AddressSanitizer + UBSan (+ LeakSanitizer): every suite (stress and
# fork included; the fuzz corpora replay in step 3), in a
# debug build so that the debug checks (test-debug) are compiled in.
step asan-build 900 "${setup[@]}" "$prefix-asan" -Db_sanitize=address,undefined \
	-Db_lundef=false -Dtests=enabled -Dbenchmarks=disabled -Dbuildtype=debug
step asan-units 900 meson test -C "$prefix-asan" \
	--no-suite fuzz --num-processes 2 --print-errorlogs

# 3. Fuzz corpora replayed as tests (ASan+UBSan build).
step fuzz-replay 300 meson test -C "$prefix-asan" --suite fuzz \
	--num-processes 2 --print-errorlogs

# 4. libFuzzer, bounded: the library too is instrumented for coverage.
if [ "$fuzz_seconds" -gt 0 ]; then
	step fuzz-build 900 "${setup[@]}" "$prefix-fuzz" -Dfuzzing=enabled \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dtests=enabled -Dbenchmarks=disabled -Dbuildtype=debugoptimized \
		-Dc_args=-fsanitize=fuzzer-no-link
	for t in tree wheel time grpc; do
		bin=$src/$prefix-fuzz/fuzz/fuzz-$t
		if [ ! -x "$bin" ]; then
			skip "libfuzzer-$t" "no fuzz-$t target"
			continue
		fi
		work=$(mktemp -d)
		# New inputs go to a scratch dir; the committed corpus is read.
		step "libfuzzer-$t" $((fuzz_seconds + 120)) \
			bash -c "cd '$work' && '$bin' -max_total_time=$fuzz_seconds \
				-print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
				'$work' '$src/fuzz/corpus/$t'"
		grep -h 'stat::number_of_executed_units' \
			"$logdir/libfuzzer-$t.log" | sed "s/^/  fuzz-$t /"
		rm -rf "$work"
	done
else
	skip libfuzzer "FUZZ_SECONDS=0"
fi

# 5. valgrind (memcheck) on every suite, in a plain gcc build (valgrind
# 3.19 cannot read the DWARF 5 that clang 14 writes) with the debug checks
# on, so that the death tests run and every free goes through the RCU
# reclaimer. Forked children are checked too. The stress suite's races
# hardly race under valgrind's one thread at a time (TSan and ASan run
# them); here it is the memory check that counts.
# --fair-sched: tests that race a spinning thread otherwise starve under
# valgrind's one-thread-at-a-time lock (the SEMANTICS tests: 9-11 min instead of 40 s).
if command -v valgrind >/dev/null 2>&1; then
	step vg-build 900 env CC=gcc CXX=g++ "${setup[@]}" "$prefix-vg" -Dtests=enabled -Dbenchmarks=disabled \
		-Dbuildtype=debugoptimized -Ddebug_checks=enabled -Db_sanitize=none
	step valgrind 1200 meson test -C "$prefix-vg" --no-suite interop --no-suite docs \
		--num-processes 1 --timeout-multiplier 10 --print-errorlogs \
		--wrap='valgrind --leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite --track-fds=no --fair-sched=yes --max-threads=2000 --quiet'
else
	skip valgrind "valgrind not installed"
fi

echo
echo "=== sanitizer summary"
printf '%s\n' "${results[@]}"
echo "sanitizers: $(( ${#results[@]} - failed )) steps ok, $failed failed"
[ "$failed" -eq 0 ]
