/* os_ops: order lookups and changes requested over the bus; one transaction
 * per request, events after its commit. */
#include "os_ops.h"
#include "os_lookup.h"
#include "os_outbox.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "commerce.pb-c.h"
#include "order.pb-c.h"
#include "order_ops.pb-c.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINES 50
#define MAX_QUANTITY 1000          /* per line: more is not a phone order */
#define MAX_EVENTS 128

struct _os_ops_t {
    cc_service_t *svc;
    cc_pg_t *pg;
    os_lookup_t *lookup;
};

static const struct { const char *name, *sql; } s_stmts[] = {
    { "op_order", "SELECT o.order_number, coalesce(c.external_id, ''), o.status, o.total_minor, o.currency, o.platform,"
                  " (extract(epoch FROM o.created_at) * 1e6)::bigint, (extract(epoch FROM o.updated_at) * 1e6)::bigint,"
                  " o.note, o.placed_via, coalesce(p.paid, 0), coalesce(s.carrier, ''), coalesce(s.tracking_number, ''),"
                  " o.platform_number"
                  " FROM commerce.orders o LEFT JOIN commerce.customers c ON c.id = o.customer_id"
                  " LEFT JOIN LATERAL (SELECT carrier, tracking_number FROM commerce.shipments"
                  "   WHERE order_number = o.order_number ORDER BY id DESC LIMIT 1) s ON true"
                  " LEFT JOIN LATERAL (SELECT sum(CASE kind WHEN 'refund' THEN -amount_minor ELSE amount_minor END) paid"
                  "   FROM commerce.payments WHERE order_number = o.order_number AND status = 'paid') p ON true"
                  " WHERE o.order_number = $1" },
    { "op_items", "SELECT line, sku, name, quantity, unit_minor, coalesce(warehouse_code, '') FROM commerce.order_items"
                  " WHERE order_number = $1 ORDER BY line" },
    { "op_lock", "SELECT status, platform, currency, total_minor FROM commerce.orders WHERE order_number = $1 FOR UPDATE" },
    { "op_transition", "SELECT 1 FROM commerce.status_transitions WHERE from_status = $1 AND to_status = $2" },
    { "op_set_status", "UPDATE commerce.orders SET status = $2, version = version + 1, updated_at = now()"
                       " WHERE order_number = $1" },
    { "op_audit", "INSERT INTO commerce.order_audit (order_number, from_status, to_status, by_whom, source, action, detail)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7)" },
    { "op_platform", "SELECT 1 FROM commerce.platforms WHERE name = $1" },
    { "op_customer", "SELECT c.id, c.platform FROM commerce.customers c WHERE ($2 = '' OR c.platform = $2)"
                     " AND (c.phone = $1 OR c.id IN (SELECT customer_id FROM commerce.customer_phones WHERE phone = $1))"
                     " ORDER BY c.id LIMIT 1" },
    { "op_customer_new", "INSERT INTO commerce.customers (platform, external_id, name, phone) VALUES ($1, 'tel:' || $2, $3, $2)"
                         " RETURNING id" },
    { "op_customers", "SELECT c.id, c.external_id, c.name, c.phone, c.email, c.category, c.platform,"
                      " coalesce((SELECT sum(delta) FROM commerce.points_ledger l WHERE l.customer_id = c.id), 0)"
                      " FROM commerce.customers c WHERE c.phone = $1 OR c.id IN"
                      " (SELECT customer_id FROM commerce.customer_phones WHERE phone = $1) ORDER BY c.id LIMIT 20" },
    { "op_product", "SELECT name, price_minor, currency, status, specification::text FROM commerce.products WHERE code = $1" },
    { "op_product_stock", "SELECT s.warehouse_code, s.on_hand, s.reserved FROM commerce.stock s"
                          " WHERE s.product_code = $1 ORDER BY s.warehouse_code" },
    { "op_available", "SELECT coalesce(max(s.on_hand - s.reserved), 0) FROM commerce.stock s"
                      " JOIN commerce.warehouses w ON w.code = s.warehouse_code"
                      " WHERE s.product_code = $1 AND w.active AND ($2 = '' OR s.warehouse_code = $2)" },
    { "op_reserve", "UPDATE commerce.stock SET reserved = reserved + $2::int, version = version + 1, updated_at = now()"
                    " WHERE product_code = $1 AND on_hand - reserved >= $2::int AND warehouse_code ="
                    " (SELECT s.warehouse_code FROM commerce.stock s JOIN commerce.warehouses w ON w.code = s.warehouse_code"
                    "  WHERE s.product_code = $1 AND w.active AND ($3 = '' OR s.warehouse_code = $3)"
                    "  AND s.on_hand - s.reserved >= $2::int ORDER BY s.on_hand - s.reserved DESC, s.warehouse_code LIMIT 1)"
                    " RETURNING warehouse_code, on_hand, reserved" },
    { "op_unreserve", "UPDATE commerce.stock SET reserved = reserved - $3::int,"
                      " on_hand = on_hand - CASE WHEN $4 = 'out' THEN $3::int ELSE 0 END,"
                      " version = version + 1, updated_at = now()"
                      " WHERE product_code = $1 AND warehouse_code = $2 RETURNING on_hand, reserved" },
    { "op_movement", "INSERT INTO commerce.stock_movements (product_code, kind, from_warehouse, quantity, reason,"
                     " order_number, by_whom) VALUES ($1, $2, $3, $4::int, $5, $6, $7)" },
    { "op_reserved_items", "SELECT line, sku, warehouse_code, reserved FROM commerce.order_items"
                           " WHERE order_number = $1 AND reserved > 0 ORDER BY line FOR UPDATE" },
    { "op_items_unreserved", "UPDATE commerce.order_items SET reserved = 0 WHERE order_number = $1" },
    { "op_items_del", "DELETE FROM commerce.order_items WHERE order_number = $1" },
    { "op_order_new", "INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency,"
                      " version, placed_via, note, shipping_address) VALUES ('TEL-' || nextval('commerce.phone_order_seq'),"
                      " $1, $2::bigint, 'ordered', 0, $3, 1, 'phone', $4, $5::jsonb) RETURNING order_number" },
    { "op_item_new", "INSERT INTO commerce.order_items (order_number, line, sku, name, quantity, unit_minor,"
                     " warehouse_code, reserved) VALUES ($1, $2::int, $3, $4, $5::int, $6::bigint, $7, $5::int)" },
    { "op_total", "UPDATE commerce.orders SET total_minor = (SELECT coalesce(sum(quantity * unit_minor), 0)"
                  " FROM commerce.order_items WHERE order_number = $1), note = coalesce($2, note), version = version + 1,"
                  " updated_at = now() WHERE order_number = $1" },
    { "op_shipment_new", "INSERT INTO commerce.shipments (order_number, platform, warehouse_code, carrier, fee_minor,"
                         " currency) SELECT o.order_number, o.platform, (SELECT warehouse_code FROM commerce.order_items"
                         " WHERE order_number = o.order_number AND warehouse_code IS NOT NULL ORDER BY line LIMIT 1),"
                         " $2, $3::bigint, o.currency FROM commerce.orders o WHERE o.order_number = $1 RETURNING id,"
                         " coalesce(warehouse_code, '')" },
    { "op_shipment_items", "INSERT INTO commerce.shipment_items (shipment_id, line, quantity)"
                           " SELECT $1::bigint, line, quantity FROM commerce.order_items WHERE order_number = $2" },
    { "op_shipment_go", "UPDATE commerce.shipments SET status = 'in_transit', tracking_number = $2, shipped_at = now(),"
                        " version = version + 1, updated_at = now() WHERE id = (SELECT max(id) FROM commerce.shipments"
                        " WHERE order_number = $1 AND status = 'pending') RETURNING id, carrier, coalesce(warehouse_code, '')" },
    { "op_shipment_cancel", "UPDATE commerce.shipments SET status = 'cancelled', version = version + 1, updated_at = now()"
                            " WHERE order_number = $1 AND status = 'pending' RETURNING id" },
    { "op_paid", "SELECT coalesce(sum(CASE kind WHEN 'refund' THEN -amount_minor ELSE amount_minor END), 0)"
                 " FROM commerce.payments WHERE order_number = $1 AND status = 'paid'" },
    { "op_payment_new", "INSERT INTO commerce.payments (order_number, platform, method, amount_minor, currency, reference,"
                        " by_whom, paid_at) SELECT order_number, platform, $2, $3::bigint, currency, $4, $5, now()"
                        " FROM commerce.orders WHERE order_number = $1 RETURNING id" },
    { "op_receipt_new", "INSERT INTO commerce.receipts (payment_id, receipt_number, amount_minor)"
                        " VALUES ($1::bigint, 'RCP-' || $1, $2::bigint) RETURNING receipt_number" },
    { "op_item_get", "SELECT quantity, unit_minor FROM commerce.order_items WHERE order_number = $1 AND line = $2::int" },
    { "op_return_new", "INSERT INTO commerce.returns (return_number, order_number, kind, reason, refund_minor, by_whom,"
                       " source) VALUES ('RMA-' || nextval('commerce.return_number_seq'), $1, $2, $3, $4::bigint, $5, $6)"
                       " RETURNING id, return_number" },
    { "op_return_item", "INSERT INTO commerce.return_items (return_id, line, quantity, replacement_code,"
                        " replacement_warehouse, replacement_reserved) VALUES ($1::bigint, $2::int, $3::int, $4, $5,"
                        " coalesce($6::int, 0))" },
    { "op_replacements", "SELECT replacement_code, replacement_warehouse, replacement_reserved FROM commerce.return_items"
                         " WHERE return_id = $1::bigint AND replacement_reserved > 0 ORDER BY line" },
    { "op_return_lock", "SELECT r.id, r.order_number, r.kind, r.status, r.refund_minor FROM commerce.returns r"
                        " WHERE r.return_number = $1 FOR UPDATE" },
    { "op_return_lines", "SELECT i.sku, ri.quantity, coalesce(i.warehouse_code, ''),"
                         " EXISTS (SELECT 1 FROM commerce.products p WHERE p.code = i.sku)"
                         " FROM commerce.return_items ri JOIN commerce.returns r ON r.id = ri.return_id"
                         " JOIN commerce.order_items i ON i.order_number = r.order_number AND i.line = ri.line"
                         " WHERE ri.return_id = $1::bigint ORDER BY ri.line" },
    { "op_stock_in", "INSERT INTO commerce.stock (product_code, warehouse_code, on_hand) VALUES ($1, $2, $3::int)"
                     " ON CONFLICT (product_code, warehouse_code) DO UPDATE SET on_hand = commerce.stock.on_hand + $3::int,"
                     " version = commerce.stock.version + 1, updated_at = now() RETURNING on_hand, reserved" },
    { "op_movement_in", "INSERT INTO commerce.stock_movements (product_code, kind, to_warehouse, quantity, reason,"
                        " order_number, by_whom) VALUES ($1, 'in', $2, $3::int, $4, $5, $6)" },
    { "op_return_set", "UPDATE commerce.returns SET status = $2, updated_at = now() WHERE id = $1::bigint" },
    { "op_refund_new", "INSERT INTO commerce.payments (order_number, platform, method, kind, amount_minor, currency,"
                       " reference, by_whom, paid_at) SELECT order_number, platform, 'other', 'refund', $2::bigint,"
                       " currency, $3, $4, now() FROM commerce.orders WHERE order_number = $1" },
    { "op_warehouse", "SELECT 1 FROM commerce.warehouses WHERE code = $1 AND active" },
    { "op_customer_id", "SELECT id FROM commerce.customers c WHERE c.phone = $1 OR c.id IN"
                        " (SELECT customer_id FROM commerce.customer_phones WHERE phone = $1) ORDER BY c.id LIMIT 1" },
    { "op_customer_by_id", "SELECT c.id, c.external_id, c.name, c.phone, c.email, c.category, c.platform, 0"
                           " FROM commerce.customers c WHERE c.id = $1::bigint" },
    { "op_shipment_get", "SELECT carrier, tracking_number, status, coalesce(warehouse_code, ''), fee_minor FROM commerce.shipments"
                         " WHERE id = $1::bigint" },
    { "op_subscribe", "INSERT INTO commerce.subscriptions (customer_id, kind, product_code, channel)"
                      " VALUES ($1::bigint, 'back_in_stock', $2, $3) ON CONFLICT DO NOTHING RETURNING id" },
};

