/*
 * Internal: model of the system clock against true time.
 *
 * Two time domains.  "System" time is what the system clock reads.  "Raw"
 * time is the system clock without the corrections the model made to it
 * through ntsntp_clock_ops (none unless clock control is on): a measured
 * offset y_sys (true - system) at t becomes y_raw = y_sys + A(t), where
 * A is the "applied" correction segment.  The regression and the source
 * filters work on raw offsets, which are not disturbed by our own slews.
 *
 * The served time is  system + M(t) - A(t),  M being the model's correction
 * segment.  With clock control M == A after each successful update and the
 * system clock itself is served; without it A == 0.
 */
#ifndef NTSNTP_CLOCK_MODEL_H
#define NTSNTP_CLOCK_MODEL_H

#include <stdatomic.h>

#include "ntsntp/sync.h"

#define NTSNTP__HIST 32 /* regression points kept */

/* base + freq * (t - t0), plus |rem| slewed in at |rate| s/s from t0. */
typedef struct ntsntp__seg {
  uint64_t t0;
  double base, freq, rem, rate;
} ntsntp__seg;

double ntsntp__seg_eval(const ntsntp__seg *s, uint64_t t);

#define NTSNTP__SNAP_WORDS 10
typedef struct ntsntp__model {
  double max_slew, step_thr;
  int step_limit;
  ntsntp_clock_ops ops;
  int control, rtcsync;
  /* Regression history, oldest first: raw offsets. */
  uint64_t ht[NTSNTP__HIST];
  double hy[NTSNTP__HIST];
  double hw[NTSNTP__HIST]; /* weights, 1 / error^2 */
  unsigned hn;
  double freq, skew, rms; /* estimate: d(true - raw)/dt and its error */
  uint64_t line_t;        /* the fitted line: line_a at line_t */
  double line_a;
  double prior_freq, prior_skew;
  int have_prior, have_freq;
  ntsntp__seg m, a;
  unsigned updates, steps;
  uint64_t last_update, last_rtc;
  double last_offset, rms_offset2, update_interval, resid_freq;
  /* Sequence lock over the words of m and a, for serve(). */
  atomic_uint seq;
  atomic_uint_least64_t snap[NTSNTP__SNAP_WORDS];
} ntsntp__model;

void ntsntp__model_init(ntsntp__model *md, const ntsntp_sync_settings *s);

/*
 * At system time |t|, a new raw offset |y| measured at |ts| with error
 * |err| (> 0, relative weight) from a combined source; |jitter| is the
 * system jitter.
 * Returns 1 if the served time was stepped, else 0.  |*sys_step| is the
 * step applied to the system clock through the clock ops (0 if none):
 * the caller must relabel its stored system times by it.
 */
int ntsntp__model_update(ntsntp__model *md, uint64_t t, uint64_t ts,
                         double y, double err, double jitter,
                         double *sys_step);

/* A(t): the correction applied to the system clock. */
double ntsntp__model_applied(const ntsntp__model *md, uint64_t t);

/* system + M - A, from the snapshot (any thread). */
uint64_t ntsntp__model_serve(const ntsntp__model *md, uint64_t sys);

ntsntp_ssize ntsntp__model_drift_save(const ntsntp__model *md, char *out,
                                      size_t outlen);
int ntsntp__model_drift_load(ntsntp__model *md, const char *in, size_t len);

#endif
