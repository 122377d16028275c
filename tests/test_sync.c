/*
 * Sync tests: clock filter, selection, clock model, against simulated
 * clocks only.  Nothing here reads or changes the machine's clock.
 *
 * The simulation keeps true time T (seconds since an epoch) and a local
 * "system" clock that starts off by an offset, runs fast by a frequency
 * error, may be stepped, and (with clock control) obeys the injected
 * ntsntp_clock_ops.  Servers answer through the real client code with
 * network legs of base + |N(0, sigma)| each way.
 */
#include <math.h>

#include "clock_model.h"
#include "ntsntp/sync.h"
#include "select.h"
#include "source.h"
#include "testutil.h"

/* 2025-01-01 in NTP seconds. */
#define EPOCH_S (1735689600ULL + NTSNTP_UNIX_OFFSET)
static const uint64_t EPOCH = EPOCH_S << 32;

#define TICK 0.25
#define MAXSRV 6

/* Error bounds checked (docs/sync.md). */
#define BOUND_SERVED 200e-6 /* served time error after convergence, s */
#define BOUND_FREQ 1.0      /* frequency estimate error, ppm */

static uint64_t xs_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static double uniform(uint64_t *s) {
  return (double)(xs_next(s) >> 11) / 9007199254740992.0;
}

static double gauss(uint64_t *s) {
  double u1 = uniform(s), u2 = uniform(s);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static int test_rand(void *user, uint8_t *buf, size_t len) {
  uint64_t *s = user;
  size_t i;
  for (i = 0; i < len; i++)
    buf[i] = (uint8_t)(xs_next(s) >> 56);
  return 0;
}

typedef struct simsrv {
  double bias;       /* server time - true time */
  double base_delay; /* one way, s */
  int down;
  uint32_t kod; /* answer with this KoD */
  uint32_t refid;
} simsrv;

typedef struct sim {
  double T;        /* true time since epoch */
  double sys;      /* local system clock since epoch */
  double rate_err; /* local oscillator error (s/s), > 0 fast */
  double kfreq;    /* kernel frequency correction (s/s) */
  double kslew;    /* single-shot offset left to slew */
  double sigma;    /* network noise per leg */
  uint64_t rng, prng;
  ntsntp_sync *sync;
  simsrv srv[MAXSRV];
  unsigned n;
  /* clock ops accounting */
  unsigned updates, steps, slews, rtcs, bad_step;
  int step_limit;
  /* measurements */
  double max_err, sum_err2;
  unsigned n_err;
  double max_rate_dev;
} sim;

static uint64_t ntp(double s) { return ntsntp_ts_add(EPOCH, s); }

static int op_read(void *user, struct timespec *ts) {
  (void)user;
  (void)ts;
  return -1; /* the core never reads a clock */
}

static int op_slew(void *user, double offset, double freq_ppm) {
  sim *sm = user;
  sm->kslew = offset;
  sm->kfreq = freq_ppm * 1e-6;
  sm->slews++;
  return 0;
}

static int op_step(void *user, double offset) {
  sim *sm = user;
  sm->sys += offset;
  sm->kslew = 0;
  sm->steps++;
  /* Only the first |step_limit| updates may step. */
  if ((int)sm->updates >= sm->step_limit)
    sm->bad_step++;
  return 0;
}

static int op_rtc(void *user) {
  ((sim *)user)->rtcs++;
  return 0;
}

static const ntsntp_clock_ops sim_ops = {op_read, op_slew, op_step, op_rtc,
                                         NULL,    NULL};

static void sim_init(sim *sm, const ntsntp_sync_settings *set0, double off,
                     double rate_err, unsigned nsrv) {
  ntsntp_sync_settings set;
  ntsntp_clock_ops ops = sim_ops;
  unsigned i;

  memset(sm, 0, sizeof(*sm));
  sm->rng = 0x1234567887654321ULL;
  sm->prng = 0x0badc0ffee0ddf00ULL;
  sm->sys = off;
  sm->rate_err = rate_err;
  sm->sigma = 100e-6;
  sm->n = nsrv;
  sm->step_limit = 3;
  if (set0)
    set = *set0;
  else
    ntsntp_sync_settings_default(&set);
  set.rand = test_rand;
  set.rand_user = &sm->prng;
  if (set.clock_ops) {
    ops = *set.clock_ops;
    ops.user = sm;
    set.clock_ops = &ops; /* copied by _new */
  }
  ck_assert_int_eq(ntsntp_sync_new(&sm->sync, &set, NULL, 0), 0);
  for (i = 0; i < nsrv; i++) {
    uint8_t a[4] = {192, 0, 2, (uint8_t)(10 + i)};
    char name[32];
    sm->srv[i].base_delay = 1e-3 * (i + 1);
    sm->srv[i].refid = ntsntp_refid_ipv4(a);
    snprintf(name, sizeof(name), "srv%u", i);
    ck_assert_int_eq(ntsntp_sync_add_source(sm->sync, name, sm->srv[i].refid,
                                            ntp(sm->sys)),
                     (int)i);
  }
}

/* Local clock rate (d sys / d T) right now. */
static double sim_rate(const sim *sm) {
  double r = 1 + sm->rate_err + sm->kfreq;
  if (sm->kslew > 0)
    r += NTSNTP_KERNEL_SLEW_PPM * 1e-6;
  else if (sm->kslew < 0)
    r -= NTSNTP_KERNEL_SLEW_PPM * 1e-6;
  return r;
}

static void sim_advance(sim *sm, double dt) {
  double s = NTSNTP_KERNEL_SLEW_PPM * 1e-6 * dt;
  sm->sys += dt * (1 + sm->rate_err + sm->kfreq);
  if (fabs(sm->kslew) <= s) {
    sm->sys += sm->kslew;
    sm->kslew = 0;
  } else {
    sm->sys += sm->kslew > 0 ? s : -s;
    sm->kslew -= sm->kslew > 0 ? s : -s;
  }
  sm->T += dt;
}

static double sim_err(const sim *sm);

/* One request/response with server |k| starting now. */
static void sim_exchange(sim *sm, unsigned k) {
  simsrv *sv = &sm->srv[k];
  ntsntp_client_params p;
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_pkt_hdr h;
  uint8_t buf[NTSNTP_PKT_HDR_LEN];
  double d_out, d_back, t2, rate = sim_rate(sm);
  uint64_t t1 = ntp(sm->sys), t4;
  int rv;

  memset(&p, 0, sizeof(p));
  p.poll = ntsntp_sync_poll(sm->sync, k);
  p.rand = test_rand;
  p.rand_user = &sm->prng;
  ck_assert_int_eq(ntsntp_sync_on_send(sm->sync, k, t1), 0);
  ck_assert_int_eq(ntsntp_client_request(&ex, &p, buf, sizeof(buf)),
                   NTSNTP_PKT_HDR_LEN);
  if (sv->down) {
    ntsntp_sync_on_timeout(sm->sync, k, ntp(sm->sys + 1));
    return;
  }
  d_out = sv->base_delay + fabs(gauss(&sm->rng)) * sm->sigma;
  d_back = sv->base_delay + fabs(gauss(&sm->rng)) * sm->sigma;
  t2 = sm->T + d_out + sv->bias;
  memset(&h, 0, sizeof(h));
  h.version = 4;
  h.mode = NTSNTP_MODE_SERVER;
  h.stratum = sv->kod ? 0 : 1;
  h.refid = sv->kod ? sv->kod : NTSNTP_KOD('G', 'P', 'S', 0);
  h.poll = p.poll;
  h.precision = -20;
  h.root_delay = ntsntp_short_from_double(0);
  h.root_disp = ntsntp_short_from_double(1e-4);
  h.ref_ts = ntp(t2 - 8);
  h.org_ts = ex.tx_ts;
  h.rx_ts = ntp(t2);
  h.tx_ts = ntp(t2 + 20e-6);
  ntsntp_pkt_encode_hdr(&h, buf);
  t4 = ntp(sm->sys + (d_out + 20e-6 + d_back) * rate);
  rv = ntsntp_client_response(&ex, buf, sizeof(buf), t1, t4, &smp);
  if (rv == NTSNTP_ERR_KOD) {
    ntsntp_sync_on_kod(sm->sync, k, &smp, t4);
    return;
  }
  ck_assert_int_eq(rv, 0);
  rv = ntsntp_sync_on_sample(sm->sync, k, &smp, t4);
  ck_assert_int_ge(rv, 0);
  if (getenv("SYNC_TRACE")) {
    ntsntp_tracking tr;
    ntsntp_source_info in;
    ntsntp_sync_tracking(sm->sync, t4, &tr);
    ntsntp_sync_source_info(sm->sync, k, t4, &in);
    printf("T=%8.1f k=%u upd=%d err=%9.1fus freq=%9.4f skew=%.4f last=%9.1fus poll=%d st=%c off=%9.1fus(true %9.1f) jit=%.1fus d=%.1fus\n", sm->T, k, rv,
           sim_err(sm)*1e6, tr.freq_ppm, tr.skew_ppm, tr.last_offset*1e6, in.poll, ntsntp_source_state_char(in.state),
           in.offset*1e6, (sm->T - sm->sys + sm->srv[k].bias)*1e6, in.jitter*1e6, in.delay*1e6);
  }
  sm->updates += (unsigned)rv;
}

/* Served time error (served - true) now. */
static double sim_err(const sim *sm) {
  return ntsntp_ts_diff(ntsntp_sync_serve(sm->sync, ntp(sm->sys)), ntp(sm->T));
}

/* Runs until true time |until|; measures the served error from |from|. */
static void sim_run(sim *sm, double until, double from) {
  double prev_served = 0, prev_T = 0;
  int have_prev = 0;
  while (sm->T < until) {
    unsigned k;
    /* Served time is read before this tick's exchanges: an update is
     * stamped with its receive time, later than the tick's start. */
    if (sm->T >= from) {
      double e = sim_err(sm);
      double served = sm->T + e;
      if (fabs(e) > sm->max_err)
        sm->max_err = fabs(e);
      sm->sum_err2 += e * e;
      sm->n_err++;
      if (have_prev) {
        double dev = fabs((served - prev_served) / (sm->T - prev_T) - 1);
        if (dev > sm->max_rate_dev)
          sm->max_rate_dev = dev;
        if (getenv("SYNC_TRACE") && dev > 500.5e-6)
          printf("RATE T=%.2f dev=%.3f ppm e=%.9f prev_e=%.9f sys=%.6f\n", sm->T, dev * 1e6, e, prev_served - prev_T, sm->sys);
      }
      prev_served = served;
      prev_T = sm->T;
      have_prev = 1;
    }
    for (k = 0; k < sm->n; k++)
      if (ntsntp_sync_next_poll(sm->sync, k) <= ntp(sm->sys))
        sim_exchange(sm, k);
    sim_advance(sm, TICK);
  }
}

static void sim_reset_stats(sim *sm) {
  sm->max_err = sm->sum_err2 = sm->max_rate_dev = 0;
  sm->n_err = 0;
}

static double sim_rms(const sim *sm) {
  return sm->n_err ? sqrt(sm->sum_err2 / sm->n_err) : 0;
}

/* A plain sample for the unit tests of the filter and selection. */
static void mk_sample(ntsntp_client_sample *s, double t, double offset,
                      double delay) {
  memset(s, 0, sizeof(*s));
  s->hdr.version = 4;
  s->hdr.mode = NTSNTP_MODE_SERVER;
  s->hdr.stratum = 1;
  s->hdr.precision = -20;
  s->hdr.root_disp = ntsntp_short_from_double(1e-4);
  s->hdr.tx_ts = ntp(t + offset);
  s->t1 = ntp(t - delay / 2);
  s->t4 = ntp(t + delay / 2);
  s->offset = offset;
  s->delay = delay;
}

/* ---------------------------------------------------------------- */

START_TEST(test_refid) {
  const uint8_t v4[4] = {192, 0, 2, 1};
  uint8_t any[16] = {0}, doc[16] = {0x20, 0x01, 0x0d, 0xb8};
  doc[15] = 1;
  ck_assert_uint_eq(ntsntp_refid_ipv4(v4), 0xC0000201u);
  /* MD5(16 zero bytes) = 4ae71336e44bf9bf79d2752e234818a5 */
  ck_assert_uint_eq(ntsntp_refid_ipv6(any), 0x4ae71336u);
  /* MD5(2001:db8::1) = 39ab9b3749629b8f2c7ccf39226f680c */
  ck_assert_uint_eq(ntsntp_refid_ipv6(doc), 0x39ab9b37u);
}
END_TEST

START_TEST(test_state_names) {
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_SELECTED), '*');
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_COMBINED), '+');
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_SELECTABLE), '-');
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_FALSETICKER), 'x');
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_JITTERY), '~');
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_UNREACHABLE), '?');
  ck_assert_int_eq(ntsntp_source_state_char(NTSNTP_SOURCE_STOPPED), '?');
  ck_assert_int_eq(ntsntp_source_state_char((ntsntp_source_state)99), '?');
  ck_assert_str_eq(ntsntp_source_state_name(NTSNTP_SOURCE_UNREACHABLE),
                   "unreachable");
  ck_assert_str_eq(ntsntp_source_state_name((ntsntp_source_state)99),
                   "unknown");
}
END_TEST

