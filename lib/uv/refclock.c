/* libntsntp runtime: reference clocks (SOCK, SHM, PPS, PHC) on libuv. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/pps.h>
#include <linux/ptp_clock.h>

#include "ntsntp/uv_refclock.h"
#include "../settings.h"
#include "../mem.h"

#define SOCK_BATCH 64 /* datagrams read per wake-up */
#define PHC_READINGS 10

typedef struct rclock {
  struct ntsntp_uv_refclock *owner;
  unsigned i;   /* REFCLOCKS order */
  unsigned idx; /* sync core source */
  ntsntp_refclock core;
  int fd;
  uv_poll_t io;
  uv_timer_t poll_timer, drv_timer;
  int have_io, have_timers;
  ntsntp_refclock_shm *shm;
  /* SOCK: the node this server bound, removed at stop if still it. */
  dev_t dev;
  ino_t ino;
  int own_path;
  /* PPS */
  unsigned last_seq;
  int have_seq;
  /* PHC: 0 precise, 1 extended, 2 basic */
  int phc_mode;
  int direct; /* filter < 4: a sample went in since the poll timer */
  /* logging: problems said once until the clock recovers */
  int said_silent, said_bad, said_lock, said_offlock, ever;
} rclock;

struct ntsntp_uv_refclock {
  ntsntp_uv_refclock_settings s;
  uv_loop_t *loop;
  rclock c[NTSNTP_REFCLOCK_MAX];
  unsigned n;
  int handles, stopping;
  void (*done)(void *);
  void *done_user;
};

static void rlog(ntsntp_uv_refclock *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rlog(ntsntp_uv_refclock *r, int level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  if (!r->s.log)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  r->s.log(r->s.log_user, level, msg);
}

static uint64_t sys_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ntsntp_ts_from_timespec(&ts);
}

static uint64_t interval_ms(int8_t log2s) {
  double ms = ldexp(1000.0, log2s);
  return ms < 1 ? 1 : (uint64_t)ms;
}

/* Where a pulse of |c| takes its seconds from. */
static const ntsntp_refclock_ref *pulse_ref(rclock *c, uint64_t t,
                                            ntsntp_refclock_ref *ref) {
  ntsntp_uv_refclock *r = c->owner;
  if (c->core.conf.lock >= 0)
    return ntsntp_refclock_last(&r->c[c->core.conf.lock].core, ref) == 0
               ? ref
               : NULL;
  return ntsntp_refclock_served_ref(&c->core, r->s.sync, t, ref) == 0 ? ref
                                                                       : NULL;
}

static void poll_now(rclock *c);

/* After a sample went in (|rv| from add_sample or add_pulse).  Problems
 * are logged once each until the clock delivers again. */
static void added(rclock *c, int rv) {
  ntsntp_uv_refclock *r = c->owner;
  const ntsntp_refclock_conf *cf = &c->core.conf;
  const char *lock = cf->lock >= 0 ? r->c[cf->lock].core.conf.name
                                   : "the clock served";
  if (rv == 1) { /* a short filter is full: used at once, as chrony */
    c->direct = 1;
    poll_now(c);
    return;
  }
  if (rv == NTSNTP_ERR_NOT_FOUND && !c->said_lock &&
      (cf->lock < 0 || r->c[cf->lock].core.have_last)) {
    /* (Not before the lock clock's first sample: that is start-up.) */
    c->said_lock = 1;
    rlog(r, NTSNTP_LOG_WARN,
         "Refclock %s: pulse ignored (no recent sample of %s to take the "
         "second from%s)",
         cf->name, lock,
         cf->lock < 0 ? ": not synchronised; fix: set lock" : "");
  } else if (rv == NTSNTP_ERR_MALFORMED && c->core.stats.off_lock &&
             !c->said_offlock) {
    c->said_offlock = 1;
    rlog(r, NTSNTP_LOG_WARN,
         "Refclock %s: pulse ignored (too far from the second source %s); "
         "fix: check that %s is right within 0.2 s (its offset option)",
         cf->name, lock, lock);
  } else if (rv == NTSNTP_ERR_MALFORMED && !c->said_bad) {
    c->said_bad = 1;
    rlog(r, NTSNTP_LOG_WARN,
         "Refclock %s: sample ignored (offset or leap out of range)",
         cf->name);
  }
}

