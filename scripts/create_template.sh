#!/usr/bin/env bash
# Builds AgentLab's VM template on a Proxmox VE host: a cloud image with AgentLab's guest
# layer (scripts/template/guest_layer.sh: agent-runner, the agent user, sshd,
# qemu-guest-agent) made into a template the way Proxmox's own cloud-init guide does it,
# then checked with `agentlabd template check`.
#
# usage: create_template.sh [options]
#   --vmid N              the template's VMID (9000; the shipped profiles use 9000)
#   --name NAME           its name (agentlab-ubuntu-2404)
#   --storage S           where its disk and cloud-init drive go (local-zfs)
#   --bridge B            net0's bridge (vmbr1, the agent bridge)
#   --memory MB --cores N --disk SIZE    (4096, 2, 40G: the boot disk is grown to SIZE)
#   --machine i440fx|q35  (i440fx)
#   --image PATH          any cloud image (qcow2 or raw); without it Ubuntu 24.04's
#                         noble-server-cloudimg-amd64.img is downloaded into --cache-dir
#   --cache-dir DIR       (/var/lib/agentlab/images); only verified downloads stay there
#   --image-sha256 HEX    the download's SHA-256; otherwise the SHA256SUMS at
#   --image-sha256-url URL  (https://cloud-images.ubuntu.com/noble/current/SHA256SUMS)
#                         A mismatch is fatal and deletes the download.
#   --refresh             download the image again even if it is in the cache
#   --runner PATH         the agent-runner binary (target/release/agent-runner, else
#                         target/debug/agent-runner, relative to the repository, else
#                         agent-runner on PATH)
#   --skip-customize      import the image as it is (it already has the guest layer)
#   --with-agents         also install Node.js and the agent CLIs, at
#   --claude-version V --codex-version V --opencode-version V   (1.0.100, 0.28.0, 0.6.4)
#   --config PATH         agentlabd's config for the check (agentlabd's default otherwise)
#   --no-check            skip `agentlabd template check` at the end
#   --dry-run             print every command instead of running it, one line each, quoted
#                         so that `bash` runs the printed lines as they are; messages go to
#                         stderr, nothing else to stdout. Read-only checks still run.
#   --verify FILE         (a step of the plan) check FILE against --image-sha256 HEX, or
#                         --sums SHA256SUMS, deleting it on a mismatch; then exit
#
# Needs qm (from PATH), virt-customize (libguestfs-tools) unless --skip-customize, and
# curl and sha256sum for the download. Refuses a VMID that already exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
repo=$(cd "$here/.." && pwd)

note() { echo "create_template.sh: $*" >&2; }
die() { note "$*"; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self"; }

vmid=9000
name=agentlab-ubuntu-2404
storage=local-zfs
bridge=vmbr1
memory=4096
cores=2
disk=40G
machine=i440fx
image=""
image_url=https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img
cache_dir=/var/lib/agentlab/images
image_sha256=""
image_sha256_url=https://cloud-images.ubuntu.com/noble/current/SHA256SUMS
refresh=""
runner=""
skip_customize=""
with_agents=""
claude_version=1.0.100
codex_version=0.28.0
opencode_version=0.6.4
config=""
no_check=""
dry_run=""
verify_file=""
sums=""
while [ $# -gt 0 ]; do
  case "$1" in
    --vmid) vmid=${2:?--vmid needs a number}; shift ;;
    --name) name=${2:?--name needs a name}; shift ;;
    --storage) storage=${2:?--storage needs a storage}; shift ;;
    --bridge) bridge=${2:?--bridge needs a bridge}; shift ;;
    --memory) memory=${2:?--memory needs megabytes}; shift ;;
    --cores) cores=${2:?--cores needs a number}; shift ;;
    --disk) disk=${2:?--disk needs a size such as 40G}; shift ;;
    --machine) machine=${2:?--machine needs i440fx or q35}; shift ;;
    --image) image=${2:?--image needs a path}; shift ;;
    --cache-dir) cache_dir=${2:?--cache-dir needs a directory}; shift ;;
    --image-sha256) image_sha256=${2:?--image-sha256 needs a hex digest}; shift ;;
    --image-sha256-url) image_sha256_url=${2:?--image-sha256-url needs a URL}; shift ;;
    --refresh) refresh=1 ;;
    --runner) runner=${2:?--runner needs a path}; shift ;;
    --skip-customize) skip_customize=1 ;;
    --with-agents) with_agents=1 ;;
    --claude-version) claude_version=${2:?}; shift ;;
    --codex-version) codex_version=${2:?}; shift ;;
    --opencode-version) opencode_version=${2:?}; shift ;;
    --config) config=${2:?--config needs a path}; shift ;;
    --no-check) no_check=1 ;;
    --dry-run) dry_run=1 ;;
    --verify) verify_file=${2:?--verify needs a file}; shift ;;
    --sums) sums=${2:?--sums needs a SHA256SUMS file}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

