/*
 * libntsntp: synchronisation to upstream NTP servers, sans I/O.
 *
 * An ntsntp_sync object holds the upstream sources and a model of the
 * local system clock.  It never reads a clock and never touches one unless
 * the caller hands it clock operations (ntsntp_clock_ops).  The runtime
 * feeds it events, all timestamped with the *system* clock in NTP-64:
 *
 *   ntsntp_sync_new(&sync, &settings, errbuf, sizeof(errbuf));
 *   i = ntsntp_sync_add_source(sync, "ntp1.example", refid, now);
 *   loop:
 *     at ntsntp_sync_next_poll(sync, i):
 *       ntsntp_sync_on_send(sync, i, now);  send a request (client.h)
 *     on a response:  rv = ntsntp_client_response(...)
 *       rv == 0:        ntsntp_sync_on_sample(sync, i, &sample, now)
 *       rv == KOD:      ntsntp_sync_on_kod(sync, i, &sample, now)
 *     no response:      ntsntp_sync_on_timeout(sync, i, now)
 *     after an update:  ntsntp_sync_clock_state(sync, now, &cs);
 *                       ntsntp_server_set_clock(srv, &cs);
 *   worker threads:     tx = ntsntp_sync_serve(sync, system_time)
 *
 * Design (docs/sync.md): RFC 5905 section 10 clock filter per source and
 * section 11.2 selection, clustering and combining; the clock model is
 * chrony-like (weighted linear regression over the samples of the combined
 * sources with a runs test, bounded slew, makestep).  The served time is the
 * system time corrected by the model; the system clock itself is only
 * disciplined when clock operations are given.
 *
 * Only ntsntp_sync_serve may be called concurrently with the other calls;
 * everything else must be serialised by the caller (one event loop).
 */
#ifndef NTSNTP_SYNC_H
#define NTSNTP_SYNC_H

#include <time.h>

#include "ntsntp/client.h"
#include "ntsntp/leap.h"
#include "ntsntp/server.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_SYNC_MAX_SOURCES 16
#define NTSNTP_SOURCE_NAME_LEN 64

/* RFC 5905 section 7.2 constants used here. */
#define NTSNTP_PHI 15e-6   /* frequency tolerance (s/s) */
#define NTSNTP_MAXDIST 1.5 /* largest usable root distance (s) */

/*
 * Source states, with chronyc's "sources" MS column (ntsntp_source_state_char):
 *   '?'  UNUSABLE (no valid sample yet, unsynchronised server, root distance
 *        too large), UNREACHABLE (reach register back to 0), STOPPED (KoD
 *        DENY or RSTR)
 *   '~'  JITTERY     jitter above the max_jitter setting
 *   'x'  FALSETICKER outside the majority's intersection interval
 *   '-'  SELECTABLE  truechimer dropped by clustering, not combined
 *   '+'  COMBINED    survivor combined into the estimate
 *   '*'  SELECTED    the system peer
 */
typedef enum ntsntp_source_state {
  NTSNTP_SOURCE_UNUSABLE = 0,
  NTSNTP_SOURCE_UNREACHABLE,
  NTSNTP_SOURCE_STOPPED,
  NTSNTP_SOURCE_JITTERY,
  NTSNTP_SOURCE_FALSETICKER,
  NTSNTP_SOURCE_SELECTABLE,
  NTSNTP_SOURCE_COMBINED,
  NTSNTP_SOURCE_SELECTED
} ntsntp_source_state;

/* Returns "unusable", "unreachable", "stopped", "jittery", "falseticker",
 * "selectable", "combined", "selected" (or "unknown"). */
NTSNTP_EXTERN const char *ntsntp_source_state_name(ntsntp_source_state st);

/* Returns the chronyc MS column character: '?', '~', 'x', '-', '+', '*'. */
NTSNTP_EXTERN char ntsntp_source_state_char(ntsntp_source_state st);

/*
 * Optional control of the system clock (off unless given in the settings).
 * Each returns 0 on success, non-zero on failure (the model then stops
 * controlling the clock and only corrects the served time).
 *   read     the system clock (CLOCK_REALTIME); for the runtime, the core
 *            never calls it
 *   slew     start slewing |offset| seconds (positive: advance the clock) at
 *            the kernel's fixed 500 ppm (adjtime/ADJ_OFFSET_SINGLESHOT; a new
 *            call replaces what is left of the previous one) and set the
 *            frequency correction to |freq_ppm| (positive: run faster)
 *   step     step the clock by |offset| seconds now, cancelling a slew in
 *            progress
 *   set_rtc  copy the system time to the hardware clock (rtcsync); may be
 *            NULL
 *   set_leap arm the kernel for a leap second at the coming UTC midnight:
 *            |dir| +1 insert, -1 delete, 0 none (withdrawn, or passed).
 *            Called in leap_mode SYSTEM only, when the decision changes
 *            (ntsntp_sync_leap_update) and a few seconds after the leap;
 *            may be NULL (the kernel then passes no leap second)
 * lib/uv/sysclock.c has the adjtimex implementation (ntsntp_uv_sysclock_ops).
 */
