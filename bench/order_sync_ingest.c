/* order_sync_ingest: webhook ingest load (libcurl multi) and its pgbench bound. */
#define _GNU_SOURCE
#include "order_sync_ingest.h"
#include "cc_harness.h"
#include "cc/cc_util.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    char reply[256];
    size_t rlen;
    int64_t sent_us;
} s_slot_t;

typedef struct {
    CURLM *multi;
    char url[128];
    const char *platform, *prefix;
    const unsigned char *key;
    size_t keylen;
    unsigned long long next;
    cc_samples_t lat;
} s_load_t;

static size_t
s_on_data(char *ptr, size_t size, size_t n, void *arg)
{
    s_slot_t *s = arg;
    size_t len = size * n, room = sizeof s->reply - 1 - s->rlen;
    memcpy(s->reply + s->rlen, ptr, len < room ? len : room);
    s->rlen += len < room ? len : room;
    s->reply[s->rlen] = '\0';
    return len;
}

/* Prepares the next order on slot and adds it to the multi handle. */
static void
s_send(s_load_t *l, s_slot_t *s)
{
    unsigned long long n = l->next++;
    free(s->body);
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    if (asprintf(&s->body,
                 "{\"type\":\"order.created\",\"data\":{\"order_number\":\"%s-%llu\",\"status\":\"ordered\","
                 "\"total\":51500,\"currency\":\"USD\",\"version\":1,"
                 "\"customer\":{\"id\":\"bc-%llu\",\"name\":\"Bench Buyer\",\"phone\":\"+1555%07llu\",\"email\":\"b@example.com\"},"
                 "\"items\":[{\"sku\":\"SKU-1\",\"name\":\"Kettle\",\"quantity\":1,\"unit_price\":2500},"
                 "{\"sku\":\"SKU-2\",\"name\":\"Toaster\",\"quantity\":2,\"unit_price\":3500},"
                 "{\"sku\":\"SKU-3\",\"name\":\"Mug\",\"quantity\":4,\"unit_price\":500},"
                 "{\"sku\":\"SKU-4\",\"name\":\"Teapot\",\"quantity\":1,\"unit_price\":4000},"
                 "{\"sku\":\"SKU-5\",\"name\":\"Blender\",\"quantity\":1,\"unit_price\":34000}]}}",
                 l->prefix, n, n % 50000, n % 10000000) < 0)
        abort();
    char id[64], stamp[24], hdr[3][160];
    snprintf(id, sizeof id, "%s-evt-%llu", l->prefix, n);
    snprintf(stamp, sizeof stamp, "%lld", (long long) time(NULL));
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    crypto_auth_hmacsha256_init(&st, l->key, l->keylen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) stamp, strlen(stamp));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) s->body, strlen(s->body));
    crypto_auth_hmacsha256_final(&st, mac);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(hdr[0], sizeof hdr[0], "webhook-id: %s", id);
    snprintf(hdr[1], sizeof hdr[1], "webhook-timestamp: %s", stamp);
    snprintf(hdr[2], sizeof hdr[2], "webhook-signature: v1,%s", b64);
    for (int i = 0; i < 3; i++) s->headers = curl_slist_append(s->headers, hdr[i]);
    s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, "Expect:");
    curl_easy_setopt(s->easy, CURLOPT_URL, l->url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 10000L);
    s->rlen = 0;
    s->reply[0] = '\0';
    s->sent_us = cc_wall_us();
    curl_multi_add_handle(l->multi, s->easy);
}

void
os_bench_ingest(int port, const char *platform, const unsigned char *key, size_t keylen, int window, int seconds,
                const char *prefix, os_ingest_result_t *out)
{
    memset(out, 0, sizeof *out);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s_load_t l = { .multi = curl_multi_init(), .platform = platform, .prefix = prefix, .key = key, .keylen = keylen };
    snprintf(l.url, sizeof l.url, "http://127.0.0.1:%d/webhooks/%s", port, platform);
    curl_multi_setopt(l.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) window);
    s_slot_t *slots = calloc((size_t) window, sizeof *slots);
    if (!slots) abort();
    for (int i = 0; i < window; i++) {
        slots[i].easy = curl_easy_init();
        s_send(&l, &slots[i]);
    }
    int64_t start = cc_mono_ms(), measure = start + 1000, end = measure + seconds * 1000LL;
    unsigned long long accepted = 0, failed = 0;
    bool measuring = false;
    while (cc_mono_ms() < end) {
        int running = 0;
        curl_multi_perform(l.multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(l.multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            s_slot_t *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &s);
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            curl_multi_remove_handle(l.multi, msg->easy_handle);
            if (!measuring && cc_mono_ms() >= measure) measuring = true;
            if (measuring) {
                if (msg->data.result == CURLE_OK && code == 200 && strstr(s->reply, "applied")) {
                    accepted++;
                    cc_samples_add(&l.lat, (double) (cc_wall_us() - s->sent_us) / 1000.0);
                } else {
                    if (failed < 5) fprintf(stderr, "order-sync bench: %ld %s\n", code, s->reply);
                    failed++;
                }
            }
            s_send(&l, s);
        }
        curl_multi_poll(l.multi, NULL, 0, 100, NULL);
    }
    double took = (double) (cc_mono_ms() - measure) / 1000.0;
    out->accepted = accepted;
    out->failed = failed;
    out->orders_per_s = took > 0 ? (double) accepted / took : 0;
    out->p50_ms = cc_samples_quantile(&l.lat, 0.50);
    out->p99_ms = cc_samples_quantile(&l.lat, 0.99);
    for (int i = 0; i < window; i++) {
        curl_multi_remove_handle(l.multi, slots[i].easy);
        curl_easy_cleanup(slots[i].easy);
        curl_slist_free_all(slots[i].headers);
        free(slots[i].body);
    }
    free(slots);
    cc_samples_free(&l.lat);
    curl_multi_cleanup(l.multi);
    curl_global_cleanup();
}

double
os_bench_pgbench(const char *db_url, int clients, int seconds)
{
    char script[] = "/tmp/os-pgbench-XXXXXX";
    int fd = mkstemp(script);
    if (fd < 0) return 0;
    FILE *f = fdopen(fd, "w");
    fputs("BEGIN;\n"
          "INSERT INTO commerce.orders (order_number, platform, status, total_minor, currency, version)"
          " VALUES ('pgb-' || nextval('pgbench_orders'), 'bench', 'ordered', 51500, 'USD', 1);\n", f);
    for (int i = 1; i <= 5; i++)
        fprintf(f, "INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor)"
                   " VALUES ('pgb-' || currval('pgbench_orders'), %d, 'SKU-%d', 'Item', 1, 2500);\n", i, i);
    fputs("END;\n", f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "psql -q '%s' -c 'CREATE SEQUENCE IF NOT EXISTS pgbench_orders' >/dev/null && "
             "pgbench -n -M prepared -c %d -j 2 -T %d -f %s '%s' 2>&1", db_url, clients, seconds, script, db_url);
    FILE *p = popen(cmd, "r");
    double tps = 0;
    char line[512];
    while (p && fgets(line, sizeof line, p)) {
        double v;
        if (sscanf(line, "tps = %lf", &v) == 1) tps = v;
        else if (strstr(line, "ERROR") || strstr(line, "error")) fputs(line, stderr);
    }
    if (p) pclose(p);
    unlink(script);
    return tps;
}
