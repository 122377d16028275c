/* Server core: plain NTP, NTS, NAKs, drops, amplification bound. */
#include <check.h>
#include <string.h>

#include "ntsntp/client.h"
#include "ntsntp/server.h"
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
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &ks, 1700000000), 0);
  ntsntp_server_settings_default(&ss);
  ss.rand = det_rand;
  ss.rand_user = &seed;
  ck_assert_int_eq(ntsntp_server_new(&srv_plain, &ss), 0);
  ss.keyring = kr;
  ck_assert_int_eq(ntsntp_server_new(&srv, &ss), 0);
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
  ck_assert_int_eq(ntsntp_server_new(&s, &ss), 0);
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
  ck_assert_int_eq(ntsntp_keyring_new(&other, &ks, 1700000000), 0);
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
  suite_add_tcase(s, tc);
  return tu_run(s);
}
