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

/* Moves NTS-KE bytes between the KE server core and |c|, or a bare
 * ntsntp_ke_client |kc| when |c| is NULL, until the client is done. */
static void pump(ntsntp_nts_client *c, ntsntp_ke_client *kc, uint64_t now) {
  static uint8_t buf[65536];
  ntsntp_ke_session *sess;
  int i;
  ck_assert_int_eq(ntsntp_ke_session_new(&sess, ke_srv, now, NULL, 0), 0);
  for (i = 0; i < 64; i++) {
    ntsntp_ssize a = c ? ntsntp_nts_client_ke_write(c, buf, sizeof(buf))
                       : ntsntp_ke_client_write(kc, buf, sizeof(buf)),
                 b;
    if (a > 0)
      (void)ntsntp_ke_session_read(sess, buf, (size_t)a);
    b = ntsntp_ke_session_write(sess, buf, sizeof(buf));
    if (b > 0)
      (void)(c ? ntsntp_nts_client_ke_read(c, buf, (size_t)b)
               : ntsntp_ke_client_read(kc, buf, (size_t)b));
    if ((c ? ntsntp_nts_client_ke_want(c) : ntsntp_ke_client_want(kc)) &
        (NTSNTP_KE_DONE | NTSNTP_KE_CLOSE))
      break;
  }
  ntsntp_ke_session_del(sess);
}

/* Runs NTS-KE between |c| and the KE server core; returns ke_end. */
static int run_ke(ntsntp_nts_client *c, uint64_t now) {
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, now), 0);
  ck_assert(ntsntp_nts_client_want(c, now) & NTSNTP_NTS_WANT_KE_IO);
  pump(c, NULL, now);
  return ntsntp_nts_client_ke_end(c, now);
}

/* |req| of ntsntp_nts_client_request answered by |srv|; returns what the
 * client says. */
static int exchange_sent(ntsntp_nts_client *c, ntsntp_server *srv,
                         const uint8_t *req, size_t len,
                         ntsntp_client_sample *sample) {
  uint8_t resp[1500];
  ntsntp_server_ctx ctx;
  ntsntp_ssize m;
  const uint64_t t1 = 0xE0000001ull << 32, t4 = t1 + (1ull << 28);
  ck_assert(ntsntp_server_prepare(srv, req, len, t1 + 1000, &ctx) !=
            NTSNTP_SERVER_DROP);
  m = ntsntp_server_finish(srv, &ctx, t1 + 2000, resp, sizeof(resp));
  ck_assert_int_gt(m, 0);
  return ntsntp_nts_client_response(c, resp, (size_t)m, t1, t4, sample);
}

/* One request answered by |srv|; returns what the client says. */
static int exchange(ntsntp_nts_client *c, ntsntp_server *srv, uint64_t now,
                    ntsntp_client_sample *sample) {
  uint8_t req[1500];
  ntsntp_ssize n = ntsntp_nts_client_request(c, now, req, sizeof(req));
  ck_assert_int_gt(n, 0);
  ck_assert(ntsntp_nts_client_want(c, now) & NTSNTP_NTS_WAIT_NTP);
  return exchange_sent(c, srv, req, (size_t)n, sample);
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

/* An NTS-KE run by "another transport": a bare ntsntp_ke_client against
 * the KE server core. */
static void ke_elsewhere(ntsntp_ke_result *r) {
  ntsntp_ke_client_settings ks;
  ntsntp_ke_client *kc;
  ntsntp_ke_client_settings_default(&ks);
  ks.server_name = "localhost";
  ks.ca_file = ca_pem;
  ck_assert_int_eq(ntsntp_ke_client_new(&kc, &ks, 0, NULL, 0), 0);
  pump(NULL, kc, 0);
  ck_assert_int_eq(ntsntp_ke_client_result(kc, r), 0);
  ntsntp_ke_client_del(kc);
  ck_assert_uint_eq(r->ncookies, 8);
}

/* A request built from request_keys, answered by |srv|: the sample
 * ntsntp_client_response gives (its status in |*rv|). */
static void keys_exchange(ntsntp_nts_client *c, ntsntp_server *srv,
                          ntsntp_client_sample *sample, int *rv) {
  ntsntp_nts_client_keys rk;
  ntsntp_client_params p;
  ntsntp_client_exchange ex;
  ntsntp_server_ctx ctx;
  uint8_t req[1500], resp[1500];
  ntsntp_ssize n, m;
  const uint64_t t1 = 0xE0000001ull << 32;
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 0, &rk), 0);
  memset(&p, 0, sizeof(p));
  p.aead = rk.aead;
  p.c2s = rk.c2s;
  p.s2c = rk.s2c;
  p.cookie = rk.cookie;
  p.cookie_len = rk.cookie_len;
  p.placeholders = rk.placeholders;
  n = ntsntp_client_request(&ex, &p, req, sizeof(req));
  ck_assert_int_gt(n, 0);
  ck_assert(ntsntp_server_prepare(srv, req, (size_t)n, t1 + 1000, &ctx) !=
            NTSNTP_SERVER_DROP);
  m = ntsntp_server_finish(srv, &ctx, t1 + 2000, resp, sizeof(resp));
  ck_assert_int_gt(m, 0);
  *rv = ntsntp_client_response(&ex, resp, (size_t)m, t1, t1 + 4000, sample);
}

