/* Runtime: NTP over UDP (lib/uv/udp.c), on loopback high ports only. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/client.h"
#include "ntsntp/uv.h"
#include "testutil.h"
#include "uv/access_svc.h"

static ntsntp_server *srv;
static uv_loop_t loop;

static uint64_t now_ntp(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return ntsntp_ts_from_timespec(&t);
}

static void setup(void) {
  ntsntp_server_settings ss;
  ntsntp_clock_state cs;
  ntsntp_server_settings_default(&ss);
  ck_assert_int_eq(ntsntp_server_new(&srv, &ss, NULL, 0), 0);
  ntsntp_clock_state_local(&cs, 10, now_ntp());
  ntsntp_server_set_clock(srv, &cs);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static void teardown(void) {
  /* Every handle of the service must be closed and freed by now. */
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ntsntp_server_del(srv);
}

static void test_log(void *user, int level, const char *m) {
  (void)user;
  fprintf(stderr, "[log %d] %s\n", level, m);
}

static ntsntp_uv_ntp *start_with(ntsntp_uv_ntp_settings *s) {
  ntsntp_uv_ntp *n = NULL;
  char err[256];
  int rv;
  s->server = srv;
  s->log = test_log;
  rv = ntsntp_uv_ntp_start(&loop, s, &n, err, sizeof(err));
  ck_assert_msg(rv == 0, "start: %d %s", rv, err);
  ck_assert_ptr_nonnull(n);
  return n;
}

/* Defaults, listening on |addrs| at a kernel-chosen port. */
static void settings_on(ntsntp_uv_ntp_settings *s, const char *const *addrs,
                        size_t count, unsigned workers) {
  ntsntp_uv_ntp_settings_default(s);
  s->listen = addrs;
  s->n_listen = count;
  s->port = 0;
  s->workers = workers;
}

static ntsntp_uv_ntp *start_on(const char *const *addrs, size_t count,
                               unsigned workers) {
  ntsntp_uv_ntp_settings s;
  settings_on(&s, addrs, count, workers);
  return start_with(&s);
}

static int done_calls;
static ntsntp_server_stats final_stats;

static void on_done(void *user) {
  ntsntp_uv_ntp_get_stats(user, &final_stats); /* still valid in |done| */
  done_calls++;
}

static void stop_svc(ntsntp_uv_ntp *n) {
  done_calls = 0;
  ntsntp_uv_ntp_stop(n, on_done, n);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(done_calls, 1);
}

/* ---- client side ---- */

static socklen_t make_addr(struct sockaddr_storage *ss, const char *ip,
                           uint16_t port) {
  memset(ss, 0, sizeof(*ss));
  if (strchr(ip, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    return sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    return sizeof(*a);
  }
}

static int client_socket(int family) {
  struct timeval tv = {2, 0};
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  return fd;
}

/* A client socket bound to 127.0.0.1; |local| gets its address. */
static int bound_client(struct sockaddr_storage *local) {
  socklen_t ll = sizeof(*local);
  int fd = client_socket(AF_INET);
  make_addr(local, "127.0.0.1", 0);
  ck_assert_int_eq(
      bind(fd, (struct sockaddr *)local, sizeof(struct sockaddr_in)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)local, &ll), 0);
  return fd;
}

static void make_req(uint8_t *b, uint8_t version, uint8_t mode, uint64_t org) {
  int i;
  memset(b, 0, 48);
  b[0] = (uint8_t)(version << 3 | mode);
  b[2] = 6;
  for (i = 0; i < 8; i++)
    b[40 + i] = (uint8_t)(org >> (56 - 8 * i));
}

static void send_to(int fd, const void *buf, size_t len,
                    const struct sockaddr_storage *to, socklen_t tolen) {
  ck_assert_int_eq(sendto(fd, buf, len, 0, (const struct sockaddr *)to, tolen),
                   (ssize_t)len);
}

/* Waits up to |ms| for a datagram; returns its length or -1. */
static ssize_t recv_wait(int fd, uint8_t *buf, size_t len, int ms,
                         struct sockaddr_storage *from) {
  struct pollfd p = {fd, POLLIN, 0};
  socklen_t fl = sizeof(*from);
  if (poll(&p, 1, ms) != 1)
    return -1;
  return recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)from, &fl);
}

static int same_addr(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family)
    return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  } else {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
  }
}

/* One plain NTPv4 exchange with |ip|:|port|; checks the response fully
 * and returns the served offset (server time - client time, seconds). */
static double exchange(const char *ip, uint16_t port, uint64_t org,
                       double adjust) {
  struct sockaddr_storage to, from;
  socklen_t tolen = make_addr(&to, ip, port);
  uint8_t req[48], resp[64];
  uint64_t t1, t4;
  ntsntp_pkt_hdr h;
  ssize_t r;
  int fd = client_socket(to.ss_family);

  make_req(req, 4, 3, org);
  t1 = now_ntp();
  send_to(fd, req, sizeof(req), &to, tolen);
  r = recv_wait(fd, resp, sizeof(resp), 2000, &from);
  t4 = now_ntp();
  close(fd);
  ck_assert_int_eq(r, 48);
  ck_assert_msg(same_addr(&from, &to), "response from another address");
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
  ck_assert_uint_eq(h.version, 4);
  ck_assert_uint_eq(h.mode, NTSNTP_MODE_SERVER);
  ck_assert_uint_eq(h.leap, NTSNTP_LEAP_NONE);
  ck_assert_uint_eq(h.stratum, 10);
  ck_assert_uint_eq(h.refid, 0x7F7F0101u);
  ck_assert_uint_eq(h.org_ts, org);
  /* Kernel and client read the same clock: t1 <= rx <= tx <= t4 (plus the
   * served offset), to the rounding of the NTP-64 conversion. */
  ck_assert_msg(ntsntp_ts_diff(h.tx_ts, h.rx_ts) >= 0, "rx > tx");
  ck_assert_msg(ntsntp_ts_diff(h.rx_ts, t1) - adjust >= -1e-6,
                "rx before the request was sent: %g",
                ntsntp_ts_diff(h.rx_ts, t1) - adjust);
  ck_assert_msg(ntsntp_ts_diff(t4, h.tx_ts) + adjust >= -1e-6,
                "tx after the response arrived: %g",
                ntsntp_ts_diff(t4, h.tx_ts) + adjust);
  ck_assert_msg(ntsntp_ts_diff(t4, t1) < 0.5, "exchange took too long");
  return ntsntp_ts_diff(h.rx_ts, t1) - adjust;
}

/* Stats are published after each batch is sent: wait for them to catch up
 * with what the client has seen. */
