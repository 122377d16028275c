#!/usr/bin/env bash
# Compiles every ```c block of the docs (docs/*.md, README.md) against the
# headers, with tests/docs/prelude.h for the names a snippet takes from
# the program around it.  A block with a main() is compiled as it is; any
# other one becomes the body of a function.  Usage: snippets.sh SRC BUILD
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-cc}
fail=0 count=0
for md in "$src"/README.md "$src"/docs/*.md; do
  awk -v dir="$tmp" -v base="$(basename "$md" .md)" '
    /^```c *$/ { n++; f = dir "/" base "-" n ".snip"; inblk = 1; next }
    /^```/ { inblk = 0; next }
    inblk { print > f }' "$md"
done
for snip in "$tmp"/*.snip; do
  [ -e "$snip" ] || continue
  count=$((count + 1))
  c=${snip%.snip}.c
  {
    echo '#include "prelude.h"'
    grep '^#include' "$snip" || true
    if grep -q 'int main(' "$snip"; then
      grep -v '^#include' "$snip"
    else
      echo 'void snippet(void);'
      echo 'void snippet(void) {'
      grep -v '^#include' "$snip"
      echo '}'
    fi
  } > "$c"
  if "$cc" -std=gnu11 -Wall -Wextra -Werror -Wno-unused-variable \
      -Wno-unused-but-set-variable -fsyntax-only \
      -I"$src/tests/docs" -I"$src/include" -I"$build/include" \
      $(pkg-config --cflags libuv) "$c" 2> "$c.err"; then
    echo "ok   - $(basename "$snip" .snip)"
  else
    echo "FAIL - $(basename "$snip" .snip):"; cat "$c.err"; nl -ba "$c"
    fail=$((fail + 1))
  fi
done
echo "$count snippets, $fail failed"
[ "$count" -gt 0 ] && [ "$fail" -eq 0 ]
