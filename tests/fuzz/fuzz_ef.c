/*
 * Fuzz target: the extension-field iterator, with the NTP minimum (16)
 * and the minimum used inside NTS ciphertexts (4).
 * Input: [flags][offset][buffer...]; flags bit 0 set: min 16.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ntsntp_ef_iter it;
  ntsntp_ef ef;
  const uint8_t *buf;
  size_t len, off, min, pos, count = 0;
  int rv;

  if (size < 2)
    return 0;
  min = data[0] & 1 ? NTSNTP_PKT_MIN_EF_LEN : 4;
  off = data[1];
  buf = data + 2;
  len = size - 2;
  ntsntp_ef_iter_init(&it, buf, len, off, min);
  pos = off > len ? len : off;
  while ((rv = ntsntp_ef_next(&it, &ef)) == 1) {
    FZ_CHECK(ef.start == buf + pos);
    FZ_CHECK(ef.len >= min && ef.len % 4 == 0);
    FZ_CHECK(ef.len <= len - pos);
    FZ_CHECK(ef.type == (uint16_t)(ef.start[0] << 8 | ef.start[1]));
    FZ_CHECK(ef.len == (size_t)(ef.start[2] << 8 | ef.start[3]));
    FZ_CHECK(ef.body == ef.start + 4 && ef.body_len == ef.len - 4);
    pos += ef.len;
    FZ_CHECK(it.off == pos);
    FZ_CHECK(++count <= len / 4);
  }
  if (rv == 0) {
    /* Done: what is left is a legacy MAC (NTP) or nothing (NTS). */
    FZ_CHECK(it.done && it.err == 0);
    FZ_CHECK(pos + it.mac_len == len);
    if (min >= NTSNTP_PKT_MIN_EF_LEN)
      FZ_CHECK(it.mac_len == 0 || it.mac_len == 4 || it.mac_len == 20 ||
               it.mac_len == 24);
    else
      FZ_CHECK(it.mac_len == 0);
  } else {
    FZ_CHECK(rv == NTSNTP_ERR_BAD_EF && it.err == rv);
  }
  /* Both end states are sticky. */
  FZ_CHECK(ntsntp_ef_next(&it, &ef) == rv);
  FZ_CHECK(ntsntp_ef_next(&it, &ef) == rv);
  return 0;
}
