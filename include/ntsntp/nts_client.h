/*
 * libntsntp: a complete NTS client, sans I/O (RFC 8915).
 *
 * One object follows one NTS server through its whole life: NTS-KE for
 * keys and cookies, the cookie jar, Cookie Placeholders to keep it full,
 * NTS-KE again when the jar is empty, on an NTS NAK and when the keys are
 * old, with exponential back-off after failures.  It never reads a clock
 * and never does I/O: the caller moves bytes over its own sockets (a
 * blocking program, epoll, libuv) and passes timestamps in.
 *
 *   ntsntp_nts_client_settings_default(&s);
 *   s.server = "time.example.com";
 *   ntsntp_nts_client_new(&c, &s, err, sizeof(err));
 *   loop:
 *     w = ntsntp_nts_client_want(c, now_ms);
 *     if (w & NTSNTP_NTS_WANT_KE):    connect TCP to s.server:ke_port, then
 *       ntsntp_nts_client_ke_begin(c, now_ms);
 *       while KE runs: ke_write -> send, recv -> ke_read (0 bytes: EOF)
 *       ntsntp_nts_client_ke_end(c, now_ms) once ke_want has DONE or CLOSE
 *       (a TCP connect failure: ntsntp_nts_client_ke_failed)
 *     if (w & NTSNTP_NTS_WANT_NTP):   when the caller wants a sample,
 *       n = ntsntp_nts_client_request(c, now_ms, buf, sizeof(buf));
 *       t1 = clock; send to ntsntp_nts_client_ntp_server(c, &port)
 *       response at t4: ntsntp_nts_client_response(c, ..., t1, t4, ...)
 *       no response by ntsntp_nts_client_expiry: ntsntp_nts_client_timeout
 *
 * A runtime with transports of its own (libntsntp's uv queries) passes
 * their outcomes instead: ntsntp_nts_client_ke_result or _ke_failed for
 * NTS-KE, and ntsntp_nts_client_request_keys / _request_done around an
 * NTP request it builds and sends itself.
 *
 * |now_ms| is any monotonic millisecond clock; t1 and t4 are NTP-64 times
 * of the clock the caller measures (see client.h).  One request is
 * outstanding at a time.  Not thread-safe: one thread per object.
 */
#ifndef NTSNTP_NTS_CLIENT_H
#define NTSNTP_NTS_CLIENT_H

#include "ntsntp/client.h"
#include "ntsntp/ke.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_nts_client_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* NTS-KE server: DNS name or IP literal, also the TLS name (required). */
  const char *server;
  /* PEM file of trusted CAs; NULL: the system trust store. */
  const char *ca_file;
  /* Trusted CAs in memory (PEM, copied), used instead of |ca_file|. */
  const uint8_t *ca_pem;
  size_t ca_pem_len;
  /* Optional certificate hook (ke.h, ntsntp_ke_verify_fn). */
  ntsntp_ke_verify_fn verify;
  void *verify_user;
  /* Non-zero: ignore certificate validity periods (clock not set yet). */
  int skip_time_checks;
  /* AEADs to offer, in preference order (default: what ntsntp_ke_client
   * offers). */
  int aeads[NTSNTP_KE_MAX_AEADS];
  size_t naeads;
  uint32_t ke_timeout_ms;  /* one NTS-KE exchange; default 5000 */
  uint32_t ntp_timeout_ms; /* one NTP request; default 1000 */
  /* New keys after this many seconds even when all is well; default
   * 1209600 (two weeks, chrony's nts refresh); 0: never. */
  uint32_t refresh_s;
  /* Back-off after a failed NTS-KE: doubles from min to max; default
   * 2000 and 3600000 (RFC 8915 sec. 4: clients back off). */
  uint32_t backoff_min_ms, backoff_max_ms;
  ntsntp_rand_fn rand; /* request randomness; NULL: ntsntp_rand_default */
  void *rand_user;
  const ntsntp_mem *mem; /* NULL: libc */
} ntsntp_nts_client_settings;

