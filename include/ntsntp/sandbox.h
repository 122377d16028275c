/*
 * libntsntp runtime: seccomp-bpf confinement (Linux, libseccomp).
 *
 * A process that has finished starting up calls ntsntp_sandbox_enter()
 * once: from then on every thread of it, and every thread it starts, may
 * make only the system calls its role needs.  The lists are allowlists:
 * a call that is not on them (execve, ptrace, fork, mount, bpf, keyctl,
 * io_uring, setuid ...) stops the whole process with one log line that
 * names the call, instead of running it.
 *
 * The filter is built for the architecture the process runs as, by name
 * (libseccomp knows the numbers); calls of another ABI (32-bit x86 calls
 * from an x86_64 process) are forbidden.
 */
#ifndef NTSNTP_SANDBOX_H
#define NTSNTP_SANDBOX_H

#include <stddef.h>

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ntsntp_sandbox_role {
  /* The network-facing server (ntsd), all its threads: its event loops and
   * sockets, name resolution (libuv's thread pool, getaddrinfo), the key
   * and drift files in its state directory, new threads (never new
   * processes). */
  NTSNTP_SANDBOX_SERVER,
  /* The privileged helper (privsep.h): read-only opens, reading and
   * writing descriptors it already holds (its socket), memory; nothing
   * else.  No socket, no connect, no open for writing, no executable
   * memory. */
  NTSNTP_SANDBOX_PRIVSEP
} ntsntp_sandbox_role;

/* The process may adjust the system clock: adjtimex and clock_adjtime
 * (any modes).  Without it neither call is allowed, not even to read. */
#define NTSNTP_SANDBOX_CLOCK 0x1u

/* 1 when the library was built with libseccomp, else 0. */
NTSNTP_EXTERN int ntsntp_sandbox_available(void);

/*
 * Call first, before any libuv loop exists (uv_default_loop, uv_loop_init),
 * when the process will enter the filter later: makes io_uring unavailable
 * to it (io_uring_setup fails with ENOSYS), so libuv uses epoll alone.
 * libuv >= 1.45 (Debian 13) otherwise keeps an io_uring open for epoll_ctl,
 * and the filter would have to allow io_uring_enter, through which code in
 * the process could do any operation the ring knows without the filter
 * seeing it.  Sets no_new_privs.  Processes forked later inherit it.
 * Errors: UNSUPPORTED (built without libseccomp), NOMEM, IO (no
 * seccomp(): under valgrind, say; |errbuf| says why).
 */
NTSNTP_EXTERN int ntsntp_sandbox_prepare(char *errbuf, size_t errlen);

/*
 * Loads the allowlist of |role| (plus what |flags| add) for every thread
 * of the calling process (SECCOMP_FILTER_FLAG_TSYNC) and sets
 * no_new_privs.  Call it once, when start-up is over: after binding
 * sockets and dropping privileges.  Threads started later inherit it.
 *
 * A forbidden system call: the thread's SIGSYS handler writes one line,
 * "<UTC time> Fatal error : seccomp: forbidden system call NR (NAME); ...",
 * to standard error, and to standard output too when that is another file
 * (ntsd logs there), then ends the whole process with exit status 159
 * (128 + SIGSYS).  The process never continues past the call.  Do not
 * replace the SIGSYS handler afterwards.  A thread that has SIGSYS blocked
 * (glibc blocks every signal while it creates a thread) is killed by the
 * kernel with SIGSYS instead, without the line.
 *
 * On success |errbuf| gets a line to log: how many system calls the filter
 * allows.  On failure it says why.
 *
 * Errors: UNSUPPORTED (built without libseccomp: |errbuf| says so; the
 * process is unchanged), INVALID_ARG (unknown |role| or |flags|), STATE
 * (called before in this process: the first filter stays), NOMEM, IO (no
 * seccomp() with TSYNC: Linux before 3.17, or under valgrind; or the kernel
 * refused the filter, e.g. without CONFIG_SECCOMP_FILTER; errno is kept).
 * After any error the process runs without a filter (ntsd stops, but
 * only warns when built without libseccomp).
 */
NTSNTP_EXTERN int ntsntp_sandbox_enter(ntsntp_sandbox_role role, unsigned flags,
                                       char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_SANDBOX_H */
