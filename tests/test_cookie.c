/* Cookies, the master key ring, and its key file. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aead.h"
#include "ntsntp/cookie.h"
#include "ntsntp/keyfile.h"
#include "rd.h"
#include "testutil.h"

/* Deterministic and thread-safe (splitmix64 over an atomic counter). */
static _Atomic uint64_t rand_ctr = 1;
static atomic_int rand_fail;

static int test_rand(void *user, uint8_t *buf, size_t len) {
  (void)user;
  if (atomic_load(&rand_fail))
    return -1;
  while (len) {
    uint64_t z = atomic_fetch_add(&rand_ctr, 1) * 0x9e3779b97f4a7c15ULL;
    size_t n = len < 8 ? len : 8;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    memcpy(buf, &z, n);
    buf += n;
    len -= n;
  }
  return 0;
}

static const uint8_t secret_a[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                     11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                     22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t secret_b[32] = {1};

static ntsntp_keyring *ring(uint32_t interval, unsigned nkeys,
                            const uint8_t *secret, int64_t now) {
  ntsntp_keyring_settings s;
  ntsntp_keyring *kr = NULL;
  ntsntp_keyring_settings_default(&s);
  s.rotate_interval = interval;
  s.nkeys = nkeys;
  s.rand = test_rand;
  s.secret = secret;
  s.secret_len = secret ? 32 : 0;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, now, NULL, 0), 0);
  return kr;
}

static const int algs[] = {
    NTSNTP_AEAD_AES_SIV_CMAC_256,
    NTSNTP_AEAD_AES_SIV_CMAC_512,
#if NTSNTP_HAVE_GCM_SIV
    NTSNTP_AEAD_AES_128_GCM_SIV,
#endif
};
#define NALGS ((int)(sizeof(algs) / sizeof(algs[0])))

static void keys_for(int alg, uint8_t *c2s, uint8_t *s2c) {
  size_t i, kl = ntsntp_aead_key_len(alg);
  for (i = 0; i < kl; i++) {
    c2s[i] = (uint8_t)(i * 7 + 1);
    s2c[i] = (uint8_t)(i * 13 + 5);
  }
}

static ntsntp_ssize seal(const ntsntp_keyring *kr, int alg, uint8_t *out) {
  uint8_t c2s[64], s2c[64];
  keys_for(alg, c2s, s2c);
  return ntsntp_cookie_seal(kr, alg, c2s, s2c, out, NTSNTP_COOKIE_MAX_LEN);
}

/* Opens and, on success, checks the keys are the ones seal() used. */
static int open_check(const ntsntp_keyring *kr, const uint8_t *c, size_t len) {
  uint8_t c2s[64], s2c[64], w1[64], w2[64];
  int alg = -1, rv = ntsntp_cookie_open(kr, c, len, &alg, c2s, s2c);
  if (rv == 0) {
    size_t kl = ntsntp_aead_key_len(alg);
    ck_assert_uint_eq(ntsntp_cookie_len(alg), len);
    keys_for(alg, w1, w2);
    ck_assert_mem_eq(c2s, w1, kl);
    ck_assert_mem_eq(s2c, w2, kl);
  }
  return rv;
}

START_TEST(t_settings) {
  ntsntp_keyring_settings s;
  ntsntp_keyring *kr = (ntsntp_keyring *)1;
  uint8_t short_secret[31] = {0};

  ntsntp_keyring_settings_default(&s);
  ck_assert_uint_eq(s.rotate_interval, 604800);
  ck_assert_uint_eq(s.nkeys, 4);
  ck_assert_ptr_eq(s.rand, ntsntp_rand_default);
  ck_assert_ptr_null(s.secret);

  s.rotate_interval = 0;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_ptr_null(kr);
  s.rotate_interval = 1;
  s.nkeys = 1;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  s.nkeys = NTSNTP_KEYRING_SLOTS + 1;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  s.nkeys = NTSNTP_KEYRING_SLOTS;
  s.secret = short_secret;
  s.secret_len = sizeof(short_secret);
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  s.secret = NULL;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  s.secret_len = 0;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, -1, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_keyring_new(NULL, &s, 0, NULL, 0),
                   NTSNTP_ERR_INVALID_ARG);

  /* Defaults (real randomness) and the largest ring work. */
  ck_assert_int_eq(ntsntp_keyring_new(&kr, NULL, 1700000000, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_keyring_next_rotation(kr),
                   (1700000000 / 604800 + 1) * 604800LL);
  ntsntp_keyring_del(kr);
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 5, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, -1), NTSNTP_ERR_INVALID_ARG);
  ntsntp_keyring_del(kr);
  ntsntp_keyring_del(NULL);
}
END_TEST

START_TEST(t_roundtrip) {
  int alg = algs[_i];
  ntsntp_keyring *kr = ring(3600, 4, NULL, 100000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN], c2s[64], s2c[64];
  ntsntp_ssize n = seal(kr, alg, c);

  ck_assert_int_eq(n, (ntsntp_ssize)ntsntp_cookie_len(alg));
  ck_assert_uint_eq(ntsntp__get_u32(c), ntsntp_keyring_current_id(kr));
  ck_assert_int_eq(open_check(kr, c, (size_t)n), 0);

  keys_for(alg, c2s, s2c);
  ck_assert_int_eq(ntsntp_cookie_seal(kr, alg, c2s, s2c, c, (size_t)n - 1),
                   NTSNTP_ERR_NOBUF);
  ck_assert_int_eq(ntsntp_cookie_seal(kr, alg, c2s, s2c, c, (size_t)n), n);
  ck_assert_int_eq(ntsntp_cookie_seal(kr, alg, NULL, s2c, c, (size_t)n),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_cookie_seal(NULL, alg, c2s, s2c, c, (size_t)n),
                   NTSNTP_ERR_INVALID_ARG);
  /* Two seals of the same keys differ (fresh nonce). */
  {
    uint8_t d[NTSNTP_COOKIE_MAX_LEN];
    ck_assert_int_eq(seal(kr, alg, d), n);
    ck_assert(memcmp(c + 4, d + 4, (size_t)n - 4) != 0);
  }
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_lengths) {
  ntsntp_keyring *kr = ring(3600, 4, NULL, 100000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN], k[64] = {0};

  ck_assert_uint_eq(ntsntp_cookie_len(NTSNTP_AEAD_AES_SIV_CMAC_256), 104);
  ck_assert_uint_eq(ntsntp_cookie_len(NTSNTP_AEAD_AES_SIV_CMAC_512), 168);
  ck_assert_uint_eq(ntsntp_cookie_len(NTSNTP_AEAD_AES_128_GCM_SIV),
                    NTSNTP_HAVE_GCM_SIV ? 72 : 0);
  ck_assert_uint_eq(ntsntp_cookie_len(NTSNTP_AEAD_AES_SIV_CMAC_384), 0);
  ck_assert_uint_eq(ntsntp_cookie_len(0), 0);
  ck_assert_int_eq(
      ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_384, k, k, c, sizeof(c)),
      NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_cookie_seal(kr, 0, k, k, c, sizeof(c)),
                   NTSNTP_ERR_INVALID_ARG);
