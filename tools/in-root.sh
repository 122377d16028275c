#!/usr/bin/env bash
# Runs a command in a fresh Debian root with this checkout mounted at
# /src, as a newcomer's machine would: debootstrap --variant=minbase, with
# proc, sys and dev mounted.  CI uses it to run the README's commands on
# Debian 12 and 13.
#
#   tools/in-root.sh SUITE COMMAND...      as root; e.g.
#   tools/in-root.sh trixie ./test.sh build-trixie
#
# Environment:
#   ROOT_CACHE  where the pristine root of SUITE is kept between runs
#               (/var/cache/ntsntp-roots); each run works on a copy
#   ROOT_MIRROR Debian mirror (http://deb.debian.org/debian)
#   ROOT_KEEP=1 keep the copy (its path is printed)
#
# Build output lands in the checkout (the command's build directory), as
# it would on the newcomer's machine; nothing else of the host is shared.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "tools/in-root.sh must run as root (debootstrap, chroot, mounts)"; exit 1; }
[ $# -ge 2 ] || { echo "usage: tools/in-root.sh SUITE COMMAND..."; exit 2; }
suite=$1; shift
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tools/deps.sh"
deps_install debootstrap
cache=${ROOT_CACHE:-/var/cache/ntsntp-roots}
mirror=${ROOT_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"
if [ ! -x "$cache/$suite/bin/bash" ]; then
  echo "debootstrap --variant=minbase $suite (once; cached in $cache/$suite)"
  rm -rf "$cache/$suite.new"
  debootstrap --variant=minbase "$suite" "$cache/$suite.new" "$mirror" >"$cache/$suite.log" 2>&1 ||
    { tail -20 "$cache/$suite.log"; exit 1; }
  mv "$cache/$suite.new" "$cache/$suite"
fi
root=$(mktemp -d "/var/tmp/ntsntp-$suite.XXXXXX")
cp -a "$cache/$suite/." "$root/"
mounts=()
cleanup() {
  local rc=$? i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true
  done
  if [ "${ROOT_KEEP:-0}" = 1 ]; then echo "kept $root"; else rm -rf "$root"; fi
  exit $rc
}
trap cleanup EXIT
# The root a mount point of its own, private: tests that unshare a mount
# namespace (a private /etc/hosts) can then make / private in there.
mount --bind "$root" "$root"
mount --make-private "$root"
mounts+=("$root")
for m in proc sys dev; do
  mount --bind "/$m" "$root/$m"
  mounts+=("$root/$m")
done
mkdir -p "$root/src"
mount --bind "$src" "$root/src"
mounts+=("$root/src")
# A minbase root resolves nothing without the host's resolver settings.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
quoted=$(printf '%q ' "$@")
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 TERM=dumb bash -c "cd /src && $quoted"
