/* The complete sans-I/O NTS client against the library's own NTS-KE and
 * NTP server cores, in memory: key exchange, cookie jar and placeholders,
 * lost requests, NAK, back-off, deadlines, refresh, bad settings. */
#include <check.h>

#include "ntsntp/nts_client.h"
#include "ntsntp/server.h"
#include "testpki.h"
#include "testutil.h"

static ntsntp_keyring *kr, *other_kr;
static ntsntp_ke_creds *creds;
static ntsntp_ke_server *ke_srv;
static ntsntp_server *ntp_srv, *stranger; /* stranger: other cookie keys */

static void setup(void) {
  ntsntp_ke_server_settings ks;
  ntsntp_server_settings ss;
  ntsntp_clock_state cs;
  char err[512];
  pki_setup();
  ck_assert_int_eq(ntsntp_keyring_new(&kr, NULL, 1700000000, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_keyring_new(&other_kr, NULL, 1700000000, NULL, 0), 0);
  ck_assert_int_eq(
      ntsntp_ke_creds_load(&creds, cert_pem, key_pem, err, sizeof(err)), 0);
  ntsntp_ke_server_settings_default(&ks);
  ks.creds = creds;
  ks.keyring = kr;
  ks.ntp_port = 10123;
  ck_assert_int_eq(ntsntp_ke_server_new(&ke_srv, &ks, NULL, 0), 0);
  ntsntp_server_settings_default(&ss);
  ss.keyring = kr;
  ck_assert_int_eq(ntsntp_server_new(&ntp_srv, &ss, NULL, 0), 0);
  ss.keyring = other_kr;
  ck_assert_int_eq(ntsntp_server_new(&stranger, &ss, NULL, 0), 0);
  ntsntp_clock_state_local(&cs, 10, 0xE0000000ull << 32);
  ntsntp_server_set_clock(ntp_srv, &cs);
  ntsntp_server_set_clock(stranger, &cs);
}

static void teardown(void) {
  ntsntp_server_del(ntp_srv);
  ntsntp_server_del(stranger);
  ntsntp_ke_server_del(ke_srv);
  ntsntp_ke_creds_unref(creds);
  ntsntp_keyring_del(kr);
  ntsntp_keyring_del(other_kr);
  pki_teardown();
}

static ntsntp_nts_client *new_client(void) {
  ntsntp_nts_client_settings s;
  ntsntp_nts_client *c;
  char err[256];
  ntsntp_nts_client_settings_default(&s);
  s.server = "localhost";
  s.ca_file = ca_pem;
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, err, sizeof(err)), 0);
  return c;
}

/* Runs NTS-KE between |c| and the KE server core; returns ke_end. */
static int run_ke(ntsntp_nts_client *c, uint64_t now) {
  static uint8_t buf[65536];
  ntsntp_ke_session *sess;
  int i;
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, now), 0);
  ck_assert(ntsntp_nts_client_want(c, now) & NTSNTP_NTS_WANT_KE_IO);
  ck_assert_int_eq(ntsntp_ke_session_new(&sess, ke_srv, now, NULL, 0), 0);
  for (i = 0; i < 64; i++) {
    ntsntp_ssize a = ntsntp_nts_client_ke_write(c, buf, sizeof(buf)), b;
    if (a > 0)
      (void)ntsntp_ke_session_read(sess, buf, (size_t)a);
    b = ntsntp_ke_session_write(sess, buf, sizeof(buf));
    if (b > 0)
      (void)ntsntp_nts_client_ke_read(c, buf, (size_t)b);
    if (ntsntp_nts_client_ke_want(c) & (NTSNTP_KE_DONE | NTSNTP_KE_CLOSE))
      break;
  }
  ntsntp_ke_session_del(sess);
  return ntsntp_nts_client_ke_end(c, now);
}

