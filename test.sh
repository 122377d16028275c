#!/usr/bin/env bash
# Installs what is missing, builds ntsntp and runs every test.
# Usage: ./test.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")"
. tools/deps.sh
# chrony (chronyd -Q, chronyd -x) and gnutls-bin (certtool, gnutls-cli) are
# the independent implementations the integration tests talk to.
deps_install "${BUILD_DEPS[@]}" chrony gnutls-bin ca-certificates
build=${1:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=debugoptimized >/dev/null
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes 2
