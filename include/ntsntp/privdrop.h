/* libntsntp runtime: giving up root once the server is set up. */
#ifndef NTSNTP_PRIVDROP_H
#define NTSNTP_PRIVDROP_H

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * When running as root, switches to |user| (all threads: call it before
 * starting threads, or rely on glibc's setxid broadcast, which covers
 * threads already running).  The paths in |own| (state directory and the
 * files in it) are given to |user| first.  With |keep_read|, keeps only
 * CAP_DAC_READ_SEARCH so root-only certificate keys can be re-read on
 * reload.  |user| "root" or empty keeps root.  Not root: does nothing.
 * With |keep_time|, also keeps CAP_SYS_TIME for clock control.
 * |msg| gets a line to log (what happened), or the error.
 * Errors: BAD_CONFIG (no such user: |msg| says how to create it), IO.
 */
NTSNTP_EXTERN int ntsntp_drop_privileges(const char *user,
                                         const char *const *own, size_t n_own,
                                         int keep_read, int keep_time,
                                         char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_PRIVDROP_H */
