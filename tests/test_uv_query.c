/*
 * Runtime client queries (lib/uv/query.c) against chronyd as a reference
 * NTP/NTS server, on 127.0.0.1 high ports.  chronyd runs with -x (no clock
 * control) and, as root, without CAP_SYS_TIME in its bounding set, so it
 * can never touch the clock.  chronyd and certtool are required: the suite
 * fails (it does not skip) when they are missing.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/uv_client.h"
#include "testutil.h"

static char dir[64];
static pid_t chrony_pid = -1;
static uint16_t ntp_port, ke_port;
static char ca_path[128], other_ca_path[128];

/* ------------------------------------------------------------------ */
/* Helpers: tools, ports, certificates, chronyd                         */
/* ------------------------------------------------------------------ */

/* Looks for |name| in $PATH and the sbin directories. */
static const char *find_tool(const char *name, char *buf, size_t len) {
  const char *env = getenv("PATH");
  char path[1024], *save = NULL, *d;
  static const char *const extra[] = {"/usr/sbin", "/sbin", "/usr/local/sbin",
                                      "/usr/bin"};
  size_t i;
  snprintf(path, sizeof(path), "%s", env ? env : "");
  for (d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(buf, len, "%s/%s", d, name);
    if (access(buf, X_OK) == 0)
      return buf;
  }
  for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
    snprintf(buf, len, "%s/%s", extra[i], name);
    if (access(buf, X_OK) == 0)
      return buf;
  }
  return NULL;
}

/* A free loopback port of |type|, found by binding port 0. */
static uint16_t free_port(int type) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  uint16_t port;
  int fd = socket(AF_INET, type, 0);
  ck_assert_int_ge(fd, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  port = ntohs(sin.sin_port);
  close(fd);
  return port;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
  fputs(text, f);
  fclose(f);
}

/* Runs a command, failing the test with its output when it fails. */
static void run(const char *cmd) {
  char full[2048];
  int rv;
  snprintf(full, sizeof(full), "%s >%s/cmd.log 2>&1", cmd, dir);
  rv = system(full);
  if (rv != 0) {
    char path[128], out[2048] = "";
    FILE *f;
    size_t n;
    snprintf(path, sizeof(path), "%s/cmd.log", dir);
    f = fopen(path, "r");
    if (f) {
      n = fread(out, 1, sizeof(out) - 1, f);
      out[n] = '\0';
      fclose(f);
    }
    ck_abort_msg("command failed (%d): %s\n%s", rv, cmd, out);
  }
}

/* A throwaway CA named |name| in |dir|; with |server|, also a server
 * certificate for localhost, 127.0.0.1 and ::1 signed by it. */
static void make_ca(const char *certtool, const char *name, int server) {
  char cmd[1024], tmpl[160];
  snprintf(tmpl, sizeof(tmpl), "%s/%s.tmpl", dir, name);
  write_file(tmpl, "cn = \"ntsntp test CA\"\nca\ncert_signing_key\n"
                   "expiration_days = 2\n");
  snprintf(cmd, sizeof(cmd),
           "%s --generate-privkey --key-type ecdsa --curve secp256r1 "
           "--outfile %s/%s.key",
           certtool, dir, name);
  run(cmd);
  snprintf(cmd, sizeof(cmd),
           "%s --generate-self-signed --load-privkey %s/%s.key --template %s "
           "--outfile %s/%s.pem",
           certtool, dir, name, tmpl, dir, name);
  run(cmd);
  if (!server)
    return;
  snprintf(tmpl, sizeof(tmpl), "%s/server.tmpl", dir);
  write_file(tmpl, "cn = \"localhost\"\ndns_name = \"localhost\"\n"
                   "ip_address = \"127.0.0.1\"\nip_address = \"::1\"\n"
                   "tls_www_server\nsigning_key\nencryption_key\n"
                   "expiration_days = 2\n");
  snprintf(cmd, sizeof(cmd),
           "%s --generate-privkey --key-type ecdsa --curve secp256r1 "
           "--outfile %s/server.key",
           certtool, dir);
  run(cmd);
  snprintf(cmd, sizeof(cmd),
           "%s --generate-certificate --load-privkey %s/server.key "
           "--load-ca-certificate %s/%s.pem --load-ca-privkey %s/%s.key "
           "--template %s --outfile %s/server.pem",
           certtool, dir, dir, name, dir, name, tmpl, dir);
  run(cmd);
}

static void dump_chrony_log(void) {
  char path[128], buf[4096];
  FILE *f;
  size_t n;
  snprintf(path, sizeof(path), "%s/chronyd.log", dir);
  f = fopen(path, "r");
  if (!f)
    return;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  fprintf(stderr, "--- chronyd.log ---\n%s-------------------\n", buf);
}

