/*
 * A program built against libntsntp-core alone (the sans-I/O core): it
 * encodes and decodes packets, answers a request with the server core and
 * sets up an NTS-KE client, and libuv is never loaded.
 */
#include <check.h>
#include <link.h>
#include <string.h>

#include <ntsntp/ke.h>
#include <ntsntp/ntsntp.h>

static int uv_seen(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  if (strstr(info->dlpi_name, "libuv") != NULL)
    *(int *)data = 1;
  if (strstr(info->dlpi_name, "libntsntp-core") != NULL)
    *(int *)data |= 2;
  return 0;
}

START_TEST(test_no_libuv_loaded) {
  int seen = 0;
  dl_iterate_phdr(uv_seen, &seen);
  ck_assert_msg(!(seen & 1), "libuv is loaded");
  ck_assert_msg(seen & 2, "libntsntp-core is not loaded (linked statically?)");
}
END_TEST

START_TEST(test_core_works) {
  ntsntp_server_settings ss;
  ntsntp_server *srv;
  ntsntp_clock_state cs;
  ntsntp_server_ctx ctx;
  ntsntp_pkt_hdr h;
  ntsntp_ke_client_settings ks;
  ntsntp_ke_client *kc;
  uint8_t req[48], resp[1024];
  ntsntp_ssize n;

  memset(&h, 0, sizeof(h));
  h.version = 4;
  h.mode = NTSNTP_MODE_CLIENT;
  h.tx_ts = 0x0123456789abcdefull;
  ntsntp_pkt_encode_hdr(&h, req);
  ntsntp_server_settings_default(&ss);
  ck_assert_int_eq(ntsntp_server_new(&srv, &ss, NULL, 0), 0);
  ntsntp_clock_state_local(&cs, 10, 0x1000000000000000ull);
  ntsntp_server_set_clock(srv, &cs);
  ck_assert_int_ne(ntsntp_server_prepare(srv, req, sizeof(req),
                                         0x1000000000000000ull, &ctx),
                   NTSNTP_SERVER_DROP);
  n = ntsntp_server_finish(srv, &ctx, 0x1000000000000001ull, resp,
                           sizeof(resp));
  ck_assert_int_eq(n, 48);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, resp, (size_t)n), 0);
  ck_assert_uint_eq(h.mode, NTSNTP_MODE_SERVER);
  ck_assert_uint_eq(h.org_ts, 0x0123456789abcdefull);
  ntsntp_server_del(srv);

  ntsntp_ke_client_settings_default(&ks);
  ks.server_name = "localhost";
  ck_assert_int_eq(ntsntp_ke_client_new(&kc, &ks, 0, NULL, 0), 0);
  ck_assert_int_gt(ntsntp_ke_client_write(kc, resp, sizeof(resp)), 0);
  ntsntp_ke_client_del(kc);
}
END_TEST

int main(void) {
  Suite *s = suite_create("core_only");
  TCase *tc = tcase_create("core_only");
  SRunner *sr;
  int failed;
  tcase_add_test(tc, test_core_works);
  tcase_add_test(tc, test_no_libuv_loaded);
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
