#define _GNU_SOURCE
#include "test_util.h"

#include <ftw.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "mf_verify.h"

int test_checks;

mf_clock *test_clock(void)
{
    static mf_clock *clock;
    if (!clock) clock = mf_posix_clock_new(1);
    CHECK(clock != NULL);
    return clock;
}

static int run_one(const test_scenario *sc, void (*before)(void), void (*after)(void))
{
    if (before) before();
    sc->run();
    if (after) after();
    return test_checks;
}

int test_main(int argc, char **argv, const test_scenario *scenarios, size_t count, void (*before)(void),
              void (*after)(void))
{
    if (argc > 1) {
        for (size_t i = 0; i < count; i++) {
            if (strcmp(argv[1], scenarios[i].name) != 0) continue;
            fprintf(stderr, "-- %s\n", scenarios[i].name);
            fprintf(stderr, "ok: %d checks\n", run_one(&scenarios[i], before, after));
            return 0;
        }
        fprintf(stderr, "%s: no scenario %s\n", argv[0], argv[1]);
        return 2;
    }
    /* The children add their checks here. */
    int *checks = mmap(NULL, sizeof *checks, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(checks != MAP_FAILED);
    *checks = 0;
    size_t failed = 0;
    for (size_t i = 0; i < count; i++) {
        fprintf(stderr, "-- %s\n", scenarios[i].name);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            *checks += run_one(&scenarios[i], before, after);
            exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
        failed++;
        if (WIFSIGNALED(status)) fprintf(stderr, "FAILED: %s (signal %d)\n", scenarios[i].name, WTERMSIG(status));
        else fprintf(stderr, "FAILED: %s (exit %d)\n", scenarios[i].name, WEXITSTATUS(status));
    }
    fprintf(stderr, "%s: %d checks, %zu of %zu scenarios failed\n", failed ? "FAILED" : "ok", *checks, failed, count);
    munmap(checks, sizeof *checks);
    return failed ? 1 : 0;
}

static char **dirs;
static int ndirs;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void cleanup_dirs(void)
{
    for (int i = 0; i < ndirs; i++) {
        nftw(dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(dirs[i]);
    }
    free(dirs);
}

char *test_tempdir(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/mf-test-XXXXXX", base);
    char *d = mkdtemp(tmpl);
    CHECK(d != NULL);
    if (ndirs == 0) atexit(cleanup_dirs);
    dirs = realloc(dirs, sizeof *dirs * (size_t)(ndirs + 1));
    dirs[ndirs] = strdup(d);
    return dirs[ndirs++];
}

uint8_t *test_fixture(const char *name, size_t *len)
{
    const char *dir = getenv("FIXTURES");
    CHECK(dir != NULL);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

uint8_t *test_program(size_t size, uint32_t seed)
{
    CHECK(size >= 48);
    uint8_t *b = malloc(size);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    put32(b, 56);
    memcpy(b + 4, "ET12", 4);
    memcpy(b + 8, "eh00", 4);
    put32(b + 12, 32);
    put64(b + 16, size / 2);
    put64(b + 24, size / 2);
    put64(b + 32, size - size / 2);
    return b;
}

void test_sha256_hex(const uint8_t *data, size_t len, char out[65])
{
    uint8_t d[32];
    crypto_hash_sha256(d, data, len);
    mf_hex_encode(d, 32, out);
}

void test_delta_bytes(test_delta_writer *w, const void *data, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2;
        w->buf = realloc(w->buf, w->cap);
        CHECK(w->buf != NULL);
    }
    memcpy(w->buf + w->len, data, n);
    w->len += n;
}

void test_delta_int(test_delta_writer *w, uint64_t v)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = digits[v & 63];
        v >>= 6;
    } while (v);
    while (n) test_delta_bytes(w, &tmp[--n], 1);
}

void test_delta_copy(test_delta_writer *w, uint64_t count, uint64_t offset)
{
    test_delta_int(w, count);
    test_delta_bytes(w, "@", 1);
    test_delta_int(w, offset);
    test_delta_bytes(w, ",", 1);
}

void test_delta_insert(test_delta_writer *w, const uint8_t *data, uint32_t n)
{
    test_delta_int(w, n);
    test_delta_bytes(w, ":", 1);
    test_delta_bytes(w, data, n);
}

uint32_t test_fossil_checksum(const uint8_t *z, size_t n)
{
    uint32_t sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
    while (n >= 4) {
        sum0 += z[0];
        sum1 += z[1];
        sum2 += z[2];
        sum3 += z[3];
        z += 4;
        n -= 4;
    }
    sum3 += (sum2 << 8) + (sum1 << 16) + (sum0 << 24);
    if (n == 3) sum3 += (uint32_t)z[2] << 8;
    if (n >= 2) sum3 += (uint32_t)z[1] << 16;
    if (n >= 1) sum3 += (uint32_t)z[0] << 24;
    return sum3;
}

void test_keygen(test_key *k)
{
    CHECK(sodium_init() >= 0);
    crypto_sign_keypair(k->pk, k->sk);
    sodium_bin2base64(k->pk_b64, sizeof k->pk_b64, k->pk, 32, sodium_base64_VARIANT_ORIGINAL);
    mf_key_id(k->pk, k->key_id);
}

void test_sign(const test_key *k, const char *name, const char *version, const char *sha_hex, uint64_t size,
               char out[100])
{
    char msg[400];
    int n = snprintf(msg, sizeof msg, "modelferry-v1:%s:%s:%s:%llu", name, version, sha_hex, (unsigned long long)size);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, k->sk);
    sodium_bin2base64(out, 100, sig, 64, sodium_base64_VARIANT_ORIGINAL);
}

