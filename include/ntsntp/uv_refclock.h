/*
 * libntsntp runtime: reference clocks on libuv (REFCLOCKS).
 *
 * Reads each reference clock (refclock.h) and feeds the sync core that
 * the upstream runtime owns, so that refclock samples go through the same
 * filter, selection and clock model as NTP servers:
 *
 *   SOCK  binds a Unix datagram socket at the path (mode 0660 unless
 *         :perm= says otherwise; an old socket there is replaced, anything
 *         else is an error) and reads chrony's sock_sample datagrams
 *   SHM   creates or attaches ntpd's segment 0x4e545030 + unit (mode 0600
 *         unless :perm=) and reads it every 2^dpoll s
 *   PPS   opens /dev/ppsN, selects the assert (or :clear) edge and fetches
 *         the last edge every 2^dpoll s (RFC 2783 through linux/pps.h)
 *   PHC   opens /dev/ptpN and compares it with the system clock every
 *         2^dpoll s (PTP_SYS_OFFSET_PRECISE, else _EXTENDED, else the
 *         basic PTP_SYS_OFFSET)
 *
 * Every 2^poll s each clock's samples are filtered into one that goes to
 * ntsntp_sync_on_refclock.  Everything is opened by
 * ntsntp_uv_refclock_start: call it before giving up privileges, so that
 * root-only devices and paths stay usable by the server's user.
 */
#ifndef NTSNTP_UV_REFCLOCK_H
#define NTSNTP_UV_REFCLOCK_H

#include <uv.h>

#include "ntsntp/refclock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_uv_refclock ntsntp_uv_refclock;

typedef struct ntsntp_uv_refclock_settings {
  int version; /* set by the _settings_default macro (common.h) */
  const ntsntp_refclock_conf *confs; /* ntsntp_refclock_parse_list */
  size_t n;
  ntsntp_sync *sync; /* required; used on the loop thread only */
  /* Called after a sample updated the clock model: publish the clock
   * state to serve (ntsntp_uv_upstream_publish). */
  void (*updated)(void *user);
  void *user;
  ntsntp_log_fn log;
  void *log_user;
} ntsntp_uv_refclock_settings;

/* Fills |s| with the defaults: no clocks, no sync core, no hooks. */
NTSNTP_EXTERN void
ntsntp_uv_refclock_settings_default_versioned(int version,
                                              ntsntp_uv_refclock_settings *s);
#define ntsntp_uv_refclock_settings_default(S)                                 \
  ntsntp_uv_refclock_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Opens every reference clock, adds each to the sync core as a '#'
 * source and starts reading.  On error nothing stays open and |errbuf|
 * names the clock, what failed and the fix.
 * Errors: INVALID_ARG, BAD_CONFIG (too many sources for the sync core),
 * IO (a socket, segment or device could not be opened), NOMEM.
 */
NTSNTP_EXTERN int ntsntp_uv_refclock_start(uv_loop_t *loop,
                                           const ntsntp_uv_refclock_settings *s,
                                           ntsntp_uv_refclock **out,
                                           char *errbuf, size_t errlen);

/* Counters of reference clock |i| (REFCLOCKS order).
 * Errors: INVALID_ARG (bad index). */
NTSNTP_EXTERN int ntsntp_uv_refclock_get_stats(const ntsntp_uv_refclock *rc,
                                               unsigned i,
                                               ntsntp_refclock_stats *out);

/* Stops reading, removes the SOCK sockets it created (when it still may),
 * detaches SHM segments, closes devices, frees |rc| once its handles are
 * closed, then calls |done| (may be NULL). */
NTSNTP_EXTERN void ntsntp_uv_refclock_stop(ntsntp_uv_refclock *rc,
                                           void (*done)(void *user),
                                           void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UV_REFCLOCK_H */
