/* Slot format and boot selection: the valid slot with the highest sequence wins; a bad
 * CRC, a torn header, a wrong size or wrong bytes never make a slot valid. */
#include <string.h>

#include "mf_slot.h"
#include "mf_verify.h"
#include "test_util.h"

#define SLOT_BYTES (32u * 1024)
#define CAP (SLOT_BYTES - 4096)

static mf_fault fault;

static mf_slots *open_slots(void)
{
    mf_fault_init(&fault);
    mf_slots *s = mf_posix_slots_open(test_tempdir(), SLOT_BYTES, &fault);
    CHECK(s != NULL);
    return s;
}

static void put_model(mf_slots *s, int slot, const uint8_t *bytes, uint32_t len, uint32_t seq)
{
    CHECK_EQ(mf_slot_invalidate(s, slot), MF_OK);
    CHECK_EQ(mf_slots_erase(s, slot, 0, (len + 4095) / 4096 * 4096), MF_OK);
    CHECK_EQ(mf_slots_write(s, slot, 0, bytes, len), MF_OK);
    uint8_t sha[32];
    crypto_hash_sha256(sha, bytes, len);
    CHECK_EQ(mf_slot_commit(s, slot, seq, len, sha, "m", "1.0"), MF_OK);
}

static void highest_sequence_wins(void)
{
    mf_slots *s = open_slots();
    mf_slot_info info[2];
    CHECK_EQ(mf_slot_select(s, info), -1);
    CHECK(!info[0].valid && !info[1].valid);
    uint8_t *a = test_program(5000, 1), *b = test_program(7000, 2);
    put_model(s, 0, a, 5000, 7);
    CHECK_EQ(mf_slot_select(s, info), 0);
    CHECK_EQ(info[0].sequence, 7);
    CHECK_EQ(info[0].size, 5000);
    CHECK_STR(info[0].name, "m");
    CHECK_STR(info[0].version, "1.0");
    put_model(s, 1, b, 7000, 8);
    CHECK_EQ(mf_slot_select(s, info), 1);
    put_model(s, 0, a, 5000, 9);
    CHECK_EQ(mf_slot_select(s, info), 0);
    /* Invalidating the newer one falls back to the older. */
    CHECK_EQ(mf_slot_invalidate(s, 0), MF_OK);
    CHECK_EQ(mf_slot_select(s, info), 1);
    free(a);
    free(b);
    mf_posix_slots_close(s);
}

/* Rewrites one header byte (the file is flash: erase the sector, write it back changed). */
static void patch_header(mf_slots *s, int slot, uint32_t at, uint8_t value, int fix_crc)
{
    uint8_t sector[4096];
    CHECK_EQ(mf_slots_read(s, slot, CAP, sector, sizeof sector), MF_OK);
    sector[at] = value;
    if (fix_crc) {
        uint32_t crc = mf_crc32(0, sector, MF_SLOT_CRC_OFFSET);
        for (int i = 0; i < 4; i++) sector[MF_SLOT_CRC_OFFSET + i] = (uint8_t)(crc >> (8 * i));
    }
    CHECK_EQ(mf_slots_erase(s, slot, CAP, 4096), MF_OK);
    CHECK_EQ(mf_slots_write(s, slot, CAP, sector, sizeof sector), MF_OK);
}

