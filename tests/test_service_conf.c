/* ntsd's configuration contract in the library (service_conf.h). */
#include <check.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ntsntp/service_conf.h"
#include "testutil.h"

/* Every setting is cleared first, so the caller's environment (an
 * operator's NTP_PORT, say) does not leak in. */
static void clean_env(void) {
  size_t i, n;
  const ntsntp_conf_opt *o = ntsntp_uv_service_conf_options(&n);
  for (i = 0; i < n; i++)
    unsetenv(o[i].name);
}

static char *argv0[] = {"mysrv", NULL};

static ntsntp_uv_service_conf *load(int argc, char **argv) {
  ntsntp_uv_service_conf *c = NULL;
  char err[1024];
  int rv = ntsntp_uv_service_conf_load(&c, argc, argv, "mysrv", "9.9", err,
                                       sizeof(err));
  if (rv)
    fprintf(stderr, "load: %s\n", err);
  ck_assert_int_eq(rv, 0);
  ck_assert_ptr_nonnull(c);
  return c;
}

static void get_is(const ntsntp_uv_service_conf *c, const char *name,
                   const char *want) {
  char buf[NTSNTP_CONF_STR_MAX];
  ck_assert_int_eq(ntsntp_uv_service_conf_get(c, name, buf, sizeof(buf)), 0);
  ck_assert_str_eq(buf, want);
}

/* stdout into a file for the duration of a capture. */
static int saved_fd = -1;
static char cap_path[64];

static void capture_begin(void) {
  int fd;
  snprintf(cap_path, sizeof(cap_path), "/tmp/ntsntp-svcconf-XXXXXX");
  fd = mkstemp(cap_path);
  ck_assert_int_ge(fd, 0);
  fflush(stdout);
  saved_fd = dup(1);
  ck_assert_int_eq(dup2(fd, 1), 1);
  close(fd);
}

static void capture_end(char *out, size_t len) {
  FILE *f;
  size_t n;
  fflush(stdout);
  ck_assert_int_eq(dup2(saved_fd, 1), 1);
  close(saved_fd);
  f = fopen(cap_path, "r");
  ck_assert_ptr_nonnull(f);
  n = fread(out, 1, len - 1, f);
  out[n] = 0;
  fclose(f);
  unlink(cap_path);
}

START_TEST(test_options) {
  size_t n = 0, i;
  int user = 0, seccomp = 0;
  const ntsntp_conf_opt *o = ntsntp_uv_service_conf_options(&n);
  ck_assert_ptr_nonnull(o);
  ck_assert_uint_gt(n, 30);
  ck_assert_str_eq(o[0].name, "CONFIG");
  for (i = 0; i < n; i++) {
    ck_assert_ptr_nonnull(o[i].help);
    user |= !strcmp(o[i].name, "NTSD_USER");
    seccomp |= !strcmp(o[i].name, "SECCOMP");
  }
  ck_assert(user && seccomp);
  ck_assert_ptr_eq(ntsntp_uv_service_conf_options(NULL), o);
}
END_TEST

