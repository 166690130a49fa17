#!/bin/bash
# Prepare everything the kernel NVMe/TCP target needs: host packages (QEMU, busybox-static, cpio, kmod, iproute2)
# and a cache directory holding Debian's kernel image plus an initramfs with the nvmet modules and the guest scripts.
#
# Usage: integration/kernel/prepare.sh [CACHE_DIR]     (default: <repo>/.cache/kernel-target,
#                                                       or $NVMEOF_KERNEL_CACHE when set)
# Idempotent: packages are installed only when missing, and the cache is rebuilt only when one of its inputs
# (kernel package version, busybox version, guest scripts, this script) changed. Safe to run concurrently.
# On success the cache holds: vmlinuz, initramfs.cpio, kernel-version, stamp and the kernel .deb it came from.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${1:-${NVMEOF_KERNEL_CACHE:-$repo/.cache/kernel-target}}

log() { echo "prepare: $*" >&2; }
die() { echo "prepare: error: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt_updated=${NVMEOF_APT_UPDATED:-0}   # set to 1 by callers that just ran apt-get update
tmp_log=$(mktemp)
trap 'rm -f "$tmp_log"' EXIT
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >"$tmp_log" 2>&1 || { cat "$tmp_log" >&2; die "apt-get update failed"; }
    apt_updated=1
  fi
}

# ---- host packages -------------------------------------------------------------------------------------------
# command -> Debian package that provides it
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# busybox-static: a statically linked /bin/busybox with the nc applet (checked without pipes: pipefail + grep -q)
bb_applets=$(/bin/busybox --list 2>/dev/null || true)
bb_ldd=$(ldd /bin/busybox 2>&1 || true)
case $'\n'"$bb_applets"$'\n' in *$'\n'nc$'\n'*) ;; *) bb_applets= ;; esac
[ -n "$bb_applets" ] && [[ "$bb_ldd" == *"not a dynamic"* ]] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null && command -v modprobe >/dev/null || need+=(kmod)
command -v setpriv >/dev/null || need+=(util-linux)
command -v xz >/dev/null || need+=(xz-utils)
command -v ip >/dev/null || need+=(iproute2)   # in-netns.sh: network namespace and TAP device
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages (${need[*]}) and not root: install them with apt-get"
  apt_update
  log "apt-get install ${need[*]}"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >"$tmp_log" 2>&1 || {
    cat "$tmp_log" >&2; die "apt-get install ${need[*]} failed"; }
fi

# ---- which kernel ----------------------------------------------------------------------------------------------
# linux-image-amd64 is a metapackage depending on the current linux-image-<abi>-amd64 package: follow it.
resolve_kernel() {
  local pkg ver
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
  [ -n "$pkg" ] || return 1
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }') || true
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
  echo "$pkg=$ver"
}
cached_kernel=$(sed -n 's/^kernel //p' "$cache/stamp" 2>/dev/null || true)
if [ -n "$cached_kernel" ] && [ -z "$(find /var/lib/apt/lists -newer "$cache/stamp" -print -quit 2>/dev/null)" ]; then
  # apt-cache is slow without a package cache (container images disable it): when the apt lists have not
  # changed since the cache was last checked, the answer has not changed either.
  kernel_id=$cached_kernel
elif kernel_id=$(resolve_kernel); then
  :
elif [ -n "$cached_kernel" ]; then
  log "cannot resolve linux-image-amd64; reusing cached $cached_kernel"
  kernel_id=$cached_kernel
else
  [ "$(id -u)" = 0 ] || die "cannot resolve linux-image-amd64 (run apt-get update as root)"
  apt_update
  kernel_id=$(resolve_kernel) || die "cannot resolve linux-image-amd64 from the apt repositories"
fi

