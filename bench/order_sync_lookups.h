/* order_sync_lookups: the lookup half of tools/bench order-sync: agents' and
 * the ivr's order.lookup requests over the bus, by order number and by
 * phone, against orders of five items each. */
#ifndef ORDER_SYNC_LOOKUPS_H
#define ORDER_SYNC_LOOKUPS_H

#include "cc/cc_pg.h"

/* Adds orders (five items each, ORDERS / 4 customers with a phone each) to the
 * platform. Returns 0, or -1 with the error printed. */
int os_bench_seed_lookups(cc_pg_t *pg, const char *platform, int orders);

/* Keeps window lookups in flight on rpc for seconds (alternately by order
 * number and by phone), then prints order_sync.lookups_per_s,
 * order_sync.lookup_p50_ms, order_sync.lookup_p99_ms and
 * order_sync.lookup_failures. Returns 0, or -1 when no lookup succeeded. */
int os_bench_lookups(const char *rpc, int orders, int seconds, int window);

#endif
