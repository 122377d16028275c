/* libntsntp runtime: the control socket (ntsctl) and the HTTP /metrics
 * listener: connections, request parsing, listeners.  The reports are in
 * ctl_report.c and ctl_metrics.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ntsntp/control.h"

#include "ctl.h"
#include "../settings.h"
#include "../mem.h"

#define HTTP_MAX_REQUEST 2048
#define DEFAULT_MAX_CLIENTS 16 /* per listener; ~2.5 KiB each */
#define DEFAULT_TIMEOUT_MS 2000

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

typedef struct ntsntp__ctl_conn {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  uv_timer_t timer;
  uv_write_t wr;
  uv_shutdown_t sd;
  ntsntp_uv_ctl *c;
  struct ntsntp__ctl_conn *next, **pprev;
  int http, handles, closing, answered;
  size_t in_len;
  char *out;
  char in[HTTP_MAX_REQUEST + 1]; /* + NUL */
} conn;

static void ctl_unref(ntsntp_uv_ctl *c) {
  if (--c->handles == 0 && c->stopping) {
    void (*done)(void *) = c->done;
    void *user = c->done_user;
    ntsntp__mfree(c);
    if (done)
      done(user);
  }
}

static void conn_closed(uv_handle_t *h) {
  conn *k = h->data;
  if (--k->handles == 0) {
    ntsntp_uv_ctl *c = k->c;
    ntsntp__mfree(k->out);
    ntsntp__mfree(k);
    ctl_unref(c);
  }
}

