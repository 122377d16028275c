/* libntsntp runtime: text for the control reports (see ctl_fmt.h). */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ntsntp/common.h"
#include "ntsntp/pkt.h"

#include "ctl_fmt.h"
#include "../mem.h"

void ntsntp__sb_printf(ntsntp__sbuf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  if (b->err)
    return;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->err = NTSNTP_ERR_NOBUF;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    {
      size_t cap = b->cap ? b->cap * 2 : 4096;
      char *p;
      while (cap < b->len + (size_t)n + 1)
        cap *= 2;
      if (cap > NTSNTP__CTL_MAX_REPORT) {
        b->err = NTSNTP_ERR_NOBUF;
        return;
      }
      p = ntsntp__realloc(b->p, cap);
      if (!p) {
        b->err = NTSNTP_ERR_NOMEM;
        return;
      }
      b->p = p;
      b->cap = cap;
    }
  }
}

/* A JSON string; names come from configuration, so escape everything. */
void ntsntp__sb_json_str(ntsntp__sbuf *b, const char *s) {
  ntsntp__sb_printf(b, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      ntsntp__sb_printf(b, "\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f)
      ntsntp__sb_printf(b, "\\u%04x", ch);
    else
      ntsntp__sb_printf(b, "%c", ch);
  }
  ntsntp__sb_printf(b, "\"");
}

/* JSON has no NaN or infinity. */
void ntsntp__sb_json_num(ntsntp__sbuf *b, double v, int prec) {
  if (isfinite(v))
    ntsntp__sb_printf(b, "%.*f", prec, v);
  else
    ntsntp__sb_printf(b, "null");
}

/* ------------------------------------------------------------------------ */
/* chronyc's units                                                           */
/* ------------------------------------------------------------------------ */

/* Whole seconds in 4 columns: "  34", " 20m", "  5h", " 12d", "  3y";
 * "   -" for never. */
void ntsntp__sb_interval(ntsntp__sbuf *b, int64_t s) {
  if (s < 0)
    ntsntp__sb_printf(b, "   -");
  else if (s < 1200)
    ntsntp__sb_printf(b, "%4" PRId64, s);
  else if (s < 36000)
    ntsntp__sb_printf(b, "%3" PRId64 "m", s / 60);
  else if (s < 345600)
    ntsntp__sb_printf(b, "%3" PRId64 "h", s / 3600);
  else if (s / 86400 <= 999)
    ntsntp__sb_printf(b, "%3" PRId64 "d", s / 86400);
  else
    ntsntp__sb_printf(b, "%3" PRId64 "y", s / 86400 / 365);
}

/* Seconds with a unit: 4 digits (5 with the sign) for ns/us/ms, then one
 * more column for s, m, h, d, y, as chronyc prints them. */
void ntsntp__sb_seconds(ntsntp__sbuf *b, double v, int sign) {
  static const struct {
    double limit, scale;
    const char *unit;
    int prec;
  } u[] = {
      {9999.5e-9, 1e9, "ns", 0},
      {9999.5e-6, 1e6, "us", 0},
      {9999.5e-3, 1e3, "ms", 0},
      {999.5, 1, "s", 1},
      {99999.5, 1, "s", 0},
      {99999.5 * 60, 1.0 / 60, "m", 0},
      {99999.5 * 3600, 1.0 / 3600, "h", 0},
      {99999.5 * 86400, 1.0 / 86400, "d", 0},
  };
  double x = fabs(v);
  size_t i;
  int w;
  if (!isfinite(v)) {
    ntsntp__sb_printf(b, sign ? "    nan" : "   nan");
    return;
  }
  for (i = 0; i < sizeof(u) / sizeof(u[0]); i++)
    if (x < u[i].limit)
      break;
  w = (i < 3 ? 4 : 5) + (sign ? 1 : 0);
  if (i == sizeof(u) / sizeof(u[0]))
    ntsntp__sb_printf(b, sign ? "%+*.0fy" : "%*.0fy", w,
                      (sign ? v : x) / (86400.0 * 365));
  else
    ntsntp__sb_printf(b, sign ? "%+*.*f%s" : "%*.*f%s", w, u[i].prec,
                      (sign ? v : x) * u[i].scale, u[i].unit);
}

void ntsntp__sb_ppm(ntsntp__sbuf *b, double f, int sign) {
  int prec = fabs(f) < 99999.5 ? 3 : 0;
  ntsntp__sb_printf(b, sign ? "%+10.*f" : "%10.*f", prec, f);
}

void ntsntp__sb_header(ntsntp__sbuf *b, const char *h) {
  size_t n = strlen(h);
  ntsntp__sb_printf(b, "%s\n", h);
  while (n--)
    ntsntp__sb_printf(b, "=");
  ntsntp__sb_printf(b, "\n");
}

const char *ntsntp__leap_name(uint8_t leap) {
  switch (leap) {
  case NTSNTP_LEAP_NONE:
    return "Normal";
  case NTSNTP_LEAP_INSERT:
    return "Insert second";
  case NTSNTP_LEAP_DELETE:
    return "Delete second";
  default:
    return "Not synchronised";
  }
}
