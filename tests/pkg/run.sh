#!/usr/bin/env bash
# The Debian packages, built from this tree and tried in a fresh root:
# dpkg-buildpackage -us -uc -b on a copy of the tree (nothing is written
# into the checkout), lintian (no error allowed; warnings printed), then in
# a copy of a debootstrap root: install the three packages with apt (which
# must replace systemd-timesyncd), the user, the man pages, ntsctl, the
# unit (systemd-analyze verify), the packaged ntsd serving on loopback and
# answering ntsctl and an example program built against libntsntp-dev,
# reinstall, upgrade to a second build, remove and purge.
#
#   tests/pkg/run.sh [SUITE]     as root; SUITE defaults to the host's
#
# The host's own suite is built on the host (its build dependencies are
# installed); another suite (trixie on a Debian 12 host) is built inside a
# copy of a root of that suite.
#
# Environment:
#   PKG_WORK    scratch directory, emptied first (/var/tmp/ntsntp-pkg)
#   PKG_ROOT    a root of SUITE to copy for each step, instead of the
#               debootstrap minbase root cached in PKG_CACHE
#   PKG_CACHE   where that root is kept between runs (/var/cache/ntsntp-pkg)
#   PKG_MIRROR  Debian mirror (http://deb.debian.org/debian)
#   PKG_KEEP=1  keep PKG_WORK afterwards
#   PKG_BUILD_OPTIONS  more DEB_BUILD_OPTIONS (nocheck skips the unit suite)
#
# The clock is never touched: the unit is never started (no systemd runs in
# a chroot, and policy-rc.d forbids starts), and the one ntsd started here
# runs with CLOCK_CONTROL=no and without CAP_SYS_TIME in its bounding set.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "tests/pkg/run.sh must run as root (chroot, mounts)"; exit 1; }
. "$src/tools/deps.sh"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
. /etc/os-release
host_suite=${VERSION_CODENAME:?}
suite=${1:-$host_suite}
W=$(realpath -m "${PKG_WORK:-/var/tmp/ntsntp-pkg}")
case $W in
  / | "$src" | "$src"/*) echo "PKG_WORK=$W: must be a scratch directory outside the tree"; exit 2 ;;
esac
cache=${PKG_CACHE:-/var/cache/ntsntp-pkg}
mirror=${PKG_MIRROR:-http://deb.debian.org/debian}
start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - start )) s)"; }
die() { echo "FAIL - $*"; exit 1; }

T_PASS=0 T_FAIL=0
t_ok() { T_PASS=$((T_PASS + 1)); echo "ok   - $*"; }
t_fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL - $*"; }
t_check() { # t_check "description" command...
  local what=$1; shift
  if "$@"; then t_ok "$what"; else t_fail "$what"; fi
}

# --- roots: copies, mounts, clean-up -------------------------------------
MOUNTS=() NTSD_PID=""
cleanup() {
  local rc=$? i
  set +e
  if [ -n "$NTSD_PID" ]; then kill "$NTSD_PID" 2>/dev/null; wait "$NTSD_PID" 2>/dev/null; fi
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || true
  done
  MOUNTS=()
  if [ "${PKG_KEEP:-0}" != 1 ] && [ -d "$W" ] && ! still_mounted "$W"; then
    rm -rf --one-file-system "$W"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

still_mounted() { findmnt -rno TARGET | grep -q "^$1\(/\|$\)"; }

mount_root() { # proc, sys, dev for apt and ntsd; /run stays the root's own
  local r=$1
  mount -t proc proc "$r/proc" && MOUNTS+=("$r/proc")
  mount -t sysfs sysfs "$r/sys" && MOUNTS+=("$r/sys")
  mount --bind /dev "$r/dev" && MOUNTS+=("$r/dev")
  mount --bind /dev/pts "$r/dev/pts" && MOUNTS+=("$r/dev/pts")
}

umount_root() {
  local r=$1 i keep=()
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    case ${MOUNTS[i]} in "$r"/*) umount "${MOUNTS[i]}" ;; esac
  done
  for i in "${MOUNTS[@]}"; do case $i in "$r"/*) ;; *) keep+=("$i") ;; esac; done
  MOUNTS=("${keep[@]+"${keep[@]}"}")
  ! still_mounted "$r" || die "$r is still mounted"
}

# copy_root DEST: a copy of the template, without what is mounted in it
# (another user's chroot may have proc, sys, dev or a source tree there).
copy_root() {
  local dst=$1 m ex=()
  while read -r m; do ex+=(--exclude="./${m#"$template"/}"); done \
    < <(findmnt -rno TARGET | grep "^$template/" || true)
  mkdir -p "$dst"
  tar -C "$template" --anchored "${ex[@]+"${ex[@]}"}" -cf - . | tar -C "$dst" -xpf -
  mkdir -p "$dst/proc" "$dst/sys" "$dst/dev"
  # The host's resolver and Debian's loopback names; no service may start
  # (policy-rc.d), and no systemd may seem to run (/run/systemd/system).
  cp -L /etc/resolv.conf "$dst/etc/resolv.conf"
  grep -qs '^127.0.0.1[[:space:]].*localhost' "$dst/etc/hosts" ||
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >> "$dst/etc/hosts"
  printf '#!/bin/sh\nexit 101\n' > "$dst/usr/sbin/policy-rc.d"
  chmod 755 "$dst/usr/sbin/policy-rc.d"
  [ ! -e "$dst/run/systemd/system" ] || die "$dst/run/systemd/system exists: services would start"
  mount_root "$dst"
}

# Processes whose root directory is $R (the host's own ntsd, if any, are not).
procs_in_root() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && echo "${p#/proc/}"
  done
  return 0
}

in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }
apt_root() { in_root apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }

# copy_tree DEST: the tree as checked out (tracked and untracked files, not
# the ignored build directories), into DEST/ntsntp.
copy_tree() {
  mkdir -p "$1/ntsntp"
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$src" ls-files -z -co --exclude-standard |
      tar -C "$src" --null -T - -cf - | tar -C "$1/ntsntp" -xf -
  else
    tar -C "$src" --exclude=./.git --exclude='./build*' --exclude='./obj-*' \
      -cf - . | tar -C "$1/ntsntp" -xf -
  fi
}

# --- set-up ---------------------------------------------------------------
step "host tools"
deps_install debootstrap dpkg-dev debhelper lintian
if [ -n "${PKG_ROOT:-}" ]; then
  template=$(cd "$PKG_ROOT" && pwd -P)
else
  template=$cache/$suite
  if [ ! -e "$template/.ntsntp-complete" ]; then
    step "debootstrap --variant=minbase $suite (cached in $cache)"
    rm -rf --one-file-system "$template.new"
    mkdir -p "$cache"
    debootstrap --variant=minbase "$suite" "$template.new" "$mirror" \
      > "$cache/$suite.log" 2>&1 || { tail -20 "$cache/$suite.log"; die "debootstrap $suite"; }
    rm -rf --one-file-system "$template"
    mv "$template.new" "$template"
    touch "$template/.ntsntp-complete"
  fi
fi
grep -q "VERSION_CODENAME=$suite\$" "$template/etc/os-release" ||
  die "$template is not Debian $suite"
! still_mounted "$W" || die "$W has mounts in it; unmount them first"
rm -rf --one-file-system "$W"
mkdir -p "$W"

# build NAME VERSION [dpkg-buildpackage option...]: the packages of VERSION
# in $W/NAME.  The first call copies the tree and builds it; a later one
# gives the same tree a new changelog entry and builds the packages again
# without cleaning (-nc): the compiled objects are reused.
build() {
  local name=$1 version=$2 top=$W opts
  shift 2
  opts="parallel=2 ${PKG_BUILD_OPTIONS:-}"
  if [ "$suite" != "$host_suite" ]; then
    top=$W/build-root R=$W/build-root
    if [ ! -d "$top" ]; then
      step "build root for $suite: build dependencies"
      copy_root "$R"
      apt_root update >/dev/null
      apt_root install --no-install-recommends dpkg-dev debhelper lintian \
        > "$W/build-root.log" 2>&1 || { tail -20 "$W/build-root.log"; die "build tools in $R"; }
    fi
  fi
  if [ ! -d "$top/src/ntsntp" ]; then
    copy_tree "$top/src"
    if [ "$top" != "$W" ]; then
      apt_root build-dep --no-install-recommends /src/ntsntp >> "$W/build-root.log" 2>&1 ||
        { tail -20 "$W/build-root.log"; die "build dependencies in $R"; }
    elif ! (cd "$top/src/ntsntp" && dpkg-checkbuilddeps) 2>/dev/null; then
      echo "Installing the build dependencies (apt-get build-dep)"
      { apt-get update -qq &&
        apt-get build-dep -y -q --no-install-recommends "$top/src/ntsntp"; } \
        > "$W/build-deps.log" 2>&1 || { tail -20 "$W/build-deps.log"; die "apt-get build-dep"; }
    fi
  fi
  [ "$version" = "$(dpkg-parsechangelog -l "$top/src/ntsntp/debian/changelog" -S Version)" ] ||
    new_version "$top/src/ntsntp" "$version"
  if [ "$top" = "$W" ]; then
    (cd "$top/src/ntsntp" && DEB_BUILD_OPTIONS=$opts dpkg-buildpackage -us -uc -b "$@")
  else
    in_root sh -c 'cd /src/ntsntp && DEB_BUILD_OPTIONS="$0" dpkg-buildpackage -us -uc -b "$@"' "$opts" "$@"
  fi > "$W/$name.build.log" 2>&1 || { tail -40 "$W/$name.build.log"; die "dpkg-buildpackage ($version)"; }
  mkdir -p "$W/$name"
  cp "$top/src"/*_"$version"_*.deb "$top/src/ntsntp_${version}"_*.changes \
    "$top/src/ntsntp_${version}"_*.buildinfo "$W/$name/"
  ls "$W/$name"/ntsd_*.deb "$W/$name"/libntsntp1_*.deb "$W/$name"/libntsntp-core1_*.deb \
    "$W/$name"/libntsntp-dev_*.deb >/dev/null
}

# new_version TREE VERSION: a changelog entry, as dch -v would add.
new_version() {
  local cl=$1/debian/changelog tmp
  tmp=$(mktemp)
  { printf 'ntsntp (%s) unstable; urgency=medium\n\n  * Test build: upgrade from %s.\n\n -- %s  %s\n\n' \
      "$2" "$V1" "ntsntp maintainers <maintainers@ntsntp.invalid>" "$(date -R)"
    cat "$cl"; } > "$tmp"
  mv "$tmp" "$cl"
}

# --- build and lintian ----------------------------------------------------
V1=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
V2=$V1+pkgtest1
step "build $V1 on $suite (DEB_BUILD_OPTIONS: ${PKG_BUILD_OPTIONS:-none})"
build v1 "$V1"
unit=$(grep -Eo '^Ok: +[0-9]+' "$W/v1.build.log" | grep -Eo '[0-9]+' || echo 0)
t_ok "dpkg-buildpackage -us -uc -b builds $V1 ($unit unit tests passed)"

step "lintian $V1"
changes=$(cd "$W/v1" && ls ntsntp_*.changes)
if [ "$suite" = "$host_suite" ]; then
  lint() { (cd "$W/v1" && lintian "$@"); }
else # the suite's own lintian, on the packages the build root made
  lint() { in_root sh -c 'cd /src && lintian "$@"' lintian "$@"; }
fi
lint --version
rc=0
lint -I --tag-display-limit 0 --fail-on error "$changes" > "$W/lintian.txt" 2>&1 || rc=$?
grep -v 'running with root privileges' "$W/lintian.txt" || true
t_check "lintian: no error ($(grep -c '^W:' "$W/lintian.txt") warnings)" \
  test "$rc" -eq 0 -a "$(grep -c '^E:' "$W/lintian.txt")" -eq 0

step "build $V2 (the upgrade: a new changelog entry, packaged again)"
build v2 "$V2" -nc
t_ok "dpkg-buildpackage -nc builds $V2"
if [ -d "$W/build-root" ]; then
  umount_root "$W/build-root"
  rm -rf --one-file-system "$W/build-root"
fi

# --- install in a fresh root ----------------------------------------------
step "fresh $suite root: man-db, systemd, systemd-timesyncd"
R=$W/root
copy_root "$R"
apt_root update >/dev/null
apt_root install --no-install-recommends man-db systemd systemd-timesyncd gcc libc6-dev pkgconf \
  > "$W/root-apt.log" 2>&1 || { tail -20 "$W/root-apt.log"; die "apt-get install in $R"; }
mkdir -p "$R/tmp/v1" "$R/tmp/v2"
cp "$W"/v1/*.deb "$R/tmp/v1/"; cp "$W"/v2/*.deb "$R/tmp/v2/"
debs() { (cd "$R" && ls "tmp/$1"/ntsd_*.deb "tmp/$1"/libntsntp1_*.deb "tmp/$1"/libntsntp-core1_*.deb \
  "tmp/$1"/libntsntp-dev_*.deb | sed 's|^|/|'); }

step "install $V1"
apt_root install --no-install-recommends $(debs v1) > "$W/install.log" 2>&1 ||
  { tail -30 "$W/install.log"; die "apt-get install ./ntsd ./libntsntp1 ./libntsntp-dev"; }
ver() { in_root dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$1" 2>/dev/null; }
t_check "ntsd, libntsntp1, libntsntp-core1, libntsntp-dev $V1 installed" \
  test "$(ver ntsd)" = "ii $V1" -a "$(ver libntsntp1)" = "ii $V1" -a "$(ver libntsntp-core1)" = "ii $V1" \
    -a "$(ver libntsntp-dev)" = "ii $V1"
t_check "systemd-timesyncd removed (Conflicts: time-daemon)" \
  test "$(in_root dpkg-query -W -f='${db:Status-Abbrev}' systemd-timesyncd 2>/dev/null | cut -c1-2)" != ii
pw=$(in_root getent passwd ntsd || true)
t_check "system user ntsd: $pw" \
  test -n "$pw" -a "$(echo "$pw" | cut -d: -f3)" -lt 1000 -a "$(echo "$pw" | cut -d: -f6)" = /nonexistent
t_check "system group ntsd" sh -c "chroot '$R' getent group ntsd >/dev/null"
t_check "/usr/sbin/ntsd --help" sh -c "chroot '$R' /usr/sbin/ntsd --help | grep -q CLOCK_CONTROL"
t_check "ntsctl on PATH: $(in_root sh -c 'command -v ntsctl')" \
  test "$(in_root sh -c 'command -v ntsctl')" = /usr/bin/ntsctl
t_check "man -w ntsd: $(in_root man -w 8 ntsd 2>&1)" test -f "$R$(in_root man -w 8 ntsd 2>/dev/null)"
t_check "man -w ntsctl: $(in_root man -w 1 ntsctl 2>&1)" test -f "$R$(in_root man -w 1 ntsctl 2>/dev/null)"
t_check "man ntsd renders" sh -c "chroot '$R' env MANWIDTH=80 man -P cat ntsd 2>/dev/null | grep -q NTP_SERVERS"
unit=""
for u in usr/lib/systemd/system/ntsd.service lib/systemd/system/ntsd.service; do
  [ -f "$R/$u" ] && { unit=/$u; break; }
done
t_check "unit installed: $unit" test -n "$unit"
t_check "unit enabled (multi-user.target.wants)" \
  test -L "$R/etc/systemd/system/multi-user.target.wants/ntsd.service"
t_check "unit grants CAP_SYS_TIME" grep -q '^CapabilityBoundingSet=.*CAP_SYS_TIME' "$R$unit"
t_check "unit conflicts with chrony and systemd-timesyncd" \
  grep -q '^Conflicts=.*chrony.service.*systemd-timesyncd.service' "$R$unit"
if in_root systemd-analyze verify ntsd.service > "$W/verify.log" 2>&1; then
  t_ok "systemd-analyze verify ntsd.service"
else
  cat "$W/verify.log"; t_fail "systemd-analyze verify ntsd.service"
fi
t_check "/etc/default/ntsd: CLOCK_CONTROL=yes" grep -qx 'CLOCK_CONTROL=yes' "$R/etc/default/ntsd"
t_check "/etc/default/ntsd: NTP_SERVERS from debian.pool.ntp.org" \
  grep -q '^NTP_SERVERS=.*debian\.pool\.ntp\.org' "$R/etc/default/ntsd"
t_check "/etc/default/ntsd is a conffile" grep -qx /etc/default/ntsd "$R/var/lib/dpkg/info/ntsd.conffiles"
t_check "nothing started in the root by the installation" test -z "$(procs_in_root)"

# --- the packaged ntsd, by hand, never with the clock ---------------------
step "packaged ntsd on 127.0.0.1 (CLOCK_CONTROL=no, no CAP_SYS_TIME)"
# What the running ntsd must show: users, capabilities, ntsctl, a client
# built against libntsntp-dev.
running_checks() {
  status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
  helper=$(pgrep -P "$NTSD_PID" -x ntsd-privsep || true)
  t_check "server runs as ntsd with no capability" \
    test "$(status "$NTSD_PID" Uid)" = "$(echo "$pw" | cut -d: -f3)" -a "$(status "$NTSD_PID" CapEff)" = 0000000000000000
  t_check "helper ($helper) holds no capability with CLOCK_CONTROL=no" \
    test -n "$helper" -a "$(status "${helper:-0}" CapEff 2>/dev/null)" = 0000000000000000
  t_check "/var/lib/ntsd made by ntsd: mode 750, owned by ntsd" \
    test "$(stat -c %u:%g:%a "$R/var/lib/ntsd")" = "$(echo "$pw" | cut -d: -f3,4):750"
  if in_root ntsctl tracking > "$W/ntsctl.txt" 2>&1; then
    t_ok "ntsctl tracking (default socket /var/lib/ntsd/ntsd.sock, as run.sh)"
    sed 's/^/    /' "$W/ntsctl.txt"
  else
    cat "$W/ntsctl.txt"; t_fail "ntsctl tracking"
  fi
  t_check "ntsctl health" in_root ntsctl health
  # libntsntp-dev: an example builds with pkg-config alone and, linked to
  # libntsntp1, queries the packaged server.
  cp "$src/examples/ntp-query.c" "$R/tmp/"
  if in_root sh -c 'cc -o /tmp/ntp-query /tmp/ntp-query.c $(pkg-config --cflags --libs libntsntp)' > "$W/cc.log" 2>&1; then
    t_ok "libntsntp-dev: examples/ntp-query.c builds with pkg-config"
    if chroot "$R" timeout 10 /tmp/ntp-query 127.0.0.1 "$port" > "$W/query.txt" 2>&1; then
      t_ok "ntp-query (libntsntp1) gets the time from the packaged ntsd"
      sed 's/^/    /' "$W/query.txt"
    else
      cat "$W/query.txt"; t_fail "ntp-query (libntsntp1) gets the time from the packaged ntsd"
    fi
    t_check "ntp-query is linked to libntsntp.so.1" sh -c "chroot '$R' ldd /tmp/ntp-query | grep -q 'libntsntp.so.1 => /'"
    t_check "ntsctl serverstats counts the query" \
      sh -c "chroot '$R' ntsctl serverstats | grep -Eq 'NTP packets received *: *[1-9]'"
  else
    cat "$W/cc.log"; t_fail "libntsntp-dev: examples/ntp-query.c builds with pkg-config"
  fi
  # The sans-I/O core alone: tiny-server builds with libntsntp-core and
  # does not pull in libuv.
  cp "$src/examples/tiny-server.c" "$R/tmp/"
  if in_root sh -c 'cc -o /tmp/tiny-server /tmp/tiny-server.c $(pkg-config --cflags --libs libntsntp-core)' > "$W/cc.log" 2>&1; then
    t_ok "libntsntp-dev: examples/tiny-server.c builds with pkg-config libntsntp-core"
    t_check "tiny-server loads libntsntp-core.so.1 (libntsntp-core1) and not libuv" \
      sh -c "chroot '$R' ldd /tmp/tiny-server > '$W/ldd.txt' && grep -q 'libntsntp-core.so.1 => /' '$W/ldd.txt' && ! grep -q libuv '$W/ldd.txt'"
  else
    cat "$W/cc.log"; t_fail "libntsntp-dev: examples/tiny-server.c builds with pkg-config libntsntp-core"
  fi
  kill -0 "$NTSD_PID" 2>/dev/null && t_ok "ntsd still running after the queries" ||
    { sed 's/^/    /' "$W/ntsd.log"; t_fail "ntsd still running after the queries (log above)"; }
}

# /etc/default/ntsd as the unit reads it, then the test's overrides: the
# local clock, loopback, kernel-chosen ports, and never the clock.
# setpriv (the host's) removes CAP_SYS_TIME from the bounding set before
# chroot, so nothing below could set the clock even if asked to.
: > "$W/ntsd.log"
setpriv --bounding-set=-sys_time chroot "$R" /usr/bin/env -i \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c \
  'set -a; . /etc/default/ntsd; set +a
   exec env CLOCK_CONTROL=no NTP_SERVERS=127.127.1.1 LISTEN=127.0.0.1 \
     NTP_PORT=0 NTS_KE_PORT=0 NTS_CERT= NTS_KEY= WORKERS=1 METRICS_LISTEN= \
     /usr/sbin/ntsd' >> "$W/ntsd.log" 2>&1 &
NTSD_PID=$!
port=""
for _ in $(seq 1 50); do
  port=$(sed -n 's/.*serving NTP on UDP 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/ntsd.log" || true)
  [ -n "$port" ] && [ -S "$R/var/lib/ntsd/ntsd.sock" ] && break
  kill -0 "$NTSD_PID" 2>/dev/null || break
  sleep 0.2
done
grep -q 'Disabled control of system clock' "$W/ntsd.log" ||
  { kill "$NTSD_PID" 2>/dev/null; cat "$W/ntsd.log"; die "ntsd did not say it leaves the clock alone"; }
sleep 0.5 # past the sandbox's start
if [ -n "$port" ] && kill -0 "$NTSD_PID" 2>/dev/null; then
  t_ok "packaged ntsd serves on 127.0.0.1:$port"
  running_checks
else
  sed 's/^/    /' "$W/ntsd.log"; t_fail "packaged ntsd starts and keeps running (log above)"
fi
{ kill "$NTSD_PID" 2>/dev/null; wait "$NTSD_PID" 2>/dev/null; } || true
NTSD_PID=""
t_check "ntsd stopped on SIGTERM and removed its socket" \
  test -z "$(procs_in_root)" -a ! -e "$R/var/lib/ntsd/ntsd.sock"
# What ntsd keeps there (cookie keys, drift) must outlive upgrades.
state=$R/var/lib/ntsd/ntskeys
mkdir -p "${state%/*}"
[ -e "$state" ] || echo "stand-in for the cookie keys" > "$state"

# --- reinstall, upgrade, remove, purge ------------------------------------
step "reinstall $V1"
echo "# local change, kept across upgrades" >> "$R/etc/default/ntsd"
apt_root install --reinstall --no-install-recommends $(debs v1) > "$W/reinstall.log" 2>&1 &&
  t_ok "apt-get install --reinstall" || { tail -20 "$W/reinstall.log"; t_fail "apt-get install --reinstall"; }
t_check "still $V1, user and state kept" \
  test "$(ver ntsd)" = "ii $V1" -a -e "$state" -a -n "$(in_root getent passwd ntsd)"

step "upgrade to $V2"
apt_root install --no-install-recommends $(debs v2) > "$W/upgrade.log" 2>&1 &&
  t_ok "apt-get install (upgrade)" || { tail -20 "$W/upgrade.log"; t_fail "apt-get install (upgrade)"; }
t_check "ntsd, libntsntp1, libntsntp-core1, libntsntp-dev at $V2" \
  test "$(ver ntsd)" = "ii $V2" -a "$(ver libntsntp1)" = "ii $V2" -a "$(ver libntsntp-core1)" = "ii $V2" \
    -a "$(ver libntsntp-dev)" = "ii $V2"
t_check "local change to /etc/default/ntsd kept" grep -q '^# local change' "$R/etc/default/ntsd"
t_check "state, user and enabled unit kept" \
  test -e "$state" -a -n "$(in_root getent passwd ntsd)" \
    -a -L "$R/etc/systemd/system/multi-user.target.wants/ntsd.service"

step "remove, then purge"
apt_root remove ntsd > "$W/remove.log" 2>&1 && t_ok "apt-get remove ntsd" ||
  { tail -20 "$W/remove.log"; t_fail "apt-get remove ntsd"; }
t_check "after remove: binaries and unit gone, /etc/default/ntsd and /var/lib/ntsd kept" \
  test ! -e "$R/usr/sbin/ntsd" -a ! -e "$R$unit" -a -e "$R/etc/default/ntsd" -a -e "$state"
apt_root purge ntsd libntsntp1 libntsntp-core1 libntsntp-dev > "$W/purge.log" 2>&1 && t_ok "apt-get purge" ||
  { tail -20 "$W/purge.log"; t_fail "apt-get purge"; }
t_check "after purge: /var/lib/ntsd gone" test ! -e "$R/var/lib/ntsd"
t_check "after purge: /etc/default/ntsd gone" test ! -e "$R/etc/default/ntsd"
t_check "after purge: unit and its enable link gone" \
  test ! -e "$R$unit" -a ! -L "$R/etc/systemd/system/multi-user.target.wants/ntsd.service" \
    -a ! -e "$R/var/lib/systemd/deb-systemd-helper-enabled/ntsd.service"
t_check "after purge: no package left" \
  test -z "$(in_root dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' ntsd libntsntp1 libntsntp-core1 libntsntp-dev 2>/dev/null | grep -v '^un ')"
t_check "after purge: system user ntsd kept, as Debian keeps system users" \
  test -n "$(in_root getent passwd ntsd)"

step "done"
echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" -eq 0 ]
