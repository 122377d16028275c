/*
 * Fuzz target: ntsntp_pkt_decode.  Whatever decodes must encode back to
 * the very same bytes, and decoding those must give the same fields
 * (ntpd-rs packet_parsing_sound.rs).
 */
#include "fuzz_common.h"

/* Field by field: the struct has padding. */
static int same_hdr(const ntsntp_pkt_hdr *a, const ntsntp_pkt_hdr *b) {
  return a->leap == b->leap && a->version == b->version &&
         a->mode == b->mode && a->stratum == b->stratum &&
         a->poll == b->poll && a->precision == b->precision &&
         a->root_delay == b->root_delay && a->root_disp == b->root_disp &&
         a->refid == b->refid && a->ref_ts == b->ref_ts &&
         a->org_ts == b->org_ts && a->rx_ts == b->rx_ts &&
         a->tx_ts == b->tx_ts;
}

static void same_pkt(const ntsntp_pkt *a, const ntsntp_pkt *b) {
  size_t i;
  FZ_CHECK(same_hdr(&a->hdr, &b->hdr));
  FZ_CHECK(a->n_efs == b->n_efs);
  for (i = 0; i < a->n_efs; i++) {
    FZ_CHECK(a->efs[i].type == b->efs[i].type);
    FZ_CHECK(a->efs[i].len == b->efs[i].len);
    FZ_CHECK(a->efs[i].body_len == b->efs[i].body_len);
    FZ_CHECK(memcmp(a->efs[i].body, b->efs[i].body, a->efs[i].body_len) == 0);
  }
  FZ_CHECK(a->mac_len == b->mac_len);
  FZ_CHECK(!a->mac_len || memcmp(a->mac, b->mac, a->mac_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ntsntp_pkt p, q;
  ntsntp_pkt_hdr h;
  uint8_t *out;
  ntsntp_ssize n;
  size_t i, pos;

  if (ntsntp_pkt_decode(&p, data, size))
    return 0;
  FZ_CHECK(size >= NTSNTP_PKT_HDR_LEN);
  FZ_CHECK(p.n_efs <= NTSNTP_PKT_MAX_EFS);
  /* The fields tile the packet: header, fields in order, then the MAC. */
  pos = NTSNTP_PKT_HDR_LEN;
  for (i = 0; i < p.n_efs; i++) {
    FZ_CHECK(p.efs[i].start == data + pos);
    FZ_CHECK(p.efs[i].len >= NTSNTP_PKT_MIN_EF_LEN && p.efs[i].len % 4 == 0);
    FZ_CHECK(p.efs[i].body == p.efs[i].start + 4);
    FZ_CHECK(p.efs[i].body_len == p.efs[i].len - 4);
    pos += p.efs[i].len;
  }
  FZ_CHECK(pos + p.mac_len == size);
  FZ_CHECK(p.mac_len <= NTSNTP_PKT_MAX_MAC_LEN);
  FZ_CHECK(!p.mac_len || p.mac == data + pos);

  /* Exact size must suffice; one byte less must not. */
  out = malloc(size);
  FZ_CHECK(out != NULL);
  n = ntsntp_pkt_encode(&p, out, size);
  FZ_CHECK(n == (ntsntp_ssize)size);
  FZ_CHECK(memcmp(out, data, size) == 0);
  FZ_CHECK(ntsntp_pkt_encode(&p, out, size - 1) == NTSNTP_ERR_NOBUF);
  FZ_CHECK(ntsntp_pkt_decode(&q, out, size) == 0);
  same_pkt(&p, &q);
  free(out);

  /* The header codec on its own agrees too. */
  FZ_CHECK(ntsntp_pkt_decode_hdr(&h, data, size) == 0);
  FZ_CHECK(same_hdr(&h, &p.hdr));
  return 0;
}
