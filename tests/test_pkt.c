/* Packet codec: header, extension fields, round trips, bad input. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ntsntp/pkt.h"
#include "testutil.h"

/* chrony 4.3's NTS request from tests/vectors (228 bytes). */
static const char *chrony_req_hex =
    "2300062000000000000000000000000000000000000000000000000000000000"
    "000000000000000022d24f1c62cd13c601040024b7f83997e1ff095db5027545"
    "7d45d379cd94a1c64fdc5ed2db2fd6fb0f45d18b020400680db1728f0e1fcbf6"
    "28507764db5f1b789e9908233be84636023205e2e02ec68b48a7da961e4688ed"
    "9f7ac0f35eab9c7c08fd17d09d6cda902025fbe3320dce14a468a3984c421d6d"
    "98f49dee6fc008a6c4c7b5cc677f1935fb3cdf3802752504fb37c38004040028"
    "001000109a84bfbb896a245039e190e0b4803a64856b8a938f3270f98b8acca8"
    "ad1626ad";

START_TEST(test_hdr_roundtrip) {
  uint8_t b[48], out[48];
  ntsntp_pkt_hdr h;
  size_t i;
  for (i = 0; i < sizeof(b); i++)
    b[i] = (uint8_t)(i * 37 + 11);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, b, sizeof(b)), 0);
  ck_assert_uint_eq(h.leap, b[0] >> 6);
  ck_assert_uint_eq(h.version, (b[0] >> 3) & 7);
  ck_assert_uint_eq(h.mode, b[0] & 7);
  ntsntp_pkt_encode_hdr(&h, out);
  ck_assert_mem_eq(b, out, 48);
}
END_TEST

START_TEST(test_hdr_every_short_length) {
  uint8_t b[48] = {0x23};
  ntsntp_pkt_hdr h;
  size_t n;
  for (n = 0; n < 48; n++)
    ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, b, n), NTSNTP_ERR_TRUNCATED);
  ck_assert_int_eq(ntsntp_pkt_decode_hdr(&h, b, 48), 0);
}
END_TEST

START_TEST(test_real_request_fields) {
  uint8_t buf[512], out[512];
  size_t len = tu_unhex(chrony_req_hex, buf, sizeof(buf));
  ntsntp_pkt pkt;
  ntsntp_ssize n;
  ck_assert_uint_eq(len, 228);
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, buf, len), 0);
  ck_assert_uint_eq(pkt.hdr.version, 4);
  ck_assert_uint_eq(pkt.hdr.mode, 3);
  ck_assert_uint_eq(pkt.n_efs, 3);
  ck_assert_uint_eq(pkt.efs[0].type, NTSNTP_EF_UNIQUE_ID);
  ck_assert_uint_eq(pkt.efs[0].len, 36);
  ck_assert_uint_eq(pkt.efs[1].type, NTSNTP_EF_COOKIE);
  ck_assert_uint_eq(pkt.efs[1].len, 104);
  ck_assert_uint_eq(pkt.efs[2].type, NTSNTP_EF_AUTHENTICATOR);
  ck_assert_uint_eq(pkt.mac_len, 0);
  n = ntsntp_pkt_encode(&pkt, out, sizeof(out));
  ck_assert_int_eq(n, (ntsntp_ssize)len);
  ck_assert_mem_eq(out, buf, len);
  /* Too small an output buffer: NOBUF at every size. */
  for (size_t k = 0; k < len; k++)
    ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, k), NTSNTP_ERR_NOBUF);
}
END_TEST

START_TEST(test_mac_after_header) {
  uint8_t b[48 + 24];
  ntsntp_pkt pkt;
  memset(b, 0, sizeof(b));
  b[0] = 0x23;
  /* 20 and 24 bytes after the header are legacy MACs, not fields. */
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 68), 0);
  ck_assert_uint_eq(pkt.n_efs, 0);
  ck_assert_uint_eq(pkt.mac_len, 20);
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 72), 0);
  ck_assert_uint_eq(pkt.mac_len, 24);
  /* NTPv3 with a MAC is fine; other trailing lengths are not. */
  b[0] = 0x1b;
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 72), 0);
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 52), 0);
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 60), NTSNTP_ERR_BAD_EF);
  b[0] = 0x23;
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 60), NTSNTP_ERR_BAD_EF);
}
END_TEST

START_TEST(test_bad_ef_lengths) {
  uint8_t b[48 + 64];
  ntsntp_pkt pkt;
  static const uint16_t bad[] = {0, 4, 8, 12, 15, 17, 18, 19, 33, 68, 1000};
  size_t i;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(b, 0, sizeof(b));
    b[0] = 0x23;
    b[48] = 0x12;
    b[49] = 0x34;
    b[50] = (uint8_t)(bad[i] >> 8);
    b[51] = (uint8_t)bad[i];
    ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, sizeof(b)), NTSNTP_ERR_BAD_EF);
  }
  /* A field of 16 then 12 bytes: not a MAC length, BAD_EF. */
  memset(b, 0, sizeof(b));
  b[0] = 0x23;
  b[51] = 16;
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 48 + 28), NTSNTP_ERR_BAD_EF);
  /* A v3 packet with 28 extra bytes: not a MAC, no fields in v3. */
  b[0] = 0x1b;
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, 48 + 28), NTSNTP_ERR_BAD_EF);
}
END_TEST

