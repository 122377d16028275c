/* libntsntp runtime: polling upstream servers (plain NTP and NTS), pools. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "ntsntp/leap.h"
#include "ntsntp/nts_client.h"
#include "ntsntp/uv_client.h"
#include "ntsntp/upstream.h"
#include "query.h"
#include "sock.h"
#include "../settings.h"
#include "../mem.h"

#define DRIFT_NAME "ntsd.drift"
#define DRIFT_MAX 256 /* bytes; chrony's "<freq> <skew>\n" is ~20 */
#define DRIFT_SAVE_MS (3600 * 1000)
#define CLOCK_REFRESH_MS 1000
#define KE_BACKOFF_MIN_MS 8000u     /* after a failed NTS-KE, doubling */
#define KE_BACKOFF_MAX_MS 86400000u /* up to a day */
#define UNREACH_POLLS 8 /* polls without a sample: next address */
#define FALSE_POLLS 4   /* polls as a falseticker: a pool member goes */
#define MAX_ENTRIES 16  /* NTP_SERVERS items */
#define MAX_ADDRS 16    /* addresses kept per name */
#define LEAP_LIST_MAX 65536
#define LOCAL_ITEM "127.127.1.1"

enum { ENTRY_SERVER, ENTRY_POOL, ENTRY_LOCAL };

/* One NTP_SERVERS item.  A server has one source (member), a pool up to
 * maxsources, the local clock none. */
typedef struct up_entry {
  struct ntsntp_uv_upstream *up;
  int used, kind, nts;
  int xleave; /* "?xleave": interleaved mode */
  char item[256]; /* as written: what a reload compares */
  char host[256];
  char name[NTSNTP_SOURCE_NAME_LEN]; /* host, with the port if not default */
  uint16_t port; /* NTP port (plain) or NTS-KE port (nts) */
  /* The name's addresses (port set), for plain servers and pools. */
  struct sockaddr_storage addrs[MAX_ADDRS];
  int bad[MAX_ADDRS]; /* dropped from the pool until the next resolution */
  unsigned naddrs, cursor;
  int resolving, want_resolve, resolved_once;
  uint64_t resolve_after_ms; /* loop time: no resolution before */
  uint32_t resolve_backoff_ms;
  uv_getaddrinfo_t gai;
} up_entry;

typedef struct up_source {
  struct ntsntp_uv_upstream *up;
  int used;        /* slot holds a server source (not a reference clock) */
  unsigned idx;    /* = its index in the sync core and in up->src */
  unsigned entry;  /* its NTP_SERVERS item */
  int fixed;       /* address given by the entry (plain server, pool) */
  struct sockaddr_storage eaddr; /* that address (pool: KE address) */
  int replace;     /* to be replaced at the end of this event */
  unsigned falsetick; /* polls in a row as a falseticker */
  char host[256]; /* NTS-KE host (nts), or where to send (plain) */
  char name[NTSNTP_SOURCE_NAME_LEN]; /* host, with the port if not default */
  uint16_t port; /* NTP port (plain) or NTS-KE port (nts) */
  int nts;
  int xleave;             /* interleaved mode asked for */
  ntsntp_client_xleave xl; /* the last answered exchange */
  ntsntp_uv_ntp_query *q;
  ntsntp_uv_ke_query *keq;
  /* Where to send NTP: from the entry, or resolved by the query and kept. */
  struct sockaddr_storage addr;
  int have_addr;
  char addr_text[64];
  unsigned missed; /* polls in a row without a sample */
  /* nts: keys, cookie jar, refresh, back-off and their counters, on loop
   * time; the uv queries are its transports. */
  ntsntp_nts_client *ntsc;
  int was_reachable;
  /* monitoring: ntsctl authdata and ntpdata (ntsntp_uv_upstream_source) */
  struct {
    uint64_t tx, rx, valid_rx, kernel_rx;
    int have_sample;
    ntsntp_client_sample last; /* cookies not kept */
    ntsntp_ts_source rx_source;
    ntsntp_ts_source tx_source; /* how the request was stamped */
    int interleaved;
    uint64_t last_rx_ms; /* loop time */
  } mon;
} up_source;

