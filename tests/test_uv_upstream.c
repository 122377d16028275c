/*
 * The upstream runtime (lib/uv/upstream.c) with its resolver hook: pools
 * of several loopback addresses on one port, members that do not answer
 * or are falsetickers replaced, at most maxsources at once; a plain name
 * moving to its next address; reload keeping unchanged sources; the
 * leap-second list read or refused.  Test servers are threads answering
 * NTP on 127.0.0.2-5 (127.0.0.5 five seconds off); 127.0.0.6 and
 * 127.0.0.7 never answer.  Nothing here touches the machine's clock.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/upstream.h"
#include "testutil.h"

#define NSRV 4 /* 127.0.0.2 .. 127.0.0.5 */

static uint16_t port;
static int fds[NSRV];
static pthread_t thr[NSRV];
static atomic_int stop;
static ntsntp_server *served; /* what the upstream publishes */

static uint64_t now_ntp(double offset) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_add(ntsntp_ts_from_timespec(&ts), offset);
}

static void *serve(void *arg) {
  int k = (int)(intptr_t)arg;
  double offset = k == 3 ? 5.0 : 0; /* 127.0.0.5: a falseticker */
  ntsntp_server_settings ss;
  ntsntp_server *srv;
  ntsntp_clock_state cs;
  ntsntp_server_settings_default(&ss);
  if (ntsntp_server_new(&srv, &ss, NULL, 0))
    return NULL;
  while (!atomic_load(&stop)) {
    uint8_t req[1024], resp[1024];
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    ntsntp_server_ctx ctx;
    ssize_t n = recvfrom(fds[k], req, sizeof(req), 0,
                         (struct sockaddr *)&peer, &plen);
    uint64_t rx = now_ntp(offset);
    ntsntp_ssize len;
    if (n < 0)
      continue;
    ntsntp_clock_state_local(&cs, 1, rx);
    ntsntp_server_set_clock(srv, &cs);
    if (ntsntp_server_prepare(srv, req, (size_t)n, rx, &ctx) ==
        NTSNTP_SERVER_DROP)
      continue;
    len = ntsntp_server_finish(srv, &ctx, now_ntp(offset), resp, sizeof(resp));
    if (len > 0)
      sendto(fds[k], resp, (size_t)len, 0, (struct sockaddr *)&peer, plen);
  }
  ntsntp_server_del(srv);
  return NULL;
}

static void lo(struct sockaddr_in *sin, int last, uint16_t p) {
  memset(sin, 0, sizeof(*sin));
  sin->sin_family = AF_INET;
  sin->sin_port = htons(p);
  sin->sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)last);
}

static void servers_start(void) {
  struct timeval tv = {0, 100000};
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  int k;
  atomic_store(&stop, 0);
  for (k = 0; k < NSRV; k++) {
    fds[k] = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(fds[k], 0);
    lo(&sin, 2 + k, port);
    ck_assert_int_eq(bind(fds[k], (struct sockaddr *)&sin, sizeof(sin)), 0);
    if (k == 0) {
      getsockname(fds[0], (struct sockaddr *)&sin, &len);
      port = ntohs(sin.sin_port);
    }
    setsockopt(fds[k], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    pthread_create(&thr[k], NULL, serve, (void *)(intptr_t)k);
  }
}

static void servers_stop(void) {
  int k;
  atomic_store(&stop, 1);
  for (k = 0; k < NSRV; k++) {
    pthread_join(thr[k], NULL);
    close(fds[k]);
  }
}

/* The resolver hook: names of this test only. */
static int hook_calls;
static int hook(void *user, const char *name, struct sockaddr_storage *out,
                size_t max) {
  static const int pool[] = {6, 2, 3, 5, 4, 7};
  static const int multi[] = {6, 2};
  const int *a = NULL;
  size_t n = 0, i;
  (void)user;
  hook_calls++;
  if (!strcmp(name, "pool.test")) {
    a = pool;
    n = 6;
  } else if (!strcmp(name, "multi.test")) {
    a = multi;
    n = 2;
  } else if (!strcmp(name, "nowhere.test")) {
    return NTSNTP_ERR_IO;
  }
  for (i = 0; i < n && i < max; i++)
    lo((struct sockaddr_in *)&out[i], a[i], 0);
  return (int)i;
}

static char logbuf[65536];
static size_t loglen;
static void logf_(void *user, int level, const char *msg) {
  (void)user;
  (void)level;
  loglen += (size_t)snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "%s\n",
                             msg);
  if (loglen >= sizeof(logbuf))
    loglen = sizeof(logbuf) - 1;
}

static uv_loop_t loop;
static ntsntp_uv_upstream *up;