static void wait_received(ntsntp_uv_ntp *n, uint64_t want,
                          ntsntp_server_stats *st) {
  int i;
  for (i = 0; i < 400; i++) {
    ntsntp_uv_ntp_get_stats(n, st);
    if (st->received >= want)
      break;
    usleep(5000);
  }
  ck_assert_uint_eq(st->received, want);
  ck_assert_uint_eq(st->received, st->responded + st->dropped);
}

/* ---- tests ---- */

START_TEST(test_v4_v6_exchange) {
  static const char *const addrs[] = {"127.0.0.1", "::1"};
  ntsntp_uv_ntp *n = start_on(addrs, 2, 2);
  ntsntp_server_stats st;
  uint16_t p4 = ntsntp_uv_ntp_port(n, 0), p6 = ntsntp_uv_ntp_port(n, 1);
  int i;
  ck_assert_uint_ne(p4, 0);
  ck_assert_uint_ne(p6, 0);
  ck_assert_uint_eq(ntsntp_uv_ntp_port(n, 2), 0);
  ck_assert_uint_eq(ntsntp_uv_ntp_workers(n), 2);
  for (i = 0; i < 5; i++) {
    ck_assert(exchange("127.0.0.1", p4, 0x1122334455667700ULL + i, 0) < 0.1);
    ck_assert(exchange("::1", p6, 0x8877665544332200ULL + i, 0) < 0.1);
  }
  wait_received(n, 10, &st);
  ck_assert_uint_eq(st.responded, 10);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_OK], 10);
  ck_assert_uint_eq(st.tx_errors, 0);
  /* Linux delivers software RX timestamps on loopback.  The kernel turns
   * them on with deferred work when the first timestamping socket appears,
   * so the very first datagrams may come without one. */
  ck_assert_uint_eq(st.rx_kernel_ts + st.rx_daemon_ts, 10);
  ck_assert_uint_gt(st.rx_kernel_ts, 0);
  stop_svc(n);
  ck_assert_uint_eq(final_stats.received, 10);
}
END_TEST

/* On a wildcard socket, the response leaves from the address the request
 * was sent to (127.0.0.2 is local on Linux, but routing would answer a
 * peer on 127.0.0.1 from 127.0.0.1). */
START_TEST(test_wildcard_source_address) {
  static const char *const addrs[] = {"0.0.0.0", "::"};
  ntsntp_uv_ntp *n = start_on(addrs, 2, 1);
  struct sockaddr_storage from, to, local;
  socklen_t tolen;
  uint8_t req[48], resp[64];
  int fd;

  exchange("127.0.0.2", ntsntp_uv_ntp_port(n, 0), 1, 0);
  exchange("127.0.0.1", ntsntp_uv_ntp_port(n, 0), 2, 0);
  exchange("::1", ntsntp_uv_ntp_port(n, 1), 3, 0);

  /* Same with the client bound to 127.0.0.1, asking 127.0.0.3. */
  fd = bound_client(&local);
  tolen = make_addr(&to, "127.0.0.3", ntsntp_uv_ntp_port(n, 0));
  make_req(req, 4, 3, 4);
  send_to(fd, req, 48, &to, tolen);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 2000, &from), 48);
  ck_assert(same_addr(&from, &to));
  close(fd);
  stop_svc(n);
}
END_TEST

/* The first request stalls the worker, so the next ones arrive together as
 * one large batch (two passes, one sendmmsg, predicted timestamps). */
static atomic_int stall_first;
static int stall_accept(void *user, unsigned worker,
                        const struct sockaddr *peer) {
  (void)user;
  (void)worker;
  (void)peer;
  if (atomic_exchange(&stall_first, 0))
    usleep(100 * 1000);
  return 0;
}

/* A large batch on a wildcard socket, with malformed requests among the
 * good ones: every good request gets its own response, from the address it
 * was sent to, with timestamps in causal order; the bad ones are dropped
 * and counted. */
START_TEST(test_large_batch) {
  static const char *const addrs[] = {"0.0.0.0"};
  static const char *const dst[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};
  enum { N = 24 };
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n;
  struct sockaddr_storage to[3], from, local;
  socklen_t tolen[3];
  uint8_t req[48], resp[64];
  ntsntp_server_stats st;
  ntsntp_pkt_hdr h;
  unsigned i, good = 0, got = 0, seen[N + 1] = {0};
  uint64_t t1, t4;
  int fd;

  settings_on(&s, addrs, 1, 1);
  s.accept = stall_accept;
  n = start_with(&s);
  for (i = 0; i < 3; i++)
    tolen[i] = make_addr(&to[i], dst[i], ntsntp_uv_ntp_port(n, 0));
  fd = bound_client(&local);

  atomic_store(&stall_first, 1);
  t1 = now_ntp();
  for (i = 0; i <= N; i++) {
    make_req(req, 4, 3, 1000 + i);
    if (i % 5 == 3) {
      send_to(fd, req, 47, &to[i % 3], tolen[i % 3]); /* too short */
    } else {
      send_to(fd, req, 48, &to[i % 3], tolen[i % 3]);
      good++;
    }
    if (i == 0)
      usleep(20 * 1000); /* the worker is now stalled on request 0 */
  }
  while (got < good) {
    ssize_t r = recv_wait(fd, resp, sizeof(resp), 2000, &from);
    ck_assert_int_eq(r, 48);
    t4 = now_ntp();
    ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
    ck_assert_uint_eq(h.mode, NTSNTP_MODE_SERVER);
    ck_assert(h.org_ts >= 1000 && h.org_ts <= 1000 + N);
    i = (unsigned)(h.org_ts - 1000);
    ck_assert_uint_ne(i % 5, 3);
    ck_assert_uint_eq(seen[i]++, 0);
    ck_assert_msg(same_addr(&from, &to[i % 3]), "response %u from elsewhere",
                  i);
    ck_assert_msg(ntsntp_ts_diff(h.tx_ts, h.rx_ts) >= 0, "rx > tx");
    ck_assert_msg(ntsntp_ts_diff(h.rx_ts, t1) >= -1e-6, "rx before t1");
    /* A predicted transmit time may run ahead of the true one by a little,
     * never by much. */
    ck_assert_msg(ntsntp_ts_diff(t4, h.tx_ts) >= -50e-6,
                  "tx %g s after the response arrived",
                  -ntsntp_ts_diff(t4, h.tx_ts));
    got++;
  }
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 100, &from), -1);
  close(fd);
  wait_received(n, N + 1, &st);
  ck_assert_uint_eq(st.responded, good);
  ck_assert_uint_eq(st.dropped, N + 1 - good);
  stop_svc(n);
}
END_TEST