struct ntsntp_uv_upstream {
  ntsntp_uv_upstream_settings s;
  uv_loop_t *loop;
  ntsntp_sync *sync;
  up_source src[NTSNTP_SYNC_MAX_SOURCES]; /* by sync core index */
  uv_timer_t timer[NTSNTP_SYNC_MAX_SOURCES]; /* one per slot, kept */
  unsigned n; /* slots in use: the sync core's count */
  up_entry ent[MAX_ENTRIES];
  up_entry tmp[MAX_ENTRIES]; /* a new list being checked */
  int local; /* 127.127.1.1 in the list */
  char ca_file[4096], drift[4096], leapseclist[4096];
  uv_timer_t clock_timer, drift_timer;
  int handles, pending, stopping;
  int queries; /* started and not yet freed (query.h) */
  uint32_t last_refid;
  int last_synced, last_holdover, last_local, last_leap, leap_expired_said;
  int single_said;
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

static void uv_upstream_fill(void *p) {
  ntsntp_uv_upstream_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  ntsntp_sync_settings_default(&s->sync);
  s->nts_refresh = 1209600; /* chrony's ntsrefresh: two weeks */
  s->timeout_ms = 1000;
  s->maxsources = 4; /* chrony's pool maxsources */
  s->local_stratum = 10;
}
NTSNTP__SETTINGS(ntsntp_uv_upstream_settings, uv_upstream, n_refclocks)

/* "[nts://|pool://|pool+nts://]HOST[:PORT]", HOST an IPv6 literal in
 * brackets if it has ':'; or "127.127.1.1", the local clock. */
static int parse_item(up_entry *e, const char *item, char *errbuf,
                      size_t errlen) {
  const char *p = item, *host, *end, *colon, *opt;
  char base[256];
  size_t hlen;
  unsigned long port = 0;
  memset(e, 0, sizeof(*e));
  if (strlen(item) >= sizeof(e->item))
    goto bad;
  snprintf(e->item, sizeof(e->item), "%s", item);
  /* "ITEM?xleave": interleaved mode (RFC 9769, chrony's xleave). */
  if ((opt = strchr(item, '?')) != NULL) {
    if (strcmp(opt, "?xleave") != 0 || opt == item)
      goto bad;
    e->xleave = 1;
    snprintf(base, sizeof(base), "%.*s", (int)(opt - item), item);
    p = base;
  }
  if (!strcmp(p, LOCAL_ITEM)) {
    if (e->xleave)
      goto bad;
    e->kind = ENTRY_LOCAL;
    snprintf(e->name, sizeof(e->name), "LOCAL");
    return 0;
  }
  if (!strncmp(p, "nts://", 6)) {
    e->nts = 1;
    p += 6;
  } else if (!strncmp(p, "pool://", 7)) {
    e->kind = ENTRY_POOL;
    p += 7;
  } else if (!strncmp(p, "pool+nts://", 11)) {
    e->kind = ENTRY_POOL;
    e->nts = 1;
    p += 11;
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
  if (hlen == 0 || hlen >= sizeof(e->host))
    goto bad;
  if (colon) {
    char *x;
    port = strtoul(colon + 1, &x, 10);
    if (*x || port == 0 || port > 65535)
      goto bad;
  }
  memcpy(e->host, host, hlen);
  e->host[hlen] = 0;
  e->port = port ? (uint16_t)port : e->nts ? NTSNTP_KE_PORT : 123;
  /* The name shown in logs and ntsctl: the host, and the port if given. */
  if (hlen > sizeof(e->name) - 7)
    hlen = sizeof(e->name) - 7;
  memcpy(e->name, host, hlen);
  e->name[hlen] = 0;
  if (port)
    snprintf(e->name + hlen, sizeof(e->name) - hlen, ":%lu", port);
  return 0;
bad:
  ntsntp__errf(
      errbuf, errlen,
      "NTP_SERVERS item \"%.200s\" is not a server; fix: use HOST, "
      "HOST:PORT, [IPv6]:PORT, nts://HOST[:NTS-KE-PORT] for NTS, "
      "pool://NAME[:PORT] or pool+nts://NAME[:NTS-KE-PORT] for a pool, "
      "each with ?xleave for interleaved mode, "
      "or 127.127.1.1 for the local clock",
      item);
  return NTSNTP_ERR_BAD_CONFIG;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t len,
                      uint32_t *refid) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    *refid = ntsntp_refid_ipv6(s6->sin6_addr.s6_addr);
    inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)len);
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    *refid = ntohl(s4->sin_addr.s_addr);
    inet_ntop(AF_INET, &s4->sin_addr, out, (socklen_t)len);
  }
}

static size_t sa_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static int same_addr(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  return a->ss_family == b->ss_family &&
         !memcmp(a, b, sa_len((const struct sockaddr *)a));
}

/* "2016-12-31" for logs. */
static void ntp_date(uint64_t ntp_sec, char *out, size_t len) {
  time_t t = (time_t)((int64_t)ntp_sec - (int64_t)NTSNTP_UNIX_OFFSET);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, len, "%Y-%m-%d", &tm);
}

/* Reads the leap-second list (links followed: /usr/share/zoneinfo may
 * hold one) and hands it to the sync core; on any error the core keeps
 * what it had. */
static void load_leap_list(ntsntp_uv_upstream *up) {
  char *buf;
  ntsntp_leap_list l;
  char err[256], date[32];
  struct stat st;
  ssize_t n = -1;
  size_t len = 0;
  int fd, rv, rerr;
  if (!up->leapseclist[0])
    return;
  fd = open(up->leapseclist, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    ulog(up, NTSNTP_LOG_WARN,
         "LEAPSECLIST %s not read: %s; leap seconds come from the sources' "
         "leap bits only; fix: install tzdata or point LEAPSECLIST at an "
         "IERS leap-seconds.list",
         up->leapseclist, fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0)
      close(fd);
    return;
  }
  buf = ntsntp__malloc(LEAP_LIST_MAX + 1);
  while (buf && len <= LEAP_LIST_MAX &&
         (n = read(fd, buf + len, LEAP_LIST_MAX + 1 - len)) > 0)
    len += (size_t)n;
  rerr = errno;
  close(fd);
  if (!buf) {
    ulog(up, NTSNTP_LOG_WARN, "LEAPSECLIST %s not read: out of memory",
         up->leapseclist);
    return;
  }
  rv = n < 0 ? NTSNTP_ERR_IO
               : ntsntp_leap_list_parse(buf, len, &l, err, sizeof(err));
  ntsntp__mfree(buf);
  if (rv) {
    ulog(up, NTSNTP_LOG_WARN,
         "LEAPSECLIST %s not used: %s; fix: install a current list "
         "(tzdata) or set LEAPSECLIST=none",
         up->leapseclist, rv == NTSNTP_ERR_IO ? strerror(rerr) : err);
    return;
  }
  ntsntp_sync_set_leap_list(up->sync, &l);
  ntp_date(l.expires, date, sizeof(date));
  if (ntsntp_leap_list_expired(&l, sys_now() >> 32)) {
    ulog(up, NTSNTP_LOG_WARN,
         "Leap second list %s expired on %s: only the sources' leap bits "
         "count; fix: update tzdata",
         up->leapseclist, date);
    up->leap_expired_said = 1;
  } else {
    ulog(up, NTSNTP_LOG_INFO, "Loaded leap second list %s (TAI-UTC %d s, "
         "expires %s)", up->leapseclist,
         ntsntp_leap_list_tai_offset(&l, sys_now() >> 32), date);
    up->leap_expired_said = 0;
  }
}

