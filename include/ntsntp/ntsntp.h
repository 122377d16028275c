/* libntsntp: NTPv4 and Network Time Security (RFC 8915).  Umbrella header. */
#ifndef NTSNTP_NTSNTP_H
#define NTSNTP_NTSNTP_H

#include "ntsntp/common.h"
#include "ntsntp/version.h"
#include "ntsntp/ts.h"
#include "ntsntp/pkt.h"
#include "ntsntp/cookie.h"
#include "ntsntp/server.h"
#include "ntsntp/client.h"

#endif
