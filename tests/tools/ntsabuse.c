/*
 * ntsabuse: hostile and misbehaving clients for ntsd, on loopback only
 * (tests/integration/ntsd_abuse.sh drives it).
 *
 *   ntsabuse malformed NTPPORT KEPORT CA CTLSOCK [OTHER_KEPORT]
 *       the malformed-input suite: each packet is sent alone and checked
 *       against ntsd's own counters (read over the control socket): it must
 *       be counted exactly once, under the expected reason, and answered
 *       (normally, NAK) or not as that reason says.  Prints "sent=N
 *       responses=M" last.
 *   ntsabuse query SRC NTPPORT                one plain request from SRC:
 *                                             prints "answered" or "none"
 *   ntsabuse hammer SRC NTPPORT COUNT [KEPORT CA]
 *       COUNT requests (NTS with KEPORT) from SRC, 1 ms apart; prints
 *       "normal=A kod=B none=C" (responses matched by origin timestamp)
 *   ntsabuse ke KEPORT CA [SRC-unused]        one NTS-KE exchange: "ke ok"
 *   ntsabuse slow KEPORT SECONDS BYTES_PER_S SRC[,SRC...] PER_SRC
 *       PER_SRC connections from each SRC; each sends BYTES_PER_S bytes of
 *       a TLS ClientHello per second (0: nothing, half-open) until the
 *       server closes it; prints "closed SRC after S" or "open SRC after S"
 *   ntsabuse raw KEPORT HEX                   sends the bytes, prints how
 *                                             long until the server closed
 *   ntsabuse spray NTPPORT FIRST LAST COUNT   COUNT plain requests from each
 *                                             of 127.0.0.FIRST..LAST
 *   ntsabuse hangup KEPORT CTLSOCK COUNT
 *       COUNT times: a TLS ClientHello to KEPORT, and four requests on the
 *       control socket, each connection closed without reading the answer
 *       (ntsd then writes to closed connections: SIGPIPE)
 *
 * Exit status: 0 when all checks of the mode passed, 1 otherwise, 2 for a
 * usage or setup error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/client.h"
#include "ntsntp/server.h"
#include "ntsntp/uv_client.h"

#define MAX_PKT 4096

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static uint64_t now_ntp(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_from_timespec(&ts);
}

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* A UDP socket bound to |src| and connected to 127.0.0.1:|port|. */
static int udp_socket(const char *src, uint16_t port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  if (inet_pton(AF_INET, src, &a.sin_addr) != 1 ||
      bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    return -1;
  }
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  a.sin_port = htons(port);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Waits up to |ms| for a datagram; returns its length or -1. */
static ssize_t recv_wait(int fd, uint8_t *buf, size_t len, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0)
    return -1;
  return recv(fd, buf, len, 0);
}

static void drain_socket(int fd) {
  uint8_t b[MAX_PKT];
  while (recv(fd, b, sizeof(b), MSG_DONTWAIT) >= 0)
    ;
}

/* ---- NTS-KE via the library's client ---- */

typedef struct ke_out {
  int done, status;
  char err[512];
  ntsntp_ke_result r;
} ke_out;

static void ke_cb(void *user, const ntsntp_uv_ke_outcome *o) {
  ke_out *k = user;
  k->done = 1;
  k->status = o->status;
  snprintf(k->err, sizeof(k->err), "%s", o->errtext ? o->errtext : "");
  if (o->status == 0)
    k->r = *o->result;
}

static int ke_get(uint16_t port, const char *ca, ke_out *k) {
  uv_loop_t loop;
  ntsntp_uv_ke_query_settings s;
  int rv;
  memset(k, 0, sizeof(*k));
  uv_loop_init(&loop);
  ntsntp_uv_ke_query_settings_default(&s);
  s.host = "localhost";
  s.family = AF_INET;
  s.port = port;
  s.timeout_ms = 5000;
  s.ke.ca_file = ca;
  rv = ntsntp_uv_ke_query_start(&loop, &s, ke_cb, k, NULL, NULL, 0);
  if (rv == 0)
    uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rv)
    return rv;
  return k->status;
}

/* ---- ntsd's counters over the control socket ---- */

typedef struct counters {
  uint64_t received, dropped, sent, send_errors, naks, kods;
  uint64_t reasons[NTSNTP_REASON_COUNT];
} counters;

static int ctl_request(const char *path, const char *cmd, char *out,
                       size_t outlen) {
  struct sockaddr_un a;
  size_t n = 0;
  ssize_t r;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
    close(fd);
    return -1;
  }
  while (n + 1 < outlen && (r = read(fd, out + n, outlen - 1 - n)) > 0)
    n += (size_t)r;
  out[n] = 0;
  close(fd);
  return strstr(out, "NTSCTL/1 OK") == out ? 0 : -1;
}

