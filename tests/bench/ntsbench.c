/*
 * ntsbench: load generator for NTP/NTS/NTS-KE servers (ntsd, chronyd, any).
 *
 * Every response is validated with libntsntp's client (lib/client.c):
 * mode, version, origin timestamp and, for NTS, the Unique Identifier, the
 * authenticator and the cookie fields.  The generator is one thread; pin it
 * to a core of its own (taskset).  It measures the server from outside:
 * CPU from /proc/<pid>/stat (the process and its children, e.g. chronyd's
 * NTS-KE helper), socket drops from /proc/net/udp, and the load of both
 * cores from /proc/stat, so a run shows which side was the bottleneck.
 *
 *   ntsbench max   -p PORT [--nts -k KEPORT -c CA] --pid PID [options]
 *       binary search for the highest rate answered with 0 loss
 *   ntsbench fixed -p PORT [--nts ...] -r RATE [--timestamps] [options]
 *       one step at RATE: loss, latency (t4-t1) and served-time offset
 *   --xleave (max and fixed): interleaved mode (RFC 9769).  --sockets N
 *       clients (up to 4096), each with its own source address
 *       (127.64.0.1 and up, sent with IP_PKTINFO from one socket) and at
 *       most one request in flight; requests carry the client's previous
 *       exchange, t1 is the kernel's transmit timestamp (OPT_ID numbers
 *       them) and t4 its receive timestamp.  The offsets reported are
 *       those of the interleaved samples only (on loopback, the
 *       served-time error); xleave= is the fraction of valid responses
 *       that were interleaved.
 *   ntsbench ke    -k KEPORT -c CA --pid PID -n N --conc C
 *       N NTS-KE handshakes with C concurrent clients; server CPU each
 *   ntsbench core  -n N [--aead 15,30]
 *       the server core alone (prepare + finish in a loop), per AEAD
 *   ntsbench responder -p PORT
 *       a minimal batched plain-NTP responder (a ceiling for comparison)
 *
 * --aead LIST (or NTSBENCH_AEAD=LIST): AEAD ids, comma-separated.  NTS-KE
 * offers them in that order (the server picks; default 15); core mode
 * measures each (default 15).  30 (AES-128-GCM-SIV) needs nettle >= 3.9.
 *
 * Output: "step ..." and "result ..." lines of key=value pairs (parsed by
 * run-bench.sh) on stdout; diagnostics on stderr.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/errqueue.h>
#include <linux/net_tstamp.h>

#include "ntsntp/client.h"
#include "ntsntp/cookie.h"
#include "ntsntp/ke.h"
#include "ntsntp/server.h"
#include "ntsntp/ts.h"

#define BATCH 64          /* datagrams per sendmmsg/recvmmsg */
#define REQ_MAX 512       /* largest request we build */
#define RESP_MAX 1024     /* larger responses are invalid anyway */
#define NSLOT (1u << 17)  /* in-flight window; must exceed rate x latency */
#define MAX_SOCKS 256
#define MAX_XCLIENTS 4096 /* --xleave: clients (source addresses) */
#define XKEYS 8192        /* --xleave: transmit timestamps in flight */
#define MAX_SAMPLES (4u << 20)

/* ---- small helpers ---- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ntsbench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static int64_t now_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static uint64_t ts_to_ntp(const struct timespec *t) {
  return ntsntp_ts_from_timespec(t);
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void wr64(uint8_t *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

/* xoshiro256** for UIDs and nonces: the generator must be cheaper than the
 * servers it loads, and these need to be unique, not secret. */
static uint64_t rng_s[4];

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void) {
  uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
  rng_s[2] ^= rng_s[0];
  rng_s[3] ^= rng_s[1];
  rng_s[1] ^= rng_s[2];
  rng_s[0] ^= rng_s[3];
  rng_s[2] ^= t;
  rng_s[3] = rotl(rng_s[3], 45);
  return r;
}

static void rng_seed(void) {
  if (ntsntp_rand_default(NULL, (uint8_t *)rng_s, sizeof(rng_s)) != 0)
    die("no randomness");
}

/* The client builder asks for the transmit timestamp first; we hand it the
 * value that names the slot, and check afterwards that it was used. */
typedef struct rand_state {
  int have_tx;
  uint64_t tx;
} rand_state;

/* This process's CPU time (user + system) in |r|, seconds. */
static double ru_s(const struct rusage *r) {
  return (double)r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6 +
         (double)r->ru_stime.tv_sec + r->ru_stime.tv_usec / 1e6;
}

static void rng_fill(uint8_t *buf, size_t len) {
  size_t i;
  for (i = 0; i < len; i += 8) {
    uint64_t v = rng_next();
    memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
  }
}

static int bench_rand(void *user, uint8_t *buf, size_t len) {
  rand_state *rs = user;
  if (rs->have_tx && len == 8) {
    wr64(buf, rs->tx);
    rs->have_tx = 0;
    return 0;
  }
  rng_fill(buf, len);
  return 0;
}

/* ---- options ---- */

typedef struct opts {
  const char *mode;
  const char *server; /* IPv4 literal */
  const char *ke_name;
  const char *ca;
  int port, ke_port;
  int nts;
  int aeads[8]; /* --aead: NTS-KE offer / core mode list */
  int naeads;
  int pid;
  int sockets;
  int burst;       /* smallest burst the pacer sends */
  double rate;     /* fixed mode */
  double max_rate; /* search ceiling */
  double start_rate;
  int step_ms;
  int max_steps;
  double precision; /* stop bisecting at this relative gap */
  int timestamps;   /* kernel RX timestamps for t4 */
  int xleave;       /* interleaved mode: one client per socket */
  int n, conc;      /* ke mode */
  int sources;      /* clients mode: distinct source addresses */
  int srv_cpu, gen_cpu; /* cores, for /proc/stat */
  int verbose;
} opts;

static opts o = {
    .server = "127.0.0.1",
    .ke_name = "localhost",
    .sockets = 16,
    .burst = 8,
    .max_rate = 2e6,
    .start_rate = 50000,
    .step_ms = 2000,
    .max_steps = 9,
    .precision = 0.03,
    .n = 2000,
    .conc = 8,
    .sources = 65536,
    .srv_cpu = -1,
    .gen_cpu = -1,
};

static void usage(void) {
  fprintf(stderr,
          "usage: ntsbench max|fixed|ke|clients|core|responder [options]\n"
          "  -s ADDR        server IPv4 address (127.0.0.1)\n"
          "  -p PORT        NTP port\n"
          "  -k PORT        NTS-KE port\n"
          "  -c FILE        CA certificate (PEM) for NTS-KE\n"
          "  --name NAME    NTS-KE server name (localhost)\n"
          "  --nts          NTS-authenticated requests (keys from NTS-KE)\n"
          "  --aead LIST    AEAD ids, e.g. 15,30: NTS-KE offer, core mode runs\n"
          "                 (also NTSBENCH_AEAD; default 15)\n"
          "  --pid PID      server process (CPU, RSS); children included\n"
          "  --sockets N    client sockets / source ports (16)\n"
          "  --burst N      smallest burst sent at once (8; 1 for latency)\n"
          "  -r RATE        fixed mode: requests/s\n"
          "  --start R --max R   search: first rate and ceiling\n"
          "  --step-ms MS   length of one step (2000)\n"
          "  --steps N      at most N search steps (9)\n"
          "  --timestamps   kernel RX timestamps for t4 (fixed mode)\n"
          "  --xleave       interleaved mode, a client per socket (max, fixed)\n"
          "  -n N --conc C  ke mode: handshakes and concurrency\n"
          "  --sources N    clients mode: source addresses from 127.64.0.0 (65536)\n"
          "  -n N           core mode: requests per kind (default 2000, use more)\n"
          "  --srv-cpu N --gen-cpu N   cores, for their load in /proc/stat\n");
  exit(2);
}

/* "15,30" into o.aeads; every id must be supported by this build. */
static void parse_aeads(const char *v) {
  char *end;
  o.naeads = 0;
  for (;;) {
    long a = strtol(v, &end, 10);
    if (end == v || a <= 0 || a > 65535 || o.naeads == 8)
      usage();
    if (!ntsntp_aead_supported((int)a))
      die("AEAD %ld is not supported by this build%s", a,
          a == NTSNTP_AEAD_AES_128_GCM_SIV ? " (needs nettle >= 3.9)" : "");
    o.aeads[o.naeads++] = (int)a;
    if (*end == '\0')
      break;
    if (*end != ',')
      usage();
    v = end + 1;
  }
}

