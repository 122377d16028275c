/* libntsntp: table-driven configuration (file, environment, flags). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errtext.h"
#include "ntsntp/conf.h"

/* Bytes; a config file of every setting with comments is a few KiB. */
#define CONF_FILE_MAX (1024 * 1024)

static const ntsntp_conf_opt *find(const ntsntp_conf_opt *opts, size_t n,
                                   const char *name, size_t len) {
  size_t i;
  for (i = 0; i < n; i++)
    if (strlen(opts[i].name) == len && strncasecmp(opts[i].name, name, len) == 0)
      return &opts[i];
  /* A LIST's singular: REFCLOCK for REFCLOCKS. */
  for (i = 0; i < n; i++)
    if (opts[i].type == NTSNTP_CONF_LIST && strlen(opts[i].name) == len + 1 &&
        toupper((unsigned char)opts[i].name[len]) == 'S' &&
        strncasecmp(opts[i].name, name, len) == 0)
      return &opts[i];
  return NULL;
}

/* "--ntp-port" -> matches NTP_PORT. */
static const ntsntp_conf_opt *find_flag(const ntsntp_conf_opt *opts, size_t n,
                                        const char *flag, size_t len) {
  char name[128];
  size_t i;
  if (len >= sizeof(name))
    return NULL;
  for (i = 0; i < len; i++)
    name[i] = flag[i] == '-' ? '_' : flag[i];
  return find(opts, n, name, len);
}

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ntsntp__verrf(err, errlen, fmt, ap);
  va_end(ap);
  return NTSNTP_ERR_BAD_CONFIG;
}

static int set(const ntsntp_conf_opt *o, void *target, const char *val,
               const char *where, char *err, size_t errlen) {
  char *field = (char *)target + o->offset;
  switch (o->type) {
  case NTSNTP_CONF_STR:
  case NTSNTP_CONF_LIST:
    if (strlen(val) >= NTSNTP_CONF_STR_MAX)
      return fail(err, errlen, "%s: %s is too long (at most %d characters)",
                  where, o->name, NTSNTP_CONF_STR_MAX - 1);
    strcpy(field, val);
    return 0;
  case NTSNTP_CONF_UINT: {
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(val, &end, 10);
    if (!isdigit((unsigned char)val[0]) || *end || errno || v < o->min ||
        v > o->max)
      return fail(err, errlen,
                  "%s: %s=\"%s\" is not valid; fix: use a whole number from "
                  "%lu to %lu (%s)",
                  where, o->name, val, o->min, o->max, o->help);
    *(unsigned long *)(void *)field = v;
    return 0;
  }
  case NTSNTP_CONF_INT: {
    char *end;
    long v;
    errno = 0;
    v = strtol(val, &end, 10);
    if (!*val || *end || errno || v < (long)o->min || v > (long)o->max)
      return fail(err, errlen,
                  "%s: %s=\"%s\" is not valid; fix: use a whole number from "
                  "%ld to %ld (%s)",
                  where, o->name, val, (long)o->min, (long)o->max, o->help);
    *(long *)(void *)field = v;
    return 0;
  }
  case NTSNTP_CONF_BOOL:
    if (!strcasecmp(val, "1") || !strcasecmp(val, "yes") ||
        !strcasecmp(val, "true") || !strcasecmp(val, "on"))
      *(int *)(void *)field = 1;
    else if (!strcasecmp(val, "0") || !strcasecmp(val, "no") ||
             !strcasecmp(val, "false") || !strcasecmp(val, "off"))
      *(int *)(void *)field = 0;
    else
      return fail(err, errlen,
                  "%s: %s=\"%s\" is not valid; fix: use yes or no (%s)", where,
                  o->name, val, o->help);
    return 0;
  }
  return NTSNTP_ERR_INVALID_ARG;
}

static char *trim(char *s) {
  char *e;
  while (isspace((unsigned char)*s))
    s++;
  e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = 0;
  return s;
}

/* Opens the config file for reading: a regular file only, so that a FIFO
 * (or a device) cannot block start-up or a SIGHUP reload, which runs on
 * the loop that serves time.  Links are followed: the path is the
 * operator's (Kubernetes mounts ConfigMaps through links). */
static FILE *open_config(const char *path, char *err, size_t errlen) {
  struct stat st;
  FILE *f;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    fail(err, errlen,
         "cannot read config file %s: %s; fix: check the path and its "
         "permissions, or unset the CONFIG setting",
         path, strerror(errno));
    return NULL;
  }
  if (fstat(fd, &st) != 0) {
    fail(err, errlen, "cannot read config file %s: %s", path,
         strerror(errno));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    fail(err, errlen,
         "config file %s is not a regular file%s; fix: point the CONFIG "
         "setting at a regular file",
         path, S_ISFIFO(st.st_mode)  ? " (a FIFO)"
               : S_ISDIR(st.st_mode) ? " (a directory)"
                                     : "");
    close(fd);
    return NULL;
  }
  if (st.st_size > CONF_FILE_MAX) {
    fail(err, errlen,
         "config file %s is larger than %d bytes; fix: point the CONFIG "
         "setting at the real config file",
         path, CONF_FILE_MAX);
    close(fd);
    return NULL;
  }
  f = fdopen(fd, "r");
  if (!f) {
    fail(err, errlen, "cannot read config file %s: %s", path,
         strerror(errno));
    close(fd);
  }
  return f;
}

