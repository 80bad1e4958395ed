#!/usr/bin/env bash
# Installs AgentLab on a Proxmox VE host: group, directories, config, profiles, keys,
# binaries, systemd units. Without --apply it prints every action it would take and
# changes nothing. Running it again changes nothing (not even mtimes); an edited config or
# profile is never overwritten (the shipped one is written beside it as NAME.dist).
#
# usage: install_host.sh [--apply] [options]
#   --apply             act (default: preview)
#   --prefix ROOT       install into the tree ROOT instead of / (everything lands under ROOT;
#                       the group `agentlab` is still created on the running system, since
#                       files are given to it, and systemctl is not run)
#   --bin-dir DIR       where the built binaries are (default: target/release if it holds
#                       agentlabd, else target/debug)
#   --bin-dest DIR      where binaries go (default /usr/local/bin; the .deb: /usr/bin)
#   --unit-dir DIR      where units go (default /etc/systemd/system; the .deb: /lib/systemd/system)
#   --share-dir DIR     scripts and docs (default /usr/local/share/agentlab)
#   --api-hardening     also install the drop-in that tightens agentlabd.service for
#                       `proxmox_backend: api` (docs/explanation/systemd-hardening.md)
#   --no-keys           make no age identity and no SSH key pair
#   --stage             stage a package tree: no group, no chown, no keys, no state
#                       directories (the package's postinst makes those)
#   --state-only        only the group, the directories, owners, modes and keys (the
#                       package's postinst; binaries and units are dpkg's)
#   --uninstall         remove binaries, units and scripts; keep config, keys and data
#   --purge             with --uninstall: remove /etc/agentlab and /var/lib/agentlab too
#   -h, --help          this text
#
# What it makes: /etc/agentlab 0750 root:agentlab, config.yaml 0640 root:agentlab (every
# key, commented, with its default), profiles/ (the shipped profiles), secrets/ 0750,
# keys/ 0700 with an age identity (age.key 0600); /var/lib/agentlab 0750 with the daemon's
# SSH key pair in keys/ (0700, private key 0600); agentlabd, agentlab and agent-runner
# (0755); agentlabd.service and agentlab-net.service (neither enabled: edit the config,
# then `systemctl enable --now agentlabd`). /run/agentlab is made by the unit.
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
# From a checkout (scripts/) or installed (<share>/scripts/): the same layout below.
repo=$(cd "$here/.." && pwd)

apply=0 root="" bin_dir="" bin_dest=/usr/local/bin unit_dir=/etc/systemd/system
share_dir=/usr/local/share/agentlab api_hardening=0 keys=1 stage=0 state_only=0
uninstall=0 purge=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self"; }
die() { echo "install_host.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1; shift ;;
    --prefix) root=${2:?--prefix needs a directory}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --bin-dest) bin_dest=${2:?--bin-dest needs a directory}; shift 2 ;;
    --unit-dir) unit_dir=${2:?--unit-dir needs a directory}; shift 2 ;;
    --share-dir) share_dir=${2:?--share-dir needs a directory}; shift 2 ;;
    --api-hardening) api_hardening=1; shift ;;
    --no-keys) keys=0; shift ;;
    --stage) stage=1; keys=0; shift ;;
    --state-only) state_only=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || die "--purge goes with --uninstall"
[ "$stage" = 0 ] || [ "$state_only" = 0 ] || die "--stage and --state-only exclude each other"
if [ -n "$root" ]; then
  [ "${root#/}" != "$root" ] || root="$PWD/$root"
  root=${root%/}
fi
for dir in "$bin_dest" "$unit_dir" "$share_dir"; do
  [ "${dir#/}" != "$dir" ] || die "$dir must be an absolute path"
done
if [ -z "$bin_dir" ]; then
  if [ "$state_only" = 1 ]; then bin_dir="$root$bin_dest"
  elif [ -x "$repo/target/release/agentlabd" ]; then bin_dir="$repo/target/release"
  else bin_dir="$repo/target/debug"; fi
