/* libntsntp runtime layer: atomic, private key ring files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "errtext.h"
#include "file.h"
#include "ntsntp/keyfile.h"

/* Larger than any ring's text (see ntsntp_keyring_save). */
#define KEYFILE_MAX 4096

#define CREATE_FLAGS                                                           \
  (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |          \
   O_CLOEXEC)

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Makes the rename durable: without it a power cut may bring back the old
 * name, or no file at all. */
static int sync_dir(const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  size_t n;
  int fd, rv, e;

  if (slash == NULL) {
    strcpy(dir, ".");
  } else {
    n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  rv = fsync(fd);
  e = errno;
  close(fd);
  errno = e;
  return rv;
}

int ntsntp__file_write_atomic(const char *path, const void *data, size_t len,
                              const char *what, char *errbuf, size_t errlen) {
  char tmp[PATH_MAX];
  struct stat st;
  const char *step;
  int fd, n, e;

  ntsntp__errf(errbuf, errlen, "%s", "");
  n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof(tmp)) {
    ntsntp__errf(errbuf, errlen, "%s path too long: %s", what, path);
    return NTSNTP_ERR_INVALID_ARG;
  }
  /* O_EXCL: a link or FIFO planted at |tmp| is never opened (EEXIST); it
   * is unlinked (unlink follows nothing) and the name created afresh. */
  step = "create";
  fd = open(tmp, CREATE_FLAGS, 0600);
  if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
    fd = open(tmp, CREATE_FLAGS, 0600);
  if (fd < 0)
    goto fail_noclean;
  step = "fstat";
  if (fstat(fd, &st) != 0)
    goto fail_close;
  if (!S_ISREG(st.st_mode)) {
    errno = EINVAL; /* cannot happen with O_CREAT|O_EXCL; checked anyway */
    goto fail_close;
  }
  /* The umask may have left other bits or removed ours. */
  step = "chmod";
  if (fchmod(fd, 0600) != 0)
    goto fail_close;
  step = "write";
  if (write_all(fd, data, len) != 0)
    goto fail_close;
  step = "fsync";
  if (fsync(fd) != 0)
    goto fail_close;
  step = "close";
  if (close(fd) != 0) {
    fd = -1;
    goto fail_close;
  }
  step = "rename";
  if (rename(tmp, path) != 0) {
    fd = -1;
    goto fail_close;
  }
  if (sync_dir(path) != 0) {
    e = errno;
    ntsntp__errf(errbuf, errlen,
                 "%s %s written, but syncing its directory failed: %s", what,
                 path, strerror(e));
    errno = e;
    return NTSNTP_ERR_IO;
  }
  return 0;

fail_close:
  e = errno;
  if (fd >= 0)
    close(fd);
  unlink(tmp);
  errno = e;
fail_noclean:
  e = errno;
  ntsntp__errf(errbuf, errlen, "cannot save %s %s (%s %s): %s", what, path,
               step, tmp, strerror(e));
  errno = e;
  return NTSNTP_ERR_IO;
}

const char *ntsntp__file_type(mode_t mode) {
  if (S_ISREG(mode))
    return "a regular file";
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISLNK(mode))
    return "a symbolic link";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISSOCK(mode))
    return "a socket";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  return "of unknown type";
}

int ntsntp__file_read(const char *path, void *buf, size_t max, size_t *len,
                      struct stat *st) {
  uint8_t *p = buf, extra;
  ssize_t r = 0;
  int fd, e;

  *len = 0;
  memset(st, 0, sizeof(*st));
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? NTSNTP_ERR_NOT_FOUND : NTSNTP_ERR_IO;
  if (fstat(fd, st) != 0)
    goto fail;
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    errno = EINVAL;
    return NTSNTP_ERR_UNSUPPORTED;
  }
  if (st->st_size > (off_t)max) {
    close(fd);
    errno = EFBIG;
    return NTSNTP_ERR_TOO_LARGE;
  }
  /* The size may change under us: read to EOF, at most one byte more. */
  for (;;) {
    if (*len < max)
      r = read(fd, p + *len, max - *len);
    else
      r = read(fd, &extra, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (*len == max) {
      close(fd);
      *len = 0;
      errno = EFBIG;
      return NTSNTP_ERR_TOO_LARGE;
    }
    *len += (size_t)r;
  }
  if (r < 0)
    goto fail;
  close(fd);
  return 0;
fail:
  e = errno;
  close(fd);
  *len = 0;
  errno = e;
  return NTSNTP_ERR_IO;
}

