/* Model slot format and selection (docs/design.md "Model slots").
 *
 * A slot is one flash partition. The model's bytes start at offset 0 (so the mapped pointer
 * is partition-aligned for the runtime); the slot header lives in the partition's last
 * sector. The header is written only after the bytes are verified, and its CRC is written
 * last, in a separate write: that write is the commit point. A slot whose header has a bad
 * magic or CRC, an impossible size, or whose bytes do not hash to the header's sha256 is
 * never activated. At boot the valid slot with the highest sequence is the active one. */
#ifndef MF_SLOT_H
#define MF_SLOT_H

#include <stdint.h>
#include "modelferry/mf_port_slots.h"
#include "mf_assignment.h"

#define MF_SLOT_MAGIC "MFS1"
#define MF_SLOT_FORMAT 1u
#define MF_SLOT_HEADER_BYTES 188u
#define MF_SLOT_CRC_OFFSET 184u

typedef struct {
    int valid;
    uint32_t sequence;
    uint32_t size;
    uint8_t sha256[32];
    char name[MF_MODEL_NAME_MAX + 1];
    char version[MF_MODEL_VERSION_MAX + 1];
    const char *why;            /* when not valid: which check failed */
} mf_slot_info;

/* Bytes a slot can hold: the partition minus its header sector (0 if absent or too small). */
uint32_t mf_slot_capacity(mf_slots *s, int slot);

uint32_t mf_crc32(uint32_t crc, const void *data, size_t len);

/* Reads and checks a slot (header, CRC, size, and the sha256 of its bytes).
 * Returns MF_OK with info->valid 0 or 1; an error only when storage fails. */
mf_err mf_slot_inspect(mf_slots *s, int slot, mf_slot_info *info);

/* The sequence in a slot's header when it has one (magic, CRC and format good, whatever
 * the bytes), else 0: what a later boot could still find there. */
uint32_t mf_slot_sequence(mf_slots *s, int slot);

/* Inspects every slot; returns the index of the valid one with the highest sequence, or -1. */
int mf_slot_select(mf_slots *s, mf_slot_info info[MF_SLOT_COUNT]);

/* Erases the header sector: the slot is invalid from here on. */
mf_err mf_slot_invalidate(mf_slots *s, int slot);

/* Writes the header for bytes already in the slot: everything but the CRC, then the CRC. */
mf_err mf_slot_commit(mf_slots *s, int slot, uint32_t sequence, uint32_t size,
                      const uint8_t sha256[32], const char *name, const char *version);

#endif
