/* libntsntp runtime: NTS-KE (TCP) and NTP (UDP) client queries on libuv. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h> /* before linux/errqueue.h, which needs struct timespec */
#include <unistd.h>

#include <linux/errqueue.h>
#include <linux/net_tstamp.h>

#include "errtext.h"
#include "ntsntp/uv_client.h"
#include "query.h"
#include "sock.h"
#include "../settings.h"
#include "../mem.h"

/* After the response: how long to wait for the server's EOF. */
#define DRAIN_MS 1000
#define KE_READ_BUF 4096
#define NTP_BUF 2048
#define HOSTPORT_LEN (NTSNTP_KE_MAX_SERVER_LEN + 16)

/* "host:port", "[v6]:port". */
static void hostport(char *buf, size_t len, const char *host, uint16_t port) {
  ntsntp__errf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* libuv errors with the C library's wording ("Connection refused"). */
static const char *uv_text(int err) {
  /* On Unix, libuv errors are negated errno values, except the UV_EAI_*
   * resolver codes (-3000 and below). */
  if (err < 0 && err > -3000)
    return strerror(-err);
  return uv_strerror(err);
}

static socklen_t sa_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in);
}

static uint16_t sa_port(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static int start_resolve(uv_loop_t *loop, uv_getaddrinfo_t *req,
                         uv_getaddrinfo_cb cb, const char *host, uint16_t port,
                         int family, int socktype) {
  struct addrinfo hints;
  char service[8];
  /* No AI_ADDRCONFIG: it hides loopback addresses on hosts whose only
   * interface is lo. */
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(service, sizeof(service), "%u", port);
  return uv_getaddrinfo(loop, req, cb, host, service, &hints);
}

/* ======================================================================
 * NTS-KE over TCP
 * ====================================================================== */

typedef struct kq_conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_shutdown_t sreq;
  ntsntp_uv_ke_query *q;
  int connected, closing;
} kq_conn;

typedef struct kq_write {
  uv_write_t req;
  uint8_t data[];
} kq_write;

struct ntsntp_uv_ke_query {
  uv_loop_t *loop;
  ntsntp_uv_ke_query_cb cb;
  void *user;
  char host[NTSNTP_KE_MAX_SERVER_LEN + 1];
  char tls_name[NTSNTP_KE_MAX_SERVER_LEN + 1];
  char hostport[HOSTPORT_LEN];
  uint16_t port;
  int family;
  uint32_t connect_timeout_ms;
  uint64_t deadline, conn_deadline, drain_deadline;
  ntsntp_ke_client *kc;
  int init_err; /* ntsntp_ke_client_new failure, reported from the timer */
  char init_text[384];
  uv_getaddrinfo_t gai;
  int gai_pending;
  struct addrinfo *ai, *next;
  uv_timer_t timer;
  int timer_closing;
  void (*freed)(void *); /* ntsntp__uv_ke_query_on_free */
  void *freed_user;
  kq_conn *conn;   /* the current attempt */
  unsigned nconns; /* attempts whose handle is not closed yet */
  int done;        /* reported or cancelled: |cb| is never called again */
  int draining;    /* shut down our side, reading until EOF */
  struct sockaddr_storage peer;
  int have_peer;
  char last_err[160];
  uint8_t rbuf[KE_READ_BUF];
};

static void kq_arm(ntsntp_uv_ke_query *q);
static void kq_try_next(ntsntp_uv_ke_query *q);

static void kq_timer_closed(uv_handle_t *h) {
  ntsntp_uv_ke_query *q = h->data;
  void (*freed)(void *) = q->freed;
  void *user = q->freed_user;
  if (q->ai)
    uv_freeaddrinfo(q->ai);
  ntsntp_ke_client_del(q->kc);
  ntsntp__mfree(q);
  if (freed)
    freed(user);
}

void ntsntp__uv_ke_query_on_free(ntsntp_uv_ke_query *q,
                                 void (*freed)(void *user), void *user) {
  q->freed = freed;
  q->freed_user = user;
}

/* Frees |q| once nothing of it is pending any more. */
static void kq_maybe_free(ntsntp_uv_ke_query *q) {
  if (!q->done || q->nconns || q->gai_pending || q->timer_closing)
    return;
  q->timer_closing = 1;
  uv_close((uv_handle_t *)&q->timer, kq_timer_closed);
}

static void kq_conn_closed(uv_handle_t *h) {
  kq_conn *c = h->data;
  ntsntp_uv_ke_query *q = c->q;
  if (q->conn == c)
    q->conn = NULL;
  ntsntp__mfree(c);
  q->nconns--;
  kq_maybe_free(q);
}

static void kq_conn_close(kq_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, kq_conn_closed);
}

/* Reports once; the connection then closes cleanly or is aborted. */
static void kq_report(ntsntp_uv_ke_query *q, int status, const char *text) {
  ntsntp_uv_ke_outcome o;
  ntsntp_ke_result r;
  struct sockaddr_storage ntp;

  if (q->done)
    return;
  q->done = 1;
  memset(&o, 0, sizeof(o));
  memset(&r, 0, sizeof(r));
  o.status = status;
  o.errtext = text ? text : "";
  o.peer = q->have_peer ? (const struct sockaddr *)&q->peer : NULL;
  if (status == 0) {
    o.result = &r;
    o.status = ntsntp_ke_client_result(q->kc, &r);
    if (o.status != 0)
      o.result = NULL;
    /* The client copies its TLS name when no Server record came. */
    else if (q->have_peer && strcmp(r.ntp_server, q->tls_name) == 0) {
      ntp = q->peer;
      set_port(&ntp, r.ntp_port);
      o.ntp_addr = (const struct sockaddr *)&ntp;
    }
  }
  q->cb(q->user, &o);
  ntsntp_ke_result_clear(&r);
}