START_TEST(test_settings_invalid) {
  ntsntp_sync_settings s;
  ntsntp_clock_ops ops = {NULL, NULL, NULL, NULL, NULL, NULL};
  ntsntp_sync *sync = (ntsntp_sync *)&s;
  ntsntp_sync_settings_default(&s);
  s.minpoll = 11;
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(sync);
  ntsntp_sync_settings_default(&s);
  s.max_slew_ppm = NAN;
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), NTSNTP_ERR_INVALID_ARG);
  ntsntp_sync_settings_default(&s);
  s.clock_ops = &ops;
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), NTSNTP_ERR_INVALID_ARG);
  ntsntp_sync_settings_default(&s);
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), 0);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_iburst_and_poll) {
  ntsntp_sync_settings s;
  ntsntp_sync *sync;
  uint64_t now = ntp(0), rng = 42;
  double iv;
  int i;

  ntsntp_sync_settings_default(&s);
  s.rand = test_rand;
  s.rand_user = &rng;
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_sync_add_source(sync, "a", 1, now), 0);
  ck_assert_uint_eq(ntsntp_sync_next_poll(sync, 0), now);
  ck_assert_uint_eq(ntsntp_sync_next_poll(sync, 1), UINT64_MAX);
  ck_assert_int_eq(ntsntp_sync_on_send(sync, 1, now), NTSNTP_ERR_INVALID_ARG);
  /* iburst 4: requests at 0, 2, 4, 6 s, then 2^6 s minus <= 1/16. */
  for (i = 0; i < 3; i++) {
    ck_assert_int_eq(ntsntp_sync_on_send(sync, 0, now), 0);
    ck_assert_double_eq_tol(
        ntsntp_ts_diff(ntsntp_sync_next_poll(sync, 0), now), 2.0, 1e-9);
    now = ntsntp_sync_next_poll(sync, 0);
  }
  ck_assert_int_eq(ntsntp_sync_on_send(sync, 0, now), 0);
  iv = ntsntp_ts_diff(ntsntp_sync_next_poll(sync, 0), now);
  ck_assert(iv > 64 * 15.0 / 16 - 1e-9 && iv <= 64);
  ck_assert_int_eq(ntsntp_sync_poll(sync, 0), 6);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_kod_rate_deny) {
  ntsntp_sync_settings s;
  ntsntp_sync *sync;
  ntsntp_client_sample k;
  ntsntp_source_info info;
  uint64_t now = ntp(0);

  ntsntp_sync_settings_default(&s);
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), 0);
  ntsntp_sync_add_source(sync, "a", 1, now);
  ntsntp_sync_add_source(sync, "b", 2, now);
  ck_assert_int_eq(ntsntp_sync_on_send(sync, 0, now), 0);
  memset(&k, 0, sizeof(k));
  k.hdr.refid = NTSNTP_KOD_RATE;
  /* RATE: at least one step up, burst over. */
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 0, &k, now), 0);
  ck_assert_int_eq(ntsntp_sync_poll(sync, 0), 7);
  ck_assert_double_eq_tol(ntsntp_ts_diff(ntsntp_sync_next_poll(sync, 0), now),
                          128, 1e-9);
  /* ... and at least the server's poll, capped at maxpoll. */
  k.hdr.poll = 9;
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 0, &k, now), 0);
  ck_assert_int_eq(ntsntp_sync_poll(sync, 0), 9);
  k.hdr.poll = 17;
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 0, &k, now), 0);
  ck_assert_int_eq(ntsntp_sync_poll(sync, 0), 10);
  /* Unknown codes are ignored. */
  k.hdr.refid = NTSNTP_KOD('A', 'C', 'S', 'T');
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 1, &k, now), 0);
  ck_assert_uint_eq(ntsntp_sync_next_poll(sync, 1), now);
  /* DENY and RSTR stop the source for good. */
  k.hdr.refid = NTSNTP_KOD_DENY;
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 0, &k, now), NTSNTP_ERR_CLOSED);
  ck_assert_uint_eq(ntsntp_sync_next_poll(sync, 0), UINT64_MAX);
  ck_assert_int_eq(ntsntp_sync_on_send(sync, 0, now), NTSNTP_ERR_STATE);
  mk_sample(&k, 1, 0.01, 0.002);
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 0, &k, ntp(1)),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(ntsntp_sync_source_info(sync, 0, now, &info), 0);
  ck_assert_int_eq(info.state, NTSNTP_SOURCE_STOPPED);
  ck_assert_uint_eq(info.kod, NTSNTP_KOD_DENY);
  ck_assert_str_eq(info.name, "a");
  k.hdr.refid = NTSNTP_KOD_RSTR;
  k.hdr.stratum = 0;
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 1, &k, now), NTSNTP_ERR_CLOSED);
  ck_assert_uint_eq(ntsntp_sync_next_poll(sync, 1), UINT64_MAX);
  ck_assert_int_eq(ntsntp_sync_source_info(sync, 2, now, &info),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_bad_samples) {
  ntsntp_sync_settings s;
  ntsntp_sync *sync;
  ntsntp_client_sample k;
  ntsntp_source_info info;

  ntsntp_sync_settings_default(&s);
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, NULL, 0), 0);
  ntsntp_sync_add_source(sync, "a", 1, ntp(0));
  ntsntp_sync_on_send(sync, 0, ntp(0));
  mk_sample(&k, 0, 0.01, 0.002);
  k.hdr.leap = NTSNTP_LEAP_UNSYNC;
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 0, &k, ntp(0)),
                   NTSNTP_ERR_MALFORMED);
  mk_sample(&k, 0, 0.01, 0.002);
  k.hdr.stratum = 16;
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 0, &k, ntp(0)),
                   NTSNTP_ERR_MALFORMED);
  mk_sample(&k, 0, 0.01, 0.002);
  k.hdr.root_disp = ntsntp_short_from_double(1.6);
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 0, &k, ntp(0)),
                   NTSNTP_ERR_MALFORMED);
  mk_sample(&k, 0, 0.01, -0.01);
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 0, &k, ntp(0)),
                   NTSNTP_ERR_MALFORMED);
  mk_sample(&k, 0, 0.01, 0.002);
  k.hdr.ref_ts = ntsntp_ts_add(k.hdr.tx_ts, 10); /* reference in the future */
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 0, &k, ntp(0)),
                   NTSNTP_ERR_MALFORMED);
  /* None counted as reaching the server. */
  ntsntp_sync_source_info(sync, 0, ntp(0), &info);
  ck_assert_uint_eq(info.reach, 0);
  ck_assert_int_eq(info.state, NTSNTP_SOURCE_UNUSABLE);
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 3, &k, ntp(0)),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_sync_del(sync);
}
END_TEST

