/*
 * libntsntp: NTS Key Establishment (RFC 8915, section 4).
 *
 * Three layers:
 *   1. a record codec (ntsntp_ke_parse, ntsntp_ke_wr_*), no I/O, no TLS;
 *   2. a server: a context (ntsntp_ke_server) shared by per-connection
 *      sessions (ntsntp_ke_session);
 *   3. a client session (ntsntp_ke_client).
 *
 * Sessions are sans-I/O: the caller feeds the bytes it read from the TCP
 * socket with _read(), sends what _write() returns, arms a timer for
 * _expiry() and calls _handle_expiry() when it fires, and closes the socket
 * when _want() says NTSNTP_KE_CLOSE and nothing is left to write.  TLS runs
 * inside (GnuTLS on memory buffers, TLS 1.3 only, ALPN "ntske/1").
 * Closing with unread bytes in the kernel makes TCP send a reset, which can
 * destroy a response the peer has not read yet: after the last write,
 * shutdown(SHUT_WR) and keep feeding _read() until EOF or a short timer.
 *
 * Threads: a server context and its sessions belong to one thread (an event
 * loop), except ntsntp_ke_server_set_creds/_reload, which may be called from
 * any thread.  Clients are independent objects.
 */
#ifndef NTSNTP_KE_H
#define NTSNTP_KE_H

#include "ntsntp/common.h"
#include "ntsntp/cookie.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Record types (IANA "NTS Key Establishment Record Types"). */
#define NTSNTP_KE_REC_END 0
#define NTSNTP_KE_REC_NEXT_PROTOCOL 1
#define NTSNTP_KE_REC_ERROR 2
#define NTSNTP_KE_REC_WARNING 3
#define NTSNTP_KE_REC_AEAD 4
#define NTSNTP_KE_REC_COOKIE 5
#define NTSNTP_KE_REC_SERVER 6
#define NTSNTP_KE_REC_PORT 7
/* chrony's "compliant AES-128-GCM-SIV exporter context" record. */
#define NTSNTP_KE_REC_COMPLIANT_128GCM 1024
#define NTSNTP_KE_CRITICAL 0x8000u

#define NTSNTP_KE_PROTO_NTPV4 0

/* Error record codes (RFC 8915, 4.1.3). */
#define NTSNTP_KE_ERR_UNRECOGNIZED_CRITICAL 0
#define NTSNTP_KE_ERR_BAD_REQUEST 1
#define NTSNTP_KE_ERR_INTERNAL 2

#define NTSNTP_KE_ALPN "ntske/1"
#define NTSNTP_KE_EXPORTER_LABEL "EXPORTER-network-time-security"
#define NTSNTP_KE_PORT 4460
#define NTSNTP_KE_MAX_MESSAGE 16384
#define NTSNTP_KE_MAX_COOKIES 8
#define NTSNTP_KE_MAX_COOKIE_LEN 256
#define NTSNTP_KE_MAX_SERVER_LEN 255

/* ------------------------------------------------------------------ */
/* Record codec                                                        */
/* ------------------------------------------------------------------ */

/*
 * A parsed NTS-KE message.  |protos|, |aeads| and |cookies[i]| point into
 * the input buffer given to ntsntp_ke_parse and stay valid only while that
 * buffer is unchanged.  |protos| and |aeads| hold |nprotos|/|naeads|
 * big-endian 16-bit ids; read them with ntsntp_ke_msg_proto/_aead.
 */
typedef struct ntsntp_ke_msg {
  const uint8_t *protos;
  size_t nprotos;
  const uint8_t *aeads;
  size_t naeads;
  const uint8_t *cookies[NTSNTP_KE_MAX_COOKIES];
  size_t cookie_len[NTSNTP_KE_MAX_COOKIES];
  size_t ncookies;       /* stored (at most NTSNTP_KE_MAX_COOKIES) */
  size_t ncookies_total; /* seen, including those beyond the limit */
  char server[NTSNTP_KE_MAX_SERVER_LEN + 1]; /* NUL-terminated copy */
  uint16_t port;
  uint16_t error_code;
  uint16_t warning_code;
  /* |unknown_critical| holds the type of the first one seen. */
  uint16_t unknown_critical;
  unsigned has_protos : 1, has_aeads : 1, has_server : 1, has_port : 1,
      has_error : 1, has_warning : 1, compliant_128gcm : 1, end : 1;
  size_t nunknown; /* unknown non-critical records (ignored) */
  size_t len;      /* bytes up to and including End of Message */
} ntsntp_ke_msg;

