/* The device's identity key (docs/security.md "Device identity"): an Ed25519 key pair whose
 * 32-byte seed the key-value store keeps. */
#ifndef MF_DEVICE_KEY_H
#define MF_DEVICE_KEY_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/modelferry.h"

#define MF_KEY_DEVICE "mf_id"

/* Signs `message` with the device's secret key; the secret is wiped before it returns. */
mf_err mf_device_sign(mf_kv *kv, const char *message, size_t len, uint8_t signature[64]);

#endif
