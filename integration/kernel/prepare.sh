#!/bin/bash
# Prepare everything the kernel NVMe/TCP targets need: host packages (QEMU, busybox-static, cpio, kmod, iproute2)
# and, for each of the two kernels the tests boot, a cache directory holding the kernel image plus an initramfs with
# the nvmet modules and the guest scripts:
#   CACHE_DIR            Debian's own linux-image-amd64 (Debian 12: Linux 6.1), from the machine's apt sources
#   CACHE_DIR/backports  the newest linux-image-amd64 of Debian trixie-backports (Linux 7.x), fetched with
#                        `apt-get download` through a private apt state kept in CACHE_DIR/backports/apt (a sources
#                        list of its own on the Debian mirror the machine already uses; the machine's apt
#                        configuration and lists are left as they are)
#
# Usage: integration/kernel/prepare.sh [CACHE_DIR]     (default: <repo>/.cache/kernel-target,
#                                                       or $NVMEOF_KERNEL_CACHE when set)
#        NVMEOF_KERNELS="debian backports" (default) selects which caches to build.
# Idempotent: packages are installed only when missing, and a cache is rebuilt only when one of its inputs
# (kernel package version, busybox version, guest scripts, this script) changed. Safe to run concurrently.
# On success each cache holds: vmlinuz, initramfs.cpio, kernel-version, stamp and the kernel .deb(s) it came from.
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
# NBD clients for the nvmeof nbd tests (unit suite and integration/kernel/nbd.test.ts); certtool/psktool for TLS
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
/usr/bin/python3 -c 'import nbd' 2>/dev/null || need+=(python3-libnbd)
command -v certtool >/dev/null || need+=(gnutls-bin)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages (${need[*]}) and not root: install them with apt-get"
  apt_update
  log "apt-get install ${need[*]}"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >"$tmp_log" 2>&1 || {
    cat "$tmp_log" >&2; die "apt-get install ${need[*]} failed"; }
fi
# promtool (the serve tests check /metrics with it): only that binary from Debian's prometheus package, so no
# Prometheus server is installed or started on the machine.
if ! command -v promtool >/dev/null; then
  [ "$(id -u)" = 0 ] || die "promtool is missing and not root: install Debian's prometheus package"
  apt_update
  log "promtool from Debian's prometheus package"
  pdir=$(mktemp -d)
  (cd "$pdir" && apt-get download -qq prometheus >"$tmp_log" 2>&1) || { cat "$tmp_log" >&2; rm -rf "$pdir"; die "apt-get download prometheus failed"; }
  dpkg-deb --fsys-tarfile "$pdir"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$pdir/promtool" ||
    { rm -rf "$pdir"; die "no usr/bin/promtool in Debian's prometheus package"; }
  install -m 755 "$pdir/promtool" /usr/local/bin/promtool
  rm -rf "$pdir"
  promtool --version >/dev/null 2>&1 || die "promtool from the prometheus package does not run"
fi

# ---- apt access ------------------------------------------------------------------------------------------------
# apt_opts: the apt options of the kernel being prepared (empty: the machine's apt state).
apt_opts=()

# The Debian mirror the machine's apt already uses (first http(s) URI of a Debian suite), for the private state.
debian_mirror() {
  local m
  m=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null \
      | grep -m1 -E '^https?://[^ ]*/debian/?$' || true)
  [ -n "$m" ] || m=http://deb.debian.org/debian/
  echo "${m%/}"
}

