/* Clock (esp_timer, FreeRTOS delay), random (the hardware RNG) and identity (the base MAC
 * from eFuse, free heap). */
#include "modelferry/mf_port_clock.h"
#include "modelferry/mf_port_identity.h"
#include "modelferry/mf_port_random.h"

#include "esp_mac.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

struct mf_clock {
    int unused;
};

static struct mf_clock clock_source;

mf_clock *mf_esp_clock(void) { return &clock_source; }

uint64_t mf_clock_now_ms(mf_clock *clock)
{
    (void)clock;
    return (uint64_t)esp_timer_get_time() / 1000;
}

void mf_clock_sleep_ms(mf_clock *clock, uint32_t ms)
{
    (void)clock;
    /* In slices: pdMS_TO_TICKS overflows on long waits. */
    while (ms > 0) {
        uint32_t slice = ms > 60000 ? 60000 : ms;
        vTaskDelay(pdMS_TO_TICKS(slice) ? pdMS_TO_TICKS(slice) : 1);
        ms -= slice;
    }
}

struct mf_random {
    int unused;
};

static struct mf_random random_source;

mf_random *mf_esp_random(void) { return &random_source; }

uint32_t mf_random_u32(mf_random *random)
{
    (void)random;
    return esp_random();
}

struct mf_identity {
    int unused;
};

static struct mf_identity identity;

mf_identity *mf_esp_identity(void) { return &identity; }

mf_err mf_identity_mac(mf_identity *id, uint8_t mac[6])
{
    (void)id;
    return esp_efuse_mac_get_default(mac) == ESP_OK ? MF_OK : MF_ERR_IO;
}

long mf_identity_free_heap(mf_identity *id)
{
    (void)id;
    return (long)esp_get_free_heap_size();
}
