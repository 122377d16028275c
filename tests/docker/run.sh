#!/bin/bash
# Docker test for ntsd: image build, compose file, NTP and NTS from the host.
#
#   tests/docker/run.sh        (as root; run by .ci/run)
#
# Exit status: 0 pass, 1 fail, 77 skipped -- only when Docker cannot run on
# this machine at all (no root/docker access, engine not installable, dockerd
# does not start).  Everything else is a pass or a fail.
#
# What it does:
#  1. installs docker.io docker-compose debootstrap gnutls-bin chrony if
#     missing; starts dockerd if it is not running (and then, and only then,
#     stops that dockerd at the end and restores the FORWARD policy and
#     ip_forward that dockerd changes);
#  2. builds a debian:trixie-slim base with debootstrap when the image is
#     missing (no registry here), then the ntsd image (Dockerfile) as
#     $NTSD_TEST_IMAGE; checks it has AES-128-GCM-SIV and seccomp;
#  3. makes a throwaway CA and a certificate for localhost laid out like
#     certbot (archive/ + live/ symlinks, dirs 0700, privkey 0600 root);
#     checks that a missing LETSENCRYPT_DIR stops "up" (nothing created on
#     the host) and that a missing certificate file is named in the log;
#  4. brings up docker-compose.yml + tests/docker/docker-compose.test.yml:
#     "upstream" (ntsd serving its local clock) and "ntp" (the real compose
#     service: cap_drop ALL and its cap_add list, NTS on, NTP published on
#     a remapped 127.0.0.1 high port that NTS_NTP_PORT_ADVERTISED follows,
#     synced from upstream); waits until both are healthy (ntsctl health
#     --synced);
#  5. queries plain NTP and NTS from the host with chronyd -Q (which only
#     measures), checks NTS-KE port negotiation (the host port), ntsctl
#     serverstats, the log lines for cturra/ntp variables ntsd does not
#     use, the warning when the bridge gateway (docker-proxy) is rate
#     limited, that ntsd dropped root and every capability, a certbot
#     renewal without restart, that docker stop is fast (SIGTERM handled);
#     down -v.
#
# Nothing leaves the machine: no public servers, no registry.  No container
# gets SYS_TIME; host ports 123/4460 are never bound.

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

# Host ports to publish on 127.0.0.1 (never 123/4460).  Unless given, the
# defaults or, if something else on the machine holds them, free random ones.
ports_given=${NTP_HOST_PORT:+1}${NTS_HOST_PORT:+1}
: "${NTP_HOST_PORT:=21123}"
: "${NTS_HOST_PORT:=24460}"
: "${NTSD_TEST_IMAGE:=ntsntp:test}"
# The Dockerfile's FROM; made with debootstrap when no registry has it.
BASE_IMAGE=debian:trixie-slim
BASE_SUITE=trixie
: "${HEALTH_WAIT:=60}"        # seconds to wait for both containers healthy
: "${BUILD_TIMEOUT:=900}"     # cold build includes apt-get in the container
STOP_MAX_MS=5000

T0=$(date +%s)
work=$(mktemp -d /tmp/ntsd-docker-test.XXXXXX)
proj=ntsdtest$$
NTSD_TEST_NAME=$proj
status=fail
reason="interrupted"
checks=0
started_dockerd_pid=
compose_up=0

log() { printf '[docker %3ds] %s\n' $(($(date +%s) - T0)) "$*"; }
ok() { checks=$((checks + 1)); log "ok: $*"; }
fail() { reason=$*; log "FAIL: $*"; exit 1; }
skip() {
  status=skip
  reason=$*
  exit 77
}
show() { # file [lines]: print the end of a log file, indented
  [ -s "$1" ] || return 0
  echo "----- $1 (last ${2:-30} lines)"
  tail -n "${2:-30}" "$1" | sed 's/^/  /'
}

DOCKER=docker
COMPOSE=()

