/* An assignment that failed (verification, signature policy, size, format) is not tried
 * again before its backoff (60 s doubling to 6 h by default, the attempt count kept across
 * reboots), unless the gateway assigns anything that differs: the failure is keyed on the
 * assignment's fingerprint, not the sha256 alone, so a signed build of the same bytes is
 * tried at once. The device says it waits, and until when. */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_backoff.h"
#include "mf_records.h"

static int failure_is_current(mf_client *c)
{
    return c->failure.attempts > 0 && memcmp(c->failure.fingerprint, c->assignment.fingerprint, 32) == 0;
}

int mf_failure_waiting(mf_client *c) { return failure_is_current(c) && mf_now_ms(c) < c->failure.not_before_ms; }

static uint64_t seconds_left(mf_client *c)
{
    uint64_t now = mf_now_ms(c);
    return c->failure.not_before_ms > now ? (c->failure.not_before_ms - now + 999) / 1000 : 0;
}

static uint64_t until_uptime_s(mf_client *c) { return (c->failure.not_before_ms - c->boot_ms + 999) / 1000; }

/* What failed, why, and until when the device waits: the report's error and the events. */
static void failure_text(mf_client *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s: %s %s (%s); next try in %" PRIu64 " s, at uptime %" PRIu64 " s, or when the assignment changes",
             mf_err_code((mf_err)c->failure.err), c->assignment.model.name, c->assignment.model.version,
             c->failure.detail, seconds_left(c), until_uptime_s(c));
}

static void report_failure(mf_client *c)
{
    char error[400];
    failure_text(c, error, sizeof error);
    if (mf_report(c, "failed", error, -1, 0) == MF_OK) c->failure.reported = 1;
}

/* A failure from before the reboot waits its backoff again: no crash loop can turn into
 * a download loop. */
void mf_failure_load(mf_client *c)
{
    mf_failed_record fr;
    if (mf_failed_load(c->ports.kv, MF_KEY_FAILED, &fr) != MF_OK) return;
    memcpy(c->failure.fingerprint, fr.assignment, 32);
    c->failure.attempts = fr.attempts;
    c->failure.err = fr.err;
    snprintf(c->failure.detail, sizeof c->failure.detail, "%s", fr.detail);
    mf_backoff b = {c->cfg->retry_base_ms, c->cfg->retry_max_ms, fr.attempts ? fr.attempts - 1 : 0};
    c->failure.not_before_ms = c->boot_ms + mf_backoff_next(&b, mf_rand(c));
}

void mf_failure_record(mf_client *c, mf_err why, const char *detail)
{
    if (!failure_is_current(c)) c->failure.attempts = 0;
    memcpy(c->failure.fingerprint, c->assignment.fingerprint, 32);
    c->failure.attempts++;
    c->failure.err = (uint8_t)why;
    snprintf(c->failure.detail, sizeof c->failure.detail, "%s", detail ? detail : mf_err_code(why));
    c->failure.reported = 0;
    mf_backoff b = {c->cfg->retry_base_ms, c->cfg->retry_max_ms, c->failure.attempts - 1};
    c->failure.not_before_ms = mf_now_ms(c) + mf_backoff_next(&b, mf_rand(c));
    mf_failed_record fr;
    memset(&fr, 0, sizeof fr);
    memcpy(fr.assignment, c->failure.fingerprint, 32);
    fr.attempts = c->failure.attempts;
    fr.err = (uint8_t)why;
    snprintf(fr.detail, sizeof fr.detail, "%s", c->failure.detail);
    (void)mf_failed_save(c->ports.kv, MF_KEY_FAILED, &fr);
    c->stats.verify_failures++;
    char error[400];
    failure_text(c, error, sizeof error);
    mf_event(c, "failed", error);
    report_failure(c);
}

void mf_failure_clear(mf_client *c)
{
    if (c->failure.attempts == 0) return;
    c->failure.attempts = 0;
    memset(c->failure.fingerprint, 0, 32);
    (void)mf_kv_erase(c->ports.kv, MF_KEY_FAILED);
}

void mf_failure_forget_if_changed(mf_client *c)
{
    if (c->failure.attempts > 0 && !failure_is_current(c)) mf_failure_clear(c);
}

/* Skipping a failed assignment until its backoff ends: an event each time, a report once a
 * boot. */
void mf_failure_say_waiting(mf_client *c)
{
    mf_eventf(c, "waiting", "sha256=%s version=%s attempts=%" PRIu32 " retry_in_s=%" PRIu64 " until_uptime_s=%" PRIu64,
              c->assignment.model.sha256_hex, c->assignment.model.version, c->failure.attempts, seconds_left(c),
              until_uptime_s(c));
    if (!c->failure.reported) report_failure(c);
}

uint32_t mf_failure_delay(mf_client *c, uint32_t poll_delay_ms)
{
    uint64_t now = mf_now_ms(c);
    uint64_t left = c->failure.not_before_ms > now ? c->failure.not_before_ms - now : 0;
    return left < poll_delay_ms ? (uint32_t)left : poll_delay_ms;
}
