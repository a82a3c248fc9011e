/* order_sync_bench: tools/bench order-sync. Webhook ingest of orders with
 * five items, each acknowledged only after its commit, against pgbench's
 * rate for one order and five items per transaction on the same PostgreSQL,
 * run with fsync on (the harness's test servers run with fsync off; durable
 * figures need it on); then bus lookups by order number and by phone
 * (order_sync_lookups.c) on 20,000 more orders. Prints
 * "order_sync.<figure> <value> <unit>" lines. */
#include "order_sync_ingest.h"
#include "order_sync_lookups.h"
#include "cc_harness.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

static int s_window = 64;       /* webhooks in flight, as many platforms' deliveries at once */
static int s_seconds = 5;
static int s_pg_clients = 8;
static int s_lookup_window = 32;  /* lookups in flight, as many agents' and callers' at once */
static int s_lookup_orders = 20000;

int
main(void)
{
    cc_log_init("order_sync_bench", "order_sync_bench");
    if (sodium_init() < 0) return 1;
    if (getenv("OS_BENCH_SECONDS")) s_seconds = atoi(getenv("OS_BENCH_SECONDS"));
    if (getenv("OS_BENCH_LOOKUP_WINDOW")) s_lookup_window = atoi(getenv("OS_BENCH_LOOKUP_WINDOW"));
    cc_harness_t *h = cc_harness_new("order-sync-bench");
    const char *db = cc_harness_start_pg(h);
    cc_harness_start_forwarder(h, false, 100000);
    cc_pg_t *pg = cc_pg_new(db, 5000, NULL);
    if (cc_pg_connect(pg) || cc_pg_run(pg, "ALTER SYSTEM SET fsync = on", NULL)
        || cc_pg_run(pg, "ALTER SYSTEM SET full_page_writes = on", NULL)
        || cc_pg_run(pg, "ALTER SYSTEM SET synchronous_commit = on", NULL)
        || cc_pg_run(pg, "SELECT pg_reload_conf()", NULL)
        || cc_pg_migrate(pg, "order_sync", OS_SOURCE_DIR "/sql", NULL)) {
        fprintf(stderr, "order-sync bench: database set-up failed: %s\n", cc_pg_error(pg));
        return 1;
    }
    unsigned char key[32];
    randombytes_buf(key, sizeof key);
    char b64[64], sql[256];
    sodium_bin2base64(b64, sizeof b64, key, sizeof key, sodium_base64_VARIANT_ORIGINAL);
    snprintf(sql, sizeof sql, "INSERT INTO commerce.platforms (name, secret) VALUES ('bench', 'whsec_%s')", b64);
    if (cc_pg_run(pg, sql, NULL)) return 1;
    int http = cc_harness_free_port(), admin = cc_harness_free_port();
    char v[64];
    snprintf(v, sizeof v, "%d", http);
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    char rpc[64];
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", rpc, 1);
    setenv("CC_LOG_LEVEL", "warn", 1);
    pid_t os = cc_harness_spawn(h, "order-sync", NULL);
    if (!cc_harness_wait_http(admin, "/healthz", 20000)) {
        fprintf(stderr, "order-sync bench: order-sync not healthy\n");
        return 1;
    }

    os_ingest_result_t in;
    os_bench_ingest(http, "bench", key, sizeof key, s_window, s_seconds, "bo", &in);
    char *per_batch = NULL;
    cc_harness_http_get(admin, "/metrics", &per_batch);
    double batches = 0, events = 0;
    for (char *line = per_batch ? strtok(per_batch, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        sscanf(line, "order_sync_batches_total %lf", &batches);
        sscanf(line, "order_sync_batch_events_total %lf", &events);
    }
    free(per_batch);
    double bound = os_bench_pgbench(db, s_pg_clients, s_seconds);

    printf("order_sync.orders_per_s %.0f orders/s\n", in.orders_per_s);
    printf("order_sync.pgbench_orders_per_s %.0f orders/s\n", bound);
    printf("order_sync.ratio %.2f ratio\n", bound > 0 ? in.orders_per_s / bound : 0);
    printf("order_sync.ingest_p50_ms %.2f ms\n", in.p50_ms);
    printf("order_sync.ingest_p99_ms %.2f ms\n", in.p99_ms);
    printf("order_sync.ingest_failures %llu webhooks\n", in.failed);
    printf("order_sync.events_per_commit %.1f events\n", batches > 0 ? events / batches : 0);
    printf("order_sync.window %d webhooks\n", s_window);
    fflush(stdout);

    int rc = os_bench_seed_lookups(pg, "bench", s_lookup_orders) == 0
             && os_bench_lookups(rpc, s_lookup_orders, s_seconds, s_lookup_window) == 0 ? 0 : 1;

    cc_harness_stop(h, os, SIGTERM, 10000);
    cc_pg_destroy(&pg);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    return rc;
}
