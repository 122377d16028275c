/*
 * libntsntp runtime: ntsd's configuration contract, for any program that
 * runs ntsntp_uv_service.
 *
 * The settings ntsd documents (docs/configuration.md, ntsd --help): their
 * names as environment variables, --flags and CONFIG file keys (conf.h),
 * defaults, ranges and help; the conversion of their comma-separated lists
 * into ntsntp_uv_service_settings; the rule for LEAPSECLIST's default; a
 * reload that applies LOG_LEVEL, NTP_SERVERS, MAXSOURCES, LEAPSECLIST and
 * NTS_CA_FILE at once and says "X changed: restart PROG to apply it" for
 * the others; and log lines in chrony's style, filtered by LOG_LEVEL.  A
 * program built on it reads the same configuration as ntsd, with the same
 * errors naming the file and line, the problem and the fix.
 *
 *   ntsntp_uv_service_conf *conf;
 *   if (ntsntp_uv_service_conf_load(&conf, argc, argv, "mysrv", "1.0",
 *                                   err, sizeof(err)) ||
 *       ntsntp_uv_service_conf_settings(conf, &s, err, sizeof(err)))
 *     ...                      (1 from load: --help or --version printed)
 *   s.reload_sources = ...;   (a function calling conf_reload, see there)
 *   ntsntp_uv_service_start(loop, &s, &svc, err, sizeof(err));
 *
 * All calls from one thread (the loop's), except ntsntp_uv_service_conf_log.
 */
#ifndef NTSNTP_SERVICE_CONF_H
#define NTSNTP_SERVICE_CONF_H

#include "ntsntp/conf.h"
#include "ntsntp/service.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntsntp_uv_service_conf ntsntp_uv_service_conf;

/*
 * The options table (conf.h): every setting's name, type, default, range
 * and help, in --help's order; |*n| gets the count.  For listing them and
 * for ntsntp_conf_foreign; the offsets are into the library's own
 * structure, not for ntsntp_conf_load.
 */
NTSNTP_EXTERN const ntsntp_conf_opt *ntsntp_uv_service_conf_options(size_t *n);

/*
 * Reads the configuration: defaults < CONFIG file < environment < |argv|
 * (ntsntp_conf_load).  |argv| and its strings must stay valid until
 * ntsntp_uv_service_conf_del: a reload reads them again.  |prog| names the
 * program in --help, --version and the reload's "restart PROG" messages.
 * Returns 0 with |*out| set; 1 when --help or --version was printed
 * (stdout; |*out| NULL); BAD_CONFIG with |errbuf| naming where the bad
 * value came from and the fix; NOMEM; INVALID_ARG.
 */
NTSNTP_EXTERN int ntsntp_uv_service_conf_load(ntsntp_uv_service_conf **out,
                                              int argc, char **argv,
                                              const char *prog,
                                              const char *version,
                                              char *errbuf, size_t errlen);

/*
 * Initialises |s| with ntsntp_uv_service_settings_default and fills it
 * from |conf|: LISTEN and NTP_SERVERS split into lists, NTS_ROLE and
 * LEAPSECMODE parsed, LEAPSECLIST "none" or empty as no list and its
 * default only where that file exists (tzdata installed), CONTROL_SOCKET
 * empty as NULL, and log = ntsntp_uv_service_conf_log with log_user =
 * |conf|.  privsep and reload_sources stay NULL: see
 * ntsntp_uv_service_privsep (with NTSD_USER and SECCOMP, from
 * ntsntp_uv_service_conf_get) and ntsntp_uv_service_conf_reload.  The
 * strings and lists point into |conf|: keep it until the service stopped.
 * Returns 0, or BAD_CONFIG with |errbuf| saying which setting must be
 * what (|s| is then unspecified); INVALID_ARG.
 */
NTSNTP_EXTERN int
ntsntp_uv_service_conf_settings(ntsntp_uv_service_conf *conf,
                                ntsntp_uv_service_settings *s, char *errbuf,
                                size_t errlen);

/*
 * The running value of setting |name| (case-insensitive, e.g.
 * "NTSD_USER") as text, the way a CONFIG file writes it: numbers in
 * decimal, switches "yes" or "no".  Returns 0; INVALID_ARG for a name
 * that is no setting (|buf| empty); NOBUF when |len| is too short.
 */
NTSNTP_EXTERN int ntsntp_uv_service_conf_get(const ntsntp_uv_service_conf *conf,
                                             const char *name, char *buf,
                                             size_t len);

/*
 * Reads the configuration again (ntsntp_conf_reload; SIGHUP and `ntsctl
 * reload sources` in ntsd): LOG_LEVEL, NTP_SERVERS, MAXSOURCES,
 * LEAPSECLIST and NTS_CA_FILE apply at once ("X changed: applied" in the
 * log), any other change is logged as a warning "X changed: restart PROG
 * to apply it" and the running value kept.  Then hands the sources to
 * ntsntp_uv_service_reload_sources(|svc|).  |msg| gets one line for the
 * operator.  A service's reload_sources is typically
 *   int f(void *conf, char *msg, size_t len)
 *   { return ntsntp_uv_service_conf_reload(conf, svc, msg, len); }
 * with reload_user = |conf|.  Returns 0, BAD_CONFIG (the configuration
 * does not read, logged and in |msg|; nothing changed) or the errors of
 * ntsntp_uv_service_reload_sources; INVALID_ARG.
 */
NTSNTP_EXTERN int ntsntp_uv_service_conf_reload(ntsntp_uv_service_conf *conf,
                                                ntsntp_uv_service *svc,
                                                char *msg, size_t len);

/*
 * An ntsntp_log_fn (|user|: the conf) writing chrony's style to stdout,
 * one line each: "2026-12-05T10:00:00Z MESSAGE", UTC.  Messages below
 * the running LOG_LEVEL are dropped; |user| NULL prints all.
 * Thread-safe, as the service requires of its log.
 */
NTSNTP_EXTERN void ntsntp_uv_service_conf_log(void *user, int level,
                                              const char *msg);

/* Frees |conf| (NULL is fine), after the service using it stopped. */
NTSNTP_EXTERN void ntsntp_uv_service_conf_del(ntsntp_uv_service_conf *conf);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_SERVICE_CONF_H */
