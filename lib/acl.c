/*
 * libntsntp: access control list (chrony's allow/deny), sans I/O.
 *
 * Rules are kept per family as (prefix, verdict).  After every change they
 * are compiled into a sorted list of disjoint ranges [start_i, start_i+1)
 * with one verdict each, so a check is one binary search over 128-bit
 * starts.  Prefixes are either nested or disjoint, so the compile step is a
 * walk over the rules sorted by (start, length) with a stack of the
 * enclosing prefixes.  IPv4 addresses live in the top 32 bits of the same
 * 128-bit representation, so one code path serves both families.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "errtext.h"

#include "ntsntp/access.h"

typedef struct u128 {
  uint64_t hi, lo;
} u128;

typedef struct acl_rule {
  u128 net;
  unsigned plen; /* 0..128, in the 128-bit representation */
  int allow;
} acl_rule;

/* Compiled ranges of one family: start[0] is always 0. */
typedef struct acl_ranges {
  size_t n;
  u128 *start;
  uint8_t *allow;
} acl_ranges;

enum { FAM_V4 = 0, FAM_V6 = 1 };

struct ntsntp_acl {
  const ntsntp_mem *mem;
  int def; /* verdict of the whole space ("all") */
  size_t nrules[2];
  acl_rule *rules[2];
  acl_ranges r[2];
};

static u128 mask_of(unsigned plen) {
  u128 m = {0, 0};
  if (plen == 0)
    return m;
  if (plen <= 64) {
    m.hi = ~(uint64_t)0 << (64 - plen);
  } else {
    m.hi = ~(uint64_t)0;
    m.lo = ~(uint64_t)0 << (128 - plen);
  }
  return m;
}

static u128 and128(u128 a, u128 b) {
  u128 r = {a.hi & b.hi, a.lo & b.lo};
  return r;
}

static int eq128(u128 a, u128 b) { return a.hi == b.hi && a.lo == b.lo; }

static int cmp128(u128 a, u128 b) {
  if (a.hi != b.hi)
    return a.hi < b.hi ? -1 : 1;
  if (a.lo != b.lo)
    return a.lo < b.lo ? -1 : 1;
  return 0;
}

static u128 last_of(const acl_rule *r) {
  u128 m = mask_of(r->plen), e = {r->net.hi | ~m.hi, r->net.lo | ~m.lo};
  return e;
}

static int is_max(u128 a) { return a.hi == ~(uint64_t)0 && a.lo == ~(uint64_t)0; }

static u128 inc128(u128 a) {
  a.lo++;
  if (a.lo == 0)
    a.hi++;
  return a;
}

static int contains(const acl_rule *r, u128 a) {
  return eq128(and128(a, mask_of(r->plen)), r->net);
}

static u128 from_bytes(const uint8_t *b, size_t n) {
  u128 a = {0, 0};
  size_t i;
  for (i = 0; i < n; i++) {
    if (i < 8)
      a.hi |= (uint64_t)b[i] << (56 - 8 * i);
    else
      a.lo |= (uint64_t)b[i] << (56 - 8 * (i - 8));
  }
  return a;
}

static int rule_cmp(const void *x, const void *y) {
  const acl_rule *a = x, *b = y;
  int c = cmp128(a->net, b->net);
  if (c)
    return c;
  return a->plen < b->plen ? -1 : a->plen > b->plen;
}

/* Appends [addr, ...) with verdict |v|, merging with its neighbours. */
static void emit(acl_ranges *r, u128 addr, int v) {
  if (r->n > 0 && eq128(r->start[r->n - 1], addr)) {
    /* A nested prefix starts where its parent does: it wins. */
    r->allow[r->n - 1] = (uint8_t)v;
    if (r->n >= 2 && r->allow[r->n - 2] == v)
      r->n--;
    return;
  }
  if (r->n > 0 && r->allow[r->n - 1] == v)
    return;
  r->start[r->n] = addr;
  r->allow[r->n] = (uint8_t)v;
  r->n++;
}