static int load_file(const ntsntp_conf_opt *opts, size_t n, void *target,
                     const char *path, char *err, size_t errlen) {
  char line[NTSNTP_CONF_STR_MAX + 128], where[512];
  unsigned lineno = 0;
  size_t total = 0;
  FILE *f = open_config(path, err, errlen);
  int rv = 0;
  if (!f)
    return NTSNTP_ERR_BAD_CONFIG;
  while (rv == 0 && fgets(line, sizeof(line), f)) {
    char *s, *key, *val, *hash;
    const ntsntp_conf_opt *o;
    size_t klen;
    lineno++;
    snprintf(where, sizeof(where), "%s:%u", path, lineno);
    total += strlen(line);
    if (total > CONF_FILE_MAX) { /* it grew since open_config */
      rv = fail(err, errlen, "%s: config file larger than %d bytes", where,
                CONF_FILE_MAX);
      break;
    }
    if (!strchr(line, '\n') && !feof(f)) {
      rv = fail(err, errlen, "%s: line too long", where);
      break;
    }
    hash = strchr(line, '#');
    if (hash)
      *hash = 0;
    s = trim(line);
    if (!*s)
      continue;
    key = s;
    klen = strcspn(s, "= \t");
    val = s + klen;
    val += strspn(val, " \t");
    if (*val == '=')
      val++;
    val = trim(val);
    /* Values may be quoted as in a shell env file. */
    if (strlen(val) >= 2 && (val[0] == '"' || val[0] == '\'') &&
        val[strlen(val) - 1] == val[0]) {
      val[strlen(val) - 1] = 0;
      val++;
    }
    o = find(opts, n, key, klen);
    if (!o) {
      rv = fail(err, errlen,
                "%s: unknown setting \"%.*s\"; fix: remove it or check the "
                "spelling (ntsd --help lists every setting)",
                where, (int)klen, key);
      break;
    }
    if (o->type == NTSNTP_CONF_LIST && *val &&
        *((char *)target + o->offset)) {
      /* One more entry: after the ones of the lines above. */
      char joined[NTSNTP_CONF_STR_MAX + 1];
      int len = snprintf(joined, sizeof(joined), "%s,%s",
                         (char *)target + o->offset, val);
      if (len < 0 || (size_t)len >= sizeof(joined)) {
        rv = fail(err, errlen, "%s: %s is too long with this line (at most "
                  "%d characters in all)", where, o->name,
                  NTSNTP_CONF_STR_MAX - 1);
        break;
      }
      rv = set(o, target, joined, where, err, errlen);
      continue;
    }
    rv = set(o, target, val, where, err, errlen);
  }
  fclose(f);
  return rv;
}

static void usage(const ntsntp_conf_opt *opts, size_t n, const char *prog,
                  const char *version) {
  size_t i, j;
  printf("%s %s\nUsage: %s [--SETTING=VALUE]...\n\n"
         "Every setting is an environment variable, a flag and a config-file "
         "key\n(later wins: defaults < CONFIG file < environment < "
         "flags).\n\n",
         prog, version, prog);
  for (i = 0; i < n; i++) {
    char flag[128];
    for (j = 0; opts[i].name[j] && j < sizeof(flag) - 1; j++)
      flag[j] = opts[i].name[j] == '_'
                    ? '-'
                    : (char)tolower((unsigned char)opts[i].name[j]);
    flag[j] = 0;
    printf("  %s, --%s\n      %s (default: %s)\n", opts[i].name, flag,
           opts[i].help,
           opts[i].def && *opts[i].def ? opts[i].def : "empty");
  }
}

