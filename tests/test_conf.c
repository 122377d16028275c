/* Configuration: settings of another program said at start, not ignored. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ntsntp/conf.h"
#include "testutil.h"

typedef struct target {
  char ntp_servers[NTSNTP_CONF_STR_MAX];
  char tz[NTSNTP_CONF_STR_MAX];
} target;

static const ntsntp_conf_opt opts[] = {
    {"NTP_SERVERS", NTSNTP_CONF_STR, offsetof(target, ntp_servers), "", 0, 0,
     "upstreams"},
    /* A program that does read TZ: never "not used". */
    {"TZ", NTSNTP_CONF_STR, offsetof(target, tz), "", 0, 0, "time zone"},
};

static const ntsntp_conf_foreign_var vars[] = {
    {"NTSD_TEST_ENABLE_NTS", "use NTS_CERT"},
    {"NTSD_TEST_NOCLIENTLOG", "nothing to do"},
    {"TZ", "UTC only"},
    {"NTSD_TEST_NO_HINT", NULL},
};

static char lines[8][1100];
static int levels[8], n_lines;

static void logger(void *user, int level, const char *msg) {
  ck_assert_ptr_eq(user, (void *)lines);
  ck_assert_int_lt(n_lines, 8);
  levels[n_lines] = level;
  snprintf(lines[n_lines++], sizeof(lines[0]), "%s", msg);
}

static size_t check(const ntsntp_conf_foreign_var *v, size_t n) {
  n_lines = 0;
  return ntsntp_conf_foreign(opts, 2, v, n, "ntsd", logger, lines);
}

START_TEST(test_none_set) {
  unsetenv("NTSD_TEST_ENABLE_NTS");
  unsetenv("NTSD_TEST_NOCLIENTLOG");
  unsetenv("NTSD_TEST_NO_HINT");
  setenv("TZ", "Europe/Berlin", 1);
  ck_assert_uint_eq(check(vars, 4), 0);
  ck_assert_int_eq(n_lines, 0);
  ck_assert_uint_eq(check(vars, 0), 0);
}
END_TEST

START_TEST(test_each_set_one_line) {
  setenv("NTSD_TEST_ENABLE_NTS", "true", 1);
  setenv("NTSD_TEST_NOCLIENTLOG", "", 1); /* set, even if empty */
  unsetenv("NTSD_TEST_NO_HINT");
  ck_assert_uint_eq(check(vars, 4), 2);
  ck_assert_int_eq(n_lines, 2);
  ck_assert_str_eq(lines[0], "NTSD_TEST_ENABLE_NTS is set but ntsd does not "
                             "use it: use NTS_CERT");
  ck_assert_str_eq(lines[1], "NTSD_TEST_NOCLIENTLOG is set but ntsd does not "
                             "use it: nothing to do");
  ck_assert_int_eq(levels[0], NTSNTP_LOG_WARN);
  ck_assert_int_eq(levels[1], NTSNTP_LOG_WARN);
}
END_TEST

START_TEST(test_no_hint_no_log_no_prog) {
  setenv("NTSD_TEST_NO_HINT", "1", 1);
  ck_assert_uint_eq(check(vars + 3, 1), 1);
  ck_assert_str_eq(lines[0], "NTSD_TEST_NO_HINT is set but ntsd does not use "
                             "it: remove it");
  /* Counted without a logger; a NULL name is skipped. */
  {
    ntsntp_conf_foreign_var v[2] = {{NULL, "x"}, {"NTSD_TEST_NO_HINT", "y"}};
    ck_assert_uint_eq(ntsntp_conf_foreign(opts, 2, v, 2, NULL, NULL, NULL),
                      1);
    n_lines = 0;
    ck_assert_uint_eq(ntsntp_conf_foreign(NULL, 0, v, 2, NULL, logger, lines),
                      1);
    ck_assert_str_eq(lines[0], "NTSD_TEST_NO_HINT is set but this program "
                               "does not use it: y");
  }
}
END_TEST

/* Hostile lengths: a line is cut, never overflows. */
START_TEST(test_long_hint_cut) {
  static char hint[4000];
  ntsntp_conf_foreign_var v = {"NTSD_TEST_NO_HINT", hint};
  memset(hint, 'h', sizeof(hint) - 1);
  setenv("NTSD_TEST_NO_HINT", "1", 1);
  ck_assert_uint_eq(check(&v, 1), 1);
  ck_assert_uint_eq(strlen(lines[0]), 1023);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conf");
  TCase *tc = tcase_create("foreign");
  tcase_add_test(tc, test_none_set);
  tcase_add_test(tc, test_each_set_one_line);
  tcase_add_test(tc, test_no_hint_no_log_no_prog);
  tcase_add_test(tc, test_long_hint_cut);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
