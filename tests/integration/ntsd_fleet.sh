#!/usr/bin/env bash
# A fleet of ntsd instances sharing one cookie master secret (issue
# "Scale-out"), on loopback with kernel-chosen ports:
#   A   NTS_ROLE=all, advertises port 123 (no Port Negotiation record), as a
#       fleet behind one address does; on loopback the client picks the
#       instance by its port
#   B,C NTS_ROLE=ntp (NTP and NTS-authenticated NTP only, no TLS)
#   KB,KC NTS_ROLE=ke, sending clients to 127.0.0.1 and B's or C's port
#       (Server and Port Negotiation)
# Proves: cookies from NTS-KE on A authenticate on B and C (nts-query and
# chrony); chrony authenticates through a ke instance to an ntp instance;
# another secret gets NTSN NAKs; the CURRENT,PREVIOUS change-over; epoch
# boundaries (NTS_ROTATE=2) crossed with no lost request, also with KE
# instances whose clocks are 0.8 s ahead or behind; one instance restarting
# does not disturb the others and accepts the old cookies again.
# The clock-skew part needs libfaketime (Debian package); without it it is
# skipped and says so.  About 15-25 s.
# Usage: ntsd_fleet.sh ntsd ntsctl nts-query
NTSD=$1 NTSCTL=$2 NTSQ=$3
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
command -v certtool >/dev/null || { echo "certtool missing (apt-get install gnutls-bin)"; exit 1; }
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem CA=$T_DIR/ca.pem
T0=$(date +%s)

# Master secrets: 32 random bytes, 0600 (root's; ntsd reads them before it
# drops privileges).
S1=$T_DIR/secret1 S2=$T_DIR/secret2
(umask 077 && head -c 32 /dev/urandom > "$S1" && head -c 32 /dev/urandom > "$S2")
ROT=(NTS_ROTATE=2) # an epoch boundary every 2 s
TLS=(NTS_CERT="$CERT" NTS_KEY="$KEY")

# fleet_start NAME VAR=value...: t_start_ntsd with per-address limits off
# (every client here is 127.0.0.1).
fleet_start() {
  local name=$1; shift
  t_start_ntsd "$name" RATELIMIT=no NTS_RATELIMIT=no \
    NTS_MAX_CONNECTIONS_PER_CLIENT=0 "$@"
}
# stat NAME KEY: one counter from `ntsctl --json serverstats`.
stat() {
  "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" --json serverstats |
    grep -o "\"$2\":[0-9]*" | head -1 | cut -d: -f2
}
# nq KEPORT NTPPORT SAMPLES: NTS-KE at KEPORT, then SAMPLES authenticated
# exchanges with NTPPORT (used when the KE server sends no Port record).
nq() { timeout 20 "$NTSQ" --ca "$CA" --port "$1" --ntp-port "$2" --samples "$3" localhost 2>&1; }
# authenticated OUTPUT N: exactly N authenticated samples.
authenticated() { [ "$(grep -c 'authenticated: yes' <<<"$1")" -eq "$2" ]; }
# cq TAG config lines...: chronyd -Q with its own pidfile (several may run
# at once).  -Q never touches the clock.
cq() {
  local tag=$1; shift
  printf 'pidfile %s/cq-%s.pid\n' "$T_DIR" "$tag" > "$T_DIR/cq-$tag.conf"
  # -4: localhost is also ::1 in Debian's /etc/hosts (see t_chrony_q).
  timeout 30 chronyd -4 -Q -u root -f "$T_DIR/cq-$tag.conf" -t "${CQ_T:-10}" "$@" 2>&1
}
nts_line() { # nts_line NTPPORT KEPORT: chrony's server line, fast polling
  echo "server localhost port $1 nts ntsport $2 iburst maxsamples 1 minpoll -4 maxpoll -4"
}

# --- the fleet ---------------------------------------------------------------
fleet_start A "${TLS[@]}" NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}" NTS_NTP_PORT_ADVERTISED=123
fleet_start B NTS_ROLE=ntp NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}"
fleet_start C NTS_ROLE=ntp NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}"
fleet_start KB NTS_ROLE=ke "${TLS[@]}" NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}" \
  NTS_NTP_SERVER=127.0.0.1 NTS_NTP_PORT_ADVERTISED="$B_NTP"
fleet_start KC NTS_ROLE=ke "${TLS[@]}" NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}" \
  NTS_NTP_SERVER=127.0.0.1 NTS_NTP_PORT_ADVERTISED="$C_NTP"
t_check "A, B, C, KB, KC started" \
  test -n "$A_NTP" -a -n "$A_KE" -a -n "$B_NTP" -a -n "$C_NTP" -a -n "$KB_KE" -a -n "$KC_KE"