dc() { # docker-compose for the test project, bounded
  dcp "$proj" "$@"
}
dcp() { # PROJECT ARGS...: the same files, another project
  local p=$1
  shift
  timeout 120 "${COMPOSE[@]}" -p "$p" --env-file "$work/test.env" \
    -f "$top/docker-compose.yml" -f "$here/docker-compose.test.yml" "$@"
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM ERR
  if [ "$compose_up" = 1 ]; then
    if [ "$status" != pass ]; then
      dc ps >"$work/compose-ps.log" 2>&1
      dc logs --no-color >"$work/compose.log" 2>&1
      show "$work/compose-ps.log"
      show "$work/compose.log" 60
    fi
    dc down -v --remove-orphans >"$work/down.log" 2>&1 ||
      show "$work/down.log"
  fi
  if [ -n "$started_dockerd_pid" ]; then
    # Only the dockerd this script started, by its PID.
    kill -TERM "$started_dockerd_pid" 2>/dev/null
    for _ in $(seq 100); do
      kill -0 "$started_dockerd_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$started_dockerd_pid" 2>/dev/null && log "warning: dockerd $started_dockerd_pid still running"
    [ -n "${saved_forward:-}" ] && iptables -P FORWARD "$saved_forward" 2>/dev/null
    [ -n "${saved_ipfwd:-}" ] && echo "$saved_ipfwd" >/proc/sys/net/ipv4/ip_forward 2>/dev/null
    log "stopped dockerd $started_dockerd_pid (FORWARD=${saved_forward:-?}, ip_forward=${saved_ipfwd:-?} restored)"
  fi
  local t=$(($(date +%s) - T0))
  case $status in
  pass)
    rm -rf "$work"
    echo "PASS: docker test: $checks checks in ${t}s"
    exit 0
    ;;
  skip)
    rm -rf "$work"
    echo "SKIP: docker test: $reason"
    exit 77
    ;;
  *)
    [ "$rc" = 0 ] && rc=1
    echo "FAIL: docker test: $reason (after $checks checks, ${t}s; logs in $work)"
    exit "$rc"
    ;;
  esac
}
trap cleanup EXIT
trap 'reason="unexpected error at line $LINENO: $BASH_COMMAND"' ERR
trap 'reason="interrupted"; exit 1' INT TERM

# --- 1. Docker engine -------------------------------------------------------

if [ "$(id -u)" != 0 ] && ! docker info >/dev/null 2>&1; then
  skip "not root and no access to a Docker daemon"
fi

# The host-side tools, installed with service starts forbidden (a chronyd
# started by apt would discipline the shared clock).
. "$(dirname "$0")/../../tools/deps.sh"
deps_install chrony gnutls-bin iproute2 || fail "cannot install chrony gnutls-bin iproute2"

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need_pkgs+=(docker-compose)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 300 apt-get install -y --no-install-recommends "${need_pkgs[@]}" >"$work/apt.log" 2>&1; then
    timeout 120 apt-get update >>"$work/apt.log" 2>&1
    timeout 300 apt-get install -y --no-install-recommends "${need_pkgs[@]}" >>"$work/apt.log" 2>&1 || {
      show "$work/apt.log" 10
      command -v dockerd >/dev/null || command -v docker >/dev/null ||
        skip "Docker is not installed and apt-get cannot install docker.io"
      fail "apt-get install ${need_pkgs[*]} failed"
    }
  fi
fi

# The engine package's own CLI matches its API; a newer /usr/local/bin/docker
# may lack the legacy builder defaults.  Legacy builder: no buildx here.
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
unset DOCKER_BUILDKIT
if command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
elif $DOCKER compose version >/dev/null 2>&1; then
  COMPOSE=("$DOCKER" compose)
else
  fail "neither docker-compose nor docker compose is available"
fi

