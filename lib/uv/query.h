/* Runtime internals: the owner of a query learns when it is gone. */
#ifndef NTSNTP_UV_QUERY_H
#define NTSNTP_UV_QUERY_H

#include "ntsntp/uv_client.h"

/*
 * Calls |freed(user)| once |q| has closed its last handle and freed its
 * memory, whether it reported, failed or was cancelled: an owner's own
 * _stop waits for that before its |done|.  Set it right after _start.
 */
void ntsntp__uv_ntp_query_on_free(ntsntp_uv_ntp_query *q,
                                  void (*freed)(void *user), void *user);
void ntsntp__uv_ke_query_on_free(ntsntp_uv_ke_query *q,
                                 void (*freed)(void *user), void *user);

#endif
