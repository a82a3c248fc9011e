/* os_lookup: order.lookup at bus speed.
 *
 * Requests that arrive during one turn of the loop are gathered into a batch;
 * a batch is answered by three queries (orders of the phones, the orders,
 * their items) on one of a few PostgreSQL connections of its own, run on
 * libuv's thread pool, so the loop keeps receiving and replying while the
 * database works, and several batches run at once. The replies are packed on
 * the pool thread and sent from the loop. */
#ifndef OS_LOOKUP_H
#define OS_LOOKUP_H

#include "cc/cc_loop.h"
#include "cc/cc_metrics.h"
#include "cc/cc_rpc.h"

typedef struct _os_lookup_t os_lookup_t;

/* connections: batches in flight at once (one connection each). */
os_lookup_t *os_lookup_new(cc_loop_t *loop, const char *db_url, int reconnect_ms, int connections,
                           cc_metrics_t *metrics);
/* Runs the loop until no batch is in flight; later requests are answered
 * UNAVAILABLE. Call before the rpc server is destroyed. */
void os_lookup_drain(os_lookup_t *self);
void os_lookup_destroy(os_lookup_t **self_p);

/* Handles one order.lookup request (OrderLookup -> OrderList): by order
 * number, or a phone's orders, newest first (limit 1..50, default 10). Bad
 * input is answered at once; the rest when its batch is done. */
void os_lookup_request(os_lookup_t *self, cc_rpc_call_t *call, const Cc__Request *req);

#endif
