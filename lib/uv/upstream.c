/* libntsntp runtime: polling upstream servers (plain NTP and NTS). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "ntsntp/uv_client.h"
#include "ntsntp/upstream.h"
#include "sock.h"

#define DRIFT_NAME "ntsd.drift"
#define DRIFT_MAX 256 /* bytes; chrony's "<freq> <skew>\n" is ~20 */
#define DRIFT_SAVE_MS (3600 * 1000)
#define CLOCK_REFRESH_MS 1000
#define KE_BACKOFF_MIN 8
#define KE_BACKOFF_MAX 86400
#define UNREACH_POLLS 8

typedef struct up_source {
  struct ntsntp_uv_upstream *up;
  unsigned idx;
  char host[256];
  char name[NTSNTP_SOURCE_NAME_LEN]; /* host, with the port if not default */
  uint16_t port; /* NTP port (plain) or NTS-KE port (nts) */
  int nts;
  uv_timer_t timer;
  ntsntp_uv_ntp_query *q;
  ntsntp_uv_ke_query *keq;
  /* Where to send NTP: resolved by the query and kept. */
  struct sockaddr_storage addr;
  int have_addr;
  char addr_text[64];
  unsigned missed; /* polls in a row without a sample */
  /* NTS state. */
  int have_keys, aead;
  uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];
  uint8_t cookies[NTSNTP_CLIENT_MAX_COOKIES][NTSNTP_COOKIE_MAX_LEN];
  size_t cookie_len[NTSNTP_CLIENT_MAX_COOKIES];
  unsigned ncookies;
  char ntp_host[256];
  uint16_t ntp_port;
  uint64_t ke_done_ms;   /* loop time of the last NTS-KE */
  uint64_t ke_retry_ms;  /* no NTS-KE before this loop time */
  uint32_t ke_backoff_s; /* next back-off */
  int was_reachable;
} up_source;

struct ntsntp_uv_upstream {
  ntsntp_uv_upstream_settings s;
  uv_loop_t *loop;
  ntsntp_sync *sync;
  up_source src[NTSNTP_SYNC_MAX_SOURCES];
  unsigned n;
  char ca_file[4096], drift[4096];
  uv_timer_t clock_timer, drift_timer;
  int handles, stopping;
  uint32_t last_refid;
  int last_synced;
  ntsntp_uv_upstream_stats stats;
  void (*done)(void *);
  void *done_user;
};

static void ulog(ntsntp_uv_upstream *up, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ulog(ntsntp_uv_upstream *up, int level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  if (!up->s.log)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  up->s.log(up->s.log_user, level, msg);
}

static uint64_t sys_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_from_timespec(&ts);
}

void ntsntp_uv_upstream_settings_default(ntsntp_uv_upstream_settings *s) {
  memset(s, 0, sizeof(*s));
  ntsntp_sync_settings_default(&s->sync);
  s->nts_refresh = 1209600; /* chrony's ntsrefresh: two weeks */
  s->timeout_ms = 1000;
}

/* "[nts://]HOST[:PORT]", HOST an IPv6 literal in brackets if it has ':'. */
static int parse_server(up_source *src, const char *item, char *errbuf,
                        size_t errlen) {
  const char *p = item, *host, *end, *colon;
  size_t hlen;
  unsigned long port = 0;
  if (!strncmp(p, "nts://", 6)) {
    src->nts = 1;
    p += 6;
  } else if (strstr(p, "://")) {
    goto bad;
  }
  if (*p == '[') {
    host = p + 1;
    end = strchr(host, ']');
    if (!end)
      goto bad;
    hlen = (size_t)(end - host);
    colon = end[1] == ':' ? end + 1 : NULL;
    if (end[1] && !colon)
      goto bad;
  } else {
    host = p;
    colon = strchr(p, ':');
    if (colon && strchr(colon + 1, ':'))
      goto bad; /* IPv6 without brackets: ambiguous with a port */
    hlen = colon ? (size_t)(colon - host) : strlen(host);
  }
  if (hlen == 0 || hlen >= sizeof(src->host))
    goto bad;
  if (colon) {
    char *e;
    port = strtoul(colon + 1, &e, 10);
    if (*e || port == 0 || port > 65535)
      goto bad;
  }
  memcpy(src->host, host, hlen);
  src->host[hlen] = 0;
  src->port = port ? (uint16_t)port : src->nts ? NTSNTP_KE_PORT : 123;
  /* The name shown in logs and ntsctl: the host, and the port if given. */
  if (hlen > sizeof(src->name) - 7)
    hlen = sizeof(src->name) - 7;
  memcpy(src->name, host, hlen);
  src->name[hlen] = 0;
  if (port)
    snprintf(src->name + hlen, sizeof(src->name) - hlen, ":%lu", port);
  return 0;
bad:
  snprintf(errbuf, errlen,
           "NTP_SERVERS item \"%s\" is not a server; fix: use HOST, "
           "HOST:PORT, [IPv6]:PORT, or nts://HOST[:NTS-KE-PORT] for NTS",
           item);
  return NTSNTP_ERR_BAD_CONFIG;
}