static void parse_opts(int argc, char **argv) {
  const char *env = getenv("NTSBENCH_AEAD");
  int i;
  if (argc < 2)
    usage();
  o.mode = argv[1];
  if (env && *env)
    parse_aeads(env);
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (v != NULL || (usage(), 0)) && ++i)
    if (ARG("-s"))
      o.server = v;
    else if (ARG("-p"))
      o.port = atoi(v);
    else if (ARG("-k"))
      o.ke_port = atoi(v);
    else if (ARG("-c"))
      o.ca = v;
    else if (ARG("--name"))
      o.ke_name = v;
    else if (strcmp(a, "--nts") == 0)
      o.nts = 1;
    else if (ARG("--aead"))
      parse_aeads(v);
    else if (ARG("--pid"))
      o.pid = atoi(v);
    else if (ARG("--sockets"))
      o.sockets = atoi(v);
    else if (ARG("--burst"))
      o.burst = atoi(v);
    else if (ARG("-r"))
      o.rate = atof(v);
    else if (ARG("--start"))
      o.start_rate = atof(v);
    else if (ARG("--max"))
      o.max_rate = atof(v);
    else if (ARG("--step-ms"))
      o.step_ms = atoi(v);
    else if (ARG("--steps"))
      o.max_steps = atoi(v);
    else if (ARG("--precision"))
      o.precision = atof(v);
    else if (strcmp(a, "--timestamps") == 0)
      o.timestamps = 1;
    else if (strcmp(a, "--xleave") == 0)
      o.xleave = o.timestamps = 1;
    else if (ARG("-n"))
      o.n = atoi(v);
    else if (ARG("--conc"))
      o.conc = atoi(v);
    else if (ARG("--sources"))
      o.sources = atoi(v);
    else if (ARG("--srv-cpu"))
      o.srv_cpu = atoi(v);
    else if (ARG("--gen-cpu"))
      o.gen_cpu = atoi(v);
    else if (strcmp(a, "-v") == 0)
      o.verbose = 1;
    else
      usage();
#undef ARG
  }
  if (o.sockets < 1 || o.sockets > (o.xleave ? MAX_XCLIENTS : MAX_SOCKS) ||
      o.burst < 1 ||
      o.burst > BATCH || o.sources < 1 || o.sources > (1 << 22))
    usage();
}

/* ---- measuring the server from outside ---- */

static int children[64];
static int n_children;

/* chronyd forks its NTS-KE helper(s): their CPU is the server's too. */
static void find_children(int pid) {
  char path[300], buf[512];
  struct dirent *de;
  DIR *d;
  n_children = 0;
  if (pid <= 0 || (d = opendir("/proc")) == NULL)
    return;
  while ((de = readdir(d)) != NULL && n_children < 64) {
    int cp = atoi(de->d_name), ppid = -1;
    FILE *f;
    if (cp <= 0 || cp == pid)
      continue;
    snprintf(path, sizeof(path), "/proc/%d/stat", cp);
    if ((f = fopen(path, "r")) == NULL)
      continue;
    if (fgets(buf, sizeof(buf), f)) {
      char *e = strrchr(buf, ')');
      if (e && sscanf(e + 2, "%*c %d", &ppid) == 1 && ppid == pid)
        children[n_children++] = cp;
    }
    fclose(f);
  }
  closedir(d);
}

/* utime + stime of one process (all its threads), in seconds. */
static double proc_cpu1(int pid) {
  char path[64], buf[1024];
  unsigned long ut = 0, st = 0;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  f = fopen(path, "r");
  if (f == NULL)
    return 0;
  if (fgets(buf, sizeof(buf), f)) {
    char *e = strrchr(buf, ')');
    if (e)
      sscanf(e + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st);
  }
  fclose(f);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double server_cpu(void) {
  double s;
  int i;
  if (o.pid <= 0)
    return 0;
  s = proc_cpu1(o.pid);
  for (i = 0; i < n_children; i++)
    s += proc_cpu1(children[i]);
  return s;
}

static long proc_status_kb(int pid, const char *field) {
  char path[64], line[256];
  size_t fl = strlen(field);
  long v = -1;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, field, fl) == 0 && line[fl] == ':')
      v = atol(line + fl + 1);
  fclose(f);
  return v;
}

/* Busy and total jiffies of one core. */
static void core_load(int cpu, unsigned long long *busy,
                      unsigned long long *total) {
  char line[512], name[16];
  FILE *f;
  *busy = *total = 0;
  if (cpu < 0)
    return;
  snprintf(name, sizeof(name), "cpu%d ", cpu);
  f = fopen("/proc/stat", "r");
  if (f == NULL)
    return;
  while (fgets(line, sizeof(line), f)) {
    unsigned long long v[10] = {0};
    if (strncmp(line, name, strlen(name)) != 0)
      continue;
    sscanf(line + strlen(name), "%llu %llu %llu %llu %llu %llu %llu %llu",
           &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    *busy = *total - v[3] - v[4]; /* minus idle and iowait */
  }
  fclose(f);
}

/* Drops counted on UDP sockets bound to |port| (the server's), and on all
 * other sockets bound to 127.0.0.1 ports in |ours| (the generator's). */
static uint16_t our_ports[MAX_SOCKS];
static int n_our_ports;

static void udp_drops(int port, unsigned long long *srv,
                      unsigned long long *gen) {
  char line[512];
  FILE *f = fopen("/proc/net/udp", "r");
  *srv = *gen = 0;
  if (f == NULL)
    return;
  while (fgets(line, sizeof(line), f)) {
    unsigned lport, i;
    unsigned long long drops;
    /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref ptr drops */
    if (sscanf(line, " %*[^:]: %*8x:%x %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
               &lport, &drops) != 2)
      continue;
    if ((int)lport == port)
      *srv += drops;
    for (i = 0; i < (unsigned)n_our_ports; i++)
      if (our_ports[i] == lport)
        *gen += drops;
  }
  fclose(f);
}

/* ---- NTS-KE client (blocking or in a poll loop) ---- */

typedef struct ke_conn {
  int fd;
  ntsntp_ke_client *c;
  uint8_t out[4096];
  size_t out_len, out_off;
  int64_t started;
} ke_conn;

/* The server's address (-s) with |port|. */
static void server_addr(struct sockaddr_in *sin, int port) {
  memset(sin, 0, sizeof(*sin));
  sin->sin_family = AF_INET;
  sin->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, o.server, &sin->sin_addr) != 1)
    die("bad address %s", o.server);
}

static int tcp_connect_nb(void) {
  struct sockaddr_in sin;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket: %s", strerror(errno));
  server_addr(&sin, o.ke_port);
  if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 &&
      errno != EINPROGRESS)
    die("connect to %s:%d: %s", o.server, o.ke_port, strerror(errno));
  return fd;
}

static void ke_start(ke_conn *k) {
  ntsntp_ke_client_settings s;
  int rv;
  ntsntp_ke_client_settings_default(&s);
  if (o.naeads) {
    memcpy(s.aeads, o.aeads, sizeof(o.aeads));
    s.naeads = (size_t)o.naeads;
  }
  s.server_name = o.ke_name;
  s.ca_file = o.ca;
  s.timeout_ms = 10000;
  memset(k, 0, sizeof(*k));
  k->started = now_ns(CLOCK_MONOTONIC);
  rv = ntsntp_ke_client_new(&k->c, &s, (uint64_t)(k->started / 1000000), NULL,
                            0);
  if (rv)
    die("NTS-KE client: %s", ntsntp_strerror(rv));
  k->fd = tcp_connect_nb();
}

/* Moves bytes both ways.  Returns 1 when finished (DONE or CLOSE), 0 to
 * wait; *events gets what to poll for. */
static int ke_step(ke_conn *k, short revents, short *events) {
  uint8_t buf[16384];
  unsigned want;
  ssize_t n;

  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    n = recv(k->fd, buf, sizeof(buf), 0);
    if (n >= 0)
      (void)ntsntp_ke_client_read(k->c, buf, (size_t)n);
    else if (errno != EAGAIN && errno != EINTR)
      (void)ntsntp_ke_client_read(k->c, buf, 0);
  }
  for (;;) {
    if (k->out_off == k->out_len) {
      ntsntp_ssize w = ntsntp_ke_client_write(k->c, k->out, sizeof(k->out));
      if (w <= 0)
        break;
      k->out_len = (size_t)w;
      k->out_off = 0;
    }
    n = send(k->fd, k->out + k->out_off, k->out_len - k->out_off,
             MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == ENOTCONN || errno == EINPROGRESS)
        break;
      (void)ntsntp_ke_client_read(k->c, buf, 0);
      k->out_off = k->out_len;
      break;
    }
    k->out_off += (size_t)n;
  }
  want = ntsntp_ke_client_want(k->c);
  if (want & NTSNTP_KE_DONE)
    return 1;
  if ((want & NTSNTP_KE_CLOSE) && k->out_off == k->out_len)
    return 1;
  *events = POLLIN;
  if (k->out_off < k->out_len)
    *events |= POLLOUT;
  return 0;
}

