/*
 * AEAD backend: published vectors and real NTS exchanges.
 *
 * RFC 5297 vectors.  nettle's SIV-CMAC takes exactly one associated-data
 * string plus a nonce (S2V over AD, nonce, plaintext), which is also what
 * RFC 8915 uses.  RFC 5297 A.1 (one AD, no nonce) and A.2 (two ADs and a
 * nonce) therefore cannot be expressed through this API: A.1 would need
 * "no nonce" (an empty nonce is a different S2V input and nettle refuses
 * it), A.2 a second AD component.  We use A.2's key, nonce, first AD and
 * plaintext, whose one-AD output is published with nettle's and miscreant's
 * interoperability vectors and was cross-checked here with an independent
 * implementation (pyca/cryptography AESSIV, which reproduces A.1 and A.2).
 */
#include <check.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aead.h"
#include "nts_ef.h"
#include "ntsntp/cookie.h"
#include "rd.h"
#include "testutil.h"

/* RFC 5297 A.2 inputs. */
static const char a2_key[] = "7f7e7d7c7b7a79787776757473727170"
                             "404142434445464748494a4b4c4d4e4f";
static const char a2_ad1[] = "00112233445566778899aabbccddeeff"
                             "deaddadadeaddadaffeeddccbbaa9988"
                             "7766554433221100";
static const char a2_nonce[] = "09f911029d74e35bd84156c5635688c0";
static const char a2_pt[] = "7468697320697320736f6d6520706c61"
                            "696e7465787420746f20656e63727970"
                            "74207573696e67205349562d414553";
static const char a2_out_1ad[] = "85825e22e90cf2ddda2c548dc7c1b631"
                                 "0dcdaca0cebf9dc6cb90583f5bf1506e"
                                 "02cd48832b00e4e598b2b22a53e6199d"
                                 "4df0c1666a35a0433b250dc134d776";
/* AES-SIV-CMAC-512 (AEAD 17), same nonce, AD and plaintext. */
static const char k512[] = "c27df2fdaec35d4a2a412a50c3e8c47d"
                           "2d568e91a38e54148abdc0b6e86caf87"
                           "695c0a8adf4c5f8eb2c6c8b136529864"
                           "f3b84b3ae8e3676ce760c461f3a13e83";
static const char k512_out[] = "5a979b0da58fde8051621ae6bf96feda"
                               "50933da8047bc306fabaf0c3d9fa8471"
                               "c70a7def39a2f91d68a2021c99ac7e2a"
                               "24535a134ba23ec15787cebe5c53cc";

typedef struct vec {
  const char *key, *nonce, *ad, *pt, *out;
  int alg;
} vec;

static const vec vecs[] = {
    {a2_key, a2_nonce, a2_ad1, a2_pt, a2_out_1ad, NTSNTP_AEAD_AES_SIV_CMAC_256},
    {k512, a2_nonce, a2_ad1, a2_pt, k512_out, NTSNTP_AEAD_AES_SIV_CMAC_512},
    /* One-byte nonce, empty AD and plaintext (libaes_siv interop). */
    {"fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", "01",
     "", "", "c696f84fdf92aba3c31c23d5f2087513", NTSNTP_AEAD_AES_SIV_CMAC_256},
#if NTSNTP_HAVE_GCM_SIV
    /* RFC 8452 C.1 (AEAD_AES_128_GCM_SIV, 12-byte nonces): ciphertext then
     * tag.  Also reproduced with pyca/cryptography's AESGCMSIV. */
    {"01000000000000000000000000000000", "030000000000000000000000", "", "",
     "dc20e2d83f25705bb49e439eca56de25", NTSNTP_AEAD_AES_128_GCM_SIV},
    {"01000000000000000000000000000000", "030000000000000000000000", "",
     "0100000000000000", "b5d839330ac7b786578782fff6013b815b287c22493a364c",
     NTSNTP_AEAD_AES_128_GCM_SIV},
    {"01000000000000000000000000000000", "030000000000000000000000", "01",
     "0200000000000000", "1e6daba35669f4273b0a1a2560969cdf790d99759abd1508",
     NTSNTP_AEAD_AES_128_GCM_SIV},
    {"e66021d5eb8e4f4066d4adb9c33560e4", "f46e44bb3da0015c94f70887", "", "",
     "a4194b79071b01a87d65f706e3949578", NTSNTP_AEAD_AES_128_GCM_SIV},
    {"36864200e0eaf5284d884a0e77d31646", "bae8e37fc83441b16034566b",
     "46bb91c3c5", "7a806c", "af60eb711bd85bc1e4d3e0a462e074eea428a8",
     NTSNTP_AEAD_AES_128_GCM_SIV},
#endif
};

