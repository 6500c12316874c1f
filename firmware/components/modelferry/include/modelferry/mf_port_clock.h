/* Clock port (ESP-IDF: esp_timer and vTaskDelay; POSIX: CLOCK_MONOTONIC, or a clock that
 * moves only when a test says so). */
#ifndef MF_PORT_CLOCK_H
#define MF_PORT_CLOCK_H

#include <stdint.h>

typedef struct mf_clock mf_clock;

/* Milliseconds since boot, monotonic. */
uint64_t mf_clock_now_ms(mf_clock *clock);
void mf_clock_sleep_ms(mf_clock *clock, uint32_t ms);

#endif
