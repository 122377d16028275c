/* libntsntp runtime: NTS-KE over TCP, TLS work on worker threads. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ntsntp/uv_ke.h"
#include "sock.h"

#define MAX_LISTEN 64
#define READ_BUF 4096

struct ntsntp_uv_ke;

typedef struct ke_worker {
  struct ntsntp_uv_ke *ke;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t async;
  uv_tcp_t listeners[MAX_LISTEN];
  size_t n_listeners;
  ntsntp_ke_server *srv;
  uint8_t rbuf[READ_BUF];
  uv_mutex_t lock; /* guards the fields below */
  ntsntp_ke_creds *new_creds;
  int stop;
  ntsntp_ke_server_stats snap;
  uint64_t accepted, dropped;
} ke_worker;

struct ntsntp_uv_ke {
  ntsntp_uv_ke_settings s;
  int fds[MAX_LISTEN];
  uint16_t ports[MAX_LISTEN];
  size_t n_fds;
  atomic_uint active;
  unsigned n_workers;
  ke_worker *workers;
};

typedef struct ke_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  ke_worker *w;
  ntsntp_ke_session *sess;
  uv_shutdown_t shut;
  unsigned pending_writes;
  int closing, draining, open_handles;
  int admitted; /* |accept| let it through: |release| is owed */
  struct sockaddr_storage peer;
} ke_conn;

typedef struct ke_write {
  uv_write_t req;
  ke_conn *c;
  uint8_t data[];
} ke_write;

static void logf_(ntsntp_uv_ke *ke, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(ntsntp_uv_ke *ke, int level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (!ke->s.log)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ke->s.log(ke->s.log_user, level, msg);
}

void ntsntp_uv_ke_settings_default(ntsntp_uv_ke_settings *s) {
  memset(s, 0, sizeof(*s));
  s->port = NTSNTP_KE_PORT;
  s->threads = 1;
  s->max_connections = 512;
  ntsntp_ke_server_settings_default(&s->ke);
}

static void snapshot(ke_worker *w) {
  uv_mutex_lock(&w->lock);
  w->snap = *ntsntp_ke_server_get_stats(w->srv);
  uv_mutex_unlock(&w->lock);
}

static void conn_closed(uv_handle_t *h) {
  ke_conn *c = h->data;
  if (--c->open_handles)
    return;
  if (c->admitted && c->w->ke->s.release)
    c->w->ke->s.release(c->w->ke->s.accept_user,
                        (const struct sockaddr *)&c->peer);
  ntsntp_ke_session_del(c->sess);
  atomic_fetch_sub(&c->w->ke->active, 1);
  snapshot(c->w);
  free(c);
}

static void conn_close(ke_conn *c);

static void on_drain_timer(uv_timer_t *t) { conn_close(t->data); }

static void conn_close(ke_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

#define DRAIN_MS 1000

static void on_shutdown(uv_shutdown_t *req, int status) {
  if (status < 0)
    conn_close(req->data);
}

/* Closing a socket with unread input makes the kernel send a reset, which
 * can destroy a response the client has not read yet.  So: half-close,
 * then read and discard until the client closes (or DRAIN_MS passes). */
static void drain(ke_conn *c) {
  if (c->draining || c->closing)
    return;
  c->draining = 1;
  c->shut.data = c;
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_drain_timer, DRAIN_MS, 0);
}

static void on_write(uv_write_t *req, int status) {
  ke_write *wr = (ke_write *)req;
  ke_conn *c = wr->c;
  free(wr);
  c->pending_writes--;
  if (status < 0)
    conn_close(c);
  else if (c->pending_writes == 0 && (ntsntp_ke_session_want(c->sess) &
                                      (NTSNTP_KE_CLOSE | NTSNTP_KE_DONE)))
    drain(c);
}

/* Sends what the session has to say, then closes once it is all written. */
static void pump(ke_conn *c) {
  uint8_t buf[NTSNTP_KE_MAX_MESSAGE + 1024];
  ntsntp_ssize n;
  unsigned want;
  while ((n = ntsntp_ke_session_write(c->sess, buf, sizeof(buf))) > 0) {
    ke_write *wr = malloc(sizeof(*wr) + (size_t)n);
    uv_buf_t b;
    if (!wr) {
      conn_close(c);
      return;
    }
    memcpy(wr->data, buf, (size_t)n);
    wr->c = c;
    b = uv_buf_init((char *)wr->data, (unsigned)n);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
      free(wr);
      conn_close(c);
      return;
    }
    c->pending_writes++;
  }
  want = ntsntp_ke_session_want(c->sess);
  if ((want & (NTSNTP_KE_CLOSE | NTSNTP_KE_DONE)) && c->pending_writes == 0)
    drain(c);
}

static void arm_timer(ke_conn *c);

static void on_timer(uv_timer_t *t) {
  ke_conn *c = t->data;
  ntsntp_ke_session_handle_expiry(c->sess, uv_now(&c->w->loop));
  pump(c);
  if (!c->closing && !c->draining)
    arm_timer(c);
}