/* Filter: the minimum-delay sample wins; spikes are held back; three in a
 * row are a new level. */
START_TEST(test_filter) {
  ntsntp_sync_settings set;
  ntsntp__source s;
  ntsntp_pkt_hdr h;
  const double d[5] = {5e-3, 1e-3, 3e-3, 4e-3, 2e-3};
  const double o[5] = {1e-3, 0.2e-3, 0.6e-3, -0.8e-3, 0.4e-3};
  int i;

  ntsntp_sync_settings_default(&set);
  ntsntp__source_init(&s, &set, "f", 1, ntp(0));
  memset(&h, 0, sizeof(h));
  h.stratum = 1;
  h.precision = -20;
  h.tx_ts = ntp(0);
  for (i = 0; i < 5; i++)
    ntsntp__source_on_sample(&s, &h, ntp(i * 64), o[i], d[i], 0, ntp(i * 64));
  ck_assert(s.have);
  ck_assert_double_eq_tol(s.delay, 1e-3, 1e-12);
  ck_assert_double_eq_tol(s.offset, 0.2e-3, 1e-12);
  ck_assert_uint_eq(s.t, ntp(64));
  ck_assert_uint_eq(s.reach, 1);
  ck_assert(s.jitter > 0.3e-3 && s.jitter < 1e-3);
  /* A frequency projects older stages: with freq 1e-6, a sample 64 s
   * older reads 64 us lower. */
  ck_assert_double_eq_tol(ntsntp__source_offset(&s, ntp(64 + 100), 1e-6),
                          0.2e-3 + 100e-6, 1e-12);
  /* A 50 ms spike is held back... */
  ck_assert_int_eq(
      ntsntp__source_on_sample(&s, &h, ntp(400), 50e-3, 1e-3, 0, ntp(400)), 0);
  ck_assert_double_eq_tol(s.offset, 0.2e-3, 1e-12);
  /* ... a normal one resets the count ... */
  ntsntp__source_on_sample(&s, &h, ntp(464), 0.1e-3, 2e-3, 0, ntp(464));
  ntsntp__source_on_sample(&s, &h, ntp(528), 50e-3, 1e-3, 0, ntp(528));
  ntsntp__source_on_sample(&s, &h, ntp(592), 50.1e-3, 1.5e-3, 0, ntp(592));
  ck_assert(s.offset < 1e-3);
  /* ... and the third outlier in a row flushes the old level. */
  ck_assert_int_eq(
      ntsntp__source_on_sample(&s, &h, ntp(656), 49.9e-3, 0.9e-3, 0, ntp(656)),
      1);
  ck_assert_double_eq_tol(s.offset, 49.9e-3, 1e-12);
  ck_assert_double_eq_tol(s.delay, 0.9e-3, 1e-12);
}
END_TEST

