/* The update cycle against a scripted gateway on 127.0.0.1: what is downloaded when, what
 * is activated, what is reported, and what hostile answers cannot do. */
#include <string.h>

#include "mf_slot.h"
#include "test_server.h"
#include "test_util.h"

#define SLOT_BYTES (64u * 1024)

static test_gateway gw;
static ts_server server;
static uint8_t *prog_a, *prog_b, *prog_c;
static size_t prog_a_len, prog_b_len, prog_c_len;

static void fresh(test_device *d)
{
    tg_init(&gw);
    server.ctx = &gw;
    test_device_open(d, test_tempdir(), SLOT_BYTES, server.url);
}

/* The device trusts these pipeline keys (the order of its key list). */
static void trust(test_device *d, const test_key *first, const test_key *second)
{
    memcpy(d->keys[0], first->pk, 32);
    if (second) memcpy(d->keys[1], second->pk, 32);
    d->cfg.trusted_keys = (const uint8_t(*)[32])d->keys;
    d->cfg.trusted_key_count = second ? 2 : 1;
}


static void installs_then_only_polls(void)
{
    test_device d;
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK(mf_client_active(&d.client) == NULL);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(d.activations, 1);
    CHECK_EQ(gw.artifact_requests, 1);
    /* The first report after boot says there is no model, with the capabilities. */
    CHECK(strstr(gw.first_report, "\"state\":\"idle\"") != NULL);
    CHECK(strstr(gw.first_report, "no_model") != NULL);
    CHECK(strstr(gw.first_report, "\"capabilities\"") != NULL);
    CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);
    CHECK(strstr(gw.last_report, gw.sha_hex) != NULL);
    CHECK(strstr(gw.last_report, "\"capabilities\"") == NULL);

    /* Unchanged: one conditional request, answered 304; nothing downloaded or reported. */
    int reports = gw.reports;
    for (int i = 0; i < 3; i++) {
        uint32_t delay;
        CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
        CHECK(delay >= 270000 && delay <= 330000); /* the gateway's 300 s ± 30 s */
    }
    CHECK_EQ(gw.polls, 4);
    CHECK_EQ(gw.polls_304, 3);
    CHECK_EQ(gw.artifact_requests, 1);
    CHECK_EQ(gw.reports, reports);
    CHECK_EQ(d.client.stats.polls_not_modified, 3);

    /* A reboot picks the same slot; the boot report says installed, once. */
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(gw.artifact_requests, 1);
    CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);
    CHECK(strstr(gw.last_report, "\"capabilities\"") != NULL);
    test_device_close(&d);
}

static void new_version_goes_to_the_other_slot(void)
{
    test_device d;
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    int first = d.client.active;
    uint32_t len;
    uint8_t *before = test_slot_bytes(&d, first, &len);

    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK(d.client.active != first);
    CHECK_EQ(test_active(&d)->sequence, 2);
    uint8_t *after = test_slot_bytes(&d, first, &len);
    CHECK(memcmp(before, after, len) == 0); /* the active slot was never touched */
    free(before);
    free(after);

    /* And back: the third model goes to the first slot, sequence 3. */
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(d.client.active, first);
    CHECK_EQ(test_active(&d)->sequence, 3);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_EQ(d.client.active, first);
    test_device_close(&d);
}

static void long_poll(void)
{
    test_device d;
    fresh(&d);
    d.cfg.long_poll_s = 1;
    gw.hold_ms = 600;
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    uint32_t delay;
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK(delay < 1000); /* straight back to waiting at the gateway */
    CHECK_EQ(gw.polls_wait, 0); /* nothing to wait for before the model was in */
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK_EQ(gw.polls_wait, 1);
    CHECK_EQ(gw.polls_304, 1);
    CHECK(delay < 1000);
    /* A gateway that answers wait= at once does not hold polls: sleep the interval. */
    gw.hold_ms = 0;
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK(delay >= 270000);
    /* A change arrives as a 200 to the long poll. */
    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK_EQ(gw.polls_wait, 3);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    test_device_close(&d);
}

