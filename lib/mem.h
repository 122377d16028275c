/*
 * libntsntp internal: the library-wide allocator (ntsntp_set_mem) for
 * memory that belongs to no object with an allocator of its own: the
 * runtime's objects and buffers.  Memory from libseccomp, GnuTLS or libuv
 * goes back to them, never through these.
 */
#ifndef NTSNTP_MEM_INTERNAL_H
#define NTSNTP_MEM_INTERNAL_H

#include <string.h>

#include "ntsntp/common.h"

static inline void *ntsntp__malloc(size_t n) {
  const ntsntp_mem *m = ntsntp_mem_default();
  return m->malloc(n, m->user);
}
static inline void *ntsntp__calloc(size_t nmemb, size_t size) {
  const ntsntp_mem *m = ntsntp_mem_default();
  return m->calloc(nmemb, size, m->user);
}
static inline void *ntsntp__realloc(void *p, size_t n) {
  const ntsntp_mem *m = ntsntp_mem_default();
  return m->realloc(p, n, m->user);
}
static inline void ntsntp__mfree(void *p) {
  const ntsntp_mem *m = ntsntp_mem_default();
  if (p != NULL)
    m->free(p, m->user);
}
static inline char *ntsntp__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = (char *)ntsntp__malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

#endif
