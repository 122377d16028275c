/*
 * Fuzz target: the NTS-KE server session (lib/ke_server.c) behind TLS.
 *
 * Set up once: a key ring with deterministic randomness, a self-signed
 * ECDSA certificate made in memory, the server context, and the client's
 * TLS credentials.  Per input: a new server session and a plain GnuTLS
 * client (TLS 1.3, ALPN "ntske/1", no certificate check) complete the
 * handshake in memory; then the fuzz bytes become the client's application
 * data, encrypted by the client's session, and the resulting TLS records
 * are fed to the server.  The handshake is redone per input because a
 * session answers one request and a TLS session cannot be copied.
 *
 * Input [flags][payload...]:
 *   flags & 1  0: the payload is raw bytes fed before any TLS (garbage in
 *                 place of a ClientHello); 1: TLS application data
 *   flags & 2  the payload is [n][n bytes] chunks, each sent as its own TLS
 *              record (or its own read); else one piece
 *   flags & 4  the client sends close_notify after the payload
 *   flags & 8  EOF after the payload
 *
 * Checks: the session never wants to read after CLOSE; a DONE session's
 * response decrypts at the client and is a valid response (NTPv4, one
 * AEAD, 8 cookies of one length, End); an Error record only comes with
 * CLOSE; after the deadline the session is closed; output stays bounded.
 */
#include <errno.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "ntsntp/ke.h"

#define NOW 1000000u
#define MAXBUF (1u << 19)

typedef struct membuf {
  uint8_t b[MAXBUF];
  size_t len, off;
} membuf;

static ntsntp_keyring *kr;
static ntsntp_ke_server *srv;
static gnutls_certificate_credentials_t ccred;
static membuf c2s_wire, s2c_wire; /* client -> server, server -> client */

static ssize_t c_push(gnutls_transport_ptr_t p, const void *d, size_t n) {
  (void)p;
  if (n > MAXBUF - c2s_wire.len)
    n = MAXBUF - c2s_wire.len;
  memcpy(c2s_wire.b + c2s_wire.len, d, n);
  c2s_wire.len += n;
  return (ssize_t)n;
}

static ssize_t c_pull(gnutls_transport_ptr_t p, void *d, size_t n) {
  gnutls_session_t s = p;
  size_t left = s2c_wire.len - s2c_wire.off;
  if (left == 0) {
    gnutls_transport_set_errno(s, EAGAIN);
    return -1;
  }
  if (n > left)
    n = left;
  memcpy(d, s2c_wire.b + s2c_wire.off, n);
  s2c_wire.off += n;
  return (ssize_t)n;
}

/* Feeds what the client wrote to the server, in one piece. */
static void to_server(ntsntp_ke_session *s) {
  if (c2s_wire.len) {
    ntsntp_ke_session_read(s, c2s_wire.b, c2s_wire.len);
    c2s_wire.len = 0;
  }
}

/* Moves what the server wrote to the client's input. */
static void to_client(ntsntp_ke_session *s) {
  ntsntp_ssize n;
  if (s2c_wire.off == s2c_wire.len)
    s2c_wire.off = s2c_wire.len = 0;
  while ((n = ntsntp_ke_session_write(s, s2c_wire.b + s2c_wire.len,
                                      MAXBUF - s2c_wire.len)) > 0)
    s2c_wire.len += (size_t)n;
  FZ_CHECK(n == 0);
  /* The server's output is bounded: a handshake flight or a response. */
  FZ_CHECK(s2c_wire.len < MAXBUF);
}

static void write_pem(const char *path, const gnutls_datum_t *d) {
  FILE *f = fopen(path, "wb");
  FZ_CHECK(f != NULL);
  FZ_CHECK(fwrite(d->data, 1, d->size, f) == d->size);
  FZ_CHECK(fclose(f) == 0);
}

