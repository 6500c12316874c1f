/* Power loss at every interesting point of an update: after every storage operation, and
 * at byte offsets through the download and through every byte of the slot header (the
 * commit). The same through an update made from a delta (the active slot only read, the
 * apply resumed from its saved position). After the cut the device reboots: the previous model must be active (or the new
 * one, only if the commit point was passed), the previous slot untouched, and the next run
 * must finish the update, resuming with Range when progress had been saved, and confirm it.
 * The same after every storage operation of a rollback: at run time (the application
 * rejects the new model) and at boot (a crash loop): the previous model stays intact and
 * active once it is over, the new one invalid and not fetched again. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mf_records.h"
#include "mf_slot.h"
#include "mf_verify.h"
#include "test_server.h"
#include "test_util.h"

#define MODEL_BYTES (100u * 1024 + 123)
#define SLOT_BYTES (128u * 1024)

static test_gateway gw;
static ts_server server;
static uint8_t *prog_a, *prog_b;
static char sha_a[65], sha_b[65];
static char *template_dir;
static uint8_t *template_slot_a;
static int slot_a;
static int resumed_runs, new_active_runs, old_active_runs;
/* m 3: m 1 with a stretch of new bytes, and the delta that makes it from m 1. */
static uint8_t *prog_c;
static char sha_c[65];
static test_delta_writer delta_ac;
static int delta_resumed_runs;

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) CHECK(write(out, buf, (size_t)n) == n);
    close(in);
    close(out);
}

static char *clone_template(void)
{
    char *dir = test_tempdir();
    char a[1024], b[1024];
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/slot%d.bin", template_dir, i);
        snprintf(b, sizeof b, "%s/slot%d.bin", dir, i);
        copy_file(a, b);
    }
    snprintf(b, sizeof b, "%s/nvs", dir);
    mkdir(b, 0755);
    const char *keys[] = {"mf_gw", "mf_id"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(a, sizeof a, "%s/nvs/%s", template_dir, keys[i]);
        snprintf(b, sizeof b, "%s/nvs/%s", dir, keys[i]);
        if (access(a, F_OK) == 0) copy_file(a, b);
    }
    return dir;
}

/* A device on a copy of the template (m 1 active), the gateway assigning m 2. Returns
 * the copy's folder. */
static char *open_clone(test_device *d)
{
    char *dir = clone_template();
    tg_init(&gw);
    tg_serve(&gw, "m", "2", prog_b, MODEL_BYTES);
    test_device_open(d, dir, SLOT_BYTES, server.url);
    return dir;
}

static void remove_tree(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void make_template(void)
{
    test_device d;
    template_dir = test_tempdir();
    test_device_open(&d, template_dir, SLOT_BYTES, server.url);
    tg_serve(&gw, "m", "1", prog_a, MODEL_BYTES);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    slot_a = d.client.active;
    uint32_t len;
    template_slot_a = test_slot_bytes(&d, slot_a, &len);
    test_device_close(&d);
}

/* One cut: ops_left or bytes_left set (the other -1). Returns the storage ops done. */
static uint64_t run_cut(int64_t ops_left, int64_t bytes_left)
{
    test_device d;
    char *dir = open_clone(&d);
    d.fault.ops_left = ops_left;
    d.fault.bytes_left = bytes_left;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_STR(test_active(&d)->sha256_hex, sha_a);
    mf_err err = MF_OK;
    for (int i = 0; i < 3 && err != MF_ERR_POWER_LOST; i++) err = test_device_cycles(&d, 1);
    uint64_t ops = d.fault.ops;
    int cut = d.fault.powered_off;

    /* Reboot after the cut. */
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    char active[65];
    snprintf(active, sizeof active, "%s", test_active_sha(&d));
    CHECK(strcmp(active, sha_a) == 0 || strcmp(active, sha_b) == 0);
    if (!cut) CHECK_STR(active, sha_b);
    uint32_t len;
    uint8_t *now_a = test_slot_bytes(&d, slot_a, &len);
    CHECK(memcmp(now_a, template_slot_a, len) == 0);
    free(now_a);
    if (strcmp(active, sha_b) == 0) new_active_runs++;
    else old_active_runs++;

    /* The next run completes, resuming where progress says. */
    mf_progress p;
    int have_progress = mf_progress_load(d.kv, "mf_dl", &p) == MF_OK && p.written > 0;
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "cut ops=%lld bytes=%lld: progress %d written %u\n", (long long)ops_left, (long long)bytes_left, have_progress, have_progress ? p.written : 0);
    tg_init(&gw);
    tg_serve(&gw, "m", "2", prog_b, MODEL_BYTES);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active(&d)->sha256_hex, sha_b);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    char record[512];
    size_t record_len;
    CHECK_EQ(mf_kv_get(d.kv, "mf_pend", record, sizeof record, &record_len), MF_ERR_NOT_FOUND);
    if (strcmp(active, sha_b) != 0 && have_progress) {
        CHECK_EQ(gw.range_requests, 1);
        CHECK_EQ(gw.last_range_start, p.written);
        resumed_runs++;
    }
    test_device_close(&d);
    remove_tree(dir);
    return ops;
}

