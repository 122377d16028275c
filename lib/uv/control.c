/* libntsntp runtime: control socket (ntsctl) and HTTP /metrics. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/control.h"
#include "ntsntp/pkt.h"
#include "ntsntp/ts.h"
#include "ntsntp/version.h"

#define MAX_REPORT (256 * 1024)
#define HTTP_MAX_REQUEST 2048
#define DEFAULT_MAX_CLIENTS 16 /* per listener; ~2.5 KiB each */
#define DEFAULT_TIMEOUT_MS 2000
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* ------------------------------------------------------------------------ */
/* Text buffer: grows up to MAX_REPORT; an overflow or OOM is sticky.        */
/* ------------------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int err;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  if (b->err)
    return;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->err = NTSNTP_ERR_NOBUF;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    {
      size_t cap = b->cap ? b->cap * 2 : 4096;
      char *p;
      while (cap < b->len + (size_t)n + 1)
        cap *= 2;
      if (cap > MAX_REPORT) {
        b->err = NTSNTP_ERR_NOBUF;
        return;
      }
      p = realloc(b->p, cap);
      if (!p) {
        b->err = NTSNTP_ERR_NOMEM;
        return;
      }
      b->p = p;
      b->cap = cap;
    }
  }
}

/* A JSON string; names come from configuration, so escape everything. */
static void sb_json_str(sbuf *b, const char *s) {
  sb_printf(b, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      sb_printf(b, "\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f)
      sb_printf(b, "\\u%04x", ch);
    else
      sb_printf(b, "%c", ch);
  }
  sb_printf(b, "\"");
}

/* JSON has no NaN or infinity. */
static void sb_json_num(sbuf *b, double v, int prec) {
  if (isfinite(v))
    sb_printf(b, "%.*f", prec, v);
  else
    sb_printf(b, "null");
}

/* ------------------------------------------------------------------------ */
/* chronyc's units                                                           */
/* ------------------------------------------------------------------------ */

/* Whole seconds in 4 columns: "  34", " 20m", "  5h", " 12d", "  3y";
 * "   -" for never. */
static void sb_interval(sbuf *b, int64_t s) {
  if (s < 0)
    sb_printf(b, "   -");
  else if (s < 1200)
    sb_printf(b, "%4" PRId64, s);
  else if (s < 36000)
    sb_printf(b, "%3" PRId64 "m", s / 60);
  else if (s < 345600)
    sb_printf(b, "%3" PRId64 "h", s / 3600);
  else if (s / 86400 <= 999)
    sb_printf(b, "%3" PRId64 "d", s / 86400);
  else
    sb_printf(b, "%3" PRId64 "y", s / 86400 / 365);
}

/* Seconds with a unit: 4 digits (5 with the sign) for ns/us/ms, then one
 * more column for s, m, h, d, y, as chronyc prints them. */
static void sb_seconds(sbuf *b, double v, int sign) {
  static const struct {
    double limit, scale;
    const char *unit;
    int prec;
  } u[] = {
      {9999.5e-9, 1e9, "ns", 0},
      {9999.5e-6, 1e6, "us", 0},
      {9999.5e-3, 1e3, "ms", 0},
      {999.5, 1, "s", 1},
      {99999.5, 1, "s", 0},
      {99999.5 * 60, 1.0 / 60, "m", 0},
      {99999.5 * 3600, 1.0 / 3600, "h", 0},
      {99999.5 * 86400, 1.0 / 86400, "d", 0},
  };
  double x = fabs(v);
  size_t i;
  int w;
  if (!isfinite(v)) {
    sb_printf(b, sign ? "    nan" : "   nan");
    return;
  }
  for (i = 0; i < sizeof(u) / sizeof(u[0]); i++)
    if (x < u[i].limit)
      break;
  w = (i < 3 ? 4 : 5) + (sign ? 1 : 0);
  if (i == sizeof(u) / sizeof(u[0]))
    sb_printf(b, sign ? "%+*.0fy" : "%*.0fy", w,
              (sign ? v : x) / (86400.0 * 365));
  else
    sb_printf(b, sign ? "%+*.*f%s" : "%*.*f%s", w, u[i].prec,
              (sign ? v : x) * u[i].scale, u[i].unit);
}

static void sb_ppm(sbuf *b, double f, int sign) {
  int prec = fabs(f) < 99999.5 ? 3 : 0;
  sb_printf(b, sign ? "%+10.*f" : "%10.*f", prec, f);
}

static void sb_header(sbuf *b, const char *h) {
  size_t n = strlen(h);
  sb_printf(b, "%s\n", h);
  while (n--)
    sb_printf(b, "=");
  sb_printf(b, "\n");
}

static const char *leap_name(uint8_t leap) {
  switch (leap) {
  case NTSNTP_LEAP_NONE:
    return "Normal";
  case NTSNTP_LEAP_INSERT:
    return "Insert second";
  case NTSNTP_LEAP_DELETE:
    return "Delete second";
  default:
    return "Not synchronised";
  }
}

/* ------------------------------------------------------------------------ */
/* Reports                                                                   */
/* ------------------------------------------------------------------------ */

struct conn;

struct ntsntp_uv_ctl {
  ntsntp_uv_ctl_settings s;
  uv_loop_t *loop;
  char path[SUN_PATH_MAX];
  dev_t dev;
  ino_t ino;
  uv_pipe_t pipe;
  uv_tcp_t tcp;
  int have_pipe, have_tcp, own_path;
  uint16_t metrics_port;
  struct conn *conns;
  unsigned n_ctl, n_http;
  int handles, stopping;
  uint64_t requests, dropped;
  void (*done)(void *);
  void *done_user;
};

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

static void report_tracking(ntsntp_uv_ctl *c, sbuf *b, int json) {
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
    sb_printf(
        b, "{\"reference_id\":\"%08" PRIX32 "\",\"reference_name\":", t.ref_id);
    sb_json_str(b, t.ref_name);
    sb_printf(b,
              ",\"stratum\":%u,\"ref_time\":%" PRId64 ".%09" PRIu32
              ",\"ref_time_utc\":",
              t.stratum, t.ref_time_sec, t.ref_time_nsec);
    sb_json_str(b, when);
    sb_printf(b, ",\"system_time\":");
    sb_json_num(b, t.system_time, 9);
    sb_printf(b, ",\"last_offset\":");
    sb_json_num(b, t.last_offset, 9);
    sb_printf(b, ",\"rms_offset\":");
    sb_json_num(b, t.rms_offset, 9);
    sb_printf(b, ",\"frequency\":");
    sb_json_num(b, t.frequency_ppm, 3);
    sb_printf(b, ",\"residual_freq\":");
    sb_json_num(b, t.residual_freq_ppm, 3);
    sb_printf(b, ",\"skew\":");
    sb_json_num(b, t.skew_ppm, 3);
    sb_printf(b, ",\"root_delay\":");
    sb_json_num(b, t.root_delay, 9);
    sb_printf(b, ",\"root_dispersion\":");
    sb_json_num(b, t.root_dispersion, 9);
    sb_printf(b, ",\"update_interval\":");
    sb_json_num(b, t.update_interval, 1);
    sb_printf(b, ",\"leap_status\":\"%s\",\"synchronised\":%s}\n",
              leap_name(t.leap), t.synchronised ? "true" : "false");
    return;
  }
  /* chronyc: "fast"/"slow" words instead of signs; zero reads "fast" for
   * the system time and "slow" for the frequency. */
  sb_printf(b,
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
            t.system_time < 0 ? "slow" : "fast", t.last_offset, t.rms_offset,
            fabs(t.frequency_ppm), t.frequency_ppm > 0 ? "fast" : "slow",
            t.residual_freq_ppm, t.skew_ppm, t.root_delay, t.root_dispersion,
            t.update_interval, leap_name(t.leap));
}

