/* Server core: plain NTP, NTS, NAKs, drops, amplification bound. */
#include <arpa/inet.h>
#include <check.h>
#include <string.h>

#include "aead.h"
#include "ntsntp/access.h"
#include "ntsntp/client.h"
#include "ntsntp/server.h"
#include "rd.h"
#include "testutil.h"

/* Calls of det_rand: one per cookie the ring seals and one per response
 * nonce, so a count of the server's AES-SIV work. */
static unsigned rand_calls;

static int det_rand(void *user, uint8_t *buf, size_t len) {
  unsigned *seed = user;
  size_t i;
  rand_calls++;
  for (i = 0; i < len; i++)
    buf[i] = (uint8_t)rand_r(seed);
  return 0;
}

static unsigned seed = 1;
static ntsntp_server *srv, *srv_plain;
static ntsntp_keyring *kr;
static const uint64_t RX = 0xeeb21591e8270af9ULL, TX = 0xeeb21591e82d06d8ULL;

static void setup(void) {
  ntsntp_keyring_settings ks;
  ntsntp_server_settings ss;
  ntsntp_clock_state cs;
  ntsntp_keyring_settings_default(&ks);
  ks.rand = det_rand;
  ks.rand_user = &seed;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &ks, 1700000000, NULL, 0), 0);
  ntsntp_server_settings_default(&ss);
  ss.rand = det_rand;
  ss.rand_user = &seed;
  ck_assert_int_eq(ntsntp_server_new(&srv_plain, &ss, NULL, 0), 0);
  ss.keyring = kr;
  ck_assert_int_eq(ntsntp_server_new(&srv, &ss, NULL, 0), 0);
  ntsntp_clock_state_local(&cs, 10, RX - (1ULL << 32));
  ntsntp_server_set_clock(srv, &cs);
  ntsntp_server_set_clock(srv_plain, &cs);
}

static void teardown(void) {
  ntsntp_server_del(srv);
  ntsntp_server_del(srv_plain);
  ntsntp_keyring_del(kr);
}

/* prepare + finish; returns the response length or a negative verdict. */
static ntsntp_ssize serve(ntsntp_server *s, const uint8_t *req, size_t len,
                          uint8_t *out, size_t outlen,
                          ntsntp_server_ctx *ctx) {
  if (ntsntp_server_prepare(s, req, len, RX, ctx) == NTSNTP_SERVER_DROP)
    return -1;
  return ntsntp_server_finish(s, ctx, TX, out, outlen);
}

static void plain_request(uint8_t *b, uint8_t version) {
  memset(b, 0, 48);
  b[0] = (uint8_t)(version << 3 | 3);
  b[2] = 6;
  memcpy(b + 40, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
}

START_TEST(test_plain_v4_and_v3) {
  uint8_t req[48], out[48];
  ntsntp_server_ctx ctx;
  ntsntp_pkt_hdr h;
  uint8_t v;
  for (v = 3; v <= 4; v++) {
    plain_request(req, v);
    ck_assert_int_eq(serve(srv, req, 48, out, sizeof(out), &ctx), 48);
    ck_assert_int_eq(ctx.reason, NTSNTP_REASON_OK);
    ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, out, 48), 0);
    ck_assert_uint_eq(h.version, v);
    ck_assert_uint_eq(h.mode, 4);
    ck_assert_uint_eq(h.leap, 0);
    ck_assert_uint_eq(h.stratum, 10);
    ck_assert_uint_eq(h.refid, 0x7F7F0101u);
    ck_assert_uint_eq(h.poll, 6);
    ck_assert_uint_eq(h.org_ts, 0x1122334455667788ULL);
    ck_assert_uint_eq(h.rx_ts, RX);
    ck_assert_uint_eq(h.tx_ts, TX);
    ck_assert_uint_eq(h.ref_ts, RX - (1ULL << 32));
  }
}
END_TEST

START_TEST(test_unsynchronised_default) {
  ntsntp_server_settings ss;
  ntsntp_server *s;
  uint8_t req[48], out[48];
  ntsntp_server_ctx ctx;
  ntsntp_server_settings_default(&ss);
  ck_assert_int_eq(ntsntp_server_new(&s, &ss, NULL, 0), 0);
  plain_request(req, 4);
  ck_assert_int_eq(serve(s, req, 48, out, sizeof(out), &ctx), 48);
  ck_assert_uint_eq(out[0] >> 6, 3);
  ck_assert_uint_eq(out[1], 16);
  ntsntp_server_del(s);
}
END_TEST

START_TEST(test_drops) {
  uint8_t req[48], out[64];
  ntsntp_server_ctx ctx;
  size_t n;
  unsigned v, m;
  plain_request(req, 4);
  for (n = 0; n < 48; n++) {
    ck_assert_int_eq(ntsntp_server_prepare(srv, req, n, RX, &ctx),
                     NTSNTP_SERVER_DROP);
    ck_assert_int_eq(ctx.reason, NTSNTP_REASON_TOO_SHORT);
  }
  for (v = 0; v < 8; v++) {
    if (v == 3 || v == 4)
      continue;
    req[0] = (uint8_t)(v << 3 | 3);
    ck_assert_int_eq(ntsntp_server_prepare(srv, req, 48, RX, &ctx),
                     NTSNTP_SERVER_DROP);
    ck_assert_int_eq(ctx.reason, NTSNTP_REASON_BAD_VERSION);
  }
  for (m = 0; m < 8; m++) {
    if (m == 3)
      continue;
    req[0] = (uint8_t)(4 << 3 | m);
    ck_assert_int_eq(ntsntp_server_prepare(srv, req, 48, RX, &ctx),
                     NTSNTP_SERVER_DROP);
    ck_assert_int_eq(ctx.reason, NTSNTP_REASON_BAD_MODE);
    ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out)),
                     NTSNTP_ERR_STATE);
  }
}
END_TEST

START_TEST(test_bad_extension_fields) {
  uint8_t req[48 + 64];
  ntsntp_server_ctx ctx;
  static const uint16_t lens[] = {0, 2, 12, 18, 30, 68, 0xffff};
  size_t i;
  for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    plain_request(req, 4);
    memset(req + 48, 0, 64);
    req[48] = 0x01;
    req[49] = 0x04;
    req[50] = (uint8_t)(lens[i] >> 8);
    req[51] = (uint8_t)lens[i];
    ck_assert_int_eq(ntsntp_server_prepare(srv, req, sizeof(req), RX, &ctx),
                     NTSNTP_SERVER_DROP);
    ck_assert_int_eq(ctx.reason, NTSNTP_REASON_BAD_EF);
  }
  /* An unknown but well-formed field is ignored: plain answer, 48 bytes. */
  plain_request(req, 4);
  req[48] = 0x70;
  req[49] = 0x00;
  req[50] = 0;
  req[51] = 64;
  {
    uint8_t out[128];
    ck_assert_int_eq(serve(srv, req, sizeof(req), out, sizeof(out), &ctx), 48);
  }
}
END_TEST

