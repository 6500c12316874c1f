/* Random port: the jitter of backoffs and poll intervals and the choice among gateways of
 * equal prio, so a fleet does not move in step (ESP-IDF: esp_random; POSIX: libsodium's
 * randombytes). Nothing secret is drawn from it. */
#ifndef MF_PORT_RANDOM_H
#define MF_PORT_RANDOM_H

#include <stdint.h>

typedef struct mf_random mf_random;

uint32_t mf_random_u32(mf_random *random);

#endif
