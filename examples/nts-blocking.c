/*
 * nts-blocking: one authenticated time sample over NTS with blocking
 * sockets and the sans-I/O client (nts_client.h); libntsntp-core only.
 *
 *   nts-blocking HOST [KE-PORT [CA-FILE]]
 *
 * Prints the offset of the local clock from HOST's and exits 0.
 */
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ntsntp/nts_client.h>

static uint64_t ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static uint64_t ntp_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return ntsntp_ts_from_timespec(&t);
}

/* A connected socket to host:port, or -1. */
static int dial(const char *host, unsigned port, int type) {
  struct addrinfo hints = {.ai_socktype = type}, *ai, *a;
  char p[8];
  int fd = -1;
  snprintf(p, sizeof(p), "%u", port);
  if (getaddrinfo(host, p, &hints, &ai) != 0)
    return -1;
  for (a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, 0);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  return fd;
}

int main(int argc, char **argv) {
  ntsntp_nts_client_settings s;
  ntsntp_nts_client *c;
  ntsntp_client_sample sample;
  uint8_t buf[16384];
  char err[256];
  ssize_t n;
  uint64_t t1;
  uint16_t port;
  const char *ntp;
  int fd, rv;

  if (argc < 2) {
    fprintf(stderr, "usage: %s HOST [KE-PORT [CA-FILE]]\n", argv[0]);
    return 2;
  }
  ntsntp_nts_client_settings_default(&s);
  s.server = argv[1];
  s.ca_file = argc > 3 ? argv[3] : NULL;
  if (ntsntp_nts_client_new(&c, &s, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  /* NTS-KE over TCP: move bytes until the exchange is done. */
  fd = dial(argv[1], argc > 2 ? (unsigned)atoi(argv[2]) : 4460, SOCK_STREAM);
  if (fd < 0 || ntsntp_nts_client_ke_begin(c, ms()) != 0)
    goto fail;
  while (!(ntsntp_nts_client_ke_want(c) & (NTSNTP_KE_DONE | NTSNTP_KE_CLOSE))) {
    struct pollfd pfd = {fd, POLLIN, 0};
    ntsntp_ssize w;
    while ((w = ntsntp_nts_client_ke_write(c, buf, sizeof(buf))) > 0)
      if (write(fd, buf, (size_t)w) != w)
        goto fail;
    if (ntsntp_nts_client_handle_expiry(c, ms()) != 0)
      goto fail;
    if (poll(&pfd, 1, 100) > 0) {
      n = read(fd, buf, sizeof(buf));
      ntsntp_nts_client_ke_read(c, buf, n > 0 ? (size_t)n : 0);
    }
  }
  close(fd);
  if (ntsntp_nts_client_ke_end(c, ms()) != 0)
    goto fail;
  /* One NTP request to the server NTS-KE named, one second to answer. */
  ntp = ntsntp_nts_client_ntp_server(c, &port);
  fd = dial(ntp, port, SOCK_DGRAM);
  n = ntsntp_nts_client_request(c, ms(), buf, sizeof(buf));
  t1 = ntp_now();
  if (fd < 0 || n < 0 || send(fd, buf, (size_t)n, 0) != n)
    goto fail;
  do {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 1000) <= 0 || (n = recv(fd, buf, sizeof(buf), 0)) < 0)
      goto fail;
    rv = ntsntp_nts_client_response(c, buf, (size_t)n, t1, ntp_now(), &sample);
  } while (rv != 0 && rv != NTSNTP_ERR_NAK && rv != NTSNTP_ERR_KOD);
  if (rv != 0)
    goto fail;
  printf("%s: offset %+.6f s, delay %.6f s, stratum %u, authenticated\n",
         ntp, sample.offset, sample.delay, sample.hdr.stratum);
  ntsntp_nts_client_del(c);
  return 0;
fail:
  fprintf(stderr, "nts-blocking: %s\n", ntsntp_nts_client_errtext(c)[0]
                                            ? ntsntp_nts_client_errtext(c)
                                            : "no answer");
  ntsntp_nts_client_del(c);
  return 1;
}
