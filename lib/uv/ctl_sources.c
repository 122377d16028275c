/* libntsntp runtime: the per-source reports chronyc has beyond `sources`:
 * selectdata, authdata (chronyc -N authdata), ntpdata and activity, in
 * chronyc's layout or JSON. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ntsntp/control.h"
#include "ntsntp/ts.h"

#include "ctl.h"
#include "../mem.h"

/* chronyc's one-letter leap column. */
static char leap_char(uint8_t leap) {
  switch (leap) {
  case NTSNTP_LEAP_NONE:
    return 'N';
  case NTSNTP_LEAP_INSERT:
    return '+';
  case NTSNTP_LEAP_DELETE:
    return '-';
  default:
    return '?';
  }
}

static char printable(char ch) {
  return ch > 0x20 && ch < 0x7f ? ch : '?';
}

/* Sources with their upstream details; NULL on NOMEM. */
static ntsntp_ctl_source *sources(ntsntp_uv_ctl *c, size_t *n) {
  ntsntp_ctl_source *src = ntsntp__calloc(NTSNTP_CTL_MAX_SOURCES, sizeof(*src));
  size_t i;
  if (!src)
    return NULL;
  *n = ntsntp__ctl_get_sources(c, src);
  for (i = 0; i < *n; i++) {
    src[i].name[sizeof(src[i].name) - 1] = '\0';
    src[i].detail.name[sizeof(src[i].detail.name) - 1] = '\0';
    src[i].detail.addr[sizeof(src[i].detail.addr) - 1] = '\0';
  }
  return src;
}

/* chronyc shows 25 columns (27 in authdata), the last one '>' if cut. */
static void cut_name(char *out, size_t outlen, const char *name, size_t w) {
  snprintf(out, outlen, "%s", name);
  if (strlen(out) > w) {
    out[w - 1] = '>';
    out[w] = '\0';
  }
}

/* ---- selectdata ---- */

int ntsntp__ctl_report_selectdata(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  size_t i, n;
  char name[64];
  ntsntp_ctl_source *src = sources(c, &n);
  if (!src)
    return NTSNTP_ERR_NOMEM;
  if (json)
    ntsntp__sb_printf(b, "{\"selectdata\":[");
  else
    ntsntp__sb_header(b, "S Name/IP Address        Auth COpts EOpts Last "
                         "Score     Interval  Leap");
  for (i = 0; i < n; i++) {
    const ntsntp_ctl_source *s = &src[i];
    int auth = s->have_detail && s->detail.nts;
    double lo = s->offset - s->error, hi = s->offset + s->error;
    if (json) {
      ntsntp__sb_printf(b, "%s{\"name\":", i ? "," : "");
      ntsntp__sb_json_str(b, s->name);
      ntsntp__sb_printf(
          b,
          ",\"state\":\"%c\",\"authentication\":%s,"
          "\"conf_options\":\"-----\",\"eff_options\":\"-----\","
          "\"last_sample_ago\":%" PRId64 ",\"score\":null,\"lo_limit\":",
          printable(s->select_state), auth ? "true" : "false", s->last_rx);
      ntsntp__sb_json_num(b, lo, 9);
      ntsntp__sb_printf(b, ",\"hi_limit\":");
      ntsntp__sb_json_num(b, hi, 9);
      ntsntp__sb_printf(b, ",\"leap\":\"%c\"}", leap_char(s->leap));
      continue;
    }
    /* No selection options exist (-----) and no reselection score (-). */
    cut_name(name, sizeof(name), s->name, 25);
    ntsntp__sb_printf(b, "%c %-25s %c ----- ----- ", printable(s->select_state),
                      name, auth ? 'Y' : 'N');
    ntsntp__sb_interval(b, s->last_rx);
    ntsntp__sb_printf(b, "     - ");
    ntsntp__sb_seconds(b, lo, 1);
    ntsntp__sb_printf(b, " ");
    ntsntp__sb_seconds(b, hi, 1);
    ntsntp__sb_printf(b, "  %c\n", leap_char(s->leap));
  }
  if (json)
    ntsntp__sb_printf(b, "]}\n");
  ntsntp__mfree(src);
  return 0;
}

