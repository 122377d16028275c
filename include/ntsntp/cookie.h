/*
 * libntsntp: NTS cookies and the server's master key ring.
 *
 * Cookie layout (all big-endian):
 *   key_id (4) | nonce (16) | AEAD_master(aead_id (2) | zero (2) | C2S | S2C)
 * sealed with AES-SIV-CMAC-256 under the master key named by key_id, with an
 * empty associated data.  The length depends only on the negotiated AEAD
 * (ntsntp_cookie_len), never on the master key, so it stays constant across
 * rotations: AEAD 15 -> 104 bytes, 17 -> 168, 30 -> 72.
 *
 * Key ring: the current key, up to |nkeys|-2 older keys still accepted, and
 * the next key generated ahead; all are accepted by ntsntp_cookie_open, only
 * the current one seals.  Keys belong to rotation epochs
 * e = floor(now / rotate_interval), so every instance rotates at the same
 * wall-clock instants; at epoch e the ring holds e-(nkeys-2) .. e+1.
 * Lookup is by key_id % NTSNTP_KEYRING_SLOTS with an exact id match; the
 * ring gives the keys it holds distinct slots.
 *
 * Threads: ntsntp_cookie_seal, ntsntp_cookie_open, _current_id and
 * _next_rotation may be called from any number of threads concurrently with
 * ONE writer thread calling ntsntp_keyring_update/_load/_load_ex.  The
 * writer publishes a new immutable key set with an atomic pointer swap and
 * never locks readers out.  A replaced set is freed at the following swap,
 * so the writer must not change the ring twice within a time any reader
 * could stay inside one seal/open call (microseconds): rotations are at
 * least a second apart, load is for start-up.  The rand callback is called
 * from all sealing threads and must be thread-safe.
 *
 * With a shared secret (issue "scale-out"), key material and key ids are
 * derived from the secret and the epoch, so every instance with the same
 * secret derives the same keys without talking to the others:
 *   prk    = HKDF-Extract(salt = "ntsntp cookie key v1", ikm = secret)
 *   key(e) = HKDF-Expand(prk, info = be64(e), 32)            (HMAC-SHA256)
 *   id(e)  = first 4 bytes of HKDF-Expand(prk, "id" || be64(e), 4), with
 *            the low log2(SLOTS) bits replaced by e mod SLOTS so that
 *            consecutive epochs never share a lookup slot.
 * Because the ring accepts e+1 and e-1 as well, instances whose clocks
 * straddle a rotation boundary still open each other's cookies.
 *
 * Key file text (ntsntp_keyring_save/_load), every line ending in '\n':
 *   NTSNTP-KEYS 1
 *   interval <rotate_interval, decimal>
 *   epoch <epoch of the current key, decimal>
 *   <id: 8 hex> <key: 64 hex>      current key (epoch e)
 *   <id: 8 hex> <key: 64 hex>      next key (e+1)
 *   <id: 8 hex> <key: 64 hex>      older keys, newest first (e-1, e-2, ...)
 * 2..NTSNTP_KEYRING_SLOTS key lines; nothing else is accepted.
 */
#ifndef NTSNTP_COOKIE_H
#define NTSNTP_COOKIE_H

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_COOKIE_NONCE_LEN 16
#define NTSNTP_COOKIE_MAX_LEN 168
#define NTSNTP_KEYRING_SLOTS 8

typedef struct ntsntp_keyring ntsntp_keyring;

typedef struct ntsntp_keyring_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* Seconds between rotations.  Default 604800 (one week, as chrony). */
  uint32_t rotate_interval;
  /* Keys kept: current + older accepted + next.  Default 4, max SLOTS. */
  unsigned nkeys;
  /* Randomness for keys and nonces.  Default ntsntp_rand_default. */
  ntsntp_rand_fn rand;
  void *rand_user;
  /* Optional shared master secret (>= 32 bytes): deterministic epochs. */
  const uint8_t *secret;
  size_t secret_len;
  /* Optional allocator. */
  const ntsntp_mem *mem;
} ntsntp_keyring_settings;

NTSNTP_EXTERN void
ntsntp_keyring_settings_default_versioned(int version,
                                          ntsntp_keyring_settings *s);
#define ntsntp_keyring_settings_default(S)                                     \
  ntsntp_keyring_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Creates a key ring with fresh keys for time |now| (Unix seconds, >= 0).
 * |s| NULL means the defaults.  The secret, if any, is not kept: only its
 * HKDF-Extract output is.
 * Errors: INVALID_ARG (rotate_interval < 1, nkeys outside 2..SLOTS, secret
 * shorter than 32 bytes, now < 0), NOMEM, CRYPTO (rand failed).
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure.
 */
NTSNTP_EXTERN int ntsntp_keyring_new(ntsntp_keyring **pkr,
                                     const ntsntp_keyring_settings *s,
                                     int64_t now, char *errbuf, size_t errlen);

/* Frees the ring, wiping all key material.  NULL is allowed. */
NTSNTP_EXTERN void ntsntp_keyring_del(ntsntp_keyring *kr);

