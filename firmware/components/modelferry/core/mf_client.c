#include "modelferry/modelferry.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "mf_assignment.h"
#include "mf_backoff.h"
#include "mf_executorch.h"
#include "mf_gateway_select.h"
#include "mf_json_out.h"
#include "mf_progress.h"
#include "mf_slot.h"
#include "mf_verify.h"

#define KEY_PROGRESS "mf_dl"
#define KEY_FAILED "mf_fail"
#define KEY_GATEWAY "mf_gw"
/* Progress reaches the key-value store every this many bytes (a multiple of the sector
 * size: a resume restarts at a sector boundary and erases that sector again). */
#define PROGRESS_STEP (16u * MF_FLASH_SECTOR)

void mf_config_defaults(mf_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->discovery = 1;
    cfg->service = "_modelferry._tcp";
    cfg->discovery_timeout_ms = 3000;
    cfg->poll_interval_s = 300;
    cfg->poll_jitter_s = 30;
    cfg->long_poll_s = 120;
    cfg->request_timeout_ms = 30000;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 300000;
    cfg->retry_base_ms = 60000;
    cfg->retry_max_ms = 6 * 3600 * 1000u;
    cfg->failures_before_switch = 3;
}

static void event(mf_client *c, const char *name, const char *detail)
{
    if (c->cfg->on_event) c->cfg->on_event(c->cfg->ctx, name, detail);
}

static void eventf(mf_client *c, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void eventf(mf_client *c, const char *name, const char *fmt, ...)
{
    char detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    event(c, name, detail);
}

static uint32_t uptime_s(mf_client *c) { return (uint32_t)((mf_clock_now_ms() - c->boot_ms) / 1000); }

/* ------------------------------------------------------------------ activation */

static mf_err activate(mf_client *c, int slot, const mf_slot_info *info)
{
    const uint8_t *data = NULL;
    mf_err err = mf_slots_map(c->ports.slots, slot, info->size, &data);
    if (err != MF_OK) return err;
    int previous = c->active;
    mf_active_model *m = &c->model;
    memset(m, 0, sizeof *m);
    m->slot = slot;
    m->data = data;
    m->size = info->size;
    m->sequence = info->sequence;
    memcpy(m->sha256, info->sha256, 32);
    mf_hex_encode(info->sha256, 32, m->sha256_hex);
    strcpy(m->name, info->name);
    strcpy(m->version, info->version);
    c->active = slot;
    c->stats.activations++;
    if (c->cfg->on_activate) c->cfg->on_activate(c->cfg->ctx, m);
    if (previous >= 0 && previous != slot) mf_slots_unmap(c->ports.slots, previous);
    eventf(c, "active", "slot=%d sequence=%" PRIu32 " sha256=%s name=%s version=%s", slot, info->sequence,
           m->sha256_hex, m->name, m->version);
    return MF_OK;
}

static size_t report_capacity(const mf_config *cfg)
{
    size_t n = 1024; /* everything but the capabilities' lists, with room to spare */
    for (size_t i = 0; i < cfg->capabilities.operator_count; i++) n += mf_json_string_size(cfg->capabilities.operators[i]) + 1;
    for (size_t i = 0; i < cfg->capabilities.delegate_count; i++) n += mf_json_string_size(cfg->capabilities.delegates[i]) + 1;
    if (cfg->capabilities.runtime) n += mf_json_string_size(cfg->capabilities.runtime);
    if (cfg->firmware_version) n += mf_json_string_size(cfg->firmware_version);
    return n;
}

/* The contract's bounds on capabilities (DESIGN.md section 2): a report the gateway would
 * refuse is a configuration mistake, caught at start. */
static int capability_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MF_CAPABILITY_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return 0;
    return 1;
}

static int capabilities_ok(const mf_capabilities *caps)
{
    if (caps->operator_count > MF_OPERATORS_MAX || caps->delegate_count > MF_DELEGATES_MAX) return 0;
    if ((caps->operator_count && !caps->operators) || (caps->delegate_count && !caps->delegates)) return 0;
    for (size_t i = 0; i < caps->operator_count; i++)
        if (!capability_name_ok(caps->operators[i])) return 0;
    for (size_t i = 0; i < caps->delegate_count; i++)
        if (!capability_name_ok(caps->delegates[i])) return 0;
    return !caps->runtime || strlen(caps->runtime) <= MF_RUNTIME_MAX;
}

