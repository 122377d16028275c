#!/usr/bin/env bash
# Source changes without a restart: SIGHUP and `ntsctl reload sources`
# re-read NTP_SERVERS from the CONFIG file; unchanged sources keep their
# state (reach); settings that need a restart say so.  127.127.1.1 beside
# servers (chrony's local); holdover in tracking and health.
# Usage: ntsd_reload.sh ntsd ntsctl offset-server
NTSD=$1 NTSCTL=$2 OFFSRV=$3
. "$(dirname "$0")/lib.sh"
FAST=(MINPOLL=-2 MAXPOLL=-2)
ctl() { "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" "${@:2}"; }
stratum_is() { ctl "$1" tracking | grep -q "^Stratum *: $2\$"; }
reach_of() { ctl "$1" sources | awk -v n="$2" '$2 == n {print $5}'; }

# offset_server NAME OFFSET: one on a free port; sets NAME (port), NAME_PID.
offset_server() {
  "$OFFSRV" 0 "$2" >"$T_DIR/$1.port" 2>&1 &
  local pid=$!
  T_PIDS+=("$pid")
  t_wait 5 grep -q "^port " "$T_DIR/$1.port"
  printf -v "$1" %s "$(sed -n 's/^port //p' "$T_DIR/$1.port")"
  printf -v "$1_PID" %s "$pid"
}
offset_server O1 0
offset_server O2 0
offset_server O3 0

# ntsd with NTP_SERVERS only in the CONFIG file (the environment would win
# over it on reload, as at start).
start_cfg() { # start_cfg NAME CONFIG VAR=value...
  local name=$1 cfg=$2 log=$T_DIR/$1.log i
  shift 2
  env -i PATH="$PATH" CONFIG="$cfg" LISTEN=127.0.0.1 NTP_PORT=0 NTS_KE_PORT=0 \
    STATE_DIR="$T_DIR/$name.state" WORKERS=1 NTSD_USER="$T_USER" \
    ${NTSD_WRAPPER:+SECCOMP=no} "$@" \
    ${NTSD_WRAPPER:-} "$NTSD" >"$log" 2>&1 &
  T_PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  printf -v "${name}_LOG" %s "$log"
  for i in $(seq 1 $((${NTSD_WRAPPER:+10 *} 100))); do
    grep -q "Control socket" "$log" && break
    sleep 0.05
  done
}
CFG=$T_DIR/ntsd.conf
printf 'NTP_SERVERS=127.0.0.1:%s,127.0.0.1:%s\n' "$O1" "$O2" > "$CFG"
chmod 644 "$CFG"
start_cfg R "$CFG" "${FAST[@]}"
t_check "syncs from two sources" t_wait 15 stratum_is R 2
t_check "both reach 377" t_wait 15 bash -c "[ \$('$NTSCTL' -s $T_DIR/R.state/ntsd.sock sources | grep -c ' 377 ') -eq 2 ]"

# --- SIGHUP: O2 out, O3 in; O1 keeps its state ---------------------------
printf 'NTP_SERVERS=127.0.0.1:%s,127.0.0.1:%s\n' "$O1" "$O3" > "$CFG"
kill -HUP "$R_PID"
t_check "reload logged: 1 added, 1 removed, 1 unchanged" t_wait 5 grep -q "sources reloaded: 1 added, 1 removed, 1 unchanged" "$R_LOG"
out=$(ctl R sources)
echo "$out"
t_check "the unchanged source kept its reach (377)" bash -c "[ '$(awk -v n=127.0.0.1:$O1 '$2 == n {print $5}' <<<"$out")' = 377 ]"
t_check "the removed source is gone" bash -c "! grep -q '127.0.0.1:$O2 ' <<<'$out'"
t_check "the new source is there, its reach starting over" bash -c \
  "r=\$(awk -v n=127.0.0.1:$O3 '\$2 == n {print \$5}' <<<'$out'); [ -n \"\$r\" ] && [ \"\$r\" != 377 ]"
t_check "NTP_SERVERS change logged as applied" grep -q "NTP_SERVERS changed: applied" "$R_LOG"
t_check "still synchronised" stratum_is R 2
t_check "the new source reaches 377 too" t_wait 15 bash -c "[ \$('$NTSCTL' -s $T_DIR/R.state/ntsd.sock sources | grep -c ' 377 ') -eq 2 ]"

