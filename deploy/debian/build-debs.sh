#!/usr/bin/env bash
# Builds the Debian packages sonde-agent, sonde-responder and sonde-collector from the
# workspace with dpkg-deb: binary, default configuration (a conffile), hardened systemd
# unit, man page made from --help (help2man), maintainer scripts.
#
# Usage: deploy/debian/build-debs.sh [--version VERSION] [--out DIR] [--no-build]
#                                     [--binaries DIR]
#   --version  package version (default: the workspace's, e.g. 0.1.0)
#   --out      where the .deb files go (default: target/debian)
#   --no-build use the binaries already built
#   --binaries where the binaries are (default: target/release; the install test
#              packages target/debug, which `cargo build` made)
# Needs: cargo, dpkg-deb, help2man (apt-get install help2man).
set -euo pipefail
cd "$(dirname "$0")/../.."

version=""
out="target/debian"
build=1
bins="target/release"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --binaries) bins="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
if [ -z "$version" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
fi
for tool in dpkg-deb help2man; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (apt-get install $tool)" >&2; exit 69; }
done
if [ "$build" = 1 ]; then
  cargo build --release --locked -p sonde-agent -p sonde-responder -p sonde-collector
fi
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# package user state_dir description config_src config_dst
package() {
  local pkg=$1 user=$2 state=$3 desc=$4 config_src=$5 config_dst=$6
  local root="$stage/$pkg"
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
    "$root/usr/share/man/man1" "$root/usr/share/doc/$pkg" "$root/etc/sonde"
  install -m 0755 "$bins/$pkg" "$root/usr/bin/$pkg"
  strip --strip-unneeded "$root/usr/bin/$pkg"
  install -m 0644 "deploy/systemd/$pkg.service" "$root/lib/systemd/system/$pkg.service"
  install -m 0644 "$config_src" "$root$config_dst"
  help2man --no-info --version-string="$version" --name="$desc" "$bins/$pkg" \
    | gzip -9n > "$root/usr/share/man/man1/$pkg.1.gz"
  # --help of every command, as the man page's appendix for the subcommands.
  {
    "$bins/$pkg" --help
    for c in $("$bins/$pkg" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR>1 && $1!="help" {print $1}'); do
      printf '\n\n==== %s %s ====\n\n' "$pkg" "$c"
      "$bins/$pkg" "$c" --help
    done
  } | gzip -9n > "$root/usr/share/doc/$pkg/commands.txt.gz"
  cat > "$root/usr/share/doc/$pkg/copyright" <<COPY
sonde ($pkg). License: Apache-2.0 (see /usr/share/common-licenses/Apache-2.0).
COPY
  echo "$config_dst" > "$root/DEBIAN/conffiles"
  local size
  size=$(du -sk "$root" | cut -f1)
  cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: sonde developers <sonde@localhost>
Installed-Size: $size
Depends: adduser, libc6
Section: net
Priority: optional
Description: $desc
 sonde measures broadband accesses (FTTH, 4G, Wi-Fi) against the targets
 promised to digital districts, continuously, and keeps every result from the
 box to the regulator's signed report.
CONTROL
  # Maintainer scripts: safe to run twice; upgrades keep configuration and state.
  cat > "$root/DEBIAN/postinst" <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
  if ! getent group $user >/dev/null; then addgroup --system --quiet $user; fi
  if ! getent passwd $user >/dev/null; then
    adduser --system --quiet --ingroup $user --home $state --no-create-home \
      --shell /usr/sbin/nologin --gecos "$pkg" $user
  fi
  install -d -o $user -g $user -m 0700 $state
  chown root:$user $config_dst
  chmod 0640 $config_dst
  if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
fi
exit 0
POSTINST
  cat > "$root/DEBIAN/prerm" <<PRERM
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "\$1" = remove ]; then
  systemctl stop $pkg.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
  cat > "$root/DEBIAN/postrm" <<POSTRM
#!/bin/sh
set -e
case "\$1" in
  remove)
    if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
    ;;
  purge)
    rm -f /etc/systemd/system/multi-user.target.wants/$pkg.service
    rm -rf $state
    rmdir /etc/sonde 2>/dev/null || true
    if getent passwd $user >/dev/null; then deluser --system --quiet $user >/dev/null 2>&1 || true; fi
    if getent group $user >/dev/null; then delgroup --system --quiet $user >/dev/null 2>&1 || true; fi
    ;;
esac
exit 0
POSTRM
  chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
  dpkg-deb --root-owner-group --build "$root" "$out/${pkg}_${version}_${arch}.deb" >/dev/null
  echo "$out/${pkg}_${version}_${arch}.deb"
}

package sonde-agent sonde /var/lib/sonde \
  "sonde agent: measures broadband accesses and uploads the results" \
  deploy/agent.example.toml /etc/sonde/agent.toml
package sonde-responder sonde-responder /var/lib/sonde-responder \
  "sonde responder: measurement peer for sonde agents" \
  deploy/responder.conf /etc/sonde/responder.conf
package sonde-collector sonde-collector /var/lib/sonde-collector \
  "sonde collector: stores results, serves metrics and signed reports" \
  deploy/collector.example.toml /etc/sonde/collector.toml
