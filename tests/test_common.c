/* Error codes, their texts and names; the run-time version. */
#include <check.h>

#include "ntsntp/common.h"
#include "ntsntp/version.h"
#include "testutil.h"

static const int codes[] = {
    NTSNTP_ERR_MALFORMED,   NTSNTP_ERR_TRUNCATED,   NTSNTP_ERR_BAD_EF,
    NTSNTP_ERR_BAD_VERSION, NTSNTP_ERR_BAD_MODE,    NTSNTP_ERR_BAD_RECORD,
    NTSNTP_ERR_TOO_LARGE,   NTSNTP_ERR_UNSUPPORTED, NTSNTP_ERR_BAD_KEYFILE,
    NTSNTP_ERR_BAD_CONFIG,  NTSNTP_ERR_AUTH,        NTSNTP_ERR_BAD_COOKIE,
    NTSNTP_ERR_UNKNOWN_KEY, NTSNTP_ERR_TLS,         NTSNTP_ERR_NAK,
    NTSNTP_ERR_KOD,         NTSNTP_ERR_INVALID_ARG, NTSNTP_ERR_NOBUF,
    NTSNTP_ERR_STATE,       NTSNTP_ERR_AGAIN,       NTSNTP_ERR_TIMEOUT,
    NTSNTP_ERR_CLOSED,      NTSNTP_ERR_NOT_FOUND,   NTSNTP_ERR_NOMEM,
    NTSNTP_ERR_CRYPTO,      NTSNTP_ERR_IO};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

/* Every code has its own text and its own name; other values do not. */
START_TEST(test_every_code_named) {
  size_t i, j;
  for (i = 0; i < N_CODES; i++) {
    ck_assert_str_ne(ntsntp_strerror(codes[i]), "unknown error");
    ck_assert_str_ne(ntsntp_err_name(codes[i]), "NTSNTP_ERR_UNKNOWN");
    ck_assert_int_eq(strncmp(ntsntp_err_name(codes[i]), "NTSNTP_ERR_", 11), 0);
    ck_assert_int_eq(ntsntp_err_is_fatal(codes[i]), codes[i] <= -500);
    for (j = 0; j < i; j++) {
      ck_assert_str_ne(ntsntp_err_name(codes[i]), ntsntp_err_name(codes[j]));
      ck_assert_str_ne(ntsntp_strerror(codes[i]), ntsntp_strerror(codes[j]));
    }
  }
  ck_assert_str_eq(ntsntp_err_name(NTSNTP_ERR_AUTH), "NTSNTP_ERR_AUTH");
  ck_assert_str_eq(ntsntp_err_name(0), "NTSNTP_OK");
  ck_assert_str_eq(ntsntp_strerror(0), "success");
  /* The codes no function returned are gone. */
  ck_assert_str_eq(ntsntp_err_name(-111), "NTSNTP_ERR_UNKNOWN");
  ck_assert_str_eq(ntsntp_err_name(-112), "NTSNTP_ERR_UNKNOWN");
  ck_assert_str_eq(ntsntp_err_name(-504), "NTSNTP_ERR_UNKNOWN");
  ck_assert_str_eq(ntsntp_strerror(-504), "unknown error");
  ck_assert_str_eq(ntsntp_err_name(1), "NTSNTP_ERR_UNKNOWN");
}
END_TEST

START_TEST(test_version) {
  const ntsntp_version_info *v = ntsntp_version(0);
  ck_assert_ptr_nonnull(v);
  ck_assert_uint_eq(v->version_num, NTSNTP_VERSION_NUM);
  ck_assert_str_eq(v->version_str, NTSNTP_VERSION);
  ck_assert_int_eq(v->have_gcm_siv, NTSNTP_HAVE_GCM_SIV);
  ck_assert_ptr_eq(ntsntp_version(NTSNTP_VERSION_NUM), v);
  ck_assert_ptr_null(ntsntp_version(NTSNTP_VERSION_NUM + 1));
  ck_assert_ptr_null(ntsntp_version(0x10000u * 255));
  /* ntsntp_free takes NULL and what the library's malloc gave. */
  ntsntp_free(NULL);
  ntsntp_free(ntsntp_mem_default()->malloc(16, NULL));
}
END_TEST

int main(void) {
  Suite *s = suite_create("common");
  TCase *tc = tcase_create("common");
  tcase_add_test(tc, test_every_code_named);
  tcase_add_test(tc, test_version);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
