/* The Fossil delta applier (core/mf_delta.c): a delta made by the npm package fossil-delta,
 * deltas written here command by command, every way of cutting a delta into pieces,
 * resuming at every position a device may have saved, and hostile deltas: every
 * truncation, copies and inserts out of range, integers past 32 bits, bad checksums,
 * trailing bytes, and random mutations. The sink checks that no output goes past the
 * target and no piece crosses a MF_DELTA_CHUNK boundary. */
#include <string.h>

#include "mf_delta.h"
#include "test_util.h"

typedef struct {
    uint8_t *out;
    uint32_t cap;        /* the target size: the sink refuses to go past it */
    uint32_t len;
    mf_delta *d;
    int stop_at;         /* > 0: say stop on this call */
    int calls;
} sink_state;

static int sink(void *ctx, const uint8_t *data, size_t n)
{
    sink_state *s = ctx;
    CHECK(n > 0);
    CHECK(n <= s->cap - s->len);
    /* Never across a chunk boundary, and the position already counts this piece. */
    CHECK_EQ(s->len / MF_DELTA_CHUNK, (s->len + (uint32_t)n - 1) / MF_DELTA_CHUNK);
    CHECK_EQ(s->d->at.written, s->len + n);
    memcpy(s->out + s->len, data, n);
    s->len += (uint32_t)n;
    return ++s->calls == s->stop_at;
}

static void put_text(test_delta_writer *w, const char *s) { test_delta_bytes(w, s, strlen(s)); }

/* Applies `delta` to `source` in pieces of `piece` bytes (0: all at once). */
static mf_err apply(const uint8_t *source, uint32_t source_len, uint32_t target_len, const uint8_t *delta, size_t delta_len,
                    size_t piece, uint8_t *out, uint32_t *out_len, const char **why)
{
    mf_delta d;
    sink_state s = {.out = out, .cap = target_len, .d = &d};
    mf_delta_init(&d, source, source_len, target_len, sink, &s);
    mf_err err = MF_OK;
    for (size_t at = 0; at < delta_len && err == MF_OK;) {
        size_t n = piece == 0 || piece > delta_len - at ? delta_len - at : piece;
        err = mf_delta_feed(&d, delta + at, n);
        at += n;
    }
    if (err == MF_OK) err = mf_delta_finish(&d);
    if (out_len) *out_len = s.len;
    if (why) *why = d.why;
    if (err == MF_OK) CHECK_EQ(s.len, target_len);
    return err;
}

static const char SOURCE_TEXT[] = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.";
static const char TARGET_TEXT[] = "The quick red fox jumps over the lazy dog! Pack my box with five dozen liquor jugs, please.";
/* createDelta(SOURCE_TEXT, TARGET_TEXT) from the npm package fossil-delta 2.0.0. */
static const char NPM_DELTA[] = "1R\nD:The quick redS@F,1:!d@h,9:, please.368~B5;";

static void delta_made_by_fossil_delta(void)
{
    const uint8_t *src = (const uint8_t *)SOURCE_TEXT, *delta = (const uint8_t *)NPM_DELTA;
    uint32_t target_len = (uint32_t)strlen(TARGET_TEXT);
    uint8_t out[128];
    uint32_t out_len = 0;
    for (size_t piece = 0; piece <= strlen(NPM_DELTA); piece++) {
        memset(out, 0, sizeof out);
        CHECK_EQ(apply(src, (uint32_t)strlen(SOURCE_TEXT), target_len, delta, strlen(NPM_DELTA), piece, out, &out_len, NULL), MF_OK);
        CHECK(memcmp(out, TARGET_TEXT, target_len) == 0);
    }
    /* The target size line must be the model's size. */
    const char *why = NULL;
    CHECK_EQ(apply(src, (uint32_t)strlen(SOURCE_TEXT), target_len + 1, delta, strlen(NPM_DELTA), 0, out, NULL, &why), MF_ERR_BAD_DELTA);
    CHECK_STR(why, "the target size is not the model's size");
}