/* The slot of the template's model is byte-identical: it was never written. */
static void check_a_untouched(test_device *d)
{
    uint32_t len;
    uint8_t *now_a = test_slot_bytes(d, slot_a, &len);
    CHECK(memcmp(now_a, template_slot_a, len) == 0);
    free(now_a);
}

/* Where a rollback from m 2 ends: m 1 active and confirmed, m 2's slot invalid, no
 * confirmation record, a failure keyed on m 2's sha256 (so it is not fetched again). */
static void check_rolled_back(test_device *d)
{
    CHECK_STR(test_active_sha(d), sha_a);
    CHECK_EQ(test_active(d)->status, MF_MODEL_CONFIRMED);
    CHECK(!d->client.valid[slot_a == 0 ? 1 : 0]);
    char record[512];
    size_t len;
    CHECK_EQ(mf_kv_get(d->kv, "mf_pend", record, sizeof record, &len), MF_ERR_NOT_FOUND);
    mf_failure_state f;
    CHECK_EQ(mf_failed_load(d->kv, "mf_fail", &f), MF_OK);
    CHECK_EQ(f.rolled_back, 1);
    char hex[65];
    mf_hex_encode(f.sha256, 32, hex);
    CHECK_STR(hex, sha_b);
    check_a_untouched(d);
}

/* The application rejects m 2; power is cut after `ops_left` storage operations. */
static int run_rollback_cut(int64_t ops_left)
{
    test_device d;
    char *dir = open_clone(&d);
    snprintf(d.reject_sha, sizeof d.reject_sha, "%s", sha_b);
    d.fault.ops_left = ops_left;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    for (int i = 0; i < 3 && !d.fault.powered_off; i++) test_device_cycles(&d, 1);
    int cut = d.fault.powered_off;

    /* Reboot: a valid model runs, m 1's slot is as it was, m 2 is at most pending. */
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK(strcmp(test_active_sha(&d), sha_a) == 0 || strcmp(test_active_sha(&d), sha_b) == 0);
    if (strcmp(test_active_sha(&d), sha_b) == 0) CHECK(test_active(&d)->status != MF_MODEL_CONFIRMED);
    check_a_untouched(&d);
    test_device_cycles(&d, 2);
    check_rolled_back(&d);
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "rollback cut %lld: %s\n", (long long)ops_left, gw.last_report);
    CHECK(strstr(gw.last_report, "\"rolledBackFrom\"") != NULL || !cut);
    test_device_close(&d);
    remove_tree(dir);
    return cut;
}

/* m 2 crashes the application at every boot: with confirm_boots 1, the boot after the
 * install rolls it back; power is cut after `ops_left` storage operations of that boot. */
