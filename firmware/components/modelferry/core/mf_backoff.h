/* Waiting: exponential backoff with jitter after failures, and poll intervals with jitter,
 * so a fleet that failed together does not retry together. */
#ifndef MF_BACKOFF_H
#define MF_BACKOFF_H

#include <stdint.h>

typedef struct {
    uint32_t base_ms;
    uint32_t max_ms;
    uint32_t failures;
} mf_backoff;

/* The ceiling for the current failure count: min(max, base * 2^failures). */
uint32_t mf_backoff_ceiling(const mf_backoff *b);
/* A delay in [ceiling/2, ceiling] ("equal jitter"), then counts one more failure. */
uint32_t mf_backoff_next(mf_backoff *b, uint32_t random);

/* interval ± jitter in milliseconds (never below 0), from a random 32-bit value. */
uint32_t mf_poll_delay_ms(uint32_t interval_s, uint32_t jitter_s, uint32_t random);

#endif
