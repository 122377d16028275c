/*
 * libntsntp runtime, internal: access control and rate limiting wired into
 * the service (access.h on the NTP workers' and NTS-KE threads' hooks).
 *
 * One object holds, for the whole service:
 *   - the ACL (ALLOW / DENY), read concurrently by every thread;
 *   - one NTP rate-limit table per NTP worker, each behind its own mutex
 *     (only its worker takes it on the packet path, so it is uncontended
 *     except while ntsctl reads the table);
 *   - one NTS-KE rate-limit table (which never leaks: TCP sources cannot
 *     be spoofed) and the count of open NTS-KE connections per client and
 *     per network, behind one mutex shared by the KE threads.
 */
#ifndef NTSNTP_UV_ACCESS_SVC_H
#define NTSNTP_UV_ACCESS_SVC_H

#include "ntsntp/access.h"
#include "ntsntp/control.h"
#include "ntsntp/uv.h"
#include "ntsntp/uv_ke.h"

typedef struct ntsntp__access_svc ntsntp__access_svc;

typedef struct ntsntp__access_svc_settings {
  const char *allow, *deny; /* comma-separated; allow NULL or "": all */
  ntsntp_ratelimit_settings ntp, ke; /* max_bytes is set from below */
  size_t client_log_limit;  /* all tables together */
  unsigned ntp_workers;     /* 0: one per online CPU (as udp.c); */
  int want_ntp, want_ke;    /* which tables to make */
  unsigned max_per_client;  /* NTS-KE connections per /32 or /64; 0: any */
  unsigned max_per_network; /* NTS-KE connections per /24 or /56; 0: any */
  unsigned max_connections; /* NTS-KE connections in all (sizes a table) */
  ntsntp_log_fn log;
  void *log_user;
} ntsntp__access_svc_settings;

/*
 * Parses the lists and allocates every table (no allocation afterwards).
 * Errors (|errbuf| names the setting, the bad item and the syntax):
 * BAD_CONFIG, INVALID_ARG (rate-limit numbers out of range), NOMEM.
 */
int ntsntp__access_svc_new(ntsntp__access_svc **out,
                           const ntsntp__access_svc_settings *s,
                           char *errbuf, size_t errlen);

/* Frees |a| (NULL allowed); no hook may run any more. */
void ntsntp__access_svc_del(ntsntp__access_svc *a);

/* Sets the accept and filter hooks of the NTP workers. */
void ntsntp__access_svc_wire_ntp(ntsntp__access_svc *a,
                                 ntsntp_uv_ntp_settings *ns);

/* Sets the accept and release hooks of the NTS-KE threads. */
void ntsntp__access_svc_wire_ke(ntsntp__access_svc *a,
                                ntsntp_uv_ke_settings *ks);

/* The `clients` provider: NTP clients merged over the workers' tables,
 * most packets first.  Any thread; takes each table's lock in turn. */
/* monitoring: records in use and capacity of the NTP tables (summed) and
 * the NTS-KE table.  |a| may be NULL (all zero). */
void ntsntp__access_svc_table_sizes(ntsntp__access_svc *a,
                                    ntsntp_ctl_ratelimit *out);

size_t ntsntp__access_svc_clients(void *a, ntsntp_ctl_client *out,
                                  size_t max);

#endif /* NTSNTP_UV_ACCESS_SVC_H */
