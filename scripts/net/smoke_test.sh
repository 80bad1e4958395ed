#!/usr/bin/env bash
# Checks a sandbox's network from inside it: the guest listener and the Internet are
# reachable; the LAN, the host's other ports and the tailnet are not; DNS is the gateway.
#
#   scripts/net/smoke_test.sh VMID [--ssh-user U] [checks…]  # from the host: runs itself in
#                                                # the sandbox over `agentlab ssh VMID --exec`
#   scripts/net/smoke_test.sh --local [checks…]  # inside a guest
# checks (defaults in brackets):
#   --gateway IP [10.77.0.1]   --listener PORT [8844]   --wan HOST:PORT [1.1.1.1:443]
#   --lan HOST:PORT [192.168.1.1:80]  (give a LAN host that answers, or the check proves little)
#   --tailnet HOST:PORT [100.100.100.100:80]   --host-port PORT [22] (a host port guests must not reach)
#   --name NAME [deb.debian.org] (resolved through the gateway)   --skip-dns
# Prints PASS/FAIL per check; exits 1 if any failed.
set -uo pipefail

if [ "${1:-}" != --local ]; then
  [ $# -ge 1 ] || { sed -n '2,14p' "$0"; exit 2; }
  vmid=$1; shift
  user=()
  if [ "${1:-}" = --ssh-user ]; then user=(--user "$2"); shift 2; fi
  for a in "$@"; do
    [[ $a =~ ^[A-Za-z0-9._:/-]+$ ]] || { echo "smoke_test.sh: argument '$a' is not a plain word" >&2; exit 2; }
  done
  exec "${AGENTLAB:-agentlab}" ssh "$vmid" "${user[@]}" --wait --exec "bash -s -- --local $*" < "$0"
fi
shift

gateway=10.77.0.1 listener=8844 wan=1.1.1.1:443 lan=192.168.1.1:80 tailnet=100.100.100.100:80
host_port=22 name=deb.debian.org skip_dns=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gateway) gateway=$2; shift 2 ;;
    --listener) listener=$2; shift 2 ;;
    --wan) wan=$2; shift 2 ;;
    --lan) lan=$2; shift 2 ;;
    --tailnet) tailnet=$2; shift 2 ;;
    --host-port) host_port=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --skip-dns) skip_dns=1; shift ;;
    *) echo "smoke_test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

failed=0
# A TCP connection within 3 s.
connects() { timeout 3 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }
check() {
  local what=$1 want=$2 target=$3 got
  if connects "$target"; then got=reached; else got=blocked; fi
  if [ "$got" = "$want" ]; then echo "PASS $what ($target) $got"; else echo "FAIL $what ($target) $got, expected $want"; failed=1; fi
}

check "guest listener" reached "$gateway:$listener"
check "internet through NAT" reached "$wan"
check "LAN" blocked "$lan"
check "host port" blocked "$gateway:$host_port"
check "tailnet" blocked "$tailnet"
if [ "$skip_dns" = 0 ]; then
  if grep -q "^nameserver $gateway\$" /etc/resolv.conf; then echo "PASS resolver is the gateway"; else echo "FAIL resolver is not $gateway: $(grep ^nameserver /etc/resolv.conf | tr '\n' ' ')"; failed=1; fi
  if getent hosts "$name" >/dev/null; then echo "PASS DNS resolves $name"; else echo "FAIL DNS cannot resolve $name"; failed=1; fi
fi
exit $failed
