#!/usr/bin/env bash
# Builds autonomy_VERSION_amd64.deb from a release build and `make install DESTDIR=…`, with
# dpkg-deb, then runs lintian on it when lintian is installed.
#
# Usage: packaging/deb/build.sh [OUTPUT_FOLDER]      (default: the current folder)
#   BUILD_DIR=.build-static   the release build folder (bench/run.sh uses the same one)
#   SKIP_BUILD=1              package the binary already in BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(cd "${1:-.}" && pwd)"
here="$root/packaging/deb"
build_dir="${BUILD_DIR:-.build-static}"
cd "$root"
if [ -z "${SKIP_BUILD:-}" ]; then make build BUILD_DIR="$build_dir" >&2; fi
binary="$build_dir/release/autonomy"
version="$("$binary" --version)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

make --no-print-directory install DESTDIR="$stage" PREFIX=/usr BUILD_DIR="$build_dir" >/dev/null
# The configuration is not a file of the package: postinst copies the example when there is none,
# so an upgrade never touches an operator's, and no conffile prompt ever asks about it.
rm -rf "$stage/etc"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/autonomy"
gzip -9n "$stage/usr/share/man/man1/autonomy.1"
doc="$stage/usr/share/doc/autonomy"
install -d -m 0755 "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")/" \
    "$here/changelog" | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Depends, from the libraries the binary links (dpkg-shlibdeps needs a debian/control to read).
shlib="$(mktemp -d)"
mkdir -p "$shlib/debian"
printf 'Source: autonomy\n\nPackage: autonomy\nArchitecture: any\n' > "$shlib/debian/control"
depends="$(cd "$shlib" && dpkg-shlibdeps -O "$stage/usr/bin/autonomy" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
rm -rf "$shlib"
[ -n "$depends" ] || depends="libc6, libsqlite3-0"
case "$depends" in *libsqlite3-0*) ;; *) depends="$depends, libsqlite3-0" ;; esac
# postinst runs systemd-sysusers and systemd-tmpfiles (deb-systemd-invoke comes with init-system-helpers, which is essential).
depends="$depends, systemd"

install -d -m 0755 "$stage/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed "s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@SIZE@/$size/; s/@DEPENDS@/$depends/" "$here/control" \
    > "$stage/DEBIAN/control"
for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$stage/DEBIAN/$script"; done
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

deb="$out/autonomy_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"

# lintian: clean, except the tags in packaging/deb/lintian-suppressed, each explained there.
if command -v lintian >/dev/null; then
    tags="$(grep -v '^#' "$here/lintian-suppressed" | grep -v '^$' | paste -sd, -)"
    lintian --tag-display-limit 0 --suppress-tags "$tags" "$deb" >&2
fi