/* Compiles sorted |rules| into |out| (room for 2 * n + 1 ranges). */
static void compile(const acl_rule *rules, size_t n, int def,
                    acl_ranges *out) {
  acl_rule stack[130];
  size_t sp = 0, i;
  u128 zero = {0, 0};

  out->n = 0;
  stack[sp].net = zero;
  stack[sp].plen = 0;
  stack[sp++].allow = def;
  emit(out, zero, def);
  for (i = 0; i < n; i++) {
    /* Close the prefixes that end before this rule starts. */
    while (!contains(&stack[sp - 1], rules[i].net)) {
      u128 end = last_of(&stack[--sp]);
      if (!is_max(end))
        emit(out, inc128(end), stack[sp - 1].allow);
    }
    emit(out, rules[i].net, rules[i].allow);
    /* Strictly longer than the enclosing prefix: depth <= 129. */
    stack[sp++] = rules[i];
  }
  while (sp > 1) {
    u128 end = last_of(&stack[--sp]);
    if (!is_max(end))
      emit(out, inc128(end), stack[sp - 1].allow);
  }
}

/* Builds new compiled ranges for |rules| into |out|; NOMEM on failure. */
static int build(const ntsntp_mem *mem, const acl_rule *rules, size_t n,
                 int def, acl_ranges *out) {
  size_t cap = 2 * n + 1;
  out->start = mem->malloc(cap * sizeof(*out->start), mem->user);
  out->allow = mem->malloc(cap, mem->user);
  if (!out->start || !out->allow) {
    if (out->start)
      mem->free(out->start, mem->user);
    if (out->allow)
      mem->free(out->allow, mem->user);
    return NTSNTP_ERR_NOMEM;
  }
  compile(rules, n, def, out);
  return 0;
}

static void ranges_free(const ntsntp_mem *mem, acl_ranges *r) {
  if (r->start)
    mem->free(r->start, mem->user);
  if (r->allow)
    mem->free(r->allow, mem->user);
  r->start = NULL;
  r->allow = NULL;
  r->n = 0;
}

