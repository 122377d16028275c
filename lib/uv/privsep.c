/*
 * libntsntp runtime: the privileged helper (privsep.h).
 *
 * One request at a time over a SOCK_STREAM socketpair: a fixed header,
 * then a path for READ and STAT.  The answer is a fixed header, then the
 * file's bytes (READ) or a one-line message (any failure).  The server
 * side waits at most timeout_ms for an answer; a helper that is late or
 * says something malformed is stopped and never asked again.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "errtext.h"
#include "ntsntp/privsep.h"
#include "ntsntp/sandbox.h"
#include "../settings.h"
#include "../mem.h"
#include "tls.h" /* ntsntp__cred_file_read, NTSNTP__MAX_CRED_FILE */

#define MAX_FILES 32
#define MAX_LINKS 40
#define HELPER_FD 3

enum { OP_HELLO, OP_READ, OP_STAT, OP_SLEW, OP_STEP, OP_RTC, OP_LEAP };
/* Not an error: the helper will not read this path (a directory on the
 * way is not root's alone); the server reads it itself. */
#define ST_UNTRUSTED 1

typedef struct req {
  uint32_t op, len; /* len: bytes of path that follow */
  double a, b;
} req;

typedef struct rep {
  int32_t status; /* 0, ST_UNTRUSTED or a negative NTSNTP_ERR_* */
  uint32_t len;   /* bytes that follow: data (READ ok) or a message */
  int32_t err;    /* errno of a clock operation */
  uint32_t pad;
  ntsntp_file_id id;
} rep;

struct ntsntp_privsep {
  pthread_mutex_t lock;
  int fd;   /* -1: the helper is gone */
  pid_t pid;
  unsigned timeout_ms;
  int clock_control;
  uid_t uid; /* the server's user: files the helper does not read */
  gid_t gid;
};

/* ------------------------------------------------------------------ */
/* Both sides                                                          */
/* ------------------------------------------------------------------ */

static void fill_id(ntsntp_file_id *id, const struct stat *st) {
  memset(id, 0, sizeof(*id));
  id->dev = (uint64_t)st->st_dev;
  id->ino = (uint64_t)st->st_ino;
  id->size = (uint64_t)st->st_size;
  id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  id->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
  id->mode = (uint32_t)st->st_mode;
  id->uid = (uint32_t)st->st_uid;
}

/* ------------------------------------------------------------------ */
/* The helper                                                          */
/* ------------------------------------------------------------------ */

typedef struct helper {
  int fd;
  size_t n;
  char *asked[MAX_FILES]; /* as the server names them */
  char *abs[MAX_FILES];   /* the same, absolute */
  ntsntp_clock_ops clock;
  int clock_control;
} helper;

/* Sends (|out|) or reads all |len| bytes; -1 when the peer is gone. */
static int io_all(int fd, void *buf, size_t len, int out) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t len) {
  return io_all(fd, (void *)buf, len, 1);
}

static int read_all(int fd, void *buf, size_t len) {
  return io_all(fd, buf, len, 0);
}

static void reply(helper *h, int status, const ntsntp_file_id *id,
                  const void *data, size_t len) {
  rep r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.len = (uint32_t)len;
  if (id)
    r.id = *id;
  if (write_all(h->fd, &r, sizeof(r)) || write_all(h->fd, data, len))
    _exit(0); /* the server is gone */
}