if ! $DOCKER info >/dev/null 2>&1; then
  oldpid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [ -n "$oldpid" ] && kill -0 "$oldpid" 2>/dev/null; then
    skip "dockerd (pid $oldpid) is running but does not answer"
  fi
  rm -f /var/run/docker.pid
  command -v iptables >/dev/null &&
    saved_forward=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3; exit}')
  saved_ipfwd=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true)
  log "starting dockerd"
  setsid nohup dockerd >"$work/dockerd.log" 2>&1 </dev/null &
  spawned=$!
  for _ in $(seq 100); do
    $DOCKER info >/dev/null 2>&1 && break
    kill -0 "$spawned" 2>/dev/null || break
    sleep 0.2
  done
  started_dockerd_pid=$(cat /var/run/docker.pid 2>/dev/null || echo "$spawned")
  if ! $DOCKER info >/dev/null 2>&1; then
    show "$work/dockerd.log" 15
    skip "dockerd does not start on this machine (log above)"
  fi
  log "dockerd started (pid $started_dockerd_pid)"
fi
log "engine $($DOCKER version -f '{{.Server.Version}}'), $("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n1)"

# --- 2. Images --------------------------------------------------------------

if ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  # The host's Debian mirror (it may be a local one or behind a proxy),
  # asked for the base's suite, not the host's.
  srcs=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
  mirror=$(printf '%s\n' "$srcs" | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
  [ -n "$mirror" ] || mirror=$(printf '%s\n' "$srcs" | awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}')
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  security=$(printf '%s\n' "$srcs" | awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}')
  [ -n "$security" ] || security=http://deb.debian.org/debian-security
  log "building $BASE_IMAGE with debootstrap $BASE_SUITE from $mirror"
  rootfs=$work/rootfs
  timeout 900 debootstrap --variant=minbase "$BASE_SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    show "$work/debootstrap.log"
    fail "debootstrap $BASE_SUITE failed"
  }
  # Builds run apt-get inside the image: the same mirror, with updates and
  # security updates, and the host's apt proxy, if any.
  rm -f "$rootfs/etc/apt/sources.list"
  printf '%s\n' "Types: deb" "URIs: $mirror" "Suites: $BASE_SUITE $BASE_SUITE-updates" \
    "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" \
    "Types: deb" "URIs: $security" "Suites: $BASE_SUITE-security" \
    "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
    >"$rootfs/etc/apt/sources.list.d/debian.sources"
  for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] && grep -qi 'Acquire::.*proxy' "$f" && cp "$f" "$rootfs/etc/apt/apt.conf.d/"
  done
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -c . |
    $DOCKER import -c 'CMD ["bash"]' - "$BASE_IMAGE" >"$work/import.log" 2>&1 || {
    show "$work/import.log"
    fail "docker import of the debootstrap root failed"
  }
  rm -rf "$rootfs"
  ok "base image $BASE_IMAGE built"
fi

old_image=$($DOCKER image inspect -f '{{.Id}}' "$NTSD_TEST_IMAGE" 2>/dev/null || true)
log "building $NTSD_TEST_IMAGE from $top"
tb=$(date +%s)
if ! timeout "$BUILD_TIMEOUT" $DOCKER build --force-rm -t "$NTSD_TEST_IMAGE" "$top" >"$work/build.log" 2>&1; then
  show "$work/build.log" 40
  fail "docker build failed"
fi
new_image=$($DOCKER image inspect -f '{{.Id}}' "$NTSD_TEST_IMAGE")
# Drop the previous test image if nothing else uses it (keeps disk bounded).
if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then
  $DOCKER rmi "$old_image" >/dev/null 2>&1 || true
fi
size=$($DOCKER image inspect -f '{{.Size}}' "$NTSD_TEST_IMAGE")
ok "image built in $(($(date +%s) - tb))s, $((size / 1000000)) MB"
hc=$($DOCKER image inspect -f '{{json .Config.Healthcheck.Test}}' "$NTSD_TEST_IMAGE")
case $hc in
'["CMD","/usr/bin/ntsctl","health"'*) ok "image HEALTHCHECK $hc" ;;
*) fail "image HEALTHCHECK is $hc, expected exec form ntsctl health" ;;
esac

# What .dockerignore lets into the build context: a stand-in tree with the
# real .dockerignore, the files it must keep out (.env, build output,
# packages, debian/) and some it must let in.
ctx=$work/context
for f in .env .env.local build/x build-docker/x obj-x86_64-linux-gnu/x ntsd_0.1.0_amd64.deb \
  debian/rules debian/tmp/x .git/HEAD tests/x.c docs/docker.md lib/x.c meson.build docs/ntsd.8 \
  docs/ntsctl.1 docs/meson.build; do
  mkdir -p "$ctx/$(dirname "$f")" && : >"$ctx/$f"