# backports_apt DIR: set apt_opts to a private apt state in DIR for trixie-backports (preferred) and trixie (the
# user-space TLS handshake daemon and its libraries for the guest), refreshing its package lists when they are
# missing or older than the machine's (someone ran apt-get update since). Without network (inside the test network
# namespace) a refresh fails quietly and the lists already there are used.
backports_apt() {
  local dir=$1
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  apt_opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Dir::Cache::pkgcache=
            -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root -o APT::Default-Release=trixie-backports
            -o Dir::State::status=/dev/null)
  local line mirror
  mirror=$(debian_mirror)
  line="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main"
  [ "$(cat "$dir/sources.list" 2>/dev/null)" = "$line" ] || { echo "$line" >"$dir/sources.list"; rm -f "$dir/updated"; }
  if [ ! -f "$dir/updated" ] || [ -n "$(find /var/lib/apt/lists -maxdepth 1 -newer "$dir/updated" -print -quit 2>/dev/null)" ]; then
    log "apt-get update (private state for trixie-backports)"
    if apt-get "${apt_opts[@]}" update -qq >"$tmp_log" 2>&1; then
      touch "$dir/updated"
    elif [ -f "$dir/updated" ]; then
      log "private apt-get update failed; using the package lists from $(date -r "$dir/updated" '+%F %T')"
    else
      cat "$tmp_log" >&2; die "apt-get update for trixie-backports failed"
    fi
  fi
}

# ---- which kernel ----------------------------------------------------------------------------------------------
# linux-image-amd64 is a metapackage depending on the current linux-image-<abi>-amd64 package: follow it.
resolve_kernel() {
  local pkg ver
  pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
  [ -n "$pkg" ] || return 1
  ver=$(apt-cache "${apt_opts[@]}" policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }') || true
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
  echo "$pkg=$ver"
}
# The packages holding the files of kernel package PKG=VER: PKG itself and, where the packaging splits them out
# (Linux 7.x: linux-binary-<abi> has the image, linux-modules-<abi> the modules), its linux-binary-*/linux-modules-*
# dependencies.
kernel_packages() {
  echo "$1"
  apt-cache "${apt_opts[@]}" depends "$1" 2>/dev/null \
    | awk -v v="${1#*=}" '$1 == "Depends:" && $2 ~ /^linux-(binary|modules)-[0-9]/ { print $2 "=" v }' | sort -u
}

