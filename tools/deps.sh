# Sourced by run.sh and test.sh: installs what is missing from Debian.
# Usage: deps_install PACKAGE...
deps_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "Installing from Debian: ${missing[*]}"
  # Packages such as chrony ship an init script; on a machine without
  # systemd apt would start a chronyd that disciplines the shared system
  # clock.  Forbid service starts while installing (policy-rc.d, exit 101).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    made_policy=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  local rc=$?
  [ $made_policy -eq 1 ] && $sudo rm -f "$policy"
  return $rc
}

BUILD_DEPS=(meson ninja-build gcc libc6-dev pkg-config libgnutls28-dev
  nettle-dev libuv1-dev check libseccomp-dev)
