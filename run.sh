#!/usr/bin/env bash
# Installs what is missing, builds ntsd and runs it in the foreground.
#
#   ./run.sh                 serve the local clock (NTP_SERVERS=127.127.1.1)
#   NTP_SERVERS=... ./run.sh  any ntsd setting can be given as a variable
#
# As root it serves NTP on UDP 123 and NTS-KE on TCP 4460, as a public
# server does.  As another user it cannot bind those ports, so it serves on
# UDP 11123 and TCP 14460 instead and says so.  Without NTS_CERT/NTS_KEY it
# makes a self-signed certificate for this host in STATE_DIR, so NTS works
# at once (clients must be given that certificate: STATE_DIR/selfsigned-ca.pem).
set -euo pipefail
cd "$(dirname "$0")"
. tools/deps.sh
deps_install "${BUILD_DEPS[@]}" gnutls-bin
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null

if [ "$(id -u)" -eq 0 ]; then
  : "${STATE_DIR:=/var/lib/ntsd}"
  # ntsd gives up root for this user once its ports and keys are open.
  if [ -z "${NTSD_USER:-}" ] && ! getent passwd ntsd >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ntsd
    echo "Created the system user ntsd (ntsd runs as it after start-up)."
  fi
else
  : "${STATE_DIR:=$PWD/state}" "${NTP_PORT:=11123}" "${NTS_KE_PORT:=14460}"
  echo "Not root: serving NTP on UDP $NTP_PORT and NTS-KE on TCP $NTS_KE_PORT" \
       "(ports 123 and 4460 need root)."
fi
: "${NTP_SERVERS:=127.127.1.1}"
mkdir -p "$STATE_DIR"
if [ -z "${NTS_CERT:-}" ] && [ -z "${NTS_KEY:-}" ]; then
  NTS_CERT=$STATE_DIR/selfsigned.pem NTS_KEY=$STATE_DIR/selfsigned.key
  if [ ! -s "$NTS_CERT" ]; then
    host=$(hostname -f 2>/dev/null || hostname)
    tmpl=$(mktemp)
    printf 'cn = "%s"\ndns_name = "%s"\ndns_name = "localhost"\nip_address = "127.0.0.1"\nip_address = "::1"\ntls_www_server\nsigning_key\nexpiration_days = 365\n' "$host" "$host" > "$tmpl"
    (umask 077; certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 \
       --outfile "$NTS_KEY" 2>/dev/null)
    certtool --generate-self-signed --load-privkey "$NTS_KEY" \
      --template "$tmpl" --outfile "$NTS_CERT" 2>/dev/null
    cp "$NTS_CERT" "$STATE_DIR/selfsigned-ca.pem"
    rm -f "$tmpl"
    echo "Made a self-signed certificate for $host: $NTS_CERT" \
         "(NTS clients must trust $STATE_DIR/selfsigned-ca.pem)"
  fi
  # STATE_DIR becomes NTSD_USER's, so a key in it is that user's too:
  # ntsd's privileged helper reads only files that root alone controls.
  [ "$(id -u)" -ne 0 ] || chown "${NTSD_USER:-ntsd}:" "$NTS_CERT" "$NTS_KEY"
fi
export NTP_SERVERS STATE_DIR NTS_CERT NTS_KEY
[ -n "${NTP_PORT:-}" ] && export NTP_PORT
[ -n "${NTS_KE_PORT:-}" ] && export NTS_KE_PORT
exec build/daemon/ntsd "$@"
