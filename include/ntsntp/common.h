/*
 * libntsntp: common definitions shared by every module.
 *
 * Errors are negative ints.  Ranges:
 *   -1xx  malformed input (drop it)
 *   -2xx  authentication failure (a server answers with an NTS NAK)
 *   -3xx  state or usage error (the caller did something wrong, or must retry)
 *   <= -500 fatal (out of memory, crypto backend failure)
 */
#ifndef NTSNTP_COMMON_H
#define NTSNTP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BUILDING_NTSNTP)
#define NTSNTP_EXTERN __attribute__((visibility("default")))
#else
#define NTSNTP_EXTERN
#endif

#define NTSNTP_WARN_UNUSED __attribute__((warn_unused_result))

/* Byte writers return a length (>= 0) or a negative NTSNTP_ERR_*. */
typedef ptrdiff_t ntsntp_ssize;

enum {
  NTSNTP_OK = 0,
  /* -1xx: malformed input */
  NTSNTP_ERR_MALFORMED = -101,   /* generic parse failure */
  NTSNTP_ERR_TRUNCATED = -102,   /* input shorter than its structure says */
  NTSNTP_ERR_BAD_EF = -103,      /* bad extension field length/alignment */
  NTSNTP_ERR_BAD_VERSION = -104, /* NTP version not supported */
  NTSNTP_ERR_BAD_MODE = -105,    /* NTP mode not handled here */
  NTSNTP_ERR_BAD_RECORD = -106,  /* bad NTS-KE record */
  NTSNTP_ERR_TOO_LARGE = -107,   /* input larger than accepted */
  NTSNTP_ERR_UNSUPPORTED = -108, /* well-formed, but not supported */
  NTSNTP_ERR_BAD_KEYFILE = -109, /* key file syntax or version wrong */
  NTSNTP_ERR_BAD_CONFIG = -110,  /* configuration value invalid */
  /* -2xx: authentication */
  NTSNTP_ERR_AUTH = -201,        /* AEAD tag did not verify */
  NTSNTP_ERR_BAD_COOKIE = -202,  /* cookie malformed or did not open */
  NTSNTP_ERR_UNKNOWN_KEY = -203, /* cookie key id not in the key ring */
  NTSNTP_ERR_TLS = -204,         /* TLS handshake/peer failure */
  NTSNTP_ERR_NAK = -205,         /* server sent an NTS NAK */
  NTSNTP_ERR_KOD = -206,         /* server sent a Kiss-o'-Death */
  /* -3xx: state or usage */
  NTSNTP_ERR_INVALID_ARG = -301,
  NTSNTP_ERR_NOBUF = -302,     /* output buffer too small */
  NTSNTP_ERR_STATE = -303,     /* call not valid in this state */
  NTSNTP_ERR_AGAIN = -304,     /* need more input / try later */
  NTSNTP_ERR_TIMEOUT = -305,   /* deadline passed */
  NTSNTP_ERR_CLOSED = -306,    /* peer closed / session over */
  NTSNTP_ERR_NOT_FOUND = -307, /* lookup found nothing */
  /* <= -500: fatal */
  NTSNTP_ERR_NOMEM = -501,
  NTSNTP_ERR_CRYPTO = -502, /* crypto backend failure */
  NTSNTP_ERR_IO = -503      /* system call failed; errno is kept */
};

/*
 * Settings.  Every ntsntp_X_settings struct lives in the caller's memory,
 * so its layout is part of the ABI.  Its first member, |version|, is set
 * by its initialiser, a macro passing the version the program is built
 * with:
 *
 *   ntsntp_sync_settings s;
 *   ntsntp_sync_settings_default(&s);
 *   s.minpoll = 4;
 *   rv = ntsntp_sync_new(&sync, &s, errbuf, sizeof(errbuf));
 *
 * The library reads only the fields that existed at that version and
 * gives later ones their defaults, so a program built against older
 * headers keeps working with a newer library.  Fields are only ever added
 * at the end of a struct, and each addition raises NTSNTP_SETTINGS_VERSION.
 * Settings not filled by their initialiser (version 0, as after memset)
 * are refused with INVALID_ARG and an error text saying so.
 */
#define NTSNTP_SETTINGS_V1 1
#define NTSNTP_SETTINGS_VERSION NTSNTP_SETTINGS_V1

/* Returns a static English description of |err| (never NULL). */
NTSNTP_EXTERN const char *ntsntp_strerror(int err);

/* Returns the name of |err| as written in C, such as "NTSNTP_ERR_AUTH"
 * (never NULL; "NTSNTP_ERR_UNKNOWN" for a value that is no error code). */