done
cp "$top/.dockerignore" "$ctx/"
printf '%s\n' "FROM $BASE_IMAGE" 'COPY . /ctx' 'RUN cd /ctx && find . -type f | sort > /list' \
  >"$work/Dockerfile.context"
ctx_ok=1
timeout 120 $DOCKER build --force-rm -q -t "$proj-context" -f "$work/Dockerfile.context" "$ctx" \
  >"$work/context-build.log" 2>&1 &&
  $DOCKER run --rm "$proj-context" cat /list >"$work/context.list" 2>&1 || ctx_ok=0
$DOCKER rmi "$proj-context" >/dev/null 2>&1 || true
[ "$ctx_ok" = 1 ] || { show "$work/context-build.log"; fail "listing a build context"; }
want_ctx='./docs/meson.build ./docs/ntsctl.1 ./docs/ntsd.8 ./lib/x.c ./meson.build '
if [ "$(tr '\n' ' ' <"$work/context.list")" = "$want_ctx" ]; then
  ok ".dockerignore: no .env, build output, .deb, debian/, .git, tests or guides in the context"
else
  fail ".dockerignore lets in: $(tr '\n' ' ' <"$work/context.list") (want $want_ctx)"
fi

# --- 3. Certificates laid out like certbot ----------------------------------

le=$work/letsencrypt
mkdir -p "$le/archive/localhost" "$le/live/localhost" "$work/ca"
cat >"$work/ca/ca.tmpl" <<'EOF'
cn = "ntsd docker test CA"
ca
cert_signing_key
expiration_days = 3
EOF
cat >"$work/ca/server.tmpl" <<'EOF'
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
tls_www_server
signing_key
encryption_key
expiration_days = 3
EOF
{
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$work/ca/ca.key" &&
    certtool --generate-self-signed --load-privkey "$work/ca/ca.key" \
      --template "$work/ca/ca.tmpl" --outfile "$work/ca/ca.pem" &&
    certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 \
      --outfile "$le/archive/localhost/privkey1.pem" &&
    certtool --generate-certificate --load-privkey "$le/archive/localhost/privkey1.pem" \
      --load-ca-certificate "$work/ca/ca.pem" --load-ca-privkey "$work/ca/ca.key" \
      --template "$work/ca/server.tmpl" --outfile "$le/archive/localhost/cert1.pem"
} >"$work/certtool.log" 2>&1 || {
  show "$work/certtool.log"
  fail "certtool failed"
}
cp "$work/ca/ca.pem" "$le/archive/localhost/chain1.pem"
cat "$le/archive/localhost/cert1.pem" "$le/archive/localhost/chain1.pem" >"$le/archive/localhost/fullchain1.pem"
for f in cert chain fullchain privkey; do
  ln -s "../../archive/localhost/${f}1.pem" "$le/live/localhost/$f.pem"
done
# certbot's permissions: chrony in cturra/ntp fails there with "Could not set credentials".
chmod 0644 "$le"/archive/localhost/{cert,chain,fullchain}1.pem
chmod 0600 "$le/archive/localhost/privkey1.pem"
chmod 0700 "$le/archive" "$le/live"
[ "$(id -u)" = 0 ] && chown -R 0:0 "$le"
ok "certbot-like tree: live/localhost -> archive, privkey 0600, dirs 0700"

# --- 4. Compose up ----------------------------------------------------------

port_busy() { ss -Hltun "sport = :$1" 2>/dev/null | grep -q .; }
if [ -z "$ports_given" ] && command -v ss >/dev/null; then
  for _ in $(seq 50); do
    port_busy "$NTP_HOST_PORT" || port_busy "$NTS_HOST_PORT" || break
    NTP_HOST_PORT=$((20000 + RANDOM % 10000))
    NTS_HOST_PORT=$((30000 + RANDOM % 10000))
  done
