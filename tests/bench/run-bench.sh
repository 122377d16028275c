#!/bin/bash
# ntsd vs chronyd, in one run, on this machine (see docs/performance.md).
#
#   tests/bench/run-bench.sh --ntsd BUILD/daemon/ntsd --gen BUILD/tests/ntsbench
#       [--smoke] [--srv-cpu N] [--gen-cpu N] [--no-rt] [--no-scaling]
#       [--out FILE] [--keep]
#
# Starts chronyd (local stratum 1, -x, NTS on, high ports, no capability
# to set the clock) and ntsd with the same certificate, pins both servers to
# --srv-cpu and the load generator to --gen-cpu, measures each target of
# issue 6 for both, and prints a table with ratios.  Loopback and high
# ports only; the system clock is never touched.
#
# Scheduling: unless --no-rt, the servers and the generator run SCHED_FIFO
# (priority 20, same for both servers) in a session of their own whose
# autogroup has nice -19, so that other work on the machine disturbs the
# comparison as little as possible.  RT throttling (95 %) still applies.
#
# --smoke: a few seconds, small rates, every phase once; exits 0 unless
# something is broken (a server does not start, no valid response, invalid
# responses).  Never fails on timing.  Exit 77 (skip) if ntsd cannot run.
set -u

SMOKE=0 RT=1 SCALING=1 KEEP=0 OUT= NTSD= GEN= SRV_CPU=1 GEN_CPU=0
while [ $# -gt 0 ]; do
  case "$1" in
  --smoke) SMOKE=1 ;;
  --no-rt) RT=0 ;;
  --no-scaling) SCALING=0 ;;
  --keep) KEEP=1 ;;
  --out) OUT=$2; shift ;;
  --ntsd) NTSD=$2; shift ;;
  --gen) GEN=$2; shift ;;
  --srv-cpu) SRV_CPU=$2; shift ;;
  --gen-cpu) GEN_CPU=$2; shift ;;
  *) echo "usage: $0 --ntsd PATH --gen PATH [--smoke] [--no-rt] [--no-scaling] [--srv-cpu N] [--gen-cpu N] [--out FILE] [--keep]" >&2
     exit 2 ;;
  esac
  shift
done
[ -x "$NTSD" ] && [ -x "$GEN" ] || { echo "run-bench: need --ntsd and --gen executables" >&2; exit 2; }
NTSD=$(readlink -f "$NTSD") GEN=$(readlink -f "$GEN")
[ "$SMOKE" = 1 ] && RT=0 SCALING=0

# A session of our own: its autogroup gets nice -19 (root only).
if [ "$RT" = 1 ] && [ -z "${NTSBENCH_SESSION:-}" ]; then
  export NTSBENCH_SESSION=1
  exec setsid -w "$0" --ntsd "$NTSD" --gen "$GEN" --srv-cpu "$SRV_CPU" \
    --gen-cpu "$GEN_CPU" ${OUT:+--out "$OUT"} \
    $([ "$SCALING" = 0 ] && echo --no-scaling) $([ "$KEEP" = 1 ] && echo --keep)
fi
[ "$RT" = 1 ] && { echo -19 > /proc/self/autogroup; } 2>/dev/null

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ] || [ "$SRV_CPU" -ge "$NCPU" ] || [ "$GEN_CPU" -ge "$NCPU" ]; then
  SRV_CPU=0 GEN_CPU=0
  echo "run-bench: fewer than 2 CPUs: server and generator share CPU 0 (results are not comparable to the issue's)" >&2
fi

W=$(mktemp -d /tmp/ntsbench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  [ "$KEEP" = 1 ] && echo "run-bench: files kept in $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "run-bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- certificate (ECDSA P-256, CN/SAN localhost, 127.0.0.1, ::1) ----
command -v certtool >/dev/null || { log "certtool (gnutls-bin) missing"; [ "$SMOKE" = 1 ] && exit 77; exit 1; }
cat > "$W/ca.tmpl" <<'EOF'
cn = "ntsbench CA"
ca
cert_signing_key
expiration_days = 2
EOF
cat > "$W/srv.tmpl" <<'EOF'
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
tls_www_server
signing_key
encryption_key
expiration_days = 2
EOF
{
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$W/ca.key" &&
  certtool --generate-self-signed --load-privkey "$W/ca.key" --template "$W/ca.tmpl" --outfile "$W/ca.pem" &&
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$W/srv.key" &&
  certtool --generate-certificate --load-privkey "$W/srv.key" --load-ca-certificate "$W/ca.pem" \
    --load-ca-privkey "$W/ca.key" --template "$W/srv.tmpl" --outfile "$W/srv.pem"
} >/dev/null 2>&1 || die "certtool failed"

# ---- ports: high, free, never 123/4460 ----
port_used() {
  local hex
  hex=$(printf '%04X' "$1")
  grep -q ":$hex " /proc/net/udp /proc/net/tcp /proc/net/udp6 /proc/net/tcp6 2>/dev/null
}
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    port_used "$p" || port_used $((p + 1)) || { echo "$p"; return; }
  done
  die "no free port"
}
wait_port() { # proto port pid
  local hex f
  hex=$(printf '%04X' "$2")
  f=/proc/net/$1
  for _ in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || return 1
    grep -q "^ *[0-9]*: [0-9A-F]*:$hex " "$f" && return 0
    sleep 0.05
  done
  return 1
}

