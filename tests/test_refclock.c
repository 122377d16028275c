/*
 * Reference clock tests, sans I/O: entry parsing, SOCK datagrams, SHM
 * segments in memory, PHC readings, the median filter, pulses locked to a
 * coarse clock, and refclock sources in the sync core against a simulated
 * system clock.  Nothing here reads or changes the machine's clock.
 */
#include <math.h>
#include <stddef.h>

#include "ntsntp/refclock.h"
#include "testutil.h"

/* 2025-01-01 in NTP seconds. */
#define EPOCH_S (1735689600ULL + NTSNTP_UNIX_OFFSET)
static const uint64_t EPOCH = EPOCH_S << 32;

static char err[512];

static int parse1(const char *e, ntsntp_refclock_conf *c) {
  err[0] = 0;
  return ntsntp_refclock_parse(e, c, err, sizeof(err));
}

START_TEST(test_parse_good) {
  ntsntp_refclock_conf c, l[NTSNTP_REFCLOCK_MAX];
  ck_assert_int_eq(parse1("SOCK /run/ntsd/gps.sock refid GPS", &c), 0);
  ck_assert_int_eq(c.driver, NTSNTP_REFCLOCK_SOCK);
  ck_assert_str_eq(c.param, "/run/ntsd/gps.sock");
  ck_assert_str_eq(c.name, "GPS");
  ck_assert_uint_eq(c.refid, 0x47505300u);
  ck_assert_int_eq(c.poll, 4);
  ck_assert_int_eq(c.dpoll, 0);
  ck_assert_uint_eq(c.filter, 64);
  ck_assert_uint_eq(c.perm, 0660);
  ck_assert_double_eq_tol(c.precision, 1e-6, 1e-15);
  ck_assert_int_eq(c.lock, -1);

  ck_assert_int_eq(parse1("SHM 2:perm=0644 refid NMEA offset 0.2 delay 0.1 "
                          "noselect poll 3 filter 16 stratum 2",
                          &c),
                   0);
  ck_assert_int_eq(c.driver, NTSNTP_REFCLOCK_SHM);
  ck_assert_uint_eq(c.unit, 2);
  ck_assert_uint_eq(c.perm, 0644);
  ck_assert_double_eq_tol(c.offset, 0.2, 1e-12);
  ck_assert_double_eq_tol(c.delay, 0.1, 1e-12);
  ck_assert_int_eq(c.noselect, 1);
  ck_assert_int_eq(c.poll, 3);
  ck_assert_uint_eq(c.filter, 16);
  ck_assert_uint_eq(c.stratum, 2);

  ck_assert_int_eq(parse1("PHC /dev/ptp0:nocrossts poll 2 dpoll -2 tai "
                          "prefer trust precision 1e-8",
                          &c),
                   0);
  ck_assert_int_eq(c.phc_nocrossts, 1);
  ck_assert_int_eq(c.tai, 1);
  ck_assert_int_eq(c.prefer, 1);
  ck_assert_int_eq(c.trust, 1);
  ck_assert_int_eq(c.dpoll, -2);

  /* A list: default refids, lock resolved, chrony's PPS line. */
  ck_assert_int_eq(ntsntp_refclock_parse_list(
                       "SHM 0 refid NMEA noselect,PPS /dev/pps0:clear lock "
                       "NMEA refid PPS rate 1 width 0.1,SOCK /run/a.sock,"
                       " PHC /dev/ptp1 ",
                       l, NTSNTP_REFCLOCK_MAX, err, sizeof(err)),
                   4);
  ck_assert_int_eq(l[1].driver, NTSNTP_REFCLOCK_PPS);
  ck_assert_int_eq(l[1].pps_clear, 1);
  ck_assert_int_eq(l[1].lock, 0);
  ck_assert_double_eq_tol(l[1].precision, 1e-9, 1e-18);
  ck_assert_str_eq(l[2].name, "SOC2");
  ck_assert_str_eq(l[3].name, "PHC3");
  ck_assert_int_eq(ntsntp_refclock_parse_list("", l, 4, err, sizeof(err)),
                   0);
  ck_assert_int_eq(ntsntp_refclock_parse_list(NULL, l, 4, err, sizeof(err)),
                   0);
}
END_TEST

static void bad(const char *entry, const char *want) {
  ntsntp_refclock_conf l[NTSNTP_REFCLOCK_MAX];
  err[0] = 0;
  ck_assert_msg(ntsntp_refclock_parse_list(entry, l, NTSNTP_REFCLOCK_MAX, err,
                                           sizeof(err)) < 0,
                "accepted: %s", entry);
  ck_assert_msg(strstr(err, "REFCLOCKS") && strstr(err, want),
                "%s: message \"%s\" lacks \"%s\"", entry, err, want);
}

