/*
 * refclock-writer: a stand-in for gpsd, writing reference clock samples
 * that announce a known offset, for the refclock tests.
 *
 *   refclock-writer sock PATH [options]   chrony's SOCK datagrams to PATH
 *   refclock-writer shm UNIT [options]    ntpd's SHM segment 0x4e545030+UNIT
 *
 * Options:
 *   --offset S     true - system to announce, seconds (default 0)
 *   --leap N       leap field: 0 none, 1 insert, 2 delete (default 0)
 *   --interval MS  between samples (default 1000)
 *   --count N      samples, then stop (default 0: until SIGTERM)
 *   --pulse        SOCK: pulse samples (offset field = the system time's
 *                  distance past the pulse, as chrony reads it)
 *   --mode N       SHM mode 0 or 1 (default 1)
 *   --bad N        SOCK: first N malformed datagrams (short, bad magic)
 *   --remove       SHM: remove the segment at exit
 * The segment is created (mode 0600) if ntsd has not made it yet.  Sample
 * times are the system clock's now; nothing here changes the clock.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ntsntp/refclock.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static int usage(void) {
  fprintf(stderr, "usage: refclock-writer sock PATH|shm UNIT [--offset S] "
                  "[--leap N] [--interval MS] [--count N] [--pulse] "
                  "[--mode N] [--bad N] [--remove]\n");
  return 2;
}

int main(int argc, char **argv) {
  double offset = 0;
  long leap = 0, interval = 1000, count = 0, mode = 1, nbad = 0, k;
  int pulse = 0, remove_seg = 0, i, fd = -1, shmid = -1;
  ntsntp_refclock_shm *shm = NULL;
  struct sockaddr_un sa;
  const char *kind, *target;

  if (argc < 3)
    return usage();
  kind = argv[1];
  target = argv[2];
  for (i = 3; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--pulse"))
      pulse = 1;
    else if (!strcmp(argv[i], "--remove"))
      remove_seg = 1;
    else if (!v)
      return usage();
    else if (!strcmp(argv[i], "--offset"))
      offset = atof(v), i++;
    else if (!strcmp(argv[i], "--leap"))
      leap = atol(v), i++;
    else if (!strcmp(argv[i], "--interval"))
      interval = atol(v), i++;
    else if (!strcmp(argv[i], "--count"))
      count = atol(v), i++;
    else if (!strcmp(argv[i], "--mode"))
      mode = atol(v), i++;
    else if (!strcmp(argv[i], "--bad"))
      nbad = atol(v), i++;
    else
      return usage();
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  if (!strcmp(kind, "sock")) {
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(target) >= sizeof(sa.sun_path))
      return usage();
    strcpy(sa.sun_path, target);
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0) {
      perror("socket");
      return 1;
    }
  } else if (!strcmp(kind, "shm")) {
    key_t key = (key_t)(NTSNTP_REFCLOCK_SHM_KEY + atoi(target));
    shmid = shmget(key, sizeof(*shm), IPC_CREAT | 0600);
    if (shmid < 0 || (shm = shmat(shmid, NULL, 0)) == (void *)-1) {
      perror("shm");
      return 1;
    }
  } else {
    return usage();
  }
  for (k = 0; nbad > 0 && fd >= 0; nbad--, k++) {
    ntsntp_refclock_sock_sample s;
    memset(&s, 0, sizeof(s));
    s.magic = k % 2 ? 0x12345678 : NTSNTP_REFCLOCK_SOCK_MAGIC;
    sendto(fd, &s, k % 2 ? sizeof(s) : sizeof(s) - 4, 0,
           (struct sockaddr *)&sa, sizeof(sa));
  }
  for (k = 0; !stop && (count == 0 || k < count); k++) {
    struct timespec now, d;
    clock_gettime(CLOCK_REALTIME, &now);
    if (fd >= 0) {
      ntsntp_refclock_sock_sample s;
      memset(&s, 0, sizeof(s));
      s.tv.tv_sec = now.tv_sec;
      s.tv.tv_usec = now.tv_nsec / 1000;
      s.offset = offset;
      if (pulse) { /* as if the pulse of the true second came now */
        double past = -offset - (long)(-offset);
        s.pulse = 1;
        s.offset = past < 0 ? past + 1 : past;
      }
      s.leap = (int)leap;
      s.magic = NTSNTP_REFCLOCK_SOCK_MAGIC;
      if (sendto(fd, &s, sizeof(s), 0, (struct sockaddr *)&sa, sizeof(sa)) <
              0 &&
          k == 0)
        fprintf(stderr, "refclock-writer: %s: %s\n", target, strerror(errno));
    } else {
      long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec +
                     (long long)(offset * 1e9);
      shm->mode = (int)mode;
      shm->valid = 0;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      shm->count++;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      shm->receive_sec = now.tv_sec;
      shm->receive_usec = (int)(now.tv_nsec / 1000);
      shm->receive_nsec = (unsigned)now.tv_nsec;
      shm->clock_sec = (time_t)(ns / 1000000000LL);
      shm->clock_nsec = (unsigned)(ns % 1000000000LL);
      shm->clock_usec = (int)(shm->clock_nsec / 1000);
      shm->leap = (int)leap;
      shm->precision = -20;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      shm->count++;
      __atomic_thread_fence(__ATOMIC_SEQ_CST);
      shm->valid = 1;
    }
    d.tv_sec = interval / 1000;
    d.tv_nsec = (interval % 1000) * 1000000L;
    nanosleep(&d, NULL);
  }
  if (shm) {
    shmdt((void *)shm);
    if (remove_seg)
      shmctl(shmid, IPC_RMID, NULL);
  }
  if (fd >= 0)
    close(fd);
  return 0;
}
