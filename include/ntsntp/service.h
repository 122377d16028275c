/*
 * libntsntp runtime: a complete time server on one libuv loop.
 *
 * Wires the parts together the way ntsd runs them: the NTP workers
 * (uv.h), the NTS-KE threads (uv_ke.h), the cookie key ring with its
 * rotation timer and key file, the certificate with reload on request and
 * when the files change, and the clock being served.  An embedder gets the
 * whole server by filling the settings and calling start.
 *
 * SIGPIPE: a write to a connection the peer has closed raises SIGPIPE,
 * which ends the process unless handled (libuv leaves this to the
 * application).  The NTS-KE threads block it themselves; the control
 * socket and /metrics are written on the caller's |loop| thread, so a
 * program that serves them must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)),
 * as ntsd does.  The same holds for NTS-KE queries (uv_client.h).
 */
#ifndef NTSNTP_SERVICE_H
#define NTSNTP_SERVICE_H

#include <uv.h>

#include "ntsntp/access.h" /* access */
#include "ntsntp/privsep.h"
#include "ntsntp/server.h"
#include "ntsntp/upstream.h"
#include "ntsntp/uv.h"
#include "ntsntp/uv_ke.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_uv_service ntsntp_uv_service;

/* What an instance serves (NTS_ROLE): a fleet may split NTS-KE from NTP. */
typedef enum ntsntp_uv_role {
  NTSNTP_ROLE_ALL = 0, /* NTP, NTS-authenticated NTP and NTS-KE */
  NTSNTP_ROLE_KE,      /* NTS-KE only; clients are sent to ntp_server_name */
  NTSNTP_ROLE_NTP      /* NTP and NTS-authenticated NTP only, no TLS */
} ntsntp_uv_role;