# Runs a command, or with --dry-run prints it as one line of shell-quoted words (so the
# printed plan can be run by bash as it is). Every command that changes something goes
# through here.
run() {
  local line
  printf -v line '%q ' "$@"
  line=${line% }
  if [ -n "$dry_run" ]; then
    printf '%s\n' "$line"
  else
    note "+ $line"
    "$@"
  fi
}

# --verify: the file's SHA-256 against the expected one; a mismatch deletes the file.
if [ -n "$verify_file" ]; then
  [ -f "$verify_file" ] || die "--verify: no file $verify_file"
  expected=$image_sha256
  if [ -z "$expected" ]; then
    [ -n "$sums" ] || die "--verify needs --image-sha256 HEX or --sums FILE"
    base=$(basename "$verify_file")
    expected=$(awk -v n="$base" '$2 == n || $2 == "*" n { print $1; exit }' "$sums")
    [ -n "$expected" ] || { rm -f -- "$verify_file"; die "$base is not listed in $sums; deleted the download"; }
  fi
  actual=$(sha256sum -- "$verify_file" | awk '{ print $1 }')
  if [ "$actual" != "${expected,,}" ]; then
    rm -f -- "$verify_file"
    die "SHA-256 mismatch for $verify_file: expected $expected, got $actual; deleted it (download it again, or check --image-sha256)"
  fi
  note "verified $verify_file (sha256 $actual)"
  exit 0
fi

if ! [[ $vmid =~ ^[0-9]+$ ]] || [ "$vmid" -lt 100 ]; then die "--vmid $vmid: expected a number of at least 100"; fi
[[ $memory =~ ^[0-9]+$ ]] || die "--memory $memory: expected megabytes"
[[ $cores =~ ^[0-9]+$ ]] || die "--cores $cores: expected a number"
[[ $disk =~ ^[0-9]+[KMGT]?$ ]] || die "--disk $disk: expected a size such as 40G"
case "$machine" in i440fx|q35) ;; *) die "--machine $machine: expected i440fx or q35" ;; esac
[ -z "$image_sha256" ] || [[ $image_sha256 =~ ^[0-9a-fA-F]{64}$ ]] || die "--image-sha256: expected 64 hex digits"

# What the plan needs: missing tools stop a real run; a dry run only says so.
need() {
  command -v "$1" >/dev/null && return 0
  if [ -n "$dry_run" ]; then note "warning: $1 is not on PATH ($2)"; else die "$1 is not on PATH ($2)"; fi
}
need qm "run this on a Proxmox VE host"
[ -n "$skip_customize" ] || need virt-customize "apt-get install libguestfs-tools, or --skip-customize"
if [ -z "$image" ]; then
  need curl "apt-get install curl"
  need sha256sum "coreutils"
fi

if command -v qm >/dev/null; then
  if qm status "$vmid" >/dev/null 2>&1; then
    die "VM $vmid already exists (qm status $vmid); choose another --vmid, or remove it first: qm destroy $vmid --purge"
  fi
else
  note "warning: qm is not on PATH, so whether VM $vmid exists is not checked"
fi

if [ -z "$skip_customize" ]; then
  if [ -z "$runner" ]; then
    # From a checkout: the build; installed (install_host.sh, the .deb): the one on PATH.
    for candidate in "$repo/target/release/agent-runner" "$repo/target/debug/agent-runner" \
      "$(command -v agent-runner || true)"; do
      if [ -x "$candidate" ]; then runner=$candidate; break; fi
    done
    [ -n "$runner" ] || die "no agent-runner binary: cargo build --release -p agentlab-guest, or pass --runner PATH"
  fi
  [ -x "$runner" ] || die "--runner $runner is not an executable file"
  runner=$(realpath -- "$runner")
fi

# The image: the operator's, or the verified download (only verified files reach the cache).
if [ -n "$image" ]; then
  [ -f "$image" ] || die "--image $image: no such file"
  image=$(realpath -- "$image")