/*
 * Checks the framing of the message in |in| (|len| bytes) without parsing
 * record bodies, as chrony's check_message_format does.
 * Returns 0 when |in| holds exactly one complete message ending with End of
 * Message.  Errors:
 *   NTSNTP_ERR_AGAIN      the message is incomplete so far; read more.
 *   NTSNTP_ERR_BAD_RECORD End of Message malformed (not critical, or with a
 *                         body) or bytes follow it; the peer is broken.
 */
NTSNTP_EXTERN int ntsntp_ke_check_framing(const uint8_t *in, size_t len);

/*
 * Parses one complete NTS-KE message (request or response) into |m|.
 * Unknown non-critical records are skipped.  Checks that are the same for
 * both directions are done here (body lengths, duplicates, critical bits
 * RFC 8915 requires); direction-specific checks are the caller's.
 * Returns 0, or:
 *   NTSNTP_ERR_AGAIN       incomplete (see ntsntp_ke_check_framing).
 *   NTSNTP_ERR_BAD_RECORD  malformed: the server answers Error 1 (Bad Request).
 *   NTSNTP_ERR_UNSUPPORTED an unknown record with the critical bit set
 *                          (type in m->unknown_critical): Error 0.
 *   NTSNTP_ERR_INVALID_ARG NULL arguments.
 * On BAD_RECORD/UNSUPPORTED, |m| holds what was parsed before the fault.
 */
NTSNTP_EXTERN int ntsntp_ke_parse(const uint8_t *in, size_t len,
                                  ntsntp_ke_msg *m) NTSNTP_WARN_UNUSED;

/* The |i|-th protocol / AEAD id of |m| (i < nprotos / naeads). */
NTSNTP_EXTERN uint16_t ntsntp_ke_msg_proto(const ntsntp_ke_msg *m, size_t i);
NTSNTP_EXTERN uint16_t ntsntp_ke_msg_aead(const ntsntp_ke_msg *m, size_t i);

/*
 * Encoder: appends one record (type with NTSNTP_KE_CRITICAL if |critical|)
 * with |body| (|len| <= 65535 bytes) at |out|.  Returns the bytes written, or
 * NTSNTP_ERR_NOBUF / NTSNTP_ERR_INVALID_ARG (type > 0x7fff, len > 65535).
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_ke_wr_record(uint8_t *out, size_t outlen,
                                               int critical, uint16_t type,
                                               const void *body, size_t len);

/* A record whose body is one or more 16-bit values (|n| may be 0). */
NTSNTP_EXTERN ntsntp_ssize ntsntp_ke_wr_u16s(uint8_t *out, size_t outlen,
                                             int critical, uint16_t type,
                                             const uint16_t *v, size_t n);

/* ------------------------------------------------------------------ */
/* Session interface shared by server sessions and clients             */
/* ------------------------------------------------------------------ */

/* ntsntp_ke_session_want / ntsntp_ke_client_want flags. */
#define NTSNTP_KE_WANT_READ 0x1u  /* feed more bytes from the socket */
#define NTSNTP_KE_WANT_WRITE 0x2u /* bytes are waiting in _write() */
#define NTSNTP_KE_DONE 0x4u       /* exchange completed successfully */
#define NTSNTP_KE_CLOSE 0x8u      /* close after writing what is left */

/* ------------------------------------------------------------------ */
/* Server credentials                                                  */
/* ------------------------------------------------------------------ */

/* Certificate chain + private key, refcounted and immutable once loaded. */
typedef struct ntsntp_ke_creds ntsntp_ke_creds;

/*
 * Loads a PEM certificate chain (server certificate first) from |cert_path|
 * and its private key from |key_path|.  The files are read with open/read so
 * that a failure can be explained: on error, |errbuf| (if not NULL) receives
 * a NUL-terminated sentence naming the path, the system error, the file's
 * owner and mode, our uid and what to change, or GnuTLS' reason when the
 * PEM does not parse or the key does not match.  The key bytes are wiped.
 * Neither file may be a FIFO or device (reading never blocks); links are
 * followed.  The new object has one reference.
 * Errors: NTSNTP_ERR_IO (a file cannot be opened or read),
 *   NTSNTP_ERR_BAD_CONFIG (not PEM, key mismatch, file empty or > 1 MiB),
 *   NTSNTP_ERR_INVALID_ARG, NTSNTP_ERR_NOMEM.
 */
