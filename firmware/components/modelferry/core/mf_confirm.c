/* A model is PENDING from its activation until the application confirms it (it loaded and
 * ran) or rejects it. Unconfirmed at the confirm_boots-th boot since (a crash loop), or
 * confirm_timeout_s after its activation, or rejected, it is rolled back: the previous
 * slot, untouched since, is active again, the rejected one is invalidated, and a failed
 * record keyed on its sha256 keeps it from being fetched again before its backoff.
 *
 * The confirmation record (mf_pending_record) is written before the new slot's commit point
 * and erased at confirmation, so a committed model is never taken for confirmed by a power
 * cut; a rollback marks it ROLLING_BACK first, so a cut in the middle is finished at boot.
 * The device's first model has no previous one: unconfirmed, it stays, marked FAILED, and
 * the application is told (status MF_MODEL_FAILED). */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_records.h"
#include "mf_slot.h"

/* The application's answers may come from any task: flags set and taken atomically, the
 * reason written before its flag (release) and read after taking it (acquire). */
static void raise_flag(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELEASE); }
static int take_flag(int *flag) { return __atomic_exchange_n(flag, 0, __ATOMIC_ACQ_REL); }

void mf_client_confirm(mf_client *c) { raise_flag(&c->confirm.confirmed); }

void mf_client_reject(mf_client *c, const char *reason)
{
    snprintf(c->confirm.reason, sizeof c->confirm.reason, "%s", reason ? reason : "");
    raise_flag(&c->confirm.rejected);
}

int mf_pending(const mf_client *c) { return c->active >= 0 && c->models[c->active].status == MF_MODEL_PENDING; }

void mf_release(mf_client *c, int slot)
{
    if (slot == c->active || !c->mapped[slot]) return;
    mf_slots_unmap(c->ports.slots, slot);
    c->mapped[slot] = 0;
    c->models[slot].data = NULL;
    mf_eventf(c, "released", "slot=%d", slot);
}

void mf_confirm_requests(mf_client *c)
{
    if (mf_pending(c)) return; /* PENDING takes them */
    if (take_flag(&c->confirm.confirmed))
        for (int i = 0; i < MF_SLOT_COUNT; i++) mf_release(c, i);
    if (take_flag(&c->confirm.rejected)) mf_event(c, "reject_ignored", "no model is pending");
}

void mf_confirm_start(mf_client *c, uint32_t boots)
{
    c->confirm.boots = boots;
    c->confirm.deadline_ms = mf_now_ms(c) + (uint64_t)c->cfg->confirm_timeout_s * 1000;
    (void)take_flag(&c->confirm.confirmed);
    (void)take_flag(&c->confirm.rejected);
}

mf_pending_record mf_pending_of(const mf_client *c, int slot, uint32_t sequence, const uint8_t sha256[32],
                                mf_confirm_state state)
{
    mf_pending_record r;
    memset(&r, 0, sizeof r);
    r.slot = (uint8_t)slot;
    r.state = (uint8_t)state;
    r.sequence = sequence;
    memcpy(r.sha256, sha256, 32);
    r.boots = c->confirm.boots;
    r.seq = c->confirm.seq;
    r.seq_counts = c->confirm.seq_counts;
    return r;
}

static mf_pending_record record_of(const mf_client *c, mf_confirm_state state)
{
    const mf_active_model *m = &c->models[c->active];
    return mf_pending_of(c, m->slot, m->sequence, m->sha256, state);
}

mf_err mf_confirm_report_failed(mf_client *c, int with_caps)
{
    const mf_active_model *m = mf_client_active(c);
    char error[512];
    snprintf(error, sizeof error, "%s: %s %s (%s); no previous model to go back to: it stays active",
             mf_err_code((mf_err)c->confirm.err), m->name, m->version, c->confirm.detail);
    mf_err err = mf_report(c, "failed", error, NULL, -1, with_caps);
    if (err == MF_OK) c->confirm.reported = 1;
    return err;
}

/* The rest of a rollback once it is marked ROLLING_BACK (also at boot, after a cut). */
static mf_err finish_rollback(mf_client *c, const mf_pending_record *r)
{
    int from = r->slot, to = from == 0 ? 1 : 0;
    mf_err err = mf_failure_record_rollback(c, &c->models[from], r->attempts, (mf_err)r->err, r->detail);
    if (err == MF_OK) err = mf_slot_invalidate(c->ports.slots, from);
    if (err == MF_OK) err = mf_kv_erase(c->ports.kv, MF_KEY_PENDING);
    if (err != MF_OK) return err;
    c->valid[from] = 0;
    mf_eventf(c, "rolled_back", "from=%s to=%s why=%s: %s", c->models[from].sha256_hex, c->models[to].sha256_hex,
              mf_err_code((mf_err)r->err), r->detail);
    return mf_activate(c, to, MF_MODEL_CONFIRMED);
}

mf_err mf_roll_back(mf_client *c, mf_err why, const char *detail)
{
    int from = c->active, to = from == 0 ? 1 : 0;
    mf_pending_record r = record_of(c, c->valid[to] ? MF_CONFIRM_ROLLING_BACK : MF_CONFIRM_FAILED);
    r.err = (uint8_t)why;
    snprintf(r.detail, sizeof r.detail, "%s", detail);
    if (!c->valid[to]) {
        mf_err err = mf_pending_save(c->ports.kv, MF_KEY_PENDING, &r);
        if (err != MF_OK) return err;
        c->confirm.err = r.err;
        snprintf(c->confirm.detail, sizeof c->confirm.detail, "%s", r.detail);
        c->confirm.reported = 0;
        mf_eventf(c, "confirm_failed", "sha256=%s why=%s: %s; no previous model, it stays", c->models[from].sha256_hex,
                  mf_err_code(why), detail);
        return mf_activate(c, from, MF_MODEL_FAILED);
    }
    r.attempts = mf_failure_rollback_attempt(c, c->models[from].sha256);
    mf_err err = mf_pending_save(c->ports.kv, MF_KEY_PENDING, &r);
    return err != MF_OK ? err : finish_rollback(c, &r);
}

