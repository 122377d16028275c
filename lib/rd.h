/*
 * Bounds-checked cursors for untrusted input (rd) and output buffers (wr).
 *
 * Every read checks the remaining length first; on failure the cursor's
 * sticky |err| is set and the read returns 0/NULL, so parsers read straight
 * through and check |err| once (BearSSL style).  A length-prefixed item gets
 * a sub-cursor that must be consumed exactly (picotls style).
 */
#ifndef NTSNTP_RD_H
#define NTSNTP_RD_H

#include <stdint.h>
#include <string.h>

#include "ntsntp/common.h"

typedef struct ntsntp_rd {
  const uint8_t *p, *end;
  int err;
} ntsntp_rd;

static inline void ntsntp__rd_init(ntsntp_rd *r, const uint8_t *p, size_t len) {
  r->p = p;
  r->end = p + len;
  r->err = 0;
}

static inline size_t ntsntp__rd_left(const ntsntp_rd *r) {
  return (size_t)(r->end - r->p);
}

static inline int ntsntp__rd_need(ntsntp_rd *r, size_t n) {
  if (r->err)
    return 0;
  if (n > ntsntp__rd_left(r)) {
    r->err = NTSNTP_ERR_TRUNCATED;
    return 0;
  }
  return 1;
}

static inline uint8_t ntsntp__rd_u8(ntsntp_rd *r) {
  if (!ntsntp__rd_need(r, 1))
    return 0;
  return *r->p++;
}

static inline uint16_t ntsntp__rd_u16(ntsntp_rd *r) {
  uint16_t v;
  if (!ntsntp__rd_need(r, 2))
    return 0;
  v = (uint16_t)((uint16_t)r->p[0] << 8 | r->p[1]);
  r->p += 2;
  return v;
}

static inline uint32_t ntsntp__rd_u32(ntsntp_rd *r) {
  uint32_t v;
  if (!ntsntp__rd_need(r, 4))
    return 0;
  v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
      (uint32_t)r->p[2] << 8 | r->p[3];
  r->p += 4;
  return v;
}

static inline uint64_t ntsntp__rd_u64(ntsntp_rd *r) {
  uint64_t hi = ntsntp__rd_u32(r);
  uint64_t lo = ntsntp__rd_u32(r);
  return hi << 32 | lo;
}

/* Returns a pointer to the next |n| bytes and skips them, or NULL. */
static inline const uint8_t *ntsntp__rd_bytes(ntsntp_rd *r, size_t n) {
  const uint8_t *p;
  if (!ntsntp__rd_need(r, n))
    return NULL;
  p = r->p;
  r->p += n;
  return p;
}

/* Opens a sub-cursor over the next |n| bytes and skips them in |r|. */
static inline void ntsntp__rd_sub(ntsntp_rd *r, size_t n, ntsntp_rd *sub) {
  const uint8_t *p = ntsntp__rd_bytes(r, n);
  if (p == NULL) {
    sub->p = sub->end = NULL;
    sub->err = r->err;
    return;
  }
  ntsntp__rd_init(sub, p, n);
}

/* Output cursor: same sticky-error idea; err becomes NTSNTP_ERR_NOBUF. */
typedef struct ntsntp_wr {
  uint8_t *p, *start, *end;
  int err;
} ntsntp_wr;

static inline void ntsntp__wr_init(ntsntp_wr *w, uint8_t *p, size_t len) {
  w->p = w->start = p;
  w->end = p + len;
  w->err = 0;
}

static inline size_t ntsntp__wr_len(const ntsntp_wr *w) {
  return (size_t)(w->p - w->start);
}

static inline uint8_t *ntsntp__wr_reserve(ntsntp_wr *w, size_t n) {
  uint8_t *p;
  if (w->err)
    return NULL;
  if (n > (size_t)(w->end - w->p)) {
    w->err = NTSNTP_ERR_NOBUF;
    return NULL;
  }
  p = w->p;
  w->p += n;
  return p;
}

static inline void ntsntp__wr_u8(ntsntp_wr *w, uint8_t v) {
  uint8_t *p = ntsntp__wr_reserve(w, 1);
  if (p)
    p[0] = v;
}

static inline void ntsntp__wr_u16(ntsntp_wr *w, uint16_t v) {
  uint8_t *p = ntsntp__wr_reserve(w, 2);
  if (p) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
  }
}

static inline void ntsntp__wr_u32(ntsntp_wr *w, uint32_t v) {
  uint8_t *p = ntsntp__wr_reserve(w, 4);
  if (p) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
  }
}

static inline void ntsntp__wr_u64(ntsntp_wr *w, uint64_t v) {
  ntsntp__wr_u32(w, (uint32_t)(v >> 32));
  ntsntp__wr_u32(w, (uint32_t)v);
}

static inline void ntsntp__wr_bytes(ntsntp_wr *w, const void *src, size_t n) {
  uint8_t *p = ntsntp__wr_reserve(w, n);
  if (p && n)
    memcpy(p, src, n);
}

static inline void ntsntp__wr_zeros(ntsntp_wr *w, size_t n) {
  uint8_t *p = ntsntp__wr_reserve(w, n);
  if (p && n)
    memset(p, 0, n);
}

/* Big-endian store/load helpers for fixed positions. */
static inline void ntsntp__put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void ntsntp__put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline void ntsntp__put_u64(uint8_t *p, uint64_t v) {
  ntsntp__put_u32(p, (uint32_t)(v >> 32));
  ntsntp__put_u32(p + 4, (uint32_t)v);
}
static inline uint16_t ntsntp__get_u16(const uint8_t *p) {
  return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}
static inline uint32_t ntsntp__get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}
static inline uint64_t ntsntp__get_u64(const uint8_t *p) {
  return (uint64_t)ntsntp__get_u32(p) << 32 | ntsntp__get_u32(p + 4);
}

#endif /* NTSNTP_RD_H */