static void start(const char *const *items, size_t n, unsigned maxsources,
                  const char *leap) {
  ntsntp_uv_upstream_settings s;
  ntsntp_server_settings ss;
  char err[512] = "";
  loglen = 0;
  logbuf[0] = 0;
  hook_calls = 0;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ntsntp_server_settings_default(&ss);
  ck_assert_int_eq(ntsntp_server_new(&served, &ss, NULL, 0), 0);
  ntsntp_uv_upstream_settings_default(&s);
  s.servers = items;
  s.n_servers = n;
  s.server = served;
  s.maxsources = maxsources;
  s.sync.minpoll = s.sync.maxpoll = -4; /* 1/16 s: 8 polls in 0.5 s */
  s.timeout_ms = 50;
  s.resolve = hook;
  s.leapseclist = leap;
  s.log = logf_;
  ck_assert_msg(ntsntp_uv_upstream_start(&loop, &s, &up, err, sizeof(err)) ==
                    0,
                "%s", err);
}

static void stop_done(void *user) { *(int *)user = 1; }

static void finish(void) {
  int done = 0;
  ntsntp_uv_upstream_stop(up, stop_done, &done);
  while (!done)
    uv_run(&loop, UV_RUN_ONCE);
  /* |done| comes after everything the upstream started, its queries
   * included, is closed: the loop can be closed at once. */
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ntsntp_server_del(served);
}

/* Active sources now: their names (addresses for pool members). */
static unsigned names(char out[][NTSNTP_SOURCE_NAME_LEN], uint8_t *reach) {
  const ntsntp_sync *sync = ntsntp_uv_upstream_sync(up);
  unsigned i, k = 0;
  for (i = 0; i < ntsntp_sync_n_sources(sync); i++) {
    ntsntp_source_info in;
    if (ntsntp_sync_source_info(sync, i, now_ntp(0), &in))
      continue;
    snprintf(out[k], NTSNTP_SOURCE_NAME_LEN, "%s", in.name);
    if (reach)
      reach[k] = in.reach;
    k++;
  }
  return k;
}

static int has(char n[][NTSNTP_SOURCE_NAME_LEN], unsigned k, const char *s) {
  unsigned i;
  for (i = 0; i < k; i++)
    if (!strcmp(n[i], s))
      return 1;
  return 0;
}

/* Runs the loop for |ms|, calling |check| every 10 ms until it returns 1. */
static int run_until(int (*check)(void), unsigned ms) {
  unsigned t;
  for (t = 0; t < ms; t += 10) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (check && check())
      return 1;
    usleep(10000);
  }
  return 0;
}

static unsigned max_seen;
static int pool_good(void) {
  char n[NTSNTP_SYNC_MAX_SOURCES][NTSNTP_SOURCE_NAME_LEN];
  uint8_t r[NTSNTP_SYNC_MAX_SOURCES];
  unsigned k = names(n, r), i;
  ntsntp_tracking t;
  if (k > max_seen)
    max_seen = k;
  ntsntp_sync_tracking(ntsntp_uv_upstream_sync(up), now_ntp(0), &t);
  for (i = 0; i < k; i++)
    if (!r[i])
      return 0;
  return k == 3 && has(n, k, "127.0.0.2") && has(n, k, "127.0.0.3") &&
         has(n, k, "127.0.0.4") && t.synced;
}

START_TEST(test_pool_replaces) {
  char item[64];
  const char *items[1] = {item};
  snprintf(item, sizeof(item), "pool://pool.test:%u", port);
  start(items, 1, 3, NULL);
  max_seen = 0;
  /* .6 (silent) and .5 (5 s off) start among the first three; both go. */
  ck_assert_msg(run_until(pool_good, 15000), "log:\n%s", logbuf);
  ck_assert_uint_le(max_seen, 3);
  ck_assert_ptr_nonnull(strstr(logbuf, "Source 127.0.0.6 (pool pool.test"));
  ck_assert_ptr_nonnull(
      strstr(logbuf, "Source 127.0.0.5 (pool pool.test:"));
  ck_assert_ptr_nonnull(strstr(logbuf, ") a falseticker: replacing it"));
  ck_assert_ptr_nonnull(strstr(logbuf, ") unreachable: replacing it"));
  ck_assert_int_ge(hook_calls, 1);
  finish();
}
END_TEST

static int multi_moved(void) {
  return strstr(logbuf, "does not answer: trying 127.0.0.2") != NULL;
}

START_TEST(test_plain_next_address) {
  char item[64];
  const char *items[1] = {item};
  snprintf(item, sizeof(item), "multi.test:%u", port);
  start(items, 1, 4, NULL);
  ck_assert_msg(run_until(multi_moved, 5000), "log:\n%s", logbuf);
  ck_assert_ptr_nonnull(strstr(logbuf, "Only one source (multi.test:"));
  finish();
}
END_TEST

static int two_reach(void) {
  char n[NTSNTP_SYNC_MAX_SOURCES][NTSNTP_SOURCE_NAME_LEN];
  uint8_t r[NTSNTP_SYNC_MAX_SOURCES];
  unsigned k = names(n, r);
  return k == 2 && r[0] == 0xff && r[1] == 0xff;
}

