/* libntsntp: NTS cookies and the server's master key ring. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>

#include "aead.h"
#include "errtext.h"
#include "ntsntp/cookie.h"
#include "rd.h"
#include "settings.h"

#define MASTER_ALG NTSNTP_AEAD_AES_SIV_CMAC_256
#define MASTER_KEY_LEN 32
#define SLOT_MASK ((uint32_t)NTSNTP_KEYRING_SLOTS - 1)
/* key id, nonce, SIV tag, then aead id (2) and a zero field (2). */
#define COOKIE_OVERHEAD (4 + NTSNTP_COOKIE_NONCE_LEN + NTSNTP__AEAD_TAG_LEN)
#define PT_HEADER 4
#define MAX_PT (PT_HEADER + 2 * NTSNTP_MAX_KEY_LEN)

_Static_assert((NTSNTP_KEYRING_SLOTS & (NTSNTP_KEYRING_SLOTS - 1)) == 0,
               "slot lookup masks the key id");
/* Header lines at most 60 bytes, 74 per key: the documented 4096 holds. */
_Static_assert(60 + 74 * NTSNTP_KEYRING_SLOTS <= 4096, "key file size bound");

static const char hkdf_salt[] = "ntsntp cookie key v1";

typedef struct key {
  int used;
  uint32_t id;
  int64_t epoch; /* rotation epoch the key belongs to */
  uint8_t secret[MASTER_KEY_LEN];
  ntsntp__aead aead; /* key schedule done once, then read-only */
} key;

/* Immutable once published; readers hold it without locks. */
typedef struct keyset {
  int64_t epoch;    /* epoch of the current key */
  unsigned current; /* slot of the current key */
  key slots[NTSNTP_KEYRING_SLOTS];
} keyset;

/* A replaced set stays readable for GRACE_S seconds of the writer's time:
 * a worker that loaded it just before the swap finishes its cookie long
 * before.  More than RETIRED_MAX swaps within that time are refused. */
#define GRACE_S 2
#define RETIRED_MAX 8

struct ntsntp_keyring {
  _Atomic(keyset *) set;
  struct {
    keyset *ks;
    int64_t at; /* writer's time of the swap that replaced it */
  } retired[RETIRED_MAX];
  unsigned nretired;
  const ntsntp_mem *mem;
  uint32_t interval;
  unsigned nkeys;
  ntsntp_rand_fn rand;
  void *rand_user;
  int have_secret;
  uint8_t prk[SHA256_DIGEST_SIZE]; /* HKDF-Extract(salt, secret) */
};

static void keyring_fill(void *p) {
  ntsntp_keyring_settings *s = p;
  memset(s, 0, sizeof(*s));
  s->version = NTSNTP_SETTINGS_VERSION;
  s->rotate_interval = 604800;
  s->nkeys = 4;
  s->rand = ntsntp_rand_default;
}
NTSNTP__SETTINGS(ntsntp_keyring_settings, keyring, mem)

static const keyset *current_set(const ntsntp_keyring *kr) {
  return atomic_load_explicit(&((ntsntp_keyring *)kr)->set,
                              memory_order_acquire);
}

static void free_set(const ntsntp_keyring *kr, keyset *ks) {
  if (ks == NULL)
    return;
  ntsntp_secure_clear(ks, sizeof(*ks));
  kr->mem->free(ks, kr->mem->user);
}

static keyset *alloc_set(const ntsntp_keyring *kr) {
  keyset *ks = kr->mem->malloc(sizeof(*ks), kr->mem->user);
  if (ks)
    memset(ks, 0, sizeof(*ks));
  return ks;
}

/* Frees the retired sets whose grace period has passed at |now| (a clock
 * stepped back keeps them until it passes the swap time again). */
static void reap(ntsntp_keyring *kr, int64_t now) {
  unsigned i, n = 0;
  for (i = 0; i < kr->nretired; i++) {
    if (now >= kr->retired[i].at && now - kr->retired[i].at >= GRACE_S)
      free_set(kr, kr->retired[i].ks);
    else
      kr->retired[n++] = kr->retired[i];
  }
  kr->nretired = n;
}

/* Publishes |ks|; the set it replaces stays readable for GRACE_S.
 * Errors: AGAIN (too many swaps within the grace period; |ks| is not
 * taken). */
