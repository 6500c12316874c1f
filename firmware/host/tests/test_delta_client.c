/* The update cycle with a delta (docs/design.md "Deltas") against a scripted gateway: the
 * device makes the new model from the one it runs and the delta, downloading only the
 * delta; it downloads the full artifact when the delta is not for what it runs or deltas are
 * off; a delta that does not make the model (bad checksum, out-of-range copy, cut short,
 * longer than announced, gone, other bytes) is reported and the full artifact fetched in the
 * same cycle; a dropped delta resumes with Range after a reboot, from where the apply stood. */
#include <string.h>

#include "mf_records.h"
#include "mf_slot.h"
#include "test_server.h"
#include "test_util.h"

#define MODEL_BYTES (200u * 1024 + 77)
#define SLOT_BYTES (256u * 1024)
/* B is A with these bytes new. */
#define CHANGED_AT (80u * 1024)
#define CHANGED_BYTES (20u * 1024)

static test_gateway gw;
static ts_server server;
static uint8_t *prog_a, *prog_b;
static char sha_a[65], sha_b[65];
static test_delta_writer delta; /* A → B */

/* A device that runs A; the gateway then assigns B. */
static void running_a(test_device *d)
{
    tg_init(&gw);
    server.ctx = &gw;
    test_device_open(d, test_tempdir(), SLOT_BYTES, server.url);
    tg_serve(&gw, "m", "1", prog_a, MODEL_BYTES);
    CHECK_EQ(test_device_boot(d), MF_OK);
    CHECK_EQ(test_device_cycles(d, 1), MF_OK);
    CHECK_STR(test_active_sha(d), sha_a);
    tg_serve(&gw, "m", "2", prog_b, MODEL_BYTES);
    gw.artifact_requests = 0;
}

/* B is active, confirmed, and its slot holds exactly B's bytes. */
static void runs_b(test_device *d)
{
    const mf_active_model *m = test_active(d);
    CHECK_STR(m->sha256_hex, sha_b);
    CHECK_EQ(m->status, MF_MODEL_CONFIRMED);
    CHECK(memcmp(m->data, prog_b, MODEL_BYTES) == 0);
}

static void the_delta_is_applied_instead_of_the_model(void)
{
    test_device d;
    running_a(&d);
    CHECK(strstr(gw.first_report, "\"patch\":[\"fossil\"]") != NULL);
    tg_offer_delta(&gw, sha_a, delta.buf, delta.len);
    uint64_t before = d.client.stats.bytes_received;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_requests, 1);
    CHECK_EQ(gw.artifact_requests, 0);
    CHECK_EQ(d.client.stats.deltas_applied, 1);
    CHECK_EQ(d.client.stats.deltas_refused, 0);
    /* The delta and two small answers: a tenth of the model. */
    uint64_t received = d.client.stats.bytes_received - before;
    CHECK(received >= delta.len && received < MODEL_BYTES / 8);
    CHECK(strstr(gw.last_report, "\"state\":\"installed\"") != NULL);
    /* In sync: nothing more is fetched. */
    CHECK_EQ(test_device_cycles(&d, 2), MF_OK);
    CHECK_EQ(gw.delta_requests, 1);
    CHECK_EQ(gw.artifact_requests, 0);
    test_device_close(&d);
}

static void a_delta_not_for_what_runs_elsewhere_or_deltas_off_means_the_full_artifact(void)
{
    test_device d;
    running_a(&d);
    char other[65];
    test_sha256_hex((const uint8_t *)"another model", 13, other);
    tg_offer_delta(&gw, other, delta.buf, delta.len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_requests, 0);
    CHECK_EQ(gw.artifact_requests, 1);
    test_device_close(&d);

    /* A delta on another origin: not followed (nor are the device's credentials). */
    running_a(&d);
    tg_offer_delta(&gw, sha_a, delta.buf, delta.len);
    snprintf(gw.delta_url, sizeof gw.delta_url, "http://127.0.0.2:%u/v1/deltas/%s/%s", server.port, sha_a, sha_b);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_requests, 0);
    CHECK_EQ(gw.artifact_requests, 1);
    test_device_close(&d);

    tg_init(&gw);
    test_device_open(&d, test_tempdir(), SLOT_BYTES, server.url);
    d.cfg.deltas = 0;
    tg_serve(&gw, "m", "1", prog_a, MODEL_BYTES);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(strstr(gw.first_report, "\"capabilities\"") != NULL);
    CHECK(strstr(gw.first_report, "patch") == NULL);
    tg_serve(&gw, "m", "2", prog_b, MODEL_BYTES);
    tg_offer_delta(&gw, sha_a, delta.buf, delta.len);
    gw.artifact_requests = 0;
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_requests, 0);
    CHECK_EQ(gw.artifact_requests, 1);
    test_device_close(&d);
}

