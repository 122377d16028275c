/*
 * Fuzz target: ntsntp_client_response with arbitrary responses to a real
 * request.
 *
 * Input [mode][...]; mode % 3 selects the response:
 *   0  plain request; the rest is the response, with its origin timestamp
 *      set to the request's (mode bit 2 clear) so the checks go deep
 *   1  [placeholders][offset: 2][bytes...]: NTS request answered by the
 *      real server, then the bytes written over the response from |offset|
 *   2  [header: 48][plaintext...]: NTS request; response built by hand with
 *      the right UID and an authenticator sealing the fuzz plaintext under
 *      S2C (origin fixed up unless mode bit 2 is set)
 * Checks: an accepted response is authenticated when NTS was used, gives at
 * most 8 cookies of sane length, and cannot be accepted twice.
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
  srv = fz_server(kr, RX, 0);
  fz_rand(NULL, c2s, sizeof(c2s));
  fz_rand(NULL, s2c, sizeof(s2c));
}

static void put_u64(uint8_t *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t req[BUF], resp[BUF];
  static ntsntp_server_ctx ctx;
  static ntsntp_client_sample s;
  uint8_t cookie[NTSNTP_COOKIE_MAX_LEN], hdr[48];
  ntsntp_client_exchange ex;
  ntsntp_client_params p;
  fz_in in = {data, size};
  ntsntp_ssize len, n;
  size_t off = 0, i;
  int mode, rv, aead = NTSNTP_AEAD_AES_SIV_CMAC_256;

  init();
  fz_reset();
  if (size == 0)
    return 0;
  mode = fz_u8(&in);
  memset(&p, 0, sizeof(p));
  p.poll = 6;
  p.rand = fz_rand;
  if (mode % 3 == 0) {
    len = ntsntp_client_request(&ex, &p, req, sizeof(req));
    FZ_CHECK(len == 48);
    if (in.n > BUF)
      return 0;
    memcpy(resp, in.p, in.n);
    n = (ntsntp_ssize)in.n;
    if (n >= 48 && !(mode & 4))
      put_u64(resp + 24, ex.tx_ts);
  } else {
    p.placeholders = mode % 3 == 1 ? fz_u8(&in) % NTSNTP_CLIENT_MAX_COOKIES : 0;
    FZ_CHECK(ntsntp_cookie_seal(kr, aead, c2s, s2c, cookie, sizeof(cookie)) ==
             (ntsntp_ssize)ntsntp_cookie_len(aead));
    p.aead = aead;
    p.c2s = c2s;
    p.s2c = s2c;
    p.cookie = cookie;
    p.cookie_len = ntsntp_cookie_len(aead);
    len = ntsntp_client_request(&ex, &p, req, sizeof(req));
    FZ_CHECK(len > 48);
    if (mode % 3 == 1) {
      FZ_CHECK(ntsntp_server_prepare(srv, req, (size_t)len, RX, &ctx) ==
               NTSNTP_SERVER_RESPOND);
      n = ntsntp_server_finish(srv, &ctx, TX, resp, sizeof(resp));
      FZ_CHECK(n > 48 && n <= len);
      off = fz_u16(&in) % ((size_t)n + 1);
      if (in.n > BUF - off)
        in.n = BUF - off;
      memcpy(resp + off, in.p, in.n);
      if (off + in.n > (size_t)n)
        n = (ntsntp_ssize)(off + in.n);
    } else {
      for (i = 0; i < 48; i++)
        hdr[i] = fz_u8(&in);
      if (!(mode & 4))
        put_u64(hdr + 24, ex.tx_ts);
      n = fz_build_nts(resp, sizeof(resp), hdr, ex.uid, NULL, 0, 0, aead, s2c,
                       in.p, in.n);
      if (n < 0)
        return 0;
    }
  }

  rv = ntsntp_client_response(&ex, resp, (size_t)n, RX - 100, TX + 100, &s);
  FZ_CHECK(rv <= 0);
  FZ_CHECK(s.n_cookies <= NTSNTP_CLIENT_MAX_COOKIES);
  if (rv == 0) {
    FZ_CHECK(s.authenticated == (mode % 3 != 0));
    for (i = 0; i < s.n_cookies; i++)
      FZ_CHECK(s.cookie_len[i] > 0 &&
               s.cookie_len[i] <= NTSNTP_COOKIE_MAX_LEN);
    FZ_CHECK(s.hdr.mode == NTSNTP_MODE_SERVER && s.hdr.stratum != 0);
    /* One response per request. */
    FZ_CHECK(ntsntp_client_response(&ex, resp, (size_t)n, RX, TX, &s) ==
             NTSNTP_ERR_STATE);
  } else if (mode % 3 == 1 && off == (size_t)n && in.n == 0) {
    FZ_CHECK(0); /* the server's own response must be accepted */
  }
  ntsntp_client_exchange_clear(&ex);
  return 0;
}
