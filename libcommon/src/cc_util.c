/* cc_util: clocks, file reads, retry with backoff. */
#include "cc/cc_util.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t
cc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
cc_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
cc_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
cc_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

char *
cc_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) abort();
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, n, out);
    int failed = ferror(f);
    fclose(f);
    fclose(out);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    return buf;
}

int
cc_retry(int budget_ms, int (*attempt)(void *arg), void *arg, int *attempts_p)
{
    int64_t deadline = cc_mono_ms() + budget_ms;
    int backoff = 50, n = 0, rc;
    for (;;) {
        n++;
        rc = attempt(arg);
        if (rc == 0 || cc_mono_ms() + backoff > deadline) break;
        cc_sleep_ms(backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    if (attempts_p) *attempts_p = n;
    return rc;
}

char *
cc_u64_text(char *at, uint64_t v)
{
    char digits[20];
    int n = 0;
    do digits[n++] = (char) ('0' + v % 10);
    while ((v /= 10) != 0);
    while (n) *at++ = digits[--n];
    return at;
}

char *
cc_hex64_text(char *at, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4) at[i] = hex[v & 15];
    return at + 16;
}

static int s_fails_left;
static int s_try(void *arg) { (void) arg; return s_fails_left-- > 0 ? -1 : 0; }

void
cc_util_test(void)
{
    int64_t t0 = cc_mono_ms();
    cc_sleep_ms(20);
    assert(cc_mono_ms() - t0 >= 19);
    assert(cc_wall_us() > 1600000000LL * 1000000);
    int attempts;
    s_fails_left = 2;
    assert(cc_retry(5000, s_try, NULL, &attempts) == 0 && attempts == 3);
    s_fails_left = 1000;
    t0 = cc_mono_ms();
    assert(cc_retry(300, s_try, NULL, &attempts) == -1);
    assert(cc_mono_ms() - t0 < 1000 && attempts >= 3);
    char buf[64], want[64];
    const uint64_t samples[] = { 0, 7, 10, 99, 1234567890123ULL, UINT64_MAX };
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        *cc_u64_text(buf, samples[i]) = '\0';
        snprintf(want, sizeof want, "%" PRIu64, samples[i]);
        assert(strcmp(buf, want) == 0);
        *cc_hex64_text(buf, samples[i]) = '\0';
        snprintf(want, sizeof want, "%016" PRIx64, samples[i]);
        assert(strcmp(buf, want) == 0);
    }
    char path[] = "/tmp/cc_util_test_XXXXXX";
    int fd = mkstemp(path);
    assert(fd >= 0 && write(fd, "abc\n", 4) == 4);
    close(fd);
    char *text = cc_read_file(path);
    assert(text && strcmp(text, "abc\n") == 0);
    free(text);
    unlink(path);
    assert(!cc_read_file("/nonexistent/x") && errno == ENOENT);
}
