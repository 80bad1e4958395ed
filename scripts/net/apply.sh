#!/usr/bin/env bash
# The host nftables ruleset that keeps sandboxes off the LAN, the host and the tailnet: a thin
# wrapper around `agentlabd net`. Without --apply it only prints the ruleset (and asks the
# kernel whether it would load it, when run as root).
#
#   scripts/net/apply.sh [--config /etc/agentlab/config.yaml]            # preview
#   scripts/net/apply.sh --apply [--config …]                            # load it now
#   scripts/net/apply.sh --apply --enable-at-boot                        # and at every boot
set -euo pipefail

config=/etc/agentlab/config.yaml
apply=0
at_boot=0
agentlabd=${AGENTLABD:-$(command -v agentlabd || echo /usr/local/bin/agentlabd)}
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --apply) apply=1; shift ;;
    --enable-at-boot) at_boot=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "apply.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$agentlabd" ] || { echo "apply.sh: agentlabd not found (set AGENTLABD=/path/to/agentlabd)" >&2; exit 1; }

if [ "$apply" = 0 ]; then
  "$agentlabd" --config "$config" net render
  if [ "$(id -u)" = 0 ]; then
    "$agentlabd" --config "$config" net check
  fi
  echo "# preview only: run with --apply to load it" >&2
  exit 0
fi

"$agentlabd" --config "$config" net apply
if [ "$at_boot" = 1 ]; then
  # install_host.sh and the .deb install the unit already; otherwise it is written here.
  installed=""
  for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    [ -e "$dir/agentlab-net.service" ] && { installed="$dir/agentlab-net.service"; break; }
  done
  if [ -z "$installed" ]; then
    installed=/etc/systemd/system/agentlab-net.service
    sed -e "s|@AGENTLABD@|$agentlabd|g" -e "s|@CONFIG@|$config|g" \
      "$(dirname "$0")/../systemd/agentlab-net.service" > "$installed"
    systemctl daemon-reload
  fi
  systemctl enable agentlab-net.service
  echo "apply.sh: $installed enabled: the ruleset is loaded at every boot, before agentlabd" >&2
fi
