/* From an assignment to a running model: CHECK (signature policy and size, before a byte
 * is fetched), VERIFY (the ExecuTorch header of what arrived), COMMIT (the slot header, its
 * CRC last: the commit point) and ACTIVATE (map the slot, hand it to the application, which
 * is to confirm it: mf_confirm.c). */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_executorch.h"
#include "mf_records.h"
#include "mf_slot.h"
#include "mf_verify.h"

int mf_free_slot(const mf_client *c) { return c->active == 0 ? 1 : 0; }

void mf_remember_slot(mf_client *c, int slot, const mf_slot_info *info)
{
    mf_active_model *m = &c->models[slot];
    memset(m, 0, sizeof *m);
    m->slot = slot;
    m->size = info->size;
    m->sequence = info->sequence;
    memcpy(m->sha256, info->sha256, 32);
    mf_hex_encode(info->sha256, 32, m->sha256_hex);
    strcpy(m->name, info->name);
    strcpy(m->version, info->version);
    c->valid[slot] = 1;
}

static const char *status_name(mf_model_status status)
{
    return status == MF_MODEL_PENDING ? "pending" : status == MF_MODEL_FAILED ? "failed" : "confirmed";
}

mf_err mf_activate(mf_client *c, int slot, mf_model_status status)
{
    mf_active_model *m = &c->models[slot];
    if (!c->mapped[slot]) {
        const uint8_t *data = NULL;
        mf_err err = mf_slots_map(c->ports.slots, slot, m->size, &data);
        if (err != MF_OK) return err;
        m->data = data;
        c->mapped[slot] = 1;
    }
    m->status = status;
    c->active = slot;
    c->stats.activations++;
    mf_eventf(c, "active", "slot=%d sequence=%" PRIu32 " sha256=%s name=%s version=%s status=%s", slot, m->sequence,
              m->sha256_hex, m->name, m->version, status_name(status));
    if (c->cfg->on_activate) c->cfg->on_activate(c->cfg->ctx, m);
    return MF_OK;
}

/* A model refused for what it is: recorded, reported, and the device waits. */
static void refuse(mf_client *c, mf_step *s, mf_err why, const char *detail)
{
    mf_failure_record(c, why, detail);
    mf_step_idle(s, why, mf_failure_delay(c, mf_next_poll_delay(c)));
}

int mf_same_origin(mf_client *c, const char *url)
{
    const char *gw = mf_gateway_url(c), *host = strstr(gw, "://");
    size_t n = host ? (size_t)(host + 3 - gw) + strcspn(host + 3, "/") : strlen(gw);
    return url[0] == '/' || (strncmp(url, gw, n) == 0 && url[n] == '/');
}

mf_err mf_check(mf_client *c, const mf_assignment *a, char *why, size_t cap)
{
    snprintf(why, cap, "before download");
    mf_err err = mf_verify_assignment(&(mf_trust){c->cfg->trusted_keys, c->cfg->trusted_key_count}, a);
    if (err != MF_OK) return err;
    /* A sequence counts only under a signature a trusted key made. */
    uint64_t floor = c->cfg->trusted_key_count ? mf_floor_load(c->ports.kv, a->name) : 0;
    if (a->seq < floor) {
        snprintf(why, cap, "signed sequence %" PRIu64 ", below %" PRIu64 " that this device confirmed", a->seq, floor);
        return MF_ERR_ROLLBACK;
    }
    if (!mf_same_origin(c, a->url)) {
        snprintf(why, cap, "%.80s", a->url);
        return MF_ERR_CROSS_ORIGIN;
    }
    uint32_t capacity = mf_slot_capacity(c->ports.slots, mf_free_slot(c));
    if (a->size > capacity) {
        snprintf(why, cap, "%" PRIu64 " bytes, the slot holds %" PRIu32, a->size, capacity);
        return MF_ERR_TOO_LARGE;
    }
    return MF_OK;
}

void mf_run_check(mf_client *c, mf_step *s)
{
    char why[MF_FAILED_DETAIL_MAX + 1];
    mf_err err = mf_check(c, &c->assignment.model, why, sizeof why);
    if (err != MF_OK) {
        refuse(c, s, err, why);
        return;
    }
    mf_step_go(s);
}

void mf_run_verify(mf_client *c, mf_step *s)
{
    const mf_assignment *a = &c->assignment.model;
    mf_report_state(c, "verifying", NULL, 1.0);
    uint8_t head[MF_PROGRAM_HEAD_BYTES];
    size_t head_len = a->size < sizeof head ? (size_t)a->size : sizeof head;
    mf_err err = mf_slots_read(c->ports.slots, mf_free_slot(c), 0, head, head_len);
    if (err != MF_OK) {
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }
    const char *why = mf_executorch_check(head, head_len, a->size);
    if (why) {
        (void)mf_kv_erase(c->ports.kv, MF_KEY_PROGRESS);
        refuse(c, s, MF_ERR_FORMAT, why);
        return;
    }
    mf_step_go(s);
}

/* Above any sequence this device wrote (the key-value store remembers the highest) or
 * that a slot's header holds: a slot unreadable at one boot cannot win at a later one. */
static uint32_t next_sequence(mf_client *c)
{
    uint32_t highest = mf_sequence_load(c->ports.kv, MF_KEY_SEQUENCE);
    for (int i = 0; i < MF_SLOT_COUNT; i++) {
        uint32_t seq = mf_slot_sequence(c->ports.slots, i);
        if (seq > highest) highest = seq;
    }
    return highest + 1;
}

void mf_run_commit(mf_client *c, mf_step *s)
{
    const mf_assignment *a = &c->assignment.model;
    int slot = mf_free_slot(c);
    /* The header sector may hold part of a header from a commit a power cut interrupted
     * (a resumed download does not erase it again): flash must be erased to be written. */
    mf_err err = mf_slot_invalidate(c->ports.slots, slot);
    uint32_t sequence = next_sequence(c);
    if (err == MF_OK) err = mf_sequence_save(c->ports.kv, MF_KEY_SEQUENCE, sequence);
    /* Pending before the commit point: a committed model is never taken for confirmed. */
    c->confirm.boots = 0;
    c->confirm.seq = a->seq;
    c->confirm.seq_counts = c->cfg->trusted_key_count > 0;
    mf_pending_record r = mf_pending_of(c, slot, sequence, a->sha256, MF_CONFIRM_PENDING);
    if (err == MF_OK) err = mf_pending_save(c->ports.kv, MF_KEY_PENDING, &r);
    if (err == MF_OK) err = mf_slot_commit(c->ports.slots, slot, sequence, (uint32_t)a->size, a->sha256, a->name, a->version);
    if (err != MF_OK) {
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }
    mf_step_go(s);
}

void mf_run_activate(mf_client *c, mf_step *s)
{
    int slot = mf_free_slot(c);
    /* Read back what boot would read: the slot must now be the one boot selects. */
    mf_slot_info info;
    mf_err err = mf_slot_inspect(c->ports.slots, slot, &info);
    if (err == MF_OK && !info.valid) {
        refuse(c, s, MF_ERR_IO, info.why);
        return;
    }
    if (err == MF_OK) {
        (void)mf_kv_erase(c->ports.kv, MF_KEY_PROGRESS);
        mf_remember_slot(c, slot, &info);
        mf_confirm_start(c, 0);
        err = mf_activate(c, slot, MF_MODEL_PENDING);
    }
    if (err != MF_OK) {
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }
    /* Running it, not yet confirmed: installed once the application says it works. */
    mf_report_state(c, "verifying", NULL, 1.0);
    mf_step_go(s);
}