/* Fills |s| with the defaults above. */
NTSNTP_EXTERN void
ntsntp_nts_client_settings_default_versioned(int version,
                                             ntsntp_nts_client_settings *s);
#define ntsntp_nts_client_settings_default(S)                                  \
  ntsntp_nts_client_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

typedef struct ntsntp_nts_client ntsntp_nts_client;

/*
 * Creates a client.  The settings and their strings are copied.  On error
 * |errbuf| (may be NULL) says what to fix.
 * Errors: INVALID_ARG (no server, a server name over 255 bytes, no AEAD
 * this build supports, zero timeouts, backoff_min_ms > backoff_max_ms,
 * settings not filled by ntsntp_nts_client_settings_default), NOMEM.
 */
NTSNTP_EXTERN int ntsntp_nts_client_new(ntsntp_nts_client **pc,
                                        const ntsntp_nts_client_settings *s,
                                        char *errbuf, size_t errlen);

/* Frees |c|, wiping keys and cookies.  NULL is fine. */
NTSNTP_EXTERN void ntsntp_nts_client_del(ntsntp_nts_client *c);

/* What the client needs at |now_ms| (bits):
 *   WANT_KE       start an NTS-KE exchange (no keys, the jar is empty,
 *                 a NAK, or the keys are due for refresh) - the back-off
 *                 after a failure has passed
 *   WANT_KE_IO    an NTS-KE exchange runs: see ntsntp_nts_client_ke_want
 *   WANT_NTP      a request can be sent now (keys and a cookie, none
 *                 outstanding)
 *   WAIT_NTP      a request is outstanding (response or timeout pending)
 * 0: nothing until ntsntp_nts_client_expiry. */
#define NTSNTP_NTS_WANT_KE 0x1u
#define NTSNTP_NTS_WANT_KE_IO 0x2u
#define NTSNTP_NTS_WANT_NTP 0x4u
#define NTSNTP_NTS_WAIT_NTP 0x8u
NTSNTP_EXTERN unsigned ntsntp_nts_client_want(const ntsntp_nts_client *c,
                                              uint64_t now_ms);

/* The next time (monotonic ms) something is due: the NTS-KE or NTP
 * deadline, or the end of the back-off; UINT64_MAX if none. */
NTSNTP_EXTERN uint64_t ntsntp_nts_client_expiry(const ntsntp_nts_client *c);

/*
 * Handles the deadlines passed at |now_ms|: an NTS-KE exchange that took
 * too long fails (back-off), an NTP request without answer is given up
 * (its cookie is spent).  Returns TIMEOUT if something expired, else 0.
 */
NTSNTP_EXTERN int ntsntp_nts_client_handle_expiry(ntsntp_nts_client *c,
                                                  uint64_t now_ms);

/* ---- NTS-KE: the caller runs a TCP connection to server:4460 ---- */

/*
 * Starts an NTS-KE exchange over a connection the caller has just opened.
 * Errors: STATE (one already runs), BAD_CONFIG (the trust store cannot be
 * loaded; ntsntp_nts_client_errtext says why; back-off), TLS, NOMEM.
 */
NTSNTP_EXTERN int ntsntp_nts_client_ke_begin(ntsntp_nts_client *c,
                                             uint64_t now_ms);

/* Bytes to send on the connection (ntsntp_ke_client_write). */
NTSNTP_EXTERN ntsntp_ssize ntsntp_nts_client_ke_write(ntsntp_nts_client *c,
                                                      uint8_t *out,
                                                      size_t outlen);

/* Bytes received (|len| 0: the peer closed).  Returns 0, or the error
 * ntsntp_ke_client_read gives (the exchange has then failed: call
 * ntsntp_nts_client_ke_end). */
NTSNTP_EXTERN int ntsntp_nts_client_ke_read(ntsntp_nts_client *c,
                                            const uint8_t *in, size_t len);

