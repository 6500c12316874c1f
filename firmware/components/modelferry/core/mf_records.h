/* Records kept in the key-value store across reboots: download progress (to resume) and
 * the last assignment that failed (to keep backing off after a reboot, and say why). Each is a
 * small blob with a CRC, so a record from another firmware or a torn file reads as absent. */
#ifndef MF_RECORDS_H
#define MF_RECORDS_H

#include <stdint.h>
#include "modelferry/modelferry.h"

typedef struct {
    uint8_t slot;
    uint8_t sha256[32];
    uint32_t size;
    uint32_t written;   /* bytes in the slot that are whole sectors of this artifact */
} mf_progress;

typedef struct {
    uint8_t assignment[32];     /* mf_assignment_fingerprint of what failed */
    uint32_t attempts;
    uint8_t err;                /* mf_err */
    char detail[MF_FAILED_DETAIL_MAX + 1];
} mf_failed_record;

mf_err mf_progress_save(mf_kv *kv, const char *key, const mf_progress *p);
/* MF_ERR_NOT_FOUND when absent or unreadable. */
mf_err mf_progress_load(mf_kv *kv, const char *key, mf_progress *p);
mf_err mf_failed_save(mf_kv *kv, const char *key, const mf_failed_record *f);
mf_err mf_failed_load(mf_kv *kv, const char *key, mf_failed_record *f);

#endif
