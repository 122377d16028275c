/*
 * libntsntp: access control (allow/deny by subnet) and per-client rate
 * limiting, sans I/O.  Both are fed a peer address (and, for the limiter, a
 * monotonic time) and return a decision; neither reads a clock or a socket.
 *
 * Where the runtime calls them (one UDP worker):
 *
 *   accept(peer):       if (!ntsntp_acl_check(acl, peer)) drop;
 *   prepare(...)
 *   filter(peer, ctx):  switch (ntsntp_ratelimit_check(rl, peer, now_ns)) {
 *                       case NTSNTP_RL_KOD:  ntsntp_server_ctx_ratelimit(ctx);
 *                                            break;
 *                       case NTSNTP_RL_DROP: ntsntp_server_ctx_clear(ctx);
 *                                            drop;
 *                       }
 *   finish(...)
 *
 * The limiter is called after prepare so that junk (wrong mode, runts) does
 * not spend a client's tokens, as chrony counts only requests it would
 * answer.  ntsntp_server_ctx_ratelimit turns a KoD for an NTS request into
 * a drop: an unauthenticated KoD is ignored by NTS clients.
 */
#ifndef NTSNTP_ACCESS_H
#define NTSNTP_ACCESS_H

#include <sys/socket.h>

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Access control list (chrony's allow/deny)                                 */
/* ------------------------------------------------------------------------ */

/*
 * Rules are subnets with a verdict.  An address gets the verdict of the
 * most specific (longest) prefix containing it; a rule for a prefix that
 * already has one replaces it (the later line wins, as in chrony).  The
 * whole address space starts with the |default_allow| given to _new.
 *
 * IPv4 and IPv6 are separate spaces.  IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d, from dual-stack sockets) are checked as the IPv4
 * address; an IPv6 rule inside ::ffff:0:0/96 is stored as the IPv4 rule it
 * denotes, so "::ffff:10.0.0.0/104" is "10.0.0.0/8".  A rule covering the
 * mapped range from outside it (e.g. "::/0") does not apply to IPv4.
 *
 * Threads: build the list from one thread, then ntsntp_acl_check is a pure
 * read and may run in any number of threads.  ntsntp_acl_add must not run
 * while any thread checks; to change the rules at run time, build a new
 * list and swap the pointer the workers read.
 */
typedef struct ntsntp_acl ntsntp_acl;

/*
 * Creates an empty list whose default (the verdict when no rule matches)
 * is allow when |default_allow| is non-zero, deny otherwise.  |mem| NULL
 * means libc.
 * Errors: INVALID_ARG (|pacl| NULL), NOMEM.
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure.
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_acl_new(ntsntp_acl **pacl, int default_allow,
                                 const ntsntp_mem *mem, char *errbuf,
                                 size_t errlen);

/* Frees the list.  NULL is allowed.  version-added: 0.1.0 */
NTSNTP_EXTERN void ntsntp_acl_del(ntsntp_acl *acl);

/*
 * Adds a rule: |allow| non-zero allows |spec|, zero denies it.  |spec| is
 * exactly one of (no spaces, no shorthand such as "10/8"):
 *
 *   "all"                 both address spaces; as chrony's "allow all" /
 *                         "deny all" it also removes every rule added
 *                         before it, so it resets the list to one verdict
 *   "192.0.2.1"           one address (same as /32, or /128 for IPv6)
 *   "10.0.0.0/8"          an IPv4 subnet, prefix 0..32
 *   "2001:db8::/32"       an IPv6 subnet, prefix 0..128
 *
 * The prefix is decimal without leading zeros.  Address bits past the
 * prefix must be zero ("10.1.0.0/8" is rejected rather than silently read
 * as 10.0.0.0/8, since it usually means a typo).
 *
 * Errors (the list is unchanged):
 *   INVALID_ARG  |acl| or |spec| NULL
 *   BAD_CONFIG   |spec| malformed: not an address, prefix out of range or
 *                malformed, host bits set, "all" with a prefix, spaces
 *   NOMEM        no room for the rule; the caller may report and exit
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_acl_add(ntsntp_acl *acl, const char *spec,
                                 int allow) NTSNTP_WARN_UNUSED;

/*
 * Returns 1 if |sa| (AF_INET or AF_INET6; the port is ignored) is allowed,
 * 0 if denied.  Other families and NULL are denied.  A binary search over
 * the precompiled disjoint ranges: O(log rules), no allocation.
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_acl_check(const ntsntp_acl *acl,
                                   const struct sockaddr *sa)
    NTSNTP_WARN_UNUSED;

/* ------------------------------------------------------------------------ */
/* Rate limiter (chrony's ratelimit / ntsratelimit / clientloglimit)         */
/* ------------------------------------------------------------------------ */

/*
 * Semantics (chrony 4.4 clientlog.c, measured per client address):
 *
 * - Each client has a bucket of |burst| responses that refills at one
 *   response per 2^|interval| seconds.  A request finding a response in
 *   the bucket passes and takes it.
 * - A request finding the bucket empty is "limited".  Unless |no_leak|
 *   (NTS-KE: TCP sources are not spoofed), with probability
 *   1/2^|leak| it still passes and gets a NORMAL response (chrony's leak:
 *   it keeps an attacker who spoofs a victim's address from cutting the
 *   victim off entirely; the victim's own requests are answered at least
 *   1 time in 2^leak).  Otherwise, if |kod| is non-zero, with probability
 *   1/2^|kod| the verdict is KOD (answer with a RATE Kiss-o'-Death; for an
 *   NTS request the server drops instead), else DROP.
 *   So with leak 2, kod 0: 1/4 answered, 3/4 dropped; with leak 2, kod 1:
 *   1/4 answered, 3/8 KoD, 3/8 dropped.  No response is ever larger than
 *   its request, so neither path amplifies.
 * - Chrony also detects broken clients that poll faster when not answered
 *   and stops limiting them; this limiter does not (a spoofer could use
 *   that to switch limiting off for a victim's address).
 *
 * Implemented as GCRA (one 64-bit "theoretical arrival time" per client),
 * which is exactly a token bucket of |burst| with that refill rate.
 * Leak and KoD draws come from a SipHash-2-4 keyed stream, not rand().
 *
 * Client table (chrony's clientloglimit): fixed memory set at creation,
 * never grown, never allocating after ntsntp_ratelimit_new.  It is a hash
 * table of 8-way buckets indexed by SipHash-2-4 of the (masked) address
 * under a random 128-bit key, so an attacker cannot aim addresses at one
 * bucket.  When a bucket is full, the record evicted is the one least in
 * debt (smallest theoretical arrival time; ties: fewest hits):
 *   - a record whose bucket has refilled (no debt) decides nothing that a
 *     fresh record would not, so evicting it never changes a verdict;
 *   - a spoofed one-off source is in debt for one interval at most, while
 *     a client being limited is at least burst-1 intervals in debt, so a
 *     flood of random sources evicts other one-offs, never a limited
 *     client (with burst >= 2): nobody escapes limiting by flooding;
 *   - a legitimate client polling within its rate either keeps its record
 *     or, if evicted, comes back as a fresh record with a full bucket:
 *     it is served either way.
 *   A flood from N random sources is itself answered (each source is new),
 *   as with chrony: per-client limiting cannot stop that, and the responses
 *   are spread over the spoofed addresses and never amplified.
 *
 * Addresses are aggregated: IPv4 by |v4_prefix| bits (default 32, one
 * address), IPv6 by |v6_prefix| bits (default 64: one end site's subnet;
 * chrony uses 128, but an attacker holding a /64 could otherwise rotate
 * through 2^64 addresses to evade limits and churn the table).
 * IPv4-mapped IPv6 peers count as their IPv4 address.
 *
 * Threads: a table is NOT thread-safe.  Use one table per worker thread
 * (with SO_REUSEPORT the kernel keeps a source address:port on one worker,
 * so a client meets the same table).  ntsntp_ratelimit_top and _stats read
 * the table and must run on its thread too.
 *
 * Time: |now_ns| is a monotonic clock in nanoseconds (CLOCK_MONOTONIC,
 * uv_hrtime), never the served wall clock: a step of the served clock must
 * not refill or drain buckets.  If |now_ns| goes backwards anyway, a
 * record with more debt than |burst| intervals (impossible otherwise)
 * starts again with a full bucket.
 */

typedef enum ntsntp_rl_verdict {
  NTSNTP_RL_PASS = 0, /* answer normally */
  NTSNTP_RL_KOD = 1,  /* answer with KoD RATE (ntsntp_server_ctx_ratelimit) */
  NTSNTP_RL_DROP = 2  /* do not answer */
} ntsntp_rl_verdict;

typedef enum ntsntp_rl_service {
  NTSNTP_RL_SERVICE_NTP = 0,  /* NTP requests (chrony "ratelimit") */
  NTSNTP_RL_SERVICE_NTSKE = 1 /* NTS-KE connections ("ntsratelimit") */
} ntsntp_rl_service;

#define NTSNTP_RL_MIN_INTERVAL (-19) /* 524288 responses per second */
#define NTSNTP_RL_MAX_INTERVAL 12    /* one per 4096 s */
#define NTSNTP_RL_MAX_BURST 255
#define NTSNTP_RL_MIN_LEAK 1
#define NTSNTP_RL_MAX_LEAK 4
#define NTSNTP_RL_MAX_KOD 4
#define NTSNTP_RL_DEFAULT_MAX_BYTES 524288 /* chrony's clientloglimit */

typedef struct ntsntp_ratelimit_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* 0: never limit (clients are still counted for _top).  Default 1. */
  int enabled;
  /* log2 seconds between responses, -19..12.  Default 3 (NTP, 8 s) or
   * 6 (NTS-KE, 64 s), as chrony. */
  int interval;
  /* Responses in a burst, 1..255.  Default 8. */
  unsigned burst;
  /* A limited request is answered with probability 1/2^leak, 1..4.
   * Default 2.  Not used (nor checked) with |no_leak|. */
  unsigned leak;
  /* 0: limited requests that do not leak are dropped.  1..4: of those,
   * 1 in 2^kod gets a KoD RATE instead.  Default 0 (as chrony); must be 0
   * for NTS-KE, which has no KoD. */
  unsigned kod;
  /* 1: a limited request never passes (no leak).  For connections (NTS-KE
   * over TCP): their source addresses cannot be spoofed, so there is no
   * spoofed victim for the leak to protect, and a leak would only let one
   * in 2^leak of a flood's connections through.  Default 1 for NTS-KE,
   * 0 for NTP. */
  int no_leak;
  /* Bytes for the whole table, header included; fixes the number of
   * records (56 bytes each, in buckets of 8).  Default 524288 bytes
   * (about 9300 records).  At least 1024. */
  size_t max_bytes;
  /* Aggregation prefixes: 1..32 (default 32) and 1..128 (default 64). */
  unsigned v4_prefix;
  unsigned v6_prefix;
  /* Seeds the hash and leak keys once, in _new.  Default
   * ntsntp_rand_default. */
  ntsntp_rand_fn rand;
  void *rand_user;
  const ntsntp_mem *mem;
} ntsntp_ratelimit_settings;