static void kq_fail(ntsntp_uv_ke_query *q, int status, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static void kq_fail(ntsntp_uv_ke_query *q, int status, const char *f, ...) {
  char text[512];
  va_list ap;
  va_start(ap, f);
  vsnprintf(text, sizeof(text), f, ap);
  va_end(ap);
  kq_report(q, status, text);
}

/* Reports the KE client's outcome, with a sentence around its reason. */
static void kq_report_client(ntsntp_uv_ke_query *q) {
  ntsntp_ke_result r;
  int rv = ntsntp_ke_client_result(q->kc, &r);
  const char *t = ntsntp_ke_client_errtext(q->kc);
  static const char hs[] = "handshake: ";

  ntsntp_ke_result_clear(&r);
  if (rv == 0)
    kq_report(q, 0, NULL);
  else if (rv == NTSNTP_ERR_TLS && strncmp(t, hs, sizeof(hs) - 1) == 0) {
    /* GnuTLS ends its verification text with a space. */
    int n = (int)strlen(t + sizeof(hs) - 1);
    while (n > 0 && t[sizeof(hs) - 1 + (size_t)n - 1] == ' ')
      n--;
    kq_fail(q, rv, "TLS handshake with %s failed: %.*s", q->hostport, n,
            t + sizeof(hs) - 1);
  } else if (rv == NTSNTP_ERR_TIMEOUT)
    kq_fail(q, rv, "NTS-KE with %s failed: Timeout reached", q->hostport);
  else
    kq_fail(q, rv, "NTS-KE with %s failed: %s", q->hostport, t);
}

static void kq_on_write(uv_write_t *req, int status) {
  (void)status; /* a failed write shows up as a read error or EOF */
  ntsntp__mfree(req);
}

/* Sends what the client has to say.  Returns 0 or a libuv error. */
static int kq_flush(kq_conn *c) {
  uint8_t buf[NTSNTP_KE_MAX_MESSAGE + 1024];
  ntsntp_ssize n;
  while ((n = ntsntp_ke_client_write(c->q->kc, buf, sizeof(buf))) > 0) {
    kq_write *wr = ntsntp__malloc(sizeof(*wr) + (size_t)n);
    uv_buf_t b;
    int rv;
    if (!wr)
      return UV_ENOMEM;
    memcpy(wr->data, buf, (size_t)n);
    b = uv_buf_init((char *)wr->data, (unsigned)n);
    rv = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, kq_on_write);
    if (rv < 0) {
      ntsntp__mfree(wr);
      return rv;
    }
  }
  return 0;
}

static void kq_on_shutdown(uv_shutdown_t *req, int status) {
  kq_conn *c = req->data;
  if (status < 0)
    kq_conn_close(c);
}

/*
 * The exchange is over (reported): send what is left (close_notify or an
 * alert), shut down our side and read until the server's EOF, so that no
 * unread byte makes the kernel reset the connection and destroy what we
 * sent last.  Bounded by DRAIN_MS.
 */
static void kq_drain(ntsntp_uv_ke_query *q) {
  kq_conn *c = q->conn;
  if (!c || c->closing || q->draining)
    return;
  if (!c->connected || kq_flush(c) < 0) {
    kq_conn_close(c);
    return;
  }
  q->draining = 1;
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, kq_on_shutdown) < 0) {
    kq_conn_close(c);
    return;
  }
  q->drain_deadline = uv_now(q->loop) + DRAIN_MS;
  kq_arm(q);
}

/* Writes pending bytes; reports and drains once the client has finished. */
static void kq_pump(ntsntp_uv_ke_query *q) {
  kq_conn *c = q->conn;
  int rv = kq_flush(c);
  if (rv < 0) {
    kq_fail(q, rv == UV_ENOMEM ? NTSNTP_ERR_NOMEM : NTSNTP_ERR_IO,
            "NTS-KE with %s failed: %s", q->hostport, uv_text(rv));
    kq_conn_close(c);
    return;
  }
  if (ntsntp_ke_client_want(q->kc) & NTSNTP_KE_CLOSE) {
    kq_report_client(q);
    kq_drain(q);
  }
}

static void kq_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  kq_conn *c = h->data;
  (void)hint;
  *buf = uv_buf_init((char *)c->q->rbuf, sizeof(c->q->rbuf));
}

static void kq_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  kq_conn *c = st->data;
  ntsntp_uv_ke_query *q = c->q;
  if (nread == 0 || c->closing)
    return;
  if (q->draining) {
    /* Discard; EOF or an error ends the drain. */
    if (nread < 0)
      kq_conn_close(c);
    return;
  }
  if (nread == UV_EOF)
    ntsntp_ke_client_read(q->kc, NULL, 0);
  else if (nread < 0) {
    kq_fail(q, NTSNTP_ERR_IO, "NTS-KE with %s failed: %s", q->hostport,
            uv_text((int)nread));
    kq_conn_close(c);
    return;
  } else
    ntsntp_ke_client_read(q->kc, (const uint8_t *)buf->base, (size_t)nread);
  kq_pump(q);
  if (nread == UV_EOF && q->conn == c)
    kq_conn_close(c);
}