START_TEST(test_default_wildcards) {
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n;
  ntsntp_uv_ntp_settings_default(&s);
  ck_assert_uint_eq(s.port, 123);
  ck_assert_uint_eq(s.workers, 0);
  s.port = 0;
  n = start_with(&s);
  ck_assert_uint_ge(ntsntp_uv_ntp_workers(n), 1);
  ck_assert_uint_ne(ntsntp_uv_ntp_port(n, 0), 0);
  ck_assert_uint_ne(ntsntp_uv_ntp_port(n, 1), 0);
  exchange("127.0.0.1", ntsntp_uv_ntp_port(n, 0), 5, 0);
  exchange("::1", ntsntp_uv_ntp_port(n, 1), 6, 0);
  stop_svc(n);
}
END_TEST

/* Garbage is counted and never answered. */
START_TEST(test_malformed_dropped) {
  static const char *const addrs[] = {"127.0.0.1"};
  ntsntp_uv_ntp *n = start_on(addrs, 1, 2);
  struct sockaddr_storage to, from;
  socklen_t tolen = make_addr(&to, "127.0.0.1", ntsntp_uv_ntp_port(n, 0));
  static uint8_t big[3000];
  uint8_t req[96], resp[64];
  ntsntp_server_stats st;
  ntsntp_pkt_hdr h;
  unsigned len, v, m, sent = 0;
  int fd = client_socket(AF_INET);

  for (len = 0; len < 48; len++, sent++) {
    make_req(req, 4, 3, 7);
    send_to(fd, req, len, &to, tolen);
  }
  for (v = 0; v < 8; v++) {
    if (v == 3 || v == 4)
      continue;
    make_req(req, (uint8_t)v, 3, 7);
    send_to(fd, req, 48, &to, tolen);
    sent++;
  }
  for (m = 0; m < 8; m++) {
    if (m == 3)
      continue;
    make_req(req, 4, (uint8_t)m, 7);
    send_to(fd, req, 48, &to, tolen);
    sent++;
  }
  /* Longer than the receive slot: truncated, dropped as bad-ef. */
  make_req(big, 4, 3, 7);
  send_to(fd, big, sizeof(big), &to, tolen);
  sent++;
  /* A bad extension field (length 7). */
  make_req(req, 4, 3, 7);
  memcpy(req + 48, "\x12\x34\x00\x07\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  send_to(fd, req, 64, &to, tolen);
  sent++;
  /* An NTS request (Unique Identifier) to a server without NTS. */
  make_req(req, 4, 3, 7);
  memcpy(req + 48, "\x01\x04\x00\x24", 4);
  memset(req + 52, 0xab, 32);
  send_to(fd, req, 84, &to, tolen);
  sent++;

  /* Same 4-tuple, same worker, in order: when the marker is answered, all
   * of the above has been judged. */
  make_req(req, 4, 3, 0x4d41524b4552ULL);
  send_to(fd, req, 48, &to, tolen);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 2000, &from), 48);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
  ck_assert_uint_eq(h.org_ts, 0x4d41524b4552ULL);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 200, &from), -1);
  close(fd);

  wait_received(n, sent + 1, &st);
  ck_assert_uint_eq(st.responded, 1);
  ck_assert_uint_eq(st.dropped, sent);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_TOO_SHORT], 48);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_BAD_VERSION], 6);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_BAD_MODE], 7);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_BAD_EF], 2);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_NTS_OFF], 1);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_OK], 1);
  ck_assert_uint_eq(st.rx_kernel_ts + st.rx_daemon_ts, sent + 1);
  ck_assert_uint_gt(st.rx_kernel_ts, 0);
  stop_svc(n);
}
END_TEST

/* Many flows: the kernel spreads them over the workers; the merged counters
 * are the sum of the workers'. */
START_TEST(test_load_spread) {
  enum { FLOWS = 64, PER_FLOW = 20 };
  static const char *const addrs[] = {"127.0.0.1"};
  ntsntp_uv_ntp *n = start_on(addrs, 1, 2);
  struct sockaddr_storage to, from;
  socklen_t tolen = make_addr(&to, "127.0.0.1", ntsntp_uv_ntp_port(n, 0));
  ntsntp_server_stats st, w0, w1, sum;
  int fds[FLOWS], i, j, got = 0;
  uint8_t req[48], resp[64];

  for (i = 0; i < FLOWS; i++)
    fds[i] = client_socket(AF_INET);
  for (j = 0; j < PER_FLOW; j++)
    for (i = 0; i < FLOWS; i++) {
      make_req(req, 4, 3, (uint64_t)i << 32 | (uint64_t)j);
      send_to(fds[i], req, 48, &to, tolen);
    }
  for (i = 0; i < FLOWS; i++) {
    for (j = 0; j < PER_FLOW; j++) {
      if (recv_wait(fds[i], resp, sizeof(resp), 2000, &from) != 48)
        break;
      got++;
    }
    close(fds[i]);
  }
  ck_assert_int_eq(got, FLOWS * PER_FLOW);
  wait_received(n, FLOWS * PER_FLOW, &st);
  ntsntp_uv_ntp_get_worker_stats(n, 0, &w0);
  ntsntp_uv_ntp_get_worker_stats(n, 1, &w1);
  ck_assert_uint_gt(w0.received, 0);
  ck_assert_uint_gt(w1.received, 0);
  memset(&sum, 0, sizeof(sum));
  ntsntp_server_stats_add(&sum, &w0);
  ntsntp_server_stats_add(&sum, &w1);
  ck_assert_mem_eq(&sum, &st, sizeof(st));
  ck_assert_uint_eq(st.responded, FLOWS * PER_FLOW);
  ck_assert_uint_eq(st.rx_kernel_ts + st.rx_daemon_ts, FLOWS * PER_FLOW);
  ck_assert_uint_gt(st.rx_kernel_ts, FLOWS * PER_FLOW / 2);
  ntsntp_uv_ntp_get_worker_stats(n, 2, &w0);
  ck_assert_uint_eq(w0.received, 0);
  fprintf(stderr, "load spread: worker 0 %llu, worker 1 %llu\n",
          (unsigned long long)w1.received,
          (unsigned long long)(st.received - w1.received));
  stop_svc(n);
}
END_TEST

/* ---- hooks ---- */

static atomic_int hook_mode; /* 0 pass, 1 accept denies, 2 ratelimit, 3 deny */
static atomic_int hook_bad;  /* set if a hook saw something wrong */
static atomic_uint hook_peer_port;

static uint64_t adjust_plus_1000(void *user, uint64_t t) {
  if (user != &hook_mode)
    atomic_store(&hook_bad, 1);
  return ntsntp_ts_add(t, 1000.0);
}

static int peer_ok(unsigned worker, const struct sockaddr *peer) {
  const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
  return worker < 2 && peer->sa_family == AF_INET &&
         a->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
         ntohs(a->sin_port) == atomic_load(&hook_peer_port);
}

