#!/usr/bin/env bash
# AgentLab quickstart without a Proxmox host: builds the binaries, starts the bundled
# Proxmox simulator (pve-sim, whose VMs run the real agent-runner as a local process),
# seals a secrets bundle with agentlabd's own age commands, starts agentlabd, makes a local
# git repository with an .agentlab/run.sh, runs a whole job with `agentlab job run --follow`,
# then downloads and lists its artifacts. On the way it changes the secret with
# `agentlab secrets set-env` (the value on stdin) and lists the bundles. Everything lives in a temp dir, removed at the end.
#
# Proxmox is SIMULATED here: nothing touches a real hypervisor. Needs cargo, git and tar.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -t 1 ]; then say() { printf '\n\033[1m>> %s\033[0m\n' "$*"; }; else say() { printf '\n>> %s\n' "$*"; }; fi

say "building agentlabd, agentlab, agent-runner and pve-sim (cargo build)"
cargo build --quiet --bins
bin=$PWD/target/debug

work=$(mktemp -d -t agentlab-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port: nothing answers on it.
# Below the kernel's ephemeral range (32768 and up by default): a port there can be free of
# listeners yet bound as the local end of an outgoing connection, and then bind fails.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$2"; }

token='root@pam!agentlab=11111111-2222-3333-4444-555555555555'
say "starting pve-sim, the bundled Proxmox VE simulator (its VMs run target/debug/agent-runner)"
"$bin/pve-sim" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --token "$token" \
  --latency-factor 0.05 --state-dir "$work/pve" --local-storage-path "$work/pve-local" \
  --ready-file "$work/pve.ready" --guest-command "$bin/agent-runner" --datacenter-firewall \
  --guest-env AGENTLAB_RETRY_BASE_MS=200 2>"$work/pve-sim.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/pve.ready" ] && break; sleep 0.1; done
[ -s "$work/pve.ready" ] || { cat "$work/pve-sim.log"; echo "pve-sim did not start"; exit 1; }
api=$(json_field api "$work/pve.ready")
fingerprint=$(json_field fingerprint "$work/pve.ready")
echo "simulated Proxmox API at $api (certificate pinned by fingerprint)"

say "creating the daemon's age key and sealing a secrets bundle with it (agentlabd secrets keygen/seal)"
mkdir -p "$work/keys" "$work/secrets"
"$bin/agentlabd" secrets keygen --out "$work/keys/age.key"
cat > "$work/bundle.yaml" <<'BUNDLE'
version: 1
env:
  DEMO_API_KEY: "demo-secret-0123456789"
BUNDLE
"$bin/agentlabd" secrets seal --key "$work/keys/age.key" --in "$work/bundle.yaml" --out "$work/secrets/default.age"
rm "$work/bundle.yaml"

say "writing the daemon config (guest listener on loopback, where the simulated guests live; host ruleset off)"
bootstrap_port=$(free_port)
artifact_port=$(free_port)
while [ "$artifact_port" = "$bootstrap_port" ]; do artifact_port=$(free_port); done
mkdir -p "$work/profiles"
cp profiles/defaults.yaml "$work/profiles/"
cat > "$work/config.yaml" <<CONFIG
profiles_dir: $work/profiles
data_dir: $work/data
run_dir: $work/run
snippets_dir: $work/pve-local/snippets
host_node: pve1
proxmox_api_url: $api
proxmox_api_token: $token
proxmox_tls_fingerprint: $fingerprint
provisioning_timeout: 60s
agent_subnet: 127.0.0.0/8
bootstrap_listen: 127.0.0.1:$bootstrap_port
artifact_listen: 127.0.0.1:$artifact_port
secrets_dir: $work/secrets
secrets_age_key_path: $work/keys/age.key
# The simulated guests live on loopback: no agent bridge to put a host ruleset on; the
# simulated Proxmox firewall (on) is the isolation layer.
host_ruleset: off
CONFIG
chmod 600 "$work/config.yaml"

say "starting agentlabd --config $work/config.yaml"
"$bin/agentlabd" --config "$work/config.yaml" 2>"$work/agentlabd.log" &
pids+=($!)
sock="$work/run/agentlabd.sock"
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/agentlabd.log"; echo "agentlabd did not start"; exit 1; }
cli() { echo "\$ agentlab $*"; "$bin/agentlab" --socket "$sock" "$@"; }
cli secrets validate
say "changing a secret through the daemon: the value on stdin, never on the command line"
printf %s "demo-secret-set-through-stdin" | cli secrets set-env default DEMO_API_KEY
cli secrets list

say "making a git repository whose .agentlab/run.sh is the 'agent'"
repo="$work/repo"
mkdir -p "$repo/.agentlab"
cat > "$repo/.agentlab/run.sh" <<'AGENT'
#!/bin/sh
set -e
echo "agent: working on: $AGENTLAB_TASK"
echo "agent: my API key is $DEMO_API_KEY (the runner and the daemon redact it)"
mkdir -p "$AGENTLAB_RUN_DIR/artifacts"
git -C "$AGENTLAB_REPO_DIR" log --oneline > "$AGENTLAB_RUN_DIR/artifacts/history.txt"
echo "agent: done"
AGENT
chmod +x "$repo/.agentlab/run.sh"
git -C "$repo" -c init.defaultBranch=main init -q
git -C "$repo" add -A
git -C "$repo" -c user.email=demo@agentlab.invalid -c user.name=demo commit -q -m "demo repository"

say "running a job: a fresh sandbox VM, the agent, redacted logs, artifacts, report"
echo "\$ agentlab job run --repo $repo --task 'list the history' --profile yolo-ephemeral --agent custom --follow"
set +e
"$bin/agentlab" --socket "$sock" job run --repo "$repo" --task "list the history" \
  --profile yolo-ephemeral --agent custom --ttl 10 --follow 2>&1 | tee "$work/follow.log"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "the job did not complete; daemon log:"; tail -30 "$work/agentlabd.log"; exit 1; }
job=$(grep -o 'job_[0-9a-f]\{16\}' "$work/follow.log" | head -1)

say "the job, its timeline and its artifacts"
cli job show "$job" --events-tail 0
cli job artifacts "$job"
cli job artifacts download "$job" --bundle --out "$work/artifacts.tar.gz"
echo "\$ tar -tzvf artifacts.tar.gz"
tar -tzvf "$work/artifacts.tar.gz"
if grep -rqE "demo-secret-0123456789|demo-secret-set-through-stdin" "$work/follow.log" "$work/data"; then
  echo "the secret leaked"; exit 1
fi
echo "the bundle's secret appears nowhere in the output or the daemon's data"

say "done: job $job COMPLETED against the simulated Proxmox; cleaning up"
