/* libntsntp: stateless NTP/NTS server core (RFC 5905, RFC 8915 sec. 5). */
#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "aead.h"
#include "errtext.h"
#include "nts_ef.h"
#include "ntsntp/server.h"
#include "rd.h"
#include "settings.h"

_Static_assert(sizeof(ntsntp__aead) <= sizeof(((ntsntp_server_ctx *)0)->s2c),
               "server ctx too small for the AEAD state");

#define CLOCK_WORDS ((sizeof(ntsntp_clock_state) + 7) / 8)

/* Largest plaintext of encrypted fields accepted in a request. */
#define MAX_REQ_PLAINTEXT 2048

struct ntsntp_server {
  ntsntp_server_settings s;
  const ntsntp_mem *mem;
  /* Sequence lock: odd while the writer is copying.  The state is kept as
   * atomic words so that readers racing the writer are defined behaviour
   * (they retry; C11 has no atomic memcpy). */
  atomic_uint clock_seq;
  _Atomic uint64_t clock[CLOCK_WORDS];
};

static const char *const reason_names[NTSNTP_REASON_COUNT] = {
    "ok",          "too-short",   "bad-version",   "bad-mode",
    "bad-ef",      "nts-malformed", "nts-off",     "bad-cookie",
    "unknown-key", "auth-failed", "ratelimit",     "denied",
    "internal"};

const char *ntsntp_server_reason_name(ntsntp_server_reason r) {
  return (unsigned)r < NTSNTP_REASON_COUNT ? reason_names[r] : "unknown";
}

void ntsntp_clock_state_local(ntsntp_clock_state *cs, uint8_t stratum,
                              uint64_t now) {
  memset(cs, 0, sizeof(*cs));
  cs->leap = NTSNTP_LEAP_NONE;
  cs->stratum = stratum;
  cs->precision = -20; /* about 1 us: clock_gettime resolution in practice */
  cs->refid = NTSNTP_REFID_LOCAL;
  cs->ref_ts = now;
}

static void server_fill(void *p) {
  ntsntp_server_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->rand = ntsntp_rand_nonce; /* response nonces: unique, not secret */
}
NTSNTP__SETTINGS(ntsntp_server_settings, server, mem)

