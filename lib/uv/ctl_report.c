/* libntsntp runtime: the control reports in chronyc's layout (tracking,
 * sources, sourcestats, serverstats, clients) and health, in text or JSON;
 * and the command switch behind ntsntp_uv_ctl_report. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ntsntp/control.h"
#include "ntsntp/pkt.h"
#include "ntsntp/ts.h"

#include "ctl.h"
#include "../mem.h"

void ntsntp_ctl_tracking_from_clock(ntsntp_ctl_tracking *t,
                                    const ntsntp_clock_state *cs) {
  memset(t, 0, sizeof(*t));
  t->ref_id = cs->refid;
  if (cs->refid == NTSNTP_REFID_LOCAL)
    snprintf(t->ref_name, sizeof(t->ref_name), "LOCAL");
  else if (cs->stratum > 1 && cs->stratum < 16)
    snprintf(t->ref_name, sizeof(t->ref_name), "%u.%u.%u.%u", cs->refid >> 24,
             cs->refid >> 16 & 0xff, cs->refid >> 8 & 0xff, cs->refid & 0xff);
  else {
    /* Stratum 1: an ASCII source name ("GPS"), printable bytes only. */
    size_t i, n = 0;
    for (i = 0; i < 4; i++) {
      unsigned ch = cs->refid >> (24 - 8 * i) & 0xff;
      if (ch > 0x20 && ch < 0x7f)
        t->ref_name[n++] = (char)ch;
    }
  }
  t->stratum = cs->stratum;
  t->leap = cs->leap;
  t->synchronised =
      cs->leap != NTSNTP_LEAP_UNSYNC && cs->stratum >= 1 && cs->stratum <= 15;
  if (cs->ref_ts) {
    struct timespec ts;
    ntsntp_ts_to_timespec(cs->ref_ts, NTSNTP_TS_DEFAULT_PIVOT, &ts);
    t->ref_time_sec = ts.tv_sec;
    t->ref_time_nsec = (uint32_t)ts.tv_nsec;
  }
  t->root_delay = ntsntp_short_to_double(cs->root_delay);
  t->root_dispersion = ntsntp_short_to_double(cs->root_disp);
}