/* ---- one request's transaction, and what to publish once it commits ---- */

typedef struct {
    char sku[65], warehouse[33];
    long long on_hand, reserved;
} s_stock_ev_t;

typedef struct {
    os_ops_t *ops;
    cc_pg_t *pg;
    const char *source;          /* the calling instance: the audit's "from where" */
    Cc__Status status;
    char why[256];
    s_stock_ev_t stock[MAX_EVENTS];
    int nstock;
    long long new_customer;      /* customer.updated for it */
    long long shipment;          /* shipment.updated for it */
    const char *shipment_previous;
    const char *by;
} s_tx_t;

static int
s_fail(s_tx_t *tx, Cc__Status status, const char *fmt, ...)
{
    if (tx->status != CC__STATUS__STATUS_OK) return -1;   /* the first reason wins */
    tx->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tx->why, sizeof tx->why, fmt, ap);
    va_end(ap);
    return -1;
}

/* Runs a statement; a failure sets the request's error (a value out of range
 * is the caller's fault, anything else the storage's). */
static int
s_db_failed(s_tx_t *tx, const char *name)
{
    const char *state = cc_pg_sqlstate(tx->pg);
    if (strcmp(state, "23514") == 0 || strcmp(state, "22001") == 0 || strcmp(state, "22003") == 0
        || strcmp(state, "22P02") == 0)
        return s_fail(tx, CC__STATUS__STATUS_BAD_REQUEST, "a value is out of range");
    if (strcmp(state, "23505") == 0 || strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
        return s_fail(tx, CC__STATUS__STATUS_CONFLICT, "changed at the same time by someone else; try again");
    CC_ERROR("order change not stored", "statement=%s error=\"%s\"", name, cc_pg_error(tx->pg));
    return s_fail(tx, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable; retry later");
}

static int
s_db(s_tx_t *tx, const char *name, int n, const char *const *p, PGresult **res)
{
    if (res) *res = NULL;
    return cc_pg_exec(tx->pg, name, n, p, res) ? s_db_failed(tx, name) : 0;
}

/* Queues the push of the change to the platform, in the transaction. */
static int
s_push(s_tx_t *tx, const char *type, const char *number, const char *extra_json)
{
    return os_outbox_put(tx->pg, type, number, extra_json) ? s_db_failed(tx, "ob_put") : 0;
}

static const char *
s_by(const char *by, const Cc__Request *req)
{
    return by && *by ? by : req->source;
}

static int
s_begin(s_tx_t *tx, os_ops_t *ops, const Cc__Request *req)
{
    memset(tx, 0, sizeof *tx);
    tx->ops = ops;
    tx->pg = ops->pg;
    tx->source = req->source[0] ? req->source : "bus";
    if (cc_pg_begin(tx->pg)) {
        CC_ERROR("order change not started", "error=\"%s\"", cc_pg_error(tx->pg));
        return s_fail(tx, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable; retry later");
    }
    return 0;
}

/* Locks the order; fills status (16), platform (65), currency (4). */
static int
s_lock(s_tx_t *tx, const char *number, char *status, char *platform, char *currency)
{
    if (!number || !*number || strlen(number) > 64) return s_fail(tx, CC__STATUS__STATUS_BAD_REQUEST, "want an order number");
    PGresult *res;
    const char *p[] = { number };
    if (s_db(tx, "op_lock", 1, p, &res)) return -1;
    int found = PQntuples(res) == 1;
    if (found) {
        snprintf(status, 16, "%s", PQgetvalue(res, 0, 0));
        snprintf(platform, 65, "%s", PQgetvalue(res, 0, 1));
        snprintf(currency, 4, "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return found ? 0 : s_fail(tx, CC__STATUS__STATUS_NOT_FOUND, "no order %s", number);
}

static int
s_audit(s_tx_t *tx, const char *number, const char *from, const char *to, const char *by, const char *action,
        const char *detail)
{
    const char *p[] = { number, from, to, by, tx->source, action, detail ? detail : "" };
    return s_db(tx, "op_audit", 7, p, NULL);
}

/* Moves the order from -> to when the status machine allows it, audited. */
static int
s_move(s_tx_t *tx, const char *number, const char *from, const char *to, const char *by, const char *action,
       const char *detail)
{
    PGresult *res;
    const char *t[] = { from, to };
    if (s_db(tx, "op_transition", 2, t, &res)) return -1;
    int allowed = PQntuples(res);
    PQclear(res);
    if (!allowed) return s_fail(tx, CC__STATUS__STATUS_CONFLICT, "status %s -> %s is not allowed", from, to);
    const char *p[] = { number, to };
    if (s_db(tx, "op_set_status", 2, p, NULL)) return -1;
    return s_audit(tx, number, from, to, by, action, detail);
}

static void
s_stock_ev(s_tx_t *tx, const char *sku, const char *warehouse, PGresult *res, int on_hand_col)
{
    if (tx->nstock == MAX_EVENTS) return;
    s_stock_ev_t *e = &tx->stock[tx->nstock++];
    snprintf(e->sku, sizeof e->sku, "%s", sku);
    snprintf(e->warehouse, sizeof e->warehouse, "%s", warehouse);
    e->on_hand = atoll(PQgetvalue(res, 0, on_hand_col));
    e->reserved = atoll(PQgetvalue(res, 0, on_hand_col + 1));
}

/* Takes back every reservation of the order: kind "release" (cancelled,
 * edited) or "out" (shipped: the goods leave the warehouse). */
static int
s_unreserve(s_tx_t *tx, const char *number, const char *kind, const char *by)
{
    PGresult *items;
    const char *p[] = { number };
    if (s_db(tx, "op_reserved_items", 1, p, &items)) return -1;
    for (int i = 0; i < PQntuples(items); i++) {
        const char *sku = PQgetvalue(items, i, 1), *wh = PQgetvalue(items, i, 2), *q = PQgetvalue(items, i, 3);
        const char *u[] = { sku, wh, q, kind };
        PGresult *res;
        if (s_db(tx, "op_unreserve", 4, u, &res)) break;
        if (PQntuples(res) == 1) s_stock_ev(tx, sku, wh, res, 0);
        PQclear(res);
        const char *m[] = { sku, kind, wh, q, strcmp(kind, "out") == 0 ? "shipped" : "order released", number, by };
        if (s_db(tx, "op_movement", 7, m, NULL)) break;
    }
    PQclear(items);
    if (tx->status != CC__STATUS__STATUS_OK) return -1;
    return s_db(tx, "op_items_unreserved", 1, p, NULL);
}

static int
s_check_lines(s_tx_t *tx, Cc__OrderLine **lines, size_t n)
{
    if (n == 0 || n > MAX_LINES) return s_fail(tx, CC__STATUS__STATUS_BAD_REQUEST, "an order has 1 to %d lines", MAX_LINES);
    for (size_t i = 0; i < n; i++) {
        if (!lines[i]->sku[0] || strlen(lines[i]->sku) > 64)
            return s_fail(tx, CC__STATUS__STATUS_BAD_REQUEST, "line %zu: want a sku", i + 1);
        if (lines[i]->quantity < 1 || lines[i]->quantity > MAX_QUANTITY)
            return s_fail(tx, CC__STATUS__STATUS_BAD_REQUEST, "line %zu: quantity %lld is not 1 to %d", i + 1,
                          (long long) lines[i]->quantity, MAX_QUANTITY);
    }
    return 0;
}

/* Writes the order's lines at the product's price, each with its stock
 * reserved (in warehouse, or wherever most is available). The order's
 * currency must be the products'. */
static int
s_put_lines(s_tx_t *tx, const char *number, const char *currency, Cc__OrderLine **lines, size_t n,
            const char *warehouse, const char *by)
{
    for (size_t i = 0; i < n; i++) {
        const char *sku = lines[i]->sku;
        PGresult *prod, *res;
        const char *ps[] = { sku };
        if (s_db(tx, "op_product", 1, ps, &prod)) return -1;
        if (PQntuples(prod) != 1) {
            PQclear(prod);
            return s_fail(tx, CC__STATUS__STATUS_BAD_REQUEST, "unknown sku %s", sku);
        }
        if (strcmp(PQgetvalue(prod, 0, 3), "active") != 0 || strcmp(PQgetvalue(prod, 0, 2), currency) != 0) {
            s_fail(tx, CC__STATUS__STATUS_CONFLICT, "%s is %s in %s, not for sale in %s", sku, PQgetvalue(prod, 0, 3),
                   PQgetvalue(prod, 0, 2), currency);
            PQclear(prod);
            return -1;
        }
        char q[24], line[16];
        snprintf(q, sizeof q, "%lld", (long long) lines[i]->quantity);
        snprintf(line, sizeof line, "%zu", i + 1);
        const char *r[] = { sku, q, warehouse };
        if (s_db(tx, "op_reserve", 3, r, &res)) {
            PQclear(prod);
            return -1;
        }
        if (PQntuples(res) != 1) {
            PQclear(res);
            const char *a[] = { sku, warehouse };
            if (s_db(tx, "op_available", 2, a, &res) == 0) {
                s_fail(tx, CC__STATUS__STATUS_CONFLICT, "not enough stock of %s%s%s: %s available, %s asked", sku,
                       *warehouse ? " in " : "", warehouse, PQgetvalue(res, 0, 0), q);
                PQclear(res);
            }
            PQclear(prod);
            return -1;
        }
        char wh[33];
        snprintf(wh, sizeof wh, "%s", PQgetvalue(res, 0, 0));
        s_stock_ev(tx, sku, wh, res, 1);
        PQclear(res);
        const char *it[] = { number, line, sku, PQgetvalue(prod, 0, 0), q, PQgetvalue(prod, 0, 1), wh };
        const char *m[] = { sku, "reserve", wh, q, "ordered by phone", number, by };
        int rc = s_db(tx, "op_item_new", 7, it, NULL) || s_db(tx, "op_movement", 7, m, NULL);
        PQclear(prod);
        if (rc) return -1;
    }
    return 0;
}

/* ---- replies and events ---- */

/* An order as the bus carries it; s_order_free releases it. */
typedef struct {
    PGresult *head, *items;
    Cc__Order order;
    Cc__Money total;
    Cc__OrderItem *iv;
    Cc__OrderItem **ip;
    Cc__Money *prices;
} s_order_t;

static Cc__OrderStatus
s_status(const char *name)
{
    static const char *names[] = { "", "ordered", "reviewed", "shipped", "delivered", "settled", "returned",
                                   "exchanged", "cancelled" };
    for (int k = 1; k < 9; k++) if (strcmp(name, names[k]) == 0) return (Cc__OrderStatus) k;
    return CC__ORDER_STATUS__ORDER_UNKNOWN;
}

/* Returns 0, CC_ENOTFOUND, or the cc_pg error. */
static int
s_order_load(cc_pg_t *pg, const char *number, s_order_t *o)
{
    memset(o, 0, sizeof *o);
    const char *p[] = { number };
    int rc = cc_pg_exec(pg, "op_order", 1, p, &o->head);
    if (rc) return rc;
    if (PQntuples(o->head) != 1) return CC_ENOTFOUND;
    if ((rc = cc_pg_exec(pg, "op_items", 1, p, &o->items))) return rc;
    PGresult *h = o->head;
    cc__order__init(&o->order);
    cc__money__init(&o->total);
    o->order.order_number = PQgetvalue(h, 0, 0);
    o->order.customer_id = PQgetvalue(h, 0, 1);
    o->order.status = s_status(PQgetvalue(h, 0, 2));
    o->total.minor = atoll(PQgetvalue(h, 0, 3));
    o->total.currency = PQgetvalue(h, 0, 4);
    o->order.total = &o->total;
    o->order.platform = PQgetvalue(h, 0, 5);
    o->order.created_us = atoll(PQgetvalue(h, 0, 6));
    o->order.updated_us = atoll(PQgetvalue(h, 0, 7));
    o->order.note = PQgetvalue(h, 0, 8);
    o->order.placed_via = PQgetvalue(h, 0, 9);
    o->order.paid_minor = atoll(PQgetvalue(h, 0, 10));
    o->order.carrier = PQgetvalue(h, 0, 11);
    o->order.tracking_number = PQgetvalue(h, 0, 12);
    o->order.platform_number = PQgetvalue(h, 0, 13);
    int n = PQntuples(o->items);
    o->iv = calloc((size_t) n + 1, sizeof *o->iv);
    o->ip = calloc((size_t) n + 1, sizeof *o->ip);
    o->prices = calloc((size_t) n + 1, sizeof *o->prices);
    if (!o->iv || !o->ip || !o->prices) abort();
    for (int i = 0; i < n; i++) {
        Cc__OrderItem *it = &o->iv[i];
        cc__order_item__init(it);
        cc__money__init(&o->prices[i]);
        it->line = (uint32_t) atoi(PQgetvalue(o->items, i, 0));
        it->sku = PQgetvalue(o->items, i, 1);
        it->name = PQgetvalue(o->items, i, 2);
        it->quantity = (uint32_t) atoi(PQgetvalue(o->items, i, 3));
        o->prices[i].minor = atoll(PQgetvalue(o->items, i, 4));
        o->prices[i].currency = o->total.currency;
        it->unit_price = &o->prices[i];
        it->warehouse = PQgetvalue(o->items, i, 5);
        o->ip[i] = it;
    }
    o->order.items = o->ip;
    o->order.n_items = (size_t) n;
    return 0;
}

static void
s_order_free(s_order_t *o)
{
    PQclear(o->head);
    PQclear(o->items);
    free(o->iv);
    free(o->ip);
    free(o->prices);
    memset(o, 0, sizeof *o);
}

static void
s_publish_stock(s_tx_t *tx)
{
    cc_bus_t *bus = cc_service_bus(tx->ops->svc);
    for (int i = 0; i < tx->nstock; i++) {
        Cc__StockChanged ev = CC__STOCK_CHANGED__INIT;
        ev.sku = tx->stock[i].sku;
        ev.warehouse = tx->stock[i].warehouse;
        ev.on_hand = tx->stock[i].on_hand;
        ev.reserved = tx->stock[i].reserved;
        cc_bus_publish_msg(bus, "stock.changed", ev.sku, &ev);
    }
}

static void
s_publish_customer(s_tx_t *tx)
{
    if (!tx->new_customer) return;
    char id[24];
    snprintf(id, sizeof id, "%lld", tx->new_customer);
    PGresult *res = NULL;
    const char *p[] = { id };
    if (cc_pg_exec(tx->pg, "op_customer_by_id", 1, p, &res) == 0 && PQntuples(res) == 1) {
        Cc__Customer c = CC__CUSTOMER__INIT;
        c.customer_id = PQgetvalue(res, 0, 1);
        c.name = PQgetvalue(res, 0, 2);
        c.phone = PQgetvalue(res, 0, 3);
        c.email = PQgetvalue(res, 0, 4);
        c.category = PQgetvalue(res, 0, 5);
        c.platform = PQgetvalue(res, 0, 6);
        Cc__CustomerUpdated ev = CC__CUSTOMER_UPDATED__INIT;
        ev.customer = &c;
        ev.by = (char *) tx->by;
        cc_bus_publish_msg(cc_service_bus(tx->ops->svc), "customer.updated", c.customer_id, &ev);
    }
    PQclear(res);
}

static void
s_publish_shipment(s_tx_t *tx, const Cc__Order *order)
{
    if (!tx->shipment) return;
    char id[24];
    snprintf(id, sizeof id, "%lld", tx->shipment);
    PGresult *res = NULL;
    const char *p[] = { id };
    if (cc_pg_exec(tx->pg, "op_shipment_get", 1, p, &res) == 0 && PQntuples(res) == 1) {
        Cc__Money fee = CC__MONEY__INIT;
        fee.minor = atoll(PQgetvalue(res, 0, 4));
        fee.currency = order->total->currency;
        Cc__Shipment sh = CC__SHIPMENT__INIT;
        sh.order_number = order->order_number;
        sh.carrier = PQgetvalue(res, 0, 0);
        sh.tracking_number = PQgetvalue(res, 0, 1);
        sh.status = PQgetvalue(res, 0, 2);
        sh.fee = &fee;
        sh.platform = order->platform;
        sh.shipment_id = id;
        Cc__ShipmentUpdated ev = CC__SHIPMENT_UPDATED__INIT;
        ev.shipment = &sh;
        ev.previous = (char *) tx->shipment_previous;
        ev.by = (char *) tx->by;
        cc_bus_publish_msg(cc_service_bus(tx->ops->svc), "shipment.updated", order->order_number, &ev);
    }
    PQclear(res);
}

/* Ends the request: rolls back and replies the error, or commits, replies
 * with the order (reply_msg NULL) or reply_msg, and publishes what changed.
 * event is "order.created" or "order.updated"; previous the old status. */
static void
s_end(s_tx_t *tx, cc_rpc_call_t *call, const char *number, const char *event, const char *previous, const char *by,
      const ProtobufCMessage *reply_msg)
{
    char who[65];   /* by may be the request's: gone once replied */
    snprintf(who, sizeof who, "%s", by ? by : "");
    by = who;
    tx->by = who;
    if (tx->status == CC__STATUS__STATUS_OK && cc_pg_commit(tx->pg)) {
        CC_ERROR("order change not committed", "order=%s error=\"%s\"", number, cc_pg_error(tx->pg));
        s_fail(tx, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable; retry later");
    }
    if (tx->status != CC__STATUS__STATUS_OK) {
        cc_pg_rollback(tx->pg);
        cc_rpc_reply(call, tx->status, tx->why, NULL, 0);
        return;
    }
    s_order_t o;
    int rc = s_order_load(tx->pg, number, &o);
    if (reply_msg) cc_rpc_reply_msg(call, reply_msg);
    else if (rc) cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, NULL, 0);   /* committed; the read-back failed */
    else cc_rpc_reply_msg(call, &o.order);
    if (rc == 0) {
        Cc__OrderUpdated ev = CC__ORDER_UPDATED__INIT;
        ev.order = &o.order;
        ev.previous = s_status(previous ? previous : "");
        ev.by = (char *) by;
        cc_bus_publish_msg(cc_service_bus(tx->ops->svc), event, number, &ev);
        s_publish_shipment(tx, &o.order);
    }
    s_publish_customer(tx);
    s_publish_stock(tx);
    s_order_free(&o);
}

static void
s_bad(cc_rpc_call_t *call, const char *what)
{
    cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, what, NULL, 0);
}

static bool
s_phone_ok(const char *phone)
{
    size_t n = strlen(phone);
    return n >= 3 && n <= 32 && strspn(phone, "+0123456789") == n;
}

/* ---- the requests ---- */

/* order.lookup: batched, on the thread pool (os_lookup). */
static void
s_lookup(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    os_lookup_request(self->lookup, call, req);
}

/* Shipping address as a JSON object text (caller frees), or NULL when a
 * field is too long. */
static char *
s_address_json(const Cc__Address *a)
{
    if (!a) return strdup("{}");
    const char *f[] = { a->name, a->phone, a->line1, a->line2, a->city, a->province, a->postal_code, a->country };
    for (size_t i = 0; i < 8; i++) if (strlen(f[i]) > 300) return NULL;
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", a->name, "phone", a->phone, "line1", a->line1,
                          "line2", a->line2, "city", a->city, "province", a->province, "postal_code", a->postal_code,
                          "country", a->country);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return t;
}

/* order.create: an order taken by phone, its stock reserved, TEL-<n>. */
static void
s_create(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__OrderCreate *m = cc__order_create__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want an OrderCreate");
        return;
    }
    s_tx_t tx;
    memset(&tx, 0, sizeof tx);
    char number[65] = "", currency[4] = "", platform[65] = "", cid[24] = "";
    char *address = s_address_json(m->shipping_address);
    const char *by = s_by(m->by, req);
    if (!s_phone_ok(m->phone)) s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "want the caller's phone number (digits)");
    else if (strlen(m->platform) > 64 || strlen(m->customer_name) > 200 || strlen(m->note) > 2000
             || strlen(m->warehouse) > 32 || strlen(by) > 64 || !address)
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "a field is too long");
    else s_check_lines(&tx, m->lines, m->n_lines);
    if (tx.status != CC__STATUS__STATUS_OK) {
        cc_rpc_reply(call, tx.status, tx.why, NULL, 0);
        goto done;
    }
    if (s_begin(&tx, self, req)) goto end;
    PGresult *res;
    if (m->platform[0]) {
        const char *pp[] = { m->platform };
        if (s_db(&tx, "op_platform", 1, pp, &res)) goto end;
        int known = PQntuples(res);
        PQclear(res);
        if (!known) {
            s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "unknown platform %s", m->platform);
            goto end;
        }
    }
    const char *cp[] = { m->phone, m->platform };
    if (s_db(&tx, "op_customer", 2, cp, &res)) goto end;
    if (PQntuples(res) == 1) {
        snprintf(cid, sizeof cid, "%s", PQgetvalue(res, 0, 0));
        snprintf(platform, sizeof platform, "%s", PQgetvalue(res, 0, 1));
        PQclear(res);
    } else {
        PQclear(res);
        if (!m->platform[0]) {
            s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "no customer with phone %s: name the platform to add one", m->phone);
            goto end;
        }
        snprintf(platform, sizeof platform, "%s", m->platform);
        const char *np[] = { platform, m->phone, m->customer_name };
        if (s_db(&tx, "op_customer_new", 3, np, &res)) goto end;
        snprintf(cid, sizeof cid, "%s", PQgetvalue(res, 0, 0));
        tx.new_customer = atoll(cid);
        PQclear(res);
    }
    /* The order's currency is its first product's; the others must match. */
    const char *fp[] = { m->lines[0]->sku };
    if (s_db(&tx, "op_product", 1, fp, &res)) goto end;
    if (PQntuples(res) != 1) {
        PQclear(res);
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "unknown sku %s", m->lines[0]->sku);
        goto end;
    }
    snprintf(currency, sizeof currency, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    const char *op[] = { platform, cid, currency, m->note, address };
    if (s_db(&tx, "op_order_new", 5, op, &res)) goto end;
    snprintf(number, sizeof number, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (s_put_lines(&tx, number, currency, m->lines, m->n_lines, m->warehouse, by)) goto end;
    const char *tp[] = { number, NULL };
    if (s_db(&tx, "op_total", 2, tp, NULL) || s_audit(&tx, number, NULL, "ordered", by, "create", "placed by phone"))
        goto end;
    s_push(&tx, "order.created", number, NULL);
end:
    if (tx.status == CC__STATUS__STATUS_OK) CC_INFO("order placed by phone", "order=%s by=%s lines=%zu", number, by, m->n_lines);
    s_end(&tx, call, number, "order.created", NULL, by, NULL);
done:
    free(address);
    cc__order_create__free_unpacked(m, NULL);
}

/* order.edit: new lines for an order still "ordered"; reservations redone. */
static void
s_edit(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__OrderEdit *m = cc__order_edit__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want an OrderEdit");
        return;
    }
    s_tx_t tx;
    char status[16] = "", platform[65], currency[4];
    const char *by = s_by(m->by, req);
    if (s_begin(&tx, self, req) || (m->n_lines && s_check_lines(&tx, m->lines, m->n_lines))
        || (strlen(m->note) > 2000 && s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "note over 2000 characters"))
        || s_lock(&tx, m->order_number, status, platform, currency))
        goto end;
    if (strcmp(status, "ordered") != 0) {
        s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "order %s is %s: only an order not yet reviewed can be edited",
               m->order_number, status);
        goto end;
    }
    const char *p[] = { m->order_number };
    if (m->n_lines && (s_unreserve(&tx, m->order_number, "release", by) || s_db(&tx, "op_items_del", 1, p, NULL)
                       || s_put_lines(&tx, m->order_number, currency, m->lines, m->n_lines, "", by)))
        goto end;
    const char *tp[] = { m->order_number, m->note[0] ? m->note : NULL };
    if (s_db(&tx, "op_total", 2, tp, NULL) || s_audit(&tx, m->order_number, status, status, by, "edit",
                                                      m->n_lines ? "lines replaced" : "note changed"))
        goto end;
    s_push(&tx, "order.updated", m->order_number, NULL);
