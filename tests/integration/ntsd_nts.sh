#!/usr/bin/env bash
# ntsd against independent implementations: chrony as NTP and NTS client,
# gnutls-cli as a misbehaving NTS-KE client.
# Usage: ntsd_nts.sh PATH/TO/ntsd
NTSD=$1
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
command -v certtool >/dev/null || { echo "certtool missing (apt-get install gnutls-bin)"; exit 1; }
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem

# --- every ntsd started here: each thread of it and of its helper runs
# under the seccomp filter (SECCOMP=yes, the default).  valgrind runs set
# SECCOMP=no (valgrind has no seccomp()); a build without libseccomp says so.
seccomp_all() { # seccomp_all PID LOG
  local p s
  for p in "$1" $(pgrep -P "$1"); do
    for s in /proc/"$p"/task/*/status; do
      grep -q "^Seccomp:[[:space:]]*2$" "$s" || { echo "# $s is not filtered"; return 1; }
    done
  done
}
eval "$(declare -f t_start_ntsd | sed '1s/t_start_ntsd/t_start_ntsd_plain/')"
t_start_ntsd() {
  local pid log
  t_start_ntsd_plain "$@"
  eval "pid=\$${1}_PID log=\$${1}_LOG"
  case "${NTSD_WRAPPER:-}" in *SECCOMP=no*) return 0 ;; esac
  # The filter comes after the control socket and the privilege drop.
  t_wait 10 bash -c "grep -q 'seccomp filter on\|without libseccomp' $log || ! kill -0 $pid"
  kill -0 "$pid" 2>/dev/null || return 0 # stopped at start: checked below
  if grep -q "without libseccomp" "$log"; then echo "# $1: built without libseccomp"; return 0; fi
  t_check "$1: every thread of ntsd and of its helper runs under seccomp" seccomp_all "$pid"
}

# --- plain NTP, local clock mode -------------------------------------------
t_start_ntsd A
out=$(t_chrony_q "server 127.0.0.1 port $A_NTP iburst maxsamples 1")
t_check "chronyd -Q gets a plain NTP sample from local clock mode" t_chrony_offset_ok "$out" 0.001
t_check "log says NTS is off without a certificate" grep -q "NTS is off" "$A_LOG"
t_check "log starts like chrony's" grep -q "ntsd version .* starting" "$A_LOG"
t_check "SIGTERM exits cleanly" t_stop "$A_PID"
t_check "exit is logged" grep -q "ntsd exiting" "$A_LOG"

# --- NTS with chrony; a wrong client port proves Port Negotiation ---------
t_start_ntsd B NTS_CERT="$CERT" NTS_KEY="$KEY"
nts_q() { # nts_q KEPORT [extra config lines...]
  local ke=$1; shift
  t_chrony_q "server 127.0.0.1 port 1 nts ntsport $ke iburst maxsamples 1 minpoll -4 maxpoll -4" \
    "ntstrustedcerts $T_DIR/ca.pem" nosystemcert "$@"
}
out=$(nts_q "$B_KE")
t_check "chronyd -Q authenticates over NTS (port from Port Negotiation)" t_chrony_offset_ok "$out" 0.001
t_check "chrony followed Port Negotiation" grep -q "changed port to $B_NTP" <<<"$out"
if [ "$(id -u)" -eq 0 ]; then
  t_check "ntsd dropped root after reading the 0600 key" grep -q "Running as $T_USER" "$B_LOG"
  t_check "the NTP workers run as $T_USER" bash -c "grep -q '^Uid:.*65534' /proc/$B_PID/status"
fi

# --- misbehaving NTS-KE clients --------------------------------------------
# gnutls-cli as a raw NTS-KE client.  A valid request first, so that the
# refusals below cannot pass just because nothing listens.
ke_raw() { # ke_raw BYTES-FILE [gnutls-cli options]: prints the reply in hex
  local in=$1; shift
  (cat "$in"; sleep 2) | timeout 10 gnutls-cli --x509cafile "$T_DIR/ca.pem" \
    -p "$B_KE" "$@" 127.0.0.1 2>/dev/null | od -An -tx1 | tr -d ' \n'
}
printf '\x80\x01\x00\x02\x00\x00\x80\x04\x00\x02\x00\x0f\x80\x00\x00\x00' > "$T_DIR/good.bin"
resp=$(ke_raw "$T_DIR/good.bin" --alpn=ntske/1)
t_check "gnutls-cli gets cookies with ALPN ntske/1 (control)" grep -q "00050068" <<<"$resp"
t_check "wrong ALPN is refused" bash -c "! (echo | timeout 10 gnutls-cli --x509cafile $T_DIR/ca.pem -p $B_KE --alpn=http/1.1 127.0.0.1 >/dev/null 2>&1)"
t_check "no ALPN is refused" bash -c "! (echo | timeout 10 gnutls-cli --x509cafile $T_DIR/ca.pem -p $B_KE 127.0.0.1 >/dev/null 2>&1)"
t_check "TLS 1.2 is refused" bash -c "! (echo | timeout 10 gnutls-cli --x509cafile $T_DIR/ca.pem -p $B_KE --alpn=ntske/1 --priority NORMAL:-VERS-ALL:+VERS-TLS1.2 127.0.0.1 >/dev/null 2>&1)"
# A request over 16 KiB (records of type 0x4000 non-critical, never ended)
# gets Error 1 (Bad Request): 80 02 00 02 00 01.
big=$T_DIR/big.bin
python_free_rec() { printf '\x40\x00\x0f\xfc'; head -c 4092 /dev/zero; }
for i in 1 2 3 4 5; do python_free_rec; done > "$big"
resp=$(ke_raw "$big" --alpn=ntske/1)
t_check "oversized NTS-KE request gets Error 1 (Bad Request)" grep -q "800200020001" <<<"$resp"
# A request with an unknown critical record gets Error 0.
printf '\x80\x01\x00\x02\x00\x00\xc0\x00\x00\x00\x80\x00\x00\x00' > "$T_DIR/crit.bin"
resp=$(ke_raw "$T_DIR/crit.bin" --alpn=ntske/1)
t_check "unknown critical record gets Error 0" grep -q "800200020000" <<<"$resp"
out=$(nts_q "$B_KE")
t_check "NTS still works after the bad clients" t_chrony_offset_ok "$out" 0.001

# --- cookies survive a restart (chrony keeps them in its ntsdumpdir) -------
mkdir -p "$T_DIR/client"
ntp_port=$((20000 + RANDOM % 20000)) ke_port=$((40000 + RANDOM % 20000))
t_stop "$B_PID"
t_start_ntsd C NTS_CERT="$CERT" NTS_KEY="$KEY" NTP_PORT=$ntp_port NTS_KE_PORT=$ke_port STATE_DIR="$T_DIR/C.state"
out=$(nts_q "$ke_port" "ntsdumpdir $T_DIR/client")
t_check "first NTS query (with NTS-KE) works" t_chrony_offset_ok "$out" 0.001
t_check "chrony saved its cookies" bash -c "ls $T_DIR/client | grep -q ."
t_stop "$C_PID"
t_check "key file written 0600" bash -c "[ \$(stat -c %a $T_DIR/C.state/ntskeys) = 600 ]"
# Restart with the same STATE_DIR but NTS-KE on another port: the client can
# only authenticate with the cookies it got before the restart.
t_start_ntsd D NTS_CERT="$CERT" NTS_KEY="$KEY" NTP_PORT=$ntp_port NTS_KE_PORT=0 STATE_DIR="$T_DIR/C.state"
t_check "restart loads the key file" grep -q "Loaded NTS keys" "$D_LOG"
out=$(nts_q "$ke_port" "ntsdumpdir $T_DIR/client")
t_check "a cookie from before the restart authenticates after it" t_chrony_offset_ok "$out" 0.001
t_stop "$D_PID"

# --- a corrupt key file is an error that names the file ---------------------
echo "garbage" > "$T_DIR/C.state/ntskeys"
t_start_ntsd E NTS_CERT="$CERT" NTS_KEY="$KEY" STATE_DIR="$T_DIR/C.state"
wait "$E_PID" 2>/dev/null; rc=$?
t_check "corrupt key file stops ntsd" [ "$rc" -ne 0 ]
t_check "corrupt key file error names the file and the fix" \
  grep -q "$T_DIR/C.state/ntskeys.*NTS_KEYS_RESET" "$E_LOG"
t_start_ntsd F NTS_CERT="$CERT" NTS_KEY="$KEY" STATE_DIR="$T_DIR/C.state" NTS_KEYS_RESET=yes
t_check "NTS_KEYS_RESET=yes starts with new keys" grep -q "starting with new keys" "$F_LOG"
t_stop "$F_PID"

# --- an unreadable certificate key: the error says what to change ----------
if command -v setpriv >/dev/null && [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$T_DIR"
  mkdir -p "$T_DIR/nobody.state" && chown 65534 "$T_DIR/nobody.state"
  setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH="$PATH" \
    NTP_SERVERS=127.127.1.1 LISTEN=127.0.0.1 NTP_PORT=0 NTS_KE_PORT=0 \
    STATE_DIR="$T_DIR/nobody.state" NTS_CERT="$CERT" NTS_KEY="$KEY" \
    "$NTSD" >"$T_DIR/nobody.log" 2>&1
  rc=$?
  t_check "unreadable key file stops ntsd" [ "$rc" -ne 0 ]
  t_check "the error names path, errno, owner, mode and our uid" \
    grep -q "$KEY.*Permission denied.*uid 0.*0600.*65534" "$T_DIR/nobody.log"
fi

# --- config file: errors name file, line and fix; SIGHUP re-reads it -------
printf '# ntsd test\nNTP_SERVERS=127.127.1.1\nNTP_PORT 70000\n' > "$T_DIR/bad.conf"
"$NTSD" --config="$T_DIR/bad.conf" >"$T_DIR/badconf.log" 2>&1; rc=$?
t_check "a bad config value stops ntsd with status 2" [ "$rc" -eq 2 ]
t_check "the error names the file, the line and the fix" \
  grep -q "$T_DIR/bad.conf:3: NTP_PORT=\"70000\" is not valid; fix: use a whole number from 0 to 65535" "$T_DIR/badconf.log"
printf 'LOG_LEVEL=0\nLOCAL_STRATUM=10\n' > "$T_DIR/good.conf"
t_start_ntsd H CONFIG="$T_DIR/good.conf"
printf 'LOG_LEVEL=1\nLOCAL_STRATUM=9\n' > "$T_DIR/good.conf"
kill -HUP "$H_PID"
t_check "SIGHUP re-reads the config file: LOG_LEVEL applied" t_wait 30 grep -q "LOG_LEVEL changed: applied" "$H_LOG"
t_check "a setting that needs a restart says so" grep -q "LOCAL_STRATUM changed: restart ntsd to apply it" "$H_LOG"
printf 'LOG_LEVEL=banana\n' > "$T_DIR/good.conf"
kill -HUP "$H_PID"
t_check "a broken config on SIGHUP is refused, ntsd keeps running" \
  t_wait 30 grep -q "Configuration not reloaded: $T_DIR/good.conf:1: LOG_LEVEL" "$H_LOG"
t_check "still alive after the bad reload" kill -0 "$H_PID"
t_stop "$H_PID"

# --- certificate reload: SIGHUP and file change ----------------------------
t_start_ntsd G NTS_CERT="$CERT" NTS_KEY="$KEY"
mkdir -p "$T_DIR/ca2"
cp "$T_DIR/ca.pem" "$T_DIR/ca1.pem"
T_DIR_SAVE=$T_DIR; T_DIR=$T_DIR/ca2; t_make_certs; T_DIR=$T_DIR_SAVE
cp "$T_DIR/ca2/live/fullchain.pem" "$CERT.new" && cp "$T_DIR/ca2/live/privkey.pem" "$KEY.new"
mv "$KEY.new" "$KEY"; mv "$CERT.new" "$CERT"
kill -HUP "$G_PID"; sleep 0.5
t_check "SIGHUP reloads the certificate" grep -q "Reloaded certificate" "$G_LOG"
out=$(t_chrony_q "server 127.0.0.1 port 1 nts ntsport $G_KE iburst maxsamples 1 minpoll -4 maxpoll -4" "ntstrustedcerts $T_DIR/ca2/ca.pem" nosystemcert)
t_check "clients see the new certificate without a restart" t_chrony_offset_ok "$out" 0.001
out=$(t_chrony_q "server 127.0.0.1 port 1 nts ntsport $G_KE iburst maxsamples 1 minpoll -4 maxpoll -4" "ntstrustedcerts $T_DIR/ca1.pem" nosystemcert)
t_check "the old certificate is gone" bash -c "! grep -q 'System clock wrong' <<<'$out'"
# A broken new certificate keeps the old one.
echo broken > "$CERT"
kill -HUP "$G_PID"; sleep 0.5
t_check "a broken certificate is refused and the old one kept" grep -q "keeping the old one" "$G_LOG"
out=$(t_chrony_q "server 127.0.0.1 port 1 nts ntsport $G_KE iburst maxsamples 1 minpoll -4 maxpoll -4" "ntstrustedcerts $T_DIR/ca2/ca.pem" nosystemcert)
t_check "NTS keeps working after a failed reload" t_chrony_offset_ok "$out" 0.001
# certbot renewal: files replaced; noticed without a signal (polled).
sleep 1.1 # mtime granularity of some file systems
n=$(grep -c 'Reloaded certificate' "$G_LOG")
cp "$T_DIR/ca2/live/fullchain.pem" "$CERT"
for i in $(seq 1 80); do [ "$(grep -c 'Reloaded certificate' "$G_LOG")" -gt "$n" ] && break; sleep 0.1; done
t_check "a changed certificate file is reloaded without a signal" \
  bash -c "[ \$(grep -c 'Reloaded certificate' $G_LOG) -gt $n ]"
t_stop "$G_PID"

t_done