#if !NTSNTP_HAVE_GCM_SIV
  ck_assert_int_eq(
      ntsntp_cookie_seal(kr, NTSNTP_AEAD_AES_128_GCM_SIV, k, k, c, sizeof(c)),
      NTSNTP_ERR_INVALID_ARG);
#endif
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_constant_len_rotation) {
  ntsntp_keyring *kr = ring(100, 4, NULL, 1000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN];
  uint32_t ids[8];
  int64_t t;
  int i, j;

  for (i = 0, t = 1000; i < 8; i++, t += 100) {
    ck_assert_int_eq(ntsntp_keyring_update(kr, t), i == 0 ? 0 : 1);
    ids[i] = ntsntp_keyring_current_id(kr);
    for (j = 0; j < NALGS; j++)
      ck_assert_int_eq(seal(kr, algs[j], c),
                       (ntsntp_ssize)ntsntp_cookie_len(algs[j]));
    for (j = 0; j < i; j++)
      ck_assert_uint_ne(ids[i], ids[j]);
  }
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_update_boundaries) {
  ntsntp_keyring *kr = ring(100, 4, NULL, 1000);
  uint32_t id = ntsntp_keyring_current_id(kr);

  ck_assert_int_eq(ntsntp_keyring_next_rotation(kr), 1100);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1000), 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1099), 0);
  ck_assert_uint_eq(ntsntp_keyring_current_id(kr), id);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1100), 1);
  ck_assert_uint_ne(ntsntp_keyring_current_id(kr), id);
  ck_assert_int_eq(ntsntp_keyring_next_rotation(kr), 1200);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1100), 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1199), 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1200), 1);
  /* A jump of several epochs is one change. */
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1750), 1);
  ck_assert_int_eq(ntsntp_keyring_next_rotation(kr), 1800);
  /* A step back moves the ring back. */
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1650), 1);
  ck_assert_int_eq(ntsntp_keyring_next_rotation(kr), 1700);
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_rotation_accept) {
  /* nkeys 4: current, 2 older, next. */
  ntsntp_keyring *kr = ring(100, 4, NULL, 1000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN], old[NTSNTP_COOKIE_MAX_LEN];
  ntsntp_ssize n = seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c);
  ntsntp_ssize m;

  ck_assert_int_eq(ntsntp_keyring_update(kr, 1100), 1);
  ck_assert_int_eq(open_check(kr, c, (size_t)n), 0);
  m = seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_512, old);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1200), 1);
  ck_assert_int_eq(open_check(kr, c, (size_t)n), 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1300), 1);
  ck_assert_int_eq(open_check(kr, c, (size_t)n), NTSNTP_ERR_UNKNOWN_KEY);
  ck_assert_int_eq(open_check(kr, old, (size_t)m), 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1400), 1);
  ck_assert_int_eq(open_check(kr, old, (size_t)m), NTSNTP_ERR_UNKNOWN_KEY);
  ntsntp_keyring_del(kr);

  /* nkeys 2 keeps no older key at all. */
  kr = ring(100, 2, NULL, 1000);
  n = seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1100), 1);
  ck_assert_int_eq(open_check(kr, c, (size_t)n), NTSNTP_ERR_UNKNOWN_KEY);
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_tamper) {
  int alg = algs[_i];
  ntsntp_keyring *kr = ring(100, 4, NULL, 1000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN];
  ntsntp_ssize n = seal(kr, alg, c);
  int aead, rv;
  uint8_t k1[64], k2[64];
  ntsntp_ssize i;
  unsigned bit;

  for (i = 0; i < n; i++) {
    for (bit = 0; bit < 8; bit += 3) {
      c[i] ^= (uint8_t)(1u << bit);
      rv = ntsntp_cookie_open(kr, c, (size_t)n, &aead, k1, k2);
      if (i < 4)
        ck_assert(rv == NTSNTP_ERR_UNKNOWN_KEY || rv == NTSNTP_ERR_BAD_COOKIE);
      else
        ck_assert_int_eq(rv, NTSNTP_ERR_BAD_COOKIE);
      c[i] ^= (uint8_t)(1u << bit);
    }
  }
  ck_assert_int_eq(open_check(kr, c, (size_t)n), 0);
  ck_assert_int_eq(ntsntp_cookie_open(kr, NULL, (size_t)n, &aead, k1, k2),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp_cookie_open(kr, c, (size_t)n, NULL, k1, k2),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_truncation) {
  int alg = algs[_i];
  ntsntp_keyring *kr = ring(100, 4, NULL, 1000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN + 64];
  ntsntp_ssize n;
  size_t len;

  memset(c, 0x5a, sizeof(c));
  n = seal(kr, alg, c);
  for (len = 0; len < sizeof(c); len++) {
    int rv = open_check(kr, c, len);
    if (len == (size_t)n)
      ck_assert_int_eq(rv, 0);
    else
      ck_assert_int_eq(rv, NTSNTP_ERR_BAD_COOKIE);
  }
  ntsntp_keyring_del(kr);
}
END_TEST

/* Master key of the ring's current key, taken from its key file. */
static void current_master(const ntsntp_keyring *kr, uint8_t key[32]) {
  char text[4096];
  ntsntp_ssize n = ntsntp_keyring_save(kr, (uint8_t *)text, sizeof(text) - 1);
  char *line;
  ck_assert_int_gt(n, 0);
  text[n] = '\0';
  line = strchr(strchr(strchr(text, '\n') + 1, '\n') + 1, '\n') + 1;
  ck_assert_uint_eq(strtoul(line, NULL, 16), ntsntp_keyring_current_id(kr));
  line[9 + 64] = '\0';
  ck_assert_uint_eq(tu_unhex(line + 9, key, 32), 32);
}

START_TEST(t_layout_and_aead_mix) {
  ntsntp_keyring *kr = ring(100, 4, NULL, 1000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN], pt[NTSNTP_COOKIE_MAX_LEN], mk[32];
  uint8_t c2s[64], s2c[64], k1[64], k2[64];
  ntsntp__aead m;
  ntsntp_ssize n = seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c);
  int aead;

  /* Layout: key_id | nonce | SIV(master, nonce, no AD, 000f 0000 C2S S2C). */
  current_master(kr, mk);
  ck_assert_int_eq(
      ntsntp__aead_init(&m, NTSNTP_AEAD_AES_SIV_CMAC_256, mk, sizeof(mk)), 0);
  ck_assert_int_eq(n, 104);
  ck_assert_int_eq(
      ntsntp__aead_open(&m, c + 4, 16, NULL, 0, c + 20, (size_t)n - 20, pt), 0);
  keys_for(NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, s2c);
  ck_assert_uint_eq(ntsntp__get_u16(pt), 15);
  ck_assert_uint_eq(ntsntp__get_u16(pt + 2), 0);
  ck_assert_mem_eq(pt + 4, c2s, 32);
  ck_assert_mem_eq(pt + 36, s2c, 32);

  /* A validly sealed plaintext whose AEAD id disagrees with the length, or
   * whose reserved field is not zero, is refused. */
  ntsntp__put_u16(pt, NTSNTP_AEAD_AES_SIV_CMAC_512);
  ck_assert_int_eq(ntsntp__aead_seal(&m, c + 4, 16, NULL, 0, pt, 68, c + 20),
                   0);
  ck_assert_int_eq(ntsntp_cookie_open(kr, c, 104, &aead, k1, k2),
                   NTSNTP_ERR_BAD_COOKIE);
  ntsntp__put_u16(pt, NTSNTP_AEAD_AES_128_GCM_SIV);
  ck_assert_int_eq(ntsntp__aead_seal(&m, c + 4, 16, NULL, 0, pt, 68, c + 20),
                   0);
  ck_assert_int_eq(ntsntp_cookie_open(kr, c, 104, &aead, k1, k2),
                   NTSNTP_ERR_BAD_COOKIE);
  ntsntp__put_u16(pt, 15);
  ntsntp__put_u16(pt + 2, 1);
  ck_assert_int_eq(ntsntp__aead_seal(&m, c + 4, 16, NULL, 0, pt, 68, c + 20),
                   0);
  ck_assert_int_eq(ntsntp_cookie_open(kr, c, 104, &aead, k1, k2),
                   NTSNTP_ERR_BAD_COOKIE);
  ntsntp__put_u16(pt + 2, 0);
  ck_assert_int_eq(ntsntp__aead_seal(&m, c + 4, 16, NULL, 0, pt, 68, c + 20),
                   0);
  ck_assert_int_eq(open_check(kr, c, 104), 0);

  /* A 17 plaintext in a 72-byte cookie (the GCM-SIV length) is refused. */
  ntsntp__put_u16(pt, NTSNTP_AEAD_AES_SIV_CMAC_512);
  ck_assert_int_eq(ntsntp__aead_seal(&m, c + 4, 16, NULL, 0, pt, 36, c + 20),
                   0);
  ck_assert_int_eq(ntsntp_cookie_open(kr, c, 72, &aead, k1, k2),
                   NTSNTP_ERR_BAD_COOKIE);
  ntsntp__aead_clear(&m);
  ntsntp_keyring_del(kr);
}
END_TEST

