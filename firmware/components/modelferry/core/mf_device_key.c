/* The device's key pair, from the seed in the key-value store: made from the hardware
 * random source on first use (the application starts the client with the radio up, so
 * esp_random draws true random numbers), or written there at manufacture. The secret key
 * exists only on the stack of the call that needs it, and is wiped after. */
#include "mf_device_key.h"

#include <string.h>
#include <sodium.h>

/* A stored value that is not a seed (torn, or of another firmware) is replaced: the device
 * then offers a new key, which a gateway that knew the old one refuses until an operator
 * accepts it, rather than the update client stopping for good. */
static mf_err seed_of(mf_kv *kv, uint8_t seed[32])
{
    size_t len = 0;
    mf_err err = mf_kv_get(kv, MF_KEY_DEVICE, seed, 32, &len);
    if (err == MF_OK && len == 32) return MF_OK;
    if (err == MF_ERR_POWER_LOST) return err;
    randombytes_buf(seed, 32);
    return mf_kv_set(kv, MF_KEY_DEVICE, seed, 32);
}

static mf_err key_pair(mf_kv *kv, uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    mf_err err = seed_of(kv, seed);
    if (err == MF_OK) crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
    return err;
}

mf_err mf_device_public_key(mf_kv *kv, uint8_t public_key[32])
{
    uint8_t sk[64];
    if (sodium_init() < 0) return MF_ERR_NO_MEMORY;
    mf_err err = key_pair(kv, public_key, sk);
    sodium_memzero(sk, sizeof sk);
    return err;
}

mf_err mf_device_sign(mf_kv *kv, const char *message, size_t len, uint8_t signature[64])
{
    uint8_t pk[32], sk[64];
    mf_err err = key_pair(kv, pk, sk);
    if (err == MF_OK) crypto_sign_detached(signature, NULL, (const unsigned char *)message, len, sk);
    sodium_memzero(sk, sizeof sk);
    return err;
}