# --- ntsctl reload sources: O2 back; a setting that needs a restart -------
printf 'NTP_SERVERS=127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s\nHOLDOVER=60\n' "$O1" "$O3" "$O2" > "$CFG"
out=$(ctl R reload sources)
t_check "ntsctl reload sources: 1 added, 0 removed, 2 unchanged ($out)" \
  grep -q "^OK: sources reloaded: 1 added, 0 removed, 2 unchanged" <<<"$out"
t_check "HOLDOVER named as needing a restart" grep -q "HOLDOVER changed: restart ntsd to apply it" "$R_LOG"
t_check "three sources listed" bash -c "[ \$('$NTSCTL' -s $T_DIR/R.state/ntsd.sock sources | grep -c '^\^') -eq 3 ]"
# Bad input: a malformed item leaves the sources as they were.
printf 'NTP_SERVERS=127.0.0.1:%s,ftp://x\n' "$O1" > "$CFG"
out=$(ctl R reload sources); rc=$?
t_check "a malformed item is refused (exit 1, says which)" bash -c \
  "[ $rc -eq 1 ] && grep -q 'ftp://x' <<<'$out'"
t_check "the three sources stay" bash -c "[ \$('$NTSCTL' -s $T_DIR/R.state/ntsd.sock sources | grep -c '^\^') -eq 3 ]"
t_check "ntsctl reload without 'sources' is a usage error" bash -c \
  "'$NTSCTL' -s $T_DIR/R.state/ntsd.sock reload; [ \$? -eq 2 ]"
# The socket's permissions decide who may reload (root and NTSD_USER).
t_check "the control socket is not open to others" bash -c \
  "[ \$(( 0\$(stat -c %a $T_DIR/R.state/ntsd.sock) & 7 )) -eq 0 ]"
t_stop "$R_PID"

# --- 127.127.1.1 beside a server: chrony's local -------------------------
DEAD=$(t_port)
printf 'NTP_SERVERS=127.0.0.1:%s,127.127.1.1\n' "$DEAD" > "$CFG"
start_cfg L "$CFG" "${FAST[@]}" LOCAL_STRATUM=7
t_check "no source selectable: the local clock at LOCAL_STRATUM" t_wait 5 stratum_is L 7
t_check "tracking names it LOCAL" bash -c "'$NTSCTL' -s $T_DIR/L.state/ntsd.sock tracking | grep -q '^Reference ID *: 7F7F0101 (LOCAL)'"
t_check "127.127.1.1 is never polled (not a source)" bash -c "! '$NTSCTL' -s $T_DIR/L.state/ntsd.sock sources | grep -q 127.127.1.1"
printf 'NTP_SERVERS=127.0.0.1:%s,127.127.1.1\n' "$O1" > "$CFG"
kill -HUP "$L_PID"
t_check "a source comes (reload): served at stratum 2" t_wait 15 stratum_is L 2
t_check "the switch is logged" grep -q "Local clock no longer served" "$L_LOG"
t_stop "$L_PID"

# --- holdover: the only source stops --------------------------------------
: > "$T_DIR/empty.conf"; chmod 644 "$T_DIR/empty.conf"
start_cfg H "$T_DIR/empty.conf" "${FAST[@]}" NTP_SERVERS=127.0.0.1:$O3 HOLDOVER=8
t_check "synchronised" t_wait 15 stratum_is H 2
kill "$O3_PID"
t_check "holdover shown in tracking" t_wait 10 bash -c "'$NTSCTL' -s $T_DIR/H.state/ntsd.sock tracking | grep -q '^Holdover *: yes'"
t_check "holdover in health --json" bash -c "'$NTSCTL' -s $T_DIR/H.state/ntsd.sock --json health | grep -q '\"holdover\":true'"
t_check "holdover logged" t_wait 3 grep -q "holdover, serving as synchronised for up to" "$H_LOG"
t_check "after HOLDOVER=8 s: unsynchronised" t_wait 10 bash -c "'$NTSCTL' -s $T_DIR/H.state/ntsd.sock tracking | grep -q 'Leap status *: Not synchronised'"
t_check "health --synced fails then" bash -c "! '$NTSCTL' -s $T_DIR/H.state/ntsd.sock health --synced"
t_stop "$H_PID"
t_done
