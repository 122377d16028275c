#!/usr/bin/env bash
# Privilege separation end to end: no capability in the server after
# start-up, the helper reads root-only certbot files (renewal without a
# restart), refuses planted links, never blocks on a FIFO, and ends with
# the server; several certificates chosen by SNI and signature algorithm.
# Usage: ntsd_privsep.sh PATH/TO/ntsd
NTSD=$1
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" -ne 0 ]; then echo "needs root (privilege separation): skipped"; exit 77; fi
command -v certtool >/dev/null || { echo "certtool missing (apt-get install gnutls-bin)"; exit 1; }
t_make_certs || { echo "cannot make certificates"; exit 1; }

# issue NAME TEMPLATE-LINES KEYTYPE: a key and certificate signed by the test CA.
issue() {
  local name=$1 tmpl=$2 kt=$3
  printf '%s\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n' "$tmpl" > "$T_DIR/$name.tmpl"
  (umask 077; certtool --generate-privkey $kt --outfile "$T_DIR/$name.key" 2>/dev/null) &&
  certtool --generate-certificate --load-privkey "$T_DIR/$name.key" --load-ca-certificate "$T_DIR/ca.pem" \
    --load-ca-privkey "$T_DIR/ca.key" --template "$T_DIR/$name.tmpl" --outfile "$T_DIR/$name.pem" 2>/dev/null
}
EC="--key-type=ecdsa --curve=secp256r1"
issue renewed 'cn = "localhost"
organization = "renewed"
dns_name = "localhost"' "$EC"
issue alt 'cn = "alt.test"
dns_name = "alt.test"' "$EC"
issue altrsa 'cn = "alt.test"
organization = "rsa"
dns_name = "alt.test"' "--key-type=rsa --bits=2048"

# certbot's layout: live/ links into archive/, both 0700 root, keys 0600.
LE=$T_DIR/le
mkdir -p "$LE/archive/t" "$LE/live/t"
cp "$T_DIR/live/fullchain.pem" "$LE/archive/t/fullchain1.pem"
cp "$T_DIR/live/privkey.pem" "$LE/archive/t/privkey1.pem"
ln -s ../../archive/t/fullchain1.pem "$LE/live/t/fullchain.pem"
ln -s ../../archive/t/privkey1.pem "$LE/live/t/privkey.pem"
chmod 700 "$LE/archive" "$LE/live"
chmod 600 "$LE/archive/t/privkey1.pem" "$T_DIR"/*.key
CERTS=$LE/live/t/fullchain.pem,$T_DIR/alt.pem,$T_DIR/altrsa.pem
KEYS=$LE/live/t/privkey.pem,$T_DIR/alt.key,$T_DIR/altrsa.key

# subject SNI PRIORITY: the subject of the certificate ntsd presents.
subject() {
  timeout 10 gnutls-cli --insecure --alpn=ntske/1 --sni-hostname="$1" --priority "$2" \
    -p "$A_KE" 127.0.0.1 </dev/null 2>/dev/null | sed -n "s/^ - subject \`\([^']*\)'.*/\1/p" | head -1
}
status_of() { grep "^$2:" "/proc/$1/status" | cut -f2- | tr -d ' \t'; }

t_start_ntsd A NTS_CERT="$CERTS" NTS_KEY="$KEYS"
helper=$(sed -n 's/.*Privileged helper started (pid \([0-9]*\)).*/\1/p' "$A_LOG")
t_check "the privileged helper started" test -n "$helper"
t_check "the server runs as $T_USER" grep -q "Running as $T_USER (uid [0-9]*) without capabilities" "$A_LOG"

# --- capabilities and seccomp of every ntsd process and thread --------------
no_caps() { # no_caps PID: every thread holds no capability at all
  local s f
  for s in /proc/$1/task/*/status; do
    for f in CapInh CapPrm CapEff CapBnd CapAmb; do
      grep -q "^$f:[[:space:]]*0000000000000000$" "$s" || { echo "$s $f"; return 1; }
    done
  done
}
seccomp_on() { # seccomp_on PID: every thread runs under a filter
  local s
  for s in /proc/$1/task/*/status; do
    grep -q "^Seccomp:[[:space:]]*2$" "$s" || return 1
    grep -q "^NoNewPrivs:[[:space:]]*1$" "$s" || return 1
  done
}
t_check "no thread of the server holds a capability" no_caps "$A_PID"
t_check "the helper holds no capability" no_caps "$helper"
t_check "the helper keeps root's uid (owner of the files), not its powers" \
  test "$(status_of "$helper" Uid)" = 0000
t_check "the helper is a child of the server" test "$(status_of "$helper" PPid)" = "$A_PID"
# Built with libseccomp (+SECCOMP), the filter is on by default.
if grep -q "starting (.*+SECCOMP)" "$A_LOG"; then
  t_check "every thread of the server runs under seccomp" seccomp_on "$A_PID"
  t_check "the helper runs under seccomp" seccomp_on "$helper"
else
  echo "built without libseccomp: no seccomp checks"
