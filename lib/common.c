/* libntsntp: errors, allocator, randomness and secret hygiene. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "errtext.h"
#include "settings.h"
#include "ntsntp/common.h"
#include "ntsntp/version.h"

const char *ntsntp_strerror(int err) {
  switch (err) {
  case NTSNTP_OK: return "success";
  case NTSNTP_ERR_MALFORMED: return "malformed input";
  case NTSNTP_ERR_TRUNCATED: return "truncated input";
  case NTSNTP_ERR_BAD_EF: return "bad extension field";
  case NTSNTP_ERR_BAD_VERSION: return "unsupported NTP version";
  case NTSNTP_ERR_BAD_MODE: return "unexpected NTP mode";
  case NTSNTP_ERR_BAD_RECORD: return "bad NTS-KE record";
  case NTSNTP_ERR_TOO_LARGE: return "input too large";
  case NTSNTP_ERR_UNSUPPORTED: return "not supported";
  case NTSNTP_ERR_BAD_KEYFILE: return "bad key file";
  case NTSNTP_ERR_BAD_CONFIG: return "bad configuration";
  case NTSNTP_ERR_AUTH: return "authentication failed";
  case NTSNTP_ERR_BAD_COOKIE: return "bad cookie";
  case NTSNTP_ERR_UNKNOWN_KEY: return "unknown cookie key";
  case NTSNTP_ERR_TLS: return "TLS failure";
  case NTSNTP_ERR_NAK: return "NTS NAK received";
  case NTSNTP_ERR_KOD: return "Kiss-o'-Death received";
  case NTSNTP_ERR_INVALID_ARG: return "invalid argument";
  case NTSNTP_ERR_NOBUF: return "output buffer too small";
  case NTSNTP_ERR_STATE: return "invalid state";
  case NTSNTP_ERR_AGAIN: return "try again";
  case NTSNTP_ERR_TIMEOUT: return "timed out";
  case NTSNTP_ERR_CLOSED: return "closed";
  case NTSNTP_ERR_NOT_FOUND: return "not found";
  case NTSNTP_ERR_NOMEM: return "out of memory";
  case NTSNTP_ERR_CRYPTO: return "crypto backend failure";
  case NTSNTP_ERR_IO: return "I/O error";
  default: return "unknown error";
  }
}

const char *ntsntp_err_name(int err) {
  switch (err) {
#define NAME(e) case NTSNTP_##e: return "NTSNTP_" #e
  NAME(OK);
  NAME(ERR_MALFORMED);
  NAME(ERR_TRUNCATED);
  NAME(ERR_BAD_EF);
  NAME(ERR_BAD_VERSION);
  NAME(ERR_BAD_MODE);
  NAME(ERR_BAD_RECORD);
  NAME(ERR_TOO_LARGE);
  NAME(ERR_UNSUPPORTED);
  NAME(ERR_BAD_KEYFILE);
  NAME(ERR_BAD_CONFIG);
  NAME(ERR_AUTH);
  NAME(ERR_BAD_COOKIE);
  NAME(ERR_UNKNOWN_KEY);
  NAME(ERR_TLS);
  NAME(ERR_NAK);
  NAME(ERR_KOD);
  NAME(ERR_INVALID_ARG);
  NAME(ERR_NOBUF);
  NAME(ERR_STATE);
  NAME(ERR_AGAIN);
  NAME(ERR_TIMEOUT);
  NAME(ERR_CLOSED);
  NAME(ERR_NOT_FOUND);
  NAME(ERR_NOMEM);
  NAME(ERR_CRYPTO);
  NAME(ERR_IO);
#undef NAME
  default: return "NTSNTP_ERR_UNKNOWN";
  }
}

int ntsntp_err_is_fatal(int err) { return err <= -500; }


const ntsntp_version_info *ntsntp_version(uint32_t least_version) {
  static const ntsntp_version_info info = {NTSNTP_VERSION_NUM, NTSNTP_VERSION,
                                           NTSNTP_HAVE_GCM_SIV};
  return least_version > info.version_num ? NULL : &info;
}

static void *d_malloc(size_t n, void *u) { (void)u; return malloc(n); }
static void d_free(void *p, void *u) { (void)u; free(p); }
static void *d_calloc(size_t a, size_t b, void *u) { (void)u; return calloc(a, b); }
static void *d_realloc(void *p, size_t n, void *u) { (void)u; return realloc(p, n); }

static const ntsntp_mem libc_mem = {NULL, d_malloc, d_free, d_calloc, d_realloc};
static const ntsntp_mem *default_mem = &libc_mem;

const ntsntp_mem *ntsntp_mem_default(void) { return default_mem; }

int ntsntp_set_mem(const ntsntp_mem *mem) {
  if (mem != NULL && (mem->malloc == NULL || mem->free == NULL ||
                      mem->calloc == NULL || mem->realloc == NULL))
    return NTSNTP_ERR_INVALID_ARG;
  default_mem = mem != NULL ? mem : &libc_mem;
  return 0;
}

void ntsntp_free(void *p) {
  if (p != NULL)
    default_mem->free(p, default_mem->user);
}

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
int ntsntp_rand_nonce(void *user, uint8_t *buf, size_t len) {
  return ntsntp_rand_default(user, buf, len);
}

/* Deterministic randomness so fuzz runs are reproducible. */
int ntsntp_rand_default(void *user, uint8_t *buf, size_t len) {
  static uint64_t state = 0x9e3779b97f4a7c15ULL;
  size_t i;
  (void)user;
  for (i = 0; i < len; i++) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    buf[i] = (uint8_t)(state >> 56);
  }
  return 0;
}
#else
int ntsntp_rand_default(void *user, uint8_t *buf, size_t len) {
  (void)user;
  return gnutls_rnd(GNUTLS_RND_KEY, buf, len) == 0 ? 0 : -1;
}

