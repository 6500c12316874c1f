/* The ExecuTorch header check the gateway also applies (daemon/store/executorch.ts):
 * identifier `ET` + two digits at byte 4; when bytes 8..11 are `eh00`, the extended
 * header's sizes must fit the file. */
#ifndef MF_EXECUTORCH_H
#define MF_EXECUTORCH_H

#include <stddef.h>
#include <stdint.h>

#define MF_PROGRAM_HEAD_BYTES 48

/* head: the first min(file_size, MF_PROGRAM_HEAD_BYTES) bytes. Returns NULL when the
 * header is good, else a reason. */
const char *mf_executorch_check(const uint8_t *head, size_t head_len, uint64_t file_size);

#endif
