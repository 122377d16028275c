/* libntsntp: PHC time to system time for hardware timestamps. */
#include <math.h>
#include <string.h>

#include "ntsntp/hwclock.h"
#include "ntsntp/ts.h"

#define N NTSNTP_HWCLOCK_SAMPLES
/* Worst reading used, and the largest jump taken for a PHC step. */
#define MAX_ERR 1e-3
#define MAX_JUMP 1e-3
/* Before a rate is known, the clocks may drift apart by this much. */
#define MAX_RATE 500e-6
/* Conversion beyond the readings: how far, and the rate error assumed. */
#define MAX_EXTRAPOLATION 16.0
#define EXTRAPOLATION_ERR 10e-6

void ntsntp_hwclock_init(ntsntp_hwclock *h) {
  memset(h, 0, sizeof(*h));
}

/* |v| NTP-64 units as seconds, signed. */
static double sec(uint64_t v) {
  return (double)(int64_t)v / 4294967296.0;
}

/* Reading |i| counted from the oldest. */
static unsigned idx(const ntsntp_hwclock *h, unsigned i) {
  return (h->next + N - h->n + i) % N;
}

/*
 * The weighted least-squares line through the readings, in coordinates
 * that keep double precision: x is the PHC time and y the offset sys - phc,
 * both taken relative to the newest reading in integer NTP-64 arithmetic
 * (the PHC may count from another epoch, seconds or decades away).
 */
static void fit(ntsntp_hwclock *h) {
  unsigned last = (h->next + N - 1) % N, i;
  uint64_t off0 = h->sys[last] - h->phc[last];
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0, d, ss = 0;
  h->ref_phc = h->phc[last];
  for (i = 0; i < h->n; i++) {
    unsigned k = idx(h, i);
    double x = sec(h->phc[k] - h->ref_phc);
    double y = sec((h->sys[k] - h->phc[k]) - off0);
    double w = 1.0 / (h->err[k] * h->err[k] + 1e-18);
    sw += w;
    sx += w * x;
    sy += w * y;
    sxx += w * x * x;
    sxy += w * x * y;
  }
  d = sw * sxx - sx * sx;
  if (h->n >= 2 && d > 0) {
    h->rate = (sw * sxy - sx * sy) / d;
    h->offset = (sy - h->rate * sx) / sw;
    h->valid = 1;
  } else {
    h->rate = 0;
    h->offset = sy / sw;
    h->valid = 0;
  }
  for (i = 0; i < h->n; i++) {
    unsigned k = idx(h, i);
    double x = sec(h->phc[k] - h->ref_phc);
    double r = sec((h->sys[k] - h->phc[k]) - off0) - (h->offset + h->rate * x);
    ss += r * r;
  }
  h->rms = sqrt(ss / h->n);
}

int ntsntp_hwclock_add(ntsntp_hwclock *h, uint64_t phc, uint64_t sys,
                       double err) {
  if (!(err >= 0 && err <= MAX_ERR))
    return NTSNTP_ERR_INVALID_ARG;
  if (h->n > 0) {
    unsigned last = (h->next + N - 1) % N;
    double dt = sec(phc - h->phc[last]);
    double pred = h->offset + h->rate * sec(phc - h->ref_phc);
    double tol = MAX_JUMP + (h->valid ? 0 : MAX_RATE * fabs(dt));
    /* The new offset against the newest reading's, in NTP-64 first. */
    double got = sec((sys - phc) - (h->sys[last] - h->phc[last]));
    if (dt <= 0 || fabs(got - pred) > tol) {
      h->n = 0;
      h->next = 0;
      h->resets++;
    }
  }
  h->phc[h->next] = phc;
  h->sys[h->next] = sys;
  h->err[h->next] = err;
  h->next = (h->next + 1) % N;
  if (h->n < N)
    h->n++;
  fit(h);
  return 0;
}

int ntsntp_hwclock_convert(const ntsntp_hwclock *h, uint64_t phc,
                           uint64_t *sys, double *err) {
  double x, x0, corr, e = 0;
  uint64_t off0;
  unsigned i, last;
  if (h->n < 2 || !h->valid)
    return NTSNTP_ERR_STATE;
  last = (h->next + N - 1) % N;
  x = sec(phc - h->ref_phc);
  x0 = sec(h->phc[idx(h, 0)] - h->ref_phc);
  if (x > MAX_EXTRAPOLATION || x < x0 - MAX_EXTRAPOLATION)
    return NTSNTP_ERR_MALFORMED;
  /* The newest reading's offset exactly, the fit's correction in
   * seconds. */
  off0 = h->sys[last] - h->phc[last];
  corr = h->offset + h->rate * x;
  *sys = phc + off0 + (uint64_t)(int64_t)llround(corr * 4294967296.0);
  if (err != NULL) {
    for (i = 0; i < h->n; i++)
      e += h->err[idx(h, i)];
    e = e / h->n + h->rms;
    if (x > 0)
      e += x * EXTRAPOLATION_ERR;
    else if (x < x0)
      e += (x0 - x) * EXTRAPOLATION_ERR;
    *err = e;
  }
  return 0;
}
