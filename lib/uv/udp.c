/*
 * libntsntp runtime layer: NTP over UDP with kernel timestamps (Linux).
 *
 * uv_udp_t drops ancillary data, so each worker opens its sockets itself,
 * watches them with uv_poll_t and moves datagrams with recvmmsg/sendmmsg.
 * Threads: every worker runs its own loop in its own thread and owns its
 * sockets, buffers and counters; the caller's loop only holds |exited|, the
 * async handle through which finished workers report back during stop.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h> /* before linux/errqueue.h, which needs struct timespec */

#include <linux/errqueue.h>
#include <linux/ethtool.h>
#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <linux/ptp_clock.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errtext.h"
#include "ntsntp/hwclock.h"
#include "ntsntp/uv.h"
#include "sock.h"
#include "../settings.h"
#include "../mem.h"

/* Datagrams per recvmmsg/sendmmsg call. */
#define BATCH 32
/* Receive buffer per datagram; longer ones arrive with MSG_TRUNC. */
#define SLOT_LEN 2048
/* Batches per wake-up, so that one busy socket cannot starve the others of
 * the same worker.  uv_poll is level-triggered: leftovers wake us again. */
#define MAX_BATCHES 16
/* Batches up to this size are served one request at a time; larger ones
 * in chunks of SEND_CHUNK, one sendmmsg each (see process_batch). */
#define SEND_EACH 4
#define SEND_CHUNK 8
/* Requested socket buffer sizes (the kernel caps them at rmem_max/wmem_max;
 * failures are ignored). */
#define SOCK_BUF (4 * 1024 * 1024)
#define MAX_WORKERS 1024
/* Room for the IPv6 steering program: at most 17 instructions for each
 * of the four address words, and two. */
#define STEER_MAX_INSNS 72
#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51 /* Linux 4.5 */
#endif

#define STATS_WORDS (sizeof(ntsntp_server_stats) / sizeof(uint64_t))
_Static_assert(sizeof(ntsntp_server_stats) % sizeof(uint64_t) == 0,
               "stats must be whole uint64_t words");

/* Control buffers are aligned like size_t, as CMSG_ALIGN assumes (a union
 * with struct cmsghdr would not do: it ends in a flexible array). */

/* Room for SCM_TIMESTAMPING (three timespecs) plus a pktinfo, with slack for
 * anything else the kernel adds. */
typedef union rx_cbuf {
  size_t align;
  uint8_t b[CMSG_SPACE(sizeof(struct scm_timestamping)) +
            CMSG_SPACE(sizeof(struct in6_pktinfo)) + 128];
} rx_cbuf;

/* One pktinfo (the IPv6 one is the larger) and the per-datagram
 * SO_TIMESTAMPING flags that ask for a transmit timestamp. */
typedef union tx_cbuf {
  size_t align;
  uint8_t b[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
            CMSG_SPACE(sizeof(uint32_t))];
} tx_cbuf;

/* Transmit timestamps (interleaved mode).  Responses whose client asked
 * for interleaved mode carry a SO_TIMESTAMPING control message; the kernel
 * numbers such datagrams 0, 1, 2... per socket (SOF_TIMESTAMPING_OPT_ID)
 * and queues each one's timestamp on the error queue without the packet
 * (OPT_TSONLY).  The worker keeps what it needs to use the timestamp,
 * found by that number, for the last TXQ_LEN of them. */
#define TXQ_LEN 256
/* The longest a transmit timestamp may lag the clock read before the
 * send (chrony's MAX_TX_DELAY is 1 s): beyond that it is no use. */
#define MAX_TX_DELAY_NS 1000000000LL
/* Error-queue messages read per recvmmsg. */
#define ERRQ_BATCH 16
/* Hardware timestamps: interfaces at most, PTP clock readings per
 * PTP_SYS_OFFSET_EXTENDED (chrony takes 10), and how often (ms). */
#define MAX_HW_IFACES 8
#define PHC_READINGS 10
#define PHC_POLL_MS 1000

typedef struct tx_pending {
  uint32_t key;
  int used;
  int64_t read_ns;  /* CLOCK_REALTIME read before the send */
  uint64_t read_ntp; /* the same, NTP-64 */
  uint64_t rx;     /* the request's served receive timestamp */
  struct sockaddr_storage peer;
} tx_pending;

typedef struct slot {
  uint8_t in[SLOT_LEN];
  uint8_t out[SLOT_LEN];
  struct sockaddr_storage peer;
  struct iovec riov, tiov;
  rx_cbuf rc;
  tx_cbuf tc;
  /* The request's state between prepare and finish (see process_batch). */
  ntsntp_server_ctx ctx;
} slot;

typedef struct listen_addr {
  struct sockaddr_storage ss;
  socklen_t len;
  int wildcard;
  int skip;                         /* default "::" on a host without IPv6 */
  char text[INET6_ADDRSTRLEN + 24]; /* as given, for messages */
  uint16_t port;                    /* bound port, host order */
} listen_addr;

struct worker;

typedef struct sock {
  struct worker *w;
  int fd;
  int pktinfo; /* wildcard: answer from the request's destination address */
  int last_errno;
  int poll_init;
  uv_poll_t poll;
  /* Transmit timestamps: |txts| set if the kernel took the flags; the
   * number the kernel gives the next timestamped datagram; the pending
   * ones (heap, TXQ_LEN). */
  int txts;
  int tsflags;
  uint32_t next_key;
  tx_pending *txq;
  int hw_stamps; /* asked the kernel for network-card stamps too */
} sock;

/* A network interface whose card stamps packets (hw_ifaces). */
typedef struct hw_iface {
  unsigned ifindex;
  int phc_fd; /* its PTP hardware clock, read by every worker */
  char name[IF_NAMESIZE];
} hw_iface;

typedef struct worker {
  ntsntp_uv_ntp *n;
  unsigned idx;
  unsigned shard; /* |worker| for the hooks: idx, or 0 (steering refused) */
  int loop_init, stop_init, thread_started;
  uv_loop_t loop;
  uv_async_t stop;
  uv_thread_t thread;
  sock *socks; /* one per listen address */
  slot *slots; /* BATCH of them */
  struct mmsghdr rmsg[BATCH];
  struct mmsghdr tmsg[BATCH];
  /* For tmsg[j]: the slot it answers, the clock read before its finish,
   * and whether it asks for a transmit timestamp. */
  unsigned tslot[BATCH];
  struct timespec tread[BATCH];
  uint8_t twant[BATCH];
  /* Send-time model (ns, moving averages): finishing one response, and the
   * spacing of the datagrams one sendmmsg puts on the wire. */
  int64_t finish_ns, spacing_ns;
  ntsntp_server_stats st; /* written by the worker thread only */
  /* Hardware timestamps: one converter per interface (as n->hw), fed by
   * |hw_timer|. */
  ntsntp_hwclock hc[MAX_HW_IFACES];
  uv_timer_t hw_timer;
  int hw_timer_init;
  /* Published copy of |st| under a sequence lock (odd while writing). */
  atomic_uint seq;
  _Atomic uint64_t pub[STATS_WORDS];
} worker;

struct ntsntp_uv_ntp {
  uv_loop_t *loop;
  ntsntp_uv_ntp_settings s;
  size_t n_addrs;
  listen_addr *addrs;
  hw_iface hw[MAX_HW_IFACES];
  size_t n_hw;
  unsigned n_workers;
  worker *workers;
  int steered; /* steer_by_client asked for and in place (or 1 worker) */
  uv_async_t exited;
  atomic_uint n_exited;
  int stopping, closing;
  void (*done)(void *user);
  void *done_user;
};

