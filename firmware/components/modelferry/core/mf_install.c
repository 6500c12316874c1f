/* From an assignment to a running model: CHECK (signature policy and size, before a byte
 * is fetched), VERIFY (the ExecuTorch header of what arrived), COMMIT (the slot header, its
 * CRC last: the commit point) and ACTIVATE (map the slot, hand it to the application). */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_executorch.h"
#include "mf_slot.h"
#include "mf_verify.h"

int mf_free_slot(const mf_client *c) { return c->active == 0 ? 1 : 0; }

mf_err mf_activate(mf_client *c, int slot, const mf_slot_info *info)
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
    mf_eventf(c, "active", "slot=%d sequence=%" PRIu32 " sha256=%s name=%s version=%s", slot, info->sequence,
              m->sha256_hex, m->name, m->version);
    return MF_OK;
}

/* A model refused for what it is: recorded, reported, and the device waits. */
static void refuse(mf_client *c, mf_step *s, mf_err why, const char *detail)
{
    mf_failure_record(c, why, detail);
    mf_step_idle(s, why, mf_failure_delay(c, mf_next_poll_delay(c)));
}

void mf_run_check(mf_client *c, mf_step *s)
{
    const mf_assignment *a = &c->assignment.model;
    mf_err err = mf_verify_assignment(&(mf_trust){c->cfg->trusted_keys, c->cfg->trusted_key_count}, a);
    if (err != MF_OK) {
        refuse(c, s, err, "before download");
        return;
    }
    uint32_t capacity = mf_slot_capacity(c->ports.slots, mf_free_slot(c));
    if (a->size > capacity) {
        char why[80];
        snprintf(why, sizeof why, "%" PRIu64 " bytes, the slot holds %" PRIu32, a->size, capacity);
        refuse(c, s, MF_ERR_TOO_LARGE, why);
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

void mf_run_commit(mf_client *c, mf_step *s)
{
    const mf_assignment *a = &c->assignment.model;
    int slot = mf_free_slot(c);
    /* The header sector may hold part of a header from a commit a power cut interrupted
     * (a resumed download does not erase it again): flash must be erased to be written. */
    mf_err err = mf_slot_invalidate(c->ports.slots, slot);
    uint32_t sequence = c->active >= 0 ? c->model.sequence + 1 : 1;
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
        err = mf_activate(c, slot, &info);
    }
    if (err != MF_OK) {
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }
    mf_failure_clear(c);
    mf_report_state(c, "installed", NULL, -1);
    mf_step_idle(s, MF_OK, mf_long_poll_delay(c));
}
