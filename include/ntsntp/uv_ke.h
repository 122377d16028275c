/*
 * libntsntp runtime: the NTS-KE server over TCP on libuv.
 *
 * TLS work runs on |threads| worker threads, each with its own libuv loop,
 * its own ntsntp_ke_server and its own SO_REUSEPORT listening socket per
 * address, so a KE storm never touches the NTP workers' loops.
 *
 * Admission, for each new connection, before any TLS work:
 *   1. |accept| (access control, rate limit, per-client and per-network
 *      caps) may refuse it: closed at once, counted by reason.
 *   2. At most |max_connections| connections are open at once across all
 *      threads.  When all are taken, the newcomer does not wait: the thread
 *      that accepted it closes one of its own connections to make room,
 *      the first it finds in this order (oldest first within each group):
 *        - idle (nothing received yet), then partial (some bytes, but no
 *          complete TLS ClientHello yet), accepted 100 ms ago or more;
 *        - draining: answered, waiting for the client to close;
 *        - idle, then partial, ones younger than that (a real client may
 *          not have had the time to send its ClientHello);
 *        - handshaking: TLS under way, request not complete yet.
 *      A connection whose request is complete and whose response is being
 *      written is never closed for room.  When that thread has nothing
 *      to close, the newcomer is refused (counted as refused_full).
 * Deadlines, all from accept: the first byte within |first_byte_ms|, the
 * whole request within |ke.timeout_ms| (the session deadline; an
 * incomplete request is then answered with Error 1 if TLS is up), and
 * after the response the connection is drained for at most one second.
 * A TLS session is only created once a whole TLS record header (5 bytes)
 * has arrived, so idle connections and clients trickling bytes cost a
 * socket and no TLS state.  Each thread takes at most
 * 64 connections off its accept queue per loop iteration, so a flood
 * that reconnects as fast as it is closed cannot hold off the reads of
 * connections already open; the listen backlog is 4096 (capped by
 * net.core.somaxconn), so a burst does not make the kernel drop SYNs.
 */
#ifndef NTSNTP_UV_KE_H
#define NTSNTP_UV_KE_H

#include <uv.h>

#include "ntsntp/ke.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_uv_ke ntsntp_uv_ke;

/* What |accept| says of a new connection: 0 (NTSNTP_UV_KE_ADMIT) lets it
 * through, like every decision hook of the library.  Anything else closes
 * it at once and is counted under that reason (non-zero values outside
 * this list as NTSNTP_UV_KE_REFUSE). */
typedef enum ntsntp_uv_ke_verdict {
  NTSNTP_UV_KE_ADMIT = 0,       /* let it through */
  NTSNTP_UV_KE_REFUSE = 1,      /* access control (ALLOW / DENY), other */
  NTSNTP_UV_KE_RATELIMITED = 2, /* the client's NTS-KE rate limit */
  NTSNTP_UV_KE_CLIENT_FULL = 3, /* the client (/32, /64) holds its cap */
  NTSNTP_UV_KE_NETWORK_FULL = 4 /* its network (/24, /56) holds its cap */
} ntsntp_uv_ke_verdict;

typedef struct ntsntp_uv_ke_settings {
  int version; /* set by the _settings_default macro (common.h) */
  const char *const *listen; /* addresses; none: "::" (v6 only) + "0.0.0.0" */
  size_t n_listen;
  uint16_t port;            /* 0 picks one (tests) */
  unsigned threads;         /* NTS_PROCESSES; default 1 */
  unsigned max_connections; /* NTS_MAX_CONNECTIONS; default 512 */
  /* Close a connection that has sent nothing this long after accept
   * (NTS_FIRST_BYTE_TIMEOUT_MS); default 1000.  0, or a value at or above
   * |ke.timeout_ms|: the request deadline alone. */
  uint32_t first_byte_ms;
  /* Template for each thread's ntsntp_ke_server (creds, keyring, ports,
   * and |timeout_ms|: the whole request must arrive this long after
   * accept).  The creds reference is taken by each thread's server. */
  ntsntp_ke_server_settings ke;
  /* Optional: judge a peer before any TLS work (access control, KE rate
   * limiting, connection caps).  Called on worker threads; must be
   * thread-safe.  Returns an ntsntp_uv_ke_verdict: NTSNTP_UV_KE_ADMIT (0), or
   * the reason to close the connection at once (counted as dropped). */
  int (*accept)(void *user, const struct sockaddr *peer);
  void *accept_user;
  /* Optional: called once for every connection |accept| let through, when
   * it is closed or chosen to be closed (on the thread that accepted it,
   * or on the caller's during stop), with the same |accept_user| and
   * address; lets |accept| count open connections per client.  Always
   * before the next |accept| call on that thread.  NULL: no call. */
  void (*release)(void *user, const struct sockaddr *peer);
  ntsntp_log_fn log; /* called from worker threads */
  void *log_user;
} ntsntp_uv_ke_settings;