/* ---- authdata ---- */

int ntsntp__ctl_report_authdata(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  size_t i, n;
  char name[64];
  ntsntp_ctl_source *src = sources(c, &n);
  if (!src)
    return NTSNTP_ERR_NOMEM;
  if (json)
    ntsntp__sb_printf(b, "{\"authdata\":[");
  else
    ntsntp__sb_header(b, "Name/IP address             Mode KeyID Type KLen "
                         "Last Atmp  NAK Cook CLen");
  for (i = 0; i < n; i++) {
    const ntsntp_uv_upstream_source *d = &src[i].detail;
    int nts = src[i].have_detail && d->nts;
    if (json) {
      ntsntp__sb_printf(b, "%s{\"name\":", i ? "," : "");
      ntsntp__sb_json_str(b, src[i].name);
      ntsntp__sb_printf(
          b,
          ",\"mode\":\"%s\",\"key_id\":%" PRIu64 ",\"key_type\":%d,"
          "\"key_length\":%u,\"last_ke_ago\":%" PRId64
          ",\"ke_attempts\":%" PRIu64 ",\"nak\":%" PRIu64
          ",\"cookies\":%u,\"cookie_length\":%zu}",
          nts ? "NTS" : "-", nts ? d->key_id : 0, nts ? d->aead : 0,
          nts ? d->key_len * 8 : 0, nts ? d->ke_ago : -1, nts ? d->ke_tries : 0,
          nts ? d->naks : 0, nts ? d->cookies : 0, nts ? d->cookie_len : 0);
      continue;
    }
    cut_name(name, sizeof(name), src[i].name, 27);
    /* chronyc: "%-27s %4s %5U %4d %4d %I %4d %4d %4d %4d"; KLen in bits. */
    ntsntp__sb_printf(b, "%-27s %4s %5" PRIu64 " %4d %4u ", name,
                      nts ? "NTS" : "-", nts ? d->key_id : 0, nts ? d->aead : 0,
                      nts ? d->key_len * 8 : 0);
    ntsntp__sb_interval(b, nts ? d->ke_ago : -1);
    ntsntp__sb_printf(b, " %4" PRIu64 " %4" PRIu64 " %4u %4zu\n",
                      nts ? d->ke_tries : 0, nts ? d->naks : 0,
                      nts ? d->cookies : 0, nts ? d->cookie_len : 0);
  }
  if (json)
    ntsntp__sb_printf(b, "]}\n");
  ntsntp__mfree(src);
  return 0;
}

/* ---- ntpdata ---- */

static const char *mode_name(uint8_t mode) {
  static const char *const names[] = {
      "Reserved", "Symmetric active", "Symmetric passive", "Client",
      "Server",   "Broadcast",        "Control",           "Private"};
  return names[mode & 7];
}

static const char *ts_name(ntsntp_ts_source s) {
  return s == NTSNTP_TS_HW       ? "Hardware"
         : s == NTSNTP_TS_KERNEL ? "Kernel"
                                 : "Daemon";
}

/* The remote's reference ID as chronyc prints it: the name for stratum
 * 0-1 (printable bytes), else nothing. */
static void refid_text(const ntsntp_pkt_hdr *h, char *out) {
  size_t i, k = 0;
  out[0] = '\0';
  if (h->stratum > 1)
    return;
  for (i = 0; i < 4; i++) {
    unsigned ch = h->refid >> (24 - 8 * i) & 0xff;
    if (ch > 0x20 && ch < 0x7f)
      out[k++] = (char)ch;
  }
  out[k] = '\0';
}