static void checksum_matches_fossil(void)
{
    CHECK_EQ(mf_delta_checksum(0, 0, (const uint8_t *)"abc", 3), 0x61626300u);
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n <= sizeof buf; n += 37) {
        /* In two pieces cut anywhere, it is the whole buffer's checksum. */
        for (size_t cut = 0; cut <= n; cut += 13) {
            uint32_t sum = mf_delta_checksum(0, 0, buf, cut);
            sum = mf_delta_checksum(sum, (uint32_t)cut, buf + cut, n - cut);
            CHECK_EQ(sum, test_fossil_checksum(buf, n));
        }
    }
}

/* A source and a target built from it: copies of every size, inserts across chunks, and a
 * copy of the source's last byte; returns the delta. */
static test_delta_writer big_delta(uint8_t **source, uint32_t *source_len, uint8_t **target, uint32_t *target_len)
{
    *source_len = 20000;
    *source = test_program(*source_len, 3);
    uint8_t *t = malloc(40000);
    uint8_t *ins = test_program(9000, 4);
    uint32_t n = 0;
    test_delta_writer w = {0};
    *target_len = 0;
    struct { int copy; uint32_t a, b; } plan[] = {
        {1, 0, 1024}, {0, 0, 700}, {1, 5000, 3}, {1, 19999, 1}, {0, 700, 1}, {1, 100, 8192},
        {0, 701, 5000}, {1, 0, 20000}, {0, 5701, 255}, {1, 7, 1},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) n += plan[i].b;
    *target_len = n;
    test_delta_int(&w, n);
    put_text(&w, "\n");
    n = 0;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        if (plan[i].copy) {
            test_delta_copy(&w, plan[i].b, plan[i].a);
            memcpy(t + n, *source + plan[i].a, plan[i].b);
        } else {
            test_delta_insert(&w, ins + plan[i].a, plan[i].b);
            memcpy(t + n, ins + plan[i].a, plan[i].b);
        }
        n += plan[i].b;
    }
    test_delta_int(&w, test_fossil_checksum(t, n));
    put_text(&w, ";");
    free(ins);
    *target = t;
    return w;
}

static void any_pieces_make_the_same_target(void)
{
    uint8_t *src, *target;
    uint32_t src_len, target_len;
    test_delta_writer w = big_delta(&src, &src_len, &target, &target_len);
    uint8_t *out = malloc(target_len);
    size_t pieces[] = {0, 1, 2, 3, 7, 255, 256, 257, 4096, 10007};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        memset(out, 0, target_len);
        CHECK_EQ(apply(src, src_len, target_len, w.buf, w.len, pieces[i], out, NULL, NULL), MF_OK);
        CHECK(memcmp(out, target, target_len) == 0);
    }
    free(out);
    free(w.buf);
    free(src);
    free(target);
}

/* Saved at every chunk boundary of the output, then taken up again from there by a fresh
 * applier fed the rest of the delta (as a Range request would), with the checksum of what
 * was written: the same target. */
typedef struct {
    sink_state s;
    mf_delta_position saved[200];
    uint32_t sums[200];
    int count;
} saving_sink;

static int save_sink(void *ctx, const uint8_t *data, size_t n)
{
    saving_sink *ss = ctx;
    int stop = sink(&ss->s, data, n);
    if (ss->s.d->at.written % MF_DELTA_CHUNK == 0 && ss->count < 200) {
        ss->saved[ss->count] = ss->s.d->at;
        ss->sums[ss->count++] = ss->s.d->sum;
    }
    return stop;
}

