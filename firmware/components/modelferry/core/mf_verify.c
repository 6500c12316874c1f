#include "mf_verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int mf_hex_decode(const char *hex, uint8_t *out, size_t out_len)
{
    if (strlen(hex) != out_len * 2) return -1;
    for (size_t i = 0; i < out_len; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void mf_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

void mf_key_id(const uint8_t public_key[32], char out[17])
{
    uint8_t digest[32];
    crypto_hash_sha256(digest, public_key, 32);
    mf_hex_encode(digest, 8, out);
}

int mf_public_key_from_base64(const char *b64, uint8_t out[32])
{
    size_t len = 0;
    if (sodium_base642bin(out, 32, b64, strlen(b64), NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) return -1;
    return len == 32 ? 0 : -1;
}

size_t mf_signed_message(const mf_assignment *a, char *out, size_t cap)
{
    int n = snprintf(out, cap, "modelferry-v%c:%s:%s:%s:%" PRIu64, a->has_seq ? '2' : '1', a->name, a->version,
                     a->sha256_hex, a->size);
    if (n >= 0 && a->has_seq && (size_t)n < cap) n += snprintf(out + n, cap - (size_t)n, ":%" PRIu64, a->seq);
    return n < 0 ? 0 : (size_t)n;
}

void mf_assignment_fingerprint(const mf_assignment *a, uint8_t out[32])
{
    char message[MF_SIGNED_MESSAGE_MAX];
    size_t len = mf_signed_message(a, message, sizeof message);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)message, len < sizeof message ? len : sizeof message);
    uint8_t is_signed = a->signed_ ? 1 : 0;
    crypto_hash_sha256_update(&st, &is_signed, 1);
    if (is_signed) {
        crypto_hash_sha256_update(&st, a->signature, sizeof a->signature);
        crypto_hash_sha256_update(&st, (const unsigned char *)a->key_id, strlen(a->key_id));
    }
    crypto_hash_sha256_final(&st, out);
}

mf_err mf_verify_assignment(const mf_trust *trust, const mf_assignment *a)
{
    if (trust == NULL || trust->count == 0) return MF_OK;
    if (!a->signed_) return MF_ERR_UNSIGNED;
    for (size_t i = 0; i < trust->count; i++) {
        char id[17];
        mf_key_id(trust->keys[i], id);
        if (strcmp(id, a->key_id) != 0) continue;
        char message[MF_SIGNED_MESSAGE_MAX];
        size_t len = mf_signed_message(a, message, sizeof message);
        if (len == 0 || len >= sizeof message) return MF_ERR_BAD_SIGNATURE;
        if (crypto_sign_verify_detached(a->signature, (const unsigned char *)message, len, trust->keys[i]) != 0)
            return MF_ERR_BAD_SIGNATURE;
        return MF_OK;
    }
    return MF_ERR_UNKNOWN_KEY;
}
