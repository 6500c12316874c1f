#include "mf_assignment.h"

#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include <sodium.h>

#include "mf_verify.h"

static mf_err refuse(char *why, size_t why_len, const char *what)
{
    if (why && why_len) snprintf(why, why_len, "%s", what);
    return MF_ERR_PROTOCOL;
}

static int is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static int is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

int mf_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MF_MODEL_NAME_MAX || !is_lower_alnum(s[0])) return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-') return 0;
    return 1;
}

int mf_valid_version(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MF_MODEL_VERSION_MAX || !is_alnum(s[0])) return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '+' && s[i] != '-') return 0;
    return 1;
}

/* A JSON string member of at most max characters with no NUL inside; NULL otherwise. */
static const char *string_member(const cJSON *obj, const char *key, size_t max)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(item) || item->valuestring == NULL) return NULL;
    if (strlen(item->valuestring) > max) return NULL;
    return item->valuestring;
}

/* A JSON number that is a whole number in [min, max]. cJSON keeps doubles, which hold
 * integers exactly up to 2^53: far above any bound used here. */
static int whole_member(const cJSON *obj, const char *key, double min, double max, uint64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= min && v <= max) || v != (double)(uint64_t)v) return 0;
    *out = (uint64_t)v;
    return 1;
}

/* signatureSeq: absent or null (a v1 signature, or none), or a decimal u64 as a string (JSON
 * numbers lose integers past 2^53), without sign or leading zero. 0 when it is one. */
static int seq_member(const cJSON *model, mf_assignment *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(model, "signatureSeq");
    if (item == NULL || cJSON_IsNull(item)) return 0;
    const char *s = cJSON_IsString(item) ? item->valuestring : "";
    size_t n = strlen(s);
    if (n == 0 || n > 20 || (s[0] == '0' && n > 1)) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    out->seq = v;
    out->has_seq = 1;
    return 0;
}

/* A relative URL is the gateway's own route for exactly this artifact or delta
 * (`expected`); an absolute one the client holds to the gateway's origin (mf_same_origin). */
static int url_ok(const char *url, const char *expected)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0 || strcmp(url, expected) == 0;
}

/* The optional `delta` beside the model; NULL when absent or valid, else what is wrong. */
static const char *parse_delta(const cJSON *root, mf_assignment *out)
{
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(root, "delta");
    if (delta == NULL) return NULL;
    if (!cJSON_IsObject(delta)) return "delta is not an object";
    mf_delta_offer *d = &out->delta;
    const char *s;
    uint64_t n;
    if (!(s = string_member(delta, "from", 64)) || mf_hex_decode(s, d->from, 32) != 0) return "delta.from";
    char from_hex[65];
    strcpy(from_hex, s);
    /* A delta from the model itself would make nothing new. */
    if (memcmp(d->from, out->sha256, 32) == 0) return "delta.from";
    if (!(s = string_member(delta, "sha256", 64)) || mf_hex_decode(s, d->sha256, 32) != 0) return "delta.sha256";
    strcpy(d->sha256_hex, s);
    /* The applier counts delta bytes in 32 bits. */
    if (!whole_member(delta, "size", 1, 4294967295.0, &n)) return "delta.size";
    d->size = n;
    char expected[160];
    snprintf(expected, sizeof expected, "/v1/deltas/%s/%s", from_hex, out->sha256_hex);
    if (!(s = string_member(delta, "url", MF_MODEL_URL_MAX - 1)) || !url_ok(s, expected)) return "delta.url";
    strcpy(d->url, s);
    d->present = 1;
    return NULL;
}

