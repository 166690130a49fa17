#!/bin/sh
# Build the nvmet test topology in configfs. Every step is checked; the first failure stops the script.
# $GUEST_ADDR (from rcS) is the guest's own address: referrals carry it, since nvmet copies a referral's address
# into the discovery log verbatim (subsystem entries of a port bound to 0.0.0.0 carry the address the host used).
#
# Ports (portid = configfs directory name = PORTID in discovery log entries; all tcp ipv4 0.0.0.0):
#   port 1  :4420  subsystems open, restricted, multipath
#                  referral "port2" -> $GUEST_ADDR:4421 (portid 2)
#   port 2  :4421  subsystem multipath
#   port 3  :8009  discovery port: referrals "port1" -> $GUEST_ADDR:4420 (portid 1), "port2" -> $GUEST_ADDR:4421
#                  (portid 2). nvmet listens on a port only while a subsystem is linked to it, so port 3 carries
#                  the anchor subsystem, which admits no host and therefore never appears in a discovery log.
#
# What a discovery controller sees (Linux 6.1 nvmet: a port's log page lists the current discovery subsystem entry
# (subtype 3) of that port, the subsystems linked to that port which admit the host, with the port's own trsvcid and
# the address the host connected to, then the port's referrals, in the order they were linked/created):
#   via :8009  2 referrals (4420, 4421); following them finds
#   via :4420  open, multipath (+ restricted for ALLOWED_HOST) at :4420, and the referral to 4421
#   via :4421  multipath at :4421
#
# Subsystems:
#   nqn.2014-08.org.nvmexpress:nvmf-test-open        any host; ns 1 = /dev/ram0 (64 MiB brd),
#                                                    ns 2 = /srv/ns2.img (16 MiB file on tmpfs, buffered I/O)
#   nqn.2014-08.org.nvmexpress:nvmf-test-restricted  only ALLOWED_HOST; ns 1 = /dev/ram1 (64 MiB brd)
#   nqn.2014-08.org.nvmexpress:nvmf-test-multipath   any host; on ports 1 and 2;
#                                                    ns 1 = 16 MiB loop device (512 B blocks) in ANA group 2,
#                                                    ns 2 =  8 MiB loop device (512 B blocks) in ANA group 3
#   nqn.2014-08.org.nvmexpress:nvmf-test-discovery-anchor  no host allowed, no namespace, on port 3 only
#
# ANA (per port and group; group 1, the default group of open and restricted, stays optimized everywhere):
#             group 2 (multipath ns 1)   group 3 (multipath ns 2)
#   port 1    optimized                  non-optimized
#   port 2    non-optimized              optimized
#
# Tests change this at run time with /bin/nvmet-ctl (see that script for commands and the AENs they cause).
set -e
cfs=/sys/kernel/config/nvmet
OPEN=nqn.2014-08.org.nvmexpress:nvmf-test-open
RESTRICTED=nqn.2014-08.org.nvmexpress:nvmf-test-restricted
MULTIPATH=nqn.2014-08.org.nvmexpress:nvmf-test-multipath
ANCHOR=nqn.2014-08.org.nvmexpress:nvmf-test-discovery-anchor
ALLOWED_HOST=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001
: "${GUEST_ADDR:=$(cat /run/guest-addr 2>/dev/null || echo 10.0.2.15)}"

[ -d "$cfs" ] || { echo "nvmet-setup: $cfs missing" >&2; exit 1; }

# put VALUE FILE: write one configfs attribute, naming it on failure.
put() {
  if ! echo "$1" >"$2" 2>/dev/null; then echo "nvmet-setup: cannot write '$1' to $2" >&2; return 1; fi
}

# subsystem NQN SERIAL MODEL ALLOW_ANY
subsystem() {
  mkdir "$cfs/subsystems/$1"
  put "$4" "$cfs/subsystems/$1/attr_allow_any_host"
  put "$2" "$cfs/subsystems/$1/attr_serial"
  [ ! -e "$cfs/subsystems/$1/attr_model" ] || put "$3" "$cfs/subsystems/$1/attr_model"
}

# namespace NQN NSID PATH UUID NGUID [buffered]
namespace() {
  ns="$cfs/subsystems/$1/namespaces/$2"
  mkdir "$ns"
  put "$3" "$ns/device_path"
  put "$4" "$ns/device_uuid"
  put "$5" "$ns/device_nguid"
  [ "${6:-}" != buffered ] || put 1 "$ns/buffered_io"
  put 1 "$ns/enable"
}

# port ID TRSVCID
port() {
  p="$cfs/ports/$1"
  mkdir "$p"
  put tcp "$p/addr_trtype"
  put ipv4 "$p/addr_adrfam"
  put 0.0.0.0 "$p/addr_traddr"
  put "$2" "$p/addr_trsvcid"
}

# ctl ARGS...: nvmet-ctl, quiet on success
ctl() {
  out=$(/bin/nvmet-ctl "$@") || { echo "nvmet-setup: nvmet-ctl $* failed" >&2; return 1; }
}

[ -b /dev/ram0 ] && [ -b /dev/ram1 ] || { echo "nvmet-setup: /dev/ram0 or /dev/ram1 missing" >&2; exit 1; }
# tmpfs has no O_DIRECT on this kernel, so the file namespace uses buffered I/O.
truncate -s 16M /srv/ns2.img

subsystem "$OPEN" nvmeof-open-0001 nvmeof-test-open 1
namespace "$OPEN" 1 /dev/ram0 \
  00000000-0000-4000-8000-0000000000a1 00000000-0000-0000-0000-0000000000a1
namespace "$OPEN" 2 /srv/ns2.img \
  00000000-0000-4000-8000-0000000000a2 00000000-0000-0000-0000-0000000000a2 buffered

subsystem "$RESTRICTED" nvmeof-restr-0001 nvmeof-test-restricted 0
mkdir "$cfs/hosts/$ALLOWED_HOST"
ln -s "$cfs/hosts/$ALLOWED_HOST" "$cfs/subsystems/$RESTRICTED/allowed_hosts/$ALLOWED_HOST"
namespace "$RESTRICTED" 1 /dev/ram1 \
  00000000-0000-4000-8000-0000000000b1 00000000-0000-0000-0000-0000000000b1

port 1 4420
port 2 4421
port 3 8009

# ANA groups 2 and 3 must exist on a port before a namespace can join them.
ctl ana 1 2 optimized
ctl ana 1 3 non-optimized
ctl ana 2 2 non-optimized
ctl ana 2 3 optimized

subsystem "$MULTIPATH" nvmeof-mpath-0001 nvmeof-test-multipath 1
ctl ns-add "$MULTIPATH" 1 16M 2
ctl ns-add "$MULTIPATH" 2 8M 3

subsystem "$ANCHOR" nvmeof-anchor-0001 nvmeof-test-discovery-anchor 0

ctl referral-add 1 port2 4421 "$GUEST_ADDR" 2
ctl referral-add 3 port1 4420 "$GUEST_ADDR" 1
ctl referral-add 3 port2 4421 "$GUEST_ADDR" 2

# Linking the first subsystem to a port starts its listener: do it last, when everything else is in place.
ctl link 1 "$OPEN"
ctl link 1 "$RESTRICTED"
ctl link 1 "$MULTIPATH"
ctl link 2 "$MULTIPATH"
ctl link 3 "$ANCHOR"