/* SOCK: every datagram that is waiting. */
static void on_sock(uv_poll_t *h, int status, int events) {
  rclock *c = h->data;
  ntsntp_uv_refclock *r = c->owner;
  int k;
  (void)events;
  if (status < 0)
    return;
  for (k = 0; k < SOCK_BATCH; k++) {
    uint8_t buf[sizeof(ntsntp_refclock_sock_sample) + 16];
    ntsntp_refclock_sock_sample smp;
    ntsntp_refclock_ref ref;
    struct timespec ts;
    uint64_t t;
    ssize_t len = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    int rv;
    if (len < 0)
      break;
    rv = ntsntp_refclock_sock_decode(buf, (size_t)len, &smp);
    if (rv) {
      c->core.stats.bad++;
      if (!c->said_bad) {
        c->said_bad = 1;
        rlog(r, NTSNTP_LOG_WARN,
             "Refclock %s: datagram of %zd bytes dropped (%s; chrony's "
             "sock_sample is %zu bytes with magic 0x534f434b)",
             c->core.conf.name, len,
             rv == NTSNTP_ERR_TRUNCATED ? "wrong length" : "bad contents",
             sizeof(smp));
      }
      continue;
    }
    ts.tv_sec = smp.tv.tv_sec;
    ts.tv_nsec = smp.tv.tv_usec * 1000L;
    t = ntsntp_ts_from_timespec(&ts);
    if (smp.pulse)
      rv = ntsntp_refclock_add_pulse(&c->core, sys_now(), t, smp.offset,
                                     pulse_ref(c, t, &ref));
    else
      rv = ntsntp_refclock_add_sample(&c->core, sys_now(), t, smp.offset,
                                      (uint8_t)smp.leap, 0,
                                      c->core.conf.pps ? pulse_ref(c, t, &ref)
                                                       : NULL);
    added(c, rv);
    if (r->stopping)
      return;
  }
}

static void read_shm(rclock *c) {
  ntsntp_refclock_reading rd;
  ntsntp_refclock_ref ref;
  int rv = ntsntp_refclock_shm_read(c->shm, &rd);
  if (rv == 0 || rv == NTSNTP_ERR_AGAIN)
    return;
  if (rv < 0) {
    c->core.stats.bad++;
    if (!c->said_bad) {
      c->said_bad = 1;
      rlog(c->owner, NTSNTP_LOG_WARN,
           "Refclock %s: SHM sample dropped (unknown mode, bad time, or the "
           "receiver has no fix: leap 3)",
           c->core.conf.name);
    }
    return;
  }
  added(c, ntsntp_refclock_add_sample(
               &c->core, sys_now(), rd.t, rd.offset, rd.leap, 0,
               c->core.conf.pps ? pulse_ref(c, rd.t, &ref) : NULL));
}

static void read_pps(rclock *c) {
  struct pps_fdata fd;
  struct pps_ktime *kt;
  struct timespec ts;
  ntsntp_refclock_ref ref;
  unsigned seq;
  uint64_t t;
  memset(&fd, 0, sizeof(fd)); /* timeout 0: return at once */
  if (ioctl(c->fd, PPS_FETCH, &fd) < 0) {
    c->core.stats.bad++;
    return;
  }
  kt = c->core.conf.pps_clear ? &fd.info.clear_tu : &fd.info.assert_tu;
  seq = c->core.conf.pps_clear ? fd.info.clear_sequence
                               : fd.info.assert_sequence;
  if (c->have_seq && seq == c->last_seq)
    return; /* no new edge */
  c->have_seq = 1;
  c->last_seq = seq;
  if (kt->sec == 0 && kt->nsec == 0)
    return;
  ts.tv_sec = (time_t)kt->sec;
  ts.tv_nsec = kt->nsec;
  t = ntsntp_ts_from_timespec(&ts);
  added(c, ntsntp_refclock_add_pulse(&c->core, sys_now(), t,
                                     kt->nsec * 1e-9, pulse_ref(c, t, &ref)));
}