int ntsntp_server_new(ntsntp_server **psrv, const ntsntp_server_settings *s,
                      char *errbuf, size_t errlen) {
  ntsntp_server_settings latest;
  const ntsntp_mem *mem;
  ntsntp_server *srv;
  ntsntp_clock_state cs;
  NTSNTP__SETTINGS_GET(s, latest, server, errbuf, errlen);
  if (!psrv || !s->rand) {
    ntsntp__errf(errbuf, errlen,
                 "NTP server: %s; fix: start from "
                 "ntsntp_server_settings_default",
                 !psrv ? "no place for the result (psrv is NULL)"
                       : "no random source (rand)");
    return NTSNTP_ERR_INVALID_ARG;
  }
  mem = s->mem ? s->mem : ntsntp_mem_default();
  srv = mem->calloc(1, sizeof(*srv), mem->user);
  if (!srv) {
    ntsntp__errf(errbuf, errlen, "NTP server: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  srv->s = *s;
  srv->mem = mem;
  atomic_init(&srv->clock_seq, 0);
  /* Until told otherwise, serve "not synchronised". */
  memset(&cs, 0, sizeof(cs));
  cs.leap = NTSNTP_LEAP_UNSYNC;
  cs.stratum = 16;
  cs.precision = -20;
  ntsntp_server_set_clock(srv, &cs);
  *psrv = srv;
  return 0;
}

void ntsntp_server_del(ntsntp_server *srv) {
  if (srv)
    srv->mem->free(srv, srv->mem->user);
}

void ntsntp_server_set_clock(ntsntp_server *srv, const ntsntp_clock_state *cs) {
  uint64_t w[CLOCK_WORDS] = {0};
  unsigned seq = atomic_load_explicit(&srv->clock_seq, memory_order_relaxed);
  size_t i;
  memcpy(w, cs, sizeof(*cs));
  atomic_store_explicit(&srv->clock_seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  for (i = 0; i < CLOCK_WORDS; i++)
    atomic_store_explicit(&srv->clock[i], w[i], memory_order_relaxed);
  atomic_store_explicit(&srv->clock_seq, seq + 2, memory_order_release);
}

void ntsntp_server_get_clock(const ntsntp_server *srv, ntsntp_clock_state *cs) {
  ntsntp_server *s = (ntsntp_server *)srv;
  uint64_t w[CLOCK_WORDS];
  unsigned a, b;
  size_t i;
  do {
    a = atomic_load_explicit(&s->clock_seq, memory_order_acquire);
    for (i = 0; i < CLOCK_WORDS; i++)
      w[i] = atomic_load_explicit(&s->clock[i], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    b = atomic_load_explicit(&s->clock_seq, memory_order_relaxed);
  } while ((a & 1) || a != b);
  memcpy(cs, w, sizeof(*cs));
}

static ntsntp_server_verdict verdict(ntsntp_server_ctx *ctx,
                                     ntsntp_server_verdict v,
                                     ntsntp_server_reason r) {
  ctx->verdict = v;
  ctx->reason = r;
  return v;
}

/* A NAK needs the Unique Identifier to be of any use to the client. */
static ntsntp_server_verdict nak(ntsntp_server_ctx *ctx,
                                 ntsntp_server_reason r) {
  return verdict(ctx, ctx->uid_ef ? NTSNTP_SERVER_RESPOND_NAK
                                  : NTSNTP_SERVER_DROP, r);
}

/* Counts cookie placeholders among the decrypted fields.  Returns -1 if the
 * plaintext is not a valid sequence of fields. */
static int count_encrypted_placeholders(const uint8_t *pt, size_t len,
                                        size_t cookie_body_len) {
  ntsntp_ef_iter it;
  ntsntp_ef ef;
  int n = 0, rv;
  ntsntp_ef_iter_init(&it, pt, len, 0, 4);
  while ((rv = ntsntp_ef_next(&it, &ef)) == 1) {
    if (ef.type == NTSNTP_EF_COOKIE_PLACEHOLDER) {
      if (ef.body_len != cookie_body_len)
        return -1;
      n++;
    }
  }
  return rv < 0 ? -1 : n;
}

/* The Authenticator's nonce and ciphertext; non-zero if malformed (for
 * |aead|, or in layout only when 0) or with more encrypted fields than we
 * accept. */
static int auth_parts(const ntsntp_ef *auth, int aead, const uint8_t **nonce,
                      size_t *nonce_len, const uint8_t **ct, size_t *ct_len) {
  return ntsntp__nts_auth_parse(auth, aead, nonce, nonce_len, ct, ct_len) ||
         *ct_len - NTSNTP__AEAD_TAG_LEN > MAX_REQ_PLAINTEXT;
}

/* The cryptographic part of prepare (ntsntp_server_authenticate). */
static ntsntp_server_verdict prepare_nts(const ntsntp_server *srv,
                                         ntsntp_server_ctx *ctx) {
  const uint8_t *req = ctx->req;
  const ntsntp_ef *cookie = &ctx->cookie_ef, *auth = &ctx->auth_ef;
  uint8_t keys[2][NTSNTP_MAX_KEY_LEN]; /* C2S, S2C */
  uint8_t pt[MAX_REQ_PLAINTEXT];
  const uint8_t *nonce, *ct;
  size_t nonce_len, ct_len, pt_len, klen, nlen, clen, ef_len, resp_len;
  ntsntp__aead aead;
  ntsntp_server_reason reason = NTSNTP_REASON_OK;
  unsigned n, i;
  int rv, enc_ph;

  if (auth_parts(auth, 0, &nonce, &nonce_len, &ct, &ct_len))
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_NTS_MALFORMED);
  pt_len = ct_len - NTSNTP__AEAD_TAG_LEN;

  rv = ntsntp_cookie_open(srv->s.keyring, cookie->body, cookie->body_len,
                          &ctx->aead, keys[0], keys[1]);
  if (rv == NTSNTP_ERR_UNKNOWN_KEY && srv->s.keyring_prev)
    rv = ntsntp_cookie_open(srv->s.keyring_prev, cookie->body,
                            cookie->body_len, &ctx->aead, keys[0], keys[1]);
  if (rv)
    return nak(ctx, rv == NTSNTP_ERR_UNKNOWN_KEY ? NTSNTP_REASON_UNKNOWN_KEY
                                                 : NTSNTP_REASON_BAD_COOKIE);
  klen = ntsntp_aead_key_len(ctx->aead);
  nlen = ntsntp__aead_nonce_len(ctx->aead);
  /* Now that the AEAD is known: a nonce length it takes (12 for GCM-SIV),
   * and the room the padding rule asks for; else discarded. */
  if (auth_parts(auth, ctx->aead, &nonce, &nonce_len, &ct, &ct_len)) {
    reason = NTSNTP_REASON_NTS_MALFORMED;
    goto out;
  }

  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.6
   *# The associated data [...] consist of the portion of the NTP packet
   *# beginning from the start of the NTP header and ending at the end of
   *# the last extension field that precedes the NTS Authenticator */
  if (pt_len == 0) {
    /* The usual request: nothing encrypted, only the tag to check. */
    rv = ntsntp__aead_verify(ctx->aead, keys[0], klen, nonce, nonce_len, req,
                             (size_t)(auth->start - req), ct);
  } else {
    rv = ntsntp__aead_init(&aead, ctx->aead, keys[0], klen);
    if (rv == 0)
      rv = ntsntp__aead_open(&aead, nonce, nonce_len, req,
                             (size_t)(auth->start - req), ct, ct_len, pt);
    ntsntp__aead_clear(&aead);
  }
  if (rv) {
    reason = rv == NTSNTP_ERR_AUTH ? NTSNTP_REASON_AUTH_FAILED
                                   : NTSNTP_REASON_INTERNAL;
    goto out;
  }
  enc_ph = count_encrypted_placeholders(pt, pt_len, cookie->body_len);
  ntsntp_secure_clear(pt, pt_len);
  if (enc_ph < 0) {
    reason = NTSNTP_REASON_NTS_MALFORMED;
    goto out;
  }

  /* The request is authentic: do the rest of the expensive work now, before
   * the caller takes the transmit timestamp. */
  clen = ntsntp_cookie_len(ctx->aead);
  ef_len = ntsntp__pad4(4 + clen);
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
   *# [...] the server SHOULD include one new cookie [...] plus one for
   *# each Cookie Placeholder [...] */
  n = 1 + ctx->placeholders + (unsigned)enc_ph;
  if (n > NTSNTP_SERVER_MAX_COOKIES)
    n = NTSNTP_SERVER_MAX_COOKIES;
  /* Never answer with more bytes than were sent (no amplification). */
  for (;; n--) {
    resp_len = NTSNTP_PKT_HDR_LEN + ctx->uid_ef_len +
               ntsntp__nts_auth_ef_len(nlen, n * ef_len + NTSNTP__AEAD_TAG_LEN);
    if (resp_len <= ctx->req_len || n == 0)
      break;
  }
  if (resp_len > ctx->req_len) {
    /* Only a request with a nonce shorter than ours gets here. */
    reason = NTSNTP_REASON_NTS_MALFORMED;
    goto out;
  }
  for (i = 0; i < n; i++) {
    uint8_t *f = ctx->pt + i * ef_len;
    if (ntsntp_cookie_seal(srv->s.keyring, ctx->aead, keys[0], keys[1], f + 4,
                           clen) != (ntsntp_ssize)clen) {
      reason = NTSNTP_REASON_INTERNAL;
      goto out;
    }
    ntsntp__put_u16(f, NTSNTP_EF_COOKIE);
    ntsntp__put_u16(f + 2, (uint16_t)ef_len);
    memset(f + 4 + clen, 0, ef_len - 4 - clen);
  }
  ctx->n_cookies = n;
  ctx->pt_len = n * ef_len;
  if (ntsntp__aead_init((ntsntp__aead *)ctx->s2c.b, ctx->aead, keys[1], klen) ||
      srv->s.rand(srv->s.rand_user, ctx->nonce, nlen))
    reason = NTSNTP_REASON_INTERNAL;
  else
    ctx->nts = 1;
out:
  ntsntp_secure_clear(keys, sizeof(keys));
  if (reason == NTSNTP_REASON_OK)
    return verdict(ctx, NTSNTP_SERVER_RESPOND, reason);
  if (reason == NTSNTP_REASON_AUTH_FAILED)
    return nak(ctx, reason);
  ntsntp_server_ctx_clear(ctx);
  ctx->n_cookies = 0;
  return verdict(ctx, NTSNTP_SERVER_DROP, reason);
}

ntsntp_server_verdict ntsntp_server_parse(const ntsntp_server *srv,
                                          const uint8_t *req, size_t len,
                                          uint64_t rx_ts,
                                          ntsntp_server_ctx *ctx) {
  ntsntp_pkt_hdr h;
  ntsntp_ef_iter it;
  ntsntp_ef ef, cookie, auth;
  const uint8_t *nonce, *ct;
  size_t nonce_len, ct_len;
  int have_cookie = 0, have_auth = 0, rv;
  unsigned placeholders = 0;

  /* Only the header part of ctx is initialised: the big buffers are
   * written before they are read. */
  ctx->verdict = NTSNTP_SERVER_DROP;
  ctx->req_len = len;
  ctx->nts = 0;
  ctx->uid_ef = NULL;
  ctx->uid_ef_len = 0;
  ctx->aead = 0;
  ctx->n_cookies = 0;
  ctx->pt_len = 0;
  ctx->rx_ts = rx_ts;
  ctx->nts_pending = 0;
  ctx->req = req;
  ctx->xleave = 0;
  ctx->want_tx_ts = 0;
  ctx->xleave_tx = 0;
  ctx->client_org = 0;
  ctx->client_rx = 0;

  if (ntsntp_pkt_decode_hdr(&h, req, len))
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_TOO_SHORT);
  /* NTPv3 and NTPv4 clients only; v1/v2 are long dead and 0/5+ invalid. */
  if (h.version < 3 || h.version > 4)
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_BAD_VERSION);
  /* Modes other than client are dropped: symmetric and broadcast modes are
   * not served, and control/private (6/7) are amplification vectors. */
  if (h.mode != NTSNTP_MODE_CLIENT)
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_BAD_MODE);
  ctx->version = h.version;
  ctx->poll = h.poll;
  ctx->client_tx = h.tx_ts;
  ctx->client_org = h.org_ts;
  ctx->client_rx = h.rx_ts;

  if (h.version == 4) {
    ntsntp_ef_iter_init(&it, req, len, NTSNTP_PKT_HDR_LEN,
                        NTSNTP_PKT_MIN_EF_LEN);
    while ((rv = ntsntp_ef_next(&it, &ef)) == 1) {
      switch (ef.type) {
      case NTSNTP_EF_UNIQUE_ID:
        /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.3
         *# The string MUST be at least 32 octets long. */
        if (ctx->uid_ef || ef.body_len < NTSNTP__NTS_MIN_UID_LEN)
          return verdict(ctx, NTSNTP_SERVER_DROP,
                         NTSNTP_REASON_NTS_MALFORMED);
        ctx->uid_ef = ef.start;
        ctx->uid_ef_len = ef.len;
        break;
      case NTSNTP_EF_COOKIE:
        if (have_cookie)
          return verdict(ctx, NTSNTP_SERVER_DROP,
                         NTSNTP_REASON_NTS_MALFORMED);
        cookie = ef;
        have_cookie = 1;
        break;
      case NTSNTP_EF_COOKIE_PLACEHOLDER:
        placeholders++;
        if (have_cookie && ef.body_len != cookie.body_len)
          return verdict(ctx, NTSNTP_SERVER_DROP,
                         NTSNTP_REASON_NTS_MALFORMED);
        break;
      case NTSNTP_EF_AUTHENTICATOR:
        auth = ef;
        have_auth = 1;
        break;
      default:
        break; /* unknown fields are ignored (RFC 7822 sec. 3) */
      }
      /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.6
       *# [...] extension fields following the NTS Authenticator [...]
       *# are not authenticated and SHOULD be ignored */
      if (have_auth)
        break;
    }
    if (rv < 0)
      return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_BAD_EF);
  }

  if (!have_cookie && !have_auth && !ctx->uid_ef)
    return verdict(ctx, NTSNTP_SERVER_RESPOND, NTSNTP_REASON_OK);
  if (!srv->s.keyring)
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_NTS_OFF);
  if (!have_cookie || !have_auth || !ctx->uid_ef)
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_NTS_MALFORMED);
  /* Placeholders seen before the cookie are checked here. */
  if (placeholders) {
    ntsntp_ef_iter_init(&it, req, (size_t)(auth.start - req),
                        NTSNTP_PKT_HDR_LEN, NTSNTP_PKT_MIN_EF_LEN);
    while (ntsntp_ef_next(&it, &ef) == 1)
      if (ef.type == NTSNTP_EF_COOKIE_PLACEHOLDER &&
          ef.body_len != cookie.body_len)
        return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_NTS_MALFORMED);
  }
  if (auth_parts(&auth, 0, &nonce, &nonce_len, &ct, &ct_len))
    return verdict(ctx, NTSNTP_SERVER_DROP, NTSNTP_REASON_NTS_MALFORMED);
  /* Well-formed: the cryptography is left to ntsntp_server_authenticate,
   * after the caller's rate limiter. */
  ctx->cookie_ef = cookie;
  ctx->auth_ef = auth;
  ctx->placeholders = placeholders;
  ctx->nts_pending = 1;
  return verdict(ctx, NTSNTP_SERVER_RESPOND, NTSNTP_REASON_OK);
}