NTSNTP_EXTERN int ntsntp_ke_creds_load(ntsntp_ke_creds **pcreds,
                                       const char *cert_path,
                                       const char *key_path, char *errbuf,
                                       size_t errlen) NTSNTP_WARN_UNUSED;

/* Most certificate/key pairs one credential object holds. */
#define NTSNTP_KE_MAX_CERTS 8

/* One certificate chain and its key, as PEM bytes (from files, or handed
 * over by a privileged helper).  The names are for messages only. */
typedef struct ntsntp_ke_pem {
  const uint8_t *cert;
  size_t cert_len;
  const char *cert_name;
  const uint8_t *key;
  size_t key_len;
  const char *key_name;
  unsigned key_mode; /* the key file's st_mode, for the warning; or 0 */
} ntsntp_ke_pem;

/*
 * Makes credentials from |n| (1..NTSNTP_KE_MAX_CERTS) pairs of PEM bytes.
 * With several pairs the TLS server picks, for each client, a certificate
 * whose names match the client's SNI and whose key suits the client's
 * signature algorithms (so an ECDSA and an RSA certificate may be given
 * for one name); without a match, the first usable pair.  The bytes are
 * not kept (the caller wipes the keys).  Errors: NTSNTP_ERR_BAD_CONFIG
 * (|errbuf| names the file that does not parse, or the pair whose key
 * does not match), NTSNTP_ERR_INVALID_ARG (no pairs, too many, an empty
 * or larger than 1 MiB buffer), NTSNTP_ERR_NOMEM.
 */
NTSNTP_EXTERN int ntsntp_ke_creds_new_pem(ntsntp_ke_creds **pcreds,
                                          const ntsntp_ke_pem *pairs,
                                          size_t n, char *errbuf,
                                          size_t errlen) NTSNTP_WARN_UNUSED;

/* Number of certificate/key pairs in |c| (0 for NULL). */
NTSNTP_EXTERN size_t ntsntp_ke_creds_count(const ntsntp_ke_creds *c);

/*
 * A warning about the loaded files (currently: the key file is readable by
 * group or others), or NULL.  Valid while the object lives.
 */
NTSNTP_EXTERN const char *ntsntp_ke_creds_warning(const ntsntp_ke_creds *c);

/* What an operator needs to know of a served certificate. */
typedef struct ntsntp_ke_cert_info {
  int64_t not_before, not_after; /* Unix time */
  char subject[256]; /* distinguished name (RFC 4514), printable ASCII */
  char names[512];   /* subjectAltName DNS names and addresses, ", "
                        between; "" if none; cut short with "..." */
} ntsntp_ke_cert_info;

/*
 * Fills |out| from the leaf certificate of pair |i| (0 .. count - 1, in
 * the order given to ntsntp_ke_creds_new_pem).
 * Errors: NTSNTP_ERR_INVALID_ARG (NULL, or |i| out of range),
 *   NTSNTP_ERR_BAD_CONFIG (GnuTLS cannot decode it), NTSNTP_ERR_NOMEM.
 *
 * version-added: 0.2.0
 */
NTSNTP_EXTERN int ntsntp_ke_creds_cert_info(const ntsntp_ke_creds *c,
                                            size_t i,
                                            ntsntp_ke_cert_info *out);

/* Takes a reference (thread-safe). Returns |c|. */
NTSNTP_EXTERN ntsntp_ke_creds *ntsntp_ke_creds_ref(ntsntp_ke_creds *c);

/* Drops a reference; the last one frees.  NULL is allowed.  Thread-safe. */
NTSNTP_EXTERN void ntsntp_ke_creds_unref(ntsntp_ke_creds *c);

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

typedef struct ntsntp_ke_server ntsntp_ke_server;
typedef struct ntsntp_ke_session ntsntp_ke_session;

#define NTSNTP_KE_MAX_AEADS 8

