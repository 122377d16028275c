/*
 * libntsntp runtime layer on libuv: sockets, kernel timestamps, threads.
 *
 * This layer sits above the sans-I/O core (server.h, client.h, ke.h) and
 * lets an embedder run a full server from its own libuv loop.  Every
 * function here is called from the thread running the caller's loop unless
 * its comment says otherwise.  Each part of the runtime has its own section
 * below.
 */
#ifndef NTSNTP_UV_H
#define NTSNTP_UV_H

#include <sys/socket.h>

#include <uv.h>

#include "ntsntp/common.h"
#include "ntsntp/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * NTP over UDP
 *
 * ntsntp_uv_ntp serves NTP (and NTS-protected NTP) on UDP with kernel
 * receive timestamps.  It runs |workers| threads, each with its own libuv
 * loop and its own socket per listen address; the sockets of one address
 * share the port with SO_REUSEPORT, so the kernel spreads clients over the
 * workers by flow (source address and port), or, with |steer_by_client|,
 * by source address only.  A single worker still gets its own thread: one
 * design for all counts, and the caller's loop never carries the packet
 * path.
 *
 * Per worker, for each batch of up to 32 datagrams read with recvmmsg:
 *   1. the receive timestamp comes from the kernel (SO_TIMESTAMPING
 *      software, else SO_TIMESTAMPNS); if neither is delivered, the worker
 *      reads CLOCK_REALTIME after the batch arrives (a "daemon" timestamp);
 *   2. |adjust| maps it to the served time;
 *   3. |accept|, ntsntp_server_parse, |filter|, then
 *      ntsntp_server_authenticate judge the request (so the rate limiter
 *      in |filter| decides before any NTS cryptography);
 *   4. CLOCK_REALTIME is read once per response, adjusted, and
 *      ntsntp_server_finish seals the response with it (in interleaved
 *      mode the response carries instead the kernel's transmit timestamp
 *      of the previous response to that client; see |tx_stamp|);
 *   5. responses leave from the local address the request was sent to
 *      (IP_PKTINFO / IPV6_PKTINFO on wildcard sockets), never blocking:
 *      what the kernel will not take now is dropped and counted in
 *      tx_errors.
 * A batch of up to 4 (light and moderate load) is served one request at a
 * time, 1 to 5 for each, so every transmit timestamp is read right before
 * its datagram is queued.  A larger batch goes in chunks of up to 8: steps
 * 1 to 3 for the chunk, then 4 for each response, then one sendmmsg; each
 * transmit timestamp is the clock read plus the wait predicted for that
 * response (the finishes after it and the datagrams the kernel sends
 * before it, from moving averages the worker keeps).  No allocation
 * happens per packet.
 *
 * Linux only (recvmmsg, SO_TIMESTAMPING, SO_REUSEPORT).  The kernel turns
 * receive timestamps on with deferred work when the first socket asks, so
 * the first few datagrams after start may get daemon timestamps
 * (rx_daemon_ts).  Linux lets only processes of the same effective user
 * join a SO_REUSEPORT group, so another user cannot steal a share of the
 * traffic; processes of the server's own user can.
 * ====================================================================== */

/* The running service (opaque). */
typedef struct ntsntp_uv_ntp ntsntp_uv_ntp;