static void resumes_at_every_saved_position(void)
{
    uint8_t *src, *target;
    uint32_t src_len, target_len;
    test_delta_writer w = big_delta(&src, &src_len, &target, &target_len);
    saving_sink ss = {0};
    ss.s.out = malloc(target_len);
    ss.s.cap = target_len;
    mf_delta d;
    ss.s.d = &d;
    mf_delta_init(&d, src, src_len, target_len, save_sink, &ss);
    CHECK_EQ(mf_delta_feed(&d, w.buf, w.len), MF_OK);
    CHECK_EQ(mf_delta_finish(&d), MF_OK);
    CHECK(ss.count > 100);
    int phases[8] = {0};
    uint8_t *out = malloc(target_len);
    for (int i = 0; i < ss.count; i++) {
        const mf_delta_position *at = &ss.saved[i];
        phases[at->phase]++;
        memcpy(out, target, at->written);
        memset(out + at->written, 0, target_len - at->written);
        mf_delta r;
        sink_state s = {.out = out, .cap = target_len, .len = at->written, .d = &r};
        CHECK_EQ(mf_delta_resume(&r, src, src_len, target_len, at, mf_delta_checksum(0, 0, target, at->written), sink, &s), MF_OK);
        CHECK_EQ(mf_delta_feed(&r, w.buf + at->consumed, w.len - at->consumed), MF_OK);
        CHECK_EQ(mf_delta_finish(&r), MF_OK);
        CHECK(memcmp(out, target, target_len) == 0);
        /* A wrong checksum of what was written is found at the end. */
        s.len = at->written;
        CHECK_EQ(mf_delta_resume(&r, src, src_len, target_len, at, ss.sums[i] + 1, sink, &s), MF_OK);
        CHECK_EQ(mf_delta_feed(&r, w.buf + at->consumed, w.len - at->consumed), MF_ERR_BAD_DELTA);
        CHECK_STR(r.why, "bad checksum");
    }
    /* Positions inside copies, inside inserts and between commands were all taken up again. */
    CHECK(phases[MF_DELTA_COPY] > 0 && phases[MF_DELTA_INSERT] > 0 && phases[MF_DELTA_COMMAND] > 0);
    free(out);
    free(ss.s.out);
    free(w.buf);
    free(src);
    free(target);
}

