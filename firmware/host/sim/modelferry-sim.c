/* modelferry-sim: the device client on Linux, built from the same core as the firmware
 * (docs/design.md "Commands"). State (the two model slots and the key-value store) lives in
 * --state-dir, so stopping and starting the simulator is a device reboot. Events go to
 * stdout as JSON lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "modelferry/modelferry.h"
#include "mf_json_out.h"
#include "mf_posix.h"
#include "mf_slot.h"
#include "mf_verify.h"

#define MAX_KEYS 8
#define MAX_NAMES 2048

static void usage(FILE *to)
{
    fprintf(to,
            "usage: modelferry-sim --mac MAC --state-dir DIR [--gateway URL] [--once] [--public-key B64]...\n"
            "                      [--operators a,b,...] [--delegates a,b,...] [--arena-bytes N] [--slot-bytes N]\n"
            "                      [--wait SECONDS] [--service NAME] [--discovery-timeout MS] [--token T]\n"
            "                      [--firmware VERSION] [--runtime NAME] [--power-cut-after-bytes N]\n"
            "                      [--max-download-rate BYTES_PER_SECOND] [--stats] [--no-deltas]\n"
            "                      [--confirm-boots N] [--confirm-timeout SECONDS]\n"
            "                      [--reject-model SHA256] [--crash-model SHA256]\n"
            "                      [--always-authenticate] [--print-key] [--pin-gateway HEX]...\n"
            "With no --gateway the gateway is found by mDNS (%s). --once does one poll and update\n"
            "cycle and exits 0 when the device then runs its assigned model, confirmed, 1 otherwise.\n"
            "--slot-bytes is the largest model a slot holds (rounded up to 4 KiB; the slot file adds\n"
            "a 4 KiB header sector). --power-cut-after-bytes stops the process (exit 137, no clean-up)\n"
            "once that many model bytes reached the slot, as a power cut would.\n"
            "The application part confirms every model it is handed (mf_client_confirm), except:\n"
            "--reject-model SHA256 rejects that model right after its activation (mf_client_reject);\n"
            "--crash-model SHA256 exits with status 134 right after that model is activated, before\n"
            "confirming it (starting again on the same --state-dir is the reboot). A model that\n"
            "could not be confirmed and has nothing to roll back to is not run.\n"
            "Deltas the gateway offers are applied (capabilities.patch: fossil) unless --no-deltas.\n"
            "--stats prints, at exit, the memory figures and bytes_received: every response body\n"
            "byte of the run (answers, artifacts, deltas).\n"
            "The device's Ed25519 key is made on first start and kept in DIR; --print-key prints\n"
            "MAC,PUBLIC_KEY (a line of the CSV `modelferry devices preauthorize` reads) and exits.\n"
            "--always-authenticate proves the key to each gateway before asking it anything\n"
            "(otherwise when a request answers 401).\n"
            "--pin-gateway HEX (64 hex: sha256 of a gateway certificate's SubjectPublicKeyInfo, as\n"
            "`modelferry doctor` and /healthz give it; at most 4): only gateways that prove one of\n"
            "these over TLS are used (TXT tls=1, https to tlsport, or an https --gateway).\n",
            "_modelferry._tcp");
}

/* ------------------------------------------------------------------ output */

static mf_clock *sim_clock;

static void print_event(const char *event, const char *detail)
{
    char buf[1024];
    mf_json j;
    mf_json_init(&j, buf, sizeof buf);
    mf_json_begin(&j, '{');
    mf_json_key(&j, "event");
    mf_json_string(&j, event);
    if (detail) {
        mf_json_key(&j, "detail");
        mf_json_string(&j, detail);
    }
    mf_json_key(&j, "ms");
    mf_json_uint(&j, mf_clock_now_ms(sim_clock));
    mf_json_end(&j, '}');
    printf("%s\n", j.overflow ? "{\"event\":\"overflow\"}" : buf);
    fflush(stdout);
}

static void on_event(void *ctx, const char *event, const char *detail)
{
    (void)ctx;
    print_event(event, detail);
}

/* The application's side: what it does with each model it is handed. */
static const char *reject_sha = "", *crash_sha = "";

static const char *status_name(mf_model_status status)
{
    return status == MF_MODEL_PENDING ? "pending" : status == MF_MODEL_FAILED ? "failed" : "confirmed";
}

