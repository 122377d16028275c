/* libntsntp runtime: the whole server (NTP, NTS-KE, keys, certificate). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "ntsntp/conf.h" /* HWTIMESTAMP: ntsntp_conf_split */
#include "ntsntp/keyfile.h"
#include "ntsntp/control.h" /* control */
#include "ntsntp/service.h"
#include "../settings.h"
#include "../mem.h"
#include "ntsntp/uv_refclock.h" /* refclock */
#include "access_svc.h" /* access */

#define KEYFILE_NAME "ntskeys"

struct ntsntp_uv_service {
  ntsntp_uv_service_settings s;
  uv_loop_t *loop;
  char keyfile[4096];
  ntsntp_keyring *keyring, *keyring_prev;
  int secret;  /* keys derived from a shared secret: no key file */
  int keys_ok; /* the ring is the one to keep (loaded, or new by choice) */
  ntsntp_clock_ops clock_ops;
  ntsntp_server *server;
  ntsntp_uv_ntp *ntp;
  ntsntp_uv_ke *ke;
  ntsntp_uv_upstream *up; /* NULL: local clock mode */
  /* refclock: REFCLOCKS and NTP_SERVERS' 127.127.28.N, and the servers
   * left for the upstream runtime */
  ntsntp_uv_refclock *rc;
  ntsntp_refclock_conf rc_conf[NTSNTP_REFCLOCK_MAX];
  size_t n_rc;
  const char *up_servers[NTSNTP_SYNC_MAX_SOURCES + NTSNTP_REFCLOCK_MAX];
  size_t n_up_servers;
  ntsntp_uv_ctl *ctl; /* control */
  ntsntp__access_svc *access; /* access */
  uv_timer_t rotate_timer, clock_timer;
  uv_timer_t cert_timer;
  /* NTS_CERT and NTS_KEY split into pairs; each file's version as last
   * loaded (certificates, then keys). */
  char pair_buf[2][4096];
  const char *certs[NTSNTP_KE_MAX_CERTS], *keys[NTSNTP_KE_MAX_CERTS];
  size_t n_pairs;
  ntsntp_file_id cert_id[2 * NTSNTP_KE_MAX_CERTS];
  int handles;
  uint64_t rotations, reloads;
  /* monitoring: the served certificate (pair 0) and the last load */
  ntsntp_ke_cert_info cert;
  int have_cert, reload_ok, check_failed, check_fail_ticks;
  int64_t reload_time, cert_warned;
  uint64_t reload_failures;
  void (*done)(void *);
  void *done_user;
};

