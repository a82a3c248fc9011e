/* order_sync_ingest: the webhook half of tools/bench order-sync: signed
 * Standard Webhooks carrying orders of five items, posted over keep-alive
 * HTTP connections, each counted when its 200 (sent after the commit) comes;
 * and pgbench's rate for the same shape of work on the same PostgreSQL. */
#ifndef ORDER_SYNC_INGEST_H
#define ORDER_SYNC_INGEST_H

#include <stddef.h>

typedef struct {
    double orders_per_s;
    unsigned long long accepted, failed;
    double p50_ms, p99_ms;
} os_ingest_result_t;

/* Posts to http://127.0.0.1:port/webhooks/platform, keeping window requests
 * in flight, for seconds (after one second of warm-up). key: the platform's
 * secret bytes. prefix makes the order numbers of this run unique. */
void os_bench_ingest(int port, const char *platform, const unsigned char *key, size_t keylen, int window,
                     int seconds, const char *prefix, os_ingest_result_t *out);

/* pgbench (clients connections, synchronous commit) running one order and
 * five items per transaction into commerce.orders on db_url. Returns
 * transactions per second, or 0 when pgbench failed (its output on stderr). */
double os_bench_pgbench(const char *db_url, int clients, int seconds);

#endif