static void publish(ntsntp_uv_upstream *up) {
  ntsntp_clock_state cs;
  ntsntp_tracking t;
  uint64_t now = sys_now();
  ntsntp_sync_clock_state(up->sync, now, &cs);
  ntsntp_server_set_clock(up->s.server, &cs);
  ntsntp_sync_tracking(up->sync, now, &t);
  if (t.synced && (!up->last_synced || t.refid != up->last_refid)) {
    const char *addr = "";
    unsigned i;
    ntsntp_source_info info;
    for (i = 0; i < up->n; i++)
      if (ntsntp_sync_source_info(up->sync, i, now, &info) == 0 &&
          info.state == NTSNTP_SOURCE_SELECTED)
        addr = up->src[i].addr_text;
    ulog(up, NTSNTP_LOG_INFO, "Selected source %s (%s)", addr, t.ref_name);
  } else if (!t.synced && up->last_synced) {
    ulog(up, NTSNTP_LOG_WARN, "Can't synchronise: no selectable sources");
  }
  up->last_synced = t.synced;
  up->last_refid = t.refid;
}

static void on_clock_timer(uv_timer_t *t) { publish(t->data); }

static void save_drift(ntsntp_uv_upstream *up) {
  char buf[128], err[512];
  ntsntp_ssize n;
  if (!up->drift[0])
    return;
  n = ntsntp_sync_drift_save(up->sync, buf, sizeof(buf));
  if (n <= 0)
    return;
  if (ntsntp__file_write_atomic(up->drift, buf, (size_t)n, "drift file", err,
                                sizeof(err)))
    ulog(up, NTSNTP_LOG_WARN, "%s", err);
}

static void on_drift_timer(uv_timer_t *t) { save_drift(t->data); }

/* STATE_DIR belongs to NTSD_USER and this runs as root at start: a link or
 * FIFO planted at the drift file is not followed and cannot block start-up
 * (ntsntp__file_read).  A drift file that cannot be used is only logged:
 * the clock starts without a prior frequency, and the next save replaces
 * whatever is there. */
static void load_drift(ntsntp_uv_upstream *up) {
#define REMOVE_IT                                                              \
  "not read; fix: remove it (ntsd writes a new one once it has measured "      \
  "the frequency)"
  char buf[DRIFT_MAX];
  struct stat st;
  size_t len;
  int rv = ntsntp__file_read(up->drift, buf, sizeof(buf), &len, &st);
  int e = errno;
  if (rv == NTSNTP_ERR_UNSUPPORTED)
    ulog(up, NTSNTP_LOG_WARN,
         "drift file %s is not a regular file (%s): " REMOVE_IT, up->drift,
         ntsntp__file_type(st.st_mode));
  else if (rv == NTSNTP_ERR_IO && e == ELOOP)
    ulog(up, NTSNTP_LOG_WARN,
         "drift file %s is a symbolic link, which is not followed in "
         "STATE_DIR: " REMOVE_IT,
         up->drift);
  else if (rv == NTSNTP_ERR_TOO_LARGE)
    ulog(up, NTSNTP_LOG_WARN,
         "drift file %s is larger than %d bytes: " REMOVE_IT, up->drift,
         DRIFT_MAX);
  else if (rv == NTSNTP_ERR_IO)
    ulog(up, NTSNTP_LOG_WARN,
         "cannot read drift file %s: %s; fix: make it readable by the user "
         "ntsd runs as, or remove it",
         up->drift, strerror(e));
  else if (rv || ntsntp_sync_drift_load(up->sync, buf, len) != 0)
    ulog(up, NTSNTP_LOG_INFO, /* chrony's words: also on a first start */
         "Could not read valid frequency and skew from driftfile %s",
         up->drift);
#undef REMOVE_IT
}

static void arm(up_source *src);
static void poll_source(up_source *src);