/* Builds an NTS request with a fresh cookie from |kr|. */
static ntsntp_ssize nts_request(ntsntp_client_exchange *ex, uint8_t *buf,
                                size_t len, unsigned placeholders, int aead,
                                const ntsntp_keyring *ring) {
  uint8_t c2s[64], s2c[64], cookie[NTSNTP_COOKIE_MAX_LEN];
  ntsntp_client_params p;
  size_t klen = ntsntp_aead_key_len(aead);
  ntsntp_ssize clen;
  memset(c2s, 0x11, sizeof(c2s));
  memset(s2c, 0x22, sizeof(s2c));
  clen = ntsntp_cookie_seal(ring, aead, c2s, s2c, cookie, sizeof(cookie));
  ck_assert_int_eq(clen, (ntsntp_ssize)ntsntp_cookie_len(aead));
  memset(&p, 0, sizeof(p));
  p.rand = det_rand;
  p.rand_user = &seed;
  p.aead = aead;
  p.c2s = c2s;
  p.s2c = s2c;
  p.cookie = cookie;
  p.cookie_len = (size_t)clen;
  p.placeholders = placeholders;
  (void)klen;
  return ntsntp_client_request(ex, &p, buf, len);
}

START_TEST(test_nts_exchange) {
  uint8_t req[2048], out[2048];
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_ctx ctx;
  ntsntp_server_stats st;
  int aeads[] = {NTSNTP_AEAD_AES_SIV_CMAC_256, NTSNTP_AEAD_AES_SIV_CMAC_512};
  unsigned ph, a, i;
  memset(&st, 0, sizeof(st));
  for (a = 0; a < 2; a++)
    for (ph = 0; ph < 8; ph++) {
      ntsntp_ssize n = nts_request(&ex, req, sizeof(req), ph, aeads[a], kr), r;
      ck_assert_int_gt(n, 48);
      r = serve(srv, req, (size_t)n, out, sizeof(out), &ctx);
      ntsntp_server_stats_count(&st, &ctx);
      ck_assert_int_gt(r, 48);
      ck_assert_int_le(r, n); /* never longer than the request */
      ck_assert_int_eq(ctx.n_cookies, ph + 1);
      ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)r, RX, TX, &smp),
                       0);
      ck_assert_int_eq(smp.authenticated, 1);
      ck_assert_uint_eq(smp.n_cookies, ph + 1);
      for (i = 0; i < smp.n_cookies; i++) {
        uint8_t c2s[64], s2c[64];
        int got;
        ck_assert_uint_eq(smp.cookie_len[i], ntsntp_cookie_len(aeads[a]));
        ck_assert_int_eq(ntsntp_cookie_open(kr, smp.cookies[i],
                                            smp.cookie_len[i], &got, c2s, s2c),
                         0);
        ck_assert_int_eq(got, aeads[a]);
        ck_assert_uint_eq(c2s[0], 0x11);
        ck_assert_uint_eq(s2c[5], 0x22);
      }
      /* The same response again is a replay: rejected. */
      ck_assert_int_ne(ntsntp_client_response(&ex, out, (size_t)r, RX, TX, &smp),
                       0);
    }
  ck_assert_uint_eq(st.nts_authenticated, 16);
  ck_assert_uint_eq(st.cookies_issued, 2 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8));
}
END_TEST

START_TEST(test_nts_tampered_gets_nak) {
  uint8_t req[1024], out[1024], copy[1024];
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n = nts_request(&ex, req, sizeof(req), 0,
                               NTSNTP_AEAD_AES_SIV_CMAC_256, kr), r;
  size_t pos;
  unsigned naks = 0;
  /* No single flipped byte anywhere may yield an authenticated response;
   * every NAK echoes the UID and fits in the request's size. */
  for (pos = 0; pos < (size_t)n; pos++) {
    memcpy(copy, req, (size_t)n);
    copy[pos] ^= 0x01;
    if (ntsntp_server_prepare(srv, copy, (size_t)n, RX, &ctx) ==
        NTSNTP_SERVER_DROP)
      continue; /* mode, version or a length byte: dropped, fine */
    ck_assert_msg(ctx.verdict == NTSNTP_SERVER_RESPOND_NAK,
                  "tampered byte %zu accepted", pos);
    naks++;
    r = ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out));
    ck_assert_int_eq(r, 48 + 36);
    ck_assert_uint_eq(out[1], 0);
    ck_assert_mem_eq(out + 12, "NTSN", 4);
    ck_assert_mem_eq(out + 48, copy + 48, 36);
  }
  ck_assert_uint_gt(naks, (unsigned)n / 2);
  /* The client takes a NAK that carries its UID. */
  memcpy(copy, req, (size_t)n);
  copy[n - 1] ^= 0x80; /* last tag byte */
  ck_assert_int_eq(serve(srv, copy, (size_t)n, out, sizeof(out), &ctx), 84);
  ck_assert_int_eq(ntsntp_client_response(&ex, out, 84, RX, TX, &smp),
                   NTSNTP_ERR_NAK);
  /* A NAK with another UID is ignored (authentication failure). */
  out[60] ^= 1;
  ck_assert_int_eq(ntsntp_client_response(&ex, out, 84, RX, TX, &smp),
                   NTSNTP_ERR_AUTH);
}
END_TEST

START_TEST(test_nts_unknown_key_and_no_keyring) {
  ntsntp_keyring_settings ks;
  ntsntp_keyring *other;
  uint8_t req[1024], out[1024];
  ntsntp_client_exchange ex;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n;
  ntsntp_keyring_settings_default(&ks);
  ck_assert_int_eq(ntsntp_keyring_new(&other, &ks, 1700000000, NULL, 0), 0);
  n = nts_request(&ex, req, sizeof(req), 2, NTSNTP_AEAD_AES_SIV_CMAC_256,
                  other);
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND_NAK);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_UNKNOWN_KEY);
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out)), 84);
  /* A server without NTS drops NTS requests. */
  ck_assert_int_eq(ntsntp_server_prepare(srv_plain, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_OFF);
  ntsntp_keyring_del(other);
}
END_TEST

/* Appends a raw field to a request after the header (shifting the rest). */
START_TEST(test_nts_malformed_requests) {
  uint8_t req[1024], bad[1100];
  ntsntp_client_exchange ex;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n = nts_request(&ex, req, sizeof(req), 1,
                               NTSNTP_AEAD_AES_SIV_CMAC_256, kr);
  size_t uid = 48, cookie = 48 + 36, ph = cookie + 108, auth = ph + 108;
  ck_assert_uint_eq(ntsntp__test_get_u16(req + auth), NTSNTP_EF_AUTHENTICATOR);
  /* Missing UID: drop (no NAK without a UID). */
  memcpy(bad, req, uid);
  memcpy(bad + uid, req + cookie, (size_t)n - cookie);
  ck_assert_int_eq(ntsntp_server_prepare(srv, bad, (size_t)n - 36, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_MALFORMED);
  /* Duplicated UID. */
  memcpy(bad, req, cookie);
  memcpy(bad + cookie, req + uid, 36);
  memcpy(bad + cookie + 36, req + cookie, (size_t)n - cookie);
  ck_assert_int_eq(ntsntp_server_prepare(srv, bad, (size_t)n + 36, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_MALFORMED);
  /* Duplicated cookie. */
  memcpy(bad, req, ph);
  memcpy(bad + ph, req + cookie, 108);
  memcpy(bad + ph + 108, req + ph, (size_t)n - ph);
  ck_assert_int_eq(ntsntp_server_prepare(srv, bad, (size_t)n + 108, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_MALFORMED);
  /* Missing authenticator. */
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, auth, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_MALFORMED);
  /* Placeholder shorter than the cookie. */
  memcpy(bad, req, (size_t)n);
  bad[ph + 3] = 104;
  memmove(bad + ph + 104, req + ph + 108, (size_t)n - ph - 108);
  ck_assert_int_eq(ntsntp_server_prepare(srv, bad, (size_t)n - 4, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  /* Every truncation of a valid request: dropped or NAKed, never served,
   * never a crash. */
  for (size_t k = 0; k < (size_t)n; k++) {
    ntsntp_server_verdict v = ntsntp_server_prepare(srv, req, k, RX, &ctx);
    ck_assert(v == NTSNTP_SERVER_DROP || (k == 48 && v == NTSNTP_SERVER_RESPOND) ||
              (k > 48 && v == NTSNTP_SERVER_RESPOND_NAK) ||
              (k > 48 && k <= 48 + 24 && v == NTSNTP_SERVER_RESPOND));
    if (v == NTSNTP_SERVER_RESPOND) {
      ck_assert_int_eq(ctx.nts, 0);
      ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, bad, k), 48);
    } else {
      ntsntp_server_ctx_clear(&ctx);
    }
  }
}
END_TEST

START_TEST(test_ratelimit_kod) {
  uint8_t req[1024], out[1024];
  ntsntp_client_exchange ex;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n;
  plain_request(req, 4);
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, 48, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ntsntp_server_ctx_ratelimit(&ctx);
  ck_assert_int_eq(ctx.verdict, NTSNTP_SERVER_RESPOND_KOD);
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, 48), 48);
  ck_assert_uint_eq(out[1], 0);
  ck_assert_mem_eq(out + 12, "RATE", 4);
  /* NTS requests are dropped instead. */
  n = nts_request(&ex, req, sizeof(req), 0, NTSNTP_AEAD_AES_SIV_CMAC_256, kr);
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ntsntp_server_ctx_ratelimit(&ctx);
  ck_assert_int_eq(ctx.verdict, NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_RATELIMIT);
}
END_TEST