rt_pid() { # give a server (all threads, and child processes) SCHED_FIFO 20
  [ "$RT" = 1 ] || return 0
  local p c
  p=$1
  chrt -a -f -p 20 "$p" >/dev/null 2>&1 || log "chrt failed for $p (results will be noisier)"
  for c in $(pgrep -P "$p"); do chrt -a -f -p 20 "$c" >/dev/null 2>&1; done
}
gen() { # the generator, pinned, FIFO like the servers
  if [ "$RT" = 1 ]; then
    chrt -f 20 taskset -c "$GEN_CPU" "$GEN" "$@"
  else
    taskset -c "$GEN_CPU" "$GEN" "$@"
  fi
}

# ---- servers ----
CHRONY_PID= NTSD_PID=
EXTRA_ENV=() TAG= CH_EXTRA=
# Rate limiting off, as chronyd's default: the load comes from one address.
NTSD_RL=(RATELIMIT=no NTS_RATELIMIT=no NTS_MAX_CONNECTIONS_PER_CLIENT=0)
start_chrony() {
  local d=$W/chrony$TAG
  mkdir -p "$d"
  CH_PORT=$(pick_port) CH_KE=$((CH_PORT + 1))
  cat > "$d/chrony.conf" <<EOF
local stratum 1
port $CH_PORT
ntsport $CH_KE
ntsservercert $W/srv.pem
ntsserverkey $W/srv.key
ntsdumpdir $d
cmdport 0
bindcmdaddress $d/chronyd.sock
pidfile $d/chronyd.pid
allow 127.0.0.0/8
bindaddress 127.0.0.1
$CH_EXTRA
EOF
  # -x: no clock control; and no capability to set the clock either.
  env "${EXTRA_ENV[@]}" setpriv --bounding-set -sys_time taskset -c "$SRV_CPU" \
    chronyd -x -d -u root -f "$d/chrony.conf" > "$d/log" 2>&1 &
  CHRONY_PID=$!
  PIDS+=("$CHRONY_PID")
  wait_port udp "$CH_PORT" "$CHRONY_PID" && wait_port tcp "$CH_KE" "$CHRONY_PID" ||
    { cat "$d/log" >&2; die "chronyd did not start"; }
  sleep 0.2
  rt_pid "$CHRONY_PID"
  CHRONY_VER=$(chronyd -v 2>/dev/null | awk '{print $4; exit}')
}

start_ntsd() { # workers
  local d=$W/ntsd.$1$TAG
  mkdir -p "$d"
  NT_PORT=$(pick_port) NT_KE=$((NT_PORT + 1))
  env "${EXTRA_ENV[@]}" NTP_SERVERS=127.127.1.1 LOCAL_STRATUM=1 NTP_PORT="$NT_PORT" NTS_KE_PORT="$NT_KE" \
    LISTEN=127.0.0.1 STATE_DIR="$d/state" NTS_CERT="$W/srv.pem" NTS_KEY="$W/srv.key" \
    WORKERS="$1" NTSD_USER=root "${NTSD_RL[@]}" \
    taskset -c "$SRV_CPU" "$NTSD" > "$d/log" 2>&1 &
  NTSD_PID=$!
  PIDS+=("$NTSD_PID")
  wait_port udp "$NT_PORT" "$NTSD_PID" && wait_port tcp "$NT_KE" "$NTSD_PID" ||
    { cat "$d/log" >&2; [ "$SMOKE" = 1 ] && exit 77; die "ntsd did not start"; }
  rt_pid "$NTSD_PID"
}

stop_pid() {
  kill "$1" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null
}

# ---- parameters ----
if [ "$SMOKE" = 1 ]; then
  STEP=300 STEPS=2 START_NTP=5000 START_NTS=5000 LAT_MS=500 LAT_ROUNDS=1 KE_N=16 KE_C=4
  START_XL=5000 XL_ROUNDS=1
else
  STEP=1500 STEPS=8 START_NTP=120000 START_NTS=80000 LAT_MS=1200 LAT_ROUNDS=9 KE_N=1500 KE_C=8
  START_XL=40000 XL_ROUNDS=5
fi
# Interleaved mode: clients (source addresses 127.64.0.1 and up), each
# with one request in flight.
XL_CLIENTS=1024
COMMON=(--srv-cpu "$SRV_CPU" --gen-cpu "$GEN_CPU")