ntsntp_server_verdict ntsntp_server_authenticate(const ntsntp_server *srv,
                                                 ntsntp_server_ctx *ctx) {
  if (!ctx->nts_pending || ctx->verdict != NTSNTP_SERVER_RESPOND)
    return ctx->verdict;
  ctx->nts_pending = 0;
  return prepare_nts(srv, ctx);
}

ntsntp_server_verdict ntsntp_server_prepare(const ntsntp_server *srv,
                                            const uint8_t *req, size_t len,
                                            uint64_t rx_ts,
                                            ntsntp_server_ctx *ctx) {
  ntsntp_server_parse(srv, req, len, rx_ts, ctx);
  return ntsntp_server_authenticate(srv, ctx);
}

void ntsntp_server_ctx_ratelimit(ntsntp_server_ctx *ctx) {
  if (ctx->verdict != NTSNTP_SERVER_RESPOND)
    return;
  if (ctx->nts || ctx->nts_pending) {
    ntsntp_server_ctx_clear(ctx);
    ctx->nts = 0;
    ctx->nts_pending = 0;
    ctx->verdict = NTSNTP_SERVER_DROP;
  } else {
    ctx->verdict = NTSNTP_SERVER_RESPOND_KOD;
  }
  ctx->reason = NTSNTP_REASON_RATELIMIT;
}

