/*
 * sandbox: the seccomp allowlists.  Every check runs in a child process of
 * its own (also with CK_FORK=no): the child enters the filter, makes one
 * call, and the parent reads how it ended and what it wrote to standard
 * error.  The clock is only ever read (adjtimex with modes 0).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "ntsntp/sandbox.h"
#include "testutil.h"

/* The library lets a sanitizer runtime fork, exec and ptrace: those
 * calls are checked only in builds without one. */
#include "sanitizer.h"

#define EXIT_FORBIDDEN 159 /* sandbox.h: 128 + SIGSYS */

typedef struct child {
  int status;     /* waitpid's */
  char err[4096]; /* its standard error */
  char out[4096]; /* its standard output (separate_stdout) */
} child;

/* valgrind has no seccomp() system call: the filter cannot load there. */
static int under_valgrind(void) {
  const char *p = getenv("LD_PRELOAD");
  return p && strstr(p, "vgpreload");
}

static void read_until_eof(int fd, char *buf, size_t len) {
  size_t got = 0;
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    ssize_t n;
    ck_assert_msg(poll(&pfd, 1, 10000) == 1, "child silent for 10 s");
    n = read(fd, buf + got, len - 1 - got);
    if (n <= 0 || got + (size_t)n >= len - 1) {
      if (n > 0)
        got += (size_t)n;
      break;
    }
    got += (size_t)n;
  }
  buf[got] = 0;
}

/* Runs |fn| in a child whose standard error (and with |separate_stdout|
 * its standard output; else fd 1 is the same pipe as fd 2) the parent
 * reads.  |fn| returns the child's exit status. */
static void run(child *c, int (*fn)(void *), void *arg, int separate_stdout) {
  int e[2], o[2];
  pid_t pid;
  memset(c, 0, sizeof(*c));
  ck_assert_int_eq(pipe(e), 0);
  ck_assert_int_eq(pipe(o), 0);
  fflush(NULL);
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    dup2(e[1], 2);
    dup2(separate_stdout ? o[1] : e[1], 1);
    close(e[0]);
    close(e[1]);
    close(o[0]);
    close(o[1]);
    _exit(fn(arg));
  }
  close(e[1]);
  close(o[1]);
  read_until_eof(e[0], c->err, sizeof(c->err));
  if (separate_stdout)
    read_until_eof(o[0], c->out, sizeof(c->out));
  close(e[0]);
  close(o[0]);
  ck_assert_int_eq(waitpid(pid, &c->status, 0), pid);
}

static int exited(const child *c, int code) {
  return WIFEXITED(c->status) && WEXITSTATUS(c->status) == code;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  while ((hay = strstr(hay, needle)) != NULL) {
    n++;
    hay++;
  }
  return n;
}

/* The child was stopped at the call |nr| |name|, with the log line. */
static void assert_killed_at(const child *c, long nr, const char *name) {
  char want[128];
  snprintf(want, sizeof(want),
           " Fatal error : seccomp: forbidden system call %ld (%s); restart "
           "with SECCOMP=no to debug and report it\n",
           nr, name);
  ck_assert_msg(exited(c, EXIT_FORBIDDEN),
                "want exit %d at %s, got status 0x%x; stderr: %s",
                EXIT_FORBIDDEN, name, c->status, c->err);
  ck_assert_msg(strstr(c->err, want), "no line \"%s\" in: %s", want, c->err);
  ck_assert_int_eq(count(c->err, "Fatal error"), 1);
}

static int enter(ntsntp_sandbox_role role, unsigned flags) {
  char err[256];
  int rv = ntsntp_sandbox_enter(role, flags, err, sizeof(err));
  if (rv)
    fprintf(stderr, "enter: %d %s\n", rv, err);
  return rv;
}

/* "Seccomp:\t2" and "NoNewPrivs:\t1" in |path| (a /proc status file). */
static int filtered(const char *path) {
  char buf[4096];
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  return strstr(buf, "\nSeccomp:\t2\n") && strstr(buf, "\nNoNewPrivs:\t1\n");
}

/* Both clock calls, modes 0: they read the kernel's state, never set it
 * (glibc's adjtimex is clock_adjtime on CLOCK_REALTIME). */
