/*
 * Leap seconds: the leap-second list (good, expired, bad hash, insert,
 * delete, malformed), chrony's announcement rule, and the served leap
 * indicator and timestamps across 2016-12-31 23:59:60 UTC for each mode,
 * with injected time only (nothing here reads or changes a clock).
 */
#include <math.h>

#include "ntsntp/leap.h"
#include "ntsntp/sync.h"
#include "testutil.h"

/* 2017-01-01 00:00:00 UTC in NTP seconds: the leap of 2016-12-31. */
#define L 3692217600ULL
#define DAY 86400ULL

/* The real entries around it, updated 2016-07-08, expiring 2017-06-28. */
static const char LIST_INSERT[] =
    "# test list\n"
    "#$\t3676924800\n"
    "#@\t3707596800\n"
    "#\n"
    "3550089600\t35\t# 1 Jul 2012\n"
    "3644697600\t36\t# 1 Jul 2015\n"
    "3692217600\t37\t# 1 Jan 2017\n"
    "#h\t604b25d3 19368243 a2485049 28514edf 2f9817c8\n";

/* The same with a deleted second instead (never happened; the format
 * allows it). */
static const char LIST_DELETE[] =
    "#$ 3676924800\n"
    "#@ 3707596800\n"
    "3550089600 36\n"
    "3644697600 37\n"
    "3692217600 36\n"
    "#h aeefccb9 0d8064f8 f6644b40 4ce49fb5 275e051f\n";

static void parse_ok(const char *text, ntsntp_leap_list *l) {
  char err[256] = "";
  int rv = ntsntp_leap_list_parse(text, strlen(text), l, err, sizeof(err));
  ck_assert_msg(rv == 0, "rv %d: %s", rv, err);
}

static int parse_rv(const char *text, char *err, size_t errlen) {
  ntsntp_leap_list l;
  return ntsntp_leap_list_parse(text, strlen(text), &l, err, errlen);
}

START_TEST(test_parse_good) {
  ntsntp_leap_list l;
  parse_ok(LIST_INSERT, &l);
  ck_assert_uint_eq(l.n, 3);
  ck_assert_uint_eq(l.updated, 3676924800ULL);
  ck_assert_uint_eq(l.expires, 3707596800ULL);
  ck_assert_uint_eq(l.e[2].ntp_sec, L);
  ck_assert_int_eq(l.e[2].tai_offset, 37);
  ck_assert_int_eq(ntsntp_leap_list_tai_offset(&l, L - 1), 36);
  ck_assert_int_eq(ntsntp_leap_list_tai_offset(&l, L), 37);
  ck_assert_int_eq(ntsntp_leap_list_tai_offset(&l, 100), 0);
  /* Insertion at the end of 2016-12-31, not of the day before. */
  ck_assert_int_eq(ntsntp_leap_list_day_end(&l, L - 1), 1);
  ck_assert_int_eq(ntsntp_leap_list_day_end(&l, L - DAY), 1);
  ck_assert_int_eq(ntsntp_leap_list_day_end(&l, L - DAY - 1), 0);
  ck_assert_int_eq(ntsntp_leap_list_day_end(&l, L), 0);
  ck_assert_int_eq(ntsntp_leap_list_expired(&l, L), 0);
  /* The system's list, if there is one, verifies too. */
  {
    FILE *f = fopen(NTSNTP_LEAP_DEFAULT_LIST, "r");
    if (f) {
      static char buf[65536];
      size_t n = fread(buf, 1, sizeof(buf), f);
      char err[256] = "";
      fclose(f);
      ck_assert_msg(ntsntp_leap_list_parse(buf, n, &l, err, sizeof(err)) == 0,
                    "%s", err);
      ck_assert_int_eq(ntsntp_leap_list_tai_offset(&l, L), 37);
    }
  }
}
END_TEST

