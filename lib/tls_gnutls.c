/* libntsntp: GnuTLS on memory push/pull for NTS-KE, and server credentials. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "errtext.h"
#include "tls.h"

/* TLS 1.3 only, on top of the system's default priorities. */
#define TLS_PRIORITY_APPEND "-VERS-ALL:+VERS-TLS1.3"
/* A server picks its own preference: X25519 before P-256 and AES-128-GCM
 * first cut the cost of a handshake by about a quarter (docs/performance.md)
 * while every TLS 1.3 client stays supported. */
#define TLS_PRIORITY_APPEND_SERVER                                             \
  TLS_PRIORITY_APPEND ":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"           \
                      "+GROUP-SECP384R1:-CIPHER-ALL:+AES-128-GCM:"             \
                      "+CHACHA20-POLY1305:+AES-256-GCM:%SERVER_PRECEDENCE"
/* Bounds on buffered bytes; NTS-KE messages are at most 16 KiB. */
#define MAX_INBUF (256 * 1024)
#define MAX_OUTBUF (256 * 1024)

/* ------------------------------------------------------------------ */
/* Credentials                                                         */
/* ------------------------------------------------------------------ */

struct ntsntp_ke_creds {
  int refs;
  gnutls_certificate_credentials_t cred;
  const ntsntp_mem *mem;
  size_t n_pairs;
  char warning[512];
};

/*
 * Reads a whole credential file into |*pbuf| (mem->malloc'd), explaining
 * failures in |errbuf| with enough detail to fix permissions.  Never
 * blocks (a FIFO is refused, not waited on); links are followed, since
 * certbot's live/ names are links into archive/.
 */
int ntsntp__cred_file_read(const char *path, const ntsntp_mem *mem,
                           uint8_t **pbuf, size_t *plen, struct stat *pst,
                           char *errbuf, size_t errlen) {
  struct stat st;
  int fd, e;

  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    e = errno;
    /* The file-system uid: privsep reads as the server's user while the
     * effective one is still root. */
    unsigned uid = (unsigned)setfsuid((uid_t)-1);
    if ((e == EACCES || e == EPERM) && stat(path, &st) == 0)
      ntsntp__errf(
          errbuf, errlen,
          "cannot read %s: %s (owner uid %u, mode %04o; this process runs "
          "as uid %u): read it before dropping privileges or make it "
          "readable by uid %u",
          path, strerror(e), (unsigned)st.st_uid,
          (unsigned)(st.st_mode & 07777), uid, uid);
    else if (e == EACCES || e == EPERM)
      ntsntp__errf(errbuf, errlen,
                   "cannot read %s: %s (this process runs as uid %u; a parent "
                   "directory is not searchable): read it before dropping "
                   "privileges or make its directories accessible to uid %u",
                   path, strerror(e), uid, uid);
    else if (e == ENOENT)
      ntsntp__errf(errbuf, errlen, "cannot read %s: %s: check the path; in "
                   "Docker, is LETSENCRYPT_DIR right? A missing host directory "
                   "is mounted as an empty one", path, strerror(e));
    else
      ntsntp__errf(errbuf, errlen, "cannot read %s: %s", path, strerror(e));
    return NTSNTP_ERR_IO;
  }
  return ntsntp__cred_fd_read(fd, path, mem, pbuf, plen, pst, errbuf, errlen);
}

int ntsntp__cred_fd_read(int fd, const char *path, const ntsntp_mem *mem,
                         uint8_t **pbuf, size_t *plen, struct stat *pst,
                         char *errbuf, size_t errlen) {
  struct stat st;
  uint8_t *buf;
  size_t got = 0;
  int e;

  if (fstat(fd, &st) != 0) {
    e = errno;
    close(fd);
    ntsntp__errf(errbuf, errlen, "cannot read %s: %s", path, strerror(e));
    return NTSNTP_ERR_IO;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    ntsntp__errf(errbuf, errlen, "cannot read %s: not a regular file", path);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  if (st.st_size <= 0 || st.st_size > NTSNTP__MAX_CRED_FILE) {
    close(fd);
    ntsntp__errf(errbuf, errlen,
                 "cannot use %s: size %lld (must be 1..%d bytes)", path,
                 (long long)st.st_size, NTSNTP__MAX_CRED_FILE);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  buf = mem->malloc((size_t)st.st_size, mem->user);
  if (buf == NULL) {
    close(fd);
    return NTSNTP_ERR_NOMEM;
  }
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      e = n < 0 ? errno : 0;
      close(fd);
      ntsntp_secure_clear(buf, (size_t)st.st_size);
      mem->free(buf, mem->user);
      ntsntp__errf(errbuf, errlen, "cannot read %s: %s", path,
                   e ? strerror(e) : "file shrank while reading");
      return NTSNTP_ERR_IO;
    }
    got += (size_t)n;
  }
  close(fd);
  *pbuf = buf;
  *plen = got;
  if (pst)
    *pst = st;
  return 0;
}

