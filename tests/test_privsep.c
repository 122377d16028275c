/*
 * privsep: the privileged helper reads only listed files through
 * directories root alone controls, never blocks, keeps no capability but
 * CAP_SYS_TIME for clock control, and goes away with the server.  Most
 * checks need root (the helper's point); as another user they are skipped.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ntsntp/privsep.h"
#include "ntsntp/sandbox.h"
#include "testutil.h"

static char dir[64];      /* root's, 0700: what the helper may read */
static char path_ok[128]; /* dir/key.pem, 0600 root */

static int is_root(void) { return geteuid() == 0; }

/* valgrind has no seccomp(): its CI step runs with SECCOMP=no, as ntsd. */
static int want_seccomp(void) {
  const char *v = getenv("SECCOMP");
  return ntsntp_sandbox_available() && !(v && !strcmp(v, "no"));
}

static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  ck_assert_int_eq(chmod(path, mode), 0);
}

static void setup(void) {
  snprintf(dir, sizeof(dir), "/tmp/ntsntp-privsep.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  chmod(dir, 0700);
  snprintf(path_ok, sizeof(path_ok), "%s/key.pem", dir);
  write_file(path_ok, "-----BEGIN PRIVATE KEY-----\nroot only\n", 0600);
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* In this process, not with system(): ntsntp_privsep_start emptied the
 * bounding set, so a program started now would run without capabilities. */
static void teardown(void) {
  ck_assert_int_eq(nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static ntsntp_privsep *start(const char *const *files, size_t n,
                             const char *user) {
  ntsntp_privsep_settings s;
  ntsntp_privsep *ps = NULL;
  char err[512];
  int rv;
  ntsntp_privsep_settings_default(&s);
  s.files = files;
  s.n_files = n;
  s.user = user;
  s.seccomp = want_seccomp();
  rv = ntsntp_privsep_start(&s, &ps, err, sizeof(err));
  ck_assert_msg(rv == 0, "start: %s", err);
  ck_assert_int_gt(ntsntp_privsep_pid(ps), 0);
  return ps;
}

/* The value of |field| in /proc/PID/status. */
static void proc_field(long pid, const char *field, char *out, size_t len) {
  char path[64], line[256];
  size_t fl = strlen(field);
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%ld/status", pid);
  f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  out[0] = 0;
  while (fgets(line, sizeof(line), f))
    if (!strncmp(line, field, fl) && line[fl] == ':') {
      snprintf(out, len, "%s", line + fl + 1 + strspn(line + fl + 1, " \t"));
      out[strcspn(out, "\n")] = 0;
    }
  fclose(f);
}

START_TEST(test_read_root_only) {
  const char *files[] = {path_ok};
  ntsntp_privsep *ps;
  ntsntp_file_id id;
  struct stat st;
  uint8_t *data;
  size_t len;
  char err[512];
  if (!is_root())
    return;
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, path_ok, &data, &len, &id, err, sizeof(err)),
      0);
  ck_assert_uint_eq(len, strlen("-----BEGIN PRIVATE KEY-----\nroot only\n"));
  ck_assert_mem_eq(data, "-----BEGIN PRIVATE KEY-----", 27);
  ck_assert_int_eq(stat(path_ok, &st), 0);
  ck_assert_uint_eq(id.ino, st.st_ino);
  ck_assert_uint_eq(id.mode & 07777, 0600);
  ntsntp_privsep_data_free(data, len);
  ntsntp_privsep_del(ps);
}
END_TEST

/* A directory the server's user may write: a link there must not make
 * the helper read a root-only file.  The server reads it itself, as that
 * user, and fails. */
START_TEST(test_untrusted_link) {
  char evil[128], link[160];
  const char *files[1];
  struct passwd *pw = getpwnam("nobody");
  ntsntp_privsep *ps;
  uint8_t *data;
  size_t len;
  char err[1024];
  if (!is_root() || !pw)
    return;
  snprintf(evil, sizeof(evil), "%s/evil", dir);
  snprintf(link, sizeof(link), "%s/privkey.pem", evil);
  ck_assert_int_eq(mkdir(evil, 0755), 0);
  ck_assert_int_eq(symlink(path_ok, link), 0);
  ck_assert_int_eq(chown(evil, pw->pw_uid, pw->pw_gid), 0);
  chmod(dir, 0755); /* nobody may reach evil/, not key.pem */
  files[0] = link;
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, link, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_IO);
  ck_assert_ptr_null(data);
  ck_assert_msg(strstr(err, "Permission denied") &&
                    strstr(err, "not root's alone") && strstr(err, evil),
                "%s", err);
  ntsntp_privsep_del(ps);
}
END_TEST

/* A key that belongs to the server's user (a self-signed one in
 * STATE_DIR): root without capabilities may not read it, the server's user
 * may, and does. */
START_TEST(test_users_own_file) {
  char own[128];
  const char *files[1];
  struct passwd *pw = getpwnam("nobody");
  ntsntp_privsep *ps;
  uint8_t *data;
  size_t len;
  char err[1024];
  if (!is_root() || !pw)
    return;
  snprintf(own, sizeof(own), "%s/selfsigned.key", dir);
  write_file(own, "-----BEGIN PRIVATE KEY-----\nnobody's\n", 0600);
  ck_assert_int_eq(chown(own, pw->pw_uid, pw->pw_gid), 0);
  chmod(dir, 0755);
  files[0] = own;
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, own, &data, &len, NULL, err, sizeof(err)), 0);
  ck_assert_mem_eq(data, "-----BEGIN PRIVATE KEY-----\nnobody's", 36);
  ntsntp_privsep_data_free(data, len);
  ntsntp_privsep_del(ps);
  /* Nobody else's rights suffice: the message says who may read it. */
  ck_assert_int_eq(chown(own, 1, 1), 0);
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, own, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_IO);
  ck_assert_msg(strstr(err, "root without capabilities may not read"), "%s",
                err);
  ntsntp_privsep_del(ps);
}
END_TEST