/* NTS-KE by another transport: its result is taken like ke_end's, and
 * the back-off is reset; the NTP server defaults are filled in. */
START_TEST(test_ke_result) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_client_sample sample;
  ntsntp_ke_result r;
  uint16_t port = 0;

  ke_elsewhere(&r);
  ntsntp_nts_client_ke_failed(c, 100, "Connection refused");
  ntsntp_nts_client_ke_failed(c, 2100, "Connection refused");
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.ke_failed_run, 2);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 7000, &r), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_int_eq(info.have_keys, 1);
  ck_assert_uint_eq(info.cookies, 8);
  ck_assert_uint_eq(info.ke_ok, 1);
  ck_assert_uint_eq(info.ke_failed, 2);
  ck_assert_uint_eq(info.ke_failed_run, 0);
  ck_assert_uint_eq(info.backoff_until_ms, 0);
  ck_assert_uint_eq(info.ke_time_ms, 7000);
  ck_assert_str_eq(ntsntp_nts_client_errtext(c), "");
  ck_assert_str_eq(ntsntp_nts_client_ntp_server(c, &port), "localhost");
  ck_assert_uint_eq(port, 10123);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 7000), NTSNTP_NTS_WANT_NTP);
  /* The cookies are real: the NTP server core opens them. */
  ck_assert_int_eq(exchange(c, ntp_srv, 7000, &sample), 0);
  ck_assert_int_eq(sample.authenticated, 1);
  /* No Server or Port record: the NTS-KE server and 123. */
  r.ntp_server[0] = '\0';
  r.ntp_port = 0;
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 8000, &r), 0);
  ck_assert_str_eq(ntsntp_nts_client_ntp_server(c, &port), "localhost");
  ck_assert_uint_eq(port, 123);
  /* While an exchange of ke_begin runs: STATE. */
  ck_assert_int_eq(ntsntp_nts_client_ke_begin(c, 9000), 0);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 9000, &r), NTSNTP_ERR_STATE);
  ntsntp_ke_result_clear(&r);
  ntsntp_nts_client_del(c);
}
END_TEST

/* Results no NTP request could use are refused and change nothing. */
START_TEST(test_ke_result_bad) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_ke_result good, r;

  ke_elsewhere(&good);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 0, NULL),
                   NTSNTP_ERR_INVALID_ARG);