typedef struct ntsntp_uv_service_settings {
  int version; /* set by the _settings_default macro (common.h) */
  const char *const *listen; /* numeric addresses; none: all */
  size_t n_listen;
  /* HWTIMESTAMP: interfaces for hardware timestamps, comma-separated
   * ("eth0,eth1"; empty: none).  See ntsntp_uv_ntp_settings.hw_ifaces. */
  const char *hwtimestamp;
  uint16_t ntp_port;  /* default 123 */
  uint16_t ke_port;   /* default 4460 */
  unsigned workers;   /* NTP threads; 0: one per CPU */
  /* State: key ring file "ntskeys" (and later the drift file) live here. */
  const char *state_dir;
  /* NTS: certificate chains and their keys (PEM), comma-separated lists
   * of the same length (at most NTSNTP_KE_MAX_CERTS pairs): the client's
   * SNI and signature algorithms choose among them.  Both NULL/empty:
   * NTS off. */
  const char *cert, *key;
  /* Reads the certificate files (and makes clock adjustments) with the
   * rights the server gave up; see ntsntp_uv_service_privsep.  NULL: the
   * service reads the files itself and, with clock_control, adjusts the
   * clock itself. */
  ntsntp_privsep *privsep;
  uint32_t rotate_interval;   /* seconds; default 604800 */
  ntsntp_uv_role role;
  /* Shared master secret files, "CURRENT[,PREVIOUS]" (NTS_KEY_SECRET_FILE):
   * at least 32 random bytes each.  Instances with the same secret derive
   * the same cookie keys (no key file); cookies of PREVIOUS are still
   * accepted during a change-over.  NULL or "": random local keys. */
  const char *key_secret_file;
  int keys_reset;             /* a bad key file is replaced, not fatal */
  unsigned nts_processes;     /* NTS-KE threads; default 1 */
  unsigned max_connections;   /* NTS-KE sessions at once; default 512 */
  uint16_t ntp_port_advertised; /* Port Negotiation; 0: ntp_port */
  const char *ntp_server_name;  /* Server Negotiation; NULL: none */
  unsigned cert_poll_ms;      /* check cert/key files for changes; 5000 */
  /* Upstream servers (upstream.h syntax).  None, or the single item
   * "127.127.1.1": serve the local clock at |local_stratum| (chrony's
   * `local stratum N`) instead. */
  const char *const *servers;
  size_t n_servers;
  const char *ca_file; /* NTS upstream trust anchors; NULL: system store */
  int8_t minpoll, maxpoll; /* upstream poll range, log2 s; default 6, 10 */
  /* Discipline the system clock too (adjtimex; needs CAP_SYS_TIME): step
   * above 0.1 s in the first 3 updates (chrony's makestep 0.1 3), slew
   * otherwise, keep the RTC in sync (rtcsync).  Default 0: never touch it. */
  int clock_control;
  uint8_t local_stratum; /* default 10 */
  /* sources: begin (upstream.h, sync.h, leap.h) */
  unsigned maxsources;   /* addresses of a pool at once; default 4 */
  uint32_t holdover;     /* s served as synchronised with no source
                          * selectable; default 3600 */
  const char *leapseclist; /* leap-second list; NULL or "": none */
  ntsntp_leap_mode leap_mode; /* LEAPSECMODE; default system */
  int leap_smear;        /* LEAP_SMEAR; default 0 */
  /* `ntsctl reload sources`: re-reads the configuration and calls
   * ntsntp_uv_service_reload_sources (the daemon's SIGHUP path); writes
   * one line for the operator into |msg|, returns 0 or an error.  NULL:
   * the command answers that it is not available. */
  int (*reload_sources)(void *user, char *msg, size_t len);
  void *reload_user;
  /* sources: end */
  /* control: begin (control.h) */
  /* ntsctl's Unix socket: NULL: STATE_DIR/ntsd.sock; "" or "none": none.
   * HTTP /metrics on "address:port" (numeric): NULL or "": off. */
  const char *control_socket;
  const char *metrics_listen;
  /* control: end */
  /* access: begin (access.h) */
  /* ALLOW / DENY: comma-separated networks ("all", "192.0.2.1",
   * "10.0.0.0/8", "2001:db8::/32"), chrony's allow/deny semantics (longest
   * prefix wins; "all" resets), for NTP and NTS-KE alike, checked before
   * any parsing or TLS.  allow NULL or "": all; deny NULL or "": none. */
  const char *allow, *deny;
  /* Per-client rate limits, defaults from ntsntp_ratelimit_settings_default
   * (NTP: interval 3, burst 8, leak 2, kod 0; NTS-KE: interval 6, kod 0).
   * Their max_bytes is ignored: see client_log_limit. */
  ntsntp_ratelimit_settings ratelimit, nts_ratelimit;
  /* Bytes for all client tables (CLIENT_LOG_LIMIT, default 524288):
   * NTS-KE gets an eighth, the NTP workers share the rest, each table at
   * least 1 KiB.  0: the default. */
  size_t client_log_limit;
  /* NTS-KE connections open at once per client (/32, IPv6 /64); default
   * 8; 0: no cap beyond max_connections. */
  unsigned max_connections_per_client;
  /* The same per network (IPv4 /24, IPv6 /56); default 32; 0: none. */
  unsigned max_connections_per_network;
  /* NTS-KE deadlines from accept (uv_ke.h): first byte (default 1000 ms;
   * 0: none) and whole request (default 2000 ms). */
  uint32_t nts_first_byte_timeout_ms, nts_request_timeout_ms;
  /* access: end */
  ntsntp_log_fn log;     /* must be thread-safe */
  void *log_user;
  /* refclock: REFCLOCKS, comma-separated entries each written as chrony's
   * refclock directive ("SOCK /run/ntsd/gps.sock refid GPS", refclock.h);
   * NULL or "": none.  Items 127.127.28.N of |servers| are SHM unit N. */
  const char *refclocks;
} ntsntp_uv_service_settings;

NTSNTP_EXTERN void
ntsntp_uv_service_settings_default_versioned(int version,
                                             ntsntp_uv_service_settings *s);
