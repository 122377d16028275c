/*
 * libntsntp: NTPv4 packet codec (RFC 5905) with RFC 7822 extension fields.
 *
 * Decoding never copies: extension fields point into the caller's buffer and
 * stay valid only while that buffer is unchanged.  Wire bytes are never cast
 * to structs.
 */
#ifndef NTSNTP_PKT_H
#define NTSNTP_PKT_H

#include "ntsntp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NTSNTP_PKT_HDR_LEN 48
/* Largest legacy MAC in NTPv4 (key id + SHA-1 digest); RFC 7822 sec. 7.5. */
#define NTSNTP_PKT_MAX_MAC_LEN 24
/* Smallest extension field (RFC 7822 sec. 3). */
#define NTSNTP_PKT_MIN_EF_LEN 16

enum ntsntp_mode {
  NTSNTP_MODE_RESERVED = 0,
  NTSNTP_MODE_ACTIVE = 1,
  NTSNTP_MODE_PASSIVE = 2,
  NTSNTP_MODE_CLIENT = 3,
  NTSNTP_MODE_SERVER = 4,
  NTSNTP_MODE_BROADCAST = 5,
  NTSNTP_MODE_CONTROL = 6,
  NTSNTP_MODE_PRIVATE = 7
};

enum ntsntp_leap {
  NTSNTP_LEAP_NONE = 0,
  NTSNTP_LEAP_INSERT = 1,
  NTSNTP_LEAP_DELETE = 2,
  NTSNTP_LEAP_UNSYNC = 3
};

/* Kiss-o'-Death codes (reference ID of a stratum 0 packet). */
#define NTSNTP_KOD(a, b, c, d)                                                 \
  ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))
#define NTSNTP_KOD_RATE NTSNTP_KOD('R', 'A', 'T', 'E')
#define NTSNTP_KOD_DENY NTSNTP_KOD('D', 'E', 'N', 'Y')
#define NTSNTP_KOD_RSTR NTSNTP_KOD('R', 'S', 'T', 'R')
#define NTSNTP_KOD_NTSN NTSNTP_KOD('N', 'T', 'S', 'N')

/* Reference ID of the local clock (chrony's "local" and 127.127.1.1). */
#define NTSNTP_REFID_LOCAL 0x7F7F0101u

/* Extension field types used by NTS (RFC 8915 sec. 5.7). */
#define NTSNTP_EF_UNIQUE_ID 0x0104
#define NTSNTP_EF_COOKIE 0x0204
#define NTSNTP_EF_COOKIE_PLACEHOLDER 0x0304
#define NTSNTP_EF_AUTHENTICATOR 0x0404

typedef struct ntsntp_pkt_hdr {
  uint8_t leap;    /* 2 bits */
  uint8_t version; /* 3 bits */
  uint8_t mode;    /* 3 bits */
  uint8_t stratum;
  int8_t poll;
  int8_t precision;
  uint32_t root_delay; /* NTP short format */
  uint32_t root_disp;  /* NTP short format */
  uint32_t refid;
  uint64_t ref_ts;
  uint64_t org_ts;
  uint64_t rx_ts;
  uint64_t tx_ts;
} ntsntp_pkt_hdr;

/*
 * Decodes the 48-byte header at |p|.
 * Errors: TRUNCATED (|len| < 48).  Field values are not judged here.
 */
NTSNTP_EXTERN int ntsntp_pkt_decode_hdr(ntsntp_pkt_hdr *h, const uint8_t *p,
                                        size_t len);

/*
 * Formats a reference ID as text for people: "7F7F0101 127.127.1.1" for an
 * address, or "52415445 \"RATE\"" when |stratum| is 0 or 1 and the ID is
 * printable (a kiss code or a reference clock name).  Always
 * NUL-terminates |buf| (24 bytes suffice).
 */
NTSNTP_EXTERN void ntsntp_refid_format(uint32_t refid, uint8_t stratum,
                                       char *buf, size_t len);

/* "no-leap", "add-leap", "del-leap" or "no-sync" (sntp's words). */
NTSNTP_EXTERN const char *ntsntp_leap_name(unsigned leap);

/* Encodes |h| into 48 bytes at |out|. */
NTSNTP_EXTERN void ntsntp_pkt_encode_hdr(const ntsntp_pkt_hdr *h,
                                         uint8_t *out);