typedef struct ntsntp_clock_ops {
  int (*read)(void *user, struct timespec *ts);
  int (*slew)(void *user, double offset, double freq_ppm);
  int (*step)(void *user, double offset);
  int (*set_rtc)(void *user);
  void *user;
  int (*set_leap)(void *user, int dir);
} ntsntp_clock_ops;

/*
 * Fills |ops| with the real implementation (lib/uv/sysclock.c, Linux):
 * read = clock_gettime(CLOCK_REALTIME); slew = adjtimex ADJ_FREQUENCY then
 * ADJ_OFFSET_SINGLESHOT (kernel PLL off); step = cancel the slew, then
 * ADJ_SETOFFSET; set_rtc = clear STA_UNSYNC so the kernel copies the time
 * to the RTC every 11 minutes; set_leap = STA_INS or STA_DEL (ADJ_STATUS).
 * Needs CAP_SYS_TIME; errno is kept.
 * Never used by the test suite.
 */
NTSNTP_EXTERN void ntsntp_uv_sysclock_ops(ntsntp_clock_ops *ops);

/* The kernel's slew rate for ADJ_OFFSET_SINGLESHOT (Linux): 500 ppm. */
#define NTSNTP_KERNEL_SLEW_PPM 500.0

typedef struct ntsntp_sync_settings {
  int version; /* set by the _settings_default macro (common.h) */
  int8_t minpoll; /* log2 s, default 6 (64 s) */
  int8_t maxpoll; /* log2 s, default 10 (1024 s) */
  unsigned iburst;           /* requests 2 s apart at start, default 4 */
  double max_slew_ppm;       /* served-time slew limit, default 83333.333
                              * (chrony's maxslewrate); with clock_ops the
                              * kernel's NTSNTP_KERNEL_SLEW_PPM is used */
  double makestep_threshold; /* s, default 0.1 */
  int makestep_limit;        /* first N updates may step, default 3;
                              * 0 never, < 0 always */
  double max_jitter;         /* s, default 1.0 (chrony's maxjitter) */
  unsigned min_sources;      /* truechimers needed, default 1 */
  int8_t precision;          /* log2 s of our clock, default -20 */
  const ntsntp_clock_ops *clock_ops; /* NULL (default): never touch the
                                      * system clock; copied by _new */
  int rtcsync;               /* with clock_ops: set the RTC every 11 min */
  ntsntp_rand_fn rand;       /* poll jitter; NULL: ntsntp_rand_default */
  void *rand_user;
  /* Holdover (HOLDOVER): seconds after the last selectable source went
   * (unreachable, falseticker, removed) during which the clock is still
   * served as synchronised (root dispersion growing by NTSNTP_PHI per
   * second since the last update); default 3600; 0: unsynchronised as
   * soon as no source is selectable. */
  uint32_t holdover;
  /* Leap seconds: how the served time passes one (LEAPSECMODE), and the
   * leap-only smear (LEAP_SMEAR; off by default).  leap.h. */
  ntsntp_leap_mode leap_mode;
  int leap_smear;
  const ntsntp_mem *mem; /* allocator; NULL: libc */
} ntsntp_sync_settings;

/* Fills |s| with the defaults above. */
NTSNTP_EXTERN void
ntsntp_sync_settings_default_versioned(int version, ntsntp_sync_settings *s);
#define ntsntp_sync_settings_default(S)                                        \
  ntsntp_sync_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

typedef struct ntsntp_sync ntsntp_sync;

/*
 * Creates a sync object, allocated with s->mem.
 * Errors: INVALID_ARG (minpoll/maxpoll outside 0..17 or minpoll > maxpoll,
 * non-positive or non-finite slew rate, negative threshold, clock_ops
 * without slew and step), NOMEM.
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure.
 */
NTSNTP_EXTERN int ntsntp_sync_new(ntsntp_sync **psync,
                                  const ntsntp_sync_settings *s, char *errbuf,
                                  size_t errlen);

/* Frees |sync| (NULL is fine).  No thread may be in ntsntp_sync_serve. */
NTSNTP_EXTERN void ntsntp_sync_del(ntsntp_sync *sync);

