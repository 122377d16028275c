/* libntsntp: clock model (regression, bounded slew, makestep, drift). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock_model.h"

#define MAX_FREQ 500e-6   /* RFC 5905 MAXFREQ tolerance; also drift limit */
#define MAX_SKEW 100e-6   /* largest skew accepted from a drift file */
#define MIN_SKEW 1e-8     /* floor for a prior's weight */
#define RESET_FLOOR 1e-3  /* error that always restarts the history */
#define RESET_RMS 8.0     /* ... or this many residual RMS */
#define RUNS_MIN 6        /* points before the runs test applies */
#define RTC_INTERVAL 660  /* s, the kernel's 11-minute mode */
#define PRIOR_SPAN 900.0  /* s of history after which the prior is dropped */

double ntsntp__seg_eval(const ntsntp__seg *s, uint64_t t) {
  double dt = ntsntp_ts_diff(t, s->t0), c = 0;
  if (dt > 0 && s->rem != 0) {
    c = s->rate * dt;
    if (c > fabs(s->rem))
      c = fabs(s->rem);
    if (s->rem < 0)
      c = -c;
  }
  return s->base + s->freq * dt + c;
}

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  return u;
}

static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}

static void seg_to_words(const ntsntp__seg *s, uint64_t *w) {
  w[0] = s->t0;
  w[1] = dbits(s->base);
  w[2] = dbits(s->freq);
  w[3] = dbits(s->rem);
  w[4] = dbits(s->rate);
}

static void words_to_seg(const uint64_t *w, ntsntp__seg *s) {
  s->t0 = w[0];
  s->base = bitsd(w[1]);
  s->freq = bitsd(w[2]);
  s->rem = bitsd(w[3]);
  s->rate = bitsd(w[4]);
}

/* Sequence lock with atomic data words (no data race, per C11): the writer
 * makes seq odd, writes, makes it even; readers retry on a change. */
