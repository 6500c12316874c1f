/* Talking to the gateway: which one (DISCOVER), how a failed exchange backs off and moves
 * on to the next, asking the others before settling, and requests whose answer is small
 * enough to keep whole. */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_assignment.h"
#include "mf_backoff.h"
#include "mf_gateway_select.h"

const char *mf_gateway_url(mf_client *c) { return c->gateway.url[c->gateway.index]; }

/* At least a millisecond, so a cycle ends on it whatever the configured base. */
static uint32_t gateway_backoff(mf_client *c)
{
    mf_backoff b = {c->cfg->backoff_base_ms, c->cfg->backoff_max_ms, c->gateway.backoff_failures++};
    uint32_t delay = mf_backoff_next(&b, mf_rand(c));
    return delay ? delay : 1;
}

/* Rebuilds the list only when it ran out (a failed exchange comes back here). */
void mf_run_discover(mf_client *c, mf_step *s)
{
    if (c->gateway.listed) {
        mf_step_go(s);
        return;
    }
    mf_gateway_candidate cands[MF_GATEWAYS_MAX];
    size_t n = 0;
    if (c->cfg->discovery && c->ports.discovery) {
        c->stats.discoveries++;
        if (mf_discovery_browse(c->ports.discovery, c->cfg->service, c->cfg->discovery_timeout_ms, cands,
                                MF_GATEWAYS_MAX, &n) != MF_OK)
            n = 0;
        mf_eventf(c, "discovery", "found=%zu", n);
    }
    mf_gateway_list list;
    mf_tls_use tls = c->cfg->gateway_pin_count ? MF_TLS_REQUIRED : c->cfg->prefer_tls ? MF_TLS_PREFERRED : MF_TLS_IF_ONLY;
    mf_gateway_order(cands, n, c->gateway.last_good, c->cfg->fallback_url, mf_rand(c), tls, &list);
    c->gateway.count = list.count;
    for (size_t i = 0; i < list.count; i++) strcpy(c->gateway.url[i], list.url[i]);
    c->gateway.index = 0;
    c->gateway.home = 0;
    c->gateway.walking = 0;
    c->gateway.listed = list.count > 0;
    c->gateway.consecutive_failures = 0;
    /* Tokens and boot reports belong to the places of the old list. */
    memset(c->gateway.token, 0, sizeof c->gateway.token);
    c->gateway.auth_asked = 0;
    c->report.boot_done = 0;
    if (!list.count) {
        mf_event(c, "no_gateway", "discovery found none and no fallback URL is configured");
        mf_step_fail(s, MF_ERR_NO_GATEWAY, gateway_backoff(c));
        return;
    }
    mf_eventf(c, "gateways", "first=%s count=%zu", list.url[0], list.count);
    mf_step_go(s);
}

void mf_gateway_answered(mf_client *c)
{
    c->gateway.consecutive_failures = 0;
    c->gateway.backoff_failures = 0;
    if (!c->gateway.walking && strcmp(c->gateway.last_good, mf_gateway_url(c)) != 0) {
        snprintf(c->gateway.last_good, sizeof c->gateway.last_good, "%s", mf_gateway_url(c));
        (void)mf_kv_set(c->ports.kv, MF_KEY_GATEWAY, c->gateway.last_good, strlen(c->gateway.last_good));
    }
}

/* After a few failures in a row, the next gateway in the list, and after the whole list,
 * discovery again. */
uint32_t mf_gateway_failed(mf_client *c)
{
    c->stats.polls_failed++;
    if (c->gateway.walking) {
        (void)mf_gateway_ask_next(c);
    } else if (++c->gateway.consecutive_failures >= c->cfg->failures_before_switch) {
        c->gateway.consecutive_failures = 0;
        if (++c->gateway.index >= c->gateway.count) c->gateway.listed = 0;
    }
    return gateway_backoff(c);
}

/* One unanswered gateway does not hold the device back: nothing to do at this one (an
 * answer that changed nothing, no assignment, a model refused, a failure), the next in the
 * list is asked too, once, without wait= or ETag, before the device settles again on the
 * first that answered (its home). So a gateway that answers 304 or no_assignment, or offers
 * what the device refuses, cannot keep it from another gateway's update. */
int mf_gateway_ask_next(mf_client *c)
{
    c->gateway.consecutive_failures = 0;
    c->gateway.walking = c->gateway.index + 1 < c->gateway.count;
    c->gateway.index = c->gateway.walking ? c->gateway.index + 1 : c->gateway.home;
    return c->gateway.walking;
}

size_t mf_device_url(mf_client *c, char *out, size_t cap, const char *what)
{
    int n = snprintf(out, cap, "%s/v1/devices/%s/%s", mf_gateway_url(c), c->mac, what);
    return n > 0 && (size_t)n < cap ? (size_t)n : cap - 1;
}

mf_http_request mf_request(mf_client *c, const char *method, const char *url)
{
    mf_http_request req = {
        .method = method, .url = url, .range_start = -1, .bearer_token = mf_credentials(c),
        .pins = c->cfg->gateway_pins, .pin_count = c->cfg->gateway_pin_count, .timeout_ms = c->cfg->request_timeout_ms,
    };
    return req;
}

typedef struct {
    mf_client *c;
    int status;
    char *etag;
} small_answer;

static int small_head(void *ctx, const mf_http_head *head)
{
    small_answer *a = ctx;
    a->status = head->status;
    a->c->body.retry_after_s = head->retry_after_s;
    mf_saw_status(a->c, head->status);
    if (a->etag) strcpy(a->etag, head->etag);
    /* Refuse an oversized body before reading it. */
    if (head->status == 200 && head->content_length > (int64_t)MF_ASSIGNMENT_BODY_MAX) {
        a->c->body.overflow = 1;
        return 1;
    }
    return 0;
}

static int small_body(void *ctx, const uint8_t *data, size_t len)
{
    mf_client *c = ((small_answer *)ctx)->c;
    c->stats.bytes_received += len;
    if (len > MF_ASSIGNMENT_BODY_MAX - c->body.len) {
        c->body.overflow = 1;
        return 1;
    }
    memcpy(c->body.data + c->body.len, data, len);
    c->body.len += len;
    return 0;
}

mf_err mf_request_small(mf_client *c, const mf_http_request *req, int *status, char *etag)
{
    small_answer a = {c, 0, etag};
    if (etag) etag[0] = '\0';
    mf_http_sink sink = {small_head, small_body, &a};
    c->body.len = 0;
    c->body.overflow = 0;
    c->body.retry_after_s = 0;
    mf_err err = mf_http_perform(c->ports.http, req, &sink);
    *status = a.status;
    if (c->body.overflow || err == MF_ERR_ABORTED) return MF_ERR_PROTOCOL;
    return err;
}