/* A model that fails verification is reported failed and not fetched again until its backoff. */
static void check_refused(test_device *d, const char *code, int downloads)
{
    CHECK(mf_client_active(&d->client) == NULL || strcmp(test_active_sha(d), gw.sha_hex) != 0);
    CHECK(strstr(d->last_failed, code) != NULL);
    CHECK(strstr(gw.last_report, "\"state\":\"failed\"") != NULL);
    CHECK(strstr(gw.last_report, code) != NULL);
    CHECK_EQ(gw.artifact_requests, downloads);
    uint32_t delay;
    for (int i = 0; i < 3; i++) {
        mf_client_cycle(&d->client, &delay);
        CHECK(delay > 0);
    }
    CHECK_EQ(gw.artifact_requests, downloads);
}

static void bad_digest_size_and_format(void)
{
    test_device d;
    /* The bytes are not the announced sha256. */
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    memcpy(gw.sha_hex, "00", 2);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_DIGEST_MISMATCH);
    check_refused(&d, "digest_mismatch", 1);
    /* After its backoff it is tried again (and still refused); a reboot keeps the backoff. */
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    test_device_cycles(&d, 2);
    CHECK_EQ(gw.artifact_requests, 1);
    mf_posix_clock_advance(test_clock(), 10u * 60 * 1000);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_DIGEST_MISMATCH);
    CHECK_EQ(gw.artifact_requests, 2);
    CHECK_EQ(d.client.failure.attempts, 2);
    test_device_close(&d);

    /* Announced size differs from the bytes served. */
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    gw.announced_size = prog_a_len + 10;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_SIZE_MISMATCH);
    check_refused(&d, "size_mismatch", 1);
    test_device_close(&d);

    /* Right digest, but not an ExecuTorch program. */
    fresh(&d);
    static uint8_t junk[3000];
    memset(junk, 'x', sizeof junk);
    tg_serve(&gw, "junk", "1", junk, sizeof junk);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_FORMAT);
    check_refused(&d, "unsupported_format", 1);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK(mf_client_active(&d.client) == NULL);
    test_device_close(&d);

    /* Too large for the slot: refused before a byte is fetched. */
    fresh(&d);
    uint8_t *big = test_program(SLOT_BYTES, 9);
    tg_serve(&gw, "big", "1", big, SLOT_BYTES);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_TOO_LARGE);
    check_refused(&d, "model_too_large", 0);
    test_device_close(&d);
    free(big);
}

/* A model refused for its signature waits out its backoff and says until when; a signed
 * build of the same bytes (a new version, or the same version signed) is fetched at once. */
static void signed_rebuild_is_not_held_back(void)
{
    test_key key;
    test_keygen(&key);
    const char *versions[] = {"2", "1"};
    for (size_t i = 0; i < 2; i++) {
        fprintf(stderr, "   signed as version %s\n", versions[i]);
        test_device d;
        fresh(&d);
        trust(&d, &key, NULL);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_UNSIGNED);
        CHECK(strstr(d.last_failed, "signature_required: add 1 (before download); next try in ") != NULL);
        CHECK(strstr(d.last_failed, " s, at uptime ") != NULL);
        CHECK(strstr(gw.last_report, "\"state\":\"failed\"") != NULL);
        CHECK(strstr(gw.last_report, "signature_required: add 1 (before download); next try in ") != NULL);

        /* Unchanged: it waits, says so in an event each time, and reported it once. */
        int reports = gw.reports;
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_STR(d.last_event, "waiting");
        CHECK(strstr(d.last_waiting, gw.sha_hex) != NULL);
        CHECK(strstr(d.last_waiting, "attempts=1 retry_in_s=") != NULL);
        CHECK(strstr(d.last_waiting, " until_uptime_s=") != NULL);
        CHECK_EQ(gw.reports, reports);

        /* After a reboot it still waits, and its first report says so. */
        CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
        d.last_waiting[0] = '\0';
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK(strstr(d.last_waiting, "attempts=1 retry_in_s=") != NULL);
        CHECK(strstr(gw.last_report, "\"state\":\"failed\"") != NULL);
        CHECK(strstr(gw.last_report, "signature_required: add 1 (before download); next try in ") != NULL);
        CHECK_EQ(gw.artifact_requests, 0);

        /* The pipeline signs the same bytes: installed at once, no clock advanced. */
        tg_serve(&gw, "add", versions[i], prog_a, prog_a_len);
        test_sign(&key, "add", versions[i], gw.sha_hex, prog_a_len, gw.signature);
        strcpy(gw.key_id, key.key_id);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_STR(test_active_sha(&d), gw.sha_hex);
        CHECK_STR(test_active(&d)->version, versions[i]);
        CHECK_EQ(gw.artifact_requests, 1);
        CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);
        test_device_close(&d);
    }
}

