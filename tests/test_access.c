/* Access control list and rate limiter (ntsntp/access.h). */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

#include "ntsntp/access.h"
#include "testutil.h"

/* ---- helpers ---- */

static struct sockaddr_storage ss_buf;

/* Parses a literal into a sockaddr (static storage, one at a time). */
static const struct sockaddr *sa(const char *lit) {
  memset(&ss_buf, 0, sizeof(ss_buf));
  if (strchr(lit, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&ss_buf;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(123);
    ck_assert_int_eq(inet_pton(AF_INET6, lit, &s6->sin6_addr), 1);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss_buf;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(123);
    ck_assert_int_eq(inet_pton(AF_INET, lit, &s4->sin_addr), 1);
  }
  return (const struct sockaddr *)&ss_buf;
}

static uint64_t xs_state = 88172645463325252ULL;
static uint64_t xorshift(void) {
  xs_state ^= xs_state << 13;
  xs_state ^= xs_state >> 7;
  xs_state ^= xs_state << 17;
  return xs_state;
}

static int det_rand(void *user, uint8_t *buf, size_t len) {
  size_t i;
  (void)user;
  for (i = 0; i < len; i++)
    buf[i] = (uint8_t)xorshift();
  return 0;
}

/* Allocator that counts calls, and can fail. */
static size_t n_alloc, n_ok, n_free;
static int fail_alloc;
static void *counted(void *p) {
  n_alloc++;
  n_ok += p != NULL;
  return p;
}
static void *c_malloc(size_t n, void *u) {
  (void)u;
  return counted(fail_alloc ? NULL : malloc(n));
}
static void c_free(void *p, void *u) {
  (void)u;
  n_free++;
  free(p);
}
static void *c_calloc(size_t a, size_t b, void *u) {
  (void)u;
  return counted(fail_alloc ? NULL : calloc(a, b));
}
static void *c_realloc(void *p, size_t n, void *u) {
  (void)u;
  return counted(fail_alloc ? NULL : realloc(p, n));
}
static const ntsntp_mem counting_mem = {NULL, c_malloc, c_free, c_calloc,
                                        c_realloc};

/* ---- ACL ---- */

START_TEST(test_acl_parse_good) {
  static const char *good[] = {
      "all",          "10.0.0.0/8",    "192.0.2.1",        "192.0.2.1/32",
      "0.0.0.0/0",    "2001:db8::/32", "::/0",             "::1",
      "::1/128",      "fe80::/10",     "::ffff:10.0.0.0/104", "10.0.0.0/9",
      "255.255.255.255"};
  ntsntp_acl *acl;
  size_t i;
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, NULL, NULL, 0), 0);
  for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    ck_assert_msg(ntsntp_acl_add(acl, good[i], 1) == 0, "%s", good[i]);
  ntsntp_acl_del(acl);
}
END_TEST

START_TEST(test_acl_parse_bad) {
  static const char *bad[] = {
      "10.0.0.0/33", "1.2.3",       "::/129",       "all/8",
      "",            "10.0.0.0/8x", " 10.0.0.0/8",  "10.0.0.0/8 ",
      "10.0.0.0/",   "/8",          "10.0.0.0/-1",  "10.0.0.0/+8",
      "10.0.0.0/08", "10.0.0.1/8",  "2001:db8::1/32", "fe80::1%eth0",
      "10/8",        "1.2.3.4.5",   "256.0.0.0",    "ALL",
      "all ",        "10.0.0.0//8", "10.0.0.0/8/8", "::ffff:10.0.0.1/104",
      "10.0.0.0/1000", "gggg::",    "1.2.3.4/32\n", "2001:db8::/33x"};
  ntsntp_acl *acl;
  size_t i;
  ck_assert_int_eq(ntsntp_acl_new(&acl, 0, NULL, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "192.168.0.0/16", 1), 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(ntsntp_acl_add(acl, bad[i], 1) == NTSNTP_ERR_BAD_CONFIG,
                  "'%s'", bad[i]);
  ck_assert_int_eq(ntsntp_acl_add(acl, NULL, 1), NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_acl_add(NULL, "all", 1), NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_acl_new(NULL, 1, NULL, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  /* No partial state: only the one good rule is in effect. */
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("192.168.1.1")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.0.0.1")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("1.2.3.4")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8::1")), 0);
  ntsntp_acl_del(acl);
}
END_TEST

