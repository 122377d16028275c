/*
 * libntsntp runtime, internal: the control server object (control.c: the
 * socket, the HTTP listener and the request parsing) and the reports it
 * serves (ctl_report.c: chronyc-style reports; ctl_metrics.c: Prometheus
 * exposition).  Reports read only the provider and the request counters.
 */
#ifndef NTSNTP_UV_CTL_H
#define NTSNTP_UV_CTL_H

#include <sys/types.h>
#include <sys/un.h>

#include "ntsntp/control.h"

#include "ctl_fmt.h"

#define NTSNTP__CTL_SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* What ERR unknown-command lists. */
#define NTSNTP__CTL_COMMANDS                                                   \
  "tracking sources sourcestats selectdata authdata ntpdata activity "         \
  "serverstats clients metrics health reload-sources"

struct ntsntp__ctl_conn;

struct ntsntp_uv_ctl {
  ntsntp_uv_ctl_settings s;
  uv_loop_t *loop;
  char path[NTSNTP__CTL_SUN_PATH_MAX];
  dev_t dev;
  ino_t ino;
  uv_pipe_t pipe;
  uv_tcp_t tcp;
  int have_pipe, have_tcp, own_path;
  uint16_t metrics_port;
  struct ntsntp__ctl_conn *conns;
  unsigned n_ctl, n_http;
  int handles, stopping;
  uint64_t requests, dropped;
  void (*done)(void *);
  void *done_user;
};

/* The provider's sources, at most NTSNTP_CTL_MAX_SOURCES; 0 without a
 * sources callback. */
size_t ntsntp__ctl_get_sources(ntsntp_uv_ctl *c, ntsntp_ctl_source *src);

/* NTP drops by reason (see ctl_report.c): the reasons that are always
 * drops, the drops under each, and those under any other reason. */
extern const ntsntp_server_reason ntsntp__ctl_drop_reasons[];
#define NTSNTP__CTL_N_DROP_REASONS 9
uint64_t ntsntp__ctl_drops_for(const ntsntp_server_stats *st, size_t i);
uint64_t ntsntp__ctl_drops_other(const ntsntp_server_stats *st);

/* ctl_sources.c: chronyc's selectdata, authdata, ntpdata and activity.
 * Errors: NOMEM. */
int ntsntp__ctl_report_selectdata(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json);
int ntsntp__ctl_report_authdata(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json);
int ntsntp__ctl_report_ntpdata(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json);
int ntsntp__ctl_report_activity(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json);

/* Why `health` fails now ("" if it does not): the served certificate has
 * expired, or the last reload (or check of its files) failed. */
void ntsntp__ctl_health_problem(ntsntp_uv_ctl *c, char *out, size_t len);

/* The Prometheus exposition (text) or the same samples as JSON.
 * Errors: NOMEM. */
int ntsntp__ctl_report_metrics(ntsntp_uv_ctl *c, ntsntp__sbuf *b, int json);

#endif /* NTSNTP_UV_CTL_H */