/* The limiter decides between parse and authenticate: a limited NTS
 * request costs no AES-SIV operation (no cookie opened, no tag checked, no
 * cookie sealed) and is dropped, whatever its tag. */
START_TEST(test_ratelimit_before_crypto) {
  uint8_t req[1024], bad[1024], out[1024];
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n = nts_request(&ex, req, sizeof(req), 3,
                               NTSNTP_AEAD_AES_SIV_CMAC_256, kr), r;
  unsigned before;
  ck_assert_int_gt(n, 48);
  memcpy(bad, req, (size_t)n);
  bad[n - 1] ^= 0x80; /* last tag byte */

  /* parse does no cryptography and leaves the request pending. */
  before = rand_calls;
  ck_assert_int_eq(ntsntp_server_parse(srv, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_OK);
  ck_assert_int_eq(ctx.nts_pending, 1);
  ck_assert_int_eq(ctx.nts, 0);
  ck_assert_int_eq(ctx.aead, 0); /* the cookie is still closed */
  /* Not answerable before authenticate. */
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out)),
                   NTSNTP_ERR_STATE);
  /* Limited: dropped, and authenticate has nothing left to do. */
  ntsntp_server_ctx_ratelimit(&ctx);
  ck_assert_int_eq(ctx.verdict, NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_RATELIMIT);
  ck_assert_int_eq(ntsntp_server_authenticate(srv, &ctx), NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_RATELIMIT);
  ck_assert_int_eq(ctx.aead, 0);
  ck_assert_uint_eq(rand_calls, before);

  /* A bad tag is not even looked at when limited... */
  ck_assert_int_eq(ntsntp_server_parse(srv, bad, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ntsntp_server_ctx_ratelimit(&ctx);
  ck_assert_int_eq(ntsntp_server_authenticate(srv, &ctx), NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_RATELIMIT);
  ck_assert_int_eq(ctx.aead, 0);
  /* ...and gets its NAK when not. */
  ck_assert_int_eq(ntsntp_server_parse(srv, bad, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ntsntp_server_authenticate(srv, &ctx),
                   NTSNTP_SERVER_RESPOND_NAK);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_AUTH_FAILED);
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out)), 84);
  ck_assert_uint_eq(rand_calls, before);

  /* Not limited: the same request is served as by prepare, with its four
   * cookies and one nonce (what the limited one saved). */
  ck_assert_int_eq(ntsntp_server_parse(srv, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ntsntp_server_authenticate(srv, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_uint_eq(rand_calls, before + 4 + 1);
  ck_assert_int_eq(ctx.nts, 1);
  ck_assert_int_eq(ctx.nts_pending, 0);
  ck_assert_uint_eq(ctx.n_cookies, 4);
  /* authenticate twice does not redo the work. */
  ck_assert_int_eq(ntsntp_server_authenticate(srv, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_uint_eq(rand_calls, before + 4 + 1);
  r = ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out));
  ck_assert_int_gt(r, 48);
  ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)r, RX, TX, &smp),
                   0);
  ck_assert_int_eq(smp.authenticated, 1);
  ck_assert_uint_eq(smp.n_cookies, 4);

  /* Plain requests: parse decides, authenticate leaves it alone; a limited
   * one still gets its KoD. */
  plain_request(req, 4);
  ck_assert_int_eq(ntsntp_server_parse(srv, req, 48, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ctx.nts_pending, 0);
  ntsntp_server_ctx_ratelimit(&ctx);
  ck_assert_int_eq(ntsntp_server_authenticate(srv, &ctx),
                   NTSNTP_SERVER_RESPOND_KOD);
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, 48), 48);
  ck_assert_mem_eq(out + 12, "RATE", 4);
  /* Malformed NTS fields are found by parse alone. */
  ck_assert_int_eq(ntsntp_server_parse(srv, bad, 48 + 36, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_MALFORMED);
  ck_assert_int_eq(ntsntp_server_parse(srv_plain, bad, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ctx.reason, NTSNTP_REASON_NTS_OFF);
  ck_assert_uint_eq(rand_calls, before + 4 + 1);
}
END_TEST

/* The reference time is never later than the transmit time, even when the
 * clock state was updated after the caller read its transmit time (the
 * local clock's timer sets ref = now every second). */
static uint64_t served_ref(ntsntp_server *s, uint64_t ref, uint64_t tx,
                           int nts) {
  uint8_t req[1024], out[1024];
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_ctx ctx;
  ntsntp_clock_state cs;
  ntsntp_pkt_hdr h;
  ntsntp_ssize n = 48, r;
  ntsntp_clock_state_local(&cs, 10, ref);
  ntsntp_server_set_clock(s, &cs);
  if (nts)
    n = nts_request(&ex, req, sizeof(req), 0, NTSNTP_AEAD_AES_SIV_CMAC_256,
                    kr);
  else
    plain_request(req, 4);
  ck_assert_int_eq(ntsntp_server_prepare(s, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  r = ntsntp_server_finish(s, &ctx, tx, out, sizeof(out));
  ck_assert_int_ge(r, 48);
  if (nts) { /* the header is authenticated: check what the client takes */
    ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)r, RX, tx, &smp),
                     0);
    ck_assert_int_eq(smp.authenticated, 1);
    h = smp.hdr;
  } else {
    ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, out, 48), 0);
  }
  ck_assert_uint_eq(h.tx_ts, tx);
  ck_assert_uint_eq(h.stratum, 10);
  return h.ref_ts;
}