/* One request answered by |srv|; returns what the client says. */
static int exchange(ntsntp_nts_client *c, ntsntp_server *srv, uint64_t now,
                    ntsntp_client_sample *sample) {
  uint8_t req[1500], resp[1500];
  ntsntp_server_ctx ctx;
  ntsntp_ssize n, m;
  const uint64_t t1 = 0xE0000001ull << 32, t4 = t1 + (1ull << 28);
  n = ntsntp_nts_client_request(c, now, req, sizeof(req));
  ck_assert_int_gt(n, 0);
  ck_assert(ntsntp_nts_client_want(c, now) & NTSNTP_NTS_WAIT_NTP);
  ck_assert(ntsntp_server_prepare(srv, req, (size_t)n, t1 + 1000, &ctx) !=
            NTSNTP_SERVER_DROP);
  m = ntsntp_server_finish(srv, &ctx, t1 + 2000, resp, sizeof(resp));
  ck_assert_int_gt(m, 0);
  return ntsntp_nts_client_response(c, resp, (size_t)m, t1, t4, sample);
}

START_TEST(test_life_cycle) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_client_sample sample;
  uint16_t port = 0;
  int i;

  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_KE);
  ck_assert_ptr_null(ntsntp_nts_client_ntp_server(c, &port));
  ck_assert_int_eq(ntsntp_nts_client_request(c, 0, (uint8_t[64]){0}, 64),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(run_ke(c, 0), 0);
  ck_assert_str_eq(ntsntp_nts_client_ntp_server(c, &port), "localhost");
  ck_assert_uint_eq(port, 10123);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 8);
  ck_assert_int_eq(info.aead, NTSNTP_AEAD_AES_SIV_CMAC_256);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_NTP);
  /* Answered requests keep the jar full. */
  for (i = 0; i < 20; i++) {
    ck_assert_int_eq(exchange(c, ntp_srv, 10, &sample), 0);
    ck_assert_int_eq(sample.authenticated, 1);
    ck_assert_uint_eq(sample.n_cookies, 1);
  }
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 8);
  ck_assert_uint_eq(info.requests, 20);
  ck_assert_uint_eq(info.responses, 20);
  ck_assert_uint_eq(info.ke_ok, 1);
  ntsntp_nts_client_del(c);
}
END_TEST

/* Lost requests spend cookies; the next requests ask for them back with
 * placeholders; an empty jar asks for NTS-KE. */
START_TEST(test_lost_requests_and_placeholders) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_client_sample sample;
  uint8_t req[1500];
  uint64_t now = 0;
  int i;

  ck_assert_int_eq(run_ke(c, now), 0);
  for (i = 0; i < 3; i++) {
    ck_assert_int_gt(ntsntp_nts_client_request(c, now, req, sizeof(req)), 0);
    /* Only one outstanding request. */
    ck_assert_int_eq(ntsntp_nts_client_request(c, now, req, sizeof(req)),
                     NTSNTP_ERR_STATE);
    ck_assert_uint_eq(ntsntp_nts_client_expiry(c), now + 1000);
    ck_assert_int_eq(ntsntp_nts_client_handle_expiry(c, now + 999), 0);
    now += 1000;
    ck_assert_int_eq(ntsntp_nts_client_handle_expiry(c, now),
                     NTSNTP_ERR_TIMEOUT);
  }
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 5);
  ck_assert_uint_eq(info.timeouts, 3);
  /* The next answer brings four cookies: one for the one spent, three
   * placeholders filled. */
  ck_assert_int_eq(exchange(c, ntp_srv, now, &sample), 0);
  ck_assert_uint_eq(sample.n_cookies, 4);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 8);
  /* Eight lost requests empty the jar: NTS-KE again. */
  for (i = 0; i < 8; i++) {
    ck_assert_int_gt(ntsntp_nts_client_request(c, now, req, sizeof(req)), 0);
    now += 1000;
    ntsntp_nts_client_handle_expiry(c, now);
  }
  ck_assert_uint_eq(ntsntp_nts_client_want(c, now), NTSNTP_NTS_WANT_KE);
  ck_assert_int_eq(ntsntp_nts_client_request(c, now, req, sizeof(req)),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(run_ke(c, now), 0);
  ck_assert_int_eq(exchange(c, ntp_srv, now, &sample), 0);
  ntsntp_nts_client_del(c);
}
END_TEST

/* A server that cannot open our cookies sends a NAK: keys and cookies
 * are dropped and NTS-KE is wanted at once. */
