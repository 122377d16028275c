/*
 * libntsntp runtime: seccomp-bpf allowlists (sandbox.h).
 *
 * The lists name system calls, never numbers: libseccomp resolves them for
 * the architecture the process runs as, and a name that does not exist
 * there (open and poll on aarch64) is skipped.  They were derived from
 * strace -f of the integration tests and from the code paths ntsd takes
 * after start-up (see docs/threat-model.md, "System call filter").
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/pps.h>       /* refclock: PPS_FETCH */
#include <linux/ptp_clock.h> /* refclock: PTP_SYS_OFFSET* */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "errtext.h"
#include "ntsntp/sandbox.h"

#ifdef NTSNTP_HAVE_SECCOMP
#include <linux/netlink.h>
#include <sched.h>
#include <seccomp.h>
#include <termios.h>

#include "sanitizer.h"

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* si_code of a filter's SIGSYS (linux/signal.h) */
#endif
/* 128 + SIGSYS, as a shell reports a process that SIGSYS killed. */
#define EXIT_FORBIDDEN 159
/* Syscall numbers named in the SIGSYS handler's table (x86_64 and aarch64
 * stay below 512). */
#define N_NAMES 512
#define NAME_LEN 32

enum {
  ANY,         /* any arguments */
  CLONE_THR,   /* clone: threads only (CLONE_THREAD, no namespaces) */
  CLONE3_NO,   /* clone3: fails with ENOSYS, glibc then uses clone */
  SOCK_DOMAIN, /* socket: AF_INET, AF_INET6, AF_UNIX, AF_NETLINK route */
  IOCTL_FD,    /* ioctl: descriptor flags and byte counts only */
  KILL_KILL,   /* kill: SIGKILL only (stopping the privileged helper) */
  PRCTL_NAME,  /* prctl: PR_SET_NAME, PR_GET_NAME only (thread names) */
  OPEN_RDONLY, /* open/openat: O_RDONLY (or O_PATH), no create/truncate */
  NO_EXEC      /* mmap/mprotect: never PROT_EXEC */
};

typedef struct rule {
  const char *name;
  int kind;
} rule;