end:
    s_end(&tx, call, m->order_number, "order.updated", status, by, NULL);
    cc__order_edit__free_unpacked(m, NULL);
}

/* Cancels a locked order (status from): stock released, audited, pushed. */
static int
s_cancel_locked(s_tx_t *tx, const char *number, const char *from, const char *by, const char *action, const char *reason)
{
    if (s_move(tx, number, from, "cancelled", by, action, reason) || s_unreserve(tx, number, "release", by)) return -1;
    /* A shipping note not yet shipped is void too. */
    PGresult *res;
    const char *sp[] = { number };
    if (s_db(tx, "op_shipment_cancel", 1, sp, &res)) return -1;
    if (PQntuples(res) > 0) {
        tx->shipment = atoll(PQgetvalue(res, 0, 0));
        tx->shipment_previous = "pending";
    }
    PQclear(res);
    json_t *j = json_pack("{s:s}", "reason", reason);
    char *extra = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    int rc = s_push(tx, "order.cancelled", number, extra);
    free(extra);
    return rc;
}

/* order.cancel */
static void
s_cancel(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__OrderCancel *m = cc__order_cancel__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want an OrderCancel");
        return;
    }
    s_tx_t tx;
    char status[16] = "", platform[65], currency[4];
    const char *by = s_by(m->by, req);
    if (s_begin(&tx, self, req) == 0 && strlen(m->reason) > 500) s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "reason over 500 characters");
    if (tx.status == CC__STATUS__STATUS_OK && s_lock(&tx, m->order_number, status, platform, currency) == 0)
        s_cancel_locked(&tx, m->order_number, status, by, "cancel", m->reason);
    s_end(&tx, call, m->order_number, "order.updated", status, by, NULL);
    cc__order_cancel__free_unpacked(m, NULL);
}