START_TEST(t_key_len) {
  ck_assert_uint_eq(ntsntp__aead_key_len(NTSNTP_AEAD_AES_SIV_CMAC_256), 32);
  ck_assert_uint_eq(ntsntp__aead_key_len(NTSNTP_AEAD_AES_SIV_CMAC_512), 64);
  ck_assert_uint_eq(ntsntp__aead_key_len(NTSNTP_AEAD_AES_SIV_CMAC_384), 0);
  ck_assert_uint_eq(ntsntp__aead_key_len(0), 0);
  ck_assert_uint_eq(ntsntp__aead_key_len(-1), 0);
  ck_assert_uint_eq(ntsntp__aead_key_len(NTSNTP_AEAD_AES_128_GCM_SIV),
                    NTSNTP_HAVE_GCM_SIV ? 16 : 0);
  ck_assert_uint_eq(ntsntp_aead_key_len(NTSNTP_AEAD_AES_SIV_CMAC_512), 64);
  ck_assert(ntsntp_aead_supported(NTSNTP_AEAD_AES_SIV_CMAC_256));
  ck_assert(ntsntp_aead_supported(NTSNTP_AEAD_AES_SIV_CMAC_512));
  ck_assert(!ntsntp_aead_supported(NTSNTP_AEAD_AES_SIV_CMAC_384));
  ck_assert_int_eq(ntsntp_aead_supported(NTSNTP_AEAD_AES_128_GCM_SIV),
                   NTSNTP_HAVE_GCM_SIV);
}
END_TEST

/* Nonce lengths: what each AEAD takes, and what NTS sends with it. */
START_TEST(t_nonce_len) {
  ck_assert_uint_eq(ntsntp__aead_nonce_len(NTSNTP_AEAD_AES_SIV_CMAC_256), 16);
  ck_assert_uint_eq(ntsntp__aead_nonce_len(NTSNTP_AEAD_AES_SIV_CMAC_512), 16);
  ck_assert_uint_eq(ntsntp__aead_nonce_len(NTSNTP_AEAD_AES_SIV_CMAC_384), 0);
  ck_assert_uint_eq(ntsntp__aead_nonce_len(0), 0);
  ck_assert(ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_SIV_CMAC_256, 1));
  ck_assert(ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_SIV_CMAC_256, 12));
  ck_assert(!ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_SIV_CMAC_256, 0));
#if NTSNTP_HAVE_GCM_SIV
  ck_assert_uint_eq(ntsntp__aead_nonce_len(NTSNTP_AEAD_AES_128_GCM_SIV), 12);
  ck_assert(ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_128_GCM_SIV, 12));
  ck_assert(!ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_128_GCM_SIV, 11));
  ck_assert(!ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_128_GCM_SIV, 13));
  ck_assert(!ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_128_GCM_SIV, 16));
#else
  fprintf(stderr, "aead: AES-128-GCM-SIV (AEAD 30) vectors skipped: this "
                  "nettle has no siv-gcm.h (nettle >= 3.9 has)\n");
  ck_assert_uint_eq(ntsntp__aead_nonce_len(NTSNTP_AEAD_AES_128_GCM_SIV), 0);
  ck_assert(!ntsntp__aead_nonce_ok(NTSNTP_AEAD_AES_128_GCM_SIV, 12));
#endif
}
END_TEST

/* An Authenticator body: nonce length, ciphertext length 16, the nonce
 * (0xaa) and its padding, a tag (0xcc), then |extra| zero bytes. */
