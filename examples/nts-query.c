/*
 * nts-query: measure a server's offset with NTS, like
 *   chronyd -Q 'server HOST iburst nts maxsamples 1'
 *
 *   nts-query [--ca FILE] [--port KE_PORT] [--ntp-port P] [--samples N]
 *             [--plain] [--insecure-time] HOST
 *
 * Runs NTS-KE with HOST (certificate checked against the system trust store
 * or --ca FILE), then N NTP exchanges authenticated with the keys and
 * cookies it got.  The sans-I/O NTS client (nts_client.h) keeps the keys
 * and the cookie jar: one cookie per request, refilled from the cookies
 * each response carries (with placeholders when it runs low); libuv's
 * queries move the bytes.  The NTP server and port are those the
 * KE server negotiated; --ntp-port is used when it sent no port.  With
 * --plain, NTS-KE is skipped and the exchanges are plain NTP (to compare).
 * --insecure-time skips certificate validity periods, for a client whose
 * clock is not set yet.
 *
 * Exit status 0 only if every sample was valid (and authenticated, without
 * --plain).  Never sets the clock.
 *
 * Uses only the public API; out of tree:
 *   cc nts-query.c $(pkg-config --cflags --libs libntsntp libuv)
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ntsntp/nts_client.h>
#include <ntsntp/uv_client.h>

#define ATTEMPTS 3 /* requests per sample, each with its own cookie */

typedef struct state {
  uv_loop_t *loop;
  ntsntp_nts_client *nts; /* NULL with --plain */
  /* NTS-KE outcome. */
  int ke_status;
  struct sockaddr_storage ntp_addr;
  int have_ntp_addr;
  /* Last NTP outcome. */
  int ntp_status;
  int authenticated;
} state;

static void addr_text(const struct sockaddr *sa, char *buf, size_t len) {
  char a[64];
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

static void on_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  state *st = user;
  const ntsntp_ke_result *r = o->result;
  char peer[80] = "?";

  st->ke_status = o->status;
  if (o->status != 0) {
    fprintf(stderr, "nts-query: %s\n", o->errtext);
    return;
  }
  /* Keys and cookies go to the NTS client (the library wipes |r|). */
  st->ke_status = ntsntp_nts_client_ke_result(st->nts, uv_now(st->loop), r);
  if (st->ke_status != 0) {
    fprintf(stderr, "nts-query: NTS-KE gave no cookie an NTP request can "
                    "carry\n");
    return;
  }
  if (o->ntp_addr) {
    memcpy(&st->ntp_addr, o->ntp_addr,
           o->ntp_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in));
    st->have_ntp_addr = 1;
  }
  if (o->peer)
    addr_text(o->peer, peer, sizeof(peer));
  printf("NTS-KE with %s: AEAD %d, %zu cookies of %zu bytes, NTP server %s "
         "port %u\n",
         peer, r->aead, r->ncookies, r->cookie_len[0], r->ntp_server,
         r->ntp_port);
}

static void on_sample(void *user, const ntsntp_uv_ntp_outcome *o) {
  state *st = user;
  st->ntp_status = o->status;
  st->authenticated = 0;
  /* New cookies into the jar; a NAK drops keys and cookies; the cookie
   * of a request never sent goes back. */
  if (st->nts)
    ntsntp_uv_ntp_outcome_nts(st->nts, o);
  if (o->status == 0) {
    const ntsntp_client_sample *s = o->sample;
    char refid[32];
    st->authenticated = s->authenticated;
    ntsntp_refid_format(s->hdr.refid, s->hdr.stratum, refid, sizeof(refid));
    printf("offset %+.6f s, delay %.6f s, stratum %u, refid %s, leap %s, "
           "authenticated: %s, cookies received: %u\n",
           s->offset, s->delay, s->hdr.stratum, refid, ntsntp_leap_name(s->hdr.leap),
           s->authenticated ? "yes" : "no", s->n_cookies);
    if (s->hdr.leap == NTSNTP_LEAP_UNSYNC || s->hdr.stratum > 15) {
      fprintf(stderr, "nts-query: the server is not synchronized\n");
      st->ntp_status = -1;
    }
  } else {
    fprintf(stderr, "nts-query: %s\n", o->errtext);
  }
}