static void reply_msg(helper *h, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_msg(helper *h, int status, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  reply(h, status, NULL, msg, strlen(msg));
}

/* Root alone decides what |name| in the directory |d| is: the directory
 * is root's and nobody else may write it, or it is sticky (like /tmp) and
 * the entry is root's, so nobody else may replace it. */
static int root_only(const struct stat *d, const struct stat *entry) {
  if (d->st_uid != 0)
    return 0;
  if (!(d->st_mode & (S_IWGRP | S_IWOTH)))
    return 1;
  return (d->st_mode & S_ISVTX) && entry->st_uid == 0;
}

/*
 * Opens |path| (absolute) for reading, resolving links itself, only when
 * root alone controls every directory it looks a name up in.  Returns the
 * descriptor, or -1 with a message in |why| and |*status| ST_UNTRUSTED
 * (read it yourself) or an error.
 */
static int open_root_only(const char *path, struct stat *out, int *status,
                          char *why, size_t whylen) {
  char rest[2 * PATH_MAX], seen[PATH_MAX], comp[NAME_MAX + 1];
  char target[PATH_MAX];
  struct stat ds, st;
  int dir, links = 0, fd;
  size_t len;

  *status = NTSNTP_ERR_IO;
  if (snprintf(rest, sizeof(rest), "%s", path) >= (int)sizeof(rest)) {
    snprintf(why, whylen, "path too long");
    return -1;
  }
  seen[0] = 0;
  dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    goto fail_errno;
  for (;;) {
    char *p = rest, *slash;
    while (*p == '/')
      p++;
    slash = strchr(p, '/');
    len = slash ? (size_t)(slash - p) : strlen(p);
    if (len > NAME_MAX) {
      errno = ENAMETOOLONG;
      goto fail_errno;
    }
    memcpy(comp, p, len);
    comp[len] = 0;
    memmove(rest, p + len, strlen(p + len) + 1);
    if (len == 0 || !strcmp(comp, ".")) {
      if (len == 0) { /* the path ended in "/" or "." */
        errno = EISDIR;
        goto fail_errno;
      }
      continue;
    }
    if (fstat(dir, &ds) < 0)
      goto fail_errno;
    if (!strcmp(comp, "..")) {
      int up = openat(dir, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
      char *cut = strrchr(seen, '/');
      if (up < 0)
        goto fail_errno;
      close(dir);
      dir = up;
      if (cut)
        *cut = 0;
      continue;
    }
    if (fstatat(dir, comp, &st, AT_SYMLINK_NOFOLLOW) < 0)
      goto fail_errno;
    if (!root_only(&ds, &st)) {
      snprintf(why, whylen, "the directory %s/ is not root's alone (owner "
               "uid %u, mode %04o)", seen[0] ? seen : "",
               (unsigned)ds.st_uid, (unsigned)(ds.st_mode & 07777));
      *status = ST_UNTRUSTED;
      close(dir);
      return -1;
    }
    if (S_ISLNK(st.st_mode)) {
      ssize_t n;
      if (++links > MAX_LINKS) {
        errno = ELOOP;
        goto fail_errno;
      }
      n = readlinkat(dir, comp, target, sizeof(target) - 1);
      if (n <= 0)
        goto fail_errno;
      target[n] = 0;
      if (strlen(rest) + (size_t)n + 2 > sizeof(rest)) {
        errno = ENAMETOOLONG;
        goto fail_errno;
      }
      memmove(rest + n + 1, rest, strlen(rest) + 1);
      memcpy(rest, target, (size_t)n);
      rest[n] = '/';
      if (rest[n + 1] == 0)
        rest[n] = 0; /* the link was the last component */
      if (target[0] == '/') {
        close(dir);
        seen[0] = 0;
        dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
          goto fail_errno;
      }
      continue;
    }
    if (strlen(seen) + len + 2 > sizeof(seen)) {
      errno = ENAMETOOLONG;
      goto fail_errno;
    }
    strcat(seen, "/");
    strcat(seen, comp);
    if (rest[strspn(rest, "/")] != 0) { /* a directory on the way */
      int next;
      if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        goto fail_errno;
      }
      next = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0)
        goto fail_errno;
      close(dir);
      dir = next;
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      snprintf(why, whylen, "%s is not a regular file", seen);
      *status = NTSNTP_ERR_BAD_CONFIG;
      close(dir);
      return -1;
    }
    fd = openat(dir, comp,
                O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EPERM)) {
      /* Another user's file (the helper holds no DAC capability): that
       * user may be the one the server runs as. */
      snprintf(why, whylen, "root without capabilities may not read %s "
               "(owner uid %u, mode %04o)", seen, (unsigned)st.st_uid,
               (unsigned)(st.st_mode & 07777));
      *status = ST_UNTRUSTED;
      close(dir);
      return -1;
    }
    if (fd < 0)
      goto fail_errno;
    close(dir);
    dir = -1;
    if (fstat(fd, out) < 0 || out->st_ino != st.st_ino ||
        out->st_dev != st.st_dev || !S_ISREG(out->st_mode)) {
      close(fd);
      snprintf(why, whylen, "%s changed while being opened", path);
      return -1;
    }
    return fd;
  }
