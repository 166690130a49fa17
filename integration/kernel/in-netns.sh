#!/bin/bash
# Run a command inside a private network namespace with a TAP device for the kernel target's QEMU guest.
#
# Usage: integration/kernel/in-netns.sh <command> [args...]
#
# As root: creates the namespace nvmeof-<pid>, sets its loopback up, creates two TAP devices in it, one per kernel
# target guest: nvtap0 with address $NVMEOF_NETNS_SUBNET.1/24 (link 1, default subnet 10.213.77) and nvtap1 with
# $NVMEOF_NETNS_SUBNET_2.1/24 (link 2, default 10.213.78), private /24s that exist only inside this namespace, and
# runs the command there with these variables exported:
#   NVMEOF_NETNS            name of the namespace
#   NVMEOF_TAP              TAP device for QEMU (-netdev tap,ifname=$NVMEOF_TAP,script=no,downscript=no)
#   NVMEOF_TAP_HOST_ADDR    the namespace's address on the TAP link (10.213.77.1)
#   NVMEOF_GUEST_ADDR       the address the guest takes on that link (10.213.77.2)
#   NVMEOF_NET_PREFIXLEN    prefix length of the link (24)
#   NVMEOF_TAP_2, NVMEOF_TAP_HOST_ADDR_2, NVMEOF_GUEST_ADDR_2, NVMEOF_NET_PREFIXLEN_2   the same for link 2
# (link 1 serves the Linux 7.x guest of the 'kernel' project, link 2 the Linux 6.1 guest of 'kernel-6.1').
# The namespace (and with it the TAP device) is always removed when the command ends, and processes the command
# left running in it are killed. The command's exit status is returned; signals to this script are passed on.
#
# Without root, or when the namespace cannot be made: under CI (CI set and not 0/false) this fails; otherwise it
# prints one line, sets NVMEOF_NETNS_UNAVAILABLE=<reason> and runs the command in the current network namespace
# (the kernel target then uses QEMU user-mode networking, and tests that need every discovery address reachable
# skip). Already inside such a namespace (NVMEOF_NETNS set): runs the command unchanged.
set -uo pipefail

[ $# -gt 0 ] || { echo "usage: $0 <command> [args...]" >&2; exit 2; }

cmd=("$@")
if [ -n "${NVMEOF_NETNS:-}" ]; then exec "${cmd[@]}"; fi

is_ci() {
  case "${CI:-}" in '' | 0 | false | FALSE | False) return 1 ;; *) return 0 ;; esac
}

unavailable() {
  if is_ci; then
    echo "in-netns: error: cannot create the test network namespace: $1 (the kernel tests need root, iproute2 and /dev/net/tun under CI)" >&2
    exit 1
  fi
  echo "in-netns: no network namespace ($1); running without it: kernel target on user-mode networking, reachability tests skip" >&2
  export NVMEOF_NETNS_UNAVAILABLE="$1"
  exec "${cmd[@]}"
}

[ "$(id -u)" = 0 ] || unavailable "not root"

# Install packages and build the guest image now: inside the namespace there is no route to the package mirror.
# (Idempotent and fast when the cache is warm; a failure here is reported by the tests' global setup.)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/prepare.sh" </dev/null || echo "in-netns: prepare.sh failed (exit $?); the kernel target will report why" >&2

command -v ip >/dev/null || unavailable "the ip command (iproute2) is missing; integration/kernel/prepare.sh installs it"

subnet=${NVMEOF_NETNS_SUBNET:-10.213.77}
subnet2=${NVMEOF_NETNS_SUBNET_2:-10.213.78}
ns="nvmeof-$$"
tap=nvtap0
tap2=nvtap1
host_addr="$subnet.1"
guest_addr="$subnet.2"
host_addr2="$subnet2.1"
guest_addr2="$subnet2.2"
prefixlen=24

# remove_ns NAME: stop the processes left in namespace NAME, delete its TAP device and the namespace.
remove_ns() {
  local pids pid i
  ip netns list 2>/dev/null | grep -q "^$1\\b" || return 0
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    echo "in-netns: stopping processes left in $1: $(echo $pids)" >&2
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 50); do
      [ -n "$(ip netns pids "$1" 2>/dev/null)" ] || break
      sleep 0.1
    done
    for pid in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  ip -n "$1" link del "$tap" 2>/dev/null || true
  ip -n "$1" link del "$tap2" 2>/dev/null || true
  ip netns del "$1" 2>/dev/null || echo "in-netns: warning: could not delete network namespace $1" >&2
}
cleanup() { remove_ns "$ns"; }

# Namespaces of earlier runs that were killed before they could clean up: their script's pid is gone and no process
# is left in them. (Other runs, even concurrent ones, are left alone: each has its own namespace.)
for old in $(ip netns list 2>/dev/null | sed -n 's/^\(nvmeof-[0-9][0-9]*\)\b.*/\1/p'); do
  if ! kill -0 "${old#nvmeof-}" 2>/dev/null && [ -z "$(ip netns pids "$old" 2>/dev/null)" ]; then
    echo "in-netns: removing stale namespace $old" >&2
    remove_ns "$old"
  fi
done

# Fresh containers may lack the TUN device node even where the kernel has TUN/TAP support.
if [ ! -c /dev/net/tun ]; then
  modprobe tun 2>/dev/null || true
  mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200 2>/dev/null || true
fi

if ! err=$(ip netns add "$ns" 2>&1); then unavailable "ip netns add failed: ${err//$'\n'/ }"; fi
trap cleanup EXIT
setup_err=$(
  {
    ip -n "$ns" link set lo up &&
      ip -n "$ns" tuntap add dev "$tap" mode tap &&
      ip -n "$ns" addr add "$host_addr/$prefixlen" dev "$tap" &&
      ip -n "$ns" link set "$tap" up &&
      ip -n "$ns" tuntap add dev "$tap2" mode tap &&
      ip -n "$ns" addr add "$host_addr2/$prefixlen" dev "$tap2" &&
      ip -n "$ns" link set "$tap2" up
  } 2>&1
) || {
  cleanup
  trap - EXIT
  unavailable "TAP device setup in $ns failed: ${setup_err//$'\n'/ }"
}

export NVMEOF_NETNS="$ns" NVMEOF_TAP="$tap" NVMEOF_TAP_HOST_ADDR="$host_addr" NVMEOF_GUEST_ADDR="$guest_addr" \
  NVMEOF_NET_PREFIXLEN="$prefixlen" NVMEOF_TAP_2="$tap2" NVMEOF_TAP_HOST_ADDR_2="$host_addr2" \
  NVMEOF_GUEST_ADDR_2="$guest_addr2" NVMEOF_NET_PREFIXLEN_2="$prefixlen"
unset NVMEOF_NETNS_UNAVAILABLE

# Run in the background (stdin kept) and wait, so that signals sent to this script reach the command as well.
ip netns exec "$ns" "${cmd[@]}" <&0 &
child=$!
forward() { kill "-$1" "$child" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP
while :; do
  wait "$child"
  rc=$?
  # wait returns early (status > 128) when a trapped signal arrives; keep waiting until the command has ended.
  kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