static int accept_hook(void *user, unsigned worker,
                       const struct sockaddr *peer) {
  if (user != &hook_mode || !peer_ok(worker, peer))
    atomic_store(&hook_bad, 1);
  return atomic_load(&hook_mode) == 1; /* non-zero drops */
}

static int filter_hook(void *user, unsigned worker, const struct sockaddr *peer,
                       ntsntp_server_ctx *ctx) {
  if (user != &hook_mode || !peer_ok(worker, peer) ||
      ctx->verdict != NTSNTP_SERVER_RESPOND)
    atomic_store(&hook_bad, 1);
  switch (atomic_load(&hook_mode)) {
  case 2:
    ntsntp_server_ctx_ratelimit(ctx);
    return 0;
  case 3:
    return -1;
  default:
    return 0;
  }
}

START_TEST(test_hooks) {
  static const char *const addrs[] = {"127.0.0.1"};
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n;
  struct sockaddr_storage to, from, local;
  socklen_t tolen;
  uint8_t req[48], resp[64];
  ntsntp_server_stats st;
  ntsntp_pkt_hdr h;
  int fd;
  double off;

  settings_on(&s, addrs, 1, 2);
  s.adjust = adjust_plus_1000;
  s.adjust_user = &hook_mode;
  s.accept = accept_hook;
  s.accept_user = &hook_mode;
  s.filter = filter_hook;
  s.filter_user = &hook_mode;
  n = start_with(&s);

  fd = bound_client(&local);
  atomic_store(&hook_peer_port,
               ntohs(((struct sockaddr_in *)&local)->sin_port));
  tolen = make_addr(&to, "127.0.0.1", ntsntp_uv_ntp_port(n, 0));

  /* |adjust| moves both timestamps. */
  make_req(req, 4, 3, 11);
  {
    uint64_t t1 = now_ntp(), t4;
    send_to(fd, req, 48, &to, tolen);
    ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 2000, &from), 48);
    t4 = now_ntp();
    ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
    off = ntsntp_ts_diff(h.rx_ts, t1);
    ck_assert_msg(off > 999.999 && off < 1000.5, "rx offset %g", off);
    off = ntsntp_ts_diff(h.tx_ts, t4);
    ck_assert_msg(off > 999.5 && off <= 1000.000001, "tx offset %g", off);
  }

  atomic_store(&hook_mode, 1); /* accept says no */
  send_to(fd, req, 48, &to, tolen);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 300, &from), -1);

  atomic_store(&hook_mode, 2); /* filter rate-limits: RATE KoD */
  make_req(req, 4, 3, 12);
  send_to(fd, req, 48, &to, tolen);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 2000, &from), 48);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
  ck_assert_uint_eq(h.stratum, 0);
  ck_assert_uint_eq(h.leap, NTSNTP_LEAP_UNSYNC);
  ck_assert_uint_eq(h.refid, NTSNTP_KOD_RATE);
  ck_assert_uint_eq(h.org_ts, 12);

  atomic_store(&hook_mode, 3); /* filter says no */
  send_to(fd, req, 48, &to, tolen);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 300, &from), -1);
  close(fd);

  wait_received(n, 4, &st);
  ck_assert_uint_eq(st.responded, 2);
  ck_assert_uint_eq(st.kods, 1);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_DENIED], 2);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_RATELIMIT], 1);
  ck_assert_int_eq(atomic_load(&hook_bad), 0);
  stop_svc(n);
}
END_TEST

/* ---- one client, one worker (steer_by_client) ---- */

/* The limiter of these tests: a bucket of RL_BURST that does not refill
 * while they run (one response per 4096 s); 1 in 16 limited requests
 * leaks.  RL_SENT requests from one address: a single table answers
 * RL_BURST + Binomial(RL_SENT - RL_BURST, 1/16), 47.5 on average and more
 * than RL_LEAK_MAX = 22 leaks with probability under 1e-5; one table per
 * worker would answer about twice RL_BURST. */
enum { RL_BURST = 40, RL_SENT = 160, RL_LEAK_MAX = 22 };

static ntsntp__access_svc *limiter(unsigned workers) {
  ntsntp__access_svc_settings as;
  ntsntp__access_svc *a = NULL;
  char err[256];
  memset(&as, 0, sizeof(as));
  ntsntp_ratelimit_settings_default(&as.ntp, NTSNTP_RL_SERVICE_NTP);
  as.ntp.interval = 12;
  as.ntp.burst = RL_BURST;
  as.ntp.leak = 4;
  as.ntp.kod = 0;
  as.ntp_workers = workers;
  as.want_ntp = 1;
  ck_assert_msg(ntsntp__access_svc_new(&a, &as, err, sizeof(err)) == 0, "%s",
                err);
  return a;
}

/* Sends one request from each of |count| new sockets on |ip| (so from
 * |count| source ports) to |port|, waits until the service has judged
 * them (|before| requests were judged earlier), and returns how many got
 * a normal answer. */
static unsigned from_many_ports(ntsntp_uv_ntp *n, const char *ip, uint16_t port,
                                unsigned count, uint64_t before) {
  struct sockaddr_storage to, from;
  socklen_t tolen = make_addr(&to, ip, port);
  uint8_t req[48], resp[64];
  ntsntp_server_stats st;
  ntsntp_pkt_hdr h;
  unsigned i, answered = 0;
  int fds[RL_SENT];
  ck_assert_uint_le(count, RL_SENT);
  for (i = 0; i < count; i++) {
    fds[i] = client_socket(to.ss_family);
    make_req(req, 4, 3, 1000 + i);
    send_to(fds[i], req, 48, &to, tolen);
  }
  /* Responses are queued before the counters are published. */
  wait_received(n, before + count, &st);
  for (i = 0; i < count; i++) {
    socklen_t fl = sizeof(from);
    ssize_t r = recvfrom(fds[i], resp, sizeof(resp), MSG_DONTWAIT,
                         (struct sockaddr *)&from, &fl);
    if (r >= 0) {
      ck_assert_int_eq(r, 48);
      ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
      ck_assert_uint_eq(h.org_ts, 1000 + i);
      ck_assert_uint_eq(h.stratum, 10); /* no KoD (kod 0) */
      answered++;
    }
    close(fds[i]);
  }
  return answered;
}

/* Requests judged by each of two workers. */
static void per_worker(ntsntp_uv_ntp *n, uint64_t got[2]) {
  ntsntp_server_stats w;
  unsigned i;
  for (i = 0; i < 2; i++) {
    ntsntp_uv_ntp_get_worker_stats(n, i, &w);
    got[i] = w.received;
  }
}

/* One address sending from many source ports, faster than its limit, to
 * two workers: it gets one table's allowance, not two (the kernel would
 * spread its flows over both workers and their tables). */