static void forget_keys(up_source *src) {
  ntsntp_secure_clear(src->c2s, sizeof(src->c2s));
  ntsntp_secure_clear(src->s2c, sizeof(src->s2c));
  ntsntp_secure_clear(src->cookies, sizeof(src->cookies));
  src->have_keys = 0;
  src->ncookies = 0;
}

/* A poll that produced no sample: reach decays; after UNREACH_POLLS the
 * name is resolved again (and NTS keys renewed) at the next poll. */
static void missed(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  ntsntp_source_info info;
  ntsntp_sync_on_timeout(up->sync, src->idx, sys_now());
  up->stats.timeouts++;
  if (++src->missed == UNREACH_POLLS) {
    src->have_addr = 0;
    if (src->nts)
      forget_keys(src);
  }
  ntsntp_sync_source_info(up->sync, src->idx, sys_now(), &info);
  if (info.reach == 0 && src->was_reachable) {
    src->was_reachable = 0;
    ulog(up, NTSNTP_LOG_WARN, "Source %s (%s) unreachable",
         src->addr_text[0] ? src->addr_text : src->host, src->name);
  }
}

static void remember_addr(up_source *src, const struct sockaddr *sa) {
  uint32_t refid;
  if (!sa || src->have_addr)
    return;
  memcpy(&src->addr, sa,
         sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in));
  src->have_addr = 1;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    refid = ntsntp_refid_ipv6(s6->sin6_addr.s6_addr);
    inet_ntop(AF_INET6, &s6->sin6_addr, src->addr_text,
              sizeof(src->addr_text));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    refid = ntohl(s4->sin_addr.s_addr);
    inet_ntop(AF_INET, &s4->sin_addr, src->addr_text, sizeof(src->addr_text));
  }
  ntsntp_sync_set_refid(src->up->sync, src->idx, refid);
}

static void on_ntp(void *user, const ntsntp_uv_ntp_outcome *o) {
  up_source *src = user;
  ntsntp_uv_upstream *up = src->up;
  unsigned i, used;
  src->q = NULL;
  if (o->status == 0 || o->status == NTSNTP_ERR_KOD)
    remember_addr(src, o->peer);
  /* Cookies sent are spent, whatever came back. */
  used = o->cookies_used < src->ncookies ? o->cookies_used : src->ncookies;
  if (used) {
    memmove(src->cookies, src->cookies[used],
            (src->ncookies - used) * sizeof(src->cookies[0]));
    memmove(src->cookie_len, src->cookie_len + used,
            (src->ncookies - used) * sizeof(src->cookie_len[0]));
    src->ncookies -= used;
  }
  switch (o->status) {
  case 0:
    for (i = 0; i < o->sample->n_cookies &&
                src->ncookies < NTSNTP_CLIENT_MAX_COOKIES; i++) {
      memcpy(src->cookies[src->ncookies], o->sample->cookies[i],
             o->sample->cookie_len[i]);
      src->cookie_len[src->ncookies++] = o->sample->cookie_len[i];
    }
    src->missed = 0;
    src->was_reachable = 1;
    up->stats.samples++;
    if (ntsntp_sync_on_sample(up->sync, src->idx, o->sample, sys_now()) == 1)
      publish(up);
    break;
  case NTSNTP_ERR_KOD:
    if (ntsntp_sync_on_kod(up->sync, src->idx, o->sample, sys_now()) ==
        NTSNTP_ERR_CLOSED)
      ulog(up, NTSNTP_LOG_WARN, "%s: no longer used", o->errtext);
    break;
  case NTSNTP_ERR_NAK:
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
     *# [on an NTS NAK] the client [...] SHOULD [...] initiate a fresh NTS-KE
     *# handshake */
    up->stats.naks++;
    ulog(up, NTSNTP_LOG_WARN, "NTS NAK from %s: new NTS-KE", src->host);
    forget_keys(src);
    missed(src);
    break;
  default:
    missed(src);
    break;
  }
  arm(src);
}

