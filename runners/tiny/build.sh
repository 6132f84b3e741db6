#!/usr/bin/env bash
# Builds the "tiny" test runner image from Debian packages only:
#
#   vmlinuz     Debian's cloud kernel (resolved through linux-image-cloud-amd64)
#   initrd.img  busybox-static + qemu-ga + the virtio modules; /init never leaves the initramfs
#   base.qcow2  an empty 64 MiB qcow2 (read-only; jobs get an overlay and write to /dev/vda)
#
# into ${SMALLSCALE_IMAGE_DIR:-/var/lib/smallscale/images/tiny}, and writes the generated
# vm.xml and volume.xml next to this script. The guest boots under TCG (domain type 'qemu') and
# answers guest-ping a few seconds after `virsh create`.
#
# A second run with nothing changed takes a fraction of a second and touches nothing. The image is
# rebuilt when this script, the kernel package (name or version), qemu-guest-agent or
# busybox-static changes. base.qcow2 is only replaced if its content would differ, since job
# overlays may be backed by it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
image_dir=${SMALLSCALE_IMAGE_DIR:-/var/lib/smallscale/images/tiny}
cache_dir=${SMALLSCALE_CACHE_DIR:-/var/cache/smallscale}
case $image_dir in /*) ;; *) image_dir="$PWD/$image_dir" ;; esac
case $cache_dir in /*) ;; *) cache_dir="$PWD/$cache_dir" ;; esac

meta_pkg=linux-image-cloud-amd64
# Load order matters: each module only depends on the ones before it.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_console)
# cryptomgr.notests and the two blacklisted initcalls skip boot-time self-tests and kprobe-event
# setup that cost about 0.5 s under TCG; nothing in the guest needs them.
cmdline='console=ttyS0 quiet panic=-1 rdinit=/init cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_kprobe_trace'
base_size=67108864 # 64 MiB
busybox=/bin/busybox
qemu_ga=/usr/sbin/qemu-ga

die() {
  echo "tiny: error: $*" >&2
  exit 1
}

for tool in apt-cache apt-get dpkg dpkg-query qemu-img cpio gzip ldd flock sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' not found (run deploy/setup-host.sh)"
done
[ -x "$busybox" ] || die "$busybox not found (install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not statically linked (install busybox-static)"; fi
[ -x "$qemu_ga" ] || die "$qemu_ga not found (install qemu-guest-agent)"

mkdir -p "$image_dir" "$cache_dir"
exec 9>"$cache_dir/.tiny-build.lock"
flock 9

start=$EPOCHREALTIME
stamp="$image_dir/.stamp"

# Inputs that can be computed without apt-cache, which costs about 0.7 s per call here (the
# pkgcache is disabled on Docker-derived hosts). If none of them changed since the last build,
# including the apt lists, the kernel resolution cannot have changed either.
local_inputs="build.sh=$(sha256sum <"$self" | cut -d' ' -f1) $(dpkg-query -W -f='${Package}=${Version} ' qemu-guest-agent busybox-static 2>/dev/null)"
local_inputs=${local_inputs% }
lists_fp=$(stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null | sha256sum | cut -d' ' -f1)

stamp_line() { [ -f "$stamp" ] && sed -n "${1}p" "$stamp" || true; }
outputs_present() { [ -f "$image_dir/vmlinuz" ] && [ -f "$image_dir/initrd.img" ] && [ -f "$image_dir/base.qcow2" ]; }

resolve_kernel() {
  local show dep
  show=$(apt-cache show --no-all-versions "$meta_pkg" 2>/dev/null) ||
    die "package $meta_pkg not found (run apt-get update?)"
  # Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)
  dep=$(printf '%s\n' "$show" | sed -n 's/^Depends: *//p' | tr ',' '\n' | sed 's/^ *//' | grep -m1 '^linux-image-') ||
    die "$meta_pkg does not depend on a linux-image-* package"
  kernel_pkg=${dep%% *}
  kernel_ver=$(printf '%s\n' "$dep" | sed -n 's/.*(= *\([^)]*\)).*/\1/p')
  if [ -z "$kernel_ver" ]; then
    kernel_ver=$(apt-cache show --no-all-versions "$kernel_pkg" 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
  fi
  [ -n "$kernel_ver" ] || die "package $kernel_pkg (needed by $meta_pkg) not found (run apt-get update?)"
}

