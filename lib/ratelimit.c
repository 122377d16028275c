/*
 * libntsntp: per-client response rate limiting in a fixed-size table
 * (chrony's ratelimit, ntsratelimit and clientloglimit), sans I/O.
 * Semantics and the eviction policy are documented in ntsntp/access.h.
 *
 * Hashing: SipHash-2-4 with a 128-bit key from the rand callback, over the
 * 16-byte masked address.  nettle 3.8 has no SipHash; a cheaper non-keyed
 * mix would let an attacker who learns the function aim every spoofed
 * source at one bucket and evict a chosen client, so the ~40 ns of a real
 * keyed PRF per packet is worth it.  The same PRF in counter mode, under a
 * second key, draws the leak and KoD decisions: unpredictable, and no
 * system call on the packet path.
 */
#include <netinet/in.h>
#include <string.h>

#include "errtext.h"

#include "ntsntp/access.h"
#include "ntsntp/server.h"
#include "settings.h"

#define WAYS 8

/* One client: 56 bytes.  hits == 0 marks an empty slot. */
typedef struct rl_rec {
  uint8_t addr[16]; /* masked; IPv4 as ::ffff:a.b.c.d */
  uint64_t tat;     /* GCRA theoretical arrival time, ns */
  uint32_t hits, drops, kods;
  uint32_t last; /* now_ns >> 30 (about seconds) */
  /* Interleaved mode: the client's last request and its response. */
  ntsntp_xleave_state xl;
} rl_rec;

_Static_assert(sizeof(rl_rec) == 56, "record size is documented");

struct ntsntp_ratelimit {
  const ntsntp_mem *mem;
  int enabled, no_leak;
  unsigned leak, kod, v4_prefix, v6_prefix;
  uint64_t t;   /* ns per response: 2^interval s */
  uint64_t tau; /* debt allowed before limiting: (burst - 1) * t */
  uint64_t cap; /* largest debt kept: burst * t */
  size_t nbuckets, used;
  uint64_t hkey[2], rkey[2];
  uint64_t rctr, rbits; /* leak/KoD random stream */
  unsigned rleft;
  ntsntp_ratelimit_stats st;
  size_t bytes;
  rl_rec recs[]; /* nbuckets * WAYS */
};

