/* Small helpers for the host tests: checks that abort with a location, temporary folders,
 * fixtures, programs, keys and signatures, and a simulated device on a state folder. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "modelferry/modelferry.h"
#include "mf_posix.h"

extern int test_checks;

#define CHECK(cond) do { test_checks++; if (!(cond)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); test_checks++; if (_a != _b) { fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, _a, _b); abort(); } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); test_checks++; if (strcmp(_a, _b) != 0) { fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, _a, _b); abort(); } } while (0)
#define RUN(fn) do { fprintf(stderr, "-- %s\n", #fn); fn(); } while (0)
#define DONE() do { fprintf(stderr, "ok: %d checks\n", test_checks); return 0; } while (0)

typedef struct {
    const char *name;
    void (*run)(void);
} test_scenario;

#define SCENARIO(fn) {#fn, fn}

/* Runs each scenario in a child process of its own, so a failed check (which aborts) or a
 * sanitizer report ends only that scenario and the others still run; `prog NAME` runs one
 * in this process (for a debugger). before/after (may be NULL) run in the child around
 * each. Returns main's exit status: 0 when every scenario passed. */
int test_main(int argc, char **argv, const test_scenario *scenarios, size_t count, void (*before)(void),
              void (*after)(void));

/* The clock every test device runs on: manual (it starts at 0 and moves only when a test,
 * the scripted gateway or a sleep moves it), one per process. */
mf_clock *test_clock(void);

/* A fresh folder under $TMPDIR, removed by test_cleanup_dirs (at exit). */
char *test_tempdir(void);

/* Reads test/fixtures/pte/<name> ($FIXTURES). */
uint8_t *test_fixture(const char *name, size_t *len);

/* A program of `size` bytes: ET12 at byte 4 and a consistent eh00 header, seeded bytes. */
uint8_t *test_program(size_t size, uint32_t seed);

void test_sha256_hex(const uint8_t *data, size_t len, char out[65]);

/* A Fossil delta (core/mf_delta.h) written command by command: the target size, copies and
 * inserts, the checksum. The buffer grows as needed; free(w->buf) when done. */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
} test_delta_writer;

void test_delta_bytes(test_delta_writer *w, const void *data, size_t n);
void test_delta_int(test_delta_writer *w, uint64_t v);
void test_delta_copy(test_delta_writer *w, uint64_t count, uint64_t offset);
void test_delta_insert(test_delta_writer *w, const uint8_t *data, uint32_t n);
/* Fossil's checksum of a whole target, computed as Fossil does (not as the applier does). */
uint32_t test_fossil_checksum(const uint8_t *z, size_t n);

typedef struct {
    uint8_t pk[32];
    uint8_t sk[64];
    char pk_b64[64];
    char key_id[17];
} test_key;

void test_keygen(test_key *k);
/* Base64 signature of modelferry-v1:<name>:<version>:<sha256>:<size>. */
void test_sign(const test_key *k, const char *name, const char *version, const char *sha_hex, uint64_t size,
               char out[100]);
/* Base64 signature of modelferry-v2:<name>:<version>:<sha256>:<size>:<seq>. */
void test_sign_v2(const test_key *k, const char *name, const char *version, const char *sha_hex, uint64_t size,
                  uint64_t seq, char out[100]);

/* A device: ports on a state folder (slots of slot_bytes each), a config, a client. */
typedef struct {
    char dir[512];
    mf_fault fault;
    mf_slots *slots;
    mf_kv *kv;
    mf_http *http;
    mf_identity *id;
    mf_ports ports;
    mf_config cfg;
    mf_client client;
    int initialised;
    char fallback[128];
    uint8_t keys[4][32];
    int activations;
    char last_event[64];
    char last_failed[512];
    char last_waiting[512];
    /* What the application does with a model it is handed: confirm it (the default), or
     * nothing yet (hold_confirm), reject the one with this sha256, or crash on it (nothing
     * reaches storage after; the test reboots). A model MF_MODEL_FAILED is not run. */
    int hold_confirm;
    char reject_sha[65];
    char crash_sha[65];
    int crashes;
    mf_model_status last_status;
} test_device;

/* Opens the ports (no fault) with defaults fit for tests (no discovery, no long poll,
 * short backoff); the caller adjusts cfg, then calls test_device_boot. */
void test_device_open(test_device *d, const char *dir, uint32_t slot_bytes, const char *gateway_url);
mf_err test_device_boot(test_device *d);
/* Power off: drop the client and ports without any clean-up of state. */
void test_device_close(test_device *d);
/* Close and open again with the same config (a reboot), no fault. */
mf_err test_device_reboot(test_device *d, uint32_t slot_bytes);
/* The same, with the power cut after ops_left storage operations (-1: none). */
mf_err test_device_reboot_cut(test_device *d, uint32_t slot_bytes, int64_t ops_left);
/* Runs n cycles (mf_client_cycle); returns the last one's result. */
mf_err test_device_cycles(test_device *d, int n);

/* The active model (CHECKed to exist), and its sha256 or "" when there is none. */
const mf_active_model *test_active(test_device *d);
const char *test_active_sha(test_device *d);

/* Copies the bytes of a slot's partition. */
uint8_t *test_slot_bytes(test_device *d, int slot, uint32_t *len);

#endif
