/* NTS-KE: record codec, credentials, and client/server sessions in memory. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "ntsntp/cookie.h"
#include "ntsntp/ke.h"
#include "testutil.h"
#include "tls.h"

/* ------------------------------------------------------------------ */
/* Vectors                                                             */
/* ------------------------------------------------------------------ */

/* Reads "key": "hex" from a captured nts-vectors.json into |out|. */
static size_t vector_hex(const char *dir, const char *key, uint8_t *out,
                         size_t outlen) {
  const char *base = getenv("NTSNTP_TEST_VECTORS");
  char path[512], pat[64], *buf, *p, *q;
  FILE *f;
  long sz;
  size_t n;

  snprintf(path, sizeof(path), "%s/%s/nts-vectors.json",
           base ? base : "tests/vectors", dir);
  f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)sz + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(fread(buf, 1, (size_t)sz, f), (size_t)sz);
  buf[sz] = '\0';
  fclose(f);
  snprintf(pat, sizeof(pat), "\"%s\": \"", key);
  p = strstr(buf, pat);
  ck_assert_ptr_nonnull(p);
  p += strlen(pat);
  q = strchr(p, '"');
  ck_assert_ptr_nonnull(q);
  *q = '\0';
  n = tu_unhex(p, out, outlen);
  free(buf);
  return n;
}

#define CHRONY "chrony-4.3-client-chrony-4.3-server"
#define NTPSEC "chrony-4.3-client-ntpsec-1.2.2-server"

/* ------------------------------------------------------------------ */
/* Codec                                                               */
/* ------------------------------------------------------------------ */

START_TEST(test_parse_chrony_request) {
  uint8_t in[64];
  ntsntp_ke_msg m;
  size_t n = vector_hex(CHRONY, "request_hex", in, sizeof(in));

  ck_assert_uint_eq(n, 16);
  ck_assert_int_eq(ntsntp_ke_parse(in, n, &m), 0);
  ck_assert(m.end && m.has_protos && m.has_aeads);
  ck_assert_uint_eq(m.nprotos, 1);
  ck_assert_uint_eq(ntsntp_ke_msg_proto(&m, 0), 0);
  ck_assert_uint_eq(m.naeads, 1);
  ck_assert_uint_eq(ntsntp_ke_msg_aead(&m, 0), 15);
  ck_assert_uint_eq(m.ncookies, 0);
  ck_assert(!m.has_port && !m.has_server && !m.has_error);
  ck_assert_uint_eq(m.len, 16);
}
END_TEST

START_TEST(test_parse_chrony_response) {
  uint8_t in[2048];
  ntsntp_ke_msg m;
  size_t i, n = vector_hex(CHRONY, "response_hex", in, sizeof(in));

  ck_assert_int_eq(ntsntp_ke_parse(in, n, &m), 0);
  ck_assert_uint_eq(ntsntp_ke_msg_aead(&m, 0), 15);
  ck_assert(m.has_port);
  ck_assert_uint_eq(m.port, 0x2b73);
  ck_assert_uint_eq(m.ncookies, 8);
  ck_assert_uint_eq(m.ncookies_total, 8);
  for (i = 0; i < 8; i++) {
    ck_assert_uint_eq(m.cookie_len[i], 100);
    /* Pointers into the input. */
    ck_assert(m.cookies[i] > in && m.cookies[i] + 100 <= in + n);
  }
  ck_assert_uint_eq(m.len, n);
}
END_TEST

START_TEST(test_parse_ntpsec_response) {
  uint8_t in[2048];
  ntsntp_ke_msg m;
  size_t i, n = vector_hex(NTPSEC, "response_hex", in, sizeof(in));

  /* NTPsec sends the AEAD record without the critical bit. */
  ck_assert_uint_eq(in[6], 0x00);
  ck_assert_int_eq(ntsntp_ke_parse(in, n, &m), 0);
  ck_assert_uint_eq(ntsntp_ke_msg_aead(&m, 0), 15);
  ck_assert(!m.has_port && !m.has_server);
  ck_assert_uint_eq(m.ncookies, 8);
  for (i = 0; i < 8; i++)
    ck_assert_uint_eq(m.cookie_len[i], 104);
}
END_TEST

/* Every proper prefix is incomplete; one byte more is bad. */
static void check_truncations(const char *dir, const char *key) {
  uint8_t in[2048];
  ntsntp_ke_msg m;
  size_t i, n = vector_hex(dir, key, in, sizeof(in) - 1);

  for (i = 0; i < n; i++) {
    ck_assert_int_eq(ntsntp_ke_check_framing(in, i), NTSNTP_ERR_AGAIN);
    ck_assert_int_eq(ntsntp_ke_parse(in, i, &m), NTSNTP_ERR_AGAIN);
  }
  ck_assert_int_eq(ntsntp_ke_check_framing(in, n), 0);
  in[n] = 0;
  ck_assert_int_eq(ntsntp_ke_parse(in, n + 1, &m), NTSNTP_ERR_BAD_RECORD);
}

START_TEST(test_truncations) {
  check_truncations(CHRONY, "request_hex");
  check_truncations(CHRONY, "response_hex");
  check_truncations(NTPSEC, "response_hex");
}
END_TEST

