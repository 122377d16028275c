/*
 * libntsntp runtime: the NTS-KE server over TCP on libuv.
 *
 * TLS work runs on |threads| worker threads, each with its own libuv loop,
 * its own ntsntp_ke_server and its own SO_REUSEPORT listening socket per
 * address, so a KE storm never touches the NTP workers' loops.  At most
 * |max_connections| sessions are open at once across all threads; excess
 * connections are accepted and closed at once, and counted as dropped.
 */
#ifndef NTSNTP_UV_KE_H
#define NTSNTP_UV_KE_H

#include <uv.h>

#include "ntsntp/ke.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_uv_ke ntsntp_uv_ke;

typedef struct ntsntp_uv_ke_settings {
  const char *const *listen; /* addresses; none: "::" (v6 only) + "0.0.0.0" */
  size_t n_listen;
  uint16_t port;            /* 0 picks one (tests) */
  unsigned threads;         /* NTS_PROCESSES; default 1 */
  unsigned max_connections; /* NTS_MAX_CONNECTIONS; default 512 */
  /* Template for each thread's ntsntp_ke_server (creds, keyring, ports,
   * deadline).  The creds reference is taken by each thread's server. */
  ntsntp_ke_server_settings ke;
  /* Optional: refuse a peer before any TLS work (access control, KE rate
   * limiting).  Called on worker threads; must be thread-safe.  Return 0
   * to close the connection at once (counted as dropped). */
  int (*accept)(void *user, const struct sockaddr *peer);
  void *accept_user;
  /* Optional: called once for every connection |accept| let through, when
   * it is closed (on the thread that accepted it, or on the caller's during
   * stop), with the same |accept_user| and address; lets |accept| count
   * open connections per client.  NULL: no call. */
  void (*release)(void *user, const struct sockaddr *peer);
  ntsntp_log_fn log; /* called from worker threads */
  void *log_user;
} ntsntp_uv_ke_settings;

typedef struct ntsntp_uv_ke_stats {
  uint64_t accepted; /* connections given a session */
  uint64_t dropped;  /* refused: over the limit or by |accept| */
  uint64_t active;   /* sessions open now */
  ntsntp_ke_server_stats ke; /* summed over threads */
} ntsntp_uv_ke_stats;

NTSNTP_EXTERN void ntsntp_uv_ke_settings_default(ntsntp_uv_ke_settings *s);

/*
 * Binds every listening socket (before returning, so the caller may drop
 * privileges next) and starts the threads.
 * Errors: INVALID_ARG (bad address or settings), IO (socket or bind failed;
 * |errbuf| says which address and why), NOMEM.
 */
NTSNTP_EXTERN int ntsntp_uv_ke_start(uv_loop_t *loop,
                                     const ntsntp_uv_ke_settings *s,
                                     ntsntp_uv_ke **out, char *errbuf,
                                     size_t errlen);

/* Port bound for address |idx| (after port 0). */
NTSNTP_EXTERN uint16_t ntsntp_uv_ke_port(const ntsntp_uv_ke *ke, size_t idx);

/* New sessions use |creds| from now on (takes its own references). */
NTSNTP_EXTERN void ntsntp_uv_ke_set_creds(ntsntp_uv_ke *ke,
                                          ntsntp_ke_creds *creds);

/* Counters summed over the threads (consistent per thread). */
NTSNTP_EXTERN void ntsntp_uv_ke_get_stats(ntsntp_uv_ke *ke, ntsntp_uv_ke_stats *st);

/* Closes listeners and sessions, joins the threads, frees |ke|. */
NTSNTP_EXTERN void ntsntp_uv_ke_stop(ntsntp_uv_ke *ke);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UV_KE_H */