static void logf_(const ntsntp_uv_ntp *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(const ntsntp_uv_ntp *n, int level, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  if (n->s.log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  n->s.log(n->s.log_user, level, buf);
}

/* ---- settings and accessors ---- */

static void uv_ntp_fill(void *p) {
  ntsntp_uv_ntp_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->port = 123;
  s->steer_v4_prefix = 32;
  s->steer_v6_prefix = 64;
}
NTSNTP__SETTINGS(ntsntp_uv_ntp_settings, uv_ntp, log_user)

unsigned ntsntp_uv_ntp_workers(const ntsntp_uv_ntp *n) {
  return n->n_workers;
}

int ntsntp_uv_ntp_steered(const ntsntp_uv_ntp *n) {
  return n != NULL && n->steered;
}

uint16_t ntsntp_uv_ntp_port(const ntsntp_uv_ntp *n, size_t idx) {
  if (n == NULL || idx >= n->n_addrs || n->addrs[idx].skip)
    return 0;
  return n->addrs[idx].port;
}

/* ---- statistics ---- */

static void publish(worker *w) {
  uint64_t v[STATS_WORDS];
  unsigned seq = atomic_load_explicit(&w->seq, memory_order_relaxed);
  size_t i;
  memcpy(v, &w->st, sizeof(v));
  atomic_store_explicit(&w->seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  for (i = 0; i < STATS_WORDS; i++)
    atomic_store_explicit(&w->pub[i], v[i], memory_order_relaxed);
  atomic_store_explicit(&w->seq, seq + 2, memory_order_release);
}

static void snapshot(const worker *w, ntsntp_server_stats *out) {
  uint64_t v[STATS_WORDS];
  unsigned a, b;
  size_t i;
  do {
    a = atomic_load_explicit(&w->seq, memory_order_acquire);
    for (i = 0; i < STATS_WORDS; i++)
      v[i] = atomic_load_explicit(&w->pub[i], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    b = atomic_load_explicit(&w->seq, memory_order_relaxed);
  } while ((a & 1) || a != b);
  memcpy(out, v, sizeof(v));
}

void ntsntp_uv_ntp_get_worker_stats(const ntsntp_uv_ntp *n, unsigned worker_idx,
                                    ntsntp_server_stats *out) {
  memset(out, 0, sizeof(*out));
  if (n != NULL && worker_idx < n->n_workers)
    snapshot(&n->workers[worker_idx], out);
}

void ntsntp_uv_ntp_get_stats(const ntsntp_uv_ntp *n, ntsntp_server_stats *out) {
  ntsntp_server_stats one;
  unsigned i;
  memset(out, 0, sizeof(*out));
  for (i = 0; n != NULL && i < n->n_workers; i++) {
    snapshot(&n->workers[i], &one);
    ntsntp_server_stats_add(out, &one);
  }
}

/* ---- the packet path (worker threads) ---- */

static void sock_errno(sock *sk, const char *what, int err) {
  /* Once per errno and socket: an overloaded or misrouted server must not
   * flood its log. */
  if (err == sk->last_errno)
    return;
  sk->last_errno = err;
  logf_(sk->w->n, NTSNTP_LOG_WARN, "UDP worker %u: %s: %s", sk->w->idx, what,
        strerror(err));
}

static uint64_t served_ntp(const ntsntp_uv_ntp *n, uint64_t ts) {
  return n->s.adjust ? n->s.adjust(n->s.adjust_user, ts) : ts;
}

static uint64_t served_time(const ntsntp_uv_ntp *n, const struct timespec *t) {
  return served_ntp(n, ntsntp_ts_from_timespec(t));
}

/* ---- hardware timestamps ---- */

/* The interface |ifindex| among n->hw (0: the only one, if just one), or
 * -1. */
static int hw_find(const ntsntp_uv_ntp *n, unsigned ifindex) {
  size_t i;
  if (ifindex == 0)
    return n->n_hw == 1 ? 0 : -1;
  for (i = 0; i < n->n_hw; i++)
    if (n->hw[i].ifindex == ifindex)
      return (int)i;
  return -1;
}

/* A card's stamp |t| as system time (NTP-64), or 0 if it cannot be
 * converted yet (or at all). */
static uint64_t hw_convert(worker *w, unsigned ifindex,
                           const struct timespec *t) {
  int i = hw_find(w->n, ifindex);
  uint64_t sys;
  if (i < 0 || (t->tv_sec == 0 && t->tv_nsec == 0) ||
      ntsntp_hwclock_convert(&w->hc[i], ntsntp_ts_from_timespec(t), &sys,
                             NULL) != 0)
    return 0;
  return sys;
}

static uint64_t ptp_ntp(const struct ptp_clock_time *c) {
  struct timespec t;
  t.tv_sec = (time_t)c->sec;
  t.tv_nsec = (long)c->nsec;
  return ntsntp_ts_from_timespec(&t);
}

/* Once a second per worker: each card's clock against the system clock.
 * Of PHC_READINGS (system, PHC, system) triplets the one with the
 * shortest window is kept (chrony's PHC reading); its midpoint pairs with
 * the PHC time. */
static void on_hw_timer(uv_timer_t *t) {
  worker *w = t->data;
  const ntsntp_uv_ntp *n = w->n;
  size_t i;
  for (i = 0; i < n->n_hw; i++) {
    struct ptp_sys_offset_extended x;
    unsigned k, best = 0;
    double win = -1;
    memset(&x, 0, sizeof(x));
    x.n_samples = PHC_READINGS;
    if (ioctl(n->hw[i].phc_fd, PTP_SYS_OFFSET_EXTENDED, &x) != 0)
      continue;
    for (k = 0; k < x.n_samples && k < PTP_MAX_SAMPLES; k++) {
      double d = ntsntp_ts_diff(ptp_ntp(&x.ts[k][2]), ptp_ntp(&x.ts[k][0]));
      if (d >= 0 && (win < 0 || d < win)) {
        win = d;
        best = k;
      }
    }
    if (win < 0)
      continue;
    (void)ntsntp_hwclock_add(
        &w->hc[i], ptp_ntp(&x.ts[best][1]),
        ntsntp_ts_add(ptp_ntp(&x.ts[best][0]), win / 2), win / 2);
  }
}

/* Start (caller's thread, before any privilege is dropped): for each
 * named interface, its index, its card's capabilities and PTP clock, and
 * stamping turned on. */
static int hw_setup(ntsntp_uv_ntp *n, const ntsntp_uv_ntp_settings *s,
                    char *errbuf, size_t errlen) {
  size_t i;
  int fd;
  if (s->n_hw_ifaces == 0)
    return 0;
  if (s->hw_ifaces == NULL || s->n_hw_ifaces > MAX_HW_IFACES) {
    ntsntp__errf(errbuf, errlen,
                 "HWTIMESTAMP: at most %d interfaces, comma-separated",
                 MAX_HW_IFACES);
    return NTSNTP_ERR_INVALID_ARG;
  }
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ntsntp__errf(errbuf, errlen, "HWTIMESTAMP: socket: %s", strerror(errno));
    return NTSNTP_ERR_IO;
  }
  for (i = 0; i < s->n_hw_ifaces; i++) {
    const char *name = s->hw_ifaces[i];
    hw_iface *h = &n->hw[i];
    struct ethtool_ts_info info;
    struct hwtstamp_config cfg;
    struct ifreq ifr;
    char dev[32];
    unsigned need = SOF_TIMESTAMPING_TX_HARDWARE |
                    SOF_TIMESTAMPING_RX_HARDWARE |
                    SOF_TIMESTAMPING_RAW_HARDWARE;
    h->phc_fd = -1;
    if (name == NULL || strlen(name) >= IF_NAMESIZE ||
        (h->ifindex = if_nametoindex(name)) == 0) {
      ntsntp__errf(errbuf, errlen,
                   "HWTIMESTAMP: \"%s\" is not a network interface of this "
                   "host (see ip link)",
                   name ? name : "");
      goto fail;
    }
    snprintf(h->name, sizeof(h->name), "%s", name);
    n->n_hw = i + 1;
    memset(&ifr, 0, sizeof(ifr));
    memset(&info, 0, sizeof(info));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    info.cmd = ETHTOOL_GET_TS_INFO;
    ifr.ifr_data = (void *)&info;
    if (ioctl(fd, SIOCETHTOOL, &ifr) != 0 ||
        (info.so_timestamping & need) != need || info.phc_index < 0) {
      ntsntp__errf(errbuf, errlen,
                   "HWTIMESTAMP: %s has no hardware timestamping (ethtool -T "
                   "%s shows what it has); fix: remove it from HWTIMESTAMP",
                   name, name);
      goto fail;
    }
    /* Stamp every received packet (NTP ones at least) and every sent one
     * that asks for it. */
    memset(&cfg, 0, sizeof(cfg));
    cfg.tx_type = HWTSTAMP_TX_ON;
    cfg.rx_filter = HWTSTAMP_FILTER_ALL;
    ifr.ifr_data = (void *)&cfg;
    if (ioctl(fd, SIOCSHWTSTAMP, &ifr) != 0) {
      int e = errno;
      cfg.rx_filter = HWTSTAMP_FILTER_NTP_ALL;
      if (ioctl(fd, SIOCSHWTSTAMP, &ifr) != 0) {
        /* Without CAP_NET_ADMIN: fine if someone turned it on already. */
        memset(&cfg, 0, sizeof(cfg));
        if (ioctl(fd, SIOCGHWTSTAMP, &ifr) != 0 ||
            cfg.tx_type != HWTSTAMP_TX_ON ||
            cfg.rx_filter == HWTSTAMP_FILTER_NONE) {
          ntsntp__errf(errbuf, errlen,
                       "HWTIMESTAMP: cannot turn on hardware timestamping on "
                       "%s: %s%s",
                       name, strerror(e),
                       e == EPERM ? " (needs CAP_NET_ADMIN at start, or "
                                    "hwstamp_ctl -i IFACE -t 1 -r 1 before)"
                                  : "");
          goto fail;
        }
      }
    }
    snprintf(dev, sizeof(dev), "/dev/ptp%d", info.phc_index);
    h->phc_fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (h->phc_fd < 0) {
      ntsntp__errf(errbuf, errlen, "HWTIMESTAMP: cannot open %s (%s's clock): "
                   "%s", dev, name, strerror(errno));
      goto fail;
    }
  }
  close(fd);
  logf_(n, NTSNTP_LOG_INFO, "hardware timestamping on %zu interface%s",
        n->n_hw, n->n_hw == 1 ? "" : "s");
  return 0;
fail:
  close(fd);
  return NTSNTP_ERR_INVALID_ARG;
}

static void hw_close(ntsntp_uv_ntp *n) {
  size_t i;
  for (i = 0; i < n->n_hw; i++)
    if (n->hw[i].phc_fd >= 0) {
      close(n->hw[i].phc_fd);
      n->hw[i].phc_fd = -1;
    }
  n->n_hw = 0;
}

/* A verdict the runtime makes without (or after) the core. */
static void drop(ntsntp_server_ctx *ctx, ntsntp_server_reason r) {
  ctx->verdict = NTSNTP_SERVER_DROP;
  ctx->reason = r;
  ctx->nts = 0;
  ctx->n_cookies = 0;
}

/* Makes |data| the one control message of |tx|, in |cb|. */
static void put_cmsg(struct msghdr *tx, tx_cbuf *cb, int level, int type,
                     const void *data, size_t len) {
  struct cmsghdr *c;
  assert(CMSG_SPACE(len) <= sizeof(cb->b));
  memset(cb->b, 0, sizeof(cb->b));
  tx->msg_control = cb->b;
  tx->msg_controllen = CMSG_SPACE(len);
  c = CMSG_FIRSTHDR(tx);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(len);
  memcpy(CMSG_DATA(c), data, len);
}

/* Appends |data| as a control message to |tx|, whose control buffer is
 * |cb| or none yet. */
static void add_cmsg(struct msghdr *tx, tx_cbuf *cb, int level, int type,
                     const void *data, size_t len) {
  struct cmsghdr *c;
  size_t used = tx->msg_control != NULL ? tx->msg_controllen : 0;
  assert(used + CMSG_SPACE(len) <= sizeof(cb->b));
  assert(used == 0 || tx->msg_control == (void *)cb->b);
  memset(cb->b + used, 0, CMSG_SPACE(len));
  tx->msg_control = cb->b;
  tx->msg_controllen = used + CMSG_SPACE(len);
  c = (struct cmsghdr *)(void *)(cb->b + used);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(len);
  memcpy(CMSG_DATA(c), data, len);
}

/* Reads the kernel receive timestamp and, for wildcard sockets, builds the
 * control message that makes the response leave from the address the
 * request was sent to.  Returns 1 if |ts| holds a kernel timestamp, 2 if
 * |*hw| holds the network card's, converted to system time. */
static int parse_cmsg(sock *sk, struct msghdr *mh, slot *sl,
                      struct timespec *ts, struct msghdr *tx, uint64_t *hw) {
  struct cmsghdr *cm;
  struct timespec hwts = {0, 0};
  unsigned ifindex = 0;
  int kernel = 0;
  tx->msg_control = NULL;
  tx->msg_controllen = 0;
  for (cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING &&
        cm->cmsg_len >= CMSG_LEN(sizeof(struct scm_timestamping))) {
      struct scm_timestamping t;
      memcpy(&t, CMSG_DATA(cm), sizeof(t));
      /* ts[0] is the software stamp; zero means none was taken.  ts[2]
       * the card's, in its own clock. */
      if (t.ts[0].tv_sec != 0 || t.ts[0].tv_nsec != 0) {
        *ts = t.ts[0];
        kernel = 1;
      }
      hwts = t.ts[2];
    } else if (cm->cmsg_level == SOL_SOCKET &&
               cm->cmsg_type == SCM_TIMESTAMPING_PKTINFO &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct scm_ts_pktinfo))) {
      struct scm_ts_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
      ifindex = pi.if_index;
    } else if (cm->cmsg_level == SOL_SOCKET &&
               cm->cmsg_type == SCM_TIMESTAMPNS &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
      memcpy(ts, CMSG_DATA(cm), sizeof(*ts));
      kernel = ts->tv_sec != 0 || ts->tv_nsec != 0;
    } else if (sk->pktinfo && cm->cmsg_level == IPPROTO_IP &&
               cm->cmsg_type == IP_PKTINFO &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pi, out;
      memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
      /* ipi_spec_dst is the local address the request reached (for a
       * broadcast, the interface's own address); routing picks the
       * interface. */
      memset(&out, 0, sizeof(out));
      out.ipi_spec_dst = pi.ipi_spec_dst;
      put_cmsg(tx, &sl->tc, IPPROTO_IP, IP_PKTINFO, &out, sizeof(out));
    } else if (sk->pktinfo && cm->cmsg_level == IPPROTO_IPV6 &&
               cm->cmsg_type == IPV6_PKTINFO &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
      /* A multicast destination is no source address: let the kernel
       * choose.  The interface index keeps link-local addresses right. */
      if (IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr))
        continue;
      put_cmsg(tx, &sl->tc, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof(pi));
    }
  }
  if (sk->hw_stamps && (*hw = hw_convert(sk->w, ifindex, &hwts)) != 0)
    return 2;
  return kernel;
}