t_check "every instance derives its keys from the secret (no key file)" bash -c \
  "for n in A B C KB KC; do grep -q 'NTS keys derived from the shared secret' $T_DIR/\$n.log || exit 1; \
   [ ! -e $T_DIR/\$n.state/ntskeys ] || exit 1; done"
t_check "ntp role: no NTS-KE, no TLS" bash -c "! grep -q 'NTS-KE server' $B_LOG && grep -q 'NTS_ROLE=ntp' $B_LOG"
t_check "ke role: no NTP socket" bash -c "! grep -q 'serving NTP' $KB_LOG"

# --- cookies from NTS-KE on A authenticate on B and C ----------------------
for n in B C; do
  port_var=${n}_NTP
  a_ke0=$(stat A nts_ke_connections_accepted) auth0=$(stat "$n" authenticated_ntp_packets)
  out=$(nq "$A_KE" "${!port_var}" 4)
  t_check "nts-query: NTS-KE on A, 4 authenticated samples from $n" authenticated "$out" 4
  t_check "$n counted them as authenticated" \
    test "$(stat "$n" authenticated_ntp_packets)" -ge $((auth0 + 4))
  t_check "the cookies came from A's NTS-KE" \
    test "$(stat A nts_ke_connections_accepted)" -gt "$a_ke0"
  auth0=$(stat "$n" authenticated_ntp_packets)
  out=$(cq "ab$n" "$(nts_line "${!port_var}" "$A_KE")" "ntstrustedcerts $CA" nosystemcert)
  echo "$out" > "$T_DIR/cq-ab$n.out"
  t_check "chrony: NTS-KE on A, authenticated NTP with $n" t_chrony_offset_ok "$out" 0.001
  t_check "$n counted chrony's authenticated requests" \
    test "$(stat "$n" authenticated_ntp_packets)" -gt "$auth0"
done
t_check "A's own NTP port saw none of it" test "$(stat A ntp_packets_received)" -eq 0
out=$(nq "$A_KE" "$A_NTP" 2)
t_check "A serves NTS itself too" authenticated "$out" 2

# --- through a ke-role instance: Server and Port Negotiation ----------------
out=$(nq "$KB_KE" 1 2)
t_check "nts-query via KB: told NTP server 127.0.0.1 port B (Server + Port Negotiation)" \
  grep -q "NTP server 127.0.0.1 port $B_NTP\$" <<<"$out"
t_check "nts-query via KB: authenticated by B" authenticated "$out" 2
for n in B C; do
  ke_var=K${n}_KE port_var=${n}_NTP
  auth0=$(stat "$n" authenticated_ntp_packets)
  out=$(cq "k$n" "$(nts_line 1 "${!ke_var}")" "ntstrustedcerts $CA" nosystemcert)
  t_check "chrony through ke instance K$n to ntp instance $n" t_chrony_offset_ok "$out" 0.001
  t_check "chrony followed Port Negotiation to $n" grep -q "changed port to ${!port_var}" <<<"$out"
  t_check "$n counted chrony's authenticated requests" \
    test "$(stat "$n" authenticated_ntp_packets)" -gt "$auth0"
done

# --- another secret: NTSN NAKs; the CURRENT,PREVIOUS change-over ------------
fleet_start D NTS_ROLE=ntp NTS_KEY_SECRET_FILE="$S2" "${ROT[@]}"
# Change-over step 1: accept S2 while still sealing with S1 ...
fleet_start E NTS_ROLE=ntp NTS_KEY_SECRET_FILE="$S1,$S2" "${ROT[@]}"
# ... step 2: seal with S2, still accept S1.
fleet_start F "${TLS[@]}" NTS_KEY_SECRET_FILE="$S2,$S1" "${ROT[@]}" NTS_NTP_PORT_ADVERTISED=123
out=$(nq "$A_KE" "$D_NTP" 1)
t_check "a different secret: the client reports an NTS NAK" grep -q "NTS NAK" <<<"$out"
t_check "a different secret: D counted the NAK" test "$(stat D nts_naks_sent)" -ge 1
t_check "a different secret: reason unknown-key" bash -c \
  "'$NTSCTL' -s $T_DIR/D.state/ntsd.sock --json serverstats | grep -q '\"unknown-key\":[1-9]'"