START_TEST(test_parse_delete) {
  ntsntp_leap_list l;
  parse_ok(LIST_DELETE, &l);
  ck_assert_int_eq(ntsntp_leap_list_day_end(&l, L - 3600), -1);
}
END_TEST

START_TEST(test_expired) {
  ntsntp_leap_list l;
  parse_ok(LIST_INSERT, &l);
  ck_assert_int_eq(ntsntp_leap_list_expired(&l, 3707596800ULL - 1), 0);
  ck_assert_int_eq(ntsntp_leap_list_expired(&l, 3707596800ULL), 1);
  /* A leap after the expiry is not known: a list that expired on
   * 2016-12-31 12:00 says nothing about that night. */
  l.expires = L - DAY / 2;
  ck_assert_int_eq(ntsntp_leap_list_day_end(&l, L - 3600), 0);
}
END_TEST

START_TEST(test_bad_hash) {
  char text[sizeof(LIST_INSERT)], err[256];
  ntsntp_leap_list l;
  /* One offset changed: 37 -> 38 would also break the +-1 rule, so
   * change the update time instead. */
  memcpy(text, LIST_INSERT, sizeof(text));
  *strstr(text, "3676924800") = '4';
  ck_assert_int_eq(parse_rv(text, err, sizeof(err)), NTSNTP_ERR_AUTH);
  ck_assert_ptr_nonnull(strstr(err, "hash"));
  /* A changed hash word. */
  memcpy(text, LIST_INSERT, sizeof(text));
  *strstr(text, "604b25d3") = '0';
  ck_assert_int_eq(ntsntp_leap_list_parse(text, strlen(text), &l, NULL, 0),
                   NTSNTP_ERR_AUTH);
  ck_assert_uint_eq(l.n, 0); /* nothing half-parsed is left */
}
END_TEST