/* order.review: approved (a carrier assigned, the shipping note made) or
 * rejected (cancelled, stock released). */
static void
s_review(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__OrderReview *m = cc__order_review__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want an OrderReview");
        return;
    }
    s_tx_t tx;
    char status[16] = "", platform[65], currency[4];
    const char *by = s_by(m->by, req);
    if (s_begin(&tx, self, req)) goto end;
    if (m->reject && (!m->reason[0] || strlen(m->reason) > 500))
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "a rejection needs a reason (up to 500 characters)");
    else if (!m->reject && (!m->carrier[0] || strlen(m->carrier) > 64))
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "an approval names the carrier");
    else if (m->fee_minor < 0 || m->fee_minor > 100000000)
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "fee_minor out of range");
    if (tx.status != CC__STATUS__STATUS_OK || s_lock(&tx, m->order_number, status, platform, currency)) goto end;
    if (strcmp(status, "ordered") != 0) {
        s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "order %s is %s: only an ordered order is reviewed", m->order_number, status);
        goto end;
    }
    if (m->reject) {
        s_cancel_locked(&tx, m->order_number, status, by, "review", m->reason);
        goto end;
    }
    char fee[24], detail[96];
    snprintf(fee, sizeof fee, "%lld", (long long) m->fee_minor);
    snprintf(detail, sizeof detail, "carrier %s", m->carrier);
    PGresult *res;
    const char *sp[] = { m->order_number, m->carrier, fee };
    if (s_move(&tx, m->order_number, status, "reviewed", by, "review", detail)
        || s_db(&tx, "op_shipment_new", 3, sp, &res))
        goto end;
    tx.shipment = atoll(PQgetvalue(res, 0, 0));
    tx.shipment_previous = "";
    char sid[24];
    snprintf(sid, sizeof sid, "%lld", tx.shipment);
    PQclear(res);
    const char *ip[] = { sid, m->order_number };
    if (s_db(&tx, "op_shipment_items", 2, ip, NULL)) goto end;
    json_t *j = json_pack("{s:{s:s,s:I,s:s}}", "shipment", "carrier", m->carrier, "fee", (json_int_t) m->fee_minor,
                          "status", "pending");
    char *extra = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    s_push(&tx, "order.updated", m->order_number, extra);
    free(extra);