static void rogue_gateway(void)
{
    test_key trusted, rogue;
    test_keygen(&trusted);
    test_keygen(&rogue);
    struct { const char *what; const char *code; int sign_with; const char *version_signed; } cases[] = {
        {"unsigned while keys are configured", "signature_required", 0, NULL},
        {"signed by an unknown key", "unknown_key", 2, "1"},
        {"a trusted key id with another key's signature", "invalid_signature", 3, "1"},
        {"signed for another version", "invalid_signature", 1, "0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fprintf(stderr, "   %s\n", cases[i].what);
        test_device d;
        fresh(&d);
        trust(&d, &trusted, NULL);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        if (cases[i].sign_with) {
            const test_key *k = cases[i].sign_with == 1 ? &trusted : &rogue;
            test_sign(k, "add", cases[i].version_signed, gw.sha_hex, prog_a_len, gw.signature);
            strcpy(gw.key_id, cases[i].sign_with == 3 ? trusted.key_id : k->key_id);
        }
        CHECK_EQ(test_device_boot(&d), MF_OK);
        test_device_cycles(&d, 1);
        check_refused(&d, cases[i].code, 0);
        CHECK(mf_client_active(&d.client) == NULL);
        test_device_close(&d);
    }
    /* Properly signed: installed. */
    test_device d;
    fresh(&d);
    trust(&d, &rogue, &trusted);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    test_sign(&trusted, "add", "1", gw.sha_hex, prog_a_len, gw.signature);
    strcpy(gw.key_id, trusted.key_id);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    test_device_close(&d);
}

static void hostile_poll_answers(void)
{
    char big[6000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    const char *bodies[] = {
        "{\"device\":\"02:00:00:00:00:01\",\"model\":{\"name\":\"add\"",   /* truncated */
        "not json at all",
        "{\"device\":\"02:00:00:00:00:01\",\"model\":null,\"poll\":{}}",
        big,                                                                /* oversized */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.poll_body = bodies[i];
        CHECK_EQ(test_device_boot(&d), MF_OK);
        mf_err err = test_device_cycles(&d, 1);
        CHECK(err == MF_ERR_PROTOCOL);
        CHECK_EQ(gw.artifact_requests, 0);
        CHECK(mf_client_active(&d.client) == NULL);
        test_device_close(&d);
    }
    /* Another device's assignment. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        char body[2048];
        snprintf(body, sizeof body,
                 "{\"device\":\"02:00:00:00:00:02\",\"model\":{\"name\":\"add\",\"version\":\"1\",\"sha256\":\"%s\","
                 "\"size\":%zu,\"url\":\"/v1/artifacts/%s\",\"signature\":null,\"keyId\":null},"
                 "\"poll\":{\"intervalSeconds\":300,\"jitterSeconds\":30}}", gw.sha_hex, prog_a_len, gw.sha_hex);
        gw.poll_body = body;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_PROTOCOL);
        CHECK_EQ(gw.artifact_requests, 0);
        test_device_close(&d);
    }
    /* Content-Length shorter than the body (the rest is never read: truncated JSON) and
     * longer (the connection closes early: a network error). */
    long lengths[] = {40, 3000};
    mf_err expected[] = {MF_ERR_PROTOCOL, MF_ERR_NETWORK};
    for (int i = 0; i < 2; i++) {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.poll_content_length = lengths[i];
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), expected[i]);
        CHECK_EQ(gw.artifact_requests, 0);
        test_device_close(&d);
    }
    /* Statuses the contract does not give: backoff, nothing else. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.poll_status = 500;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        uint32_t delay;
        CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_HTTP_STATUS);
        CHECK(delay >= 5 && delay <= 10);
        CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_HTTP_STATUS);
        CHECK(delay >= 10 && delay <= 20); /* doubling */
        test_device_close(&d);
    }
    /* No assignment: keep what runs. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        gw.no_assignment = 1;
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NO_ASSIGNMENT);
        CHECK_STR(test_active_sha(&d), gw.sha_hex);
        test_device_close(&d);
    }
}

static void hostile_artifact_answers(void)
{
    /* The artifact body is longer than its Content-Length says, and the Content-Length
     * differs from the announced size: refused at the headers. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.artifact_content_length_delta = -100;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_SIZE_MISMATCH);
        CHECK(mf_client_active(&d.client) == NULL);
        test_device_close(&d);
    }
    /* Shorter than its Content-Length: a drop; progress is kept and the next try resumes. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.close_after_bytes = 3 * 4096 + 100;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
        CHECK(mf_client_active(&d.client) == NULL);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_EQ(gw.range_requests, 1);
        CHECK_EQ(gw.last_range_start, 3 * 4096);
        CHECK(strstr(gw.reports_text, "\"state\":\"downloading\"") != NULL);
        CHECK_STR(test_active_sha(&d), gw.sha_hex);
        test_device_close(&d);
    }
    /* Range answered with 200: the download starts over and still installs. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.close_after_bytes = 5 * 4096;
        gw.range_as_200 = 1;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_EQ(gw.range_requests, 1);
        CHECK_EQ(d.client.stats.range_restarts, 1);
        CHECK_STR(test_active_sha(&d), gw.sha_hex);
        test_device_close(&d);
    }
    /* A 206 for the wrong range: refused, then a fresh download. */
    {
        test_device d;
        fresh(&d);
        tg_serve(&gw, "add", "1", prog_a, prog_a_len);
        gw.close_after_bytes = 5 * 4096;
        gw.bad_content_range = 1;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_PROTOCOL);
        CHECK(mf_client_active(&d.client) == NULL);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_EQ(gw.range_requests, 1);
        CHECK_STR(test_active_sha(&d), gw.sha_hex);
        test_device_close(&d);
    }
}