static void positions_that_cannot_be_resumed(void)
{
    uint8_t src[64] = {0};
    mf_delta d;
    sink_state s = {.out = NULL, .cap = 0, .d = &d};
    mf_delta_position bad[] = {
        {.phase = MF_DELTA_HEAD, .consumed = 1},
        {.phase = MF_DELTA_OFFSET, .consumed = 5},
        {.phase = MF_DELTA_DONE, .consumed = 5, .written = 100},
        {.phase = MF_DELTA_FAILED, .consumed = 5},
        {.phase = 99, .consumed = 5},
        {.phase = MF_DELTA_COMMAND, .consumed = 0},
        {.phase = MF_DELTA_COMMAND, .consumed = 5, .count = 3},
        {.phase = MF_DELTA_COMMAND, .consumed = 5, .written = 101},
        {.phase = MF_DELTA_COPY, .consumed = 5, .count = 0},
        {.phase = MF_DELTA_COPY, .consumed = 5, .count = 10, .offset = 60},        /* past the source */
        {.phase = MF_DELTA_COPY, .consumed = 5, .count = 10, .offset = UINT32_MAX},
        {.phase = MF_DELTA_COPY, .consumed = 5, .count = 50, .written = 60},       /* past the target */
        {.phase = MF_DELTA_INSERT, .consumed = 5, .count = 41, .written = 60},
        {.phase = MF_DELTA_INSERT, .consumed = 5, .count = 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(mf_delta_resume(&d, src, sizeof src, 100, &bad[i], 0, sink, &s), MF_ERR_INVALID_ARG);
        CHECK_EQ(mf_delta_feed(&d, (const uint8_t *)"1:x", 3), MF_ERR_BAD_DELTA);
    }
    mf_delta_position good = {.phase = MF_DELTA_COPY, .consumed = 5, .count = 10, .offset = 54, .written = 90};
    CHECK_EQ(mf_delta_resume(&d, src, sizeof src, 100, &good, 0, sink, &s), MF_OK);
}

/* A hostile delta is refused with its reason, and nothing is written past the target. */
static void refused(const char *delta, size_t len, const char *why_expected)
{
    const uint8_t *src = (const uint8_t *)SOURCE_TEXT;
    uint8_t out[64];
    const char *why = NULL;
    for (size_t piece = 0; piece <= 3; piece++) {
        mf_err err = apply(src, 20, 10, (const uint8_t *)delta, len, piece, out, NULL, &why);
        if (err != MF_ERR_BAD_DELTA) fprintf(stderr, "accepted: %.*s\n", (int)len, delta);
        CHECK_EQ(err, MF_ERR_BAD_DELTA);
        CHECK_STR(why, why_expected);
    }
}

#define REFUSED(text, why) refused(text, sizeof(text) - 1, why)

static void hostile_deltas(void)
{
    /* The source is "The quick brown fox " (20 bytes), the target 10 bytes. */
    uint8_t out[16];
    const uint8_t *src = (const uint8_t *)SOURCE_TEXT;
    char ok[64];
    uint32_t sum = test_fossil_checksum((const uint8_t *)"The quick ", 10);
    test_delta_writer w = {0};
    put_text(&w, "A\n");
    test_delta_copy(&w, 10, 0);
    test_delta_int(&w, sum);
    put_text(&w, ";");
    CHECK(w.len < sizeof ok);
    memcpy(ok, w.buf, w.len);
    size_t ok_len = w.len;
    CHECK_EQ(apply(src, 20, 10, (const uint8_t *)ok, ok_len, 0, out, NULL, NULL), MF_OK);
    CHECK(memcmp(out, "The quick ", 10) == 0);

    /* Every truncation of a valid delta. */
    for (size_t n = 0; n < ok_len; n++) {
        const char *why = NULL;
        CHECK_EQ(apply(src, 20, 10, (const uint8_t *)ok, n, 0, out, NULL, &why), MF_ERR_BAD_DELTA);
        CHECK_STR(why, "truncated");
    }
    /* Bytes after the checksum, a wrong checksum. */
    char longer[80];
    memcpy(longer, ok, ok_len);
    longer[ok_len] = '0';
    refused(longer, ok_len + 1, "bytes after the checksum");
    REFUSED("A\nA@0,0;", "bad checksum");
    /* Out of range: copies past the source (also by wrapping around 32 bits), past the
     * target, inserts past the target; the header's size. */
    REFUSED("A\n1@K,", "a copy reads past the end of the source");
    REFUSED("A\n2@J,", "a copy reads past the end of the source");
    REFUSED("A\n1@3~~~~~,", "a copy reads past the end of the source");
    REFUSED("A\n8@3~~~~~,", "a copy reads past the end of the source");
    REFUSED("A\nB@0,", "a copy goes past the target size");
    REFUSED("A\n5@0,6@0,", "a copy goes past the target size");
    REFUSED("A\nB:0123456789A", "an insert goes past the target size");
    REFUSED("A\n5:012346@0,", "a copy goes past the target size");
    REFUSED("B\n", "the target size is not the model's size");
    REFUSED("9\n", "the target size is not the model's size");
    /* Huge counts: over 32 bits, or endless digits. */
    REFUSED("A\n4000000@0,", "an integer is over 32 bits");
    REFUSED("A\n3~~~~~@0,", "a copy goes past the target size");
    REFUSED("A\n:", "an integer has no digits");
    REFUSED("A\n0000000000000000000000001:x", "an integer has too many digits");
    REFUSED("A\n1@00000000000000000000,", "an integer has too many digits");
    REFUSED("A\n1@0;", "a copy's offset does not end with ','");
    REFUSED("A\n1@,", "an integer has no digits");
    REFUSED("A\n5#", "unknown operator");
    REFUSED("A\n5", "truncated");
    REFUSED("A\n5@0,", "truncated");
    REFUSED("A\n5:01", "truncated");
    REFUSED("A\n5@0,5@0,", "truncated");
    REFUSED("A\n5@0,0;", "the delta ends before the target is complete");
    REFUSED("A", "truncated");
    REFUSED("A;", "the target size does not end with a newline");
    REFUSED("\n", "an integer has no digits");
    REFUSED("", "truncated");
    /* Feeding a failed or finished apply changes nothing. */
    mf_delta d;
    sink_state s = {.out = out, .cap = 10, .d = &d};
    mf_delta_init(&d, src, 20, 10, sink, &s);
    CHECK_EQ(mf_delta_feed(&d, (const uint8_t *)"A\nB@0,", 6), MF_ERR_BAD_DELTA);
    CHECK_EQ(mf_delta_feed(&d, (const uint8_t *)ok + 2, ok_len - 2), MF_ERR_BAD_DELTA);
    CHECK_EQ(s.len, 0);
    free(w.buf);
}

static void a_sink_that_stops(void)
{
    uint8_t *src, *target;
    uint32_t src_len, target_len;
    test_delta_writer w = big_delta(&src, &src_len, &target, &target_len);
    uint8_t *out = malloc(target_len);
    for (int stop = 1; stop < 60; stop += 7) {
        mf_delta d;
        sink_state s = {.out = out, .cap = target_len, .d = &d, .stop_at = stop};
        mf_delta_init(&d, src, src_len, target_len, sink, &s);
        CHECK_EQ(mf_delta_feed(&d, w.buf, w.len), MF_ERR_ABORTED);
        CHECK_EQ(s.calls, stop);
        CHECK_EQ(mf_delta_finish(&d), MF_ERR_BAD_DELTA);
    }
    free(out);
    free(w.buf);
    free(src);
    free(target);
}

/* Random mutations of a valid delta: refused or not, never out of bounds (the sanitizers
 * and the sink's checks watch), and never accepted with output of the wrong size. */
static void random_mutations(void)
{
    uint8_t *src, *target;
    uint32_t src_len, target_len;
    test_delta_writer w = big_delta(&src, &src_len, &target, &target_len);
    /* A mutation inside inserted bytes leaves a valid delta of other bytes, which only the
     * checksum tells apart (and, on a device, the sha256 after it). */
    uint8_t *copy = malloc(w.len);
    uint8_t *out = malloc(target_len);
    uint32_t rng = 12345;
    int accepted = 0;
    static const char alphabet[] = "0123456789AZ_az~@:,;\n\x00\xff";
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(copy, w.buf, w.len);
        size_t len = w.len;
        int edits = 1 + (int)((rng = rng * 1103515245u + 12345u) >> 16) % 4;
        for (int e = 0; e < edits; e++) {
            rng = rng * 1103515245u + 12345u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1103515245u + 12345u;
            switch ((rng >> 16) % 3) {
            case 0: copy[at] = (uint8_t)alphabet[(rng >> 4) % (sizeof alphabet - 1)]; break;
            case 1: len = at + 1; break;
            default: copy[at] ^= (uint8_t)(1u << ((rng >> 9) % 8)); break;
            }
        }
        uint32_t out_len = 0;
        mf_err err = apply(src, src_len, target_len, copy, len, (rng >> 3) % 300, out, &out_len, NULL);
        CHECK(err == MF_OK || err == MF_ERR_BAD_DELTA);
        CHECK(out_len <= target_len);
        if (err == MF_OK) accepted++;
    }
    fprintf(stderr, "   %d of 20000 mutated deltas still made %u bytes with a matching checksum\n", accepted, target_len);
    free(copy);
    free(out);
    free(w.buf);
    free(src);
    free(target);
}

int main(void)
{
    RUN(delta_made_by_fossil_delta);
    RUN(checksum_matches_fossil);
    RUN(any_pieces_make_the_same_target);
    RUN(resumes_at_every_saved_position);
    RUN(positions_that_cannot_be_resumed);
    RUN(hostile_deltas);
    RUN(a_sink_that_stops);
    RUN(random_mutations);
    DONE();
}
