/* DOWNLOAD from a delta (docs/design.md "Deltas"): the delta the gateway offers is applied
 * as it arrives, copies read from the active slot (memory-mapped; only ever read) and the
 * model written to the inactive slot in order, each sector erased just before it is written,
 * the sha256 of what is written computed on the way. The apply's position at a sector
 * boundary of the output is saved every MF_PROGRESS_STEP and when the transfer drops, so the
 * next attempt, after a drop or a reboot, re-hashes what is in flash and resumes the delta
 * with Range and If-Range. A delta that does not make the model's sha256 is reported and the
 * caller fetches the full artifact instead (mf_download.c). */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "mf_delta.h"
#include "mf_records.h"
#include "mf_slot.h"

typedef struct {
    mf_client *c;
    int slot;
    uint32_t size;              /* the model's */
    uint32_t delta_size;
    uint32_t start;             /* the delta offset this response begins at */
    uint32_t received;          /* delta bytes it carried */
    int asked_range;
    mf_err err;                 /* why a callback stopped the transfer */
    mf_delta d;
    crypto_hash_sha256_state hash;
    mf_delta_progress progress; /* what the key-value store holds */
    mf_delta_position boundary; /* the apply at the last sector boundary of the output */
} delta_ctx;

int mf_delta_wanted(mf_client *c, int slot)
{
    const mf_assignment *a = &c->assignment.model;
    const mf_active_model *m = mf_client_active(c);
    /* A delta elsewhere than on the gateway is not fetched: the full artifact is. */
    if (!c->cfg->deltas || !a->delta.present || !m || !c->mapped[m->slot] || !mf_same_origin(c, a->delta.url)) return 0;
    if (memcmp(m->sha256, a->delta.from, 32) != 0 || memcmp(c->delta_refused, a->delta.sha256, 32) == 0) return 0;
    if (a->size > UINT32_MAX || a->delta.size > UINT32_MAX) return 0;
    /* A download of the same model under way goes on where it stopped. */
    mf_progress p;
    return !(mf_progress_load(c->ports.kv, MF_KEY_PROGRESS, &p) == MF_OK && p.slot == slot &&
             memcmp(p.sha256, a->sha256, 32) == 0 && p.written > 0);
}

static mf_err save_progress(delta_ctx *x, const mf_delta_position *at)
{
    x->progress.at = *at;
    mf_err err = mf_delta_progress_save(x->c->ports.kv, MF_KEY_PROGRESS, &x->progress);
    if (err == MF_OK && at->written > 0)
        mf_eventf(x->c, "progress", "offset=%" PRIu32 " of %" PRIu32 " delta=%" PRIu32 " of %" PRIu32, at->written, x->size,
                  at->consumed, x->delta_size);
    return err;
}

/* Every piece of output the delta makes: into flash and the hash. A piece never crosses a
 * sector boundary (MF_DELTA_CHUNK divides MF_FLASH_SECTOR). */
static int delta_sink(void *ctx, const uint8_t *data, size_t len)
{
    delta_ctx *x = ctx;
    mf_client *c = x->c;
    uint32_t end = x->d.at.written;
    uint32_t off = end - (uint32_t)len;
    mf_err err = MF_OK;
    if (off % MF_FLASH_SECTOR == 0) err = mf_slots_erase(c->ports.slots, x->slot, off, MF_FLASH_SECTOR);
    if (err == MF_OK) err = mf_slots_write(c->ports.slots, x->slot, off, data, len);
    if (err == MF_OK) {
        crypto_hash_sha256_update(&x->hash, data, len);
        if (end % MF_FLASH_SECTOR == 0) {
            x->boundary = x->d.at;
            if (end % MF_PROGRESS_STEP == 0 && end < x->size && end > x->progress.at.written) err = save_progress(x, &x->d.at);
        }
    }
    if (err != MF_OK) x->err = err;
    return err != MF_OK;
}

/* From the beginning: the slot stops being valid before any of its bytes change, and the
 * progress record says a delta is under way (a download's record would be stale now). */
static mf_err start_over(delta_ctx *x)
{
    const mf_delta_offer *o = &x->c->assignment.model.delta;
    const mf_active_model *m = mf_client_active(x->c);
    crypto_hash_sha256_init(&x->hash);
    mf_delta_init(&x->d, m->data, m->size, x->size, delta_sink, x);
    x->boundary = x->d.at;
    x->start = 0;
    mf_err err = mf_slot_invalidate(x->c->ports.slots, x->slot);
    if (err != MF_OK) return err;
    memset(&x->progress, 0, sizeof x->progress);
    x->progress.slot = (uint8_t)x->slot;
    memcpy(x->progress.sha256, x->c->assignment.model.sha256, 32);
    memcpy(x->progress.delta_sha256, o->sha256, 32);
    x->progress.size = x->size;
    x->progress.delta_size = x->delta_size;
    mf_eventf(x->c, "delta", "slot=%d size=%" PRIu32 " delta=%" PRIu32 " from=%s", x->slot, x->size, x->delta_size, m->sha256_hex);
    return save_progress(x, &x->d.at);
}

/* Where an apply starts: the saved position when it is for this model, delta and slot (the
 * hash and the checksum rebuilt from what is in flash), else the beginning. */
