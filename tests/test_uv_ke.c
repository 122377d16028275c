/*
 * Runtime: NTS-KE over TCP (lib/uv/ke_tcp.c) and its admission hooks
 * (lib/uv/access_svc.c), on 127.0.0.0/8 with kernel-chosen ports only.
 *
 * Linked with -Wl,--wrap=uv_accept: __wrap_uv_accept below makes chosen
 * accepts fail the way libuv's do (the descriptor is closed), to check
 * what ke_tcp.c counts for a connection it never took.
 * certtool (gnutls-bin) makes the server's certificate.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/uv_client.h"
#include "ntsntp/uv_ke.h"
#include "testutil.h"
#include "uv/access_svc.h"

/* ---- a host without IPv6: socket(AF_INET6) fails on demand ---- */

int __real_socket(int domain, int type, int protocol);
int __wrap_socket(int domain, int type, int protocol);

static atomic_int no_ipv6;

int __wrap_socket(int domain, int type, int protocol) {
  if (domain == AF_INET6 && atomic_load(&no_ipv6)) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  return __real_socket(domain, type, protocol);
}

/* ---- failing uv_accept on demand ---- */

int __real_uv_accept(uv_stream_t *server, uv_stream_t *client);
int __wrap_uv_accept(uv_stream_t *server, uv_stream_t *client);

static atomic_int fail_accepts;

int __wrap_uv_accept(uv_stream_t *server, uv_stream_t *client) {
  int rv = __real_uv_accept(server, client);
  /* libuv closes the descriptor when it cannot take it; the handle owns
   * it here and ke_tcp.c closes the handle. */
  if (rv == 0 && atomic_load(&fail_accepts) > 0) {
    atomic_fetch_sub(&fail_accepts, 1);
    return UV_EBADF;
  }
  return rv;
}

/* ---- fixtures ---- */

static char dir[64], ca_path[128], cert_path[128], key_path[128];
static ntsntp_keyring *kr;
static ntsntp_ke_creds *creds;