typedef struct ntsntp_uv_ntp_settings {
  int version; /* set by the _settings_default macro (common.h) */
  /*
   * Numeric addresses to listen on ("0.0.0.0", "::", "127.0.0.1", "::1",
   * "fe80::1%eth0").  IPv6 sockets are always IPV6_V6ONLY: list "0.0.0.0"
   * too to serve IPv4.  |n_listen| 0 means both wildcards, "0.0.0.0" (index
   * 0) and "::" (index 1); a host without IPv6 then serves IPv4 only (and
   * port index 1 reads 0).  The strings are read only during start.
   */
  const char *const *listen;
  size_t n_listen;
  /* UDP port; 0 picks a free one (tests; see ntsntp_uv_ntp_port). */
  uint16_t port;
  /* Worker threads; 0 means the number of online CPUs. */
  unsigned workers;
  /*
   * Client affinity.  0 (the default): the kernel spreads requests over
   * the workers by flow, so one client sending from many source ports
   * meets every worker.  Non-zero: every request from one client reaches
   * the same worker whatever its source port, so per-worker state that the
   * hooks keep (a rate-limit table per worker) sees all of that client's
   * requests.  A client is an IPv4 source address cut to |steer_v4_prefix|
   * bits (1..32, default 32) or an IPv6 one cut to |steer_v6_prefix| bits
   * (1..128, default 64): give the rate limiter's prefixes.  start attaches
   * a classic BPF program to each address's SO_REUSEPORT group
   * (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5) that hashes the source address
   * with a secret seed.  If the kernel refuses it, start logs a warning and
   * goes on with the kernel's spreading, but calls the hooks with |worker|
   * 0 from every worker, so that state kept per |worker| stays per client
   * (one table for all workers, behind the hook's own lock);
   * ntsntp_uv_ntp_steered tells which.  One client's requests all go to
   * one worker: a single address sending more than a worker can serve is
   * not spread any more.
   */
  int steer_by_client;
  unsigned steer_v4_prefix;
  unsigned steer_v6_prefix;
  /* The server core, shared by all workers (required). */
  const ntsntp_server *server;
  /*
   * Served time: maps a CLOCK_REALTIME reading (NTP-64) to the time to
   * serve, for both the receive and the transmit timestamp.  NULL means
   * identity.  Called from worker threads, concurrently: must be
   * thread-safe and must not block.
   */
  uint64_t (*adjust)(void *user, uint64_t sys_ntp64);
  void *adjust_user;
  /*
   * Early, cheap check called before ntsntp_server_parse, from worker
   * |worker| (0 .. workers-1; 0 from every worker when steer_by_client
   * failed), with the client's address.  Return 0 to go
   * on, non-zero to drop the request silently (counted as reason DENIED).
   * Also called for datagrams that are not valid requests.  NULL accepts
   * everything.  Called concurrently: must be thread-safe and must not
   * block.
   */
  int (*accept)(void *user, unsigned worker, const struct sockaddr *peer);
  void *accept_user;
  /*
   * Called after ntsntp_server_parse for requests it would answer
   * (verdict RESPOND), before ntsntp_server_authenticate and before the
   * transmit timestamp is read; for access control and rate limiting.
   * For an NTS request ctx->nts_pending is set: nothing in it is
   * authenticated yet, and deciding here spares a refused request the
   * AES-SIV work (cookie, authenticator, new cookies).  Return 0 to go on
   * with ctx->verdict as the hook leaves it: unchanged, turned into a RATE
   * KoD (or, for NTS, a drop) by ntsntp_server_ctx_ratelimit, or set to
   * NTSNTP_SERVER_DROP with a reason of the hook's choice; any other
   * answer to a pending NTS request is dropped (reason DENIED unless set).
   * Return non-zero to drop; the reason becomes DENIED unless the hook set
   * another one.  The runtime wipes |ctx| for every drop.  NULL means
   * return 0.  |worker| as for |accept|.  Called from worker threads,
   * concurrently: must be thread-safe and must not block.
   */
  int (*filter)(void *user, unsigned worker, const struct sockaddr *peer,
                ntsntp_server_ctx *ctx);
  void *filter_user;
  /*
   * Interleaved mode (RFC 9769).  When |filter| leaves ctx->want_tx_ts set
   * (ntsntp_server_ctx_xleave: the client asked for interleaved mode), the
   * response asks the kernel for its transmit timestamp (SO_TIMESTAMPING,
   * software, per datagram; read from the socket's error queue right
   * after the send, or when it arrives later), and |tx_stamp| gets it:
   * the time |tx| (served time, NTP-64) the response to |peer|'s request
   * received at |rx| left, measured by |src|.  The hook stores it for the
   * client's next request (ntsntp_xleave_state_tx).  Timestamps that do
   * not belong to the datagram for sure (a send failed and the kernel's
   * numbering was reset; a clock step) are never passed on.  NULL: no
   * transmit timestamps, basic mode for everyone.  |worker| as for
   * |accept|; called from worker threads: thread-safe, never blocking.
   */
  void (*tx_stamp)(void *user, unsigned worker, const struct sockaddr *peer,
                   uint64_t rx, uint64_t tx, ntsntp_ts_source src);
  void *tx_stamp_user;
  /*
   * Hardware timestamps (chrony's `hwtimestamp`): network interfaces
   * ("eth0") whose card stamps packets.  start turns stamping of all
   * received and of transmitted packets on (SIOCSHWTSTAMP; needs
   * CAP_NET_ADMIN unless it is on already), finds the card's PTP clock
   * (ETHTOOL_GET_TS_INFO) and opens it.  Each worker reads that clock
   * against the system clock once a second (PTP_SYS_OFFSET_EXTENDED, the
   * shortest of 10 windows) and converts the card's stamps with
   * ntsntp_hwclock (hwclock.h); until two readings exist, or for a stamp
   * the conversion refuses, the kernel's software stamp is used.  Receive
   * stamps then come from the card (rx_hw_ts), and so do the transmit
   * stamps of interleaved mode (tx_hw_ts; the software one is passed first
   * and replaced).  Strings read only during start.
   */
  const char *const *hw_ifaces;
  size_t n_hw_ifaces;
  /*
   * Log sink.  Start-up problems are logged from the caller's thread,
   * socket errors from worker threads (first occurrence of each errno per
   * socket only), so it must be thread-safe.  NULL discards.
   */
  ntsntp_log_fn log;
  void *log_user;
} ntsntp_uv_ntp_settings;