START_TEST(test_ratelimit_per_client_not_per_worker) {
  static const char *const addrs[] = {"127.0.0.1", "::1"};
  ntsntp__access_svc *a = limiter(2);
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n;
  ntsntp_server_stats st;
  uint64_t w[2], w4[2];
  unsigned v4, v6;

  settings_on(&s, addrs, 2, 2);
  ntsntp__access_svc_wire_ntp(a, &s);
  ck_assert_int_eq(s.steer_by_client, 1);
  ck_assert_uint_eq(s.steer_v4_prefix, 32);
  ck_assert_uint_eq(s.steer_v6_prefix, 64);
  n = start_with(&s);
  ck_assert_int_eq(ntsntp_uv_ntp_steered(n), 1);

  v4 = from_many_ports(n, "127.0.0.1", ntsntp_uv_ntp_port(n, 0), RL_SENT, 0);
  per_worker(n, w4);
  v6 = from_many_ports(n, "::1", ntsntp_uv_ntp_port(n, 1), RL_SENT, RL_SENT);
  per_worker(n, w);
  fprintf(stderr,
          "one address, %u ports, burst %u: answered %u (IPv4), %u (IPv6); "
          "workers %llu/%llu, then %llu/%llu\n",
          RL_SENT, RL_BURST, v4, v6, (unsigned long long)w4[0],
          (unsigned long long)w4[1], (unsigned long long)w[0],
          (unsigned long long)w[1]);
  /* One table's allowance... */
  ck_assert_uint_ge(v4, RL_BURST);
  ck_assert_uint_le(v4, RL_BURST + RL_LEAK_MAX);
  ck_assert_uint_ge(v6, RL_BURST);
  ck_assert_uint_le(v6, RL_BURST + RL_LEAK_MAX);
  /* ...as each address met one worker only. */
  ck_assert_msg(w4[0] == 0 || w4[1] == 0, "127.0.0.1 met both workers");
  ck_assert_msg(w[0] - w4[0] == 0 || w[1] - w4[1] == 0, "::1 met both workers");
  ntsntp_uv_ntp_get_stats(n, &st);
  ck_assert_uint_eq(st.responded, v4 + v6);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_RATELIMIT], 2 * RL_SENT - v4 - v6);
  stop_svc(n);
  ntsntp__access_svc_del(a);
}
END_TEST

/* Which worker each source address 127.0.0.x met (worker + 1; 0: none);
 * set if one address met two workers. */
static _Atomic unsigned char addr_worker[256];
static atomic_int addr_split;

static int record_worker(void *user, unsigned worker,
                         const struct sockaddr *peer) {
  const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;
  unsigned char want = (unsigned char)(worker + 1), old = 0;
  unsigned x = ntohl(sin->sin_addr.s_addr) & 0xff;
  (void)user;
  if (peer->sa_family != AF_INET || worker > 1 ||
      (!atomic_compare_exchange_strong(&addr_worker[x], &old, want) &&
       old != want))
    atomic_store(&addr_split, 1);
  return 0;
}

/* From 127.0.0.1 .. 127.0.0.|addrs|, |ports| source ports each; returns
 * how many addresses met each worker. */
static void from_many_addresses(ntsntp_uv_ntp *n, unsigned addrs,
                                unsigned ports, unsigned met[2]) {
  struct sockaddr_storage to, local;
  socklen_t tolen = make_addr(&to, "127.0.0.1", ntsntp_uv_ntp_port(n, 0));
  uint8_t req[48], resp[64];
  ntsntp_server_stats st;
  unsigned i, j;
  char ip[32];
  memset(addr_worker, 0, sizeof(addr_worker));
  atomic_store(&addr_split, 0);
  for (i = 1; i <= addrs; i++)
    for (j = 0; j < ports; j++) {
      int fd = client_socket(AF_INET);
      snprintf(ip, sizeof(ip), "127.0.0.%u", i);
      make_addr(&local, ip, 0);
      ck_assert_int_eq(
          bind(fd, (struct sockaddr *)&local, sizeof(struct sockaddr_in)), 0);
      make_req(req, 4, 3, i);
      send_to(fd, req, 48, &to, tolen);
      ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 2000, &local), 48);
      close(fd);
    }
  wait_received(n, (uint64_t)addrs * ports, &st);
  ck_assert_int_eq(atomic_load(&addr_split), 0);
  met[0] = met[1] = 0;
  for (i = 1; i <= addrs; i++) {
    ck_assert_uint_ne(addr_worker[i], 0);
    met[addr_worker[i] - 1]++;
  }
}

/* Steering keeps each address on one worker but spreads addresses over
 * the workers; with a /24 prefix, 127.0.0.0/24 is one client. */
START_TEST(test_steer_by_address) {
  static const char *const addrs[] = {"127.0.0.1"};
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n;
  unsigned met[2];

  settings_on(&s, addrs, 1, 2);
  s.accept = record_worker;
  s.steer_by_client = 1;
  n = start_with(&s);
  ck_assert_int_eq(ntsntp_uv_ntp_steered(n), 1);
  from_many_addresses(n, 64, 3, met);
  fprintf(stderr, "64 addresses over 2 workers: %u and %u\n", met[0], met[1]);
  /* All 64 on one worker: probability 2^-63 with a working hash. */
  ck_assert_uint_gt(met[0], 0);
  ck_assert_uint_gt(met[1], 0);
  stop_svc(n);

  s.steer_v4_prefix = 24;
  n = start_with(&s);
  from_many_addresses(n, 64, 2, met);
  ck_assert_msg(met[0] == 64 || met[1] == 64, "a /24 split: %u and %u", met[0],
                met[1]);
  stop_svc(n);

  /* Prefixes out of range. */
  {
    ntsntp_uv_ntp *bad = NULL;
    char err[256];
    s.steer_v4_prefix = 33;
    ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &bad, err, sizeof(err)),
                     NTSNTP_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "steering prefixes 33 and 64"));
    s.steer_v4_prefix = 32;
    s.steer_v6_prefix = 0;
    ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &bad, err, sizeof(err)),
                     NTSNTP_ERR_INVALID_ARG);
    ck_assert_ptr_null(bad);
    /* Off, they are not looked at. */
    s.steer_by_client = 0;
    n = start_with(&s);
    ck_assert_int_eq(ntsntp_uv_ntp_steered(n), 0);
    stop_svc(n);
  }
}
END_TEST

/* A kernel without SO_ATTACH_REUSEPORT_CBPF (before 4.5), simulated with
 * seccomp in a child process: start warns, and the hooks get worker 0
 * from both workers, so one table still counts the client's every request.
 * The child reports through its exit status: 0 is a pass. */
static atomic_int warned;