START_TEST(test_ef_iter_and_encode) {
  uint8_t b[256], body[7] = {1, 2, 3, 4, 5, 6, 7};
  ntsntp_ef_iter it;
  ntsntp_ef ef;
  ntsntp_ssize n;
  memset(b, 0, 48);
  b[0] = 0x23;
  n = ntsntp_ef_encode(b + 48, sizeof(b) - 48, 0x0104, body, sizeof(body), 16);
  ck_assert_int_eq(n, 16);
  n = ntsntp_ef_encode(b + 64, sizeof(b) - 64, 0x0204, body, 3, 28);
  ck_assert_int_eq(n, 28);
  ck_assert_int_eq(ntsntp_ef_encode(b, 10, 0x1, body, 7, 0), NTSNTP_ERR_NOBUF);
  ntsntp_ef_iter_init(&it, b, 48 + 16 + 28, 48, NTSNTP_PKT_MIN_EF_LEN);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 1);
  ck_assert_uint_eq(ef.type, 0x0104);
  ck_assert_uint_eq(ef.body_len, 12);
  ck_assert_mem_eq(ef.body, body, 7);
  ck_assert_uint_eq(ef.body[7], 0);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 1);
  ck_assert_uint_eq(ef.len, 28);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 0);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 0);
  /* Inside a ciphertext (min 4): a 4-byte field is fine, a stray byte not. */
  ntsntp_ef_encode(b, 8, 0x0304, NULL, 0, 4);
  ntsntp_ef_iter_init(&it, b, 4, 0, 4);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 1);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 0);
  ntsntp_ef_iter_init(&it, b, 5, 0, 4);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), 1);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), NTSNTP_ERR_BAD_EF);
  ck_assert_int_eq(ntsntp_ef_next(&it, &ef), NTSNTP_ERR_BAD_EF);
}
END_TEST

START_TEST(test_too_many_efs) {
  uint8_t b[48 + 28 * (NTSNTP_PKT_MAX_EFS + 1)];
  ntsntp_pkt pkt;
  size_t i;
  memset(b, 0, sizeof(b));
  b[0] = 0x23;
  for (i = 0; i <= NTSNTP_PKT_MAX_EFS; i++)
    ntsntp_ef_encode(b + 48 + 28 * i, 28, 0x7777, NULL, 0, 28);
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, sizeof(b)), NTSNTP_ERR_TOO_LARGE);
  ck_assert_int_eq(ntsntp_pkt_decode(&pkt, b, sizeof(b) - 28), 0);
  ck_assert_uint_eq(pkt.n_efs, NTSNTP_PKT_MAX_EFS);
}
END_TEST

/* Decode then encode gives the same bytes, for random well-formed packets,
 * and random garbage never crashes the decoder. */
START_TEST(test_random_roundtrip) {
  uint8_t b[600], out[600];
  ntsntp_pkt pkt;
  unsigned seed = 12345;
  int i, ok = 0;
  for (i = 0; i < 20000; i++) {
    size_t len = 48 + (size_t)(rand_r(&seed) % 500), off = 48, j;
    for (j = 0; j < len; j++)
      b[j] = (uint8_t)rand_r(&seed);
    b[0] = (uint8_t)((b[0] & 0xc7) | 0x20); /* version 4 */
    if (i & 1) /* make well-formed fields most of the time */
      while (len - off > 24) {
        size_t fl = 16 + 4 * (size_t)(rand_r(&seed) % 8);
        if (fl > len - off)
          fl = len - off - (len - off) % 4;
        if (fl < 16)
          break;
        b[off + 2] = (uint8_t)(fl >> 8);
        b[off + 3] = (uint8_t)fl;
        off += fl;
      }
    if (ntsntp_pkt_decode(&pkt, b, len) == 0) {
      ok++;
      ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)),
                       (ntsntp_ssize)len);
      ck_assert_mem_eq(out, b, len);
    }
  }
  ck_assert_int_gt(ok, 1000);
}
END_TEST

/* What the encoder writes always decodes to the same fields; what it
 * cannot write that way it refuses. */