static void kq_on_connect(uv_connect_t *req, int status) {
  kq_conn *c = req->data;
  ntsntp_uv_ke_query *q = c->q;
  int len = sizeof(q->peer);
  if (status == UV_ECANCELED || c->closing)
    return;
  if (status < 0) {
    snprintf(q->last_err, sizeof(q->last_err), "%s", uv_text(status));
    kq_conn_close(c);
    q->conn = NULL;
    kq_try_next(q);
    return;
  }
  c->connected = 1;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&q->peer, &len) == 0)
    q->have_peer = 1;
  uv_tcp_nodelay(&c->tcp, 1);
  status = uv_read_start((uv_stream_t *)&c->tcp, kq_alloc, kq_on_read);
  if (status < 0) {
    kq_fail(q, NTSNTP_ERR_IO, "NTS-KE with %s failed: %s", q->hostport,
            uv_text(status));
    kq_conn_close(c);
    return;
  }
  kq_pump(q);
  kq_arm(q);
}

/* Connects to the next resolved address, or reports the last failure. */
static void kq_try_next(ntsntp_uv_ke_query *q) {
  while (q->next) {
    struct addrinfo *ai = q->next;
    kq_conn *c;
    int rv;
    q->next = ai->ai_next;
    c = ntsntp__calloc(1, sizeof(*c));
    if (!c) {
      kq_fail(q, NTSNTP_ERR_NOMEM, "Could not connect to %s: %s", q->hostport,
              strerror(ENOMEM));
      return;
    }
    c->q = q;
    uv_tcp_init(q->loop, &c->tcp);
    q->nconns++;
    c->tcp.data = c->creq.data = c;
    q->conn = c;
    rv = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, kq_on_connect);
    if (rv == 0) {
      q->conn_deadline = uv_now(q->loop) + q->connect_timeout_ms;
      kq_arm(q);
      return;
    }
    snprintf(q->last_err, sizeof(q->last_err), "%s", uv_text(rv));
    kq_conn_close(c);
    q->conn = NULL;
  }
  kq_fail(q, NTSNTP_ERR_IO, "Could not connect to %s: %s", q->hostport,
          q->last_err[0] ? q->last_err : "no address");
}

static void kq_on_resolved(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res) {
  ntsntp_uv_ke_query *q = req->data;
  q->gai_pending = 0;
  q->ai = res;
  if (q->done) {
    kq_maybe_free(q);
    return;
  }
  if (status < 0) {
    kq_fail(q, NTSNTP_ERR_IO, "Could not resolve %s: %s", q->host,
            uv_text(status));
    kq_maybe_free(q);
    return;
  }
  q->next = res;
  kq_try_next(q);
  kq_maybe_free(q);
}

static void kq_on_timer(uv_timer_t *t) {
  ntsntp_uv_ke_query *q = t->data;
  uint64_t now = uv_now(q->loop);
  kq_conn *c = q->conn;

  if (q->init_err) {
    kq_report(q, q->init_err, q->init_text);
  } else if (q->done) {
    /* Draining ran out of time. */
    if (c && now >= q->drain_deadline)
      kq_conn_close(c);
  } else if (now >= q->deadline) {
    if (q->kc)
      ntsntp_ke_client_handle_expiry(q->kc, now);
    if (c && c->connected)
      kq_fail(q, NTSNTP_ERR_TIMEOUT, "NTS-KE with %s failed: Timeout reached",
              q->hostport);
    else
      kq_fail(q, NTSNTP_ERR_TIMEOUT, "Could not %s %s: Timeout reached",
              q->gai_pending ? "resolve" : "connect to",
              q->gai_pending ? q->host : q->hostport);
    if (c)
      kq_conn_close(c);
  } else if (c && !c->connected && now >= q->conn_deadline) {
    snprintf(q->last_err, sizeof(q->last_err), "%s", "Timeout reached");
    kq_conn_close(c);
    q->conn = NULL;
    kq_try_next(q);
  }
  if (q->done) {
    if (q->gai_pending)
      uv_cancel((uv_req_t *)&q->gai);
    kq_maybe_free(q);
  } else {
    kq_arm(q);
  }
}

static void kq_arm(ntsntp_uv_ke_query *q) {
  uint64_t now = uv_now(q->loop), when;
  if (q->timer_closing)
    return;
  if (q->done)
    when = q->drain_deadline;
  else {
    when = q->deadline;
    if (q->conn && !q->conn->connected && q->conn_deadline < when)
      when = q->conn_deadline;
  }
  uv_timer_start(&q->timer, kq_on_timer, when > now ? when - now : 0, 0);
}

static void uv_ke_query_fill(void *p) {
  ntsntp_uv_ke_query_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->port = NTSNTP_KE_PORT;
  s->family = AF_UNSPEC;
  s->timeout_ms = 10000;
  s->connect_timeout_ms = 3000;
  ntsntp_ke_client_settings_default(&s->ke);
}
NTSNTP__SETTINGS(ntsntp_uv_ke_query_settings, uv_ke_query, ke)

