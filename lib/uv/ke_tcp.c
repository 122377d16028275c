/* libntsntp runtime: NTS-KE over TCP, TLS work on worker threads. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errtext.h"
#include "ntsntp/uv_ke.h"
#include "sock.h"
#include "../settings.h"
#include "../mem.h"

#define MAX_LISTEN 64
#define READ_BUF 4096
/* listen(2) backlog; the kernel caps it at net.core.somaxconn.  Large, so
 * a burst of flooding connections does not fill the accept queue (the
 * kernel then drops new SYNs, a legitimate client's too, and the client
 * retries only a second later). */
#define LISTEN_BACKLOG 4096
#define DRAIN_MS 1000
#define FIRST_BYTE_MS 1000
/* Connections taken off the accept queue per loop iteration.  libuv would
 * otherwise accept until the queue is empty, and a flood that reconnects
 * as fast as it is refused keeps it from ever being empty: reads of the
 * connections already open (a real client's handshake) would wait. */
#define ACCEPT_BATCH 64
/* A connection this young that has not sent its ClientHello yet may just
 * not have had the time: closed for room only after the older idle or
 * partial ones and the draining ones.  (A real client sends its
 * ClientHello with, or right after, the ACK that completes the TCP
 * handshake.) */
#define EVICT_GRACE_MS 100
/* Bytes held back until a whole TLS record header has come, so a client
 * trickling bytes costs no TLS state. */
#define TLS_HEADER 5

struct ntsntp_uv_ke;
struct ke_worker;

/* What a connection has done so far, which decides who is closed first
 * when every slot is taken (see uv_ke.h); T_NONE: not closable for room
 * (its response is being written, or it is closing). */
enum { T_IDLE, T_PARTIAL, T_DRAINING, T_HANDSHAKE, N_TIERS, T_NONE = N_TIERS };

typedef struct ke_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct ke_worker *w;
  ntsntp_ke_session *sess; /* NULL until TLS_HEADER bytes */
  uint8_t head[TLS_HEADER]; /* the bytes before that */
  size_t n_head;
  uv_shutdown_t shut;
  struct ke_conn *prev, *next; /* in w->tiers[tier], oldest first */
  uint64_t accepted_ms;
  uint64_t accepted_ns; /* uv_hrtime: the handshake latency histogram */
  unsigned pending_writes;
  int tier;
  int closing, draining, open_handles;
  int counted;  /* holds one of ke->active: given back by conn_close */
  int admitted; /* |accept| let it through: |release| is owed */
  struct sockaddr_storage peer;
} ke_conn;

typedef struct conn_list {
  ke_conn *head, *tail;
} conn_list;

typedef struct ke_worker {
  struct ntsntp_uv_ke *ke;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t async;
  uv_tcp_t listeners[MAX_LISTEN];
  size_t n_listeners;
  ntsntp_ke_server *srv;
  uint64_t session_failures; /* ntsntp_ke_session_new failed */
  uint8_t rbuf[READ_BUF];
  conn_list tiers[N_TIERS];
  /* Used when calloc fails, so a connection can still be taken off the
   * accept queue (libuv stops watching a listener until uv_accept takes
   * the pending one); |stalled|: a listener waiting for it to be free. */
  ke_conn spare;
  int spare_busy;
  uv_stream_t *stalled;
  /* ACCEPT_BATCH: accepts since the last poll; listeners left with a
   * connection pending, taken up again after the poll (|resume|). */
  unsigned turn_accepts;
  uv_stream_t *deferred[MAX_LISTEN];
  size_t n_deferred;
  uv_check_t resume;
  uv_mutex_t lock; /* guards the fields below */
  ntsntp_ke_creds *new_creds;
  int stop;
  ntsntp_ke_server_stats snap;
  ntsntp_uv_ke_stats cnt; /* this thread's counters (not |ke|, |active|) */
} ke_worker;

struct ntsntp_uv_ke {
  ntsntp_uv_ke_settings s;
  int fds[MAX_LISTEN];
  uint16_t ports[MAX_LISTEN];
  size_t n_fds;
  atomic_uint active;
  unsigned n_workers;
  ke_worker *workers;
  /* On the caller's loop: each thread that ends counts itself in
   * |n_exited| and wakes |exited|; the last one lets stop finish. */
  uv_async_t exited;
  atomic_uint n_exited;
  int stopping, closing;
  void (*done)(void *user);
  void *done_user;
};

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

