/* libntsntp: client side of one NTP/NTS exchange. */
#include <string.h>

#include "aead.h"
#include "ntsntp/client.h"
#include "nts_ef.h"
#include "rd.h"

/* Longest nonce we send (ntsntp__aead_nonce_len: 16, or 12 for GCM-SIV). */
#define REQ_NONCE_MAX 16

ntsntp_ssize ntsntp_client_request(ntsntp_client_exchange *ex,
                                   const ntsntp_client_params *p, uint8_t *out,
                                   size_t outlen) {
  ntsntp_rand_fn rnd = p->rand ? p->rand : ntsntp_rand_default;
  ntsntp_pkt_hdr h;
  uint8_t nonce[REQ_NONCE_MAX], tx[8];
  size_t len = NTSNTP_PKT_HDR_LEN, klen = 0, nlen = 0, ef_len = 0, i;
  ntsntp__aead a;
  ntsntp_ssize n;
  int rv;

  memset(ex, 0, sizeof(*ex));
  if (p->aead) {
    klen = ntsntp_aead_key_len(p->aead);
    nlen = ntsntp__aead_nonce_len(p->aead);
    if (!klen || !nlen || nlen > sizeof(nonce) || !p->c2s || !p->s2c ||
        !p->cookie || !p->cookie_len || p->cookie_len > NTSNTP_COOKIE_MAX_LEN ||
        p->placeholders >= NTSNTP_CLIENT_MAX_COOKIES)
      return NTSNTP_ERR_INVALID_ARG;
    ef_len = ntsntp__pad4(4 + p->cookie_len);
    if (ef_len < NTSNTP_PKT_MIN_EF_LEN)
      ef_len = NTSNTP_PKT_MIN_EF_LEN;
    len += 4 + NTSNTP_CLIENT_UID_LEN + ef_len * (1 + p->placeholders) +
           ntsntp__nts_auth_ef_len(nlen, NTSNTP__AEAD_TAG_LEN);
  }
  if (len > outlen)
    return NTSNTP_ERR_NOBUF;
  if (rnd(p->rand_user, tx, sizeof(tx)))
    return NTSNTP_ERR_CRYPTO;
  memset(&h, 0, sizeof(h));
  h.version = 4;
  h.mode = NTSNTP_MODE_CLIENT;
  h.poll = p->poll;
  /* All other timestamps zero: nothing about the client's clock leaks
   * (an interleaved request must send its previous receive time). */
  h.tx_ts = ntsntp__get_u64(tx);
  if (p->xleave && p->xleave->t2 != 0 && p->xleave->t4 != 0) {
    h.org_ts = p->xleave->t2;
    h.rx_ts = p->xleave->t4;
    /* The server tells an interleaved request by receive != transmit. */
    if (h.tx_ts == h.rx_ts)
      h.tx_ts ^= 1;
    ex->xl_org = h.rx_ts;
    ex->xl = *p->xleave;
  }
  ex->tx_ts = h.tx_ts;
  ntsntp_pkt_encode_hdr(&h, out);
  if (!p->aead)
    return NTSNTP_PKT_HDR_LEN;

  ex->aead = p->aead;
  ex->cookie_len = p->cookie_len;
  memcpy(ex->s2c, p->s2c, klen);
  if (rnd(p->rand_user, ex->uid, sizeof(ex->uid)) ||
      rnd(p->rand_user, nonce, nlen))
    return NTSNTP_ERR_CRYPTO;
  len = NTSNTP_PKT_HDR_LEN;
  len += (size_t)ntsntp_ef_encode(out + len, outlen - len, NTSNTP_EF_UNIQUE_ID,
                                  ex->uid, sizeof(ex->uid), 0);
  len += (size_t)ntsntp_ef_encode(out + len, outlen - len, NTSNTP_EF_COOKIE,
                                  p->cookie, p->cookie_len, ef_len);
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.5
   *# The body length of the NTS Cookie Placeholder extension field MUST be
   *# the same as the body length of the NTS Cookie extension field. */
  for (i = 0; i < p->placeholders; i++) {
    n = ntsntp_ef_encode(out + len, outlen - len,
                         NTSNTP_EF_COOKIE_PLACEHOLDER, NULL, 0, ef_len);
    len += (size_t)n;
  }
  rv = ntsntp__aead_init(&a, p->aead, p->c2s, klen);
  if (rv == 0) {
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.6
     *# Nonce: A nonce as required by the negotiated AEAD algorithm.
     */
    /* No Additional Padding: the nonce alone has the length the padding
     * rule asks for (see ntsntp__nts_auth_parse). */
    uint8_t *ct =
        ntsntp__nts_auth_write(out + len, nonce, nlen, NTSNTP__AEAD_TAG_LEN);
    rv = ntsntp__aead_seal(&a, nonce, nlen, out, len, NULL, 0, ct);
    len += ntsntp__nts_auth_ef_len(nlen, NTSNTP__AEAD_TAG_LEN);
  }
  ntsntp__aead_clear(&a);
  return rv ? NTSNTP_ERR_CRYPTO : (ntsntp_ssize)len;
}