/* NTSNTP_KE_WANT_READ/WRITE/DONE/CLOSE of the exchange; 0 if none runs. */
NTSNTP_EXTERN unsigned ntsntp_nts_client_ke_want(const ntsntp_nts_client *c);

/*
 * Ends the exchange (close the connection after sending what ke_write
 * still gives).  On success the keys and cookies replace the old ones and
 * the back-off is reset.  Returns 0, or why it failed (the errors of
 * ntsntp_ke_client_result; STATE if none ran or it is not finished: it is
 * then abandoned).  A failure starts or doubles the back-off.
 */
NTSNTP_EXTERN int ntsntp_nts_client_ke_end(ntsntp_nts_client *c,
                                           uint64_t now_ms);

/* The caller could not connect (or lost the connection before the
 * exchange began): counts as a failed NTS-KE (back-off).  |why| (may be
 * NULL) is kept for ntsntp_nts_client_errtext.  The caller may try the
 * next address of the name next time. */
NTSNTP_EXTERN void ntsntp_nts_client_ke_failed(ntsntp_nts_client *c,
                                               uint64_t now_ms,
                                               const char *why);

/*
 * The result of an NTS-KE exchange the caller ran by other means (e.g.
 * ntsntp_uv_ke_query, which resolves, connects and gives kernel-level
 * errors): taken as a successful ntsntp_nts_client_ke_end, so the keys and
 * cookies replace the old ones and the back-off is reset.  |r| is copied;
 * the caller wipes it (ntsntp_ke_result_clear).  An empty ntp_server means
 * the NTS-KE server, a zero ntp_port 123.  A failed exchange goes to
 * ntsntp_nts_client_ke_failed instead.
 * Errors (nothing changes): STATE (an exchange of ke_begin runs),
 * INVALID_ARG (NULL |r|, an AEAD this build does not support, keys not of
 * its length, no cookies, a cookie empty or longer than
 * NTSNTP_COOKIE_MAX_LEN, which no NTP request can carry).
 */
NTSNTP_EXTERN int ntsntp_nts_client_ke_result(ntsntp_nts_client *c,
                                              uint64_t now_ms,
                                              const ntsntp_ke_result *r);

/* Drops the keys and cookies (wiped) and abandons an outstanding request,
 * so that the next want is WANT_KE (after the back-off, if one runs):
 * for a caller that wants fresh keys now, e.g. the server stopped
 * answering, or it does not send with old keys while it refreshes them.
 * Counters are kept. */
NTSNTP_EXTERN void ntsntp_nts_client_forget(ntsntp_nts_client *c);

/* ---- NTP ---- */

/* Where to send NTP requests: the Server Negotiation record's name, else
 * the NTS-KE server; |*port| the Port Negotiation record's, else 123.
 * NULL before the first successful NTS-KE. */
NTSNTP_EXTERN const char *ntsntp_nts_client_ntp_server(
    const ntsntp_nts_client *c, uint16_t *port);

/*
 * Builds an NTS request with the oldest cookie of the jar and as many
 * Cookie Placeholders as the jar misses.  Returns its length.
 * Errors: STATE (no keys or no cookie: NTS-KE first; or a request is
 * outstanding), NOBUF, CRYPTO.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_nts_client_request(ntsntp_nts_client *c,
                                                     uint64_t now_ms,
                                                     uint8_t *out,
                                                     size_t outlen);

/*
 * A datagram received from the NTP server, at local times |t1| (request
 * sent) and |t4| (this received).  Returns 0 with |*sample| filled (the
 * new cookies went into the jar), or:
 *   NAK       the server could not open our cookie: the keys are dropped
 *             and the next want is WANT_KE;
 *   KOD       a Kiss-o'-Death (sample->hdr.refid has the code);
 *   AUTH, MALFORMED, BAD_*: not our answer, dropped; the request is
 *             still outstanding;
 *   STATE     no request of ntsntp_nts_client_request outstanding.
 */