START_TEST(test_acl_nomem_unchanged) {
  ntsntp_acl *acl;
  n_alloc = n_ok = n_free = 0;
  fail_alloc = 0;
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, &counting_mem, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "10.0.0.0/8", 0), 0);
  fail_alloc = 1;
  ck_assert_int_eq(ntsntp_acl_add(acl, "10.1.0.0/16", 1), NTSNTP_ERR_NOMEM);
  ck_assert_int_eq(ntsntp_acl_add(acl, "all", 1), NTSNTP_ERR_NOMEM);
  fail_alloc = 0;
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.0.1")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("11.0.0.1")), 1);
  ntsntp_acl_del(acl);
  /* Every successful allocation was freed. */
  ck_assert_uint_eq(n_free, n_ok);
  ck_assert_uint_gt(n_alloc, n_ok);
  fail_alloc = 1;
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, &counting_mem, NULL, 0),
                   NTSNTP_ERR_NOMEM);
  fail_alloc = 0;
}
END_TEST

static void check_nested(ntsntp_acl *acl) {
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("9.255.255.255")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.0.0.0")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.0.0.1")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.0.0")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.0")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.3")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.4")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.255")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.3.0")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.255.255")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.2.0.0")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.255.255.255")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("11.0.0.0")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("255.255.255.255")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("0.0.0.0")), 1);
  /* IPv6 untouched by IPv4 rules. */
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8::1")), 1);
  /* IPv4-mapped IPv6 is IPv4. */
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::ffff:10.1.2.3")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::ffff:10.1.2.4")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::ffff:11.1.2.4")), 1);
}

START_TEST(test_acl_nested) {
  static const char *spec[] = {"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24",
                               "10.1.2.3"};
  static const int allow[] = {0, 1, 0, 1};
  ntsntp_acl *acl;
  int i;
  /* Nesting decides, not the order of the lines. */
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, NULL, NULL, 0), 0);
  for (i = 0; i < 4; i++)
    ck_assert_int_eq(ntsntp_acl_add(acl, spec[i], allow[i]), 0);
  check_nested(acl);
  ntsntp_acl_del(acl);
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, NULL, NULL, 0), 0);
  for (i = 3; i >= 0; i--)
    ck_assert_int_eq(ntsntp_acl_add(acl, spec[i], allow[i]), 0);
  check_nested(acl);
  /* The same prefix again: the later rule wins. */
  ck_assert_int_eq(ntsntp_acl_add(acl, "10.1.2.3/32", 0), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.3")), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "::ffff:10.1.2.3", 1), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.3")), 1);
  /* "all" resets every earlier rule. */
  ck_assert_int_eq(ntsntp_acl_add(acl, "all", 1), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.0.0.1")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.4")), 1);
  ck_assert_int_eq(ntsntp_acl_add(acl, "all", 0), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("10.1.2.3")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::1")), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "192.168.0.0/16", 1), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("192.168.7.7")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("192.169.0.0")), 0);
  /* 0.0.0.0/0 sets IPv4 only and keeps narrower rules. */
  ck_assert_int_eq(ntsntp_acl_add(acl, "0.0.0.0/0", 1), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "172.16.0.0/12", 0), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("8.8.8.8")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("172.20.0.1")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("192.168.7.7")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8::1")), 0);
  ntsntp_acl_del(acl);
}
END_TEST

