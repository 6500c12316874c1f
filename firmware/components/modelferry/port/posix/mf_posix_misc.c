#define _GNU_SOURCE
#include "mf_posix.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t clock_offset_ms;

uint64_t mf_clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + clock_offset_ms;
}

void mf_clock_sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void mf_posix_clock_advance(uint64_t ms) { clock_offset_ms += ms; }

struct mf_identity {
    uint8_t mac[6];
};

mf_identity *mf_posix_identity_new(const uint8_t mac[6])
{
    mf_identity *id = malloc(sizeof *id);
    if (id) memcpy(id->mac, mac, 6);
    return id;
}

void mf_posix_identity_free(mf_identity *id) { free(id); }

mf_err mf_identity_mac(mf_identity *id, uint8_t mac[6])
{
    memcpy(mac, id->mac, 6);
    return MF_OK;
}

long mf_identity_free_heap(mf_identity *id)
{
    (void)id;
    return -1; /* a host process has no meaningful figure */
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int mf_parse_mac(const char *text, uint8_t mac[6])
{
    size_t n = strlen(text);
    char sep = n == 17 ? text[2] : 0;
    if (!(n == 12 || (n == 17 && (sep == ':' || sep == '-')))) return -1;
    size_t stride = n == 17 ? 3 : 2;
    for (int i = 0; i < 6; i++) {
        const char *p = text + i * stride;
        int hi = hexval((unsigned char)p[0]), lo = hexval((unsigned char)p[1]);
        if (hi < 0 || lo < 0) return -1;
        if (n == 17 && i < 5 && p[2] != sep) return -1;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