static const struct {
  const char *hex;
  int rv;
} bad_cases[] = {
    /* Next Protocol without the critical bit. */
    {"000100020000" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Odd-length protocol list. */
    {"8001000100" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Two Next Protocol records. */
    {"800100020000" "800100020000" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Two AEAD records. */
    {"80040002000f" "80040002000f" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* End of Message with a body. */
    {"800100020000" "800000020000", NTSNTP_ERR_BAD_RECORD},
    /* End of Message not critical. */
    {"800100020000" "00000000", NTSNTP_ERR_BAD_RECORD},
    /* Records after End of Message. */
    {"80000000" "800100020000", NTSNTP_ERR_BAD_RECORD},
    {"800100020000" "80000000" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Error/Warning bodies must be 2 bytes. */
    {"8002000100" "80000000", NTSNTP_ERR_BAD_RECORD},
    {"800300030000ff" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Port body must be 2 bytes. */
    {"80070001ff" "80000000", NTSNTP_ERR_BAD_RECORD},
    {"8007000300007b" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Empty cookie. */
    {"00050000" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Server name with a space, and empty. */
    {"00060003612062" "80000000", NTSNTP_ERR_BAD_RECORD},
    {"00060000" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Record 1024 with a body. */
    {"0400000100" "80000000", NTSNTP_ERR_BAD_RECORD},
    /* Unknown critical record. */
    {"800100020000" "8010000100" "80000000", NTSNTP_ERR_UNSUPPORTED},
    /* Body length running past the input: still arriving. */
    {"80010010000080000000", NTSNTP_ERR_AGAIN},
    {"", NTSNTP_ERR_AGAIN},
    {"8001", NTSNTP_ERR_AGAIN},
};

START_TEST(test_bad_records) {
  uint8_t in[64];
  ntsntp_ke_msg m;
  size_t n = tu_unhex(bad_cases[_i].hex, in, sizeof(in));

  ck_assert_msg(ntsntp_ke_parse(in, n, &m) == bad_cases[_i].rv,
                "case %d: %s", _i, bad_cases[_i].hex);
}
END_TEST

START_TEST(test_good_records) {
  uint8_t in[128];
  ntsntp_ke_msg m;
  /* Unknown non-critical record skipped; server, port, error, warning,
     1024, 9 cookies (8 kept). */
  size_t n = tu_unhex("40000002abcd" "800100040000ffff" "0004000400100011"
                      "000600096c6f63616c686f7374" "800700020fa0"
                      "800200020001" "800300020000" "04000000"
                      "00050001aa" "00050001aa" "00050001aa" "00050001aa"
                      "00050001aa" "00050001aa" "00050001aa" "00050001aa"
                      "00050002bbbb" "80000000",
                      in, sizeof(in));

  ck_assert_int_eq(ntsntp_ke_parse(in, n, &m), 0);
  ck_assert_uint_eq(m.nunknown, 1);
  ck_assert_uint_eq(m.nprotos, 2);
  ck_assert_uint_eq(ntsntp_ke_msg_proto(&m, 1), 0xffff);
  ck_assert_uint_eq(m.naeads, 2);
  ck_assert_uint_eq(ntsntp_ke_msg_aead(&m, 1), 17);
  ck_assert_str_eq(m.server, "localhost");
  ck_assert_uint_eq(m.port, 4000);
  ck_assert(m.has_error && m.error_code == 1);
  ck_assert(m.has_warning && m.warning_code == 0);
  ck_assert(m.compliant_128gcm);
  ck_assert_uint_eq(m.ncookies, 8);
  ck_assert_uint_eq(m.ncookies_total, 9);

  /* Unknown critical: the type is reported. */
  n = tu_unhex("800100020000" "c123000100" "80000000", in, sizeof(in));
  ck_assert_int_eq(ntsntp_ke_parse(in, n, &m), NTSNTP_ERR_UNSUPPORTED);
  ck_assert_uint_eq(m.unknown_critical, 0x4123);
  ck_assert_int_eq(ntsntp_ke_parse(NULL, 0, &m), NTSNTP_ERR_AGAIN);
  ck_assert_int_eq(ntsntp_ke_parse(in, n, NULL), NTSNTP_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_encoder) {
  uint8_t out[64], want[64];
  uint16_t v[2] = {0, 15};
  size_t n;

  ck_assert_int_eq(ntsntp_ke_wr_u16s(out, sizeof(out), 1, 1, v, 1), 6);
  ck_assert_int_eq(ntsntp_ke_wr_u16s(out + 6, 58, 1, 4, v + 1, 1), 6);
  ck_assert_int_eq(ntsntp_ke_wr_record(out + 12, 52, 1, 0, NULL, 0), 4);
  n = tu_unhex("80010002000080040002000f80000000", want, sizeof(want));
  ck_assert_mem_eq(out, want, n);
  ck_assert_int_eq(ntsntp_ke_wr_record(out, 5, 0, 5, "abc", 3),
                   NTSNTP_ERR_NOBUF);
  ck_assert_int_eq(ntsntp_ke_wr_record(out, 7, 0, 5, "abc", 3), 7);
  ck_assert_int_eq(ntsntp_ke_wr_record(out, 64, 0, 0x8000, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_ke_wr_u16s(out, 3, 0, 4, v, 0), NTSNTP_ERR_NOBUF);
  ck_assert_int_eq(ntsntp_ke_wr_u16s(out, 4, 0, 4, v, 0), 4);
}
END_TEST

#include "testpki.h"


/* ------------------------------------------------------------------ */
/* Credentials                                                         */
/* ------------------------------------------------------------------ */

START_TEST(test_creds_load) {
  ntsntp_ke_creds *c = NULL;
  char err[512];

  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, key_pem, err,
                                        sizeof(err)),
                   0);
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_null(ntsntp_ke_creds_warning(c));
  ck_assert_ptr_eq(ntsntp_ke_creds_ref(c), c);
  ntsntp_ke_creds_unref(c);
  ntsntp_ke_creds_unref(c);
}
END_TEST

START_TEST(test_creds_errors) {
  ntsntp_ke_creds *c = NULL;
  char err[512], path[300], other[300];
  uint8_t junk[] = "-----BEGIN CERTIFICATE-----\nnot base64\n";

  snprintf(path, sizeof(path), "%s/missing.pem", tmpdir);
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, path, key_pem, err, sizeof(err)),
                   NTSNTP_ERR_IO);
  ck_assert_ptr_null(c);
  ck_assert_ptr_nonnull(strstr(err, path));
  ck_assert_ptr_nonnull(strstr(err, "No such file or directory"));

  /* A directory is not a key file. */
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, tmpdir, err,
                                        sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, tmpdir));

  /* Unparsable certificate: the message names it. */
  snprintf(path, sizeof(path), "%s/junk.pem", tmpdir);
  write_file(path, junk, sizeof(junk) - 1, 0644);
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, path, key_pem, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "certificate file"));
  ck_assert_ptr_nonnull(strstr(err, path));
  /* A certificate is not a key. */
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, cert_pem, err,
                                        sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "key file"));
  /* A key that belongs to another certificate. */
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, key2_pem, err,
                                        sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, key2_pem));
  ck_assert_ptr_null(c);

  /* Empty file. */
  snprintf(other, sizeof(other), "%s/empty.pem", tmpdir);
  write_file(other, "", 0, 0600);
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, other, err,
                                        sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_int_eq(ntsntp_ke_creds_load(NULL, cert_pem, key_pem, err,
                                        sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

/* Reads |path| whole (a test file: small). */
static size_t slurp(const char *path, uint8_t *buf, size_t len) {
  FILE *f = fopen(path, "rb");
  size_t n;
  ck_assert_ptr_nonnull(f);
  n = fread(buf, 1, len, f);
  fclose(f);
  ck_assert_uint_lt(n, len);
  return n;
}

/* Several pairs from PEM bytes (NTS_CERT/NTS_KEY lists; a privileged
 * helper hands bytes, not paths); each pair's problem names its files. */
START_TEST(test_creds_pem_pairs) {
  static uint8_t c1[8192], k1[8192], c2[8192], k2[8192];
  ntsntp_ke_pem p[NTSNTP_KE_MAX_CERTS + 1];
  ntsntp_ke_creds *c = NULL;
  char err[512];
  size_t i;
  memset(p, 0, sizeof(p));
  p[0].cert_len = slurp(cert_pem, c1, sizeof(c1));
  p[0].key_len = slurp(key_pem, k1, sizeof(k1));
  p[1].cert_len = slurp(cert2_pem, c2, sizeof(c2));
  p[1].key_len = slurp(key2_pem, k2, sizeof(k2));
  p[0].cert = c1, p[0].key = k1, p[1].cert = c2, p[1].key = k2;
  p[0].cert_name = "one.pem", p[0].key_name = "one.key";
  p[1].cert_name = "two.pem", p[1].key_name = "two.key";
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 2, err, sizeof(err)), 0);
  ck_assert_uint_eq(ntsntp_ke_creds_count(c), 2);
  ck_assert_ptr_null(ntsntp_ke_creds_warning(c));
  ntsntp_ke_creds_unref(c);
  ck_assert_uint_eq(ntsntp_ke_creds_count(NULL), 0);

  /* The second key is group-readable: the warning names it. */
  p[1].key_mode = 0100640;
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 2, err, sizeof(err)), 0);
  ck_assert_ptr_nonnull(strstr(ntsntp_ke_creds_warning(c), "two.key"));
  ntsntp_ke_creds_unref(c);
  p[1].key_mode = 0;

  /* Keys swapped between the pairs: the second pair is named. */
  p[1].key = k1, p[1].key_len = p[0].key_len;
  p[0].key = k2, p[0].key_len = p[1].key_len;
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 2, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_msg(strstr(err, "one.key") && strstr(err, "one.pem"), "%s", err);
  ck_assert_ptr_null(c);
  p[0].key = k1, p[0].key_len = slurp(key_pem, k1, sizeof(k1));
  p[1].key = k2, p[1].key_len = slurp(key2_pem, k2, sizeof(k2));

  /* A certificate that does not parse, truncated in the middle. */
  p[1].cert_len /= 2;
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 2, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_msg(strstr(err, "two.pem"), "%s", err);
  p[1].cert_len = slurp(cert2_pem, c2, sizeof(c2));

  /* No pairs, too many, empty, missing names. */
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 0, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  for (i = 2; i <= NTSNTP_KE_MAX_CERTS; i++)
    p[i] = p[i % 2];
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, NTSNTP_KE_MAX_CERTS, err,
                                           sizeof(err)),
                   0);
  ck_assert_uint_eq(ntsntp_ke_creds_count(c), NTSNTP_KE_MAX_CERTS);
  ntsntp_ke_creds_unref(c);
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, NTSNTP_KE_MAX_CERTS + 1,
                                           err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  p[0].key_len = 0;
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 1, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  p[0].key_len = slurp(key_pem, k1, sizeof(k1));
  p[0].cert_name = NULL;
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(&c, p, 1, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_ke_creds_new_pem(NULL, p, 1, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

/* A FIFO at a credential path is refused at once, never waited on. */
START_TEST(test_creds_fifo) {
  ntsntp_ke_creds *c = NULL;
  char err[512], path[300];
  snprintf(path, sizeof(path), "%s/fifo.pem", tmpdir);
  unlink(path);
  ck_assert_int_eq(mkfifo(path, 0600), 0);
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, path, key_pem, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, path, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  unlink(path);
}
END_TEST

START_TEST(test_creds_warning) {
  ntsntp_ke_creds *c = NULL;
  char err[512], path[300];
  uint8_t buf[4096];
  ssize_t n;
  int fd = open(key_pem, O_RDONLY);

  ck_assert_int_ge(fd, 0);
  n = read(fd, buf, sizeof(buf));
  close(fd);
  ck_assert_int_gt(n, 0);
  snprintf(path, sizeof(path), "%s/key-0644.pem", tmpdir);
  write_file(path, buf, (size_t)n, 0644);
  ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, path, err, sizeof(err)),
                   0);
  ck_assert_ptr_nonnull(ntsntp_ke_creds_warning(c));
  ck_assert_ptr_nonnull(strstr(ntsntp_ke_creds_warning(c), path));
  ck_assert_ptr_nonnull(strstr(ntsntp_ke_creds_warning(c), "0644"));
  ntsntp_ke_creds_unref(c);
}
END_TEST

