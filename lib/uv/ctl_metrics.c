/* libntsntp runtime: the Prometheus text exposition (format 0.0.4) that
 * /metrics and `ntsctl metrics` serve, or the same samples as JSON. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ntsntp/control.h"
#include "ntsntp/version.h"

#include "ctl.h"
#include "../mem.h"

/* Prometheus text format 0.0.4: HELP and TYPE once per family, the samples
 * of a family together; or the same as a JSON list. */
typedef struct mout {
  ntsntp__sbuf *b;
  int json, n;
  const char *family;
} mout;

static void metric_head(mout *m, const char *name, const char *type,
                        const char *help, const char *lkey, const char *lval) {
  if (m->json) {
    ntsntp__sb_printf(m->b, "%s{\"name\":\"%s\",\"type\":\"%s\",\"labels\":{",
                      m->n++ ? "," : "", name, type);
    if (lkey) {
      ntsntp__sb_printf(m->b, "\"%s\":", lkey);
      ntsntp__sb_json_str(m->b, lval);
    }
    ntsntp__sb_printf(m->b, "},\"value\":");
    return;
  }
  if (!m->family || strcmp(m->family, name) != 0) {
    ntsntp__sb_printf(m->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                      type);
    m->family = name;
  }
  if (lkey) {
    /* Label values come from configuration (source names): escaped as
     * the format wants (backslash, quote, newline); other control bytes
     * become '?'. */
    ntsntp__sb_printf(m->b, "%s{%s=\"", name, lkey);
    for (; *lval; lval++) {
      unsigned char ch = (unsigned char)*lval;
      if (ch == '\\' || ch == '"')
        ntsntp__sb_printf(m->b, "\\%c", ch);
      else if (ch == '\n')
        ntsntp__sb_printf(m->b, "\\n");
      else
        ntsntp__sb_printf(m->b, "%c", ch < 0x20 || ch == 0x7f ? '?' : ch);
    }
    ntsntp__sb_printf(m->b, "\"} ");
  } else
    ntsntp__sb_printf(m->b, "%s ", name);
}

static void metric_u(mout *m, const char *name, const char *type,
                     const char *help, const char *lkey, const char *lval,
                     uint64_t v) {
  metric_head(m, name, type, help, lkey, lval);
  ntsntp__sb_printf(m->b, m->json ? "%" PRIu64 "}" : "%" PRIu64 "\n", v);
}