static void send_query(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  ntsntp_uv_ntp_query_settings qs;
  const uint8_t *cookies[NTSNTP_CLIENT_MAX_COOKIES];
  unsigned i;
  ntsntp_uv_ntp_query_settings_default(&qs);
  qs.host = src->nts ? src->ntp_host : src->host;
  qs.port = src->nts ? src->ntp_port : src->port;
  qs.addr = src->have_addr ? (const struct sockaddr *)&src->addr : NULL;
  qs.timeout_ms = up->s.timeout_ms;
  qs.attempts = 1; /* one request per poll: the sync core counts losses */
  qs.poll = ntsntp_sync_poll(up->sync, src->idx);
  if (src->nts) {
    for (i = 0; i < src->ncookies; i++)
      cookies[i] = src->cookies[i];
    qs.aead = src->aead;
    qs.c2s = src->c2s;
    qs.s2c = src->s2c;
    qs.cookies = cookies;
    qs.cookie_len = src->cookie_len;
    qs.ncookies = src->ncookies;
    /* Ask for enough cookies to fill the jar again. */
    qs.placeholders = NTSNTP_CLIENT_MAX_COOKIES - src->ncookies;
  }
  ntsntp_sync_on_send(up->sync, src->idx, sys_now());
  up->stats.requests++;
  if (ntsntp_uv_ntp_query_start(up->loop, &qs, on_ntp, src, &src->q) < 0) {
    src->q = NULL;
    missed(src);
    arm(src);
  }
}

static void on_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  up_source *src = user;
  ntsntp_uv_upstream *up = src->up;
  const ntsntp_ke_result *r = o->result;
  size_t i;
  src->keq = NULL;
  if (o->status != 0) {
    up->stats.ke_failed++;
    ulog(up, NTSNTP_LOG_WARN, "%s (retry in %u s)", o->errtext,
         src->ke_backoff_s);
    src->ke_retry_ms = uv_now(up->loop) + src->ke_backoff_s * 1000ull;
    src->ke_backoff_s = src->ke_backoff_s * 2 > KE_BACKOFF_MAX
                            ? KE_BACKOFF_MAX
                            : src->ke_backoff_s * 2;
    /* This poll produced nothing. */
    ntsntp_sync_on_send(up->sync, src->idx, sys_now());
    missed(src);
    arm(src);
    return;
  }
  up->stats.ke_ok++;
  src->ke_backoff_s = KE_BACKOFF_MIN;
  src->ke_done_ms = uv_now(up->loop);
  src->aead = r->aead;
  memcpy(src->c2s, r->c2s, r->key_len);
  memcpy(src->s2c, r->s2c, r->key_len);
  src->ncookies = 0;
  for (i = 0; i < r->ncookies && i < NTSNTP_CLIENT_MAX_COOKIES; i++) {
    if (r->cookie_len[i] > NTSNTP_COOKIE_MAX_LEN)
      continue;
    memcpy(src->cookies[src->ncookies], r->cookies[i], r->cookie_len[i]);
    src->cookie_len[src->ncookies++] = r->cookie_len[i];
  }
  snprintf(src->ntp_host, sizeof(src->ntp_host), "%s",
           r->ntp_server[0] ? r->ntp_server : src->host);
  src->ntp_port = r->ntp_port ? r->ntp_port : 123;
  src->have_addr = 0;
  remember_addr(src, o->ntp_addr);
  src->have_keys = src->ncookies > 0;
  if (!src->have_keys) {
    ntsntp_sync_on_send(up->sync, src->idx, sys_now());
    missed(src);
    arm(src);
    return;
  }
  send_query(src);
}

static void start_ke(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ke_query_settings_default(&ks);
  ks.host = src->host;
  ks.port = src->port;
  if (up->ca_file[0])
    ks.ke.ca_file = up->ca_file;
  if (ntsntp_uv_ke_query_start(up->loop, &ks, on_ke, src, &src->keq) < 0) {
    src->keq = NULL;
    ntsntp_sync_on_send(up->sync, src->idx, sys_now());
    missed(src);
    arm(src);
  }
}

static void poll_source(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  uint64_t now_ms = uv_now(up->loop);
  if (src->q || src->keq)
    return; /* still busy with the previous poll */
  if (src->nts &&
      (!src->have_keys || src->ncookies == 0 ||
       now_ms - src->ke_done_ms >= up->s.nts_refresh * 1000ull)) {
    if (now_ms < src->ke_retry_ms) {
      /* Backing off: this poll is lost. */
      ntsntp_sync_on_send(up->sync, src->idx, sys_now());
      missed(src);
      arm(src);
      return;
    }
    forget_keys(src);
    start_ke(src);
    return;
  }
  send_query(src);
}

static void on_timer(uv_timer_t *t) { poll_source(t->data); }

/* Schedules the next poll when the sync core wants it. */
static void arm(up_source *src) {
  uint64_t next = ntsntp_sync_next_poll(src->up->sync, src->idx);
  double in;
  if (src->up->stopping || next == UINT64_MAX)
    return;
  in = ntsntp_ts_diff(next, sys_now());
  uv_timer_start(&src->timer, on_timer, in > 0 ? (uint64_t)(in * 1000) : 0,
                 0);
}