static void warn_log(void *user, int level, const char *m) {
  (void)user;
  if (level == NTSNTP_LOG_WARN && strstr(m, "cannot steer UDP 127.0.0.1:") &&
      strstr(m, "one lock for all"))
    atomic_store(&warned, 1);
  fprintf(stderr, "[child log %d] %s\n", level, m);
}

static int refuse_reuseport_bpf(void) {
  /* setsockopt(_, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, ...) fails with
   * ENOPROTOOPT, as on a kernel that does not know the option. */
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setsockopt, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
               offsetof(struct seccomp_data, args[2]) +
                   (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 4)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SO_ATTACH_REUSEPORT_CBPF, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOPROTOOPT),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static int fallback_child(void) {
  static const char *const addrs[] = {"127.0.0.1"};
  ntsntp__access_svc *a;
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n = NULL;
  char err[256];
  unsigned answered, met[2];
  if (refuse_reuseport_bpf() != 0)
    return 2;
  a = limiter(2);
  settings_on(&s, addrs, 1, 2);
  ntsntp__access_svc_wire_ntp(a, &s);
  s.server = srv;
  s.log = warn_log;
  if (ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)) != 0)
    return 3;
  if (ntsntp_uv_ntp_steered(n) != 0 || !atomic_load(&warned))
    return 4;
  answered =
      from_many_ports(n, "127.0.0.1", ntsntp_uv_ntp_port(n, 0), RL_SENT, 0);
  fprintf(stderr, "without steering, one shared table: answered %u of %u\n",
          answered, RL_SENT);
  if (answered < RL_BURST || answered > RL_BURST + RL_LEAK_MAX)
    return 5;
  stop_svc(n);
  ntsntp__access_svc_del(a);
  /* Both workers call the hooks as worker 0. */
  settings_on(&s, addrs, 1, 2);
  s.server = srv;
  s.log = warn_log;
  s.steer_by_client = 1;
  s.accept = record_worker;
  if (ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)) != 0)
    return 6;
  from_many_addresses(n, 16, 4, met);
  if (met[0] != 16)
    return 7;
  stop_svc(n);
  return 0;
}

START_TEST(test_steer_refused_falls_back) {
  int status = -1;
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0)
    _exit(fallback_child());
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "fallback child failed (status 0x%x)", status);
}
END_TEST

/* ---- NTS: the rate limiter decides before any AES-SIV work ---- */

/* Calls of the server's and the ring's rand: one per cookie sealed and
 * one per response nonce. */
static atomic_uint nts_rand_calls;

static int counting_rand(void *user, uint8_t *buf, size_t len) {
  atomic_fetch_add(&nts_rand_calls, 1);
  return ntsntp_rand_default(user, buf, len);
}

/* What the filter saw of the last request (before the fix, prepare had
 * opened the cookie, checked the tag and sealed new cookies by then). */
static atomic_int nts_limit, seen_verdict, seen_pending, seen_aead, seen_nts;

static int nts_filter(void *user, unsigned worker, const struct sockaddr *peer,
                      ntsntp_server_ctx *ctx) {
  (void)user;
  (void)worker;
  (void)peer;
  atomic_store(&seen_verdict, (int)ctx->verdict);
  atomic_store(&seen_pending, ctx->nts_pending);
  atomic_store(&seen_aead, ctx->aead);
  atomic_store(&seen_nts, ctx->nts);
  if (atomic_load(&nts_limit))
    ntsntp_server_ctx_ratelimit(ctx);
  return 0;
}

/* An NTS request with 3 placeholders and a cookie from |kr|; |bad_tag|
 * flips the last byte of the authenticator's tag. */
static ssize_t nts_req(ntsntp_keyring *kr, ntsntp_client_exchange *ex,
                       uint8_t *buf, size_t len, int bad_tag) {
  uint8_t c2s[32], s2c[32], cookie[NTSNTP_COOKIE_MAX_LEN];
  ntsntp_client_params p;
  ntsntp_ssize clen, n;
  memset(c2s, 0x11, sizeof(c2s));
  memset(s2c, 0x22, sizeof(s2c));
  clen = ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, s2c, cookie,
                            sizeof(cookie));
  ck_assert_int_gt(clen, 0);
  memset(&p, 0, sizeof(p));
  p.aead = NTSNTP_AEAD_AES_SIV_CMAC_256;
  p.c2s = c2s;
  p.s2c = s2c;
  p.cookie = cookie;
  p.cookie_len = (size_t)clen;
  p.placeholders = 3;
  n = ntsntp_client_request(ex, &p, buf, len);
  ck_assert_int_gt(n, 48);
  if (bad_tag)
    buf[n - 1] ^= 0x80;
  return n;
}

