/* Power loss at every interesting point of an update: after every storage operation, and
 * at byte offsets through the download and through every byte of the slot header (the
 * commit). After the cut the device reboots: the previous model must be active (or the new
 * one, only if the commit point was passed), the previous slot untouched, and the next run
 * must finish the update, resuming with Range when progress had been saved. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mf_records.h"
#include "mf_slot.h"
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
    const char *keys[] = {"mf_gw"};
    for (size_t i = 0; i < 1; i++) {
        snprintf(a, sizeof a, "%s/nvs/%s", template_dir, keys[i]);
        snprintf(b, sizeof b, "%s/nvs/%s", dir, keys[i]);
        if (access(a, F_OK) == 0) copy_file(a, b);
    }
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
    char *dir = clone_template();
    test_device d;
    tg_init(&gw);
    tg_serve(&gw, "m", "2", prog_b, MODEL_BYTES);
    test_device_open(&d, dir, SLOT_BYTES, server.url);
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
    if (strcmp(active, sha_b) != 0 && have_progress) {
        CHECK_EQ(gw.range_requests, 1);
        CHECK_EQ(gw.last_range_start, p.written);
        resumed_runs++;
    }
    test_device_close(&d);
    remove_tree(dir);
    return ops;
}

/* A commit cut mid-header, then the same bytes assigned under another version: the header
 * differs, so it must go onto an erased sector, not over the torn one. */
static void torn_commit_then_same_bytes_renamed(void)
{
    char *dir = clone_template();
    test_device d;
    tg_init(&gw);
    tg_serve(&gw, "m", "2", prog_b, MODEL_BYTES);
    test_device_open(&d, dir, SLOT_BYTES, server.url);
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

    ts_stop(&server);
    free(prog_a);
    free(prog_b);
    free(template_slot_a);
    DONE();
}
