/* NTS extension fields for NTP (RFC 8915 sec. 5.7), shared by the server
 * and client cores. */
#ifndef NTSNTP_NTS_EF_H
#define NTSNTP_NTS_EF_H

#include "ntsntp/pkt.h"

#define NTSNTP__NTS_MIN_NONCE_LEN 16
#define NTSNTP__NTS_MIN_UID_LEN 32

static inline size_t ntsntp__pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Length of an Authenticator field holding |nonce_len| and |ct_len|. */
static inline size_t ntsntp__nts_auth_ef_len(size_t nonce_len, size_t ct_len) {
  return 4 + 4 + ntsntp__pad4(nonce_len) + ntsntp__pad4(ct_len);
}

/*
 * Parses an Authenticator field body.  Errors: BAD_EF (lengths do not fit
 * the body, nonce shorter than 16, ciphertext shorter than a tag).
 */
int ntsntp__nts_auth_parse(const ntsntp_ef *ef, const uint8_t **nonce,
                           size_t *nonce_len, const uint8_t **ct,
                           size_t *ct_len);

/*
 * Writes the Authenticator field header and nonce at |out| (room for
 * ntsntp__nts_auth_ef_len bytes) and zeroes the padding; the caller writes
 * the ciphertext at the returned pointer.
 */
uint8_t *ntsntp__nts_auth_write(uint8_t *out, const uint8_t *nonce,
                                size_t nonce_len, size_t ct_len);

#endif
