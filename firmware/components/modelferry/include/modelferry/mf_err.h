/* Result codes of the modelferry client. The strings from mf_err_code() are what a device
 * reports to the gateway in the `error` field, so they are stable. */
#ifndef MF_ERR_H
#define MF_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MF_OK = 0,
    MF_ERR_INVALID_ARG,      /* a caller passed something impossible */
    MF_ERR_NO_MEMORY,
    MF_ERR_IO,               /* storage failed (flash, file, NVS) */
    MF_ERR_POWER_LOST,       /* storage stopped mid-operation (fault injection on the host) */
    MF_ERR_NOT_FOUND,        /* a key, partition or record is absent */
    MF_ERR_NETWORK,          /* connect, timeout, or a body cut short */
    MF_ERR_HTTP_STATUS,      /* an unexpected status code */
    MF_ERR_PROTOCOL,         /* a response that breaks the contract (JSON, headers, ranges) */
    MF_ERR_NO_ASSIGNMENT,    /* 404 no_assignment */
    MF_ERR_TOO_LARGE,        /* the model does not fit the slot */
    MF_ERR_SIZE_MISMATCH,    /* the bytes received are not the announced size */
    MF_ERR_DIGEST_MISMATCH,  /* sha256 of the bytes is not the announced one */
    MF_ERR_UNSIGNED,         /* keys are configured and the model carries no signature */
    MF_ERR_UNKNOWN_KEY,      /* signed by a key the firmware does not trust */
    MF_ERR_BAD_SIGNATURE,    /* the signature does not verify */
    MF_ERR_FORMAT,           /* not an ExecuTorch program, or its header is inconsistent */
    MF_ERR_NO_GATEWAY,       /* discovery found nothing and no fallback URL is set */
    MF_ERR_ABORTED,          /* a callback stopped a transfer */
    MF_ERR_REJECTED,         /* the application rejected a pending model */
    MF_ERR_NOT_CONFIRMED,    /* a pending model was not confirmed in time (boots or seconds) */
    MF_ERR_BAD_DELTA,        /* a delta that does not make the assigned model (the full artifact is fetched instead) */
    MF_ERR_UNAUTHORIZED,     /* the gateway wants the device's key proven (401), or refused the proof */
    MF_ERR_DEVICE_PENDING,   /* the gateway waits for an operator to accept this device (403) */
    MF_ERR_DEVICE_REJECTED,  /* an operator rejected this device on that gateway (403) */
    MF_ERR_PIN_MISMATCH,     /* the server's certificate has none of the pinned public keys */
    MF_ERR_ROLLBACK,         /* the model's signed sequence is below one this device confirmed */
    MF_ERR_CROSS_ORIGIN      /* the artifact's URL is on another host than the gateway */
} mf_err;

/* Short stable code, e.g. "digest_mismatch". Never NULL. */
const char *mf_err_code(mf_err err);

#ifdef __cplusplus
}
#endif

#endif