int ntsntp_uv_ke_query_start(uv_loop_t *loop,
                             const ntsntp_uv_ke_query_settings *s,
                             ntsntp_uv_ke_query_cb cb, void *user,
                             ntsntp_uv_ke_query **out, char *errbuf,
                             size_t errlen) {
  ntsntp_uv_ke_query_settings latest;
  ntsntp_ke_client_settings ks;
  ntsntp_uv_ke_query *q;
  int rv;

  if (out)
    *out = NULL;
  NTSNTP__SETTINGS_GET(s, latest, uv_ke_query, errbuf, errlen);
  if (!loop || !cb || !s->host || !s->host[0] ||
      strlen(s->host) > NTSNTP_KE_MAX_SERVER_LEN || s->timeout_ms == 0 ||
      (s->family != AF_UNSPEC && s->family != AF_INET &&
       s->family != AF_INET6)) {
    ntsntp__errf(errbuf, errlen, "NTS-KE query: %s",
                 !loop ? "loop is NULL"
                 : !cb ? "callback is NULL"
                 : !s->host || !s->host[0] ||
                         strlen(s->host) > NTSNTP_KE_MAX_SERVER_LEN
                     ? "host missing or longer than 255 characters"
                 : s->timeout_ms == 0 ? "timeout_ms is 0; fix: start from "
                                        "ntsntp_uv_ke_query_settings_default"
                                      : "family is not AF_UNSPEC, AF_INET or "
                                        "AF_INET6");
    return NTSNTP_ERR_INVALID_ARG;
  }
  q = ntsntp__calloc(1, sizeof(*q));
  if (!q) {
    ntsntp__errf(errbuf, errlen, "NTS-KE query: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  q->loop = loop;
  q->cb = cb;
  q->user = user;
  strcpy(q->host, s->host);
  q->port = s->port ? s->port : NTSNTP_KE_PORT;
  q->family = s->family;
  q->connect_timeout_ms = s->connect_timeout_ms ? s->connect_timeout_ms : 3000;
  hostport(q->hostport, sizeof(q->hostport), q->host, q->port);

  ks = s->ke;
  if (!ks.server_name)
    ks.server_name = q->host;
  if (strlen(ks.server_name) > NTSNTP_KE_MAX_SERVER_LEN) {
    ntsntp__mfree(q);
    ntsntp__errf(errbuf, errlen,
                 "NTS-KE query: ke.server_name is longer "
                 "than 255 characters");
    return NTSNTP_ERR_INVALID_ARG;
  }
  strcpy(q->tls_name, ks.server_name);
  ks.timeout_ms = s->timeout_ms;
  uv_update_time(loop);
  q->deadline = uv_now(loop) + s->timeout_ms;
  rv = ntsntp_ke_client_new(&q->kc, &ks, uv_now(loop), errbuf, errlen);
  if (rv == NTSNTP_ERR_INVALID_ARG || rv == NTSNTP_ERR_NOMEM) {
    ntsntp__mfree(q);
    return rv;
  }
  /* Other failures are reported through |cb|, with init_text. */
  ntsntp__errf(errbuf, errlen, "%s", "");
  uv_timer_init(loop, &q->timer);
  q->timer.data = q;
  if (rv != 0) {
    /* Reported from the loop, so |cb| never runs inside this call. */
    q->init_err = rv;
    if (rv == NTSNTP_ERR_BAD_CONFIG) {
      const char *why = "no usable certificate in it";
      if (ks.ca_file && access(ks.ca_file, R_OK) != 0)
        why = strerror(errno);
      else if (!ks.ca_file)
        why = "none found";
      ntsntp__errf(q->init_text, sizeof(q->init_text),
                   "Could not load trusted certificates from %s: %s",
                   ks.ca_file ? ks.ca_file : "the system store", why);
    } else
      ntsntp__errf(q->init_text, sizeof(q->init_text),
                   "NTS-KE with %s failed: %s", q->hostport,
                   ntsntp_strerror(rv));
    uv_timer_start(&q->timer, kq_on_timer, 0, 0);
  } else {
    q->gai.data = q;
    rv = start_resolve(loop, &q->gai, kq_on_resolved, q->host, q->port,
                       q->family, SOCK_STREAM);
    if (rv < 0) {
      q->init_err = NTSNTP_ERR_IO;
      ntsntp__errf(q->init_text, sizeof(q->init_text),
                   "Could not resolve %s: %s", q->host, uv_text(rv));
      uv_timer_start(&q->timer, kq_on_timer, 0, 0);
    } else {
      q->gai_pending = 1;
      kq_arm(q);
    }
  }
  if (out)
    *out = q;
  return 0;
}

void ntsntp_uv_ke_query_cancel(ntsntp_uv_ke_query *q) {
  if (!q || q->done)
    return;
  q->done = 1;
  if (q->gai_pending)
    uv_cancel((uv_req_t *)&q->gai);
  if (q->conn)
    kq_conn_close(q->conn);
  uv_timer_stop(&q->timer);
  kq_maybe_free(q);
}

/* ======================================================================
 * NTP over UDP
 * ====================================================================== */

/* Room for SCM_TIMESTAMPING (three timespecs) and whatever else comes. */
typedef union nq_cbuf {
  struct cmsghdr align;
  uint8_t b[CMSG_SPACE(sizeof(struct scm_timestamping)) + 128];
} nq_cbuf;

struct ntsntp_uv_ntp_query {
  uv_loop_t *loop;
  ntsntp_uv_ntp_query_cb cb;
  void *user;
  char host[NTSNTP_KE_MAX_SERVER_LEN + 1];
  char where[HOSTPORT_LEN + 64]; /* "host:port" or "host (addr:port)" */
  uint16_t port;
  int family;
  struct sockaddr_storage addr;
  int have_addr;
  uint32_t timeout_ms;
  unsigned attempts;
  ntsntp_client_params params;
  uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];
  uint8_t cookies[NTSNTP_CLIENT_MAX_COOKIES][NTSNTP_COOKIE_MAX_LEN];
  size_t cookie_len[NTSNTP_CLIENT_MAX_COOKIES];
  size_t ncookies;
  unsigned placeholders;
  uv_getaddrinfo_t gai;
  int gai_pending;
  int fd;
  uv_poll_t poll;
  int poll_open;
  uv_timer_t timer;
  int timer_closing;
  void (*freed)(void *); /* ntsntp__uv_ntp_query_on_free */
  void *freed_user;
  int started; /* the first timer run has happened */
  int done;
  ntsntp_client_exchange ex;
  uint64_t t1, t4;
  int64_t t1_ns;        /* the clock read before the send */
  int xleave;           /* transmit timestamps asked for */
  uint32_t tx_key;      /* OPT_ID of the last request (all are stamped) */
  uint32_t tx_key_next;
  int tx_key_ok;        /* every send so far counted: tx_key is exact */
  ntsntp_ts_source tx_src;
  ntsntp_client_xleave xl;
  unsigned requests, cookies_used;
  int last_errno;
  ntsntp_client_sample sample;
  uint8_t buf[NTP_BUF];
};

static void nq_timer_closed(uv_handle_t *h) {
  ntsntp_uv_ntp_query *q = h->data;
  void (*freed)(void *) = q->freed;
  void *user = q->freed_user;
  ntsntp_secure_clear(q, sizeof(*q));
  ntsntp__mfree(q);
  if (freed)
    freed(user);
}

void ntsntp__uv_ntp_query_on_free(ntsntp_uv_ntp_query *q,
                                  void (*freed)(void *user), void *user) {
  q->freed = freed;
  q->freed_user = user;
}

static void nq_maybe_free(ntsntp_uv_ntp_query *q) {
  if (!q->done || q->poll_open || q->gai_pending || q->timer_closing)
    return;
  q->timer_closing = 1;
  uv_close((uv_handle_t *)&q->timer, nq_timer_closed);
}

static void nq_poll_closed(uv_handle_t *h) {
  ntsntp_uv_ntp_query *q = h->data;
  close(q->fd);
  q->fd = -1;
  q->poll_open = 0;
  nq_maybe_free(q);
}

/* Marks |q| done and starts closing its handles. */
static void nq_teardown(ntsntp_uv_ntp_query *q) {
  q->done = 1;
  ntsntp_client_exchange_clear(&q->ex);
  uv_timer_stop(&q->timer);
  if (q->gai_pending)
    uv_cancel((uv_req_t *)&q->gai);
  if (q->poll_open && !uv_is_closing((uv_handle_t *)&q->poll))
    uv_close((uv_handle_t *)&q->poll, nq_poll_closed);
  else if (!q->poll_open && q->fd >= 0) {
    close(q->fd);
    q->fd = -1;
  }
  nq_maybe_free(q);
}

static void nq_report(ntsntp_uv_ntp_query *q, int status, ntsntp_ts_source src,
                      const char *f, ...) __attribute__((format(printf, 4, 5)));
static void nq_report(ntsntp_uv_ntp_query *q, int status, ntsntp_ts_source src,
                      const char *f, ...) {
  ntsntp_uv_ntp_outcome o;
  char text[512] = "";
  va_list ap;

  if (q->done)
    return;
  if (f) {
    va_start(ap, f);
    vsnprintf(text, sizeof(text), f, ap);
    va_end(ap);
  }
  memset(&o, 0, sizeof(o));
  o.status = status;
  o.errtext = text;
  if (status == 0 || status == NTSNTP_ERR_KOD || status == NTSNTP_ERR_NAK)
    o.sample = &q->sample;
  o.rx_source = src;
  o.peer = q->have_addr ? (const struct sockaddr *)&q->addr : NULL;
  o.requests = q->requests;
  o.cookies_used = q->cookies_used;
  o.t1 = q->t1;
  o.t4 = q->t4;
  o.tx_source = q->tx_src;
  q->done = 1; /* no cancel from inside the callback */
  q->cb(q->user, &o);
  nq_teardown(q);
}

static void nq_arm(ntsntp_uv_ntp_query *q, uint64_t ms);

/* Longest a transmit timestamp may lag the clock read before the send. */
#define MAX_TX_DELAY_NS 1000000000LL

/* Reads the error queue: the kernel's transmit timestamps of our
 * requests.  The one of the last request replaces t1 if it is for sure
 * its own (numbered by OPT_ID, no send lost since the socket opened, and
 * taken after the clock read before the send).  Returns the messages
 * read. */
static int nq_errqueue(ntsntp_uv_ntp_query *q) {
  int got = 0;
  for (;;) {
    union {
      struct cmsghdr align;
      uint8_t b[CMSG_SPACE(sizeof(struct scm_timestamping)) +
                CMSG_SPACE(sizeof(struct sock_extended_err) +
                           sizeof(struct sockaddr_in6)) +
                64];
    } cb;
    uint8_t data[64];
    struct iovec iov = {data, sizeof(data)};
    struct msghdr mh;
    struct cmsghdr *cm;
    struct scm_timestamping t;
    struct sock_extended_err ee;
    int have_ts = 0, have_ee = 0;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cb.b;
    mh.msg_controllen = sizeof(cb.b);
    if (recvmsg(q->fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
      if (errno == EINTR)
        continue;
      return got;
    }
    got++;
    for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING &&
          cm->cmsg_len >= CMSG_LEN(sizeof(t))) {
        memcpy(&t, CMSG_DATA(cm), sizeof(t));
        have_ts = t.ts[0].tv_sec != 0 || t.ts[0].tv_nsec != 0;
      } else if (((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
                  (cm->cmsg_level == SOL_IPV6 &&
                   cm->cmsg_type == IPV6_RECVERR)) &&
                 cm->cmsg_len >= CMSG_LEN(sizeof(ee))) {
        memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
        have_ee = ee.ee_errno == ENOMSG &&
                  ee.ee_origin == SO_EE_ORIGIN_TIMESTAMPING &&
                  ee.ee_info == SCM_TSTAMP_SND;
      }
    }
    if (have_ts && have_ee && q->tx_key_ok && q->requests > 0 &&
        ee.ee_data == q->tx_key && q->tx_src == NTSNTP_TS_DAEMON) {
      int64_t d = (int64_t)t.ts[0].tv_sec * 1000000000 + t.ts[0].tv_nsec -
                  q->t1_ns;
      /* Only while the response has not been taken yet: t1 is used
       * then. */
      if (d >= 0 && d <= MAX_TX_DELAY_NS) {
        q->t1 = ntsntp_ts_from_timespec(&t.ts[0]);
        q->tx_src = NTSNTP_TS_KERNEL;
      }
    }
  }
}

/* Sends the next request.  Returns 0, or reports and returns -1. */
static int nq_send(ntsntp_uv_ntp_query *q) {
  ntsntp_client_params p = q->params;
  struct timespec ts;
  ntsntp_ssize n;
  ssize_t sent;
  int tries;

  if (p.aead) {
    unsigned ph = q->placeholders + q->requests;
    p.cookie = q->cookies[q->cookies_used];
    p.cookie_len = q->cookie_len[q->cookies_used];
    p.placeholders =
        ph < NTSNTP_CLIENT_MAX_COOKIES - 1 ? ph : NTSNTP_CLIENT_MAX_COOKIES - 1;
  }
  n = ntsntp_client_request(&q->ex, &p, q->buf, sizeof(q->buf));
  if (n < 0) {
    nq_report(q, (int)n, NTSNTP_TS_DAEMON, "Could not build a request: %s",
              ntsntp_strerror((int)n));
    return -1;
  }
  if (p.aead)
    q->cookies_used++;
  /* An ICMP error from an earlier request is reported by the next send on
   * a connected socket; it consumed the error, so send once more. */
  for (tries = 0; tries < 2; tries++) {
    clock_gettime(CLOCK_REALTIME, &ts);
    q->t1 = ntsntp_ts_from_timespec(&ts);
    q->t1_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    q->tx_src = NTSNTP_TS_DAEMON;
    sent = send(q->fd, q->buf, (size_t)n, 0);
    if (q->xleave) {
      /* Each datagram the kernel took got the next number; a failed send
       * may or may not have used one (kernel versions differ): from then
       * on no timestamp is trusted. */
      if (sent == n)
        q->tx_key = q->tx_key_next++;
      else
        q->tx_key_ok = 0;
    }
    if (sent == n)
      break;
    if (sent < 0 && errno != ECONNREFUSED && errno != EAGAIN &&
        errno != EINTR) {
      nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON, "Could not send to %s: %s",
                q->where, strerror(errno));
      return -1;
    }
    if (sent < 0)
      q->last_errno = errno;
  }
  q->requests++;
  if (q->xleave)
    nq_errqueue(q); /* software timestamps are usually there already */
  nq_arm(q, q->timeout_ms);
  return 0;
}

