/*
 * Versioned settings (common.h, Settings): every initialiser stamps the
 * version, every _new and _start refuses settings that were not
 * initialised or come from an unknown version, and an older, shorter
 * struct is read only as far as it goes, the rest taking defaults.
 */
#include <check.h>
#include <string.h>

#include "ntsntp/access.h"
#include "ntsntp/control.h"
#include "ntsntp/cookie.h"
#include "ntsntp/ke.h"
#include "ntsntp/nts_client.h"
#include "ntsntp/privsep.h"
#include "ntsntp/server.h"
#include "ntsntp/service.h"
#include "ntsntp/service_conf.h"
#include "ntsntp/sync.h"
#include "ntsntp/upstream.h"
#include "ntsntp/uv.h"
#include "ntsntp/uv_client.h"
#include "ntsntp/uv_ke.h"
#include "ntsntp/uv_refclock.h"
#include "settings.h"
#include "testutil.h"

/* Every initialiser stamps NTSNTP_SETTINGS_VERSION in the first member. */
START_TEST(test_defaults_stamp_version) {
  union {
    ntsntp_keyring_settings keyring;
    ntsntp_ke_client_settings ke_client;
    ntsntp_ke_server_settings ke_server;
    ntsntp_server_settings server;
    ntsntp_sync_settings sync;
    ntsntp_ratelimit_settings ratelimit;
    ntsntp_nts_client_settings nts_client;
    ntsntp_privsep_settings privsep;
    ntsntp_uv_ctl_settings ctl;
    ntsntp_uv_ke_settings uv_ke;
    ntsntp_uv_ke_query_settings ke_query;
    ntsntp_uv_ntp_query_settings ntp_query;
    ntsntp_uv_ntp_settings uv_ntp;
    ntsntp_uv_service_settings service;
    ntsntp_uv_upstream_settings upstream;
    ntsntp_uv_refclock_settings refclock;
  } u;
#define STAMPED(member, call)                                                  \
  do {                                                                         \
    memset(&u, 0xa5, sizeof(u));                                               \
    call;                                                                      \
    ck_assert_msg(u.member.version == NTSNTP_SETTINGS_VERSION,                 \
                  #member ": version %d", u.member.version);                   \
  } while (0)
  STAMPED(keyring, ntsntp_keyring_settings_default(&u.keyring));
  STAMPED(ke_client, ntsntp_ke_client_settings_default(&u.ke_client));
  STAMPED(ke_server, ntsntp_ke_server_settings_default(&u.ke_server));
  STAMPED(server, ntsntp_server_settings_default(&u.server));
  STAMPED(sync, ntsntp_sync_settings_default(&u.sync));
  STAMPED(ratelimit, ntsntp_ratelimit_settings_default(
                         &u.ratelimit, NTSNTP_RL_SERVICE_NTSKE));
  STAMPED(nts_client, ntsntp_nts_client_settings_default(&u.nts_client));
  STAMPED(privsep, ntsntp_privsep_settings_default(&u.privsep));
  STAMPED(ctl, ntsntp_uv_ctl_settings_default(&u.ctl));
  STAMPED(uv_ke, ntsntp_uv_ke_settings_default(&u.uv_ke));
  ck_assert_int_eq(u.uv_ke.ke.version, NTSNTP_SETTINGS_VERSION);
  STAMPED(ke_query, ntsntp_uv_ke_query_settings_default(&u.ke_query));
  ck_assert_int_eq(u.ke_query.ke.version, NTSNTP_SETTINGS_VERSION);
  STAMPED(ntp_query, ntsntp_uv_ntp_query_settings_default(&u.ntp_query));
  STAMPED(uv_ntp, ntsntp_uv_ntp_settings_default(&u.uv_ntp));
  STAMPED(service, ntsntp_uv_service_settings_default(&u.service));
  ck_assert_int_eq(u.service.ratelimit.version, NTSNTP_SETTINGS_VERSION);
  ck_assert_int_eq(u.service.nts_ratelimit.version, NTSNTP_SETTINGS_VERSION);
  STAMPED(upstream, ntsntp_uv_upstream_settings_default(&u.upstream));
  ck_assert_int_eq(u.upstream.sync.version, NTSNTP_SETTINGS_VERSION);
  STAMPED(refclock, ntsntp_uv_refclock_settings_default(&u.refclock));
#undef STAMPED
}
END_TEST

/* NTS-KE's rate-limit defaults still differ from NTP's. */
START_TEST(test_ratelimit_service_defaults) {
  ntsntp_ratelimit_settings ntp, ke;
  ntsntp_ratelimit_settings_default(&ntp, NTSNTP_RL_SERVICE_NTP);
  ntsntp_ratelimit_settings_default(&ke, NTSNTP_RL_SERVICE_NTSKE);
  ck_assert_int_eq(ntp.interval, 3);
  ck_assert_int_eq(ntp.no_leak, 0);
  ck_assert_int_eq(ke.interval, 6);
  ck_assert_int_eq(ke.no_leak, 1);
}
END_TEST

/* Settings cleared by memset (version 0) or of a version from the future
 * are refused, and the text says how to fill them. */
START_TEST(test_unfilled_refused) {
  ntsntp_sync_settings ss;
  ntsntp_server_settings vs;
  ntsntp_keyring_settings ks;
  ntsntp_sync *sync = NULL;
  ntsntp_server *srv = NULL;
  ntsntp_keyring *kr = NULL;
  char err[512] = "";

  memset(&ss, 0, sizeof(ss));
  ck_assert_int_eq(ntsntp_sync_new(&sync, &ss, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(sync);
  ck_assert_msg(strstr(err, "version 0") && strstr(err, "_settings_default"),
                "%s", err);

  ntsntp_server_settings_default(&vs);
  vs.version = NTSNTP_SETTINGS_VERSION + 1;
  err[0] = '\0';
  ck_assert_int_eq(ntsntp_server_new(&srv, &vs, err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(srv);
  ck_assert_msg(strstr(err, "unknown to this library"), "%s", err);

  /* NULL settings mean the defaults where the API says so. */
  ck_assert_int_eq(ntsntp_keyring_new(&kr, NULL, 1000, NULL, 0), 0);
  ntsntp_keyring_del(kr);
  kr = NULL;
  ntsntp_keyring_settings_default(&ks);
  ks.version = -1;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &ks, 1000, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(kr);
}
END_TEST

/* A start refused for a NULL argument names it, and a NULL errbuf (even
 * with a length) is never written. */
#define NAMES_NULL(call_err, call_noerr, what)                                 \
  do {                                                                         \
    char e_[256] = "";                                                         \
    char *err = e_;                                                            \
    size_t errlen = sizeof(e_);                                                \
    ck_assert_int_eq((call_err), NTSNTP_ERR_INVALID_ARG);                      \
    ck_assert_msg(strstr(e_, (what)) != NULL, "'%s' does not say '%s'", e_,    \
                  (what));                                                     \
    err = NULL;                                                                \
    ck_assert_int_eq((call_noerr), NTSNTP_ERR_INVALID_ARG);                    \
  } while (0)

static void ke_query_cb(void *user, const ntsntp_uv_ke_outcome *o) {
  (void)user;
  (void)o;
}

START_TEST(test_null_arguments_named) {
  uv_loop_t loop;
  ntsntp_uv_ke_settings ke;
  ntsntp_uv_ke_query_settings kq;
  ntsntp_uv_ntp_query_settings nq;
  ntsntp_uv_refclock_settings rc;
  ntsntp_uv_upstream_settings up;
  ntsntp_privsep_settings ps;
  ntsntp_uv_ke *k;
  ntsntp_uv_refclock *r;
  ntsntp_uv_upstream *u;
  char *argv[] = {"ntsd", NULL};

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ntsntp_uv_ke_settings_default(&ke);
  ntsntp_uv_ke_query_settings_default(&kq);
  kq.host = "localhost";
  ntsntp_uv_ntp_query_settings_default(&nq);
  nq.host = "localhost";
  ntsntp_uv_refclock_settings_default(&rc);
  ntsntp_uv_upstream_settings_default(&up);
  ntsntp_privsep_settings_default(&ps);

  NAMES_NULL(ntsntp_uv_ke_start(NULL, &ke, &k, err, errlen),
             ntsntp_uv_ke_start(NULL, &ke, &k, err, 64), "loop is NULL");
  NAMES_NULL(ntsntp_uv_ke_start(&loop, &ke, NULL, err, errlen),
             ntsntp_uv_ke_start(&loop, &ke, NULL, err, 64), "out is NULL");
  NAMES_NULL(
      ntsntp_uv_ke_query_start(NULL, &kq, ke_query_cb, NULL, NULL, err, errlen),
      ntsntp_uv_ke_query_start(NULL, &kq, ke_query_cb, NULL, NULL, err, 64),
      "loop is NULL");
  NAMES_NULL(
      ntsntp_uv_ke_query_start(&loop, &kq, NULL, NULL, NULL, err, errlen),
      ntsntp_uv_ke_query_start(&loop, &kq, NULL, NULL, NULL, err, 64),
      "callback is NULL");
  NAMES_NULL(
      ntsntp_uv_ntp_query_start(&loop, &nq, NULL, NULL, NULL, err, errlen),
      ntsntp_uv_ntp_query_start(&loop, &nq, NULL, NULL, NULL, err, 64),
      "callback is NULL");
  NAMES_NULL(ntsntp_uv_refclock_start(&loop, &rc, &r, err, errlen),
             ntsntp_uv_refclock_start(&loop, &rc, &r, err, 64),
             "settings.sync is NULL");
  NAMES_NULL(ntsntp_uv_upstream_start(&loop, &up, &u, err, errlen),
             ntsntp_uv_upstream_start(&loop, &up, &u, err, 64),
             "settings.server is NULL");
  NAMES_NULL(ntsntp_uv_upstream_start(&loop, &up, NULL, err, errlen),
             ntsntp_uv_upstream_start(&loop, &up, NULL, err, 64),
             "out is NULL");
  NAMES_NULL(ntsntp_privsep_start(&ps, NULL, err, errlen),
             ntsntp_privsep_start(&ps, NULL, err, 64), "out is NULL");
  NAMES_NULL(
      ntsntp_uv_service_conf_load(NULL, 1, argv, "ntsd", "1", err, errlen),
      ntsntp_uv_service_conf_load(NULL, 1, argv, "ntsd", "1", err, 64),
      "out is NULL");
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* The conversion itself, on a struct that grew: version 1 had a and b,
 * version 2 added c. */
typedef struct grown {
  int version;
  int a;
  double b;
  long c; /* version 2 */
} grown;
static void grown_fill(void *p) {
  grown *g = p;
  memset(g, 0, sizeof(*g));
  g->version = 2;
  g->a = 1;
  g->b = 2.5;
  g->c = 77;
}
static const size_t grown_sizes[2] = {NTSNTP__SIZE_THROUGH(grown, b),
                                      NTSNTP__SIZE_THROUGH(grown, c)};

START_TEST(test_old_version_converted) {
  /* A version-1 program's struct, with a guard where c would be. */
  struct {
    int version;
    int a;
    double b;
    unsigned char guard[sizeof(long)];
  } old;
  grown tmp;
  const grown *g;
  char err[256] = "";

  memset(&old, 0xee, sizeof(old));
  ntsntp__settings_default(&old, 1, &tmp, grown_fill, grown_sizes, 2);
  ck_assert_int_eq(old.version, 1);
  ck_assert_int_eq(old.a, 1);
  ck_assert(old.b == 2.5);
  ck_assert_uint_eq(old.guard[0], 0xee); /* the old struct ends before c */
  ck_assert_uint_eq(old.guard[sizeof(long) - 1], 0xee);

  old.a = 5;
  g = ntsntp__settings_latest(&old, &tmp, grown_fill, grown_sizes, 2, "grown",
                              err, sizeof(err));
  ck_assert_ptr_eq(g, &tmp);
  ck_assert_int_eq(g->version, 2);
  ck_assert_int_eq(g->a, 5);   /* the caller's value */
  ck_assert(g->b == 2.5);
  ck_assert_int_eq(g->c, 77);  /* the default, not the guard bytes */

  /* The latest version is used in place. */
  ntsntp__settings_default(&tmp, 2, &tmp, grown_fill, grown_sizes, 2);
  ck_assert_ptr_eq(ntsntp__settings_latest(&tmp, NULL, grown_fill,
                                           grown_sizes, 2, "grown", NULL, 0),
                   &tmp);
  /* Unknown: refused, and NULL settings too. */
  old.version = 3;
  ck_assert_ptr_null(ntsntp__settings_latest(&old, &tmp, grown_fill,
                                             grown_sizes, 2, "grown", err,
                                             sizeof(err)));
  ck_assert_msg(strstr(err, "grown settings") == NULL &&
                    strstr(err, "grown: version 3"),
                "%s", err);
  ck_assert_ptr_null(ntsntp__settings_latest(NULL, &tmp, grown_fill,
                                             grown_sizes, 2, "grown", err,
                                             sizeof(err)));
  ck_assert_str_eq(err, "grown: none given");
}
END_TEST

static Suite *settings_suite(void) {
  Suite *s = suite_create("settings");
  TCase *tc = tcase_create("versions");
  tcase_add_test(tc, test_defaults_stamp_version);
  tcase_add_test(tc, test_ratelimit_service_defaults);
  tcase_add_test(tc, test_unfilled_refused);
  tcase_add_test(tc, test_null_arguments_named);
  tcase_add_test(tc, test_old_version_converted);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run(settings_suite()); }