static void resume_only_the_same_artifact(void)
{
    test_device d;
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    gw.close_after_bytes = 6 * 4096;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
    /* Rebooted, and meanwhile the assignment moved on: no Range for the old progress. */
    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(gw.range_requests, 0);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    test_device_close(&d);

    /* The same artifact after a reboot: resumed with Range. */
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    gw.close_after_bytes = 6 * 4096 + 7;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(gw.range_requests, 1);
    CHECK_EQ(gw.last_range_start, 6 * 4096);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    test_device_close(&d);
}

static void capabilities_reported(void)
{
    static const char *const ops[] = {"aten::add.out", "aten::mul.out"};
    static const char *const dels[] = {"XnnpackBackend"};
    test_device d;
    fresh(&d);
    d.cfg.capabilities.operators = ops;
    d.cfg.capabilities.operator_count = 2;
    d.cfg.capabilities.delegates = dels;
    d.cfg.capabilities.delegate_count = 1;
    d.cfg.capabilities.arena_bytes = 65536;
    d.cfg.capabilities.runtime = "executorch-1.0";
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 2), MF_OK);
    char expected[512];
    snprintf(expected, sizeof expected,
             "\"capabilities\":{\"operators\":[\"aten::add.out\",\"aten::mul.out\"],\"delegates\":[\"XnnpackBackend\"],"
             "\"arenaBytes\":65536,\"slotBytes\":%u,\"runtime\":\"executorch-1.0\",\"patch\":[\"fossil\"]}", SLOT_BYTES - 4096);
    CHECK(strstr(gw.first_report, expected) != NULL);
    /* Once per boot: exactly one report carried them. */
    CHECK(strstr(strstr(gw.reports_text, "capabilities") + 1, "capabilities") == NULL);
    test_device_close(&d);

    /* Beyond the contract's bounds: refused at init. */
    static const char *const spaced[] = {"aten::add out"};
    static char long_name[130];
    memset(long_name, 'x', 129);
    static const char *const too_long[] = {long_name};
    static const char *many[65];
    for (int i = 0; i < 65; i++) many[i] = "XnnpackBackend";
    struct { const char *const *ops; size_t n_ops; const char *const *dels; size_t n_dels; } bad[] = {
        {spaced, 1, NULL, 0}, {too_long, 1, NULL, 0}, {NULL, 0, many, 65}, {NULL, 3, NULL, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_device b;
        fresh(&b);
        b.cfg.capabilities.operators = bad[i].ops;
        b.cfg.capabilities.operator_count = bad[i].n_ops;
        b.cfg.capabilities.delegates = bad[i].dels;
        b.cfg.capabilities.delegate_count = bad[i].n_dels;
        CHECK_EQ(test_device_boot(&b), MF_ERR_INVALID_ARG);
        test_device_close(&b);
    }
    /* The contract's maximum count: 2,048 operators (names of ~25 characters: a ~56 KiB report,
     * within the 64 KiB a report with capabilities may take). */
    static char names[2048][32];
    static const char *all[2048];
    for (int i = 0; i < 2048; i++) {
        snprintf(names[i], sizeof names[i], "aten::operator_%04d.out", i % 10000);
        all[i] = names[i];
    }
    fresh(&d);
    d.cfg.capabilities.operators = all;
    d.cfg.capabilities.operator_count = 2048;
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(strstr(gw.first_report, "\"aten::operator_2047.out\"]") != NULL);
    CHECK(strlen(gw.first_report) < 64 * 1024);
    test_device_close(&d);

    /* A gateway that refuses them still gets the state. */
    fresh(&d);
    gw.refuse_capabilities = 1;
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(d.client.stats.reports_refused, 1);
    CHECK(strstr(gw.reports_text, "\"state\":\"idle\"") != NULL);
    CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);
    test_device_close(&d);
}