START_TEST(test_malformed) {
  char err[256];
  static const char *const bad[] = {
      /* no hash line */
      "#@ 3707596800\n2272060800 10\n",
      /* no expiry */
      "2272060800 10\n#h 1 2 3 4 5\n",
      /* no entries */
      "#@ 3707596800\n#h 1 2 3 4 5\n",
      /* garbage */
      "#@ 3707596800\n2272060800 ten\n#h 1 2 3 4 5\n",
      "#@ 3707596800\n2272060800 10 11\n#h 1 2 3 4 5\n",
      "#@ soon\n2272060800 10\n#h 1 2 3 4 5\n",
      /* not increasing, offset jumps */
      "#@ 3707596800\n2272060800 10\n2272060800 11\n#h 1 2 3 4 5\n",
      "#@ 3707596800\n2272060800 10\n2287785600 12\n#h 1 2 3 4 5\n",
      /* hash words */
      "#@ 3707596800\n2272060800 10\n#h 1 2 3 4\n",
      "#@ 3707596800\n2272060800 10\n#h 1 2 3 4 123456789\n",
      /* data after the hash */
      "#@ 3707596800\n2272060800 10\n#h 1 2 3 4 5\n2287785600 11\n",
      "#@ 99999999999999999999999\n2272060800 10\n#h 1 2 3 4 5\n",
  };
  size_t i;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = 0;
    ck_assert_msg(parse_rv(bad[i], err, sizeof(err)) ==
                      NTSNTP_ERR_MALFORMED,
                  "case %zu", i);
    ck_assert_msg(!strncmp(err, "line ", 5), "case %zu: %s", i, err);
  }
  /* Too many entries. */
  {
    static char big[8192];
    size_t k, len = 0;
    len += (size_t)snprintf(big + len, sizeof(big) - len, "#@ 3707596800\n");
    for (k = 0; k < NTSNTP_LEAP_MAX_ENTRIES + 1; k++)
      len += (size_t)snprintf(big + len, sizeof(big) - len, "%llu %zu\n",
                              2272060800ULL + k * DAY, 10 + k);
    ck_assert_int_eq(parse_rv(big, err, sizeof(err)), NTSNTP_ERR_TOO_LARGE);
  }
  ck_assert_int_eq(ntsntp_leap_list_parse(NULL, 0, NULL, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_day_rule) {
  ntsntp_leap_mode m;
  ck_assert_int_eq(ntsntp_leap_day_allowed(L - 1), 1);        /* 12-31 */
  ck_assert_int_eq(ntsntp_leap_day_allowed(L - DAY - 1), 0);  /* 12-30 */
  ck_assert_int_eq(ntsntp_leap_day_allowed(L), 0);            /* 01-01 */
  ck_assert_int_eq(ntsntp_leap_day_allowed(3644697600ULL - 1), 1); /* 06-30 */
  ck_assert_int_eq(ntsntp_leap_day_allowed(3644697600ULL), 0);
  ck_assert_uint_eq(ntsntp_leap_day_end(L - 1), L);
  ck_assert_uint_eq(ntsntp_leap_day_end(L), L + DAY);
  ck_assert_int_eq(ntsntp_leap_mode_parse("slew", &m), 0);
  ck_assert_int_eq(m, NTSNTP_LEAP_MODE_SLEW);
  ck_assert_int_eq(ntsntp_leap_mode_parse("smear", &m),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_str_eq(ntsntp_leap_mode_name(NTSNTP_LEAP_MODE_STEP), "step");
}
END_TEST

START_TEST(test_correction) {
  double c;
  /* Before the leap: nothing, whatever the mode. */
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 0, 0.08, 1, -0.1) ==
            0);
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 0, 0.08, 1, 0) ==
            -1);
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 0, 0.08, -1, 0) ==
            1);
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_SYSTEM, 0, 0.08, 1, 5) ==
            0);
  c = ntsntp_leap_correction(NTSNTP_LEAP_MODE_SLEW, 0, 0.08, 1, 5);
  ck_assert(fabs(c + 0.4) < 1e-12);
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_SLEW, 0, 0.08, 1, 13) ==
            -1);
  /* The smear: half way at half time, at most 32 ppm, done after 62500 s;
   * in SYSTEM mode it undoes the kernel's step first. */
  c = ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 1, 0, 1, 31250);
  ck_assert(fabs(c + 0.5) < 1e-9);
  c = ntsntp_leap_correction(NTSNTP_LEAP_MODE_SYSTEM, 1, 0, 1, 31250);
  ck_assert(fabs(c - 0.5) < 1e-9);
  ck_assert(fabs(ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 1, 0, 1,
                                        31251) -
                 ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 1, 0, 1,
                                        31250)) < 32.1e-6);
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 1, 0, 1, 62500) ==
            -1);
  ck_assert(ntsntp_leap_correction(NTSNTP_LEAP_MODE_STEP, 0, 0.08, 0, 5) == 0);
}
END_TEST

/* ---- the sync core across the leap, one source, injected time ---- */

/* NTP-64 of |s| seconds (ntsntp_ts_add works on differences only). */
static uint64_t ts(double s) {
  double whole = floor(s);
  return ((uint64_t)whole << 32) +
         (uint64_t)((s - whole) * 4294967296.0);
}

static void mk_sample(ntsntp_client_sample *s, double t, double offset,
                      uint8_t leap) {
  double delay = 0.002;
  memset(s, 0, sizeof(*s));
  s->hdr.version = 4;
  s->hdr.mode = NTSNTP_MODE_SERVER;
  s->hdr.leap = leap;
  s->hdr.stratum = 1;
  s->hdr.precision = -20;
  s->hdr.root_disp = ntsntp_short_from_double(1e-4);
  s->hdr.tx_ts = ts(t + offset);
  s->t1 = ts(t - delay / 2);
  s->t4 = ts(t + delay / 2);
  s->offset = offset;
  s->delay = delay;
}