static void on_activate(void *ctx, const mf_active_model *m)
{
    mf_client *client = ctx;
    char detail[256];
    if (m->status == MF_MODEL_FAILED) {
        snprintf(detail, sizeof detail, "sha256=%s: not confirmed and nothing to go back to; not run", m->sha256_hex);
        print_event("not_loaded", detail);
        return;
    }
    /* Where firmware would hand m->data and m->size to the ExecuTorch runtime. */
    snprintf(detail, sizeof detail, "sha256=%s size=%" PRIu32 " status=%s head=%c%c%c%c", m->sha256_hex, m->size,
             status_name(m->status), m->size >= 8 ? m->data[4] : '?', m->size >= 8 ? m->data[5] : '?',
             m->size >= 8 ? m->data[6] : '?', m->size >= 8 ? m->data[7] : '?');
    print_event("loaded", detail);
    if (m->status == MF_MODEL_PENDING && strcmp(m->sha256_hex, crash_sha) == 0) {
        print_event("crash", m->sha256_hex);
        _exit(134);
    }
    if (m->status == MF_MODEL_PENDING && strcmp(m->sha256_hex, reject_sha) == 0) {
        mf_client_reject(client, "--reject-model");
        return;
    }
    mf_client_confirm(client);
}

static void on_power_lost(void *ctx)
{
    (void)ctx;
    print_event("power_cut", NULL);
    _exit(137);
}

/* ------------------------------------------------------------------ heap accounting
 * cJSON is the core's only allocator after init; counting it (plus the report buffer the
 * client allocates once) gives the client's peak heap. */
static size_t heap_now, heap_peak;

static void *count_malloc(size_t n)
{
    size_t *p = malloc(n + sizeof(size_t) * 2);
    if (!p) return NULL;
    p[0] = n;
    heap_now += n;
    if (heap_now > heap_peak) heap_peak = heap_now;
    return p + 2;
}

static void count_free(void *q)
{
    if (!q) return;
    size_t *p = (size_t *)q - 2;
    heap_now -= p[0];
    free(p);
}

/* ------------------------------------------------------------------ arguments */