static int parse_port(const char *arg, uint16_t *out) {
  char *end;
  unsigned long p = strtoul(arg, &end, 10);
  if (*arg == '\0' || *end || p == 0 || p > 65535) {
    fprintf(stderr, "nts-query: bad port \"%s\"\n", arg);
    return -1;
  }
  *out = (uint16_t)p;
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: nts-query [--ca FILE] [--port KE_PORT] [--ntp-port P] "
          "[--samples N] [--plain] [--insecure-time] HOST\n");
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"ca", required_argument, NULL, 'c'},
      {"port", required_argument, NULL, 'p'},
      {"ntp-port", required_argument, NULL, 'n'},
      {"samples", required_argument, NULL, 's'},
      {"plain", no_argument, NULL, 'P'},
      {"insecure-time", no_argument, NULL, 'i'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static state st;
  const char *ca = NULL, *host;
  uint16_t ke_port = NTSNTP_KE_PORT, ntp_port = 123;
  int have_ntp_port = 0, plain = 0, insecure = 0, opt, rv, good = 0;
  long samples = 1, i;
  uv_loop_t loop;
  char err[256];
  char *end;

  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (opt) {
    case 'c':
      ca = optarg;
      break;
    case 'p':
      if (parse_port(optarg, &ke_port))
        return 1;
      break;
    case 'n':
      if (parse_port(optarg, &ntp_port))
        return 1;
      have_ntp_port = 1;
      break;
    case 's':
      samples = strtol(optarg, &end, 10);
      if (*end || samples < 1 || samples > 1000) {
        fprintf(stderr, "nts-query: --samples takes 1..1000\n");
        return 1;
      }
      break;
    case 'P':
      plain = 1;
      break;
    case 'i':
      insecure = 1;
      break;
    default:
      usage();
      return 1;
    }
  }
  if (optind != argc - 1) {
    usage();
    return 1;
  }
  host = argv[optind];
  if (uv_loop_init(&loop) != 0) {
    fprintf(stderr, "nts-query: cannot create an event loop\n");
    return 1;
  }

  st.loop = &loop;
  if (!plain) {
    ntsntp_nts_client_settings cs;
    ntsntp_uv_ke_query_settings ks;
    uint16_t port;
    ntsntp_nts_client_settings_default(&cs);
    cs.server = host;
    if (ntsntp_nts_client_new(&st.nts, &cs, err, sizeof(err)) != 0) {
      fprintf(stderr, "nts-query: %s\n", err);
      goto out;
    }
    ntsntp_uv_ke_query_settings_default(&ks);
    ks.host = host;
    ks.port = ke_port;
    ks.ke.ca_file = ca;
    ks.ke.skip_time_checks = insecure;
    rv = ntsntp_uv_ke_query_start(&loop, &ks, on_ke, &st, NULL, err,
                                  sizeof(err));
    if (rv != 0) {
      fprintf(stderr, "nts-query: %s\n", err);
      goto out;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (st.ke_status != 0)
      goto out;
    /* A negotiated port wins; 123 is also what no Port record means. */
    host = ntsntp_nts_client_ntp_server(st.nts, &port);
    if (!have_ntp_port || port != 123)
      ntp_port = port;
    if (st.have_ntp_addr) {
      struct sockaddr_in *s4 = (struct sockaddr_in *)&st.ntp_addr;
      struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&st.ntp_addr;
      if (st.ntp_addr.ss_family == AF_INET6)
        s6->sin6_port = htons(ntp_port);
      else
        s4->sin_port = htons(ntp_port);
    }
  }

  for (i = 0; i < samples; i++) {
    ntsntp_uv_ntp_query_settings ns;
    ntsntp_nts_client_keys rk;
    int attempt = 0;

    do { /* NTS: a request that got no answer is sent again, fresh cookie */
      ntsntp_uv_ntp_query_settings_default(&ns);
      ns.host = host;
      ns.port = ntp_port;
      if (st.have_ntp_addr)
        ns.addr = (const struct sockaddr *)&st.ntp_addr;
      if (!plain) {
        if (ntsntp_nts_client_request_keys(st.nts, uv_now(&loop), &rk)) {
          const char *why = ntsntp_nts_client_errtext(st.nts);
          fprintf(stderr, "nts-query: %s\n", why[0] ? why : "out of cookies");
          goto out;
        }
        ntsntp_uv_ntp_query_settings_nts(&ns, &rk);
      }
      rv = ntsntp_uv_ntp_query_start(&loop, &ns, on_sample, &st, NULL, err,
                                     sizeof(err));
      if (rv != 0) {
        fprintf(stderr, "nts-query: %s\n", err);
        goto out;
      }
      uv_run(&loop, UV_RUN_DEFAULT);
    } while (!plain && st.ntp_status == NTSNTP_ERR_TIMEOUT &&
             ++attempt < ATTEMPTS);
    if (st.ntp_status == 0 && (plain || st.authenticated))
      good++;
  }

out:
  uv_run(&loop, UV_RUN_DEFAULT); /* let closing handles finish */
  uv_loop_close(&loop);
  ntsntp_nts_client_del(st.nts);
  return good == samples ? 0 : 1;
}