bb_version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || /bin/busybox 2>&1 | head -1)
inputs_hash=$(cat "$0" "$here"/guest/* | sha256sum | cut -c1-16)

# build_cache KIND DIR (run in a subshell): KIND debian = the machine's linux-image-amd64, backports = trixie-backports.
build_cache() {
  local kind=$1 cache=$2 stamp_text kernel_id cached_kernel lists
  mkdir -p "$cache"
  if [ "$kind" = backports ]; then
    backports_apt "$cache/apt"
    lists=$cache/apt/lists
  else
    apt_opts=()
    lists=/var/lib/apt/lists
  fi
  cached_kernel=$(sed -n 's/^kernel //p' "$cache/stamp" 2>/dev/null || true)
  if [ -n "$cached_kernel" ] && [ -z "$(find "$lists" -maxdepth 1 -newer "$cache/stamp" -print -quit 2>/dev/null)" ]; then
    # apt-cache is slow without a package cache (container images disable it): when the apt lists have not
    # changed since the cache was last checked, the answer has not changed either.
    kernel_id=$cached_kernel
  elif kernel_id=$(resolve_kernel); then
    :
  elif [ -n "$cached_kernel" ]; then
    log "cannot resolve linux-image-amd64 ($kind); reusing cached $cached_kernel"
    kernel_id=$cached_kernel
  elif [ "$kind" = debian ]; then
    [ "$(id -u)" = 0 ] || die "cannot resolve linux-image-amd64 (run apt-get update as root)"
    apt_update
    kernel_id=$(resolve_kernel) || die "cannot resolve linux-image-amd64 from the apt repositories"
  else
    die "cannot resolve linux-image-amd64 in trixie-backports (private apt state $cache/apt)"
  fi

  stamp_text="kernel $kernel_id
busybox $bb_version
inputs $inputs_hash"

  exec 9>"$cache/.lock"
  flock 9

  if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp_text" ] \
     && [ -s "$cache/vmlinuz" ] && [ -s "$cache/initramfs.cpio" ]; then
    touch "$cache/stamp"
    log "cache up to date: $cache ($kernel_id)"
    return 0
  fi

  # ---- build ---------------------------------------------------------------------------------------------------
  local start work kver_pkg debs=() p name deb
  start=$(date +%s)
  work=$(mktemp -d "$cache/.build.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the subshell's own work directory
  trap "rm -rf '$work'" EXIT

  kver_pkg=${kernel_id#*=}
  # The kernel packages are kept in the cache, so changes to the guest scripts only rebuild the initramfs.
  for p in $(kernel_packages "$kernel_id"); do
    name=${p%%=*}
    deb=$(ls "$cache"/"$name"_"${kver_pkg//:/%3a}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
      log "downloading $name ($kver_pkg)"
      (cd "$work" && apt-get "${apt_opts[@]}" download -qq "$p" >"$tmp_log" 2>&1) || {
        cat "$tmp_log" >&2; die "apt-get download $p failed"; }
      mv "$work"/"$name"_*.deb "$cache"/
      deb=$(ls "$cache"/"$name"_*.deb | head -1)
    fi
    debs+=("$deb")
  done
  # Kernel packages of other versions are no longer needed.
  for deb in "$cache"/linux-*.deb; do
    case " ${debs[*]} " in *" $deb "*) ;; *) rm -f "$deb" ;; esac
  done
  for deb in "${debs[@]}"; do
    log "extracting $(basename "$deb")"
    dpkg-deb -x "$deb" "$work/k"
  done
  local moddir kver kroot vmlinuz
  moddir=$(find "$work/k" -mindepth 3 -maxdepth 5 -type d -path '*/lib/modules/*' -name '[0-9]*' | head -1)
  [ -n "$moddir" ] || die "no lib/modules/<version> in ${debs[*]}"
  kver=$(basename "$moddir")
  kroot=${moddir%/lib/modules/*}
  # Debian 12 installs /boot/vmlinuz-<version>; the 7.x packaging /usr/lib/modules/<version>/vmlinuz.
  vmlinuz="$work/k/boot/vmlinuz-$kver"
  [ -f "$vmlinuz" ] || vmlinuz="$moddir/vmlinuz"
  [ -f "$vmlinuz" ] || die "no vmlinuz for $kver in ${debs[*]}"
  depmod -b "$kroot" "$kver" 2>/dev/null

  # Modules to load at boot, in this order (dependencies first, resolved by modprobe --show-depends).
  # virtio_net: the guest NIC; configfs: nvmet's control plane; crc32c: NVMe/TCP header and data digests;
  # nvmet/nvmet-tcp: the target; brd: RAM disks; loop: namespaces made by nvmet-ctl ns-add.
  # A leading '?' marks a module that some kernels build in or do without (Linux 7.x: virtio_pci is built in and
  # crc32c is a library nvmet-tcp calls directly); it is skipped where the kernel does not ship it as a module.
  local boot_modules=('?virtio_pci' virtio_net configfs '?crc32c_generic' '?crc32c-intel' nvmet nvmet-tcp brd loop)
  # Shipped but not loaded (the guest can `modprobe` it): the kernel's own NVMe/TCP host, which lets a test check
  # the target from inside the guest; tls, for NVMe/TCP with TLS where the kernel has it.
  local extra_modules=(nvme-tcp '?tls')
  root="$work/root"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,srv,run,root,lib/modules/"$kver"}
  : >"$root/etc/modules.load"
  : >"$work/copied"
  local m
  for m in "${boot_modules[@]}"; do add_module "$m" 1; done
  for m in "${extra_modules[@]}"; do add_module "$m" 0; done
  cp "$moddir"/modules.builtin "$moddir"/modules.builtin.modinfo "$moddir"/modules.order "$root/lib/modules/$kver/" 2>/dev/null || true
  depmod -b "$root" "$kver" 2>/dev/null
  log "modules ($kver): $(sed 's#.*/##' "$root/etc/modules.load" | tr '\n' ' ')"

  # busybox and its applets as symlinks
  local applet
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
  # Linux 7.x: NVMe/TCP with TLS needs tlshd (Debian ktls-utils) in the guest, with keyctl (keyutils) to put PSKs in
  # the kernel's .nvme keyring. They are dynamically linked against trixie's libraries, so the guest gets those too
  # (its own /usr; busybox stays static), as a second cpio archive the kernel unpacks over the first.
  if [ "$kind" = backports ]; then
    add_tls_userland "$work"
    cat "$work/tls.cpio" >>"$work/initramfs.cpio"
  fi

  mv -f "$vmlinuz" "$cache/vmlinuz"
  mv -f "$work/initramfs.cpio" "$cache/initramfs.cpio"
  echo "$kver" >"$cache/kernel-version"
  printf '%s\n' "$stamp_text" >"$cache/stamp"
  log "built $cache (kernel $kver, initramfs $(( $(stat -c %s "$cache/initramfs.cpio") / 1024 )) KiB) in $(( $(date +%s) - start )) s"
}

