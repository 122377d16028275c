/* libntsntp: RFC 5905 section 11.2 selection, clustering and combining. */
#include <math.h>
#include <string.h>

#include "select.h"

typedef struct cand {
  int i;
  double theta, lam, metric;
} cand;

typedef struct edge {
  double v;
  int type; /* -1 lower, 0 midpoint, +1 upper */
} edge;

/* Sorts by value; at equal values lower edges come first so that intervals
 * that just touch still intersect. */
static void sort_edges(edge *e, int n) {
  int i, j;
  for (i = 1; i < n; i++) {
    edge k = e[i];
    for (j = i; j > 0 && (e[j - 1].v > k.v ||
                          (e[j - 1].v == k.v && e[j - 1].type > k.type));
         j--)
      e[j] = e[j - 1];
    e[j] = k;
  }
}

static void sort_cands(cand *c, int n) {
  int i, j;
  for (i = 1; i < n; i++) {
    cand k = c[i];
    for (j = i; j > 0 && c[j - 1].metric > k.metric; j--)
      c[j] = c[j - 1];
    c[j] = k;
  }
}

/*
 * Marzullo's intersection as in RFC 5905 appendix A.5.5.1: the smallest
 * interval containing points of at least n - allow correctness intervals,
 * with at most |allow| midpoints outside it, for allow < n / 2.
 */
static int intersect(const cand *c, int n, double *plow, double *phigh) {
  edge e[3 * NTSNTP_SYNC_MAX_SOURCES];
  int m = 0, i, allow, found, chime;
  double low = 0, high = 0;

  for (i = 0; i < n; i++) {
    e[m].v = c[i].theta - c[i].lam;
    e[m++].type = -1;
    e[m].v = c[i].theta;
    e[m++].type = 0;
    e[m].v = c[i].theta + c[i].lam;
    e[m++].type = +1;
  }
  sort_edges(e, m);
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-11.2.1
   *# 5.  If f < m / 2, then go to step 1 [with f + 1]; otherwise, [the
   *#     intersection is empty]: no majority clique could be found. */
  for (allow = 0; 2 * allow < n; allow++) {
    int got_low = 0, got_high = 0;
    found = 0;
    chime = 0;
    for (i = 0; i < m; i++) {
      chime -= e[i].type;
      if (chime >= n - allow) {
        low = e[i].v;
        got_low = 1;
        break;
      }
      if (e[i].type == 0)
        found++;
    }
    chime = 0;
    for (i = m - 1; i >= 0; i--) {
      chime += e[i].type;
      if (chime >= n - allow) {
        high = e[i].v;
        got_high = 1;
        break;
      }
      if (e[i].type == 0)
        found++;
    }
    if (!got_low || !got_high || found > allow)
      continue;
    if (high >= low) {
      *plow = low;
      *phigh = high;
      return 1;
    }
  }
  return 0;
}

/*
 * refclock: chrony's `trust`.  When trusted candidates have a majority
 * among themselves, their intersection is the one everybody is judged
 * by: a trusted source is a falseticker only when the other trusted ones
 * disagree with it.  Returns 0 when there is no trusted candidate.
 */
static int trusted_interval(const ntsntp__source *src, const cand *c, int m,
                            double *plow, double *phigh) {
  cand t[NTSNTP_SYNC_MAX_SOURCES];
  int k = 0, i;
  for (i = 0; i < m; i++)
    if (src[c[i].i].trust)
      t[k++] = c[i];
  return k > 0 && intersect(t, k, plow, phigh);
}

