#define _GNU_SOURCE
#include "mf_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mf_kv {
    char dir[4096];
    mf_fault *fault;
};

mf_kv *mf_posix_kv_open(const char *dir, mf_fault *fault)
{
    mf_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    if (snprintf(kv->dir, sizeof kv->dir, "%s/nvs", dir) >= (int)sizeof kv->dir ||
        (mkdir(kv->dir, 0755) != 0 && errno != EEXIST)) {
        free(kv);
        return NULL;
    }
    kv->fault = fault;
    return kv;
}

void mf_posix_kv_close(mf_kv *kv) { free(kv); }

static int key_ok(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > MF_KV_KEY_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') || key[i] == '_')) return 0;
    return 1;
}

/* Like NVS: a set or erase is one operation that happens entirely or not at all. */
static mf_err begin(mf_kv *kv)
{
    mf_fault *f = kv->fault;
    if (!f) return MF_OK;
    if (f->powered_off) return MF_ERR_POWER_LOST;
    if (f->ops_left == 0) {
        f->powered_off = 1;
        if (f->on_power_lost) f->on_power_lost(f->ctx);
        return MF_ERR_POWER_LOST;
    }
    return MF_OK;
}

static void done(mf_kv *kv)
{
    if (!kv->fault) return;
    kv->fault->ops++;
    if (kv->fault->ops_left > 0) kv->fault->ops_left--;
}

mf_err mf_kv_get(mf_kv *kv, const char *key, void *buf, size_t cap, size_t *len)
{
    if (!key_ok(key)) return MF_ERR_INVALID_ARG;
    if (kv->fault && kv->fault->powered_off) return MF_ERR_POWER_LOST;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", kv->dir, key);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? MF_ERR_NOT_FOUND : MF_ERR_IO;
    ssize_t n = read(fd, buf, cap);
    char extra;
    ssize_t more = n >= 0 ? read(fd, &extra, 1) : -1;
    close(fd);
    if (n < 0 || more != 0) return MF_ERR_IO;
    *len = (size_t)n;
    return MF_OK;
}

mf_err mf_kv_set(mf_kv *kv, const char *key, const void *buf, size_t len)
{
    if (!key_ok(key)) return MF_ERR_INVALID_ARG;
    mf_err err = begin(kv);
    if (err != MF_OK) return err;
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s", kv->dir, key);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return MF_ERR_IO;
    ssize_t n = write(fd, buf, len);
    if (close(fd) != 0 || n != (ssize_t)len || rename(tmp, path) != 0) return MF_ERR_IO;
    done(kv);
    return MF_OK;
}

mf_err mf_kv_erase(mf_kv *kv, const char *key)
{
    if (!key_ok(key)) return MF_ERR_INVALID_ARG;
    mf_err err = begin(kv);
    if (err != MF_OK) return err;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", kv->dir, key);
    if (unlink(path) != 0 && errno != ENOENT) return MF_ERR_IO;
    done(kv);
    return MF_OK;
}