/* An unreadable key: the message says who owns it and who we are. */
START_TEST(test_creds_permission) {
  char err[512] = "", want[64];
  ntsntp_ke_creds *c = NULL;
  int pfd[2], status;
  pid_t pid;

  if (geteuid() != 0) {
    ck_assert_int_eq(chmod(key_pem, 0000), 0);
    ck_assert_int_eq(ntsntp_ke_creds_load(&c, cert_pem, key_pem, err,
                                          sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_int_eq(chmod(key_pem, 0600), 0);
    ck_assert_ptr_nonnull(strstr(err, "mode 0000"));
  } else {
    /* As root, read it as "nobody" in a child. */
    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      int rv;
      close(pfd[0]);
      if (setgid(65534) != 0 || setuid(65534) != 0)
        _exit(2);
      rv = ntsntp_ke_creds_load(&c, cert_pem, key_pem, err, sizeof(err));
      if (write(pfd[1], err, strlen(err)) < 0)
        _exit(3);
      _exit(rv == NTSNTP_ERR_IO ? 0 : 1);
    }
    close(pfd[1]);
    ck_assert_int_ge(read(pfd[0], err, sizeof(err) - 1), 0);
    close(pfd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(err, "owner uid 0"));
    ck_assert_ptr_nonnull(strstr(err, "mode 0600"));
  }
  ck_assert_ptr_nonnull(strstr(err, key_pem));
  ck_assert_ptr_nonnull(strstr(err, "Permission denied"));
  snprintf(want, sizeof(want), "uid %u", geteuid() == 0 ? 65534u
                                                        : (unsigned)geteuid());
  ck_assert_ptr_nonnull(strstr(err, want));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Sessions in memory                                                  */
/* ------------------------------------------------------------------ */

static ntsntp_keyring *kr;
static ntsntp_ke_creds *creds;

/* |srv|'s counters as they are now. */
static ntsntp_ke_server_stats srv_stats(const ntsntp_ke_server *srv) {
  ntsntp_ke_server_stats st;
  ntsntp_ke_server_get_stats(srv, &st);
  return st;
}

static void kr_setup(void) {
  char err[512];
  ck_assert_int_eq(ntsntp_keyring_new(&kr, NULL, 1700000000, NULL, 0), 0);
  ck_assert_int_eq(
      ntsntp_ke_creds_load(&creds, cert_pem, key_pem, err, sizeof(err)), 0);
}

static void kr_teardown(void) {
  ntsntp_keyring_del(kr);
  ntsntp_ke_creds_unref(creds);
  kr = NULL;
  creds = NULL;
}

static ntsntp_ke_server *new_server(uint16_t port, const char *name) {
  ntsntp_ke_server_settings ss;
  ntsntp_ke_server *srv;

  ntsntp_ke_server_settings_default(&ss);
  ss.creds = creds;
  ss.keyring = kr;
  ss.ntp_port = port;
  ss.ntp_server = name;
  ck_assert_int_eq(ntsntp_ke_server_new(&srv, &ss, NULL, 0), 0);
  return srv;
}

static ntsntp_ke_client *new_client(const char *ca, const int *aeads,
                                    size_t naeads) {
  ntsntp_ke_client_settings cs;
  ntsntp_ke_client *c;
  size_t i;

  ntsntp_ke_client_settings_default(&cs);
  cs.server_name = "localhost";
  cs.ca_file = ca;
  if (naeads) {
    for (i = 0; i < naeads; i++)
      cs.aeads[i] = aeads[i];
    cs.naeads = naeads;
  }
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0), 0);
  return c;
}

/* Shuttles bytes both ways until neither side has anything to send. */
static void pump(ntsntp_ke_client *c, ntsntp_ke_session *s) {
  static uint8_t buf[65536];
  int i;

  for (i = 0; i < 64; i++) {
    ntsntp_ssize a = ntsntp_ke_client_write(c, buf, sizeof(buf)), b;
    if (a > 0)
      (void)ntsntp_ke_session_read(s, buf, (size_t)a);
    b = ntsntp_ke_session_write(s, buf, sizeof(buf));
    if (b > 0)
      (void)ntsntp_ke_client_read(c, buf, (size_t)b);
    if (a <= 0 && b <= 0)
      break;
  }
}

/* Runs a full exchange and checks the cookies open to the client's keys. */
static void full_exchange(ntsntp_ke_server *srv, const int *aeads,
                          size_t naeads, ntsntp_ke_result *r) {
  ntsntp_ke_client *c = new_client(ca_pem, aeads, naeads);
  ntsntp_ke_session *s;
  uint8_t c2s[NTSNTP_MAX_KEY_LEN], s2c[NTSNTP_MAX_KEY_LEN];
  size_t i;
  int aead;

  ck_assert_uint_eq(ntsntp_ke_client_want(c),
                    NTSNTP_KE_WANT_READ | NTSNTP_KE_WANT_WRITE);
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 1000, NULL, 0), 0);
  ck_assert_uint_eq(ntsntp_ke_session_want(s), NTSNTP_KE_WANT_READ);
  pump(c, s);
  ck_assert_uint_eq(ntsntp_ke_session_want(s),
                    NTSNTP_KE_DONE | NTSNTP_KE_CLOSE);
  ck_assert_uint_eq(ntsntp_ke_client_want(c),
                    NTSNTP_KE_DONE | NTSNTP_KE_CLOSE);
  ck_assert_msg(ntsntp_ke_client_result(c, r) == 0, "%s",
                ntsntp_ke_client_errtext(c));
  ck_assert_uint_eq(r->ncookies, 8);
  ck_assert_uint_eq(r->key_len, ntsntp_aead_key_len(r->aead));
  for (i = 0; i < r->ncookies; i++) {
    ck_assert_uint_eq(r->cookie_len[i], ntsntp_cookie_len(r->aead));
    ck_assert_int_eq(ntsntp_cookie_open(kr, r->cookies[i], r->cookie_len[i],
                                        &aead, c2s, s2c),
                     0);
    ck_assert_int_eq(aead, r->aead);
    ck_assert_mem_eq(c2s, r->c2s, r->key_len);
    ck_assert_mem_eq(s2c, r->s2c, r->key_len);
  }
  ck_assert(memcmp(r->c2s, r->s2c, r->key_len) != 0);
  ck_assert_uint_eq(ntsntp_ke_session_expiry(s), UINT64_MAX);
  ntsntp_ke_session_del(s);
  ntsntp_ke_client_del(c);
}

