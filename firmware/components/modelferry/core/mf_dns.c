#include "mf_dns.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

void mf_dns_set_init(mf_dns_set *set, const char *service_fqdn)
{
    memset(set, 0, sizeof *set);
    snprintf(set->service, sizeof set->service, "%s", service_fqdn);
}

size_t mf_dns_build_query(uint8_t *buf, size_t cap, const char *name, uint16_t qtype)
{
    size_t n = 12;
    if (cap < n) return 0;
    memset(buf, 0, 12);
    buf[5] = 1; /* QDCOUNT */
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t label = dot ? (size_t)(dot - p) : strlen(p);
        if (label == 0 || label > 63 || n + 1 + label >= cap) return 0;
        buf[n++] = (uint8_t)label;
        memcpy(buf + n, p, label);
        n += label;
        p += label;
        if (*p == '.') p++;
    }
    if (n + 5 > cap) return 0;
    buf[n++] = 0;
    buf[n++] = (uint8_t)(qtype >> 8);
    buf[n++] = (uint8_t)qtype;
    buf[n++] = 0;
    buf[n++] = 1; /* IN */
    return n;
}

int mf_dns_read_name(const uint8_t *pkt, size_t len, size_t *off, char *out, size_t cap)
{
    size_t pos = *off, end_of_name = 0, used = 0;
    size_t lowest = pos; /* a pointer must go strictly below every position visited */
    int jumped = 0;
    if (cap == 0) return -1;
    out[0] = '\0';
    for (;;) {
        if (pos >= len) return -1;
        uint8_t b = pkt[pos];
        if ((b & 0xC0) == 0xC0) {
            if (pos + 1 >= len) return -1;
            size_t target = (size_t)((b & 0x3F) << 8 | pkt[pos + 1]);
            if (target >= lowest) return -1;
            if (!jumped) { end_of_name = pos + 2; jumped = 1; }
            lowest = target;
            pos = target;
            continue;
        }
        if ((b & 0xC0) != 0) return -1; /* reserved label types */
        if (b == 0) {
            if (!jumped) end_of_name = pos + 1;
            break;
        }
        if (pos + 1 + b > len) return -1;
        /* "label." must fit (the last dot becomes the NUL); a name is at most 255 octets. */
        if (used + b + 1 > cap || used + b + 1 > 255) return -1;
        for (size_t i = 0; i < b; i++) {
            char ch = (char)pkt[pos + 1 + i];
            if (ch == '\0') return -1;
            out[used++] = ch;
        }
        out[used++] = '.';
        pos += 1 + b;
    }
    if (used > 0) used--; /* no trailing dot */
    out[used] = '\0';
    *off = end_of_name;
    return 0;
}

static mf_dns_instance *instance(mf_dns_set *set, const char *name, int create)
{
    for (size_t i = 0; i < set->n_inst; i++)
        if (strcasecmp(set->inst[i].name, name) == 0) return &set->inst[i];
    if (!create || set->n_inst >= MF_DNS_MAX_INSTANCES) return NULL;
    mf_dns_instance *in = &set->inst[set->n_inst++];
    memset(in, 0, sizeof *in);
    snprintf(in->name, sizeof in->name, "%s", name);
    in->prio = 65535;
    in->api_ok = 1;
    return in;
}

static void drop_instance(mf_dns_set *set, const char *name)
{
    for (size_t i = 0; i < set->n_inst; i++) {
        if (strcasecmp(set->inst[i].name, name) != 0) continue;
        set->inst[i] = set->inst[--set->n_inst];
        return;
    }
}

/* An instance of our service: "<label(s)>.<service>". */
static int of_service(const mf_dns_set *set, const char *name)
{
    size_t n = strlen(name), s = strlen(set->service);
    return n > s + 1 && name[n - s - 1] == '.' && strcasecmp(name + n - s, set->service) == 0;
}

static int parse_u16(const char *v, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) return -1;
    uint32_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        x = x * 10 + (uint32_t)(v[i] - '0');
    }
    if (x > 65535) return -1;
    *out = (uint16_t)x;
    return 0;
}

static void parse_txt(mf_dns_instance *in, const uint8_t *rd, size_t rdlen)
{
    in->prio = 65535;
    in->tls = 0;
    in->tls_port = 0;
    in->api_ok = 1;
    in->id[0] = '\0';
    for (size_t p = 0; p < rdlen;) {
        size_t n = rd[p++];
        if (n > rdlen - p) return;
        const char *s = (const char *)rd + p;
        const char *eq = memchr(s, '=', n);
        size_t klen = eq ? (size_t)(eq - s) : n;
        const char *v = eq ? eq + 1 : s + n;
        size_t vlen = eq ? n - klen - 1 : 0;
        if (klen == 4 && strncasecmp(s, "prio", 4) == 0) {
            if (parse_u16(v, vlen, &in->prio) != 0) in->prio = 65535;
        } else if (klen == 3 && strncasecmp(s, "tls", 3) == 0) {
            in->tls = vlen == 1 && v[0] == '1';
        } else if (klen == 7 && strncasecmp(s, "tlsport", 7) == 0) {
            if (parse_u16(v, vlen, &in->tls_port) != 0) in->tls_port = 0;
        } else if (klen == 3 && strncasecmp(s, "api", 3) == 0) {
            in->api_ok = vlen == 3 && memcmp(v, "/v1", 3) == 0;
        } else if (klen == 2 && strncasecmp(s, "id", 2) == 0) {
            size_t m = vlen < sizeof in->id - 1 ? vlen : sizeof in->id - 1;
            memcpy(in->id, v, m);
            in->id[m] = '\0';
            for (size_t i = 0; i < m; i++)
                if (in->id[i] == '\0') in->id[i] = '?';
        }
        p += n;
    }
}

