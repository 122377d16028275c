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
} ntsntp_client_params;

/* State kept between request and response. */
typedef struct ntsntp_client_exchange {
  uint64_t tx_ts; /* random transmit timestamp sent */
  int aead;       /* 0: plain NTP */
  uint8_t s2c[NTSNTP_MAX_KEY_LEN];
  uint8_t uid[NTSNTP_CLIENT_UID_LEN];
  size_t cookie_len;
} ntsntp_client_exchange;

/* What one valid response says. */
typedef struct ntsntp_client_sample {
  ntsntp_pkt_hdr hdr;
  uint64_t t1, t2, t3, t4; /* local send, server rx, server tx, local rx */
  double offset;           /* server - local, seconds */
  double delay;            /* round trip minus server time, seconds */
  double root_delay, root_disp;
  int authenticated;
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
 *   MALFORMED  origin timestamp does not match (bogus or replayed): ignore
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

/* Wipes the keys kept in |ex|. */
NTSNTP_EXTERN void ntsntp_client_exchange_clear(ntsntp_client_exchange *ex);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_CLIENT_H */
