#!/usr/bin/env bash
# Interleaved mode (RFC 9769): chrony 4.3 clients with xleave, plain and
# NTS, get interleaved responses from ntsd; a client that never asked gets
# basic ones; a full client table still answers everyone (basic once the
# state is evicted); ntsd's own client runs interleaved against chronyd.
# Usage: ntsd_xleave.sh ntsd ntsctl
NTSD=$1 NTSCTL=$2
. "$(dirname "$0")/lib.sh"
for c in chronyd chronyc certtool setpriv; do
  command -v $c >/dev/null || { echo "$c missing (apt-get install chrony gnutls-bin util-linux)"; exit 1; }
done
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem
# chronyd never gets CAP_SYS_TIME here, on top of -x.
chronyd_x() { setpriv --bounding-set -sys_time chronyd -4 -x -d -u root "$@"; }
jget() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" <<<"$1" | head -1; }
stats() { "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" --json serverstats; }

# chronyd -x -d as a client of 127.0.0.1 (config lines as arguments), with
# its own command socket; sets CX (pid) and CXS (socket).
start_client() { # start_client NAME LINES...
  local n=$1; shift
  mkdir -m 700 "$T_DIR/$n"
  { printf 'pidfile %s/%s/pid\ncmdport 0\nbindcmdaddress %s/%s/sock\n' "$T_DIR" "$n" "$T_DIR" "$n"
    printf '%s\n' "$@"; } > "$T_DIR/$n/conf"
  chronyd_x -f "$T_DIR/$n/conf" > "$T_DIR/$n/log" 2>&1 &
  CX=$!
  T_PIDS+=("$CX")
  CXS=$T_DIR/$n/sock
}
ntpdata() { chronyc -h "$1" -n ntpdata 127.0.0.1 2>/dev/null; }
# At least N samples taken from 127.0.0.1 (sourcestats CSV field 2).
samples() { chronyc -h "$1" -n -c sourcestats 2>/dev/null |
  awk -F, -v n="$2" '$1 == "127.0.0.1" && $2 >= n { ok = 1 } END { exit !ok }'; }
interleaved() { ntpdata "$1" | grep -q '^Interleaved *: Yes'; }
# Peer delay (s) in chronyc ntpdata.
peer_delay() { ntpdata "$1" | sed -n 's/^Peer delay *: \([-0-9.e]*\).*/\1/p'; }

# --- plain NTP: a basic client, then an xleave one from another address ---
# Interleaved state is kept per client address (as chrony does): the two
# clients use 127.0.0.2 and 127.0.0.1.  Limits as fast as the clients poll.
t_start_ntsd A RATELIMIT_INTERVAL=-5
start_client basic "server 127.0.0.1 port $A_NTP minpoll -3 maxpoll -3" "bindacqaddress 127.0.0.2"
BA=$CX BAS=$CXS
t_check "basic client: 8 samples" t_wait 20 samples "$BAS" 8
st=$(stats A)
t_check "chronyc ntpdata (no xleave): Interleaved : No" bash -c "chronyc -h $BAS -n ntpdata 127.0.0.1 | grep -q '^Interleaved *: No'"
t_check "a client that never asked: no interleaved response, no TX timestamp" \
  [ "$(jget "$st" interleaved_ntp_packets)" = 0 -a "$(jget "$st" ntp_kernel_tx_timestamps)" = 0 ]
start_client xl "server 127.0.0.1 port $A_NTP minpoll -3 maxpoll -3 xleave"
XL=$CX XLS=$CXS
t_check "xleave client: 8 samples" t_wait 20 samples "$XLS" 8
t_check "chronyc ntpdata (xleave): Interleaved : Yes" t_wait 10 interleaved "$XLS"
out=$(ntpdata "$XLS")
echo "$out" | grep -E 'Interleaved|Peer delay|Offset|Total'
d=$(peer_delay "$XLS")
t_check "interleaved peer delay on loopback below 50 us ($d s)" \
  awk -v d="$d" 'BEGIN { exit !(d != "" && d < 0.00005) }'
t_check "the basic client still gets basic responses" bash -c "chronyc -h $BAS -n ntpdata 127.0.0.1 | grep -q '^Interleaved *: No'"
st=$(stats A)
echo "serverstats: interleaved $(jget "$st" interleaved_ntp_packets), kernel TX timestamps $(jget "$st" ntp_kernel_tx_timestamps), dropped $(jget "$st" ntp_packets_dropped)"
t_check "ntsd counted interleaved responses" [ "$(jget "$st" interleaved_ntp_packets)" -gt 0 ]
t_check "ntsd counted kernel transmit timestamps" [ "$(jget "$st" ntp_kernel_tx_timestamps)" -gt 0 ]
t_stop "$XL"; t_stop "$BA"
t_stop "$A_PID"

# --- NTS: the same with authenticated responses ------------------------------
t_start_ntsd B NTS_CERT="$CERT" NTS_KEY="$KEY" RATELIMIT_INTERVAL=-5
start_client nts "server 127.0.0.1 port 1 nts ntsport $B_KE minpoll -3 maxpoll -3 xleave" \
  "ntstrustedcerts $T_DIR/ca.pem" nosystemcert
