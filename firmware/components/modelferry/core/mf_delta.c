#include "mf_delta.h"

#include <string.h>

/* 0..63 for the digits of Fossil's integers, -1 for anything else. */
static int digit_value(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    if (c == '_') return 36;
    if (c >= 'a' && c <= 'z') return c - 'a' + 37;
    if (c == '~') return 63;
    return -1;
}

/* Six digits hold 36 bits: more than any 32-bit value needs, even with a leading zero. */
#define MAX_DIGITS 7

uint32_t mf_delta_checksum(uint32_t sum, uint32_t at, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) sum += (uint32_t)data[i] << (24 - 8 * ((at + (uint32_t)i) & 3u));
    return sum;
}

void mf_delta_init(mf_delta *d, const uint8_t *source, uint32_t source_len, uint32_t target_len, mf_delta_sink sink,
                   void *ctx)
{
    memset(d, 0, sizeof *d);
    d->source = source;
    d->source_len = source_len;
    d->target_len = target_len;
    d->sink = sink;
    d->ctx = ctx;
    d->at.phase = MF_DELTA_HEAD;
}

mf_err mf_delta_resume(mf_delta *d, const uint8_t *source, uint32_t source_len, uint32_t target_len,
                       const mf_delta_position *at, uint32_t sum, mf_delta_sink sink, void *ctx)
{
    mf_delta_init(d, source, source_len, target_len, sink, ctx);
    int ok = at->written <= target_len && at->consumed > 0;
    if (at->phase == MF_DELTA_COPY)
        ok = ok && at->count > 0 && at->count <= target_len - at->written && at->offset <= source_len &&
             at->count <= source_len - at->offset;
    else if (at->phase == MF_DELTA_INSERT)
        ok = ok && at->count > 0 && at->count <= target_len - at->written;
    else
        ok = ok && at->phase == MF_DELTA_COMMAND && at->count == 0;
    if (!ok) {
        d->at.phase = MF_DELTA_FAILED;
        d->why = "not a position to resume from";
        return MF_ERR_INVALID_ARG;
    }
    d->at = *at;
    d->sum = sum;
    return MF_OK;
}

static mf_err refuse(mf_delta *d, const char *why)
{
    d->at.phase = MF_DELTA_FAILED;
    d->why = why;
    return MF_ERR_BAD_DELTA;
}

/* Output up to the next multiple of MF_DELTA_CHUNK. */
static uint32_t piece(const mf_delta *d, uint32_t want)
{
    uint32_t room = MF_DELTA_CHUNK - d->at.written % MF_DELTA_CHUNK;
    return want < room ? want : room;
}

/* The position is brought up to date before the sink sees the piece, so that the sink may
 * save it: a command that ends here leaves the phase at COMMAND. */
static mf_err emit(mf_delta *d, const uint8_t *data, uint32_t n)
{
    d->sum = mf_delta_checksum(d->sum, d->at.written, data, n);
    d->at.written += n;
    d->at.count -= n;
    if (d->at.count == 0) d->at.phase = MF_DELTA_COMMAND;
    if (d->sink(d->ctx, data, n) != 0) {
        d->at.phase = MF_DELTA_FAILED;
        d->why = "stopped";
        return MF_ERR_ABORTED;
    }
    return MF_OK;
}

/* Every copy still to make, from the source through the buffer. */
static mf_err copy_out(mf_delta *d)
{
    while (d->at.phase == MF_DELTA_COPY) {
        uint32_t n = piece(d, d->at.count);
        memcpy(d->buf, d->source + d->at.offset, n);
        d->at.offset += n;
        mf_err err = emit(d, d->buf, n);
        if (err != MF_OK) return err;
    }
    return MF_OK;
}

/* A digit of the integer being read: MF_OK, or the refusal of an integer over 32 bits. */
static mf_err take_digit(mf_delta *d, int v)
{
    if (++d->digits > MAX_DIGITS) return refuse(d, "an integer has too many digits");
    d->number = d->number << 6 | (uint64_t)v;
    if (d->number > UINT32_MAX) return refuse(d, "an integer is over 32 bits");
    return MF_OK;
}

