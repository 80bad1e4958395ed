#!/usr/bin/env bash
# The guest layer of an AgentLab VM template: the one place the guest's layout is defined.
# It installs into a root directory (a mmdebstrap tree, or `/` inside an image being
# customized by virt-customize):
#   - /usr/local/bin/agent-runner and its unit agent-runner.service (User=agent). The unit has
#     no [Install] section: the sandbox's cloud-init snippet starts it from `runcmd`, which
#     runs in cloud-init's final stage, after `write_files` wrote /etc/agentlab/bootstrap.json,
#     so it cannot start before the descriptor exists. ConditionPathExists= makes a manual
#     start on a VM without one a no-op, and the descriptor (root:root 0600) reaches the
#     unprivileged runner as a systemd credential, never as a readable file.
#   - agentlab-work.service (enabled, ordered before the runner): the sandbox's workspace,
#     the disk Proxmox attaches as scsi1, formatted ext4 with label AGENTLAB_WORK when it is
#     blank and mounted at /work (a disk with anything else on it is never formatted);
#   - the `agent` user (cloud-init adds the daemon's SSH key to it from the snippet);
#   - sshd: keys only, no root login, only `agent`; host keys removed so every clone gets
#     its own (cloud-init generates them on first boot);
#   - qemu-guest-agent (the daemon learns the VM's address through it);
#   - DHCP on the first Ethernet NIC (systemd-networkd + systemd-resolved), a fallback for
#     images whose cloud-init renders no network configuration;
#   - an empty /etc/machine-id, so every clone has its own DHCP client identity;
#   - bubblewrap and git; with --with-agents, Node.js and the agent CLIs.
#
# usage: guest_layer.sh ROOT --runner PATH [--with-agents] [--claude-version V]
#          [--codex-version V] [--opencode-version V] [--no-packages]
#        guest_layer.sh --packages [--with-agents]   (prints the Debian packages it needs)
# With ROOT=/ and apt-get present, missing packages are installed; for any other ROOT the
# caller (build_debian_image.sh) puts them in the tree first.
set -euo pipefail

packages() {
  local base="systemd-sysv systemd-resolved udev dbus iproute2 ca-certificates sudo cloud-init \
qemu-guest-agent openssh-server git bubblewrap jq tar gzip procps e2fsprogs util-linux"
  if [ "${1:-}" = agents ]; then base="$base nodejs npm"; fi
  echo "$base"
}

die() { echo "guest_layer.sh: $*" >&2; exit 1; }

root=""
runner=""
with_agents=""
install_packages=1
claude_version=1.0.100
codex_version=0.28.0
opencode_version=0.6.4
print_packages=""
while [ $# -gt 0 ]; do
  case "$1" in
    --packages) print_packages=1 ;;
    --runner) runner=${2:?--runner needs a path}; shift ;;
    --with-agents) with_agents=agents ;;
    --no-packages) install_packages="" ;;
    --claude-version) claude_version=${2:?}; shift ;;
    --codex-version) codex_version=${2:?}; shift ;;
    --opencode-version) opencode_version=${2:?}; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$root" ] || die "one ROOT only"; root=$1 ;;
  esac
  shift
done
if [ -n "$print_packages" ]; then packages "$with_agents"; exit 0; fi
[ -n "$root" ] || die "missing ROOT (see --help)"
[ -d "$root" ] || die "ROOT $root is not a directory"
[ -n "$runner" ] || die "missing --runner PATH (the agent-runner binary, from cargo build -p agentlab-guest)"
[ -x "$runner" ] || die "--runner $runner is not an executable file"
root=$(cd "$root" && pwd)
in_root() { if [ "$root" = / ]; then "$@"; else chroot "$root" "$@"; fi; }

if [ "$root" = / ] && [ -n "$install_packages" ] && command -v apt-get >/dev/null; then
  # shellcheck disable=SC2046
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(packages "$with_agents")
fi
for tool in git bwrap sshd qemu-ga cloud-init; do
  found=""
  for dir in usr/bin usr/sbin bin sbin; do [ -x "$root/$dir/$tool" ] && found=1; done
  [ -n "$found" ] || die "$tool is not installed in $root (install: $(packages "$with_agents"))"
done

echo "guest layer: agent-runner $("$runner" --version 2>/dev/null || echo '?') into $root"
install -D -m 0755 "$runner" "$root/usr/local/bin/agent-runner"
install -d -m 0755 "$root/etc/agentlab"

cat > "$root/etc/agentlab/agent-runner.env" <<'ENV'
# agent-runner settings (see `agent-runner --help`). Read by agent-runner.service.
# AGENTLAB_AGENT_COMMAND=
# AGENTLAB_BOOTSTRAP_RETRY_MAX=10
# AGENTLAB_RETRY_MAX=6
ENV

cat > "$root/etc/systemd/system/agent-runner.service" <<'UNIT'
# AgentLab's guest runner. Started by the sandbox's cloud-init snippet (runcmd, in
# cloud-init's final stage, once write_files has written the bootstrap descriptor); never
# enabled at boot, so it cannot race the descriptor. Written by scripts/template/guest_layer.sh.
[Unit]
Description=AgentLab agent runner
ConditionPathExists=/etc/agentlab/bootstrap.json
Wants=network-online.target agentlab-work.service
After=network-online.target cloud-final.service agentlab-work.service