static size_t auth_body(uint8_t *b, size_t nlen, size_t clen, size_t extra) {
  size_t pn = (nlen + 3) & ~(size_t)3, pc = (clen + 3) & ~(size_t)3;
  memset(b, 0, 4 + pn + pc + extra);
  b[0] = (uint8_t)(nlen >> 8), b[1] = (uint8_t)nlen;
  b[2] = (uint8_t)(clen >> 8), b[3] = (uint8_t)clen;
  memset(b + 4, 0xaa, nlen);
  memset(b + 4 + pn, 0xcc, clen);
  return 4 + pn + pc + extra;
}

/* RFC 8915 5.6 as ntsntp__nts_auth_parse reads it: the layout, then per
 * AEAD a nonce it takes and room for min(16, its longest nonce). */
START_TEST(t_nts_auth_parse) {
  static const struct {
    int aead;
    size_t nlen, clen, extra;
    int ok;
  } cases[] = {
      {0, 16, 16, 0, 1},
      {0, 1, 16, 0, 1},
      {0, 0, 16, 0, 0},
      {0, 16, 15, 0, 0},
      {0, 12, 16, 0, 1},
      {15, 16, 16, 0, 1},
      {15, 16, 48, 0, 1},
      {15, 12, 16, 0, 0},
      {15, 12, 16, 4, 1},
      {15, 1, 16, 12, 1},
      {15, 1, 16, 8, 0},
      {15, 8, 16, 4, 0},
      {17, 32, 16, 0, 1},
      {17, 12, 16, 0, 0},
      {16, 16, 16, 0, 0}, /* not built in */
      {30, 12, 16, 0, NTSNTP_HAVE_GCM_SIV},
      {30, 12, 40, 4, NTSNTP_HAVE_GCM_SIV},
      {30, 16, 16, 0, 0},
      {30, 8, 16, 4, 0},
      {30, 11, 16, 4, 0},
      {30, 13, 16, 0, 0},
  };
  uint8_t body[128];
  const uint8_t *nonce, *ct;
  size_t i, nl, cl;
  ntsntp_ef ef;
  int rv;

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memset(&ef, 0, sizeof(ef));
    ef.type = NTSNTP_EF_AUTHENTICATOR;
    ef.body = body;
    ef.body_len = auth_body(body, cases[i].nlen, cases[i].clen, cases[i].extra);
    rv = ntsntp__nts_auth_parse(&ef, cases[i].aead, &nonce, &nl, &ct, &cl);
    ck_assert_msg(rv == (cases[i].ok ? 0 : NTSNTP_ERR_BAD_EF),
                  "case %zu: aead %d nonce %zu extra %zu: %d", i, cases[i].aead,
                  cases[i].nlen, cases[i].extra, rv);
    if (rv == 0) {
      ck_assert_uint_eq(nl, cases[i].nlen);
      ck_assert_uint_eq(cl, cases[i].clen);
      ck_assert_ptr_eq(nonce, body + 4);
      ck_assert_uint_eq(ct[0], 0xcc);
    }
    /* Every truncation of the body is refused. */
    for (ef.body_len = 0;
         ef.body_len < 4 + ((cases[i].nlen + 3) & ~3u) + cases[i].clen;
         ef.body_len++)
      ck_assert_int_eq(
          ntsntp__nts_auth_parse(&ef, cases[i].aead, &nonce, &nl, &ct, &cl),
          NTSNTP_ERR_BAD_EF);
  }
}
END_TEST

