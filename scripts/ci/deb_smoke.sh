#!/usr/bin/env bash
# CI: builds the .deb from the test build's binaries, installs it on this machine with
# dpkg -i, checks what it installed (binaries run, units verify, owners and modes, keys),
# then purges it and checks that nothing of it is left. Needs root and dpkg; destroys any
# agentlab package already installed here, so it is for throw-away machines.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "deb_smoke: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
command -v dpkg >/dev/null || fail "needs dpkg"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
deb=$(bash scripts/package_deb.sh --bin-dir target/debug --out "$out" --compress none)
echo "built $deb ($(du -h "$deb" | cut -f1))"
dpkg -i "$deb"
dpkg-query -W -f '${Status}\n' agentlab | grep -q 'install ok installed' || fail "not installed"

agentlabd --version | grep -q "^agentlabd " || fail "agentlabd --version"
agentlab version >/dev/null || fail "agentlab version"
agent-runner --help >/dev/null || fail "agent-runner --help"
for unit in agentlabd.service agentlab-net.service; do
  [ -f "/lib/systemd/system/$unit" ] || fail "no /lib/systemd/system/$unit"
done
grep -q '^ExecStart=/usr/bin/agentlabd --config /etc/agentlab/config.yaml$' /lib/systemd/system/agentlabd.service \
  || fail "agentlabd.service does not start /usr/bin/agentlabd"
if command -v systemd-analyze >/dev/null; then
  said=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
    /lib/systemd/system/agentlabd.service /lib/systemd/system/agentlab-net.service 2>&1) \
    || fail "systemd-analyze verify: $said"
  [ -z "$said" ] || fail "systemd-analyze verify said: $said"
else
  fail "systemd-analyze missing (apt-get install systemd)"
fi
check_mode() { # PATH MODE OWNER
  local got
  got="$(stat -c '%a %U:%G' "$1")"
  [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
}
check_mode /etc/agentlab 750 root:agentlab
check_mode /etc/agentlab/config.yaml 640 root:agentlab
check_mode /etc/agentlab/keys 700 root:root
check_mode /etc/agentlab/keys/age.key 600 root:root
check_mode /var/lib/agentlab 750 root:root
check_mode /var/lib/agentlab/keys/agentlab_id_ed25519 600 root:root
man -w agentlab >/dev/null 2>&1 || [ -f /usr/share/man/man1/agentlab.1.gz ] || fail "no man page"
# The shipped config, with a token filled in, is one the daemon accepts.
sed 's|^# proxmox_api_token:.*|proxmox_api_token: agentlab@pve!agentlab=00000000-0000-0000-0000-000000000000|' \
  /etc/agentlab/config.yaml > "$out/config.yaml"
chmod 600 "$out/config.yaml"
agentlabd --config "$out/config.yaml" net render >/dev/null || fail "the packaged config is refused"

# Reinstalling (an upgrade to the same version) keeps the keys.
key_before=$(sha256sum /etc/agentlab/keys/age.key)
dpkg -i "$deb" >/dev/null
[ "$(sha256sum /etc/agentlab/keys/age.key)" = "$key_before" ] || fail "a reinstall replaced the age key"

files=$(dpkg -L agentlab)
dpkg --purge agentlab
if dpkg-query -W agentlab >/dev/null 2>&1 && dpkg-query -W -f '${Status}' agentlab | grep -q installed; then
  fail "still installed after purge"
fi
left=""
while IFS= read -r path; do
  [ -f "$path" ] && left="$left $path"
done <<< "$files"
[ -z "$left" ] || fail "left after purge:$left"
for dir in /etc/agentlab /var/lib/agentlab /usr/share/agentlab; do
  [ ! -e "$dir" ] || fail "$dir left after purge"
done
echo "deb_smoke: built, installed, checked and purged $(basename "$deb")"
