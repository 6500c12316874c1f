/* Which gateway to talk to (docs/design.md "LAN discovery"): the lowest prio, ties broken at random
 * (but the last gateway that answered wins its tie, so a device does not hop), then the
 * rest by prio, then the last good one if discovery no longer sees it, then the configured
 * fallback URL. A device that pins its gateways takes only https ones: a candidate that
 * does not offer TLS is not on the list, however low its prio. */
#ifndef MF_GATEWAY_SELECT_H
#define MF_GATEWAY_SELECT_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/modelferry.h"

typedef enum {
    MF_TLS_IF_ONLY,      /* https only where the gateway offers nothing else (no other tlsport) */
    MF_TLS_PREFERRED,    /* https wherever it is offered */
    MF_TLS_REQUIRED,     /* https only: the device pins its gateways */
} mf_tls_use;

typedef struct {
    char url[MF_GATEWAYS_MAX][MF_BASE_URL_MAX];
    size_t count;
    mf_tls_use tls;
} mf_gateway_list;

/* "http://host:port", or "https://host:tlsport" (the SRV port without a tlsport) where TLS
 * is used. 0 on success, -1 when it does not fit. */
int mf_candidate_url(const mf_gateway_candidate *c, mf_tls_use tls, char *out, size_t cap);

/* Orders what to try. last_good and fallback may be NULL or "". */
void mf_gateway_order(const mf_gateway_candidate *c, size_t n, const char *last_good,
                      const char *fallback, uint32_t random, mf_tls_use tls, mf_gateway_list *out);

#endif