#define ntsntp_uv_service_settings_default(S)                                  \
  ntsntp_uv_service_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Loads keys and certificate, binds all sockets and starts the threads.
 * On error |errbuf| holds one line saying what failed and what to change.
 * Errors: INVALID_ARG, IO, BAD_KEYFILE, BAD_CONFIG, NOMEM.
 */
NTSNTP_EXTERN int ntsntp_uv_service_start(uv_loop_t *loop,
                                          const ntsntp_uv_service_settings *s,
                                          ntsntp_uv_service **out,
                                          char *errbuf, size_t errlen);

/*
 * Starts the privileged helper the service settings |s| call for
 * (privsep.h): it may read the NTS_CERT and NTS_KEY files, and with
 * clock_control it adjusts the clock.  Call it before
 * ntsntp_uv_service_start, while the process still has its start-up
 * rights, and put the result in s->privsep.  |user| is the one the server
 * will run as (ntsntp_drop_privileges); |seccomp| confines the helper.  Not root and no clock
 * control: there is nothing to separate, and |*out| is NULL.
 * Errors: those of ntsntp_privsep_start; BAD_CONFIG (the NTS_CERT and
 * NTS_KEY lists differ in length or hold too many pairs).
 */
NTSNTP_EXTERN int
ntsntp_uv_service_privsep(const ntsntp_uv_service_settings *s,
                          const char *user, int seccomp, ntsntp_privsep **out,
                          char *errbuf, size_t errlen);

/*
 * Reloads the certificates and keys (SIGHUP).  On failure the old ones stay
 * in use and the error is logged.  Returns 0 or the load error.
 */
NTSNTP_EXTERN int ntsntp_uv_service_reload(ntsntp_uv_service *svc);

/*
 * Applies new source settings without a restart (ntsntp_uv_upstream_reload):
 * |s|'s servers, n_servers, maxsources, leapseclist and ca_file; sources
 * of unchanged items keep their state.  |msg| gets one line saying what
 * changed or why nothing did.  Items 127.127.X.Y other than 127.127.1.1
 * (reference clocks) and a change to or from serving only the local clock
 * need a restart: said in |msg| and the log.
 * Errors: BAD_CONFIG (a malformed item; nothing changed), STATE (needs a
 * restart, see above), INVALID_ARG.
 */
NTSNTP_EXTERN int
ntsntp_uv_service_reload_sources(ntsntp_uv_service *svc,
                                 const ntsntp_uv_service_settings *s,
                                 char *msg, size_t len);

typedef struct ntsntp_uv_service_stats {
  ntsntp_server_stats ntp;
  ntsntp_uv_ke_stats ke;
  int nts_enabled;
  uint64_t key_rotations;
  uint64_t cert_reloads;
} ntsntp_uv_service_stats;

/* Counters of the NTP and NTS-KE parts (zeroes for a part not running);
 * from the loop's thread. */
NTSNTP_EXTERN void ntsntp_uv_service_get_stats(const ntsntp_uv_service *svc,
                                               ntsntp_uv_service_stats *st);

/* The upstream sync core, or NULL in local clock mode. */
NTSNTP_EXTERN const ntsntp_sync *
ntsntp_uv_service_sync(const ntsntp_uv_service *svc);

/* Port actually bound for listen address |idx| (tests use port 0), as
 * ntsntp_uv_ntp_port and ntsntp_uv_ke_port return it; 0 when the part
 * (NTP or NTS-KE) is not running or |idx| is out of range. */
NTSNTP_EXTERN uint16_t ntsntp_uv_service_ntp_port(const ntsntp_uv_service *svc,
                                                  size_t idx);
NTSNTP_EXTERN uint16_t ntsntp_uv_service_ke_port(const ntsntp_uv_service *svc,
                                                 size_t idx);

/*
 * Saves the key ring, stops everything and frees |svc|; |done| runs on the
 * loop when all handles are closed.
 */
NTSNTP_EXTERN void ntsntp_uv_service_stop(ntsntp_uv_service *svc,
                                          void (*done)(void *user),
                                          void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_SERVICE_H */
