/* HTTP with esp_http_client: open, write the body, fetch the headers (captured by the event
 * handler), then read the body in buffer-sized pieces into the sink. An https gateway's
 * certificate is checked against the Kconfig choice MODELFERRY_TLS_TRUST: ESP-IDF's
 * certificate bundle, a CA certificate embedded from a PEM file, or the pinned public keys
 * of the gateways (firmware/README.md "TLS to the gateway, and pinning"). */
#include "modelferry/mf_port_http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "esp_http_client.h"
#include "sdkconfig.h"
#ifdef CONFIG_MODELFERRY_TLS_CERT_BUNDLE
#include "esp_crt_bundle.h"
#endif
#ifdef CONFIG_MODELFERRY_TLS_GATEWAY_PINS
#include <sodium.h>
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"
#endif

#include "mf_http_parse.h"

struct mf_http {
    esp_http_client_handle_t client;
    mf_http_head head;
    char buf[CONFIG_MODELFERRY_HTTP_BUFFER];
};

static struct mf_http http;

#ifdef CONFIG_MODELFERRY_TLS_GATEWAY_PINS
/* The pins of the request under way. esp_http_client's TLS settings are fixed at init, but
 * the hook below runs at each handshake, and every request makes a connection of its own. */
static const uint8_t (*request_pins)[32];
static size_t request_pin_count;
static int pin_refused;
/* mbedtls wants a CA chain to verify against: an empty one, trusted by nothing (as ESP-IDF's
 * bundle does); the pin decides. */
static mbedtls_x509_crt no_ca;

/* Called by mbedtls for each certificate of the chain, the server's own last (depth 0), with
 * what it found wrong (not trusted, another name than the address connected to, dates). The
 * chain is accepted when the server certificate's public key is pinned, whatever the rest
 * says; refused otherwise. The handshake itself proves the server holds that key. */
static int check_pin(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    (void)ctx;
    if (depth > 0) {
        *flags = 0;
        return 0;
    }
    uint8_t digest[32];
    crypto_hash_sha256(digest, crt->pk_raw.p, crt->pk_raw.len);
    *flags = MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    for (size_t i = 0; i < request_pin_count; i++)
        if (sodium_memcmp(digest, request_pins[i], 32) == 0) *flags = 0;
    pin_refused = *flags != 0;
    return 0;
}

/* In place of esp_crt_bundle_attach: esp-tls calls it with each connection's
 * mbedtls_ssl_config, after setting MBEDTLS_SSL_VERIFY_REQUIRED. */
static esp_err_t attach_pins(void *conf)
{
    mbedtls_x509_crt_init(&no_ca);
    mbedtls_ssl_conf_ca_chain(conf, &no_ca, NULL);
    mbedtls_ssl_conf_verify(conf, check_pin, NULL);
    return ESP_OK;
}
#endif

#ifdef CONFIG_MODELFERRY_TLS_PINNED_PEM
/* CONFIG_MODELFERRY_TLS_CA_PEM_FILE, embedded (NUL-terminated) by the component's CMakeLists.txt. */
extern const char modelferry_ca_pem[] __asm__("_binary_modelferry_ca_pem_start");
#endif

static esp_err_t on_event(esp_http_client_event_t *evt)
{
    struct mf_http *h = evt->user_data;
    if (evt->event_id != HTTP_EVENT_ON_HEADER || !evt->header_key || !evt->header_value) return ESP_OK;
    if (strcasecmp(evt->header_key, "ETag") == 0) {
        if (strlen(evt->header_value) < sizeof h->head.etag) strcpy(h->head.etag, evt->header_value);
    } else if (strcasecmp(evt->header_key, "Content-Range") == 0) {
        (void)mf_parse_content_range(evt->header_value, &h->head.range_start, &h->head.range_end, &h->head.range_total);
    } else if (strcasecmp(evt->header_key, "Retry-After") == 0) {
        h->head.retry_after_s = mf_parse_retry_after(evt->header_value);
    }
    return ESP_OK;
}