/* Parses one pair alone first so that a message names the bad file. */
static int check_pair(const ntsntp_ke_pem *p, char *errbuf, size_t errlen) {
  gnutls_datum_t cd = {(unsigned char *)p->cert, (unsigned)p->cert_len};
  gnutls_datum_t kd = {(unsigned char *)p->key, (unsigned)p->key_len};
  gnutls_x509_crt_t *crts = NULL;
  gnutls_x509_privkey_t pk = NULL;
  unsigned ncrts = 0, i;
  int g;

  g = gnutls_x509_crt_list_import2(&crts, &ncrts, &cd, GNUTLS_X509_FMT_PEM, 0);
  if (g < 0) {
    ntsntp__errf(errbuf, errlen, "certificate file %s: %s", p->cert_name,
                 gnutls_strerror(g));
    return NTSNTP_ERR_BAD_CONFIG;
  }
  for (i = 0; i < ncrts; i++)
    gnutls_x509_crt_deinit(crts[i]);
  gnutls_free(crts);
  if (gnutls_x509_privkey_init(&pk) < 0)
    return NTSNTP_ERR_NOMEM;
  g = gnutls_x509_privkey_import2(pk, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  gnutls_x509_privkey_deinit(pk);
  if (g < 0) {
    ntsntp__errf(errbuf, errlen, "key file %s: %s", p->key_name,
                 gnutls_strerror(g));
    return NTSNTP_ERR_BAD_CONFIG;
  }
  return 0;
}

int ntsntp_ke_creds_new_pem(ntsntp_ke_creds **pcreds,
                            const ntsntp_ke_pem *pairs, size_t n,
                            char *errbuf, size_t errlen) {
  const ntsntp_mem *mem = ntsntp_mem_default();
  ntsntp_ke_creds *c;
  size_t i;
  int rv, g;

  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (pcreds == NULL || pairs == NULL || n == 0 ||
      n > NTSNTP_KE_MAX_CERTS)
    return NTSNTP_ERR_INVALID_ARG;
  *pcreds = NULL;
  for (i = 0; i < n; i++) {
    if (!pairs[i].cert || !pairs[i].key || !pairs[i].cert_len ||
        !pairs[i].key_len || pairs[i].cert_len > NTSNTP__MAX_CRED_FILE ||
        pairs[i].key_len > NTSNTP__MAX_CRED_FILE || !pairs[i].cert_name ||
        !pairs[i].key_name)
      return NTSNTP_ERR_INVALID_ARG;
    rv = check_pair(&pairs[i], errbuf, errlen);
    if (rv)
      return rv;
  }
  c = mem->calloc(1, sizeof(*c), mem->user);
  if (c == NULL)
    return NTSNTP_ERR_NOMEM;
  c->mem = mem;
  c->refs = 1;
  if (gnutls_certificate_allocate_credentials(&c->cred) < 0) {
    mem->free(c, mem->user);
    return NTSNTP_ERR_NOMEM;
  }
  /* Several pairs in one credential: GnuTLS picks the one whose names
   * match the client's SNI, and among those one whose key suits the
   * client's signature algorithms (ECDSA and RSA for one name). */
  for (i = 0; i < n; i++) {
    gnutls_datum_t cd = {(unsigned char *)pairs[i].cert,
                         (unsigned)pairs[i].cert_len};
    gnutls_datum_t kd = {(unsigned char *)pairs[i].key,
                         (unsigned)pairs[i].key_len};
    g = gnutls_certificate_set_x509_key_mem2(c->cred, &cd, &kd,
                                             GNUTLS_X509_FMT_PEM, NULL, 0);
    if (g < 0) {
      ntsntp__errf(errbuf, errlen, "cannot use key %s with certificate %s: %s",
                   pairs[i].key_name, pairs[i].cert_name, gnutls_strerror(g));
      gnutls_certificate_free_credentials(c->cred);
      mem->free(c, mem->user);
      return NTSNTP_ERR_BAD_CONFIG;
    }
    if ((pairs[i].key_mode & (S_IRGRP | S_IROTH)) && !c->warning[0])
      snprintf(c->warning, sizeof(c->warning),
               "key file %s is readable by group or others (mode %04o): "
               "chmod 0600 it",
               pairs[i].key_name, (unsigned)(pairs[i].key_mode & 07777));
  }
  c->n_pairs = n;
  *pcreds = c;
  return 0;
}

int ntsntp_ke_creds_load(ntsntp_ke_creds **pcreds, const char *cert_path,
                         const char *key_path, char *errbuf, size_t errlen) {
  const ntsntp_mem *mem = ntsntp_mem_default();
  ntsntp_ke_pem p;
  uint8_t *cbuf = NULL, *kbuf = NULL;
  size_t clen = 0, klen = 0;
  struct stat kst;
  int rv;

  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (pcreds == NULL || cert_path == NULL || key_path == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  *pcreds = NULL;
  rv = ntsntp__cred_file_read(cert_path, mem, &cbuf, &clen, NULL, errbuf,
                              errlen);
  if (rv == 0)
    rv = ntsntp__cred_file_read(key_path, mem, &kbuf, &klen, &kst, errbuf,
                                errlen);
  if (rv == 0) {
    memset(&p, 0, sizeof(p));
    p.cert = cbuf;
    p.cert_len = clen;
    p.cert_name = cert_path;
    p.key = kbuf;
    p.key_len = klen;
    p.key_name = key_path;
    p.key_mode = (unsigned)kst.st_mode;
    rv = ntsntp_ke_creds_new_pem(pcreds, &p, 1, errbuf, errlen);
  }
  if (kbuf) {
    ntsntp_secure_clear(kbuf, klen);
    mem->free(kbuf, mem->user);
  }
  if (cbuf)
    mem->free(cbuf, mem->user);
  return rv;
}

/* Printable ASCII only: names come from a file anyone could have issued. */
static void printable(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
      *s = '?';
}

int ntsntp_ke_creds_cert_info(const ntsntp_ke_creds *c, size_t i,
                              ntsntp_ke_cert_info *out) {
  gnutls_datum_t der, dn = {NULL, 0};
  gnutls_x509_crt_t crt;
  size_t len = 0, k;
  unsigned idx;
  int g;
  if (!c || !out || i >= c->n_pairs)
    return NTSNTP_ERR_INVALID_ARG;
  memset(out, 0, sizeof(*out));
  if (gnutls_certificate_get_crt_raw(c->cred, (unsigned)i, 0, &der) < 0)
    return NTSNTP_ERR_BAD_CONFIG;
  if (gnutls_x509_crt_init(&crt) < 0)
    return NTSNTP_ERR_NOMEM;
  g = gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER);
  if (g < 0) {
    gnutls_x509_crt_deinit(crt);
    return NTSNTP_ERR_BAD_CONFIG;
  }
  out->not_before = (int64_t)gnutls_x509_crt_get_activation_time(crt);
  out->not_after = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
  if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
    snprintf(out->subject, sizeof(out->subject), "%.*s", (int)dn.size,
             (const char *)dn.data);
    gnutls_free(dn.data);
  }
  for (idx = 0;; idx++) {
    char name[256];
    size_t nlen = sizeof(name) - 1;
    unsigned crit;
    g = gnutls_x509_crt_get_subject_alt_name(crt, idx, name, &nlen, &crit);
    if (g == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
      break;
    if (g == GNUTLS_SAN_DNSNAME) {
      name[nlen] = '\0';
    } else if (g == GNUTLS_SAN_IPADDRESS && (nlen == 4 || nlen == 16)) {
      char a[64];
      if (!inet_ntop(nlen == 4 ? AF_INET : AF_INET6, name, a, sizeof(a)))
        continue;
      snprintf(name, sizeof(name), "%s", a);
    } else {
      continue; /* other kinds, or too long */
    }
    k = strlen(name);
    if (len + k + 2 + 4 >= sizeof(out->names)) {
      snprintf(out->names + len, sizeof(out->names) - len, "%s...",
               len ? ", " : "");
      break;
    }
    len += (size_t)snprintf(out->names + len, sizeof(out->names) - len,
                            "%s%s", len ? ", " : "", name);
  }
  gnutls_x509_crt_deinit(crt);
  printable(out->subject);
  printable(out->names);
  return 0;
}

size_t ntsntp_ke_creds_count(const ntsntp_ke_creds *c) {
  return c ? c->n_pairs : 0;
}

const char *ntsntp_ke_creds_warning(const ntsntp_ke_creds *c) {
  return c && c->warning[0] ? c->warning : NULL;
}

ntsntp_ke_creds *ntsntp_ke_creds_ref(ntsntp_ke_creds *c) {
  if (c)
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
  return c;
}

void ntsntp_ke_creds_unref(ntsntp_ke_creds *c) {
  if (c == NULL)
    return;
  if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  gnutls_certificate_free_credentials(c->cred);
  c->mem->free(c, c->mem->user);
}

/* ------------------------------------------------------------------ */
/* Session on memory buffers                                           */
/* ------------------------------------------------------------------ */

typedef struct membuf {
  uint8_t *p;
  size_t off, len, cap; /* valid bytes are p[off..len) */
} membuf;

struct ntsntp__tls {
  gnutls_session_t session;
  gnutls_certificate_credentials_t client_cred; /* client side only */
  ntsntp_ke_creds *creds;                       /* server side only */
  const ntsntp_mem *mem;
  membuf in, out;
  int eof;
  int alpn_failed;
  int is_server;
  /* Client: the host name checked and the caller's hook, if any. */
  const char *verify_name;
  ntsntp_ke_verify_fn verify;
  void *verify_user;
  int skip_time_checks;
  int hook_refused; /* errtext says why */
  char errtext[256];
};

static void membuf_free(const ntsntp_mem *mem, membuf *b) {
  if (b->p) {
    ntsntp_secure_clear(b->p, b->cap);
    mem->free(b->p, mem->user);
  }
  memset(b, 0, sizeof(*b));
}

static int membuf_append(const ntsntp_mem *mem, membuf *b, const void *src,
                         size_t n, size_t max) {
  if (n == 0)
    return 0;
  if (b->off > 0 && b->off == b->len)
    b->off = b->len = 0;
  if (n > max || b->len - b->off > max - n)
    return NTSNTP_ERR_NOBUF;
  if (b->cap - b->len < n && b->off > 0) {
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
  }
  if (b->cap - b->len < n) {
    size_t ncap = b->cap ? b->cap : 4096;
    uint8_t *np;
    while (ncap - b->len < n)
      ncap *= 2;
    /* Copy by hand rather than realloc so old bytes can be wiped. */
    np = mem->malloc(ncap, mem->user);
    if (np == NULL)
      return NTSNTP_ERR_NOMEM;
    if (b->len)
      memcpy(np, b->p, b->len);
    if (b->p) {
      ntsntp_secure_clear(b->p, b->cap);
      mem->free(b->p, mem->user);
    }
    b->p = np;
    b->cap = ncap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
  return 0;
}

static ssize_t pull_cb(gnutls_transport_ptr_t ptr, void *data, size_t len) {
  ntsntp__tls *t = ptr;
  size_t avail = t->in.len - t->in.off;

  if (avail == 0) {
    if (t->eof)
      return 0;
    gnutls_transport_set_errno(t->session, EAGAIN);
    return -1;
  }
  if (len > avail)
    len = avail;
  memcpy(data, t->in.p + t->in.off, len);
  t->in.off += len;
  return (ssize_t)len;
}

static int pull_timeout_cb(gnutls_transport_ptr_t ptr, unsigned ms) {
  ntsntp__tls *t = ptr;
  (void)ms;
  /* Never wait: report whether bytes (or EOF) are there already. */
  return (t->in.len > t->in.off || t->eof) ? 1 : 0;
}

static ssize_t push_cb(gnutls_transport_ptr_t ptr, const void *data,
                       size_t len) {
  ntsntp__tls *t = ptr;
  int rv = membuf_append(t->mem, &t->out, data, len, MAX_OUTBUF);

  if (rv != 0) {
    gnutls_transport_set_errno(t->session, rv == NTSNTP_ERR_NOMEM ? ENOMEM
                                                                  : ENOBUFS);
    return -1;
  }
  return (ssize_t)len;
}

static void set_err(ntsntp__tls *t, const char *what, int g) {
  snprintf(t->errtext, sizeof(t->errtext), "%s: %s", what,
           gnutls_strerror(g));
}

static int tls_common(ntsntp__tls *t, unsigned flags) {
  static const char alpn[] = NTSNTP_KE_ALPN;
  gnutls_datum_t proto = {(unsigned char *)alpn, sizeof(alpn) - 1};
  const char *errpos = NULL;
  int g;

  g = gnutls_init(&t->session, flags | GNUTLS_NONBLOCK | GNUTLS_NO_TICKETS);
  if (g < 0) {
    t->session = NULL;
    set_err(t, "gnutls_init", g);
    return g == GNUTLS_E_MEMORY_ERROR ? NTSNTP_ERR_NOMEM : NTSNTP_ERR_TLS;
  }
  g = gnutls_set_default_priority_append(
      t->session,
      flags & GNUTLS_SERVER ? TLS_PRIORITY_APPEND_SERVER : TLS_PRIORITY_APPEND,
      &errpos, 0);
  if (g < 0) {
    set_err(t, "priority", g);
    return NTSNTP_ERR_TLS;
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-3
   *# Implementations MUST NOT negotiate TLS versions earlier than 1.3
   */
  g = gnutls_alpn_set_protocols(t->session, &proto, 1,
                                GNUTLS_ALPN_MANDATORY);
  if (g < 0) {
    set_err(t, "alpn", g);
    return NTSNTP_ERR_TLS;
  }
  gnutls_transport_set_ptr(t->session, t);
  gnutls_transport_set_pull_function(t->session, pull_cb);
  gnutls_transport_set_pull_timeout_function(t->session, pull_timeout_cb);
  gnutls_transport_set_push_function(t->session, push_cb);
  /* The caller owns the deadline. */
  gnutls_handshake_set_timeout(t->session, 0);
  return 0;
}

static ntsntp__tls *tls_alloc(const ntsntp_mem *mem) {
  ntsntp__tls *t;
  if (mem == NULL)
    mem = ntsntp_mem_default();
  t = mem->calloc(1, sizeof(*t), mem->user);
  if (t)
    t->mem = mem;
  return t;
}

int ntsntp__tls_new_server(ntsntp__tls **pt, ntsntp_ke_creds *creds,
                           const ntsntp_mem *mem) {
  ntsntp__tls *t;
  int rv, g;

  *pt = NULL;
  if (creds == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  t = tls_alloc(mem);
  if (t == NULL)
    return NTSNTP_ERR_NOMEM;
  t->is_server = 1;
  t->creds = ntsntp_ke_creds_ref(creds);
  rv = tls_common(t, GNUTLS_SERVER);
  if (rv == 0) {
    g = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
                               creds->cred);
    if (g < 0) {
      set_err(t, "credentials", g);
      rv = NTSNTP_ERR_TLS;
    }
  }
  if (rv != 0) {
    ntsntp__tls_del(t);
    return rv;
  }
  *pt = t;
  return 0;
}

static int is_ip_literal(const char *s) {
  uint8_t buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* gnutls' certificate callback when the caller has a hook: the library's
 * check first (as gnutls_session_set_verify_cert does it), then the hook
 * with the chain and that verdict. */
static int verify_with_hook(gnutls_session_t session) {
  ntsntp__tls *t = gnutls_session_get_ptr(session);
  const gnutls_datum_t *certs;
  const uint8_t *der[16];
  size_t len[16];
  unsigned n = 0, i, status = 0, vflags = 0;
  gnutls_typed_vdata_st data = {GNUTLS_DT_DNS_HOSTNAME, NULL, 0};
  int verified;
  if (t->skip_time_checks)
    vflags |= GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
              GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS;
  gnutls_certificate_set_verify_flags(t->client_cred, vflags);
  data.data = (unsigned char *)(uintptr_t)t->verify_name;
  if (is_ip_literal(t->verify_name))
    data.type = GNUTLS_DT_IP_ADDRESS;
  verified = gnutls_certificate_verify_peers(session, &data, 1, &status) == 0 &&
             status == 0;
  certs = gnutls_certificate_get_peers(session, &n);
  for (i = 0; certs != NULL && i < n && i < 16; i++) {
    der[i] = certs[i].data;
    len[i] = certs[i].size;
  }
  if (t->verify(t->verify_user, der, len, i, verified) == 0)
    return 0;
  snprintf(t->errtext, sizeof(t->errtext),
           "handshake: the certificate was refused by the application's "
           "check%s",
           verified ? "" : " (and the library's)");
  t->hook_refused = 1;
  return GNUTLS_E_CERTIFICATE_ERROR;
}

int ntsntp__tls_new_client(ntsntp__tls **pt, const ntsntp_ke_client_settings *s,
                           const ntsntp_mem *mem, char *errbuf, size_t errlen) {
  const char *server_name = s->server_name, *ca_file = s->ca_file;
  int skip_time_checks = s->skip_time_checks;
  ntsntp__tls *t;
  unsigned vflags = 0;
  int rv, g;

  *pt = NULL;
  if (server_name == NULL || server_name[0] == '\0') {
    ntsntp__errf(errbuf, errlen, "TLS client: no server name");
    return NTSNTP_ERR_INVALID_ARG;
  }
  t = tls_alloc(mem);
  if (t == NULL) {
    ntsntp__errf(errbuf, errlen, "TLS client: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  rv = tls_common(t, GNUTLS_CLIENT);
  if (rv != 0)
    goto fail;
  if (gnutls_certificate_allocate_credentials(&t->client_cred) < 0) {
    t->client_cred = NULL;
    rv = NTSNTP_ERR_NOMEM;
    goto fail;
  }
  if (s->ca_pem) {
    gnutls_datum_t d = {(unsigned char *)(uintptr_t)s->ca_pem,
                        (unsigned)s->ca_pem_len};
    g = s->ca_pem_len > 0 && s->ca_pem_len < UINT32_MAX
            ? gnutls_certificate_set_x509_trust_mem(t->client_cred, &d,
                                                    GNUTLS_X509_FMT_PEM)
            : 0;
  } else if (ca_file) {
    /* GnuTLS says only "Error while reading file": name the cause. */
    FILE *f = fopen(ca_file, "rb");
    if (f == NULL) {
      snprintf(t->errtext, sizeof(t->errtext),
               "cannot read the CA file %s: %s; fix: give ca_file a readable "
               "PEM file of trusted CAs, or NULL for the system store",
               ca_file, strerror(errno));
      rv = NTSNTP_ERR_BAD_CONFIG;
      goto fail;
    }
    fclose(f);
    g = gnutls_certificate_set_x509_trust_file(t->client_cred, ca_file,
                                               GNUTLS_X509_FMT_PEM);
  } else {
    g = gnutls_certificate_set_x509_system_trust(t->client_cred);
  }
  if (g <= 0) {
    snprintf(t->errtext, sizeof(t->errtext),
             "no trusted CA loaded from %s%s%s; fix: give PEM certificates "
             "(ca_file or ca_pem)",
             s->ca_pem ? "the CA PEM given"
             : ca_file ? ca_file
                       : "the system store",
             g < 0 ? ": " : " (no certificate in it)",
             g < 0 ? gnutls_strerror(g) : "");
    rv = NTSNTP_ERR_BAD_CONFIG;
    goto fail;
  }
  g = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
                             t->client_cred);
  if (g < 0) {
    set_err(t, "credentials", g);
    rv = NTSNTP_ERR_TLS;
    goto fail;
  }
  /* RFC 6066: literal IP addresses are not permitted in SNI. */
  if (!is_ip_literal(server_name)) {
    g = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, server_name,
                               strlen(server_name));
    if (g < 0) {
      set_err(t, "server name", g);
      rv = NTSNTP_ERR_TLS;
      goto fail;
    }
  }
  /* Per session, never gnutls_global_set_time_function: a client that has
     no time yet can still check everything but the validity periods. */
  if (s->verify) {
    /* The name outlives the session: the KE client owns a copy. */
    t->verify_name = server_name;
    t->verify = s->verify;
    t->verify_user = s->verify_user;
    t->skip_time_checks = skip_time_checks;
    gnutls_session_set_ptr(t->session, t);
    gnutls_certificate_set_verify_function(t->client_cred, verify_with_hook);
    *pt = t;
    return 0;
  }
  if (skip_time_checks)
    vflags |= GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
              GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS;
  gnutls_session_set_verify_cert(t->session, server_name, vflags);
  *pt = t;
  return 0;

fail:
  ntsntp__errf(errbuf, errlen, "%s",
               t->errtext[0] ? t->errtext : ntsntp_strerror(rv));
  ntsntp__tls_del(t);
  return rv;
}

void ntsntp__tls_del(ntsntp__tls *t) {
  const ntsntp_mem *mem;
  if (t == NULL)
    return;
  mem = t->mem;
  if (t->session)
    gnutls_deinit(t->session);
  if (t->client_cred)
    gnutls_certificate_free_credentials(t->client_cred);
  ntsntp_ke_creds_unref(t->creds);
  membuf_free(mem, &t->in);
  membuf_free(mem, &t->out);
  mem->free(t, mem->user);
}

int ntsntp__tls_feed(ntsntp__tls *t, const uint8_t *in, size_t len) {
  int rv;
  if (len == 0) {
    t->eof = 1;
    return 0;
  }
  rv = membuf_append(t->mem, &t->in, in, len, MAX_INBUF);
  return rv == NTSNTP_ERR_NOBUF ? NTSNTP_ERR_TOO_LARGE : rv;
}

size_t ntsntp__tls_pending(const ntsntp__tls *t) {
  return t->out.len - t->out.off;
}

size_t ntsntp__tls_take(ntsntp__tls *t, uint8_t *out, size_t outlen) {
  size_t n = ntsntp__tls_pending(t);
  if (n > outlen)
    n = outlen;
  if (n) {
    memcpy(out, t->out.p + t->out.off, n);
    t->out.off += n;
  }
  return n;
}

int ntsntp__tls_handshake(ntsntp__tls *t) {
  static const char alpn[] = NTSNTP_KE_ALPN;
  gnutls_datum_t sel;
  int g = gnutls_handshake(t->session);

  if (g == GNUTLS_E_AGAIN || g == GNUTLS_E_INTERRUPTED)
    return NTSNTP_ERR_AGAIN;
  if (g < 0) {
    if (g == GNUTLS_E_NO_APPLICATION_PROTOCOL)
      t->alpn_failed = 1;
    if (t->hook_refused) {
      /* errtext already says the hook refused it */
    } else if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
      gnutls_datum_t txt;
      unsigned st = gnutls_session_get_verify_cert_status(t->session);
      if (gnutls_certificate_verification_status_print(
              st, GNUTLS_CRT_X509, &txt, 0) == 0) {
        snprintf(t->errtext, sizeof(t->errtext), "handshake: %s",
                 (const char *)txt.data);
        gnutls_free(txt.data);
      } else {
        set_err(t, "handshake", g);
      }
    } else {
      set_err(t, "handshake", g);
    }
    /* Tell the peer why, if GnuTLS has an alert for it. */
    gnutls_alert_send_appropriate(t->session, g);
    return NTSNTP_ERR_TLS;
  }
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-4
   *# The two endpoints carry out a TLS handshake in conformance with
   *# Section 3, with the client offering (via an ALPN extension
   *# [RFC7301]), and the server accepting, an application-layer protocol
   *# of "ntske/1".
   */
  if (gnutls_alpn_get_selected_protocol(t->session, &sel) < 0 ||
      sel.size != sizeof(alpn) - 1 || memcmp(sel.data, alpn, sel.size) != 0) {
    t->alpn_failed = 1;
    snprintf(t->errtext, sizeof(t->errtext),
             "handshake: ALPN \"ntske/1\" not negotiated");
    gnutls_alert_send(t->session, GNUTLS_AL_FATAL,
                      GNUTLS_A_NO_APPLICATION_PROTOCOL);
    return NTSNTP_ERR_TLS;
  }
  if (gnutls_protocol_get_version(t->session) != GNUTLS_TLS1_3) {
    snprintf(t->errtext, sizeof(t->errtext), "handshake: not TLS 1.3");
    return NTSNTP_ERR_TLS;
  }
  return 0;
}

ntsntp_ssize ntsntp__tls_recv(ntsntp__tls *t, uint8_t *buf, size_t len) {
  ssize_t n = gnutls_record_recv(t->session, buf, len);

  if (n >= 0)
    return (ntsntp_ssize)n;
  if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
    return NTSNTP_ERR_AGAIN;
  set_err(t, "receive", (int)n);
  if (n == GNUTLS_E_PREMATURE_TERMINATION)
    return NTSNTP_ERR_CLOSED;
  return NTSNTP_ERR_TLS;
}

int ntsntp__tls_send(ntsntp__tls *t, const uint8_t *buf, size_t len) {
  ssize_t n = gnutls_record_send(t->session, buf, len);

  /* The push callback never blocks, so one call sends it all. */
  if (n < 0 || (size_t)n != len) {
    set_err(t, "send", n < 0 ? (int)n : GNUTLS_E_INTERNAL_ERROR);
    return NTSNTP_ERR_TLS;
  }
  return 0;
}

int ntsntp__tls_bye(ntsntp__tls *t) {
  int g = gnutls_bye(t->session, GNUTLS_SHUT_WR);
  if (g < 0) {
    set_err(t, "bye", g);
    return NTSNTP_ERR_TLS;
  }
  return 0;
}

int ntsntp__tls_export_keys(ntsntp__tls *t, uint16_t proto, uint16_t aead,
                            size_t keylen, uint8_t *c2s, uint8_t *s2c) {
  static const char label[] = NTSNTP_KE_EXPORTER_LABEL;
  uint8_t ctx[5];
  int g;

  if (keylen == 0 || keylen > NTSNTP_MAX_KEY_LEN)
    return NTSNTP_ERR_INVALID_ARG;
  /*= https://www.rfc-editor.org/rfc/rfc8915#section-5.1
   *# The per-association context value [RFC5705] SHALL consist of the
   *# following five octets:
   *# The first two octets SHALL be zero (the Protocol ID for NTPv4).
   *# The next two octets SHALL be the Numeric Identifier of the
   *# negotiated AEAD algorithm in network byte order.
   *# The final octet SHALL be 0x00 for the C2S key and 0x01 for the S2C
   *# key.
   */
  ctx[0] = (uint8_t)(proto >> 8);
  ctx[1] = (uint8_t)proto;
  ctx[2] = (uint8_t)(aead >> 8);
  ctx[3] = (uint8_t)aead;
  ctx[4] = 0x00;
  g = gnutls_prf_rfc5705(t->session, sizeof(label) - 1, label, sizeof(ctx),
                         (const char *)ctx, keylen, (char *)c2s);
  if (g == 0) {
    ctx[4] = 0x01;
    g = gnutls_prf_rfc5705(t->session, sizeof(label) - 1, label, sizeof(ctx),
                           (const char *)ctx, keylen, (char *)s2c);
  }
  if (g < 0) {
    ntsntp_secure_clear(c2s, keylen);
    ntsntp_secure_clear(s2c, keylen);
    set_err(t, "exporter", g);
    return NTSNTP_ERR_TLS;
  }
  return 0;
}

int ntsntp__tls_alpn_failed(const ntsntp__tls *t) { return t->alpn_failed; }

const char *ntsntp__tls_errtext(const ntsntp__tls *t) { return t->errtext; }