static int tcp_port_open(uint16_t port) {
  struct sockaddr_in sin;
  int fd = socket(AF_INET, SOCK_STREAM, 0), rv;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  rv = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
  close(fd);
  return rv == 0;
}

/* Does a 48-byte NTP request to |port| get an answer within 200 ms? */
static int ntp_port_answers(uint16_t port) {
  struct sockaddr_in sin;
  struct timeval tv = {0, 200000};
  uint8_t req[48] = {0x23}, resp[512];
  int fd = socket(AF_INET, SOCK_DGRAM, 0), ok;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  req[47] = 1; /* non-zero transmit timestamp */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
       send(fd, req, sizeof(req), 0) == (ssize_t)sizeof(req) &&
       recv(fd, resp, sizeof(resp), 0) >= 48;
  close(fd);
  return ok;
}

static void start_chronyd(void) {
  char chronyd[256], certtool[256], conf[160], text[1024], logf[160];
  const char *cd = find_tool("chronyd", chronyd, sizeof(chronyd));
  const char *ct = find_tool("certtool", certtool, sizeof(certtool));
  int i, status;

  ck_assert_msg(cd != NULL, "chronyd not found: install chrony (the "
                            "integration suite needs it)");
  ck_assert_msg(ct != NULL, "certtool not found: install gnutls-bin (the "
                            "integration suite needs it)");
  snprintf(dir, sizeof(dir), "/tmp/ntsntp-uvq-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir)); /* mode 0700, as chronyd wants */
  make_ca(ct, "ca", 1);
  make_ca(ct, "other", 0);
  snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
  snprintf(other_ca_path, sizeof(other_ca_path), "%s/other.pem", dir);

  ntp_port = free_port(SOCK_DGRAM);
  ke_port = free_port(SOCK_STREAM);
  snprintf(conf, sizeof(conf), "%s/chrony.conf", dir);
  snprintf(text, sizeof(text),
           "local stratum 1\n"
           "port %u\n"
           "ntsport %u\n"
           "ntsservercert %s/server.pem\n"
           "ntsserverkey %s/server.key\n"
           "ntsdumpdir %s\n"
           "bindaddress 127.0.0.1\n"
           "allow 127.0.0.1\n"
           "cmdport 0\n"
           "bindcmdaddress %s/chronyd.sock\n"
           "pidfile %s/chronyd.pid\n",
           ntp_port, ke_port, dir, dir, dir, dir, dir);
  write_file(conf, text);
  snprintf(logf, sizeof(logf), "%s/chronyd.log", dir);

  chrony_pid = fork();
  ck_assert_int_ge(chrony_pid, 0);
  if (chrony_pid == 0) {
    int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    if (geteuid() == 0) {
      char setpriv[256];
      if (find_tool("setpriv", setpriv, sizeof(setpriv)))
        /* -4: nothing may answer on ::1, so the client's fallback from
         * ::1 to 127.0.0.1 ("localhost") is what gets tested. */
        execl(setpriv, setpriv, "--bounding-set", "-sys_time", cd, "-4", "-u",
              "root", "-x", "-d", "-f", conf, (char *)NULL);
      fprintf(stderr, "setpriv not found: refusing to run chronyd as root "
                      "with CAP_SYS_TIME\n");
      _exit(127);
    }
    execl(cd, cd, "-4", "-U", "-x", "-d", "-f", conf, (char *)NULL);
    _exit(127);
  }
  /* Wait until both ports answer (chronyd binds them at start-up). */
  for (i = 0; i < 100; i++) {
    if (waitpid(chrony_pid, &status, WNOHANG) == chrony_pid) {
      chrony_pid = -1;
      dump_chrony_log();
      ck_abort_msg("chronyd exited at start-up (status 0x%x)", status);
    }
    if (tcp_port_open(ke_port) && ntp_port_answers(ntp_port))
      return;
    usleep(100000);
  }
  dump_chrony_log();
  ck_abort_msg("chronyd did not open ports %u/%u", ntp_port, ke_port);
}

static void stop_chronyd(void) {
  int i, status;
  char cmd[160];
  if (chrony_pid > 0) {
    kill(chrony_pid, SIGTERM);
    for (i = 0; i < 50; i++) {
      if (waitpid(chrony_pid, &status, WNOHANG) == chrony_pid)
        break;
      usleep(100000);
    }
    if (i == 50) {
      kill(chrony_pid, SIGKILL);
      waitpid(chrony_pid, &status, 0);
    }
    chrony_pid = -1;
  }
  if (dir[0] && strncmp(dir, "/tmp/ntsntp-uvq-", 16) == 0) {
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", dir);
  }
}

/* ------------------------------------------------------------------ */
/* Running queries                                                     */
/* ------------------------------------------------------------------ */

typedef struct ke_out {
  int calls;
  int status;
  char errtext[512];
  ntsntp_ke_result r;
  int have_peer, have_ntp_addr;
  struct sockaddr_storage ntp_addr;
} ke_out;

typedef struct ntp_out {
  int calls;
  int status;
  char errtext[512];
  ntsntp_client_sample s;
  int have_sample;
  ntsntp_ts_source src, tx_src;
  uint64_t t1, t4;
  unsigned requests, cookies_used;
} ntp_out;

static void on_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  ke_out *k = user;
  k->calls++;
  k->status = o->status;
  snprintf(k->errtext, sizeof(k->errtext), "%s", o->errtext);
  if (o->result)
    k->r = *o->result;
  k->have_peer = o->peer != NULL;
  if (o->ntp_addr) {
    k->have_ntp_addr = 1;
    memcpy(&k->ntp_addr, o->ntp_addr,
           o->ntp_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in));
  }
}