static uint64_t ptp_ts(const struct ptp_clock_time *p) {
  struct timespec ts;
  ts.tv_sec = (time_t)p->sec;
  ts.tv_nsec = p->nsec;
  return ntsntp_ts_from_timespec(&ts);
}

static void read_phc(rclock *c) {
  ntsntp_refclock_phc_reading rd[PHC_READINGS];
  ntsntp_refclock_reading out;
  size_t n = 0, i;
  double err;
  if (c->phc_mode == 0) {
    struct ptp_sys_offset_precise p;
    memset(&p, 0, sizeof(p));
    if (ioctl(c->fd, PTP_SYS_OFFSET_PRECISE, &p) == 0) {
      rd[0].sys_before = rd[0].sys_after = ptp_ts(&p.sys_realtime);
      rd[0].phc = ptp_ts(&p.device);
      n = 1;
    } else {
      c->phc_mode = 1;
    }
  }
  if (c->phc_mode == 1) {
    struct ptp_sys_offset_extended p;
    memset(&p, 0, sizeof(p));
    p.n_samples = PHC_READINGS;
    if (ioctl(c->fd, PTP_SYS_OFFSET_EXTENDED, &p) == 0) {
      for (i = 0; i < p.n_samples && i < PHC_READINGS; i++) {
        rd[i].sys_before = ptp_ts(&p.ts[i][0]);
        rd[i].phc = ptp_ts(&p.ts[i][1]);
        rd[i].sys_after = ptp_ts(&p.ts[i][2]);
      }
      n = i;
    } else {
      c->phc_mode = 2;
    }
  }
  if (c->phc_mode == 2) {
    struct ptp_sys_offset p;
    memset(&p, 0, sizeof(p));
    p.n_samples = PHC_READINGS;
    if (ioctl(c->fd, PTP_SYS_OFFSET, &p) < 0) {
      c->core.stats.bad++;
      if (!c->said_bad) {
        c->said_bad = 1;
        rlog(c->owner, NTSNTP_LOG_WARN, "Refclock %s: cannot read %s: %s",
             c->core.conf.name, c->core.conf.param, strerror(errno));
      }
      return;
    }
    /* system, phc, system, ..., system */
    for (i = 0; i < p.n_samples && i < PHC_READINGS; i++) {
      rd[i].sys_before = ptp_ts(&p.ts[2 * i]);
      rd[i].phc = ptp_ts(&p.ts[2 * i + 1]);
      rd[i].sys_after = ptp_ts(&p.ts[2 * i + 2]);
    }
    n = i;
  }
  if (n == 0 || ntsntp_refclock_phc_sample(rd, n, 0, &out, &err) < 0) {
    c->core.stats.bad++;
    return;
  }
  added(c, ntsntp_refclock_add_sample(&c->core, sys_now(), out.t, out.offset,
                                      out.leap, err, NULL));
}

static void on_drv_timer(uv_timer_t *t) {
  rclock *c = t->data;
  switch (c->core.conf.driver) {
  case NTSNTP_REFCLOCK_SHM: read_shm(c); break;
  case NTSNTP_REFCLOCK_PPS: read_pps(c); break;
  case NTSNTP_REFCLOCK_PHC: read_phc(c); break;
  default: break;
  }
}

