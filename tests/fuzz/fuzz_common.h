/*
 * Shared by the fuzz targets (each target includes it once).
 *
 * Determinism: every input starts from the same random state
 * (fz_reset), so a crash found by libFuzzer replays exactly, in the
 * libFuzzer build and in the gcc replay build alike, without depending on
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION.
 */
#ifndef NTSNTP_FUZZ_COMMON_H
#define NTSNTP_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aead.h"
#include "nts_ef.h"
#include "ntsntp/client.h"
#include "ntsntp/cookie.h"
#include "ntsntp/server.h"
#include "rd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with a message: libFuzzer (and the replay driver) report a crash. */
#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static uint64_t fz_state;

static inline void fz_reset(void) { fz_state = 0x9e3779b97f4a7c15ULL; }

static inline int fz_rand(void *user, uint8_t *buf, size_t len) {
  size_t i;
  (void)user;
  for (i = 0; i < len; i++) {
    fz_state = fz_state * 6364136223846793005ULL + 1442695040888963407ULL;
    buf[i] = (uint8_t)(fz_state >> 56);
  }
  return 0;
}

/* The key ring the targets use: keys from fz_rand (call fz_reset first),
 * created at a fixed time. */
static inline ntsntp_keyring *fz_keyring(void) {
  ntsntp_keyring_settings ks;
  ntsntp_keyring *kr;
  ntsntp_keyring_settings_default(&ks);
  ks.rand = fz_rand;
  FZ_CHECK(ntsntp_keyring_new(&kr, &ks, 1700000000, NULL, 0) == 0);
  return kr;
}

/* A server over |kr| with nonces from fz_rand, serving the local clock at
 * stratum 2, referenced a second before |rx|; |disp_rate| > 0 sets the
 * growth of its root dispersion. */
static inline ntsntp_server *fz_server(ntsntp_keyring *kr, uint64_t rx,
                                       double disp_rate) {
  ntsntp_server_settings ss;
  ntsntp_clock_state cs;
  ntsntp_server *srv;
  ntsntp_server_settings_default(&ss);
  ss.keyring = kr;
  ss.rand = fz_rand;
  FZ_CHECK(ntsntp_server_new(&srv, &ss, NULL, 0) == 0);
  ntsntp_clock_state_local(&cs, 2, rx - (1ULL << 32));
  if (disp_rate > 0)
    cs.disp_rate = disp_rate;
  ntsntp_server_set_clock(srv, &cs);
  return srv;
}

/* Reads fuzz input front to back; past the end it yields zeros. */
typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in) {
  uint8_t v = 0;
  if (in->n) {
    v = *in->p++;
    in->n--;
  }
  return v;
}

static inline uint16_t fz_u16(fz_in *in) {
  uint16_t hi = fz_u8(in);
  return (uint16_t)(hi << 8 | fz_u8(in));
}

/* One of the AEADs this build supports, chosen by |sel|. */
static inline int fz_aead(uint8_t sel) {
  static const int algs[] = {NTSNTP_AEAD_AES_SIV_CMAC_256,
                             NTSNTP_AEAD_AES_SIV_CMAC_512,
                             NTSNTP_AEAD_AES_128_GCM_SIV};
  int a = algs[sel % 3];
  return ntsntp_aead_supported(a) ? a : NTSNTP_AEAD_AES_SIV_CMAC_256;
}

/*
 * Builds an NTS packet by hand: header |hdr| (48 bytes), Unique Identifier
 * |uid| (32 bytes), then, if |cookie| is set, a Cookie field and
 * |placeholders| placeholders, then an Authenticator whose ciphertext
 * seals |pt| (|ptlen| bytes, any content) under |key| with a 16-byte
 * nonce.  Returns the length or -1 when it does not fit.
 */
static inline ntsntp_ssize fz_build_nts(uint8_t *out, size_t outlen,
                                 const uint8_t *hdr, const uint8_t *uid,
                                 const uint8_t *cookie, size_t cookie_len,
                                 unsigned placeholders, int aead,
                                 const uint8_t *key, const uint8_t *pt,
                                 size_t ptlen) {
  uint8_t nonce[16];
  ntsntp__aead a;
  size_t len = 48, i, ef_len = ntsntp__pad4(4 + cookie_len);
  ntsntp_ssize n;
  uint8_t *ct;
  int rv;

  if (outlen < 48)
    return -1;
  memcpy(out, hdr, 48);
  n = ntsntp_ef_encode(out + len, outlen - len, NTSNTP_EF_UNIQUE_ID, uid, 32,
                       0);
  if (n < 0)
    return -1;
  len += (size_t)n;
  if (cookie) {
    n = ntsntp_ef_encode(out + len, outlen - len, NTSNTP_EF_COOKIE, cookie,
                         cookie_len, 16);
    if (n < 0)
      return -1;
    len += (size_t)n;
    for (i = 0; i < placeholders; i++) {
      n = ntsntp_ef_encode(out + len, outlen - len,
                           NTSNTP_EF_COOKIE_PLACEHOLDER, NULL, 0,
                           ef_len < 16 ? 16 : ef_len);
      if (n < 0)
        return -1;
      len += (size_t)n;
    }
  }
  if (ptlen > 0xffff - 16 - 8 - 16 - 4 ||
      ntsntp__nts_auth_ef_len(16, ptlen + 16) > outlen - len)
    return -1;
  fz_rand(NULL, nonce, sizeof(nonce));
  rv = ntsntp__aead_init(&a, aead, key, ntsntp_aead_key_len(aead));
  if (rv)
    return -1;
  ct = ntsntp__nts_auth_write(out + len, nonce, sizeof(nonce), ptlen + 16);
  rv = ntsntp__aead_seal(&a, nonce, sizeof(nonce), out, len, pt, ptlen, ct);
  ntsntp__aead_clear(&a);
  if (rv)
    return -1;
  return (ntsntp_ssize)(len + ntsntp__nts_auth_ef_len(16, ptlen + 16));
}

#endif