static void arm_timer(ke_conn *c) {
  uint64_t exp = ntsntp_ke_session_expiry(c->sess), now = uv_now(&c->w->loop);
  if (exp == UINT64_MAX) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timer, exp > now ? exp - now : 0, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  ke_conn *c = h->data;
  (void)hint;
  /* One read at a time per loop: the worker's buffer is enough. */
  *buf = uv_buf_init((char *)c->w->rbuf, sizeof(c->w->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  ke_conn *c = st->data;
  if (nread == 0)
    return;
  if (c->draining) {
    if (nread < 0)
      conn_close(c);
    return;
  }
  if (nread == UV_EOF)
    ntsntp_ke_session_read(c->sess, NULL, 0);
  else if (nread < 0) {
    conn_close(c);
    return;
  } else
    ntsntp_ke_session_read(c->sess, (const uint8_t *)buf->base, (size_t)nread);
  pump(c);
}

static void on_connection(uv_stream_t *server, int status) {
  ke_worker *w = server->data;
  ntsntp_uv_ke *ke = w->ke;
  struct sockaddr_storage peer;
  int plen = sizeof(peer);
  ke_conn *c;
  if (status < 0)
    return;
  c = calloc(1, sizeof(*c));
  if (!c)
    return;
  c->w = w;
  uv_tcp_init(&w->loop, &c->tcp);
  uv_timer_init(&w->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    conn_close(c);
    return;
  }
  atomic_fetch_add(&ke->active, 1);
  /* Refuse before any TLS work: over the limit, or not allowed. */
  if (atomic_load(&ke->active) > ke->s.max_connections ||
      (ke->s.accept &&
       (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &plen) < 0 ||
        !ke->s.accept(ke->s.accept_user, (const struct sockaddr *)&peer)))) {
    uv_mutex_lock(&w->lock);
    w->dropped++;
    uv_mutex_unlock(&w->lock);
    conn_close(c);
    return;
  }
  if (ke->s.accept) {
    c->admitted = 1;
    c->peer = peer;
  }
  if (ntsntp_ke_session_new(&c->sess, w->srv, uv_now(&w->loop)) < 0) {
    conn_close(c);
    return;
  }
  uv_mutex_lock(&w->lock);
  w->accepted++;
  uv_mutex_unlock(&w->lock);
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  arm_timer(c);
}

static void close_walk(uv_handle_t *h, void *arg) {
  ke_worker *w = arg;
  if (uv_is_closing(h))
    return;
  if (h->data == w)
    uv_close(h, NULL); /* listener or async */
  else
    conn_close(h->data); /* a connection's socket or timer */
}

static void on_async(uv_async_t *a) {
  ke_worker *w = a->data;
  ntsntp_ke_creds *creds;
  int stop;
  uv_mutex_lock(&w->lock);
  creds = w->new_creds;
  w->new_creds = NULL;
  stop = w->stop;
  uv_mutex_unlock(&w->lock);
  if (creds) {
    ntsntp_ke_server_set_creds(w->srv, creds);
    ntsntp_ke_creds_unref(creds);
  }
  if (stop)
    uv_walk(&w->loop, close_walk, w);
}

static void worker_main(void *arg) {
  ke_worker *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

uint16_t ntsntp_uv_ke_port(const ntsntp_uv_ke *ke, size_t idx) {
  return idx < ke->n_fds ? ke->ports[idx] : 0;
}

void ntsntp_uv_ke_set_creds(ntsntp_uv_ke *ke, ntsntp_ke_creds *creds) {
  unsigned i;
  for (i = 0; i < ke->n_workers; i++) {
    ke_worker *w = &ke->workers[i];
    uv_mutex_lock(&w->lock);
    if (w->new_creds)
      ntsntp_ke_creds_unref(w->new_creds);
    w->new_creds = ntsntp_ke_creds_ref(creds);
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->async);
  }
}

void ntsntp_uv_ke_get_stats(ntsntp_uv_ke *ke, ntsntp_uv_ke_stats *st) {
  unsigned i, k;
  memset(st, 0, sizeof(*st));
  for (i = 0; i < ke->n_workers; i++) {
    ke_worker *w = &ke->workers[i];
    const uint64_t *src = (const uint64_t *)&w->snap;
    uint64_t *dst = (uint64_t *)&st->ke;
    uv_mutex_lock(&w->lock);
    st->accepted += w->accepted;
    st->dropped += w->dropped;
    for (k = 0; k < sizeof(st->ke) / sizeof(uint64_t); k++)
      dst[k] += src[k];
    uv_mutex_unlock(&w->lock);
  }
  st->active = atomic_load(&ke->active);
}

static void free_ke(ntsntp_uv_ke *ke) {
  size_t i;
  for (i = 0; i < ke->n_fds; i++)
    if (ke->fds[i] >= 0)
      close(ke->fds[i]);
  free(ke->workers);
  free(ke);
}

/* Opens the listening sockets: all threads share each address's port. */
static int bind_all(ntsntp_uv_ke *ke, char *errbuf, size_t errlen) {
  const char *const *addrs = ke->s.n_listen ? ke->s.listen
                                            : ntsntp__sock_wildcards;
  size_t n = ke->s.n_listen ? ke->s.n_listen : 2, i;
  unsigned t;
  if (n * ke->n_workers > MAX_LISTEN)
    return NTSNTP_ERR_INVALID_ARG;
  for (i = 0; i < n; i++) {
    struct sockaddr_storage ss;
    uint16_t port = ke->s.port;
    int rv;
    for (t = 0; t < ke->n_workers; t++) {
      int fd;
      rv = ntsntp__sock_addr(addrs[i], port, &ss, errbuf, errlen);
      if (rv)
        return rv;
      fd = ntsntp__sock_listen(SOCK_STREAM, (struct sockaddr *)&ss, errbuf,
                               errlen);
      if (fd < 0)
        return fd;
      ke->fds[ke->n_fds] = fd;
      port = ntsntp__sock_port(fd);
      if (t == 0)
        ke->ports[i] = port;
      ke->n_fds++;
    }
  }
  return 0;
}

/* Asks the first |n| workers to close everything, and joins them. */
static void stop_threads(ntsntp_uv_ke *ke, unsigned n) {
  unsigned t;
  for (t = 0; t < n; t++) {
    ke_worker *w = &ke->workers[t];
    uv_mutex_lock(&w->lock);
    w->stop = 1;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->async);
  }
  for (t = 0; t < n; t++)
    uv_thread_join(&ke->workers[t].thread);
}

