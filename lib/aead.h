/*
 * Internal AEAD interface (backend: lib/aead_nettle.c), shaped like chrony's
 * siv.h so that another backend can replace nettle without touching callers.
 *
 * The key schedule runs once in ntsntp__aead_init; afterwards the context is
 * only read, so one context may seal and open from many threads at once.
 *
 * Output layout is the backend's native one, which is what the wire formats
 * use: for AES-SIV-CMAC (AEAD 15, 17) the 16-byte SIV tag comes first and
 * the ciphertext follows (RFC 5297 section 2.6, RFC 8915 section 5.6); for
 * AES-128-GCM-SIV (AEAD 30) the ciphertext comes first and the tag last
 * (RFC 8452 section 4).
 */
#ifndef NTSNTP_AEAD_H
#define NTSNTP_AEAD_H

#include <stddef.h>
#include <stdint.h>

#include <nettle/aes.h>
#include <nettle/siv-cmac.h>

#include "ntsntp/common.h"
#include "ntsntp/version.h"

#define NTSNTP__AEAD_TAG_LEN 16

typedef struct ntsntp__aead {
  int alg; /* NTSNTP_AEAD_*, 0 when not initialised */
  union {
    struct siv_cmac_aes128_ctx s256; /* AEAD 15: two AES-128 keys */
    struct siv_cmac_aes256_ctx s512; /* AEAD 17: two AES-256 keys */
#if NTSNTP_HAVE_GCM_SIV
    struct aes128_ctx gcm128; /* AEAD 30: AES-128 encryption schedule */
#endif
  } u;
} ntsntp__aead;

/*
 * Key length for |alg|: 32 for AEAD 15, 64 for 17, 16 for 30 when this build
 * has GCM-SIV, else 0.
 */
size_t ntsntp__aead_key_len(int alg);

/*
 * Nonce lengths accepted by |alg|: SIV-CMAC takes any length >= 1 (nettle's
 * SIV_MIN_NONCE_SIZE; NTS uses 16), GCM-SIV exactly 12.  Returns 1 if |nlen|
 * is acceptable.
 */
int ntsntp__aead_nonce_ok(int alg, size_t nlen);

/*
 * The nonce length NTS uses with |alg|: the lesser of 16 and the longest
 * nonce |alg| takes (RFC 8915 section 5.6), so 16 for SIV-CMAC and 12 for
 * GCM-SIV.  It is also the room an NTS Authenticator must leave for its
 * nonce (nonce, its padding and any Additional Padding).  0 for an
 * algorithm this build lacks.
 */
size_t ntsntp__aead_nonce_len(int alg);

/*
 * Runs the key schedule.  |a| is left cleared on error.
 * Errors: UNSUPPORTED (|alg| not built in), INVALID_ARG (|keylen| wrong or
 * |a|/|key| NULL).
 */
int ntsntp__aead_init(ntsntp__aead *a, int alg, const uint8_t *key,
                      size_t keylen);

/*
 * Encrypts |pt| and writes |ptlen| + 16 bytes to |out|, which must not
 * overlap the inputs.  |ad| and |pt| may be NULL when their length is 0.
 * Errors: INVALID_ARG (bad nonce length, NULL pointer, |a| not initialised,
 * length overflow).
 */
int ntsntp__aead_seal(const ntsntp__aead *a, const uint8_t *nonce, size_t nlen,
                      const uint8_t *ad, size_t adlen, const uint8_t *pt,
                      size_t ptlen, uint8_t *out);

/*
 * Verifies and decrypts |ct| (|ctlen| >= 16) into |out| (|ctlen| - 16 bytes,
 * not overlapping the inputs).
 * Errors: AUTH (tag mismatch; |out| is wiped so no unauthenticated plaintext
 * escapes), INVALID_ARG (|ctlen| < 16, bad nonce length, NULL pointer).
 */
int ntsntp__aead_open(const ntsntp__aead *a, const uint8_t *nonce, size_t nlen,
                      const uint8_t *ad, size_t adlen, const uint8_t *ct,
                      size_t ctlen, uint8_t *out) NTSNTP_WARN_UNUSED;

/* Wipes the key schedule.  NULL is allowed. */
void ntsntp__aead_clear(ntsntp__aead *a);

/*
 * Authenticates a message with nothing encrypted (|tag| is the whole
 * 16-byte ciphertext) under |key|, without a context: for SIV-CMAC only
 * the CMAC half of the key is expanded.  Same result as init + open.
 * Errors: AUTH, INVALID_ARG (also for an algorithm this build lacks).
 */
int ntsntp__aead_verify(int alg, const uint8_t *key, size_t keylen,
                        const uint8_t *nonce, size_t nlen, const uint8_t *ad,
                        size_t adlen, const uint8_t *tag) NTSNTP_WARN_UNUSED;

#endif /* NTSNTP_AEAD_H */