mf_err mf_client_init(mf_client *c, const mf_config *cfg, const mf_ports *ports)
{
    if (!c || !cfg || !ports || !ports->http || !ports->slots || !ports->kv || !ports->identity) return MF_ERR_INVALID_ARG;
    if (!capabilities_ok(&cfg->capabilities)) return MF_ERR_INVALID_ARG;
    if (sodium_init() < 0) return MF_ERR_NO_MEMORY;
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->ports = *ports;
    c->active = -1;
    c->long_poll_ok = 1;
    c->boot_ms = mf_clock_now_ms();

    uint8_t mac[6];
    mf_err err = mf_identity_mac(ports->identity, mac);
    if (err != MF_OK) return err;
    snprintf(c->mac, sizeof c->mac, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);

    c->report_cap = report_capacity(cfg);
    c->report_buf = malloc(c->report_cap);
    if (!c->report_buf) return MF_ERR_NO_MEMORY;

    mf_slot_info info[MF_SLOT_COUNT];
    int best = mf_slot_select(ports->slots, info);
    for (int i = 0; i < MF_SLOT_COUNT; i++)
        eventf(c, "slot", "slot=%d valid=%d sequence=%" PRIu32 "%s%s", i, info[i].valid, info[i].sequence,
               info[i].valid ? "" : " why=", info[i].valid ? "" : (info[i].why ? info[i].why : "?"));
    if (best >= 0) {
        err = activate(c, best, &info[best]);
        if (err != MF_OK) return err;
    } else {
        event(c, "no_model", "no valid model slot");
    }

    size_t len = 0;
    if (mf_kv_get(ports->kv, KEY_GATEWAY, c->last_good, sizeof c->last_good - 1, &len) == MF_OK) c->last_good[len] = '\0';
    else c->last_good[0] = '\0';

    /* A model that failed before the reboot waits its backoff again: no crash loop can
     * turn into a download loop. */
    mf_failed_record fr;
    if (mf_failed_load(ports->kv, KEY_FAILED, &fr) == MF_OK) {
        memcpy(c->failed_assignment, fr.assignment, 32);
        c->failed_attempts = fr.attempts;
        c->failed_err = fr.err;
        snprintf(c->failed_detail, sizeof c->failed_detail, "%s", fr.detail);
        mf_backoff b = {cfg->retry_base_ms, cfg->retry_max_ms, fr.attempts ? fr.attempts - 1 : 0};
        c->failed_not_before_ms = c->boot_ms + mf_backoff_next(&b, mf_random());
    }
    return MF_OK;
}

void mf_client_deinit(mf_client *c)
{
    if (!c) return;
    if (c->active >= 0) mf_slots_unmap(c->ports.slots, c->active);
    c->active = -1;
    free(c->report_buf);
    c->report_buf = NULL;
}

const mf_active_model *mf_client_active(const mf_client *c) { return c->active >= 0 ? &c->model : NULL; }

/* ------------------------------------------------------------------ HTTP helpers */

static const char *base_url(mf_client *c) { return c->gateways[c->gateway_index]; }

static int body_head(void *ctx, const mf_http_head *head)
{
    mf_client *c = ctx;
    c->body_len = 0;
    c->body_overflow = 0;
    /* Refuse an oversized body before reading it. */
    if (head->status == 200 && head->content_length > (int64_t)MF_ASSIGNMENT_BODY_MAX) { c->body_overflow = 1; return 1; }
    return 0;
}

static int body_data(void *ctx, const uint8_t *data, size_t len)
{
    mf_client *c = ctx;
    if (len > MF_ASSIGNMENT_BODY_MAX - c->body_len) { c->body_overflow = 1; return 1; }
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    return 0;
}

typedef struct {
    int status;
    char etag[MF_ETAG_MAX];
    int64_t content_length;
} head_capture;

typedef struct {
    mf_client *c;
    head_capture head;
} body_ctx;

static int capture_head(void *ctx, const mf_http_head *head)
{
    body_ctx *b = ctx;
    b->head.status = head->status;
    b->head.content_length = head->content_length;
    strcpy(b->head.etag, head->etag);
    return body_head(b->c, head);
}

static int capture_body(void *ctx, const uint8_t *data, size_t len)
{
    body_ctx *b = ctx;
    return body_data(b->c, data, len);
}

static mf_err request_small(mf_client *c, const mf_http_request *req, head_capture *head)
{
    body_ctx b = {.c = c, .head = {.status = 0, .content_length = -1}};
    mf_http_sink sink = {capture_head, capture_body, &b};
    c->body_len = 0;
    c->body_overflow = 0;
    mf_err err = mf_http_perform(c->ports.http, req, &sink);
    *head = b.head;
    if (c->body_overflow) return MF_ERR_PROTOCOL;
    if (err == MF_ERR_ABORTED) return MF_ERR_PROTOCOL;
    return err;
}

/* ------------------------------------------------------------------ reports */