# add_tls_userland WORK: download ktls-utils, keyutils and every library they need (apt_opts: the private trixie
# state; nothing counts as installed there) and pack tlshd, keyctl, the dynamic loader, the shared libraries and
# guest/tlshd.conf into WORK/tls.cpio.
add_tls_userland() {
  local work=$1 pkgs deb
  pkgs=$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
           --no-replaces --no-enhances ktls-utils keyutils 2>/dev/null | grep -E '^[a-z0-9]' | sort -u) || true
  [ -n "$pkgs" ] || die "cannot resolve ktls-utils and keyutils in trixie (private apt state)"
  mkdir -p "$work/tls-debs" "$work/tls-x" "$work/tls/usr/lib" "$work/tls/usr/sbin" "$work/tls/usr/bin" "$work/tls/etc" "$work/tls/lib"
  # shellcheck disable=SC2086 # a list of package names
  (cd "$work/tls-debs" && apt-get "${apt_opts[@]}" download -qq $pkgs >"$tmp_log" 2>&1) || {
    cat "$tmp_log" >&2; die "apt-get download of the TLS user space failed"; }
  for deb in "$work"/tls-debs/*.deb; do dpkg-deb -x "$deb" "$work/tls-x"; done
  [ -x "$work/tls-x/usr/sbin/tlshd" ] && [ -x "$work/tls-x/usr/bin/keyctl" ] || die "no tlshd or keyctl in ktls-utils/keyutils"
  cp -a "$work/tls-x/usr/sbin/tlshd" "$work/tls/usr/sbin/"
  cp -a "$work/tls-x/usr/bin/keyctl" "$work/tls/usr/bin/"
  cp -a "$work/tls-x/usr/lib64" "$work/tls/usr/"
  mkdir -p "$work/tls/usr/lib/x86_64-linux-gnu"
  find "$work/tls-x/usr/lib/x86_64-linux-gnu" -maxdepth 1 \( -name '*.so*' \) -exec cp -a {} "$work/tls/usr/lib/x86_64-linux-gnu/" \;
  ln -s usr/lib64 "$work/tls/lib64"
  ln -s /usr/lib/x86_64-linux-gnu "$work/tls/lib/x86_64-linux-gnu"
  install -m 0644 "$here/guest/tlshd.conf" "$work/tls/etc/tlshd.conf"
  (cd "$work/tls" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) >"$work/tls.cpio"
  log "TLS user space: tlshd, keyctl and $(find "$work/tls/usr/lib/x86_64-linux-gnu" -name '*.so*' | wc -l) library files ($(( $(stat -c %s "$work/tls.cpio") / 1024 )) KiB) from $(echo "$pkgs" | wc -l) packages"
}

# add_module [?]NAME LOAD(0|1): copy NAME and its dependencies (decompressed) into the initramfs (uses the
# variables of build_cache: kroot, kver, moddir, root, work).
add_module() {
  local name=${1#\?} optional=0 deps kind path rel dest
  [ "$name" = "$1" ] || optional=1
  if ! deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$name" 2>&1); then
    if [ "$optional" = 1 ] && [[ "$deps" == *"not found"* ]]; then
      return 0
    fi
    die "modprobe --show-depends $name ($kver): $deps"
  fi
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

for kind in ${NVMEOF_KERNELS:-debian backports}; do
  case "$kind" in
    debian) (build_cache debian "$cache") ;;
    backports) (build_cache backports "$cache/backports") ;;
    *) die "NVMEOF_KERNELS: unknown kernel '$kind' (debian, backports)" ;;
  esac
done
