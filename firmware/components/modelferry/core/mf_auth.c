/* AUTH: the device proves its key to the current gateway and gets a token for it (docs/
 * design.md "Device identity"): a single-use challenge, signed as
 * `modelferry-device-v1:<mac>:<challenge>`, traded for a token kept in RAM and sent to that
 * gateway only. A gateway that keeps the device pending is asked again after its
 * Retry-After; a rejected device asks again after the longest backoff. Until it has a
 * token a gateway asked for, the device sends that gateway nothing else: no report, no
 * poll. */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include <sodium.h>

#include "mf_device_key.h"

#define CHALLENGE_MAX 64   /* the gateway's: base64 of 32 bytes */

const char *mf_credentials(mf_client *c)
{
    const char *token = c->gateway.token[c->gateway.index];
    return token[0] ? token : c->cfg->device_token;
}

void mf_saw_status(mf_client *c, int status)
{
    if (status != 401) {
        c->gateway.fresh_token = 0;
        return;
    }
    c->gateway.token[c->gateway.index][0] = '\0';
    c->gateway.auth_asked |= 1u << c->gateway.index;
}

int mf_auth_due(mf_client *c)
{
    return !c->gateway.token[c->gateway.index][0] &&
           (c->cfg->always_authenticate || (c->gateway.auth_asked >> c->gateway.index & 1));
}

void mf_step_auth(mf_client *c, mf_step *s)
{
    if (c->gateway.fresh_token) {
        /* Refused as soon as given: proving the key again at once would loop. */
        c->gateway.fresh_token = 0;
        mf_event(c, "auth", "the token just given was refused");
        mf_step_fail(s, MF_ERR_UNAUTHORIZED, mf_gateway_failed(c));
        return;
    }
    s->outcome = MF_AUTH;
}

/* A string member of the JSON body just received, of 1 to cap-1 printable characters but
 * quote and backslash (it goes into a header, a signed message, a JSON string); -1
 * otherwise. */
static int body_text(mf_client *c, const char *key, char *out, size_t cap)
{
    cJSON *root = cJSON_ParseWithLength(c->body.data, c->body.len);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    int ok = cJSON_IsString(item) && item->valuestring[0] && strlen(item->valuestring) < cap;
    for (const char *p = ok ? item->valuestring : ""; *p; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '"' || *p == '\\') ok = 0;
    if (ok) strcpy(out, item->valuestring);
    cJSON_Delete(root);
    return ok ? 0 : -1;
}

/* POST /v1/devices/{mac}/<what>, no credentials: the proof is the body. */
static mf_err post(mf_client *c, const char *what, const char *body, size_t len, int *status)
{
    char url[MF_BASE_URL_MAX + 64];
    mf_device_url(c, url, sizeof url, what);
    mf_http_request req = mf_request(c, "POST", url);
    req.bearer_token = NULL;
    req.content_type = "application/json";
    req.body = (const uint8_t *)body;
    req.body_len = len;
    return mf_request_small(c, &req, status, NULL);
}

/* The token request: the challenge signed, in the report buffer (no report is under way).
 * body_text let no quote or backslash into the challenge. */
static mf_err prove(mf_client *c, const char *challenge, int *status)
{
    char message[24 + 18 + CHALLENGE_MAX], key[48], signature[96];
    uint8_t sig[64];
    int n = snprintf(message, sizeof message, "modelferry-device-v1:%s:%s", c->mac, challenge);
    mf_err err = mf_device_sign(c->ports.kv, message, (size_t)n, sig);
    if (err != MF_OK) return err;
    sodium_bin2base64(key, sizeof key, c->device_key, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(signature, sizeof signature, sig, 64, sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(c->report.buf, c->report.cap, "{\"publicKey\":\"%s\",\"challenge\":\"%s\",\"signature\":\"%s\"}", key,
                 challenge, signature);
    return post(c, "token", c->report.buf, (size_t)n, status);
}

void mf_run_auth(mf_client *c, mf_step *s)
{
    int status = 0;
    char challenge[CHALLENGE_MAX + 1], code[24] = "";
    char *token = c->gateway.token[c->gateway.index];
    mf_err err = post(c, "challenge", "", 0, &status);
    if (err == MF_OK && status == 200 && body_text(c, "challenge", challenge, sizeof challenge) == 0)
        err = prove(c, challenge, &status);
    if (err == MF_OK && status == 200 && body_text(c, "token", token, MF_TOKEN_MAX) == 0) {
        c->gateway.fresh_token = 1;
        mf_step_go(s);
    } else if (err == MF_OK && status == 403 && body_text(c, "error", code, sizeof code) == 0 &&
               strcmp(code, mf_err_code(MF_ERR_DEVICE_PENDING)) == 0) {
        err = MF_ERR_DEVICE_PENDING;
        mf_step_idle(s, err, (c->body.retry_after_s ? c->body.retry_after_s : 60) * 1000u);
    } else if (strcmp(code, mf_err_code(MF_ERR_DEVICE_REJECTED)) == 0) {
        err = MF_ERR_DEVICE_REJECTED;
        mf_step_idle(s, err, c->cfg->backoff_max_ms);
    } else {
        if (err == MF_OK) err = MF_ERR_UNAUTHORIZED;
        mf_step_fail(s, err, err == MF_ERR_POWER_LOST || err == MF_ERR_IO ? 1000 : mf_gateway_failed(c));
    }
    mf_eventf(c, "auth", "gateway=%s status=%d result=%s wait_ms=%" PRIu32, mf_gateway_url(c), status, mf_err_code(err),
              s->delay_ms);
}
