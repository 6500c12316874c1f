#define _GNU_SOURCE
#include "test_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cJSON.h>
#include <sodium.h>

#include "test_util.h"

void ts_write(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    default: return "Status";
    }
}

void ts_respond(int fd, int status, const char *extra_headers, const void *body, size_t len)
{
    char head[2048];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nConnection: close\r\n%s", status, reason(status),
                     extra_headers ? extra_headers : "");
    if (status != 304 && status != 204 && (!extra_headers || !strcasestr(extra_headers, "Content-Length:")))
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    ts_write(fd, head, (size_t)n);
    if (len) ts_write(fd, body, len);
}

static void header_value(const char *headers, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            size_t m = (size_t)(eol - v) < cap - 1 ? (size_t)(eol - v) : cap - 1;
            memcpy(out, v, m);
            out[m] = '\0';
            return;
        }
        p = eol + 2;
    }
}

static void serve_one(ts_server *s, int fd)
{
    size_t cap = 1 << 17, len = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    while (!end) {
        if (len == cap) { free(buf); return; }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) { free(buf); return; }
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    ts_request req;
    memset(&req, 0, sizeof req);
    size_t head_len = (size_t)(end - buf) + 4;
    char *headers = strstr(buf, "\r\n") + 2;
    sscanf(buf, "%15s %1023s", req.method, req.target);
    char saved = buf[head_len];
    buf[head_len] = '\0';
    header_value(headers, "If-None-Match", req.if_none_match, sizeof req.if_none_match);
    header_value(headers, "If-Range", req.if_range, sizeof req.if_range);
    header_value(headers, "Range", req.range, sizeof req.range);
    header_value(headers, "Authorization", req.authorization, sizeof req.authorization);
    char cl[32];
    header_value(headers, "Content-Length", cl, sizeof cl);
    buf[head_len] = saved;
    size_t body_len = cl[0] ? (size_t)strtoul(cl, NULL, 10) : 0;
    if (body_len > cap - head_len) { free(buf); return; }
    while (len < head_len + body_len) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) { free(buf); return; }
        len += (size_t)n;
    }
    req.body = buf + head_len;
    req.body[body_len] = '\0';
    req.body_len = body_len;
    s->handler(s->ctx, &req, fd);
    free(buf);
}

static void *accept_loop(void *arg)
{
    ts_server *s = arg;
    while (!s->stopping) {
        struct pollfd p = {.fd = s->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        serve_one(s, fd);
        shutdown(fd, SHUT_WR);
        /* Drain what the client still sends so close() does not reset the connection. */
        char sink[512];
        struct pollfd q = {.fd = fd, .events = POLLIN};
        while (poll(&q, 1, 20) > 0 && recv(fd, sink, sizeof sink, 0) > 0) {
        }
        close(fd);
    }
    return NULL;
}

void ts_start(ts_server *s, ts_handler handler, void *ctx)
{
    memset(s, 0, sizeof *s);
    s->handler = handler;
    s->ctx = ctx;
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s->listen_fd >= 0);
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(s->listen_fd, 16) == 0);
    socklen_t al = sizeof a;
    getsockname(s->listen_fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", s->port);
    CHECK(pthread_create(&s->thread, NULL, accept_loop, s) == 0);
}

void ts_stop(ts_server *s)
{
    s->stopping = 1;
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* ------------------------------------------------------------------ the scripted gateway */

void tg_init(test_gateway *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    g->poll_content_length = -1;
    g->close_after_bytes = -1;
    g->last_range_start = -1;
    g->delta_close_after_bytes = -1;
    g->delta_last_range_start = -1;
}

void tg_offer_delta(test_gateway *g, const char *from_hex, const uint8_t *bytes, size_t len)
{
    pthread_mutex_lock(&g->lock);
    g->delta = bytes;
    g->delta_len = len;
    snprintf(g->delta_from_hex, sizeof g->delta_from_hex, "%s", from_hex ? from_hex : "");
    if (bytes) test_sha256_hex(bytes, len, g->delta_sha_hex);
    g->delta_announced_size = len;
    pthread_mutex_unlock(&g->lock);
}

void tg_serve(test_gateway *g, const char *name, const char *version, const uint8_t *bytes, size_t len)
{
    pthread_mutex_lock(&g->lock);
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->version, sizeof g->version, "%s", version);
    g->artifact = bytes;
    g->artifact_len = len;
    test_sha256_hex(bytes, len, g->sha_hex);
    g->announced_size = len;
    g->signature[0] = '\0';
    g->key_id[0] = '\0';
    g->seq[0] = '\0';
    g->artifact_url[0] = '\0';
    g->delta_url[0] = '\0';
    pthread_mutex_unlock(&g->lock);
}

