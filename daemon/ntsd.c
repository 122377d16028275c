/*
 * ntsd: the ntsntp time server.  Configuration and wiring only; the
 * server itself is libntsntp's runtime (ntsntp_uv_service).
 */
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ntsntp/conf.h>
#include <ntsntp/privdrop.h>
#include <ntsntp/sandbox.h>
#include <ntsntp/service.h>
#include <ntsntp/version.h>

#define MAX_LIST 16

typedef struct config {
  char config[NTSNTP_CONF_STR_MAX];
  char ntp_servers[NTSNTP_CONF_STR_MAX];
  char refclocks[NTSNTP_CONF_STR_MAX];
  unsigned long log_level;
  unsigned long ntp_port, nts_ke_port;
  char listen[NTSNTP_CONF_STR_MAX];
  char hwtimestamp[NTSNTP_CONF_STR_MAX];
  char state_dir[NTSNTP_CONF_STR_MAX];
  char nts_cert[NTSNTP_CONF_STR_MAX], nts_key[NTSNTP_CONF_STR_MAX];
  unsigned long local_stratum, workers, nts_processes, nts_max_connections;
  unsigned long nts_rotate, nts_ntp_port_advertised;
  char nts_ntp_server[NTSNTP_CONF_STR_MAX];
  int nts_keys_reset;
  char control_socket[NTSNTP_CONF_STR_MAX], metrics_listen[NTSNTP_CONF_STR_MAX];
  char ntsd_user[NTSNTP_CONF_STR_MAX];
  char nts_ca_file[NTSNTP_CONF_STR_MAX];
  long minpoll, maxpoll;
  unsigned long maxsources, holdover;
  char leapseclist[NTSNTP_CONF_STR_MAX], leapsecmode[NTSNTP_CONF_STR_MAX];
  int leap_smear;
  char nts_role[NTSNTP_CONF_STR_MAX];
  char nts_key_secret_file[NTSNTP_CONF_STR_MAX];
  int clock_control, seccomp;
  char allow[NTSNTP_CONF_STR_MAX], deny[NTSNTP_CONF_STR_MAX];
  int ratelimit, nts_ratelimit;
  long rl_interval, nts_rl_interval;
  unsigned long rl_burst, rl_leak, rl_kod, nts_rl_burst, nts_rl_leak;
  unsigned long client_log_limit, nts_max_per_client;
  unsigned long nts_max_per_network, nts_first_byte_ms, nts_request_ms;
} config;

