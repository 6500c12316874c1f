/* DOWNLOAD: the assigned artifact into the inactive slot. Every sector is erased just
 * before it is written; progress (slot, sha256, size, bytes written in whole sectors) is
 * saved every MF_PROGRESS_STEP and when a download drops, so the next attempt, after a drop or
 * a reboot, resumes with Range and If-Range when the assignment still names the same
 * artifact, re-hashing what is already in flash. */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "mf_records.h"
#include "mf_slot.h"

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
    mf_err err = mf_progress_save(d->c->ports.kv, MF_KEY_PROGRESS, &d->progress);
    if (err == MF_OK) d->saved = written;
    if (err == MF_OK && written > 0) mf_eventf(d->c, "progress", "offset=%" PRIu64 " of %" PRIu64, written, d->size);
    return err;
}

mf_http_request mf_transfer_request(mf_client *c, const char *path, const char *etag_hex, uint64_t start, uint64_t total,
                                    char url[MF_TRANSFER_URL_MAX], char if_range[70])
{
    snprintf(url, MF_TRANSFER_URL_MAX, "%s%s", path[0] == '/' ? mf_gateway_url(c) : "", path);
    snprintf(if_range, 70, "\"%s\"", etag_hex);
    mf_http_request req = mf_request(c, "GET", url);
    req.range_start = start > 0 ? (int64_t)start : -1;
    req.if_range = start > 0 ? if_range : NULL;
    req.timeout_ms += (uint32_t)(total / 1024); /* >= 1 KiB/ms of slack */
    c->stats.downloads++;
    if (start > 0) c->stats.range_requests++;
    return req;
}

int mf_transfer_answer(mf_client *c, const mf_http_head *head, uint64_t start, uint64_t total, mf_err *err)
{
    mf_saw_status(c, head->status);
    *err = MF_OK;
    if (head->status == 206 && start > 0) {
        if (head->range_start != (int64_t)start || head->range_total != (int64_t)total || head->range_end != (int64_t)total - 1)
            *err = MF_ERR_PROTOCOL;
    } else if (head->status == 200) {
        if (head->content_length >= 0 && (uint64_t)head->content_length != total) *err = MF_ERR_SIZE_MISMATCH;
        else if (start > 0) {
            c->stats.range_restarts++;
            return 1;
        }
    } else {
        *err = head->status == 416 ? MF_ERR_SIZE_MISMATCH : head->status == 401 ? MF_ERR_UNAUTHORIZED : MF_ERR_HTTP_STATUS;
    }
    return *err == MF_OK ? 0 : -1;
}

static int download_head(void *ctx, const mf_http_head *head)
{
    download_ctx *d = ctx;
    int answer = mf_transfer_answer(d->c, head, d->asked_range ? d->offset : 0, d->size, &d->err);
    if (answer == 1) {
        /* The whole artifact: start over, and say so on storage first so a power cut cannot
         * resume on top of rewritten sectors. */
        d->offset = 0;
        crypto_hash_sha256_init(&d->hash);
        d->err = save_progress(d, 0);
    }
    return d->err != MF_OK;
}

static int download_body(void *ctx, const uint8_t *data, size_t len)
{
    download_ctx *d = ctx;
    mf_client *c = d->c;
    if (len > d->size - d->offset) {
        d->err = MF_ERR_SIZE_MISMATCH;
        return 1;
    }
    c->stats.bytes_received += len;
    while (len > 0) {
        uint32_t off = (uint32_t)d->offset;
        if (off % MF_FLASH_SECTOR == 0) {
            mf_err err = mf_slots_erase(c->ports.slots, d->slot, off, MF_FLASH_SECTOR);
            if (err != MF_OK) {
                d->err = err;
                return 1;
            }
        }
        size_t n = MF_FLASH_SECTOR - off % MF_FLASH_SECTOR;
        if (n > len) n = len;
        mf_err err = mf_slots_write(c->ports.slots, d->slot, off, data, n);
        if (err != MF_OK) {
            d->err = err;
            return 1;
        }
        crypto_hash_sha256_update(&d->hash, data, n);
        d->offset += n;
        data += n;
        len -= n;
        uint64_t step = d->offset / MF_PROGRESS_STEP * MF_PROGRESS_STEP;
        if (step > d->saved && step < d->size) {
            err = save_progress(d, step);
            if (err != MF_OK) {
                d->err = err;
                return 1;
            }
        }
    }
    return 0;
}

/* Where a download starts: the progress record when it is for this artifact and slot
 * (the hash rebuilt from what is in flash), else offset 0 on an invalidated slot. */