/* One exchange with the source at system time |t|. */
static int feed(ntsntp_sync *sync, double t, double offset, uint8_t leap) {
  ntsntp_client_sample smp;
  ck_assert_int_eq(ntsntp_sync_on_send(sync, 0, ts(t - 0.01)), 0);
  mk_sample(&smp, t, offset, leap);
  return ntsntp_sync_on_sample(sync, 0, &smp, ts(t + 0.001));
}

/* Clock operations that record what the kernel would be told. */
static int k_leap, k_calls, k_fail;
static int k_read(void *u, struct timespec *t) {
  (void)u;
  return clock_gettime(CLOCK_REALTIME, t);
}
static int k_slew(void *u, double o, double f) {
  (void)u, (void)o, (void)f;
  return 0;
}
static int k_step(void *u, double o) {
  (void)u, (void)o;
  return 0;
}
static int k_set_leap(void *u, int dir) {
  (void)u;
  k_calls++;
  if (k_fail) {
    k_fail--;
    return -1;
  }
  k_leap = dir;
  return 0;
}
static const ntsntp_clock_ops *k_ops; /* leap_sync: the core's clock_ops */

/* A synchronised core an hour before the leap day ends. */
static ntsntp_sync *leap_sync(ntsntp_leap_mode mode, int smear,
                              const char *list) {
  ntsntp_sync_settings set;
  ntsntp_sync *sync;
  ntsntp_leap_list l;
  double t;
  ntsntp_sync_settings_default(&set);
  set.leap_mode = mode;
  set.leap_smear = smear;
  set.minpoll = set.maxpoll = 4;
  set.clock_ops = k_ops;
  ck_assert_int_eq(ntsntp_sync_new(&sync, &set, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_sync_add_source(sync, "s", 1, ts(L - 3600.0)), 0);
  if (list) {
    parse_ok(list, &l);
    ntsntp_sync_set_leap_list(sync, &l);
  }
  for (t = L - 3600.0; t < L - 3000.0; t += 16)
    feed(sync, t, 0, NTSNTP_LEAP_NONE);
  return sync;
}

static uint8_t served_leap(ntsntp_sync *sync, double t) {
  ntsntp_clock_state cs;
  ntsntp_sync_leap_update(sync, ts(t));
  ntsntp_sync_clock_state(sync, ts(t), &cs);
  return cs.leap;
}

/* Served time minus |t|, the system time. */
static double served(ntsntp_sync *sync, double t) {
  ntsntp_sync_leap_update(sync, ts(t));
  return ntsntp_ts_diff(ntsntp_sync_serve(sync, ts(t)), ts(t));
}

#define NEAR(a, b) ck_assert_msg(fabs((a) - (b)) < 2e-3, "%.6f != %.6f", \
                                 (double)(a), (double)(b))