START_TEST(test_handshake_default_port) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_result r;

  full_exchange(srv, NULL, 0, &r);
  ck_assert_int_eq(r.aead, 15);
  ck_assert_uint_eq(r.ntp_port, 123);
  ck_assert_str_eq(r.ntp_server, "localhost");
  ck_assert_int_eq(r.error_code, -1);
  ck_assert_int_eq(r.warning_code, -1);
  ck_assert_uint_eq(srv_stats(srv).sessions_done, 1);
  ck_assert_uint_eq(srv_stats(srv).cookies_issued, 8);
  ntsntp_ke_result_clear(&r);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_handshake_negotiation) {
  ntsntp_ke_server *srv = new_server(4123, "ntp.example.org");
  const int prefer17[] = {17, 15};
  ntsntp_ke_result r;

  full_exchange(srv, prefer17, 2, &r);
  /* The client's preference (17 first) wins among those we support. */
  ck_assert_int_eq(r.aead, 17);
  ck_assert_uint_eq(r.key_len, 64);
  ck_assert_uint_eq(r.ntp_port, 4123);
  ck_assert_str_eq(r.ntp_server, "ntp.example.org");
  full_exchange(srv, prefer17 + 1, 1, &r);
  ck_assert_int_eq(r.aead, 15);
  if (ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV)) {
    /* chrony 4.6's list; our client sends record 1024 with it, and both
     * sides derive the keys with id 30 in the exporter context. */
    const int gcm[] = {30, 15};
    full_exchange(srv, gcm, 2, &r);
    ck_assert_int_eq(r.aead, 30);
    ck_assert_uint_eq(r.key_len, 16);
    ck_assert_uint_eq(r.cookie_len[0], 72);
  }
  ntsntp_ke_result_clear(&r);
  ntsntp_ke_server_del(srv);
}
END_TEST

/* A raw GnuTLS client on memory buffers, to send arbitrary requests. */
typedef struct raw {
  gnutls_session_t g;
  gnutls_certificate_credentials_t cred;
  uint8_t in[65536];
  size_t inlen, inoff;
  uint8_t out[65536];
  size_t outlen;
} raw;

static ssize_t raw_pull(gnutls_transport_ptr_t p, void *data, size_t len) {
  raw *r = p;
  if (r->inoff == r->inlen) {
    gnutls_transport_set_errno(r->g, EAGAIN);
    return -1;
  }
  if (len > r->inlen - r->inoff)
    len = r->inlen - r->inoff;
  memcpy(data, r->in + r->inoff, len);
  r->inoff += len;
  return (ssize_t)len;
}

static ssize_t raw_push(gnutls_transport_ptr_t p, const void *data,
                        size_t len) {
  raw *r = p;
  ck_assert_uint_le(r->outlen + len, sizeof(r->out));
  memcpy(r->out + r->outlen, data, len);
  r->outlen += len;
  return (ssize_t)len;
}

static raw *raw_new(const char *prio, const char *alpn) {
  raw *r = calloc(1, sizeof(*r));
  const char *errpos;
  gnutls_datum_t proto;

  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(gnutls_init(&r->g, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
  ck_assert_int_eq(gnutls_priority_set_direct(
                       r->g, prio ? prio : "NORMAL:-VERS-ALL:+VERS-TLS1.3",
                       &errpos),
                   0);
  ck_assert_int_eq(gnutls_certificate_allocate_credentials(&r->cred), 0);
  ck_assert_int_eq(
      gnutls_credentials_set(r->g, GNUTLS_CRD_CERTIFICATE, r->cred), 0);
  if (alpn) {
    proto.data = (unsigned char *)alpn;
    proto.size = (unsigned)strlen(alpn);
    ck_assert_int_eq(gnutls_alpn_set_protocols(r->g, &proto, 1, 0), 0);
  }
  gnutls_transport_set_ptr(r->g, r);
  gnutls_transport_set_pull_function(r->g, raw_pull);
  gnutls_transport_set_push_function(r->g, raw_push);
  return r;
}

static void raw_del(raw *r) {
  gnutls_deinit(r->g);
  gnutls_certificate_free_credentials(r->cred);
  free(r);
}

/* Moves bytes both ways once; returns non-zero if anything moved. */
static int raw_shuttle(raw *r, ntsntp_ke_session *s) {
  ntsntp_ssize n;
  int moved = 0;

  if (r->outlen) {
    (void)ntsntp_ke_session_read(s, r->out, r->outlen);
    r->outlen = 0;
    moved = 1;
  }
  if (r->inoff == r->inlen)
    r->inoff = r->inlen = 0;
  n = ntsntp_ke_session_write(s, r->in + r->inlen, sizeof(r->in) - r->inlen);
  if (n > 0) {
    r->inlen += (size_t)n;
    moved = 1;
  }
  return moved;
}

static int raw_handshake(raw *r, ntsntp_ke_session *s) {
  int i, g = GNUTLS_E_AGAIN;
  for (i = 0; i < 32; i++) {
    g = gnutls_handshake(r->g);
    raw_shuttle(r, s);
    if (g != GNUTLS_E_AGAIN)
      break;
  }
  return g;
}

static void raw_send(raw *r, ntsntp_ke_session *s, const uint8_t *p,
                     size_t len) {
  while (len > 0) {
    ssize_t n = gnutls_record_send(r->g, p, len);
    ck_assert_int_gt(n, 0);
    p += n;
    len -= (size_t)n;
    raw_shuttle(r, s);
  }
}

/* Collects what the server sends until close_notify or no more bytes. */
static size_t raw_recv(raw *r, ntsntp_ke_session *s, uint8_t *buf,
                       size_t cap) {
  size_t len = 0;
  int i;
  for (i = 0; i < 64 && len < cap; i++) {
    ssize_t n = gnutls_record_recv(r->g, buf + len, cap - len);
    if (n > 0) {
      len += (size_t)n;
      continue;
    }
    if (n == GNUTLS_E_AGAIN && raw_shuttle(r, s))
      continue;
    break;
  }
  return len;
}

/* Handshake, send |req|, return the server's decrypted answer. */
static size_t raw_exchange(ntsntp_ke_server *srv, const char *req_hex,
                           uint8_t *resp, size_t cap, ntsntp_ke_session **ps,
                           raw **pr) {
  uint8_t req[512];
  size_t n = tu_unhex(req_hex, req, sizeof(req));
  ntsntp_ke_session *s;
  raw *r = raw_new(NULL, NTSNTP_KE_ALPN);

  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_eq(raw_handshake(r, s), 0);
  raw_send(r, s, req, n);
  n = raw_recv(r, s, resp, cap);
  if (ps) {
    *ps = s;
    *pr = r;
  } else {
    ntsntp_ke_session_del(s);
    raw_del(r);
  }
  return n;
}

static int error_code(const uint8_t *resp, size_t len) {
  ntsntp_ke_msg m;
  ck_assert_int_eq(ntsntp_ke_parse(resp, len, &m), 0);
  ck_assert_uint_eq(m.ncookies, 0);
  return m.has_error ? m.error_code : -1;
}

#define CHRONY_REQ "80010002000080040002000f80000000"

START_TEST(test_raw_port_record) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  uint8_t resp[4096];
  ntsntp_ke_msg m;
  size_t n = raw_exchange(srv, CHRONY_REQ, resp, sizeof(resp), NULL, NULL);

  /* Port 123: no Port Negotiation, no Server Negotiation. */
  ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
  ck_assert(!m.has_port && !m.has_server && !m.compliant_128gcm);
  ck_assert_uint_eq(m.ncookies, 8);
  ntsntp_ke_server_del(srv);

  srv = new_server(4123, "10.1.2.3");
  n = raw_exchange(srv, CHRONY_REQ, resp, sizeof(resp), NULL, NULL);
  ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
  ck_assert(m.has_port && m.port == 4123);
  ck_assert(m.has_server);
  ck_assert_str_eq(m.server, "10.1.2.3");
  /* Both sent critical, like chrony: NextProto, AEAD, Port first. */
  ck_assert_mem_eq(resp, "\x80\x01\x00\x02\x00\x00\x80\x04\x00\x02\x00\x0f"
                         "\x80\x07\x00\x02\x10\x1b", 18);
  ck_assert_uint_eq(m.ncookies, 8);
  ntsntp_ke_server_del(srv);
}
END_TEST

/* AES-128-GCM-SIV without record 1024: keys with AEAD 15 in the context,
   as older chrony expects. */
START_TEST(test_raw_gcm_siv_context) {
  ntsntp_ke_server *srv;
  ntsntp_ke_session *s;
  ntsntp_ke_msg m;
  raw *r;
  uint8_t resp[4096], c2s[64], s2c[64], want[16];
  static const char label[] = NTSNTP_KE_EXPORTER_LABEL;
  int aead, pass;
  size_t n;

  if (!ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV))
    return;
  srv = new_server(123, NULL);
  for (pass = 0; pass < 2; pass++) {
    n = raw_exchange(srv,
                     pass ? "800100020000" "80040002001e" "04000000" "80000000"
                          : "800100020000" "80040002001e" "80000000",
                     resp, sizeof(resp), &s, &r);
    ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
    ck_assert_uint_eq(ntsntp_ke_msg_aead(&m, 0), 30);
    ck_assert_int_eq(m.compliant_128gcm, pass);
    ck_assert_int_eq(ntsntp_cookie_open(kr, m.cookies[0], m.cookie_len[0],
                                        &aead, c2s, s2c),
                     0);
    ck_assert_int_eq(aead, 30);
    ck_assert_int_eq(gnutls_prf_rfc5705(r->g, sizeof(label) - 1, label, 5,
                                        pass ? "\0\0\0\x1e\0" : "\0\0\0\x0f\0",
                                        16, (char *)want),
                     0);
    ck_assert_mem_eq(c2s, want, 16);
    ntsntp_ke_session_del(s);
    raw_del(r);
  }
  ntsntp_ke_server_del(srv);
}
END_TEST

