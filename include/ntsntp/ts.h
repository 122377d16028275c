/*
 * libntsntp: NTP time formats (RFC 5905 section 6).
 *
 * NTP-64 timestamps count seconds since 1900-01-01 modulo 2^32 (the era is
 * not on the wire) with a 32-bit binary fraction.  Converting back to Unix
 * time needs a pivot: the result is the time within 68 years of it
 * (chrony's NTP_ERA_SPLIT idea), so the 2036 rollover is handled.
 */
#ifndef NTSNTP_TS_H
#define NTSNTP_TS_H

#include <time.h>

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch). */
#define NTSNTP_UNIX_OFFSET 2208988800ULL

/* Where a receive or transmit timestamp came from (for statistics). */
typedef enum ntsntp_ts_source {
  NTSNTP_TS_DAEMON = 0, /* read by the process after the fact */
  NTSNTP_TS_KERNEL = 1, /* software timestamp from the kernel (cmsg) */
  NTSNTP_TS_HW = 2      /* NIC hardware timestamp */
} ntsntp_ts_source;

/* A local timestamp with its source and error bound (seconds). */
typedef struct ntsntp_local_ts {
  uint64_t ts; /* NTP-64 */
  double err;
  ntsntp_ts_source source;
} ntsntp_local_ts;

/* Unix time (seconds, nanoseconds) to NTP-64.  Wraps at each era. */
NTSNTP_EXTERN uint64_t ntsntp_ts_from_timespec(const struct timespec *t);

/*
 * NTP-64 to Unix time, choosing the era that puts the result in
 * [pivot - 2^31, pivot + 2^31) seconds.  Pass the best known current Unix
 * time as |pivot|, or NTSNTP_TS_DEFAULT_PIVOT when none is known.
 */
NTSNTP_EXTERN void ntsntp_ts_to_timespec(uint64_t ts, int64_t pivot,
                                         struct timespec *out);

/* Default pivot: 2026-01-01, valid for dates 1958..2094. */
#define NTSNTP_TS_DEFAULT_PIVOT 1767225600LL

/* Signed difference a - b in seconds, modulo one era (|a-b| < 68 years). */
NTSNTP_EXTERN double ntsntp_ts_diff(uint64_t a, uint64_t b);

/* NTP-64 plus a signed offset in seconds. */
NTSNTP_EXTERN uint64_t ntsntp_ts_add(uint64_t ts, double seconds);

/* Seconds to NTP-64 fixed point (non-negative, < 2^32). */
NTSNTP_EXTERN uint64_t ntsntp_ts_from_double(double seconds);
NTSNTP_EXTERN double ntsntp_ts_to_double(uint64_t ts);

/*
 * NTP short format (16.16 fixed point, unsigned), used for root delay and
 * root dispersion.  Negative or NaN inputs give 0; large ones saturate.
 */
NTSNTP_EXTERN uint32_t ntsntp_short_from_double(double seconds);
NTSNTP_EXTERN double ntsntp_short_to_double(uint32_t s);

struct msghdr;

/*
 * The kernel receive timestamp in the control data of a datagram received
 * with recvmsg/recvmmsg on a socket with SO_TIMESTAMPING (software receive
 * stamps, or raw hardware ones) or SO_TIMESTAMPNS.  Give the control
 * buffer room for SCM_TIMESTAMPING: CMSG_SPACE(3 * sizeof(struct
 * timespec)).  A software stamp is preferred; a hardware stamp is in the
 * network card's clock (NTSNTP_TS_HW) and must be converted by the
 * caller.  Returns the source, with |*ts| set unless NTSNTP_TS_DAEMON (no
 * stamp: read the clock yourself).  Linux.
 */
NTSNTP_EXTERN ntsntp_ts_source ntsntp_rx_timestamp(const struct msghdr *msg,
                                                   struct timespec *ts);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_TS_H */