static void damaged_slots_are_never_valid(void)
{
    uint8_t *a = test_program(5000, 3), *b = test_program(6000, 4);
    struct { const char *what; uint32_t at; uint8_t value; int fix_crc; } cases[] = {
        {"bad CRC", 20, 0x55, 0},
        {"bad magic", 0, 'X', 1},
        {"size beyond the slot", 15, 0x7F, 1},  /* top byte of size */
        {"size changed", 12, 0, 1},             /* 6000 = 0x1770 becomes 0x1700 */
        {"wrong sha256", 16, 0x00, 1},
        {"bad name", 48, 'A', 1},
        {"unknown format", 4, 9, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mf_slots *s = open_slots();
        put_model(s, 0, a, 5000, 1);
        put_model(s, 1, b, 6000, 2);
        patch_header(s, 1, cases[i].at, cases[i].value, cases[i].fix_crc);
        mf_slot_info info[2];
        int best = mf_slot_select(s, info);
        if (best != 0) fprintf(stderr, "%s: slot 1 still valid\n", cases[i].what);
        CHECK_EQ(best, 0);
        CHECK(info[1].why != NULL);
        mf_posix_slots_close(s);
    }
    /* Bytes changed after the commit (a bit flip in the model). */
    mf_slots *s = open_slots();
    put_model(s, 0, a, 5000, 1);
    put_model(s, 1, b, 6000, 2);
    uint8_t zero = 0;
    CHECK_EQ(mf_slots_write(s, 1, 4000, &zero, 1), MF_OK);
    mf_slot_info info[2];
    CHECK_EQ(mf_slot_select(s, info), 0);
    CHECK_STR(info[1].why, "sha256 of the bytes");
    /* Nothing valid at all: no model. */
    CHECK_EQ(mf_slot_invalidate(s, 0), MF_OK);
    CHECK_EQ(mf_slot_select(s, info), -1);
    mf_posix_slots_close(s);
    free(a);
    free(b);
}

static void torn_commit_keeps_old(void)
{
    uint8_t *a = test_program(5000, 7), *b = test_program(6000, 8);
    uint8_t sha[32];
    crypto_hash_sha256(sha, b, 6000);
    for (int64_t cut = 0; cut <= (int64_t)MF_SLOT_HEADER_BYTES; cut++) {
        char *dir = test_tempdir();
        mf_fault_init(&fault);
        mf_slots *s = mf_posix_slots_open(dir, SLOT_BYTES, &fault);
        put_model(s, 0, a, 5000, 1);
        CHECK_EQ(mf_slot_invalidate(s, 1), MF_OK);
        CHECK_EQ(mf_slots_erase(s, 1, 0, 8192), MF_OK);
        CHECK_EQ(mf_slots_write(s, 1, 0, b, 6000), MF_OK);
        fault.bytes_left = cut;
        mf_err err = mf_slot_commit(s, 1, 2, 6000, sha, "m", "2");
        mf_posix_slots_close(s);
        /* Reboot. */
        s = mf_posix_slots_open(dir, SLOT_BYTES, NULL);
        mf_slot_info info[2];
        int best = mf_slot_select(s, info);
        if (cut < (int64_t)MF_SLOT_HEADER_BYTES) {
            CHECK_EQ(err, MF_ERR_POWER_LOST);
            CHECK_EQ(best, 0);
        } else {
            CHECK_EQ(err, MF_OK);
            CHECK_EQ(best, 1);
        }
        mf_posix_slots_close(s);
    }
    free(a);
    free(b);
}

static void flash_semantics(void)
{
    /* Writing over written bytes without an erase only clears bits, as on NOR flash: the
     * reason every sector is erased before the download writes into it. */
    mf_slots *s = open_slots();
    uint8_t x = 0xF0, y = 0x0F, got;
    CHECK_EQ(mf_slots_write(s, 0, 10, &x, 1), MF_OK);
    CHECK_EQ(mf_slots_write(s, 0, 10, &y, 1), MF_OK);
    CHECK_EQ(mf_slots_read(s, 0, 10, &got, 1), MF_OK);
    CHECK_EQ(got, 0x00);
    CHECK_EQ(mf_slots_erase(s, 0, 0, 4096), MF_OK);
    CHECK_EQ(mf_slots_read(s, 0, 10, &got, 1), MF_OK);
    CHECK_EQ(got, 0xFF);
    CHECK_EQ(mf_slots_erase(s, 0, 1, 4096), MF_ERR_INVALID_ARG);
    CHECK_EQ(mf_slots_write(s, 0, SLOT_BYTES - 1, &x, 2), MF_ERR_INVALID_ARG);
    CHECK_EQ(mf_slots_read(s, 2, 0, &got, 1), MF_ERR_INVALID_ARG);
    mf_posix_slots_close(s);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    RUN(highest_sequence_wins);
    RUN(damaged_slots_are_never_valid);
    RUN(torn_commit_keeps_old);
    RUN(flash_semantics);
    DONE();
}
