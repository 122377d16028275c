# Shared helpers for the integration tests (bash).  Each test script sources
# this, calls t_init, runs checks with t_ok/t_fail, and ends with t_done.
# Only loopback addresses and high or kernel-chosen ports are used; every
# process started here is stopped by PID.
set -uo pipefail

T_PASS=0 T_FAIL=0 T_PIDS=()
T_DIR=$(mktemp -d /tmp/ntsntp-it.XXXXXX)
# ntsd drops root for this user (the image uses "ntsd"); it must be able to
# reach its STATE_DIR under $T_DIR.
chmod 755 "$T_DIR"
T_USER=${T_USER:-nobody}

t_cleanup() {
  local p rc=$?
  for p in "${T_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${T_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # Under NTSD_WRAPPER=valgrind, any daemon's memory error fails the test.
  if [ -n "${NTSD_WRAPPER:-}" ] &&
     grep -l 'ERROR SUMMARY: [1-9]' "$T_DIR"/*.log 2>/dev/null; then
    echo "FAIL - valgrind found errors in the logs above"
    rc=1
  fi
  [ "${T_KEEP:-0}" = 1 ] || rm -rf "$T_DIR"
  exit $rc
}
trap t_cleanup EXIT

t_ok() { T_PASS=$((T_PASS + 1)); echo "ok   - $*"; }
t_fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL - $*"; }
t_check() { # t_check "description" command...
  local what=$1; shift
  if "$@"; then t_ok "$what"; else t_fail "$what"; fi
}
t_done() {
  echo "$T_PASS passed, $T_FAIL failed"
  [ "$T_FAIL" -eq 0 ]
}

# Throwaway ECDSA P-256 CA and a server certificate for localhost,
# 127.0.0.1 and ::1, as certbot lays them out: $T_DIR/ca.pem,
# $T_DIR/live/fullchain.pem, $T_DIR/live/privkey.pem (0600).
t_make_certs() {
  local d=$T_DIR
  mkdir -p "$d/live"
  printf 'cn = "ntsntp test CA"\nca\ncert_signing_key\nexpiration_days = 30\n' > "$d/ca.tmpl"
  printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\nip_address = "::1"\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n' > "$d/srv.tmpl"
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/ca.key" 2>/dev/null &&
  certtool --generate-self-signed --load-privkey "$d/ca.key" --template "$d/ca.tmpl" --outfile "$d/ca.pem" 2>/dev/null &&
  (umask 077; certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/live/privkey.pem" 2>/dev/null) &&
  certtool --generate-certificate --load-privkey "$d/live/privkey.pem" --load-ca-certificate "$d/ca.pem" \
    --load-ca-privkey "$d/ca.key" --template "$d/srv.tmpl" --outfile "$d/srv.pem" 2>/dev/null &&
  cat "$d/srv.pem" "$d/ca.pem" > "$d/live/fullchain.pem"
}

# t_start_ntsd NAME [VAR=value...]: starts ntsd with those settings on
# kernel-chosen loopback ports; sets NAME_PID, NAME_NTP, NAME_KE, NAME_LOG.
# NTSD_WRAPPER (e.g. "valgrind --error-exitcode=99 --leak-check=full")
# runs ntsd under that command, in the same process; its reports go to the
# log.
t_start_ntsd() {
  local name=$1; shift
  local log=$T_DIR/$name.log i
  env -i PATH="$PATH" NTP_SERVERS=127.127.1.1 LISTEN=127.0.0.1 NTP_PORT=0 \
    NTS_KE_PORT=0 STATE_DIR="$T_DIR/$name.state" WORKERS=2 NTSD_USER="$T_USER" "$@" \
    ${NTSD_WRAPPER:-} "$NTSD" >"$log" 2>&1 &
  local pid=$!
  T_PIDS+=("$pid")
  # The control socket comes up last, after NTP and NTS-KE, in every role.
  for i in $(seq 1 $((${NTSD_WRAPPER:+10 *} 100))); do
    grep -q "Control socket" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  printf -v "${name}_PID" %s "$pid"
  printf -v "${name}_LOG" %s "$log"
  printf -v "${name}_NTP" %s "$(sed -n 's/.*serving NTP on UDP 127.0.0.1:\([0-9]*\).*/\1/p' "$log" | head -1)"
  printf -v "${name}_KE" %s "$(sed -n 's/.*NTS-KE server on TCP port \([0-9]*\).*/\1/p' "$log" | head -1)"
}

