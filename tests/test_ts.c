/* NTP time formats: conversions, eras, short format. */
#include <arpa/inet.h>
#include <check.h>
#include <linux/net_tstamp.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ntsntp/ts.h"
#include "testutil.h"

START_TEST(test_unix_epoch) {
  struct timespec t = {0, 0}, back;
  uint64_t ts = ntsntp_ts_from_timespec(&t);
  ck_assert_uint_eq(ts >> 32, NTSNTP_UNIX_OFFSET);
  ck_assert_uint_eq(ts & 0xffffffffu, 0);
  ntsntp_ts_to_timespec(ts, 0, &back);
  ck_assert_int_eq(back.tv_sec, 0);
  ck_assert_int_eq(back.tv_nsec, 0);
}
END_TEST

START_TEST(test_fraction_roundtrip) {
  struct timespec t, back;
  long ns;
  for (ns = 0; ns < 1000000000L; ns += 999983) {
    t.tv_sec = 1700000000;
    t.tv_nsec = ns;
    ntsntp_ts_to_timespec(ntsntp_ts_from_timespec(&t), 1700000000, &back);
    ck_assert_int_eq(back.tv_sec, t.tv_sec);
    ck_assert_int_le(labs(back.tv_nsec - ns), 1);
  }
  t.tv_nsec = 999999999;
  ntsntp_ts_to_timespec(ntsntp_ts_from_timespec(&t), 1700000000, &back);
  ck_assert(back.tv_sec == t.tv_sec || (back.tv_sec == t.tv_sec + 1 && back.tv_nsec == 0));
}
END_TEST

/* 2036-02-07T06:28:16Z is the start of NTP era 1. */
START_TEST(test_era_rollover) {
  struct timespec t, back;
  int64_t era1 = 2085978496LL;
  int64_t secs[] = {era1 - 1, era1, era1 + 1, era1 + 86400 * 365LL};
  size_t i;
  for (i = 0; i < 4; i++) {
    t.tv_sec = (time_t)secs[i];
    t.tv_nsec = 500000000;
    ntsntp_ts_to_timespec(ntsntp_ts_from_timespec(&t), era1, &back);
    ck_assert_int_eq(back.tv_sec, secs[i]);
    ntsntp_ts_to_timespec(ntsntp_ts_from_timespec(&t), NTSNTP_TS_DEFAULT_PIVOT,
                          &back);
    ck_assert_int_eq(back.tv_sec, secs[i]);
  }
  /* Era 0 timestamps near the pivot stay in era 0. */
  t.tv_sec = 1000000000;
  t.tv_nsec = 0;
  ntsntp_ts_to_timespec(ntsntp_ts_from_timespec(&t), NTSNTP_TS_DEFAULT_PIVOT,
                        &back);
  ck_assert_int_eq(back.tv_sec, 1000000000);
  /* Pivot far before: 1958-01-20 is inside the window. */
  t.tv_sec = -377000000;
  ntsntp_ts_to_timespec(ntsntp_ts_from_timespec(&t), NTSNTP_TS_DEFAULT_PIVOT,
                        &back);
  ck_assert_int_eq(back.tv_sec, -377000000);
}
END_TEST

START_TEST(test_diff_across_era) {
  uint64_t a = 0x0000000180000000ULL; /* era 1, 1.5 s */
  uint64_t b = 0xffffffff00000000ULL; /* era 0, last second */
  ck_assert(fabs(ntsntp_ts_diff(a, b) - 2.5) < 1e-9);
  ck_assert(fabs(ntsntp_ts_diff(b, a) + 2.5) < 1e-9);
  ck_assert(fabs(ntsntp_ts_diff(ntsntp_ts_add(b, 0.25), b) - 0.25) < 1e-9);
  ck_assert(fabs(ntsntp_ts_diff(ntsntp_ts_add(b, -1e-6), b) + 1e-6) < 1e-9);
}
END_TEST

START_TEST(test_short_format) {
  ck_assert_uint_eq(ntsntp_short_from_double(1.0), 0x00010000u);
  ck_assert_uint_eq(ntsntp_short_from_double(0.5), 0x00008000u);
  ck_assert_uint_eq(ntsntp_short_from_double(-1.0), 0);
  ck_assert_uint_eq(ntsntp_short_from_double(NAN), 0);
  ck_assert_uint_eq(ntsntp_short_from_double(1e9), UINT32_MAX);
  /* Rounded up: never claim less delay or dispersion than there is. */
  ck_assert_uint_eq(ntsntp_short_from_double(1e-9), 1);
  ck_assert(fabs(ntsntp_short_to_double(0x00018000u) - 1.5) < 1e-12);
  ck_assert_uint_eq(ntsntp_ts_from_double(-3), 0);
  ck_assert(fabs(ntsntp_ts_to_double(ntsntp_ts_from_double(0.75)) - 0.75) < 1e-9);
}
END_TEST

/* Control data built by hand: each kind of stamp, and what is not one. */
static void put(struct msghdr *m, uint8_t *buf, size_t cap, int level,
                int type, const void *data, size_t len) {
  struct cmsghdr *c;
  size_t used = m->msg_controllen;
  ck_assert_uint_le(used + CMSG_SPACE(len), cap);
  m->msg_control = buf;
  m->msg_controllen = used + CMSG_SPACE(len);
  c = (struct cmsghdr *)(void *)(buf + used);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(len);
  memcpy(CMSG_DATA(c), data, len);
}