static void dead_gateway_then_fallback(void)
{
    /* The last good gateway is gone: after failures_before_switch failures the client moves
     * to the configured fallback. */
    test_device d;
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    const char *dead = "http://127.0.0.1:9";
    CHECK_EQ(mf_kv_set(d.kv, "mf_gw", dead, strlen(dead)), MF_OK);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    char stored[128];
    size_t len;
    CHECK_EQ(mf_kv_get(d.kv, "mf_gw", stored, sizeof stored - 1, &len), MF_OK);
    stored[len] = '\0';
    CHECK_STR(stored, server.url);
    test_device_close(&d);
}

/* ------------------------------------------------------------------ confirm and rollback */

/* A device running add 1 (prog_a), confirmed, in slot 0. */
static void running_a(test_device *d)
{
    fresh(d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    CHECK_EQ(test_device_boot(d), MF_OK);
    CHECK_EQ(test_device_cycles(d, 1), MF_OK);
    CHECK_EQ(test_active(d)->status, MF_MODEL_CONFIRMED);
    CHECK_EQ(d->client.active, 0);
}

static int has_pending_record(test_device *d)
{
    char buf[512];
    size_t len;
    return mf_kv_get(d->kv, "mf_pend", buf, sizeof buf, &len) == MF_OK;
}

/* The report's field, e.g. "\"rolledBackFrom\":\"<sha>\"" */
static int report_has(const char *report, const char *key, const char *value)
{
    char field[200];
    snprintf(field, sizeof field, "\"%s\":\"%s\"", key, value);
    return strstr(report, field) != NULL;
}

static void pending_until_confirmed(void)
{
    test_device d;
    running_a(&d);
    char sha_a[65];
    snprintf(sha_a, sizeof sha_a, "%s", gw.sha_hex);
    const mf_active_model *a = test_active(&d);
    d.hold_confirm = 1;
    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_PENDING);
    CHECK_EQ(d.client.state, MF_STATE_PENDING);
    CHECK(report_has(gw.last_report, "state", "verifying"));
    CHECK(report_has(gw.last_report, "sha256", gw.sha_hex));
    CHECK(has_pending_record(&d));
    /* The previous model stays mapped, its slot untouched, until the application confirms. */
    char hex[65];
    test_sha256_hex(a->data, a->size, hex);
    CHECK_STR(hex, sha_a);
    CHECK(d.client.mapped[0] && d.client.valid[0]);

    /* While pending: no polls, a step a second at most. */
    int polls = gw.polls;
    uint32_t delay;
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK(delay <= 1000);
    CHECK_EQ(gw.polls, polls);

    mf_client_confirm(&d.client);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    CHECK(!d.client.mapped[0]);
    CHECK(a->data == NULL);
    CHECK(!has_pending_record(&d));
    CHECK(report_has(gw.last_report, "state", "installed"));
    CHECK_EQ(gw.polls, polls);

    /* Confirmed for good: a reboot runs it, confirmed, and the next model goes to slot 0. */
    d.hold_confirm = 0;
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    tg_serve(&gw, "add", "3", prog_c, prog_c_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(d.client.active, 0);
    test_device_close(&d);
}

static void rejected_model_rolls_back(void)
{
    test_device d;
    running_a(&d);
    char sha_a[65];
    snprintf(sha_a, sizeof sha_a, "%s", gw.sha_hex);
    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    snprintf(d.reject_sha, sizeof d.reject_sha, "%s", gw.sha_hex);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_REJECTED);
    CHECK_STR(test_active_sha(&d), sha_a);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    CHECK_EQ(d.activations, 3); /* a, b, a again */
    CHECK(!d.client.valid[1] && !d.client.mapped[1]);
    CHECK(!has_pending_record(&d));
    CHECK(report_has(gw.last_report, "state", "failed"));
    CHECK(report_has(gw.last_report, "sha256", sha_a));
    CHECK(report_has(gw.last_report, "rolledBackFrom", gw.sha_hex));
    CHECK(strstr(gw.last_report, "model_rejected: add 2 (the application: the test rejects it); rolled back to add 1; next try in ") != NULL);

    /* Not fetched again: not as it was, nor as another version of the same bytes. */
    int downloads = gw.artifact_requests;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(d.last_event, "waiting");
    tg_serve(&gw, "add", "2-again", prog_b, prog_b_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(gw.artifact_requests, downloads);

    /* A reboot runs add 1, and its first report says it went back from add 2. */
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_STR(test_active_sha(&d), sha_a);
    int reports = gw.reports;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(gw.reports > reports);
    CHECK(report_has(gw.first_report, "state", "idle")); /* the first boot's */
    CHECK(strstr(gw.reports_text, "\"capabilities\"") != NULL);
    CHECK(report_has(gw.last_report, "rolledBackFrom", gw.sha_hex));
    CHECK_EQ(gw.artifact_requests, downloads);

    /* After its backoff it is tried again, and a second rollback waits longer. */
    mf_posix_clock_advance(test_clock(), 10u * 60 * 1000);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_REJECTED);
    CHECK_EQ(gw.artifact_requests, downloads + 1);
    CHECK_EQ(d.client.failure.attempts, 2);
    CHECK_STR(test_active_sha(&d), sha_a);

    /* Another model is fetched at once, and confirmed. */
    tg_serve(&gw, "add", "3", prog_c, prog_c_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK(report_has(gw.last_report, "state", "installed"));
    CHECK(strstr(gw.last_report, "rolledBackFrom") == NULL);
    test_device_close(&d);
}

static void unconfirmed_model_times_out(void)
{
    test_device d;
    running_a(&d);
    char sha_a[65], sha_b[65];
    snprintf(sha_a, sizeof sha_a, "%s", gw.sha_hex);
    const mf_active_model *b = NULL;
    d.hold_confirm = 1;
    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    snprintf(sha_b, sizeof sha_b, "%s", gw.sha_hex);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    b = test_active(&d);
    CHECK_EQ(b->status, MF_MODEL_PENDING);
    mf_posix_clock_advance(test_clock(), 299u * 1000);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_PENDING);
    mf_posix_clock_advance(test_clock(), 1000);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NOT_CONFIRMED);
    CHECK_STR(test_active_sha(&d), sha_a);
    CHECK(report_has(gw.last_report, "rolledBackFrom", sha_b));
    CHECK(strstr(gw.last_report, "not_confirmed: add 2 (not confirmed within 300 s); rolled back to add 1") != NULL);

    /* The application may still read add 2 until it says it runs add 1 again: a new model
     * waits for that slot. */
    char hex[65];
    test_sha256_hex(b->data, b->size, hex);
    CHECK_STR(hex, sha_b);
    tg_serve(&gw, "add", "3", prog_c, prog_c_len);
    int downloads = gw.artifact_requests;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(d.last_event, "held");
    CHECK_EQ(gw.artifact_requests, downloads);
    d.hold_confirm = 0;
    mf_client_confirm(&d.client);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(gw.artifact_requests, downloads + 1);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    test_device_close(&d);
}