if outputs_present && [ "$(stamp_line 2)" = "$local_inputs" ] && [ "$(stamp_line 3)" = "apt-lists=$lists_fp" ]; then
  kernel_line=$(stamp_line 1)
  need_build=0
else
  resolve_kernel
  kernel_line="kernel=$kernel_pkg=$kernel_ver"
  if outputs_present && [ "$(stamp_line 1)" = "$kernel_line" ] && [ "$(stamp_line 2)" = "$local_inputs" ]; then
    need_build=0
    # Only the apt lists changed: remember them so the next run takes the fast path.
    printf '%s\n%s\n%s\n' "$kernel_line" "$local_inputs" "apt-lists=$lists_fp" >"$stamp.tmp"
    mv "$stamp.tmp" "$stamp"
  else
    need_build=1
  fi
fi

# Writes $2 to file $1 only when the content differs (keeps mtimes and inodes stable).
write_if_changed() {
  if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then return 1; fi
  printf '%s\n' "$2" >"$1.tmp"
  mv "$1.tmp" "$1"
}

build() {
  local deb root kdir kver m src dst lib
  deb="$cache_dir/${kernel_pkg}_${kernel_ver//:/%3a}_amd64.deb"
  if [ ! -f "$deb" ]; then
    (cd "$cache_dir" && apt-get download -qq -o APT::Sandbox::User=root "$kernel_pkg=$kernel_ver" >/dev/null) ||
      die "cannot download $kernel_pkg=$kernel_ver (run apt-get update?)"
    [ -f "$deb" ] || die "apt-get download did not produce $deb"
  fi

  work=$(mktemp -d "$cache_dir/tiny-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  dpkg -x "$deb" "$work/kernel"
  kdir=$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)
  [ -n "$kdir" ] || die "$deb contains no /lib/modules/<version>"
  kver=$(basename "$kdir")
  [ -f "$work/kernel/boot/vmlinuz-$kver" ] || die "$deb contains no /boot/vmlinuz-$kver"

  root="$work/root"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/modules,dev,proc,sys,tmp,run,var,etc,root}
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  ln -s ../run "$root/var/run"

  # busybox applets as symlinks (bin/sh included).
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list-full); do
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done

  # qemu-ga and every shared library it needs, at the paths ldd reports, plus the loader.
  cp "$qemu_ga" "$root/usr/sbin/qemu-ga"
  for lib in $(ldd "$qemu_ga" | grep -oE '/[^ ]+' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done

  # Modules, flattened into /lib/modules/<name>.ko and decompressed at build time (busybox
  # insmod does not reliably read compressed modules, and the kernel would need
  # CONFIG_MODULE_DECOMPRESS).
  for m in "${modules[@]}"; do
    src=$(find "$kdir" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) | head -n1)
    [ -n "$src" ] || die "module $m not found in $kernel_pkg"
    dst="$root/lib/modules/$m.ko"
    case $src in
    *.ko.xz) command -v xz >/dev/null || die "xz needed for $src"; xz -dc "$src" >"$dst" ;;
    *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $src"; zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
    *) cp "$src" "$dst" ;;
    esac
  done

  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf 'tiny\n' >"$root/etc/hostname"
  # The kernel opens /dev/console for init before /init can mount devtmpfs.
  if [ "$(id -u)" = 0 ]; then mknod -m 600 "$root/dev/console" c 5 1; fi

  cat >"$root/init" <<EOF
#!/bin/sh
# PID 1 of the tiny runner. Never exits.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /tmp /run /var/run
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
hostname tiny

for m in ${modules[*]}; do
  insmod /lib/modules/\$m.ko || echo "init: insmod \$m failed"
done

# No udev: create /dev/virtio-ports/<name> for every port. A port's name arrives shortly after
# its /dev/vportNpM, so poll until the agent port is named and no port is left unnamed.
link_ports() {
  all_named=1
  for p in /sys/class/virtio-ports/vport*; do
    [ -e "\$p/name" ] || continue
    name=
    read -r name <"\$p/name" || true
    if [ -z "\$name" ]; then all_named=0; continue; fi
    [ -e "/dev/virtio-ports/\$name" ] || ln -sf "../\${p##*/}" "/dev/virtio-ports/\$name"
  done
}
mkdir -p /dev/virtio-ports
i=0
while [ \$i -lt 200 ]; do # at most 10 s
  link_ports
  [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] && [ \$all_named = 1 ] && break
  usleep 50000
  i=\$((i + 1))
