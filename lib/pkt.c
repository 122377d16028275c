/* libntsntp: NTPv4 header and RFC 7822 extension-field codec. */
#include <stdio.h>
#include <string.h>

#include "ntsntp/pkt.h"
#include "rd.h"

int ntsntp_pkt_decode_hdr(ntsntp_pkt_hdr *h, const uint8_t *p, size_t len) {
  ntsntp_rd r;
  uint8_t b;
  ntsntp__rd_init(&r, p, len);
  b = ntsntp__rd_u8(&r);
  h->leap = b >> 6;
  h->version = (b >> 3) & 7;
  h->mode = b & 7;
  h->stratum = ntsntp__rd_u8(&r);
  h->poll = (int8_t)ntsntp__rd_u8(&r);
  h->precision = (int8_t)ntsntp__rd_u8(&r);
  h->root_delay = ntsntp__rd_u32(&r);
  h->root_disp = ntsntp__rd_u32(&r);
  h->refid = ntsntp__rd_u32(&r);
  h->ref_ts = ntsntp__rd_u64(&r);
  h->org_ts = ntsntp__rd_u64(&r);
  h->rx_ts = ntsntp__rd_u64(&r);
  h->tx_ts = ntsntp__rd_u64(&r);
  return r.err;
}

void ntsntp_pkt_encode_hdr(const ntsntp_pkt_hdr *h, uint8_t *out) {
  out[0] = (uint8_t)((h->leap & 3) << 6 | (h->version & 7) << 3 | (h->mode & 7));
  out[1] = h->stratum;
  out[2] = (uint8_t)h->poll;
  out[3] = (uint8_t)h->precision;
  ntsntp__put_u32(out + 4, h->root_delay);
  ntsntp__put_u32(out + 8, h->root_disp);
  ntsntp__put_u32(out + 12, h->refid);
  ntsntp__put_u64(out + 16, h->ref_ts);
  ntsntp__put_u64(out + 24, h->org_ts);
  ntsntp__put_u64(out + 32, h->rx_ts);
  ntsntp__put_u64(out + 40, h->tx_ts);
}

void ntsntp_ef_iter_init(ntsntp_ef_iter *it, const uint8_t *pkt, size_t len,
                         size_t off, size_t min_ef_len) {
  it->pkt = pkt;
  it->len = len;
  it->off = off > len ? len : off;
  it->min_len = min_ef_len < 4 ? 4 : min_ef_len;
  it->mac_len = 0;
  it->err = 0;
  it->done = 0;
}

int ntsntp_ef_next(ntsntp_ef_iter *it, ntsntp_ef *ef) {
  size_t left, flen;
  int in_ntp = it->min_len >= NTSNTP_PKT_MIN_EF_LEN;
  if (it->err || it->done)
    return it->err;
  left = it->len - it->off;
  /*= https://www.rfc-editor.org/rfc/rfc7822#section-7.5
   *# [...] if the remaining length is 24 octets or less, what remains is a
   *# MAC; otherwise it is an extension field.
   * Inside an NTS ciphertext (min_len 4) there is no MAC: every byte must
   * belong to a field. */
  if (left == 0 || (in_ntp && left <= NTSNTP_PKT_MAX_MAC_LEN)) {
    /* A MAC is a key id with an MD5 or SHA-1 digest (20, 24), or a key id
     * alone (crypto-NAK, 4); anything else is garbage. */
    if (left != 0 && left != 4 && left != 20 && left != 24) {
      it->err = NTSNTP_ERR_BAD_EF;
      return it->err;
    }
    it->mac_len = left;
    it->done = 1;
    return 0;
  }
  if (left < 4) {
    it->err = NTSNTP_ERR_BAD_EF;
    return it->err;
  }
  flen = ntsntp__get_u16(it->pkt + it->off + 2);
  /*= https://www.rfc-editor.org/rfc/rfc7822#section-3
   *# The Length field [...] MUST be a multiple of 4 [...] at least 16 */
  if (flen < it->min_len || flen % 4 != 0 || flen > left) {
    it->err = NTSNTP_ERR_BAD_EF;
    return it->err;
  }
  ef->type = ntsntp__get_u16(it->pkt + it->off);
  ef->start = it->pkt + it->off;
  ef->len = flen;
  ef->body = ef->start + 4;
  ef->body_len = flen - 4;
  it->off += flen;
  return 1;
}

ntsntp_ssize ntsntp_ef_encode(uint8_t *out, size_t outlen, uint16_t type,
                              const uint8_t *body, size_t body_len,
                              size_t min_len) {
  size_t flen = (4 + body_len + 3) & ~(size_t)3;
  if (min_len == 0)
    min_len = NTSNTP_PKT_MIN_EF_LEN;
  else if (min_len < 4)
    return NTSNTP_ERR_INVALID_ARG;
  if (flen < min_len)
    flen = (min_len + 3) & ~(size_t)3;
  if (flen > 0xffff)
    return NTSNTP_ERR_INVALID_ARG;
  if (flen > outlen)
    return NTSNTP_ERR_NOBUF;
  ntsntp__put_u16(out, type);
  ntsntp__put_u16(out + 2, (uint16_t)flen);
  if (body_len)
    memcpy(out + 4, body, body_len);
  memset(out + 4 + body_len, 0, flen - 4 - body_len);
  return (ntsntp_ssize)flen;
}