START_TEST(test_nak) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_client_sample sample;
  ck_assert_int_eq(run_ke(c, 0), 0);
  ck_assert_int_eq(exchange(c, stranger, 0, &sample), NTSNTP_ERR_NAK);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.naks, 1);
  ck_assert_uint_eq(info.cookies, 0);
  ck_assert_int_eq(info.have_keys, 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_KE);
  ck_assert_ptr_nonnull(strstr(ntsntp_nts_client_errtext(c), "NAK"));
  ck_assert_int_eq(run_ke(c, 0), 0);
  ck_assert_int_eq(exchange(c, ntp_srv, 0, &sample), 0);
  ntsntp_nts_client_del(c);
}
END_TEST

/* Something that is not the answer is dropped and the request stays
 * outstanding; the real answer then counts. */
START_TEST(test_foreign_datagrams) {
  ntsntp_nts_client *c = new_client();
  ntsntp_client_sample sample;
  uint8_t req[1500], resp[1500], junk[48] = {0x24};
  ntsntp_server_ctx ctx;
  ntsntp_ssize n, m;
  ck_assert_int_eq(run_ke(c, 0), 0);
  ck_assert_int_eq(ntsntp_nts_client_response(c, junk, sizeof(junk), 1, 2,
                                              &sample),
                   NTSNTP_ERR_STATE);
  n = ntsntp_nts_client_request(c, 0, req, sizeof(req));
  ck_assert_int_gt(n, 0);
  ck_assert_int_lt(ntsntp_nts_client_response(c, junk, sizeof(junk), 1, 2,
                                              &sample),
                   0);
  ck_assert(ntsntp_server_prepare(ntp_srv, req, (size_t)n, 5, &ctx) !=
            NTSNTP_SERVER_DROP);
  m = ntsntp_server_finish(ntp_srv, &ctx, 6, resp, sizeof(resp));
  resp[m - 1] ^= 1; /* a forged tag */
  ck_assert_int_eq(ntsntp_nts_client_response(c, resp, (size_t)m, 1, 9,
                                              &sample),
                   NTSNTP_ERR_AUTH);
  ck_assert(ntsntp_nts_client_want(c, 0) & NTSNTP_NTS_WAIT_NTP);
  resp[m - 1] ^= 1;
  ck_assert_int_eq(ntsntp_nts_client_response(c, resp, (size_t)m, 1, 9,
                                              &sample),
                   0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_NTP);
  ntsntp_nts_client_del(c);
}
END_TEST

/* Failed key exchanges back off 2 s, 4 s, 8 s ... up to the maximum; a
 * success resets it.  A KE that never ends times out. */
START_TEST(test_backoff_and_ke_timeout) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  uint64_t now = 1000;
  uint32_t want_ms = 2000;
  int i;
  for (i = 0; i < 15; i++) {
    ck_assert_uint_eq(ntsntp_nts_client_want(c, now), NTSNTP_NTS_WANT_KE);
    ntsntp_nts_client_ke_failed(c, now, "Connection refused");
    ck_assert_uint_eq(ntsntp_nts_client_expiry(c), now + want_ms);
    ck_assert_uint_eq(ntsntp_nts_client_want(c, now + want_ms - 1), 0);
    now += want_ms;
    want_ms = want_ms * 2 > 3600000 ? 3600000 : want_ms * 2;
  }
  ck_assert_uint_eq(want_ms, 3600000);
  ck_assert_ptr_nonnull(strstr(ntsntp_nts_client_errtext(c), "refused"));
  ck_assert_int_eq(run_ke(c, now), 0);
  ck_assert_str_eq(ntsntp_nts_client_errtext(c), "");
  /* A KE that stalls: no bytes from the server after the ClientHello. */
  ntsntp_nts_client_del(c);
  c = new_client();
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, now), 0);
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, now), NTSNTP_ERR_STATE);
  ck_assert_int_gt(ntsntp_nts_client_ke_write(c, (uint8_t[4096]){0}, 4096), 0);
  ck_assert_uint_eq(ntsntp_nts_client_expiry(c), now + 5000);
  ck_assert_int_eq(ntsntp_nts_client_handle_expiry(c, now + 5000),
                   NTSNTP_ERR_TIMEOUT);
  ck_assert_uint_eq(ntsntp_nts_client_ke_want(c), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.ke_failed, 1);
  ck_assert_uint_eq(info.backoff_until_ms, now + 5000 + 2000);
  /* An exchange ended before it finished fails too. */
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, now + 7000), 0);
  ck_assert_int_eq(ntsntp_nts_client_ke_end(c, now + 7000), NTSNTP_ERR_STATE);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.ke_failed, 2);
  ntsntp_nts_client_del(c);
}
END_TEST

