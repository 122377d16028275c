/* libntsntp: AEAD backend over nettle (AES-SIV-CMAC, optional GCM-SIV). */
#include <stddef.h>
#include <string.h>

#include <nettle/cmac.h>

#include "aead.h"
#include "ntsntp/cookie.h"

#if NTSNTP_HAVE_GCM_SIV
#include <nettle/siv-gcm.h>
#endif

/* nettle may hand a zero-length pointer to memcpy; never let it be NULL. */
static const uint8_t empty[1];

size_t ntsntp__aead_key_len(int alg) {
  switch (alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
    return SIV_CMAC_AES128_KEY_SIZE;
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    return SIV_CMAC_AES256_KEY_SIZE;
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    return AES128_KEY_SIZE;
#endif
  default:
    return 0;
  }
}

int ntsntp__aead_nonce_ok(int alg, size_t nlen) {
  switch (alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    return nlen >= SIV_MIN_NONCE_SIZE;
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    return nlen == SIV_GCM_NONCE_SIZE;
#endif
  default:
    return 0;
  }
}

size_t ntsntp__aead_nonce_len(int alg) {
  switch (alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    return 16;
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    return SIV_GCM_NONCE_SIZE;
#endif
  default:
    return 0;
  }
}

size_t ntsntp_aead_key_len(int aead) {
  return ntsntp__aead_key_len(aead);
}

int ntsntp_aead_supported(int aead) {
  return ntsntp__aead_key_len(aead) != 0;
}

