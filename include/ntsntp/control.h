/*
 * libntsntp runtime: the control interface (what ntsctl talks to) and the
 * optional Prometheus /metrics listener, both on the caller's libuv loop.
 *
 * Control socket: a Unix stream socket, mode 0660, one request per
 * connection.  Protocol version 1 (all lines end with "\n"):
 *
 *   request    NTSCTL/1 <command> [text|json]
 *              commands: tracking sources sourcestats selectdata authdata
 *                        ntpdata activity serverstats clients metrics
 *                        health
 *   success    NTSCTL/1 OK <length>      then exactly <length> bytes: the
 *                                         report (chronyc's layout in text,
 *                                         one JSON object in json, the
 *                                         Prometheus exposition for metrics
 *                                         text)
 *   failure    NTSCTL/1 ERR <code> <message>
 *              codes: bad-request, version, unknown-command, bad-format,
 *                     unavailable, internal
 *
 * The server closes the connection after the response.  A request longer
 * than NTSNTP_CTL_MAX_REQUEST bytes, or not complete within the timeout,
 * gets no response: the connection is closed.  When a new client finds
 * max_clients connections open, it is served and the oldest connection
 * still waiting for its request is closed instead (or, if every one has
 * sent it, the oldest being answered): idle or slow clients cannot keep
 * `ntsctl health` out.  Connections closed without a response count as
 * "command packets dropped".  A later version changes the "NTSCTL/1"
 * prefix; a server answers an unknown version with ERR version.
 *
 * Metrics listener: HTTP/1.0 on a numeric "address:port" ("127.0.0.1:9123",
 * "[::1]:9123"); GET (or HEAD) /metrics gets the text exposition format
 * 0.0.4, anything else 404/405/400.  Requests are bounded (2 KiB, headers
 * included) and answered with Connection: close; max_clients and the
 * timeout apply as on the socket (a scrape evicts the oldest idle
 * connection).  Off unless configured.
 *
 * The data comes from a provider (callbacks run on the loop's thread).
 * Nothing here reads a clock except the timeout timers (uv_now).
 */
#ifndef NTSNTP_CONTROL_H
#define NTSNTP_CONTROL_H

#include <sys/socket.h>

#include <uv.h>

#include "ntsntp/common.h"
#include "ntsntp/server.h"
#include "ntsntp/service.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_CTL_VERSION "NTSCTL/1"
#define NTSNTP_CTL_MAX_REQUEST 256         /* bytes, "\n" included */
#define NTSNTP_CTL_SOCKET_NAME "ntsd.sock" /* in STATE_DIR by default */
#define NTSNTP_CTL_MAX_SOURCES 64
#define NTSNTP_CTL_MAX_CLIENTS 64 /* rows of the clients report */

/* The clock being served, as chronyc `tracking` shows it. */
typedef struct ntsntp_ctl_tracking {
  uint32_t ref_id;
  char ref_name[64]; /* shown in parentheses; printable ASCII */
  uint8_t stratum;
  uint8_t leap;         /* NTSNTP_LEAP_* */
  int synchronised;     /* serving a valid time (not leap UNSYNC) */
  int64_t ref_time_sec; /* Unix time of the last clock update; 0: none */
  uint32_t ref_time_nsec;
  double system_time;   /* s; > 0: the local clock is fast of NTP time */
  double last_offset;   /* s */
  double rms_offset;    /* s */
  double frequency_ppm; /* > 0: the local clock runs fast */
  double residual_freq_ppm;
  double skew_ppm;
  double root_delay;      /* s */
  double root_dispersion; /* s */
  double update_interval; /* s */
  /* sources: holdover (synchronised, no source selectable) and its
   * seconds left; the leap second ahead or in progress, "" if none
   * ("insert at 2016-12-31 23:59:60 UTC, LEAPSECMODE step"). */
  int holdover;
  double holdover_left;
  char leap_second[128];
} ntsntp_ctl_tracking;