fail_errno:
  snprintf(why, whylen, "%s (after %s/)%s", strerror(errno), seen,
           errno == ENOENT ? "; check the path (in Docker: NTS_DOMAIN and "
                             "LETSENCRYPT_DIR; a missing host directory is "
                             "mounted as an empty one)"
                           : "");
  if (dir >= 0)
    close(dir);
  return -1;
}

static int find_file(const helper *h, const char *path) {
  size_t i;
  for (i = 0; i < h->n; i++)
    if (!strcmp(h->asked[i], path))
      return (int)i;
  return -1;
}

static void serve_file(helper *h, int op, const char *path) {
  struct stat st;
  ntsntp_file_id id;
  char why[768];
  uint8_t *buf;
  size_t len;
  int i = find_file(h, path), fd, status;

  if (i < 0) {
    reply_msg(h, ST_UNTRUSTED, "not one of the files given at start-up "
              "(a changed NTS_CERT or NTS_KEY needs a restart)");
    return;
  }
  fd = open_root_only(h->abs[i], &st, &status, why, sizeof(why));
  if (fd < 0) {
    reply_msg(h, status, "%s", why);
    return;
  }
  fill_id(&id, &st);
  if (op == OP_STAT) {
    close(fd);
    reply(h, 0, &id, NULL, 0);
    return;
  }
  status = ntsntp__cred_fd_read(fd, path, ntsntp_mem_default(), &buf, &len,
                                NULL, why, sizeof(why));
  if (status) {
    reply_msg(h, status, "%s", why);
    return;
  }
  reply(h, 0, &id, buf, len);
  ntsntp_privsep_data_free(buf, len);
}

static void serve_clock(helper *h, const req *q) {
  rep r;
  int rv;
  memset(&r, 0, sizeof(r));
  errno = EPERM;
  if (!h->clock_control)
    rv = -1;
  else if (q->op == OP_SLEW)
    rv = h->clock.slew(h->clock.user, q->a, q->b);
  else if (q->op == OP_STEP)
    rv = h->clock.step(h->clock.user, q->a);
  else if (q->op == OP_LEAP && h->clock.set_leap)
    rv = h->clock.set_leap(h->clock.user, q->a > 0 ? 1 : q->a < 0 ? -1 : 0);
  else if (q->op == OP_LEAP)
    rv = 0;
  else if (h->clock.set_rtc)
    rv = h->clock.set_rtc(h->clock.user);
  else
    rv = 0;
  r.status = rv < 0 ? NTSNTP_ERR_IO : 0;
  r.err = rv < 0 ? errno : 0;
  if (write_all(h->fd, &r, sizeof(r)))
    _exit(0);
}

static void close_others(int keep) {
  int fd;
  if (syscall(SYS_close_range, keep + 1, ~0U, 0) == 0) {
    for (fd = 3; fd < keep; fd++)
      close(fd);
    return;
  }
  for (fd = 3; fd < 65536; fd++)
    if (fd != keep)
      close(fd);
}

static void reset_signals(void) {
  struct sigaction sa;
  sigset_t all;
  int sig;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (sig = 1; sig < NSIG; sig++)
    sigaction(sig, &sa, NULL);
  /* A terminal's ^C or a reload signal is for the server; the helper
   * ends when the server does. */
  sa.sa_handler = SIG_IGN;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGPIPE, &sa, NULL);
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

static char *absolute(const char *path, const char *cwd) {
  size_t n = strlen(cwd) + strlen(path) + 2;
  char *s = ntsntp__malloc(n);
  if (s && path[0] == '/')
    snprintf(s, n, "%s", path);
  else if (s)
    snprintf(s, n, "%s/%s", cwd, path);
  return s;
}

