/*
 * ntsflood: floods an NTS-KE server with idle or slow TCP connections from
 * many loopback source addresses while a legitimate client measures its
 * full NTS-KE latency (tests/integration/ntsd_keflood.sh drives it).
 * Loopback only: every flooding socket is bound to an address in
 * 127.16.0.0/12 before it connects to 127.0.0.1.
 *
 *   ntsflood [options] KEPORT CA
 *     -m held|reopen  held: connect once and never send (default);
 *                     reopen: connect again the moment the server closes
 *     -s              slow: each connection sends one byte of a TLS
 *                     ClientHello per second instead of nothing
 *     -n N            flooding source addresses (default 600; at most
 *                     4096 /24s of them)
 *     -c C            connections per address (default 1)
 *     -g G            addresses per /24, 1..250 (default 1: each address in
 *                     a /24 of its own, the worst case for per-network caps)
 *     -w SECONDS      flood time before the first probe (default 1.5)
 *     -o N            probe as soon as N flooding connections are open
 *                     (at most -w seconds after the start)
 *     -p P            legitimate NTS-KE probes (default 5), one after the
 *                     other, -i MS apart (default 300)
 *     -t SECONDS      per probe: retry failed attempts until this much time
 *                     has passed since the first one (default 10)
 *     -l SECONDS      pass only if every probe took less (default: no bound)
 *
 * The legitimate client is the library's own (ntsntp_uv_ke_query, from
 * 127.0.0.1 to "localhost", certificate checked against CA).  A probe's
 * latency runs from the start of its first attempt to the end of its first
 * successful one; failed attempts are retried after 20 ms, as a client
 * that retries at once would.
 *
 * Prints one line per probe, then
 *   "flood: connects=A server_closes=B connect_errors=C open=D"
 *   "latency: probes=P ok=K p50=X max=Y attempts=Z"
 * Exit status: 0 if every probe succeeded (within -l), 1 otherwise, 2 for
 * a usage or setup error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/uv_client.h"

#define MAX_PROBES 64

typedef struct slot {
  int fd;
  int state; /* S_* */
  unsigned sent;  /* slow mode: ClientHello bytes sent */
  double retry_at; /* S_WAIT: when to connect again */
  struct sockaddr_in src;
} slot;

enum { S_CLOSED, S_CONNECTING, S_OPEN, S_WAIT };

typedef struct flood {
  slot *slots;
  unsigned n;
  int ep, reopen, slow;
  uint16_t port;
  double next_tick; /* slow mode: next byte */
  uint64_t connects, closes, errors;
} flood;

typedef struct probes {
  uint16_t port;
  const char *ca;
  unsigned count, gap_ms;
  double budget, lat[MAX_PROBES];
  unsigned attempts[MAX_PROBES];
  int ok[MAX_PROBES];
  atomic_int done;
} probes;

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

/* ---- the flood ---- */

static void slot_close(slot *s) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  s->state = S_CLOSED;
}