/*
 * Adds a source.  |name| (copied, truncated to NTSNTP_SOURCE_NAME_LEN - 1)
 * is for logs; |refid| is what we serve as reference ID while it is the
 * system peer (ntsntp_refid_ipv4/ipv6).  Its first poll is due at |now|.
 * Returns the source index (>= 0).
 * Errors: NOBUF (NTSNTP_SYNC_MAX_SOURCES reached): do not add more.
 */
NTSNTP_EXTERN int ntsntp_sync_add_source(ntsntp_sync *sync, const char *name,
                                         uint32_t refid, uint64_t now);

/*
 * Removes source |i| (a pool member replaced, a server gone from the
 * configuration): it is no longer polled, selected or listed, and the
 * selection runs again at |now|.  The indexes of the other sources do not
 * change; ntsntp_sync_add_source reuses the lowest free slot.
 * Errors: INVALID_ARG (bad index, or removed already).
 */
NTSNTP_EXTERN int ntsntp_sync_remove_source(ntsntp_sync *sync, unsigned i,
                                            uint64_t now);

/* 1 if slot |i| holds a source (added and not removed), else 0. */
NTSNTP_EXTERN int ntsntp_sync_source_active(const ntsntp_sync *sync,
                                            unsigned i);

/*
 * Sets the reference ID served while source |i| is the system peer: its
 * address, once a name is resolved (or re-resolved to another address).
 * Errors: INVALID_ARG (bad index).
 */
NTSNTP_EXTERN int ntsntp_sync_set_refid(ntsntp_sync *sync, unsigned i,
                                        uint32_t refid);

/* Number of source slots (the highest index in use + 1); removed
 * sources leave holes (ntsntp_sync_source_active). */
NTSNTP_EXTERN unsigned ntsntp_sync_n_sources(const ntsntp_sync *sync);

/*
 * System time (NTP-64) when the next request to source |i| is due, or
 * UINT64_MAX if it must not be polled any more (DENY/RSTR) or |i| is
 * invalid.
 */
NTSNTP_EXTERN uint64_t ntsntp_sync_next_poll(const ntsntp_sync *sync,
                                             unsigned i);

/* The poll value (log2 s) to put in the request to source |i|. */
NTSNTP_EXTERN int8_t ntsntp_sync_poll(const ntsntp_sync *sync, unsigned i);

/*
 * Records that a request was sent to source |i| at |now|: shifts the reach
 * register and schedules the next poll (2 s while in the initial burst,
 * else 2^poll s minus up to 1/16 random jitter).
 * Errors: INVALID_ARG (bad index), STATE (source stopped): do not send.
 */
NTSNTP_EXTERN int ntsntp_sync_on_send(ntsntp_sync *sync, unsigned i,
                                      uint64_t now);

/*
 * Feeds a valid response of source |i| (ntsntp_client_response returned 0)
 * received at |now|.  Runs the clock filter and the selection; when the
 * source then is combined or selected, the sample updates the clock model.
 * Returns 1 if the clock model was updated (refresh the server's clock
 * state with ntsntp_sync_clock_state), 0 if the sample was only stored
 * (or held back as a spike).
 * Errors (the sample is ignored; nothing to do but log):
 *   INVALID_ARG  bad index
 *   STATE        source stopped by a KoD
 *   MALFORMED    server unsynchronised (leap 3, stratum 0 or >= 16), root
 *                distance >= NTSNTP_MAXDIST, delay < -1 ms or >= 16 s,
 *                offset not finite, reference time after transmit time
 */
NTSNTP_EXTERN int ntsntp_sync_on_sample(ntsntp_sync *sync, unsigned i,
                                        const ntsntp_client_sample *sample,
                                        uint64_t now);

/*
 * Feeds a Kiss-o'-Death (ntsntp_client_response returned KOD; the code is
 * in sample->hdr.refid).  RATE raises the poll interval (at least one step
 * and at least the server's poll) and ends the burst; DENY and RSTR stop
 * the source for good; other codes are ignored (RFC 5905 section 7.4).
 * Returns 0, or CLOSED when the source was stopped (close its socket).
 * Errors: INVALID_ARG (bad index).
 */
NTSNTP_EXTERN int ntsntp_sync_on_kod(ntsntp_sync *sync, unsigned i,
                                     const ntsntp_client_sample *sample,
                                     uint64_t now);

/* Records that the request to source |i| got no (valid) answer.  Reach is
 * already counted by on_send; this re-selects so an unreachable source
 * stops being counted.  Bad indexes are ignored. */
