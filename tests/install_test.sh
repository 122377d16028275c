#!/usr/bin/env bash
# Installs libntsntp to a temporary prefix and builds the examples out of
# tree with nothing but `pkg-config --cflags --libs libntsntp`, so linking
# into other C programs keeps working.  Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
DESTDIR="$tmp/root" meson install -C "$build" --quiet >/dev/null
prefix=$(meson introspect "$build" --buildoptions | grep -o '"name": "prefix", "value": "[^"]*"' | sed 's/.*"value": "//; s/"$//')
libdir=$(meson introspect "$build" --buildoptions | grep -o '"name": "libdir", "value": "[^"]*"' | sed 's/.*"value": "//; s/"$//')
root=$tmp/root$prefix
export PKG_CONFIG_PATH=$root/$libdir/pkgconfig
# The .pc file names the real prefix; point pkg-config at the staged copy.
export PKG_CONFIG_SYSROOT_DIR=$tmp/root
for ex in ntp-query nts-query; do
  cc -std=gnu11 -Wall -Wextra -Werror -o "$tmp/$ex" "$src/examples/$ex.c" \
    $(pkg-config --cflags --libs libntsntp)
  echo "ok   - $ex builds out of tree with pkg-config libntsntp"
done
# The sans-I/O core alone (built, not run: tiny-server serves until
# stopped): no libuv on the command line or in the binary.
flags=$(pkg-config --cflags --libs libntsntp-core)
case $flags in *uv*) echo "FAIL - libntsntp-core.pc names libuv: $flags"; exit 1 ;; esac
cc -std=gnu11 -Wall -Wextra -Werror -o "$tmp/tiny-server" \
  "$src/examples/tiny-server.c" $flags
if objdump -p "$tmp/tiny-server" | grep -q 'NEEDED.*libuv'; then
  echo "FAIL - tiny-server needs libuv"; exit 1
fi
objdump -p "$tmp/tiny-server" | grep -q 'NEEDED.*libntsntp-core.so.1' ||
  { echo "FAIL - tiny-server is not linked to libntsntp-core.so.1"; exit 1; }
echo "ok   - tiny-server builds with pkg-config libntsntp-core alone, no libuv"
test -f "$root/include/ntsntp/ntsntp.h"
test -f "$tmp/root$prefix/share/man/man8/ntsd.8"
echo "ok   - headers and man pages installed"
# The built program runs against the installed library.
rc=0
LD_LIBRARY_PATH=$root/$libdir "$tmp/ntp-query" >/dev/null 2>&1 || rc=$?
if [ "$rc" -eq 127 ] || [ "$rc" -ge 128 ]; then
  echo "FAIL - ntp-query does not run against the installed library ($rc)"
  exit 1
fi
echo "ok   - an example runs against the installed library (usage, status $rc)"
