/* libntsntp runtime: access control and rate limiting for the service. */
#include <arpa/inet.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_svc.h"
#include "errtext.h"
#include "../mem.h"

/* ntsntp_ratelimit_new's smallest table. */
#define MIN_TABLE_BYTES 1024
/* As udp.c: workers 0 means one per online CPU, at most this many. */
#define MAX_WORKERS 1024
/* Longest ALLOW/DENY item: an IPv6 address with a prefix, and slack. */
#define MAX_ITEM 64

/* One NTP worker's table.  The padding keeps two workers' locks off one
 * cache line. */
typedef struct ntp_table {
  uv_mutex_t lock;
  ntsntp_ratelimit *rl;
  char pad[64];
} ntp_table;

/* Open NTS-KE connections of one client (/32 or /64) or one network
 * (/24 or /56); open addressing. */
typedef struct cap_ent {
  uint8_t key[16];
  uint8_t fam; /* 0: free; KEY_* */
  uint32_t count;
} cap_ent;

/* cap_ent.fam: what the key is. */
enum { KEY_V4 = 4, KEY_V4_NET = 5, KEY_V6 = 6, KEY_V6_NET = 7 };

struct ntsntp__access_svc {
  ntsntp_acl *acl;
  ntp_table *ntp;
  unsigned n_ntp, n_ntp_init;
  int ntp_steer; /* NTP tables: steer by client (limits, interleaved mode) */
  unsigned ntp_v4_prefix, ntp_v6_prefix; /* the NTP limiter's prefixes */
  uv_mutex_t ke_lock; /* guards ke_rl and cap */
  int ke_lock_init;
  ntsntp_ratelimit *ke_rl;
  cap_ent *cap;
  size_t cap_mask, cap_used;
  unsigned max_per_client, max_per_network; /* 0: no such cap */
  uint64_t seed[2];
  /* The IPv4 default gateway at start (network order; 0: none) and whether
   * a limit hit it yet: behind docker-proxy or NAT, many clients arrive
   * from that one address and share its limits. */
  uint32_t gateway;
  int gateway_warned; /* __atomic */
  ntsntp_log_fn log;
  void *log_user;
};

/* ---- ALLOW / DENY ---- */

static int add_list(ntsntp_acl *acl, const char *name, const char *list,
                    int allow, char *errbuf, size_t errlen) {
  const char *p = list;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char item[MAX_ITEM + 1];
    int rv;
    if (n == 0) {
      ntsntp__errf(errbuf, errlen, "%s=%.200s has an empty item; fix: separate "
               "networks with single commas", name, list);
      return NTSNTP_ERR_BAD_CONFIG;
    }
    rv = NTSNTP_ERR_BAD_CONFIG;
    if (n <= MAX_ITEM) {
      memcpy(item, p, n);
      item[n] = 0;
      rv = ntsntp_acl_add(acl, item, allow);
    }
    if (rv == NTSNTP_ERR_NOMEM) {
      ntsntp__errf(errbuf, errlen, "%s: out of memory", name);
      return rv;
    }
    if (rv) {
      ntsntp__errf(errbuf, errlen, "%s item \"%.*s\" is not a network; fix: use "
               "ADDRESS, ADDRESS/PREFIX with the host bits zero (192.0.2.1, "
               "10.0.0.0/8, 2001:db8::/32) or all, separated by commas "
               "without spaces", name, (int)(n < MAX_ITEM ? n : MAX_ITEM), p);
      return rv;
    }
    if (!comma)
      return 0;
    p = comma + 1;
  }
}

/* ---- open NTS-KE connections per client ---- */

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* The client (|net| 0: IPv4 /32, IPv6 /64, as the rate limiter's
 * defaults) or the network (|net| 1: IPv4 /24, IPv6 /56) an address
 * counts for; IPv4-mapped IPv6 counts as IPv4.  0: not an IP address. */
