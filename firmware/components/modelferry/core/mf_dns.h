/* DNS-SD over mDNS, the parts the POSIX discovery port needs: a PTR query, and a parser
 * that collects PTR, SRV, TXT and A records for one service from untrusted packets.
 * Everything a packet says is bounds-checked; compression pointers must point strictly
 * backwards (no loops); anything malformed drops the rest of that packet. */
#ifndef MF_DNS_H
#define MF_DNS_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/mf_err.h"
#include "modelferry/mf_port_discovery.h"

#define MF_DNS_NAME_MAX 256   /* 255 octets as text, plus NUL */
#define MF_DNS_MAX_INSTANCES 8
#define MF_DNS_MAX_HOSTS 8
#define MF_DNS_TYPE_A 1
#define MF_DNS_TYPE_PTR 12
#define MF_DNS_TYPE_TXT 16
#define MF_DNS_TYPE_SRV 33

typedef struct {
    char name[MF_DNS_NAME_MAX];     /* instance FQDN */
    char target[MF_DNS_NAME_MAX];
    uint16_t port;
    int has_srv;
    uint16_t prio;
    int tls;
    uint16_t tls_port;
    int api_ok;                     /* no TXT api, or api=/v1 */
    char id[MF_GATEWAY_ID_MAX];
    uint32_t source_ipv4;           /* who sent the SRV, host order; used when no A record came */
} mf_dns_instance;

typedef struct {
    char service[MF_DNS_NAME_MAX];  /* e.g. "_modelferry._tcp.local" */
    mf_dns_instance inst[MF_DNS_MAX_INSTANCES];
    size_t n_inst;
    struct { char name[MF_DNS_NAME_MAX]; uint32_t ipv4; } host[MF_DNS_MAX_HOSTS];
    size_t n_host;
} mf_dns_set;

void mf_dns_set_init(mf_dns_set *set, const char *service_fqdn);

/* Builds a query (one question, class IN, QU bit clear). Returns its length, 0 if it does
 * not fit. */
size_t mf_dns_build_query(uint8_t *buf, size_t cap, const char *name, uint16_t qtype);

/* Adds what a response packet says about the service to the set. source_ipv4 (host order)
 * is the sender's address. MF_ERR_PROTOCOL for a malformed packet (records before the
 * problem are kept). Queries (QR bit clear) are ignored. */
mf_err mf_dns_parse(mf_dns_set *set, const uint8_t *pkt, size_t len, uint32_t source_ipv4);

/* Complete candidates (SRV known, an address, a usable api), at most max. */
size_t mf_dns_candidates(const mf_dns_set *set, mf_gateway_candidate *out, size_t max);

/* Reads a possibly compressed name at *off; on success *off moves past it. 0 on success. */
int mf_dns_read_name(const uint8_t *pkt, size_t len, size_t *off, char *out, size_t cap);

#endif