fi

conf_dir=/etc/agentlab
data_dir=/var/lib/agentlab
config=$conf_dir/config.yaml
binaries=(agentlabd agentlab agent-runner)
units=(agentlabd.service agentlab-net.service)
dropin=agentlabd.service.d/api-hardening.conf
group=agentlab
# Installing onto the running system (not a tree) with systemd as init.
live=0
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then live=1; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- output: one line per action --------------------------------------------------------
line() { printf '%-7s %s\n' "$1" "$2"; }
ok() { line "ok:" "$*"; }
note() { line "note:" "$*"; }
# act "what it does" command...: preview prints it, --apply runs it and prints it.
act() {
  local what=$1; shift
  if [ "$apply" = 1 ]; then
    "$@"
    line "done:" "$what"
  else
    line "would:" "$what"
  fi
}

# --- file helpers --------------------------------------------------------------------------
owner_of() { stat -c '%U:%G' "$1"; }
mode_of() { stat -c '%a' "$1"; }
set_owner() { [ "$stage" = 1 ] || chown "$1" "$2"; }

# fix_attrs PATH MODE OWNER: the mode and owner of an existing path, changed only if wrong.
fix_attrs() {
  local path=$1 mode=$2 owner=$3 dest="$root$1"
  if [ "$(mode_of "$dest")" != "${mode#0}" ]; then
    act "chmod $mode $path (was $(mode_of "$dest"))" chmod "$mode" "$dest"
  fi
  if [ "$stage" = 0 ] && [ "$(owner_of "$dest")" != "$owner" ]; then
    act "chown $owner $path (was $(owner_of "$dest"))" chown "$owner" "$dest"
  fi
}

make_dir() { mkdir -p "$1" && chmod "$2" "$1" && set_owner "$3" "$1"; }
put_file() { install -m "$3" "$1" "$2" && set_owner "$4" "$2"; }

# ensure_dir PATH MODE OWNER
ensure_dir() {
  local path=$1 mode=$2 owner=$3
  if [ ! -d "$root$path" ]; then
    act "create $path ($mode $owner)" make_dir "$root$path" "$mode" "$owner"
  else
    fix_attrs "$path" "$mode" "$owner"
    ok "$path ($mode $owner)"
  fi
}

# ensure_parent PATH: a directory that may belong to the system (/usr/local/bin, the unit
# directory): made if missing, never changed.
ensure_parent() {
  if [ -d "$root$1" ]; then
    ok "$1 (exists)"
  else
    act "create $1 (0755 root:root)" make_dir "$root$1" 0755 root:root
  fi
}

# ensure_file SRC PATH MODE OWNER replace|keep: copies SRC only when PATH differs from it.
# `keep` (config, profiles): an edited PATH stays, the shipped file goes to PATH.dist.
ensure_file() {
  local src=$1 path=$2 mode=$3 owner=$4 policy=$5 dest="$root$2"
  if [ ! -e "$dest" ]; then
    act "install $path ($mode $owner)" put_file "$src" "$dest" "$mode" "$owner"
  elif cmp -s "$src" "$dest"; then
    fix_attrs "$path" "$mode" "$owner"
    ok "$path (unchanged)"
  elif [ "$policy" = replace ]; then
    act "update $path ($mode $owner)" put_file "$src" "$dest" "$mode" "$owner"
  elif [ -e "$dest.dist" ] && cmp -s "$src" "$dest.dist"; then
    ok "$path (edited, kept; the shipped version is $path.dist)"
  else
    act "keep the edited $path; write the shipped version to $path.dist" \
      put_file "$src" "$dest.dist" "$mode" "$owner"
  fi
}

# render_unit NAME: the unit with the installed paths filled in, as a temp file.
render_unit() {
  sed -e "s|@AGENTLABD@|$bin_dest/agentlabd|g" -e "s|@CONFIG@|$config|g" -e "s|@SHARE@|$share_dir|g" \
    "$repo/scripts/systemd/$1" > "$tmp/$1"
  printf '%s\n' "$tmp/$1"
}