static void init(void) {
  static const uint8_t lo[4] = {127, 0, 0, 1};
  ntsntp_ke_server_settings ss;
  ntsntp_ke_creds *creds;
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  gnutls_datum_t d;
  uint8_t serial[1] = {1};
  char dir[] = "/tmp/fuzz-ke-server-XXXXXX", cpath[64], kpath[64],
       err[256];
  time_t now = time(NULL);

  if (srv)
    return;
  fz_reset();
  kr = fz_keyring();

  FZ_CHECK(gnutls_x509_privkey_init(&key) == 0);
  FZ_CHECK(gnutls_x509_privkey_generate(
               key, GNUTLS_PK_ECDSA,
               GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) == 0);
  FZ_CHECK(gnutls_x509_crt_init(&crt) == 0);
  FZ_CHECK(gnutls_x509_crt_set_version(crt, 3) == 0);
  FZ_CHECK(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)) == 0);
  FZ_CHECK(gnutls_x509_crt_set_activation_time(crt, now - 3600) == 0);
  FZ_CHECK(gnutls_x509_crt_set_expiration_time(crt, now + 86400 * 365) == 0);
  FZ_CHECK(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                         "localhost", 9) == 0);
  FZ_CHECK(gnutls_x509_crt_set_key(crt, key) == 0);
  FZ_CHECK(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, lo,
                                                4, GNUTLS_FSAN_APPEND) == 0);
  FZ_CHECK(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE) ==
           0);
  FZ_CHECK(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) == 0);

  /* ntsntp_ke_creds_load reads files: write them, load, remove. */
  FZ_CHECK(mkdtemp(dir) != NULL);
  snprintf(cpath, sizeof(cpath), "%s/cert.pem", dir);
  snprintf(kpath, sizeof(kpath), "%s/key.pem", dir);
  FZ_CHECK(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d) == 0);
  write_pem(cpath, &d);
  gnutls_free(d.data);
  FZ_CHECK(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d) == 0);
  write_pem(kpath, &d);
  gnutls_free(d.data);
  if (ntsntp_ke_creds_load(&creds, cpath, kpath, err, sizeof(err)) != 0) {
    fprintf(stderr, "creds: %s\n", err);
    abort();
  }
  unlink(cpath);
  unlink(kpath);
  rmdir(dir);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);

  ntsntp_ke_server_settings_default(&ss);
  ss.creds = creds;
  ss.keyring = kr;
  ss.ntp_port = 4123; /* Port Negotiation is sent */
  FZ_CHECK(ntsntp_ke_server_new(&srv, &ss, NULL, 0) == 0);
  ntsntp_ke_creds_unref(creds);
  FZ_CHECK(gnutls_certificate_allocate_credentials(&ccred) == 0);
}

static gnutls_session_t new_client(void) {
  static const char alpn[] = NTSNTP_KE_ALPN;
  gnutls_datum_t proto = {(unsigned char *)alpn, sizeof(alpn) - 1};
  gnutls_session_t c;
  FZ_CHECK(gnutls_init(&c, GNUTLS_CLIENT | GNUTLS_NONBLOCK) == 0);
  FZ_CHECK(gnutls_priority_set_direct(c, "NORMAL:-VERS-ALL:+VERS-TLS1.3",
                                      NULL) == 0);
  FZ_CHECK(gnutls_credentials_set(c, GNUTLS_CRD_CERTIFICATE, ccred) == 0);
  FZ_CHECK(gnutls_alpn_set_protocols(c, &proto, 1, 0) == 0);
  gnutls_transport_set_push_function(c, c_push);
  gnutls_transport_set_pull_function(c, c_pull);
  gnutls_transport_set_ptr(c, c);
  return c;
}

