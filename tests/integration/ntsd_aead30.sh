#!/usr/bin/env bash
# AEAD 30 (AES-128-GCM-SIV, 12-byte nonces) against chrony >= 4.6.1, both
# ways: chrony as NTS client of ntsd (chronyd -Q, and chronyd -x -d with
# chronyc authdata over its own command socket), and libntsntp's NTS client
# (ntsbench) against chronyd -x serving NTS.  chronyd never gets to touch
# the clock: -Q or -x, and no CAP_SYS_TIME in its bounding set.
# Usage: ntsd_aead30.sh PATH/TO/ntsd PATH/TO/ntsctl PATH/TO/ntsbench
# Exit 77 (skipped) where nettle has no GCM-SIV (< 3.9) or chrony is older
# than 4.6.1 (no record 1024, no ntsaeads directive).
NTSD=$1 NTSCTL=$2 BENCH=$3
. "$(dirname "$0")/lib.sh"
for c in chronyd chronyc certtool setpriv; do
  command -v $c >/dev/null || { echo "$c missing"; exit 1; }
done
if ! "$BENCH" core -n 1 --aead 30 >/dev/null 2>&1; then
  echo "SKIP: this build has no AES-128-GCM-SIV (nettle < 3.9)"
  exit 77
fi
ver=$(chronyd -v | awk '{print $4; exit}')
if ! printf '4.6.1\n%s\n' "$ver" | sort -V -C; then
  echo "SKIP: chrony $ver is older than 4.6.1"
  exit 77
fi
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem
# No rate limits: chrony polls every 1/16 s here, from one address.
t_start_ntsd B NTS_CERT="$CERT" NTS_KEY="$KEY" RATELIMIT=no NTS_RATELIMIT=no

# chronyd without the right to set the clock, whatever its options.
chronyd_x() { setpriv --bounding-set -sys_time chronyd -4 -x -d -u root "$@"; }

