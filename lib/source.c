/* libntsntp: one upstream source: poll, reach, RFC 5905 clock filter. */
#include <math.h>
#include <string.h>

#include "source.h"

#define MAXDISP 16.0    /* RFC 5905 MAXDISP (s) */
#define MINDISP 0.001   /* ntpd's default "tos mindist" (RFC 5905: .01) */
#define MAX_DELAY 16.0  /* a longer round trip is bogus */
#define MIN_DELAY -1e-3 /* negative delay tolerated from clock granularity */
#define UNREACH 8       /* missed polls before backing off */

static double log2d(int8_t p) { return ldexp(1.0, p); }

void ntsntp__source_init(ntsntp__source *s, const ntsntp_sync_settings *set,
                         const char *name, uint32_t refid, uint64_t now) {
  memset(s, 0, sizeof(*s));
  if (name) {
    strncpy(s->name, name, sizeof(s->name) - 1);
  }
  s->refid = refid;
  s->minpoll = set->minpoll;
  s->maxpoll = set->maxpoll;
  s->poll = set->minpoll;
  s->burst_left = set->iburst;
  s->precision = set->precision;
  s->next_poll = now;
  s->stratum = 16;
  s->leap = NTSNTP_LEAP_UNSYNC;
  s->state = NTSNTP_SOURCE_UNUSABLE;
}

int ntsntp__source_on_send(ntsntp__source *s, uint64_t now, double rnd) {
  double interval;

  if (s->stopped)
    return NTSNTP_ERR_STATE;
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-13
   *# the reach register is shifted left one bit [at each poll] */
  s->reach = (uint8_t)(s->reach << 1);
  if (s->reach == 0) {
    if (s->ever_reached)
      s->state = NTSNTP_SOURCE_UNREACHABLE;
  }
  /* A silent server is polled less and less often (RFC 5905 "unreach"). */
  if (++s->missed > UNREACH && s->poll < s->maxpoll)
    s->poll++;
  if (s->burst_left > 1) {
    s->burst_left--;
    /* 2 s apart, or closer when even minpoll is shorter (chrony too). */
    interval = log2d(s->minpoll < NTSNTP__IBURST_POLL ? s->minpoll
                                                       : NTSNTP__IBURST_POLL);
  } else {
    s->burst_left = 0;
    /* Up to 1/16 earlier, so that clients started together drift apart. */
    interval = log2d(s->poll) * (1.0 - rnd / 16.0);
  }
  s->next_poll = ntsntp_ts_add(now, interval);
  return 0;
}

double ntsntp__source_offset(const ntsntp__source *s, uint64_t now,
                             double freq) {
  return s->offset + freq * ntsntp_ts_diff(now, s->t);
}

double ntsntp__source_root_dist(const ntsntp__source *s, uint64_t now) {
  double age = ntsntp_ts_diff(now, s->t);
  if (age < 0)
    age = 0;
  /*= https://www.rfc-editor.org/rfc/rfc5905#appendix-A.5.5.2
   *# return (max(MINDISP, p->rootdelay + p->delay) / 2 + p->rootdisp +
   *#     p->disp + PHI * (c.t - p->t) + p->jitter); */
  return fmax(MINDISP, s->root_delay + s->delay) / 2 + s->root_disp + s->disp +
         NTSNTP_PHI * age + s->jitter;
}

/* Recomputes the filter output from the stages (RFC 5905 section 10). */
static void filter_output(ntsntp__source *s, double freq, uint64_t now) {
  int idx[NTSNTP__NSTAGE];
  int n = 0, i, j;
  double disp = 0, jit = 0, o0;

  for (i = 0; i < NTSNTP__NSTAGE; i++)
    if (s->f[i].valid && !s->f[i].spike)
      idx[n++] = i;
  if (n == 0)
    return;
  /* Insertion sort by delay; ties keep the newer sample first. */
  for (i = 1; i < n; i++) {
    int k = idx[i];
    for (j = i; j > 0 && s->f[idx[j - 1]].delay > s->f[k].delay; j--)
      idx[j] = idx[j - 1];
    idx[j] = k;
  }
  o0 = s->f[idx[0]].offset;
  for (i = 0; i < n; i++) {
    const ntsntp__stage *st = &s->f[idx[i]];
    double age = ntsntp_ts_diff(now, st->t);
    /* Old stages are projected to the chosen sample's time with the
     * model's frequency: the local clock is not disciplined here. */
    double o = st->offset + freq * ntsntp_ts_diff(s->f[idx[0]].t, st->t);
    /*= https://www.rfc-editor.org/rfc/rfc5905#section-10
     *# epsilon = sum(epsilon_i / 2^(i+1)) [over the stages sorted by
     *# delay] */
    disp += (st->disp + NTSNTP_PHI * (age > 0 ? age : 0)) / ldexp(1.0, i + 1);
    if (i > 0)
      jit += (o - o0) * (o - o0);
  }
  s->have = 1;
  s->t = s->f[idx[0]].t;
  s->offset = o0;
  s->delay = s->f[idx[0]].delay;
  s->disp = disp;
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-10
   *# psi = sqrt(1/(n-1) * sum((theta_0 - theta_j)^2)) */
  s->jitter = n > 1 ? sqrt(jit / (n - 1)) : 0;
  if (s->jitter < log2d(s->precision))
    s->jitter = log2d(s->precision);
}