START_TEST(test_acl_ipv6) {
  ntsntp_acl *acl;
  struct sockaddr_un_like {
    sa_family_t f;
    char pad[30];
  } other = {AF_UNIX, {0}};
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, NULL, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "2001:db8::/32", 0), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "2001:db8:1::/48", 1), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "2001:db8:1::5", 0), 0);
  ck_assert_int_eq(
      ntsntp_acl_add(acl, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0), 0);
  ck_assert_int_eq(ntsntp_acl_add(acl, "8000::/1", 1), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db7:ffff::")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8::")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8:1::4")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8:1::5")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8:1::6")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8:2::")), 0);
  ck_assert_int_eq(
      ntsntp_acl_check(acl, sa("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db9::")), 1);
  ck_assert_int_eq(
      ntsntp_acl_check(acl, sa("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")), 1);
  ck_assert_int_eq(
      ntsntp_acl_check(acl, sa("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), 0);
  /* ::/0 deny: all IPv6, but mapped IPv4 is IPv4. */
  ck_assert_int_eq(ntsntp_acl_add(acl, "::/0", 0), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::1")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("2001:db8:1::4")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::ffff:1.2.3.4")), 1);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("1.2.3.4")), 1);
  /* An IPv6 rule inside ::ffff:0:0/96 is an IPv4 rule. */
  ck_assert_int_eq(ntsntp_acl_add(acl, "::ffff:192.168.0.0/112", 0), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("192.168.5.5")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("::ffff:192.168.5.5")), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, sa("192.169.5.5")), 1);
  /* Unknown families and NULL are denied. */
  ck_assert_int_eq(ntsntp_acl_check(acl, (const struct sockaddr *)&other), 0);
  ck_assert_int_eq(ntsntp_acl_check(acl, NULL), 0);
  ck_assert_int_eq(ntsntp_acl_check(NULL, sa("1.2.3.4")), 0);
  ntsntp_acl_del(acl);
}
END_TEST

/* Random rules against a brute-force longest-prefix match. */
#define NREF 300
struct ref_rule {
  uint32_t net;
  unsigned plen;
  int allow;
};

static int ref_check(const struct ref_rule *r, size_t n, int def,
                     uint32_t a) {
  int best = -1, v = def;
  size_t i;
  for (i = 0; i < n; i++) {
    uint32_t m = r[i].plen ? ~0u << (32 - r[i].plen) : 0;
    if ((a & m) == r[i].net && (int)r[i].plen >= best) {
      /* >= : a later rule for the same prefix replaces the earlier one */
      best = (int)r[i].plen;
      v = r[i].allow;
    }
  }
  return v;
}

START_TEST(test_acl_random_vs_reference) {
  static struct ref_rule r[NREF];
  ntsntp_acl *acl;
  size_t i, n = 0;
  char buf[64];
  int def = _i & 1;
  ck_assert_int_eq(ntsntp_acl_new(&acl, def, NULL, NULL, 0), 0);
  for (i = 0; i < NREF; i++) {
    /* Few top bits so that prefixes nest and collide often. */
    uint32_t a = (uint32_t)xorshift() & 0xF0F0FF00u;
    unsigned plen = (unsigned)(xorshift() % 33);
    uint32_t m = plen ? ~0u << (32 - plen) : 0;
    r[n].net = a & m;
    r[n].plen = plen;
    r[n].allow = (int)(xorshift() & 1);
    snprintf(buf, sizeof(buf), "%u.%u.%u.%u/%u", r[n].net >> 24,
             r[n].net >> 16 & 255, r[n].net >> 8 & 255, r[n].net & 255, plen);
    ck_assert_int_eq(ntsntp_acl_add(acl, buf, r[n].allow), 0);
    n++;
  }
  for (i = 0; i < 200000; i++) {
    uint32_t a = (uint32_t)xorshift();
    struct sockaddr_in s4;
    if (i & 1)
      a &= 0xF0F0FFFFu;
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    s4.sin_addr.s_addr = htonl(a);
    ck_assert_int_eq(ntsntp_acl_check(acl, (struct sockaddr *)&s4),
                     ref_check(r, n, def, a));
  }
  ntsntp_acl_del(acl);
}
END_TEST

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* 1000 IPv6 /64 rules, 2001:db8:I:7I::/64 each, deny for even I, under a
 * default of allow.  A probe is 2001:db8:K>>8:K&0xff:<64 random bits> for
 * K = x % 1000, so it is in rule I exactly when I == K >> 8 and
 * 7 * I == (K & 0xff): K is 0 (I 0), 263 (I 1), 526 (I 2) or 789 (I 3),
 * and only 0 and 526 are denied.  The time per check is printed for the
 * record; speed is the benchmark's business, not an assertion here
 * (valgrind runs this suite too). */