START_TEST(test_ref_not_after_tx) {
  const uint64_t wrap_ref = 0xfffffff000000000ULL, wrap_tx = 0x10ULL << 32;
  int nts;
  for (nts = 0; nts <= 1; nts++) {
    /* Updated after the transmit time was read: capped at it. */
    ck_assert_uint_eq(served_ref(srv, TX + (1ULL << 32), TX, nts), TX);
    ck_assert_uint_eq(served_ref(srv, TX + 1, TX, nts), TX);
    /* Earlier or equal: as published. */
    ck_assert_uint_eq(served_ref(srv, TX, TX, nts), TX);
    ck_assert_uint_eq(served_ref(srv, TX - 1, TX, nts), TX - 1);
    ck_assert_uint_eq(served_ref(srv, RX - (1ULL << 32), TX, nts),
                      RX - (1ULL << 32));
    /* Across an era rollover: 2^64 - 16 s is before 16 s of the next era;
     * and the other way round it is after. */
    ck_assert_uint_eq(served_ref(srv, wrap_ref, wrap_tx, nts), wrap_ref);
    ck_assert_uint_eq(served_ref(srv, wrap_tx, wrap_ref, nts), wrap_ref);
    /* 0 is "never set", not a time: left as it is. */
    ck_assert_uint_eq(served_ref(srv, 0, TX, nts), 0);
  }
}
END_TEST

START_TEST(test_output_buffer_too_small) {
  uint8_t req[1024], out[1024];
  ntsntp_client_exchange ex;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n = nts_request(&ex, req, sizeof(req), 3,
                               NTSNTP_AEAD_AES_SIV_CMAC_256, kr);
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, (size_t)n, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, 100),
                   NTSNTP_ERR_NOBUF);
  plain_request(req, 4);
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, 48, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ntsntp_server_finish(srv, &ctx, TX, out, 47),
                   NTSNTP_ERR_NOBUF);
}
END_TEST

START_TEST(test_root_dispersion_grows) {
  ntsntp_clock_state cs;
  uint8_t req[48], out[48];
  ntsntp_server_ctx ctx;
  ntsntp_pkt_hdr h;
  ntsntp_clock_state_local(&cs, 2, RX - (1000ULL << 32));
  cs.root_disp = ntsntp_short_from_double(0.001);
  cs.disp_rate = 15e-6;
  ntsntp_server_set_clock(srv, &cs);
  plain_request(req, 4);
  ck_assert_int_eq(serve(srv, req, 48, out, 48, &ctx), 48);
  ntsntp_pkt_decode_hdr(&h, out, 48);
  /* 1 ms + 1000 s * 15 ppm = 16 ms */
  ck_assert_double_eq_tol(ntsntp_short_to_double(h.root_disp), 0.016, 1e-4);
  ck_assert_uint_eq(h.stratum, 2);
}
END_TEST


/* Amplification: over many random and crafted requests, no response (NAKs
 * and KoDs included) is ever longer than its request, and a buffer the
 * size of the request always suffices. */
START_TEST(test_never_amplifies) {
  uint8_t base[2048], req[2048], out[2048];
  ntsntp_client_exchange ex;
  ntsntp_server_ctx ctx;
  unsigned r = 7, i, answered = 0, naks = 0, kods = 0, nts_ok = 0;
  for (i = 0; i < 60000; i++) {
    size_t len;
    ntsntp_ssize n;
    unsigned kind = i % 4;
    if (kind == 0) { /* random bytes, header made plausible half the time */
      len = (size_t)(rand_r(&r) % 600);
      for (size_t k = 0; k < len; k++)
        req[k] = (uint8_t)rand_r(&r);
      if (len && (i & 4))
        req[0] = (uint8_t)((rand_r(&r) & 0xc0) | (4 << 3) | 3);
    } else { /* a real NTS request, then damaged */
      n = nts_request(&ex, base, sizeof(base), (unsigned)rand_r(&r) % 8,
                      i & 8 ? NTSNTP_AEAD_AES_SIV_CMAC_512
                            : NTSNTP_AEAD_AES_SIV_CMAC_256,
                      kr);
      ck_assert_int_gt(n, 0);
      len = (size_t)n;
      memcpy(req, base, len);
      if (kind == 2) /* truncate */
        len = (size_t)rand_r(&r) % (len + 1);
      if (kind == 3) /* flip a few bytes */
        for (unsigned f = 0; f < 1 + (unsigned)rand_r(&r) % 3; f++)
          req[(size_t)rand_r(&r) % len] ^= (uint8_t)(1 + rand_r(&r) % 255);
    }
    if (i % 3 == 0) { /* the runtime's order: limiter before the crypto */
      if (ntsntp_server_parse(srv, req, len, RX, &ctx) == NTSNTP_SERVER_DROP)
        continue;
      if (i % 5 == 0)
        ntsntp_server_ctx_ratelimit(&ctx);
      ntsntp_server_authenticate(srv, &ctx);
    } else if (ntsntp_server_prepare(srv, req, len, RX, &ctx) ==
               NTSNTP_SERVER_DROP) {
      continue;
    } else if (i % 5 == 0) {
      ntsntp_server_ctx_ratelimit(&ctx); /* KoD RATE, or an NTS drop */
    }
    if (ctx.verdict == NTSNTP_SERVER_DROP)
      continue;
    naks += ctx.verdict == NTSNTP_SERVER_RESPOND_NAK;
    kods += ctx.verdict == NTSNTP_SERVER_RESPOND_KOD;
    nts_ok += ctx.nts;
    /* Exactly the request's size of room: never NOBUF. */
    n = ntsntp_server_finish(srv, &ctx, TX, out, len);
    ck_assert_msg(n > 0 && (size_t)n <= len, "request %u: %zu bytes in, %td out",
                  i, len, n);
    answered++;
  }
  /* The mix really covered every kind of answer. */
  ck_assert_uint_gt(answered, 10000);
  ck_assert_uint_gt(naks, 1000);
  ck_assert_uint_gt(kods, 20);
  ck_assert_uint_gt(nts_ok, 1000);
}
END_TEST

/* ---- AEAD 30 (AES-128-GCM-SIV): 12-byte nonces, RFC 8915 5.6 padding ---- */

/* Random bytes from a counter: the known-answer inputs. */
static int ctr_rand(void *user, uint8_t *buf, size_t len) {
  uint8_t *c = user;
  size_t i;
  for (i = 0; i < len; i++)
    buf[i] = (*c)++;
  return 0;
}

/* A request with |cookie| whose Authenticator has a |nlen|-byte nonce (0x5a)
 * and |extra| bytes of Additional Padding, sealed with |c2s| under |aead| if
 * that AEAD takes the nonce, else with a tag of zeros.  Returns the length. */
static size_t raw_nts_request(uint8_t *b, int aead, const uint8_t *c2s,
                              const uint8_t *cookie, size_t clen, size_t nlen,
                              size_t extra) {
  size_t len = 48, ef = (4 + clen + 3) & ~(size_t)3, body, i;
  uint8_t nonce[32];
  ntsntp__aead a;
  plain_request(b, 4);
  b[len] = 0x01, b[len + 1] = 0x04, b[len + 2] = 0, b[len + 3] = 36;
  for (i = 0; i < 32; i++)
    b[len + 4 + i] = (uint8_t)(0x30 + i);
  len += 36;
  memset(b + len, 0, ef);
  b[len] = 0x02, b[len + 1] = 0x04, b[len + 2] = 0, b[len + 3] = (uint8_t)ef;
  memcpy(b + len + 4, cookie, clen);
  len += ef;
  memset(nonce, 0x5a, sizeof(nonce));
  body = 4 + ((nlen + 3) & ~(size_t)3) + 16 + extra;
  memset(b + len, 0, 4 + body);
  b[len] = 0x04, b[len + 1] = 0x04;
  b[len + 2] = (uint8_t)((4 + body) >> 8), b[len + 3] = (uint8_t)(4 + body);
  b[len + 5] = (uint8_t)nlen, b[len + 7] = 16;
  memcpy(b + len + 8, nonce, nlen);
  if (ntsntp__aead_nonce_ok(aead, nlen)) {
    ck_assert_int_eq(
        ntsntp__aead_init(&a, aead, c2s, ntsntp_aead_key_len(aead)), 0);
    ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, nlen, b, len, NULL, 0,
                                       b + len + 8 + ((nlen + 3) & ~3u)),
                     0);
    ntsntp__aead_clear(&a);
  }
  return len + 4 + body;
}

