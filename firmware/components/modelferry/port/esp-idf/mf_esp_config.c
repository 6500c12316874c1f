/* The client's configuration from Kconfig, and the ports of this build. */
#include "modelferry/mf_esp.h"

#include <string.h>
#include <sodium.h>

#include "sdkconfig.h"
#include "mf_verify.h"

mf_slots *mf_esp_slots_open(void);
mf_kv *mf_esp_kv_open(void);
mf_http *mf_esp_http_new(void);
mf_identity *mf_esp_identity(void);
mf_discovery *mf_esp_discovery(void);
mf_clock *mf_esp_clock(void);
mf_random *mf_esp_random(void);

#define MAX_KEYS 4
#define MAX_NAMES 256

static uint8_t keys[MAX_KEYS][32];
static char keys_text[] = CONFIG_MODELFERRY_TRUSTED_KEYS;
#ifdef CONFIG_MODELFERRY_TLS_GATEWAY_PINS
static uint8_t pins[MF_PINS_MAX][32];
static char pins_text[] = CONFIG_MODELFERRY_GATEWAY_PINS;
#endif
static char operators_text[] = CONFIG_MODELFERRY_OPERATORS;
static char delegates_text[] = CONFIG_MODELFERRY_DELEGATES;
static const char *operators[MAX_NAMES], *delegates[MAX_NAMES];

/* Splits a comma-separated Kconfig string in place. */
static size_t split(char *text, const char **out, size_t max)
{
    size_t n = 0;
    for (char *p = text; *p && n < max;) {
        while (*p == ',' || *p == ' ') *p++ = '\0';
        if (!*p) break;
        out[n++] = p;
        while (*p && *p != ',') p++;
    }
    for (char *p = text; *p; p++)
        if (*p == ' ') *p = '\0';
    return n;
}

mf_err mf_esp_config_from_kconfig(mf_config *cfg)
{
    mf_config_defaults(cfg);
    cfg->fallback_url = CONFIG_MODELFERRY_FALLBACK_URL;
#ifdef CONFIG_MODELFERRY_DISCOVERY
    cfg->discovery = 1;
#else
    cfg->discovery = 0;
#endif
    cfg->service = CONFIG_MODELFERRY_SERVICE;
    cfg->discovery_timeout_ms = CONFIG_MODELFERRY_DISCOVERY_TIMEOUT_MS;
    cfg->poll_interval_s = CONFIG_MODELFERRY_POLL_INTERVAL_S;
    cfg->poll_jitter_s = CONFIG_MODELFERRY_POLL_JITTER_S;
    cfg->long_poll_s = CONFIG_MODELFERRY_LONG_POLL_S;
    cfg->device_token = CONFIG_MODELFERRY_DEVICE_TOKEN[0] ? CONFIG_MODELFERRY_DEVICE_TOKEN : NULL;
#ifdef CONFIG_MODELFERRY_ALWAYS_AUTHENTICATE
    cfg->always_authenticate = 1;
#endif
    cfg->confirm_boots = CONFIG_MODELFERRY_CONFIRM_BOOTS;
    cfg->confirm_timeout_s = CONFIG_MODELFERRY_CONFIRM_TIMEOUT_S;
#ifdef CONFIG_MODELFERRY_DELTAS
    cfg->deltas = 1;
#else
    cfg->deltas = 0;
#endif

    const char *key_strings[MAX_KEYS];
    size_t n = split(keys_text, key_strings, MAX_KEYS);
    /* A key that does not decode must not quietly turn signature checks off. */
    for (size_t i = 0; i < n; i++)
        if (mf_public_key_from_base64(key_strings[i], keys[i]) != 0) return MF_ERR_INVALID_ARG;
    cfg->trusted_keys = (const uint8_t(*)[32])keys;
    cfg->trusted_key_count = n;
#if defined(CONFIG_MODELFERRY_TLS_GATEWAY_PINS)
    /* Built to pin: never start without a pin that decodes. */
    const char *pin_strings[MF_PINS_MAX + 1];
    n = split(pins_text, pin_strings, MF_PINS_MAX + 1);
    if (n == 0 || n > MF_PINS_MAX) return MF_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (mf_hex_decode(pin_strings[i], pins[i], 32) != 0) return MF_ERR_INVALID_ARG;
    cfg->gateway_pins = (const uint8_t(*)[32])pins;
    cfg->gateway_pin_count = n;
#elif defined(CONFIG_MODELFERRY_TLS_PINNED_PEM)
    cfg->prefer_tls = 1;
#endif

    cfg->capabilities.operators = operators;
    cfg->capabilities.operator_count = split(operators_text, operators, MAX_NAMES);
    cfg->capabilities.delegates = delegates;
    cfg->capabilities.delegate_count = split(delegates_text, delegates, MAX_NAMES);
    cfg->capabilities.arena_bytes = CONFIG_MODELFERRY_ARENA_BYTES;
    cfg->capabilities.runtime = CONFIG_MODELFERRY_RUNTIME;
    return MF_OK;
}

mf_err mf_esp_ports_open(mf_ports *ports)
{
    memset(ports, 0, sizeof *ports);
    ports->slots = mf_esp_slots_open();
    ports->kv = mf_esp_kv_open();
    ports->http = mf_esp_http_new();
    ports->identity = mf_esp_identity();
    ports->discovery = mf_esp_discovery();
    ports->clock = mf_esp_clock();
    ports->random = mf_esp_random();
    if (!ports->slots || !ports->kv || !ports->http) return MF_ERR_NOT_FOUND;
    return MF_OK;
}

mf_err mf_esp_device_key_base64(const mf_ports *ports, char out[45])
{
    uint8_t key[32];
    mf_err err = mf_device_public_key(ports->kv, key);
    if (err == MF_OK) sodium_bin2base64(out, 45, key, 32, sodium_base64_VARIANT_ORIGINAL);
    return err;
}