# chrony's cookie dump: line 5 is "<context id> <AEAD> <C2S> <S2C>", then
# one cookie (hex) per line.
dump_aead() { sed -n 5p "$1"/*.nts | awk '{print $2}'; }
dump_cookie_len() { sed -n 6p "$1"/*.nts | awk '{print length($1) / 2}'; }

# --- chronyd -Q: it offers 30, 15 and record 1024 --------------------------
nts_q() { # nts_q DUMPDIR [extra config lines...]
  local d=$1; shift
  mkdir -p "$d"
  t_chrony_q "server 127.0.0.1 port 1 nts ntsport $B_KE iburst maxsamples 1 minpoll -4 maxpoll -4" \
    "ntstrustedcerts $T_DIR/ca.pem" nosystemcert "ntsdumpdir $d" "$@"
}
out=$(nts_q "$T_DIR/q30")
t_check "chronyd -Q authenticates with its default AEAD list (30, 15)" t_chrony_offset_ok "$out" 0.001
t_check "chrony negotiated AEAD 30" [ "$(dump_aead "$T_DIR/q30")" = 30 ]
t_check "with 72-byte cookies" [ "$(dump_cookie_len "$T_DIR/q30")" = 72 ]
out=$(nts_q "$T_DIR/q15" "ntsaeads 15 30")
t_check "chronyd -Q with ntsaeads 15 30 authenticates" t_chrony_offset_ok "$out" 0.001
t_check "ntsd followed the client's order: AEAD 15" [ "$(dump_aead "$T_DIR/q15")" = 15 ]
out=$(nts_q "$T_DIR/qonly" "ntsaeads 30")
t_check "chronyd -Q with ntsaeads 30 only authenticates" t_chrony_offset_ok "$out" 0.001

# --- chronyd -x -d as a client; chronyc authdata over its own socket -------
mkdir -m 700 "$T_DIR/cmd"
cat > "$T_DIR/cx.conf" <<EOF
pidfile $T_DIR/cx.pid
cmdport 0
bindcmdaddress $T_DIR/cmd/chronyd.sock
server 127.0.0.1 port 1 nts ntsport $B_KE iburst minpoll -4 maxpoll -4
ntstrustedcerts $T_DIR/ca.pem
nosystemcert
EOF
chronyd_x -f "$T_DIR/cx.conf" > "$T_DIR/cx.log" 2>&1 &
CX=$!
T_PIDS+=("$CX")
cx() { chronyc -h "$T_DIR/cmd/chronyd.sock" -n -c "$@" 2>/dev/null; }
# Wait for 4 samples (authenticated responses) in sourcestats (CSV field 2).
samples() { cx sourcestats | awk -F, '$1 == "127.0.0.1" && $2 >= 4 { ok = 1 } END { exit !ok }'; }
t_check "chronyd -x -d took 4 samples from ntsd over NTS" t_wait 20 samples
ad=$(cx authdata)
echo "chronyc authdata: $ad"
# CSV: name,mode,keyid,type,klen,last,attempts,naks,cookies,cookie length
t_check "chronyc authdata: NTS with AEAD 30, 128-bit keys" \
  awk -F, '$2 == "NTS" && $4 == 30 && $5 == 128 { ok = 1 } END { exit !ok }' <<<"$ad"
t_check "chronyc authdata: no NAK, cookies kept, 72 bytes each" \
  awk -F, '$2 == "NTS" && $8 == 0 && $9 > 0 && $10 == 72 { ok = 1 } END { exit !ok }' <<<"$ad"
t_stop "$CX"
jget() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" <<<"$1" | head -1; }
st=$("$NTSCTL" -s "$T_DIR/B.state/ntsd.sock" --json serverstats)
t_check "ntsd: every NTP packet so far authenticated, none dropped, no NAK" \
  [ "$(jget "$st" ntp_packets_dropped)" = 0 -a "$(jget "$st" nts_naks_sent)" = 0 \
    -a "$(jget "$st" authenticated_ntp_packets)" = "$(jget "$st" ntp_packets_received)" ]

# --- libntsntp's client against chronyd -x serving NTS ---------------------
t_chronyd_server "$T_DIR/cs" 8 "$CERT" "$KEY" "ntsprocesses 0" || t_fail "chronyd serves NTS-KE"
bench_nts() { # bench_nts KEPORT NTPPORT AEADS: 40 NTS requests in 2 s
  timeout 30 "$BENCH" fixed -p "$2" -k "$3" -c "$T_DIR/ca.pem" --nts \
    --aead "$1" -r 20 --step-ms 2000 --burst 1 --sockets 1 2>&1
}
valid_all() { # every request answered and authenticated
  grep '^result' <<<"$1" |
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
         END { exit !(v["valid"] > 0 && v["valid"] == v["sent"] &&
                      v["invalid"] == 0 && v["nak"] == 0) }'
}
out=$(bench_nts 30,15 "$CH_NTP" "$CH_KE")
echo "$out" | grep -E 'NTS-KE|^result' | cut -c1-160
t_check "chronyd chose AEAD 30 from our list (30, 15): 64-byte cookies" \
  grep -q "NTS-KE: AEAD 30, 8 cookies of 64 bytes" <<<"$out"
t_check "our client: every chronyd response authenticated (AEAD 30)" valid_all "$out"
out=$(bench_nts 15,30 "$CH_NTP" "$CH_KE")
t_check "chronyd follows our order too: AEAD 15" grep -q "NTS-KE: AEAD 15," <<<"$out"
t_check "our client: every chronyd response authenticated (AEAD 15)" valid_all "$out"
t_stop "$CH_PID"

# --- and the same client against ntsd ---------------------------------------
out=$(bench_nts 30,15 "$B_NTP" "$B_KE")
t_check "ntsd chose AEAD 30 from our list: 72-byte cookies" \
  grep -q "NTS-KE: AEAD 30, 8 cookies of 72 bytes" <<<"$out"
t_check "our client: every ntsd response authenticated (AEAD 30)" valid_all "$out"
t_stop "$B_PID"
t_done