/*
 * Fills |t| from the clock state being served.  In local clock mode this is
 * the whole truth: reference 7F7F0101 (LOCAL), the configured stratum, leap
 * Normal, no offset or frequency error (the clock is its own reference).
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_ctl_tracking_from_clock(ntsntp_ctl_tracking *t,
                                                  const ntsntp_clock_state *cs);

/* One upstream source: chronyc `sources` and `sourcestats` columns. */
typedef struct ntsntp_ctl_source {
  char name[64]; /* printable ASCII */
  char mode;     /* '^' server, '=' peer, '#' local reference clock */
  char state;    /* '*' selected, '+' combined, '-' not combined,
                    '?' unusable, 'x' falseticker, '~' too variable */
  uint8_t stratum;
  int8_t poll;            /* log2 s */
  uint8_t reach;          /* reachability register, shown in octal */
  int64_t last_rx;        /* s since the last sample; -1: never */
  double offset;          /* s, adjusted for clock changes since */
  double measured_offset; /* s, as measured */
  double error;           /* s, estimated error bound */
  /* sourcestats */
  unsigned np, nr;      /* samples; runs of residuals with the same sign */
  uint32_t span;        /* s covered by the samples */
  double frequency_ppm; /* estimated residual frequency */
  double freq_skew_ppm; /* its error bound */
  double est_offset;    /* s */
  double std_dev;       /* s */
  /* selectdata, ntpdata and metrics */
  uint32_t refid;        /* ours for it: its IPv4 address or IPv6 hash */
  uint8_t leap;          /* of its last valid sample (NTSNTP_LEAP_*) */
  char select_state;     /* chronyc selectdata's S column */
  double delay, disp;    /* s: peer delay and dispersion (filtered) */
  double root_delay, root_disp; /* s: as the source announces */
  /* authdata, ntpdata, activity: what the upstream runtime knows of the
   * source (have_detail 0: nothing, e.g. a reference clock). */
  int have_detail;
  ntsntp_uv_upstream_source detail;
} ntsntp_ctl_source;

/* One client row of `clients` (top by packets). */
typedef struct ntsntp_ctl_client {
  struct sockaddr_storage addr; /* AF_INET or AF_INET6; port ignored */
  unsigned prefix_len;          /* aggregation prefix (32/128: one host) */
  uint64_t hits, drops, kods;
  int64_t last_ago; /* s since the last request; -1: unknown */
} ntsntp_ctl_client;

/* The certificate being served (the first of NTS_CERT), for health and
 * metrics. */
typedef struct ntsntp_ctl_cert {
  int loaded;            /* 0: no certificate (no NTS-KE) */
  int64_t not_after;     /* Unix time; 0: unknown */
  int64_t not_before;    /* Unix time; 0: unknown */
  int64_t now;           /* Unix time the provider judged it at */
  int last_reload_ok;    /* 1: the last load or reload succeeded */
  int64_t last_reload;   /* Unix time of that attempt; 0: only at start */
  uint64_t reload_failures; /* reloads that kept the old certificate */
  int file_check_failed; /* the last check of the files failed (stat) */
  char subject[256];     /* printable ASCII */
} ntsntp_ctl_cert;

/* Rate-limit tables (`clients` and metrics). */
typedef struct ntsntp_ctl_ratelimit {
  uint64_t ntp_records, ntp_capacity; /* NTP tables, summed */
  uint64_t ke_records, ke_capacity;   /* the NTS-KE table */
} ntsntp_ctl_ratelimit;

/* Where the reports come from.  Called on the loop thread, never after
 * ntsntp_uv_ctl_stop.  Arguments live only for the call. */
typedef struct ntsntp_ctl_provider {
  /* Required: service counters (NTP, NTS-KE). */
  void (*stats)(void *user, ntsntp_uv_service_stats *st);
  /* Required: the clock being served. */
  void (*tracking)(void *user, ntsntp_ctl_tracking *t);
  /* Writes up to |max| sources, returns how many.  NULL: no sources (local
   * clock mode). */
  size_t (*sources)(void *user, ntsntp_ctl_source *out, size_t max);
  /* Writes up to |max| clients, most packets first, returns how many.
   * NULL: no client accounting (`clients` answers ERR unavailable). */
  size_t (*clients)(void *user, ntsntp_ctl_client *out, size_t max);
  /* The served certificate.  NULL: none (no NTS-KE). */
  void (*cert)(void *user, ntsntp_ctl_cert *out);
  /* Rate-limit table sizes.  NULL: no rate limiting. */
  void (*ratelimit)(void *user, ntsntp_ctl_ratelimit *out);
  /* sources: `reload sources`: re-reads the source settings; |msg| gets
   * one line; 0 when reloaded.  NULL: not available. */
  int (*reload_sources)(void *user, char *msg, size_t len);
  void *user;
} ntsntp_ctl_provider;