/* ---- SipHash-2-4 (Aumasson, Bernstein), little-endian words ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                  \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                     \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                     \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                  \
  } while (0)

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* SipHash-2-4 of |len| bytes, |len| a multiple of 8 (all we need). */
static uint64_t siphash(const uint64_t k[2], const uint8_t *m, size_t len) {
  uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL, v1 = k[1] ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL, v3 = k[1] ^ 0x7465646279746573ULL;
  uint64_t b = (uint64_t)len << 56, w;
  size_t i;
  for (i = 0; i < len; i += 8) {
    w = le64(m + i);
    v3 ^= w;
    SIPROUND;
    SIPROUND;
    v0 ^= w;
  }
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* |k| random bits (k <= 4) from the keyed stream. */
static unsigned rand_bits(ntsntp_ratelimit *rl, unsigned k) {
  unsigned r;
  if (rl->rleft < k) {
    uint8_t ctr[8];
    uint64_t c = rl->rctr++;
    int i;
    for (i = 0; i < 8; i++)
      ctr[i] = (uint8_t)(c >> (8 * i));
    rl->rbits = siphash(rl->rkey, ctr, sizeof(ctr));
    rl->rleft = 64;
  }
  r = (unsigned)(rl->rbits & ((1u << k) - 1));
  rl->rbits >>= k;
  rl->rleft -= k;
  return r;
}

/* NTP's defaults; NTS-KE's differ in two fields (settings_default). */
static void ratelimit_fill(void *p) {
  ntsntp_ratelimit_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->enabled = 1;
  s->interval = 3;
  s->burst = 8;
  s->leak = 2;
  s->kod = 0;
  s->max_bytes = NTSNTP_RL_DEFAULT_MAX_BYTES;
  s->v4_prefix = 32;
  s->v6_prefix = 64;
  s->rand = ntsntp_rand_default;
}
static const size_t ratelimit_sizes[NTSNTP_SETTINGS_VERSION] = {
    NTSNTP__SIZE_THROUGH(ntsntp_ratelimit_settings, mem)};

void ntsntp_ratelimit_settings_default_versioned(int version,
                                                 ntsntp_ratelimit_settings *s,
                                                 ntsntp_rl_service service) {
  ntsntp_ratelimit_settings tmp;
  ntsntp__settings_default(s, version, &tmp, ratelimit_fill, ratelimit_sizes,
                           NTSNTP_SETTINGS_VERSION);
  if (service == NTSNTP_RL_SERVICE_NTSKE && version >= NTSNTP_SETTINGS_V1 &&
      version <= NTSNTP_SETTINGS_VERSION) {
    s->interval = 6;
    s->no_leak = 1;
  }
}

int ntsntp_ratelimit_new(ntsntp_ratelimit **prl,
                         const ntsntp_ratelimit_settings *s, char *errbuf,
                         size_t errlen) {
  ntsntp_ratelimit_settings def;
  const ntsntp_mem *mem;
  ntsntp_ratelimit *rl;
  uint8_t key[32];
  size_t nb, bytes;
  uint64_t t;

  if (!prl) {
    ntsntp__errf(errbuf, errlen,
                 "rate limit: no place for the result "
                 "(prl is NULL)");
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (!s) {
    ntsntp_ratelimit_settings_default(&def, NTSNTP_RL_SERVICE_NTP);
    s = &def;
  } else {
    NTSNTP__SETTINGS_GET(s, def, ratelimit, errbuf, errlen);
  }
  if (s->interval < NTSNTP_RL_MIN_INTERVAL ||
      s->interval > NTSNTP_RL_MAX_INTERVAL || s->burst < 1 ||
      s->burst > NTSNTP_RL_MAX_BURST ||
      (!s->no_leak &&
       (s->leak < NTSNTP_RL_MIN_LEAK || s->leak > NTSNTP_RL_MAX_LEAK)) ||
      s->kod > NTSNTP_RL_MAX_KOD || s->v4_prefix < 1 || s->v4_prefix > 32 ||
      s->v6_prefix < 1 || s->v6_prefix > 128 || s->max_bytes < 1024 ||
      !s->rand) {
    ntsntp__errf(
        errbuf, errlen,
        "rate limit settings out of range: interval %d (%d..%d), "
        "burst %d (1..%d), leak %d (%d..%d unless no_leak), kod %d "
        "(at most %d), prefixes /%d and /%d (1..32, 1..128), "
        "max_bytes %zu (at least 1024), rand %s; fix: start from "
        "ntsntp_ratelimit_settings_default",
        (int)s->interval, NTSNTP_RL_MIN_INTERVAL, NTSNTP_RL_MAX_INTERVAL,
        (int)s->burst, NTSNTP_RL_MAX_BURST, (int)s->leak, NTSNTP_RL_MIN_LEAK,
        NTSNTP_RL_MAX_LEAK, (int)s->kod, NTSNTP_RL_MAX_KOD, (int)s->v4_prefix,
        (int)s->v6_prefix, (size_t)s->max_bytes, s->rand ? "set" : "missing");
    return NTSNTP_ERR_INVALID_ARG;
  }
  mem = s->mem ? s->mem : ntsntp_mem_default();
  _Static_assert(sizeof(*rl) + WAYS * sizeof(rl_rec) <= 1024,
                 "1024 bytes hold one bucket");

  nb = (s->max_bytes - sizeof(*rl)) / (WAYS * sizeof(rl_rec));
  if (nb > UINT32_MAX)
    nb = UINT32_MAX; /* the bucket index is taken from 32 hash bits */
  bytes = sizeof(*rl) + nb * WAYS * sizeof(rl_rec);
  rl = mem->calloc(1, bytes, mem->user);
  if (!rl) {
    ntsntp__errf(errbuf, errlen,
                 "rate limit: out of memory for its %zu "
                 "byte table; fix: a smaller max_bytes",
                 bytes);
    return NTSNTP_ERR_NOMEM;
  }
  if (s->rand(s->rand_user, key, sizeof(key))) {
    mem->free(rl, mem->user);
    ntsntp__errf(errbuf, errlen,
                 "rate limit: the random source failed "
                 "(hash key)");
    return NTSNTP_ERR_CRYPTO;
  }
  rl->hkey[0] = le64(key);
  rl->hkey[1] = le64(key + 8);
  rl->rkey[0] = le64(key + 16);
  rl->rkey[1] = le64(key + 24);
  ntsntp_secure_clear(key, sizeof(key));

  if (s->interval >= 0)
    t = 1000000000ULL << s->interval;
  else
    t = 1000000000ULL >> -s->interval; /* >= 1907 ns */
  rl->mem = mem;
  rl->enabled = s->enabled != 0;
  rl->no_leak = s->no_leak != 0;
  rl->leak = s->leak;
  rl->kod = s->kod;
  rl->v4_prefix = s->v4_prefix;
  rl->v6_prefix = s->v6_prefix;
  rl->t = t;
  rl->tau = (uint64_t)(s->burst - 1) * t;
  rl->cap = (uint64_t)s->burst * t;
  rl->nbuckets = nb;
  rl->bytes = bytes;
  rl->st.capacity = nb * WAYS;
  *prl = rl;
  return 0;
}

void ntsntp_ratelimit_del(ntsntp_ratelimit *rl) {
  if (!rl)
    return;
  ntsntp_secure_clear(rl->hkey, sizeof(rl->hkey));
  ntsntp_secure_clear(rl->rkey, sizeof(rl->rkey));
  rl->mem->free(rl, rl->mem->user);
}

size_t ntsntp_ratelimit_memory(const ntsntp_ratelimit *rl) {
  return rl ? rl->bytes : 0;
}

/* Zeroes the bits of |a| past |plen|. */
static void mask_addr(uint8_t a[16], unsigned plen) {
  unsigned i;
  for (i = 0; i < 16; i++) {
    if (plen >= 8 * (i + 1))
      continue;
    if (plen <= 8 * i)
      a[i] = 0;
    else
      a[i] &= (uint8_t)(0xff00u >> (plen - 8 * i));
  }
}

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The table key of |sa|: IPv4 (also when mapped) as ::ffff:a.b.c.d. */
static int peer_key(const ntsntp_ratelimit *rl, const struct sockaddr *sa,
                    uint8_t a[16]) {
  if (sa->sa_family == AF_INET) {
    memcpy(a, v4mapped, 12);
    memcpy(a + 12,
           &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    mask_addr(a, 96 + rl->v4_prefix);
  } else if (sa->sa_family == AF_INET6) {
    memcpy(a, ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr,
           16);
    mask_addr(a, memcmp(a, v4mapped, 12) == 0 ? 96 + rl->v4_prefix
                                              : rl->v6_prefix);
  } else {
    return NTSNTP_ERR_INVALID_ARG;
  }
  return 0;
}

/* The bucket of key |a|. */
static rl_rec *bucket(const ntsntp_ratelimit *rl, const uint8_t a[16]) {
  uint64_t h = siphash(rl->hkey, a, 16);
  /* Lemire's multiply-shift maps 32 hash bits onto any bucket count. */
  return (rl_rec *)rl->recs +
         (size_t)(((h >> 32) * (uint64_t)rl->nbuckets) >> 32) * WAYS;
}

struct ntsntp_xleave_state *ntsntp_ratelimit_find(ntsntp_ratelimit *rl,
                                                  const struct sockaddr *peer) {
  uint8_t a[16];
  rl_rec *b;
  size_t i;
  if (!rl || !peer || peer_key(rl, peer, a))
    return NULL;
  b = bucket(rl, a);
  for (i = 0; i < WAYS; i++)
    if (b[i].hits != 0 && memcmp(b[i].addr, a, sizeof(a)) == 0)
      return &b[i].xl;
  return NULL;
}

int ntsntp_ratelimit_check(ntsntp_ratelimit *rl, const struct sockaddr *peer,
                           uint64_t now_ns) {
  return ntsntp_ratelimit_check_xleave(rl, peer, now_ns, NULL);
}

int ntsntp_ratelimit_check_xleave(ntsntp_ratelimit *rl,
                                  const struct sockaddr *peer, uint64_t now_ns,
                                  struct ntsntp_xleave_state **xl) {
  uint8_t a[16];
  rl_rec *b, *r = NULL, *empty = NULL, *victim = NULL;
  uint64_t debt, vdebt = 0;
  size_t i;

  if (xl)
    *xl = NULL;
  if (!rl || !peer || peer_key(rl, peer, a))
    return NTSNTP_ERR_INVALID_ARG;
  b = bucket(rl, a);
  for (i = 0; i < WAYS; i++) {
    rl_rec *e = &b[i];
    if (e->hits == 0) {
      if (!empty)
        empty = e;
      continue;
    }
    if (memcmp(e->addr, a, sizeof(a)) == 0) {
      r = e;
      break;
    }
    /* Victim: least in debt, then fewest hits (see access.h). */
    debt = e->tat > now_ns ? e->tat - now_ns : 0;
    if (!victim || debt < vdebt || (debt == vdebt && e->hits < victim->hits)) {
      victim = e;
      vdebt = debt;
    }
  }
  if (!r) {
    if (empty) {
      r = empty;
      rl->used++;
    } else {
      r = victim;
      rl->st.evictions++;
    }
    memcpy(r->addr, a, sizeof(a));
    r->tat = now_ns;
    r->hits = r->drops = r->kods = 0;
    /* A new client, or one whose record was evicted: basic mode until
     * it has a request on record again. */
    memset(&r->xl, 0, sizeof(r->xl));
  }
  if (r->hits != UINT32_MAX)
    r->hits++;
  r->last = (uint32_t)(now_ns >> 30);
  rl->st.checks++;
  if (xl)
    *xl = &r->xl;
  if (!rl->enabled)
    return NTSNTP_RL_PASS;

  /* GCRA: the bucket holds (burst * t - debt) / t responses. */
  if (r->tat < now_ns)
    r->tat = now_ns;
  else if (r->tat - now_ns > rl->cap)
    r->tat = now_ns; /* more debt than possible: time went backwards */
  if (r->tat - now_ns <= rl->tau) {
    r->tat += rl->t;
    return NTSNTP_RL_PASS;
  }
  rl->st.limited++;
  /* chrony: answered (normally) once in 2^leak on average. */
  if (!rl->no_leak && rand_bits(rl, rl->leak) == 0) {
    rl->st.leaked++;
    return NTSNTP_RL_PASS;
  }
  if (rl->kod && rand_bits(rl, rl->kod) == 0) {
    rl->st.kods++;
    if (r->kods != UINT32_MAX)
      r->kods++;
    return NTSNTP_RL_KOD;
  }
  rl->st.drops++;
  if (r->drops != UINT32_MAX)
    r->drops++;
  return NTSNTP_RL_DROP;
}

static void to_client(const ntsntp_ratelimit *rl, const rl_rec *r,
                      ntsntp_ratelimit_client *c) {
  memset(c, 0, sizeof(*c));
  if (memcmp(r->addr, v4mapped, 12) == 0) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&c->addr;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, r->addr + 12, 4);
    c->prefix_len = rl->v4_prefix;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&c->addr;
    s6->sin6_family = AF_INET6;
    memcpy(s6->sin6_addr.s6_addr, r->addr, 16);
    c->prefix_len = rl->v6_prefix;
  }
  c->hits = r->hits;
  c->drops = r->drops;
  c->kods = r->kods;
  c->last_ns = (uint64_t)r->last << 30;
}

size_t ntsntp_ratelimit_top(const ntsntp_ratelimit *rl,
                            ntsntp_ratelimit_client *out, size_t n) {
  size_t i, k = 0, j;
  if (!rl || !out || n == 0)
    return 0;
  for (i = 0; i < rl->nbuckets * WAYS; i++) {
    const rl_rec *r = &rl->recs[i];
    if (r->hits == 0 || (k == n && r->hits <= out[n - 1].hits))
      continue;
    /* Insertion into the sorted prefix; the last one falls off if full. */
    j = k < n ? k++ : n - 1;
    while (j > 0 && out[j - 1].hits < r->hits) {
      out[j] = out[j - 1];
      j--;
    }
    to_client(rl, r, &out[j]);
  }
  return k;
}

void ntsntp_ratelimit_get_stats(const ntsntp_ratelimit *rl,
                                ntsntp_ratelimit_stats *st) {
  *st = rl->st;
  st->records = rl->used;
}
