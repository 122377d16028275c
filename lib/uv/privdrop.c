/* libntsntp runtime: dropping root after the sockets and files are open. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ntsntp/privdrop.h"

static int capset_raw(uint32_t effective, uint32_t permitted) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  d[0].effective = effective;
  d[0].permitted = permitted;
  return (int)syscall(SYS_capset, &h, d);
}

int ntsntp_drop_privileges(const char *user, const char *const *own,
                           size_t n_own, int keep_read, int keep_time,
                           char *msg, size_t msglen) {
  struct passwd *pw;
  size_t i;
  int can_keep;

  msg[0] = 0;
  if (geteuid() != 0)
    return 0; /* nothing to drop */
  if (!user || !*user || !strcmp(user, "root")) {
    snprintf(msg, msglen, "Running as root (NTSD_USER=root): a bug in ntsd "
             "would be a bug with root's powers");
    return 0;
  }
  errno = 0;
  pw = getpwnam(user);
  if (!pw) {
    snprintf(msg, msglen,
             "user \"%s\" does not exist, and ntsd will not keep serving as "
             "root; fix: create it (useradd --system --no-create-home "
             "--shell /usr/sbin/nologin %s), or set NTSD_USER to an "
             "existing unprivileged user (NTSD_USER=root keeps root)",
             user, user);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  /* Files written after the drop (key ring, drift) must stay writable. */
  for (i = 0; i < n_own; i++) {
    struct stat st;
    if (lstat(own[i], &st) == 0 && !S_ISLNK(st.st_mode) &&
        chown(own[i], pw->pw_uid, pw->pw_gid) < 0) {
      snprintf(msg, msglen, "cannot give %s to user %s: %s", own[i], user,
               strerror(errno));
      return NTSNTP_ERR_IO;
    }
  }
  /* Certificate renewals are re-read after the drop: keep the one
   * capability that reads root-only files (CAP_DAC_READ_SEARCH) when the
   * process may have it (containers drop it by default). */
  can_keep = keep_read && prctl(PR_CAPBSET_READ, CAP_DAC_READ_SEARCH) == 1;
  if ((can_keep || keep_time) && prctl(PR_SET_KEEPCAPS, 1) < 0) {
    snprintf(msg, msglen, "cannot keep capabilities: %s", strerror(errno));
    return NTSNTP_ERR_IO;
  }
  if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
      setuid(pw->pw_uid) < 0) {
    snprintf(msg, msglen, "cannot switch to user %s: %s", user,
             strerror(errno));
    return NTSNTP_ERR_IO;
  }
  if (can_keep || keep_time) {
    uint32_t bits = (can_keep ? 1u << CAP_DAC_READ_SEARCH : 0) |
                    (keep_time ? 1u << CAP_SYS_TIME : 0);
    if (capset_raw(bits, bits) < 0) {
      if (keep_time) {
        snprintf(msg, msglen, "CLOCK_CONTROL needs CAP_SYS_TIME, which "
                 "could not be kept: %s", strerror(errno));
        return NTSNTP_ERR_IO;
      }
      can_keep = 0;
    }
    prctl(PR_SET_KEEPCAPS, 0);
  }
  if (setuid(0) == 0) { /* must be impossible now */
    snprintf(msg, msglen, "privilege drop to %s did not hold", user);
    return NTSNTP_ERR_IO;
  }
  if (keep_read && !can_keep)
    snprintf(msg, msglen,
             "Running as %s (uid %u) without CAP_DAC_READ_SEARCH: a renewed "
             "certificate key can be reloaded only if %s can read it (in "
             "Docker: cap_add DAC_READ_SEARCH)",
             user, (unsigned)pw->pw_uid, user);
  else
    snprintf(msg, msglen, "Running as %s (uid %u)%s", user,
             (unsigned)pw->pw_uid,
             can_keep ? ", keeping only CAP_DAC_READ_SEARCH to reload the "
                        "certificate"
                      : "");
  return 0;
}