static __attribute__((noreturn)) void helper_main(
    int fd, pid_t parent, const ntsntp_privsep_settings *s) {
  helper h;
  char cwd[PATH_MAX], err[512];
  uint64_t keep;
  size_t i;
  int rv;

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(0);
  reset_signals();
  if (dup2(fd, HELPER_FD) < 0)
    _exit(1);
  close_others(HELPER_FD);
  prctl(PR_SET_NAME, "ntsd-privsep");
  memset(&h, 0, sizeof(h));
  h.fd = HELPER_FD;
  h.clock_control = s->clock_control;
  if (s->clock)
    h.clock = *s->clock;
  else
    ntsntp_uv_sysclock_ops(&h.clock);
  if (!getcwd(cwd, sizeof(cwd)))
    snprintf(cwd, sizeof(cwd), "/");
  for (i = 0; i < s->n_files; i++) {
    h.asked[i] = ntsntp__strdup(s->files[i]);
    h.abs[i] = absolute(s->files[i], cwd);
    if (!h.asked[i] || !h.abs[i]) {
      reply_msg(&h, NTSNTP_ERR_NOMEM, "out of memory");
      _exit(1);
    }
  }
  h.n = s->n_files;
  /* CAP_SYS_TIME with clock control, nothing else, for good. */
  keep = s->clock_control ? UINT64_C(1) << CAP_SYS_TIME : 0;
  ntsntp__caps_bound(keep);
  rv = ntsntp__caps_only(keep);
  if (rv == -2) {
    reply_msg(&h, NTSNTP_ERR_BAD_CONFIG,
              "CLOCK_CONTROL needs CAP_SYS_TIME, which ntsd does not have; "
              "fix: start ntsd as root (systemd: keep CAP_SYS_TIME in "
              "CapabilityBoundingSet), or set CLOCK_CONTROL=no");
    _exit(1);
  }
  if (rv < 0) {
    reply_msg(&h, NTSNTP_ERR_IO, "cannot drop capabilities: %s",
              strerror(errno));
    _exit(1);
  }
  if (s->seccomp && ntsntp_sandbox_available()) {
    rv = ntsntp_sandbox_enter(NTSNTP_SANDBOX_PRIVSEP,
                              s->clock_control ? NTSNTP_SANDBOX_CLOCK : 0,
                              err, sizeof(err));
    if (rv) {
      reply_msg(&h, rv, "%s", err);
      _exit(1);
    }
  }
  reply(&h, 0, NULL, NULL, 0); /* ready */
  for (;;) {
    char path[PATH_MAX];
    req q;
    if (read_all(h.fd, &q, sizeof(q)))
      _exit(0); /* the server closed its end */
    if (q.op == OP_READ || q.op == OP_STAT) {
      if (q.len == 0 || q.len >= sizeof(path) || read_all(h.fd, path, q.len))
        _exit(1);
      path[q.len] = 0;
      serve_file(&h, (int)q.op, path);
    } else if (q.op >= OP_SLEW && q.op <= OP_LEAP && q.len == 0) {
      serve_clock(&h, &q);
    } else {
      _exit(1); /* not something our server sends */
    }
  }
}

/* ------------------------------------------------------------------ */
/* The server's side                                                   */
/* ------------------------------------------------------------------ */

static void privsep_fill(void *p) {
  ntsntp_privsep_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->seccomp = 1;
  s->timeout_ms = 2000;
}
NTSNTP__SETTINGS(ntsntp_privsep_settings, privsep, timeout_ms)

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The helper is no longer to be trusted with a conversation: close. */
static void lose(ntsntp_privsep *ps) {
  if (ps->fd >= 0)
    close(ps->fd);
  ps->fd = -1;
}

