/* Device identity against a scripted gateway on 127.0.0.1 that admits devices by key: the
 * key pair made once and kept, tokens asked for when a request answers 401 (or before the
 * first request), proven again when a token stops working, pending and rejected devices
 * sending nothing but their proof, and no loop when a gateway refuses what it gave. */
#define _GNU_SOURCE
#include <string.h>
#include <sodium.h>

#include "mf_device_key.h"
#include "test_server.h"
#include "test_util.h"

#define SLOT_BYTES (64u * 1024)

static test_gateway gw;
static ts_server server;
static uint8_t *prog;
static size_t prog_len;

static void fresh(test_device *d)
{
    tg_init(&gw);
    server.ctx = &gw;
    tg_serve(&gw, "add", "1", prog, prog_len);
    gw.admission = 1;
    test_device_open(d, test_tempdir(), SLOT_BYTES, server.url);
}

static void public_key_b64(test_device *d, char out[48])
{
    sodium_bin2base64(out, 48, d->client.device_key, 32, sodium_base64_VARIANT_ORIGINAL);
}

/* Made on first boot from the random source, kept in the store as its 32-byte seed, the
 * same at every boot; the secret is not in the client's memory. */
static void key_made_once_and_kept(void)
{
    test_device d;
    fresh(&d);
    uint8_t seed[32];
    size_t len = 0;
    CHECK_EQ(mf_kv_get(d.kv, MF_KEY_DEVICE, seed, sizeof seed, &len), MF_ERR_NOT_FOUND);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(mf_kv_get(d.kv, MF_KEY_DEVICE, seed, sizeof seed, &len), MF_OK);
    CHECK_EQ(len, 32);
    uint8_t pk[32], sk[64], exported[32];
    crypto_sign_seed_keypair(pk, sk, seed);
    CHECK(memcmp(pk, d.client.device_key, 32) == 0);
    CHECK(memmem(&d.client, sizeof d.client, seed, 32) == NULL);
    CHECK(memmem(&d.client, sizeof d.client, sk, 32) == NULL);
    CHECK_EQ(mf_device_public_key(d.kv, exported), MF_OK);
    CHECK(memcmp(exported, pk, 32) == 0);

    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK(memcmp(d.client.device_key, pk, 32) == 0);

    /* Two devices, two keys. */
    test_device other;
    test_device_open(&other, test_tempdir(), SLOT_BYTES, server.url);
    CHECK_EQ(test_device_boot(&other), MF_OK);
    CHECK(memcmp(other.client.device_key, pk, 32) != 0);
    test_device_close(&other);

    /* A stored value that is not a seed is replaced by a new key, which the device offers. */
    CHECK_EQ(mf_kv_set(d.kv, MF_KEY_DEVICE, "torn", 4), MF_OK);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK(memcmp(d.client.device_key, pk, 32) != 0);
    CHECK_EQ(mf_kv_get(d.kv, MF_KEY_DEVICE, seed, sizeof seed, &len), MF_OK);
    CHECK_EQ(len, 32);
    test_device_close(&d);

    /* A seed written at manufacture is the device's key from its first boot. */
    test_device made;
    test_device_open(&made, test_tempdir(), SLOT_BYTES, server.url);
    memset(seed, 7, sizeof seed);
    CHECK_EQ(mf_kv_set(made.kv, MF_KEY_DEVICE, seed, 32), MF_OK);
    CHECK_EQ(test_device_boot(&made), MF_OK);
    crypto_sign_seed_keypair(pk, sk, seed);
    CHECK(memcmp(made.client.device_key, pk, 32) == 0);
    test_device_close(&made);
}

/* The first request goes without a token; its 401 makes the device prove its key, and
 * everything after carries the token. A token that stops working (the gateway restarted)
 * is replaced the same way, within the cycle. */
static void token_when_asked_and_again_after_401(void)
{
    test_device d;
    fresh(&d);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK(strncmp(gw.first_request, "POST /v1/devices/02:00:00:00:00:01/report", 41) == 0);
    CHECK_EQ(gw.unauthorized, 1);
    CHECK_EQ(gw.challenges, 1);
    CHECK_EQ(gw.tokens_issued, 1);
    CHECK_EQ(gw.proofs_refused, 0);
    char key[48];
    public_key_b64(&d, key);
    CHECK_STR(gw.device_key, key);
    CHECK_EQ(gw.artifact_requests, 1);
    CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);
    /* Only the first report went without; the boot report was sent again, with it. */
    CHECK(strstr(gw.first_report, "\"capabilities\"") != NULL);
    CHECK(strstr(gw.authorizations, "Bearer token-1") != NULL);

    /* The gateway restarts: tokens live in its memory only. */
    gw.token[0] = '\0';
    int reports = gw.reports;
    uint32_t delay;
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK_EQ(gw.unauthorized, 2);
    CHECK_EQ(gw.challenges, 2);
    CHECK_EQ(gw.tokens_issued, 2);
    CHECK_EQ(gw.polls_304, 1);
    CHECK_EQ(gw.reports, reports);
    CHECK(delay >= 270000);
    test_device_close(&d);
}