static void report_tracking(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  ntsntp_ctl_tracking t;
  char when[64] = "";
  time_t sec;
  struct tm tm;
  c->s.provider.tracking(c->s.provider.user, &t);
  t.ref_name[sizeof(t.ref_name) - 1] = '\0';
  sec = (time_t)t.ref_time_sec;
  if (gmtime_r(&sec, &tm))
    strftime(when, sizeof(when), "%a %b %d %H:%M:%S %Y", &tm);
  if (json) {
    ntsntp__sb_printf(
        b, "{\"reference_id\":\"%08" PRIX32 "\",\"reference_name\":", t.ref_id);
    ntsntp__sb_json_str(b, t.ref_name);
    ntsntp__sb_printf(b,
                      ",\"stratum\":%u,\"ref_time\":%" PRId64 ".%09" PRIu32
                      ",\"ref_time_utc\":",
                      t.stratum, t.ref_time_sec, t.ref_time_nsec);
    ntsntp__sb_json_str(b, when);
    ntsntp__sb_printf(b, ",\"system_time\":");
    ntsntp__sb_json_num(b, t.system_time, 9);
    ntsntp__sb_printf(b, ",\"last_offset\":");
    ntsntp__sb_json_num(b, t.last_offset, 9);
    ntsntp__sb_printf(b, ",\"rms_offset\":");
    ntsntp__sb_json_num(b, t.rms_offset, 9);
    ntsntp__sb_printf(b, ",\"frequency\":");
    ntsntp__sb_json_num(b, t.frequency_ppm, 3);
    ntsntp__sb_printf(b, ",\"residual_freq\":");
    ntsntp__sb_json_num(b, t.residual_freq_ppm, 3);
    ntsntp__sb_printf(b, ",\"skew\":");
    ntsntp__sb_json_num(b, t.skew_ppm, 3);
    ntsntp__sb_printf(b, ",\"root_delay\":");
    ntsntp__sb_json_num(b, t.root_delay, 9);
    ntsntp__sb_printf(b, ",\"root_dispersion\":");
    ntsntp__sb_json_num(b, t.root_dispersion, 9);
    ntsntp__sb_printf(b, ",\"update_interval\":");
    ntsntp__sb_json_num(b, t.update_interval, 1);
    ntsntp__sb_printf(b, ",\"leap_status\":\"%s\",\"synchronised\":%s",
                      ntsntp__leap_name(t.leap),
                      t.synchronised ? "true" : "false");
    /* sources: holdover and the leap second */
    t.leap_second[sizeof(t.leap_second) - 1] = '\0';
    ntsntp__sb_printf(b, ",\"holdover\":%s,\"holdover_left\":",
                      t.holdover ? "true" : "false");
    ntsntp__sb_json_num(b, t.holdover ? t.holdover_left : 0, 0);
    ntsntp__sb_printf(b, ",\"leap_second\":");
    ntsntp__sb_json_str(b, t.leap_second);
    ntsntp__sb_printf(b, "}\n");
    return;
  }
  /* chronyc: "fast"/"slow" words instead of signs; zero reads "fast" for
   * the system time and "slow" for the frequency. */
  ntsntp__sb_printf(b,
                    "Reference ID    : %08" PRIX32 " (%s)\n"
                    "Stratum         : %u\n"
                    "Ref time (UTC)  : %s\n"
                    "System time     : %.9f seconds %s of NTP time\n"
                    "Last offset     : %+.9f seconds\n"
                    "RMS offset      : %.9f seconds\n"
                    "Frequency       : %.3f ppm %s\n"
                    "Residual freq   : %+.3f ppm\n"
                    "Skew            : %.3f ppm\n"
                    "Root delay      : %.9f seconds\n"
                    "Root dispersion : %.9f seconds\n"
                    "Update interval : %.1f seconds\n"
                    "Leap status     : %s\n",
                    t.ref_id, t.ref_name, t.stratum, when, fabs(t.system_time),
                    t.system_time < 0 ? "slow" : "fast", t.last_offset,
                    t.rms_offset, fabs(t.frequency_ppm),
                    t.frequency_ppm > 0 ? "fast" : "slow", t.residual_freq_ppm,
                    t.skew_ppm, t.root_delay, t.root_dispersion,
                    t.update_interval, ntsntp__leap_name(t.leap));
  /* sources: lines chronyc does not have, only when they say something */
  t.leap_second[sizeof(t.leap_second) - 1] = '\0';
  if (t.leap_second[0])
    ntsntp__sb_printf(b, "Leap second     : %s\n", t.leap_second);
  if (t.holdover)
    ntsntp__sb_printf(b, "Holdover        : yes, %.0f seconds left "
                      "(no selectable source)\n", t.holdover_left);
}

size_t ntsntp__ctl_get_sources(ntsntp_uv_ctl *c, ntsntp_ctl_source *src) {
  size_t n;
  if (!c->s.provider.sources)
    return 0;
  n = c->s.provider.sources(c->s.provider.user, src, NTSNTP_CTL_MAX_SOURCES);
  return n < NTSNTP_CTL_MAX_SOURCES ? n : NTSNTP_CTL_MAX_SOURCES;
}

/* Names are shown in 25 columns (27 in `sources`), as chronyc truncates. */
static void short_name(char *out, size_t outlen, const char *name) {
  snprintf(out, outlen, "%s", name);
  if (strlen(out) > 25) {
    out[24] = '>';
    out[25] = '\0';
  }
}