/* The operator after a count, with the count read. */
static mf_err command(mf_delta *d, uint8_t op)
{
    uint32_t count = (uint32_t)d->number;
    uint32_t left = d->target_len - d->at.written;
    d->number = 0;
    d->digits = 0;
    switch (op) {
    case '@':
        d->copy_count = count;
        d->at.phase = MF_DELTA_OFFSET;
        return MF_OK;
    case ':':
        if (count > left) return refuse(d, "an insert goes past the target size");
        if (count > 0) {
            d->at.phase = MF_DELTA_INSERT;
            d->at.count = count;
        }
        return MF_OK;
    case ';':
        if (left != 0) return refuse(d, "the delta ends before the target is complete");
        if (count != d->sum) return refuse(d, "bad checksum");
        d->at.phase = MF_DELTA_DONE;
        return MF_OK;
    default:
        return refuse(d, "unknown operator");
    }
}

/* The ',' after a copy's offset. */
static mf_err copy(mf_delta *d)
{
    uint32_t offset = (uint32_t)d->number;
    uint32_t count = d->copy_count;
    d->number = 0;
    d->digits = 0;
    if (count > d->target_len - d->at.written) return refuse(d, "a copy goes past the target size");
    if (offset > d->source_len || count > d->source_len - offset) return refuse(d, "a copy reads past the end of the source");
    if (count == 0) {
        d->at.phase = MF_DELTA_COMMAND;
        return MF_OK;
    }
    d->at.phase = MF_DELTA_COPY;
    d->at.count = count;
    d->at.offset = offset;
    return copy_out(d);
}

mf_err mf_delta_feed(mf_delta *d, const uint8_t *data, size_t len)
{
    if (d->at.phase == MF_DELTA_COPY) {
        /* Resumed in the middle of a copy: it needs no delta bytes to go on. */
        mf_err err = copy_out(d);
        if (err != MF_OK) return err;
    }
    size_t i = 0;
    while (i < len) {
        if (d->at.phase == MF_DELTA_FAILED) return MF_ERR_BAD_DELTA;
        if (d->at.phase == MF_DELTA_DONE) return refuse(d, "bytes after the checksum");
        if (d->at.consumed == UINT32_MAX) return refuse(d, "the delta is over 4 GiB");
        if (d->at.phase == MF_DELTA_INSERT) {
            size_t avail = len - i;
            uint32_t want = d->at.count < avail ? d->at.count : (uint32_t)avail;
            if (want > UINT32_MAX - d->at.consumed) want = UINT32_MAX - d->at.consumed;
            uint32_t n = piece(d, want);
            d->at.consumed += n;
            mf_err err = emit(d, data + i, n);
            if (err != MF_OK) return err;
            i += n;
            continue;
        }
        uint8_t c = data[i++];
        d->at.consumed++;
        int v = digit_value(c);
        mf_err err;
        if (v >= 0) {
            err = take_digit(d, v);
        } else if (d->digits == 0) {
            err = refuse(d, "an integer has no digits");
        } else if (d->at.phase == MF_DELTA_HEAD) {
            if (c != '\n') err = refuse(d, "the target size does not end with a newline");
            else if (d->number != d->target_len) err = refuse(d, "the target size is not the model's size");
            else {
                d->number = 0;
                d->digits = 0;
                d->at.phase = MF_DELTA_COMMAND;
                err = MF_OK;
            }
        } else if (d->at.phase == MF_DELTA_OFFSET) {
            err = c == ',' ? copy(d) : refuse(d, "a copy's offset does not end with ','");
        } else {
            err = command(d, c);
        }
        if (err != MF_OK) return err;
    }
    return MF_OK;
}

mf_err mf_delta_finish(mf_delta *d)
{
    if (d->at.phase == MF_DELTA_DONE) return MF_OK;
    if (d->at.phase == MF_DELTA_FAILED) return MF_ERR_BAD_DELTA;
    return refuse(d, "truncated");
}
