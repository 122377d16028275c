/* Internal: RFC 5905 section 11.2 selection, clustering and combining. */
#ifndef NTSNTP_SELECT_H
#define NTSNTP_SELECT_H

#include "source.h"

#define NTSNTP__NMIN 3 /* survivors kept by clustering (RFC 5905 NMIN) */

typedef struct ntsntp__selection {
  int ok;         /* 1: a majority of truechimers was found */
  int peer;       /* system peer index, -1 if none */
  double offset;  /* combined offset at |now| (raw domain), s */
  double jitter;  /* system jitter, s */
  uint8_t leap;   /* majority of the truechimers, else NONE */
  unsigned n_cand, n_true, n_surv;
} ntsntp__selection;

/*
 * Selects among |n| sources at |now|; |freq| projects filter offsets to
 * |now|.  |prev_peer| (or -1) is kept as system peer when it survives with
 * the first survivor's stratum.  Sets every source's state.
 */
void ntsntp__select(ntsntp__source *src, unsigned n, uint64_t now, double freq,
                    double max_jitter, unsigned min_sources, int prev_peer,
                    ntsntp__selection *out);

#endif
