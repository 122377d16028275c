/* libntsntp internal: error text for callers' buffers. */
#ifndef NTSNTP_ERRTEXT_H
#define NTSNTP_ERRTEXT_H

#include <stddef.h>

/* printf into |buf| (|len| bytes, truncated); nothing when |buf| is NULL or
 * |len| is 0, so every errbuf/errlen pair may be left out by the caller. */
void ntsntp__errf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
