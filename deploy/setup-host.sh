#!/usr/bin/env bash
# Prepares a Debian 12 host for smallscale: packages, libvirt configuration, daemons.
# Idempotent: a second run changes nothing and takes about a second.
#
#   deploy/setup-host.sh            # dev and CI hosts (QEMU runs as root, see below)
#   SMALLSCALE_QEMU_AS_ROOT=0 deploy/setup-host.sh   # keep Debian's libvirt-qemu user
#
# Why QEMU as root on test hosts: with libvirt's default user "libvirt-qemu" and a /dev/kvm that
# user cannot open, libvirt re-probes QEMU on every domain start (about 80 s each).
set -euo pipefail

packages=(libvirt-daemon-system libvirt-dev qemu-system-x86 qemu-utils qemu-guest-agent
  busybox-static cpio e2fsprogs make gcc pkg-config)

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

conf=/etc/libvirt/qemu.conf
changed=0
if [ "${SMALLSCALE_QEMU_AS_ROOT:-1}" = 1 ]; then
  for key in user group; do
    if ! grep -qE "^${key} = \"root\"" "$conf"; then
      sed -i -E "/^#?${key} = /d" "$conf"
      echo "${key} = \"root\"" >>"$conf"
      changed=1
    fi
  done
fi

mkdir -p /var/lib/smallscale /run/smallscale

if [ -d /run/systemd/system ]; then
  [ "$changed" = 1 ] && systemctl restart libvirtd
  systemctl enable --now virtlogd libvirtd >/dev/null 2>&1
else
  if [ "$changed" = 1 ] && pgrep -x libvirtd >/dev/null; then
    pkill -x libvirtd
    for _ in $(seq 100); do pgrep -x libvirtd >/dev/null || break; sleep 0.1; done
  fi
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
fi

# Wait until libvirtd answers (it takes a moment after a fresh start).
for _ in $(seq 150); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "setup-host: libvirtd does not answer on qemu:///system" >&2
exit 1
