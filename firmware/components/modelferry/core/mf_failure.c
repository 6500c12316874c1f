/* What failed last, so it is not tried again before its backoff (60 s doubling to 6 h by
 * default, the attempt count kept across reboots) and the device can say why and until
 * when. An assignment refused by its checks, download or verification is keyed on its
 * fingerprint (name, version, sha256, size, signature, keyId): when the gateway assigns
 * anything that differs, a signed build of the same bytes say, it is tried at once. A model
 * rolled back from is keyed on its sha256: the same bytes under another version would fail
 * the same way. */
#include "mf_client_internal.h"

#include <stdio.h>
#include <string.h>

#include "mf_backoff.h"
#include "mf_records.h"
#include "mf_verify.h"

static int failure_is_current(mf_client *c)
{
    if (c->failure.attempts == 0) return 0;
    if (c->failure.rolled_back) return memcmp(c->failure.sha256, c->assignment.model.sha256, 32) == 0;
    return memcmp(c->failure.fingerprint, c->assignment.fingerprint, 32) == 0;
}

int mf_failure_waiting(mf_client *c) { return failure_is_current(c) && mf_now_ms(c) < c->failure.not_before_ms; }

static uint64_t seconds_left(mf_client *c)
{
    uint64_t now = mf_now_ms(c);
    return c->failure.not_before_ms > now ? (c->failure.not_before_ms - now + 999) / 1000 : 0;
}

static uint64_t until_uptime_s(mf_client *c) { return (c->failure.not_before_ms - c->boot_ms + 999) / 1000; }

/* What failed, why, what runs instead and until when the device waits: the report's error
 * and the events. */
static void failure_text(mf_client *c, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s: %s %s (%s); ", mf_err_code((mf_err)c->failure.err), c->failure.name,
                     c->failure.version, c->failure.detail);
    if (n < 0 || (size_t)n >= cap) return;
    const mf_active_model *m = mf_client_active(c);
    if (c->failure.rolled_back && m)
        n += snprintf(out + n, cap - (size_t)n, "rolled back to %s %s; ", m->name, m->version);
    if ((size_t)n >= cap) return;
    snprintf(out + n, cap - (size_t)n, "next try in %" PRIu64 " s, at uptime %" PRIu64 " s, or when %s", seconds_left(c),
             until_uptime_s(c), c->failure.rolled_back ? "another model is assigned" : "the assignment changes");
}

mf_err mf_failure_report(mf_client *c, int with_caps)
{
    char error[512];
    failure_text(c, error, sizeof error);
    char from[65] = "";
    if (c->failure.rolled_back) mf_hex_encode(c->failure.sha256, 32, from);
    mf_err err = mf_report(c, "failed", error, from[0] ? from : NULL, -1, with_caps);
    if (err == MF_OK) c->failure.reported = 1;
    return err;
}

static void set_backoff(mf_client *c, uint64_t from_ms)
{
    mf_backoff b = {c->cfg->retry_base_ms, c->cfg->retry_max_ms, c->failure.attempts ? c->failure.attempts - 1 : 0};
    c->failure.not_before_ms = from_ms + mf_backoff_next(&b, mf_rand(c));
}

/* A failure from before the reboot waits its backoff again: no crash loop can turn into
 * a download loop. */
void mf_failure_load(mf_client *c)
{
    if (mf_failed_load(c->ports.kv, MF_KEY_FAILED, &c->failure) == MF_OK) set_backoff(c, c->boot_ms);
}

static mf_err save(mf_client *c) { return mf_failed_save(c->ports.kv, MF_KEY_FAILED, &c->failure); }

/* What failed, from now: its backoff starts, storage keeps it. */
static mf_err remember(mf_client *c, int rolled_back, const uint8_t *fingerprint, const uint8_t sha256[32], const char *name,
                       const char *version, uint32_t attempts, mf_err why, const char *detail)
{
    c->failure.rolled_back = (uint8_t)rolled_back;
    memcpy(c->failure.fingerprint, fingerprint, 32);
    memcpy(c->failure.sha256, sha256, 32);
    snprintf(c->failure.name, sizeof c->failure.name, "%s", name);
    snprintf(c->failure.version, sizeof c->failure.version, "%s", version);
    c->failure.attempts = attempts;
    c->failure.err = (uint8_t)why;
    snprintf(c->failure.detail, sizeof c->failure.detail, "%s", detail);
    c->failure.reported = 0;
    set_backoff(c, mf_now_ms(c));
    c->stats.verify_failures++;
    return save(c);
}

void mf_failure_record(mf_client *c, mf_err why, const char *detail)
{
    const mf_assignment *a = &c->assignment.model;
    uint32_t attempts = failure_is_current(c) && !c->failure.rolled_back ? c->failure.attempts : 0;
    (void)remember(c, 0, c->assignment.fingerprint, a->sha256, a->name, a->version, attempts + 1, why,
                   detail ? detail : mf_err_code(why));
    char error[512];
    failure_text(c, error, sizeof error);
    mf_event(c, "failed", error);
    (void)mf_failure_report(c, 0);
}

uint32_t mf_failure_rollback_attempt(mf_client *c, const uint8_t sha256[32])
{
    int same = c->failure.attempts > 0 && c->failure.rolled_back && memcmp(c->failure.sha256, sha256, 32) == 0;
    return same ? c->failure.attempts + 1 : 1;
}

mf_err mf_failure_record_rollback(mf_client *c, const mf_active_model *from, uint32_t attempts, mf_err why,
                                  const char *detail)
{
    static const uint8_t none[32];
    return remember(c, 1, none, from->sha256, from->name, from->version, attempts, why, detail);
}

void mf_failure_clear(mf_client *c)
{
    if (c->failure.attempts == 0) return;
    c->failure.attempts = 0;
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
    if (!c->failure.reported) (void)mf_failure_report(c, 0);
}

uint32_t mf_failure_delay(mf_client *c, uint32_t poll_delay_ms)
{
    uint64_t now = mf_now_ms(c);
    uint64_t left = c->failure.not_before_ms > now ? c->failure.not_before_ms - now : 0;
    return left < poll_delay_ms ? (uint32_t)left : poll_delay_ms;
}