out=$(CQ_T=3 cq dnak "$(nts_line "$D_NTP" "$A_KE")" "ntstrustedcerts $CA" nosystemcert)
t_check "chrony gets no sample from D with A's cookies" bash -c "! grep -q 'System clock wrong' <<<'$out'"
t_check "E (S1,S2) logs that the previous secret is accepted" grep -q "previous secret still accepted" "$E_LOG"
out=$(nq "$A_KE" "$E_NTP" 2)
t_check "change-over: E (S1,S2) accepts S1 cookies" authenticated "$out" 2
out=$(nq "$F_KE" "$E_NTP" 2)
t_check "change-over: E (S1,S2) accepts cookies sealed with S2 by F" authenticated "$out" 2
out=$(nq "$A_KE" "$F_NTP" 2)
t_check "change-over: F (S2,S1) accepts S1 cookies" authenticated "$out" 2
naks0=$(stat B nts_naks_sent)
out=$(nq "$F_KE" "$B_NTP" 1)
t_check "B (S1 only) NAKs S2 cookies: why step 1 comes first" grep -q "NTS NAK" <<<"$out"
t_check "B counted that NAK" test "$(stat B nts_naks_sent)" -gt "$naks0"
t_stop "$D_PID"; t_stop "$E_PID"; t_stop "$F_PID"

# --- epoch boundaries: no lost request --------------------------------------
# KE instances whose clocks are 0.8 s ahead and 0.8 s behind (libfaketime,
# their process only): their cookies are sealed under the neighbouring
# epoch's key for 40% of each 2 s epoch.
FT=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if grep -qa __asan_init "$NTSD"; then
  # ASan's runtime must be the first library loaded: no LD_PRELOAD.
  echo "# ntsd built with ASan: no libfaketime, no clock-skew checks here"
  SKEWED=()
elif [ -e "$FT" ]; then
  fleet_start KF NTS_ROLE=ke "${TLS[@]}" NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}" \
    NTS_NTP_SERVER=127.0.0.1 NTS_NTP_PORT_ADVERTISED="$C_NTP" \
    LD_PRELOAD="$FT" FAKETIME=+0.8 DONT_FAKE_MONOTONIC=1
  fleet_start KS NTS_ROLE=ke "${TLS[@]}" NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}" \
    NTS_NTP_SERVER=127.0.0.1 NTS_NTP_PORT_ADVERTISED="$C_NTP" \
    LD_PRELOAD="$FT" FAKETIME=-0.8 DONT_FAKE_MONOTONIC=1
  SKEWED=(KF KS)
else
  echo "FAIL - libfaketime missing (apt-get install libfaketime): the clock-skew checks cannot run"
  T_FAIL=$((T_FAIL + 1))
  SKEWED=()
fi
for n in B C; do eval "naks0_$n=$(stat $n nts_naks_sent)"; done
kb_ke0=$(stat KB nts_ke_connections_accepted)
rot0=$(grep -c "Rotated NTS server keys" "$B_LOG")
DUMP=$T_DIR/chrony-dump
mkdir -p "$DUMP" && chmod 700 "$DUMP"
# chrony through KB to B, one -Q run after another, carrying its cookies in
# ntsdumpdir: only the first run does NTS-KE, the others use cookies sealed
# in an earlier run (and often an earlier epoch).
chrony_loop() { # chrony_loop SECONDS -> prints "runs ok"
  local end=$(( $(date +%s) + $1 )) runs=0 ok=0 out
  while [ "$(date +%s)" -lt "$end" ]; do
    out=$(cq loop "$(nts_line 1 "$KB_KE")" "ntstrustedcerts $CA" nosystemcert "ntsdumpdir $DUMP")
    runs=$((runs + 1))
    if t_chrony_offset_ok "$out" 0.001; then ok=$((ok + 1))
    else echo "$out" > "$T_DIR/chrony-loop-fail.$runs"; fi
  done
  echo "$runs $ok"
}
# nts-query: NTS-KE at A (and at the skewed KE instances), NTP at C.
nq_loop() { # nq_loop SECONDS KEPORT -> prints "runs ok"
  local end=$(( $(date +%s) + $1 )) runs=0 ok=0 out
  while [ "$(date +%s)" -lt "$end" ]; do
    out=$(nq "$2" "$C_NTP" 3)
    runs=$((runs + 1))
    if authenticated "$out" 3; then ok=$((ok + 1))
    else echo "$out" > "$T_DIR/nq-loop-fail.$2.$runs"; fi
    sleep 0.05
  done
  echo "$runs $ok"
}
chrony_loop 7 > "$T_DIR/loop.chrony" &
lp=$!
nq_loop 7 "$A_KE" > "$T_DIR/loop.A" &
lps=($!)
for k in "${SKEWED[@]}"; do
  ke_var=${k}_KE
  nq_loop 7 "${!ke_var}" > "$T_DIR/loop.$k" &
  lps+=($!)