/*
 * Moves the ring to the epoch of |now|.  Returns 1 when the ring changed
 * (exactly when |now| is in another epoch than the ring's current one; the
 * caller should save it), 0 when not.  A clock step back moves the ring
 * back too; keys still inside the new window survive.  Writer thread only.
 * Workers in ntsntp_cookie_open/_seal at the time of the change keep using
 * the keys they loaded: those stay in memory for 2 s of |now| (the grace
 * period) after the change, whatever changes follow.
 * Errors: INVALID_ARG (now < 0), NOMEM, CRYPTO (rand failed), AGAIN (more
 * than 8 changes within 2 s); the ring is unchanged and the caller may
 * retry.
 */
NTSNTP_EXTERN int ntsntp_keyring_update(ntsntp_keyring *kr, int64_t now);

/* Unix time of the next scheduled rotation. */
NTSNTP_EXTERN int64_t ntsntp_keyring_next_rotation(const ntsntp_keyring *kr);

/* Key id of the current key (the one new cookies are sealed with). */
NTSNTP_EXTERN uint32_t ntsntp_keyring_current_id(const ntsntp_keyring *kr);

/*
 * Serialises the ring into the versioned key file text described above.
 * Returns the length, or NOBUF (|out| is wiped) or INVALID_ARG.  The output
 * holds secrets: callers write it 0600 and wipe their buffer.  4096 bytes
 * always suffice.  See ntsntp_keyfile_save (keyfile.h) for the file I/O.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_keyring_save(const ntsntp_keyring *kr,
                                               uint8_t *out, size_t outlen);

/*
 * Replaces the ring's keys with those in |in| (from ntsntp_keyring_save),
 * then rotates as |now| requires (keys outside the new window are dropped,
 * missing ones generated).  If the file's interval differs from the ring's,
 * its keys keep their order and are relabelled from the instant
 * epoch * interval.  A shared-secret ring only validates |in|: its keys are
 * derived again.  Writer thread only; parsed key copies are wiped.  The
 * keys it replaces stay readable for 2 s, as with ntsntp_keyring_update.
 * Errors (the ring is unchanged): AGAIN (as ntsntp_keyring_update),
 * BAD_KEYFILE (bad magic or version,
 * missing or malformed line, bad hex, wrong length, duplicate id or lookup
 * slot, fewer than 2 or more than SLOTS keys, trailing garbage, missing
 * final newline), INVALID_ARG (now < 0), NOMEM, CRYPTO.
 */
NTSNTP_EXTERN int ntsntp_keyring_load(ntsntp_keyring *kr, const uint8_t *in,
                                      size_t len,
                                      int64_t now) NTSNTP_WARN_UNUSED;

/*
 * As ntsntp_keyring_load, and on BAD_KEYFILE writes a one-line English
 * reason ("line 4: invalid hex digit") to |why| (|whylen| bytes, NUL
 * terminated; may be NULL).  On success |why| is "".
 */
NTSNTP_EXTERN int ntsntp_keyring_load_ex(ntsntp_keyring *kr, const uint8_t *in,
                                         size_t len, int64_t now, char *why,
                                         size_t whylen) NTSNTP_WARN_UNUSED;

/* Cookie length for |aead|, or 0 if the AEAD is not supported. */
NTSNTP_EXTERN size_t ntsntp_cookie_len(int aead);

/* Key length (C2S and S2C each) for |aead|, or 0 if not supported. */
NTSNTP_EXTERN size_t ntsntp_aead_key_len(int aead);

/* Non-zero if this build supports |aead|. */
NTSNTP_EXTERN int ntsntp_aead_supported(int aead);

/*
 * Seals a cookie holding |c2s| and |s2c| (each ntsntp_aead_key_len(aead)
 * bytes) under the current master key, with a fresh nonce from the ring's
 * rand callback.  Returns the cookie length (ntsntp_cookie_len(aead)).
 * Errors: INVALID_ARG (aead unsupported, NULL argument), NOBUF (|outlen| too
 * small), CRYPTO (rand failed).
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_cookie_seal(const ntsntp_keyring *kr,
                                              int aead, const uint8_t *c2s,
                                              const uint8_t *s2c,
                                              uint8_t *out, size_t outlen);

/*
 * Opens a cookie.  On success fills |*aead| and writes the keys into |c2s|
 * and |s2c| (each NTSNTP_MAX_KEY_LEN bytes of room) and returns 0.
 * Errors: BAD_COOKIE (length not that of a supported AEAD, tag wrong, or
 * the AEAD id inside does not match the length), UNKNOWN_KEY (no such key
 * id: rotated out or from another server; a server answers both with a NAK
 * so the client runs NTS-KE again), INVALID_ARG (NULL argument).  The
 * outputs are untouched on error.  Constant-time with respect to the key
 * material.
 */
NTSNTP_EXTERN int ntsntp_cookie_open(const ntsntp_keyring *kr,
                                     const uint8_t *cookie, size_t len,
                                     int *aead, uint8_t *c2s,
                                     uint8_t *s2c) NTSNTP_WARN_UNUSED;

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_COOKIE_H */
