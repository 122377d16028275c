/*
 * libntsntp runtime: client queries on libuv.
 *
 * Two building blocks for clients and for a server that follows upstream
 * servers:
 *   - ntsntp_uv_ke_query: one NTS-KE exchange over TCP (RFC 8915 sec. 4):
 *     resolve, connect, TLS, keys and cookies;
 *   - ntsntp_uv_ntp_query: one NTP exchange over UDP (plain or NTS) with a
 *     kernel receive timestamp, a timeout and retries.
 * Both run on the caller's loop and report once, through a callback, with
 * an error text an operator can act on.  Neither touches the clock.
 *
 * Threads: call these functions from the thread running |loop|.  Callbacks
 * run on that thread.  A callback may start new queries, but must not
 * cancel the query it reports (that query is finished already).
 *
 * SIGPIPE: an NTS-KE server that closes while the query writes raises
 * SIGPIPE on the loop's thread; ignore it (signal(SIGPIPE, SIG_IGN)) as
 * libuv asks of every program that writes to sockets.
 *
 * Lifetime: a query handle is valid from a successful start until its
 * callback returns, or until it is cancelled.  After either, the library
 * frees it by itself once its libuv handles are closed, which needs the
 * loop to run (the libuv handle rule).
 */
#ifndef NTSNTP_UV_CLIENT_H
#define NTSNTP_UV_CLIENT_H

#include <sys/socket.h>

#include <uv.h>

#include "ntsntp/client.h"
#include "ntsntp/ke.h"
#include "ntsntp/nts_client.h"
#include "ntsntp/ts.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * NTS-KE over TCP
 * ====================================================================== */

typedef struct ntsntp_uv_ke_query ntsntp_uv_ke_query;

typedef struct ntsntp_uv_ke_query_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* KE server: DNS name or IP literal (required).  Also the TLS name. */
  const char *host;
  /* TCP port (default NTSNTP_KE_PORT, 4460). */
  uint16_t port;
  /* AF_UNSPEC (default), AF_INET or AF_INET6 for the resolution. */
  int family;
  /* Deadline for the whole query, resolution included (default 10000). */
  uint32_t timeout_ms;
  /* Time allowed to each address's TCP connect (default 3000); the next
     address is tried after it. */
  uint32_t connect_timeout_ms;
  /* The TLS client (CA file, time checks, AEADs, negotiation records).
     |ke.server_name| NULL means |host|; |ke.timeout_ms| is ignored. */
  ntsntp_ke_client_settings ke;
} ntsntp_uv_ke_query_settings;

/* What a finished NTS-KE query reports.  Valid only during the callback. */
typedef struct ntsntp_uv_ke_outcome {
  /* 0 on success, else:
   *   NTSNTP_ERR_IO           resolution or connection failed;
   *   NTSNTP_ERR_TIMEOUT      the deadline passed;
   *   NTSNTP_ERR_BAD_CONFIG   the trust store could not be loaded;
   *   NTSNTP_ERR_TLS          handshake (certificate, ALPN) or record error;
   *   NTSNTP_ERR_CLOSED       the server closed before answering;
   *   NTSNTP_ERR_NAK          the server sent an Error or Warning record;
   *   NTSNTP_ERR_UNSUPPORTED  no common protocol or AEAD;
   *   NTSNTP_ERR_BAD_RECORD   malformed response or no cookies;
   *   NTSNTP_ERR_NOMEM. */
  int status;
  /* One line: "Could not connect to X:4460: Connection refused", "TLS
   * handshake with X:4460 failed: The certificate is NOT trusted. ...",
   * "NTS-KE with X:4460 failed: Timeout reached".  "" on success. */
  const char *errtext;
  /* On success: keys, cookies and the negotiated NTP server and port.
   * Holds secrets: copy what you need, the library wipes it afterwards. */
  const ntsntp_ke_result *result;
  /* The KE server address connected to, or NULL. */
  const struct sockaddr *peer;
  /* On success without a Server Negotiation record: |peer| with the NTP
   * port, the address RFC 8915 sec. 4.1.7 says to use.  NULL when the
   * server named another NTP server (resolve result->ntp_server). */
  const struct sockaddr *ntp_addr;
} ntsntp_uv_ke_outcome;

typedef void (*ntsntp_uv_ke_query_cb)(void *user,
                                      const ntsntp_uv_ke_outcome *o);