static void ke_end(ke_conn *k) {
  close(k->fd);
  ntsntp_ke_client_del(k->c);
  k->c = NULL;
  k->fd = -1;
}

/* The AEAD the last NTS-KE negotiated (printed with each step). */
static int ke_aead;

/* One handshake, blocking: keys and cookies for the NTS load. */
static void ke_once(ntsntp_ke_result *r) {
  ke_conn k;
  short ev = POLLOUT, rev = 0;
  int64_t deadline = now_ns(CLOCK_MONOTONIC) + 10000000000LL;
  int rv;
  ke_start(&k);
  while (!ke_step(&k, rev, &ev)) {
    struct pollfd p = {.fd = k.fd, .events = ev};
    if (now_ns(CLOCK_MONOTONIC) > deadline)
      die("NTS-KE with %s:%d timed out", o.server, o.ke_port);
    rev = poll(&p, 1, 100) > 0 ? p.revents : 0;
  }
  rv = ntsntp_ke_client_result(k.c, r);
  if (rv)
    die("NTS-KE with %s:%d failed: %s (%s)", o.server, o.ke_port,
        ntsntp_strerror(rv), ntsntp_ke_client_errtext(k.c));
  ke_end(&k);
  if (r->ncookies == 0)
    die("NTS-KE gave no cookies");
  ke_aead = r->aead;
  fprintf(stderr, "ntsbench: NTS-KE: AEAD %d, %zu cookies of %zu bytes\n",
          r->aead, r->ncookies, r->cookie_len[0]);
}

static int run_ke(void) {
  ke_conn *conns = calloc((size_t)o.conc, sizeof(*conns));
  struct pollfd *pf = calloc((size_t)o.conc, sizeof(*pf));
  int started = 0, done = 0, ok = 0, failed = 0, i;
  double c0, c1, w0, w1;
  struct rusage ru0, ru1;
  unsigned long long sb0, st0, sb1, st1;
  ntsntp_ke_result r;
  int64_t t0, t1;

  if (conns == NULL || pf == NULL || o.ke_port <= 0)
    usage();
  find_children(o.pid);
  core_load(o.srv_cpu, &sb0, &st0);
  getrusage(RUSAGE_SELF, &ru0);
  c0 = server_cpu();
  t0 = now_ns(CLOCK_MONOTONIC);
  for (i = 0; i < o.conc && started < o.n; i++, started++) {
    ke_start(&conns[i]);
    pf[i].fd = conns[i].fd;
    pf[i].events = POLLOUT;
  }
  for (; i < o.conc; i++)
    pf[i].fd = -1;
  while (done < started) {
    int n = poll(pf, (nfds_t)o.conc, 1000);
    if (n < 0 && errno != EINTR)
      die("poll: %s", strerror(errno));
    for (i = 0; i < o.conc; i++) {
      short ev = 0;
      int64_t now;
      if (pf[i].fd < 0)
        continue;
      now = now_ns(CLOCK_MONOTONIC);
      if (pf[i].revents == 0) {
        if (now - conns[i].started < 10000000000LL)
          continue;
        (void)ntsntp_ke_client_handle_expiry(conns[i].c,
                                             (uint64_t)(now / 1000000));
      } else if (!ke_step(&conns[i], pf[i].revents, &ev)) {
        pf[i].events = ev;
        continue;
      }
      if (ntsntp_ke_client_result(conns[i].c, &r) == 0)
        ok++;
      else {
        failed++;
        if (o.verbose || failed == 1)
          fprintf(stderr, "ntsbench: handshake failed: %s\n",
                  ntsntp_ke_client_errtext(conns[i].c));
      }
      ntsntp_ke_result_clear(&r);
      ke_end(&conns[i]);
      done++;
      pf[i].fd = -1;
      if (started < o.n) {
        ke_start(&conns[i]);
        started++;
        pf[i].fd = conns[i].fd;
        pf[i].events = POLLOUT;
      }
    }
  }
  t1 = now_ns(CLOCK_MONOTONIC);
  c1 = server_cpu();
  getrusage(RUSAGE_SELF, &ru1);
  core_load(o.srv_cpu, &sb1, &st1);
  w0 = ru_s(&ru0);
  w1 = ru_s(&ru1);
  {
    double wall = (double)(t1 - t0) / 1e9;
    printf("result mode=ke handshakes=%d failed=%d wall_s=%.3f rate=%.1f "
           "srv_cpu_s=%.3f srv_us_per_hs=%.1f gen_cpu=%.3f srv_core=%.3f "
           "rss_kb=%ld hwm_kb=%ld\n",
           ok, failed, wall, ok / wall, c1 - c0,
           ok ? (c1 - c0) / ok * 1e6 : 0.0, (w1 - w0) / wall,
           st1 > st0 ? (double)(sb1 - sb0) / (double)(st1 - st0) : -1.0,
           o.pid > 0 ? proc_status_kb(o.pid, "VmRSS") : -1,
           o.pid > 0 ? proc_status_kb(o.pid, "VmHWM") : -1);
  }
  fflush(stdout);
  free(conns);
  free(pf);
  return failed ? 1 : 0;
}

/* ---- UDP load ---- */

typedef struct slot {
  ntsntp_client_exchange ex;
  int64_t t1; /* CLOCK_REALTIME ns */
} slot;

/* Interleaved mode: one client per socket, one request in flight. */
typedef struct xclient {
  int busy;
  uint64_t seq; /* the request in flight */
  int64_t t1;   /* its send time, ns (kernel TX timestamp if any) */
  ntsntp_client_xleave xl;
} xclient;

typedef struct load {
  int fds[MAX_SOCKS];
  /* --xleave: the clients, and for each transmit timestamp number the
   * client and request it belongs to. */
  xclient xc[MAX_XCLIENTS];
  unsigned nxc, xnext;
  uint32_t xkey;
  struct {
    unsigned client;
    uint64_t seq;
  } xk[XKEYS];
  uint8_t *xspec[BATCH];
  union {
    struct cmsghdr align;
    uint8_t b[CMSG_SPACE(sizeof(struct in_pktinfo))];
  } xctl[BATCH];
  struct sockaddr_in xto;
  uint64_t n_xleave, n_kernel_t1;
  int nfd;
  int epfd;
  slot *slots;
  uint64_t seq;  /* next request number */
  uint64_t base; /* tx timestamp of request 0 (random) */
  /* NTS parameters */
  ntsntp_ke_result ke;
  unsigned cookie_rr;
  /* buffers */
  uint8_t req[BATCH][REQ_MAX];
  struct iovec tiov[BATCH];
  struct mmsghdr tmsg[BATCH];
  uint8_t resp[BATCH][RESP_MAX];
  struct iovec riov[BATCH];
  struct mmsghdr rmsg[BATCH];
  union {
    struct cmsghdr align;
    uint8_t b[CMSG_SPACE(3 * sizeof(struct timespec)) +
              CMSG_SPACE(sizeof(struct in_pktinfo)) + 64];
  } rctl[BATCH];
  ntsntp_client_sample sample;
  rand_state rs;
  /* per step */
  uint64_t sent, valid, invalid, stale, send_err, kod, nak;
  int collect;
  int64_t *lat;  /* ns */
  int64_t *off;  /* ns */
  int64_t *d_out, *d_back; /* t2 - t1 and t4 - t3, ns */
  size_t n_samples;
  int64_t sync_lo, sync_hi; /* causality violations t2<t1, t3>t4 */
} load;

/* 4 MiB socket buffers.  Root may exceed rmem_max: a generator that drops
 * responses would blame the server. */
static void big_buffers(int fd) {
  int buf = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
}