/* Kernel RX timestamp of a datagram, or 0 with the source left DAEMON. */
static int nq_cmsg_ts(struct msghdr *mh, struct timespec *ts) {
  struct cmsghdr *cm;
  for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET)
      continue;
    if (cm->cmsg_type == SCM_TIMESTAMPING &&
        cm->cmsg_len >= CMSG_LEN(sizeof(struct scm_timestamping))) {
      struct scm_timestamping t;
      memcpy(&t, CMSG_DATA(cm), sizeof(t));
      /* ts[0] is the software stamp; zero means none was taken. */
      if (t.ts[0].tv_sec || t.ts[0].tv_nsec) {
        *ts = t.ts[0];
        return 1;
      }
    } else if (cm->cmsg_type == SCM_TIMESTAMPNS &&
               cm->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
      memcpy(ts, CMSG_DATA(cm), sizeof(*ts));
      if (ts->tv_sec || ts->tv_nsec)
        return 1;
    }
  }
  return 0;
}

static const char *kod_text(uint32_t code, char *buf) {
  int i;
  for (i = 0; i < 4; i++) {
    char ch = (char)(code >> (24 - 8 * i));
    buf[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
  }
  buf[4] = '\0';
  return buf;
}

static void nq_on_poll(uv_poll_t *h, int status, int events) {
  ntsntp_uv_ntp_query *q = h->data;
  (void)events;
  if (q->done)
    return;
  if (status < 0) {
    /* libuv reports POLLERR as UV_EBADF and stops watching.  On a connected
     * UDP socket that is a pending ICMP error, or a transmit timestamp on
     * the error queue: take it and go on. */
    int e = 0, stamps = q->xleave ? nq_errqueue(q) : 0;
    socklen_t elen = sizeof(e);
    if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0 ||
        (e == 0 && stamps == 0) ||
        uv_poll_start(&q->poll, UV_READABLE, nq_on_poll) != 0) {
      nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON,
                "Could not receive from %s: %s", q->where,
                e ? strerror(e) : uv_text(status));
      return;
    }
    if (e != 0)
      q->last_errno = e;
  }
  while (!q->done) {
    struct iovec iov = {q->buf, sizeof(q->buf)};
    struct msghdr mh;
    struct timespec ts;
    nq_cbuf cbuf;
    ntsntp_ts_source src = NTSNTP_TS_KERNEL;
    ssize_t n;
    int rv;
    char kod[5];

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.b;
    mh.msg_controllen = sizeof(cbuf.b);
    n = recvmsg(q->fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == EINTR)
        continue;
      /* ICMP errors (port unreachable): the next request may still work. */
      q->last_errno = errno;
      if (errno == ECONNREFUSED || errno == EHOSTUNREACH ||
          errno == ENETUNREACH)
        continue;
      nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON,
                "Could not receive from %s: %s", q->where, strerror(errno));
      return;
    }
    if (!nq_cmsg_ts(&mh, &ts)) {
      clock_gettime(CLOCK_REALTIME, &ts);
      src = NTSNTP_TS_DAEMON;
    }
    if (q->xleave)
      nq_errqueue(q); /* a transmit timestamp that came late */
    q->t4 = ntsntp_ts_from_timespec(&ts);
    rv = ntsntp_client_response(&q->ex, q->buf, (size_t)n, q->t1, q->t4,
                                &q->sample);
    if (rv == 0)
      nq_report(q, 0, src, NULL);
    else if (rv == NTSNTP_ERR_NAK)
      nq_report(q, rv, src,
                "%s sent an NTS NAK: the cookies are not valid any more "
                "(run NTS-KE again)",
                q->where);
    else if (rv == NTSNTP_ERR_KOD)
      nq_report(q, rv, src, "%s sent Kiss-o'-Death %s", q->where,
                kod_text(q->sample.hdr.refid, kod));
    /* Anything else (bogus, replayed, unauthenticated) is ignored: the
     * genuine answer may still come. */
  }
}