START_TEST(t_vectors) {
  const vec *v = &vecs[_i];
  uint8_t key[64], nonce[16], ad[64], pt[64], want[80], out[80], back[64];
  size_t kl = tu_unhex(v->key, key, sizeof(key));
  size_t nl = tu_unhex(v->nonce, nonce, sizeof(nonce));
  size_t al = tu_unhex(v->ad, ad, sizeof(ad));
  size_t pl = tu_unhex(v->pt, pt, sizeof(pt));
  size_t ol = tu_unhex(v->out, want, sizeof(want));
  ntsntp__aead a;

  ck_assert_uint_eq(ol, pl + NTSNTP__AEAD_TAG_LEN);
  ck_assert_int_eq(ntsntp__aead_init(&a, v->alg, key, kl), 0);
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, nl, al ? ad : NULL, al,
                                     pl ? pt : NULL, pl, out),
                   0);
  ck_assert_mem_eq(out, want, ol);

  memset(back, 0xaa, sizeof(back));
  ck_assert_int_eq(
      ntsntp__aead_open(&a, nonce, nl, al ? ad : NULL, al, out, ol, back), 0);
  ck_assert_mem_eq(back, pt, pl);

  /* Any flipped bit, in tag, ciphertext, AD or nonce, must fail; the
   * unauthenticated plaintext must not be left in the output. */
  for (size_t bit = 0; bit < ol * 8; bit += 7) {
    static const uint8_t zero[64];
    out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    memset(back, 0xaa, sizeof(back));
    ck_assert_int_eq(
        ntsntp__aead_open(&a, nonce, nl, al ? ad : NULL, al, out, ol, back),
        NTSNTP_ERR_AUTH);
    ck_assert_mem_eq(back, zero, pl);
    out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  if (al) {
    ad[al - 1] ^= 1;
    ck_assert_int_eq(ntsntp__aead_open(&a, nonce, nl, ad, al, out, ol, back),
                     NTSNTP_ERR_AUTH);
    ad[al - 1] ^= 1;
  }
  nonce[0] ^= 0x80;
  ck_assert_int_eq(
      ntsntp__aead_open(&a, nonce, nl, al ? ad : NULL, al, out, ol, back),
      NTSNTP_ERR_AUTH);
  ntsntp__aead_clear(&a);
}
END_TEST

/*
 * Real exchanges from tests/vectors (chrony 4.3 client against chrony 4.3
 * and NTPsec 1.2.2 servers), hex copied from nts-vectors.json.
 */
typedef struct exchange {
  const char *name, *c2s, *s2c, *req, *resp, *resp_pt;
} exchange;

static const exchange exchanges[] = {
    {"chrony-4.3-client-chrony-4.3-server",
     "32f58419aee75097ce91f20ee4ee45b412a76edad7384952d40a6f5af1f3c741",
     "76e30529fa4f81e87e718b69060ae23567b0f9356c812777c7ef524a0a79f8a7",
     "230006200000000000000000000000000000000000000000000000000000000000000000"
     "0000000022d24f1c62cd13c601040024b7f83997e1ff095db50275457d45d379cd94a1c6"
     "4fdc5ed2db2fd6fb0f45d18b020400680db1728f0e1fcbf628507764db5f1b789e990823"
     "3be84636023205e2e02ec68b48a7da961e4688ed9f7ac0f35eab9c7c08fd17d09d6cda90"
     "2025fbe3320dce14a468a3984c421d6d98f49dee6fc008a6c4c7b5cc677f1935fb3cdf38"
     "02752504fb37c38004040028001000109a84bfbb896a245039e190e0b4803a64856b8a93"
     "8f3270f98b8acca8ad1626ad",
     "240106e600000000000000007f7f0101eeb2158e180fa6e222d24f1c62cd13c6eeb21591"
     "e8270af9eeb21591e82d06d801040024b7f83997e1ff095db50275457d45d379cd94a1c6"
     "4fdc5ed2db2fd6fb0f45d18b04040090001000782d2c5241a9ef4256b4faa65cddbd0b59"
     "5ff36754a45f71b92cbfea8d0c943b9f7a78ba7440d9acc90106b0a12863b1ef6d0d0fee"
     "8b32922124f925b40a1cbe627b96083c0d4408607ab652826052a56a18fb393ac7b4a209"
     "bc138cc9eba4c60056982b2ac003c883a82cd2432ed4381fa580b2f53b450357d080c080"
     "ac725da69742042447bf5cbb",
     "020400680db1728ff651fbc3cb06ef0769d31ddc18162ce75a38748d46bafb6ee6bc47b9"
     "50d64bbc80698896f2384b59018f8d56aeb0408b71874a383a7f8577515e4f0ef1823990"
     "fdb6afa828765fafdbecb20daeb889f23d9cc382099b970862861e4ac4d47bd3"},
    {"chrony-4.3-client-ntpsec-1.2.2-server",
     "bc49a00becf5a59f019de91b3e5b5c287b31267a73364de1fff6448f71cd965c",
     "2c5be8986a1e1592ad2824166c09526d588761f2681321df4aa27849f8066db6",
     "230006200000000000000000000000000000000000000000000000000000000000000000"
     "00000000f1437e02904249bc01040024bcbadc3601f70cb4e529ea5b5f4bdfc5cc10da56"
     "d74af32db2072a85e17f1a9c0204006c5e94dacc6cf438f9ae11d04748d70ad4a4011ddc"
     "efc4a865818d265d096a5098d2bd2d89ad5baeb6c2aeffea32fce4c9bac0d90a57c97201"
     "5753117a83ed93bc6341c253be0e11250653b99a37703587e9cc706e8b0c581c5b19cecd"
     "58e687b1547e10663db6f7f904040028001000102be01e5381d5d67e9b7828f0d9d0f4af"
     "276844ecbf111f975d56b6839866ce18",
     "240106e800000000000000004c4f4f500000000000000000f1437e02904249bceeb21599"
     "9c659305eeb215999c6ea4b701040024bcbadc3601f70cb4e529ea5b5f4bdfc5cc10da56"
     "d74af32db2072a85e17f1a9c040400940010007cc2ec91d9c9d15c09734b8919d838dd2d"
     "eae6459f00483c3a2c4ba9aaeba490bf18f85b9f2a631d42a6bf1073e0d6cbd71b9808c9"
     "d6f1f825c6ec38ba1e0920419d40829a640fae4c095a212819d9c912f8f045622bc12e86"
     "c4c8dad99ab3d9251dd47f412e2ce83c8d2481a8e177664d073a6011e864afc8be2ca8ae"
     "e822092c9f9e7f0d5e1251e6f1e63747",
     "0204006c5e94dacc438a837ac721f2113c955ec114af7a9fb99f4f053592a1de9aa1813b"
     "f1ef4288ad2c639c5f6011b2b5093eee2b5600ce44e0cf1fc72deb260169f0d4e2e348c1"
     "5a037ac45e450c14360850f77dd2c74345c1f9a69b8a4b0a030cb3d09053a1c144e0da7"
     "8"},
};

