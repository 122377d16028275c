/*
 * ntp-query: one plain NTP exchange, printed the way sntp prints it.
 *
 *   ntp-query HOST [PORT]
 *
 * Prints the corrected time, the offset, an error bound (half the round
 * trip delay), the server and its address, stratum and leap indicator, then
 * a line with delay, stratum, reference id, leap, root delay and root
 * dispersion.  Exit status 0 for a valid sample from a synchronized server,
 * 1 otherwise.  Never sets the clock.
 *
 * Uses only the public API; out of tree:
 *   cc ntp-query.c $(pkg-config --cflags --libs libntsntp libuv)
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ntsntp/uv_client.h>

typedef struct state {
  const char *host;
  int ok;
} state;

static void addr_text(const struct sockaddr *sa, char *buf, size_t len) {
  const void *a =
      sa->sa_family == AF_INET6
          ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
          : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
  if (!inet_ntop(sa->sa_family, a, buf, (socklen_t)len))
    snprintf(buf, len, "?");
}

static void on_sample(void *user, const ntsntp_uv_ntp_outcome *o) {
  state *st = user;
  const ntsntp_client_sample *s = o->sample;
  struct timespec now;
  struct tm tm;
  char date[64], zone[16], addr[64] = "?", refid[32];
  double err;

  if (o->status != 0) {
    fprintf(stderr, "ntp-query: %s\n", o->errtext);
    return;
  }
  if (o->peer)
    addr_text(o->peer, addr, sizeof(addr));
  /* The server's time at the moment the answer arrived: t4 + offset. */
  ntsntp_ts_to_timespec(ntsntp_ts_add(s->t4, s->offset),
                        NTSNTP_TS_DEFAULT_PIVOT, &now);
  localtime_r(&now.tv_sec, &tm);
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
  strftime(zone, sizeof(zone), "%z", &tm);
  err = s->delay / 2;
  if (err < 0)
    err = 0;
  printf("%s.%06ld (%s) %+.6f +/- %.6f %s %s s%u %s\n", date,
         now.tv_nsec / 1000, zone, s->offset, err, st->host, addr,
         s->hdr.stratum, ntsntp_leap_name(s->hdr.leap));
  ntsntp_refid_format(s->hdr.refid, s->hdr.stratum, refid, sizeof(refid));
  printf("delay %.6f s, stratum %u, refid %s, leap %s, root delay %.6f s, "
         "root dispersion %.6f s, rx timestamp %s\n",
         s->delay, s->hdr.stratum, refid, ntsntp_leap_name(s->hdr.leap), s->root_delay,
         s->root_disp, o->rx_source == NTSNTP_TS_KERNEL ? "kernel" : "daemon");
  if (s->hdr.leap == NTSNTP_LEAP_UNSYNC || s->hdr.stratum > 15) {
    fprintf(stderr, "ntp-query: %s is not synchronized\n", st->host);
    return;
  }
  st->ok = 1;
}

int main(int argc, char **argv) {
  ntsntp_uv_ntp_query_settings s;
  state st = {NULL, 0};
  uv_loop_t loop;
  char err[256];
  char *end;
  int rv;

  if (argc < 2 || argc > 3 || argv[1][0] == '-') {
    fprintf(stderr, "usage: ntp-query HOST [PORT]\n");
    return 1;
  }
  ntsntp_uv_ntp_query_settings_default(&s);
  s.host = st.host = argv[1];
  if (argc == 3) {
    unsigned long p = strtoul(argv[2], &end, 10);
    if (*end || p == 0 || p > 65535) {
      fprintf(stderr, "ntp-query: bad port \"%s\"\n", argv[2]);
      return 1;
    }
    s.port = (uint16_t)p;
  }
  if (uv_loop_init(&loop) != 0) {
    fprintf(stderr, "ntp-query: cannot create an event loop\n");
    return 1;
  }
  rv = ntsntp_uv_ntp_query_start(&loop, &s, on_sample, &st, NULL, err,
                                 sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "ntp-query: %s\n", err);
    uv_loop_close(&loop);
    return 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return st.ok ? 0 : 1;
}
