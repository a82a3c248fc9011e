/* order_sync_lookups: seeds orders and measures order.lookup over the bus
 * with a window of requests in flight on one client loop. Latency is from
 * sending a request to its reply. */
#include "order_sync_lookups.h"
#include "cc_harness.h"
#include "cc/cc_loop.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "order.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
os_bench_seed_lookups(cc_pg_t *pg, const char *platform, int orders)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO commerce.customers (platform, external_id, name, phone)"
             " SELECT '%s', 'bc' || g, 'Customer ' || g, '1390' || lpad(g::text, 7, '0')"
             " FROM generate_series(1, %d) g;"
             "INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version)"
             " SELECT 'B' || g, '%s', c.id, 'ordered', 5 * 1990, 'CNY', 1 FROM generate_series(1, %d) g"
             " JOIN commerce.customers c ON c.platform = '%s' AND c.external_id = 'bc' || (1 + g %% %d);"
             "INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor)"
             " SELECT 'B' || g, l, 'SKU-' || l, 'Item ' || l, 1, 1990 FROM generate_series(1, %d) g,"
             " generate_series(1, 5) l;"
             "ANALYZE commerce.customers; ANALYZE commerce.orders; ANALYZE commerce.order_items;",
             platform, orders / 4, platform, orders, platform, orders / 4, orders);
    if (cc_pg_run(pg, sql, NULL)) {
        fprintf(stderr, "bench: seeding orders failed: %s\n", cc_pg_error(pg));
        return -1;
    }
    return 0;
}

typedef struct {
    cc_loop_t *loop;
    cc_rpc_client_t *client;
    int orders;
    char by;                   /* 'n': by number only, 'p': by phone only, else both */
    int64_t deadline;
    uint64_t next, done, failures;
    cc_samples_t lat;
    int inflight;
} load_t;

typedef struct { load_t *load; int64_t sent_us; } req_t;

static void s_next(load_t *l);

static void
s_on_reply(void *arg, const Cc__Reply *reply)
{
    req_t *r = arg;
    load_t *l = r->load;
    l->inflight--;
    if (reply->status == CC__STATUS__STATUS_OK) {
        l->done++;
        cc_samples_add(&l->lat, (double) (cc_wall_us() - r->sent_us) / 1000.0);
    } else {
        l->failures++;
    }
    free(r);
    s_next(l);
}

static void
s_next(load_t *l)
{
    if (cc_mono_ms() >= l->deadline) {
        if (l->inflight == 0) cc_loop_stop(l->loop);
        return;
    }
    uint64_t n = l->next++;
    char number[24], phone[24];
    Cc__OrderLookup q = CC__ORDER_LOOKUP__INIT;
    if (l->by == 'n' || (l->by != 'p' && n % 2 == 0)) {
        snprintf(number, sizeof number, "B%llu", (unsigned long long) (1 + (n * 7919) % (uint64_t) l->orders));
        q.order_number = number;
    } else {
        snprintf(phone, sizeof phone, "1390%07llu", (unsigned long long) (1 + (n * 104729) % (uint64_t) (l->orders / 4)));
        q.phone = phone;
    }
    uint8_t buf[128];
    size_t len = cc__order_lookup__pack(&q, buf);
    req_t *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->load = l;
    r->sent_us = cc_wall_us();
    l->inflight++;
    cc_rpc_call(l->client, "order.lookup", NULL, buf, len, 5000, s_on_reply, r);
}

int
os_bench_lookups(const char *rpc, int orders, int seconds, int window)
{
    load_t l = { 0 };
    l.orders = orders;
    l.by = getenv("OS_BENCH_LOOKUP_BY") ? getenv("OS_BENCH_LOOKUP_BY")[0] : 'b';
    l.loop = cc_loop_new();
    cc_rpc_client_opts_t o = { .endpoint = rpc, .source = "bench", .retry_ms = 2000, .max_attempts = 2 };
    l.client = cc_rpc_client_new(&o);
    cc_rpc_client_attach(l.client, l.loop);
    /* A short warm-up: statements prepared, caches hot. */
    l.deadline = cc_mono_ms() + 500;
    for (int i = 0; i < window; i++) s_next(&l);
    cc_loop_run(l.loop);
    l.done = l.failures = 0;
    l.lat.n = 0;
    l.deadline = cc_mono_ms() + seconds * 1000;
    int64_t t0 = cc_mono_ms();
    for (int i = 0; i < window; i++) s_next(&l);
    cc_loop_run(l.loop);
    double secs = (double) (cc_mono_ms() - t0) / 1000.0;
    printf("order_sync.lookups_per_s %.0f lookups/s\n", (double) l.done / secs);
    printf("order_sync.lookup_p50_ms %.3f ms\n", cc_samples_quantile(&l.lat, 0.50));
    printf("order_sync.lookup_p99_ms %.3f ms\n", cc_samples_quantile(&l.lat, 0.99));
    printf("order_sync.lookup_failures %llu requests\n", (unsigned long long) l.failures);
    printf("order_sync.lookup_window %d requests\n", window);
    fflush(stdout);
    int rc = l.done ? 0 : -1;
    cc_rpc_client_destroy(&l.client);
    cc_loop_destroy(&l.loop);
    cc_samples_free(&l.lat);
    return rc;
}