START_TEST(test_load_good_and_get) {
  char *argv[] = {"mysrv", "--ntp-port=1234", "--seccomp", "--minpoll", "-3",
                  NULL};
  ntsntp_uv_service_conf *c;
  char small[4];
  clean_env();
  setenv("NTSD_USER", "timekeeper", 1);
  c = load(5, argv);
  get_is(c, "NTP_PORT", "1234");
  get_is(c, "ntsd_user", "timekeeper"); /* names are case-insensitive */
  get_is(c, "SECCOMP", "yes");
  get_is(c, "CLOCK_CONTROL", "no");
  get_is(c, "MINPOLL", "-3");
  get_is(c, "NTP_SERVERS", "time.cloudflare.com");
  get_is(c, "REFCLOCKS", "");
  /* Bad: no such setting, a buffer too short, missing arguments. */
  ck_assert_int_eq(ntsntp_uv_service_conf_get(c, "NO_SUCH", small,
                                              sizeof(small)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_str_eq(small, "");
  ck_assert_int_eq(ntsntp_uv_service_conf_get(c, "NTSD_USER", small,
                                              sizeof(small)),
                   NTSNTP_ERR_NOBUF);
  ck_assert_str_eq(small, "");
  ck_assert_int_eq(ntsntp_uv_service_conf_get(NULL, "NTSD_USER", small,
                                              sizeof(small)),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_uv_service_conf_del(c);
  ntsntp_uv_service_conf_del(NULL);
}
END_TEST

START_TEST(test_load_bad) {
  char *argv[] = {"mysrv", "--ntp-port=70000", NULL};
  char *stray[] = {"mysrv", "extra", NULL};
  char *version[] = {"mysrv", "--version", NULL};
  char err[1024], out[256];
  ntsntp_uv_service_conf *c = (ntsntp_uv_service_conf *)err;
  clean_env();
  ck_assert_int_eq(ntsntp_uv_service_conf_load(&c, 2, argv, "mysrv", "9.9",
                                               err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_null(c);
  ck_assert_str_eq(err, "command line --ntp-port: NTP_PORT=\"70000\" is not "
                        "valid; fix: use a whole number from 0 to 65535 (UDP "
                        "port for NTP (0: any free port))");
  ck_assert_int_eq(ntsntp_uv_service_conf_load(&c, 2, stray, "mysrv", "9.9",
                                               err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "unexpected argument \"extra\""));
  setenv("CONFIG", "/nonexistent/mysrv.conf", 1);
  ck_assert_int_eq(ntsntp_uv_service_conf_load(&c, 1, argv0, "mysrv", "9.9",
                                               err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_ptr_nonnull(strstr(err, "/nonexistent/mysrv.conf"));
  unsetenv("CONFIG");
  ck_assert_int_eq(ntsntp_uv_service_conf_load(NULL, 1, argv0, "mysrv", "9.9",
                                               err, sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_uv_service_conf_load(&c, 1, argv0, NULL, "9.9", err,
                                               sizeof(err)),
                   NTSNTP_ERR_INVALID_ARG);
  /* --version: printed, 1, nothing to free. */
  capture_begin();
  ck_assert_int_eq(ntsntp_uv_service_conf_load(&c, 2, version, "mysrv", "9.9",
                                               err, sizeof(err)),
                   1);
  capture_end(out, sizeof(out));
  ck_assert_ptr_null(c);
  ck_assert_str_eq(out, "mysrv 9.9\n");
}
END_TEST

START_TEST(test_settings_good) {
  ntsntp_uv_service_conf *c;
  ntsntp_uv_service_settings s;
  char err[256];
  clean_env();
  setenv("LISTEN", "127.0.0.1,::1", 1);
  setenv("NTP_SERVERS", "nts://a.example,pool://b.example:1123,c", 1);
  setenv("NTS_ROLE", "ke", 1);
  setenv("LEAPSECMODE", "slew", 1);
  setenv("LEAPSECLIST", "none", 1);
  setenv("MAXSOURCES", "7", 1);
  setenv("NTS_CERT", "a.pem,b.pem", 1);
  c = load(1, argv0);
  ck_assert_int_eq(ntsntp_uv_service_conf_settings(c, &s, err, sizeof(err)),
                   0);
  ck_assert_uint_eq(s.n_listen, 2);
  ck_assert_str_eq(s.listen[0], "127.0.0.1");
  ck_assert_str_eq(s.listen[1], "::1");
  ck_assert_uint_eq(s.n_servers, 3);
  ck_assert_str_eq(s.servers[1], "pool://b.example:1123");
  ck_assert_str_eq(s.cert, "a.pem,b.pem"); /* the service splits these */
  ck_assert_int_eq(s.role, NTSNTP_ROLE_KE);
  ck_assert_int_eq(s.leap_mode, NTSNTP_LEAP_MODE_SLEW);
  ck_assert_ptr_null(s.leapseclist);
  ck_assert_uint_eq(s.maxsources, 7);
  ck_assert_uint_eq(s.ntp_port, 123);
  ck_assert_uint_eq(s.ke_port, 4460);
  ck_assert_str_eq(s.state_dir, "/var/lib/ntsd");
  ck_assert_ptr_null(s.control_socket); /* empty: STATE_DIR/ntsd.sock */
  ck_assert_int_eq(s.ratelimit.enabled, 1);
  ck_assert_uint_eq(s.ratelimit.burst, 8);
  ck_assert_uint_eq(s.client_log_limit, 524288);
  ck_assert_ptr_eq(s.log, ntsntp_uv_service_conf_log);
  ck_assert_ptr_eq(s.log_user, c);
  ck_assert_ptr_null(s.reload_sources);
  ck_assert_ptr_null(s.privsep);
  ntsntp_uv_service_conf_del(c);

  /* LEAPSECLIST: another path is used as given, even when missing (the
   * service names it); the default only where the file exists. */
  setenv("LEAPSECLIST", "/nonexistent/leap-seconds.list", 1);
  unsetenv("LISTEN");
  c = load(1, argv0);
  ck_assert_int_eq(ntsntp_uv_service_conf_settings(c, &s, err, sizeof(err)),
                   0);
  ck_assert_str_eq(s.leapseclist, "/nonexistent/leap-seconds.list");
  ck_assert_uint_eq(s.n_listen, 0);
  ntsntp_uv_service_conf_del(c);
  unsetenv("LEAPSECLIST");
  c = load(1, argv0);
  ck_assert_int_eq(ntsntp_uv_service_conf_settings(c, &s, err, sizeof(err)),
                   0);
  if (access(NTSNTP_LEAP_DEFAULT_LIST, F_OK) == 0)
    ck_assert_str_eq(s.leapseclist, NTSNTP_LEAP_DEFAULT_LIST);
  else
    ck_assert_ptr_null(s.leapseclist);
  ntsntp_uv_service_conf_del(c);
}
END_TEST

static void settings_fail(const char *name, const char *value,
                          const char *want) {
  ntsntp_uv_service_conf *c;
  ntsntp_uv_service_settings s;
  char err[256];
  clean_env();
  setenv(name, value, 1);
  c = load(1, argv0);
  ck_assert_int_eq(ntsntp_uv_service_conf_settings(c, &s, err, sizeof(err)),
                   NTSNTP_ERR_BAD_CONFIG);
  ck_assert_str_eq(err, want);
  ntsntp_uv_service_conf_del(c);
}

START_TEST(test_settings_bad) {
  ntsntp_uv_service_settings s;
  settings_fail("LISTEN", "127.0.0.1, ::1",
                "LISTEN must be numeric addresses separated by commas, "
                "without spaces (at most 16)");
  settings_fail("NTP_SERVERS", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q",
                "NTP_SERVERS must be names or addresses separated by commas, "
                "without spaces (at most 16)");
  settings_fail("NTP_SERVERS", "a,,b",
                "NTP_SERVERS must be names or addresses separated by commas, "
                "without spaces (at most 16)");
  settings_fail("NTS_ROLE", "both", "NTS_ROLE must be all, ke or ntp");
  settings_fail("LEAPSECMODE", "smear",
                "LEAPSECMODE must be system, step or slew");
  ck_assert_int_eq(ntsntp_uv_service_conf_settings(NULL, &s, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_log) {
  ntsntp_uv_service_conf *c;
  char out[1024];
  regex_t re;
  clean_env();
  setenv("LOG_LEVEL", "1", 1);
  c = load(1, argv0);
  capture_begin();
  ntsntp_uv_service_conf_log(c, NTSNTP_LOG_INFO, "dropped below LOG_LEVEL");
  ntsntp_uv_service_conf_log(c, NTSNTP_LOG_WARN, "a warning");
  ntsntp_uv_service_conf_log(c, NTSNTP_LOG_FATAL, "fatal");
  ntsntp_uv_service_conf_log(NULL, NTSNTP_LOG_INFO, "no conf: all");
  capture_end(out, sizeof(out));
  ck_assert_int_eq(regcomp(&re,
                           "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                           "[0-9]{2}Z a warning\n"
                           "[0-9T:-]{19}Z fatal\n"
                           "[0-9T:-]{19}Z no conf: all\n$",
                           REG_EXTENDED),
                   0);
  if (regexec(&re, out, 0, NULL, 0))
    ck_abort_msg("log lines: %s", out);
  regfree(&re);
  ntsntp_uv_service_conf_del(c);
}
END_TEST

static void write_conf(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static int stopped;
static void on_stopped(void *user) {
  (void)user;
  stopped = 1;
}

START_TEST(test_reload) {
  char dir[] = "/tmp/ntsntp-svcconf-XXXXXX", path[128], cmd[160];
  char msg[2200], out[4096];
  ntsntp_uv_service_conf *c;
  ntsntp_uv_service_settings s;
  ntsntp_uv_service *svc;
  uv_loop_t loop;
  clean_env();
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/mysrv.conf", dir);
  write_conf(path, "NTP_SERVERS=127.127.1.1\nLISTEN=127.0.0.1\nNTP_PORT=0\n"
                   "CONTROL_SOCKET=none\nWORKERS=1\n");
  setenv("CONFIG", path, 1);
  setenv("STATE_DIR", dir, 1);
  c = load(1, argv0);
  ck_assert_int_eq(ntsntp_uv_service_conf_settings(c, &s, msg, sizeof(msg)),
                   0);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(ntsntp_uv_service_start(&loop, &s, &svc, msg, sizeof(msg)),
                   0);

  /* Good: MAXSOURCES applies at once, WORKERS needs a restart. */
  write_conf(path, "NTP_SERVERS=127.127.1.1\nLISTEN=127.0.0.1\nNTP_PORT=0\n"
                   "CONTROL_SOCKET=none\nWORKERS=2\nMAXSOURCES=2\n");
  capture_begin();
  ck_assert_int_eq(ntsntp_uv_service_conf_reload(c, svc, msg, sizeof(msg)), 0);
  capture_end(out, sizeof(out));
  ck_assert_str_eq(msg, "sources unchanged: the local clock alone");
  ck_assert_ptr_nonnull(strstr(out, "Z MAXSOURCES changed: applied\n"));
  ck_assert_ptr_nonnull(
      strstr(out, "Z WORKERS changed: restart mysrv to apply it\n"));
  get_is(c, "MAXSOURCES", "2");
  get_is(c, "WORKERS", "1");

  /* Bad: the file does not read; nothing changes. */
  write_conf(path, "MAXSOURCES=3\nNTP_PORT=70000\n");
  capture_begin();
  ck_assert_int_eq(ntsntp_uv_service_conf_reload(c, svc, msg, sizeof(msg)),
                   NTSNTP_ERR_BAD_CONFIG);
  capture_end(out, sizeof(out));
  ck_assert_ptr_nonnull(strstr(msg, "Configuration not reloaded: "));
  ck_assert_ptr_nonnull(strstr(msg, "mysrv.conf:2: NTP_PORT=\"70000\""));
  ck_assert_ptr_nonnull(strstr(out, msg));
  get_is(c, "MAXSOURCES", "2");

  /* Bad: NTP_SERVERS reads but does not split. */
  write_conf(path, "NTP_SERVERS=a,,b\nLISTEN=127.0.0.1\nNTP_PORT=0\n"
                   "CONTROL_SOCKET=none\nWORKERS=1\nMAXSOURCES=2\n");
  capture_begin();
  ck_assert_int_eq(ntsntp_uv_service_conf_reload(c, svc, msg, sizeof(msg)),
                   NTSNTP_ERR_BAD_CONFIG);
  capture_end(out, sizeof(out));
  ck_assert_str_eq(msg, "NTP_SERVERS not reloaded: names or addresses "
                        "separated by commas, without spaces (at most 16)");
  ck_assert_ptr_nonnull(strstr(out, msg));
  ck_assert_int_eq(ntsntp_uv_service_conf_reload(NULL, svc, msg, sizeof(msg)),
                   NTSNTP_ERR_INVALID_ARG);

  ntsntp_uv_service_stop(svc, on_stopped, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(stopped, 1);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ntsntp_uv_service_conf_del(c);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("service_conf");
  TCase *tc = tcase_create("service_conf");
  tcase_add_test(tc, test_options);
  tcase_add_test(tc, test_load_good_and_get);
  tcase_add_test(tc, test_load_bad);
  tcase_add_test(tc, test_settings_good);
  tcase_add_test(tc, test_settings_bad);
  tcase_add_test(tc, test_log);
  tcase_add_test(tc, test_reload);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
