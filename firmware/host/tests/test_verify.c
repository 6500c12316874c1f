/* Signatures (docs/design.md "Signatures") and the ExecuTorch header check, against the real
 * fixtures and hand-made headers. */
#include <string.h>

#include "mf_executorch.h"
#include "mf_verify.h"
#include "test_util.h"

static void key_id_and_message(void)
{
    uint8_t pk[32];
    for (int i = 0; i < 32; i++) pk[i] = (uint8_t)i;
    char id[17];
    mf_key_id(pk, id);
    CHECK_STR(id, "630dcd2966c43366"); /* sha256(00 01 .. 1f)[:16], from Python's hashlib */
    mf_assignment a = {.size = 1072};
    strcpy(a.name, "kws");
    strcpy(a.version, "2026.11.24-3");
    strcpy(a.sha256_hex, "c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18");
    char msg[256];
    mf_signed_message(&a, msg, sizeof msg);
    CHECK_STR(msg, "modelferry-v1:kws:2026.11.24-3:c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18:1072");
    a.has_seq = 1;
    a.seq = UINT64_MAX;
    mf_signed_message(&a, msg, sizeof msg);
    CHECK_STR(msg, "modelferry-v2:kws:2026.11.24-3:c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18:1072:"
                   "18446744073709551615");
    uint8_t back[32];
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, pk, 32, sodium_base64_VARIANT_ORIGINAL);
    CHECK_EQ(mf_public_key_from_base64(b64, back), 0);
    CHECK(memcmp(back, pk, 32) == 0);
    CHECK_EQ(mf_public_key_from_base64("AAAA", back), -1);
    CHECK_EQ(mf_public_key_from_base64("not base64 at all!", back), -1);
}

/* A v2 signature covers its sequence: it verifies with that sequence only, and a v1 one only
 * without any; the fingerprint tells them apart. */
