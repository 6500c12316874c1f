/* Assignment parsing: every field strict on type, form and size; hostile bodies refused. */
#include <string.h>

#include "mf_assignment.h"
#include "test_util.h"

#define SHA "c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18"
#define SIG "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\""

static const char *good =
    "{\"device\":\"aa:bb:cc:dd:ee:ff\",\"model\":{\"name\":\"kws\",\"version\":\"2026.11.24-3\","
    "\"sha256\":\"" SHA "\",\"size\":1072,\"url\":\"/v1/artifacts/" SHA "\",\"signature\":null,\"keyId\":null},"
    "\"poll\":{\"intervalSeconds\":300,\"jitterSeconds\":30}}";

static mf_err parse(const char *body)
{
    mf_assignment a;
    char why[96];
    return mf_assignment_parse(body, strlen(body), &a, why, sizeof why);
}

/* The good body with `from` replaced by `to` (once). */
static mf_err parse_with(const char *from, const char *to)
{
    char body[8192];
    const char *at = strstr(good, from);
    CHECK(at != NULL);
    snprintf(body, sizeof body, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    return parse(body);
}

static void good_body(void)
{
    mf_assignment a;
    char why[96] = "";
    CHECK_EQ(mf_assignment_parse(good, strlen(good), &a, why, sizeof why), MF_OK);
    CHECK_STR(a.device, "aa:bb:cc:dd:ee:ff");
    CHECK_STR(a.name, "kws");
    CHECK_STR(a.version, "2026.11.24-3");
    CHECK_STR(a.sha256_hex, SHA);
    CHECK_EQ(a.sha256[0], 0xc9);
    CHECK_EQ(a.size, 1072);
    CHECK_EQ(a.signed_, 0);
    CHECK_EQ(a.poll_interval_s, 300);
    CHECK_EQ(a.poll_jitter_s, 30);
}

static void signed_body(void)
{
    mf_assignment a;
    char body[4096], why[96];
    const char *at = strstr(good, "\"signature\":null,\"keyId\":null");
    snprintf(body, sizeof body, "%.*s\"signature\":" SIG ",\"keyId\":\"0123456789abcdef\"%s", (int)(at - good), good,
             at + strlen("\"signature\":null,\"keyId\":null"));
    CHECK_EQ(mf_assignment_parse(body, strlen(body), &a, why, sizeof why), MF_OK);
    CHECK_EQ(a.signed_, 1);
    CHECK_STR(a.key_id, "0123456789abcdef");
    CHECK_EQ(parse_with("\"signature\":null", "\"signature\":" SIG), MF_ERR_PROTOCOL); /* keyId still null */
    CHECK_EQ(parse_with("\"signature\":null", "\"signature\":\"AAAA\""), MF_ERR_PROTOCOL);
    CHECK_EQ(parse_with("\"signature\":null", "\"signature\":\"!!!not base64!!!\""), MF_ERR_PROTOCOL);
}

/* signatureSeq: absent or null (v1), or a decimal u64 in a string beside a signature. */
static void signed_sequence(void)
{
    const char *nulls = "\"signature\":null,\"keyId\":null";
    char body[4096], with[512], why[96];
    mf_assignment a;
    const char *at = strstr(good, nulls);
    static const struct { const char *seq; int ok; uint64_t value; } cases[] = {
        {"null", 1, 0}, {"\"0\"", 1, 0}, {"\"1764892800123\"", 1, 1764892800123ull},
        {"\"18446744073709551615\"", 1, UINT64_MAX}, {"\"18446744073709551616\"", 0, 0},
        {"\"99999999999999999999\"", 0, 0}, {"\"123456789012345678901\"", 0, 0}, {"\"01\"", 0, 0},
        {"\"-1\"", 0, 0}, {"\"+1\"", 0, 0}, {"\"1a\"", 0, 0}, {"\"\"", 0, 0}, {"\" 1\"", 0, 0}, {"5", 0, 0},
        {"[\"5\"]", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(with, sizeof with, "\"signature\":" SIG ",\"keyId\":\"0123456789abcdef\",\"signatureSeq\":%s", cases[i].seq);
        snprintf(body, sizeof body, "%.*s%s%s", (int)(at - good), good, with, at + strlen(nulls));
        mf_err err = mf_assignment_parse(body, strlen(body), &a, why, sizeof why);
        if (!cases[i].ok) {
            CHECK_EQ(err, MF_ERR_PROTOCOL);
            CHECK_STR(why, "model.signatureSeq");
            continue;
        }
        CHECK_EQ(err, MF_OK);
        CHECK_EQ(a.has_seq, strcmp(cases[i].seq, "null") != 0);
        CHECK(a.seq == cases[i].value);
    }
    /* Absent: v1. A sequence without a signature: refused (it is part of one). */
    CHECK_EQ(parse(good), MF_OK);
    CHECK_EQ(parse_with(nulls, "\"signature\":null,\"keyId\":null,\"signatureSeq\":null"), MF_OK);
    CHECK_EQ(parse_with(nulls, "\"signature\":null,\"keyId\":null,\"signatureSeq\":\"3\""), MF_ERR_PROTOCOL);
}

#define FROM "1111111111111111111111111111111111111111111111111111111111111111"
#define DELTA_SHA "2222222222222222222222222222222222222222222222222222222222222222"
#define DELTA "\"delta\":{\"from\":\"" FROM "\",\"url\":\"/v1/deltas/" FROM "/" SHA "\",\"size\":20995,\"sha256\":\"" DELTA_SHA "\"},"

/* The good body with a delta beside the model, with `from` in it replaced by `to`. */
static mf_err parse_delta(const char *from, const char *to)
{
    char with_delta[4096], body[4096];
    const char *poll = strstr(good, "\"poll\"");
    snprintf(with_delta, sizeof with_delta, "%.*s" DELTA "%s", (int)(poll - good), good, poll);
    const char *at = strstr(with_delta, from);
    CHECK(at != NULL);
    snprintf(body, sizeof body, "%.*s%s%s", (int)(at - with_delta), with_delta, to, at + strlen(from));
    mf_assignment a;
    char why[96];
    return mf_assignment_parse(body, strlen(body), &a, why, sizeof why);
}

static void delta_beside_the_model(void)
{
    char body[4096], why[96] = "";
    const char *poll = strstr(good, "\"poll\"");
    snprintf(body, sizeof body, "%.*s" DELTA "%s", (int)(poll - good), good, poll);
    mf_assignment a;
    CHECK_EQ(mf_assignment_parse(body, strlen(body), &a, why, sizeof why), MF_OK);
    CHECK_EQ(a.delta.present, 1);
    CHECK_EQ(a.delta.from[0], 0x11);
    CHECK_STR(a.delta.url, "/v1/deltas/" FROM "/" SHA);
    CHECK_EQ(a.delta.size, 20995);
    CHECK_STR(a.delta.sha256_hex, DELTA_SHA);
    CHECK_EQ(mf_assignment_parse(good, strlen(good), &a, why, sizeof why), MF_OK);
    CHECK_EQ(a.delta.present, 0);
    /* An absolute URL is the gateway's business; a relative one must be this pair's route. */
    CHECK_EQ(parse_delta("\"url\":\"/v1/deltas/" FROM "/" SHA "\"", "\"url\":\"http://gw.lan:8080/d/x\""), MF_OK);
    CHECK_EQ(parse_delta("\"size\":20995", "\"size\":4294967295"), MF_OK);
    static const char *const refused[][2] = {
        {DELTA, "\"delta\":[],"},
        {DELTA, "\"delta\":null,"},
        {"\"from\":\"" FROM "\"", "\"from\":\"" SHA "\""},                 /* from the model itself */
        {"\"from\":\"" FROM "\"", "\"from\":\"1111\""},
        {"\"from\":\"" FROM "\",", ""},
        {"\"url\":\"/v1/deltas/" FROM "/" SHA "\"", "\"url\":\"/v1/deltas/" SHA "/" FROM "\""},
        {"\"url\":\"/v1/deltas/" FROM "/" SHA "\"", "\"url\":\"/v1/artifacts/" SHA "\""},
        {"\"url\":\"/v1/deltas/" FROM "/" SHA "\"", "\"url\":\"ftp://gw/x\""},
        {"\"url\":\"/v1/deltas/" FROM "/" SHA "\"", "\"url\":7"},
        {"\"size\":20995", "\"size\":0"},
        {"\"size\":20995", "\"size\":4294967296"},
        {"\"size\":20995", "\"size\":12.5"},
        {"\"size\":20995", "\"size\":\"20995\""},
        {"\"sha256\":\"" DELTA_SHA "\"", "\"sha256\":\"" DELTA_SHA "0\""},
        {"\"sha256\":\"" DELTA_SHA "\"", "\"sha256\":null"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (parse_delta(refused[i][0], refused[i][1]) != MF_ERR_PROTOCOL) fprintf(stderr, "accepted: %s\n", refused[i][1]);
        CHECK_EQ(parse_delta(refused[i][0], refused[i][1]), MF_ERR_PROTOCOL);
    }
}

static void mistyped_and_missing(void)
{
    static const char *const cases[][2] = {
        {"\"device\":\"aa:bb:cc:dd:ee:ff\"", "\"device\":42"},
        {"\"device\":\"aa:bb:cc:dd:ee:ff\"", "\"device\":\"aa:bb\""},
        {"\"device\":\"aa:bb:cc:dd:ee:ff\",", ""},
        {"\"name\":\"kws\"", "\"name\":\"KWS\""},
        {"\"name\":\"kws\"", "\"name\":\"\""},
        {"\"name\":\"kws\"", "\"name\":[\"kws\"]"},
        {"\"name\":\"kws\"", "\"name\":\"kws/../x\""},
        {"\"name\":\"kws\"", "\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""},
        {"\"version\":\"2026.11.24-3\"", "\"version\":20261124"},
        {"\"version\":\"2026.11.24-3\"", "\"version\":\"-1\""},
        {"\"version\":\"2026.11.24-3\"", "\"version\":\"1 2\""},
        {"\"sha256\":\"" SHA "\"", "\"sha256\":\"" "C9608DDEFE472E0EBD8D4A900DC0957D893381C928DD1C648A439A6E88470B18" "\""},
        {"\"sha256\":\"" SHA "\"", "\"sha256\":\"c9608d\""},
        {"\"sha256\":\"" SHA "\"", "\"sha256\":null"},
        {"\"size\":1072", "\"size\":\"1072\""},
        {"\"size\":1072", "\"size\":-1"},
        {"\"size\":1072", "\"size\":0"},
        {"\"size\":1072", "\"size\":10.5"},
        {"\"size\":1072", "\"size\":1e300"},
        {"\"size\":1072", "\"size\":true"},
        {"\"url\":\"/v1/artifacts/" SHA "\"", "\"url\":\"/v1/artifacts/other\""},
        {"\"url\":\"/v1/artifacts/" SHA "\"", "\"url\":\"file:///etc/passwd\""},
        {"\"url\":\"/v1/artifacts/" SHA "\"", "\"url\":7"},
        {"\"signature\":null,", ""},
        {"\"keyId\":null", "\"keyId\":\"xyz\""},
        {"\"intervalSeconds\":300", "\"intervalSeconds\":\"300\""},
        {"\"intervalSeconds\":300", "\"intervalSeconds\":0"},
        {"\"intervalSeconds\":300", "\"intervalSeconds\":99999999"},
        {"\"jitterSeconds\":30", "\"jitterSeconds\":-3"},
        {"\"poll\":{", "\"poll\":[{"},
        {"\"model\":{", "\"model\":[{"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mf_err err = parse_with(cases[i][0], cases[i][1]);
        if (err != MF_ERR_PROTOCOL) fprintf(stderr, "case %zu accepted: %s -> %s\n", i, cases[i][0], cases[i][1]);
        CHECK_EQ(err, MF_ERR_PROTOCOL);
    }
    CHECK_EQ(parse("[]"), MF_ERR_PROTOCOL);
    CHECK_EQ(parse("null"), MF_ERR_PROTOCOL);
    CHECK_EQ(parse("\"x\""), MF_ERR_PROTOCOL);
    CHECK_EQ(parse(""), MF_ERR_PROTOCOL);
}

static void truncated_everywhere(void)
{
    size_t n = strlen(good);
    for (size_t len = 0; len < n; len++) {
        mf_assignment a;
        char *copy = malloc(len ? len : 1); /* exactly len bytes: no NUL, so reads past it are caught */
        memcpy(copy, good, len);
        CHECK_EQ(mf_assignment_parse(copy, len, &a, NULL, 0), MF_ERR_PROTOCOL);
        free(copy);
    }
}

static void oversized(void)
{
    size_t n = MF_ASSIGNMENT_BODY_MAX + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, good, strlen(good));
    big[n] = '\0';
    mf_assignment a;
    CHECK_EQ(mf_assignment_parse(big, n, &a, NULL, 0), MF_ERR_PROTOCOL);
    /* Deep nesting and huge numbers inside the bound are refused, not crashed on. */
    memset(big, '[', MF_ASSIGNMENT_BODY_MAX);
    CHECK_EQ(mf_assignment_parse(big, MF_ASSIGNMENT_BODY_MAX, &a, NULL, 0), MF_ERR_PROTOCOL);
    free(big);
}

/* Random byte mutations of a valid body: never a crash; anything accepted is still within
 * every bound. MF_FUZZ_ITERATIONS (fuzz.sh) runs it at length. */
static void mutations(void)
{
    const char *v = getenv("MF_FUZZ_ITERATIONS");
    int n = v && atoi(v) > 0 ? atoi(v) : 20000;
    uint32_t x = 2463534242u;
    size_t len = strlen(good);
    static const char alphabet[] = "{}[]\":,0123456789-.eE+ntrufalsebad\\u00";
    for (int i = 0; i < n; i++) {
        char *body = malloc(len);
        memcpy(body, good, len);
        int k = 1 + (int)(x % 4);
        for (int j = 0; j < k; j++) {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            body[x % len] = alphabet[(x >> 8) % (sizeof alphabet - 1)];
        }
        size_t cut = len - (x >> 16) % 3;
        mf_assignment a;
        if (mf_assignment_parse(body, cut, &a, NULL, 0) == MF_OK) {
            CHECK(mf_valid_name(a.name) && mf_valid_version(a.version));
            CHECK(a.size >= 1 && strlen(a.sha256_hex) == 64 && a.poll_interval_s >= 1);
        }
        free(body);
    }
}

int main(void)
{
    RUN(good_body);
    RUN(signed_body);
    RUN(signed_sequence);
    RUN(delta_beside_the_model);
    RUN(mistyped_and_missing);
    RUN(truncated_everywhere);
    RUN(oversized);
    RUN(mutations);
    DONE();
}
