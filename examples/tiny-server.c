/*
 * tiny-server: the smallest NTP server on libntsntp's sans-I/O core.
 *
 *   tiny-server PORT
 *
 * One blocking UDP socket on 127.0.0.1, the local clock at stratum 10, no
 * threads, no libuv: it shows the two-call server API.  For a real server
 * (kernel timestamps, workers, NTS-KE) use ntsntp_uv_service (service.h).
 * Built out of tree by CI with `pkg-config --cflags --libs libntsntp-core`:
 * the sans-I/O core alone, without libuv.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <ntsntp/ntsntp.h>

static uint64_t now_ntp(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_from_timespec(&ts);
}

int main(int argc, char **argv) {
  ntsntp_server_settings settings;
  ntsntp_clock_state clock;
  ntsntp_server *srv;
  struct sockaddr_in addr;
  int fd, rv;

  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[1]));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    perror("bind");
    return 1;
  }

  /* No key ring: plain NTP only.  Set settings.keyring for NTS. */
  ntsntp_server_settings_default(&settings);
  rv = ntsntp_server_new(&srv, &settings, NULL, 0);
  if (rv) {
    fprintf(stderr, "ntsntp_server_new: %s\n", ntsntp_strerror(rv));
    return 1;
  }
  ntsntp_clock_state_local(&clock, 10, now_ntp());
  ntsntp_server_set_clock(srv, &clock);

  for (;;) {
    uint8_t req[1024], resp[1024];
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    ntsntp_server_ctx ctx; /* fixed size, on the stack: no allocation */
    ssize_t n = recvfrom(fd, req, sizeof(req), 0, (struct sockaddr *)&peer,
                         &plen);
    uint64_t rx = now_ntp(); /* a real server takes the kernel's timestamp */
    ntsntp_ssize len;
    if (n < 0)
      continue;
    /* 1. Judge the request and do the expensive work. */
    if (ntsntp_server_prepare(srv, req, (size_t)n, rx, &ctx) ==
        NTSNTP_SERVER_DROP) {
      printf("dropped: %s\n", ntsntp_server_reason_name(ctx.reason));
      continue;
    }
    /* 2. Read the clock as late as possible, then seal the response.  The
     *    response is never longer than the request. */
    len = ntsntp_server_finish(srv, &ctx, now_ntp(), resp, sizeof(resp));
    if (len > 0)
      sendto(fd, resp, (size_t)len, 0, (struct sockaddr *)&peer, plen);
  }
}
