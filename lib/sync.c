/* libntsntp: sources + selection + clock model behind ntsntp_sync. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include <nettle/md5.h>

#include "clock_model.h"
#include "errtext.h"
#include "select.h"
#include "source.h"
#include "settings.h"

#define MINDISP 0.001 /* root dispersion floor (ntpd's tos mindist) */
#define HOLDOVER_DEFAULT 3600

struct ntsntp_sync {
  const ntsntp_mem *mem;
  ntsntp_sync_settings set;
  ntsntp_clock_ops ops;
  unsigned n;
  ntsntp__source src[NTSNTP_SYNC_MAX_SOURCES];
  int peer; /* system peer, -1 */
  /* Reference at the last update. */
  int synced;
  int ref_peer;
  uint32_t refid;
  uint8_t stratum, leap;
  double root_delay, root_disp;
  ntsntp__model model;
  char ref_name[NTSNTP_SOURCE_NAME_LEN]; /* system peer at the last update */
  uint64_t lost_at; /* when the last selectable source went (holdover) */
  /* Leap seconds: the list, the leap armed (+1/-1 at the midnight
   * |leap_at|, NTP seconds) and whole seconds folded into the served time
   * after past leaps.  |leap_word| packs them for serve(): bits 0-31
   * leap_at, 32-33 dir (1: +1, 2: -1), 48-63 base (int16). */
  ntsntp_leap_list list;
  int have_list;
  int leap_dir, leap_base;
  uint64_t leap_at;
  atomic_uint_least64_t leap_word;
  int kernel_leap; /* what clock_ops.set_leap last armed: +1, -1, 0 */
  /* refclock: per source, the configured delay and precision (log2 s) */
  double rc_delay[NTSNTP_SYNC_MAX_SOURCES];
  int8_t rc_prec[NTSNTP_SYNC_MAX_SOURCES];
};

static const char *const state_names[] = {
    "unusable",    "unreachable", "stopped",  "jittery",
    "falseticker", "selectable",  "combined", "selected"};
static const char state_chars[] = "???~x-+*";

const char *ntsntp_source_state_name(ntsntp_source_state st) {
  return (unsigned)st <= NTSNTP_SOURCE_SELECTED ? state_names[st] : "unknown";
}

char ntsntp_source_state_char(ntsntp_source_state st) {
  return (unsigned)st <= NTSNTP_SOURCE_SELECTED ? state_chars[st] : '?';
}

static void sync_fill(void *p) {
  ntsntp_sync_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->minpoll = 6;
  s->maxpoll = 10;
  s->iburst = 4;
  s->max_slew_ppm = 1e6 / 12; /* chrony's maxslewrate, 83333.333 ppm */
  s->makestep_threshold = 0.1;
  s->makestep_limit = 3;
  s->max_jitter = 1.0;
  s->min_sources = 1;
  s->precision = -20;
  s->holdover = HOLDOVER_DEFAULT;
}
NTSNTP__SETTINGS(ntsntp_sync_settings, sync, mem)

