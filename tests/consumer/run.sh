#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build and run the consumer programs against an installed rctx, the way a
# user would: pkg-config (shared with an rpath, shared with
# LD_LIBRARY_PATH, static), CMake (find_package) and meson (dependency).
#
#   tests/consumer/run.sh PREFIX WORKDIR [STEP...]
#
# PREFIX is the installation prefix (/usr for the Debian packages). STEP
# names which steps to run (default: cflags rpath ld-path static cmake
# meson; "system" runs a program with neither rpath nor LD_LIBRARY_PATH,
# for a prefix the dynamic loader knows, such as /usr after ldconfig). Prints "step consumer-NAME: PASS|FAIL (N s)" per step and
# exits non-zero if one failed; logs go to WORKDIR/NAME.log.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1
work=$2
shift 2
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(cflags rpath ld-path static cmake meson)
mkdir -p "$work"
failed=0

libdir=$prefix/lib/$(gcc -print-multiarch)
if [ "$prefix" != /usr ]; then
	export PKG_CONFIG_PATH=$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
pc() { pkg-config "$@" rctx; }

# --cflags gives rctx's include directory and nothing else (pkg-config
# drops /usr/include, so for /usr it is empty).
step_cflags() {
	local flags inc
	flags=$(pc --cflags) || return 1
	inc=$(pc --variable=includedir) || return 1
	echo "pkg-config --cflags rctx: '$flags'"
	for f in $flags; do
		[ "$f" = "-I$inc" ] || { echo "unexpected flag: $f"; return 1; }
	done
	[ -n "$(pc --libs --static)" ] || return 1
	echo "pkg-config --libs --static rctx: '$(pc --libs --static)'"
	# rctx.pc's version is the installed header's.
	local hv
	hv=$(sed -n 's/^#define RCTX_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' \
		"$inc/rctx.h" | paste -sd.)
	echo "pkg-config --modversion rctx: $(pc --modversion), rctx.h: $hv"
	[ "$(pc --modversion)" = "$hv" ]
}
step_rpath() {
	# shellcheck disable=SC2046
	cc -o "$work/app-rpath" "$here/app.c" $(pc --cflags --libs) \
		-Wl,-rpath,"$(pc --variable=libdir)" && "$work/app-rpath"
}
step_ld-path() {
	# shellcheck disable=SC2046
	cc -o "$work/app-plain" "$here/app.c" $(pc --cflags --libs) &&
		LD_LIBRARY_PATH=$(pc --variable=libdir) "$work/app-plain"
}
step_system() {
	# shellcheck disable=SC2046
	cc -o "$work/app-system" "$here/app.c" $(pc --cflags --libs) &&
		env -u LD_LIBRARY_PATH "$work/app-system"
}
# Fully static: every library rctx needs must come from --libs --static.
step_static() {
	# shellcheck disable=SC2046
	cc -static -o "$work/app-static" "$here/app.c" \
		$(pc --cflags --libs --static) || return 1
	if ldd "$work/app-static" >/dev/null 2>&1; then
		echo "app-static is not static:"
		ldd "$work/app-static"
		return 1
	fi
	"$work/app-static"
}
step_cmake() {
	rm -rf "$work/cmake"
	cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" &&
		cmake --build "$work/cmake" &&
		LD_LIBRARY_PATH=$libdir "$work/cmake/app-c" &&
		LD_LIBRARY_PATH=$libdir "$work/cmake/app-cxx" &&
		"$work/cmake/app-static" &&
		! ldd "$work/cmake/app-static" | grep -q librctx &&
		cmake_versions
}
# The version file's rule (SameMajorVersion: the soname's major): asking
# for an older minor of the same major finds it, a newer minor or the next
# major does not.
cmake_versions() {
	local v maj min want ok
	v=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' \
		"$libdir/cmake/rctx/rctxConfigVersion.cmake")
	maj=${v%%.*}
	min=${v#*.}
	min=${min%%.*}
	for want in "$maj.$((min > 0 ? min - 1 : 0)):yes" "$maj.$min:yes" \
		"$maj.$((min + 1)):no" "$((maj + 1)).0:no"; do
		ok=yes
		rm -rf "$work/cmake-want"
		cmake -S "$here" -B "$work/cmake-want" -DCMAKE_PREFIX_PATH="$prefix" \
			-DRCTX_WANT="${want%:*}" >"$work/cmake-want.log" 2>&1 || ok=no
		echo "find_package(rctx ${want%:*}) with $v installed: found=$ok"
		[ "$ok" = "${want#*:}" ] || { cat "$work/cmake-want.log"; return 1; }
	done
}
step_meson() {
	rm -rf "$work/meson"
	meson setup "$work/meson" "$here" &&
		ninja -C "$work/meson" &&
		"$work/meson/app" &&
		"$work/meson/app-static" &&
		! ldd "$work/meson/app-static" | grep -q librctx
}

for s in "${steps[@]}"; do
	t0=$(date +%s)
	if "step_$s" >"$work/$s.log" 2>&1; then
		echo "step consumer-$s: PASS ($(($(date +%s) - t0)) s)"
	else
		echo "step consumer-$s: FAIL ($(($(date +%s) - t0)) s), see $work/$s.log"
		tail -n 20 "$work/$s.log"
		failed=$((failed + 1))
	fi
done
[ $failed -eq 0 ]
