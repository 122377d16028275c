/*
 * ntsctl: reports from a running ntsd over its control socket (protocol
 * NTSCTL/1, see include/ntsntp/control.h).  The daemon renders the
 * reports in chronyc's layout or as JSON; this program only asks and
 * prints.  Exit status: 0 ok, 1 ntsd unreachable, failing or (health)
 * unhealthy (expired certificate, failed reload), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <ntsntp/version.h>

#define DEFAULT_STATE_DIR "/var/lib/ntsd"
#define MAX_RESPONSE (1024 * 1024)
#define TIMEOUT_S 5

static const char *const commands[] = {
    "tracking", "sources",     "sourcestats", "selectdata", "authdata",
    "ntpdata",  "activity",    "serverstats", "clients",    "metrics",
    "health",   "reload"};

static int usage(FILE *f, int status) {
  fprintf(f,
          "Usage: ntsctl [-s SOCKET] [--json] COMMAND\n"
          "Commands:\n"
          "  tracking      the clock being served (chronyc tracking)\n"
          "  sources       upstream sources (chronyc sources)\n"
          "  sourcestats   upstream statistics (chronyc sourcestats)\n"
          "  selectdata    source selection (chronyc selectdata)\n"
          "  authdata      NTS state of each source (chronyc -N authdata)\n"
          "  ntpdata       last response of each source (chronyc ntpdata)\n"
          "  activity      sources online (chronyc activity)\n"
          "  serverstats   NTP and NTS-KE counters (chronyc serverstats)\n"
          "  clients       top clients by packets (chronyc clients)\n"
          "  metrics       Prometheus text format\n"
          "  health [--synced]  exit 0 if ntsd answers and its certificate is\n"
          "                valid and reloaded (and it is synchronised)\n"
          "  reload sources  read NTP_SERVERS, MAXSOURCES, LEAPSECLIST and\n"
          "                NTS_CA_FILE from the CONFIG file again (SIGHUP)\n"
          "Options:\n"
          "  -s, --socket SOCKET  control socket (default: $CONTROL_SOCKET,\n"
          "                       else $STATE_DIR/ntsd.sock, "
          "else " DEFAULT_STATE_DIR "/ntsd.sock)\n"
          "  --json               one JSON object instead of text\n"
          "  -h, --help, --version\n"
          "Exit status: 0 ok, 1 ntsd unreachable or unhealthy, 2 usage.\n");
  return status;
}

/* "ntsctl: <msg> <arg>" and the usage, status 2. */
static int bad_usage(const char *msg, const char *arg) {
  fprintf(stderr, "ntsctl: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
  return usage(stderr, 2);
}

static int unreachable(const char *path, const char *why) {
  fprintf(stderr,
          "ntsctl: cannot reach ntsd at %s: %s (is ntsd running? "
          "is STATE_DIR or CONTROL_SOCKET right?)\n",
          path, why);
  return 1;
}

/* Sends one request; on success |*body| (malloc'd) holds the report. */
static int ask(const char *path, const char *command, int json, char **body,
               size_t *body_len) {
  struct sockaddr_un sa;
  struct timeval tv = {TIMEOUT_S, 0};
  char req[128], *buf, *nl, *end;
  size_t len = 0;
  unsigned long long want;
  ssize_t n;
  int fd, reqlen;

  if (strlen(path) >= sizeof(sa.sun_path))
    return unreachable(path, "path too long for a Unix socket");
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return unreachable(path, strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int err = errno;
    close(fd);
    return unreachable(path, strerror(err));
  }
  reqlen = snprintf(req, sizeof(req), "NTSCTL/1 %s %s\n", command,
                    json ? "json" : "text");
  if (send(fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
    int err = errno;
    close(fd);
    return unreachable(path, strerror(err));
  }
  buf = malloc(MAX_RESPONSE + 1);
  if (!buf) {
    close(fd);
    fprintf(stderr, "ntsctl: out of memory\n");
    return 1;
  }
  while (len < MAX_RESPONSE &&
         (n = recv(fd, buf + len, MAX_RESPONSE - len, 0)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      free(buf);
      return unreachable(path,
                         err == EAGAIN ? "no answer in time" : strerror(err));
    }
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  nl = memchr(buf, '\n', len);
  if (!nl) {
    free(buf);
    return unreachable(path, "no valid answer (is it ntsd's socket?)");
  }
  *nl = '\0';
  if (!strncmp(buf, "NTSCTL/1 ERR ", 13)) {
    char *msg = strchr(buf + 13, ' ');
    fprintf(stderr, "ntsctl: ntsd: %s\n", msg ? msg + 1 : buf + 13);
    free(buf);
    return 1;
  }
  errno = 0;
  want = strncmp(buf, "NTSCTL/1 OK ", 12) ? 0 : strtoull(buf + 12, &end, 10);
  if (strncmp(buf, "NTSCTL/1 OK ", 12) || end == buf + 12 || *end || errno) {
    free(buf);
    return unreachable(path, "no valid answer (is it ntsd's socket?)");
  }
  if (want != len - (size_t)(nl + 1 - buf)) {
    free(buf);
    return unreachable(path, "answer cut short");
  }
  memmove(buf, nl + 1, (size_t)want + 1);
  *body = buf;
  *body_len = (size_t)want;
  return 0;
}

int main(int argc, char **argv) {
  const char *path = NULL, *command = NULL, *env;
  char def[4096], *body;
  size_t i, len;
  int json = 0, synced = 0, rv, a;

  for (a = 1; a < argc; a++) {
    const char *arg = argv[a];
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
      return usage(stdout, 0);
    if (!strcmp(arg, "--version")) {
      printf("ntsctl %s\n", NTSNTP_VERSION);
      return 0;
    }
    if (!strcmp(arg, "--json")) {
      json = 1;
    } else if (!strcmp(arg, "--synced")) {
      synced = 1;
    } else if (!strcmp(arg, "-s") || !strcmp(arg, "--socket")) {
      if (++a == argc)
        return bad_usage("a socket path must follow", arg);
      path = argv[a];
    } else if (!strncmp(arg, "--socket=", 9)) {
      path = arg + 9;
    } else if (arg[0] == '-') {
      return bad_usage("unknown option", arg);
    } else if (command && !strcmp(command, "reload") &&
               !strcmp(arg, "sources")) {
      command = "reload-sources"; /* chronyc's `reload sources` */
    } else if (command) {
      return bad_usage("one command at a time; extra:", arg);
    } else {
      for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(arg, commands[i]))
          command = commands[i];
      if (!command)
        return bad_usage("unknown command", arg);
    }
  }
  if (!command)
    return bad_usage("no command given", NULL);
  if (!strcmp(command, "reload"))
    return bad_usage("reload what? (reload sources)", NULL);
  if (synced && strcmp(command, "health") != 0)
    return bad_usage("--synced goes with health only", NULL);
  if (path && !*path)
    return bad_usage("empty socket path", NULL);

  if (!path) {
    env = getenv("CONTROL_SOCKET");
    if (env && *env) {
      if (!strcmp(env, "none")) {
        fprintf(stderr, "ntsctl: the control socket is disabled "
                        "(CONTROL_SOCKET=none); use -s SOCKET\n");
        return 1;
      }
      path = env;
    } else {
      env = getenv("STATE_DIR");
      snprintf(def, sizeof(def), "%s/ntsd.sock",
               env && *env ? env : DEFAULT_STATE_DIR);
      path = def;
    }
  }

  /* health asks for JSON to read the synchronised flag reliably. */
  rv = ask(path, command, json || !strcmp(command, "health"), &body, &len);
  if (rv)
    return rv;
  if (!strcmp(command, "health")) {
    int is_synced = strstr(body, "\"synchronised\":true") != NULL;
    int ok = strncmp(body, "{\"status\":\"ok\"", 14) == 0;
    const char *problem = strstr(body, "\"problem\":\"");
    if (json)
      fwrite(body, 1, len, stdout);
    else if (ok)
      printf("ntsd at %s: OK, %s\n", path,
             is_synced ? "synchronised" : "not synchronised");
    else
      printf("ntsd at %s: FAIL, %.*s\n", path,
             problem ? (int)strcspn(problem + 11, "\"") : 7,
             problem ? problem + 11 : "unknown");
    rv = !ok || (synced && !is_synced) ? 1 : 0;
  } else {
    fwrite(body, 1, len, stdout);
    if (!strcmp(command, "reload-sources") && /* sources: nothing changed */
        (json ? !strstr(body, "\"ok\":true") : strncmp(body, "OK:", 3)))
      rv = 1;
  }
  free(body);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "ntsctl: cannot write output: %s\n", strerror(errno));
    return 1;
  }
  return rv;
}
