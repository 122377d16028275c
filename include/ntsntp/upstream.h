/*
 * libntsntp runtime: following upstream servers (NTP_SERVERS) on libuv.
 *
 * Polls each server when ntsntp_sync says (iburst at start, then minpoll
 * to maxpoll), over plain NTP or NTS, feeds the outcomes to the sync core
 * (sync.h) and publishes what to serve to an ntsntp_server.  Names are
 * resolved asynchronously and again when a source stays unreachable for
 * eight polls.  NTS sources get their keys and cookies by NTS-KE, again
 * when the cookies run out, on an NTS NAK and every |nts_refresh| seconds,
 * with exponential back-off after failures (RFC 8915 sec. 4).  The drift
 * (frequency) is kept in STATE_DIR/ntsd.drift, read at start and written
 * hourly and at stop.  The system clock is never touched unless the sync
 * settings carry clock operations.
 *
 * Server syntax (one item of NTP_SERVERS):
 *   HOST            plain NTP on port 123
 *   HOST:PORT       plain NTP on PORT
 *   nts://HOST      NTS: NTS-KE on port 4460, then NTP where it says
 *   nts://HOST:PORT NTS with NTS-KE on PORT
 * HOST is a DNS name, an IPv4 address or an IPv6 address in brackets.
 */
#ifndef NTSNTP_UPSTREAM_H
#define NTSNTP_UPSTREAM_H

#include <uv.h>

#include "ntsntp/server.h"
#include "ntsntp/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_uv_upstream ntsntp_uv_upstream;

typedef struct ntsntp_uv_upstream_settings {
  const char *const *servers; /* items as above */
  size_t n_servers;
  const char *ca_file;       /* NTS trust anchors; NULL: system store */
  const char *state_dir;     /* for the drift file; NULL: no drift file */
  ntsntp_server *server;     /* gets the clock state to serve (required) */
  ntsntp_sync_settings sync; /* poll range, slew, clock control */
  uint32_t nts_refresh;      /* s between NTS-KEs; default 1209600 */
  uint32_t timeout_ms;       /* per request; default 1000 */
  ntsntp_log_fn log;
  void *log_user;
} ntsntp_uv_upstream_settings;

NTSNTP_EXTERN void
ntsntp_uv_upstream_settings_default(ntsntp_uv_upstream_settings *s);

/*
 * Checks the server list, reads the drift file and starts polling.
 * Errors: BAD_CONFIG (a server item is malformed; |errbuf| names it and
 * shows the syntax), INVALID_ARG, NOMEM.
 */
NTSNTP_EXTERN int ntsntp_uv_upstream_start(
    uv_loop_t *loop, const ntsntp_uv_upstream_settings *s,
    ntsntp_uv_upstream **out, char *errbuf, size_t errlen);

/* The sync core: ntsntp_sync_serve for the NTP workers' adjust hook,
 * tracking and source information for monitoring. */
NTSNTP_EXTERN const ntsntp_sync *
ntsntp_uv_upstream_sync(const ntsntp_uv_upstream *up);

/* Counts of NTS-KE exchanges (done, failed) and NTS NAKs received. */
typedef struct ntsntp_uv_upstream_stats {
  uint64_t ke_ok, ke_failed, naks, requests, samples, timeouts;
} ntsntp_uv_upstream_stats;

NTSNTP_EXTERN void ntsntp_uv_upstream_get_stats(const ntsntp_uv_upstream *up,
                                                ntsntp_uv_upstream_stats *st);

/* Writes the drift file, stops all queries and timers, frees |up| once
 * its handles are closed, then calls |done| (may be NULL). */
NTSNTP_EXTERN void ntsntp_uv_upstream_stop(ntsntp_uv_upstream *up,
                                           void (*done)(void *user),
                                           void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UPSTREAM_H */