[Service]
Type=exec
User=agent
Group=agent
# The descriptor is root's 0600 file; the runner reads it as a credential.
LoadCredential=bootstrap:/etc/agentlab/bootstrap.json
Environment=AGENTLAB_BOOTSTRAP=%d/bootstrap
Environment=AGENTLAB_RUN_DIR=/run/agentlab
Environment=AGENTLAB_SECRETS_DIR=/run/agentlab/secrets
EnvironmentFile=-/etc/agentlab/agent-runner.env
RuntimeDirectory=agentlab
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
WorkingDirectory=~
ExecStart=/usr/local/bin/agent-runner run
# The token is single-use: a failed runner is not started again with it.
Restart=no
UNIT

install -d -m 0755 "$root/usr/local/sbin"
cat > "$root/usr/local/sbin/agentlab-work-mount" <<'WORK'
#!/bin/sh
# Mounts the sandbox's workspace at /work. AgentLab attaches a workspace's volume as scsi1;
# QEMU names that disk by its drive id. A blank disk (no filesystem, no partition table)
# gets an ext4 filesystem labelled AGENTLAB_WORK; a disk with anything else on it is left
# alone and this unit fails, so nothing is ever overwritten. No disk: nothing to do.
# Written by scripts/template/guest_layer.sh.
set -eu
disk=/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi1
udevadm settle --timeout=30 || true
if [ ! -b "$disk" ]; then
  echo "agentlab-work: no workspace disk"
  exit 0
fi
probe=$(blkid -p -o export "$disk" 2>/dev/null || true)
if [ -z "$probe" ]; then
  echo "agentlab-work: formatting the blank workspace disk $(readlink -f "$disk")"
  mkfs.ext4 -q -L AGENTLAB_WORK -E lazy_itable_init=1,lazy_journal_init=1 "$disk"
  probe=$(blkid -p -o export "$disk")
fi
case "$probe" in
  *LABEL=AGENTLAB_WORK*) ;;
  *) echo "agentlab-work: $disk holds something that is not an AGENTLAB_WORK filesystem; not touching it" >&2
     exit 1 ;;
esac
mkdir -p /work
mountpoint -q /work || mount -o nosuid,nodev "$disk" /work
chown agent:agent /work
echo "agentlab-work: workspace mounted at /work"
WORK
chmod 0755 "$root/usr/local/sbin/agentlab-work-mount"
cat > "$root/etc/systemd/system/agentlab-work.service" <<'UNIT'
# The sandbox's workspace at /work, before the runner clones into /work/repo. Written by
# scripts/template/guest_layer.sh.
[Unit]
Description=AgentLab workspace at /work
After=systemd-udev-trigger.service local-fs.target
Before=agent-runner.service cloud-final.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/agentlab-work-mount

[Install]
WantedBy=multi-user.target
UNIT

# The agent user (cloud-init's `users:` in the snippet adds keys and sudo to it).
if ! in_root getent passwd agent >/dev/null; then
  in_root useradd --create-home --shell /bin/bash --user-group agent
fi

install -d -m 0755 "$root/etc/ssh/sshd_config.d"
cat > "$root/etc/ssh/sshd_config.d/50-agentlab.conf" <<'SSHD'
# AgentLab sandboxes: only the agent user, only keys (the daemon's, from the snippet).
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers agent
SSHD
rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub

install -d -m 0755 "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/99-agentlab-dhcp.network" <<'NET'
# DHCP on the Ethernet NIC (the agent bridge's dnsmasq answers). Sorted last: a
# configuration cloud-init renders (10-cloud-init-*.network) or netplan's takes precedence.
[Match]
Type=ether
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
NET

# Unique per clone: systemd creates it on first boot (and networkd's DHCP identity with it).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

in_root systemctl enable systemd-networkd.service systemd-resolved.service ssh.service >/dev/null 2>&1 \
  || in_root systemctl enable systemd-networkd.service ssh.service
# qemu-guest-agent starts when its virtio port appears (udev); enabling it covers images
# whose package has an [Install] section.
in_root systemctl enable qemu-guest-agent.service >/dev/null 2>&1 || true
in_root systemctl enable agentlab-work.service >/dev/null
if [ -e "$root/usr/lib/systemd/system/systemd-resolved.service" ] && [ "$root" != / ]; then
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
fi

# A serial console for Proxmox's `qm terminal` and for the test tier's boot log.
in_root systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true

if [ -n "$with_agents" ]; then
  command -v npm >/dev/null || [ -x "$root/usr/bin/npm" ] || die "--with-agents needs npm in $root"
  in_root npm install -g --no-fund --no-audit \
    "@anthropic-ai/claude-code@$claude_version" "@openai/codex@$codex_version" "opencode-ai@$opencode_version"
fi
echo "guest layer: done"
