#include "mf_http_parse.h"

#include <string.h>

int64_t mf_parse_decimal(const char *s, const char **end)
{
    if (*s < '0' || *s > '9') return -1;
    int64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*s++ - '0');
    }
    if (end) *end = s;
    return v;
}

int mf_parse_content_range(const char *value, int64_t *first, int64_t *last, int64_t *complete)
{
    if (strncmp(value, "bytes ", 6) != 0) return -1;
    const char *end = value;
    int64_t a = mf_parse_decimal(value + 6, &end), b = -1, total = -1;
    if (a >= 0 && *end == '-') b = mf_parse_decimal(end + 1, &end);
    if (b >= 0 && *end == '/') total = mf_parse_decimal(end + 1, &end);
    if (total < 0 || *end != '\0' || a > b || b >= total) return -1;
    *first = a;
    *last = b;
    *complete = total;
    return 0;
}

uint32_t mf_parse_retry_after(const char *value)
{
    const char *end = value;
    int64_t v = mf_parse_decimal(value, &end);
    if (v < 0 || *end != '\0') return 0;
    return v > 86400 ? 86400 : (uint32_t)v;
}
