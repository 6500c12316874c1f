/* The answer to GET /v1/devices/{mac}/model (docs/design.md "Device poll"), parsed strictly. */
#ifndef MF_ASSIGNMENT_H
#define MF_ASSIGNMENT_H

#include <stddef.h>
#include <stdint.h>
#include "modelferry/modelferry.h"

/* A larger body is refused before parsing: the contract's answer is well under 1 KiB. */
#define MF_ASSIGNMENT_BODY_MAX 4096
#define MF_SIGNATURE_B64_MAX 100

/* Parses and validates every field's type, form and bounds. On error *out is unspecified
 * and `why` (when not NULL) names the first problem. */
mf_err mf_assignment_parse(const char *body, size_t len, mf_assignment *out,
                           char *why, size_t why_len);

int mf_valid_name(const char *s);
int mf_valid_version(const char *s);

#endif