typedef struct auth {
  size_t ad_len;
  const uint8_t *nonce, *ct;
  size_t nonce_len, ct_len;
} auth;

/* Finds the NTS Authenticator EF (RFC 8915 section 5.6) after the 48-byte
 * header: nonce_len(2) ct_len(2) nonce (padded to 4) ciphertext. */
static void find_auth(const uint8_t *pkt, size_t len, auth *au) {
  ntsntp_rd r, body;
  ntsntp__rd_init(&r, pkt + 48, len - 48);
  for (;;) {
    size_t off = (size_t)(r.p - pkt);
    uint16_t type = ntsntp__rd_u16(&r), eflen = ntsntp__rd_u16(&r);
    ck_assert_int_eq(r.err, 0);
    ck_assert_uint_ge(eflen, 4);
    ntsntp__rd_sub(&r, eflen - 4u, &body);
    ck_assert_int_eq(r.err, 0);
    if (type != 0x0404)
      continue;
    au->ad_len = off;
    au->nonce_len = ntsntp__rd_u16(&body);
    au->ct_len = ntsntp__rd_u16(&body);
    au->nonce = ntsntp__rd_bytes(&body, au->nonce_len);
    ntsntp__rd_bytes(&body, (4 - au->nonce_len % 4) % 4);
    au->ct = ntsntp__rd_bytes(&body, au->ct_len);
    ck_assert_int_eq(body.err, 0);
    return;
  }
}