else
  cached="$cache_dir/$(basename "$image_url")"
  if [ -n "$refresh" ] || [ ! -f "$cached" ]; then
    partial="$cache_dir/partial"
    run mkdir -p -- "$partial"
    run curl -fL --retry 3 --output "$partial/$(basename "$image_url")" -- "$image_url"
    if [ -n "$image_sha256" ]; then
      run "$self" --verify "$partial/$(basename "$image_url")" --image-sha256 "$image_sha256"
    else
      run curl -fsSL --retry 3 --output "$partial/SHA256SUMS" -- "$image_sha256_url"
      run "$self" --verify "$partial/$(basename "$image_url")" --sums "$partial/SHA256SUMS"
    fi
    run mv -f -- "$partial/$(basename "$image_url")" "$cached"
  else
    note "using the cached $cached (--refresh downloads it again)"
    if [ -n "$image_sha256" ]; then run "$self" --verify "$cached" --image-sha256 "$image_sha256"; fi
  fi
  image=$cached
fi

# A failed real run says what it leaves behind.
work=""
created=""
finished=""
on_exit() {
  local status=$?
  if [ -n "$work" ] && [ -z "$dry_run" ]; then rm -f -- "$work"; fi
  if [ "$status" != 0 ] && [ -n "$created" ] && [ -z "$finished" ]; then
    note "VM $vmid is half made; remove it with: qm destroy $vmid --purge"
  fi
}
trap on_exit EXIT

# The guest layer goes into a work copy, never into the cached or given image.
if [ -z "$skip_customize" ]; then
  work="$cache_dir/agentlab-template-$vmid.work.img"
  layer_args="/root/guest_layer.sh / --runner /usr/local/bin/agent-runner.new"
  if [ -n "$with_agents" ]; then
    layer_args+=" --with-agents --claude-version $claude_version --codex-version $codex_version"
    layer_args+=" --opencode-version $opencode_version"
  fi
  run mkdir -p -- "$cache_dir"
  run cp --reflink=auto -- "$image" "$work"
  run virt-customize -a "$work" \
    --upload "$runner:/usr/local/bin/agent-runner.new" \
    --upload "$repo/scripts/template/guest_layer.sh:/root/guest_layer.sh" \
    --run-command "$layer_args" \
    --run-command 'rm -f /root/guest_layer.sh /usr/local/bin/agent-runner.new'
  image=$work
fi

# Proxmox's cloud-init guide, step by step (pve-docs qm-cloud-init: "Preparing Cloud-Init
# Templates"), with the guest agent and a serial console.
create=(qm create "$vmid" --name "$name" --memory "$memory" --cores "$cores" --net0 "virtio,bridge=$bridge"
  --scsihw virtio-scsi-pci --ostype l26 --agent enabled=1 --serial0 socket --vga serial0)
if [ "$machine" = q35 ]; then create+=(--machine q35); fi
run "${create[@]}"
created=1
run qm set "$vmid" --scsi0 "$storage:0,import-from=$image,discard=on"
if [ "$machine" = q35 ]; then
  # On q35 an IDE CD-ROM may not be visible yet when cloud-init's generator looks for its
  # data source (canonical/cloud-init#3897); AgentLab adds clones' drives on SCSI there for
  # the same reason (actors/src/sandbox/guest_devices.rs).
  run qm set "$vmid" --scsi1 "$storage:cloudinit"
else
  run qm set "$vmid" --ide2 "$storage:cloudinit"
fi
run qm set "$vmid" --boot order=scsi0 --ipconfig0 ip=dhcp
run qm resize "$vmid" scsi0 "$disk"
run qm template "$vmid"
finished=1
if [ -n "$work" ]; then run rm -f -- "$work"; fi

if [ -n "$no_check" ]; then
  if [ -z "$dry_run" ]; then note "template $vmid ($name) made; not checked (--no-check)"; fi
elif command -v agentlabd >/dev/null; then
  check=(agentlabd template check "$vmid")
  if [ -n "$config" ]; then check+=(--config "$config"); fi
  status=0
  run "${check[@]}" || status=$?
  case "$status" in
    0) ;;
    1) die "template $vmid was made but agentlabd refuses it: fix what the lines above say" ;;
    *) note "warning: the check could not run (exit $status); once agentlabd is configured: ${check[*]}" ;;
  esac
else
  note "agentlabd is not on PATH; check the template once it is: agentlabd template check $vmid"
fi
if [ -z "$dry_run" ] && [ -z "$no_check" ]; then
  note "template $vmid ($name) is ready; profiles use it with template_vmid: $vmid"
fi
