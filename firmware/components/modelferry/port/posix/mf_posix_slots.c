#define _GNU_SOURCE
#include "mf_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct mf_slots {
    int fd[MF_SLOT_COUNT];
    uint32_t size;
    mf_fault *fault;
    const uint8_t *map[MF_SLOT_COUNT];
    size_t map_len[MF_SLOT_COUNT];
};

void mf_fault_init(mf_fault *f)
{
    memset(f, 0, sizeof *f);
    f->bytes_left = -1;
    f->ops_left = -1;
}

static void power_off(mf_fault *f)
{
    f->powered_off = 1;
    if (f->on_power_lost) f->on_power_lost(f->ctx);
}

/* How much of an operation of n bytes may happen: n, or less when the budget ends inside it
 * (then the power goes off after it). -1 when the power is already off. */
static int64_t budget(mf_fault *f, size_t n, int *cut)
{
    *cut = 0;
    if (!f) return (int64_t)n;
    if (f->powered_off) return -1;
    if (f->ops_left == 0) { *cut = 1; return 0; }
    int64_t allowed = (int64_t)n;
    if (f->bytes_left >= 0 && f->bytes_left < allowed) { allowed = f->bytes_left; *cut = 1; }
    return allowed;
}

static void spend(mf_fault *f, size_t bytes)
{
    if (!f) return;
    f->ops++;
    f->bytes += bytes;
    if (f->ops_left > 0) f->ops_left--;
    if (f->bytes_left > 0) f->bytes_left -= (int64_t)bytes;
}

mf_slots *mf_posix_slots_open(const char *dir, uint32_t slot_bytes, mf_fault *fault)
{
    if (slot_bytes == 0 || slot_bytes % MF_FLASH_SECTOR) return NULL;
    mf_slots *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->size = slot_bytes;
    s->fault = fault;
    for (int i = 0; i < MF_SLOT_COUNT; i++) s->fd[i] = -1;
    for (int i = 0; i < MF_SLOT_COUNT; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/slot%d.bin", dir, i);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            char tmp[4200];
            snprintf(tmp, sizeof tmp, "%s.new", path);
            fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) goto fail;
            uint8_t erased[MF_FLASH_SECTOR];
            memset(erased, 0xFF, sizeof erased);
            for (uint32_t off = 0; off < slot_bytes; off += MF_FLASH_SECTOR)
                if (pwrite(fd, erased, sizeof erased, off) != (ssize_t)sizeof erased) { close(fd); goto fail; }
            if (rename(tmp, path) != 0) { close(fd); goto fail; }
        }
        if (fd < 0) goto fail;
        struct stat st;
        if (fstat(fd, &st) != 0 || st.st_size != (off_t)slot_bytes) {
            fprintf(stderr, "%s: size %lld, expected %u\n", path, (long long)st.st_size, slot_bytes);
            close(fd);
            goto fail;
        }
        s->fd[i] = fd;
    }
    return s;
fail:
    mf_posix_slots_close(s);
    return NULL;
}

void mf_posix_slots_close(mf_slots *s)
{
    if (!s) return;
    for (int i = 0; i < MF_SLOT_COUNT; i++) {
        mf_slots_unmap(s, i);
        if (s->fd[i] >= 0) close(s->fd[i]);
    }
    free(s);
}

uint32_t mf_slots_size(mf_slots *s, int slot) { return slot >= 0 && slot < MF_SLOT_COUNT ? s->size : 0; }

static int in_range(mf_slots *s, int slot, uint64_t offset, uint64_t len)
{
    return slot >= 0 && slot < MF_SLOT_COUNT && offset <= s->size && len <= s->size - offset;
}

mf_err mf_slots_read(mf_slots *s, int slot, uint32_t offset, void *buf, size_t len)
{
    if (!in_range(s, slot, offset, len)) return MF_ERR_INVALID_ARG;
    if (s->fault && s->fault->powered_off) return MF_ERR_POWER_LOST;
    return pread(s->fd[slot], buf, len, offset) == (ssize_t)len ? MF_OK : MF_ERR_IO;
}

mf_err mf_slots_write(mf_slots *s, int slot, uint32_t offset, const void *buf, size_t len)
{
    if (!in_range(s, slot, offset, len)) return MF_ERR_INVALID_ARG;
    int cut;
    int64_t n = budget(s->fault, len, &cut);
    if (n < 0) return MF_ERR_POWER_LOST;
    const uint8_t *src = buf;
    uint8_t tmp[1024];
    for (int64_t done = 0; done < n;) {
        size_t k = (size_t)(n - done) < sizeof tmp ? (size_t)(n - done) : sizeof tmp;
        if (pread(s->fd[slot], tmp, k, offset + done) != (ssize_t)k) return MF_ERR_IO;
        for (size_t i = 0; i < k; i++) tmp[i] &= src[done + i]; /* NOR flash: 1 -> 0 only */
        if (pwrite(s->fd[slot], tmp, k, offset + done) != (ssize_t)k) return MF_ERR_IO;
        done += (int64_t)k;
    }
    if (cut) { spend(s->fault, (size_t)n); power_off(s->fault); return MF_ERR_POWER_LOST; }
    spend(s->fault, len);
    return MF_OK;
}

mf_err mf_slots_erase(mf_slots *s, int slot, uint32_t offset, uint32_t len)
{
    if (!in_range(s, slot, offset, len) || offset % MF_FLASH_SECTOR || len % MF_FLASH_SECTOR) return MF_ERR_INVALID_ARG;
    int cut;
    int64_t n = budget(s->fault, 0, &cut);
    if (n < 0) return MF_ERR_POWER_LOST;
    uint8_t erased[MF_FLASH_SECTOR];
    memset(erased, 0xFF, sizeof erased);
    /* An erase cut short leaves the first sector half erased and the rest untouched. */
    uint32_t whole = cut ? 0 : len;
    for (uint32_t off = 0; off < whole; off += MF_FLASH_SECTOR)
        if (pwrite(s->fd[slot], erased, sizeof erased, offset + off) != (ssize_t)sizeof erased) return MF_ERR_IO;
    if (cut) {
        if (pwrite(s->fd[slot], erased, MF_FLASH_SECTOR / 2, offset) != MF_FLASH_SECTOR / 2) return MF_ERR_IO;
        power_off(s->fault);
        return MF_ERR_POWER_LOST;
    }
    spend(s->fault, 0);
    return MF_OK;
}

mf_err mf_slots_map(mf_slots *s, int slot, uint32_t len, const uint8_t **data)
{
    if (!in_range(s, slot, 0, len) || len == 0) return MF_ERR_INVALID_ARG;
    mf_slots_unmap(s, slot);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, s->fd[slot], 0);
    if (p == MAP_FAILED) return MF_ERR_IO;
    s->map[slot] = p;
    s->map_len[slot] = len;
    *data = p;
    return MF_OK;
}

void mf_slots_unmap(mf_slots *s, int slot)
{
    if (slot < 0 || slot >= MF_SLOT_COUNT || !s->map[slot]) return;
    munmap((void *)s->map[slot], s->map_len[slot]);
    s->map[slot] = NULL;
    s->map_len[slot] = 0;
}