/* The server takes the client's first AEAD among those it has enabled. */
START_TEST(test_raw_client_preference) {
  static const struct {
    const char *aeads; /* body of the client's AEAD record */
    int want, want_no_gcm;
  } cases[] = {
      {"001e000f", 30, 15}, /* chrony 4.4+ */
      {"000f001e", 15, 15},
      {"0011001e000f", 30, 15}, /* 17 not enabled on this server */
      {"0011", 0, 0},           /* nothing in common: empty AEAD record */
      {"0010001e", 30, 0},      /* 16 is not supported at all */
  };
  ntsntp_ke_server_settings ss;
  ntsntp_ke_server *srv;
  uint8_t resp[4096];
  char req[128];
  ntsntp_ke_msg m;
  size_t i, n;
  int gcm = ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV), want;

  ntsntp_ke_server_settings_default(&ss);
  ss.creds = creds;
  ss.keyring = kr;
  ss.aeads[0] = 30; /* skipped when nettle lacks it */
  ss.aeads[1] = 15;
  ss.naeads = 2;
  ck_assert_int_eq(ntsntp_ke_server_new(&srv, &ss, NULL, 0), 0);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(req, sizeof(req),
             "800100020000"
             "8004%04zx%s"
             "80000000",
             strlen(cases[i].aeads) / 2, cases[i].aeads);
    n = raw_exchange(srv, req, resp, sizeof(resp), NULL, NULL);
    ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
    want = gcm ? cases[i].want : cases[i].want_no_gcm;
    ck_assert_msg(m.has_aeads && m.naeads == (want ? 1u : 0u),
                  "case %zu: %zu AEADs", i, m.naeads);
    if (want) {
      ck_assert_int_eq(ntsntp_ke_msg_aead(&m, 0), want);
      ck_assert_uint_eq(m.ncookies, 8);
      ck_assert_uint_eq(m.cookie_len[0], ntsntp_cookie_len(want));
    } else {
      ck_assert_uint_eq(m.ncookies_total, 0);
    }
    /* No record 1024 was asked for, so none comes back. */
    ck_assert(!m.compliant_128gcm);
  }
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_raw_no_common) {
  ntsntp_ke_server *srv = new_server(4123, NULL);
  uint8_t resp[4096];
  ntsntp_ke_msg m;
  size_t n;

  /* Only AES-SIV-CMAC-384 (not supported): empty AEAD record, no cookies. */
  n = raw_exchange(srv, "800100020000" "800400020010" "80000000", resp,
                   sizeof(resp), NULL, NULL);
  ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
  ck_assert(m.has_protos && m.nprotos == 1);
  ck_assert(m.has_aeads && m.naeads == 0);
  ck_assert(!m.has_error && m.ncookies == 0 && !m.has_port);
  /* Only an unknown protocol: empty protocol list. */
  n = raw_exchange(srv, "800100020001" "80040002000f" "80000000", resp,
                   sizeof(resp), NULL, NULL);
  ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
  ck_assert(m.has_protos && m.nprotos == 0);
  ck_assert(!m.has_aeads && !m.has_error && m.ncookies == 0);
  ck_assert_uint_eq(srv_stats(srv).no_common, 2);
  ntsntp_ke_server_del(srv);
}
END_TEST

static const struct {
  const char *req;
  int code;
} error_cases[] = {
    /* Unknown critical record: Error 0. */
    {"800100020000" "80040002000f" "8123000100" "80000000", 0},
    /* No Next Protocol record. */
    {"80040002000f" "80000000", 1},
    /* Empty Next Protocol list. */
    {"80010000" "80040002000f" "80000000", 1},
    /* NTPv4 but no AEAD record. */
    {"800100020000" "80000000", 1},
    /* Empty AEAD list. */
    {"800100020000" "80040000" "80000000", 1},
    /* A cookie or an Error record from a client. */
    {"800100020000" "80040002000f" "00050004aabbccdd" "80000000", 1},
    {"800100020000" "80040002000f" "800200020000" "80000000", 1},
    /* Malformed AEAD record. */
    {"800100020000" "80040003000f00" "80000000", 1},
    /* Records after End of Message. */
    {"800100020000" "80040002000f" "80000000" "80000000", 1},
};

