/*
 * Fuzz target: NTS cookies.
 * Input [mode][...]:
 *   mode bit 0 clear: the rest goes to ntsntp_cookie_open as a cookie.  It
 *     must not open (nobody but the key ring can seal), and the outputs
 *     must be untouched.
 *   mode bit 0 set: [aead selector][flip position: 2][C2S, S2C key bytes]:
 *     seal fuzz-chosen keys, open them back (same keys, same AEAD), then
 *     flip one bit or cut the cookie short: that must not open.
 * The key ring is fixed (deterministic randomness, fixed time).
 */
#include "fuzz_common.h"

static ntsntp_keyring *kr;

static void init(void) {
  if (kr)
    return;
  fz_reset();
  kr = fz_keyring();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];
  uint8_t k1[NTSNTP_MAX_KEY_LEN], k2[NTSNTP_MAX_KEY_LEN];
  uint8_t cookie[NTSNTP_COOKIE_MAX_LEN + 8];
  fz_in in = {data, size};
  size_t klen, clen, i, flip;
  ntsntp_ssize n;
  int aead, got, rv;

  init();
  fz_reset();
  if (size == 0)
    return 0;
  if ((fz_u8(&in) & 1) == 0) {
    memset(c2s, 0xA5, sizeof(c2s));
    memset(s2c, 0x5A, sizeof(s2c));
    got = -1;
    rv = ntsntp_cookie_open(kr, in.p, in.n, &got, c2s, s2c);
    FZ_CHECK(rv == NTSNTP_ERR_BAD_COOKIE || rv == NTSNTP_ERR_UNKNOWN_KEY);
    FZ_CHECK(got == -1);
    for (i = 0; i < sizeof(c2s); i++)
      FZ_CHECK(c2s[i] == 0xA5 && s2c[i] == 0x5A);
    return 0;
  }

  aead = fz_aead(fz_u8(&in));
  flip = fz_u16(&in);
  klen = ntsntp_aead_key_len(aead);
  clen = ntsntp_cookie_len(aead);
  FZ_CHECK(klen > 0 && klen <= NTSNTP_MAX_KEY_LEN);
  FZ_CHECK(clen > 0 && clen <= NTSNTP_COOKIE_MAX_LEN);
  for (i = 0; i < klen; i++)
    k1[i] = fz_u8(&in);
  for (i = 0; i < klen; i++)
    k2[i] = fz_u8(&in);
  /* Too small a buffer is refused. */
  FZ_CHECK(ntsntp_cookie_seal(kr, aead, k1, k2, cookie, clen - 1) ==
           NTSNTP_ERR_NOBUF);
  n = ntsntp_cookie_seal(kr, aead, k1, k2, cookie, sizeof(cookie));
  FZ_CHECK(n == (ntsntp_ssize)clen);
  FZ_CHECK(ntsntp_cookie_open(kr, cookie, clen, &got, c2s, s2c) == 0);
  FZ_CHECK(got == aead);
  FZ_CHECK(memcmp(c2s, k1, klen) == 0 && memcmp(s2c, k2, klen) == 0);

  if (flip / 8 < clen) {
    cookie[flip / 8] ^= (uint8_t)(1u << (flip % 8));
    rv = ntsntp_cookie_open(kr, cookie, clen, &got, c2s, s2c);
    FZ_CHECK(rv == NTSNTP_ERR_BAD_COOKIE || rv == NTSNTP_ERR_UNKNOWN_KEY);
  } else {
    rv = ntsntp_cookie_open(kr, cookie, flip % clen, &got, c2s, s2c);
    FZ_CHECK(rv == NTSNTP_ERR_BAD_COOKIE || rv == NTSNTP_ERR_UNKNOWN_KEY);
  }
  return 0;
}
