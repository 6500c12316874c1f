#define _GNU_SOURCE
#include "mf_posix.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include <sodium.h>

#include "mf_http_parse.h"

struct mf_http {
    CURL *curl;
    uint64_t max_rate;
};

typedef struct {
    const mf_http_sink *sink;
    mf_http_head head;
    int head_done;
    int aborted;
    int64_t received;
} transfer;

mf_http *mf_posix_http_new(void)
{
    static int global_done;
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return NULL;
        global_done = 1;
    }
    mf_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) { free(h); return NULL; }
    return h;
}

void mf_posix_http_set_max_rate(mf_http *h, uint64_t bytes_per_second) { h->max_rate = bytes_per_second; }

void mf_posix_http_free(mf_http *h)
{
    if (!h) return;
    curl_easy_cleanup(h->curl);
    free(h);
}

static void reset_head(mf_http_head *head)
{
    memset(head, 0, sizeof *head);
    head->content_length = -1;
    head->range_start = head->range_end = head->range_total = -1;
}

static int deliver_head(transfer *t)
{
    t->head_done = 1;
    if (t->sink->on_head && t->sink->on_head(t->sink->ctx, &t->head)) { t->aborted = 1; return 1; }
    return 0;
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata)
{
    transfer *t = userdata;
    size_t len = size * nitems;
    char line[512];
    size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buffer, n);
    line[n] = '\0';
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n')) line[--n] = '\0';

    if (strncmp(line, "HTTP/", 5) == 0) {
        /* A new status line (after a 1xx): start over. */
        reset_head(&t->head);
        t->head_done = 0;
        const char *sp = strchr(line, ' ');
        int64_t status = sp ? mf_parse_decimal(sp + 1, NULL) : -1;
        t->head.status = status > 0 && status < 1000 ? (int)status : 0;
        return len;
    }
    if (n == 0) {
        if (t->head.status >= 200 && !t->head_done && deliver_head(t)) return 0;
        return len;
    }
    char *colon = strchr(line, ':');
    if (!colon) return len;
    *colon = '\0';
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    if (strcasecmp(line, "Content-Length") == 0) {
        const char *end = value;
        int64_t v = mf_parse_decimal(value, &end);
        t->head.content_length = v >= 0 && *end == '\0' ? v : -1;
    } else if (strcasecmp(line, "ETag") == 0) {
        if (strlen(value) < sizeof t->head.etag) strcpy(t->head.etag, value);
    } else if (strcasecmp(line, "Content-Range") == 0) {
        (void)mf_parse_content_range(value, &t->head.range_start, &t->head.range_end, &t->head.range_total);
    } else if (strcasecmp(line, "Retry-After") == 0) {
        t->head.retry_after_s = mf_parse_retry_after(value);
    }
    return len;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    transfer *t = userdata;
    size_t len = size * nmemb;
    if (!t->head_done && deliver_head(t)) return 0;
    if (t->head.status < 200) return len;
    t->received += (int64_t)len;
    if (t->sink->on_body && t->sink->on_body(t->sink->ctx, (const uint8_t *)ptr, len)) { t->aborted = 1; return 0; }
    return len;
}

mf_err mf_http_perform(mf_http *h, const mf_http_request *req, const mf_http_sink *sink)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    transfer t;
    memset(&t, 0, sizeof t);
    t.sink = sink;
    reset_head(&t.head);

    struct curl_slist *headers = NULL;
    char line[320];
    headers = curl_slist_append(headers, "Expect:");
    if (req->if_none_match) {
        snprintf(line, sizeof line, "If-None-Match: %s", req->if_none_match);
        headers = curl_slist_append(headers, line);
    }
    if (req->if_range && req->range_start >= 0) {
        snprintf(line, sizeof line, "If-Range: %s", req->if_range);
        headers = curl_slist_append(headers, line);
    }
    if (req->bearer_token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", req->bearer_token);
        headers = curl_slist_append(headers, line);
    }
    if (req->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type);
        headers = curl_slist_append(headers, line);
    }
    char range[32];
    if (req->range_start >= 0) {
        snprintf(range, sizeof range, "%" PRId64 "-", req->range_start);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    if (h->max_rate) curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)h->max_rate);
    /* Pinned: the server's public key is the trust, not a CA nor the name in its certificate
     * (curl checks the pin whatever VERIFYPEER says, before a byte of the request is sent). */
    char pinned[MF_PINS_MAX * 53];
    if (req->pin_count) {
        if (req->pin_count > MF_PINS_MAX || strncmp(req->url, "https://", 8) != 0) {
            curl_slist_free_all(headers);
            return MF_ERR_INVALID_ARG;
        }
        char *p = pinned;
        for (size_t i = 0; i < req->pin_count; i++) {
            p += sprintf(p, "%ssha256//", i ? ";" : "");
            sodium_bin2base64(p, 45, req->pins[i], 32, sodium_base64_VARIANT_ORIGINAL);
            p += 44;
        }
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, pinned);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);

    if (t.aborted) return MF_ERR_ABORTED;
    if (rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH) return MF_ERR_PIN_MISMATCH;
    if (rc != CURLE_OK) return MF_ERR_NETWORK;
    if (!t.head_done) {
        if (t.head.status < 200) return MF_ERR_PROTOCOL;
        if (deliver_head(&t)) return MF_ERR_ABORTED;
    }
    /* curl ends a body at its Content-Length; one that closed early is CURLE_PARTIAL_FILE. */
    if (t.head.content_length >= 0 && t.received != t.head.content_length && t.head.status != 304 &&
        t.head.status != 204)
        return MF_ERR_NETWORK;
    return MF_OK;
}