#define NTSNTP_UV_KE_LATENCY_BUCKETS 10
#define NTSNTP_UV_KE_LATENCY_BOUNDS                                            \
  {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0}

typedef struct ntsntp_uv_ke_stats {
  uint64_t accepted; /* connections let in (given one of the slots) */
  uint64_t dropped;  /* refused at once: the refused_* counters summed */
  uint64_t active;   /* connections open now */
  ntsntp_ke_server_stats ke; /* summed over threads */
  /* Refusals by reason. */
  uint64_t refused_denied;      /* |accept|: ALLOW / DENY (or other) */
  uint64_t refused_ratelimit;   /* |accept|: NTS-KE rate limit */
  uint64_t refused_client_cap;  /* |accept|: per-client cap */
  uint64_t refused_network_cap; /* |accept|: per-network cap */
  uint64_t refused_full; /* all slots taken, none of this thread's closable */
  /* Connections closed by the server before their request was complete. */
  uint64_t evicted;             /* to make room for a newcomer */
  uint64_t first_byte_timeouts; /* nothing received by first_byte_ms */
  uint64_t header_timeouts; /* not even a TLS record header (5 bytes) by
                             * the request deadline */
  /* (ke.timeouts counts those that missed the request deadline.) */
  uint64_t accept_errors; /* accept failed (uv_accept, no memory) */
  /* monitoring: sessions that ended well (response written), by the time
   * from accept to the response's last byte handed to the kernel.
   * latency_bucket[i] counts those in (bound[i-1], bound[i]] of
   * NTSNTP_UV_KE_LATENCY_BOUNDS (seconds); latency_count counts them all
   * (the slower ones too) and latency_sum adds their seconds. */
  uint64_t latency_bucket[NTSNTP_UV_KE_LATENCY_BUCKETS];
  uint64_t latency_count;
  double latency_sum;
} ntsntp_uv_ke_stats;

NTSNTP_EXTERN void
ntsntp_uv_ke_settings_default_versioned(int version, ntsntp_uv_ke_settings *s);
#define ntsntp_uv_ke_settings_default(S)                                       \
  ntsntp_uv_ke_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Binds every listening socket (before returning, so the caller may drop
 * privileges next) and starts the threads.  |loop| (required) is where
 * ntsntp_uv_ke_stop calls its |done|; on failure a handle on it is still
 * closing, so run the loop before closing it.
 * Errors: INVALID_ARG (bad address or settings), IO (socket or bind failed;
 * |errbuf| says which address and why), NOMEM.
 */
NTSNTP_EXTERN int ntsntp_uv_ke_start(uv_loop_t *loop,
                                     const ntsntp_uv_ke_settings *s,
                                     ntsntp_uv_ke **out, char *errbuf,
                                     size_t errlen);

/* Port bound for address |idx| of the listen list (after port 0).  With
 * no list, 0 is 0.0.0.0 and 1 is :: (the NTP workers' order); 0 for an
 * address not served (:: on a host without IPv6, which is skipped with a
 * warning instead of failing the start). */
NTSNTP_EXTERN uint16_t ntsntp_uv_ke_port(const ntsntp_uv_ke *ke, size_t idx);

/* New sessions use |creds| from now on (takes its own references). */
NTSNTP_EXTERN void ntsntp_uv_ke_set_creds(ntsntp_uv_ke *ke,
                                          ntsntp_ke_creds *creds);

/* Counters summed over the threads (consistent per thread). */
NTSNTP_EXTERN void ntsntp_uv_ke_get_stats(const ntsntp_uv_ke *ke,
                                          ntsntp_uv_ke_stats *st);

/*
 * Stops the service: each thread closes its listeners and sessions and
 * ends; then the threads are joined and |done| (may be NULL) is called
 * from the start's |loop| with |user|.  |ke| stays valid until |done|
 * returns and is freed right after.  Call once, from the loop's thread;
 * keep the loop running until |done|.  NULL |ke| does nothing.
 */
NTSNTP_EXTERN void ntsntp_uv_ke_stop(ntsntp_uv_ke *ke,
                                     void (*done)(void *user), void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UV_KE_H */