static mf_err start(download_ctx *d)
{
    mf_client *c = d->c;
    const mf_assignment *a = &c->assignment.model;
    mf_progress p;
    int resume = mf_progress_load(c->ports.kv, MF_KEY_PROGRESS, &p) == MF_OK && p.slot == d->slot &&
                 memcmp(p.sha256, a->sha256, 32) == 0 && p.size == d->size && p.written < d->size &&
                 p.written % MF_FLASH_SECTOR == 0;
    crypto_hash_sha256_init(&d->hash);
    c->valid[d->slot] = 0;
    if (resume) {
        d->progress = p;
        d->saved = p.written;
        uint8_t buf[512];
        for (uint32_t off = 0; off < p.written;) {
            uint32_t n = p.written - off < sizeof buf ? p.written - off : (uint32_t)sizeof buf;
            mf_err err = mf_slots_read(c->ports.slots, d->slot, off, buf, n);
            if (err != MF_OK) return err;
            crypto_hash_sha256_update(&d->hash, buf, n);
            off += n;
        }
        d->offset = p.written;
        mf_eventf(c, "resume", "slot=%d offset=%" PRIu32 " of %" PRIu64, d->slot, p.written, d->size);
        return MF_OK;
    }
    /* The slot stops being valid before any of its bytes change. */
    mf_err err = mf_slot_invalidate(c->ports.slots, d->slot);
    if (err != MF_OK) return err;
    memset(&d->progress, 0, sizeof d->progress);
    d->progress.slot = (uint8_t)d->slot;
    memcpy(d->progress.sha256, a->sha256, 32);
    d->progress.size = (uint32_t)d->size;
    err = save_progress(d, 0);
    if (err != MF_OK) return err;
    mf_eventf(c, "download", "slot=%d size=%" PRIu64 " sha256=%s", d->slot, d->size, a->sha256_hex);
    return MF_OK;
}

/* On MF_OK the slot holds exactly `size` bytes whose sha256 is the assigned one. */
static mf_err download(mf_client *c, int slot)
{
    const mf_assignment *a = &c->assignment.model;
    if (mf_auth_due(c)) return MF_ERR_UNAUTHORIZED;
    download_ctx d;
    memset(&d, 0, sizeof d);
    d.c = c;
    d.slot = slot;
    d.size = a->size;
    mf_err err = start(&d);
    if (err != MF_OK) return err;
    mf_report_state(c, "downloading", NULL, (double)d.offset / (double)d.size);

    char url[MF_TRANSFER_URL_MAX], if_range[70];
    d.asked_range = d.offset > 0;
    mf_http_request req = mf_transfer_request(c, a->url, a->sha256_hex, d.offset, d.size, url, if_range);
    mf_http_sink sink = {download_head, download_body, &d};
    err = mf_http_perform(c->ports.http, &req, &sink);
    if (err == MF_ERR_ABORTED) err = d.err != MF_OK ? d.err : MF_ERR_PROTOCOL;
    if (err == MF_ERR_POWER_LOST || err == MF_ERR_IO) return err;
    if (err != MF_OK) {
        /* A drop keeps what arrived: the next attempt resumes from the last whole sector. */
        uint64_t keep = d.offset / MF_FLASH_SECTOR * MF_FLASH_SECTOR;
        if (err == MF_ERR_NETWORK && keep > d.saved && keep < d.size) {
            mf_err e2 = save_progress(&d, keep);
            if (e2 == MF_ERR_POWER_LOST || e2 == MF_ERR_IO) return e2;
        }
        if (err == MF_ERR_NETWORK || err == MF_ERR_HTTP_STATUS || err == MF_ERR_UNAUTHORIZED) return err;
        /* Anything else breaks the contract: the next attempt starts over. */
        (void)mf_kv_erase(c->ports.kv, MF_KEY_PROGRESS);
        return err;
    }
    if (d.offset != d.size) {
        (void)mf_kv_erase(c->ports.kv, MF_KEY_PROGRESS);
        return MF_ERR_SIZE_MISMATCH;
    }
    uint8_t digest[32];
    crypto_hash_sha256_final(&d.hash, digest);
    if (memcmp(digest, a->sha256, 32) != 0) {
        (void)mf_kv_erase(c->ports.kv, MF_KEY_PROGRESS);
        return MF_ERR_DIGEST_MISMATCH;
    }
    return MF_OK;
}

void mf_run_download(mf_client *c, mf_step *s)
{
    int slot = mf_free_slot(c);
    mf_err err;
    if (mf_delta_wanted(c, slot)) {
        char why[96];
        err = mf_delta_download(c, slot, why, sizeof why);
        if (err != MF_OK && err != MF_ERR_NETWORK && err != MF_ERR_UNAUTHORIZED && err != MF_ERR_POWER_LOST && err != MF_ERR_IO) {
            /* The delta did not make the model: not tried again this boot, the full
             * artifact now, in the same cycle. */
            memcpy(c->delta_refused, c->assignment.model.delta.sha256, 32);
            c->stats.deltas_refused++;
            char error[160];
            snprintf(error, sizeof error, "%s: %s; downloading the full artifact", mf_err_code(MF_ERR_BAD_DELTA), why);
            mf_eventf(c, "delta_refused", "%s", why);
            mf_report_state(c, "downloading", error, 0.0);
            err = download(c, slot);
        }
    } else {
        err = download(c, slot);
    }
    if (err == MF_OK) {
        mf_step_go(s);
    } else if (err == MF_ERR_UNAUTHORIZED) {
        mf_step_auth(c, s);
    } else if (err == MF_ERR_POWER_LOST || err == MF_ERR_IO) {
        mf_step_fail(s, err, mf_gateway_failed(c));
    } else if (err == MF_ERR_NETWORK || err == MF_ERR_HTTP_STATUS || err == MF_ERR_PROTOCOL) {
        /* The gateway's fault, not the model's: back off as for any failed exchange. */
        mf_eventf(c, "download_interrupted", "%s", mf_err_code(err));
        mf_step_fail(s, err, mf_gateway_failed(c));
    } else {
        mf_failure_record(c, err, "download");
        mf_step_idle(s, err, mf_failure_delay(c, mf_next_poll_delay(c)));
    }
}