static uint64_t json_u64(const char *from, const char *key) {
  char pat[96];
  const char *p;
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  p = strstr(from, pat);
  return p ? strtoull(p + strlen(pat), NULL, 10) : UINT64_MAX;
}

static int get_counters(const char *path, counters *c) {
  static char buf[65536];
  const char *by;
  int i;
  if (ctl_request(path, "NTSCTL/1 serverstats json\n", buf, sizeof(buf)))
    return -1;
  c->received = json_u64(buf, "ntp_packets_received");
  c->dropped = json_u64(buf, "ntp_packets_dropped");
  c->sent = json_u64(buf, "ntp_responses_sent");
  c->send_errors = json_u64(buf, "ntp_send_errors");
  c->naks = json_u64(buf, "nts_naks_sent");
  c->kods = json_u64(buf, "ntp_kod_responses");
  by = strstr(buf, "\"ntp_requests_by_reason\":");
  if (!by)
    return -1;
  for (i = 0; i < NTSNTP_REASON_COUNT; i++)
    c->reasons[i] = json_u64(by, ntsntp_server_reason_name((ntsntp_server_reason)i));
  return 0;
}

/* ---- the malformed-input suite ---- */

typedef struct suite {
  const char *ctl;
  int fd;
  unsigned sent, responses, fails, cases;
} suite;

enum { ANY_REASON = -1 };

static int is_nak_reason(int r) {
  return r == NTSNTP_REASON_BAD_COOKIE || r == NTSNTP_REASON_UNKNOWN_KEY ||
         r == NTSNTP_REASON_AUTH_FAILED;
}

/* Sends one packet and checks how ntsd accounted for it.  |ex| (may be
 * NULL) is the exchange of a valid NTS request, whose response must then
 * authenticate. */
static void run_case(suite *su, const char *name, const uint8_t *pkt,
                     size_t len, int want, ntsntp_client_exchange *ex) {
  counters b, a;
  uint8_t resp[MAX_PKT];
  ssize_t rl = -1;
  double end;
  int got = -1, i, nreasons = 0, ok = 1;
  char why[256] = "";
  uint64_t responded;

  drain_socket(su->fd);
  if (get_counters(su->ctl, &b)) {
    printf("FAIL - %s: control socket\n", name);
    su->fails++;
    return;
  }
  if (send(su->fd, pkt, len, 0) != (ssize_t)len) {
    printf("FAIL - %s: send: %s\n", name, strerror(errno));
    su->fails++;
    return;
  }
  su->sent++;
  su->cases++;
  a = b;
  end = mono() + 3;
  do {
    if (get_counters(su->ctl, &a) == 0 && a.received > b.received)
      break;
    sleep_ms(1);
  } while (mono() < end);
  if (a.received != b.received + 1) {
    snprintf(why, sizeof(why), "received +%llu, want +1",
             (unsigned long long)(a.received - b.received));
    ok = 0;
  }
  for (i = 0; i < NTSNTP_REASON_COUNT; i++)
    if (a.reasons[i] != b.reasons[i]) {
      nreasons++;
      got = i;
    }
  if (ok && nreasons != 1) {
    snprintf(why, sizeof(why), "%d reasons changed", nreasons);
    ok = 0;
  }
  responded = (a.sent + a.send_errors) - (b.sent + b.send_errors);
  if (responded) {
    rl = recv_wait(su->fd, resp, sizeof(resp), 1000);
    if (rl > 0)
      su->responses++;
  } else {
    rl = recv_wait(su->fd, resp, sizeof(resp), 20);
  }
  if (ok && want != ANY_REASON && got != want) {
    snprintf(why, sizeof(why), "reason %s, want %s",
             ntsntp_server_reason_name((ntsntp_server_reason)got), ntsntp_server_reason_name((ntsntp_server_reason)want));
    ok = 0;
  }
  if (ok && (a.dropped - b.dropped) + responded != 1) {
    snprintf(why, sizeof(why), "dropped +%llu responded +%llu",
             (unsigned long long)(a.dropped - b.dropped),
             (unsigned long long)responded);
    ok = 0;
  }
  if (ok && (responded != 0) != (rl > 0)) {
    snprintf(why, sizeof(why), "counted %s but %s",
             responded ? "an answer" : "a drop",
             rl > 0 ? "a response came" : "no response came");
    ok = 0;
  }
  if (ok && rl > 0 && (size_t)rl > len) {
    snprintf(why, sizeof(why), "response %zd bytes > request %zu", rl, len);
    ok = 0;
  }
  if (ok && rl > 0) {
    int nak = rl >= 48 && resp[1] == 0 && !memcmp(resp + 12, "NTSN", 4);
    if (nak != is_nak_reason(got) || (a.naks - b.naks) != (uint64_t)nak) {
      snprintf(why, sizeof(why), "NAK %d for reason %s", nak,
               ntsntp_server_reason_name((ntsntp_server_reason)got));
      ok = 0;
    }
  }
  if (ok && ex && rl > 0) {
    ntsntp_client_sample s;
    uint64_t t = now_ntp();
    int rv = ntsntp_client_response(ex, resp, (size_t)rl, t, t, &s);
    if (rv || !s.authenticated) {
      snprintf(why, sizeof(why), "NTS response did not verify: %s",
               ntsntp_strerror(rv));
      ok = 0;
    }
  }
  if (ok)
    printf("ok   - %s: %s%s\n", name, ntsntp_server_reason_name((ntsntp_server_reason)got),
           rl > 0 ? ", answered" : "");
  else {
    printf("FAIL - %s: %s\n", name, why);
    su->fails++;
  }
}