static uint8_t cap_key(const struct sockaddr *sa, int net, uint8_t key[16]) {
  memset(key, 0, 16);
  if (sa->sa_family == AF_INET) {
    memcpy(key, &((const struct sockaddr_in *)sa)->sin_addr, net ? 3 : 4);
    return net ? KEY_V4_NET : KEY_V4;
  }
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
      memcpy(key, a6->s6_addr + 12, net ? 3 : 4);
      return net ? KEY_V4_NET : KEY_V4;
    }
    memcpy(key, a6->s6_addr, net ? 7 : 8);
    return net ? KEY_V6_NET : KEY_V6;
  }
  return 0;
}

static size_t cap_hash(const ntsntp__access_svc *a, const cap_ent *e) {
  uint64_t w0, w1;
  memcpy(&w0, e->key, 8);
  memcpy(&w1, e->key + 8, 8);
  return (size_t)(mix64(a->seed[0] ^ w0 ^ e->fam) ^
                  mix64(a->seed[1] ^ w1)) & a->cap_mask;
}

/* Index of the entry for |e|'s key, or of the free slot ending its probe
 * sequence.  The table is at most half full, so a free slot exists. */
static size_t cap_find(const ntsntp__access_svc *a, const cap_ent *e) {
  size_t i = cap_hash(a, e);
  while (a->cap[i].fam &&
         (a->cap[i].fam != e->fam || memcmp(a->cap[i].key, e->key, 16)))
    i = (i + 1) & a->cap_mask;
  return i;
}

/* Backward-shift deletion: no tombstones, so probes stay short. */
static void cap_remove(ntsntp__access_svc *a, size_t i) {
  size_t j = i;
  a->cap_used--;
  for (;;) {
    a->cap[i].fam = 0;
    for (;;) {
      size_t k;
      j = (j + 1) & a->cap_mask;
      if (!a->cap[j].fam)
        return;
      k = cap_hash(a, &a->cap[j]);
      /* Entry j may stay unless its home k lies cyclically outside (i, j]. */
      if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
        continue;
      break;
    }
    a->cap[i] = a->cap[j];
    i = j;
  }
}

/* Open connections counted for |e|'s key (0 if none). */
static uint32_t cap_count(const ntsntp__access_svc *a, const cap_ent *e) {
  size_t i = cap_find(a, e);
  return a->cap[i].fam ? a->cap[i].count : 0;
}

static void cap_inc(ntsntp__access_svc *a, const cap_ent *e) {
  size_t i = cap_find(a, e);
  if (!a->cap[i].fam) {
    a->cap[i] = *e;
    a->cap[i].count = 0;
    a->cap_used++;
  }
  a->cap[i].count++;
}

static void cap_dec(ntsntp__access_svc *a, const cap_ent *e) {
  size_t i = cap_find(a, e);
  if (a->cap[i].fam && --a->cap[i].count == 0)
    cap_remove(a, i);
}

/* Takes one connection for the peer's client and network, or none: an
 * ntsntp_uv_ke_verdict.  Under ke_lock. */
static int cap_acquire(ntsntp__access_svc *a, const struct sockaddr *peer) {
  cap_ent c, n;
  if (!a->cap)
    return NTSNTP_UV_KE_ADMIT;
  if (!(c.fam = cap_key(peer, 0, c.key)))
    return NTSNTP_UV_KE_REFUSE;
  n.fam = cap_key(peer, 1, n.key);
  if (a->max_per_client && cap_count(a, &c) >= a->max_per_client)
    return NTSNTP_UV_KE_CLIENT_FULL;
  if (a->max_per_network && cap_count(a, &n) >= a->max_per_network)
    return NTSNTP_UV_KE_NETWORK_FULL;
  /* Sized so this never happens (see _new); kept safe if it does. */
  if (a->cap_used + 2 > (a->cap_mask + 1) / 2)
    return NTSNTP_UV_KE_REFUSE;
  if (a->max_per_client)
    cap_inc(a, &c);
  if (a->max_per_network)
    cap_inc(a, &n);
  return NTSNTP_UV_KE_ADMIT;
}