START_TEST(t_save_load) {
  ntsntp_keyring *a = ring(100, 4, NULL, 1000);
  ntsntp_keyring *b = ring(100, 4, NULL, 1000);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN], old[NTSNTP_COOKIE_MAX_LEN];
  uint8_t t1[4096], t2[4096];
  ntsntp_ssize n1, n2, n, m;
  char why[128];

  n = seal(a, NTSNTP_AEAD_AES_SIV_CMAC_256, old);
  ck_assert_int_eq(ntsntp_keyring_update(a, 1100), 1);
  m = seal(a, NTSNTP_AEAD_AES_SIV_CMAC_512, c);
  n1 = ntsntp_keyring_save(a, t1, sizeof(t1));
  ck_assert_int_gt(n1, 0);
  ck_assert_int_eq(ntsntp_keyring_save(a, t2, (size_t)n1 - 1),
                   NTSNTP_ERR_NOBUF);
  ck_assert_int_eq(ntsntp_keyring_save(a, t2, (size_t)n1), n1);
  ck_assert_int_eq(ntsntp_keyring_save(a, NULL, 0), NTSNTP_ERR_INVALID_ARG);
  ck_assert_mem_eq(t1, "NTSNTP-KEYS 1\ninterval 100\nepoch 11\n", 36);
  ck_assert_int_eq(n1, 36 + 4 * 74);

  ck_assert_int_eq(open_check(b, c, (size_t)m), NTSNTP_ERR_UNKNOWN_KEY);
  ck_assert_int_eq(
      ntsntp_keyring_load_ex(b, t1, (size_t)n1, 1100, why, sizeof(why)), 0);
  ck_assert_str_eq(why, "");
  ck_assert_uint_eq(ntsntp_keyring_current_id(b), ntsntp_keyring_current_id(a));
  ck_assert_int_eq(open_check(b, c, (size_t)m), 0);
  ck_assert_int_eq(open_check(b, old, (size_t)n), 0);
  n2 = ntsntp_keyring_save(b, t2, sizeof(t2));
  ck_assert_int_eq(n2, n1);
  ck_assert_mem_eq(t1, t2, (size_t)n1);

  /* Loading later rotates: old keys age out on schedule. */
  ck_assert_int_eq(ntsntp_keyring_load(b, t1, (size_t)n1, 1250), 0);
  ck_assert_int_eq(ntsntp_keyring_next_rotation(b), 1300);
  ck_assert_int_eq(open_check(b, old, (size_t)n), 0);
  ck_assert_int_eq(open_check(b, c, (size_t)m), 0);
  ck_assert_int_eq(ntsntp_keyring_load(b, t1, (size_t)n1, 1300), 0);
  ck_assert_int_eq(open_check(b, old, (size_t)n), NTSNTP_ERR_UNKNOWN_KEY);
  ck_assert_int_eq(open_check(b, c, (size_t)m), 0);

  /* A ring of another interval relabels the keys but keeps them. */
  ntsntp_keyring_del(b);
  b = ring(50, 4, NULL, 1100);
  ck_assert_int_eq(ntsntp_keyring_load(b, t1, (size_t)n1, 1100), 0);
  ck_assert_int_eq(ntsntp_keyring_next_rotation(b), 1150);
  ck_assert_uint_eq(ntsntp_keyring_current_id(b), ntsntp_keyring_current_id(a));
  ck_assert_int_eq(open_check(b, c, (size_t)m), 0);

  /* A larger ring fills the older epochs; a smaller one drops them. */
  ntsntp_keyring_del(b);
  b = ring(100, 6, NULL, 1100);
  ck_assert_int_eq(ntsntp_keyring_load(b, t1, (size_t)n1, 1100), 0);
  ck_assert_int_eq(open_check(b, old, (size_t)n), 0);
  ck_assert_int_gt(ntsntp_keyring_save(b, t2, sizeof(t2)), n1);
  ntsntp_keyring_del(b);
  b = ring(100, 2, NULL, 1100);
  ck_assert_int_eq(ntsntp_keyring_load(b, t1, (size_t)n1, 1100), 0);
  ck_assert_int_eq(open_check(b, old, (size_t)n), NTSNTP_ERR_UNKNOWN_KEY);
  ck_assert_int_eq(open_check(b, c, (size_t)m), 0);
  ck_assert_int_eq(ntsntp_keyring_save(b, t2, sizeof(t2)), 36 + 2 * 74);

  ck_assert_int_eq(ntsntp_keyring_load(b, t1, (size_t)n1, -1),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp_keyring_del(a);
  ntsntp_keyring_del(b);
}
END_TEST