static size_t split_list(char *text, const char **out, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(text, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*tok == '\0') continue;
        if (n == max) return SIZE_MAX;
        out[n++] = tok;
    }
    return n;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"mac", required_argument, 0, 'm'},          {"state-dir", required_argument, 0, 'd'},
        {"gateway", required_argument, 0, 'g'},      {"once", no_argument, 0, 'o'},
        {"public-key", required_argument, 0, 'k'},   {"operators", required_argument, 0, 'O'},
        {"delegates", required_argument, 0, 'D'},    {"arena-bytes", required_argument, 0, 'a'},
        {"slot-bytes", required_argument, 0, 's'},   {"wait", required_argument, 0, 'w'},
        {"service", required_argument, 0, 'S'},      {"discovery-timeout", required_argument, 0, 't'},
        {"token", required_argument, 0, 'T'},        {"firmware", required_argument, 0, 'f'},
        {"runtime", required_argument, 0, 'r'},      {"power-cut-after-bytes", required_argument, 0, 'p'},
        {"stats", no_argument, 0, 'x'},              {"help", no_argument, 0, 'h'},
        {"max-download-rate", required_argument, 0, 'R'},
        {"reject-model", required_argument, 0, 'J'},  {"crash-model", required_argument, 0, 'C'},
        {"confirm-boots", required_argument, 0, 'B'}, {"confirm-timeout", required_argument, 0, 'W'},
        {"no-deltas", no_argument, 0, 'N'},
        {"always-authenticate", no_argument, 0, 'A'}, {"print-key", no_argument, 0, 'P'},
        {"pin-gateway", required_argument, 0, 'G'},
        {0, 0, 0, 0},
    };
    static uint8_t keys[MAX_KEYS][32], pins[MF_PINS_MAX][32];
    static const char *operators[MAX_NAMES], *delegates[MAX_NAMES];
    const char *mac_text = NULL, *dir = NULL, *gateway = NULL;
    int once = 0, stats = 0, print_key = 0;
    size_t key_count = 0, pin_count = 0;
    uint64_t slot_bytes = 0x2EF000, power_cut = 0, max_rate = 0, v;
    int have_power_cut = 0;
    mf_config cfg;
    mf_config_defaults(&cfg);
    cfg.firmware_version = "modelferry-sim";
    cfg.capabilities.runtime = "executorch";
    cfg.long_poll_s = 60;

    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'm': mac_text = optarg; break;
        case 'd': dir = optarg; break;
        case 'g': gateway = optarg; break;
        case 'o': once = 1; break;
        case 'k':
            if (key_count == MAX_KEYS || mf_public_key_from_base64(optarg, keys[key_count]) != 0) {
                fprintf(stderr, "modelferry-sim: --public-key must be base64 of a raw 32-byte ed25519 key (at most %d)\n", MAX_KEYS);
                return 2;
            }
            key_count++;
            break;
        case 'O':
            if ((cfg.capabilities.operator_count = split_list(optarg, operators, MAX_NAMES)) == SIZE_MAX) {
                fprintf(stderr, "modelferry-sim: at most %d operators\n", MAX_NAMES);
                return 2;
            }
            cfg.capabilities.operators = operators;
            break;
        case 'D':
            if ((cfg.capabilities.delegate_count = split_list(optarg, delegates, MAX_NAMES)) == SIZE_MAX) {
                fprintf(stderr, "modelferry-sim: at most %d delegates\n", MAX_NAMES);
                return 2;
            }
            cfg.capabilities.delegates = delegates;
            break;
        case 'a':
            if (parse_u64(optarg, &cfg.capabilities.arena_bytes) != 0) { fprintf(stderr, "modelferry-sim: --arena-bytes must be a number\n"); return 2; }
            break;
        case 's':
            if (parse_u64(optarg, &slot_bytes) != 0 || slot_bytes == 0 || slot_bytes > 0x7FFF0000u) {
                fprintf(stderr, "modelferry-sim: --slot-bytes must be a number from 1 to 2147418112\n");
                return 2;
            }
            break;
        case 'w':
            if (parse_u64(optarg, &v) != 0 || v > 86400) { fprintf(stderr, "modelferry-sim: --wait must be 0..86400\n"); return 2; }
            cfg.long_poll_s = (uint32_t)v;
            break;
        case 'S': cfg.service = optarg; break;
        case 't':
            if (parse_u64(optarg, &v) != 0 || v > 600000) { fprintf(stderr, "modelferry-sim: --discovery-timeout must be 0..600000\n"); return 2; }
            cfg.discovery_timeout_ms = (uint32_t)v;
            break;
        case 'T': cfg.device_token = optarg; break;
        case 'f':
            if (strlen(optarg) > 64) { fprintf(stderr, "modelferry-sim: --firmware is at most 64 characters (the report's limit)\n"); return 2; }
            cfg.firmware_version = optarg;
            break;
        case 'r': cfg.capabilities.runtime = optarg; break;
        case 'p':
            if (parse_u64(optarg, &power_cut) != 0) { fprintf(stderr, "modelferry-sim: --power-cut-after-bytes must be a number\n"); return 2; }
            have_power_cut = 1;
            break;
        case 'R':
            if (parse_u64(optarg, &max_rate) != 0) { fprintf(stderr, "modelferry-sim: --max-download-rate must be a number\n"); return 2; }
            break;
        case 'x': stats = 1; break;
        case 'N': cfg.deltas = 0; break;
        case 'J':
        case 'C':
            if (strlen(optarg) != 64 || strspn(optarg, "0123456789abcdef") != 64) {
                fprintf(stderr, "modelferry-sim: --%s takes a sha256 in lower-case hex\n", c == 'J' ? "reject-model" : "crash-model");
                return 2;
            }
            if (c == 'J') reject_sha = optarg;
            else crash_sha = optarg;
            break;
        case 'B':
            if (parse_u64(optarg, &v) != 0 || v < 1 || v > 100) { fprintf(stderr, "modelferry-sim: --confirm-boots must be 1..100\n"); return 2; }
            cfg.confirm_boots = (uint32_t)v;
            break;
        case 'W':
            if (parse_u64(optarg, &v) != 0 || v < 1 || v > 86400) { fprintf(stderr, "modelferry-sim: --confirm-timeout must be 1..86400\n"); return 2; }
            cfg.confirm_timeout_s = (uint32_t)v;
            break;
        case 'A': cfg.always_authenticate = 1; break;
        case 'G':
            if (pin_count == MF_PINS_MAX || mf_hex_decode(optarg, pins[pin_count], 32) != 0) {
                fprintf(stderr, "modelferry-sim: --pin-gateway takes 64 lower-case hex characters (at most %d)\n", MF_PINS_MAX);
                return 2;
            }
            pin_count++;
            break;
        case 'P': print_key = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    uint8_t mac[6];
    if (!mac_text || !dir || optind != argc) { usage(stderr); return 2; }
    if (mf_parse_mac(mac_text, mac) != 0) { fprintf(stderr, "modelferry-sim: --mac %s is not a MAC address\n", mac_text); return 2; }
    if (gateway && strncmp(gateway, "http://", 7) != 0 && strncmp(gateway, "https://", 8) != 0) {
        fprintf(stderr, "modelferry-sim: --gateway must be an http:// or https:// URL\n");
        return 2;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) { perror(dir); return 1; }
    sim_clock = mf_posix_clock_new(0);

    cJSON_Hooks hooks = {count_malloc, count_free};
    cJSON_InitHooks(&hooks);

    /* A gateway given on the command line is the only one: no discovery. */
    static char fallback[256];
    if (gateway) {
        snprintf(fallback, sizeof fallback, "%s", gateway);
        size_t n = strlen(fallback);
        while (n > 0 && fallback[n - 1] == '/') fallback[--n] = '\0';
        cfg.fallback_url = fallback;
        cfg.discovery = 0;
    }
    cfg.trusted_keys = (const uint8_t(*)[32])keys;
    cfg.trusted_key_count = key_count;
    cfg.gateway_pins = (const uint8_t(*)[32])pins;
    cfg.gateway_pin_count = pin_count;
    cfg.on_event = on_event;
    cfg.on_activate = on_activate;
    static mf_client client;
    cfg.ctx = &client;

    if (print_key) {
        uint8_t pk[32];
        char b64[48];
        mf_kv *key_store = mf_posix_kv_open(dir, NULL);
        mf_err key_err = key_store ? mf_device_public_key(key_store, pk) : MF_ERR_IO;
        mf_posix_kv_close(key_store);
        mf_posix_clock_free(sim_clock);
        if (key_err != MF_OK) {
            fprintf(stderr, "modelferry-sim: cannot read or store the device key in %s: %s\n", dir, mf_err_code(key_err));
            return 1;
        }
        sodium_bin2base64(b64, sizeof b64, pk, 32, sodium_base64_VARIANT_ORIGINAL);
        printf("%02x:%02x:%02x:%02x:%02x:%02x,%s\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], b64);
        return 0;
    }
    mf_fault fault;
    mf_fault_init(&fault);
    fault.on_power_lost = on_power_lost;
    if (have_power_cut) fault.bytes_left = (int64_t)power_cut;

    uint32_t capacity = (uint32_t)((slot_bytes + MF_FLASH_SECTOR - 1) / MF_FLASH_SECTOR * MF_FLASH_SECTOR);
    mf_slots *slots = mf_posix_slots_open(dir, capacity + MF_FLASH_SECTOR, &fault);
    mf_kv *kv = mf_posix_kv_open(dir, &fault);
    mf_http *http = mf_posix_http_new();
    mf_discovery *disc = mf_posix_discovery_new(NULL);
    mf_identity *id = mf_posix_identity_new(mac);
    if (!slots || !kv || !http || !disc || !id || !sim_clock) {
        fprintf(stderr, "modelferry-sim: cannot open the state in %s (an existing slot of another --slot-bytes?)\n", dir);
        return 1;
    }
    mf_posix_http_set_max_rate(http, max_rate);
    mf_ports ports = {http, disc, slots, kv, id, sim_clock, mf_posix_random()};
    mf_err err = mf_client_init(&client, &cfg, &ports);
    if (err == MF_ERR_INVALID_ARG) {
        fprintf(stderr, "modelferry-sim: capabilities beyond the contract: at most %d operators and %d delegates, "
                        "names of 1 to %d printable characters without spaces, a runtime of at most %d\n",
                MF_OPERATORS_MAX, MF_DELEGATES_MAX, MF_CAPABILITY_NAME_MAX, MF_RUNTIME_MAX);
        return 2;
    }
    if (err != MF_OK) {
        fprintf(stderr, "modelferry-sim: %s\n", mf_err_code(err));
        return 1;
    }

    int status = 0;
    if (once) {
        uint32_t delay;
        err = mf_client_cycle(&client, &delay);
        /* A model pending at boot takes a cycle of its own (confirmed or rolled back) before
         * the first poll. */
        if (client.stats.polls == 0 && err != MF_ERR_POWER_LOST) err = mf_client_cycle(&client, &delay);
        const mf_active_model *m = mf_client_active(&client);
        int in_sync = client.assignment.have && m && m->status == MF_MODEL_CONFIRMED &&
                      memcmp(m->sha256, client.assignment.model.sha256, 32) == 0;
        char detail[160];
        snprintf(detail, sizeof detail, "in_sync=%d result=%s", in_sync, mf_err_code(err));
        print_event("once", detail);
        status = in_sync ? 0 : 1;
    } else {
        mf_client_run(&client);
        status = 1;
    }
    if (stats) {
        char detail[320];
        snprintf(detail, sizeof detail,
                 "client_struct=%zu report_buffer=%zu cjson_peak=%zu peak_heap=%zu slot_capacity=%" PRIu32
                 " bytes_received=%" PRIu64 " deltas_applied=%" PRIu32 " deltas_refused=%" PRIu32,
                 sizeof client, client.report.cap, heap_peak, client.report.cap + heap_peak, capacity,
                 client.stats.bytes_received, client.stats.deltas_applied, client.stats.deltas_refused);
        print_event("stats", detail);
    }
    mf_client_deinit(&client);
    mf_posix_identity_free(id);
    mf_posix_discovery_free(disc);
    mf_posix_http_free(http);
    mf_posix_kv_close(kv);
    mf_posix_slots_close(slots);
    mf_posix_clock_free(sim_clock);
    curl_global_cleanup();
    return status;
}