static void publish(ntsntp_uv_upstream *up) {
  ntsntp_clock_state cs;
  ntsntp_tracking t;
  uint64_t now = sys_now();
  int leap = ntsntp_sync_leap_update(up->sync, now), local;
  ntsntp_sync_clock_state(up->sync, now, &cs);
  ntsntp_sync_tracking(up->sync, now, &t);
  /* chrony's `local`: the local clock while no source is selectable. */
  local = up->local && (!t.synced || t.holdover);
  if (local)
    ntsntp_clock_state_local(&cs, up->s.local_stratum,
                             ntsntp_sync_serve(up->sync, now));
  ntsntp_server_set_clock(up->s.server, &cs);
  if (t.synced && !t.holdover &&
      (!up->last_synced || up->last_holdover || t.refid != up->last_refid)) {
    const char *addr = t.ref_name;
    unsigned i;
    ntsntp_source_info info;
    for (i = 0; i < up->n; i++)
      if (up->src[i].used &&
          ntsntp_sync_source_info(up->sync, i, now, &info) == 0 &&
          info.state == NTSNTP_SOURCE_SELECTED)
        addr = up->src[i].addr_text[0] ? up->src[i].addr_text : info.name;
    ulog(up, NTSNTP_LOG_INFO, "Selected source %s (%s)", addr, t.ref_name);
  } else if (t.holdover && !up->last_holdover) {
    ulog(up, NTSNTP_LOG_WARN,
         "No selectable sources: holdover, serving as synchronised for up to "
         "%.0f s more (HOLDOVER)", t.holdover_left);
  } else if (!t.synced && up->last_synced) {
    ulog(up, NTSNTP_LOG_WARN, "Can't synchronise: no selectable sources");
  }
  if (local != up->last_local)
    ulog(up, NTSNTP_LOG_INFO, local ? "Serving the local clock (stratum %u, "
         "reference ID 7F7F0101) until a source is selectable"
         : "Local clock no longer served (stratum %u)",
         (unsigned)up->s.local_stratum);
  if (leap && !up->last_leap) {
    char date[32];
    ntp_date(t.leap_at - 1, date, sizeof(date));
    ulog(up, NTSNTP_LOG_INFO, "Leap second %s at the end of %s UTC "
         "(LEAPSECMODE=%s%s)", leap > 0 ? "inserted" : "deleted", date,
         ntsntp_leap_mode_name(up->s.sync.leap_mode),
         up->s.sync.leap_smear ? ", smeared" : "");
  } else if (!leap && up->last_leap) {
    ulog(up, NTSNTP_LOG_INFO, "Leap second over");
  }
  if (t.leap_list == 2 && !up->leap_expired_said) {
    char date[32];
    ntp_date(t.leap_list_expires, date, sizeof(date));
    ulog(up, NTSNTP_LOG_WARN,
         "Leap second list %s expired on %s: only the sources' leap bits "
         "count; fix: update tzdata", up->leapseclist, date);
    up->leap_expired_said = 1;
  }
  up->last_leap = leap;
  up->last_local = local;
  up->last_synced = t.synced;
  up->last_holdover = t.holdover;
  up->last_refid = t.refid;
}

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
static void entry_fill(up_entry *e);

static void take_addr(up_source *src, const struct sockaddr *sa) {
  uint32_t refid;
  memcpy(&src->addr, sa, sa_len(sa));
  src->have_addr = 1;
  addr_text(sa, src->addr_text, sizeof(src->addr_text), &refid);
  ntsntp_sync_set_refid(src->up->sync, src->idx, refid);
}

/* Eight polls without a sample: a plain server moves to the name's next
 * address (resolving it again after the last), a pool member is replaced,
 * an nts:// server resolves and runs NTS-KE again. */
static void unreachable(up_source *src) {
  up_entry *e = &src->up->ent[src->entry];
  if (e->kind == ENTRY_POOL) {
    src->replace = 1;
    return;
  }
  if (!src->fixed) {
    src->have_addr = 0;
    if (src->nts)
      ntsntp_nts_client_forget(src->ntsc);
    return;
  }
  src->missed = 0;
  if (e->naddrs > 1 && e->cursor + 1 < e->naddrs) {
    char old[64];
    snprintf(old, sizeof(old), "%s", src->addr_text);
    e->cursor++;
    take_addr(src, (const struct sockaddr *)&e->addrs[e->cursor]);
    ulog(src->up, NTSNTP_LOG_INFO, "Source %s (%s) does not answer: "
         "trying %s", old, src->name, src->addr_text);
  } else if (!e->resolving) {
    e->want_resolve = 1; /* the next tick resolves it again */
  }
}

/* A poll that produced no sample: reach decays; see unreachable(). */
static void missed(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  ntsntp_source_info info;
  ntsntp_sync_on_timeout(up->sync, src->idx, sys_now());
  up->stats.timeouts++;
  if (++src->missed == UNREACH_POLLS)
    unreachable(src);
  ntsntp_sync_source_info(up->sync, src->idx, sys_now(), &info);
  if (info.reach == 0 && src->was_reachable) {
    src->was_reachable = 0;
    ulog(up, NTSNTP_LOG_WARN, "Source %s (%s) unreachable",
         src->addr_text[0] ? src->addr_text : src->host, src->name);
  }
}

/* A poll that could not send anything (NTS-KE failed or backing off). */
static void lost_poll(up_source *src) {
  ntsntp_sync_on_send(src->up->sync, src->idx, sys_now());
  missed(src);
  arm(src);
}

static void remember_addr(up_source *src, const struct sockaddr *sa) {
  if (!sa || src->have_addr)
    return;
  take_addr(src, sa);
}

static void up_closed(ntsntp_uv_upstream *up);

/* A query of ours freed itself: a stop may be waiting for the last one. */
static void query_freed(void *user) {
  ntsntp_uv_upstream *up = user;
  up->queries--;
  if (up->stopping)
    up_closed(up);
}

