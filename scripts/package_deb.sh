#!/usr/bin/env bash
# Builds the agentlab .deb with dpkg-deb from a tree staged by install_host.sh, so the
# package installs exactly what install_host.sh installs (binaries in /usr/bin, units in
# /lib/systemd/system, scripts, profiles and notes in /usr/share/agentlab, the default
# config and profiles in /etc/agentlab as conffiles). Its postinst runs the installed
# install_host.sh --state-only: the group, directories, owners, modes and keys.
#
# usage: package_deb.sh [--bin-dir DIR] [--out DIR] [--compress xz|gzip|none]
#   --bin-dir DIR   the built binaries (default: target/release, else target/debug)
#   --out DIR       where the .deb goes (default: target/deb)
#   --compress C    dpkg-deb compression (default xz; CI uses none: debug binaries are big)
# Prints the path of the .deb.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin_dir="" out="$repo/target/deb" compress=xz
die() { echo "package_deb.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --compress) compress=${2:?}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (a Debian or Ubuntu machine builds the package)"
if [ -z "$bin_dir" ]; then
  if [ -x "$repo/target/release/agentlabd" ]; then bin_dir="$repo/target/release"; else bin_dir="$repo/target/debug"; fi
fi
[ -x "$bin_dir/agentlabd" ] || die "no $bin_dir/agentlabd: cargo build --release --workspace --bins"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
[ -n "$version" ] || die "no workspace version in Cargo.toml"
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
tree="$stage/agentlab"
share=/usr/share/agentlab

bash "$repo/scripts/install_host.sh" --apply --stage --prefix "$tree" --bin-dir "$bin_dir" \
  --bin-dest /usr/bin --unit-dir /lib/systemd/system --share-dir "$share" >/dev/null
install -d -m 0755 "$tree/usr/share/doc/agentlab" "$tree/usr/share/man/man1"
install -m 0644 "$repo/README.md" "$tree/usr/share/doc/agentlab/README.md"
install -m 0644 "$repo"/docs/man/*.1 "$tree/usr/share/man/man1/"
gzip -9n "$tree"/usr/share/man/man1/*.1

install -d -m 0755 "$tree/DEBIAN"
cat > "$tree/DEBIAN/control" <<CONTROL
Package: agentlab
Version: $version
Architecture: $arch
Maintainer: AgentLab <agentlab@example.invalid>
Section: admin
Priority: optional
Depends: nftables, conntrack, openssh-client, passwd
Recommends: dnsmasq-base, age
Installed-Size: $(du -sk --exclude=DEBIAN "$tree" | cut -f1)
Homepage: https://example.invalid/agentlab
Description: run AI coding agents in throw-away Proxmox VE virtual machines
 agentlabd runs on a Proxmox VE host and gives AI coding agents (Claude Code,
 Codex, OpenCode, any command) full permissions inside throw-away VMs that
 cannot reach the LAN; agentlab is its command-line client and agent-runner
 the guest side baked into the VM template.
CONTROL
( cd "$tree" && find etc -type f | sed 's|^|/|' | sort ) > "$tree/DEBIAN/conffiles"

cat > "$tree/DEBIAN/postinst" <<POSTINST
#!/bin/sh
# The group, /etc/agentlab and /var/lib/agentlab with their owners and modes, the age
# identity and the daemon's SSH key pair (kept when present). The daemon is not started:
# it needs a Proxmox API token in /etc/agentlab/config.yaml first.
set -e
if [ "\$1" = configure ]; then
  bash $share/scripts/install_host.sh --apply --state-only --bin-dest /usr/bin \\
    --unit-dir /lib/systemd/system --share-dir $share | grep -v '^ok:' || true
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade restarts a running daemon on the new binary.
    if [ -n "\$2" ]; then systemctl try-restart agentlabd.service || true; fi
  fi
  if [ -z "\$2" ]; then
    echo "agentlab: set proxmox_api_token in /etc/agentlab/config.yaml, then: systemctl enable --now agentlab-net.service agentlabd.service"
  fi
fi
exit 0
POSTINST
cat > "$tree/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now agentlabd.service agentlab-net.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
cat > "$tree/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
# purge removes everything the package made, the database, artifacts and keys included
# (back them up first: docs/how-to/backup-restore.md); the group agentlab stays (files
# elsewhere may belong to it).
set -e
if [ "$1" = purge ]; then
  rm -rf /etc/agentlab /var/lib/agentlab
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
POSTRM
chmod 0755 "$tree/DEBIAN/postinst" "$tree/DEBIAN/prerm" "$tree/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/agentlab_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$tree" "$deb" >/dev/null
echo "$deb"