end:
    s_end(&tx, call, m->order_number, "order.updated", status, by, NULL);
    cc__order_review__free_unpacked(m, NULL);
}

/* order.ship: the reviewed order's parcel left: its reserved stock goes out. */
static void
s_ship(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__OrderShip *m = cc__order_ship__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want an OrderShip");
        return;
    }
    s_tx_t tx;
    char status[16] = "", platform[65], currency[4];
    const char *by = s_by(m->by, req);
    if (s_begin(&tx, self, req)) goto end;
    if (!m->tracking_number[0] || strlen(m->tracking_number) > 64)
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "want the tracking number (up to 64 characters)");
    if (tx.status != CC__STATUS__STATUS_OK || s_lock(&tx, m->order_number, status, platform, currency)) goto end;
    char detail[96];
    snprintf(detail, sizeof detail, "tracking %s", m->tracking_number);
    PGresult *res;
    const char *sp[] = { m->order_number, m->tracking_number };
    if (s_move(&tx, m->order_number, status, "shipped", by, "ship", detail)
        || s_db(&tx, "op_shipment_go", 2, sp, &res))
        goto end;
    if (PQntuples(res) != 1) {
        PQclear(res);
        s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "order %s has no shipping note to ship", m->order_number);
        goto end;
    }
    tx.shipment = atoll(PQgetvalue(res, 0, 0));
    tx.shipment_previous = "pending";
    json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "shipment", "carrier", PQgetvalue(res, 0, 1), "tracking_number",
                          m->tracking_number, "status", "in_transit");
    PQclear(res);
    char *extra = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s_unreserve(&tx, m->order_number, "out", by) == 0) s_push(&tx, "order.updated", m->order_number, extra);
    free(extra);