NTSNTP_EXTERN void ntsntp_sync_on_timeout(ntsntp_sync *sync, unsigned i,
                                          uint64_t now);

/* refclock: begin.  A reference clock source (refclock.h, uv_refclock.h). */
typedef struct ntsntp_sync_refclock {
  int8_t poll;       /* log2 s between its samples (fixed) */
  uint8_t stratum;   /* its stratum: served stratum - 1 (chrony: 0) */
  double delay;      /* s, its round trip for the root distance */
  double precision;  /* s */
  int prefer;        /* system peer whenever it survives */
  int noselect;      /* never selected (shown as unusable) */
  int trust;         /* never a falseticker: others are judged by it */
} ntsntp_sync_refclock;

/* One filtered sample of a reference clock (ntsntp_refclock_poll). */
typedef struct ntsntp_refclock_sample {
  uint64_t t;    /* system time it holds at (NTP-64) */
  double offset; /* true - system (s) */
  double disp;   /* its error (s): carried as root dispersion */
  uint8_t leap;  /* NTSNTP_LEAP_*: its leap warning */
} ntsntp_refclock_sample;

/*
 * Adds a reference clock source (chronyc's '#' mode) named |name| (its
 * refid as text), served as reference ID |refid| while it is the system
 * peer.  Returns the source index.
 * Errors: NOBUF (NTSNTP_SYNC_MAX_SOURCES reached), INVALID_ARG (poll
 * outside -6..17, stratum above 15, delay or precision negative).
 */
NTSNTP_EXTERN int ntsntp_sync_add_refclock(ntsntp_sync *sync,
                                           const char *name, uint32_t refid,
                                           const ntsntp_sync_refclock *rc,
                                           uint64_t now);

/*
 * A poll of reference clock |i| at |now|: shifts its reach register and,
 * with a sample (|rs| non-NULL), feeds it through the same clock filter,
 * selection and clock model as a network sample.  Without a sample the
 * selection runs again, as after a timeout.
 * Returns 1 if the clock model was updated (refresh the server's clock
 * state), 0 otherwise.
 * Errors: INVALID_ARG (bad index, not a reference clock), MALFORMED (leap
 * 3, offset or dispersion not finite, dispersion >= NTSNTP_MAXDIST).
 */
NTSNTP_EXTERN int ntsntp_sync_on_refclock(ntsntp_sync *sync, unsigned i,
                                          const ntsntp_refclock_sample *rs,
                                          uint64_t now);
/* refclock: end */

/* One line of `ntsctl sources` (chronyc sources). */
typedef struct ntsntp_source_info {
  char name[NTSNTP_SOURCE_NAME_LEN];
  uint32_t refid; /* ours for this source (its address) */
  ntsntp_source_state state;
  uint8_t stratum, leap; /* from its last valid sample */
  int8_t poll;
  uint8_t reach;
  uint32_t kod;       /* last KoD code, 0 if none */
  double last_rx;     /* seconds since the last valid sample, -1 if none */
  double offset;      /* filtered offset now (true - system), s */
  double last_offset; /* raw offset of the last sample, s */
  double delay, disp, jitter, root_delay, root_disp;
  double root_distance; /* RFC 5905 root_dist(), s */
  uint64_t next_poll;
  /* `ntsctl sourcestats` (chronyc sourcestats), over the clock filter's
   * samples: their number, the runs of residual signs, the time they
   * span, a least-squares line through the offsets (its slope as a
   * frequency of the source against the system clock, ppm, and the slope's
   * standard error) and the residuals' standard deviation. */
  unsigned np, nr;
  double span;
  double freq_ppm, freq_skew_ppm;
  double std_dev;
  int refclock; /* a reference clock: chronyc's '#' mode */
} ntsntp_source_info;

/* Fills |info| for source |i| at |now|.  Errors: INVALID_ARG (bad index). */
NTSNTP_EXTERN int ntsntp_sync_source_info(const ntsntp_sync *sync, unsigned i,
                                          uint64_t now,
                                          ntsntp_source_info *info);

/*
 * The served time: |sys| (system clock, NTP-64) corrected by the model.
 * Before the first update it is |sys| unchanged.  Thread-safe and
 * lock-free (sequence lock over atomics); this is the UDP server's
 * `adjust` hook.
 */
NTSNTP_EXTERN uint64_t ntsntp_sync_serve(const ntsntp_sync *sync,
                                         uint64_t sys);