NTSNTP_EXTERN const char *ntsntp_err_name(int err);

/* Returns non-zero if |err| is fatal (<= -500). */
NTSNTP_EXTERN int ntsntp_err_is_fatal(int err);

/*
 * The library actually loaded, which may be newer than the headers a
 * program was built with (NTSNTP_VERSION_NUM in version.h).
 */
typedef struct ntsntp_version_info {
  uint32_t version_num;    /* 0xMMmmpp: major, minor, patch */
  const char *version_str; /* "0.1.0" */
  int have_gcm_siv;        /* AEAD 30 (AES-128-GCM-SIV) available */
} ntsntp_version_info;

/*
 * Returns the loaded library's version, or NULL when it is older than
 * |least_version| (0xMMmmpp; 0 accepts any).
 */
NTSNTP_EXTERN const ntsntp_version_info *ntsntp_version(uint32_t least_version);

/*
 * Optional per-object allocator.  NULL means malloc/calloc/realloc/free.
 * |user| is passed back unchanged.
 */
typedef struct ntsntp_mem {
  void *user;
  void *(*malloc)(size_t size, void *user);
  void (*free)(void *ptr, void *user);
  void *(*calloc)(size_t nmemb, size_t size, void *user);
  void *(*realloc)(void *ptr, size_t size, void *user);
} ntsntp_mem;

/* The default allocator: libc's, or the one given to ntsntp_set_mem. */
NTSNTP_EXTERN const ntsntp_mem *ntsntp_mem_default(void);

/*
 * Replaces the library-wide allocator (NULL: back to libc).  It serves the
 * runtime's objects and buffers (the ntsntp_uv_* objects, reports freed
 * with ntsntp_free) and every core object whose settings name no |mem|.
 * Like libuv's uv_replace_allocator: call it before any other ntsntp_
 * function and never while objects of the library exist; |mem| must stay
 * valid.  GnuTLS, Nettle and libuv keep their own allocators.
 * Errors: INVALID_ARG (a member of |mem| is NULL).
 */
NTSNTP_EXTERN int ntsntp_set_mem(const ntsntp_mem *mem);

/* Frees a buffer the library returned for the caller to free (such as
 * ntsntp_uv_ctl_report's); NULL is fine. */
NTSNTP_EXTERN void ntsntp_free(void *p);

/*
 * Randomness callback: fill |buf| with |len| unpredictable bytes.
 * Returns 0 on success, non-zero on failure.
 */
typedef int (*ntsntp_rand_fn)(void *user, uint8_t *buf, size_t len);

/* Default randomness for keys: gnutls_rnd(GNUTLS_RND_KEY).  |user| is
 * ignored. */
NTSNTP_EXTERN int ntsntp_rand_default(void *user, uint8_t *buf, size_t len);

/* Randomness for nonces (unique, not secret): gnutls_rnd(GNUTLS_RND_NONCE),
 * a cheaper per-thread generator, drawn 512 bytes at a time into a
 * per-thread pool (emptied in a child after fork).  |user| is ignored. */
NTSNTP_EXTERN int ntsntp_rand_nonce(void *user, uint8_t *buf, size_t len);

/* Overwrite |len| bytes at |p| with zeros in a way the compiler keeps. */
NTSNTP_EXTERN void ntsntp_secure_clear(void *p, size_t len);

/* Constant-time comparison; returns 0 when equal. */
NTSNTP_EXTERN int ntsntp_ct_memcmp(const void *a, const void *b, size_t len);

/*
 * Log callback used by the runtime layer.  |level| is chrony's -L scale:
 * 0 informational, 1 warning, 2 non-fatal error, 3 fatal.  |msg| has no
 * trailing newline and lives only for the call.
 */
typedef void (*ntsntp_log_fn)(void *user, int level, const char *msg);

#define NTSNTP_LOG_INFO 0
#define NTSNTP_LOG_WARN 1
#define NTSNTP_LOG_ERR 2
#define NTSNTP_LOG_FATAL 3

/* AEAD algorithm identifiers (IANA "AEAD Algorithms" registry). */
#define NTSNTP_AEAD_AES_SIV_CMAC_256 15
#define NTSNTP_AEAD_AES_SIV_CMAC_384 16
#define NTSNTP_AEAD_AES_SIV_CMAC_512 17
#define NTSNTP_AEAD_AES_128_GCM_SIV 30

/* Largest C2S/S2C key (AES-SIV-CMAC-512). */
#define NTSNTP_MAX_KEY_LEN 64

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_COMMON_H */
