/* Reports to the gateway (POST /v1/devices/{mac}/report): built in the buffer allocated at
 * init, with the capabilities once a boot (BOOT_REPORT). */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_json_out.h"
#include "mf_slot.h"

size_t mf_report_capacity(const mf_config *cfg)
{
    size_t n = 1024; /* everything but the capabilities' lists, with room to spare */
    for (size_t i = 0; i < cfg->capabilities.operator_count; i++) n += mf_json_string_size(cfg->capabilities.operators[i]) + 1;
    for (size_t i = 0; i < cfg->capabilities.delegate_count; i++) n += mf_json_string_size(cfg->capabilities.delegates[i]) + 1;
    if (cfg->capabilities.runtime) n += mf_json_string_size(cfg->capabilities.runtime);
    if (cfg->firmware_version) n += mf_json_string_size(cfg->firmware_version);
    return n;
}

/* The contract's bounds on capabilities (docs/design.md "Device reports"): a report the gateway would
 * refuse is a configuration mistake, caught at start. */
static int capability_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MF_CAPABILITY_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return 0;
    return 1;
}

int mf_capabilities_ok(const mf_capabilities *caps)
{
    if (caps->operator_count > MF_OPERATORS_MAX || caps->delegate_count > MF_DELEGATES_MAX) return 0;
    if ((caps->operator_count && !caps->operators) || (caps->delegate_count && !caps->delegates)) return 0;
    for (size_t i = 0; i < caps->operator_count; i++)
        if (!capability_name_ok(caps->operators[i])) return 0;
    for (size_t i = 0; i < caps->delegate_count; i++)
        if (!capability_name_ok(caps->delegates[i])) return 0;
    return !caps->runtime || strlen(caps->runtime) <= MF_RUNTIME_MAX;
}

static void write_capabilities(mf_client *c, mf_json *j)
{
    const mf_capabilities *caps = &c->cfg->capabilities;
    mf_json_key(j, "capabilities");
    mf_json_begin(j, '{');
    mf_json_key(j, "operators");
    mf_json_begin(j, '[');
    for (size_t i = 0; i < caps->operator_count; i++) mf_json_string(j, caps->operators[i]);
    mf_json_end(j, ']');
    mf_json_key(j, "delegates");
    mf_json_begin(j, '[');
    for (size_t i = 0; i < caps->delegate_count; i++) mf_json_string(j, caps->delegates[i]);
    mf_json_end(j, ']');
    mf_json_key(j, "arenaBytes");
    mf_json_uint(j, caps->arena_bytes);
    mf_json_key(j, "slotBytes");
    uint32_t slot_bytes = mf_slot_capacity(c->ports.slots, 0);
    uint32_t other = mf_slot_capacity(c->ports.slots, 1);
    mf_json_uint(j, other < slot_bytes ? other : slot_bytes);
    if (caps->runtime) {
        mf_json_field(j, "runtime", caps->runtime);
    }
    if (c->cfg->deltas) {
        /* The format core/mf_delta.c applies (docs/design.md "Deltas"). */
        mf_json_key(j, "patch");
        mf_json_begin(j, '[');
        mf_json_string(j, "fossil");
        mf_json_end(j, ']');
    }
    mf_json_end(j, '}');
}