/* A poll: the filtered sample (or none) to the sync core. */
static void poll_now(rclock *c) {
  ntsntp_uv_refclock *r = c->owner;
  ntsntp_refclock_sample smp;
  int have = ntsntp_refclock_poll(&c->core, &smp);
  int rv = ntsntp_sync_on_refclock(r->s.sync, c->idx, have ? &smp : NULL,
                                   sys_now());
  if (have && !c->ever) {
    c->ever = 1;
    rlog(r, NTSNTP_LOG_INFO, "Refclock %s: first sample, offset %+.9f s",
         c->core.conf.name, smp.offset);
  }
  if (have && c->said_silent) {
    c->said_silent = 0;
    c->said_bad = c->said_lock = c->said_offlock = 0;
    rlog(r, NTSNTP_LOG_INFO, "Refclock %s: samples again",
         c->core.conf.name);
  } else if (!have && c->ever && !c->said_silent) {
    c->said_silent = 1;
    rlog(r, NTSNTP_LOG_WARN,
         "Refclock %s: no samples in the last %g s; the writer (gpsd?) or "
         "the device stopped",
         c->core.conf.name, ldexp(1.0, c->core.conf.poll));
  }
  if (rv == 1 && r->s.updated)
    r->s.updated(r->s.user);
}

/* With a short filter the samples went in as they came; the timer only
 * counts a poll interval without any (reach, "no samples"). */
static void on_poll_timer(uv_timer_t *t) {
  rclock *c = t->data;
  if (c->direct) {
    c->direct = 0;
    return;
  }
  poll_now(c);
}

/* SOCK: a Unix datagram socket at |path| with mode |perm|, created as the
 * control socket is (lib/uv/control.c): an old socket is replaced, a link
 * or any other file is an error, and the mode is set by bind itself. */
