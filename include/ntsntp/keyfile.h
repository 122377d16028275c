/*
 * libntsntp runtime layer: the server key ring's file on disk.
 *
 * The core (cookie.h) only turns a ring into text and back; these functions
 * do the file system work, atomically and with messages an operator can act
 * on.  They block (open/read/fsync), so call them at start-up and from the
 * rotation timer, not from a packet path.  Every message written to
 * |errbuf| (|errlen| bytes, always NUL terminated; may be NULL) is one line
 * without a trailing newline.
 */
#ifndef NTSNTP_KEYFILE_H
#define NTSNTP_KEYFILE_H

#include "ntsntp/cookie.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Writes the ring to |path| so that a crash leaves either the old or the new
 * file: the text goes to "<path>.tmp.<pid>" (created O_EXCL|O_NOFOLLOW, mode
 * 0600 whatever the umask), is fsync'ed, renamed over |path|, and the
 * directory is fsync'ed.  A stale temporary file with our pid (left by a
 * crash; common when the daemon is pid 1 in a container) is replaced.
 * Returns 0.
 * Errors: IO (errno kept; |errbuf| names the file and the failing step; the
 * old file is untouched unless only the directory sync failed),
 * INVALID_ARG (NULL argument, path too long), NOBUF (cannot happen with the
 * library's ring sizes).
 */
NTSNTP_EXTERN int ntsntp_keyfile_save(const ntsntp_keyring *kr,
                                      const char *path, char *errbuf,
                                      size_t errlen);

/*
 * Loads |path| into |kr| (see ntsntp_keyring_load) and rotates for |now|.
 * Symbolic links are not followed: the file holds the master keys, and
 * its directory may belong to a less privileged user.
 * Returns 0 on success; |errbuf| is then "" or a warning to log (the file is
 * accessible by group or others).
 * Errors (the ring is unchanged):
 * - NOT_FOUND: |path| does not exist; keep the fresh keys and save them.
 * - IO: it exists but cannot be read (permissions, a symbolic link, not a
 *   regular file: a FIFO is never waited on, a read error); |errbuf| names
 *   the path, the reason, the file's owner and mode and the uid we run as.
 *   Do not overwrite it silently.
 * - BAD_KEYFILE: it is corrupt or from another version; |errbuf| names the
 *   file and what is wrong.  Replacing it with fresh keys invalidates every
 *   client's cookies, so do that only when the operator asks (ntsd:
 *   NTS_KEYS_RESET=1).
 * - INVALID_ARG, NOMEM, CRYPTO as ntsntp_keyring_load.
 */
NTSNTP_EXTERN int ntsntp_keyfile_load(ntsntp_keyring *kr, const char *path,
                                      int64_t now, char *errbuf,
                                      size_t errlen) NTSNTP_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_KEYFILE_H */