fi

cat >"$work/test.env" <<EOF
NTSD_TEST_IMAGE=$NTSD_TEST_IMAGE
NTSD_TEST_NAME=$NTSD_TEST_NAME
NTS_DOMAIN=localhost
LETSENCRYPT_DIR=$le
NTP_BIND=127.0.0.1
NTS_BIND=127.0.0.1
NTP_HOST_PORT=$NTP_HOST_PORT
NTS_HOST_PORT=$NTS_HOST_PORT
EOF
# The shell environment beats the env file in compose: export the same.
set -a
# shellcheck disable=SC1091
. "$work/test.env"
set +a
unset NTP_SERVERS LOG_LEVEL NTS_NTP_PORT_ADVERTISED COMPOSE_FILE COMPOSE_PROJECT_NAME

dc config >"$work/compose-config.log" 2>&1 || {
  show "$work/compose-config.log"
  fail "compose config invalid"
}
if grep -qi 'SYS_TIME' "$work/compose-config.log"; then fail "compose gives SYS_TIME"; fi
ok "compose config valid, no SYS_TIME"
# A remapped host port reaches NTS clients only if NTS-KE names it.
if grep -Eq "NTS_NTP_PORT_ADVERTISED: '?$NTP_HOST_PORT'?\$" "$work/compose-config.log"; then
  ok "NTS_NTP_PORT_ADVERTISED follows NTP_HOST_PORT ($NTP_HOST_PORT)"
else
  show "$work/compose-config.log" 60
  fail "NTS_NTP_PORT_ADVERTISED is not NTP_HOST_PORT ($NTP_HOST_PORT) in the compose file"
fi

# A missing LETSENCRYPT_DIR: Docker would create it empty on the host for a
# short-form bind and ntsd would fail in a loop; the long form stops "up".
nodir=$work/no-such-letsencrypt
if LETSENCRYPT_DIR=$nodir dcp "${proj}nodir" up -d --no-deps --no-build ntp >"$work/nodir.log" 2>&1; then
  LETSENCRYPT_DIR=$nodir dcp "${proj}nodir" down -v >/dev/null 2>&1
  fail "compose up started ntp with LETSENCRYPT_DIR=$nodir missing"
fi
LETSENCRYPT_DIR=$nodir dcp "${proj}nodir" down -v >/dev/null 2>&1 || true
if [ -e "$nodir" ]; then
  fail "compose created the missing LETSENCRYPT_DIR $nodir on the host"
elif grep -q "$nodir" "$work/nodir.log" && grep -qi 'does not exist' "$work/nodir.log"; then
  ok "missing LETSENCRYPT_DIR: up refused ($(grep -io 'bind source path does not exist' "$work/nodir.log" | head -n1)), nothing created"
else
  show "$work/nodir.log"
  fail "compose up with a missing LETSENCRYPT_DIR did not say which path is missing"
fi

# A certificate that is not there (wrong NTS_DOMAIN, certbot not run yet):
# ntsd names the file and stops at once (restart: "no" in the test file).
nocert=/etc/letsencrypt/live/nosuch.invalid/fullchain.pem
NTS_DOMAIN=nosuch.invalid dcp "${proj}nocert" up -d --no-deps --no-build ntp >"$work/nocert.log" 2>&1 ||
  { show "$work/nocert.log"; fail "compose up (NTS_DOMAIN=nosuch.invalid)"; }
for _ in $(seq 50); do
  [ "$($DOCKER inspect -f '{{.State.Status}}' "$NTSD_TEST_NAME-ntp" 2>/dev/null)" = exited ] && break
  sleep 0.2
done
code=$($DOCKER inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$NTSD_TEST_NAME-ntp" 2>/dev/null || echo gone)
$DOCKER logs "$NTSD_TEST_NAME-ntp" >>"$work/nocert.log" 2>&1 || true
NTS_DOMAIN=nosuch.invalid dcp "${proj}nocert" down -v >/dev/null 2>&1 || true
line=$(grep -m1 'Fatal error' "$work/nocert.log" || true)
case "$code|$line" in
"exited 1|"*"$nocert"*"No such file or directory"*) ok "missing certificate: exit 1, ${line#* }" ;;
*)
  show "$work/nocert.log"
  fail "missing certificate: want exit 1 and a line naming $nocert, got '$code'"
  ;;
