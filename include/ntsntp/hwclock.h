/*
 * libntsntp: hardware timestamps, sans I/O.  A network card stamps packets
 * with its own clock (the PTP hardware clock, PHC), not the system clock;
 * this module turns PHC times into system times (chrony's hwclock.c).
 *
 * The runtime reads the PHC against the system clock now and then
 * (PTP_SYS_OFFSET_EXTENDED: system time before, PHC, system time after,
 * several times; ntsntp_refclock_phc_sample keeps the reading with the
 * shortest window) and gives each reading to ntsntp_hwclock_add.  A
 * packet's PHC time is converted with ntsntp_hwclock_convert: a weighted
 * least-squares line through the last readings (the PHC and the system
 * clock run at slightly different rates, and the system clock is slewed),
 * evaluated at the packet's PHC time.  No I/O, no clock read, no
 * allocation; one object per network card, used by one thread.
 */
#ifndef NTSNTP_HWCLOCK_H
#define NTSNTP_HWCLOCK_H

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Readings kept for the fit. */
#define NTSNTP_HWCLOCK_SAMPLES 16

typedef struct ntsntp_hwclock {
  unsigned n, next; /* readings held; slot of the next one */
  uint64_t phc[NTSNTP_HWCLOCK_SAMPLES]; /* NTP-64 */
  uint64_t sys[NTSNTP_HWCLOCK_SAMPLES]; /* NTP-64 */
  double err[NTSNTP_HWCLOCK_SAMPLES];   /* s, half the reading's window */
  /* The fit: sys - phc = B + offset + rate * (phc - ref_phc), seconds,
   * where B is the newest reading's sys - phc and ref_phc its PHC time
   * (so that the doubles stay small: the PHC may count from another
   * epoch). */
  uint64_t ref_phc;
  double offset, rate, rms;
  int valid;
  uint64_t resets; /* PHC steps seen (readings dropped) */
} ntsntp_hwclock;

/* An empty converter.  version-added: 0.2.0 */
NTSNTP_EXTERN void ntsntp_hwclock_init(ntsntp_hwclock *h);

/*
 * Adds one reading: the PHC read |phc| at system time |sys| (both NTP-64),
 * within +-|err| seconds.  A PHC that went backwards or jumped (the
 * offset moved by more than 1 ms against the fit) was stepped: the
 * readings so far are dropped and the fit starts again from this one.
 * Returns 0.
 * Errors: INVALID_ARG (|err| negative, not finite or above 1 ms: a
 * reading that slow says nothing; it is not used).
 * version-added: 0.2.0
 */
NTSNTP_EXTERN int ntsntp_hwclock_add(ntsntp_hwclock *h, uint64_t phc,
                                     uint64_t sys, double err);

/*
 * Converts the PHC time |phc| into system time |*sys|, with its error
 * bound |*err| (s; may be NULL): the fit's residual and readings' errors
 * plus, outside the readings, 10 ppm of the extrapolation.  Returns 0.
 * Errors: STATE (fewer than two readings: no rate yet), MALFORMED (|phc|
 * more than 16 s before the first reading or after the last: stale or
 * from another clock; use the software timestamp instead).
 * version-added: 0.2.0
 */
NTSNTP_EXTERN int ntsntp_hwclock_convert(const ntsntp_hwclock *h,
                                         uint64_t phc, uint64_t *sys,
                                         double *err) NTSNTP_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_HWCLOCK_H */