typedef struct ntsntp_ke_server_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* Certificate and key (required); the server takes its own reference. */
  ntsntp_ke_creds *creds;
  /* Master keys for cookies (required); must outlive the server. */
  const ntsntp_keyring *keyring;
  /* NTP port advertised; Port Negotiation is sent when != 123. */
  uint16_t ntp_port;
  /* NTP server name or address for Server Negotiation, or NULL. Copied. */
  const char *ntp_server;
  /* AEADs the server accepts; unsupported ones are skipped.  The client's
     order of preference picks among them (as chronyd does).  Default:
     15, 17, 30 (those ntsntp_aead_supported accepts). */
  int aeads[NTSNTP_KE_MAX_AEADS];
  size_t naeads;
  /* Largest request accepted (default 16384). */
  size_t max_request;
  /* Session deadline in milliseconds from _new (default 2000). */
  uint32_t timeout_ms;
  /* Optional allocator. */
  const ntsntp_mem *mem;
} ntsntp_ke_server_settings;

/* Counters the runtime reads for statistics. */
typedef struct ntsntp_ke_server_stats {
  uint64_t sessions_done;    /* responses with cookies fully produced */
  uint64_t handshake_failed; /* TLS handshake errors (ALPN included) */
  uint64_t alpn_failed;      /* peer did not negotiate "ntske/1" */
  uint64_t bad_requests;     /* requests answered with an Error record */
  uint64_t errors_sent[3];   /* Error records by code 0, 1, 2 */
  uint64_t cookies_issued;
  uint64_t timeouts;         /* sessions ended by the deadline */
  uint64_t warnings_received;/* requests holding a Warning record */
  uint64_t no_common;        /* empty protocol/AEAD answers */
} ntsntp_ke_server_stats;

NTSNTP_EXTERN void
ntsntp_ke_server_settings_default_versioned(int version,
                                            ntsntp_ke_server_settings *s);
#define ntsntp_ke_server_settings_default(S)                                   \
  ntsntp_ke_server_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Creates a server context.
 * Errors: NTSNTP_ERR_INVALID_ARG (no creds or keyring, no supported AEAD,
 *   server name longer than 255 or not printable ASCII), NTSNTP_ERR_NOMEM.
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure.
 */
NTSNTP_EXTERN int ntsntp_ke_server_new(ntsntp_ke_server **psrv,
                                       const ntsntp_ke_server_settings *s,
                                       char *errbuf, size_t errlen);

/* Frees the context; all its sessions must be deleted first.  NULL ok. */
NTSNTP_EXTERN void ntsntp_ke_server_del(ntsntp_ke_server *srv);

/*
 * Replaces the credentials used by new sessions (takes a reference on
 * |creds|); running sessions keep the ones they started with, and the old
 * object is freed when its last session ends.
 * Errors: NTSNTP_ERR_INVALID_ARG.
 */
NTSNTP_EXTERN int ntsntp_ke_server_set_creds(ntsntp_ke_server *srv,
                                             ntsntp_ke_creds *creds);

/*
 * Loads new credentials and swaps them in; on failure the old ones stay and
 * |errbuf| explains (see ntsntp_ke_creds_load, same errors).
 */
NTSNTP_EXTERN int ntsntp_ke_server_reload(ntsntp_ke_server *srv,
                                          const char *cert_path,
                                          const char *key_path, char *errbuf,
                                          size_t errlen) NTSNTP_WARN_UNUSED;

/* Copies the server's counters to |*out| (from the server's thread). */
NTSNTP_EXTERN void ntsntp_ke_server_get_stats(const ntsntp_ke_server *srv,
                                              ntsntp_ke_server_stats *out);

/*
 * Starts a session for a new TCP connection at monotonic time |now_ms|.
 * Errors: NTSNTP_ERR_NOMEM, NTSNTP_ERR_TLS (GnuTLS setup failed).
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure.
 */
NTSNTP_EXTERN int ntsntp_ke_session_new(ntsntp_ke_session **ps,
                                        ntsntp_ke_server *srv, uint64_t now_ms,
                                        char *errbuf, size_t errlen);