static mf_err start(delta_ctx *x)
{
    mf_client *c = x->c;
    const mf_assignment *a = &c->assignment.model;
    const mf_active_model *m = mf_client_active(c);
    mf_delta_progress p;
    c->valid[x->slot] = 0;
    if (mf_delta_progress_load(c->ports.kv, MF_KEY_PROGRESS, &p) != MF_OK || p.slot != x->slot ||
        memcmp(p.sha256, a->sha256, 32) != 0 || memcmp(p.delta_sha256, a->delta.sha256, 32) != 0 || p.size != x->size ||
        p.delta_size != x->delta_size || p.at.written % MF_FLASH_SECTOR != 0 || p.at.written >= x->size ||
        p.at.consumed >= x->delta_size)
        return start_over(x);
    crypto_hash_sha256_init(&x->hash);
    uint32_t sum = 0;
    /* The applier's buffer is free until the apply resumes. */
    uint8_t *buf = x->d.buf;
    for (uint32_t off = 0; off < p.at.written;) {
        uint32_t n = p.at.written - off < MF_DELTA_CHUNK ? p.at.written - off : MF_DELTA_CHUNK;
        mf_err err = mf_slots_read(c->ports.slots, x->slot, off, buf, n);
        if (err != MF_OK) return err;
        crypto_hash_sha256_update(&x->hash, buf, n);
        sum = mf_delta_checksum(sum, off, buf, n);
        off += n;
    }
    if (mf_delta_resume(&x->d, m->data, m->size, x->size, &p.at, sum, delta_sink, x) != MF_OK) return start_over(x);
    x->progress = p;
    x->boundary = p.at;
    x->start = p.at.consumed;
    mf_eventf(c, "delta_resume", "slot=%d offset=%" PRIu32 " of %" PRIu32 " delta=%" PRIu32 " of %" PRIu32, x->slot, p.at.written,
              x->size, p.at.consumed, x->delta_size);
    return MF_OK;
}

static int delta_head(void *ctx, const mf_http_head *head)
{
    delta_ctx *x = ctx;
    /* The whole delta to a Range request: the apply starts over. */
    if (mf_transfer_answer(x->c, head, x->asked_range ? x->start : 0, x->delta_size, &x->err) == 1) x->err = start_over(x);
    return x->err != MF_OK;
}

static int delta_body(void *ctx, const uint8_t *data, size_t len)
{
    delta_ctx *x = ctx;
    x->c->stats.bytes_received += len;
    if (len > x->delta_size - x->start - x->received) {
        x->err = MF_ERR_SIZE_MISMATCH;
        return 1;
    }
    x->received += (uint32_t)len;
    mf_err err = mf_delta_feed(&x->d, data, len);
    if (err == MF_ERR_BAD_DELTA) x->err = err;
    return err != MF_OK;
}

static void say(char *why, size_t why_len, const char *what) { snprintf(why, why_len, "%s", what); }

mf_err mf_delta_download(mf_client *c, int slot, char *why, size_t why_len)
{
    const mf_assignment *a = &c->assignment.model;
    if (mf_auth_due(c)) {
        say(why, why_len, mf_err_code(MF_ERR_UNAUTHORIZED));
        return MF_ERR_UNAUTHORIZED;
    }
    delta_ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.slot = slot;
    x.size = (uint32_t)a->size;
    x.delta_size = (uint32_t)a->delta.size;
    mf_err err = start(&x);
    if (err != MF_OK) {
        say(why, why_len, mf_err_code(err));
        return err;
    }
    mf_report_state(c, "downloading", NULL, (double)x.d.at.written / (double)x.size);

    char url[MF_TRANSFER_URL_MAX], if_range[70];
    x.asked_range = x.start > 0;
    mf_http_request req = mf_transfer_request(c, a->delta.url, a->delta.sha256_hex, x.start, x.delta_size, url, if_range);
    mf_http_sink sink = {delta_head, delta_body, &x};
    err = mf_http_perform(c->ports.http, &req, &sink);
    if (err == MF_ERR_ABORTED) err = x.err != MF_OK ? x.err : MF_ERR_PROTOCOL;
    if (err == MF_ERR_POWER_LOST || err == MF_ERR_IO) {
        say(why, why_len, mf_err_code(err));
        return err;
    }
    if (err == MF_ERR_NETWORK || err == MF_ERR_UNAUTHORIZED) {
        /* A drop keeps what was made: the next attempt resumes from the last sector boundary
         * (after proving the device's key, when the gateway asked for it). */
        if (x.boundary.written > x.progress.at.written && x.boundary.written < x.size) {
            mf_err e2 = save_progress(&x, &x.boundary);
            if (e2 == MF_ERR_POWER_LOST || e2 == MF_ERR_IO) return e2;
        }
        say(why, why_len, mf_err_code(err));
        return err;
    }
    if (err == MF_OK && x.start + x.received != x.delta_size) err = MF_ERR_SIZE_MISMATCH;
    if (err == MF_OK) err = mf_delta_finish(&x.d);
    uint8_t digest[32];
    crypto_hash_sha256_final(&x.hash, digest);
    if (err == MF_OK && memcmp(digest, a->sha256, 32) != 0) err = MF_ERR_DIGEST_MISMATCH;
    if (err == MF_OK) {
        c->stats.deltas_applied++;
        mf_eventf(c, "delta_applied", "slot=%d size=%" PRIu32 " delta=%" PRIu32, slot, x.size, x.delta_size);
        return MF_OK;
    }
    if (err == MF_ERR_BAD_DELTA) snprintf(why, why_len, "%s", x.d.why ? x.d.why : "refused");
    else if (err == MF_ERR_DIGEST_MISMATCH) say(why, why_len, "it made other bytes than the model's sha256");
    else if (err == MF_ERR_SIZE_MISMATCH) say(why, why_len, "its body is not the announced size");
    else if (err == MF_ERR_HTTP_STATUS) say(why, why_len, "the gateway did not serve it");
    else say(why, why_len, mf_err_code(err));
    return err;
}