#define OPT(name, type, field, def, min, max, help)                            \
  { name, NTSNTP_CONF_##type, offsetof(config, field), def, min, max, help }

static const ntsntp_conf_opt options[] = {
    OPT("CONFIG", STR, config, "", 0, 0, "config file to read"),
    OPT("NTP_SERVERS", STR, ntp_servers, "time.cloudflare.com", 0, 0,
        "upstream servers, comma-separated: HOST[:PORT], "
        "nts://HOST[:KEPORT], pool://NAME[:PORT], pool+nts://NAME[:KEPORT], "
        "each with ?xleave for interleaved mode; 127.127.1.1 = local clock"),
    OPT("REFCLOCKS", LIST, refclocks, "", 0, 0,
        "reference clocks, comma-separated chrony refclock lines: SOCK "
        "PATH, SHM UNIT, PPS DEVICE, PHC DEVICE [option value]..."),
    OPT("NTS_CA_FILE", STR, nts_ca_file, "", 0, 0,
        "CA certificates for NTS upstreams (empty: system store)"),
    OPT("MINPOLL", INT, minpoll, "6", (unsigned long)-6L, 17,
        "shortest upstream poll interval, log2 seconds"),
    OPT("MAXPOLL", INT, maxpoll, "10", (unsigned long)-6L, 17,
        "longest upstream poll interval, log2 seconds"),
    OPT("MAXSOURCES", UINT, maxsources, "4", 1, 16,
        "addresses of a pool:// used at once (chrony's maxsources)"),
    OPT("HOLDOVER", UINT, holdover, "3600", 0, 100000,
        "seconds served as synchronised after the last source is lost"),
    OPT("LEAPSECLIST", STR, leapseclist, NTSNTP_LEAP_DEFAULT_LIST, 0, 0,
        "leap-seconds.list file (none: upstream leap bits only)"),
    OPT("LEAPSECMODE", STR, leapsecmode, "system", 0, 0,
        "how served time passes a leap second: system, step or slew"),
    OPT("LEAP_SMEAR", BOOL, leap_smear, "no", 0, 0,
        "smear leap seconds for clients (never mix with unsmeared servers)"),
    OPT("LOG_LEVEL", UINT, log_level, "0", 0, 3,
        "0 info, 1 warning, 2 non-fatal error, 3 fatal"),
    OPT("NTP_PORT", UINT, ntp_port, "123", 0, 65535,
        "UDP port for NTP (0: any free port)"),
    OPT("NTS_KE_PORT", UINT, nts_ke_port, "4460", 0, 65535,
        "TCP port for NTS-KE (0: any free port)"),
    OPT("LISTEN", STR, listen, "", 0, 0,
        "addresses to serve on, comma-separated (empty: all)"),
    OPT("HWTIMESTAMP", STR, hwtimestamp, "", 0, 0,
        "network interfaces whose card timestamps packets, comma-separated "
        "(chrony's hwtimestamp; needs CAP_NET_ADMIN at start)"),
    OPT("STATE_DIR", STR, state_dir, "/var/lib/ntsd", 0, 0,
        "directory for NTS keys and drift"),
    OPT("NTS_CERT", STR, nts_cert, "", 0, 0,
        "certificate chain (PEM, e.g. fullchain.pem); with NTS_KEY enables NTS"),
    OPT("NTS_KEY", STR, nts_key, "", 0, 0, "private key (PEM, privkey.pem)"),
    OPT("LOCAL_STRATUM", UINT, local_stratum, "10", 1, 15,
        "stratum served in local clock mode"),
    OPT("WORKERS", UINT, workers, "0", 0, 256, "NTP threads (0: one per CPU)"),
    OPT("NTS_PROCESSES", UINT, nts_processes, "1", 1, 8, "NTS-KE threads"),
    OPT("NTS_MAX_CONNECTIONS", UINT, nts_max_connections, "512", 1, 100000,
        "NTS-KE sessions at once"),
    OPT("NTS_ROTATE", UINT, nts_rotate, "604800", 1, 315360000,
        "seconds between NTS key rotations"),
    OPT("NTS_NTP_PORT_ADVERTISED", UINT, nts_ntp_port_advertised, "0", 0,
        65535, "NTP port told to NTS clients (0: NTP_PORT)"),
    OPT("NTS_NTP_SERVER", STR, nts_ntp_server, "", 0, 0,
        "NTP server name told to NTS clients (empty: none)"),
    OPT("CONTROL_SOCKET", STR, control_socket, "", 0, 0,
        "ntsctl socket (empty: STATE_DIR/ntsd.sock; none: no socket)"),
    OPT("METRICS_LISTEN", STR, metrics_listen, "", 0, 0,
        "address:port serving Prometheus /metrics (empty: off)"),
    OPT("NTS_ROLE", STR, nts_role, "all", 0, 0,
        "all, ke (NTS-KE only) or ntp (NTP and NTS-NTP only)"),
    OPT("NTS_KEY_SECRET_FILE", STR, nts_key_secret_file, "", 0, 0,
        "shared master secret file(s) CURRENT[,PREVIOUS] for a fleet"),
    OPT("CLOCK_CONTROL", BOOL, clock_control, "no", 0, 0,
        "also set the system clock (needs CAP_SYS_TIME; never in Docker)"),
    OPT("NTS_KEYS_RESET", BOOL, nts_keys_reset, "no", 0, 0,
        "replace an unreadable or corrupt key file with new keys"),
    OPT("ALLOW", STR, allow, "all", 0, 0, "networks served (NTP and NTS-KE), "
        "comma-separated: all, ADDRESS or ADDRESS/PREFIX (chrony's allow)"),
    OPT("DENY", STR, deny, "", 0, 0,
        "networks refused, same syntax; the longest matching prefix wins"),
    OPT("RATELIMIT", BOOL, ratelimit, "yes", 0, 0,
        "limit NTP responses per client address (chrony's ratelimit)"),
    OPT("RATELIMIT_INTERVAL", INT, rl_interval, "3", (unsigned long)-19L, 12,
        "log2 seconds between responses to one client once over the burst"),
    OPT("RATELIMIT_BURST", UINT, rl_burst, "8", 1, 255,
        "NTP responses one client may get in a burst"),
    OPT("RATELIMIT_LEAK", UINT, rl_leak, "2", 1, 4,
        "limited requests still answered: 1 in 2^LEAK"),
    OPT("RATELIMIT_KOD", UINT, rl_kod, "0", 0, 4,
        "of the other limited requests, 1 in 2^KOD gets KoD RATE (0: none)"),
    OPT("NTS_RATELIMIT", BOOL, nts_ratelimit, "yes", 0, 0,
        "limit NTS-KE connections per client address (ntsratelimit)"),
    OPT("NTS_RATELIMIT_INTERVAL", INT, nts_rl_interval, "6",
        (unsigned long)-19L, 12, "log2 seconds between NTS-KE sessions"),
    OPT("NTS_RATELIMIT_BURST", UINT, nts_rl_burst, "8", 1, 255,
        "NTS-KE sessions one client may get in a burst"),
    OPT("NTS_RATELIMIT_LEAK", UINT, nts_rl_leak, "0", 0, 4,
        "ignored (old configs): limited NTS-KE connections are always closed"),
    OPT("CLIENT_LOG_LIMIT", UINT, client_log_limit, "524288", 1024,
        1073741824, "bytes for all client rate-limit tables (clientloglimit)"),
    OPT("NTS_MAX_CONNECTIONS_PER_CLIENT", UINT, nts_max_per_client, "8", 0,
        100000, "NTS-KE sessions at once per address (IPv6: /64); 0: any"),
    OPT("NTS_MAX_CONNECTIONS_PER_NETWORK", UINT, nts_max_per_network, "32",
        0, 100000, "NTS-KE sessions at once per /24 (IPv6: /56); 0: any"),
    OPT("NTS_FIRST_BYTE_TIMEOUT_MS", UINT, nts_first_byte_ms, "1000", 0,
        60000, "close NTS-KE connections silent this long (0: no such limit)"),
    OPT("NTS_REQUEST_TIMEOUT_MS", UINT, nts_request_ms, "2000", 100, 60000,
        "the whole NTS-KE request must arrive within this"),
    OPT("NTSD_USER", STR, ntsd_user, "ntsd", 0, 0,
        "user to run as after binding ports and reading keys (root: stay)"),
    OPT("SECCOMP", BOOL, seccomp, "yes", 0, 0,
        "confine every ntsd process to its system calls (no: debugging)"),
};

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

static unsigned long log_level;

/* chrony's log style: UTC timestamp, then the message. */
static void log_line(void *user, int level, const char *msg) {
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  (void)user;
  if ((unsigned long)level < log_level)
    return;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  flockfile(stdout);
  printf("%s %s\n", ts, msg);
  funlockfile(stdout);
  fflush(stdout);
}

static uv_signal_t sig_term, sig_int, sig_hup;
static ntsntp_uv_service *svc;
static config c;
static int g_argc;
static char **g_argv;

static void changed(void *user, const ntsntp_conf_opt *o, int applied) {
  char msg[256];
  (void)user;
  snprintf(msg, sizeof(msg), applied ? "%s changed: applied"
                                     : "%s changed: restart ntsd to apply it",
           o->name);
  log_line(NULL, applied ? NTSNTP_LOG_INFO : NTSNTP_LOG_WARN, msg);
}

/* LEAPSECLIST: "none" (or empty) is off; the default only where the
 * file exists (tzdata installed). */
static const char *leapseclist(void) {
  if (!c.leapseclist[0] || !strcmp(c.leapseclist, "none") ||
      (!strcmp(c.leapseclist, NTSNTP_LEAP_DEFAULT_LIST) &&
       access(c.leapseclist, F_OK) != 0))
    return NULL;
  return c.leapseclist;
}

/* Reads the configuration again (a few settings apply at once) and hands
 * the source settings to the service: SIGHUP and `ntsctl reload sources`. */
static int reload_config(char *out, size_t outlen) {
  static const char *const live[] = {"LOG_LEVEL", "NTP_SERVERS",
                                     "MAXSOURCES", "LEAPSECLIST",
                                     "NTS_CA_FILE", NULL};
  static config next;
  static char servers_buf[NTSNTP_CONF_STR_MAX];
  char *servers[MAX_LIST];
  ntsntp_uv_service_settings s;
  char err[2048], msg[2200];
  int n;
  if (ntsntp_conf_reload(options, sizeof(options) / sizeof(options[0]), &c,
                         &next, "CONFIG", g_argc, g_argv, live, changed, NULL,
                         err, sizeof(err)) < 0) {
    snprintf(msg, sizeof(msg), "Configuration not reloaded: %s", err);
    log_line(NULL, NTSNTP_LOG_ERR, msg);
    snprintf(out, outlen, "%s", msg);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  log_level = c.log_level;
  memcpy(servers_buf, c.ntp_servers, sizeof(servers_buf));
  n = ntsntp_conf_split(servers_buf, servers, MAX_LIST);
  if (n < 0) {
    snprintf(out, outlen, "NTP_SERVERS not reloaded: names or addresses "
             "separated by commas, without spaces (at most 16)");
    log_line(NULL, NTSNTP_LOG_ERR, out);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  ntsntp_uv_service_settings_default(&s);
  s.servers = (const char *const *)servers;
  s.n_servers = (size_t)n;
  s.maxsources = (unsigned)c.maxsources;
  s.leapseclist = leapseclist();
  s.ca_file = c.nts_ca_file;
  return ntsntp_uv_service_reload_sources(svc, &s, out, outlen);
}

static int ctl_reload(void *user, char *msg, size_t len) {
  (void)user;
  return reload_config(msg, len);
}

/* SIGHUP: the configuration and the sources, then the certificate. */
static void reload(void) {
  char msg[2200];
  reload_config(msg, sizeof(msg));
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
  log_line(NULL, NTSNTP_LOG_INFO, "ntsd exiting");
  uv_signal_stop(&sig_term);
  uv_signal_stop(&sig_int);
  ntsntp_uv_service_stop(svc, stopped, NULL);
}

static ntsntp_privsep *helper;

static int fatal(const char *what) {
  char msg[2048];
  snprintf(msg, sizeof(msg), "Fatal error : %s", what);
  log_level = 0;
  log_line(NULL, NTSNTP_LOG_FATAL, msg);
  ntsntp_privsep_del(helper);
  return 1;
}

int main(int argc, char **argv) {
  static char err[2048], msg[2048];
  /* Split copies: c keeps the values as read, for reload() to compare. */
  static char listen_buf[NTSNTP_CONF_STR_MAX];
  static char servers_buf[NTSNTP_CONF_STR_MAX];
  char *listen[MAX_LIST], *servers[MAX_LIST];
  ntsntp_uv_service_settings s;
  uv_loop_t *loop;
  int n_listen, n_servers, rv;

  rv = ntsntp_conf_load(options, sizeof(options) / sizeof(options[0]), &c,
                        "CONFIG", argc, argv, "ntsd", NTSNTP_VERSION, err,
                        sizeof(err));
  if (rv)
    return rv == 1 ? 0 : (fprintf(stderr, "ntsd: %s\n", err), 2);
  log_level = c.log_level;
  g_argc = argc;
  g_argv = argv;

  memcpy(listen_buf, c.listen, sizeof(listen_buf));
  memcpy(servers_buf, c.ntp_servers, sizeof(servers_buf));
  n_listen = ntsntp_conf_split(listen_buf, listen, MAX_LIST);
  if (n_listen < 0)
    return fatal("LISTEN must be numeric addresses separated by commas, "
                 "without spaces (at most 16)");
  n_servers = ntsntp_conf_split(servers_buf, servers, MAX_LIST);
  if (n_servers < 0)
    return fatal("NTP_SERVERS must be names or addresses separated by "
                 "commas, without spaces (at most 16)");
  snprintf(msg, sizeof(msg), "ntsd version %s starting (+NTS +IPV6 "
           "+AES-SIV-CMAC-256 +AES-SIV-CMAC-512 %cAES-128-GCM-SIV %cSECCOMP)",
           NTSNTP_VERSION, NTSNTP_HAVE_GCM_SIV ? '+' : '-',
           ntsntp_sandbox_available() ? '+' : '-');
  log_line(NULL, NTSNTP_LOG_INFO, msg);
  /* A peer that closes while ntsd writes (ntsctl, a /metrics scraper)
   * must cost ntsd an EPIPE, not its life (service.h). */
  signal(SIGPIPE, SIG_IGN);
  /* Before the first loop: libuv must not open an io_uring the filter
   * would have to allow. */
  rv = c.seccomp ? ntsntp_sandbox_prepare(err, sizeof(err)) : 0;
  if (rv && rv != NTSNTP_ERR_UNSUPPORTED)
    return fatal(err);
  loop = uv_default_loop();
  log_line(NULL, NTSNTP_LOG_INFO, c.clock_control
                                       ? "Enabled control of system clock"
                                       : "Disabled control of system clock");
  if (n_servers == 1 && !strcmp(servers[0], "127.127.1.1") &&
      !c.refclocks[0]) {
    snprintf(msg, sizeof(msg), "Serving the local clock (stratum %lu, "
             "reference ID 7F7F0101)", c.local_stratum);
    log_line(NULL, NTSNTP_LOG_INFO, msg);
  }
  ntsntp_conf_foreign(options, sizeof(options) / sizeof(options[0]), foreign,
                      sizeof(foreign) / sizeof(foreign[0]), "ntsd", log_line,
                      NULL);

  ntsntp_uv_service_settings_default(&s);
  s.listen = (const char *const *)listen;
  s.n_listen = (size_t)n_listen;
  s.hwtimestamp = c.hwtimestamp;
  s.ntp_port = (uint16_t)c.ntp_port;
  s.ke_port = (uint16_t)c.nts_ke_port;
  s.workers = (unsigned)c.workers;
  s.state_dir = c.state_dir;
  s.cert = c.nts_cert;
  s.key = c.nts_key;
  s.rotate_interval = (uint32_t)c.nts_rotate;
  s.keys_reset = c.nts_keys_reset;
  s.nts_processes = (unsigned)c.nts_processes;
  s.max_connections = (unsigned)c.nts_max_connections;
  s.ntp_port_advertised = (uint16_t)c.nts_ntp_port_advertised;
  s.ntp_server_name = c.nts_ntp_server;
  s.local_stratum = (uint8_t)c.local_stratum;
  s.servers = (const char *const *)servers;
  s.n_servers = (size_t)n_servers;
  s.refclocks = c.refclocks;
  s.ca_file = c.nts_ca_file;
  s.key_secret_file = c.nts_key_secret_file;
  s.clock_control = c.clock_control;
  if (!strcmp(c.nts_role, "ke"))
    s.role = NTSNTP_ROLE_KE;
  else if (!strcmp(c.nts_role, "ntp"))
    s.role = NTSNTP_ROLE_NTP;
  else if (strcmp(c.nts_role, "all"))
    return fatal("NTS_ROLE must be all, ke or ntp");
  s.minpoll = (int8_t)c.minpoll;
  s.maxpoll = (int8_t)c.maxpoll;
  s.maxsources = (unsigned)c.maxsources;
  s.holdover = (uint32_t)c.holdover;
  s.leapseclist = leapseclist();
  if (ntsntp_leap_mode_parse(c.leapsecmode, &s.leap_mode))
    return fatal("LEAPSECMODE must be system, step or slew");
  s.leap_smear = c.leap_smear;
  s.reload_sources = ctl_reload;
  s.control_socket = c.control_socket[0] ? c.control_socket : NULL;
  s.metrics_listen = c.metrics_listen;
  s.allow = c.allow;
  s.deny = c.deny;
  s.ratelimit.enabled = c.ratelimit;
  s.ratelimit.interval = (int)c.rl_interval;
  s.ratelimit.burst = (unsigned)c.rl_burst;
  s.ratelimit.leak = (unsigned)c.rl_leak;
  s.ratelimit.kod = (unsigned)c.rl_kod;
  s.nts_ratelimit.enabled = c.nts_ratelimit;
  s.nts_ratelimit.interval = (int)c.nts_rl_interval;
  s.nts_ratelimit.burst = (unsigned)c.nts_rl_burst;
  s.nts_ratelimit.leak = (unsigned)c.nts_rl_leak;
  s.client_log_limit = (size_t)c.client_log_limit;
  s.max_connections_per_client = (unsigned)c.nts_max_per_client;
  s.max_connections_per_network = (unsigned)c.nts_max_per_network;
  s.nts_first_byte_timeout_ms = (uint32_t)c.nts_first_byte_ms;
  s.nts_request_timeout_ms = (uint32_t)c.nts_request_ms;
  s.log = log_line;
  /* Before any thread or socket: the helper that keeps what the server
   * gives up (reading root-only certificate keys, setting the clock). */
  rv = ntsntp_uv_service_privsep(&s, c.ntsd_user, c.seccomp, &s.privsep, err,
                                 sizeof(err));
  if (rv)
    return fatal(err);
  helper = s.privsep;
  if (s.privsep) {
    snprintf(msg, sizeof(msg), "Privileged helper started (pid %ld): reads "
             "NTS_CERT and NTS_KEY%s; no network socket%s",
             ntsntp_privsep_pid(s.privsep),
             c.clock_control ? ", adjusts the clock" : "",
             c.seccomp && ntsntp_sandbox_available() ? ", seccomp filter on"
                                                      : "");
    log_line(NULL, NTSNTP_LOG_INFO, msg);
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
    const char *own[2] = {c.state_dir, err};
    if (c.control_socket[0])
      snprintf(err, sizeof(err), "%s", c.control_socket);
    else
      snprintf(err, sizeof(err), "%s/ntsd.sock", c.state_dir);
    rv = ntsntp_drop_privileges(c.ntsd_user, own, 2, msg, sizeof(msg));
    if (rv)
      return fatal(msg);
    if (msg[0])
      log_line(NULL, NTSNTP_LOG_INFO, msg);
  }
  /* Start-up is over: every thread, now and later, to its allowlist. */
  if (c.seccomp) {
    rv = ntsntp_sandbox_enter(NTSNTP_SANDBOX_SERVER,
                              c.clock_control && !s.privsep
                                  ? NTSNTP_SANDBOX_CLOCK : 0,
                              msg, sizeof(msg));
    if (rv && rv != NTSNTP_ERR_UNSUPPORTED)
      return fatal(msg);
    log_line(NULL, rv ? NTSNTP_LOG_WARN : NTSNTP_LOG_INFO, msg);
  }

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  ntsntp_privsep_del(helper);
  return 0;
}
