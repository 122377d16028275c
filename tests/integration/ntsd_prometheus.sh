#!/usr/bin/env bash
# A real Prometheus (the Debian package) scrapes ntsd's /metrics on
# loopback every second, with docs/alerts/ntsd.rules.yml loaded; its query
# API must return the per-source, certificate and NTS-KE series, and the
# rules must evaluate.  Skipped (77) when prometheus is not installed.
# Usage: ntsd_prometheus.sh ntsd ntsctl SOURCE_ROOT
NTSD=$1 NTSCTL=$2 ROOT=$3
if ! command -v prometheus >/dev/null; then
  echo "skip - prometheus not installed (apt-get install prometheus): no scrape test"
  exit 77
fi
. "$(dirname "$0")/lib.sh"
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem

# M's own certificate expires in 10 days: NtsdCertificateExpiringSoon must
# go pending (its `for:` is an hour).
printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nexpiration_days = 10\n' > "$T_DIR/m.tmpl"
certtool --generate-certificate --load-privkey "$KEY" --load-ca-certificate "$T_DIR/ca.pem" \
  --load-ca-privkey "$T_DIR/ca.key" --template "$T_DIR/m.tmpl" --outfile "$T_DIR/m.pem" 2>/dev/null
cat "$T_DIR/m.pem" "$T_DIR/ca.pem" > "$T_DIR/m-chain.pem"
m_not_after=$(date -d "$(certtool -i --infile "$T_DIR/m.pem" | sed -n 's/.*Not After: //p' | head -1)" +%s)

# A: an NTS server; M follows it over NTS and serves /metrics.
AN=$(t_port) AK=$(t_port) MP=$(t_port) PP=$(t_port)
t_start_ntsd A NTS_CERT="$CERT" NTS_KEY="$KEY" NTP_PORT=$AN NTS_KE_PORT=$AK LOCAL_STRATUM=3
t_start_ntsd M NTP_SERVERS=nts://127.0.0.1:$AK NTS_CA_FILE="$T_DIR/ca.pem" \
  NTS_CERT="$T_DIR/m-chain.pem" NTS_KEY="$KEY" METRICS_LISTEN=127.0.0.1:$MP MINPOLL=-2 MAXPOLL=-2
t_check "M syncs from A over NTS" t_wait 20 bash -c "'$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' tracking | grep -q '^Stratum *: 4$'"

cat > "$T_DIR/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/docs/alerts/ntsd.rules.yml
scrape_configs:
  - job_name: ntsd
    static_configs:
      - targets: ['127.0.0.1:$MP']
CONF
timeout 110 prometheus --config.file="$T_DIR/prometheus.yml" \
  --storage.tsdb.path="$T_DIR/prometheus-data" --storage.tsdb.retention.time=1h \
  --web.listen-address=127.0.0.1:$PP >"$T_DIR/prometheus.log" 2>&1 &
T_PIDS+=($!)

# api PATH: the body of an HTTP/1.0 GET to Prometheus.
api() {
  exec 5<>"/dev/tcp/127.0.0.1/$PP" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&5
  sed '1,/^\r$/d' <&5
  exec 5>&-
}
urlenc() {
  local s=$1 i c out=
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [a-zA-Z0-9._~-]) out+=$c ;; *) printf -v c '%%%02X' "'$c"; out+=$c ;; esac
  done
  echo "$out"
}
# value QUERY: the first sample's value of an instant query ("" if none).
value() {
  api "/api/v1/query?query=$(urlenc "$1")" |
    sed -n 's/.*"value":\[[0-9.]*,"\([^"]*\)"\].*/\1/p'
}
value_is() { [ "$(value "$1")" = "$2" ]; }

ready() { api /-/ready | grep -q 'is Ready'; }
# alert_state NAME STATE: Prometheus lists that alert in that state.
alert_state() {
  api /api/v1/alerts | sed 's/},{"labels"/\n/g' | grep "\"alertname\":\"$1\"" |
    grep -q "\"state\":\"$2\""
}
t_check "Prometheus is ready" t_wait 30 ready
t_check "the ntsd target is up" t_wait 20 value_is 'up{job="ntsd"}' 1
S="source=\"127.0.0.1:$AK\""
t_check "per-source reach scraped (> 0)" t_wait 20 value_is "ntsd_source_reach{$S} > bool 0" 1
t_check "the source is selected" value_is "ntsd_source_selected{$S}" 1
t_check "its stratum is 3" value_is "ntsd_source_stratum{$S}" 3
t_check "NTS cookies held for it (> 0)" value_is "ntsd_source_nts_cookies{$S} > bool 0" 1
t_check "offset, delay and dispersion series exist" value_is \
  "count({__name__=~\"ntsd_source_(offset|delay|dispersion)_seconds\",$S})" 3
t_check "certificate notAfter = the served certificate's" value_is \
  "ntsd_nts_cert_not_after_seconds == $m_not_after" "$m_not_after"
t_check "last reload good" value_is ntsd_nts_cert_last_reload_success 1
t_check "synchronised" value_is ntsd_synchronised 1
t_check "the NTS-KE handshake histogram has its buckets" value_is \
  'count(ntsd_nts_ke_handshake_seconds_bucket)' 11
t_check "rate-limit table series" value_is 'count(ntsd_ratelimit_clients)' 2
rules=$(api /api/v1/rules)
t_check "all 8 rules loaded and evaluating without error" bash -c \
  "[ \$(grep -o '\"health\":\"ok\"' <<<\"\$1\" | wc -l) -eq 8 ] && ! grep -q '\"health\":\"err' <<<\"\$1\"" _ "$rules"
t_check "NtsdCertificateExpiringSoon is pending (10 days left)" t_wait 10 alert_state NtsdCertificateExpiringSoon pending
t_check "NtsdNoReachableSource is not" bash -c '! grep -q NtsdNoReachableSource <<<"$1"' _ "$(api /api/v1/alerts)"

t_stop "$M_PID"; t_stop "$A_PID"
t_done