static int read_clock(void) {
  struct timex tx;
  memset(&tx, 0, sizeof(tx));
  if (syscall(SYS_adjtimex, &tx) < 0)
    return -1;
  memset(&tx, 0, sizeof(tx));
  return syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */

static int ready[2], done[2];
static volatile pid_t thread_tid;

static void *waiting_thread(void *arg) {
  char b;
  (void)arg;
  thread_tid = (pid_t)syscall(SYS_gettid);
  if (write(ready[1], "r", 1) != 1)
    return NULL;
  if (read(done[0], &b, 1) != 1) /* until the main thread is done */
    return NULL;
  return NULL;
}

/* A thread started before the filter has it too (TSYNC). */
static int c_server_status(void *arg) {
  pthread_t t;
  char path[64], b;
  int ok;
  (void)arg;
  if (pipe(ready) || pipe(done) ||
      pthread_create(&t, NULL, waiting_thread, NULL))
    return 2;
  if (read(ready[0], &b, 1) != 1)
    return 3;
  if (filtered("/proc/self/status"))
    return 4; /* not yet */
  if (enter(NTSNTP_SANDBOX_SERVER, 0))
    return 5;
  snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)thread_tid);
  ok = filtered("/proc/self/status") && filtered(path);
  if (write(done[1], "x", 1) != 1 || pthread_join(t, NULL))
    return 6;
  return ok ? 0 : 7;
}

START_TEST(test_server_status) {
  child c;
  run(&c, c_server_status, NULL, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
}
END_TEST

static void *nop_thread(void *arg) {
  return arg;
}

/* What ntsd does after start-up keeps working. */
static int c_server_allowed(void *arg) {
  char dir[] = "/tmp/ntsntp-sandbox.XXXXXX", tmp[64], dst[64], buf[16];
  struct timespec ts;
  pthread_t t;
  int fd, s;
  (void)arg;
  if (!mkdtemp(dir))
    return 2;
  snprintf(tmp, sizeof(tmp), "%s/k.tmp", dir);
  snprintf(dst, sizeof(dst), "%s/k", dir);
  if (enter(NTSNTP_SANDBOX_SERVER, 0))
    return 3;
  /* a key file: create, fchmod, fsync, rename, unlink */
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, "k", 1) != 1 || fchmod(fd, 0600) || fsync(fd) ||
      close(fd) || rename(tmp, dst) || unlink(dst))
    return 4;
  /* sockets of the four allowed kinds */
  if ((s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 || close(s))
    return 5;
  if ((s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || close(s))
    return 6;
  if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || close(s))
    return 7;
  s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0 || close(s))
    return 8;
  /* a new thread (clone3 fails with ENOSYS, glibc falls back to clone) */
  if (pthread_create(&t, NULL, nop_thread, NULL) || pthread_join(t, NULL))
    return 9;
  if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
    return 10;
  if (clock_gettime(CLOCK_REALTIME, &ts) || getpid() <= 0 ||
      getrandom(&ts, sizeof(ts), 0) != (ssize_t)sizeof(ts))
    return 11;
  /* libuv >= 1.48 names its pool threads */
  if (prctl(PR_SET_NAME, "sandbox-test") || prctl(PR_GET_NAME, buf))
    return 12;
  return 0;
}

