#!/usr/bin/env bash
# ntsd with pool:// in NTP_SERVERS: names with several addresses from a
# private /etc/hosts (a mount namespace of this test only), chronyd -x
# servers on 127.0.0.11-16 and ::1 (same port) as the pool's members;
# members stopping and coming back, at most MAXSOURCES at once; a plain
# HOST whose first address does not answer.
# Usage: ntsd_pool.sh ntsd ntsctl
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
  echo "needs root and unshare (a private /etc/hosts): skipped"; exit 77
fi
if [ -z "${NTSD_POOL_NS:-}" ]; then
  # Mounts made in here stay in here (unshare makes them private).  In a
  # chroot whose / is not a mount point that cannot be done.
  if ! err=$(unshare -m true 2>&1); then
    echo "cannot make a private mount namespace here ($err): skipped"
    echo "(in a chroot, bind-mount the root on itself first, as tools/in-root.sh does)"
    exit 77
  fi
  NTSD_POOL_NS=1 exec unshare -m bash "$0" "$@"
fi
NTSD=$1 NTSCTL=$2
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
FAST=(MINPOLL=-2 MAXPOLL=-2 ${NTSD_WRAPPER:+SECCOMP=no}) # 0.25 s polls: 8 polls are 2 s
ctl() { "$NTSCTL" -s "$T_DIR/$1.state/ntsd.sock" "${@:2}"; }
stratum_is() { ctl "$1" tracking | grep -q "^Stratum *: $2\$"; }
# Source lines of `ntsctl sources` (after the two header lines).
src_lines() { ctl "$1" sources | grep '^\^'; }
n_sources() { src_lines "$1" | wc -l; }