/* Opens the connected UDP socket with RX timestamps, then sends. */
static void nq_open(ntsntp_uv_ntp_query *q) {
  const struct sockaddr *sa = (const struct sockaddr *)&q->addr;
  int one = 1, rv;
  int tsflags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
  char a[80];

  ntsntp__sock_ntop(sa, a, sizeof(a));
  if (strcmp(a, q->where) != 0 &&
      strlen(q->where) + strlen(a) + 4 < sizeof(q->where)) {
    size_t l = strlen(q->where);
    snprintf(q->where + l, sizeof(q->where) - l, " (%s)", a);
  }
  q->fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (q->fd < 0) {
    nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON,
              "Could not open a UDP socket for %s: %s", q->where,
              strerror(errno));
    return;
  }
  if (q->xleave) {
    /* Every datagram of this socket is a request: stamp them all. */
    int txflags = tsflags | SOF_TIMESTAMPING_TX_SOFTWARE |
                  SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
    if (setsockopt(q->fd, SOL_SOCKET, SO_TIMESTAMPING, &txflags,
                   sizeof(txflags)) == 0)
      q->tx_key_ok = 1;
  }
  if (!q->tx_key_ok &&
      setsockopt(q->fd, SOL_SOCKET, SO_TIMESTAMPING, &tsflags,
                 sizeof(tsflags)) != 0)
    (void)setsockopt(q->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
  /* Connected: the kernel drops datagrams from other sources and reports
   * ICMP errors. */
  if (connect(q->fd, sa, sa_len(sa)) != 0) {
    nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON, "Could not connect to %s: %s",
              q->where, strerror(errno));
    return;
  }
  rv = uv_poll_init_socket(q->loop, &q->poll, q->fd);
  if (rv < 0) {
    nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON, "Could not watch %s: %s",
              q->where, uv_text(rv));
    return;
  }
  q->poll.data = q;
  q->poll_open = 1;
  rv = uv_poll_start(&q->poll, UV_READABLE, nq_on_poll);
  if (rv < 0) {
    nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON, "Could not watch %s: %s",
              q->where, uv_text(rv));
    return;
  }
  nq_send(q);
}