START_TEST(test_server_allowed) {
  child c;
  run(&c, c_server_allowed, NULL, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
  ck_assert_ptr_null(strstr(c.err, "Fatal"));
}
END_TEST

/* Forbidden calls, one per child: |which| picks it. */
enum {
  F_EXECVE,
  F_FORK,
  F_PTRACE,
  F_PERSONALITY,
  F_PACKET,
  F_NETLINK_OTHER,
  F_ADJTIMEX,
  F_CLOCK_ADJTIME,
  F_IN_THREAD,
  F_KEYCTL,
  F_PRCTL_OTHER
};

static void *forbidden_thread(void *arg) {
  (void)arg;
  syscall(SYS_personality, 0xffffffffUL); /* a query; forbidden all the same */
  return NULL;
}

static int c_forbidden(void *arg) {
  int which = *(int *)arg;
  struct timex tx;
  pthread_t t;
  if (enter(NTSNTP_SANDBOX_SERVER, 0))
    return 2;
  switch (which) {
  case F_EXECVE: {
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    execve("/bin/true", argv, envp);
    break;
  }
  case F_FORK:
    /* The raw call: glibc >= 2.41's fork() blocks every signal around it,
     * and the kernel then kills with a bare SIGSYS, without the line. */
    if (syscall(SYS_clone, (long)SIGCHLD, 0L, NULL, NULL, 0L) == 0)
      _exit(0);
    break;
  case F_PTRACE:
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    break;
  case F_PERSONALITY:
    syscall(SYS_personality, 0xffffffffUL);
    break;
  case F_PACKET:
    socket(AF_PACKET, SOCK_DGRAM, 0);
    break;
  case F_NETLINK_OTHER:
    socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT);
    break;
  case F_ADJTIMEX:
    memset(&tx, 0, sizeof(tx)); /* modes 0: would only read */
    syscall(SYS_adjtimex, &tx);
    break;
  case F_CLOCK_ADJTIME:
    memset(&tx, 0, sizeof(tx));
    syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx);
    break;
  case F_IN_THREAD:
    /* Another thread's forbidden call ends this one too. */
    if (pthread_create(&t, NULL, forbidden_thread, NULL))
      return 3;
    pthread_join(t, NULL);
    sleep(5);
    return 4;
  case F_KEYCTL:
    syscall(SYS_keyctl, 0, 0, 0, 0, 0);
    break;
  case F_PRCTL_OTHER: /* names only: not dumpability, not capabilities */
    prctl(PR_SET_DUMPABLE, 1);
    break;
  }
  return 1; /* the call returned */
}

static void forbidden(int which, long nr, const char *name) {
  child c;
  run(&c, c_forbidden, &which, 0);
  assert_killed_at(&c, nr, name);
}

START_TEST(test_server_forbidden) {
  forbidden(F_PERSONALITY, SYS_personality, "personality");
  forbidden(F_PACKET, SYS_socket, "socket");
  forbidden(F_NETLINK_OTHER, SYS_socket, "socket");
  forbidden(F_ADJTIMEX, SYS_adjtimex, "adjtimex");
  forbidden(F_CLOCK_ADJTIME, SYS_clock_adjtime, "clock_adjtime");
  forbidden(F_IN_THREAD, SYS_personality, "personality");
  forbidden(F_KEYCTL, SYS_keyctl, "keyctl");
  if (!SANITIZED)
    forbidden(F_PRCTL_OTHER, SYS_prctl, "prctl");
  if (!SANITIZED) {
    forbidden(F_EXECVE, SYS_execve, "execve");
    forbidden(F_FORK, SYS_clone, "clone");
    forbidden(F_PTRACE, SYS_ptrace, "ptrace");
  }
}
END_TEST

/* The line: a UTC time as ntsd logs it; once when fd 1 and 2 are one
 * file, on both when they are not. */