static int open_sock(rclock *c, char *errbuf, size_t errlen) {
  const ntsntp_refclock_conf *cf = &c->core.conf;
  struct sockaddr_un sa;
  struct stat st;
  mode_t old;
  int rv;
  if (strlen(cf->param) >= sizeof(sa.sun_path)) {
    ntsntp__errf(errbuf, errlen, "REFCLOCKS %s: socket path %s is too long",
                 cf->name, cf->param);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, cf->param);
  if (lstat(cf->param, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ntsntp__errf(errbuf, errlen,
                   "REFCLOCKS %s: %s exists and is not a socket (%s); fix: "
                   "remove it or choose another path",
                   cf->name, cf->param,
                   S_ISLNK(st.st_mode) ? "a symbolic link" : "another file");
      return NTSNTP_ERR_IO;
    }
    if (unlink(cf->param) < 0 && errno != ENOENT)
      goto fail;
  }
  c->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c->fd < 0)
    goto fail;
  if (fchmod(c->fd, cf->perm) < 0)
    goto fail;
  old = umask(0777 & ~cf->perm);
  rv = bind(c->fd, (const struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (rv < 0)
    goto fail;
  c->own_path = 1;
  if (lstat(cf->param, &st) < 0 || !S_ISSOCK(st.st_mode)) {
    ntsntp__errf(errbuf, errlen,
                 "REFCLOCKS %s: %s was replaced right after it was created: "
                 "another user writes to its directory; fix: use a directory "
                 "only root can write to",
                 cf->name, cf->param);
    c->own_path = 0;
    return NTSNTP_ERR_IO;
  }
  c->dev = st.st_dev;
  c->ino = st.st_ino;
  return 0;
fail:
  ntsntp__errf(errbuf, errlen,
               "REFCLOCKS %s: cannot create socket %s: %s; fix: create its "
               "directory (writable by root only) or choose another path",
               cf->name, cf->param, strerror(errno));
  return NTSNTP_ERR_IO;
}

static int open_shm(rclock *c, char *errbuf, size_t errlen) {
  const ntsntp_refclock_conf *cf = &c->core.conf;
  key_t key = (key_t)(NTSNTP_REFCLOCK_SHM_KEY + cf->unit);
  void *p;
  int id = shmget(key, sizeof(ntsntp_refclock_shm), IPC_CREAT | (int)cf->perm);
  if (id < 0) {
    ntsntp__errf(errbuf, errlen,
                 "REFCLOCKS %s: cannot get SHM segment 0x%08x (unit %u): %s; "
                 "fix: %s",
                 cf->name, (unsigned)key, cf->unit, strerror(errno),
                 errno == EINVAL
                     ? "another program made it with another size; "
                       "remove it (ipcrm -M KEY) or use another unit"
                     : "run ntsd as root at start, or use another "
                       "unit");
    return NTSNTP_ERR_IO;
  }
  p = shmat(id, NULL, 0);
  if (p == (void *)-1) {
    ntsntp__errf(
        errbuf, errlen,
        "REFCLOCKS %s: cannot attach SHM segment 0x%08x: %s; fix: check "
        "its owner and mode (ipcs -m)",
        cf->name, (unsigned)key, strerror(errno));
    return NTSNTP_ERR_IO;
  }
  c->shm = p;
  return 0;
}

/* A character device: links are followed (udev names such as
 * /dev/gpspps0), opening never blocks, and anything else is refused. */
static int open_dev(rclock *c, int flags, char *errbuf, size_t errlen) {
  const ntsntp_refclock_conf *cf = &c->core.conf;
  struct stat st;
  c->fd = open(cf->param, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (c->fd < 0) {
    ntsntp__errf(errbuf, errlen, "REFCLOCKS %s: cannot open %s: %s; fix: %s",
                 cf->name, cf->param, strerror(errno),
                 errno == ENOENT
                     ? "check the device path (ls /dev/pps* "
                       "/dev/ptp*); in Docker pass it with devices:"
                     : "start ntsd as root (it opens devices before "
                       "dropping privileges)");
    return NTSNTP_ERR_IO;
  }
  if (fstat(c->fd, &st) < 0 || !S_ISCHR(st.st_mode)) {
    ntsntp__errf(errbuf, errlen,
                 "REFCLOCKS %s: %s is not a character device; fix: give the "
                 "%s device",
                 cf->name, cf->param,
                 cf->driver == NTSNTP_REFCLOCK_PPS ? "/dev/ppsN" : "/dev/ptpN");
    return NTSNTP_ERR_IO;
  }
  return 0;
}

static int open_pps(rclock *c, char *errbuf, size_t errlen) {
  const ntsntp_refclock_conf *cf = &c->core.conf;
  struct pps_kparams params;
  int caps = 0, edge = cf->pps_clear ? PPS_CAPTURECLEAR : PPS_CAPTUREASSERT;
  int rv = open_dev(c, O_RDWR, errbuf, errlen);
  if (rv && errno == EACCES)
    rv = open_dev(c, O_RDONLY, errbuf, errlen);
  if (rv)
    return rv;
  if (ioctl(c->fd, PPS_GETCAP, &caps) < 0) {
    ntsntp__errf(errbuf, errlen,
                 "REFCLOCKS %s: %s is not an RFC 2783 PPS device (%s); fix: "
                 "give /dev/ppsN",
                 cf->name, cf->param, strerror(errno));
    return NTSNTP_ERR_IO;
  }
  if (!(caps & edge)) {
    ntsntp__errf(errbuf, errlen,
                 "REFCLOCKS %s: %s cannot capture the %s edge; fix: %s",
                 cf->name, cf->param, cf->pps_clear ? "clear" : "assert",
                 cf->pps_clear ? "remove :clear" : "add :clear");
    return NTSNTP_ERR_IO;
  }
  memset(&params, 0, sizeof(params));
  if (ioctl(c->fd, PPS_GETPARAMS, &params) == 0 &&
      (params.mode & edge) == 0) {
    params.mode |= edge;
    params.mode |= PPS_TSFMT_TSPEC;
    if (ioctl(c->fd, PPS_SETPARAMS, &params) < 0)
      rlog(c->owner, NTSNTP_LOG_WARN,
           "Refclock %s: cannot select the %s edge on %s: %s", cf->name,
           cf->pps_clear ? "clear" : "assert", cf->param, strerror(errno));
  }
  return 0;
}

static int open_clock(rclock *c, char *errbuf, size_t errlen) {
  switch (c->core.conf.driver) {
  case NTSNTP_REFCLOCK_SOCK: return open_sock(c, errbuf, errlen);
  case NTSNTP_REFCLOCK_SHM: return open_shm(c, errbuf, errlen);
  case NTSNTP_REFCLOCK_PPS: return open_pps(c, errbuf, errlen);
  case NTSNTP_REFCLOCK_PHC: {
    int rv = open_dev(c, O_RDONLY, errbuf, errlen);
    if (rv == 0)
      c->phc_mode = c->core.conf.phc_nocrossts ? 1 : 0;
    return rv;
  }
  }
  return NTSNTP_ERR_INVALID_ARG;
}

static void close_clock(rclock *c) {
  struct stat st;
  if (c->own_path && lstat(c->core.conf.param, &st) == 0 &&
      S_ISSOCK(st.st_mode) && st.st_dev == c->dev && st.st_ino == c->ino)
    unlink(c->core.conf.param); /* may fail after the privilege drop */
  c->own_path = 0;
  if (c->shm)
    shmdt((void *)c->shm);
  c->shm = NULL;
  if (c->fd >= 0 && !c->have_io)
    close(c->fd);
  c->fd = -1;
}

static void rc_unref(ntsntp_uv_refclock *r) {
  if (--r->handles == 0) {
    void (*done)(void *) = r->done;
    void *user = r->done_user;
    ntsntp__mfree(r);
    if (done)
      done(user);
  }
}

static void closed(uv_handle_t *h) {
  rclock *c = h->data;
  rc_unref(c->owner);
}

static void io_closed(uv_handle_t *h) {
  rclock *c = h->data;
  close(c->fd); /* uv_poll_t does not own it */
  c->fd = -1;
  rc_unref(c->owner);
}

static void close_all(ntsntp_uv_refclock *r) {
  unsigned i;
  r->stopping = 1;
  r->handles++; /* until every close is asked for */
  for (i = 0; i < r->n; i++) {
    rclock *c = &r->c[i];
    int fd = c->fd;
    if (c->have_io) {
      c->fd = -1; /* closed by io_closed */
      close_clock(c);
      c->fd = fd;
      uv_close((uv_handle_t *)&c->io, io_closed);
    } else {
      close_clock(c);
    }
    if (c->have_timers) {
      uv_close((uv_handle_t *)&c->poll_timer, closed);
      uv_close((uv_handle_t *)&c->drv_timer, closed);
    }
  }
  rc_unref(r);
}

static int tai_offset(void) {
  struct timex tx;
  memset(&tx, 0, sizeof(tx));
  if (adjtimex(&tx) >= 0 && tx.tai > 0 && tx.tai < 100)
    return tx.tai;
  return 37;
}

static void uv_refclock_fill(void *p) {
  ntsntp_uv_refclock_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
}
NTSNTP__SETTINGS(ntsntp_uv_refclock_settings, uv_refclock, log_user)

int ntsntp_uv_refclock_start(uv_loop_t *loop,
                             const ntsntp_uv_refclock_settings *s,
                             ntsntp_uv_refclock **out, char *errbuf,
                             size_t errlen) {
  ntsntp_uv_refclock_settings latest;
  ntsntp_uv_refclock *r;
  uint64_t now = sys_now();
  unsigned i;
  int rv = 0, tai = -1;
  NTSNTP__SETTINGS_GET(s, latest, uv_refclock, errbuf, errlen);
  if (!loop || !out || !s->sync || s->n > NTSNTP_REFCLOCK_MAX ||
      (s->n && !s->confs)) {
    ntsntp__errf(errbuf, errlen, "reference clocks: %s",
                 !loop  ? "loop is NULL"
                 : !out ? "out is NULL"
                 : !s->sync
                     ? "settings.sync is NULL; fix: the sync core to feed"
                 : s->n > NTSNTP_REFCLOCK_MAX ? "too many reference clocks"
                                              : "n without confs");
    return NTSNTP_ERR_INVALID_ARG;
  }
  r = ntsntp__calloc(1, sizeof(*r));
  if (!r) {
    ntsntp__errf(errbuf, errlen, "reference clocks: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  r->s = *s;
  r->s.confs = NULL;
  r->loop = loop;
  r->n = (unsigned)s->n;
  for (i = 0; i < r->n; i++) {
    r->c[i].fd = -1;
    r->c[i].owner = r;
    r->c[i].i = i;
    ntsntp_refclock_init(&r->c[i].core, &s->confs[i]);
  }
  for (i = 0; i < r->n && rv == 0; i++) {
    rclock *c = &r->c[i];
    ntsntp_sync_refclock sc;
    int idx;
    if (c->core.conf.tai) {
      if (tai < 0)
        tai = tai_offset();
      c->core.tai_offset = tai;
    }
    rv = open_clock(c, errbuf, errlen);
    if (rv)
      break;
    ntsntp_refclock_sync_conf(&c->core.conf, &sc);
    idx = ntsntp_sync_add_refclock(s->sync, c->core.conf.name,
                                   c->core.conf.refid, &sc, now);
    if (idx < 0) {
      ntsntp__errf(errbuf, errlen,
                   "REFCLOCKS %s: NTP_SERVERS and REFCLOCKS have more than %d "
                   "sources; fix: remove some",
                   c->core.conf.name, NTSNTP_SYNC_MAX_SOURCES);
      rv = NTSNTP_ERR_BAD_CONFIG;
      break;
    }
    c->idx = (unsigned)idx;
  }
  if (rv) {
    for (i = 0; i < r->n; i++)
      close_clock(&r->c[i]);
    ntsntp__mfree(r);
    return rv;
  }
  for (i = 0; i < r->n; i++) {
    rclock *c = &r->c[i];
    const ntsntp_refclock_conf *cf = &c->core.conf;
    uv_timer_init(loop, &c->poll_timer);
    uv_timer_init(loop, &c->drv_timer);
    c->poll_timer.data = c->drv_timer.data = c;
    c->have_timers = 1;
    r->handles += 2;
    uv_timer_start(&c->poll_timer, on_poll_timer, interval_ms(cf->poll),
                   interval_ms(cf->poll));
    if (cf->driver == NTSNTP_REFCLOCK_SOCK) {
      uv_poll_init(loop, &c->io, c->fd);
      c->io.data = c;
      c->have_io = 1;
      r->handles++;
      uv_poll_start(&c->io, UV_READABLE, on_sock);
    } else {
      uv_timer_start(&c->drv_timer, on_drv_timer, interval_ms(cf->dpoll),
                     interval_ms(cf->dpoll));
    }
    if (cf->driver == NTSNTP_REFCLOCK_SHM)
      rlog(r, NTSNTP_LOG_INFO,
           "Refclock %s: SHM unit %u (key 0x%08x), poll %d, filter %u",
           cf->name, cf->unit, NTSNTP_REFCLOCK_SHM_KEY + cf->unit, cf->poll,
           cf->filter);
    else
      rlog(r, NTSNTP_LOG_INFO, "Refclock %s: %s %s, poll %d, filter %u%s%s",
           cf->name, cf->driver == NTSNTP_REFCLOCK_SOCK  ? "SOCK"
                     : cf->driver == NTSNTP_REFCLOCK_PPS ? "PPS"
                                                         : "PHC",
           cf->param, cf->poll, cf->filter, cf->lock >= 0 ? ", lock " : "",
           cf->lock >= 0 ? cf->lock_name : "");
  }
  *out = r;
  return 0;
}

int ntsntp_uv_refclock_get_stats(const ntsntp_uv_refclock *rc, unsigned i,
                                 ntsntp_refclock_stats *out) {
  if (!rc || !out || i >= rc->n)
    return NTSNTP_ERR_INVALID_ARG;
  *out = rc->c[i].core.stats;
  return 0;
}

void ntsntp_uv_refclock_stop(ntsntp_uv_refclock *rc, void (*done)(void *user),
                             void *user) {
  rc->done = done;
  rc->done_user = user;
  close_all(rc);
}
