/* Records kept in the key-value store across reboots: download progress (to resume), what
 * failed last (to keep backing off after a reboot, and say why), the active model's
 * confirmation (pending, rolling back, failed), and the highest slot sequence ever written.
 * Each is a small blob with a CRC, so a record from another firmware or a torn write reads
 * as absent. */
#ifndef MF_RECORDS_H
#define MF_RECORDS_H

#include <stdint.h>
#include "modelferry/modelferry.h"
#include "mf_delta.h"

typedef struct {
    uint8_t slot;
    uint8_t sha256[32];
    uint32_t size;
    uint32_t written;   /* bytes in the slot that are whole sectors of this artifact */
} mf_progress;

/* A delta being applied into a slot (kept under the same key as mf_progress: a slot is
 * written by one or the other): where the apply stood at the last saved sector boundary of
 * the output. */
typedef struct {
    uint8_t slot;
    uint8_t sha256[32];         /* the model being made */
    uint8_t delta_sha256[32];   /* the delta it is made from */
    uint32_t size;              /* the model's */
    uint32_t delta_size;
    mf_delta_position at;
} mf_delta_progress;

typedef enum {
    MF_CONFIRM_PENDING = 1,     /* activated, awaiting the application */
    MF_CONFIRM_ROLLING_BACK,    /* going back to the other slot: finish it at boot */
    MF_CONFIRM_FAILED,          /* not confirmed, nothing to go back to */
} mf_confirm_state;

/* The active model's confirmation: written before its slot's commit point, erased when the
 * application confirms it or the rollback is done. */
typedef struct {
    uint8_t slot;
    uint8_t state;              /* mf_confirm_state */
    uint32_t sequence;
    uint8_t sha256[32];
    uint32_t boots;             /* boots it was pending at */
    uint32_t attempts;          /* ROLLING_BACK: the failed record's attempt count to write */
    uint8_t err;                /* ROLLING_BACK, FAILED: why */
    char detail[MF_FAILED_DETAIL_MAX + 1];
    uint64_t seq;               /* its signed sequence, */
    uint8_t seq_counts;         /* ... verified by a trusted key: the floor once it is confirmed */
} mf_pending_record;

mf_err mf_progress_save(mf_kv *kv, const char *key, const mf_progress *p);
/* MF_ERR_NOT_FOUND when absent or unreadable. */
mf_err mf_progress_load(mf_kv *kv, const char *key, mf_progress *p);
/* MF_ERR_NOT_FOUND when absent, unreadable, or a download's progress (mf_progress). */
mf_err mf_delta_progress_save(mf_kv *kv, const char *key, const mf_delta_progress *p);
mf_err mf_delta_progress_load(mf_kv *kv, const char *key, mf_delta_progress *p);
/* What failed last (the client's, but the time and whether this boot reported it). Loaded
 * only when the record is whole. */
mf_err mf_failed_save(mf_kv *kv, const char *key, const mf_failure_state *f);
mf_err mf_failed_load(mf_kv *kv, const char *key, mf_failure_state *f);
mf_err mf_pending_save(mf_kv *kv, const char *key, const mf_pending_record *p);
mf_err mf_pending_load(mf_kv *kv, const char *key, mf_pending_record *p);
mf_err mf_sequence_save(mf_kv *kv, const char *key, uint32_t sequence);
/* 0 when absent or unreadable. */
uint32_t mf_sequence_load(mf_kv *kv, const char *key);
/* Per model name, the highest signed sequence this device confirmed (anti-rollback): a key
 * of its own per name, from the name's sha256. 0 when absent or unreadable. */
mf_err mf_floor_save(mf_kv *kv, const char *name, uint64_t seq);
uint64_t mf_floor_load(mf_kv *kv, const char *name);

#endif