static void sel_src(ntsntp__source *s, const ntsntp_sync_settings *set,
                    double offset, double delay) {
  ntsntp_pkt_hdr h;
  memset(&h, 0, sizeof(h));
  h.stratum = 1;
  h.precision = -20;
  h.tx_ts = ntp(0);
  ntsntp__source_init(s, set, "s", 1, ntp(0));
  ntsntp__source_on_sample(s, &h, ntp(0), offset, delay, 0, ntp(0));
}

START_TEST(test_select) {
  ntsntp_sync_settings set;
  ntsntp__source s[5];
  ntsntp__selection sel;

  ntsntp_sync_settings_default(&set);
  /* Three agree within their distances, one is 10 s off. */
  sel_src(&s[0], &set, 0.001, 0.004);
  sel_src(&s[1], &set, 10.0, 0.002);
  sel_src(&s[2], &set, 0.002, 0.002);
  sel_src(&s[3], &set, 0.0015, 0.006);
  ntsntp__select(s, 4, ntp(0), 0, 1.0, 1, -1, &sel);
  ck_assert(sel.ok);
  ck_assert_uint_eq(sel.n_true, 3);
  ck_assert_int_eq(s[1].state, NTSNTP_SOURCE_FALSETICKER);
  ck_assert_int_eq(sel.peer, 2); /* smallest root distance */
  ck_assert_int_eq(s[2].state, NTSNTP_SOURCE_SELECTED);
  ck_assert_int_eq(s[0].state, NTSNTP_SOURCE_COMBINED);
  ck_assert(sel.offset > 0.001 && sel.offset < 0.002);
  /* No clock hop to an equal-stratum survivor. */
  ntsntp__select(s, 4, ntp(0), 0, 1.0, 1, 0, &sel);
  ck_assert_int_eq(sel.peer, 0);
  /* Two disagreeing sources: no majority. */
  ntsntp__select(s, 2, ntp(0), 0, 1.0, 1, -1, &sel);
  ck_assert(!sel.ok);
  ck_assert_int_eq(sel.peer, -1);
  ck_assert_int_eq(s[0].state, NTSNTP_SOURCE_FALSETICKER);
  ck_assert_int_eq(s[1].state, NTSNTP_SOURCE_FALSETICKER);
  /* min_sources not met. */
  ntsntp__select(s, 4, ntp(0), 0, 1.0, 4, -1, &sel);
  ck_assert(!sel.ok);
  ck_assert_int_eq(s[0].state, NTSNTP_SOURCE_SELECTABLE);
  /* Too jittery is not a candidate. */
  ntsntp__select(s, 4, ntp(0), 0, 1e-9, 1, -1, &sel);
  ck_assert(!sel.ok);
  ck_assert_int_eq(s[0].state, NTSNTP_SOURCE_JITTERY);
  /* Clustering: of five truechimers the one with the largest selection
   * jitter goes when it exceeds every peer jitter. */
  sel_src(&s[1], &set, 0.0, 0.004);
  sel_src(&s[4], &set, 0.0035, 0.008);
  ntsntp__select(s, 5, ntp(0), 0, 1.0, 1, -1, &sel);
  ck_assert(sel.ok);
  ck_assert_uint_eq(sel.n_true, 5);
  ck_assert_uint_eq(sel.n_surv, 3);
  ck_assert_int_eq(s[4].state, NTSNTP_SOURCE_SELECTABLE);
}
END_TEST

