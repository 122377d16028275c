/* Internal: one upstream source (poll, reach, RFC 5905 clock filter). */
#ifndef NTSNTP_SOURCE_H
#define NTSNTP_SOURCE_H

#include "ntsntp/sync.h"

#define NTSNTP__NSTAGE 8      /* clock filter stages (RFC 5905 NSTAGE) */
#define NTSNTP__SGATE 3.0     /* spike gate (RFC 5905 SGATE) */
#define NTSNTP__NSPIKE 3      /* consecutive outliers taken as a new level */
#define NTSNTP__POLL_GOOD 8   /* good samples before raising the poll */
#define NTSNTP__IBURST_POLL 1 /* 2 s between burst requests */

/* Offsets are kept in the model's raw domain (system clock with the
 * corrections the model itself applied removed), see clock_model.h. */
typedef struct ntsntp__stage {
  uint64_t t; /* system time of the sample (midpoint of t1 and t4) */
  double offset, delay, disp;
  int valid, spike;
} ntsntp__stage;

typedef struct ntsntp__source {
  char name[NTSNTP_SOURCE_NAME_LEN];
  uint32_t refid;
  int8_t minpoll, maxpoll, poll;
  unsigned burst_left;
  uint8_t reach;
  int ever_reached, stopped;
  int removed; /* slot free (ntsntp_sync_remove_source) */
  /* refclock: a reference clock and its selection options. */
  int refclock, noselect, prefer, trust;
  uint32_t kod;
  uint64_t next_poll;
  unsigned good, nspike, missed;
  ntsntp__stage f[NTSNTP__NSTAGE]; /* f[0] newest */
  /* Filter output (RFC 5905 peer variables). */
  int have;
  uint64_t t; /* time of the chosen sample */
  double offset, delay, disp, jitter;
  /* From the last valid sample. */
  uint8_t stratum, leap;
  int8_t precision;
  double root_delay, root_disp, last_offset;
  uint64_t last_rx;
  ntsntp_source_state state;
} ntsntp__source;

void ntsntp__source_init(ntsntp__source *s, const ntsntp_sync_settings *set,
                         const char *name, uint32_t refid, uint64_t now);

/* Request sent: shift reach, schedule the next poll.  |rnd| in [0, 1). */
int ntsntp__source_on_send(ntsntp__source *s, uint64_t now, double rnd);

/* Valid sample with |offset| already in the raw domain, taken at |t|.
 * |freq| is the model's frequency (to project old stages to |t|).
 * Returns 1 if the sample went into the filter, 0 if it is held back as a
 * spike, or MALFORMED/STATE. */
int ntsntp__source_on_sample(ntsntp__source *s, const ntsntp_pkt_hdr *h,
                             uint64_t t, double offset, double delay,
                             double freq, uint64_t now);

/* KoD: 0, or CLOSED when stopped. */
int ntsntp__source_on_kod(ntsntp__source *s, uint32_t code, int8_t srv_poll,
                          uint64_t now);

/* Filter offset projected to |now| with |freq|. */
double ntsntp__source_offset(const ntsntp__source *s, uint64_t now,
                             double freq);

/* RFC 5905 root_dist() at |now|. */
double ntsntp__source_root_dist(const ntsntp__source *s, uint64_t now);

/* The system clock was stepped by |delta|: relabel stored times. */
void ntsntp__source_relabel(ntsntp__source *s, double delta);

#endif