mf_err mf_assignment_parse(const char *body, size_t len, mf_assignment *out, char *why, size_t why_len)
{
    if (body == NULL || out == NULL) return MF_ERR_INVALID_ARG;
    if (len > MF_ASSIGNMENT_BODY_MAX) return refuse(why, why_len, "assignment body too large");
    memset(out, 0, sizeof *out);

    cJSON *root = cJSON_ParseWithLength(body, len);
    if (root == NULL) return refuse(why, why_len, "assignment is not JSON");
    mf_err err = MF_ERR_PROTOCOL;
    const char *problem = NULL;
    const cJSON *model, *poll, *sig, *kid;
    const char *s;
    uint64_t n;

    if (!cJSON_IsObject(root)) { problem = "assignment is not an object"; goto done; }
    if (!(s = string_member(root, "device", 17)) || strlen(s) != 17) { problem = "device"; goto done; }
    memcpy(out->device, s, 18);

    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) { problem = "model is not an object"; goto done; }
    if (!(s = string_member(model, "name", MF_MODEL_NAME_MAX)) || !mf_valid_name(s)) { problem = "model.name"; goto done; }
    strcpy(out->name, s);
    if (!(s = string_member(model, "version", MF_MODEL_VERSION_MAX)) || !mf_valid_version(s)) { problem = "model.version"; goto done; }
    strcpy(out->version, s);
    if (!(s = string_member(model, "sha256", 64)) || mf_hex_decode(s, out->sha256, 32) != 0) { problem = "model.sha256"; goto done; }
    strcpy(out->sha256_hex, s);
    /* 2^53: any larger size is not exactly representable in JSON numbers cJSON reads. */
    if (!whole_member(model, "size", 1, 9007199254740991.0, &n)) { problem = "model.size"; goto done; }
    out->size = n;
    char expected[80];
    snprintf(expected, sizeof expected, "/v1/artifacts/%s", out->sha256_hex);
    if (!(s = string_member(model, "url", MF_MODEL_URL_MAX - 1)) || !url_ok(s, expected)) { problem = "model.url"; goto done; }
    strcpy(out->url, s);

    sig = cJSON_GetObjectItemCaseSensitive(model, "signature");
    kid = cJSON_GetObjectItemCaseSensitive(model, "keyId");
    if (sig == NULL || kid == NULL) { problem = "model.signature, model.keyId (null when unsigned)"; goto done; }
    if (cJSON_IsNull(sig) && cJSON_IsNull(kid)) {
        out->signed_ = 0;
    } else if (cJSON_IsString(sig) && cJSON_IsString(kid)) {
        size_t sig_len = 0;
        const char *b64 = sig->valuestring;
        if (strlen(b64) > MF_SIGNATURE_B64_MAX ||
            sodium_base642bin(out->signature, sizeof out->signature, b64, strlen(b64), NULL, &sig_len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 || sig_len != 64) {
            problem = "model.signature"; goto done;
        }
        uint8_t kid_bytes[8];
        if (strlen(kid->valuestring) != 16 || mf_hex_decode(kid->valuestring, kid_bytes, 8) != 0) {
            problem = "model.keyId"; goto done;
        }
        strcpy(out->key_id, kid->valuestring);
        out->signed_ = 1;
    } else {
        problem = "model.signature, model.keyId (both strings or both null)"; goto done;
    }
    /* A sequence is part of a signature (modelferry-v2). */
    if (seq_member(model, out) != 0 || (out->has_seq && !out->signed_)) { problem = "model.signatureSeq"; goto done; }

    if ((problem = parse_delta(root, out)) != NULL) goto done;

    poll = cJSON_GetObjectItemCaseSensitive(root, "poll");
    if (!cJSON_IsObject(poll)) { problem = "poll is not an object"; goto done; }
    if (!whole_member(poll, "intervalSeconds", 1, 86400, &n)) { problem = "poll.intervalSeconds"; goto done; }
    out->poll_interval_s = (uint32_t)n;
    if (!whole_member(poll, "jitterSeconds", 0, 86400, &n)) { problem = "poll.jitterSeconds"; goto done; }
    out->poll_jitter_s = (uint32_t)n;
    err = MF_OK;

done:
    cJSON_Delete(root);
    if (err != MF_OK) {
        if (problem == NULL) problem = "assignment";
        return refuse(why, why_len, problem);
    }
    return MF_OK;
}