/*
 * Fills |s| with the defaults: port 4460, AF_UNSPEC, 10 s deadline, 3 s
 * per connect, ntsntp_ke_client_settings_default.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void
ntsntp_uv_ke_query_settings_default_versioned(int version,
                                              ntsntp_uv_ke_query_settings *s);
#define ntsntp_uv_ke_query_settings_default(S)                                 \
  ntsntp_uv_ke_query_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Starts an NTS-KE query on |loop|: resolves s->host (uv_getaddrinfo),
 * connects to each address in turn, runs ntsntp_ke_client over the socket
 * and calls |cb| exactly once, never from within this call, unless the
 * query is cancelled first.  The settings and their strings are copied.
 * After the response, the library sends close_notify, shuts down its
 * sending side and reads until EOF (bounded) before it closes the socket,
 * so the kernel never resets the connection; |cb| does not wait for that.
 * |out| (may be NULL) receives the handle for ntsntp_uv_ke_query_cancel.
 * Errors (|cb| will not be called):
 *   NTSNTP_ERR_INVALID_ARG  NULL |loop|, |s|, s->host or |cb|, or settings
 *                           ntsntp_ke_client_new rejects (fix the call);
 *   NTSNTP_ERR_NOMEM        out of memory.
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on these
 * errors; failures after the start reach |cb| with their text.
 * Every other failure, a bad CA file included, reaches |cb|.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_uv_ke_query_start(uv_loop_t *loop,
                                           const ntsntp_uv_ke_query_settings *s,
                                           ntsntp_uv_ke_query_cb cb, void *user,
                                           ntsntp_uv_ke_query **out,
                                           char *errbuf, size_t errlen);

/*
 * Stops a query that has not reported yet: |cb| will not be called.  Do
 * not call it from, or after, the query's callback.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_uv_ke_query_cancel(ntsntp_uv_ke_query *q);

/* ======================================================================
 * NTP over UDP
 * ====================================================================== */

typedef struct ntsntp_uv_ntp_query ntsntp_uv_ntp_query;

typedef struct ntsntp_uv_ntp_query_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* NTP server: DNS name or IP literal; with |addr| set, used in messages
   * only.  One of |host| and |addr| is required. */
  const char *host;
  /* UDP port (default 123); ignored with |addr|. */
  uint16_t port;
  /* AF_UNSPEC (default), AF_INET or AF_INET6 for the resolution. */
  int family;
  /* Server address with port, skipping resolution (e.g. the KE outcome's
   * ntp_addr).  Copied.  NULL: resolve |host| and use the first address. */
  const struct sockaddr *addr;
  /* Wait for an answer per request (default 1000 ms). */
  uint32_t timeout_ms;
  /* Requests sent at most (default 3, at least 1).  With NTS each request
   * uses the next cookie, so at most |ncookies| are sent. */
  unsigned attempts;
  /* Poll exponent written into requests (default 6). */
  int8_t poll;
  /* NTS: |aead| != 0 authenticates the exchange with |c2s|/|s2c|
   * (ntsntp_aead_key_len(aead) bytes each) and one of |cookies| per request
   * (|ncookies| cookies of |cookie_len[i]| bytes).  Copied. */
  int aead;
  const uint8_t *c2s, *s2c;
  const uint8_t *const *cookies;
  const size_t *cookie_len;
  size_t ncookies;
  /* Extra cookies to ask for in the first request (0..7); each retry asks
   * for one more, to replace the cookie the lost request took. */
  unsigned placeholders;
  /* Randomness (NULL: ntsntp_rand_default). */
  ntsntp_rand_fn rand;
  void *rand_user;
  /* Interleaved mode (RFC 9769, chrony's xleave): non-NULL asks the
   * kernel for the transmit timestamp of each request (SO_TIMESTAMPING,
   * software) and, once |xleave| holds a previous exchange, sends
   * interleaved requests.  Feed the outcome's t1 and t4 to
   * ntsntp_client_xleave_update after each success.  Copied.  NULL:
   * basic mode, t1 read from CLOCK_REALTIME before the send.
   * version-added: 0.2.0 */
  const ntsntp_client_xleave *xleave;
} ntsntp_uv_ntp_query_settings;