START_TEST(test_reload) {
  char a[64], b[64], c[64], n[NTSNTP_SYNC_MAX_SOURCES][NTSNTP_SOURCE_NAME_LEN];
  const char *items[2] = {a, b}, *next[2] = {a, c}, *bad[2] = {a, "ftp://x"};
  ntsntp_uv_upstream_settings s;
  ntsntp_uv_upstream_changes ch;
  uint8_t r[NTSNTP_SYNC_MAX_SOURCES];
  char err[512];
  unsigned k;
  snprintf(a, sizeof(a), "127.0.0.2:%u", port);
  snprintf(b, sizeof(b), "127.0.0.3:%u", port);
  snprintf(c, sizeof(c), "127.0.0.4:%u", port);
  start(items, 2, 4, NULL);
  ck_assert(run_until(two_reach, 5000));
  ntsntp_uv_upstream_settings_default(&s);
  /* Bad input changes nothing. */
  s.servers = bad;
  s.n_servers = 2;
  ck_assert_int_eq(ntsntp_uv_upstream_reload(up, &s, &ch, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "ftp://x"));
  s.servers = next;
  s.maxsources = 0;
  ck_assert_int_eq(ntsntp_uv_upstream_reload(up, &s, &ch, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_int_eq(ntsntp_uv_upstream_reload(NULL, &s, &ch, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_uint_eq(names(n, r), 2);
  /* 127.0.0.3 out, 127.0.0.4 in; 127.0.0.2 keeps its reach. */
  s.maxsources = 4;
  ck_assert_int_eq(ntsntp_uv_upstream_reload(up, &s, &ch, err, sizeof(err)),
                   0);
  ck_assert_uint_eq(ch.added, 1);
  ck_assert_uint_eq(ch.removed, 1);
  ck_assert_uint_eq(ch.kept, 1);
  k = names(n, r);
  ck_assert_uint_eq(k, 2);
  ck_assert_str_eq(n[0], a);
  ck_assert_uint_eq(r[0], 0xff);
  ck_assert_str_eq(n[1], c); /* in the slot 127.0.0.3 left */
  ck_assert_uint_eq(r[1], 0);
  ck_assert(run_until(two_reach, 5000));
  finish();
}
END_TEST

START_TEST(test_resolve_fails_and_leap_list) {
  const char *items[1] = {"pool://nowhere.test"};
  char path[] = "/tmp/ntsntp-leap-XXXXXX";
  char n[NTSNTP_SYNC_MAX_SOURCES][NTSNTP_SOURCE_NAME_LEN];
  int fd = mkstemp(path);
  static const char list[] = "#@ 3707596800\n3550089600 35\n#h 1 2 3 4 5\n";
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, list, sizeof(list) - 1), (int)sizeof(list) - 1);
  close(fd);
  start(items, 1, 4, path);
  run_until(NULL, 200);
  ck_assert_uint_eq(names(n, NULL), 0);
  ck_assert_ptr_nonnull(strstr(logbuf, "Could not resolve nowhere.test"));
  ck_assert_ptr_nonnull(strstr(logbuf, "not used: line 3: the #h hash does "
                                       "not match"));
  finish();
  unlink(path);
  /* A missing list is said, not fatal. */
  start(items, 1, 4, "/nonexistent/leap-seconds.list");
  ck_assert_ptr_nonnull(strstr(logbuf, "LEAPSECLIST /nonexistent/leap-seconds"
                                       ".list not read"));
  finish();
}
END_TEST

/* Stopped while an NTS-KE and an NTP query are in flight: a KE server that
 * takes the connection and never answers, an NTP server that never
 * answers.  The stop's |done| still comes last. */
START_TEST(test_stop_mid_query) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  char ke[64], ntp[64];
  const char *items[2] = {ke, ntp};
  int l = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
  unsigned i;
  ck_assert_int_ge(l, 0);
  ck_assert_int_ge(u, 0);
  lo(&sin, 1, 0);
  ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
  ck_assert_int_eq(listen(l, 4), 0);
  ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
  snprintf(ke, sizeof(ke), "nts://127.0.0.1:%u", ntohs(sin.sin_port));
  lo(&sin, 1, 0);
  ck_assert_int_eq(bind(u, (struct sockaddr *)&sin, sizeof(sin)), 0);
  len = sizeof(sin);
  ck_assert_int_eq(getsockname(u, (struct sockaddr *)&sin, &len), 0);
  snprintf(ntp, sizeof(ntp), "127.0.0.1:%u", ntohs(sin.sin_port));
  for (i = 0; i < 3; i++) {
    start(items, 2, 4, NULL);
    run_until(NULL, 20 + 40 * i); /* KE connected or sent, NTP sent */
    finish();
  }
  close(l);
  close(u);
}
END_TEST

static void setup(void) { servers_start(); }
static void teardown(void) { servers_stop(); }

static Suite *upstream_suite(void) {
  Suite *s = suite_create("uv_upstream");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_pool_replaces);
  tcase_add_test(tc, test_plain_next_address);
  tcase_add_test(tc, test_reload);
  tcase_add_test(tc, test_resolve_fails_and_leap_list);
  tcase_add_test(tc, test_stop_mid_query);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(upstream_suite()); }