done
[ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] || echo "init: no org.qemu.guest_agent.0 port"
# Catch ports that show up late, for a while.
( i=0; while [ \$i -lt 60 ]; do usleep 500000; link_ports; i=\$((i + 1)); done ) &

# qemu-ga in the foreground, respawned if it ever exits. guest-exec without "env" inherits this
# environment.
while :; do
  qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -t /run -f /run/qemu-ga.pid
  echo "init: qemu-ga exited (\$?), restarting"
  rm -f /run/qemu-ga.pid
  sleep 1
done
EOF
  chmod 0755 "$root/init"

  (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) | gzip -9n >"$work/initrd.img"

  install -m 0644 "$work/kernel/boot/vmlinuz-$kver" "$image_dir/vmlinuz.tmp"
  mv "$image_dir/vmlinuz.tmp" "$image_dir/vmlinuz"
  install -m 0644 "$work/initrd.img" "$image_dir/initrd.img.tmp"
  mv "$image_dir/initrd.img.tmp" "$image_dir/initrd.img"

  # base.qcow2: replaced only if the existing one is missing or differs.
  qemu-img create -q -f qcow2 "$work/base.qcow2" "$base_size"
  if [ -f "$image_dir/base.qcow2" ] && cmp -s "$work/base.qcow2" "$image_dir/base.qcow2"; then
    chmod 0444 "$image_dir/base.qcow2"
  else
    chmod 0444 "$work/base.qcow2"
    mv -f "$work/base.qcow2" "$image_dir/base.qcow2"
  fi

  # Drop cached debs of other kernel versions.
  find "$cache_dir" -maxdepth 1 -name 'linux-image-*_amd64.deb' ! -name "$(basename "$deb")" -delete

  printf '%s\n%s\n%s\n' "kernel=$kernel_pkg=$kernel_ver" "$local_inputs" "apt-lists=$lists_fp" >"$stamp.tmp"
  mv "$stamp.tmp" "$stamp"
  initrd_kib=$(($(stat -c %s "$image_dir/initrd.img") / 1024))
}

if [ "$need_build" = 1 ]; then
  build
  kernel_line="kernel=$kernel_pkg=$kernel_ver"
fi

# Stable UUID derived from the image directory, so regenerating vm.xml changes nothing.
h=$(printf 'smallscale tiny %s' "$image_dir" | sha256sum)
uuid="${h:0:8}-${h:8:4}-5${h:13:3}-a${h:17:3}-${h:20:12}"

# vm.xml is in the format `virsh dumpxml` writes for a defined domain (libvirt 9.0, QEMU 7.2),
# except that machine='pc' is left unexpanded so it works with any QEMU version.
vm_xml="<domain type='qemu'>
  <name>tiny</name>
  <uuid>$uuid</uuid>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$image_dir/vmlinuz</kernel>
    <initrd>$image_dir/initrd.img</initrd>
    <cmdline>$cmdline</cmdline>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/transient-volume.qcow2'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='$image_dir/base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='none'/>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </controller>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
</domain>"

volume_xml="<volume>
  <name>transient-volume.qcow2</name>
  <capacity unit='bytes'>$base_size</capacity>
  <allocation>0</allocation>
  <target>
    <format type='qcow2'/>
  </target>
  <backingStore>
    <path>$image_dir/base.qcow2</path>
    <format type='qcow2'/>
  </backingStore>
</volume>"

xml_changed=
write_if_changed "$here/vm.xml" "$vm_xml" && xml_changed+=" vm.xml"
write_if_changed "$here/volume.xml" "$volume_xml" && xml_changed+=" volume.xml"

ms=$(((${EPOCHREALTIME//[.,]/} - ${start//[.,]/}) / 1000))
elapsed="$((ms / 1000)).$((ms % 1000 / 100))"
if [ "$need_build" = 1 ]; then
  echo "tiny: built ${kernel_line#kernel=} + initrd (${initrd_kib} KiB) + base.qcow2 in $image_dir (${elapsed}s)"
else
  echo "tiny: image in $image_dir is up to date (${kernel_line#kernel=})"
fi
if [ -n "$xml_changed" ]; then echo "tiny: wrote${xml_changed} in $here"; fi