static int report_sources(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json,
                          int stats) {
  ntsntp_ctl_source *src = ntsntp__calloc(NTSNTP_CTL_MAX_SOURCES, sizeof(*src));
  size_t i, n;
  char name[64];
  if (!src)
    return NTSNTP_ERR_NOMEM;
  n = ntsntp__ctl_get_sources(c, src);
  if (json)
    ntsntp__sb_printf(b, "{\"%s\":[", stats ? "sourcestats" : "sources");
  else if (stats)
    ntsntp__sb_header(
        b, "Name/IP Address            NP  NR  Span  Frequency  Freq "
           "Skew  Offset  Std Dev");
  else
    ntsntp__sb_header(
        b, "MS Name/IP address         Stratum Poll Reach LastRx Last "
           "sample               ");
  for (i = 0; i < n; i++) {
    const ntsntp_ctl_source *s = &src[i];
    src[i].name[sizeof(src[i].name) - 1] = '\0';
    if (json) {
      ntsntp__sb_printf(b, "%s{\"name\":", i ? "," : "");
      ntsntp__sb_json_str(b, s->name);
      if (stats) {
        ntsntp__sb_printf(
            b,
            ",\"np\":%u,\"nr\":%u,\"span\":%" PRIu32 ",\"frequency\":", s->np,
            s->nr, s->span);
        ntsntp__sb_json_num(b, s->frequency_ppm, 3);
        ntsntp__sb_printf(b, ",\"freq_skew\":");
        ntsntp__sb_json_num(b, s->freq_skew_ppm, 3);
        ntsntp__sb_printf(b, ",\"offset\":");
        ntsntp__sb_json_num(b, s->est_offset, 9);
        ntsntp__sb_printf(b, ",\"std_dev\":");
        ntsntp__sb_json_num(b, s->std_dev, 9);
      } else {
        ntsntp__sb_printf(b,
                          ",\"mode\":\"%c\",\"state\":\"%c\",\"stratum\":%u,"
                          "\"poll\":%d,\"reach\":%u,\"last_rx\":%" PRId64
                          ",\"offset\":",
                          s->mode > 0x20 && s->mode < 0x7f ? s->mode : ' ',
                          s->state > 0x20 && s->state < 0x7f ? s->state : ' ',
                          s->stratum, s->poll, s->reach, s->last_rx);
        ntsntp__sb_json_num(b, s->offset, 9);
        ntsntp__sb_printf(b, ",\"measured_offset\":");
        ntsntp__sb_json_num(b, s->measured_offset, 9);
        ntsntp__sb_printf(b, ",\"error\":");
        ntsntp__sb_json_num(b, s->error, 9);
      }
      ntsntp__sb_printf(b, "}");
      continue;
    }
    short_name(name, sizeof(name), s->name);
    if (stats) {
      ntsntp__sb_printf(b, "%-25s %3u %3u  ", name, s->np, s->nr);
      ntsntp__sb_interval(b, s->span);
      ntsntp__sb_printf(b, " ");
      ntsntp__sb_ppm(b, s->frequency_ppm, 1);
      ntsntp__sb_printf(b, " ");
      ntsntp__sb_ppm(b, s->freq_skew_ppm, 0);
      ntsntp__sb_printf(b, "  ");
      ntsntp__sb_seconds(b, s->est_offset, 1);
      ntsntp__sb_printf(b, "  ");
      ntsntp__sb_seconds(b, s->std_dev, 0);
    } else {
      ntsntp__sb_printf(b, "%c%c %-27s  %2u  %2d   %3o  ",
                        s->mode > 0x20 && s->mode < 0x7f ? s->mode : ' ',
                        s->state > 0x20 && s->state < 0x7f ? s->state : ' ',
                        name, s->stratum, s->poll, s->reach);
      ntsntp__sb_interval(b, s->last_rx);
      ntsntp__sb_printf(b, "  ");
      ntsntp__sb_seconds(b, s->offset, 1);
      ntsntp__sb_printf(b, "[");
      ntsntp__sb_seconds(b, s->measured_offset, 1);
      ntsntp__sb_printf(b, "] +/- ");
      ntsntp__sb_seconds(b, s->error, 0);
    }
    ntsntp__sb_printf(b, "\n");
  }
  if (json)
    ntsntp__sb_printf(b, "]}\n");
  ntsntp__mfree(src);
  return 0;
}

