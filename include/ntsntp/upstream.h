/*
 * libntsntp runtime: following upstream servers (NTP_SERVERS) on libuv.
 *
 * Polls each server when ntsntp_sync says (iburst at start, then minpoll
 * to maxpoll), over plain NTP or NTS, feeds the outcomes to the sync core
 * (sync.h) and publishes what to serve to an ntsntp_server.  Names are
 * resolved asynchronously (or by the |resolve| hook).  A source that stays
 * unreachable for eight polls moves on: a plain HOST to the name's next
 * address (the name is resolved again after the last), an nts://HOST to a
 * new NTS-KE with a fresh resolution, a pool member is replaced by
 * another address of the pool (as is a pool member that is a falseticker
 * for four polls in a row).  NTS sources get their keys and cookies by NTS-KE, again
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
 *   pool://NAME[:PORT]         chrony's `pool`: up to |maxsources| of the
 *                              name's addresses (IPv4 and IPv6) at once,
 *                              each a source of its own, shown by address
 *   pool+nts://NAME[:KE-PORT]  the same, NTS-KE with each address (the
 *                              certificate must name NAME)
 *   127.127.1.1     chrony's `local`: the local clock, served at
 *                   |local_stratum| only while no source is selectable
 *                   (never polled)
 *   ITEM?xleave     any server or pool item in interleaved mode (RFC 9769,
 *                   chrony's xleave): kernel transmit timestamps of our
 *                   requests, and the server's measured transmit time of
 *                   its previous response (basic mode if it has none)
 * HOST is a DNS name, an IPv4 address or an IPv6 address in brackets.
 * At most NTSNTP_SYNC_MAX_SOURCES sources in all (pool members counted).
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
  int version; /* set by the _settings_default macro (common.h) */
  const char *const *servers; /* items as above */
  size_t n_servers;
  const char *ca_file;       /* NTS trust anchors; NULL: system store */
  const char *state_dir;     /* for the drift file; NULL: no drift file */
  ntsntp_server *server;     /* gets the clock state to serve (required) */
  ntsntp_sync_settings sync; /* poll range, slew, clock control */
  uint32_t nts_refresh;      /* s between NTS-KEs; default 1209600; 0: never */
  uint32_t timeout_ms;       /* per request; default 1000 */
  unsigned maxsources;       /* addresses of a pool at once (MAXSOURCES);
                              * 1..16, default 4 */
  uint8_t local_stratum;     /* for 127.127.1.1 in the list; default 10 */
  /* Leap-second list (LEAPSECLIST, leap.h); NULL or "": none.  Read at
   * start and reload; a missing file is only logged. */
  const char *leapseclist;
  /* Resolves |name| (not a literal address) into at most |max| addresses
   * (the port is the item's), returns how many (0: none) or a negative
   * NTSNTP_ERR_*.  Runs on the loop thread.  NULL: getaddrinfo, off the
   * loop thread (uv_getaddrinfo).  For tests and embedders with their own
   * resolver. */
  int (*resolve)(void *user, const char *name, struct sockaddr_storage *out,
                 size_t max);
  void *resolve_user;
  ntsntp_log_fn log;
  void *log_user;
  /* refclock: reference clocks that the refclock runtime adds to the sync
   * core (uv_refclock.h); with any, |n_servers| may be 0. */
  size_t n_refclocks;
} ntsntp_uv_upstream_settings;

NTSNTP_EXTERN void
ntsntp_uv_upstream_settings_default_versioned(int version,
                                              ntsntp_uv_upstream_settings *s);
#define ntsntp_uv_upstream_settings_default(S)                                 \
  ntsntp_uv_upstream_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Checks the server list, reads the drift file and starts polling.
 * Errors: BAD_CONFIG (a server item is malformed; |errbuf| names it and
 * shows the syntax), INVALID_ARG, NOMEM.
 */
NTSNTP_EXTERN int ntsntp_uv_upstream_start(
    uv_loop_t *loop, const ntsntp_uv_upstream_settings *s,
    ntsntp_uv_upstream **out, char *errbuf, size_t errlen);

/* What a reload changed (ntsntp_uv_upstream_reload). */
typedef struct ntsntp_uv_upstream_changes {
  unsigned added, removed, kept; /* NTP_SERVERS items */
} ntsntp_uv_upstream_changes;

/*
 * Applies a new server list without a restart (SIGHUP, ntsctl reload
 * sources): items of |s| that were in use before keep their sources and
 * all their state (filter, reach, NTS keys and cookies); the others are
 * removed or added.  Also takes |s|'s maxsources (pools fill up or shed
 * members), leapseclist (read again) and ca_file (for the next NTS-KE).
 * Every other field of |s| is ignored: those need a restart.  Changes are
 * logged.  |ch| (may be NULL) gets the counts.
 * Errors: BAD_CONFIG (an item is malformed, or too many: |errbuf| says
 * which; nothing was changed), INVALID_ARG.
 */