static void load_open(load *l) {
  struct sockaddr_in sin, me;
  socklen_t ml = sizeof(me);
  int i, one = 1;

  server_addr(&sin, o.port);
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  l->nfd = o.xleave ? 1 : o.sockets;
  for (i = 0; i < l->nfd; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      die("socket: %s", strerror(errno));
    big_buffers(fd);
    if (o.timestamps &&
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) != 0)
      die("SO_TIMESTAMPNS: %s", strerror(errno));
    if (o.xleave) {
      /* One unconnected socket for all clients: each request leaves from
       * its client's address (IP_PKTINFO), whose answers come back here;
       * servers keep interleaved state per address.  Kernel transmit
       * timestamps (numbered) for t1. */
      struct sockaddr_in any;
      int f = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE |
              SOF_TIMESTAMPING_OPT_TSONLY | SOF_TIMESTAMPING_OPT_ID;
      memset(&any, 0, sizeof(any));
      any.sin_family = AF_INET;
      if (bind(fd, (struct sockaddr *)&any, sizeof(any)) != 0)
        die("bind: %s", strerror(errno));
      if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &f, sizeof(f)) != 0)
        die("SO_TIMESTAMPING: %s", strerror(errno));
      if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) != 0)
        die("IP_PKTINFO: %s", strerror(errno));
      l->xto = sin;
      l->nxc = (unsigned)o.sockets;
    } else if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
      die("connect: %s", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
      our_ports[n_our_ports++] = ntohs(me.sin_port);
    l->fds[i] = fd;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
      die("epoll_ctl: %s", strerror(errno));
  }
  l->slots = calloc(NSLOT, sizeof(*l->slots));
  if (l->slots == NULL)
    die("out of memory");
  for (i = 0; i < BATCH; i++) {
    l->tiov[i].iov_base = l->req[i];
    l->tmsg[i].msg_hdr.msg_iov = &l->tiov[i];
    l->tmsg[i].msg_hdr.msg_iovlen = 1;
    if (o.xleave) {
      struct msghdr *mh = &l->tmsg[i].msg_hdr;
      struct cmsghdr *c;
      mh->msg_name = &l->xto;
      mh->msg_namelen = sizeof(l->xto);
      mh->msg_control = l->xctl[i].b;
      mh->msg_controllen = sizeof(l->xctl[i].b);
      c = CMSG_FIRSTHDR(mh);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
      l->xspec[i] = CMSG_DATA(c);
    }
    l->riov[i].iov_base = l->resp[i];
    l->riov[i].iov_len = RESP_MAX;
  }
  l->base = rng_next() & ~(uint64_t)0xffffffff;
  l->base |= 1; /* never 0 */
  l->rs.have_tx = 0;
}

static void build(load *l, unsigned k, uint64_t seq, int client) {
  ntsntp_client_params p;
  slot *s = &l->slots[seq & (NSLOT - 1)];
  ntsntp_ssize n;
  uint64_t tx = l->base + (seq << 1);

  memset(&p, 0, sizeof(p));
  p.rand = bench_rand;
  p.rand_user = &l->rs;
  if (o.nts) {
    unsigned c = l->cookie_rr++ % (unsigned)l->ke.ncookies;
    p.aead = l->ke.aead;
    p.c2s = l->ke.c2s;
    p.s2c = l->ke.s2c;
    p.cookie = l->ke.cookies[c];
    p.cookie_len = l->ke.cookie_len[c];
  }
  if (client >= 0)
    p.xleave = &l->xc[client].xl;
  l->rs.have_tx = 1;
  l->rs.tx = tx;
  n = ntsntp_client_request(&s->ex, &p, l->req[k], REQ_MAX);
  if (n < 0)
    die("building a request: %s", ntsntp_strerror((int)n));
  if (s->ex.tx_ts != tx && client < 0)
    die("client builder no longer takes the transmit timestamp first");
  l->tiov[k].iov_len = (size_t)n;
}

static void on_response(load *l, const uint8_t *buf, size_t len,
                        int64_t t4_ns, int sock) {
  uint64_t org, seq;
  slot *s;
  struct timespec t1s, t4s;
  xclient *xc = o.xleave ? &l->xc[sock] : NULL;
  int rv;

  if (len < 48) {
    l->invalid++;
    return;
  }
  org = rd64(buf + 24);
  seq = xc ? xc->seq : (org - l->base) >> 1;
  s = &l->slots[seq & (NSLOT - 1)];
  if (xc && !xc->busy) {
    l->stale++;
    return;
  }
  if (xc)
    s->t1 = xc->t1;
  if (!xc && s->ex.tx_ts != org) {
    /* Not outstanding: a duplicate, a response to a slot since reused, or
     * garbage.  Either way it does not count. */
    l->stale++;
    return;
  }
  t1s.tv_sec = s->t1 / 1000000000;
  t1s.tv_nsec = s->t1 % 1000000000;
  t4s.tv_sec = t4_ns / 1000000000;
  t4s.tv_nsec = t4_ns % 1000000000;
  rv = ntsntp_client_response(&s->ex, buf, len, ts_to_ntp(&t1s),
                              ts_to_ntp(&t4s), &l->sample);
  if (xc && rv == NTSNTP_ERR_MALFORMED) {
    l->stale++; /* not the answer to the request in flight */
    return;
  }
  if (xc) {
    xc->busy = 0;
    if (rv == 0)
      ntsntp_client_xleave_update(&xc->xl, &l->sample, ts_to_ntp(&t1s),
                                  ts_to_ntp(&t4s));
  }
  if (rv == 0 && (!o.nts || l->sample.authenticated) &&
      l->sample.hdr.leap != NTSNTP_LEAP_UNSYNC &&
      ntsntp_ts_diff(l->sample.t3, l->sample.t2) >= 0 &&
      (!o.nts || l->sample.n_cookies >= 1)) {
    l->valid++;
    l->n_xleave += l->sample.interleaved;
    /* Interleaved mode: the offsets are those of interleaved samples. */
    if (l->collect && l->n_samples < MAX_SAMPLES &&
        (!xc || l->sample.interleaved)) {
      l->lat[l->n_samples] = t4_ns - s->t1;
      l->off[l->n_samples] = (int64_t)llround(l->sample.offset * 1e9);
      l->d_out[l->n_samples] =
          (int64_t)llround(ntsntp_ts_diff(l->sample.t2, l->sample.t1) * 1e9);
      l->d_back[l->n_samples] =
          (int64_t)llround(ntsntp_ts_diff(l->sample.t4, l->sample.t3) * 1e9);
      l->n_samples++;
      if (ntsntp_ts_diff(l->sample.t2, l->sample.t1) < 0)
        l->sync_lo++;
      if (ntsntp_ts_diff(l->sample.t4, l->sample.t3) < 0)
        l->sync_hi++;
    }
  } else {
    if (rv == NTSNTP_ERR_KOD)
      l->kod++;
    else if (rv == NTSNTP_ERR_NAK)
      l->nak++;
    l->invalid++;
    if (o.verbose && l->invalid < 5)
      fprintf(stderr, "ntsbench: invalid response: %s\n",
              rv ? ntsntp_strerror(rv) : "unsynchronised/unauthenticated");
  }
}

/* Drains socket |i|.  Returns the datagrams read. */
static unsigned recv_sock(load *l, int i) {
  unsigned total = 0;
  for (;;) {
    int r, k;
    int64_t now = 0;
    for (k = 0; k < BATCH; k++) {
      struct msghdr *mh = &l->rmsg[k].msg_hdr;
      mh->msg_name = NULL;
      mh->msg_namelen = 0;
      mh->msg_iov = &l->riov[k];
      mh->msg_iovlen = 1;
      mh->msg_control = o.timestamps ? l->rctl[k].b : NULL;
      mh->msg_controllen = o.timestamps ? sizeof(l->rctl[k].b) : 0;
      mh->msg_flags = 0;
    }
    r = recvmmsg(l->fds[i], l->rmsg, BATCH, MSG_DONTWAIT, NULL);
    if (r <= 0) {
      if (r < 0 && errno == ECONNREFUSED)
        continue; /* ICMP from a moment the server was not there */
      return total;
    }
    if (!o.timestamps)
      now = now_ns(CLOCK_REALTIME);
    for (k = 0; k < r; k++) {
      int64_t t4 = now;
      int client = i;
      if (o.timestamps) {
        struct msghdr *mh = &l->rmsg[k].msg_hdr;
        struct cmsghdr *c;
        t4 = 0;
        for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            t4 = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
          } else if (c->cmsg_level == SOL_SOCKET &&
                     c->cmsg_type == SCM_TIMESTAMPING) {
            struct timespec ts[3];
            memcpy(ts, CMSG_DATA(c), sizeof(ts));
            t4 = (int64_t)ts[0].tv_sec * 1000000000 + ts[0].tv_nsec;
          } else if (c->cmsg_level == IPPROTO_IP &&
                     c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            client = (int)(ntohl(pi.ipi_addr.s_addr) - 0x7f400001u);
          }
        if (t4 == 0)
          t4 = now_ns(CLOCK_REALTIME);
      }
      if (o.xleave && (client < 0 || (unsigned)client >= l->nxc)) {
        l->stale++; /* not to one of our clients */
        continue;
      }
      on_response(l, l->resp[k], l->rmsg[k].msg_len, t4, client);
    }
    total += (unsigned)r;
    if (r < BATCH)
      return total;
  }
}