static mf_err report(mf_client *c, const char *state, const char *error, double progress, int with_caps)
{
    mf_json j;
    mf_json_init(&j, c->report_buf, c->report_cap);
    mf_json_begin(&j, '{');
    mf_json_key(&j, "state");
    mf_json_string(&j, state);
    if (c->active >= 0) {
        mf_json_key(&j, "sha256");
        mf_json_string(&j, c->model.sha256_hex);
        mf_json_key(&j, "model");
        mf_json_string(&j, c->model.name);
        mf_json_key(&j, "version");
        mf_json_string(&j, c->model.version);
    }
    if (error) {
        char bounded[512];
        snprintf(bounded, sizeof bounded, "%s", error);
        mf_json_key(&j, "error");
        mf_json_string(&j, bounded);
    }
    if (progress >= 0) {
        mf_json_key(&j, "progress");
        mf_json_fraction(&j, progress);
    }
    if (c->cfg->firmware_version) {
        mf_json_key(&j, "firmware");
        mf_json_string(&j, c->cfg->firmware_version);
    }
    long heap = mf_identity_free_heap(c->ports.identity);
    if (heap >= 0) {
        mf_json_key(&j, "freeHeap");
        mf_json_uint(&j, (uint64_t)heap);
    }
    mf_json_key(&j, "uptimeSeconds");
    mf_json_uint(&j, uptime_s(c));
    if (with_caps) {
        const mf_capabilities *caps = &c->cfg->capabilities;
        mf_json_key(&j, "capabilities");
        mf_json_begin(&j, '{');
        mf_json_key(&j, "operators");
        mf_json_begin(&j, '[');
        for (size_t i = 0; i < caps->operator_count; i++) mf_json_string(&j, caps->operators[i]);
        mf_json_end(&j, ']');
        mf_json_key(&j, "delegates");
        mf_json_begin(&j, '[');
        for (size_t i = 0; i < caps->delegate_count; i++) mf_json_string(&j, caps->delegates[i]);
        mf_json_end(&j, ']');
        mf_json_key(&j, "arenaBytes");
        mf_json_uint(&j, caps->arena_bytes);
        mf_json_key(&j, "slotBytes");
        uint32_t slot_bytes = mf_slot_capacity(c->ports.slots, 0);
        uint32_t other = mf_slot_capacity(c->ports.slots, 1);
        mf_json_uint(&j, other < slot_bytes ? other : slot_bytes);
        if (caps->runtime) {
            mf_json_key(&j, "runtime");
            mf_json_string(&j, caps->runtime);
        }
        mf_json_end(&j, '}');
    }
    mf_json_end(&j, '}');
    if (j.overflow) return MF_ERR_NO_MEMORY;

    char url[MF_URL_CAP];
    snprintf(url, sizeof url, "%s/v1/devices/%s/report", base_url(c), c->mac);
    mf_http_request req = {
        .method = "POST", .url = url, .range_start = -1, .bearer_token = c->cfg->device_token,
        .content_type = "application/json", .body = (const uint8_t *)j.buf, .body_len = j.len,
        .timeout_ms = c->cfg->request_timeout_ms,
    };
    head_capture head;
    mf_err err = request_small(c, &req, &head);
    c->stats.reports++;
    if (err != MF_OK) return err;
    if (head.status != 204 && head.status != 200) {
        c->stats.reports_refused++;
        eventf(c, "report_refused", "status=%d state=%s caps=%d", head.status, state, with_caps);
        return MF_ERR_HTTP_STATUS;
    }
    snprintf(c->last_state, sizeof c->last_state, "%s", state);
    snprintf(c->last_reported_sha, sizeof c->last_reported_sha, "%s", c->active >= 0 ? c->model.sha256_hex : "");
    eventf(c, "report", "state=%s%s%s", state, error ? " error=" : "", error ? error : "");
    return MF_OK;
}

/* Best effort: a report that does not arrive is repeated by the next state change. */
static void report_state(mf_client *c, const char *state, const char *error, double progress)
{
    (void)report(c, state, error, progress, 0);
}

/* After boot: what runs, and what the firmware can run. A gateway that refuses the
 * capabilities (older gateways bound reports to 4 KiB) still gets the state. */
static mf_err boot_report(mf_client *c)
{
    const char *state = c->active >= 0 ? "installed" : "idle";
    const char *error = c->active >= 0 ? NULL : "no_model: no valid model slot";
    mf_err err = report(c, state, error, -1, 1);
    if (err == MF_ERR_HTTP_STATUS) {
        err = report(c, state, error, -1, 0);
        if (err == MF_OK) c->boot_reported = 1;
        return err;
    }
    if (err == MF_OK) {
        c->boot_reported = 1;
        c->caps_accepted = 1;
    }
    return err;
}

/* ------------------------------------------------------------------ gateways */