/* Builds a variant of |base| by replacing the first |from| with |to|. */
static size_t variant(const char *base, const char *from, const char *to,
                      char *out, size_t outlen) {
  const char *p = strstr(base, from);
  size_t n;
  ck_assert_ptr_nonnull(p);
  n = (size_t)snprintf(out, outlen, "%.*s%s%s", (int)(p - base), base, to,
                       p + strlen(from));
  ck_assert_uint_lt(n, outlen);
  return n;
}

static void expect_bad(ntsntp_keyring *kr, const char *text, size_t len,
                       const uint8_t *before, size_t blen) {
  uint8_t after[4096];
  char why[128];
  ntsntp_ssize n;
  ck_assert_int_eq(ntsntp_keyring_load_ex(kr, (const uint8_t *)text, len, 1100,
                                          why, sizeof(why)),
                   NTSNTP_ERR_BAD_KEYFILE);
  ck_assert_uint_gt(strlen(why), 0);
  n = ntsntp_keyring_save(kr, after, sizeof(after));
  ck_assert_int_eq(n, (ntsntp_ssize)blen);
  ck_assert_mem_eq(after, before, blen);
}

START_TEST(t_bad_keyfile) {
  ntsntp_keyring *a = ring(100, 4, NULL, 1100);
  ntsntp_keyring *b = ring(100, 4, NULL, 1100);
  char base[4096], v[4096], key1[80], key2[80];
  uint8_t before[4096];
  ntsntp_ssize bn, n = ntsntp_keyring_save(a, (uint8_t *)base, 4095);
  size_t len, vn;
  const char *p;
  int i, lines;

  ck_assert_int_gt(n, 0);
  base[n] = '\0';
  bn = ntsntp_keyring_save(b, before, sizeof(before));
  /* key lines 1 and 2 */
  p = strstr(base, "epoch 11\n") + 9;
  memcpy(key1, p, 74);
  key1[74] = '\0';
  memcpy(key2, p + 74, 74);
  key2[74] = '\0';

  static const char *const repl[][2] = {
      {"NTSNTP-KEYS 1\n", "NTSNTP-KEYS 2\n"},
      {"NTSNTP-KEYS 1\n", "NTSNTP-KEYS 10\n"},
      {"NTSNTP-KEYS 1\n", "NTSNTP-KEYS\n"},
      {"NTSNTP-KEYS 1\n", "NKS1\n"},
      {"NTSNTP-KEYS 1\n", "ntsntp-keys 1\n"},
      {"NTSNTP-KEYS 1\n", "NTSNTP-KEYS 1 \n"},
      {"NTSNTP-KEYS 1\n", "NTSNTP-KEYS 1\r\n"},
      {"NTSNTP-KEYS 1\n", ""},
      {"interval 100\n", ""},
      {"interval 100\n", "interval 0\n"},
      {"interval 100\n", "interval -100\n"},
      {"interval 100\n", "interval +100\n"},
      {"interval 100\n", "interval 100x\n"},
      {"interval 100\n", "interval  100\n"},
      {"interval 100\n", "interval\n"},
      {"interval 100\n", "interval 4294967296\n"},
      {"interval 100\n", "interval 99999999999999999999999\n"},
      {"interval 100\n", "epoch 11\n"},
      {"epoch 11\n", ""},
      {"epoch 11\n", "epoch -11\n"},
      {"epoch 11\n", "epoch 0x11\n"},
      {"epoch 11\n", "epoch 92233720368547759\n"}, /* *100 overflows */
      {"epoch 11\n", "epoch 11\n\n"},
      {"epoch 11\n", "epoch 11\n# comment\n"},
  };
  for (i = 0; i < (int)(sizeof(repl) / sizeof(repl[0])); i++) {
    vn = variant(base, repl[i][0], repl[i][1], v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
  }

  /* Key line damage. */
  {
    char bad[96];
    const char *mutate[] = {"g", " ", "\t", "\n", ":"};
    int j;
    for (j = 0; j < (int)(sizeof(mutate) / sizeof(mutate[0])); j++) {
      int pos;
      for (pos = 0; pos < 73; pos += 9) {
        if (pos == 8)
          continue;
        memcpy(bad, key1, 75);
        bad[pos] = mutate[j][0];
        vn = variant(base, key1, bad, v, sizeof(v));
        expect_bad(b, v, vn, before, (size_t)bn);
      }
    }
    memcpy(bad, key1, 75);
    bad[72] = '\0'; /* 63 hex digits */
    strcat(bad, "\n");
    vn = variant(base, key1, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    memcpy(bad, key1, 73); /* 65 hex digits */
    strcpy(bad + 73, "0\n");
    vn = variant(base, key1, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    snprintf(bad, sizeof(bad), "%.7s %s", key1, key1 + 9); /* 7-digit id */
    vn = variant(base, key1, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    snprintf(bad, sizeof(bad), "%.8s  %s", key1, key1 + 9); /* two spaces */
    vn = variant(base, key1, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    snprintf(bad, sizeof(bad), "%.73s \n", key1); /* trailing space */
    vn = variant(base, key1, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    snprintf(bad, sizeof(bad), "%.73s\r\n", key1); /* CRLF */
    vn = variant(base, key1, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    /* Duplicate id, then a different id in the same lookup slot. */
    vn = variant(base, key2, key1, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
    memcpy(bad, key1, 75);
    bad[0] = bad[0] == 'f' ? '0' : 'f';
    vn = variant(base, key2, bad, v, sizeof(v));
    expect_bad(b, v, vn, before, (size_t)bn);
  }

  /* Trailing garbage, a NUL, too many keys, no final newline. */
  len = (size_t)n;
  memcpy(v, base, len);
  memcpy(v + len, "x\n", 3);
  expect_bad(b, v, len + 2, before, (size_t)bn);
  memcpy(v + len, "\n", 2);
  expect_bad(b, v, len + 1, before, (size_t)bn);
  memcpy(v + len, "", 1);
  expect_bad(b, v, len + 1, before, (size_t)bn);
  v[10] = '\0';
  expect_bad(b, v, len, before, (size_t)bn);
  memcpy(v, base, len);
  {
    /* Fill every free lookup slot: SLOTS keys load, one more does not. */
    unsigned used = 0, sl;
    size_t k = len;
    char why[128];
    for (p = strstr(base, "epoch 11\n") + 9; *p; p += 74)
      used |= 1u << (strtoul(p, NULL, 16) & (NTSNTP_KEYRING_SLOTS - 1));
    for (sl = 0; sl < NTSNTP_KEYRING_SLOTS; sl++) {
      if (used & (1u << sl))
        continue;
      char line[16];
      snprintf(line, sizeof(line), "%08x", 0x12345670u | sl);
      memcpy(v + k, line, 8);
      memcpy(v + k + 8, key1 + 8, 66);
      k += 74;
    }
    {
      ntsntp_keyring *full = ring(100, NTSNTP_KEYRING_SLOTS, NULL, 1100);
      ck_assert_int_eq(ntsntp_keyring_load(full, (const uint8_t *)v, k, 1100),
                       0);
      ntsntp_keyring_del(full);
    }
    memcpy(v + k, key1, 74);
    ck_assert_int_eq(ntsntp_keyring_load_ex(b, (const uint8_t *)v, k + 74, 1100,
                                            why, sizeof(why)),
                     NTSNTP_ERR_BAD_KEYFILE);
    ck_assert_ptr_nonnull(strstr(why, "too many"));
    expect_bad(b, v, k + 74, before, (size_t)bn);
  }

  /* Every prefix: valid only when it ends a line after >= 2 key lines. */
  for (len = 0; len < (size_t)n; len++) {
    lines = 0;
    for (i = 0; i < (int)len; i++)
      lines += base[i] == '\n';
    if (len > 0 && base[len - 1] == '\n' && lines >= 5) {
      ntsntp_keyring *c = ring(100, 4, NULL, 1100);
      ck_assert_int_eq(ntsntp_keyring_load(c, (const uint8_t *)base, len, 1100),
                       0);
      ntsntp_keyring_del(c);
    } else {
      expect_bad(b, base, len, before, (size_t)bn);
    }
  }

  /* Upper-case hex is still the same key. */
  len = (size_t)(strstr(base, "epoch 11\n") + 9 - base);
  for (i = 0; i < n; i++)
    v[i] = (char)((size_t)i >= len && base[i] >= 'a' && base[i] <= 'f'
                      ? base[i] - 32
                      : base[i]);
  ck_assert_int_eq(ntsntp_keyring_load(b, (const uint8_t *)v, (size_t)n, 1100),
                   0);
  ck_assert_uint_eq(ntsntp_keyring_current_id(b), ntsntp_keyring_current_id(a));
  ntsntp_keyring_del(a);
  ntsntp_keyring_del(b);
}
END_TEST

START_TEST(t_secret) {
  /* Pinned against an independent HKDF-SHA256 (Python hmac):
   * secret 00..1f, epoch 17: id 005a1a58 -> slot bits 1 -> 005a1a59. */
  static const char want[] =
      "005a1a59 "
      "a6f8607142c7f076ef1ebc2d16dd65bb349fff3de465d2796d2242a14672a9bd"
      "\n";
  ntsntp_keyring *a = ring(100, 4, secret_a, 1700);
  ntsntp_keyring *b = ring(100, 4, secret_a, 1799);
  ntsntp_keyring *x = ring(100, 4, secret_b, 1700);
  uint8_t ca[NTSNTP_COOKIE_MAX_LEN], cb[NTSNTP_COOKIE_MAX_LEN];
  uint8_t t1[4096], t2[4096];
  ntsntp_ssize na, nb, n1, n2;

  n1 = ntsntp_keyring_save(a, t1, sizeof(t1));
  ck_assert_mem_eq(t1 + 36, want, 74);
  ck_assert_uint_eq(ntsntp_keyring_current_id(a), 0x005a1a59);
  ck_assert_uint_eq(ntsntp_keyring_current_id(a), ntsntp_keyring_current_id(b));

  na = seal(a, NTSNTP_AEAD_AES_SIV_CMAC_256, ca);
  nb = seal(b, NTSNTP_AEAD_AES_SIV_CMAC_512, cb);
  ck_assert_int_eq(open_check(b, ca, (size_t)na), 0);
  ck_assert_int_eq(open_check(a, cb, (size_t)nb), 0);
  ck_assert_int_eq(open_check(x, ca, (size_t)na), NTSNTP_ERR_UNKNOWN_KEY);

  /* Neighbouring epochs: a at 17, b at 18 (a boundary between them). */
  ck_assert_int_eq(ntsntp_keyring_update(b, 1800), 1);
  nb = seal(b, NTSNTP_AEAD_AES_SIV_CMAC_256, cb);
  ck_assert_int_eq(open_check(a, cb, (size_t)nb), 0);
  ck_assert_int_eq(open_check(b, ca, (size_t)na), 0);
  ck_assert_int_eq(ntsntp_keyring_update(b, 1900), 1);
  ck_assert_int_eq(open_check(b, ca, (size_t)na), 0);
  ck_assert_int_eq(ntsntp_keyring_update(b, 2000), 1);
  ck_assert_int_eq(open_check(b, ca, (size_t)na), NTSNTP_ERR_UNKNOWN_KEY);

  /* A ring rotated there equals one created there, and going back
   * re-derives the same keys. */
  ntsntp_keyring_del(x);
  x = ring(100, 4, secret_a, 2000);
  n1 = ntsntp_keyring_save(b, t1, sizeof(t1));
  n2 = ntsntp_keyring_save(x, t2, sizeof(t2));
  ck_assert_int_eq(n1, n2);
  ck_assert_mem_eq(t1, t2, (size_t)n1);
  ck_assert_int_eq(ntsntp_keyring_update(b, 1700), 1);
  ck_assert_int_eq(open_check(b, ca, (size_t)na), 0);

  /* Loading into a secret ring validates but keeps derived keys. */
  {
    ntsntp_keyring *r = ring(100, 4, NULL, 2000);
    n2 = ntsntp_keyring_save(r, t2, sizeof(t2));
    ck_assert_int_eq(ntsntp_keyring_load(x, t2, (size_t)n2, 2000), 0);
    n2 = ntsntp_keyring_save(x, t2, sizeof(t2));
    ck_assert_mem_eq(t1, t2, (size_t)n1);
    ck_assert_int_eq(ntsntp_keyring_load(x, t2, 10, 2000),
                     NTSNTP_ERR_BAD_KEYFILE);
    ntsntp_keyring_del(r);
  }
  ntsntp_keyring_del(a);
  ntsntp_keyring_del(b);
  ntsntp_keyring_del(x);
}
END_TEST

START_TEST(t_rand_failure) {
  ntsntp_keyring_settings s;
  ntsntp_keyring *kr = NULL;
  uint8_t c[NTSNTP_COOKIE_MAX_LEN];
  uint32_t id;

  ntsntp_keyring_settings_default(&s);
  s.rand = test_rand;
  atomic_store(&rand_fail, 1);
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0), NTSNTP_ERR_CRYPTO);
  ck_assert_ptr_null(kr);
  atomic_store(&rand_fail, 0);
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0), 0);
  id = ntsntp_keyring_current_id(kr);
  atomic_store(&rand_fail, 1);
  ck_assert_int_eq(seal(kr, NTSNTP_AEAD_AES_SIV_CMAC_256, c),
                   NTSNTP_ERR_CRYPTO);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 604800), NTSNTP_ERR_CRYPTO);
  ck_assert_uint_eq(ntsntp_keyring_current_id(kr), id);
  atomic_store(&rand_fail, 0);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 604800), 1);
  ntsntp_keyring_del(kr);
}
END_TEST

