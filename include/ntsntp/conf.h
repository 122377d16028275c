/*
 * libntsntp: configuration from a file, the environment and the command
 * line, driven by a table of options.
 *
 * Each option has one NAME (e.g. "NTP_PORT") used three ways:
 *   environment   NTP_PORT=123
 *   command line  --ntp-port=123  or  --ntp-port 123
 *   config file   NTP_PORT=123    (one per line; '#' starts a comment;
 *                 "NAME value" is accepted too; names are case-insensitive)
 * Later sources win: defaults < file < environment < command line.
 * Errors name where the bad value came from (file and line, environment
 * or command line), what is wrong and how to fix it.
 */
#ifndef NTSNTP_CONF_H
#define NTSNTP_CONF_H

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ntsntp_conf_type {
  NTSNTP_CONF_STR,  /* char[NTSNTP_CONF_STR_MAX] in the target struct */
  NTSNTP_CONF_UINT, /* unsigned long, within [min, max] */
  NTSNTP_CONF_BOOL, /* int: 1/0, yes/no, true/false, on/off */
  NTSNTP_CONF_INT,  /* long, within [(long)min, (long)max] */
  /* char[NTSNTP_CONF_STR_MAX], comma-separated entries: in the config
   * file each line of the setting adds an entry (REFCLOCKS, one line per
   * reference clock), and the name without its final S is accepted too
   * (chrony's "refclock SOCK ..." lines); the environment and the command
   * line give the whole list.  Its default must be empty. */
  NTSNTP_CONF_LIST
} ntsntp_conf_type;

#define NTSNTP_CONF_STR_MAX 1024

typedef struct ntsntp_conf_opt {
  const char *name;
  ntsntp_conf_type type;
  size_t offset; /* offsetof(target struct, field) */
  const char *def; /* default, as text (NULL: empty / 0) */
  unsigned long min, max;
  const char *help; /* one line, for --help and error hints */
} ntsntp_conf_opt;

/*
 * Fills |target| from the defaults, then the config file, environment and
 * |argv|.  The file is the one named by --config/NTSD_CONFIG-style option
 * |file_opt| (an option of type STR in |opts|, e.g. "CONFIG"), if set; a
 * file that was named but cannot be read, is not a regular file (a FIFO
 * must not block start-up or a reload) or is larger than 1 MiB is an
 * error.  Symbolic links to the file are followed.
 * Returns 0, 1 when --help or --version was handled (usage printed to
 * stdout with |prog| and |version|), or BAD_CONFIG with |err| set.
 */
NTSNTP_EXTERN int ntsntp_conf_load(const ntsntp_conf_opt *opts, size_t n,
                                   void *target, const char *file_opt,
                                   int argc, char **argv, const char *prog,
                                   const char *version, char *err,
                                   size_t errlen);

/* Called by ntsntp_conf_reload for each setting that changed. */
typedef void (*ntsntp_conf_change_fn)(void *user, const ntsntp_conf_opt *o,
                                      int applied);

/*
 * Reads the configuration again (as ntsntp_conf_load) into |next|, then
 * compares it with |cur|: a changed setting named in |live| (a NULL-ended
 * list) is copied into |cur| and reported with applied 1; any other change
 * is reported with applied 0 and |cur| keeps the running value.  On error
 * |cur| is untouched.  Returns the number of settings applied, or
 * BAD_CONFIG with |err| set.
 */
NTSNTP_EXTERN int ntsntp_conf_reload(const ntsntp_conf_opt *opts, size_t n,
                                     void *cur, void *next,
                                     const char *file_opt, int argc,
                                     char **argv, const char *const *live,
                                     ntsntp_conf_change_fn changed,
                                     void *user, char *err, size_t errlen);

/*
 * Splits a comma-separated list in place (no spaces allowed, as the
 * cturra/ntp image's NTP_SERVERS): commas become NULs and |items| point
 * into |list|.  Split a copy when the setting is compared later (as
 * ntsntp_conf_reload does).  Returns the count, or BAD_CONFIG when an item
 * is empty or holds whitespace, or there are more than |max|.
 */
NTSNTP_EXTERN int ntsntp_conf_split(char *list, char **items, size_t max);

/* An environment variable that another program reads (the image this one
 * replaces, say) and what to do instead. */
typedef struct ntsntp_conf_foreign_var {
  const char *name; /* e.g. "ENABLE_NTS" */
  const char *hint; /* one line: what to use instead */
} ntsntp_conf_foreign_var;

/*
 * Tells about settings that would otherwise be ignored in silence: for
 * each of |vars|[0..|n|) that is set in the environment (to any value,
 * even empty) and is not also an option in |opts| (which is in use),
 * calls |log|(|user|, NTSNTP_LOG_WARN, "NAME is set but PROG does not use
 * it: HINT"), names and hints cut to fit 1 KiB.  Reads the environment
 * only; call it from one thread at start-up.  Returns how many were set.
 */
NTSNTP_EXTERN size_t ntsntp_conf_foreign(const ntsntp_conf_opt *opts,
                                         size_t n_opts,
                                         const ntsntp_conf_foreign_var *vars,
                                         size_t n, const char *prog,
                                         ntsntp_log_fn log, void *user);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_CONF_H */
