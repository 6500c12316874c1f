/* The mDNS response parser: well-formed answers as a DNS-SD responder sends them, then
 * hostile packets: every truncation, bit flips, random bytes, compression loops, names
 * too long, lengths that run past the packet. Nothing may crash or read out of bounds
 * (AddressSanitizer watches), and nothing malformed may yield a candidate by accident. */
#include <string.h>

#include "mf_dns.h"
#include "test_util.h"

typedef struct {
    uint8_t b[2048];
    size_t n;
} pkt;

static void u8(pkt *p, uint8_t v) { p->b[p->n++] = v; }
static void u16(pkt *p, uint16_t v) { u8(p, (uint8_t)(v >> 8)); u8(p, (uint8_t)v); }
static void u32(pkt *p, uint32_t v) { u16(p, (uint16_t)(v >> 16)); u16(p, (uint16_t)v); }
static void raw(pkt *p, const void *d, size_t n) { memcpy(p->b + p->n, d, n); p->n += n; }

static void name(pkt *p, const char *text)
{
    while (*text) {
        const char *dot = strchr(text, '.');
        size_t len = dot ? (size_t)(dot - text) : strlen(text);
        u8(p, (uint8_t)len);
        raw(p, text, len);
        text += len + (dot ? 1 : 0);
    }
    u8(p, 0);
}

static void ptr_to(pkt *p, size_t offset) { u16(p, (uint16_t)(0xC000 | offset)); }

/* rr header; returns where rdlength goes */
static size_t rr(pkt *p, uint16_t type, uint32_t ttl)
{
    u16(p, type);
    u16(p, 0x8001); /* cache-flush + IN */
    u32(p, ttl);
    size_t at = p->n;
    u16(p, 0);
    return at;
}

static void rdlen(pkt *p, size_t at) { uint16_t len = (uint16_t)(p->n - at - 2); p->b[at] = (uint8_t)(len >> 8); p->b[at + 1] = (uint8_t)len; }

static void txt(pkt *p, const char *s) { u8(p, (uint8_t)strlen(s)); raw(p, s, strlen(s)); }

/* TXT strings added after the usual ones (a later key overrides an earlier one). */
static const char *extra_txt[2];

/* PTR answer, then SRV, TXT, A additionals, compressed the way responders do. */
static void response(pkt *p, const char *instance_label, uint16_t port, const char *prio, uint32_t ip, uint32_t ttl)
{
    memset(p, 0, sizeof *p);
    u16(p, 0); u16(p, 0x8400); u16(p, 0); u16(p, 1); u16(p, 0); u16(p, 3);
    size_t service = p->n;
    name(p, "_modelferry._tcp.local");
    size_t at = rr(p, 12, ttl);
    size_t inst = p->n;
    u8(p, (uint8_t)strlen(instance_label));
    raw(p, instance_label, strlen(instance_label));
    ptr_to(p, service);
    rdlen(p, at);

    ptr_to(p, inst);
    at = rr(p, 33, ttl);
    u16(p, 0); u16(p, 0); u16(p, port);
    size_t host = p->n;
    name(p, "gw-host.local");
    rdlen(p, at);

    ptr_to(p, inst);
    at = rr(p, 16, ttl);
    txt(p, "txtvers=1");
    txt(p, "api=/v1");
    txt(p, "id=gw-1");
    if (prio) txt(p, prio);
    txt(p, "rev=abc");
    txt(p, "tls=0");
    for (int i = 0; i < 2; i++)
        if (extra_txt[i]) txt(p, extra_txt[i]);
    rdlen(p, at);

    ptr_to(p, host);
    at = rr(p, 1, ttl);
    u32(p, ip);
    rdlen(p, at);
}