/* Offsets of a request's fields, found by walking it. */
typedef struct layout {
  size_t uid, cookie, auth, len;
} layout;

static int find_layout(const uint8_t *p, size_t len, layout *l) {
  size_t off = 48;
  memset(l, 0, sizeof(*l));
  l->len = len;
  while (off + 4 <= len) {
    unsigned t = get16(p + off), fl = get16(p + off + 2);
    if (fl < 16 || off + fl > len)
      return -1;
    if (t == NTSNTP_EF_UNIQUE_ID)
      l->uid = off;
    else if (t == NTSNTP_EF_COOKIE)
      l->cookie = off;
    else if (t == NTSNTP_EF_AUTHENTICATOR)
      l->auth = off;
    off += fl;
  }
  return l->uid && l->cookie && l->auth ? 0 : -1;
}

/*
 * The verdict RFC 5905/7822/8915 call for on the first |len| bytes of a
 * valid NTS request: the oracle for truncations, written from the RFCs
 * rather than from lib/server.c.
 */
static int truncation_reason(const uint8_t *p, size_t len) {
  size_t off = 48;
  int uid = 0, cookie = 0, auth = 0;
  if (len < 48)
    return NTSNTP_REASON_TOO_SHORT;
  while (off < len) {
    size_t left = len - off, fl;
    unsigned t;
    /* RFC 7822 7.5: 24 octets or less left is a MAC (4, 20 or 24). */
    if (left <= 24) {
      if (left != 4 && left != 20 && left != 24)
        return NTSNTP_REASON_BAD_EF;
      break;
    }
    t = get16(p + off);
    fl = get16(p + off + 2);
    if (fl < 16 || fl % 4 || fl > left)
      return NTSNTP_REASON_BAD_EF;
    uid |= t == NTSNTP_EF_UNIQUE_ID;
    cookie |= t == NTSNTP_EF_COOKIE;
    auth |= t == NTSNTP_EF_AUTHENTICATOR;
    off += fl;
    if (auth)
      break;
  }
  if (!uid && !cookie && !auth)
    return NTSNTP_REASON_OK;
  return uid && cookie && auth ? ANY_REASON : NTSNTP_REASON_NTS_MALFORMED;
}

typedef struct nts_src {
  ke_out ke;
  unsigned next; /* next cookie */
} nts_src;

/* A fresh valid NTS request with the next cookie. */
static size_t nts_request(nts_src *k, ntsntp_client_exchange *ex,
                          uint8_t *out, unsigned placeholders,
                          const uint8_t *keys_from) {
  ntsntp_client_params p;
  ntsntp_ssize n;
  unsigned i = k->next++ % (unsigned)k->ke.r.ncookies;
  memset(&p, 0, sizeof(p));
  p.poll = 6;
  p.aead = k->ke.r.aead;
  p.c2s = keys_from ? keys_from : k->ke.r.c2s;
  p.s2c = k->ke.r.s2c;
  p.cookie = k->ke.r.cookies[i];
  p.cookie_len = k->ke.r.cookie_len[i];
  p.placeholders = placeholders;
  n = ntsntp_client_request(ex, &p, out, MAX_PKT);
  if (n <= 0) {
    fprintf(stderr, "ntsntp_client_request: %s\n", ntsntp_strerror((int)n));
    exit(2);
  }
  return (size_t)n;
}

static size_t plain_request(uint8_t *out, unsigned version, unsigned mode) {
  memset(out, 0, 48);
  out[0] = (uint8_t)(version << 3 | mode);
  out[2] = 6;
  for (int i = 40; i < 48; i++)
    out[i] = (uint8_t)rand();
  return 48;
}