/*
 * Feeds |len| bytes read from the socket; |len| == 0 means the peer closed
 * its side (EOF).  Returns 0, or (the session then wants CLOSE):
 *   NTSNTP_ERR_TLS        handshake or record failure, EOF during the
 *                         handshake (an alert may be queued: write it).
 *   NTSNTP_ERR_CLOSED     EOF or close_notify before a complete request, or
 *                         bytes fed after CLOSE of a failed session.
 *   NTSNTP_ERR_TOO_LARGE  more than 256 KiB buffered without progress.
 *   NTSNTP_ERR_NOMEM      out of memory.
 * Bytes fed after a successful exchange (DONE) are discarded; returns 0.
 * A bad request is not an error here: the session answers it with an Error
 * record and returns 0.
 */
NTSNTP_EXTERN int ntsntp_ke_session_read(ntsntp_ke_session *s,
                                         const uint8_t *in, size_t len);

/*
 * Copies up to |outlen| pending bytes to |out|; returns the count (0 when
 * nothing is pending).  Errors: NTSNTP_ERR_INVALID_ARG.
 */
NTSNTP_EXTERN ntsntp_ssize ntsntp_ke_session_write(ntsntp_ke_session *s,
                                                   uint8_t *out,
                                                   size_t outlen);

/* NTSNTP_KE_WANT_READ / _WANT_WRITE / _DONE / _CLOSE flags. */
NTSNTP_EXTERN unsigned ntsntp_ke_session_want(const ntsntp_ke_session *s);

/* Monotonic deadline in ms (UINT64_MAX once closed). */
NTSNTP_EXTERN uint64_t ntsntp_ke_session_expiry(const ntsntp_ke_session *s);

/*
 * Call when |now_ms| >= the expiry.  If TLS is up and the request is
 * incomplete, queues Error 1 (Bad Request) and close_notify; the session
 * then wants CLOSE.  Returns 0, or NTSNTP_ERR_TIMEOUT when the deadline
 * passed (the session has been closed).
 */
NTSNTP_EXTERN int ntsntp_ke_session_handle_expiry(ntsntp_ke_session *s,
                                                  uint64_t now_ms);

/* Frees the session, wiping keys and buffers.  NULL is allowed. */
NTSNTP_EXTERN void ntsntp_ke_session_del(ntsntp_ke_session *s);

/* Why TLS failed, for logs ("" if it did not).  Valid until _del. */
NTSNTP_EXTERN const char *
ntsntp_ke_session_errtext(const ntsntp_ke_session *s);

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

typedef struct ntsntp_ke_client ntsntp_ke_client;

/*
 * Certificate hook of an NTS-KE client, called once per handshake after the
 * library's own check (trust anchors, host name, validity period unless
 * skipped): |chain| holds the server's certificates in DER, leaf first,
 * |n| of them; |verified| is 1 when the library's check passed.  Return 0
 * to go on, non-zero to fail the handshake (TLS).  Pinning a key refuses what
 * does not match; accepting a certificate the check refused (a
 * self-signed one the program knows) is the program's responsibility.
 */
typedef int (*ntsntp_ke_verify_fn)(void *user, const uint8_t *const *chain,
                                   const size_t *chain_len, size_t n,
                                   int verified);

typedef struct ntsntp_ke_client_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /* KE server host name (or IP literal) for SNI and certificate check.
     Required. */
  const char *server_name;
  /* PEM file with trusted CAs, or NULL for the system trust store. */
  const char *ca_file;
  /* Trusted CAs in memory (PEM), used instead of |ca_file| when set. */
  const uint8_t *ca_pem;
  size_t ca_pem_len;
  /* Optional certificate hook (see ntsntp_ke_verify_fn). */
  ntsntp_ke_verify_fn verify;
  void *verify_user;
  /* Non-zero: ignore certificate validity periods (clock not set yet). */
  int skip_time_checks;
  /* AEADs to offer, in preference order (default: 15). */
  int aeads[NTSNTP_KE_MAX_AEADS];
  size_t naeads;
  /* Optional Server / Port Negotiation records in the request. */
  const char *ntp_server; /* NULL: none */
  uint16_t ntp_port;      /* 0: none */
  /* Deadline in ms from _new (default 5000). */
  uint32_t timeout_ms;
  const ntsntp_mem *mem;
} ntsntp_ke_client_settings;

