#!/usr/bin/env bash
# examples/nts-blocking (blocking sockets on the sans-I/O NTS client,
# linked to libntsntp-core alone) gets an authenticated sample from ntsd
# and from chronyd serving NTS (chronyd -x: it never touches the clock).
# Usage: nts_blocking.sh NTSD NTS-BLOCKING
. "$(dirname "$0")/lib.sh"
NTSD=$1 EX=$2
for c in chronyd certtool setpriv; do
  command -v $c >/dev/null || { echo "$c missing (apt-get install chrony gnutls-bin util-linux)"; exit 1; }
done
t_make_certs || { echo "certtool failed"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem

t_check "nts-blocking needs no libuv" sh -c "! objdump -p '$EX' | grep -q 'NEEDED.*libuv'"

t_start_ntsd A NTS_CERT="$CERT" NTS_KEY="$KEY"
out=$(timeout 20 "$EX" 127.0.0.1 "$A_KE" "$T_DIR/ca.pem" 2>&1)
echo "  $out"
offset_ok() { # offset_ok TEXT MAX: "offset +0.000012 s" within +-MAX
  local x
  x=$(sed -n 's/.*offset \([-+0-9.]*\) s.*/\1/p' <<<"$1")
  [ -n "$x" ] && awk -v x="$x" -v m="$2" 'BEGIN { exit !(x < m && x > -m) }'
}
t_check "nts-blocking: authenticated sample from ntsd, offset within 5 ms" offset_ok "$out" 0.005
out=$(timeout 20 "$EX" 127.0.0.1 "$A_KE" 2>&1)
t_check "nts-blocking: ntsd's test CA is not in the system store: TLS fails, with the reason" \
  grep -q "NTS-KE with 127.0.0.1 failed: .*" <<<"$out"
out=$(timeout 20 "$EX" 127.0.0.1 1 "$T_DIR/ca.pem" 2>&1); rc=$?
t_check "nts-blocking: no NTS-KE server: exit 1 and a message" [ $rc = 1 -a -n "$out" ]

# chronyd -x serving NTS (Port Negotiation names its NTP port).
t_chronyd_server "$T_DIR/cs" 8 "$CERT" "$KEY" "ntsprocesses 0" || t_fail "chronyd serves NTS-KE"
out=$(timeout 20 "$EX" 127.0.0.1 "$CH_KE" "$T_DIR/ca.pem" 2>&1)
echo "  $out"
t_check "nts-blocking: authenticated sample from chronyd, offset within 5 ms" offset_ok "$out" 0.005
t_done
