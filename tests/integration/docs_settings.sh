#!/usr/bin/env bash
# Every setting ntsd knows (ntsd --help) is documented in the man page and
# the configuration reference, so the docs cannot fall behind the code.
# Usage: docs_settings.sh ntsd SRCDIR
NTSD=$1 SRC=$2
fail=0 n=0
for name in $("$NTSD" --help | sed -n 's/^  \([A-Z_]*\), --.*/\1/p'); do
  n=$((n + 1))
  grep -q "$name" "$SRC/docs/ntsd.8" || { echo "FAIL - $name missing from docs/ntsd.8"; fail=$((fail + 1)); }
  grep -q "\`$name\`" "$SRC/docs/configuration.md" || { echo "FAIL - $name missing from docs/configuration.md"; fail=$((fail + 1)); }
done
[ "$n" -gt 30 ] || { echo "FAIL - ntsd --help listed only $n settings"; fail=$((fail + 1)); }
echo "$((2 * n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
