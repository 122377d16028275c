#!/usr/bin/env bash
# NTS-KE under a connection flood: 600 loopback addresses (each in a /24 of
# its own, 127.16.0.0/12) hold idle connections, reopen them the moment
# ntsd closes them, or trickle one byte a second; a legitimate client
# (127.0.0.1) must still complete NTS-KE in under a second, every time,
# and ntsd must be healthy afterwards.  Prints the latency and ntsd's
# counters for each flood.  Loopback only; bounded: about 40 s.
# Usage: ntsd_keflood.sh PATH/TO/ntsd PATH/TO/ntsctl PATH/TO/ntsflood
NTSD=$1 NTSCTL=$2 FLOOD=$3
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
command -v certtool >/dev/null || { echo "certtool missing (apt-get install gnutls-bin)"; exit 1; }
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem CA=$T_DIR/ca.pem
# Under valgrind ntsd is ~50 times slower: the bound is then only that
# every probe succeeds.
BOUND=${NTSD_WRAPPER:+30}
BOUND=${BOUND:-1}

stat_json() { "$NTSCTL" -s "$1" --json serverstats 2>/dev/null; }
jget() { # jget JSON KEY: a number, or "n/a" when ntsd does not report it
  local v
  v=$(sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" <<<"$1" | head -1)
  echo "${v:-n/a}"
}
nts_q() { # nts_q KEPORT: chronyd -Q over NTS (NTS-KE, then NTP)
  t_chrony_q "server localhost port 1 nts ntsport $1 iburst maxsamples 1 minpoll -4 maxpoll -4" \
    "ntstrustedcerts $CA" nosystemcert
}
idle_again() { # idle_again SOCK: no connection left open
  [ "$(jget "$(stat_json "$1")" nts_ke_sessions_active)" = 0 ]
}

# flood NAME "ntsflood options" [ntsd settings...]: a fresh ntsd (so the
# legitimate client starts with a full rate-limit bucket), the flood with
# five probes, the figures, and health checks.
flood() {
  local name=$1 opts=$2 out rc j sock; shift 2
  [ -n "${F_PID:-}" ] && t_stop "$F_PID"
  t_start_ntsd F NTS_CERT="$CERT" NTS_KEY="$KEY" "$@"
  sock=$T_DIR/F.state/ntsd.sock
  echo "--- $name: ntsflood $opts${*:+ (ntsd: $*)}"
  if [ -z "$F_KE" ]; then
    sed 's/^/  | /' "$F_LOG" | tail -5
    t_fail "$name: ntsd did not start"
    return
  fi
  # shellcheck disable=SC2086
  out=$(timeout 60 "$FLOOD" $opts -p 5 -t 10 -l "$BOUND" "$F_KE" "$CA" 2>&1)
  rc=$?
  sed 's/^/  | /' <<<"$out"
  j=$(stat_json "$sock")
  echo "  | ntsd: accepted=$(jget "$j" nts_ke_connections_accepted)" \
    "dropped=$(jget "$j" nts_ke_connections_dropped)" \
    "evicted=$(jget "$j" nts_ke_connections_evicted)" \
    "refused_ratelimit=$(jget "$j" nts_ke_refused_ratelimit)" \
    "refused_network_cap=$(jget "$j" nts_ke_refused_network_cap)" \
    "refused_full=$(jget "$j" nts_ke_refused_full)" \
    "first_byte_timeouts=$(jget "$j" nts_ke_first_byte_timeouts)"
  t_check "$name: every legitimate NTS-KE done in < $BOUND s ($(grep '^latency' <<<"$out"))" \
    [ "$rc" -eq 0 ]
  t_check "$name: ntsd alive, every connection closed after the flood" \
    t_wait 5 idle_again "$sock"
  LAST_JSON=$j
}

# Idle connections held (never a byte): the table fills; newcomers take
# the oldest silent connection's place.
flood "held idle" "-m held -n 600 -o 500 -w 3 -i 100"
# Reopened the moment ntsd closes them (rate limiting on, the default).
flood "reopening idle" "-m reopen -n 600 -w 1 -i 300"
# One byte a second, reopened when closed.
flood "reopening slow" "-m reopen -s -n 600 -w 1 -i 300"
# Without the NTS-KE rate limit, eviction alone must keep the door open
# (the flood then churns through connections as fast as it can).
flood "reopening idle, NTS_RATELIMIT=no" "-m reopen -n 600 -w 1 -i 300" NTS_RATELIMIT=no
# 600 addresses packed in three /24s: the per-network cap (32) refuses
# most of them at once.
flood "reopening from three /24s" "-m reopen -n 600 -g 200 -w 1 -i 300" NTS_RATELIMIT=no
d=$(jget "$LAST_JSON" nts_ke_refused_network_cap)
t_check "... the per-network cap refused connections ($d)" test "$d" -gt 0
t_check "NTS (KE, then NTP) works after the floods" t_chrony_offset_ok "$(nts_q "$F_KE")" 0.001
t_check "ntsd exits cleanly" t_stop "$F_PID"
t_done
