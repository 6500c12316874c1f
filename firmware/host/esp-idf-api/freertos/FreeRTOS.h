#pragma once
#include <stdint.h>
typedef uint32_t TickType_t;
typedef int BaseType_t;
#define pdMS_TO_TICKS(ms) ((TickType_t)((uint64_t)(ms) * 100 / 1000))
#define pdFALSE 0
#define pdTRUE 1
#define portMAX_DELAY 0xffffffffu