int ntsntp__aead_init(ntsntp__aead *a, int alg, const uint8_t *key,
                      size_t keylen) {
  size_t want = ntsntp__aead_key_len(alg);

  if (a == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  /* set_key writes every byte of the member it fills: no need to clear
   * first (this runs twice per NTS request). */
  a->alg = 0;
  if (want == 0)
    return NTSNTP_ERR_UNSUPPORTED;
  if (key == NULL || keylen != want)
    return NTSNTP_ERR_INVALID_ARG;

  switch (alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
    siv_cmac_aes128_set_key(&a->u.s256, key);
    break;
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    siv_cmac_aes256_set_key(&a->u.s512, key);
    break;
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    aes128_set_encrypt_key(&a->u.gcm128, key);
    break;
#endif
  }
  a->alg = alg;
  return 0;
}

static int check_args(const ntsntp__aead *a, const uint8_t *nonce, size_t nlen,
                      const uint8_t *ad, size_t adlen, const uint8_t *in,
                      size_t inlen, const uint8_t *out) {
  if (a == NULL || nonce == NULL || out == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  if ((ad == NULL && adlen) || (in == NULL && inlen))
    return NTSNTP_ERR_INVALID_ARG;
  if (!ntsntp__aead_nonce_ok(a->alg, nlen))
    return NTSNTP_ERR_INVALID_ARG;
  return 0;
}

int ntsntp__aead_seal(const ntsntp__aead *a, const uint8_t *nonce, size_t nlen,
                      const uint8_t *ad, size_t adlen, const uint8_t *pt,
                      size_t ptlen, uint8_t *out) {
  int rv = check_args(a, nonce, nlen, ad, adlen, pt, ptlen, out);

  if (rv)
    return rv;
  if (ptlen > SIZE_MAX - NTSNTP__AEAD_TAG_LEN)
    return NTSNTP_ERR_INVALID_ARG;
  if (ad == NULL)
    ad = empty;
  if (pt == NULL)
    pt = empty;

  switch (a->alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
    siv_cmac_aes128_encrypt_message(&a->u.s256, nlen, nonce, adlen, ad,
                                    ptlen + NTSNTP__AEAD_TAG_LEN, out, pt);
    return 0;
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    siv_cmac_aes256_encrypt_message(&a->u.s512, nlen, nonce, adlen, ad,
                                    ptlen + NTSNTP__AEAD_TAG_LEN, out, pt);
    return 0;
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    siv_gcm_aes128_encrypt_message(&a->u.gcm128, nlen, nonce, adlen, ad,
                                   ptlen + NTSNTP__AEAD_TAG_LEN, out, pt);
    return 0;
#endif
  default:
    return NTSNTP_ERR_INVALID_ARG;
  }
}

int ntsntp__aead_open(const ntsntp__aead *a, const uint8_t *nonce, size_t nlen,
                      const uint8_t *ad, size_t adlen, const uint8_t *ct,
                      size_t ctlen, uint8_t *out) {
  uint8_t dummy[1];
  size_t ptlen;
  int rv, ok;

  /* An authenticator with an empty plaintext (a client request) has nothing
   * to write, so the caller need not supply a buffer. */
  if (out == NULL && ctlen == NTSNTP__AEAD_TAG_LEN)
    out = dummy;
  rv = check_args(a, nonce, nlen, ad, adlen, ct, ctlen, out);

  if (rv)
    return rv;
  if (ctlen < NTSNTP__AEAD_TAG_LEN)
    return NTSNTP_ERR_INVALID_ARG;
  ptlen = ctlen - NTSNTP__AEAD_TAG_LEN;
  if (ad == NULL)
    ad = empty;

  switch (a->alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
    ok = siv_cmac_aes128_decrypt_message(&a->u.s256, nlen, nonce, adlen, ad,
                                         ptlen, out, ct);
    break;
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    ok = siv_cmac_aes256_decrypt_message(&a->u.s512, nlen, nonce, adlen, ad,
                                         ptlen, out, ct);
    break;
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    ok = siv_gcm_aes128_decrypt_message(&a->u.gcm128, nlen, nonce, adlen, ad,
                                        ptlen, out, ct);
    break;
#endif
  default:
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (!ok) {
    /* nettle decrypts before it compares the tag, so |out| now holds
     * unauthenticated plaintext. */
    ntsntp_secure_clear(out, ptlen);
    return NTSNTP_ERR_AUTH;
  }
  return 0;
}

/* The bytes of |a->u| that hold key material for its algorithm. */
static size_t key_bytes(const ntsntp__aead *a) {
  switch (a->alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
    return sizeof(a->u.s256);
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    return sizeof(a->u.s512);
#if NTSNTP_HAVE_GCM_SIV
  case NTSNTP_AEAD_AES_128_GCM_SIV:
    return sizeof(a->u.gcm128);
#endif
  default:
    return sizeof(a->u);
  }
}

void ntsntp__aead_clear(ntsntp__aead *a) {
  if (a) {
    ntsntp_secure_clear(a, offsetof(ntsntp__aead, u) + key_bytes(a));
  }
}

int ntsntp__aead_verify(int alg, const uint8_t *key, size_t keylen,
                        const uint8_t *nonce, size_t nlen, const uint8_t *ad,
                        size_t adlen, const uint8_t *tag) {
  /* SIV-CMAC with nothing to decrypt needs only the first (CMAC) half of
   * the key: nettle's generic decrypt runs its CTR over zero bytes and
   * never touches the second cipher, so the CMAC one stands in for it. */
  struct cmac128_key ck;
  union {
    struct aes128_ctx a128;
    struct aes256_ctx a256;
  } c;
  const struct nettle_cipher *nc;
  uint8_t dummy[1];
  int ok;

  if (key == NULL || tag == NULL || nonce == NULL ||
      (ad == NULL && adlen) || keylen != ntsntp__aead_key_len(alg) ||
      !ntsntp__aead_nonce_ok(alg, nlen))
    return NTSNTP_ERR_INVALID_ARG;
  if (ad == NULL)
    ad = empty;
  switch (alg) {
  case NTSNTP_AEAD_AES_SIV_CMAC_256:
    nc = &nettle_aes128;
    break;
  case NTSNTP_AEAD_AES_SIV_CMAC_512:
    nc = &nettle_aes256;
    break;
  default: {
    /* Other algorithms: the full key. */
    ntsntp__aead a;
    int rv = ntsntp__aead_init(&a, alg, key, keylen);
    if (rv == 0)
      rv = ntsntp__aead_open(&a, nonce, nlen, ad, adlen, tag,
                             NTSNTP__AEAD_TAG_LEN, NULL);
    ntsntp__aead_clear(&a);
    return rv;
  }
  }
  nc->set_encrypt_key(&c, key);
  cmac128_set_key(&ck, &c, nc->encrypt);
  ok = siv_cmac_decrypt_message(&ck, &c, nc, &c, nlen, nonce, adlen, ad, 0,
                                dummy, tag);
  ntsntp_secure_clear(&ck, sizeof(ck));
  ntsntp_secure_clear(&c, sizeof(c));
  return ok ? 0 : NTSNTP_ERR_AUTH;
}
