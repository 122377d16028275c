#!/bin/sh
# Builds the libFuzzer targets (clang, ASan + UBSan, deterministic
# randomness) in their own build directory and runs each for a while.
#
#   tests/fuzz/run.sh [seconds-per-target]          (default 60)
#
# Environment: NTSNTP_FUZZ_BUILD  build directory (default build-fuzz/)
#              NTSNTP_FUZZ_PARALLEL=1  run all targets at once
#              NTSNTP_FUZZ_TARGETS  "a b ..." instead of every target
# Each target fuzzes a scratch corpus in the build directory seeded from
# tests/fuzz/corpus/<target>/.  Crash, leak and timeout inputs are kept as
# tests/fuzz/regressions/<target>/<kind>-<sha1>; they replay in every normal
# test run (suite fuzz-replay), so commit them with the fix.
# Prints executions and executions per second per target (libFuzzer's
# final stats) and exits non-zero if any target failed.
set -u
secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bdir=${NTSNTP_FUZZ_BUILD:-$root/build-fuzz}

if [ ! -f "$bdir/build.ninja" ]; then
  CC=${CC_FUZZ:-clang} meson setup "$bdir" "$root" -Dfuzzing=true \
    -Ddaemon=false -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" || exit 2
fi
ninja -C "$bdir" || exit 2

targets=${NTSNTP_FUZZ_TARGETS:-$(sed -n \
  "/^fuzz_targets = \[/,/^\]/s/^ *'\([a-z0-9_]*\)'.*/\1/p" "$here/meson.build")}

run_one() {
  t=$1
  mkdir -p "$bdir/fuzz-corpus/$t" "$here/regressions/$t"
  ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$bdir/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$here/regressions/$t/" \
    "$bdir/fuzz-corpus/$t" "$here/corpus/$t" >"$bdir/fuzz-$t.log" 2>&1
  echo $? >"$bdir/fuzz-$t.rc"
}

for t in $targets; do
  if [ "${NTSNTP_FUZZ_PARALLEL:-0}" = 1 ]; then
    run_one "$t" &
  else
    run_one "$t"
  fi
done
wait

fail=0
printf '%-12s %12s %9s %7s  %s\n' target executions exec/s corpus result
for t in $targets; do
  log="$bdir/fuzz-$t.log"
  rc=$(cat "$bdir/fuzz-$t.rc")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  units=$(ls "$bdir/fuzz-corpus/$t" | wc -l)
  if [ "$rc" = 0 ]; then
    res=ok
  else
    res="FAILED (rc $rc): $(grep -m1 -E 'ERROR|check failed|runtime error' "$log")"
    fail=1
  fi
  printf '%-12s %12s %9s %7s  %s\n' "$t" "${execs:-?}" "${rate:-?}" \
    "$units" "$res"
done
[ $fail = 0 ] || echo "logs: $bdir/fuzz-<target>.log; inputs: $here/regressions/"
exit $fail
