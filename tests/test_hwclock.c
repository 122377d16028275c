/* PHC to system time (hardware timestamps), with simulated clocks. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "ntsntp/hwclock.h"
#include "ntsntp/ts.h"

/* 2026 in NTP seconds, and a PHC counting TAI from 1970 (37 s ahead of
 * UTC, 70 years of NTP era behind): the two clocks are decades apart.
 * Times are whole seconds plus a small double, so that the simulation
 * itself keeps sub-nanosecond precision. */
static const int64_t SYS0 = 3976000000LL;
static const int64_t PHC0 = 3976000000LL - 2208988800LL + 37;

typedef struct t64 {
  int64_t s;
  double f;
} t64;

static uint64_t ntp(t64 t) {
  return ((uint64_t)t.s << 32) + (uint64_t)llround(t.f * 4294967296.0);
}

static t64 sys_at(double t) {
  t64 r = {SYS0, t};
  return r;
}

/* The simulated PHC at system time |t| (s since SYS0): |ppm| fast, plus
 * a fixed phase. */
static t64 phc_at(double t, double ppm) {
  t64 r = {PHC0, t * (1 + ppm * 1e-6) + 0.000123456};
  return r;
}

static t64 plus(t64 t, double d) {
  t.f += d;
  return t;
}

/* Readings once a second, each within +-err (pseudo-random, fixed seed). */
static void feed(ntsntp_hwclock *h, int from, int to, double ppm, double err) {
  int i;
  srand(7);
  for (i = from; i < to; i++) {
    double jitter = ((double)rand() / RAND_MAX - 0.5) * 2 * err;
    ck_assert_int_eq(
        ntsntp_hwclock_add(h, ntp(phc_at(i, ppm)), ntp(sys_at(i + jitter)), err),
        0);
  }
}

/* The conversion error of a packet stamped at system time |t|, ns. */
static double conv_err_ns(const ntsntp_hwclock *h, double t, double ppm,
                          double *bound) {
  uint64_t sys;
  ck_assert_int_eq(ntsntp_hwclock_convert(h, ntp(phc_at(t, ppm)), &sys, bound),
                   0);
  return ntsntp_ts_diff(sys, ntp(sys_at(t))) * 1e9;
}

START_TEST(test_converts_between_readings) {
  ntsntp_hwclock h;
  double t, e, bound;
  ntsntp_hwclock_init(&h);
  feed(&h, 0, 16, 42.0, 200e-9);
  /* Packets between and just after the readings: within 100 ns although
   * each reading alone is +-200 ns, the PHC runs 42 ppm fast and the
   * epochs are 70 years apart; the bound covers the error. */
  for (t = 0.25; t < 16.5; t += 0.5) {
    e = conv_err_ns(&h, t, 42.0, &bound);
    ck_assert_msg(fabs(e) < 100, "t=%g: %g ns", t, e);
    ck_assert_msg(bound * 1e9 >= fabs(e), "t=%g: bound %g < %g", t,
                  bound * 1e9, e);
  }
  ck_assert_msg(fabs(h.rate - (1 / (1 + 42e-6) - 1)) < 1e-7, "rate %g", h.rate);
}
END_TEST

START_TEST(test_needs_two_readings_and_stays_near) {
  ntsntp_hwclock h;
  uint64_t sys;
  double e;
  ntsntp_hwclock_init(&h);
  ck_assert_int_eq(ntsntp_hwclock_convert(&h, ntp(phc_at(0, 0)), &sys, NULL),
                   NTSNTP_ERR_STATE);
  feed(&h, 0, 1, 10.0, 100e-9);
  ck_assert_int_eq(ntsntp_hwclock_convert(&h, ntp(phc_at(0, 10)), &sys, NULL),
                   NTSNTP_ERR_STATE);
  feed(&h, 1, 4, 10.0, 100e-9);
  ck_assert_int_eq(ntsntp_hwclock_convert(&h, ntp(phc_at(3.5, 10)), &sys, &e),
                   0);
  /* Far from the readings: stale, or from another clock. */
  ck_assert_int_eq(ntsntp_hwclock_convert(&h, ntp(phc_at(3 + 17, 10)), &sys,
                                          NULL),
                   NTSNTP_ERR_MALFORMED);
  ck_assert_int_eq(ntsntp_hwclock_convert(&h, ntp(phc_at(-17, 10)), &sys,
                                          NULL),
                   NTSNTP_ERR_MALFORMED);
  ck_assert_int_eq(ntsntp_hwclock_convert(&h, ntp(plus(phc_at(3, 10), -1e6)), &sys,
                                          NULL),
                   NTSNTP_ERR_MALFORMED);
}
END_TEST

START_TEST(test_bad_readings_and_steps) {
  ntsntp_hwclock h;
  ntsntp_hwclock_init(&h);
  ck_assert_int_eq(ntsntp_hwclock_add(&h, 1, 1, -1e-9), NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_hwclock_add(&h, 1, 1, 2e-3), NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_hwclock_add(&h, 1, 1, NAN), NTSNTP_ERR_INVALID_ARG);
  ck_assert_uint_eq(h.n, 0);
  feed(&h, 0, 8, 5.0, 100e-9);
  ck_assert_uint_eq(h.n, 8);
  /* The PHC is stepped by 10 ms (ptp4l, or an operator): the old
   * readings are dropped, not averaged into the new offset. */
  ck_assert_int_eq(ntsntp_hwclock_add(&h, ntp(plus(phc_at(8, 5.0), 0.01)),
                                      ntp(sys_at(8)), 100e-9),
                   0);
  ck_assert_uint_eq(h.resets, 1);
  ck_assert_uint_eq(h.n, 1);
  ck_assert_int_eq(h.valid, 0);
  /* Backwards is a step too. */
  ck_assert_int_eq(ntsntp_hwclock_add(&h, ntp(phc_at(7, 5.0)),
                                      ntp(sys_at(9)), 100e-9),
                   0);
  ck_assert_uint_eq(h.resets, 2);
  /* A jump within the drift an unknown rate allows is not a step. */
  ntsntp_hwclock_init(&h);
  feed(&h, 0, 1, 0, 100e-9);
  ck_assert_int_eq(ntsntp_hwclock_add(&h, ntp(plus(phc_at(1, 0), 200e-6)),
                                      ntp(sys_at(1)), 100e-9),
                   0);
  ck_assert_uint_eq(h.resets, 0);
  ck_assert_uint_eq(h.n, 2);
}
END_TEST

START_TEST(test_window_keeps_the_newest) {
  ntsntp_hwclock h;
  double e, bound;
  ntsntp_hwclock_init(&h);
  /* 40 readings through a 16-slot window while the rate changes (the
   * system clock slewed): the fit follows the newest readings. */
  feed(&h, 0, 20, 30.0, 50e-9);
  ck_assert_uint_eq(h.n, NTSNTP_HWCLOCK_SAMPLES);
  e = conv_err_ns(&h, 19.5, 30.0, &bound);
  ck_assert_msg(fabs(e) < 60, "%g ns", e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("hwclock");
  TCase *tc = tcase_create("core");
  SRunner *sr;
  int failed;
  tcase_add_test(tc, test_converts_between_readings);
  tcase_add_test(tc, test_needs_two_readings_and_stays_near);
  tcase_add_test(tc, test_bad_readings_and_steps);
  tcase_add_test(tc, test_window_keeps_the_newest);
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
