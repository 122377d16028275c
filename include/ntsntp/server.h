/*
 * libntsntp: the NTP/NTS server core, sans I/O and stateless.
 *
 * Two calls per request (chrony's nts_ntp_server.c order of work):
 *
 *   ntsntp_server_ctx ctx;               // on the caller's stack
 *   ntsntp_server_prepare(srv, req, len, rx_ts, &ctx);
 *   if (ctx.verdict != NTSNTP_SERVER_DROP) {
 *     tx = read_clock();                  // as late as possible
 *     n = ntsntp_server_finish(srv, &ctx, tx, out, sizeof(out));
 *   }
 *
 * prepare parses the request, opens the NTS cookie, verifies the
 * authenticator, seals the new cookies and picks the response nonce: all the
 * expensive work.  finish writes the header with the transmit timestamp and
 * seals the response (one AES-SIV operation for NTS).  Neither allocates.
 * An output buffer as large as the request always suffices: the response is
 * never longer than the request (no amplification).
 *
 * prepare is ntsntp_server_parse then ntsntp_server_authenticate.  A caller
 * with a rate limiter calls the two itself and asks its limiter in between,
 * so that a limited NTS request costs no AES-SIV operation (up to ten per
 * request otherwise: cookie open, authenticator, eight new cookies):
 *
 *   if (ntsntp_server_parse(srv, req, len, rx_ts, &ctx) != DROP) {
 *     if (limited(peer)) ntsntp_server_ctx_ratelimit(&ctx);
 *     ntsntp_server_authenticate(srv, &ctx);   // no-op unless still due
 *   }
 *
 * |ctx| points into |req|; keep |req| unchanged until finish returns.
 * A server object may be used by several threads at once; the clock state it
 * serves is copied in by ntsntp_server_set_clock (see there).
 */
#ifndef NTSNTP_SERVER_H
#define NTSNTP_SERVER_H

#include "ntsntp/cookie.h"
#include "ntsntp/pkt.h"
#include "ntsntp/ts.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the server serves: the state of its clock, in wire units. */
typedef struct ntsntp_clock_state {
  uint8_t leap;    /* NTSNTP_LEAP_*; UNSYNC while not synchronised */
  uint8_t stratum; /* 1..15; 16 while not synchronised */
  int8_t precision;
  uint32_t refid;
  uint64_t ref_ts;     /* NTP-64 time of the last clock update */
  uint32_t root_delay; /* NTP short format */
  uint32_t root_disp;  /* NTP short format, at |ref_ts| */
  /* Dispersion growth (RFC 5905 PHI, 15e-6 s/s) applied per response
   * from ref_ts to the receive time; 0 for a local reference clock. */
  double disp_rate;
} ntsntp_clock_state;

/* The local clock mode (NTP_SERVERS=127.127.1.1): like chrony's
 * `local stratum N`: leap 0, refid 127.127.1.1. */
NTSNTP_EXTERN void ntsntp_clock_state_local(ntsntp_clock_state *cs,
                                            uint8_t stratum, uint64_t now);

typedef enum ntsntp_server_verdict {
  NTSNTP_SERVER_DROP = 0,
  NTSNTP_SERVER_RESPOND = 1,     /* normal (or authenticated) response */
  NTSNTP_SERVER_RESPOND_NAK = 2, /* NTS NAK: KoD "NTSN", UID echoed */
  NTSNTP_SERVER_RESPOND_KOD = 3  /* other KoD (RATE), no NTS */
} ntsntp_server_verdict;