static void cap_release(ntsntp__access_svc *a, const struct sockaddr *peer) {
  cap_ent e;
  if (!a->cap || !(e.fam = cap_key(peer, 0, e.key)))
    return;
  if (a->max_per_client)
    cap_dec(a, &e);
  e.fam = cap_key(peer, 1, e.key);
  if (a->max_per_network)
    cap_dec(a, &e);
}

/* ---- clients that all look like the gateway ---- */

/* The IPv4 default gateway in /proc/net/route (network order, as the
 * kernel prints it in hex), or 0 when there is none or it cannot be read. */
static uint32_t default_gateway(void) {
  FILE *f = fopen("/proc/net/route", "re");
  char line[256], ifname[64];
  unsigned long dst, gw, flags;
  uint32_t found = 0;
  if (!f)
    return 0;
  while (!found && fgets(line, sizeof(line), f))
    if (sscanf(line, "%63s %lx %lx %lx", ifname, &dst, &gw, &flags) == 4 &&
        dst == 0 && (flags & RTF_GATEWAY) && gw)
      found = (uint32_t)gw;
  fclose(f);
  return found;
}

/* Once per process: a limit hit the default gateway's address. */
static void check_gateway(ntsntp__access_svc *a, const struct sockaddr *peer,
                          const char *limit) {
  char addr[INET_ADDRSTRLEN], msg[640];
  const uint8_t *p;
  if (!a->gateway || !a->log)
    return;
  if (peer->sa_family == AF_INET)
    p = (const uint8_t *)&((const struct sockaddr_in *)peer)->sin_addr;
  else if (peer->sa_family == AF_INET6 &&
           IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)peer)->sin6_addr))
    p = ((const struct sockaddr_in6 *)peer)->sin6_addr.s6_addr + 12;
  else
    return;
  if (memcmp(p, &a->gateway, 4) ||
      __atomic_exchange_n(&a->gateway_warned, 1, __ATOMIC_RELAXED))
    return;
  inet_ntop(AF_INET, &a->gateway, addr, sizeof(addr));
  snprintf(msg, sizeof(msg), "%s rate limit hit by %s, this host's default "
           "gateway: behind docker-proxy or NAT, many clients may arrive "
           "from that one address and share its limits; fix: Docker host "
           "networking (network_mode: host) or \"userland-proxy\": false in "
           "/etc/docker/daemon.json (docs/docker.md)", limit, addr);
  a->log(a->log_user, NTSNTP_LOG_WARN, msg);
}

/* ---- hooks ---- */

static int ntp_accept(void *user, unsigned worker,
                      const struct sockaddr *peer) {
  const ntsntp__access_svc *a = user;
  (void)worker;
  return !ntsntp_acl_check(a->acl, peer); /* 0 lets it through */
}

static int ntp_filter(void *user, unsigned worker, const struct sockaddr *peer,
                      ntsntp_server_ctx *ctx) {
  ntsntp__access_svc *a = user;
  ntp_table *t = &a->ntp[worker % a->n_ntp];
  ntsntp_xleave_state *xl;
  int v;
  uv_mutex_lock(&t->lock);
  v = ntsntp_ratelimit_check_xleave(t->rl, peer, uv_hrtime(), &xl);
  /* Interleaved mode: the client's state is in its record. */
  if (v == NTSNTP_RL_PASS && xl != NULL)
    ntsntp_server_ctx_xleave(ctx, xl);
  uv_mutex_unlock(&t->lock);
  if (v == NTSNTP_RL_PASS)
    return 0;
  check_gateway(a, peer, "NTP");
  /* Called before the NTS cryptography: an NTS request is still pending
   * here and ntsntp_server_ctx_ratelimit drops it (NTS clients ignore
   * unauthenticated KoDs); only a plain request gets the KoD. */
  if (v == NTSNTP_RL_KOD && ctx->verdict == NTSNTP_SERVER_RESPOND) {
    ntsntp_server_ctx_ratelimit(ctx);
    return 0;
  }
  ctx->reason = v < 0 ? NTSNTP_REASON_DENIED : NTSNTP_REASON_RATELIMIT;
  return 1;
}

