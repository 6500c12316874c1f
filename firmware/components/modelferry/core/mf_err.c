#include "modelferry/mf_err.h"

const char *mf_err_code(mf_err err)
{
    switch (err) {
    case MF_OK: return "ok";
    case MF_ERR_INVALID_ARG: return "invalid_argument";
    case MF_ERR_NO_MEMORY: return "no_memory";
    case MF_ERR_IO: return "storage_error";
    case MF_ERR_POWER_LOST: return "power_lost";
    case MF_ERR_NOT_FOUND: return "not_found";
    case MF_ERR_NETWORK: return "network_error";
    case MF_ERR_HTTP_STATUS: return "unexpected_status";
    case MF_ERR_PROTOCOL: return "protocol_error";
    case MF_ERR_NO_ASSIGNMENT: return "no_assignment";
    case MF_ERR_TOO_LARGE: return "model_too_large";
    case MF_ERR_SIZE_MISMATCH: return "size_mismatch";
    case MF_ERR_DIGEST_MISMATCH: return "digest_mismatch";
    case MF_ERR_UNSIGNED: return "signature_required";
    case MF_ERR_UNKNOWN_KEY: return "unknown_key";
    case MF_ERR_BAD_SIGNATURE: return "invalid_signature";
    case MF_ERR_FORMAT: return "unsupported_format";
    case MF_ERR_NO_GATEWAY: return "no_gateway";
    case MF_ERR_ABORTED: return "aborted";
    case MF_ERR_REJECTED: return "model_rejected";
    case MF_ERR_NOT_CONFIRMED: return "not_confirmed";
    case MF_ERR_BAD_DELTA: return "bad_delta";
    case MF_ERR_UNAUTHORIZED: return "device_auth_failed";
    case MF_ERR_DEVICE_PENDING: return "device_pending";
    case MF_ERR_DEVICE_REJECTED: return "device_rejected";
    case MF_ERR_PIN_MISMATCH: return "pin_mismatch";
    case MF_ERR_ROLLBACK: return "rollback_refused";
    case MF_ERR_CROSS_ORIGIN: return "cross_origin_url";
    }
    return "unknown_error";
}