int ntsntp_acl_new(ntsntp_acl **pacl, int default_allow, const ntsntp_mem *mem,
                   char *errbuf, size_t errlen) {
  ntsntp_acl *acl;
  int f;
  if (!pacl) {
    ntsntp__errf(errbuf, errlen,
                 "access list: no place for the result "
                 "(pacl is NULL)");
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (!mem)
    mem = ntsntp_mem_default();
  acl = mem->calloc(1, sizeof(*acl), mem->user);
  if (!acl) {
    ntsntp__errf(errbuf, errlen, "access list: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  acl->mem = mem;
  acl->def = default_allow != 0;
  for (f = 0; f < 2; f++) {
    if (build(mem, NULL, 0, acl->def, &acl->r[f])) {
      ntsntp_acl_del(acl);
      ntsntp__errf(errbuf, errlen, "access list: out of memory");
      return NTSNTP_ERR_NOMEM;
    }
  }
  *pacl = acl;
  return 0;
}

void ntsntp_acl_del(ntsntp_acl *acl) {
  int f;
  if (!acl)
    return;
  for (f = 0; f < 2; f++) {
    ranges_free(acl->mem, &acl->r[f]);
    if (acl->rules[f])
      acl->mem->free(acl->rules[f], acl->mem->user);
  }
  acl->mem->free(acl, acl->mem->user);
}

/* Decimal 0..max, no sign, no leading zeros.  Returns -1 when malformed. */
static int parse_prefix(const char *s, unsigned max) {
  unsigned v = 0;
  size_t i, n = strlen(s);
  if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
    return -1;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  return v <= max ? (int)v : -1;
}

/* Parses an address or subnet into |fam|, |r|.  BAD_CONFIG if malformed. */
static int parse_spec(const char *spec, int *fam, acl_rule *r) {
  char buf[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(spec, '/');
  size_t alen = slash ? (size_t)(slash - spec) : strlen(spec);
  uint8_t b[16];
  int p;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

  if (alen == 0 || alen >= sizeof(buf))
    return NTSNTP_ERR_BAD_CONFIG;
  memcpy(buf, spec, alen);
  buf[alen] = 0;
  /* inet_pton is strict: four dotted decimals for IPv4 (no "1.2.3", no
   * leading zeros in glibc), no spaces, no zone index for IPv6. */
  if (inet_pton(AF_INET, buf, b) == 1) {
    *fam = FAM_V4;
    p = slash ? parse_prefix(slash + 1, 32) : 32;
    if (p < 0)
      return NTSNTP_ERR_BAD_CONFIG;
    r->net = from_bytes(b, 4);
    r->plen = (unsigned)p;
  } else if (inet_pton(AF_INET6, buf, b) == 1) {
    p = slash ? parse_prefix(slash + 1, 128) : 128;
    if (p < 0)
      return NTSNTP_ERR_BAD_CONFIG;
    if (p >= 96 && memcmp(b, mapped, sizeof(mapped)) == 0) {
      /* ::ffff:a.b.c.d/96+n is the IPv4 subnet a.b.c.d/n. */
      *fam = FAM_V4;
      r->net = from_bytes(b + 12, 4);
      r->plen = (unsigned)p - 96;
    } else {
      *fam = FAM_V6;
      r->net = from_bytes(b, 16);
      r->plen = (unsigned)p;
    }
  } else {
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (!eq128(and128(r->net, mask_of(r->plen)), r->net))
    return NTSNTP_ERR_BAD_CONFIG; /* host bits set */
  return 0;
}

int ntsntp_acl_add(ntsntp_acl *acl, const char *spec, int allow) {
  acl_rule r, *rules;
  acl_ranges nr;
  size_t n, i;
  int fam, rv;

  if (!acl || !spec)
    return NTSNTP_ERR_INVALID_ARG;
  allow = allow != 0;
  if (strcmp(spec, "all") == 0) {
    acl_ranges a4, a6;
    if (build(acl->mem, NULL, 0, allow, &a4))
      return NTSNTP_ERR_NOMEM;
    if (build(acl->mem, NULL, 0, allow, &a6)) {
      ranges_free(acl->mem, &a4);
      return NTSNTP_ERR_NOMEM;
    }
    for (fam = 0; fam < 2; fam++) {
      ranges_free(acl->mem, &acl->r[fam]);
      if (acl->rules[fam])
        acl->mem->free(acl->rules[fam], acl->mem->user);
      acl->rules[fam] = NULL;
      acl->nrules[fam] = 0;
    }
    acl->r[FAM_V4] = a4;
    acl->r[FAM_V6] = a6;
    acl->def = allow;
    return 0;
  }
  rv = parse_spec(spec, &fam, &r);
  if (rv)
    return rv;
  r.allow = allow;

  /* Work on a copy so that a failure leaves the list as it was. */
  n = acl->nrules[fam];
  rules = acl->mem->malloc((n + 1) * sizeof(*rules), acl->mem->user);
  if (!rules)
    return NTSNTP_ERR_NOMEM;
  if (n)
    memcpy(rules, acl->rules[fam], n * sizeof(*rules));
  for (i = 0; i < n; i++)
    if (rules[i].plen == r.plen && eq128(rules[i].net, r.net))
      break;
  rules[i] = r; /* replaces the same prefix, or appends */
  if (i == n) {
    n++;
    qsort(rules, n, sizeof(*rules), rule_cmp);
  }
  if (build(acl->mem, rules, n, acl->def, &nr)) {
    acl->mem->free(rules, acl->mem->user);
    return NTSNTP_ERR_NOMEM;
  }
  ranges_free(acl->mem, &acl->r[fam]);
  if (acl->rules[fam])
    acl->mem->free(acl->rules[fam], acl->mem->user);
  acl->rules[fam] = rules;
  acl->nrules[fam] = n;
  acl->r[fam] = nr;
  return 0;
}

int ntsntp_acl_check(const ntsntp_acl *acl, const struct sockaddr *sa) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const acl_ranges *r;
  const uint8_t *b;
  u128 a;
  size_t lo, hi;

  if (!acl || !sa)
    return 0;
  if (sa->sa_family == AF_INET) {
    b = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)
            ->sin_addr;
    a = from_bytes(b, 4);
    r = &acl->r[FAM_V4];
  } else if (sa->sa_family == AF_INET6) {
    b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    if (memcmp(b, mapped, sizeof(mapped)) == 0) {
      a = from_bytes(b + 12, 4);
      r = &acl->r[FAM_V4];
    } else {
      a = from_bytes(b, 16);
      r = &acl->r[FAM_V6];
    }
  } else {
    return 0;
  }
  /* Last range whose start is <= a; start[0] is 0, so there is one. */
  lo = 0;
  hi = r->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp128(r->start[mid], a) <= 0)
      lo = mid;
    else
      hi = mid;
  }
  return r->allow[lo];
}