static void uv_ke_fill(void *p) {
  ntsntp_uv_ke_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->port = NTSNTP_KE_PORT;
  s->threads = 1;
  s->max_connections = 512;
  s->first_byte_ms = FIRST_BYTE_MS;
  ntsntp_ke_server_settings_default(&s->ke);
}
NTSNTP__SETTINGS(ntsntp_uv_ke_settings, uv_ke, log_user)

/* Adds one to a counter of |w| (the lock makes get_stats consistent). */
#define COUNT(w, field)                                                        \
  do {                                                                         \
    uv_mutex_lock(&(w)->lock);                                                 \
    (w)->cnt.field++;                                                          \
    uv_mutex_unlock(&(w)->lock);                                               \
  } while (0)

/* A session answered |s| seconds after accept (see uv_ke.h). */
static void count_latency(ke_worker *w, double s) {
  static const double bound[] = NTSNTP_UV_KE_LATENCY_BOUNDS;
  size_t i;
  for (i = 0; i < NTSNTP_UV_KE_LATENCY_BUCKETS && s > bound[i]; i++)
    ;
  uv_mutex_lock(&w->lock);
  if (i < NTSNTP_UV_KE_LATENCY_BUCKETS)
    w->cnt.latency_bucket[i]++;
  w->cnt.latency_count++;
  w->cnt.latency_sum += s;
  uv_mutex_unlock(&w->lock);
}

static void snapshot(ke_worker *w) {
  uv_mutex_lock(&w->lock);
  ntsntp_ke_server_get_stats(w->srv, &w->snap);
  uv_mutex_unlock(&w->lock);
}

/* ---- closable connections, by tier ---- */

static void tier_set(ke_conn *c, int tier) {
  conn_list *l;
  if (c->tier == tier)
    return;
  if (c->tier != T_NONE) {
    l = &c->w->tiers[c->tier];
    if (c->prev)
      c->prev->next = c->next;
    else
      l->head = c->next;
    if (c->next)
      c->next->prev = c->prev;
    else
      l->tail = c->prev;
    c->prev = c->next = NULL;
  }
  c->tier = tier;
  if (tier == T_NONE)
    return;
  l = &c->w->tiers[tier];
  c->prev = l->tail;
  if (l->tail)
    l->tail->next = c;
  else
    l->head = c;
  l->tail = c;
}

static void conn_close(ke_conn *c);

/* Closes this thread's first closable connection (see uv_ke.h), in this
 * order: idle, then partial, connections older than EVICT_GRACE_MS; the
 * draining ones; younger idle, then partial ones; those mid-handshake.
 * Each list is oldest first.  0: none. */
static int evict_one(ke_worker *w) {
  static const int order[] = {T_IDLE, T_PARTIAL, T_DRAINING,
                              T_IDLE, T_PARTIAL, T_HANDSHAKE};
  uint64_t now = uv_now(&w->loop);
  size_t i;
  for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
    ke_conn *c = w->tiers[order[i]].head;
    if (!c || (i < 2 && now - c->accepted_ms < EVICT_GRACE_MS))
      continue;
    COUNT(w, evicted);
    conn_close(c);
    return 1;
  }
  return 0;
}

/* ---- connection life cycle ---- */

static void on_connection(uv_stream_t *server, int status);

static void conn_closed(uv_handle_t *h) {
  ke_conn *c = h->data;
  ke_worker *w = c->w;
  if (--c->open_handles)
    return;
  ntsntp_ke_session_del(c->sess);
  snapshot(w);
  if (c != &w->spare) {
    ntsntp__mfree(c);
    return;
  }
  w->spare_busy = 0;
  if (w->stalled) {
    uv_stream_t *l = w->stalled;
    w->stalled = NULL;
    if (!uv_is_closing((uv_handle_t *)l))
      on_connection(l, 0);
  }
}

/* Gives the slot and the client's cap back at once (so a newcomer can
 * take them in the same loop iteration); the handles close later. */
static void conn_close(ke_conn *c) {
  ntsntp_uv_ke *ke = c->w->ke;
  if (c->closing)
    return;
  c->closing = 1;
  tier_set(c, T_NONE);
  if (c->counted)
    atomic_fetch_sub(&ke->active, 1);
  if (c->admitted && ke->s.release)
    ke->s.release(ke->s.accept_user, (const struct sockaddr *)&c->peer);
  c->counted = c->admitted = 0;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void on_drain_timer(uv_timer_t *t) { conn_close(t->data); }

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
  if (c->sess && (ntsntp_ke_session_want(c->sess) & NTSNTP_KE_DONE))
    count_latency(c->w, (double)(uv_hrtime() - c->accepted_ns) * 1e-9);
  c->shut.data = c;
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    conn_close(c);
    return;
  }
  /* Everything is written: closing it now loses the client nothing. */
  tier_set(c, T_DRAINING);
  uv_timer_start(&c->timer, on_drain_timer, DRAIN_MS, 0);
}