/* The delta, its checksum replaced. */
static test_delta_writer with_checksum(uint32_t sum)
{
    test_delta_writer w = {0};
    size_t semicolon = delta.len - 1;
    size_t start = semicolon;
    while (start > 0 && delta.buf[start - 1] != ',') start--; /* the last command is a copy */
    test_delta_bytes(&w, delta.buf, start);
    test_delta_int(&w, sum);
    test_delta_bytes(&w, ";", 1);
    return w;
}

/* Offers `bytes` as the delta (the gateway misbehaving as `setup` says): in one cycle the
 * device tries it, reports why it did not make B, and installs B from the full artifact. */
static void falls_back(const uint8_t *bytes, size_t len, const char *why, void (*setup)(void))
{
    test_device d;
    running_a(&d);
    tg_offer_delta(&gw, sha_a, bytes, len);
    if (setup) setup();
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_requests, 1);
    CHECK_EQ(gw.artifact_requests, 1);
    CHECK_EQ(d.client.stats.deltas_refused, 1);
    char expected[200];
    snprintf(expected, sizeof expected, "bad_delta: %s; downloading the full artifact", why);
    if (!strstr(gw.reports_text, expected)) fprintf(stderr, "reports:\n%s\nexpected: %s\n", gw.reports_text, expected);
    CHECK(strstr(gw.reports_text, expected) != NULL);
    test_device_close(&d);
}

static void announce_less(void) { gw.delta_announced_size -= 10; }
static void gone(void) { gw.delta_status = 404; }

static void a_delta_that_does_not_make_the_model_falls_back_in_the_same_cycle(void)
{
    test_delta_writer w = with_checksum(test_fossil_checksum(prog_b, MODEL_BYTES) + 1);
    falls_back(w.buf, w.len, "bad checksum", NULL);
    free(w.buf);

    test_delta_writer past = {0};
    test_delta_int(&past, MODEL_BYTES);
    test_delta_bytes(&past, "\n", 1);
    test_delta_copy(&past, 100, MODEL_BYTES - 50);
    falls_back(past.buf, past.len, "a copy reads past the end of the source", NULL);
    free(past.buf);

    falls_back(delta.buf, delta.len - 1, "truncated", NULL);
    falls_back(delta.buf, delta.len, "its body is not the announced size", announce_less);
    falls_back(delta.buf, delta.len, "the gateway did not serve it", gone);

    /* A well-formed delta of other bytes: A itself, with its own checksum. */
    test_delta_writer other = {0};
    test_delta_int(&other, MODEL_BYTES);
    test_delta_bytes(&other, "\n", 1);
    test_delta_copy(&other, MODEL_BYTES, 0);
    test_delta_int(&other, test_fossil_checksum(prog_a, MODEL_BYTES));
    test_delta_bytes(&other, ";", 1);
    falls_back(other.buf, other.len, "it made other bytes than the model's sha256", NULL);
    free(other.buf);
}