/* A measured transmit time for the client's record (interleaved mode). */
static void ntp_tx_stamp(void *user, unsigned worker,
                         const struct sockaddr *peer, uint64_t rx, uint64_t tx,
                         ntsntp_ts_source src) {
  ntsntp__access_svc *a = user;
  ntp_table *t = &a->ntp[worker % a->n_ntp];
  ntsntp_xleave_state *xl;
  (void)src;
  uv_mutex_lock(&t->lock);
  xl = ntsntp_ratelimit_find(t->rl, peer);
  if (xl != NULL)
    ntsntp_xleave_state_tx(xl, rx, tx);
  uv_mutex_unlock(&t->lock);
}

/* An ntsntp_uv_ke_verdict.  The rate limit never leaks for NTS-KE (the
 * table has no_leak): a limited connection is always refused. */
static int ke_accept(void *user, const struct sockaddr *peer) {
  ntsntp__access_svc *a = user;
  int v;
  if (!ntsntp_acl_check(a->acl, peer))
    return NTSNTP_UV_KE_REFUSE;
  uv_mutex_lock(&a->ke_lock);
  v = ntsntp_ratelimit_check(a->ke_rl, peer, uv_hrtime()) == NTSNTP_RL_PASS
          ? cap_acquire(a, peer)
          : NTSNTP_UV_KE_RATELIMITED;
  uv_mutex_unlock(&a->ke_lock);
  if (v == NTSNTP_UV_KE_RATELIMITED || v == NTSNTP_UV_KE_CLIENT_FULL)
    check_gateway(a, peer, "NTS-KE");
  return v;
}

static void ke_release(void *user, const struct sockaddr *peer) {
  ntsntp__access_svc *a = user;
  uv_mutex_lock(&a->ke_lock);
  cap_release(a, peer);
  uv_mutex_unlock(&a->ke_lock);
}

void ntsntp__access_svc_wire_ntp(ntsntp__access_svc *a,
                                 ntsntp_uv_ntp_settings *ns) {
  ns->accept = ntp_accept;
  ns->accept_user = a;
  ns->filter = ntp_filter;
  ns->filter_user = a;
  ns->tx_stamp = ntp_tx_stamp;
  ns->tx_stamp_user = a;
  /* One table per worker counts a client's every request only if the
   * kernel sends them all to one worker, whatever the source port. */
  ns->steer_by_client = a->ntp_steer;
  ns->steer_v4_prefix = a->ntp_v4_prefix;
  ns->steer_v6_prefix = a->ntp_v6_prefix;
}

void ntsntp__access_svc_wire_ke(ntsntp__access_svc *a,
                                ntsntp_uv_ke_settings *ks) {
  ks->accept = ke_accept;
  ks->release = ke_release;
  ks->accept_user = a;
}

/* ---- ntsctl clients ---- */

static int same_client(const ntsntp_ratelimit_client *x,
                       const ntsntp_ratelimit_client *y) {
  if (x->addr.ss_family != y->addr.ss_family || x->prefix_len != y->prefix_len)
    return 0;
  if (x->addr.ss_family == AF_INET)
    return !memcmp(&((const struct sockaddr_in *)&x->addr)->sin_addr,
                   &((const struct sockaddr_in *)&y->addr)->sin_addr, 4);
  return !memcmp(&((const struct sockaddr_in6 *)&x->addr)->sin6_addr,
                 &((const struct sockaddr_in6 *)&y->addr)->sin6_addr, 16);
}

