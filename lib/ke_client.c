/* libntsntp: NTS-KE client (RFC 8915, section 4), sans-I/O. */
#include <stdio.h>
#include <string.h>

#include "errtext.h"
#include "ntsntp/ke.h"
#include "rd.h"
#include "tls.h"
#include "settings.h"

/*= https://www.rfc-editor.org/rfc/rfc8915#section-4
 *# servers MUST accept requests of at least 1024 octets and clients SHOULD
 *# accept responses of at least 65536 octets.
 */
#define MAX_RESPONSE 65536

enum { ST_HANDSHAKE, ST_RESPONSE, ST_CLOSED };

struct ntsntp_ke_client {
  const ntsntp_mem *mem;
  ntsntp__tls *tls;
  int state;
  int rv; /* outcome once closed: 0 or an error */
  uint64_t deadline;
  char host[NTSNTP_KE_MAX_SERVER_LEN + 1];
  int aeads[NTSNTP_KE_MAX_AEADS];
  size_t naeads;
  char req_server[NTSNTP_KE_MAX_SERVER_LEN + 1];
  uint16_t req_port;
  size_t resplen;
  uint8_t *resp; /* MAX_RESPONSE bytes */
  ntsntp_ke_result res;
  char errtext[256];
};

static void ke_client_fill(void *p) {
  ntsntp_ke_client_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->aeads[0] = NTSNTP_AEAD_AES_SIV_CMAC_256;
  s->naeads = 1;
  s->timeout_ms = 5000;
}
NTSNTP__SETTINGS(ntsntp_ke_client_settings, ke_client, mem)

void ntsntp_ke_result_clear(ntsntp_ke_result *r) {
  if (r)
    ntsntp_secure_clear(r, sizeof(*r));
}

static void reset_result(ntsntp_ke_result *r) {
  ntsntp_ke_result_clear(r);
  r->error_code = -1;
  r->warning_code = -1;
}

static int finish(ntsntp_ke_client *c, int rv) {
  c->state = ST_CLOSED;
  c->rv = rv;
  if (rv != 0) {
    /* Keys are only handed out on success. */
    ntsntp_secure_clear(c->res.c2s, sizeof(c->res.c2s));
    ntsntp_secure_clear(c->res.s2c, sizeof(c->res.s2c));
    if (c->errtext[0] == '\0') {
      const char *t = c->tls ? ntsntp__tls_errtext(c->tls) : "";
      snprintf(c->errtext, sizeof(c->errtext), "%s",
               t[0] ? t : ntsntp_strerror(rv));
    }
  }
  return rv;
}

static int send_request(ntsntp_ke_client *c) {
  uint8_t buf[64 + 2 * NTSNTP_KE_MAX_AEADS + NTSNTP_KE_MAX_SERVER_LEN];
  const uint16_t ntpv4 = NTSNTP_KE_PROTO_NTPV4;
  uint16_t aeads[NTSNTP_KE_MAX_AEADS];
  ntsntp_ssize n;
  size_t len = 0, i;
  int gcm = 0;

  for (i = 0; i < c->naeads; i++) {
    aeads[i] = (uint16_t)c->aeads[i];
    if (c->aeads[i] == NTSNTP_AEAD_AES_128_GCM_SIV)
      gcm = 1;
  }
  /* The buffer is sized for every record below, so none can fail. */
  n = ntsntp_ke_wr_u16s(buf, sizeof(buf), 1, NTSNTP_KE_REC_NEXT_PROTOCOL,
                        &ntpv4, 1);
  len += (size_t)n;
  n = ntsntp_ke_wr_u16s(buf + len, sizeof(buf) - len, 1, NTSNTP_KE_REC_AEAD,
                        aeads, c->naeads);
  len += (size_t)n;
  if (gcm) {
    n = ntsntp_ke_wr_record(buf + len, sizeof(buf) - len, 0,
                            NTSNTP_KE_REC_COMPLIANT_128GCM, NULL, 0);
    len += (size_t)n;
  }
  if (c->req_server[0]) {
    n = ntsntp_ke_wr_record(buf + len, sizeof(buf) - len, 0,
                            NTSNTP_KE_REC_SERVER, c->req_server,
                            strlen(c->req_server));
    len += (size_t)n;
  }
  if (c->req_port) {
    n = ntsntp_ke_wr_u16s(buf + len, sizeof(buf) - len, 0, NTSNTP_KE_REC_PORT,
                          &c->req_port, 1);
    len += (size_t)n;
  }
  n = ntsntp_ke_wr_record(buf + len, sizeof(buf) - len, 1, NTSNTP_KE_REC_END,
                          NULL, 0);
  len += (size_t)n;
  return ntsntp__tls_send(c->tls, buf, len);
}