START_TEST(t_exchange) {
  const exchange *x = &exchanges[_i];
  uint8_t c2s[32], s2c[32], req[300], resp[300], want[200], pt[200];
  size_t reql = tu_unhex(x->req, req, sizeof(req));
  size_t respl = tu_unhex(x->resp, resp, sizeof(resp));
  size_t wl = tu_unhex(x->resp_pt, want, sizeof(want));
  ntsntp__aead ac, as;
  auth au;

  tu_unhex(x->c2s, c2s, sizeof(c2s));
  tu_unhex(x->s2c, s2c, sizeof(s2c));
  ck_assert_int_eq(
      ntsntp__aead_init(&ac, NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, 32), 0);
  ck_assert_int_eq(
      ntsntp__aead_init(&as, NTSNTP_AEAD_AES_SIV_CMAC_256, s2c, 32), 0);

  /* Request: empty plaintext, so only the tag (no output buffer). */
  find_auth(req, reql, &au);
  ck_assert_uint_eq(au.nonce_len, 16);
  ck_assert_uint_eq(au.ct_len, 16);
  ck_assert_int_eq(ntsntp__aead_open(&ac, au.nonce, au.nonce_len, req,
                                     au.ad_len, au.ct, au.ct_len, NULL),
                   0);
  ck_assert_int_eq(ntsntp__aead_open(&as, au.nonce, au.nonce_len, req,
                                     au.ad_len, au.ct, au.ct_len, NULL),
                   NTSNTP_ERR_AUTH);
  /* The context-free check the server uses gives the same answers. */
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, 32,
                                       au.nonce, au.nonce_len, req, au.ad_len,
                                       au.ct),
                   0);
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, s2c, 32,
                                       au.nonce, au.nonce_len, req, au.ad_len,
                                       au.ct),
                   NTSNTP_ERR_AUTH);
  req[1] ^= 0x01; /* stratum, inside the AD */
  ck_assert_int_eq(ntsntp__aead_open(&ac, au.nonce, au.nonce_len, req,
                                     au.ad_len, au.ct, au.ct_len, NULL),
                   NTSNTP_ERR_AUTH);
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, c2s, 32,
                                       au.nonce, au.nonce_len, req, au.ad_len,
                                       au.ct),
                   NTSNTP_ERR_AUTH);
  req[1] ^= 0x01;

  /* Response: the plaintext is a New Cookie EF. */
  find_auth(resp, respl, &au);
  ck_assert_uint_eq(au.ct_len, wl + 16);
  ck_assert_int_eq(ntsntp__aead_open(&as, au.nonce, au.nonce_len, resp,
                                     au.ad_len, au.ct, au.ct_len, pt),
                   0);
  ck_assert_mem_eq(pt, want, wl);
  ck_assert_uint_eq(ntsntp__get_u16(pt), 0x0204);
  resp[au.ad_len - 1] ^= 0x80; /* last byte of the Unique Identifier EF */
  ck_assert_int_eq(ntsntp__aead_open(&as, au.nonce, au.nonce_len, resp,
                                     au.ad_len, au.ct, au.ct_len, pt),
                   NTSNTP_ERR_AUTH);
  resp[au.ad_len - 1] ^= 0x80;

  /* Sealing the same plaintext with the same nonce reproduces the server's
   * authenticator byte for byte (SIV is deterministic). */
  {
    uint8_t ct[200];
    ck_assert_int_eq(ntsntp__aead_seal(&as, au.nonce, au.nonce_len, resp,
                                       au.ad_len, want, wl, ct),
                     0);
    ck_assert_mem_eq(ct, au.ct, au.ct_len);
  }
  ntsntp__aead_clear(&ac);
  ntsntp__aead_clear(&as);
}
END_TEST

/* chrony's cookie (key file chrony-ntskeys.txt, key 0DB1728F): id | nonce |
 * SIV(master, nonce, AD empty, C2S || S2C).  Same AEAD as our cookies. */
START_TEST(t_chrony_cookie) {
  static const char master[] =
      "63BE45A0329585A3B27AC5CB38EB85DB9DF1DDE18BFBC64A0A8811640C29DCB3";
  static const char cookie[] =
      "0db1728f0e1fcbf628507764db5f1b789e9908233be84636023205e2e02ec68b48a7"
      "da961e4688ed9f7ac0f35eab9c7c08fd17d09d6cda902025fbe3320dce14a468a398"
      "4c421d6d98f49dee6fc008a6c4c7b5cc677f1935fb3cdf3802752504fb37c380";
  uint8_t k[32], c[100], pt[64], want[64];
  ntsntp__aead a;

  tu_unhex(master, k, sizeof(k));
  ck_assert_uint_eq(tu_unhex(cookie, c, sizeof(c)), 100);
  tu_unhex(exchanges[0].c2s, want, 32);
  tu_unhex(exchanges[0].s2c, want + 32, 32);
  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_256, k, 32),
                   0);
  ck_assert_int_eq(ntsntp__aead_open(&a, c + 4, 16, NULL, 0, c + 20, 80, pt),
                   0);
  ck_assert_mem_eq(pt, want, 64);
  c[99] ^= 1;
  ck_assert_int_eq(ntsntp__aead_open(&a, c + 4, 16, NULL, 0, c + 20, 80, pt),
                   NTSNTP_ERR_AUTH);
  ntsntp__aead_clear(&a);
}
END_TEST