static void on_write(uv_write_t *req, int status) {
  ke_write *wr = (ke_write *)req;
  ke_conn *c = wr->c;
  ntsntp__mfree(wr);
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
  int wrote = 0;
  while ((n = ntsntp_ke_session_write(c->sess, buf, sizeof(buf))) > 0) {
    ke_write *wr = ntsntp__malloc(sizeof(*wr) + (size_t)n);
    uv_buf_t b;
    if (!wr) {
      conn_close(c);
      return;
    }
    memcpy(wr->data, buf, (size_t)n);
    wr->c = c;
    b = uv_buf_init((char *)wr->data, (unsigned)n);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
      ntsntp__mfree(wr);
      conn_close(c);
      return;
    }
    c->pending_writes++;
    wrote = 1;
  }
  want = ntsntp_ke_session_want(c->sess);
  if (want & (NTSNTP_KE_CLOSE | NTSNTP_KE_DONE)) {
    /* The request is complete (or failed): writing the response. */
    if (!c->draining) {
      if (c->tier != T_NONE)
        snapshot(c->w); /* its outcome, counted now */
      tier_set(c, T_NONE);
    }
    if (c->pending_writes == 0)
      drain(c);
  } else if (wrote && c->tier == T_PARTIAL) {
    tier_set(c, T_HANDSHAKE); /* the ClientHello was whole: answered */
  }
}

static void arm_timer(ke_conn *c);

static void on_timer(uv_timer_t *t) {
  ke_conn *c = t->data;
  if (!c->sess) { /* before any TLS: nothing, or a few bytes, came */
    if (c->n_head)
      COUNT(c->w, header_timeouts);
    else
      COUNT(c->w, first_byte_timeouts);
    conn_close(c);
    return;
  }
  ntsntp_ke_session_handle_expiry(c->sess, uv_now(&c->w->loop));
  pump(c);
  if (!c->closing && !c->draining)
    arm_timer(c);
}

