/* Trust on a hostile LAN, against scripted gateways on 127.0.0.1: the highest signed sequence
 * a device confirmed per model name is the floor it installs at (anti-rollback), raised only
 * by confirmed models; an artifact on another origin is refused, so no credential leaves for
 * another host; and a gateway answering no_assignment, 304 or something refused cannot keep
 * the device from another gateway's update (it asks the others before settling). */
#include <string.h>

#include "mf_records.h"
#include "test_server.h"
#include "test_util.h"

#define SLOT_BYTES (64u * 1024)

static test_gateway gw_a, gw_b;
static ts_server server_a, server_b;
static uint8_t *prog[5];
static size_t prog_len[5];
static char sha[5][65];
static test_key key;

/* A device whose only gateway is B (its fallback URL), trusting `key`. */
static void fresh(test_device *d)
{
    tg_init(&gw_a);
    tg_init(&gw_b);
    server_a.ctx = &gw_a;
    server_b.ctx = &gw_b;
    test_device_open(d, test_tempdir(), SLOT_BYTES, server_b.url);
    memcpy(d->keys[0], key.pk, 32);
    d->cfg.trusted_keys = (const uint8_t(*)[32])d->keys;
    d->cfg.trusted_key_count = 1;
}

/* Serves program i as name@version, signed v2 with `seq`, or v1 when seq is NULL. */
static void serve(test_gateway *g, const char *name, const char *version, int i, const char *seq)
{
    tg_serve(g, name, version, prog[i], prog_len[i]);
    pthread_mutex_lock(&g->lock);
    if (seq) {
        test_sign_v2(&key, name, version, sha[i], prog_len[i], strtoull(seq, NULL, 10), g->signature);
        snprintf(g->seq, sizeof g->seq, "%s", seq);
    } else {
        test_sign(&key, name, version, sha[i], prog_len[i], g->signature);
    }
    strcpy(g->key_id, key.key_id);
    pthread_mutex_unlock(&g->lock);
}

static void confirmed_sequence_is_the_floor(void)
{
    test_device d;
    fresh(&d);
    serve(&gw_b, "add", "2", 0, "5");
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[0]);
    CHECK(mf_floor_load(d.kv, "add") == 5);

    /* An older model, signed by the trusted key: refused before a byte is fetched, reported. */
    serve(&gw_b, "add", "1", 1, "4");
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_ROLLBACK);
    CHECK(strstr(d.last_failed, "rollback_refused: add 1 (signed sequence 4, below 5 that this device confirmed)") != NULL);
    CHECK(strstr(gw_b.last_report, "\"state\":\"failed\"") != NULL);
    CHECK(strstr(gw_b.last_report, "rollback_refused: add 1") != NULL);
    CHECK_EQ(gw_b.artifact_requests, 1);
    CHECK_STR(test_active_sha(&d), sha[0]);
    /* A v1 signature counts as sequence 0. */
    serve(&gw_b, "add", "1", 1, NULL);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_ROLLBACK);
    CHECK(strstr(d.last_failed, "signed sequence 0, below 5") != NULL);
    /* Across a reboot. */
    serve(&gw_b, "add", "0", 2, "1");
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_ROLLBACK);
    CHECK_EQ(gw_b.artifact_requests, 1);

    /* Per name: another model starts from nothing. The same sequence, and higher ones, go. */
    serve(&gw_b, "mul", "1", 1, "1");
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[1]);
    serve(&gw_b, "add", "3", 2, "5");
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[2]);
    serve(&gw_b, "add", "4", 3, "18446744073709551615");
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(mf_floor_load(d.kv, "add") == UINT64_MAX);
    CHECK(mf_floor_load(d.kv, "mul") == 1);
    test_device_close(&d);
}

/* Only a confirmed model raises the floor: one the application rejected (the cohort of a
 * halted rollout goes back to `previous`) leaves the device free to take an older one. A
 * device that checks no signatures keeps no floor: a sequence nobody verified means nothing. */
