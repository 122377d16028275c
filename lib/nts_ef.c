/* NTS extension fields: the Authenticator layout (RFC 8915 sec. 5.6). */
#include <string.h>

#include "aead.h"
#include "nts_ef.h"
#include "rd.h"

int ntsntp__nts_auth_parse(const ntsntp_ef *ef, int aead, const uint8_t **nonce,
                           size_t *nonce_len, const uint8_t **ct,
                           size_t *ct_len) {
  ntsntp_rd r;
  size_t nl, cl, room;
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.6
   *# Nonce Length [...] Ciphertext Length [...] Nonce [...] padded to a
   *# word (four octets) boundary [...] Ciphertext [...] padded [...]
   *# Additional Padding */
  ntsntp__rd_init(&r, ef->body, ef->body_len);
  nl = ntsntp__rd_u16(&r);
  cl = ntsntp__rd_u16(&r);
  *nonce = ntsntp__rd_bytes(&r, ntsntp__pad4(nl));
  *ct = ntsntp__rd_bytes(&r, ntsntp__pad4(cl));
  if (r.err || nl == 0 || cl < NTSNTP__AEAD_TAG_LEN)
    return NTSNTP_ERR_BAD_EF;
  if (aead) {
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.6
     *# Nonce: A nonce as required by the negotiated AEAD algorithm.
     */
    if (!ntsntp__aead_nonce_ok(aead, nl))
      return NTSNTP_ERR_BAD_EF;
    /* The Additional Padding rule: what is not ciphertext (nonce, its
     * padding, Additional Padding) must span the lesser of 16 octets and
     * the longest nonce the AEAD takes, so that a server can always answer
     * with a nonce that long in a response no longer than the request.
     * Servers discard packets that break it.  Like chrony, we read it as
     * 16 for SIV-CMAC and 12 for GCM-SIV (whose nonce is exactly 12). */
    room = ef->body_len - 4 - ntsntp__pad4(cl);
    if (room < ntsntp__aead_nonce_len(aead))
      return NTSNTP_ERR_BAD_EF;
  }
  *nonce_len = nl;
  *ct_len = cl;
  return 0;
}

uint8_t *ntsntp__nts_auth_write(uint8_t *out, const uint8_t *nonce,
                                size_t nonce_len, size_t ct_len) {
  size_t len = ntsntp__nts_auth_ef_len(nonce_len, ct_len);
  ntsntp__put_u16(out, NTSNTP_EF_AUTHENTICATOR);
  ntsntp__put_u16(out + 2, (uint16_t)len);
  ntsntp__put_u16(out + 4, (uint16_t)nonce_len);
  ntsntp__put_u16(out + 6, (uint16_t)ct_len);
  memcpy(out + 8, nonce, nonce_len);
  memset(out + 8 + nonce_len, 0, ntsntp__pad4(nonce_len) - nonce_len);
  out += 8 + ntsntp__pad4(nonce_len);
  memset(out + ct_len, 0, ntsntp__pad4(ct_len) - ct_len);
  return out;
}
