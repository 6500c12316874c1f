/* modelferry device client: finds the gateway, polls for this device's assignment,
 * downloads only what changed into the inactive model slot, verifies it (size, sha256,
 * ed25519 signature, ExecuTorch header), commits it and reports (docs/design.md "Device
 * client loop"; application writers: firmware/README.md).
 *
 * The client is one struct the application owns (static or on its heap); it allocates only
 * its report buffer, once, in mf_client_init, plus cJSON's short-lived parse of each
 * assignment. Everything with logic in it is portable C11; the ports (include files
 * mf_port_*.h) are chosen at build time: port/esp-idf or port/posix. */
#ifndef MODELFERRY_H
#define MODELFERRY_H

#include <stddef.h>
#include <stdint.h>

#include "modelferry/mf_err.h"
#include "modelferry/mf_port_clock.h"
#include "modelferry/mf_port_discovery.h"
#include "modelferry/mf_port_http.h"
#include "modelferry/mf_port_identity.h"
#include "modelferry/mf_port_kv.h"
#include "modelferry/mf_port_random.h"
#include "modelferry/mf_port_slots.h"

#ifdef __cplusplus
extern "C" { /* an ExecuTorch application is C++ */
#endif

#define MF_MODEL_NAME_MAX 64
#define MF_MODEL_VERSION_MAX 64
#define MF_MODEL_URL_MAX 256

/* A delta the gateway offers beside the full artifact (docs/design.md "Deltas"): it makes
 * the assigned model from the one whose sha256 is `from`. */
typedef struct {
    int present;
    uint8_t from[32];
    char url[MF_MODEL_URL_MAX];
    uint64_t size;               /* the delta's own */
    uint8_t sha256[32];          /* the delta's own: names it for If-Range */
    char sha256_hex[65];
} mf_delta_offer;

/* What the gateway assigns this device: the answer to GET /v1/devices/{mac}/model. */
typedef struct {
    char device[18];
    char name[MF_MODEL_NAME_MAX + 1];
    char version[MF_MODEL_VERSION_MAX + 1];
    char sha256_hex[65];
    uint8_t sha256[32];
    uint64_t size;
    char url[MF_MODEL_URL_MAX];
    int signed_;                 /* signature and keyId both present */
    uint8_t signature[64];
    char key_id[17];
    int has_seq;                 /* signatureSeq given: a v2 signature (else v1, sequence 0) */
    uint64_t seq;
    mf_delta_offer delta;
    uint32_t poll_interval_s;
    uint32_t poll_jitter_s;
} mf_assignment;

/* The contract's bounds on capabilities; mf_client_init refuses a config beyond them. */
#define MF_OPERATORS_MAX 2048
#define MF_DELEGATES_MAX 64
#define MF_CAPABILITY_NAME_MAX 128   /* printable ASCII, no spaces */
#define MF_RUNTIME_MAX 64

/* What this firmware can run, reported to the gateway so it offers only compatible models. */
typedef struct {
    const char *const *operators;   /* "aten::add.out", ... */
    size_t operator_count;
    const char *const *delegates;
    size_t delegate_count;
    uint64_t arena_bytes;           /* memory the firmware gives a method's planned buffers */
    const char *runtime;            /* e.g. "executorch-1.0"; NULL to leave out */
} mf_capabilities;

/* Where a model stands with the application. */
typedef enum {
    MF_MODEL_CONFIRMED,  /* the application confirmed it runs (or it was installed before) */
    MF_MODEL_PENDING,    /* just activated: confirm or reject it (mf_client_confirm, mf_client_reject) */
    MF_MODEL_FAILED,     /* it could not be confirmed and there is no previous model to go back
                          * to (the device's first): it stays, reported failed; running it is
                          * the application's call */
} mf_model_status;

/* The model the application should run: memory-mapped slot bytes. */
typedef struct {
    int slot;
    const uint8_t *data;
    uint32_t size;
    uint32_t sequence;
    uint8_t sha256[32];
    char sha256_hex[65];
    char name[MF_MODEL_NAME_MAX + 1];
    char version[MF_MODEL_VERSION_MAX + 1];
    mf_model_status status;
} mf_active_model;

/* Called for the model found active at boot, whenever another one becomes active (an
 * install, a rollback), and when the active one fails confirmation with nothing to roll
 * back to (status MF_MODEL_FAILED). The model the application ran before stays mapped, and
 * its slot untouched, until the application calls mf_client_confirm (it now runs this
 * one) or mf_client_reject (this one does not work). */
typedef void (*mf_on_activate)(void *ctx, const mf_active_model *model);

/* What the client does, for logs (the simulator prints these as JSON lines). detail may
 * be NULL. */
typedef void (*mf_on_event)(void *ctx, const char *event, const char *detail);

typedef struct {
    const char *fallback_url;          /* e.g. "http://gw.local:8080"; NULL or "" for none */
    int discovery;                     /* browse mDNS for the gateway */
    const char *service;               /* "_modelferry._tcp" */
    uint32_t discovery_timeout_ms;
    const uint8_t (*trusted_keys)[32]; /* raw ed25519 public keys; none: signatures unchecked */
    size_t trusted_key_count;
    const uint8_t (*gateway_pins)[32]; /* sha256 of gateways' SubjectPublicKeyInfo: with any,
                                        * only gateways that prove one over TLS are used */
    size_t gateway_pin_count;          /* at most MF_PINS_MAX */
    int prefer_tls;                    /* unpinned: TLS where a gateway offers it (the HTTP
                                        * port checks certificates its own way) */
    uint32_t poll_interval_s;          /* until the gateway's answer says otherwise */
    uint32_t poll_jitter_s;
    uint32_t long_poll_s;              /* `wait=` asked of the gateway; 0: never long-poll */
    uint32_t request_timeout_ms;
    uint32_t backoff_base_ms;          /* network and gateway failures */
    uint32_t backoff_max_ms;
    uint32_t retry_base_ms;            /* a model that failed verification, per attempt */
    uint32_t retry_max_ms;
    uint32_t failures_before_switch;   /* then the next gateway, and rediscovery after the list */
    const char *device_token;          /* devices.token of the gateway, or NULL */
    int always_authenticate;           /* prove the device key to each gateway before asking it
                                        * anything (devices.admission pinned or accepted); 0:
                                        * when a request answers 401 */
    const char *firmware_version;      /* reported; may be NULL */
    uint32_t confirm_boots;            /* a pending model still unconfirmed at this boot is rolled back */
    uint32_t confirm_timeout_s;        /* ... or this long after it was activated */
    int deltas;                        /* apply the deltas the gateway offers (reported as
                                        * capabilities.patch); 0: full downloads only */
    mf_capabilities capabilities;
    mf_on_activate on_activate;
    mf_on_event on_event;
    void *ctx;                         /* passed to both callbacks */
} mf_config;

/* Defaults for every field (no fallback URL, discovery on, no keys). */
void mf_config_defaults(mf_config *cfg);

typedef struct {
    mf_http *http;
    mf_discovery *discovery;           /* may be NULL when cfg.discovery is 0 */
    mf_slots *slots;
    mf_kv *kv;
    mf_identity *identity;
    mf_clock *clock;
    mf_random *random;
} mf_ports;

/* Counters for tests and diagnostics. */
typedef struct {
    uint32_t polls, polls_not_modified, long_polls, polls_failed;
    uint32_t downloads, range_requests, range_restarts;
    uint32_t deltas_applied, deltas_refused;  /* a delta that made the model; one that did not (then the full artifact) */
    uint64_t bytes_received;                  /* every response body byte: answers, artifacts, deltas */
    uint32_t reports, reports_refused, activations, verify_failures, discoveries;
} mf_stats;

/* The client's states: mf_client_step runs one, and the transition table in mf_client.c
 * says which comes next after it went on, found nothing to do, or failed. */
typedef enum {
    MF_STATE_DISCOVER,      /* the list of gateways to try (mDNS, last good, fallback) */
    MF_STATE_BOOT_REPORT,   /* once a boot: what runs, and the capabilities */
    MF_STATE_POLL,          /* GET /v1/devices/{mac}/model */
    MF_STATE_DECIDE,        /* in sync, waiting out a failure, or an update to make */
    MF_STATE_CHECK,         /* the signature policy and the size, before a byte is fetched */
    MF_STATE_DOWNLOAD,      /* into the inactive slot, resumable: the delta from the active model
                             * when one is offered, else (or when it fails) the full artifact */
    MF_STATE_VERIFY,        /* the ExecuTorch header of what arrived */
    MF_STATE_COMMIT,        /* the slot header: the commit point */
    MF_STATE_ACTIVATE,      /* map it, hand it to the application, report */
    MF_STATE_PENDING,       /* until the application confirms or rejects it, or time runs out */
    MF_STATE_CONFIRM,       /* it works: the previous slot may be reused */
    MF_STATE_ROLLBACK,      /* it does not: the previous model is active again */
    MF_STATE_AUTH,          /* prove the device key to the gateway for a token, then back */
    MF_STATE_HALTED,        /* storage lost power: nothing until the next boot */
    MF_STATE_COUNT
} mf_state;

#define MF_BASE_URL_MAX 128
#define MF_GATEWAYS_MAX 8
#define MF_BODY_CAP 4097
#define MF_FAILED_DETAIL_MAX 95
#define MF_TOKEN_MAX 65
#define MF_PINS_MAX 4

/* What failed last: an assignment (checks, download, verification: tried again after its
 * backoff, or at once when the gateway assigns anything with another fingerprint), or a
 * model rolled back from (tried again after its backoff, or when another sha256 is
 * assigned). The key-value store keeps it but for the last two fields. */
typedef struct {
    uint32_t attempts;             /* 0: none */
    uint8_t rolled_back;           /* keyed on the sha256 rather than the fingerprint */
    uint8_t fingerprint[32];
    uint8_t sha256[32];
    char name[MF_MODEL_NAME_MAX + 1], version[MF_MODEL_VERSION_MAX + 1];
    uint8_t err;                   /* mf_err */
    char detail[MF_FAILED_DETAIL_MAX + 1];
    uint64_t not_before_ms;
    int reported;                  /* this boot's reports said so */
} mf_failure_state;

/* The client's state. The application owns it (static or on its heap) and reads it only
 * through the functions below; its fields are here so it needs no allocation. */
typedef struct mf_client {
    const mf_config *cfg;
    mf_ports ports;
    char mac[18];
    uint8_t device_key[32];            /* its Ed25519 public key (the secret stays in the store) */
    uint64_t boot_ms;
    mf_state state;
    mf_state auth_then;                /* the state AUTH goes back to */

    int active;                        /* slot index, -1 none */
    mf_active_model models[MF_SLOT_COUNT]; /* what each valid slot holds */
    int valid[MF_SLOT_COUNT];          /* the slot holds a committed model (the previous one, too) */
    int mapped[MF_SLOT_COUNT];         /* the application may read it: never written while so */

    /* The active model's confirmation (the key-value store keeps it across reboots). */
    struct {
        uint32_t boots;                /* boots it has been pending at */
        uint64_t deadline_ms;
        uint8_t err;                   /* why it is rolled back, or failed (MF_MODEL_FAILED) */
        uint8_t seq_counts;            /* its signed sequence, verified: the floor once confirmed */
        uint64_t seq;
        char detail[MF_FAILED_DETAIL_MAX + 1];
        int release_rejected;          /* the application said it no longer reads it */
        int reported;                  /* MF_MODEL_FAILED: this boot's reports said so */
        int confirmed, rejected;       /* from the application, any task (atomic builtins) */
        char reason[MF_FAILED_DETAIL_MAX + 1];
    } confirm;

    struct {
        char url[MF_GATEWAYS_MAX][MF_BASE_URL_MAX];
        size_t count, index;
        int listed;                    /* url[] holds what to try; 0: discover again */
        uint32_t consecutive_failures; /* with the current one */
        uint32_t backoff_failures;     /* with any, since the last answer */
        char last_good[MF_BASE_URL_MAX];
        int long_poll_ok;              /* it accepts our wait= */
        size_t home;                   /* the one the device settles on: the first that answered */
        int walking;                   /* asking the others before settling (no wait=, no ETag) */
        char token[MF_GATEWAYS_MAX][MF_TOKEN_MAX]; /* device tokens, each sent to its gateway only */
        uint32_t auth_asked;           /* a bit per gateway: it answered 401 */
        int fresh_token;               /* the token AUTH just got was not used yet */
    } gateway;

    struct {
        int have;
        char etag[MF_ETAG_MAX];
        mf_assignment model;
        uint8_t fingerprint[32];       /* mf_assignment_fingerprint */
        uint32_t next_poll_ms;         /* the delay the last poll decided on */
    } assignment;

    mf_failure_state failure;

    struct {
        uint32_t boot_done;            /* a bit per gateway of the list: it had this boot's report */
        char last_state[16];
        char last_sha[65];
        char *buf;                     /* allocated once, at init */
        size_t cap;
    } report;

    struct {
        char data[MF_BODY_CAP];        /* an assignment, or an error body */
        size_t len;
        int overflow;
        uint32_t retry_after_s;
    } body;

    uint8_t delta_refused[32];         /* the last delta that did not make its model: not used again this boot */

    mf_stats stats;
} mf_client;

/* Reads both slots, activates the valid one with the highest sequence (calling
 * on_activate), loads what the key-value store remembers. */
mf_err mf_client_init(mf_client *c, const mf_config *cfg, const mf_ports *ports);

/* Runs one state. *next_delay_ms says when to call again (0: at once). Returns what the
 * state found; MF_ERR_POWER_LOST means storage stopped and the client does nothing more
 * until it is initialised again. */
mf_err mf_client_step(mf_client *c, uint32_t *next_delay_ms);

/* Steps until the client has to wait (a poll answered, a failure to back off from), and
 * returns the result of that last step: one poll and what follows from it. */
mf_err mf_client_cycle(mf_client *c, uint32_t *next_delay_ms);

/* Forever: cycle, sleep. */
void mf_client_run(mf_client *c);

/* The active model, or NULL when no slot is valid. */
const mf_active_model *mf_client_active(const mf_client *c);

/* The application runs the active model: loaded, and a first inference went through. A
 * pending model becomes permanent, and the model the application ran before is released
 * (its mapping goes, its slot takes the next download). Call it after every on_activate
 * that the application followed, from any task; the client acts on it at its next step
 * (within a second while a model is pending). */
void mf_client_confirm(mf_client *c);

/* The pending model does not work (reason: a short text for the report). The client goes
 * back to the previous model (on_activate again), reports `failed` naming this one and the
 * reason, and does not fetch it again before its backoff or another assignment. The
 * application no longer reads the rejected model's bytes. */
void mf_client_reject(mf_client *c, const char *reason);

/* The device's Ed25519 public key, made on first use and kept in the key-value store (key
 * "mf_id": the 32-byte seed, which a factory may write instead). For `modelferry devices
 * preauthorize` (a CSV of mac,publicKey lines) and logs. */
mf_err mf_device_public_key(mf_kv *kv, uint8_t public_key[32]);

/* The name of a state, for logs. */
const char *mf_state_name(mf_state state);

void mf_client_deinit(mf_client *c);

#ifdef __cplusplus
}
#endif

#endif