# t_stop PID: SIGTERM, wait (at most 5 s); returns the exit status.
t_stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  wait "$pid" 2>/dev/null
}

# chronyd as a one-shot client (-Q never touches the clock).  Prints its
# log; returns its status.  Extra arguments are config lines.
t_chrony_q() {
  local conf=$T_DIR/chrony-q.conf
  printf 'pidfile %s/chrony-q.pid\n' "$T_DIR" > "$conf"
  # -u root: chronyd would otherwise drop to _chrony, which cannot read
  # the test's temporary files.  -Q never touches the clock.  -4: the test
  # servers listen on 127.0.0.1, and Debian's /etc/hosts also maps
  # localhost to ::1, which chronyd would try first.
  timeout 30 chronyd -4 -Q -u root -f "$conf" -t 10 "$@" 2>&1
}

# t_chronyd_server DIR STRATUM CERT KEY [config line...]: chronyd as an
# NTP + NTS server (local stratum STRATUM) on 127.0.0.1, on two t_port
# ports; DIR holds chrony.conf, log, the NTS dump and the command socket
# DIR/chronyd.sock (for chronyc -h).  Sets CH_NTP, CH_KE and CH_PID; a
# caller starting a second one copies them first.  Returns non-zero, after
# printing the log, if the NTS-KE port is not open within 5 s.
t_chronyd_server() {
  local dir=$1 stratum=$2 cert=$3 key=$4 line; shift 4
  CH_NTP=$(t_port) CH_KE=$(t_port)
  # chronyd refuses an ntsdumpdir that others can read.
  mkdir -p "$dir" && chmod 700 "$dir" || return 1
  {
    printf '%s\n' "local stratum $stratum" "port $CH_NTP" "ntsport $CH_KE" \
      "ntsservercert $cert" "ntsserverkey $key" "ntsdumpdir $dir" \
      "bindaddress 127.0.0.1" "allow 127.0.0.1" "cmdport 0" \
      "bindcmdaddress $dir/chronyd.sock" "pidfile $dir/chronyd.pid"
    for line in "$@"; do printf '%s\n' "$line"; done
  } > "$dir/chrony.conf"
  # -x: never touches the clock; and without CAP_SYS_TIME in case it tried.
  # -u root: the test's files are not readable by _chrony.
  setpriv --bounding-set -sys_time chronyd -4 -x -d -u root -f "$dir/chrony.conf" >"$dir/log" 2>&1 &
  CH_PID=$!
  T_PIDS+=("$CH_PID")
  t_wait 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$CH_KE" && return 0
  echo "chronyd did not open NTS-KE port $CH_KE within 5 s; $dir/log:"
  cat "$dir/log"
  return 1
}

# Offset printed by chronyd -Q ("System clock wrong by X seconds").
# Under NTSD_WRAPPER (valgrind: ntsd runs ~50 times slower) the bound is
# 0.1 s: the check is then that a sample came at all.
t_chrony_offset_ok() { # t_chrony_offset_ok LOGTEXT MAXSECONDS
  local x m=${NTSD_WRAPPER:+0.1}
  x=$(sed -n 's/.*System clock wrong by \([-0-9.e+]*\) seconds.*/\1/p' <<<"$1" | head -1)
  [ -n "$x" ] && awk -v x="$x" -v m="${m:-$2}" 'BEGIN { exit !(x < m && x > -m) }'
}

# t_wait SECONDS command...: retries the command every 0.2 s until it
# succeeds or SECONDS pass.
t_wait() {
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}

# A free high port for a daemon that cannot take a kernel-chosen one: below
# the kernel's ephemeral range (32768 up), where no other test's connections
# land, and not bound now.  Tests run two at a time, so the caller binds it
# at once.
t_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    # /proc/net lists ports in hex (":1F90 ").
    grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 \
      /proc/net/udp /proc/net/udp6 2>/dev/null || break
  done
  echo "$p"
}
