/* libntsntp: a complete NTS client, sans I/O (nts_client.h). */
#include <stdio.h>
#include <string.h>

#include "errtext.h"
#include "ntsntp/nts_client.h"
#include "settings.h"

#define JAR NTSNTP_CLIENT_MAX_COOKIES

/* Who built the outstanding request. */
enum { OUT_NONE, OUT_OWN, OUT_KEYS };

struct ntsntp_nts_client {
  ntsntp_nts_client_settings s;
  const ntsntp_mem *mem;
  char server[NTSNTP_KE_MAX_SERVER_LEN + 1];
  char *ca_file;
  uint8_t *ca_pem;

  /* NTS-KE */
  ntsntp_ke_client *ke;
  uint64_t ke_deadline;  /* of the running exchange */
  uint64_t ke_time;      /* of the last success (refresh) */
  uint64_t backoff_until;
  uint32_t backoff_ms;   /* next back-off; 0: none yet */

  /* Keys, and where NTP goes */
  int have_keys;
  int aead;
  uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];
  char ntp_server[NTSNTP_KE_MAX_SERVER_LEN + 1];
  uint16_t ntp_port;

  /* Cookie jar, oldest first */
  uint8_t cookies[JAR][NTSNTP_COOKIE_MAX_LEN];
  size_t cookie_len[JAR];
  unsigned ncookies;

  /* The outstanding request */
  int outstanding; /* OUT_* */
  uint64_t ntp_deadline;
  ntsntp_client_exchange ex;           /* OUT_OWN */
  uint8_t sent[NTSNTP_COOKIE_MAX_LEN]; /* the outstanding request's cookie */
  size_t sent_len;

  uint64_t ke_ok, ke_failed, naks, requests, responses, timeouts;
  uint64_t ke_failed_run;
  char errtext[512];
};

static void nts_client_fill(void *p) {
  ntsntp_nts_client_settings *s = p;
  ntsntp_ke_client_settings ks;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  ntsntp_ke_client_settings_default(&ks);
  memcpy(s->aeads, ks.aeads, sizeof(s->aeads));
  s->naeads = ks.naeads;
  s->ke_timeout_ms = 5000;
  s->ntp_timeout_ms = 1000;
  s->refresh_s = 1209600;
  s->backoff_min_ms = 2000;
  s->backoff_max_ms = 3600000;
}
NTSNTP__SETTINGS(ntsntp_nts_client_settings, nts_client, mem)

