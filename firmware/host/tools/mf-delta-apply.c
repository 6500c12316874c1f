/* mf-delta-apply SOURCE DELTA OUT TARGET_SIZE [PIECE]: the firmware's delta applier
 * (core/mf_delta.c) on files, for tests that check it against the deltas the gateway makes
 * (test/firmware/delta-apply.test.ts). The delta is fed in pieces of PIECE bytes (default
 * 1460, a TCP segment's worth). Exit 0 with OUT written, or 1 with the reason on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf_delta.h"

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *bigger = realloc(buf, cap);
            if (!bigger) break;
            buf = bigger;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0) break;
        *len += n;
    }
    fclose(f);
    return buf;
}

static int to_file(void *ctx, const uint8_t *data, size_t len) { return fwrite(data, 1, len, ctx) != len; }

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: mf-delta-apply SOURCE DELTA OUT TARGET_SIZE [PIECE]\n");
        return 2;
    }
    size_t source_len = 0, delta_len = 0;
    uint8_t *source = read_file(argv[1], &source_len);
    uint8_t *delta = read_file(argv[2], &delta_len);
    FILE *out = fopen(argv[3], "wb");
    if (!source || !delta || !out) {
        fprintf(stderr, "mf-delta-apply: %s\n", strerror(errno));
        return 1;
    }
    size_t piece = argc > 5 ? strtoul(argv[5], NULL, 10) : 1460;
    if (piece == 0) piece = 1;
    mf_delta d;
    mf_delta_init(&d, source, (uint32_t)source_len, (uint32_t)strtoul(argv[4], NULL, 10), to_file, out);
    mf_err err = MF_OK;
    for (size_t at = 0; at < delta_len && err == MF_OK; at += piece)
        err = mf_delta_feed(&d, delta + at, delta_len - at < piece ? delta_len - at : piece);
    if (err == MF_OK) err = mf_delta_finish(&d);
    fclose(out);
    free(source);
    free(delta);
    if (err != MF_OK) {
        fprintf(stderr, "mf-delta-apply: %s: %s\n", mf_err_code(err), d.why ? d.why : "?");
        return 1;
    }
    return 0;
}