static void arm_timer(ke_conn *c) {
  const ntsntp_uv_ke_settings *s = &c->w->ke->s;
  uint64_t exp, now = uv_now(&c->w->loop);
  if (c->sess) {
    exp = ntsntp_ke_session_expiry(c->sess);
  } else if (c->n_head) {
    exp = c->accepted_ms + s->ke.timeout_ms;
  } else {
    uint32_t ms = s->first_byte_ms && s->first_byte_ms < s->ke.timeout_ms
                      ? s->first_byte_ms
                      : s->ke.timeout_ms;
    exp = c->accepted_ms + ms;
  }
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

/* A whole TLS record header: only now is TLS state made, with the
 * session's deadline counted from accept, and fed what came before. */
static int start_session(ke_conn *c) {
  char err[256];
  if (ntsntp_ke_session_new(&c->sess, c->w->srv, c->accepted_ms, err,
                            sizeof(err)) < 0) {
    /* Out of memory or TLS: said once per 1024 so that a flood does not
     * flood the log as well. */
    if (c->w->session_failures++ % 1024 == 0)
      logf_(c->w->ke, NTSNTP_LOG_WARN,
            "NTS-KE: connection dropped: %s (%llu so far)", err,
            (unsigned long long)c->w->session_failures);
    conn_close(c);
    return -1;
  }
  tier_set(c, T_PARTIAL);
  arm_timer(c);
  if (c->closing)
    return -1;
  if (c->n_head)
    ntsntp_ke_session_read(c->sess, c->head, c->n_head);
  return 0;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  ke_conn *c = st->data;
  if (nread == 0 || c->closing)
    return;
  if (c->draining) {
    if (nread < 0)
      conn_close(c);
    return;
  }
  if (nread < 0 && (nread != UV_EOF || !c->sess)) {
    conn_close(c); /* an error, or EOF before any TLS */
    return;
  }
  if (!c->sess && c->n_head + (size_t)nread < TLS_HEADER) {
    memcpy(c->head + c->n_head, buf->base, (size_t)nread);
    c->n_head += (size_t)nread;
    tier_set(c, T_PARTIAL);
    arm_timer(c); /* now the request deadline */
    return;
  }
  if (!c->sess && start_session(c) < 0)
    return;
  if (nread == UV_EOF)
    ntsntp_ke_session_read(c->sess, NULL, 0);
  else
    ntsntp_ke_session_read(c->sess, (const uint8_t *)buf->base, (size_t)nread);
  pump(c);
}

/* A connection refused by |accept|, counted under its reason. */
static void count_refusal(ke_worker *w, int verdict) {
  uv_mutex_lock(&w->lock);
  w->cnt.dropped++;
  switch (verdict) {
  case NTSNTP_UV_KE_RATELIMITED:
    w->cnt.refused_ratelimit++;
    break;
  case NTSNTP_UV_KE_CLIENT_FULL:
    w->cnt.refused_client_cap++;
    break;
  case NTSNTP_UV_KE_NETWORK_FULL:
    w->cnt.refused_network_cap++;
    break;
  default:
    w->cnt.refused_denied++;
  }
  uv_mutex_unlock(&w->lock);
}

/* After each poll: a new batch of accepts, starting with the listeners
 * that had to wait (libuv watches them again once uv_accept is called). */
static void on_resume(uv_check_t *h) {
  ke_worker *w = h->data;
  size_t i, n = w->n_deferred;
  w->turn_accepts = 0;
  w->n_deferred = 0;
  for (i = 0; i < n; i++)
    if (!uv_is_closing((uv_handle_t *)w->deferred[i]))
      on_connection(w->deferred[i], 0);
}

static void on_connection(uv_stream_t *server, int status) {
  ke_worker *w = server->data;
  ntsntp_uv_ke *ke = w->ke;
  ke_conn *c;
  int plen, v;
  if (status < 0) { /* accept(2) failed (EMFILE...): libuv copes */
    COUNT(w, accept_errors);
    return;
  }
  if (++w->turn_accepts > ACCEPT_BATCH) {
    /* Not taken: libuv stops watching |server| until uv_accept. */
    w->deferred[w->n_deferred++] = server;
    return;
  }
  c = ntsntp__calloc(1, sizeof(*c));
  if (!c && w->spare_busy) {
    w->stalled = server; /* taken when the spare is free again */
    COUNT(w, accept_errors);
    return;
  }
  if (!c) {
    c = &w->spare;
    memset(c, 0, sizeof(*c));
    w->spare_busy = 1;
  }
  c->w = w;
  c->tier = T_NONE;
  uv_tcp_init(&w->loop, &c->tcp);
  uv_timer_init(&w->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  /* Nothing is counted before uv_accept succeeds: conn_close gives back
   * only what was taken. */
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || c == &w->spare) {
    COUNT(w, accept_errors);
    conn_close(c);
    return;
  }
  /* Judged before any TLS work: access control, rate limit, caps. */
  if (ke->s.accept) {
    plen = sizeof(c->peer);
    v = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen) < 0
            ? NTSNTP_UV_KE_REFUSE
            : ke->s.accept(ke->s.accept_user,
                           (const struct sockaddr *)&c->peer);
    if (v != NTSNTP_UV_KE_ADMIT) {
      count_refusal(w, v);
      conn_close(c);
      return;
    }
    c->admitted = 1;
  }
  /* A slot: every one taken means closing the least promising
   * connection of this thread (uv_ke.h), or refusing. */
  c->counted = 1;
  if (atomic_fetch_add(&ke->active, 1) >= ke->s.max_connections &&
      !evict_one(w)) {
    uv_mutex_lock(&w->lock);
    w->cnt.dropped++;
    w->cnt.refused_full++;
    uv_mutex_unlock(&w->lock);
    conn_close(c);
    return;
  }
  c->accepted_ms = uv_now(&w->loop);
  c->accepted_ns = uv_hrtime();
  COUNT(w, accepted);
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
    conn_close(c);
    return;
  }
  tier_set(c, T_IDLE);
  arm_timer(c);
}

static void close_walk(uv_handle_t *h, void *arg) {
  ke_worker *w = arg;
  if (uv_is_closing(h))
    return;
  if (h->data == w)
    uv_close(h, NULL); /* listener, async or check */
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
  sigset_t pipe;
  /* A write to a connection the client has closed raises SIGPIPE, whose
   * default action ends the process: any client could stop the server by
   * closing at the right moment.  Blocked here, the write fails with EPIPE
   * and the connection is closed; the embedder's disposition is left as
   * it is. */
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, NULL);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  atomic_fetch_add_explicit(&w->ke->n_exited, 1, memory_order_release);
  uv_async_send(&w->ke->exited);
}