static void on_ntp(void *user, const ntsntp_uv_ntp_outcome *o) {
  ntp_out *n = user;
  n->calls++;
  n->status = o->status;
  snprintf(n->errtext, sizeof(n->errtext), "%s", o->errtext);
  if (o->sample) {
    n->s = *o->sample;
    n->have_sample = 1;
  }
  n->src = o->rx_source;
  n->tx_src = o->tx_source;
  n->t1 = o->t1;
  n->t4 = o->t4;
  n->requests = o->requests;
  n->cookies_used = o->cookies_used;
}

/* ntsntp_uv_ntp_outcome_nts with the outcome |n| recorded. */
static int report_nts(ntsntp_nts_client *c, const ntp_out *n) {
  ntsntp_uv_ntp_outcome o;
  memset(&o, 0, sizeof(o));
  o.status = n->status;
  o.errtext = n->errtext;
  o.sample = n->have_sample ? &n->s : NULL;
  o.requests = n->requests;
  o.cookies_used = n->cookies_used;
  return ntsntp_uv_ntp_outcome_nts(c, &o);
}

/* Runs one KE query to completion; the loop must end with nothing open. */
static void ke_run(ntsntp_uv_ke_query_settings *s, ke_out *k) {
  uv_loop_t loop;
  memset(k, 0, sizeof(*k));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(ntsntp_uv_ke_query_start(&loop, s, on_ke, k, NULL, NULL, 0),
                   0);
  ck_assert_int_eq(k->calls, 0); /* never from within start */
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(k->calls, 1);
}