START_TEST(test_parse_bad) {
  bad("GPSD /run/x", "unknown driver");
  bad("SOCK", "needs a driver and its parameter");
  bad("SHM x", "unit number");
  bad("SHM 256", "unit number");
  bad("SOCK run/x.sock", "absolute path");
  bad("PPS /dev/pps0:extpps", "driver option");
  bad("SHM 0:perm=0755", "perm");
  bad("SOCK /x colour red", "unknown option");
  bad("SOCK /x refid", "needs a value");
  bad("SOCK /x poll 30", "poll 30");
  bad("SOCK /x poll x", "poll x");
  bad("SOCK /x filter 0", "filter 0");
  bad("SOCK /x refid TOOLONG", "refid TOOLONG");
  bad("SOCK /x offset nan", "offset nan");
  bad("SOCK /x delay -1", "delay -1");
  bad("SOCK /x minsamples 4", "not supported");
  bad("SOCK /x require", "not supported");
  bad("PPS /dev/pps0 width 1", "width");
  bad("PPS /dev/pps0 lock GPS", "names no other entry");
  bad("PPS /dev/pps0 refid A,PPS /dev/pps1 lock A", "itself a pulse");
  bad("SHM 0 refid GPS,SOCK /x refid GPS", "both have refid GPS");
  bad("SHM 0,,SHM 1", "empty entry");
  bad("SHM 0 lock X", "lock is for pulses");
  {
    ntsntp_refclock_conf l[2];
    ck_assert_int_eq(
        ntsntp_refclock_parse_list("SHM 0,SHM 1,SHM 2", l, 2, err,
                                   sizeof(err)),
        NTSNTP_ERR_NOBUF);
    ck_assert_ptr_nonnull(strstr(err, "more than 2"));
  }
}
END_TEST

START_TEST(test_legacy) {
  ntsntp_refclock_conf l[2];
  ck_assert_int_eq(ntsntp_refclock_legacy("127.127.28.1", l, 0, 2, err,
                                          sizeof(err)),
                   1);
  ck_assert_int_eq(l[0].driver, NTSNTP_REFCLOCK_SHM);
  ck_assert_uint_eq(l[0].unit, 1);
  ck_assert_str_eq(l[0].name, "SHM1");
  ck_assert_int_eq(ntsntp_refclock_legacy("127.127.1.1", l, 1, 2, err,
                                          sizeof(err)),
                   0);
  ck_assert_int_eq(ntsntp_refclock_legacy("time.example", l, 1, 2, err,
                                          sizeof(err)),
                   0);
  ck_assert_int_eq(ntsntp_refclock_legacy("127.127.28.1:123", l, 1, 2, err,
                                          sizeof(err)),
                   0);
  ck_assert_int_eq(ntsntp_refclock_legacy("127.127.20.0", l, 1, 2, err,
                                          sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "REFCLOCKS"));
  ck_assert_int_eq(ntsntp_refclock_legacy("127.127.28.0", l, 2, 2, err,
                                          sizeof(err)),
                   NTSNTP_ERR_NOBUF);
}
END_TEST

START_TEST(test_sock_decode) {
  ntsntp_refclock_sock_sample s, out;
  uint8_t buf[sizeof(s) + 8];
  memset(&s, 0, sizeof(s));
  s.tv.tv_sec = 1735689600;
  s.tv.tv_usec = 250000;
  s.offset = -0.0123;
  s.leap = 1;
  s.magic = NTSNTP_REFCLOCK_SOCK_MAGIC;
  memcpy(buf, &s, sizeof(s));
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s), &out), 0);
  ck_assert_int_eq(out.tv.tv_usec, 250000);
  ck_assert_double_eq(out.offset, -0.0123);
  ck_assert_int_eq(out.leap, 1);
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s) - 1, &out),
                   NTSNTP_ERR_TRUNCATED);
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s) + 8, &out),
                   NTSNTP_ERR_TRUNCATED);
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, 0, &out),
                   NTSNTP_ERR_TRUNCATED);
  s.magic = 0x4b434f53; /* byte-swapped */
  memcpy(buf, &s, sizeof(s));
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s), &out),
                   NTSNTP_ERR_MALFORMED);
  s.magic = NTSNTP_REFCLOCK_SOCK_MAGIC;
  s.leap = 3;
  memcpy(buf, &s, sizeof(s));
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s), &out),
                   NTSNTP_ERR_MALFORMED);
  s.leap = 0;
  s.tv.tv_usec = 1000000;
  memcpy(buf, &s, sizeof(s));
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s), &out),
                   NTSNTP_ERR_MALFORMED);
  s.tv.tv_usec = 0;
  s.offset = NAN;
  memcpy(buf, &s, sizeof(s));
  ck_assert_int_eq(ntsntp_refclock_sock_decode(buf, sizeof(s), &out),
                   NTSNTP_ERR_MALFORMED);
}
END_TEST