end:
    s_end(&tx, call, m->order_number, "order.updated", status, by, NULL);
    cc__order_ship__free_unpacked(m, NULL);
}

/* order.pay: a payment, at most what is still due. */
static void
s_pay(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__PaymentRecord *m = cc__payment_record__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want a PaymentRecord");
        return;
    }
    static const char *methods[] = { "card", "cash", "bank_transfer", "cash_on_delivery", "points", "wallet", "other", NULL };
    bool known = false;
    for (int i = 0; methods[i]; i++) known |= strcmp(m->method, methods[i]) == 0;
    s_tx_t tx;
    char status[16] = "", platform[65], currency[4];
    const char *by = s_by(m->by, req);
    Cc__PaymentRecorded out = CC__PAYMENT_RECORDED__INIT;
    if (s_begin(&tx, self, req)) goto end;
    if (!known) s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "unknown payment method '%s'", m->method);
    else if (m->amount_minor < 1 || m->amount_minor > 1000000000000LL)
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "amount_minor must be 1 to 10^12");
    else if (strlen(m->reference) > 128) s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "reference over 128 characters");
    if (tx.status != CC__STATUS__STATUS_OK || s_lock(&tx, m->order_number, status, platform, currency)) goto end;
    if (strcmp(status, "cancelled") == 0) {
        s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "order %s is cancelled", m->order_number);
        goto end;
    }
    PGresult *res;
    const char *p[] = { m->order_number };
    if (s_db(&tx, "op_paid", 1, p, &res)) goto end;
    long long paid = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (s_db(&tx, "op_lock", 1, p, &res)) goto end;
    long long total = atoll(PQgetvalue(res, 0, 3));
    PQclear(res);
    if (paid + m->amount_minor > total) {
        s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "order %s has %lld due, %lld offered", m->order_number, total - paid,
               (long long) m->amount_minor);
        goto end;
    }
    char amount[24], detail[160];
    snprintf(amount, sizeof amount, "%lld", (long long) m->amount_minor);
    snprintf(detail, sizeof detail, "%s %s %s", m->method, amount, currency);
    const char *np[] = { m->order_number, m->method, amount, m->reference, by };
    if (s_db(&tx, "op_payment_new", 5, np, &res)) goto end;
    out.payment_id = atoll(PQgetvalue(res, 0, 0));
    char pid[24], receipt[65];
    snprintf(pid, sizeof pid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    const char *rp[] = { pid, amount };
    if (s_db(&tx, "op_receipt_new", 2, rp, &res)) goto end;
    snprintf(receipt, sizeof receipt, "%s", PQgetvalue(res, 0, 0));
    out.receipt_number = receipt;
    PQclear(res);
    out.paid_minor = paid + m->amount_minor;
    out.due_minor = total - out.paid_minor;
    if (s_audit(&tx, m->order_number, status, status, by, "payment", detail)) goto end;
    json_t *j = json_pack("{s:{s:s,s:I,s:s}}", "payment", "method", m->method, "amount", (json_int_t) m->amount_minor,
                          "reference", m->reference);
    char *extra = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    s_push(&tx, "order.updated", m->order_number, extra);
    free(extra);
end:
    s_end(&tx, call, m->order_number, "order.updated", status, by, &out.base);
    cc__payment_record__free_unpacked(m, NULL);
}

/* order.return: a return or an exchange of some lines; the order becomes
 * returned or exchanged. */
static void
s_return(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__ReturnRegister *m = cc__return_register__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want a ReturnRegister");
        return;
    }
    s_tx_t tx;
    char status[16] = "", platform[65], currency[4], number[65] = "";
    const char *by = s_by(m->by, req);
    const char *kind = m->exchange ? "exchange" : "return";
    Cc__ReturnRegistered out = CC__RETURN_REGISTERED__INIT;
    json_t *lines = json_array();
    if (s_begin(&tx, self, req)) goto end;
    if (m->n_lines == 0 || m->n_lines > MAX_LINES) s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "name 1 to %d lines", MAX_LINES);
    else if (strlen(m->reason) > 500) s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "reason over 500 characters");
    if (tx.status != CC__STATUS__STATUS_OK || s_lock(&tx, m->order_number, status, platform, currency)) goto end;
    long long refund = 0;
    PGresult *res;
    for (size_t i = 0; i < m->n_lines; i++) {
        Cc__ReturnLine *l = m->lines[i];
        char line[16];
        snprintf(line, sizeof line, "%u", l->line);
        const char *p[] = { m->order_number, line };
        if (s_db(&tx, "op_item_get", 2, p, &res)) goto end;
        long long have = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : 0, unit = PQntuples(res) ? atoll(PQgetvalue(res, 0, 1)) : 0;
        PQclear(res);
        if (!have) {
            s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "order %s has no line %u", m->order_number, l->line);
            goto end;
        }
        if (l->quantity < 1 || l->quantity > have) {
            s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "line %u: quantity %lld is not 1 to %lld", l->line,
                   (long long) l->quantity, have);
            goto end;
        }
        if (m->exchange && l->replacement_sku[0]) {
            const char *ps[] = { l->replacement_sku };
            if (s_db(&tx, "op_product", 1, ps, &res)) goto end;
            int found = PQntuples(res);
            PQclear(res);
            if (!found) {
                s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "unknown sku %s", l->replacement_sku);
                goto end;
            }
        }
        if (!m->exchange) refund += unit * l->quantity;
        json_array_append_new(lines, json_pack("{s:i,s:I,s:s}", "line", (int) l->line, "quantity",
                                               (json_int_t) l->quantity, "replacement_sku", l->replacement_sku));
    }
    char refunds[24];
    snprintf(refunds, sizeof refunds, "%lld", refund);
    const char *rp[] = { m->order_number, kind, m->reason, refunds, by, tx.source };
    if (s_move(&tx, m->order_number, status, m->exchange ? "exchanged" : "returned", by, kind, m->reason)
        || s_db(&tx, "op_return_new", 6, rp, &res))
        goto end;
    char rid[24];
    snprintf(rid, sizeof rid, "%s", PQgetvalue(res, 0, 0));
    snprintf(number, sizeof number, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    for (size_t i = 0; i < m->n_lines; i++) {
        char line[16], q[24];
        snprintf(line, sizeof line, "%u", m->lines[i]->line);
        snprintf(q, sizeof q, "%lld", (long long) m->lines[i]->quantity);
        const char *repl = m->exchange && m->lines[i]->replacement_sku[0] ? m->lines[i]->replacement_sku : NULL;
        char wh[33] = "";
        if (repl) {   /* the replacement's stock is held for it, as for an order */
            const char *r[] = { repl, q, "" };
            if (s_db(&tx, "op_reserve", 3, r, &res)) goto end;
            if (PQntuples(res) != 1) {
                PQclear(res);
                s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "not enough stock of %s for the exchange", repl);
                goto end;
            }
            snprintf(wh, sizeof wh, "%s", PQgetvalue(res, 0, 0));
            s_stock_ev(&tx, repl, wh, res, 1);
            PQclear(res);
            const char *mv[] = { repl, "reserve", wh, q, number, m->order_number, by };
            if (s_db(&tx, "op_movement", 7, mv, NULL)) goto end;
        }
        const char *ip[] = { rid, line, q, repl, repl ? wh : NULL, repl ? q : NULL };
        if (s_db(&tx, "op_return_item", 6, ip, NULL)) goto end;
    }
    json_t *j = json_pack("{s:{s:s,s:s,s:s,s:I,s:O}}", "return", "number", number, "kind", kind, "reason", m->reason,
                          "refund", (json_int_t) refund, "lines", lines);
    char *extra = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    s_push(&tx, "order.returned", m->order_number, extra);
    free(extra);
