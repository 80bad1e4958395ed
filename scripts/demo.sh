#!/usr/bin/env bash
# AgentLab demo: builds the binaries, starts agentlabd on a throw-away config in a temp
# directory and shows what the operator CLI sees. No Proxmox host is contacted: the config
# points at a closed local port, so `status` shows Proxmox unreachable and why.
# Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -t 1 ]; then say() { printf '\n\033[1m>> %s\033[0m\n' "$*"; }; else say() { printf '\n>> %s\n' "$*"; }; fi

say "building agentlabd, agentlab and agent-runner (cargo build)"
cargo build --quiet --bins
bin=target/debug

work=$(mktemp -d -t agentlab-demo.XXXXXX)
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "writing a config in $work (mode 0600: it holds the Proxmox token)"
mkdir -p "$work/profiles"
cp profiles/defaults.yaml "$work/profiles/"
cat > "$work/config.yaml" <<CONFIG
profiles_dir: $work/profiles
data_dir: $work/data
run_dir: $work/run
proxmox_api_url: https://127.0.0.1:9
proxmox_api_token: root@pam!agentlab=00000000-0000-0000-0000-000000000000
proxmox_tls_insecure: true
CONFIG
chmod 600 "$work/config.yaml"

say "starting agentlabd --config $work/config.yaml"
"$bin/agentlabd" --config "$work/config.yaml" 2>"$work/agentlabd.log" &
daemon_pid=$!
sock="$work/run/agentlabd.sock"
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/agentlabd.log"; echo "agentlabd did not start"; exit 1; }

cli() { echo "\$ agentlab $*"; "$bin/agentlab" --socket "$sock" "$@"; }
say "the daemon's view"
cli status
say "shipped profiles"
cli profile list
say "sandboxes (none yet)"
cli sandbox list
say "the live actor tree"
cli debug actors

say "stopping agentlabd (SIGTERM: graceful)"
kill -TERM "$daemon_pid"; wait "$daemon_pid"; daemon_pid=""
[ ! -e "$sock" ] && echo "socket removed; daemon stopped cleanly"
