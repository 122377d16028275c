/*
 * Control socket, /metrics and ntsctl against a running service on
 * 127.0.0.1 (ports picked by the kernel, a temporary STATE_DIR).  The
 * loop runs on its own thread; the test talks to it over sockets only.
 * argv[1]: the ntsctl binary.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/control.h"
#include "ntsntp/pkt.h"
#include "ntsntp/service.h"
#include "ntsntp/ts.h"
#include "testpki.h"
#include "testutil.h"

#include "../lib/uv/ctl_fmt.h"

extern char **environ;

static const char *ntsctl_path;

/* ------------------------------------------------------------------------ */
/* Test seam: a symbolic link swapped in for the control socket              */
/* ------------------------------------------------------------------------ */

/* Right after the control server lstat()s its new socket (the moment the
 * old code went on to chmod it by path), the socket is moved away and a
 * symbolic link put in its place, as the user who owns STATE_DIR could.
 * This lstat replaces libc's for the whole test binary; it stats with
 * fstatat and acts only while armed, on |swap_path|. */
static char swap_path[192], swap_target[192];
static int swap_armed, swapped;

int lstat(const char *restrict path, struct stat *restrict st) {
  int rv = fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
  if (swap_armed && rv == 0 && S_ISSOCK(st->st_mode) &&
      !strcmp(path, swap_path)) {
    char moved[256];
    swap_armed = 0;
    snprintf(moved, sizeof(moved), "%s.moved", path);
    swapped = rename(path, moved) == 0 && symlink(swap_target, path) == 0;
  }
  return rv;
}

/* ------------------------------------------------------------------------ */
/* A loop on a thread                                                        */
/* ------------------------------------------------------------------------ */

typedef struct env env;
struct env {
  char dir[128], sock[192];
  uv_loop_t loop;
  uv_async_t stop_async;
  pthread_t thr;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int ready, rv, stopped_cb;
  char err[512];
  int (*start)(env *e);
  void (*stop)(env *e, void (*done)(void *), void *user);
  ntsntp_uv_service *svc;
  ntsntp_uv_ctl *ctl;
  char metrics[64];
  uint16_t ntp_port, metrics_port;
};

static void on_stopped(void *user) {
  env *e = user;
  e->stopped_cb = 1;
  uv_close((uv_handle_t *)&e->stop_async, NULL);
}

static void on_stop(uv_async_t *a) {
  env *e = a->data;
  e->stop(e, on_stopped, e);
}

static void *loop_thread(void *arg) {
  env *e = arg;
  int rv;
  ck_assert_int_eq(uv_loop_init(&e->loop), 0);
  uv_async_init(&e->loop, &e->stop_async, on_stop);
  e->stop_async.data = e;
  rv = e->start(e);
  pthread_mutex_lock(&e->mu);
  e->rv = rv;
  e->ready = 1;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  if (rv)
    uv_close((uv_handle_t *)&e->stop_async, NULL);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&e->loop), 0);
  return NULL;
}

static void env_run(env *e) {
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  ck_assert_int_eq(pthread_create(&e->thr, NULL, loop_thread, e), 0);
  pthread_mutex_lock(&e->mu);
  while (!e->ready)
    pthread_cond_wait(&e->cv, &e->mu);
  pthread_mutex_unlock(&e->mu);
  if (e->rv)
    fprintf(stderr, "start failed: %s\n", e->err);
  ck_assert_int_eq(e->rv, 0);
}

static void env_end(env *e) {
  uv_async_send(&e->stop_async);
  pthread_join(e->thr, NULL);
  ck_assert_int_eq(e->stopped_cb, 1);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
}

