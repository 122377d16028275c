/*
 * Error text of the _new functions: every failure writes one line into the
 * caller's errbuf that names the cause (and, where there is one, the fix),
 * so an operator never has to guess from a bare error code.
 */
#include <check.h>
#include <string.h>

#include "ntsntp/access.h"
#include "ntsntp/cookie.h"
#include "ntsntp/ke.h"
#include "ntsntp/server.h"
#include "ntsntp/sync.h"
#include "testutil.h"

/* |err| holds one non-empty line that contains |cause|. */
#define ASSERT_NAMES(err, cause)                                               \
  do {                                                                         \
    ck_assert_msg((err)[0] != '\0', "no error text");                          \
    ck_assert_msg(strchr((err), '\n') == NULL, "more than a line: %s", (err)); \
    ck_assert_msg(strstr((err), (cause)) != NULL, "'%s' does not name '%s'",   \
                  (err), (cause));                                             \
  } while (0)

/* ntsntp_ke_client_new with trust anchors from |ca_file|. */
static int ke_client_with_ca(const char *ca_file, char *err, size_t errlen) {
  ntsntp_ke_client_settings cs;
  ntsntp_ke_client *c = NULL;
  int rv;
  ntsntp_ke_client_settings_default(&cs);
  cs.server_name = "localhost";
  cs.ca_file = ca_file;
  rv = ntsntp_ke_client_new(&c, &cs, 0, err, errlen);
  ck_assert_ptr_null(c);
  return rv;
}

/* An unreadable CA file: its name and the reason, not just BAD_CONFIG;
 * then one that holds no certificate. */
START_TEST(test_ke_client_ca_file) {
  char err[256] = "";
  ck_assert_int_eq(ke_client_with_ca("/nonexistent/ntsntp-ca.pem", err,
                                     sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ASSERT_NAMES(err, "/nonexistent/ntsntp-ca.pem");
  ASSERT_NAMES(err, "No such file or directory");
  /* NULL/0 is allowed. */
  ck_assert_int_eq(ke_client_with_ca("/nonexistent/ntsntp-ca.pem", NULL, 0),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_int_eq(ke_client_with_ca("/dev/null", err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ASSERT_NAMES(err, "/dev/null");
  ASSERT_NAMES(err, "no certificate");
}
END_TEST

START_TEST(test_sync_bad_settings) {
  ntsntp_sync_settings s;
  ntsntp_sync *sync = NULL;
  char err[512] = "";
  ntsntp_sync_settings_default(&s);
  s.minpoll = 12;
  s.maxpoll = 4;
  ck_assert_int_eq(ntsntp_sync_new(&sync, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ASSERT_NAMES(err, "minpoll 12 and maxpoll 4");
}
END_TEST

START_TEST(test_keyring_short_secret) {
  static const uint8_t secret[16];
  ntsntp_keyring_settings s;
  ntsntp_keyring *kr = NULL;
  char err[256] = "";
  ntsntp_keyring_settings_default(&s);
  s.secret = secret;
  s.secret_len = sizeof(secret);
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ASSERT_NAMES(err, "secret is 16 bytes");
  ASSERT_NAMES(err, "fix:");
}
END_TEST

START_TEST(test_ratelimit_out_of_range) {
  ntsntp_ratelimit_settings s;
  ntsntp_ratelimit *rl = NULL;
  char err[512] = "";
  ntsntp_ratelimit_settings_default(&s, NTSNTP_RL_SERVICE_NTP);
  s.burst = 0;
  ck_assert_int_eq(ntsntp_ratelimit_new(&rl, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ASSERT_NAMES(err, "burst 0");
}
END_TEST

START_TEST(test_ke_server_no_creds) {
  ntsntp_ke_server_settings s;
  ntsntp_ke_server *srv = NULL;
  char err[256] = "";
  ntsntp_ke_server_settings_default(&s);
  ck_assert_int_eq(ntsntp_ke_server_new(&srv, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ASSERT_NAMES(err, "no credentials");
}
END_TEST

START_TEST(test_server_no_rand) {
  ntsntp_server_settings s;
  ntsntp_server *srv = NULL;
  char err[256] = "";
  ntsntp_server_settings_default(&s);
  s.rand = NULL;
  ck_assert_int_eq(ntsntp_server_new(&srv, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ASSERT_NAMES(err, "no random source");
}
END_TEST

static Suite *errtext_suite(void) {
  Suite *s = suite_create("errtext");
  TCase *tc = tcase_create("new");
  tcase_add_test(tc, test_ke_client_ca_file);
  tcase_add_test(tc, test_sync_bad_settings);
  tcase_add_test(tc, test_keyring_short_secret);
  tcase_add_test(tc, test_ratelimit_out_of_range);
  tcase_add_test(tc, test_ke_server_no_creds);
  tcase_add_test(tc, test_server_no_rand);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(errtext_suite()); }
