/*
 * Fuzz target: the whole server path, ntsntp_server_prepare then
 * ntsntp_server_finish, with NTS on (a key ring) and real client requests
 * so that the fuzzer gets past cookie opening and authentication.
 *
 * Input [mode][...]; mode & 3 selects how the request is made:
 *   0  the rest is the request, as is
 *   1  [placeholders][aead][offset: 2][bytes...]: a valid NTS request from
 *      ntsntp_client_request with a real cookie, then the bytes are written
 *      over it from |offset| on (the request may grow)
 *   2  [placeholders][aead][cookie...]: a valid NTS request (authenticator
 *      correct) carrying the fuzz bytes as its cookie
 *   3  [placeholders][aead][plaintext...]: a valid NTS request whose
 *      authenticator seals the fuzz bytes as encrypted extension fields
 * mode & 4: apply the rate limiter's KoD (ntsntp_server_ctx_ratelimit).
 * mode & 8: finish into a buffer one byte shorter than the request (must
 *           still work, or fail with NOBUF, never overflow).
 *
 * Always: a response is never longer than its request.  For modes 2 and 3
 * (the request is intact, so the client can check the answer): a RESPOND
 * to an NTS request must authenticate at the client; a NAK must be seen as
 * a NAK.
 */
#include "fuzz_common.h"

#define BUF 2048

static ntsntp_keyring *kr;
static ntsntp_server *srv;
static const uint64_t RX = 0xeeb21591e8270af9ULL, TX = 0xeeb21591e82d06d8ULL;
static uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];

static void init(void) {
  if (srv)
    return;
  fz_reset();
  kr = fz_keyring();
  srv = fz_server(kr, RX, 15e-6);
  fz_rand(NULL, c2s, sizeof(c2s));
  fz_rand(NULL, s2c, sizeof(s2c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t req[BUF], out[BUF];
  static ntsntp_server_ctx ctx;
  static ntsntp_client_sample sample;
  uint8_t cookie[NTSNTP_COOKIE_MAX_LEN], hdr[48], uid[32];
  ntsntp_client_exchange ex;
  ntsntp_client_params p;
  fz_in in = {data, size};
  ntsntp_server_verdict v;
  ntsntp_ssize len, n;
  size_t clen, off;
  int mode, aead, rv, intact;

  init();
  fz_reset();
  if (size == 0)
    return 0;
  mode = fz_u8(&in);
  memset(&ex, 0, sizeof(ex));
  intact = 0;
  if ((mode & 3) == 0) {
    if (in.n > BUF)
      return 0;
    memcpy(req, in.p, in.n);
    len = (ntsntp_ssize)in.n;
  } else {
    memset(&p, 0, sizeof(p));
    p.placeholders = fz_u8(&in) % NTSNTP_CLIENT_MAX_COOKIES;
    aead = fz_aead(fz_u8(&in));
    clen = ntsntp_cookie_len(aead);
    FZ_CHECK(ntsntp_cookie_seal(kr, aead, c2s, s2c, cookie, sizeof(cookie)) ==
             (ntsntp_ssize)clen);
    p.poll = 6;
    p.rand = fz_rand;
    p.aead = aead;
    p.c2s = c2s;
    p.s2c = s2c;
    p.cookie = cookie;
    p.cookie_len = clen;
    if ((mode & 3) == 1) {
      len = ntsntp_client_request(&ex, &p, req, sizeof(req));
      FZ_CHECK(len > 0);
      off = fz_u16(&in) % ((size_t)len + 1);
      if (in.n > BUF - off)
        in.n = BUF - off;
      memcpy(req + off, in.p, in.n);
      if (off + in.n > (size_t)len)
        len = (ntsntp_ssize)(off + in.n);
    } else if ((mode & 3) == 2) {
      if (in.n == 0 || in.n > NTSNTP_COOKIE_MAX_LEN)
        return 0;
      p.cookie = in.p;
      p.cookie_len = in.n;
      len = ntsntp_client_request(&ex, &p, req, sizeof(req));
      FZ_CHECK(len > 0);
      intact = 1;
    } else {
      /* Take the header and UID of a real request, then rebuild it. */
      len = ntsntp_client_request(&ex, &p, req, sizeof(req));
      FZ_CHECK(len > 0);
      memcpy(hdr, req, 48);
      memcpy(uid, req + 52, 32);
      FZ_CHECK(memcmp(uid, ex.uid, 32) == 0);
      len = fz_build_nts(req, sizeof(req), hdr, uid, cookie, clen,
                         p.placeholders, aead, c2s, in.p, in.n);
      if (len < 0)
        return 0;
      intact = 1;
    }
  }

  v = ntsntp_server_prepare(srv, req, (size_t)len, RX, &ctx);
  FZ_CHECK(v == ctx.verdict);
  FZ_CHECK(ctx.reason < NTSNTP_REASON_COUNT);
  FZ_CHECK(ctx.n_cookies <= NTSNTP_SERVER_MAX_COOKIES);
  if (mode & 4)
    ntsntp_server_ctx_ratelimit(&ctx);
  v = ctx.verdict;
  if (v == NTSNTP_SERVER_DROP) {
    FZ_CHECK(ntsntp_server_finish(srv, &ctx, TX, out, sizeof(out)) ==
             NTSNTP_ERR_STATE);
    ntsntp_server_ctx_clear(&ctx);
    return 0;
  }
  if (mode & 8) {
    n = ntsntp_server_finish(srv, &ctx, TX, out, (size_t)len - 1);
    FZ_CHECK(n == NTSNTP_ERR_NOBUF || (n >= NTSNTP_PKT_HDR_LEN && n < len));
    return 0;
  }
  /* A buffer the size of the request always suffices. */
  n = ntsntp_server_finish(srv, &ctx, TX, out, (size_t)len);
  FZ_CHECK(n >= NTSNTP_PKT_HDR_LEN);
  FZ_CHECK(n <= len);

  if (intact) {
    rv = ntsntp_client_response(&ex, out, (size_t)n, RX - 100, TX + 100,
                                &sample);
    if (v == NTSNTP_SERVER_RESPOND) {
      FZ_CHECK(rv == 0);
      FZ_CHECK(sample.authenticated);
      FZ_CHECK(sample.n_cookies == ctx.n_cookies);
    } else if (v == NTSNTP_SERVER_RESPOND_NAK) {
      FZ_CHECK(rv == NTSNTP_ERR_NAK);
    } else {
      FZ_CHECK(rv == NTSNTP_ERR_KOD || rv == NTSNTP_ERR_AUTH);
    }
  }
  ntsntp_client_exchange_clear(&ex);
  return 0;
}