/* Fails the Nth allocation (nghttp2 failmalloc style). */
static int fail_at, alloc_count;
static void *fm_malloc(size_t n, void *u) {
  (void)u;
  return ++alloc_count == fail_at ? NULL : malloc(n);
}
static void fm_free(void *p, void *u) {
  (void)u;
  free(p);
}

START_TEST(t_nomem) {
  ntsntp_mem mem = {NULL, fm_malloc, fm_free, NULL, NULL};
  ntsntp_keyring_settings s;
  ntsntp_keyring *kr = NULL;
  uint8_t text[4096];
  ntsntp_ssize n;
  uint32_t id;

  ntsntp_keyring_settings_default(&s);
  s.rand = test_rand;
  s.mem = &mem;
  s.rotate_interval = 100;
  for (fail_at = 1; fail_at <= 2; fail_at++) {
    alloc_count = 0;
    ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0), NTSNTP_ERR_NOMEM);
  }
  fail_at = 0;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 0, NULL, 0), 0);
  id = ntsntp_keyring_current_id(kr);
  n = ntsntp_keyring_save(kr, text, sizeof(text));
  alloc_count = 0;
  fail_at = 1;
  ck_assert_int_eq(ntsntp_keyring_update(kr, 100), NTSNTP_ERR_NOMEM);
  ck_assert_uint_eq(ntsntp_keyring_current_id(kr), id);
  for (fail_at = 1; fail_at <= 2; fail_at++) {
    alloc_count = 0;
    ck_assert_int_eq(ntsntp_keyring_load(kr, text, (size_t)n, 300),
                     NTSNTP_ERR_NOMEM);
    ck_assert_uint_eq(ntsntp_keyring_current_id(kr), id);
  }
  fail_at = 0;
  ck_assert_int_eq(ntsntp_keyring_update(kr, 100), 1);
  ntsntp_keyring_del(kr);
}
END_TEST