START_TEST(test_raw_errors) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  uint8_t resp[4096];
  size_t n = raw_exchange(srv, error_cases[_i].req, resp, sizeof(resp), NULL,
                          NULL);

  ck_assert_msg(error_code(resp, n) == error_cases[_i].code, "case %d", _i);
  ck_assert_uint_eq(srv_stats(srv).errors_sent[error_cases[_i].code], 1);
  ck_assert_uint_eq(srv_stats(srv).bad_requests, 1);
  ck_assert_uint_eq(srv_stats(srv).sessions_done, 0);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_raw_warning_ignored) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  uint8_t resp[4096];
  ntsntp_ke_msg m;
  size_t n = raw_exchange(
      srv, "800100020000" "80040002000f" "800300020000" "80000000", resp,
      sizeof(resp), NULL, NULL);

  ck_assert_int_eq(ntsntp_ke_parse(resp, n, &m), 0);
  ck_assert_uint_eq(m.ncookies, 8);
  ck_assert_uint_eq(srv_stats(srv).warnings_received, 1);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_raw_oversized) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;
  raw *r = raw_new(NULL, NTSNTP_KE_ALPN);
  static uint8_t big[32768];
  uint8_t resp[4096];
  size_t n;

  /* A Next Protocol record, then a non-critical record too big to fit. */
  n = tu_unhex("800100020000" "40004ff0", big, sizeof(big));
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_eq(raw_handshake(r, s), 0);
  raw_send(r, s, big, n + 0x4ff0);
  n = raw_recv(r, s, resp, sizeof(resp));
  ck_assert_int_eq(error_code(resp, n), 1);
  ck_assert(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
  ck_assert(!(ntsntp_ke_session_want(s) & NTSNTP_KE_DONE));
  ntsntp_ke_session_del(s);
  raw_del(r);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_raw_missing_end) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;
  raw *r = raw_new(NULL, NTSNTP_KE_ALPN);
  uint8_t req[16], resp[256];
  size_t n = tu_unhex("800100020000" "80040002000f", req, sizeof(req));

  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 5000, NULL, 0), 0);
  ck_assert_uint_eq(ntsntp_ke_session_expiry(s), 7000);
  ck_assert_int_eq(raw_handshake(r, s), 0);
  raw_send(r, s, req, n);
  ck_assert_uint_eq(ntsntp_ke_session_want(s), NTSNTP_KE_WANT_READ);
  ck_assert_int_eq(ntsntp_ke_session_handle_expiry(s, 6999), 0);
  ck_assert_int_eq(ntsntp_ke_session_handle_expiry(s, 7000),
                   NTSNTP_ERR_TIMEOUT);
  ck_assert_uint_eq(ntsntp_ke_session_want(s),
                    NTSNTP_KE_WANT_WRITE | NTSNTP_KE_CLOSE);
  n = raw_recv(r, s, resp, sizeof(resp));
  ck_assert_int_eq(error_code(resp, n), 1);
  ck_assert_uint_eq(srv_stats(srv).timeouts, 1);
  ck_assert_uint_eq(ntsntp_ke_session_expiry(s), UINT64_MAX);
  ntsntp_ke_session_del(s);
  raw_del(r);

  /* The client closes (close_notify) without End: no answer, closed. */
  r = raw_new(NULL, NTSNTP_KE_ALPN);
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_eq(raw_handshake(r, s), 0);
  raw_send(r, s, req, n);
  ck_assert_int_eq(gnutls_bye(r->g, GNUTLS_SHUT_WR), 0);
  raw_shuttle(r, s);
  ck_assert_uint_eq(ntsntp_ke_session_want(s), NTSNTP_KE_CLOSE);
  ntsntp_ke_session_del(s);
  raw_del(r);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_deadline_during_handshake) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;

  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_ke_session_handle_expiry(s, 2000),
                   NTSNTP_ERR_TIMEOUT);
  ck_assert_uint_eq(ntsntp_ke_session_want(s), NTSNTP_KE_CLOSE);
  ck_assert_int_eq(ntsntp_ke_session_read(s, (const uint8_t *)"x", 1),
                   NTSNTP_ERR_CLOSED);
  ntsntp_ke_session_del(s);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_wrong_alpn) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;
  raw *r;

  /* Another protocol offered. */
  r = raw_new(NULL, "http/1.1");
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_lt(raw_handshake(r, s), 0);
  ck_assert(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
  ck_assert_uint_eq(srv_stats(srv).alpn_failed, 1);
  ntsntp_ke_session_del(s);
  raw_del(r);
  /* No ALPN at all. */
  r = raw_new(NULL, NULL);
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  (void)raw_handshake(r, s);
  ck_assert(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
  ck_assert(!(ntsntp_ke_session_want(s) & NTSNTP_KE_DONE));
  ck_assert_uint_eq(srv_stats(srv).alpn_failed, 2);
  ck_assert_uint_eq(srv_stats(srv).handshake_failed, 2);
  ntsntp_ke_session_del(s);
  raw_del(r);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_tls12_refused) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;
  raw *r = raw_new("NORMAL:-VERS-ALL:+VERS-TLS1.2", NTSNTP_KE_ALPN);

  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_lt(raw_handshake(r, s), 0);
  ck_assert(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
  ck_assert_uint_eq(srv_stats(srv).handshake_failed, 1);
  ntsntp_ke_session_del(s);
  raw_del(r);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_garbage_before_tls) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;
  static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  uint8_t out[256];

  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_ke_session_read(s, (const uint8_t *)junk,
                                          sizeof(junk) - 1),
                   NTSNTP_ERR_TLS);
  ck_assert(ntsntp_ke_session_want(s) & NTSNTP_KE_CLOSE);
  /* At most an alert to send; never a response. */
  ck_assert_int_le(ntsntp_ke_session_write(s, out, sizeof(out)), 16);
  ck_assert_str_ne(ntsntp_ke_session_errtext(s), "");
  ntsntp_ke_session_del(s);
  ck_assert_uint_eq(srv_stats(srv).handshake_failed, 1);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_eof_before_request) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *s;

  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_ke_session_read(s, NULL, 0), NTSNTP_ERR_TLS);
  ck_assert_uint_eq(ntsntp_ke_session_want(s) & ~NTSNTP_KE_WANT_WRITE,
                    NTSNTP_KE_CLOSE);
  ntsntp_ke_session_del(s);
  ntsntp_ke_server_del(srv);
}
END_TEST

/* One NTS-KE exchange with srv; returns the client's result.  A failure
 * must come with a reason, copied to why if it is not NULL. */
static int outcome_with(ntsntp_ke_server *srv,
                        const ntsntp_ke_client_settings *cs, char *why,
                        size_t whylen) {
  ntsntp_ke_client *c;
  ntsntp_ke_session *s;
  ntsntp_ke_result r;
  int rv = ntsntp_ke_client_new(&c, cs, 0, NULL, 0);
  if (rv)
    return rv;
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  pump(c, s);
  rv = ntsntp_ke_client_result(c, &r);
  if (rv != 0)
    ck_assert_str_ne(ntsntp_ke_client_errtext(c), "");
  if (why)
    snprintf(why, whylen, "%s", ntsntp_ke_client_errtext(c));
  ntsntp_ke_result_clear(&r);
  ntsntp_ke_session_del(s);
  ntsntp_ke_client_del(c);
  return rv;
}

/* Client side failures: wrong name, untrusted CA, expired certificate. */
static int client_outcome(ntsntp_ke_server *srv, const char *name,
                          const char *ca, int skip_time) {
  ntsntp_ke_client_settings cs;

  ntsntp_ke_client_settings_default(&cs);
  cs.server_name = name;
  cs.ca_file = ca;
  cs.skip_time_checks = skip_time;
  return outcome_with(srv, &cs, NULL, 0);
}

START_TEST(test_client_cert_checks) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_creds *old;
  char err[512], ca[300];

  ck_assert_int_eq(client_outcome(srv, "localhost", ca_pem, 0), 0);
  ck_assert_int_eq(client_outcome(srv, "127.0.0.1", ca_pem, 0), 0);
  ck_assert_int_eq(client_outcome(srv, "example.com", ca_pem, 0),
                   NTSNTP_ERR_TLS);
  ck_assert_int_eq(client_outcome(srv, "localhost", ca2_pem, 0),
                   NTSNTP_ERR_TLS);
  /* An expired certificate passes only with skip_time_checks. */
  ck_assert_int_eq(ntsntp_ke_creds_load(&old, expired_cert, expired_key, err,
                                        sizeof(err)),
                   0);
  ck_assert_int_eq(ntsntp_ke_server_set_creds(srv, old), 0);
  ntsntp_ke_creds_unref(old);
  snprintf(ca, sizeof(ca), "%s/expired-ca.pem", tmpdir);
  ck_assert_int_eq(client_outcome(srv, "localhost", ca, 0), NTSNTP_ERR_TLS);
  ck_assert_int_eq(client_outcome(srv, "localhost", ca, 1), 0);
  ntsntp_ke_server_del(srv);
}
END_TEST

/* Trust anchors from memory, and the application's certificate hook. */
static int hook_calls, hook_verified, hook_answer;
static size_t hook_n;
static uint8_t hook_first;
static int hook(void *user, const uint8_t *const *chain,
                const size_t *chain_len, size_t n, int verified) {
  (void)user;
  hook_calls++;
  hook_verified = verified;
  hook_n = n;
  hook_first = n && chain_len[0] ? chain[0][0] : 0;
  return !hook_answer; /* hook_answer 1 lets it through: the hook says 0 */
}