/*
 * What the server must announce at |now| (system time): leap, stratum
 * (system peer + 1), refid, ref_ts (served time of the last update), root
 * delay and dispersion (RFC 5905 section 11.3), disp_rate NTSNTP_PHI.
 * Unsynchronised (never synchronised, or root distance grown past
 * NTSNTP_MAXDIST since the last update): leap 3, stratum 16, refid 0.
 */
NTSNTP_EXTERN void ntsntp_sync_clock_state(const ntsntp_sync *sync,
                                           uint64_t now,
                                           ntsntp_clock_state *cs);

/* `ntsctl tracking` (chronyc tracking fields). */
typedef struct ntsntp_tracking {
  int synced;
  uint32_t refid;
  char ref_name[NTSNTP_SOURCE_NAME_LEN]; /* system peer, "" if none */
  uint8_t stratum, leap;
  uint64_t ref_time;     /* served time of the last update, 0 if none */
  double system_offset;  /* system - served time now: > 0 system is fast */
  double last_offset;    /* last measured offset vs the served clock */
  double rms_offset;     /* long-term RMS of last_offset */
  double freq_ppm;       /* rate of (true - system): > 0 system is slow */
  double resid_freq_ppm; /* last change of the frequency estimate */
  double skew_ppm;       /* frequency error bound (std. error) */
  double root_delay, root_disp; /* as served now */
  double update_interval;       /* s between the last two updates */
  unsigned updates;             /* clock model updates so far */
  unsigned steps;               /* of them, steps */
  int clock_control;            /* 1 while the system clock is driven */
  /* Holdover: synchronised although no source is selectable; seconds
   * left before ntsd serves as unsynchronised. */
  int holdover;
  double holdover_left;
  /* Leap second: +1 insert, -1 delete at |leap_at| (NTP seconds of the
   * leap instant's midnight), 0 none; announced to clients now. */
  int leap_pending;
  uint64_t leap_at;
  int leap_announced;
  /* Leap-second list: 0 none, 1 in use, 2 expired (upstream votes only);
   * its expiry (NTP seconds). */
  int leap_list;
  uint64_t leap_list_expires;
} ntsntp_tracking;

/* Fills |t| at system time |now|. */
NTSNTP_EXTERN void ntsntp_sync_tracking(const ntsntp_sync *sync,
                                        uint64_t now, ntsntp_tracking *t);

/*
 * Gives the sync core the leap-second list (copied; NULL: none).  An
 * expired list is kept but no longer announces leaps.
 */
NTSNTP_EXTERN void ntsntp_sync_set_leap_list(ntsntp_sync *sync,
                                             const ntsntp_leap_list *l);

/*
 * Leap seconds, as chrony decides them: the majority vote of the
 * selectable sources, or when it says none, the list; announced only
 * during 30 June or 31 December (UTC, served time) and not while the
 * leap smear is on.  Arms the served-time correction for the leap (the
 * settings' leap_mode and leap_smear) and, a day after it, folds it into
 * the time served from then on.  Call it at least once a second (the
 * runtime does, before publishing the clock state).  Returns +1 or -1
 * while a leap is pending or in progress, else 0.
 */
NTSNTP_EXTERN int ntsntp_sync_leap_update(ntsntp_sync *sync, uint64_t now);

/*
 * Writes the drift file contents, chrony's format "<freq ppm> <skew ppm>\n",
 * into |out|.  Returns the length (no NUL written beyond it if it does not
 * fit: NOBUF).  Errors: STATE (no frequency estimate yet: nothing worth
 * saving), NOBUF.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_sync_drift_save(const ntsntp_sync *sync,
                                                  char *out, size_t outlen);

/*
 * Parses drift file contents (not NUL-terminated necessarily): two decimal
 * numbers separated by spaces or tabs, an optional final newline, nothing
 * else; |freq| <= 500 ppm, 0 <= skew <= 100 ppm.  On success the frequency
 * becomes the model's prior, used until the regression knows better.
 * Errors: MALFORMED (syntax), INVALID_ARG (values out of range),
 * STATE (the model was already updated: load only at start).
 */
NTSNTP_EXTERN int ntsntp_sync_drift_load(ntsntp_sync *sync, const char *in,
                                         size_t len) NTSNTP_WARN_UNUSED;

/* Reference ID for an IPv4 source: the address, first octet highest. */
NTSNTP_EXTERN uint32_t ntsntp_refid_ipv4(const uint8_t addr[4]);

/* Reference ID for an IPv6 source: the first four octets of the MD5 digest
 * of the address (RFC 5905 section 7.3). */
NTSNTP_EXTERN uint32_t ntsntp_refid_ipv6(const uint8_t addr[16]);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_SYNC_H */