/* certbot: live/NAME/privkey.pem -> ../../archive/NAME/privkey1.pem, both
 * 0700 root; a renewal moves the link, and the identity follows. */
START_TEST(test_certbot_layout) {
  char cmd[512], live[160], a2[160];
  const char *files[1];
  ntsntp_privsep *ps;
  ntsntp_file_id id1, id2, id3;
  uint8_t *data;
  size_t len;
  char err[512];
  if (!is_root())
    return;
  snprintf(cmd, sizeof(cmd),
           "cd %s && mkdir -p archive/x live/x && chmod 700 archive live && "
           "printf one > archive/x/privkey1.pem && "
           "printf two > archive/x/privkey2.pem && "
           "chmod 600 archive/x/* && "
           "ln -s ../../archive/x/privkey1.pem live/x/privkey.pem",
           dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(live, sizeof(live), "%s/live/x/privkey.pem", dir);
  snprintf(a2, sizeof(a2), "../../archive/x/privkey2.pem");
  files[0] = live;
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(ntsntp_privsep_stat(ps, live, &id1), 0);
  ck_assert_int_eq(ntsntp_privsep_stat(ps, live, &id2), 0);
  ck_assert_uint_eq(id1.ino, id2.ino);
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, live, &data, &len, NULL, err, sizeof(err)), 0);
  ck_assert_uint_eq(len, 3);
  ck_assert_mem_eq(data, "one", 3);
  ntsntp_privsep_data_free(data, len);
  ck_assert_int_eq(unlink(live), 0);
  ck_assert_int_eq(symlink(a2, live), 0);
  ck_assert_int_eq(ntsntp_privsep_stat(ps, live, &id3), 0);
  ck_assert_uint_ne(id1.ino, id3.ino);
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, live, &data, &len, NULL, err, sizeof(err)), 0);
  ck_assert_mem_eq(data, "two", 3);
  ntsntp_privsep_data_free(data, len);
  ntsntp_privsep_del(ps);
}
END_TEST