esac

compose_up=1
if ! dc up -d --no-build >"$work/up.log" 2>&1; then
  show "$work/up.log"
  fail "compose up failed"
fi
ntp=$NTSD_TEST_NAME-ntp
up=$NTSD_TEST_NAME-upstream
ok "compose up: $ntp (127.0.0.1:$NTP_HOST_PORT/udp, 127.0.0.1:$NTS_HOST_PORT/tcp), $up"

health() { $DOCKER inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}/{{.State.Status}}' "$1" 2>/dev/null || echo gone; }
th=$(date +%s)
while :; do
  h1=$(health "$up")
  h2=$(health "$ntp")
  [ "$h1" = healthy/running ] && [ "$h2" = healthy/running ] && break
  case "$h1 $h2" in
  *unhealthy* | *exited* | *dead* | *gone*) fail "containers not healthy: upstream $h1, ntp $h2" ;;
  esac
  [ $(($(date +%s) - th)) -lt "$HEALTH_WAIT" ] ||
    fail "not healthy after ${HEALTH_WAIT}s: upstream $h1, ntp $h2"
  sleep 1
done
ok "both healthy (ntsctl health --synced) after $(($(date +%s) - th))s"

# --- 5. Checks --------------------------------------------------------------

# chronyd -Q measures only (never sets the clock); its own empty config and
# pidfile so it never meets a system chronyd; -4 because the ports are
# published on 127.0.0.1 only; -u root so it can read the CA under $work.
chrony_q() { # name directive...
  local d=$work/chrony-$1
  shift
  mkdir -p "$d"
  : >"$d/chrony.conf"
  local pre=()
  command -v setpriv >/dev/null && pre=(setpriv --bounding-set -sys_time)
  timeout 30 "${pre[@]}" chronyd -4 -Q -t 10 -u root -f "$d/chrony.conf" \
    "pidfile $d/chronyd.pid" "cmdport 0" "$@" >"$d/log" 2>&1 &&
    grep -q 'System clock wrong by' "$d/log"
}

if chrony_q ntp "server 127.0.0.1 port $NTP_HOST_PORT iburst maxsamples 1"; then
  ok "NTP from host: $(grep -o 'System clock wrong by.*' "$work/chrony-ntp/log")"
else
  show "$work/chrony-ntp/log"
  fail "plain NTP query to 127.0.0.1:$NTP_HOST_PORT"
fi

if chrony_q nts "server localhost port $NTP_HOST_PORT nts ntsport $NTS_HOST_PORT iburst maxsamples 1" \
  "ntstrustedcerts $work/ca/ca.pem" "nosystemcert"; then
  ok "NTS from host: $(grep -o 'System clock wrong by.*' "$work/chrony-nts/log")"
else
  show "$work/chrony-nts/log"
  fail "NTS query (KE localhost:$NTS_HOST_PORT, NTP :$NTP_HOST_PORT)"
fi

# With a wrong "port", chrony can only succeed if NTS-KE's Port Negotiation
# record carries NTS_NTP_PORT_ADVERTISED (the published host port, not
# the container's 123), which docker-compose.yml sets from NTP_HOST_PORT.
if chrony_q ntsport "server localhost port 9 nts ntsport $NTS_HOST_PORT iburst maxsamples 1" \
  "ntstrustedcerts $work/ca/ca.pem" "nosystemcert"; then
  ok "NTS-KE advertises NTP port $NTP_HOST_PORT (NTS_NTP_PORT_ADVERTISED)"
else
  show "$work/chrony-ntsport/log"
  fail "NTS with the port learnt from NTS-KE (NTS_NTP_PORT_ADVERTISED=$NTP_HOST_PORT)"
fi

if ! timeout 10 $DOCKER exec "$ntp" ntsctl serverstats >"$work/serverstats.log" 2>&1; then
  show "$work/serverstats.log"
  fail "docker exec $ntp ntsctl serverstats"