static void on_ntp(void *user, const ntsntp_uv_ntp_outcome *o) {
  up_source *src = user;
  ntsntp_uv_upstream *up = src->up;
  src->q = NULL;
  if (o->status == 0 || o->status == NTSNTP_ERR_KOD)
    remember_addr(src, o->peer);
  src->mon.tx += o->requests; /* monitoring */
  if (o->sample)
    src->mon.rx++;
  if (o->status == 0) {
    src->mon.valid_rx++;
    src->mon.kernel_rx += o->rx_source == NTSNTP_TS_KERNEL;
    src->mon.have_sample = 1;
    src->mon.last = *o->sample;
    src->mon.last.n_cookies = 0;
    src->mon.rx_source = o->rx_source;
    src->mon.tx_source = o->tx_source;
    src->mon.interleaved = o->sample->interleaved;
    src->mon.last_rx_ms = uv_now(up->loop);
    if (src->xleave) /* the next request completes this exchange */
      ntsntp_client_xleave_update(&src->xl, o->sample, o->t1, o->t4);
  }
  /* New cookies into the jar; a NAK drops the keys; a cookie that never
   * left goes back. */
  if (src->nts)
    (void)ntsntp_uv_ntp_outcome_nts(src->ntsc, o);
  switch (o->status) {
  case 0: {
    ntsntp_source_info info;
    src->missed = 0;
    src->was_reachable = 1;
    up->stats.samples++;
    if (ntsntp_sync_on_sample(up->sync, src->idx, o->sample, sys_now()) == 1)
      publish(up);
    /* A pool member the others outvote is replaced (chrony too). */
    if (up->ent[src->entry].kind == ENTRY_POOL &&
        ntsntp_sync_source_info(up->sync, src->idx, sys_now(), &info) == 0) {
      src->falsetick =
          info.state == NTSNTP_SOURCE_FALSETICKER ? src->falsetick + 1 : 0;
      if (src->falsetick >= FALSE_POLLS)
        src->replace = 2;
    }
    break;
  }
  case NTSNTP_ERR_KOD:
    if (ntsntp_sync_on_kod(up->sync, src->idx, o->sample, sys_now()) ==
        NTSNTP_ERR_CLOSED) {
      ulog(up, NTSNTP_LOG_WARN, "%s: no longer used", o->errtext);
      if (up->ent[src->entry].kind == ENTRY_POOL)
        src->replace = 3;
    }
    break;
  case NTSNTP_ERR_NAK:
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
     *# [on an NTS NAK] the client [...] SHOULD [...] initiate a fresh NTS-KE
     *# handshake */
    up->stats.naks++;
    ulog(up, NTSNTP_LOG_WARN, "NTS NAK from %s: new NTS-KE", src->host);
    missed(src);
    break;
  default:
    missed(src);
    break;
  }
  arm(src);
}

/* The next poll: an NTP query, with the keys and the next cookie of the
 * NTS client for nts (the caller saw WANT_NTP). */
static void send_query(up_source *src) {
  char err[256];
  ntsntp_uv_upstream *up = src->up;
  ntsntp_uv_ntp_query_settings qs;
  ntsntp_nts_client_keys rk;
  ntsntp_uv_ntp_query_settings_default(&qs);
  qs.host = src->host;
  qs.port = src->port;
  qs.addr = src->have_addr ? (const struct sockaddr *)&src->addr : NULL;
  qs.timeout_ms = up->s.timeout_ms;
  qs.attempts = 1; /* one request per poll: the sync core counts losses */
  qs.poll = ntsntp_sync_poll(up->sync, src->idx);
  if (src->xleave)
    qs.xleave = &src->xl;
  if (src->nts) {
    /* One cookie, spent now; placeholders ask for the ones missing.  The
     * callers saw WANT_NTP: there is one. */
    if (ntsntp_nts_client_request_keys(src->ntsc, uv_now(up->loop), &rk)) {
      lost_poll(src);
      return;
    }
    qs.host = ntsntp_nts_client_ntp_server(src->ntsc, &qs.port);
    ntsntp_uv_ntp_query_settings_nts(&qs, &rk);
  }
  ntsntp_sync_on_send(up->sync, src->idx, sys_now());
  up->stats.requests++;
  if (ntsntp_uv_ntp_query_start(up->loop, &qs, on_ntp, src, &src->q, err,
                                sizeof(err)) < 0) {
    ulog(up, NTSNTP_LOG_WARN, "No request to %s: %s", src->host, err);
    src->q = NULL;
    if (src->nts)
      (void)ntsntp_nts_client_request_unsent(src->ntsc);
    missed(src);
    arm(src);
    return;
  }
  up->queries++;
  ntsntp__uv_ntp_query_on_free(src->q, query_freed, up);
}

/* An NTS-KE failed: the NTS client backs off; this poll produced nothing. */
static void ke_failed(up_source *src, const char *why) {
  ntsntp_uv_upstream *up = src->up;
  uint64_t now_ms = uv_now(up->loop);
  ntsntp_nts_client_info info;
  ntsntp_nts_client_ke_failed(src->ntsc, now_ms, why);
  ntsntp_nts_client_get_info(src->ntsc, &info);
  up->stats.ke_failed++;
  ulog(up, NTSNTP_LOG_WARN, "%s (retry in %u s)", why,
       (unsigned)((info.backoff_until_ms - now_ms) / 1000));
  lost_poll(src);
}

static void on_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  up_source *src = user;
  ntsntp_uv_upstream *up = src->up;
  char why[320];
  src->keq = NULL;
  if (o->status != 0) {
    ke_failed(src, o->errtext);
    return;
  }
  if (ntsntp_nts_client_ke_result(src->ntsc, uv_now(up->loop), o->result)) {
    snprintf(why, sizeof(why),
             "NTS-KE with %s gave no cookie an NTP request can carry",
             src->host);
    ke_failed(src, why);
    return;
  }
  up->stats.ke_ok++;
  src->have_addr = 0;
  remember_addr(src, o->ntp_addr);
  send_query(src);
}

static void start_ke(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  ntsntp_uv_ke_query_settings ks;
  char err[256];
  ntsntp_uv_ke_query_settings_default(&ks);
  ks.host = src->host;
  ks.port = src->port;
  /* A pool member: NTS-KE with its address, the certificate checked
   * against the pool's name. */
  if (src->fixed)
    ks.ke.server_name = src->up->ent[src->entry].host;
  if (up->ca_file[0])
    ks.ke.ca_file = up->ca_file;
  /* No old keys while new ones are fetched (a refresh included). */
  ntsntp_nts_client_forget(src->ntsc);
  if (ntsntp_uv_ke_query_start(up->loop, &ks, on_ke, src, &src->keq, err,
                               sizeof(err)) < 0) {
    src->keq = NULL;
    ke_failed(src, err);
    return;
  }
  up->queries++;
  ntsntp__uv_ke_query_on_free(src->keq, query_freed, up);
}

static void poll_source(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  uint64_t now_ms = uv_now(up->loop);
  unsigned want;
  if (src->q || src->keq)
    return; /* still busy with the previous poll */
  want = src->nts ? ntsntp_nts_client_want(src->ntsc, now_ms) : 0;
  if (want & NTSNTP_NTS_WANT_KE) {
    start_ke(src); /* no keys, no cookies, a NAK or the refresh is due */
    return;
  }
  if (src->nts && !(want & NTSNTP_NTS_WANT_NTP)) {
    lost_poll(src); /* backing off */
    return;
  }
  send_query(src);
}

static void on_timer(uv_timer_t *t) { poll_source(t->data); }