int ntsntp__source_on_sample(ntsntp__source *s, const ntsntp_pkt_hdr *h,
                             uint64_t t, double offset, double delay,
                             double freq, uint64_t now) {
  double rd = ntsntp_short_to_double(h->root_delay);
  double rdisp = ntsntp_short_to_double(h->root_disp);
  int had = s->have, spike = 0, i;

  if (s->stopped)
    return NTSNTP_ERR_STATE;
  /*= https://www.rfc-editor.org/rfc/rfc5905#appendix-A.5.1.1
   *# if (p->leap == NOSYNC || p->stratum >= MAXSTRAT)
   *#         return;  [unsynchronized] */
  if (h->leap == NTSNTP_LEAP_UNSYNC || h->stratum == 0 || h->stratum >= 16)
    return NTSNTP_ERR_MALFORMED;
  /*# if (r->rootdelay / 2 + r->rootdisp >= MAXDISP || p->reftime >
   *#     r->xmt)
   *#         return;  [invalid header values]
   * (MAXDIST rather than MAXDISP: such a source could never be selected.) */
  if (rd / 2 + rdisp >= NTSNTP_MAXDIST || !(delay >= MIN_DELAY) ||
      !(delay < MAX_DELAY) || !isfinite(offset) ||
      (h->ref_ts && ntsntp_ts_diff(h->ref_ts, h->tx_ts) > 0))
    return NTSNTP_ERR_MALFORMED;
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-8
   *# delta = max(delta, rho) [delay at least the precision] */
  if (delay < log2d(s->precision))
    delay = log2d(s->precision);

  /* Reachable again after a silence: poll at minpoll to catch up. */
  if (s->reach == 0 && s->ever_reached)
    s->poll = s->minpoll;
  s->reach |= 1;
  s->ever_reached = 1;
  s->missed = 0;
  s->stratum = h->stratum;
  s->leap = h->leap;
  s->root_delay = rd;
  s->root_disp = rdisp;
  s->last_offset = offset;
  s->last_rx = now;
  if (s->state == NTSNTP_SOURCE_UNREACHABLE)
    s->state = NTSNTP_SOURCE_UNUSABLE;

  /* Popcorn spike suppressor (RFC 5905 section 10, as in ntpd): a sample
   * inconsistent with the current estimate beyond SGATE * jitter plus both
   * samples' error bounds (delay / 2) is held back.  NSPIKE in a row mean
   * the level really changed (the local clock was stepped): the old stages
   * are flushed and the held-back ones become the filter's content. */
  if (had) {
    double pred = ntsntp__source_offset(s, t, freq);
    double age = fabs(ntsntp_ts_diff(t, s->t));
    double gate = NTSNTP__SGATE * s->jitter + (delay + s->delay) / 2 +
                  NTSNTP_PHI * age;
    spike = fabs(offset - pred) > gate;
  }
  for (i = NTSNTP__NSTAGE - 1; i > 0; i--)
    s->f[i] = s->f[i - 1];
  s->f[0].t = t;
  s->f[0].offset = offset;
  s->f[0].delay = delay;
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-8
   *# epsilon = r.rho + s.rho + PHI * delta [ both precisions ] */
  s->f[0].disp = log2d(h->precision) + log2d(s->precision) + NTSNTP_PHI * delay;
  s->f[0].valid = 1;
  s->f[0].spike = spike;
  if (spike) {
    if (++s->nspike < NTSNTP__NSPIKE)
      return 0;
    for (i = 0; i < NTSNTP__NSTAGE; i++) {
      if (!s->f[i].spike)
        s->f[i].valid = 0;
      s->f[i].spike = 0;
    }
    s->have = 0;
    s->good = 0;
    if (s->poll > s->minpoll)
      s->poll--;
  } else if (s->burst_left == 0 && ++s->good >= NTSNTP__POLL_GOOD) {
    /* Consistent samples: poll less often, up to maxpoll. */
    s->good = 0;
    if (s->poll < s->maxpoll)
      s->poll++;
  }
  s->nspike = 0;
  filter_output(s, freq, now);
  return 1;
}

int ntsntp__source_on_kod(ntsntp__source *s, uint32_t code, int8_t srv_poll,
                          uint64_t now) {
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-7.4
   *# For kiss codes DENY and RSTR, the client MUST demobilize any
   *# associations to that server and stop sending packets to that
   *# server. */
  if (code == NTSNTP_KOD_DENY || code == NTSNTP_KOD_RSTR) {
    s->kod = code;
    s->stopped = 1;
    s->state = NTSNTP_SOURCE_STOPPED;
    s->next_poll = UINT64_MAX;
    return NTSNTP_ERR_CLOSED;
  }
  /*# For kiss code RATE, the client MUST immediately reduce its polling
   *# interval to that server and continue to reduce it each time it
   *# receives a RATE kiss code. */
  if (code == NTSNTP_KOD_RATE) {
    int p = s->poll + 1;
    if (p < srv_poll)
      p = srv_poll;
    if (p > s->maxpoll)
      p = s->maxpoll;
    if (p > s->poll)
      s->poll = (int8_t)p;
    s->kod = code;
    s->burst_left = 0;
    s->good = 0;
    s->next_poll = ntsntp_ts_add(now, log2d(s->poll));
  }
  return 0;
}

void ntsntp__source_relabel(ntsntp__source *s, double delta) {
  int i;
  for (i = 0; i < NTSNTP__NSTAGE; i++)
    if (s->f[i].valid)
      s->f[i].t = ntsntp_ts_add(s->f[i].t, delta);
  if (s->have)
    s->t = ntsntp_ts_add(s->t, delta);
  if (s->last_rx)
    s->last_rx = ntsntp_ts_add(s->last_rx, delta);
  if (s->next_poll != UINT64_MAX)
    s->next_poll = ntsntp_ts_add(s->next_poll, delta);
}