/* Copies |p| with |ins| (|n| bytes) inserted at |at|. */
static size_t splice_ef(uint8_t *out, const uint8_t *p, size_t len, size_t at,
                     size_t cut, const uint8_t *ins, size_t n) {
  memcpy(out, p, at);
  if (n)
    memcpy(out + at, ins, n);
  memcpy(out + at + n, p + at + cut, len - at - cut);
  return len - cut + n;
}

static int mode_malformed(int argc, char **argv) {
  suite su = {0};
  nts_src k, other;
  ntsntp_client_exchange ex;
  uint8_t req[MAX_PKT], m[MAX_PKT];
  layout l;
  size_t len, n, i, clen;
  char name[128];
  uint16_t port = (uint16_t)atoi(argv[2]);
  int rv;

  su.ctl = argv[5];
  su.fd = udp_socket("127.0.0.1", port);
  memset(&k, 0, sizeof(k));
  if (su.fd < 0 || (rv = ke_get((uint16_t)atoi(argv[3]), argv[4], &k.ke))) {
    fprintf(stderr, "setup: %s\n", su.fd < 0 ? strerror(errno) : k.ke.err);
    return 2;
  }
  printf("ok   - NTS-KE gave %zu cookies\n", k.ke.r.ncookies);

  /* Controls. */
  len = plain_request(req, 4, 3);
  run_case(&su, "plain NTPv4 request", req, len, NTSNTP_REASON_OK, NULL);
  len = nts_request(&k, &ex, req, 0, NULL);
  run_case(&su, "valid NTS request", req, len, NTSNTP_REASON_OK, &ex);
  len = nts_request(&k, &ex, req, 7, NULL);
  run_case(&su, "valid NTS request, 7 placeholders", req, len,
           NTSNTP_REASON_OK, &ex);

  /* Every truncation of a valid NTS request. */
  len = nts_request(&k, &ex, req, 0, NULL);
  if (find_layout(req, len, &l)) {
    fprintf(stderr, "cannot parse our own request\n");
    return 2;
  }
  clen = get16(req + l.cookie + 2) - 4u;
  for (n = 0; n < len; n++) {
    snprintf(name, sizeof(name), "truncated to %zu of %zu", n, len);
    run_case(&su, name, req, n, truncation_reason(req, n), NULL);
  }

  /* Bit flips in each field. */
  {
    static const struct {
      const char *what;
      int base; /* 0 header, 1 uid, 2 cookie, 3 auth */
      long off; /* from the base; negative: from the field's end */
      uint8_t bit;
      int want;
    } flips[] = {
        {"mode bit 0", 0, 0, 0x01, NTSNTP_REASON_BAD_MODE},
        {"mode bit 1", 0, 0, 0x02, NTSNTP_REASON_BAD_MODE},
        {"mode bit 2", 0, 0, 0x04, NTSNTP_REASON_BAD_MODE},
        {"version bit 0", 0, 0, 0x08, NTSNTP_REASON_BAD_VERSION},
        {"version bit 1", 0, 0, 0x10, NTSNTP_REASON_BAD_VERSION},
        {"version bit 2", 0, 0, 0x20, NTSNTP_REASON_BAD_VERSION},
        {"leap bits", 0, 0, 0x80, NTSNTP_REASON_AUTH_FAILED},
        {"stratum", 0, 1, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"poll", 0, 2, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"precision", 0, 3, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"root delay", 0, 7, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"root dispersion", 0, 11, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"reference id", 0, 15, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"reference timestamp", 0, 23, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"origin timestamp", 0, 31, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"receive timestamp", 0, 39, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"transmit timestamp", 0, 47, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"UID EF type", 1, 1, 0x01, NTSNTP_REASON_NTS_MALFORMED},
        {"UID EF length", 1, 3, 0x01, NTSNTP_REASON_BAD_EF},
        {"UID body", 1, 4, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"cookie EF type", 2, 1, 0x01, NTSNTP_REASON_NTS_MALFORMED},
        {"cookie EF length", 2, 3, 0x01, NTSNTP_REASON_BAD_EF},
        {"cookie key id", 2, 4, 0x80, NTSNTP_REASON_UNKNOWN_KEY},
        {"cookie nonce", 2, 8, 0x01, NTSNTP_REASON_BAD_COOKIE},
        {"cookie ciphertext", 2, -1, 0x01, NTSNTP_REASON_BAD_COOKIE},
        {"authenticator EF type", 3, 1, 0x01, NTSNTP_REASON_NTS_MALFORMED},
        {"authenticator EF length", 3, 3, 0x01, NTSNTP_REASON_BAD_EF},
        {"nonce length", 3, 5, 0x01, NTSNTP_REASON_NTS_MALFORMED},
        {"ciphertext length", 3, 7, 0x01, NTSNTP_REASON_NTS_MALFORMED},
        {"nonce", 3, 8, 0x01, NTSNTP_REASON_AUTH_FAILED},
        {"ciphertext (tag)", 3, -1, 0x01, NTSNTP_REASON_AUTH_FAILED},
    };
    for (i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
      size_t base, end, at;
      len = nts_request(&k, &ex, req, 0, NULL);
      find_layout(req, len, &l);
      base = flips[i].base == 0   ? 0
             : flips[i].base == 1 ? l.uid
             : flips[i].base == 2 ? l.cookie
                                  : l.auth;
      end = flips[i].base == 0   ? 48
            : flips[i].base == 1 ? l.cookie
            : flips[i].base == 2 ? l.cookie + 4 + clen
                                 : len;
      at = flips[i].off >= 0 ? base + (size_t)flips[i].off
                             : end - (size_t)(-flips[i].off);
      req[at] ^= flips[i].bit;
      snprintf(name, sizeof(name), "bit flip: %s", flips[i].what);
      run_case(&su, name, req, len, flips[i].want, NULL);
    }
  }

  /* Bad EF lengths (the UID field's; then the authenticator's). */
  {
    static const unsigned lens[] = {0, 4, 12, 15, 17, 34, 0xfffc};
    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
      len = nts_request(&k, &ex, req, 0, NULL);
      find_layout(req, len, &l);
      put16(req + l.uid + 2, lens[i]);
      snprintf(name, sizeof(name), "UID EF length %u", lens[i]);
      run_case(&su, name, req, len, NTSNTP_REASON_BAD_EF, NULL);
    }
    len = nts_request(&k, &ex, req, 0, NULL);
    find_layout(req, len, &l);
    put16(req + l.auth + 2, (unsigned)(len - l.auth + 4));
    run_case(&su, "authenticator EF longer than the packet", req, len,
             NTSNTP_REASON_BAD_EF, NULL);
  }

  /* Duplicated and missing NTS fields. */
  len = nts_request(&k, &ex, req, 0, NULL);
  find_layout(req, len, &l);
  n = splice_ef(m, req, len, l.cookie, 0, req + l.uid, l.cookie - l.uid);
  run_case(&su, "duplicated UID", m, n, NTSNTP_REASON_NTS_MALFORMED, NULL);
  n = splice_ef(m, req, len, l.auth, 0, req + l.cookie, l.auth - l.cookie);
  run_case(&su, "duplicated cookie", m, n, NTSNTP_REASON_NTS_MALFORMED, NULL);
  {
    uint8_t ph[20] = {0x03, 0x04, 0, 20};
    n = splice_ef(m, req, len, l.auth, 0, ph, sizeof(ph));
    run_case(&su, "placeholder of the wrong length", m, n,
             NTSNTP_REASON_NTS_MALFORMED, NULL);
  }
  n = splice_ef(m, req, len, l.uid, l.cookie - l.uid, NULL, 0);
  run_case(&su, "missing UID", m, n, NTSNTP_REASON_NTS_MALFORMED, NULL);
  n = splice_ef(m, req, len, l.cookie, l.auth - l.cookie, NULL, 0);
  run_case(&su, "missing cookie", m, n, NTSNTP_REASON_NTS_MALFORMED, NULL);
  run_case(&su, "missing authenticator", req, l.auth,
           NTSNTP_REASON_NTS_MALFORMED, NULL);
  /* RFC 8915 5.6: fields after the authenticator are ignored. */
  len = nts_request(&k, &ex, req, 0, NULL);
  find_layout(req, len, &l);
  n = splice_ef(m, req, len, len, 0, req + l.auth, len - l.auth);
  run_case(&su, "duplicated authenticator (after it: ignored)", m, n,
           NTSNTP_REASON_OK, &ex);

  /* Wrong keys and cookies. */
  {
    ke_out second;
    if (ke_get((uint16_t)atoi(argv[3]), argv[4], &second) == 0) {
      /* A cookie of this server, keys of another session. */
      len = nts_request(&k, &ex, req, 0, second.r.c2s);
      run_case(&su, "cookie with another session's C2S key", req, len,
               NTSNTP_REASON_AUTH_FAILED, NULL);
    } else {
      printf("FAIL - second NTS-KE: %s\n", second.err);
      su.fails++;
    }
  }
  if (argc > 6) {
    memset(&other, 0, sizeof(other));
    if (ke_get((uint16_t)atoi(argv[6]), argv[4], &other.ke) == 0) {
      len = nts_request(&other, &ex, req, 0, NULL);
      run_case(&su, "cookie from another server's keys", req, len,
               NTSNTP_REASON_UNKNOWN_KEY, NULL);
    } else {
      printf("FAIL - NTS-KE with the other server: %s\n", other.ke.err);
      su.fails++;
    }
  }

  /* Replays: the server keeps no state, so each copy is answered (with new
   * cookies for the same keys, RFC 8915 sec. 6): nothing new is learnt. */
  len = nts_request(&k, &ex, req, 0, NULL);
  run_case(&su, "replayed request (1st)", req, len, NTSNTP_REASON_OK, &ex);
  run_case(&su, "replayed request (2nd)", req, len, NTSNTP_REASON_OK, NULL);
  run_case(&su, "replayed request (3rd)", req, len, NTSNTP_REASON_OK, NULL);

  /* Not NTPv4 client mode, with NTS fields. */
  {
    static const struct {
      unsigned version, mode;
      int want;
      const char *what;
    } v[] = {
        {3, 3, NTSNTP_REASON_OK, "NTPv3 (fields not parsed, plain answer)"},
        {2, 3, NTSNTP_REASON_BAD_VERSION, "NTPv2"},
        {1, 3, NTSNTP_REASON_BAD_VERSION, "NTPv1"},
        {0, 3, NTSNTP_REASON_BAD_VERSION, "version 0"},
        {5, 3, NTSNTP_REASON_BAD_VERSION, "version 5"},
        {7, 3, NTSNTP_REASON_BAD_VERSION, "version 7"},
        {4, 1, NTSNTP_REASON_BAD_MODE, "mode 1 (symmetric active)"},
        {4, 2, NTSNTP_REASON_BAD_MODE, "mode 2 (symmetric passive)"},
        {4, 4, NTSNTP_REASON_BAD_MODE, "mode 4 (server)"},
        {4, 5, NTSNTP_REASON_BAD_MODE, "mode 5 (broadcast)"},
        {4, 6, NTSNTP_REASON_BAD_MODE, "mode 6 (control)"},
        {4, 7, NTSNTP_REASON_BAD_MODE, "mode 7 (private)"},
        {4, 0, NTSNTP_REASON_BAD_MODE, "mode 0"},
    };
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
      len = nts_request(&k, &ex, req, 0, NULL);
      req[0] = (uint8_t)(v[i].version << 3 | v[i].mode);
      snprintf(name, sizeof(name), "%s with NTS fields", v[i].what);
      run_case(&su, name, req, len, v[i].want, NULL);
    }
  }

  /* Longer than any request the server reads (truncated on receipt). */
  len = nts_request(&k, &ex, req, 0, NULL);
  memset(req + len, 0, 3000 - len);
  run_case(&su, "3000-byte datagram", req, 3000, NTSNTP_REASON_BAD_EF, NULL);
  /* Random junk: any reason, but counted exactly once. */
  for (i = 0; i < 20; i++) {
    n = 1 + (size_t)rand() % 300;
    for (size_t j = 0; j < n; j++)
      m[j] = (uint8_t)rand();
    snprintf(name, sizeof(name), "random %zu bytes", n);
    run_case(&su, name, m, n, ANY_REASON, NULL);
  }
  /* And the server still answers properly. */
  len = nts_request(&k, &ex, req, 0, NULL);
  run_case(&su, "valid NTS request after all that", req, len,
           NTSNTP_REASON_OK, &ex);

  ntsntp_ke_result_clear(&k.ke.r);
  printf("%u cases, %u failed\nsent=%u responses=%u\n", su.cases, su.fails,
         su.sent, su.responses);
  close(su.fd);
  return su.fails ? 1 : 0;
}