int ntsntp_keyfile_save(const ntsntp_keyring *kr, const char *path,
                        char *errbuf, size_t errlen) {
  uint8_t buf[KEYFILE_MAX];
  ntsntp_ssize len;
  int rv;

  ntsntp__errf(errbuf, errlen, "%s", "");
  if (kr == NULL || path == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  len = ntsntp_keyring_save(kr, buf, sizeof(buf));
  if (len < 0) {
    ntsntp__errf(errbuf, errlen, "cannot serialise key ring: %s",
                 ntsntp_strerror((int)len));
    return (int)len;
  }
  rv = ntsntp__file_write_atomic(path, buf, (size_t)len, "key file", errbuf,
                                 errlen);
  ntsntp_secure_clear(buf, sizeof(buf));
  return rv;
}

/* An operator seeing this must know which file, why, and what to do.
 * |st|: the file's status when it was opened, or NULL. */
static int io_error(const char *path, int e, const struct stat *st,
                    char *errbuf, size_t errlen) {
  struct stat lst;
  unsigned me = (unsigned)geteuid();

  if (e == ELOOP) {
    ntsntp__errf(errbuf, errlen,
                 "cannot read key file %s: it is a symbolic link, which is not "
                 "followed for key files (STATE_DIR may be writable by "
                 "NTSD_USER): replace it with the file itself, or remove it "
                 "to start with fresh keys",
                 path);
  } else if (st && !S_ISREG(st->st_mode)) {
    ntsntp__errf(errbuf, errlen,
                 "cannot read key file %s: it is not a regular file (%s; "
                 "owner uid %u, mode %04o): remove it to start with fresh keys",
                 path, ntsntp__file_type(st->st_mode), (unsigned)st->st_uid,
                 (unsigned)(st->st_mode & 07777));
  } else if (lstat(path, &lst) == 0) {
    ntsntp__errf(
        errbuf, errlen,
        "cannot read key file %s: %s (owner uid %u, mode %04o; this process "
        "runs as uid %u): make it a regular file readable by uid %u or "
        "remove it to start with fresh keys",
        path, strerror(e), (unsigned)lst.st_uid,
        (unsigned)(lst.st_mode & 07777), me, me);
  } else {
    ntsntp__errf(errbuf, errlen,
                 "cannot read key file %s: %s (this process runs as uid %u)",
                 path, strerror(e), me);
  }
  errno = e;
  return NTSNTP_ERR_IO;
}

int ntsntp_keyfile_load(ntsntp_keyring *kr, const char *path, int64_t now,
                        char *errbuf, size_t errlen) {
  uint8_t buf[KEYFILE_MAX];
  char why[128];
  struct stat st;
  size_t len = 0;
  int rv, e;

  ntsntp__errf(errbuf, errlen, "%s", "");
  if (kr == NULL || path == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  rv = ntsntp__file_read(path, buf, sizeof(buf), &len, &st);
  e = errno;
  if (rv) {
    ntsntp_secure_clear(buf, sizeof(buf));
    if (rv == NTSNTP_ERR_NOT_FOUND) {
      ntsntp__errf(errbuf, errlen, "key file %s does not exist", path);
      errno = e;
      return rv;
    }
    if (rv == NTSNTP_ERR_TOO_LARGE) {
      ntsntp__errf(
          errbuf, errlen,
          "key file %s is corrupt: larger than %d bytes; fresh keys are used "
          "only if the operator allows it (e.g. NTS_KEYS_RESET=1)",
          path, KEYFILE_MAX);
      return NTSNTP_ERR_BAD_KEYFILE;
    }
    return io_error(path, e, rv == NTSNTP_ERR_UNSUPPORTED ? &st : NULL,
                    errbuf, errlen);
  }

  rv = ntsntp_keyring_load_ex(kr, buf, len, now, why, sizeof(why));
  ntsntp_secure_clear(buf, sizeof(buf));
  if (rv == NTSNTP_ERR_BAD_KEYFILE) {
    ntsntp__errf(
        errbuf, errlen,
        "key file %s is corrupt: %s; fresh keys (which invalidate every "
        "client's cookies) are used only if the operator allows it (e.g. "
        "NTS_KEYS_RESET=1)",
        path, why);
    return rv;
  }
  if (rv < 0) {
    ntsntp__errf(errbuf, errlen, "cannot load key file %s: %s", path,
                 ntsntp_strerror(rv));
    return rv;
  }
  if (st.st_mode & 077)
    ntsntp__errf(
        errbuf, errlen,
        "key file %s is accessible by group or others (mode %04o): it holds "
        "the cookie master keys; chmod 600 it",
        path, (unsigned)(st.st_mode & 07777));
  return 0;
}