static int install(ntsntp_keyring *kr, keyset *ks, int64_t now) {
  keyset *old;
  reap(kr, now);
  if (kr->nretired == RETIRED_MAX)
    return NTSNTP_ERR_AGAIN;
  old = atomic_exchange_explicit(&kr->set, ks, memory_order_acq_rel);
  kr->retired[kr->nretired].ks = old;
  kr->retired[kr->nretired++].at = now;
  return 0;
}

static unsigned slot_of_epoch(int64_t e) {
  return (unsigned)((uint64_t)e & SLOT_MASK);
}

/* nettle's HKDF takes untyped callbacks; wrap rather than cast function
 * pointers, which would be undefined behaviour. */
static void mac_update(void *ctx, size_t len, const uint8_t *data) {
  hmac_sha256_update(ctx, len, data);
}
static void mac_digest(void *ctx, size_t len, uint8_t *dst) {
  hmac_sha256_digest(ctx, len, dst);
}

/*
 * Key for epoch e: HKDF-Expand(prk, be64(e), 32).  Key id: the first four
 * bytes of HKDF-Expand(prk, "id" || be64(e), 4), with the low bits replaced
 * by e mod SLOTS so that the nkeys consecutive epochs of a ring never share
 * a lookup slot (every instance agrees, as it is a function of e alone).
 */
static void derive(const ntsntp_keyring *kr, int64_t e,
                   uint8_t k[MASTER_KEY_LEN], uint32_t *id) {
  struct hmac_sha256_ctx h;
  uint8_t info[2 + 8], idb[4];

  info[0] = 'i';
  info[1] = 'd';
  ntsntp__put_u64(info + 2, (uint64_t)e);
  hmac_sha256_set_key(&h, sizeof(kr->prk), kr->prk);
  hkdf_expand(&h, mac_update, mac_digest, SHA256_DIGEST_SIZE, 8, info + 2,
              MASTER_KEY_LEN, k);
  hmac_sha256_set_key(&h, sizeof(kr->prk), kr->prk);
  hkdf_expand(&h, mac_update, mac_digest, SHA256_DIGEST_SIZE, sizeof(info),
              info, sizeof(idb), idb);
  *id = (ntsntp__get_u32(idb) & ~SLOT_MASK) | slot_of_epoch(e);
  ntsntp_secure_clear(&h, sizeof(h));
}

static int make_key(const ntsntp_keyring *kr, keyset *ks, int64_t e) {
  uint8_t k[MASTER_KEY_LEN], idb[4];
  uint32_t id;
  unsigned slot = slot_of_epoch(e), i;
  int rv;

  if (kr->have_secret) {
    derive(kr, e, k, &id);
  } else {
    if (kr->rand(kr->rand_user, k, sizeof(k)) != 0 ||
        kr->rand(kr->rand_user, idb, sizeof(idb)) != 0) {
      ntsntp_secure_clear(k, sizeof(k));
      return NTSNTP_ERR_CRYPTO;
    }
    /* A window never holds more than SLOTS keys, so a free slot exists;
     * distinct slots make the ids distinct. */
    for (i = 0; i < NTSNTP_KEYRING_SLOTS && ks->slots[slot].used; i++)
      slot = (slot + 1) & SLOT_MASK;
    id = (ntsntp__get_u32(idb) & ~SLOT_MASK) | slot;
  }
  if (ks->slots[slot].used) {
    ntsntp_secure_clear(k, sizeof(k));
    return NTSNTP_ERR_CRYPTO; /* unreachable: windows are <= SLOTS epochs */
  }
  rv = ntsntp__aead_init(&ks->slots[slot].aead, MASTER_ALG, k, sizeof(k));
  if (rv == 0) {
    ks->slots[slot].used = 1;
    ks->slots[slot].id = id;
    ks->slots[slot].epoch = e;
    memcpy(ks->slots[slot].secret, k, sizeof(k));
  }
  ntsntp_secure_clear(k, sizeof(k));
  return rv ? NTSNTP_ERR_CRYPTO : 0;
}

static int find_epoch(const keyset *ks, int64_t e) {
  unsigned i;
  for (i = 0; i < NTSNTP_KEYRING_SLOTS; i++)
    if (ks->slots[i].used && ks->slots[i].epoch == e)
      return (int)i;
  return -1;
}

