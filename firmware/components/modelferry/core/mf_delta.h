/* Applies a Fossil delta (docs/design.md "Deltas") in one forward pass: copies come from
 * the source (the active slot, memory-mapped, read at random), the output is produced in
 * order (written sequentially to the inactive slot) through a sink. The delta arrives in
 * pieces of any size, as the HTTP body does; the state is this struct and a 256-byte
 * buffer, whatever the sizes involved.
 *
 * The format, as Fossil writes it: integers in a 64-digit alphabet
 * ("0-9 A-Z _ a-z ~", most significant first), then
 *   <target size>"\n"
 *   any number of <count>"@"<offset>","   (copy count bytes of the source from offset)
 *              or <count>":"<count bytes> (insert the bytes that follow)
 *   <checksum>";"                          (of the whole target, see mf_delta_checksum)
 * Nothing may follow the checksum. A hostile delta (counts past the target or the source,
 * integers over 32 bits, unknown operators, a wrong checksum, trailing bytes, an end that
 * never comes) is refused with MF_ERR_BAD_DELTA and `why` naming the problem; neither the
 * source nor the output is ever touched out of bounds. The result is still only as good
 * as the caller's check of its sha256: the delta is not trusted, the bytes it makes are
 * verified. */
#ifndef MF_DELTA_H
#define MF_DELTA_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/mf_err.h"

/* Output reaches the sink in pieces that never cross a multiple of this many output bytes,
 * so a caller that saves its progress at such a multiple (a flash sector, 64 KiB) finds
 * the delta's position there exact. Copies go through a buffer of this size: the sink
 * never reads the source itself (on ESP-IDF a flash write cannot read mapped flash). */
#define MF_DELTA_CHUNK 256u

typedef enum {
    MF_DELTA_HEAD,      /* reading the target size */
    MF_DELTA_COMMAND,   /* reading a count, then its operator */
    MF_DELTA_OFFSET,    /* reading a copy's source offset */
    MF_DELTA_COPY,      /* emitting a copy */
    MF_DELTA_INSERT,    /* emitting inserted bytes */
    MF_DELTA_DONE,      /* the checksum matched: the target is complete */
    MF_DELTA_FAILED,
} mf_delta_phase;

/* Where an apply stands. Read by the sink (it is up to date for the piece being written),
 * kept across a reboot, and handed to mf_delta_resume. It is complete whenever the output
 * ends on a multiple of MF_DELTA_CHUNK: the phase is then COMMAND with no digit read yet,
 * COPY or INSERT. */
typedef struct {
    uint8_t phase;      /* mf_delta_phase */
    uint32_t count;     /* COPY, INSERT: bytes of the command still to emit */
    uint32_t offset;    /* COPY: the next source byte */
    uint32_t written;   /* output bytes so far */
    uint32_t consumed;  /* delta bytes so far */
} mf_delta_position;

/* Non-zero stops the apply (mf_delta_feed returns MF_ERR_ABORTED). */
typedef int (*mf_delta_sink)(void *ctx, const uint8_t *data, size_t len);

typedef struct {
    const uint8_t *source;
    uint32_t source_len;
    uint32_t target_len;
    mf_delta_sink sink;
    void *ctx;
    mf_delta_position at;
    uint32_t sum;          /* mf_delta_checksum of the output so far */
    uint64_t number;       /* the integer being read */
    uint8_t digits;
    uint32_t copy_count;   /* OFFSET: the count read before '@' */
    const char *why;       /* MF_DELTA_FAILED: what was wrong, for a report */
    uint8_t buf[MF_DELTA_CHUNK];
} mf_delta;

/* A new apply: the delta must make exactly target_len bytes from these source bytes. */
void mf_delta_init(mf_delta *d, const uint8_t *source, uint32_t source_len, uint32_t target_len, mf_delta_sink sink,
                   void *ctx);

/* An apply taken up again where `at` says (a saved position, see mf_delta_position), with
 * `sum` the checksum of the at->written output bytes already made. MF_ERR_INVALID_ARG
 * when `at` is not a resumable position for these sizes. */
mf_err mf_delta_resume(mf_delta *d, const uint8_t *source, uint32_t source_len, uint32_t target_len,
                       const mf_delta_position *at, uint32_t sum, mf_delta_sink sink, void *ctx);

/* The next piece of the delta. MF_OK: all of it was taken (the output it made went to the
 * sink). MF_ERR_BAD_DELTA: the delta is wrong (d->why); MF_ERR_ABORTED: the sink said stop.
 * Either ends the apply. */
mf_err mf_delta_feed(mf_delta *d, const uint8_t *data, size_t len);

/* After the last piece: MF_OK when the checksum closed a complete target, else
 * MF_ERR_BAD_DELTA (a delta cut short is "truncated"). */
mf_err mf_delta_finish(mf_delta *d);

/* Fossil's checksum, continued over `len` more bytes that start at output offset `at`:
 * the 32-bit sum of the output read as big-endian words, the last one zero-padded. */
uint32_t mf_delta_checksum(uint32_t sum, uint32_t at, const uint8_t *data, size_t len);

#endif