int ntsntp_sync_new(ntsntp_sync **psync, const ntsntp_sync_settings *s,
                    char *errbuf, size_t errlen) {
  ntsntp_sync_settings latest;
  const ntsntp_mem *mem;
  ntsntp_sync *sync;

  *psync = NULL;
  NTSNTP__SETTINGS_GET(s, latest, sync, errbuf, errlen);
  mem = s->mem;
  /* chrony's range: down to -6 (1/64 s) for LAN and test use. */
  if (s->minpoll < -6 || s->maxpoll > 17 || s->minpoll > s->maxpoll ||
      !(s->max_slew_ppm > 0) || !isfinite(s->max_slew_ppm) ||
      !(s->makestep_threshold >= 0) || !(s->max_jitter > 0) ||
      s->precision < -30 || s->precision > 0 ||
      (s->clock_ops && (!s->clock_ops->slew || !s->clock_ops->step)) ||
      (unsigned)s->leap_mode > NTSNTP_LEAP_MODE_SLEW) {
    ntsntp__errf(errbuf, errlen,
                 "sync settings out of range: minpoll %d and maxpoll %d "
                 "(-6..17, minpoll <= maxpoll), max_slew_ppm %g (> 0), "
                 "makestep_threshold %g (>= 0), max_jitter %g (> 0), "
                 "precision %d (-30..0), leap_mode %u, clock_ops %s; fix: "
                 "start from ntsntp_sync_settings_default",
                 s->minpoll, s->maxpoll, s->max_slew_ppm, s->makestep_threshold,
                 s->max_jitter, (int)s->precision, (unsigned)s->leap_mode,
                 !s->clock_ops ? "none"
                 : s->clock_ops->slew && s->clock_ops->step
                     ? "complete"
                     : "without slew or step");
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (!mem)
    mem = ntsntp_mem_default();
  sync = mem->calloc(1, sizeof(*sync), mem->user);
  if (!sync) {
    ntsntp__errf(errbuf, errlen, "sync: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  sync->mem = mem;
  sync->set = *s;
  if (s->clock_ops) {
    sync->ops = *s->clock_ops;
    sync->set.clock_ops = &sync->ops;
  }
  sync->peer = -1;
  sync->ref_peer = -1;
  atomic_init(&sync->leap_word, 0);
  ntsntp__model_init(&sync->model, &sync->set);
  *psync = sync;
  return 0;
}

void ntsntp_sync_del(ntsntp_sync *sync) {
  if (sync)
    sync->mem->free(sync, sync->mem->user);
}

/* Slot |i| holds a source. */
static int active(const ntsntp_sync *sync, unsigned i) {
  return i < sync->n && !sync->src[i].removed;
}

int ntsntp_sync_add_source(ntsntp_sync *sync, const char *name, uint32_t refid,
                           uint64_t now) {
  unsigned i;
  for (i = 0; i < sync->n && !sync->src[i].removed; i++)
    ;
  if (i == NTSNTP_SYNC_MAX_SOURCES)
    return NTSNTP_ERR_NOBUF;
  ntsntp__source_init(&sync->src[i], &sync->set, name, refid, now);
  if (i == sync->n)
    sync->n++;
  return (int)i;
}

static void reselect(ntsntp_sync *sync, uint64_t now, ntsntp__selection *sel);

int ntsntp_sync_remove_source(ntsntp_sync *sync, unsigned i, uint64_t now) {
  ntsntp__selection sel;
  if (!active(sync, i))
    return NTSNTP_ERR_INVALID_ARG;
  memset(&sync->src[i], 0, sizeof(sync->src[i]));
  sync->src[i].removed = 1;
  sync->src[i].stopped = 1;
  sync->src[i].next_poll = UINT64_MAX;
  if (sync->ref_peer == (int)i)
    sync->ref_peer = -1; /* its name stays in ref_name */
  if (sync->peer == (int)i) {
    sync->peer = -1;
    sync->lost_at = now;
  }
  while (sync->n && sync->src[sync->n - 1].removed)
    sync->n--;
  reselect(sync, now, &sel);
  return 0;
}

int ntsntp_sync_source_active(const ntsntp_sync *sync, unsigned i) {
  return active(sync, i);
}

unsigned ntsntp_sync_n_sources(const ntsntp_sync *sync) { return sync->n; }

int ntsntp_sync_set_refid(ntsntp_sync *sync, unsigned i, uint32_t refid) {
  if (!active(sync, i))
    return NTSNTP_ERR_INVALID_ARG;
  sync->src[i].refid = refid;
  return 0;
}

uint64_t ntsntp_sync_next_poll(const ntsntp_sync *sync, unsigned i) {
  if (!active(sync, i) || sync->src[i].stopped)
    return UINT64_MAX;
  return sync->src[i].next_poll;
}

int8_t ntsntp_sync_poll(const ntsntp_sync *sync, unsigned i) {
  return active(sync, i) ? sync->src[i].poll : sync->set.minpoll;
}

int ntsntp_sync_on_send(ntsntp_sync *sync, unsigned i, uint64_t now) {
  ntsntp_rand_fn rnd = sync->set.rand ? sync->set.rand : ntsntp_rand_default;
  uint8_t b[4];
  double r = 0;

  if (!active(sync, i))
    return NTSNTP_ERR_INVALID_ARG;
  if (rnd(sync->set.rand_user, b, sizeof(b)) == 0)
    r = (double)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                 (uint32_t)b[2] << 8 | b[3]) /
        4294967296.0;
  return ntsntp__source_on_send(&sync->src[i], now, r);
}

/* Leap seconds.  The model keeps a continuous time scale; the served
 * time adds leap_corr() to it.  Outside SYSTEM mode the system clock does
 * not pass the leap either, so samples taken after it are moved back onto
 * the continuous scale (leap_sample_corr). */
static int word_dir(uint64_t w) {
  return (w >> 32 & 3) == 1 ? 1 : (w >> 32 & 3) == 2 ? -1 : 0;
}

/* NTP-64 time of the leap instant: the midnight for an insertion, the
 * second before it for a deletion. */
static uint64_t leap_instant(uint64_t at, int dir) {
  return (at - (dir < 0 ? 1 : 0)) << 32;
}

static double leap_corr(const ntsntp_sync *sync, uint64_t w, uint64_t t) {
  int dir = word_dir(w);
  double base = (int16_t)(uint16_t)(w >> 48);
  if (!dir)
    return base;
  return base +
         ntsntp_leap_correction(
             sync->set.leap_mode, sync->set.leap_smear,
             sync->set.max_slew_ppm * 1e-6, dir,
             ntsntp_ts_diff(ntsntp_ts_add(t, base),
                            leap_instant(w & 0xffffffffu, dir)));
}

static double leap_sample_corr(const ntsntp_sync *sync, uint64_t t) {
  double c = -(double)sync->leap_base;
  if (sync->set.leap_mode == NTSNTP_LEAP_MODE_SYSTEM)
    return 0;
  if (sync->leap_dir &&
      ntsntp_ts_diff(ntsntp_ts_add(ntsntp__model_serve(&sync->model, t),
                                   sync->leap_base),
                     leap_instant(sync->leap_at, sync->leap_dir)) >= 0)
    c += sync->leap_dir;
  return c;
}

static void leap_store(ntsntp_sync *sync) {
  uint64_t w = 0;
  if (sync->leap_dir || sync->leap_base)
    w = (sync->leap_at & 0xffffffffu) |
        (uint64_t)(sync->leap_dir > 0 ? 1 : sync->leap_dir < 0 ? 2 : 0)
            << 32 |
        (uint64_t)(uint16_t)(int16_t)sync->leap_base << 48;
  atomic_store_explicit(&sync->leap_word, w, memory_order_release);
}

#define MIN_ERR 1e-5 /* s, floor of a sample's error for its weight */

/* Selection; sets the system peer and the source states. */
static void reselect(ntsntp_sync *sync, uint64_t now, ntsntp__selection *sel) {
  int had = sync->peer >= 0;
  ntsntp__select(sync->src, sync->n, now, sync->model.freq,
                 sync->set.max_jitter, sync->set.min_sources, sync->peer, sel);
  sync->peer = sel->ok ? sel->peer : -1;
  if (had && sync->peer < 0)
    sync->lost_at = now; /* holdover from here */
}

/*
 * Clock update with the new sample (raw offset |y| at |ts|, round trip
 * |delay|) of source |i|, a survivor of the selection.  Each sample is
 * used once, when it arrives, weighted by its delay in excess of the
 * filter's minimum: unlike RFC 5905's clock filter output, which can stay
 * on an old sample for several polls, this keeps the regression fed while
 * the local clock runs free.
 */
static void update(ntsntp_sync *sync, unsigned i, uint64_t now, uint64_t ts,
                   double y, double delay, const ntsntp__selection *sel) {
  ntsntp__model *md = &sync->model;
  ntsntp__source *p = &sync->src[sel->peer], *s = &sync->src[i];
  double step, age, err;
  unsigned k;

  err = fmax(delay - s->delay, 0) / 2 + fmax(s->delay / 8, MIN_ERR);
  ntsntp__model_update(md, now, ts, y, err, sel->jitter, &step);
  if (step != 0)
    for (k = 0; k < sync->n; k++)
      ntsntp__source_relabel(&sync->src[k], step);
  sync->synced = 1;
  sync->ref_peer = sel->peer;
  memcpy(sync->ref_name, p->name, sizeof(sync->ref_name));
  sync->refid = p->refid;
  sync->stratum = (uint8_t)(p->stratum + 1);
  sync->leap = sel->leap;
  /*= https://www.rfc-editor.org/rfc/rfc5905#appendix-A.5.5.6
   *# s.rootdelay = p->rootdelay + p->delay;
   *# dtemp = p->rootdisp + p->disp + sys_jitter + PHI * (c.t - p->t) +
   *#     fabs(p->offset);
   * (p->offset, the peer's offset from the disciplined clock, is here the
   * offset last measured against the served clock.) */
  age = ntsntp_ts_diff(md->last_update, p->t);
  sync->root_delay = p->root_delay + p->delay;
  sync->root_disp = fmax(p->root_disp + p->disp + sel->jitter +
                             NTSNTP_PHI * (age > 0 ? age : 0) +
                             fabs(md->last_offset),
                         MINDISP);
}

int ntsntp_sync_on_sample(ntsntp_sync *sync, unsigned i,
                          const ntsntp_client_sample *sample, uint64_t now) {
  ntsntp__selection sel;
  ntsntp_source_state st;
  uint64_t t;
  double y;
  int rv;

  if (!active(sync, i))
    return NTSNTP_ERR_INVALID_ARG;
  /* The offset holds at the midpoint of the exchange. */
  t = ntsntp_ts_add(sample->t1, ntsntp_ts_diff(sample->t4, sample->t1) / 2);
  y = sample->offset + ntsntp__model_applied(&sync->model, t) +
      leap_sample_corr(sync, t);
  rv = ntsntp__source_on_sample(&sync->src[i], &sample->hdr, t, y,
                                sample->delay, sync->model.freq, now);
  if (rv < 0)
    return rv;
  reselect(sync, now, &sel);
  st = sync->src[i].state;
  if (rv == 0 || !sel.ok ||
      (st != NTSNTP_SOURCE_SELECTED && st != NTSNTP_SOURCE_COMBINED))
    return 0;
  update(sync, i, now, t, y, fmax(sample->delay, 0), &sel);
  return 1;
}

int ntsntp_sync_on_kod(ntsntp_sync *sync, unsigned i,
                       const ntsntp_client_sample *sample, uint64_t now) {
  int rv;
  if (!active(sync, i))
    return NTSNTP_ERR_INVALID_ARG;
  rv = ntsntp__source_on_kod(&sync->src[i], sample->hdr.refid,
                             sample->hdr.poll, now);
  if (rv) {
    ntsntp__selection sel;
    reselect(sync, now, &sel);
  }
  return rv;
}

void ntsntp_sync_on_timeout(ntsntp_sync *sync, unsigned i, uint64_t now) {
  ntsntp__selection sel;
  if (i < sync->n)
    reselect(sync, now, &sel);
}

/* refclock: begin */
int ntsntp_sync_add_refclock(ntsntp_sync *sync, const char *name,
                             uint32_t refid, const ntsntp_sync_refclock *rc,
                             uint64_t now) {
  ntsntp__source *s;
  if (rc->poll < -6 || rc->poll > 17 || rc->stratum > 15 ||
      !(rc->delay >= 0) || !(rc->precision >= 0))
    return NTSNTP_ERR_INVALID_ARG;
  if (sync->n == NTSNTP_SYNC_MAX_SOURCES)
    return NTSNTP_ERR_NOBUF;
  s = &sync->src[sync->n];
  ntsntp__source_init(s, &sync->set, name, refid, now);
  s->refclock = 1;
  s->minpoll = s->maxpoll = s->poll = rc->poll;
  s->burst_left = 0;
  s->stratum = rc->stratum;
  s->prefer = rc->prefer;
  s->noselect = rc->noselect;
  s->trust = rc->trust;
  /* The source's precision (log2 s, rounded up) and the configured delay
   * ride in the samples (ntsntp_sync_on_refclock). */
  sync->rc_delay[sync->n] = rc->delay;
  sync->rc_prec[sync->n] =
      rc->precision > 0 ? (int8_t)fmax(-30, ceil(log2(rc->precision))) : -30;
  return (int)sync->n++;
}

int ntsntp_sync_on_refclock(ntsntp_sync *sync, unsigned i,
                            const ntsntp_refclock_sample *rs, uint64_t now) {
  ntsntp__source *s;
  ntsntp__selection sel;
  ntsntp_pkt_hdr h;
  ntsntp_source_state st;
  uint8_t stratum;
  double y;
  int rv;

  if (!active(sync, i) || !sync->src[i].refclock)
    return NTSNTP_ERR_INVALID_ARG;
  s = &sync->src[i];
  ntsntp__source_on_send(s, now, 0); /* reach shifts at every poll */
  if (!rs) {
    reselect(sync, now, &sel);
    return 0;
  }
  if (rs->leap == NTSNTP_LEAP_UNSYNC || !isfinite(rs->offset) ||
      !(rs->disp >= 0) || !(rs->disp < NTSNTP_MAXDIST))
    return NTSNTP_ERR_MALFORMED;
  /* Through the network path: a header as a stratum-0 server would send
   * (stratum 1 passes its check; the source keeps its own stratum), the
   * sample's dispersion as root dispersion. */
  memset(&h, 0, sizeof(h));
  h.leap = rs->leap;
  h.stratum = 1;
  h.precision = sync->rc_prec[i];
  h.root_disp = ntsntp_short_from_double(rs->disp);
  stratum = s->stratum;
  y = rs->offset + ntsntp__model_applied(&sync->model, rs->t) +
      leap_sample_corr(sync, rs->t);
  rv = ntsntp__source_on_sample(s, &h, rs->t, y, sync->rc_delay[i],
                                sync->model.freq, now);
  s->stratum = stratum;
  if (rv < 0)
    return rv;
  reselect(sync, now, &sel);
  st = s->state;
  if (rv == 0 || !sel.ok ||
      (st != NTSNTP_SOURCE_SELECTED && st != NTSNTP_SOURCE_COMBINED))
    return 0;
  update(sync, i, now, rs->t, y, sync->rc_delay[i], &sel);
  return 1;
}
/* refclock: end */

/* chronyc sourcestats figures from the valid filter stages. */
static void source_stats(const ntsntp__source *s, ntsntp_source_info *info) {
  double x[NTSNTP__NSTAGE], y[NTSNTP__NSTAGE], xm = 0, ym = 0, sxx = 0,
      sxy = 0, ss = 0, b = 0;
  unsigned n = 0, k, runs = 0;
  int prev = 0;
  uint64_t t0 = 0;
  for (k = 0; k < NTSNTP__NSTAGE; k++) {
    if (!s->f[k].valid)
      continue;
    if (!n)
      t0 = s->f[k].t; /* newest */
    x[n] = ntsntp_ts_diff(s->f[k].t, t0);
    y[n] = s->f[k].offset;
    xm += x[n];
    ym += y[n];
    n++;
  }
  info->np = n;
  if (n == 0)
    return;
  xm /= n;
  ym /= n;
  info->span = -(x[n - 1]); /* oldest is furthest in the past */
  for (k = 0; k < n; k++) {
    sxx += (x[k] - xm) * (x[k] - xm);
    sxy += (x[k] - xm) * (y[k] - ym);
  }
  if (n >= 3 && sxx > 0)
    b = sxy / sxx;
  for (k = 0; k < n; k++) {
    double r = y[k] - (ym + b * (x[k] - xm));
    int sg = r >= 0 ? 1 : -1;
    ss += r * r;
    if (sg != prev)
      runs++;
    prev = sg;
  }
  info->nr = runs;
  info->freq_ppm = b * 1e6;
  info->std_dev = n > 2 ? sqrt(ss / (n - 2)) : 0;
  info->freq_skew_ppm = n > 2 && sxx > 0 ? sqrt(ss / (n - 2) / sxx) * 1e6 : 0;
}

int ntsntp_sync_source_info(const ntsntp_sync *sync, unsigned i, uint64_t now,
                            ntsntp_source_info *info) {
  const ntsntp__source *s;
  if (!active(sync, i))
    return NTSNTP_ERR_INVALID_ARG;
  s = &sync->src[i];
  memset(info, 0, sizeof(*info));
  memcpy(info->name, s->name, sizeof(info->name));
  info->refid = s->refid;
  info->state = s->state;
  info->stratum = s->stratum;
  info->leap = s->leap;
  info->poll = s->poll;
  info->reach = s->reach;
  info->kod = s->kod;
  info->last_rx = s->last_rx ? ntsntp_ts_diff(now, s->last_rx) : -1;
  info->last_offset = s->last_offset;
  info->root_delay = s->root_delay;
  info->root_disp = s->root_disp;
  info->next_poll = ntsntp_sync_next_poll(sync, i);
  info->refclock = s->refclock;
  if (s->have) {
    /* Offsets shown against the system clock, as measured. */
    info->offset = ntsntp__source_offset(s, now, sync->model.freq) -
                   ntsntp__model_applied(&sync->model, now);
    info->delay = s->delay;
    info->disp = s->disp;
    info->jitter = s->jitter;
    info->root_distance = ntsntp__source_root_dist(s, now);
  }
  source_stats(s, info);
  return 0;
}

uint64_t ntsntp_sync_serve(const ntsntp_sync *sync, uint64_t sys) {
  uint64_t t = ntsntp__model_serve(&sync->model, sys);
  uint64_t w = atomic_load_explicit(
      &((ntsntp_sync *)sync)->leap_word, memory_order_acquire);
  return w ? ntsntp_ts_add(t, leap_corr(sync, w, t)) : t;
}

/* Synchronised at |now|: updated once, root distance still usable, and
 * with no source selectable, not longer than the holdover. */
static int is_synced(const ntsntp_sync *sync, uint64_t now) {
  double age;
  if (!sync->synced || sync->stratum >= 16)
    return 0;
  age = ntsntp_ts_diff(now, sync->model.last_update);
  if (sync->peer < 0 &&
      ntsntp_ts_diff(now, sync->lost_at) > (double)sync->set.holdover)
    return 0;
  return sync->root_delay / 2 + sync->root_disp +
             NTSNTP_PHI * (age > 0 ? age : 0) <
         NTSNTP_MAXDIST;
}

/* UTC seconds (NTP, era 0) now as served, before any leap in progress. */
static uint64_t utc_sec(const ntsntp_sync *sync, uint64_t now) {
  return ntsntp_ts_add(ntsntp__model_serve(&sync->model, now),
                       sync->leap_base) >>
         32;
}

/* chrony's decision for the day: the sources' vote, or when they say
 * nothing, the list; only on the days a leap second may end. */
static int leap_decide(const ntsntp_sync *sync, uint64_t now) {
  uint64_t day = utc_sec(sync, now);
  int dir = 0;
  if (is_synced(sync, now))
    dir = sync->leap == NTSNTP_LEAP_INSERT   ? 1
          : sync->leap == NTSNTP_LEAP_DELETE ? -1
                                             : 0;
  if (!dir && sync->have_list)
    dir = ntsntp_leap_list_day_end(&sync->list, day);
  return ntsntp_leap_day_allowed(day) ? dir : 0;
}

/* The leap bits to serve: the leap armed or decided, until its instant;
 * never while smearing (chrony's smoothtime does not announce it). */
static int leap_announced(const ntsntp_sync *sync, uint64_t now) {
  int dir;
  if (sync->set.leap_smear)
    return 0;
  if (!sync->leap_dir)
    return leap_decide(sync, now);
  dir = sync->leap_dir;
  return ntsntp_ts_diff(ntsntp_ts_add(ntsntp__model_serve(&sync->model, now),
                                      sync->leap_base),
                        leap_instant(sync->leap_at, dir)) < 0
             ? dir
             : 0;
}

void ntsntp_sync_set_leap_list(ntsntp_sync *sync, const ntsntp_leap_list *l) {
  sync->have_list = l != NULL;
  if (l)
    sync->list = *l;
}

/* LEAPSECMODE system with clock control: the kernel passes the leap
 * second, armed here (retried at every update until it takes). */
static void kernel_leap(ntsntp_sync *sync, int dir) {
  if (sync->set.leap_mode != NTSNTP_LEAP_MODE_SYSTEM || !sync->set.clock_ops ||
      !sync->ops.set_leap || dir == sync->kernel_leap)
    return;
  if (sync->ops.set_leap(sync->ops.user, dir) == 0)
    sync->kernel_leap = dir;
}

int ntsntp_sync_leap_update(ntsntp_sync *sync, uint64_t now) {
  uint64_t t = ntsntp_ts_add(ntsntp__model_serve(&sync->model, now),
                             sync->leap_base);
  int dir;
  if (sync->leap_dir) {
    double since =
        ntsntp_ts_diff(t, leap_instant(sync->leap_at, sync->leap_dir));
    if (since >= 86400) {
      /* A day on, every transition is over: keep the second for good. */
      sync->leap_base += (int)lround(ntsntp_leap_correction(
          sync->set.leap_mode, sync->set.leap_smear,
          sync->set.max_slew_ppm * 1e-6, sync->leap_dir, since));
      sync->leap_dir = 0;
      sync->leap_at = 0;
      leap_store(sync);
      kernel_leap(sync, 0);
      return 0;
    }
    if (since >= 2) /* the kernel has passed it: disarm */
      kernel_leap(sync, 0);
    if (since >= 0)
      return sync->leap_dir; /* in progress: never withdrawn */
  }
  dir = leap_decide(sync, now);
  if (dir != sync->leap_dir) {
    sync->leap_dir = dir;
    sync->leap_at = dir ? ntsntp_leap_day_end(t >> 32) : 0;
    leap_store(sync);
  }
  kernel_leap(sync, dir);
  return dir;
}

void ntsntp_sync_clock_state(const ntsntp_sync *sync, uint64_t now,
                             ntsntp_clock_state *cs) {
  memset(cs, 0, sizeof(*cs));
  cs->precision = sync->set.precision;
  cs->disp_rate = NTSNTP_PHI;
  if (sync->synced)
    cs->ref_ts = ntsntp_sync_serve(sync, sync->model.last_update);
  if (!is_synced(sync, now)) {
    cs->leap = NTSNTP_LEAP_UNSYNC;
    cs->stratum = 16;
    return;
  }
  cs->leap = (uint8_t)(leap_announced(sync, now) > 0   ? NTSNTP_LEAP_INSERT
                       : leap_announced(sync, now) < 0 ? NTSNTP_LEAP_DELETE
                                                       : NTSNTP_LEAP_NONE);
  cs->stratum = sync->stratum;
  cs->refid = sync->refid;
  cs->root_delay = ntsntp_short_from_double(sync->root_delay);
  cs->root_disp = ntsntp_short_from_double(sync->root_disp);
}

void ntsntp_sync_tracking(const ntsntp_sync *sync, uint64_t now,
                          ntsntp_tracking *t) {
  const ntsntp__model *md = &sync->model;
  double age = ntsntp_ts_diff(now, md->last_update);

  memset(t, 0, sizeof(*t));
  t->synced = is_synced(sync, now);
  t->leap_announced = t->synced ? leap_announced(sync, now) : 0;
  t->leap = !t->synced                ? NTSNTP_LEAP_UNSYNC
            : t->leap_announced > 0 ? NTSNTP_LEAP_INSERT
            : t->leap_announced < 0 ? NTSNTP_LEAP_DELETE
                                    : NTSNTP_LEAP_NONE;
  t->leap_pending = sync->leap_dir;
  t->leap_at = sync->leap_at;
  t->leap_list = !sync->have_list ? 0
                 : ntsntp_leap_list_expired(&sync->list, utc_sec(sync, now))
                     ? 2
                     : 1;
  t->leap_list_expires = sync->have_list ? sync->list.expires : 0;
  t->holdover = t->synced && sync->peer < 0;
  if (t->holdover)
    t->holdover_left =
        sync->set.holdover - fmax(ntsntp_ts_diff(now, sync->lost_at), 0);
  t->stratum = t->synced ? sync->stratum : 16;
  if (sync->synced) {
    t->refid = sync->refid;
    memcpy(t->ref_name, sync->ref_name, sizeof(t->ref_name));
    t->ref_time = ntsntp_sync_serve(sync, md->last_update);
    t->root_delay = sync->root_delay;
    t->root_disp = sync->root_disp + NTSNTP_PHI * (age > 0 ? age : 0);
  }
  t->system_offset = -ntsntp_ts_diff(ntsntp_sync_serve(sync, now), now);
  t->last_offset = md->last_offset;
  t->rms_offset = sqrt(md->rms_offset2);
  t->freq_ppm = md->freq * 1e6;
  t->resid_freq_ppm = md->resid_freq * 1e6;
  t->skew_ppm = md->skew * 1e6;
  t->update_interval = md->update_interval;
  t->updates = md->updates;
  t->steps = md->steps;
  t->clock_control = md->control;
}

ntsntp_ssize ntsntp_sync_drift_save(const ntsntp_sync *sync, char *out,
                                    size_t outlen) {
  return ntsntp__model_drift_save(&sync->model, out, outlen);
}

int ntsntp_sync_drift_load(ntsntp_sync *sync, const char *in, size_t len) {
  return ntsntp__model_drift_load(&sync->model, in, len);
}

uint32_t ntsntp_refid_ipv4(const uint8_t addr[4]) {
  return (uint32_t)addr[0] << 24 | (uint32_t)addr[1] << 16 |
         (uint32_t)addr[2] << 8 | addr[3];
}

uint32_t ntsntp_refid_ipv6(const uint8_t addr[16]) {
  struct md5_ctx ctx;
  uint8_t d[MD5_DIGEST_SIZE];
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-7.3
   *# If using the IPv6 address family, it is the first four octets of
   *# the MD5 hash of the IPv6 address. */
  md5_init(&ctx);
  md5_update(&ctx, 16, addr);
  md5_digest(&ctx, sizeof(d), d);
  return ntsntp_refid_ipv4(d);
}