/* RFC 8915 5.6: the nonce a given AEAD takes, and nonce + padding spanning
 * min(16, the AEAD's longest nonce).  SIV-CMAC: any nonce, 16 bytes of
 * room; a short nonce with Additional Padding is served with our 16-byte
 * one in a response no longer than the request. */
START_TEST(test_nts_nonce_padding_rule) {
  static const struct {
    size_t nlen, extra;
    int ok;
  } cases[] = {{16, 0, 1}, {12, 4, 1}, {1, 12, 1}, {32, 0, 1},
               {12, 0, 0}, {8, 4, 0},  {4, 8, 0}};
  uint8_t c2s[32], s2c[32], cookie[NTSNTP_COOKIE_MAX_LEN], req[512], out[512];
  ntsntp_server_ctx ctx;
  size_t i, n;
  ntsntp_ssize clen, r;
  memset(c2s, 0x11, sizeof(c2s));
  memset(s2c, 0x22, sizeof(s2c));
  clen = ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, s2c, cookie,
                            sizeof(cookie));
  ck_assert_int_eq(clen, 104);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    n = raw_nts_request(req, NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, cookie,
                        (size_t)clen, cases[i].nlen, cases[i].extra);
    ntsntp_server_prepare(srv, req, n, RX, &ctx);
    if (!cases[i].ok) {
      ck_assert_msg(ctx.verdict == NTSNTP_SERVER_DROP &&
                        ctx.reason == NTSNTP_REASON_NTS_MALFORMED,
                    "case %zu: verdict %d reason %d", i, ctx.verdict,
                    ctx.reason);
      continue;
    }
    ck_assert_msg(ctx.verdict == NTSNTP_SERVER_RESPOND && ctx.nts,
                  "case %zu: verdict %d reason %d", i, ctx.verdict, ctx.reason);
    r = ntsntp_server_finish(srv, &ctx, TX, out, n);
    ck_assert_int_gt(r, 48);
    ck_assert_uint_le((size_t)r, n);
    /* Our nonce: 16 bytes. */
    ck_assert_uint_eq(ntsntp__test_get_u16(out + 48 + 36), 0x0404);
    ck_assert_uint_eq(ntsntp__test_get_u16(out + 48 + 36 + 4), 16);
  }
}
END_TEST

/* Without GCM-SIV in nettle (< 3.9), AEAD 30 is refused everywhere. */
START_TEST(test_nts_gcm_siv_absent) {
  uint8_t c2s[16] = {0}, cookie[NTSNTP_COOKIE_MAX_LEN], req[512];
  ntsntp_client_exchange ex;
  ntsntp_client_params p;
  if (ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV))
    return; /* the tests below run instead */
  fprintf(stderr, "server: AEAD 30 tests skipped: this nettle has no "
                  "AES-128-GCM-SIV (nettle >= 3.9 has)\n");
  ck_assert_uint_eq(ntsntp_cookie_len(NTSNTP_AEAD_AES_128_GCM_SIV), 0);
  ck_assert_int_eq(ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_128_GCM_SIV, c2s, c2s,
                                      cookie, sizeof(cookie)),
                   NTSNTP_ERR_INVALID_ARG);
  memset(&p, 0, sizeof(p));
  memset(cookie, 1, 72);
  p.aead = NTSNTP_AEAD_AES_128_GCM_SIV;
  p.c2s = p.s2c = c2s;
  p.cookie = cookie;
  p.cookie_len = 72;
  ck_assert_int_eq(ntsntp_client_request(&ex, &p, req, sizeof(req)),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

/* tests/vectors/aes-128-gcm-siv/nts-exchange.txt: an AEAD 30 exchange with
 * 12-byte nonces computed by gen-nts-exchange.py there with pyca/cryptography
 * (OpenSSL's AES-GCM-SIV and AES-SIV), independently of nettle. */
static const char kat_keyfile[] = "NTSNTP-KEYS 1\ninterval 604800\nepoch 2810\n"
                                  "1a2b3c40 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
                                  "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf\n"
                                  "1a2b3c41 c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
                                  "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf\n";
static const int64_t kat_now = 1699488000;
static const char kat_c2s[] = "404142434445464748494a4b4c4d4e4f";
static const char kat_s2c[] = "505152535455565758595a5b5c5d5e5f";
static const char kat_req_cookie[] =
    "1a2b3c40f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff60d7236b8dc5c98584a94a6ae1463cd9"
    "5780c77cbfdfe9757533254ed93bf094df5382ca24336d014c75d46fcaf48ef2c40f0c0e";
static const char kat_request[] =
    "230000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000010203040506070104002408090a0b0c0d0e0f101112131415161718191a1b"
    "1c1d1e1f20212223242526270204004c1a2b3c40f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
    "60d7236b8dc5c98584a94a6ae1463cd95780c77cbfdfe9757533254ed93bf094df5382ca"
    "24336d014c75d46fcaf48ef2c40f0c0e04040024000c001028292a2b2c2d2e2f30313233"
    "8ff639a2bb9a5616d09c3f225300c9b7";
static const char kat_new_cookie[] =
    "1a2b3c40808182838485868788898a8b8c8d8e8fbf5cdca1220eaf63d68eafc43345e77f"
    "7a850a1e49f8a29273e1fcbb122be1817af30fff13b987a649ffc919f18acae32a87cf9a";
static const char kat_response[] =
    "240a00ec00000000000000007f7f0101eeb21590e8270af90001020304050607eeb21591"
    "e8270af9eeb21591e82d06d80104002408090a0b0c0d0e0f101112131415161718191a1b"
    "1c1d1e1f202122232425262704040070000c005c606162636465666768696a6bb37ea3c8"
    "bbfab39e38a3829c9f648243d168ece189ba77ea7aaa99bee343e8988f2ffb941bbcc56b"
    "e35b40626b191245e9ac59b5c71ce0233fb6092e6fcc3b55a902bca8a45d1056bcd97467"
    "cc6b8b32811749493dbd50a1dc25c914";

/* Client and server against the known answer, byte for byte. */
START_TEST(test_nts_gcm_siv_known_answer) {
  uint8_t c2s[16], s2c[16], cookie[72], req[256], want[256], out[256];
  uint8_t kctr = 0x80, sctr = 0x60, cctr = 0x00;
  ntsntp_keyring_settings ks;
  ntsntp_server_settings ss;
  ntsntp_clock_state cs;
  ntsntp_client_params p;
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_ctx ctx;
  ntsntp_keyring *ring;
  ntsntp_server *s;
  size_t reql, wl;
  ntsntp_ssize n;

  if (!ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV))
    return;
  tu_unhex(kat_c2s, c2s, sizeof(c2s));
  tu_unhex(kat_s2c, s2c, sizeof(s2c));
  ck_assert_uint_eq(tu_unhex(kat_req_cookie, cookie, sizeof(cookie)), 72);
  reql = tu_unhex(kat_request, req, sizeof(req));
  ck_assert_uint_eq(reql, 196);

  /* Client: 12-byte nonce, no Additional Padding, GCM-SIV tag. */
  memset(&p, 0, sizeof(p));
  p.rand = ctr_rand;
  p.rand_user = &cctr;
  p.aead = NTSNTP_AEAD_AES_128_GCM_SIV;
  p.c2s = c2s;
  p.s2c = s2c;
  p.cookie = cookie;
  p.cookie_len = sizeof(cookie);
  n = ntsntp_client_request(&ex, &p, out, sizeof(out));
  ck_assert_int_eq(n, (ntsntp_ssize)reql);
  ck_assert_mem_eq(out, req, reql);

  /* Server: the key file's master key opens the cookie; it answers with a
   * 12-byte nonce and one new cookie, as long as the request. */
  ntsntp_keyring_settings_default(&ks);
  ks.nkeys = 2;
  ks.rand = ctr_rand;
  ks.rand_user = &kctr;
  ck_assert_int_eq(ntsntp_keyring_new(&ring, &ks, kat_now, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_keyring_load(ring, (const uint8_t *)kat_keyfile,
                                       sizeof(kat_keyfile) - 1, kat_now),
                   0);
  kctr = 0x80;
  ntsntp_server_settings_default(&ss);
  ss.keyring = ring;
  ss.rand = ctr_rand;
  ss.rand_user = &sctr;
  ck_assert_int_eq(ntsntp_server_new(&s, &ss, NULL, 0), 0);
  ntsntp_clock_state_local(&cs, 10, RX - (1ULL << 32));
  ntsntp_server_set_clock(s, &cs);
  ck_assert_int_eq(ntsntp_server_prepare(s, req, reql, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ctx.aead, NTSNTP_AEAD_AES_128_GCM_SIV);
  ck_assert_int_eq(ctx.nts, 1);
  n = ntsntp_server_finish(s, &ctx, TX, out, reql);
  wl = tu_unhex(kat_response, want, sizeof(want));
  ck_assert_int_eq(n, (ntsntp_ssize)wl);
  ck_assert_mem_eq(out, want, wl);

  /* Client: authenticates it and takes the new cookie. */
  ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)n, RX, TX, &smp),
                   0);
  ck_assert_int_eq(smp.authenticated, 1);
  ck_assert_uint_eq(smp.n_cookies, 1);
  ck_assert_uint_eq(smp.cookie_len[0], 72);
  tu_unhex(kat_new_cookie, cookie, sizeof(cookie));
  ck_assert_mem_eq(smp.cookies[0], cookie, 72);
  ntsntp_server_del(s);
  ntsntp_keyring_del(ring);
}
END_TEST

