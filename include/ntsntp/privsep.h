/*
 * libntsntp runtime: privilege separation.
 *
 * A server facing the Internet should hold no privilege once it runs.  Two
 * things still need one later: re-reading a renewed certificate key that
 * only root may read (certbot: live/ links into archive/, both 0700 root,
 * privkey.pem 0600 root), and adjusting the system clock (CAP_SYS_TIME).
 * As in OpenNTPD and OpenSSH, a small helper process forked at start-up
 * keeps just that: it reads the configured files, and only those, on
 * request, hands their bytes over a socketpair, and makes the clock
 * adjustments asked of it.  It holds no network socket and no other
 * capability, runs under its own seccomp filter where built with
 * libseccomp, and exits when the server exits.
 *
 * The helper reads a file only when root alone controls every directory on
 * the way to it (owned by root, writable by nobody else, or sticky with a
 * root-owned entry), following links itself; otherwise a local user could
 * point a link at any root-only file.  Such a file is read by the calling
 * process instead, with the rights of the user it runs as (or will run as
 * once it drops root).
 */
#ifndef NTSNTP_PRIVSEP_H
#define NTSNTP_PRIVSEP_H

#include "ntsntp/common.h"
#include "ntsntp/sync.h" /* ntsntp_clock_ops */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_privsep ntsntp_privsep;

typedef struct ntsntp_privsep_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* The only files the helper will read, exactly as later asked for. */
  const char *const *files;
  size_t n_files;
  /* The helper keeps CAP_SYS_TIME and adjusts the clock on request. */
  int clock_control;
  /* What the helper runs for those requests: NULL (default) the system
   * clock (ntsntp_uv_sysclock_ops).  Tests inject their own; the helper
   * calls them with their |user|, in its own process. */
  const ntsntp_clock_ops *clock;
  /* The helper enters its seccomp filter (NTSNTP_SANDBOX_PRIVSEP) when the
   * library is built with libseccomp.  Default 1. */
  int seccomp;
  /* The user the server will run as (NTSD_USER): a file the helper does
   * not read, this process reads with that user's rights even while it is
   * still root.  NULL, "" or "root": its own rights. */
  const char *user;
  /* Longest wait for an answer, milliseconds (default 2000).  A helper
   * that does not answer in time is stopped and not used again. */
  unsigned timeout_ms;
} ntsntp_privsep_settings;

/* What identifies one version of a file: a renewal changes it. */
typedef struct ntsntp_file_id {
  uint64_t dev, ino, size;
  int64_t mtime_ns, ctime_ns;
  uint32_t mode, uid;
} ntsntp_file_id;

NTSNTP_EXTERN void
ntsntp_privsep_settings_default_versioned(int version,
                                          ntsntp_privsep_settings *s);
#define ntsntp_privsep_settings_default(S)                                     \
  ntsntp_privsep_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Forks the helper.  Call it before starting threads and before binding
 * sockets: the helper closes every descriptor but its end of the
 * socketpair and standard output and error.  The helper keeps its user
 * (root when ntsd starts as root) and drops every capability but
 * CAP_SYS_TIME with |clock_control|.  The calling thread's capability
 * bounding set is emptied (where it may be): threads started afterwards
 * can never gain a capability; what it holds now, it keeps until
 * ntsntp_drop_privileges.
 * Errors: INVALID_ARG, IO (fork or socketpair failed, or the helper could
 * not set itself up: |errbuf| says why), BAD_CONFIG (clock_control without
 * CAP_SYS_TIME: |errbuf| says how to grant it), NOMEM.
 */
NTSNTP_EXTERN int ntsntp_privsep_start(const ntsntp_privsep_settings *s,
                                       ntsntp_privsep **out, char *errbuf,
                                       size_t errlen);

/*
 * Reads the regular file |path| (at most 1 MiB, never a FIFO or device)
 * into |*data| (malloc'd; free it with ntsntp_privsep_data_free).  The
 * helper reads it when |path| is one of its files and root alone controls
 * the directories on the way; otherwise this process reads it with the
 * rights of the settings' |user| (with |ps| NULL: its own).  |id| (optional) identifies the version read.  On error
 * |errbuf| names the path, why, and what to change.
 * Errors: IO, BAD_CONFIG (not a regular file, size), NOMEM.
 */
NTSNTP_EXTERN int ntsntp_privsep_read(ntsntp_privsep *ps, const char *path,
                                      uint8_t **data, size_t *len,
                                      ntsntp_file_id *id, char *errbuf,
                                      size_t errlen);

/* Wipes and frees what ntsntp_privsep_read returned.  NULL is allowed. */
NTSNTP_EXTERN void ntsntp_privsep_data_free(uint8_t *data, size_t len);

/*
 * The identity of |path|'s current version, looked up the way
 * ntsntp_privsep_read would read it.  Errors: IO (gone or unreadable:
 * |id| zeroed).
 */
NTSNTP_EXTERN int ntsntp_privsep_stat(ntsntp_privsep *ps, const char *path,
                                      ntsntp_file_id *id);

/*
 * Clock operations that run in the helper (slew, step, RTC, leap second);
 * reading the clock stays local.  Only with |clock_control|.  |ps| must
 * outlive every use of |ops|.
 */
NTSNTP_EXTERN void ntsntp_privsep_clock_ops(ntsntp_privsep *ps,
                                            ntsntp_clock_ops *ops);

/* The helper's process ID, or 0 once it is gone. */
NTSNTP_EXTERN long ntsntp_privsep_pid(const ntsntp_privsep *ps);

/* Closes the socketpair, which ends the helper, and reaps it.  NULL ok. */
NTSNTP_EXTERN void ntsntp_privsep_del(ntsntp_privsep *ps);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_PRIVSEP_H */