START_TEST(test_nts_limited_before_crypto) {
  static const char *const addrs[] = {"127.0.0.1"};
  ntsntp_keyring_settings ks;
  ntsntp_server_settings ss;
  ntsntp_keyring *kr;
  ntsntp_server *nts_srv, *plain_srv = srv;
  ntsntp_clock_state cs;
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n;
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_stats st;
  struct sockaddr_storage to, from;
  socklen_t tolen;
  uint8_t req[1024], bad[1024], resp[1024];
  unsigned before;
  ssize_t len, bad_len, r;
  int fd;

  ntsntp_keyring_settings_default(&ks);
  ks.rand = counting_rand;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &ks, 1700000000, NULL, 0), 0);
  ntsntp_server_settings_default(&ss);
  ss.keyring = kr;
  ss.rand = counting_rand;
  ck_assert_int_eq(ntsntp_server_new(&nts_srv, &ss, NULL, 0), 0);
  ntsntp_clock_state_local(&cs, 10, now_ntp());
  ntsntp_server_set_clock(nts_srv, &cs);
  srv = nts_srv; /* start_with serves |srv| */
  settings_on(&s, addrs, 1, 2);
  s.filter = nts_filter;
  n = start_with(&s);
  srv = plain_srv;
  tolen = make_addr(&to, "127.0.0.1", ntsntp_uv_ntp_port(n, 0));
  fd = client_socket(AF_INET);

  /* Not limited: served, with four new cookies; the filter ran before
   * the cookie was opened. */
  atomic_store(&nts_limit, 0);
  len = nts_req(kr, &ex, req, sizeof(req), 0);
  before = atomic_load(&nts_rand_calls);
  send_to(fd, req, (size_t)len, &to, tolen);
  r = recv_wait(fd, resp, sizeof(resp), 2000, &from);
  ck_assert_int_eq(r, len);
  ck_assert_int_eq(
      ntsntp_client_response(&ex, resp, (size_t)r, now_ntp(), now_ntp(), &smp),
      0);
  ck_assert_int_eq(smp.authenticated, 1);
  ck_assert_uint_eq(smp.n_cookies, 4);
  ck_assert_uint_eq(atomic_load(&nts_rand_calls), before + 4 + 1);
  ck_assert_int_eq(atomic_load(&seen_verdict), NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(atomic_load(&seen_pending), 1);
  ck_assert_int_eq(atomic_load(&seen_aead), 0);
  ck_assert_int_eq(atomic_load(&seen_nts), 0);

  /* Limited: dropped without a single AES-SIV operation. */
  atomic_store(&nts_limit, 1);
  len = nts_req(kr, &ex, req, sizeof(req), 0);
  /* A limited bad tag is not even checked: dropped as limited, no NAK. */
  bad_len = nts_req(kr, &ex, bad, sizeof(bad), 1);
  before = atomic_load(&nts_rand_calls); /* the cookies above are sealed */
  send_to(fd, req, (size_t)len, &to, tolen);
  send_to(fd, bad, (size_t)bad_len, &to, tolen);
  ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 300, &from), -1);
  wait_received(n, 3, &st);
  ck_assert_uint_eq(atomic_load(&nts_rand_calls), before);
  ck_assert_int_eq(atomic_load(&seen_verdict), NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(atomic_load(&seen_aead), 0);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_RATELIMIT], 2);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_AUTH_FAILED], 0);
  ck_assert_uint_eq(st.nts_authenticated, 1);
  ck_assert_uint_eq(st.cookies_issued, 4);

  /* Not limited, bad tag: the NAK as before. */
  atomic_store(&nts_limit, 0);
  len = nts_req(kr, &ex, req, sizeof(req), 1);
  send_to(fd, req, (size_t)len, &to, tolen);
  r = recv_wait(fd, resp, sizeof(resp), 2000, &from);
  ck_assert_int_eq(r, 48 + 36);
  ck_assert_mem_eq(resp + 12, "NTSN", 4);
  wait_received(n, 4, &st);
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_AUTH_FAILED], 1);
  ck_assert_uint_eq(st.naks, 1);
  close(fd);
  stop_svc(n);
  ntsntp_server_del(nts_srv);
  ntsntp_keyring_del(kr);
}
END_TEST

/* ---- reference time against transmit time ---- */

/* Publishes the local clock state with ref = now, as fast as it can (the
 * daemon's timer does it once a second), until told to stop. */
static atomic_int clock_stop;
static atomic_ulong clock_updates;

static void *clock_updater(void *arg) {
  ntsntp_server *s = arg;
  while (!atomic_load(&clock_stop)) {
    ntsntp_clock_state cs;
    ntsntp_clock_state_local(&cs, 10, now_ntp());
    ntsntp_server_set_clock(s, &cs);
    atomic_fetch_add(&clock_updates, 1);
    sched_yield(); /* valgrind runs one thread at a time: let the workers */
  }
  return NULL;
}

/* Clock updates racing the workers: no response carries a reference time
 * later than its transmit time.  Requests go in bursts of 1 to 24, so both
 * the one-at-a-time and the chunked (predicted transmit time) paths run. */
START_TEST(test_ref_never_after_tx_under_updates) {
  static const char *const addrs[] = {"127.0.0.1"};
  enum { ROUNDS = 150 };
  ntsntp_uv_ntp *n = start_on(addrs, 1, 1);
  struct sockaddr_storage to, from;
  socklen_t tolen = make_addr(&to, "127.0.0.1", ntsntp_uv_ntp_port(n, 0));
  uint8_t req[48], resp[64];
  ntsntp_pkt_hdr h;
  unsigned round, i, got = 0, bad = 0, later = 0;
  pthread_t th;
  int fd = client_socket(AF_INET);
  double worst = 0;

  atomic_store(&clock_stop, 0);
  atomic_store(&clock_updates, 0);
  ck_assert_int_eq(pthread_create(&th, NULL, clock_updater, srv), 0);
  for (round = 0; round < ROUNDS; round++) {
    unsigned burst = 1 + round % 24;
    for (i = 0; i < burst; i++) {
      make_req(req, 4, 3, (uint64_t)round << 8 | i);
      send_to(fd, req, 48, &to, tolen);
    }
    for (i = 0; i < burst; i++) {
      ck_assert_int_eq(recv_wait(fd, resp, sizeof(resp), 2000, &from), 48);
      ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, 48), 0);
      got++;
      if (ntsntp_ts_diff(h.ref_ts, h.tx_ts) > 0) {
        bad++;
        if (ntsntp_ts_diff(h.ref_ts, h.tx_ts) > worst)
          worst = ntsntp_ts_diff(h.ref_ts, h.tx_ts);
      }
      later += h.ref_ts == h.tx_ts; /* capped */
    }
  }
  atomic_store(&clock_stop, 1);
  pthread_join(th, NULL);
  close(fd);
  fprintf(stderr,
          "%u responses, %lu clock updates: %u with ref == tx (capped), %u "
          "with ref > tx (worst %.0f ns)\n",
          got, atomic_load(&clock_updates), later, bad, worst * 1e9);
  ck_assert_uint_eq(bad, 0);
  stop_svc(n);
}
END_TEST

/* ---- failures at start ---- */

static void run_until_idle(void) {
  /* A failed start frees its memory from a close callback. */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
}

START_TEST(test_start_errors) {
  static const char *const bad[] = {"127.0.0.1", "localhost"};
  static const char *const lo[] = {"127.0.0.1"};
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n = (ntsntp_uv_ntp *)&s;
  struct sockaddr_storage a;
  socklen_t al = sizeof(a);
  char err[256], want[256];
  uint16_t port;
  int fd;

  ntsntp_uv_ntp_settings_default(&s);
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG); /* no server */
  s.server = srv;
  s.port = 0;
  s.listen = bad;
  s.n_listen = 2;
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(n);
  ck_assert_str_eq(err, "invalid listen address \"localhost\" (want a "
                        "numeric IPv4 or IPv6 address)");
  s.listen = NULL;
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);

  /* A port taken by a socket without SO_REUSEPORT. */
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  make_addr(&a, "127.0.0.1", 0);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(struct sockaddr_in)),
                   0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  port = ntohs(((struct sockaddr_in *)&a)->sin_port);
  s.listen = lo;
  s.n_listen = 1;
  s.port = port;
  s.workers = 3;
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_IO);
  ck_assert_int_eq(errno, EADDRINUSE);
  snprintf(want, sizeof(want),
           "cannot bind UDP 127.0.0.1:%u: Address already in use (is "
           "another NTP server running?)",
           port);
  ck_assert_str_eq(err, want);
  close(fd);
  run_until_idle();

  /* The second address fails after the first is bound: all is undone. */
  {
    static const char *const two[] = {"127.0.0.1", "192.0.2.1"};
    s.listen = two;
    s.n_listen = 2;
    s.port = 0;
    ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_msg(strstr(err, "cannot bind UDP 192.0.2.1:") == err, "%s", err);
    ck_assert_ptr_nonnull(strstr(err, "Cannot assign requested address"));
    run_until_idle();
  }
}
END_TEST