/* What a completed exchange yields.  Holds secrets: ntsntp_ke_result_clear. */
typedef struct ntsntp_ke_result {
  int aead;
  size_t key_len;
  uint8_t c2s[NTSNTP_MAX_KEY_LEN];
  uint8_t s2c[NTSNTP_MAX_KEY_LEN];
  size_t ncookies;
  size_t cookie_len[NTSNTP_KE_MAX_COOKIES];
  uint8_t cookies[NTSNTP_KE_MAX_COOKIES][NTSNTP_KE_MAX_COOKIE_LEN];
  /* NTP server: the Server Negotiation record, else the KE host. */
  char ntp_server[NTSNTP_KE_MAX_SERVER_LEN + 1];
  /* NTP port: the Port Negotiation record, else 123. */
  uint16_t ntp_port;
  int port_record; /* non-zero: |ntp_port| came from a Port record */
  /* Codes of Error / Warning records received, or -1. */
  int error_code;
  int warning_code;
} ntsntp_ke_result;

NTSNTP_EXTERN void
ntsntp_ke_client_settings_default_versioned(int version,
                                            ntsntp_ke_client_settings *s);
#define ntsntp_ke_client_settings_default(S)                                   \
  ntsntp_ke_client_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Creates a client at monotonic time |now_ms| and queues the ClientHello.
 * Errors: NTSNTP_ERR_INVALID_ARG (no server name, no supported AEAD, server
 *   name > 255 bytes), NTSNTP_ERR_BAD_CONFIG (CA file or PEM unreadable or
 *   without a certificate, no system trust store), NTSNTP_ERR_TLS,
 *   NTSNTP_ERR_NOMEM.
 * |errbuf| (|errlen| bytes; NULL/0 allowed) gets one line on any failure:
 * for a CA file, its name and why it could not be used.
 */
NTSNTP_EXTERN int ntsntp_ke_client_new(ntsntp_ke_client **pc,
                                       const ntsntp_ke_client_settings *s,
                                       uint64_t now_ms, char *errbuf,
                                       size_t errlen);

/* Same contract as ntsntp_ke_session_read, plus:
 *   NTSNTP_ERR_TLS also for certificate or ALPN failures. */
NTSNTP_EXTERN int ntsntp_ke_client_read(ntsntp_ke_client *c, const uint8_t *in,
                                        size_t len);
NTSNTP_EXTERN ntsntp_ssize ntsntp_ke_client_write(ntsntp_ke_client *c,
                                                  uint8_t *out, size_t outlen);
NTSNTP_EXTERN unsigned ntsntp_ke_client_want(const ntsntp_ke_client *c);
NTSNTP_EXTERN uint64_t ntsntp_ke_client_expiry(const ntsntp_ke_client *c);
/* Closes the client once the deadline passed; returns NTSNTP_ERR_TIMEOUT
 * then, else 0. */
NTSNTP_EXTERN int ntsntp_ke_client_handle_expiry(ntsntp_ke_client *c,
                                                 uint64_t now_ms);

/*
 * Fills |r| after the client finished.  Returns 0 on success (DONE), or the
 * reason it failed:
 *   NTSNTP_ERR_STATE       not finished yet.
 *   NTSNTP_ERR_NAK         the server sent an Error record (r->error_code).
 *   NTSNTP_ERR_UNSUPPORTED no common protocol or AEAD, or a Warning record
 *                          (r->warning_code; none is defined, and RFC 8915
 *                          sec. 4.1.4 treats unknown ones as errors).
 *   NTSNTP_ERR_BAD_RECORD  malformed response, no cookies, or a cookie
 *                          longer than NTSNTP_COOKIE_MAX_LEN (an NTP
 *                          request could not carry it).
 *   NTSNTP_ERR_TLS, NTSNTP_ERR_TIMEOUT, NTSNTP_ERR_CLOSED, NTSNTP_ERR_NOMEM.
 * |r| gets the codes received even on failure; keys only on success.
 */
NTSNTP_EXTERN int ntsntp_ke_client_result(const ntsntp_ke_client *c,
                                          ntsntp_ke_result *r);

/* Why the client failed, for logs (TLS or certificate reason, or the
 * library's error text; "" before it finished).  Valid until _del. */
NTSNTP_EXTERN const char *ntsntp_ke_client_errtext(const ntsntp_ke_client *c);

/* Wipes |r|. */
NTSNTP_EXTERN void ntsntp_ke_result_clear(ntsntp_ke_result *r);

/* Frees the client, wiping keys.  NULL is allowed. */
NTSNTP_EXTERN void ntsntp_ke_client_del(ntsntp_ke_client *c);

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_KE_H */