/*
 * Drops by reason.  The server counts every request under one reason
 * (reasons[]) and counts drops, NAKs and KoDs by verdict; these reasons
 * are always drops, and RATELIMIT is a drop unless it was a KoD (KoDs come
 * only from the rate limit).  Drops under any other reason (e.g. a NAK the
 * rate limiter suppressed) are reported as "other", so the parts always
 * add up to the total.
 */
const ntsntp_server_reason
    ntsntp__ctl_drop_reasons[NTSNTP__CTL_N_DROP_REASONS] = {
        NTSNTP_REASON_TOO_SHORT,     NTSNTP_REASON_BAD_VERSION,
        NTSNTP_REASON_BAD_MODE,      NTSNTP_REASON_BAD_EF,
        NTSNTP_REASON_NTS_MALFORMED, NTSNTP_REASON_NTS_OFF,
        NTSNTP_REASON_RATELIMIT,     NTSNTP_REASON_DENIED,
        NTSNTP_REASON_INTERNAL};

uint64_t ntsntp__ctl_drops_for(const ntsntp_server_stats *st, size_t i) {
  ntsntp_server_reason r = ntsntp__ctl_drop_reasons[i];
  if (r == NTSNTP_REASON_RATELIMIT)
    return st->reasons[r] > st->kods ? st->reasons[r] - st->kods : 0;
  return st->reasons[r];
}

uint64_t ntsntp__ctl_drops_other(const ntsntp_server_stats *st) {
  uint64_t sum = 0;
  size_t i;
  for (i = 0; i < NTSNTP__CTL_N_DROP_REASONS; i++)
    sum += ntsntp__ctl_drops_for(st, i);
  return st->dropped > sum ? st->dropped - sum : 0;
}