static void a_dropped_delta_resumes_with_range_after_a_reboot(void)
{
    test_device d;
    running_a(&d);
    tg_offer_delta(&gw, sha_a, delta.buf, delta.len);
    /* Cut inside the inserted bytes: the output is past 64 KiB, not at its end. */
    gw.delta_close_after_bytes = 12000;
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
    mf_delta_progress p;
    CHECK_EQ(mf_delta_progress_load(d.kv, "mf_dl", &p), MF_OK);
    CHECK(p.at.written >= 64 * 1024 && p.at.written % MF_FLASH_SECTOR == 0);
    CHECK(p.at.consumed > 0 && p.at.consumed <= 12000);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_STR(test_active_sha(&d), sha_a);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_requests, 2);
    CHECK_EQ(gw.delta_range_requests, 1);
    CHECK_EQ(gw.delta_last_range_start, p.at.consumed);
    CHECK_EQ(gw.artifact_requests, 0);
    CHECK_EQ(d.client.stats.deltas_applied, 1);
    test_device_close(&d);

    /* The same without a reboot, and a gateway that answers the Range with the whole delta:
     * the apply starts over. */
    running_a(&d);
    tg_offer_delta(&gw, sha_a, delta.buf, delta.len);
    gw.delta_close_after_bytes = 12000;
    gw.delta_range_as_200 = 1;
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_NETWORK);
    CHECK_EQ(test_device_cycles(&d, 3), MF_OK);
    runs_b(&d);
    CHECK_EQ(gw.delta_range_requests, 1);
    CHECK_EQ(d.client.stats.range_restarts, 1);
    CHECK_EQ(gw.artifact_requests, 0);
    test_device_close(&d);
}

/* A gateway that asks for the device's key in the middle of an update (its tokens expired):
 * the key is proven and the delta taken up again, not given up for the full artifact. */
static void a_delta_refused_for_want_of_a_token_goes_on_after_the_proof(void)
{
    test_device d;
    running_a(&d);
    gw.admission = 1;
    tg_offer_delta(&gw, sha_a, delta.buf, delta.len);
    gw.delta_status = 401;
    gw.delta_status_once = 1;
    CHECK_EQ(test_device_cycles(&d, 3), MF_OK);
    runs_b(&d);
    CHECK(gw.tokens_issued >= 1);
    CHECK_EQ(gw.delta_requests, 2);
    CHECK_EQ(gw.artifact_requests, 0);
    CHECK_EQ(d.client.stats.deltas_refused, 0);
    CHECK(strstr(gw.reports_text, "bad_delta") == NULL);
    test_device_close(&d);
}

static void start_gateway(void) { ts_start(&server, tg_handler, &gw); }

static void stop_gateway(void) { ts_stop(&server); }

int main(int argc, char **argv)
{
    prog_a = test_program(MODEL_BYTES, 1);
    prog_b = malloc(MODEL_BYTES);
    memcpy(prog_b, prog_a, MODEL_BYTES);
    uint8_t *changed = test_program(CHANGED_BYTES, 9);
    memcpy(prog_b + CHANGED_AT, changed, CHANGED_BYTES);
    test_sha256_hex(prog_a, MODEL_BYTES, sha_a);
    test_sha256_hex(prog_b, MODEL_BYTES, sha_b);
    test_delta_int(&delta, MODEL_BYTES);
    test_delta_bytes(&delta, "\n", 1);
    test_delta_copy(&delta, CHANGED_AT, 0);
    test_delta_insert(&delta, changed, CHANGED_BYTES);
    test_delta_copy(&delta, MODEL_BYTES - CHANGED_AT - CHANGED_BYTES, CHANGED_AT + CHANGED_BYTES);
    test_delta_int(&delta, test_fossil_checksum(prog_b, MODEL_BYTES));
    test_delta_bytes(&delta, ";", 1);
    free(changed);
    static const test_scenario scenarios[] = {
        SCENARIO(the_delta_is_applied_instead_of_the_model),
        SCENARIO(a_delta_not_for_what_runs_elsewhere_or_deltas_off_means_the_full_artifact),
        SCENARIO(a_delta_that_does_not_make_the_model_falls_back_in_the_same_cycle),
        SCENARIO(a_dropped_delta_resumes_with_range_after_a_reboot),
        SCENARIO(a_delta_refused_for_want_of_a_token_goes_on_after_the_proof),
    };
    int status = test_main(argc, argv, scenarios, sizeof scenarios / sizeof scenarios[0], start_gateway, stop_gateway);
    free(prog_a);
    free(prog_b);
    free(delta.buf);
    return status;
}
