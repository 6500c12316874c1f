/* Gateway choice from discovery results, and the waits: backoff and poll jitter. */
#include <string.h>
#include <sodium.h>

#include "mf_backoff.h"
#include "mf_gateway_select.h"
#include "test_util.h"

static mf_gateway_candidate cand(const char *host, uint16_t port, uint16_t prio)
{
    mf_gateway_candidate c;
    memset(&c, 0, sizeof c);
    snprintf(c.host, sizeof c.host, "%s", host);
    c.port = port;
    c.prio = prio;
    return c;
}

static void lowest_prio_first(void)
{
    mf_gateway_candidate c[3] = {cand("10.0.0.1", 8080, 20), cand("10.0.0.2", 8080, 5), cand("10.0.0.3", 8081, 10)};
    mf_gateway_list l;
    mf_gateway_order(c, 3, NULL, "http://fallback:8080", 12345, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, 4);
    CHECK_STR(l.url[0], "http://10.0.0.2:8080");
    CHECK_STR(l.url[1], "http://10.0.0.3:8081");
    CHECK_STR(l.url[2], "http://10.0.0.1:8080");
    CHECK_STR(l.url[3], "http://fallback:8080");
    c[0].tls = 1;
    mf_gateway_order(c, 3, NULL, NULL, 0, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, 3);
    CHECK_STR(l.url[2], "https://10.0.0.1:8080");
}

static void ties_at_random_last_good_sticks(void)
{
    mf_gateway_candidate c[3] = {cand("10.0.0.1", 1, 10), cand("10.0.0.2", 1, 10), cand("10.0.0.3", 1, 99)};
    int first[2] = {0, 0};
    for (uint32_t r = 0; r < 200; r++) {
        mf_gateway_list l;
        mf_gateway_order(c, 3, NULL, NULL, r * 2654435761u, MF_TLS_IF_ONLY, &l);
        CHECK_EQ(l.count, 3);
        CHECK_STR(l.url[2], "http://10.0.0.3:1");
        first[strcmp(l.url[0], "http://10.0.0.1:1") == 0 ? 0 : 1]++;
    }
    CHECK(first[0] > 50 && first[1] > 50);
    for (uint32_t r = 0; r < 20; r++) {
        mf_gateway_list l;
        mf_gateway_order(c, 3, "http://10.0.0.2:1", NULL, r, MF_TLS_IF_ONLY, &l);
        CHECK_STR(l.url[0], "http://10.0.0.2:1");
    }
    /* The last good one does not jump a better prio. */
    mf_gateway_list l;
    mf_gateway_order(c, 3, "http://10.0.0.3:1", NULL, 0, MF_TLS_IF_ONLY, &l);
    CHECK(strcmp(l.url[0], "http://10.0.0.3:1") != 0);
}

static void nothing_discovered(void)
{
    mf_gateway_list l;
    mf_gateway_order(NULL, 0, "http://last:1", "http://fallback:2", 0, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, 2);
    CHECK_STR(l.url[0], "http://last:1");
    CHECK_STR(l.url[1], "http://fallback:2");
    mf_gateway_order(NULL, 0, "", "", 0, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, 0);
    mf_gateway_order(NULL, 0, "http://same:1", "http://same:1", 0, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, 1);
    /* More candidates than the list holds. */
    mf_gateway_candidate many[12];
    for (int i = 0; i < 12; i++) {
        char host[32];
        snprintf(host, sizeof host, "10.0.1.%d", i);
        many[i] = cand(host, 80, (uint16_t)(100 - i));
    }
    mf_gateway_order(many, 12, NULL, "http://fallback:2", 0, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, MF_GATEWAYS_MAX);
}

/* Where a gateway offers TLS beside plain HTTP (tls=1, tlsport), an unpinned device takes
 * plain HTTP unless it prefers TLS; a device that pins takes https only, and nothing else:
 * no candidate without TLS, no http last-good or fallback URL, whatever its prio. */
static void tls_and_pins(void)
{
    mf_gateway_candidate c[4] = {cand("10.0.0.1", 8080, 1), cand("10.0.0.2", 8080, 2), cand("10.0.0.3", 8443, 3),
                                 cand("10.0.0.4", 8080, 4)};
    c[1].tls = 1;
    c[1].tls_port = 8443;
    c[2].tls = 1; /* HTTPS only: the SRV port, no other tlsport */
    c[3].tls = 1;
    c[3].tls_port = 8080;
    mf_gateway_list l;
    mf_gateway_order(c, 4, "http://10.0.0.9:8080", "https://fallback:8443", 0, MF_TLS_IF_ONLY, &l);
    CHECK_EQ(l.count, 6);
    CHECK_STR(l.url[0], "http://10.0.0.1:8080");
    CHECK_STR(l.url[1], "http://10.0.0.2:8080");
    CHECK_STR(l.url[2], "https://10.0.0.3:8443");
    CHECK_STR(l.url[3], "https://10.0.0.4:8080");
    mf_gateway_order(c, 4, NULL, NULL, 0, MF_TLS_PREFERRED, &l);
    CHECK_STR(l.url[1], "https://10.0.0.2:8443");
    for (uint32_t r = 0; r < 4; r++) {
        mf_gateway_order(c, 4, "http://10.0.0.9:8080", "https://fallback:8443", r, MF_TLS_REQUIRED, &l);
        CHECK_EQ(l.count, 4);
        CHECK_STR(l.url[0], "https://10.0.0.2:8443");
        CHECK_STR(l.url[1], "https://10.0.0.3:8443");
        CHECK_STR(l.url[2], "https://10.0.0.4:8080");
        CHECK_STR(l.url[3], "https://fallback:8443");
    }
    mf_gateway_order(c, 1, "http://10.0.0.9:8080", "http://fallback:8080", 0, MF_TLS_REQUIRED, &l);
    CHECK_EQ(l.count, 0);
}

static void backoff_and_jitter(void)
{
    mf_backoff b = {1000, 60000, 0};
    uint32_t ceilings[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    for (int i = 0; i < 8; i++) {
        CHECK_EQ(mf_backoff_ceiling(&b), ceilings[i]);
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int k = 0; k < 200; k++) {
            mf_backoff copy = b;
            uint32_t d = mf_backoff_next(&copy, randombytes_random());
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        CHECK(lo >= ceilings[i] / 2 && hi <= ceilings[i]);
        CHECK(hi > lo); /* jittered */
        mf_backoff_next(&b, 0);
    }
    b.failures = 4000000000u;
    CHECK_EQ(mf_backoff_ceiling(&b), 60000);
    b.failures = 0;
    CHECK_EQ(mf_backoff_ceiling(&b), 1000);
    for (int k = 0; k < 200; k++) {
        uint32_t d = mf_poll_delay_ms(300, 30, randombytes_random());
        CHECK(d >= 270000 && d <= 330000);
        d = mf_poll_delay_ms(10, 30, randombytes_random());
        CHECK(d <= 40000);
    }
    CHECK_EQ(mf_poll_delay_ms(86400, 86400, UINT32_MAX) <= 172800000u, 1);
}

int main(void)
{
    RUN(lowest_prio_first);
    RUN(ties_at_random_last_good_sticks);
    RUN(nothing_discovered);
    RUN(tls_and_pins);
    RUN(backoff_and_jitter);
    DONE();
}