end:
    json_decref(lines);
    s_order_t o;
    memset(&o, 0, sizeof o);
    bool ok = tx.status == CC__STATUS__STATUS_OK && cc_pg_commit(tx.pg) == 0;
    if (tx.status == CC__STATUS__STATUS_OK && !ok) s_fail(&tx, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable; retry later");
    if (!ok) {
        cc_pg_rollback(tx.pg);
        cc_rpc_reply(call, tx.status, tx.why, NULL, 0);
    } else {
        if (s_order_load(tx.pg, m->order_number, &o) == 0) {
            out.order = &o.order;
            Cc__OrderUpdated ev = CC__ORDER_UPDATED__INIT;
            ev.order = &o.order;
            ev.previous = s_status(status);
            ev.by = (char *) by;
            cc_bus_publish_msg(cc_service_bus(self->svc), "order.updated", m->order_number, &ev);
        }
        out.return_number = number;
        s_publish_stock(&tx);
        CC_INFO("return registered", "order=%s return=%s kind=%s by=%s", m->order_number, number, kind, by);
        cc_rpc_reply_msg(call, &out);
    }
    s_order_free(&o);
    cc__return_register__free_unpacked(m, NULL);
}

/* order.return_receive: the goods of a return or exchange are back: stock
 * in (movements "in"), the return received, a return's refund recorded. */
static void
s_return_receive(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__ReturnReceive *m = cc__return_receive__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want a ReturnReceive");
        return;
    }
    s_tx_t tx;
    char number[65] = "", rid[24] = "", kind[16] = "", status[16] = "", detail[128], ost[16] = "", opf[65], ocur[4];
    long long refund = 0;
    const char *by = s_by(m->by, req);
    PGresult *res = NULL;
    if (s_begin(&tx, self, req)) goto end;
    if (!m->return_number[0] || strlen(m->return_number) > 64 || strlen(m->warehouse) > 32) {
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "want a return number (and a warehouse code of up to 32)");
        goto end;
    }
    if (m->warehouse[0]) {
        const char *wp[] = { m->warehouse };
        if (s_db(&tx, "op_warehouse", 1, wp, &res)) goto end;
        int known = PQntuples(res);
        PQclear(res);
        if (!known) {
            s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "unknown warehouse %s", m->warehouse);
            goto end;
        }
    }
    const char *rp[] = { m->return_number };
    if (s_db(&tx, "op_return_lock", 1, rp, &res)) goto end;
    if (PQntuples(res) != 1) {
        PQclear(res);
        s_fail(&tx, CC__STATUS__STATUS_NOT_FOUND, "no return %s", m->return_number);
        goto end;
    }
    snprintf(rid, sizeof rid, "%s", PQgetvalue(res, 0, 0));
    snprintf(number, sizeof number, "%s", PQgetvalue(res, 0, 1));
    snprintf(kind, sizeof kind, "%s", PQgetvalue(res, 0, 2));
    snprintf(status, sizeof status, "%s", PQgetvalue(res, 0, 3));
    refund = atoll(PQgetvalue(res, 0, 4));
    PQclear(res);
    if (strcmp(status, "requested") != 0 && strcmp(status, "approved") != 0) {
        s_fail(&tx, CC__STATUS__STATUS_CONFLICT, "return %s is %s already", m->return_number, status);
        goto end;
    }
    const char *lp[] = { rid };
    PGresult *lines;
    if (s_db(&tx, "op_return_lines", 1, lp, &lines)) goto end;
    for (int i = 0; i < PQntuples(lines) && tx.status == CC__STATUS__STATUS_OK; i++) {
        const char *sku = PQgetvalue(lines, i, 0), *q = PQgetvalue(lines, i, 1);
        const char *wh = m->warehouse[0] ? m->warehouse : PQgetvalue(lines, i, 2);
        if (strcmp(PQgetvalue(lines, i, 3), "t") != 0 || !*wh) continue;   /* not a product we stock */
        const char *sp[] = { sku, wh, q };
        const char *mp[] = { sku, wh, q, m->return_number, number, by };
        if (s_db(&tx, "op_stock_in", 3, sp, &res)) break;
        s_stock_ev(&tx, sku, wh, res, 0);
        PQclear(res);
        s_db(&tx, "op_movement_in", 6, mp, NULL);
    }
    PQclear(lines);
    if (tx.status != CC__STATUS__STATUS_OK) goto end;
    if (strcmp(kind, "exchange") == 0) {   /* the replacement leaves with the goods received */
        PGresult *rep;
        if (s_db(&tx, "op_replacements", 1, lp, &rep)) goto end;
        for (int i = 0; i < PQntuples(rep) && tx.status == CC__STATUS__STATUS_OK; i++) {
            const char *sku = PQgetvalue(rep, i, 0), *wh = PQgetvalue(rep, i, 1), *q = PQgetvalue(rep, i, 2);
            const char *u[] = { sku, wh, q, "out" };
            if (s_db(&tx, "op_unreserve", 4, u, &res)) break;
            if (PQntuples(res) == 1) s_stock_ev(&tx, sku, wh, res, 0);
            PQclear(res);
            const char *mv[] = { sku, "out", wh, q, m->return_number, number, by };
            s_db(&tx, "op_movement", 7, mv, NULL);
        }
        PQclear(rep);
        if (tx.status != CC__STATUS__STATUS_OK) goto end;
    }
    bool refunds = strcmp(kind, "return") == 0 && refund > 0;
    char amount[24];
    snprintf(amount, sizeof amount, "%lld", refund);
    const char *up[] = { rid, refunds ? "refunded" : strcmp(kind, "exchange") == 0 ? "exchanged" : "received" };
    const char *fp[] = { number, amount, m->return_number, by };
    if (s_db(&tx, "op_return_set", 2, up, NULL) || (refunds && s_db(&tx, "op_refund_new", 4, fp, NULL))) goto end;
    if (s_lock(&tx, number, ost, opf, ocur)) goto end;
    snprintf(detail, sizeof detail, "%s received%s", m->return_number, refunds ? ", refunded" : "");
    if (s_audit(&tx, number, ost, ost, by, "return", detail)) goto end;
    json_t *j = json_pack("{s:{s:s,s:s,s:I}}", "return", "number", m->return_number, "status", up[1], "refund",
                          (json_int_t) (refunds ? refund : 0));
    char *extra = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    s_push(&tx, "order.updated", number, extra);
    free(extra);
end:
    s_end(&tx, call, number[0] ? number : m->return_number, "order.updated", ost[0] ? ost : NULL, by, NULL);
    cc__return_receive__free_unpacked(m, NULL);
}