int ntsntp_pkt_decode(ntsntp_pkt *pkt, const uint8_t *p, size_t len) {
  ntsntp_ef_iter it;
  int rv;
  rv = ntsntp_pkt_decode_hdr(&pkt->hdr, p, len);
  if (rv)
    return rv;
  pkt->n_efs = 0;
  pkt->mac = NULL;
  pkt->mac_len = 0;
  if (pkt->hdr.version != 4) {
    /* Only NTPv4 defines extension fields (RFC 7822 sec. 2). */
    size_t rest = len - NTSNTP_PKT_HDR_LEN;
    if (rest != 0 && rest != 4 && rest != 20 && rest != 24)
      return NTSNTP_ERR_BAD_EF;
  } else {
    ntsntp_ef_iter_init(&it, p, len, NTSNTP_PKT_HDR_LEN, NTSNTP_PKT_MIN_EF_LEN);
    for (;;) {
      ntsntp_ef ef;
      rv = ntsntp_ef_next(&it, &ef);
      if (rv < 0)
        return rv;
      if (rv == 0)
        break;
      if (pkt->n_efs == NTSNTP_PKT_MAX_EFS)
        return NTSNTP_ERR_TOO_LARGE;
      pkt->efs[pkt->n_efs++] = ef;
    }
  }
  pkt->mac_len = len - (pkt->n_efs ? (size_t)(pkt->efs[pkt->n_efs - 1].start +
                                              pkt->efs[pkt->n_efs - 1].len - p)
                                   : NTSNTP_PKT_HDR_LEN);
  pkt->mac = pkt->mac_len ? p + (len - pkt->mac_len) : NULL;
  return 0;
}

ntsntp_ssize ntsntp_pkt_encode(const ntsntp_pkt *pkt, uint8_t *out,
                               size_t outlen) {
  ntsntp_wr w;
  size_t i;
  uint8_t *h;
  /* Only what ntsntp_pkt_decode reads back as the same fields: fields in
   * NTPv4 only, each at least 16 bytes and a multiple of 4, a MAC of a
   * length the decoder takes, and a last field long enough not to be read
   * as a MAC (RFC 7822 sec. 7.5: more than 24 bytes after it starts). */
  if (pkt->n_efs > NTSNTP_PKT_MAX_EFS ||
      (pkt->n_efs && pkt->hdr.version != 4) ||
      (pkt->mac_len != 0 && pkt->mac_len != 4 && pkt->mac_len != 20 &&
       pkt->mac_len != 24))
    return NTSNTP_ERR_INVALID_ARG;
  if (pkt->n_efs &&
      pkt->efs[pkt->n_efs - 1].body_len + 4 + pkt->mac_len <=
          NTSNTP_PKT_MAX_MAC_LEN)
    return NTSNTP_ERR_INVALID_ARG;
  ntsntp__wr_init(&w, out, outlen);
  h = ntsntp__wr_reserve(&w, NTSNTP_PKT_HDR_LEN);
  if (h)
    ntsntp_pkt_encode_hdr(&pkt->hdr, h);
  for (i = 0; i < pkt->n_efs; i++) {
    const ntsntp_ef *ef = &pkt->efs[i];
    /* Fields are written from type and body; |start| is not trusted here,
     * so a caller can build a packet from scratch. */
    if (ef->body_len % 4 || ef->body_len + 4 < NTSNTP_PKT_MIN_EF_LEN ||
        ef->body_len + 4 > 0xffff)
      return NTSNTP_ERR_INVALID_ARG;
    ntsntp__wr_u16(&w, ef->type);
    ntsntp__wr_u16(&w, (uint16_t)(ef->body_len + 4));
    ntsntp__wr_bytes(&w, ef->body, ef->body_len);
  }
  if (pkt->mac_len)
    ntsntp__wr_bytes(&w, pkt->mac, pkt->mac_len);
  return w.err ? w.err : (ntsntp_ssize)ntsntp__wr_len(&w);
}

void ntsntp_refid_format(uint32_t r, uint8_t stratum, char *buf, size_t len) {
  /* Text for stratum 0 (kiss code) and 1 (source name), unless it is not
   * text, like chrony's 127.127.1.1 for its local reference. */
  int text = stratum <= 1, k;
  char a[5];
  for (k = 0; text && k < 4; k++) {
    unsigned ch = r >> (24 - 8 * k) & 0xff;
    text = (ch >= 0x20 && ch < 0x7f) || (ch == 0 && k > 0);
  }
  if (!text) {
    snprintf(buf, len, "%08X %u.%u.%u.%u", (unsigned)r, r >> 24,
             r >> 16 & 0xff, r >> 8 & 0xff, r & 0xff);
    return;
  }
  for (k = 0; k < 4; k++) {
    char ch = (char)(r >> (24 - 8 * k));
    a[k] = ch >= 0x20 && ch < 0x7f ? ch : '.';
  }
  a[4] = '\0';
  /* Trailing NULs are padding. */
  for (k = 3; k > 0 && (r >> (24 - 8 * k) & 0xff) == 0; k--)
    a[k] = '\0';
  snprintf(buf, len, "%08X \"%s\"", (unsigned)r, a);
}

const char *ntsntp_leap_name(unsigned leap) {
  static const char *const names[] = {"no-leap", "add-leap", "del-leap",
                                      "no-sync"};
  return names[leap & 3];
}
