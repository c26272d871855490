#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A stranger's first build: the library alone, with the optional
# dependencies hidden, installed to a private prefix; then the programs of
# tests/consumer built against an installed prefix with pkg-config (shared
# with an rpath or LD_LIBRARY_PATH, static), CMake and meson.
#
#   .ci/install-check.sh        (from anywhere; no root needed)
#
# Prints "step NAME: PASS|FAIL (N s)" per step and exits non-zero if one
# failed. Work and logs: build-install/ (gitignored).
set -uo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
work=$src/build-install
rm -rf "$work"
mkdir -p "$work"
failed=0

step() {
	local name=$1 t0
	shift
	t0=$(date +%s)
	if "$@" >"$work/$name.log" 2>&1; then
		echo "step $name: PASS ($(($(date +%s) - t0)) s)"
	else
		echo "step $name: FAIL ($(($(date +%s) - t0)) s), see $work/$name.log"
		tail -n 25 "$work/$name.log"
		failed=$((failed + 1))
	fi
}

# consumers PREFIX WORKDIR STEP...: tests/consumer/run.sh, its steps counted.
consumers() {
	local out n
	out=$(tests/consumer/run.sh "$@")
	local rc=$?
	echo "$out"
	n=$(grep -c ': FAIL' <<<"$out")
	[ $rc -ne 0 ] && [ "$n" -eq 0 ] && n=1
	failed=$((failed + n))
}

# 1. What a machine with only liburcu-dev and libck-dev offers: pkg-config
# sees liburcu-bp and ck alone, and there is no C++ compiler and no cmake
# (meson would otherwise find cmocka and benchmark through CMake).
hide=$work/hidden
mkdir -p "$hide/pc"
for p in liburcu-bp ck; do
	ln -s "$(pkg-config --variable=pcfiledir "$p")/$p.pc" "$hide/pc/"
done
printf '#!/bin/sh\necho "cmake version 0.0.0"\n' >"$hide/no-cmake"
chmod +x "$hide/no-cmake"
printf "[binaries]\ncmake = '%s'\ncpp = 'false'\n" "$hide/no-cmake" >"$hide/native.ini"

lib_only() {
	PKG_CONFIG_LIBDIR=$hide/pc meson setup "$work/lib-only" "$src" \
		--native-file "$hide/native.ini" --prefix="$work/lib-only-prefix" &&
		ninja -C "$work/lib-only" &&
		meson install -C "$work/lib-only" &&
		# The optional parts switched themselves off.
		[ "$(meson introspect --tests "$work/lib-only")" = "[]" ] &&
		! grep -q "bench-ctx\|fuzz-tree" "$work/lib-only/build.ninja"
}
step lib-only-build lib_only

# What the library-only install holds (multiarch libdir).
lo=$work/lib-only-prefix
lo_lib=$lo/lib/$(gcc -print-multiarch)
lib_only_files() {
	for f in include/rctx.h share/man/man3/rctx.3 \
		share/man/man3/rctx_with_cancel.3 share/man/man3/rctx_todo.3; do
		[ -e "$lo/$f" ] || { echo "missing: $f"; return 1; }
	done
	for f in librctx.so librctx.so.0 librctx.a pkgconfig/rctx.pc; do
		[ -e "$lo_lib/$f" ] || { echo "missing: $lo_lib/$f"; return 1; }
	done
	find "$lo" | sort
}
step lib-only-files lib_only_files
# The installed libraries carry no fault-injection hooks.
step lib-only-no-fault tests/check-no-fault.sh "$lo_lib/librctx.a" \
	"$(readlink -f "$lo_lib/librctx.so")"
# Every installed manual page passes mandoc's lint, and every RCTX_API
# function of the installed header has one.
step man-lint mandoc -Tlint -W warning "$lo"/share/man/man3/*.3
step man-names man/check-names.sh "$lo/include/rctx.h" "$lo/share/man/man3"

# 2. pkg-config consumers against the library-only prefix.
consumers "$lo" "$work/consumer-lib-only" cflags rpath ld-path static meson

# 3. A regular build (cmake present) adds the CMake package config.
full() {
	meson setup "$work/full" "$src" -Dtests=disabled \
		-Dbenchmarks=disabled -Dfuzzing=disabled -Dcmake_config=enabled \
		--prefix="$work/prefix" &&
		ninja -C "$work/full" && meson install -C "$work/full" &&
		ls "$work/prefix/lib/$(gcc -print-multiarch)/cmake/rctx/rctxConfig.cmake" \
			"$work/prefix/lib/$(gcc -print-multiarch)/cmake/rctx/rctxConfigVersion.cmake"
}
step install-cmake-config full
consumers "$work/prefix" "$work/consumer-cmake" cmake

echo "install-check: $failed failed"
[ $failed -eq 0 ]
