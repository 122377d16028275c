/* libntsntp runtime: dropping root after the sockets and files are open. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "caps.h"
#include "ntsntp/privdrop.h"

void ntsntp__caps_bound(uint64_t keep) {
  int cap;
  for (cap = 0; cap <= 63 && prctl(PR_CAPBSET_READ, cap) >= 0; cap++)
    if (!(keep & (UINT64_C(1) << cap)))
      prctl(PR_CAPBSET_DROP, cap);
}

int ntsntp__caps_only(uint64_t keep) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  uint64_t perm;
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  memset(d, 0, sizeof(d));
  if (syscall(SYS_capget, &h, d) < 0)
    return -1;
  perm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
  if ((perm & keep) != keep)
    return -2;
  memset(d, 0, sizeof(d));
  d[0].effective = d[0].permitted = (uint32_t)keep;
  d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
  if (syscall(SYS_capset, &h, d) < 0 || syscall(SYS_capget, &h, d) < 0)
    return -1;
  return ((uint64_t)d[1].permitted << 32 | d[0].permitted) != keep ||
                 ((uint64_t)d[1].effective << 32 | d[0].effective) != keep
             ? -1
             : 0;
}

/* Gives |path| to |uid|:|gid| without following a link in its last
 * component: the directory may belong to that user already, who could
 * have put a link to a root-only file there. */
static int give(const char *path, uid_t uid, gid_t gid) {
  struct stat st;
  int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC), rv = 0;
  if (fd < 0)
    return errno == ENOENT ? 0 : -1;
  if (fstat(fd, &st) == 0 && !S_ISLNK(st.st_mode) &&
      (st.st_uid != uid || st.st_gid != gid))
    rv = fchownat(fd, "", uid, gid, AT_EMPTY_PATH);
  close(fd);
  return rv;
}

int ntsntp_drop_privileges(const char *user, const char *const *own,
                           size_t n_own, char *msg, size_t msglen) {
  struct passwd *pw;
  size_t i;

  msg[0] = 0;
  if (geteuid() != 0) {
    /* Capabilities a service manager gave (ambient CAP_NET_BIND_SERVICE)
     * are not needed once the ports are bound. */
    if (ntsntp__caps_only(0) < 0) {
      snprintf(msg, msglen, "cannot drop capabilities: %s", strerror(errno));
      return NTSNTP_ERR_IO;
    }
    return 0;
  }
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
    if (give(own[i], pw->pw_uid, pw->pw_gid) < 0) {
      snprintf(msg, msglen, "cannot give %s to user %s: %s", own[i], user,
               strerror(errno));
      return NTSNTP_ERR_IO;
    }
  }
  /* Nothing may give a capability back (no CAP_SETPCAP: the user's
   * switch below empties every set anyway). */
  ntsntp__caps_bound(0);
  prctl(PR_SET_KEEPCAPS, 0);
  if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
      setuid(pw->pw_uid) < 0) {
    snprintf(msg, msglen, "cannot switch to user %s: %s", user,
             strerror(errno));
    return NTSNTP_ERR_IO;
  }
  if (setuid(0) == 0 || ntsntp__caps_only(0) < 0) { /* must be impossible now */
    snprintf(msg, msglen, "privilege drop to %s did not hold", user);
    return NTSNTP_ERR_IO;
  }
  snprintf(msg, msglen, "Running as %s (uid %u) without capabilities", user,
           (unsigned)pw->pw_uid);
  return 0;
}