static void make_dir(env *e) {
  snprintf(e->dir, sizeof(e->dir), "/tmp/ntsctl-test-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(e->dir));
  snprintf(e->sock, sizeof(e->sock), "%s/ntsd.sock", e->dir);
}

static void remove_dir(env *e) {
  char p[256];
  snprintf(p, sizeof(p), "%s/out", e->dir);
  unlink(p);
  snprintf(p, sizeof(p), "%s/err", e->dir);
  unlink(p);
  unlink(e->sock);
  ck_assert_int_eq(rmdir(e->dir), 0);
}

/* A free TCP port on 127.0.0.1 (the kernel's pick, released at once). */
static uint16_t free_port(void) {
  struct sockaddr_in sa = {0};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static int svc_start(env *e) {
  ntsntp_uv_service_settings s;
  static const char *const listen[] = {"127.0.0.1"};
  ntsntp_uv_service_settings_default(&s);
  s.listen = listen;
  s.n_listen = 1;
  s.ntp_port = 0;
  s.workers = 1;
  s.state_dir = e->dir;
  s.metrics_listen = e->metrics;
  /* serverstats_exact sends 300 requests from one address. */
  s.ratelimit.enabled = 0;
  int rv =
      ntsntp_uv_service_start(&e->loop, &s, &e->svc, e->err, sizeof(e->err));
  if (rv == 0)
    e->ntp_port = ntsntp_uv_service_ntp_port(e->svc, 0);
  return rv;
}

static void svc_stop(env *e, void (*done)(void *), void *user) {
  ntsntp_uv_service_stop(e->svc, done, user);
}

static void start_service(env *e) {
  memset(e, 0, sizeof(*e));
  make_dir(e);
  e->metrics_port = free_port();
  snprintf(e->metrics, sizeof(e->metrics), "127.0.0.1:%u", e->metrics_port);
  e->start = svc_start;
  e->stop = svc_stop;
  umask(022); /* the socket must still be 0660 */
  env_run(e);
}

/* ------------------------------------------------------------------------ */
/* Clients                                                                   */
/* ------------------------------------------------------------------------ */

static int unix_connect(const char *path) {
  struct sockaddr_un sa = {0};
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct timeval tv = {10, 0};
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads to EOF into |buf| (NUL-terminated); returns the length, -1 on a
 * read error (e.g. reset). */
static ssize_t read_all(int fd, char *buf, size_t len) {
  size_t n = 0;
  ssize_t r;
  while (n + 1 < len && (r = read(fd, buf + n, len - 1 - n)) != 0) {
    if (r < 0) {
      buf[n] = '\0';
      return -1;
    }
    n += (size_t)r;
  }
  buf[n] = '\0';
  return (ssize_t)n;
}

/* Sends |req| on a new connection; returns the whole answer. */
static ssize_t ask_raw(const char *path, const char *req, size_t reqlen,
                       char *buf, size_t len) {
  int fd = unix_connect(path);
  ssize_t n;
  ck_assert_int_ge(fd, 0);
  send(fd, req, reqlen, MSG_NOSIGNAL);
  n = read_all(fd, buf, len);
  close(fd);
  return n;
}

static int tcp_connect(uint16_t port) {
  struct sockaddr_in sa = {0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static ssize_t http(uint16_t port, const char *req, char *buf, size_t len) {
  int t = tcp_connect(port);
  ssize_t n;
  send(t, req, strlen(req), MSG_NOSIGNAL);
  n = read_all(t, buf, len);
  close(t);
  return n;
}

/* "NTSCTL/1 <cmd>\n": returns the body after a checked OK header. */
static char *ask(const char *path, const char *req, char *buf, size_t len) {
  char *nl;
  unsigned long want;
  ssize_t n = ask_raw(path, req, strlen(req), buf, len);
  ck_assert_int_gt(n, 0);
  nl = strchr(buf, '\n');
  ck_assert_ptr_nonnull(nl);
  ck_assert_int_eq(sscanf(buf, "NTSCTL/1 OK %lu", &want), 1);
  ck_assert_uint_eq(want, (size_t)n - (size_t)(nl + 1 - buf));
  return nl + 1;
}

static uint64_t json_u64(const char *body, const char *key) {
  char pat[128];
  const char *p;
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  p = strstr(body, pat);
  ck_assert_msg(p != NULL, "no %s in %s", key, body);
  return strtoull(p + strlen(pat), NULL, 10);
}

static int udp_socket(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void udp_send(int fd, uint16_t port, const uint8_t *p, size_t len) {
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(sendto(fd, p, len, 0, (struct sockaddr *)&sa, sizeof(sa)),
                   (ssize_t)len);
}

/* Runs ntsctl with |argv| (argv[0] ignored); stdout and stderr go to
 * |out| and |err|.  Returns the exit status. */
static int run_ntsctl(env *e, const char **argv, char *out, size_t outlen,
                      char *err, size_t errlen) {
  posix_spawn_file_actions_t fa;
  char po[256], pe[256];
  pid_t pid;
  int status, fd;
  snprintf(po, sizeof(po), "%s/out", e->dir);
  snprintf(pe, sizeof(pe), "%s/err", e->dir);
  argv[0] = ntsctl_path;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, po, O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&fa, 2, pe, O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  ck_assert_int_eq(
      posix_spawn(&pid, ntsctl_path, &fa, NULL, (char *const *)argv, environ),
      0);
  posix_spawn_file_actions_destroy(&fa);
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status));
  fd = open(po, O_RDONLY);
  read_all(fd, out, outlen);
  close(fd);
  fd = open(pe, O_RDONLY);
  read_all(fd, err, errlen);
  close(fd);
  return WEXITSTATUS(status);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

/* Exact counters: every request sent is received, the malformed ones are
 * dropped under their reason, and the control socket reports it so. */
START_TEST(serverstats_exact) {
  static char buf[65536];
  env e;
  uint8_t pkt[48], resp[512];
  int fd, i, valid = 0, shorts = 0, bad_mode = 0, bad_version = 0;
  char *body;
  struct stat st;
  const char *metrics;

  start_service(&e);
  ck_assert_int_eq(lstat(e.sock, &st), 0);
  ck_assert(S_ISSOCK(st.st_mode));
  ck_assert_uint_eq(st.st_mode & 07777, 0660);

  fd = udp_socket();
  for (i = 0; i < 300; i++) {
    memset(pkt, 0, sizeof(pkt));
    pkt[0] = 4 << 3 | 3; /* v4 client */
    pkt[47] = (uint8_t)i;
    pkt[43] = 1;
    switch (i % 10) {
    case 1:
      udp_send(fd, e.ntp_port, pkt, 20);
      shorts++;
      continue;
    case 2:
    case 5:
      pkt[0] = 4 << 3 | 4; /* a server packet */
      udp_send(fd, e.ntp_port, pkt, sizeof(pkt));
      bad_mode++;
      continue;
    case 3:
      pkt[0] = 1 << 3 | 3;
      udp_send(fd, e.ntp_port, pkt, sizeof(pkt));
      bad_version++;
      continue;
    }
    udp_send(fd, e.ntp_port, pkt, sizeof(pkt));
    valid++;
    ck_assert_int_eq(recv(fd, resp, sizeof(resp), 0), 48);
    ck_assert_uint_eq(resp[0] & 7, 4);
  }
  close(fd);

  /* Workers publish after each batch: wait for the last one. */
  for (i = 0; i < 200; i++) {
    body = ask(e.sock, "NTSCTL/1 serverstats json\n", buf, sizeof(buf));
    if (json_u64(body, "ntp_packets_received") == 300)
      break;
    usleep(10000);
  }
  ck_assert_uint_eq(json_u64(body, "ntp_packets_received"), 300);
  ck_assert_uint_eq(json_u64(body, "ntp_packets_dropped"),
                    (uint64_t)(shorts + bad_mode + bad_version));
  ck_assert_uint_eq(json_u64(body, "too-short"), (uint64_t)shorts);
  ck_assert_uint_eq(json_u64(body, "bad-mode"), (uint64_t)bad_mode);
  ck_assert_uint_eq(json_u64(body, "bad-version"), (uint64_t)bad_version);
  ck_assert_uint_eq(json_u64(body, "other"), 0);
  ck_assert_uint_eq(json_u64(body, "ntp_responses_sent"), (uint64_t)valid);
  ck_assert_uint_eq(json_u64(body, "ntp_kernel_rx_timestamps") +
                        json_u64(body, "ntp_daemon_rx_timestamps"),
                    300);
  ck_assert_uint_eq(json_u64(body, "authenticated_ntp_packets"), 0);

  body = ask(e.sock, "NTSCTL/1 serverstats\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "NTP packets received       : 300\n"));
  ck_assert_ptr_nonnull(strstr(body, "NTP packets dropped        : 120\n"));
  ck_assert_ptr_nonnull(strstr(body, "NTS-KE connections accepted: 0\n"));
  ck_assert_ptr_nonnull(strstr(body, "Authenticated NTP packets  : 0\n"));
  ck_assert_ptr_nonnull(strstr(body, "Dropped (bad-mode)         : 60\n"));
  ck_assert_ptr_nonnull(strstr(body, "NTP responses sent         : 180\n"));

  /* The same numbers in the exposition format, over HTTP too. */
  metrics = ask(e.sock, "NTSCTL/1 metrics\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(
      strstr(metrics, "\nntsd_ntp_packets_received_total 300\n"));
  ck_assert_ptr_nonnull(strstr(
      metrics, "\nntsd_ntp_packets_dropped_total{reason=\"bad-mode\"} 60\n"));
  ck_assert_ptr_nonnull(strstr(metrics, "\nntsd_synchronised 1\n"));
  ck_assert_ptr_nonnull(strstr(metrics, "\nntsd_stratum 10\n"));
  {
    struct sockaddr_in sa = {0};
    int t = socket(AF_INET, SOCK_STREAM, 0);
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    sa.sin_family = AF_INET;
    sa.sin_port = htons(e.metrics_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(t, (struct sockaddr *)&sa, sizeof(sa)), 0);
    send(t, req, sizeof(req) - 1, MSG_NOSIGNAL);
    ck_assert_int_gt(read_all(t, buf, sizeof(buf)), 0);
    close(t);
    ck_assert_ptr_nonnull(strstr(buf, "HTTP/1.0 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(buf, "version=0.0.4"));
    ck_assert_ptr_nonnull(
        strstr(buf, "\nntsd_ntp_packets_received_total 300\n"));
  }
  env_end(&e);
  ck_assert_int_ne(access(e.sock, F_OK), 0); /* removed on stop */
  remove_dir(&e);
}
END_TEST

/* Every sample line follows the TYPE line of its family, families are not
 * split, and values parse. */
static void check_exposition(const char *text) {
  char typed[128][96], family[96] = "";
  size_t ntyped = 0, i;
  int samples = 0;
  const char *line = text, *nl;
  for (; *line; line = nl + 1) {
    char name[96];
    size_t len;
    const char *v;
    char *end;
    nl = strchr(line, '\n');
    ck_assert_ptr_nonnull(nl); /* every line ends with \n */
    if (!strncmp(line, "# HELP ", 7))
      continue;
    if (!strncmp(line, "# TYPE ", 7)) {
      ck_assert_int_eq(sscanf(line + 7, "%95s", typed[ntyped]), 1);
      for (i = 0; i < ntyped; i++)
        ck_assert_str_ne(typed[i], typed[ntyped]); /* no family twice */
      snprintf(family, sizeof(family), "%s", typed[ntyped]);
      ck_assert(!strncmp(line + 7 + strlen(family), " counter\n", 9) ||
                !strncmp(line + 7 + strlen(family), " gauge\n", 7) ||
                !strncmp(line + 7 + strlen(family), " histogram\n", 11));
      ntyped++;
      continue;
    }
    ck_assert(line[0] != '#');
    len = strcspn(line, "{ ");
    ck_assert_uint_lt(len, sizeof(name));
    memcpy(name, line, len);
    name[len] = '\0';
    /* A histogram's samples: family_bucket, _sum, _count. */
    if (strcmp(name, family) != 0 && !strncmp(name, family, strlen(family)) &&
        (!strcmp(name + strlen(family), "_bucket") ||
         !strcmp(name + strlen(family), "_sum") ||
         !strcmp(name + strlen(family), "_count")))
      name[strlen(family)] = '\0';
    ck_assert_msg(!strcmp(name, family), "%s without its TYPE", name);
    for (v = nl - 1; v > line && *v != ' '; v--) /* the value: last field */
      ;
    ck_assert(*v == ' ');
    strtod(v + 1, &end);
    ck_assert_ptr_eq(end, nl);
    samples++;
  }
  ck_assert_int_gt(samples, 30);
}

START_TEST(protocol) {
  static char buf[65536], big[1000];
  env e;
  char *body;
  ssize_t n;

  start_service(&e);
  body = ask(e.sock, "NTSCTL/1 health\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "Synchronised    : Yes\n"));
  body = ask(e.sock, "NTSCTL/1 health json\r\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "\"synchronised\":true"));

  body = ask(e.sock, "NTSCTL/1 tracking\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "Reference ID    : 7F7F0101 (LOCAL)\n"
                                     "Stratum         : 10\n"
                                     "Ref time (UTC)  : "));
  ck_assert_ptr_nonnull(
      strstr(body, "System time     : 0.000000000 seconds fast of NTP time\n"
                   "Last offset     : +0.000000000 seconds\n"
                   "RMS offset      : 0.000000000 seconds\n"
                   "Frequency       : 0.000 ppm slow\n"
                   "Residual freq   : +0.000 ppm\n"
                   "Skew            : 0.000 ppm\n"
                   "Root delay      : 0.000000000 seconds\n"
                   "Root dispersion : 0.000000000 seconds\n"
                   "Update interval : 0.0 seconds\n"
                   "Leap status     : Normal\n"));
  body = ask(e.sock, "NTSCTL/1 tracking json\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "{\"reference_id\":\"7F7F0101\","
                                     "\"reference_name\":\"LOCAL\","
                                     "\"stratum\":10,"));

  /* Local clock mode: no sources, as chronyc shows for `local`. */
  body = ask(e.sock, "NTSCTL/1 sources\n", buf, sizeof(buf));
  ck_assert_str_eq(body, "MS Name/IP address         Stratum Poll Reach LastRx "
                         "Last sample               \n"
                         "================================================="
                         "==============================\n");
  body = ask(e.sock, "NTSCTL/1 sourcestats json\n", buf, sizeof(buf));
  ck_assert_str_eq(body, "{\"sourcestats\":[]}\n");

  body = ask(e.sock, "NTSCTL/1 metrics\n", buf, sizeof(buf));
  check_exposition(body);
  body = ask(e.sock, "NTSCTL/1 metrics json\n", buf, sizeof(buf));
  ck_assert(!strncmp(body, "{\"metrics\":[{\"name\":\"ntsd_build_info\"", 37));

  /* Errors. */
  ask_raw(e.sock, "NTSCTL/1 frobnicate\n", 20, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR unknown-command ", 29));
  ask_raw(e.sock, "NTSCTL/2 tracking\n", 18, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR version ", 21));
  ask_raw(e.sock, "GET / HTTP/1.0\n", 15, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR bad-request ", 25));
  ask_raw(e.sock, "NTSCTL/1 tracking xml\n", 22, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR bad-format ", 24));
  ask_raw(e.sock, "NTSCTL/1 clients\n", 17, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 OK ", 12));
  ask_raw(e.sock, "NTSCTL/1 health\0x\n", 18, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR bad-request ", 25));

  /* Oversized: closed without an answer. */
  memset(big, 'a', sizeof(big));
  n = ask_raw(e.sock, big, sizeof(big), buf, sizeof(buf));
  ck_assert_int_le(n, 0);
  ck_assert_str_eq(buf, "");

  body = ask(e.sock, "NTSCTL/1 serverstats json\n", buf, sizeof(buf));
  ck_assert_uint_eq(json_u64(body, "command_packets_dropped"), 1);
  env_end(&e);
  remove_dir(&e);
}
END_TEST

/* 1 if the server closed |fd| (EOF or reset) within |ms|. */
static int server_closed(int fd, int ms) {
  struct pollfd pfd = {fd, POLLIN, 0};
  char c;
  if (poll(&pfd, 1, ms) != 1)
    return 0;
  return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Idle clients, more than max_clients (16) on the socket and on /metrics,
 * keep out neither `ntsctl health` nor a scrape: the oldest idle ones are
 * closed to make room; the others time out after 2 s. */
START_TEST(idle_clients) {
  enum { N = 40, MAX = 16 };
  static char buf[65536], out[4096], err[4096];
  env e;
  int idle[N], tidle[N], i, closed = 0, tclosed = 0;
  const char *argv[5] = {NULL, "-s", NULL, "health", NULL};
  double t_first, t0, dt;
  char *body;

  start_service(&e);
  t_first = mono_now();
  for (i = 0; i < N; i++) {
    idle[i] = unix_connect(e.sock);
    ck_assert_int_ge(idle[i], 0);
    tidle[i] = tcp_connect(e.metrics_port);
    if (i % 8 == 7)
      usleep(20000); /* listen backlogs are 8 and 16 */
  }
  usleep(100000); /* let the loop accept them */

  t0 = mono_now();
  argv[2] = e.sock;
  ck_assert_int_eq(run_ntsctl(&e, argv, out, sizeof(out), err, sizeof(err)), 0);
  ck_assert_ptr_nonnull(strstr(out, ": OK, synchronised\n"));
  ck_assert_int_gt(
      http(e.metrics_port, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf)),
      0);
  ck_assert(!strncmp(buf, "HTTP/1.0 200 OK\r\n", 17));
  ck_assert_ptr_nonnull(strstr(buf, "\nntsd_stratum 10\n"));
  /* Kept out, they would have waited for the oldest idle client's 2 s
   * timeout, which began before t0: 1.9 s at least. */
  dt = mono_now() - t0;
  ck_assert_msg(dt < 1.5, "health and scrape took %.3f s", dt);

  for (i = 0; i < N; i++) {
    closed += server_closed(idle[i], 0);
    tclosed += server_closed(tidle[i], 0);
  }
  /* The oldest went first: N - MAX to make room for the last idle ones,
   * one more for each request (unless the 2 s timeout came first). */
  ck_assert(server_closed(idle[0], 0) && server_closed(tidle[0], 0));
  if (mono_now() - t_first < 1.5) {
    ck_assert_int_eq(closed, N - MAX + 1);
    ck_assert_int_eq(tclosed, N - MAX + 1);
    ck_assert(!server_closed(idle[N - 1], 0));
    ck_assert(!server_closed(tidle[N - 1], 0));
  }
  /* The rest time out. */
  for (i = 0; i < N; i++) {
    ck_assert(server_closed(idle[i], 5000));
    ck_assert(server_closed(tidle[i], 5000));
    close(idle[i]);
    close(tidle[i]);
  }
  body = ask(e.sock, "NTSCTL/1 serverstats json\n", buf, sizeof(buf));
  ck_assert_uint_eq(json_u64(body, "command_packets_dropped"), 2 * N);
  ck_assert_uint_eq(json_u64(body, "command_packets_received"), 3);
  env_end(&e);
  remove_dir(&e);
}
END_TEST

START_TEST(ntsctl_exit_codes) {
  static char out[65536], err[4096];
  env e;
  const char *argv[8];
  char missing[256];

  start_service(&e);
#define RUN(...)                                                               \
  ({                                                                           \
    const char *a_[] = {NULL, __VA_ARGS__, NULL};                              \
    memcpy(argv, a_, sizeof(a_));                                              \
    run_ntsctl(&e, argv, out, sizeof(out), err, sizeof(err));                  \
  })
  ck_assert_int_eq(RUN("-s", e.sock, "tracking"), 0);
  ck_assert_ptr_nonnull(strstr(out, "Reference ID    : 7F7F0101 (LOCAL)\n"));
  ck_assert_int_eq(RUN("--json", "serverstats", "--socket", e.sock), 0);
  ck_assert(out[0] == '{');
  ck_assert_ptr_nonnull(strstr(out, "\"ntp_packets_received\":"));
  ck_assert_int_eq(RUN("-s", e.sock, "health", "--synced"), 0);
  ck_assert_int_eq(RUN("-s", e.sock, "--json", "metrics"), 0);
  ck_assert(!strncmp(out, "{\"metrics\":[", 12));
  ck_assert_int_eq(RUN("-s", e.sock, "sources"), 0);
  ck_assert_int_eq(RUN("-s", e.sock, "sourcestats"), 0);
  ck_assert_int_eq(RUN("-s", e.sock, "clients"), 0);
  ck_assert_ptr_nonnull(strstr(out, "Hostname"));

  /* The default path: $STATE_DIR/ntsd.sock, unless CONTROL_SOCKET. */
  setenv("STATE_DIR", e.dir, 1);
  ck_assert_int_eq(RUN("health"), 0);
  ck_assert_ptr_nonnull(strstr(out, ": OK, synchronised\n"));
  setenv("CONTROL_SOCKET", "none", 1);
  ck_assert_int_eq(RUN("health"), 1);
  unsetenv("CONTROL_SOCKET");
  unsetenv("STATE_DIR");

  snprintf(missing, sizeof(missing), "%s/nothing.sock", e.dir);
  ck_assert_int_eq(RUN("-s", missing, "tracking"), 1);
  snprintf(out, sizeof(out),
           "ntsctl: cannot reach ntsd at %s: No such file or directory (is "
           "ntsd running? is STATE_DIR or CONTROL_SOCKET right?)\n",
           missing);
  ck_assert_str_eq(err, out);

  ck_assert_int_eq(RUN("bogus"), 2);
  ck_assert_int_eq(RUN("-s"), 2);
  ck_assert_int_eq(RUN("--frob", "tracking"), 2);
  ck_assert_int_eq(RUN("tracking", "--synced"), 2);
  ck_assert_int_eq(RUN("tracking", "sources"), 2);
  ck_assert_int_eq(RUN("--help"), 0);
  {
    const char *a_[] = {NULL, NULL};
    memcpy(argv, a_, sizeof(a_));
    ck_assert_int_eq(run_ntsctl(&e, argv, out, sizeof(out), err, sizeof(err)),
                     2);
  }
#undef RUN
  env_end(&e);
  remove_dir(&e);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The control server alone, with a provider of fixed data                   */
/* ------------------------------------------------------------------------ */

static void fake_stats(void *user, ntsntp_uv_service_stats *st) {
  (void)user;
  memset(st, 0, sizeof(*st));
  st->ntp.received = 7;
  st->ntp.dropped = 3;
  st->ntp.kods = 1;
  st->ntp.reasons[NTSNTP_REASON_RATELIMIT] = 2; /* 1 KoD, 1 drop */
  st->ntp.reasons[NTSNTP_REASON_DENIED] = 1;
  st->ntp.reasons[NTSNTP_REASON_BAD_COOKIE] = 1; /* dropped: "other" */
  st->ntp.reasons[NTSNTP_REASON_OK] = 3;
}

static void fake_tracking(void *user, ntsntp_ctl_tracking *t) {
  (void)user;
  memset(t, 0, sizeof(*t));
  t->ref_id = 0xA29FC801;
  snprintf(t->ref_name, sizeof(t->ref_name), "time.cloudflare.com");
  t->stratum = 4;
  t->ref_time_sec = 1663672423; /* Tue Sep 20 11:13:43 2022 */
  t->system_time = 0.002932649;
  t->last_offset = 0.000029569;
  t->rms_offset = 0.001531294;
  t->frequency_ppm = -0.329;
  t->residual_freq_ppm = 0.009;
  t->skew_ppm = 0.553;
  t->root_delay = 0.031447832;
  t->root_dispersion = 0.000492193;
  t->update_interval = 64.8;
  t->synchronised = 1;
}

static size_t fake_sources(void *user, ntsntp_ctl_source *out, size_t max) {
  (void)user;
  ck_assert_uint_ge(max, 2);
  memset(out, 0, 2 * sizeof(*out));
  snprintf(out[0].name, sizeof(out[0].name), "time.cloudflare.com");
  out[0].mode = '^';
  out[0].state = '*';
  out[0].stratum = 3;
  out[0].poll = 7;
  out[0].reach = 0377;
  out[0].last_rx = 34;
  out[0].offset = 18e-6;
  out[0].measured_offset = 24e-6;
  out[0].error = 16e-3;
  out[0].np = 20;
  out[0].nr = 10;
  out[0].span = 1106;
  out[0].frequency_ppm = 0.001;
  out[0].freq_skew_ppm = 0.195;
  out[0].est_offset = 121e-9;
  out[0].std_dev = 78e-6;
  out[0].select_state = '*';
  out[0].refid = 0xA29FC801;
  out[0].leap = NTSNTP_LEAP_NONE;
  out[0].delay = 0.0123;
  out[0].disp = 0.000456;
  out[0].have_detail = 1;
  {
    ntsntp_uv_upstream_source *d = &out[0].detail;
    snprintf(d->name, sizeof(d->name), "time.cloudflare.com");
    snprintf(d->addr, sizeof(d->addr), "162.159.200.1");
    d->port = 123;
    d->nts = 1;
    d->key_id = 2;
    d->aead = 15;
    d->key_len = 32;
    d->ke_ago = 1200;
    d->ke_tries = 0;
    d->ke_total = 3;
    d->naks = 1;
    d->cookies = 7;
    d->cookie_len = 100;
    d->tx = 40;
    d->rx = 39;
    d->valid_rx = 38;
    d->kernel_rx = 38;
    d->have_sample = 1;
    d->hdr.leap = NTSNTP_LEAP_NONE;
    d->hdr.version = 4;
    d->hdr.mode = 4;
    d->hdr.stratum = 3;
    d->hdr.poll = 7;
    d->hdr.precision = -25;
    d->hdr.root_delay = 0x00000800; /* 1/32 s */
    d->hdr.root_disp = 0x00000040;  /* 1/1024 s */
    d->hdr.refid = 0x0A150B0C;
    d->hdr.ref_ts = (uint64_t)(1663672423ull + NTSNTP_UNIX_OFFSET) << 32;
    d->offset = -24e-6;
    d->delay = 0.0123;
    d->response_time = 0.000011;
    d->authenticated = 1;
    d->rx_source = NTSNTP_TS_KERNEL;
    d->tx_source = NTSNTP_TS_DAEMON;
    d->last_rx_ago = 34;
  }
  snprintf(out[1].name, sizeof(out[1].name),
           "a-very-long-host-name.example.org\"");
  out[1].mode = '^';
  out[1].state = '?';
  out[1].select_state = 'M';
  out[1].leap = NTSNTP_LEAP_UNSYNC;
  out[1].last_rx = -1;
  out[1].have_detail = 1; /* plain NTP, name not resolved yet */
  snprintf(out[1].detail.name, sizeof(out[1].detail.name), "%s", out[1].name);
  out[1].detail.ke_ago = -1;
  out[1].detail.last_rx_ago = -1;
  return 2;
}

static size_t fake_clients(void *user, ntsntp_ctl_client *out, size_t max) {
  struct sockaddr_in *sin = (struct sockaddr_in *)&out[0].addr;
  (void)user;
  ck_assert_uint_ge(max, 1);
  memset(out, 0, sizeof(*out));
  sin->sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr);
  out[0].prefix_len = 32;
  out[0].hits = 390;
  out[0].drops = 2;
  out[0].kods = 1;
  out[0].last_ago = 5000;
  return 1;
}

static int fake_cert_expired; /* 1: expired; 2: last reload failed */

static void fake_cert(void *user, ntsntp_ctl_cert *out) {
  (void)user;
  memset(out, 0, sizeof(*out));
  out->loaded = 1;
  out->now = 1700000000;
  out->not_before = 1690000000;
  out->not_after = fake_cert_expired == 1 ? 1699999000 : 1705000000;
  out->last_reload_ok = fake_cert_expired != 2;
  out->last_reload = 1699990000;
  out->reload_failures = fake_cert_expired == 2;
  snprintf(out->subject, sizeof(out->subject), "CN=time.example.org");
}

static void fake_ratelimit(void *user, ntsntp_ctl_ratelimit *out) {
  (void)user;
  out->ntp_records = 5;
  out->ntp_capacity = 4096;
  out->ke_records = 2;
  out->ke_capacity = 1024;
}

static int fake_start(env *e) {
  ntsntp_uv_ctl_settings s;
  ntsntp_uv_ctl_settings_default(&s);
  s.socket_path = e->sock;
  s.metrics_listen = "127.0.0.1:0";
  s.provider.stats = fake_stats;
  s.provider.tracking = fake_tracking;
  s.provider.sources = fake_sources;
  s.provider.clients = fake_clients;
  s.provider.cert = fake_cert;
  s.provider.ratelimit = fake_ratelimit;
  int rv = ntsntp_uv_ctl_start(&e->loop, &s, &e->ctl, e->err, sizeof(e->err));
  if (rv == 0)
    e->metrics_port = ntsntp_uv_ctl_metrics_port(e->ctl);
  return rv;
}

static void fake_stop(env *e, void (*done)(void *), void *user) {
  ntsntp_uv_ctl_stop(e->ctl, done, user);
}

START_TEST(layouts) {
  static char buf[65536];
  env e;
  char *body;
  memset(&e, 0, sizeof(e));
  make_dir(&e);
  e.start = fake_start;
  e.stop = fake_stop;
  env_run(&e);

  /* chronyc's tracking from the seed, field for field. */
  body = ask(e.sock, "NTSCTL/1 tracking\n", buf, sizeof(buf));
  ck_assert_str_eq(body,
                   "Reference ID    : A29FC801 (time.cloudflare.com)\n"
                   "Stratum         : 4\n"
                   "Ref time (UTC)  : Tue Sep 20 11:13:43 2022\n"
                   "System time     : 0.002932649 seconds fast of NTP time\n"
                   "Last offset     : +0.000029569 seconds\n"
                   "RMS offset      : 0.001531294 seconds\n"
                   "Frequency       : 0.329 ppm slow\n"
                   "Residual freq   : +0.009 ppm\n"
                   "Skew            : 0.553 ppm\n"
                   "Root delay      : 0.031447832 seconds\n"
                   "Root dispersion : 0.000492193 seconds\n"
                   "Update interval : 64.8 seconds\n"
                   "Leap status     : Normal\n");
  body = ask(e.sock, "NTSCTL/1 sources\n", buf, sizeof(buf));
  ck_assert_str_eq(
      body,
      "MS Name/IP address         Stratum Poll Reach LastRx Last sample    "
      "           \n"
      "================================================================="
      "==============\n"
      "^* time.cloudflare.com           3   7   377    34    +18us[  +24us] "
      "+/-   16ms\n"
      "^? a-very-long-host-name.ex>     0   0     0     -     +0ns[   +0ns] "
      "+/-    0ns\n");
  body = ask(e.sock, "NTSCTL/1 sourcestats\n", buf, sizeof(buf));
  ck_assert_str_eq(
      body,
      "Name/IP Address            NP  NR  Span  Frequency  Freq Skew  Offset  "
      "Std Dev\n"
      "================================================================="
      "=============\n"
      "time.cloudflare.com        20  10  1106     +0.001      0.195   +121ns "
      "   78us\n"
      "a-very-long-host-name.ex>   0   0     0     +0.000      0.000     +0ns "
      "    0ns\n");
  body = ask(e.sock, "NTSCTL/1 sources json\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(
      strstr(body, "\"name\":\"a-very-long-host-name.example.org\\\"\""));
  ck_assert_ptr_nonnull(strstr(body, "\"reach\":255,\"last_rx\":34,"));
  body = ask(e.sock, "NTSCTL/1 clients\n", buf, sizeof(buf));
  ck_assert_str_eq(body,
                   "Hostname                      NTP   Drop Int IntL Last     "
                   "Cmd   Drop Int  Last\n"
                   "======================================================"
                   "=========================\n"
                   "192.0.2.7                     390      2    -    -  83m "
                   "      0      0    -    -\n");

  /* Drops by reason add up to the total. */
  body = ask(e.sock, "NTSCTL/1 serverstats json\n", buf, sizeof(buf));
  ck_assert_uint_eq(json_u64(body, "ratelimit"), 1);
  ck_assert_uint_eq(json_u64(body, "denied"), 1);
  ck_assert_uint_eq(json_u64(body, "other"), 1);

  body = ask(e.sock, "NTSCTL/1 metrics\n", buf, sizeof(buf));
  check_exposition(body);
  ck_assert_ptr_nonnull(strstr(body, "\nntsd_stratum 4\n"));
  ck_assert_ptr_nonnull(strstr(body, "\nntsd_sources 2\n"));

  /* HTTP. */
  ck_assert_int_gt(
      http(e.metrics_port, "GET /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf)),
      0);
  ck_assert(!strncmp(buf, "HTTP/1.0 200 OK\r\n", 17));
  body = strstr(buf, "\r\n\r\n");
  ck_assert_ptr_nonnull(body);
  check_exposition(body + 4);
  http(e.metrics_port, "HEAD /metrics HTTP/1.0\n\n", buf, sizeof(buf));
  ck_assert(!strncmp(buf, "HTTP/1.0 200 OK\r\n", 17));
  ck_assert_str_eq(strstr(buf, "\r\n\r\n"), "\r\n\r\n");
  http(e.metrics_port, "GET / HTTP/1.0\r\n\r\n", buf, sizeof(buf));
  ck_assert(!strncmp(buf, "HTTP/1.0 404 ", 13));
  http(e.metrics_port, "POST /metrics HTTP/1.0\r\n\r\n", buf, sizeof(buf));
  ck_assert(!strncmp(buf, "HTTP/1.0 405 ", 13));
  http(e.metrics_port, "hello\r\n\r\n", buf, sizeof(buf));
  ck_assert(!strncmp(buf, "HTTP/1.0 400 ", 13));
  {
    static char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    ck_assert_int_le(http(e.metrics_port, big, buf, sizeof(buf)), 0);
  }

  /* A second server on the same path refuses to start; the first one
   * keeps its socket. */
  {
    uv_loop_t l2;
    ntsntp_uv_ctl_settings s;
    ntsntp_uv_ctl *c2 = NULL;
    char err[512];
    uv_loop_init(&l2);
    ntsntp_uv_ctl_settings_default(&s);
    s.socket_path = e.sock;
    s.provider.stats = fake_stats;
    s.provider.tracking = fake_tracking;
    ck_assert_int_eq(ntsntp_uv_ctl_start(&l2, &s, &c2, err, sizeof(err)),
                     NTSNTP_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(err, "already answering"));
    uv_run(&l2, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&l2), 0);
    ask(e.sock, "NTSCTL/1 health\n", buf, sizeof(buf));
  }
  env_end(&e);
  ck_assert_int_ne(access(e.sock, F_OK), 0);
  remove_dir(&e);
}
END_TEST

/* chronyc's selectdata, authdata, ntpdata and activity, field for field;
 * their JSON; health failing on the certificate; the new metrics. */
START_TEST(chrony_reports) {
  static char buf[65536];
  env e;
  char *body;
  memset(&e, 0, sizeof(e));
  make_dir(&e);
  e.start = fake_start;
  e.stop = fake_stop;
  fake_cert_expired = 0;
  env_run(&e);

  body = ask(e.sock, "NTSCTL/1 selectdata\n", buf, sizeof(buf));
  ck_assert_str_eq(
      body,
      "S Name/IP Address        Auth COpts EOpts Last Score     Interval  "
      "Leap\n"
      "======================================================================="
      "\n"
      "* time.cloudflare.com       Y ----- -----   34     -   -16ms   +16ms"
      "  N\n"
      "M a-very-long-host-name.ex> N ----- -----    -     -    +0ns    +0ns"
      "  ?\n");
  body = ask(e.sock, "NTSCTL/1 authdata\n", buf, sizeof(buf));
  ck_assert_str_eq(
      body,
      "Name/IP address             Mode KeyID Type KLen Last Atmp  NAK Cook "
      "CLen\n"
      "========================================================================"
      "="
      "\n"
      "time.cloudflare.com          NTS     2   15  256  20m    0    1    7 "
      " 100\n"
      "a-very-long-host-name.exam>    -     0    0    0    -    0    0    0 "
      "   0\n");
  body = ask(e.sock, "NTSCTL/1 ntpdata\n", buf, sizeof(buf));
  ck_assert_str_eq(body,
                   "Remote address  : 162.159.200.1 (A29FC801)\n"
                   "Remote port     : 123\n"
                   "Leap status     : Normal\n"
                   "Version         : 4\n"
                   "Mode            : Server\n"
                   "Stratum         : 3\n"
                   "Poll interval   : 7 (128 seconds)\n"
                   "Precision       : -25 (0.000000030 seconds)\n"
                   "Root delay      : 0.031250 seconds\n"
                   "Root dispersion : 0.000977 seconds\n"
                   "Reference ID    : 0A150B0C ()\n"
                   "Reference time  : Tue Sep 20 11:13:43 2022\n"
                   "Offset          : +0.000024000 seconds\n"
                   "Peer delay      : 0.012300000 seconds\n"
                   "Peer dispersion : 0.000456000 seconds\n"
                   "Response time   : 0.000011000 seconds\n"
                   "Interleaved     : No\n"
                   "Authenticated   : Yes\n"
                   "TX timestamping : Daemon\n"
                   "RX timestamping : Kernel\n"
                   "Total TX        : 40\n"
                   "Total RX        : 39\n"
                   "Total valid RX  : 38\n"
                   "Total kernel RX : 38\n"
                   "\n"
                   "Remote address  : a-very-long-host-name.example.org\" "
                   "(00000000)\n"
                   "Remote port     : 0\n"
                   "Total TX        : 0\n"
                   "Total RX        : 0\n"
                   "Total valid RX  : 0\n"
                   "Total kernel RX : 0\n");
  body = ask(e.sock, "NTSCTL/1 activity\n", buf, sizeof(buf));
  ck_assert_str_eq(body, "200 OK\n"
                         "1 sources online\n"
                         "0 sources offline\n"
                         "0 sources doing burst (return to online)\n"
                         "0 sources doing burst (return to offline)\n"
                         "1 sources with unknown address\n");

  /* JSON: names escaped, numbers exact, unknowns null or -1. */
  body = ask(e.sock, "NTSCTL/1 authdata json\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(
      body, "{\"authdata\":[{\"name\":\"time.cloudflare.com\",\"mode\":\"NTS\","
            "\"key_id\":2,\"key_type\":15,\"key_length\":256,"
            "\"last_ke_ago\":1200,\"ke_attempts\":0,\"nak\":1,"
            "\"cookies\":7,\"cookie_length\":100}"));
  ck_assert_ptr_nonnull(strstr(body, "example.org\\\"\",\"mode\":\"-\""));
  body = ask(e.sock, "NTSCTL/1 selectdata json\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(
      strstr(body, "\"state\":\"*\",\"authentication\":true"));
  ck_assert_ptr_nonnull(strstr(body, "\"score\":null"));
  body = ask(e.sock, "NTSCTL/1 ntpdata json\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "\"remote_address\":\"162.159.200.1\""));
  ck_assert_ptr_nonnull(strstr(body, "\"have_response\":false,\"total_tx\":0"));
  ck_assert_ptr_nonnull(strstr(body, "\"rx_timestamping\":\"Kernel\""));
  body = ask(e.sock, "NTSCTL/1 activity json\n", buf, sizeof(buf));
  ck_assert_str_eq(body, "{\"online\":1,\"offline\":0,\"burst_online\":0,"
                         "\"burst_offline\":0,\"unresolved\":1}\n");

  /* Bad requests for the new commands. */
  ask_raw(e.sock, "NTSCTL/1 authdata xml\n", 22, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR bad-format ", 24));
  ask_raw(e.sock, "NTSCTL/1 ntpdata json x\n", 24, buf, sizeof(buf));
  ck_assert(!strncmp(buf, "NTSCTL/1 ERR bad-request ", 25));
  ask_raw(e.sock, "NTSCTL/1 selectdat\n", 19, buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(buf, "ERR unknown-command commands: tracking "
                                    "sources sourcestats selectdata authdata "
                                    "ntpdata activity"));

  /* Metrics: per-source series with the name escaped, the certificate,
   * the rate-limit tables, the histogram. */
  body = ask(e.sock, "NTSCTL/1 metrics\n", buf, sizeof(buf));
  check_exposition(body);
  ck_assert_ptr_nonnull(strstr(
      body, "\nntsd_source_offset_seconds{source=\"time.cloudflare.com\"} "
            "1.8e-05\n"));
  ck_assert_ptr_nonnull(
      strstr(body, "\nntsd_source_reach{source=\"a-very-long-host-name.example."
                   "org\\\"\"} 0\n"));
  ck_assert_ptr_nonnull(strstr(
      body, "\nntsd_source_selected{source=\"time.cloudflare.com\"} 1\n"));
  ck_assert_ptr_nonnull(strstr(
      body, "\nntsd_source_nts_cookies{source=\"time.cloudflare.com\"} 7\n"));
  ck_assert_ptr_nonnull(strstr(
      body,
      "\nntsd_source_nts_naks_total{source=\"time.cloudflare.com\"} 1\n"));
  ck_assert_ptr_null(strstr(body, "ntsd_source_nts_cookies{source=\"a-very"));
  ck_assert_ptr_nonnull(
      strstr(body, "\nntsd_nts_cert_not_after_seconds 1705000000.000000\n"));
  ck_assert_ptr_nonnull(
      strstr(body, "\nntsd_nts_cert_last_reload_success 1\n"));
  ck_assert_ptr_nonnull(strstr(body, "\nntsd_healthy 1\n"));
  ck_assert_ptr_nonnull(
      strstr(body, "\nntsd_ratelimit_clients{table=\"ntp\"} 5\n"));
  ck_assert_ptr_nonnull(
      strstr(body, "\nntsd_nts_ke_handshake_seconds_bucket{le=\"+Inf\"} 0\n"
                   "ntsd_nts_ke_handshake_seconds_sum 0\n"
                   "ntsd_nts_ke_handshake_seconds_count 0\n"));
  body = ask(e.sock, "NTSCTL/1 metrics json\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(
      body, "{\"name\":\"ntsd_source_reach\",\"type\":\"gauge\",\"labels\":{"
            "\"source\":\"a-very-long-host-name.example.org\\\"\"},"
            "\"value\":0}"));

  /* health: ok; fails while expired, and while the last reload failed. */
  body = ask(e.sock, "NTSCTL/1 health json\n", buf, sizeof(buf));
  ck_assert(!strncmp(body, "{\"status\":\"ok\",", 15));
  fake_cert_expired = 1;
  body = ask(e.sock, "NTSCTL/1 health\n", buf, sizeof(buf));
  {
    static const char want[] = "Status          : FAIL (the served "
                               "certificate expired 2023-11-14T21:56:40Z "
                               "(0 h 16 min ago); install a renewed one)\n"
                               "Synchronised    : Yes\n";
    ck_assert(!strncmp(body, want, sizeof(want) - 1));
  }
  body = ask(e.sock, "NTSCTL/1 health json\n", buf, sizeof(buf));
  ck_assert(!strncmp(body, "{\"status\":\"fail\",\"problem\":", 27));
  {
    const char *argv[] = {ntsctl_path, "-s", e.sock, "health", NULL};
    char out[512], err[512];
    ck_assert_int_eq(run_ntsctl(&e, argv, out, sizeof(out), err, sizeof(err)),
                     1);
    ck_assert_ptr_nonnull(
        strstr(out, ": FAIL, the served certificate expired"));
  }
  body = ask(e.sock, "NTSCTL/1 metrics\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(strstr(body, "\nntsd_healthy 0\n"));
  fake_cert_expired = 2;
  body = ask(e.sock, "NTSCTL/1 health\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(
      strstr(body, "FAIL (the last certificate reload failed)"));
  body = ask(e.sock, "NTSCTL/1 metrics\n", buf, sizeof(buf));
  ck_assert_ptr_nonnull(
      strstr(body, "\nntsd_nts_cert_last_reload_success 0\n"));
  fake_cert_expired = 0;
  env_end(&e);
  remove_dir(&e);
}
END_TEST

/* What ntsd logs and exports of its certificate: notAfter, subject, the
 * names; bad arguments refused. */
START_TEST(cert_info) {
  ntsntp_ke_creds *creds = NULL;
  ntsntp_ke_cert_info ci;
  char err[512];
  pki_setup();
  ck_assert_int_eq(
      ntsntp_ke_creds_load(&creds, expired_cert, expired_key, err, sizeof(err)),
      0);
  ck_assert_int_eq(ntsntp_ke_creds_cert_info(creds, 0, &ci), 0);
  ck_assert_str_eq(ci.subject, "CN=localhost");
  ck_assert_str_eq(ci.names, "localhost, 127.0.0.1");
  /* testpki.h: valid from two years ago to one year ago, to the second. */
  ck_assert_int_lt(ci.not_before, ci.not_after);
  ck_assert_int_eq(ci.not_after - ci.not_before, 365 * 86400L);
  ck_assert_int_lt(ci.not_after, (int64_t)time(NULL) - 364 * 86400L);
  ck_assert_int_eq(ntsntp_ke_creds_cert_info(creds, 1, &ci),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_ke_creds_cert_info(NULL, 0, &ci),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_ke_creds_cert_info(creds, 0, NULL),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_ke_creds_unref(creds);
  pki_teardown();
}
END_TEST

/* The text helpers: chronyc's units, JSON escaping and numbers, the size
 * cap. */
START_TEST(formatting) {
  ntsntp__sbuf b = {NULL, 0, 0, 0};
  size_t i;
  ntsntp__sb_interval(&b, -1);
  ntsntp__sb_interval(&b, 0);
  ntsntp__sb_interval(&b, 1199);
  ntsntp__sb_interval(&b, 1200);
  ntsntp__sb_interval(&b, 36000);
  ntsntp__sb_interval(&b, 345600);
  ntsntp__sb_interval(&b, 86400LL * 1000);
  ntsntp__sb_printf(&b, "|");
  ntsntp__sb_seconds(&b, 18e-6, 1);
  ntsntp__sb_seconds(&b, -9999.4e-9, 1);
  ntsntp__sb_seconds(&b, 0.5, 0);
  ntsntp__sb_seconds(&b, 12.25, 0);
  ntsntp__sb_seconds(&b, NAN, 1);
  ntsntp__sb_seconds(&b, INFINITY, 0);
  ntsntp__sb_printf(&b, "|");
  ntsntp__sb_json_str(&b, "a\"b\\c\n\x7f\xc3\xa9");
  ntsntp__sb_json_num(&b, NAN, 3);
  ntsntp__sb_json_num(&b, -INFINITY, 3);
  ntsntp__sb_json_num(&b, 1.5, 3);
  ck_assert_int_eq(b.err, 0);
  ck_assert_str_eq(b.p, "   -   01199 20m 10h  4d  2y|  +18us-9999ns 500ms"
                        " 12.2s    nan   nan|"
                        "\"a\\\"b\\\\c\\u000a\\u007f\\u00c3\\u00a9\"null"
                        "null1.500");
  ck_assert_str_eq(ntsntp__leap_name(NTSNTP_LEAP_UNSYNC), "Not synchronised");
  ck_assert_str_eq(ntsntp__leap_name(7), "Not synchronised");
  /* Past NTSNTP__CTL_MAX_REPORT: NOBUF, sticky, the text kept whole. */
  for (i = 0; i < NTSNTP__CTL_MAX_REPORT / 1000 + 2; i++)
    ntsntp__sb_printf(&b, "%1000s", "");
  ck_assert_int_eq(b.err, NTSNTP_ERR_NOBUF);
  i = b.len;
  ntsntp__sb_printf(&b, "x");
  ck_assert_uint_eq(b.len, i);
  ck_assert_uint_le(b.len, NTSNTP__CTL_MAX_REPORT);
  free(b.p);
}
END_TEST

/* A stale socket is replaced; a regular file in the way is not touched. */
START_TEST(stale_socket) {
  char dir[] = "/tmp/ntsctl-stale-XXXXXX", path[64], err[512];
  struct sockaddr_un sa = {0};
  ntsntp_uv_ctl_settings s;
  ntsntp_uv_ctl *c = NULL;
  uv_loop_t loop;
  struct stat st;
  int fd;

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/ntsd.sock", dir);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  close(fd); /* left behind, nobody listening */

  uv_loop_init(&loop);
  ntsntp_uv_ctl_settings_default(&s);
  s.socket_path = path;
  s.provider.stats = fake_stats;
  s.provider.tracking = fake_tracking;
  ck_assert_int_eq(ntsntp_uv_ctl_start(&loop, &s, &c, err, sizeof(err)), 0);
  ck_assert_int_eq(lstat(path, &st), 0);
  ck_assert_uint_eq(st.st_mode & 07777, 0660);
  ntsntp_uv_ctl_stop(c, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_ne(access(path, F_OK), 0);

  fd = open(path, O_WRONLY | O_CREAT, 0600);
  close(fd);
  ck_assert_int_eq(ntsntp_uv_ctl_start(&loop, &s, &c, err, sizeof(err)),
                   NTSNTP_ERR_STATE);
  ck_assert_ptr_nonnull(strstr(err, "is not a socket"));
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(access(path, F_OK), 0);
  unlink(path);

  s.metrics_listen = "localhost:9123";
  ck_assert_int_eq(ntsntp_uv_ctl_start(&loop, &s, &c, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(err, "METRICS_LISTEN"));
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_ne(access(path, F_OK), 0); /* nothing left bound */
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* Mode 0660 whatever the umask (set at bind, nothing by path afterwards);
 * the umask is the caller's again after start. */
START_TEST(socket_mode) {
  static const mode_t masks[] = {022, 077, 0, 0777};
  char dir[] = "/tmp/ntsctl-mode-XXXXXX", path[64], err[512];
  ntsntp_uv_ctl_settings s;
  ntsntp_uv_ctl *c = NULL;
  uv_loop_t loop;
  struct stat st;
  size_t i;

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/ntsd.sock", dir);
  uv_loop_init(&loop);
  ntsntp_uv_ctl_settings_default(&s);
  s.socket_path = path;
  s.provider.stats = fake_stats;
  s.provider.tracking = fake_tracking;
  for (i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
    umask(masks[i]);
    ck_assert_int_eq(ntsntp_uv_ctl_start(&loop, &s, &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(umask(022), masks[i]);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_msg((st.st_mode & 07777) == 0660, "umask %03o: mode %04o",
                  (unsigned)masks[i], (unsigned)(st.st_mode & 07777));
    ntsntp_uv_ctl_stop(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* A symbolic link swapped in for the new socket (by the user who owns the
 * directory) is never followed: its target keeps its mode, and stop leaves
 * the link alone. */
START_TEST(symlink_swap) {
  char dir[] = "/tmp/ntsctl-swap-XXXXXX", victim[64], moved[256], err[512];
  ntsntp_uv_ctl_settings s;
  ntsntp_uv_ctl *c = NULL;
  uv_loop_t loop;
  struct stat st;
  FILE *f;
  int rv;

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(swap_path, sizeof(swap_path), "%s/ntsd.sock", dir);
  snprintf(victim, sizeof(victim), "%s/victim", dir);
  snprintf(swap_target, sizeof(swap_target), "%s", victim);
  snprintf(moved, sizeof(moved), "%s.moved", swap_path);
  f = fopen(victim, "w");
  ck_assert_ptr_nonnull(f);
  fputs("keep", f);
  fclose(f);
  ck_assert_int_eq(chmod(victim, 0600), 0);

  uv_loop_init(&loop);
  ntsntp_uv_ctl_settings_default(&s);
  s.socket_path = swap_path;
  s.provider.stats = fake_stats;
  s.provider.tracking = fake_tracking;
  umask(077); /* the old code had to chmod after bind */
  swap_armed = 1;
  rv = ntsntp_uv_ctl_start(&loop, &s, &c, err, sizeof(err));
  umask(022);
  ck_assert_int_eq(swapped, 1);
  ck_assert_int_eq(lstat(victim, &st), 0);
  ck_assert_msg((st.st_mode & 07777) == 0600, "target's mode now %04o",
                (unsigned)(st.st_mode & 07777));
  ck_assert_int_eq(st.st_size, 4);
  ck_assert_uint_eq(st.st_uid, geteuid());
  if (rv == 0)
    ntsntp_uv_ctl_stop(c, NULL, NULL);
  else
    ck_assert_ptr_nonnull(strstr(err, swap_path));
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(lstat(swap_path, &st), 0); /* not ours: left alone */
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(lstat(victim, &st), 0);
  ck_assert_uint_eq(st.st_mode & 07777, 0600);
  unlink(swap_path);
  unlink(moved);
  unlink(victim);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(tracking_from_clock) {
  ntsntp_clock_state cs;
  ntsntp_ctl_tracking t;
  struct timespec ts = {1663672423, 500000000};
  ntsntp_clock_state_local(&cs, 10, ntsntp_ts_from_timespec(&ts));
  ntsntp_ctl_tracking_from_clock(&t, &cs);
  ck_assert_uint_eq(t.ref_id, 0x7F7F0101);
  ck_assert_str_eq(t.ref_name, "LOCAL");
  ck_assert_uint_eq(t.stratum, 10);
  ck_assert_int_eq(t.synchronised, 1);
  ck_assert_int_eq(t.ref_time_sec, 1663672423);
  ck_assert_uint_lt(t.ref_time_nsec - 500000000u + 10u, 20u);
  cs.refid = 0x47505300; /* "GPS" */
  cs.stratum = 1;
  ntsntp_ctl_tracking_from_clock(&t, &cs);
  ck_assert_str_eq(t.ref_name, "GPS");
  cs.refid = 0xC0000201;
  cs.stratum = 3;
  ntsntp_ctl_tracking_from_clock(&t, &cs);
  ck_assert_str_eq(t.ref_name, "192.0.2.1");
  cs.leap = NTSNTP_LEAP_UNSYNC;
  cs.stratum = 16;
  cs.refid = 0;
  ntsntp_ctl_tracking_from_clock(&t, &cs);
  ck_assert_str_eq(t.ref_name, "");
  ck_assert_int_eq(t.synchronised, 0);
}
END_TEST

int main(int argc, char **argv) {
  Suite *s = suite_create("control");
  TCase *tc = tcase_create("control");
  if (argc < 2) {
    fprintf(stderr, "usage: test_control PATH-TO-NTSCTL\n");
    return 2;
  }
  ntsctl_path = argv[1];
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, serverstats_exact);
  tcase_add_test(tc, protocol);
  tcase_add_test(tc, idle_clients);
  tcase_add_test(tc, ntsctl_exit_codes);
  tcase_add_test(tc, layouts);
  tcase_add_test(tc, chrony_reports);
  tcase_add_test(tc, formatting);
  tcase_add_test(tc, cert_info);
  tcase_add_test(tc, stale_socket);
  tcase_add_test(tc, socket_mode);
  tcase_add_test(tc, symlink_swap);
  tcase_add_test(tc, tracking_from_clock);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