static unsigned poll_recv(load *l, int64_t timeout_ns) {
  struct epoll_event ev[MAX_SOCKS];
  struct timespec ts;
  unsigned total = 0;
  int n, i;
  if (timeout_ns < 0)
    timeout_ns = 0;
  ts.tv_sec = timeout_ns / 1000000000;
  ts.tv_nsec = timeout_ns % 1000000000;
  n = epoll_pwait2(l->epfd, ev, MAX_SOCKS, &ts, NULL);
  for (i = 0; i < n; i++)
    total += recv_sock(l, (int)ev[i].data.u32);
  return total;
}

/* Reads the transmit timestamps the kernel queued for our requests: each
 * one's number (OPT_ID) gives its client; one taken after the clock read
 * before the send replaces t1. */
static void xleave_stamps(load *l) {
  enum { N = 64 };
  static union {
    struct cmsghdr align;
    uint8_t b[256];
  } cb[N];
  static uint8_t data[N][64];
  struct iovec iov[N];
  struct mmsghdr mm[N];
  int r, i;
  for (;;) {
    memset(mm, 0, sizeof(mm));
    for (i = 0; i < N; i++) {
      iov[i].iov_base = data[i];
      iov[i].iov_len = sizeof(data[i]);
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
      mm[i].msg_hdr.msg_control = cb[i].b;
      mm[i].msg_hdr.msg_controllen = sizeof(cb[i].b);
    }
    r = recvmmsg(l->fds[0], mm, N, MSG_ERRQUEUE | MSG_DONTWAIT, NULL);
    if (r <= 0)
      return;
    for (i = 0; i < r; i++) {
      struct msghdr *mh = &mm[i].msg_hdr;
      struct cmsghdr *c;
      int64_t t = 0;
      uint32_t key = 0;
      int have_key = 0;
      for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
          struct timespec ts[3];
          memcpy(ts, CMSG_DATA(c), sizeof(ts));
          t = (int64_t)ts[0].tv_sec * 1000000000 + ts[0].tv_nsec;
        } else if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) {
          struct sock_extended_err ee;
          memcpy(&ee, CMSG_DATA(c), sizeof(ee));
          if (ee.ee_origin == SO_EE_ORIGIN_TIMESTAMPING) {
            key = ee.ee_data;
            have_key = 1;
          }
        }
      }
      if (t != 0 && have_key) {
        xclient *xc = &l->xc[l->xk[key % XKEYS].client];
        if (xc->busy && xc->seq == l->xk[key % XKEYS].seq && t >= xc->t1 &&
            t - xc->t1 < 1000000000) {
          xc->t1 = t;
          l->n_kernel_t1++;
        }
      }
    }
    if (r < N)
      return;
  }
}

/* Interleaved mode: |count| requests, each from the next idle client, in
 * one sendmmsg.  A request no client is idle for is counted as a send
 * error (the generator then reports itself as the limit: add clients). */
static void send_xleave(load *l, unsigned count) {
  int64_t now = now_ns(CLOCK_REALTIME), t1;
  unsigned k, n = 0, tries, cl[BATCH];
  int r;
  if (count > BATCH)
    count = BATCH;
  for (k = 0; k < count; k++) {
    unsigned c = 0;
    int found = 0;
    for (tries = 0; tries < l->nxc; tries++) {
      c = l->xnext;
      l->xnext = (l->xnext + 1) % l->nxc;
      /* A request unanswered for 200 ms is lost (and counted so). */
      if (l->xc[c].busy && now - l->xc[c].t1 > 200000000)
        l->xc[c].busy = 0;
      if (!l->xc[c].busy) {
        found = 1;
        break;
      }
    }
    if (!found) {
      l->send_err++;
      continue;
    }
    {
      struct in_pktinfo pi;
      memset(&pi, 0, sizeof(pi));
      pi.ipi_spec_dst.s_addr = htonl(0x7f400001u + c);
      memcpy(l->xspec[n], &pi, sizeof(pi));
    }
    build(l, n, l->seq + n, (int)c);
    l->xc[c].busy = 1; /* not picked twice in this burst */
    cl[n++] = c;
  }
  t1 = now_ns(CLOCK_REALTIME);
  for (k = 0; k < n; k++) {
    xclient *xc = &l->xc[cl[k]];
    xc->seq = l->seq + k;
    xc->t1 = t1;
    l->slots[(l->seq + k) & (NSLOT - 1)].t1 = t1;
  }
  k = 0;
  while (k < n) {
    r = sendmmsg(l->fds[0], l->tmsg + k, n - k, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      /* Unsent: their clients are idle again; the numbering may have
       * moved (kernels differ), so it starts again from 0. */
      int f = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE |
              SOF_TIMESTAMPING_OPT_TSONLY;
      for (; k < n; k++) {
        l->xc[cl[k]].busy = 0;
        l->slots[(l->seq + k) & (NSLOT - 1)].ex.tx_ts = 0;
        l->send_err++;
      }
      xleave_stamps(l);
      (void)setsockopt(l->fds[0], SOL_SOCKET, SO_TIMESTAMPING, &f, sizeof(f));
      f |= SOF_TIMESTAMPING_OPT_ID;
      (void)setsockopt(l->fds[0], SOL_SOCKET, SO_TIMESTAMPING, &f, sizeof(f));
      l->xkey = 0;
      break;
    }
    for (; r > 0; r--, k++) {
      l->xk[l->xkey % XKEYS].client = cl[k];
      l->xk[l->xkey % XKEYS].seq = l->seq + k;
      l->xkey++;
      l->sent++;
    }
  }
  l->seq += n;
  xleave_stamps(l);
}

/* Sends |count| requests on the next socket. */
static void send_burst(load *l, unsigned count, unsigned sock) {
  unsigned k, off = 0;
  int64_t t1;
  if (o.xleave) {
    send_xleave(l, count);
    return;
  }
  for (k = 0; k < count; k++)
    build(l, k, l->seq + k, -1);
  if (o.burst == 1) {
    /* Latency mode: one send per request, each with its own t1, so that a
     * catch-up burst does not bias the offsets of its later requests. */
    for (k = 0; k < count; k++) {
      slot *s = &l->slots[(l->seq + k) & (NSLOT - 1)];
      s->t1 = now_ns(CLOCK_REALTIME);
      if (sendmsg(l->fds[sock], &l->tmsg[k].msg_hdr, 0) < 0) {
        s->ex.tx_ts = 0;
        l->send_err++;
      } else {
        off++;
      }
    }
    l->sent += off;
    l->seq += count;
    return;
  }
  t1 = now_ns(CLOCK_REALTIME);
  for (k = 0; k < count; k++)
    l->slots[(l->seq + k) & (NSLOT - 1)].t1 = t1;
  while (off < count) {
    int r = sendmmsg(l->fds[sock], l->tmsg + off, count - off, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      /* Unsent requests are not counted; their slots are abandoned. */
      for (k = off; k < count; k++)
        l->slots[(l->seq + k) & (NSLOT - 1)].ex.tx_ts = 0;
      l->send_err += count - off;
      break;
    }
    off += (unsigned)r;
  }
  l->sent += off;
  l->seq += count;
}

typedef struct step_res {
  double offered, achieved, wall;
  uint64_t sent, valid, invalid, stale, send_err, kod, nak;
  double srv_cpu_s, gen_cpu, srv_core, gen_core;
  unsigned long long srv_drops, gen_drops;
  int gen_limited;
  double lat_p50, lat_p99, lat_max, off_p1, off_p50, off_p99;
  double out_p1, out_p50, out_p99, back_p1, back_p50, back_p99;
  uint64_t sync_lo, sync_hi;
  double xleave, kernel_t1;
} step_res;

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(const int64_t *v, size_t n, double p) {
  size_t i;
  if (n == 0)
    return NAN;
  i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return (double)v[i] / 1000.0; /* us */
}

