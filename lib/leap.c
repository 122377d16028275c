/* libntsntp: leap-second list, announcement rule, served-time correction. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <nettle/sha1.h>

#include "ntsntp/leap.h"

#define MAX_TEXT 65536
#define DAY 86400ULL
/* NTP seconds at 1970-01-01. */
#define UNIX_OFFSET 2208988800ULL

/* "line N: WHAT" (or WHAT alone for N 0) into |err|, if given. */
static void seterr(char *err, size_t errlen, unsigned line, const char *what) {
  if (err && errlen && line)
    snprintf(err, errlen, "line %u: %s", line, what);
  else if (err && errlen)
    snprintf(err, errlen, "%s", what);
}

/* Parses an unsigned decimal at |*p|, skipping blanks before it. */
static int number(const char **p, const char *end, uint64_t *v) {
  const char *q = *p;
  uint64_t x = 0;
  while (q < end && (*q == ' ' || *q == '\t'))
    q++;
  if (q == end || !isdigit((unsigned char)*q))
    return -1;
  while (q < end && isdigit((unsigned char)*q)) {
    if (x > (UINT64_MAX - 9) / 10)
      return -1;
    x = x * 10 + (uint64_t)(*q++ - '0');
  }
  *p = q;
  *v = x;
  return 0;
}

/* Only blanks (and a comment) left on the line. */
static int rest_blank(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
    p++;
  return p == end || *p == '#';
}

/* Feeds the non-blank characters of [p, end) to the hash. */
static void digest(struct sha1_ctx *h, const char *p, const char *end) {
  for (; p < end; p++)
    if (!isspace((unsigned char)*p))
      sha1_update(h, 1, (const uint8_t *)p);
}

static int parse_hash(const char *p, const char *end, uint8_t out[20]) {
  unsigned w;
  for (w = 0; w < 5; w++) {
    uint32_t x = 0;
    unsigned nd = 0;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    while (p < end && isxdigit((unsigned char)*p)) {
      if (++nd > 8)
        return -1;
      x = x << 4 | (uint32_t)(isdigit((unsigned char)*p)
                                  ? *p - '0'
                                  : (tolower((unsigned char)*p) - 'a' + 10));
      p++;
    }
    if (nd == 0)
      return -1;
    out[4 * w] = (uint8_t)(x >> 24);
    out[4 * w + 1] = (uint8_t)(x >> 16);
    out[4 * w + 2] = (uint8_t)(x >> 8);
    out[4 * w + 3] = (uint8_t)x;
  }
  return rest_blank(p, end) ? 0 : -1;
}

int ntsntp_leap_list_parse(const char *text, size_t len, ntsntp_leap_list *out,
                           char *err, size_t errlen) {
  const char *p, *end;
  struct sha1_ctx h;
  uint8_t want[20], got[20];
  int have_hash = 0, have_exp = 0;
  unsigned line = 0;

  if (!text || !out)
    return NTSNTP_ERR_INVALID_ARG;
  p = text;
  end = text + len;
  memset(out, 0, sizeof(*out));
  if (len > MAX_TEXT) {
    seterr(err, errlen, 0, "larger than 64 KiB: not a leap-second list");
    return NTSNTP_ERR_TOO_LARGE;
  }
  sha1_init(&h);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *q;
    uint64_t v, off;
    if (!eol)
      eol = end;
    line++;
    if (have_hash && !rest_blank(p, eol)) {
      seterr(err, errlen, line, "data after the #h line");
      return NTSNTP_ERR_MALFORMED;
    }
    if (eol - p >= 2 && p[0] == '#' && (p[1] == '$' || p[1] == '@')) {
      q = p + 2;
      if (number(&q, eol, &v) || !rest_blank(q, eol)) {
        seterr(err, errlen, line,
               "a #$ or #@ line needs one number of NTP seconds");
        return NTSNTP_ERR_MALFORMED;
      }
      digest(&h, p + 2, eol);
      if (p[1] == '$') {
        out->updated = v;
      } else {
        out->expires = v;
        have_exp = 1;
      }
    } else if (eol - p >= 2 && p[0] == '#' && p[1] == 'h') {
      if (parse_hash(p + 2, eol, want)) {
        seterr(err, errlen, line,
               "the #h line needs five hexadecimal words");
        return NTSNTP_ERR_MALFORMED;
      }
      have_hash = 1;
    } else if (!rest_blank(p, eol)) {
      q = p;
      if (number(&q, eol, &v) || number(&q, eol, &off) || !rest_blank(q, eol) ||
          off > 1000) {
        seterr(err, errlen, line,
               "not \"NTP-SECONDS TAI-OFFSET [# comment]\"");
        return NTSNTP_ERR_MALFORMED;
      }
      if (out->n == NTSNTP_LEAP_MAX_ENTRIES) {
        seterr(err, errlen, line, "too many entries");
        return NTSNTP_ERR_TOO_LARGE;
      }
      if (out->n && (v <= out->e[out->n - 1].ntp_sec ||
                     ((int)off - out->e[out->n - 1].tai_offset != 1 &&
                      (int)off - out->e[out->n - 1].tai_offset != -1))) {
        seterr(err, errlen, line,
               "entries must grow in time, the offset by one second each");
        return NTSNTP_ERR_MALFORMED;
      }
      q = memchr(p, '#', (size_t)(eol - p));
      digest(&h, p, q ? q : eol);
      out->e[out->n].ntp_sec = v;
      out->e[out->n++].tai_offset = (int)off;
    }
    p = eol < end ? eol + 1 : end;
  }
  if (out->n == 0 || !have_exp || !have_hash) {
    seterr(err, errlen, line,
           out->n == 0  ? "no leap-second entry in the list"
           : !have_exp ? "no #@ expiry line"
                       : "no #h hash line (the list cannot be verified)");
    return NTSNTP_ERR_MALFORMED;
  }
  sha1_digest(&h, sizeof(got), got);
  if (memcmp(got, want, sizeof(got))) {
    seterr(err, errlen, line,
           "the #h hash does not match the contents (changed or damaged)");
    memset(out, 0, sizeof(*out));
    return NTSNTP_ERR_AUTH;
  }
  return 0;
}