int ntsntp_nts_client_new(ntsntp_nts_client **pc,
                          const ntsntp_nts_client_settings *s, char *errbuf,
                          size_t errlen) {
  ntsntp_nts_client_settings latest;
  const ntsntp_mem *mem;
  ntsntp_nts_client *c;
  size_t i, usable = 0;

  *pc = NULL;
  NTSNTP__SETTINGS_GET(s, latest, nts_client, errbuf, errlen);
  if (s->server == NULL || s->server[0] == '\0' ||
      strlen(s->server) > NTSNTP_KE_MAX_SERVER_LEN) {
    ntsntp__errf(errbuf, errlen,
                 "NTS client: the server name must be 1 to %d bytes",
                 NTSNTP_KE_MAX_SERVER_LEN);
    return NTSNTP_ERR_INVALID_ARG;
  }
  for (i = 0; i < s->naeads && i < NTSNTP_KE_MAX_AEADS; i++)
    usable += ntsntp_aead_supported(s->aeads[i]) != 0;
  if (usable == 0 || s->naeads > NTSNTP_KE_MAX_AEADS) {
    ntsntp__errf(errbuf, errlen,
                 "NTS client: no AEAD this build supports among those given");
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (s->ke_timeout_ms == 0 || s->ntp_timeout_ms == 0 ||
      s->backoff_min_ms == 0 || s->backoff_min_ms > s->backoff_max_ms) {
    ntsntp__errf(errbuf, errlen,
                 "NTS client: timeouts must be positive and backoff_min_ms "
                 "at most backoff_max_ms");
    return NTSNTP_ERR_INVALID_ARG;
  }
  mem = s->mem ? s->mem : ntsntp_mem_default();
  c = mem->calloc(1, sizeof(*c), mem->user);
  if (c == NULL) {
    ntsntp__errf(errbuf, errlen, "NTS client: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  c->s = *s;
  c->mem = mem;
  strcpy(c->server, s->server);
  c->s.server = c->server;
  if (s->ca_file) {
    size_t n = strlen(s->ca_file) + 1;
    c->ca_file = mem->malloc(n, mem->user);
    if (c->ca_file == NULL) {
      mem->free(c, mem->user);
      ntsntp__errf(errbuf, errlen, "NTS client: out of memory");
      return NTSNTP_ERR_NOMEM;
    }
    memcpy(c->ca_file, s->ca_file, n);
  }
  c->s.ca_file = c->ca_file;
  if (s->ca_pem && s->ca_pem_len) {
    c->ca_pem = mem->malloc(s->ca_pem_len, mem->user);
    if (c->ca_pem == NULL) {
      ntsntp_nts_client_del(c);
      ntsntp__errf(errbuf, errlen, "NTS client: out of memory");
      return NTSNTP_ERR_NOMEM;
    }
    memcpy(c->ca_pem, s->ca_pem, s->ca_pem_len);
  }
  c->s.ca_pem = c->ca_pem;
  *pc = c;
  return 0;
}

static void forget_keys(ntsntp_nts_client *c) {
  c->have_keys = 0;
  ntsntp_secure_clear(c->c2s, sizeof(c->c2s));
  ntsntp_secure_clear(c->s2c, sizeof(c->s2c));
  ntsntp_secure_clear(c->cookies, sizeof(c->cookies));
  c->ncookies = 0;
  /* An outstanding request's cookie no longer belongs in the jar. */
  ntsntp_secure_clear(c->sent, sizeof(c->sent));
  c->sent_len = 0;
}

/* The outstanding request is over (answered, lost or abandoned). */
static void request_over(ntsntp_nts_client *c) {
  c->outstanding = OUT_NONE;
  ntsntp_secure_clear(&c->ex, sizeof(c->ex));
  ntsntp_secure_clear(c->sent, sizeof(c->sent));
  c->sent_len = 0;
}

void ntsntp_nts_client_del(ntsntp_nts_client *c) {
  const ntsntp_mem *mem;
  if (c == NULL)
    return;
  mem = c->mem;
  ntsntp_ke_client_del(c->ke);
  forget_keys(c);
  request_over(c);
  if (c->ca_file)
    mem->free(c->ca_file, mem->user);
  if (c->ca_pem)
    mem->free(c->ca_pem, mem->user);
  mem->free(c, mem->user);
}

static int refresh_due(const ntsntp_nts_client *c, uint64_t now_ms) {
  return c->s.refresh_s && now_ms - c->ke_time >= c->s.refresh_s * 1000ull;
}

unsigned ntsntp_nts_client_want(const ntsntp_nts_client *c, uint64_t now_ms) {
  unsigned w = 0;
  if (c->ke)
    w |= NTSNTP_NTS_WANT_KE_IO;
  else if ((!c->have_keys || c->ncookies == 0 || refresh_due(c, now_ms)) &&
           now_ms >= c->backoff_until)
    w |= NTSNTP_NTS_WANT_KE;
  if (c->outstanding)
    w |= NTSNTP_NTS_WAIT_NTP;
  else if (c->have_keys && c->ncookies > 0)
    w |= NTSNTP_NTS_WANT_NTP;
  return w;
}

uint64_t ntsntp_nts_client_expiry(const ntsntp_nts_client *c) {
  uint64_t t = UINT64_MAX;
  if (c->ke && c->ke_deadline < t)
    t = c->ke_deadline;
  if (c->outstanding && c->ntp_deadline < t)
    t = c->ntp_deadline;
  if (!c->ke && c->backoff_until && c->backoff_until < t)
    t = c->backoff_until;
  return t;
}

static void back_off(ntsntp_nts_client *c, uint64_t now_ms) {
  c->ke_failed++;
  c->ke_failed_run++;
  c->backoff_ms = c->backoff_ms == 0 ? c->s.backoff_min_ms
                  : c->backoff_ms > c->s.backoff_max_ms / 2
                      ? c->s.backoff_max_ms
                      : c->backoff_ms * 2;
  c->backoff_until = now_ms + c->backoff_ms;
}

int ntsntp_nts_client_handle_expiry(ntsntp_nts_client *c, uint64_t now_ms) {
  int rv = 0;
  if (c->ke && now_ms >= c->ke_deadline) {
    ntsntp__errf(c->errtext, sizeof(c->errtext),
             "NTS-KE with %s: no answer within %u ms", c->server,
             (unsigned)c->s.ke_timeout_ms);
    ntsntp_ke_client_del(c->ke);
    c->ke = NULL;
    back_off(c, now_ms);
    rv = NTSNTP_ERR_TIMEOUT;
  }
  if (c->outstanding && now_ms >= c->ntp_deadline) {
    request_over(c);
    c->timeouts++;
    rv = NTSNTP_ERR_TIMEOUT;
  }
  return rv;
}

int ntsntp_nts_client_ke_begin(ntsntp_nts_client *c, uint64_t now_ms) {
  ntsntp_ke_client_settings ks;
  char why[sizeof(c->errtext)];
  int rv;
  if (c->ke)
    return NTSNTP_ERR_STATE;
  ntsntp_ke_client_settings_default(&ks);
  ks.server_name = c->server;
  ks.ca_file = c->ca_file;
  ks.ca_pem = c->ca_pem;
  ks.ca_pem_len = c->ca_pem ? c->s.ca_pem_len : 0;
  ks.verify = c->s.verify;
  ks.verify_user = c->s.verify_user;
  ks.skip_time_checks = c->s.skip_time_checks;
  memcpy(ks.aeads, c->s.aeads, sizeof(ks.aeads));
  ks.naeads = c->s.naeads;
  ks.timeout_ms = c->s.ke_timeout_ms;
  ks.mem = c->mem;
  rv = ntsntp_ke_client_new(&c->ke, &ks, now_ms, why, sizeof(why));
  if (rv) {
    c->ke = NULL;
    ntsntp__errf(c->errtext, sizeof(c->errtext), "NTS-KE with %s: %s",
                 c->server, why);
    back_off(c, now_ms);
    return rv;
  }
  c->ke_deadline = now_ms + c->s.ke_timeout_ms;
  return 0;
}

ntsntp_ssize ntsntp_nts_client_ke_write(ntsntp_nts_client *c, uint8_t *out,
                                        size_t outlen) {
  return c->ke ? ntsntp_ke_client_write(c->ke, out, outlen)
               : NTSNTP_ERR_STATE;
}

int ntsntp_nts_client_ke_read(ntsntp_nts_client *c, const uint8_t *in,
                              size_t len) {
  int rv;
  if (c->ke == NULL)
    return NTSNTP_ERR_STATE;
  rv = ntsntp_ke_client_read(c->ke, in, len);
  return rv == NTSNTP_ERR_AGAIN ? 0 : rv;
}

unsigned ntsntp_nts_client_ke_want(const ntsntp_nts_client *c) {
  return c->ke ? ntsntp_ke_client_want(c->ke) : 0;
}

/* A successful NTS-KE (|r| checked): new keys and cookies, no back-off. */
static void take_keys(ntsntp_nts_client *c, uint64_t now_ms,
                      const ntsntp_ke_result *r) {
  size_t i;
  forget_keys(c);
  c->have_keys = 1;
  c->aead = r->aead;
  memcpy(c->c2s, r->c2s, r->key_len);
  memcpy(c->s2c, r->s2c, r->key_len);
  for (i = 0; i < r->ncookies && c->ncookies < JAR; i++) {
    memcpy(c->cookies[c->ncookies], r->cookies[i], r->cookie_len[i]);
    c->cookie_len[c->ncookies++] = r->cookie_len[i];
  }
  snprintf(c->ntp_server, sizeof(c->ntp_server), "%s",
           r->ntp_server[0] ? r->ntp_server : c->server);
  c->ntp_port = r->ntp_port ? r->ntp_port : 123;
  c->ke_time = now_ms;
  c->ke_ok++;
  c->ke_failed_run = 0;
  c->backoff_ms = 0;
  c->backoff_until = 0;
  c->errtext[0] = '\0';
}

int ntsntp_nts_client_ke_end(ntsntp_nts_client *c, uint64_t now_ms) {
  ntsntp_ke_result r;
  int rv;
  if (c->ke == NULL)
    return NTSNTP_ERR_STATE;
  rv = ntsntp_ke_client_result(c->ke, &r);
  if (rv) {
    ntsntp__errf(c->errtext, sizeof(c->errtext), "NTS-KE with %s failed: %s",
             c->server,
             ntsntp_ke_client_errtext(c->ke)[0]
                 ? ntsntp_ke_client_errtext(c->ke)
                 : ntsntp_strerror(rv));
    ntsntp_ke_client_del(c->ke);
    c->ke = NULL;
    ntsntp_ke_result_clear(&r);
    back_off(c, now_ms);
    return rv;
  }
  ntsntp_ke_client_del(c->ke);
  c->ke = NULL;
  take_keys(c, now_ms, &r);
  ntsntp_ke_result_clear(&r);
  return 0;
}

int ntsntp_nts_client_ke_result(ntsntp_nts_client *c, uint64_t now_ms,
                                const ntsntp_ke_result *r) {
  size_t i;
  if (c->ke)
    return NTSNTP_ERR_STATE;
  if (r == NULL || !ntsntp_aead_supported(r->aead) ||
      r->key_len != ntsntp_aead_key_len(r->aead) || r->ncookies == 0 ||
      r->ncookies > NTSNTP_KE_MAX_COOKIES ||
      memchr(r->ntp_server, 0, sizeof(r->ntp_server)) == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  for (i = 0; i < r->ncookies; i++)
    if (r->cookie_len[i] == 0 || r->cookie_len[i] > NTSNTP_COOKIE_MAX_LEN)
      return NTSNTP_ERR_INVALID_ARG;
  take_keys(c, now_ms, r);
  return 0;
}

void ntsntp_nts_client_forget(ntsntp_nts_client *c) {
  forget_keys(c);
  request_over(c);
}

void ntsntp_nts_client_ke_failed(ntsntp_nts_client *c, uint64_t now_ms,
                                 const char *why) {
  if (c->ke) {
    ntsntp_ke_client_del(c->ke);
    c->ke = NULL;
  }
  ntsntp__errf(c->errtext, sizeof(c->errtext), "NTS-KE with %s failed: %s",
           c->server, why ? why : "no connection");
  back_off(c, now_ms);
}

const char *ntsntp_nts_client_ntp_server(const ntsntp_nts_client *c,
                                         uint16_t *port) {
  if (c->ntp_server[0] == '\0')
    return NULL;
  if (port)
    *port = c->ntp_port;
  return c->ntp_server;
}

/* Takes the oldest cookie out of the jar for a request now sent: spent
 * whatever happens to it (RFC 8915 sec. 5.7: never reuse a cookie). */
static void spend_cookie(ntsntp_nts_client *c, uint64_t now_ms, int who) {
  memcpy(c->sent, c->cookies[0], c->cookie_len[0]);
  c->sent_len = c->cookie_len[0];
  memmove(c->cookies, c->cookies[1], (c->ncookies - 1) * sizeof(c->cookies[0]));
  memmove(c->cookie_len, c->cookie_len + 1,
          (c->ncookies - 1) * sizeof(c->cookie_len[0]));
  c->ncookies--;
  ntsntp_secure_clear(c->cookies[c->ncookies], sizeof(c->cookies[0]));
  c->outstanding = who;
  c->ntp_deadline = now_ms + c->s.ntp_timeout_ms;
  c->requests++;
}

ntsntp_ssize ntsntp_nts_client_request(ntsntp_nts_client *c, uint64_t now_ms,
                                       uint8_t *out, size_t outlen) {
  ntsntp_client_params p;
  ntsntp_ssize n;
  if (!c->have_keys || c->ncookies == 0 || c->outstanding)
    return NTSNTP_ERR_STATE;
  memset(&p, 0, sizeof(p));
  p.rand = c->s.rand;
  p.rand_user = c->s.rand_user;
  p.aead = c->aead;
  p.c2s = c->c2s;
  p.s2c = c->s2c;
  p.cookie = c->cookies[0];
  p.cookie_len = c->cookie_len[0];
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
   *# [the client] SHOULD include [...] NTS Cookie Placeholder extension
   *# fields [...] as needed to replenish its cookie supply */
  p.placeholders = JAR - c->ncookies;
  n = ntsntp_client_request(&c->ex, &p, out, outlen);
  if (n < 0)
    return n;
  spend_cookie(c, now_ms, OUT_OWN);
  return n;
}

int ntsntp_nts_client_request_keys(ntsntp_nts_client *c, uint64_t now_ms,
                                   ntsntp_nts_client_keys *rk) {
  if (!c->have_keys || c->ncookies == 0 || c->outstanding)
    return NTSNTP_ERR_STATE;
  memset(rk, 0, sizeof(*rk));
  rk->aead = c->aead;
  rk->key_len = ntsntp_aead_key_len(c->aead);
  rk->c2s = c->c2s;
  rk->s2c = c->s2c;
  rk->placeholders = JAR - c->ncookies; /* as ntsntp_nts_client_request */
  spend_cookie(c, now_ms, OUT_KEYS);
  rk->cookie = c->sent;
  rk->cookie_len = c->sent_len;
  return 0;
}

/* A cookie that never reached the wire links nothing: it goes back to
 * the front of the jar, to be the next one spent (unless the keys it
 * belongs to were replaced since: sent_len 0). */
int ntsntp_nts_client_request_unsent(ntsntp_nts_client *c) {
  if (c->outstanding == OUT_NONE)
    return NTSNTP_ERR_STATE;
  if (c->sent_len && c->ncookies < JAR) {
    memmove(c->cookies[1], c->cookies[0], c->ncookies * sizeof(c->cookies[0]));
    memmove(c->cookie_len + 1, c->cookie_len,
            c->ncookies * sizeof(c->cookie_len[0]));
    memcpy(c->cookies[0], c->sent, c->sent_len);
    c->cookie_len[0] = c->sent_len;
    c->ncookies++;
  }
  c->requests--;
  request_over(c);
  return 0;
}

/*= https://www.rfc-editor.org/rfc/rfc8915#section-5.7
 *# the client SHOULD [...] discard all its cookies and keys [...] and
 *# rerun NTS-KE */
static void nak(ntsntp_nts_client *c) {
  c->naks++;
  request_over(c);
  forget_keys(c);
  ntsntp__errf(c->errtext, sizeof(c->errtext),
               "%s sent an NTS NAK: new keys needed", c->ntp_server);
}

/* The cookies of an authenticated answer go into the jar. */
static void answered(ntsntp_nts_client *c, const ntsntp_client_sample *s) {
  unsigned i;
  request_over(c);
  for (i = 0; i < s->n_cookies && c->ncookies < JAR; i++) {
    if (s->cookie_len[i] == 0 || s->cookie_len[i] > NTSNTP_COOKIE_MAX_LEN)
      continue;
    memcpy(c->cookies[c->ncookies], s->cookies[i], s->cookie_len[i]);
    c->cookie_len[c->ncookies++] = s->cookie_len[i];
  }
  c->responses++;
}

int ntsntp_nts_client_response(ntsntp_nts_client *c, const uint8_t *in,
                               size_t len, uint64_t t1, uint64_t t4,
                               ntsntp_client_sample *sample) {
  int rv;
  if (c->outstanding != OUT_OWN)
    return NTSNTP_ERR_STATE;
  rv = ntsntp_client_response(&c->ex, in, len, t1, t4, sample);
  if (rv == NTSNTP_ERR_NAK)
    nak(c);
  else if (rv == NTSNTP_ERR_KOD)
    request_over(c);
  else if (rv == 0)
    answered(c, sample);
  /* else not the answer: keep waiting for it */
  return rv;
}

int ntsntp_nts_client_request_done(ntsntp_nts_client *c, int status,
                                   const ntsntp_client_sample *sample) {
  if (c->outstanding != OUT_KEYS)
    return NTSNTP_ERR_STATE;
  if (status == 0 && (sample == NULL || !sample->authenticated)) {
    request_over(c); /* never stuck on a caller's mistake */
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (status == 0)
    answered(c, sample);
  else if (status == NTSNTP_ERR_NAK)
    nak(c);
  else
    request_over(c);
  c->timeouts += status == NTSNTP_ERR_TIMEOUT;
  return 0;
}

void ntsntp_nts_client_get_info(const ntsntp_nts_client *c,
                                ntsntp_nts_client_info *info) {
  memset(info, 0, sizeof(*info));
  info->have_keys = c->have_keys;
  info->aead = c->have_keys ? c->aead : 0;
  info->cookies = c->ncookies;
  info->cookie_len = c->ncookies ? c->cookie_len[0] : 0;
  info->ke_ok = c->ke_ok;
  info->ke_failed = c->ke_failed;
  info->naks = c->naks;
  info->requests = c->requests;
  info->responses = c->responses;
  info->timeouts = c->timeouts;
  info->backoff_until_ms = c->backoff_until;
  info->ke_time_ms = c->ke_time;
  info->ke_failed_run = c->ke_failed_run;
}

const char *ntsntp_nts_client_errtext(const ntsntp_nts_client *c) {
  return c->errtext;
}