/* HWTIMESTAMP: interfaces that do not exist or whose card cannot stamp
 * (loopback) are refused at start with what to check; nothing is left
 * open.  (No card here stamps packets: the conversion is tested in
 * test_hwclock.c.) */
START_TEST(test_hw_iface_errors) {
  static const char *const lo[] = {"127.0.0.1"};
  static const char *const none[] = {"nosuchif0"};
  static const char *const loif[] = {"lo"};
  static const char *const many[] = {"lo", "lo", "lo", "lo", "lo",
                                     "lo", "lo", "lo", "lo"};
  ntsntp_uv_ntp_settings s;
  ntsntp_uv_ntp *n = NULL;
  char err[256];
  settings_on(&s, lo, 1, 1);
  s.server = srv;
  s.hw_ifaces = none;
  s.n_hw_ifaces = 1;
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(n);
  ck_assert_str_eq(err, "HWTIMESTAMP: \"nosuchif0\" is not a network "
                        "interface of this host (see ip link)");
  s.hw_ifaces = loif;
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_str_eq(err, "HWTIMESTAMP: lo has no hardware timestamping "
                        "(ethtool -T lo shows what it has); fix: remove it "
                        "from HWTIMESTAMP");
  s.hw_ifaces = many;
  s.n_hw_ifaces = 9;
  ck_assert_int_eq(ntsntp_uv_ntp_start(&loop, &s, &n, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(err, "at most 8 interfaces"));
  run_until_idle();
  /* And the same settings without it serve. */
  s.hw_ifaces = NULL;
  s.n_hw_ifaces = 0;
  n = start_with(&s);
  stop_svc(n);
}
END_TEST

/* Start and stop right away, repeatedly, with idle and busy workers. */
START_TEST(test_start_stop_cycles) {
  static const char *const addrs[] = {"127.0.0.1", "::1"};
  int i;
  for (i = 0; i < 5; i++) {
    ntsntp_uv_ntp *n = start_on(addrs, 2, (unsigned)(1 + i % 3));
    if (i % 2)
      exchange("127.0.0.1", ntsntp_uv_ntp_port(n, 0), 9, 0);
    stop_svc(n);
  }
}
END_TEST

/* ---- chrony as the client ---- */

static const char *find_chronyd(void) {
  static const char *const paths[] = {"/usr/sbin/chronyd", "/usr/bin/chronyd",
                                      "/sbin/chronyd",
                                      "/usr/local/sbin/chronyd"};
  const char *env = getenv("CHRONYD");
  size_t i;
  if (env && *env)
    return env;
  for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

/* chronyd -Q measures the offset and exits; it never sets the clock
 * ("Disabled control of system clock" in its log). */
START_TEST(test_chrony_client) {
  static const char *const addrs[] = {"127.0.0.1"};
  const char *chronyd = find_chronyd();
  char dir[] = "/tmp/ntsntp-udp-chrony.XXXXXX";
  char conf[128], logf[128], pidf[128], server_line[128], buf[8192];
  const char *line;
  ntsntp_uv_ntp *n;
  ntsntp_server_stats st;
  FILE *f;
  size_t len;
  pid_t pid;
  int status = -1, i;
  double offset;

  /* CI installs chrony: a missing binary is a failure, not a skip. */
  ck_assert_msg(chronyd != NULL,
                "chronyd not found (install chrony or set CHRONYD)");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/chrony.conf", dir);
  snprintf(logf, sizeof(logf), "%s/chronyd.log", dir);
  snprintf(pidf, sizeof(pidf), "%s/chronyd.pid", dir);
  f = fopen(conf, "w");
  ck_assert_ptr_nonnull(f);
  /* Own pid file, no command sockets: never meets another chronyd. */
  fprintf(f, "pidfile %s\ncmdport 0\nbindcmdaddress /\n", pidf);
  fclose(f);

  n = start_on(addrs, 1, 2);
  snprintf(server_line, sizeof(server_line),
           "server 127.0.0.1 port %u iburst maxsamples 1",
           ntsntp_uv_ntp_port(n, 0));

  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
      _exit(126);
    execl(chronyd, chronyd, "-Q", "-f", conf, "-t", "10", server_line,
          (char *)NULL);
    _exit(127);
  }
  for (i = 0; i < 300; i++) { /* 30 s at most */
    if (waitpid(pid, &status, WNOHANG) == pid)
      break;
    usleep(100000);
  }
  if (i == 300) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ck_abort_msg("chronyd did not exit");
  }
  ntsntp_uv_ntp_get_stats(n, &st);
  stop_svc(n);

  f = fopen(logf, "r");
  ck_assert_ptr_nonnull(f);
  len = fread(buf, 1, sizeof(buf) - 1, f);
  buf[len] = 0;
  fclose(f);
  unlink(logf);
  unlink(pidf);
  unlink(conf);
  rmdir(dir);
  fprintf(stderr, "%s", buf);

  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "chronyd failed (status 0x%x):\n%s", status, buf);
  line = strstr(buf, "System clock wrong by ");
  ck_assert_msg(line != NULL, "no offset in chronyd's log:\n%s", buf);
  ck_assert_int_eq(sscanf(line, "System clock wrong by %lf seconds", &offset),
                   1);
  ck_assert_msg(offset > -0.001 && offset < 0.001, "offset %g s", offset);
  ck_assert_uint_ge(st.responded, 1);
  ck_assert_uint_eq(st.dropped, 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("uv_udp");
  TCase *tc = tcase_create("udp");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_v4_v6_exchange);
  tcase_add_test(tc, test_wildcard_source_address);
  tcase_add_test(tc, test_default_wildcards);
  tcase_add_test(tc, test_large_batch);
  tcase_add_test(tc, test_malformed_dropped);
  tcase_add_test(tc, test_load_spread);
  tcase_add_test(tc, test_hooks);
  tcase_add_test(tc, test_ratelimit_per_client_not_per_worker);
  tcase_add_test(tc, test_steer_by_address);
  tcase_add_test(tc, test_steer_refused_falls_back);
  tcase_add_test(tc, test_nts_limited_before_crypto);
  tcase_add_test(tc, test_ref_never_after_tx_under_updates);
  tcase_add_test(tc, test_start_errors);
  tcase_add_test(tc, test_hw_iface_errors);
  tcase_add_test(tc, test_start_stop_cycles);
  tcase_add_test(tc, test_chrony_client);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run(suite());
}
