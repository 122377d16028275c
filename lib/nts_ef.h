/* NTS extension fields for NTP (RFC 8915 sec. 5.7), shared by the server
 * and client cores. */
#ifndef NTSNTP_NTS_EF_H
#define NTSNTP_NTS_EF_H

#include "ntsntp/pkt.h"

#define NTSNTP__NTS_MIN_UID_LEN 32

static inline size_t ntsntp__pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Length of an Authenticator field holding |nonce_len| and |ct_len|, with
 * no Additional Padding (none is needed when |nonce_len| is
 * ntsntp__aead_nonce_len of the AEAD). */
static inline size_t ntsntp__nts_auth_ef_len(size_t nonce_len, size_t ct_len) {
  return 4 + 4 + ntsntp__pad4(nonce_len) + ntsntp__pad4(ct_len);
}

/*
 * Parses an Authenticator field body.  With |aead| 0 only the layout is
 * checked (a server learns the AEAD when it opens the cookie, later).  With
 * an AEAD, also that the nonce has a length |aead| takes and that the nonce,
 * its padding and any Additional Padding span at least
 * ntsntp__aead_nonce_len(aead) octets: 16 for SIV-CMAC, 12 for GCM-SIV.
 * Errors: BAD_EF (lengths do not fit the body, empty nonce, ciphertext
 * shorter than a tag, nonce length wrong for |aead| or too little room for
 * it, |aead| not built in).
 */
int ntsntp__nts_auth_parse(const ntsntp_ef *ef, int aead, const uint8_t **nonce,
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
