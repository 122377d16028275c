/* libntsntp: reference clocks, sans I/O (refclock.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errtext.h"
#include "ntsntp/refclock.h"

#define MAX_TOKENS 48
#define LOCK_GATE 0.2 /* s (per pulse period): chrony's lock tolerance */
#define MAX_WINDOW 1e-3 /* s: a longer PHC read window is not a sample */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ntsntp__verrf(err, errlen, fmt, ap);
  va_end(ap);
  return NTSNTP_ERR_BAD_CONFIG;
}

static const char *const driver_names[] = {"", "SOCK", "SHM", "PPS", "PHC"};

static uint32_t refid_from(const char *s) {
  uint32_t r = 0;
  int i;
  for (i = 0; i < 4; i++)
    r = r << 8 | (uint8_t)(*s ? *s++ : 0);
  return r;
}

/* Default refid: chrony's first three letters of the driver and the
 * entry's number ("SHM0", "SOC1"). */
static void default_refid(ntsntp_refclock_conf *c, unsigned idx) {
  snprintf(c->name, sizeof(c->name), "%.3s%u", driver_names[c->driver],
           idx % 10);
  c->refid = refid_from(c->name);
}

static int parse_double(const char *s, double lo, double hi, double *out) {
  char *e;
  double v;
  errno = 0;
  v = strtod(s, &e);
  if (!*s || *e || errno || !isfinite(v) || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *e;
  long v;
  errno = 0;
  v = strtol(s, &e, 10);
  if (!*s || *e || errno || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int refid_ok(const char *s) {
  size_t i, n = strlen(s);
  if (n == 0 || n > 4)
    return 0;
  for (i = 0; i < n; i++)
    if (!isgraph((unsigned char)s[i]) || s[i] == ',')
      return 0;
  return 1;
}

/* "PARAM[:opt[=val]]...": the parameter and its driver options. */
static int parse_param(ntsntp_refclock_conf *c, char *p, const char *entry,
                       char *err, size_t errlen) {
  char *opt = strchr(p, ':'), *next;
  if (opt)
    *opt++ = 0;
  if (strlen(p) >= sizeof(c->param))
    return fail(err, errlen,
                "REFCLOCKS entry \"%s\": %s is too long (at most %zu "
                "characters); fix: use a shorter path",
                entry, p, sizeof(c->param) - 1);
  strcpy(c->param, p);
  if (c->driver == NTSNTP_REFCLOCK_SHM) {
    long u;
    if (parse_long(p, 0, 255, &u))
      return fail(err, errlen,
                  "REFCLOCKS entry \"%s\": SHM takes a unit number from 0 to "
                  "255 (segment key 0x4e545030 + unit), not \"%s\"",
                  entry, p);
    c->unit = (unsigned)u;
  } else if (p[0] != '/') {
    return fail(err, errlen,
                "REFCLOCKS entry \"%s\": %s takes an absolute path (%s), not "
                "\"%s\"",
                entry, driver_names[c->driver],
                c->driver == NTSNTP_REFCLOCK_SOCK ? "the socket ntsd creates"
                : c->driver == NTSNTP_REFCLOCK_PPS ? "/dev/ppsN"
                                                   : "/dev/ptpN",
                p);
  }
  for (; opt && *opt; opt = next) {
    char *val;
    next = strchr(opt, ':');
    if (next)
      *next++ = 0;
    val = strchr(opt, '=');
    if (val)
      *val++ = 0;
    if (!strcmp(opt, "perm") && val &&
        (c->driver == NTSNTP_REFCLOCK_SHM ||
         c->driver == NTSNTP_REFCLOCK_SOCK)) {
      char *e;
      unsigned long m = strtoul(val, &e, 8);
      if (!*val || *e || m > 0777 || (m & 0111))
        return fail(err, errlen,
                    "REFCLOCKS entry \"%s\": perm=%s is not a mode; fix: an "
                    "octal mode without execute bits, such as 0600",
                    entry, val);
      c->perm = (unsigned)m;
    } else if (!strcmp(opt, "clear") && !val &&
               c->driver == NTSNTP_REFCLOCK_PPS) {
      c->pps_clear = 1;
    } else if (!strcmp(opt, "nocrossts") && !val &&
               c->driver == NTSNTP_REFCLOCK_PHC) {
      c->phc_nocrossts = 1;
    } else {
      return fail(err, errlen,
                  "REFCLOCKS entry \"%s\": driver option \":%s\" is not "
                  "supported by %s; fix: remove it (SOCK and SHM: :perm=MODE; "
                  "PPS: :clear; PHC: :nocrossts)",
                  entry, opt, driver_names[c->driver]);
    }
  }
  return 0;
}

static int parse_idx(const char *entry, unsigned idx, ntsntp_refclock_conf *c,
                     char *err, size_t errlen) {
  char buf[1024], *tok[MAX_TOKENS], *save = NULL, *t;
  int n = 0, i, rv, d, have_refid = 0;

  memset(c, 0, sizeof(*c));
  c->lock = -1;
  if (strlen(entry) >= sizeof(buf))
    return fail(err, errlen, "REFCLOCKS entry is too long (at most %zu "
                "characters)", sizeof(buf) - 1);
  strcpy(buf, entry);
  for (t = strtok_r(buf, " \t\r\n", &save); t;
       t = strtok_r(NULL, " \t\r\n", &save)) {
    if (n == MAX_TOKENS)
      return fail(err, errlen, "REFCLOCKS entry \"%s\" has too many words",
                  entry);
    tok[n++] = t;
  }
  if (n < 2)
    return fail(err, errlen,
                "REFCLOCKS entry \"%s\" needs a driver and its parameter; "
                "fix: write it as chrony's refclock line, e.g. \"SOCK "
                "/run/ntsd/gps.sock refid GPS\" or \"SHM 0\"",
                entry);
  for (d = NTSNTP_REFCLOCK_SOCK; d <= NTSNTP_REFCLOCK_PHC; d++)
    if (!strcasecmp(tok[0], driver_names[d]))
      c->driver = (ntsntp_refclock_driver)d;
  if (!c->driver)
    return fail(err, errlen,
                "REFCLOCKS entry \"%s\": unknown driver \"%s\"; fix: use "
                "SOCK, SHM, PPS or PHC",
                entry, tok[0]);
  /* chrony's defaults */
  c->poll = 4;
  c->dpoll = 0;
  c->filter = 64;
  c->delay = 1e-9;
  c->precision = c->driver == NTSNTP_REFCLOCK_PPS ||
                         c->driver == NTSNTP_REFCLOCK_PHC
                     ? 1e-9
                     : 1e-6;
  c->rate = 1;
  c->max_lock_age = 2;
  c->perm = c->driver == NTSNTP_REFCLOCK_SOCK ? 0660 : 0600;
  rv = parse_param(c, tok[1], entry, err, errlen);
  if (rv)
    return rv;

  for (i = 2; i < n; i++) {
    const char *o = tok[i], *v = i + 1 < n ? tok[i + 1] : NULL;
    long l;
    double x;
    if (!strcasecmp(o, "pps")) {
      c->pps = 1;
      continue;
    } else if (!strcasecmp(o, "tai")) {
      c->tai = 1;
      continue;
    } else if (!strcasecmp(o, "prefer")) {
      c->prefer = 1;
      continue;
    } else if (!strcasecmp(o, "noselect")) {
      c->noselect = 1;
      continue;
    } else if (!strcasecmp(o, "trust")) {
      c->trust = 1;
      continue;
    } else if (!strcasecmp(o, "require") || !strcasecmp(o, "local")) {
      return fail(err, errlen,
                  "REFCLOCKS entry \"%s\": option %s is not supported by "
                  "ntsd; fix: remove it",
                  entry, o);
    }
    if (!v)
      return fail(err, errlen,
                  "REFCLOCKS entry \"%s\": option %s needs a value; fix: "
                  "\"%s VALUE\"",
                  entry, o, o);
    i++;
#define BAD(what)                                                              \
  return fail(err, errlen,                                                     \
              "REFCLOCKS entry \"%s\": %s %s is not valid; fix: %s", entry,   \
              o, v, what)
    if (!strcasecmp(o, "refid")) {
      if (!refid_ok(v))
        BAD("one to four printable characters, such as GPS");
      snprintf(c->name, sizeof(c->name), "%s", v);
      c->refid = refid_from(v);
      have_refid = 1;
    } else if (!strcasecmp(o, "lock")) {
      if (!refid_ok(v))
        BAD("the refid of another entry, such as NMEA");
      snprintf(c->lock_name, sizeof(c->lock_name), "%s", v);
      c->lock = 0; /* resolved by the list */
    } else if (!strcasecmp(o, "poll")) {
      if (parse_long(v, -6, 17, &l))
        BAD("a whole number from -6 to 17 (log2 seconds)");
      c->poll = (int8_t)l;
    } else if (!strcasecmp(o, "dpoll")) {
      if (parse_long(v, -6, 17, &l))
        BAD("a whole number from -6 to 17 (log2 seconds)");
      c->dpoll = (int8_t)l;
    } else if (!strcasecmp(o, "filter")) {
      if (parse_long(v, 1, NTSNTP_REFCLOCK_FILTER_MAX, &l))
        BAD("a whole number from 1 to 256");
      c->filter = (unsigned)l;
    } else if (!strcasecmp(o, "rate")) {
      if (parse_long(v, 1, 1000000, &l))
        BAD("pulses per second, a whole number from 1 to 1000000");
      c->rate = (unsigned)l;
    } else if (!strcasecmp(o, "maxlockage")) {
      if (parse_long(v, 1, 1000, &l))
        BAD("a whole number of pulses from 1 to 1000");
      c->max_lock_age = (unsigned)l;
    } else if (!strcasecmp(o, "stratum")) {
      if (parse_long(v, 0, 15, &l))
        BAD("a whole number from 0 to 15");
      c->stratum = (unsigned)l;
    } else if (!strcasecmp(o, "offset")) {
      if (parse_double(v, -1e6, 1e6, &x))
        BAD("seconds, such as 0.2 or -0.000350");
      c->offset = x;
    } else if (!strcasecmp(o, "delay")) {
      if (parse_double(v, 0, 1, &x))
        BAD("seconds from 0 to 1");
      c->delay = x;
    } else if (!strcasecmp(o, "precision")) {
      if (parse_double(v, 1e-12, 1, &x))
        BAD("seconds from 1e-12 to 1");
      c->precision = x;
    } else if (!strcasecmp(o, "maxdispersion")) {
      if (parse_double(v, 1e-9, 1, &x))
        BAD("seconds from 1e-9 to 1");
      c->max_dispersion = x;
    } else if (!strcasecmp(o, "width")) {
      if (parse_double(v, 0, 1, &x))
        BAD("seconds, less than one pulse period");
      c->width = x;
    } else if (!strcasecmp(o, "minsamples") ||
               !strcasecmp(o, "maxsamples")) {
      return fail(err, errlen,
                  "REFCLOCKS entry \"%s\": option %s is not supported by "
                  "ntsd; fix: remove it (filter sets the samples per poll)",
                  entry, o);
    } else {
      return fail(err, errlen,
                  "REFCLOCKS entry \"%s\": unknown option \"%s\"; fix: use "
                  "refid, poll, dpoll, filter, offset, delay, precision, "
                  "maxdispersion, prefer, noselect, trust, lock, pps, rate, "
                  "width, maxlockage, stratum or tai",
                  entry, o);
    }
#undef BAD
  }
  if (!have_refid)
    default_refid(c, idx);
  if (c->width > 0 && c->width * c->rate >= 1)
    return fail(err, errlen,
                "REFCLOCKS entry \"%s\": width %g is not shorter than the "
                "pulse period (1/rate); fix: the pulse's width in seconds",
                entry, c->width);
  if (c->lock >= 0 && c->driver != NTSNTP_REFCLOCK_PPS && !c->pps &&
      c->driver != NTSNTP_REFCLOCK_SOCK)
    return fail(err, errlen,
                "REFCLOCKS entry \"%s\": lock is for pulses (PPS, or SHM "
                "with the pps option); fix: remove it or add pps",
                entry);
  if ((c->driver == NTSNTP_REFCLOCK_PPS || c->pps) && c->poll < c->dpoll)
    c->poll = c->dpoll;
  return 0;
}

int ntsntp_refclock_parse(const char *entry, ntsntp_refclock_conf *c,
                          char *err, size_t errlen) {
  return parse_idx(entry, 0, c, err, errlen);
}

static int pulsed(const ntsntp_refclock_conf *c) {
  return c->driver == NTSNTP_REFCLOCK_PPS || c->pps;
}

int ntsntp_refclock_parse_list(const char *list, ntsntp_refclock_conf *c,
                               size_t max, char *err, size_t errlen) {
  const char *p = list, *comma;
  char entry[1024];
  size_t n = 0, i, j;
  int rv;

  if (!list)
    return 0;
  while (*p == ' ' || *p == '\t')
    p++;
  if (!*p)
    return 0;
  for (;;) {
    size_t len;
    comma = strchr(p, ',');
    len = comma ? (size_t)(comma - p) : strlen(p);
    if (len >= sizeof(entry))
      return fail(err, errlen, "REFCLOCKS entry %zu is too long", n + 1);
    memcpy(entry, p, len);
    entry[len] = 0;
    if (strspn(entry, " \t\r\n") == len)
      return fail(err, errlen,
                  "REFCLOCKS has an empty entry (number %zu); fix: separate "
                  "entries with single commas",
                  n + 1);
    if (n == max) {
      fail(err, errlen, "REFCLOCKS has more than %zu entries; fix: remove "
           "some", max);
      return NTSNTP_ERR_NOBUF;
    }
    rv = parse_idx(entry, (unsigned)n, &c[n], err, errlen);
    if (rv)
      return rv;
    n++;
    if (!comma)
      break;
    p = comma + 1;
  }
  for (i = 0; i < n; i++) {
    for (j = 0; j < i; j++)
      if (c[i].refid == c[j].refid)
        return fail(err, errlen,
                    "REFCLOCKS entries %zu and %zu both have refid %s; fix: "
                    "give each its own refid",
                    j + 1, i + 1, c[i].name);
    if (c[i].lock < 0)
      continue;
    c[i].lock = -1;
    for (j = 0; j < n; j++)
      if (j != i && c[j].refid == refid_from(c[i].lock_name))
        c[i].lock = (int)j;
    if (c[i].lock < 0)
      return fail(err, errlen,
                  "REFCLOCKS entry %zu (%s): lock %s names no other entry; "
                  "fix: set refid %s on the clock that gives the seconds "
                  "(gpsd's SOCK or SHM)",
                  i + 1, c[i].name, c[i].lock_name, c[i].lock_name);
    if (pulsed(&c[c[i].lock]))
      return fail(err, errlen,
                  "REFCLOCKS entry %zu (%s): lock %s is itself a pulse "
                  "source; fix: lock to a clock that gives whole seconds",
                  i + 1, c[i].name, c[i].lock_name);
  }
  return (int)n;
}

int ntsntp_refclock_legacy(const char *item, ntsntp_refclock_conf *c,
                           size_t n, size_t max, char *err, size_t errlen) {
  unsigned a, b, x, y;
  char tail, entry[32];
  int rv;
  if (sscanf(item, "%u.%u.%u.%u%c", &a, &b, &x, &y, &tail) != 4 ||
      a != 127 || b != 127 || x > 255 || y > 255)
    return 0;
  if (x == 1 && y == 1)
    return 0; /* the local clock */
  if (x != 28)
    return fail(err, errlen,
                "NTP_SERVERS item %s is an ntpd reference clock (driver %u) "
                "that ntsd does not have; fix: remove it and set REFCLOCKS "
                "(chrony's refclock lines: SOCK, SHM, PPS or PHC)",
                item, x);
  if (n >= max) {
    fail(err, errlen, "NTP_SERVERS and REFCLOCKS have more than %zu "
         "reference clocks", max);
    return NTSNTP_ERR_NOBUF;
  }
  snprintf(entry, sizeof(entry), "SHM %u", y);
  rv = parse_idx(entry, y, &c[n], err, errlen);
  if (rv)
    return rv;
  /* ntpd's unit numbering: SHM0, SHM1, ... */
  snprintf(c[n].name, sizeof(c[n].name), "SHM%u", y % 10);
  c[n].refid = refid_from(c[n].name);
  return 1;
}

void ntsntp_refclock_sync_conf(const ntsntp_refclock_conf *c,
                               ntsntp_sync_refclock *out) {
  memset(out, 0, sizeof(*out));
  out->poll = c->poll;
  out->stratum = (uint8_t)c->stratum;
  out->delay = c->delay;
  out->precision = c->precision;
  out->prefer = c->prefer;
  out->noselect = c->noselect;
  out->trust = c->trust;
}

int ntsntp_refclock_sock_decode(const void *buf, size_t len,
                                ntsntp_refclock_sock_sample *out) {
  if (len != sizeof(*out))
    return NTSNTP_ERR_TRUNCATED;
  memcpy(out, buf, sizeof(*out));
  if (out->magic != NTSNTP_REFCLOCK_SOCK_MAGIC)
    return NTSNTP_ERR_MALFORMED;
  if (out->tv.tv_usec < 0 || out->tv.tv_usec >= 1000000 ||
      out->tv.tv_sec < 0 || !isfinite(out->offset) ||
      fabs(out->offset) > 1e9)
    return NTSNTP_ERR_MALFORMED;
  if (!out->pulse && (out->leap < 0 || out->leap > 2))
    return NTSNTP_ERR_MALFORMED;
  return 0;
}

/* ntpd writes both usec and nsec; nsec counts only when it agrees. */
static long shm_nsec(int usec, unsigned nsec) {
  if (nsec < 1000000000u && (long)(nsec / 1000) == usec)
    return (long)nsec;
  return (long)usec * 1000;
}

int ntsntp_refclock_shm_read(ntsntp_refclock_shm *shm,
                             ntsntp_refclock_reading *out) {
  ntsntp_refclock_shm t;
  struct timespec clk, rcv;
  int count;

  if (!shm->valid)
    return 0;
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  count = shm->count;
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  memcpy(&t, (const void *)shm, sizeof(t));
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (t.mode == 1 && count != shm->count) {
    shm->valid = 0;
    return NTSNTP_ERR_AGAIN;
  }
  shm->valid = 0;
  if (t.mode != 0 && t.mode != 1)
    return NTSNTP_ERR_MALFORMED;
  if (t.clock_usec < 0 || t.clock_usec >= 1000000 || t.receive_usec < 0 ||
      t.receive_usec >= 1000000 || t.clock_sec < 0 || t.receive_sec < 0 ||
      t.leap < 0 || t.leap > 2)
    return NTSNTP_ERR_MALFORMED;
  clk.tv_sec = t.clock_sec;
  clk.tv_nsec = shm_nsec(t.clock_usec, t.clock_nsec);
  rcv.tv_sec = t.receive_sec;
  rcv.tv_nsec = shm_nsec(t.receive_usec, t.receive_nsec);
  out->t = ntsntp_ts_from_timespec(&rcv);
  out->offset = (double)(clk.tv_sec - rcv.tv_sec) +
                (double)(clk.tv_nsec - rcv.tv_nsec) * 1e-9;
  out->leap = (uint8_t)t.leap;
  return 1;
}

int ntsntp_refclock_phc_sample(const ntsntp_refclock_phc_reading *r, size_t n,
                               int tai_offset, ntsntp_refclock_reading *out,
                               double *err) {
  size_t i;
  int best = -1;
  double bw = 0;
  if (n == 0)
    return NTSNTP_ERR_INVALID_ARG;
  for (i = 0; i < n; i++) {
    double w = ntsntp_ts_diff(r[i].sys_after, r[i].sys_before);
    if (!(w >= 0) || w > MAX_WINDOW)
      continue;
    if (best < 0 || w < bw) {
      best = (int)i;
      bw = w;
    }
  }
  if (best < 0)
    return NTSNTP_ERR_MALFORMED;
  out->t = ntsntp_ts_add(r[best].sys_before, bw / 2);
  out->offset = ntsntp_ts_diff(r[best].phc, out->t) - tai_offset;
  out->leap = NTSNTP_LEAP_NONE;
  *err = bw / 2;
  return 0;
}

void ntsntp_refclock_init(ntsntp_refclock *rc, const ntsntp_refclock_conf *c) {
  memset(rc, 0, sizeof(*rc));
  rc->conf = *c;
  if (rc->conf.filter == 0 || rc->conf.filter > NTSNTP_REFCLOCK_FILTER_MAX)
    rc->conf.filter = NTSNTP_REFCLOCK_FILTER_MAX;
  if (rc->conf.rate == 0)
    rc->conf.rate = 1;
  rc->tai_offset = 37; /* since 2017-01-01; the runtime asks the kernel */
}

/* A sample's system time must be recent: within one poll interval (or
 * one driver poll, if longer) before |now| and at most 1 s after it. */
static int fresh(const ntsntp_refclock *rc, uint64_t now, uint64_t t) {
  double age = ntsntp_ts_diff(now, t);
  double max = ldexp(1.0, rc->conf.poll > rc->conf.dpoll ? rc->conf.poll
                                                         : rc->conf.dpoll);
  return age >= -1.0 && age <= max + 1.0;
}

static int ready(const ntsntp_refclock *rc) {
  return rc->conf.filter < 4 && rc->n >= rc->conf.filter;
}

static void push(ntsntp_refclock *rc, uint64_t t, double offset, double disp,
                 uint8_t leap) {
  unsigned f = rc->conf.filter, k;
  if (rc->n == f) {
    k = rc->head;
    rc->head = (rc->head + 1) % f;
  } else {
    k = (rc->head + rc->n++) % f;
  }
  rc->buf[k].t = t;
  rc->buf[k].offset = offset;
  rc->buf[k].disp = disp;
  rc->buf[k].leap = leap;
  rc->have_last = 1;
  rc->last.t = t;
  rc->last.offset = offset;
  rc->last.disp = disp;
  rc->last.leap = leap;
}

int ntsntp_refclock_add_pulse(ntsntp_refclock *rc, uint64_t now, uint64_t t,
                              double second, const ntsntp_refclock_ref *ref) {
  double rate = rc->conf.rate, off, diff, shift, age;

  if (!fresh(rc, now, t)) {
    rc->stats.stale++;
    return NTSNTP_ERR_STATE;
  }
  if (!isfinite(second)) {
    rc->stats.bad++;
    return NTSNTP_ERR_MALFORMED;
  }
  /* The pulse says the offset modulo the pulse period: bring it to
   * [-0.5 / rate, 0.5 / rate). */
  off = -second + rc->conf.offset;
  off -= trunc(off * rate) / rate;
  if (off < -0.5 / rate)
    off += 1.0 / rate;
  else if (off >= 0.5 / rate)
    off -= 1.0 / rate;
  age = ref ? fabs(ntsntp_ts_diff(t, ref->t)) : 0;
  if (!ref || ref->leap == NTSNTP_LEAP_UNSYNC ||
      age >= rc->conf.max_lock_age / rate) {
    rc->stats.no_lock++;
    return NTSNTP_ERR_NOT_FOUND;
  }
  /* Whole periods from the reference. */
  diff = ref->offset - off;
  shift = (diff >= 0 ? floor(diff * rate + 0.5) : ceil(diff * rate - 0.5)) /
          rate;
  off += shift;
  diff = fabs(ref->offset - off);
  if (diff + ref->disp + rc->conf.precision >= LOCK_GATE / rate) {
    rc->stats.off_lock++;
    return NTSNTP_ERR_MALFORMED;
  }
  if (rc->conf.width > 0) {
    double max_err = fmin(rc->conf.width, 1.0 / rate - rc->conf.width) / 2;
    if (diff > max_err) {
      rc->stats.off_lock++;
      return NTSNTP_ERR_MALFORMED;
    }
  }
  rc->stats.pulses++;
  push(rc, t, off, rc->conf.precision, ref->leap);
  return ready(rc);
}

int ntsntp_refclock_add_sample(ntsntp_refclock *rc, uint64_t now, uint64_t t,
                               double offset, uint8_t leap, double disp,
                               const ntsntp_refclock_ref *ref) {
  if (rc->conf.pps)
    return ntsntp_refclock_add_pulse(rc, now, t, -offset, ref);
  if (!fresh(rc, now, t)) {
    rc->stats.stale++;
    return NTSNTP_ERR_STATE;
  }
  disp = (disp > 0 ? disp : 0) + rc->conf.precision;
  if (!isfinite(offset) || leap > 2 || !isfinite(disp)) {
    rc->stats.bad++;
    return NTSNTP_ERR_MALFORMED;
  }
  if (rc->conf.tai)
    offset -= rc->tai_offset;
  rc->stats.samples++;
  push(rc, t, offset + rc->conf.offset, disp, leap);
  return ready(rc);
}

int ntsntp_refclock_last(const ntsntp_refclock *rc, ntsntp_refclock_ref *ref) {
  if (!rc->have_last)
    return NTSNTP_ERR_NOT_FOUND;
  *ref = rc->last;
  return 0;
}

int ntsntp_refclock_served_ref(const ntsntp_refclock *rc,
                               const ntsntp_sync *sync, uint64_t t,
                               ntsntp_refclock_ref *ref) {
  ntsntp_clock_state cs;
  double dist;
  ntsntp_sync_clock_state(sync, t, &cs);
  dist = ntsntp_short_to_double(cs.root_delay) / 2 +
         ntsntp_short_to_double(cs.root_disp);
  if (cs.leap == NTSNTP_LEAP_UNSYNC || dist >= 0.5 / rc->conf.rate)
    return NTSNTP_ERR_NOT_FOUND;
  ref->t = t;
  ref->offset = ntsntp_ts_diff(ntsntp_sync_serve(sync, t), t);
  ref->disp = dist;
  ref->leap = cs.leap;
  return 0;
}

typedef struct fsample {
  double dt, offset, disp, dev;
  uint8_t leap;
} fsample;

static int by_offset(const void *a, const void *b) {
  double x = ((const fsample *)a)->offset, y = ((const fsample *)b)->offset;
  return x < y ? -1 : x > y;
}

static int by_dev(const void *a, const void *b) {
  double x = ((const fsample *)a)->dev, y = ((const fsample *)b)->dev;
  return x < y ? -1 : x > y;
}

int ntsntp_refclock_poll(ntsntp_refclock *rc, ntsntp_refclock_sample *out) {
  fsample s[NTSNTP_REFCLOCK_FILTER_MAX];
  unsigned n = rc->n, need = rc->conf.filter < 4 ? rc->conf.filter : 4;
  unsigned k, keep;
  uint64_t t0;
  double med, dt = 0, off = 0, disp = 0, var = 0;
  uint8_t leap;

  if (n < need || n == 0) {
    rc->stats.polls_empty++;
    return 0;
  }
  rc->n = 0; /* from here on the samples are used up */
  t0 = rc->buf[rc->head].t;
  leap = rc->buf[(rc->head + n - 1) % rc->conf.filter].leap;
  for (k = 0; k < n; k++) {
    const unsigned j = (rc->head + k) % rc->conf.filter;
    s[k].dt = ntsntp_ts_diff(rc->buf[j].t, t0);
    s[k].offset = rc->buf[j].offset;
    s[k].disp = rc->buf[j].disp;
    s[k].leap = rc->buf[j].leap;
  }
  rc->head = 0;
  /* chrony's median filter: the 40 % farthest from the median go, the
   * rest are averaged. */
  qsort(s, n, sizeof(s[0]), by_offset);
  med = n % 2 ? s[n / 2].offset : (s[n / 2 - 1].offset + s[n / 2].offset) / 2;
  for (k = 0; k < n; k++)
    s[k].dev = fabs(s[k].offset - med);
  qsort(s, n, sizeof(s[0]), by_dev);
  keep = n - 2 * n / 5;
  for (k = 0; k < keep; k++) {
    dt += s[k].dt;
    off += s[k].offset;
    disp += s[k].disp;
  }
  dt /= keep;
  off /= keep;
  disp /= keep;
  for (k = 0; k < keep; k++)
    var += (s[k].offset - off) * (s[k].offset - off);
  if (keep > 1)
    var /= keep - 1;
  out->t = ntsntp_ts_add(t0, dt);
  out->offset = off;
  out->disp = fmax(disp, sqrt(var));
  out->leap = leap;
  /* chrony's maxdispersion applies to the filtered sample (0: off). */
  if (rc->conf.max_dispersion > 0 && out->disp > rc->conf.max_dispersion) {
    rc->stats.bad++;
    return 0;
  }
  return 1;
}