static void assignment_body(test_gateway *g, char *out, size_t cap)
{
    char sig[160], kid[40], seq[48] = "", url[300];
    if (g->signature[0]) snprintf(sig, sizeof sig, "\"%s\"", g->signature);
    else strcpy(sig, "null");
    if (g->key_id[0]) snprintf(kid, sizeof kid, "\"%s\"", g->key_id);
    else strcpy(kid, "null");
    char delta[600] = "", delta_url[300];
    if (g->delta_url[0]) snprintf(delta_url, sizeof delta_url, "%s", g->delta_url);
    else snprintf(delta_url, sizeof delta_url, "/v1/deltas/%s/%s", g->delta_from_hex, g->sha_hex);
    if (g->delta)
        snprintf(delta, sizeof delta, "\"delta\":{\"from\":\"%s\",\"url\":\"%s\",\"size\":%llu,\"sha256\":\"%s\"},",
                 g->delta_from_hex, delta_url, (unsigned long long)g->delta_announced_size, g->delta_sha_hex);
    if (g->seq[0]) snprintf(seq, sizeof seq, ",\"signatureSeq\":\"%s\"", g->seq);
    if (g->artifact_url[0]) snprintf(url, sizeof url, "%s", g->artifact_url);
    else snprintf(url, sizeof url, "/v1/artifacts/%s", g->sha_hex);
    snprintf(out, cap,
             "{\"device\":\"02:00:00:00:00:01\",\"model\":{\"name\":\"%s\",\"version\":\"%s\",\"sha256\":\"%s\","
             "\"size\":%llu,\"url\":\"%s\",\"signature\":%s,\"keyId\":%s%s},%s"
             "\"poll\":{\"intervalSeconds\":300,\"jitterSeconds\":30}}",
             g->name, g->version, g->sha_hex, (unsigned long long)g->announced_size, url, sig, kid, seq, delta);
}

/* What serve_bytes sends, and how it misbehaves. */
typedef struct {
    const uint8_t *bytes;
    size_t len;
    const char *sha_hex;           /* the ETag */
    int status;                    /* non-zero: answer only this status */
    int range_as_200, bad_content_range;
    long content_length_delta;     /* added to the Content-Length */
    long *close_after_bytes;       /* >= 0: the body is cut after this many bytes, once */
    long *last_range_start;
} served;

/* An artifact or a delta, with Range as the gateway answers it. Called with the lock held;
 * releases it. */
static void serve_bytes(test_gateway *g, const ts_request *req, int fd, const served *w)
{
    size_t start = 0;
    int status = 200;
    if (req->range[0]) {
        start = strtoul(req->range + 6, NULL, 10);
        *w->last_range_start = (long)start;
        if (!w->range_as_200) status = 206;
    }
    if (w->status || !w->bytes) {
        pthread_mutex_unlock(&g->lock);
        ts_respond(fd, w->status ? w->status : 404, NULL, "{}", 2);
        return;
    }
    if (status == 206 && start >= w->len) {
        pthread_mutex_unlock(&g->lock);
        char h[128];
        snprintf(h, sizeof h, "Content-Range: bytes */%zu\r\n", w->len);
        ts_respond(fd, 416, h, NULL, 0);
        return;
    }
    char h[512];
    size_t body_len = w->len - (status == 206 ? start : 0);
    const uint8_t *from = w->bytes + (status == 206 ? start : 0);
    long cl = (long)body_len + w->content_length_delta;
    int n = snprintf(h, sizeof h, "ETag: \"%s\"\r\nContent-Length: %ld\r\n", w->sha_hex, cl);
    if (status == 206)
        snprintf(h + n, sizeof h - (size_t)n, "Content-Range: bytes %zu-%zu/%zu\r\n", w->bad_content_range ? start + 1 : start,
                 w->len - 1, w->len);
    size_t send_len = body_len;
    if (*w->close_after_bytes >= 0 && (size_t)*w->close_after_bytes < send_len) {
        send_len = (size_t)*w->close_after_bytes;
        *w->close_after_bytes = -1;
    }
    char head[1024];
    int hn = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nConnection: close\r\n%s\r\n", status,
                      status == 206 ? "Partial Content" : "OK", h);
    pthread_mutex_unlock(&g->lock);
    ts_write(fd, head, (size_t)hn);
    ts_write(fd, from, send_len);
}