/* AEAD 30 with the wrong nonce: dropped as malformed, never an internal
 * error, and never sent to nettle; the client refuses such answers. */
START_TEST(test_nts_gcm_siv_bad_nonces) {
  static const struct {
    size_t nlen, extra;
  } bad[] = {{16, 0}, {8, 4}, {13, 0}, {11, 4}, {1, 12}};
  uint8_t c2s[16], s2c[16], cookie[NTSNTP_COOKIE_MAX_LEN], req[512], out[512];
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_server_ctx ctx;
  ntsntp_server_stats st;
  ntsntp_ssize clen, n, r;
  size_t i, len, auth;
  if (!ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV))
    return;
  memset(&st, 0, sizeof(st));
  memset(c2s, 0x11, sizeof(c2s));
  memset(s2c, 0x22, sizeof(s2c));
  clen = ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_128_GCM_SIV, c2s, s2c, cookie,
                            sizeof(cookie));
  ck_assert_int_eq(clen, 72);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    len = raw_nts_request(req, NTSNTP_AEAD_AES_128_GCM_SIV, c2s, cookie,
                          (size_t)clen, bad[i].nlen, bad[i].extra);
    ck_assert_int_eq(ntsntp_server_prepare(srv, req, len, RX, &ctx),
                     NTSNTP_SERVER_DROP);
    ck_assert_msg(ctx.reason == NTSNTP_REASON_NTS_MALFORMED,
                  "nonce %zu: reason %s", bad[i].nlen,
                  ntsntp_server_reason_name(ctx.reason));
    ntsntp_server_stats_count(&st, &ctx);
  }
  ck_assert_uint_eq(st.reasons[NTSNTP_REASON_INTERNAL], 0);
  /* The right one (12, no padding) is served. */
  len = raw_nts_request(req, NTSNTP_AEAD_AES_128_GCM_SIV, c2s, cookie,
                        (size_t)clen, 12, 0);
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, len, RX, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ctx.nts, 1);
  ntsntp_server_ctx_clear(&ctx);

  /* Client side: a good exchange, then its response with the nonce made
   * 16 bytes long (a SIV-CMAC layout) is refused, not crashed on. */
  n = nts_request(&ex, req, sizeof(req), 2, NTSNTP_AEAD_AES_128_GCM_SIV, kr);
  ck_assert_int_gt(n, 0);
  r = serve(srv, req, (size_t)n, out, sizeof(out), &ctx);
  ck_assert_int_gt(r, 48);
  ck_assert_int_le(r, n);
  auth = 48 + 36;
  ck_assert_uint_eq(ntsntp__test_get_u16(out + auth), 0x0404);
  ck_assert_uint_eq(ntsntp__test_get_u16(out + auth + 4), 12);
  {
    uint8_t longer[600];
    size_t ct = (size_t)r - auth - 8 - 12;
    memcpy(longer, out, auth + 8 + 12);
    memset(longer + auth + 8 + 12, 0, 4);
    memcpy(longer + auth + 8 + 16, out + auth + 8 + 12, ct);
    longer[auth + 3] = (uint8_t)(out[auth + 3] + 4);
    longer[auth + 5] = 16;
    ck_assert_int_eq(
        ntsntp_client_response(&ex, longer, (size_t)r + 4, RX, TX, &smp),
        NTSNTP_ERR_AUTH);
  }
  ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)r, RX, TX, &smp),
                   0);
  ck_assert_uint_eq(smp.n_cookies, 3);
  ck_assert_uint_eq(smp.cookie_len[0], 72);
}
END_TEST

/* ---- interleaved mode (RFC 9769) ---- */

/* A plain request with the given origin, receive and transmit fields. */
static void xl_request(uint8_t *b, uint64_t org, uint64_t rx, uint64_t tx) {
  plain_request(b, 4);
  ntsntp__put_u64(b + 24, org);
  ntsntp__put_u64(b + 32, rx);
  ntsntp__put_u64(b + 40, tx);
}

/* parse, the client's state, finish at |tx|; returns the response. */
static ntsntp_pkt_hdr xl_serve(const uint8_t *req, uint64_t rx, uint64_t tx,
                               ntsntp_xleave_state *st, ntsntp_server_ctx *ctx) {
  uint8_t out[48];
  ntsntp_pkt_hdr h;
  ck_assert_int_eq(ntsntp_server_parse(srv_plain, req, 48, rx, ctx),
                   NTSNTP_SERVER_RESPOND);
  ntsntp_server_ctx_xleave(ctx, st);
  ck_assert_int_eq(ntsntp_server_finish(srv_plain, ctx, tx, out, 48), 48);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, out, 48), 0);
  return h;
}

/* Injected timestamps, one client: the third exchange is the first one
 * answered interleaved, with the measured transmit time of the second
 * response; a lost response and a reordered request fall back to basic
 * mode and never pair a transmit time with the wrong request. */