/* Takes source |src| out: queries cancelled, timer stopped, gone from the
 * sync core (its slot free for the next source). */
static void drop_source(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  if (src->q)
    ntsntp_uv_ntp_query_cancel(src->q);
  if (src->keq)
    ntsntp_uv_ke_query_cancel(src->keq);
  uv_timer_stop(&up->timer[src->idx]);
  ntsntp_nts_client_del(src->ntsc);
  src->ntsc = NULL;
  ntsntp_sync_remove_source(up->sync, src->idx, sys_now());
  src->used = 0;
  up->n = ntsntp_sync_n_sources(up->sync);
}

/* A pool member unreachable, a falseticker or refused: its address is
 * dropped until the pool is resolved again, another one takes its place. */
static void replace_member(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  up_entry *e = &up->ent[src->entry];
  static const char *const why[] = {"", "unreachable", "a falseticker",
                                     "refused us"};
  unsigned k;
  for (k = 0; k < e->naddrs; k++)
    if (same_addr(&e->addrs[k], &src->eaddr))
      e->bad[k] = 1;
  ulog(up, NTSNTP_LOG_INFO, "Source %s (pool %s) %s: replacing it",
       src->host, e->name, why[src->replace <= 3 ? src->replace : 0]);
  drop_source(src);
  entry_fill(e);
}

/* Schedules the next poll when the sync core wants it (or replaces the
 * source first, at the end of the event that decided it). */
static void arm(up_source *src) {
  ntsntp_uv_upstream *up = src->up;
  uint64_t next;
  double in;
  if (up->stopping || !src->used)
    return;
  if (src->replace) {
    replace_member(src);
    return;
  }
  next = ntsntp_sync_next_poll(up->sync, src->idx);
  if (next == UINT64_MAX)
    return;
  in = ntsntp_ts_diff(next, sys_now());
  uv_timer_start(&up->timer[src->idx], on_timer,
                 in > 0 ? (uint64_t)(in * 1000) : 0, 0);
}

/* A new source for entry |e| at its address |k| (plain servers and
 * pools), or, k < 0, with the name resolved by each query (nts://). */
static int add_member(up_entry *e, int k) {
  ntsntp_uv_upstream *up = e->up;
  ntsntp_nts_client *ntsc = NULL;
  up_source *src;
  char text[64] = "", err[256];
  const char *host = e->host;
  uint32_t refid = 0;
  int idx, rv;
  if (k >= 0) {
    addr_text((const struct sockaddr *)&e->addrs[k], text, sizeof(text),
              &refid);
    host = text; /* nts: NTS-KE with this address; plain: NTP to it */
  }
  if (e->nts) {
    /* Its NTS-KEs and NTP queries run on the uv transports; the name
     * only says where NTP goes when NTS-KE names no other server. */
    ntsntp_nts_client_settings ns;
    ntsntp_nts_client_settings_default(&ns);
    ns.server = host;
    ns.refresh_s = up->s.nts_refresh;
    ns.backoff_min_ms = KE_BACKOFF_MIN_MS;
    ns.backoff_max_ms = KE_BACKOFF_MAX_MS;
    rv = ntsntp_nts_client_new(&ntsc, &ns, err, sizeof(err));
    if (rv < 0) {
      ulog(up, NTSNTP_LOG_WARN, "Source %s (%s) not added: %s", host, e->name,
           err);
      return rv;
    }
  }
  idx = ntsntp_sync_add_source(up->sync,
                               e->kind == ENTRY_POOL ? text : e->name, refid,
                               sys_now());
  if (idx < 0) {
    ulog(up, NTSNTP_LOG_WARN, "Source %s (%s) not added: %d sources at "
         "most; fix: fewer NTP_SERVERS items or a lower MAXSOURCES",
         host, e->name, NTSNTP_SYNC_MAX_SOURCES);
    ntsntp_nts_client_del(ntsc);
    return idx;
  }
  src = &up->src[idx];
  memset(src, 0, sizeof(*src));
  src->up = up;
  src->used = 1;
  src->idx = (unsigned)idx;
  src->entry = (unsigned)(e - up->ent);
  src->nts = e->nts;
  src->ntsc = ntsc;
  src->xleave = e->xleave;
  src->port = e->port;
  snprintf(src->name, sizeof(src->name), "%s",
           e->kind == ENTRY_POOL ? text : e->name);
  snprintf(src->host, sizeof(src->host), "%s", host);
  if (k >= 0) {
    src->fixed = 1;
    src->eaddr = e->addrs[k];
    if (!src->nts)
      take_addr(src, (const struct sockaddr *)&e->addrs[k]);
  }
  up->timer[idx].data = src;
  up->n = ntsntp_sync_n_sources(up->sync);
  if (e->kind == ENTRY_POOL && e->resolved_once)
    ulog(up, NTSNTP_LOG_INFO, "Added source %s (pool %s)", text, e->name);
  arm(src);
  return 0;
}

static unsigned members(const up_entry *e) {
  const ntsntp_uv_upstream *up = e->up;
  unsigned i, m = 0;
  for (i = 0; i < up->n; i++)
    m += up->src[i].used && up->src[i].entry == (unsigned)(e - up->ent);
  return m;
}

static int addr_in_use(const up_entry *e, unsigned k) {
  const ntsntp_uv_upstream *up = e->up;
  unsigned i;
  for (i = 0; i < up->n; i++)
    if (up->src[i].used && up->src[i].entry == (unsigned)(e - up->ent) &&
        up->src[i].fixed && same_addr(&up->src[i].eaddr, &e->addrs[k]))
      return 1;
  return 0;
}

/* Brings entry |e| to its number of sources from its addresses; when
 * they are used up, asks for a new resolution. */
static void entry_fill(up_entry *e) {
  ntsntp_uv_upstream *up = e->up;
  unsigned want, have, k;
  if (!e->used || e->kind == ENTRY_LOCAL || up->stopping)
    return;
  if (e->kind == ENTRY_SERVER && e->nts) {
    if (!members(e))
      add_member(e, -1);
    return;
  }
  want = e->kind == ENTRY_POOL ? up->s.maxsources : 1;
  have = members(e);
  for (k = 0; k < e->naddrs && have < want; k++) {
    unsigned a = (e->cursor + k) % e->naddrs;
    if (e->bad[a] || addr_in_use(e, a))
      continue;
    if (add_member(e, (int)a) < 0)
      return;
    if (e->kind == ENTRY_SERVER)
      e->cursor = a;
    have++;
  }
  if (have < want)
    e->want_resolve = 1;
}

