/* libntsntp internal: error text for callers' buffers. */
#ifndef NTSNTP_ERRTEXT_H
#define NTSNTP_ERRTEXT_H

#include <stdarg.h>
#include <stddef.h>

/* An internal function the runtime (libntsntp) calls in the core
 * (libntsntp-core): exported under the NTSNTP_PRIVATE version, listed by
 * name in lib/libntsntp-core.map. */
#define NTSNTP__PRIVATE __attribute__((visibility("default")))

/* printf into |buf| (|len| bytes, truncated); nothing when |buf| is NULL or
 * |len| is 0, so every errbuf/errlen pair may be left out by the caller. */
NTSNTP__PRIVATE void ntsntp__errf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ntsntp__errf with a va_list, for the core's own formatting helpers (not
 * exported). */
void ntsntp__verrf(char *buf, size_t len, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