/*
 * Builds the set for epoch |e|: keys of |src| that are still in the window
 * [e - (nkeys-2), e + 1] survive; every other epoch in the window gets a new
 * key.  In random mode the keys before the ring existed are filled too, so
 * a set is always complete and its file lists consecutive epochs.
 */
static int build(const ntsntp_keyring *kr, const keyset *src, int64_t e,
                 keyset **out) {
  int64_t lo = e - (int64_t)(kr->nkeys - 2), hi = e + 1, x;
  keyset *ks = alloc_set(kr);
  unsigned i;
  int rv;

  if (ks == NULL)
    return NTSNTP_ERR_NOMEM;
  ks->epoch = e;
  if (src) {
    for (i = 0; i < NTSNTP_KEYRING_SLOTS; i++) {
      const key *k = &src->slots[i];
      if (k->used && k->epoch >= lo && k->epoch <= hi)
        ks->slots[i] = *k;
    }
  }
  for (x = hi; x >= lo; x--) {
    if (find_epoch(ks, x) >= 0)
      continue;
    rv = make_key(kr, ks, x);
    if (rv) {
      free_set(kr, ks);
      return rv;
    }
  }
  ks->current = (unsigned)find_epoch(ks, e);
  *out = ks;
  return 0;
}

static int64_t epoch_at(const ntsntp_keyring *kr, int64_t now) {
  return now / (int64_t)kr->interval;
}

int ntsntp_keyring_new(ntsntp_keyring **pkr, const ntsntp_keyring_settings *s,
                       int64_t now, char *errbuf, size_t errlen) {
  ntsntp_keyring_settings def;
  const ntsntp_mem *mem;
  ntsntp_keyring *kr;
  keyset *ks;
  int rv;

  if (pkr == NULL) {
    ntsntp__errf(errbuf, errlen,
                 "key ring: no place for the result (pkr "
                 "is NULL)");
    return NTSNTP_ERR_INVALID_ARG;
  }
  *pkr = NULL;
  if (s == NULL) {
    ntsntp_keyring_settings_default(&def);
    s = &def;
  } else {
    NTSNTP__SETTINGS_GET(s, def, keyring, errbuf, errlen);
  }
  if (s->rotate_interval < 1 || s->nkeys < 2 ||
      s->nkeys > NTSNTP_KEYRING_SLOTS || now < 0) {
    ntsntp__errf(errbuf, errlen,
                 "key ring settings out of range: "
                 "rotate_interval %lld (at least 1), nkeys %u (2..%u), now "
                 "%lld (not negative)",
                 (long long)s->rotate_interval, (unsigned)s->nkeys,
                 (unsigned)NTSNTP_KEYRING_SLOTS, (long long)now);
    return NTSNTP_ERR_INVALID_ARG;
  }
  if (s->secret ? s->secret_len < 32 : s->secret_len != 0) {
    ntsntp__errf(errbuf, errlen,
                 "key ring: the shared secret is %zu bytes; "
                 "fix: at least 32 (or none, with secret_len 0)",
                 (size_t)s->secret_len);
    return NTSNTP_ERR_INVALID_ARG;
  }

  mem = s->mem ? s->mem : ntsntp_mem_default();
  kr = mem->malloc(sizeof(*kr), mem->user);
  if (kr == NULL) {
    ntsntp__errf(errbuf, errlen, "key ring: out of memory");
    return NTSNTP_ERR_NOMEM;
  }
  memset(kr, 0, sizeof(*kr));
  atomic_init(&kr->set, NULL);
  kr->mem = mem;
  kr->interval = s->rotate_interval;
  kr->nkeys = s->nkeys;
  kr->rand = s->rand ? s->rand : ntsntp_rand_default;
  kr->rand_user = s->rand ? s->rand_user : NULL;
  if (s->secret) {
    struct hmac_sha256_ctx h;
    hmac_sha256_set_key(&h, sizeof(hkdf_salt) - 1, (const uint8_t *)hkdf_salt);
    hkdf_extract(&h, mac_update, mac_digest, SHA256_DIGEST_SIZE, s->secret_len,
                 s->secret, kr->prk);
    ntsntp_secure_clear(&h, sizeof(h));
    kr->have_secret = 1;
  }

  rv = build(kr, NULL, epoch_at(kr, now), &ks);
  if (rv) {
    ntsntp_secure_clear(kr, sizeof(*kr));
    mem->free(kr, mem->user);
    ntsntp__errf(errbuf, errlen,
                 "key ring: the first keys could not be "
                 "made: %s",
                 ntsntp_strerror(rv));
    return rv;
  }
  atomic_store_explicit(&kr->set, ks, memory_order_release);
  *pkr = kr;
  return 0;
}

