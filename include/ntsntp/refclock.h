/*
 * libntsntp: reference clocks (GPS, PPS, PTP hardware clocks), sans I/O.
 *
 * A reference clock is configured with the arguments of chrony's
 * `refclock` directive, so that lines can be copied from chrony.conf:
 *
 *   DRIVER PARAMETER[:OPTION[=VALUE]]... [option value]...
 *
 *   SOCK /run/ntsd/gps.sock refid GPS       chrony's SOCK protocol (gpsd)
 *   SHM 0 refid NMEA offset 0.2 noselect    ntpd's shared memory (gpsd)
 *   PPS /dev/pps0:clear lock NMEA refid PPS RFC 2783 pulses
 *   PHC /dev/ptp0 poll 2 dpoll -2 tai       PTP hardware clock
 *
 * This module parses the entries, decodes what the drivers read (SOCK
 * datagrams, SHM segments, PPS edges, PHC readings) and keeps, per
 * reference clock, the samples of one poll interval, which it reduces to
 * one sample per poll with chrony's median filter.  The runtime
 * (uv_refclock.h) does the reading and hands the filtered samples to the
 * sync core (ntsntp_sync_on_refclock), where they go through the same
 * clock filter, selection and clock model as network sources.
 *
 * Times are NTP-64 system times; offsets are true time minus system time,
 * in seconds (ntsntp_client_sample's sign).
 */
#ifndef NTSNTP_REFCLOCK_H
#define NTSNTP_REFCLOCK_H

#include <sys/time.h>
#include <time.h>

#include "ntsntp/sync.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_REFCLOCK_MAX 8         /* entries in REFCLOCKS */
#define NTSNTP_REFCLOCK_FILTER_MAX 256 /* longest median filter */
#define NTSNTP_REFCLOCK_PARAM_LEN 108  /* sun_path; device paths alike */

/* chrony's SOCK protocol: one datagram per sample, native layout. */
#define NTSNTP_REFCLOCK_SOCK_MAGIC 0x534f434b
typedef struct ntsntp_refclock_sock_sample {
  struct timeval tv; /* system time of the measurement */
  double offset;     /* true - system (s); see ntsntp_refclock_sock_decode */
  int pulse;         /* non-zero: a pulse, seconds from another source */
  int leap;          /* 0 normal, 1 insert, 2 delete a leap second */
  int _pad;
  int magic; /* NTSNTP_REFCLOCK_SOCK_MAGIC */
} ntsntp_refclock_sock_sample;

/* ntpd's shared memory segment (struct shmTime), as gpsd writes it; the
 * key is NTSNTP_REFCLOCK_SHM_KEY + unit. */
#define NTSNTP_REFCLOCK_SHM_KEY 0x4e545030
typedef struct ntsntp_refclock_shm {
  int mode; /* 0: use when valid; 1: also check count around the read */
  volatile int count;
  time_t clock_sec; /* true time of the sample */
  int clock_usec;
  time_t receive_sec; /* system time of the sample */
  int receive_usec;
  int leap; /* 0 none, 1 insert, 2 delete, 3 unsynchronised */
  int precision;
  int nsamples;
  volatile int valid;
  unsigned clock_nsec; /* when consistent with the usec fields */
  unsigned receive_nsec;
  int dummy[8];
} ntsntp_refclock_shm;

typedef enum ntsntp_refclock_driver {
  NTSNTP_REFCLOCK_SOCK = 1,
  NTSNTP_REFCLOCK_SHM,
  NTSNTP_REFCLOCK_PPS,
  NTSNTP_REFCLOCK_PHC
} ntsntp_refclock_driver;

/* One entry, as parsed.  Defaults are chrony's. */
typedef struct ntsntp_refclock_conf {
  ntsntp_refclock_driver driver;
  char param[NTSNTP_REFCLOCK_PARAM_LEN]; /* path or device, no options */
  unsigned unit;       /* SHM unit */
  unsigned perm;       /* SHM :perm= (default 0600); SOCK file mode 0660 */
  int pps_clear;       /* PPS :clear: the clear edge, not assert */
  int phc_nocrossts;   /* PHC :nocrossts: no PTP_SYS_OFFSET_PRECISE */
  uint32_t refid;      /* default: driver name and unit ("SHM0", "PPS1") */
  char name[5];        /* the refid as text */
  int8_t poll;         /* log2 s between samples to the sync core; 4 */
  int8_t dpoll;        /* log2 s between driver reads (SHM PPS PHC); 0 */
  unsigned filter;     /* median filter length; 64 */
  double offset;       /* s added to every sample; 0 */
  double delay;        /* s, the sample's round trip for selection; 1e-9 */
  double precision;    /* s; 1e-6 (SOCK SHM), 1e-9 (PPS PHC) */
  double max_dispersion; /* s; filtered samples above are dropped; 0: off */
  double width;        /* s, pulse width (PPS); 0: unchecked */
  unsigned rate;       /* pulses per second; 1 */
  unsigned max_lock_age; /* pulses a lock sample may be old; 2 */
  unsigned stratum;    /* served stratum - 1; 0 */
  int lock;            /* index of the entry whose seconds pulses take; -1 */
  char lock_name[5];
  int pps;             /* samples are pulses (SOCK, SHM) */
  int tai;             /* the clock keeps TAI, not UTC */
  int prefer, noselect, trust;
} ntsntp_refclock_conf;