START_TEST(test_acl_many_rules) {
  ntsntp_acl *acl;
  struct sockaddr_in6 s6;
  char buf[64];
  double t0, ns;
  unsigned i, allowed = 0, expect = 0;
  ck_assert_int_eq(ntsntp_acl_new(&acl, 1, NULL, NULL, 0), 0);
  for (i = 0; i < 1000; i++) {
    snprintf(buf, sizeof(buf), "2001:db8:%x:%x::/64", i, i * 7);
    ck_assert_int_eq(ntsntp_acl_add(acl, buf, (int)(i & 1)), 0);
  }
  memset(&s6, 0, sizeof(s6));
  s6.sin6_family = AF_INET6;
  t0 = now_s();
  for (i = 0; i < 1000000; i++) {
    uint64_t x = xorshift();
    unsigned k = (unsigned)(x % 1000);
    memcpy(s6.sin6_addr.s6_addr, "\x20\x01\x0d\xb8", 4);
    s6.sin6_addr.s6_addr[4] = 0;
    s6.sin6_addr.s6_addr[5] = (uint8_t)(k >> 8);
    s6.sin6_addr.s6_addr[6] = 0;
    s6.sin6_addr.s6_addr[7] = (uint8_t)k;
    memcpy(s6.sin6_addr.s6_addr + 8, &x, 8);
    allowed += (unsigned)ntsntp_acl_check(acl, (struct sockaddr *)&s6);
    expect += k != 0 && k != 526;
  }
  ns = (now_s() - t0) * 1e3;
  printf("acl: 1000 IPv6 rules, %.0f ns per check (%u allowed)\n", ns,
         allowed);
  ck_assert_uint_eq(allowed, expect);
  ck_assert_uint_lt(allowed, 1000000); /* the denies were hit */
  ntsntp_acl_del(acl);
}
END_TEST

/* ---- rate limiter ---- */

static void rl_settings(ntsntp_ratelimit_settings *s) {
  ntsntp_ratelimit_settings_default(s, NTSNTP_RL_SERVICE_NTP);
  s->rand = det_rand;
}

#define SEC 1000000000ULL
static const uint64_t T0 = 1000 * SEC;

START_TEST(test_rl_settings) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl;
  ntsntp_ratelimit_settings_default(&s, NTSNTP_RL_SERVICE_NTP);
  ck_assert_int_eq(s.enabled, 1);
  ck_assert_int_eq(s.interval, 3);
  ck_assert_uint_eq(s.burst, 8);
  ck_assert_uint_eq(s.leak, 2);
  ck_assert_uint_eq(s.kod, 0);
  ck_assert_uint_eq(s.max_bytes, 524288);
  ntsntp_ratelimit_settings_default(&s, NTSNTP_RL_SERVICE_NTSKE);
  ck_assert_int_eq(s.interval, 6);
  ck_assert_int_eq(ntsntp_ratelimit_new(NULL, &s, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
#define BAD(field, val)                                                        \
  do {                                                                         \
    rl_settings(&s);                                                           \
    s.field = val;                                                             \
    ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0),                   \
                     NTSNTP_ERR_INVALID_ARG);                                  \
  } while (0)
  BAD(interval, -20);
  BAD(interval, 13);
  BAD(burst, 0);
  BAD(burst, 256);
  BAD(leak, 0);
  BAD(leak, 5);
  BAD(kod, 5);
  BAD(max_bytes, 1000);
  BAD(v4_prefix, 0);
  BAD(v4_prefix, 33);
  BAD(v6_prefix, 129);
  BAD(rand, NULL);
