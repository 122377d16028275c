/*
 * libntsntp internal: versioned settings (see common.h, "Settings").
 *
 * A settings struct is the caller's memory: a program built against older
 * headers passes a shorter struct whose |version| says which fields it
 * has.  Each struct keeps a table of its size at every settings version,
 * and converts what it is given to the latest layout before use.
 *
 * Adding a field to ntsntp_X_settings:
 *   1. append it (never insert, never reorder, never resize a member);
 *   2. raise NTSNTP_SETTINGS_VERSION in common.h (add NTSNTP_SETTINGS_Vn);
 *   3. append to the size table of EVERY settings struct: the size of
 *      the changed one through its last member of the previous version
 *      (NTSNTP__SIZE_THROUGH), the same size again for the others.
 * A struct that embeds another (ntsntp_uv_upstream_settings.sync,
 * ntsntp_uv_ke_settings.ke, ntsntp_uv_ke_query_settings.ke,
 * ntsntp_uv_service_settings.ratelimit) changes layout when the embedded
 * one grows: its conversion must then copy member by member.
 */
#ifndef NTSNTP_SETTINGS_INTERNAL_H
#define NTSNTP_SETTINGS_INTERNAL_H

#include <stddef.h>

#include "errtext.h"
#include "ntsntp/common.h"

/* Bytes of |T| up to and including member |m|. */
#define NTSNTP__SIZE_THROUGH(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))

/*
 * |s| (its first member the int version) as the latest layout: |s| itself
 * when it has the latest version, else |tmp| filled by |fill| (the latest
 * defaults) under the fields |s| has (|sizes[v - 1]| bytes for version v,
 * |nsizes| versions known).  NULL, with |errbuf| naming |what| and the
 * fix, for a NULL |s| or a version this library does not know (0: not
 * filled by its _settings_default).
 */
NTSNTP__PRIVATE const void *
ntsntp__settings_latest(const void *s, void *tmp, void (*fill)(void *),
                        const size_t *sizes, int nsizes, const char *what,
                        char *errbuf, size_t errlen);

/*
 * The body of ntsntp_X_settings_default_versioned: |s| gets the defaults
 * of |version| (only the bytes that version has; |tmp| is scratch of the
 * latest size).  An unknown version only sets |version|, for _new to
 * refuse.
 */
NTSNTP__PRIVATE void ntsntp__settings_default(void *s, int version, void *tmp,
                                              void (*fill)(void *),
                                              const size_t *sizes, int nsizes);

/* Defines ntsntp_<name>_settings_default_versioned and <name>_sizes for
 * type T, filled by `static void <name>_fill(void *)`; |last| is T's last
 * member of version 1. */
#define NTSNTP__SETTINGS(T, name, last)                                        \
  static const size_t name##_sizes[NTSNTP_SETTINGS_VERSION] = {                \
      NTSNTP__SIZE_THROUGH(T, last)};                                          \
  void ntsntp_##name##_settings_default_versioned(int version, T *s) {         \
    T tmp;                                                                     \
    ntsntp__settings_default(s, version, &tmp, name##_fill, name##_sizes,      \
                             NTSNTP_SETTINGS_VERSION);                         \
  }

/* In a _new or _start: |S| (a const T *) becomes the latest layout, in
 * |TMP| if need be; on failure returns INVALID_ARG from the function. */
#define NTSNTP__SETTINGS_GET(S, TMP, name, errbuf, errlen)                     \
  do {                                                                         \
    (S) = ntsntp__settings_latest((S), &(TMP), name##_fill, name##_sizes,      \
                                  NTSNTP_SETTINGS_VERSION, #name " settings",  \
                                  (errbuf), (errlen));                         \
    if ((S) == NULL)                                                           \
      return NTSNTP_ERR_INVALID_ARG;                                           \
  } while (0)

#endif