static int64_t ns_of(const struct timespec *t) {
  return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/* One step of a moving average (1/8) that a single outlier (a preemption,
 * an interrupt storm) can at most double, and that never predicts more than
 * 100 us per item: beyond that a duration is no property of the path. */
static void average(int64_t *avg, int64_t sample) {
  if (sample < 0)
    return;
  if (sample > 2 * *avg + 1000)
    sample = 2 * *avg + 1000;
  *avg += (sample - *avg) / 8;
  if (*avg > 100000)
    *avg = 100000;
}

/* ---- transmit timestamps ---- */

/* Hands one error-queue message to the tx_stamp hook if it is the
 * timestamp of a pending response. */
static void errq_one(sock *sk, struct msghdr *mh) {
  worker *w = sk->w;
  const ntsntp_uv_ntp *n = w->n;
  struct cmsghdr *cm;
  struct scm_timestamping t;
  struct sock_extended_err ee;
  int have_ts = 0, have_ee = 0;
  ntsntp_ts_source src = NTSNTP_TS_KERNEL;
  unsigned ifindex = 0;
  uint64_t tx;
  tx_pending *p;
  double d;

  for (cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING &&
        cm->cmsg_len >= CMSG_LEN(sizeof(t))) {
      memcpy(&t, CMSG_DATA(cm), sizeof(t));
      have_ts = 1;
    } else if (((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
                (cm->cmsg_level == SOL_IPV6 &&
                 cm->cmsg_type == IPV6_RECVERR)) &&
               cm->cmsg_len >= CMSG_LEN(sizeof(ee))) {
      memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
      have_ee = ee.ee_errno == ENOMSG &&
                ee.ee_origin == SO_EE_ORIGIN_TIMESTAMPING &&
                ee.ee_info == SCM_TSTAMP_SND;
    } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pi; /* OPT_CMSG: the interface it left by */
      memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
      ifindex = (unsigned)pi.ipi_ifindex;
    } else if (cm->cmsg_level == IPPROTO_IPV6 &&
               cm->cmsg_type == IPV6_PKTINFO &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
      ifindex = pi.ipi6_ifindex;
    }
  }
  if (!have_ts || !have_ee)
    return;
  /* ts[2] is the network card's stamp (its own clock, converted), ts[0]
   * the kernel's software one; with both asked for, the kernel sends the
   * software one first and the card's later, under the same number. */
  if (sk->hw_stamps && (tx = hw_convert(w, ifindex, &t.ts[2])) != 0)
    src = NTSNTP_TS_HW;
  else if (t.ts[0].tv_sec != 0 || t.ts[0].tv_nsec != 0)
    tx = ntsntp_ts_from_timespec(&t.ts[0]);
  else
    return;
  p = &sk->txq[ee.ee_data % TXQ_LEN];
  if (!p->used || p->key != ee.ee_data)
    return;
  /* Waiting for the card's stamp, which replaces the software one. */
  if (src == NTSNTP_TS_HW || !sk->hw_stamps)
    p->used = 0;
  /* The datagram left after the clock read before its send, and not long
   * after: anything else is not its timestamp (a clock step, or a stamp
   * from before a renumbering), and is not used.  A card's stamp may be
   * off by its conversion error: 1 ms is allowed before. */
  d = ntsntp_ts_diff(tx, p->read_ntp);
  if (d < (src == NTSNTP_TS_HW ? -1e-3 : 0) || d > MAX_TX_DELAY_NS / 1e9)
    return;
  if (n->s.tx_stamp == NULL)
    return;
  n->s.tx_stamp(n->s.tx_stamp_user, w->shard,
                (const struct sockaddr *)&p->peer, p->rx, served_ntp(n, tx),
                src);
  if (src == NTSNTP_TS_HW)
    w->st.tx_hw_ts++;
  else
    w->st.tx_kernel_ts++;
}

