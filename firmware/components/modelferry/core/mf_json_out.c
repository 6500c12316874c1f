#include "mf_json_out.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void mf_json_init(mf_json *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->cap = cap;
    j->len = 0;
    j->overflow = cap == 0;
    j->need_comma = 0;
    if (cap) buf[0] = '\0';
}

static void put(mf_json *j, const char *s, size_t n)
{
    if (j->overflow || j->len + n + 1 > j->cap) { j->overflow = 1; return; }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void separate(mf_json *j)
{
    if (j->need_comma) put(j, ",", 1);
    j->need_comma = 1;
}

void mf_json_begin(mf_json *j, char open)
{
    separate(j);
    put(j, &open, 1);
    j->need_comma = 0;
}

void mf_json_end(mf_json *j, char close)
{
    put(j, &close, 1);
    j->need_comma = 1;
}

void mf_json_field(mf_json *j, const char *key, const char *s)
{
    mf_json_key(j, key);
    mf_json_string(j, s);
}

void mf_json_key(mf_json *j, const char *key)
{
    mf_json_string(j, key);
    put(j, ":", 1);
    j->need_comma = 0;
}

static size_t escape(const char *s, char *out /* may be NULL */)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        const char *e = NULL;
        size_t m = 1;
        if (*p == '"') { e = "\\\""; m = 2; }
        else if (*p == '\\') { e = "\\\\"; m = 2; }
        else if (*p < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", *p); e = tmp; m = 6; }
        if (out) {
            if (e) memcpy(out + n, e, m);
            else out[n] = (char)*p;
        }
        n += m;
    }
    return n;
}

size_t mf_json_string_size(const char *s) { return escape(s, NULL) + 2; }

void mf_json_string(mf_json *j, const char *s)
{
    separate(j);
    size_t n = escape(s, NULL);
    if (j->overflow || j->len + n + 3 > j->cap) { j->overflow = 1; return; }
    j->buf[j->len++] = '"';
    escape(s, j->buf + j->len);
    j->len += n;
    j->buf[j->len++] = '"';
    j->buf[j->len] = '\0';
}

void mf_json_uint(mf_json *j, uint64_t v)
{
    char tmp[24];
    separate(j);
    put(j, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" PRIu64, v));
}

void mf_json_fraction(mf_json *j, double v)
{
    char tmp[16];
    if (!(v >= 0)) v = 0;
    if (v > 1) v = 1;
    separate(j);
    put(j, tmp, (size_t)snprintf(tmp, sizeof tmp, "%.4f", v));
}