START_TEST(test_client_ca_pem_and_hook) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_client_settings cs;
  uint8_t ca[8192], ca2[8192];
  size_t ca_len = slurp(ca_pem, ca, sizeof(ca));
  size_t ca2_len = slurp(ca2_pem, ca2, sizeof(ca2));
  char why[512];

  ntsntp_ke_client_settings_default(&cs);
  cs.server_name = "localhost";
  cs.ca_file = "/nonexistent"; /* the PEM in memory wins */
  cs.ca_pem = ca;
  cs.ca_pem_len = ca_len;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), 0);
  cs.ca_pem = ca2;
  cs.ca_pem_len = ca2_len;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), NTSNTP_ERR_TLS);
  cs.ca_pem = (const uint8_t *)"not a certificate";
  cs.ca_pem_len = 17;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)),
                   NTSNTP_ERR_BAD_CONFIG);
  cs.ca_pem_len = 0;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)),
                   NTSNTP_ERR_BAD_CONFIG);

  /* The hook sees the chain (DER, leaf first) and the library's verdict. */
  cs.ca_pem = ca;
  cs.ca_pem_len = ca_len;
  cs.verify = hook;
  hook_answer = 1;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), 0);
  ck_assert_int_eq(hook_calls, 1);
  ck_assert_int_eq(hook_verified, 1);
  ck_assert_uint_eq(hook_n, 2);
  ck_assert_uint_eq(hook_first, 0x30); /* a DER SEQUENCE */
  /* ... and can refuse a certificate the library accepts (pinning) ... */
  hook_answer = 0;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), NTSNTP_ERR_TLS);
  ck_assert_msg(strstr(why, "application's check") != NULL, "%s", why);
  /* ... or accept one it refuses (an untrusted CA, a wrong name). */
  cs.ca_pem = ca2;
  cs.ca_pem_len = ca2_len;
  hook_answer = 1;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), 0);
  ck_assert_int_eq(hook_verified, 0);
  cs.ca_pem = ca;
  cs.ca_pem_len = ca_len;
  cs.server_name = "example.com";
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), 0);
  ck_assert_int_eq(hook_verified, 0);
  hook_answer = 0;
  ck_assert_int_eq(outcome_with(srv, &cs, why, sizeof(why)), NTSNTP_ERR_TLS);
  ck_assert_int_eq(hook_calls, 5);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_client_errors) {
  ntsntp_ke_client_settings cs;
  ntsntp_ke_client *c;
  ntsntp_ke_result r;
  char missing[300];

  ntsntp_ke_client_settings_default(&cs);
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  cs.server_name = "localhost";
  snprintf(missing, sizeof(missing), "%s/none.pem", tmpdir);
  cs.ca_file = missing;
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0),
                   NTSNTP_ERR_BAD_CONFIG);
  cs.ca_file = ca_pem;
  cs.aeads[0] = 16;
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  cs.aeads[0] = 15;
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 100, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_ke_client_result(c, &r), NTSNTP_ERR_STATE);
  ck_assert_uint_eq(ntsntp_ke_client_expiry(c), 5100);
  ck_assert_int_eq(ntsntp_ke_client_handle_expiry(c, 5099), 0);
  ck_assert_int_eq(ntsntp_ke_client_handle_expiry(c, 5100),
                   NTSNTP_ERR_TIMEOUT);
  ck_assert_int_eq(ntsntp_ke_client_result(c, &r), NTSNTP_ERR_TIMEOUT);
  ck_assert(ntsntp_ke_client_want(c) & NTSNTP_KE_CLOSE);
  ntsntp_ke_client_del(c);
}
END_TEST

/* A non-TLS peer fails the client; Server/Port request records are fine. */
START_TEST(test_client_garbage_and_extras) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_client_settings cs;
  ntsntp_ke_client *c;
  ntsntp_ke_session *s;
  ntsntp_ke_result r;
  uint8_t buf[8192];
  ntsntp_ssize n;

  /* Garbage instead of a server: the client's handshake fails. */
  ntsntp_ke_client_settings_default(&cs);
  cs.server_name = "localhost";
  cs.ca_file = ca_pem;
  cs.ntp_server = "ntp.example.org";
  cs.ntp_port = 4123;
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0), 0);
  n = ntsntp_ke_client_write(c, buf, sizeof(buf));
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(ntsntp_ke_client_read(c, (const uint8_t *)"HTTP/1.0 400",
                                         12),
                   NTSNTP_ERR_TLS);
  ck_assert_int_eq(ntsntp_ke_client_result(c, &r), NTSNTP_ERR_TLS);
  ntsntp_ke_client_del(c);

  /* With request Server/Port records the exchange still works. */
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  pump(c, s);
  ck_assert_int_eq(ntsntp_ke_client_result(c, &r), 0);
  /* Honoring them is optional; this server keeps its own. */
  ck_assert_uint_eq(r.ntp_port, 123);
  ntsntp_ke_result_clear(&r);
  ntsntp_ke_session_del(s);
  ntsntp_ke_client_del(c);
  ntsntp_ke_server_del(srv);
}
END_TEST

/* A server that answers the client's request with |resp| (records built
 * by the test) instead of what ntsntp_ke_server would say. */
static int scripted(const uint8_t *resp, size_t resplen, ntsntp_ke_result *r,
                    char *why, size_t whylen) {
  static uint8_t buf[65536];
  ntsntp_ke_client_settings cs;
  ntsntp_ke_client *c;
  ntsntp__tls *t;
  int i, sent = 0, rv;

  ntsntp_ke_client_settings_default(&cs);
  cs.server_name = "localhost";
  cs.ca_file = ca_pem;
  ck_assert_int_eq(ntsntp_ke_client_new(&c, &cs, 0, NULL, 0), 0);
  ck_assert_int_eq(ntsntp__tls_new_server(&t, creds, NULL), 0);
  for (i = 0; i < 64; i++) {
    ntsntp_ssize a = ntsntp_ke_client_write(c, buf, sizeof(buf)), n;
    size_t b;
    if (a > 0)
      ck_assert_int_eq(ntsntp__tls_feed(t, buf, (size_t)a), 0);
    if (ntsntp__tls_handshake(t) == 0 && !sent) {
      n = ntsntp__tls_recv(t, buf, sizeof(buf));
      if (n > 0) { /* the whole request: answer it */
        ck_assert_int_eq(ntsntp__tls_send(t, resp, resplen), 0);
        ck_assert_int_eq(ntsntp__tls_bye(t), 0);
        sent = 1;
      }
    }
    b = ntsntp__tls_take(t, buf, sizeof(buf));
    if (b > 0)
      (void)ntsntp_ke_client_read(c, buf, b);
    if (a <= 0 && b == 0)
      break;
  }
  ck_assert_int_eq(sent, 1);
  rv = ntsntp_ke_client_result(c, r);
  snprintf(why, whylen, "%s", ntsntp_ke_client_errtext(c));
  ntsntp__tls_del(t);
  ntsntp_ke_client_del(c);
  return rv;
}

/* Builds a response: Next Protocol NTPv4, AEAD 15, |ncookies| cookies of
 * |cookie_len| bytes, then |extra| (|extra_len| bytes), End. */
static size_t response(uint8_t *out, size_t outlen, size_t cookie_len,
                       const uint8_t *extra, size_t extra_len) {
  static const uint8_t cookie[300];
  const uint16_t proto = 0, aead = 15;
  size_t n = 0;
  n += (size_t)ntsntp_ke_wr_u16s(out + n, outlen - n, 1,
                                 NTSNTP_KE_REC_NEXT_PROTOCOL, &proto, 1);
  n += (size_t)ntsntp_ke_wr_u16s(out + n, outlen - n, 0, NTSNTP_KE_REC_AEAD,
                                 &aead, 1);
  n += (size_t)ntsntp_ke_wr_record(out + n, outlen - n, 0,
                                   NTSNTP_KE_REC_COOKIE, cookie, cookie_len);
  if (extra_len)
    memcpy(out + n, extra, extra_len);
  n += extra_len;
  n += (size_t)ntsntp_ke_wr_record(out + n, outlen - n, 1, NTSNTP_KE_REC_END,
                                   NULL, 0);
  return n;
}

