/* Slots on the model_a / model_b data partitions (esp_partition). */
#include "modelferry/mf_port_slots.h"

#include "esp_partition.h"
#include "sdkconfig.h"

struct mf_slots {
    const esp_partition_t *part[MF_SLOT_COUNT];
    esp_partition_mmap_handle_t map[MF_SLOT_COUNT];
    int mapped[MF_SLOT_COUNT];
};

static struct mf_slots slots;

mf_slots *mf_esp_slots_open(void)
{
    slots.part[0] = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_ANY, CONFIG_MODELFERRY_SLOT_A_LABEL);
    slots.part[1] = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_ANY, CONFIG_MODELFERRY_SLOT_B_LABEL);
    if (!slots.part[0] || !slots.part[1]) return NULL;
    return &slots;
}

static const esp_partition_t *part(mf_slots *s, int slot)
{
    return slot >= 0 && slot < MF_SLOT_COUNT ? s->part[slot] : NULL;
}

uint32_t mf_slots_size(mf_slots *s, int slot)
{
    const esp_partition_t *p = part(s, slot);
    return p ? (uint32_t)p->size : 0;
}

static mf_err map_err(esp_err_t e)
{
    if (e == ESP_OK) return MF_OK;
    if (e == ESP_ERR_INVALID_ARG || e == ESP_ERR_INVALID_SIZE) return MF_ERR_INVALID_ARG;
    return MF_ERR_IO;
}

mf_err mf_slots_read(mf_slots *s, int slot, uint32_t offset, void *buf, size_t len)
{
    const esp_partition_t *p = part(s, slot);
    return p ? map_err(esp_partition_read(p, offset, buf, len)) : MF_ERR_INVALID_ARG;
}

mf_err mf_slots_write(mf_slots *s, int slot, uint32_t offset, const void *buf, size_t len)
{
    const esp_partition_t *p = part(s, slot);
    return p ? map_err(esp_partition_write(p, offset, buf, len)) : MF_ERR_INVALID_ARG;
}

mf_err mf_slots_erase(mf_slots *s, int slot, uint32_t offset, uint32_t len)
{
    const esp_partition_t *p = part(s, slot);
    if (!p || offset % p->erase_size || len % p->erase_size) return MF_ERR_INVALID_ARG;
    return map_err(esp_partition_erase_range(p, offset, len));
}

mf_err mf_slots_map(mf_slots *s, int slot, uint32_t len, const uint8_t **data)
{
    const esp_partition_t *p = part(s, slot);
    if (!p || len == 0 || len > p->size) return MF_ERR_INVALID_ARG;
    mf_slots_unmap(s, slot);
    const void *ptr = NULL;
    esp_err_t e = esp_partition_mmap(p, 0, len, ESP_PARTITION_MMAP_DATA, &ptr, &s->map[slot]);
    if (e != ESP_OK) return MF_ERR_IO;
    s->mapped[slot] = 1;
    *data = ptr;
    return MF_OK;
}

void mf_slots_unmap(mf_slots *s, int slot)
{
    if (slot < 0 || slot >= MF_SLOT_COUNT || !s->mapped[slot]) return;
    esp_partition_munmap(s->map[slot]);
    s->mapped[slot] = 0;
}
