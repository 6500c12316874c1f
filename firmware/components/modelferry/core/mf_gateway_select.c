#include "mf_gateway_select.h"

#include <stdio.h>
#include <string.h>

int mf_candidate_url(const mf_gateway_candidate *c, mf_tls_use tls, char *out, size_t cap)
{
    int https = c->tls && (tls != MF_TLS_IF_ONLY || !c->tls_port || c->tls_port == c->port);
    unsigned port = https && c->tls_port ? c->tls_port : c->port;
    int n = snprintf(out, cap, "%s://%s:%u", https ? "https" : "http", c->host, port);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void add(mf_gateway_list *list, const char *url)
{
    if (url == NULL || url[0] == '\0' || list->count >= MF_GATEWAYS_MAX || strlen(url) >= MF_BASE_URL_MAX) return;
    if (list->tls == MF_TLS_REQUIRED && strncmp(url, "https://", 8) != 0) return;
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->url[i], url) == 0) return;
    strcpy(list->url[list->count++], url);
}

void mf_gateway_order(const mf_gateway_candidate *c, size_t n, const char *last_good,
                      const char *fallback, uint32_t random, mf_tls_use tls, mf_gateway_list *out)
{
    memset(out, 0, sizeof *out);
    out->tls = tls;
    char url[MF_BASE_URL_MAX];
    int used[MF_GATEWAYS_MAX] = {0};
    if (n > MF_GATEWAYS_MAX) n = MF_GATEWAYS_MAX;

    for (;;) {
        /* The lowest prio among candidates not yet placed. */
        int found = 0;
        uint16_t best = 0;
        for (size_t i = 0; i < n; i++)
            if (!used[i] && (!found || c[i].prio < best)) { best = c[i].prio; found = 1; }
        if (!found) break;

        size_t ties[MF_GATEWAYS_MAX], tie_count = 0, pick = SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
            if (used[i] || c[i].prio != best) continue;
            ties[tie_count++] = i;
            if (last_good && mf_candidate_url(&c[i], tls, url, sizeof url) == 0 && strcmp(url, last_good) == 0) pick = i;
        }
        /* Place the whole tier: the winner first, then the others in a random rotation. */
        size_t start = random % tie_count;
        if (pick != SIZE_MAX) {
            if (mf_candidate_url(&c[pick], tls, url, sizeof url) == 0) add(out, url);
            used[pick] = 1;
        }
        for (size_t k = 0; k < tie_count; k++) {
            size_t i = ties[(start + k) % tie_count];
            if (used[i]) continue;
            used[i] = 1;
            if (mf_candidate_url(&c[i], tls, url, sizeof url) == 0) add(out, url);
        }
    }
    add(out, last_good);
    add(out, fallback);
}