/*
 * Parses one entry (see the top of this file) into |c|.  Options: refid,
 * poll, dpoll, filter, offset, delay, precision, maxdispersion, width,
 * rate, maxlockage, stratum, lock, pps, tai, prefer, noselect, trust;
 * chrony's minsamples, maxsamples and require are refused (ntsd does not
 * have them), so are unknown driver options.  |lock| is resolved by
 * ntsntp_refclock_parse_list.
 * Errors: BAD_CONFIG (|err| says what is wrong in the entry and the fix).
 */
NTSNTP_EXTERN int ntsntp_refclock_parse(const char *entry,
                                        ntsntp_refclock_conf *c, char *err,
                                        size_t errlen);

/*
 * Parses a comma-separated list of entries (REFCLOCKS) into |c|[0..max),
 * checks that reference IDs are unique and resolves `lock REFID` to the
 * entry with that refid (it must not be a pulse source itself).  An empty
 * list gives 0 entries.  Returns the count.
 * Errors: BAD_CONFIG (|err| names the entry and the fix), NOBUF (more
 * than |max| entries; |err| says so).
 */
NTSNTP_EXTERN int ntsntp_refclock_parse_list(const char *list,
                                             ntsntp_refclock_conf *c,
                                             size_t max, char *err,
                                             size_t errlen);

/*
 * Appends to |c|[|n|] the reference clock an ntpd-style address in
 * NTP_SERVERS stands for: 127.127.28.N is SHM unit N (refid SHMN).
 * Returns 1 (added), 0 (|item| is no 127.127.0.0/16 address: a server)
 * or an error.  127.127.1.1 (the local clock) is not handled here: 0.
 * Errors: BAD_CONFIG (another ntpd driver; |err| names REFCLOCKS), NOBUF.
 */
NTSNTP_EXTERN int ntsntp_refclock_legacy(const char *item,
                                         ntsntp_refclock_conf *c, size_t n,
                                         size_t max, char *err,
                                         size_t errlen);

/* The sync core's view of the entry (poll, stratum, delay, flags). */
NTSNTP_EXTERN void ntsntp_refclock_sync_conf(const ntsntp_refclock_conf *c,
                                             ntsntp_sync_refclock *out);

/*
 * Decodes a SOCK datagram of |len| bytes.  As chrony reads them, a pulse
 * datagram's |offset| is the system time's distance past the pulse
 * (ntsntp_refclock_add_pulse's |second|), any other is true - system.
 * Errors: TRUNCATED (not the structure's size), MALFORMED (magic, leap
 * outside 0..2, tv_usec outside 0..999999, offset not finite).
 */
NTSNTP_EXTERN int
ntsntp_refclock_sock_decode(const void *buf, size_t len,
                            ntsntp_refclock_sock_sample *out);

/* A sample read from a driver. */
typedef struct ntsntp_refclock_reading {
  uint64_t t;    /* system time of the measurement (NTP-64) */
  double offset; /* true - system (s) */
  uint8_t leap;  /* NTSNTP_LEAP_* */
} ntsntp_refclock_reading;

/*
 * Reads segment |shm| as ntpd and chrony do: mode 0 takes the sample when
 * valid is set; mode 1 also needs count unchanged across the read.  The
 * valid flag is cleared in both cases (the writer sets it again).
 * Returns 1 with |out| filled, 0 if there is no new sample.
 * Errors: AGAIN (mode 1: the writer was writing; sample dropped),
 * MALFORMED (unknown mode, times out of range, leap 3: the receiver has
 * no fix; the sample is dropped and valid cleared).
 */
NTSNTP_EXTERN int ntsntp_refclock_shm_read(ntsntp_refclock_shm *shm,
                                           ntsntp_refclock_reading *out);

/* One reading of PTP_SYS_OFFSET_EXTENDED: system time before and after
 * the PHC was read, and the PHC's time (all NTP-64). */
typedef struct ntsntp_refclock_phc_reading {
  uint64_t sys_before, phc, sys_after;
} ntsntp_refclock_phc_reading;

/*
 * Reduces |n| PHC readings to one sample, as chrony's PHC driver: the
 * reading with the shortest system-time window wins; the sample is at the
 * window's midpoint and its error is half the window.  With |tai_offset|
 * (TAI - UTC, s) the PHC's TAI is brought to UTC first.  For
 * PTP_SYS_OFFSET_PRECISE pass one reading with sys_before == sys_after.
 * Errors: INVALID_ARG (n == 0), MALFORMED (every window negative or
 * longer than 1 ms).
 */
NTSNTP_EXTERN int
ntsntp_refclock_phc_sample(const ntsntp_refclock_phc_reading *r, size_t n,
                           int tai_offset, ntsntp_refclock_reading *out,
                           double *err);

