#include "mf_records.h"

#include <string.h>
#include <sodium.h>
#include "mf_slot.h"
#include "mf_verify.h"

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

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

/* Text fields are stored NUL-padded to their full size. */
static void put_text(uint8_t *p, const char *text, size_t size)
{
    size_t n = strlen(text);
    memcpy(p, text, n < size ? n : size);
}

static void get_text(char *out, const uint8_t *p, size_t size)
{
    memcpy(out, p, size);
    out[size] = '\0';
}

#define PROGRESS_BYTES 49   /* "MFP1", slot, sha256, size, written, crc */
/* "MFF2", rolled_back, fingerprint, sha256, name, version, attempts, err, detail, crc. An
 * MFF1 record (an older firmware's, keyed on the sha256 alone) reads as absent: that model
 * is tried once more. */
#define NAME_BYTES (MF_MODEL_NAME_MAX + 1)
#define VERSION_BYTES (MF_MODEL_VERSION_MAX + 1)
#define DETAIL_BYTES (MF_FAILED_DETAIL_MAX + 1)
#define FAILED_BYTES (4 + 1 + 32 + 32 + NAME_BYTES + VERSION_BYTES + 4 + 1 + DETAIL_BYTES + 4)
/* "MFQ2", slot, state, sequence, sha256, boots, attempts, err, detail, seq, seq_counts, crc.
 * An MFQ1 record (without the signed sequence) reads as absent: the model it was for counts
 * as confirmed, and raises no floor. */
#define PENDING_BYTES (4 + 1 + 1 + 4 + 32 + 4 + 4 + 1 + DETAIL_BYTES + 8 + 1 + 4)
#define SEQUENCE_BYTES 12   /* "MFS1", sequence, crc */
#define FLOOR_BYTES 16      /* "MFR1", seq, crc */

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
    uint8_t *p = b + 4;
    *p++ = f->rolled_back;
    memcpy(p, f->fingerprint, 32);
    memcpy(p + 32, f->sha256, 32);
    p += 64;
    put_text(p, f->name, NAME_BYTES - 1);
    put_text(p + NAME_BYTES, f->version, VERSION_BYTES - 1);
    p += NAME_BYTES + VERSION_BYTES;
    put32(p, f->attempts);
    p[4] = f->err;
    put_text(p + 5, f->detail, DETAIL_BYTES - 1);
    return store(kv, key, b, sizeof b, "MFF2");
}

mf_err mf_failed_load(mf_kv *kv, const char *key, mf_failed_record *f)
{
    uint8_t b[FAILED_BYTES];
    mf_err err = fetch(kv, key, b, sizeof b, "MFF2");
    if (err != MF_OK) return err;
    const uint8_t *p = b + 4;
    f->rolled_back = *p++;
    memcpy(f->fingerprint, p, 32);
    memcpy(f->sha256, p + 32, 32);
    p += 64;
    get_text(f->name, p, NAME_BYTES - 1);
    get_text(f->version, p + NAME_BYTES, VERSION_BYTES - 1);
    p += NAME_BYTES + VERSION_BYTES;
    f->attempts = get32(p);
    f->err = p[4];
    get_text(f->detail, p + 5, DETAIL_BYTES - 1);
    return MF_OK;
}

mf_err mf_pending_save(mf_kv *kv, const char *key, const mf_pending_record *r)
{
    uint8_t b[PENDING_BYTES];
    memset(b, 0, sizeof b);
    b[4] = r->slot;
    b[5] = r->state;
    put32(b + 6, r->sequence);
    memcpy(b + 10, r->sha256, 32);
    put32(b + 42, r->boots);
    put32(b + 46, r->attempts);
    b[50] = r->err;
    put_text(b + 51, r->detail, DETAIL_BYTES - 1);
    put64(b + 51 + DETAIL_BYTES, r->seq);
    b[59 + DETAIL_BYTES] = r->seq_counts;
    return store(kv, key, b, sizeof b, "MFQ2");
}

mf_err mf_pending_load(mf_kv *kv, const char *key, mf_pending_record *r)
{
    uint8_t b[PENDING_BYTES];
    mf_err err = fetch(kv, key, b, sizeof b, "MFQ2");
    if (err != MF_OK) return err;
    r->slot = b[4];
    r->state = b[5];
    r->sequence = get32(b + 6);
    memcpy(r->sha256, b + 10, 32);
    r->boots = get32(b + 42);
    r->attempts = get32(b + 46);
    r->err = b[50];
    get_text(r->detail, b + 51, DETAIL_BYTES - 1);
    r->seq = get64(b + 51 + DETAIL_BYTES);
    r->seq_counts = b[59 + DETAIL_BYTES];
    return MF_OK;
}

mf_err mf_sequence_save(mf_kv *kv, const char *key, uint32_t sequence)
{
    uint8_t b[SEQUENCE_BYTES];
    put32(b + 4, sequence);
    return store(kv, key, b, sizeof b, "MFS1");
}

uint32_t mf_sequence_load(mf_kv *kv, const char *key)
{
    uint8_t b[SEQUENCE_BYTES];
    return fetch(kv, key, b, sizeof b, "MFS1") == MF_OK ? get32(b + 4) : 0;
}

/* "mf_r" and 10 hex characters of sha256(name): NVS keys are at most 15 characters, names
 * up to 64. */
static void floor_key(const char *name, char key[16])
{
    uint8_t digest[32];
    crypto_hash_sha256(digest, (const unsigned char *)name, strlen(name));
    memcpy(key, "mf_r", 4);
    mf_hex_encode(digest, 5, key + 4);
}

mf_err mf_floor_save(mf_kv *kv, const char *name, uint64_t seq)
{
    char key[16];
    uint8_t b[FLOOR_BYTES];
    floor_key(name, key);
    put64(b + 4, seq);
    return store(kv, key, b, sizeof b, "MFR1");
}

uint64_t mf_floor_load(mf_kv *kv, const char *name)
{
    char key[16];
    uint8_t b[FLOOR_BYTES];
    floor_key(name, key);
    return fetch(kv, key, b, sizeof b, "MFR1") == MF_OK ? get64(b + 4) : 0;
}
