#!/usr/bin/env bash
# Monitoring against a live ntsd synchronised over NTS from chronyd:
# ntsctl selectdata, authdata, ntpdata, activity (text and JSON), the
# metrics against what ntsctl says (and promtool check metrics when
# promtool is installed), and the certificate an operator cannot miss: a
# renewal changes the notAfter metric, an expired certificate, a broken
# one and a file that cannot be checked make `ntsctl health` fail.
# Usage: ntsd_monitoring.sh ntsd ntsctl
NTSD=$1 NTSCTL=$2
. "$(dirname "$0")/lib.sh"
command -v chronyd >/dev/null || { echo "chronyd missing (apt-get install chrony)"; exit 1; }
t_make_certs || { echo "cannot make certificates"; exit 1; }
CERT=$T_DIR/live/fullchain.pem KEY=$T_DIR/live/privkey.pem
FAST=(MINPOLL=-2 MAXPOLL=-2)
ctl() { "$NTSCTL" -s "$T_DIR/M.state/ntsd.sock" "$@"; }
# metric NAME[{labels}]: its value in `ntsctl metrics`.
metric() { ctl metrics | awk -v n="$1" '$1 == n { print $2 }'; }
# http_get PORT PATH: the body of an HTTP/1.0 GET on 127.0.0.1.
http_get() {
  exec 5<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&5
  sed '1,/^\r$/d' <&5
  exec 5>&-
}
not_after() { # Unix time of a PEM certificate's notAfter
  date -d "$(certtool -i --infile "$1" | sed -n 's/.*Not After: //p' | head -1)" +%s
}
# new_cert DAYS|past OUT: a certificate for the same key, signed by the
# test CA, valid DAYS days (or valid only in 2019: expired).
new_cert() {
  local t=$T_DIR/renew.tmpl
  printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\n' > "$t"
  if [ "$1" = past ]; then
    printf 'activation_date = "2019-01-01 00:00:00 UTC"\nexpiration_date = "2019-12-31 00:00:00 UTC"\n' >> "$t"
  else
    printf 'expiration_days = %s\n' "$1" >> "$t"
  fi
  certtool --generate-certificate --load-privkey "$KEY" --load-ca-certificate "$T_DIR/ca.pem" \
    --load-ca-privkey "$T_DIR/ca.key" --template "$t" --outfile "$2.leaf" 2>/dev/null &&
    cat "$2.leaf" "$T_DIR/ca.pem" > "$2"
}
# install_cert FILE: as certbot does, a new file renamed over the old one.
install_cert() { cp "$1" "$T_DIR/live/new.pem" && mv "$T_DIR/live/new.pem" "$CERT"; }

# --- chronyd: NTS server, local stratum 1, never touches the clock --------
t_chronyd_server "$T_DIR/chrony" 1 "$CERT" "$KEY" || t_fail "chronyd serves NTS-KE"

# --- ntsd: follows chronyd over NTS, serves NTS itself, /metrics ---------
MP=$(t_port)
t_start_ntsd M NTP_SERVERS=nts://127.0.0.1:$CH_KE NTS_CA_FILE="$T_DIR/ca.pem" \
  NTS_CERT="$CERT" NTS_KEY="$KEY" METRICS_LISTEN=127.0.0.1:$MP "${FAST[@]}"
t_check "syncs from chronyd over NTS" t_wait 20 bash -c "'$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' tracking | grep -q '^Stratum *: 2$'"
t_check "reach 377 (eight answered polls)" t_wait 15 bash -c "'$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' sources | grep -q ' 377 '"

# Certificate logged at load: subject, names, notAfter.
na=$(not_after "$T_DIR/srv.pem")
t_check "the load logs subject, names and notAfter" grep -q \
  "Certificate $CERT: subject CN=localhost, names localhost, 127.0.0.1, ::1, valid until $(date -u -d @"$na" '+%Y-%m-%d %H:%M:%S') UTC" "$M_LOG"
t_check "no expiry warning for a 30-day certificate" bash -c "! grep -q 'expires in' '$M_LOG'"

# --- selectdata -------------------------------------------------------------
out=$(ctl selectdata)
t_check "selectdata: chronyc's header" grep -q '^S Name/IP Address        Auth COpts EOpts Last Score     Interval  Leap$' <<<"$out"
t_check "selectdata: chronyd selected, authenticated, leap normal" grep -Eq "^\* 127\.0\.0\.1:$CH_KE +Y ----- ----- +[0-9]+ +- +[-+][0-9.]+[num]?s +\+[0-9.]+[num]?s  N$" <<<"$out"
t_check "selectdata --json" grep -q "\"state\":\"\*\",\"authentication\":true" <<<"$(ctl --json selectdata)"

