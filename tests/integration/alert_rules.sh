#!/usr/bin/env bash
# docs/alerts: promtool check rules, then the rules' unit tests.  Skipped
# (77) without promtool (Debian package prometheus).
# Usage: alert_rules.sh SOURCE_ROOT
set -uo pipefail
dir=$1/docs/alerts
if ! command -v promtool >/dev/null; then
  echo "skip - promtool not installed (apt-get install prometheus)"
  exit 77
fi
rc=0
timeout 60 promtool check rules "$dir/ntsd.rules.yml" || rc=1
(cd "$dir" && timeout 60 promtool test rules ntsd.rules.test.yml) || rc=1
exit $rc