/* Only the listed files: anything else is read with the server's rights. */
START_TEST(test_not_listed) {
  const char *files[] = {"/nonexistent/cert.pem"};
  ntsntp_privsep *ps;
  uint8_t *data;
  size_t len;
  char err[1024];
  if (!is_root())
    return;
  chmod(dir, 0755);
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, path_ok, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_IO);
  ck_assert_msg(strstr(err, "not one of the files"), "%s", err);
  ck_assert_int_eq(ntsntp_privsep_read(ps, "/nonexistent/cert.pem", &data,
                                       &len, NULL, err, sizeof(err)),
                   NTSNTP_ERR_IO);
  ck_assert_msg(strstr(err, "No such file"), "%s", err);
  ntsntp_privsep_del(ps);
}
END_TEST

/* A FIFO never blocks: not at the helper, not in the fallback. */
START_TEST(test_fifo_and_size) {
  char fifo[128], big[128], dev[] = "/dev/zero";
  const char *files[3];
  ntsntp_privsep *ps;
  uint8_t *data;
  size_t len;
  char err[512];
  int fd;
  snprintf(fifo, sizeof(fifo), "%s/fifo.pem", dir);
  snprintf(big, sizeof(big), "%s/big.pem", dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  fd = open(big, O_WRONLY | O_CREAT, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, 1024 * 1024 + 1), 0);
  close(fd);
  files[0] = fifo;
  files[1] = big;
  files[2] = dev;
  ps = is_root() ? start(files, 3, NULL) : NULL;
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, fifo, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_BAD_CONFIG);
  ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
  ck_assert_int_eq(
      ntsntp_privsep_read(NULL, fifo, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_BAD_CONFIG);
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, big, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_BAD_CONFIG);
  ck_assert_msg(strstr(err, "size"), "%s", err);
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, dev, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_BAD_CONFIG);
  ntsntp_privsep_del(ps);
}
END_TEST

/* Relative names are the server's: resolved from the directory ntsd was
 * started in. */
START_TEST(test_relative) {
  const char *files[] = {"key.pem"};
  ntsntp_privsep *ps;
  uint8_t *data;
  size_t len;
  char err[512], cwd[256];
  if (!is_root())
    return;
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
  ck_assert_int_eq(chdir(dir), 0);
  ps = start(files, 1, NULL);
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, "key.pem", &data, &len, NULL, err, sizeof(err)),
      0);
  ntsntp_privsep_data_free(data, len);
  ntsntp_privsep_del(ps);
  ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

/* The helper: root's uid, no capability, no descriptor but its socket and
 * standard streams, its own seccomp filter. */
START_TEST(test_helper_state) {
  const char *files[] = {path_ok};
  char v[128], fdpath[64];
  ntsntp_privsep *ps;
  struct dirent *e;
  struct rlimit lim;
  DIR *d;
  long pid;
  int n = 0;
  if (!is_root())
    return;
  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &lim), 0);
  ps = start(files, 1, "nobody");
  pid = ntsntp_privsep_pid(ps);
  proc_field(pid, "Name", v, sizeof(v));
  ck_assert_str_eq(v, "ntsd-privsep");
  proc_field(pid, "Uid", v, sizeof(v));
  ck_assert_str_eq(v, "0\t0\t0\t0");
  proc_field(pid, "CapEff", v, sizeof(v));
  ck_assert_str_eq(v, "0000000000000000");
  proc_field(pid, "CapPrm", v, sizeof(v));
  ck_assert_str_eq(v, "0000000000000000");
  proc_field(pid, "CapBnd", v, sizeof(v));
  ck_assert_str_eq(v, "0000000000000000");
  proc_field(pid, "CapAmb", v, sizeof(v));
  ck_assert_str_eq(v, "0000000000000000");
  if (want_seccomp()) {
    proc_field(pid, "Seccomp", v, sizeof(v));
    ck_assert_str_eq(v, "2");
    proc_field(pid, "NoNewPrivs", v, sizeof(v));
    ck_assert_str_eq(v, "1");
  }
  snprintf(fdpath, sizeof(fdpath), "/proc/%ld/fd", pid);
  d = opendir(fdpath);
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    /* valgrind keeps its own descriptors above the limit, where the
     * program cannot have any. */
    if ((rlim_t)atoi(e->d_name) >= lim.rlim_cur)
      continue;
    ck_assert_msg(atoi(e->d_name) <= 3, "helper holds fd %s", e->d_name);
    n++;
  }
  closedir(d);
  ck_assert_int_le(n, 4);
  ntsntp_privsep_del(ps);
}
END_TEST

