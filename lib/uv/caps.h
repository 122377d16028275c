/* Runtime internal: the calling thread's capability sets (Linux). */
#ifndef NTSNTP_UV_CAPS_H
#define NTSNTP_UV_CAPS_H

#include <stdint.h>

/*
 * Drops every capability but those in |keep| (1 << CAP_* bits) from the
 * calling thread's bounding set, which threads started later inherit.
 * Needs CAP_SETPCAP; without it the set stays as it is (what the process
 * may ever hold is then already bounded by whoever started it).
 */
void ntsntp__caps_bound(uint64_t keep);

/*
 * Leaves exactly |keep| in the permitted and effective sets, and nothing
 * in the inheritable and ambient ones.  Returns 0, -1 (capget/capset
 * failed: errno; or the sets did not take), or -2 when |keep| is not
 * all permitted now (the process cannot have it).
 */
int ntsntp__caps_only(uint64_t keep);

#endif