static void build_gateway_list(mf_client *c)
{
    mf_gateway_candidate cands[MF_GATEWAYS_MAX];
    size_t n = 0;
    if (c->cfg->discovery && c->ports.discovery) {
        c->stats.discoveries++;
        if (mf_discovery_browse(c->ports.discovery, c->cfg->service, c->cfg->discovery_timeout_ms, cands,
                                MF_GATEWAYS_MAX, &n) != MF_OK)
            n = 0;
        eventf(c, "discovery", "found=%zu", n);
    }
    mf_gateway_list list;
    mf_gateway_order(cands, n, c->last_good, c->cfg->fallback_url, mf_random(), &list);
    c->gateway_count = list.count;
    for (size_t i = 0; i < list.count; i++) strcpy(c->gateways[i], list.url[i]);
    c->gateway_index = 0;
    c->have_gateways = list.count > 0;
    c->consecutive_failures = 0;
    if (list.count) eventf(c, "gateways", "first=%s count=%zu", list.url[0], list.count);
}

static void gateway_answered(mf_client *c)
{
    c->consecutive_failures = 0;
    c->backoff_failures = 0;
    if (strcmp(c->last_good, base_url(c)) != 0) {
        snprintf(c->last_good, sizeof c->last_good, "%s", base_url(c));
        (void)mf_kv_set(c->ports.kv, KEY_GATEWAY, c->last_good, strlen(c->last_good));
    }
}

/* A failed exchange with the gateway: back off; after a few in a row, the next gateway in
 * the list, and after the whole list, discovery again. */
static uint32_t gateway_failed(mf_client *c)
{
    c->stats.polls_failed++;
    if (++c->consecutive_failures >= c->cfg->failures_before_switch) {
        c->consecutive_failures = 0;
        if (++c->gateway_index >= c->gateway_count) c->have_gateways = 0;
    }
    mf_backoff b = {c->cfg->backoff_base_ms, c->cfg->backoff_max_ms, c->backoff_failures++};
    return mf_backoff_next(&b, mf_random());
}

/* ------------------------------------------------------------------ failures of a model */

/* The failure is about the assignment the gateway names now (same fingerprint). */
static int failed_is_current(mf_client *c)
{
    return c->failed_attempts > 0 && memcmp(c->failed_assignment, c->assignment_fingerprint, 32) == 0;
}

static int failed_and_waiting(mf_client *c)
{
    return failed_is_current(c) && mf_clock_now_ms() < c->failed_not_before_ms;
}

/* What failed, why, and until when the device waits: the report's error and the events. */
static void failure_text(mf_client *c, char *out, size_t cap)
{
    uint64_t now = mf_clock_now_ms();
    uint64_t left_s = c->failed_not_before_ms > now ? (c->failed_not_before_ms - now + 999) / 1000 : 0;
    uint64_t until_s = (c->failed_not_before_ms - c->boot_ms + 999) / 1000;
    snprintf(out, cap, "%s: %s %s (%s); next try in %" PRIu64 " s, at uptime %" PRIu64 " s, or when the assignment changes",
             mf_err_code((mf_err)c->failed_err), c->assignment.name, c->assignment.version, c->failed_detail, left_s,
             until_s);
}

static void report_failure(mf_client *c)
{
    char error[400];
    failure_text(c, error, sizeof error);
    if (report(c, "failed", error, -1, 0) == MF_OK) c->failed_reported = 1;
}

static void record_model_failure(mf_client *c, mf_err why, const char *detail)
{
    if (!failed_is_current(c)) c->failed_attempts = 0;
    memcpy(c->failed_assignment, c->assignment_fingerprint, 32);
    c->failed_attempts++;
    c->failed_err = why;
    snprintf(c->failed_detail, sizeof c->failed_detail, "%s", detail ? detail : mf_err_code(why));
    c->failed_reported = 0;
    mf_backoff b = {c->cfg->retry_base_ms, c->cfg->retry_max_ms, c->failed_attempts - 1};
    c->failed_not_before_ms = mf_clock_now_ms() + mf_backoff_next(&b, mf_random());
    mf_failed_record fr;
    memset(&fr, 0, sizeof fr);
    memcpy(fr.assignment, c->failed_assignment, 32);
    fr.attempts = c->failed_attempts;
    fr.err = (uint8_t)why;
    snprintf(fr.detail, sizeof fr.detail, "%s", c->failed_detail);
    (void)mf_failed_save(c->ports.kv, KEY_FAILED, &fr);
    c->stats.verify_failures++;
    char error[400];
    failure_text(c, error, sizeof error);
    event(c, "failed", error);
    report_failure(c);
}

static void clear_model_failure(mf_client *c)
{
    if (c->failed_attempts == 0) return;
    c->failed_attempts = 0;
    memset(c->failed_assignment, 0, 32);
    (void)mf_kv_erase(c->ports.kv, KEY_FAILED);
}