static void report_serverstats(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  ntsntp_uv_service_stats st;
  const ntsntp_server_stats *n = &st.ntp;
  uint64_t sent;
  size_t i;
  struct {
    const char *label, *key;
    uint64_t v;
  } rows[32];
  size_t nr = 0;

  c->s.provider.stats(c->s.provider.user, &st);
  sent = n->responded > n->tx_errors ? n->responded - n->tx_errors : 0;
#define ROW(l, k, val) rows[nr].label = l, rows[nr].key = k, rows[nr++].v = val
  /* chronyc's lines first, in its order; then ours. */
  ROW("NTP packets received", "ntp_packets_received", n->received);
  ROW("NTP packets dropped", "ntp_packets_dropped", n->dropped);
  ROW("Command packets received", "command_packets_received", c->requests);
  ROW("Command packets dropped", "command_packets_dropped", c->dropped);
  ROW("NTS-KE connections accepted", "nts_ke_connections_accepted",
      st.ke.accepted);
  ROW("NTS-KE connections dropped", "nts_ke_connections_dropped",
      st.ke.dropped);
  ROW("Authenticated NTP packets", "authenticated_ntp_packets",
      n->nts_authenticated);
  ROW("Interleaved NTP packets", "interleaved_ntp_packets", n->xleave);
  ROW("NTP daemon RX timestamps", "ntp_daemon_rx_timestamps", n->rx_daemon_ts);
  ROW("NTP kernel RX timestamps", "ntp_kernel_rx_timestamps", n->rx_kernel_ts);
  ROW("NTP kernel TX timestamps", "ntp_kernel_tx_timestamps", n->tx_kernel_ts);
  ROW("NTP hardware RX timestamps", "ntp_hardware_rx_timestamps", n->rx_hw_ts);
  ROW("NTP hardware TX timestamps", "ntp_hardware_tx_timestamps", n->tx_hw_ts);
  ROW("NTP responses sent", "ntp_responses_sent", sent);
  ROW("NTP send errors", "ntp_send_errors", n->tx_errors);
  ROW("NTP KoD responses", "ntp_kod_responses", n->kods);
  ROW("NTS NAKs sent", "nts_naks_sent", n->naks);
  /* All cookies handed out, as ntsd_nts_cookies_issued_total sums them;
   * then the two ways. */
  ROW("NTS cookies issued", "nts_cookies_issued",
      n->cookies_issued + st.ke.ke.cookies_issued);
  ROW("NTS cookies in NTS-KE", "nts_cookies_issued_nts_ke",
      st.ke.ke.cookies_issued);
  ROW("NTS cookies in NTP", "nts_cookies_issued_ntp", n->cookies_issued);
  ROW("NTS-KE sessions active", "nts_ke_sessions_active", st.ke.active);
  ROW("NTS-KE refused: rate limit", "nts_ke_refused_ratelimit",
      st.ke.refused_ratelimit);
  ROW("NTS-KE refused: client cap", "nts_ke_refused_client_cap",
      st.ke.refused_client_cap);
  ROW("NTS-KE refused: network cap", "nts_ke_refused_network_cap",
      st.ke.refused_network_cap);
  ROW("NTS-KE refused: table full", "nts_ke_refused_full", st.ke.refused_full);
  ROW("NTS-KE connections evicted", "nts_ke_connections_evicted",
      st.ke.evicted);
  ROW("NTS-KE first-byte timeouts", "nts_ke_first_byte_timeouts",
      st.ke.first_byte_timeouts);
#undef ROW

  if (json) {
    ntsntp__sb_printf(b, "{");
    for (i = 0; i < nr; i++)
      ntsntp__sb_printf(b, "%s\"%s\":%" PRIu64, i ? "," : "", rows[i].key,
                        rows[i].v);
    ntsntp__sb_printf(b, ",\"ntp_dropped_by_reason\":{");
    for (i = 0; i < NTSNTP__CTL_N_DROP_REASONS; i++)
      ntsntp__sb_printf(b, "\"%s\":%" PRIu64 ",",
                        ntsntp_server_reason_name(ntsntp__ctl_drop_reasons[i]),
                        ntsntp__ctl_drops_for(n, i));
    ntsntp__sb_printf(b, "\"other\":%" PRIu64 "},\"ntp_requests_by_reason\":{",
                      ntsntp__ctl_drops_other(n));
    for (i = 0; i < NTSNTP_REASON_COUNT; i++)
      ntsntp__sb_printf(b, "%s\"%s\":%" PRIu64, i ? "," : "",
                        ntsntp_server_reason_name((ntsntp_server_reason)i),
                        n->reasons[i]);
    ntsntp__sb_printf(b, "},\"nts_enabled\":%s}\n",
                      st.nts_enabled ? "true" : "false");
    return;
  }
  for (i = 0; i < nr; i++)
    ntsntp__sb_printf(b, "%-27s: %" PRIu64 "\n", rows[i].label, rows[i].v);
  for (i = 0; i < NTSNTP__CTL_N_DROP_REASONS; i++) {
    char label[64];
    snprintf(label, sizeof(label), "Dropped (%s)",
             ntsntp_server_reason_name(ntsntp__ctl_drop_reasons[i]));
    ntsntp__sb_printf(b, "%-27s: %" PRIu64 "\n", label,
                      ntsntp__ctl_drops_for(n, i));
  }
  ntsntp__sb_printf(b, "%-27s: %" PRIu64 "\n", "Dropped (other)",
                    ntsntp__ctl_drops_other(n));
}

static void addr_string(const ntsntp_ctl_client *cl, char *out, size_t len) {
  char a[INET6_ADDRSTRLEN] = "?";
  unsigned full = 32;
  if (cl->addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)&cl->addr)->sin_addr, a,
              sizeof(a));
  } else if (cl->addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&cl->addr)->sin6_addr, a,
              sizeof(a));
    full = 128;
  }
  if (cl->prefix_len && cl->prefix_len < full)
    snprintf(out, len, "%s/%u", a, cl->prefix_len);
  else
    snprintf(out, len, "%s", a);
}

