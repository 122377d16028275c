/*
 * ntsd: the ntsntp time server.  Wiring only: the settings are
 * libntsntp's (service_conf.h) and the server is its runtime
 * (ntsntp_uv_service); here are the start-up order, the privileges and
 * the signals.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <ntsntp/conf.h>
#include <ntsntp/privdrop.h>
#include <ntsntp/sandbox.h>
#include <ntsntp/service.h>
#include <ntsntp/service_conf.h>
#include <ntsntp/version.h>

/* Variables of the cturra/ntp image (chrony) that ntsd does not read: said
 * at start rather than ignored in silence (docs/docker.md, Migrating). */
static const ntsntp_conf_foreign_var foreign[] = {
    {"ENABLE_NTS", "NTS is on when NTS_CERT and NTS_KEY are set; for NTS to "
                   "an upstream write nts://HOST in NTP_SERVERS"},
    {"NOCLIENTLOG", "ntsd logs no client accesses; its only per-client "
                    "state is the rate-limit table (CLIENT_LOG_LIMIT)"},
    {"TZ", "ntsd logs in UTC and NTP carries UTC; remove it"},
    {"NTP_SERVER", "the setting is NTP_SERVERS, with an S"},
    {"LISTENIFACE", "use LISTEN with the interface's addresses"},
    {"CHRONY_EXTRA", "there is no chrony.conf; ntsd --help lists the "
                     "settings"},
};

static uv_signal_t sig_term, sig_int, sig_hup;
static ntsntp_uv_service *svc;
static ntsntp_uv_service_conf *conf;
static ntsntp_privsep *helper;

static void log_line(int level, const char *msg) {
  ntsntp_uv_service_conf_log(conf, level, msg);
}

/* `ntsctl reload sources`: the configuration, then the sources. */
static int ctl_reload(void *user, char *msg, size_t len) {
  return ntsntp_uv_service_conf_reload(user, svc, msg, len);
}

/* SIGHUP: the configuration and the sources, then the certificate. */
static void reload(void) {
  char msg[2200];
  ntsntp_uv_service_conf_reload(conf, svc, msg, sizeof(msg));
  ntsntp_uv_service_reload(svc);
}

static void stopped(void *user) {
  (void)user;
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&sig_hup, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  if (signum == SIGHUP) {
    reload();
    return;
  }
  (void)h;
  log_line(NTSNTP_LOG_INFO, "ntsd exiting");
  uv_signal_stop(&sig_term);
  uv_signal_stop(&sig_int);
  ntsntp_uv_service_stop(svc, stopped, NULL);
}

/* FATAL is above every LOG_LEVEL: always printed. */
static int fatal(const char *what) {
  char msg[2048];
  snprintf(msg, sizeof(msg), "Fatal error : %s", what);
  log_line(NTSNTP_LOG_FATAL, msg);
  ntsntp_privsep_del(helper);
  return 1;
}