/* Why a request was answered or dropped; one counter each. */
typedef enum ntsntp_server_reason {
  NTSNTP_REASON_OK = 0,
  NTSNTP_REASON_TOO_SHORT,     /* < 48 bytes */
  NTSNTP_REASON_BAD_VERSION,   /* version not 3 or 4 */
  NTSNTP_REASON_BAD_MODE,      /* not a client (mode 3) request */
  NTSNTP_REASON_BAD_EF,        /* extension fields malformed */
  NTSNTP_REASON_NTS_MALFORMED, /* NTS fields missing, duplicated, misplaced */
  NTSNTP_REASON_NTS_OFF,       /* NTS request but NTS is not configured */
  NTSNTP_REASON_BAD_COOKIE,    /* NAK: cookie did not open */
  NTSNTP_REASON_UNKNOWN_KEY,   /* NAK: cookie key no longer in the ring */
  NTSNTP_REASON_AUTH_FAILED,   /* NAK: authenticator did not verify */
  NTSNTP_REASON_RATELIMIT,     /* rate limited (KoD RATE or drop) */
  NTSNTP_REASON_DENIED,        /* refused by access control */
  NTSNTP_REASON_INTERNAL,      /* crypto backend failure */
  NTSNTP_REASON_COUNT
} ntsntp_server_reason;

/* A short name for |r| ("bad-mode", ...), for logs and metrics labels. */
NTSNTP_EXTERN const char *ntsntp_server_reason_name(ntsntp_server_reason r);

#define NTSNTP_SERVER_MAX_COOKIES 8
#define NTSNTP_SERVER_NONCE_LEN 16

/* Per-request state between prepare and finish.  Fixed size, no heap. */
typedef struct ntsntp_server_ctx {
  ntsntp_server_verdict verdict;
  ntsntp_server_reason reason;
  size_t req_len;
  uint8_t version;
  int8_t poll;
  uint64_t client_tx;
  uint64_t client_org; /* the request's origin and receive fields */
  uint64_t client_rx;
  uint64_t rx_ts;
  /* Interleaved mode (ntsntp_server_ctx_xleave): |xleave| set answers
   * with |xleave_tx| as transmit timestamp; |want_tx_ts| asks the runtime
   * to measure this response's transmit time. */
  int xleave;
  int want_tx_ts;
  uint64_t xleave_tx;
  int nts;               /* authenticated NTS request */
  const uint8_t *uid_ef; /* whole Unique Identifier field, in the request */
  size_t uid_ef_len;
  int aead;
  unsigned n_cookies; /* new cookies in |pt| */
  size_t pt_len;      /* plaintext: the new cookie fields */
  /* Response nonce: 16 bytes, the first 12 with AES-128-GCM-SIV. */
  uint8_t nonce[NTSNTP_SERVER_NONCE_LEN];
  /* Set by ntsntp_server_parse for an NTS request whose cookie and
   * authenticator are still to be checked (by ntsntp_server_authenticate);
   * finish refuses the context while it is set. */
  int nts_pending;
  const uint8_t *req; /* the request; the fields below point into it */
  ntsntp_ef cookie_ef, auth_ef;
  unsigned placeholders; /* Cookie Placeholders outside the encryption */
  /* The S2C AEAD with its key schedule done in prepare (opaque). */
  union {
    uint64_t align;
    uint8_t b[1024];
  } s2c;
  uint8_t pt[NTSNTP_SERVER_MAX_COOKIES * (4 + NTSNTP_COOKIE_MAX_LEN)];
} ntsntp_server_ctx;

typedef struct ntsntp_server_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* Key ring for NTS cookies; NULL serves plain NTP only. */
  const ntsntp_keyring *keyring;
  /* Optional second ring whose cookies are still accepted (never used to
   * seal): the previous master secret during a change-over. */
  const ntsntp_keyring *keyring_prev;
  /* Randomness for response nonces.  Default ntsntp_rand_nonce. */
  ntsntp_rand_fn rand;
  void *rand_user;
  const ntsntp_mem *mem;
} ntsntp_server_settings;

NTSNTP_EXTERN void
ntsntp_server_settings_default_versioned(int version,
                                         ntsntp_server_settings *s);
#define ntsntp_server_settings_default(S)                                      \
  ntsntp_server_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

typedef struct ntsntp_server ntsntp_server;

/* Errors: INVALID_ARG (no settings or no |rand|), NOMEM.  |errbuf|
 * (|errlen| bytes; NULL/0 allowed) gets one line on any failure. */
NTSNTP_EXTERN int ntsntp_server_new(ntsntp_server **psrv,
                                    const ntsntp_server_settings *s,
                                    char *errbuf, size_t errlen);