/* The tables are grouped by purpose, several names a line. */
/* clang-format off */
/* Every thread of ntsd after start-up. */
static const rule server_rules[] = {
    /* descriptors */
    {"read", ANY}, {"readv", ANY}, {"pread64", ANY}, {"write", ANY},
    {"writev", ANY}, {"pwrite64", ANY}, {"close", ANY}, {"lseek", ANY},
    {"fcntl", ANY}, {"dup", ANY}, {"dup3", ANY}, {"pipe2", ANY},
    {"eventfd2", ANY}, {"ioctl", IOCTL_FD},
    /* libuv's event loops; the resolver's and the helper client's poll */
    {"epoll_create1", ANY}, {"epoll_ctl", ANY}, {"epoll_wait", ANY},
    {"epoll_pwait", ANY}, {"epoll_pwait2", ANY}, {"poll", ANY}, {"ppoll", ANY},
    /* NTP, NTS-KE, upstream queries, control socket, /metrics, DNS and the
     * resolver's netlink query (AI_ADDRCONFIG) */
    {"socket", SOCK_DOMAIN}, {"bind", ANY}, {"connect", ANY}, {"accept", ANY},
    {"accept4", ANY}, {"getsockname", ANY}, {"getpeername", ANY},
    {"setsockopt", ANY}, {"getsockopt", ANY}, {"recvfrom", ANY},
    {"recvmsg", ANY}, {"recvmmsg", ANY}, {"sendto", ANY}, {"sendmsg", ANY},
    {"sendmmsg", ANY}, {"shutdown", ANY},
    /* files: certificates, configuration, /etc/hosts and resolv.conf
     * (read); key ring and drift file written in STATE_DIR (a temporary
     * file, fsync, rename); the control socket removed at exit */
    {"open", ANY}, {"openat", ANY}, {"stat", ANY}, {"fstat", ANY},
    {"lstat", ANY}, {"newfstatat", ANY}, {"statx", ANY}, {"readlink", ANY},
    {"readlinkat", ANY}, {"access", ANY}, {"faccessat", ANY},
    {"faccessat2", ANY}, {"fsync", ANY}, {"fdatasync", ANY}, {"fchmod", ANY},
    {"rename", ANY}, {"renameat", ANY}, {"renameat2", ANY}, {"unlink", ANY},
    {"unlinkat", ANY},
    /* memory (malloc, thread stacks, dlopen of NSS modules) */
    {"brk", ANY}, {"mmap", ANY}, {"munmap", ANY}, {"mremap", ANY},
    {"mprotect", ANY}, {"madvise", ANY},
    /* refclock: SHM segments (attached at start) detached at exit */
    {"shmdt", ANY},
    /* threads (never processes) */
    {"clone", CLONE_THR}, {"clone3", CLONE3_NO}, {"set_robust_list", ANY},
    {"rseq", ANY}, {"futex", ANY}, {"gettid", ANY}, {"sched_yield", ANY},
    {"sched_getaffinity", ANY}, {"prlimit64", ANY}, {"getrlimit", ANY},
    {"exit", ANY}, {"exit_group", ANY},
    /* libuv >= 1.48 names its thread pool's threads as it starts them */
    {"prctl", PRCTL_NAME},
    /* signals (libuv's signal pipe, glibc's set*id broadcast) */
    {"rt_sigaction", ANY}, {"rt_sigprocmask", ANY}, {"rt_sigreturn", ANY},
    {"restart_syscall", ANY}, {"tgkill", ANY}, {"kill", KILL_KILL},
    {"getpid", ANY}, {"getppid", ANY},
    /* reaping the privileged helper at exit */
    {"wait4", ANY}, {"waitid", ANY},
    /* time and randomness */
    {"clock_gettime", ANY}, {"clock_getres", ANY}, {"gettimeofday", ANY},
    {"time", ANY}, {"clock_nanosleep", ANY}, {"nanosleep", ANY},
    {"getrandom", ANY},
    /* read-only facts: glibc and GnuTLS ask (qsort: sysinfo) */
    {"getuid", ANY}, {"geteuid", ANY}, {"getgid", ANY}, {"getegid", ANY},
    {"uname", ANY}, {"sysinfo", ANY},
};

/* The privileged helper: what it reads it opens read-only; it answers on
 * the socket it was given. */
static const rule privsep_rules[] = {
    {"read", ANY}, {"write", ANY}, {"sendto", ANY}, {"recvfrom", ANY},
    {"sendmsg", ANY}, {"recvmsg", ANY}, {"poll", ANY}, {"ppoll", ANY},
    {"close", ANY}, {"open", OPEN_RDONLY}, {"openat", OPEN_RDONLY},
    {"fstat", ANY}, {"stat", ANY}, {"lstat", ANY}, {"newfstatat", ANY},
    {"statx", ANY}, {"readlink", ANY}, {"readlinkat", ANY}, {"fcntl", ANY},
    {"lseek", ANY}, {"brk", ANY}, {"mmap", NO_EXEC}, {"munmap", ANY},
    {"mremap", ANY}, {"madvise", ANY}, {"rt_sigreturn", ANY},
    {"rt_sigprocmask", ANY}, {"rt_sigaction", ANY}, {"restart_syscall", ANY},
    {"getpid", ANY}, {"getppid", ANY}, {"clock_gettime", ANY}, {"exit", ANY},
    {"exit_group", ANY},
};

static const rule clock_rules[] = {{"adjtimex", ANY}, {"clock_adjtime", ANY}};

