/* libntsntp: NTS-KE record codec (RFC 8915, section 4). */
#include <string.h>

#include "ntsntp/ke.h"
#include "rd.h"

int ntsntp_ke_check_framing(const uint8_t *in, size_t len) {
  ntsntp_rd r;

  if (in == NULL && len != 0)
    return NTSNTP_ERR_INVALID_ARG;
  if (len == 0)
    return NTSNTP_ERR_AGAIN;
  ntsntp__rd_init(&r, in, len);
  while (ntsntp__rd_left(&r) > 0) {
    uint16_t type, blen;

    /* A record header or body cut short may still be arriving. */
    if (ntsntp__rd_left(&r) < 4)
      return NTSNTP_ERR_AGAIN;
    type = ntsntp__rd_u16(&r);
    blen = ntsntp__rd_u16(&r);
    if (blen > ntsntp__rd_left(&r))
      return NTSNTP_ERR_AGAIN;
    ntsntp__rd_bytes(&r, blen);
    if ((type & ~NTSNTP_KE_CRITICAL) == NTSNTP_KE_REC_END) {
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.1
       *# The record has a Record Type number of 0 and a zero-length body.
       *# It MUST occur exactly once as the final record of every NTS-KE
       *# request and response.  The Critical Bit MUST be set.
       */
      if (!(type & NTSNTP_KE_CRITICAL) || blen != 0)
        return NTSNTP_ERR_BAD_RECORD;
      if (ntsntp__rd_left(&r) != 0)
        return NTSNTP_ERR_BAD_RECORD;
      return 0;
    }
  }
  return NTSNTP_ERR_AGAIN;
}

static int printable_ascii(const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (p[i] < 0x21 || p[i] > 0x7e)
      return 0;
  return 1;
}

int ntsntp_ke_parse(const uint8_t *in, size_t len, ntsntp_ke_msg *m) {
  ntsntp_rd r;
  int rv;

  if (m == NULL || (in == NULL && len != 0))
    return NTSNTP_ERR_INVALID_ARG;
  memset(m, 0, sizeof(*m));
  rv = ntsntp_ke_check_framing(in, len);
  if (rv != 0)
    return rv;

  ntsntp__rd_init(&r, in, len);
  /* Framing was checked above, so the cursor cannot run short here. */
  while (!m->end) {
    uint16_t t = ntsntp__rd_u16(&r);
    uint16_t blen = ntsntp__rd_u16(&r);
    int critical = (t & NTSNTP_KE_CRITICAL) != 0;
    uint16_t type = (uint16_t)(t & ~NTSNTP_KE_CRITICAL);
    const uint8_t *body = ntsntp__rd_bytes(&r, blen);

    if (r.err)
      return NTSNTP_ERR_BAD_RECORD;
    switch (type) {
    case NTSNTP_KE_REC_END:
      m->end = 1;
      break;
    case NTSNTP_KE_REC_NEXT_PROTOCOL:
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.2
       *# It MUST occur exactly once in every NTS-KE request and response.
       *# Its body consists of a sequence of 16-bit unsigned integers in
       *# network byte order.  [...] The Critical Bit MUST be set.
       */
      if (!critical || m->has_protos || blen % 2 != 0)
        return NTSNTP_ERR_BAD_RECORD;
      m->has_protos = 1;
      m->protos = body;
      m->nprotos = blen / 2;
      break;
    case NTSNTP_KE_REC_ERROR:
    case NTSNTP_KE_REC_WARNING:
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.3
       *# The body is exactly two octets long, consisting of an unsigned
       *# 16-bit integer in network byte order, denoting an error code.
       */
      if (blen != 2)
        return NTSNTP_ERR_BAD_RECORD;
      if (type == NTSNTP_KE_REC_ERROR) {
        if (m->has_error)
          return NTSNTP_ERR_BAD_RECORD;
        m->has_error = 1;
        m->error_code = ntsntp__get_u16(body);
      } else {
        if (m->has_warning)
          return NTSNTP_ERR_BAD_RECORD;
        m->has_warning = 1;
        m->warning_code = ntsntp__get_u16(body);
      }
      break;
    case NTSNTP_KE_REC_AEAD:
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.5
       *# Its body consists of a sequence of unsigned 16-bit integers in
       *# network byte order [...] If the NTS Next Protocol Negotiation
       *# record offers Protocol ID 0 (for NTPv4), then this record MUST be
       *# included exactly once.
       */
      if (m->has_aeads || blen % 2 != 0)
        return NTSNTP_ERR_BAD_RECORD;
      m->has_aeads = 1;
      m->aeads = body;
      m->naeads = blen / 2;
      break;
    case NTSNTP_KE_REC_COOKIE:
      if (blen == 0)
        return NTSNTP_ERR_BAD_RECORD;
      if (m->ncookies < NTSNTP_KE_MAX_COOKIES) {
        m->cookies[m->ncookies] = body;
        m->cookie_len[m->ncookies] = blen;
        m->ncookies++;
      }
      m->ncookies_total++;
      break;
    case NTSNTP_KE_REC_SERVER:
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.7
       *# Its body consists of an ASCII-encoded string.  The contents of the
       *# string SHALL be either an IPv4 address, an IPv6 address, or a fully
       *# qualified domain name (FQDN).
       */
      if (m->has_server || blen == 0 || blen > NTSNTP_KE_MAX_SERVER_LEN ||
          !printable_ascii(body, blen))
        return NTSNTP_ERR_BAD_RECORD;
      m->has_server = 1;
      memcpy(m->server, body, blen);
      m->server[blen] = '\0';
      break;
    case NTSNTP_KE_REC_PORT:
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.8
       *# Its body consists of a 16-bit unsigned integer in network byte
       *# order, denoting a UDP port number.
       */
      if (m->has_port || blen != 2)
        return NTSNTP_ERR_BAD_RECORD;
      m->has_port = 1;
      m->port = ntsntp__get_u16(body);
      break;
    case NTSNTP_KE_REC_COMPLIANT_128GCM:
      if (blen != 0)
        return NTSNTP_ERR_BAD_RECORD;
      m->compliant_128gcm = 1;
      break;
    default:
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-4
       *# Implementations which receive a record with an unrecognized Record
       *# Type MUST ignore the record if the Critical Bit is 0 and MUST treat
       *# it as an error if the Critical Bit is 1
       */
      if (critical) {
        m->unknown_critical = type;
        return NTSNTP_ERR_UNSUPPORTED;
      }
      m->nunknown++;
      break;
    }
  }
  m->len = (size_t)(r.p - in);
  return 0;
}

