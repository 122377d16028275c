/*
 * libntsntp runtime: the real system clock operations (Linux adjtimex).
 * Only used when clock control is configured; the tests inject a simulated
 * clock instead and never call these.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

#include "ntsntp/sync.h"

#define KERNEL_MAX_FREQ_PPM 500.0 /* MAXFREQ in kernel/time/ntp.c */
#define MAX_SINGLESHOT 2000.0     /* s; adjtime's usec offset stays in range */

static int sys_read(void *user, struct timespec *ts) {
  (void)user;
  return clock_gettime(CLOCK_REALTIME, ts) ? -1 : 0;
}

static int sys_slew(void *user, double offset, double freq_ppm) {
  struct timex tx;
  (void)user;
  if (!isfinite(offset) || !isfinite(freq_ppm))
    return -1;
  freq_ppm = fmax(fmin(freq_ppm, KERNEL_MAX_FREQ_PPM), -KERNEL_MAX_FREQ_PPM);
  offset = fmax(fmin(offset, MAX_SINGLESHOT), -MAX_SINGLESHOT);
  memset(&tx, 0, sizeof(tx));
  if (adjtimex(&tx) < 0)
    return -1;
  /* The kernel PLL/FLL would fight the model: off. */
  tx.modes = ADJ_FREQUENCY | ADJ_STATUS;
  tx.status &= ~(STA_PLL | STA_FLL | STA_PPSFREQ | STA_PPSTIME);
  /* freq is in ppm with a 16-bit binary fraction. */
  tx.freq = (long)lround(freq_ppm * 65536.0);
  if (adjtimex(&tx) < 0)
    return -1;
  /* A single-shot offset is slewed at 500 ppm and replaces the previous
   * one (adjtime semantics); NTSNTP_KERNEL_SLEW_PPM in the model. */
  memset(&tx, 0, sizeof(tx));
  tx.modes = ADJ_OFFSET_SINGLESHOT;
  tx.offset = (long)lround(offset * 1e6);
  return adjtimex(&tx) < 0 ? -1 : 0;
}

static int sys_step(void *user, double offset) {
  struct timex tx;
  double sec;
  (void)user;
  if (!isfinite(offset) || fabs(offset) > 1e9)
    return -1;
  memset(&tx, 0, sizeof(tx));
  tx.modes = ADJ_OFFSET_SINGLESHOT; /* offset 0: cancel a pending slew */
  if (adjtimex(&tx) < 0)
    return -1;
  memset(&tx, 0, sizeof(tx));
  /* A relative step, applied atomically by the kernel (Linux >= 2.6.39):
   * no read-modify-write race with the clock ticking. */
  tx.modes = ADJ_SETOFFSET | ADJ_NANO;
  sec = floor(offset);
  tx.time.tv_sec = (time_t)sec;
  tx.time.tv_usec = (long)lround((offset - sec) * 1e9); /* ns with ADJ_NANO */
  if (tx.time.tv_usec >= 1000000000L) {
    tx.time.tv_sec++;
    tx.time.tv_usec -= 1000000000L;
  }
  return adjtimex(&tx) < 0 ? -1 : 0;
}

static int sys_set_rtc(void *user) {
  struct timex tx;
  (void)user;
  memset(&tx, 0, sizeof(tx));
  if (adjtimex(&tx) < 0)
    return -1;
  /* chrony's rtcsync: a synchronised status makes the kernel copy the
   * system time to the RTC every 11 minutes. */
  tx.modes = ADJ_STATUS | ADJ_MAXERROR | ADJ_ESTERROR;
  tx.status &= ~STA_UNSYNC;
  tx.maxerror = 0;
  tx.esterror = 0;
  return adjtimex(&tx) < 0 ? -1 : 0;
}

/* The kernel inserts (STA_INS) or deletes (STA_DEL) a second at the next
 * UTC midnight, and keeps the bit until it is cleared (after the leap). */
static int sys_set_leap(void *user, int dir) {
  struct timex tx;
  (void)user;
  memset(&tx, 0, sizeof(tx));
  if (adjtimex(&tx) < 0)
    return -1;
  tx.modes = ADJ_STATUS;
  tx.status &= ~(STA_INS | STA_DEL);
  tx.status |= dir > 0 ? STA_INS : dir < 0 ? STA_DEL : 0;
  return adjtimex(&tx) < 0 ? -1 : 0;
}

void ntsntp_uv_sysclock_ops(ntsntp_clock_ops *ops) {
  memset(ops, 0, sizeof(*ops));
  ops->read = sys_read;
  ops->slew = sys_slew;
  ops->step = sys_step;
  ops->set_leap = sys_set_leap;
  ops->set_rtc = sys_set_rtc;
}