START_TEST(test_announce_list) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, LIST_INSERT);
  ntsntp_tracking tr;
  /* Synchronised, the list says insert, and 12-31 has begun. */
  ck_assert_uint_eq(served_leap(sync, L - 2900.0), NTSNTP_LEAP_INSERT);
  ntsntp_sync_tracking(sync, ts(L - 2900.0), &tr);
  ck_assert_int_eq(tr.leap_pending, 1);
  ck_assert_int_eq(tr.leap_announced, 1);
  ck_assert_uint_eq(tr.leap_at, L);
  ck_assert_int_eq(tr.leap_list, 1);
  /* After the leap: none. */
  ck_assert_uint_eq(served_leap(sync, L + 10.0), NTSNTP_LEAP_NONE);
  ntsntp_sync_del(sync);
  /* Without the list and with normal votes: nothing. */
  sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, NULL);
  ck_assert_uint_eq(served_leap(sync, L - 2900.0), NTSNTP_LEAP_NONE);
  ck_assert(served(sync, L + 0.5) == 0);
  ntsntp_sync_del(sync);
  /* The smear never announces. */
  sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 1, LIST_INSERT);
  ck_assert_uint_eq(served_leap(sync, L - 2900.0), NTSNTP_LEAP_NONE);
  ntsntp_sync_del(sync);
  /* A delete list. */
  sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, LIST_DELETE);
  ck_assert_uint_eq(served_leap(sync, L - 2900.0), NTSNTP_LEAP_DELETE);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_announce_votes) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, NULL);
  /* The source announces: served from the next update on. */
  feed(sync, L - 2990.0, 0, NTSNTP_LEAP_INSERT);
  ck_assert_uint_eq(served_leap(sync, L - 2980.0), NTSNTP_LEAP_INSERT);
  ntsntp_sync_del(sync);
  /* Not on a leap day (a source announcing on 12-30): ignored. */
  {
    ntsntp_sync_settings set;
    double t;
    ntsntp_sync_settings_default(&set);
    ck_assert_int_eq(ntsntp_sync_new(&sync, &set, NULL, 0), 0);
    ntsntp_sync_add_source(sync, "s", 1, ts(L - DAY - 3600.0));
    for (t = L - DAY - 3600.0; t < L - DAY - 3000.0; t += 16)
      feed(sync, t, 0, NTSNTP_LEAP_INSERT);
    ck_assert_uint_eq(served_leap(sync, L - DAY - 2990.0), NTSNTP_LEAP_NONE);
    ntsntp_sync_del(sync);
  }
  /* An expired list: votes only. */
  {
    ntsntp_leap_list l;
    ntsntp_tracking tr;
    sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, NULL);
    parse_ok(LIST_INSERT, &l);
    l.expires = L - DAY;
    ntsntp_sync_set_leap_list(sync, &l);
    ck_assert_uint_eq(served_leap(sync, L - 2900.0), NTSNTP_LEAP_NONE);
    ntsntp_sync_tracking(sync, ts(L - 2900.0), &tr);
    ck_assert_int_eq(tr.leap_list, 2);
    ntsntp_sync_del(sync);
  }
}
END_TEST

/* The served clock across 23:59:60 in each mode (system time runs on
 * without a leap, except in SYSTEM mode where the kernel would step it:
 * there, served time is the system time). */
START_TEST(test_served_step) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, LIST_INSERT);
  NEAR(served(sync, L - 0.5), 0);
  NEAR(served(sync, L + 0.5), -1); /* 23:59:59.5 again */
  NEAR(served(sync, L + 1.5), -1);
  /* A sample after the leap: the upstream is 1 s behind the system
   * clock, which is no offset for the model. */
  ck_assert_int_eq(feed(sync, L + 20.0, -1, NTSNTP_LEAP_NONE), 1);
  NEAR(served(sync, L + 21.0), -1);
  /* A day on the second is folded in; still served the same. */
  NEAR(served(sync, L + DAY + 10.0), -1);
  NEAR(served(sync, L + DAY + 20.0), -1);
  ck_assert_uint_eq(served_leap(sync, L + DAY + 30.0), NTSNTP_LEAP_NONE);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_served_slew) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_SLEW, 0, LIST_INSERT);
  NEAR(served(sync, L - 0.5), 0);
  /* 83333 ppm: half the second after 6 s, all of it after 12 s. */
  NEAR(served(sync, L + 6.0), -0.5);
  NEAR(served(sync, L + 12.5), -1);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_served_system) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_SYSTEM, 0, LIST_INSERT);
  ck_assert_uint_eq(served_leap(sync, L - 2900.0), NTSNTP_LEAP_INSERT);
  /* The kernel inserts the second: nothing to add. */
  NEAR(served(sync, L + 0.5), 0);
  NEAR(served(sync, L + DAY + 10.0), 0);
  ntsntp_sync_del(sync);
}
END_TEST

/* LEAPSECMODE system with clock control: the kernel is armed on the leap
 * day (retried after a failure), disarmed after the leap; a withdrawn
 * leap disarms it; other modes never touch it. */