# --- authdata ---------------------------------------------------------------
out=$(ctl authdata)
t_check "authdata: chronyc's header" grep -q '^Name/IP address             Mode KeyID Type KLen Last Atmp  NAK Cook CLen$' <<<"$out"
row=$(grep "^127.0.0.1:$CH_KE " <<<"$out")
read -r _ mode keyid type klen last atmp nak cook clen <<<"$row"
t_check "authdata: NTS, AEAD 15 (AES-SIV-CMAC-256), 256-bit keys" test "$mode $type $klen" = "NTS 15 256"
t_check "authdata: key id 1 (one NTS-KE), no attempt pending, no NAK" test "$keyid $atmp $nak" = "1 0 0"
t_check "authdata: cookies held (1..8), chronyd's cookie length" bash -c "[ '$cook' -ge 1 ] && [ '$cook' -le 8 ] && [ '$clen' -gt 16 ]"
json=$(ctl --json authdata)
t_check "authdata --json" grep -q "\"mode\":\"NTS\",\"key_id\":1,\"key_type\":15,\"key_length\":256," <<<"$json"

# --- ntpdata ----------------------------------------------------------------
out=$(ctl ntpdata)
for want in "Remote address  : 127.0.0.1 (7F000001)" "Remote port     : $CH_NTP" \
  "Leap status     : Normal" "Version         : 4" "Mode            : Server" \
  "Stratum         : 1" "Authenticated   : Yes" "Interleaved     : No" \
  "TX timestamping : Daemon"; do
  t_check "ntpdata: $want" grep -qxF "$want" <<<"$out"
done
t_check "ntpdata: RX timestamping named" grep -Eq '^RX timestamping : (Kernel|Daemon)$' <<<"$out"
t_check "ntpdata: counters (valid RX <= RX <= TX, > 0)" awk -F' : ' '
  /^Total TX/ {tx=$2} /^Total RX/ {rx=$2} /^Total valid RX/ {v=$2}
  END { exit !(v > 0 && v <= rx && rx <= tx) }' <<<"$out"
json=$(ctl --json ntpdata)
t_check "ntpdata --json" grep -q '"remote_address":"127.0.0.1","remote_refid":"7F000001"' <<<"$json"
t_check "ntpdata --json: authenticated" grep -q '"authenticated":true' <<<"$json"

# --- activity ---------------------------------------------------------------
t_check "activity: 1 source online" grep -qx "1 sources online" <<<"$(ctl activity)"
t_check "activity --json" grep -qx '{"online":1,"offline":0,"burst_online":0,"burst_offline":0,"unresolved":0}' <<<"$(ctl --json activity)"
t_check "a command with a stray argument is a usage error (2)" bash -c "'$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' authdata extra; [ \$? -eq 2 ]"

# --- metrics against ntsctl -------------------------------------------------
# An NTS client (chronyd -Q) makes NTS-KE sessions and cookies on M.
q=$(t_chrony_q "server 127.0.0.1 port 1 nts ntsport $M_KE iburst maxsamples 2 minpoll -4 maxpoll -4" "ntstrustedcerts $T_DIR/ca.pem" nosystemcert)
t_check "chronyd -Q over NTS against ntsd" t_chrony_offset_ok "$q" 0.001
S="{source=\"127.0.0.1:$CH_KE\"}"
# ntsctl and /metrics are read one after the other and a poll may fall
# between: they must agree when read again.
cook_agree() {
  cook=$(ctl authdata | awk -v n="127.0.0.1:$CH_KE" '$1 == n { print $9 }')
  [ -n "$cook" ] && [ "$(metric "ntsd_source_nts_cookies$S")" = "$cook" ]
}
reach_agree() {
  reach=$(ctl sources | awk -v n="127.0.0.1:$CH_KE" '$2 == n { print $5 }')
  [ -n "$reach" ] && [ "$(metric "ntsd_source_reach$S")" = "$((8#$reach))" ]
}
t_check "ntsd_source_nts_cookies = authdata Cook" t_wait 5 cook_agree
t_check "ntsd_source_reach = sources Reach" t_wait 5 reach_agree
t_check "ntsd_source_stratum 1, selected 1" test "$(metric "ntsd_source_stratum$S") $(metric "ntsd_source_selected$S")" = "1 1"
t_check "ntsd_source_nts_naks_total 0" test "$(metric "ntsd_source_nts_naks_total$S")" = 0
tx=$(ctl ntpdata | sed -n 's/^Total TX *: //p')
mtx=$(metric "ntsd_source_requests_total$S")
t_check "ntsd_source_requests_total ($mtx) within a poll of ntpdata's Total TX ($tx)" \
  bash -c "[ \$(( $mtx - $tx )) -ge 0 ] && [ \$(( $mtx - $tx )) -le 2 ]"