static void signed_sequence(void)
{
    test_key k;
    test_keygen(&k);
    mf_assignment a = {.size = 1072, .signed_ = 1, .has_seq = 1, .seq = 1764892800123ull};
    strcpy(a.name, "kws");
    strcpy(a.version, "2");
    strcpy(a.sha256_hex, "c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18");
    strcpy(a.key_id, k.key_id);
    char sig[100];
    size_t len;
    test_sign_v2(&k, "kws", "2", a.sha256_hex, 1072, a.seq, sig);
    CHECK_EQ(sodium_base642bin(a.signature, 64, sig, strlen(sig), NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    mf_trust trust = {(const uint8_t(*)[32])k.pk, 1};
    CHECK_EQ(mf_verify_assignment(&trust, &a), MF_OK);
    mf_assignment t = a;
    t.seq++;
    CHECK_EQ(mf_verify_assignment(&trust, &t), MF_ERR_BAD_SIGNATURE);
    t = a;
    t.has_seq = 0;
    t.seq = 0;
    CHECK_EQ(mf_verify_assignment(&trust, &t), MF_ERR_BAD_SIGNATURE);
    uint8_t f1[32], f2[32];
    mf_assignment_fingerprint(&a, f1);
    mf_assignment_fingerprint(&t, f2);
    CHECK(memcmp(f1, f2, 32) != 0);
    /* A v1 signature presented with a sequence (0 included) does not verify. */
    test_sign(&k, "kws", "2", a.sha256_hex, 1072, sig);
    CHECK_EQ(sodium_base642bin(t.signature, 64, sig, strlen(sig), NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    CHECK_EQ(mf_verify_assignment(&trust, &t), MF_OK);
    t.has_seq = 1;
    CHECK_EQ(mf_verify_assignment(&trust, &t), MF_ERR_BAD_SIGNATURE);
}

static void signature_policy(void)
{
    test_key k, other;
    test_keygen(&k);
    test_keygen(&other);
    mf_assignment a = {.size = 1072, .signed_ = 1};
    strcpy(a.name, "kws");
    strcpy(a.version, "1");
    strcpy(a.sha256_hex, "c9608ddefe472e0ebd8d4a900dc0957d893381c928dd1c648a439a6e88470b18");
    char sig[100];
    size_t len;
    test_sign(&k, "kws", "1", a.sha256_hex, 1072, sig);
    CHECK_EQ(sodium_base642bin(a.signature, 64, sig, strlen(sig), NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    strcpy(a.key_id, k.key_id);

    uint8_t keys[2][32];
    memcpy(keys[0], other.pk, 32);
    memcpy(keys[1], k.pk, 32);
    const uint8_t(*trusted)[32] = (const uint8_t(*)[32])keys;
    mf_trust both = {trusted, 2}, only_other = {trusted, 1}, none = {NULL, 0};
    CHECK_EQ(mf_verify_assignment(&both, &a), MF_OK);
    CHECK_EQ(mf_verify_assignment(&only_other, &a), MF_ERR_UNKNOWN_KEY);
    CHECK_EQ(mf_verify_assignment(&none, &a), MF_OK);
    /* Every signed field matters. */
    mf_assignment t = a;
    t.size = 1073;
    CHECK_EQ(mf_verify_assignment(&both, &t), MF_ERR_BAD_SIGNATURE);
    t = a;
    strcpy(t.version, "2");
    CHECK_EQ(mf_verify_assignment(&both, &t), MF_ERR_BAD_SIGNATURE);
    t = a;
    strcpy(t.name, "kwt");
    CHECK_EQ(mf_verify_assignment(&both, &t), MF_ERR_BAD_SIGNATURE);
    t = a;
    t.sha256_hex[0] = 'd';
    CHECK_EQ(mf_verify_assignment(&both, &t), MF_ERR_BAD_SIGNATURE);
    t = a;
    t.signature[10] ^= 1;
    CHECK_EQ(mf_verify_assignment(&both, &t), MF_ERR_BAD_SIGNATURE);
    t = a;
    t.signed_ = 0;
    CHECK_EQ(mf_verify_assignment(&both, &t), MF_ERR_UNSIGNED);
    CHECK_EQ(mf_verify_assignment(&none, &t), MF_OK);
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static void executorch_header(void)
{
    size_t len;
    uint8_t *add = test_fixture("add.pte", &len);
    CHECK_EQ(len, 1072);
    CHECK(mf_executorch_check(add, 48, len) == NULL);
    free(add);
    uint8_t *mul = test_fixture("mul.pte", &len);
    CHECK(mf_executorch_check(mul, 48, len) == NULL);
    free(mul);

    uint8_t h[48];
    uint8_t *p = test_program(1000, 1);
    memcpy(h, p, 48);
    free(p);
    CHECK(mf_executorch_check(h, 48, 1000) == NULL);
    CHECK(mf_executorch_check(h, 7, 7) != NULL);
    uint8_t t[48];
    memcpy(t, h, 48); t[4] = 'X'; CHECK(mf_executorch_check(t, 48, 1000) != NULL);
    memcpy(t, h, 48); t[7] = 'a'; CHECK(mf_executorch_check(t, 48, 1000) != NULL);
    memcpy(t, h, 48); put32(t + 12, 23); CHECK(mf_executorch_check(t, 48, 1000) != NULL);        /* length < 24 */
    memcpy(t, h, 48); put32(t + 12, 2000); CHECK(mf_executorch_check(t, 48, 1000) != NULL);      /* past the end */
    memcpy(t, h, 48); put64(t + 16, 1001); CHECK(mf_executorch_check(t, 48, 1000) != NULL);      /* program > file */
    memcpy(t, h, 48); put64(t + 16, 20); CHECK(mf_executorch_check(t, 48, 1000) != NULL);        /* program < header */
    memcpy(t, h, 48); put64(t + 24, 100); CHECK(mf_executorch_check(t, 48, 1000) != NULL);       /* segments inside the program */
    memcpy(t, h, 48); put64(t + 32, 501); CHECK(mf_executorch_check(t, 48, 1000) != NULL);       /* segments past the end */
    memcpy(t, h, 48); put64(t + 32, UINT64_MAX); CHECK(mf_executorch_check(t, 48, 1000) != NULL); /* no wrap-around */
    memcpy(t, h, 48); put64(t + 24, 0); put64(t + 32, 1000); CHECK(mf_executorch_check(t, 48, 1000) == NULL);
    memcpy(t, h, 48); put32(t + 12, 24); CHECK(mf_executorch_check(t, 48, 1000) == NULL);        /* no segment size */
    CHECK(mf_executorch_check(h, 30, 1000) != NULL);                                               /* ends inside */
    memcpy(t, h, 48); memcpy(t + 8, "eh01", 4); CHECK(mf_executorch_check(t, 48, 1000) == NULL);  /* no extended header */
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    RUN(key_id_and_message);
    RUN(signature_policy);
    RUN(signed_sequence);
    RUN(executorch_header);
    DONE();
}