done
wait "$lp" "${lps[@]}"
read -r runs ok < "$T_DIR/loop.chrony"
rots=$(( $(grep -c "Rotated NTS server keys" "$B_LOG") - rot0 ))
t_check "at least 3 epoch boundaries crossed ($rots)" test "$rots" -ge 3
t_check "chrony across boundaries: $ok of $runs runs authenticated" test "$runs" -ge 3 -a "$ok" -eq "$runs"
t_check "chrony kept using its cookies: one NTS-KE at KB" \
  test "$(stat KB nts_ke_connections_accepted)" -eq $((kb_ke0 + 1))
for k in A "${SKEWED[@]}"; do
  read -r runs ok < "$T_DIR/loop.$k"
  t_check "nts-query via $k to C across boundaries: $ok of $runs runs, 3 samples each" \
    test "$runs" -ge 3 -a "$ok" -eq "$runs"
done
t_check "no NTS NAKs on B and C across boundaries" \
  test "$(stat B nts_naks_sent)" -eq "$naks0_B" -a "$(stat C nts_naks_sent)" -eq "$naks0_C"
if [ ${#SKEWED[@]} -gt 0 ]; then
  t_check "libfaketime moves the skewed instances' clocks" bash -c \
    "[ \$(( \$(LD_PRELOAD=$FT FAKETIME=+0.8 DONT_FAKE_MONOTONIC=1 date +%s%N) / 1000000 - \$(date +%s%N) / 1000000 )) -ge 500 ]"
fi
t_check "same key ids on every instance" bash -c \
  "for n in B C KB; do grep -o 'current key [0-9A-F]*' $T_DIR/\$n.log | tail -2 | head -1 | \
   xargs -I{} grep -q '{}' $A_LOG || exit 1; done"

# --- one instance restarting does not disturb the others --------------------
# Queries keep going to A (its own NTP) and C while B stops and starts again
# with the same secret and port.  chrony refreshes its cookies from B just
# before the stop and spends them right after the start: no state but the
# secret is needed for old cookies to stay valid.
nq_loop 4 "$A_KE" > "$T_DIR/loop.restart" &
lp=$!
(end=$(( $(date +%s) + 4 )) runs=0 ok=0
 while [ "$(date +%s)" -lt "$end" ]; do
   out=$(nq "$A_KE" "$A_NTP" 3); runs=$((runs + 1))
   if authenticated "$out" 3; then ok=$((ok + 1))
   else echo "$out" > "$T_DIR/nq-loop-fail.A.$runs"; fi
   sleep 0.05
 done; echo "$runs $ok") > "$T_DIR/loop.restartA" &
lpa=$!
out=$(cq loop "$(nts_line 1 "$KB_KE")" "ntstrustedcerts $CA" nosystemcert "ntsdumpdir $DUMP")
t_check "chrony refreshed its cookies from B" t_chrony_offset_ok "$out" 0.001
kb_ke0=$(stat KB nts_ke_connections_accepted)
t_stop "$B_PID"
t_check "B is gone" bash -c "! kill -0 $B_PID 2>/dev/null"
fleet_start B2 NTS_ROLE=ntp NTS_KEY_SECRET_FILE="$S1" "${ROT[@]}" NTP_PORT="$B_NTP" \
  STATE_DIR="$T_DIR/B.state"
t_check "B restarted on the same port" test "$B2_NTP" = "$B_NTP"
out=$(cq loop "$(nts_line 1 "$KB_KE")" "ntstrustedcerts $CA" nosystemcert "ntsdumpdir $DUMP")
t_check "restarted B accepts cookies issued before its restart" t_chrony_offset_ok "$out" 0.001
t_check "... with no new NTS-KE" test "$(stat KB nts_ke_connections_accepted)" -eq "$kb_ke0"
t_check "... and no NAK" test "$(stat B nts_naks_sent)" -eq 0
wait "$lp" "$lpa"
read -r runs ok < "$T_DIR/loop.restart"
t_check "C undisturbed during B's restart: $ok of $runs runs" test "$runs" -ge 3 -a "$ok" -eq "$runs"
read -r runs ok < "$T_DIR/loop.restartA"
t_check "A undisturbed during B's restart: $ok of $runs runs" test "$runs" -ge 3 -a "$ok" -eq "$runs"
out=$(nq "$A_KE" "$B_NTP" 2)
t_check "restarted B serves new clients" authenticated "$out" 2

for n in A B2 C KB KC "${SKEWED[@]}"; do
  pv=${n}_PID
  t_check "$n exits cleanly" t_stop "${!pv}"
done
echo "# took $(( $(date +%s) - T0 )) s"
t_done