static const char *json_text(const cJSON *root, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(item) ? item->valuestring : "";
}

/* The proof of POST /v1/devices/{mac}/token: the challenge this gateway gave (once), signed
 * by the key offered over modelferry-device-v1:<mac>:<challenge>. */
static int proof_ok(test_gateway *g, const ts_request *req)
{
    char mac[18] = "";
    sscanf(req->target, "/v1/devices/%17[^/]", mac);
    cJSON *root = cJSON_Parse(req->body);
    const char *challenge = json_text(root, "challenge");
    uint8_t pk[32], sig[64];
    size_t pk_len = 0, sig_len = 0;
    const char *key = json_text(root, "publicKey"), *signature = json_text(root, "signature");
    int ok = g->challenge[0] && strcmp(challenge, g->challenge) == 0 &&
             sodium_base642bin(pk, 32, key, strlen(key), NULL, &pk_len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
             pk_len == 32 &&
             sodium_base642bin(sig, 64, signature, strlen(signature), NULL, &sig_len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
             sig_len == 64;
    char message[200];
    int n = snprintf(message, sizeof message, "modelferry-device-v1:%s:%s", mac, challenge);
    ok = ok && crypto_sign_verify_detached(sig, (const uint8_t *)message, (size_t)n, pk) == 0;
    if (ok) snprintf(g->device_key, sizeof g->device_key, "%s", key);
    g->challenge[0] = '\0';
    cJSON_Delete(root);
    return ok;
}

static void json_error(int fd, int status, const char *code, const char *extra_headers)
{
    char body[160], headers[200];
    snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"test\"}", code);
    snprintf(headers, sizeof headers, "Content-Type: application/json\r\n%s", extra_headers ? extra_headers : "");
    ts_respond(fd, status, headers, body, strlen(body));
}

/* The identity routes, and the token every other route wants under `admission`; 1 when it
 * answered. */
static int admission(test_gateway *g, const ts_request *req, int fd)
{
    int post = strcmp(req->method, "POST") == 0;
    char body[200];
    if (post && (strstr(req->target, "/challenge") || strstr(req->target, "/token")) && g->no_identity_routes) {
        json_error(fd, 404, "not_found", NULL);
    } else if (post && strstr(req->target, "/challenge")) {
        g->challenges++;
        uint8_t random[32];
        randombytes_buf(random, sizeof random);
        sodium_bin2base64(g->challenge, sizeof g->challenge, random, 32, sodium_base64_VARIANT_ORIGINAL);
        snprintf(body, sizeof body, "{\"challenge\":\"%s\",\"expiresInSeconds\":60}", g->challenge);
        ts_respond(fd, 200, "Content-Type: application/json\r\n", body, strlen(body));
    } else if (post && strstr(req->target, "/token")) {
        if (!proof_ok(g, req)) {
            g->proofs_refused++;
            json_error(fd, 401, "device_auth_failed", NULL);
        } else if (g->admission_answer) {
            json_error(fd, g->admission_answer, g->admission_error,
                       strcmp(g->admission_error, "device_pending") == 0 ? "Retry-After: 60\r\n" : NULL);
        } else {
            snprintf(g->token, sizeof g->token, "token-%d", ++g->tokens_issued);
            snprintf(body, sizeof body, "{\"token\":\"%s\",\"expiresInSeconds\":3600,\"admission\":\"accepted\"}", g->token);
            ts_respond(fd, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n", body, strlen(body));
        }
    } else if (g->admission && (g->refuse_tokens || !g->token[0] || strncmp(req->authorization, "Bearer ", 7) != 0 ||
                                strcmp(req->authorization + 7, g->token) != 0)) {
        g->unauthorized++;
        json_error(fd, 401, "unauthorized", "WWW-Authenticate: Bearer\r\n");
    } else {
        return 0;
    }
    return 1;
}

void tg_handler(void *ctx, const ts_request *req, int fd)
{
    test_gateway *g = ctx;
    pthread_mutex_lock(&g->lock);
    if (!g->first_request[0]) snprintf(g->first_request, sizeof g->first_request, "%s %s", req->method, req->target);
    size_t seen = strlen(g->authorizations);
    snprintf(g->authorizations + seen, sizeof g->authorizations - seen, "%s\n", req->authorization);
    if (admission(g, req, fd)) {
        pthread_mutex_unlock(&g->lock);
        return;
    }
    char body[8192];
    if (strcmp(req->method, "GET") == 0 && strstr(req->target, "/model")) {
        g->polls++;
        int wait = strstr(req->target, "wait=") != NULL;
        if (wait) g->polls_wait++;
        if (g->poll_status) {
            ts_respond(fd, g->poll_status, "Content-Type: application/json\r\n", "{}", 2);
        } else if (g->no_assignment) {
            const char *e = "{\"error\":\"no_assignment\",\"message\":\"none\"}";
            ts_respond(fd, 404, "Content-Type: application/json\r\n", e, strlen(e));
        } else {
            if (g->poll_body) snprintf(body, sizeof body, "%s", g->poll_body);
            else assignment_body(g, body, sizeof body);
            /* A strong ETag over the body, as the gateway does. */
            char hex[65];
            test_sha256_hex((const uint8_t *)body, strlen(body), hex);
            snprintf(g->etag, sizeof g->etag, "\"%.32s\"", hex);
            if (req->if_none_match[0] && strcmp(req->if_none_match, g->etag) == 0) {
                g->polls_304++;
                /* Holding a long poll is time passing on the device's clock. */
                if (wait && g->hold_ms) mf_posix_clock_advance(test_clock(), (uint64_t)g->hold_ms);
                pthread_mutex_unlock(&g->lock);
                char h[128];
                snprintf(h, sizeof h, "ETag: %s\r\n", g->etag);
                ts_respond(fd, 304, h, NULL, 0);
                return;
            }
            char h[256];
            if (g->poll_content_length >= 0)
                snprintf(h, sizeof h, "ETag: %s\r\nContent-Type: application/json\r\nContent-Length: %ld\r\n", g->etag,
                         g->poll_content_length);
            else
                snprintf(h, sizeof h, "ETag: %s\r\nContent-Type: application/json\r\n", g->etag);
            ts_respond(fd, 200, h, body, strlen(body));
        }
    } else if (strcmp(req->method, "GET") == 0 && strncmp(req->target, "/v1/artifacts/", 14) == 0) {
        g->artifact_requests++;
        if (req->range[0]) g->range_requests++;
        served what = {g->artifact, g->artifact_len, g->sha_hex, strcmp(req->target + 14, g->sha_hex) == 0 ? 0 : 404,
                       g->range_as_200, g->bad_content_range, g->artifact_content_length_delta, &g->close_after_bytes,
                       &g->last_range_start};
        serve_bytes(g, req, fd, &what);
        return;
    } else if (strcmp(req->method, "GET") == 0 && strncmp(req->target, "/v1/deltas/", 11) == 0) {
        g->delta_requests++;
        if (req->range[0]) g->delta_range_requests++;
        char expected[160];
        snprintf(expected, sizeof expected, "/v1/deltas/%s/%s", g->delta_from_hex, g->sha_hex);
        served what = {g->delta, g->delta_len, g->delta_sha_hex, strcmp(req->target, expected) == 0 ? g->delta_status : 404,
                       g->delta_range_as_200, 0, 0, &g->delta_close_after_bytes, &g->delta_last_range_start};
        if (g->delta_status_once) g->delta_status = g->delta_status_once = 0;
        serve_bytes(g, req, fd, &what);
        return;
    } else if (strcmp(req->method, "POST") == 0 && strstr(req->target, "/report")) {
        g->reports++;
        snprintf(g->last_report, sizeof g->last_report, "%s", req->body);
        if (g->reports == 1) snprintf(g->first_report, sizeof g->first_report, "%s", req->body);
        size_t used = strlen(g->reports_text);
        snprintf(g->reports_text + used, sizeof g->reports_text - used, "%s\n", req->body);
        if (g->report_status) ts_respond(fd, g->report_status, NULL, "{}", 2);
        else if (g->refuse_capabilities && strstr(req->body, "\"capabilities\""))
            ts_respond(fd, 413, NULL, "{}", 2);
        else ts_respond(fd, 204, NULL, NULL, 0);
    } else {
        ts_respond(fd, 404, NULL, "{}", 2);
    }
    pthread_mutex_unlock(&g->lock);
}