/* The addresses of |e| are known (or the resolution failed). */
static void entry_resolved(up_entry *e, int rv) {
  ntsntp_uv_upstream *up = e->up;
  uint64_t now_ms = uv_now(up->loop);
  /* Pools (and names without an answer) are asked again at most every
   * 8 minimum polls, doubling to an hour while nothing new comes. */
  uint64_t min_ms = up->s.sync.minpoll >= 0
                        ? 8000ull << up->s.sync.minpoll
                        : 8000ull >> -up->s.sync.minpoll;
  e->resolving = 0;
  if (rv < 0 || e->naddrs == 0) {
    ulog(up, NTSNTP_LOG_WARN, "Could not resolve %s: %s; trying again",
         e->host, rv < 0 ? ntsntp_strerror(rv) : "no address");
  }
  if (!e->resolve_backoff_ms || e->naddrs)
    e->resolve_backoff_ms = (uint32_t)(min_ms < 1000 ? 1000 : min_ms);
  else if (e->resolve_backoff_ms < 3600000)
    e->resolve_backoff_ms *= 2;
  e->resolve_after_ms = now_ms + e->resolve_backoff_ms;
  e->resolved_once = 1;
  if (e->kind == ENTRY_SERVER && e->naddrs) {
    /* A plain server after its last address: back to the first. */
    unsigned i;
    e->cursor = 0;
    for (i = 0; i < up->n; i++)
      if (up->src[i].used && up->src[i].entry == (unsigned)(e - up->ent)) {
        up->src[i].eaddr = e->addrs[0];
        up->src[i].have_addr = 0;
        take_addr(&up->src[i], (const struct sockaddr *)&e->addrs[0]);
      }
  }
  entry_fill(e);
}

/* Keeps the addresses of |res| (IPv4 and IPv6, no duplicates). */
static void entry_take(up_entry *e, const struct sockaddr_storage *a,
                       size_t n) {
  size_t i;
  unsigned k;
  e->naddrs = 0;
  memset(e->bad, 0, sizeof(e->bad));
  for (i = 0; i < n && e->naddrs < MAX_ADDRS; i++) {
    if (a[i].ss_family != AF_INET && a[i].ss_family != AF_INET6)
      continue;
    e->addrs[e->naddrs] = a[i];
    set_port(&e->addrs[e->naddrs], e->port);
    for (k = 0; k < e->naddrs; k++)
      if (same_addr(&e->addrs[k], &e->addrs[e->naddrs]))
        break;
    if (k == e->naddrs)
      e->naddrs++;
  }
  if (e->cursor >= e->naddrs)
    e->cursor = 0;
}

static void up_closed(ntsntp_uv_upstream *up);

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  up_entry *e = req->data;
  ntsntp_uv_upstream *up = e->up;
  struct sockaddr_storage a[MAX_ADDRS];
  struct addrinfo *ai;
  size_t n = 0;
  up->pending--;
  for (ai = status == 0 ? res : NULL; ai && n < MAX_ADDRS; ai = ai->ai_next)
    if (ai->ai_addrlen <= sizeof(a[0])) {
      memset(&a[n], 0, sizeof(a[n]));
      memcpy(&a[n++], ai->ai_addr, ai->ai_addrlen);
    }
  if (res)
    uv_freeaddrinfo(res);
  if (up->stopping) {
    e->resolving = 0;
    if (up->pending == 0 && up->handles == 0)
      up_closed(up);
    return;
  }
  if (!e->used) { /* removed by a reload meanwhile */
    e->resolving = 0;
    return;
  }
  if (status == 0)
    entry_take(e, a, n);
  else
    e->naddrs = 0;
  entry_resolved(e, status == 0 ? 0 : NTSNTP_ERR_IO);
}

/* Literal addresses need no resolver. */
static int literal(const char *host, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
    ss->ss_family = AF_INET;
    return 1;
  }
  if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) ==
      1) {
    ss->ss_family = AF_INET6;
    return 1;
  }
  return 0;
}