static int by_hits(const void *p, const void *q) {
  const ntsntp_ratelimit_client *x = p, *y = q;
  return x->hits < y->hits ? 1 : x->hits > y->hits ? -1 : 0;
}

/*
 * Each table's top |max| (a client sending from several ports may sit in
 * several workers' tables), merged by address.  The result is exact for
 * every client that is in the top |max| of each table it appears in, which
 * is what an operator looks for (the heavy hitters).
 */
size_t ntsntp__access_svc_clients(void *user, ntsntp_ctl_client *out,
                                  size_t max) {
  ntsntp__access_svc *a = user;
  ntsntp_ratelimit_client *all;
  size_t n = 0, m = 0, i, j;
  uint64_t now;
  if (!a->n_ntp || max == 0)
    return 0;
  all = ntsntp__calloc((size_t)a->n_ntp * max, sizeof(*all));
  if (!all)
    return 0;
  for (i = 0; i < a->n_ntp; i++) {
    uv_mutex_lock(&a->ntp[i].lock);
    n += ntsntp_ratelimit_top(a->ntp[i].rl, all + n, max);
    uv_mutex_unlock(&a->ntp[i].lock);
  }
  now = uv_hrtime();
  /* Few rows (workers x max): quadratic merging is fine and keeps the
   * code plain. */
  for (i = 0; i < n; i++) {
    for (j = 0; j < m && !same_client(&all[j], &all[i]); j++)
      ;
    if (j < m) {
      all[j].hits += all[i].hits;
      all[j].drops += all[i].drops;
      all[j].kods += all[i].kods;
      if (all[i].last_ns > all[j].last_ns)
        all[j].last_ns = all[i].last_ns;
    } else {
      all[m++] = all[i];
    }
  }
  qsort(all, m, sizeof(*all), by_hits);
  for (i = 0; i < m && i < max; i++) {
    ntsntp_ctl_client *o = &out[i];
    memset(o, 0, sizeof(*o));
    o->addr = all[i].addr;
    o->prefix_len = all[i].prefix_len;
    o->hits = all[i].hits;
    o->drops = all[i].drops;
    o->kods = all[i].kods;
    o->last_ago = all[i].last_ns <= now
                      ? (int64_t)((now - all[i].last_ns) / 1000000000u)
                      : -1;
  }
  ntsntp__mfree(all);
  return i;
}

/* monitoring: begin */
void ntsntp__access_svc_table_sizes(ntsntp__access_svc *a,
                                    ntsntp_ctl_ratelimit *out) {
  ntsntp_ratelimit_stats st;
  unsigned i;
  memset(out, 0, sizeof(*out));
  if (!a)
    return;
  for (i = 0; i < a->n_ntp; i++) {
    uv_mutex_lock(&a->ntp[i].lock);
    ntsntp_ratelimit_get_stats(a->ntp[i].rl, &st);
    uv_mutex_unlock(&a->ntp[i].lock);
    out->ntp_records += st.records;
    out->ntp_capacity += st.capacity;
  }
  if (a->ke_rl) {
    uv_mutex_lock(&a->ke_lock);
    ntsntp_ratelimit_get_stats(a->ke_rl, &st);
    uv_mutex_unlock(&a->ke_lock);
    out->ke_records = st.records;
    out->ke_capacity = st.capacity;
  }
}
/* monitoring: end */

/* ---- life cycle ---- */

void ntsntp__access_svc_del(ntsntp__access_svc *a) {
  unsigned i;
  if (!a)
    return;
  for (i = 0; i < a->n_ntp_init; i++) {
    ntsntp_ratelimit_del(a->ntp[i].rl);
    uv_mutex_destroy(&a->ntp[i].lock);
  }
  ntsntp__mfree(a->ntp);
  if (a->ke_lock_init)
    uv_mutex_destroy(&a->ke_lock);
  ntsntp_ratelimit_del(a->ke_rl);
  ntsntp__mfree(a->cap);
  ntsntp_acl_del(a->acl);
  ntsntp__mfree(a);
}