static void run_step(load *l, double rate, int ms, int collect,
                     step_res *res) {
  int64_t start, end, now, drain_end;
  uint64_t sent0 = l->sent;
  unsigned long long sb0, st0, sb1, st1, gb0, gt0, gb1, gt1, sd0, gd0, sd1,
      gd1;
  struct rusage ru0, ru1;
  double c0, c1;
  unsigned sock = 0;

  memset(res, 0, sizeof(*res));
  l->sent = l->valid = l->invalid = l->stale = l->send_err = 0;
  l->kod = l->nak = 0;
  l->collect = collect;
  l->n_samples = 0;
  l->sync_lo = l->sync_hi = 0;
  l->n_xleave = l->n_kernel_t1 = 0;
  (void)sent0;

  udp_drops(o.port, &sd0, &gd0);
  core_load(o.srv_cpu, &sb0, &st0);
  core_load(o.gen_cpu, &gb0, &gt0);
  c0 = server_cpu();
  getrusage(RUSAGE_SELF, &ru0);
  start = now_ns(CLOCK_MONOTONIC);
  end = start + (int64_t)ms * 1000000;
  for (;;) {
    int64_t due;
    now = now_ns(CLOCK_MONOTONIC);
    if (now >= end)
      break;
    due = (int64_t)((double)(now - start) * rate / 1e9) -
          (int64_t)(l->sent + l->send_err);
    if (due >= o.burst) {
      unsigned b = due > BATCH ? BATCH : (unsigned)due;
      send_burst(l, b, sock);
      sock = (sock + 1) % (unsigned)l->nfd;
      /* Behind schedule: read what is there without waiting, then send
       * again. */
      poll_recv(l, 0);
    } else {
      /* Sleep until the next burst is due, unless responses arrive. */
      int64_t next = start + (int64_t)((double)(l->sent + l->send_err +
                                                (uint64_t)o.burst) *
                                       1e9 / rate);
      if (next > end)
        next = end;
      poll_recv(l, next - now);
    }
  }
  getrusage(RUSAGE_SELF, &ru1);
  c1 = server_cpu();
  core_load(o.srv_cpu, &sb1, &st1);
  core_load(o.gen_cpu, &gb1, &gt1);
  /* Drain: everything answered within 200 ms counts. */
  drain_end = now_ns(CLOCK_MONOTONIC) + 200000000;
  while (l->valid + l->invalid < l->sent &&
         (now = now_ns(CLOCK_MONOTONIC)) < drain_end)
    poll_recv(l, drain_end - now);
  udp_drops(o.port, &sd1, &gd1);

  res->offered = rate;
  res->wall = (double)(end - start) / 1e9;
  res->sent = l->sent;
  res->valid = l->valid;
  res->invalid = l->invalid;
  res->stale = l->stale;
  res->send_err = l->send_err;
  res->kod = l->kod;
  res->nak = l->nak;
  res->achieved = (double)l->sent / res->wall;
  res->srv_cpu_s = c1 - c0;
  res->gen_cpu = (ru_s(&ru1) - ru_s(&ru0)) / res->wall;
  res->srv_core = st1 > st0 ? (double)(sb1 - sb0) / (double)(st1 - st0) : -1;
  res->gen_core = gt1 > gt0 ? (double)(gb1 - gb0) / (double)(gt1 - gt0) : -1;
  res->srv_drops = sd1 - sd0;
  res->gen_drops = gd1 - gd0;
  /* The generator could not offer the rate, or dropped responses itself:
   * the result is then a bound on the generator, not the server. */
  res->gen_limited = res->achieved < 0.98 * rate || res->gen_drops > 0;
  res->xleave = l->valid ? (double)l->n_xleave / (double)l->valid : 0;
  res->kernel_t1 = l->sent ? (double)l->n_kernel_t1 / (double)l->sent : 0;
  res->sync_lo = (uint64_t)l->sync_lo;
  res->sync_hi = (uint64_t)l->sync_hi;
  if (collect && l->n_samples > 0) {
    qsort(l->lat, l->n_samples, sizeof(int64_t), cmp64);
    qsort(l->off, l->n_samples, sizeof(int64_t), cmp64);
    res->lat_p50 = pct(l->lat, l->n_samples, 50);
    res->lat_p99 = pct(l->lat, l->n_samples, 99);
    res->lat_max = pct(l->lat, l->n_samples, 100);
    res->off_p1 = pct(l->off, l->n_samples, 1);
    res->off_p50 = pct(l->off, l->n_samples, 50);
    res->off_p99 = pct(l->off, l->n_samples, 99);
    qsort(l->d_out, l->n_samples, sizeof(int64_t), cmp64);
    qsort(l->d_back, l->n_samples, sizeof(int64_t), cmp64);
    res->out_p1 = pct(l->d_out, l->n_samples, 1);
    res->out_p50 = pct(l->d_out, l->n_samples, 50);
    res->out_p99 = pct(l->d_out, l->n_samples, 99);
    res->back_p1 = pct(l->d_back, l->n_samples, 1);
    res->back_p50 = pct(l->d_back, l->n_samples, 50);
    res->back_p99 = pct(l->d_back, l->n_samples, 99);
  }
}

static void print_step(const char *tag, const step_res *r) {
  uint64_t lost = r->sent > r->valid ? r->sent - r->valid : 0;
  printf("%s mode=%s", tag, o.nts ? "nts" : "ntp");
  if (o.nts)
    printf(" aead=%d", ke_aead);
  printf(" offered=%.0f sent=%" PRIu64 " valid=%" PRIu64 " lost=%" PRIu64
         " invalid=%" PRIu64 " stale=%" PRIu64 " kod=%" PRIu64 " nak=%" PRIu64
         " send_err=%" PRIu64
         " achieved=%.0f resp_rate=%.0f srv_cpu_s=%.3f srv_us_per_resp=%.3f "
         "gen_cpu=%.3f srv_core=%.3f gen_core=%.3f srv_drops=%llu "
         "gen_drops=%llu gen_limited=%d",
         r->offered, r->sent, r->valid, lost, r->invalid, r->stale, r->kod,
         r->nak, r->send_err, r->achieved, (double)r->valid / r->wall,
         r->srv_cpu_s, r->valid ? r->srv_cpu_s / (double)r->valid * 1e6 : 0.0,
         r->gen_cpu, r->srv_core, r->gen_core, r->srv_drops, r->gen_drops,
         r->gen_limited);
  if (!isnan(r->lat_p50) && r->lat_p50 != 0)
    printf(" lat_p50_us=%.1f lat_p99_us=%.1f lat_max_us=%.1f off_p1_us=%.2f "
           "off_p50_us=%.2f off_p99_us=%.2f causality_t2=%" PRIu64
           " causality_t4=%" PRIu64,
           r->lat_p50, r->lat_p99, r->lat_max, r->off_p1, r->off_p50,
           r->off_p99, r->sync_lo, r->sync_hi);
  if (!isnan(r->lat_p50) && r->lat_p50 != 0)
    printf(" out_p1_us=%.2f out_p50_us=%.2f out_p99_us=%.2f back_p1_us=%.2f "
           "back_p50_us=%.2f back_p99_us=%.2f",
           r->out_p1, r->out_p50, r->out_p99, r->back_p1, r->back_p50,
           r->back_p99);
  if (o.xleave)
    printf(" xleave=%.3f kernel_t1=%.3f", r->xleave, r->kernel_t1);
  if (o.pid > 0)
    printf(" rss_kb=%ld hwm_kb=%ld", proc_status_kb(o.pid, "VmRSS"),
           proc_status_kb(o.pid, "VmHWM"));
  printf("\n");
  fflush(stdout);
}

static void load_init(load *l) {
  memset(l, 0, sizeof(*l));
  if (o.port <= 0)
    usage();
  if (o.nts) {
    if (o.ke_port <= 0)
      usage();
    ke_once(&l->ke);
  }
  load_open(l);
  find_children(o.pid);
}

/* One short warm-up so that both sides' caches, socket buffers and (for
 * chronyd) client records exist before anything is measured. */