#if SANITIZED
static const rule sanitizer_rules[] = {
    /* LeakSanitizer at exit: a tracer task (clone without CLONE_THREAD)
     * lists /proc/PID/task and ptrace-attaches to every thread */
    {"clone", ANY}, {"prctl", ANY}, {"ptrace", ANY}, {"wait4", ANY},
    {"waitid", ANY}, {"getdents", ANY}, {"getdents64", ANY},
    {"sigaltstack", ANY}, {"sched_yield", ANY}, {"gettid", ANY},
    {"getppid", ANY}, {"futex", ANY}, {"kill", ANY}, {"tgkill", ANY},
    {"process_vm_readv", ANY}, {"readlink", ANY}, {"readlinkat", ANY},
    /* a report starts llvm-symbolizer */
    {"fork", ANY}, {"vfork", ANY}, {"execve", ANY}, {"pipe2", ANY},
    {"dup2", ANY}, {"dup3", ANY}, {"nanosleep", ANY},
    {"clock_nanosleep", ANY}, {"setrlimit", ANY}, {"prlimit64", ANY},
    {"getrlimit", ANY}, {"write", ANY}, {"writev", ANY},
};
#endif
/* clang-format on */

/* Read by the SIGSYS handler: filled before the filter is loaded. */
static char names[N_NAMES][NAME_LEN];
static uint32_t native_arch;
static int also_stdout;
static int entered;

/* ------------------------------------------------------------------ */
/* The SIGSYS handler: async-signal-safe, no allocation, no locks      */
/* ------------------------------------------------------------------ */

static size_t put_str(char *p, const char *s) {
  size_t n = 0;
  while (s[n]) {
    p[n] = s[n];
    n++;
  }
  return n;
}

static size_t put_num(char *p, unsigned long v, int width) {
  char tmp[24];
  size_t n = 0, i;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v || (int)n < width);
  for (i = 0; i < n; i++)
    p[i] = tmp[n - 1 - i];
  return n;
}

/* "YYYY-MM-DDTHH:MM:SSZ" like ntsd's log lines, without gmtime_r (which
 * may take a lock); days to civil date after H. Hinnant. */
static size_t put_utc(char *p, int64_t t) {
  int64_t days = t / 86400, secs = t % 86400, era, doe, yoe, y, doy, mp, d, m;
  size_t n = 0;
  if (secs < 0) {
    secs += 86400;
    days--;
  }
  days += 719468;
  era = (days >= 0 ? days : days - 146096) / 146097;
  doe = days - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = yoe + era * 400;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  n += put_num(p + n, (unsigned long)(y < 0 ? 0 : y), 4);
  p[n++] = '-';
  n += put_num(p + n, (unsigned long)m, 2);
  p[n++] = '-';
  n += put_num(p + n, (unsigned long)d, 2);
  p[n++] = 'T';
  n += put_num(p + n, (unsigned long)(secs / 3600), 2);
  p[n++] = ':';
  n += put_num(p + n, (unsigned long)(secs / 60 % 60), 2);
  p[n++] = ':';
  n += put_num(p + n, (unsigned long)(secs % 60), 2);
  p[n++] = 'Z';
  return n;
}

static void write_all(int fd, const char *p, size_t len) {
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    p += n;
    len -= (size_t)n;
  }
}

static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
  char line[256];
  struct timespec ts;
  size_t n;
  (void)sig;
  (void)ctx;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    ts.tv_sec = 0;
  n = put_utc(line, (int64_t)ts.tv_sec);
  if (si->si_code == SYS_SECCOMP) {
    int nr = si->si_syscall;
    n += put_str(line + n, " Fatal error : seccomp: forbidden system call ");
    if (nr < 0) {
      line[n++] = '-';
      n += put_num(line + n, (unsigned long)-(long)nr, 1);
    } else {
      n += put_num(line + n, (unsigned long)nr, 1);
    }
    line[n++] = ' ';
    line[n++] = '(';
    if ((uint32_t)si->si_arch != native_arch)
      n += put_str(line + n, "another architecture's ABI");
    else if (nr >= 0 && nr < N_NAMES && names[nr][0])
      n += put_str(line + n, names[nr]);
    else
      n += put_str(line + n, "unknown");
    n += put_str(line + n, "); restart with SECCOMP=no to debug and "
                           "report it\n");
  } else {
    n += put_str(line + n, " Fatal error : SIGSYS\n");
  }
  write_all(STDERR_FILENO, line, n);
  if (also_stdout)
    write_all(STDOUT_FILENO, line, n);
  syscall(SYS_exit_group, EXIT_FORBIDDEN);
  for (;;)
    ;
}

