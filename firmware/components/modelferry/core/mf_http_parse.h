/* Response headers both HTTP ports read the same way: a strict decimal, and the
 * Content-Range of a 206. */
#ifndef MF_HTTP_PARSE_H
#define MF_HTTP_PARSE_H

#include <stdint.h>

/* Digits only, no sign or space, at most INT64_MAX; -1 otherwise. *end (when not NULL)
 * points past the digits. */
int64_t mf_parse_decimal(const char *s, const char **end);

/* "bytes <first>-<last>/<complete>" with first <= last < complete. 0 and the three values
 * when it is one, -1 otherwise (nothing written). */
int mf_parse_content_range(const char *value, int64_t *first, int64_t *last, int64_t *complete);

/* Retry-After as delay-seconds (an HTTP date is not read: a device may not know the
 * time), at most a day; 0 when absent or not that form. */
uint32_t mf_parse_retry_after(const char *value);

#endif