CP=$(t_port)
MEMBERS=(127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15 127.0.0.16 ::1)
declare -A CPID
# member ADDRESS: a chronyd serving its local clock there (never touches
# this machine's clock: -x, and no CAP_SYS_TIME).
member() {
  local a=$1 d=$T_DIR/chrony-${1//:/_} fam=-4
  [[ $a == *:* ]] && fam=-6
  mkdir -p "$d" && chmod 700 "$d"
  cat > "$d/chrony.conf" <<CONF
local stratum 1
port $CP
bindaddress $a
allow all
cmdport 0
pidfile $d/chronyd.pid
driftfile $d/drift
CONF
  setpriv --bounding-set -sys_time chronyd $fam -x -d -u root -f "$d/chrony.conf" >"$d/log" 2>&1 &
  CPID[$a]=$!
  T_PIDS+=($!)
}
stop_member() { kill "${CPID[$1]}" 2>/dev/null; wait "${CPID[$1]}" 2>/dev/null; }
for a in "${MEMBERS[@]}"; do member "$a"; done

# The private resolver: several addresses per name (host.conf: multi on).
{
  echo "127.0.0.1 localhost"
  for a in "${MEMBERS[@]}"; do echo "$a pool.test"; done
  echo "127.0.0.31 nts.pool.test"
  echo "127.0.0.32 nts.pool.test"
  echo "127.0.0.2 multi.test" # nothing answers here
  echo "127.0.0.11 multi.test"
} > "$T_DIR/hosts"
echo "multi on" > "$T_DIR/host.conf"
mount --bind "$T_DIR/hosts" /etc/hosts && mount --bind "$T_DIR/host.conf" /etc/host.conf ||
  { echo "cannot bind-mount a private /etc/hosts"; exit 1; }
t_check "pool.test has 7 addresses (6 IPv4, 1 IPv6)" \
  bash -c "[ \$(getent ahosts pool.test | awk '{print \$1}' | sort -u | wc -l) -eq 7 ]"
sleep 1 # chronyd binds

# --- a pool of 7 addresses, 3 at once ------------------------------------
t_start_ntsd P NTP_SERVERS=pool://pool.test:$CP MAXSOURCES=3 "${FAST[@]}"
t_check "syncs from the pool: stratum 2" t_wait 20 stratum_is P 2
t_check "three members polled, none more" t_wait 10 bash -c "[ \$('$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep -c '^\^') -eq 3 ]"
t_check "members listed by address (chronyc -n)" bash -c \
  "'$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep '^\^' | awk '{print \$2}' | grep -qvE '^(127\.0\.0\.1[1-6]|::1)\$' && exit 1 || exit 0"
t_check "all three reachable" t_wait 10 bash -c "[ \$('$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep '^\^' | awk '\$5 != 0' | wc -l) -eq 3 ]"
echo "--- ntsctl sources (pool://pool.test:$CP, MAXSOURCES=3):"
ctl P sources
# A member in use stops: it is replaced by another address of the pool.
gone=$(src_lines P | awk 'NR == 1 {print $2}')
stop_member "$gone"
t_check "stopped member $gone replaced (not listed, three again)" t_wait 20 bash -c \
  "out=\$('$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep '^\^'); ! grep -q ' $gone ' <<<\"\$out\" && [ \$(wc -l <<<\"\$out\") -eq 3 ]"
t_check "replacement logged" grep -q "Source $gone (pool pool.test:$CP) unreachable: replacing it" "$P_LOG"
t_check "still synchronised" stratum_is P 2
# Most members stop: never more than MAXSOURCES at once while it looks
# for ones that answer.
stopped=()
for a in "${MEMBERS[@]}"; do
  [ "$a" = "$gone" ] && continue
  [ ${#stopped[@]} -ge 4 ] && break
  stop_member "$a"; stopped+=("$a")
done
max=0
for i in $(seq 1 40); do
  n=$(n_sources P); [ "$n" -gt "$max" ] && max=$n
  sleep 0.25
done
t_check "at most MAXSOURCES=3 members at any time (saw $max)" test "$max" -le 3
# They come back: three reachable members again.
for a in "$gone" "${stopped[@]}"; do member "$a"; done
t_check "members back: three reachable" t_wait 40 bash -c "[ \$('$NTSCTL' -s $T_DIR/P.state/ntsd.sock sources | grep '^\^' | awk '\$5 != 0 && \$5 != \"-\"' | wc -l) -eq 3 ]"
t_check "synchronised again" t_wait 10 stratum_is P 2
t_check "ntsd did not log an error" bash -c "! grep -qiE 'fatal|assert|ERROR: [A-Za-z]+Sanitizer|runtime error:' '$P_LOG'"
echo "--- ntsctl sources after members stopped and came back:"
ctl P sources
t_stop "$P_PID"

# --- a plain HOST: the first address does not answer -> the next ------
t_start_ntsd M NTP_SERVERS=multi.test:$CP "${FAST[@]}"
t_check "plain host moves to its next address" t_wait 20 grep -q "Source 127.0.0.2 (multi.test:$CP) does not answer: trying 127.0.0.11" "$M_LOG"
t_check "and syncs from it: stratum 2" t_wait 20 stratum_is M 2
t_check "one source: said once that falsetickers cannot be detected" \
  bash -c "[ \$(grep -c 'Only one source (multi.test:$CP): a falseticker cannot be detected' '$M_LOG') -eq 1 ]"
t_stop "$M_PID"

# --- pool+nts://: NTS-KE with each address, the certificate naming the pool
d=$T_DIR/nts; mkdir -p "$d"
printf 'cn = "pool test CA"\nca\ncert_signing_key\nexpiration_days = 30\n' > "$d/ca.tmpl"
printf 'cn = "nts.pool.test"\ndns_name = "nts.pool.test"\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n' > "$d/srv.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/ca.key" 2>/dev/null &&
certtool --generate-self-signed --load-privkey "$d/ca.key" --template "$d/ca.tmpl" --outfile "$d/ca.pem" 2>/dev/null &&
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/key.pem" 2>/dev/null &&
certtool --generate-certificate --load-privkey "$d/key.pem" --load-ca-certificate "$d/ca.pem" \
  --load-ca-privkey "$d/ca.key" --template "$d/srv.tmpl" --outfile "$d/srv.pem" 2>/dev/null &&
cat "$d/srv.pem" "$d/ca.pem" > "$d/chain.pem" && chmod 644 "$d"/*.pem || echo "certtool failed"
KP=$(t_port) NP=$(t_port)
for i in 1 2; do
  t_start_ntsd S$i LISTEN=127.0.0.3$i NTS_KE_PORT=$KP NTP_PORT=$NP NTS_CERT="$d/chain.pem" NTS_KEY="$d/key.pem" LOCAL_STRATUM=3 ${NTSD_WRAPPER:+SECCOMP=no}
done
t_start_ntsd N NTP_SERVERS=pool+nts://nts.pool.test:$KP NTS_CA_FILE="$d/ca.pem" MAXSOURCES=2 "${FAST[@]}"
t_check "pool+nts: syncs over NTS from the members: stratum 4" t_wait 20 stratum_is N 4
t_check "pool+nts: both members listed by address" bash -c \
  "out=\$('$NTSCTL' -s $T_DIR/N.state/ntsd.sock sources); grep -q '127.0.0.31 ' <<<\"\$out\" && grep -q '127.0.0.32 ' <<<\"\$out\""
t_check "pool+nts: each member ran NTS-KE (certificate checked as nts.pool.test)" bash -c \
  "[ \$('$NTSCTL' -s $T_DIR/N.state/ntsd.sock authdata | grep -cE '^127.0.0.3[12] +NTS') -eq 2 ]"
ctl N sources
ctl N authdata
t_stop "$N_PID"; t_stop "$S1_PID"; t_stop "$S2_PID"

# --- bad input -----------------------------------------------------------
t_start_ntsd B NTP_SERVERS=pool+ftp://pool.test ${NTSD_WRAPPER:+SECCOMP=no}
t_check "a malformed pool item stops ntsd with the syntax" \
  t_wait 5 grep -q 'NTP_SERVERS item "pool+ftp://pool.test" is not a server; fix:' "$B_LOG"
t_start_ntsd B2 NTP_SERVERS=pool://pool.test MAXSOURCES=17 ${NTSD_WRAPPER:+SECCOMP=no}
t_check "MAXSOURCES out of range refused" t_wait 5 grep -q "MAXSOURCES" "$B2_LOG"
t_done