/* Skipping a failed assignment until its backoff ends: say so, and report it once a boot. */
static void wait_out_failure(mf_client *c)
{
    char detail[256];
    uint64_t now = mf_clock_now_ms();
    snprintf(detail, sizeof detail, "sha256=%s version=%s attempts=%" PRIu32 " retry_in_s=%" PRIu64 " until_uptime_s=%" PRIu64,
             c->assignment.sha256_hex, c->assignment.version, c->failed_attempts,
             (c->failed_not_before_ms - now + 999) / 1000, (c->failed_not_before_ms - c->boot_ms + 999) / 1000);
    event(c, "waiting", detail);
    if (!c->failed_reported) report_failure(c);
}

/* ------------------------------------------------------------------ download */

typedef struct {
    mf_client *c;
    int slot;
    uint64_t size;
    uint64_t offset;          /* bytes in the slot and in the hash */
    uint64_t saved;           /* what the progress record says */
    int asked_range;
    mf_err err;               /* why a callback aborted */
    crypto_hash_sha256_state hash;
    mf_progress progress;
} download_ctx;

static mf_err save_progress(download_ctx *d, uint64_t written)
{
    d->progress.written = (uint32_t)written;
    mf_err err = mf_progress_save(d->c->ports.kv, KEY_PROGRESS, &d->progress);
    if (err == MF_OK) d->saved = written;
    if (err == MF_OK && written > 0) eventf(d->c, "progress", "offset=%" PRIu64 " of %" PRIu64, written, d->size);
    return err;
}

static int download_head(void *ctx, const mf_http_head *head)
{
    download_ctx *d = ctx;
    if (head->status == 206 && d->asked_range) {
        if (head->range_start != (int64_t)d->offset || head->range_total != (int64_t)d->size ||
            head->range_end != (int64_t)d->size - 1) {
            d->err = MF_ERR_PROTOCOL;
            return 1;
        }
        return 0;
    }
    if (head->status == 200) {
        if (head->content_length >= 0 && (uint64_t)head->content_length != d->size) {
            d->err = MF_ERR_SIZE_MISMATCH;
            return 1;
        }
        if (d->offset > 0) {
            /* A 200 to a Range request is the whole artifact: start over, and say so on
             * storage first so a power cut cannot resume on top of rewritten sectors. */
            d->c->stats.range_restarts++;
            d->offset = 0;
            crypto_hash_sha256_init(&d->hash);
            mf_err err = save_progress(d, 0);
            if (err != MF_OK) { d->err = err; return 1; }
        }
        return 0;
    }
    d->err = head->status == 416 ? MF_ERR_SIZE_MISMATCH : MF_ERR_HTTP_STATUS;
    return 1;
}

static int download_body(void *ctx, const uint8_t *data, size_t len)
{
    download_ctx *d = ctx;
    mf_client *c = d->c;
    if (len > d->size - d->offset) { d->err = MF_ERR_SIZE_MISMATCH; return 1; }
    c->stats.bytes_received += len;
    while (len > 0) {
        uint32_t off = (uint32_t)d->offset;
        if (off % MF_FLASH_SECTOR == 0) {
            mf_err err = mf_slots_erase(c->ports.slots, d->slot, off, MF_FLASH_SECTOR);
            if (err != MF_OK) { d->err = err; return 1; }
        }
        size_t n = MF_FLASH_SECTOR - off % MF_FLASH_SECTOR;
        if (n > len) n = len;
        mf_err err = mf_slots_write(c->ports.slots, d->slot, off, data, n);
        if (err != MF_OK) { d->err = err; return 1; }
        crypto_hash_sha256_update(&d->hash, data, n);
        d->offset += n;
        data += n;
        len -= n;
        uint64_t step = d->offset / PROGRESS_STEP * PROGRESS_STEP;
        if (step > d->saved && step < d->size) {
            err = save_progress(d, step);
            if (err != MF_OK) { d->err = err; return 1; }
        }
    }
    return 0;
}

/* Downloads the assignment's bytes into `slot`, resuming when the progress record is for
 * the same artifact and slot. On MF_OK the slot holds exactly `size` bytes whose sha256 is
 * the assigned one. */
