/* Runtime helpers: listening sockets with clear errors. */
#ifndef NTSNTP_UV_SOCK_H
#define NTSNTP_UV_SOCK_H

#include <sys/socket.h>

#include "ntsntp/common.h"

/* The default listen set when LISTEN is empty: IPv6 (v6 only) and IPv4. */
extern const char *const ntsntp__sock_wildcards[2];

/*
 * Parses a numeric IPv4 or IPv6 address (brackets allowed for IPv6) with
 * |port| into |ss|.  Errors: INVALID_ARG (|errbuf| says why).
 */
int ntsntp__sock_addr(const char *addr, uint16_t port,
                      struct sockaddr_storage *ss, char *errbuf,
                      size_t errlen);

/*
 * Creates a non-blocking, close-on-exec socket of |type| (SOCK_DGRAM or
 * SOCK_STREAM) bound to |sa| with SO_REUSEADDR, SO_REUSEPORT and, for IPv6,
 * IPV6_V6ONLY; streams also listen().  Returns the fd, or IO with |errbuf|
 * naming the address, the reason and a fix.
 */
int ntsntp__sock_listen(int type, const struct sockaddr *sa, char *errbuf,
                        size_t errlen);

/* The local port of |fd|, or 0. */
uint16_t ntsntp__sock_port(int fd);

/* "addr:port" / "[addr]:port" text for logs. */
void ntsntp__sock_ntop(const struct sockaddr *sa, char *buf, size_t len);

#endif