/* ---- rate limiting, access control ---- */

static int mode_query(char **argv) {
  uint8_t req[48], resp[MAX_PKT];
  int fd = udp_socket(argv[2], (uint16_t)atoi(argv[3]));
  ssize_t r;
  if (fd < 0) {
    perror("socket");
    return 2;
  }
  plain_request(req, 4, 3);
  send(fd, req, sizeof(req), 0);
  r = recv_wait(fd, resp, sizeof(resp), 1000);
  printf("%s\n", r >= 48 ? "answered" : "none");
  close(fd);
  return 0;
}

#define MAX_HAMMER 4096

/* Counts a response to one of our |n| requests (by its origin timestamp,
 * bytes 24..31, which echo our transmit timestamp); others are ignored. */
static void hammer_take(const uint8_t (*tx)[8], uint8_t *answered, unsigned n,
                        const uint8_t *resp, ssize_t r, unsigned *normal,
                        unsigned *kod) {
  unsigned i;
  if (r < 48)
    return;
  for (i = 0; i < n; i++)
    if (!answered[i] && !memcmp(tx[i], resp + 24, 8))
      break;
  if (i == n)
    return;
  answered[i] = 1;
  if (resp[1] == 0 && !memcmp(resp + 12, "RATE", 4))
    (*kod)++;
  else
    (*normal)++;
}

