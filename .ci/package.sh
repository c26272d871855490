#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Debian packages: build librctx0 and librctx-dev with dpkg-buildpackage,
# check them with lintian, install them, build and run the consumers of
# tests/consumer against /usr (CMake, meson, pkg-config shared and
# static), then remove the packages again.
#
#   .ci/package.sh          (as root, on Debian; needs debhelper, lintian)
#   KEEP_PACKAGES=1         leave the packages installed
#
# Prints "step NAME: PASS|FAIL (N s)" per step and exits non-zero if one
# failed. Work and logs: build-deb/ (gitignored). About 2 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
work=$src/build-deb
failed=0

if [ "$(id -u)" -ne 0 ]; then
	echo "package.sh: run as root (installs the packages it builds)" >&2
	exit 1
fi
rm -rf "$work"
mkdir -p "$work/src/rctx"

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

# The changelog's version is the header's (dpkg-buildpackage takes the
# package version from it).
version() {
	local deb hdr
	deb=$(dpkg-parsechangelog -S Version)
	hdr=$(sed -n 's/^#define RCTX_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' \
		include/rctx.h | paste -sd.)
	echo "debian/changelog: $deb, include/rctx.h: $hdr"
	[ "${deb%%-*}" = "$hdr" ]
}
step deb-version version

# Build from a copy of the tree (dpkg-buildpackage writes the .debs next to
# the source directory), without the test suite: tests/run runs it.
build() {
	git ls-files -co --exclude-standard | tar -cf - -T - |
		tar -xf - -C "$work/src/rctx" &&
		cd "$work/src/rctx" &&
		DEB_BUILD_OPTIONS="nocheck parallel=${JOBS:-2}" \
			dpkg-buildpackage -us -uc -b
}
step deb-build build
changes=$(ls "$work"/src/*.changes 2>/dev/null | head -n 1)
step lintian lintian --fail-on error \
	"${changes:-missing.changes}"

install_debs() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "$work"/src/librctx0_*.deb \
		"$work"/src/librctx-dev_*.deb
}
step deb-install install_debs
contents() {
	local ma
	ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
	dpkg -L librctx0 librctx-dev | tee "$work/files.txt"
	for f in "/usr/lib/$ma/librctx.so.0" "/usr/lib/$ma/librctx.so" \
		"/usr/lib/$ma/librctx.a" "/usr/lib/$ma/pkgconfig/rctx.pc" \
		"/usr/lib/$ma/cmake/rctx/rctxConfig.cmake" \
		"/usr/lib/$ma/cmake/rctx/rctxConfigVersion.cmake" \
		/usr/include/rctx.h /usr/share/man/man3/rctx.3.gz \
		/usr/share/man/man3/rctx_cancel.3.gz; do
		grep -qx "$f" "$work/files.txt" || { echo "missing: $f"; return 1; }
	done
	# The loader finds the library (the package's ldconfig trigger).
	ldconfig -p | grep 'librctx\.so\.0 '
}
step deb-contents contents

out=$(tests/consumer/run.sh /usr "$work/consumer" cflags system static cmake meson)
rc=$?
echo "$out"
n=$(grep -c ': FAIL' <<<"$out")
[ $rc -ne 0 ] && [ "$n" -eq 0 ] && n=1
failed=$((failed + n))

if [ -z "${KEEP_PACKAGES:-}" ]; then
	step deb-remove env DEBIAN_FRONTEND=noninteractive \
		apt-get purge -y -q librctx-dev librctx0
fi
echo "package: $failed failed"
[ $failed -eq 0 ]
