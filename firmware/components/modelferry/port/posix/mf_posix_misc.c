#define _GNU_SOURCE
#include "mf_posix.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

/* The real clock for the simulator; a manual one for tests, which moves only when told
 * (or when the client sleeps on it), so waits cost no time. A mutex: a test's server thread
 * moves it while the client reads it. */
struct mf_clock {
    pthread_mutex_t lock;
    int manual;
    uint64_t manual_now_ms, offset_ms;
};

mf_clock *mf_posix_clock_new(int manual)
{
    mf_clock *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->manual = manual;
    return c;
}

void mf_posix_clock_free(mf_clock *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

uint64_t mf_posix_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t mf_clock_now_ms(mf_clock *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t now = (c->manual ? c->manual_now_ms : mf_posix_monotonic_ms()) + c->offset_ms;
    pthread_mutex_unlock(&c->lock);
    return now;
}

void mf_clock_sleep_ms(mf_clock *c, uint32_t ms)
{
    if (c->manual) {
        mf_posix_clock_advance(c, ms);
        return;
    }
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void mf_posix_clock_advance(mf_clock *c, uint64_t ms)
{
    pthread_mutex_lock(&c->lock);
    c->offset_ms += ms;
    pthread_mutex_unlock(&c->lock);
}

struct mf_random {
    int unused;
};

static mf_random random_source;

mf_random *mf_posix_random(void) { return &random_source; }

uint32_t mf_random_u32(mf_random *r)
{
    (void)r;
    return randombytes_random();
}

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