/* Sends 1 ms apart, then collects until 1 s passes without a response, so
 * a slow server (sanitizers, valgrind) is counted as exactly as a fast
 * one. */
static int mode_hammer(int argc, char **argv) {
  static uint8_t tx[MAX_HAMMER][8], answered[MAX_HAMMER];
  uint8_t req[MAX_PKT], resp[MAX_PKT];
  int fd = udp_socket(argv[2], (uint16_t)atoi(argv[3]));
  unsigned count = (unsigned)atoi(argv[4]), i, normal = 0, kod = 0;
  nts_src k;
  ntsntp_client_exchange ex;
  ssize_t r;
  if (fd < 0 || count > MAX_HAMMER) {
    fprintf(stderr, "socket, or COUNT over %u\n", MAX_HAMMER);
    return 2;
  }
  memset(&k, 0, sizeof(k));
  if (argc > 6 && ke_get((uint16_t)atoi(argv[5]), argv[6], &k.ke)) {
    fprintf(stderr, "NTS-KE: %s\n", k.ke.err);
    return 2;
  }
  for (i = 0; i < count; i++) {
    size_t len = argc > 6 ? nts_request(&k, &ex, req, 0, NULL)
                          : plain_request(req, 4, 3);
    memcpy(tx[i], req + 40, 8);
    send(fd, req, len, 0);
    while ((r = recv(fd, resp, sizeof(resp), MSG_DONTWAIT)) >= 0)
      hammer_take(tx, answered, i + 1, resp, r, &normal, &kod);
    sleep_ms(1);
  }
  while ((r = recv_wait(fd, resp, sizeof(resp), 1000)) >= 0)
    hammer_take(tx, answered, count, resp, r, &normal, &kod);
  printf("normal=%u kod=%u none=%u\n", normal, kod, count - normal - kod);
  close(fd);
  return 0;
}

