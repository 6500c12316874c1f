/* HTTP port: one request at a time, the response body streamed to a sink.
 * ESP-IDF: esp_http_client. POSIX: libcurl. */
#ifndef MF_PORT_HTTP_H
#define MF_PORT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/mf_err.h"

#define MF_ETAG_MAX 96

typedef struct {
    const char *method;          /* "GET" or "POST" */
    const char *url;             /* absolute http:// or https:// URL */
    const char *if_none_match;   /* an ETag, or NULL */
    int64_t range_start;         /* >= 0: send `Range: bytes=<start>-`; -1: no Range */
    const char *if_range;        /* ETag for If-Range with range_start, or NULL */
    const char *bearer_token;    /* Authorization: Bearer, or NULL */
    /* With any: an https URL whose server certificate's public key (the sha256 of its DER
     * SubjectPublicKeyInfo) is one of these, whatever it names, whoever signed it, whatever
     * its dates (MF_ERR_PIN_MISMATCH otherwise); none: the port's own trust. */
    const uint8_t (*pins)[32];
    size_t pin_count;
    const char *content_type;    /* for a body */
    const uint8_t *body;
    size_t body_len;
    uint32_t timeout_ms;         /* the whole exchange, a long poll included */
} mf_http_request;

typedef struct {
    int status;
    int64_t content_length;      /* -1 when absent */
    char etag[MF_ETAG_MAX];      /* "" when absent or longer than MF_ETAG_MAX - 1 */
    int64_t range_start;         /* from Content-Range on a 206, else -1 */
    int64_t range_end;           /* inclusive, else -1 */
    int64_t range_total;         /* the complete size from Content-Range, else -1 */
    uint32_t retry_after_s;      /* Retry-After in seconds, 0 when absent or not a number */
} mf_http_head;

typedef struct {
    /* Once, when status and headers are in. Non-zero aborts the transfer (MF_ERR_ABORTED). */
    int (*on_head)(void *ctx, const mf_http_head *head);
    /* For each piece of the body, in order. Non-zero aborts the transfer. */
    int (*on_body)(void *ctx, const uint8_t *data, size_t len);
    void *ctx;
} mf_http_sink;

typedef struct mf_http mf_http;

/* Performs the request. MF_OK means a complete response as the server framed it
 * (Content-Length reached, or the last chunk); a body cut short is MF_ERR_NETWORK. A port
 * never delivers more body bytes than a Content-Length announced. */
mf_err mf_http_perform(mf_http *http, const mf_http_request *req, const mf_http_sink *sink);

#endif