START_TEST(t_bad_input) {
  static const uint8_t zero[sizeof(ntsntp__aead)];
  uint8_t key[64] = {1}, nonce[16] = {2}, buf[64] = {0}, out[64];
  ntsntp__aead a;
  size_t n;

  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_256, key, 31),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_256, key, 64),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_512, key, 32),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(
      ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_256, NULL, 32),
      NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_384, key, 48),
                   NTSNTP_ERR_UNSUPPORTED);
  ck_assert_int_eq(ntsntp__aead_init(&a, 0, key, 32), NTSNTP_ERR_UNSUPPORTED);
  ck_assert_int_eq(
      ntsntp__aead_init(NULL, NTSNTP_AEAD_AES_SIV_CMAC_256, key, 32),
      NTSNTP_ERR_INVALID_ARG);
#if !NTSNTP_HAVE_GCM_SIV
  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_128_GCM_SIV, key, 16),
                   NTSNTP_ERR_UNSUPPORTED);
#endif
  /* A failed init leaves a context that refuses to work. */
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, 16, NULL, 0, buf, 8, out),
                   NTSNTP_ERR_INVALID_ARG);

  ck_assert_int_eq(ntsntp__aead_init(&a, NTSNTP_AEAD_AES_SIV_CMAC_256, key, 32),
                   0);
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, 0, NULL, 0, buf, 8, out),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_seal(&a, NULL, 16, NULL, 0, buf, 8, out),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, 16, NULL, 4, buf, 8, out),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, 16, NULL, 0, NULL, 8, out),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, 16, NULL, 0, buf, 8, NULL),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(
      ntsntp__aead_seal(&a, nonce, 16, NULL, 0, buf, SIZE_MAX - 8, out),
      NTSNTP_ERR_INVALID_ARG);
  for (n = 0; n < NTSNTP__AEAD_TAG_LEN; n++)
    ck_assert_int_eq(ntsntp__aead_open(&a, nonce, 16, NULL, 0, buf, n, out),
                     NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_open(&a, nonce, 0, NULL, 0, buf, 16, out),
                   NTSNTP_ERR_INVALID_ARG);
  /* A 16-byte all-zero "tag" is just a wrong tag. */
  ck_assert_int_eq(ntsntp__aead_open(&a, nonce, 16, NULL, 0, buf, 16, NULL),
                   NTSNTP_ERR_AUTH);
  ck_assert_int_eq(ntsntp__aead_open(&a, nonce, 16, NULL, 0, buf, 24, NULL),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_open(NULL, nonce, 16, NULL, 0, buf, 24, out),
                   NTSNTP_ERR_INVALID_ARG);

  ntsntp__aead_clear(&a);
  /* The key schedule is gone (what lies past it in the union was never
   * written: init does not clear first). */
  ck_assert_int_eq(a.alg, 0);
  ck_assert_mem_eq(&a.u.s256, zero, sizeof(a.u.s256));
  ck_assert_int_eq(ntsntp__aead_seal(&a, nonce, 16, NULL, 0, buf, 8, out),
                   NTSNTP_ERR_INVALID_ARG);
  ntsntp__aead_clear(NULL);

  /* verify: bad arguments are refused, not authenticated. */
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, key, 31,
                                       nonce, 16, NULL, 0, buf),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, key, 32,
                                       nonce, 0, NULL, 0, buf),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, key, 32,
                                       nonce, 16, NULL, 4, buf),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, NULL, 32,
                                       nonce, 16, NULL, 0, buf),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(ntsntp__aead_verify(NTSNTP_AEAD_AES_SIV_CMAC_256, key, 32,
                                       nonce, 16, NULL, 0, NULL),
                   NTSNTP_ERR_INVALID_ARG);
  ck_assert_int_eq(
      ntsntp__aead_verify(0, key, 32, nonce, 16, NULL, 0, buf),
      NTSNTP_ERR_INVALID_ARG);
}
END_TEST