/* Key sets replaced by a load and an update in the same second stay in
 * memory for the 2 s grace period (a worker may still read them), and
 * are freed after it; too many changes at once are refused. */
static int frees;
static void count_free(void *p, void *u) {
  (void)u;
  frees++;
  free(p);
}

START_TEST(t_swap_grace) {
  ntsntp_mem mem = {NULL, fm_malloc, count_free, NULL, NULL};
  ntsntp_keyring_settings s;
  ntsntp_keyring *kr = NULL;
  uint8_t text[4096];
  ntsntp_ssize n;
  int i;

  fail_at = 0;
  ntsntp_keyring_settings_default(&s);
  s.rand = test_rand;
  s.mem = &mem;
  s.rotate_interval = 100;
  ck_assert_int_eq(ntsntp_keyring_new(&kr, &s, 1000, NULL, 0), 0);
  n = ntsntp_keyring_save(kr, text, sizeof(text));
  ck_assert_int_gt(n, 0);
  frees = 0;
  /* Load at 1099, rotate at 1100: the set of _new (replaced at 1099) may
   * still be read. */
  ck_assert_int_eq(ntsntp_keyring_load(kr, text, (size_t)n, 1099), 0);
  ck_assert_int_eq(frees, 1); /* only load's own parsed copy */
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1100), 1);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1100), 0); /* same epoch */
  ck_assert_int_eq(frees, 1);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1200), 1);
  ck_assert_int_eq(frees, 3); /* both aged: freed at the next change */
  /* Loads in the same second: every replaced set is kept, up to 8; the
   * ninth change is refused, the ring unchanged. */
  for (i = 0; i < 7; i++)
    ck_assert_int_eq(ntsntp_keyring_load(kr, text, (size_t)n, 1300), 0);
  ck_assert_int_eq(frees, 3 + 7 + 1); /* parsed copies; 1200's set aged */
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1301), 0);
  ck_assert_int_eq(ntsntp_keyring_load(kr, text, (size_t)n, 1300), 0);
  ck_assert_int_eq(ntsntp_keyring_load(kr, text, (size_t)n, 1301),
                   NTSNTP_ERR_AGAIN);
  ck_assert_int_eq(ntsntp_keyring_update(kr, 1400), 1); /* all aged */
  ntsntp_keyring_del(kr);
}
END_TEST