mf_err mf_confirm_boot(mf_client *c, int best)
{
    mf_pending_record r;
    int have = mf_pending_load(c->ports.kv, MF_KEY_PENDING, &r) == MF_OK;
    const mf_active_model *m = best >= 0 ? &c->models[best] : NULL;
    if (have && m && r.slot == best && r.sequence == m->sequence && memcmp(r.sha256, m->sha256, 32) == 0) {
        c->active = best;
        c->confirm.seq = r.seq;
        c->confirm.seq_counts = r.seq_counts;
        switch (r.state) {
        case MF_CONFIRM_PENDING: {
            uint32_t limit = c->cfg->confirm_boots ? c->cfg->confirm_boots : 1;
            c->confirm.boots = r.boots + 1;
            if (c->confirm.boots >= limit) {
                char detail[64];
                snprintf(detail, sizeof detail, "not confirmed after %" PRIu32 " boots", c->confirm.boots);
                return mf_roll_back(c, MF_ERR_NOT_CONFIRMED, detail);
            }
            r.boots = c->confirm.boots;
            mf_err err = mf_pending_save(c->ports.kv, MF_KEY_PENDING, &r);
            if (err != MF_OK) return err;
            mf_confirm_start(c, r.boots);
            c->state = MF_STATE_PENDING;
            return mf_activate(c, best, MF_MODEL_PENDING);
        }
        case MF_CONFIRM_ROLLING_BACK:
            return finish_rollback(c, &r);
        case MF_CONFIRM_FAILED:
            c->confirm.err = r.err;
            snprintf(c->confirm.detail, sizeof c->confirm.detail, "%s", r.detail);
            return mf_activate(c, best, MF_MODEL_FAILED);
        }
    }
    /* A record of another slot: its commit never happened, or its rollback is done. */
    if (have) {
        mf_err err = mf_kv_erase(c->ports.kv, MF_KEY_PENDING);
        if (err != MF_OK) return err;
    }
    return m ? mf_activate(c, best, MF_MODEL_CONFIRMED) : MF_OK;
}

void mf_run_pending(mf_client *c, mf_step *s)
{
    uint64_t now = mf_now_ms(c);
    if (take_flag(&c->confirm.rejected)) {
        c->confirm.err = MF_ERR_REJECTED;
        snprintf(c->confirm.detail, sizeof c->confirm.detail, "the application: %.78s", c->confirm.reason);
        c->confirm.release_rejected = 1;
        mf_step_fail(s, MF_ERR_REJECTED, 0);
    } else if (take_flag(&c->confirm.confirmed)) {
        mf_step_go(s);
    } else if (now >= c->confirm.deadline_ms) {
        c->confirm.err = MF_ERR_NOT_CONFIRMED;
        snprintf(c->confirm.detail, sizeof c->confirm.detail, "not confirmed within %" PRIu32 " s",
                 c->cfg->confirm_timeout_s);
        c->confirm.release_rejected = 0;
        mf_step_fail(s, MF_ERR_NOT_CONFIRMED, 0);
    } else {
        /* Cheap: the application's answer is taken within a second. */
        uint64_t left = c->confirm.deadline_ms - now;
        mf_step_idle(s, MF_OK, left < 1000 ? (uint32_t)left : 1000);
    }
}

/* The model is confirmed: its signed sequence becomes the lowest this device installs under
 * its name (written before the confirmation record goes, so a cut cannot lose it). */
void mf_run_confirm(mf_client *c, mf_step *s)
{
    mf_active_model *m = &c->models[c->active];
    mf_err err = MF_OK;
    if (c->confirm.seq_counts && c->confirm.seq > mf_floor_load(c->ports.kv, m->name))
        err = mf_floor_save(c->ports.kv, m->name, c->confirm.seq);
    if (err == MF_OK) err = mf_kv_erase(c->ports.kv, MF_KEY_PENDING);
    if (err != MF_OK) {
        /* Try again from PENDING (a power cut halts instead). */
        raise_flag(&c->confirm.confirmed);
        mf_step_fail(s, err, 1000);
        return;
    }
    m->status = MF_MODEL_CONFIRMED;
    for (int i = 0; i < MF_SLOT_COUNT; i++) mf_release(c, i);
    mf_failure_clear(c);
    mf_eventf(c, "confirmed", "slot=%d sha256=%s", m->slot, m->sha256_hex);
    mf_report_state(c, "installed", NULL, -1);
    mf_step_idle(s, MF_OK, mf_long_poll_delay(c));
}

void mf_run_rollback(mf_client *c, mf_step *s)
{
    int from = c->active;
    mf_err why = (mf_err)c->confirm.err;
    mf_err err = mf_roll_back(c, why, c->confirm.detail);
    if (err != MF_OK) {
        mf_step_fail(s, err, 1000); /* storage: try again (a power cut halts instead) */
        return;
    }
    if (c->active == from) {
        (void)mf_confirm_report_failed(c, 0);
    } else {
        if (c->confirm.release_rejected) mf_release(c, from);
        (void)mf_failure_report(c, 0);
    }
    mf_step_idle(s, why, mf_next_poll_delay(c));
}