static int mode_ke(char **argv) {
  ke_out k;
  int rv = ke_get((uint16_t)atoi(argv[2]), argv[3], &k);
  if (rv) {
    printf("ke failed: %s\n", k.err);
    return 1;
  }
  printf("ke ok (%zu cookies)\n", k.r.ncookies);
  ntsntp_ke_result_clear(&k.r);
  return 0;
}

static int mode_spray(char **argv) {
  uint8_t req[48];
  unsigned first = (unsigned)atoi(argv[3]), last = (unsigned)atoi(argv[4]);
  unsigned count = (unsigned)atoi(argv[5]), a, i;
  for (a = first; a <= last && a < 255; a++) {
    char src[32];
    int fd;
    snprintf(src, sizeof(src), "127.0.0.%u", a);
    fd = udp_socket(src, (uint16_t)atoi(argv[2]));
    if (fd < 0) {
      perror(src);
      return 2;
    }
    for (i = 0; i < count; i++) {
      send(fd, req, plain_request(req, 4, 3), 0);
      if (i % 4 == 3)
        sleep_ms(1); /* stay well below the socket buffers */
    }
    close(fd);
  }
  return 0;
}

/* ---- TCP: slow, half-open and garbage NTS-KE clients ---- */

static int tcp_connect(const char *src, uint16_t port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  inet_pton(AF_INET, src, &a.sin_addr);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
    goto fail;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  a.sin_port = htons(port);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
    goto fail;
  return fd;
fail:
  close(fd);
  return -1;
}