void ntsntp__select(ntsntp__source *src, unsigned n, uint64_t now, double freq,
                    double max_jitter, unsigned min_sources, int prev_peer,
                    ntsntp__selection *out) {
  cand c[NTSNTP_SYNC_MAX_SOURCES], sv[NTSNTP_SYNC_MAX_SOURCES];
  int m = 0, ns = 0, i, j, peer;
  double low, high, wsum = 0, osum = 0, jsum = 0;
  unsigned leaps[4] = {0, 0, 0, 0};

  memset(out, 0, sizeof(*out));
  out->peer = -1;
  out->leap = NTSNTP_LEAP_NONE;
  for (i = 0; i < (int)n; i++) {
    ntsntp__source *s = &src[i];
    double lam;
    if (s->removed)
      continue;
    if (s->stopped) {
      s->state = NTSNTP_SOURCE_STOPPED;
      continue;
    }
    if (s->reach == 0) {
      s->state = s->ever_reached ? NTSNTP_SOURCE_UNREACHABLE
                                 : NTSNTP_SOURCE_UNUSABLE;
      continue;
    }
    lam = ntsntp__source_root_dist(s, now);
    /*= https://www.rfc-editor.org/rfc/rfc5905#appendix-A.5.5.3
     *# A distance error occurs if the root distance exceeds the
     *# distance threshold plus an increment equal to one poll interval. */
    if (!s->have || s->stratum >= 16 || s->leap == NTSNTP_LEAP_UNSYNC ||
        lam >= NTSNTP_MAXDIST + NTSNTP_PHI * ldexp(1.0, s->poll)) {
      s->state = NTSNTP_SOURCE_UNUSABLE;
      continue;
    }
    if (s->noselect) { /* refclock: chrony's noselect */
      s->state = NTSNTP_SOURCE_UNUSABLE;
      continue;
    }
    if (s->jitter > max_jitter) {
      s->state = NTSNTP_SOURCE_JITTERY;
      continue;
    }
    c[m].i = i;
    c[m].theta = ntsntp__source_offset(s, now, freq);
    c[m].lam = lam;
    /*= https://www.rfc-editor.org/rfc/rfc5905#section-11.2.2
     *# the merit factor [...] is the stratum times MAXDIST plus the root
     *# distance */
    c[m].metric = s->stratum * NTSNTP_MAXDIST + lam;
    m++;
  }
  out->n_cand = (unsigned)m;
  if (m == 0)
    return;
  if (!trusted_interval(src, c, m, &low, &high) &&
      !intersect(c, m, &low, &high)) {
    /* No majority: nobody can be trusted. */
    for (i = 0; i < m; i++)
      src[c[i].i].state = NTSNTP_SOURCE_FALSETICKER;
    return;
  }
  /* Truechimers: correctness interval overlaps the intersection. */
  for (i = 0; i < m; i++) {
    if (c[i].theta + c[i].lam < low || c[i].theta - c[i].lam > high) {
      src[c[i].i].state = NTSNTP_SOURCE_FALSETICKER;
      continue;
    }
    src[c[i].i].state = NTSNTP_SOURCE_SELECTABLE;
    leaps[src[c[i].i].leap & 3]++;
    sv[ns++] = c[i];
  }
  out->n_true = (unsigned)ns;
  for (i = 0; i < 3; i++)
    if (2 * leaps[i] > (unsigned)ns)
      out->leap = (uint8_t)i;
  if ((unsigned)ns < min_sources || ns == 0)
    return;

  sort_cands(sv, ns);
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-11.2.2
   *# [repeat:] For each survivor, compute the selection jitter [...]
   *# If [the maximum] is less than the minimum peer jitter or there
   *# are no more than NMIN survivors, stop; otherwise discard the
   *# survivor with the maximum selection jitter. */
  while (ns > NTSNTP__NMIN) {
    double max_sel = -1, min_peer = INFINITY;
    int worst = 0;
    for (i = 0; i < ns; i++) {
      double d = 0;
      for (j = 0; j < ns; j++)
        d += (sv[i].theta - sv[j].theta) * (sv[i].theta - sv[j].theta);
      d = sqrt(d / (ns - 1));
      if (d > max_sel) {
        max_sel = d;
        worst = i;
      }
      if (src[sv[i].i].jitter < min_peer)
        min_peer = src[sv[i].i].jitter;
    }
    if (max_sel <= min_peer)
      break;
    for (i = worst; i < ns - 1; i++)
      sv[i] = sv[i + 1];
    ns--;
  }
  out->n_surv = (unsigned)ns;

  /* No clock hop while the old system peer survives at the same stratum. */
  peer = 0;
  for (i = 0; i < ns; i++)
    if (sv[i].i == prev_peer &&
        src[sv[i].i].stratum == src[sv[0].i].stratum)
      peer = i;
  /* refclock: a surviving `prefer` source is the system peer. */
  if (!src[sv[peer].i].prefer)
    for (i = ns - 1; i >= 0; i--)
      if (src[sv[i].i].prefer)
        peer = i;
  /*= https://www.rfc-editor.org/rfc/rfc5905#section-11.2.3
   *# the combined offset [is] the weighted average of the survivor
   *# offsets, each weighted by the reciprocal of its root distance */
  for (i = 0; i < ns; i++) {
    double w = 1.0 / sv[i].lam;
    double d = sv[i].theta - sv[peer].theta;
    wsum += w;
    osum += w * sv[i].theta;
    jsum += w * d * d;
    src[sv[i].i].state = NTSNTP_SOURCE_COMBINED;
  }
  src[sv[peer].i].state = NTSNTP_SOURCE_SELECTED;
  out->ok = 1;
  out->peer = sv[peer].i;
  out->offset = osum / wsum;
  out->jitter = sqrt(src[sv[peer].i].jitter * src[sv[peer].i].jitter +
                     jsum / wsum);
}
