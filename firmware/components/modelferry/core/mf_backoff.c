#include "mf_backoff.h"

uint32_t mf_backoff_ceiling(const mf_backoff *b)
{
    uint64_t ceiling = b->base_ms;
    for (uint32_t i = 0; i < b->failures && ceiling < b->max_ms; i++) ceiling *= 2;
    return ceiling > b->max_ms ? b->max_ms : (uint32_t)ceiling;
}

uint32_t mf_backoff_next(mf_backoff *b, uint32_t random)
{
    uint32_t ceiling = mf_backoff_ceiling(b);
    uint32_t half = ceiling / 2;
    if (b->failures < UINT32_MAX) b->failures++;
    return half + random % (ceiling - half + 1);
}


uint32_t mf_poll_delay_ms(uint32_t interval_s, uint32_t jitter_s, uint32_t random)
{
    uint64_t interval = (uint64_t)interval_s * 1000, jitter = (uint64_t)jitter_s * 1000;
    uint64_t low = interval > jitter ? interval - jitter : 0;
    uint64_t span = interval + jitter - low;
    uint64_t delay = low + (uint64_t)random % (span + 1);
    return delay > UINT32_MAX ? UINT32_MAX : (uint32_t)delay;
}
