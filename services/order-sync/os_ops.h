/* os_ops: order management on the bus, for agents and the ivr.
 *
 * Each request runs in one transaction on the loop's PostgreSQL connection:
 * the change, its audit rows, its stock movements and its push to the
 * platform (os_outbox_put) commit together or not at all. Events
 * (order.created, order.updated, shipment.updated, stock.changed,
 * customer.updated) are published after the commit. A bad request (unknown
 * sku, a negative or absurd quantity, not enough stock, a transition the
 * status machine refuses) gets BAD_REQUEST, NOT_FOUND or CONFLICT with the
 * reason, and changes nothing. */
#ifndef OS_OPS_H
#define OS_OPS_H

#include "cc/cc_rpc.h"
#include "cc/cc_service.h"

typedef struct _os_ops_t os_ops_t;

/* Registers its statements on the service's PostgreSQL connection; lookups
 * get connections of their own (os_lookup, ORDER_SYNC_LOOKUP_CONNECTIONS). */
os_ops_t *os_ops_new(cc_service_t *svc);
/* Answers the lookups still in flight (runs the loop until they are done);
 * call before the rpc server is destroyed. */
void os_ops_drain(os_ops_t *self);
void os_ops_destroy(os_ops_t **self_p);

/* The request table; every handler takes the os_ops_t as its arg. */
extern const cc_rpc_method_t os_ops_methods[];

#endif