/* ---- key files -------------------------------------------------------- */

static char tmpdir[64];

static void mk_tmpdir(void) {
  strcpy(tmpdir, "/tmp/ntsntp-keyfile-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tmpdir(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

START_TEST(t_keyfile) {
  ntsntp_keyring *a = ring(100, 4, NULL, 1100);
  ntsntp_keyring *b = ring(100, 4, NULL, 1100);
  uint8_t c[NTSNTP_COOKIE_MAX_LEN], t1[4096], t2[4096];
  char path[128], tmp[160], err[512];
  ntsntp_ssize n = seal(a, NTSNTP_AEAD_AES_SIV_CMAC_256, c), n1, n2;
  struct stat st;
  FILE *f;

  mk_tmpdir();
  snprintf(path, sizeof(path), "%s/ntskeys", tmpdir);
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());

  ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1100, err, sizeof(err)),
                   NTSNTP_ERR_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(err, path));

  ck_assert_int_eq(ntsntp_keyfile_save(a, path, err, sizeof(err)), 0);
  ck_assert_str_eq(err, "");
  ck_assert_int_eq(lstat(path, &st), 0);
  ck_assert(S_ISREG(st.st_mode));
  ck_assert_uint_eq(st.st_mode & 07777, 0600);
  ck_assert_int_eq(lstat(tmp, &st), -1);

  ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1100, err, sizeof(err)), 0);
  ck_assert_str_eq(err, "");
  ck_assert_int_eq(open_check(b, c, (size_t)n), 0);
  n1 = ntsntp_keyring_save(a, t1, sizeof(t1));
  n2 = ntsntp_keyring_save(b, t2, sizeof(t2));
  ck_assert_int_eq(n1, n2);
  ck_assert_mem_eq(t1, t2, (size_t)n1);

  /* Overwrite in place; a stale temporary file (even a symlink planted
   * there) is replaced, never followed. */
  {
    char victim[160];
    snprintf(victim, sizeof(victim), "%s/victim", tmpdir);
    f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fputs("keep", f);
    fclose(f);
    ck_assert_int_eq(symlink(victim, tmp), 0);
    ck_assert_int_eq(ntsntp_keyring_update(a, 1200), 1);
    ck_assert_int_eq(ntsntp_keyfile_save(a, path, err, sizeof(err)), 0);
    ck_assert_int_eq(stat(victim, &st), 0);
    ck_assert_int_eq(st.st_size, 4);
    ck_assert_int_eq(lstat(tmp, &st), -1);
    ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1200, err, sizeof(err)), 0);
    ck_assert_uint_eq(ntsntp_keyring_current_id(b),
                      ntsntp_keyring_current_id(a));
  }

  /* Group/other access: loaded, with a warning naming the file. */
  ck_assert_int_eq(chmod(path, 0644), 0);
  ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1200, err, sizeof(err)), 0);
  ck_assert_ptr_nonnull(strstr(err, path));
  ck_assert_ptr_nonnull(strstr(err, "0644"));

  /* Unreadable as root too: a directory, a symlink (even to a good file). */
  ck_assert_int_eq(ntsntp_keyfile_load(b, tmpdir, 1200, err, sizeof(err)),
                   NTSNTP_ERR_IO);
  ck_assert_ptr_nonnull(strstr(err, tmpdir));
  ck_assert_ptr_nonnull(strstr(err, "uid"));
  ck_assert_ptr_nonnull(strstr(err, "mode"));
  {
    char link[160];
    snprintf(link, sizeof(link), "%s/dangling", tmpdir);
    ck_assert_int_eq(symlink("/nonexistent/ntskeys", link), 0);
    ck_assert_int_eq(ntsntp_keyfile_load(b, link, 1200, err, sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, link));
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
    snprintf(link, sizeof(link), "%s/good-link", tmpdir);
    ck_assert_int_eq(symlink(path, link), 0);
    ck_assert_int_eq(ntsntp_keyfile_load(b, link, 1200, err, sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
  }
  /* A FIFO planted at the key file (its directory may belong to the
   * unprivileged user): refused at once, never waited on; one at the
   * temporary name is replaced, never written to. */
  {
    char fifo[160];
    snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(ntsntp_keyfile_load(b, fifo, 1200, err, sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, fifo));
    ck_assert_ptr_nonnull(strstr(err, "not a regular file (a FIFO;"));
    ck_assert_ptr_nonnull(strstr(err, "remove it"));
    ck_assert_int_eq(mkfifo(tmp, 0600), 0);
    ck_assert_int_eq(ntsntp_keyfile_save(b, path, err, sizeof(err)), 0);
    ck_assert_int_eq(lstat(tmp, &st), -1);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    /* Saving over the FIFO itself replaces it (rename follows nothing). */
    ck_assert_int_eq(ntsntp_keyfile_save(b, fifo, err, sizeof(err)), 0);
    ck_assert_int_eq(lstat(fifo, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(ntsntp_keyfile_load(b, fifo, 1200, err, sizeof(err)), 0);
  }
  if (geteuid() != 0) {
    ck_assert_int_eq(chmod(path, 0), 0);
    ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1200, err, sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "Permission denied"));
    ck_assert_int_eq(chmod(path, 0600), 0);
  }

  /* Corrupt: names the file and the way out; ring unchanged. */
  n1 = ntsntp_keyring_save(b, t1, sizeof(t1));
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("NTSNTP-KEYS 1\ninterval 100\nepoch 12\nzz\n", f);
  fclose(f);
  ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1200, err, sizeof(err)),
                   NTSNTP_ERR_BAD_KEYFILE);
  ck_assert_ptr_nonnull(strstr(err, path));
  ck_assert_ptr_nonnull(strstr(err, "line 4"));
  ck_assert_ptr_nonnull(strstr(err, "NTS_KEYS_RESET"));
  n2 = ntsntp_keyring_save(b, t2, sizeof(t2));
  ck_assert_mem_eq(t1, t2, (size_t)n1);
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 5000; i++)
    fputc('A', f);
  fclose(f);
  ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1200, err, sizeof(err)),
                   NTSNTP_ERR_BAD_KEYFILE);
  ck_assert_ptr_nonnull(strstr(err, "larger"));

  /* Saving into a missing directory fails and says where. */
  {
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/missing/ntskeys", tmpdir);
    ck_assert_int_eq(ntsntp_keyfile_save(a, bad, err, sizeof(err)),
                     NTSNTP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, bad));
    ck_assert_int_eq(errno, ENOENT);
  }
  ck_assert_int_eq(ntsntp_keyfile_save(a, path, NULL, 0), 0);
  ck_assert_int_eq(ntsntp_keyfile_load(b, path, 1200, NULL, 0), 0);

  rm_tmpdir();
  ntsntp_keyring_del(a);
  ntsntp_keyring_del(b);
}
END_TEST