/* Frees a worker whose loop is not running (any more). */
static void worker_clear(ke_worker *w) {
  if (!w->ke)
    return;
  uv_walk(&w->loop, close_walk, w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
  uv_mutex_destroy(&w->lock);
  if (w->new_creds)
    ntsntp_ke_creds_unref(w->new_creds);
  ntsntp_ke_server_del(w->srv);
}

static int worker_init(ntsntp_uv_ke *ke, ke_worker *w, unsigned t) {
  size_t per = ke->n_fds / ke->n_workers, i;
  int rv = ntsntp_ke_server_new(&w->srv, &ke->s.ke);
  if (rv)
    return rv;
  w->ke = ke;
  uv_mutex_init(&w->lock);
  uv_loop_init(&w->loop);
  w->loop.data = w;
  uv_async_init(&w->loop, &w->async, on_async);
  w->async.data = w;
  for (i = 0; i < per; i++) {
    /* fds are laid out address-major: address i, thread t. */
    size_t k = i * ke->n_workers + t;
    uv_tcp_t *l = &w->listeners[w->n_listeners++];
    uv_tcp_init(&w->loop, l);
    l->data = w;
    if (uv_tcp_open(l, ke->fds[k]) == 0)
      ke->fds[k] = -1; /* owned by the handle now */
    if (uv_listen((uv_stream_t *)l, 256, on_connection) < 0)
      return NTSNTP_ERR_IO;
  }
  return 0;
}

int ntsntp_uv_ke_start(uv_loop_t *loop, const ntsntp_uv_ke_settings *s,
                       ntsntp_uv_ke **out, char *errbuf, size_t errlen) {
  ntsntp_uv_ke *ke;
  unsigned t, started = 0;
  size_t i;
  int rv;
  (void)loop;
  if (!s || !out || s->threads == 0 || s->threads > 8 ||
      s->max_connections == 0)
    return NTSNTP_ERR_INVALID_ARG;
  ke = calloc(1, sizeof(*ke));
  if (!ke)
    return NTSNTP_ERR_NOMEM;
  ke->s = *s;
  ke->n_workers = s->threads;
  for (i = 0; i < MAX_LISTEN; i++)
    ke->fds[i] = -1;
  ke->workers = calloc(ke->n_workers, sizeof(*ke->workers));
  if (!ke->workers) {
    free(ke);
    return NTSNTP_ERR_NOMEM;
  }
  rv = bind_all(ke, errbuf, errlen);
  for (t = 0; rv == 0 && t < ke->n_workers; t++) {
    rv = worker_init(ke, &ke->workers[t], t);
    if (rv)
      snprintf(errbuf, errlen, "NTS-KE server setup failed: %s",
               ntsntp_strerror(rv));
  }
  for (t = 0; rv == 0 && t < ke->n_workers; t++, started++)
    if (uv_thread_create(&ke->workers[t].thread, worker_main,
                         &ke->workers[t])) {
      snprintf(errbuf, errlen, "cannot start an NTS-KE thread");
      rv = NTSNTP_ERR_NOMEM;
    }
  if (rv) {
    stop_threads(ke, started);
    for (t = 0; t < ke->n_workers; t++)
      worker_clear(&ke->workers[t]);
    free_ke(ke);
    return rv;
  }
  logf_(ke, NTSNTP_LOG_INFO,
        "NTS-KE server on TCP port %u (%u threads, at most %u connections)",
        ke->ports[0], ke->n_workers, s->max_connections);
  *out = ke;
  return 0;
}

void ntsntp_uv_ke_stop(ntsntp_uv_ke *ke) {
  unsigned t;
  if (!ke)
    return;
  stop_threads(ke, ke->n_workers);
  for (t = 0; t < ke->n_workers; t++)
    worker_clear(&ke->workers[t]);
  free_ke(ke);
}
