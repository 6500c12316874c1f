#pragma once
#include "esp_err.h"
uint32_t esp_get_free_heap_size(void);