static void floor_only_from_confirmed_models(void)
{
    test_device d;
    fresh(&d);
    serve(&gw_b, "add", "1", 0, "3");
    snprintf(d.reject_sha, sizeof d.reject_sha, "%s", sha[1]);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    serve(&gw_b, "add", "2", 1, "5");
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_REJECTED);
    CHECK_STR(test_active_sha(&d), sha[0]);
    CHECK(mf_floor_load(d.kv, "add") == 3);
    serve(&gw_b, "add", "1.1", 2, "4");
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[2]);
    CHECK(mf_floor_load(d.kv, "add") == 4);
    test_device_close(&d);

    fresh(&d);
    d.cfg.trusted_key_count = 0;
    serve(&gw_b, "add", "9", 0, "99");
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(mf_floor_load(d.kv, "add") == 0);
    serve(&gw_b, "add", "1", 1, "1");
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[1]);
    test_device_close(&d);
}

/* An absolute artifact URL is followed only on the gateway's own origin (scheme, host, port),
 * with its token; anything else is refused before a request leaves the device. */
static void artifact_on_another_origin_refused(void)
{
    char urls[5][256];
    snprintf(urls[0], 256, "http://127.0.0.2:%u/v1/artifacts/%s", server_b.port, sha[0]);
    snprintf(urls[1], 256, "http://127.0.0.1:%u/v1/artifacts/%s", server_a.port, sha[0]);
    snprintf(urls[2], 256, "https://127.0.0.1:%u/v1/artifacts/%s", server_b.port, sha[0]);
    snprintf(urls[3], 256, "http://127.0.0.1:%u@127.0.0.1:%u/v1/artifacts/%s", server_b.port, server_a.port, sha[0]);
    snprintf(urls[4], 256, "http://127.0.0.1:%u0/v1/artifacts/%s", server_b.port, sha[0]);
    for (int i = 0; i < 5; i++) {
        fprintf(stderr, "   %s\n", urls[i]);
        test_device d;
        fresh(&d);
        gw_b.admission = 1;
        serve(&gw_b, "add", "1", 0, "1");
        snprintf(gw_b.artifact_url, sizeof gw_b.artifact_url, "%s", urls[i]);
        serve(&gw_a, "add", "1", 0, "1");
        CHECK_EQ(test_device_boot(&d), MF_OK);
        CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_CROSS_ORIGIN);
        CHECK(strstr(d.last_failed, "cross_origin_url: add 1 (http") != NULL);
        CHECK(strstr(gw_b.last_report, "cross_origin_url") != NULL);
        CHECK_EQ(gw_a.artifact_requests + gw_a.polls + gw_a.reports + gw_a.unauthorized, 0);
        CHECK_EQ(gw_b.artifact_requests, 0);
        CHECK(mf_client_active(&d.client) == NULL);
        test_device_close(&d);
    }
    test_device d;
    fresh(&d);
    gw_b.admission = 1;
    serve(&gw_b, "add", "1", 0, "1");
    snprintf(gw_b.artifact_url, sizeof gw_b.artifact_url, "%s/v1/artifacts/%s", server_b.url, sha[0]);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[0]);
    CHECK_EQ(gw_b.artifact_requests, 1); /* with the token: the gateway refuses any request without */
    test_device_close(&d);
}

/* Two gateways: A, the last that answered (first in the list), and B. What A answers cannot
 * keep the device from B's update: no assignment, the same answer held as 304s, an older
 * model it refuses. The device settles on A again each time, and writes nothing to storage
 * for asking B. */