static mf_err download(mf_client *c, int slot)
{
    download_ctx d;
    memset(&d, 0, sizeof d);
    d.c = c;
    d.slot = slot;
    d.size = c->assignment.size;

    mf_progress p;
    int resume = mf_progress_load(c->ports.kv, KEY_PROGRESS, &p) == MF_OK && p.slot == slot &&
                 memcmp(p.sha256, c->assignment.sha256, 32) == 0 && p.size == d.size && p.written < d.size &&
                 p.written % MF_FLASH_SECTOR == 0;
    crypto_hash_sha256_init(&d.hash);
    if (resume) {
        d.progress = p;
        d.saved = p.written;
        /* Rebuild the hash from what is in flash: it is what the download continues. */
        uint8_t buf[512];
        for (uint32_t off = 0; off < p.written;) {
            uint32_t n = p.written - off < sizeof buf ? p.written - off : (uint32_t)sizeof buf;
            mf_err err = mf_slots_read(c->ports.slots, slot, off, buf, n);
            if (err != MF_OK) return err;
            crypto_hash_sha256_update(&d.hash, buf, n);
            off += n;
        }
        d.offset = p.written;
        eventf(c, "resume", "slot=%d offset=%" PRIu32 " of %" PRIu64, slot, p.written, d.size);
    } else {
        /* The slot stops being valid before any of its bytes change. */
        mf_err err = mf_slot_invalidate(c->ports.slots, slot);
        if (err != MF_OK) return err;
        memset(&d.progress, 0, sizeof d.progress);
        d.progress.slot = (uint8_t)slot;
        memcpy(d.progress.sha256, c->assignment.sha256, 32);
        d.progress.size = (uint32_t)d.size;
        err = save_progress(&d, 0);
        if (err != MF_OK) return err;
        eventf(c, "download", "slot=%d size=%" PRIu64 " sha256=%s", slot, d.size, c->assignment.sha256_hex);
    }
    report_state(c, "downloading", NULL, (double)d.offset / (double)d.size);

    char url[MF_URL_CAP + 128];
    if (c->assignment.url[0] == '/') snprintf(url, sizeof url, "%s%s", base_url(c), c->assignment.url);
    else snprintf(url, sizeof url, "%s", c->assignment.url);
    char if_range[70];
    snprintf(if_range, sizeof if_range, "\"%s\"", c->assignment.sha256_hex);
    d.asked_range = d.offset > 0;
    mf_http_request req = {
        .method = "GET", .url = url, .range_start = d.asked_range ? (int64_t)d.offset : -1,
        .if_range = d.asked_range ? if_range : NULL, .bearer_token = c->cfg->device_token,
        .timeout_ms = c->cfg->request_timeout_ms + (uint32_t)(d.size / 1024), /* >= 1 KiB/ms of slack */
    };
    c->stats.downloads++;
    if (d.asked_range) c->stats.range_requests++;
    mf_http_sink sink = {download_head, download_body, &d};
    mf_err err = mf_http_perform(c->ports.http, &req, &sink);
    if (err == MF_ERR_ABORTED) err = d.err != MF_OK ? d.err : MF_ERR_PROTOCOL;
    if (err == MF_ERR_POWER_LOST || err == MF_ERR_IO) return err;
    if (err != MF_OK) {
        /* A drop keeps what arrived: the next attempt resumes from the last whole sector. */
        uint64_t keep = d.offset / MF_FLASH_SECTOR * MF_FLASH_SECTOR;
        if (err == MF_ERR_NETWORK && keep > d.saved && keep < d.size) {
            mf_err e2 = save_progress(&d, keep);
            if (e2 == MF_ERR_POWER_LOST || e2 == MF_ERR_IO) return e2;
        }
        if (err == MF_ERR_NETWORK || err == MF_ERR_HTTP_STATUS) return err;
        /* Anything else breaks the contract: the next attempt starts over. */
        (void)mf_kv_erase(c->ports.kv, KEY_PROGRESS);
        return err;
    }
    if (d.offset != d.size) {
        (void)mf_kv_erase(c->ports.kv, KEY_PROGRESS);
        return MF_ERR_SIZE_MISMATCH;
    }
    uint8_t digest[32];
    crypto_hash_sha256_final(&d.hash, digest);
    if (memcmp(digest, c->assignment.sha256, 32) != 0) {
        (void)mf_kv_erase(c->ports.kv, KEY_PROGRESS);
        return MF_ERR_DIGEST_MISMATCH;
    }
    return MF_OK;
}

/* ------------------------------------------------------------------ update */