static int run_boot_rollback_cut(int64_t ops_left)
{
    test_device d;
    char *dir = open_clone(&d);
    d.cfg.confirm_boots = 1;
    snprintf(d.crash_sha, sizeof d.crash_sha, "%s", sha_b);
    CHECK_EQ(test_device_boot(&d), MF_OK);
    test_device_cycles(&d, 1);
    CHECK_EQ(d.crashes, 1);

    mf_err err = test_device_reboot_cut(&d, SLOT_BYTES, ops_left);
    int cut = d.fault.powered_off;
    CHECK(err == MF_OK || (cut && err == MF_ERR_POWER_LOST));

    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_EQ(d.crashes, 1); /* never started again */
    check_rolled_back(&d);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK(strstr(gw.last_report, "not_confirmed: m 2 (not confirmed after 1 boots); rolled back to m 1") != NULL);
    test_device_close(&d);
    remove_tree(dir);
    return cut;
}

/* m 3 assigned with the delta from m 1; power is cut after `ops_left` storage operations.
 * After the reboot m 1 runs, its slot untouched (or m 3, once committed), and the next run
 * finishes from the delta, resuming it with Range when its position had been saved. Returns
 * the operations done. */
static uint64_t run_delta_cut(int64_t ops_left)
{
    test_device d;
    char *dir = clone_template();
    tg_init(&gw);
    tg_serve(&gw, "m", "3", prog_c, MODEL_BYTES);
    tg_offer_delta(&gw, sha_a, delta_ac.buf, delta_ac.len);
    test_device_open(&d, dir, SLOT_BYTES, server.url);
    d.fault.ops_left = ops_left;
    CHECK_EQ(test_device_boot(&d), MF_OK);
    for (int i = 0; i < 3 && !d.fault.powered_off; i++) test_device_cycles(&d, 1);
    uint64_t ops = d.fault.ops;

    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    char active[65];
    snprintf(active, sizeof active, "%s", test_active_sha(&d));
    CHECK(strcmp(active, sha_a) == 0 || strcmp(active, sha_c) == 0);
    check_a_untouched(&d);
    mf_delta_progress p;
    int have_progress = mf_delta_progress_load(d.kv, "mf_dl", &p) == MF_OK && p.at.written > 0;
    tg_init(&gw);
    tg_serve(&gw, "m", "3", prog_c, MODEL_BYTES);
    tg_offer_delta(&gw, sha_a, delta_ac.buf, delta_ac.len);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active(&d)->sha256_hex, sha_c);
    CHECK_EQ(test_active(&d)->status, MF_MODEL_CONFIRMED);
    CHECK_EQ(gw.artifact_requests, 0);
    if (strcmp(active, sha_a) == 0) {
        CHECK_EQ(gw.delta_requests, 1);
        if (have_progress) {
            CHECK_EQ(gw.delta_range_requests, 1);
            CHECK_EQ(gw.delta_last_range_start, p.at.consumed);
            delta_resumed_runs++;
        }
    }
    test_device_close(&d);
    remove_tree(dir);
    return ops;
}

/* A commit cut mid-header, then the same bytes assigned under another version: the header
 * differs, so it must go onto an erased sector, not over the torn one. */
static void torn_commit_then_same_bytes_renamed(void)
{
    test_device d;
    char *dir = open_clone(&d);
    d.fault.bytes_left = MODEL_BYTES + 183; /* the whole header but its last byte and the CRC */
    CHECK_EQ(test_device_boot(&d), MF_OK);
    CHECK_EQ(test_device_cycles(&d, 1), MF_ERR_POWER_LOST);
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_STR(test_active(&d)->sha256_hex, sha_a);
    tg_serve(&gw, "m", "2-renamed", prog_b, MODEL_BYTES);
    CHECK_EQ(test_device_cycles(&d, 1), MF_OK);
    CHECK_STR(test_active(&d)->sha256_hex, sha_b);
    CHECK_STR(test_active(&d)->version, "2-renamed");
    CHECK_EQ(test_device_reboot(&d, SLOT_BYTES), MF_OK);
    CHECK_STR(test_active(&d)->version, "2-renamed");
    test_device_close(&d);
    remove_tree(dir);
}