START_TEST(test_xleave_bookkeeping) {
  const uint64_t S = 1ULL << 32; /* one second */
  ntsntp_xleave_state st = {0, 0};
  ntsntp_server_ctx ctx;
  ntsntp_pkt_hdr h;
  uint8_t req[48];
  uint64_t r1 = RX, r2 = RX + S, r3 = RX + 2 * S, r4 = RX + 3 * S;
  uint64_t r5 = RX + 4 * S, r6 = RX + 5 * S;
  uint64_t k2 = r2 + 1000; /* kernel transmit time of response 2 */

  /* 1: basic request (zeros): basic answer, its receive time recorded. */
  xl_request(req, 0, 0, 0x1111);
  h = xl_serve(req, r1, r1 + 500, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_int_eq(ctx.want_tx_ts, 0);
  ck_assert_uint_eq(h.org_ts, 0x1111);
  ck_assert_uint_eq(h.tx_ts, r1 + 500);
  ck_assert_uint_eq(st.rx, r1);
  /* 2: asks (origin = our receive time of 1), no transmit time measured
   * for response 1: basic, and this response is to be measured. */
  xl_request(req, r1, 0xc0, 0x2222);
  h = xl_serve(req, r2, r2 + 500, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_int_eq(ctx.want_tx_ts, 1);
  ck_assert_uint_eq(h.org_ts, 0x2222);
  ck_assert_uint_eq(h.tx_ts, r2 + 500);
  /* A late timestamp of response 1 is refused; 2's is kept. */
  ck_assert_int_eq(ntsntp_xleave_state_tx(&st, r1, r1 + 900), 0);
  ck_assert_int_eq(ntsntp_xleave_state_tx(&st, r2, 0), 0);
  ck_assert_int_eq(ntsntp_xleave_state_tx(&st, r2, k2), 1);
  /* 3: interleaved: origin = the request's receive field, receive = now,
   * transmit = the measured time of response 2 (not the clock read). */
  xl_request(req, r2, 0xc1, 0x3333);
  h = xl_serve(req, r3, r3 + 500, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 1);
  ck_assert_uint_eq(h.org_ts, 0xc1);
  ck_assert_uint_eq(h.rx_ts, r3);
  ck_assert_uint_eq(h.tx_ts, k2);
  ck_assert_uint_le(h.ref_ts, k2); /* reference time capped at transmit */
  ck_assert_uint_eq(st.rx, r3);
  ck_assert_uint_eq(st.tx, 0);
  /* Response 3 is lost (its timestamp measured anyway); the client asks
   * again with the origin it had (r2): not the last request, basic. */
  ck_assert_int_eq(ntsntp_xleave_state_tx(&st, r3, r3 + 800), 1);
  xl_request(req, r2, 0xc1, 0x4444);
  h = xl_serve(req, r4, r4 + 500, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_int_eq(ctx.want_tx_ts, 0);
  ck_assert_uint_eq(h.org_ts, 0x4444);
  ck_assert_uint_eq(h.tx_ts, r4 + 500);
  /* Reordered: request 6 (origin r4) overtakes request 5 (origin r4 as
   * well): 6 asks but nothing is measured for 4, then 5 no longer matches
   * (the last request is 6) and the timestamp of 5 is not kept. */
  xl_request(req, r4, 0xc4, 0x6666);
  h = xl_serve(req, r6, r6 + 500, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_int_eq(ctx.want_tx_ts, 1);
  xl_request(req, r4, 0xc4, 0x5555);
  h = xl_serve(req, r5, r5 + 500, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_int_eq(ctx.want_tx_ts, 0);
  ck_assert_int_eq(ntsntp_xleave_state_tx(&st, r6, r6 + 700), 0);
  ck_assert_int_eq(ntsntp_xleave_state_tx(&st, r5, r5 + 700), 1);
}
END_TEST

/* Clients that did not ask are never answered interleaved: zeros, an
 * origin equal to our transmit time (basic mode of RFC 5905), receive ==
 * transmit; a KoD or a drop after the decision is not interleaved, and a
 * dropped request leaves the state alone. */
START_TEST(test_xleave_only_when_asked) {
  ntsntp_xleave_state st = {RX, TX + 77};
  ntsntp_server_ctx ctx;
  ntsntp_pkt_hdr h;
  uint8_t req[48], out[48];
  xl_request(req, TX + 77, 0xc0, 0x1234); /* ntpd-style: origin = our tx */
  h = xl_serve(req, RX + 9, TX + 9, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_uint_eq(h.org_ts, 0x1234);
  st.rx = RX;
  st.tx = TX + 77;
  xl_request(req, RX, 0x1234, 0x1234); /* receive == transmit */
  h = xl_serve(req, RX + 9, TX + 9, &st, &ctx);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_int_eq(ctx.want_tx_ts, 0);
  /* Asks, state known, then rate limited: a KoD with basic fields. */
  st.rx = RX;
  st.tx = TX + 77;
  xl_request(req, RX, 0xc0, 0x1234);
  ck_assert_int_eq(ntsntp_server_parse(srv_plain, req, 48, RX + 9, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ntsntp_server_ctx_xleave(&ctx, &st);
  ntsntp_server_ctx_ratelimit(&ctx);
  ck_assert_int_eq(ntsntp_server_finish(srv_plain, &ctx, TX + 9, out, 48), 48);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, out, 48), 0);
  ck_assert_uint_eq(h.stratum, 0);
  ck_assert_uint_eq(h.org_ts, 0x1234);
  ck_assert_uint_eq(h.tx_ts, TX + 9);
  /* A request already dropped does not touch the state. */
  st.rx = RX;
  st.tx = TX + 77;
  req[0] = 4 << 3 | 1; /* symmetric active: dropped by parse */
  ck_assert_int_eq(ntsntp_server_parse(srv_plain, req, 48, RX + 9, &ctx),
                   NTSNTP_SERVER_DROP);
  ck_assert_int_eq(ntsntp_server_ctx_xleave(&ctx, &st), 0);
  ck_assert_uint_eq(st.rx, RX);
  ck_assert_uint_eq(st.tx, TX + 77);
}
END_TEST

/* NTS: ntsntp_client's interleaved request; the authenticated response
 * carries the same timestamps as a plain one, and the client takes the
 * previous exchange as its sample. */
START_TEST(test_xleave_nts) {
  uint8_t req[2048], out[2048];
  ntsntp_client_exchange ex;
  ntsntp_client_sample smp;
  ntsntp_client_xleave xl = {0, 0, 0};
  ntsntp_xleave_state st = {0, 0};
  uint8_t c2s[32], s2c[32], cookie[NTSNTP_COOKIE_MAX_LEN];
  ntsntp_client_params p;
  ntsntp_server_ctx ctx;
  ntsntp_ssize n, r, clen;
  const uint64_t S = 1ULL << 32;
  uint64_t t1[3], rx[3], t4[3], k[3];
  int i;
  memset(c2s, 0x11, sizeof(c2s));
  memset(s2c, 0x22, sizeof(s2c));
  clen = ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, s2c, cookie,
                            sizeof(cookie));
  memset(&p, 0, sizeof(p));
  p.rand = det_rand;
  p.rand_user = &seed;
  p.aead = NTSNTP_AEAD_AES_SIV_CMAC_256;
  p.c2s = c2s;
  p.s2c = s2c;
  p.cookie = cookie;
  p.cookie_len = (size_t)clen;
  p.xleave = &xl;
  for (i = 0; i < 3; i++) {
    /* Client 1 s behind the server; 10 us each way, 3 us in the server. */
    t1[i] = RX + (uint64_t)i * 4 * S;
    rx[i] = t1[i] + S + 42950;      /* + 1 s + 10 us */
    k[i] = rx[i] + 12885;           /* measured transmit: + 3 us */
    t4[i] = k[i] - S + 42950;
    n = ntsntp_client_request(&ex, &p, req, sizeof(req));
    ck_assert_int_gt(n, 48);
    ck_assert_int_eq(ntsntp_server_prepare(srv, req, (size_t)n, rx[i], &ctx),
                     NTSNTP_SERVER_RESPOND);
    ntsntp_server_ctx_xleave(&ctx, &st);
    ck_assert_int_eq(ctx.xleave, i == 2);
    /* A clock read 40 us too early: what basic mode would send. */
    r = ntsntp_server_finish(srv, &ctx, k[i] - 171800, out, sizeof(out));
    ck_assert_int_gt(r, 48);
    if (ctx.want_tx_ts)
      ck_assert_int_eq(ntsntp_xleave_state_tx(&st, rx[i], k[i]), 1);
    ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)r, t1[i], t4[i],
                                            &smp), 0);
    ck_assert_int_eq(smp.authenticated, 1);
    ck_assert_int_eq(smp.interleaved, i == 2);
    if (i == 2) {
      /* The sample is exchange 1, with its measured transmit time. */
      ck_assert_uint_eq(smp.t1, t1[1]);
      ck_assert_uint_eq(smp.t2, rx[1]);
      ck_assert_uint_eq(smp.t3, k[1]);
      ck_assert_uint_eq(smp.t4, t4[1]);
      ck_assert(smp.offset > 1.0 - 1e-9 && smp.offset < 1.0 + 1e-9);
      ck_assert(smp.delay > 20e-6 - 1e-9 && smp.delay < 20e-6 + 1e-9);
    } else {
      /* Basic: the early clock read shows as a 20 us offset error. */
      ck_assert(smp.offset < 1.0 - 19e-6);
    }
    ntsntp_client_xleave_update(&xl, &smp, t1[i], t4[i]);
  }
  /* A response claiming a transmit time before its receive time is
   * refused. */
  n = ntsntp_client_request(&ex, &p, req, sizeof(req));
  st.tx = st.rx - 1;
  ck_assert_int_eq(ntsntp_server_prepare(srv, req, (size_t)n, rx[2] + S, &ctx),
                   NTSNTP_SERVER_RESPOND);
  (void)ntsntp_server_ctx_xleave(&ctx, &st);
  ck_assert_int_eq(ctx.xleave, 1);
  r = ntsntp_server_finish(srv, &ctx, rx[2] + S, out, sizeof(out));
  ck_assert_int_gt(r, 48);
  ck_assert_int_eq(ntsntp_client_response(&ex, out, (size_t)r, rx[2] + S,
                                          rx[2] + S, &smp),
                   NTSNTP_ERR_MALFORMED);
}
END_TEST

/* The client table at its bound (one bucket of 8): a client whose record
 * is evicted loses its interleaved state and is answered in basic mode;
 * nobody is refused. */
START_TEST(test_xleave_table_bound) {
  ntsntp_ratelimit_settings rs;
  ntsntp_ratelimit *rl;
  ntsntp_ratelimit_stats rst;
  ntsntp_xleave_state *xl;
  ntsntp_server_ctx ctx;
  struct sockaddr_in a;
  uint8_t req[48];
  unsigned i, j;
  ntsntp_ratelimit_settings_default(&rs, NTSNTP_RL_SERVICE_NTP);
  rs.enabled = 0;
  rs.max_bytes = 1024;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &rs, NULL, 0), 0);
  ntsntp_ratelimit_get_stats(rl, &rst);
  ck_assert_uint_eq(rst.capacity, 8);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7f000001);
  ck_assert_int_eq(ntsntp_ratelimit_check_xleave(rl, (struct sockaddr *)&a, 1,
                                                 &xl),
                   NTSNTP_RL_PASS);
  ck_assert_ptr_nonnull(xl);
  xl->rx = RX;
  xl->tx = TX;
  /* Eight other clients, twice each: the first client has the fewest
   * hits and is the one evicted. */
  for (j = 0; j < 2; j++)
    for (i = 2; i < 10; i++) {
      a.sin_addr.s_addr = htonl(0x7f000000 + i);
      ck_assert_int_eq(ntsntp_ratelimit_check_xleave(
                           rl, (struct sockaddr *)&a, 2, &xl),
                       NTSNTP_RL_PASS);
      ck_assert_ptr_nonnull(xl);
    }
  a.sin_addr.s_addr = htonl(0x7f000001);
  ck_assert_ptr_null(ntsntp_ratelimit_find(rl, (struct sockaddr *)&a));
  /* It comes back with no state: its interleaved request gets a basic
   * answer (and a fresh record). */
  ck_assert_int_eq(ntsntp_ratelimit_check_xleave(rl, (struct sockaddr *)&a, 3,
                                                 &xl),
                   NTSNTP_RL_PASS);
  ck_assert_uint_eq(xl->rx, 0);
  ck_assert_uint_eq(xl->tx, 0);
  xl_request(req, RX, 0xc0, 0x1234);
  ck_assert_int_eq(ntsntp_server_parse(srv_plain, req, 48, RX + 5, &ctx),
                   NTSNTP_SERVER_RESPOND);
  ck_assert_int_eq(ntsntp_server_ctx_xleave(&ctx, xl), 0);
  ck_assert_int_eq(ctx.xleave, 0);
  ck_assert_ptr_eq(ntsntp_ratelimit_find(rl, (struct sockaddr *)&a), xl);
  ck_assert_uint_eq(xl->rx, RX + 5);
  ntsntp_ratelimit_get_stats(rl, &rst);
  ck_assert_uint_ge(rst.evictions, 1);
  ntsntp_ratelimit_del(rl);
}
END_TEST