static void warm_up(load *l, double rate) {
  step_res r;
  int ms = 300;
  /* Interleaved mode: every client's first two exchanges are basic; give
   * each of them three before anything is measured. */
  if (o.xleave && rate > 0) {
    ms += (int)(3000.0 * l->nxc / rate);
    if (ms > 5000)
      ms = 5000;
  }
  run_step(l, rate, ms, 0, &r);
  if (r.valid == 0)
    die("no valid response from %s:%d (%s; sent %" PRIu64 ", invalid %" PRIu64
        ")",
        o.server, o.port, o.nts ? "NTS" : "NTP", r.sent, r.invalid);
}

static int run_fixed(void) {
  static load l;
  step_res r;
  load_init(&l);
  if (o.rate <= 0)
    usage();
  l.lat = malloc(MAX_SAMPLES * sizeof(int64_t));
  l.off = malloc(MAX_SAMPLES * sizeof(int64_t));
  l.d_out = malloc(MAX_SAMPLES * sizeof(int64_t));
  l.d_back = malloc(MAX_SAMPLES * sizeof(int64_t));
  if (l.lat == NULL || l.off == NULL || l.d_out == NULL || l.d_back == NULL)
    die("out of memory");
  warm_up(&l, o.rate < 20000 ? o.rate : 20000);
  run_step(&l, o.rate, o.step_ms, 1, &r);
  print_step("result", &r);
  return 0;
}

static int step_ok(const step_res *r) {
  /* Interleaved mode: also interleaved (the first two exchanges of a
   * client are basic; a server that falls back to basic mode fails). */
  return r->sent > 0 && r->valid == r->sent && r->invalid == 0 &&
         (!o.xleave || r->xleave >= 0.9);
}

static int run_max(void) {
  static load l;
  step_res r, best;
  double lo = 0, hi = 0, rate = o.start_rate;
  int steps, gen_limited = 0;

  load_init(&l);
  memset(&best, 0, sizeof(best));
  warm_up(&l, o.start_rate / 2);
  for (steps = 0; steps < o.max_steps; steps++) {
    run_step(&l, rate, o.step_ms, 0, &r);
    print_step("step", &r);
    if (!step_ok(&r) && !r.gen_limited && r.valid > 0 &&
        (double)(r.sent - r.valid) < 0.001 * (double)r.sent) {
      /* A few losses may be a hiccup of the machine (other load, the
       * hypervisor) rather than the server's limit: one more try, the
       * same for every server. */
      usleep(100000);
      run_step(&l, rate, o.step_ms, 0, &r);
      print_step("retry", &r);
    }
    if (r.gen_limited) {
      /* The generator could not offer this rate, so the step says nothing
       * about the server: search below it, where the generator keeps up. */
      gen_limited = 1;
      if (step_ok(&r) && r.achieved > lo) {
        lo = r.achieved;
        best = r;
      }
      hi = rate;
    } else if (step_ok(&r)) {
      lo = rate;
      best = r;
    } else {
      hi = rate;
    }
    if (hi == 0)
      rate = rate * 1.6 > o.max_rate ? o.max_rate : rate * 1.6;
    else if ((hi - lo) / hi < o.precision)
      break;
    else
      rate = lo > 0 ? (lo + hi) / 2 : hi / 2;
    if (hi == 0 && lo >= o.max_rate)
      break;
    /* Let queues empty between steps. */
    usleep(100000);
  }
  print_step("best", &best);
  printf("result mode=%s max_rate=%.0f fail_rate=%.0f steps=%d "
         "gen_limited=%d srv_us_per_resp=%.3f gen_cpu=%.3f srv_core=%.3f "
         "gen_core=%.3f",
         o.nts ? "nts" : "ntp", lo, hi, steps, gen_limited,
         best.valid ? best.srv_cpu_s / (double)best.valid * 1e6 : 0.0,
         best.gen_cpu, best.srv_core, best.gen_core);
  if (o.xleave)
    printf(" xleave=%.3f", best.xleave);
  if (o.pid > 0)
    printf(" rss_kb=%ld hwm_kb=%ld", proc_status_kb(o.pid, "VmRSS"),
           proc_status_kb(o.pid, "VmHWM"));
  printf("\n");
  fflush(stdout);
  return 0;
}

/* ---- many clients: fill the server's client table ---- */

/*
 * Plain requests at -r per second for --step-ms, round-robin from --sources
 * addresses 127.64.0.0 and up (all of 127.0.0.0/8 is local, so one socket
 * bound to the wildcard address sends from each with IP_PKTINFO and gets
 * the answers).  With rate limiting on, a server keeps state per address:
 * this measures its memory with the client table at its bound.  Answers
 * are counted (mode 4, origin one of ours), not required: a limited
 * address may get none.
 */
static int run_clients(void) {
  enum { B = 32 };
  static uint8_t req[B][48], resp[B][RESP_MAX];
  static struct sockaddr_in from[B];
  static union {
    struct cmsghdr h;
    uint8_t b[CMSG_SPACE(sizeof(struct in_pktinfo))];
  } cb[B];
  static struct iovec tiov[B], riov[B];
  static struct mmsghdr tm[B], rm[B];
  static uint8_t *spec[B]; /* each request's in_pktinfo */
  struct sockaddr_in to, any;
  uint64_t sent = 0, answered = 0, kod = 0, foreign = 0, send_err = 0;
  uint64_t base = rng_next() & ~(uint64_t)0xffffffff;
  int64_t t0, end, next;
  double cpu0, cpu1, gap_ns = 1e9 / (o.rate > 0 ? o.rate : 1) * B;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int k;
  uint32_t src = 0;

  if (fd < 0)
    die("socket: %s", strerror(errno));
  big_buffers(fd);
  memset(&any, 0, sizeof(any));
  any.sin_family = AF_INET;
  if (bind(fd, (struct sockaddr *)&any, sizeof(any)) != 0)
    die("bind: %s", strerror(errno));
  server_addr(&to, o.port);
  for (k = 0; k < B; k++) {
    struct in_pktinfo pi;
    struct cmsghdr *c;
    tiov[k].iov_base = req[k];
    tiov[k].iov_len = 48;
    tm[k].msg_hdr.msg_name = &to;
    tm[k].msg_hdr.msg_namelen = sizeof(to);
    tm[k].msg_hdr.msg_iov = &tiov[k];
    tm[k].msg_hdr.msg_iovlen = 1;
    tm[k].msg_hdr.msg_control = cb[k].b;
    tm[k].msg_hdr.msg_controllen = sizeof(cb[k].b);
    c = CMSG_FIRSTHDR(&tm[k].msg_hdr);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(pi));
    spec[k] = CMSG_DATA(c);
    riov[k].iov_base = resp[k];
    riov[k].iov_len = RESP_MAX;
  }
  if (o.pid > 0)
    find_children(o.pid);
  cpu0 = server_cpu();
  t0 = now_ns(CLOCK_MONOTONIC);
  end = t0 + (int64_t)o.step_ms * 1000000;
  next = t0;
  for (;;) {
    int64_t now = now_ns(CLOCK_MONOTONIC);
    int n;
    if (now >= next && now < end) {
      for (k = 0; k < B; k++) {
        struct in_pktinfo pi;
        uint64_t tx = base | ((sent + (uint64_t)k) & 0xffffffff);
        memset(req[k], 0, 48);
        req[k][0] = 0x23; /* NTPv4, client */
        wr64(req[k] + 40, tx);
        memset(&pi, 0, sizeof(pi));
        pi.ipi_spec_dst.s_addr = htonl(0x7f400000u + src);
        memcpy(spec[k], &pi, sizeof(pi));
        src = (src + 1) % (uint32_t)o.sources;
      }
      n = sendmmsg(fd, tm, B, 0);
      if (n < 0) {
        send_err += B;
        n = 0;
      }
      send_err += (uint64_t)(B - n);
      sent += (uint64_t)n;
      next += (int64_t)gap_ns;
    }
    for (k = 0; k < B; k++) {
      rm[k].msg_hdr.msg_name = &from[k];
      rm[k].msg_hdr.msg_namelen = sizeof(from[k]);
      rm[k].msg_hdr.msg_iov = &riov[k];
      rm[k].msg_hdr.msg_iovlen = 1;
      rm[k].msg_hdr.msg_control = NULL;
      rm[k].msg_hdr.msg_controllen = 0;
    }
    n = recvmmsg(fd, rm, B, MSG_DONTWAIT, NULL);
    for (k = 0; k < n; k++) {
      const uint8_t *r = resp[k];
      if (rm[k].msg_len < 48 || (r[0] & 7) != 4 ||
          (rd64(r + 24) & ~(uint64_t)0xffffffff) != base)
        foreign++;
      else if (r[1] == 0)
        kod++;
      else
        answered++;
    }
    if (n <= 0) {
      if (now >= end + 200000000)
        break;
      if (now >= end || now < next)
        usleep(50);
    }
  }
  cpu1 = server_cpu();
  printf("result mode=clients sources=%d offered=%.0f sent=%llu answered=%llu "
         "kod=%llu invalid=%llu send_err=%llu srv_cpu_s=%.3f",
         o.sources, o.rate, (unsigned long long)sent,
         (unsigned long long)answered, (unsigned long long)kod,
         (unsigned long long)foreign, (unsigned long long)send_err,
         cpu1 - cpu0);
  if (o.pid > 0)
    printf(" rss_kb=%ld hwm_kb=%ld", proc_status_kb(o.pid, "VmRSS"),
           proc_status_kb(o.pid, "VmHWM"));
  printf("\n");
  fflush(stdout);
  close(fd);
  return 0;
}