static int offered(const ntsntp_ke_client *c, int aead) {
  size_t i;
  for (i = 0; i < c->naeads; i++)
    if (c->aeads[i] == aead)
      return 1;
  return 0;
}

static int bad(ntsntp_ke_client *c, const char *why) {
  snprintf(c->errtext, sizeof(c->errtext), "bad NTS-KE response: %s", why);
  return finish(c, NTSNTP_ERR_BAD_RECORD);
}

static int process_response(ntsntp_ke_client *c) {
  ntsntp_ke_result *r = &c->res;
  ntsntp_ke_msg m;
  int aead, ctx_aead, rv;
  size_t i;

  rv = ntsntp_ke_parse(c->resp, c->resplen, &m);
  if (rv == NTSNTP_ERR_UNSUPPORTED)
    return bad(c, "unknown critical record");
  if (rv != 0)
    return bad(c, "malformed record");
  if (m.has_warning)
    r->warning_code = m.warning_code;
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.3
   *# If clients receive a server response that includes an Error record,
   *# they MUST discard any key material negotiated during the initial TLS
   *# exchange and MUST NOT proceed to the Next Protocol.
   */
  if (m.has_error) {
    r->error_code = m.error_code;
    snprintf(c->errtext, sizeof(c->errtext), "server sent Error %u",
             (unsigned)m.error_code);
    return finish(c, NTSNTP_ERR_NAK);
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.4
   *# Unrecognized warning codes MUST be treated as errors.
   */
  if (m.has_warning) {
    snprintf(c->errtext, sizeof(c->errtext),
             "server sent Warning %u, which no specification defines",
             (unsigned)m.warning_code);
    return finish(c, NTSNTP_ERR_UNSUPPORTED);
  }
  if (!m.has_protos)
    return bad(c, "no Next Protocol record");
  if (m.nprotos == 0) {
    snprintf(c->errtext, sizeof(c->errtext), "server does not speak NTPv4");
    return finish(c, NTSNTP_ERR_UNSUPPORTED);
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.2
   *# Protocol IDs listed in the NTS-KE server's response MUST comprise a
   *# subset of those listed in the request
   */
  if (m.nprotos != 1 || ntsntp_ke_msg_proto(&m, 0) != NTSNTP_KE_PROTO_NTPV4)
    return bad(c, "protocol not offered");
  if (!m.has_aeads)
    return bad(c, "no AEAD record");
  if (m.naeads == 0) {
    snprintf(c->errtext, sizeof(c->errtext), "no common AEAD algorithm");
    return finish(c, NTSNTP_ERR_UNSUPPORTED);
  }
  aead = ntsntp_ke_msg_aead(&m, 0);
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.5
   *# In responses, it MUST include at most one.
   */
  if (m.naeads != 1 || !offered(c, aead))
    return bad(c, "AEAD not offered");
  if (m.ncookies == 0)
    return bad(c, "no cookies");
  if (m.has_port && m.port == 0)
    return bad(c, "port 0");

  r->ncookies = 0;
  for (i = 0; i < m.ncookies; i++) {
    /* A cookie our NTP requests cannot carry is of no use: refuse it
     * here, with the reason, rather than fail every request later. */
    if (m.cookie_len[i] > NTSNTP_COOKIE_MAX_LEN)
      return bad(c, "cookie longer than an NTP request carries");
    memcpy(r->cookies[i], m.cookies[i], m.cookie_len[i]);
    r->cookie_len[i] = m.cookie_len[i];
    r->ncookies++;
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4.1.7
   *# If no record of this type is sent, the client SHALL interpret this as
   *# a directive to associate with an NTPv4 server at the same IP address
   *# as the NTS-KE server.
   */
  strcpy(r->ntp_server, m.has_server ? m.server : c->host);
  r->ntp_port = m.has_port ? m.port : 123;
  r->port_record = m.has_port;
  r->aead = aead;
  r->key_len = ntsntp_aead_key_len(aead);
  /* Without the 1024 record, a server choosing AES-128-GCM-SIV is chrony
     4.4 to 4.6, which exports with AEAD id 15 in the context (chrony 4.6.1
     and later answer our 1024 with 1024 and use id 30, as RFC 8915 does).
     Like chrony 4.6.1 we then use id 15 too; unlike it, we do not retry
     with id-30 keys when the first answer is an NTS NAK. */
  ctx_aead = aead;
  if (aead == NTSNTP_AEAD_AES_128_GCM_SIV && !m.compliant_128gcm)
    ctx_aead = NTSNTP_AEAD_AES_SIV_CMAC_256;
  rv = ntsntp__tls_export_keys(c->tls, NTSNTP_KE_PROTO_NTPV4,
                               (uint16_t)ctx_aead, r->key_len, r->c2s, r->s2c);
  if (rv != 0)
    return finish(c, rv);
  /* Our close_notify; a failure here no longer matters. */
  (void)ntsntp__tls_bye(c->tls);
  return finish(c, 0);
}

static int progress(ntsntp_ke_client *c) {
  int rv;

  if (c->state == ST_HANDSHAKE) {
    rv = ntsntp__tls_handshake(c->tls);
    if (rv == NTSNTP_ERR_AGAIN)
      return 0;
    if (rv != 0)
      return finish(c, rv);
    /*= https://www.rfc-editor.org/rfc/rfc8915#section-4
     *# Immediately following a successful handshake, the client SHALL send
     *# a single request as Application Data encapsulated in the
     *# TLS-protected channel.
     */
    rv = send_request(c);
    if (rv != 0)
      return finish(c, rv);
    c->state = ST_RESPONSE;
  }
  while (c->state == ST_RESPONSE) {
    ntsntp_ssize n;
    if (c->resplen == MAX_RESPONSE)
      return bad(c, "longer than 64 KiB");
    n = ntsntp__tls_recv(c->tls, c->resp + c->resplen,
                         MAX_RESPONSE - c->resplen);
    if (n == NTSNTP_ERR_AGAIN)
      return 0;
    if (n == 0)
      return finish(c, NTSNTP_ERR_CLOSED);
    if (n < 0)
      return finish(c, (int)n);
    c->resplen += (size_t)n;
    rv = ntsntp_ke_check_framing(c->resp, c->resplen);
    if (rv == NTSNTP_ERR_AGAIN)
      continue;
    if (rv != 0)
      return bad(c, "bytes after End of Message");
    return process_response(c);
  }
  return 0;
}

int ntsntp_ke_client_new(ntsntp_ke_client **pc,
                         const ntsntp_ke_client_settings *s, uint64_t now_ms,
                         char *errbuf, size_t errlen) {
  ntsntp_ke_client_settings latest;
  const ntsntp_mem *mem;
  ntsntp_ke_client *c;
  size_t i;
  int rv;

  if (pc == NULL || s == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE client: %s is NULL",
                 pc == NULL ? "pc" : "the settings");
    return NTSNTP_ERR_INVALID_ARG;
  }
  *pc = NULL;
  NTSNTP__SETTINGS_GET(s, latest, ke_client, errbuf, errlen);
  if (s->server_name == NULL || s->server_name[0] == '\0' ||
      strlen(s->server_name) > NTSNTP_KE_MAX_SERVER_LEN ||
      s->naeads > NTSNTP_KE_MAX_AEADS ||
      (s->ntp_server && (s->ntp_server[0] == '\0' ||
                         strlen(s->ntp_server) > NTSNTP_KE_MAX_SERVER_LEN))) {
    ntsntp__errf(errbuf, errlen, "NTS-KE client: %s",
                 s->naeads > NTSNTP_KE_MAX_AEADS ? "too many AEADs (naeads)"
                 : s->server_name == NULL || s->server_name[0] == '\0' ||
                         strlen(s->server_name) > NTSNTP_KE_MAX_SERVER_LEN
                     ? "server_name missing or longer than 255 characters; "
                       "fix: the NTS-KE server's host name"
                     : "ntp_server empty or longer than 255 characters");
    return NTSNTP_ERR_INVALID_ARG;
  }
  mem = s->mem ? s->mem : ntsntp_mem_default();
  c = mem->calloc(1, sizeof(*c), mem->user);
  if (c == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE client: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  c->mem = mem;
  reset_result(&c->res);
  c->rv = NTSNTP_ERR_STATE;
  c->deadline = now_ms + s->timeout_ms;
  strcpy(c->host, s->server_name);
  for (i = 0; i < s->naeads; i++)
    if (ntsntp_aead_supported(s->aeads[i]))
      c->aeads[c->naeads++] = s->aeads[i];
  if (s->ntp_server)
    strcpy(c->req_server, s->ntp_server);
  c->req_port = s->ntp_port;
  rv = NTSNTP_ERR_INVALID_ARG;
  if (c->naeads == 0) {
    ntsntp__errf(errbuf, errlen,
                 "NTS-KE client: none of the AEADs given is "
                 "supported; fix: list 15 (AES-SIV-CMAC-256) among them");
    goto fail;
  }
  rv = NTSNTP_ERR_NOMEM;
  c->resp = mem->malloc(MAX_RESPONSE, mem->user);
  if (c->resp == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS-KE client: out of memory");
    goto fail;
  }
  {
    /* The TLS layer keeps the name for the certificate hook: our copy. */
    ntsntp_ke_client_settings ts = *s;
    ts.server_name = c->host;
    rv = ntsntp__tls_new_client(&c->tls, &ts, mem, errbuf, errlen);
  }
  if (rv != 0)
    goto fail;
  /* Queue the ClientHello. */
  rv = ntsntp__tls_handshake(c->tls);
  if (rv != NTSNTP_ERR_AGAIN) {
    ntsntp__errf(errbuf, errlen, "NTS-KE client: TLS start failed: %s",
                 ntsntp__tls_errtext(c->tls)[0] ? ntsntp__tls_errtext(c->tls)
                                                : ntsntp_strerror(rv));
    goto fail;
  }
  *pc = c;
  return 0;

fail:
  ntsntp_ke_client_del(c);
  return rv == 0 ? NTSNTP_ERR_TLS : rv;
}

void ntsntp_ke_client_del(ntsntp_ke_client *c) {
  const ntsntp_mem *mem;
  if (c == NULL)
    return;
  mem = c->mem;
  ntsntp__tls_del(c->tls);
  if (c->resp) {
    ntsntp_secure_clear(c->resp, MAX_RESPONSE);
    mem->free(c->resp, mem->user);
  }
  ntsntp_secure_clear(c, sizeof(*c));
  mem->free(c, mem->user);
}

int ntsntp_ke_client_read(ntsntp_ke_client *c, const uint8_t *in, size_t len) {
  int rv;

  if (c == NULL || (in == NULL && len != 0))
    return NTSNTP_ERR_INVALID_ARG;
  if (c->state == ST_CLOSED)
    return c->rv == 0 ? 0 : NTSNTP_ERR_CLOSED;
  rv = ntsntp__tls_feed(c->tls, in, len);
  if (rv != 0)
    return finish(c, rv);
  return progress(c);
}

ntsntp_ssize ntsntp_ke_client_write(ntsntp_ke_client *c, uint8_t *out,
                                    size_t outlen) {
  if (c == NULL || (out == NULL && outlen != 0))
    return NTSNTP_ERR_INVALID_ARG;
  return (ntsntp_ssize)ntsntp__tls_take(c->tls, out, outlen);
}

unsigned ntsntp_ke_client_want(const ntsntp_ke_client *c) {
  unsigned w = 0;
  if (ntsntp__tls_pending(c->tls))
    w |= NTSNTP_KE_WANT_WRITE;
  if (c->state == ST_CLOSED)
    w |= NTSNTP_KE_CLOSE | (c->rv == 0 ? NTSNTP_KE_DONE : 0);
  else
    w |= NTSNTP_KE_WANT_READ;
  return w;
}

uint64_t ntsntp_ke_client_expiry(const ntsntp_ke_client *c) {
  return c->state == ST_CLOSED ? UINT64_MAX : c->deadline;
}

int ntsntp_ke_client_handle_expiry(ntsntp_ke_client *c, uint64_t now_ms) {
  if (c == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  if (c->state == ST_CLOSED || now_ms < c->deadline)
    return 0;
  snprintf(c->errtext, sizeof(c->errtext), "NTS-KE timed out");
  return finish(c, NTSNTP_ERR_TIMEOUT);
}

int ntsntp_ke_client_result(const ntsntp_ke_client *c, ntsntp_ke_result *r) {
  if (c == NULL || r == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  if (c->state != ST_CLOSED)
    return NTSNTP_ERR_STATE;
  *r = c->res;
  if (c->rv != 0) {
    reset_result(r);
    r->error_code = c->res.error_code;
    r->warning_code = c->res.warning_code;
  }
  return c->rv;
}

const char *ntsntp_ke_client_errtext(const ntsntp_ke_client *c) {
  return c->errtext;
}