int main(void) {
  Suite *s = suite_create("server");
  TCase *tc = tcase_create("server");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_plain_v4_and_v3);
  tcase_add_test(tc, test_unsynchronised_default);
  tcase_add_test(tc, test_drops);
  tcase_add_test(tc, test_bad_extension_fields);
  tcase_add_test(tc, test_nts_exchange);
  tcase_add_test(tc, test_nts_tampered_gets_nak);
  tcase_add_test(tc, test_nts_unknown_key_and_no_keyring);
  tcase_add_test(tc, test_nts_malformed_requests);
  tcase_add_test(tc, test_ratelimit_kod);
  tcase_add_test(tc, test_ratelimit_before_crypto);
  tcase_add_test(tc, test_ref_not_after_tx);
  tcase_add_test(tc, test_output_buffer_too_small);
  tcase_add_test(tc, test_root_dispersion_grows);
  tcase_add_test(tc, test_never_amplifies);
  tcase_add_test(tc, test_nts_nonce_padding_rule);
  tcase_add_test(tc, test_xleave_bookkeeping);
  tcase_add_test(tc, test_xleave_only_when_asked);
  tcase_add_test(tc, test_xleave_nts);
  tcase_add_test(tc, test_xleave_table_bound);
  if (ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV)) {
    tcase_add_test(tc, test_nts_gcm_siv_known_answer);
    tcase_add_test(tc, test_nts_gcm_siv_bad_nonces);
  } else {
    tcase_add_test(tc, test_nts_gcm_siv_absent);
  }
  suite_add_tcase(s, tc);
  return tu_run(s);
}