/* ---- the server core alone: CPU per request without the kernel ---- */

/*
 * ntsntp_server_prepare + ntsntp_server_finish in a loop on one request:
 * plain, then NTS with one cookie for each AEAD of --aead (default 15,
 * AES-SIV-CMAC-256), with a fresh key ring: the user-space cost of a
 * response, which the CPU per response of a running server adds to the
 * kernel's.  Pin it (taskset) for stable figures.
 */
static void core_loop(ntsntp_server *srv, const char *kind, int aead,
                      const uint8_t *req, size_t rl, uint64_t rx) {
  static ntsntp_server_ctx ctx;
  uint8_t out[REQ_MAX];
  int64_t t0 = now_ns(CLOCK_MONOTONIC), t1;
  struct rusage ru0, ru1;
  int ok = 0, i;
  getrusage(RUSAGE_SELF, &ru0);
  for (i = 0; i < o.n; i++) {
    ntsntp_server_prepare(srv, req, rl, rx, &ctx);
    ok += ntsntp_server_finish(srv, &ctx, rx + 1000, out, sizeof(out)) > 0;
  }
  t1 = now_ns(CLOCK_MONOTONIC);
  getrusage(RUSAGE_SELF, &ru1);
  if (ok != o.n)
    die("%s: %d of %d requests answered", kind, ok, o.n);
  printf("result mode=core kind=%s", kind);
  if (aead)
    printf(" aead=%d", aead);
  printf(" n=%d bytes=%zu ns_per_req=%.1f cpu_ns_per_req=%.1f\n", o.n, rl,
         (double)(t1 - t0) / o.n, (ru_s(&ru1) - ru_s(&ru0)) * 1e9 / o.n);
  fflush(stdout);
}

static int run_core(void) {
  ntsntp_keyring *kr;
  ntsntp_server *srv;
  ntsntp_keyring_settings ks;
  ntsntp_server_settings ss;
  ntsntp_clock_state cs;
  ntsntp_client_params p;
  ntsntp_client_exchange ex;
  uint8_t c2s[64], s2c[64], cookie[NTSNTP_COOKIE_MAX_LEN], req[REQ_MAX];
  const uint64_t rx = 0xeeb21591e8270af9ULL;
  ntsntp_ssize len;
  int a;

  if (o.naeads == 0) {
    o.aeads[0] = NTSNTP_AEAD_AES_SIV_CMAC_256;
    o.naeads = 1;
  }
  ntsntp_keyring_settings_default(&ks);
  ntsntp_server_settings_default(&ss);
  if (ntsntp_keyring_new(&kr, &ks, (int64_t)time(NULL), NULL, 0) != 0)
    die("key ring");
  ss.keyring = kr;
  if (ntsntp_server_new(&srv, &ss, NULL, 0) != 0)
    die("server");
  ntsntp_clock_state_local(&cs, 1, rx - (1ULL << 32));
  ntsntp_server_set_clock(srv, &cs);
  rng_fill(c2s, sizeof(c2s));
  rng_fill(s2c, sizeof(s2c));
  memset(&p, 0, sizeof(p));
  p.poll = 6;
  if (ntsntp_client_request(&ex, &p, req, sizeof(req)) != NTSNTP_PKT_HDR_LEN)
    die("request");
  core_loop(srv, "plain", 0, req, NTSNTP_PKT_HDR_LEN, rx);
  for (a = 0; a < o.naeads; a++) {
    memset(&p, 0, sizeof(p));
    p.poll = 6;
    p.aead = o.aeads[a];
    p.c2s = c2s;
    p.s2c = s2c;
    p.cookie = cookie;
    p.cookie_len = ntsntp_cookie_len(p.aead);
    if (ntsntp_cookie_seal(kr, p.aead, c2s, s2c, cookie, sizeof(cookie)) !=
        (ntsntp_ssize)p.cookie_len)
      die("cookie");
    len = ntsntp_client_request(&ex, &p, req, sizeof(req));
    if (len < 0)
      die("request");
    core_loop(srv, "nts", p.aead, req, (size_t)len, rx);
  }
  ntsntp_server_del(srv);
  ntsntp_keyring_del(kr);
  return 0;
}

/* ---- minimal responder: the ceiling a plain-NTP server can reach ---- */

static volatile sig_atomic_t stop_flag;
static void on_sig(int s) {
  (void)s;
  stop_flag = 1;
}

static int run_responder(void) {
  static uint8_t buf[BATCH][RESP_MAX];
  static struct sockaddr_in peers[BATCH];
  static struct iovec iov[BATCH];
  static struct mmsghdr m[BATCH];
  struct sockaddr_in sin;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1,
      b = 4 << 20, k;
  /* Diagnostic knob (docs/performance.md, "where the offset tail came
   * from"): datagrams per recvmmsg.  1 answers each request on its own;
   * more answers a batch with one sendmmsg, and the later responses of a
   * batch carry timestamps read before the earlier ones were sent. */
  const char *vl = getenv("NTSBENCH_RESP_BATCH");
  unsigned vlen = vl && atoi(vl) >= 1 && atoi(vl) <= BATCH ? (unsigned)atoi(vl)
                                                           : BATCH;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)o.port);
  inet_pton(AF_INET, o.server, &sin.sin_addr);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &b, sizeof(b));
  if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
    die("bind: %s", strerror(errno));
  {
    /* No SA_RESTART: the blocking recvmmsg must return on SIGTERM. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
  }
  while (!stop_flag) {
    int n;
    for (k = 0; k < BATCH; k++) {
      iov[k].iov_base = buf[k];
      iov[k].iov_len = RESP_MAX;
      m[k].msg_hdr.msg_name = &peers[k];
      m[k].msg_hdr.msg_namelen = sizeof(peers[k]);
      m[k].msg_hdr.msg_iov = &iov[k];
      m[k].msg_hdr.msg_iovlen = 1;
      m[k].msg_hdr.msg_control = NULL;
      m[k].msg_hdr.msg_controllen = 0;
    }
    n = recvmmsg(fd, m, vlen, MSG_WAITFORONE, NULL);
    if (n <= 0)
      continue;
    for (k = 0; k < n; k++) {
      struct timespec t;
      uint8_t *p = buf[k];
      clock_gettime(CLOCK_REALTIME, &t);
      uint64_t now = ntsntp_ts_from_timespec(&t);
      memcpy(p + 24, p + 40, 8);           /* origin = client transmit */
      p[0] = (uint8_t)((p[0] & 0x38) | 4); /* leap 0, version kept, mode 4 */
      p[1] = 1;
      p[3] = (uint8_t)-20;
      memset(p + 4, 0, 8);
      memcpy(p + 12, "LOCL", 4);
      wr64(p + 16, now);
      wr64(p + 32, now);
      wr64(p + 40, now);
      iov[k].iov_len = 48;
    }
    sendmmsg(fd, m, (unsigned)n, 0);
  }
  return 0;
}

int main(int argc, char **argv) {
  parse_opts(argc, argv);
  /* Sleep precisely: the pacer's bursts are tens of microseconds apart. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  rng_seed();
  if (strcmp(o.mode, "max") == 0)
    return run_max();
  if (strcmp(o.mode, "fixed") == 0)
    return run_fixed();
  if (strcmp(o.mode, "ke") == 0)
    return run_ke();
  if (strcmp(o.mode, "clients") == 0)
    return run_clients();
  if (strcmp(o.mode, "core") == 0)
    return run_core();
  if (strcmp(o.mode, "responder") == 0)
    return run_responder();
  usage();
}