/* The helper ends with the server, even one killed without clean-up. */
START_TEST(test_helper_follows_server) {
  const char *files[] = {path_ok};
  int p[2], i;
  long helper = 0;
  pid_t child;
  if (!is_root())
    return;
  ck_assert_int_eq(pipe(p), 0);
  child = fork();
  ck_assert_int_ge(child, 0);
  if (child == 0) {
    ntsntp_privsep *ps = start(files, 1, NULL);
    long pid = ntsntp_privsep_pid(ps);
    if (write(p[1], &pid, sizeof(pid)) != sizeof(pid))
      _exit(1);
    pause();
    _exit(0);
  }
  close(p[1]);
  ck_assert_int_eq(read(p[0], &helper, sizeof(helper)), sizeof(helper));
  ck_assert_int_eq(kill(helper, 0), 0);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  for (i = 0; i < 200; i++) {
    char v[64] = "";
    if (kill(helper, 0) < 0)
      break;
    proc_field(helper, "State", v, sizeof(v));
    if (v[0] == 'Z')
      break;
    usleep(10000);
  }
  ck_assert_int_lt(i, 200);
}
END_TEST

/* A helper that died: the server says so and reads with its own rights. */
START_TEST(test_helper_gone) {
  const char *files[] = {path_ok};
  ntsntp_privsep *ps;
  uint8_t *data;
  size_t len;
  char err[1024];
  if (!is_root())
    return;
  ps = start(files, 1, "nobody");
  ck_assert_int_eq(kill((pid_t)ntsntp_privsep_pid(ps), SIGKILL), 0);
  usleep(50000);
  ck_assert_int_eq(
      ntsntp_privsep_read(ps, path_ok, &data, &len, NULL, err, sizeof(err)),
      NTSNTP_ERR_IO);
  ck_assert_msg(strstr(err, "helper is gone"), "%s", err);
  ck_assert_int_eq(ntsntp_privsep_pid(ps), 0);
  ntsntp_privsep_del(ps);
}
END_TEST

/* Clock requests run in the helper.  The operations are injected: they
 * write what they were asked to the helper's standard error, a pipe here;
 * nothing touches the system clock. */
static int fake_slew(void *user, double offset, double freq) {
  char line[96];
  int n = snprintf(line, sizeof(line), "slew %.3f %.3f\n", offset, freq);
  (void)user;
  return write(2, line, (size_t)n) == n ? 0 : -1;
}
static int fake_step(void *user, double offset) {
  char line[96];
  int n = snprintf(line, sizeof(line), "step %.3f\n", offset);
  (void)user;
  if (offset > 1e6) {
    errno = EINVAL;
    return -1;
  }
  return write(2, line, (size_t)n) == n ? 0 : -1;
}
static int fake_rtc(void *user) {
  (void)user;
  return write(2, "rtc\n", 4) == 4 ? 0 : -1;
}
static int fake_leap(void *user, int d) {
  char line[32];
  int n = snprintf(line, sizeof(line), "leap %d\n", d);
  (void)user;
  return write(2, line, (size_t)n) == n ? 0 : -1;
}

