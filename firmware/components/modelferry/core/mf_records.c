#include "mf_records.h"

#include <stddef.h>
#include <string.h>
#include <sodium.h>
#include "mf_slot.h"
#include "mf_verify.h"

/* Every record is a 4-byte magic (its format), its fields in the order of a table, and a
 * CRC-32 of all before it (little-endian). A field is an unsigned integer (little-endian),
 * raw bytes (digests), or text, NUL-padded to its array's size (the last byte always NUL).
 * So a record from another firmware, of another length, or torn, reads as absent. */
typedef enum { INT, BYTES, TEXT } kind;
typedef struct {
    uint16_t at;        /* offsetof in the record's struct */
    uint8_t size;       /* sizeof the member */
    uint8_t kind;
} field;

#define FIELD(type, member, k) {offsetof(type, member), sizeof(((type *)0)->member), k}
#define RECORD_MAX 304  /* the failed record */

/* n bytes, an integer's reversed on a big-endian machine (records are little-endian). */
static void copy(uint8_t *to, const uint8_t *from, size_t n, int integer)
{
    static const uint16_t one = 1;
    int swap = integer && *(const uint8_t *)&one == 0;
    for (size_t i = 0; i < n; i++) to[i] = from[swap ? n - 1 - i : i];
}

static mf_err save(mf_kv *kv, const char *key, const char *magic, const field *f, const void *record)
{
    uint8_t b[RECORD_MAX];
    memset(b, 0, sizeof b);
    memcpy(b, magic, 4);
    size_t len = 4;
    for (; f->size; f++) {
        const uint8_t *m = (const uint8_t *)record + f->at;
        if (f->kind == TEXT)
            for (size_t i = 0; i + 1 < f->size && m[i]; i++) b[len + i] = m[i];
        else
            copy(b + len, m, f->size, f->kind == INT);
        len += f->size;
    }
    uint32_t crc = mf_crc32(0, b, len);
    copy(b + len, (const uint8_t *)&crc, 4, 1);
    return mf_kv_set(kv, key, b, len + 4);
}

/* MF_ERR_NOT_FOUND when absent, unreadable, of another format or torn. */
static mf_err load(mf_kv *kv, const char *key, const char *magic, const field *f, void *record)
{
    uint8_t b[RECORD_MAX];
    size_t len = 4, got = 0;
    uint32_t crc;
    for (const field *g = f; g->size; g++) len += g->size;
    mf_err err = mf_kv_get(kv, key, b, sizeof b, &got);
    if (err != MF_OK) return err == MF_ERR_IO ? MF_ERR_NOT_FOUND : err;
    copy((uint8_t *)&crc, b + len, 4, 1);
    if (got != len + 4 || memcmp(b, magic, 4) != 0 || crc != mf_crc32(0, b, len)) return MF_ERR_NOT_FOUND;
    for (len = 4; f->size; len += f->size, f++) {
        uint8_t *m = (uint8_t *)record + f->at;
        copy(m, b + len, f->size, f->kind == INT);
        if (f->kind == TEXT) m[f->size - 1] = '\0';
    }
    return MF_OK;
}

/* "MFP1" */
static const field PROGRESS[] = {
    FIELD(mf_progress, slot, INT), FIELD(mf_progress, sha256, BYTES), FIELD(mf_progress, size, INT),
    FIELD(mf_progress, written, INT), {0, 0, 0},
};
/* "MFD1" */
static const field DELTA_PROGRESS[] = {
    FIELD(mf_delta_progress, slot, INT), FIELD(mf_delta_progress, sha256, BYTES),
    FIELD(mf_delta_progress, delta_sha256, BYTES), FIELD(mf_delta_progress, size, INT),
    FIELD(mf_delta_progress, delta_size, INT), FIELD(mf_delta_progress, at.phase, INT),
    FIELD(mf_delta_progress, at.count, INT), FIELD(mf_delta_progress, at.offset, INT),
    FIELD(mf_delta_progress, at.written, INT), FIELD(mf_delta_progress, at.consumed, INT), {0, 0, 0},
};
/* "MFF2". An MFF1 record (an older firmware's, keyed on the sha256 alone) reads as absent:
 * that model is tried once more. */
static const field FAILED[] = {
    FIELD(mf_failure_state, rolled_back, INT), FIELD(mf_failure_state, fingerprint, BYTES),
    FIELD(mf_failure_state, sha256, BYTES), FIELD(mf_failure_state, name, TEXT), FIELD(mf_failure_state, version, TEXT),
    FIELD(mf_failure_state, attempts, INT), FIELD(mf_failure_state, err, INT), FIELD(mf_failure_state, detail, TEXT),
    {0, 0, 0},
};
/* "MFQ2". An MFQ1 record (without the signed sequence) reads as absent: the model it was for
 * counts as confirmed, and raises no floor. */
static const field PENDING[] = {
    FIELD(mf_pending_record, slot, INT), FIELD(mf_pending_record, state, INT), FIELD(mf_pending_record, sequence, INT),
    FIELD(mf_pending_record, sha256, BYTES), FIELD(mf_pending_record, boots, INT), FIELD(mf_pending_record, attempts, INT),
    FIELD(mf_pending_record, err, INT), FIELD(mf_pending_record, detail, TEXT), FIELD(mf_pending_record, seq, INT),
    FIELD(mf_pending_record, seq_counts, INT), {0, 0, 0},
};
/* "MFS1" and "MFR1": one number. */
static const field U32[] = {{0, 4, INT}, {0, 0, 0}};
static const field U64[] = {{0, 8, INT}, {0, 0, 0}};

mf_err mf_progress_save(mf_kv *kv, const char *key, const mf_progress *p) { return save(kv, key, "MFP1", PROGRESS, p); }
mf_err mf_progress_load(mf_kv *kv, const char *key, mf_progress *p) { return load(kv, key, "MFP1", PROGRESS, p); }

mf_err mf_delta_progress_save(mf_kv *kv, const char *key, const mf_delta_progress *p)
{
    return save(kv, key, "MFD1", DELTA_PROGRESS, p);
}

mf_err mf_delta_progress_load(mf_kv *kv, const char *key, mf_delta_progress *p)
{
    return load(kv, key, "MFD1", DELTA_PROGRESS, p);
}

mf_err mf_failed_save(mf_kv *kv, const char *key, const mf_failure_state *f) { return save(kv, key, "MFF2", FAILED, f); }
mf_err mf_failed_load(mf_kv *kv, const char *key, mf_failure_state *f) { return load(kv, key, "MFF2", FAILED, f); }
mf_err mf_pending_save(mf_kv *kv, const char *key, const mf_pending_record *r) { return save(kv, key, "MFQ2", PENDING, r); }
mf_err mf_pending_load(mf_kv *kv, const char *key, mf_pending_record *r) { return load(kv, key, "MFQ2", PENDING, r); }

mf_err mf_sequence_save(mf_kv *kv, const char *key, uint32_t sequence) { return save(kv, key, "MFS1", U32, &sequence); }

uint32_t mf_sequence_load(mf_kv *kv, const char *key)
{
    uint32_t sequence = 0;
    return load(kv, key, "MFS1", U32, &sequence) == MF_OK ? sequence : 0;
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
    floor_key(name, key);
    return save(kv, key, "MFR1", U64, &seq);
}

uint64_t mf_floor_load(mf_kv *kv, const char *name)
{
    char key[16];
    uint64_t seq = 0;
    floor_key(name, key);
    return load(kv, key, "MFR1", U64, &seq) == MF_OK ? seq : 0;
}