NX=$CX NXS=$CXS
t_check "NTS xleave client: 8 samples" t_wait 30 samples "$NXS" 8
out=$(ntpdata "$NXS")
echo "$out" | grep -E 'Authenticated|Interleaved|Peer delay'
t_check "chronyc ntpdata (NTS, xleave): Authenticated : Yes" grep -q '^Authenticated *: Yes' <<<"$out"
t_check "chronyc ntpdata (NTS, xleave): Interleaved : Yes" interleaved "$NXS"
st=$(stats B)
t_check "ntsd: every NTP packet authenticated, none dropped" \
  [ "$(jget "$st" ntp_packets_dropped)" = 0 -a \
    "$(jget "$st" authenticated_ntp_packets)" = "$(jget "$st" ntp_packets_received)" ]
t_stop "$NX"
t_stop "$B_PID"

# --- a client table at its bound: 1 KiB, one bucket of 8 clients per worker.
# Flooding it from other addresses evicts the xleave client's state: it
# gets basic answers (never a wrong interleaved one), then interleaved again.
t_start_ntsd C CLIENT_LOG_LIMIT=2048 RATELIMIT_INTERVAL=-5 WORKERS=1
start_client xc "server 127.0.0.1 port $C_NTP minpoll -3 maxpoll -3 xleave"
XC=$CX XCS=$CXS
t_check "xleave client of a tiny table: interleaved" t_wait 20 interleaved "$XCS"
flood() { # one request from each of 127.0.1.1 .. 127.0.1.N
  python3 - "$C_NTP" "$1" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
req = bytes([0x23]) + bytes(39) + bytes(range(8))
for i in range(1, n + 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.1.%d" % i, 0)); s.settimeout(0.5)
    s.sendto(req, ("127.0.0.1", port))
    try: s.recv(100)
    except OSError: pass
    s.close()
PY
}
for i in 1 2 3 4 5 6 7 8 9 10; do flood 40; sleep 0.05; done
st=$(stats C)
echo "after the flood: $(jget "$st" ntp_packets_received) received, $(jget "$st" ntp_packets_dropped) dropped"
t_check "flood from 40 addresses: every request answered" [ "$(jget "$st" ntp_packets_dropped)" = 0 ]
t_check "the xleave client kept taking valid samples" t_wait 20 samples "$XCS" 16
t_check "and runs interleaved again" t_wait 20 interleaved "$XCS"
t_stop "$XC"
t_stop "$C_PID"

# --- ntsd's own client, interleaved, against chronyd (plain and NTS) -----
t_chronyd_server "$T_DIR/cs" 1 "$CERT" "$KEY" || t_fail "chronyd serves NTS-KE"
ch_xl() { chronyc -h "$T_DIR/cs/chronyd.sock" serverstats 2>/dev/null | sed -n 's/^Interleaved NTP packets *: //p'; }
ntsdata() { "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" ntpdata 2>/dev/null; }
ntsd_xl() { ntsdata "$1" | grep -q '^Interleaved *: Yes' &&
  ntsdata "$1" | grep -q '^TX timestamping *: Kernel'; }
t_start_ntsd P NTP_SERVERS="127.0.0.1:$CH_NTP?xleave" MINPOLL=-2 MAXPOLL=-2
t_check "ntsd (plain upstream, ?xleave): ntpdata says Interleaved, kernel TX stamps" t_wait 20 ntsd_xl P
ntsdata P | grep -E 'Interleaved|timestamping|Peer delay|Offset'
t_check "chronyd answered ntsd interleaved" [ "$(ch_xl)" -gt 0 ]
t_stop "$P_PID"
n0=$(ch_xl)
t_start_ntsd Q NTP_SERVERS="nts://127.0.0.1:$CH_KE?xleave" NTS_CA_FILE="$T_DIR/ca.pem" MINPOLL=-2 MAXPOLL=-2
t_check "ntsd (NTS upstream, ?xleave): ntpdata says Interleaved, kernel TX stamps" t_wait 20 ntsd_xl Q
t_check "ntsd (NTS upstream): authenticated" bash -c "'$NTSCTL' -s $T_DIR/Q.state/ntsd.sock ntpdata | grep -q '^Authenticated *: Yes'"
t_check "chronyd answered more interleaved NTS requests" [ "$(ch_xl)" -gt "$n0" ]
t_stop "$Q_PID"
t_start_ntsd R NTP_SERVERS="127.0.0.1:$CH_NTP" MINPOLL=-2 MAXPOLL=-2
t_check "without ?xleave: basic mode" t_wait 20 bash -c "'$NTSCTL' -s $T_DIR/R.state/ntsd.sock ntpdata | grep -q '^Interleaved *: No'"
t_stop "$R_PID"
out=$(env -i PATH="$PATH" NTP_SERVERS="127.0.0.1?xleav" LISTEN=127.0.0.1 NTP_PORT=0 NTS_KE_PORT=0 \
  STATE_DIR="$T_DIR/bad.state" NTSD_USER="$T_USER" timeout 10 "$NTSD" 2>&1); rc=$?
t_check "an unknown item option stops ntsd and names the syntax" \
  bash -c "[ $rc -ne 0 ] && grep -q '?xleave' <<<'$out'"
t_stop "$CH_PID"

t_done