/* verify agrees with seal for both SIV-CMAC sizes, and rejects any change. */
START_TEST(t_verify) {
  static const int algs[] = {NTSNTP_AEAD_AES_SIV_CMAC_256,
                             NTSNTP_AEAD_AES_SIV_CMAC_512};
  int alg = algs[_i];
  size_t klen = ntsntp__aead_key_len(alg), i;
  uint8_t key[64], nonce[16], ad[100], tag[16];
  ntsntp__aead a;
#define VERIFY()                                                               \
  ntsntp__aead_verify(alg, key, klen, nonce, sizeof(nonce), ad, sizeof(ad), tag)

  for (i = 0; i < sizeof(key); i++)
    key[i] = (uint8_t)(i * 7 + 1);
  for (i = 0; i < sizeof(ad); i++)
    ad[i] = (uint8_t)(i * 13);
  memset(nonce, 0x5a, sizeof(nonce));
  ck_assert_int_eq(ntsntp__aead_init(&a, alg, key, klen), 0);
  ck_assert_int_eq(
      ntsntp__aead_seal(&a, nonce, sizeof(nonce), ad, sizeof(ad), NULL, 0, tag),
      0);
  ntsntp__aead_clear(&a);
  ck_assert_int_eq(VERIFY(), 0);
  ad[99] ^= 1;
  ck_assert_int_eq(VERIFY(), NTSNTP_ERR_AUTH);
  ad[99] ^= 1;
  nonce[0] ^= 1;
  ck_assert_int_eq(VERIFY(), NTSNTP_ERR_AUTH);
  nonce[0] ^= 1;
  key[klen - 1] ^= 1; /* the CTR half: not part of an empty message's tag */
  ck_assert_int_eq(VERIFY(), 0);
  key[0] ^= 1; /* the CMAC half */
  ck_assert_int_eq(VERIFY(), NTSNTP_ERR_AUTH);
  tag[15] ^= 1;
  key[0] ^= 1;
  ck_assert_int_eq(VERIFY(), NTSNTP_ERR_AUTH);
}
#undef VERIFY
END_TEST

/* Nonces come from a per-thread pool: a child after fork() must not draw
 * the nonces its parent draws next. */
START_TEST(t_nonce_fork) {
  uint8_t a[16], b[16], big[100], zero[100] = {0};
  int fd[2], st;
  pid_t pid;

  ck_assert_int_eq(ntsntp_rand_nonce(NULL, a, sizeof(a)), 0); /* fills it */
  ck_assert_int_eq(pipe(fd), 0);
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    uint8_t c[16];
    if (ntsntp_rand_nonce(NULL, c, sizeof(c)) != 0 ||
        write(fd[1], c, sizeof(c)) != (ssize_t)sizeof(c))
      _exit(1);
    _exit(0);
  }
  ck_assert_int_eq(ntsntp_rand_nonce(NULL, a, sizeof(a)), 0);
  ck_assert_int_eq(read(fd[0], b, sizeof(b)), (ssize_t)sizeof(b));
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ck_assert(memcmp(a, b, sizeof(a)) != 0);
  close(fd[0]);
  close(fd[1]);
  /* Larger requests bypass the pool. */
  ck_assert_int_eq(ntsntp_rand_nonce(NULL, big, sizeof(big)), 0);
  ck_assert(memcmp(big, zero, sizeof(big)) != 0);
}
END_TEST

static Suite *aead_suite(void) {
  Suite *s = suite_create("aead");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, t_key_len);
  tcase_add_test(tc, t_nonce_len);
  tcase_add_test(tc, t_nts_auth_parse);
  tcase_add_loop_test(tc, t_verify, 0, 2);
  tcase_add_test(tc, t_nonce_fork);
  tcase_add_loop_test(tc, t_vectors, 0, (int)(sizeof(vecs) / sizeof(vecs[0])));
  tcase_add_loop_test(tc, t_exchange, 0,
                      (int)(sizeof(exchanges) / sizeof(exchanges[0])));
  tcase_add_test(tc, t_chrony_cookie);
  tcase_add_test(tc, t_bad_input);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run(aead_suite());
}