START_TEST(test_kernel_leap) {
  const ntsntp_clock_ops ops = {k_read, k_slew, k_step, NULL, NULL,
                                k_set_leap};
  ntsntp_sync *sync;
  k_ops = &ops;
  k_leap = k_calls = 0;
  k_fail = 1;
  sync = leap_sync(NTSNTP_LEAP_MODE_SYSTEM, 0, LIST_INSERT);
  ck_assert_int_eq(k_leap, 0); /* 23:00 on 12-31 not yet updated */
  served_leap(sync, L - 2900.0); /* the call fails: not armed */
  ck_assert_int_eq(k_calls, 1);
  ck_assert_int_eq(k_leap, 0);
  served_leap(sync, L - 2800.0); /* retried */
  ck_assert_int_eq(k_leap, 1);
  served_leap(sync, L - 2700.0); /* armed once, not again */
  ck_assert_int_eq(k_calls, 2);
  served_leap(sync, L + 0.5); /* during the leap: left to the kernel */
  ck_assert_int_eq(k_leap, 1);
  served_leap(sync, L + 10.0); /* passed: disarmed */
  ck_assert_int_eq(k_leap, 0);
  ck_assert_int_eq(k_calls, 3);
  ntsntp_sync_del(sync);
  /* A delete list arms STA_DEL. */
  sync = leap_sync(NTSNTP_LEAP_MODE_SYSTEM, 0, LIST_DELETE);
  served_leap(sync, L - 2900.0);
  ck_assert_int_eq(k_leap, -1);
  ntsntp_sync_del(sync);
  /* Step mode: ntsd moves the served time, the kernel stays unarmed. */
  k_leap = k_calls = 0;
  sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, LIST_INSERT);
  served_leap(sync, L - 2900.0);
  served_leap(sync, L + 10.0);
  ck_assert_int_eq(k_calls, 0);
  ntsntp_sync_del(sync);
  k_ops = NULL;
}
END_TEST

START_TEST(test_served_smear) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 1, LIST_INSERT);
  double prev, t;
  NEAR(served(sync, L - 10.0), 0); /* armed during the day before */
  prev = served(sync, L);
  NEAR(prev, 0);
  /* Continuous and never faster than 32 ppm away from the system clock. */
  for (t = L + 100; t <= L + 70000.0; t += 100) {
    double c = served(sync, t);
    ck_assert_msg(fabs(c - prev) <= 32.1e-6 * 100, "t %.0f", t - L);
    prev = c;
  }
  NEAR(served(sync, L + 31250.0), -0.5);
  NEAR(served(sync, L + 62500.0), -1);
  ntsntp_sync_del(sync);
}
END_TEST

START_TEST(test_served_delete) {
  ntsntp_sync *sync = leap_sync(NTSNTP_LEAP_MODE_STEP, 0, LIST_DELETE);
  NEAR(served(sync, L - 1.5), 0);
  NEAR(served(sync, L - 0.5), 1); /* 23:59:59 skipped */
  NEAR(served(sync, L + DAY + 10.0), 1);
  ntsntp_sync_del(sync);
}
END_TEST

static Suite *leap_suite(void) {
  Suite *s = suite_create("leap");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_parse_good);
  tcase_add_test(tc, test_parse_delete);
  tcase_add_test(tc, test_expired);
  tcase_add_test(tc, test_bad_hash);
  tcase_add_test(tc, test_malformed);
  tcase_add_test(tc, test_day_rule);
  tcase_add_test(tc, test_correction);
  tcase_add_test(tc, test_announce_list);
  tcase_add_test(tc, test_announce_votes);
  tcase_add_test(tc, test_served_step);
  tcase_add_test(tc, test_served_slew);
  tcase_add_test(tc, test_served_system);
  tcase_add_test(tc, test_kernel_leap);
  tcase_add_test(tc, test_served_smear);
  tcase_add_test(tc, test_served_delete);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(leap_suite()); }