static void nq_on_resolved(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res) {
  ntsntp_uv_ntp_query *q = req->data;
  q->gai_pending = 0;
  if (q->done) {
    if (res)
      uv_freeaddrinfo(res);
    nq_maybe_free(q);
    return;
  }
  if (status < 0 || !res) {
    nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON, "Could not resolve %s: %s",
              q->host, uv_text(status));
  } else {
    memcpy(&q->addr, res->ai_addr, res->ai_addrlen);
    q->have_addr = 1;
    uv_freeaddrinfo(res);
    nq_open(q);
  }
}

static void nq_on_timer(uv_timer_t *t) {
  ntsntp_uv_ntp_query *q = t->data;
  int rv;

  if (q->done)
    return;
  if (!q->started) {
    q->started = 1;
    if (q->have_addr) {
      nq_open(q);
      return;
    }
    q->gai.data = q;
    rv = start_resolve(q->loop, &q->gai, nq_on_resolved, q->host, q->port,
                       q->family, SOCK_DGRAM);
    if (rv < 0)
      nq_report(q, NTSNTP_ERR_IO, NTSNTP_TS_DAEMON, "Could not resolve %s: %s",
                q->host, uv_text(rv));
    else
      q->gai_pending = 1;
    return;
  }
  if (q->requests < q->attempts) {
    nq_send(q);
    return;
  }
  nq_report(q, NTSNTP_ERR_TIMEOUT, NTSNTP_TS_DAEMON,
            "No response from %s (%u request%s, %u ms each)%s%s", q->where,
            q->requests, q->requests == 1 ? "" : "s", q->timeout_ms,
            q->last_errno ? ": " : "",
            q->last_errno ? strerror(q->last_errno) : "");
}

static void nq_arm(ntsntp_uv_ntp_query *q, uint64_t ms) {
  uv_timer_start(&q->timer, nq_on_timer, ms, 0);
}

static void uv_ntp_query_fill(void *p) {
  ntsntp_uv_ntp_query_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->port = 123;
  s->family = AF_UNSPEC;
  s->timeout_ms = 1000;
  s->attempts = 3;
  s->poll = 6;
}
NTSNTP__SETTINGS(ntsntp_uv_ntp_query_settings, uv_ntp_query, xleave)

void ntsntp_uv_ntp_query_settings_nts(ntsntp_uv_ntp_query_settings *s,
                                      const ntsntp_nts_client_keys *k) {
  s->aead = k->aead;
  s->c2s = k->c2s;
  s->s2c = k->s2c;
  s->cookies = &k->cookie;
  s->cookie_len = &k->cookie_len;
  s->ncookies = 1;
  s->placeholders = k->placeholders; /* to fill the jar again */
}