kv() { # key line
  local t
  for t in $2; do
    case "$t" in "$1"=*) echo "${t#*=}"; return ;; esac
  done
  echo "-"
}
RESULTS=$W/results.txt
: > "$RESULTS"
run_gen() { # tag args...: run, keep lines, print the result line
  local tag=$1 out
  shift
  out=$(gen "$@" "${COMMON[@]}" 2> "$W/gen.err")
  local rc=$?
  sed "s/^/$tag /" <<< "$out" >> "$RESULTS"
  if [ $rc -ne 0 ] || ! grep -q '^result' <<< "$out"; then
    cat "$W/gen.err" >&2
    log "generator failed ($tag, rc $rc)"
    touch "$W/failed" # run_gen runs in $( ): a variable would be lost
    echo "result"
    return
  fi
  grep '^result' <<< "$out" | tail -1
}

measure_server() { # name pid port keport
  local n=$1 pid=$2 port=$3 ke=$4 r
  log "$n: plain NTP max rate"
  r=$(run_gen "$n.ntp.max" max -p "$port" --pid "$pid" --start "$START_NTP" --step-ms "$STEP" \
      --steps "$STEPS" --burst 16)
  eval "${n}_NTP_MAX=$(kv max_rate "$r") ${n}_NTP_US=$(kv srv_us_per_resp "$r")"
  eval "${n}_NTP_GL=$(kv gen_limited "$r") ${n}_NTP_GC=$(kv gen_cpu "$r") ${n}_NTP_FAIL=$(kv fail_rate "$r")"
  log "$n: NTS max rate"
  r=$(run_gen "$n.nts.max" max --nts -p "$port" -k "$ke" -c "$W/ca.pem" --pid "$pid" \
      --start "$START_NTS" --step-ms "$STEP" --steps "$STEPS" --burst 16)
  eval "${n}_NTS_MAX=$(kv max_rate "$r") ${n}_NTS_US=$(kv srv_us_per_resp "$r")"
  eval "${n}_NTS_GL=$(kv gen_limited "$r") ${n}_NTS_GC=$(kv gen_cpu "$r") ${n}_NTS_FAIL=$(kv fail_rate "$r")"
}

median3() { printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }
# Latency and offset at a fixed rate.  Servers alternate in short rounds so
# that slow changes in the machine's other load hit both alike; each value
# is the median over the rounds.
measure_latency() { # ntp_rate nts_rate servers...: "name pid port keport"
  local ntp_rate=$1 nts_rate=$2 round s n pid port ke r mode key
  shift 2
  declare -gA LAT
  for round in $(seq 1 "$LAT_ROUNDS"); do
    for mode in ntp nts; do
      for s in "$@"; do
        read -r n pid port ke <<< "$s"
        [ "$round" = 1 ] && log "$n: $mode latency at $([ $mode = ntp ] && echo "$ntp_rate" || echo "$nts_rate")/s"
        if [ $mode = ntp ]; then
          r=$(run_gen "$n.ntp.lat$round" fixed -p "$port" --pid "$pid" -r "$ntp_rate" \
              --step-ms "$LAT_MS" --burst 1 --sockets 4 --timestamps)
        else
          r=$(run_gen "$n.nts.lat$round" fixed --nts -p "$port" -k "$ke" -c "$W/ca.pem" --pid "$pid" \
              -r "$nts_rate" --step-ms "$LAT_MS" --burst 1 --sockets 4 --timestamps)
        fi
        for key in lat_p99_us lat_p50_us off_p1_us off_p99_us lost out_p50_us back_p50_us back_p99_us; do
          LAT[$n.$mode.$key]="${LAT[$n.$mode.$key]:-} $(kv $key "$r")"
        done
      done
    done
  done
  for s in "$@"; do
    read -r n pid port ke <<< "$s"
    for mode in ntp nts; do
      local M=${mode^^}
      eval "${n}_${M}_P99=$(median3 ${LAT[$n.$mode.lat_p99_us]})"
      eval "${n}_${M}_P50=$(median3 ${LAT[$n.$mode.lat_p50_us]})"
      eval "${n}_${M}_O1=$(median3 ${LAT[$n.$mode.off_p1_us]})"
      eval "${n}_${M}_O99=$(median3 ${LAT[$n.$mode.off_p99_us]})"
      eval "${n}_${M}_OUT50=$(median3 ${LAT[$n.$mode.out_p50_us]}) ${n}_${M}_BACK50=$(median3 ${LAT[$n.$mode.back_p50_us]})"
      eval "${n}_${M}_BACK99=$(median3 ${LAT[$n.$mode.back_p99_us]})"
      eval "${n}_${M}_LLOST=$(echo ${LAT[$n.$mode.lost]} | tr ' ' '\n' | awk '{ t += $1 } END { print t + 0 }')"
    done
  done
}

