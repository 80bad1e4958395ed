#!/usr/bin/env bash
# Lets tailnet devices reach sandboxes (SSH, exposures) through this host: advertises the
# agent subnet as a Tailscale subnet route. Sandboxes still cannot reach the tailnet: the
# host ruleset drops 100.64.0.0/10 from them, and only SSH (port 22) may come in from the
# interfaces named in `ssh_ingress_interfaces` (add `tailscale0` to the config). Without
# --apply it prints what it would do.
#
#   scripts/net/setup_tailscale_router.sh [--subnet 10.77.0.0/16] [--apply]
# Then approve the route in the Tailscale admin console, and on clients:
#   tailscale up --accept-routes
set -euo pipefail

subnet=10.77.0.0/16 apply=0 tailscale=${TAILSCALE:-tailscale}
while [ $# -gt 0 ]; do
  case "$1" in
    --subnet) subnet=$2; shift 2 ;;
    --apply) apply=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup_tailscale_router.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $subnet =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || { echo "setup_tailscale_router.sh: bad --subnet $subnet" >&2; exit 2; }

steps=(
  "sysctl -q -w net.ipv4.ip_forward=1"
  "$tailscale set --advertise-routes=$subnet"
)
# `tailscale set --advertise-routes` replaces the routes this node advertises.
echo "note: this replaces the routes this node advertises; to keep others, give them all: --subnet is one route, so run"
echo "      $tailscale set --advertise-routes=<yours>,$subnet yourself instead"
if [ "$apply" = 0 ]; then
  printf 'would run: %s\n' "${steps[@]}"
  echo "and add to /etc/agentlab/config.yaml:  ssh_ingress_interfaces: [tailscale0]" 
  echo "# preview only: run with --apply" >&2
  exit 0
fi
command -v "$tailscale" >/dev/null || { echo "setup_tailscale_router.sh: install Tailscale first (https://tailscale.com/download/linux)" >&2; exit 1; }
for step in "${steps[@]}"; do echo "+ $step"; $step; done
echo "advertised $subnet; approve it in the admin console, add ssh_ingress_interfaces: [tailscale0] to the config,"
echo "then: systemctl restart agentlabd (it re-loads the ruleset)"