static void entry_resolve(up_entry *e) {
  ntsntp_uv_upstream *up = e->up;
  struct sockaddr_storage a[MAX_ADDRS];
  struct addrinfo hints;
  int rv;
  if (e->resolving || up->stopping)
    return;
  e->want_resolve = 0;
  if (literal(e->host, &a[0])) {
    entry_take(e, a, 1);
    entry_resolved(e, 0);
    return;
  }
  if (up->s.resolve) {
    memset(a, 0, sizeof(a));
    rv = up->s.resolve(up->s.resolve_user, e->host, a, MAX_ADDRS);
    if (rv >= 0)
      entry_take(e, a, (size_t)rv > MAX_ADDRS ? MAX_ADDRS : (size_t)rv);
    else
      e->naddrs = 0;
    entry_resolved(e, rv < 0 ? rv : 0);
    return;
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  e->gai.data = e;
  if (uv_getaddrinfo(up->loop, &e->gai, on_gai, e->host, NULL, &hints) == 0) {
    e->resolving = 1;
    up->pending++;
  } else {
    entry_resolved(e, NTSNTP_ERR_IO);
  }
}

/* Once a second: resolutions that are due, pools that lost members. */
static void maintain(ntsntp_uv_upstream *up) {
  uint64_t now_ms = uv_now(up->loop);
  unsigned i;
  for (i = 0; i < MAX_ENTRIES; i++) {
    up_entry *e = &up->ent[i];
    if (!e->used || e->kind == ENTRY_LOCAL || (e->kind == ENTRY_SERVER &&
                                               e->nts))
      continue;
    if (e->want_resolve && !e->resolving && now_ms >= e->resolve_after_ms)
      entry_resolve(e);
  }
}

static void on_clock_timer(uv_timer_t *t) {
  maintain(t->data);
  publish(t->data);
}

/* The first start of an entry. */
static void entry_start(up_entry *e) {
  if (e->kind == ENTRY_LOCAL)
    e->up->local = 1;
  else if (e->kind == ENTRY_SERVER && e->nts)
    entry_fill(e);
  else
    entry_resolve(e);
}

/* A reload dropped entry |e|: its sources go. */
static void entry_stop(up_entry *e) {
  ntsntp_uv_upstream *up = e->up;
  unsigned i;
  for (i = 0; i < up->n; i++)
    if (up->src[i].used && up->src[i].entry == (unsigned)(e - up->ent))
      drop_source(&up->src[i]);
  e->used = 0; /* an answer still on its way is dropped (on_gai) */
}

/* With one source a falseticker cannot be told apart (said once). */
static void check_single(ntsntp_uv_upstream *up) {
  unsigned i, n = 0, pool = 0;
  const char *name = "";
  for (i = 0; i < MAX_ENTRIES; i++)
    if (up->ent[i].used && up->ent[i].kind != ENTRY_LOCAL) {
      n++;
      pool |= up->ent[i].kind == ENTRY_POOL;
      name = up->ent[i].name;
    }
  if (n == 1 && !pool && up->s.n_refclocks == 0 && !up->single_said) {
    ulog(up, NTSNTP_LOG_WARN, "Only one source (%s): a falseticker cannot "
         "be detected with one source; fix: list three or more servers in "
         "NTP_SERVERS, or a pool://", name);
    up->single_said = 1;
  }
}

static void copy_paths(ntsntp_uv_upstream *up,
                       const ntsntp_uv_upstream_settings *s) {
  snprintf(up->ca_file, sizeof(up->ca_file), "%s",
           s->ca_file ? s->ca_file : "");
  snprintf(up->leapseclist, sizeof(up->leapseclist), "%s",
           s->leapseclist ? s->leapseclist : "");
}

static int check_list(const ntsntp_uv_upstream_settings *s, up_entry *tmp,
                      char *errbuf, size_t errlen) {
  size_t i;
  int rv;
  if (s->n_servers > MAX_ENTRIES) {
    ntsntp__errf(errbuf, errlen, "NTP_SERVERS has %zu items; at most %d",
                 s->n_servers, MAX_ENTRIES);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (s->maxsources < 1 || s->maxsources > NTSNTP_SYNC_MAX_SOURCES) {
    ntsntp__errf(errbuf, errlen, "MAXSOURCES is %u; fix: 1 to %d",
                 s->maxsources, NTSNTP_SYNC_MAX_SOURCES);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  for (i = 0; i < s->n_servers; i++) {
    if (!s->servers[i])
      return NTSNTP_ERR_INVALID_ARG;
    rv = parse_item(&tmp[i], s->servers[i], errbuf, errlen);
    if (rv)
      return rv;
  }
  return 0;
}

int ntsntp_uv_upstream_reload(ntsntp_uv_upstream *up,
                              const ntsntp_uv_upstream_settings *s,
                              ntsntp_uv_upstream_changes *ch, char *errbuf,
                              size_t errlen) {
  ntsntp_uv_upstream_settings latest;
  up_entry *tmp;
  ntsntp_uv_upstream_changes c = {0, 0, 0};
  int keep[MAX_ENTRIES] = {0}, rv;
  unsigned maxsources_was;
  size_t i, j;
  if (!up || !s || up->stopping)
    return NTSNTP_ERR_INVALID_ARG;
  NTSNTP__SETTINGS_GET(s, latest, uv_upstream, errbuf, errlen);
  tmp = up->tmp;
  rv = check_list(s, tmp, errbuf, errlen);
  if (rv)
    return rv;
  /* Unchanged items keep their entry and sources. */
  for (j = 0; j < MAX_ENTRIES; j++) {
    up_entry *e = &up->ent[j];
    if (!e->used)
      continue;
    for (i = 0; i < s->n_servers; i++)
      if (!keep[i] && !strcmp(tmp[i].item, e->item))
        break;
    if (i < s->n_servers) {
      keep[i] = 1;
      c.kept++;
      continue;
    }
    ulog(up, NTSNTP_LOG_INFO, "Removed source %s", e->item);
    if (e->kind == ENTRY_LOCAL)
      up->local = 0;
    entry_stop(e);
    c.removed++;
  }
  maxsources_was = up->s.maxsources;
  up->s.maxsources = s->maxsources;
  copy_paths(up, s);
  load_leap_list(up);
  for (i = 0; i < s->n_servers; i++) {
    up_entry *e = NULL;
    if (keep[i])
      continue;
    for (j = 0; j < MAX_ENTRIES && !e; j++)
      if (!up->ent[j].used && !up->ent[j].resolving)
        e = &up->ent[j];
    if (!e) {
      ulog(up, NTSNTP_LOG_WARN, "Source %s not added: a name is still "
           "being resolved; fix: reload again", tmp[i].item);
      continue;
    }
    *e = tmp[i];
    e->up = up;
    e->used = 1;
    ulog(up, NTSNTP_LOG_INFO, "Added source %s", e->item);
    entry_start(e);
    c.added++;
  }
  /* MAXSOURCES changed: pools shed members or take more. */
  if (up->s.maxsources != maxsources_was)
    for (j = 0; j < MAX_ENTRIES; j++) {
      up_entry *e = &up->ent[j];
      unsigned k;
      if (!e->used || e->kind != ENTRY_POOL)
        continue;
      for (k = up->n; k-- > 0 && members(e) > up->s.maxsources;)
        if (up->src[k].used && up->src[k].entry == j)
          drop_source(&up->src[k]);
      entry_fill(e);
    }
  check_single(up);
  publish(up);
  if (ch)
    *ch = c;
  return 0;
}

const ntsntp_sync *ntsntp_uv_upstream_sync(const ntsntp_uv_upstream *up) {
  return up->sync;
}

ntsntp_sync *ntsntp_uv_upstream_sync_rw(ntsntp_uv_upstream *up) {
  return up->sync;
}

void ntsntp_uv_upstream_publish(ntsntp_uv_upstream *up) { publish(up); }

void ntsntp_uv_upstream_get_stats(const ntsntp_uv_upstream *up,
                                  ntsntp_uv_upstream_stats *st) {
  *st = up->stats;
}

/* monitoring: begin */
int ntsntp_uv_upstream_source_get(const ntsntp_uv_upstream *up, unsigned i,
                                  ntsntp_uv_upstream_source *out) {
  const up_source *src;
  uint64_t now_ms;
  if (!up || !out || i >= up->n || !up->src[i].used)
    return NTSNTP_ERR_INVALID_ARG;
  src = &up->src[i];
  now_ms = uv_now(up->loop);
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "%s", src->name);
  if (src->have_addr) {
    snprintf(out->addr, sizeof(out->addr), "%s", src->addr_text);
    out->port = ntohs(src->addr.ss_family == AF_INET6
                          ? ((const struct sockaddr_in6 *)&src->addr)->sin6_port
                          : ((const struct sockaddr_in *)&src->addr)->sin_port);
  }
  out->nts = src->nts;
  out->ke_ago = -1;
  if (src->ntsc) {
    ntsntp_nts_client_info nts;
    unsigned running = src->keq != NULL; /* an attempt not counted yet */
    ntsntp_nts_client_get_info(src->ntsc, &nts);
    if (nts.have_keys) {
      out->aead = nts.aead;
      out->key_len = (unsigned)ntsntp_aead_key_len(nts.aead);
    }
    if (nts.ke_ok)
      out->ke_ago = (int64_t)((now_ms - nts.ke_time_ms) / 1000);
    out->key_id = nts.ke_ok;
    out->ke_tries = nts.ke_failed_run + running;
    out->ke_total = nts.ke_ok + nts.ke_failed + running;
    out->naks = nts.naks;
    out->cookies = nts.cookies;
    out->cookie_len = nts.cookie_len;
  }
  out->tx = src->mon.tx;
  out->rx = src->mon.rx;
  out->valid_rx = src->mon.valid_rx;
  out->kernel_rx = src->mon.kernel_rx;
  out->have_sample = src->mon.have_sample;
  out->last_rx_ago = -1;
  if (src->mon.have_sample) {
    const ntsntp_client_sample *s = &src->mon.last;
    out->hdr = s->hdr;
    out->offset = s->offset;
    out->delay = s->delay;
    out->response_time = ntsntp_ts_diff(s->t3, s->t2);
    out->authenticated = s->authenticated;
    out->rx_source = src->mon.rx_source;
    out->tx_source = src->mon.tx_source;
    out->interleaved = src->mon.interleaved;
    out->last_rx_ago = (int64_t)((now_ms - src->mon.last_rx_ms) / 1000);
  }
  return 0;
}
/* monitoring: end */

static void up_closed(ntsntp_uv_upstream *up) {
  void (*done)(void *) = up->done;
  void *user = up->done_user;
  unsigned i;
  if (up->handles > 0 || up->pending > 0 || up->queries > 0)
    return;
  up->handles = -1; /* once */
  for (i = 0; i < NTSNTP_SYNC_MAX_SOURCES; i++)
    ntsntp_nts_client_del(up->src[i].ntsc);
  ntsntp_sync_del(up->sync);
  ntsntp__mfree(up);
  if (done)
    done(user);
}

static void handle_closed(uv_handle_t *h) {
  ntsntp_uv_upstream *up = h->data;
  up->handles--;
  up_closed(up);
}

static void close_all(ntsntp_uv_upstream *up) {
  unsigned i;
  up->stopping = 1;
  for (i = 0; i < up->n; i++) {
    if (!up->src[i].used)
      continue;
    if (up->src[i].q)
      ntsntp_uv_ntp_query_cancel(up->src[i].q);
    if (up->src[i].keq)
      ntsntp_uv_ke_query_cancel(up->src[i].keq);
  }
  for (i = 0; i < MAX_ENTRIES; i++)
    if (up->ent[i].resolving)
      uv_cancel((uv_req_t *)&up->ent[i].gai);
  for (i = 0; i < NTSNTP_SYNC_MAX_SOURCES; i++) {
    up->timer[i].data = up;
    uv_close((uv_handle_t *)&up->timer[i], handle_closed);
  }
  uv_close((uv_handle_t *)&up->clock_timer, handle_closed);
  uv_close((uv_handle_t *)&up->drift_timer, handle_closed);
}

int ntsntp_uv_upstream_start(uv_loop_t *loop,
                             const ntsntp_uv_upstream_settings *s,
                             ntsntp_uv_upstream **out, char *errbuf,
                             size_t errlen) {
  ntsntp_uv_upstream_settings latest;
  ntsntp_uv_upstream *up;
  up_entry *tmp;
  unsigned i;
  int rv;
  NTSNTP__SETTINGS_GET(s, latest, uv_upstream, errbuf, errlen);
  if (!loop || !out || !s->server ||
      (s->n_servers == 0 && s->n_refclocks == 0)) {
    ntsntp__errf(errbuf, errlen, "upstream: %s",
                 !loop        ? "loop is NULL"
                 : !out       ? "out is NULL"
                 : !s->server ? "settings.server is NULL; fix: the NTP server "
                                "whose clock the upstreams set"
                              : "no servers and no reference clocks to follow");
    return NTSNTP_ERR_INVALID_ARG;
  }
  up = ntsntp__calloc(1, sizeof(*up));
  if (!up) {
    ntsntp__errf(errbuf, errlen, "upstream: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  tmp = up->tmp;
  rv = check_list(s, tmp, errbuf, errlen);
  if (rv) {
    ntsntp__mfree(up);
    return rv;
  }
  up->s = *s;
  up->loop = loop;
  copy_paths(up, s);
  if (s->state_dir && *s->state_dir)
    snprintf(up->drift, sizeof(up->drift), "%s/%s", s->state_dir,
             DRIFT_NAME);
  up->s.ca_file = NULL;
  up->s.state_dir = NULL;
  up->s.servers = NULL;
  up->s.leapseclist = NULL;
  rv = ntsntp_sync_new(&up->sync, &s->sync, errbuf, errlen);
  if (rv) {
    ntsntp__mfree(up);
    return rv;
  }
  if (up->drift[0])
    load_drift(up);
  load_leap_list(up);
  uv_timer_init(loop, &up->clock_timer);
  uv_timer_init(loop, &up->drift_timer);
  up->clock_timer.data = up->drift_timer.data = up;
  for (i = 0; i < NTSNTP_SYNC_MAX_SOURCES; i++)
    uv_timer_init(loop, &up->timer[i]);
  up->handles = 2 + NTSNTP_SYNC_MAX_SOURCES;
  for (i = 0; i < s->n_servers; i++) {
    up->ent[i] = tmp[i];
    up->ent[i].up = up;
    up->ent[i].used = 1;
  }
  for (i = 0; i < s->n_servers; i++)
    entry_start(&up->ent[i]);
  check_single(up);
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