static void add_host(mf_dns_set *set, const char *name, uint32_t ipv4)
{
    for (size_t i = 0; i < set->n_host; i++)
        if (strcasecmp(set->host[i].name, name) == 0) { set->host[i].ipv4 = ipv4; return; }
    if (set->n_host >= MF_DNS_MAX_HOSTS) return;
    snprintf(set->host[set->n_host].name, MF_DNS_NAME_MAX, "%s", name);
    set->host[set->n_host++].ipv4 = ipv4;
}

mf_err mf_dns_parse(mf_dns_set *set, const uint8_t *pkt, size_t len, uint32_t source_ipv4)
{
    char name[MF_DNS_NAME_MAX], data[MF_DNS_NAME_MAX];
    if (len < 12) return MF_ERR_PROTOCOL;
    if (!(pkt[2] & 0x80)) return MF_OK; /* a query */
    size_t qd = rd16(pkt + 4), records = (size_t)rd16(pkt + 6) + rd16(pkt + 8) + rd16(pkt + 10);
    size_t off = 12;
    for (size_t i = 0; i < qd; i++) {
        if (mf_dns_read_name(pkt, len, &off, name, sizeof name) != 0 || off + 4 > len) return MF_ERR_PROTOCOL;
        off += 4;
    }
    for (size_t i = 0; i < records; i++) {
        if (mf_dns_read_name(pkt, len, &off, name, sizeof name) != 0 || off + 10 > len) return MF_ERR_PROTOCOL;
        uint16_t type = rd16(pkt + off), klass = rd16(pkt + off + 2) & 0x7FFF;
        uint32_t ttl = (uint32_t)rd16(pkt + off + 4) << 16 | rd16(pkt + off + 6);
        size_t rdlen = rd16(pkt + off + 8);
        off += 10;
        if (rdlen > len - off) return MF_ERR_PROTOCOL;
        size_t rd = off, next = off + rdlen;
        off = next;
        if (klass != 1) continue;

        if (type == MF_DNS_TYPE_PTR && strcasecmp(name, set->service) == 0) {
            size_t p = rd;
            if (mf_dns_read_name(pkt, next, &p, data, sizeof data) != 0 || p != next) return MF_ERR_PROTOCOL;
            if (!of_service(set, data)) continue;
            if (ttl == 0) drop_instance(set, data); /* goodbye */
            else instance(set, data, 1);
        } else if (type == MF_DNS_TYPE_SRV && of_service(set, name)) {
            size_t p = rd + 6;
            if (rdlen < 7 || mf_dns_read_name(pkt, next, &p, data, sizeof data) != 0 || p != next) return MF_ERR_PROTOCOL;
            if (ttl == 0) { drop_instance(set, name); continue; }
            mf_dns_instance *in = instance(set, name, 1);
            if (!in) continue;
            in->port = rd16(pkt + rd + 4);
            snprintf(in->target, sizeof in->target, "%s", data);
            in->has_srv = in->port != 0;
            in->source_ipv4 = source_ipv4;
        } else if (type == MF_DNS_TYPE_TXT && of_service(set, name)) {
            mf_dns_instance *in = instance(set, name, 1);
            if (in) parse_txt(in, pkt + rd, rdlen);
        } else if (type == MF_DNS_TYPE_A) {
            if (rdlen != 4) return MF_ERR_PROTOCOL;
            const uint8_t *a = pkt + rd;
            add_host(set, name, (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3]);
        }
    }
    return MF_OK;
}

size_t mf_dns_candidates(const mf_dns_set *set, mf_gateway_candidate *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < set->n_inst && n < max; i++) {
        const mf_dns_instance *in = &set->inst[i];
        if (!in->has_srv || !in->api_ok) continue;
        uint32_t ip = 0;
        for (size_t h = 0; h < set->n_host; h++)
            if (strcasecmp(set->host[h].name, in->target) == 0) ip = set->host[h].ipv4;
        if (ip == 0) ip = in->source_ipv4;
        if (ip == 0) continue;
        mf_gateway_candidate *c = &out[n++];
        memset(c, 0, sizeof *c);
        snprintf(c->host, sizeof c->host, "%" PRIu32 ".%" PRIu32 ".%" PRIu32 ".%" PRIu32, ip >> 24, (ip >> 16) & 255,
                 (ip >> 8) & 255, ip & 255);
        c->port = in->port;
        c->prio = in->prio;
        c->tls = in->tls;
        c->tls_port = in->tls_port;
        snprintf(c->id, sizeof c->id, "%s", in->id);
    }
    return n;
}