int ntsntp_leap_list_expired(const ntsntp_leap_list *l, uint64_t ntp_sec) {
  return ntp_sec >= l->expires;
}

uint64_t ntsntp_leap_day_end(uint64_t ntp_sec) {
  return (ntp_sec / DAY + 1) * DAY;
}

int ntsntp_leap_list_day_end(const ntsntp_leap_list *l, uint64_t ntp_sec) {
  uint64_t midnight = ntsntp_leap_day_end(ntp_sec);
  size_t i;
  if (midnight > l->expires)
    return 0;
  for (i = 1; i < l->n; i++)
    if (l->e[i].ntp_sec == midnight)
      return l->e[i].tai_offset - l->e[i - 1].tai_offset;
  return 0;
}

int ntsntp_leap_list_tai_offset(const ntsntp_leap_list *l, uint64_t ntp_sec) {
  int off = 0;
  size_t i;
  for (i = 0; i < l->n && l->e[i].ntp_sec <= ntp_sec; i++)
    off = l->e[i].tai_offset;
  return off;
}

int ntsntp_leap_day_allowed(uint64_t ntp_sec) {
  /* Civil date of the day (Hinnant's days_from_civil, inverted). */
  int64_t z = (int64_t)(ntp_sec / DAY) - (int64_t)(UNIX_OFFSET / DAY) + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  unsigned d = doy - (153 * mp + 2) / 5 + 1;
  unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return (m == 6 && d == 30) || (m == 12 && d == 31);
}

static const char *const mode_names[] = {"system", "step", "slew"};

const char *ntsntp_leap_mode_name(ntsntp_leap_mode m) {
  return (unsigned)m <= NTSNTP_LEAP_MODE_SLEW ? mode_names[m] : "unknown";
}

int ntsntp_leap_mode_parse(const char *name, ntsntp_leap_mode *out) {
  unsigned i;
  for (i = 0; name && i < 3; i++)
    if (!strcmp(name, mode_names[i])) {
      *out = (ntsntp_leap_mode)i;
      return 0;
    }
  return NTSNTP_ERR_BAD_CONFIG;
}

/* How much of the second the smear has passed on |t| s after the leap:
 * constant acceleration to the midpoint, constant deceleration after. */
static double smear(double t) {
  const double w = NTSNTP_LEAP_SMEAR_WANDER,
               half = NTSNTP_LEAP_SMEAR_SECONDS / 2;
  if (t <= 0)
    return 0;
  if (t >= NTSNTP_LEAP_SMEAR_SECONDS)
    return 1;
  if (t <= half)
    return w * t * t / 2;
  t = NTSNTP_LEAP_SMEAR_SECONDS - t;
  return 1 - w * t * t / 2;
}

double ntsntp_leap_correction(ntsntp_leap_mode mode, int smear_on,
                              double slew_rate, int dir, double since) {
  double done_by_system, want;
  if (dir == 0 || !(since >= 0))
    return 0;
  dir = dir > 0 ? 1 : -1;
  /* An inserted second sets the clock back: UTC = before - dir. */
  done_by_system = mode == NTSNTP_LEAP_MODE_SYSTEM ? -dir : 0;
  if (smear_on)
    want = -dir * smear(since);
  else if (mode == NTSNTP_LEAP_MODE_SLEW)
    want = -dir * (slew_rate > 0 ? fmin(1, since * slew_rate) : 1);
  else
    want = -dir;
  return want - done_by_system;
}