static size_t get_sources(ntsntp_uv_ctl *c, ntsntp_ctl_source *src) {
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

static int report_sources(ntsntp_uv_ctl *c, sbuf *b, int json, int stats) {
  ntsntp_ctl_source *src = calloc(NTSNTP_CTL_MAX_SOURCES, sizeof(*src));
  size_t i, n;
  char name[64];
  if (!src)
    return NTSNTP_ERR_NOMEM;
  n = get_sources(c, src);
  if (json)
    sb_printf(b, "{\"%s\":[", stats ? "sourcestats" : "sources");
  else if (stats)
    sb_header(b, "Name/IP Address            NP  NR  Span  Frequency  Freq "
                 "Skew  Offset  Std Dev");
  else
    sb_header(b, "MS Name/IP address         Stratum Poll Reach LastRx Last "
                 "sample               ");
  for (i = 0; i < n; i++) {
    const ntsntp_ctl_source *s = &src[i];
    src[i].name[sizeof(src[i].name) - 1] = '\0';
    if (json) {
      sb_printf(b, "%s{\"name\":", i ? "," : "");
      sb_json_str(b, s->name);
      if (stats) {
        sb_printf(b, ",\"np\":%u,\"nr\":%u,\"span\":%" PRIu32 ",\"frequency\":",
                  s->np, s->nr, s->span);
        sb_json_num(b, s->frequency_ppm, 3);
        sb_printf(b, ",\"freq_skew\":");
        sb_json_num(b, s->freq_skew_ppm, 3);
        sb_printf(b, ",\"offset\":");
        sb_json_num(b, s->est_offset, 9);
        sb_printf(b, ",\"std_dev\":");
        sb_json_num(b, s->std_dev, 9);
      } else {
        sb_printf(b,
                  ",\"mode\":\"%c\",\"state\":\"%c\",\"stratum\":%u,"
                  "\"poll\":%d,\"reach\":%u,\"last_rx\":%" PRId64
                  ",\"offset\":",
                  s->mode > 0x20 && s->mode < 0x7f ? s->mode : ' ',
                  s->state > 0x20 && s->state < 0x7f ? s->state : ' ',
                  s->stratum, s->poll, s->reach, s->last_rx);
        sb_json_num(b, s->offset, 9);
        sb_printf(b, ",\"measured_offset\":");
        sb_json_num(b, s->measured_offset, 9);
        sb_printf(b, ",\"error\":");
        sb_json_num(b, s->error, 9);
      }
      sb_printf(b, "}");
      continue;
    }
    short_name(name, sizeof(name), s->name);
    if (stats) {
      sb_printf(b, "%-25s %3u %3u  ", name, s->np, s->nr);
      sb_interval(b, s->span);
      sb_printf(b, " ");
      sb_ppm(b, s->frequency_ppm, 1);
      sb_printf(b, " ");
      sb_ppm(b, s->freq_skew_ppm, 0);
      sb_printf(b, "  ");
      sb_seconds(b, s->est_offset, 1);
      sb_printf(b, "  ");
      sb_seconds(b, s->std_dev, 0);
    } else {
      sb_printf(b, "%c%c %-27s  %2u  %2d   %3o  ",
                s->mode > 0x20 && s->mode < 0x7f ? s->mode : ' ',
                s->state > 0x20 && s->state < 0x7f ? s->state : ' ', name,
                s->stratum, s->poll, s->reach);
      sb_interval(b, s->last_rx);
      sb_printf(b, "  ");
      sb_seconds(b, s->offset, 1);
      sb_printf(b, "[");
      sb_seconds(b, s->measured_offset, 1);
      sb_printf(b, "] +/- ");
      sb_seconds(b, s->error, 0);
    }
    sb_printf(b, "\n");
  }
  if (json)
    sb_printf(b, "]}\n");
  free(src);
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
static const ntsntp_server_reason drop_reasons[] = {
    NTSNTP_REASON_TOO_SHORT,     NTSNTP_REASON_BAD_VERSION,
    NTSNTP_REASON_BAD_MODE,      NTSNTP_REASON_BAD_EF,
    NTSNTP_REASON_NTS_MALFORMED, NTSNTP_REASON_NTS_OFF,
    NTSNTP_REASON_RATELIMIT,     NTSNTP_REASON_DENIED,
    NTSNTP_REASON_INTERNAL};
#define N_DROP_REASONS (sizeof(drop_reasons) / sizeof(drop_reasons[0]))

static uint64_t drops_for(const ntsntp_server_stats *st, size_t i) {
  ntsntp_server_reason r = drop_reasons[i];
  if (r == NTSNTP_REASON_RATELIMIT)
    return st->reasons[r] > st->kods ? st->reasons[r] - st->kods : 0;
  return st->reasons[r];
}

static uint64_t drops_other(const ntsntp_server_stats *st) {
  uint64_t sum = 0;
  size_t i;
  for (i = 0; i < N_DROP_REASONS; i++)
    sum += drops_for(st, i);
  return st->dropped > sum ? st->dropped - sum : 0;
}

static void report_serverstats(ntsntp_uv_ctl *c, sbuf *b, int json) {
  ntsntp_uv_service_stats st;
  const ntsntp_server_stats *n = &st.ntp;
  uint64_t sent;
  size_t i;
  struct {
    const char *label, *key;
    uint64_t v;
  } rows[24];
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
  ROW("NTP daemon RX timestamps", "ntp_daemon_rx_timestamps", n->rx_daemon_ts);
  ROW("NTP kernel RX timestamps", "ntp_kernel_rx_timestamps", n->rx_kernel_ts);
  ROW("NTP responses sent", "ntp_responses_sent", sent);
  ROW("NTP send errors", "ntp_send_errors", n->tx_errors);
  ROW("NTP KoD responses", "ntp_kod_responses", n->kods);
  ROW("NTS NAKs sent", "nts_naks_sent", n->naks);
  ROW("NTS cookies issued", "nts_cookies_issued", n->cookies_issued);
  ROW("NTS-KE sessions active", "nts_ke_sessions_active", st.ke.active);
  ROW("NTS-KE refused: rate limit", "nts_ke_refused_ratelimit",
      st.ke.refused_ratelimit);
  ROW("NTS-KE refused: client cap", "nts_ke_refused_client_cap",
      st.ke.refused_client_cap);
  ROW("NTS-KE refused: network cap", "nts_ke_refused_network_cap",
      st.ke.refused_network_cap);
  ROW("NTS-KE refused: table full", "nts_ke_refused_full",
      st.ke.refused_full);
  ROW("NTS-KE connections evicted", "nts_ke_connections_evicted",
      st.ke.evicted);
  ROW("NTS-KE first-byte timeouts", "nts_ke_first_byte_timeouts",
      st.ke.first_byte_timeouts);
#undef ROW

  if (json) {
    sb_printf(b, "{");
    for (i = 0; i < nr; i++)
      sb_printf(b, "%s\"%s\":%" PRIu64, i ? "," : "", rows[i].key, rows[i].v);
    sb_printf(b, ",\"ntp_dropped_by_reason\":{");
    for (i = 0; i < N_DROP_REASONS; i++)
      sb_printf(b, "\"%s\":%" PRIu64 ",",
                ntsntp_server_reason_name(drop_reasons[i]), drops_for(n, i));
    sb_printf(b, "\"other\":%" PRIu64 "},\"ntp_requests_by_reason\":{",
              drops_other(n));
    for (i = 0; i < NTSNTP_REASON_COUNT; i++)
      sb_printf(b, "%s\"%s\":%" PRIu64, i ? "," : "",
                ntsntp_server_reason_name((ntsntp_server_reason)i),
                n->reasons[i]);
    sb_printf(b, "},\"nts_enabled\":%s}\n", st.nts_enabled ? "true" : "false");
    return;
  }
  for (i = 0; i < nr; i++)
    sb_printf(b, "%-27s: %" PRIu64 "\n", rows[i].label, rows[i].v);
  for (i = 0; i < N_DROP_REASONS; i++) {
    char label[64];
    snprintf(label, sizeof(label), "Dropped (%s)",
             ntsntp_server_reason_name(drop_reasons[i]));
    sb_printf(b, "%-27s: %" PRIu64 "\n", label, drops_for(n, i));
  }
  sb_printf(b, "%-27s: %" PRIu64 "\n", "Dropped (other)", drops_other(n));
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

static int report_clients(ntsntp_uv_ctl *c, sbuf *b, int json) {
  ntsntp_ctl_client *cl;
  size_t i, n;
  char name[INET6_ADDRSTRLEN + 8];
  if (!c->s.provider.clients)
    return NTSNTP_ERR_STATE;
  cl = calloc(NTSNTP_CTL_MAX_CLIENTS, sizeof(*cl));
  if (!cl)
    return NTSNTP_ERR_NOMEM;
  n = c->s.provider.clients(c->s.provider.user, cl, NTSNTP_CTL_MAX_CLIENTS);
  if (n > NTSNTP_CTL_MAX_CLIENTS)
    n = NTSNTP_CTL_MAX_CLIENTS;
  if (json)
    sb_printf(b, "{\"clients\":[");
  else
    sb_header(b, "Hostname                      NTP   Drop   KoD  Last");
  for (i = 0; i < n; i++) {
    addr_string(&cl[i], name, sizeof(name));
    if (json) {
      sb_printf(b,
                "%s{\"address\":\"%s\",\"ntp\":%" PRIu64 ",\"drop\":%" PRIu64
                ",\"kod\":%" PRIu64 ",\"last\":%" PRId64 "}",
                i ? "," : "", name, cl[i].hits, cl[i].drops, cl[i].kods,
                cl[i].last_ago);
      continue;
    }
    sb_printf(b, "%-25s  %6" PRIu64 "  %5" PRIu64 "  %4" PRIu64 "  ", name,
              cl[i].hits, cl[i].drops, cl[i].kods);
    sb_interval(b, cl[i].last_ago);
    sb_printf(b, "\n");
  }
  if (json)
    sb_printf(b, "]}\n");
  free(cl);
  return 0;
}

/* Prometheus text format 0.0.4: HELP and TYPE once per family, the samples
 * of a family together; or the same as a JSON list. */
typedef struct mout {
  sbuf *b;
  int json, n;
  const char *family;
} mout;

static void metric_head(mout *m, const char *name, const char *type,
                        const char *help, const char *lkey, const char *lval) {
  if (m->json) {
    sb_printf(m->b, "%s{\"name\":\"%s\",\"type\":\"%s\",\"labels\":{",
              m->n++ ? "," : "", name, type);
    if (lkey)
      sb_printf(m->b, "\"%s\":\"%s\"", lkey, lval);
    sb_printf(m->b, "},\"value\":");
    return;
  }
  if (!m->family || strcmp(m->family, name) != 0) {
    sb_printf(m->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    m->family = name;
  }
  if (lkey)
    sb_printf(m->b, "%s{%s=\"%s\"} ", name, lkey, lval);
  else
    sb_printf(m->b, "%s ", name);
}

static void metric_u(mout *m, const char *name, const char *type,
                     const char *help, const char *lkey, const char *lval,
                     uint64_t v) {
  metric_head(m, name, type, help, lkey, lval);
  sb_printf(m->b, m->json ? "%" PRIu64 "}" : "%" PRIu64 "\n", v);
}

static void metric_d(mout *m, const char *name, const char *help, double v) {
  metric_head(m, name, "gauge", help, NULL, NULL);
  if (m->json) {
    sb_json_num(m->b, v, 9);
    sb_printf(m->b, "}");
  } else if (isfinite(v)) {
    sb_printf(m->b, "%.9g\n", v);
  } else {
    sb_printf(m->b, "%s\n", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
  }
}

#define COUNTER(name, help, v)                                                 \
  metric_u(&m, name, "counter", help, NULL, NULL, v)

static int report_metrics(ntsntp_uv_ctl *c, sbuf *b, int json) {
  ntsntp_uv_service_stats st;
  const ntsntp_server_stats *n = &st.ntp;
  ntsntp_ctl_tracking t;
  ntsntp_ctl_source *src = calloc(NTSNTP_CTL_MAX_SOURCES, sizeof(*src));
  mout m = {b, json, 0, NULL};
  size_t i, nsrc;
  if (!src)
    return NTSNTP_ERR_NOMEM;
  c->s.provider.stats(c->s.provider.user, &st);
  c->s.provider.tracking(c->s.provider.user, &t);
  nsrc = get_sources(c, src);
  free(src);
  if (json)
    sb_printf(b, "{\"metrics\":[");

  metric_u(&m, "ntsd_build_info", "gauge", "ntsd version.", "version",
           NTSNTP_VERSION, 1);
  COUNTER("ntsd_ntp_packets_received_total", "NTP requests received.",
          n->received);
  for (i = 0; i < N_DROP_REASONS; i++)
    metric_u(&m, "ntsd_ntp_packets_dropped_total", "counter",
             "NTP requests dropped without a response, by reason.", "reason",
             ntsntp_server_reason_name(drop_reasons[i]), drops_for(n, i));
  metric_u(&m, "ntsd_ntp_packets_dropped_total", "counter", "", "reason",
           "other", drops_other(n));
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
  COUNTER("ntsd_nts_cookies_issued_total", "NTS cookies sent in NTP responses.",
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
           "by reason.", "reason", "evicted", st.ke.evicted);
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
  COUNTER("ntsd_nts_ke_cookies_issued_total", "NTS cookies sent by NTS-KE.",
          st.ke.ke.cookies_issued);
  COUNTER("ntsd_nts_key_rotations_total", "NTS server key rotations.",
          st.key_rotations);
  COUNTER("ntsd_nts_cert_reloads_total", "Certificate reloads.",
          st.cert_reloads);
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
  if (json)
    sb_printf(b, "]}\n");
  return 0;
}

#undef COUNTER

static void report_health(ntsntp_uv_ctl *c, sbuf *b, int json) {
  ntsntp_ctl_tracking t;
  c->s.provider.tracking(c->s.provider.user, &t);
  if (json)
    sb_printf(b,
              "{\"status\":\"ok\",\"synchronised\":%s,\"stratum\":%u,"
              "\"leap_status\":\"%s\"}\n",
              t.synchronised ? "true" : "false", t.stratum, leap_name(t.leap));
  else
    sb_printf(b,
              "Status          : OK\n"
              "Synchronised    : %s\n"
              "Stratum         : %u\n"
              "Leap status     : %s\n",
              t.synchronised ? "Yes" : "No", t.stratum, leap_name(t.leap));
}

int ntsntp_uv_ctl_report(ntsntp_uv_ctl *c, const char *command, int json,
                         char **out, size_t *outlen) {
  sbuf b = {NULL, 0, 0, 0};
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
    rv = report_metrics(c, &b, json);
  else if (!strcmp(command, "health"))
    report_health(c, &b, json);
  else
    rv = NTSNTP_ERR_NOT_FOUND;
  if (!rv)
    sb_printf(&b, "%s", ""); /* a buffer even for an empty report */
  if (!rv && b.err)
    rv = b.err == NTSNTP_ERR_NOMEM ? NTSNTP_ERR_NOMEM : NTSNTP_ERR_NOBUF;
  if (rv) {
    free(b.p);
    return rv;
  }
  *out = b.p;
  *outlen = b.len;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

typedef struct conn {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  uv_timer_t timer;
  uv_write_t wr;
  uv_shutdown_t sd;
  ntsntp_uv_ctl *c;
  struct conn *next, **pprev;
  int http, handles, closing, answered;
  size_t in_len;
  char *out;
  char in[HTTP_MAX_REQUEST + 1]; /* + NUL */
} conn;

static void ctl_unref(ntsntp_uv_ctl *c) {
  if (--c->handles == 0 && c->stopping) {
    void (*done)(void *) = c->done;
    void *user = c->done_user;
    free(c);
    if (done)
      done(user);
  }
}

static void conn_closed(uv_handle_t *h) {
  conn *k = h->data;
  if (--k->handles == 0) {
    ntsntp_uv_ctl *c = k->c;
    free(k->out);
    free(k);
    ctl_unref(c);
  }
}

static void conn_close(conn *k) {
  if (k->closing)
    return;
  k->closing = 1;
  if (!k->answered)
    k->c->dropped++;
  *k->pprev = k->next;
  if (k->next)
    k->next->pprev = k->pprev;
  if (k->http)
    k->c->n_http--;
  else
    k->c->n_ctl--;
  uv_close(&k->h.handle, conn_closed);
  uv_close((uv_handle_t *)&k->timer, conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn *k = req->data;
  (void)status;
  conn_close(k);
}

static void on_written(uv_write_t *req, int status) {
  conn *k = req->data;
  if (k->closing)
    return;
  if (status < 0 || uv_shutdown(&k->sd, &k->h.stream, on_shutdown) < 0)
    conn_close(k);
}

/* Sends |head| then |body| (either may be NULL) and closes. */
static void respond(conn *k, const char *head, const char *body,
                    size_t body_len) {
  size_t hl = head ? strlen(head) : 0;
  uv_buf_t buf;
  k->answered = 1;
  uv_read_stop(&k->h.stream);
  k->out = malloc(hl + body_len + 1);
  if (!k->out) {
    conn_close(k);
    return;
  }
  if (hl)
    memcpy(k->out, head, hl);
  if (body_len)
    memcpy(k->out + hl, body, body_len);
  buf = uv_buf_init(k->out, (unsigned)(hl + body_len));
  k->wr.data = k->sd.data = k;
  if (uv_write(&k->wr, &k->h.stream, &buf, 1, on_written) < 0)
    conn_close(k);
}

static void ctl_error(conn *k, const char *code, const char *msg) {
  char line[256];
  snprintf(line, sizeof(line), NTSNTP_CTL_VERSION " ERR %s %s\n", code, msg);
  respond(k, line, NULL, 0);
}

/* One request line of |linelen| bytes, "\n" and an optional "\r" removed
 * (NUL-terminated). */
static void ctl_request(conn *k, char *line, size_t linelen) {
  char *tok[4], *save = NULL, *p;
  char head[64], *body;
  size_t n = 0, len;
  int json = 0, rv;
  for (p = line; p < line + linelen; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
      ctl_error(k, "bad-request", "request must be printable ASCII");
      return;
    }
  for (p = strtok_r(line, " ", &save); p && n < 4;
       p = strtok_r(NULL, " ", &save))
    tok[n++] = p;
  if (n == 0 || strncmp(tok[0], "NTSCTL/", 7) != 0) {
    ctl_error(k, "bad-request", "expected \"NTSCTL/1 <command> [text|json]\"");
    return;
  }
  if (strcmp(tok[0], NTSNTP_CTL_VERSION) != 0) {
    ctl_error(k, "version", "this ntsd speaks " NTSNTP_CTL_VERSION);
    return;
  }
  if (n < 2 || n > 3) {
    ctl_error(k, "bad-request", "expected \"NTSCTL/1 <command> [text|json]\"");
    return;
  }
  if (n == 3) {
    if (!strcmp(tok[2], "json")) {
      json = 1;
    } else if (strcmp(tok[2], "text") != 0) {
      ctl_error(k, "bad-format", "format must be text or json");
      return;
    }
  }
  rv = ntsntp_uv_ctl_report(k->c, tok[1], json, &body, &len);
  if (rv == NTSNTP_ERR_NOT_FOUND) {
    ctl_error(k, "unknown-command",
              "commands: tracking sources sourcestats serverstats clients "
              "metrics health");
    return;
  }
  if (rv == NTSNTP_ERR_STATE) {
    ctl_error(k, "unavailable", "client accounting is not enabled");
    return;
  }
  if (rv) {
    ctl_error(k, "internal", ntsntp_strerror(rv));
    return;
  }
  snprintf(head, sizeof(head), NTSNTP_CTL_VERSION " OK %zu\n", len);
  respond(k, head, body, len);
  free(body);
}

static void http_status(conn *k, const char *status, int head_only) {
  char msg[256];
  snprintf(msg, sizeof(msg),
           "HTTP/1.0 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s%s",
           status, strlen(status) + 1, head_only ? "" : status,
           head_only ? "" : "\n");
  respond(k, msg, NULL, 0);
}

/* Minimal HTTP/1.x: the request line only; headers are read and ignored. */
static void http_request(conn *k) {
  char *line = k->in, *sp1, *sp2, *eol, *body, head[256];
  size_t len;
  int head_only;
  eol = memchr(line, '\n', k->in_len);
  *eol = '\0';
  if (eol > line && eol[-1] == '\r')
    eol[-1] = '\0';
  sp1 = strchr(line, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || strncmp(sp2 + 1, "HTTP/1.", 7)) {
    http_status(k, "400 Bad Request", 0);
    return;
  }
  *sp1 = *sp2 = '\0';
  head_only = !strcmp(line, "HEAD");
  if (!head_only && strcmp(line, "GET") != 0) {
    http_status(k, "405 Method Not Allowed", 0);
    return;
  }
  if (strcmp(sp1 + 1, "/metrics") != 0 && strncmp(sp1 + 1, "/metrics?", 9)) {
    http_status(k, "404 Not Found", head_only);
    return;
  }
  if (ntsntp_uv_ctl_report(k->c, "metrics", 0, &body, &len)) {
    http_status(k, "500 Internal Server Error", head_only);
    return;
  }
  snprintf(head, sizeof(head),
           "HTTP/1.0 200 OK\r\n"
           "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n",
           len);
  respond(k, head, body, head_only ? 0 : len);
  free(body);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn *k = h->data;
  size_t max = k->http ? HTTP_MAX_REQUEST : NTSNTP_CTL_MAX_REQUEST;
  (void)suggested;
  *buf = uv_buf_init(k->in + k->in_len, (unsigned)(max - k->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *k = s->data;
  size_t max = k->http ? HTTP_MAX_REQUEST : NTSNTP_CTL_MAX_REQUEST;
  char *nl;
  (void)buf;
  if (nread < 0) {
    conn_close(k); /* EOF, error, or no room left (UV_ENOBUFS) */
    return;
  }
  k->in_len += (size_t)nread;
  if (k->http) {
    /* The request ends with an empty line; bare "\n" endings too. */
    k->in[k->in_len] = '\0';
    if (memmem(k->in, k->in_len, "\r\n\r\n", 4) ||
        memmem(k->in, k->in_len, "\n\n", 2)) {
      k->c->requests++;
      http_request(k);
    } else if (k->in_len == max)
      conn_close(k); /* too large: no answer */
    return;
  }
  nl = memchr(k->in, '\n', k->in_len);
  if (nl) {
    *nl = '\0';
    if (nl > k->in && nl[-1] == '\r')
      *--nl = '\0';
    k->c->requests++;
    ctl_request(k, k->in, (size_t)(nl - k->in));
  } else if (k->in_len == max) {
    conn_close(k); /* too long: no answer */
  }
}

static void on_timeout(uv_timer_t *t) {
  conn_close(t->data);
}

/* Full: a new client is always served, and the oldest connection of the
 * same listener that has not sent its request is closed (if every one has,
 * the oldest being answered).  Idle or slow clients therefore cannot keep
 * out `ntsctl health` (a Docker health check) or a Prometheus scrape. */
static void evict_oldest(ntsntp_uv_ctl *c, int http, conn *keep) {
  conn *k, *waiting = NULL, *any = NULL;
  for (k = c->conns; k; k = k->next) { /* newest first */
    if (k == keep || k->http != http)
      continue;
    any = k;
    if (!k->answered)
      waiting = k;
  }
  if (waiting || any)
    conn_close(waiting ? waiting : any);
}

static void on_connection(uv_stream_t *server, int status) {
  ntsntp_uv_ctl *c = server->data;
  int http = server == (uv_stream_t *)&c->tcp;
  unsigned *count = http ? &c->n_http : &c->n_ctl;
  conn *k;
  if (status < 0)
    return;
  k = calloc(1, sizeof(*k));
  if (!k) {
    if (c->s.log)
      c->s.log(c->s.log_user, NTSNTP_LOG_ERR,
               "Control: out of memory for a connection");
    return;
  }
  k->c = c;
  k->http = http;
  if (http)
    uv_tcp_init(c->loop, &k->h.tcp);
  else
    uv_pipe_init(c->loop, &k->h.pipe, 0);
  uv_timer_init(c->loop, &k->timer);
  k->h.handle.data = k->timer.data = k;
  k->handles = 2;
  c->handles++;
  k->next = c->conns;
  k->pprev = &c->conns;
  if (c->conns)
    c->conns->pprev = &k->next;
  c->conns = k;
  ++*count;
  if (uv_accept(server, &k->h.stream) < 0) {
    conn_close(k);
    return;
  }
  if (*count > c->s.max_clients)
    evict_oldest(c, http, k);
  uv_timer_start(&k->timer, on_timeout, c->s.timeout_ms, 0);
  if (uv_read_start(&k->h.stream, on_alloc, on_read) < 0)
    conn_close(k);
}

/* ------------------------------------------------------------------------ */
/* Listeners                                                                 */
/* ------------------------------------------------------------------------ */

static void listener_closed(uv_handle_t *h) {
  ctl_unref(h->data);
}

/* Unlinks the socket file if it is still the one this server bound. */
static void remove_socket(ntsntp_uv_ctl *c) {
  struct stat st;
  if (c->own_path && lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == c->dev && st.st_ino == c->ino)
    unlink(c->path);
  c->own_path = 0;
}

/* A socket file is in the way: remove it if nothing answers on it. */
static int clear_stale(ntsntp_uv_ctl *c, const struct sockaddr_un *sa,
                       char *errbuf, size_t errlen) {
  struct stat st;
  int fd, rv, err;
  if (lstat(c->path, &st) < 0)
    return 0;
  if (!S_ISSOCK(st.st_mode)) {
    snprintf(errbuf, errlen,
             "control socket path %s exists and is not a "
             "socket; remove it or set CONTROL_SOCKET to another path",
             c->path);
    return NTSNTP_ERR_STATE;
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    goto io;
  rv = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
  err = errno;
  close(fd);
  if (rv == 0) {
    snprintf(errbuf, errlen,
             "another ntsd is already answering on %s; stop "
             "it, or give this one another STATE_DIR or CONTROL_SOCKET",
             c->path);
    return NTSNTP_ERR_STATE;
  }
  if (err == ECONNREFUSED) {
    if (unlink(c->path) == 0 || errno == ENOENT) {
      if (c->s.log)
        c->s.log(c->s.log_user, NTSNTP_LOG_INFO,
                 "Removed stale control socket");
      return 0;
    }
  } else if (err == ENOENT) {
    return 0;
  }
  errno = err;
io:
  snprintf(errbuf, errlen, "cannot check existing control socket %s: %s",
           c->path, strerror(errno));
  return NTSNTP_ERR_IO;
}

static int start_socket(ntsntp_uv_ctl *c, const char *path, char *errbuf,
                        size_t errlen) {
  struct sockaddr_un sa;
  struct stat st;
  const char *step;
  mode_t old_mask;
  int fd, rv;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(errbuf, errlen,
             "control socket path %s is too long (at most "
             "%zu bytes); set CONTROL_SOCKET to a shorter path",
             path, sizeof(sa.sun_path) - 1);
    return NTSNTP_ERR_INVALID_ARG;
  }
  memcpy(c->path, path, strlen(path) + 1);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  rv = clear_stale(c, &sa, errbuf, errlen);
  if (rv)
    return rv;

  step = "socket";
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    goto fail;
  /* The node that bind creates gets its mode there and then, and nothing
   * changes it by path afterwards: the directory may belong to NTSD_USER,
   * who could put a symbolic link in the socket's place for a chmod by
   * root to follow.  Linux gives the node the socket inode's mode (fchmod)
   * less the umask; other systems 0777 less the umask.  umask 0117 during
   * bind makes that exactly 0660 either way.  The umask is per process: a
   * file another thread creates meanwhile gets at most 0660 (ntsd creates
   * none then: its threads only serve sockets). */
  step = "fchmod";
  if (fchmod(fd, 0660) < 0)
    goto fail_fd;
  step = "bind";
  old_mask = umask(0117);
  rv = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
  umask(old_mask);
  if (rv < 0)
    goto fail_fd;
  c->own_path = 1;
  /* Only to recognise the node at stop (remove_socket): lstat follows
   * nothing. */
  step = "stat";
  if (lstat(path, &st) < 0)
    goto fail_fd;
  if (!S_ISSOCK(st.st_mode)) {
    close(fd);
    snprintf(errbuf, errlen,
             "control socket %s was replaced by %s right after it was "
             "created: another user writes to its directory; fix: make the "
             "directory writable by root and NTSD_USER only",
             path, S_ISLNK(st.st_mode) ? "a symbolic link" : "another file");
    return NTSNTP_ERR_STATE;
  }
  c->dev = st.st_dev;
  c->ino = st.st_ino;
  uv_pipe_init(c->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->have_pipe = 1;
  c->handles++;
  step = "listen";
  if ((rv = uv_pipe_open(&c->pipe, fd)) < 0) {
    close(fd);
    errno = -rv;
    goto fail;
  }
  if ((rv = uv_listen((uv_stream_t *)&c->pipe, 8, on_connection)) < 0) {
    errno = -rv;
    goto fail;
  }
  return 0;
fail_fd:
  rv = errno;
  close(fd);
  errno = rv;
fail:
  snprintf(errbuf, errlen,
           "cannot create control socket %s (%s): %s; fix: "
           "make its directory writable, set CONTROL_SOCKET to another path, "
           "or CONTROL_SOCKET=none to go without",
           path, step, strerror(errno));
  return NTSNTP_ERR_IO;
}

/* "a.b.c.d:port" or "[v6]:port", numeric only. */
static int parse_hostport(const char *s, struct sockaddr_storage *ss) {
  char host[64];
  const char *colon, *h = s, *he;
  unsigned long port;
  char *end;
  if (*s == '[') {
    h = s + 1;
    he = strchr(h, ']');
    if (!he || he[1] != ':')
      return -1;
    colon = he + 1;
  } else {
    colon = strchr(s, ':');
    if (!colon || strchr(colon + 1, ':'))
      return -1;
    he = colon;
  }
  if (he == h || (size_t)(he - h) >= sizeof(host) || !colon[1] ||
      colon[1] < '0' || colon[1] > '9')
    return -1;
  memcpy(host, h, (size_t)(he - h));
  host[he - h] = '\0';
  errno = 0;
  port = strtoul(colon + 1, &end, 10);
  if (errno || *end || port > 65535)
    return -1;
  memset(ss, 0, sizeof(*ss));
  if (*s == '[')
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) ? -1 : 0;
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) ? -1 : 0;
}

static int start_metrics(ntsntp_uv_ctl *c, const char *listen, char *errbuf,
                         size_t errlen) {
  struct sockaddr_storage ss;
  int rv, len = sizeof(ss);
  if (parse_hostport(listen, &ss) < 0) {
    snprintf(errbuf, errlen,
             "METRICS_LISTEN \"%s\" is not a numeric "
             "address:port (e.g. 127.0.0.1:9123 or [::1]:9123)",
             listen);
    return NTSNTP_ERR_INVALID_ARG;
  }
  uv_tcp_init(c->loop, &c->tcp);
  c->tcp.data = c;
  c->have_tcp = 1;
  c->handles++;
  rv = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ss, 0);
  if (rv == 0)
    rv = uv_listen((uv_stream_t *)&c->tcp, 16, on_connection);
  if (rv == 0)
    rv = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
  if (rv < 0) {
    snprintf(errbuf, errlen,
             "cannot listen for metrics on %s: %s; fix "
             "METRICS_LISTEN or leave it empty",
             listen, uv_strerror(rv));
    return NTSNTP_ERR_IO;
  }
  c->metrics_port =
      ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

void ntsntp_uv_ctl_settings_default(ntsntp_uv_ctl_settings *s) {
  memset(s, 0, sizeof(*s));
  s->max_clients = DEFAULT_MAX_CLIENTS;
  s->timeout_ms = DEFAULT_TIMEOUT_MS;
}

int ntsntp_uv_ctl_start(uv_loop_t *loop, const ntsntp_uv_ctl_settings *s,
                        ntsntp_uv_ctl **out, char *errbuf, size_t errlen) {
  ntsntp_uv_ctl *c;
  const char *sock, *metrics;
  char dummy[1];
  int rv = 0;
  if (!errbuf) {
    errbuf = dummy;
    errlen = sizeof(dummy);
  }
  if (!loop || !s || !out || !s->provider.stats || !s->provider.tracking) {
    snprintf(errbuf, errlen, "control: missing loop, settings or provider");
    return NTSNTP_ERR_INVALID_ARG;
  }
  sock = s->socket_path;
  metrics = s->metrics_listen;
  c = calloc(1, sizeof(*c));
  if (!c)
    return NTSNTP_ERR_NOMEM;
  c->s = *s;
  c->s.socket_path = c->s.metrics_listen = NULL; /* not kept */
  if (!c->s.max_clients)
    c->s.max_clients = DEFAULT_MAX_CLIENTS;
  if (!c->s.timeout_ms)
    c->s.timeout_ms = DEFAULT_TIMEOUT_MS;
  c->loop = loop;
  if (sock && *sock)
    rv = start_socket(c, sock, errbuf, errlen);
  if (!rv && metrics && *metrics)
    rv = start_metrics(c, metrics, errbuf, errlen);
  if (rv) {
    ntsntp_uv_ctl_stop(c, NULL, NULL);
    return rv;
  }
  *out = c;
  return 0;
}

uint16_t ntsntp_uv_ctl_metrics_port(const ntsntp_uv_ctl *c) {
  return c ? c->metrics_port : 0;
}

void ntsntp_uv_ctl_stop(ntsntp_uv_ctl *c, void (*done)(void *user),
                        void *user) {
  c->stopping = 1;
  c->done = done;
  c->done_user = user;
  remove_socket(c);
  while (c->conns)
    conn_close(c->conns);
  if (c->have_pipe)
    uv_close((uv_handle_t *)&c->pipe, listener_closed);
  if (c->have_tcp)
    uv_close((uv_handle_t *)&c->tcp, listener_closed);
  if (c->handles == 0) {
    free(c);
    if (done)
      done(user);
  }
}
