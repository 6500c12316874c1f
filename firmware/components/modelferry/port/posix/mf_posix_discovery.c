#define _GNU_SOURCE
#include "mf_posix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mf_dns.h"

/* A one-shot mDNS querier: it binds 5353 beside any responder (SO_REUSEADDR/PORT), since
 * responders answer queries from other ports as legacy unicast, which multicast-dns (the
 * gateway's responder) does not do. */
struct mf_discovery {
    char ifaddr[64];
};

mf_discovery *mf_posix_discovery_new(const char *ifaddr)
{
    mf_discovery *d = calloc(1, sizeof *d);
    if (d && ifaddr) snprintf(d->ifaddr, sizeof d->ifaddr, "%s", ifaddr);
    return d;
}

void mf_posix_discovery_free(mf_discovery *d) { free(d); }

static int open_socket(const mf_discovery *d)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    unsigned char ttl = 255, loop = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(5353), .sin_addr.s_addr = htonl(INADDR_ANY)};
    struct ip_mreq mreq = {.imr_multiaddr.s_addr = inet_addr("224.0.0.251"), .imr_interface.s_addr = htonl(INADDR_ANY)};
    if (d->ifaddr[0]) {
        struct in_addr ifa;
        if (inet_pton(AF_INET, d->ifaddr, &ifa) != 1) { close(fd); return -1; }
        mreq.imr_interface = ifa;
        setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &ifa, sizeof ifa);
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
    return fd;
}

static void send_query(int fd, const char *name, uint16_t type)
{
    uint8_t q[300];
    size_t n = mf_dns_build_query(q, sizeof q, name, type);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(5353), .sin_addr.s_addr = inet_addr("224.0.0.251")};
    if (n) (void)sendto(fd, q, n, 0, (struct sockaddr *)&to, sizeof to);
}

/* Reads answers until the deadline. */
static void collect(int fd, mf_dns_set *set, uint64_t deadline)
{
    static uint8_t pkt[9000];
    for (;;) {
        uint64_t now = mf_posix_monotonic_ms();
        if (now >= deadline) return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return;
        }
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&from, &fl);
        if (n <= 0) continue;
        (void)mf_dns_parse(set, pkt, (size_t)n, ntohl(from.sin_addr.s_addr));
    }
}

mf_err mf_discovery_browse(mf_discovery *d, const char *service, uint32_t timeout_ms,
                           mf_gateway_candidate *out, size_t max, size_t *count)
{
    *count = 0;
    char fqdn[MF_DNS_NAME_MAX];
    snprintf(fqdn, sizeof fqdn, "%s.local", service);
    int fd = open_socket(d);
    if (fd < 0) return MF_ERR_NETWORK;
    mf_dns_set *set = malloc(sizeof *set);
    if (!set) { close(fd); return MF_ERR_NO_MEMORY; }
    mf_dns_set_init(set, fqdn);

    uint64_t start = mf_posix_monotonic_ms();
    send_query(fd, fqdn, MF_DNS_TYPE_PTR);
    collect(fd, set, start + timeout_ms / 2);
    /* Ask for what the answers left out (a responder may send only the PTR). */
    for (size_t i = 0; i < set->n_inst; i++) {
        if (!set->inst[i].has_srv) {
            send_query(fd, set->inst[i].name, MF_DNS_TYPE_SRV);
            send_query(fd, set->inst[i].name, MF_DNS_TYPE_TXT);
        } else {
            send_query(fd, set->inst[i].target, MF_DNS_TYPE_A);
        }
    }
    collect(fd, set, start + timeout_ms);
    close(fd);
    *count = mf_dns_candidates(set, out, max);
    free(set);
    return MF_OK;
}