/* Reads every message waiting on the error queue: transmit timestamps.
 * Called after sends and when the socket reports an error condition. */
static void errq_read(sock *sk) {
  struct mmsghdr mm[ERRQ_BATCH];
  union {
    size_t align;
    uint8_t b[CMSG_SPACE(sizeof(struct scm_timestamping)) +
              CMSG_SPACE(sizeof(struct sock_extended_err) +
                         sizeof(struct sockaddr_in6)) +
              64];
  } cb[ERRQ_BATCH];
  uint8_t data[ERRQ_BATCH][64];
  struct iovec iov[ERRQ_BATCH];
  int r, i, rounds;

  for (rounds = 0; rounds < 64; rounds++) {
    memset(mm, 0, sizeof(mm));
    for (i = 0; i < ERRQ_BATCH; i++) {
      iov[i].iov_base = data[i];
      iov[i].iov_len = sizeof(data[i]);
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
      mm[i].msg_hdr.msg_control = cb[i].b;
      mm[i].msg_hdr.msg_controllen = sizeof(cb[i].b);
    }
    r = recvmmsg(sk->fd, mm, ERRQ_BATCH, MSG_ERRQUEUE | MSG_DONTWAIT, NULL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    for (i = 0; i < r; i++)
      errq_one(sk, &mm[i].msg_hdr);
    if (r < ERRQ_BATCH)
      return;
  }
}

/* Sets SO_TIMESTAMPING to |flags|.  Returns 0 or -1 (errno). */
static int set_tsflags(sock *sk, int flags) {
  return setsockopt(sk->fd, SOL_SOCKET, SO_TIMESTAMPING, &flags,
                    sizeof(flags));
}

/*
 * A timestamped datagram failed to send.  Whether the kernel used up its
 * number depends on where it failed (and on the kernel version), so the
 * numbering is started again: OPT_ID switched off and on resets it to 0.
 * What is still pending is forgotten; a late timestamp of it that matches
 * a new number is refused by the time check in errq_one (it is older than
 * the new datagram's clock read).
 */
static void txq_renumber(sock *sk) {
  errq_read(sk);
  memset(sk->txq, 0, TXQ_LEN * sizeof(*sk->txq));
  sk->next_key = 0;
  if (set_tsflags(sk, sk->tsflags & ~SOF_TIMESTAMPING_OPT_ID) != 0 ||
      set_tsflags(sk, sk->tsflags) != 0) {
    sk->txts = 0; /* no transmit timestamps from now on: basic mode */
    sock_errno(sk, "SO_TIMESTAMPING (transmit timestamps off)", errno);
  }
}

/* Accounts the datagrams tmsg[off..off+count) the kernel took: each one
 * asking for a timestamp got the next number.  Returns how many did. */
static int txq_sent(sock *sk, unsigned off, unsigned count) {
  worker *w = sk->w;
  unsigned i;
  int added = 0;
  for (i = off; i < off + count; i++) {
    slot *sl;
    tx_pending *p;
    if (!w->twant[i])
      continue;
    sl = &w->slots[w->tslot[i]];
    p = &sk->txq[sk->next_key % TXQ_LEN];
    p->key = sk->next_key++;
    p->used = 1;
    p->read_ns = ns_of(&w->tread[i]);
    p->read_ntp = ntsntp_ts_from_timespec(&w->tread[i]);
    p->rx = sl->ctx.rx_ts;
    memcpy(&p->peer, &sl->peer, sizeof(p->peer));
    added = 1;
  }
  return added;
}

/* Sends tmsg[off..off+count) with as few sendmmsg calls as the kernel
 * allows.  Returns the number queued.  Never blocks the worker. */
static unsigned send_batch(sock *sk, unsigned off, unsigned count) {
  worker *w = sk->w;
  unsigned sent = 0;
  int renumber = 0, stamped = 0;
  count += off;
  while (off < count) {
    int r = sendmmsg(sk->fd, w->tmsg + off, count - off, MSG_DONTWAIT);
    if (r > 0) {
      if (sk->txts)
        stamped |= txq_sent(sk, off, (unsigned)r);
      off += (unsigned)r;
      sent += (unsigned)r;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    renumber |= w->twant[off];
    if (r < 0 &&
        (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      /* The rest of the batch is lost. */
      sock_errno(sk, "send queue full, responses dropped", errno);
      w->st.tx_errors += count - off;
      break;
    }
    /* The first datagram left failed (bad peer address, firewall...):
     * skip it and go on with the others. */
    sock_errno(sk, "sendmmsg", r < 0 ? errno : EIO);
    w->st.tx_errors++;
    off++;
  }
  if (renumber && sk->txts)
    txq_renumber(sk);
  else if (stamped)
    errq_read(sk);
  return sent;
}

/* Judges request |k| of the batch: receive timestamp, access list, then
 * the expensive part (cookie open, authentication, new cookies).  The
 * control message for the response goes to tmsg[k]. */
static void judge(sock *sk, unsigned k, struct timespec *now, int *have_now) {
  worker *w = sk->w;
  const ntsntp_uv_ntp *n = w->n;
  slot *sl = &w->slots[k];
  ntsntp_server_ctx *ctx = &sl->ctx;
  struct msghdr *mh = &w->rmsg[k].msg_hdr;
  const struct sockaddr *peer = (const struct sockaddr *)&sl->peer;
  struct timespec ts;
  uint64_t rx = 0;
  int got;

  got = parse_cmsg(sk, mh, sl, &ts, &w->tmsg[k].msg_hdr, &rx);
  if (got == 2) {
    w->st.rx_hw_ts++;
    rx = served_ntp(n, rx);
  } else if (got == 1) {
    w->st.rx_kernel_ts++;
  } else {
    /* No kernel stamp: the best left is one clock read per batch, right
     * after it arrived. */
    if (!*have_now) {
      clock_gettime(CLOCK_REALTIME, now);
      *have_now = 1;
    }
    ts = *now;
    w->st.rx_daemon_ts++;
  }

  if (mh->msg_flags & MSG_TRUNC) {
    /* Longer than any request we serve: the tail (extension fields) is
     * lost, so it cannot be parsed. */
    drop(ctx, NTSNTP_REASON_BAD_EF);
  } else if (n->s.accept != NULL &&
             n->s.accept(n->s.accept_user, w->shard, peer) != 0) {
    drop(ctx, NTSNTP_REASON_DENIED);
  } else {
    /* Parse, then the filter (rate limiter), then the cryptography: a
     * limited NTS request costs no AES-SIV operation. */
    ntsntp_server_parse(n->s.server, sl->in, w->rmsg[k].msg_len,
                        got == 2 ? rx : served_time(n, &ts), ctx);
    if (ctx->verdict != NTSNTP_SERVER_DROP && n->s.filter != NULL &&
        n->s.filter(n->s.filter_user, w->shard, peer, ctx) != 0) {
      ctx->verdict = NTSNTP_SERVER_DROP;
      if (ctx->reason == NTSNTP_REASON_OK)
        ctx->reason = NTSNTP_REASON_DENIED;
    }
    ntsntp_server_authenticate(n->s.server, ctx);
    if (ctx->verdict != NTSNTP_SERVER_DROP && ctx->nts_pending) {
      /* A hook answered an NTS request without ntsntp_server_ctx_ratelimit
       * (a KoD, say): finish would refuse it. */
      ctx->verdict = NTSNTP_SERVER_DROP;
      if (ctx->reason == NTSNTP_REASON_OK)
        ctx->reason = NTSNTP_REASON_DENIED;
    }
    if (ctx->verdict == NTSNTP_SERVER_DROP) {
      ntsntp_server_ctx_clear(ctx);
      if (ctx->reason == NTSNTP_REASON_OK)
        ctx->reason = NTSNTP_REASON_DENIED;
    }
  }
}

/* Finishes response |k| into tmsg[j] (j <= k), with the clock read now plus
 * |wait| ns as its transmit time; |read| gets the clock read.  Returns 1 if
 * tmsg[j] is ready to send. */
static int respond(sock *sk, unsigned k, unsigned j, int64_t wait,
                   struct timespec *read) {
  worker *w = sk->w;
  slot *sl = &w->slots[k];
  ntsntp_server_ctx *ctx = &sl->ctx;
  struct msghdr *tx = &w->tmsg[j].msg_hdr;
  struct timespec t;
  ntsntp_ssize r;

  w->twant[j] = 0;
  if (ctx->verdict == NTSNTP_SERVER_DROP)
    return 0;
  clock_gettime(CLOCK_REALTIME, &t);
  *read = t;
  t.tv_nsec += wait % 1000000000;
  t.tv_sec += wait / 1000000000 + t.tv_nsec / 1000000000;
  t.tv_nsec %= 1000000000;
  r = ntsntp_server_finish(w->n->s.server, ctx, served_time(w->n, &t),
                           sl->out, sizeof(sl->out));
  if (r < 0) {
    drop(ctx, NTSNTP_REASON_INTERNAL);
    return 0;
  }
  sl->tiov.iov_base = sl->out;
  sl->tiov.iov_len = (size_t)r;
  tx->msg_name = &sl->peer;
  tx->msg_namelen = w->rmsg[k].msg_hdr.msg_namelen;
  tx->msg_iov = &sl->tiov;
  tx->msg_iovlen = 1;
  tx->msg_control = w->tmsg[k].msg_hdr.msg_control;
  tx->msg_controllen = w->tmsg[k].msg_hdr.msg_controllen;
  tx->msg_flags = 0;
  w->tslot[j] = k;
  w->tread[j] = *read;
  if (ctx->want_tx_ts && ctx->verdict == NTSNTP_SERVER_RESPOND && sk->txts) {
    /* The client asked for interleaved mode: the kernel is to stamp this
     * datagram as it leaves (per datagram, so basic clients cost no
     * error-queue traffic). */
    uint32_t f = SOF_TIMESTAMPING_TX_SOFTWARE |
                 (sk->hw_stamps ? SOF_TIMESTAMPING_TX_HARDWARE : 0);
    add_cmsg(tx, &sl->tc, SOL_SOCKET, SO_TIMESTAMPING, &f, sizeof(f));
    w->twant[j] = 1;
  }
  if (ctx->xleave && ctx->verdict == NTSNTP_SERVER_RESPOND)
    w->st.xleave++;
  return 1;
}

/*
 * A transmit timestamp should be the time its datagram is queued.
 *
 * A small batch (light or moderate load) is served one request at a time:
 * judge, read the clock, finish, send.  Each response leaves as early as
 * it can and its timestamp is read right before it is queued.
 *
 * A large batch (heavy load) goes in chunks of up to 8 requests, each in
 * two passes and one sendmmsg, which saves system calls (one sendmsg per
 * response costs about 12 % more CPU per NTS response on this kind of
 * machine, docs/performance.md) while the first response of a chunk waits
 * for at most 8 judgements, not 32.  The first pass judges the chunk's
 * requests.  The second reads the clock for each response just before its
 * finish (header and, for NTS, one seal).  But the kernel queues the
 * datagrams of a sendmmsg one after the other, each after the whole send
 * path of those before it (on loopback including their delivery: a few
 * microseconds each), and response j of n is finished before the n - j - 1
 * after it.  So its timestamp is the clock read plus the predicted wait:
 * the finishes still to come and the datagrams queued before it, from
 * moving averages the worker keeps of both.  Without that, the last
 * response of a batch of 32 carried a timestamp tens of microseconds early.
 */
static void process_batch(sock *sk, unsigned count) {
  worker *w = sk->w;
  struct timespec now, read;
  int have_now = 0;
  unsigned k, c;

  if (count <= SEND_EACH) {
    for (k = 0; k < count; k++) {
      judge(sk, k, &now, &have_now);
      if (respond(sk, k, k, 0, &read))
        send_batch(sk, k, 1);
      ntsntp_server_stats_count(&w->st, &w->slots[k].ctx);
    }
    publish(w);
    return;
  }

  for (c = 0; c < count; c += SEND_CHUNK) {
    unsigned end = count - c < SEND_CHUNK ? count : c + SEND_CHUNK;
    struct timespec first = {0, 0}, t0, t1;
    unsigned nr = 0, nt = 0, sent;

    for (k = c; k < end; k++) {
      judge(sk, k, &now, &have_now);
      nr += w->slots[k].ctx.verdict != NTSNTP_SERVER_DROP;
    }
    for (k = c; k < end; k++) {
      int64_t wait =
          (int64_t)(nr - nt) * w->finish_ns + (int64_t)nt * w->spacing_ns;
      if (respond(sk, k, c + nt, wait, &read)) {
        if (nt++ == 0)
          first = read;
      }
      ntsntp_server_stats_count(&w->st, &w->slots[k].ctx);
    }
    if (nt == 0)
      continue;
    clock_gettime(CLOCK_REALTIME, &t0);
    sent = send_batch(sk, c, nt);
    clock_gettime(CLOCK_REALTIME, &t1);
    average(&w->finish_ns, (ns_of(&t0) - ns_of(&first)) / nt);
    if (sent > 1)
      average(&w->spacing_ns, (ns_of(&t1) - ns_of(&t0)) / sent);
  }
  publish(w);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  sock *sk = h->data;
  worker *w = sk->w;
  unsigned b, k;
  (void)events;

  if (status < 0 && sk->txts) {
    /* libuv reports a pending error-queue message (a transmit timestamp
     * that came after the send, e.g. from a busy device queue) as an
     * error and stops watching: read the queue and watch again. */
    errq_read(sk);
    if (uv_poll_start(h, UV_READABLE, on_readable) == 0)
      return;
  }
  if (status < 0) {
    /* Not expected for a UDP socket; stop rather than spin. */
    logf_(w->n, NTSNTP_LOG_ERR, "UDP worker %u: poll: %s; socket closed",
          w->idx, uv_strerror(status));
    uv_poll_stop(h);
    return;
  }
  for (b = 0; b < MAX_BATCHES; b++) {
    int r;
    for (k = 0; k < BATCH; k++) {
      struct msghdr *mh = &w->rmsg[k].msg_hdr;
      slot *sl = &w->slots[k];
      mh->msg_name = &sl->peer;
      mh->msg_namelen = sizeof(sl->peer);
      mh->msg_iov = &sl->riov;
      mh->msg_iovlen = 1;
      mh->msg_control = sl->rc.b;
      mh->msg_controllen = sizeof(sl->rc.b);
      mh->msg_flags = 0;
      w->rmsg[k].msg_len = 0;
    }
    r = recvmmsg(sk->fd, w->rmsg, BATCH, MSG_DONTWAIT, NULL);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        sock_errno(sk, "recvmmsg", errno);
      return;
    }
    if (r == 0)
      return;
    process_batch(sk, (unsigned)r);
    /* A short batch drained the queue; a full one may have left more. */
    if (r < BATCH)
      return;
  }
}

static void on_sock_closed(uv_handle_t *h) {
  sock *sk = h->data;
  close(sk->fd);
  sk->fd = -1;
}

static void close_worker_handles(worker *w) {
  size_t i;
  for (i = 0; i < w->n->n_addrs; i++) {
    sock *sk = &w->socks[i];
    if (sk->poll_init) {
      sk->poll_init = 0;
      uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
    } else if (sk->fd >= 0) {
      close(sk->fd);
      sk->fd = -1;
    }
  }
  if (w->stop_init) {
    w->stop_init = 0;
    uv_close((uv_handle_t *)&w->stop, NULL);
  }
  if (w->hw_timer_init) {
    w->hw_timer_init = 0;
    uv_close((uv_handle_t *)&w->hw_timer, NULL);
  }
}

static void on_stop(uv_async_t *h) {
  close_worker_handles(h->data);
}

static void worker_main(void *arg) {
  worker *w = arg;
  ntsntp_uv_ntp *n = w->n;
  char name[16];
  int rv;
  snprintf(name, sizeof(name), "ntsntp-udp%u", w->idx);
  pthread_setname_np(pthread_self(), name);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  publish(w);
  rv = uv_loop_close(&w->loop);
  assert(rv == 0);
  (void)rv;
  w->loop_init = 0;
  atomic_fetch_add_explicit(&n->n_exited, 1, memory_order_release);
  uv_async_send(&n->exited);
}

/* ---- start and stop (caller's thread) ---- */

static void free_all(ntsntp_uv_ntp *n) {
  unsigned i;
  size_t a;
  for (i = 0; n->workers != NULL && i < n->n_workers; i++) {
    for (a = 0; n->workers[i].socks != NULL && a < n->n_addrs; a++)
      ntsntp__mfree(n->workers[i].socks[a].txq);
    ntsntp__mfree(n->workers[i].socks);
    ntsntp__mfree(n->workers[i].slots);
  }
  ntsntp__mfree(n->workers);
  ntsntp__mfree(n->addrs);
  hw_close(n);
  ntsntp__mfree(n);
}

static void on_exited_closed(uv_handle_t *h) {
  ntsntp_uv_ntp *n = h->data;
  if (n->done != NULL)
    n->done(n->done_user);
  free_all(n);
}

static void on_exited(uv_async_t *h) {
  ntsntp_uv_ntp *n = h->data;
  unsigned i;
  if (n->closing ||
      atomic_load_explicit(&n->n_exited, memory_order_acquire) < n->n_workers)
    return;
  for (i = 0; i < n->n_workers; i++)
    uv_thread_join(&n->workers[i].thread);
  n->closing = 1;
  uv_close((uv_handle_t *)&n->exited, on_exited_closed);
}

void ntsntp_uv_ntp_stop(ntsntp_uv_ntp *n, void (*done)(void *user),
                        void *user) {
  unsigned i;
  if (n == NULL || n->stopping)
    return;
  n->stopping = 1;
  n->done = done;
  n->done_user = user;
  for (i = 0; i < n->n_workers; i++)
    uv_async_send(&n->workers[i].stop);
}

/* "0.0.0.0:123", "[::]:123" */
static void addr_port_text(const listen_addr *a, uint16_t port, char *buf,
                           size_t len) {
  if (a->ss.ss_family == AF_INET6)
    snprintf(buf, len, "[%s]:%u", a->text, port);
  else
    snprintf(buf, len, "%s:%u", a->text, port);
}

static int parse_addr(listen_addr *a, const char *text) {
  memset(a, 0, sizeof(*a));
  snprintf(a->text, sizeof(a->text), "%s", text);
  if (strchr(text, ':') == NULL) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    if (uv_ip4_addr(text, 0, sin) != 0)
      return -1;
    a->len = sizeof(*sin);
    a->wildcard = sin->sin_addr.s_addr == htonl(INADDR_ANY);
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    if (uv_ip6_addr(text, 0, sin6) != 0)
      return -1;
    a->len = sizeof(*sin6);
    a->wildcard = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
  }
  return 0;
}

static void set_port(listen_addr *a, uint16_t port) {
  if (a->ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
}

static const char *bind_hint(int err, uint16_t port) {
  switch (err) {
  case EACCES:
    return port < 1024 ? " (run as root or use NTP_PORT above 1023)" : "";
  case EADDRINUSE:
    return " (is another NTP server running?)";
  case EADDRNOTAVAIL:
    return " (address not configured on this host)";
  case EAFNOSUPPORT:
    return " (IPv6 disabled on this host?)";
  default:
    return "";
  }
}

/* Opens, configures and binds worker |w|'s socket for address |ai|.  The
 * first worker fixes the port when 0 was asked for. */
static int open_socket(ntsntp_uv_ntp *n, worker *w, size_t ai, char *errbuf,
                       size_t errlen) {
  listen_addr *a = &n->addrs[ai];
  sock *sk = &w->socks[ai];
  int one = 1, buf = SOCK_BUF, fd, e;
  int tsflags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  int txflags =
      tsflags | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
  /* Hardware: the card's stamps of received packets (with the interface,
   * OPT_PKTINFO), and of sent ones after the software stamp (OPT_TX_SWHW)
   * with the interface it left by (OPT_CMSG). */
  int hwflags = SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE |
                SOF_TIMESTAMPING_OPT_PKTINFO | SOF_TIMESTAMPING_OPT_TX_SWHW |
                SOF_TIMESTAMPING_OPT_CMSG;
  char where[sizeof(a->text) + 16];
  const char *step;

  sk->w = w;
  addr_port_text(a, a->port, where, sizeof(where));

  fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    e = errno;
    if (n->s.n_listen == 0 && a->ss.ss_family == AF_INET6 &&
        (e == EAFNOSUPPORT || e == EPROTONOSUPPORT)) {
      /* The default listens on both families; a host without IPv6 still
       * gets IPv4. */
      if (w->idx == 0)
        logf_(n, NTSNTP_LOG_WARN, "no IPv6 on this host: not serving %s",
              where);
      a->skip = 1;
      return 0;
    }
    ntsntp__errf(errbuf, errlen, "cannot open UDP socket for %s: %s%s", where,
                 strerror(e), bind_hint(e, a->port));
    errno = e;
    return NTSNTP_ERR_IO;
  }
  sk->fd = fd;

  step = "SO_REUSEPORT";
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
    goto fail;
  step = "IPV6_V6ONLY";
  if (a->ss.ss_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
    goto fail;
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  /* Transmit timestamps are asked for per datagram (add_cmsg); OPT_ID
   * numbers them, OPT_TSONLY leaves the packet out of the error queue. */
  sk->txq = n->s.tx_stamp != NULL ? ntsntp__calloc(TXQ_LEN, sizeof(*sk->txq)) : NULL;
  if (n->n_hw > 0 && sk->txq != NULL &&
      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &(int){txflags | hwflags},
                 sizeof(int)) == 0) {
    sk->txts = 1;
    sk->hw_stamps = 1;
    sk->tsflags = txflags | hwflags;
    /* The interface of each sent packet, on the error queue (several
     * cards: each has its own clock). */
    if (n->n_hw > 1 && !a->wildcard)
      (void)(a->ss.ss_family == AF_INET6
                 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one,
                              sizeof(one))
                 : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)));
  } else if (sk->txq != NULL &&
             setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &txflags,
                        sizeof(txflags)) == 0) {
    sk->txts = 1;
    sk->tsflags = txflags;
  } else if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &tsflags,
                        sizeof(tsflags)) != 0 &&
             setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) !=
                 0 &&
             w->idx == 0)
    logf_(n, NTSNTP_LOG_WARN,
          "no kernel receive timestamps on %s (%s): timestamps will be "
          "less accurate",
          where, strerror(errno));
  if (a->wildcard) {
    int rv =
        a->ss.ss_family == AF_INET6
            ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
            : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    if (rv == 0)
      sk->pktinfo = 1;
    else if (w->idx == 0)
      logf_(n, NTSNTP_LOG_WARN,
            "no packet info on %s (%s): on a multi-homed host, responses may "
            "leave from another address",
            where, strerror(errno));
  }
  step = "bind";
  set_port(a, a->port);
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
    e = errno;
    ntsntp__errf(errbuf, errlen, "cannot bind UDP %s: %s%s", where, strerror(e),
                 bind_hint(e, a->port));
    errno = e;
    return NTSNTP_ERR_IO;
  }
  if (a->port == 0) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    step = "getsockname";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
      goto fail;
    a->port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
  }
  return 0;