# Interleaved mode (RFC 9769): max 0-loss rate with every client
# interleaved, then the served-time error (offsets of the interleaved
# samples, kernel timestamps at both ends) at a fixed rate.
measure_xleave_max() { # name pid port
  local n=$1 r
  log "$n: interleaved max rate ($XL_CLIENTS clients)"
  r=$(run_gen "$n.xl.max" max -p "$3" --pid "$2" --xleave --sockets "$XL_CLIENTS" \
      --start "$START_XL" --step-ms "$STEP" --steps "$STEPS" --burst 16)
  eval "${n}_XL_MAX=$(kv max_rate "$r") ${n}_XL_US=$(kv srv_us_per_resp "$r")"
  eval "${n}_XL_GL=$(kv gen_limited "$r") ${n}_XL_GC=$(kv gen_cpu "$r") ${n}_XL_FRAC=$(kv xleave "$r")"
}
measure_xleave_err() { # tag rate servers...: "name pid port"
  local tag=$1 rate=$2 round s n pid port r key
  shift 2
  declare -gA XLE
  for round in $(seq 1 "$XL_ROUNDS"); do
    for s in "$@"; do
      read -r n pid port <<< "$s"
      [ "$round" = 1 ] && log "$n: interleaved served-time error at $rate/s"
      r=$(run_gen "$n.xl.$tag$round" fixed -p "$port" --pid "$pid" -r "$rate" --xleave \
          --sockets 64 --step-ms "$LAT_MS" --burst 1)
      for key in off_p1_us off_p50_us off_p99_us lat_p50_us lost xleave; do
        XLE[$n.$tag.$key]="${XLE[$n.$tag.$key]:-} $(kv $key "$r")"
      done
    done
  done
  for s in "$@"; do
    read -r n pid port <<< "$s"
    eval "${n}_XL${tag}_O1=$(median3 ${XLE[$n.$tag.off_p1_us]}) ${n}_XL${tag}_O99=$(median3 ${XLE[$n.$tag.off_p99_us]})"
    eval "${n}_XL${tag}_O50=$(median3 ${XLE[$n.$tag.off_p50_us]}) ${n}_XL${tag}_FRAC=$(median3 ${XLE[$n.$tag.xleave]})"
    eval "${n}_XL${tag}_LOST=$(echo ${XLE[$n.$tag.lost]} | tr ' ' '\n' | awk '{ t += $1 } END { print t + 0 }')"
  done
}

measure_ke() { # name pid keport
  local n=$1 r
  log "$n: $KE_N NTS-KE handshakes, $KE_C at a time"
  r=$(run_gen "$n.ke" ke -k "$3" -c "$W/ca.pem" --pid "$2" -n "$KE_N" --conc "$KE_C")
  eval "${n}_KE_US=$(kv srv_us_per_hs "$r") ${n}_KE_RATE=$(kv rate "$r") ${n}_KE_FAILED=$(kv failed "$r")"
}

