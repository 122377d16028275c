/* Test certificates made with GnuTLS: a CA and a server certificate for
 * "localhost" and 127.0.0.1 (two sets, and one expired), in a temporary
 * directory.  pki_setup / pki_teardown as a check fixture. */
#ifndef NTSNTP_TESTPKI_H
#define NTSNTP_TESTPKI_H

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/* ------------------------------------------------------------------ */
/* Certificates                                                        */
/* ------------------------------------------------------------------ */

static char tmpdir[256];
static char ca_pem[300], cert_pem[300], key_pem[300];
static char ca2_pem[300], cert2_pem[300], key2_pem[300];
static char expired_cert[300], expired_key[300];
static unsigned serial_no = 1;

static void write_file(const char *path, const void *data, size_t len,
                       mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
  close(fd);
  ck_assert_int_eq(chmod(path, mode), 0);
}

static gnutls_x509_privkey_t gen_key(void) {
  gnutls_x509_privkey_t k;
  ck_assert_int_eq(gnutls_x509_privkey_init(&k), 0);
  ck_assert_int_eq(gnutls_x509_privkey_generate(
                       k, GNUTLS_PK_ECDSA,
                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  return k;
}

/* A CA (|issuer| NULL: self-signed) or a server certificate for
   "localhost" and 127.0.0.1. */
static gnutls_x509_crt_t make_crt(gnutls_x509_privkey_t key,
                                  gnutls_x509_crt_t issuer,
                                  gnutls_x509_privkey_t issuer_key,
                                  const char *cn, time_t act, time_t exp) {
  static const uint8_t lo[4] = {127, 0, 0, 1};
  gnutls_x509_crt_t c;
  uint8_t serial[4];

  serial[0] = 0;
  serial[1] = 0;
  serial[2] = (uint8_t)(serial_no >> 8);
  serial[3] = (uint8_t)serial_no++;
  ck_assert_int_eq(gnutls_x509_crt_init(&c), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_version(c, 3), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_serial(c, serial, sizeof(serial)), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_activation_time(c, act), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_expiration_time(c, exp), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_dn_by_oid(c, GNUTLS_OID_X520_COMMON_NAME,
                                                 0, cn, (unsigned)strlen(cn)),
                   0);
  ck_assert_int_eq(gnutls_x509_crt_set_key(c, key), 0);
  if (issuer == NULL) {
    ck_assert_int_eq(gnutls_x509_crt_set_basic_constraints(c, 1, -1), 0);
    ck_assert_int_eq(gnutls_x509_crt_set_key_usage(
                         c, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN),
                     0);
  } else {
    ck_assert_int_eq(gnutls_x509_crt_set_basic_constraints(c, 0, -1), 0);
    ck_assert_int_eq(
        gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE), 0);
    ck_assert_int_eq(gnutls_x509_crt_set_subject_alt_name(
                         c, GNUTLS_SAN_DNSNAME, "localhost", 9,
                         GNUTLS_FSAN_APPEND),
                     0);
    ck_assert_int_eq(gnutls_x509_crt_set_subject_alt_name(
                         c, GNUTLS_SAN_IPADDRESS, lo, 4, GNUTLS_FSAN_APPEND),
                     0);
    ck_assert_int_eq(
        gnutls_x509_crt_set_key_purpose_oid(c, GNUTLS_KP_TLS_WWW_SERVER, 0),
        0);
  }
  ck_assert_int_eq(gnutls_x509_crt_sign2(c, issuer ? issuer : c,
                                         issuer ? issuer_key : key,
                                         GNUTLS_DIG_SHA256, 0),
                   0);
  return c;
}

static void append_crt(gnutls_x509_crt_t c, uint8_t *buf, size_t *len,
                       size_t cap) {
  gnutls_datum_t d;
  ck_assert_int_eq(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d), 0);
  ck_assert_uint_le(*len + d.size, cap);
  memcpy(buf + *len, d.data, d.size);
  *len += d.size;
  gnutls_free(d.data);
}

/* Writes ca, server chain (server + CA) and key files. */
static void make_pki(const char *ca, const char *cert, const char *keyf,
                     time_t act, time_t exp) {
  gnutls_x509_privkey_t cak = gen_key(), sk = gen_key();
  time_t now = time(NULL);
  gnutls_x509_crt_t cac = make_crt(cak, NULL, NULL, "test CA",
                                   now - 86400, now + 10 * 365 * 86400L);
  gnutls_x509_crt_t sc = make_crt(sk, cac, cak, "localhost", act, exp);
  uint8_t buf[8192];
  size_t len = 0;
  gnutls_datum_t d;

  if (ca) {
    append_crt(cac, buf, &len, sizeof(buf));
    write_file(ca, buf, len, 0644);
  }
  len = 0;
  append_crt(sc, buf, &len, sizeof(buf));
  append_crt(cac, buf, &len, sizeof(buf));
  write_file(cert, buf, len, 0644);
  ck_assert_int_eq(gnutls_x509_privkey_export2(sk, GNUTLS_X509_FMT_PEM, &d),
                   0);
  write_file(keyf, d.data, d.size, 0600);
  gnutls_free(d.data);
  gnutls_x509_crt_deinit(sc);
  gnutls_x509_crt_deinit(cac);
  gnutls_x509_privkey_deinit(sk);
  gnutls_x509_privkey_deinit(cak);
}

static void pki_setup(void) {
  time_t now = time(NULL);
  char tmpl[] = "/tmp/ntsntp-ke-XXXXXX";

  ck_assert_ptr_nonnull(mkdtemp(tmpl));
  strcpy(tmpdir, tmpl);
  /* Searchable by others so an unprivileged child can reach the files. */
  chmod(tmpdir, 0711);
#define P(v, name) snprintf(v, sizeof(v), "%s/%s", tmpdir, name)
  P(ca_pem, "ca.pem");
  P(cert_pem, "cert.pem");
  P(key_pem, "key.pem");
  P(ca2_pem, "ca2.pem");
  P(cert2_pem, "cert2.pem");
  P(key2_pem, "key2.pem");
  P(expired_cert, "expired.pem");
  P(expired_key, "expired-key.pem");
#undef P
  make_pki(ca_pem, cert_pem, key_pem, now - 86400, now + 365 * 86400L);
  make_pki(ca2_pem, cert2_pem, key2_pem, now - 86400, now + 365 * 86400L);
  /* Expired a year ago, signed by a CA written to expired-ca.pem. */
  {
    char ca[300];
    snprintf(ca, sizeof(ca), "%s/expired-ca.pem", tmpdir);
    make_pki(ca, expired_cert, expired_key, now - 2 * 365 * 86400L,
             now - 365 * 86400L);
  }
}

static void pki_teardown(void) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  if (tmpdir[0] && system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", tmpdir);
}

#endif