/*
 * Fills |s| with the defaults: both wildcards, port 123, one worker per
 * online CPU, spread by flow (steering prefixes 32 and 64 if turned on),
 * no server (the caller must set one), no hooks, no log.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void
ntsntp_uv_ntp_settings_default_versioned(int version,
                                         ntsntp_uv_ntp_settings *s);
#define ntsntp_uv_ntp_settings_default(S)                                      \
  ntsntp_uv_ntp_settings_default_versioned(NTSNTP_SETTINGS_VERSION, (S))

/*
 * Opens and binds every socket (workers x addresses), then starts the
 * worker threads, and stores the service in |*out|.  All binding is done
 * when this returns, so a caller may drop privileges right after.  The
 * service keeps one handle active on |loop| until it is stopped.  On
 * failure |errbuf| (|errlen| bytes, may be NULL) gets one line an operator
 * can act on, for example
 *   "cannot bind UDP 0.0.0.0:123: Permission denied (run as root or use
 *    NTP_PORT above 1023)".
 * Returns 0.
 * Errors:
 *   INVALID_ARG  NULL |loop|, |s|, |out| or s->server; n_listen > 0 with a
 *                NULL list; an address that is not numeric IPv4/IPv6; a
 *                hw_ifaces name that is no interface or has no hardware
 *                timestamping (|errbuf| says which, and what to check);
 *                steer_by_client with a prefix out of range (fix the
 *                configuration);
 *   IO           a socket, bind, thread or libuv call failed (errno kept;
 *                |errbuf| names the address and the step);
 *   NOMEM        out of memory.
 * Nothing is left open on failure; memory of a failed start is released
 * once |loop| runs again (libuv handle rule), so run or close |loop| as
 * usual.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_uv_ntp_start(uv_loop_t *loop,
                                      const ntsntp_uv_ntp_settings *s,
                                      ntsntp_uv_ntp **out, char *errbuf,
                                      size_t errlen);

/*
 * Adds up the counters of all workers into |out| (overwritten).  Each
 * worker publishes its counters after every batch; a worker's part is
 * always a consistent snapshot (received == responded + dropped), taken
 * without stopping it.  responded counts prepared responses, tx_errors
 * those among them the kernel refused.  May be called from any thread
 * while the service exists (also from the |done| callback of stop).
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_uv_ntp_get_stats(const ntsntp_uv_ntp *n,
                                           ntsntp_server_stats *out);

/* The number of worker threads. */
NTSNTP_EXTERN unsigned ntsntp_uv_ntp_workers(const ntsntp_uv_ntp *n);

/*
 * 1 if steer_by_client was asked for and is in place (always with one
 * worker), 0 otherwise (not asked for, the kernel refused it, or |n| NULL).
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN int ntsntp_uv_ntp_steered(const ntsntp_uv_ntp *n);

/*
 * The counters of worker |worker| alone (zeroes if out of range); same
 * rules as ntsntp_uv_ntp_get_stats.  Shows how the kernel spreads load.
 */
NTSNTP_EXTERN void ntsntp_uv_ntp_get_worker_stats(const ntsntp_uv_ntp *n,
                                                  unsigned worker,
                                                  ntsntp_server_stats *out);

/*
 * The port actually bound for listen address |idx| (the index in
 * s->listen, or 0 = "0.0.0.0" and 1 = "::" for the default), in host byte
 * order.  Returns 0 for an index out of range or an address left out.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN uint16_t ntsntp_uv_ntp_port(const ntsntp_uv_ntp *n, size_t idx);

/*
 * Stops the service: each worker finishes the batch in hand, closes its
 * handles and sockets, and its thread ends; then the threads are joined
 * and |done| (may be NULL) is called from |loop| with |user|.  |n| stays
 * valid until |done| returns and is freed right after.  Call once, from
 * the loop's thread.  Requests arriving meanwhile are not answered.
 *
 * version-added: 0.1.0
 */
NTSNTP_EXTERN void ntsntp_uv_ntp_stop(ntsntp_uv_ntp *n,
                                      void (*done)(void *user), void *user);

/* ======================================================================
 * End of NTP over UDP
 * ====================================================================== */

#ifdef __cplusplus
}
#endif

#endif /* NTSNTP_UV_H */