/* Nonces are drawn twice per NTS response, 16 bytes at a time, and a call
 * into GnuTLS costs about as much for 16 bytes as for 512 (a ChaCha block
 * and a re-key each).  So each thread keeps a pool, refilled 512 bytes at
 * a time from the same generator.  A child after fork() must not hand out
 * its parent's nonces again: the fork handler empties the pool of the one
 * thread a child has. */
#define NONCE_POOL 512
static _Thread_local struct {
  uint8_t b[NONCE_POOL];
  size_t left;
} pool;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forked(void) {
  ntsntp_secure_clear(&pool, sizeof(pool));
}

static void pool_init(void) {
  (void)pthread_atfork(NULL, NULL, pool_forked);
}

int ntsntp_rand_nonce(void *user, uint8_t *buf, size_t len) {
  (void)user;
  if (len > NONCE_POOL / 8)
    return gnutls_rnd(GNUTLS_RND_NONCE, buf, len) == 0 ? 0 : -1;
  if (pool.left < len) {
    pthread_once(&pool_once, pool_init);
    if (gnutls_rnd(GNUTLS_RND_NONCE, pool.b, sizeof(pool.b)) != 0)
      return -1;
    pool.left = sizeof(pool.b);
  }
  /* Taken from the end, and wiped: a nonce is handed out once. */
  pool.left -= len;
  memcpy(buf, pool.b + pool.left, len);
  memset(pool.b + pool.left, 0, len);
  return 0;
}
#endif

void ntsntp_secure_clear(void *p, size_t len) {
  if (p && len)
    gnutls_memset(p, 0, len);
}

int ntsntp_ct_memcmp(const void *a, const void *b, size_t len) {
  const volatile uint8_t *x = a, *y = b;
  uint8_t d = 0;
  size_t i;
  for (i = 0; i < len; i++)
    d |= x[i] ^ y[i];
  return d != 0;
}

void ntsntp__verrf(char *buf, size_t len, const char *fmt, va_list ap) {
  if (buf != NULL && len != 0)
    vsnprintf(buf, len, fmt, ap);
}

void ntsntp__errf(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ntsntp__verrf(buf, len, fmt, ap);
  va_end(ap);
}

const void *ntsntp__settings_latest(const void *s, void *tmp,
                                    void (*fill)(void *), const size_t *sizes,
                                    int nsizes, const char *what,
                                    char *errbuf, size_t errlen) {
  int version;
  if (s == NULL) {
    ntsntp__errf(errbuf, errlen, "%s: none given", what);
    return NULL;
  }
  memcpy(&version, s, sizeof(version));
  if (version == nsizes)
    return s;
  if (version < 1 || version > nsizes) {
    ntsntp__errf(errbuf, errlen,
                 "%s: version %d is unknown to this library (it knows 1 to "
                 "%d): fill them with their _settings_default() first, and "
                 "build against this library's headers",
                 what, version, nsizes);
    return NULL;
  }
  fill(tmp);
  memcpy(tmp, s, sizes[version - 1]);
  memcpy(tmp, &nsizes, sizeof(nsizes));
  return tmp;
}

void ntsntp__settings_default(void *s, int version, void *tmp,
                              void (*fill)(void *), const size_t *sizes,
                              int nsizes) {
  if (version >= 1 && version <= nsizes) {
    fill(tmp);
    memcpy(s, tmp, sizes[version - 1]);
  }
  memcpy(s, &version, sizeof(version));
}