/* Configured to always authenticate, the device proves its key before its first request. */
static void always_authenticate_proves_first(void)
{
    test_device d;
    fresh(&d);
    d.cfg.always_authenticate = 1;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(gw.first_request, "POST /v1/devices/02:00:00:00:00:01/challenge");
    CHECK_EQ(gw.unauthorized, 0);
    CHECK_EQ(gw.tokens_issued, 1);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    test_device_close(&d);
}

/* Pending: the device waits the Retry-After and sends nothing but its proof meanwhile; once
 * accepted it installs. Rejected: it waits the longest backoff, and reports nothing. */
static void pending_then_accepted_rejected_reports_nothing(void)
{
    test_device d;
    fresh(&d);
    d.cfg.always_authenticate = 1;
    gw.admission_answer = 403;
    gw.admission_error = "device_pending";
    CHECK_EQ(test_device_boot(&d), MF_OK);
    uint32_t delay;
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_DEVICE_PENDING);
    CHECK_EQ(delay, 60000);
    CHECK_STR(d.last_event, "auth");
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_DEVICE_PENDING);
    CHECK_EQ(gw.challenges, 2);
    CHECK_EQ(gw.reports + gw.polls + gw.artifact_requests + gw.unauthorized, 0);

    gw.admission_answer = 0; /* an operator accepts it */
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_OK);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);

    gw.admission_answer = 403; /* and then rejects it: its token ends */
    gw.admission_error = "device_rejected";
    gw.token[0] = '\0';
    int reports = gw.reports, polls = gw.polls, challenges = gw.challenges;
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_DEVICE_REJECTED);
    CHECK_EQ(delay, d.cfg.backoff_max_ms);
    CHECK_STR(d.last_event, "auth");
    CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_DEVICE_REJECTED);
    /* The poll that was refused, then nothing but proofs. */
    CHECK_EQ(gw.unauthorized, 1);
    CHECK_EQ(gw.challenges, challenges + 2);
    CHECK_EQ(gw.reports, reports);
    CHECK_EQ(gw.polls, polls);
    CHECK_STR(test_active_sha(&d), gw.sha_hex);
    test_device_close(&d);
}

/* A proof refused, a token refused as soon as given, a gateway without the identity routes:
 * each is a failed exchange with its backoff, never a loop. */
static void refusals_back_off(void)
{
    const char *cases[] = {"proof refused", "token refused when used", "no identity routes"};
    for (int i = 0; i < 3; i++) {
        fprintf(stderr, "   %s\n", cases[i]);
        test_device d;
        fresh(&d);
        if (i == 0) {
            gw.admission_answer = 401;
            gw.admission_error = "device_auth_failed";
        }
        gw.refuse_tokens = i == 1;
        gw.no_identity_routes = i == 2;
        CHECK_EQ(test_device_boot(&d), MF_OK);
        uint32_t delay;
        mf_err err = mf_client_cycle(&d.client, &delay);
        CHECK_EQ(err, MF_ERR_UNAUTHORIZED);
        CHECK(delay > 0);
        CHECK(gw.challenges <= 1);
        CHECK_EQ(mf_client_cycle(&d.client, &delay), MF_ERR_UNAUTHORIZED);
        CHECK(gw.challenges <= 2);
        CHECK(mf_client_active(&d.client) == NULL);
        CHECK_EQ(gw.artifact_requests, 0);
        test_device_close(&d);
    }
}

static void start_gateway(void) { ts_start(&server, tg_handler, &gw); }

static void stop_gateway(void) { ts_stop(&server); }

int main(int argc, char **argv)
{
    prog = test_program(30000, 5);
    prog_len = 30000;
    static const test_scenario scenarios[] = {
        SCENARIO(key_made_once_and_kept),
        SCENARIO(token_when_asked_and_again_after_401),
        SCENARIO(always_authenticate_proves_first),
        SCENARIO(pending_then_accepted_rejected_reports_nothing),
        SCENARIO(refusals_back_off),
    };
    int status = test_main(argc, argv, scenarios, sizeof scenarios / sizeof scenarios[0], start_gateway, stop_gateway);
    free(prog);
    return status;
}