static void well_formed(void)
{
    mf_dns_set set;
    mf_dns_set_init(&set, "_modelferry._tcp.local");
    pkt p;
    response(&p, "gateway one", 8080, "prio=5", 0x0A000001, 120);
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0x0A0000FE), MF_OK);
    response(&p, "gateway two", 8081, "prio=3", 0x0A000002, 120);
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK); /* another host name, same A name: last A wins */
    mf_gateway_candidate c[4];
    size_t n = mf_dns_candidates(&set, c, 4);
    CHECK_EQ(n, 2);
    CHECK_STR(c[0].host, "10.0.0.2");
    CHECK_EQ(c[0].port, 8080);
    CHECK_EQ(c[0].prio, 5);
    CHECK_STR(c[0].id, "gw-1");
    CHECK_EQ(c[1].prio, 3);
    CHECK_EQ(c[1].port, 8081);

    /* A goodbye (TTL 0) removes the instance. */
    response(&p, "gateway one", 8080, "prio=5", 0x0A000001, 0);
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK);
    CHECK_EQ(mf_dns_candidates(&set, c, 4), 1);
    CHECK_EQ(c[0].port, 8081);

    /* No A record: the sender's address. Bad prio: lowest preference. Other api: unusable. */
    mf_dns_set_init(&set, "_modelferry._tcp.local");
    response(&p, "gw", 9000, "prio=70000", 0, 120);
    p.n -= 14; /* drop the A record */
    p.b[11] = 2;
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0xC0A80107), MF_OK);
    CHECK_EQ(mf_dns_candidates(&set, c, 4), 1);
    CHECK_STR(c[0].host, "192.168.1.7");
    CHECK_EQ(c[0].prio, 65535);
    mf_dns_set_init(&set, "_modelferry._tcp.local");
    response(&p, "gw", 9000, "api=/v2", 0x0A000001, 120);
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK);
    CHECK_EQ(mf_dns_candidates(&set, c, 4), 0);

    /* TLS offered beside plain HTTP: tls=1 and the HTTPS port; a tlsport that is not a port
     * reads as absent. */
    const char *tlsports[] = {"tlsport=8443", "tlsport=65536", "tlsport=84x3", "tlsport="};
    uint16_t expected[] = {8443, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        mf_dns_set_init(&set, "_modelferry._tcp.local");
        extra_txt[0] = "tls=1";
        extra_txt[1] = tlsports[i];
        response(&p, "gw", 8080, "prio=1", 0x0A000001, 120);
        extra_txt[0] = extra_txt[1] = NULL;
        CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK);
        CHECK_EQ(mf_dns_candidates(&set, c, 4), 1);
        CHECK_EQ(c[0].tls, 1);
        CHECK_EQ(c[0].port, 8080);
        CHECK_EQ(c[0].tls_port, expected[i]);
    }

    /* Other services and queries are ignored. */
    mf_dns_set_init(&set, "_other._tcp.local");
    response(&p, "gw", 9000, NULL, 0x0A000001, 120);
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK);
    CHECK_EQ(mf_dns_candidates(&set, c, 4), 0);
    mf_dns_set_init(&set, "_modelferry._tcp.local");
    p.b[2] = 0;
    CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK);
    CHECK_EQ(mf_dns_candidates(&set, c, 4), 0);
}

static void query(void)
{
    uint8_t q[64];
    size_t n = mf_dns_build_query(q, sizeof q, "_modelferry._tcp.local", 12);
    CHECK_EQ(n, 12 + 24 + 4);
    CHECK_EQ(q[5], 1);
    CHECK_EQ(q[12], 11);
    CHECK(memcmp(q + 13, "_modelferry", 11) == 0);
    CHECK_EQ(mf_dns_build_query(q, 20, "_modelferry._tcp.local", 12), 0);
    CHECK_EQ(mf_dns_build_query(q, sizeof q, "a..b", 12), 0);
}

static void names(void)
{
    char out[MF_DNS_NAME_MAX];
    size_t off;
    /* A pointer to itself, forward, and a two-pointer loop. */
    uint8_t self[] = {0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 12};
    off = 12;
    CHECK_EQ(mf_dns_read_name(self, sizeof self, &off, out, sizeof out), -1);
    uint8_t fwd[] = {0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 14, 1, 'a', 0};
    off = 12;
    CHECK_EQ(mf_dns_read_name(fwd, sizeof fwd, &off, out, sizeof out), -1);
    uint8_t loop[] = {0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0xC0, 12};
    off = 14;
    CHECK_EQ(mf_dns_read_name(loop, sizeof loop, &off, out, sizeof out), -1);
    /* 4 x 63-octet labels: over 255. */
    uint8_t longname[12 + 4 * 64 + 1];
    memset(longname, 0, sizeof longname);
    for (int i = 0; i < 4; i++) {
        longname[12 + i * 64] = 63;
        memset(longname + 12 + i * 64 + 1, 'x', 63);
    }
    off = 12;
    CHECK_EQ(mf_dns_read_name(longname, sizeof longname, &off, out, sizeof out), -1);
    /* Exactly fits a small buffer vs one byte short. */
    uint8_t ab[] = {1, 'a', 1, 'b', 0};
    off = 0;
    CHECK_EQ(mf_dns_read_name(ab, sizeof ab, &off, out, 4), 0);
    CHECK_STR(out, "a.b");
    CHECK_EQ(off, 5);
    off = 0;
    CHECK_EQ(mf_dns_read_name(ab, sizeof ab, &off, out, 3), -1);
    /* A NUL inside a label, reserved label types, a label running off the end. */
    uint8_t nul[] = {2, 'a', 0, 0};
    off = 0;
    CHECK_EQ(mf_dns_read_name(nul, sizeof nul, &off, out, sizeof out), -1);
    uint8_t reserved[] = {0x40, 'a', 0};
    off = 0;
    CHECK_EQ(mf_dns_read_name(reserved, sizeof reserved, &off, out, sizeof out), -1);
    uint8_t off_end[] = {5, 'a', 'b'};
    off = 0;
    CHECK_EQ(mf_dns_read_name(off_end, sizeof off_end, &off, out, sizeof out), -1);
}