mf_err mf_report(mf_client *c, const char *state, const char *error, const char *rolled_back_from, double progress,
                 int with_caps)
{
    if (!c->gateway.listed) return MF_ERR_NO_GATEWAY; /* before the first DISCOVER: BOOT_REPORT says it */
    if (mf_auth_due(c)) return MF_ERR_UNAUTHORIZED;   /* nothing reaches a gateway that wants a token */
    mf_json j;
    mf_json_init(&j, c->report.buf, c->report.cap);
    mf_json_begin(&j, '{');
    mf_json_field(&j, "state", state);
    const mf_active_model *m = mf_client_active(c);
    if (m) {
        mf_json_field(&j, "sha256", m->sha256_hex);
        mf_json_field(&j, "model", m->name);
        mf_json_field(&j, "version", m->version);
    }
    if (rolled_back_from) {
        mf_json_field(&j, "rolledBackFrom", rolled_back_from);
    }
    if (error) {
        char bounded[512]; /* the contract's bound on `error` */
        snprintf(bounded, sizeof bounded, "%s", error);
        mf_json_field(&j, "error", bounded);
    }
    if (progress >= 0) {
        mf_json_key(&j, "progress");
        mf_json_fraction(&j, progress);
    }
    if (c->cfg->firmware_version) {
        mf_json_field(&j, "firmware", c->cfg->firmware_version);
    }
    long heap = mf_identity_free_heap(c->ports.identity);
    if (heap >= 0) {
        mf_json_key(&j, "freeHeap");
        mf_json_uint(&j, (uint64_t)heap);
    }
    mf_json_key(&j, "uptimeSeconds");
    mf_json_uint(&j, (mf_now_ms(c) - c->boot_ms) / 1000);
    if (with_caps) write_capabilities(c, &j);
    mf_json_end(&j, '}');
    if (j.overflow) return MF_ERR_NO_MEMORY;

    char url[MF_BASE_URL_MAX + 64];
    mf_device_url(c, url, sizeof url, "report");
    mf_http_request req = mf_request(c, "POST", url);
    req.content_type = "application/json";
    req.body = (const uint8_t *)j.buf;
    req.body_len = j.len;
    int status;
    mf_err err = mf_request_small(c, &req, &status, NULL);
    c->stats.reports++;
    if (err != MF_OK) return err;
    if (status == 401) return MF_ERR_UNAUTHORIZED;
    if (status != 204 && status != 200) {
        c->stats.reports_refused++;
        mf_eventf(c, "report_refused", "status=%d state=%s caps=%d", status, state, with_caps);
        return MF_ERR_HTTP_STATUS;
    }
    snprintf(c->report.last_state, sizeof c->report.last_state, "%s", state);
    snprintf(c->report.last_sha, sizeof c->report.last_sha, "%s", m ? m->sha256_hex : "");
    mf_eventf(c, "report", "state=%s%s%s", state, error ? " error=" : "", error ? error : "");
    return MF_OK;
}

void mf_report_state(mf_client *c, const char *state, const char *error, double progress)
{
    (void)mf_report(c, state, error, NULL, progress, 0);
}

/* What the device stands at: what runs, and what failed if anything did. */
static mf_err report_standing(mf_client *c, int with_caps)
{
    const mf_active_model *m = mf_client_active(c);
    if (m && m->status == MF_MODEL_FAILED) return mf_confirm_report_failed(c, with_caps);
    if (c->failure.attempts > 0) return mf_failure_report(c, with_caps);
    if (m) return mf_report(c, "installed", NULL, NULL, -1, with_caps);
    return mf_report(c, "idle", "no_model: no valid model slot", NULL, -1, with_caps);
}

/* Once a boot: where the device stands, and what the firmware can run. A gateway that
 * refuses the capabilities (older gateways bound reports to 4 KiB) still gets the rest. */
void mf_run_boot_report(mf_client *c, mf_step *s)
{
    uint32_t bit = 1u << c->gateway.index;
    if (c->report.boot_done & bit) {
        mf_step_go(s);
        return;
    }
    mf_err err = report_standing(c, 1);
    if (err == MF_ERR_HTTP_STATUS) err = report_standing(c, 0);
    if (err == MF_ERR_UNAUTHORIZED) {
        mf_step_auth(c, s);
        return;
    }
    if (err == MF_OK) c->report.boot_done |= bit;
    if (err == MF_ERR_NETWORK) {
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }
    /* Any other refusal: the poll goes ahead, and the next cycle reports again. */
    mf_step_go(s);
}
