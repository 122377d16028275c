/* libntsntp: NTS-KE server (RFC 8915, section 4), sans-I/O. */
#include <pthread.h>
#include <string.h>

#include "errtext.h"
#include "ntsntp/ke.h"
#include "rd.h"
#include "tls.h"
#include "settings.h"

/* Largest response: protocol, AEAD, 1024, port, server, 8 cookies, End. */
#define MAX_RESPONSE                                                           \
  (6 + 6 + 4 + 6 + 4 + NTSNTP_KE_MAX_SERVER_LEN +                              \
   NTSNTP_KE_MAX_COOKIES * (4 + NTSNTP_COOKIE_MAX_LEN) + 4)

struct ntsntp_ke_server {
  const ntsntp_mem *mem;
  const ntsntp_keyring *keyring;
  uint16_t ntp_port;
  char ntp_server[NTSNTP_KE_MAX_SERVER_LEN + 1];
  int aeads[NTSNTP_KE_MAX_AEADS];
  size_t naeads;
  size_t max_request;
  uint32_t timeout_ms;
  /* Guards |creds| so a reload may come from another thread. */
  pthread_mutex_t lock;
  ntsntp_ke_creds *creds;
  ntsntp_ke_server_stats stats;
};

enum { ST_HANDSHAKE, ST_REQUEST, ST_CLOSED };

struct ntsntp_ke_session {
  ntsntp_ke_server *srv;
  ntsntp__tls *tls;
  int state;
  int done;
  uint64_t deadline;
  size_t reqlen;
  uint8_t *req; /* max_request + 1 bytes */
};

static void ke_server_fill(void *p) {
  ntsntp_ke_server_settings *s = p;
  static const int pref[] = {NTSNTP_AEAD_AES_SIV_CMAC_256,
                             NTSNTP_AEAD_AES_SIV_CMAC_512,
                             NTSNTP_AEAD_AES_128_GCM_SIV};
  size_t i;

  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->ntp_port = 123;
  for (i = 0; i < sizeof(pref) / sizeof(pref[0]); i++)
    if (ntsntp_aead_supported(pref[i]))
      s->aeads[s->naeads++] = pref[i];
  s->max_request = NTSNTP_KE_MAX_MESSAGE;
  s->timeout_ms = 2000;
}
NTSNTP__SETTINGS(ntsntp_ke_server_settings, ke_server, mem)

