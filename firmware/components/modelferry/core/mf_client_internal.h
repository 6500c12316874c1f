/* What the client's files share. mf_client.c holds the transition table and runs one state
 * a step; the states live by what they do: talking to the gateway (mf_exchange.c),
 * reports (mf_report.c), the poll and what to do about it (mf_poll.c), failed assignments
 * (mf_failure.c), the download (mf_download.c), checking, committing and activating a
 * model (mf_install.c). */
#ifndef MF_CLIENT_INTERNAL_H
#define MF_CLIENT_INTERNAL_H

#include <inttypes.h>
#include <stdint.h>

#include "modelferry/modelferry.h"
#include "mf_records.h"
#include "mf_slot.h"

/* A download's progress (mf_progress), or a delta's (mf_delta_progress): one slot is
 * written at a time, by one or the other. */
#define MF_KEY_PROGRESS "mf_dl"
#define MF_KEY_FAILED "mf_fail"
#define MF_KEY_GATEWAY "mf_gw"
#define MF_KEY_PENDING "mf_pend"
#define MF_KEY_SEQUENCE "mf_seq"

/* Progress reaches the key-value store every this many bytes written to the slot (a
 * multiple of the sector size: a resume restarts at a sector boundary and erases that
 * sector again). */
#define MF_PROGRESS_STEP (16u * MF_FLASH_SECTOR)

/* How a state ended, which picks the next one from the table. */
typedef enum {
    MF_GO,      /* done: on to the next state */
    MF_IDLE,    /* nothing (more) to do until the next poll */
    MF_FAIL,    /* the exchange with the gateway failed: back off, maybe another gateway */
    MF_AUTH,    /* the gateway wants the device's key proven: AUTH, then this state again */
} mf_outcome;

typedef struct {
    mf_outcome outcome;
    mf_err err;            /* what mf_client_step returns */
    uint32_t delay_ms;     /* before the next step */
} mf_step;

void mf_step_go(mf_step *s);
void mf_step_idle(mf_step *s, mf_err err, uint32_t delay_ms);
void mf_step_fail(mf_step *s, mf_err err, uint32_t delay_ms);