static int report_clients(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  ntsntp_ctl_client *cl;
  size_t i, n;
  char name[INET6_ADDRSTRLEN + 8];
  if (!c->s.provider.clients)
    return NTSNTP_ERR_STATE;
  cl = ntsntp__calloc(NTSNTP_CTL_MAX_CLIENTS, sizeof(*cl));
  if (!cl)
    return NTSNTP_ERR_NOMEM;
  n = c->s.provider.clients(c->s.provider.user, cl, NTSNTP_CTL_MAX_CLIENTS);
  if (n > NTSNTP_CTL_MAX_CLIENTS)
    n = NTSNTP_CTL_MAX_CLIENTS;
  if (json)
    ntsntp__sb_printf(b, "{\"clients\":[");
  else
    ntsntp__sb_header(b, "Hostname                      NTP   Drop Int IntL "
                         "Last     Cmd   Drop Int  Last");
  for (i = 0; i < n; i++) {
    addr_string(&cl[i], name, sizeof(name));
    if (json) {
      ntsntp__sb_printf(b,
                        "%s{\"address\":\"%s\",\"ntp\":%" PRIu64
                        ",\"drop\":%" PRIu64 ",\"kod\":%" PRIu64
                        ",\"last\":%" PRId64 "}",
                        i ? "," : "", name, cl[i].hits, cl[i].drops, cl[i].kods,
                        cl[i].last_ago);
      continue;
    }
    /* chronyc's columns.  ntsd keeps no request intervals (Int, IntL: -)
     * and no per-client command counts (ntsctl uses a local socket); KoDs
     * are in the JSON. */
    ntsntp__sb_printf(b, "%-25s  %6" PRIu64 "  %5" PRIu64 "    -    - ", name,
                      cl[i].hits, cl[i].drops);
    ntsntp__sb_interval(b, cl[i].last_ago);
    ntsntp__sb_printf(b, "       0      0    -    -");
    ntsntp__sb_printf(b, "\n");
  }
  if (json)
    ntsntp__sb_printf(b, "]}\n");
  ntsntp__mfree(cl);
  return 0;
}

void ntsntp__ctl_health_problem(ntsntp_uv_ctl *c, char *out, size_t len) {
  ntsntp_ctl_cert ce;
  out[0] = '\0';
  if (!c->s.provider.cert)
    return;
  c->s.provider.cert(c->s.provider.user, &ce);
  ce.subject[sizeof(ce.subject) - 1] = '\0';
  if (ce.loaded && ce.not_after && ce.not_after <= ce.now) {
    time_t na = (time_t)ce.not_after;
    struct tm tm;
    char when[32] = "?";
    int64_t ago = ce.now - ce.not_after;
    if (gmtime_r(&na, &tm))
      strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (ago >= 86400)
      snprintf(out, len, "the served certificate expired %s (%" PRId64
               " days ago); install a renewed one", when, ago / 86400);
    else
      snprintf(out, len, "the served certificate expired %s (%" PRId64
               " h %" PRId64 " min ago); install a renewed one", when,
               ago / 3600, ago / 60 % 60);
  }
  else if (ce.loaded && !ce.last_reload_ok)
    snprintf(out, len, "%s",
             ce.file_check_failed
                 ? "the certificate files cannot be checked for renewal"
                 : "the last certificate reload failed");
}

/* Fails (status "fail") while the certificate is expired or its last
 * reload failed: ntsctl health then exits 1 (Docker's health check). */