/* ------------------------------------------------------------------ */
/* Building the filter                                                 */
/* ------------------------------------------------------------------ */

static int add(scmp_filter_ctx ctx, int nr, uint32_t action, unsigned argc,
               const struct scmp_arg_cmp *args) {
  int rv = seccomp_rule_add_array(ctx, action, nr, argc, args);
  if (rv < 0) {
    errno = -rv;
    return -1;
  }
  return 0;
}

/* Adds |r|; |*count| grows by one for each name allowed (once per name). */
static int add_rule(scmp_filter_ctx ctx, const rule *r, unsigned *count,
                    char *errbuf, size_t errlen) {
  int nr = seccomp_syscall_resolve_name(r->name), rv = 0;
  uint32_t A = SCMP_ACT_ALLOW;
  if (nr < 0) /* unknown to this libseccomp, or absent on this arch */
    return 0;
  switch (r->kind) {
  case ANY:
    rv = add(ctx, nr, A, 0, NULL);
    break;
  case CLONE_THR: {
    const uint64_t ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                        CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                        CLONE_NEWNET;
    struct scmp_arg_cmp a[] = {
        SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | ns, CLONE_THREAD)};
    rv = add(ctx, nr, A, 1, a);
    break;
  }
  case CLONE3_NO:
    /* glibc falls back to clone on ENOSYS, whose flags a filter can see
     * (clone3's are behind a pointer): what Docker and systemd do too. */
    rv = add(ctx, nr, SCMP_ACT_ERRNO(ENOSYS), 0, NULL);
    if (rv == 0)
      return 0; /* not counted: refused */
    break;
  case SOCK_DOMAIN: { /* (a trailing 0: the unused second datum) */
    static const int doms[] = {AF_INET, AF_INET6, AF_UNIX};
    struct scmp_arg_cmp nl[] = {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK, 0),
                                SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE, 0)};
    size_t i;
    for (i = 0; i < sizeof(doms) / sizeof(doms[0]) && rv == 0; i++) {
      struct scmp_arg_cmp a[] = {
          SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)doms[i], 0)};
      rv = add(ctx, nr, A, 1, a);
    }
    if (rv == 0)
      rv = add(ctx, nr, A, 2, nl);
    break;
  }
  case IOCTL_FD: {
    /* libuv: FIONBIO, FIOCLEX; glibc's resolver: FIONREAD; stdio's
     * isatty: TCGETS; refclocks: the last PPS edge and PHC readings
     * (devices opened and set up before the filter). */
    static const unsigned long reqs[] = {
        FIONBIO, FIOCLEX, FIONCLEX, FIONREAD, TCGETS, PPS_FETCH,
        PTP_SYS_OFFSET, PTP_SYS_OFFSET_PRECISE, PTP_SYS_OFFSET_EXTENDED};
    size_t i;
    for (i = 0; i < sizeof(reqs) / sizeof(reqs[0]) && rv == 0; i++) {
      struct scmp_arg_cmp a[] = {SCMP_A1(SCMP_CMP_EQ, reqs[i], 0)};
      rv = add(ctx, nr, A, 1, a);
    }
    break;
  }
  case KILL_KILL: {
    struct scmp_arg_cmp a[] = {SCMP_A1(SCMP_CMP_EQ, SIGKILL, 0)};
    rv = add(ctx, nr, A, 1, a);
    break;
  }
  case PRCTL_NAME: {
    struct scmp_arg_cmp set[] = {SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME, 0)};
    struct scmp_arg_cmp get[] = {SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME, 0)};
    rv = add(ctx, nr, A, 1, set);
    if (rv == 0)
      rv = add(ctx, nr, A, 1, get);
    break;
  }
  case OPEN_RDONLY: {
    /* O_TMPFILE is a bit of its own plus O_DIRECTORY (glibc's __O_TMPFILE
     * has both); O_DIRECTORY alone is a read-only open of a directory. */
    const uint64_t bad =
        O_ACCMODE | O_CREAT | O_TRUNC | (O_TMPFILE & ~O_DIRECTORY);
    struct scmp_arg_cmp a1[] = {SCMP_A1(SCMP_CMP_MASKED_EQ, bad, 0)};
    struct scmp_arg_cmp a2[] = {SCMP_A2(SCMP_CMP_MASKED_EQ, bad, 0)};
    rv = add(ctx, nr, A, 1, strcmp(r->name, "open") ? a2 : a1);
    break;
  }
  case NO_EXEC: {
    struct scmp_arg_cmp a[] = {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)};
    rv = add(ctx, nr, A, 1, a);
    break;
  }
  }
  if (rv) {
    ntsntp__errf(errbuf, errlen, "seccomp: cannot add the rule for %s: %s",
                 r->name, strerror(errno));
    return -1;
  }
  (*count)++;
  return 0;
}

