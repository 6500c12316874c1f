/* A small HTTP/1.1 server on 127.0.0.1 for the host tests, one connection at a time, every
 * answer closes its connection. test_gateway on top plays the gateway's device API from a
 * script that a test can make misbehave. */
#ifndef TEST_SERVER_H
#define TEST_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char method[16];
    char target[1024];          /* path and query */
    char if_none_match[256];
    char if_range[256];
    char range[128];
    char authorization[256];
    char *body;                 /* NUL-terminated */
    size_t body_len;
} ts_request;

typedef void (*ts_handler)(void *ctx, const ts_request *req, int fd);

typedef struct {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    ts_handler handler;
    void *ctx;
    volatile int stopping;
    char url[64];
} ts_server;

void ts_start(ts_server *s, ts_handler handler, void *ctx);
void ts_stop(ts_server *s);

/* Writes all bytes (ignores a peer that hung up). */
void ts_write(int fd, const void *data, size_t len);
/* Status line and headers (extra: complete lines, each ending in \r\n, or NULL), then body. */
void ts_respond(int fd, int status, const char *extra_headers, const void *body, size_t len);

/* The scripted gateway. */
typedef struct {
    pthread_mutex_t lock;
    /* what it serves */
    char name[65], version[65];
    const uint8_t *artifact;       /* bytes served at /v1/artifacts/<sha> */
    size_t artifact_len;
    char sha_hex[65];              /* the digest announced (normally of artifact) */
    uint64_t announced_size;       /* size announced in the assignment */
    char signature[100];           /* "" for null */
    char key_id[17];
    char seq[24];                  /* signatureSeq: "" for none (a v1 signature) */
    char artifact_url[256];        /* model.url instead of /v1/artifacts/<sha> */
    char delta_url[256];           /* delta.url instead of /v1/deltas/<from>/<sha> */
    int no_assignment;             /* 404 no_assignment */
    char etag[80];
    /* misbehaviour */
    const char *poll_body;         /* raw body instead of the assignment */
    long poll_content_length;      /* >= 0: this Content-Length for the poll body */
    int poll_status;               /* non-zero: this status for polls */
    int range_as_200;              /* answer Range with the whole body and 200 */
    int bad_content_range;         /* answer Range with a wrong start */
    long artifact_content_length_delta; /* added to the artifact's Content-Length */
    long close_after_bytes;        /* >= 0: cut the artifact body after this many bytes, once */
    int hold_ms;                   /* long polls: held this long (on test_clock) before 304 */
    int report_status;             /* non-zero: answer reports with this */
    int refuse_capabilities;       /* 413 for reports carrying capabilities */
    /* a delta offered beside the artifact (tg_offer_delta), and its misbehaviour */
    const uint8_t *delta;          /* served at /v1/deltas/<from>/<sha> */
    size_t delta_len;
    char delta_from_hex[65];
    char delta_sha_hex[65];
    uint64_t delta_announced_size;
    int delta_status;              /* non-zero: this status for delta requests */
    int delta_status_once;         /* ... for the next one only */
    int delta_range_as_200;
    long delta_close_after_bytes;  /* >= 0: cut the delta body after this many bytes, once */
    /* Device identity (docs/design.md "Device identity"): with `admission`, polls, reports
     * and artifacts need a token this gateway gave, for a key proven over its challenge. */
    int admission;
    int admission_answer;          /* the token route: 0 a token, else this error status */
    const char *admission_error;   /* ... and code: device_pending, device_rejected, device_auth_failed */
    int refuse_tokens;             /* give tokens, then refuse them (401) */
    int no_identity_routes;        /* a gateway older than device identity: 404 */
    char challenge[64];            /* the one outstanding */
    char token[40];                /* the one valid, "" for none */
    char device_key[64];           /* base64 public key of the last proof that verified */
    /* what it saw */
    int polls, polls_304, polls_wait, artifact_requests, range_requests, reports;
    int challenges, tokens_issued, proofs_refused, unauthorized;
    char first_request[1100];      /* method and target of the first request */
    char authorizations[4096];     /* each request's Authorization, newline-separated */
    long last_range_start;
    int delta_requests, delta_range_requests;
    long delta_last_range_start;
    char last_report[70000];
    char first_report[70000];
    char reports_text[200000];     /* every report body, newline-separated */
} test_gateway;

void tg_init(test_gateway *g);
/* Serves `bytes` as name@version (announced sha and size from the bytes). */
void tg_serve(test_gateway *g, const char *name, const char *version, const uint8_t *bytes, size_t len);
/* Offers `bytes` as the delta from the model whose sha256 is from_hex to the one served
 * (announced size from the bytes); NULL bytes: no delta. */
void tg_offer_delta(test_gateway *g, const char *from_hex, const uint8_t *bytes, size_t len);
void tg_handler(void *ctx, const ts_request *req, int fd);

#endif
