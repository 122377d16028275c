#!/usr/bin/env bash
# Installs what is missing, builds ntsntp and runs every test.
# Usage: ./test.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")"
. tools/deps.sh
# chrony (chronyd -Q, chronyd -x) and gnutls-bin (certtool, gnutls-cli) are
# the independent implementations the integration tests talk to.
deps_install "${BUILD_DEPS[@]}" g++ chrony gnutls-bin ca-certificates libfaketime procps
# The tests talk to "localhost" (TLS names are checked).  A debootstrap root
# has no /etc/hosts; give it Debian's usual loopback lines.
if ! getent hosts localhost >/dev/null; then
  echo "localhost does not resolve: adding Debian's loopback lines to /etc/hosts"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' |
    { [ "$(id -u)" -eq 0 ] && tee -a /etc/hosts || sudo tee -a /etc/hosts; } >/dev/null
fi
build=${1:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=debugoptimized >/dev/null
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes 2