static void report_health(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  ntsntp_ctl_tracking t;
  char why[160];
  c->s.provider.tracking(c->s.provider.user, &t);
  ntsntp__ctl_health_problem(c, why, sizeof(why));
  if (json) {
    ntsntp__sb_printf(b, "{\"status\":\"%s\",", why[0] ? "fail" : "ok");
    if (why[0]) {
      ntsntp__sb_printf(b, "\"problem\":");
      ntsntp__sb_json_str(b, why);
      ntsntp__sb_printf(b, ",");
    }
    ntsntp__sb_printf(b,
                      "\"synchronised\":%s,\"stratum\":%u,"
                      "\"leap_status\":\"%s\",\"holdover\":%s}\n",
                      t.synchronised ? "true" : "false", t.stratum,
                      ntsntp__leap_name(t.leap),
                      t.holdover ? "true" : "false");
    return;
  }
  if (why[0])
    ntsntp__sb_printf(b, "Status          : FAIL (%s)\n", why);
  else
    ntsntp__sb_printf(b, "Status          : OK\n");
  ntsntp__sb_printf(b,
                    "Synchronised    : %s\n"
                    "Stratum         : %u\n"
                    "Leap status     : %s\n",
                    t.synchronised ? "Yes" : "No", t.stratum,
                    ntsntp__leap_name(t.leap));
  if (t.holdover) /* sources */
    ntsntp__sb_printf(b, "Holdover        : yes, %.0f seconds left\n",
                      t.holdover_left);
}

/* sources: `ntsctl reload sources`; "ok" false when nothing changed
 * (bad configuration, or a restart is needed: the message says). */
static int report_reload_sources(ntsntp_uv_ctl *c, ntsntp__sbuf *b,
                                 int json) {
  char msg[1024] = "";
  int rv;
  if (!c->s.provider.reload_sources)
    return NTSNTP_ERR_NOT_FOUND;
  rv = c->s.provider.reload_sources(c->s.provider.user, msg, sizeof(msg));
  if (json) {
    ntsntp__sb_printf(b, "{\"ok\":%s,\"message\":", rv ? "false" : "true");
    ntsntp__sb_json_str(b, msg);
    ntsntp__sb_printf(b, "}\n");
  } else {
    ntsntp__sb_printf(b, "%s: %s\n", rv ? "FAIL" : "OK", msg);
  }
  return 0;
}

int ntsntp_uv_ctl_report(ntsntp_uv_ctl *c, const char *command, int json,
                         char **out, size_t *outlen) {
  ntsntp__sbuf b = {NULL, 0, 0, 0};
  int rv = 0;
  if (!strcmp(command, "tracking"))
    report_tracking(c, &b, json);
  else if (!strcmp(command, "sources"))
    rv = report_sources(c, &b, json, 0);
  else if (!strcmp(command, "sourcestats"))
    rv = report_sources(c, &b, json, 1);
  else if (!strcmp(command, "serverstats"))
    report_serverstats(c, &b, json);
  else if (!strcmp(command, "clients"))
    rv = report_clients(c, &b, json);
  else if (!strcmp(command, "metrics"))
    rv = ntsntp__ctl_report_metrics(c, &b, json);
  else if (!strcmp(command, "selectdata"))
    rv = ntsntp__ctl_report_selectdata(c, &b, json);
  else if (!strcmp(command, "authdata"))
    rv = ntsntp__ctl_report_authdata(c, &b, json);
  else if (!strcmp(command, "ntpdata"))
    rv = ntsntp__ctl_report_ntpdata(c, &b, json);
  else if (!strcmp(command, "activity"))
    rv = ntsntp__ctl_report_activity(c, &b, json);
  else if (!strcmp(command, "health"))
    report_health(c, &b, json);
  else if (!strcmp(command, "reload-sources")) /* sources */
    rv = report_reload_sources(c, &b, json);
  else
    rv = NTSNTP_ERR_NOT_FOUND;
  if (!rv)
    ntsntp__sb_printf(&b, "%s", ""); /* a buffer even for an empty report */
  if (!rv && b.err)
    rv = b.err == NTSNTP_ERR_NOMEM ? NTSNTP_ERR_NOMEM : NTSNTP_ERR_NOBUF;
  if (rv) {
    ntsntp__mfree(b.p);
    return rv;
  }
  *out = b.p;
  *outlen = b.len;
  return 0;
}