bb_version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || /bin/busybox 2>&1 | head -1)
inputs_hash=$(cat "$0" "$here"/guest/* | sha256sum | cut -c1-16)
stamp_text="kernel $kernel_id
busybox $bb_version
inputs $inputs_hash"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp_text" ] \
   && [ -s "$cache/vmlinuz" ] && [ -s "$cache/initramfs.cpio" ]; then
  touch "$cache/stamp"
  log "cache up to date: $cache ($kernel_id)"
  exit 0
fi

# ---- build -----------------------------------------------------------------------------------------------------
start=$(date +%s)
work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work" "$tmp_log"' EXIT

kpkg=${kernel_id%%=*}
kver_pkg=${kernel_id#*=}
# The kernel package is kept in the cache, so changes to the guest scripts only rebuild the initramfs.
deb=$(ls "$cache"/"$kpkg"_"${kver_pkg//:/%3a}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "downloading $kpkg ($kver_pkg)"
  (cd "$work" && apt-get download -qq "$kpkg=$kver_pkg" >"$tmp_log" 2>&1) || {
    cat "$tmp_log" >&2; die "apt-get download $kpkg=$kver_pkg failed"; }
  rm -f "$cache"/linux-image-*.deb
  mv "$work"/"$kpkg"_*.deb "$cache"/
  deb=$(ls "$cache"/"$kpkg"_*.deb | head -1)
fi
log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/k"
moddir=$(find "$work/k" -mindepth 3 -maxdepth 4 -type d -path '*/lib/modules/*' -name '[0-9]*' | head -1)
[ -n "$moddir" ] || die "no lib/modules/<version> in $kpkg"
kver=$(basename "$moddir")
kroot=${moddir%/lib/modules/*}
vmlinuz="$work/k/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "no /boot/vmlinuz-$kver in $kpkg"
depmod -b "$kroot" "$kver"

# Modules to load at boot, in this order (dependencies first, resolved by modprobe --show-depends).
# virtio_net: the guest NIC; configfs: nvmet's control plane; crc32c: NVMe/TCP header and data digests;
# nvmet/nvmet-tcp: the target; brd: RAM disks; loop: namespaces made by nvmet-ctl ns-add.
boot_modules=(virtio_pci virtio_net configfs crc32c_generic crc32c-intel nvmet nvmet-tcp brd loop)
# Shipped but not loaded (the guest can `modprobe` it): the kernel's own NVMe/TCP host, which lets a test check
# the target from inside the guest.
extra_modules=(nvme-tcp)
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,srv,run,root,lib/modules/"$kver"}
: >"$root/etc/modules.load"
: >"$work/copied"
# add_module NAME LOAD(0|1): copy NAME and its dependencies (decompressed) into the initramfs.
add_module() {
  local deps kind path rel
  deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$1" 2>&1) || die "modprobe --show-depends $1: $deps"
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue   # 'builtin <name>' needs nothing
    rel=${path#"$moddir"/}
    case "$rel" in *.ko.xz|*.ko.zst|*.ko.gz) dest=${rel%.*} ;; *) dest=$rel ;; esac
    if ! grep -qxF "$dest" "$work/copied"; then
      mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
      case "$rel" in
        *.ko.xz)  xz -dc "$path" >"$root/lib/modules/$kver/$dest" ;;
        *.ko.zst) command -v zstd >/dev/null || { apt_update; apt-get install -y -qq zstd >"$tmp_log" 2>&1; }
                  zstd -qdc "$path" >"$root/lib/modules/$kver/$dest" ;;
        *.ko.gz)  gzip -dc "$path" >"$root/lib/modules/$kver/$dest" ;;
        *)        cp "$path" "$root/lib/modules/$kver/$dest" ;;
      esac
      echo "$dest" >>"$work/copied"
    fi
    if [ "$2" = 1 ] && ! grep -qxF "$dest" "$root/etc/modules.load"; then
      echo "$dest" >>"$root/etc/modules.load"
    fi
  done <<<"$deps"
}
for m in "${boot_modules[@]}"; do add_module "$m" 1; done
for m in "${extra_modules[@]}"; do add_module "$m" 0; done
cp "$moddir"/modules.builtin "$moddir"/modules.builtin.modinfo "$moddir"/modules.order "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"
log "modules: $(sed 's#.*/##' "$root/etc/modules.load" | tr '\n' ' ')"

# busybox and its applets as symlinks
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
# PID 1 is busybox init, driven by our inittab; the setup script builds the nvmet topology.
rm -f "$root/init"
ln -s /bin/busybox "$root/init"
install -m 0644 "$here/guest/inittab" "$root/etc/inittab"
install -m 0755 "$here/guest/rcS" "$root/etc/rcS"
install -m 0755 "$here/guest/nvmet-setup.sh" "$root/etc/nvmet-setup.sh"
install -m 0755 "$here/guest/nvmet-ctl" "$root/bin/nvmet-ctl"
echo "$kver" >"$root/etc/kernel-version"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) >"$work/initramfs.cpio"

mv -f "$vmlinuz" "$cache/vmlinuz"
mv -f "$work/initramfs.cpio" "$cache/initramfs.cpio"
echo "$kver" >"$cache/kernel-version"
printf '%s\n' "$stamp_text" >"$cache/stamp"
log "built $cache (kernel $kver, initramfs $(( $(stat -c %s "$cache/initramfs.cpio") / 1024 )) KiB) in $(( $(date +%s) - start )) s"
