#!/usr/bin/env bash
# The agent bridge: a Linux bridge with no physical port, the gateway address, IP forwarding,
# and a DHCP + DNS service for the agent subnet (dnsmasq, forwarding DNS to the host's own
# resolvers), which the Go version left to the operator. Idempotent; without --apply it only
# prints what it would write.
#
#   scripts/net/setup_vmbr1.sh                      # preview
#   scripts/net/setup_vmbr1.sh --apply              # write the files, bring it all up
#   options: --bridge vmbr1 --gateway 10.77.0.1 --prefix 16
#            --dhcp-range 10.77.0.100,10.77.255.250 --lease 12h
#            --root DIR (write under DIR, for packaging and tests) --no-activate
set -euo pipefail

bridge=vmbr1 gateway=10.77.0.1 prefix=16 range=10.77.0.100,10.77.255.250 lease=12h
root='' apply=0 activate=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bridge) bridge=$2; shift 2 ;;
    --gateway) gateway=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --dhcp-range) range=$2; shift 2 ;;
    --lease) lease=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --apply) apply=1; shift ;;
    --no-activate) activate=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup_vmbr1.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $bridge =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || { echo "setup_vmbr1.sh: bad --bridge $bridge" >&2; exit 2; }
[[ $gateway =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || { echo "setup_vmbr1.sh: bad --gateway $gateway" >&2; exit 2; }
[[ $prefix =~ ^[0-9]{1,2}$ ]] && [ "$prefix" -ge 8 ] && [ "$prefix" -le 30 ] || { echo "setup_vmbr1.sh: bad --prefix $prefix" >&2; exit 2; }
[[ $range =~ ^[0-9.]+,[0-9.]+$ ]] || { echo "setup_vmbr1.sh: bad --dhcp-range $range" >&2; exit 2; }

# The dotted netmask of a prefix length (16 → 255.255.0.0).
mask() {
  local p=$1 out=() i b
  for i in 1 2 3 4; do
    if [ "$p" -ge 8 ]; then b=8; elif [ "$p" -gt 0 ]; then b=$p; else b=0; fi
    out+=($(( (0xff00 >> b) & 0xff )))
    p=$(( p - 8 ))
  done
  local IFS=.
  echo "${out[*]}"
}

interfaces="$root/etc/network/interfaces.d/agentlab-$bridge"
sysctl_conf="$root/etc/sysctl.d/90-agentlab.conf"
dnsmasq_conf="$root/etc/agentlab/dnsmasq-$bridge.conf"
dnsmasq_unit="$root/etc/systemd/system/agentlab-dnsmasq@.service"
leases="$root/var/lib/agentlab/dnsmasq-$bridge.leases"

interfaces_text="# Written by AgentLab scripts/net/setup_vmbr1.sh: the agent bridge (no physical port).
auto $bridge
iface $bridge inet static
	address $gateway/$prefix
	bridge-ports none
	bridge-stp off
	bridge-fd 0
"
sysctl_text="# Written by AgentLab scripts/net/setup_vmbr1.sh: sandboxes reach the Internet through NAT.
net.ipv4.ip_forward = 1
"
# DHCP hands out the gateway as router and DNS server; DNS is forwarded to the host's own
# resolvers (resolv.conf), so guests never need to reach a LAN resolver (review F8).
dnsmasq_text="# Written by AgentLab scripts/net/setup_vmbr1.sh: DHCP and DNS for sandboxes on $bridge only.
interface=$bridge
bind-dynamic
except-interface=lo
dhcp-range=$range,$(mask "$prefix"),$lease
dhcp-option=option:router,$gateway
dhcp-option=option:dns-server,$gateway
dhcp-authoritative
dhcp-leasefile=$leases
domain-needed
bogus-priv
no-hosts
"
unit_text="# Written by AgentLab scripts/net/setup_vmbr1.sh: one dnsmasq per agent bridge, separate
# from any other dnsmasq on the host (Proxmox SDN runs its own).
[Unit]
Description=AgentLab DHCP and DNS on %i
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/etc/agentlab/dnsmasq-%i.conf --pid-file=/run/agentlab-dnsmasq-%i.pid
Restart=on-failure

[Install]
WantedBy=multi-user.target
"

# Writes $2 to $1 unless it already holds exactly that; says which.
write() {
  local path=$1 text=$2
  if [ -f "$path" ] && [ "$(cat "$path")" = "$(printf '%s' "$text")" ]; then
    echo "unchanged $path"
    return
  fi
  if [ "$apply" = 1 ]; then
    mkdir -p "$(dirname "$path")"
    printf '%s' "$text" > "$path"
    echo "wrote     $path"
  else
    echo "would write $path:"
    printf '%s' "$text" | sed 's/^/    /'
  fi
}

write "$interfaces" "$interfaces_text"
write "$sysctl_conf" "$sysctl_text"
write "$dnsmasq_conf" "$dnsmasq_text"
write "$dnsmasq_unit" "$unit_text"
if [ "$apply" = 0 ]; then
  echo "# preview only: run with --apply to write these and bring $bridge up" >&2
  exit 0
fi
mkdir -p "$(dirname "$leases")"
if [ "$activate" = 1 ] && [ -z "$root" ]; then
  command -v dnsmasq >/dev/null || { echo "setup_vmbr1.sh: install dnsmasq-base (apt install dnsmasq-base)" >&2; exit 1; }
  sysctl -q -p "$sysctl_conf"
  ifreload -a 2>/dev/null || ifup "$bridge"
  systemctl daemon-reload
  systemctl enable --now "agentlab-dnsmasq@$bridge.service"
  echo "$bridge is up at $gateway/$prefix with DHCP and DNS; next: scripts/net/apply.sh --apply"
fi