static void crash_loop_rolls_back_at_a_boot(void)
{
    uint32_t limits[] = {2, 1};
    for (size_t i = 0; i < 2; i++) {
        fprintf(stderr, "   confirm_boots %u\n", (unsigned)limits[i]);
        test_device d;
        running_a(&d);
        d.cfg.confirm_boots = limits[i];
        char sha_a[65], sha_b[65];
        snprintf(sha_a, sizeof sha_a, "%s", gw.sha_hex);
        tg_serve(&gw, "add", "2", prog_b, prog_b_len);
        snprintf(sha_b, sizeof sha_b, "%s", gw.sha_hex);
        snprintf(d.crash_sha, sizeof d.crash_sha, "%s", sha_b);
        test_device_cycles(&d, 1);
        CHECK_EQ(d.crashes, 1);
        /* Each boot before the limit starts it again (and it crashes again). */
        for (uint32_t boot = 1; boot < limits[i]; boot++) {
            CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
            CHECK_EQ(d.crashes, (int)boot + 1);
        }
        int crashes = d.crashes;
        CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
        CHECK_EQ(d.crashes, crashes);
        CHECK_STR(test_active_sha(&d), sha_a);
        CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
        CHECK(!has_pending_record(&d));
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        char expected[128];
        snprintf(expected, sizeof expected, "not_confirmed: add 2 (not confirmed after %u boots); rolled back to add 1",
                 (unsigned)limits[i]);
        CHECK(strstr(gw.last_report, expected) != NULL);
        CHECK(report_has(gw.last_report, "rolledBackFrom", sha_b));
        CHECK(report_has(gw.last_report, "sha256", sha_a));
        CHECK_STR(d.last_event, "waiting");
        test_device_close(&d);
    }
}

