#include "mf_executorch.h"

#include <string.h>

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

const char *mf_executorch_check(const uint8_t *head, size_t head_len, uint64_t file_size)
{
    if (file_size < 8 || head_len < 8) return "shorter than an ExecuTorch header";
    if (head[4] != 'E' || head[5] != 'T' || head[6] < '0' || head[6] > '9' || head[7] < '0' || head[7] > '9')
        return "no ExecuTorch file identifier (ET + two digits at byte 4)";
    if (head_len < 12 || memcmp(head + 8, "eh00", 4) != 0) return NULL;

    if (head_len < 8 + 24) return "extended header: the file ends inside the header";
    uint32_t length = le32(head + 12);
    if (length < 24) return "extended header: length below 24";
    if (8 + (uint64_t)length > file_size) return "extended header: length runs past the end of the file";
    uint64_t program_size = le64(head + 16);
    uint64_t segment_base = le64(head + 24);
    if (program_size < 8 + (uint64_t)length || program_size > file_size)
        return "extended header: program size does not fit the file";
    if (segment_base != 0 && (segment_base < program_size || segment_base > file_size))
        return "extended header: segment base offset does not fit the file";
    if (length >= 32) {
        if (head_len < 8 + 32) return "extended header: the file ends inside the header";
        uint64_t segment_size = le64(head + 32);
        /* segment_base <= file_size here, so the subtraction cannot wrap. */
        if (segment_size > file_size - segment_base) return "extended header: segments run past the end of the file";
    }
    return NULL;
}