int main(int argc, char **argv) {
  static char err[2048], msg[2048], user[NTSNTP_CONF_STR_MAX];
  const ntsntp_conf_opt *opts;
  ntsntp_uv_service_settings s;
  uv_loop_t *loop;
  size_t n_opts;
  int rv, seccomp;

  rv = ntsntp_uv_service_conf_load(&conf, argc, argv, "ntsd", NTSNTP_VERSION,
                                   err, sizeof(err));
  if (rv)
    return rv == 1 ? 0 : (fprintf(stderr, "ntsd: %s\n", err), 2);
  /* Every setting is checked before the service is named as starting. */
  rv = ntsntp_uv_service_conf_settings(conf, &s, err, sizeof(err));
  if (rv)
    return fatal(err);
  ntsntp_uv_service_conf_get(conf, "NTSD_USER", user, sizeof(user));
  ntsntp_uv_service_conf_get(conf, "SECCOMP", msg, sizeof(msg));
  seccomp = !strcmp(msg, "yes");
  snprintf(msg, sizeof(msg), "ntsd version %s starting (+NTS +IPV6 "
           "+AES-SIV-CMAC-256 +AES-SIV-CMAC-512 %cAES-128-GCM-SIV %cSECCOMP)",
           NTSNTP_VERSION, NTSNTP_HAVE_GCM_SIV ? '+' : '-',
           ntsntp_sandbox_available() ? '+' : '-');
  log_line(NTSNTP_LOG_INFO, msg);
  /* A peer that closes while ntsd writes (ntsctl, a /metrics scraper)
   * must cost ntsd an EPIPE, not its life (service.h). */
  signal(SIGPIPE, SIG_IGN);
  /* Before the first loop: libuv must not open an io_uring the filter
   * would have to allow. */
  rv = seccomp ? ntsntp_sandbox_prepare(err, sizeof(err)) : 0;
  if (rv && rv != NTSNTP_ERR_UNSUPPORTED)
    return fatal(err);
  loop = uv_default_loop();
  log_line(NTSNTP_LOG_INFO, s.clock_control
                                ? "Enabled control of system clock"
                                : "Disabled control of system clock");
  if (s.n_servers == 1 && !strcmp(s.servers[0], "127.127.1.1") &&
      !s.refclocks[0]) {
    snprintf(msg, sizeof(msg), "Serving the local clock (stratum %u, "
             "reference ID 7F7F0101)", (unsigned)s.local_stratum);
    log_line(NTSNTP_LOG_INFO, msg);
  }
  opts = ntsntp_uv_service_conf_options(&n_opts);
  ntsntp_conf_foreign(opts, n_opts, foreign,
                      sizeof(foreign) / sizeof(foreign[0]), "ntsd",
                      ntsntp_uv_service_conf_log, conf);

  s.reload_sources = ctl_reload;
  s.reload_user = conf;
  /* Before any thread or socket: the helper that keeps what the server
   * gives up (reading root-only certificate keys, setting the clock). */
  rv = ntsntp_uv_service_privsep(&s, user, seccomp, &s.privsep, err,
                                 sizeof(err));
  if (rv)
    return fatal(err);
  helper = s.privsep;
  if (s.privsep) {
    snprintf(msg, sizeof(msg), "Privileged helper started (pid %ld): reads "
             "NTS_CERT and NTS_KEY%s; no network socket%s",
             ntsntp_privsep_pid(s.privsep),
             s.clock_control ? ", adjusts the clock" : "",
             seccomp && ntsntp_sandbox_available() ? ", seccomp filter on"
                                                    : "");
    log_line(NTSNTP_LOG_INFO, msg);
  }
  /* Signals first: one that arrives while the service starts (a SIGHUP
   * from a hasty script) waits for the loop instead of killing ntsd. */
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  uv_signal_init(loop, &sig_hup);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_start(&sig_hup, on_signal, SIGHUP);
  rv = ntsntp_uv_service_start(loop, &s, &svc, err, sizeof(err));
  if (rv) {
    stopped(NULL);
    uv_run(loop, UV_RUN_DEFAULT); /* let the failed start close its handles */
    return fatal(err);
  }
  {
    /* The state directory (keys, drift) and the control socket, so that
     * members of NTSD_USER's group can run ntsctl. */
    const char *own[2] = {s.state_dir, err};
    if (s.control_socket)
      snprintf(err, sizeof(err), "%s", s.control_socket);
    else
      snprintf(err, sizeof(err), "%s/ntsd.sock", s.state_dir);
    rv = ntsntp_drop_privileges(user, own, 2, msg, sizeof(msg));
    if (rv)
      return fatal(msg);
    if (msg[0])
      log_line(NTSNTP_LOG_INFO, msg);
  }
  /* Start-up is over: every thread, now and later, to its allowlist. */
  if (seccomp) {
    rv = ntsntp_sandbox_enter(NTSNTP_SANDBOX_SERVER,
                              s.clock_control && !s.privsep
                                  ? NTSNTP_SANDBOX_CLOCK : 0,
                              msg, sizeof(msg));
    if (rv && rv != NTSNTP_ERR_UNSUPPORTED)
      return fatal(msg);
    log_line(rv ? NTSNTP_LOG_WARN : NTSNTP_LOG_INFO, msg);
  }

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  ntsntp_privsep_del(helper);
  ntsntp_uv_service_conf_del(conf);
  return 0;
}
