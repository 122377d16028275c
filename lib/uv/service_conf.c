/* libntsntp runtime: ntsd's configuration contract (service_conf.h). */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/service_conf.h"
#include "../errtext.h"
#include "../mem.h"

/* Entries of LISTEN and NTP_SERVERS; the errors say "at most 16". */
#define MAX_LIST 16

/* One field per option (the table's offsets). */
typedef struct values {
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
} values;

#define OPT(name, type, field, def, min, max, help)                            \
  { name, NTSNTP_CONF_##type, offsetof(values, field), def, min, max, help }

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

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

struct ntsntp_uv_service_conf {
  values cur;  /* running values */
  values next; /* ntsntp_conf_reload's scratch */
  /* Split copies: cur keeps the values as read, for a reload to compare;
   * the settings' lists point into these. */
  char listen_buf[NTSNTP_CONF_STR_MAX], servers_buf[NTSNTP_CONF_STR_MAX];
  char reload_buf[NTSNTP_CONF_STR_MAX];
  char *listen[MAX_LIST], *servers[MAX_LIST], *reload_servers[MAX_LIST];
  /* LOG_LEVEL for the log, which any thread calls while a reload
   * rewrites cur. */
  atomic_ulong log_level;
  int argc;
  char **argv;
  char prog[64];
};

const ntsntp_conf_opt *ntsntp_uv_service_conf_options(size_t *n) {
  if (n)
    *n = N_OPTIONS;
  return options;
}

int ntsntp_uv_service_conf_load(ntsntp_uv_service_conf **out, int argc,
                                char **argv, const char *prog,
                                const char *version, char *errbuf,
                                size_t errlen) {
  ntsntp_uv_service_conf *c;
  int rv;
  ntsntp__errf(errbuf, errlen, "%s", "");
  if (!out || argc < 0 || (argc && !argv) || !prog || !version) {
    ntsntp__errf(errbuf, errlen, "configuration: %s",
                 !out            ? "out is NULL"
                 : argc < 0      ? "argc is negative"
                 : argc && !argv ? "argv is NULL"
                 : !prog         ? "prog is NULL"
                                 : "version is NULL");
    return NTSNTP_ERR_INVALID_ARG;
  }
  *out = NULL;
  c = ntsntp__calloc(1, sizeof(*c));
  if (!c) {
    ntsntp__errf(errbuf, errlen, "configuration: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  rv = ntsntp_conf_load(options, N_OPTIONS, &c->cur, "CONFIG", argc, argv,
                        prog, version, errbuf, errlen);
  if (rv) {
    ntsntp__mfree(c);
    return rv;
  }
  atomic_init(&c->log_level, c->cur.log_level);
  c->argc = argc;
  c->argv = argv;
  snprintf(c->prog, sizeof(c->prog), "%s", prog);
  *out = c;
  return 0;
}

static int fail(char *errbuf, size_t errlen, const char *what) {
  ntsntp__errf(errbuf, errlen, "%s", what);
  return NTSNTP_ERR_BAD_CONFIG;
}

/* LEAPSECLIST: "none" (or empty) is off; the default only where the
 * file exists (tzdata installed). */
static const char *leapseclist(const values *v) {
  if (!v->leapseclist[0] || !strcmp(v->leapseclist, "none") ||
      (!strcmp(v->leapseclist, NTSNTP_LEAP_DEFAULT_LIST) &&
       access(v->leapseclist, F_OK) != 0))
    return NULL;
  return v->leapseclist;
}

int ntsntp_uv_service_conf_settings(ntsntp_uv_service_conf *conf,
                                    ntsntp_uv_service_settings *s,
                                    char *errbuf, size_t errlen) {
  const values *c;
  ntsntp_uv_role role = NTSNTP_ROLE_ALL;
  ntsntp_leap_mode leap_mode;
  int n_listen, n_servers;
  if (!conf || !s)
    return NTSNTP_ERR_INVALID_ARG;
  c = &conf->cur;
  memcpy(conf->listen_buf, c->listen, sizeof(conf->listen_buf));
  memcpy(conf->servers_buf, c->ntp_servers, sizeof(conf->servers_buf));
  n_listen = ntsntp_conf_split(conf->listen_buf, conf->listen, MAX_LIST);
  if (n_listen < 0)
    return fail(errbuf, errlen, "LISTEN must be numeric addresses separated "
                "by commas, without spaces (at most 16)");
  n_servers = ntsntp_conf_split(conf->servers_buf, conf->servers, MAX_LIST);
  if (n_servers < 0)
    return fail(errbuf, errlen, "NTP_SERVERS must be names or addresses "
                "separated by commas, without spaces (at most 16)");
  if (!strcmp(c->nts_role, "ke"))
    role = NTSNTP_ROLE_KE;
  else if (!strcmp(c->nts_role, "ntp"))
    role = NTSNTP_ROLE_NTP;
  else if (strcmp(c->nts_role, "all"))
    return fail(errbuf, errlen, "NTS_ROLE must be all, ke or ntp");
  if (ntsntp_leap_mode_parse(c->leapsecmode, &leap_mode))
    return fail(errbuf, errlen, "LEAPSECMODE must be system, step or slew");

  ntsntp_uv_service_settings_default(s);
  s->listen = (const char *const *)conf->listen;
  s->n_listen = (size_t)n_listen;
  s->hwtimestamp = c->hwtimestamp;
  s->ntp_port = (uint16_t)c->ntp_port;
  s->ke_port = (uint16_t)c->nts_ke_port;
  s->workers = (unsigned)c->workers;
  s->state_dir = c->state_dir;
  s->cert = c->nts_cert;
  s->key = c->nts_key;
  s->rotate_interval = (uint32_t)c->nts_rotate;
  s->keys_reset = c->nts_keys_reset;
  s->nts_processes = (unsigned)c->nts_processes;
  s->max_connections = (unsigned)c->nts_max_connections;
  s->ntp_port_advertised = (uint16_t)c->nts_ntp_port_advertised;
  s->ntp_server_name = c->nts_ntp_server;
  s->local_stratum = (uint8_t)c->local_stratum;
  s->servers = (const char *const *)conf->servers;
  s->n_servers = (size_t)n_servers;
  s->refclocks = c->refclocks;
  s->ca_file = c->nts_ca_file;
  s->key_secret_file = c->nts_key_secret_file;
  s->clock_control = c->clock_control;
  s->role = role;
  s->minpoll = (int8_t)c->minpoll;
  s->maxpoll = (int8_t)c->maxpoll;
  s->maxsources = (unsigned)c->maxsources;
  s->holdover = (uint32_t)c->holdover;
  s->leapseclist = leapseclist(c);
  s->leap_mode = leap_mode;
  s->leap_smear = c->leap_smear;
  s->control_socket = c->control_socket[0] ? c->control_socket : NULL;
  s->metrics_listen = c->metrics_listen;
  s->allow = c->allow;
  s->deny = c->deny;
  s->ratelimit.enabled = c->ratelimit;
  s->ratelimit.interval = (int)c->rl_interval;
  s->ratelimit.burst = (unsigned)c->rl_burst;
  s->ratelimit.leak = (unsigned)c->rl_leak;
  s->ratelimit.kod = (unsigned)c->rl_kod;
  s->nts_ratelimit.enabled = c->nts_ratelimit;
  s->nts_ratelimit.interval = (int)c->nts_rl_interval;
  s->nts_ratelimit.burst = (unsigned)c->nts_rl_burst;
  s->nts_ratelimit.leak = (unsigned)c->nts_rl_leak;
  s->client_log_limit = (size_t)c->client_log_limit;
  s->max_connections_per_client = (unsigned)c->nts_max_per_client;
  s->max_connections_per_network = (unsigned)c->nts_max_per_network;
  s->nts_first_byte_timeout_ms = (uint32_t)c->nts_first_byte_ms;
  s->nts_request_timeout_ms = (uint32_t)c->nts_request_ms;
  s->log = ntsntp_uv_service_conf_log;
  s->log_user = conf;
  return 0;
}

int ntsntp_uv_service_conf_get(const ntsntp_uv_service_conf *conf,
                               const char *name, char *buf, size_t len) {
  const ntsntp_conf_opt *o = NULL;
  const char *field;
  size_t i;
  int n = 0;
  if (buf && len)
    buf[0] = 0;
  if (!conf || !name || !buf)
    return NTSNTP_ERR_INVALID_ARG;
  for (i = 0; i < N_OPTIONS && !o; i++)
    if (!strcasecmp(options[i].name, name))
      o = &options[i];
  if (!o)
    return NTSNTP_ERR_INVALID_ARG;
  field = (const char *)&conf->cur + o->offset;
  switch (o->type) {
  case NTSNTP_CONF_STR:
  case NTSNTP_CONF_LIST:
    n = snprintf(buf, len, "%s", field);
    break;
  case NTSNTP_CONF_UINT:
    n = snprintf(buf, len, "%lu", *(const unsigned long *)(const void *)field);
    break;
  case NTSNTP_CONF_INT:
    n = snprintf(buf, len, "%ld", *(const long *)(const void *)field);
    break;
  case NTSNTP_CONF_BOOL:
    n = snprintf(buf, len, "%s", *(const int *)(const void *)field ? "yes"
                                                                   : "no");
    break;
  }
  if (n < 0 || (size_t)n >= len) {
    if (len)
      buf[0] = 0;
    return NTSNTP_ERR_NOBUF;
  }
  return 0;
}

static void changed(void *user, const ntsntp_conf_opt *o, int applied) {
  ntsntp_uv_service_conf *conf = user;
  char msg[256];
  if (applied)
    snprintf(msg, sizeof(msg), "%s changed: applied", o->name);
  else
    snprintf(msg, sizeof(msg), "%s changed: restart %s to apply it", o->name,
             conf->prog);
  ntsntp_uv_service_conf_log(conf, applied ? NTSNTP_LOG_INFO : NTSNTP_LOG_WARN,
                             msg);
}

int ntsntp_uv_service_conf_reload(ntsntp_uv_service_conf *conf,
                                  ntsntp_uv_service *svc, char *msg,
                                  size_t len) {
  static const char *const live[] = {"LOG_LEVEL", "NTP_SERVERS",
                                     "MAXSOURCES", "LEAPSECLIST",
                                     "NTS_CA_FILE", NULL};
  ntsntp_uv_service_settings s;
  char err[2048], line[2200];
  int n;
  if (!conf || !msg || !len)
    return NTSNTP_ERR_INVALID_ARG;
  if (ntsntp_conf_reload(options, N_OPTIONS, &conf->cur, &conf->next,
                         "CONFIG", conf->argc, conf->argv, live, changed,
                         conf, err, sizeof(err)) < 0) {
    snprintf(line, sizeof(line), "Configuration not reloaded: %s", err);
    ntsntp_uv_service_conf_log(conf, NTSNTP_LOG_ERR, line);
    snprintf(msg, len, "%s", line);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  atomic_store(&conf->log_level, conf->cur.log_level);
  memcpy(conf->reload_buf, conf->cur.ntp_servers, sizeof(conf->reload_buf));
  n = ntsntp_conf_split(conf->reload_buf, conf->reload_servers, MAX_LIST);
  if (n < 0) {
    snprintf(msg, len, "NTP_SERVERS not reloaded: names or addresses "
             "separated by commas, without spaces (at most 16)");
    ntsntp_uv_service_conf_log(conf, NTSNTP_LOG_ERR, msg);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  ntsntp_uv_service_settings_default(&s);
  s.servers = (const char *const *)conf->reload_servers;
  s.n_servers = (size_t)n;
  s.maxsources = (unsigned)conf->cur.maxsources;
  s.leapseclist = leapseclist(&conf->cur);
  s.ca_file = conf->cur.nts_ca_file;
  return ntsntp_uv_service_reload_sources(svc, &s, msg, len);
}

/* chrony's log style: UTC timestamp, then the message. */
void ntsntp_uv_service_conf_log(void *user, int level, const char *msg) {
  ntsntp_uv_service_conf *conf = user;
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  if (conf && (unsigned long)level < atomic_load(&conf->log_level))
    return;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  flockfile(stdout);
  printf("%s %s\n", ts, msg ? msg : "");
  funlockfile(stdout);
  fflush(stdout);
}

void ntsntp_uv_service_conf_del(ntsntp_uv_service_conf *conf) {
  ntsntp__mfree(conf);
}