/*
 * Fills |s| with the defaults for |service| (see the fields).  Limiting is
 * ON by default: a public server should not answer one address without
 * bound, and chrony's numbers never limit a client polling at 8 s or
 * slower.  Set enabled = 0 to only count clients.
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_ratelimit_settings_default_versioned(
    int version, ntsntp_ratelimit_settings *s, ntsntp_rl_service service);
#define ntsntp_ratelimit_settings_default(S, SV)                               \
  ntsntp_ratelimit_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S),    \
                                              (SV))

typedef struct ntsntp_ratelimit ntsntp_ratelimit;

/*
 * Creates a limiter and its fixed-size table (the only allocation).
 * |s| NULL means the NTP defaults.
 * Errors: INVALID_ARG (|prl| NULL; interval, burst, leak, kod, prefixes
 * out of range; max_bytes too small for one bucket), NOMEM, CRYPTO (rand
 * failed).
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure.
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_ratelimit_new(ntsntp_ratelimit **prl,
                                       const ntsntp_ratelimit_settings *s,
                                       char *errbuf, size_t errlen);

/* Frees the limiter.  NULL is allowed.  version-added: 0.1.0 */
NTSNTP_EXTERN void ntsntp_ratelimit_del(ntsntp_ratelimit *rl);

/*
 * Accounts one request from |peer| at monotonic time |now_ns| and returns
 * NTSNTP_RL_PASS, NTSNTP_RL_KOD or NTSNTP_RL_DROP.  O(1): one SipHash and
 * a scan of 8 records; no allocation.
 * Errors: INVALID_ARG (NULL argument, or a family other than AF_INET or
 * AF_INET6): treat as DROP.
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_ratelimit_check(ntsntp_ratelimit *rl,
                                         const struct sockaddr *peer,
                                         uint64_t now_ns);

struct ntsntp_xleave_state; /* server.h */

