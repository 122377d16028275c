#!/usr/bin/env bash
# The ABI of libntsntp-core.so and libntsntp.so against the committed
# baselines (tests/abi/*.abi, libabigail's abidw format), with abidiff.
#   check.sh BUILD_DIR            fails on any difference
#   check.sh BUILD_DIR --update   rewrites the baselines after a deliberate
#                                 change (bump libntsntp_soversion in
#                                 lib/meson.build when it breaks the ABI)
# The build must have debug information (meson's default debugoptimized).
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
command -v abidiff >/dev/null ||
  { echo "abidiff not found: apt-get install abigail-tools"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rc=0
for lib in libntsntp-core libntsntp; do
  so=$build/lib/$lib.so
  # Only the public headers define the ABI (no ntsntp__ internals).
  abidw --no-corpus-path --headers-dir "$here/../../include/ntsntp" \
    --out-file "$tmp/$lib.abi" "$so"
  if [ "${2:-}" = --update ]; then
    cp "$tmp/$lib.abi" "$here/$lib.abi"
    echo "updated tests/abi/$lib.abi"
    continue
  fi
  [ -f "$here/$lib.abi" ] ||
    { echo "FAIL - no baseline tests/abi/$lib.abi: run $0 BUILD --update"; rc=1; continue; }
  set +e
  abidiff --no-show-locs --headers-dir2 "$here/../../include/ntsntp" \
    "$here/$lib.abi" "$tmp/$lib.abi" > "$tmp/$lib.diff"
  d=$?
  set -e
  if [ $d -eq 0 ]; then
    echo "ok   - $lib: ABI as in tests/abi/$lib.abi"
  else
    cat "$tmp/$lib.diff"
    if [ $((d & 8)) -ne 0 ] ||
      grep -Eq "offset changed|size changed|removed|Removed [1-9]" "$tmp/$lib.diff"; then
      # abidiff flags only removed symbols as incompatible; a member that
      # moved or a type that shrank or grew breaks programs as well, except
      # a field appended to a settings struct (common.h, Settings).
      echo "FAIL - $lib: the ABI changed incompatibly (a member moved, a" \
        "type changed size or a symbol went): unless this is a field" \
        "appended to a settings struct with NTSNTP_SETTINGS_VERSION raised," \
        "bump libntsntp_soversion (lib/meson.build); then $0 BUILD --update"
    else
      echo "FAIL - $lib: the ABI changed (compatible): $0 BUILD --update" \
        "and commit tests/abi/$lib.abi with the change"
    fi
    rc=1
  fi
done
exit $rc
