/* The POSIX port: what runs the portable core on Linux (host tests and modelferry-sim).
 * Slots are two files with NOR-flash semantics (erase to 0xFF, writes only clear bits),
 * the key-value store is a folder with a file per key replaced atomically, HTTP is
 * libcurl, discovery a small mDNS querier over a UDP multicast socket.
 *
 * A fault plan makes storage stop like a power cut: after a budget of bytes written or of
 * operations (writes, erases, key sets), the operation in progress is cut short (a write
 * keeps its first bytes, an erase leaves the sector half erased, a key set does nothing)
 * and every later storage call fails with MF_ERR_POWER_LOST. */
#ifndef MF_POSIX_H
#define MF_POSIX_H

#include <stdint.h>
#include "modelferry/modelferry.h"

typedef struct {
    int64_t bytes_left;      /* slot bytes that may still be written; -1: unlimited */
    int64_t ops_left;        /* storage operations that may still complete; -1: unlimited */
    int powered_off;
    uint64_t ops, bytes;     /* what completed so far */
    void (*on_power_lost)(void *ctx);  /* e.g. the simulator exits at once */
    void *ctx;
} mf_fault;

void mf_fault_init(mf_fault *f); /* unlimited */

/* Creates <dir>/slot0.bin and slot1.bin of slot_bytes (erased) when absent; an existing
 * file of another size is an error. fault may be NULL. */
mf_slots *mf_posix_slots_open(const char *dir, uint32_t slot_bytes, mf_fault *fault);
void mf_posix_slots_close(mf_slots *s);

/* Keys are files under <dir>/nvs/. */
mf_kv *mf_posix_kv_open(const char *dir, mf_fault *fault);
void mf_posix_kv_close(mf_kv *kv);

mf_http *mf_posix_http_new(void);
void mf_posix_http_free(mf_http *h);
/* Caps downloads at bytes_per_second (0: no cap), so a test can stop a device mid-download. */
void mf_posix_http_set_max_rate(mf_http *h, uint64_t bytes_per_second);

/* ifaddr: IPv4 address of the interface to send queries on, or NULL for the default. */
mf_discovery *mf_posix_discovery_new(const char *ifaddr);
void mf_posix_discovery_free(mf_discovery *d);

mf_identity *mf_posix_identity_new(const uint8_t mac[6]);
void mf_posix_identity_free(mf_identity *id);
/* Parses aa:bb:cc:dd:ee:ff (also with dashes or no separator, any case). 0 on success. */
int mf_parse_mac(const char *text, uint8_t mac[6]);

/* manual 0: CLOCK_MONOTONIC. manual 1: starts at 0 and moves only by mf_posix_clock_advance
 * and mf_clock_sleep_ms, so tests of backoffs and long polls wait for nothing. */
mf_clock *mf_posix_clock_new(int manual);
void mf_posix_clock_free(mf_clock *c);
void mf_posix_clock_advance(mf_clock *c, uint64_t ms);
/* CLOCK_MONOTONIC in ms, for the ports' own timeouts (they wait in real time). */
uint64_t mf_posix_monotonic_ms(void);

/* libsodium's randombytes. */
mf_random *mf_posix_random(void);

#endif