static void ntp_run(ntsntp_uv_ntp_query_settings *s, ntp_out *n) {
  uv_loop_t loop;
  memset(n, 0, sizeof(*n));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(
      ntsntp_uv_ntp_query_start(&loop, s, on_ntp, n, NULL, NULL, 0), 0);
  ck_assert_int_eq(n->calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(n->calls, 1);
}

static void ke_settings(ntsntp_uv_ke_query_settings *s, const char *host,
                        uint16_t port, const char *ca) {
  ntsntp_uv_ke_query_settings_default(s);
  s->host = host;
  s->port = port;
  s->ke.ca_file = ca;
  s->timeout_ms = 5000;
}

/* NTS parameters from |k| with all its cookies. */
static void nts_settings(ntsntp_uv_ntp_query_settings *s, const ke_out *k,
                         const uint8_t **cookies) {
  size_t i;
  ntsntp_uv_ntp_query_settings_default(s);
  s->host = k->r.ntp_server;
  s->port = k->r.ntp_port;
  s->addr = (const struct sockaddr *)&k->ntp_addr;
  s->timeout_ms = 500;
  s->aead = k->r.aead;
  s->c2s = k->r.c2s;
  s->s2c = k->r.s2c;
  for (i = 0; i < k->r.ncookies; i++)
    cookies[i] = k->r.cookies[i];
  s->cookies = cookies;
  s->cookie_len = k->r.cookie_len;
  s->ncookies = k->r.ncookies;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

START_TEST(nts_ke_then_authenticated_ntp) {
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ntp_query_settings ns;
  const uint8_t *cookies[NTSNTP_KE_MAX_COOKIES];
  ntsntp_client_sample prev;
  ke_out k;
  ntp_out n;
  size_t i;

  /* "localhost" may resolve to ::1 first, where nothing listens: the
   * query must go on to 127.0.0.1. */
  ke_settings(&ks, "localhost", ke_port, ca_path);
  ke_run(&ks, &k);
  ck_assert_msg(k.status == 0, "KE failed: %d %s", k.status, k.errtext);
  ck_assert_str_eq(k.errtext, "");
  ck_assert_int_eq(k.r.aead, NTSNTP_AEAD_AES_SIV_CMAC_256);
  ck_assert_uint_eq(k.r.key_len, 32);
  ck_assert_uint_eq(k.r.ncookies, 8);
  for (i = 0; i < k.r.ncookies; i++)
    ck_assert_uint_gt(k.r.cookie_len[i], 0);
  /* chronyd sends Port Negotiation because its port is not 123. */
  ck_assert_uint_eq(k.r.ntp_port, ntp_port);
  ck_assert(k.have_peer);
  ck_assert(k.have_ntp_addr);
  ck_assert_int_eq(k.ntp_addr.ss_family, AF_INET);
  ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&k.ntp_addr)->sin_port),
                    ntp_port);

  nts_settings(&ns, &k, cookies);
  ns.placeholders = 2;
  ntp_run(&ns, &n);
  ck_assert_msg(n.status == 0, "NTP failed: %d %s", n.status, n.errtext);
  ck_assert_int_eq(n.s.authenticated, 1);
  ck_assert_msg(fabs(n.s.offset) < 1e-3, "offset %g", n.s.offset);
  ck_assert(n.s.delay >= 0 && n.s.delay < 0.1);
  ck_assert_uint_eq(n.s.hdr.stratum, 1);
  ck_assert_uint_eq(n.s.hdr.leap, NTSNTP_LEAP_NONE);
  ck_assert_uint_eq(n.s.n_cookies, 3); /* one plus two placeholders */
  for (i = 0; i < n.s.n_cookies; i++)
    ck_assert_uint_eq(n.s.cookie_len[i], k.r.cookie_len[0]);
  ck_assert_uint_eq(n.requests, 1);
  ck_assert_uint_eq(n.cookies_used, 1);
  ck_assert_int_eq(n.src, NTSNTP_TS_KERNEL);

  /* A cookie returned by the server works for the next exchange. */
  prev = n.s; /* ntp_run clears |n| */
  cookies[0] = prev.cookies[0];
  ns.cookies = cookies;
  ns.cookie_len = prev.cookie_len;
  ns.ncookies = 1;
  ns.placeholders = 0;
  ntp_run(&ns, &n);
  ck_assert_msg(n.status == 0, "NTP failed: %d %s", n.status, n.errtext);
  ck_assert_int_eq(n.s.authenticated, 1);
  ck_assert_uint_eq(n.s.n_cookies, 1);

  /* The same through an NTS client: its keys, one cookie and the
   * placeholders that fill its jar again. */
  {
    ntsntp_nts_client_settings cs;
    ntsntp_nts_client *nc;
    ntsntp_nts_client_keys rk;
    ntsntp_nts_client_info info;
    uint8_t unsent[NTSNTP_COOKIE_MAX_LEN];
    ntsntp_nts_client_settings_default(&cs);
    cs.server = "localhost";
    ck_assert_int_eq(ntsntp_nts_client_new(&nc, &cs, NULL, 0), 0);
    ck_assert_int_eq(ntsntp_nts_client_ke_result(nc, 0, &k.r), 0);
    /* A request lost: its cookie is spent, so the next asks for one more
     * (a placeholder) to fill the jar again. */
    ck_assert_int_eq(ntsntp_nts_client_request_keys(nc, 0, &rk), 0);
    ck_assert_uint_eq(rk.placeholders, 0);
    ck_assert_int_eq(
        ntsntp_nts_client_request_done(nc, NTSNTP_ERR_TIMEOUT, NULL), 0);
    ck_assert_int_eq(ntsntp_nts_client_request_keys(nc, 0, &rk), 0);
    ck_assert_uint_eq(rk.placeholders, 1);
    /* A query that sends nothing (the name does not resolve): its cookie
     * goes back and is the next one handed out. */
    memcpy(unsent, rk.cookie, rk.cookie_len);
    ntsntp_uv_ntp_query_settings_default(&ns);
    ns.host = "nonexistent.invalid";
    ntsntp_uv_ntp_query_settings_nts(&ns, &rk);
    ntp_run(&ns, &n);
    ck_assert_int_eq(n.status, NTSNTP_ERR_IO);
    ck_assert_uint_eq(n.requests, 0);
    ck_assert_int_eq(report_nts(nc, &n), 0);
    ntsntp_nts_client_get_info(nc, &info);
    ck_assert_uint_eq(info.cookies, 7);
    ck_assert_uint_eq(info.requests, 1); /* the lost one only */
    ck_assert_int_eq(ntsntp_nts_client_request_keys(nc, 0, &rk), 0);
    ck_assert_mem_eq(rk.cookie, unsent, rk.cookie_len);
    ck_assert_uint_eq(rk.placeholders, 1);
    ntsntp_uv_ntp_query_settings_default(&ns);
    ns.host = "127.0.0.1";
    ns.port = ntp_port;
    ntsntp_uv_ntp_query_settings_nts(&ns, &rk);
    ck_assert_uint_eq(ns.ncookies, 1);
    ntp_run(&ns, &n);
    ck_assert_msg(n.status == 0, "NTP failed: %d %s", n.status, n.errtext);
    ck_assert_int_eq(n.s.authenticated, 1);
    ck_assert_uint_eq(n.requests, 1);
    ck_assert_uint_eq(n.s.n_cookies, 2); /* one plus the placeholder */
    ck_assert_int_eq(report_nts(nc, &n), 0);
    ntsntp_nts_client_get_info(nc, &info);
    ck_assert_uint_eq(info.cookies, 8);
    ntsntp_nts_client_del(nc);
  }
  ntsntp_ke_result_clear(&k.r);
}
END_TEST