# --- steps ---------------------------------------------------------------------------------
step_group() {
  if getent group "$group" >/dev/null; then
    ok "group $group"
  else
    act "create system group $group" groupadd --system "$group"
  fi
}

step_dirs() {
  ensure_dir "$conf_dir" 0750 "root:$group"
  ensure_dir "$conf_dir/profiles" 0750 "root:$group"
  [ "$stage" = 1 ] && return
  ensure_dir "$conf_dir/secrets" 0750 "root:$group"
  ensure_dir "$conf_dir/keys" 0700 root:root
  ensure_dir "$data_dir" 0750 root:root
  ensure_dir "$data_dir/keys" 0700 root:root
}

step_config() {
  if [ "$state_only" = 1 ]; then
    # dpkg installed it (root:root); an edited one keeps its owner and mode.
    if [ -e "$root$config" ] && cmp -s "$repo/scripts/install/config.yaml" "$root$config"; then
      fix_attrs "$config" 0640 "root:$group"
      ok "$config (0640 root:$group)"
    fi
    return
  fi
  ensure_file "$repo/scripts/install/config.yaml" "$config" 0640 "root:$group" keep
}

step_profiles() {
  local src name
  for src in "$repo"/profiles/*.yaml; do
    name=$conf_dir/profiles/$(basename "$src")
    if [ "$state_only" = 1 ]; then
      if [ -e "$root$name" ] && cmp -s "$src" "$root$name"; then fix_attrs "$name" 0640 "root:$group"; fi
      continue
    fi
    ensure_file "$src" "$name" 0640 "root:$group" keep
  done
}

# The age identity that opens secrets bundles (secrets_age_key_path).
step_age_key() {
  local key=$conf_dir/keys/age.key
  if [ -e "$root$key" ]; then
    fix_attrs "$key" 0600 root:root
    ok "$key (kept)"
  else
    act "make the age identity $key (agentlabd secrets keygen)" make_age_key "$root$key"
  fi
}
make_age_key() {
  local recipient
  recipient=$("$bin_dir/agentlabd" secrets keygen --out "$1" 2>"$tmp/keygen.err") \
    || { cat "$tmp/keygen.err" >&2; return 1; }
  note "age recipient (seal bundles to it): $recipient"
}

# The daemon's SSH key pair (ssh_key_path), put into every sandbox.
step_ssh_key() {
  local key=$data_dir/keys/agentlab_id_ed25519
  if [ -e "$root$key" ]; then
    fix_attrs "$key" 0600 root:root
    ok "$key (kept)"
    if [ ! -e "$root$key.pub" ]; then
      act "write $key.pub from the private key" sh -c 'ssh-keygen -y -f "$1" > "$1.pub"' sh "$root$key"
    fi
  else
    act "make the daemon's SSH key pair $key (ssh-keygen -t ed25519)" \
      ssh-keygen -q -t ed25519 -N '' -C agentlab-daemon -f "$root$key"
  fi
}

step_binaries() {
  local name
  ensure_parent "$bin_dest"
  for name in "${binaries[@]}"; do
    ensure_file "$bin_dir/$name" "$bin_dest/$name" 0755 root:root replace
  done
}

step_units() {
  local unit
  ensure_parent "$unit_dir"
  for unit in "${units[@]}"; do
    ensure_file "$(render_unit "$unit")" "$unit_dir/$unit" 0644 root:root replace
  done
  if [ "$api_hardening" = 1 ]; then
    ensure_dir "$unit_dir/${dropin%/*}" 0755 root:root
    ensure_file "$repo/scripts/systemd/agentlabd-api-hardening.conf" "$unit_dir/$dropin" 0644 root:root replace
  fi
}

# Scripts (templates, network, this installer), the shipped profiles and the hardening
# notes, laid out as in the repository: the installed install_host.sh runs from there.
step_share() {
  local rel mode dir
  ensure_dir "$share_dir" 0755 root:root
  for dir in scripts scripts/install scripts/template scripts/net scripts/systemd profiles docs docs/explanation; do
    ensure_dir "$share_dir/$dir" 0755 root:root
  done
  # The globs are the repository's, wherever this runs from.
  local rels
  rels=$(cd "$repo" && printf '%s\n' scripts/install_host.sh scripts/create_template.sh scripts/install/* \
    scripts/template/* scripts/net/* scripts/systemd/* profiles/*.yaml docs/explanation/systemd-hardening.md)
  while IFS= read -r rel; do
    [ -f "$repo/$rel" ] || die "missing $repo/$rel (an incomplete checkout?)"
    mode=0644
    [ -x "$repo/$rel" ] && mode=0755
    ensure_file "$repo/$rel" "$share_dir/$rel" "$mode" root:root replace
  done <<< "$rels"
}

step_reload() {
  if [ "$live" = 1 ]; then
    act "systemctl daemon-reload" systemctl daemon-reload
  else
    ok "systemctl daemon-reload skipped (not installing to a running systemd)"
  fi
}

step_next() {
  if [ "$stage" = 0 ] && [ "$state_only" = 0 ]; then
    note "next: set proxmox_api_token (and proxmox_tls_fingerprint) in $config, then" \
      "systemctl enable --now agentlab-net.service agentlabd.service"
  fi
}

# --- uninstall -------------------------------------------------------------------------------
remove() {
  local path=$1
  if [ -e "$root$path" ] || [ -L "$root$path" ]; then
    act "remove $path" rm -rf "$root$path"
  fi
}

uninstall_all() {
  local name
  if [ "$live" = 1 ]; then
    for name in "${units[@]}"; do
      if [ -e "$unit_dir/$name" ]; then act "systemctl disable --now $name" systemctl disable --now "$name"; fi
    done
  fi
  for name in "${binaries[@]}"; do remove "$bin_dest/$name"; done
  for name in "${units[@]}"; do remove "$unit_dir/$name"; done
  remove "$unit_dir/$dropin"
  if [ -d "$root$unit_dir/${dropin%/*}" ] && [ -z "$(ls -A "$root$unit_dir/${dropin%/*}")" ]; then
    remove "$unit_dir/${dropin%/*}"
  fi
  remove "$share_dir"
  step_reload
  if [ "$purge" = 1 ]; then
    remove "$conf_dir"
    remove "$data_dir"
    note "group $group kept (files elsewhere may still be in it): groupdel $group"
  else
    note "kept $conf_dir (config, profiles, keys, secrets) and $data_dir (database, artifacts," \
      "SSH key); --uninstall --purge removes them"
  fi
}

# --- main ----------------------------------------------------------------------------------
[ "$apply" = 1 ] || note "preview: nothing is changed; run with --apply to act"
[ -z "$root" ] || note "installing into $root"
if [ "$uninstall" = 1 ]; then
  uninstall_all
  exit 0
fi
if [ "$(id -u)" != 0 ] && [ "$stage" = 0 ] && [ "$apply" = 1 ]; then
  die "run as root (files are given to root and group $group), or --stage for a package tree"
fi
# Every binary is there before anything is changed (the age key is made with agentlabd).
for name in "${binaries[@]}"; do
  [ "$state_only" = 1 ] && [ "$name" != agentlabd ] && continue
  [ "$keys" = 0 ] && [ "$state_only" = 1 ] && break
  [ -x "$bin_dir/$name" ] || die "$bin_dir/$name is missing: cargo build --release --workspace --bins (or --bin-dir DIR)"
done
[ "$stage" = 1 ] || step_group
step_dirs
step_config
step_profiles
if [ "$keys" = 1 ]; then
  step_age_key
  step_ssh_key
fi
if [ "$state_only" = 0 ]; then
  step_binaries
  step_units
  step_share
fi
[ "$stage" = 1 ] || step_reload
step_next
