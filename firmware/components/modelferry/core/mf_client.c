/* The client's life: init (the active slot, what storage remembers), then one state a
 * step, the next picked from the transition table by how the state ended. */
#include "mf_client_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "mf_slot.h"

typedef struct {
    const char *name;
    void (*run)(mf_client *c, mf_step *s);
    uint8_t go, idle, fail;    /* the next mf_state, by outcome */
} mf_state_row;

/* A failed exchange goes back to DISCOVER, which finds again only when the list of gateways
 * ran out; an idle state goes back to BOOT_REPORT, which reports only once a boot. */
static const mf_state_row STATES[MF_STATE_COUNT] = {
    [MF_STATE_DISCOVER] = {"discover", mf_run_discover, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER, MF_STATE_DISCOVER},
    [MF_STATE_BOOT_REPORT] = {"boot_report", mf_run_boot_report, MF_STATE_POLL, MF_STATE_POLL, MF_STATE_DISCOVER},
    [MF_STATE_POLL] = {"poll", mf_run_poll, MF_STATE_DECIDE, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_DECIDE] = {"decide", mf_run_decide, MF_STATE_CHECK, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_CHECK] = {"check", mf_run_check, MF_STATE_DOWNLOAD, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_DOWNLOAD] = {"download", mf_run_download, MF_STATE_VERIFY, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_VERIFY] = {"verify", mf_run_verify, MF_STATE_COMMIT, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_COMMIT] = {"commit", mf_run_commit, MF_STATE_ACTIVATE, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_ACTIVATE] = {"activate", mf_run_activate, MF_STATE_PENDING, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    /* Pending: confirmed goes on, rejected or timed out "fails" into ROLLBACK. */
    [MF_STATE_PENDING] = {"pending", mf_run_pending, MF_STATE_CONFIRM, MF_STATE_PENDING, MF_STATE_ROLLBACK},
    /* A model pending at boot is answered before the first DISCOVER. */
    [MF_STATE_CONFIRM] = {"confirm", mf_run_confirm, MF_STATE_DISCOVER, MF_STATE_DISCOVER, MF_STATE_PENDING},
    [MF_STATE_ROLLBACK] = {"rollback", mf_run_rollback, MF_STATE_DISCOVER, MF_STATE_DISCOVER, MF_STATE_ROLLBACK},
    /* A token: back to the state that asked for it (MF_STATE_COUNT stands for it). Pending or
     * rejected: wait, and ask the key again before anything else (BOOT_REPORT, POLL). */
    [MF_STATE_AUTH] = {"auth", mf_run_auth, MF_STATE_COUNT, MF_STATE_BOOT_REPORT, MF_STATE_DISCOVER},
    [MF_STATE_HALTED] = {"halted", NULL, MF_STATE_HALTED, MF_STATE_HALTED, MF_STATE_HALTED},
};

const char *mf_state_name(mf_state state) { return state < MF_STATE_COUNT ? STATES[state].name : "?"; }

void mf_config_defaults(mf_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->discovery = 1;
    cfg->service = "_modelferry._tcp";
    cfg->discovery_timeout_ms = 3000;
    cfg->poll_interval_s = 300;
    cfg->poll_jitter_s = 30;
    cfg->long_poll_s = 120;
    cfg->request_timeout_ms = 30000;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 300000;
    cfg->retry_base_ms = 60000;
    cfg->retry_max_ms = 6 * 3600 * 1000u;
    cfg->failures_before_switch = 3;
    cfg->confirm_boots = 2;
    cfg->confirm_timeout_s = 300;
    cfg->deltas = 1;
}

void mf_step_go(mf_step *s) { s->outcome = MF_GO; }

/* An idle state ends a cycle: it waits at least a millisecond, whatever the configured
 * intervals (mf_client_cycle steps until a state waits). A failure waits what it says: 0
 * goes straight to the failure's state (backoffs are at least a millisecond). */
void mf_step_idle(mf_step *s, mf_err err, uint32_t delay_ms)
{
    s->outcome = MF_IDLE;
    s->err = err;
    s->delay_ms = delay_ms ? delay_ms : 1;
}

void mf_step_fail(mf_step *s, mf_err err, uint32_t delay_ms)
{
    s->outcome = MF_FAIL;
    s->err = err;
    s->delay_ms = delay_ms;
}

void mf_event(mf_client *c, const char *name, const char *detail)
{
    if (c->cfg->on_event) c->cfg->on_event(c->cfg->ctx, name, detail);
}

void mf_eventf(mf_client *c, const char *name, const char *fmt, ...)
{
    char detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    mf_event(c, name, detail);
}

uint64_t mf_now_ms(mf_client *c) { return mf_clock_now_ms(c->ports.clock); }

uint32_t mf_rand(mf_client *c) { return mf_random_u32(c->ports.random); }

mf_err mf_client_init(mf_client *c, const mf_config *cfg, const mf_ports *ports)
{
    if (!c || !cfg || !ports || !ports->http || !ports->slots || !ports->kv || !ports->identity || !ports->clock ||
        !ports->random)
        return MF_ERR_INVALID_ARG;
    if (!mf_capabilities_ok(&cfg->capabilities) || cfg->gateway_pin_count > MF_PINS_MAX) return MF_ERR_INVALID_ARG;
    if (sodium_init() < 0) return MF_ERR_NO_MEMORY;
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    c->ports = *ports;
    c->active = -1;
    c->state = MF_STATE_DISCOVER;
    c->gateway.long_poll_ok = 1;
    c->boot_ms = mf_now_ms(c);

    uint8_t mac[6];
    mf_err err = mf_identity_mac(ports->identity, mac);
    if (err == MF_OK) err = mf_device_public_key(ports->kv, c->device_key);
    if (err != MF_OK) return err;
    snprintf(c->mac, sizeof c->mac, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);

    c->report.cap = mf_report_capacity(cfg);
    c->report.buf = malloc(c->report.cap);
    if (!c->report.buf) return MF_ERR_NO_MEMORY;

    size_t len = 0;
    if (mf_kv_get(ports->kv, MF_KEY_GATEWAY, c->gateway.last_good, sizeof c->gateway.last_good - 1, &len) == MF_OK)
        c->gateway.last_good[len] = '\0';
    else
        c->gateway.last_good[0] = '\0';
    mf_failure_load(c);

    mf_slot_info info[MF_SLOT_COUNT];
    int best = mf_slot_select(ports->slots, info);
    for (int i = 0; i < MF_SLOT_COUNT; i++) {
        mf_eventf(c, "slot", "slot=%d valid=%d sequence=%" PRIu32 "%s%s", i, info[i].valid, info[i].sequence,
                  info[i].valid ? "" : " why=", info[i].valid ? "" : (info[i].why ? info[i].why : "?"));
        if (info[i].valid) mf_remember_slot(c, i, &info[i]);
    }
    if (best < 0) mf_event(c, "no_model", "no valid model slot");
    err = mf_confirm_boot(c, best);
    if (err != MF_OK) mf_client_deinit(c); /* storage failed: nothing stays allocated or mapped */
    return err;
}

void mf_client_deinit(mf_client *c)
{
    if (!c) return;
    for (int i = 0; i < MF_SLOT_COUNT; i++)
        if (c->mapped[i]) mf_slots_unmap(c->ports.slots, i);
    c->active = -1;
    free(c->report.buf);
    c->report.buf = NULL;
}

const mf_active_model *mf_client_active(const mf_client *c) { return c->active >= 0 ? &c->models[c->active] : NULL; }

mf_err mf_client_step(mf_client *c, uint32_t *next_delay_ms)
{
    uint32_t scratch;
    uint32_t *delay = next_delay_ms ? next_delay_ms : &scratch;
    const mf_state_row *row = &STATES[c->state];
    if (!row->run) {
        *delay = UINT32_MAX;
        return MF_ERR_POWER_LOST;
    }
    mf_confirm_requests(c);
    mf_step s = {MF_GO, MF_OK, 0};
    row->run(c, &s);
    if (s.err == MF_ERR_POWER_LOST) {
        c->state = MF_STATE_HALTED;
        *delay = UINT32_MAX;
        return s.err;
    }
    mf_state next = s.outcome == MF_GO ? row->go : s.outcome == MF_IDLE ? row->idle : row->fail;
    /* The end of a poll and what followed it: ask the next gateway before settling. */
    if (s.outcome == MF_IDLE && c->state != MF_STATE_PENDING && mf_gateway_ask_next(c)) s.delay_ms = 0;
    if (s.outcome == MF_AUTH) {
        c->auth_then = c->state;
        next = MF_STATE_AUTH;
        s.delay_ms = 0;
    }
    c->state = next == MF_STATE_COUNT ? c->auth_then : next;
    *delay = s.delay_ms;
    return s.err;
}

mf_err mf_client_cycle(mf_client *c, uint32_t *next_delay_ms)
{
    uint32_t delay = 0;
    mf_err err;
    do err = mf_client_step(c, &delay);
    while (delay == 0);
    if (next_delay_ms) *next_delay_ms = delay;
    return err;
}

void mf_client_run(mf_client *c)
{
    for (;;) {
        uint32_t delay = 0;
        if (mf_client_cycle(c, &delay) == MF_ERR_POWER_LOST) return;
        mf_clock_sleep_ms(c->ports.clock, delay);
    }
}
