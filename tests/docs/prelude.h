/* Names the code snippets of the docs (docs/ and README.md) use without
 * defining them: the program around a snippet (its clock, its sockets,
 * its objects).  tests/docs/snippets.sh compiles every C block with it. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <ntsntp/ntsntp.h>
#include <ntsntp/ke.h>
#include <ntsntp/nts_client.h>
#include <ntsntp/service.h>
#include <ntsntp/sync.h>

uint64_t now_ntp(void);   /* the system clock in NTP-64 */
uint64_t now_ms(void);    /* a monotonic clock in ms */
void send_bytes(const uint8_t *p, size_t n);
ntsntp_ssize recv_bytes(uint8_t *p, size_t n);
extern ntsntp_keyring *ring;
extern ntsntp_ke_server *ke_server;
extern ntsntp_ke_result result;
extern ntsntp_server_stats stats;
extern uint8_t buf[1500], req[1500], resp[1500], in[16384], out[16384];
extern size_t len;
extern ntsntp_ssize n;
extern uint64_t rx_kernel_ts, t1, t4;
extern int rv;