static int recv_deadline(ntsntp_privsep *ps, void *buf, size_t len,
                         int64_t deadline) {
  uint8_t *p = buf;
  while (len) {
    struct pollfd pfd = {ps->fd, POLLIN, 0};
    int64_t left = deadline - mono_ms();
    ssize_t n;
    if (left <= 0)
      return -1;
    n = poll(&pfd, 1, (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    n = read(ps->fd, p, len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* One exchange; |*data| gets what follows the header (malloc'd, NUL
 * terminated) when |data| is not NULL.  -1: the helper is gone. */
static int exchange(ntsntp_privsep *ps, const req *q, const char *path,
                    rep *r, uint8_t **data) {
  int64_t deadline = mono_ms() + ps->timeout_ms;
  uint8_t *buf = NULL;
  if (ps->fd < 0)
    return -1;
  if (write_all(ps->fd, q, sizeof(*q)) ||
      (q->len && write_all(ps->fd, path, q->len)) ||
      recv_deadline(ps, r, sizeof(*r), deadline) ||
      r->len > NTSNTP__MAX_CRED_FILE)
    goto lost;
  buf = ntsntp__malloc((size_t)r->len + 1);
  if (!buf || recv_deadline(ps, buf, r->len, deadline))
    goto lost;
  buf[r->len] = 0;
  if (data)
    *data = buf;
  else
    ntsntp__mfree(buf);
  return 0;
lost:
  ntsntp__mfree(buf);
  lose(ps);
  return -1;
}

int ntsntp_privsep_start(const ntsntp_privsep_settings *s,
                         ntsntp_privsep **out, char *errbuf, size_t errlen) {
  ntsntp_privsep_settings latest;
  ntsntp_privsep *ps;
  uint8_t *msg = NULL;
  int sv[2];
  pid_t parent = getpid(), pid;
  rep r;

  NTSNTP__SETTINGS_GET(s, latest, privsep, errbuf, errlen);
  if (!out || s->n_files > MAX_FILES || (s->n_files && !s->files)) {
    ntsntp__errf(errbuf, errlen, "privileged helper: %s",
                 !out ? "out is NULL"
                 : s->n_files > MAX_FILES
                     ? "too many files for the helper to open"
                     : "n_files without files");
    return NTSNTP_ERR_INVALID_ARG;
  }
  *out = NULL;
  ps = ntsntp__calloc(1, sizeof(*ps));
  if (!ps) {
    ntsntp__errf(errbuf, errlen, "privileged helper: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  pthread_mutex_init(&ps->lock, NULL);
  ps->timeout_ms = s->timeout_ms ? s->timeout_ms : 2000;
  ps->clock_control = s->clock_control;
  if (s->user && *s->user && strcmp(s->user, "root")) {
    struct passwd *pw = getpwnam(s->user);
    if (!pw) {
      ntsntp__errf(errbuf, errlen, "user \"%s\" does not exist; fix: "
                   "create it (useradd --system --no-create-home --shell "
                   "/usr/sbin/nologin %s) or set NTSD_USER to another",
                   s->user, s->user);
      ntsntp__mfree(ps);
      return NTSNTP_ERR_BAD_CONFIG;
    }
    ps->uid = pw->pw_uid;
    ps->gid = pw->pw_gid;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    ntsntp__errf(errbuf, errlen, "cannot make the privileged helper's "
                 "socketpair: %s", strerror(errno));
    ntsntp__mfree(ps);
    return NTSNTP_ERR_IO;
  }
  fflush(NULL); /* nothing buffered may be written twice */
  pid = fork();
  if (pid == 0) {
    close(sv[0]);
    helper_main(sv[1], parent, s);
  }
  close(sv[1]);
  ps->fd = sv[0];
  if (pid < 0) {
    ntsntp__errf(errbuf, errlen, "cannot start the privileged helper: %s",
                 strerror(errno));
    ntsntp_privsep_del(ps);
    return NTSNTP_ERR_IO;
  }
  ps->pid = pid;
  memset(&r, 0, sizeof(r));
  if (recv_deadline(ps, &r, sizeof(r), mono_ms() + 5000) || r.status) {
    int rv = NTSNTP_ERR_IO;
    if (r.status && r.len && r.len <= 4096) {
      msg = ntsntp__malloc(r.len + 1);
      if (msg && recv_deadline(ps, msg, r.len, mono_ms() + 1000) == 0) {
        msg[r.len] = 0;
        rv = r.status < 0 ? r.status : NTSNTP_ERR_IO;
      }
    }
    ntsntp__errf(errbuf, errlen, "the privileged helper did not start%s%s",
                 msg && msg[0] ? ": " : "", msg ? (char *)msg : "");
    ntsntp__mfree(msg);
    ntsntp_privsep_del(ps);
    return rv;
  }
  /* The bounding set is per thread and inherited: emptied here, before the
   * server starts its threads, none of them can ever gain a capability
   * back.  What this thread holds now stays until the privilege drop. */
  ntsntp__caps_bound(0);
  *out = ps;
  return 0;
}

void ntsntp_privsep_data_free(uint8_t *data, size_t len) {
  if (!data)
    return;
  ntsntp_secure_clear(data, len);
  ntsntp__mfree(data);
}

/* Asks the helper about |path|.  1: read it here instead (|why| may say
 * why); 0: done; < 0: error in |errbuf|. */
static int ask_file(ntsntp_privsep *ps, int op, const char *path,
                    uint8_t **data, size_t *len, ntsntp_file_id *id,
                    char *why, size_t whylen, char *errbuf, size_t errlen) {
  uint8_t *buf = NULL;
  size_t plen = strlen(path);
  req q;
  rep r;
  int rv;

  why[0] = 0;
  if (!ps || plen == 0 || plen >= PATH_MAX)
    return 1;
  memset(&q, 0, sizeof(q));
  q.op = (uint32_t)op;
  q.len = (uint32_t)plen;
  pthread_mutex_lock(&ps->lock);
  rv = exchange(ps, &q, path, &r, &buf);
  pthread_mutex_unlock(&ps->lock);
  if (rv < 0) {
    snprintf(why, whylen, "the privileged helper is gone; a restart of "
             "ntsd starts a new one");
    return 1;
  }
  if (r.status == 0) {
    if (id)
      *id = r.id;
    if (data) {
      *data = buf;
      *len = r.len;
    } else {
      ntsntp_privsep_data_free(buf, r.len);
    }
    return 0;
  }
  if (r.status == ST_UNTRUSTED) {
    snprintf(why, whylen, "%s", (char *)buf);
    ntsntp__mfree(buf);
    return 1;
  }
  ntsntp__errf(errbuf, errlen, "cannot read %s (as uid 0, by ntsd's "
               "privileged helper): %s", path, (char *)buf);
  ntsntp__mfree(buf);
  return r.status < 0 ? r.status : NTSNTP_ERR_IO;
}

/*
 * Reads |path| here, with the rights of the server's user even while this
 * thread is still root (start-up): file-system IDs and groups are per
 * thread in the kernel, so the raw system calls change this thread only
 * (glibc's wrappers would change every thread).
 */
static int read_as_user(ntsntp_privsep *ps, const char *path, uint8_t **data,
                        size_t *len, struct stat *st, char *errbuf,
                        size_t errlen) {
  gid_t groups[64];
  long ng;
  int rv;
  if (!ps || !ps->uid || geteuid() != 0)
    return ntsntp__cred_file_read(path, ntsntp_mem_default(), data, len, st,
                                  errbuf, errlen);
  ng = syscall(SYS_getgroups, 64, groups);
  if (ng < 0 || syscall(SYS_setgroups, 0, NULL) < 0) {
    ntsntp__errf(errbuf, errlen, "cannot read %s as uid %u: %s", path,
                 (unsigned)ps->uid, strerror(errno));
    return NTSNTP_ERR_IO;
  }
  syscall(SYS_setfsgid, ps->gid);
  syscall(SYS_setfsuid, ps->uid);
  rv = ntsntp__cred_file_read(path, ntsntp_mem_default(), data, len, st,
                              errbuf, errlen);
  syscall(SYS_setfsuid, 0);
  syscall(SYS_setfsgid, 0);
  syscall(SYS_setgroups, (size_t)ng, groups);
  return rv;
}

int ntsntp_privsep_read(ntsntp_privsep *ps, const char *path, uint8_t **data,
                        size_t *len, ntsntp_file_id *id, char *errbuf,
                        size_t errlen) {
  char why[1024];
  struct stat st;
  int rv;

  if (errbuf && errlen)
    errbuf[0] = 0;
  if (!path || !data || !len)
    return NTSNTP_ERR_INVALID_ARG;
  *data = NULL;
  *len = 0;
  rv = ask_file(ps, OP_READ, path, data, len, id, why, sizeof(why), errbuf,
                errlen);
  if (rv <= 0)
    return rv;
  rv = read_as_user(ps, path, data, len, &st, errbuf, errlen);
  if (rv == 0 && id)
    fill_id(id, &st);
  else if (rv && why[0] && errbuf && strlen(errbuf) + 40 < errlen)
    snprintf(errbuf + strlen(errbuf), errlen - strlen(errbuf),
             " (not read by the privileged helper: %s)", why);
  return rv;
}

int ntsntp_privsep_stat(ntsntp_privsep *ps, const char *path,
                        ntsntp_file_id *id) {
  char why[1024], err[256];
  struct stat st;
  int rv;
  memset(id, 0, sizeof(*id));
  rv = ask_file(ps, OP_STAT, path, NULL, NULL, id, why, sizeof(why), err,
                sizeof(err));
  if (rv <= 0)
    return rv;
  if (stat(path, &st) < 0)
    return NTSNTP_ERR_IO;
  fill_id(id, &st);
  return 0;
}

static int clock_call(ntsntp_privsep *ps, int op, double a, double b) {
  req q;
  rep r;
  int rv;
  memset(&q, 0, sizeof(q));
  q.op = (uint32_t)op;
  q.a = a;
  q.b = b;
  pthread_mutex_lock(&ps->lock);
  rv = exchange(ps, &q, NULL, &r, NULL);
  pthread_mutex_unlock(&ps->lock);
  if (rv < 0) {
    errno = EPIPE;
    return -1;
  }
  if (r.status) {
    errno = r.err ? r.err : EIO;
    return -1;
  }
  return 0;
}

static int ps_read(void *user, struct timespec *ts) {
  (void)user;
  return clock_gettime(CLOCK_REALTIME, ts) ? -1 : 0;
}

static int ps_slew(void *user, double offset, double freq_ppm) {
  return clock_call(user, OP_SLEW, offset, freq_ppm);
}

static int ps_step(void *user, double offset) {
  return clock_call(user, OP_STEP, offset, 0);
}

static int ps_set_rtc(void *user) { return clock_call(user, OP_RTC, 0, 0); }

static int ps_set_leap(void *user, int dir) {
  return clock_call(user, OP_LEAP, dir > 0 ? 1 : dir < 0 ? -1 : 0, 0);
}

void ntsntp_privsep_clock_ops(ntsntp_privsep *ps, ntsntp_clock_ops *ops) {
  memset(ops, 0, sizeof(*ops));
  ops->read = ps_read;
  ops->slew = ps_slew;
  ops->step = ps_step;
  ops->set_rtc = ps_set_rtc;
  ops->set_leap = ps_set_leap;
  ops->user = ps;
}

long ntsntp_privsep_pid(const ntsntp_privsep *ps) {
  return ps && ps->fd >= 0 ? (long)ps->pid : 0;
}

void ntsntp_privsep_del(ntsntp_privsep *ps) {
  int i, status;
  if (!ps)
    return;
  lose(ps);
  /* The helper exits at EOF; give it a moment, then make sure. */
  for (i = 0; ps->pid > 0 && i < 100; i++) {
    if (waitpid(ps->pid, &status, WNOHANG) != 0)
      break;
    usleep(10000);
  }
  /* A root helper cannot be killed once this process has dropped root:
   * then it is left to PR_SET_PDEATHSIG, which ends it with this one. */
  if (ps->pid > 0 && i == 100 && kill(ps->pid, SIGKILL) == 0)
    for (i = 0; i < 100 && waitpid(ps->pid, &status, WNOHANG) == 0; i++)
      usleep(10000);
  pthread_mutex_destroy(&ps->lock);
  ntsntp__mfree(ps);
}