const ntsntp_sync *ntsntp_uv_upstream_sync(const ntsntp_uv_upstream *up) {
  return up->sync;
}

void ntsntp_uv_upstream_get_stats(const ntsntp_uv_upstream *up,
                                  ntsntp_uv_upstream_stats *st) {
  *st = up->stats;
}

static void up_closed(ntsntp_uv_upstream *up) {
  if (--up->handles == 0) {
    void (*done)(void *) = up->done;
    void *user = up->done_user;
    unsigned i;
    for (i = 0; i < up->n; i++)
      forget_keys(&up->src[i]);
    ntsntp_sync_del(up->sync);
    free(up);
    if (done)
      done(user);
  }
}

static void timer_closed(uv_handle_t *h) { up_closed(h->data); }

static void src_timer_closed(uv_handle_t *h) {
  up_closed(((up_source *)h->data)->up);
}

static void close_all(ntsntp_uv_upstream *up) {
  unsigned i;
  up->stopping = 1;
  for (i = 0; i < up->n; i++) {
    if (up->src[i].q)
      ntsntp_uv_ntp_query_cancel(up->src[i].q);
    if (up->src[i].keq)
      ntsntp_uv_ke_query_cancel(up->src[i].keq);
    uv_close((uv_handle_t *)&up->src[i].timer, src_timer_closed);
  }
  uv_close((uv_handle_t *)&up->clock_timer, timer_closed);
  uv_close((uv_handle_t *)&up->drift_timer, timer_closed);
}

int ntsntp_uv_upstream_start(uv_loop_t *loop,
                             const ntsntp_uv_upstream_settings *s,
                             ntsntp_uv_upstream **out, char *errbuf,
                             size_t errlen) {
  ntsntp_uv_upstream *up;
  uint64_t now = sys_now();
  unsigned i;
  int rv;
  if (!loop || !s || !out || !s->server || s->n_servers == 0)
    return NTSNTP_ERR_INVALID_ARG;
  if (s->n_servers > NTSNTP_SYNC_MAX_SOURCES) {
    snprintf(errbuf, errlen, "NTP_SERVERS has %zu servers; at most %d",
             s->n_servers, NTSNTP_SYNC_MAX_SOURCES);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  up = calloc(1, sizeof(*up));
  if (!up)
    return NTSNTP_ERR_NOMEM;
  up->s = *s;
  up->loop = loop;
  if (s->ca_file)
    snprintf(up->ca_file, sizeof(up->ca_file), "%s", s->ca_file);
  if (s->state_dir && *s->state_dir)
    snprintf(up->drift, sizeof(up->drift), "%s/%s", s->state_dir,
             DRIFT_NAME);
  up->s.ca_file = NULL;
  up->s.state_dir = NULL;
  up->s.servers = NULL;
  for (i = 0; i < s->n_servers; i++) {
    rv = parse_server(&up->src[i], s->servers[i], errbuf, errlen);
    if (rv) {
      free(up);
      return rv;
    }
  }
  rv = ntsntp_sync_new(&up->sync, &s->sync, NULL);
  if (rv) {
    free(up);
    snprintf(errbuf, errlen, "invalid synchronisation settings: %s",
             ntsntp_strerror(rv));
    return rv;
  }
  if (up->drift[0])
    load_drift(up);
  up->n = (unsigned)s->n_servers;
  uv_timer_init(loop, &up->clock_timer);
  uv_timer_init(loop, &up->drift_timer);
  up->clock_timer.data = up->drift_timer.data = up;
  up->handles = 2 + (int)up->n;
  for (i = 0; i < up->n; i++) {
    up_source *src = &up->src[i];
    src->up = up;
    src->idx = (unsigned)ntsntp_sync_add_source(up->sync, src->name, 0, now);
    src->ke_backoff_s = KE_BACKOFF_MIN;
    uv_timer_init(loop, &src->timer);
    src->timer.data = src;
    arm(src);
  }
  publish(up);
  uv_timer_start(&up->clock_timer, on_clock_timer, CLOCK_REFRESH_MS,
                 CLOCK_REFRESH_MS);
  uv_timer_start(&up->drift_timer, on_drift_timer, DRIFT_SAVE_MS,
                 DRIFT_SAVE_MS);
  *out = up;
  return 0;
}

void ntsntp_uv_upstream_stop(ntsntp_uv_upstream *up, void (*done)(void *user),
                             void *user) {
  up->done = done;
  up->done_user = user;
  save_drift(up);
  close_all(up);
}
