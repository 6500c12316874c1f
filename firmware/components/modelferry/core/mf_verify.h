/* Digests and signatures (docs/design.md "Signatures"), with libsodium. */
#ifndef MF_VERIFY_H
#define MF_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sodium.h>
#include "modelferry/mf_err.h"
#include "mf_assignment.h"

/* Lower-case hex only (the contract's canonical form). 0 on success. */
int mf_hex_decode(const char *hex, uint8_t *out, size_t out_len);
void mf_hex_encode(const uint8_t *in, size_t len, char *out /* 2*len+1 */);

/* keyId: the first 16 hex characters of sha256(raw 32-byte public key). */
void mf_key_id(const uint8_t public_key[32], char out[17]);

/* Decodes a base64 raw 32-byte ed25519 public key. 0 on success. */
int mf_public_key_from_base64(const char *b64, uint8_t out[32]);

typedef struct {
    const uint8_t (*keys)[32];
    size_t count;
} mf_trust;

/* The device's signature policy, checked before a byte is downloaded: the signed message
 * binds name, version, sha256 and size, and the download is then held to that sha256.
 * With keys configured a model must be signed by one of them; with none, signatures are
 * not checked (development only). */
mf_err mf_verify_assignment(const mf_trust *trust, const mf_assignment *a);

/* A digest of everything that decides whether an assignment can succeed: the signed
 * message (name, version, sha256, size), the signature and its keyId. */
void mf_assignment_fingerprint(const mf_assignment *a, uint8_t out[32]);

/* The longest: the v2 prefix, name, version, sha256, a 2^53 size, a 20-digit sequence. */
#define MF_SIGNED_MESSAGE_MAX (14 + 65 + 65 + 65 + 17 + 21)

/* Writes `modelferry-v1:<name>:<version>:<sha256>:<size>`, or with a signed sequence
 * `modelferry-v2:<name>:<version>:<sha256>:<size>:<seq>`; returns its length. */
size_t mf_signed_message(const mf_assignment *a, char *out, size_t cap);

#endif
