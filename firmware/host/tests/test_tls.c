/* The POSIX port's pinning against a real TLS server (openssl s_server on 127.0.0.1, a
 * self-signed P-256 certificate made for the test, as a gateway makes its own): a server
 * whose public key is pinned is reached whatever its certificate names or who signed it;
 * another key, no pin on a self-signed server, or a pin on a plain http URL are refused. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sodium.h>

#include "test_util.h"

static char dir[512];
static uint16_t port;
static pid_t server;
static uint8_t pin[32];

static int status_seen;

static int on_head(void *ctx, const mf_http_head *head)
{
    (void)ctx;
    status_seen = head->status;
    return 0;
}

static int on_body(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

static mf_err get(const char *url, const uint8_t (*pins)[32], size_t pin_count)
{
    mf_http *http = mf_posix_http_new();
    CHECK(http != NULL);
    mf_http_request req = {.method = "GET", .url = url, .range_start = -1, .pins = pins, .pin_count = pin_count, .timeout_ms = 10000};
    mf_http_sink sink = {on_head, on_body, NULL};
    status_seen = 0;
    mf_err err = mf_http_perform(http, &req, &sink);
    mf_posix_http_free(http);
    return err;
}

static void run(const char *command)
{
    char line[2048];
    snprintf(line, sizeof line, "cd '%s' && (%s) >/dev/null 2>&1", dir, command);
    CHECK(system(line) == 0);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void start_server(void)
{
    snprintf(dir, sizeof dir, "%s", test_tempdir());
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem "
        "-subj /CN=gateway.local -days 2 && openssl pkey -in key.pem -pubout -outform DER -out spki.der");
    char path[600];
    snprintf(path, sizeof path, "%s/spki.der", dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    uint8_t der[512];
    size_t n = fread(der, 1, sizeof der, f);
    fclose(f);
    crypto_hash_sha256(pin, der, n);

    port = free_port();
    char accept_at[32];
    snprintf(accept_at, sizeof accept_at, "127.0.0.1:%u", port);
    server = fork();
    CHECK(server >= 0);
    if (server == 0) {
        CHECK(chdir(dir) == 0);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("openssl", "openssl", "s_server", "-accept", accept_at, "-cert", "cert.pem", "-key", "key.pem", "-www",
               "-quiet", (char *)NULL);
        _exit(127);
    }
    /* Until it accepts. */
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) return;
        usleep(50 * 1000);
    }
    CHECK(!"openssl s_server did not start");
}

static void stop_server(void)
{
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
}

static void pinned_key_is_the_trust(void)
{
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", port);
    CHECK_EQ(get(url, (const uint8_t(*)[32])pin, 1), MF_OK);
    CHECK_EQ(status_seen, 200);
    /* Another name than the certificate's, and the pin among others. */
    uint8_t pins[3][32];
    memset(pins, 0x5a, sizeof pins);
    memcpy(pins[2], pin, 32);
    snprintf(url, sizeof url, "https://localhost:%u/", port);
    CHECK_EQ(get(url, (const uint8_t(*)[32])pins, 3), MF_OK);
    CHECK_EQ(status_seen, 200);
}

static void other_keys_refused(void)
{
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", port);
    uint8_t wrong[32];
    memcpy(wrong, pin, 32);
    wrong[31] ^= 1;
    CHECK_EQ(get(url, (const uint8_t(*)[32])wrong, 1), MF_ERR_PIN_MISMATCH);
    CHECK_EQ(status_seen, 0); /* nothing was answered: nothing was asked */
    /* No pin: a self-signed certificate no CA vouches for. */
    CHECK_EQ(get(url, NULL, 0), MF_ERR_NETWORK);
    /* A pin cannot be proven over plain HTTP. */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    CHECK_EQ(get(url, (const uint8_t(*)[32])pin, 1), MF_ERR_INVALID_ARG);
}

int main(int argc, char **argv)
{
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: openssl is not installed (Debian: openssl)\n");
        return 0;
    }
    static const test_scenario scenarios[] = {
        SCENARIO(pinned_key_is_the_trust),
        SCENARIO(other_keys_refused),
    };
    CHECK(sodium_init() >= 0);
    start_server();
    int status = test_main(argc, argv, scenarios, sizeof scenarios / sizeof scenarios[0], NULL, NULL);
    stop_server();
    return status;
}