static int new_table(ntsntp_ratelimit **rl, const ntsntp_ratelimit_settings *s,
                     size_t bytes, const char *what, char *errbuf,
                     size_t errlen) {
  ntsntp_ratelimit_settings rs = *s;
  int rv;
  rs.max_bytes = bytes < MIN_TABLE_BYTES ? MIN_TABLE_BYTES : bytes;
  rv = ntsntp_ratelimit_new(rl, &rs, NULL, 0);
  if (rv)
    ntsntp__errf(errbuf, errlen, "%s rate limit: %s; fix: interval -19..12, "
             "burst 1..255, leak 1..4, kod 0..4 (0 for NTS-KE)", what,
             ntsntp_strerror(rv));
  return rv;
}

static unsigned resolve_workers(unsigned workers) {
  long cpus;
  if (workers)
    return workers;
  cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus < 1 ? 1 : cpus > MAX_WORKERS ? MAX_WORKERS : (unsigned)cpus;
}

static void log_start(const ntsntp__access_svc *a,
                      const ntsntp__access_svc_settings *s, size_t bytes) {
  char msg[1024];
  ntsntp_ratelimit_stats st;
  int k = 0;
  if (!s->log)
    return;
  k = snprintf(msg, sizeof(msg), "Access: allow %s, deny %s",
               s->allow && *s->allow ? s->allow : "all",
               s->deny && *s->deny ? s->deny : "none");
  if (a->n_ntp && k > 0 && (size_t)k < sizeof(msg)) {
    ntsntp_ratelimit_get_stats(a->ntp[0].rl, &st);
    k += snprintf(msg + k, sizeof(msg) - (size_t)k,
                  "; NTP rate limit %s (interval %d, burst %u, leak %u, kod "
                  "%u), %zu clients x %u tables (%zu bytes in all)",
                  s->ntp.enabled ? "on" : "off", s->ntp.interval,
                  s->ntp.burst, s->ntp.leak, s->ntp.kod, st.capacity,
                  a->n_ntp, bytes);
  }
  if (a->ke_rl && k > 0 && (size_t)k < sizeof(msg)) {
    ntsntp_ratelimit_get_stats(a->ke_rl, &st);
    k += snprintf(msg + k, sizeof(msg) - (size_t)k,
                  "; NTS-KE rate limit %s (interval %d, burst %u, no leak), "
                  "%zu clients; NTS-KE connections at most %u per client, "
                  "%u per network (0: no cap)",
                  s->ke.enabled ? "on" : "off", s->ke.interval, s->ke.burst,
                  st.capacity, a->max_per_client, a->max_per_network);
  }
  s->log(s->log_user, NTSNTP_LOG_INFO, msg);
  if (a->ke_rl && s->ke.leak)
    s->log(s->log_user, NTSNTP_LOG_WARN,
           "NTS_RATELIMIT_LEAK is ignored: a rate-limited NTS-KE connection "
           "is always closed (TCP sources cannot be spoofed, so a leak would "
           "only let part of a flood through); fix: remove the setting");
}