START_TEST(test_unsynchronised_until_selection) {
  sim sm;
  ntsntp_clock_state cs;
  ntsntp_tracking tr;

  sim_init(&sm, NULL, 0.5, 50e-6, 3);
  ntsntp_sync_clock_state(sm.sync, ntp(sm.sys), &cs);
  ck_assert_uint_eq(cs.leap, NTSNTP_LEAP_UNSYNC);
  ck_assert_uint_eq(cs.stratum, 16);
  ck_assert_uint_eq(cs.refid, 0);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 0);
  ck_assert_uint_eq(tr.stratum, 16);
  /* Before any update the served time is the system time. */
  ck_assert_uint_eq(ntsntp_sync_serve(sm.sync, ntp(sm.sys)), ntp(sm.sys));
  sim_run(&sm, 30, 1e9);
  ntsntp_sync_clock_state(sm.sync, ntp(sm.sys), &cs);
  ck_assert_uint_eq(cs.leap, NTSNTP_LEAP_NONE);
  ck_assert_uint_eq(cs.stratum, 2);
  ck_assert(cs.refid == sm.srv[0].refid || cs.refid == sm.srv[1].refid ||
            cs.refid == sm.srv[2].refid);
  ck_assert(cs.ref_ts != 0);
  ck_assert_double_eq_tol(cs.disp_rate, 15e-6, 1e-12);
  ck_assert(ntsntp_short_to_double(cs.root_delay) >= 2e-3);
  ck_assert(ntsntp_short_to_double(cs.root_disp) >= 1e-3);
  ck_assert(ntsntp_short_to_double(cs.root_disp) < 0.1);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_uint_eq(tr.steps, 0); /* the first update just sets the time */
  ck_assert(fabs(sim_err(&sm)) < 1e-3);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* 3 good sources + a falseticker 10 s off; local clock +0.5 s, +50 ppm,
 * 100 us noise per network leg. */