static int add_rules(scmp_filter_ctx ctx, const rule *r, size_t n,
                     unsigned *count, char *errbuf, size_t errlen) {
  size_t i;
  for (i = 0; i < n; i++)
    if (add_rule(ctx, &r[i], count, errbuf, errlen))
      return -1;
  return 0;
}

/* The handler's table: seccomp_syscall_resolve_num_arch allocates, so it
 * cannot run in the handler. */
static void fill_names(void) {
  int nr;
  native_arch = seccomp_arch_native();
  for (nr = 0; nr < N_NAMES; nr++) {
    char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    names[nr][0] = 0;
    if (s)
      snprintf(names[nr], NAME_LEN, "%s", s);
    free(s);
  }
}

/* The line goes to standard output too (ntsd's log) unless that is the
 * same file as standard error. */
static void find_log_fds(void) {
  struct stat o, e;
  also_stdout = fstat(STDOUT_FILENO, &o) == 0 &&
                (fstat(STDERR_FILENO, &e) != 0 || o.st_dev != e.st_dev ||
                 o.st_ino != e.st_ino);
}

int ntsntp_sandbox_available(void) {
  return 1;
}

int ntsntp_sandbox_enter(ntsntp_sandbox_role role, unsigned flags, char *errbuf,
                         size_t errlen) {
  scmp_filter_ctx ctx;
  struct sigaction sa;
  unsigned count = 0;
  int rv;

  if ((role != NTSNTP_SANDBOX_SERVER && role != NTSNTP_SANDBOX_PRIVSEP) ||
      (flags & ~NTSNTP_SANDBOX_CLOCK)) {
    ntsntp__errf(errbuf, errlen, "seccomp: unknown role %d or flags 0x%x",
                 (int)role, flags);
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (__atomic_load_n(&entered, __ATOMIC_SEQ_CST)) {
    ntsntp__errf(errbuf, errlen,
                 "seccomp: this process has its filter "
                 "already");
    return NTSNTP_ERR_STATE;
  }
  ctx = seccomp_init(SCMP_ACT_TRAP);
  if (!ctx) {
    ntsntp__errf(errbuf, errlen, "seccomp: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  rv = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
  if (rv == 0)
    rv = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
  if (rv == 0)
    rv = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
  /* A binary search over the syscall numbers: each NTP batch's recvmmsg
   * and sendmmsg pass a handful of comparisons, not a list of ~100. */
  if (rv == 0)
    rv = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rv < 0) {
    /* libseccomp probes the seccomp() system call: missing on Linux
     * before 3.17, and valgrind does not know it. */
    ntsntp__errf(errbuf, errlen,
                 "seccomp: cannot filter every thread "
                 "(seccomp() with TSYNC): %s; Linux >= 3.17 has it, valgrind "
                 "does not; fix: run without the filter (ntsd: SECCOMP=no)",
                 strerror(-rv));
    seccomp_release(ctx);
    errno = -rv;
    return NTSNTP_ERR_IO;
  }
  if (role == NTSNTP_SANDBOX_SERVER)
    rv = add_rules(ctx, server_rules,
                   sizeof(server_rules) / sizeof(server_rules[0]), &count,
                   errbuf, errlen);
  else
    rv = add_rules(ctx, privsep_rules,
                   sizeof(privsep_rules) / sizeof(privsep_rules[0]), &count,
                   errbuf, errlen);
  if (rv == 0 && (flags & NTSNTP_SANDBOX_CLOCK))
    rv = add_rules(ctx, clock_rules,
                   sizeof(clock_rules) / sizeof(clock_rules[0]), &count, errbuf,
                   errlen);
#if SANITIZED
  if (rv == 0) {
    unsigned extra = 0; /* mostly names allowed above already */
    rv = add_rules(ctx, sanitizer_rules,
                   sizeof(sanitizer_rules) / sizeof(sanitizer_rules[0]), &extra,
                   errbuf, errlen);
  }
#endif
  if (rv) {
    int e = errno;
    seccomp_release(ctx);
    errno = e;
    return e == ENOMEM ? NTSNTP_ERR_NOMEM : NTSNTP_ERR_IO;
  }

  fill_names();
  find_log_fds();
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigfillset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, NULL) < 0) {
    int e = errno;
    ntsntp__errf(errbuf, errlen, "seccomp: cannot handle SIGSYS: %s",
                 strerror(e));
    seccomp_release(ctx);
    errno = e;
    return NTSNTP_ERR_IO;
  }

  rv = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rv < 0) {
    ntsntp__errf(errbuf, errlen,
                 "seccomp: the kernel refused the filter: "
                 "%s (Linux needs CONFIG_SECCOMP_FILTER; a container "
                 "runtime may forbid seccomp()); fix: allow it, or run "
                 "without the filter (ntsd: SECCOMP=no)",
                 strerror(-rv));
    errno = -rv;
    return NTSNTP_ERR_IO;
  }
  __atomic_store_n(&entered, 1, __ATOMIC_SEQ_CST);
  ntsntp__errf(errbuf, errlen,
               "seccomp filter on (%u system calls allowed%s"
               ")",
               count, SANITIZED ? ", more for the sanitizer runtime" : "");
  return 0;
}