static void metric_dl(mout *m, const char *name, const char *help,
                      const char *lkey, const char *lval, double v) {
  metric_head(m, name, "gauge", help, lkey, lval);
  if (m->json) {
    ntsntp__sb_json_num(m->b, v, 9);
    ntsntp__sb_printf(m->b, "}");
  } else if (isfinite(v)) {
    /* Timestamps (seconds since 1970) keep their microseconds. */
    ntsntp__sb_printf(m->b, fabs(v) >= 1e6 ? "%.6f\n" : "%.9g\n", v);
  } else {
    ntsntp__sb_printf(m->b, "%s\n", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
  }
}

static void metric_d(mout *m, const char *name, const char *help, double v) {
  metric_dl(m, name, help, NULL, NULL, v);
}

/* A histogram: cumulative buckets at |bound|, then _sum and _count. */
static void metric_histogram(mout *m, const char *name, const char *help,
                             const double *bound, const uint64_t *bucket,
                             size_t n, double sum, uint64_t count) {
  char bname[96], le[32];
  uint64_t cum = 0;
  size_t i;
  snprintf(bname, sizeof(bname), "%s_bucket", name);
  if (!m->json)
    ntsntp__sb_printf(m->b, "# HELP %s %s\n# TYPE %s histogram\n", name, help,
                      name);
  for (i = 0; i <= n; i++) {
    cum += i < n ? bucket[i] : 0;
    if (i < n)
      snprintf(le, sizeof(le), "%g", bound[i]);
    else
      snprintf(le, sizeof(le), "+Inf");
    if (m->json)
      metric_head(m, bname, "histogram", "", "le", le);
    else
      ntsntp__sb_printf(m->b, "%s{le=\"%s\"} ", bname, le);
    ntsntp__sb_printf(m->b, m->json ? "%" PRIu64 "}" : "%" PRIu64 "\n",
                      i < n ? cum : count);
  }
  snprintf(bname, sizeof(bname), "%s_sum", name);
  if (m->json) {
    metric_head(m, bname, "histogram", "", NULL, NULL);
    ntsntp__sb_json_num(m->b, sum, 9);
    ntsntp__sb_printf(m->b, "}");
  } else {
    ntsntp__sb_printf(m->b, "%s %.9g\n", bname, sum);
  }
  snprintf(bname, sizeof(bname), "%s_count", name);
  if (m->json)
    metric_head(m, bname, "histogram", "", NULL, NULL);
  else
    ntsntp__sb_printf(m->b, "%s ", bname);
  ntsntp__sb_printf(m->b, m->json ? "%" PRIu64 "}" : "%" PRIu64 "\n", count);
  m->family = NULL;
}

/* One family over the sources: |field| of each. */
#define PER_SOURCE_D(NAME, HELP, EXPR)                                         \
  for (i = 0; i < nsrc; i++) {                                                 \
    const ntsntp_ctl_source *s = &src[i];                                      \
    metric_dl(&m, NAME, HELP, "source", s->name, (EXPR));                      \
  }
#define PER_SOURCE_U(NAME, TYPE, HELP, COND, EXPR)                             \
  for (i = 0; i < nsrc; i++) {                                                 \
    const ntsntp_ctl_source *s = &src[i];                                      \
    if (COND)                                                                  \
      metric_u(&m, NAME, TYPE, HELP, "source", s->name, (EXPR));               \
  }

#define COUNTER(name, help, v)                                                 \
  metric_u(&m, name, "counter", help, NULL, NULL, v)

int ntsntp__ctl_report_metrics(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  ntsntp_uv_service_stats st;
  const ntsntp_server_stats *n = &st.ntp;
  ntsntp_ctl_tracking t;
  ntsntp_ctl_source *src = ntsntp__calloc(NTSNTP_CTL_MAX_SOURCES, sizeof(*src));
  mout m = {b, json, 0, NULL};
  size_t i, nsrc;
  if (!src)
    return NTSNTP_ERR_NOMEM;
  c->s.provider.stats(c->s.provider.user, &st);
  c->s.provider.tracking(c->s.provider.user, &t);
  nsrc = ntsntp__ctl_get_sources(c, src);
  for (i = 0; i < nsrc; i++)
    src[i].name[sizeof(src[i].name) - 1] = '\0';
  if (json)
    ntsntp__sb_printf(b, "{\"metrics\":[");

  metric_u(&m, "ntsd_build_info", "gauge", "ntsd version.", "version",
           NTSNTP_VERSION, 1);
  COUNTER("ntsd_ntp_packets_received_total", "NTP requests received.",
          n->received);
  for (i = 0; i < NTSNTP__CTL_N_DROP_REASONS; i++)
    metric_u(&m, "ntsd_ntp_packets_dropped_total", "counter",
             "NTP requests dropped without a response, by reason.", "reason",
             ntsntp_server_reason_name(ntsntp__ctl_drop_reasons[i]),
             ntsntp__ctl_drops_for(n, i));
  metric_u(&m, "ntsd_ntp_packets_dropped_total", "counter", "", "reason",
           "other", ntsntp__ctl_drops_other(n));
  for (i = 0; i < NTSNTP_REASON_COUNT; i++)
    metric_u(&m, "ntsd_ntp_requests_total", "counter",
             "NTP requests by the server's verdict reason (answered or not).",
             "reason", ntsntp_server_reason_name((ntsntp_server_reason)i),
             n->reasons[i]);
  COUNTER("ntsd_ntp_responses_total",
          "NTP responses prepared, KoDs and NAKs included.", n->responded);
  COUNTER("ntsd_ntp_send_errors_total",
          "NTP responses the kernel did not take.", n->tx_errors);
  COUNTER("ntsd_ntp_kod_responses_total", "Rate-limit KoD responses.", n->kods);
  COUNTER("ntsd_nts_authenticated_packets_total",
          "NTS-authenticated NTP requests answered.", n->nts_authenticated);
  COUNTER("ntsd_nts_naks_total", "NTS NAK responses.", n->naks);
  /* serverstats' "NTS cookies issued" is the sum of the two. */
  metric_u(&m, "ntsd_nts_cookies_issued_total", "counter",
           "NTS cookies issued, by NTS-KE or in NTP responses.", "via",
           "nts_ke", st.ke.ke.cookies_issued);
  metric_u(&m, "ntsd_nts_cookies_issued_total", "counter", "", "via", "ntp",
           n->cookies_issued);
  metric_u(&m, "ntsd_rx_timestamps_total", "counter",
           "NTP receive timestamps by source.", "source", "kernel",
           n->rx_kernel_ts);
  metric_u(&m, "ntsd_rx_timestamps_total", "counter", "", "source", "daemon",
           n->rx_daemon_ts);
  metric_u(&m, "ntsd_nts_enabled", "gauge", "1 when NTS is configured.", NULL,
           NULL, (uint64_t)st.nts_enabled);
  COUNTER("ntsd_nts_ke_connections_accepted_total",
          "NTS-KE connections given a session.", st.ke.accepted);
  COUNTER("ntsd_nts_ke_connections_dropped_total",
          "NTS-KE connections refused (limit or access control).",
          st.ke.dropped);
  metric_u(&m, "ntsd_nts_ke_sessions_active", "gauge",
           "NTS-KE sessions open now.", NULL, NULL, st.ke.active);
  metric_u(&m, "ntsd_nts_ke_refused_total", "counter",
           "NTS-KE connections refused at accept, by reason.", "reason",
           "denied", st.ke.refused_denied);
  metric_u(&m, "ntsd_nts_ke_refused_total", "counter", "", "reason",
           "ratelimit", st.ke.refused_ratelimit);
  metric_u(&m, "ntsd_nts_ke_refused_total", "counter", "", "reason",
           "client_cap", st.ke.refused_client_cap);
  metric_u(&m, "ntsd_nts_ke_refused_total", "counter", "", "reason",
           "network_cap", st.ke.refused_network_cap);
  metric_u(&m, "ntsd_nts_ke_refused_total", "counter", "", "reason", "full",
           st.ke.refused_full);
  metric_u(&m, "ntsd_nts_ke_closed_early_total", "counter",
           "NTS-KE connections closed before their request was complete, "
           "by reason.",
           "reason", "evicted", st.ke.evicted);
  metric_u(&m, "ntsd_nts_ke_closed_early_total", "counter", "", "reason",
           "first_byte_timeout", st.ke.first_byte_timeouts);
  metric_u(&m, "ntsd_nts_ke_closed_early_total", "counter", "", "reason",
           "header_timeout", st.ke.header_timeouts);
  COUNTER("ntsd_nts_ke_accept_errors_total",
          "NTS-KE connections accept could not take.", st.ke.accept_errors);
  COUNTER("ntsd_nts_ke_sessions_completed_total",
          "NTS-KE responses with cookies fully produced.",
          st.ke.ke.sessions_done);
  COUNTER("ntsd_nts_ke_handshake_failures_total",
          "NTS-KE TLS handshake failures.", st.ke.ke.handshake_failed);
  COUNTER("ntsd_nts_ke_bad_requests_total",
          "NTS-KE requests answered with an Error record.",
          st.ke.ke.bad_requests);
  COUNTER("ntsd_nts_ke_timeouts_total", "NTS-KE sessions ended by timeout.",
          st.ke.ke.timeouts);
  {
    static const double bound[] = NTSNTP_UV_KE_LATENCY_BOUNDS;
    metric_histogram(&m, "ntsd_nts_ke_handshake_seconds",
                     "NTS-KE sessions answered, by seconds from accept to "
                     "the response written.",
                     bound, st.ke.latency_bucket, NTSNTP_UV_KE_LATENCY_BUCKETS,
                     st.ke.latency_sum, st.ke.latency_count);
  }
  COUNTER("ntsd_nts_key_rotations_total", "NTS server key rotations.",
          st.key_rotations);
  COUNTER("ntsd_nts_cert_reloads_total", "Certificate reloads.",
          st.cert_reloads);
  if (c->s.provider.cert) {
    ntsntp_ctl_cert ce;
    c->s.provider.cert(c->s.provider.user, &ce);
    if (ce.loaded) {
      metric_d(&m, "ntsd_nts_cert_not_after_seconds",
               "Unix time the served certificate expires (notAfter).",
               (double)ce.not_after);
      metric_d(&m, "ntsd_nts_cert_not_before_seconds",
               "Unix time the served certificate became valid (notBefore).",
               (double)ce.not_before);
      metric_u(&m, "ntsd_nts_cert_last_reload_success", "gauge",
               "1 when the last certificate load or reload succeeded (and "
               "its files can be checked).",
               NULL, NULL, (uint64_t)(ce.last_reload_ok != 0));
      metric_d(&m, "ntsd_nts_cert_last_reload_timestamp_seconds",
               "Unix time of the last certificate load or reload attempt.",
               (double)ce.last_reload);
      COUNTER("ntsd_nts_cert_reload_failures_total",
              "Certificate reloads that failed (the old one kept), and "
              "checks of its files that failed.",
              ce.reload_failures);
    }
  }
  {
    char why[160];
    ntsntp__ctl_health_problem(c, why, sizeof(why));
    metric_u(&m, "ntsd_healthy", "gauge",
             "1 when ntsctl health passes (certificate valid, last reload "
             "good).",
             NULL, NULL, (uint64_t)(why[0] == '\0'));
  }
  if (c->s.provider.ratelimit) {
    ntsntp_ctl_ratelimit rl;
    c->s.provider.ratelimit(c->s.provider.user, &rl);
    metric_u(&m, "ntsd_ratelimit_clients", "gauge",
             "Clients (addresses or prefixes) in the rate-limit tables.",
             "table", "ntp", rl.ntp_records);
    metric_u(&m, "ntsd_ratelimit_clients", "gauge", "", "table", "nts_ke",
             rl.ke_records);
    metric_u(&m, "ntsd_ratelimit_capacity", "gauge",
             "Clients the rate-limit tables hold.", "table", "ntp",
             rl.ntp_capacity);
    metric_u(&m, "ntsd_ratelimit_capacity", "gauge", "", "table", "nts_ke",
             rl.ke_capacity);
  }
  COUNTER("ntsd_control_requests_total",
          "Control and metrics requests answered.", c->requests);
  COUNTER("ntsd_control_requests_dropped_total",
          "Control and metrics connections closed unanswered.", c->dropped);
  metric_u(&m, "ntsd_synchronised", "gauge",
           "1 when serving a synchronised time.", NULL, NULL,
           (uint64_t)(t.synchronised != 0));
  metric_u(&m, "ntsd_stratum", "gauge", "Stratum served.", NULL, NULL,
           t.stratum);
  metric_u(&m, "ntsd_leap_status", "gauge",
           "Leap indicator served (0 normal, 1 insert, 2 delete, 3 unsync).",
           NULL, NULL, t.leap);
  metric_d(&m, "ntsd_reference_time_seconds",
           "Unix time of the last clock update.",
           (double)t.ref_time_sec + t.ref_time_nsec * 1e-9);
  metric_d(&m, "ntsd_system_time_offset_seconds",
           "Local clock offset from NTP time (positive: fast).", t.system_time);
  metric_d(&m, "ntsd_root_delay_seconds", "Root delay served.", t.root_delay);
  metric_d(&m, "ntsd_root_dispersion_seconds", "Root dispersion served.",
           t.root_dispersion);
  metric_d(&m, "ntsd_frequency_ppm",
           "Local clock frequency error (positive: fast).", t.frequency_ppm);
  metric_u(&m, "ntsd_sources", "gauge", "Upstream sources configured.", NULL,
           NULL, nsrc);
  PER_SOURCE_D("ntsd_source_offset_seconds",
               "Estimated offset of the local clock from the source "
               "(positive: local ahead), as ntsctl sources.",
               s->offset)
  PER_SOURCE_D("ntsd_source_delay_seconds",
               "Round-trip delay to the source (filtered).", s->delay)
  PER_SOURCE_D("ntsd_source_dispersion_seconds",
               "Dispersion of the source's samples (filtered).", s->disp)
  PER_SOURCE_D("ntsd_source_root_distance_seconds",
               "Root distance of the source (the error bound).", s->error)
  PER_SOURCE_U("ntsd_source_reach", "gauge",
               "Reachability register (8 bits, 255: the last 8 polls "
               "answered).",
               1, s->reach)
  PER_SOURCE_U("ntsd_source_stratum", "gauge",
               "Stratum of the source's last valid sample.", 1, s->stratum)
  PER_SOURCE_U("ntsd_source_selected", "gauge",
               "1 for the source the served time follows (system peer).", 1,
               (uint64_t)(s->state == '*'))
  PER_SOURCE_U("ntsd_source_combined", "gauge",
               "1 for sources combined into the served time (the selected "
               "one too).",
               1, (uint64_t)(s->state == '*' || s->state == '+'))
  PER_SOURCE_U("ntsd_source_last_rx_seconds", "gauge",
               "Seconds since the source's last valid sample.", s->last_rx >= 0,
               (uint64_t)s->last_rx)
  PER_SOURCE_U("ntsd_source_nts_cookies", "gauge",
               "NTS cookies held for the source.",
               s->have_detail && s->detail.nts, s->detail.cookies)
  PER_SOURCE_U("ntsd_source_nts_naks_total", "counter",
               "NTS NAKs received from the source.",
               s->have_detail && s->detail.nts, s->detail.naks)
  PER_SOURCE_U("ntsd_source_nts_ke_total", "counter",
               "NTS-KE exchanges started with the source.",
               s->have_detail && s->detail.nts, s->detail.ke_total)
  PER_SOURCE_U("ntsd_source_requests_total", "counter",
               "NTP requests sent to the source.", s->have_detail, s->detail.tx)
  PER_SOURCE_U("ntsd_source_valid_responses_total", "counter",
               "Valid NTP responses from the source.", s->have_detail,
               s->detail.valid_rx)
  ntsntp__mfree(src);
  if (json)
    ntsntp__sb_printf(b, "]}\n");
  return 0;
}

#undef COUNTER
#undef PER_SOURCE_D
#undef PER_SOURCE_U