#undef BAD
  rl_settings(&s);
  s.interval = -19;
  s.max_bytes = 1024;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  ck_assert_uint_le(ntsntp_ratelimit_memory(rl), 1024);
  ck_assert_int_eq(ntsntp_ratelimit_check(rl, sa("1.2.3.4"), T0),
                   NTSNTP_RL_PASS);
  ntsntp_ratelimit_del(rl);
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, NULL, NULL, 0), 0); /* defaults */
  ck_assert_uint_le(ntsntp_ratelimit_memory(rl), 524288);
  ntsntp_ratelimit_del(rl);
  ntsntp_ratelimit_del(NULL);
}
END_TEST

START_TEST(test_rl_burst_then_leak) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl;
  ntsntp_ratelimit_stats st;
  unsigned i, pass = 0, drop = 0, kod = 0;
  rl_settings(&s);
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  for (i = 0; i < 8; i++)
    ck_assert_int_eq(ntsntp_ratelimit_check(rl, sa("192.0.2.1"), T0),
                     NTSNTP_RL_PASS);
  ntsntp_ratelimit_get_stats(rl, &st);
  ck_assert_uint_eq(st.limited, 0);
  for (i = 0; i < 40000; i++) {
    int v = ntsntp_ratelimit_check(rl, sa("192.0.2.1"), T0 + i);
    pass += v == NTSNTP_RL_PASS;
    drop += v == NTSNTP_RL_DROP;
    kod += v == NTSNTP_RL_KOD;
  }
  ntsntp_ratelimit_get_stats(rl, &st);
  ck_assert_uint_eq(st.limited, 40000);
  ck_assert_uint_eq(st.leaked, pass);
  ck_assert_uint_eq(st.drops, drop);
  /* leak 2: one in four answered; kod 0: the rest dropped. */
  ck_assert_uint_eq(kod, 0);
  ck_assert_uint_gt(pass, 9000);
  ck_assert_uint_lt(pass, 11000);
  ck_assert_uint_eq(st.records, 1);
  ntsntp_ratelimit_del(rl);

  /* kod 1: of the limited, 1/4 leak, 3/8 KoD, 3/8 drop. */
  rl_settings(&s);
  s.kod = 1;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  pass = drop = kod = 0;
  for (i = 0; i < 8; i++)
    ntsntp_ratelimit_check(rl, sa("2001:db8::1"), T0);
  for (i = 0; i < 80000; i++) {
    int v = ntsntp_ratelimit_check(rl, sa("2001:db8::1"), T0);
    pass += v == NTSNTP_RL_PASS;
    drop += v == NTSNTP_RL_DROP;
    kod += v == NTSNTP_RL_KOD;
  }
  ck_assert_uint_gt(pass, 18000);
  ck_assert_uint_lt(pass, 22000);
  ck_assert_uint_gt(kod, 28000);
  ck_assert_uint_lt(kod, 32000);
  ck_assert_uint_gt(drop, 28000);
  ck_assert_uint_lt(drop, 32000);
  ntsntp_ratelimit_del(rl);

  /* leak 4: one in sixteen. */
  rl_settings(&s);
  s.leak = 4;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  pass = 0;
  for (i = 0; i < 8 + 160000; i++)
    pass += ntsntp_ratelimit_check(rl, sa("192.0.2.1"), T0) == NTSNTP_RL_PASS;
  ck_assert_uint_gt(pass, 8 + 9000);
  ck_assert_uint_lt(pass, 8 + 11000);
  ntsntp_ratelimit_del(rl);
}
END_TEST

/* Requests that were limited (found the bucket empty). */
static uint64_t limited(ntsntp_ratelimit *rl) {
  ntsntp_ratelimit_stats st;
  ntsntp_ratelimit_get_stats(rl, &st);
  return st.limited;
}