uint16_t ntsntp_ke_msg_proto(const ntsntp_ke_msg *m, size_t i) {
  return i < m->nprotos ? ntsntp__get_u16(m->protos + 2 * i) : 0xffff;
}

uint16_t ntsntp_ke_msg_aead(const ntsntp_ke_msg *m, size_t i) {
  return i < m->naeads ? ntsntp__get_u16(m->aeads + 2 * i) : 0xffff;
}

ntsntp_ssize ntsntp_ke_wr_record(uint8_t *out, size_t outlen, int critical,
                                 uint16_t type, const void *body, size_t len) {
  ntsntp_wr w;

  if (type & NTSNTP_KE_CRITICAL || len > 0xffff || (len && body == NULL) ||
      out == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  ntsntp__wr_init(&w, out, outlen);
  ntsntp__wr_u16(&w, (uint16_t)(type | (critical ? NTSNTP_KE_CRITICAL : 0)));
  ntsntp__wr_u16(&w, (uint16_t)len);
  ntsntp__wr_bytes(&w, body, len);
  if (w.err)
    return w.err;
  return (ntsntp_ssize)ntsntp__wr_len(&w);
}

ntsntp_ssize ntsntp_ke_wr_u16s(uint8_t *out, size_t outlen, int critical,
                               uint16_t type, const uint16_t *v, size_t n) {
  ntsntp_wr w;
  size_t i;

  if (type & NTSNTP_KE_CRITICAL || n > 0x7fff || (n && v == NULL) ||
      out == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  ntsntp__wr_init(&w, out, outlen);
  ntsntp__wr_u16(&w, (uint16_t)(type | (critical ? NTSNTP_KE_CRITICAL : 0)));
  ntsntp__wr_u16(&w, (uint16_t)(2 * n));
  for (i = 0; i < n; i++)
    ntsntp__wr_u16(&w, v[i]);
  if (w.err)
    return w.err;
  return (ntsntp_ssize)ntsntp__wr_len(&w);
}