uint16_t ntsntp_uv_ke_port(const ntsntp_uv_ke *ke, size_t idx) {
  return ke != NULL && idx < ke->n_fds ? ke->ports[idx] : 0;
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

void ntsntp_uv_ke_get_stats(const ntsntp_uv_ke *ke, ntsntp_uv_ke_stats *st) {
  unsigned i, k;
  memset(st, 0, sizeof(*st));
  for (i = 0; i < ke->n_workers; i++) {
    ke_worker *w = &ke->workers[i];
    const ntsntp_uv_ke_stats *c = &w->cnt;
    const uint64_t *src = (const uint64_t *)&w->snap;
    uint64_t *dst = (uint64_t *)&st->ke;
    uv_mutex_lock(&w->lock);
    st->accepted += c->accepted;
    st->dropped += c->dropped;
    st->refused_denied += c->refused_denied;
    st->refused_ratelimit += c->refused_ratelimit;
    st->refused_client_cap += c->refused_client_cap;
    st->refused_network_cap += c->refused_network_cap;
    st->refused_full += c->refused_full;
    st->evicted += c->evicted;
    st->first_byte_timeouts += c->first_byte_timeouts;
    st->header_timeouts += c->header_timeouts;
    st->accept_errors += c->accept_errors;
    for (k = 0; k < NTSNTP_UV_KE_LATENCY_BUCKETS; k++)
      st->latency_bucket[k] += c->latency_bucket[k];
    st->latency_count += c->latency_count;
    st->latency_sum += c->latency_sum;
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
  for (i = 0; i < ke->n_workers; i++)
    if (ke->workers[i].ke) /* initialised */
      uv_mutex_destroy(&ke->workers[i].lock);
  ntsntp__mfree(ke->workers);
  ntsntp__mfree(ke);
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
      if (fd < 0 && ke->s.n_listen == 0 && ss.ss_family == AF_INET6 &&
          (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
        /* The default listens on both families; a host without IPv6
         * still gets IPv4 (as the NTP workers do). */
        if (ke->s.log)
          ke->s.log(ke->s.log_user, NTSNTP_LOG_WARN,
                    "no IPv6 on this host: NTS-KE not served on [::]");
        ntsntp__errf(errbuf, errlen, "%s", "");
        break;
      }
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
/* Asks the first |n| threads to close everything; each ends when it has. */
static void signal_stop(ntsntp_uv_ke *ke, unsigned n) {
  unsigned t;
  for (t = 0; t < n; t++) {
    ke_worker *w = &ke->workers[t];
    uv_mutex_lock(&w->lock);
    w->stop = 1;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->async);
  }
}

/* Frees a worker whose loop is not running (any more). */
static void worker_clear(ke_worker *w) {
  if (!w->ke)
    return;
  uv_walk(&w->loop, close_walk, w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
  if (w->new_creds)
    ntsntp_ke_creds_unref(w->new_creds);
  ntsntp_ke_server_del(w->srv);
}

static int worker_init(ntsntp_uv_ke *ke, ke_worker *w, unsigned t) {
  size_t per = ke->n_fds / ke->n_workers, i;
  int rv = ntsntp_ke_server_new(&w->srv, &ke->s.ke, NULL, 0);
  if (rv)
    return rv;
  w->ke = ke;
  uv_mutex_init(&w->lock);
  uv_loop_init(&w->loop);
  w->loop.data = w;
  uv_async_init(&w->loop, &w->async, on_async);
  w->async.data = w;
  uv_check_init(&w->loop, &w->resume);
  w->resume.data = w;
  uv_check_start(&w->resume, on_resume);
  for (i = 0; i < per; i++) {
    /* fds are laid out address-major: address i, thread t. */
    size_t k = i * ke->n_workers + t;
    uv_tcp_t *l = &w->listeners[w->n_listeners++];
    uv_tcp_init(&w->loop, l);
    l->data = w;
    if (uv_tcp_open(l, ke->fds[k]) == 0)
      ke->fds[k] = -1; /* owned by the handle now */
    if (uv_listen((uv_stream_t *)l, LISTEN_BACKLOG, on_connection) < 0)
      return NTSNTP_ERR_IO;
  }
  return 0;
}

/* Clears the workers, whose threads have ended (or never ran), calls
 * |done| (the counters are still readable) and frees |ke|. */
static void on_exited_closed(uv_handle_t *h) {
  ntsntp_uv_ke *ke = h->data;
  unsigned t;
  for (t = 0; t < ke->n_workers; t++)
    worker_clear(&ke->workers[t]);
  if (ke->done)
    ke->done(ke->done_user);
  free_ke(ke);
}

static void on_exited(uv_async_t *h) {
  ntsntp_uv_ke *ke = h->data;
  unsigned t;
  if (ke->closing || !ke->stopping ||
      atomic_load_explicit(&ke->n_exited, memory_order_acquire) <
          ke->n_workers)
    return;
  for (t = 0; t < ke->n_workers; t++)
    uv_thread_join(&ke->workers[t].thread);
  ke->closing = 1;
  uv_close((uv_handle_t *)&ke->exited, on_exited_closed);
}

int ntsntp_uv_ke_start(uv_loop_t *loop, const ntsntp_uv_ke_settings *s,
                       ntsntp_uv_ke **out, char *errbuf, size_t errlen) {
  ntsntp_uv_ke_settings latest;
  ntsntp_uv_ke *ke;
  unsigned t, started = 0;
  size_t i;
  int rv;
  NTSNTP__SETTINGS_GET(s, latest, uv_ke, errbuf, errlen);
  if (!loop || !out || s->threads == 0 || s->threads > 8 ||
      s->max_connections == 0) {
    ntsntp__errf(errbuf, errlen, "NTS-KE server: %s",
                 !loop  ? "loop is NULL"
                 : !out ? "out is NULL"
                 : s->max_connections == 0
                     ? "max_connections is 0; fix: at least 1"
                     : "threads must be 1..8 (NTS_PROCESSES)");
    return NTSNTP_ERR_INVALID_ARG;
  }
  ke = ntsntp__calloc(1, sizeof(*ke));
  if (!ke) {
    ntsntp__errf(errbuf, errlen, "NTS-KE server: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  ke->s = *s;
  ke->n_workers = s->threads;
  for (i = 0; i < MAX_LISTEN; i++)
    ke->fds[i] = -1;
  ke->workers = ntsntp__calloc(ke->n_workers, sizeof(*ke->workers));
  if (!ke->workers || uv_async_init(loop, &ke->exited, on_exited) != 0) {
    ntsntp__mfree(ke->workers);
    ntsntp__mfree(ke);
    ntsntp__errf(errbuf, errlen, "NTS-KE server: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  ke->exited.data = ke;
  atomic_init(&ke->n_exited, 0);
  rv = bind_all(ke, errbuf, errlen);
  for (t = 0; rv == 0 && t < ke->n_workers; t++) {
    rv = worker_init(ke, &ke->workers[t], t);
    if (rv)
      ntsntp__errf(errbuf, errlen, "NTS-KE server setup failed: %s",
               ntsntp_strerror(rv));
  }
  for (t = 0; rv == 0 && t < ke->n_workers; t++, started++)
    if (uv_thread_create(&ke->workers[t].thread, worker_main,
                         &ke->workers[t])) {
      ntsntp__errf(errbuf, errlen, "cannot start an NTS-KE thread");
      rv = NTSNTP_ERR_NOMEM;
    }
  if (rv) {
    /* The error path may block briefly: the threads that run are joined
     * here; the rest is freed from |loop| once |exited| is closed. */
    signal_stop(ke, started);
    for (t = 0; t < started; t++)
      uv_thread_join(&ke->workers[t].thread);
    ke->closing = 1;
    uv_close((uv_handle_t *)&ke->exited, on_exited_closed);
    return rv;
  }
  logf_(ke, NTSNTP_LOG_INFO,
        "NTS-KE server on TCP port %u (%u thread%s, at most %u connections; "
        "first byte within %u ms, request within %u ms)",
        ke->ports[0], ke->n_workers, ke->n_workers == 1 ? "" : "s",
        s->max_connections,
        s->first_byte_ms && s->first_byte_ms < s->ke.timeout_ms
            ? s->first_byte_ms
            : s->ke.timeout_ms,
        s->ke.timeout_ms);
  *out = ke;
  return 0;
}

void ntsntp_uv_ke_stop(ntsntp_uv_ke *ke, void (*done)(void *user),
                       void *user) {
  if (!ke || ke->stopping)
    return;
  ke->stopping = 1;
  ke->done = done;
  ke->done_user = user;
  signal_stop(ke, ke->n_workers);
}
