/* libntsntp: NTP-64 and short-format conversions; receive timestamps. */
#include <math.h>
#include <string.h>
#include <sys/socket.h>

#include "ntsntp/ts.h"

uint64_t ntsntp_ts_from_timespec(const struct timespec *t) {
  uint64_t sec = (uint64_t)((int64_t)t->tv_sec + (int64_t)NTSNTP_UNIX_OFFSET);
  /* Exact: nsec < 1e9 so nsec << 32 fits in 62 bits. */
  uint64_t frac = ((uint64_t)t->tv_nsec << 32) / 1000000000u;
  return (sec & 0xffffffffu) << 32 | (frac & 0xffffffffu);
}

void ntsntp_ts_to_timespec(uint64_t ts, int64_t pivot, struct timespec *out) {
  uint32_t era_sec = (uint32_t)(ts >> 32);
  /* Unix time of era 0, then move by whole eras towards the pivot. */
  int64_t sec = (int64_t)era_sec - (int64_t)NTSNTP_UNIX_OFFSET;
  /* eras = floor((pivot - sec + 2^31) / 2^32), without signed shifts. */
  int64_t n = pivot - sec + ((int64_t)1 << 31);
  int64_t eras = n >= 0 ? n / ((int64_t)1 << 32)
                        : -((-n + ((int64_t)1 << 32) - 1) / ((int64_t)1 << 32));
  uint64_t nsec;
  sec += eras * ((int64_t)1 << 32);
  nsec = ((ts & 0xffffffffu) * 1000000000u + (1u << 31)) >> 32;
  if (nsec >= 1000000000u) {
    nsec -= 1000000000u;
    sec++;
  }
  out->tv_sec = (time_t)sec;
  out->tv_nsec = (long)nsec;
}

double ntsntp_ts_diff(uint64_t a, uint64_t b) {
  /* Two's complement wrap gives the nearest difference across an era. */
  int64_t d = (int64_t)(a - b);
  return (double)d / 4294967296.0;
}

uint64_t ntsntp_ts_add(uint64_t ts, double seconds) {
  return ts + (uint64_t)(int64_t)llround(seconds * 4294967296.0);
}

uint64_t ntsntp_ts_from_double(double seconds) {
  if (!(seconds > 0))
    return 0;
  if (seconds >= 4294967296.0)
    return UINT64_MAX;
  return (uint64_t)(seconds * 4294967296.0);
}

double ntsntp_ts_to_double(uint64_t ts) { return (double)ts / 4294967296.0; }

uint32_t ntsntp_short_from_double(double seconds) {
  double v;
  if (!(seconds > 0))
    return 0;
  v = ceil(seconds * 65536.0);
  if (v >= 4294967295.0)
    return UINT32_MAX;
  return (uint32_t)v;
}

double ntsntp_short_to_double(uint32_t s) { return (double)s / 65536.0; }

ntsntp_ts_source ntsntp_rx_timestamp(const struct msghdr *msg,
                                     struct timespec *ts) {
  ntsntp_ts_source src = NTSNTP_TS_DAEMON;
  struct cmsghdr *cm;
  for (cm = CMSG_FIRSTHDR(msg); cm != NULL;
       cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET)
      continue;
    if (cm->cmsg_type == SCM_TIMESTAMPING &&
        cm->cmsg_len >= CMSG_LEN(3 * sizeof(struct timespec))) {
      struct timespec t[3];
      memcpy(t, CMSG_DATA(cm), sizeof(t));
      /* t[0] the software stamp, t[2] the raw hardware one; zero: none. */
      if (t[0].tv_sec != 0 || t[0].tv_nsec != 0) {
        *ts = t[0];
        return NTSNTP_TS_KERNEL;
      }
      if (t[2].tv_sec != 0 || t[2].tv_nsec != 0) {
        *ts = t[2];
        src = NTSNTP_TS_HW;
      }
    } else if (cm->cmsg_type == SCM_TIMESTAMPNS &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct timespec)) &&
               src == NTSNTP_TS_DAEMON) {
      struct timespec t;
      memcpy(&t, CMSG_DATA(cm), sizeof(t));
      if (t.tv_sec != 0 || t.tv_nsec != 0) {
        *ts = t;
        return NTSNTP_TS_KERNEL;
      }
    }
  }
  return src;
}