/* customer.lookup: the phone's customers with their points balance. */
static void
s_customer(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__CustomerLookup *m = cc__customer_lookup__unpack(NULL, req->payload.len, req->payload.data);
    if (!m || !s_phone_ok(m->phone)) {
        s_bad(call, "want a phone number (digits)");
        if (m) cc__customer_lookup__free_unpacked(m, NULL);
        return;
    }
    PGresult *res = NULL;
    const char *p[] = { m->phone };
    if (cc_pg_exec(self->pg, "op_customers", 1, p, &res)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable", NULL, 0);
        cc__customer_lookup__free_unpacked(m, NULL);
        return;
    }
    int n = PQntuples(res);
    Cc__Customer *cv = calloc((size_t) n + 1, sizeof *cv), **cp = calloc((size_t) n + 1, sizeof *cp);
    if (!cv || !cp) abort();
    for (int i = 0; i < n; i++) {
        cc__customer__init(&cv[i]);
        cv[i].customer_id = PQgetvalue(res, i, 1);
        cv[i].name = PQgetvalue(res, i, 2);
        cv[i].phone = PQgetvalue(res, i, 3);
        cv[i].email = PQgetvalue(res, i, 4);
        cv[i].category = PQgetvalue(res, i, 5);
        cv[i].platform = PQgetvalue(res, i, 6);
        cv[i].points = atoll(PQgetvalue(res, i, 7));
        cp[i] = &cv[i];
    }
    Cc__CustomerList out = CC__CUSTOMER_LIST__INIT;
    out.customers = cp;
    out.n_customers = (size_t) n;
    if (n == 0) cc_rpc_reply(call, CC__STATUS__STATUS_NOT_FOUND, "no customer with this phone", NULL, 0);
    else cc_rpc_reply_msg(call, &out);
    free(cv);
    free(cp);
    PQclear(res);
    cc__customer_lookup__free_unpacked(m, NULL);
}

/* product.lookup: a product with its stock per warehouse. */
static void
s_product(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__ProductLookup *m = cc__product_lookup__unpack(NULL, req->payload.len, req->payload.data);
    if (!m || !m->sku[0] || strlen(m->sku) > 64) {
        s_bad(call, "want a sku");
        if (m) cc__product_lookup__free_unpacked(m, NULL);
        return;
    }
    PGresult *prod = NULL, *st = NULL;
    const char *p[] = { m->sku };
    if (cc_pg_exec(self->pg, "op_product", 1, p, &prod) || cc_pg_exec(self->pg, "op_product_stock", 1, p, &st)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable", NULL, 0);
    } else if (PQntuples(prod) != 1) {
        cc_rpc_reply(call, CC__STATUS__STATUS_NOT_FOUND, "no such product", NULL, 0);
    } else {
        int n = PQntuples(st);
        Cc__WarehouseStock *wv = calloc((size_t) n + 1, sizeof *wv), **wp = calloc((size_t) n + 1, sizeof *wp);
        if (!wv || !wp) abort();
        for (int i = 0; i < n; i++) {
            cc__warehouse_stock__init(&wv[i]);
            wv[i].warehouse = PQgetvalue(st, i, 0);
            wv[i].on_hand = atoll(PQgetvalue(st, i, 1));
            wv[i].reserved = atoll(PQgetvalue(st, i, 2));
            wv[i].available = wv[i].on_hand - wv[i].reserved;
            wp[i] = &wv[i];
        }
        Cc__Money price = CC__MONEY__INIT;
        price.minor = atoll(PQgetvalue(prod, 0, 1));
        price.currency = PQgetvalue(prod, 0, 2);
        Cc__Product out = CC__PRODUCT__INIT;
        out.sku = m->sku;
        out.name = PQgetvalue(prod, 0, 0);
        out.price = &price;
        out.status = PQgetvalue(prod, 0, 3);
        out.specification = PQgetvalue(prod, 0, 4);
        out.stock = wp;
        out.n_stock = (size_t) n;
        cc_rpc_reply_msg(call, &out);
        free(wv);
        free(wp);
    }
    PQclear(prod);
    PQclear(st);
    cc__product_lookup__free_unpacked(m, NULL);
}

/* product.subscribe: the phone's customer is told when the sku is back. */
static void
s_subscribe(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_ops_t *self = arg;
    Cc__StockSubscribe *m = cc__stock_subscribe__unpack(NULL, req->payload.len, req->payload.data);
    if (!m) {
        s_bad(call, "want a StockSubscribe");
        return;
    }
    const char *channel = m->channel[0] ? m->channel : "sms";
    s_tx_t tx;
    PGresult *res;
    if (s_begin(&tx, self, req)) goto end;
    if (!s_phone_ok(m->phone) || !m->sku[0] || strlen(m->sku) > 64)
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "want a sku and a phone number");
    else if (strcmp(channel, "sms") != 0 && strcmp(channel, "email") != 0 && strcmp(channel, "call") != 0)
        s_fail(&tx, CC__STATUS__STATUS_BAD_REQUEST, "channel is sms, email or call");
    if (tx.status != CC__STATUS__STATUS_OK) goto end;
    const char *pp[] = { m->sku }, *cp[] = { m->phone };
    if (s_db(&tx, "op_product", 1, pp, &res)) goto end;
    int found = PQntuples(res);
    PQclear(res);
    if (!found) {
        s_fail(&tx, CC__STATUS__STATUS_NOT_FOUND, "no product %s", m->sku);
        goto end;
    }
    if (s_db(&tx, "op_customer_id", 1, cp, &res)) goto end;
    char cid[24] = "";
    if (PQntuples(res)) snprintf(cid, sizeof cid, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!cid[0]) {
        s_fail(&tx, CC__STATUS__STATUS_NOT_FOUND, "no customer with phone %s", m->phone);
        goto end;
    }
    const char *sp[] = { cid, m->sku, channel };
    if (s_db(&tx, "op_subscribe", 3, sp, &res)) goto end;
    PQclear(res);   /* no row: already subscribed, which is what was asked */
end:
    if (tx.status == CC__STATUS__STATUS_OK && cc_pg_commit(tx.pg))
        s_fail(&tx, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable; retry later");
    if (tx.status != CC__STATUS__STATUS_OK) cc_pg_rollback(tx.pg);
    cc_rpc_reply(call, tx.status, tx.status == CC__STATUS__STATUS_OK ? NULL : tx.why, NULL, 0);
    cc__stock_subscribe__free_unpacked(m, NULL);
}

const cc_rpc_method_t os_ops_methods[] = {
    { "order.lookup", s_lookup, "OrderLookup -> OrderList: by order number, or a phone's orders (newest first)" },
    { "order.create", s_create, "OrderCreate -> Order: an order by phone (TEL-<n>), its stock reserved" },
    { "order.edit", s_edit, "OrderEdit -> Order: new lines or note while the order is not yet reviewed" },
    { "order.cancel", s_cancel, "OrderCancel -> Order: cancelled, its stock released" },
    { "order.review", s_review, "OrderReview -> Order: approved with a carrier and a shipping note, or rejected" },
    { "order.ship", s_ship, "OrderShip -> Order: shipped with a tracking number, its stock out of the warehouse" },
    { "order.pay", s_pay, "PaymentRecord -> PaymentRecorded: a payment, at most what is due" },
    { "order.return", s_return, "ReturnRegister -> ReturnRegistered: a return or an exchange of some lines" },
    { "order.return_receive", s_return_receive, "ReturnReceive -> Order: the goods back in stock, a return refunded" },
    { "customer.lookup", s_customer, "CustomerLookup -> CustomerList: a phone's customers with their points" },
    { "product.lookup", s_product, "ProductLookup -> Product: price, specification and stock per warehouse" },
    { "product.subscribe", s_subscribe, "StockSubscribe -> (empty): tell the customer when it is back in stock" },
    CC_RPC_METHODS_END
};

os_ops_t *
os_ops_new(cc_service_t *svc)
{
    os_ops_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->svc = svc;
    self->pg = cc_service_pg(svc);
    for (size_t i = 0; i < sizeof s_stmts / sizeof *s_stmts; i++) cc_pg_statement(self->pg, s_stmts[i].name, s_stmts[i].sql);
    os_outbox_statements(self->pg);
    cc_cfg_t *cfg = cc_service_cfg(svc);
    self->lookup = os_lookup_new(cc_service_loop(svc), cc_cfg_str(cfg, "DATABASE_URL"),
                                 (int) cc_cfg_int(cfg, "CC_RECONNECT_MS"),
                                 (int) cc_cfg_int(cfg, "ORDER_SYNC_LOOKUP_CONNECTIONS"), cc_service_metrics(svc));
    return self;
}

void
os_ops_drain(os_ops_t *self)
{
    if (self) os_lookup_drain(self->lookup);
}

void
os_ops_destroy(os_ops_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_lookup_destroy(&(*self_p)->lookup);
    free(*self_p);
    *self_p = NULL;
}
