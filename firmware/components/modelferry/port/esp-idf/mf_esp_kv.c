/* The key-value store on NVS: a blob per key, committed at once (NVS writes are atomic). */
#include "modelferry/mf_port_kv.h"

#include "nvs.h"
#include "sdkconfig.h"

struct mf_kv {
    nvs_handle_t handle;
};

static struct mf_kv kv_store;

mf_kv *mf_esp_kv_open(void)
{
    if (nvs_open(CONFIG_MODELFERRY_NVS_NAMESPACE, NVS_READWRITE, &kv_store.handle) != ESP_OK) return NULL;
    return &kv_store;
}

mf_err mf_kv_get(mf_kv *kv, const char *key, void *buf, size_t cap, size_t *len)
{
    size_t size = 0;
    esp_err_t e = nvs_get_blob(kv->handle, key, NULL, &size);
    if (e == ESP_ERR_NVS_NOT_FOUND) return MF_ERR_NOT_FOUND;
    if (e != ESP_OK || size > cap) return MF_ERR_IO;
    e = nvs_get_blob(kv->handle, key, buf, &size);
    if (e != ESP_OK) return MF_ERR_IO;
    *len = size;
    return MF_OK;
}

mf_err mf_kv_set(mf_kv *kv, const char *key, const void *buf, size_t len)
{
    if (nvs_set_blob(kv->handle, key, buf, len) != ESP_OK) return MF_ERR_IO;
    return nvs_commit(kv->handle) == ESP_OK ? MF_OK : MF_ERR_IO;
}

mf_err mf_kv_erase(mf_kv *kv, const char *key)
{
    esp_err_t e = nvs_erase_key(kv->handle, key);
    if (e == ESP_ERR_NVS_NOT_FOUND) return MF_OK;
    if (e != ESP_OK) return MF_ERR_IO;
    return nvs_commit(kv->handle) == ESP_OK ? MF_OK : MF_ERR_IO;
}
