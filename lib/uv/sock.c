/* Runtime helpers: address parsing and listening sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "errtext.h"
#include "sock.h"

/* Where NTP and NTS-KE listen when LISTEN is empty, in this order (port
 * getters index it): IPv4, then IPv6 (skipped on a host without IPv6). */
const char *const ntsntp__sock_wildcards[2] = {"0.0.0.0", "::"};

int ntsntp__sock_addr(const char *addr, uint16_t port,
                      struct sockaddr_storage *ss, char *errbuf,
                      size_t errlen) {
  struct sockaddr_in *sin = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
  char buf[INET6_ADDRSTRLEN + 2];
  size_t len = strlen(addr);
  memset(ss, 0, sizeof(*ss));
  if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']' &&
      len - 2 < sizeof(buf)) {
    memcpy(buf, addr + 1, len - 2);
    buf[len - 2] = 0;
    addr = buf;
  }
  if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    return 0;
  }
  if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    return 0;
  }
  ntsntp__errf(errbuf, errlen,
           "\"%s\" is not an IPv4 or IPv6 address; fix: LISTEN takes numeric "
           "addresses separated by commas, e.g. 0.0.0.0,::",
           addr);
  return NTSNTP_ERR_INVALID_ARG;
}

void ntsntp__sock_ntop(const struct sockaddr *sa, char *buf, size_t len) {
  char a[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
    snprintf(buf, len, "[%s]:%u", a, ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
    snprintf(buf, len, "%s:%u", a, ntohs(s4->sin_port));
  }
}

int ntsntp__sock_listen(int type, const struct sockaddr *sa, char *errbuf,
                        size_t errlen) {
  int fd, one = 1, err;
  char name[80];
  socklen_t salen = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  const char *what = type == SOCK_DGRAM ? "UDP" : "TCP";
  ntsntp__sock_ntop(sa, name, sizeof(name));
  fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
    goto fail;
  if (sa->sa_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
    goto fail;
  if (bind(fd, sa, salen) < 0)
    goto fail;
  if (type == SOCK_STREAM && listen(fd, 256) < 0)
    goto fail;
  return fd;
fail:
  err = errno;
  if (fd >= 0)
    close(fd);
  ntsntp__errf(errbuf, errlen, "cannot listen on %s %s: %s%s", what, name,
           strerror(err),
           err == EACCES ? " (ports below 1024 need root or "
                           "CAP_NET_BIND_SERVICE; or choose a port above 1023)"
           : err == EADDRINUSE ? " (another server, e.g. chronyd or ntpd, "
                                 "holds the port: stop it or change the port)"
           : err == EADDRNOTAVAIL ? " (no interface has this address: fix "
                                    "LISTEN)"
                                  : "");
  errno = err;
  return NTSNTP_ERR_IO;
}

uint16_t ntsntp__sock_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return 0;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