t_check "ntsd_nts_cert_not_after_seconds = the certificate's notAfter" test "$(metric ntsd_nts_cert_not_after_seconds)" = "$na.000000"
t_check "last reload good, healthy" test "$(metric ntsd_nts_cert_last_reload_success) $(metric ntsd_healthy)" = "1 1"
ss=$(ctl serverstats)
issued=$(sed -n 's/^NTS cookies issued *: //p' <<<"$ss")
m_ke=$(metric 'ntsd_nts_cookies_issued_total{via="nts_ke"}') m_ntp=$(metric 'ntsd_nts_cookies_issued_total{via="ntp"}')
t_check "serverstats NTS cookies issued ($issued) = metrics ke + ntp ($m_ke + $m_ntp), > 0" \
  bash -c "[ '$issued' -gt 0 ] && [ '$issued' -eq \$(( $m_ke + $m_ntp )) ]"
done_ke=$(metric ntsd_nts_ke_sessions_completed_total) hist=$(metric ntsd_nts_ke_handshake_seconds_count)
t_check "handshake histogram counts every completed NTS-KE ($hist = $done_ke, > 0)" bash -c "[ '$hist' -gt 0 ] && [ '$hist' = '$done_ke' ]"
t_check "histogram +Inf bucket = count" test "$(metric 'ntsd_nts_ke_handshake_seconds_bucket{le="+Inf"}')" = "$hist"
t_check "rate-limit table holds the clients (>= 1)" bash -c "[ '$(metric 'ntsd_ratelimit_clients{table="ntp"}')' -ge 1 ]"
body=$(http_get "$MP" /metrics)
t_check "HTTP /metrics serves the per-source series" grep -q "^ntsd_source_offset_seconds$S " <<<"$body"
if command -v promtool >/dev/null; then
  t_check "promtool check metrics accepts /metrics" bash -c "promtool check metrics <<<\"\$1\"" _ "$body"
else
  echo "skip - promtool not installed (apt-get install prometheus): check metrics not run"
fi

# --- the certificate an operator cannot miss ----------------------------------
new_cert 10 "$T_DIR/short.pem"
na2=$(not_after "$T_DIR/short.pem")
install_cert "$T_DIR/short.pem"
t_check "a renewal is loaded" t_wait 15 grep -q "Reloaded certificate" "$M_LOG"
t_check "the notAfter metric follows the renewed certificate" t_wait 5 bash -c \
  "'$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' metrics | grep -qx 'ntsd_nts_cert_not_after_seconds $na2.000000'"
# 10 days when ntsd loads it within the second certtool made it, else 9.
t_check "a certificate expiring in 10 days is warned about" \
  t_wait 5 grep -Eq "Certificate $CERT expires in (9|10) days" "$M_LOG"
t_check "still healthy" ctl health

new_cert past "$T_DIR/expired.pem"
install_cert "$T_DIR/expired.pem"
t_check "an expired certificate is an error in the log" t_wait 15 grep -q "Certificate $CERT EXPIRED on 2019-12-31" "$M_LOG"
t_check "ntsctl health fails while it is served" t_wait 5 bash -c "! '$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' health"
t_check "and says why" grep -q "FAIL, the served certificate expired" <<<"$(ctl health)"
t_check "ntsd_healthy 0" test "$(metric ntsd_healthy)" = 0

install_cert "$T_DIR/srv.pem"
t_check "a good certificate again: healthy" t_wait 15 ctl health
echo "not a certificate" > "$T_DIR/bad.pem"
install_cert "$T_DIR/bad.pem"
t_check "a renewal that does not parse is logged" t_wait 15 grep -q "Could not reload certificate (keeping the old one)" "$M_LOG"
t_check "health fails after a failed reload" t_wait 5 bash -c "! '$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' health"
t_check "ntsd_nts_cert_last_reload_success 0" test "$(metric ntsd_nts_cert_last_reload_success)" = 0
t_check "the old certificate is still served: notAfter unchanged" test "$(metric ntsd_nts_cert_not_after_seconds)" = "$na.000000"

install_cert "$T_DIR/srv.pem"
t_check "fixed: healthy again" t_wait 15 ctl health
# A file that cannot be looked up is no renewal in progress.
ln -sfn "$T_DIR/nowhere.pem" "$T_DIR/live/new.pem" && mv -T "$T_DIR/live/new.pem" "$CERT"
t_check "a certificate file that cannot be checked is logged" t_wait 20 grep -q "Cannot check certificate file for renewal: .*nowhere.pem\|Cannot check certificate file for renewal: .*$CERT" "$M_LOG"
t_check "health fails meanwhile" bash -c "! '$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' health"
t_check "... and says why" grep -q "cannot be checked for renewal" <<<"$(ctl --json health)"
rm -f "$CERT" && cp "$T_DIR/srv.pem" "$CERT"
t_check "back: logged, healthy" t_wait 20 bash -c "grep -q 'Certificate files can be checked again' '$M_LOG' && '$NTSCTL' -s '$T_DIR/M.state/ntsd.sock' health"

t_stop "$M_PID"
t_done