void test_sign_v2(const test_key *k, const char *name, const char *version, const char *sha_hex, uint64_t size,
                  uint64_t seq, char out[100])
{
    char msg[400];
    int n = snprintf(msg, sizeof msg, "modelferry-v2:%s:%s:%s:%llu:%llu", name, version, sha_hex, (unsigned long long)size,
                     (unsigned long long)seq);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, k->sk);
    sodium_bin2base64(out, 100, sig, 64, sodium_base64_VARIANT_ORIGINAL);
}

static void dev_event(void *ctx, const char *event, const char *detail)
{
    test_device *d = ctx;
    snprintf(d->last_event, sizeof d->last_event, "%s", event);
    if (strcmp(event, "failed") == 0) snprintf(d->last_failed, sizeof d->last_failed, "%s", detail ? detail : "");
    if (strcmp(event, "waiting") == 0) snprintf(d->last_waiting, sizeof d->last_waiting, "%s", detail ? detail : "");
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "   [%s] %s\n", event, detail ? detail : "");
}

static void dev_activate(void *ctx, const mf_active_model *m)
{
    test_device *d = ctx;
    /* The mapped bytes are the model: check what the runtime would get. */
    char hex[65];
    test_sha256_hex(m->data, m->size, hex);
    CHECK_STR(hex, m->sha256_hex);
    d->activations++;
    d->last_status = m->status;
    if (m->status != MF_MODEL_PENDING) {
        if (m->status == MF_MODEL_CONFIRMED && !d->hold_confirm) mf_client_confirm(&d->client); /* it runs this one now */
        return;
    }
    if (strcmp(m->sha256_hex, d->crash_sha) == 0) {
        d->crashes++;
        d->fault.powered_off = 1;
    } else if (strcmp(m->sha256_hex, d->reject_sha) == 0) {
        mf_client_reject(&d->client, "the test rejects it");
    } else if (!d->hold_confirm) {
        mf_client_confirm(&d->client);
    }
}

const mf_active_model *test_active(test_device *d)
{
    const mf_active_model *m = mf_client_active(&d->client);
    CHECK(m != NULL);
    return m;
}

const char *test_active_sha(test_device *d)
{
    const mf_active_model *m = mf_client_active(&d->client);
    return m ? m->sha256_hex : "";
}

static void open_ports(test_device *d, uint32_t slot_bytes)
{
    d->slots = mf_posix_slots_open(d->dir, slot_bytes, &d->fault);
    d->kv = mf_posix_kv_open(d->dir, &d->fault);
    d->http = mf_posix_http_new();
    static const uint8_t mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
    d->id = mf_posix_identity_new(mac);
    CHECK(d->slots && d->kv && d->http && d->id);
    d->ports = (mf_ports){d->http, NULL, d->slots, d->kv, d->id, test_clock(), mf_posix_random()};
}

void test_device_open(test_device *d, const char *dir, uint32_t slot_bytes, const char *gateway_url)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    mf_fault_init(&d->fault);
    open_ports(d, slot_bytes);
    mf_config_defaults(&d->cfg);
    snprintf(d->fallback, sizeof d->fallback, "%s", gateway_url ? gateway_url : "");
    d->cfg.fallback_url = d->fallback;
    d->cfg.discovery = 0;
    d->cfg.long_poll_s = 0;
    d->cfg.request_timeout_ms = 5000;
    d->cfg.backoff_base_ms = 10;
    d->cfg.backoff_max_ms = 100;
    d->cfg.retry_base_ms = 60000;
    d->cfg.retry_max_ms = 600000;
    d->cfg.failures_before_switch = 2;
    d->cfg.on_event = dev_event;
    d->cfg.on_activate = dev_activate;
    d->cfg.ctx = d;
    d->cfg.firmware_version = "test";
}

mf_err test_device_boot(test_device *d)
{
    mf_err err = mf_client_init(&d->client, &d->cfg, &d->ports);
    d->initialised = err == MF_OK;
    return err;
}

void test_device_close(test_device *d)
{
    if (d->initialised) mf_client_deinit(&d->client);
    d->initialised = 0;
    mf_posix_slots_close(d->slots);
    mf_posix_kv_close(d->kv);
    mf_posix_http_free(d->http);
    mf_posix_identity_free(d->id);
    d->slots = NULL;
    d->kv = NULL;
    d->http = NULL;
    d->id = NULL;
}

mf_err test_device_reboot_cut(test_device *d, uint32_t slot_bytes, int64_t ops_left)
{
    test_device_close(d);
    mf_fault_init(&d->fault);
    d->fault.ops_left = ops_left;
    open_ports(d, slot_bytes);
    return test_device_boot(d);
}

mf_err test_device_reboot(test_device *d, uint32_t slot_bytes) { return test_device_reboot_cut(d, slot_bytes, -1); }

mf_err test_device_cycles(test_device *d, int n)
{
    mf_err err = MF_OK;
    for (int i = 0; i < n; i++) {
        uint32_t delay;
        err = mf_client_cycle(&d->client, &delay);
    }
    return err;
}

uint8_t *test_slot_bytes(test_device *d, int slot, uint32_t *len)
{
    *len = mf_slots_size(d->slots, slot);
    uint8_t *b = malloc(*len);
    CHECK(mf_slots_read(d->slots, slot, 0, b, *len) == MF_OK);
    return b;
}