/* Runs the handshake in memory; returns 1 when both sides completed it. */
static int handshake(gnutls_session_t c, ntsntp_ke_session *s) {
  int i, g = GNUTLS_E_AGAIN;
  for (i = 0; i < 8 && g != 0; i++) {
    g = gnutls_handshake(c);
    if (g < 0 && g != GNUTLS_E_AGAIN)
      return 0;
    to_server(s); /* ClientHello, then the client's Finished */
    to_client(s);
  }
  return g == 0 && !(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
}

/* Sends |n| bytes as application data (GnuTLS splits at 16 KiB). */
static void client_send(gnutls_session_t c, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = gnutls_record_send(c, p, n);
    FZ_CHECK(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

/* Checks what a finished session sent back. */
static void check_response(gnutls_session_t c, unsigned want) {
  static uint8_t resp[MAXBUF];
  size_t len = 0;
  ntsntp_ke_msg m;
  size_t i;
  int rv;

  for (;;) {
    ssize_t r = gnutls_record_recv(c, resp + len, sizeof(resp) - len);
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  if (!(want & NTSNTP_KE_DONE)) {
    /* Otherwise: nothing, an Error record, or an answer saying there is
     * no common protocol or AEAD; never cookies. */
    if (len) {
      FZ_CHECK(ntsntp_ke_parse(resp, len, &m) == 0);
      FZ_CHECK(m.has_error || (m.has_protos && m.nprotos == 0) ||
               (m.has_aeads && m.naeads == 0));
      FZ_CHECK(m.ncookies_total == 0);
    }
    return;
  }
  rv = ntsntp_ke_parse(resp, len, &m);
  FZ_CHECK(rv == 0);
  FZ_CHECK(!m.has_error && !m.has_warning);
  FZ_CHECK(m.has_protos && m.has_aeads);
  FZ_CHECK(m.nprotos == 1 &&
           ntsntp_ke_msg_proto(&m, 0) == NTSNTP_KE_PROTO_NTPV4);
  FZ_CHECK(m.naeads == 1 &&
           ntsntp_aead_supported(ntsntp_ke_msg_aead(&m, 0)));
  FZ_CHECK(m.ncookies == NTSNTP_KE_MAX_COOKIES &&
           m.ncookies_total == NTSNTP_KE_MAX_COOKIES);
  for (i = 1; i < m.ncookies; i++)
    FZ_CHECK(m.cookie_len[i] == m.cookie_len[0]);
  FZ_CHECK(m.has_port && m.port == 4123);
}

/* Splits the payload: one piece, or [n][n bytes] chunks. */
static int next_chunk(fz_in *in, int chunked, const uint8_t **p, size_t *n) {
  if (in->n == 0)
    return 0;
  if (!chunked) {
    *p = in->p;
    *n = in->n;
  } else {
    size_t want = fz_u8(in);
    *p = in->p;
    *n = want < in->n ? want : in->n;
  }
  in->p += *n;
  in->n -= *n;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  ntsntp_ke_session *s;
  gnutls_session_t c = NULL;
  const uint8_t *p;
  size_t n;
  unsigned flags, want;
  int tls;

  init();
  fz_reset();
  c2s_wire.len = c2s_wire.off = 0;
  s2c_wire.len = s2c_wire.off = 0;
  flags = fz_u8(&in);
  tls = flags & 1;
  FZ_CHECK(ntsntp_ke_session_new(&s, srv, NOW, NULL, 0) == 0);
  if (tls) {
    c = new_client();
    FZ_CHECK(handshake(c, s));
  }
  while (next_chunk(&in, flags & 2, &p, &n)) {
    if (ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE)
      break;
    if (tls) {
      client_send(c, p, n);
      to_server(s);
    } else if (n > 0) {
      ntsntp_ke_session_read(s, p, n);
    }
    to_client(s);
  }
  if (tls && (flags & 4)) {
    gnutls_bye(c, GNUTLS_SHUT_WR);
    to_server(s);
  }
  if (flags & 8)
    ntsntp_ke_session_read(s, NULL, 0);
  to_client(s);

  want = ntsntp_ke_session_want(s);
  if (want & NTSNTP_KE_DONE)
    FZ_CHECK(want & NTSNTP_KE_CLOSE);
  if (want & NTSNTP_KE_CLOSE) {
    FZ_CHECK(!(want & NTSNTP_KE_WANT_READ));
    FZ_CHECK(ntsntp_ke_session_expiry(s) == UINT64_MAX);
  }
  if (tls)
    check_response(c, want);

  /* Past the deadline the session is closed, whatever its state. */
  ntsntp_ke_session_handle_expiry(s, NOW + 3600 * 1000);
  to_client(s);
  FZ_CHECK(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
  FZ_CHECK(ntsntp_ke_session_expiry(s) == UINT64_MAX);

  ntsntp_ke_session_del(s);
  if (c)
    gnutls_deinit(c);
  return 0;
}
