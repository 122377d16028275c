/*
 * libntsntp: leap seconds, sans I/O.
 *
 *   - the leap-second list (IERS/IETF leap-seconds.list, as shipped in
 *     /usr/share/zoneinfo): NTP-second timestamps with the TAI-UTC offset
 *     from then on, '#$' last update, '#@' expiry, '#h' SHA-1 hash;
 *   - chrony's rule for announcing a leap second: only during the UTC day
 *     that ends with it, and only on 30 June and 31 December;
 *   - the correction of the served time across the leap for chrony's
 *     leapsecmode (system, step, slew) and its leap-only smoothing
 *     (`smoothtime 400 0.001024 leaponly`).
 *
 * Times are NTP seconds (seconds since 1900, era 0: until 2036).  Nothing
 * here reads a clock or a file.
 */
#ifndef NTSNTP_LEAP_H
#define NTSNTP_LEAP_H

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_LEAP_MAX_ENTRIES 64

/* What the default LEAPSECLIST points at (where it exists). */
#define NTSNTP_LEAP_DEFAULT_LIST "/usr/share/zoneinfo/leap-seconds.list"

typedef struct ntsntp_leap_entry {
  uint64_t ntp_sec; /* 00:00:00 UTC of the day the offset applies from */
  int tai_offset;   /* TAI - UTC from then on, s */
} ntsntp_leap_entry;

typedef struct ntsntp_leap_list {
  size_t n; /* entries, increasing in time */
  ntsntp_leap_entry e[NTSNTP_LEAP_MAX_ENTRIES];
  uint64_t updated; /* '#$' line, NTP seconds; 0 if absent */
  uint64_t expires; /* '#@' line, NTP seconds */
} ntsntp_leap_list;

/*
 * Parses a leap-second list of |len| bytes (need not be NUL-terminated)
 * into |out| and checks its '#h' SHA-1 hash (over the digits of the '#$'
 * and '#@' lines and of the data lines, whitespace and comments left
 * out).  On an error |err| (may be NULL) says what and on which line.
 * Errors:
 *   MALFORMED  a line that is not "NTP-SECONDS TAI-OFFSET [# comment]",
 *              entries not increasing in time, offsets changing by other
 *              than one second, no entry, no '#@' expiry or no '#h' line
 *   AUTH       the hash does not match the contents (a changed or
 *              damaged file)
 *   TOO_LARGE  more than NTSNTP_LEAP_MAX_ENTRIES entries, or |len| over
 *              64 KiB
 *   INVALID_ARG  NULL |text| or |out|
 */
NTSNTP_EXTERN int ntsntp_leap_list_parse(const char *text, size_t len,
                                         ntsntp_leap_list *out, char *err,
                                         size_t errlen);

/* 1 if the list has expired at |ntp_sec| (it says nothing about leap
 * seconds after its expiry), else 0. */
NTSNTP_EXTERN int ntsntp_leap_list_expired(const ntsntp_leap_list *l,
                                           uint64_t ntp_sec);

/*
 * The leap second at the end of the UTC day holding |ntp_sec|, from the
 * list: +1 (23:59:60 inserted), -1 (23:59:59 deleted) or 0 (none, or the
 * list has expired before the end of that day).
 */
NTSNTP_EXTERN int ntsntp_leap_list_day_end(const ntsntp_leap_list *l,
                                           uint64_t ntp_sec);

/* TAI - UTC at |ntp_sec| from the list (0 before its first entry). */
NTSNTP_EXTERN int ntsntp_leap_list_tai_offset(const ntsntp_leap_list *l,
                                              uint64_t ntp_sec);

/* 1 if the UTC day holding |ntp_sec| is 30 June or 31 December, the days
 * chrony allows a leap second at the end of (is_leap_second_day). */
NTSNTP_EXTERN int ntsntp_leap_day_allowed(uint64_t ntp_sec);

/* NTP seconds of the 00:00:00 UTC that ends the day holding |ntp_sec|. */
NTSNTP_EXTERN uint64_t ntsntp_leap_day_end(uint64_t ntp_sec);

/*
 * chrony's leapsecmode: how the served time passes the leap.
 *   SYSTEM  the system clock's kernel inserts or deletes the second (the
 *           served time follows the system clock; ntsd changes nothing)
 *   STEP    the served time steps back (forward) one second at the leap
 *   SLEW    the served time is slewed by one second from the leap on, at
 *           the sync core's slew rate (chrony's maxslewrate: 12 s)
 */
typedef enum ntsntp_leap_mode {
  NTSNTP_LEAP_MODE_SYSTEM = 0,
  NTSNTP_LEAP_MODE_STEP,
  NTSNTP_LEAP_MODE_SLEW
} ntsntp_leap_mode;

/* "system", "step", "slew" (or "unknown"). */
NTSNTP_EXTERN const char *ntsntp_leap_mode_name(ntsntp_leap_mode m);

/* Parses a mode name.  Errors: BAD_CONFIG (not one of the three). */
NTSNTP_EXTERN int ntsntp_leap_mode_parse(const char *name,
                                         ntsntp_leap_mode *out);

/* Leap smear as chrony's `smoothtime 400 0.001024 leaponly`: after the
 * leap the served time converges on UTC with the frequency offset
 * changing by at most NTSNTP_LEAP_SMEAR_WANDER s/s per second, which
 * takes NTSNTP_LEAP_SMEAR_SECONDS (about 17.4 hours, at most 32 ppm). */
#define NTSNTP_LEAP_SMEAR_WANDER 1.024e-9
#define NTSNTP_LEAP_SMEAR_SECONDS 62500.0

/*
 * Seconds to add to the served time |since| seconds after the leap
 * instant (the midnight ending the leap day for an insertion, 23:59:59 of
 * it for a deletion; negative: before), for a leap of |dir| (+1 insert,
 * -1 delete) in |mode|, |smear| on or off, |slew_rate| (s/s) for SLEW.
 * The time corrected is the one before the leap: the system clock's
 * (SYSTEM: it already passed the leap by itself) or the continuous time
 * scale ntsd keeps (STEP, SLEW).  0 before the leap and for |dir| 0.
 */
NTSNTP_EXTERN double ntsntp_leap_correction(ntsntp_leap_mode mode, int smear,
                                            double slew_rate, int dir,
                                            double since);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_LEAP_H */