int main(void)
{
    tg_init(&gw);
    ts_start(&server, tg_handler, &gw);
    prog_a = test_program(MODEL_BYTES, 11);
    prog_b = test_program(MODEL_BYTES, 12);
    test_sha256_hex(prog_a, MODEL_BYTES, sha_a);
    test_sha256_hex(prog_b, MODEL_BYTES, sha_b);
    make_template();

    /* The whole update with no cut: how many operations and bytes it takes. */
    uint64_t total_ops = run_cut(-1, -1);
    fprintf(stderr, "update: %llu storage operations\n", (unsigned long long)total_ops);
    CHECK(total_ops > 30);

    for (int64_t cut = 0; cut <= (int64_t)total_ops; cut++) run_cut(cut, -1);
    int after_ops = resumed_runs;
    fprintf(stderr, "cuts after each operation: %d resumed with Range\n", after_ops);
    CHECK(after_ops > 0);

    /* Byte offsets: either side of sector boundaries and of the progress step through the
     * download, and through the header: its first bytes, its last, and every byte of the
     * CRC, the commit point (the slot gets the model's bytes, then 184 header bytes, then
     * the 4-byte CRC). */
    for (int64_t off = 4096; off < (int64_t)MODEL_BYTES; off += 3 * 4096) {
        run_cut(-1, off - 1);
        run_cut(-1, off + 1);
    }
    run_cut(-1, 65536 - 1);
    run_cut(-1, 65536);
    run_cut(-1, 65536 + 1);
    run_cut(-1, MODEL_BYTES - 1);
    static const int64_t header_cuts[] = {0, 1, 47, 48, 100, 183, 184, 185, 186, 187, 188};
    for (size_t i = 0; i < sizeof header_cuts / sizeof header_cuts[0]; i++) run_cut(-1, MODEL_BYTES + header_cuts[i]);
    fprintf(stderr, "runs: old model active %d, new model active %d, resumed %d\n", old_active_runs, new_active_runs,
            resumed_runs);
    CHECK(new_active_runs >= 1);
    CHECK(old_active_runs > new_active_runs);
    torn_commit_then_same_bytes_renamed();

    /* From a delta: copies of m 1 around 30 KiB of new bytes that straddle the first
     * progress step. A cut after every seventh storage operation (each 256-byte piece of
     * the apply is one write, and the cuts land in every part of it). */
    prog_c = malloc(MODEL_BYTES);
    memcpy(prog_c, prog_a, MODEL_BYTES);
    uint8_t *fresh = test_program(30 * 1024, 13);
    memcpy(prog_c + 50 * 1024, fresh, 30 * 1024);
    test_sha256_hex(prog_c, MODEL_BYTES, sha_c);
    test_delta_int(&delta_ac, MODEL_BYTES);
    test_delta_bytes(&delta_ac, "\n", 1);
    test_delta_copy(&delta_ac, 50 * 1024, 0);
    test_delta_insert(&delta_ac, fresh, 30 * 1024);
    test_delta_copy(&delta_ac, MODEL_BYTES - 80 * 1024, 80 * 1024);
    test_delta_int(&delta_ac, test_fossil_checksum(prog_c, MODEL_BYTES));
    test_delta_bytes(&delta_ac, ";", 1);
    free(fresh);
    uint64_t delta_ops = run_delta_cut(-1);
    for (int64_t cut = 0; cut <= (int64_t)delta_ops; cut += 7) run_delta_cut(cut);
    fprintf(stderr, "delta update: %llu storage operations, cut after every seventh: %d resumed with Range\n",
            (unsigned long long)delta_ops, delta_resumed_runs);
    CHECK(delta_resumed_runs > 0);

    int rollback_cuts = 0, boot_rollback_cuts = 0;
    for (int64_t cut = 0; run_rollback_cut(cut); cut++) rollback_cuts++;
    for (int64_t cut = 0; run_boot_rollback_cut(cut); cut++) boot_rollback_cuts++;
    fprintf(stderr, "rollback: cut at each of %d operations at run time, %d at boot\n", rollback_cuts,
            boot_rollback_cuts);
    CHECK(rollback_cuts > 30); /* the install before the rejection included */
    CHECK(boot_rollback_cuts >= 4);

    ts_stop(&server);
    free(prog_a);
    free(prog_b);
    free(prog_c);
    free(delta_ac.buf);
    free(template_slot_a);
    DONE();
}
