/*
 * libntsntp: one NTP client exchange (request, response, sample), sans I/O,
 * plain or NTS-authenticated (RFC 8915 sec. 5).
 *
 *   ntsntp_client_exchange ex;
 *   n = ntsntp_client_request(&ex, &params, buf, sizeof(buf));
 *   t1 = local clock; send(buf, n)
 *   ... receive resp at local time t4 (kernel timestamp if possible) ...
 *   rv = ntsntp_client_response(&ex, resp, len, t1, t4, &sample);
 *
 * The request's transmit timestamp is random (RFC 9109 / chrony), so a
 * spoofer cannot guess it; the real send time t1 stays local.
 */
#ifndef NTSNTP_CLIENT_H
#define NTSNTP_CLIENT_H

#include "ntsntp/cookie.h"
#include "ntsntp/pkt.h"
#include "ntsntp/ts.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_CLIENT_UID_LEN 32
#define NTSNTP_CLIENT_MAX_COOKIES 8

/*
 * Interleaved mode (RFC 9769; chrony's `xleave`), client side.  What the
 * last answered exchange with this server left: the request's send time,
 * the server's receive time for it, and our receive time of the response.
 * All zero: nothing yet (the next request is a basic one).  Kept by the
 * caller from one poll to the next (ntsntp_client_xleave_update).
 *
 * An interleaved request sends t2 as origin and t4 as receive timestamp.
 * A server that supports the mode answers with origin = our t4 and, as
 * transmit timestamp, the time its previous response to us actually left
 * (measured by its kernel or network card); the sample is then the
 * previous exchange (t1, t2, that transmit time, t4), whose four
 * timestamps are all measured.  A server that does not (or that lost our
 * state) answers in basic mode, which is taken as usual.
 * version-added: 0.2.0
 */
typedef struct ntsntp_client_xleave {
  uint64_t t1; /* send time of the last answered request (kernel if any) */
  uint64_t t2; /* the server's receive timestamp for it */
  uint64_t t4; /* our receive time of its response */
} ntsntp_client_xleave;

/* Keys and a cookie for one NTS request (from NTS-KE or earlier replies). */
typedef struct ntsntp_client_params {
  int8_t poll;
  ntsntp_rand_fn rand; /* NULL: ntsntp_rand_default */
  void *rand_user;
  /* NTS: aead != 0 makes an authenticated request. */
  int aead;
  const uint8_t *c2s, *s2c; /* ntsntp_aead_key_len(aead) bytes each */
  const uint8_t *cookie;
  size_t cookie_len;
  unsigned placeholders; /* extra cookies asked for (0..7) */
  /* Interleaved mode: NULL or all zero sends a basic request. */
  const ntsntp_client_xleave *xleave;
} ntsntp_client_params;

/* State kept between request and response. */
typedef struct ntsntp_client_exchange {
  uint64_t tx_ts; /* random transmit timestamp sent */
  int aead;       /* 0: plain NTP */
  uint8_t s2c[NTSNTP_MAX_KEY_LEN];
  uint8_t uid[NTSNTP_CLIENT_UID_LEN];
  size_t cookie_len;
  /* Interleaved request: the origin an interleaved response must carry
   * (our t4 sent as receive timestamp; 0: a basic request), and the
   * previous exchange it completes. */
  uint64_t xl_org;
  ntsntp_client_xleave xl;
} ntsntp_client_exchange;

/* What one valid response says. */
typedef struct ntsntp_client_sample {
  ntsntp_pkt_hdr hdr;
  uint64_t t1, t2, t3, t4; /* local send, server rx, server tx, local rx */
  double offset;           /* server - local, seconds */
  double delay;            /* round trip minus server time, seconds */
  double root_delay, root_disp;
  int authenticated;
  /* 1: an interleaved response; t1..t4 are the previous exchange's, with
   * the server's measured transmit time as t3. */
  int interleaved;
  unsigned n_cookies;
  size_t cookie_len[NTSNTP_CLIENT_MAX_COOKIES];
  uint8_t cookies[NTSNTP_CLIENT_MAX_COOKIES][NTSNTP_COOKIE_MAX_LEN];
} ntsntp_client_sample;

/*
 * Builds a mode 3 request into |out|.  Returns its length.
 * Errors: INVALID_ARG (bad NTS parameters), NOBUF, CRYPTO.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_client_request(
    ntsntp_client_exchange *ex, const ntsntp_client_params *p, uint8_t *out,
    size_t outlen);

/*
 * Checks a response against |ex| and fills |s|.  |t1| is the local send
 * time and |t4| the local receive time (NTP-64).
 * Errors:
 *   STATE      no request outstanding (a response was already taken)
 *   TRUNCATED, BAD_EF, BAD_MODE, BAD_VERSION  malformed: ignore it
 *   MALFORMED  origin timestamp does not match (bogus or replayed), or an
 *              interleaved transmit time before the receive time: ignore
 *   AUTH       NTS response missing or failing authentication: ignore
 *   NAK        NTS NAK with our Unique Identifier: get new cookies (NTS-KE)
 *   KOD        Kiss-o'-Death (s->hdr.refid holds the code; RATE: back off,
 *              DENY/RSTR: stop using the server)
 * On success, s->hdr.leap may still be NTSNTP_LEAP_UNSYNC: the caller
 * decides whether the server is usable.
 */
NTSNTP_EXTERN int ntsntp_client_response(ntsntp_client_exchange *ex,
                                         const uint8_t *resp, size_t len,
                                         uint64_t t1, uint64_t t4,
                                         ntsntp_client_sample *s)
    NTSNTP_WARN_UNUSED;

/*
 * After a response accepted by ntsntp_client_response (basic or
 * interleaved) to a request sent at |t1| and answered at |t4|: makes |xl|
 * the state for the next interleaved request.
 * version-added: 0.2.0
 */
NTSNTP_EXTERN void ntsntp_client_xleave_update(ntsntp_client_xleave *xl,
                                               const ntsntp_client_sample *s,
                                               uint64_t t1, uint64_t t4);

/* Wipes the keys kept in |ex|. */
NTSNTP_EXTERN void ntsntp_client_exchange_clear(ntsntp_client_exchange *ex);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_CLIENT_H */