/* CAs from memory (copied: the caller's buffer may go), and the hook. */
static int hook_calls;
static int hook(void *user, const uint8_t *const *chain,
                const size_t *chain_len, size_t n, int verified) {
  (void)chain;
  (void)chain_len;
  hook_calls++;
  return !(*(int *)user && n > 0 && verified); /* 0 lets it through */
}

START_TEST(test_ca_pem_and_hook) {
  ntsntp_nts_client_settings s;
  ntsntp_nts_client *c;
  uint8_t *pem = malloc(8192);
  int accept = 1;
  size_t n;
  FILE *f = fopen(ca_pem, "rb");
  ck_assert_ptr_nonnull(f);
  n = fread(pem, 1, 8192, f);
  fclose(f);
  ntsntp_nts_client_settings_default(&s);
  s.server = "localhost";
  s.ca_pem = pem;
  s.ca_pem_len = n;
  s.verify = hook;
  s.verify_user = &accept;
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, NULL, 0), 0);
  memset(pem, 0, 8192);
  free(pem);
  ck_assert_int_eq(run_ke(c, 0), 0);
  ck_assert_int_eq(hook_calls, 1);
  accept = 0;
  ck_assert_int_eq(run_ke(c, 0), NTSNTP_ERR_TLS);
  ck_assert_ptr_nonnull(strstr(ntsntp_nts_client_errtext(c), "refused"));
  ntsntp_nts_client_del(c);
}
END_TEST

/* Keys older than refresh_s: NTS-KE is wanted while NTP goes on. */
START_TEST(test_refresh) {
  ntsntp_nts_client *c = new_client();
  const uint64_t two_weeks = 1209600ull * 1000;
  ck_assert_int_eq(run_ke(c, 5), 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 5 + two_weeks - 1),
                    NTSNTP_NTS_WANT_NTP);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 5 + two_weeks),
                    NTSNTP_NTS_WANT_NTP | NTSNTP_NTS_WANT_KE);
  ck_assert_int_eq(run_ke(c, 5 + two_weeks), 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 5 + two_weeks),
                    NTSNTP_NTS_WANT_NTP);
  ntsntp_nts_client_del(c);
}
END_TEST

START_TEST(test_bad_settings) {
  ntsntp_nts_client_settings s;
  ntsntp_nts_client *c;
  char err[256], missing[300];
  ntsntp_client_sample sample;

  ntsntp_nts_client_settings_default(&s);
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(c);
  ck_assert_ptr_nonnull(strstr(err, "server name"));
  s.server = "localhost";
  s.aeads[0] = 16; /* AES-SIV-CMAC-384: not supported */
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  s.aeads[0] = 15;
  s.backoff_min_ms = 10;
  s.backoff_max_ms = 5;
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(err, "backoff"));
  s.backoff_max_ms = 10;
  s.version = 99;
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(err, "version"));
  s.version = NTSNTP_SETTINGS_VERSION;
  /* An unreadable CA file: the KE fails with a reason, and backs off. */
  snprintf(missing, sizeof(missing), "%s/none.pem", tmpdir);
  s.ca_file = missing;
  ck_assert_int_eq(ntsntp_nts_client_new(&c, &s, err, sizeof(err)), 0);
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, 0), NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(ntsntp_nts_client_errtext(c), "CA file"));
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 10), NTSNTP_NTS_WANT_KE);
  ck_assert_int_eq(ntsntp_nts_client_ke_end(c, 10), NTSNTP_ERR_STATE);
  ck_assert_int_eq(ntsntp_nts_client_response(c, (uint8_t[48]){0}, 48, 0, 0,
                                              &sample),
                   NTSNTP_ERR_STATE);
  ntsntp_nts_client_del(c);
  ntsntp_nts_client_del(NULL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nts_client");
  TCase *tc = tcase_create("nts_client");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_life_cycle);
  tcase_add_test(tc, test_lost_requests_and_placeholders);
  tcase_add_test(tc, test_nak);
  tcase_add_test(tc, test_foreign_datagrams);
  tcase_add_test(tc, test_backoff_and_ke_timeout);
  tcase_add_test(tc, test_refresh);
  tcase_add_test(tc, test_ca_pem_and_hook);
  tcase_add_test(tc, test_bad_settings);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