/* The layouts gpsd, ntpd and chrony use on 64-bit Linux (LP64). */
START_TEST(test_layouts) {
#if defined(__LP64__)
  ck_assert_uint_eq(sizeof(ntsntp_refclock_sock_sample), 40);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_sock_sample, offset), 16);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_sock_sample, pulse), 24);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_sock_sample, leap), 28);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_sock_sample, magic), 36);
  ck_assert_uint_eq(sizeof(ntsntp_refclock_shm), 96);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, count), 4);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, clock_sec), 8);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, clock_usec), 16);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, receive_sec), 24);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, receive_usec), 32);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, leap), 36);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, valid), 48);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, clock_nsec), 52);
  ck_assert_uint_eq(offsetof(ntsntp_refclock_shm, receive_nsec), 56);
#endif
}
END_TEST

START_TEST(test_shm) {
  ntsntp_refclock_shm m;
  ntsntp_refclock_reading r;
  memset(&m, 0, sizeof(m));
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), 0); /* not valid */
  m.mode = 0;
  m.clock_sec = 1735689601;
  m.clock_usec = 0;
  m.receive_sec = 1735689600;
  m.receive_usec = 999000;
  m.leap = 2;
  m.valid = 1;
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), 1);
  ck_assert_int_eq(m.valid, 0);
  ck_assert_double_eq_tol(r.offset, 0.001, 1e-12);
  ck_assert_uint_eq(r.leap, 2);
  ck_assert_uint_eq(r.t >> 32, EPOCH_S);
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), 0); /* consumed */
  /* mode 1, with nanoseconds that agree with the microseconds */
  m.mode = 1;
  m.count = 7;
  m.clock_usec = 123;
  m.clock_nsec = 123456;
  m.receive_usec = 0;
  m.receive_nsec = 0;
  m.receive_sec = 1735689601;
  m.leap = 0;
  m.valid = 1;
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), 1);
  ck_assert_double_eq_tol(r.offset, 123456e-9, 1e-12);
  /* nanoseconds that disagree: microseconds count */
  m.clock_nsec = 999999;
  m.valid = 1;
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), 1);
  ck_assert_double_eq_tol(r.offset, 123e-6, 1e-12);
  /* bad: unknown mode, usec out of range, no fix */
  m.mode = 2;
  m.valid = 1;
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), NTSNTP_ERR_MALFORMED);
  ck_assert_int_eq(m.valid, 0);
  m.mode = 0;
  m.clock_usec = 1000000;
  m.valid = 1;
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), NTSNTP_ERR_MALFORMED);
  m.clock_usec = 0;
  m.leap = 3;
  m.valid = 1;
  ck_assert_int_eq(ntsntp_refclock_shm_read(&m, &r), NTSNTP_ERR_MALFORMED);
}
END_TEST

