#!/usr/bin/env bash
# A minimal Debian 12 template image: mmdebstrap builds the root filesystem from Debian's
# packages (nothing is downloaded from anywhere else), guest_layer.sh adds AgentLab's guest
# layer, and `mkfs.ext4 -d` turns the tree into a disk image without mounting anything.
#
# usage: build_debian_image.sh --out DIR --runner PATH [--size 3G] [--mirror URL]
#          [--suite bookworm] [--with-agents] [--cache DIR]
#
# --cache DIR keeps mmdebstrap's tree as a tarball keyed by suite, mirror and package list,
# so a rebuild with a new runner or guest layer takes seconds instead of a minute.
#
# DIR receives:
#   rootfs.img   raw ext4 filesystem, label agentlab-root (the whole disk: no partition table)
#   vmlinuz, initrd.img, cmdline   the image's own kernel, initrd and kernel command line,
#                to boot it with `qemu -kernel vmlinuz -initrd initrd.img -append "$(cat cmdline)"`
#                (how pve-sim's QEMU runtime and the real-VM test tier boot it)
#   manifest.txt the packages and versions in the image, the runner's version, sha256 sums
#
# Reproducible: SOURCE_DATE_EPOCH (default: the last commit's time) fixes mmdebstrap's
# timestamps, and the filesystem UUID and hash seed are derived from it. Runs as root (CI);
# needs mmdebstrap and e2fsprogs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "build_debian_image.sh: $*" >&2; exit 1; }

out=""
runner=""
size=3G
mirror=http://deb.debian.org/debian
suite=bookworm
layer_args=()
cache=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?}; shift ;;
    --runner) runner=${2:?}; shift ;;
    --size) size=${2:?}; shift ;;
    --mirror) mirror=${2:?}; shift ;;
    --suite) suite=${2:?}; shift ;;
    --with-agents) layer_args+=(--with-agents) ;;
    --cache) cache=${2:?}; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[ -n "$out" ] || die "missing --out DIR"
[ -n "$runner" ] || die "missing --runner PATH (cargo build -p agentlab-guest → target/debug/agent-runner)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is not installed (apt-get install e2fsprogs)"
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap and chroot need it)"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
export SOURCE_DATE_EPOCH
mkdir -p "$out"
out=$(cd "$out" && pwd)
tree=$(mktemp -d "$out/.rootfs.XXXXXX")
trap 'rm -rf "$tree"' EXIT

started=$(date +%s)
packages=$("$here/guest_layer.sh" --packages "${layer_args[@]}")
# linux-image-cloud-amd64: virtio drivers without the hardware zoo; initramfs-tools for
# root=LABEL=; the rest is the guest layer's list.
include="linux-image-cloud-amd64 initramfs-tools e2fsprogs $(echo "$packages" | tr ' ' ',' | tr -s ',')"
make_rootfs() {
  mmdebstrap --variant=apt --quiet --include="$include" \
    --customize-hook='echo agentlab-template > "$1/etc/hostname"' \
    --customize-hook='printf "LABEL=agentlab-root / ext4 defaults,noatime 0 1\n" > "$1/etc/fstab"' \
    "$suite" "$1" "$mirror" >&2
}
if [ -n "$cache" ]; then
  mkdir -p "$cache"
  key=$(printf '%s\n' "$suite" "$mirror" "$include" "$SOURCE_DATE_EPOCH" | sha256sum | cut -c1-16)
  tarball="$cache/rootfs-$key.tar"
  if [ ! -s "$tarball" ]; then
    make_rootfs "$cache/partial-$key.tar"
    mv "$cache/partial-$key.tar" "$tarball"
  fi
  tar -xf "$tarball" -C "$tree"
else
  make_rootfs "$tree"
fi
echo "rootfs: $(( $(date +%s) - started )) s" >&2

"$here/guest_layer.sh" "$tree" --runner "$runner" --no-packages "${layer_args[@]}" >&2
# Cloud-init's NoCloud source on the CD-ROM (what Proxmox and pve-sim attach), nothing else
# probed: a template must not wait on metadata services that are not there.
cat > "$tree/etc/cloud/cloud.cfg.d/90-agentlab-datasource.cfg" <<'CFG'
datasource_list: [ NoCloud, ConfigDrive, None ]
CFG
chroot "$tree" apt-get clean
rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/log/*.log "$tree"/var/cache/debconf/*-old

kernel=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n1)
initrd=$(find "$tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n1)
[ -n "$kernel" ] && [ -n "$initrd" ] || die "no kernel or initrd in the tree"
cp "$kernel" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"
echo "root=LABEL=agentlab-root ro console=ttyS0 net.ifnames=0" > "$out/cmdline"

uuid=$(printf '%s' "agentlab-root-$SOURCE_DATE_EPOCH" | sha256sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
rm -f "$out/rootfs.img"
mkfs.ext4 -q -L agentlab-root -U "$uuid" -E "hash_seed=$uuid,root_owner=0:0" -d "$tree" "$out/rootfs.img" "$size"
{
  echo "suite: $suite ($mirror), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
  echo "agent-runner: $("$runner" --version)"
  chroot "$tree" dpkg-query -W -f '${Package} ${Version}\n'
  (cd "$out" && sha256sum vmlinuz initrd.img cmdline rootfs.img)
} > "$out/manifest.txt"
echo "image: $out/rootfs.img ($size) in $(( $(date +%s) - started )) s" >&2
