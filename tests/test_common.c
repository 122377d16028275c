/* Error codes, their texts and names; the run-time version. */
#include <check.h>

#include <stdlib.h>

#include "ntsntp/common.h"
#include "ntsntp/cookie.h"
#include "ntsntp/sync.h"
#include "ntsntp/uv_refclock.h"
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

/* A counting allocator over libc's. */
static long n_live, n_calls;
static void *c_malloc(size_t n, void *u) {
  (void)u;
  n_calls++, n_live++;
  return malloc(n);
}
static void *c_calloc(size_t a, size_t b, void *u) {
  (void)u;
  n_calls++, n_live++;
  return calloc(a, b);
}
static void *c_realloc(void *p, size_t n, void *u) {
  (void)u;
  n_calls++;
  n_live += p == NULL;
  return realloc(p, n);
}
static void c_free(void *p, void *u) {
  (void)u;
  n_live -= p != NULL;
  free(p);
}
static const ntsntp_mem counting = {NULL, c_malloc, c_free, c_calloc,
                                    c_realloc};
static void stopped(void *user) { *(int *)user = 1; }

/* ntsntp_set_mem: core objects without their own allocator and the
 * runtime's objects take it, and give everything back. */
START_TEST(test_set_mem) {
  ntsntp_mem partial = counting;
  ntsntp_keyring *kr = NULL;
  ntsntp_sync_settings ss;
  ntsntp_sync *sync = NULL;
  ntsntp_uv_refclock_settings rs;
  ntsntp_uv_refclock *rc = NULL;
  uv_loop_t loop;
  long before;
  int done = 0;

  partial.realloc = NULL;
  ck_assert_int_eq(ntsntp_set_mem(&partial), NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_ne(ntsntp_mem_default(), &partial);
  ck_assert_int_eq(ntsntp_set_mem(&counting), 0);
  ck_assert_ptr_eq(ntsntp_mem_default(), &counting);

  ck_assert_int_eq(ntsntp_keyring_new(&kr, NULL, 1000, NULL, 0), 0);
  ntsntp_sync_settings_default(&ss);
  ck_assert_int_eq(ntsntp_sync_new(&sync, &ss, NULL, 0), 0);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ntsntp_uv_refclock_settings_default(&rs);
  rs.sync = sync;
  before = n_calls;
  ck_assert_int_ge(before, 2); /* the key ring and the sync core */
  ck_assert_int_eq(ntsntp_uv_refclock_start(&loop, &rs, &rc, NULL, 0), 0);
  ck_assert_int_gt(n_calls, before); /* the runtime's object */
  ntsntp_uv_refclock_stop(rc, stopped, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(done, 1);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ntsntp_sync_del(sync);
  ntsntp_keyring_del(kr);
  ck_assert_int_eq(n_live, 0);
  /* ntsntp_free gives back to the same allocator. */
  ntsntp_free(ntsntp_mem_default()->malloc(8, NULL));
  ck_assert_int_eq(n_live, 0);
  ck_assert_int_eq(ntsntp_set_mem(NULL), 0);
  ck_assert_ptr_ne(ntsntp_mem_default(), &counting);
}
END_TEST

int main(void) {
  Suite *s = suite_create("common");
  TCase *tc = tcase_create("common");
  tcase_add_test(tc, test_every_code_named);
  tcase_add_test(tc, test_version);
  tcase_add_test(tc, test_set_mem);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