START_TEST(test_log_line) {
  int which = F_PERSONALITY;
  struct tm tm;
  time_t now = time(NULL), t;
  child c;
  char *end;

  run(&c, c_forbidden, &which, 1);
  assert_killed_at(&c, SYS_personality, "personality");
  ck_assert_str_eq(c.out, c.err);
  memset(&tm, 0, sizeof(tm));
  end = strptime(c.err, "%Y-%m-%dT%H:%M:%SZ ", &tm);
  ck_assert_ptr_nonnull(end);
  ck_assert_ptr_eq(end, c.err + 21);
  t = timegm(&tm);
  ck_assert_int_le(labs((long)(t - now)), 10);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The helper's role                                                   */

enum {
  P_WRONLY,
  P_RDWR,
  P_CREAT,
  P_TRUNC,
  P_TMPFILE,
  P_SOCKET,
  P_EXEC_MMAP,
  P_ADJTIMEX,
  P_CONNECT
};

static int c_privsep_allowed(void *arg) {
  unsigned flags = *(unsigned *)arg;
  void *p;
  int fd, dir;
  if (enter(NTSNTP_SANDBOX_PRIVSEP, flags))
    return 2;
  if (!filtered("/proc/self/status"))
    return 3;
  dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return 4;
  fd = openat(dir, "proc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || close(fd) || close(dir))
    return 5;
  p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
           0);
  if (p == MAP_FAILED || munmap(p, 65536))
    return 6;
  p = malloc(1 << 20); /* beyond the brk heap's threshold: mmap */
  if (!p)
    return 7;
  free(p);
  if (flags & NTSNTP_SANDBOX_CLOCK && read_clock())
    return 8;
  return 0;
}

START_TEST(test_privsep_allowed) {
  unsigned flags = 0;
  child c;
  run(&c, c_privsep_allowed, &flags, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
  flags = NTSNTP_SANDBOX_CLOCK;
  run(&c, c_privsep_allowed, &flags, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
}
END_TEST

static int c_privsep_forbidden(void *arg) {
  int which = *(int *)arg;
  struct sockaddr_in sin;
  struct timex tx;
  if (enter(NTSNTP_SANDBOX_PRIVSEP, 0))
    return 2;
  switch (which) {
  case P_WRONLY:
    open("/dev/null", O_WRONLY | O_CLOEXEC);
    break;
  case P_RDWR:
    openat(AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC);
    break;
  case P_CREAT: /* O_RDONLY, but it would create (ENOENT if allowed) */
    openat(AT_FDCWD, "/nonexistent-ntsntp/x", O_RDONLY | O_CREAT, 0600);
    break;
  case P_TRUNC:
    openat(AT_FDCWD, "/dev/null", O_RDONLY | O_TRUNC);
    break;
  case P_TMPFILE: /* only the O_TMPFILE bit is wrong (EINVAL if allowed) */
    openat(AT_FDCWD, "/tmp", O_TMPFILE | O_RDONLY, 0600);
    break;
  case P_SOCKET:
    socket(AF_INET, SOCK_DGRAM, 0);
    break;
  case P_EXEC_MMAP:
    mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    break;
  case P_ADJTIMEX:
    memset(&tx, 0, sizeof(tx)); /* modes 0; forbidden without the flag */
    syscall(SYS_adjtimex, &tx);
    break;
  case P_CONNECT: /* on a descriptor it holds (fd 2 is a pipe) */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    connect(2, (struct sockaddr *)&sin, sizeof(sin));
    break;
  }
  return 1;
}

static void privsep_forbidden(int which, long nr, const char *name) {
  child c;
  run(&c, c_privsep_forbidden, &which, 0);
  assert_killed_at(&c, nr, name);
}

START_TEST(test_privsep_forbidden) {
  privsep_forbidden(P_WRONLY, SYS_openat, "openat");
  privsep_forbidden(P_RDWR, SYS_openat, "openat");
  privsep_forbidden(P_CREAT, SYS_openat, "openat");
  privsep_forbidden(P_TRUNC, SYS_openat, "openat");
  privsep_forbidden(P_TMPFILE, SYS_openat, "openat");
  privsep_forbidden(P_SOCKET, SYS_socket, "socket");
  privsep_forbidden(P_EXEC_MMAP, SYS_mmap, "mmap");
  privsep_forbidden(P_ADJTIMEX, SYS_adjtimex, "adjtimex");
  privsep_forbidden(P_CONNECT, SYS_connect, "connect");
}
END_TEST

/* The server may read the clock's state only with the flag (and then
 * could set it: never tried here). */
static int c_server_clock(void *arg) {
  (void)arg;
  if (enter(NTSNTP_SANDBOX_SERVER, NTSNTP_SANDBOX_CLOCK))
    return 2;
  return read_clock() ? 3 : 0;
}

START_TEST(test_server_clock) {
  child c;
  run(&c, c_server_clock, NULL, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
  forbidden(F_ADJTIMEX, SYS_adjtimex, "adjtimex"); /* without the flag */
  forbidden(F_CLOCK_ADJTIME, SYS_clock_adjtime, "clock_adjtime");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors                                                              */

static int c_twice(void *arg) {
  char err[256];
  int rv;
  (void)arg;
  if (enter(NTSNTP_SANDBOX_PRIVSEP, 0))
    return 2;
  rv = ntsntp_sandbox_enter(NTSNTP_SANDBOX_SERVER, 0, err, sizeof(err));
  if (rv != NTSNTP_ERR_STATE || !strstr(err, "already"))
    return 3;
  /* still the first filter: a socket is forbidden */
  socket(AF_INET, SOCK_DGRAM, 0);
  return 4;
}

START_TEST(test_twice) {
  child c;
  run(&c, c_twice, NULL, 0);
  assert_killed_at(&c, SYS_socket, "socket");
}
END_TEST

static int c_bad_args(void *arg) {
  char err[256];
  (void)arg;
  if (ntsntp_sandbox_enter((ntsntp_sandbox_role)7, 0, err, sizeof(err)) !=
      NTSNTP_ERR_INVALID_ARG)
    return 2;
  if (ntsntp_sandbox_enter(NTSNTP_SANDBOX_SERVER, 0x2, err, sizeof(err)) !=
      NTSNTP_ERR_INVALID_ARG)
    return 3;
  if (ntsntp_sandbox_enter(NTSNTP_SANDBOX_SERVER, 0, NULL, 0) != 0)
    return 4; /* no errbuf: still works */
  return filtered("/proc/self/status") ? 0 : 5;
}

/* prepare: io_uring_setup fails with ENOSYS, a libuv loop still works
 * (on epoll alone), and the server filter entered after it lets that loop
 * run: on Debian 13's libuv it would otherwise call io_uring_enter. */
static int c_prepare(void *arg) {
  char err[256];
  uv_loop_t loop;
  uv_timer_t t;
  long rv;
  (void)arg;
  if (ntsntp_sandbox_prepare(err, sizeof(err)))
    return 2;
  errno = 0;
  rv = syscall(SYS_io_uring_setup, 4, calloc(1, 120));
  if (rv != -1 || errno != ENOSYS)
    return 3;
  if (uv_loop_init(&loop) || enter(NTSNTP_SANDBOX_SERVER, 0))
    return 4;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, NULL, 1, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) ? 5 : 0;
}

START_TEST(test_prepare) {
  child c;
  run(&c, c_prepare, NULL, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
}
END_TEST

START_TEST(test_bad_args) {
  child c;
  run(&c, c_bad_args, NULL, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
}
END_TEST

/* Without libseccomp, or under valgrind: an error that says so, and the
 * process goes on unconfined. */
static int c_cannot(void *arg) {
  char err[512];
  int rv = ntsntp_sandbox_enter(NTSNTP_SANDBOX_SERVER, 0, err, sizeof(err));
  (void)arg;
  if (!ntsntp_sandbox_available())
    return rv == NTSNTP_ERR_UNSUPPORTED && strstr(err, "without libseccomp")
               ? 0
               : 2;
  if (rv != NTSNTP_ERR_IO || !strstr(err, "SECCOMP=no"))
    return 3;
  return filtered("/proc/self/status") ? 4 : 0;
}

START_TEST(test_cannot) {
  child c;
  run(&c, c_cannot, NULL, 0);
  ck_assert_msg(exited(&c, 0), "status 0x%x: %s", c.status, c.err);
}
END_TEST

static Suite *sandbox_suite(void) {
  Suite *s = suite_create("sandbox");
  TCase *tc = tcase_create("seccomp");
  tcase_set_timeout(tc, 60);
  if (!ntsntp_sandbox_available() || under_valgrind()) {
    printf("# %s: only the error is checked\n",
           under_valgrind() ? "valgrind" : "built without libseccomp");
    tcase_add_test(tc, test_cannot);
  } else {
    tcase_add_test(tc, test_server_status);
    tcase_add_test(tc, test_server_allowed);
    tcase_add_test(tc, test_server_forbidden);
    tcase_add_test(tc, test_log_line);
    tcase_add_test(tc, test_privsep_allowed);
    tcase_add_test(tc, test_privsep_forbidden);
    tcase_add_test(tc, test_server_clock);
    tcase_add_test(tc, test_twice);
    tcase_add_test(tc, test_bad_args);
    tcase_add_test(tc, test_prepare);
  }
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run(sandbox_suite());
}