START_TEST(test_rl_interval_recovery) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl;
  unsigned i;
  uint64_t t = T0, l;
  rl_settings(&s);
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  /* A client polling every 8 s (2^3) is never limited. */
  for (i = 0; i < 1000; i++, t += 8 * SEC)
    ck_assert_int_eq(ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t),
                     NTSNTP_RL_PASS);
  ck_assert_uint_eq(limited(rl), 0);
  /* Nor after a burst of 8 once the bucket refilled... */
  t += 64 * SEC;
  for (i = 0; i < 8; i++)
    ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), 0);
  /* ...but the 9th request at once is. */
  ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), 1);
  /* 8 s later exactly one response is back. */
  t += 8 * SEC;
  ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), 1);
  ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), 2);
  /* Long silence refills at most |burst|. */
  t += 100000 * SEC;
  for (i = 0; i < 8; i++)
    ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), 2);
  ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), 3);
  /* Polling at twice the rate: half of the requests are limited. */
  l = limited(rl);
  t += 64 * SEC;
  for (i = 0; i < 1000; i++, t += 4 * SEC)
    ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  l = limited(rl) - l;
  ck_assert_uint_ge(l, 490);
  ck_assert_uint_le(l, 500);
  /* Monotonic time going back does not lock a client out. */
  t -= 1000000 * SEC;
  l = limited(rl);
  for (i = 0; i < 8; i++)
    ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), l);
  ntsntp_ratelimit_check(rl, sa("198.51.100.7"), t);
  ck_assert_uint_eq(limited(rl), l + 1);
  ntsntp_ratelimit_del(rl);
}
END_TEST

START_TEST(test_rl_aggregation_and_top) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl;
  ntsntp_ratelimit_client top[3];
  char buf[INET6_ADDRSTRLEN];
  unsigned i;
  rl_settings(&s);
  s.burst = 2;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  /* Same /64: one client. */
  ck_assert_int_eq(ntsntp_ratelimit_check(rl, sa("2001:db8:0:1::1"), T0), 0);
  ck_assert_int_eq(ntsntp_ratelimit_check(rl, sa("2001:db8:0:1::2"), T0), 0);
  ck_assert_uint_eq(limited(rl), 0);
  ntsntp_ratelimit_check(rl, sa("2001:db8:0:1:ffff::"), T0);
  ck_assert_uint_eq(limited(rl), 1);
  /* Another /64: its own bucket. */
  ntsntp_ratelimit_check(rl, sa("2001:db8:0:2::1"), T0);
  ck_assert_uint_eq(limited(rl), 1);
  /* IPv4 and IPv4-mapped: one client. */
  ntsntp_ratelimit_check(rl, sa("192.0.2.1"), T0);
  ntsntp_ratelimit_check(rl, sa("::ffff:192.0.2.1"), T0);
  ck_assert_uint_eq(limited(rl), 1);
  ntsntp_ratelimit_check(rl, sa("::ffff:192.0.2.1"), T0);
  ck_assert_uint_eq(limited(rl), 2);
  /* Unsupported family. */
  {
    struct sockaddr other;
    memset(&other, 0, sizeof(other));
    other.sa_family = AF_UNIX;
    ck_assert_int_eq(ntsntp_ratelimit_check(rl, &other, T0),
                     NTSNTP_ERR_INVALID_ARG);
    ck_assert_int_eq(ntsntp_ratelimit_check(rl, NULL, T0),
                     NTSNTP_ERR_INVALID_ARG);
  }
  for (i = 0; i < 100; i++)
    ntsntp_ratelimit_check(rl, sa("198.51.100.1"), T0 + i * SEC);
  for (i = 0; i < 50; i++)
    ntsntp_ratelimit_check(rl, sa("2001:db8:aaaa:bbbb:1:2:3:4"), T0);
  ck_assert_uint_eq(ntsntp_ratelimit_top(rl, top, 0), 0);
  ck_assert_uint_eq(ntsntp_ratelimit_top(rl, top, 3), 3);
  ck_assert_uint_eq(top[0].hits, 100);
  ck_assert_int_eq(top[0].addr.ss_family, AF_INET);
  ck_assert_uint_eq(top[0].prefix_len, 32);
  inet_ntop(AF_INET, &((struct sockaddr_in *)&top[0].addr)->sin_addr, buf,
            sizeof(buf));
  ck_assert_str_eq(buf, "198.51.100.1");
  ck_assert_uint_eq(top[0].last_ns >> 30, (T0 + 99 * SEC) >> 30);
  ck_assert_uint_eq(top[1].hits, 50);
  ck_assert_int_eq(top[1].addr.ss_family, AF_INET6);
  ck_assert_uint_eq(top[1].prefix_len, 64);
  inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&top[1].addr)->sin6_addr, buf,
            sizeof(buf));
  ck_assert_str_eq(buf, "2001:db8:aaaa:bbbb::");
  ck_assert_uint_eq(top[1].drops + top[1].kods + 2 <= 50, 1);
  ck_assert_uint_eq(top[2].hits, 3); /* 2001:db8:0:1::/64 or 192.0.2.1 */
  ntsntp_ratelimit_del(rl);

  /* Disabled: never limits, still counts. */
  rl_settings(&s);
  s.enabled = 0;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  for (i = 0; i < 1000; i++)
    ck_assert_int_eq(ntsntp_ratelimit_check(rl, sa("192.0.2.9"), T0),
                     NTSNTP_RL_PASS);
  ck_assert_uint_eq(ntsntp_ratelimit_top(rl, top, 3), 1);
  ck_assert_uint_eq(top[0].hits, 1000);
  ntsntp_ratelimit_del(rl);
}
END_TEST