/* 0: still open; 1: the server closed it (EOF or reset). */
static int peer_closed(int fd) {
  uint8_t b[4096];
  ssize_t r;
  while ((r = recv(fd, b, sizeof(b), MSG_DONTWAIT)) > 0)
    ;
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

#define MAX_CONNS 256

static int mode_slow(char **argv) {
  /* The start of a TLS 1.3 ClientHello record, sent byte by byte. */
  static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00,
                                  0x01, 0xfc, 0x03, 0x03};
  uint16_t port = (uint16_t)atoi(argv[2]);
  double secs = atof(argv[3]), t0, last_send;
  unsigned rate = (unsigned)atoi(argv[4]), per = (unsigned)atoi(argv[6]);
  char srcs[1024], *save = NULL, *s;
  const char *src[MAX_CONNS];
  int fd[MAX_CONNS];
  double closed_at[MAX_CONNS];
  unsigned n = 0, i, sent = 0, open_n;

  snprintf(srcs, sizeof(srcs), "%s", argv[5]);
  for (s = strtok_r(srcs, ",", &save); s; s = strtok_r(NULL, ",", &save))
    for (i = 0; i < per && n < MAX_CONNS; i++) {
      src[n] = s;
      closed_at[n] = -1;
      fd[n] = tcp_connect(s, port);
      if (fd[n] < 0) {
        perror("connect");
        return 2;
      }
      n++;
    }
  t0 = mono();
  last_send = t0 - 1;
  printf("connected %u\n", n);
  fflush(stdout);
  do {
    int send_now = rate && mono() - last_send >= 1.0;
    if (send_now)
      last_send = mono();
    open_n = 0;
    for (i = 0; i < n; i++) {
      if (closed_at[i] >= 0)
        continue;
      if (send_now) {
        unsigned j;
        for (j = 0; j < rate; j++)
          send(fd[i], &hello[(sent + j) % sizeof(hello)], 1, MSG_NOSIGNAL);
      }
      if (peer_closed(fd[i]))
        closed_at[i] = mono() - t0;
      else
        open_n++;
    }
    if (send_now)
      sent += rate;
    sleep_ms(10);
  } while (open_n && mono() - t0 < secs);
  for (i = 0; i < n; i++) {
    if (closed_at[i] >= 0)
      printf("closed %s after %.2f\n", src[i], closed_at[i]);
    else
      printf("open %s after %.2f\n", src[i], mono() - t0);
    close(fd[i]);
  }
  return 0;
}

static int mode_raw(char **argv) {
  uint8_t buf[4096];
  size_t n = 0;
  const char *h = argv[3];
  double t0;
  int fd = tcp_connect("127.0.0.1", (uint16_t)atoi(argv[2]));
  if (fd < 0) {
    perror("connect");
    return 2;
  }
  while (h[0] && h[1] && n < sizeof(buf)) {
    unsigned v;
    if (sscanf(h, "%2x", &v) != 1)
      return 2;
    buf[n++] = (uint8_t)v;
    h += 2;
  }
  send(fd, buf, n, MSG_NOSIGNAL);
  t0 = mono();
  while (!peer_closed(fd) && mono() - t0 < 10)
    sleep_ms(5);
  printf("closed after %.2f\n", mono() - t0);
  close(fd);
  return 0;
}

static int mode_hangup(char **argv) {
  static const char cmds[] =
      "NTSCTL/1 clients\nNTSCTL/1 serverstats\nNTSCTL/1 sources\n"
      "NTSCTL/1 tracking\n";
  unsigned count = (unsigned)atoi(argv[4]), i;
  uint8_t buf[4096];
  for (i = 0; i < count; i++) {
    ntsntp_ke_client_settings ks;
    ntsntp_ke_client *c;
    struct sockaddr_un a;
    ntsntp_ssize n;
    int fd = tcp_connect("127.0.0.1", (uint16_t)atoi(argv[2]));
    ntsntp_ke_client_settings_default(&ks);
    ks.server_name = "localhost";
    if (fd < 0 || ntsntp_ke_client_new(&c, &ks, 0, NULL, 0) != 0)
      return 2;
    n = ntsntp_ke_client_write(c, buf, sizeof(buf));
    if (n > 0)
      (void)send(fd, buf, (size_t)n, MSG_NOSIGNAL);
    ntsntp_ke_client_del(c);
    close(fd);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[3]);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
      return 2;
    (void)send(fd, cmds, sizeof(cmds) - 1, MSG_NOSIGNAL);
    close(fd);
    sleep_ms(2);
  }
  printf("hung up %u times\n", count);
  return 0;
}

int main(int argc, char **argv) {
  const char *m = argc > 1 ? argv[1] : "";
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  if (!strcmp(m, "malformed") && argc >= 6)
    return mode_malformed(argc, argv);
  if (!strcmp(m, "query") && argc == 4)
    return mode_query(argv);
  if (!strcmp(m, "hammer") && (argc == 5 || argc == 7))
    return mode_hammer(argc, argv);
  if (!strcmp(m, "ke") && argc >= 4)
    return mode_ke(argv);
  if (!strcmp(m, "spray") && argc == 6)
    return mode_spray(argv);
  if (!strcmp(m, "slow") && argc == 7)
    return mode_slow(argv);
  if (!strcmp(m, "raw") && argc == 4)
    return mode_raw(argv);
  if (!strcmp(m, "hangup") && argc == 5)
    return mode_hangup(argv);
  fprintf(stderr, "usage: see the comment at the top of tests/tools/"
                  "ntsabuse.c\n");
  return 2;
}