int ntsntp_conf_load(const ntsntp_conf_opt *opts, size_t n, void *target,
                     const char *file_opt, int argc, char **argv,
                     const char *prog, const char *version, char *err,
                     size_t errlen) {
  const ntsntp_conf_opt *fo =
      file_opt ? find(opts, n, file_opt, strlen(file_opt)) : NULL;
  char where[160];
  size_t i;
  int a, rv, pass;

  for (i = 0; i < n; i++) {
    const char *def = opts[i].def;
    if (!def)
      def = opts[i].type == NTSNTP_CONF_STR || opts[i].type == NTSNTP_CONF_LIST
                ? ""
                : "0";
    rv = set(&opts[i], target, def, "built-in default", err, errlen);
    if (rv)
      return rv;
  }
  /* Pass 0 finds the config file name (env, then flags); pass 1 applies
   * the file, then the environment, then the flags. */
  for (pass = 0; pass < 2; pass++) {
    if (pass == 1 && fo && ((char *)target + fo->offset)[0]) {
      char path[NTSNTP_CONF_STR_MAX];
      strcpy(path, (char *)target + fo->offset);
      rv = load_file(opts, n, target, path, err, errlen);
      if (rv)
        return rv;
    }
    for (i = 0; i < n; i++) {
      const char *v = getenv(opts[i].name);
      if (!v || (pass == 0 && &opts[i] != fo))
        continue;
      snprintf(where, sizeof(where), "environment variable %s", opts[i].name);
      rv = set(&opts[i], target, v, where, err, errlen);
      if (rv)
        return rv;
    }
    for (a = 1; a < argc; a++) {
      const char *arg = argv[a], *eq, *val;
      const ntsntp_conf_opt *o;
      if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
        usage(opts, n, prog, version);
        return 1;
      }
      if (!strcmp(arg, "--version")) {
        printf("%s %s\n", prog, version);
        return 1;
      }
      if (strncmp(arg, "--", 2) != 0)
        return fail(err, errlen,
                    "command line: unexpected argument \"%s\"; fix: settings "
                    "are given as --name=value (see --help)",
                    arg);
      arg += 2;
      eq = strchr(arg, '=');
      o = find_flag(opts, n, arg, eq ? (size_t)(eq - arg) : strlen(arg));
      if (!o)
        return fail(err, errlen,
                    "command line: unknown option \"--%s\"; fix: see --help",
                    arg);
      if (eq)
        val = eq + 1;
      else if (o->type == NTSNTP_CONF_BOOL &&
               (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0))
        val = "yes";
      else if (a + 1 < argc)
        val = argv[++a];
      else
        return fail(err, errlen,
                    "command line: --%s needs a value; fix: --%s=VALUE", arg,
                    arg);
      if (pass == 0 && o != fo)
        continue;
      snprintf(where, sizeof(where), "command line --%.*s",
               (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg);
      rv = set(o, target, val, where, err, errlen);
      if (rv)
        return rv;
    }
  }
  return 0;
}

static size_t value_size(const ntsntp_conf_opt *o) {
  switch (o->type) {
  case NTSNTP_CONF_STR:
  case NTSNTP_CONF_LIST: return NTSNTP_CONF_STR_MAX;
  case NTSNTP_CONF_UINT: return sizeof(unsigned long);
  case NTSNTP_CONF_INT: return sizeof(long);
  case NTSNTP_CONF_BOOL: return sizeof(int);
  }
  return 0;
}

int ntsntp_conf_reload(const ntsntp_conf_opt *opts, size_t n, void *cur,
                       void *next, const char *file_opt, int argc,
                       char **argv, const char *const *live,
                       ntsntp_conf_change_fn changed, void *user, char *err,
                       size_t errlen) {
  size_t i, k;
  int applied = 0, rv;
  rv = ntsntp_conf_load(opts, n, next, file_opt, argc, argv, "", "", err,
                        errlen);
  if (rv)
    return rv < 0 ? rv : NTSNTP_ERR_BAD_CONFIG;
  for (i = 0; i < n; i++) {
    char *a = (char *)cur + opts[i].offset, *b = (char *)next + opts[i].offset;
    int is_live = 0;
    if (opts[i].type == NTSNTP_CONF_STR ? strcmp(a, b) == 0
                                        : memcmp(a, b, value_size(&opts[i])) == 0)
      continue;
    for (k = 0; live && live[k]; k++)
      is_live |= strcmp(live[k], opts[i].name) == 0;
    if (is_live) {
      memcpy(a, b, opts[i].type == NTSNTP_CONF_STR ? strlen(b) + 1
                                                   : value_size(&opts[i]));
      applied++;
    }
    if (changed)
      changed(user, &opts[i], is_live);
  }
  return applied;
}

int ntsntp_conf_split(char *list, char **items, size_t max) {
  size_t n = 0;
  char *p = list;
  if (!*list)
    return 0;
  for (;;) {
    char *c = strchr(p, ',');
    if (c)
      *c = 0;
    if (!*p || strpbrk(p, " \t\r\n"))
      return NTSNTP_ERR_BAD_CONFIG;
    if (n == max)
      return NTSNTP_ERR_BAD_CONFIG;
    items[n++] = p;
    if (!c)
      break;
    p = c + 1;
  }
  return (int)n;
}

size_t ntsntp_conf_foreign(const ntsntp_conf_opt *opts, size_t n_opts,
                           const ntsntp_conf_foreign_var *vars, size_t n,
                           const char *prog, ntsntp_log_fn log, void *user) {
  char msg[1024];
  size_t i, set = 0;
  for (i = 0; i < n; i++) {
    if (!vars[i].name || !getenv(vars[i].name) ||
        find(opts, n_opts, vars[i].name, strlen(vars[i].name)))
      continue;
    set++;
    if (!log)
      continue;
    snprintf(msg, sizeof(msg), "%.100s is set but %.50s does not use it: %s",
             vars[i].name, prog ? prog : "this program",
             vars[i].hint ? vars[i].hint : "remove it");
    log(user, NTSNTP_LOG_WARN, msg);
  }
  return set;
}