START_TEST(test_rx_timestamp_cmsg) {
  union {
    uint8_t b[512];
    struct cmsghdr align;
  } buf;
  struct msghdr m;
  struct timespec three[3], ts, one = {1700000000, 5};
  int pktinfo = 7;

  memset(&m, 0, sizeof(m));
  ck_assert_int_eq(ntsntp_rx_timestamp(&m, &ts), NTSNTP_TS_DAEMON);
  /* Only hardware: the raw stamp, flagged as such. */
  memset(three, 0, sizeof(three));
  three[2].tv_sec = 42;
  put(&m, buf.b, sizeof(buf.b), IPPROTO_IP, IP_PKTINFO, &pktinfo,
      sizeof(pktinfo));
  put(&m, buf.b, sizeof(buf.b), SOL_SOCKET, SCM_TIMESTAMPING, three,
      sizeof(three));
  ck_assert_int_eq(ntsntp_rx_timestamp(&m, &ts), NTSNTP_TS_HW);
  ck_assert_int_eq(ts.tv_sec, 42);
  /* A software stamp wins. */
  memset(&m, 0, sizeof(m));
  three[0] = one;
  put(&m, buf.b, sizeof(buf.b), SOL_SOCKET, SCM_TIMESTAMPING, three,
      sizeof(three));
  ck_assert_int_eq(ntsntp_rx_timestamp(&m, &ts), NTSNTP_TS_KERNEL);
  ck_assert_int_eq(ts.tv_sec, one.tv_sec);
  ck_assert_int_eq(ts.tv_nsec, one.tv_nsec);
  /* SCM_TIMESTAMPNS. */
  memset(&m, 0, sizeof(m));
  put(&m, buf.b, sizeof(buf.b), SOL_SOCKET, SCM_TIMESTAMPNS, &one,
      sizeof(one));
  ck_assert_int_eq(ntsntp_rx_timestamp(&m, &ts), NTSNTP_TS_KERNEL);
  /* Too short to hold its stamps, all zero, or another level: none. */
  memset(&m, 0, sizeof(m));
  put(&m, buf.b, sizeof(buf.b), SOL_SOCKET, SCM_TIMESTAMPING, three,
      sizeof(three[0]));
  memset(three, 0, sizeof(three));
  put(&m, buf.b, sizeof(buf.b), SOL_SOCKET, SCM_TIMESTAMPING, three,
      sizeof(three));
  put(&m, buf.b, sizeof(buf.b), IPPROTO_IP, SCM_TIMESTAMPNS, &one,
      sizeof(one));
  ck_assert_int_eq(ntsntp_rx_timestamp(&m, &ts), NTSNTP_TS_DAEMON);
}
END_TEST

/* A real datagram on loopback carries a kernel stamp near now. */
START_TEST(test_rx_timestamp_socket) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0), on = SOF_TIMESTAMPING_RX_SOFTWARE |
                                                 SOF_TIMESTAMPING_SOFTWARE;
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t alen = sizeof(a);
  union {
    uint8_t b[256];
    struct cmsghdr align;
  } ctl;
  char data[8] = "ntsntp", got[8];
  struct iovec iov = {got, sizeof(got)};
  struct msghdr m;
  struct timespec ts, now;
  ntsntp_ts_source src = NTSNTP_TS_DAEMON;
  int i;

  ck_assert_int_ge(fd, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &on,
                              sizeof(on)), 0);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  /* The kernel turns receive stamping on for the whole stack
   * asynchronously (a static key switched from a work queue) when the first
   * socket asks: a datagram sent at once may come without a stamp.  Retry
   * a few times; one of them must carry it. */
  for (i = 0; i < 50; i++) {
    ck_assert_int_eq(sendto(fd, data, sizeof(data), 0, (struct sockaddr *)&a,
                            sizeof(a)), (ssize_t)sizeof(data));
    memset(&m, 0, sizeof(m));
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof(ctl.b);
    ck_assert_int_eq(recvmsg(fd, &m, 0), (ssize_t)sizeof(data));
    clock_gettime(CLOCK_REALTIME, &now);
    if ((src = ntsntp_rx_timestamp(&m, &ts)) == NTSNTP_TS_KERNEL)
      break;
    usleep(10000);
  }
  ck_assert_int_eq(src, NTSNTP_TS_KERNEL);
  ck_assert(fabs((double)(now.tv_sec - ts.tv_sec) +
                 (double)(now.tv_nsec - ts.tv_nsec) / 1e9) < 1.0);
  close(fd);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ts");
  TCase *tc = tcase_create("ts");
  tcase_add_test(tc, test_unix_epoch);
  tcase_add_test(tc, test_fraction_roundtrip);
  tcase_add_test(tc, test_era_rollover);
  tcase_add_test(tc, test_diff_across_era);
  tcase_add_test(tc, test_short_format);
  tcase_add_test(tc, test_rx_timestamp_cmsg);
  tcase_add_test(tc, test_rx_timestamp_socket);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