static mf_err update(mf_client *c, uint32_t *delay)
{
    int slot = c->active == 0 ? 1 : 0; /* never the active one */
    uint32_t capacity = mf_slot_capacity(c->ports.slots, slot);
    const mf_assignment *a = &c->assignment;
    mf_err err = mf_verify_assignment(&(mf_trust){c->cfg->trusted_keys, c->cfg->trusted_key_count}, a);
    if (err != MF_OK) {
        record_model_failure(c, err, "before download");
        return err;
    }
    if (c->assignment.size > capacity) {
        char why[80];
        snprintf(why, sizeof why, "%" PRIu64 " bytes, the slot holds %" PRIu32, c->assignment.size, capacity);
        record_model_failure(c, MF_ERR_TOO_LARGE, why);
        return MF_ERR_TOO_LARGE;
    }

    err = download(c, slot);
    if (err == MF_ERR_POWER_LOST || err == MF_ERR_IO) return err;
    if (err == MF_ERR_NETWORK || err == MF_ERR_HTTP_STATUS || err == MF_ERR_PROTOCOL) {
        /* The gateway's fault, not the model's: back off as for any failed exchange. */
        *delay = gateway_failed(c);
        eventf(c, "download_interrupted", "%s", mf_err_code(err));
        return err;
    }
    if (err != MF_OK) {
        record_model_failure(c, err, "download");
        return err;
    }

    report_state(c, "verifying", NULL, 1.0);
    uint8_t head[MF_PROGRAM_HEAD_BYTES];
    size_t head_len = a->size < sizeof head ? (size_t)a->size : sizeof head;
    err = mf_slots_read(c->ports.slots, slot, 0, head, head_len);
    if (err != MF_OK) return err;
    const char *why = mf_executorch_check(head, head_len, a->size);
    if (why) {
        (void)mf_kv_erase(c->ports.kv, KEY_PROGRESS);
        record_model_failure(c, MF_ERR_FORMAT, why);
        return MF_ERR_FORMAT;
    }

    /* The header sector may hold part of a header from a commit a power cut interrupted
     * (a resumed download does not erase it again): flash must be erased to be written. */
    err = mf_slot_invalidate(c->ports.slots, slot);
    if (err != MF_OK) return err;
    uint32_t sequence = c->active >= 0 ? c->model.sequence + 1 : 1;
    err = mf_slot_commit(c->ports.slots, slot, sequence, (uint32_t)a->size, a->sha256, a->name, a->version);
    if (err != MF_OK) return err;
    /* Read back what boot would read: the slot must now be the one boot selects. */
    mf_slot_info info;
    err = mf_slot_inspect(c->ports.slots, slot, &info);
    if (err != MF_OK) return err;
    if (!info.valid) {
        record_model_failure(c, MF_ERR_IO, info.why);
        return MF_ERR_IO;
    }
    (void)mf_kv_erase(c->ports.kv, KEY_PROGRESS);
    err = activate(c, slot, &info);
    if (err != MF_OK) return err;
    clear_model_failure(c);
    report_state(c, "installed", NULL, -1);
    return MF_OK;
}

/* ------------------------------------------------------------------ the cycle */

static uint32_t next_poll_delay(mf_client *c)
{
    uint32_t interval = c->have_assignment ? c->assignment.poll_interval_s : c->cfg->poll_interval_s;
    uint32_t jitter = c->have_assignment ? c->assignment.poll_jitter_s : c->cfg->poll_jitter_s;
    return mf_poll_delay_ms(interval, jitter, mf_random());
}

/* Right after an answer, with long polls: the next poll waits at the gateway instead of
 * here (a short random pause spreads a fleet's reconnects). */
static uint32_t long_poll_delay(mf_client *c)
{
    if (c->cfg->long_poll_s == 0 || !c->long_poll_ok) return next_poll_delay(c);
    return mf_random() % 1000;
}

static void keep_assignment(mf_client *c, const mf_assignment *a, const char *etag)
{
    c->assignment = *a;
    mf_assignment_fingerprint(a, c->assignment_fingerprint);
    c->have_assignment = 1;
    snprintf(c->etag, sizeof c->etag, "%s", etag);
    /* The gateway assigns something else than what failed (a signed build of the same
     * bytes, another version): try it now rather than after the failure's backoff. */
    if (c->failed_attempts > 0 && !failed_is_current(c)) clear_model_failure(c);
}

