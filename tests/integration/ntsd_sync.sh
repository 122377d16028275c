#!/usr/bin/env bash
# ntsd following upstream servers: chronyd (plain and NTS), another ntsd
# (a chain), a falseticker, a server that goes silent, an upstream that NAKs.
# Usage: ntsd_sync.sh ntsd ntsctl ntp-query offset-server
NTSD=$1 NTSCTL=$2 NTPQ=$3 OFFSRV=$4
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem
FAST=(MINPOLL=-2 MAXPOLL=-2) # 0.25 s polls: minutes of sync in seconds
ctl() { "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" "${@:2}"; }
stratum_is() { ctl "$1" tracking | grep -q "^Stratum *: $2\$"; }

# --- chronyd as the reference server (local stratum 1, never touches the clock)
t_chronyd_server "$T_DIR/chrony" 1 "$CERT" "$KEY" || t_fail "chronyd serves NTS-KE"

# --- plain NTP from chronyd -----------------------------------------------
t_start_ntsd P NTP_SERVERS=127.0.0.1:$CH_NTP "${FAST[@]}"
t_check "syncs from chronyd over plain NTP: stratum 2" t_wait 15 stratum_is P 2
t_check "reference ID is chronyd's address" bash -c "'$NTSCTL' -s $T_DIR/P.state/ntsd.sock tracking | grep -q 'Reference ID *: 7F000001'"
t_check "ntsctl sources marks it selected" bash -c "'$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep -q '^\^\*'"
t_check "drift file absence logged like chrony" grep -q "Could not read valid frequency and skew from driftfile" "$P_LOG"
t_check "selection logged like chrony" grep -q "Selected source 127.0.0.1 (127.0.0.1:$CH_NTP)" "$P_LOG"
out=$(t_chrony_q "server 127.0.0.1 port $P_NTP iburst maxsamples 1")
t_check "chronyd -Q against ntsd (plain upstream): |offset| < 100 us" t_chrony_offset_ok "$out" 0.0001
t_check "ntp-query sees stratum 2" bash -c "'$NTPQ' 127.0.0.1 $P_NTP | grep -q ' s2 '"
# Give the clock model a few seconds of samples to estimate a frequency.
t_check "reach climbs to 377 (eight answered polls)" t_wait 15 bash -c \
  "'$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep -q ' 377 '"
t_check "sourcestats shows the filter's 8 samples (NP)" bash -c \
  "'$NTSCTL' -s $T_DIR/P.state/ntsd.sock sourcestats | grep -Eq '^127.0.0.1:$CH_NTP +8 +[0-9]+ +[0-9]+ '"
t_stop "$P_PID"
t_check "drift file written at exit" test -s "$T_DIR/P.state/ntsd.drift"

# --- NTS from chronyd -----------------------------------------------------
t_start_ntsd N NTP_SERVERS=nts://127.0.0.1:$CH_KE NTS_CA_FILE="$T_DIR/ca.pem" "${FAST[@]}"
t_check "syncs from chronyd over NTS: stratum 2" t_wait 15 stratum_is N 2
t_check "chronyd counted NTS-KE and authenticated packets" bash -c \
  "chronyc -h $T_DIR/chrony/chronyd.sock serverstats | grep -q 'Authenticated NTP packets *: [1-9]'"
out=$(t_chrony_q "server 127.0.0.1 port $N_NTP iburst maxsamples 1")
t_check "chronyd -Q against ntsd (NTS upstream): |offset| < 100 us" t_chrony_offset_ok "$out" 0.0001
t_stop "$N_PID"