/*
 * ntsntp_ratelimit_check that also sets |*xl| (if |xl| is not NULL) to
 * the interleaved-mode state kept in |peer|'s record (server.h,
 * ntsntp_server_ctx_xleave), or NULL on error.  A new or evicted record
 * starts with none.  The pointer stays valid until the next call on |rl|.
 * Use it only when the verdict is PASS: other requests get no response.
 * version-added: 0.2.0
 */
NTSNTP_EXTERN int ntsntp_ratelimit_check_xleave(ntsntp_ratelimit *rl,
                                                const struct sockaddr *peer,
                                                uint64_t now_ns,
                                                struct ntsntp_xleave_state **xl);

/*
 * The interleaved-mode state of |peer|'s record, or NULL if it has none
 * (never seen, or evicted since).  Accounts nothing.  Valid until the
 * next call on |rl|.
 * version-added: 0.2.0
 */
NTSNTP_EXTERN struct ntsntp_xleave_state *
ntsntp_ratelimit_find(ntsntp_ratelimit *rl, const struct sockaddr *peer);

/* One client (an address or an aggregated prefix) in the table. */
typedef struct ntsntp_ratelimit_client {
  struct sockaddr_storage addr; /* port 0; the prefix's first address */
  unsigned prefix_len;          /* v4_prefix or v6_prefix */
  uint64_t hits;  /* requests seen (saturates at 2^32-1) */
  uint64_t drops; /* requests limited and dropped */
  uint64_t kods;  /* requests limited and answered with a KoD */
  uint64_t last_ns;             /* last request, to about a second */
} ntsntp_ratelimit_client;