typedef struct ntsntp_uv_ctl_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* Unix socket path; NULL or "" : no control socket. */
  const char *socket_path;
  /* "address:port" (numeric; IPv6 in brackets) for HTTP /metrics; NULL or
   * "": none.  Port 0 picks one (tests; see ntsntp_uv_ctl_metrics_port). */
  const char *metrics_listen;
  unsigned max_clients; /* connections at once, per listener; default 16;
                           when full the oldest idle one is closed */
  unsigned timeout_ms;  /* per connection, from accept; default 2000 */
  ntsntp_ctl_provider provider;
  ntsntp_log_fn log; /* loop thread only */
  void *log_user;
} ntsntp_uv_ctl_settings;

/* Defaults: no socket, no metrics, 16 clients, 2000 ms.
 * version-added: 0.1.0 */
NTSNTP_EXTERN void
ntsntp_uv_ctl_settings_default_versioned(int version,
                                         ntsntp_uv_ctl_settings *s);
#define ntsntp_uv_ctl_settings_default(S)                                      \
  ntsntp_uv_ctl_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

typedef struct ntsntp_uv_ctl ntsntp_uv_ctl;

/*
 * Creates the control socket and the metrics listener, and starts serving
 * them on |loop|.  The socket gets mode 0660 as bind creates it, whatever
 * the umask: nothing changes its mode by path afterwards, so a symbolic
 * link put in its place (its directory may belong to a less privileged
 * user) is never followed.  To do so the process umask is 0117 for the
 * duration of bind(): a file that another thread creates in that instant
 * gets at most mode 0660.  An existing socket file is replaced only when
 * nothing answers on it; any other file (a symbolic link too) is left
 * alone.
 * Returns 0.  Errors (|errbuf| gets one line saying what to change):
 *   INVALID_ARG  NULL argument, provider without stats/tracking, socket
 *                path too long, metrics_listen not numeric address:port;
 *   STATE        another process answers on the socket path (a running
 *                ntsd), a non-socket file is in the way, or the socket was
 *                replaced by another file as soon as it was created;
 *   IO           socket, fchmod, bind or listen failed (errno kept);
 *   NOMEM.
 * Nothing is left bound on failure; memory of a failed start is released
 * once |loop| runs again (libuv handle rule).
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_uv_ctl_start(uv_loop_t *loop,
                                      const ntsntp_uv_ctl_settings *s,
                                      ntsntp_uv_ctl **out, char *errbuf,
                                      size_t errlen);

/* The TCP port the metrics listener is bound to; 0 if none.
 * version-added: 0.1.0 */
NTSNTP_EXTERN uint16_t ntsntp_uv_ctl_metrics_port(const ntsntp_uv_ctl *c);

/*
 * Renders the report for |command| ("tracking", ... as on the socket) in
 * |json| (0: text) into a new NUL-terminated buffer stored in |*out|
 * (ntsntp_free() it), its length in |*outlen|.  What the socket and /metrics
 * serve; for embedders and tests.
 * Errors: NOT_FOUND (unknown command), STATE (clients without a provider
 * callback: client accounting is off), NOMEM.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_uv_ctl_report(ntsntp_uv_ctl *c, const char *command,
                                       int json, char **out, size_t *outlen);

/*
 * Closes the listeners and open connections (no further provider calls),
 * removes the socket file, and frees |c| once its handles are closed (the
 * loop must run).  |done| (may be NULL) is then called on the loop.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_uv_ctl_stop(ntsntp_uv_ctl *c,
                                      void (*done)(void *user), void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_CONTROL_H */
