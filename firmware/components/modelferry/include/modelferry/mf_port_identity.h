/* Identity port: who this device is (ESP-IDF: the base MAC from eFuse; POSIX: a flag). */
#ifndef MF_PORT_IDENTITY_H
#define MF_PORT_IDENTITY_H

#include <stdint.h>
#include "modelferry/mf_err.h"

typedef struct mf_identity mf_identity;

mf_err mf_identity_mac(mf_identity *id, uint8_t mac[6]);
/* Free heap in bytes for reports, or -1 when the port cannot tell. */
long mf_identity_free_heap(mf_identity *id);

#endif