#define REFUSED(CHANGE)                                                        \
  do {                                                                         \
    r = good;                                                                  \
    CHANGE;                                                                    \
    ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 0, &r),                    \
                     NTSNTP_ERR_INVALID_ARG);                                  \
  } while (0)
  REFUSED(r.aead = 0);
  REFUSED(r.aead = 16); /* AES-SIV-CMAC-384: not in this build */
  REFUSED(r.key_len = 16);
  REFUSED(r.ncookies = 0);
  REFUSED(r.ncookies = NTSNTP_KE_MAX_COOKIES + 1);
  REFUSED(r.cookie_len[3] = 0);
  REFUSED(r.cookie_len[7] = NTSNTP_COOKIE_MAX_LEN + 1);
  REFUSED(memset(r.ntp_server, 'a', sizeof(r.ntp_server)));
#undef REFUSED
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_int_eq(info.have_keys, 0);
  ck_assert_uint_eq(info.ke_ok, 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_KE);
  /* The longest cookie a request can carry is fine; info reports the
   * length of the next one to spend (the oldest). */
  r = good;
  r.cookie_len[0] = NTSNTP_COOKIE_MAX_LEN;
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 0, &r), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookie_len, NTSNTP_COOKIE_MAX_LEN);
  ck_assert_uint_ne(good.cookie_len[7], NTSNTP_COOKIE_MAX_LEN);
  ntsntp_ke_result_clear(&good);
  ntsntp_ke_result_clear(&r);
  ntsntp_nts_client_del(c);
}
END_TEST

/* Keys and a cookie for a request built elsewhere; its outcome back. */
START_TEST(test_request_keys) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_nts_client_keys rk;
  ntsntp_client_sample sample;
  ntsntp_ke_result r;
  uint8_t first[NTSNTP_COOKIE_MAX_LEN];
  int rv;

  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 0, &rk),
                   NTSNTP_ERR_STATE); /* no keys yet */
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, 0, &sample),
                   NTSNTP_ERR_STATE); /* nothing outstanding */
  ke_elsewhere(&r);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 0, &r), 0);
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 50, &rk), 0);
  ck_assert_int_eq(rk.aead, r.aead);
  ck_assert_uint_eq(rk.key_len, r.key_len);
  ck_assert_mem_eq(rk.c2s, r.c2s, r.key_len);
  ck_assert_mem_eq(rk.s2c, r.s2c, r.key_len);
  ck_assert_uint_eq(rk.cookie_len, r.cookie_len[0]);
  ck_assert_mem_eq(rk.cookie, r.cookies[0], r.cookie_len[0]);
  ck_assert_uint_eq(rk.placeholders, 0); /* the jar was full */
  memcpy(first, rk.cookie, rk.cookie_len);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 7);
  ck_assert_uint_eq(info.requests, 1);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 50), NTSNTP_NTS_WAIT_NTP);
  ck_assert_uint_eq(ntsntp_nts_client_expiry(c), 1050);
  /* One outstanding request, and only its own kind of answer. */
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 50, &rk),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(ntsntp_nts_client_request(c, 50, (uint8_t[1500]){0}, 1500),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(
      ntsntp_nts_client_response(c, (uint8_t[48]){0}, 48, 0, 0, &sample),
      NTSNTP_ERR_STATE);
  /* Lost: counted, the cookie stays spent, the next asks for one more. */
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, NTSNTP_ERR_TIMEOUT, NULL),
                   0);
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, NTSNTP_ERR_TIMEOUT, NULL),
                   NTSNTP_ERR_STATE);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.timeouts, 1);
  ck_assert_uint_eq(info.cookies, 7);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 60), NTSNTP_NTS_WANT_NTP);
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 60, &rk), 0);
  ck_assert_uint_eq(rk.placeholders, 1);
  ck_assert_mem_ne(rk.cookie, first, rk.cookie_len); /* never reused */
  /* A KoD ends it and changes nothing else. */
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, NTSNTP_ERR_KOD, NULL), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.timeouts, 1);
  ck_assert_int_eq(info.have_keys, 1);
  /* Answered: the server's cookie and the placeholders fill the jar. */
  keys_exchange(c, ntp_srv, &sample, &rv);
  ck_assert_int_eq(rv, 0);
  ck_assert_uint_eq(sample.n_cookies, 3); /* one, and two placeholders */
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, 0, &sample), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 8);
  ck_assert_uint_eq(info.responses, 1);
  ck_assert_uint_eq(info.requests, 3);
  ntsntp_ke_result_clear(&r);
  ntsntp_nts_client_del(c);
}
END_TEST