/* What a finished NTP query reports.  Valid only during the callback. */
typedef struct ntsntp_uv_ntp_outcome {
  /* 0 on success, else:
   *   NTSNTP_ERR_TIMEOUT  no valid answer to any request;
   *   NTSNTP_ERR_KOD      Kiss-o'-Death (sample->hdr.refid holds the code);
   *   NTSNTP_ERR_NAK      NTS NAK: the cookies are stale, run NTS-KE again;
   *   NTSNTP_ERR_IO       resolution, socket or send failed;
   *   NTSNTP_ERR_NOMEM, NTSNTP_ERR_CRYPTO. */
  int status;
  /* One line, e.g. "No response from 127.0.0.1:123 (3 requests, timeout
   * 1000 ms)" or "127.0.0.1:123 sent Kiss-o'-Death RATE".  "" on success. */
  const char *errtext;
  /* status 0: the sample (authenticated set for NTS, new cookies in it);
   * KOD and NAK: the header only.  NULL otherwise. */
  const ntsntp_client_sample *sample;
  /* Where t4 came from (kernel, or the process when the kernel gave no
   * timestamp). */
  ntsntp_ts_source rx_source;
  /* The server address used, or NULL if resolution failed. */
  const struct sockaddr *peer;
  /* Requests sent, and NTS cookies spent by them (drop those). */
  unsigned requests;
  unsigned cookies_used;
  /* status 0: this exchange's send and receive times (NTP-64), and where
   * the send time came from (KERNEL: the kernel's transmit timestamp,
   * with |xleave| only).  sample->interleaved tells whether the sample
   * is the previous exchange completed in interleaved mode.
   * version-added: 0.2.0 */
  uint64_t t1, t4;
  ntsntp_ts_source tx_source;
} ntsntp_uv_ntp_outcome;

typedef void (*ntsntp_uv_ntp_query_cb)(void *user,
                                       const ntsntp_uv_ntp_outcome *o);

/*
 * Fills |s| with the defaults: port 123, AF_UNSPEC, 1000 ms, 3 attempts,
 * poll 6, plain NTP.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void
ntsntp_uv_ntp_query_settings_default_versioned(int version,
                                               ntsntp_uv_ntp_query_settings *s);
#define ntsntp_uv_ntp_query_settings_default(S)                                \
  ntsntp_uv_ntp_query_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Makes |s| an NTS request with what ntsntp_nts_client_request_keys gave:
 * its AEAD and keys, its one cookie (so one request is sent) and its
 * Cookie Placeholders.  |s| points into |k|, which points into the
 * client: start the query before the next call on the client (the
 * query copies them).  Report the outcome with ntsntp_uv_ntp_outcome_nts.
 */
NTSNTP_EXTERN void
ntsntp_uv_ntp_query_settings_nts(ntsntp_uv_ntp_query_settings *s,
                                 const ntsntp_nts_client_keys *k);

/*
 * Reports the outcome of a query made with ntsntp_uv_ntp_query_settings_nts
 * to the client |c| that gave its keys: ntsntp_nts_client_request_done
 * (new cookies into the jar, a NAK drops the keys), or, when the query
 * failed without sending a request, ntsntp_nts_client_request_unsent (the
 * cookie goes back).  Returns what that call returns.
 *
 * version-added: 1.0.0
 */
NTSNTP_EXTERN int ntsntp_uv_ntp_outcome_nts(ntsntp_nts_client *c,
                                            const ntsntp_uv_ntp_outcome *o);

/*
 * Starts one NTP exchange on |loop|.  The library opens a UDP socket
 * connected to the server, with SO_TIMESTAMPING (else SO_TIMESTAMPNS)
 * receive timestamps, reads t1 from CLOCK_REALTIME just before each send,
 * takes t4 from the kernel when it gives one, and accepts only a response
 * that ntsntp_client_response validates against the latest request
 * (others are ignored).  A request that times out is sent again, with a
 * fresh cookie for NTS.  |cb| is called exactly once, never from within
 * this call, unless the query is cancelled first.  |out| may be NULL.
 * Errors (|cb| will not be called):
 *   NTSNTP_ERR_INVALID_ARG  NULL |loop|, |s| or |cb|, neither host nor
 *                           addr, an unsupported AEAD, NTS without keys or
 *                           cookies, a cookie longer than
 *                           NTSNTP_COOKIE_MAX_LEN, placeholders > 7;
 *   NTSNTP_ERR_NOMEM        out of memory.
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on these
 * errors; failures after the start reach |cb| with their text.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_uv_ntp_query_start(
    uv_loop_t *loop, const ntsntp_uv_ntp_query_settings *s,
    ntsntp_uv_ntp_query_cb cb, void *user, ntsntp_uv_ntp_query **out,
    char *errbuf, size_t errlen);

/*
 * Stops a query that has not reported yet: |cb| will not be called.  Do
 * not call it from, or after, the query's callback.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_uv_ntp_query_cancel(ntsntp_uv_ntp_query *q);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UV_CLIENT_H */