static void slog(ntsntp_uv_service *svc, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void slog(ntsntp_uv_service *svc, int level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  if (!svc->s.log)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  svc->s.log(svc->s.log_user, level, msg);
}

static uint64_t now_ntp(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_from_timespec(&ts);
}

static int64_t now_unix(void) { return (int64_t)time(NULL); }

static void uv_service_fill(void *p) {
  ntsntp_uv_service_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->ntp_port = 123;
  s->ke_port = NTSNTP_KE_PORT;
  s->state_dir = "/var/lib/ntsd";
  s->rotate_interval = 604800;
  s->nts_processes = 1;
  s->max_connections = 512;
  s->cert_poll_ms = 5000;
  s->local_stratum = 10;
  s->maxsources = 4;    /* sources */
  s->holdover = 3600;   /* sources */
  s->minpoll = 6;
  s->maxpoll = 10;
  /* access: begin */
  ntsntp_ratelimit_settings_default(&s->ratelimit, NTSNTP_RL_SERVICE_NTP);
  ntsntp_ratelimit_settings_default(&s->nts_ratelimit,
                                    NTSNTP_RL_SERVICE_NTSKE);
  s->client_log_limit = NTSNTP_RL_DEFAULT_MAX_BYTES;
  s->max_connections_per_client = 8;
  s->max_connections_per_network = 32;
  s->nts_ratelimit.leak = 0; /* never leaks (TCP): 0 says "not set" */
  s->nts_first_byte_timeout_ms = 1000;
  s->nts_request_timeout_ms = 2000;
  /* access: end */
}
NTSNTP__SETTINGS(ntsntp_uv_service_settings, uv_service, refclocks)

/* Creates STATE_DIR if it is missing; |hint| ends the fix in the message. */
static int make_state_dir(const ntsntp_uv_service *svc, const char *hint,
                          char *errbuf, size_t errlen) {
  if (mkdir(svc->s.state_dir, 0750) == 0 || errno == EEXIST)
    return 0;
  ntsntp__errf(errbuf, errlen,
               "cannot create STATE_DIR %s: %s; fix: create it "
               "or point STATE_DIR at a writable directory%s",
               svc->s.state_dir, strerror(errno), hint);
  return NTSNTP_ERR_IO;
}

static int nts_enabled(const ntsntp_uv_service_settings *s) {
  return s->cert && *s->cert && s->key && *s->key;
}

static void save_keys(ntsntp_uv_service *svc) {
  char err[1024];
  /* Derived keys: every instance can make them again.  Keys not (yet)
   * loaded: never overwrite a key file we could not read. */
  if (svc->secret || !svc->keys_ok)
    return;
  if (ntsntp_keyfile_save(svc->keyring, svc->keyfile, err, sizeof(err)))
    slog(svc, NTSNTP_LOG_ERR, "Could not save NTS keys: %s", err);
}

static void arm_rotation(ntsntp_uv_service *svc);

static void on_rotate(uv_timer_t *t) {
  ntsntp_uv_service *svc = t->data;
  int rv = ntsntp_keyring_update(svc->keyring, now_unix());
  if (svc->keyring_prev)
    ntsntp_keyring_update(svc->keyring_prev, now_unix());
  if (rv == 1) {
    svc->rotations++;
    slog(svc, NTSNTP_LOG_INFO, "Rotated NTS server keys (current key %08X)",
         ntsntp_keyring_current_id(svc->keyring));
    save_keys(svc);
  } else if (rv < 0) {
    slog(svc, NTSNTP_LOG_ERR, "Could not rotate NTS keys: %s",
         ntsntp_strerror(rv));
  }
  arm_rotation(svc);
}

static void arm_rotation(ntsntp_uv_service *svc) {
  int64_t next = ntsntp_keyring_next_rotation(svc->keyring);
  struct timespec ts;
  int64_t now_ms;
  uint64_t ms;
  /* In milliseconds: whole seconds would rotate up to a second late, which
   * matters to a fleet whose members must switch keys together. */
  clock_gettime(CLOCK_REALTIME, &ts);
  now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  ms = next >= INT64_MAX / 1000 ? UINT32_MAX
       : next * 1000 > now_ms   ? (uint64_t)(next * 1000 - now_ms)
                                : 0;
  /* Wake a little after the boundary so the update sees the new epoch. */
  uv_timer_start(&svc->rotate_timer, on_rotate, ms + 10, 0);
}

/* Local clock mode: the reference time follows the system clock. */
static void on_clock(uv_timer_t *t) {
  ntsntp_uv_service *svc = t->data;
  ntsntp_clock_state cs;
  ntsntp_clock_state_local(&cs, svc->s.local_stratum, now_ntp());
  ntsntp_server_set_clock(svc->server, &cs);
}

/* Reads one master secret file (a Kubernetes Secret mounts symlinks, so
 * links are followed).  Warns when others may read it. */
static int read_secret(ntsntp_uv_service *svc, const char *path,
                       uint8_t *buf, size_t *len, char *errbuf,
                       size_t errlen) {
  struct stat st;
  ssize_t n;
  /* Never blocks on a FIFO; links are followed (see above). */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0 || fstat(fd, &st) < 0) {
    ntsntp__errf(errbuf, errlen,
                 "cannot read NTS_KEY_SECRET_FILE %s: %s (ntsd "
                 "runs as uid %u); fix: check the path and its permissions",
                 path, strerror(errno), (unsigned)geteuid());
    if (fd >= 0)
      close(fd);
    return NTSNTP_ERR_IO;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    ntsntp__errf(errbuf, errlen,
                 "NTS_KEY_SECRET_FILE %s is not a regular file; "
                 "fix: point it at a file of at least 32 random bytes",
                 path);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  n = read(fd, buf, *len);
  close(fd);
  if (n < 32) {
    ntsntp__errf(errbuf, errlen,
                 "NTS_KEY_SECRET_FILE %s holds %zd bytes; fix: "
                 "it needs at least 32 random bytes, e.g. head -c 32 "
                 "/dev/urandom > %s",
                 path, n < 0 ? (ssize_t)0 : n, path);
    ntsntp_secure_clear(buf, *len);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (st.st_mode & 077)
    slog(svc, NTSNTP_LOG_WARN, "NTS_KEY_SECRET_FILE %s has mode %04o: anyone "
         "who reads it can forge cookies; make it 0600", path,
         (unsigned)(st.st_mode & 07777));
  *len = (size_t)n;
  return 0;
}

/* Keys derived from the shared secret(s): "CURRENT[,PREVIOUS]". */
static int secret_keys(ntsntp_uv_service *svc, char *errbuf, size_t errlen) {
  char paths[4096], *prev;
  ntsntp_keyring_settings ks;
  ntsntp_keyring **rings[2] = {&svc->keyring, &svc->keyring_prev};
  const char *files[2];
  int i, rv = 0;
  snprintf(paths, sizeof(paths), "%s", svc->s.key_secret_file);
  prev = strchr(paths, ',');
  if (prev)
    *prev++ = 0;
  files[0] = paths;
  files[1] = prev && *prev ? prev : NULL;
  for (i = 0; i < 2 && rv == 0 && files[i]; i++) {
    uint8_t secret[1024];
    size_t len = sizeof(secret);
    rv = read_secret(svc, files[i], secret, &len, errbuf, errlen);
    if (rv)
      break;
    ntsntp_keyring_settings_default(&ks);
    ks.rotate_interval = svc->s.rotate_interval;
    ks.secret = secret;
    ks.secret_len = len;
    rv = ntsntp_keyring_new(rings[i], &ks, now_unix(), NULL, 0);
    ntsntp_secure_clear(secret, sizeof(secret));
    if (rv)
      ntsntp__errf(errbuf, errlen, "cannot derive NTS keys from %s: %s",
                   files[i], ntsntp_strerror(rv));
  }
  if (rv == 0) {
    svc->secret = 1;
    slog(svc, NTSNTP_LOG_INFO, "NTS keys derived from the shared secret %s%s",
         files[0], files[1] ? " (previous secret still accepted)" : "");
  }
  return rv;
}

static int load_keys(ntsntp_uv_service *svc, char *errbuf, size_t errlen) {
  ntsntp_keyring_settings ks;
  char err[1024];
  int rv;
  ntsntp_keyring_settings_default(&ks);
  ks.rotate_interval = svc->s.rotate_interval;
  rv = ntsntp_keyring_new(&svc->keyring, &ks, now_unix(), NULL, 0);
  if (rv) {
    ntsntp__errf(errbuf, errlen, "cannot create NTS keys: %s",
                 ntsntp_strerror(rv));
    return rv;
  }
  rv = ntsntp_keyfile_load(svc->keyring, svc->keyfile, now_unix(), err,
                           sizeof(err));
  if (rv == NTSNTP_ERR_NOT_FOUND) {
    slog(svc, NTSNTP_LOG_INFO, "No NTS key file %s yet: made new keys",
         svc->keyfile);
  } else if (rv < 0 && svc->s.keys_reset) {
    slog(svc, NTSNTP_LOG_WARN,
         "%s; NTS_KEYS_RESET is set: starting with new keys (clients get "
         "new cookies by NTS-KE)",
         err);
  } else if (rv < 0) {
    ntsntp__errf(errbuf, errlen, "%s", err);
    return rv;
  } else {
    if (err[0])
      slog(svc, NTSNTP_LOG_WARN, "%s", err);
    slog(svc, NTSNTP_LOG_INFO, "Loaded NTS keys from %s", svc->keyfile);
  }
  svc->keys_ok = 1;
  save_keys(svc);
  return 0;
}

/* Splits "A,B" into |out| inside |buf|; -1 when |list| does not fit. */
static int split_list(const char *list, char *buf, size_t size,
                      const char **out, size_t max) {
  size_t n = 0;
  char *p, *save = NULL;
  if (!list || snprintf(buf, size, "%s", list) >= (int)size)
    return -1;
  for (p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    if (n == max)
      return -1;
    out[n++] = p;
  }
  return (int)n;
}

/* NTS_CERT and NTS_KEY as pairs.  Errors: BAD_CONFIG. */
static int split_pairs(const ntsntp_uv_service_settings *s,
                       char buf[2][4096], const char **certs,
                       const char **keys, size_t *n, char *errbuf,
                       size_t errlen) {
  int nc = split_list(s->cert, buf[0], sizeof(buf[0]), certs,
                      NTSNTP_KE_MAX_CERTS);
  int nk = split_list(s->key, buf[1], sizeof(buf[1]), keys,
                      NTSNTP_KE_MAX_CERTS);
  if (nc < 1 || nk < 1 || nc != nk) {
    ntsntp__errf(errbuf, errlen,
                 "NTS_CERT and NTS_KEY must list the same "
                 "number of files (1 to %d, comma-separated: the first key "
                 "belongs to the first certificate, and so on); they list %d "
                 "and %d",
                 NTSNTP_KE_MAX_CERTS, nc, nk);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  *n = (size_t)nc;
  return 0;
}

int ntsntp_uv_service_privsep(const ntsntp_uv_service_settings *s,
                              const char *user, int seccomp,
                              ntsntp_privsep **out, char *errbuf,
                              size_t errlen) {
  ntsntp_uv_service_settings latest;
  char buf[2][4096];
  const char *files[2 * NTSNTP_KE_MAX_CERTS];
  ntsntp_privsep_settings ps;
  size_t n = 0;
  int rv;
  *out = NULL;
  NTSNTP__SETTINGS_GET(s, latest, uv_service, errbuf, errlen);
  ntsntp_privsep_settings_default(&ps);
  if (nts_enabled(s)) {
    rv = split_pairs(s, buf, files, files + NTSNTP_KE_MAX_CERTS, &n, errbuf,
                     errlen);
    if (rv)
      return rv;
    memmove(files + n, files + NTSNTP_KE_MAX_CERTS, n * sizeof(files[0]));
  }
  if (geteuid() != 0 && !s->clock_control)
    return 0;
  ps.files = files;
  ps.n_files = 2 * n;
  ps.clock_control = s->clock_control;
  ps.seccomp = seccomp;
  ps.user = user;
  return ntsntp_privsep_start(&ps, out, errbuf, errlen);
}

/* What identifies a version of a file: a renewal (certbot writes a new
 * archive file and moves the symlink) changes the inode or the times. */
static int same_file(const ntsntp_file_id *a, const ntsntp_file_id *b) {
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

static void stat_creds(ntsntp_uv_service *svc, ntsntp_file_id *id) {
  size_t i;
  for (i = 0; i < svc->n_pairs; i++) {
    ntsntp_privsep_stat(svc->s.privsep, svc->certs[i], &id[i]);
    ntsntp_privsep_stat(svc->s.privsep, svc->keys[i],
                        &id[NTSNTP_KE_MAX_CERTS + i]);
  }
}

/* monitoring: begin.  The certificate an operator cannot miss: what is
 * served, logged at every load; a warning at load and once a day from
 * CERT_WARN_DAYS before it expires, an error once it has. */
#define CERT_WARN_DAYS 14

static void fmt_utc(int64_t t, char *out, size_t len) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
    snprintf(out, len, "%lld", (long long)t);
}

/* Warns (or errs, once expired) when due: |force| at a load, else once a
 * day. */
static void cert_expiry_check(ntsntp_uv_service *svc, int force) {
  int64_t now = now_unix(), left;
  char when[64];
  if (!svc->have_cert)
    return;
  left = svc->cert.not_after - now;
  if (left > CERT_WARN_DAYS * 86400LL) {
    svc->cert_warned = 0;
    return;
  }
  if (!force && svc->cert_warned && now - svc->cert_warned < 86400 &&
      (left > 0) == (svc->cert_warned < svc->cert.not_after))
    return; /* said today, and it has not expired since */
  svc->cert_warned = now;
  fmt_utc(svc->cert.not_after, when, sizeof(when));
  if (left <= 0)
    slog(svc, NTSNTP_LOG_ERR, "Certificate %s EXPIRED on %s: every NTS "
         "client fails; renew it (ntsd loads the new files by itself)",
         svc->certs[0], when);
  else
    slog(svc, NTSNTP_LOG_WARN, "Certificate %s expires in %lld days (%s); "
         "renew it", svc->certs[0], (long long)(left / 86400), when);
}

/* Logs each pair's subject, names and notAfter; keeps pair 0's. */
static void cert_loaded(ntsntp_uv_service *svc, ntsntp_ke_creds *creds) {
  size_t i;
  for (i = 0; i < svc->n_pairs; i++) {
    ntsntp_ke_cert_info ci;
    char until[64];
    int rv = ntsntp_ke_creds_cert_info(creds, i, &ci);
    if (rv) {
      slog(svc, NTSNTP_LOG_WARN, "Certificate %s: cannot decode its "
           "dates and names: %s", svc->certs[i], ntsntp_strerror(rv));
      if (i == 0)
        svc->have_cert = 0;
      continue;
    }
    fmt_utc(ci.not_after, until, sizeof(until));
    slog(svc, NTSNTP_LOG_INFO, "Certificate %s: subject %s, names %s, "
         "valid until %s", svc->certs[i], ci.subject[0] ? ci.subject : "-",
         ci.names[0] ? ci.names : "-", until);
    if (i == 0) {
      svc->cert = ci;
      svc->have_cert = 1;
    }
  }
  svc->reload_ok = 1;
  svc->reload_time = now_unix();
  cert_expiry_check(svc, 1);
}

/* A certificate or key file that cannot be looked at is no renewal in
 * progress: said (with the reason the helper gives) once it fails two
 * checks in a row, and counted as a failed reload until it is back. */
static void cert_check_failed(ntsntp_uv_service *svc, size_t i) {
  const char *path = i < NTSNTP_KE_MAX_CERTS
                         ? svc->certs[i]
                         : svc->keys[i - NTSNTP_KE_MAX_CERTS];
  char err[1024] = "";
  uint8_t *data = NULL;
  size_t len = 0;
  ntsntp_file_id id;
  if (++svc->check_fail_ticks != 2)
    return;
  if (ntsntp_privsep_read(svc->s.privsep, path, &data, &len, &id, err,
                          sizeof(err)) == 0)
    snprintf(err, sizeof(err), "%s cannot be looked up (stat failed)", path);
  ntsntp_privsep_data_free(data, len);
  slog(svc, NTSNTP_LOG_ERR, "Cannot check certificate file for renewal: "
       "%s; the served certificate stays the old one until this is fixed",
       err);
  svc->check_failed = 1;
  svc->reload_ok = 0;
  svc->reload_time = now_unix();
  svc->reload_failures++;
}
/* monitoring: end */

/* Polled on the loop thread; after the privilege drop the files are read
 * by the privileged helper. */
static void on_cert_timer(uv_timer_t *t) {
  ntsntp_uv_service *svc = t->data;
  ntsntp_file_id now[2 * NTSNTP_KE_MAX_CERTS];
  size_t i;
  int changed = 0;
  memset(now, 0, sizeof(now));
  stat_creds(svc, now);
  cert_expiry_check(svc, 0); /* monitoring */
  for (i = 0; i < 2 * NTSNTP_KE_MAX_CERTS; i++) {
    if (!same_file(&now[i], &svc->cert_id[i]))
      changed = 1;
    if ((i % NTSNTP_KE_MAX_CERTS) < svc->n_pairs && now[i].ino == 0) {
      cert_check_failed(svc, i); /* monitoring */
      return; /* mid-renewal or gone: look again at the next tick */
    }
  }
  if (svc->check_failed) { /* monitoring */
    slog(svc, NTSNTP_LOG_INFO, "Certificate files can be checked again");
    if (!changed)
      svc->reload_ok = 1; /* back as they were: what is served is theirs */
  }
  svc->check_fail_ticks = 0;
  svc->check_failed = 0;
  if (!changed)
    return;
  slog(svc, NTSNTP_LOG_INFO, "Certificate or key file changed");
  /* Remember this version even if it fails to load: one error per change. */
  memcpy(svc->cert_id, now, sizeof(now));
  ntsntp_uv_service_reload(svc);
}

/* Reads every pair (through the privileged helper where there is one)
 * and makes credentials of them; the versions read go to |id|. */
static int load_creds(ntsntp_uv_service *svc, ntsntp_ke_creds **creds,
                      ntsntp_file_id *id, char *errbuf, size_t errlen) {
  ntsntp_ke_pem pem[NTSNTP_KE_MAX_CERTS];
  size_t i;
  int rv = 0;
  memset(pem, 0, sizeof(pem));
  for (i = 0; i < svc->n_pairs && rv == 0; i++) {
    ntsntp_file_id *kid = &id[NTSNTP_KE_MAX_CERTS + i];
    pem[i].cert_name = svc->certs[i];
    pem[i].key_name = svc->keys[i];
    rv = ntsntp_privsep_read(svc->s.privsep, svc->certs[i],
                             (uint8_t **)&pem[i].cert, &pem[i].cert_len,
                             &id[i], errbuf, errlen);
    if (rv == 0)
      rv = ntsntp_privsep_read(svc->s.privsep, svc->keys[i],
                               (uint8_t **)&pem[i].key, &pem[i].key_len, kid,
                               errbuf, errlen);
    pem[i].key_mode = kid->mode;
  }
  if (rv == 0)
    rv = ntsntp_ke_creds_new_pem(creds, pem, svc->n_pairs, errbuf, errlen);
  for (i = 0; i < svc->n_pairs; i++) {
    ntsntp_privsep_data_free((uint8_t *)pem[i].cert, pem[i].cert_len);
    ntsntp_privsep_data_free((uint8_t *)pem[i].key, pem[i].key_len);
  }
  return rv;
}

int ntsntp_uv_service_reload(ntsntp_uv_service *svc) {
  ntsntp_ke_creds *creds;
  char err[1024];
  int rv;
  if (!svc->ke)
    return 0;
  /* The poll need not load this version again. */
  rv = load_creds(svc, &creds, svc->cert_id, err, sizeof(err));
  if (rv) {
    slog(svc, NTSNTP_LOG_ERR, "Could not reload certificate (keeping the "
         "old one): %s", err);
    svc->reload_ok = 0; /* monitoring */
    svc->reload_time = now_unix();
    svc->reload_failures++;
    return rv;
  }
  ntsntp_uv_ke_set_creds(svc->ke, creds);
  svc->reloads++;
  if (svc->n_pairs == 1)
    slog(svc, NTSNTP_LOG_INFO, "Reloaded certificate %s", svc->certs[0]);
  else
    slog(svc, NTSNTP_LOG_INFO, "Reloaded %zu certificates (%s, ...)",
         svc->n_pairs, svc->certs[0]);
  cert_loaded(svc, creds); /* monitoring */
  ntsntp_ke_creds_unref(creds);
  return 0;
}

static int start_ke(ntsntp_uv_service *svc, char *errbuf, size_t errlen) {
  ntsntp_uv_ke_settings ks;
  ntsntp_ke_creds *creds;
  int rv;
  rv = split_pairs(&svc->s, svc->pair_buf, svc->certs, svc->keys,
                   &svc->n_pairs, errbuf, errlen);
  if (rv == 0)
    rv = load_creds(svc, &creds, svc->cert_id, errbuf, errlen);
  if (rv)
    return rv;
  if (ntsntp_ke_creds_warning(creds))
    slog(svc, NTSNTP_LOG_WARN, "%s", ntsntp_ke_creds_warning(creds));
  cert_loaded(svc, creds); /* monitoring */
  ntsntp_uv_ke_settings_default(&ks);
  ks.listen = svc->s.listen;
  ks.n_listen = svc->s.n_listen;
  ks.port = svc->s.ke_port;
  if (svc->s.nts_processes)
    ks.threads = svc->s.nts_processes;
  if (svc->s.max_connections)
    ks.max_connections = svc->s.max_connections;
  ks.ke.creds = creds;
  ks.ke.keyring = svc->keyring;
  ks.ke.ntp_port = svc->s.ntp_port_advertised
                       ? svc->s.ntp_port_advertised
                   : svc->ntp ? ntsntp_uv_ntp_port(svc->ntp, 0)
                              : svc->s.ntp_port; /* ke role: the fleet's */
  ks.ke.ntp_server = svc->s.ntp_server_name && *svc->s.ntp_server_name
                         ? svc->s.ntp_server_name
                         : NULL;
  ks.log = svc->s.log;
  ks.log_user = svc->s.log_user;
  ntsntp__access_svc_wire_ke(svc->access, &ks); /* access */
  ks.first_byte_ms = svc->s.nts_first_byte_timeout_ms; /* access */
  if (svc->s.nts_request_timeout_ms) /* access */
    ks.ke.timeout_ms = svc->s.nts_request_timeout_ms;
  rv = ntsntp_uv_ke_start(svc->loop, &ks, &svc->ke, errbuf, errlen);
  if (rv == 0)
    svc->handles++; /* until the KE threads are gone (shutdown_parts) */
  ntsntp_ke_creds_unref(creds);
  return rv;
}

/* access: begin.  ACL and rate limits on the NTP and NTS-KE hooks
 * (access_svc.c); ntsctl clients from the NTP workers' tables. */
static int start_access(ntsntp_uv_service *svc, int want_ntp, int want_ke,
                        char *errbuf, size_t errlen) {
  ntsntp__access_svc_settings as;
  memset(&as, 0, sizeof(as));
  as.allow = svc->s.allow;
  as.deny = svc->s.deny;
  as.ntp = svc->s.ratelimit;
  as.ke = svc->s.nts_ratelimit;
  as.client_log_limit = svc->s.client_log_limit;
  as.ntp_workers = svc->s.workers;
  as.want_ntp = want_ntp;
  as.want_ke = want_ke;
  as.max_per_client = svc->s.max_connections_per_client;
  as.max_per_network = svc->s.max_connections_per_network;
  as.max_connections = svc->s.max_connections ? svc->s.max_connections : 512;
  as.log = svc->s.log;
  as.log_user = svc->s.log_user;
  return ntsntp__access_svc_new(&svc->access, &as, errbuf, errlen);
}

static size_t ctl_clients(void *user, ntsntp_ctl_client *out, size_t max) {
  ntsntp_uv_service *svc = user;
  return ntsntp__access_svc_clients(svc->access, out, max);
}

static void ctl_ratelimit(void *user, ntsntp_ctl_ratelimit *out) {
  ntsntp_uv_service *svc = user;
  ntsntp__access_svc_table_sizes(svc->access, out);
}
/* access: end */

/* control: begin.  ntsctl and /metrics: counters from the workers, the
 * clock being served (local clock mode: no sources). */
static void ctl_stats(void *user, ntsntp_uv_service_stats *st) {
  ntsntp_uv_service_get_stats(user, st);
}

static void ctl_tracking(void *user, ntsntp_ctl_tracking *t) {
  ntsntp_uv_service *svc = user;
  const ntsntp_sync *sync = ntsntp_uv_service_sync(svc);
  ntsntp_clock_state cs;
  ntsntp_tracking tr;
  struct timespec ref;
  ntsntp_server_get_clock(svc->server, &cs);
  ntsntp_ctl_tracking_from_clock(t, &cs);
  if (!sync)
    return; /* local clock mode: the served clock says it all */
  ntsntp_sync_tracking(sync, now_ntp(), &tr);
  /* sources: 127.127.1.1 in the list serving meanwhile keeps LOCAL */
  if (cs.refid != NTSNTP_REFID_LOCAL || cs.stratum != svc->s.local_stratum)
    snprintf(t->ref_name, sizeof(t->ref_name), "%s", tr.ref_name);
  if (tr.ref_time) {
    ntsntp_ts_to_timespec(tr.ref_time, (int64_t)time(NULL), &ref);
    t->ref_time_sec = ref.tv_sec;
    t->ref_time_nsec = (uint32_t)ref.tv_nsec;
  }
  /* chronyc's signs: frequency > 0 means the local clock runs fast. */
  t->system_time = tr.system_offset;
  t->last_offset = tr.last_offset;
  t->rms_offset = tr.rms_offset;
  t->frequency_ppm = -tr.freq_ppm;
  t->residual_freq_ppm = tr.resid_freq_ppm;
  t->skew_ppm = tr.skew_ppm;
  t->update_interval = tr.update_interval;
  /* sources: holdover and the leap second */
  t->holdover = tr.holdover;
  t->holdover_left = tr.holdover_left;
  if (tr.leap_pending) {
    time_t at = (time_t)((int64_t)tr.leap_at - (int64_t)NTSNTP_UNIX_OFFSET -
                         (tr.leap_pending > 0 ? 1 : 2));
    struct tm tm;
    char when[32] = "";
    if (gmtime_r(&at, &tm))
      strftime(when, sizeof(when), "%Y-%m-%d 23:59:", &tm);
    snprintf(t->leap_second, sizeof(t->leap_second),
             "%s at %s%s UTC, LEAPSECMODE %s%s%s",
             tr.leap_pending > 0 ? "insert" : "delete", when,
             tr.leap_pending > 0 ? "60" : "59",
             ntsntp_leap_mode_name(svc->s.leap_mode),
             svc->s.leap_smear ? ", smeared" : "",
             tr.leap_announced ? "" : " (not announced)");
  } else if (tr.leap_list == 2) {
    snprintf(t->leap_second, sizeof(t->leap_second),
             "none known: the leap second list has expired");
  }
}

/* sources: `ntsctl reload sources` through the embedder (the daemon reads
 * its configuration again). */
static int ctl_reload_sources(void *user, char *msg, size_t len) {
  ntsntp_uv_service *svc = user;
  return svc->s.reload_sources(svc->s.reload_user, msg, len);
}

static void ctl_cert(void *user, ntsntp_ctl_cert *out) {
  ntsntp_uv_service *svc = user;
  memset(out, 0, sizeof(*out));
  out->now = now_unix();
  if (!svc->ke)
    return;
  out->loaded = svc->have_cert;
  out->not_after = svc->have_cert ? svc->cert.not_after : 0;
  out->not_before = svc->have_cert ? svc->cert.not_before : 0;
  out->last_reload_ok = svc->reload_ok;
  out->last_reload = svc->reload_time;
  out->reload_failures = svc->reload_failures;
  out->file_check_failed = svc->check_failed;
  snprintf(out->subject, sizeof(out->subject), "%s", svc->cert.subject);
}

/* selectdata's S column from the sync core's state (chronyc's letters:
 * M no sample yet, s unsynchronised, d distance too large, S stale, N not
 * selectable (KoD), ~ jittery, x falseticker, D not combined, + combined,
 * * selected). */
static char select_char(const ntsntp_source_info *in) {
  switch (in->state) {
  case NTSNTP_SOURCE_SELECTED:
    return '*';
  case NTSNTP_SOURCE_COMBINED:
    return '+';
  case NTSNTP_SOURCE_SELECTABLE:
    return 'D';
  case NTSNTP_SOURCE_FALSETICKER:
    return 'x';
  case NTSNTP_SOURCE_JITTERY:
    return '~';
  case NTSNTP_SOURCE_STOPPED:
    return 'N';
  case NTSNTP_SOURCE_UNREACHABLE:
    return 'S';
  default:
    if (in->last_rx < 0)
      return 'M';
    if (in->leap == NTSNTP_LEAP_UNSYNC || in->stratum == 0 ||
        in->stratum >= 16)
      return 's';
    return 'd';
  }
}

static size_t ctl_sources(void *user, ntsntp_ctl_source *out, size_t max) {
  ntsntp_uv_service *svc = user;
  const ntsntp_sync *sync = ntsntp_uv_service_sync(svc);
  uint64_t now = now_ntp();
  unsigned i, n = sync ? ntsntp_sync_n_sources(sync) : 0;
  size_t k = 0;
  for (i = 0; i < n && k < max; i++) {
    ntsntp_source_info in;
    ntsntp_ctl_source *o = &out[k];
    if (ntsntp_sync_source_info(sync, i, now, &in))
      continue;
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", in.name);
    o->mode = in.refclock ? '#' : '^'; /* refclock */
    o->state = ntsntp_source_state_char(in.state);
    o->stratum = in.stratum;
    o->poll = in.poll;
    o->reach = in.reach;
    o->last_rx = in.last_rx < 0 ? -1 : (int64_t)in.last_rx;
    /* chronyc shows local - source: the negated offset of the source. */
    o->offset = -in.offset;
    o->measured_offset = -in.last_offset;
    o->error = in.root_distance;
    o->np = in.np;
    o->nr = in.nr;
    o->span = (uint32_t)(in.span + 0.5);
    /* chronyc's signs: the source against the local clock. */
    o->frequency_ppm = -in.freq_ppm;
    o->freq_skew_ppm = in.freq_skew_ppm;
    o->est_offset = -in.offset;
    o->std_dev = in.std_dev;
    o->refid = in.refid; /* monitoring */
    o->leap = in.leap;
    o->select_state = select_char(&in);
    o->delay = in.delay;
    o->disp = in.disp;
    o->root_delay = in.root_delay;
    o->root_disp = in.root_disp;
    if (svc->up) { /* the upstream source of that name, if it is one */
      /* same index as the sync core's (sources: pool members too) */
      o->have_detail =
          ntsntp_uv_upstream_source_get(svc->up, i, &o->detail) == 0;
      if (!o->have_detail)
        memset(&o->detail, 0, sizeof(o->detail));
    }
    k++;
  }
  return k;
}

static int start_ctl(ntsntp_uv_service *svc, char *errbuf, size_t errlen) {
  ntsntp_uv_ctl_settings cs;
  const char *sock = svc->s.control_socket;
  char path[4096];
  int rv;
  ntsntp_uv_ctl_settings_default(&cs);
  if (!sock) {
    rv = make_state_dir(svc, " (or set CONTROL_SOCKET)", errbuf, errlen);
    if (rv)
      return rv;
    snprintf(path, sizeof(path), "%s/%s", svc->s.state_dir,
             NTSNTP_CTL_SOCKET_NAME);
    sock = path;
  }
  cs.socket_path = strcmp(sock, "none") ? sock : NULL;
  cs.metrics_listen = svc->s.metrics_listen;
  cs.provider.stats = ctl_stats;
  cs.provider.tracking = ctl_tracking;
  cs.provider.sources = ctl_sources;
  cs.provider.clients = svc->ntp ? ctl_clients : NULL; /* access */
  cs.provider.ratelimit = svc->access ? ctl_ratelimit : NULL; /* monitoring */
  cs.provider.cert = ctl_cert;
  cs.provider.reload_sources = /* sources */
      svc->s.reload_sources ? ctl_reload_sources : NULL;
  cs.provider.user = svc;
  cs.log = svc->s.log;
  cs.log_user = svc->s.log_user;
  rv = ntsntp_uv_ctl_start(svc->loop, &cs, &svc->ctl, errbuf, errlen);
  if (rv == 0 && cs.socket_path && *cs.socket_path)
    slog(svc, NTSNTP_LOG_INFO, "Control socket %s", cs.socket_path);
  if (rv == 0 && ntsntp_uv_ctl_metrics_port(svc->ctl))
    slog(svc, NTSNTP_LOG_INFO, "Serving /metrics on %s", svc->s.metrics_listen);
  return rv;
}
/* control: end */

/* Frees the service when the last of its handles (and the upstream
 * runtime, counted as one) has closed. */
static void svc_unref(ntsntp_uv_service *svc) {
  if (--svc->handles == 0) {
    void (*done)(void *) = svc->done;
    void *user = svc->done_user;
    ntsntp_server_del(svc->server);
    ntsntp__access_svc_del(svc->access); /* access */
    ntsntp_keyring_del(svc->keyring);
    ntsntp_keyring_del(svc->keyring_prev);
    ntsntp__mfree(svc);
    if (done)
      done(user);
  }
}

static void handle_closed(uv_handle_t *h) { svc_unref(h->data); }

/* A part's stop is done: the last one frees |svc|. */
static void part_stopped(void *user) { svc_unref(user); }

static uint64_t serve_adjust(void *user, uint64_t sys) {
  return ntsntp_sync_serve(user, sys);
}

/* NTP_SERVERS=127.127.1.1 (or nothing): the local clock, as chrony's
 * `local stratum N`; anything else: follow those servers. */
static int local_mode(const ntsntp_uv_service_settings *s) {
  return s->n_servers == 0 ||
         (s->n_servers == 1 && !strcmp(s->servers[0], "127.127.1.1"));
}

/* refclock: begin */
static void rc_updated(void *user) {
  ntsntp_uv_service *svc = user;
  if (svc->up)
    ntsntp_uv_upstream_publish(svc->up);
}


/* REFCLOCKS, and NTP_SERVERS' ntpd refclock addresses (127.127.28.N is
 * SHM unit N); the other servers are left for the upstream runtime. */
static int prepare_refclocks(ntsntp_uv_service *svc, char *errbuf,
                             size_t errlen) {
  const ntsntp_uv_service_settings *s = &svc->s;
  size_t i, max = sizeof(svc->up_servers) / sizeof(svc->up_servers[0]);
  int rv = ntsntp_refclock_parse_list(s->refclocks, svc->rc_conf,
                                      NTSNTP_REFCLOCK_MAX, errbuf, errlen);
  if (rv < 0)
    return NTSNTP_ERR_BAD_CONFIG;
  svc->n_rc = (size_t)rv;
  for (i = 0; i < s->n_servers; i++) {
    rv = ntsntp_refclock_legacy(s->servers[i], svc->rc_conf, svc->n_rc,
                                NTSNTP_REFCLOCK_MAX, errbuf, errlen);
    if (rv < 0)
      return NTSNTP_ERR_BAD_CONFIG;
    if (rv == 1) {
      slog(svc, NTSNTP_LOG_INFO, "NTP_SERVERS %s: SHM unit %u (refid %s), "
           "as REFCLOCKS=\"SHM %u\"", s->servers[i], svc->rc_conf[svc->n_rc].unit,
           svc->rc_conf[svc->n_rc].name, svc->rc_conf[svc->n_rc].unit);
      svc->n_rc++;
    } else if (svc->n_up_servers < max) {
      svc->up_servers[svc->n_up_servers++] = s->servers[i];
    } else {
      ntsntp__errf(errbuf, errlen, "NTP_SERVERS has %zu servers; at most %d",
                   s->n_servers, NTSNTP_SYNC_MAX_SOURCES);
      return NTSNTP_ERR_BAD_CONFIG;
    }
  }
  /* With reference clocks, 127.127.1.1 is chrony's `local`: served only
   * while no source is selectable (upstream.h). */
  return 0;
}

static int start_refclocks(ntsntp_uv_service *svc, char *errbuf,
                           size_t errlen) {
  ntsntp_uv_refclock_settings rs;
  int rv;
  ntsntp_uv_refclock_settings_default(&rs);
  rs.confs = svc->rc_conf;
  rs.n = svc->n_rc;
  rs.sync = ntsntp_uv_upstream_sync_rw(svc->up);
  rs.updated = rc_updated;
  rs.user = svc;
  rs.log = svc->s.log;
  rs.log_user = svc->s.log_user;
  rv = ntsntp_uv_refclock_start(svc->loop, &rs, &svc->rc, errbuf, errlen);
  if (rv == 0)
    svc->handles++;
  return rv;
}
/* refclock: end */

static int start_upstream(ntsntp_uv_service *svc, char *errbuf,
                          size_t errlen) {
  ntsntp_uv_upstream_settings us;
  int rv;
  ntsntp_uv_upstream_settings_default(&us);
  us.servers = svc->up_servers;
  us.n_servers = svc->n_up_servers;
  us.n_refclocks = svc->n_rc;
  us.ca_file = svc->s.ca_file && *svc->s.ca_file ? svc->s.ca_file : NULL;
  us.state_dir = svc->s.state_dir;
  us.server = svc->server;
  us.sync.minpoll = svc->s.minpoll;
  us.sync.maxpoll = svc->s.maxpoll;
  /* sources: begin */
  if (svc->s.maxsources)
    us.maxsources = svc->s.maxsources;
  us.local_stratum = svc->s.local_stratum;
  us.leapseclist = svc->s.leapseclist;
  us.sync.holdover = svc->s.holdover;
  us.sync.leap_mode = svc->s.leap_mode;
  us.sync.leap_smear = svc->s.leap_smear;
  /* sources: end */
  if (svc->s.clock_control) {
    if (svc->s.privsep) /* CAP_SYS_TIME is the helper's alone */
      ntsntp_privsep_clock_ops(svc->s.privsep, &svc->clock_ops);
    else
      ntsntp_uv_sysclock_ops(&svc->clock_ops);
    us.sync.clock_ops = &svc->clock_ops;
    us.sync.rtcsync = 1;
  }
  us.log = svc->s.log;
  us.log_user = svc->s.log_user;
  if (make_state_dir(svc, "", NULL, 0))
    us.state_dir = NULL; /* no drift file; the error shows at key time */
  rv = ntsntp_uv_upstream_start(svc->loop, &us, &svc->up, errbuf, errlen);
  if (rv == 0)
    svc->handles++;
  if (rv == 0 && svc->n_rc) /* refclock */
    rv = start_refclocks(svc, errbuf, errlen);
  return rv;
}

/* sources: begin */
int ntsntp_uv_service_reload_sources(ntsntp_uv_service *svc,
                                     const ntsntp_uv_service_settings *s,
                                     char *msg, size_t len) {
  ntsntp_uv_service_settings latest;
  ntsntp_uv_upstream_settings us;
  ntsntp_uv_upstream_changes ch;
  const char *items[NTSNTP_SYNC_MAX_SOURCES];
  char err[1024];
  size_t i, n = 0;
  int rv;
  if (!svc || !s || !msg)
    return NTSNTP_ERR_INVALID_ARG;
  NTSNTP__SETTINGS_GET(s, latest, uv_service, msg, len);
  /* (With reference clocks an empty NTP_SERVERS is no local clock.) */
  if (!svc->up || (!svc->n_rc && local_mode(s))) { /* refclock */
    rv = !svc->up && local_mode(s) ? 0 : NTSNTP_ERR_STATE;
    snprintf(msg, len, rv ? "NTP_SERVERS changed to or from the local clock "
             "alone: restart ntsd to apply it" : "sources unchanged: the "
             "local clock alone");
    slog(svc, rv ? NTSNTP_LOG_WARN : NTSNTP_LOG_INFO, "%s", msg);
    return rv;
  }
  for (i = 0; i < s->n_servers; i++) {
    /* ntpd's reference clock addresses are the refclock runtime's. */
    if (!strncmp(s->servers[i], "127.127.", 8) &&
        strcmp(s->servers[i], "127.127.1.1"))
      continue;
    if (n == NTSNTP_SYNC_MAX_SOURCES) {
      snprintf(msg, len, "NTP_SERVERS has %zu items; at most %d",
               s->n_servers, NTSNTP_SYNC_MAX_SOURCES);
      return NTSNTP_ERR_BAD_CONFIG;
    }
    items[n++] = s->servers[i];
  }
  ntsntp_uv_upstream_settings_default(&us);
  us.servers = items;
  us.n_servers = n;
  if (s->maxsources)
    us.maxsources = s->maxsources;
  us.leapseclist = s->leapseclist;
  us.ca_file = s->ca_file && *s->ca_file ? s->ca_file : NULL;
  rv = ntsntp_uv_upstream_reload(svc->up, &us, &ch, err, sizeof(err));
  if (rv) {
    snprintf(msg, len, "sources not reloaded: %s", err);
    slog(svc, NTSNTP_LOG_ERR, "%s", msg);
    return rv;
  }
  snprintf(msg, len, "sources reloaded: %u added, %u removed, %u unchanged",
           ch.added, ch.removed, ch.kept);
  slog(svc, NTSNTP_LOG_INFO, "%s", msg);
  return 0;
}
/* sources: end */

const ntsntp_sync *ntsntp_uv_service_sync(const ntsntp_uv_service *svc) {
  return svc->up ? ntsntp_uv_upstream_sync(svc->up) : NULL;
}

/* Called once the NTP workers are gone (they read the sync core). */
static void close_handles(ntsntp_uv_service *svc) {
  if (svc->rc) { /* refclock: before the sync core it feeds */
    ntsntp_uv_refclock_stop(svc->rc, part_stopped, svc);
    svc->rc = NULL;
  }
  if (svc->up) {
    ntsntp_uv_upstream_stop(svc->up, part_stopped, svc);
    svc->up = NULL;
  }
  uv_close((uv_handle_t *)&svc->rotate_timer, handle_closed);
  uv_close((uv_handle_t *)&svc->clock_timer, handle_closed);
  uv_close((uv_handle_t *)&svc->cert_timer, handle_closed);
}

static void ntp_stopped(void *user) { close_handles(user); }

static void init_handles(ntsntp_uv_service *svc) {
  uv_timer_init(svc->loop, &svc->rotate_timer);
  uv_timer_init(svc->loop, &svc->clock_timer);
  uv_timer_init(svc->loop, &svc->cert_timer);
  svc->rotate_timer.data = svc->clock_timer.data = svc;
  svc->cert_timer.data = svc;
  svc->handles = 3;
}

/* Stops whatever parts are running; the NTP workers last, since they read
 * the key rings and the sync core.  Frees |svc| once all is closed. */
static void shutdown_parts(ntsntp_uv_service *svc) {
  if (svc->ctl) /* control: no provider calls after this */
    ntsntp_uv_ctl_stop(svc->ctl, NULL, NULL);
  svc->ctl = NULL;
  if (svc->ke) { /* its threads read the key rings and access tables */
    ntsntp_uv_ke_stop(svc->ke, part_stopped, svc);
    svc->ke = NULL;
  }
  save_keys(svc);
  if (svc->ntp)
    ntsntp_uv_ntp_stop(svc->ntp, ntp_stopped, svc);
  else
    close_handles(svc);
}

static int check_settings(const ntsntp_uv_service_settings *s, char *errbuf,
                          size_t errlen) {
  int cert = s->cert && *s->cert, key = s->key && *s->key;
  if (cert != key) {
    ntsntp__errf(errbuf, errlen,
                 "NTS_CERT and NTS_KEY must be set together "
                 "(certificate chain and its private key)");
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (s->role == NTSNTP_ROLE_KE && !cert) {
    ntsntp__errf(errbuf, errlen,
                 "NTS_ROLE=ke serves only NTS-KE; fix: set "
                 "NTS_CERT and NTS_KEY");
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (s->role == NTSNTP_ROLE_KE &&
      (!s->ntp_server_name || !*s->ntp_server_name)) {
    ntsntp__errf(errbuf, errlen,
                 "NTS_ROLE=ke sends clients to another NTP "
                 "server; fix: set NTS_NTP_SERVER to its name or address");
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (s->role != NTSNTP_ROLE_ALL &&
      (!s->key_secret_file || !*s->key_secret_file)) {
    ntsntp__errf(errbuf, errlen,
                 "NTS_ROLE=%s needs the fleet's shared cookie "
                 "keys; fix: set NTS_KEY_SECRET_FILE on every instance",
                 s->role == NTSNTP_ROLE_KE ? "ke" : "ntp");
    return NTSNTP_ERR_BAD_CONFIG;
  }
  return 0;
}

int ntsntp_uv_service_start(uv_loop_t *loop,
                            const ntsntp_uv_service_settings *s,
                            ntsntp_uv_service **out, char *errbuf,
                            size_t errlen) {
  ntsntp_uv_service_settings latest;
  ntsntp_uv_service *svc;
  ntsntp_server_settings ss;
  ntsntp_uv_ntp_settings ns;
  char hw_buf[256], *hw_names[8]; /* HWTIMESTAMP, split */
  int rv, want_ke, want_ntp, want_keys;

  NTSNTP__SETTINGS_GET(s, latest, uv_service, errbuf, errlen);
  rv = check_settings(s, errbuf, errlen);
  if (rv)
    return rv;
  want_ke = s->role != NTSNTP_ROLE_NTP && nts_enabled(s);
  want_ntp = s->role != NTSNTP_ROLE_KE;
  want_keys = want_ke || (s->key_secret_file && *s->key_secret_file);
  svc = ntsntp__calloc(1, sizeof(*svc));
  if (!svc) {
    ntsntp__errf(errbuf, errlen, "service: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  svc->s = *s;
  svc->loop = loop;
  init_handles(svc);

  if (want_keys) {
    rv = make_state_dir(svc, "", errbuf, errlen);
    if (rv)
      goto fail;
    snprintf(svc->keyfile, sizeof(svc->keyfile), "%s/%s", s->state_dir,
             KEYFILE_NAME);
    rv = s->key_secret_file && *s->key_secret_file
             ? secret_keys(svc, errbuf, errlen)
             : load_keys(svc, errbuf, errlen);
    if (rv)
      goto fail;
  }
  ntsntp_server_settings_default(&ss);
  ss.keyring = svc->keyring;
  ss.keyring_prev = svc->keyring_prev;
  rv = ntsntp_server_new(&svc->server, &ss, errbuf, errlen);
  if (rv == 0) /* access */
    rv = start_access(svc, want_ntp, want_ke, errbuf, errlen);
  if (rv)
    goto fail;
  if (want_ntp) {
    if ((rv = prepare_refclocks(svc, errbuf, errlen)) != 0) /* refclock */
      goto fail;
    if (!svc->n_rc && local_mode(s))
      on_clock(&svc->clock_timer);
    else if ((rv = start_upstream(svc, errbuf, errlen)) != 0)
      goto fail;
    ntsntp_uv_ntp_settings_default(&ns);
    ns.listen = s->listen;
    ns.n_listen = s->n_listen;
    /* HWTIMESTAMP: the names are read during start only. */
    if (s->hwtimestamp && *s->hwtimestamp) {
      int k;
      snprintf(hw_buf, sizeof(hw_buf), "%s", s->hwtimestamp);
      k = ntsntp_conf_split(hw_buf, hw_names, 8);
      if (k <= 0) {
        ntsntp__errf(errbuf, errlen,
                     "HWTIMESTAMP must be interface names "
                     "separated by commas, without spaces (at most 8)");
        rv = NTSNTP_ERR_BAD_CONFIG;
        goto fail;
      }
      ns.hw_ifaces = (const char *const *)hw_names;
      ns.n_hw_ifaces = (size_t)k;
    }
    ns.port = s->ntp_port;
    ns.workers = s->workers;
    ns.server = svc->server;
    if (svc->up) {
      ns.adjust = serve_adjust;
      ns.adjust_user = (void *)ntsntp_uv_upstream_sync(svc->up);
    }
    ns.log = s->log;
    ns.log_user = s->log_user;
    ntsntp__access_svc_wire_ntp(svc->access, &ns); /* access */
    rv = ntsntp_uv_ntp_start(loop, &ns, &svc->ntp, errbuf, errlen);
    if (rv)
      goto fail;
  }
  if (want_ke) {
    rv = start_ke(svc, errbuf, errlen);
    if (rv)
      goto fail;
    uv_timer_start(&svc->cert_timer, on_cert_timer,
                   s->cert_poll_ms ? s->cert_poll_ms : 5000,
                   s->cert_poll_ms ? s->cert_poll_ms : 5000);
  } else if (s->role == NTSNTP_ROLE_NTP) {
    slog(svc, NTSNTP_LOG_INFO, "NTS_ROLE=ntp: NTP and NTS-authenticated NTP "
         "only; NTS-KE runs elsewhere");
  } else {
    slog(svc, NTSNTP_LOG_INFO,
         "NTS is off (set NTS_CERT and NTS_KEY to enable it)");
  }
  if (svc->keyring)
    arm_rotation(svc);
  rv = start_ctl(svc, errbuf, errlen); /* control */
  if (rv)
    goto fail;
  if (want_ntp && !svc->up)
    uv_timer_start(&svc->clock_timer, on_clock, 1000, 1000);
  *out = svc;
  return 0;
fail:
  svc->done = NULL;
  shutdown_parts(svc);
  return rv;
}

void ntsntp_uv_service_get_stats(const ntsntp_uv_service *svc,
                                 ntsntp_uv_service_stats *st) {
  memset(st, 0, sizeof(*st));
  if (svc->ntp)
    ntsntp_uv_ntp_get_stats(svc->ntp, &st->ntp);
  if (svc->ke)
    ntsntp_uv_ke_get_stats(svc->ke, &st->ke);
  st->nts_enabled = svc->ke != NULL;
  st->key_rotations = svc->rotations;
  st->cert_reloads = svc->reloads;
}

uint16_t ntsntp_uv_service_ntp_port(const ntsntp_uv_service *svc,
                                    size_t idx) {
  return svc->ntp ? ntsntp_uv_ntp_port(svc->ntp, idx) : 0;
}

uint16_t ntsntp_uv_service_ke_port(const ntsntp_uv_service *svc,
                                   size_t idx) {
  return svc->ke ? ntsntp_uv_ke_port(svc->ke, idx) : 0;
}

void ntsntp_uv_service_stop(ntsntp_uv_service *svc, void (*done)(void *user),
                            void *user) {
  svc->done = done;
  svc->done_user = user;
  shutdown_parts(svc);
}