/* A Warning is no NAK; a cookie an NTP request cannot carry is refused;
 * the result says whether the port came from a Port record. */
START_TEST(test_client_scripted_responses) {
  uint8_t resp[1024], extra[16];
  ntsntp_ke_result r;
  char why[256];
  const uint16_t warning = 7, port = 123;
  size_t n, e;

  n = response(resp, sizeof(resp), 100, NULL, 0);
  ck_assert_int_eq(scripted(resp, n, &r, why, sizeof(why)), 0);
  ck_assert_uint_eq(r.ntp_port, 123);
  ck_assert_int_eq(r.port_record, 0);
  ntsntp_ke_result_clear(&r);

  e = (size_t)ntsntp_ke_wr_u16s(extra, sizeof(extra), 1, NTSNTP_KE_REC_PORT,
                                &port, 1);
  n = response(resp, sizeof(resp), 100, extra, e);
  ck_assert_int_eq(scripted(resp, n, &r, why, sizeof(why)), 0);
  ck_assert_uint_eq(r.ntp_port, 123);
  ck_assert_int_ne(r.port_record, 0);
  ntsntp_ke_result_clear(&r);

  e = (size_t)ntsntp_ke_wr_u16s(extra, sizeof(extra), 1,
                                NTSNTP_KE_REC_WARNING, &warning, 1);
  n = response(resp, sizeof(resp), 100, extra, e);
  ck_assert_int_eq(scripted(resp, n, &r, why, sizeof(why)),
                   NTSNTP_ERR_UNSUPPORTED);
  ck_assert_int_eq(r.warning_code, 7);
  ck_assert_int_eq(r.error_code, -1);
  ck_assert_ptr_nonnull(strstr(why, "Warning 7"));

  n = response(resp, sizeof(resp), NTSNTP_COOKIE_MAX_LEN, NULL, 0);
  ck_assert_int_eq(scripted(resp, n, &r, why, sizeof(why)), 0);
  ntsntp_ke_result_clear(&r);
  n = response(resp, sizeof(resp), NTSNTP_COOKIE_MAX_LEN + 4, NULL, 0);
  ck_assert_int_eq(scripted(resp, n, &r, why, sizeof(why)),
                   NTSNTP_ERR_BAD_RECORD);
  ck_assert_ptr_nonnull(strstr(why, "cookie longer"));
}
END_TEST

START_TEST(test_reload) {
  ntsntp_ke_server *srv = new_server(123, NULL);
  ntsntp_ke_session *old_s, *s;
  ntsntp_ke_client *c;
  ntsntp_ke_result r;
  char err[512], missing[300];

  /* A session started with the first certificate. */
  ck_assert_int_eq(ntsntp_ke_session_new(&old_s, srv, 0, NULL, 0), 0);
  /* A failed reload keeps the old credentials. */
  snprintf(missing, sizeof(missing), "%s/none.pem", tmpdir);
  ck_assert_int_eq(ntsntp_ke_server_reload(srv, missing, key2_pem, err,
                                           sizeof(err)),
                   NTSNTP_ERR_IO);
  ck_assert_ptr_nonnull(strstr(err, missing));
  ck_assert_int_eq(client_outcome(srv, "localhost", ca_pem, 0), 0);
  /* A good reload: new sessions use the second certificate... */
  ck_assert_int_eq(ntsntp_ke_server_reload(srv, cert2_pem, key2_pem, err,
                                           sizeof(err)),
                   0);
  ck_assert_int_eq(client_outcome(srv, "localhost", ca2_pem, 0), 0);
  ck_assert_int_eq(client_outcome(srv, "localhost", ca_pem, 0),
                   NTSNTP_ERR_TLS);
  /* ...while the running one keeps the first. */
  c = new_client(ca_pem, NULL, 0);
  pump(c, old_s);
  ck_assert_int_eq(ntsntp_ke_client_result(c, &r), 0);
  ntsntp_ke_result_clear(&r);
  ntsntp_ke_client_del(c);
  ntsntp_ke_session_del(old_s);
  /* Unused session with the new creds, deleted before the server. */
  ck_assert_int_eq(ntsntp_ke_session_new(&s, srv, 0, NULL, 0), 0);
  ntsntp_ke_session_del(s);
  ntsntp_ke_server_del(srv);
}
END_TEST

START_TEST(test_server_settings) {
  ntsntp_ke_server_settings ss;
  ntsntp_ke_server *srv;

  ntsntp_ke_server_settings_default(&ss);
  ck_assert_uint_eq(ss.ntp_port, 123);
  ck_assert_uint_eq(ss.max_request, 16384);
  ck_assert_uint_eq(ss.timeout_ms, 2000);
  ck_assert_int_eq(ss.aeads[0], 15);
  ck_assert_int_eq(ntsntp_ke_server_new(&srv, &ss, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ss.creds = creds;
  ss.keyring = kr;
  ss.ntp_server = "bad name";
  ck_assert_int_eq(ntsntp_ke_server_new(&srv, &ss, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ss.ntp_server = NULL;
  ss.aeads[0] = 16;
  ss.naeads = 1;
  ck_assert_int_eq(ntsntp_ke_server_new(&srv, &ss, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

static Suite *ke_suite(void) {
  Suite *s = suite_create("ke");
  TCase *tc = tcase_create("codec");
  TCase *tk = tcase_create("tls");

  tcase_add_test(tc, test_parse_chrony_request);
  tcase_add_test(tc, test_parse_chrony_response);
  tcase_add_test(tc, test_parse_ntpsec_response);
  tcase_add_test(tc, test_truncations);
  tcase_add_loop_test(tc, test_bad_records, 0,
                      (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
  tcase_add_test(tc, test_good_records);
  tcase_add_test(tc, test_encoder);
  suite_add_tcase(s, tc);

  tcase_add_unchecked_fixture(tk, pki_setup, pki_teardown);
  tcase_add_checked_fixture(tk, kr_setup, kr_teardown);
  tcase_set_timeout(tk, 60);
  tcase_add_test(tk, test_creds_load);
  tcase_add_test(tk, test_creds_errors);
  tcase_add_test(tk, test_creds_warning);
  tcase_add_test(tk, test_creds_pem_pairs);
  tcase_add_test(tk, test_creds_fifo);
  tcase_add_test(tk, test_creds_permission);
  tcase_add_test(tk, test_server_settings);
  tcase_add_test(tk, test_handshake_default_port);
  tcase_add_test(tk, test_handshake_negotiation);
  tcase_add_test(tk, test_raw_port_record);
  tcase_add_test(tk, test_raw_gcm_siv_context);
  tcase_add_test(tk, test_raw_client_preference);
  tcase_add_test(tk, test_raw_no_common);
  tcase_add_loop_test(tk, test_raw_errors, 0,
                      (int)(sizeof(error_cases) / sizeof(error_cases[0])));
  tcase_add_test(tk, test_raw_warning_ignored);
  tcase_add_test(tk, test_raw_oversized);
  tcase_add_test(tk, test_raw_missing_end);
  tcase_add_test(tk, test_deadline_during_handshake);
  tcase_add_test(tk, test_wrong_alpn);
  tcase_add_test(tk, test_tls12_refused);
  tcase_add_test(tk, test_garbage_before_tls);
  tcase_add_test(tk, test_eof_before_request);
  tcase_add_test(tk, test_client_cert_checks);
  tcase_add_test(tk, test_client_errors);
  tcase_add_test(tk, test_client_ca_pem_and_hook);
  tcase_add_test(tk, test_client_garbage_and_extras);
  tcase_add_test(tk, test_client_scripted_responses);
  tcase_add_test(tk, test_reload);
  suite_add_tcase(s, tk);
  return s;
}

int main(void) { return tu_run(ke_suite()); }