/* Takes the new cookies out of the decrypted fields. */
static int collect_cookies(ntsntp_client_sample *s, const uint8_t *pt,
                           size_t len) {
  ntsntp_ef_iter it;
  ntsntp_ef ef;
  int rv;
  ntsntp_ef_iter_init(&it, pt, len, 0, 4);
  while ((rv = ntsntp_ef_next(&it, &ef)) == 1) {
    if (ef.type != NTSNTP_EF_COOKIE ||
        s->n_cookies == NTSNTP_CLIENT_MAX_COOKIES)
      continue;
    if (ef.body_len == 0 || ef.body_len > NTSNTP_COOKIE_MAX_LEN)
      return NTSNTP_ERR_BAD_EF;
    memcpy(s->cookies[s->n_cookies], ef.body, ef.body_len);
    s->cookie_len[s->n_cookies++] = ef.body_len;
  }
  return rv < 0 ? rv : 0;
}

static int check_nts(ntsntp_client_exchange *ex, const uint8_t *resp,
                     size_t len, ntsntp_client_sample *s, int *uid_ok) {
  uint8_t pt[NTSNTP_CLIENT_MAX_COOKIES * (4 + NTSNTP_COOKIE_MAX_LEN) + 64];
  const uint8_t *nonce, *ct;
  size_t nonce_len, ct_len;
  ntsntp_ef_iter it;
  ntsntp_ef ef, auth;
  ntsntp__aead a;
  int rv, have_auth = 0;

  *uid_ok = 0;
  ntsntp_ef_iter_init(&it, resp, len, NTSNTP_PKT_HDR_LEN,
                      NTSNTP_PKT_MIN_EF_LEN);
  while (!have_auth && (rv = ntsntp_ef_next(&it, &ef)) == 1) {
    if (ef.type == NTSNTP_EF_UNIQUE_ID) {
      if (*uid_ok || ef.body_len < sizeof(ex->uid))
        return NTSNTP_ERR_AUTH;
      *uid_ok = ntsntp_ct_memcmp(ef.body, ex->uid, sizeof(ex->uid)) == 0;
    } else if (ef.type == NTSNTP_EF_AUTHENTICATOR) {
      auth = ef;
      have_auth = 1;
    }
  }
  if (!have_auth && it.err)
    return it.err;
  if (!*uid_ok || !have_auth)
    return NTSNTP_ERR_AUTH;
  if (ntsntp__nts_auth_parse(&auth, ex->aead, &nonce, &nonce_len, &ct,
                             &ct_len) ||
      ct_len - NTSNTP__AEAD_TAG_LEN > sizeof(pt))
    return NTSNTP_ERR_AUTH;
  rv = ntsntp__aead_init(&a, ex->aead, ex->s2c, ntsntp_aead_key_len(ex->aead));
  if (rv == 0)
    rv = ntsntp__aead_open(&a, nonce, nonce_len, resp,
                           (size_t)(auth.start - resp), ct, ct_len, pt);
  ntsntp__aead_clear(&a);
  if (rv)
    return NTSNTP_ERR_AUTH;
  rv = collect_cookies(s, pt, ct_len - NTSNTP__AEAD_TAG_LEN);
  ntsntp_secure_clear(pt, sizeof(pt));
  return rv ? NTSNTP_ERR_AUTH : 0;
}

