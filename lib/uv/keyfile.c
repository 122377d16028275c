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

/* Larger than any ring's text (see ntsntp_keyring_save); one more byte lets
 * a read notice an oversized file. */
#define KEYFILE_MAX 4096

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
  const char *step;
  int fd, n, e;

  ntsntp__errf(errbuf, errlen, "%s", "");
  n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof(tmp)) {
    ntsntp__errf(errbuf, errlen, "%s path too long: %s", what, path);
    return NTSNTP_ERR_INVALID_ARG;
  }
  step = "create";
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    goto fail_noclean;
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

/* An operator seeing this must know which file, why, and what to do. */
static int io_error(const char *path, int e, char *errbuf, size_t errlen) {
  struct stat st;
  unsigned me = (unsigned)geteuid();

  if (e == ELOOP) {
    ntsntp__errf(errbuf, errlen,
                 "cannot read key file %s: it is a symbolic link, which is not "
                 "followed for key files: configure the real path",
                 path);
  } else if (lstat(path, &st) == 0) {
    ntsntp__errf(
        errbuf, errlen,
        "cannot read key file %s: %s (owner uid %u, mode %04o; this process "
        "runs as uid %u): make it a regular file readable by uid %u or "
        "remove it to start with fresh keys",
        path, strerror(e), (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
        me, me);
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
  uint8_t buf[KEYFILE_MAX + 1];
  char why[128];
  struct stat st;
  size_t len = 0;
  ssize_t r = 0;
  int fd, rv, e;

  ntsntp__errf(errbuf, errlen, "%s", "");
  if (kr == NULL || path == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  /* O_NONBLOCK so that a FIFO planted at |path| cannot hang start-up. */
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    e = errno;
    if (e == ENOENT) {
      ntsntp__errf(errbuf, errlen, "key file %s does not exist", path);
      errno = e;
      return NTSNTP_ERR_NOT_FOUND;
    }
    return io_error(path, e, errbuf, errlen);
  }
  if (fstat(fd, &st) != 0) {
    e = errno;
    close(fd);
    return io_error(path, e, errbuf, errlen);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return io_error(path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, errbuf,
                    errlen);
  }
  for (;;) {
    r = read(fd, buf + len, sizeof(buf) - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
    if (len == sizeof(buf))
      break;
  }
  e = errno;
  close(fd);
  if (r < 0) {
    ntsntp_secure_clear(buf, sizeof(buf));
    return io_error(path, e, errbuf, errlen);
  }
  if (len > KEYFILE_MAX) {
    ntsntp_secure_clear(buf, sizeof(buf));
    ntsntp__errf(
        errbuf, errlen,
        "key file %s is corrupt: larger than %d bytes; fresh keys are used "
        "only if the operator allows it (e.g. NTS_KEYS_RESET=1)",
        path, KEYFILE_MAX);
    return NTSNTP_ERR_BAD_KEYFILE;
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