fi
counter() { awk -F: -v k="$1" 'index($0, k) == 1 {gsub(/[^0-9]/, "", $2); print $2; exit}' "$work/serverstats.log"; }
ke=$(counter 'NTS-KE connections accepted')
auth=$(counter 'Authenticated NTP packets')
if [ "${ke:-0}" -ge 1 ] && [ "${auth:-0}" -ge 1 ]; then
  ok "serverstats: NTS-KE connections accepted $ke, Authenticated NTP packets $auth"
else
  show "$work/serverstats.log"
  fail "serverstats: NTS-KE accepted '${ke}', authenticated '${auth}' (want >= 1 each)"
fi

$DOCKER logs "$ntp" >"$work/ntp-start.log" 2>&1 || true
# The build's features: Debian 13's nettle has AES-128-GCM-SIV (AEAD 30);
# the Dockerfile builds with -Dseccomp=enabled.
feat=$(grep -m1 'ntsd version .* starting (' "$work/ntp-start.log" || true)
case $feat in
*'+AES-128-GCM-SIV'*'+SECCOMP'*) ok "start line: ${feat#* }" ;;
*) fail "start line lacks +AES-128-GCM-SIV or +SECCOMP: '$feat'" ;;
esac
# cturra/ntp's variables that ntsd does not read are said, not ignored.
for v in ENABLE_NTS NOCLIENTLOG TZ; do
  grep -q "$v is set but ntsd does not use it: " "$work/ntp-start.log" ||
    { show "$work/ntp-start.log"; fail "no log line for $v (set, not used by ntsd)"; }
done
ok "log lines for ENABLE_NTS, NOCLIENTLOG, TZ (set, not used by ntsd)"

# Started as root (to bind 123 and read the 0600 key), then running as ntsd.
$DOCKER top "$ntp" -o pid,uid,comm >"$work/top.log" 2>&1 || true
uids=$(awk 'NR > 1 && $3 == "ntsd" {print $2}' "$work/top.log" | sort -u | tr '\n' ' ')
if [ "$uids" = "101 " ]; then
  ok "ntsd runs as uid 101 (ntsd) after reading the root-only key"
else
  show "$work/top.log"
  fail "ntsd runs as uid '$uids', want 101 (NTSD_USER=ntsd)"
fi
# The privileged helper: root's uid (the owner of certbot's files), no
# capability.
if awk 'NR > 1 && $3 == "ntsd-privsep" && $2 == 0 { f = 1 } END { exit !f }' "$work/top.log"; then
  ok "the privileged helper runs with root's uid beside the server"
else
  show "$work/top.log"
  fail "no ntsd-privsep process with uid 0"