/* A random source address (half IPv4, half IPv6). */
static void random_peer(struct sockaddr_storage *ss) {
  uint64_t x = xorshift();
  memset(ss, 0, sizeof(*ss));
  if (x & 1) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = (uint32_t)(x >> 16);
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
    uint64_t y = xorshift();
    s6->sin6_family = AF_INET6;
    memcpy(s6->sin6_addr.s6_addr, &x, 8);
    memcpy(s6->sin6_addr.s6_addr + 8, &y, 8);
    s6->sin6_addr.s6_addr[0] = 0x20;
  }
}

/*
 * 10 million spoofed random sources at 100k packets/s (100 s of traffic)
 * into the default 512 KiB table.  Meanwhile a legitimate client polls at
 * its allowed rate (every 2^interval s) and an abuser at 100 requests/s.
 * Memory must stay put, with no allocation; the legitimate client must be
 * served; the abuser must stay limited, i.e. its record must never be
 * evicted by the flood (an evicted abuser would come back with a full
 * bucket).
 */
START_TEST(test_rl_spoofed_flood) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl;
  ntsntp_ratelimit_stats st;
  struct sockaddr_storage peer, legit, abuser;
  size_t mem0, alloc0;
  const uint64_t n = 10000000, step = 10000; /* ns between flood packets */
  uint64_t i, t = T0, legit_sent = 0, legit_ok = 0, ab_sent = 0, ab_ok = 0;
  double t0 = now_s();

  memcpy(&legit, sa("192.0.2.200"), sizeof(legit));
  memcpy(&abuser, sa("2001:db8:bad::1"), sizeof(abuser));
  n_alloc = n_ok = n_free = 0;
  fail_alloc = 0;
  rl_settings(&s);
  s.interval = 0; /* 1 s, so that 100 s give 100 legitimate polls */
  s.mem = &counting_mem;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  mem0 = ntsntp_ratelimit_memory(rl);
  ck_assert_uint_le(mem0, s.max_bytes);
  ck_assert_uint_gt(mem0, s.max_bytes - 512);
  alloc0 = n_alloc;
  ck_assert_uint_eq(alloc0, 1);

  for (i = 0; i < n; i++, t += step) {
    random_peer(&peer);
    ntsntp_ratelimit_check(rl, (struct sockaddr *)&peer, t);
    if (i % (SEC / step) == 0) { /* once a second */
      legit_sent++;
      legit_ok += ntsntp_ratelimit_check(rl, (struct sockaddr *)&legit, t) ==
                  NTSNTP_RL_PASS;
    }
    if (i % (SEC / 100 / step) == 0) { /* 100 per second */
      ab_sent++;
      ab_ok += ntsntp_ratelimit_check(rl, (struct sockaddr *)&abuser, t) ==
               NTSNTP_RL_PASS;
    }
  }
  ntsntp_ratelimit_get_stats(rl, &st);
  printf("flood: %llu checks in %.2f s, %zu/%zu records, %llu evictions, "
         "legit %llu/%llu served, abuser %llu/%llu served, %zu bytes\n",
         (unsigned long long)st.checks, now_s() - t0, st.records, st.capacity,
         (unsigned long long)st.evictions, (unsigned long long)legit_ok,
         (unsigned long long)legit_sent, (unsigned long long)ab_ok,
         (unsigned long long)ab_sent, ntsntp_ratelimit_memory(rl));
  ck_assert_uint_eq(n_alloc, alloc0); /* nothing allocated after _new */
  ck_assert_uint_eq(ntsntp_ratelimit_memory(rl), mem0);
  ck_assert_uint_eq(st.records, st.capacity);
  ck_assert_uint_gt(st.evictions, n - st.capacity - 1000);
  ck_assert_uint_eq(legit_ok, legit_sent);
  /* Abuser: burst + 1 per second + a quarter of the rest (leak). */
  ck_assert_uint_lt(ab_ok, 8 + 100 + (ab_sent - 108) / 4 + 300);
  ck_assert_uint_gt(ab_sent, 9000);
  ntsntp_ratelimit_del(rl);
  ck_assert_uint_eq(n_free, 1);
}
END_TEST

