/* POLL asks the gateway what this device should run (a long poll when there is nothing to
 * do but wait for a change); DECIDE compares the answer with what runs. */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_assignment.h"
#include "mf_backoff.h"
#include "mf_verify.h"

uint32_t mf_next_poll_delay(mf_client *c)
{
    uint32_t interval = c->assignment.have ? c->assignment.model.poll_interval_s : c->cfg->poll_interval_s;
    uint32_t jitter = c->assignment.have ? c->assignment.model.poll_jitter_s : c->cfg->poll_jitter_s;
    return mf_poll_delay_ms(interval, jitter, mf_rand(c));
}

/* Right after an answer, with long polls: the next poll waits at the gateway instead of
 * here (a short random pause spreads a fleet's reconnects). */
uint32_t mf_long_poll_delay(mf_client *c)
{
    if (c->cfg->long_poll_s == 0 || !c->gateway.long_poll_ok) return mf_next_poll_delay(c);
    return 1 + mf_rand(c) % 1000;
}

int mf_in_sync(const mf_client *c)
{
    const mf_active_model *m = mf_client_active(c);
    return m && memcmp(c->assignment.model.sha256, m->sha256, 32) == 0;
}

/* etag NULL: an answer from a gateway the device is not settled on; its own ETag stays. */
static void keep_assignment(mf_client *c, const mf_assignment *a, const char *etag)
{
    c->assignment.model = *a;
    mf_assignment_fingerprint(a, c->assignment.fingerprint);
    c->assignment.have = 1;
    if (etag) snprintf(c->assignment.etag, sizeof c->assignment.etag, "%s", etag);
    mf_failure_forget_if_changed(c);
}

void mf_run_poll(mf_client *c, mf_step *s)
{
    if (mf_auth_due(c)) {
        mf_step_auth(c, s);
        return;
    }
    int walking = c->gateway.walking;
    if (!walking) c->gateway.home = c->gateway.index;
    /* Long-poll only at home, when there is nothing to do but wait for a change. */
    int conditional = !walking && c->assignment.have && c->assignment.etag[0];
    int idle = conditional && (mf_in_sync(c) || mf_failure_waiting(c));
    int wait = idle && c->cfg->long_poll_s > 0 && c->gateway.long_poll_ok;
    char url[MF_BASE_URL_MAX + 64];
    size_t n = mf_device_url(c, url, sizeof url, "model");
    if (wait) snprintf(url + n, sizeof url - n, "?wait=%" PRIu32, c->cfg->long_poll_s);
    mf_http_request req = mf_request(c, "GET", url);
    req.if_none_match = conditional ? c->assignment.etag : NULL;
    if (wait) req.timeout_ms += c->cfg->long_poll_s * 1000;
    int status;
    char etag[MF_ETAG_MAX];
    uint64_t started = mf_now_ms(c);
    c->stats.polls++;
    if (wait) c->stats.long_polls++;
    mf_err err = mf_request_small(c, &req, &status, etag);
    if (err != MF_OK) {
        mf_eventf(c, "poll_failed", "%s gateway=%s", mf_err_code(err), mf_gateway_url(c));
        /* A server that cannot prove a pin will not prove it on a retry: the next one now. */
        if (err == MF_ERR_PIN_MISMATCH) c->gateway.consecutive_failures = c->cfg->failures_before_switch;
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }

    if (status == 401) {
        mf_step_auth(c, s);
        return;
    }
    if (status == 304 && c->assignment.have) {
        c->stats.polls_not_modified++;
        mf_gateway_answered(c);
        uint64_t held = mf_now_ms(c) - started;
        /* A gateway that answers a long poll at once does not hold polls: sleep instead. */
        c->assignment.next_poll_ms = wait && held * 2 >= (uint64_t)c->cfg->long_poll_s * 1000 ? mf_long_poll_delay(c)
                                                                                                : mf_next_poll_delay(c);
        mf_step_go(s);
        return;
    }
    if (status == 404) {
        mf_gateway_answered(c);
        if (!walking) {
            c->assignment.have = 0;
            c->assignment.etag[0] = '\0';
        }
        mf_event(c, "no_assignment", mf_gateway_url(c));
        mf_step_idle(s, MF_ERR_NO_ASSIGNMENT, mf_next_poll_delay(c));
        return;
    }
    if (status == 400 && wait) {
        /* This gateway refuses our wait= (its maximum is lower): plain polls from now on. */
        c->gateway.long_poll_ok = 0;
        mf_step_fail(s, MF_ERR_HTTP_STATUS, 0);
        return;
    }
    if (status != 200) {
        mf_eventf(c, "poll_status", "status=%d", status);
        mf_step_fail(s, MF_ERR_HTTP_STATUS, mf_gateway_failed(c));
        return;
    }

    mf_assignment a;
    char why[96];
    err = mf_assignment_parse(c->body.data, c->body.len, &a, why, sizeof why);
    if (err == MF_OK && strcmp(a.device, c->mac) != 0) {
        err = MF_ERR_PROTOCOL;
        snprintf(why, sizeof why, "device");
    }
    if (err != MF_OK) {
        mf_eventf(c, "bad_assignment", "%s", why);
        mf_step_fail(s, err, mf_gateway_failed(c));
        return;
    }
    mf_gateway_answered(c);
    c->assignment.next_poll_ms = mf_long_poll_delay(c);
    if (walking) {
        /* Taken from another gateway only when there is something to do about it. */
        const mf_active_model *m = mf_client_active(c);
        if (mf_check(c, &a, why, sizeof why) != MF_OK || (m && memcmp(m->sha256, a.sha256, 32) == 0)) {
            mf_step_idle(s, MF_OK, c->assignment.next_poll_ms);
            return;
        }
    }
    keep_assignment(c, &a, walking ? NULL : etag);
    mf_step_go(s);
}

void mf_run_decide(mf_client *c, mf_step *s)
{
    const mf_active_model *m = mf_client_active(c);
    if (mf_in_sync(c) && m->status == MF_MODEL_FAILED) {
        /* The device's first model, unconfirmed: nothing to install, nothing to go back to. */
        if (!c->confirm.reported) (void)mf_confirm_report_failed(c, 0);
        mf_step_idle(s, MF_OK, c->assignment.next_poll_ms);
        return;
    }
    if (mf_in_sync(c)) {
        mf_failure_clear(c);
        if (strcmp(c->report.last_state, "installed") != 0 || strcmp(c->report.last_sha, m->sha256_hex) != 0)
            mf_report_state(c, "installed", NULL, -1);
        mf_step_idle(s, MF_OK, c->assignment.next_poll_ms);
        return;
    }
    if (mf_failure_waiting(c)) {
        mf_failure_say_waiting(c);
        mf_step_idle(s, MF_OK, mf_failure_delay(c, c->assignment.next_poll_ms));
        return;
    }
    int slot = mf_free_slot(c);
    if (c->mapped[slot]) {
        /* After a rollback the application may still read the model it went back from. */
        mf_eventf(c, "held", "slot=%d: the application has not confirmed it runs %s %s (mf_client_confirm)", slot,
                  m->name, m->version);
        mf_step_idle(s, MF_OK, c->assignment.next_poll_ms);
        return;
    }
    mf_step_go(s);
}