int ntsntp_sandbox_prepare(char *errbuf, size_t errlen) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  int rv;
  if (!ctx) {
    ntsntp__errf(errbuf, errlen, "seccomp: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  /* libuv >= 1.45 batches epoll_ctl through an io_uring when it can make
   * one; failing io_uring_setup makes it use epoll_ctl itself (as it does
   * on Android, for the same reason). */
  rv = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(io_uring_setup),
                        0);
  if (rv == 0)
    rv = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
  if (rv == 0)
    rv = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rv < 0) {
    ntsntp__errf(errbuf, errlen, "seccomp: cannot make io_uring unavailable: "
                 "%s; fix: run without the filter (ntsd: SECCOMP=no)",
                 strerror(-rv));
    errno = -rv;
    return NTSNTP_ERR_IO;
  }
  return 0;
}

#else /* !NTSNTP_HAVE_SECCOMP */

int ntsntp_sandbox_available(void) {
  return 0;
}

int ntsntp_sandbox_prepare(char *errbuf, size_t errlen) {
  ntsntp__errf(errbuf, errlen,
               "no seccomp filter: libntsntp was built "
               "without libseccomp (install libseccomp-dev and rebuild)");
  return NTSNTP_ERR_UNSUPPORTED;
}

int ntsntp_sandbox_enter(ntsntp_sandbox_role role, unsigned flags, char *errbuf,
                         size_t errlen) {
  (void)role;
  (void)flags;
  ntsntp__errf(errbuf, errlen,
               "no seccomp filter: libntsntp was built "
               "without libseccomp (install libseccomp-dev and rebuild)");
  return NTSNTP_ERR_UNSUPPORTED;
}

#endif
