#!/bin/sh
# Build the nvmet test topology in configfs. Every step is checked; the first failure stops the script.
#
#   port 1: tcp ipv4 0.0.0.0:4420
#   nqn.2014-08.org.nvmexpress:nvmf-test-open        any host; ns 1 = /dev/ram0 (64 MiB brd),
#                                                    ns 2 = /srv/ns2.img (16 MiB file on tmpfs, buffered I/O)
#   nqn.2014-08.org.nvmexpress:nvmf-test-restricted  only ALLOWED_HOST; ns 1 = /dev/ram1 (64 MiB brd)
set -e
cfs=/sys/kernel/config/nvmet
OPEN=nqn.2014-08.org.nvmexpress:nvmf-test-open
RESTRICTED=nqn.2014-08.org.nvmexpress:nvmf-test-restricted
ALLOWED_HOST=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001

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

port="$cfs/ports/1"
mkdir "$port"
put tcp "$port/addr_trtype"
put ipv4 "$port/addr_adrfam"
put 0.0.0.0 "$port/addr_traddr"
put 4420 "$port/addr_trsvcid"
ln -s "$cfs/subsystems/$OPEN" "$port/subsystems/$OPEN"
ln -s "$cfs/subsystems/$RESTRICTED" "$port/subsystems/$RESTRICTED"