fi
# No network socket in the helper: its sockets are not in any inet table.
net_sockets() {
  local fd ino n=0
  for fd in /proc/$1/fd/*; do
    ino=$(readlink "$fd" | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
    [ -n "$ino" ] || continue
    awk -v i="$ino" '$10 == i { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6 \
      /proc/net/udp /proc/net/udp6 /proc/net/raw /proc/net/raw6 && n=$((n + 1))
  done
  echo $n
}
t_check "the server has network sockets (the check can see them)" test "$(net_sockets "$A_PID")" -gt 0
t_check "the helper holds no network socket" test "$(net_sockets "$helper")" -eq 0

# --- several certificates ----------------------------------------------------
t_check "SNI localhost gets the localhost certificate" test "$(subject localhost NORMAL)" = "CN=localhost"
t_check "SNI alt.test gets alt.test's ECDSA certificate" test "$(subject alt.test NORMAL:-SIGN-ALL:+SIGN-ECDSA-SECP256R1-SHA256)" = "CN=alt.test"
t_check "SNI alt.test with RSA-only signatures gets its RSA certificate" \
  test "$(subject alt.test NORMAL:-SIGN-ALL:+SIGN-RSA-PSS-RSAE-SHA256)" = "CN=alt.test,O=rsa"
if command -v chronyd >/dev/null; then
  out=$(t_chrony_q "server 127.0.0.1 port 1 nts ntsport $A_KE iburst maxsamples 1" \
    "ntstrustedcerts $T_DIR/ca.pem" nosystemcert)
  t_check "chronyd -Q authenticates over NTS with the helper's certificate" t_chrony_offset_ok "$out" 0.001
fi

# --- certbot renewal with root-only files, without a restart ------------------
cp "$T_DIR/renewed.pem" "$LE/archive/t/fullchain2.pem"
cp "$T_DIR/renewed.key" "$LE/archive/t/privkey2.pem"
chmod 600 "$LE/archive/t/privkey2.pem"
ln -sfn ../../archive/t/fullchain2.pem "$LE/live/t/fullchain.pem"
ln -sfn ../../archive/t/privkey2.pem "$LE/live/t/privkey.pem"
t_check "the renewed root-only key is loaded without a restart" \
  t_wait 10 grep -q "Reloaded 3 certificates" "$A_LOG"
t_check "clients get the renewed certificate" test "$(subject localhost NORMAL)" = "CN=localhost,O=renewed"

# --- a FIFO swapped in must not freeze the server ------------------------------
mkfifo "$LE/archive/t/privkey3.pem"
ln -sfn ../../archive/t/privkey3.pem "$LE/live/t/privkey.pem"
kill -HUP "$A_PID"
t_check "a FIFO as the key is refused, not waited on" \
  t_wait 5 grep -q "Could not reload certificate.*privkey3.pem is not a regular file" "$A_LOG"
kill -HUP "$A_PID"
t_check "SIGHUP is still handled" t_wait 5 bash -c "[ \$(grep -c 'Could not reload certificate' '$A_LOG') -ge 2 ]"
t_check "NTS-KE still serves the last good certificate" test "$(subject localhost NORMAL)" = "CN=localhost,O=renewed"

# --- the helper ends with the server ----------------------------------------
kill -KILL "$A_PID"
wait "$A_PID" 2>/dev/null
gone() { ! kill -0 "$helper" 2>/dev/null || grep -q '^State:[[:space:]]*Z' "/proc/$helper/status"; }
t_check "the helper exits when the server dies (SIGKILL)" t_wait 3 gone

# --- a link planted in a directory the server's user controls ------------------
# The user ntsd runs as may write STATE_DIR-like directories; a link there
# to a root-only key must not make the helper read it.
mkdir -p "$T_DIR/planted"
ln -s "$LE/archive/t/privkey1.pem" "$T_DIR/planted/privkey.pem"
chown -h "$T_USER" "$T_DIR/planted" "$T_DIR/planted/privkey.pem"
chmod 755 "$LE" "$LE/archive" "$LE/archive/t" # reachable, but 0600 root
t_start_ntsd P NTS_CERT="$LE/archive/t/fullchain1.pem" NTS_KEY="$T_DIR/planted/privkey.pem"
t_check "a planted link to a root-only key is not followed by the helper" \
  grep -q "Fatal error : cannot read $T_DIR/planted/privkey.pem: Permission denied.*not root's alone" "$P_LOG"
t_check "ntsd stopped" bash -c "! kill -0 $P_PID 2>/dev/null"

# --- a FIFO at NTS_CERT at start-up ----------------------------------------------
mkfifo "$T_DIR/fifo.pem"
start=$(date +%s)
t_start_ntsd F NTS_CERT="$T_DIR/fifo.pem" NTS_KEY="$LE/archive/t/privkey1.pem"
t_check "a FIFO at NTS_CERT fails the start at once, naming it" \
  grep -q "Fatal error : .*fifo.pem.*not a regular file" "$F_LOG"
t_check "... within 3 s" test $(( $(date +%s) - start )) -le 3

t_done