static uint32_t rng = 12345;
static uint32_t next_random(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

/* Parses a copy of exactly len bytes on the heap, so any read past it is caught. */
static void parse_exact(mf_dns_set *set, const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, data, len);
    (void)mf_dns_parse(set, copy, len, 0x7F000001);
    mf_gateway_candidate c[MF_DNS_MAX_INSTANCES];
    size_t n = mf_dns_candidates(set, c, MF_DNS_MAX_INSTANCES);
    for (size_t i = 0; i < n; i++) CHECK(strlen(c[i].host) < sizeof c[i].host && c[i].port != 0);
    free(copy);
}

/* MF_FUZZ_ITERATIONS (fuzz.sh) runs the random parts at length; the suite runs 20,000. */
static int iterations(void)
{
    const char *v = getenv("MF_FUZZ_ITERATIONS");
    return v && atoi(v) > 0 ? atoi(v) : 20000;
}

static void hostile_packets(void)
{
    static mf_dns_set set;
    pkt p;
    response(&p, "gateway one", 8080, "prio=5", 0x0A000001, 120);
    /* Every truncation. */
    for (size_t len = 0; len <= p.n; len++) {
        mf_dns_set_init(&set, "_modelferry._tcp.local");
        parse_exact(&set, p.b, len);
        if (len < p.n - 14) CHECK_EQ(mf_dns_candidates(&set, (mf_gateway_candidate[8]){0}, 8) <= 1, 1);
    }
    /* Every single-bit flip, and random multi-byte corruptions. */
    for (size_t bit = 0; bit < p.n * 8; bit++) {
        pkt q = p;
        q.b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        mf_dns_set_init(&set, "_modelferry._tcp.local");
        parse_exact(&set, q.b, q.n);
    }
    for (int i = 0; i < iterations(); i++) {
        pkt q = p;
        int k = 1 + (int)(next_random() % 8);
        for (int j = 0; j < k; j++) q.b[next_random() % q.n] = (uint8_t)next_random();
        mf_dns_set_init(&set, "_modelferry._tcp.local");
        parse_exact(&set, q.b, q.n);
    }
    /* Pure noise, with a response header so records are read. */
    for (int i = 0; i < iterations(); i++) {
        uint8_t noise[512];
        size_t len = next_random() % sizeof noise;
        for (size_t j = 0; j < len; j++) noise[j] = (uint8_t)next_random();
        if (len > 12) {
            noise[2] |= 0x80;
            noise[4] = 0;
            noise[5] = (uint8_t)(next_random() % 3);
            noise[6] = 0;
            noise[7] = (uint8_t)(next_random() % 40);
        }
        mf_dns_set_init(&set, "_modelferry._tcp.local");
        parse_exact(&set, noise, len);
    }
    /* Counts that promise more records than there are. */
    pkt q = p;
    q.b[7] = 0xFF;
    q.b[11] = 0xFF;
    mf_dns_set_init(&set, "_modelferry._tcp.local");
    CHECK_EQ(mf_dns_parse(&set, q.b, q.n, 0), MF_ERR_PROTOCOL);
    /* More instances than the set holds. */
    mf_dns_set_init(&set, "_modelferry._tcp.local");
    for (int i = 0; i < 20; i++) {
        char label[16];
        snprintf(label, sizeof label, "gw%d", i);
        response(&p, label, (uint16_t)(8000 + i), "prio=1", 0x0A000001, 120);
        CHECK_EQ(mf_dns_parse(&set, p.b, p.n, 0), MF_OK);
    }
    CHECK_EQ(set.n_inst, MF_DNS_MAX_INSTANCES);
}

int main(void)
{
    RUN(well_formed);
    RUN(query);
    RUN(names);
    RUN(hostile_packets);
    DONE();
}