/* A request that never left gives its cookie back, as the next one to
 * spend; one that left, or whose keys were replaced, does not. */
START_TEST(test_request_unsent) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_nts_client_keys rk;
  ntsntp_client_sample sample;
  ntsntp_ke_result r;
  uint8_t first[NTSNTP_COOKIE_MAX_LEN], req[1500], again[1500];
  ntsntp_ssize n, m;
  size_t first_len;
  int rv;

  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), NTSNTP_ERR_STATE);
  ke_elsewhere(&r);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 0, &r), 0);
  /* request_keys, then unsent: the same cookie comes out next. */
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 10, &rk), 0);
  memcpy(first, rk.cookie, rk.cookie_len);
  first_len = rk.cookie_len;
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), 0);
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), NTSNTP_ERR_STATE);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 8);
  ck_assert_uint_eq(info.requests, 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 20), NTSNTP_NTS_WANT_NTP);
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 20, &rk), 0);
  ck_assert_uint_eq(rk.cookie_len, first_len);
  ck_assert_mem_eq(rk.cookie, first, first_len);
  ck_assert_uint_eq(rk.placeholders, 0);
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), 0);
  /* A request that left and was answered: nothing to give back. */
  keys_exchange(c, ntp_srv, &sample, &rv);
  ck_assert_int_eq(rv, 0);
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, 0, &sample), 0);
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), NTSNTP_ERR_STATE);
  /* ntsntp_nts_client_request: the cookie is back, the server opens the
   * request built with it. */
  n = ntsntp_nts_client_request(c, 30, req, sizeof(req));
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), 0);
  ck_assert_int_eq(ntsntp_nts_client_response(c, req, (size_t)n, 0, 0, &sample),
                   NTSNTP_ERR_STATE); /* no longer outstanding */
  m = ntsntp_nts_client_request(c, 40, again, sizeof(again));
  ck_assert_int_eq(m, n);
  ck_assert_int_eq(exchange_sent(c, ntp_srv, again, (size_t)m, &sample), 0);
  ck_assert_int_eq(sample.authenticated, 1);
  /* New keys while a request is out: its cookie is not theirs and is
   * dropped, but the request is over. */
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 50, &rk), 0);
  memcpy(first, rk.cookie, rk.cookie_len);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 60, &r), 0);
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), 0);
  ck_assert_int_eq(ntsntp_nts_client_request_unsent(c), NTSNTP_ERR_STATE);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 8);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 70), NTSNTP_NTS_WANT_NTP);
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 70, &rk), 0);
  ck_assert_mem_eq(rk.cookie, r.cookies[0], r.cookie_len[0]); /* new jar */
  ck_assert_mem_ne(rk.cookie, first, rk.cookie_len);
  ntsntp_ke_result_clear(&r);
  ntsntp_nts_client_del(c);
}
END_TEST