START_TEST(test_encode_decodes_back) {
  static const uint8_t zero[64];
  static const size_t macs[] = {0, 4, 8, 20, 24};
  uint8_t out[600];
  ntsntp_pkt pkt, back;
  unsigned seed = 777;
  int i, ok = 0, refused = 0;
  for (i = 0; i < 20000; i++) {
    size_t k;
    ntsntp_ssize n;
    memset(&pkt, 0, sizeof(pkt));
    pkt.hdr.version = (uint8_t)(rand_r(&seed) % 5 ? 4 : 3);
    pkt.hdr.mode = 3;
    pkt.n_efs = (size_t)(rand_r(&seed) % 4);
    for (k = 0; k < pkt.n_efs; k++) {
      pkt.efs[k].type = (uint16_t)(0x100 + k);
      pkt.efs[k].body = zero;
      pkt.efs[k].body_len = 4 * (size_t)(rand_r(&seed) % 12);
    }
    pkt.mac_len = macs[rand_r(&seed) % 5];
    pkt.mac = pkt.mac_len ? zero : NULL;
    n = ntsntp_pkt_encode(&pkt, out, sizeof(out));
    if (n < 0) {
      ck_assert_int_eq(n, NTSNTP_ERR_INVALID_ARG);
      refused++;
      continue;
    }
    ok++;
    ck_assert_int_eq(ntsntp_pkt_decode(&back, out, (size_t)n), 0);
    ck_assert_uint_eq(back.n_efs, pkt.n_efs);
    ck_assert_uint_eq(back.mac_len, pkt.mac_len);
    for (k = 0; k < pkt.n_efs; k++) {
      ck_assert_uint_eq(back.efs[k].type, pkt.efs[k].type);
      ck_assert_uint_eq(back.efs[k].body_len, pkt.efs[k].body_len);
    }
  }
  ck_assert_int_gt(ok, 1000);
  ck_assert_int_gt(refused, 1000);
  /* The cases one by one. */
  memset(&pkt, 0, sizeof(pkt));
  pkt.hdr.version = 4;
  pkt.n_efs = 1;
  pkt.efs[0].body = zero;
  pkt.efs[0].body_len = 8; /* 12 bytes: under the minimum of 16 */
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)),
                   NTSNTP_ERR_INVALID_ARG);
  pkt.efs[0].body_len = 20; /* 24 bytes, last: read back as a MAC */
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)),
                   NTSNTP_ERR_INVALID_ARG);
  pkt.efs[0].body_len = 24;
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)), 48 + 28);
  pkt.mac = zero;
  pkt.mac_len = 8; /* not a MAC length */
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)),
                   NTSNTP_ERR_INVALID_ARG);
  pkt.efs[0].body_len = 12; /* 16-byte field + 20-byte MAC: fine */
  pkt.mac_len = 20;
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)), 48 + 36);
  pkt.mac_len = 4; /* 16 + 4 = 20: decoded as one MAC */
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)),
                   NTSNTP_ERR_INVALID_ARG);
  pkt.mac_len = 0;
  pkt.efs[0].body_len = 24;
  pkt.hdr.version = 3; /* no fields before NTPv4 */
  ck_assert_int_eq(ntsntp_pkt_encode(&pkt, out, sizeof(out)),
                   NTSNTP_ERR_INVALID_ARG);
  /* ntsntp_ef_encode: 0 means the NTP minimum, 1-3 is refused. */
  ck_assert_int_eq(ntsntp_ef_encode(out, sizeof(out), 1, NULL, 0, 0), 16);
  ck_assert_int_eq(ntsntp_ef_encode(out, sizeof(out), 1, NULL, 0, 4), 4);
  ck_assert_int_eq(ntsntp_ef_encode(out, sizeof(out), 1, NULL, 0, 3),
                   NTSNTP_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_refid_text) {
  char b[32];
  ntsntp_refid_format(NTSNTP_REFID_LOCAL, 10, b, sizeof(b));
  ck_assert_str_eq(b, "7F7F0101 127.127.1.1");
  ntsntp_refid_format(NTSNTP_KOD_RATE, 0, b, sizeof(b));
  ck_assert_str_eq(b, "52415445 \"RATE\"");
  ntsntp_refid_format(NTSNTP_KOD('G', 'P', 'S', 0), 1, b, sizeof(b));
  ck_assert_str_eq(b, "47505300 \"GPS\"");
  /* chrony's local reference at stratum 1 is not text. */
  ntsntp_refid_format(NTSNTP_REFID_LOCAL, 1, b, sizeof(b));
  ck_assert_str_eq(b, "7F7F0101 127.127.1.1");
  /* A small buffer is cut, still terminated. */
  ntsntp_refid_format(NTSNTP_KOD_NTSN, 0, b, 5);
  ck_assert_str_eq(b, "4E54");
  ck_assert_str_eq(ntsntp_leap_name(3), "no-sync");
  ck_assert_str_eq(ntsntp_leap_name(4), "no-leap");
}
END_TEST

int main(void) {
  Suite *s = suite_create("pkt");
  TCase *tc = tcase_create("codec");
  tcase_add_test(tc, test_hdr_roundtrip);
  tcase_add_test(tc, test_hdr_every_short_length);
  tcase_add_test(tc, test_real_request_fields);
  tcase_add_test(tc, test_mac_after_header);
  tcase_add_test(tc, test_bad_ef_lengths);
  tcase_add_test(tc, test_ef_iter_and_encode);
  tcase_add_test(tc, test_too_many_efs);
  tcase_add_test(tc, test_random_roundtrip);
  tcase_add_test(tc, test_encode_decodes_back);
  tcase_add_test(tc, test_refid_text);
  suite_add_tcase(s, tc);
  return tu_run(s);
}