hwm_kb() { # pid: VmHWM of the process plus its children (chronyd's helper)
  local t=0 p v
  for p in "$1" $(pgrep -P "$1"); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# ---- the run ----
T0=$(date +%s)
HAVE_CHRONY=1
command -v chronyd >/dev/null || { HAVE_CHRONY=0; log "chronyd missing: ntsd only"; }
[ "$SMOKE" = 0 ] && [ "$HAVE_CHRONY" = 0 ] && die "the comparison needs chronyd"

start_ntsd 1
NTSD_VER=$("$NTSD" --version 2>/dev/null | head -1)
if [ "$HAVE_CHRONY" = 1 ]; then
  start_chrony
  measure_server chrony "$CHRONY_PID" "$CH_PORT" "$CH_KE"
fi
measure_server ntsd "$NTSD_PID" "$NT_PORT" "$NT_KE"

if [ "$HAVE_CHRONY" = 1 ] && [ "${chrony_NTP_MAX:-0}" != - ] && [ "${chrony_NTP_MAX%.*}" -gt 0 ]; then
  LAT_NTP=$((${chrony_NTP_MAX%.*} / 2)) LAT_NTS=$((${chrony_NTS_MAX%.*} / 2))
else
  LAT_NTP=$((${ntsd_NTP_MAX%.*} / 2)) LAT_NTS=$((${ntsd_NTS_MAX%.*} / 2))
fi
[ "$LAT_NTP" -gt 0 ] || LAT_NTP=1000
[ "$LAT_NTS" -gt 0 ] || LAT_NTS=1000
if [ "$HAVE_CHRONY" = 1 ]; then
  measure_latency "$LAT_NTP" "$LAT_NTS" "chrony $CHRONY_PID $CH_PORT $CH_KE" "ntsd $NTSD_PID $NT_PORT $NT_KE"
else
  measure_latency "$LAT_NTP" "$LAT_NTS" "ntsd $NTSD_PID $NT_PORT $NT_KE"
fi

[ "$HAVE_CHRONY" = 1 ] && measure_ke chrony "$CHRONY_PID" "$CH_KE"
measure_ke ntsd "$NTSD_PID" "$NT_KE"

# ---- interleaved mode, both servers in the same run ----
[ "$HAVE_CHRONY" = 1 ] && measure_xleave_max chrony "$CHRONY_PID" "$CH_PORT"
measure_xleave_max ntsd "$NTSD_PID" "$NT_PORT"
# 50 % load: half of each server's own interleaved max; and both at half
# of chronyd's, the same rate for both.
XL_N50=$((${ntsd_XL_MAX%.*} / 2))
[ "$XL_N50" -gt 0 ] || XL_N50=1000
measure_xleave_err own "$XL_N50" "ntsd $NTSD_PID $NT_PORT"
if [ "$HAVE_CHRONY" = 1 ]; then
  XL_C50=$((${chrony_XL_MAX%.*} / 2))
  [ "$XL_C50" -gt 0 ] || XL_C50=1000
  measure_xleave_err same "$XL_C50" "chrony $CHRONY_PID $CH_PORT" "ntsd $NTSD_PID $NT_PORT"
fi

ntsd_HWM=$(hwm_kb "$NTSD_PID")
[ "$HAVE_CHRONY" = 1 ] && chrony_HWM=$(hwm_kb "$CHRONY_PID")
stop_pid "$NTSD_PID"
[ "$HAVE_CHRONY" = 1 ] && stop_pid "$CHRONY_PID"

# ---- NTS-KE with a server-side TLS preference for X25519 and AES-128-GCM ----
# ntsd ships this preference (lib/tls_gnutls.c); chronyd does not.  Both
# servers get it here through the same GnuTLS override file, to show how
# much of ntsd's lead per handshake is that preference.
if [ "$SMOKE" = 0 ] && [ "$HAVE_CHRONY" = 1 ]; then
  cat > "$W/gnutls-prio.cfg" <<'EOF'
[overrides]
default-priority-string = NORMAL:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:+AES-256-GCM:%SERVER_PRECEDENCE
EOF
  EXTRA_ENV=(GNUTLS_SYSTEM_PRIORITY_FILE="$W/gnutls-prio.cfg") TAG=.x25519
  start_chrony
  start_ntsd 1
  measure_ke chronyX "$CHRONY_PID" "$CH_KE"
  measure_ke ntsdX "$NTSD_PID" "$NT_KE"
  stop_pid "$NTSD_PID"
  stop_pid "$CHRONY_PID"
  EXTRA_ENV=() TAG=
fi

# ---- the minimal responder (a ceiling) and the scaling run ----
if [ "$SMOKE" = 0 ]; then
  log "minimal batched responder: plain NTP max rate"
  MIN_PORT=$(pick_port)
  taskset -c "$SRV_CPU" "$GEN" responder -p "$MIN_PORT" &
  MIN_PID=$!
  PIDS+=("$MIN_PID")
  wait_port udp "$MIN_PORT" "$MIN_PID" || die "responder did not start"
  rt_pid "$MIN_PID"
  r=$(run_gen "min.ntp.max" max -p "$MIN_PORT" --pid "$MIN_PID" --start "$START_NTP" \
      --step-ms "$STEP" --steps "$STEPS" --burst 16)
  MIN_NTP_MAX=$(kv max_rate "$r") MIN_NTP_US=$(kv srv_us_per_resp "$r") MIN_NTP_GL=$(kv gen_limited "$r")
  MIN_NTP_GC=$(kv gen_cpu "$r")
  stop_pid "$MIN_PID"
fi

thread_cpu() { # pid: "name=seconds ..." for the UDP worker threads
  local t c s
  for t in /proc/"$1"/task/*; do
    c=$(cat "$t/comm" 2>/dev/null)
    case "$c" in ntsntp-udp*)
      s=$(awk '{ sub(/.*\) /, ""); print ($12 + $13) / 100 }' "$t/stat")
      echo -n "$c=${s}s "
      ;;
    esac
  done
}
if [ "$SCALING" = 1 ]; then
  for w in 1 2; do
    log "scaling: ntsd WORKERS=$w, NTS and plain max rate"
    start_ntsd "$w"
    r=$(run_gen "scale$w.nts.max" max --nts -p "$NT_PORT" -k "$NT_KE" -c "$W/ca.pem" --pid "$NTSD_PID" \
        --start "$START_NTS" --step-ms "$STEP" --steps 6 --burst 16 --sockets 32)
    eval "SCALE${w}_NTS=$(kv max_rate "$r")"
    eval "SCALE${w}_NTS_THREADS=\"$(thread_cpu "$NTSD_PID")\""
    r=$(run_gen "scale$w.ntp.max" max -p "$NT_PORT" --pid "$NTSD_PID" \
        --start "$START_NTP" --step-ms "$STEP" --steps 6 --burst 16 --sockets 32)
    eval "SCALE${w}_NTP=$(kv max_rate "$r")"
    eval "SCALE${w}_THREADS=\"$(thread_cpu "$NTSD_PID")\""
    stop_pid "$NTSD_PID"
  done
fi
# ---- memory with the client table at its bound ----
# Rate limiting on in both (ntsd's default; chronyd's `ratelimit` with its
# defaults, the same interval 3, burst 8, leak 2), client tables at their
# default bounds (512 KiB each: about 13,000 clients of 40 bytes in ntsd),
# and CLIENTS_N addresses of 127.0.0.0/8 sending at chronyd's plain max
# rate: more addresses than either table holds, so both run full and evict.
# Each address is also a conntrack entry for up to two minutes: the phase
# runs last and takes at most an eighth of the free conntrack table (a full
# one drops every new flow on the machine).
if [ "$SMOKE" = 1 ]; then
  CLIENTS_N=2048 CLIENTS_RATE=5000 CLIENTS_MS=400
else
  CLIENTS_N=32768 CLIENTS_RATE=${chrony_NTP_MAX%.*} CLIENTS_MS=4000
  [ "${CLIENTS_RATE:-0}" -gt 0 ] 2>/dev/null || CLIENTS_RATE=100000
fi
if [ -r /proc/sys/net/netfilter/nf_conntrack_max ]; then
  CT_FREE=$(( $(cat /proc/sys/net/netfilter/nf_conntrack_max) - $(cat /proc/sys/net/netfilter/nf_conntrack_count) ))
  [ $((CT_FREE / 16)) -lt "$CLIENTS_N" ] && CLIENTS_N=$((CT_FREE / 16)) &&
    log "conntrack has room for $CT_FREE flows: $CLIENTS_N client addresses per server"
fi
if true; then
  NTSD_RL=() CH_EXTRA=$'ratelimit\nallow 127.0.0.0/8' TAG=.clients
  [ "$HAVE_CHRONY" = 1 ] && start_chrony
  start_ntsd 1
  for s in ${CHRONY_PID:+"chrony $CHRONY_PID $CH_PORT"} "ntsd $NTSD_PID $NT_PORT"; do
    read -r n pid port <<< "$s"
    log "$n: $CLIENTS_N client addresses at $CLIENTS_RATE/s, rate limiting on"
    r=$(run_gen "$n.clients" clients -p "$port" --pid "$pid" -r "$CLIENTS_RATE" \
        --step-ms "$CLIENTS_MS" --sources "$CLIENTS_N")
    eval "${n}_CL_ANS=$(kv answered "$r") ${n}_CL_SENT=$(kv sent "$r")"
    eval "${n}_CL_HWM=$(hwm_kb "$pid")"
  done
  stop_pid "$NTSD_PID"
  [ "$HAVE_CHRONY" = 1 ] && stop_pid "$CHRONY_PID"
  NTSD_RL=(RATELIMIT=no NTS_RATELIMIT=no NTS_MAX_CONNECTIONS_PER_CLIENT=0) CH_EXTRA= TAG=
fi

T1=$(date +%s)

# ---- the table ----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
meets() { # ratio op goal
  awk -v r="$1" -v g="$3" -v op="$2" 'BEGIN { if (r == "-") { print "n/a"; exit }
    ok = (op == ">=") ? (r + 0 >= g) : (r + 0 <= g); print ok ? "yes" : "NO" }'
}
within1() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "n/a"; else print (a >= -1 && b <= 1) ? "yes" : "NO" }'; }
within5() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "n/a"; else print (a >= -5 && b <= 5) ? "yes" : "NO" }'; }
bneck() { # gen_limited gen_cpu
  awk -v g="$1" -v c="$2" 'BEGIN { if (g == "1") print "GENERATOR"; else if (c + 0 >= 0.95) print "generator near full"; else print "server" }'
}
row() { printf '%-34s %12s %12s %8s %10s %5s  %s\n' "$@"; }

report() {
  local c=${HAVE_CHRONY}
  g() { eval "echo \${$1:--}"; }
  echo "ntsd vs chronyd, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
  echo "chronyd ${CHRONY_VER:-absent}; ${NTSD_VER:-ntsd}; server on CPU $SRV_CPU, generator on CPU $GEN_CPU; RT=$RT; $((T1 - T0)) s"
  echo
  row "target" "chrony" "ntsd" "ratio" "goal" "met" "notes"
  row "----------------------------------" "------------" "------------" "--------" "----------" "-----" "-----"
  local rn rs rc rk rl1 rl2
  rn=$(ratio "$(g ntsd_NTP_MAX)" "$(g chrony_NTP_MAX)")
  row "plain NTP max 0-loss rate (/s)" "$(g chrony_NTP_MAX)" "$(g ntsd_NTP_MAX)" "$rn" ">= 1.25" "$(meets "$rn" ">=" 1.25)" \
    "limit: chrony $(bneck "$(g chrony_NTP_GL)" "$(g chrony_NTP_GC)"), ntsd $(bneck "$(g ntsd_NTP_GL)" "$(g ntsd_NTP_GC)"); gen CPU $(g chrony_NTP_GC)/$(g ntsd_NTP_GC)"
  rs=$(ratio "$(g ntsd_NTS_MAX)" "$(g chrony_NTS_MAX)")
  row "NTS max 0-loss rate (/s)" "$(g chrony_NTS_MAX)" "$(g ntsd_NTS_MAX)" "$rs" ">= 1.3" "$(meets "$rs" ">=" 1.3)" \
    "limit: chrony $(bneck "$(g chrony_NTS_GL)" "$(g chrony_NTS_GC)"), ntsd $(bneck "$(g ntsd_NTS_GL)" "$(g ntsd_NTS_GC)"); gen CPU $(g chrony_NTS_GC)/$(g ntsd_NTS_GC)"
  rc=$(ratio "$(g ntsd_NTP_US)" "$(g chrony_NTP_US)")
  row "server CPU per plain response (us)" "$(g chrony_NTP_US)" "$(g ntsd_NTP_US)" "$rc" "(info)" "" "at each server's max 0-loss step"
  rc=$(ratio "$(g ntsd_NTS_US)" "$(g chrony_NTS_US)")
  row "server CPU per NTS response (us)" "$(g chrony_NTS_US)" "$(g ntsd_NTS_US)" "$rc" "<= 0.8" "$(meets "$rc" "<=" 0.8)" "at each server's max 0-loss step"
  rk=$(ratio "$(g ntsd_KE_US)" "$(g chrony_KE_US)")
  row "NTS-KE server CPU per handshake (us)" "$(g chrony_KE_US)" "$(g ntsd_KE_US)" "$rk" "<= 0.7" "$(meets "$rk" "<=" 0.7)" \
    "$KE_N handshakes, $KE_C concurrent; $(g chrony_KE_RATE)/$(g ntsd_KE_RATE) per s; failed $(g chrony_KE_FAILED)/$(g ntsd_KE_FAILED)"
  rl1=$(ratio "$(g ntsd_NTP_P99)" "$(g chrony_NTP_P99)")
  row "p99 latency plain @ $LAT_NTP/s (us)" "$(g chrony_NTP_P99)" "$(g ntsd_NTP_P99)" "$rl1" "<= 1" "$(meets "$rl1" "<=" 1)" \
    "median of $LAT_ROUNDS alternating rounds; p50 $(g chrony_NTP_P50)/$(g ntsd_NTP_P50); lost $(g chrony_NTP_LLOST)/$(g ntsd_NTP_LLOST)"
  rl2=$(ratio "$(g ntsd_NTS_P99)" "$(g chrony_NTS_P99)")
  row "p99 latency NTS @ $LAT_NTS/s (us)" "$(g chrony_NTS_P99)" "$(g ntsd_NTS_P99)" "$rl2" "<= 1" "$(meets "$rl2" "<=" 1)" \
    "p50 $(g chrony_NTS_P50)/$(g ntsd_NTS_P50); lost $(g chrony_NTS_LLOST)/$(g ntsd_NTS_LLOST)"
  row "offset plain p1..p99 (us)" "$(g chrony_NTP_O1)..$(g chrony_NTP_O99)" "$(g ntsd_NTP_O1)..$(g ntsd_NTP_O99)" "" "+-5" \
    "$(within5 "$(g ntsd_NTP_O1)" "$(g ntsd_NTP_O99)")" "t2-t1 p50 $(g chrony_NTP_OUT50)/$(g ntsd_NTP_OUT50); t4-t3 p50 $(g chrony_NTP_BACK50)/$(g ntsd_NTP_BACK50) p99 $(g chrony_NTP_BACK99)/$(g ntsd_NTP_BACK99)"
  row "offset NTS p1..p99 (us)" "$(g chrony_NTS_O1)..$(g chrony_NTS_O99)" "$(g ntsd_NTS_O1)..$(g ntsd_NTS_O99)" "" "+-5" \
    "$(within5 "$(g ntsd_NTS_O1)" "$(g ntsd_NTS_O99)")" "t2-t1 p50 $(g chrony_NTS_OUT50)/$(g ntsd_NTS_OUT50); t4-t3 p50 $(g chrony_NTS_BACK50)/$(g ntsd_NTS_BACK50) p99 $(g chrony_NTS_BACK99)/$(g ntsd_NTS_BACK99)"
  local rx1 rx2
  rx1=$(ratio "$(g ntsd_XL_MAX)" "$(g chrony_XL_MAX)")
  row "interleaved max 0-loss rate (/s)" "$(g chrony_XL_MAX)" "$(g ntsd_XL_MAX)" "$rx1" ">= 2" "$(meets "$rx1" ">=" 2)" \
    "$XL_CLIENTS clients; limit: chrony $(bneck "$(g chrony_XL_GL)" "$(g chrony_XL_GC)"), ntsd $(bneck "$(g ntsd_XL_GL)" "$(g ntsd_XL_GC)"); interleaved $(g chrony_XL_FRAC)/$(g ntsd_XL_FRAC)"
  rx2=$(ratio "$(g ntsd_XL_MAX)" "$(g ntsd_NTP_MAX)")
  row "  ntsd interleaved / ntsd basic" "" "" "$rx2" ">= 0.5" "$(meets "$rx2" ">=" 0.5)" "ntsd plain max $(g ntsd_NTP_MAX)/s; CPU/resp $(g chrony_XL_US)/$(g ntsd_XL_US) us"
  row "interleaved error p1..p99 (us)" "" "$(g ntsd_XLown_O1)..$(g ntsd_XLown_O99)" "" "+-1" \
    "$(within1 "$(g ntsd_XLown_O1)" "$(g ntsd_XLown_O99)")" "ntsd at 50 % of its interleaved max (${XL_N50:-}/s); median of $XL_ROUNDS; lost $(g ntsd_XLown_LOST)"
  row "  same rate for both @ ${XL_C50:-}/s" "$(g chrony_XLsame_O1)..$(g chrony_XLsame_O99)" "$(g ntsd_XLsame_O1)..$(g ntsd_XLsame_O99)" "" "+-1" \
    "$(within1 "$(g ntsd_XLsame_O1)" "$(g ntsd_XLsame_O99)")" "50 % of chronyd's interleaved max; interleaved $(g chrony_XLsame_FRAC)/$(g ntsd_XLsame_FRAC); lost $(g chrony_XLsame_LOST)/$(g ntsd_XLsame_LOST)"
  row "  basic mode, for comparison" "$(g chrony_NTP_O1)..$(g chrony_NTP_O99)" "$(g ntsd_NTP_O1)..$(g ntsd_NTP_O99)" "" "" "" "the plain offsets above (t1 read before the send)"
  row "RSS peak VmHWM (MB)" "$(awk -v k="$(g chrony_HWM)" 'BEGIN{ if (k == "-") print "-"; else printf "%.1f", k/1024 }')" \
    "$(awk -v k="$ntsd_HWM" 'BEGIN{printf "%.1f", k/1024}')" "" "<= 16" \
    "$(awk -v k="$ntsd_HWM" 'BEGIN{print (k <= 16384) ? "yes" : "NO"}')" "after all phases (chronyd: with its NTS-KE helper)"
  if [ -n "${ntsd_CL_HWM:-}" ]; then
    row "RSS, client table full (MB)" "$(awk -v k="$(g chrony_CL_HWM)" 'BEGIN{ if (k == "-") print "-"; else printf "%.1f", k/1024 }')" \
      "$(awk -v k="$ntsd_CL_HWM" 'BEGIN{printf "%.1f", k/1024}')" "" "<= 16" \
      "$(awk -v k="$ntsd_CL_HWM" 'BEGIN{print (k <= 16384) ? "yes" : "NO"}')" \
      "$CLIENTS_N addresses at $CLIENTS_RATE/s, rate limiting on; answered $(g chrony_CL_ANS)/$(g ntsd_CL_ANS) of $(g chrony_CL_SENT)/$(g ntsd_CL_SENT)"
  fi
  if [ -n "${ntsdX_KE_US:-}" ]; then
    rk=$(ratio "$(g ntsdX_KE_US)" "$(g chronyX_KE_US)")
    row "  both with X25519 preferred (*)" "$(g chronyX_KE_US)" "$(g ntsdX_KE_US)" "$rk" "(info)" "" \
      "ntsd vs stock chrony: $(ratio "$(g ntsdX_KE_US)" "$(g chrony_KE_US)")"
    echo "(*) chronyd given the server preference ntsd ships (X25519, AES-128-GCM) through a GnuTLS"
    echo "    override file, ntsd the same file: what is left of the difference is not TLS configuration"
  fi
  if [ -n "${MIN_NTP_MAX:-}" ]; then
    echo
    echo "minimal batched responder (ceiling on this machine): plain max $MIN_NTP_MAX/s, $MIN_NTP_US us/response," \
      "limit $(bneck "$MIN_NTP_GL" "$MIN_NTP_GC") (gen CPU $MIN_NTP_GC)"
  fi
  if [ "$SCALING" = 1 ]; then
    echo
    echo "scaling (ntsd on CPU $SRV_CPU only; max 0-loss rate, UDP worker CPU time over the whole run):"
    echo "  WORKERS=1: NTS ${SCALE1_NTS:--}/s, plain ${SCALE1_NTP:--}/s; ${SCALE1_THREADS:-}"
    echo "  WORKERS=2: NTS ${SCALE2_NTS:--}/s, plain ${SCALE2_NTP:--}/s; ${SCALE2_THREADS:-}"
  fi
  echo
  echo "'limit': GENERATOR = the generator could not offer the rate or dropped responses itself (the server"
  echo "may be faster than shown); 'generator near full' = it used >= 95 % of its CPU at the best step."
}
TABLE=$(report)
echo "$TABLE"
if [ -n "$OUT" ]; then
  { echo "$TABLE"; echo; echo "raw generator output:"; cat "$RESULTS"; } > "$OUT"
fi
[ "$SMOKE" = 1 ] && cat "$RESULTS" >&2

# Smoke: broken, not slow, fails.
if [ -e "$W/failed" ]; then exit 1; fi
if grep -E '^[^ ]+ (result|step|best) ' "$RESULTS" | grep -qE ' invalid=[1-9]'; then
  log "invalid responses seen"; exit 1
fi
# Loss is not checked: on a loaded machine it is timing, not a bug.
if grep -E '^[^ ]+ result ' "$RESULTS" | grep -v ' mode=ke ' | grep -qE ' valid=0 '; then
  log "a fixed-rate step got no valid response at all"; exit 1
fi
exit 0