mf_http *mf_esp_http_new(void)
{
    esp_http_client_config_t config = {
        .url = "http://localhost/",
        .event_handler = on_event,
        .user_data = &http,
        .buffer_size = 1024,
        .disable_auto_redirect = true,
        .keep_alive_enable = false,
#if defined(CONFIG_MODELFERRY_TLS_CERT_BUNDLE)
        .crt_bundle_attach = esp_crt_bundle_attach,
#elif defined(CONFIG_MODELFERRY_TLS_GATEWAY_PINS)
        .crt_bundle_attach = attach_pins,
#elif defined(CONFIG_MODELFERRY_TLS_PINNED_PEM)
        .cert_pem = modelferry_ca_pem,
#ifdef CONFIG_MODELFERRY_TLS_SKIP_NAME_CHECK
        .skip_cert_common_name_check = true,
#endif
#endif
    };
    http.client = esp_http_client_init(&config);
    return http.client ? &http : NULL;
}

static void header(esp_http_client_handle_t c, const char *key, const char *value)
{
    if (value) esp_http_client_set_header(c, key, value);
    else esp_http_client_delete_header(c, key);
}

mf_err mf_http_perform(mf_http *h, const mf_http_request *req, const mf_http_sink *sink)
{
    esp_http_client_handle_t c = h->client;
    memset(&h->head, 0, sizeof h->head);
    h->head.content_length = -1;
    h->head.range_start = h->head.range_end = h->head.range_total = -1;

    char range[40], auth[300];
    if (req->range_start >= 0) snprintf(range, sizeof range, "bytes=%" PRId64 "-", req->range_start);
    if (req->bearer_token) snprintf(auth, sizeof auth, "Bearer %s", req->bearer_token);
    if (esp_http_client_set_url(c, req->url) != ESP_OK) return MF_ERR_INVALID_ARG;
    esp_http_client_set_method(c, strcmp(req->method, "POST") == 0 ? HTTP_METHOD_POST : HTTP_METHOD_GET);
    esp_http_client_set_timeout_ms(c, (int)req->timeout_ms);
    header(c, "If-None-Match", req->if_none_match);
    header(c, "Range", req->range_start >= 0 ? range : NULL);
    header(c, "If-Range", req->range_start >= 0 ? req->if_range : NULL);
    header(c, "Authorization", req->bearer_token ? auth : NULL);
    header(c, "Content-Type", req->content_type);

#ifdef CONFIG_MODELFERRY_TLS_GATEWAY_PINS
    request_pins = req->pins;
    request_pin_count = req->pin_count;
    pin_refused = 0;
#endif
    /* A pin cannot be proven over plain HTTP. */
    if (req->pin_count && strncmp(req->url, "https://", 8) != 0) return MF_ERR_INVALID_ARG;

    mf_err result = MF_OK;
    if (esp_http_client_open(c, (int)req->body_len) != ESP_OK) {
#ifdef CONFIG_MODELFERRY_TLS_GATEWAY_PINS
        if (pin_refused) return MF_ERR_PIN_MISMATCH;
#endif
        return MF_ERR_NETWORK;
    }
    if (req->body_len && esp_http_client_write(c, (const char *)req->body, (int)req->body_len) != (int)req->body_len) {
        result = MF_ERR_NETWORK;
        goto out;
    }
    int64_t length = esp_http_client_fetch_headers(c);
    if (length < 0) { result = MF_ERR_NETWORK; goto out; }
    h->head.status = esp_http_client_get_status_code(c);
    h->head.content_length = esp_http_client_is_chunked_response(c) ? -1 : length;
    if (sink->on_head && sink->on_head(sink->ctx, &h->head)) { result = MF_ERR_ABORTED; goto out; }
    /* 204 and 304 have no body by definition; the completeness check below expects one. */
    if (h->head.status == 204 || h->head.status == 304) goto out;
    for (;;) {
        int n = esp_http_client_read(c, h->buf, sizeof h->buf);
        if (n < 0) { result = MF_ERR_NETWORK; break; }
        if (n == 0) {
            if (!esp_http_client_is_complete_data_received(c)) result = MF_ERR_NETWORK;
            break;
        }
        if (sink->on_body && sink->on_body(sink->ctx, (const uint8_t *)h->buf, (size_t)n)) { result = MF_ERR_ABORTED; break; }
    }
out:
    esp_http_client_close(c);
    return result;
}
