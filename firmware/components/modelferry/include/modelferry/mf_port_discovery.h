/* Discovery port: browse DNS-SD for the gateway service (ESP-IDF: espressif/mdns; POSIX: a
 * small querier over a UDP multicast socket, whose packet parser is core/mf_dns.c). */
#ifndef MF_PORT_DISCOVERY_H
#define MF_PORT_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/mf_err.h"

#define MF_GATEWAY_ID_MAX 64
#define MF_HOST_MAX 64

typedef struct {
    char host[MF_HOST_MAX];       /* dotted IPv4 address */
    uint16_t port;
    uint16_t prio;                /* TXT prio, 65535 when absent or invalid */
    int tls;                      /* TXT tls=1 */
    uint16_t tls_port;            /* TXT tlsport, 0 when absent or invalid */
    char id[MF_GATEWAY_ID_MAX];   /* TXT id, may be empty */
} mf_gateway_candidate;

typedef struct mf_discovery mf_discovery;

/* Browses `service` (e.g. "_modelferry._tcp") for up to timeout_ms; writes at most max
 * complete candidates (address, port and a usable api) and returns how many in *count. */
mf_err mf_discovery_browse(mf_discovery *d, const char *service, uint32_t timeout_ms,
                           mf_gateway_candidate *out, size_t max, size_t *count);

#endif