static void ref_time_text(uint64_t ref_ts, char *out, size_t len) {
  struct timespec ts;
  struct tm tm;
  time_t sec;
  snprintf(out, len, "-");
  if (!ref_ts)
    return;
  ntsntp_ts_to_timespec(ref_ts, NTSNTP_TS_DEFAULT_PIVOT, &ts);
  sec = ts.tv_sec;
  if (gmtime_r(&sec, &tm))
    strftime(out, len, "%a %b %d %H:%M:%S %Y", &tm);
}

static void ntpdata_json(ntsntp__sbuf *b, const ntsntp_ctl_source *s) {
  const ntsntp_uv_upstream_source *d = &s->detail;
  const ntsntp_pkt_hdr *h = &d->hdr;
  char rname[8], when[64];
  refid_text(h, rname);
  ref_time_text(h->ref_ts, when, sizeof(when));
  ntsntp__sb_printf(b, "{\"name\":");
  ntsntp__sb_json_str(b, s->name);
  ntsntp__sb_printf(b, ",\"remote_address\":");
  ntsntp__sb_json_str(b, d->addr);
  ntsntp__sb_printf(b,
                    ",\"remote_refid\":\"%08" PRIX32 "\",\"remote_port\":%u,"
                    "\"have_response\":%s",
                    s->refid, d->port, d->have_sample ? "true" : "false");
  if (d->have_sample) {
    ntsntp__sb_printf(b,
                      ",\"leap_status\":\"%s\",\"version\":%u,\"mode\":\"%s\","
                      "\"stratum\":%u,\"poll\":%d,\"precision\":%d,"
                      "\"root_delay\":",
                      ntsntp__leap_name(h->leap), h->version,
                      mode_name(h->mode), h->stratum, h->poll, h->precision);
    ntsntp__sb_json_num(b, ntsntp_short_to_double(h->root_delay), 9);
    ntsntp__sb_printf(b, ",\"root_dispersion\":");
    ntsntp__sb_json_num(b, ntsntp_short_to_double(h->root_disp), 9);
    ntsntp__sb_printf(
        b, ",\"reference_id\":\"%08" PRIX32 "\",\"reference_name\":", h->refid);
    ntsntp__sb_json_str(b, rname);
    ntsntp__sb_printf(b, ",\"reference_time\":");
    ntsntp__sb_json_str(b, when);
    ntsntp__sb_printf(b, ",\"offset\":");
    ntsntp__sb_json_num(b, -d->offset, 9);
    ntsntp__sb_printf(b, ",\"peer_delay\":");
    ntsntp__sb_json_num(b, d->delay, 9);
    ntsntp__sb_printf(b, ",\"peer_dispersion\":");
    ntsntp__sb_json_num(b, s->disp, 9);
    ntsntp__sb_printf(b, ",\"response_time\":");
    ntsntp__sb_json_num(b, d->response_time, 9);
    ntsntp__sb_printf(
        b,
        ",\"interleaved\":%s,\"authenticated\":%s,"
        "\"tx_timestamping\":\"%s\",\"rx_timestamping\":\"%s\","
        "\"last_rx_ago\":%" PRId64,
        d->interleaved ? "true" : "false", d->authenticated ? "true" : "false",
        ts_name(d->tx_source), ts_name(d->rx_source), d->last_rx_ago);
  }
  ntsntp__sb_printf(b,
                    ",\"total_tx\":%" PRIu64 ",\"total_rx\":%" PRIu64
                    ",\"total_valid_rx\":%" PRIu64
                    ",\"total_kernel_rx\":%" PRIu64 "}",
                    d->tx, d->rx, d->valid_rx, d->kernel_rx);
}