START_TEST(test_converge_falseticker) {
  sim sm;
  ntsntp_source_info info;
  ntsntp_tracking tr;
  ntsntp_clock_state cs;
  unsigned i;

  sim_init(&sm, NULL, 0.5, 50e-6, 4);
  sm.srv[3].bias = 10.0;
  sim_run(&sm, 3600, 1e9);
  sim_run(&sm, 4 * 3600, 3600);
  printf("converge: served error max %.1f us rms %.1f us\n",
         sm.max_err * 1e6, sim_rms(&sm) * 1e6);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ntsntp_sync_source_info(sm.sync, 3, ntp(sm.sys), &info);
  ck_assert_int_eq(info.state, NTSNTP_SOURCE_FALSETICKER);
  ck_assert_int_eq(ntsntp_source_state_char(info.state), 'x');
  for (i = 0; i < 3; i++) {
    ntsntp_sync_source_info(sm.sync, i, ntp(sm.sys), &info);
    ck_assert(info.state == NTSNTP_SOURCE_SELECTED ||
              info.state == NTSNTP_SOURCE_COMBINED);
    ck_assert_uint_eq(info.reach, 0xff);
    ck_assert_int_gt(info.poll, 6); /* good samples raised the poll */
  }
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  /* true - system falls by 50 us/s: -50 ppm (chrony's sign: fast). */
  printf("converge: freq %.4f ppm (true -50) skew %.4f ppm, updates %u\n",
         tr.freq_ppm, tr.skew_ppm, tr.updates);
  ck_assert_double_le(fabs(tr.freq_ppm + 50), BOUND_FREQ);
  ck_assert(tr.skew_ppm < BOUND_FREQ);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_uint_eq(tr.stratum, 2);
  ck_assert_double_le(fabs(tr.system_offset - (sm.sys - sm.T)), BOUND_SERVED);
  ck_assert(tr.rms_offset < BOUND_SERVED);
  ck_assert(tr.update_interval > 0 && tr.update_interval <= 1024);
  ck_assert_int_eq(tr.clock_control, 0);
  ntsntp_sync_clock_state(sm.sync, ntp(sm.sys), &cs);
  ck_assert_uint_eq(cs.stratum, 2);
  ck_assert_uint_eq(cs.leap, 0);
  ck_assert_uint_ne(cs.refid, sm.srv[3].refid);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* One source stops answering: its reach decays to 0, it is marked
 * unreachable and the others keep the clock. */
START_TEST(test_unreachable) {
  sim sm;
  ntsntp_source_info info;
  ntsntp_tracking tr;
  unsigned i;

  sim_init(&sm, NULL, -0.2, -20e-6, 3);
  sim_run(&sm, 3600, 1e9);
  sm.srv[0].down = 1;
  sim_run(&sm, 5 * 3600, 3600);
  printf("unreachable: served error max %.1f us rms %.1f us\n",
         sm.max_err * 1e6, sim_rms(&sm) * 1e6);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ntsntp_sync_source_info(sm.sync, 0, ntp(sm.sys), &info);
  ck_assert_uint_eq(info.reach, 0);
  ck_assert_int_eq(info.state, NTSNTP_SOURCE_UNREACHABLE);
  ck_assert_int_eq(ntsntp_source_state_char(info.state), '?');
  ck_assert(info.last_rx > 3600);
  for (i = 1; i < 3; i++) {
    ntsntp_sync_source_info(sm.sync, i, ntp(sm.sys), &info);
    ck_assert(info.state == NTSNTP_SOURCE_SELECTED ||
              info.state == NTSNTP_SOURCE_COMBINED);
  }
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_uint_ne(tr.refid, sm.srv[0].refid);
  ck_assert_double_le(fabs(tr.freq_ppm - 20), BOUND_FREQ);
  /* Back again: reachable and used. */
  sm.srv[0].down = 0;
  sim_run(&sm, 6 * 3600, 1e9);
  ntsntp_sync_source_info(sm.sync, 0, ntp(sm.sys), &info);
  ck_assert_uint_ne(info.reach, 0);
  ck_assert(info.state == NTSNTP_SOURCE_SELECTED ||
            info.state == NTSNTP_SOURCE_COMBINED);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* The local clock is stepped by +0.3 s after the makestep updates: the
 * filters take the new level, the served time slews back. */
START_TEST(test_step_mid_run) {
  sim sm;
  ntsntp_tracking tr;

  sim_init(&sm, NULL, 0.5, 50e-6, 3);
  sim_run(&sm, 2 * 3600, 1e9);
  sm.sys += 0.3;
  sim_run(&sm, 3 * 3600, 1e9);
  sim_run(&sm, 5 * 3600, 3 * 3600);
  printf("step: served error max %.1f us rms %.1f us after recovery\n",
         sm.max_err * 1e6, sim_rms(&sm) * 1e6);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_uint_eq(tr.steps, 0); /* slewed, never stepped */
  ck_assert_double_le(fabs(tr.freq_ppm + 50), BOUND_FREQ);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* Slew bounded at 500 ppm: after a 0.2 s step of the local clock the
 * served clock's rate never departs from true rate by more than that. */
START_TEST(test_slew_bounded) {
  ntsntp_sync_settings set;
  ntsntp_tracking tr;
  sim sm;
  double t_fix;

  ntsntp_sync_settings_default(&set);
  set.max_slew_ppm = 500;
  set.makestep_limit = 0;
  sim_init(&sm, &set, 0.0, 10e-6, 3);
  sim_run(&sm, 3600, 1e9);
  sm.sys -= 0.2;
  sim_reset_stats(&sm);
  sim_run(&sm, 3600 + 3000, 3600 + TICK / 2);
  printf("slew: max served rate deviation %.1f ppm\n", sm.max_rate_dev * 1e6);
  /* 500 ppm plus what the frequency estimate is off by. */
  ck_assert_double_le(sm.max_rate_dev, 500e-6 + 2e-6);
  ck_assert_double_ge(sm.max_rate_dev, 400e-6); /* it did slew */
  /* 0.2 s at 500 ppm takes 400 s once noticed: done well before. */
  t_fix = sm.T;
  sim_reset_stats(&sm);
  sim_run(&sm, t_fix + 3600, t_fix);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_uint_eq(tr.steps, 0);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* Served-time makestep: limit 3 with threshold 0.1 s; a late step of the
 * local clock is slewed (default 83333 ppm) instead. */
START_TEST(test_makestep_served) {
  ntsntp_sync_settings set;
  ntsntp_tracking tr;
  sim sm;

  ntsntp_sync_settings_default(&set);
  set.makestep_limit = -1; /* always */
  sim_init(&sm, &set, 0.0, 0, 3);
  sim_run(&sm, 1800, 1e9);
  sm.sys += 0.5;
  sim_run(&sm, 3 * 3600, 1e9);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_uint_eq(tr.steps, 1);
  ck_assert(fabs(sim_err(&sm)) < BOUND_SERVED);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* Clock control through injected ops: the simulated system clock is
 * stepped in the first updates only, then slewed and its frequency set;
 * the system clock itself ends up right and is served as is. */
START_TEST(test_clock_control) {
  ntsntp_sync_settings set;
  ntsntp_tracking tr;
  sim sm;
  double e;

  ntsntp_sync_settings_default(&set);
  set.clock_ops = &sim_ops; /* replaced by sim_init with user = &sm */
  set.rtcsync = 1;
  sim_init(&sm, &set, 0.5, 50e-6, 3);
  sim_run(&sm, 2 * 3600, 1e9);
  ck_assert_uint_eq(sm.steps, 1); /* 0.5 s > 0.1 s in update 1..3 */
  ck_assert_uint_eq(sm.bad_step, 0);
  ck_assert_uint_gt(sm.slews, 10);
  ck_assert_uint_ge(sm.rtcs, 2 * 3600 / 660 - 2);
  /* The kernel frequency cancels the oscillator's error. */
  printf("control: kernel freq %.4f ppm (true -50), sys error %.1f us\n",
         sm.kfreq * 1e6, (sm.sys - sm.T) * 1e6);
  ck_assert_double_le(fabs(sm.kfreq * 1e6 + 50), BOUND_FREQ);
  ck_assert_double_le(fabs(sm.sys - sm.T), BOUND_SERVED);
  /* Served time is the system time (within rounding). */
  e = ntsntp_ts_diff(ntsntp_sync_serve(sm.sync, ntp(sm.sys)), ntp(sm.sys));
  ck_assert_double_le(fabs(e), 1e-6);
  /* Someone steps the clock by 0.3 s: past the limit, it is slewed. */
  sm.sys += 0.3;
  sim_run(&sm, 5 * 3600, 1e9);
  sim_reset_stats(&sm);
  sim_run(&sm, 6 * 3600, 5 * 3600);
  printf("control: after late step, served error max %.1f us, sys error "
         "%.1f us\n",
         sm.max_err * 1e6, (sm.sys - sm.T) * 1e6);
  ck_assert_uint_eq(sm.steps, 1);
  ck_assert_uint_eq(sm.bad_step, 0);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ck_assert_double_le(fabs(sm.sys - sm.T), BOUND_SERVED);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.clock_control, 1);
  ck_assert_uint_eq(tr.steps, 1);
  ntsntp_sync_del(sm.sync);
}
END_TEST

static int fail_slew(void *user, double offset, double freq_ppm) {
  (void)user;
  (void)offset;
  (void)freq_ppm;
  return -1;
}

/* A failing clock op turns control off; the served time stays right. */
START_TEST(test_clock_control_failure) {
  ntsntp_sync_settings set;
  ntsntp_clock_ops ops = sim_ops;
  ntsntp_tracking tr;
  sim sm;

  ntsntp_sync_settings_default(&set);
  ops.slew = fail_slew;
  set.clock_ops = &ops;
  sim_init(&sm, &set, 0.5, 50e-6, 3);
  sim_run(&sm, 2 * 3600, 3600);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.clock_control, 0);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ntsntp_sync_del(sm.sync);
}
END_TEST

START_TEST(test_drift) {
  sim sm, sm2;
  ntsntp_tracking tr, tr2;
  char buf[64];
  ntsntp_ssize n;
  size_t i;
  static const char *const bad[] = {
      "",        "\n",         "abc",        "1.0",         "1.0 ",
      "1.0 2 3", "nan 1",      "inf 1",      "1e999 1",     "0x10 1",
      "1,5 1",   "1 1\n\n",    "1 1\nx",     "1\n1",        "1 .",
      "1 1e",    "- 1",        "1 1 ",       "+ 1",         "1 1\0"};
  static const char *const range[] = {"600 1", "-500.1 1", "1 -0.1",
                                      "1 101"};

  sim_init(&sm, NULL, 0.0, 50e-6, 3);
  ck_assert_int_eq(ntsntp_sync_drift_save(sm.sync, buf, sizeof(buf)),
                   NTSNTP_ERR_STATE);
  sim_run(&sm, 3600, 1e9);
  n = ntsntp_sync_drift_save(sm.sync, buf, sizeof(buf));
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(buf[n - 1], '\n');
  ck_assert_int_eq(ntsntp_sync_drift_save(sm.sync, buf, 5), NTSNTP_ERR_NOBUF);
  n = ntsntp_sync_drift_save(sm.sync, buf, sizeof(buf));
  printf("drift file: %s", buf);
  ck_assert_int_eq(ntsntp_sync_drift_load(sm.sync, buf, (size_t)n),
                   NTSNTP_ERR_STATE);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);

  /* Round trip into a new model; it starts from the saved frequency. */
  sim_init(&sm2, NULL, 0.0, 50e-6, 3);
  ck_assert_int_eq(ntsntp_sync_drift_load(sm2.sync, buf, (size_t)n), 0);
  ntsntp_sync_tracking(sm2.sync, ntp(0), &tr2);
  ck_assert_double_eq_tol(tr2.freq_ppm, tr.freq_ppm, 1e-6);
  ck_assert_double_eq_tol(tr2.skew_ppm, tr.skew_ppm, 1e-6);
  sim_run(&sm2, 300, 60);
  ntsntp_sync_tracking(sm2.sync, ntp(sm2.sys), &tr2);
  ck_assert_double_le(fabs(tr2.freq_ppm + 50), BOUND_FREQ);
  ck_assert_double_le(sm2.max_err, BOUND_SERVED);
  ntsntp_sync_del(sm2.sync);

  /* chrony's padded format is accepted. */
  sim_init(&sm2, NULL, 0.0, 0, 1);
  ck_assert_int_eq(ntsntp_sync_drift_load(sm2.sync, "          -12.345678"
                                                    "             0.012345\n",
                                          42),
                   0);
  ntsntp_sync_tracking(sm2.sync, 0, &tr2);
  ck_assert_double_eq_tol(tr2.freq_ppm, -12.345678, 1e-9);
  ck_assert_int_eq(ntsntp_sync_drift_load(sm2.sync, "1.5\t2e-1", 8), 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(ntsntp_sync_drift_load(sm2.sync, bad[i],
                                         i == 19 ? 4 : strlen(bad[i])) ==
                      NTSNTP_ERR_MALFORMED,
                  "accepted \"%s\"", bad[i]);
  for (i = 0; i < sizeof(range) / sizeof(range[0]); i++)
    ck_assert_int_eq(
        ntsntp_sync_drift_load(sm2.sync, range[i], strlen(range[i])),
        NTSNTP_ERR_INVALID_ARG);
  ntsntp_sync_del(sm2.sync);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* The served time from other threads never sees a torn snapshot. */
#include <pthread.h>
typedef struct reader {
  const ntsntp_sync *sync;
  atomic_int *stop;
  unsigned long n;
} reader;

static void *reader_fn(void *arg) {
  reader *r = arg;
  while (!atomic_load(r->stop)) {
    uint64_t t = ntsntp_sync_serve(r->sync, ntp(1000));
    /* Corrections stay within what the simulation can produce. */
    if (fabs(ntsntp_ts_diff(t, ntp(1000))) > 1.0)
      abort();
    r->n++;
  }
  return NULL;
}

START_TEST(test_serve_threads) {
  sim sm;
  pthread_t th[2];
  reader r[2];
  atomic_int stop;
  int i;

  atomic_init(&stop, 0);
  sim_init(&sm, NULL, 0.5, 50e-6, 3);
  for (i = 0; i < 2; i++) {
    r[i].sync = sm.sync;
    r[i].stop = &stop;
    r[i].n = 0;
    ck_assert_int_eq(pthread_create(&th[i], NULL, reader_fn, &r[i]), 0);
  }
  sim_run(&sm, 600, 1e9);
  atomic_store(&stop, 1);
  for (i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* Removing sources (a pool member replaced, a server dropped on reload):
 * the slot is free, the other indexes stay, add reuses the slot. */
START_TEST(test_remove_source) {
  ntsntp_sync_settings set;
  ntsntp_sync *sync;
  ntsntp_source_info info;
  ntsntp_client_sample smp;
  uint64_t now = ntp(0);

  ntsntp_sync_settings_default(&set);
  ck_assert_int_eq(ntsntp_sync_new(&sync, &set, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_sync_add_source(sync, "a", 1, now), 0);
  ck_assert_int_eq(ntsntp_sync_add_source(sync, "b", 2, now), 1);
  ck_assert_int_eq(ntsntp_sync_add_source(sync, "c", 3, now), 2);
  ck_assert_int_eq(ntsntp_sync_remove_source(sync, 1, now), 0);
  ck_assert_uint_eq(ntsntp_sync_n_sources(sync), 3);
  ck_assert_int_eq(ntsntp_sync_source_active(sync, 1), 0);
  ck_assert_int_eq(ntsntp_sync_source_active(sync, 2), 1);
  /* Bad input: removed twice, out of range; every call on the hole. */
  ck_assert_int_eq(ntsntp_sync_remove_source(sync, 1, now),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_sync_remove_source(sync, 99, now),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_sync_source_info(sync, 1, now, &info),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert(ntsntp_sync_next_poll(sync, 1) == UINT64_MAX);
  ck_assert_int_eq(ntsntp_sync_on_send(sync, 1, now), NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_sync_set_refid(sync, 1, 5), NTSNTP_ERR_INVALID_ARG);
  mk_sample(&smp, 0, 0, 0.01);
  ck_assert_int_eq(ntsntp_sync_on_sample(sync, 1, &smp, now),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_sync_on_kod(sync, 1, &smp, now),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_sync_on_timeout(sync, 1, now); /* ignored */
  /* The slot is reused, fresh. */
  ck_assert_int_eq(ntsntp_sync_add_source(sync, "d", 4, now), 1);
  ck_assert_int_eq(ntsntp_sync_source_info(sync, 1, now, &info), 0);
  ck_assert_str_eq(info.name, "d");
  ck_assert_uint_eq(info.refid, 4);
  ck_assert_uint_eq(info.reach, 0);
  /* Removing the last shrinks the count. */
  ck_assert_int_eq(ntsntp_sync_remove_source(sync, 2, now), 0);
  ck_assert_uint_eq(ntsntp_sync_n_sources(sync), 2);
  ntsntp_sync_del(sync);
}
END_TEST

/* A falseticker replaced in place (what a pool does): the new source at
 * the same index becomes a truechimer; the others keep their reach and the
 * served time stays within bounds. */
START_TEST(test_replace_falseticker) {
  sim sm;
  ntsntp_source_info info;
  ntsntp_tracking tr;
  unsigned i;

  sim_init(&sm, NULL, 0.2, 30e-6, 4);
  sm.srv[3].bias = 5.0;
  sim_run(&sm, 3600, 1e9);
  ntsntp_sync_source_info(sm.sync, 3, ntp(sm.sys), &info);
  ck_assert_int_eq(info.state, NTSNTP_SOURCE_FALSETICKER);
  ck_assert_int_eq(ntsntp_sync_remove_source(sm.sync, 3, ntp(sm.sys)), 0);
  sm.srv[3].bias = 0;
  ck_assert_int_eq(
      ntsntp_sync_add_source(sm.sync, "srv3b", 77, ntp(sm.sys)), 3);
  sim_run(&sm, 2 * 3600, 3600 + 60);
  ck_assert_double_le(sm.max_err, BOUND_SERVED);
  ntsntp_sync_source_info(sm.sync, 3, ntp(sm.sys), &info);
  ck_assert_str_eq(info.name, "srv3b");
  ck_assert(info.state == NTSNTP_SOURCE_SELECTED ||
            info.state == NTSNTP_SOURCE_COMBINED);
  for (i = 0; i < 3; i++) {
    ntsntp_sync_source_info(sm.sync, i, ntp(sm.sys), &info);
    ck_assert_uint_eq(info.reach, 0xff);
  }
  /* The system peer removed: still synchronised (its name kept for
   * tracking), another one takes over at the next update. */
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  for (i = 0; i < 4; i++) {
    ntsntp_sync_source_info(sm.sync, i, ntp(sm.sys), &info);
    if (info.state == NTSNTP_SOURCE_SELECTED)
      break;
  }
  ck_assert_uint_lt(i, 4);
  ck_assert_int_eq(ntsntp_sync_remove_source(sm.sync, i, ntp(sm.sys)), 0);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_str_ne(tr.ref_name, "");
  sm.srv[i].down = 1; /* gone: never polled again */
  sim_run(&sm, 3 * 3600, 1e9);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_int_eq(tr.holdover, 0);
  ck_assert_uint_ne(tr.refid, sm.srv[i].refid);
  ntsntp_sync_del(sm.sync);
}
END_TEST

/* Holdover: after the last source goes, the clock is served as
 * synchronised (dispersion growing) for the holdover only. */
START_TEST(test_holdover) {
  ntsntp_sync_settings set;
  sim sm;
  ntsntp_tracking tr;
  ntsntp_clock_state cs;
  double lost;

  ntsntp_sync_settings_default(&set);
  ck_assert_uint_eq(set.holdover, 3600);
  set.holdover = 1800;
  set.maxpoll = 6;
  sim_init(&sm, &set, 0.1, 10e-6, 1);
  sim_run(&sm, 1800, 1e9);
  sm.srv[0].down = 1;
  /* Reach falls to 0 after 8 polls of 64 s. */
  sim_run(&sm, 1800 + 9 * 64, 1e9);
  lost = sm.T;
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_int_eq(tr.holdover, 1);
  ck_assert(tr.holdover_left > 0 && tr.holdover_left < 1800);
  ntsntp_sync_clock_state(sm.sync, ntp(sm.sys), &cs);
  ck_assert_uint_eq(cs.stratum, 2);
  ck_assert(cs.disp_rate == NTSNTP_PHI);
  /* Until the holdover is over (counted from the last update). */
  sim_run(&sm, lost + tr.holdover_left + 10, 1e9);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 0);
  ck_assert_int_eq(tr.holdover, 0);
  ntsntp_sync_clock_state(sm.sync, ntp(sm.sys), &cs);
  ck_assert_uint_eq(cs.leap, NTSNTP_LEAP_UNSYNC);
  ck_assert_uint_eq(cs.stratum, 16);
  /* Back: synchronised again, no holdover. */
  sm.srv[0].down = 0;
  sim_run(&sm, sm.T + 600, 1e9);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 1);
  ck_assert_int_eq(tr.holdover, 0);
  ntsntp_sync_del(sm.sync);
  /* HOLDOVER=0: unsynchronised as soon as nothing is selectable. */
  set.holdover = 0;
  sim_init(&sm, &set, 0.1, 10e-6, 1);
  sim_run(&sm, 1800, 1e9);
  sm.srv[0].down = 1;
  sim_run(&sm, 1800 + 9 * 64, 1e9);
  ntsntp_sync_tracking(sm.sync, ntp(sm.sys), &tr);
  ck_assert_int_eq(tr.synced, 0);
  ntsntp_sync_del(sm.sync);
}
END_TEST

static Suite *sync_suite(void) {
  Suite *s = suite_create("sync");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_refid);
  tcase_add_test(tc, test_state_names);
  tcase_add_test(tc, test_settings_invalid);
  tcase_add_test(tc, test_iburst_and_poll);
  tcase_add_test(tc, test_kod_rate_deny);
  tcase_add_test(tc, test_bad_samples);
  tcase_add_test(tc, test_filter);
  tcase_add_test(tc, test_select);
  tcase_add_test(tc, test_unsynchronised_until_selection);
  tcase_add_test(tc, test_converge_falseticker);
  tcase_add_test(tc, test_unreachable);
  tcase_add_test(tc, test_step_mid_run);
  tcase_add_test(tc, test_slew_bounded);
  tcase_add_test(tc, test_makestep_served);
  tcase_add_test(tc, test_clock_control);
  tcase_add_test(tc, test_clock_control_failure);
  tcase_add_test(tc, test_drift);
  tcase_add_test(tc, test_serve_threads);
  tcase_add_test(tc, test_remove_source);
  tcase_add_test(tc, test_replace_falseticker);
  tcase_add_test(tc, test_holdover);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(sync_suite()); }