void ntsntp_keyring_del(ntsntp_keyring *kr) {
  const ntsntp_mem *mem;

  if (kr == NULL)
    return;
  mem = kr->mem;
  free_set(kr, atomic_load_explicit(&kr->set, memory_order_acquire));
  while (kr->nretired)
    free_set(kr, kr->retired[--kr->nretired].ks);
  ntsntp_secure_clear(kr, sizeof(*kr));
  mem->free(kr, mem->user);
}

int ntsntp_keyring_update(ntsntp_keyring *kr, int64_t now) {
  const keyset *cur;
  keyset *ks;
  int64_t e;
  int rv;

  if (kr == NULL || now < 0)
    return NTSNTP_ERR_INVALID_ARG;
  cur = current_set(kr);
  e = epoch_at(kr, now);
  /* A step back is followed too: the window moves with the clock, and keys
   * still inside it survive. */
  if (e == cur->epoch)
    return 0;
  rv = build(kr, cur, e, &ks);
  if (rv)
    return rv;
  rv = install(kr, ks, now);
  if (rv) {
    free_set(kr, ks);
    return rv;
  }
  return 1;
}

int64_t ntsntp_keyring_next_rotation(const ntsntp_keyring *kr) {
  int64_t e = current_set(kr)->epoch;
  if (e >= INT64_MAX / (int64_t)kr->interval - 1)
    return INT64_MAX;
  return (e + 1) * (int64_t)kr->interval;
}

uint32_t ntsntp_keyring_current_id(const ntsntp_keyring *kr) {
  const keyset *ks = current_set(kr);
  return ks->slots[ks->current].id;
}

/* ---- key file text ---------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

static void wr_hex(ntsntp_wr *w, const uint8_t *p, size_t n) {
  uint8_t *o = ntsntp__wr_reserve(w, 2 * n);
  size_t i;
  if (o == NULL)
    return;
  for (i = 0; i < n; i++) {
    o[2 * i] = (uint8_t)hexdig[p[i] >> 4];
    o[2 * i + 1] = (uint8_t)hexdig[p[i] & 15];
  }
}

static void wr_str(ntsntp_wr *w, const char *s) {
  ntsntp__wr_bytes(w, s, strlen(s));
}

static void wr_num(ntsntp_wr *w, const char *label, uint64_t v) {
  char buf[48];
  int n = snprintf(buf, sizeof(buf), "%s %llu\n", label, (unsigned long long)v);
  ntsntp__wr_bytes(w, buf, (size_t)n);
}

static void wr_key(ntsntp_wr *w, const key *k) {
  uint8_t idb[4];
  ntsntp__put_u32(idb, k->id);
  wr_hex(w, idb, sizeof(idb));
  ntsntp__wr_u8(w, ' ');
  wr_hex(w, k->secret, sizeof(k->secret));
  ntsntp__wr_u8(w, '\n');
}

/* Order of key lines: current, next, then older keys newest first.  The
 * position of a line gives its epoch, so the file needs no per-key field. */