mf_err mf_client_step(mf_client *c, uint32_t *next_delay_ms)
{
    uint32_t scratch;
    uint32_t *delay = next_delay_ms ? next_delay_ms : &scratch;
    if (c->halted) { *delay = UINT32_MAX; return MF_ERR_POWER_LOST; }

    if (!c->have_gateways) build_gateway_list(c);
    if (!c->have_gateways) {
        mf_backoff b = {c->cfg->backoff_base_ms, c->cfg->backoff_max_ms, c->backoff_failures++};
        *delay = mf_backoff_next(&b, mf_random());
        event(c, "no_gateway", "discovery found none and no fallback URL is configured");
        return MF_ERR_NO_GATEWAY;
    }

    mf_err err;
    if (!c->boot_reported) {
        err = boot_report(c);
        if (err == MF_ERR_NETWORK) { *delay = gateway_failed(c); return err; }
    }

    /* Long-poll only when there is nothing to do but wait for a change. */
    int idle = c->have_assignment && c->etag[0] &&
               (memcmp(c->assignment.sha256, c->model.sha256, 32) == 0 && c->active >= 0 ? 1 : failed_and_waiting(c));
    int wait = idle && c->cfg->long_poll_s > 0 && c->long_poll_ok;
    char url[MF_URL_CAP];
    if (wait) snprintf(url, sizeof url, "%s/v1/devices/%s/model?wait=%" PRIu32, base_url(c), c->mac, c->cfg->long_poll_s);
    else snprintf(url, sizeof url, "%s/v1/devices/%s/model", base_url(c), c->mac);
    mf_http_request req = {
        .method = "GET", .url = url, .range_start = -1,
        .if_none_match = c->have_assignment && c->etag[0] ? c->etag : NULL,
        .bearer_token = c->cfg->device_token,
        .timeout_ms = c->cfg->request_timeout_ms + (wait ? c->cfg->long_poll_s * 1000 : 0),
    };
    head_capture head;
    uint64_t started = mf_clock_now_ms();
    c->stats.polls++;
    if (wait) c->stats.long_polls++;
    err = request_small(c, &req, &head);
    if (err != MF_OK) {
        eventf(c, "poll_failed", "%s gateway=%s", mf_err_code(err), base_url(c));
        *delay = gateway_failed(c);
        return err;
    }

    if (head.status == 304 && c->have_assignment) {
        c->stats.polls_not_modified++;
        gateway_answered(c);
        uint64_t held = mf_clock_now_ms() - started;
        /* A gateway that answers a long poll at once does not hold polls: sleep instead. */
        if (wait && held * 2 < (uint64_t)c->cfg->long_poll_s * 1000) *delay = next_poll_delay(c);
        else *delay = wait ? long_poll_delay(c) : next_poll_delay(c);
        if (!idle || failed_and_waiting(c)) goto act; /* an unfinished update continues, a failure says it waits */
        return MF_OK;
    }
    if (head.status == 404) {
        gateway_answered(c);
        c->have_assignment = 0;
        c->etag[0] = '\0';
        event(c, "no_assignment", NULL);
        *delay = next_poll_delay(c);
        return MF_ERR_NO_ASSIGNMENT;
    }
    if (head.status == 400 && wait) {
        /* This gateway refuses our wait= (its maximum is lower): plain polls from now on. */
        c->long_poll_ok = 0;
        *delay = 0;
        return MF_ERR_HTTP_STATUS;
    }
    if (head.status != 200) {
        eventf(c, "poll_status", "status=%d", head.status);
        *delay = gateway_failed(c);
        return MF_ERR_HTTP_STATUS;
    }

    mf_assignment a;
    char why[96];
    err = mf_assignment_parse(c->body, c->body_len, &a, why, sizeof why);
    if (err == MF_OK && strcmp(a.device, c->mac) != 0) { err = MF_ERR_PROTOCOL; snprintf(why, sizeof why, "device"); }
    if (err != MF_OK) {
        eventf(c, "bad_assignment", "%s", why);
        *delay = gateway_failed(c);
        return err;
    }
    gateway_answered(c);
    keep_assignment(c, &a, head.etag);
    *delay = long_poll_delay(c);

act:
    if (c->active >= 0 && memcmp(c->assignment.sha256, c->model.sha256, 32) == 0) {
        clear_model_failure(c);
        if (strcmp(c->last_state, "installed") != 0 || strcmp(c->last_reported_sha, c->model.sha256_hex) != 0)
            report_state(c, "installed", NULL, -1);
        return MF_OK;
    }
    if (failed_and_waiting(c)) {
        wait_out_failure(c);
        uint64_t left = c->failed_not_before_ms - mf_clock_now_ms();
        if (left < *delay) *delay = (uint32_t)left;
        return MF_OK;
    }
    err = update(c, delay);
    if (err == MF_ERR_POWER_LOST || err == MF_ERR_IO) {
        c->halted = err == MF_ERR_POWER_LOST;
        *delay = c->halted ? UINT32_MAX : gateway_failed(c);
        return err;
    }
    if (err == MF_OK) *delay = long_poll_delay(c);
    else if (err != MF_ERR_NETWORK && err != MF_ERR_HTTP_STATUS && err != MF_ERR_PROTOCOL) {
        uint64_t left = c->failed_not_before_ms - mf_clock_now_ms();
        uint32_t poll = next_poll_delay(c);
        *delay = left < poll ? (uint32_t)left : poll;
    }
    return err;
}

void mf_client_run(mf_client *c)
{
    for (;;) {
        uint32_t delay = 0;
        if (mf_client_step(c, &delay) == MF_ERR_POWER_LOST) return;
        mf_clock_sleep_ms(delay);
    }
}
