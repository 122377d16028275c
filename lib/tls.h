/*
 * Internal: a TLS 1.3 session (GnuTLS) over memory buffers, no fd.
 *
 * The caller feeds received bytes with ntsntp__tls_feed and drains bytes to
 * send with ntsntp__tls_take.  GnuTLS' pull callback reads the input buffer
 * and reports EAGAIN when it is empty; its push callback appends to the
 * output buffer, which never blocks.  ALPN "ntske/1" is required on both
 * sides.
 */
#ifndef NTSNTP_TLS_H
#define NTSNTP_TLS_H

#include "errtext.h"
#include "ntsntp/ke.h"

typedef struct ntsntp__tls ntsntp__tls;

#include <sys/stat.h>

/* Largest certificate or key file read (bytes). */
#define NTSNTP__MAX_CRED_FILE (1024 * 1024)

/*
 * Reads the regular file |path| (1..NTSNTP__MAX_CRED_FILE bytes) into
 * |*pbuf| (mem->malloc'd; the caller wipes and frees it), never blocking:
 * a FIFO or device is refused.  |pst| (optional) gets its fstat.  On error
 * |errbuf| names the path, the owner, mode and our uid where they explain
 * it, and the fix.  Errors: IO, BAD_CONFIG (not a regular file, size),
 * NOMEM.
 */
NTSNTP__PRIVATE int ntsntp__cred_file_read(const char *path, const ntsntp_mem *mem,
                           uint8_t **pbuf, size_t *plen, struct stat *pst,
                           char *errbuf, size_t errlen);

/*
 * The same for a descriptor already open (it is closed); |path| names it
 * in messages.  Errors: IO, BAD_CONFIG, NOMEM.
 */
NTSNTP__PRIVATE int ntsntp__cred_fd_read(int fd, const char *path, const ntsntp_mem *mem,
                         uint8_t **pbuf, size_t *plen, struct stat *pst,
                         char *errbuf, size_t errlen);

/* Server side with |creds| (a reference is taken and dropped in _del).
 * Errors: NOMEM, TLS. */
int ntsntp__tls_new_server(ntsntp__tls **pt, ntsntp_ke_creds *creds,
                           const ntsntp_mem *mem);

/* Client side: SNI (unless the server name is an IP literal), certificate
 * verification against the CA PEM, the CA file or the system store, host
 * name check, optionally no validity-period checks, and the caller's hook.
 * |s| is the KE client's settings (server_name, ca_file, ca_pem,
 * skip_time_checks, verify).
 * Errors: NOMEM, TLS, BAD_CONFIG (trust store unusable). */
int ntsntp__tls_new_client(ntsntp__tls **pt, const ntsntp_ke_client_settings *s,
                           const ntsntp_mem *mem, char *errbuf, size_t errlen);

void ntsntp__tls_del(ntsntp__tls *t);

/* Appends received bytes; |len| == 0 marks EOF.  Errors: NOMEM. */
int ntsntp__tls_feed(ntsntp__tls *t, const uint8_t *in, size_t len);

/* Bytes waiting to be sent. */
size_t ntsntp__tls_pending(const ntsntp__tls *t);

/* Moves up to |outlen| pending bytes to |out|; returns the count. */
size_t ntsntp__tls_take(ntsntp__tls *t, uint8_t *out, size_t outlen);

/* Drives the handshake.  0 when complete (ALPN checked), AGAIN, or TLS
 * (an alert may be queued; see ntsntp__tls_alpn_failed/_errtext). */
int ntsntp__tls_handshake(ntsntp__tls *t);

/* Reads application data: > 0 bytes, 0 on close_notify, AGAIN, TLS,
 * CLOSED (EOF without close_notify). */
ntsntp_ssize ntsntp__tls_recv(ntsntp__tls *t, uint8_t *buf, size_t len);

/* Sends |len| bytes (<= 16384) as one TLS record.  Errors: TLS. */
int ntsntp__tls_send(ntsntp__tls *t, const uint8_t *buf, size_t len);

/* Queues close_notify (GNUTLS_SHUT_WR).  Errors: TLS. */
int ntsntp__tls_bye(ntsntp__tls *t);

/*
 * RFC 8915 section 5.1 keys: TLS exporter with label
 * "EXPORTER-network-time-security" and context
 * protocol(2) | aead(2) | 0x00 (C2S) or 0x01 (S2C).
 * Errors: INVALID_ARG (keylen > NTSNTP_MAX_KEY_LEN), TLS.
 */
int ntsntp__tls_export_keys(ntsntp__tls *t, uint16_t proto, uint16_t aead,
                            size_t keylen, uint8_t *c2s, uint8_t *s2c);

/* Non-zero if the handshake failed because "ntske/1" was not agreed. */
int ntsntp__tls_alpn_failed(const ntsntp__tls *t);

/* A description of the last failure ("" if none). */
const char *ntsntp__tls_errtext(const ntsntp__tls *t);

#endif /* NTSNTP_TLS_H */