START_TEST(nts_ke_ip_literal) {
  ntsntp_uv_ke_query_settings ks;
  ke_out k;
  /* The certificate carries IP:127.0.0.1 in its SAN. */
  ke_settings(&ks, "127.0.0.1", ke_port, ca_path);
  ke_run(&ks, &k);
  ck_assert_msg(k.status == 0, "KE failed: %d %s", k.status, k.errtext);
  ck_assert_str_eq(k.r.ntp_server, "127.0.0.1");
  ck_assert_uint_eq(k.r.ntp_port, ntp_port);
  ntsntp_ke_result_clear(&k.r);
}
END_TEST

START_TEST(nts_untrusted_ca) {
  ntsntp_uv_ke_query_settings ks;
  ke_out k;
  char want[128];
  ke_settings(&ks, "localhost", ke_port, other_ca_path);
  ke_run(&ks, &k);
  ck_assert_int_eq(k.status, NTSNTP_ERR_TLS);
  snprintf(want, sizeof(want),
           "TLS handshake with localhost:%u failed: ", ke_port);
  ck_assert_msg(strncmp(k.errtext, want, strlen(want)) == 0, "%s", k.errtext);
  ck_assert_msg(strstr(k.errtext, "certificate is NOT trusted") != NULL, "%s",
                k.errtext);
  ck_assert_uint_eq(k.r.ncookies, 0);
}
END_TEST

START_TEST(nts_wrong_name) {
  ntsntp_uv_ke_query_settings ks;
  ke_out k;
  /* Trusted CA, but the certificate is not for this name. */
  ke_settings(&ks, "127.0.0.1", ke_port, ca_path);
  ks.ke.server_name = "time.example.com";
  ke_run(&ks, &k);
  ck_assert_int_eq(k.status, NTSNTP_ERR_TLS);
  ck_assert_msg(strstr(k.errtext, "TLS handshake with 127.0.0.1:") != NULL,
                "%s", k.errtext);
  ck_assert_msg(strstr(k.errtext, "does not match") != NULL, "%s", k.errtext);
}
END_TEST

START_TEST(nts_connection_refused) {
  ntsntp_uv_ke_query_settings ks;
  ke_out k;
  char want[128];
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  /* A bound socket that does not listen: the port stays ours, and the
   * kernel answers a SYN with a reset. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  ke_settings(&ks, "127.0.0.1", ntohs(sin.sin_port), ca_path);
  ke_run(&ks, &k);
  close(fd);
  ck_assert_int_eq(k.status, NTSNTP_ERR_IO);
  snprintf(want, sizeof(want),
           "Could not connect to 127.0.0.1:%u: Connection refused",
           ntohs(sin.sin_port));
  ck_assert_str_eq(k.errtext, want);
}
END_TEST

START_TEST(nts_ke_timeout) {
  ntsntp_uv_ke_query_settings ks;
  ke_out k;
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  struct timespec a, b;
  double el;
  /* Listens but never accepts: TCP connects, TLS never answers. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  ck_assert_int_eq(listen(fd, 4), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  ke_settings(&ks, "127.0.0.1", ntohs(sin.sin_port), ca_path);
  ks.timeout_ms = 300;
  clock_gettime(CLOCK_MONOTONIC, &a);
  ke_run(&ks, &k);
  clock_gettime(CLOCK_MONOTONIC, &b);
  close(fd);
  el = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  ck_assert_int_eq(k.status, NTSNTP_ERR_TIMEOUT);
  ck_assert_msg(strstr(k.errtext, "Timeout reached") != NULL, "%s", k.errtext);
  ck_assert_msg(el > 0.25 && el < 3.0, "took %g s", el);
}
END_TEST

START_TEST(nts_bad_ca_file) {
  ntsntp_uv_ke_query_settings ks;
  ke_out k;
  ke_settings(&ks, "localhost", ke_port, "/nonexistent/ca.pem");
  ke_run(&ks, &k);
  ck_assert_int_eq(k.status, NTSNTP_ERR_BAD_CONFIG);
  ck_assert_str_eq(k.errtext, "Could not load trusted certificates from "
                              "/nonexistent/ca.pem: No such file or "
                              "directory");
}
END_TEST

START_TEST(nts_bad_cookie_gets_nak) {
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ntp_query_settings ns;
  const uint8_t *cookies[NTSNTP_KE_MAX_COOKIES];
  ke_out k;
  ntp_out n;
  ke_settings(&ks, "127.0.0.1", ke_port, ca_path);
  ke_run(&ks, &k);
  ck_assert_int_eq(k.status, 0);
  k.r.cookies[0][k.r.cookie_len[0] - 1] ^= 1; /* breaks the cookie's tag */
  nts_settings(&ns, &k, cookies);
  ns.ncookies = 1;
  ntp_run(&ns, &n);
  ck_assert_int_eq(n.status, NTSNTP_ERR_NAK);
  ck_assert_msg(strstr(n.errtext, "NAK") != NULL, "%s", n.errtext);
  ck_assert_int_eq(n.have_sample, 1);
  ck_assert_uint_eq(n.s.hdr.stratum, 0);
  ck_assert_uint_eq(n.s.hdr.refid, NTSNTP_KOD_NTSN);
  ck_assert_uint_eq(n.cookies_used, 1);
  ntsntp_ke_result_clear(&k.r);
}
END_TEST

