/* Discovery with the espressif/mdns component: one PTR browse, results to candidates. */
#include "modelferry/mf_port_discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_netif_ip_addr.h"
#include "mdns.h"

struct mf_discovery {
    int unused;
};

static struct mf_discovery discovery;

mf_discovery *mf_esp_discovery(void) { return &discovery; }

static uint16_t parse_u16(const char *v)
{
    if (!v || !*v || strlen(v) > 5) return 65535;
    unsigned long x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return 65535;
        x = x * 10 + (unsigned long)(*p - '0');
    }
    return x > 65535 ? 65535 : (uint16_t)x;
}

mf_err mf_discovery_browse(mf_discovery *d, const char *service, uint32_t timeout_ms,
                           mf_gateway_candidate *out, size_t max, size_t *count)
{
    (void)d;
    *count = 0;
    /* "_modelferry._tcp" -> type "_modelferry", proto "_tcp" */
    char type[64];
    const char *dot = strrchr(service, '.');
    if (!dot || (size_t)(dot - service) >= sizeof type) return MF_ERR_INVALID_ARG;
    memcpy(type, service, (size_t)(dot - service));
    type[dot - service] = '\0';

    mdns_result_t *results = NULL;
    if (mdns_query_ptr(type, dot + 1, timeout_ms, 8, &results) != ESP_OK) return MF_ERR_NETWORK;
    for (mdns_result_t *r = results; r && *count < max; r = r->next) {
        if (r->port == 0) continue;
        mf_gateway_candidate c;
        memset(&c, 0, sizeof c);
        c.port = r->port;
        c.prio = 65535;
        int api_ok = 1;
        for (size_t i = 0; i < r->txt_count; i++) {
            const char *k = r->txt[i].key, *v = r->txt[i].value;
            if (!k) continue;
            if (strcmp(k, "prio") == 0) c.prio = parse_u16(v);
            else if (strcmp(k, "tls") == 0) c.tls = v && strcmp(v, "1") == 0;
            else if (strcmp(k, "tlsport") == 0) c.tls_port = parse_u16(v) == 65535 ? 0 : parse_u16(v);
            else if (strcmp(k, "api") == 0) api_ok = v && strcmp(v, "/v1") == 0;
            else if (strcmp(k, "id") == 0 && v) snprintf(c.id, sizeof c.id, "%s", v);
        }
        if (!api_ok) continue;
        for (mdns_ip_addr_t *a = r->addr; a; a = a->next) {
            if (a->addr.type != ESP_IPADDR_TYPE_V4) continue;
            snprintf(c.host, sizeof c.host, IPSTR, IP2STR(&a->addr.u_addr.ip4));
            break;
        }
        if (c.host[0] == '\0' && r->hostname) {
            /* SRV and A came in different packets: ask for the address. */
            esp_ip4_addr_t ip;
            if (mdns_query_a(r->hostname, timeout_ms, &ip) == ESP_OK) snprintf(c.host, sizeof c.host, IPSTR, IP2STR(&ip));
        }
        if (c.host[0] == '\0') continue;
        out[(*count)++] = c;
    }
    mdns_query_results_free(results);
    return MF_OK;
}
