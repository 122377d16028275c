/* Runtime helper: files that must never be left half-written. */
#ifndef NTSNTP_UV_FILE_H
#define NTSNTP_UV_FILE_H

#include <stddef.h>

/*
 * Writes |len| bytes to |path| atomically: a mode 0600 temporary file in
 * the same directory (O_EXCL, O_NOFOLLOW), fsync, rename, fsync of the
 * directory.  |what| names the file in messages ("key file").
 * Errors: INVALID_ARG (path too long), IO (|errbuf| says which step).
 */
int ntsntp__file_write_atomic(const char *path, const void *data, size_t len,
                              const char *what, char *errbuf, size_t errlen);

#endif
