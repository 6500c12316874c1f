/* A JSON writer into a fixed buffer (reports are built without cJSON's heap). */
#ifndef MF_JSON_OUT_H
#define MF_JSON_OUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *buf;
    size_t cap;
    size_t len;
    int overflow;
    int need_comma;
} mf_json;

void mf_json_init(mf_json *j, char *buf, size_t cap);
void mf_json_begin(mf_json *j, char open);      /* '{' or '[' */
void mf_json_end(mf_json *j, char close);
void mf_json_key(mf_json *j, const char *key);  /* in an object, before a value */
void mf_json_string(mf_json *j, const char *s);
void mf_json_field(mf_json *j, const char *key, const char *s);  /* "key":"s" */
void mf_json_uint(mf_json *j, uint64_t v);
void mf_json_fraction(mf_json *j, double v);    /* 0..1 with 4 decimals */
/* Bytes the escaped string takes, quotes included. */
size_t mf_json_string_size(const char *s);

#endif
