/* Storage port: the two model slots as raw flash partitions (ESP-IDF: esp_partition,
 * POSIX: two files with NOR-flash semantics). Offsets are relative to the slot. */
#ifndef MF_PORT_SLOTS_H
#define MF_PORT_SLOTS_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/mf_err.h"

#define MF_SLOT_COUNT 2
#define MF_FLASH_SECTOR 4096u

typedef struct mf_slots mf_slots;

/* Bytes in the slot's partition (a multiple of MF_FLASH_SECTOR), 0 when absent. */
uint32_t mf_slots_size(mf_slots *s, int slot);
mf_err mf_slots_read(mf_slots *s, int slot, uint32_t offset, void *buf, size_t len);
/* Programs bytes: like NOR flash, a write can only clear bits of erased (0xFF) bytes. */
mf_err mf_slots_write(mf_slots *s, int slot, uint32_t offset, const void *buf, size_t len);
/* Erases whole sectors: offset and len are multiples of MF_FLASH_SECTOR. */
mf_err mf_slots_erase(mf_slots *s, int slot, uint32_t offset, uint32_t len);
/* Maps the first len bytes read-only; *data stays valid until mf_slots_unmap. */
mf_err mf_slots_map(mf_slots *s, int slot, uint32_t len, const uint8_t **data);
void mf_slots_unmap(mf_slots *s, int slot);

#endif
