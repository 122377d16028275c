/*
 * libntsntp runtime, internal: text for the control reports.  A growing
 * buffer (ntsntp__sbuf), JSON strings and numbers, and chronyc's units
 * (intervals, seconds with a unit, ppm).  No I/O, no clock.
 */
#ifndef NTSNTP_UV_CTL_FMT_H
#define NTSNTP_UV_CTL_FMT_H

#include <stddef.h>
#include <stdint.h>

#define NTSNTP__CTL_MAX_REPORT (256 * 1024)

/* Text buffer: grows up to NTSNTP__CTL_MAX_REPORT; an overflow
 * (NTSNTP_ERR_NOBUF) or out of memory (NTSNTP_ERR_NOMEM) is kept in |err|
 * and makes every later write a no-op.  Start it zeroed; free(p). */
typedef struct ntsntp__sbuf {
  char *p;
  size_t len, cap;
  int err;
} ntsntp__sbuf;

void ntsntp__sb_printf(ntsntp__sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A JSON string: quotes, backslashes, control and non-ASCII bytes escaped
 * (names come from configuration). */
void ntsntp__sb_json_str(ntsntp__sbuf *b, const char *s);

/* A JSON number with |prec| decimals; null for NaN or infinity. */
void ntsntp__sb_json_num(ntsntp__sbuf *b, double v, int prec);

/* Whole seconds in 4 columns as chronyc: "  34", " 20m", "  5h", " 12d",
 * "  3y"; "   -" for a negative value (never). */
void ntsntp__sb_interval(ntsntp__sbuf *b, int64_t s);

/* Seconds with a unit (ns, us, ms, s, m, h, d, y) in chronyc's widths;
 * |sign|: always print the sign. */
void ntsntp__sb_seconds(ntsntp__sbuf *b, double v, int sign);

/* ppm in 10 columns, 3 decimals below 99999.5. */
void ntsntp__sb_ppm(ntsntp__sbuf *b, double f, int sign);

/* |h| and a line of '=' as long. */
void ntsntp__sb_header(ntsntp__sbuf *b, const char *h);

/* chronyc's words for a leap indicator ("Normal", "Not synchronised"). */
const char *ntsntp__leap_name(uint8_t leap);

#endif /* NTSNTP_UV_CTL_FMT_H */