int ntsntp_uv_ntp_outcome_nts(ntsntp_nts_client *c,
                              const ntsntp_uv_ntp_outcome *o) {
  if (o->status != 0 && o->requests == 0) /* the cookie never left */
    return ntsntp_nts_client_request_unsent(c);
  return ntsntp_nts_client_request_done(c, o->status, o->sample);
}

int ntsntp_uv_ntp_query_start(uv_loop_t *loop,
                              const ntsntp_uv_ntp_query_settings *s,
                              ntsntp_uv_ntp_query_cb cb, void *user,
                              ntsntp_uv_ntp_query **out, char *errbuf,
                              size_t errlen) {
  ntsntp_uv_ntp_query_settings latest;
  ntsntp_uv_ntp_query *q;
  size_t klen = 0, i;

  if (out)
    *out = NULL;
  NTSNTP__SETTINGS_GET(s, latest, uv_ntp_query, errbuf, errlen);
  if (!loop || !cb || (!s->addr && (!s->host || !s->host[0])) ||
      (s->host && strlen(s->host) > NTSNTP_KE_MAX_SERVER_LEN) ||
      (s->addr && s->addr->sa_family != AF_INET &&
       s->addr->sa_family != AF_INET6) ||
      (s->family != AF_UNSPEC && s->family != AF_INET &&
       s->family != AF_INET6)) {
    ntsntp__errf(errbuf, errlen, "NTP query: %s",
                 !loop ? "loop is NULL"
                 : !cb ? "callback is NULL"
                 : !s->addr && (!s->host || !s->host[0])
                     ? "neither host nor addr; fix: set one"
                 : s->host && strlen(s->host) > NTSNTP_KE_MAX_SERVER_LEN
                     ? "host longer than 255 characters"
                     : "addr or family is neither IPv4 nor IPv6");
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (s->aead) {
    klen = ntsntp_aead_key_len(s->aead);
    if (!ntsntp_aead_supported(s->aead) || !klen || !s->c2s || !s->s2c ||
        !s->cookies || !s->cookie_len || s->ncookies == 0 ||
        s->placeholders >= NTSNTP_CLIENT_MAX_COOKIES) {
      ntsntp__errf(errbuf, errlen,
                   "NTP query: NTS needs a supported AEAD "
                   "(%d given), both keys, at least one cookie and fewer "
                   "than %d placeholders; fix: take them from an NTS-KE "
                   "result",
                   (int)s->aead, NTSNTP_CLIENT_MAX_COOKIES);
      return NTSNTP_ERR_INVALID_ARG;
    }
    for (i = 0; i < s->ncookies && i < NTSNTP_CLIENT_MAX_COOKIES; i++)
      if (!s->cookies[i] || !s->cookie_len[i] ||
          s->cookie_len[i] > NTSNTP_COOKIE_MAX_LEN) {
        ntsntp__errf(errbuf, errlen,
                     "NTP query: cookie %zu is missing or "
                     "longer than %d bytes",
                     i, NTSNTP_COOKIE_MAX_LEN);
        return NTSNTP_ERR_INVALID_ARG;
      }
  }
  q = ntsntp__calloc(1, sizeof(*q));
  if (!q) {
    ntsntp__errf(errbuf, errlen, "NTP query: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  q->loop = loop;
  q->cb = cb;
  q->user = user;
  q->fd = -1;
  q->port = s->port ? s->port : 123;
  q->family = s->family;
  q->timeout_ms = s->timeout_ms ? s->timeout_ms : 1000;
  q->attempts = s->attempts ? s->attempts : 1;
  if (s->addr) {
    memcpy(&q->addr, s->addr, sa_len(s->addr));
    q->have_addr = 1;
  }
  if (s->host) {
    strcpy(q->host, s->host);
    hostport(q->where, sizeof(q->where), q->host,
             q->have_addr ? sa_port(s->addr) : q->port);
  } else {
    ntsntp__sock_ntop(s->addr, q->where, sizeof(q->where));
  }
  q->params.poll = s->poll;
  q->params.rand = s->rand;
  q->params.rand_user = s->rand_user;
  if (s->xleave) {
    q->xleave = 1;
    q->xl = *s->xleave;
    q->params.xleave = &q->xl;
  }
  if (s->aead) {
    q->params.aead = s->aead;
    memcpy(q->c2s, s->c2s, klen);
    memcpy(q->s2c, s->s2c, klen);
    q->params.c2s = q->c2s;
    q->params.s2c = q->s2c;
    q->ncookies = s->ncookies < NTSNTP_CLIENT_MAX_COOKIES
                      ? s->ncookies
                      : NTSNTP_CLIENT_MAX_COOKIES;
    for (i = 0; i < q->ncookies; i++) {
      memcpy(q->cookies[i], s->cookies[i], s->cookie_len[i]);
      q->cookie_len[i] = s->cookie_len[i];
    }
    q->placeholders = s->placeholders;
    /* Each request spends a cookie. */
    if (q->attempts > q->ncookies)
      q->attempts = (unsigned)q->ncookies;
  }
  uv_timer_init(loop, &q->timer);
  q->timer.data = q;
  /* Everything else happens from the loop, so |cb| never runs in here. */
  nq_arm(q, 0);
  if (out)
    *out = q;
  return 0;
}

void ntsntp_uv_ntp_query_cancel(ntsntp_uv_ntp_query *q) {
  if (!q || q->done)
    return;
  nq_teardown(q);
}