NTSNTP_EXTERN void ntsntp_server_del(ntsntp_server *srv);

/*
 * Publishes a new clock state.  Safe while other threads call prepare and
 * finish: readers see either the old or the new state, never a mix
 * (sequence lock, no lock on the read path).  Call from one thread.
 */
NTSNTP_EXTERN void ntsntp_server_set_clock(ntsntp_server *srv,
                                           const ntsntp_clock_state *cs);

/* Reads the clock state being served (a consistent copy). */
NTSNTP_EXTERN void ntsntp_server_get_clock(const ntsntp_server *srv,
                                           ntsntp_clock_state *cs);

/*
 * Judges |req| received at |rx_ts| (NTP-64) and prepares the response in
 * |ctx|: ntsntp_server_parse, then ntsntp_server_authenticate.  Returns
 * ctx->verdict.  ctx->reason says why; a DROP is never an error of the
 * server, and nothing is answered for it.
 */
NTSNTP_EXTERN ntsntp_server_verdict
ntsntp_server_prepare(const ntsntp_server *srv, const uint8_t *req,
                      size_t len, uint64_t rx_ts, ntsntp_server_ctx *ctx);

/*
 * The cheap half of prepare: checks the header and the extension fields
 * and finds the NTS fields, without any cryptography.  Returns
 * ctx->verdict: DROP (with its reason), or RESPOND.  For an NTS request
 * RESPOND means "well-formed so far" and ctx->nts_pending is set: call
 * ntsntp_server_authenticate before finish (finish refuses it until then).
 * Drops for reasons found here (TOO_SHORT, BAD_VERSION, BAD_MODE, BAD_EF,
 * NTS_MALFORMED, NTS_OFF) are the same as prepare's.
 */
NTSNTP_EXTERN ntsntp_server_verdict
ntsntp_server_parse(const ntsntp_server *srv, const uint8_t *req, size_t len,
                    uint64_t rx_ts, ntsntp_server_ctx *ctx);

/*
 * The expensive half of prepare, for a context from ntsntp_server_parse:
 * if ctx->nts_pending is set and the verdict is still RESPOND, opens the
 * cookie, verifies the authenticator, seals the new cookies and picks the
 * response nonce; the verdict becomes RESPOND (ctx->nts set), RESPOND_NAK
 * (BAD_COOKIE, UNKNOWN_KEY, AUTH_FAILED) or DROP (NTS_MALFORMED, INTERNAL,
 * or AUTH_FAILED without a Unique Identifier).  Otherwise (plain request,
 * or a verdict already changed by the caller, e.g. by
 * ntsntp_server_ctx_ratelimit) it does nothing.  Returns ctx->verdict.
 */
NTSNTP_EXTERN ntsntp_server_verdict
ntsntp_server_authenticate(const ntsntp_server *srv, ntsntp_server_ctx *ctx);

/*
 * Turns a RESPOND verdict into a RATE KoD (rate limiter's decision, made
 * after parse, or after prepare, and before finish).  NTS requests get no
 * KoD: they are dropped (the verdict becomes DROP), since an NTS client
 * ignores unauthenticated responses (an NTS NAK aside), a KoD RATE would
 * only help spoofers, and an authenticated one would cost the AES-SIV work
 * that limiting is meant to save.  Called after parse it leaves nothing for
 * ntsntp_server_authenticate to do.
 */
NTSNTP_EXTERN void ntsntp_server_ctx_ratelimit(ntsntp_server_ctx *ctx);

/*
 * Writes the response with transmit timestamp |tx_ts| into |out|.  The
 * clock state is read here; its reference time is capped at |tx_ts|, so a
 * clock update published after the caller read its transmit time never
 * yields a reference time later than the transmit time (impossible data,
 * which clients may reject).
 * Returns its length (<= ctx->req_len), or NOBUF, STATE (verdict DROP, or
 * an NTS request parsed but not authenticated), CRYPTO.  Wipes the keys in
 * |ctx|.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_server_finish(const ntsntp_server *srv,
                                                ntsntp_server_ctx *ctx,
                                                uint64_t tx_ts, uint8_t *out,
                                                size_t outlen);

/*
 * Interleaved mode (RFC 9769 sec. 2, chrony's server side).
 *
 * A server can only put into a response the time it reads before sending
 * it; the time the kernel (or the network card) actually sent it is known
 * only afterwards.  In interleaved mode the server sends that measured
 * time in its next response to the same client.  The runtime keeps, per
 * client, the receive timestamp of the client's last request and the
 * measured transmit timestamp of the response to it:
 */
