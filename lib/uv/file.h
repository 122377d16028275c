/*
 * Runtime helpers for the files in STATE_DIR: a directory that the
 * unprivileged NTSD_USER owns while ntsd may still run as root, so anything
 * can be planted there (a symbolic link, a FIFO, a huge file).
 */
#ifndef NTSNTP_UV_FILE_H
#define NTSNTP_UV_FILE_H

#include <stddef.h>
#include <sys/stat.h>

/*
 * Writes |len| bytes to |path| atomically: a mode 0600 temporary file in
 * the same directory (O_EXCL, O_NOFOLLOW, O_NONBLOCK; checked to be a
 * regular file), fsync, rename, fsync of the directory.  rename replaces
 * whatever is at |path| (a link or a FIFO too) and follows nothing.
 * |what| names the file in messages ("key file").
 * Errors: INVALID_ARG (path too long), IO (|errbuf| says which step).
 */
int ntsntp__file_write_atomic(const char *path, const void *data, size_t len,
                              const char *what, char *errbuf, size_t errlen);

/*
 * Reads the whole of |path| into |buf| (|max| bytes) and stores its length
 * in |*len|.  A symbolic link is not followed (O_NOFOLLOW), a FIFO cannot
 * block (O_NONBLOCK), only a regular file is read, and never more than
 * |max| bytes.  |st| gets the file's status (the node that was opened).
 * Errors (errno set):
 *   NOT_FOUND    no such file (ENOENT);
 *   IO           a symbolic link (ELOOP), or open, fstat or read failed;
 *   UNSUPPORTED  not a regular file (EINVAL): |st->st_mode| says what;
 *   TOO_LARGE    more than |max| bytes (EFBIG); nothing is usable.
 */
int ntsntp__file_read(const char *path, void *buf, size_t max, size_t *len,
                      struct stat *st);

/* "a FIFO", "a directory", ... for messages: what |mode| is. */
const char *ntsntp__file_type(mode_t mode);

#endif
