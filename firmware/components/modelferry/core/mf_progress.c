#include "mf_progress.h"

#include <string.h>
#include "mf_slot.h"

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

#define PROGRESS_BYTES 49   /* "MFP1", slot, sha256, size, written, crc */
#define FAILED_BYTES 44     /* "MFF1", sha256, attempts, crc */

mf_err mf_progress_save(mf_kv *kv, const char *key, const mf_progress *p)
{
    uint8_t b[PROGRESS_BYTES];
    memcpy(b, "MFP1", 4);
    b[4] = p->slot;
    memcpy(b + 5, p->sha256, 32);
    put32(b + 37, p->size);
    put32(b + 41, p->written);
    put32(b + 45, mf_crc32(0, b, 45));
    return mf_kv_set(kv, key, b, sizeof b);
}

mf_err mf_progress_load(mf_kv *kv, const char *key, mf_progress *p)
{
    uint8_t b[PROGRESS_BYTES];
    size_t len = 0;
    mf_err err = mf_kv_get(kv, key, b, sizeof b, &len);
    if (err != MF_OK) return err == MF_ERR_IO ? MF_ERR_NOT_FOUND : err;
    if (len != sizeof b || memcmp(b, "MFP1", 4) != 0 || get32(b + 45) != mf_crc32(0, b, 45)) return MF_ERR_NOT_FOUND;
    p->slot = b[4];
    memcpy(p->sha256, b + 5, 32);
    p->size = get32(b + 37);
    p->written = get32(b + 41);
    return MF_OK;
}

mf_err mf_failed_save(mf_kv *kv, const char *key, const mf_failed_record *f)
{
    uint8_t b[FAILED_BYTES];
    memcpy(b, "MFF1", 4);
    memcpy(b + 4, f->sha256, 32);
    put32(b + 36, f->attempts);
    put32(b + 40, mf_crc32(0, b, 40));
    return mf_kv_set(kv, key, b, sizeof b);
}

mf_err mf_failed_load(mf_kv *kv, const char *key, mf_failed_record *f)
{
    uint8_t b[FAILED_BYTES];
    size_t len = 0;
    mf_err err = mf_kv_get(kv, key, b, sizeof b, &len);
    if (err != MF_OK) return err == MF_ERR_IO ? MF_ERR_NOT_FOUND : err;
    if (len != sizeof b || memcmp(b, "MFF1", 4) != 0 || get32(b + 40) != mf_crc32(0, b, 40)) return MF_ERR_NOT_FOUND;
    memcpy(f->sha256, b + 4, 32);
    f->attempts = get32(b + 36);
    return MF_OK;
}