fail:
  e = errno;
  ntsntp__errf(errbuf, errlen, "cannot set up UDP socket for %s: %s: %s", where,
               step, strerror(e));
  errno = e;
  return NTSNTP_ERR_IO;
}

static int init_worker(ntsntp_uv_ntp *n, worker *w, char *errbuf,
                       size_t errlen) {
  size_t i;
  int rv;
  w->slots = ntsntp__calloc(BATCH, sizeof(*w->slots));
  w->socks = ntsntp__calloc(n->n_addrs, sizeof(*w->socks));
  if (w->slots == NULL || w->socks == NULL) {
    ntsntp__errf(errbuf, errlen, "out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  for (i = 0; i < n->n_addrs; i++)
    w->socks[i].fd = -1;
  for (i = 0; i < BATCH; i++) {
    w->slots[i].riov.iov_base = w->slots[i].in;
    w->slots[i].riov.iov_len = sizeof(w->slots[i].in);
  }
  atomic_init(&w->seq, 0);
  for (i = 0; i < STATS_WORDS; i++)
    atomic_init(&w->pub[i], 0);

  if ((rv = uv_loop_init(&w->loop)) != 0)
    goto uv_fail;
  w->loop_init = 1;
  if ((rv = uv_async_init(&w->loop, &w->stop, on_stop)) != 0)
    goto uv_fail;
  w->stop.data = w;
  w->stop_init = 1;
  if (n->n_hw > 0) {
    for (i = 0; i < n->n_hw; i++)
      ntsntp_hwclock_init(&w->hc[i]);
    if ((rv = uv_timer_init(&w->loop, &w->hw_timer)) != 0)
      goto uv_fail;
    w->hw_timer.data = w;
    w->hw_timer_init = 1;
    if ((rv = uv_timer_start(&w->hw_timer, on_hw_timer, 0, PHC_POLL_MS)) != 0)
      goto uv_fail;
  }
  for (i = 0; i < n->n_addrs; i++) {
    sock *sk = &w->socks[i];
    if (n->addrs[i].skip)
      continue;
    if ((rv = open_socket(n, w, i, errbuf, errlen)) != 0)
      return rv;
    if (n->addrs[i].skip)
      continue;
    if ((rv = uv_poll_init_socket(&w->loop, &sk->poll, sk->fd)) != 0)
      goto uv_fail;
    sk->poll.data = sk;
    sk->poll_init = 1;
    if ((rv = uv_poll_start(&sk->poll, UV_READABLE, on_readable)) != 0)
      goto uv_fail;
  }
  return 0;

uv_fail:
  ntsntp__errf(errbuf, errlen, "cannot set up UDP worker %u: %s", w->idx,
               uv_strerror(rv));
  errno = -rv;
  return NTSNTP_ERR_IO;
}

/* ---- steering by client (caller's thread, before the workers run) ---- */

typedef struct steer_prog {
  struct sock_filter f[STEER_MAX_INSNS];
  unsigned short len;
} steer_prog;

static void op(steer_prog *p, uint16_t code, uint32_t k) {
  assert(p->len < STEER_MAX_INSNS);
  p->f[p->len].code = code;
  p->f[p->len].jt = 0;
  p->f[p->len].jf = 0;
  p->f[p->len].k = k;
  p->len++;
}

/* A ^= A >> |s|; X is overwritten. */
static void xor_shift(steer_prog *p, uint32_t s) {
  op(p, BPF_MISC | BPF_TAX, 0);
  op(p, BPF_ALU | BPF_RSH | BPF_K, s);
  op(p, BPF_ALU | BPF_XOR | BPF_X, 0);
}

/*
 * The SO_REUSEPORT program for one address family: the source address cut
 * to |prefix| bits, hashed word by word (each word xor the hash so far,
 * then murmur3's 32-bit finaliser; the first word xor a secret seed),
 * modulo |n|.  The kernel runs it with the UDP payload as packet data;
 * negative SKF_NET_OFF offsets reach the IP header, where the IPv4 source
 * is the word at 12 and the IPv6 source the four words at 8 to 20 (no
 * IPv4-mapped sources: the IPv6 sockets are IPV6_V6ONLY).  Its result
 * indexes the group's sockets, which are in bind order: worker 0's first.
 */
static void build_steer_prog(steer_prog *p, int family, unsigned prefix,
                             uint32_t seed, unsigned n) {
  unsigned words = family == AF_INET ? 1 : 4;
  unsigned off = family == AF_INET ? 12 : 8, i;
  p->len = 0;
  for (i = 0; i < words && prefix > 32 * i; i++) {
    unsigned bits = prefix - 32 * i;
    op(p, BPF_LD | BPF_W | BPF_ABS,
       (uint32_t)(SKF_NET_OFF + (int)(off + 4 * i)));
    if (bits < 32)
      op(p, BPF_ALU | BPF_AND | BPF_K, ~(0xffffffffu >> bits));
    if (i == 0) {
      op(p, BPF_ALU | BPF_XOR | BPF_K, seed);
    } else {
      op(p, BPF_LDX | BPF_W | BPF_MEM, 0);
      op(p, BPF_ALU | BPF_XOR | BPF_X, 0);
    }
    xor_shift(p, 16);
    op(p, BPF_ALU | BPF_MUL | BPF_K, 0x85ebca6bu);
    xor_shift(p, 13);
    op(p, BPF_ALU | BPF_MUL | BPF_K, 0xc2b2ae35u);
    xor_shift(p, 16);
    if (i + 1 < words && prefix > 32 * (i + 1))
      op(p, BPF_ST, 0);
  }
  op(p, BPF_ALU | BPF_MOD | BPF_K, n);
  op(p, BPF_RET | BPF_A, 0);
}

/*
 * Attaches the steering program to each listen address's SO_REUSEPORT
 * group (through worker 0's socket; every socket of the group is bound by
 * now).  Returns 1 if every group steers by client, 0 (logged) if the
 * kernel refused.
 */
static int steer_by_client(ntsntp_uv_ntp *n) {
  uint32_t seed;
  size_t ai;
  if (n->n_workers == 1)
    return 1;
  /* The seed only keeps the spread of many addresses over the workers
   * unpredictable; a failure costs no correctness. */
  if (ntsntp_rand_default(NULL, (uint8_t *)&seed, sizeof(seed)) != 0)
    seed = 0x9e3779b9u;
  for (ai = 0; ai < n->n_addrs; ai++) {
    const listen_addr *a = &n->addrs[ai];
    char where[sizeof(a->text) + 16];
    struct sock_fprog fp;
    steer_prog p;
    if (a->skip)
      continue;
    build_steer_prog(&p, a->ss.ss_family,
                     a->ss.ss_family == AF_INET ? n->s.steer_v4_prefix
                                                : n->s.steer_v6_prefix,
                     seed, n->n_workers);
    memset(&fp, 0, sizeof(fp)); /* the padding after len goes to the kernel */
    fp.len = p.len;
    fp.filter = p.f;
    if (setsockopt(n->workers[0].socks[ai].fd, SOL_SOCKET,
                   SO_ATTACH_REUSEPORT_CBPF, &fp, sizeof(fp)) != 0) {
      addr_port_text(a, a->port, where, sizeof(where));
      logf_(n, NTSNTP_LOG_WARN,
            "cannot steer UDP %s by client address (SO_ATTACH_REUSEPORT_CBPF: "
            "%s; Linux 4.5 or later has it): the %u workers share one "
            "per-client table (rate limits stay per client, one lock for all)",
            where, strerror(errno), n->n_workers);
      return 0;
    }
  }
  return 1;
}

/* Undoes a failed start.  Workers whose thread runs are stopped and joined
 * (blocking briefly: this is the error path); the others' loops are run
 * here once to close their handles. */
static void abort_start(ntsntp_uv_ntp *n) {
  unsigned i;
  int saved = errno;
  for (i = 0; i < n->n_workers; i++) {
    worker *w = &n->workers[i];
    if (w->thread_started) {
      uv_async_send(&w->stop);
      uv_thread_join(&w->thread);
    } else if (w->loop_init) {
      close_worker_handles(w);
      uv_run(&w->loop, UV_RUN_DEFAULT);
      uv_loop_close(&w->loop);
      w->loop_init = 0;
    } else if (w->socks != NULL) {
      close_worker_handles(w);
    }
  }
  n->closing = 1;
  n->done = NULL;
  uv_close((uv_handle_t *)&n->exited, on_exited_closed);
  errno = saved;
}

int ntsntp_uv_ntp_start(uv_loop_t *loop, const ntsntp_uv_ntp_settings *s,
                        ntsntp_uv_ntp **out, char *errbuf, size_t errlen) {
  ntsntp_uv_ntp_settings latest;
  const char *const *names;
  ntsntp_uv_ntp *n;
  sigset_t all, old;
  unsigned i;
  size_t ai;
  int rv;

  ntsntp__errf(errbuf, errlen, "%s", "");
  if (out != NULL)
    *out = NULL;
  NTSNTP__SETTINGS_GET(s, latest, uv_ntp, errbuf, errlen);
  if (loop == NULL || s == NULL || out == NULL || s->server == NULL ||
      (s->n_listen > 0 && s->listen == NULL)) {
    ntsntp__errf(errbuf, errlen, "UDP NTP service: invalid arguments");
    return NTSNTP_ERR_INVALID_ARG;
  }
  n = ntsntp__calloc(1, sizeof(*n));
  if (n == NULL) {
    ntsntp__errf(errbuf, errlen, "out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  n->loop = loop;
  n->s = *s;
  n->s.listen = NULL; /* read only here */
  n->s.hw_ifaces = NULL;
  n->s.n_hw_ifaces = s->n_hw_ifaces;
  n->n_addrs = s->n_listen ? s->n_listen : 2;
  names = s->n_listen ? s->listen : ntsntp__sock_wildcards;
  n->n_workers = s->workers;
  if (n->n_workers == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n->n_workers = cpus < 1             ? 1
                   : cpus > MAX_WORKERS ? MAX_WORKERS
                                        : (unsigned)cpus;
  }
  atomic_init(&n->n_exited, 0);
  if (n->n_workers > MAX_WORKERS) {
    ntsntp__errf(errbuf, errlen, "UDP NTP service: at most %u workers",
                 MAX_WORKERS);
    free_all(n);
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (s->steer_by_client &&
      (s->steer_v4_prefix < 1 || s->steer_v4_prefix > 32 ||
       s->steer_v6_prefix < 1 || s->steer_v6_prefix > 128)) {
    ntsntp__errf(errbuf, errlen,
                 "UDP NTP service: steering prefixes %u and %u (want 1..32 "
                 "and 1..128)",
                 s->steer_v4_prefix, s->steer_v6_prefix);
    free_all(n);
    return NTSNTP_ERR_INVALID_ARG;
  }
  n->addrs = ntsntp__calloc(n->n_addrs, sizeof(*n->addrs));
  n->workers = ntsntp__calloc(n->n_workers, sizeof(*n->workers));
  if (n->addrs == NULL || n->workers == NULL) {
    ntsntp__errf(errbuf, errlen, "out of memory");
    free_all(n);
    return NTSNTP_ERR_NOMEM;
  }
  for (ai = 0; ai < n->n_addrs; ai++) {
    if (names[ai] == NULL || parse_addr(&n->addrs[ai], names[ai]) != 0) {
      ntsntp__errf(errbuf, errlen,
                   "invalid listen address \"%s\" (want a numeric IPv4 or IPv6 "
                   "address)",
                   names[ai] ? names[ai] : "(null)");
      free_all(n);
      return NTSNTP_ERR_INVALID_ARG;
    }
    n->addrs[ai].port = s->port;
  }
  for (i = 0; i < n->n_workers; i++) {
    n->workers[i].n = n;
    n->workers[i].idx = i;
  }
  if ((rv = hw_setup(n, s, errbuf, errlen)) != 0) {
    free_all(n);
    return rv;
  }

  if ((rv = uv_async_init(loop, &n->exited, on_exited)) != 0) {
    ntsntp__errf(errbuf, errlen, "cannot set up UDP NTP service: %s",
                 uv_strerror(rv));
    free_all(n);
    errno = -rv;
    return NTSNTP_ERR_IO;
  }
  n->exited.data = n;

  for (i = 0; i < n->n_workers; i++) {
    if ((rv = init_worker(n, &n->workers[i], errbuf, errlen)) != 0) {
      abort_start(n);
      return rv;
    }
  }
  /* Before the threads start: they read |shard| only. */
  if (n->s.steer_by_client)
    n->steered = steer_by_client(n);
  for (i = 0; i < n->n_workers; i++)
    n->workers[i].shard =
        n->s.steer_by_client && !n->steered ? 0 : n->workers[i].idx;

  /* Workers take no signals: the embedder's loop handles them. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (i = 0; i < n->n_workers; i++) {
    worker *w = &n->workers[i];
    if ((rv = uv_thread_create(&w->thread, worker_main, w)) != 0)
      break;
    w->thread_started = 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rv != 0) {
    ntsntp__errf(errbuf, errlen, "cannot start UDP worker thread: %s",
                 uv_strerror(rv));
    errno = -rv;
    abort_start(n);
    return NTSNTP_ERR_IO;
  }

  for (ai = 0; ai < n->n_addrs; ai++) {
    char where[sizeof(n->addrs[ai].text) + 16];
    if (n->addrs[ai].skip)
      continue;
    addr_port_text(&n->addrs[ai], n->addrs[ai].port, where, sizeof(where));
    logf_(n, NTSNTP_LOG_INFO, "serving NTP on UDP %s (%u worker%s%s)", where,
          n->n_workers, n->n_workers == 1 ? "" : "s",
          n->n_workers > 1 && n->steered ? ", each client address on one" : "");
  }
  *out = n;
  return 0;
}