START_TEST(test_clock_ops) {
  ntsntp_clock_ops fake = {NULL, fake_slew, fake_step, fake_rtc, NULL,
                          fake_leap},
                   ops;
  ntsntp_privsep_settings s;
  ntsntp_privsep *ps;
  struct timespec ts;
  char err[512], buf[256] = "", v[64];
  int p[2], saved;
  ssize_t n;
  if (!is_root())
    return;
  ck_assert_int_eq(pipe(p), 0);
  saved = dup(2);
  dup2(p[1], 2);
  ntsntp_privsep_settings_default(&s);
  s.clock_control = 1;
  s.clock = &fake;
  s.seccomp = want_seccomp();
  ck_assert_int_eq(ntsntp_privsep_start(&s, &ps, err, sizeof(err)), 0);
  dup2(saved, 2);
  close(p[1]);
  proc_field(ntsntp_privsep_pid(ps), "CapEff", v, sizeof(v));
  ck_assert_str_eq(v, "0000000002000000"); /* CAP_SYS_TIME alone */
  ntsntp_privsep_clock_ops(ps, &ops);
  ck_assert_int_eq(ops.read(ops.user, &ts), 0);
  ck_assert_int_eq(ops.slew(ops.user, 0.25, -3.5), 0);
  ck_assert_int_eq(ops.step(ops.user, -1.5), 0);
  ck_assert_int_eq(ops.set_rtc(ops.user), 0);
  ck_assert_int_eq(ops.set_leap(ops.user, 1), 0);
  ck_assert_int_eq(ops.set_leap(ops.user, 0), 0);
  errno = 0;
  ck_assert_int_eq(ops.step(ops.user, 2e6), -1);
  ck_assert_int_eq(errno, EINVAL); /* the helper's errno comes back */
  ntsntp_privsep_del(ps);
  n = read(p[0], buf, sizeof(buf) - 1);
  ck_assert_int_gt(n, 0);
  buf[n] = 0;
  ck_assert_str_eq(buf,
                   "slew 0.250 -3.500\nstep -1.500\nrtc\nleap 1\nleap 0\n");
  close(p[0]);

  /* Without clock control the helper refuses, and keeps no capability. */
  s.clock_control = 0;
  ck_assert_int_eq(ntsntp_privsep_start(&s, &ps, err, sizeof(err)), 0);
  proc_field(ntsntp_privsep_pid(ps), "CapEff", v, sizeof(v));
  ck_assert_str_eq(v, "0000000000000000");
  ntsntp_privsep_clock_ops(ps, &ops);
  ck_assert_int_eq(ops.slew(ops.user, 0.25, 0), -1);
  ck_assert_int_eq(errno, EPERM);
  ntsntp_privsep_del(ps);
}
END_TEST

START_TEST(test_bad_settings) {
  ntsntp_privsep_settings s;
  ntsntp_privsep *ps = NULL;
  char err[512];
  ntsntp_privsep_settings_default(&s);
  s.user = "no-such-user-ntsntp";
  ck_assert_int_eq(ntsntp_privsep_start(&s, &ps, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_msg(strstr(err, "useradd"), "%s", err);
  ck_assert_ptr_null(ps);
  s.user = NULL;
  s.n_files = 1;
  s.files = NULL;
  ck_assert_int_eq(ntsntp_privsep_start(&s, &ps, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_privsep_read(NULL, NULL, NULL, NULL, NULL, err,
                                       sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

static Suite *privsep_suite(void) {
  Suite *s = suite_create("privsep");
  TCase *tc = tcase_create("helper");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_read_root_only);
  tcase_add_test(tc, test_untrusted_link);
  tcase_add_test(tc, test_certbot_layout);
  tcase_add_test(tc, test_users_own_file);
  tcase_add_test(tc, test_not_listed);
  tcase_add_test(tc, test_fifo_and_size);
  tcase_add_test(tc, test_relative);
  tcase_add_test(tc, test_helper_state);
  tcase_add_test(tc, test_helper_follows_server);
  tcase_add_test(tc, test_helper_gone);
  tcase_add_test(tc, test_clock_ops);
  tcase_add_test(tc, test_bad_settings);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(privsep_suite()); }