static void conn_close(conn *k) {
  if (k->closing)
    return;
  k->closing = 1;
  if (!k->answered)
    k->c->dropped++;
  *k->pprev = k->next;
  if (k->next)
    k->next->pprev = k->pprev;
  if (k->http)
    k->c->n_http--;
  else
    k->c->n_ctl--;
  uv_close(&k->h.handle, conn_closed);
  uv_close((uv_handle_t *)&k->timer, conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn *k = req->data;
  (void)status;
  conn_close(k);
}

static void on_written(uv_write_t *req, int status) {
  conn *k = req->data;
  if (k->closing)
    return;
  if (status < 0 || uv_shutdown(&k->sd, &k->h.stream, on_shutdown) < 0)
    conn_close(k);
}

/* Sends |head| then |body| (either may be NULL) and closes. */
static void respond(conn *k, const char *head, const char *body,
                    size_t body_len) {
  size_t hl = head ? strlen(head) : 0;
  uv_buf_t buf;
  k->answered = 1;
  uv_read_stop(&k->h.stream);
  k->out = ntsntp__malloc(hl + body_len + 1);
  if (!k->out) {
    conn_close(k);
    return;
  }
  if (hl)
    memcpy(k->out, head, hl);
  if (body_len)
    memcpy(k->out + hl, body, body_len);
  buf = uv_buf_init(k->out, (unsigned)(hl + body_len));
  k->wr.data = k->sd.data = k;
  if (uv_write(&k->wr, &k->h.stream, &buf, 1, on_written) < 0)
    conn_close(k);
}

static void ctl_error(conn *k, const char *code, const char *msg) {
  char line[256];
  snprintf(line, sizeof(line), NTSNTP_CTL_VERSION " ERR %s %s\n", code, msg);
  respond(k, line, NULL, 0);
}

/* One request line of |linelen| bytes, "\n" and an optional "\r" removed
 * (NUL-terminated). */
static void ctl_request(conn *k, char *line, size_t linelen) {
  char *tok[4], *save = NULL, *p;
  char head[64], *body;
  size_t n = 0, len;
  int json = 0, rv;
  for (p = line; p < line + linelen; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
      ctl_error(k, "bad-request", "request must be printable ASCII");
      return;
    }
  for (p = strtok_r(line, " ", &save); p && n < 4;
       p = strtok_r(NULL, " ", &save))
    tok[n++] = p;
  if (n == 0 || strncmp(tok[0], "NTSCTL/", 7) != 0) {
    ctl_error(k, "bad-request", "expected \"NTSCTL/1 <command> [text|json]\"");
    return;
  }
  if (strcmp(tok[0], NTSNTP_CTL_VERSION) != 0) {
    ctl_error(k, "version", "this ntsd speaks " NTSNTP_CTL_VERSION);
    return;
  }
  if (n < 2 || n > 3) {
    ctl_error(k, "bad-request", "expected \"NTSCTL/1 <command> [text|json]\"");
    return;
  }
  if (n == 3) {
    if (!strcmp(tok[2], "json")) {
      json = 1;
    } else if (strcmp(tok[2], "text") != 0) {
      ctl_error(k, "bad-format", "format must be text or json");
      return;
    }
  }
  rv = ntsntp_uv_ctl_report(k->c, tok[1], json, &body, &len);
  if (rv == NTSNTP_ERR_NOT_FOUND) {
    ctl_error(k, "unknown-command", "commands: " NTSNTP__CTL_COMMANDS);
    return;
  }
  if (rv == NTSNTP_ERR_STATE) {
    ctl_error(k, "unavailable", "client accounting is not enabled");
    return;
  }
  if (rv) {
    ctl_error(k, "internal", ntsntp_strerror(rv));
    return;
  }
  snprintf(head, sizeof(head), NTSNTP_CTL_VERSION " OK %zu\n", len);
  respond(k, head, body, len);
  ntsntp__mfree(body);
}

static void http_status(conn *k, const char *status, int head_only) {
  char msg[256];
  snprintf(msg, sizeof(msg),
           "HTTP/1.0 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s%s",
           status, strlen(status) + 1, head_only ? "" : status,
           head_only ? "" : "\n");
  respond(k, msg, NULL, 0);
}

/* Minimal HTTP/1.x: the request line only; headers are read and ignored. */
static void http_request(conn *k) {
  char *line = k->in, *sp1, *sp2, *eol, *body, head[256];
  size_t len;
  int head_only;
  eol = memchr(line, '\n', k->in_len);
  *eol = '\0';
  if (eol > line && eol[-1] == '\r')
    eol[-1] = '\0';
  sp1 = strchr(line, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || strncmp(sp2 + 1, "HTTP/1.", 7)) {
    http_status(k, "400 Bad Request", 0);
    return;
  }
  *sp1 = *sp2 = '\0';
  head_only = !strcmp(line, "HEAD");
  if (!head_only && strcmp(line, "GET") != 0) {
    http_status(k, "405 Method Not Allowed", 0);
    return;
  }
  if (strcmp(sp1 + 1, "/metrics") != 0 && strncmp(sp1 + 1, "/metrics?", 9)) {
    http_status(k, "404 Not Found", head_only);
    return;
  }
  if (ntsntp_uv_ctl_report(k->c, "metrics", 0, &body, &len)) {
    http_status(k, "500 Internal Server Error", head_only);
    return;
  }
  snprintf(head, sizeof(head),
           "HTTP/1.0 200 OK\r\n"
           "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n",
           len);
  respond(k, head, body, head_only ? 0 : len);
  ntsntp__mfree(body);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn *k = h->data;
  size_t max = k->http ? HTTP_MAX_REQUEST : NTSNTP_CTL_MAX_REQUEST;
  (void)suggested;
  *buf = uv_buf_init(k->in + k->in_len, (unsigned)(max - k->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *k = s->data;
  size_t max = k->http ? HTTP_MAX_REQUEST : NTSNTP_CTL_MAX_REQUEST;
  char *nl;
  (void)buf;
  if (nread < 0) {
    conn_close(k); /* EOF, error, or no room left (UV_ENOBUFS) */
    return;
  }
  k->in_len += (size_t)nread;
  if (k->http) {
    /* The request ends with an empty line; bare "\n" endings too. */
    k->in[k->in_len] = '\0';
    if (memmem(k->in, k->in_len, "\r\n\r\n", 4) ||
        memmem(k->in, k->in_len, "\n\n", 2)) {
      k->c->requests++;
      http_request(k);
    } else if (k->in_len == max)
      conn_close(k); /* too large: no answer */
    return;
  }
  nl = memchr(k->in, '\n', k->in_len);
  if (nl) {
    *nl = '\0';
    if (nl > k->in && nl[-1] == '\r')
      *--nl = '\0';
    k->c->requests++;
    ctl_request(k, k->in, (size_t)(nl - k->in));
  } else if (k->in_len == max) {
    conn_close(k); /* too long: no answer */
  }
}

static void on_timeout(uv_timer_t *t) {
  conn_close(t->data);
}

/* Full: a new client is always served, and the oldest connection of the
 * same listener that has not sent its request is closed (if every one has,
 * the oldest being answered).  Idle or slow clients therefore cannot keep
 * out `ntsctl health` (a Docker health check) or a Prometheus scrape. */
static void evict_oldest(ntsntp_uv_ctl *c, int http, conn *keep) {
  conn *k, *waiting = NULL, *any = NULL;
  for (k = c->conns; k; k = k->next) { /* newest first */
    if (k == keep || k->http != http)
      continue;
    any = k;
    if (!k->answered)
      waiting = k;
  }
  if (waiting || any)
    conn_close(waiting ? waiting : any);
}

static void on_connection(uv_stream_t *server, int status) {
  ntsntp_uv_ctl *c = server->data;
  int http = server == (uv_stream_t *)&c->tcp;
  unsigned *count = http ? &c->n_http : &c->n_ctl;
  conn *k;
  if (status < 0)
    return;
  k = ntsntp__calloc(1, sizeof(*k));
  if (!k) {
    if (c->s.log)
      c->s.log(c->s.log_user, NTSNTP_LOG_ERR,
               "Control: out of memory for a connection");
    return;
  }
  k->c = c;
  k->http = http;
  if (http)
    uv_tcp_init(c->loop, &k->h.tcp);
  else
    uv_pipe_init(c->loop, &k->h.pipe, 0);
  uv_timer_init(c->loop, &k->timer);
  k->h.handle.data = k->timer.data = k;
  k->handles = 2;
  c->handles++;
  k->next = c->conns;
  k->pprev = &c->conns;
  if (c->conns)
    c->conns->pprev = &k->next;
  c->conns = k;
  ++*count;
  if (uv_accept(server, &k->h.stream) < 0) {
    conn_close(k);
    return;
  }
  if (*count > c->s.max_clients)
    evict_oldest(c, http, k);
  uv_timer_start(&k->timer, on_timeout, c->s.timeout_ms, 0);
  if (uv_read_start(&k->h.stream, on_alloc, on_read) < 0)
    conn_close(k);
}

/* ------------------------------------------------------------------------ */
/* Listeners                                                                 */
/* ------------------------------------------------------------------------ */

static void listener_closed(uv_handle_t *h) {
  ctl_unref(h->data);
}

/* Unlinks the socket file if it is still the one this server bound. */
static void remove_socket(ntsntp_uv_ctl *c) {
  struct stat st;
  if (c->own_path && lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == c->dev && st.st_ino == c->ino)
    unlink(c->path);
  c->own_path = 0;
}

/* A socket file is in the way: remove it if nothing answers on it. */
static int clear_stale(ntsntp_uv_ctl *c, const struct sockaddr_un *sa,
                       char *errbuf, size_t errlen) {
  struct stat st;
  int fd, rv, err;
  if (lstat(c->path, &st) < 0)
    return 0;
  if (!S_ISSOCK(st.st_mode)) {
    ntsntp__errf(errbuf, errlen,
                 "control socket path %s exists and is not a "
                 "socket; remove it or set CONTROL_SOCKET to another path",
                 c->path);
    return NTSNTP_ERR_STATE;
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    goto io;
  rv = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
  err = errno;
  close(fd);
  if (rv == 0) {
    ntsntp__errf(errbuf, errlen,
                 "another ntsd is already answering on %s; stop "
                 "it, or give this one another STATE_DIR or CONTROL_SOCKET",
                 c->path);
    return NTSNTP_ERR_STATE;
  }
  if (err == ECONNREFUSED) {
    if (unlink(c->path) == 0 || errno == ENOENT) {
      if (c->s.log)
        c->s.log(c->s.log_user, NTSNTP_LOG_INFO,
                 "Removed stale control socket");
      return 0;
    }
  } else if (err == ENOENT) {
    return 0;
  }
  errno = err;
io:
  ntsntp__errf(errbuf, errlen, "cannot check existing control socket %s: %s",
               c->path, strerror(errno));
  return NTSNTP_ERR_IO;
}

static int start_socket(ntsntp_uv_ctl *c, const char *path, char *errbuf,
                        size_t errlen) {
  struct sockaddr_un sa;
  struct stat st;
  const char *step;
  mode_t old_mask;
  int fd, rv;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    ntsntp__errf(errbuf, errlen,
                 "control socket path %s is too long (at most "
                 "%zu bytes); set CONTROL_SOCKET to a shorter path",
                 path, sizeof(sa.sun_path) - 1);
    return NTSNTP_ERR_INVALID_ARG;
  }
  memcpy(c->path, path, strlen(path) + 1);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  rv = clear_stale(c, &sa, errbuf, errlen);
  if (rv)
    return rv;

  step = "socket";
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    goto fail;
  /* The node that bind creates gets its mode there and then, and nothing
   * changes it by path afterwards: the directory may belong to NTSD_USER,
   * who could put a symbolic link in the socket's place for a chmod by
   * root to follow.  Linux gives the node the socket inode's mode (fchmod)
   * less the umask; other systems 0777 less the umask.  umask 0117 during
   * bind makes that exactly 0660 either way.  The umask is per process: a
   * file another thread creates meanwhile gets at most 0660 (ntsd creates
   * none then: its threads only serve sockets). */
  step = "fchmod";
  if (fchmod(fd, 0660) < 0)
    goto fail_fd;
  step = "bind";
  old_mask = umask(0117);
  rv = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
  umask(old_mask);
  if (rv < 0)
    goto fail_fd;
  c->own_path = 1;
  /* Only to recognise the node at stop (remove_socket): lstat follows
   * nothing. */
  step = "stat";
  if (lstat(path, &st) < 0)
    goto fail_fd;
  if (!S_ISSOCK(st.st_mode)) {
    close(fd);
    ntsntp__errf(errbuf, errlen,
                 "control socket %s was replaced by %s right after it was "
                 "created: another user writes to its directory; fix: make the "
                 "directory writable by root and NTSD_USER only",
                 path,
                 S_ISLNK(st.st_mode) ? "a symbolic link" : "another file");
    return NTSNTP_ERR_STATE;
  }
  c->dev = st.st_dev;
  c->ino = st.st_ino;
  uv_pipe_init(c->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->have_pipe = 1;
  c->handles++;
  step = "listen";
  if ((rv = uv_pipe_open(&c->pipe, fd)) < 0) {
    close(fd);
    errno = -rv;
    goto fail;
  }
  if ((rv = uv_listen((uv_stream_t *)&c->pipe, 8, on_connection)) < 0) {
    errno = -rv;
    goto fail;
  }
  return 0;
fail_fd:
  rv = errno;
  close(fd);
  errno = rv;
fail:
  ntsntp__errf(
      errbuf, errlen,
      "cannot create control socket %s (%s): %s; fix: "
      "make its directory writable, set CONTROL_SOCKET to another path, "
      "or CONTROL_SOCKET=none to go without",
      path, step, strerror(errno));
  return NTSNTP_ERR_IO;
}

/* "a.b.c.d:port" or "[v6]:port", numeric only. */
static int parse_hostport(const char *s, struct sockaddr_storage *ss) {
  char host[64];
  const char *colon, *h = s, *he;
  unsigned long port;
  char *end;
  if (*s == '[') {
    h = s + 1;
    he = strchr(h, ']');
    if (!he || he[1] != ':')
      return -1;
    colon = he + 1;
  } else {
    colon = strchr(s, ':');
    if (!colon || strchr(colon + 1, ':'))
      return -1;
    he = colon;
  }
  if (he == h || (size_t)(he - h) >= sizeof(host) || !colon[1] ||
      colon[1] < '0' || colon[1] > '9')
    return -1;
  memcpy(host, h, (size_t)(he - h));
  host[he - h] = '\0';
  errno = 0;
  port = strtoul(colon + 1, &end, 10);
  if (errno || *end || port > 65535)
    return -1;
  memset(ss, 0, sizeof(*ss));
  if (*s == '[')
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) ? -1 : 0;
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) ? -1 : 0;
}

static int start_metrics(ntsntp_uv_ctl *c, const char *listen, char *errbuf,
                         size_t errlen) {
  struct sockaddr_storage ss;
  int rv, len = sizeof(ss);
  if (parse_hostport(listen, &ss) < 0) {
    ntsntp__errf(errbuf, errlen,
                 "METRICS_LISTEN \"%s\" is not a numeric "
                 "address:port (e.g. 127.0.0.1:9123 or [::1]:9123)",
                 listen);
    return NTSNTP_ERR_INVALID_ARG;
  }
  uv_tcp_init(c->loop, &c->tcp);
  c->tcp.data = c;
  c->have_tcp = 1;
  c->handles++;
  rv = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ss, 0);
  if (rv == 0)
    rv = uv_listen((uv_stream_t *)&c->tcp, 16, on_connection);
  if (rv == 0)
    rv = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
  if (rv < 0) {
    ntsntp__errf(errbuf, errlen,
                 "cannot listen for metrics on %s: %s; fix "
                 "METRICS_LISTEN or leave it empty",
                 listen, uv_strerror(rv));
    return NTSNTP_ERR_IO;
  }
  c->metrics_port =
      ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

static void uv_ctl_fill(void *p) {
  ntsntp_uv_ctl_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->max_clients = DEFAULT_MAX_CLIENTS;
  s->timeout_ms = DEFAULT_TIMEOUT_MS;
}
NTSNTP__SETTINGS(ntsntp_uv_ctl_settings, uv_ctl, log_user)

int ntsntp_uv_ctl_start(uv_loop_t *loop, const ntsntp_uv_ctl_settings *s,
                        ntsntp_uv_ctl **out, char *errbuf, size_t errlen) {
  ntsntp_uv_ctl_settings latest;
  ntsntp_uv_ctl *c;
  const char *sock, *metrics;
  char dummy[1];
  int rv = 0;
  if (!errbuf) {
    errbuf = dummy;
    errlen = sizeof(dummy);
  }
  NTSNTP__SETTINGS_GET(s, latest, uv_ctl, errbuf, errlen);
  if (!loop || !out || !s->provider.stats || !s->provider.tracking) {
    ntsntp__errf(errbuf, errlen, "control: missing loop, settings or provider");
    return NTSNTP_ERR_INVALID_ARG;
  }
  sock = s->socket_path;
  metrics = s->metrics_listen;
  c = ntsntp__calloc(1, sizeof(*c));
  if (!c) {
    ntsntp__errf(errbuf, errlen, "control: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  c->s = *s;
  c->s.socket_path = c->s.metrics_listen = NULL; /* not kept */
  if (!c->s.max_clients)
    c->s.max_clients = DEFAULT_MAX_CLIENTS;
  if (!c->s.timeout_ms)
    c->s.timeout_ms = DEFAULT_TIMEOUT_MS;
  c->loop = loop;
  if (sock && *sock)
    rv = start_socket(c, sock, errbuf, errlen);
  if (!rv && metrics && *metrics)
    rv = start_metrics(c, metrics, errbuf, errlen);
  if (rv) {
    ntsntp_uv_ctl_stop(c, NULL, NULL);
    return rv;
  }
  *out = c;
  return 0;
}

uint16_t ntsntp_uv_ctl_metrics_port(const ntsntp_uv_ctl *c) {
  return c ? c->metrics_port : 0;
}

void ntsntp_uv_ctl_stop(ntsntp_uv_ctl *c, void (*done)(void *user),
                        void *user) {
  c->stopping = 1;
  c->done = done;
  c->done_user = user;
  remove_socket(c);
  while (c->conns)
    conn_close(c->conns);
  if (c->have_pipe)
    uv_close((uv_handle_t *)&c->pipe, listener_closed);
  if (c->have_tcp)
    uv_close((uv_handle_t *)&c->tcp, listener_closed);
  if (c->handles == 0) {
    ntsntp__mfree(c);
    if (done)
      done(user);
  }
}