int ntsntp_client_response(ntsntp_client_exchange *ex, const uint8_t *resp,
                           size_t len, uint64_t t1, uint64_t t4,
                           ntsntp_client_sample *s) {
  int rv, uid_ok = 0;

  s->n_cookies = 0;
  s->authenticated = 0;
  if (ex->tx_ts == 0)
    return NTSNTP_ERR_STATE; /* no request outstanding */
  rv = ntsntp_pkt_decode_hdr(&s->hdr, resp, len);
  if (rv)
    return rv;
  if (s->hdr.version < 3 || s->hdr.version > 4)
    return NTSNTP_ERR_BAD_VERSION;
  if (s->hdr.mode != NTSNTP_MODE_SERVER)
    return NTSNTP_ERR_BAD_MODE;
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-8
   *# [the packet is bogus if] the origin timestamp [...] does not match
   *# the transmit timestamp of the last packet sent */
  s->interleaved = 0;
  if (s->hdr.org_ts != ex->tx_ts) {
    /* RFC 9769 sec. 2: an interleaved response carries the receive
     * timestamp of our request as origin. */
    if (ex->xl_org == 0 || s->hdr.org_ts != ex->xl_org)
      return NTSNTP_ERR_MALFORMED;
    s->interleaved = 1;
  }

  if (ex->aead) {
    rv = check_nts(ex, resp, len, s, &uid_ok);
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
     *# [a NAK is] a Kiss-o'-Death packet with kiss code "NTSN" [...]
     *# clients MUST check the Unique Identifier */
    if (s->hdr.stratum == 0 && s->hdr.refid == NTSNTP_KOD_NTSN && uid_ok)
      return NTSNTP_ERR_NAK;
    if (rv)
      return rv;
    s->authenticated = 1;
  }
  if (s->hdr.stratum == 0)
    return NTSNTP_ERR_KOD;
  if (s->hdr.tx_ts == 0)
    return NTSNTP_ERR_MALFORMED;

  s->t1 = t1;
  s->t2 = s->hdr.rx_ts;
  s->t3 = s->hdr.tx_ts;
  s->t4 = t4;
  if (s->interleaved) {
    /* The previous exchange, completed by the time its response left. */
    s->t1 = ex->xl.t1;
    s->t2 = ex->xl.t2;
    s->t4 = ex->xl.t4;
    if (ntsntp_ts_diff(s->t3, s->t2) < 0)
      return NTSNTP_ERR_MALFORMED;
    t1 = s->t1;
    t4 = s->t4;
  }
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-8
   *# offset = [(T2 - T1) + (T3 - T4)] / 2
   *# delay = (T4 - T1) - (T3 - T2) */
  s->offset = (ntsntp_ts_diff(s->t2, t1) + ntsntp_ts_diff(s->t3, t4)) / 2;
  s->delay = ntsntp_ts_diff(t4, t1) - ntsntp_ts_diff(s->t3, s->t2);
  s->root_delay = ntsntp_short_to_double(s->hdr.root_delay);
  s->root_disp = ntsntp_short_to_double(s->hdr.root_disp);
  /* One response per request: a replay of it is now rejected. */
  ex->tx_ts = 0;
  return 0;
}

void ntsntp_client_xleave_update(ntsntp_client_xleave *xl,
                                 const ntsntp_client_sample *s, uint64_t t1,
                                 uint64_t t4) {
  xl->t1 = t1;
  xl->t2 = s->hdr.rx_ts;
  xl->t4 = t4;
}

void ntsntp_client_exchange_clear(ntsntp_client_exchange *ex) {
  ntsntp_secure_clear(ex, sizeof(*ex));
}