int ntsntp_server_ctx_xleave(ntsntp_server_ctx *ctx, ntsntp_xleave_state *st) {
  int asks;
  if (ctx->verdict != NTSNTP_SERVER_RESPOND)
    return 0;
  /* RFC 9769 sec. 2: a request whose origin timestamp is the receive
   * timestamp of the client's previous request asks for interleaved mode
   * (in basic mode the origin is our transmit timestamp, or zero).  As
   * chrony does, the request's receive and transmit fields must differ
   * too. */
  asks = st->rx != 0 && ctx->client_org == st->rx &&
         ctx->client_rx != ctx->client_tx;
  ctx->want_tx_ts = asks;
  if (asks && st->tx != 0) {
    ctx->xleave = 1;
    ctx->xleave_tx = st->tx;
  }
  st->rx = ctx->rx_ts;
  st->tx = 0;
  return asks;
}

int ntsntp_xleave_state_tx(ntsntp_xleave_state *st, uint64_t rx, uint64_t tx) {
  if (rx == 0 || tx == 0 || st->rx != rx)
    return 0;
  st->tx = tx;
  return 1;
}

void ntsntp_server_ctx_clear(ntsntp_server_ctx *ctx) {
  /* A cookie was opened: key material may be in the context. */
  if (ctx->aead) {
    ntsntp_secure_clear(ctx->s2c.b, sizeof(ntsntp__aead));
    ntsntp_secure_clear(ctx->pt, ctx->pt_len);
    ctx->aead = 0;
  }
}

