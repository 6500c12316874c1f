/* Key-value port (ESP-IDF: NVS namespace; POSIX: a file per key, replaced atomically).
 * A set either happens completely or not at all, as NVS guarantees. */
#ifndef MF_PORT_KV_H
#define MF_PORT_KV_H

#include <stddef.h>
#include "modelferry/mf_err.h"

#define MF_KV_KEY_MAX 15 /* NVS key length limit */

typedef struct mf_kv mf_kv;

/* MF_ERR_NOT_FOUND when absent; *len is the stored length (at most cap bytes copied;
 * a value longer than cap is MF_ERR_IO). */
mf_err mf_kv_get(mf_kv *kv, const char *key, void *buf, size_t cap, size_t *len);
mf_err mf_kv_set(mf_kv *kv, const char *key, const void *buf, size_t len);
mf_err mf_kv_erase(mf_kv *kv, const char *key);

#endif