/* request_done's bad input, a NAK, the deadline, odd sample cookies. */
START_TEST(test_request_done_bad) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_nts_client_keys rk;
  ntsntp_client_sample sample;
  ntsntp_ke_result r;
  int rv;

  ke_elsewhere(&r);
  ck_assert_int_eq(ntsntp_nts_client_ke_result(c, 0, &r), 0);
  /* Success without an authenticated sample: refused, the request over. */
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 0, &rk), 0);
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, 0, NULL),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_NTP);
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 0, &rk), 0);
  memset(&sample, 0, sizeof(sample));
  sample.n_cookies = 1;
  sample.cookie_len[0] = 100;
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, 0, &sample),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 6);
  ck_assert_uint_eq(info.responses, 0);
  /* Cookies no request can carry are not taken. */
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 0, &rk), 0);
  sample.authenticated = 1;
  sample.n_cookies = 3;
  sample.cookie_len[1] = 0;
  sample.cookie_len[2] = NTSNTP_COOKIE_MAX_LEN + 1;
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, 0, &sample), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.cookies, 6);
  ck_assert_uint_eq(info.cookie_len, r.cookie_len[3]);
  /* The deadline passes: a timeout; the late outcome is STATE. */
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 10, &rk), 0);
  ck_assert_int_eq(ntsntp_nts_client_handle_expiry(c, 1010),
                   NTSNTP_ERR_TIMEOUT);
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, NTSNTP_ERR_TIMEOUT, NULL),
                   NTSNTP_ERR_STATE);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.timeouts, 1);
  /* An own request is not ended by request_done. */
  ck_assert_int_gt(ntsntp_nts_client_request(c, 2000, (uint8_t[1500]){0}, 1500),
                   0);
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, NTSNTP_ERR_TIMEOUT, NULL),
                   NTSNTP_ERR_STATE);
  ck_assert_int_eq(ntsntp_nts_client_handle_expiry(c, 3000),
                   NTSNTP_ERR_TIMEOUT);
  /* A server that cannot open the cookie: NAK, keys dropped, NTS-KE. */
  keys_exchange(c, stranger, &sample, &rv);
  ck_assert_int_eq(rv, NTSNTP_ERR_NAK);
  ck_assert_int_eq(ntsntp_nts_client_request_done(c, rv, &sample), 0);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_uint_eq(info.naks, 1);
  ck_assert_int_eq(info.have_keys, 0);
  ck_assert_uint_eq(info.cookies, 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 3000), NTSNTP_NTS_WANT_KE);
  ck_assert_ptr_nonnull(strstr(ntsntp_nts_client_errtext(c), "NAK"));
  ntsntp_ke_result_clear(&r);
  ntsntp_nts_client_del(c);
}
END_TEST

/* forget: fresh keys wanted now; counters, back-off kept; an outstanding
 * request is abandoned. */
START_TEST(test_forget) {
  ntsntp_nts_client *c = new_client();
  ntsntp_nts_client_info info;
  ntsntp_client_sample sample;
  ntsntp_nts_client_keys rk;

  ck_assert_int_eq(run_ke(c, 0), 0);
  ck_assert_int_gt(ntsntp_nts_client_request(c, 0, (uint8_t[1500]){0}, 1500),
                   0);
  ntsntp_nts_client_forget(c);
  ntsntp_nts_client_get_info(c, &info);
  ck_assert_int_eq(info.have_keys, 0);
  ck_assert_int_eq(info.aead, 0);
  ck_assert_uint_eq(info.cookies, 0);
  ck_assert_uint_eq(info.ke_ok, 1);
  ck_assert_uint_eq(info.requests, 1);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 0), NTSNTP_NTS_WANT_KE);
  ck_assert_uint_eq(ntsntp_nts_client_expiry(c), UINT64_MAX);
  ck_assert_int_eq(
      ntsntp_nts_client_response(c, (uint8_t[48]){0}, 48, 0, 0, &sample),
      NTSNTP_ERR_STATE);
  ck_assert_int_eq(ntsntp_nts_client_request_keys(c, 0, &rk), NTSNTP_ERR_STATE);
  /* During a back-off it waits for the back-off. */
  ntsntp_nts_client_ke_failed(c, 10, "Connection refused");
  ntsntp_nts_client_forget(c);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 2009), 0);
  ck_assert_uint_eq(ntsntp_nts_client_want(c, 2010), NTSNTP_NTS_WANT_KE);
  ck_assert_int_eq(run_ke(c, 2010), 0);
  ck_assert_int_eq(exchange(c, ntp_srv, 2010, &sample), 0);
  ntsntp_nts_client_del(c);
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
  tcase_add_test(tc, test_ke_result);
  tcase_add_test(tc, test_ke_result_bad);
  tcase_add_test(tc, test_request_keys);
  tcase_add_test(tc, test_request_unsent);
  tcase_add_test(tc, test_request_done_bad);
  tcase_add_test(tc, test_forget);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