int ntsntp__access_svc_new(ntsntp__access_svc **out,
                           const ntsntp__access_svc_settings *s,
                           char *errbuf, size_t errlen) {
  ntsntp__access_svc *a = ntsntp__calloc(1, sizeof(*a));
  size_t total = s->client_log_limit ? s->client_log_limit
                                     : NTSNTP_RL_DEFAULT_MAX_BYTES;
  size_t ke_bytes = 0, per = 0, used = 0;
  ntsntp_ratelimit_settings ke_rs;
  int rv;
  unsigned i;
  if (!a)
    return NTSNTP_ERR_NOMEM;
  a->gateway = default_gateway();
  a->log = s->log;
  a->log_user = s->log_user;
  rv = ntsntp_acl_new(&a->acl, 0, NULL, errbuf, errlen);
  if (rv == 0)
    rv = add_list(a->acl, "ALLOW",
                  s->allow && *s->allow ? s->allow : "all", 1, errbuf, errlen);
  if (rv == 0 && s->deny && *s->deny)
    rv = add_list(a->acl, "DENY", s->deny, 0, errbuf, errlen);
  if (rv)
    goto fail;
  /* CLIENT_LOG_LIMIT covers all tables: NTS-KE takes an eighth (it sees
   * far fewer clients), the NTP workers share the rest equally. */
  if (s->want_ke)
    ke_bytes = total / 8 > MIN_TABLE_BYTES ? total / 8 : MIN_TABLE_BYTES;
  if (s->want_ntp) {
    a->n_ntp = resolve_workers(s->ntp_workers);
    per = (total > ke_bytes ? total - ke_bytes : 0) / a->n_ntp;
    a->ntp = ntsntp__calloc(a->n_ntp, sizeof(*a->ntp));
    if (!a->ntp) {
      rv = NTSNTP_ERR_NOMEM;
      goto fail;
    }
    /* Steered also without limiting: the interleaved-mode state of a
     * client is in one worker's table, which must see all its requests
     * (chrony changes its source port for every request). */
    a->ntp_steer = 1;
    a->ntp_v4_prefix = s->ntp.v4_prefix;
    a->ntp_v6_prefix = s->ntp.v6_prefix;
  }
  for (i = 0; i < a->n_ntp; i++) {
    rv = new_table(&a->ntp[i].rl, &s->ntp, per, "NTP", errbuf, errlen);
    if (rv)
      goto fail;
    if (uv_mutex_init(&a->ntp[i].lock)) {
      ntsntp_ratelimit_del(a->ntp[i].rl);
      rv = NTSNTP_ERR_NOMEM;
      goto fail;
    }
    a->n_ntp_init++;
    used += ntsntp_ratelimit_memory(a->ntp[i].rl);
  }
  if (s->want_ke) {
    if (uv_mutex_init(&a->ke_lock)) {
      rv = NTSNTP_ERR_NOMEM;
      goto fail;
    }
    a->ke_lock_init = 1;
    ke_rs = s->ke;
    ke_rs.no_leak = 1; /* TCP: never let a limited connection through */
    rv = new_table(&a->ke_rl, &ke_rs, ke_bytes, "NTS-KE", errbuf, errlen);
    if (rv)
      goto fail;
    used += ntsntp_ratelimit_memory(a->ke_rl);
    /* A cap at or above max_connections never binds: none. */
    if (s->max_per_client < s->max_connections)
      a->max_per_client = s->max_per_client;
    if (s->max_per_network < s->max_connections)
      a->max_per_network = s->max_per_network;
    if (a->max_per_client || a->max_per_network) {
      /* ke_tcp.c releases a connection's entries as it decides to close
       * it, before the next accept on that thread: at most max_connections
       * plus one per thread (8 at most) hold entries, two each.  A table
       * twice that size never fills beyond half. */
      size_t cap = 16;
      while (cap < 4 * ((size_t)s->max_connections + 8))
        cap *= 2;
      a->cap = ntsntp__calloc(cap, sizeof(*a->cap));
      if (!a->cap) {
        rv = NTSNTP_ERR_NOMEM;
        goto fail;
      }
      /* A secret hash seed: clients cannot pick colliding addresses. */
      if (ntsntp_rand_default(NULL, (uint8_t *)a->seed, sizeof(a->seed))) {
        rv = NTSNTP_ERR_CRYPTO;
        ntsntp__errf(errbuf, errlen, "access control: no random bytes");
        goto fail;
      }
      a->cap_mask = cap - 1;
    }
  }
  log_start(a, s, used);
  *out = a;
  return 0;
fail:
  if (rv == NTSNTP_ERR_NOMEM)
    ntsntp__errf(errbuf, errlen, "access control: out of memory");
  ntsntp__access_svc_del(a);
  return rv;
}
