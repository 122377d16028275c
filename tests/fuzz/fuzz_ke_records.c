/*
 * Fuzz target: the NTS-KE record codec (lib/ke.c).
 *
 * The input is an NTS-KE message, request or response.  Checks:
 *   - ntsntp_ke_check_framing and ntsntp_ke_parse agree (AGAIN/BAD_RECORD
 *     from framing come back from parse), and parse never reads outside
 *     the input: every pointer it returns lies inside it;
 *   - a message that parses has every strict prefix incomplete (AGAIN);
 *   - encode -> parse round trip: the parsed fields written back with
 *     ntsntp_ke_wr_record/_u16s parse to the same fields.
 */
#include "fuzz_common.h"
#include "ntsntp/ke.h"

#define OUT (NTSNTP_KE_MAX_MESSAGE * 2)

static int inside(const uint8_t *p, size_t n, const uint8_t *data,
                  size_t size) {
  return p >= data && n <= size && p - data <= (ptrdiff_t)(size - n);
}

/* Appends the record from a writer call, or fails the target. */
#define PUT(call)                                                              \
  do {                                                                         \
    ntsntp_ssize n_ = (call);                                                  \
    FZ_CHECK(n_ > 0);                                                          \
    len += (size_t)n_;                                                         \
  } while (0)

static void round_trip(const ntsntp_ke_msg *m) {
  static uint8_t out[OUT];
  uint16_t v[NTSNTP_KE_MAX_MESSAGE / 2];
  ntsntp_ke_msg m2;
  size_t len = 0, i;
  int rv;

  if (m->has_protos) {
    for (i = 0; i < m->nprotos; i++)
      v[i] = ntsntp_ke_msg_proto(m, i);
    PUT(ntsntp_ke_wr_u16s(out + len, OUT - len, 1, NTSNTP_KE_REC_NEXT_PROTOCOL,
                          v, m->nprotos));
  }
  if (m->has_error) {
    v[0] = m->error_code;
    PUT(ntsntp_ke_wr_u16s(out + len, OUT - len, 1, NTSNTP_KE_REC_ERROR, v, 1));
  }
  if (m->has_warning) {
    v[0] = m->warning_code;
    PUT(ntsntp_ke_wr_u16s(out + len, OUT - len, 1, NTSNTP_KE_REC_WARNING, v,
                          1));
  }
  if (m->has_aeads) {
    for (i = 0; i < m->naeads; i++)
      v[i] = ntsntp_ke_msg_aead(m, i);
    PUT(ntsntp_ke_wr_u16s(out + len, OUT - len, 0, NTSNTP_KE_REC_AEAD, v,
                          m->naeads));
  }
  for (i = 0; i < m->ncookies; i++)
    PUT(ntsntp_ke_wr_record(out + len, OUT - len, 0, NTSNTP_KE_REC_COOKIE,
                            m->cookies[i], m->cookie_len[i]));
  if (m->has_server)
    PUT(ntsntp_ke_wr_record(out + len, OUT - len, 0, NTSNTP_KE_REC_SERVER,
                            m->server, strlen(m->server)));
  if (m->has_port) {
    v[0] = m->port;
    PUT(ntsntp_ke_wr_u16s(out + len, OUT - len, 0, NTSNTP_KE_REC_PORT, v, 1));
  }
  if (m->compliant_128gcm)
    PUT(ntsntp_ke_wr_record(out + len, OUT - len, 0,
                            NTSNTP_KE_REC_COMPLIANT_128GCM, NULL, 0));
  PUT(ntsntp_ke_wr_record(out + len, OUT - len, 1, NTSNTP_KE_REC_END, NULL, 0));

  FZ_CHECK(ntsntp_ke_check_framing(out, len) == 0);
  rv = ntsntp_ke_parse(out, len, &m2);
  FZ_CHECK(rv == 0);
  FZ_CHECK(m2.len == len && m2.end);
  FZ_CHECK(m2.has_protos == m->has_protos && m2.nprotos == m->nprotos);
  FZ_CHECK(m->nprotos == 0 ||
           memcmp(m2.protos, m->protos, 2 * m->nprotos) == 0);
  FZ_CHECK(m2.has_aeads == m->has_aeads && m2.naeads == m->naeads);
  FZ_CHECK(m->naeads == 0 || memcmp(m2.aeads, m->aeads, 2 * m->naeads) == 0);
  FZ_CHECK(m2.ncookies == m->ncookies && m2.ncookies_total == m->ncookies);
  for (i = 0; i < m->ncookies; i++)
    FZ_CHECK(m2.cookie_len[i] == m->cookie_len[i] &&
             memcmp(m2.cookies[i], m->cookies[i], m->cookie_len[i]) == 0);
  FZ_CHECK(m2.has_server == m->has_server &&
           strcmp(m2.server, m->server) == 0);
  FZ_CHECK(m2.has_port == m->has_port && m2.port == m->port);
  FZ_CHECK(m2.has_error == m->has_error && m2.error_code == m->error_code);
  FZ_CHECK(m2.has_warning == m->has_warning &&
           m2.warning_code == m->warning_code);
  FZ_CHECK(m2.compliant_128gcm == m->compliant_128gcm);
  FZ_CHECK(m2.nunknown == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ntsntp_ke_msg m;
  int framing, rv;
  size_t i;

  framing = ntsntp_ke_check_framing(data, size);
  FZ_CHECK(framing == 0 || framing == NTSNTP_ERR_AGAIN ||
           framing == NTSNTP_ERR_BAD_RECORD);
  rv = ntsntp_ke_parse(data, size, &m);
  FZ_CHECK(rv == 0 || rv == NTSNTP_ERR_AGAIN || rv == NTSNTP_ERR_BAD_RECORD ||
           rv == NTSNTP_ERR_UNSUPPORTED);
  if (framing != 0) {
    FZ_CHECK(rv == framing);
    return 0;
  }
  /* Whatever was parsed, also on failure, points into the input. */
  FZ_CHECK(m.ncookies <= NTSNTP_KE_MAX_COOKIES &&
           m.ncookies <= m.ncookies_total);
  for (i = 0; i < m.ncookies; i++)
    FZ_CHECK(m.cookie_len[i] > 0 &&
             inside(m.cookies[i], m.cookie_len[i], data, size));
  if (m.has_protos && m.nprotos)
    FZ_CHECK(inside(m.protos, 2 * m.nprotos, data, size));
  if (m.has_aeads && m.naeads)
    FZ_CHECK(inside(m.aeads, 2 * m.naeads, data, size));
  FZ_CHECK(strlen(m.server) <= NTSNTP_KE_MAX_SERVER_LEN);
  if (rv != 0)
    return 0;

  FZ_CHECK(m.end && m.len == size);
  /* A complete message has no complete strict prefix. */
  if (size > 0)
    FZ_CHECK(ntsntp_ke_check_framing(data, size - 1) == NTSNTP_ERR_AGAIN);
  if (size > 4)
    FZ_CHECK(ntsntp_ke_check_framing(data, size / 2) == NTSNTP_ERR_AGAIN);
  round_trip(&m);
  return 0;
}