ntsntp_ssize ntsntp_server_finish(const ntsntp_server *srv,
                                  ntsntp_server_ctx *ctx, uint64_t tx_ts,
                                  uint8_t *out, size_t outlen) {
  ntsntp_clock_state cs;
  ntsntp_pkt_hdr h;
  size_t len = NTSNTP_PKT_HDR_LEN;
  /* Our nonce: 16 bytes, or 12 for GCM-SIV (RFC 8915 5.6, nts_ef.c). */
  size_t nlen = ntsntp__aead_nonce_len(ctx->aead);
  int rv = 0;

  /* An NTS request is answered only once authenticate has judged it. */
  if (ctx->verdict == NTSNTP_SERVER_DROP || ctx->nts_pending)
    return NTSNTP_ERR_STATE;
  memset(&h, 0, sizeof(h));
  h.version = ctx->version;
  h.mode = NTSNTP_MODE_SERVER;
  h.poll = ctx->poll;
  h.org_ts = ctx->client_tx;
  h.rx_ts = ctx->rx_ts;
  h.tx_ts = tx_ts;
  if (ctx->verdict == NTSNTP_SERVER_RESPOND && ctx->xleave) {
    /* RFC 9769 sec. 2 (and chrony): origin = the request's receive field
     * (the client's receive time of our previous response), receive =
     * this request's, transmit = the measured one of the previous
     * response. */
    h.org_ts = ctx->client_rx;
    h.tx_ts = ctx->xleave_tx;
    tx_ts = ctx->xleave_tx; /* the cap of ref_ts below */
  }
  if (ctx->verdict == NTSNTP_SERVER_RESPOND) {
    ntsntp_server_get_clock(srv, &cs);
    h.leap = cs.leap;
    h.stratum = cs.stratum;
    h.precision = cs.precision;
    h.refid = cs.refid;
    h.ref_ts = cs.ref_ts;
    /* The caller read |tx_ts| before this read of the clock state, so an
     * update published in between (the local clock's timer sets ref_ts to
     * "now" every second) can be later than |tx_ts|.  The clock cannot
     * have been set after the response left (clients may reject that as
     * bogus data): the update is that recent, so say exactly that.
     * Compared modulo 2^64, as the era may roll over in between. */
    if (cs.ref_ts != 0 && (int64_t)(cs.ref_ts - tx_ts) > 0)
      h.ref_ts = tx_ts;
    h.root_delay = cs.root_delay;
    h.root_disp = cs.root_disp;
    if (cs.disp_rate > 0 && cs.ref_ts) {
      double age = ntsntp_ts_diff(ctx->rx_ts, cs.ref_ts);
      if (age > 0)
        h.root_disp = ntsntp_short_from_double(
            ntsntp_short_to_double(cs.root_disp) + age * cs.disp_rate);
    }
  } else {
    /*= https://www.rfc-editor.org/rfc/rfc5905#section-7.4
     *# [...] Kiss-o'-Death (KoD) packet [...] stratum field is set to zero
     *# [...] the ASCII kiss code in the reference identifier */
    h.leap = NTSNTP_LEAP_UNSYNC;
    h.refid = ctx->verdict == NTSNTP_SERVER_RESPOND_NAK ? NTSNTP_KOD_NTSN
                                                        : NTSNTP_KOD_RATE;
  }

  if (ctx->verdict == NTSNTP_SERVER_RESPOND_NAK)
    len += ctx->uid_ef_len;
  else if (ctx->nts)
    len += ctx->uid_ef_len +
           ntsntp__nts_auth_ef_len(nlen, ctx->pt_len + NTSNTP__AEAD_TAG_LEN);
  if (len > outlen || len > ctx->req_len) {
    ntsntp_server_ctx_clear(ctx);
    return NTSNTP_ERR_NOBUF;
  }
  ntsntp_pkt_encode_hdr(&h, out);
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
   *# [the NTS NAK] MUST include a Unique Identifier extension field
   *# mirroring the one in the request */
  if (ctx->verdict == NTSNTP_SERVER_RESPOND_NAK || ctx->nts)
    memcpy(out + NTSNTP_PKT_HDR_LEN, ctx->uid_ef, ctx->uid_ef_len);
  if (ctx->nts && ctx->verdict == NTSNTP_SERVER_RESPOND) {
    size_t ad_len = NTSNTP_PKT_HDR_LEN + ctx->uid_ef_len;
    uint8_t *ct = ntsntp__nts_auth_write(out + ad_len, ctx->nonce, nlen,
                                         ctx->pt_len + NTSNTP__AEAD_TAG_LEN);
    rv = ntsntp__aead_seal((const ntsntp__aead *)ctx->s2c.b, ctx->nonce, nlen,
                           out, ad_len, ctx->pt, ctx->pt_len, ct);
  }
  ntsntp_server_ctx_clear(ctx);
  return rv ? NTSNTP_ERR_CRYPTO : (ntsntp_ssize)len;
}

void ntsntp_server_stats_count(ntsntp_server_stats *st,
                               const ntsntp_server_ctx *ctx) {
  st->received++;
  st->reasons[ctx->reason < NTSNTP_REASON_COUNT ? ctx->reason
                                                : NTSNTP_REASON_INTERNAL]++;
  switch (ctx->verdict) {
  case NTSNTP_SERVER_DROP:
    st->dropped++;
    break;
  case NTSNTP_SERVER_RESPOND:
    st->responded++;
    if (ctx->nts) {
      st->nts_authenticated++;
      st->cookies_issued += ctx->n_cookies;
    }
    break;
  case NTSNTP_SERVER_RESPOND_NAK:
    st->responded++;
    st->naks++;
    break;
  case NTSNTP_SERVER_RESPOND_KOD:
    st->responded++;
    st->kods++;
    break;
  }
}

void ntsntp_server_stats_add(ntsntp_server_stats *dst,
                             const ntsntp_server_stats *src) {
  const uint64_t *s = (const uint64_t *)src;
  uint64_t *d = (uint64_t *)dst;
  size_t i;
  for (i = 0; i < sizeof(*src) / sizeof(uint64_t); i++)
    d[i] += s[i];
}
