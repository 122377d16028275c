#!/usr/bin/env bash
# ntsd and the files in STATE_DIR, a directory that the unprivileged
# NTSD_USER owns, so anything may be planted there while ntsd runs as root:
# a FIFO or a symbolic link at the drift file, the key file and the control
# socket must neither hang ntsd nor be followed; nor may a FIFO as the
# config file, at start or on SIGHUP.  Also SIGHUP with unchanged
# multi-item LISTEN and NTP_SERVERS (nothing reported changed).
# Loopback only; every ntsd is stopped by PID (SIGKILL if SIGTERM fails, so
# that a hang fails the test instead of blocking it).  Bounded: ~30 s.
# Usage: ntsd_files.sh PATH/TO/ntsd
NTSD=$1
. "$(dirname "$0")/lib.sh"

# t_gone PID SECONDS: SIGTERM; true if PID exits within SECONDS, else
# SIGKILL (a blocked ntsd ignores SIGTERM: its loop never runs) and false.
t_gone() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 $(($2 * 20))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 1
}

# t_exits PID SECONDS: true if PID ends by itself within SECONDS (else
# SIGKILL and false).
t_exits() {
  local pid=$1 i
  for i in $(seq 1 $(($2 * 20))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 1
}

fmode() { stat -c '%a %s %F' "$1"; }
# Upstream servers on loopback that never answer (the upstream code runs,
# finds nothing; the drift file is read at start and written at stop).
UP1=127.0.0.1:$(t_port) UP2=127.0.0.1:$(t_port)

# --- a good drift file is still read ---------------------------------------
mkdir -m 755 "$T_DIR/G.state" && printf '1.500000 0.100000\n' > "$T_DIR/G.state/ntsd.drift"
t_start_ntsd G NTP_SERVERS="$UP1"
t_check "a regular drift file is read (no message about it)" \
  bash -c "grep -q 'Control socket' '$G_LOG' && ! grep -qi 'drift' '$G_LOG'"
t_check "SIGTERM stops it within 2 s" t_gone "$G_PID" 2

# --- a FIFO at the drift file ----------------------------------------------
mkdir -m 755 "$T_DIR/F.state" && mkfifo "$T_DIR/F.state/ntsd.drift"
t_start_ntsd F NTP_SERVERS="$UP1"
t_check "FIFO at the drift file: ntsd starts" grep -q "Control socket" "$F_LOG"
t_check "the error names the drift file, says why and how to fix it" \
  grep -q "drift file $T_DIR/F.state/ntsd.drift is not a regular file (a FIFO).*remove it" "$F_LOG"
t_check "SIGTERM stops it within 2 s" t_gone "$F_PID" 2

# --- a symbolic link at the drift file --------------------------------------
mkdir -m 755 "$T_DIR/L.state"
printf '12.500 0.100\n' > "$T_DIR/outside"
chmod 644 "$T_DIR/outside"
before=$(fmode "$T_DIR/outside")
ln -s "$T_DIR/outside" "$T_DIR/L.state/ntsd.drift"
t_start_ntsd L NTP_SERVERS="$UP1,$UP2"
t_check "symlink at the drift file: ntsd starts" grep -q "Control socket" "$L_LOG"
t_check "the symlink is not followed, and the log says so" \
  grep -q "drift file $T_DIR/L.state/ntsd.drift is a symbolic link.*not followed" "$L_LOG"
t_check "SIGTERM stops it within 2 s" t_gone "$L_PID" 2
t_check "the target is unchanged ($(fmode "$T_DIR/outside"))" \
  [ "$(fmode "$T_DIR/outside")" = "$before" ]

# --- the drift file larger than any drift file: not read --------------------
mkdir -m 755 "$T_DIR/B.state"
{ printf '12.500 0.100'; head -c 5000 /dev/zero | tr '\0' ' '; echo; } \
  > "$T_DIR/B.state/ntsd.drift"
t_start_ntsd B NTP_SERVERS="$UP1"
t_check "oversized drift file: ignored with a message naming it" \
  grep -q "drift file $T_DIR/B.state/ntsd.drift is larger than" "$B_LOG"
t_check "SIGTERM stops it within 2 s" t_gone "$B_PID" 2

# --- a FIFO at the key file ------------------------------------------------
if command -v certtool >/dev/null && t_make_certs; then
  mkdir -m 755 "$T_DIR/K.state" && mkfifo "$T_DIR/K.state/ntskeys"
  t_start_ntsd K NTS_CERT="$T_DIR/live/fullchain.pem" NTS_KEY="$T_DIR/live/privkey.pem"
  t_check "FIFO at the key file: ntsd exits at once by itself" t_exits "$K_PID" 3
  t_check "the error names the key file and says it is not a regular file" \
    grep -q "key file $T_DIR/K.state/ntskeys: it is not a regular file (a FIFO" "$K_LOG"
  t_check "the FIFO is left alone (never overwritten without NTS_KEYS_RESET)" \
    test -p "$T_DIR/K.state/ntskeys"
else
  t_fail "certtool missing or failed (apt-get install gnutls-bin)"
fi

# --- a symbolic link at the control socket ---------------------------------
mkdir -m 755 "$T_DIR/S.state"
printf 'secret\n' > "$T_DIR/victim" && chmod 600 "$T_DIR/victim"
before=$(fmode "$T_DIR/victim")
ln -s "$T_DIR/victim" "$T_DIR/S.state/ntsd.sock"
t_start_ntsd S
t_check "symlink at the control socket: ntsd refuses to start" t_exits "$S_PID" 3
t_check "the error names the socket path" \
  grep -q "control socket path $T_DIR/S.state/ntsd.sock exists and is not a socket" "$S_LOG"
t_check "the link's target is unchanged ($(fmode "$T_DIR/victim"))" \
  [ "$(fmode "$T_DIR/victim")" = "$before" ]

# --- SIGHUP with unchanged multi-item LISTEN and NTP_SERVERS ---------------
printf 'MAXPOLL=10\n' > "$T_DIR/h.conf"
t_start_ntsd H CONFIG="$T_DIR/h.conf" LISTEN=127.0.0.1,::1 NTP_SERVERS="$UP1,$UP2"
t_check "LISTEN=127.0.0.1,::1 and two NTP_SERVERS: ntsd starts" \
  grep -q "Control socket" "$H_LOG"
kill -HUP "$H_PID"
sleep 0.3
kill -HUP "$H_PID"
sleep 0.3
# A real change is still reported; it comes after the two reloads above.
printf 'MAXPOLL=9\n' > "$T_DIR/h.conf"
kill -HUP "$H_PID"
t_check "a changed setting is still reported" \
  t_wait 5 grep -q "MAXPOLL changed: restart ntsd to apply it" "$H_LOG"
t_check "unchanged LISTEN is not reported changed" \
  bash -c "! grep -q 'LISTEN changed' '$H_LOG'"
t_check "unchanged NTP_SERVERS is not reported changed" \
  bash -c "! grep -q 'NTP_SERVERS changed' '$H_LOG'"
t_check "exactly one change reported over three SIGHUPs" \
  [ "$(grep -c ' changed: ' "$H_LOG")" -eq 1 ]
# The config file replaced by a FIFO: the reload (on the loop that serves
# time) must not wait for a writer.
rm -f "$T_DIR/h.conf" && mkfifo "$T_DIR/h.conf"
kill -HUP "$H_PID"
t_check "SIGHUP with a FIFO as CONFIG: not reloaded, with the reason" \
  t_wait 5 grep -q "Configuration not reloaded: config file $T_DIR/h.conf is not a regular file (a FIFO)" "$H_LOG"
t_check "SIGTERM stops it within 2 s" t_gone "$H_PID" 2

# --- a FIFO as the config file at start ------------------------------------
mkfifo "$T_DIR/fifo.conf"
t_start_ntsd C CONFIG="$T_DIR/fifo.conf"
t_check "CONFIG is a FIFO: ntsd exits at once by itself" t_exits "$C_PID" 3
t_check "the error names the file and the fix" \
  grep -q "config file $T_DIR/fifo.conf is not a regular file (a FIFO); fix: point the CONFIG setting at a regular file" "$C_LOG"

[ "$T_FAIL" -eq 0 ] || for f in "$T_DIR"/*.log; do echo "== $f"; sed 's/^/  | /' "$f"; done
t_done
