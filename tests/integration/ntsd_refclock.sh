#!/usr/bin/env bash
# ntsd as a stratum-1 server from reference clocks: SOCK and SHM fed by a
# stand-in for gpsd (refclock-writer), measured by chronyd -Q; a refclock
# with upstream servers (selection, falsetickers); config errors; PPS and
# PHC devices when the kernel has them.
# Usage: ntsd_refclock.sh ntsd ntsctl refclock-writer offset-server
NTSD=$1 NTSCTL=$2 WRITER=$3 OFFSRV=$4
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
ctl() { "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" "${@:2}"; }
stratum_is() { ctl "$1" tracking | grep -q "^Stratum *: $2\$"; }
# chronyd -Q's "System clock wrong by X": X within M of WANT
offset_near() { # offset_near LOGTEXT WANT MAX
  local x
  x=$(sed -n 's/.*System clock wrong by \([-0-9.e+]*\) seconds.*/\1/p' <<<"$1" | head -1)
  echo "  chronyd -Q: system clock wrong by ${x:-?} s (writer announced $2)"
  [ -n "$x" ] && awk -v x="$x" -v w="$2" -v m="$3" 'BEGIN { d = x - w; exit !(d < m && d > -m) }'
}
WPIDS=()
stop_writers() { local p; for p in "${WPIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; WPIDS=(); }
SHM_UNIT=$((100 + RANDOM % 100))
SHM_KEY=$(printf '0x%08x' $((0x4e545030 + SHM_UNIT)))
trap 'rc=$?; stop_writers; ipcrm -M "$SHM_KEY" 2>/dev/null; (exit $rc); t_cleanup' EXIT

# --- SOCK: stratum 1, the announced offset served -------------------------
SOCK=$T_DIR/gps.sock
MP=$(t_port)
t_start_ntsd S NTP_SERVERS= REFCLOCKS="SOCK $SOCK refid GPS poll 0" METRICS_LISTEN=127.0.0.1:$MP
t_check "SOCK socket created, mode 0660" bash -c "[ \"\$(stat -c %a '$SOCK')\" = 660 ] && [ -S '$SOCK' ]"
"$WRITER" sock "$SOCK" --offset 0.0123 --interval 100 --bad 2 & WPIDS+=($!)
t_check "SOCK: serves stratum 1" t_wait 15 stratum_is S 1
t_check "SOCK: reference ID GPS" bash -c "'$NTSCTL' -s $T_DIR/S.state/ntsd.sock tracking | grep -q 'Reference ID *: 47505300 (GPS)'"
t_check "SOCK: ntsctl sources shows '#*' GPS" bash -c "'$NTSCTL' -s $T_DIR/S.state/ntsd.sock sources | grep -q '^#\* GPS '"
t_check "SOCK: selection logged like chrony" grep -q "Selected source GPS" "$S_LOG"
t_check "SOCK: malformed datagrams dropped and logged" grep -q "Refclock GPS: datagram of .* bytes dropped" "$S_LOG"
sleep 3 # a few polls for the clock model
out=$(t_chrony_q "server 127.0.0.1 port $S_NTP iburst maxsamples 4")
t_check "SOCK: chronyd -Q measures the announced +12.3 ms within 1 ms" offset_near "$out" 0.0123 0.001
metrics() { exec 3<>/dev/tcp/127.0.0.1/$MP; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; cat <&3; }
t_check "/metrics has the refclock's offset" bash -c "$(declare -f metrics); MP=$MP; metrics | grep -q 'ntsd_source_offset_seconds{source=\"GPS\"}'"
kill -HUP "$S_PID"
t_check "SIGHUP with REFCLOCKS and no NTP_SERVERS: sources reloaded, no restart asked" t_wait 5 bash -c "grep -q 'sources reloaded' '$S_LOG' && ! grep -q 'restart ntsd' '$S_LOG'"
t_check "... and still stratum 1" stratum_is S 1
t_check "sourcestats includes the refclock" bash -c "'$NTSCTL' -s $T_DIR/S.state/ntsd.sock sourcestats | grep -q '^GPS '"
stop_writers
t_check "SOCK: a writer that stops is reported" t_wait 5 grep -q "Refclock GPS: no samples" "$S_LOG"
t_check "SOCK: ... and after 8 empty polls it is unreachable (reach 0)" t_wait 20 bash -c "'$NTSCTL' -s $T_DIR/S.state/ntsd.sock sources | grep -Eq '^#\? GPS +0 +0 +0 '"
t_stop "$S_PID"
t_check "SOCK: socket removed at exit (or left for the next start)" bash -c "[ ! -e '$SOCK' ] || [ -S '$SOCK' ]"

# --- SHM (mode 1 and 0), and ntpd's 127.127.28.N in NTP_SERVERS ------------
t_start_ntsd H NTP_SERVERS=127.127.28.$SHM_UNIT
t_check "SHM: the legacy address becomes SHM unit $SHM_UNIT" grep -q "SHM unit $SHM_UNIT" "$H_LOG"
t_check "SHM: ntsd created the segment 0600" bash -c "ipcs -m | grep -i '$SHM_KEY' | grep -q ' 600 '"
"$WRITER" shm "$SHM_UNIT" --offset -0.0042 --interval 200 --mode 1 & WPIDS+=($!)
t_check "SHM: serves stratum 1" t_wait 40 stratum_is H 1
sleep 3
out=$(t_chrony_q "server 127.0.0.1 port $H_NTP iburst maxsamples 4")
t_check "SHM mode 1: chronyd -Q measures the announced -4.2 ms within 1 ms" offset_near "$out" -0.0042 0.001
t_stop "$H_PID"; stop_writers
t_start_ntsd H0 NTP_SERVERS= REFCLOCKS="SHM $SHM_UNIT refid NMEA poll 0 filter 4"
"$WRITER" shm "$SHM_UNIT" --offset 0.0077 --interval 200 --mode 0 & WPIDS+=($!)
t_check "SHM mode 0: serves stratum 1 as NMEA" t_wait 15 bash -c "'$NTSCTL' -s $T_DIR/H0.state/ntsd.sock tracking | grep -q 'Reference ID *: 4E4D4541 (NMEA)'"
sleep 3
out=$(t_chrony_q "server 127.0.0.1 port $H0_NTP iburst maxsamples 4")
t_check "SHM mode 0: chronyd -Q measures +7.7 ms within 1 ms" offset_near "$out" 0.0077 0.001
t_stop "$H0_PID"; stop_writers

# --- pulses locked to a coarse clock: SOCK pulses, seconds from SHM --------
# The SHM clock is 20 ms off (NMEA-like); the pulses carry only the
# fraction of the second; what is served is the pulses' +12.3 ms.
t_start_ntsd L NTP_SERVERS= REFCLOCKS="SHM $SHM_UNIT refid NMEA noselect poll 0 filter 4,SOCK $SOCK refid PPS lock NMEA poll 0"
"$WRITER" shm "$SHM_UNIT" --offset 0.0323 --interval 200 & WPIDS+=($!)
"$WRITER" sock "$SOCK" --pulse --offset 0.0123 --interval 100 & WPIDS+=($!)
t_check "lock: the pulse clock is selected, NMEA is not (noselect)" t_wait 30 bash -c "'$NTSCTL' -s $T_DIR/L.state/ntsd.sock sources | grep -q '^#\* PPS ' && '$NTSCTL' -s $T_DIR/L.state/ntsd.sock sources | grep -q '^#? NMEA '"
sleep 3
out=$(t_chrony_q "server 127.0.0.1 port $L_NTP iburst maxsamples 4")
t_check "lock: chronyd -Q measures the pulses' +12.3 ms within 1 ms" offset_near "$out" 0.0123 0.001
ctl L sources
t_stop "$L_PID"; stop_writers
t_start_ntsd L2 NTP_SERVERS= REFCLOCKS="SHM $SHM_UNIT refid NMEA noselect poll 0 filter 4,SOCK $SOCK refid PPS lock NMEA poll 0"
"$WRITER" shm "$SHM_UNIT" --offset 0.3123 --interval 200 & WPIDS+=($!)
"$WRITER" sock "$SOCK" --pulse --offset 0.0123 --interval 100 & WPIDS+=($!)
t_check "lock: pulses 0.3 s from the coarse clock are ignored and logged" t_wait 20 grep -q "Refclock PPS: pulse ignored (too far from the second source NMEA)" "$L2_LOG"
t_check "lock: ... and nothing is served as stratum 1" bash -c "! '$NTSCTL' -s $T_DIR/L2.state/ntsd.sock tracking | grep -q '^Stratum *: 1\$'"
t_stop "$L2_PID"; stop_writers

# --- with upstream servers: selection and falsetickers across both ---------
t_make_certs || { echo "cannot make certificates"; exit 1; }
t_chronyd_server "$T_DIR/chrony" 1 "$T_DIR/live/fullchain.pem" "$T_DIR/live/privkey.pem" || t_fail "chronyd serves NTS-KE"
coproc OS { exec "$OFFSRV" 0 0.0; }; T_PIDS+=($OS_PID)
read -r _ OP <&"${OS[0]}"
coproc BAD { exec "$OFFSRV" 0 0.5; }; T_PIDS+=($BAD_PID)
read -r _ BP <&"${BAD[0]}"
FAST=(MINPOLL=-2 MAXPOLL=-2)
t_start_ntsd M NTP_SERVERS=nts://127.0.0.1:$CH_KE,127.0.0.1:$OP,127.0.0.1:$BP NTS_CA_FILE="$T_DIR/ca.pem" REFCLOCKS="SOCK $SOCK refid GPS poll -1" "${FAST[@]}"
"$WRITER" sock "$SOCK" --offset 0 --interval 50 & WPIDS+=($!)
t_check "mixed: the refclock is the system peer, stratum 1" t_wait 20 bash -c "'$NTSCTL' -s $T_DIR/M.state/ntsd.sock sources | grep -q '^#\* GPS '"
t_check "mixed: the 0.5 s server is a falseticker" t_wait 10 bash -c "'$NTSCTL' -s $T_DIR/M.state/ntsd.sock sources | grep -q '^^x 127.0.0.1:$BP'"
t_check "mixed: the NTS upstream is a truechimer next to the refclock" t_wait 10 bash -c "'$NTSCTL' -s $T_DIR/M.state/ntsd.sock sources | grep -Eq '^\^[+-] 127.0.0.1:$CH_KE '"
ctl M sources
t_stop "$M_PID"; stop_writers
t_start_ntsd W NTP_SERVERS=nts://127.0.0.1:$CH_KE,127.0.0.1:$OP NTS_CA_FILE="$T_DIR/ca.pem" REFCLOCKS="SOCK $SOCK refid GPS poll -1" "${FAST[@]}"
"$WRITER" sock "$SOCK" --offset 0.2 --interval 50 & WPIDS+=($!)
t_check "mixed: a refclock 200 ms off two agreeing servers is the falseticker" t_wait 20 bash -c "'$NTSCTL' -s $T_DIR/W.state/ntsd.sock sources | grep -q '^#x GPS '"
t_check "mixed: ... and a server is served, stratum 2" t_wait 10 stratum_is W 2
ctl W sources
t_stop "$W_PID"; stop_writers

# --- configuration -------------------------------------------------------
cat > "$T_DIR/rc.conf" <<CONF
# chrony.conf lines, copied
refclock SHM $SHM_UNIT refid NMEA noselect
REFCLOCKS PPS /dev/pps-none lock NMEA refid PPS
CONF
t_start_ntsd C CONFIG="$T_DIR/rc.conf" NTP_SERVERS=
t_check "config file: one line per refclock (the PPS device is missing)" grep -q "REFCLOCKS PPS: cannot open /dev/pps-none" "$C_LOG"
t_stop "$C_PID"
t_start_ntsd E1 REFCLOCKS="FOO /x"
t_check "bad driver: fatal, names REFCLOCKS and the drivers" grep -q "Fatal error : REFCLOCKS entry \"FOO /x\": unknown driver \"FOO\"; fix: use SOCK, SHM, PPS or PHC" "$E1_LOG"
t_start_ntsd E2 NTP_SERVERS=127.127.20.0
t_check "ntpd NMEA driver address: fatal, names REFCLOCKS" grep -q "127.127.20.0 is an ntpd reference clock .* set REFCLOCKS" "$E2_LOG"
t_start_ntsd E3 REFCLOCKS="SOCK $T_DIR/rc.conf"
t_check "SOCK path that is a file: refused, not removed" bash -c "grep -q 'exists and is not a socket' '$E3_LOG' && [ -f '$T_DIR/rc.conf' ]"
ln -s /etc/passwd "$T_DIR/link.sock"
t_start_ntsd E4 REFCLOCKS="SOCK $T_DIR/link.sock"
t_check "SOCK path that is a symbolic link: refused, not followed" bash -c "grep -q 'a symbolic link' '$E4_LOG' && [ -L '$T_DIR/link.sock' ]"

t_start_ntsd E5 REFCLOCKS="PPS /etc/passwd"
t_check "PPS path that is no device: refused" grep -q "/etc/passwd is not a character device" "$E5_LOG"
t_start_ntsd E6 REFCLOCKS="PPS /dev/null"
t_check "a device that is no PPS source: refused at start" grep -q "/dev/null is not an RFC 2783 PPS device" "$E6_LOG"
# A character device that is no PHC: ntsd starts, and its PTP ioctls,
# allowed by the seccomp filter, fail with an error it logs (not SIGSYS).
t_start_ntsd E7 NTP_SERVERS= REFCLOCKS="PHC /dev/null dpoll -2"
t_check "PHC ioctls pass the seccomp filter (an error logged, ntsd alive)" t_wait 5 bash -c "grep -q 'Refclock PHC0: cannot read /dev/null' '$E7_LOG' && kill -0 $E7_PID"
t_stop "$E7_PID"

# --- real devices, when the kernel offers them ------------------------------
pps=$(ls /dev/pps* 2>/dev/null | head -1)
ptp=$(ls /dev/ptp* 2>/dev/null | head -1)
if [ -n "$ptp" ]; then
  t_start_ntsd D NTP_SERVERS= REFCLOCKS="PHC $ptp refid PHC0 poll 0 dpoll -2"
  t_check "PHC $ptp: opened and read (a sample within 10 s)" t_wait 10 grep -q "Refclock PHC0: first sample" "$D_LOG"
  t_stop "$D_PID"
else
  echo "skip - PHC: no /dev/ptp* on this machine (a NIC with a PTP clock or ptp_kvm gives one)"
fi
if [ -n "$pps" ]; then
  t_start_ntsd D2 REFCLOCKS="PPS $pps refid PPS0"
  t_check "PPS $pps: opened (RFC 2783 capabilities read)" grep -q "Refclock PPS0: PPS $pps" "$D2_LOG"
  t_stop "$D2_PID"
else
  echo "skip - PPS: no /dev/pps* on this machine (pps-gpio, pps-ldisc or pps-ktimer give one)"
fi
t_done
