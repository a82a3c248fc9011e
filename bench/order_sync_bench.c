/* order_sync_bench: tools/bench order-sync. Starts a private PostgreSQL, the
 * forwarder and order-sync, then measures the lookups (order_sync_lookups.c).
 * Prints "order_sync.<figure> <value> <unit>" lines. */
#include "cc_harness.h"
#include "order_sync_lookups.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"

#include <stdio.h>
#include <signal.h>
#include <stdlib.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

#define LOOKUP_ORDERS 20000

int
main(void)
{
    cc_log_init("order_sync_bench", "order_sync_bench");
    cc_log_set_level_name("warn");
    int seconds = getenv("BENCH_SECONDS") ? atoi(getenv("BENCH_SECONDS")) : 5;
    int window = getenv("BENCH_WINDOW") ? atoi(getenv("BENCH_WINDOW")) : 32;
    cc_harness_t *h = cc_harness_new("order-sync-bench");
    cc_harness_start_pg(h);
    cc_harness_start_forwarder(h, false, 100000);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    if (cc_pg_connect(pg) || cc_pg_migrate(pg, "order_sync", OS_SOURCE_DIR "/sql", NULL)
        || cc_pg_run(pg, "INSERT INTO commerce.platforms (name, secret) VALUES ('bench', 'whsec_AAAA')", NULL)) {
        fprintf(stderr, "bench: database set-up failed: %s\n", cc_pg_error(pg));
        return 1;
    }
    if (os_bench_seed_lookups(pg, "bench", LOOKUP_ORDERS)) return 1;
    char v[16], rpc[64];
    int admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", cc_harness_free_port());
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", rpc, 1);
    setenv("CC_LOG_LEVEL", "warn", 1);
    pid_t os = cc_harness_spawn(h, "order-sync", NULL);
    if (!cc_harness_wait_http(admin, "/healthz", 20000)) {
        fprintf(stderr, "bench: order-sync not healthy\n");
        return 1;
    }
    int rc = os_bench_lookups(rpc, LOOKUP_ORDERS, seconds, window) ? 1 : 0;
    cc_harness_stop(h, os, SIGTERM, 10000);
    cc_pg_destroy(&pg);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    return rc;
}
