#include "mf_slot.h"

#include <string.h>
#include <sodium.h>

static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

uint32_t mf_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t mf_slot_capacity(mf_slots *s, int slot)
{
    uint32_t size = mf_slots_size(s, slot);
    return size < 2 * MF_FLASH_SECTOR ? 0 : size - MF_FLASH_SECTOR;
}

static int string_field_ok(const uint8_t *field, size_t cap, int (*valid)(const char *))
{
    if (memchr(field, '\0', cap) == NULL) return 0;
    return valid((const char *)field);
}

/* The header as written by a commit: magic, CRC, format. NULL, or which of them is wrong. */
static mf_err read_header(mf_slots *s, int slot, uint8_t h[MF_SLOT_HEADER_BYTES], const char **why)
{
    uint32_t capacity = mf_slot_capacity(s, slot);
    *why = NULL;
    if (capacity == 0) { *why = "no such partition"; return MF_OK; }
    mf_err err = mf_slots_read(s, slot, capacity, h, MF_SLOT_HEADER_BYTES);
    if (err != MF_OK) return err;
    if (memcmp(h, MF_SLOT_MAGIC, 4) != 0) *why = "no header";
    else if (get32(h + MF_SLOT_CRC_OFFSET) != mf_crc32(0, h, MF_SLOT_CRC_OFFSET)) *why = "header CRC";
    else if (get32(h + 4) != MF_SLOT_FORMAT) *why = "header format";
    return MF_OK;
}

uint32_t mf_slot_sequence(mf_slots *s, int slot)
{
    uint8_t h[MF_SLOT_HEADER_BYTES];
    const char *why;
    if (read_header(s, slot, h, &why) != MF_OK || why) return 0;
    return get32(h + 8);
}

mf_err mf_slot_inspect(mf_slots *s, int slot, mf_slot_info *info)
{
    memset(info, 0, sizeof *info);
    uint32_t capacity = mf_slot_capacity(s, slot);
    uint8_t h[MF_SLOT_HEADER_BYTES];
    mf_err err = read_header(s, slot, h, &info->why);
    if (err != MF_OK || info->why) return err;
    info->sequence = get32(h + 8);
    info->size = get32(h + 12);
    if (info->size < 8 || info->size > capacity) { info->why = "size"; return MF_OK; }
    if (!string_field_ok(h + 48, 68, mf_valid_name) || !string_field_ok(h + 116, 68, mf_valid_version)) {
        info->why = "name or version"; return MF_OK;
    }
    memcpy(info->sha256, h + 16, 32);
    strcpy(info->name, (const char *)h + 48);
    strcpy(info->version, (const char *)h + 116);

    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint8_t buf[512];
    for (uint32_t off = 0; off < info->size;) {
        uint32_t n = info->size - off < sizeof buf ? info->size - off : (uint32_t)sizeof buf;
        err = mf_slots_read(s, slot, off, buf, n);
        if (err != MF_OK) return err;
        crypto_hash_sha256_update(&st, buf, n);
        off += n;
    }
    uint8_t digest[32];
    crypto_hash_sha256_final(&st, digest);
    if (memcmp(digest, info->sha256, 32) != 0) { info->why = "sha256 of the bytes"; return MF_OK; }
    info->valid = 1;
    return MF_OK;
}

int mf_slot_select(mf_slots *s, mf_slot_info info[MF_SLOT_COUNT])
{
    int best = -1;
    for (int i = 0; i < MF_SLOT_COUNT; i++) {
        if (mf_slot_inspect(s, i, &info[i]) != MF_OK) {
            memset(&info[i], 0, sizeof info[i]);
            info[i].why = "unreadable";
            continue;
        }
        if (info[i].valid && (best < 0 || info[i].sequence > info[best].sequence)) best = i;
    }
    return best;
}

mf_err mf_slot_invalidate(mf_slots *s, int slot)
{
    uint32_t capacity = mf_slot_capacity(s, slot);
    if (capacity == 0) return MF_ERR_NOT_FOUND;
    return mf_slots_erase(s, slot, capacity, MF_FLASH_SECTOR);
}

mf_err mf_slot_commit(mf_slots *s, int slot, uint32_t sequence, uint32_t size,
                      const uint8_t sha256[32], const char *name, const char *version)
{
    uint32_t capacity = mf_slot_capacity(s, slot);
    if (capacity == 0 || size > capacity || strlen(name) > MF_MODEL_NAME_MAX || strlen(version) > MF_MODEL_VERSION_MAX)
        return MF_ERR_INVALID_ARG;
    uint8_t h[MF_SLOT_HEADER_BYTES];
    memset(h, 0, sizeof h);
    memcpy(h, MF_SLOT_MAGIC, 4);
    put32(h + 4, MF_SLOT_FORMAT);
    put32(h + 8, sequence);
    put32(h + 12, size);
    memcpy(h + 16, sha256, 32);
    memcpy(h + 48, name, strlen(name));
    memcpy(h + 116, version, strlen(version));
    mf_err err = mf_slots_write(s, slot, capacity, h, MF_SLOT_CRC_OFFSET);
    if (err != MF_OK) return err;
    put32(h + MF_SLOT_CRC_OFFSET, mf_crc32(0, h, MF_SLOT_CRC_OFFSET));
    return mf_slots_write(s, slot, capacity + MF_SLOT_CRC_OFFSET, h + MF_SLOT_CRC_OFFSET, 4);
}