static void publish(ntsntp__model *md) {
  uint64_t w[NTSNTP__SNAP_WORDS];
  unsigned seq = atomic_load_explicit(&md->seq, memory_order_relaxed), i;
  seg_to_words(&md->m, w);
  seg_to_words(&md->a, w + 5);
  atomic_store_explicit(&md->seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  for (i = 0; i < NTSNTP__SNAP_WORDS; i++)
    atomic_store_explicit(&md->snap[i], w[i], memory_order_relaxed);
  atomic_store_explicit(&md->seq, seq + 2, memory_order_release);
}

uint64_t ntsntp__model_serve(const ntsntp__model *cmd, uint64_t sys) {
  ntsntp__model *md = (ntsntp__model *)cmd; /* atomics need non-const */
  uint64_t w[NTSNTP__SNAP_WORDS];
  ntsntp__seg m, a;
  unsigned s1, s2, i;
  do {
    s1 = atomic_load_explicit(&md->seq, memory_order_acquire);
    for (i = 0; i < NTSNTP__SNAP_WORDS; i++)
      w[i] = atomic_load_explicit(&md->snap[i], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    s2 = atomic_load_explicit(&md->seq, memory_order_relaxed);
  } while ((s1 & 1) || s1 != s2);
  words_to_seg(w, &m);
  words_to_seg(w + 5, &a);
  return ntsntp_ts_add(sys, ntsntp__seg_eval(&m, sys) - ntsntp__seg_eval(&a, sys));
}

void ntsntp__model_init(ntsntp__model *md, const ntsntp_sync_settings *s) {
  unsigned i;
  memset(md, 0, sizeof(*md));
  md->control = s->clock_ops != NULL;
  if (md->control)
    md->ops = *s->clock_ops;
  md->rtcsync = s->rtcsync;
  /* adjtime slews at a fixed rate: the model must slew alike to know A. */
  md->max_slew = md->control ? NTSNTP_KERNEL_SLEW_PPM * 1e-6
                             : s->max_slew_ppm * 1e-6;
  md->step_thr = s->makestep_threshold;
  md->step_limit = s->makestep_limit;
  md->prior_skew = MAX_FREQ; /* know nothing: 0 +- 500 ppm */
  atomic_init(&md->seq, 0);
  for (i = 0; i < NTSNTP__SNAP_WORDS; i++)
    atomic_init(&md->snap[i], 0);
  publish(md);
}

double ntsntp__model_applied(const ntsntp__model *md, uint64_t t) {
  return ntsntp__seg_eval(&md->a, t);
}

typedef struct fit {
  double a, b, rms, sxx, s2;
  unsigned n;
  int random; /* residuals pass the runs test */
} fit;

/*
 * Weighted least squares over points [start, hn) with x relative to |t|;
 * a is the value at |t|.  The runs test (one-sided 5%, normal
 * approximation) flags residuals with a trend, as chrony's regress.c does
 * to decide how many old points to drop.
 */
static void linfit(const ntsntp__model *md, unsigned start, uint64_t t,
                   fit *f) {
  double sw = 0, xm = 0, ym = 0, sxy = 0, sxx = 0, ss = 0, sws = 0;
  unsigned n = md->hn - start, i, n1 = 0, n2 = 0, runs = 0;
  int prev = 0;

  for (i = start; i < md->hn; i++) {
    sw += md->hw[i];
    xm += md->hw[i] * ntsntp_ts_diff(md->ht[i], t);
    ym += md->hw[i] * md->hy[i];
  }
  xm /= sw;
  ym /= sw;
  for (i = start; i < md->hn; i++) {
    double dx = ntsntp_ts_diff(md->ht[i], t) - xm;
    sxx += md->hw[i] * dx * dx;
    sxy += md->hw[i] * dx * (md->hy[i] - ym);
  }
  f->n = n;
  f->sxx = sxx;
  f->b = n >= 3 && sxx > 0 ? sxy / sxx : md->freq;
  f->a = ym - f->b * xm;
  for (i = start; i < md->hn; i++) {
    double r = md->hy[i] - (f->a + f->b * ntsntp_ts_diff(md->ht[i], t));
    int sg = r >= 0 ? 1 : -1;
    ss += r * r;
    sws += md->hw[i] * r * r;
    if (sg > 0)
      n1++;
    else
      n2++;
    if (sg != prev)
      runs++;
    prev = sg;
  }
  f->rms = n > 2 ? sqrt(ss / (n - 2)) : 0;
  f->s2 = n > 2 ? sws / (n - 2) : 0; /* weighted residual variance */
  f->random = 1;
  if (n >= RUNS_MIN) {
    double mu = 2.0 * n1 * n2 / n + 1;
    double var = (mu - 1) * (mu - 2) / (n - 1);
    f->random = n1 && n2 && runs >= mu - 1.645 * sqrt(var);
  }
}

static void drop_oldest(ntsntp__model *md, unsigned k) {
  memmove(md->ht, md->ht + k, (md->hn - k) * sizeof(md->ht[0]));
  memmove(md->hy, md->hy + k, (md->hn - k) * sizeof(md->hy[0]));
  memmove(md->hw, md->hw + k, (md->hn - k) * sizeof(md->hw[0]));
  md->hn -= k;
}

/* Fits the history, dropping the oldest points while the residuals show a
 * trend (a frequency change or an unnoticed step), and blends the slope
 * with the prior (0 +- MAX_FREQ, the drift file, or the estimate before a
 * reset) by inverse variance while the history spans less than PRIOR_SPAN.
 * Returns the offset at |t|. */
static double estimate(ntsntp__model *md, uint64_t t) {
  unsigned start = 0;
  fit f;
  for (;;) {
    linfit(md, start, t, &f);
    if (f.random || md->hn - start <= 3)
      break;
    start++;
  }
  if (start)
    drop_oldest(md, start);
  md->rms = f.rms;
  if (f.n >= 3 && f.sxx > 0) {
    /* Standard error of the slope; the weights are only relative. */
    double sb = fmax(sqrt(f.s2 / f.sxx), MIN_SKEW);
    double b = f.b;
    if (ntsntp_ts_diff(md->ht[md->hn - 1], md->ht[0]) < PRIOR_SPAN) {
      double wp = 1 / (md->prior_skew * md->prior_skew), w = 1 / (sb * sb);
      b = (b * w + md->prior_freq * wp) / (w + wp);
      sb = 1 / sqrt(w + wp);
    }
    md->freq = fmin(fmax(b, -MAX_FREQ), MAX_FREQ);
    md->skew = sb;
    md->have_freq = 1;
  } else {
    /* Too few points for a slope: the prior. */
    md->freq = md->prior_freq;
    md->skew = md->prior_skew;
  }
  /* The line through the weighted centroid with the chosen slope. */
  md->line_t = t;
  {
    double sw = 0, xm = 0, ym = 0;
    unsigned i;
    for (i = 0; i < md->hn; i++) {
      sw += md->hw[i];
      xm += md->hw[i] * ntsntp_ts_diff(md->ht[i], t);
      ym += md->hw[i] * md->hy[i];
    }
    md->line_a = ym / sw - md->freq * (xm / sw);
  }
  return md->line_a;
}

/* Drives the system clock so that A follows M; turns control off when an
 * operation fails (the served time stays right: it is system + M - A). */
static double control(ntsntp__model *md, uint64_t t, int step) {
  ntsntp__seg na = md->a;
  double jump = md->m.base - ntsntp__seg_eval(&md->a, t);
  int rv = 0;

  if (step) {
    rv = md->ops.step(md->ops.user, jump);
    if (rv) {
      md->control = 0;
      return 0;
    }
    /* Stepping cancels a slew in progress (ntsntp_clock_ops). */
    na.t0 = t;
    na.base = md->m.base;
    na.rem = 0;
  } else {
    jump = 0;
  }
  if (md->ops.slew && md->ops.slew(md->ops.user, md->m.rem, md->m.freq * 1e6)) {
    md->control = 0;
    md->a = na;
    return jump;
  }
  md->a = md->m;
  return jump;
}

static void relabel(ntsntp__model *md, double d) {
  unsigned i;
  for (i = 0; i < md->hn; i++)
    md->ht[i] = ntsntp_ts_add(md->ht[i], d);
  md->m.t0 = ntsntp_ts_add(md->m.t0, d);
  md->line_t = ntsntp_ts_add(md->line_t, d);
  md->a.t0 = ntsntp_ts_add(md->a.t0, d);
  md->last_update = ntsntp_ts_add(md->last_update, d);
  if (md->last_rtc)
    md->last_rtc = ntsntp_ts_add(md->last_rtc, d);
}

int ntsntp__model_update(ntsntp__model *md, uint64_t t, uint64_t ts,
                         double y, double err, double jitter,
                         double *sys_step) {
  double target, cur, e, old_freq = md->m.freq;
  ntsntp__seg nm;
  int step;

  *sys_step = 0;
  if (md->hn) {
    /* Predicted by the current line: a large error means the local clock
     * was stepped under us; the old points are useless then, but the
     * frequency is still a good prior. */
    double pred = md->line_a + md->freq * ntsntp_ts_diff(ts, md->line_t);
    double thr = fmax(fmax(RESET_RMS * md->rms, 4 * jitter), RESET_FLOOR);
    if (fabs(y - pred) > thr) {
      md->prior_freq = md->freq;
      md->prior_skew = fmax(md->skew, MIN_SKEW);
      md->hn = 0;
    }
  }
  if (md->hn == NTSNTP__HIST)
    drop_oldest(md, 1);
  md->ht[md->hn] = ts;
  md->hw[md->hn] = 1 / (err * err);
  md->hy[md->hn++] = y;
  target = estimate(md, t);

  cur = md->updates ? ntsntp__seg_eval(&md->m, t) : 0;
  e = target - cur;
  md->last_offset = y - (md->updates ? ntsntp__seg_eval(&md->m, ts) : 0);
  md->rms_offset2 = md->updates ? md->rms_offset2 +
                                      (md->last_offset * md->last_offset -
                                       md->rms_offset2) / 8
                                : md->last_offset * md->last_offset;
  md->update_interval = md->updates ? ntsntp_ts_diff(t, md->last_update) : 0;
  md->resid_freq = md->freq - old_freq;

  /* chrony's makestep: step only in the first |step_limit| updates. */
  step = md->updates && md->step_thr > 0 && fabs(e) > md->step_thr &&
         (md->step_limit < 0 || md->updates < (unsigned)md->step_limit) &&
         (!md->control || md->ops.step);
  nm.t0 = t;
  nm.freq = md->freq;
  nm.rate = md->max_slew;
  if (step || !md->updates) {
    /* The first update sets the served time: nothing was served before
     * (unsynchronised), so there is no continuity to keep. */
    nm.base = target;
    nm.rem = 0;
  } else {
    nm.base = cur;
    nm.rem = e;
  }
  md->m = nm;
  if (md->control)
    *sys_step = control(md, t, step);
  else
    md->a.t0 = t; /* stays zero; keeps its t0 recent */
  if (step)
    md->steps++;
  md->updates++;
  md->last_update = t;
  if (*sys_step != 0)
    relabel(md, *sys_step);
  if (md->control && md->rtcsync && md->ops.set_rtc &&
      (!md->last_rtc ||
       ntsntp_ts_diff(md->last_update, md->last_rtc) >= RTC_INTERVAL)) {
    md->ops.set_rtc(md->ops.user);
    md->last_rtc = md->last_update;
  }
  publish(md);
  return step;
}

ntsntp_ssize ntsntp__model_drift_save(const ntsntp__model *md, char *out,
                                      size_t outlen) {
  int n;
  if (!md->have_freq && !md->have_prior)
    return NTSNTP_ERR_STATE; /* nothing better than a guess */
  /* chrony's driftfile: frequency and skew in ppm. */
  n = snprintf(out, outlen, "%.6f %.6f\n", md->freq * 1e6, md->skew * 1e6);
  if (n < 0 || (size_t)n >= outlen)
    return NTSNTP_ERR_NOBUF;
  return n;
}

/* A decimal number: [+-]digits[.digits][e[+-]digits]; no inf, nan, hex. */
static size_t scan_number(const char *p, size_t len) {
  size_t i = 0, d = 0;
  if (i < len && (p[i] == '+' || p[i] == '-'))
    i++;
  while (i < len && p[i] >= '0' && p[i] <= '9')
    i++, d++;
  if (i < len && p[i] == '.') {
    i++;
    while (i < len && p[i] >= '0' && p[i] <= '9')
      i++, d++;
  }
  if (!d)
    return 0;
  if (i < len && (p[i] == 'e' || p[i] == 'E')) {
    size_t j = i + 1, e = 0;
    if (j < len && (p[j] == '+' || p[j] == '-'))
      j++;
    while (j < len && p[j] >= '0' && p[j] <= '9')
      j++, e++;
    if (!e)
      return 0;
    i = j;
  }
  return i;
}

static int parse_number(const char *p, size_t n, double *v) {
  char buf[64];
  char *end;
  if (n == 0 || n >= sizeof(buf))
    return NTSNTP_ERR_MALFORMED;
  memcpy(buf, p, n);
  buf[n] = 0;
  *v = strtod(buf, &end);
  return *end == 0 && isfinite(*v) ? 0 : NTSNTP_ERR_MALFORMED;
}

static size_t skip_blank(const char *p, size_t len, size_t i) {
  while (i < len && (p[i] == ' ' || p[i] == '\t'))
    i++;
  return i;
}

int ntsntp__model_drift_load(ntsntp__model *md, const char *in, size_t len) {
  double f, s;
  size_t i, n, j;

  if (md->updates)
    return NTSNTP_ERR_STATE;
  i = skip_blank(in, len, 0); /* chrony pads with "%20.6f" */
  n = scan_number(in + i, len - i);
  if (!n || parse_number(in + i, n, &f))
    return NTSNTP_ERR_MALFORMED;
  j = skip_blank(in, len, i + n);
  if (j == i + n)
    return NTSNTP_ERR_MALFORMED; /* no separator */
  i = j;
  n = scan_number(in + i, len - i);
  if (!n || parse_number(in + i, n, &s))
    return NTSNTP_ERR_MALFORMED;
  i += n;
  if (i < len && in[i] == '\n')
    i++;
  if (i != len)
    return NTSNTP_ERR_MALFORMED;
  f *= 1e-6;
  s *= 1e-6;
  if (fabs(f) > MAX_FREQ || s < 0 || s > MAX_SKEW)
    return NTSNTP_ERR_INVALID_ARG;
  md->prior_freq = md->freq = f;
  md->prior_skew = fmax(s, MIN_SKEW);
  md->skew = s;
  md->have_prior = 1;
  return 0;
}