static void other_gateways_asked_before_settling(void)
{
    test_device d;
    fresh(&d);
    CHECK_EQ(mf_kv_set(d.kv, "mf_gw", server_a.url, strlen(server_a.url)), MF_OK);
    d.cfg.long_poll_s = 1;
    gw_a.hold_ms = 600;
    gw_a.no_assignment = 1;
    serve(&gw_b, "add", "1", 0, "1");
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[0]);
    CHECK_EQ(gw_a.polls, 1);
    CHECK_EQ(gw_b.artifact_requests, 1);
    CHECK(strstr(gw_a.first_report, "\"capabilities\"") != NULL); /* each gets a boot report */
    CHECK(strstr(gw_b.first_report, "\"capabilities\"") != NULL);
    CHECK(strstr(gw_b.last_report, "\"state\":\"installed\"") != NULL);
    CHECK_EQ(d.client.gateway.index, 0);
    uint64_t ops = d.fault.ops;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(gw_a.polls, 2);
    CHECK_EQ(gw_b.polls, 2);
    CHECK_EQ(d.fault.ops, ops);
    char stored[128];
    size_t len;
    CHECK_EQ(mf_kv_get(d.kv, "mf_gw", stored, sizeof stored - 1, &len), MF_OK);
    stored[len] = '\0';
    CHECK_STR(stored, server_a.url);

    /* A holds the device's model and answers 304 to its long polls, for ever: B's new one
     * still arrives, at the next poll of B. */
    serve(&gw_a, "add", "1", 0, "1");
    gw_a.no_assignment = 0;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(gw_a.polls_304 >= 1);
    CHECK(gw_a.polls_wait >= 1);
    CHECK_EQ(gw_b.polls_wait, 0);
    serve(&gw_b, "add", "2", 1, "2");
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[1]);
    CHECK_EQ(gw_a.artifact_requests, 0);

    /* A offers an older model, signed: refused, reported to A; B's stays. */
    serve(&gw_a, "add", "1", 0, "1");
    gw_a.seq[0] = '\0';
    test_sign(&key, "add", "1", sha[0], prog_len[0], gw_a.signature);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(strstr(gw_a.last_report, "rollback_refused") != NULL);
    CHECK_STR(test_active_sha(&d), sha[1]);
    int b_reports = gw_b.reports;
    CHECK_EQ(test_device_cycles(&d, 2), MF_OK);
    CHECK_STR(test_active_sha(&d), sha[1]);
    CHECK_EQ(gw_a.artifact_requests + gw_b.artifact_requests, 2);
    CHECK(gw_b.reports <= b_reports + 1);
    test_device_close(&d);
}

/* The stable codes reports carry, first to last, and the bounds init keeps. */
static void codes_and_bounds(void)
{
    CHECK_STR(mf_err_code(MF_OK), "ok");
    CHECK_STR(mf_err_code(MF_ERR_DIGEST_MISMATCH), "digest_mismatch");
    CHECK_STR(mf_err_code(MF_ERR_BAD_DELTA), "bad_delta");
    CHECK_STR(mf_err_code(MF_ERR_UNAUTHORIZED), "device_auth_failed");
    CHECK_STR(mf_err_code(MF_ERR_PIN_MISMATCH), "pin_mismatch");
    CHECK_STR(mf_err_code(MF_ERR_ROLLBACK), "rollback_refused");
    CHECK_STR(mf_err_code(MF_ERR_CROSS_ORIGIN), "cross_origin_url");
    CHECK_STR(mf_err_code((mf_err)(MF_ERR_CROSS_ORIGIN + 1)), "unknown_error");
    CHECK_STR(mf_err_code((mf_err)-1), "unknown_error");
    test_device d;
    fresh(&d);
    static const uint8_t pins[MF_PINS_MAX + 1][32];
    d.cfg.gateway_pins = pins;
    d.cfg.gateway_pin_count = MF_PINS_MAX + 1;
    CHECK_EQ(test_device_boot(&d), MF_ERR_INVALID_ARG);
    test_device_close(&d);
}

static void start_gateways(void)
{
    ts_start(&server_a, tg_handler, &gw_a);
    ts_start(&server_b, tg_handler, &gw_b);
}

static void stop_gateways(void)
{
    ts_stop(&server_a);
    ts_stop(&server_b);
}

int main(int argc, char **argv)
{
    for (int i = 0; i < 5; i++) {
        prog_len[i] = 20000 + 1000 * (size_t)i;
        prog[i] = test_program(prog_len[i], 40 + (uint32_t)i);
        test_sha256_hex(prog[i], prog_len[i], sha[i]);
    }
    test_keygen(&key);
    static const test_scenario scenarios[] = {
        SCENARIO(confirmed_sequence_is_the_floor),
        SCENARIO(floor_only_from_confirmed_models),
        SCENARIO(artifact_on_another_origin_refused),
        SCENARIO(other_gateways_asked_before_settling),
        SCENARIO(codes_and_bounds),
    };
    int status = test_main(argc, argv, scenarios, sizeof scenarios / sizeof scenarios[0], start_gateways, stop_gateways);
    for (int i = 0; i < 5; i++) free(prog[i]);
    return status;
}