void mf_event(mf_client *c, const char *name, const char *detail);
void mf_eventf(mf_client *c, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t mf_now_ms(mf_client *c);
uint32_t mf_rand(mf_client *c);

/* mf_exchange.c: the gateways, and small requests to them. */
const char *mf_gateway_url(mf_client *c);
void mf_gateway_answered(mf_client *c);
uint32_t mf_gateway_failed(mf_client *c);             /* the backoff before the next try */
/* Nothing to do here: on to the next gateway of the list (1), or back home to settle (0). */
int mf_gateway_ask_next(mf_client *c);
/* `<gateway>/v1/devices/<mac>/<what>` into out (MF_BASE_URL_MAX + 64); its length. */
size_t mf_device_url(mf_client *c, char *out, size_t cap, const char *what);
/* A request to the current gateway, with its credentials. */
mf_http_request mf_request(mf_client *c, const char *method, const char *url);
/* A request whose answer body (at most MF_ASSIGNMENT_BODY_MAX) lands in c->body, with
 * c->body.retry_after_s. *status and etag (MF_ETAG_MAX, may be NULL) say what came with it. */
mf_err mf_request_small(mf_client *c, const mf_http_request *req, int *status, char *etag);

/* mf_auth.c: device tokens. */
const char *mf_credentials(mf_client *c);             /* for the current gateway, or NULL */
/* Every answer's status: a 401 drops the gateway's token and asks for the key to be proven. */
void mf_saw_status(mf_client *c, int status);
int mf_auth_due(mf_client *c);                        /* prove the key before asking this gateway */
/* Ends the state with MF_AUTH, unless the token just given was refused (then a failure). */
void mf_step_auth(mf_client *c, mf_step *s);

/* mf_report.c. rolled_back_from: the hex sha256 of a model rolled back from, or NULL.
 * MF_ERR_NO_GATEWAY before the first DISCOVER. */
size_t mf_report_capacity(const mf_config *cfg);
int mf_capabilities_ok(const mf_capabilities *caps);
mf_err mf_report(mf_client *c, const char *state, const char *error, const char *rolled_back_from, double progress,
                 int with_caps);
/* Best effort: a report that does not arrive is repeated by the next change of state. */
void mf_report_state(mf_client *c, const char *state, const char *error, double progress);

/* mf_poll.c */
uint32_t mf_next_poll_delay(mf_client *c);
uint32_t mf_long_poll_delay(mf_client *c);
/* The active model is what the assignment names (whether it works or not). */
int mf_in_sync(const mf_client *c);

/* mf_failure.c */
void mf_failure_load(mf_client *c);
int mf_failure_waiting(mf_client *c);                 /* the assignment failed, its backoff runs */
void mf_failure_record(mf_client *c, mf_err why, const char *detail);
void mf_failure_clear(mf_client *c);
void mf_failure_forget_if_changed(mf_client *c);      /* the assignment is not the one that failed */
void mf_failure_say_waiting(mf_client *c);
mf_err mf_failure_report(mf_client *c, int with_caps);
/* The attempt count a rollback from this sha256 records (one more than the last, if it was). */
uint32_t mf_failure_rollback_attempt(mf_client *c, const uint8_t sha256[32]);
mf_err mf_failure_record_rollback(mf_client *c, const mf_active_model *from, uint32_t attempts, mf_err why,
                                  const char *detail);
/* The delay until the next poll, cut to when the failed assignment may be tried again. */
uint32_t mf_failure_delay(mf_client *c, uint32_t poll_delay_ms);

/* The states. */
void mf_run_discover(mf_client *c, mf_step *s);
void mf_run_boot_report(mf_client *c, mf_step *s);
void mf_run_poll(mf_client *c, mf_step *s);
void mf_run_decide(mf_client *c, mf_step *s);
void mf_run_check(mf_client *c, mf_step *s);
void mf_run_download(mf_client *c, mf_step *s);
/* A resumable transfer (an artifact, a delta) of `total` bytes: its request for `path`
 * (relative to the gateway, or absolute), from `start` with If-Range on the ETag
 * `"<etag_hex>"` when start > 0; and what its answer's status and range say: 0 the body as
 * asked, 1 the whole body to a Range request (start over), -1 refused (*err says why). */
#define MF_TRANSFER_URL_MAX (MF_BASE_URL_MAX + MF_MODEL_URL_MAX)
mf_http_request mf_transfer_request(mf_client *c, const char *path, const char *etag_hex, uint64_t start, uint64_t total,
                                    char url[MF_TRANSFER_URL_MAX], char if_range[70]);
int mf_transfer_answer(mf_client *c, const mf_http_head *head, uint64_t start, uint64_t total, mf_err *err);

/* mf_delta_download.c: the delta path of DOWNLOAD. Whether the assignment's delta applies
 * to what runs (and is not one that failed already, nor is a full download to resume). */
int mf_delta_wanted(mf_client *c, int slot);
/* Makes the assigned model in `slot` from the active one and the delta. MF_OK: the slot
 * holds the model's bytes, their sha256 checked. MF_ERR_NETWORK and MF_ERR_UNAUTHORIZED
 * (resumable), MF_ERR_POWER_LOST and MF_ERR_IO end the step as a download's would; anything
 * else means the delta did not make the model (`why` says how): fetch the full artifact
 * instead. */
mf_err mf_delta_download(mf_client *c, int slot, char *why, size_t why_len);
void mf_run_verify(mf_client *c, mf_step *s);
void mf_run_commit(mf_client *c, mf_step *s);
void mf_run_activate(mf_client *c, mf_step *s);
void mf_run_pending(mf_client *c, mf_step *s);
void mf_run_confirm(mf_client *c, mf_step *s);
void mf_run_rollback(mf_client *c, mf_step *s);
void mf_run_auth(mf_client *c, mf_step *s);

/* mf_install.c: the slot an update goes to (never the active one); what a valid slot holds;
 * activation: maps a slot (unless mapped) and hands it to the application. */
int mf_free_slot(const mf_client *c);
/* The URL is relative, or on the current gateway's origin (scheme, host, port): the only
 * place the device sends its credentials. */
int mf_same_origin(mf_client *c, const char *url);
/* What is checked before a byte is fetched: signature, signed sequence, origin, size. why
 * (MF_FAILED_DETAIL_MAX + 1) says what failed. */
mf_err mf_check(mf_client *c, const mf_assignment *a, char *why, size_t cap);
void mf_remember_slot(mf_client *c, int slot, const mf_slot_info *info);
mf_err mf_activate(mf_client *c, int slot, mf_model_status status);

/* mf_confirm.c */
int mf_pending(const mf_client *c);
/* The confirmation record of the model in `slot` (with this boot's count and signed
 * sequence from c->confirm). */
mf_pending_record mf_pending_of(const mf_client *c, int slot, uint32_t sequence, const uint8_t sha256[32],
                                mf_confirm_state state);
/* The application no longer reads this slot (unless active): unmapped, free to be written. */
void mf_release(mf_client *c, int slot);
/* At each step: a confirmation while nothing is pending releases the other slot. */
void mf_confirm_requests(mf_client *c);
/* A model just activated starts waiting for its confirmation. */
void mf_confirm_start(mf_client *c, uint32_t boots);
/* At boot, for the valid slot with the highest sequence (-1: none): activates it, or rolls
 * it back, as its confirmation record says. */
mf_err mf_confirm_boot(mf_client *c, int best);
mf_err mf_roll_back(mf_client *c, mf_err why, const char *detail);
mf_err mf_confirm_report_failed(mf_client *c, int with_caps);

#endif