# --- a chain: B follows A over NTS ----------------------------------------
AN=$(t_port) AK=$(t_port)
t_start_ntsd A NTS_CERT="$CERT" NTS_KEY="$KEY" NTP_PORT=$AN NTS_KE_PORT=$AK LOCAL_STRATUM=3
t_start_ntsd B NTP_SERVERS=nts://127.0.0.1:$AK NTS_CA_FILE="$T_DIR/ca.pem" NTS_CERT="$CERT" NTS_KEY="$KEY" "${FAST[@]}"
t_check "B serves stratum A+1 = 4" t_wait 15 stratum_is B 4
t_check "B's reference ID is A's address" bash -c "'$NTSCTL' -s $T_DIR/B.state/ntsd.sock tracking | grep -q 'Reference ID *: 7F000001'"
out=$(t_chrony_q "server 127.0.0.1 port 1 nts ntsport $B_KE iburst maxsamples 1 minpoll -4 maxpoll -4" "ntstrustedcerts $T_DIR/ca.pem" nosystemcert)
t_check "chronyd -Q over NTS against B: |offset| < 100 us" t_chrony_offset_ok "$out" 0.0001

# --- the upstream NAKs (new keys after a restart): B runs NTS-KE again -----
t_stop "$A_PID"
rm -rf "$T_DIR/A.state"
t_start_ntsd A2 NTS_CERT="$CERT" NTS_KEY="$KEY" NTP_PORT=$AN NTS_KE_PORT=$AK LOCAL_STRATUM=3 STATE_DIR="$T_DIR/A2.state"
t_check "B got an NTS NAK from the restarted A" t_wait 10 grep -q "NTS NAK from 127.0.0.1" "$B_LOG"
ke_before=$(grep -c "NTS-KE" "$A2_LOG")
t_check "B runs NTS-KE again and gets samples" t_wait 10 bash -c \
  "'$NTSCTL' -s $T_DIR/A2.state/ntsd.sock serverstats | grep -q 'Authenticated NTP packets *: [1-9]'"
t_stop "$B_PID"; t_stop "$A2_PID"

# --- three servers, one 10 s off: the falseticker is rejected -------------
# offset_server NAME OFFSET: starts one on a free port; sets NAME (port) and
# NAME_PID.
offset_server() {
  "$OFFSRV" 0 "$2" >"$T_DIR/$1.port" 2>&1 &
  T_PIDS+=($!)
  printf -v "${1}_PID" %s "$!"
  t_wait 5 grep -q "^port " "$T_DIR/$1.port"
  printf -v "$1" %s "$(sed -n 's/^port //p' "$T_DIR/$1.port")"
}
offset_server O1 0
offset_server O2 0.00002
offset_server O3 10
G1=$O1_PID
t_start_ntsd F NTP_SERVERS=127.0.0.1:$O1,127.0.0.1:$O2,127.0.0.1:$O3 "${FAST[@]}"
t_check "synchronised with a falseticker present" t_wait 20 stratum_is F 2
t_check "the server 10 s off is marked a falseticker (x)" t_wait 10 bash -c \
  "'$NTSCTL' -s $T_DIR/F.state/ntsd.sock sources | grep -q '^\^x 127.0.0.1:$O3'"
out=$(t_chrony_q "server 127.0.0.1 port $F_NTP iburst maxsamples 1")
t_check "served time ignores the falseticker: |offset| < 1 ms" t_chrony_offset_ok "$out" 0.001

# --- a source stops answering: unreachable, the others keep the clock ----
kill "$G1"
# Eight polls of 0.25 s, each waiting out a 1 s timeout: about 10 s.
t_check "the silent source is marked unreachable" t_wait 40 grep -q "Source 127.0.0.1 (127.0.0.1:$O1) unreachable" "$F_LOG"
t_check "its reach register is 0" bash -c \
  "[ \"\$('$NTSCTL' -s $T_DIR/F.state/ntsd.sock sources | awk '\$2 == \"127.0.0.1:$O1\" {print \$5}')\" = 0 ]"
t_check "still synchronised on the other sources" stratum_is F 2
out=$(t_chrony_q "server 127.0.0.1 port $F_NTP iburst maxsamples 1")
t_check "served time still right: |offset| < 1 ms" t_chrony_offset_ok "$out" 0.001
t_stop "$F_PID"

t_done