/* One extension field; |body| points into the packet. */
typedef struct ntsntp_ef {
  uint16_t type;
  const uint8_t *start; /* first byte of the field header */
  size_t len;           /* whole field, header and padding included */
  const uint8_t *body;
  size_t body_len; /* len - 4 (padding included) */
} ntsntp_ef;

/* Iterator over the extension fields of an NTPv4 packet. */
typedef struct ntsntp_ef_iter {
  const uint8_t *pkt;
  size_t len;
  size_t off;     /* next field, or start of the MAC when done */
  size_t min_len; /* smallest field accepted */
  size_t mac_len; /* set when done: bytes left over for a legacy MAC */
  int err;        /* sticky: 0, or BAD_EF */
  int done;
} ntsntp_ef_iter;

/*
 * Starts iterating the fields after the header of |pkt|.  |len| >= 48.
 * |min_ef_len| is the smallest field accepted: NTSNTP_PKT_MIN_EF_LEN
 * (RFC 7822) for NTP traffic; 4 for parsing the plaintext inside an NTS
 * authenticator, where any aligned field is allowed.
 */
NTSNTP_EXTERN void ntsntp_ef_iter_init(ntsntp_ef_iter *it, const uint8_t *pkt,
                                       size_t len, size_t off,
                                       size_t min_ef_len);

/*
 * Returns 1 and fills |ef| with the next field, 0 when there are no more
 * (what remains, at most 24 bytes, is a legacy MAC: it->mac_len), or
 * BAD_EF when a field's length is below the minimum, not a multiple of 4,
 * or runs past the end.  The error is sticky.
 */
NTSNTP_EXTERN int ntsntp_ef_next(ntsntp_ef_iter *it, ntsntp_ef *ef);

/*
 * Writes an extension field of |type| with |body_len| bytes of |body|,
 * zero-padded to a multiple of 4 and to at least |min_len| bytes in all.
 * |min_len| 0 means NTSNTP_PKT_MIN_EF_LEN (16), the smallest field of an
 * NTP packet; 4 is the smallest inside an NTS ciphertext.  In an NTP packet
 * without a legacy MAC the last field must be longer than 24 bytes (RFC
 * 7822 sec. 7.5), or the decoder reads it as a MAC: give the last field
 * |min_len| 28.
 * Returns the field length.
 * Errors: INVALID_ARG (|min_len| 1 to 3, or a field over 65535 bytes),
 * NOBUF.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_ef_encode(uint8_t *out, size_t outlen,
                                            uint16_t type, const uint8_t *body,
                                            size_t body_len, size_t min_len);

/*
 * A whole packet decoded: header, fields (at most NTSNTP_PKT_MAX_EFS) and
 * the legacy MAC if any.  Decoding then ntsntp_pkt_encode gives the same
 * bytes.
 */
#define NTSNTP_PKT_MAX_EFS 32
typedef struct ntsntp_pkt {
  ntsntp_pkt_hdr hdr;
  size_t n_efs;
  ntsntp_ef efs[NTSNTP_PKT_MAX_EFS];
  const uint8_t *mac;
  size_t mac_len;
} ntsntp_pkt;

/*
 * Decodes a whole packet.  NTPv4 packets may carry fields; packets of other
 * versions only a MAC (anything after the header that is not a MAC is
 * BAD_EF for them).  Errors: TRUNCATED, BAD_EF, TOO_LARGE (more than
 * NTSNTP_PKT_MAX_EFS fields).
 */
NTSNTP_EXTERN int ntsntp_pkt_decode(ntsntp_pkt *pkt, const uint8_t *p,
                                    size_t len);

/*
 * Encodes |pkt|: fields are written from |type|, |body| and |body_len|
 * (|start| and |len| are not read).  Encodes only what ntsntp_pkt_decode
 * gives back field for field.  Returns the length.
 * Errors: INVALID_ARG (more than NTSNTP_PKT_MAX_EFS fields; fields in a
 * packet whose version is not 4; a body not a multiple of 4 or under 12
 * bytes; a legacy MAC not 0, 4, 20 or 24 bytes; a last field that, with
 * the MAC, is 24 bytes or less), NOBUF.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_pkt_encode(const ntsntp_pkt *pkt,
                                             uint8_t *out, size_t outlen);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_PKT_H */