/* A non-blocking connect from the slot's address to 127.0.0.1. */
static void slot_open(flood *f, slot *s) {
  struct sockaddr_in dst;
  struct epoll_event ev;
  int one = 1;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  s->sent = 0;
  if (s->fd < 0)
    goto fail;
  /* Each address has a port space of its own; closing first (the server
   * closes) leaves no TIME_WAIT here, but allow reuse anyway. */
  setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(s->fd, (const struct sockaddr *)&s->src, sizeof(s->src)) < 0)
    goto fail;
  memset(&dst, 0, sizeof(dst));
  dst.sin_family = AF_INET;
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  dst.sin_port = htons(f->port);
  if (connect(s->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
      errno != EINPROGRESS)
    goto fail;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ev.data.ptr = s;
  if (epoll_ctl(f->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
    goto fail;
  s->state = S_CONNECTING;
  return;
fail:
  f->errors++;
  slot_close(s);
  s->state = S_WAIT;
  s->retry_at = mono() + 0.05;
}

/* The server closed (or reset) the connection, or it never came up. */
static void slot_lost(flood *f, slot *s, int was_open) {
  if (was_open)
    f->closes++;
  else
    f->errors++;
  slot_close(s);
  if (f->reopen) {
    if (was_open)
      slot_open(f, s);
    else {
      s->state = S_WAIT;
      s->retry_at = mono() + 0.02;
    }
  }
}

static void slot_event(flood *f, slot *s, uint32_t events) {
  uint8_t buf[4096];
  ssize_t r;
  if (s->state == S_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof(err);
    struct epoll_event ev;
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
      return;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      slot_lost(f, s, 0);
      return;
    }
    f->connects++;
    s->state = S_OPEN;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = s;
    epoll_ctl(f->ep, EPOLL_CTL_MOD, s->fd, &ev);
    events &= ~(uint32_t)EPOLLOUT;
    if (!events)
      return;
  }
  if (s->state != S_OPEN)
    return;
  while ((r = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
    ;
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
      (events & (EPOLLHUP | EPOLLERR)))
    slot_lost(f, s, 1);
}

/* Slow mode: one more byte of a TLS 1.3 ClientHello record on each open
 * connection (the record never completes within any sane deadline). */
static void slow_tick(flood *f) {
  static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01,
                                  0x00, 0x01, 0xfc, 0x03, 0x03};
  unsigned i;
  for (i = 0; i < f->n; i++) {
    slot *s = &f->slots[i];
    uint8_t b;
    if (s->state != S_OPEN)
      continue;
    b = s->sent < sizeof(hello) ? hello[s->sent] : (uint8_t)rand();
    if (send(s->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
      s->sent++;
  }
}

static unsigned open_count(const flood *f) {
  unsigned i, n = 0;
  for (i = 0; i < f->n; i++)
    n += f->slots[i].state == S_OPEN;
  return n;
}

/* Runs the flood until |p| says the probes are done or, with |p| NULL,
 * until |until| (monotonic seconds) or until |want_open| connections are
 * open (0: no such condition). */
static void flood_run(flood *f, const probes *p, double until,
                      unsigned want_open) {
  struct epoll_event evs[256];
  while (p ? !atomic_load(&p->done)
           : mono() < until && !(want_open && open_count(f) >= want_open)) {
    int n = epoll_wait(f->ep, evs, 256, 10), k;
    double now;
    unsigned i;
    for (k = 0; k < n; k++)
      slot_event(f, evs[k].data.ptr, evs[k].events);
    now = mono();
    for (i = 0; i < f->n; i++)
      if (f->slots[i].state == S_WAIT && now >= f->slots[i].retry_at)
        slot_open(f, &f->slots[i]);
    if (f->slow && now >= f->next_tick) {
      slow_tick(f);
      f->next_tick = now + 1.0;
    }
  }
}

/* ---- the legitimate client ---- */

typedef struct attempt {
  int done, status;
  char err[256];
} attempt;

static void on_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  attempt *a = user;
  a->done = 1;
  a->status = o->status;
  snprintf(a->err, sizeof(a->err), "%s", o->errtext ? o->errtext : "");
}

static int ke_once(uint16_t port, const char *ca, attempt *a) {
  uv_loop_t loop;
  ntsntp_uv_ke_query_settings s;
  int rv;
  memset(a, 0, sizeof(*a));
  uv_loop_init(&loop);
  ntsntp_uv_ke_query_settings_default(&s);
  s.host = "localhost";
  s.family = AF_INET;
  s.port = port;
  s.timeout_ms = 5000;
  s.ke.ca_file = ca;
  rv = ntsntp_uv_ke_query_start(&loop, &s, on_ke, a, NULL, NULL, 0);
  if (rv == 0)
    uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rv) {
    snprintf(a->err, sizeof(a->err), "%s", ntsntp_strerror(rv));
    return rv;
  }
  return a->status;
}

static void *probe_main(void *arg) {
  probes *p = arg;
  unsigned i;
  for (i = 0; i < p->count; i++) {
    double t0 = mono();
    attempt a;
    p->attempts[i] = 0;
    for (;;) {
      p->attempts[i]++;
      if (ke_once(p->port, p->ca, &a) == 0) {
        p->ok[i] = 1;
        break;
      }
      if (mono() - t0 >= p->budget)
        break;
      sleep_s(0.02);
    }
    p->lat[i] = mono() - t0;
    printf("probe %u: %s in %.3f s (%u attempts)%s%s\n", i + 1,
           p->ok[i] ? "ok" : "FAILED", p->lat[i], p->attempts[i],
           p->ok[i] ? "" : ": ", p->ok[i] ? "" : a.err);
    fflush(stdout);
    if (i + 1 < p->count)
      sleep_s(p->gap_ms / 1000.0);
  }
  atomic_store(&p->done, 1);
  return NULL;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* ---- main ---- */

static int usage(void) {
  fprintf(stderr, "usage: ntsflood [-m held|reopen] [-s] [-n N] [-c C] "
                  "[-g G] [-w S] [-p P] [-i MS] [-t S] [-l S] KEPORT CA\n");
  return 2;
}

int main(int argc, char **argv) {
  flood f;
  probes p;
  pthread_t th;
  unsigned addrs = 600, per = 1, group = 1, want_open = 0, i, ok = 0;
  unsigned tries = 0;
  double warm = 1.5, bound = 0, sorted[MAX_PROBES], t0;
  struct rlimit rl;
  int opt, pass;

  /* The client's writes may meet a connection the server has closed. */
  signal(SIGPIPE, SIG_IGN);
  memset(&f, 0, sizeof(f));
  memset(&p, 0, sizeof(p));
  p.count = 5;
  p.gap_ms = 300;
  p.budget = 10;
  while ((opt = getopt(argc, argv, "m:sn:c:g:w:o:p:i:t:l:")) != -1) {
    switch (opt) {
    case 'm':
      if (strcmp(optarg, "held") && strcmp(optarg, "reopen"))
        return usage();
      f.reopen = !strcmp(optarg, "reopen");
      break;
    case 's': f.slow = 1; break;
    case 'n': addrs = (unsigned)atoi(optarg); break;
    case 'c': per = (unsigned)atoi(optarg); break;
    case 'g': group = (unsigned)atoi(optarg); break;
    case 'w': warm = atof(optarg); break;
    case 'o': want_open = (unsigned)atoi(optarg); break;
    case 'p': p.count = (unsigned)atoi(optarg); break;
    case 'i': p.gap_ms = (unsigned)atoi(optarg); break;
    case 't': p.budget = atof(optarg); break;
    case 'l': bound = atof(optarg); break;
    default: return usage();
    }
  }
  /* 4096 /24s in 127.16.0.0/12. */
  if (argc - optind != 2 || addrs == 0 || per == 0 || per > 64 ||
      group == 0 || group > 250 || (addrs + group - 1) / group > 4096 ||
      p.count == 0 ||
      p.count > MAX_PROBES || warm < 0 || p.budget <= 0)
    return usage();
  f.port = (uint16_t)atoi(argv[optind]);
  p.port = f.port;
  p.ca = argv[optind + 1];
  f.n = addrs * per;

  /* One descriptor per connection, and room for the client's own. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < f.n + 256) {
    rl.rlim_cur = f.n + 256;
    if (rl.rlim_max < rl.rlim_cur)
      rl.rlim_max = rl.rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
      perror("setrlimit(RLIMIT_NOFILE)");
      return 2;
    }
  }
  f.slots = calloc(f.n, sizeof(*f.slots));
  f.ep = epoll_create1(EPOLL_CLOEXEC);
  if (!f.slots || f.ep < 0) {
    perror("setup");
    return 2;
  }
  /* Address a: /24 number a / group, host 1 + a % group, counted from
   * 127.16.0.0 (never 127.0.0.0/24, where the legitimate client is). */
  for (i = 0; i < f.n; i++) {
    unsigned a = i / per, net = a / group, host = 1 + a % group;
    slot *s = &f.slots[i];
    s->fd = -1;
    s->src.sin_family = AF_INET;
    s->src.sin_addr.s_addr =
        htonl(0x7f100000u + ((net & 0xfffu) << 8) + host);
  }
  printf("flood: %s%s from %u addresses (%u per /24), %u connections "
         "each, %u sockets\n",
         f.reopen ? "reopen" : "held", f.slow ? " slow" : "", addrs, group,
         per, f.n);
  fflush(stdout);
  for (i = 0; i < f.n; i++)
    slot_open(&f, &f.slots[i]);

  /* Let the flood take hold, then probe while it goes on. */
  t0 = mono();
  flood_run(&f, NULL, t0 + warm, want_open);
  printf("flood: %u of %u connections open after %.2f s\n", open_count(&f),
         f.n, mono() - t0);
  fflush(stdout);
  if (pthread_create(&th, NULL, probe_main, &p)) {
    fprintf(stderr, "cannot start the probe thread\n");
    return 2;
  }
  flood_run(&f, &p, 0, 0);
  pthread_join(th, NULL);

  printf("flood: connects=%llu server_closes=%llu connect_errors=%llu "
         "open=%u\n",
         (unsigned long long)f.connects, (unsigned long long)f.closes,
         (unsigned long long)f.errors, open_count(&f));
  for (i = 0; i < f.n; i++)
    slot_close(&f.slots[i]);
  for (i = 0; i < p.count; i++) {
    sorted[i] = p.lat[i];
    ok += (unsigned)p.ok[i];
    tries += p.attempts[i];
  }
  qsort(sorted, p.count, sizeof(double), cmp_double);
  printf("latency: probes=%u ok=%u p50=%.3f max=%.3f attempts=%u\n", p.count,
         ok, sorted[p.count / 2], sorted[p.count - 1], tries);
  pass = ok == p.count && (bound <= 0 || sorted[p.count - 1] < bound);
  close(f.ep);
  free(f.slots);
  return pass ? 0 : 1;
}