START_TEST(test_phc) {
  ntsntp_refclock_phc_reading rd[3];
  ntsntp_refclock_reading out;
  double e;
  uint64_t t = EPOCH;
  /* PHC 2.5 us ahead; windows of 30, 5 and 50 us */
  rd[0].sys_before = t;
  rd[0].sys_after = ntsntp_ts_add(t, 30e-6);
  rd[0].phc = ntsntp_ts_add(t, 15e-6 + 2.5e-6 + 3e-6); /* skewed reading */
  rd[1].sys_before = ntsntp_ts_add(t, 100e-6);
  rd[1].sys_after = ntsntp_ts_add(t, 105e-6);
  rd[1].phc = ntsntp_ts_add(t, 102.5e-6 + 2.5e-6);
  rd[2].sys_before = ntsntp_ts_add(t, 200e-6);
  rd[2].sys_after = ntsntp_ts_add(t, 250e-6);
  rd[2].phc = ntsntp_ts_add(t, 225e-6);
  ck_assert_int_eq(ntsntp_refclock_phc_sample(rd, 3, 0, &out, &e), 0);
  ck_assert_double_eq_tol(out.offset, 2.5e-6, 2e-9);
  ck_assert_double_eq_tol(e, 2.5e-6, 2e-9);
  ck_assert_double_eq_tol(ntsntp_ts_diff(out.t, t), 102.5e-6, 2e-9);
  /* a PHC on TAI */
  rd[1].phc = ntsntp_ts_add(rd[1].phc, 37);
  ck_assert_int_eq(ntsntp_refclock_phc_sample(rd, 3, 37, &out, &e), 0);
  ck_assert_double_eq_tol(out.offset, 2.5e-6, 2e-9);
  /* PRECISE: one reading, no window */
  rd[0].sys_after = rd[0].sys_before;
  rd[0].phc = ntsntp_ts_add(t, -1e-6);
  ck_assert_int_eq(ntsntp_refclock_phc_sample(rd, 1, 0, &out, &e), 0);
  ck_assert_double_eq_tol(out.offset, -1e-6, 2e-9);
  ck_assert_double_eq(e, 0);
  /* nothing usable */
  rd[0].sys_after = ntsntp_ts_add(t, 2e-3);
  rd[1].sys_after = ntsntp_ts_add(rd[1].sys_before, -1e-6);
  ck_assert_int_eq(ntsntp_refclock_phc_sample(rd, 2, 0, &out, &e),
                   NTSNTP_ERR_MALFORMED);
  ck_assert_int_eq(ntsntp_refclock_phc_sample(rd, 0, 0, &out, &e),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_filter) {
  ntsntp_refclock_conf c;
  ntsntp_refclock rc;
  ntsntp_refclock_sample s;
  int i;
  ck_assert_int_eq(parse1("SOCK /x offset 0.001", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 0); /* nothing yet */
  for (i = 0; i < 16; i++) {
    uint64_t t = ntsntp_ts_add(EPOCH, i);
    /* 2 ms true offset, +-10 us, and three wild ones */
    double o = 0.002 + (i % 3 - 1) * 10e-6 + (i % 5 == 0 ? 0.05 : 0);
    ck_assert_int_eq(ntsntp_refclock_add_sample(&rc, t, t, o, 1, 0, NULL),
                     0);
  }
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 1);
  ck_assert_double_eq_tol(s.offset, 0.003, 10e-6); /* offset option added */
  ck_assert_double_lt(s.disp, 20e-6);
  ck_assert_uint_eq(s.leap, 1);
  ck_assert_double_eq_tol(ntsntp_ts_diff(s.t, EPOCH), 7.5, 4);
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 0); /* emptied */
  ck_assert_uint_eq(rc.stats.polls_empty, 2);
  /* three are not enough for a filter of 4 or more */
  for (i = 0; i < 3; i++) {
    uint64_t t = ntsntp_ts_add(EPOCH, 20 + i);
    ntsntp_refclock_add_sample(&rc, t, t, 0, 0, 0, NULL);
  }
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 0);
  /* bad and stale samples are counted, not kept */
  ck_assert_int_eq(ntsntp_refclock_add_sample(&rc, EPOCH, EPOCH, NAN, 0, 0,
                                              NULL),
                   NTSNTP_ERR_MALFORMED);
  ck_assert_int_eq(ntsntp_refclock_add_sample(&rc, EPOCH, EPOCH, 0, 3, 0,
                                              NULL),
                   NTSNTP_ERR_MALFORMED);
  ck_assert_int_eq(ntsntp_refclock_add_sample(
                       &rc, ntsntp_ts_add(EPOCH, 100), EPOCH, 0, 0, 0, NULL),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(ntsntp_refclock_add_sample(
                       &rc, EPOCH, ntsntp_ts_add(EPOCH, 2), 0, 0, 0, NULL),
                   NTSNTP_ERR_STATE);
  ck_assert_uint_eq(rc.stats.bad, 2);
  ck_assert_uint_eq(rc.stats.stale, 2);
  /* maxdispersion: a filtered sample with a larger error is dropped;
   * without it, a coarse clock (precision 0.1, gpsd's NMEA) is kept */
  ck_assert_int_eq(parse1("SHM 0 precision 0.1 maxdispersion 0.01", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  for (i = 0; i < 4; i++)
    ntsntp_refclock_add_sample(&rc, EPOCH, EPOCH, 0, 0, 0, NULL);
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 0);
  ck_assert_uint_eq(rc.n, 0);
  ck_assert_int_eq(parse1("SHM 0 precision 0.1", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  for (i = 0; i < 4; i++)
    ntsntp_refclock_add_sample(&rc, EPOCH, EPOCH, 0.3, 0, 0, NULL);
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 1);
  ck_assert_double_eq_tol(s.disp, 0.1, 1e-12);
  /* filter 1: each sample is ready at once */
  ck_assert_int_eq(parse1("SHM 0 filter 1", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  ck_assert_int_eq(ntsntp_refclock_add_sample(&rc, EPOCH, EPOCH, 0.5, 0, 0,
                                              NULL),
                   1);
  ck_assert_int_eq(ntsntp_refclock_poll(&rc, &s), 1);
  ck_assert_double_eq_tol(s.offset, 0.5, 1e-12);
}
END_TEST

START_TEST(test_pulse_lock) {
  ntsntp_refclock_conf l[2];
  ntsntp_refclock gps, pps;
  ntsntp_refclock_ref ref;
  ntsntp_refclock_sample s;
  /* The system clock is 2.3001234 s behind: true - system = 2.3001234. */
  const double off = 2.3001234;
  uint64_t edge_sys, now;
  double frac;
  ck_assert_int_eq(ntsntp_refclock_parse_list(
                       "SOCK /gps refid GPS noselect,PPS /dev/pps0 lock GPS "
                       "width 0.1",
                       l, 2, err, sizeof(err)),
                   2);
  ntsntp_refclock_init(&gps, &l[0]);
  ntsntp_refclock_init(&pps, &l[1]);
  /* the edge of true second EPOCH_S + 10 */
  edge_sys = ntsntp_ts_add(EPOCH, 10 - off);
  frac = (double)(uint32_t)edge_sys / 4294967296.0;
  now = ntsntp_ts_add(edge_sys, 0.01);
  /* no lock sample yet */
  ck_assert_int_eq(ntsntp_refclock_last(&gps, &ref), NTSNTP_ERR_NOT_FOUND);
  ck_assert_int_eq(ntsntp_refclock_add_pulse(&pps, now, edge_sys, frac, NULL),
                   NTSNTP_ERR_NOT_FOUND);
  /* the coarse clock, 30 ms off (NMEA-like), leap warning on */
  ck_assert_int_eq(ntsntp_refclock_add_sample(&gps, now, edge_sys, off + 0.03,
                                              1, 0, NULL),
                   0);
  ck_assert_int_eq(ntsntp_refclock_last(&gps, &ref), 0);
  ck_assert_int_eq(ntsntp_refclock_add_pulse(&pps, now, edge_sys, frac, &ref),
                   0);
  ck_assert_double_eq_tol(pps.last.offset, off, 1e-9);
  ck_assert_uint_eq(pps.last.leap, 1);
  /* the coarse clock 0.25 s off: the second is ambiguous */
  ref.offset = off + 0.25;
  ck_assert_int_eq(ntsntp_refclock_add_pulse(&pps, now, edge_sys, frac, &ref),
                   NTSNTP_ERR_MALFORMED);
  /* 60 ms off: inside the lock gate, outside the width's (50 ms) */
  ref.offset = off + 0.06;
  ck_assert_int_eq(ntsntp_refclock_add_pulse(&pps, now, edge_sys, frac, &ref),
                   NTSNTP_ERR_MALFORMED);
  /* a lock sample 3 pulses old */
  ref.offset = off;
  ref.t = ntsntp_ts_add(edge_sys, -3);
  ck_assert_int_eq(ntsntp_refclock_add_pulse(&pps, now, edge_sys, frac, &ref),
                   NTSNTP_ERR_NOT_FOUND);
  ref.t = edge_sys;
  ref.leap = NTSNTP_LEAP_UNSYNC;
  ck_assert_int_eq(ntsntp_refclock_add_pulse(&pps, now, edge_sys, frac, &ref),
                   NTSNTP_ERR_NOT_FOUND);
  ck_assert_uint_eq(pps.stats.pulses, 1);
  ck_assert_uint_eq(pps.stats.no_lock, 3);
  ck_assert_uint_eq(pps.stats.off_lock, 2);
  /* four edges make a poll's sample */
  ref.leap = 0;
  for (int k = 1; k < 4; k++) {
    uint64_t e = ntsntp_ts_add(edge_sys, k);
    ref.t = e;
    ck_assert_int_eq(ntsntp_refclock_add_pulse(
                         &pps, ntsntp_ts_add(e, 0.01), e,
                         (double)(uint32_t)e / 4294967296.0, &ref),
                     0);
  }
  ck_assert_int_eq(ntsntp_refclock_poll(&pps, &s), 1);
  ck_assert_double_eq_tol(s.offset, off, 1e-9);
}
END_TEST

/*
 * The simulation: true time T since EPOCH; the system clock reads
 * T + sys0 + drift * T, i.e. offset (true - system) = -(sys0 + drift T).
 */
typedef struct sim {
  double sys0, drift;
  uint64_t base; /* true time at T = 0; 0: EPOCH */
} sim;

static uint64_t sys_at(const sim *m, double T) {
  return ntsntp_ts_add(m->base ? m->base : EPOCH, T + m->sys0 + m->drift * T);
}

static ntsntp_sync *new_sync(void) {
  ntsntp_sync_settings ss;
  ntsntp_sync *sync;
  ntsntp_sync_settings_default(&ss);
  ck_assert_int_eq(ntsntp_sync_new(&sync, &ss, NULL, 0), 0);
  return sync;
}

static int add_rc(ntsntp_sync *sync, const ntsntp_refclock_conf *c,
                  uint64_t now) {
  ntsntp_sync_refclock sc;
  ntsntp_refclock_sync_conf(c, &sc);
  return ntsntp_sync_add_refclock(sync, c->name, c->refid, &sc, now);
}

/* Target: PPS edges locked to a SOCK time source (5 ms noise, noselect);
 * once settled the served time is within 1 us of the edges. */
START_TEST(test_pps_locked_served) {
  ntsntp_refclock_conf l[2];
  static ntsntp_refclock gps, pps;
  ntsntp_sync *sync = new_sync();
  sim m = {0.4, 25e-6, 0};
  ntsntp_clock_state cs;
  ntsntp_source_info in;
  int gi, pi, T, checked = 0;
  double worst = 0;
  uint64_t seed = 42;
  ck_assert_int_eq(ntsntp_refclock_parse_list(
                       "SOCK /gps refid GPS noselect,PPS /dev/pps0 lock GPS "
                       "refid PPS",
                       l, 2, err, sizeof(err)),
                   2);
  ntsntp_refclock_init(&gps, &l[0]);
  ntsntp_refclock_init(&pps, &l[1]);
  gi = add_rc(sync, &l[0], sys_at(&m, 0));
  pi = add_rc(sync, &l[1], sys_at(&m, 0));
  ck_assert_int_ge(gi, 0);
  ck_assert_int_ge(pi, 0);
  for (T = 1; T <= 3600; T++) {
    uint64_t edge = sys_at(&m, T), now = sys_at(&m, T + 0.1);
    double truth = -(m.sys0 + m.drift * T), noise;
    ntsntp_refclock_ref ref;
    ntsntp_refclock_sample s;
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    noise = ((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 0.01;
    ntsntp_refclock_add_sample(&gps, now, edge, truth + noise, 0, 0, NULL);
    ck_assert_int_eq(ntsntp_refclock_last(&gps, &ref), 0);
    ck_assert_int_eq(ntsntp_refclock_add_pulse(
                         &pps, now, edge, (double)(uint32_t)edge / 4294967296.0,
                         &ref),
                     0);
    if (T % 16 == 0) {
      int have = ntsntp_refclock_poll(&gps, &s);
      ntsntp_sync_on_refclock(sync, (unsigned)gi, have ? &s : NULL, now);
      have = ntsntp_refclock_poll(&pps, &s);
      ntsntp_sync_on_refclock(sync, (unsigned)pi, have ? &s : NULL, now);
    }
    if (T > 1200) {
      /* served time at the edge's system time vs the true second */
      double e = ntsntp_ts_diff(ntsntp_sync_serve(sync, edge),
                                ntsntp_ts_add(EPOCH, T));
      if (fabs(e) > worst)
        worst = fabs(e);
      checked++;
    }
  }
  printf("pps locked to sock: worst served error at the edges %.3f us over "
         "%d edges\n",
         worst * 1e6, checked);
  ck_assert_double_lt(worst, 1e-6);
  ntsntp_sync_clock_state(sync, sys_at(&m, 3600), &cs);
  ck_assert_uint_eq(cs.stratum, 1);
  ck_assert_uint_eq(cs.refid, 0x50505300u); /* "PPS" */
  ck_assert_int_eq(ntsntp_sync_source_info(sync, (unsigned)pi,
                                           sys_at(&m, 3600), &in),
                   0);
  ck_assert_int_eq(in.refclock, 1);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_SELECTED);
  ck_assert_uint_eq(in.reach, 0377);
  ck_assert_int_eq(ntsntp_sync_source_info(sync, (unsigned)gi,
                                           sys_at(&m, 3600), &in),
                   0);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_UNUSABLE); /* noselect */
  ntsntp_sync_del(sync);
}
END_TEST

/* SOCK only: served within 1 ms of what the writer announced; its leap
 * warning is served; a writer that stops makes the source unreachable. */
START_TEST(test_sock_only_served) {
  ntsntp_refclock_conf c;
  static ntsntp_refclock rc;
  ntsntp_sync *sync = new_sync();
  /* 2025-06-30: a day a leap second may end, so its warning is served */
  sim m = {-0.75, -40e-6, (1751241600ULL + NTSNTP_UNIX_OFFSET) << 32};
  ntsntp_clock_state cs;
  ntsntp_source_info in;
  int i, T;
  double worst = 0;
  ck_assert_int_eq(parse1("SOCK /gps refid GPS", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  i = add_rc(sync, &c, sys_at(&m, 0));
  for (T = 1; T <= 1200; T++) {
    uint64_t t = sys_at(&m, T);
    double truth = -(m.sys0 + m.drift * T);
    ntsntp_refclock_sample s;
    ntsntp_refclock_add_sample(&rc, t, t, truth + ((T % 7) - 3) * 100e-6,
                               T > 600 ? 1 : 0, 0, NULL);
    if (T % 16 == 0) {
      int have = ntsntp_refclock_poll(&rc, &s);
      ntsntp_sync_on_refclock(sync, (unsigned)i, have ? &s : NULL, t);
    }
    if (T > 300) {
      double e = ntsntp_ts_diff(ntsntp_sync_serve(sync, t),
                                ntsntp_ts_add(m.base, T));
      if (fabs(e) > worst)
        worst = fabs(e);
    }
  }
  printf("sock only: worst served error %.3f us\n", worst * 1e6);
  ck_assert_double_lt(worst, 1e-3);
  ntsntp_sync_clock_state(sync, sys_at(&m, 1200), &cs);
  ck_assert_uint_eq(cs.stratum, 1);
  ck_assert_uint_eq(cs.refid, 0x47505300u);
  ck_assert_uint_eq(cs.leap, NTSNTP_LEAP_INSERT);
  /* The writer stops: eight empty polls empty the reach register. */
  for (T = 1216; T <= 1216 + 8 * 16; T += 16)
    ntsntp_sync_on_refclock(sync, (unsigned)i, NULL, sys_at(&m, T));
  ntsntp_sync_source_info(sync, (unsigned)i, sys_at(&m, T), &in);
  ck_assert_uint_eq(in.reach, 0);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_UNREACHABLE);
  /* bad samples to the core */
  {
    ntsntp_refclock_sample s = {sys_at(&m, T), NAN, 0, 0};
    ck_assert_int_eq(ntsntp_sync_on_refclock(sync, (unsigned)i, &s,
                                             sys_at(&m, T)),
                     NTSNTP_ERR_MALFORMED);
    s.offset = 0;
    s.leap = NTSNTP_LEAP_UNSYNC;
    ck_assert_int_eq(ntsntp_sync_on_refclock(sync, (unsigned)i, &s,
                                             sys_at(&m, T)),
                     NTSNTP_ERR_MALFORMED);
    ck_assert_int_eq(ntsntp_sync_on_refclock(sync, 99, NULL, 0),
                     NTSNTP_ERR_INVALID_ARG);
  }
  ntsntp_sync_del(sync);
}
END_TEST

/* A network sample from a simulated server with |bias| at true time T. */
static void net_sample(ntsntp_sync *sync, int i, const sim *m, double T,
                       double bias) {
  ntsntp_client_sample s;
  memset(&s, 0, sizeof(s));
  s.hdr.leap = 0;
  s.hdr.stratum = 1;
  s.hdr.precision = -20;
  s.t1 = sys_at(m, T - 0.001);
  s.t4 = sys_at(m, T + 0.001);
  s.hdr.tx_ts = ntsntp_ts_add(EPOCH, T + bias);
  s.offset = -(m->sys0 + m->drift * T) + bias;
  s.delay = 0.002;
  ntsntp_sync_on_sample(sync, (unsigned)i, &s, sys_at(m, T));
}

/* Refclock and network servers judged together: a wrong server is a
 * falseticker, the stratum-0 refclock the system peer; a refclock that
 * goes wrong while two servers agree is the falseticker, unless trusted. */
static void mixed(int refclock_bias_ms, const char *opts, int want_rc_state,
                  uint32_t want_refid) {
  ntsntp_refclock_conf c;
  static ntsntp_refclock rc;
  ntsntp_sync *sync = new_sync();
  sim m = {0.01, 5e-6, 0};
  ntsntp_source_info in;
  ntsntp_clock_state cs;
  char entry[128];
  int r, a, b, x, T;
  snprintf(entry, sizeof(entry), "SOCK /gps refid GPS %s", opts);
  ck_assert_int_eq(parse1(entry, &c), 0);
  ntsntp_refclock_init(&rc, &c);
  r = add_rc(sync, &c, sys_at(&m, 0));
  a = ntsntp_sync_add_source(sync, "a", 0x0a000001, sys_at(&m, 0));
  b = ntsntp_sync_add_source(sync, "b", 0x0a000002, sys_at(&m, 0));
  x = ntsntp_sync_add_source(sync, "x", 0x0a000003, sys_at(&m, 0));
  for (T = 1; T <= 1024; T++) {
    uint64_t t = sys_at(&m, T);
    ntsntp_refclock_sample s;
    ntsntp_refclock_add_sample(&rc, t, t,
                               -(m.sys0 + m.drift * T) +
                                   refclock_bias_ms * 1e-3,
                               0, 0, NULL);
    if (T % 16 == 0) {
      int have = ntsntp_refclock_poll(&rc, &s);
      ntsntp_sync_on_refclock(sync, (unsigned)r, have ? &s : NULL, t);
      net_sample(sync, a, &m, T + 0.3, 0.0002);
      net_sample(sync, b, &m, T + 0.5, -0.0002);
      net_sample(sync, x, &m, T + 0.7, 0.080); /* 80 ms wrong */
    }
  }
  ntsntp_sync_source_info(sync, (unsigned)r, sys_at(&m, 1024), &in);
  ck_assert_msg((int)in.state == want_rc_state, "%s: refclock state %c",
                opts, ntsntp_source_state_char(in.state));
  ck_assert_int_eq(in.refclock, 1);
  ntsntp_sync_source_info(sync, (unsigned)a, sys_at(&m, 1024), &in);
  ck_assert_int_eq(in.refclock, 0);
  ntsntp_sync_source_info(sync, (unsigned)x, sys_at(&m, 1024), &in);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_FALSETICKER);
  ntsntp_sync_clock_state(sync, sys_at(&m, 1024), &cs);
  if (want_refid) {
    ck_assert_uint_eq(cs.refid, want_refid);
    ck_assert_uint_eq(cs.stratum, 1);
  } else { /* server a or b */
    ck_assert_uint_eq(cs.refid & 0xfffffffcu, 0x0a000000u);
    ck_assert_uint_ne(cs.refid, 0x0a000003u);
    ck_assert_uint_eq(cs.stratum, 2);
  }
  ntsntp_sync_del(sync);
}

START_TEST(test_mixed_selection) {
  /* a good refclock: selected, stratum 1 served */
  mixed(0, "", NTSNTP_SOURCE_SELECTED, 0x47505300u);
  /* a refclock 50 ms wrong: two agreeing servers make it a falseticker */
  mixed(50, "", NTSNTP_SOURCE_FALSETICKER, 0);
  /* noselect: never selected */
  mixed(0, "noselect", NTSNTP_SOURCE_UNUSABLE, 0);
}
END_TEST

START_TEST(test_trust_prefer) {
  ntsntp_refclock_conf c;
  static ntsntp_refclock rc;
  ntsntp_sync *sync = new_sync();
  sim m = {0.01, 5e-6, 0};
  ntsntp_source_info in;
  int r, a, b, T;
  /* A trusted refclock 50 ms away from two agreeing servers: they are
   * the falsetickers. */
  ck_assert_int_eq(parse1("SOCK /gps refid GPS trust", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  r = add_rc(sync, &c, sys_at(&m, 0));
  a = ntsntp_sync_add_source(sync, "a", 0x0a000001, sys_at(&m, 0));
  b = ntsntp_sync_add_source(sync, "b", 0x0a000002, sys_at(&m, 0));
  for (T = 1; T <= 512; T++) {
    uint64_t t = sys_at(&m, T);
    ntsntp_refclock_sample s;
    ntsntp_refclock_add_sample(&rc, t, t, -(m.sys0 + m.drift * T) + 0.05, 0,
                               0, NULL);
    if (T % 16 == 0) {
      int have = ntsntp_refclock_poll(&rc, &s);
      ntsntp_sync_on_refclock(sync, (unsigned)r, have ? &s : NULL, t);
      net_sample(sync, a, &m, T + 0.3, 0);
      net_sample(sync, b, &m, T + 0.5, 0);
    }
  }
  ntsntp_sync_source_info(sync, (unsigned)r, sys_at(&m, 512), &in);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_SELECTED);
  ntsntp_sync_source_info(sync, (unsigned)a, sys_at(&m, 512), &in);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_FALSETICKER);
  ntsntp_sync_del(sync);

  /* prefer: a stratum-2 refclock is the system peer over stratum-1
   * servers that agree with it */
  sync = new_sync();
  ck_assert_int_eq(parse1("SOCK /gps refid GPS stratum 1 prefer", &c), 0);
  ntsntp_refclock_init(&rc, &c);
  r = add_rc(sync, &c, sys_at(&m, 0));
  a = ntsntp_sync_add_source(sync, "a", 0x0a000001, sys_at(&m, 0));
  for (T = 1; T <= 512; T++) {
    uint64_t t = sys_at(&m, T);
    ntsntp_refclock_sample s;
    ntsntp_refclock_add_sample(&rc, t, t, -(m.sys0 + m.drift * T), 0, 0,
                               NULL);
    if (T % 16 == 0) {
      int have = ntsntp_refclock_poll(&rc, &s);
      ntsntp_sync_on_refclock(sync, (unsigned)r, have ? &s : NULL, t);
      net_sample(sync, a, &m, T + 0.3, 0);
    }
  }
  ntsntp_sync_source_info(sync, (unsigned)r, sys_at(&m, 512), &in);
  ck_assert_int_eq(in.state, NTSNTP_SOURCE_SELECTED);
  ck_assert_uint_eq(in.stratum, 1);
  ntsntp_sync_del(sync);
}
END_TEST

int main(void) {
  Suite *s = suite_create("refclock");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_parse_good);
  tcase_add_test(tc, test_parse_bad);
  tcase_add_test(tc, test_legacy);
  tcase_add_test(tc, test_sock_decode);
  tcase_add_test(tc, test_layouts);
  tcase_add_test(tc, test_shm);
  tcase_add_test(tc, test_phc);
  tcase_add_test(tc, test_filter);
  tcase_add_test(tc, test_pulse_lock);
  tcase_add_test(tc, test_pps_locked_served);
  tcase_add_test(tc, test_sock_only_served);
  tcase_add_test(tc, test_mixed_selection);
  tcase_add_test(tc, test_trust_prefer);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