NTSNTP_EXTERN int ntsntp_uv_upstream_reload(ntsntp_uv_upstream *up,
                                            const ntsntp_uv_upstream_settings *s,
                                            ntsntp_uv_upstream_changes *ch,
                                            char *errbuf, size_t errlen);

/* The sync core: ntsntp_sync_serve for the NTP workers' adjust hook,
 * tracking and source information for monitoring. */
NTSNTP_EXTERN const ntsntp_sync *
ntsntp_uv_upstream_sync(const ntsntp_uv_upstream *up);

/* refclock: the same sync core for the reference clock runtime on the
 * same loop, which adds its sources and feeds their samples; after a
 * sample updated the clock model it calls ntsntp_uv_upstream_publish,
 * which hands the clock state to the server at once. */
NTSNTP_EXTERN ntsntp_sync *ntsntp_uv_upstream_sync_rw(ntsntp_uv_upstream *up);
NTSNTP_EXTERN void ntsntp_uv_upstream_publish(ntsntp_uv_upstream *up);

/* Counts of NTS-KE exchanges (done, failed) and NTS NAKs received. */
typedef struct ntsntp_uv_upstream_stats {
  uint64_t ke_ok, ke_failed, naks, requests, samples, timeouts;
} ntsntp_uv_upstream_stats;

NTSNTP_EXTERN void ntsntp_uv_upstream_get_stats(const ntsntp_uv_upstream *up,
                                                ntsntp_uv_upstream_stats *st);

/* monitoring: begin.  One source's NTS state and its last valid response,
 * as chronyc's `authdata` and `ntpdata` show them. */
typedef struct ntsntp_uv_upstream_source {
  char name[NTSNTP_SOURCE_NAME_LEN];
  char addr[64]; /* the NTP server's address; "" until known */
  uint16_t port; /* its NTP port; 0 until known */
  int nts;       /* an nts:// source */
  /* authdata */
  uint64_t key_id;    /* which keys: successful NTS-KEs so far (chronyc's
                         KeyID counts NTS contexts the same way) */
  int aead;           /* of the current keys; 0: none */
  unsigned key_len;   /* bytes of each key (c2s, s2c); 0: none */
  int64_t ke_ago;     /* s since the last successful NTS-KE; -1: never */
  uint64_t ke_tries;  /* NTS-KE attempts since the last success */
  uint64_t ke_total;  /* NTS-KE attempts, all */
  uint64_t naks;      /* NTS NAKs received */
  unsigned cookies;   /* cookies held */
  size_t cookie_len;  /* length of the next cookie to spend; 0: none */
  /* ntpdata: counters */
  uint64_t tx, rx, valid_rx; /* requests sent, responses, valid ones */
  uint64_t kernel_rx;        /* valid responses with a kernel RX stamp */
  /* ntpdata: the last valid response (have_sample) */
  int have_sample;
  ntsntp_pkt_hdr hdr;       /* leap, version, mode, stratum, poll, ... */
  double offset, delay;     /* s: server - local; round trip */
  double response_time;     /* s: server's t3 - t2 */
  int authenticated;        /* NTS-authenticated */
  int interleaved;          /* 0: basic mode (interleaved fills 1) */
  ntsntp_ts_source rx_source, tx_source; /* local stamps' origin */
  int64_t last_rx_ago;      /* s since it came; -1: none */
} ntsntp_uv_upstream_source;

/* Fills |out| for source |i|, the sync core's index (as
 * ntsntp_sync_source_info; pool members are sources of their own).
 * Errors: INVALID_ARG (|i| not a server source, e.g. out of range, a
 * removed pool member or a reference clock, or a NULL argument). */
NTSNTP_EXTERN int ntsntp_uv_upstream_source_get(const ntsntp_uv_upstream *up,
                                                unsigned i,
                                                ntsntp_uv_upstream_source *out);
/* monitoring: end */

/* Writes the drift file, stops all queries and timers, frees |up| once
 * its handles are closed, then calls |done| (may be NULL).  Queries it
 * cancelled may still be closing their sockets on the loop then (an NTS-KE
 * connection waits, bounded, for the server's EOF): run the loop until it
 * has nothing left (uv_run UV_RUN_DEFAULT) before uv_loop_close. */
NTSNTP_EXTERN void ntsntp_uv_upstream_stop(ntsntp_uv_upstream *up,
                                           void (*done)(void *user),
                                           void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UPSTREAM_H */
