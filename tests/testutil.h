/* Small helpers shared by the check suites. */
#ifndef NTSNTP_TESTUTIL_H
#define NTSNTP_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hex string to bytes; returns the byte count (aborts on bad hex). */
static inline size_t tu_unhex(const char *hex, uint8_t *out, size_t outlen) {
  size_t n = 0;
  while (hex[0] && hex[1]) {
    unsigned v;
    char tmp[3] = {hex[0], hex[1], 0};
    ck_assert_uint_lt(n, outlen);
    ck_assert_int_eq(sscanf(tmp, "%2x", &v), 1);
    out[n++] = (uint8_t)v;
    hex += 2;
  }
  return n;
}

static inline uint16_t ntsntp__test_get_u16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

/* How much slower than real time a slow run (valgrind) goes:
 * NTSNTP_TEST_TIME_SCALE, 1 to 20, default 1.  Tests that check a
 * deadline scale both the deadline they set and the window they accept,
 * so what they tell apart stays apart. */
static inline double tu_time_scale(void) {
  const char *v = getenv("NTSNTP_TEST_TIME_SCALE");
  double x = v ? atof(v) : 1.0;
  return x < 1.0 ? 1.0 : x > 20.0 ? 20.0 : x;
}

/* Runs a suite; exit status 0 only if every test passed. */
static inline int tu_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