typedef struct ntsntp_xleave_state {
  uint64_t rx; /* served receive timestamp of the last request; 0: none */
  uint64_t tx; /* measured transmit timestamp of its response; 0: none */
} ntsntp_xleave_state;

/*
 * Judges a parsed request (verdict RESPOND, NTS pending or not) against
 * its client's state |st| and records the request in |st|.
 *
 * The request asks for interleaved mode when its origin timestamp equals
 * st->rx (the receive timestamp our previous response to it carried) and
 * its receive timestamp differs from its transmit timestamp; a client in
 * basic mode echoes our transmit timestamp instead (or sends zeros), so
 * only a client that asked is ever answered interleaved.  If it asks and
 * st->tx holds a measured transmit time, ctx->xleave is set: finish writes
 * origin = the request's receive field, receive = this request's receive
 * time, transmit = st->tx.  If it asks, ctx->want_tx_ts is set too: the
 * runtime should measure this response's transmit time and give it to
 * ntsntp_xleave_state_tx.  Either way st->rx becomes this request's
 * receive time and st->tx 0 (not measured yet).
 *
 * Returns ctx->want_tx_ts.  Other verdicts are left alone (returns 0, |st|
 * unchanged): a dropped or rate-limited request changes nothing.  Call
 * before finish; a later ntsntp_server_ctx_ratelimit turns a RESPOND into
 * a KoD, which is never interleaved.
 * version-added: 0.2.0
 */
NTSNTP_EXTERN int ntsntp_server_ctx_xleave(ntsntp_server_ctx *ctx,
                                           ntsntp_xleave_state *st);

/*
 * Stores |tx|, the measured transmit time of the response to the request
 * received at |rx|, if that request is still the client's last one
 * (st->rx == rx): a timestamp arriving late, after a newer request, is
 * dropped rather than paired with the wrong receive time.  Returns 1 if
 * stored, 0 otherwise (also for |tx| or |rx| 0).
 * version-added: 0.2.0
 */
NTSNTP_EXTERN int ntsntp_xleave_state_tx(ntsntp_xleave_state *st, uint64_t rx,
                                         uint64_t tx);

/* Wipes |ctx| without answering (after a DROP decided by the caller). */
NTSNTP_EXTERN void ntsntp_server_ctx_clear(ntsntp_server_ctx *ctx);

/* Counters a runtime keeps per worker and merges on read. */
typedef struct ntsntp_server_stats {
  uint64_t received;
  uint64_t responded; /* all responses, NAKs and KoDs included */
  uint64_t dropped;   /* sum of drops[] */
  uint64_t nts_authenticated;
  uint64_t naks;
  uint64_t kods;
  uint64_t cookies_issued;
  uint64_t rx_kernel_ts;
  uint64_t rx_daemon_ts;
  uint64_t tx_errors; /* responses that could not be sent */
  uint64_t reasons[NTSNTP_REASON_COUNT];
  /* Interleaved mode: responses sent interleaved, and transmit timestamps
   * measured by the kernel (software) or the network card for responses
   * to clients that asked for it. */
  uint64_t xleave;
  uint64_t tx_kernel_ts;
  uint64_t tx_hw_ts;
  uint64_t rx_hw_ts; /* receive timestamps from the network card */
} ntsntp_server_stats;

/* Accounts one request judged by prepare (and finished, if answered). */
NTSNTP_EXTERN void ntsntp_server_stats_count(ntsntp_server_stats *st,
                                             const ntsntp_server_ctx *ctx);

/* dst += src, field by field. */
NTSNTP_EXTERN void ntsntp_server_stats_add(ntsntp_server_stats *dst,
                                           const ntsntp_server_stats *src);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_SERVER_H */