static int valid_name(const char *s) {
  size_t i, n = strlen(s);
  if (n == 0 || n > NTSNTP_KE_MAX_SERVER_LEN)
    return 0;
  for (i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return 0;
  return 1;
}

int ntsntp_ke_server_new(ntsntp_ke_server **psrv,
                         const ntsntp_ke_server_settings *s, char *errbuf,
                         size_t errlen) {
  ntsntp_ke_server_settings latest;
  const ntsntp_mem *mem;
  ntsntp_ke_server *srv;
  size_t i;

  if (psrv == NULL || s == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE server: %s is NULL",
                 psrv == NULL ? "psrv" : "the settings");
    return NTSNTP_ERR_INVALID_ARG;
  }
  *psrv = NULL;
  NTSNTP__SETTINGS_GET(s, latest, ke_server, errbuf, errlen);
  if (s->creds == NULL || s->keyring == NULL ||
      s->naeads > NTSNTP_KE_MAX_AEADS || s->max_request < 16 ||
      (s->ntp_server && !valid_name(s->ntp_server))) {
    ntsntp__errf(errbuf, errlen, "NTS-KE server: %s",
                 s->creds == NULL     ? "no credentials; fix: load them with "
                                        "ntsntp_ke_creds_load"
                 : s->keyring == NULL ? "no cookie key ring; fix: "
                                        "ntsntp_keyring_new"
                 : s->naeads > NTSNTP_KE_MAX_AEADS ? "too many AEADs (naeads)"
                 : s->max_request < 16
                     ? "max_request below 16 bytes"
                     : "ntp_server is not a host name or address (at most "
                       "255 characters, no spaces or control characters)");
    return NTSNTP_ERR_INVALID_ARG;
  }
  mem = s->mem ? s->mem : ntsntp_mem_default();
  srv = mem->calloc(1, sizeof(*srv), mem->user);
  if (srv == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE server: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  srv->mem = mem;
  srv->keyring = s->keyring;
  srv->ntp_port = s->ntp_port;
  if (s->ntp_server)
    strcpy(srv->ntp_server, s->ntp_server);
  for (i = 0; i < s->naeads; i++)
    if (ntsntp_aead_supported(s->aeads[i]))
      srv->aeads[srv->naeads++] = s->aeads[i];
  srv->max_request = s->max_request;
  srv->timeout_ms = s->timeout_ms;
  if (srv->naeads == 0) {
    mem->free(srv, mem->user);
    ntsntp__errf(errbuf, errlen,
                 "NTS-KE server: none of the AEADs given "
                 "is supported; fix: list 15 (AES-SIV-CMAC-256) among them");
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (pthread_mutex_init(&srv->lock, NULL) != 0) {
    mem->free(srv, mem->user);
    ntsntp__errf(errbuf, errlen, "NTS-KE server: cannot create its lock");
    return NTSNTP_ERR_NOMEM;
  }
  srv->creds = ntsntp_ke_creds_ref(s->creds);
  *psrv = srv;
  return 0;
}

void ntsntp_ke_server_del(ntsntp_ke_server *srv) {
  if (srv == NULL)
    return;
  ntsntp_ke_creds_unref(srv->creds);
  pthread_mutex_destroy(&srv->lock);
  srv->mem->free(srv, srv->mem->user);
}

int ntsntp_ke_server_set_creds(ntsntp_ke_server *srv, ntsntp_ke_creds *creds) {
  ntsntp_ke_creds *old;

  if (srv == NULL || creds == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  ntsntp_ke_creds_ref(creds);
  pthread_mutex_lock(&srv->lock);
  old = srv->creds;
  srv->creds = creds;
  pthread_mutex_unlock(&srv->lock);
  /* Sessions started with |old| hold their own references. */
  ntsntp_ke_creds_unref(old);
  return 0;
}

int ntsntp_ke_server_reload(ntsntp_ke_server *srv, const char *cert_path,
                            const char *key_path, char *errbuf, size_t errlen) {
  ntsntp_ke_creds *c;
  int rv;

  if (srv == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  rv = ntsntp_ke_creds_load(&c, cert_path, key_path, errbuf, errlen);
  if (rv != 0)
    return rv;
  rv = ntsntp_ke_server_set_creds(srv, c);
  ntsntp_ke_creds_unref(c);
  return rv;
}

void ntsntp_ke_server_get_stats(const ntsntp_ke_server *srv,
                                ntsntp_ke_server_stats *out) {
  *out = srv->stats;
}

int ntsntp_ke_session_new(ntsntp_ke_session **ps, ntsntp_ke_server *srv,
                          uint64_t now_ms, char *errbuf, size_t errlen) {
  const ntsntp_mem *mem;
  ntsntp_ke_session *s;
  ntsntp_ke_creds *creds;
  int rv;

  if (ps == NULL || srv == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE session: %s is NULL",
                 ps == NULL ? "ps" : "the server");
    return NTSNTP_ERR_INVALID_ARG;
  }
  *ps = NULL;
  mem = srv->mem;
  s = mem->calloc(1, sizeof(*s), mem->user);
  if (s == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE session: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  s->srv = srv;
  s->deadline = now_ms + srv->timeout_ms;
  s->req = mem->malloc(srv->max_request + 1, mem->user);
  if (s->req == NULL) {
    mem->free(s, mem->user);
    ntsntp__errf(errbuf, errlen, "NTS-KE session: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  pthread_mutex_lock(&srv->lock);
  creds = ntsntp_ke_creds_ref(srv->creds);
  pthread_mutex_unlock(&srv->lock);
  rv = ntsntp__tls_new_server(&s->tls, creds, mem);
  ntsntp_ke_creds_unref(creds);
  if (rv != 0) {
    ntsntp_ke_session_del(s);
    ntsntp__errf(errbuf, errlen, "NTS-KE session: TLS setup failed: %s",
                 ntsntp_strerror(rv));
    return rv;
  }
  *ps = s;
  return 0;
}

void ntsntp_ke_session_del(ntsntp_ke_session *s) {
  const ntsntp_mem *mem;
  if (s == NULL)
    return;
  mem = s->srv->mem;
  ntsntp__tls_del(s->tls);
  if (s->req) {
    ntsntp_secure_clear(s->req, s->srv->max_request + 1);
    mem->free(s->req, mem->user);
  }
  mem->free(s, mem->user);
}

/* Appends records to |w|; a failure sticks in w->err. */
static void add_u16s(ntsntp_wr *w, int critical, uint16_t type,
                     const uint16_t *v, size_t n) {
  ntsntp_ssize r;
  if (w->err)
    return;
  r = ntsntp_ke_wr_u16s(w->p, (size_t)(w->end - w->p), critical, type, v, n);
  if (r < 0)
    w->err = (int)r;
  else
    w->p += r;
}

static void add_rec(ntsntp_wr *w, int critical, uint16_t type, const void *body,
                    size_t len) {
  ntsntp_ssize r;
  if (w->err)
    return;
  r = ntsntp_ke_wr_record(w->p, (size_t)(w->end - w->p), critical, type, body,
                          len);
  if (r < 0)
    w->err = (int)r;
  else
    w->p += r;
}

/* Sends |msg| in one TLS record, then close_notify. */
static int send_and_close(ntsntp_ke_session *s, const uint8_t *msg,
                          size_t len) {
  int rv = ntsntp__tls_send(s->tls, msg, len);
  if (rv == 0)
    rv = ntsntp__tls_bye(s->tls);
  s->state = ST_CLOSED;
  return rv;
}

static int send_error(ntsntp_ke_session *s, uint16_t code) {
  uint8_t buf[16];
  ntsntp_wr w;

  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.3
   *# The Error record has a Record Type number of 2.  Its body is exactly
   *# two octets long [...] The Critical Bit MUST be set.
   */
  ntsntp__wr_init(&w, buf, sizeof(buf));
  add_u16s(&w, 1, NTSNTP_KE_REC_ERROR, &code, 1);
  add_rec(&w, 1, NTSNTP_KE_REC_END, NULL, 0);
  if (code < 3)
    s->srv->stats.errors_sent[code]++;
  if (code != NTSNTP_KE_ERR_INTERNAL)
    s->srv->stats.bad_requests++;
  return send_and_close(s, buf, ntsntp__wr_len(&w));
}

static int enabled(const ntsntp_ke_server *srv, int aead) {
  size_t i;
  for (i = 0; i < srv->naeads; i++)
    if (srv->aeads[i] == aead)
      return 1;
  return 0;
}

/* Builds and sends the answer to a complete request in s->req. */
static int respond(ntsntp_ke_session *s) {
  ntsntp_ke_server *srv = s->srv;
  uint8_t out[MAX_RESPONSE];
  uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];
  uint8_t cookie[NTSNTP_COOKIE_MAX_LEN];
  const uint16_t ntpv4 = NTSNTP_KE_PROTO_NTPV4;
  ntsntp_ke_msg m;
  ntsntp_wr w;
  uint16_t aead = 0, ctx_aead;
  size_t i, keylen;
  int rv, found = 0, nonempty;

  rv = ntsntp_ke_parse(s->req, s->reqlen, &m);
  if (rv == NTSNTP_ERR_UNSUPPORTED) {
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.3
     *# 0 Unrecognized Critical Record: The request contained a critical
     *# record that the server did not recognize.
     */
    return send_error(s, NTSNTP_KE_ERR_UNRECOGNIZED_CRITICAL);
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.3
   *# Clients MUST NOT include Error records in their request.
   */
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.6
   *# Clients MUST NOT send records of this type.
   */
  if (rv != 0 || m.has_error || m.ncookies_total > 0)
    return send_error(s, NTSNTP_KE_ERR_BAD_REQUEST);
  /* RFC 8915 4.1.4 forbids Warning records in requests too, but one is
     harmless: count it and go on. */
  if (m.has_warning)
    srv->stats.warnings_received++;
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.2
   *# The request MUST list at least one protocol, but the response MAY be
   *# empty.
   */
  if (!m.has_protos || m.nprotos == 0)
    return send_error(s, NTSNTP_KE_ERR_BAD_REQUEST);
  for (i = 0; i < m.nprotos; i++)
    if (ntsntp_ke_msg_proto(&m, i) == NTSNTP_KE_PROTO_NTPV4)
      found = 1;

  ntsntp__wr_init(&w, out, sizeof(out));
  if (!found) {
    /* Nothing we speak: an empty protocol list and no keys. */
    srv->stats.no_common++;
    add_u16s(&w, 1, NTSNTP_KE_REC_NEXT_PROTOCOL, NULL, 0);
    add_rec(&w, 1, NTSNTP_KE_REC_END, NULL, 0);
    return send_and_close(s, out, ntsntp__wr_len(&w));
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.5
   *# In requests, the list MUST include at least one algorithm.
   */
  if (!m.has_aeads || m.naeads == 0)
    return send_error(s, NTSNTP_KE_ERR_BAD_REQUEST);
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.5
   *# Honoring the client's preference order is OPTIONAL: servers may
   *# select among any of the client's offered choices
   */
  /* We honour it, as chronyd does: the client's first algorithm that we
     have enabled.  chrony 4.4 and later list AES-128-GCM-SIV (30) first
     when they have it; it is cheaper per response and its cookies are 32
     bytes shorter than AES-SIV-CMAC-256's (15). */
  for (i = 0; i < m.naeads && aead == 0; i++)
    if (enabled(srv, ntsntp_ke_msg_aead(&m, i)))
      aead = ntsntp_ke_msg_aead(&m, i);

  add_u16s(&w, 1, NTSNTP_KE_REC_NEXT_PROTOCOL, &ntpv4, 1);
  nonempty = aead != 0;
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.5
   *# It is empty if the server supports none of the algorithms offered.
   */
  add_u16s(&w, 1, NTSNTP_KE_REC_AEAD, &aead, nonempty ? 1 : 0);
  if (!nonempty) {
    srv->stats.no_common++;
    add_rec(&w, 1, NTSNTP_KE_REC_END, NULL, 0);
    return send_and_close(s, out, ntsntp__wr_len(&w));
  }

  /* chrony 4.4 to 4.6 export AES-128-GCM-SIV keys with AEAD id 15 in the
     exporter context instead of 30, and send no record 1024.  chrony 4.6.1
     and later send the (empty, non-critical) record 1024 to ask for the
     RFC's context, and use it only if the response carries 1024 too;
     otherwise they keep the id-15 keys.  So: id 30 and 1024 echoed when
     asked, id 15 and no 1024 when not, as chronyd's server does. */
  ctx_aead = aead;
  if (aead == NTSNTP_AEAD_AES_128_GCM_SIV) {
    if (m.compliant_128gcm)
      add_rec(&w, 0, NTSNTP_KE_REC_COMPLIANT_128GCM, NULL, 0);
    else
      ctx_aead = NTSNTP_AEAD_AES_SIV_CMAC_256;
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.8
   *# If no record of this type is sent, the client SHALL assume a default
   *# of 123 (the registered port number for NTP).
   */
  if (srv->ntp_port != 123) {
    /* Critical, as chrony sends it: a client must not ignore it. */
    add_u16s(&w, 1, NTSNTP_KE_REC_PORT, &srv->ntp_port, 1);
  }
  if (srv->ntp_server[0])
    add_rec(&w, 1, NTSNTP_KE_REC_SERVER, srv->ntp_server,
            strlen(srv->ntp_server));

  keylen = ntsntp_aead_key_len(aead);
  rv = ntsntp__tls_export_keys(s->tls, NTSNTP_KE_PROTO_NTPV4, ctx_aead, keylen,
                               c2s, s2c);
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.6
   *# Servers MUST send at least one record of this type, and SHOULD send
   *# eight of them, if the Next Protocol Negotiation response record
   *# contains Protocol ID 0 (NTPv4) and the AEAD Algorithm Negotiation
   *# response record is not empty.  The Critical Bit SHOULD NOT be set.
   */
  for (i = 0; rv == 0 && i < NTSNTP_KE_MAX_COOKIES; i++) {
    ntsntp_ssize n = ntsntp_cookie_seal(srv->keyring, aead, c2s, s2c, cookie,
                                        sizeof(cookie));
    if (n < 0) {
      rv = (int)n;
      break;
    }
    add_rec(&w, 0, NTSNTP_KE_REC_COOKIE, cookie, (size_t)n);
  }
  ntsntp_secure_clear(c2s, sizeof(c2s));
  ntsntp_secure_clear(s2c, sizeof(s2c));
  ntsntp_secure_clear(cookie, sizeof(cookie));
  add_rec(&w, 1, NTSNTP_KE_REC_END, NULL, 0);
  if (rv != 0 || w.err) {
    ntsntp_secure_clear(out, sizeof(out));
    return send_error(s, NTSNTP_KE_ERR_INTERNAL);
  }
  /* NTPsec reads the response with one read: one TLS record. */
  rv = send_and_close(s, out, ntsntp__wr_len(&w));
  if (rv == 0) {
    s->done = 1;
    srv->stats.sessions_done++;
    srv->stats.cookies_issued += NTSNTP_KE_MAX_COOKIES;
  }
  return rv;
}

static int fail(ntsntp_ke_session *s, int err) {
  s->state = ST_CLOSED;
  return err;
}

static int progress(ntsntp_ke_session *s) {
  ntsntp_ke_server *srv = s->srv;
  int rv;

  if (s->state == ST_HANDSHAKE) {
    rv = ntsntp__tls_handshake(s->tls);
    if (rv == NTSNTP_ERR_AGAIN)
      return 0;
    if (rv != 0) {
      srv->stats.handshake_failed++;
      if (ntsntp__tls_alpn_failed(s->tls))
        srv->stats.alpn_failed++;
      return fail(s, rv);
    }
    s->state = ST_REQUEST;
  }
  while (s->state == ST_REQUEST) {
    /* One byte of room past the limit tells "too large" from "full". */
    ntsntp_ssize n = ntsntp__tls_recv(s->tls, s->req + s->reqlen,
                                      srv->max_request + 1 - s->reqlen);
    if (n == NTSNTP_ERR_AGAIN)
      return 0;
    if (n == 0)
      return fail(s, NTSNTP_ERR_CLOSED);
    if (n < 0)
      return fail(s, (int)n);
    s->reqlen += (size_t)n;
    if (s->reqlen > srv->max_request)
      return send_error(s, NTSNTP_KE_ERR_BAD_REQUEST);
    rv = ntsntp_ke_check_framing(s->req, s->reqlen);
    if (rv == NTSNTP_ERR_AGAIN)
      continue;
    if (rv != 0)
      return send_error(s, NTSNTP_KE_ERR_BAD_REQUEST);
    return respond(s);
  }
  return 0;
}

int ntsntp_ke_session_read(ntsntp_ke_session *s, const uint8_t *in,
                           size_t len) {
  int rv;

  if (s == NULL || (in == NULL && len != 0))
    return NTSNTP_ERR_INVALID_ARG;
  if (s->state == ST_CLOSED)
    return s->done ? 0 : NTSNTP_ERR_CLOSED;
  rv = ntsntp__tls_feed(s->tls, in, len);
  if (rv != 0)
    return fail(s, rv);
  return progress(s);
}

ntsntp_ssize ntsntp_ke_session_write(ntsntp_ke_session *s, uint8_t *out,
                                     size_t outlen) {
  if (s == NULL || (out == NULL && outlen != 0))
    return NTSNTP_ERR_INVALID_ARG;
  return (ntsntp_ssize)ntsntp__tls_take(s->tls, out, outlen);
}

unsigned ntsntp_ke_session_want(const ntsntp_ke_session *s) {
  unsigned w = 0;
  if (ntsntp__tls_pending(s->tls))
    w |= NTSNTP_KE_WANT_WRITE;
  if (s->state == ST_CLOSED)
    w |= NTSNTP_KE_CLOSE | (s->done ? NTSNTP_KE_DONE : 0);
  else
    w |= NTSNTP_KE_WANT_READ;
  return w;
}

uint64_t ntsntp_ke_session_expiry(const ntsntp_ke_session *s) {
  return s->state == ST_CLOSED ? UINT64_MAX : s->deadline;
}

int ntsntp_ke_session_handle_expiry(ntsntp_ke_session *s, uint64_t now_ms) {
  if (s == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  if (s->state == ST_CLOSED || now_ms < s->deadline)
    return 0;
  s->srv->stats.timeouts++;
  if (s->state == ST_REQUEST)
    send_error(s, NTSNTP_KE_ERR_BAD_REQUEST);
  s->state = ST_CLOSED;
  return NTSNTP_ERR_TIMEOUT;
}

const char *ntsntp_ke_session_errtext(const ntsntp_ke_session *s) {
  return ntsntp__tls_errtext(s->tls);
}