NTSNTP_EXTERN int ntsntp_nts_client_response(ntsntp_nts_client *c,
                                             const uint8_t *in, size_t len,
                                             uint64_t t1, uint64_t t4,
                                             ntsntp_client_sample *sample);

/* Keys, a cookie and the placeholder count for one NTS request that the
 * caller builds and sends by other means (ntsntp_client_request, or
 * ntsntp_uv_ntp_query with this one cookie and one attempt, which takes
 * kernel timestamps and runs interleaved mode).  The pointers are into
 * the client: valid until the next call on it. */
typedef struct ntsntp_nts_client_keys {
  int aead;
  size_t key_len; /* of c2s and s2c */
  const uint8_t *c2s, *s2c;
  const uint8_t *cookie; /* out of the jar already: spent */
  size_t cookie_len;
  unsigned placeholders; /* Cookie Placeholders to ask for (0..7) */
} ntsntp_nts_client_keys;

/*
 * ntsntp_nts_client_request for a request built elsewhere: takes the
 * oldest cookie out of the jar (spent whatever happens, as there) and
 * makes the request outstanding until ntsntp_nts_client_request_done or
 * its deadline (ntp_timeout_ms; handle_expiry counts a timeout).
 * Errors: STATE (no keys or no cookie: NTS-KE first; or a request is
 * outstanding).
 */
NTSNTP_EXTERN int ntsntp_nts_client_request_keys(ntsntp_nts_client *c,
                                                 uint64_t now_ms,
                                                 ntsntp_nts_client_keys *rk);

/*
 * How the request of ntsntp_nts_client_request_keys ended, |status| as
 * ntsntp_client_response's (or the transport's):
 *   0        |sample| is the authenticated answer: its cookies go into
 *            the jar;
 *   NAK      the keys and cookies are dropped, the next want is WANT_KE;
 *   TIMEOUT  no answer: counted in timeouts (the cookie stays spent);
 *   others   (KOD, IO, ...) the request is over, nothing else changes.
 * Returns 0, or STATE (no request of request_keys outstanding),
 * INVALID_ARG (status 0 without an authenticated |sample|: the request
 * is over, its cookies are not taken).
 */
NTSNTP_EXTERN int
ntsntp_nts_client_request_done(ntsntp_nts_client *c, int status,
                               const ntsntp_client_sample *sample);

/*
 * The outstanding request (of ntsntp_nts_client_request or _request_keys)
 * never left this host: the send failed, or the query failed before it
 * sent anything (an outcome with no requests).  Its cookie, never seen on
 * the wire, goes back into the jar as the next one to spend (dropped
 * instead if new keys came since); the request is over and is not
 * counted.  Returns 0, or STATE (no request outstanding).
 *
 * version-added: 1.0.0
 */
NTSNTP_EXTERN int ntsntp_nts_client_request_unsent(ntsntp_nts_client *c);

/* What the client holds, for logs and monitoring. */
typedef struct ntsntp_nts_client_info {
  int have_keys;
  int aead;                /* negotiated AEAD, 0 before NTS-KE */
  unsigned cookies;        /* in the jar */
  size_t cookie_len;       /* of the next cookie to spend (the oldest, as
                              chronyc's authdata CLen); 0: none */
  uint64_t ke_ok, ke_failed, naks, requests, responses, timeouts;
  uint64_t backoff_until_ms; /* 0: no back-off */
  uint64_t ke_time_ms;       /* now_ms of the last successful NTS-KE (if
                                ke_ok) */
  uint64_t ke_failed_run;    /* failed NTS-KEs since the last success */
} ntsntp_nts_client_info;

NTSNTP_EXTERN void ntsntp_nts_client_get_info(const ntsntp_nts_client *c,
                                              ntsntp_nts_client_info *info);

/* Why the last NTS-KE or request failed ("" if nothing failed). */
NTSNTP_EXTERN const char *
ntsntp_nts_client_errtext(const ntsntp_nts_client *c);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_NTS_CLIENT_H */