/* A spoofer sending as the victim's address cannot cut the victim off:
 * the leak answers about one in four of the victim's own requests. */
START_TEST(test_rl_spoofed_victim_leak) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl;
  uint64_t t = T0, ok = 0;
  unsigned i, j;
  rl_settings(&s);
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, NULL, 0), 0);
  for (i = 0; i < 2000; i++) {
    for (j = 0; j < 100; j++) /* spoofed, 100 per poll */
      ntsntp_ratelimit_check(rl, sa("192.0.2.55"), t + j);
    ok += ntsntp_ratelimit_check(rl, sa("192.0.2.55"), t + j) ==
          NTSNTP_RL_PASS;
    t += 8 * SEC;
  }
  ck_assert_uint_gt(ok, 400);
  ck_assert_uint_lt(ok, 650);
  ntsntp_ratelimit_del(rl);
}
END_TEST

static Suite *access_suite(void) {
  Suite *s = suite_create("access");
  TCase *tc = tcase_create("acl");
  tcase_add_test(tc, test_acl_parse_good);
  tcase_add_test(tc, test_acl_parse_bad);
  tcase_add_test(tc, test_acl_nomem_unchanged);
  tcase_add_test(tc, test_acl_nested);
  tcase_add_test(tc, test_acl_ipv6);
  tcase_add_loop_test(tc, test_acl_random_vs_reference, 0, 4);
  tcase_add_test(tc, test_acl_many_rules);
  suite_add_tcase(s, tc);
  tc = tcase_create("ratelimit");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_rl_settings);
  tcase_add_test(tc, test_rl_burst_then_leak);
  tcase_add_test(tc, test_rl_interval_recovery);
  tcase_add_test(tc, test_rl_aggregation_and_top);
  tcase_add_test(tc, test_rl_spoofed_flood);
  tcase_add_test(tc, test_rl_spoofed_victim_leak);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(access_suite()); }