START_TEST(nts_wrong_key_is_ignored) {
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ntp_query_settings ns;
  const uint8_t *cookies[NTSNTP_KE_MAX_COOKIES];
  ke_out k;
  ntp_out n;
  ke_settings(&ks, "127.0.0.1", ke_port, ca_path);
  ke_run(&ks, &k);
  ck_assert_int_eq(k.status, 0);
  /* Responses then fail authentication: they must be ignored, and each
   * retry must spend a new cookie. */
  k.r.s2c[0] ^= 1;
  nts_settings(&ns, &k, cookies);
  ns.timeout_ms = 150;
  ns.attempts = 2;
  ntp_run(&ns, &n);
  ck_assert_int_eq(n.status, NTSNTP_ERR_TIMEOUT);
  ck_assert_uint_eq(n.requests, 2);
  ck_assert_uint_eq(n.cookies_used, 2);
  ck_assert_int_eq(n.have_sample, 0);
  ntsntp_ke_result_clear(&k.r);
}
END_TEST

START_TEST(plain_ntp) {
  ntsntp_uv_ntp_query_settings ns;
  ntp_out n;
  ntsntp_uv_ntp_query_settings_default(&ns);
  ns.host = "127.0.0.1";
  ns.port = ntp_port;
  ntp_run(&ns, &n);
  ck_assert_msg(n.status == 0, "NTP failed: %d %s", n.status, n.errtext);
  ck_assert_int_eq(n.s.authenticated, 0);
  ck_assert_uint_eq(n.s.hdr.stratum, 1);
  ck_assert_uint_eq(n.s.hdr.version, 4);
  ck_assert_msg(fabs(n.s.offset) < 1e-3, "offset %g", n.s.offset);
  ck_assert_uint_eq(n.s.n_cookies, 0);
  ck_assert_uint_eq(n.cookies_used, 0);
}
END_TEST

/* Interleaved mode against chronyd (which serves it): kernel transmit
 * timestamps of our requests, then interleaved samples from the third
 * exchange on (chrony answers interleaved once it has a transmit
 * timestamp of its previous response), plain and NTS. */
static void xleave_polls(ntsntp_uv_ntp_query_settings *ns, int nts,
                         const ke_out *k, const uint8_t **cookies) {
  ntsntp_client_xleave xl;
  ntsntp_client_sample prev;
  ntp_out n;
  int i, inter = 0;
  memset(&xl, 0, sizeof(xl));
  ns->xleave = &xl;
  for (i = 0; i < 6; i++) {
    ntp_run(ns, &n);
    ck_assert_msg(n.status == 0, "NTP failed: %d %s", n.status, n.errtext);
    ck_assert_int_eq(n.tx_src, NTSNTP_TS_KERNEL);
    ck_assert_int_eq(n.s.authenticated, nts);
    ck_assert_msg(fabs(n.s.offset) < 1e-3, "offset %g", n.s.offset);
    ck_assert(n.s.delay >= 0 && n.s.delay < 0.01);
    if (i < 2)
      ck_assert_int_eq(n.s.interleaved, 0);
    inter += n.s.interleaved;
    if (n.s.interleaved)
      /* The previous exchange: its send time and chronyd's receive time. */
      ck_assert_uint_eq(n.s.t2, xl.t2);
    ntsntp_client_xleave_update(&xl, &n.s, n.t1, n.t4);
    if (nts) {
      prev = n.s;
      cookies[0] = prev.cookies[0];
      ns->cookies = cookies;
      ns->cookie_len = prev.cookie_len;
      ns->ncookies = 1;
    }
    usleep(20000);
  }
  (void)k;
  ck_assert_msg(inter >= 3, "%d interleaved samples of 6", inter);
}

