/* Clock port (ESP-IDF: esp_timer + vTaskDelay; POSIX: CLOCK_MONOTONIC). */
#ifndef MF_PORT_CLOCK_H
#define MF_PORT_CLOCK_H

#include <stdint.h>

/* Milliseconds since boot, monotonic. */
uint64_t mf_clock_now_ms(void);
void mf_clock_sleep_ms(uint32_t ms);

#endif