ntsntp_ssize ntsntp_keyring_save(const ntsntp_keyring *kr, uint8_t *out,
                                 size_t outlen) {
  const keyset *ks;
  ntsntp_wr w;
  int64_t x;
  int i;

  if (kr == NULL || out == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  ks = current_set(kr);
  ntsntp__wr_init(&w, out, outlen);
  wr_str(&w, "NTSNTP-KEYS 1\n");
  wr_num(&w, "interval", kr->interval);
  wr_num(&w, "epoch", (uint64_t)ks->epoch);
  wr_key(&w, &ks->slots[ks->current]);
  for (x = ks->epoch + 1; x >= ks->epoch - (int64_t)(kr->nkeys - 2); x--) {
    if (x == ks->epoch)
      continue;
    i = find_epoch(ks, x);
    if (i < 0)
      break; /* sets are complete windows; nothing older can follow a gap */
    wr_key(&w, &ks->slots[i]);
  }
  if (w.err) {
    ntsntp_secure_clear(out, outlen);
    return w.err;
  }
  return (ntsntp_ssize)ntsntp__wr_len(&w);
}

typedef struct parsed_key {
  uint32_t id;
  uint8_t secret[MASTER_KEY_LEN];
} parsed_key;

static int unhex(const uint8_t *s, size_t n, uint8_t *out) {
  size_t i;
  for (i = 0; i < 2 * n; i++) {
    unsigned c = s[i], v;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v = c - 'A' + 10;
    else
      return -1;
    if (i & 1)
      out[i / 2] = (uint8_t)(out[i / 2] | v);
    else
      out[i / 2] = (uint8_t)(v << 4);
  }
  return 0;
}

/* "<label> <decimal>" with no sign, no spaces, no overflow past |max|. */
static int parse_num(const uint8_t *l, size_t n, const char *label,
                     uint64_t max, uint64_t *v) {
  size_t ll = strlen(label), i;
  uint64_t x = 0;

  if (n <= ll + 1 || memcmp(l, label, ll) != 0 || l[ll] != ' ')
    return -1;
  for (i = ll + 1; i < n; i++) {
    if (l[i] < '0' || l[i] > '9' || i - ll > 19)
      return -1;
    x = x * 10 + (uint64_t)(l[i] - '0');
  }
  if (x > max)
    return -1;
  *v = x;
  return 0;
}

static void set_why(char *why, size_t whylen, unsigned line, const char *msg) {
  if (why == NULL || whylen == 0)
    return;
  if (line)
    snprintf(why, whylen, "line %u: %s", line, msg);
  else
    snprintf(why, whylen, "%s", msg);
}

/* Returns the next '\n'-terminated line (without the '\n'), or NULL at the
 * end of input; *bad is set when the last line lacks its '\n'. */
static const uint8_t *next_line(ntsntp_rd *r, size_t *n, int *bad) {
  const uint8_t *nl;
  size_t left = ntsntp__rd_left(r);

  if (left == 0)
    return NULL;
  nl = memchr(r->p, '\n', left);
  if (nl == NULL) {
    *bad = 1;
    return NULL;
  }
  *n = (size_t)(nl - r->p);
  return ntsntp__rd_bytes(r, *n + 1);
}

static int parse_file(const uint8_t *in, size_t len, uint32_t *interval,
                      int64_t *epoch, parsed_key *keys, unsigned *nkeys,
                      char *why, size_t whylen) {
  static const char magic[] = "NTSNTP-KEYS ";
  const uint8_t *l;
  unsigned line = 0, n = 0, i;
  uint64_t v;
  size_t ll;
  int bad = 0;
  ntsntp_rd r;

  if (len == 0) {
    set_why(why, whylen, 0, "empty");
    return -1;
  }
  ntsntp__rd_init(&r, in, len);
  if (memchr(in, '\0', len)) {
    set_why(why, whylen, 0, "contains a NUL byte (not a key file)");
    return -1;
  }
  l = next_line(&r, &ll, &bad);
  line++;
  if (l == NULL || ll < sizeof(magic) - 1 ||
      memcmp(l, magic, sizeof(magic) - 1) != 0) {
    set_why(why, whylen, line, "not an ntsntp key file (no \"NTSNTP-KEYS\")");
    return -1;
  }
  if (ll != sizeof(magic) || l[ll - 1] != '1') {
    set_why(why, whylen, line, "unsupported key file version (want 1)");
    return -1;
  }
  l = next_line(&r, &ll, &bad);
  line++;
  if (l == NULL || parse_num(l, ll, "interval", UINT32_MAX, &v) || v < 1) {
    set_why(why, whylen, line, "expected \"interval <seconds>\" (1..2^32-1)");
    return -1;
  }
  *interval = (uint32_t)v;
  l = next_line(&r, &ll, &bad);
  line++;
  if (l == NULL ||
      parse_num(l, ll, "epoch", (uint64_t)INT64_MAX / *interval, &v)) {
    set_why(why, whylen, line, "expected \"epoch <n>\" (in range)");
    return -1;
  }
  *epoch = (int64_t)v;

  while ((l = next_line(&r, &ll, &bad)) != NULL) {
    line++;
    if (n == NTSNTP_KEYRING_SLOTS) {
      set_why(why, whylen, line, "too many keys");
      return -1;
    }
    if (ll != 8 + 1 + 2 * MASTER_KEY_LEN || l[8] != ' ') {
      set_why(why, whylen, line, "expected \"<id: 8 hex> <key: 64 hex>\"");
      return -1;
    }
    {
      uint8_t idb[4];
      if (unhex(l, 4, idb) || unhex(l + 9, MASTER_KEY_LEN, keys[n].secret)) {
        set_why(why, whylen, line, "invalid hex digit");
        return -1;
      }
      keys[n].id = ntsntp__get_u32(idb);
    }
    for (i = 0; i < n; i++) {
      if (keys[i].id == keys[n].id) {
        set_why(why, whylen, line, "duplicate key id");
        return -1;
      }
      if (((keys[i].id ^ keys[n].id) & SLOT_MASK) == 0) {
        set_why(
            why, whylen, line,
            "key id shares a lookup slot (id mod slots) with an earlier key");
        return -1;
      }
    }
    n++;
  }
  if (bad) {
    set_why(why, whylen, line + 1, "truncated (no final newline)");
    return -1;
  }
  if (n < 2) {
    set_why(why, whylen, 0, "fewer than 2 keys (current and next)");
    return -1;
  }
  *nkeys = n;
  return 0;
}

int ntsntp_keyring_load_ex(ntsntp_keyring *kr, const uint8_t *in, size_t len,
                           int64_t now, char *why, size_t whylen) {
  parsed_key keys[NTSNTP_KEYRING_SLOTS];
  keyset *src = NULL, *ks = NULL;
  uint32_t interval = 0;
  int64_t epoch = 0, e0;
  unsigned n = 0, i;
  int rv;

  set_why(why, whylen, 0, "");
  if (kr == NULL || (in == NULL && len) || now < 0)
    return NTSNTP_ERR_INVALID_ARG;
  if (parse_file(in, len, &interval, &epoch, keys, &n, why, whylen)) {
    rv = NTSNTP_ERR_BAD_KEYFILE;
    goto out;
  }

  /* With a shared secret the keys are a function of the epoch, so the file
   * holds nothing the ring cannot derive; it is only validated. */
  if (!kr->have_secret) {
    /* The file's current key was current at epoch*interval seconds; if the
     * interval changed since, relabel from that instant so the keys keep
     * their order. */
    e0 = epoch * (int64_t)interval / (int64_t)kr->interval;
    src = alloc_set(kr);
    if (src == NULL) {
      rv = NTSNTP_ERR_NOMEM;
      goto out;
    }
    for (i = 0; i < n; i++) {
      key *k = &src->slots[keys[i].id & SLOT_MASK];
      k->used = 1;
      k->id = keys[i].id;
      k->epoch = i == 0 ? e0 : i == 1 ? e0 + 1 : e0 - (int64_t)(i - 1);
      memcpy(k->secret, keys[i].secret, MASTER_KEY_LEN);
      if (ntsntp__aead_init(&k->aead, MASTER_ALG, k->secret, MASTER_KEY_LEN)) {
        rv = NTSNTP_ERR_CRYPTO;
        goto out;
      }
    }
  }
  rv = build(kr, src, epoch_at(kr, now), &ks);
  if (rv == 0 && (rv = install(kr, ks, now)) != 0)
    free_set(kr, ks);

out:
  free_set(kr, src);
  ntsntp_secure_clear(keys, sizeof(keys));
  return rv;
}

int ntsntp_keyring_load(ntsntp_keyring *kr, const uint8_t *in, size_t len,
                        int64_t now) {
  return ntsntp_keyring_load_ex(kr, in, len, now, NULL, 0);
}

/* ---- cookies ------------------------------------------------------------ */

size_t ntsntp_cookie_len(int aead) {
  size_t kl = ntsntp__aead_key_len(aead);
  return kl ? COOKIE_OVERHEAD + PT_HEADER + 2 * kl : 0;
}

ntsntp_ssize ntsntp_cookie_seal(const ntsntp_keyring *kr, int aead,
                                const uint8_t *c2s, const uint8_t *s2c,
                                uint8_t *out, size_t outlen) {
  size_t kl = ntsntp__aead_key_len(aead), clen = ntsntp_cookie_len(aead);
  uint8_t pt[MAX_PT];
  const keyset *ks;
  const key *k;
  int rv;

  if (kr == NULL || kl == 0 || c2s == NULL || s2c == NULL || out == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  if (outlen < clen)
    return NTSNTP_ERR_NOBUF;
  ks = current_set(kr);
  k = &ks->slots[ks->current];

  ntsntp__put_u32(out, k->id);
  /* Nonces need to be unique, not secret: gnutls's per-thread nonce
   * generator is several times cheaper than its key generator, and this
   * runs for every cookie.  A caller-given rand (tests) is used as is. */
  if ((kr->rand == ntsntp_rand_default
           ? ntsntp_rand_nonce(NULL, out + 4, NTSNTP_COOKIE_NONCE_LEN)
           : kr->rand(kr->rand_user, out + 4, NTSNTP_COOKIE_NONCE_LEN)) != 0)
    return NTSNTP_ERR_CRYPTO;
  ntsntp__put_u16(pt, (uint16_t)aead);
  ntsntp__put_u16(pt + 2, 0);
  memcpy(pt + PT_HEADER, c2s, kl);
  memcpy(pt + PT_HEADER + kl, s2c, kl);
  rv =
      ntsntp__aead_seal(&k->aead, out + 4, NTSNTP_COOKIE_NONCE_LEN, NULL, 0, pt,
                        PT_HEADER + 2 * kl, out + 4 + NTSNTP_COOKIE_NONCE_LEN);
  ntsntp_secure_clear(pt, sizeof(pt));
  if (rv)
    return NTSNTP_ERR_CRYPTO;
  return (ntsntp_ssize)clen;
}

/* The cookie length names the AEAD; the plaintext must agree. */
static int aead_for_len(size_t len) {
  static const int algs[] = {NTSNTP_AEAD_AES_SIV_CMAC_256,
                             NTSNTP_AEAD_AES_SIV_CMAC_512,
                             NTSNTP_AEAD_AES_128_GCM_SIV};
  size_t i;
  for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
    if (ntsntp_cookie_len(algs[i]) != 0 && ntsntp_cookie_len(algs[i]) == len)
      return algs[i];
  return 0;
}

int ntsntp_cookie_open(const ntsntp_keyring *kr, const uint8_t *cookie,
                       size_t len, int *aead, uint8_t *c2s, uint8_t *s2c) {
  uint8_t pt[MAX_PT];
  const keyset *ks;
  const key *k;
  uint32_t id;
  size_t kl;
  int alg, rv;

  if (kr == NULL || cookie == NULL || aead == NULL || c2s == NULL ||
      s2c == NULL)
    return NTSNTP_ERR_INVALID_ARG;
  alg = aead_for_len(len);
  if (alg == 0)
    return NTSNTP_ERR_BAD_COOKIE;
  kl = ntsntp__aead_key_len(alg);

  id = ntsntp__get_u32(cookie);
  ks = current_set(kr);
  k = &ks->slots[id & SLOT_MASK];
  if (!k->used || k->id != id)
    return NTSNTP_ERR_UNKNOWN_KEY;

  rv = ntsntp__aead_open(&k->aead, cookie + 4, NTSNTP_COOKIE_NONCE_LEN, NULL, 0,
                         cookie + 4 + NTSNTP_COOKIE_NONCE_LEN,
                         len - 4 - NTSNTP_COOKIE_NONCE_LEN, pt);
  if (rv) {
    rv = NTSNTP_ERR_BAD_COOKIE;
    goto out;
  }
  /* Only this server seals cookies, so a mismatch means a bug or a key
   * shared with something else; refuse either way. */
  if (ntsntp__get_u16(pt) != (uint16_t)alg || ntsntp__get_u16(pt + 2) != 0) {
    rv = NTSNTP_ERR_BAD_COOKIE;
    goto out;
  }
  *aead = alg;
  memcpy(c2s, pt + PT_HEADER, kl);
  memcpy(s2c, pt + PT_HEADER + kl, kl);
out:
  ntsntp_secure_clear(pt, sizeof(pt));
  return rv;
}