static void first_model_has_nothing_to_go_back_to(void)
{
    test_device d;
    fresh(&d);
    tg_serve(&gw, "add", "1", prog_a, prog_a_len);
    snprintf(d.reject_sha, sizeof d.reject_sha, "%s", gw.sha_hex);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_REJECTED);
    /* It stays, and the application is told. */
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_FAILED);
    CHECK_EQ(d.last_status, MF_MODEL_FAILED);
    CHECK(report_has(gw.last_report, "state", "failed"));
    CHECK(report_has(gw.last_report, "sha256", gw.sha_hex));
    CHECK(strstr(gw.last_report, "rolledBackFrom") == NULL);
    CHECK(strstr(gw.last_report, "model_rejected: add 1 (the application: the test rejects it); no previous model to go back to: it stays active") != NULL);
    int downloads = gw.artifact_requests, reports = gw.reports;
    CHECK_EQ(test_device_cycles(&d, 2), MF_OK);
    CHECK_EQ(gw.artifact_requests, downloads);
    CHECK_EQ(gw.reports, reports);
    /* After a reboot too: failed, and said so once. */
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_FAILED);
    CHECK_EQ(test_device_cycles(&d, 2), MF_OK);
    CHECK(strstr(gw.last_report, "no previous model to go back to") != NULL);
    CHECK_EQ(gw.reports, reports + 1);
    /* Another model replaces it. */
    d.reject_sha[0] = '\0';
    tg_serve(&gw, "add", "2", prog_b, prog_b_len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    CHECK(report_has(gw.last_report, "state", "installed"));
    test_device_close(&d);
}