/* Where pulses take their seconds from: the last sample of the `lock`
 * reference clock, or the clock being served. */
typedef struct ntsntp_refclock_ref {
  uint64_t t;    /* its system time */
  double offset; /* true - system there */
  double disp;   /* its error bound (s) */
  uint8_t leap;
} ntsntp_refclock_ref;

/* Counters, for logs and ntsctl. */
typedef struct ntsntp_refclock_stats {
  uint64_t samples, pulses;  /* accepted into the filter */
  uint64_t bad;              /* malformed (SOCK, SHM) or out of range */
  uint64_t stale;            /* sample time too far from now */
  uint64_t no_lock;          /* pulses without a usable reference */
  uint64_t off_lock;         /* pulses 0.2 / rate or more off it */
  uint64_t polls_empty;      /* polls without enough samples */
} ntsntp_refclock_stats;

/* The sans-I/O state of one reference clock (caller-allocated). */
typedef struct ntsntp_refclock {
  ntsntp_refclock_conf conf;
  struct {
    uint64_t t;
    double offset, disp;
    uint8_t leap;
  } buf[NTSNTP_REFCLOCK_FILTER_MAX];
  unsigned n, head; /* ring of the newest |conf.filter| samples */
  int have_last;
  ntsntp_refclock_ref last; /* newest sample, for pulses locked to it */
  int tai_offset;           /* TAI - UTC for the tai option; 37 */
  ntsntp_refclock_stats stats;
} ntsntp_refclock;

/* Initialises |rc| for entry |c| (copied). */
NTSNTP_EXTERN void ntsntp_refclock_init(ntsntp_refclock *rc,
                                        const ntsntp_refclock_conf *c);

/*
 * Adds a sample taken at system time |t| with |offset| (true - system,
 * the entry's offset option not yet added) and |leap|, read at |now|; |disp|
 * is its own error (0 if unknown; the precision is added).  With the pps
 * option the sample is a pulse: see ntsntp_refclock_add_pulse (|ref|).
 * Returns 0, or 1 when a filter shorter than 4 samples is full: poll now
 * (chrony uses such samples as soon as they are there).
 * Errors (the sample is dropped and counted): STATE (|t| more than one
 * poll interval before |now| or 1 s after it), MALFORMED (offset not
 * finite, leap not 0..2), and those of
 * ntsntp_refclock_add_pulse.
 */
NTSNTP_EXTERN int ntsntp_refclock_add_sample(ntsntp_refclock *rc,
                                             uint64_t now, uint64_t t,
                                             double offset, uint8_t leap,
                                             double disp,
                                             const ntsntp_refclock_ref *ref);

/*
 * Adds a pulse seen at system time |t| (read at |now|): |second| is the
 * system time's distance past the true second (the PPS driver passes the
 * fractional part of |t|).  The pulse gives the offset modulo 1 / rate;
 * the whole seconds come from |ref|: the last sample of the lock clock
 * (ntsntp_refclock_last) or, without lock, the clock being served, which
 * must then be synchronised (ntsntp_refclock_served_ref).  The sample
 * carries |ref|'s leap warning.  Returns 0 or 1 as add_sample.
 * Errors: STATE (stale, as above), NOT_FOUND (|ref| NULL, older than
 * maxlockage pulses, or its leap unsynchronised), MALFORMED (the pulse is
 * 0.2 / rate or more away from |ref|, or outside the width window).
 */
NTSNTP_EXTERN int ntsntp_refclock_add_pulse(ntsntp_refclock *rc,
                                            uint64_t now, uint64_t t,
                                            double second,
                                            const ntsntp_refclock_ref *ref);

/* The newest accepted sample of |rc|, for pulses locked to it.
 * Errors: NOT_FOUND (none yet). */
NTSNTP_EXTERN int ntsntp_refclock_last(const ntsntp_refclock *rc,
                                       ntsntp_refclock_ref *ref);

/*
 * The reference a pulse without lock takes its seconds from: the clock
 * served by |sync| at |t|.  Errors: NOT_FOUND (not synchronised, or its
 * root distance is 0.5 / rate or more: the second would be ambiguous).
 */
NTSNTP_EXTERN int ntsntp_refclock_served_ref(const ntsntp_refclock *rc,
                                             const ntsntp_sync *sync,
                                             uint64_t t,
                                             ntsntp_refclock_ref *ref);

/*
 * At a poll: reduces the samples since the last poll with the median
 * filter (about 40 % farthest from the median dropped, the rest averaged)
 * into |out| and empties the filter.  A filter of 4 or more needs at least
 * 4 samples, a shorter one as many as its length.  A filtered sample
 * whose dispersion is above maxdispersion (when set) is dropped.
 * Returns 1 (|out| filled) or 0 (not enough samples, or dropped: a poll
 * without a sample, as an unanswered request).
 */
NTSNTP_EXTERN int ntsntp_refclock_poll(ntsntp_refclock *rc,
                                       ntsntp_refclock_sample *out);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_REFCLOCK_H */