/* ---- concurrency -------------------------------------------------------- */

typedef struct mt {
  ntsntp_keyring *kr;
  _Atomic int64_t pub; /* epoch the ring has reached at least */
  atomic_int done;
  atomic_long ops, failures, aged;
} mt;

#define KEEP 16

static void *worker(void *arg) {
  mt *m = arg;
  uint8_t c[KEEP][NTSNTP_COOKIE_MAX_LEN];
  int64_t sealed_at[KEEP];
  size_t len[KEEP] = {0};
  unsigned i = 0, j;

  /* Slot 0 keeps the first cookie, which must age out during the run. */
  while (!atomic_load(&m->done)) {
    int alg =
        (i & 1) ? NTSNTP_AEAD_AES_SIV_CMAC_512 : NTSNTP_AEAD_AES_SIV_CMAC_256;
    j = i == 0 ? 0 : 1 + i % (KEEP - 1);
    sealed_at[j] = atomic_load(&m->pub);
    ntsntp_ssize n = seal(m->kr, alg, c[j]);
    if (n < 0) {
      atomic_fetch_add(&m->failures, 1);
      continue;
    }
    len[j] = (size_t)n;
    for (j = 0; j < KEEP; j++) {
      int rv;
      int64_t now_pub;
      if (len[j] == 0)
        continue;
      rv = open_check(m->kr, c[j], len[j]);
      now_pub = atomic_load(&m->pub);
      /* During the open the ring was at most at epoch now_pub + 1, whose
       * window starts at now_pub - 1; the key's epoch is >= sealed_at. */
      if (sealed_at[j] >= now_pub - 1) {
        if (rv != 0)
          atomic_fetch_add(&m->failures, 1);
      } else if (rv == NTSNTP_ERR_UNKNOWN_KEY) {
        atomic_fetch_add(&m->aged, 1);
      } else if (rv != 0) {
        atomic_fetch_add(&m->failures, 1);
      }
      atomic_fetch_add(&m->ops, 1);
    }
    i++;
  }
  return NULL;
}

START_TEST(t_threads) {
  mt m;
  pthread_t th[2];
  int64_t t = 1000000;
  int i;

  memset(&m, 0, sizeof(m));
  m.kr = ring(1, 4, NULL, t);
  atomic_store(&m.pub, t);
  for (i = 0; i < 2; i++)
    ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &m), 0);
  /* Real time between swaps stands for the >= 1 s between rotations that
   * the ring's reclamation relies on. */
  for (i = 0; i < 20; i++) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    t++;
    ck_assert_int_eq(ntsntp_keyring_update(m.kr, t), 1);
    atomic_store(&m.pub, t);
  }
  atomic_store(&m.done, 1);
  for (i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  ck_assert_int_eq(atomic_load(&m.failures), 0);
  ck_assert_int_gt(atomic_load(&m.ops), 100);
  ck_assert_int_gt(atomic_load(&m.aged), 0);
  ntsntp_keyring_del(m.kr);
}
END_TEST

static Suite *cookie_suite(void) {
  Suite *s = suite_create("cookie");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, t_settings);
  tcase_add_loop_test(tc, t_roundtrip, 0, NALGS);
  tcase_add_test(tc, t_lengths);
  tcase_add_test(tc, t_constant_len_rotation);
  tcase_add_test(tc, t_update_boundaries);
  tcase_add_test(tc, t_rotation_accept);
  tcase_add_loop_test(tc, t_tamper, 0, NALGS);
  tcase_add_loop_test(tc, t_truncation, 0, NALGS);
  tcase_add_test(tc, t_layout_and_aead_mix);
  tcase_add_test(tc, t_save_load);
  tcase_add_test(tc, t_bad_keyfile);
  tcase_add_test(tc, t_secret);
  tcase_add_test(tc, t_rand_failure);
  tcase_add_test(tc, t_nomem);
  tcase_add_test(tc, t_swap_grace);
  suite_add_tcase(s, tc);
  tc = tcase_create("keyfile");
  tcase_add_test(tc, t_keyfile);
  suite_add_tcase(s, tc);
  tc = tcase_create("threads");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, t_threads);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run(cookie_suite());
}