/* Rewrites one byte of a slot (flash: erase its sector, write it back changed). */
static void poke(test_device *d, int slot, uint32_t at, uint8_t value)
{
    uint8_t sector[4096];
    uint32_t base = at / 4096 * 4096;
    CHECK_EQ(mf_slots_read(d->slots, slot, base, sector, sizeof sector), MF_OK);
    sector[at - base] = value;
    CHECK_EQ(mf_slots_erase(d->slots, slot, base, 4096), MF_OK);
    CHECK_EQ(mf_slots_write(d->slots, slot, base, sector, sizeof sector), MF_OK);
}

/* A slot unreadable at one boot (here: a byte of its model flipped, then back) must not win
 * over what was installed meanwhile; nor a slot whose header is gone. */
static void sequence_above_any_written(void)
{
    for (int variant = 0; variant < 2; variant++) {
        test_device d;
        running_a(&d);
        tg_serve(&gw, "add", "2", prog_b, prog_b_len);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_EQ(test_active(&d)->sequence, 2);
        CHECK_EQ(d.client.active, 1);
        uint8_t kept = prog_b[100];
        CHECK_EQ(mf_slot_invalidate(d.slots, 0), MF_OK);
        if (variant == 0) poke(&d, 1, 100, (uint8_t)~kept);
        else CHECK_EQ(mf_slot_invalidate(d.slots, 1), MF_OK);
        CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
        CHECK(mf_client_active(&d.client) == NULL);
        tg_serve(&gw, "add", "3", prog_c, prog_c_len);
        CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
        CHECK_EQ(d.client.active, 0);
        CHECK_EQ(test_active(&d)->sequence, 3);
        if (variant == 0) {
            poke(&d, 1, 100, kept);
            CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
            CHECK(d.client.valid[1]);
            CHECK_STR(test_active_sha(&d), gw.sha_hex);
        }
        test_device_close(&d);
    }
}

static void start_gateway(void) { ts_start(&server, tg_handler, &gw); }

static void stop_gateway(void) { ts_stop(&server); }

int main(int argc, char **argv)
{
    prog_a = test_program(40000, 1);
    prog_a_len = 40000;
    prog_b = test_program(30001, 2);
    prog_b_len = 30001;
    prog_c = test_program(20002, 3);
    prog_c_len = 20002;
    static const test_scenario scenarios[] = {
        SCENARIO(installs_then_only_polls),
        SCENARIO(new_version_goes_to_the_other_slot),
        SCENARIO(long_poll),
        SCENARIO(bad_digest_size_and_format),
        SCENARIO(rogue_gateway),
        SCENARIO(signed_rebuild_is_not_held_back),
        SCENARIO(hostile_poll_answers),
        SCENARIO(hostile_artifact_answers),
        SCENARIO(resume_only_the_same_artifact),
        SCENARIO(capabilities_reported),
        SCENARIO(dead_gateway_then_fallback),
        SCENARIO(pending_until_confirmed),
        SCENARIO(rejected_model_rolls_back),
        SCENARIO(unconfirmed_model_times_out),
        SCENARIO(crash_loop_rolls_back_at_a_boot),
        SCENARIO(first_model_has_nothing_to_go_back_to),
        SCENARIO(sequence_above_any_written),
    };
    int status = test_main(argc, argv, scenarios, sizeof scenarios / sizeof scenarios[0], start_gateway, stop_gateway);
    free(prog_a);
    free(prog_b);
    free(prog_c);
    return status;
}
