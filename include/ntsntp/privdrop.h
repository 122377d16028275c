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
 * threads already running) and keeps no capability at all: what still
 * needs a privilege (re-reading a root-only certificate key, adjusting the
 * clock) is done by the privileged helper (privsep.h).  The paths in
 * |own| (state directory, control socket) are given to |user| first,
 * never following a link in their last component.  |user| "root" or empty
 * keeps root.  Not root: empties the capability sets (a service manager's
 * ambient capabilities) and keeps the user.
 * |msg| gets a line to log (what happened), or the error.
 * Errors: BAD_CONFIG (no such user: |msg| says how to create it), IO.
 */
NTSNTP_EXTERN int ntsntp_drop_privileges(const char *user,
                                         const char *const *own, size_t n_own,
                                         char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_PRIVDROP_H */