START_TEST(plain_ntp_xleave) {
  ntsntp_uv_ntp_query_settings ns;
  ntsntp_uv_ntp_query_settings_default(&ns);
  ns.host = "127.0.0.1";
  ns.port = ntp_port;
  xleave_polls(&ns, 0, NULL, NULL);
}
END_TEST

START_TEST(nts_xleave) {
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ntp_query_settings ns;
  const uint8_t *cookies[NTSNTP_KE_MAX_COOKIES];
  ke_out k;
  ke_settings(&ks, "127.0.0.1", ke_port, ca_path);
  ke_run(&ks, &k);
  ck_assert_msg(k.status == 0, "KE failed: %d %s", k.status, k.errtext);
  nts_settings(&ns, &k, cookies);
  xleave_polls(&ns, 1, &k, cookies);
  ntsntp_ke_result_clear(&k.r);
}
END_TEST

START_TEST(plain_ntp_timeout) {
  ntsntp_uv_ntp_query_settings ns;
  ntp_out n;
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  char want[128];
  /* A bound UDP socket that never answers. */
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  ntsntp_uv_ntp_query_settings_default(&ns);
  ns.addr = (const struct sockaddr *)&sin;
  ns.timeout_ms = 100;
  ns.attempts = 3;
  ntp_run(&ns, &n);
  close(fd);
  ck_assert_int_eq(n.status, NTSNTP_ERR_TIMEOUT);
  ck_assert_uint_eq(n.requests, 3);
  snprintf(want, sizeof(want),
           "No response from 127.0.0.1:%u (3 requests, 100 ms each)",
           ntohs(sin.sin_port));
  ck_assert_str_eq(n.errtext, want);
}
END_TEST

START_TEST(plain_ntp_port_unreachable) {
  ntsntp_uv_ntp_query_settings ns;
  ntp_out n;
  /* Nothing on the port: ICMP port unreachable, then a timeout that says
   * so. */
  ntsntp_uv_ntp_query_settings_default(&ns);
  ns.host = "127.0.0.1";
  ns.port = free_port(SOCK_DGRAM);
  ns.timeout_ms = 100;
  ns.attempts = 2;
  ntp_run(&ns, &n);
  ck_assert_int_eq(n.status, NTSNTP_ERR_TIMEOUT);
  ck_assert_uint_eq(n.requests, 2);
  ck_assert_msg(strstr(n.errtext, "Connection refused") != NULL, "%s",
                n.errtext);
}
END_TEST

START_TEST(resolve_failure) {
  ntsntp_uv_ntp_query_settings ns;
  ntp_out n;
  ntsntp_uv_ntp_query_settings_default(&ns);
  ns.host = "nonexistent.invalid";
  ntp_run(&ns, &n);
  ck_assert_int_eq(n.status, NTSNTP_ERR_IO);
  ck_assert_msg(
      strncmp(n.errtext, "Could not resolve nonexistent.invalid", 37) == 0,
      "%s", n.errtext);
}
END_TEST

static void count_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  (void)o;
  ++*(int *)user;
}
static void count_ntp(void *user, const ntsntp_uv_ntp_outcome *o) {
  (void)o;
  ++*(int *)user;
}
static void never_ke(void *user, const ntsntp_uv_ke_outcome *o) {
  (void)user, (void)o;
  ck_abort_msg("callback of a failed start");
}
static void never_ntp(void *user, const ntsntp_uv_ntp_outcome *o) {
  (void)user, (void)o;
  ck_abort_msg("callback of a failed start");
}