static void ntpdata_text(ntsntp__sbuf *b, const ntsntp_ctl_source *s) {
  const ntsntp_uv_upstream_source *d = &s->detail;
  const ntsntp_pkt_hdr *h = &d->hdr;
  char rname[8], when[64];
  refid_text(h, rname);
  ref_time_text(h->ref_ts, when, sizeof(when));
  ntsntp__sb_printf(b,
                    "Remote address  : %s (%08" PRIX32 ")\n"
                    "Remote port     : %u\n",
                    d->addr[0] ? d->addr : s->name, s->refid, d->port);
  if (d->have_sample)
    ntsntp__sb_printf(
        b,
        "Leap status     : %s\n"
        "Version         : %u\n"
        "Mode            : %s\n"
        "Stratum         : %u\n"
        "Poll interval   : %d (%.0f seconds)\n"
        "Precision       : %d (%.9f seconds)\n"
        "Root delay      : %.6f seconds\n"
        "Root dispersion : %.6f seconds\n"
        "Reference ID    : %08" PRIX32 " (%s)\n"
        "Reference time  : %s\n"
        "Offset          : %+.9f seconds\n"
        "Peer delay      : %.9f seconds\n"
        "Peer dispersion : %.9f seconds\n"
        "Response time   : %.9f seconds\n"
        "Interleaved     : %s\n"
        "Authenticated   : %s\n"
        "TX timestamping : %s\n"
        "RX timestamping : %s\n",
        ntsntp__leap_name(h->leap), h->version, mode_name(h->mode), h->stratum,
        h->poll, ldexp(1, h->poll), h->precision, ldexp(1, h->precision),
        ntsntp_short_to_double(h->root_delay),
        ntsntp_short_to_double(h->root_disp), h->refid, rname, when, -d->offset,
        d->delay, s->disp, d->response_time, d->interleaved ? "Yes" : "No",
        d->authenticated ? "Yes" : "No", ts_name(d->tx_source),
        ts_name(d->rx_source));
  ntsntp__sb_printf(b,
                    "Total TX        : %" PRIu64 "\n"
                    "Total RX        : %" PRIu64 "\n"
                    "Total valid RX  : %" PRIu64 "\n"
                    "Total kernel RX : %" PRIu64 "\n",
                    d->tx, d->rx, d->valid_rx, d->kernel_rx);
}

int ntsntp__ctl_report_ntpdata(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  size_t i, n, k = 0;
  ntsntp_ctl_source *src = sources(c, &n);
  if (!src)
    return NTSNTP_ERR_NOMEM;
  if (json)
    ntsntp__sb_printf(b, "{\"ntpdata\":[");
  for (i = 0; i < n; i++) {
    if (!src[i].have_detail)
      continue; /* not an NTP source */
    if (json) {
      ntsntp__sb_printf(b, "%s", k ? "," : "");
      ntpdata_json(b, &src[i]);
    } else {
      ntsntp__sb_printf(b, "%s", k ? "\n" : "");
      ntpdata_text(b, &src[i]);
    }
    k++;
  }
  if (json)
    ntsntp__sb_printf(b, "]}\n");
  ntsntp__mfree(src);
  return 0;
}

/* ---- activity ---- */

int ntsntp__ctl_report_activity(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json) {
  size_t i, n;
  unsigned online = 0, unknown = 0;
  ntsntp_ctl_source *src = sources(c, &n);
  if (!src)
    return NTSNTP_ERR_NOMEM;
  /* ntsd has no offline mode and no bursts: a source is online once its
   * address is known. */
  for (i = 0; i < n; i++) {
    if (src[i].have_detail && !src[i].detail.addr[0])
      unknown++;
    else
      online++;
  }
  ntsntp__mfree(src);
  if (json)
    ntsntp__sb_printf(b,
                      "{\"online\":%u,\"offline\":0,\"burst_online\":0,"
                      "\"burst_offline\":0,\"unresolved\":%u}\n",
                      online, unknown);
  else
    ntsntp__sb_printf(b,
                      "200 OK\n"
                      "%u sources online\n"
                      "0 sources offline\n"
                      "0 sources doing burst (return to online)\n"
                      "0 sources doing burst (return to offline)\n"
                      "%u sources with unknown address\n",
                      online, unknown);
  return 0;
}
