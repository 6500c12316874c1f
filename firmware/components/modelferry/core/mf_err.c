#include "modelferry/mf_err.h"

#include <string.h>

/* The codes in the order of mf_err, each ended by a NUL, and an empty one after the last. */
static const char CODES[] = "ok\0"
    "invalid_argument\0"
    "no_memory\0"
    "storage_error\0"
    "power_lost\0"
    "not_found\0"
    "network_error\0"
    "unexpected_status\0"
    "protocol_error\0"
    "no_assignment\0"
    "model_too_large\0"
    "size_mismatch\0"
    "digest_mismatch\0"
    "signature_required\0"
    "unknown_key\0"
    "invalid_signature\0"
    "unsupported_format\0"
    "no_gateway\0"
    "aborted\0"
    "model_rejected\0"
    "not_confirmed\0"
    "bad_delta\0"
    "device_auth_failed\0"
    "device_pending\0"
    "device_rejected\0"
    "pin_mismatch\0"
    "rollback_refused\0"
    "cross_origin_url\0";

const char *mf_err_code(mf_err err)
{
    const char *s = CODES;
    for (unsigned i = (unsigned)err; i > 0 && *s; i--) s += strlen(s) + 1;
    return *s ? s : "unknown_error";
}
