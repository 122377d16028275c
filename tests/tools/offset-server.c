/*
 * offset-server: a test NTP server whose clock is off by a given amount.
 *
 *   offset-server PORT OFFSET_SECONDS
 *
 * PORT 0 picks a free port; the port bound is printed on stdout as
 * "port N".
 * Serves stratum 1 on 127.0.0.1:PORT with the system time plus OFFSET, to
 * play a falseticker (or a good server, with offset 0) in the sync tests
 * without touching the machine's clock.  Exits on SIGTERM.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <ntsntp/ntsntp.h>

static uint64_t now_ntp(double offset) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_add(ntsntp_ts_from_timespec(&ts), offset);
}

int main(int argc, char **argv) {
  ntsntp_server_settings settings;
  ntsntp_clock_state cs;
  ntsntp_server *srv;
  struct sockaddr_in addr;
  double offset;
  int fd;

  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT OFFSET_SECONDS\n", argv[0]);
    return 2;
  }
  offset = atof(argv[2]);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[1]));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    perror("offset-server: bind");
    return 1;
  }
  {
    socklen_t alen = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    printf("port %u\n", ntohs(addr.sin_port));
    fflush(stdout);
  }
  ntsntp_server_settings_default(&settings);
  if (ntsntp_server_new(&srv, &settings, NULL, 0))
    return 1;
  for (;;) {
    uint8_t req[1024], resp[1024];
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    ntsntp_server_ctx ctx;
    ssize_t n = recvfrom(fd, req, sizeof(req), 0, (struct sockaddr *)&peer,
                         &plen);
    uint64_t rx = now_ntp(offset);
    ntsntp_ssize len;
    if (n < 0)
      continue;
    ntsntp_clock_state_local(&cs, 1, rx);
    cs.refid = NTSNTP_KOD('G', 'P', 'S', 0);
    ntsntp_server_set_clock(srv, &cs);
    if (ntsntp_server_prepare(srv, req, (size_t)n, rx, &ctx) ==
        NTSNTP_SERVER_DROP)
      continue;
    len = ntsntp_server_finish(srv, &ctx, now_ntp(offset), resp, sizeof(resp));
    if (len > 0)
      sendto(fd, resp, (size_t)len, 0, (struct sockaddr *)&peer, plen);
  }
}