START_TEST(cancel_frees_everything) {
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ntp_query_settings ns;
  ntsntp_uv_ke_query *kq;
  ntsntp_uv_ntp_query *nq;
  uv_loop_t loop;
  int step, cancelled_ke = 0, cancelled_ntp = 0;

  ke_settings(&ks, "localhost", ke_port, ca_path);
  ntsntp_uv_ntp_query_settings_default(&ns);
  /* An IP literal: an NTP query uses the first address a name resolves to,
   * and "localhost" may give ::1, where nothing answers. */
  ns.host = "127.0.0.1";
  ns.port = ntp_port;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  /* Cancel at every point up to completion: while resolving, connecting,
   * in TLS, draining, waiting for the NTP answer.  A query that already
   * reported must not be cancelled (its handle is gone). */
  for (step = 0; step < 40; step++) {
    int i, ke_calls = 0, ntp_calls = 0, ke_cancel = 0, ntp_cancel = 0;
    ck_assert_int_eq(
        ntsntp_uv_ke_query_start(&loop, &ks, count_ke, &ke_calls, &kq, NULL, 0),
        0);
    ck_assert_int_eq(ntsntp_uv_ntp_query_start(&loop, &ns, count_ntp,
                                               &ntp_calls, &nq, NULL, 0),
                     0);
    for (i = 0; i < step; i++)
      uv_run(&loop, UV_RUN_ONCE);
    if (!ke_calls) {
      ntsntp_uv_ke_query_cancel(kq);
      ke_cancel = 1;
    }
    if (!ntp_calls) {
      ntsntp_uv_ntp_query_cancel(nq);
      ntp_cancel = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    /* Exactly one of: reported once, or cancelled and never reported. */
    ck_assert_int_eq(ke_calls, !ke_cancel);
    ck_assert_int_eq(ntp_calls, !ntp_cancel);
    cancelled_ke += ke_cancel;
    cancelled_ntp += ntp_cancel;
  }
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_gt(cancelled_ke, 0);
  ck_assert_int_gt(cancelled_ntp, 0);
}
END_TEST

START_TEST(invalid_args) {
  ntsntp_uv_ke_query_settings ks;
  ntsntp_uv_ntp_query_settings ns;
  uv_loop_t loop;
  uint8_t key[32] = {0}, cookie[200] = {0};
  const uint8_t *cookies[1] = {cookie};
  size_t clen[1] = {sizeof(cookie)};
  ntsntp_uv_ntp_query *nq = (void *)1;
  char err[256] = "";

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ntsntp_uv_ke_query_settings_default(&ks);
  ck_assert_int_eq(ntsntp_uv_ke_query_start(&loop, &ks, never_ke, NULL, NULL,
                                            err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG); /* no host */
  ck_assert_ptr_nonnull(strstr(err, "host missing"));
  ks.host = "localhost";
  ck_assert_int_eq(
      ntsntp_uv_ke_query_start(&loop, &ks, NULL, NULL, NULL, NULL, 0),
      NTSNTP_ERR_INVALID_ARG);
  ks.ke.naeads = 1;
  ks.ke.aeads[0] = 99; /* no supported AEAD */
  ck_assert_int_eq(ntsntp_uv_ke_query_start(&loop, &ks, never_ke, NULL, NULL,
                                            err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(err, "AEAD"));

  ntsntp_uv_ntp_query_settings_default(&ns);
  ck_assert_int_eq(ntsntp_uv_ntp_query_start(&loop, &ns, never_ntp, NULL, &nq,
                                             err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG); /* neither host nor addr */
  ck_assert_ptr_nonnull(strstr(err, "neither host nor addr"));
  ck_assert_ptr_null(nq);
  ns.host = "127.0.0.1";
  ns.aead = NTSNTP_AEAD_AES_SIV_CMAC_256;
  ns.c2s = ns.s2c = key;
  ck_assert_int_eq(
      ntsntp_uv_ntp_query_start(&loop, &ns, never_ntp, NULL, NULL, NULL, 0),
      NTSNTP_ERR_INVALID_ARG); /* no cookies */
  ns.cookies = cookies;
  ns.cookie_len = clen;
  ns.ncookies = 1;
  ck_assert_int_eq(
      ntsntp_uv_ntp_query_start(&loop, &ns, never_ntp, NULL, NULL, NULL, 0),
      NTSNTP_ERR_INVALID_ARG); /* cookie too long */
  clen[0] = 100;
  ns.placeholders = 8;
  ck_assert_int_eq(
      ntsntp_uv_ntp_query_start(&loop, &ns, never_ntp, NULL, NULL, NULL, 0),
      NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("uv_query");
  TCase *tc = tcase_create("chronyd");
  tcase_add_unchecked_fixture(tc, start_chronyd, stop_chronyd);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, nts_ke_then_authenticated_ntp);
  tcase_add_test(tc, nts_ke_ip_literal);
  tcase_add_test(tc, nts_untrusted_ca);
  tcase_add_test(tc, nts_wrong_name);
  tcase_add_test(tc, nts_connection_refused);
  tcase_add_test(tc, nts_ke_timeout);
  tcase_add_test(tc, nts_bad_ca_file);
  tcase_add_test(tc, nts_bad_cookie_gets_nak);
  tcase_add_test(tc, nts_wrong_key_is_ignored);
  tcase_add_test(tc, plain_ntp);
  tcase_add_test(tc, plain_ntp_xleave);
  tcase_add_test(tc, nts_xleave);
  tcase_add_test(tc, plain_ntp_timeout);
  tcase_add_test(tc, plain_ntp_port_unreachable);
  tcase_add_test(tc, resolve_failure);
  tcase_add_test(tc, cancel_frees_everything);
  tcase_add_test(tc, invalid_args);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  /* Our own children only: chronyd is waited for by PID. */
  signal(SIGPIPE, SIG_IGN);
  return tu_run(suite());
}