/*
 * Writes the (up to) |n| clients with the most hits to |out|, most first,
 * and returns how many were written.  Scans the whole table: O(records *
 * n); for ntsctl, not for the packet path.
 * version-added: 0.1.0
 */
NTSNTP_EXTERN size_t ntsntp_ratelimit_top(const ntsntp_ratelimit *rl,
                                          ntsntp_ratelimit_client *out,
                                          size_t n);

typedef struct ntsntp_ratelimit_stats {
  uint64_t checks;    /* ntsntp_ratelimit_check calls that were accounted */
  uint64_t limited;   /* found the bucket empty */
  uint64_t leaked;    /* limited but answered (PASS) */
  uint64_t kods;      /* limited, KOD */
  uint64_t drops;     /* limited, DROP */
  uint64_t evictions; /* records replaced in a full bucket */
  size_t records;     /* records in use */
  size_t capacity;    /* records the table holds */
} ntsntp_ratelimit_stats;

/* Fills |st| with this table's counters.  version-added: 0.1.0 */
NTSNTP_EXTERN void ntsntp_ratelimit_get_stats(const ntsntp_ratelimit *rl,
                                              ntsntp_ratelimit_stats *st);

/*
 * Bytes allocated by this limiter (constant after _new, <= max_bytes).
 * version-added: 0.1.0
 */
NTSNTP_EXTERN size_t ntsntp_ratelimit_memory(const ntsntp_ratelimit *rl);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_ACCESS_H */