static void run(const char *cmd) {
  ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/* A CA and a server certificate for localhost / 127.0.0.1, by certtool. */
static void make_certs(void) {
  char cmd[1024], tmpl[128];
  snprintf(dir, sizeof(dir), "/tmp/ntsntp-uvke-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(tmpl, sizeof(tmpl), "%s/ca.tmpl", dir);
  write_text(tmpl, "cn = \"ntsntp test CA\"\nca\ncert_signing_key\n"
                   "expiration_days = 2\n");
  snprintf(cmd, sizeof(cmd),
           "certtool --generate-privkey --key-type ecdsa --curve secp256r1 "
           "--outfile %s/ca.key 2>/dev/null && certtool --generate-self-signed "
           "--load-privkey %s/ca.key --template %s --outfile %s/ca.pem "
           "2>/dev/null",
           dir, dir, tmpl, dir);
  run(cmd);
  snprintf(tmpl, sizeof(tmpl), "%s/srv.tmpl", dir);
  write_text(tmpl, "cn = \"localhost\"\ndns_name = \"localhost\"\n"
                   "ip_address = \"127.0.0.1\"\ntls_www_server\n"
                   "signing_key\nencryption_key\nexpiration_days = 2\n");
  snprintf(cmd, sizeof(cmd),
           "certtool --generate-privkey --key-type ecdsa --curve secp256r1 "
           "--outfile %s/srv.key 2>/dev/null && certtool "
           "--generate-certificate --load-privkey %s/srv.key "
           "--load-ca-certificate %s/ca.pem --load-ca-privkey %s/ca.key "
           "--template %s --outfile %s/srv.pem 2>/dev/null",
           dir, dir, dir, dir, tmpl, dir);
  run(cmd);
  snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
  snprintf(cert_path, sizeof(cert_path), "%s/srv.pem", dir);
  snprintf(key_path, sizeof(key_path), "%s/srv.key", dir);
}

/* The loop ntsntp_uv_ke_stop calls |done| from. */
static uv_loop_t ke_loop;

static void setup(void) {
  char err[256];
  ck_assert_int_eq(uv_loop_init(&ke_loop), 0);
  make_certs();
  ck_assert_int_eq(ntsntp_keyring_new(&kr, NULL, (int64_t)time(NULL), NULL, 0),
                   0);
  ck_assert_int_eq(ntsntp_ke_creds_load(&creds, cert_path, key_path, err,
                                        sizeof(err)),
                   0);
}

static void teardown(void) {
  char cmd[128];
  /* A failed start leaves a handle closing on the loop. */
  uv_run(&ke_loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&ke_loop), 0);
  ntsntp_ke_creds_unref(creds);
  ntsntp_keyring_del(kr);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  run(cmd);
}

static const char *const lo[] = {"127.0.0.1"};

static void ke_settings(ntsntp_uv_ke_settings *s, unsigned max_conns) {
  ntsntp_uv_ke_settings_default(s);
  s->listen = lo;
  s->n_listen = 1;
  s->port = 0;
  s->max_connections = max_conns;
  s->ke.creds = creds;
  s->ke.keyring = kr;
  s->ke.ntp_port = 123;
}

static ntsntp_uv_ke *start(const ntsntp_uv_ke_settings *s) {
  ntsntp_uv_ke *ke = NULL;
  char err[256] = "";
  int rv = ntsntp_uv_ke_start(&ke_loop, s, &ke, err, sizeof(err));
  ck_assert_msg(rv == 0, "start: %d %s", rv, err);
  return ke;
}

static void on_stopped(void *user) {
  const ntsntp_uv_ke *ke = *(ntsntp_uv_ke **)user;
  ntsntp_uv_ke_stats st;
  ntsntp_uv_ke_get_stats(ke, &st); /* |ke| is still valid in |done| */
  *(ntsntp_uv_ke **)user = NULL;
}

/* Stops |ke|: |done| comes from the loop, once the threads are gone. */
static void stop(ntsntp_uv_ke *ke) {
  ntsntp_uv_ke *pending = ke;
  ntsntp_uv_ke_stop(ke, on_stopped, &pending);
  ck_assert_ptr_eq(pending, ke); /* not called from stop itself */
  uv_run(&ke_loop, UV_RUN_DEFAULT);
  ck_assert_ptr_null(pending);
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A blocking TCP connection from |src| to the server's port. */
static int tcp_from(const char *src, uint16_t port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ck_assert_int_ge(fd, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  ck_assert_int_eq(inet_pton(AF_INET, src, &a.sin_addr), 1);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return fd;
}

/* 1: the server closed |fd| (EOF or reset); 0: still open. */
static int closed(int fd) {
  uint8_t b[512];
  ssize_t r;
  while ((r = recv(fd, b, sizeof(b), MSG_DONTWAIT)) > 0)
    ;
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Waits (at most 3 s) until |field| of the stats reaches |want|. */
#define WAIT_STAT(ke, field, want)                                             \
  do {                                                                         \
    ntsntp_uv_ke_stats st_;                                                    \
    double end_ = mono() + 3 * tu_time_scale();                                \
    for (;;) {                                                                 \
      ntsntp_uv_ke_get_stats(ke, &st_);                                        \
      if (st_.field == (uint64_t)(want) || mono() > end_)                      \
        break;                                                                 \
      sleep_ms(5);                                                             \
    }                                                                          \
    ck_assert_msg(st_.field == (uint64_t)(want), #field " is %llu, not %llu",  \
                  (unsigned long long)st_.field, (unsigned long long)(want));  \
  } while (0)

/* ---- uv_accept failures ---- */

/* A connection uv_accept failed to take was never counted as open: the
 * open count must not be decremented for it (it used to be, and wrapped
 * around below zero). */
START_TEST(test_accept_failure_not_counted) {
  ntsntp_uv_ke_settings s;
  ntsntp_uv_ke *ke;
  ntsntp_uv_ke_stats st;
  int fd[3], i;
  ke_settings(&s, 4);
  ke = start(&s);
  atomic_store(&fail_accepts, 2);
  for (i = 0; i < 3; i++)
    fd[i] = tcp_from("127.0.0.1", ntsntp_uv_ke_port(ke, 0));
  WAIT_STAT(ke, accept_errors, 2);
  WAIT_STAT(ke, accepted, 1);
  ntsntp_uv_ke_get_stats(ke, &st);
  ck_assert_uint_eq(st.active, 1);
  ck_assert_uint_eq(st.dropped, 0);
  for (i = 0; i < 3; i++)
    close(fd[i]);
  WAIT_STAT(ke, active, 0);
  /* The limit still holds exactly: 4 open, the 5th makes room. */
  for (i = 0; i < 3; i++)
    fd[i] = tcp_from("127.0.0.1", ntsntp_uv_ke_port(ke, 0));
  WAIT_STAT(ke, active, 3);
  stop(ke);
  for (i = 0; i < 3; i++)
    close(fd[i]);
}
END_TEST

/* ---- a full table: who is closed to make room ---- */

START_TEST(test_full_evicts_idle_then_partial) {
  ntsntp_uv_ke_settings s;
  ntsntp_uv_ke *ke;
  uint16_t port;
  int a, b, c, d, e, f;
  ke_settings(&s, 3);
  s.first_byte_ms = 10000;
  s.ke.timeout_ms = 20000;
  ke = start(&s);
  port = ntsntp_uv_ke_port(ke, 0);
  a = tcp_from("127.0.0.1", port);
  WAIT_STAT(ke, active, 1);
  b = tcp_from("127.0.0.1", port);
  WAIT_STAT(ke, active, 2);
  c = tcp_from("127.0.0.1", port);
  /* c sends part of a ClientHello: partial, closed after the idle ones. */
  ck_assert_int_eq(send(c, "\x16\x03\x01", 3, 0), 3);
  WAIT_STAT(ke, active, 3);
  sleep_ms(50);
  d = tcp_from("127.0.0.1", port); /* closes a, the oldest idle */
  WAIT_STAT(ke, evicted, 1);
  sleep_ms(50);
  ck_assert(closed(a));
  ck_assert(!closed(b) && !closed(c));
  e = tcp_from("127.0.0.1", port); /* closes b */
  WAIT_STAT(ke, evicted, 2);
  sleep_ms(50);
  ck_assert(closed(b));
  ck_assert(!closed(c) && !closed(d));
  ck_assert_int_eq(send(d, "\x16", 1, 0), 1);
  ck_assert_int_eq(send(e, "\x16", 1, 0), 1);
  sleep_ms(50);
  f = tcp_from("127.0.0.1", port); /* all partial now: c, the oldest */
  WAIT_STAT(ke, evicted, 3);
  sleep_ms(50);
  ck_assert(closed(c));
  ck_assert(!closed(d) && !closed(e) && !closed(f));
  WAIT_STAT(ke, active, 3);
  WAIT_STAT(ke, dropped, 0);
  WAIT_STAT(ke, accepted, 6);
  stop(ke);
  close(a), close(b), close(c), close(d), close(e), close(f);
}
END_TEST

/* A connection that has had no time yet to send its ClientHello outlives
 * one that has dribbled bytes for longer than that. */
START_TEST(test_young_idle_outlives_old_partial) {
  ntsntp_uv_ke_settings s;
  ntsntp_uv_ke *ke;
  uint16_t port;
  int slow, young, next;
  ke_settings(&s, 2);
  s.first_byte_ms = 10000;
  s.ke.timeout_ms = 20000;
  ke = start(&s);
  port = ntsntp_uv_ke_port(ke, 0);
  slow = tcp_from("127.0.0.1", port);
  ck_assert_int_eq(send(slow, "\x16", 1, 0), 1);
  sleep_ms(300);
  young = tcp_from("127.0.0.1", port);
  WAIT_STAT(ke, active, 2);
  next = tcp_from("127.0.0.1", port);
  WAIT_STAT(ke, evicted, 1);
  sleep_ms(50);
  ck_assert(closed(slow));
  ck_assert(!closed(young) && !closed(next));
  stop(ke);
  close(slow), close(young), close(next);
}
END_TEST

typedef struct query_out {
  int done, status;
  char err[256];
} query_out;

static void on_query(void *user, const ntsntp_uv_ke_outcome *o) {
  query_out *q = user;
  q->done = 1;
  q->status = o->status;
  snprintf(q->err, sizeof(q->err), "%s", o->errtext ? o->errtext : "");
}

/* One NTS-KE exchange with the library's client; returns its status. */
static int ke_query(uint16_t port, query_out *q) {
  uv_loop_t loop;
  ntsntp_uv_ke_query_settings qs;
  int rv;
  memset(q, 0, sizeof(*q));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ntsntp_uv_ke_query_settings_default(&qs);
  qs.host = "127.0.0.1";
  qs.family = AF_INET;
  qs.port = port;
  qs.timeout_ms = 3000;
  qs.ke.ca_file = ca_path;
  rv = ntsntp_uv_ke_query_start(&loop, &qs, on_query, q, NULL, NULL, 0);
  ck_assert_int_eq(rv, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  return q->status;
}

/* Every slot held by silent connections: a real client still completes
 * at once, and the one it displaced is counted. */
START_TEST(test_full_of_idle_serves_client) {
  ntsntp_uv_ke_settings s;
  ntsntp_uv_ke *ke;
  ntsntp_uv_ke_stats st;
  query_out q;
  int fd[8], i;
  double t0;
  ke_settings(&s, 8);
  s.first_byte_ms = 10000;
  ke = start(&s);
  for (i = 0; i < 8; i++)
    fd[i] = tcp_from("127.0.0.1", ntsntp_uv_ke_port(ke, 0));
  WAIT_STAT(ke, active, 8);
  t0 = mono();
  ck_assert_msg(ke_query(ntsntp_uv_ke_port(ke, 0), &q) == 0, "KE: %s",
                q.err);
  /* Well before any held connection's deadline (valgrind: TLS is slow). */
  ck_assert_double_lt(mono() - t0, 5.0);
  ntsntp_uv_ke_get_stats(ke, &st);
  ck_assert_uint_eq(st.evicted, 1);
  ck_assert_uint_eq(st.dropped, 0);
  WAIT_STAT(ke, ke.sessions_done, 1);
  ck_assert(closed(fd[0]));
  for (i = 1; i < 8; i++)
    ck_assert(!closed(fd[i]));
  stop(ke);
  for (i = 0; i < 8; i++)
    close(fd[i]);
}
END_TEST

/* ---- deadlines ---- */

/* Closed at the deadlines, counted by what came: nothing (first byte),
 * less than a TLS record header (no TLS state was made), or the start of
 * a TLS handshake, whole or in two pieces (the session's deadline: had
 * the first piece been lost, TLS would have failed at once). */
START_TEST(test_deadlines) {
  ntsntp_uv_ke_settings s;
  ntsntp_uv_ke *ke;
  ntsntp_uv_ke_stats st;
  int fd[4], i;
  double t0, t[4] = {-1, -1, -1, -1}, x = tu_time_scale();
  ke_settings(&s, 8);
  s.first_byte_ms = (uint32_t)(200 * x);
  s.ke.timeout_ms = (uint32_t)(700 * x);
  ke = start(&s);
  t0 = mono();
  for (i = 0; i < 4; i++)
    fd[i] = tcp_from("127.0.0.1", ntsntp_uv_ke_port(ke, 0));
  ck_assert_int_eq(send(fd[1], "\x16\x03", 2, 0), 2);
  ck_assert_int_eq(send(fd[2], "\x16\x03\x01\x02\x00\x01", 6, 0), 6);
  ck_assert_int_eq(send(fd[3], "\x16\x03", 2, 0), 2);
  sleep_ms(50);
  ck_assert_int_eq(send(fd[3], "\x01\x02\x00\x01\x00", 5, 0), 5);
  while (mono() - t0 < 2 * x &&
         (t[0] < 0 || t[1] < 0 || t[2] < 0 || t[3] < 0)) {
    for (i = 0; i < 4; i++)
      if (t[i] < 0 && closed(fd[i]))
        t[i] = mono() - t0;
    sleep_ms(5);
  }
  /* Silent: closed at the first-byte deadline; the others at the request
   * deadline (all measured from accept). */
  ck_assert_double_ge(t[0], 0.15 * x);
  ck_assert_double_lt(t[0], 0.45 * x);
  for (i = 1; i < 4; i++) {
    ck_assert_double_ge(t[i], 0.65 * x);
    ck_assert_double_lt(t[i], 1.2 * x);
  }
  for (i = 0; i < 4; i++)
    close(fd[i]); /* ends a drain */
  WAIT_STAT(ke, active, 0);
  WAIT_STAT(ke, ke.timeouts, 2);
  ntsntp_uv_ke_get_stats(ke, &st);
  ck_assert_uint_eq(st.first_byte_timeouts, 1);
  ck_assert_uint_eq(st.header_timeouts, 1);
  ck_assert_uint_eq(st.ke.handshake_failed, 0);
  stop(ke);
}
END_TEST

/* first_byte_ms 0: the request deadline alone applies. */
START_TEST(test_first_byte_off) {
  ntsntp_uv_ke_settings s;
  ntsntp_uv_ke *ke;
  int fd;
  double t0, x = tu_time_scale();
  ke_settings(&s, 8);
  s.first_byte_ms = 0;
  s.ke.timeout_ms = (uint32_t)(400 * x);
  ke = start(&s);
  t0 = mono();
  fd = tcp_from("127.0.0.1", ntsntp_uv_ke_port(ke, 0));
  while (!closed(fd) && mono() - t0 < 2 * x)
    sleep_ms(5);
  ck_assert_double_ge(mono() - t0, 0.35 * x);
  ck_assert_double_lt(mono() - t0, 0.8 * x);
  WAIT_STAT(ke, first_byte_timeouts, 1);
  stop(ke);
  close(fd);
}
END_TEST

/* ---- admission: caps and rate limit (access_svc.c's hooks) ---- */

static struct sockaddr_storage addr(const char *text) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if (strchr(text, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    ck_assert_int_eq(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    ck_assert_int_eq(inet_pton(AF_INET, text, &a->sin_addr), 1);
  }
  return ss;
}

static ntsntp__access_svc *access_new(unsigned per_client,
                                      unsigned per_network, int ratelimit,
                                      ntsntp_uv_ke_settings *ks) {
  ntsntp__access_svc_settings as;
  ntsntp__access_svc *a = NULL;
  char err[256] = "";
  memset(&as, 0, sizeof(as));
  ntsntp_ratelimit_settings_default(&as.ntp, NTSNTP_RL_SERVICE_NTP);
  ntsntp_ratelimit_settings_default(&as.ke, NTSNTP_RL_SERVICE_NTSKE);
  as.ke.enabled = ratelimit;
  as.ke.burst = 2;
  as.ke.interval = 12;
  as.want_ke = 1;
  as.max_per_client = per_client;
  as.max_per_network = per_network;
  as.max_connections = 64;
  ck_assert_msg(ntsntp__access_svc_new(&a, &as, err, sizeof(err)) == 0,
                "%s", err);
  ntsntp_uv_ke_settings_default(ks);
  ntsntp__access_svc_wire_ke(a, ks);
  return a;
}

static int accept_addr(const ntsntp_uv_ke_settings *ks, const char *text) {
  struct sockaddr_storage ss = addr(text);
  return ks->accept(ks->accept_user, (const struct sockaddr *)&ss);
}

static void release_addr(const ntsntp_uv_ke_settings *ks, const char *text) {
  struct sockaddr_storage ss = addr(text);
  ks->release(ks->accept_user, (const struct sockaddr *)&ss);
}

#define ACCEPT(ks, text) accept_addr(&(ks), text)
#define RELEASE(ks, text) release_addr(&(ks), text)

START_TEST(test_caps_v4) {
  ntsntp_uv_ke_settings ks;
  ntsntp__access_svc *a = access_new(2, 3, 0, &ks);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_CLIENT_FULL);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.2"), NTSNTP_UV_KE_ADMIT);
  /* 192.0.2.0/24 holds 3: another address there is refused, a refused
   * attempt takes nothing, and another /24 is not affected. */
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.3"), NTSNTP_UV_KE_NETWORK_FULL);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.200"), NTSNTP_UV_KE_NETWORK_FULL);
  ck_assert_int_eq(ACCEPT(ks, "192.0.3.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "::ffff:192.0.2.9"), NTSNTP_UV_KE_NETWORK_FULL);
  RELEASE(ks, "192.0.2.1");
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.3"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_NETWORK_FULL);
  RELEASE(ks, "192.0.2.1");
  RELEASE(ks, "192.0.2.2");
  RELEASE(ks, "192.0.2.3");
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "192.0.2.4"), NTSNTP_UV_KE_ADMIT);
  ntsntp__access_svc_del(a);
}
END_TEST

START_TEST(test_caps_v6) {
  ntsntp_uv_ke_settings ks;
  ntsntp__access_svc *a = access_new(1, 2, 0, &ks);
  /* /64 is the client, /56 the network. */
  ck_assert_int_eq(ACCEPT(ks, "2001:db8:0:1::1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "2001:db8:0:1::2"), NTSNTP_UV_KE_CLIENT_FULL);
  ck_assert_int_eq(ACCEPT(ks, "2001:db8:0:2::1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "2001:db8:0:ff::1"), NTSNTP_UV_KE_NETWORK_FULL);
  ck_assert_int_eq(ACCEPT(ks, "2001:db8:0:100::1"), NTSNTP_UV_KE_ADMIT);
  RELEASE(ks, "2001:db8:0:1::1");
  ck_assert_int_eq(ACCEPT(ks, "2001:db8:0:ff::1"), NTSNTP_UV_KE_ADMIT);
  ntsntp__access_svc_del(a);
}
END_TEST

/* Caps at 0 (or at least max_connections): no cap. */
START_TEST(test_caps_off) {
  ntsntp_uv_ke_settings ks;
  ntsntp__access_svc *a = access_new(0, 64, 0, &ks);
  int i;
  for (i = 0; i < 200; i++)
    ck_assert_int_eq(ACCEPT(ks, "192.0.2.1"), NTSNTP_UV_KE_ADMIT);
  for (i = 0; i < 200; i++)
    RELEASE(ks, "192.0.2.1");
  ntsntp__access_svc_del(a);
}
END_TEST

/* A rate-limited NTS-KE connection is always refused: nothing leaks
 * (with a leak of 1 in 4, about 50 of 200 would pass). */
START_TEST(test_ke_ratelimit_never_leaks) {
  ntsntp_uv_ke_settings ks;
  ntsntp__access_svc *a = access_new(0, 0, 1, &ks);
  int i, admitted = 0, limited = 0, v;
  for (i = 0; i < 202; i++) {
    v = ACCEPT(ks, "198.51.100.7");
    admitted += v == NTSNTP_UV_KE_ADMIT;
    limited += v == NTSNTP_UV_KE_RATELIMITED;
  }
  ck_assert_int_eq(admitted, 2); /* the burst */
  ck_assert_int_eq(limited, 200);
  /* Another client has its own bucket. */
  ck_assert_int_eq(ACCEPT(ks, "198.51.100.8"), NTSNTP_UV_KE_ADMIT);
  ntsntp__access_svc_del(a);
}
END_TEST

/* Bad input: a non-IP address is refused, and the caps' table stays
 * consistent through many clients coming and going. */
START_TEST(test_caps_churn) {
  ntsntp_uv_ke_settings ks;
  ntsntp__access_svc *a = access_new(2, 4, 0, &ks);
  struct sockaddr_storage un;
  char ip[32];
  int i, round;
  memset(&un, 0, sizeof(un));
  un.ss_family = AF_UNIX;
  ck_assert_int_eq(ks.accept(ks.accept_user, (struct sockaddr *)&un),
                   NTSNTP_UV_KE_REFUSE);
  ks.release(ks.accept_user, (struct sockaddr *)&un); /* ignored */
  for (round = 0; round < 50; round++) {
    for (i = 0; i < 60; i++) {
      snprintf(ip, sizeof(ip), "10.%d.%d.1", round, i);
      ck_assert_int_eq(ACCEPT(ks, ip), NTSNTP_UV_KE_ADMIT);
    }
    for (i = 0; i < 60; i++) {
      snprintf(ip, sizeof(ip), "10.%d.%d.1", round, i);
      RELEASE(ks, ip);
    }
  }
  /* All gone: one network takes its full cap again. */
  ck_assert_int_eq(ACCEPT(ks, "10.0.0.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "10.0.0.1"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "10.0.0.2"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "10.0.0.2"), NTSNTP_UV_KE_ADMIT);
  ck_assert_int_eq(ACCEPT(ks, "10.0.0.3"), NTSNTP_UV_KE_NETWORK_FULL);
  ntsntp__access_svc_del(a);
}
END_TEST

/* The hooks through the server: refusals counted by reason. */
START_TEST(test_refusals_counted) {
  ntsntp_uv_ke_settings ks;
  ntsntp__access_svc *a = access_new(1, 2, 0, &ks);
  ntsntp_uv_ke *ke;
  ntsntp_uv_ke_stats st;
  uint16_t port;
  int fd[4], i;
  ks.listen = lo;
  ks.n_listen = 1;
  ks.port = 0;
  ks.max_connections = 16;
  ks.first_byte_ms = 10000;
  ks.ke.creds = creds;
  ks.ke.keyring = kr;
  ke = start(&ks);
  port = ntsntp_uv_ke_port(ke, 0);
  fd[0] = tcp_from("127.3.0.1", port);
  fd[1] = tcp_from("127.3.0.1", port); /* client cap */
  fd[2] = tcp_from("127.3.0.2", port);
  fd[3] = tcp_from("127.3.0.3", port); /* network cap */
  WAIT_STAT(ke, dropped, 2);
  ntsntp_uv_ke_get_stats(ke, &st);
  ck_assert_uint_eq(st.refused_client_cap, 1);
  ck_assert_uint_eq(st.refused_network_cap, 1);
  ck_assert_uint_eq(st.accepted, 2);
  sleep_ms(50);
  ck_assert(!closed(fd[0]) && closed(fd[1]) && !closed(fd[2]) &&
            closed(fd[3]));
  stop(ke);
  for (i = 0; i < 4; i++)
    close(fd[i]);
  ntsntp__access_svc_del(a);
}
END_TEST

/* A start that fails with no error buffer returns the error; it does not
 * write through the NULL pointer. */
START_TEST(test_start_errors_without_errbuf) {
  static const char *const bad[] = {"not-an-address"};
  static const char *const foreign[] = {"192.0.2.1"}; /* not ours */
  ntsntp_uv_ke_settings ks;
  ntsntp_uv_ke *ke = NULL;
  ke_settings(&ks, 16);
  /* |done| of stop runs on the loop: there must be one. */
  ck_assert_int_eq(ntsntp_uv_ke_start(NULL, &ks, &ke, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ks.listen = bad;
  ck_assert_int_lt(ntsntp_uv_ke_start(&ke_loop, &ks, &ke, NULL, 64), 0);
  ck_assert_ptr_null(ke);
  ks.listen = foreign;
  ck_assert_int_lt(ntsntp_uv_ke_start(&ke_loop, &ks, &ke, NULL, 64), 0);
  ck_assert_ptr_null(ke);
}
END_TEST

/* No listen addresses on a host without IPv6: NTS-KE is served on
 * 0.0.0.0 (index 0) with a warning, and [::] is skipped; an explicit
 * IPv6 address still fails the start. */
static char warned[256];
static void keep_log(void *user, int level, const char *msg) {
  (void)user;
  if (level == NTSNTP_LOG_WARN)
    snprintf(warned, sizeof(warned), "%s", msg);
}

START_TEST(test_no_ipv6_host) {
  static const char *const v6[] = {"::1"};
  ntsntp_uv_ke_settings ks;
  ntsntp_uv_ke *ke = NULL;
  char err[256] = "";
  int fd;
  ke_settings(&ks, 16);
  ks.listen = NULL;
  ks.n_listen = 0;
  ks.log = keep_log;
  atomic_store(&no_ipv6, 1);
  ck_assert_int_eq(ntsntp_uv_ke_start(&ke_loop, &ks, &ke, err, sizeof(err)), 0);
  ck_assert_str_eq(err, "");
  ck_assert_ptr_nonnull(strstr(warned, "no IPv6"));
  ck_assert_uint_ne(ntsntp_uv_ke_port(ke, 0), 0);
  ck_assert_uint_eq(ntsntp_uv_ke_port(ke, 1), 0);
  fd = tcp_from("127.0.0.1", ntsntp_uv_ke_port(ke, 0));
  ck_assert_int_ge(fd, 0);
  close(fd);
  stop(ke);
  ke = NULL;
  ks.listen = v6;
  ks.n_listen = 1;
  ck_assert_int_lt(ntsntp_uv_ke_start(&ke_loop, &ks, &ke, err, sizeof(err)), 0);
  ck_assert_ptr_nonnull(strstr(err, "::1"));
  atomic_store(&no_ipv6, 0);
}
END_TEST

static Suite *uv_ke_suite(void) {
  Suite *s = suite_create("uv_ke");
  TCase *tc = tcase_create("server");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_accept_failure_not_counted);
  tcase_add_test(tc, test_full_evicts_idle_then_partial);
  tcase_add_test(tc, test_young_idle_outlives_old_partial);
  tcase_add_test(tc, test_full_of_idle_serves_client);
  tcase_add_test(tc, test_deadlines);
  tcase_add_test(tc, test_first_byte_off);
  tcase_add_test(tc, test_refusals_counted);
  tcase_add_test(tc, test_start_errors_without_errbuf);
  tcase_add_test(tc, test_no_ipv6_host);
  suite_add_tcase(s, tc);
  tc = tcase_create("admission");
  tcase_add_test(tc, test_caps_v4);
  tcase_add_test(tc, test_caps_v6);
  tcase_add_test(tc, test_caps_off);
  tcase_add_test(tc, test_ke_ratelimit_never_leaks);
  tcase_add_test(tc, test_caps_churn);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(uv_ke_suite()); }
