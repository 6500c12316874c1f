#include "mf_records.h"

#include <string.h>
#include "mf_slot.h"

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Every record: a 4-byte magic (its format), the fields, a CRC-32 of all before it. */
static mf_err store(mf_kv *kv, const char *key, uint8_t *b, size_t len, const char *magic)
{
    memcpy(b, magic, 4);
    put32(b + len - 4, mf_crc32(0, b, len - 4));
    return mf_kv_set(kv, key, b, len);
}

/* MF_ERR_NOT_FOUND when absent, unreadable, of another format or torn. */
static mf_err fetch(mf_kv *kv, const char *key, uint8_t *b, size_t len, const char *magic)
{
    size_t got = 0;
    mf_err err = mf_kv_get(kv, key, b, len, &got);
    if (err != MF_OK) return err == MF_ERR_IO ? MF_ERR_NOT_FOUND : err;
    if (got != len || memcmp(b, magic, 4) != 0 || get32(b + len - 4) != mf_crc32(0, b, len - 4)) return MF_ERR_NOT_FOUND;
    return MF_OK;
}

#define PROGRESS_BYTES 49   /* "MFP1", slot, sha256, size, written, crc */
/* "MFF2", assignment, attempts, err, detail, crc. An MFF1 record (an older firmware's,
 * keyed on the sha256 alone) reads as absent: that model is tried once more. */
#define FAILED_BYTES (4 + 32 + 4 + 1 + MF_FAILED_DETAIL_MAX + 1 + 4)

mf_err mf_progress_save(mf_kv *kv, const char *key, const mf_progress *p)
{
    uint8_t b[PROGRESS_BYTES];
    b[4] = p->slot;
    memcpy(b + 5, p->sha256, 32);
    put32(b + 37, p->size);
    put32(b + 41, p->written);
    return store(kv, key, b, sizeof b, "MFP1");
}

mf_err mf_progress_load(mf_kv *kv, const char *key, mf_progress *p)
{
    uint8_t b[PROGRESS_BYTES];
    mf_err err = fetch(kv, key, b, sizeof b, "MFP1");
    if (err != MF_OK) return err;
    p->slot = b[4];
    memcpy(p->sha256, b + 5, 32);
    p->size = get32(b + 37);
    p->written = get32(b + 41);
    return MF_OK;
}

mf_err mf_failed_save(mf_kv *kv, const char *key, const mf_failed_record *f)
{
    uint8_t b[FAILED_BYTES];
    memset(b, 0, sizeof b);
    memcpy(b + 4, f->assignment, 32);
    put32(b + 36, f->attempts);
    b[40] = f->err;
    size_t detail_len = strlen(f->detail);
    memcpy(b + 41, f->detail, detail_len < MF_FAILED_DETAIL_MAX ? detail_len : MF_FAILED_DETAIL_MAX);
    return store(kv, key, b, sizeof b, "MFF2");
}

mf_err mf_failed_load(mf_kv *kv, const char *key, mf_failed_record *f)
{
    uint8_t b[FAILED_BYTES];
    mf_err err = fetch(kv, key, b, sizeof b, "MFF2");
    if (err != MF_OK) return err;
    memcpy(f->assignment, b + 4, 32);
    f->attempts = get32(b + 36);
    f->err = b[40];
    memcpy(f->detail, b + 41, MF_FAILED_DETAIL_MAX);
    f->detail[MF_FAILED_DETAIL_MAX] = '\0';
    return MF_OK;
}