fi
# cap_drop: ALL and only what start-up needs; after start-up neither
# process holds a capability, and (SETPCAP) their bounding sets are empty.
want_caps="CAP_CHOWN CAP_DAC_OVERRIDE CAP_NET_BIND_SERVICE CAP_SETGID CAP_SETPCAP CAP_SETUID"
caps=$($DOCKER inspect -f '{{join .HostConfig.CapDrop " "}}|{{join .HostConfig.CapAdd " "}}' "$ntp")
got=$(printf '%s\n' ${caps#*|} | sed 's/^\(CAP_\)\{0,1\}/CAP_/' | sort | tr '\n' ' ')
if [ "${caps%%|*}" = ALL ] && [ "$got" = "$want_caps " ]; then
  ok "cap_drop ALL, cap_add ${got% }"
else
  fail "capabilities are '$caps', want cap_drop ALL and cap_add $want_caps"
fi
for pid in $(awk 'NR > 1 && ($3 == "ntsd" || $3 == "ntsd-privsep") {print $1}' "$work/top.log"); do
  st=$(grep -E '^(Name|CapPrm|CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status" | awk '{print $2}' | tr '\n' ' ')
  case $st in
  *' 0000000000000000 0000000000000000 0000000000000000 1 2 ') ;;
  *) fail "process $pid: Name/CapPrm/CapEff/CapBnd/NoNewPrivs/Seccomp = $st" ;;
  esac
done
ok "ntsd and its helper: no capability, empty bounding sets, no_new_privs, seccomp"

# Behind docker-proxy every host query arrives from the bridge's gateway:
# a burst from the host gets that address rate-limited, and ntsd says once
# what that means and what to do.
gw=$($DOCKER inspect -f '{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}' "$ntp")
{ printf '\043'; head -c 47 /dev/zero; } >"$work/ntp-request.bin"
for _ in $(seq 40); do
  cat "$work/ntp-request.bin" >"/dev/udp/127.0.0.1/$NTP_HOST_PORT" 2>/dev/null || true
done
for _ in $(seq 25); do
  $DOCKER logs "$ntp" >"$work/ntp-gw.log" 2>&1 || true
  grep -q "rate limit hit by $gw, this host's default gateway" "$work/ntp-gw.log" && break
  sleep 0.2
done
n=$(grep -c "rate limit hit by $gw, this host's default gateway" "$work/ntp-gw.log" || true)
if [ "$n" = 1 ] && grep -q 'userland-proxy' "$work/ntp-gw.log"; then
  ok "rate limit on the gateway $gw (docker-proxy) warned once"
  # What docs/docker.md shows: the start of the log, the clients table.
  timeout 10 $DOCKER exec "$ntp" ntsctl clients >"$work/clients.log" 2>&1 || true
  show "$work/ntp-start.log" 40
  show "$work/clients.log" 10
  grep "rate limit hit by $gw" "$work/ntp-gw.log" | sed 's/^/  /'
else
  show "$work/ntp-gw.log" 15
  fail "want one warning naming the gateway $gw after 40 requests from the host, got $n"
fi

# certbot renewal: a new archive/*2.pem pair and moved live/ links, the key
# 0600 root in 0700 directories.  ntsd (uid 101, no capability; its
# privileged helper reads the files) must load it without a restart.
(
  cd "$le/archive/localhost" &&
    certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile privkey2.pem &&
    certtool --generate-certificate --load-privkey privkey2.pem \
      --load-ca-certificate "$work/ca/ca.pem" --load-ca-privkey "$work/ca/ca.key" \
      --template "$work/ca/server.tmpl" --outfile cert2.pem &&
    cat cert2.pem chain1.pem >fullchain2.pem && chmod 0600 privkey2.pem &&
    for f in cert fullchain privkey; do ln -sfn "../../archive/localhost/${f}2.pem" "$le/live/localhost/$f.pem"; done
) >"$work/renew.log" 2>&1 || { show "$work/renew.log"; fail "renewal certificates"; }
for _ in $(seq 1 50); do
  $DOCKER logs "$ntp" >"$work/ntp-renew.log" 2>&1 || true
  grep -q "Reloaded certificate" "$work/ntp-renew.log" && break
  sleep 0.2
done
if grep -q "Reloaded certificate" "$work/ntp-renew.log"; then
  ok "certbot renewal loaded without a restart (uid 101, no capability added)"
else
  show "$work/ntp-renew.log"
  fail "renewed certificate not reloaded within 10 s"
fi

ts=$(date +%s%N)
timeout 30 $DOCKER stop -t 10 "$ntp" >/dev/null
ms=$((($(date +%s%N) - ts) / 1000000))
code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$ntp")
if [ "$ms" -lt "$STOP_MAX_MS" ] && [ "$code" != 137 ]; then
  ok "docker stop took ${ms} ms, exit code $code (SIGTERM handled)"
else
  fail "docker stop took ${ms} ms, exit code $code (want < ${STOP_MAX_MS} ms, not SIGKILL)"
fi

dc logs --no-color >"$work/compose.log" 2>&1 || true
if ! dc down -v --remove-orphans >"$work/down.log" 2>&1; then
  show "$work/down.log"
  fail "compose down -v"
fi
compose_up=0
left=$($DOCKER ps -aq --filter "label=com.docker.compose.project=$proj")
[ -z "$left" ] || fail "containers left after down: $left"
ok "compose down -v"

status=pass
