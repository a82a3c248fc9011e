/* ops_test: agents' and the ivr's order requests over real bus sockets to a
 * real order-sync on a real PostgreSQL; the rows, the replies and the events
 * say what happened.
 *
 * order_by_phone_reserves_stock_audits_and_queues_its_push
 * bad_orders_get_a_clear_error_and_change_nothing
 * edit_redoes_the_reservations
 * review_assigns_a_carrier_or_rejects_and_releases
 * disallowed_transitions_are_refused
 * shipping_takes_the_stock_out
 * payments_up_to_what_is_due
 * returns_and_exchanges
 * customer_points_product_stock_and_lookups_by_phone
 * back_in_stock_subscription
 * concurrent_lookups_each_get_their_own_answer
 * two_instances_never_sell_more_than_is_in_stock
 * the_database_down_is_unavailable_then_served_again */
#define _GNU_SOURCE
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "commerce.pb-c.h"
#include "order.pb-c.h"
#include "order_ops.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

static cc_pg_t *s_pg;
static cc_harness_t *s_h;
static char s_rpc[64];
static cc_rpc_client_t *s_client;
static cc_bus_t *s_events;

static char *
s_one(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGresult *res = NULL;
    CHECK(cc_pg_run(s_pg, sql, &res) == 0, "%s: %s", sql, cc_pg_error(s_pg));
    char *v = strdup(PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return v;
}

#define EXPECT(want, ...) do { char *got_ = s_one(__VA_ARGS__); \
    CHECK(strcmp(got_, want) == 0, "gave '%s', want '%s'", got_, want); free(got_); } while (0)

/* Sends a request; returns the reply (caller frees). */
static Cc__Reply *
s_call(const char *method, const ProtobufCMessage *msg)
{
    uint8_t buf[8192];
    size_t len = protobuf_c_message_pack(msg, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(s_client, method, buf, len, 5000, &r) == 0, "%s answered", method);
    return r;
}

/* Expects status and a reason containing why; frees the reply. */
static void
s_refused(const char *method, const ProtobufCMessage *msg, Cc__Status status, const char *why)
{
    Cc__Reply *r = s_call(method, msg);
    CHECK(r->status == status && strstr(r->error, why), "%s: status %d '%s', want %d '%s'", method, r->status,
          r->error, status, why);
    cc__reply__free_unpacked(r, NULL);
}

static Cc__Order *
s_order_reply(const char *method, const ProtobufCMessage *msg)
{
    Cc__Reply *r = s_call(method, msg);
    CHECK(r->status == CC__STATUS__STATUS_OK, "%s: %s", method, r->error);
    Cc__Order *o = cc__order__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(o, "%s replies an Order", method);
    cc__reply__free_unpacked(r, NULL);
    return o;
}

/* The next event of type about trace (fails after 5 s); caller frees. */
static Cc__Envelope *
s_event(const char *type, const char *trace)
{
    for (int64_t end = cc_mono_ms() + 5000; cc_mono_ms() < end;) {
        Cc__Envelope *env;
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, type) == 0 && strcmp(env->trace_id, trace) == 0) return env;
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no %s event for %s", type, trace);
    return NULL;
}

static void
s_drain_events(void)
{
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 50) == 0) cc__envelope__free_unpacked(env, NULL);
}

/* A snapshot of what a refused request must leave as it was. */
static char *
s_state(void)
{
    return s_one("SELECT (SELECT count(*) FROM commerce.orders) || '/' || (SELECT count(*) FROM commerce.order_items)"
                 " || '/' || (SELECT count(*) FROM commerce.stock_movements) || '/' || (SELECT count(*) FROM commerce.outbox)"
                 " || '/' || (SELECT count(*) FROM commerce.order_audit) || '/' || (SELECT count(*) FROM commerce.customers)"
                 " || '/' || (SELECT string_agg(product_code || warehouse_code || on_hand || ':' || reserved, ','"
                 " ORDER BY product_code, warehouse_code) FROM commerce.stock)"
                 " || '/' || (SELECT string_agg(order_number || status || version, ',' ORDER BY order_number)"
                 " FROM commerce.orders) || '/' || (SELECT count(*) FROM commerce.payments)"
                 " || '/' || (SELECT count(*) FROM commerce.returns) || '/' || (SELECT count(*) FROM commerce.shipments)");
}

static Cc__Order *
s_create(const char *phone, const char *platform, const char *sku, long long qty, const char *sku2, long long qty2)
{
    Cc__OrderLine l1 = CC__ORDER_LINE__INIT, l2 = CC__ORDER_LINE__INIT, *lp[] = { &l1, &l2 };
    l1.sku = (char *) sku;
    l1.quantity = qty;
    l2.sku = (char *) sku2;
    l2.quantity = qty2;
    Cc__Address a = CC__ADDRESS__INIT;
    a.name = "Han Meimei";
    a.line1 = "1 Renmin Road";
    a.city = "Shanghai";
    a.country = "CN";
    Cc__OrderCreate m = CC__ORDER_CREATE__INIT;
    m.phone = (char *) phone;
    m.platform = (char *) platform;
    m.customer_name = "Han Meimei";
    m.lines = lp;
    m.n_lines = sku2 ? 2 : 1;
    m.shipping_address = &a;
    m.by = "agent-7";
    return s_order_reply("order.create", &m.base);
}

static char s_first[65];

static void
order_by_phone_reserves_stock_audits_and_queues_its_push(void)
{
    TEST_BEGIN(__func__);
    s_drain_events();
    Cc__Order *o = s_create("13800000001", "shop1", "TV-55", 3, "HDMI", 2);
    snprintf(s_first, sizeof s_first, "%s", o->order_number);
    CHECK(strcmp(o->order_number, "TEL-100001") == 0, "automatic number: %s", o->order_number);
    CHECK(o->status == CC__ORDER_STATUS__ORDER_ORDERED && o->total->minor == 3 * 12990 + 2 * 990
          && strcmp(o->total->currency, "CNY") == 0 && o->n_items == 2 && strcmp(o->placed_via, "phone") == 0,
          "the order as stored: total %lld", (long long) o->total->minor);
    /* WH2 has the most TV-55 available (8 of 10 vs 5). */
    CHECK(strcmp(o->items[0]->warehouse, "WH2") == 0 && o->items[0]->quantity == 3, "reserved where most is available");
    EXPECT("10:3,5:0", "SELECT string_agg(on_hand || ':' || reserved, ',' ORDER BY warehouse_code DESC) FROM commerce.stock"
                       " WHERE product_code = 'TV-55'");
    EXPECT("reserve TV-55 WH2 3,reserve HDMI WH1 2", "SELECT string_agg(kind || ' ' || product_code || ' ' || from_warehouse"
           " || ' ' || quantity, ',' ORDER BY id) FROM commerce.stock_movements WHERE order_number = '%s'", s_first);
    EXPECT("create ordered agent-7 ops_test", "SELECT action || ' ' || to_status || ' ' || by_whom || ' ' || source"
           " FROM commerce.order_audit WHERE order_number = '%s'", s_first);
    EXPECT("Han Meimei tel:13800000001", "SELECT name || ' ' || external_id FROM commerce.customers WHERE phone = '13800000001'");
    EXPECT("order.created ordered Shanghai", "SELECT type || ' ' || (body::jsonb #>> '{data,status}') || ' '"
           " || (body::jsonb #>> '{data,shipping_address,city}') FROM commerce.outbox WHERE subject = '%s'", s_first);
    Cc__Envelope *env = s_event("order.created", s_first);
    Cc__OrderUpdated *u = cc__order_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(u && u->order->n_items == 2 && strcmp(u->by, "agent-7") == 0, "order.created carries the order");
    cc__order_updated__free_unpacked(u, NULL);
    cc__envelope__free_unpacked(env, NULL);
    env = s_event("customer.updated", "tel:13800000001");
    Cc__CustomerUpdated *cu = cc__customer_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(cu && strcmp(cu->customer->phone, "13800000001") == 0 && strcmp(cu->customer->platform, "shop1") == 0,
          "customer.updated for the new customer");
    cc__customer_updated__free_unpacked(cu, NULL);
    cc__envelope__free_unpacked(env, NULL);
    env = s_event("stock.changed", "TV-55");
    Cc__StockChanged *sc = cc__stock_changed__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(sc && sc->on_hand == 10 && sc->reserved == 3 && strcmp(sc->warehouse, "WH2") == 0, "stock.changed");
    cc__stock_changed__free_unpacked(sc, NULL);
    cc__envelope__free_unpacked(env, NULL);
    cc__order__free_unpacked(o, NULL);
    TEST_PASS(__func__);
}

static void
bad_orders_get_a_clear_error_and_change_nothing(void)
{
    TEST_BEGIN(__func__);
    char *before = s_state();
    Cc__OrderLine l = CC__ORDER_LINE__INIT, ok = CC__ORDER_LINE__INIT, *lp[] = { &ok, &l };
    ok.sku = "HDMI";
    ok.quantity = 1;
    Cc__OrderCreate m = CC__ORDER_CREATE__INIT;
    m.phone = "13800000001";
    m.lines = lp;
    m.n_lines = 2;
    const struct { const char *sku; long long qty; Cc__Status st; const char *why; } cases[] = {
        { "NOPE-1", 1, CC__STATUS__STATUS_BAD_REQUEST, "unknown sku NOPE-1" },
        { "TV-55", -2, CC__STATUS__STATUS_BAD_REQUEST, "quantity -2" },
        { "TV-55", 0, CC__STATUS__STATUS_BAD_REQUEST, "quantity 0" },
        { "TV-55", 5000000000LL, CC__STATUS__STATUS_BAD_REQUEST, "quantity 5000000000" },
        { "TV-55", 9, CC__STATUS__STATUS_CONFLICT, "not enough stock of TV-55: 7 available, 9 asked" },
        { "'; DROP TABLE commerce.orders; --", 1, CC__STATUS__STATUS_BAD_REQUEST, "unknown sku" },
        { "OLD-1", 1, CC__STATUS__STATUS_CONFLICT, "OLD-1 is discontinued" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        l.sku = (char *) cases[i].sku;
        l.quantity = cases[i].qty;
        s_refused("order.create", &m.base, cases[i].st, cases[i].why);
    }
    l.sku = "TV-55";
    l.quantity = 1;
    m.phone = "call me";
    s_refused("order.create", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "phone number");
    m.phone = "13899999999";
    s_refused("order.create", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "name the platform");
    m.platform = "nosuchshop";
    s_refused("order.create", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "unknown platform nosuchshop");
    m.platform = "shop1";
    m.warehouse = "WH1";
    l.quantity = 6;
    s_refused("order.create", &m.base, CC__STATUS__STATUS_CONFLICT, "not enough stock of TV-55 in WH1: 5 available");
    m.warehouse = "";
    char note[2100];
    memset(note, 'x', sizeof note - 1);
    note[sizeof note - 1] = '\0';
    m.note = note;
    s_refused("order.create", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "too long");
    m.note = "";
    m.n_lines = 0;
    s_refused("order.create", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "1 to 50 lines");
    uint8_t junk[] = { 0xff, 0xff, 0xff };
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(s_client, "order.create", junk, sizeof junk, 5000, &r) == 0
          && r->status == CC__STATUS__STATUS_BAD_REQUEST, "garbage payload refused");
    cc__reply__free_unpacked(r, NULL);
    char *after = s_state();
    CHECK(strcmp(before, after) == 0, "nothing changed:\n%s\n%s", before, after);
    free(before);
    free(after);
    /* A note with SQL in it is a note. */
    m.n_lines = 1;
    lp[0] = &l;
    m.phone = "13800000001";
    m.note = "Robert'); DROP TABLE commerce.orders; --";
    Cc__Order *o = s_order_reply("order.create", &m.base);
    CHECK(strcmp(o->note, m.note) == 0, "note kept verbatim");
    Cc__OrderCancel c = CC__ORDER_CANCEL__INIT;
    c.order_number = o->order_number;
    cc__order__free_unpacked(s_order_reply("order.cancel", &c.base), NULL);
    cc__order__free_unpacked(o, NULL);
    TEST_PASS(__func__);
}

static void
edit_redoes_the_reservations(void)
{
    TEST_BEGIN(__func__);
    Cc__OrderLine l = CC__ORDER_LINE__INIT, *lp[] = { &l };
    l.sku = "HDMI";
    l.quantity = 4;
    Cc__OrderEdit m = CC__ORDER_EDIT__INIT;
    m.order_number = s_first;
    m.lines = lp;
    m.n_lines = 1;
    m.note = "leave at the door";
    Cc__Order *o = s_order_reply("order.edit", &m.base);
    CHECK(o->n_items == 1 && o->items[0]->quantity == 4 && o->total->minor == 4 * 990
          && strcmp(o->note, "leave at the door") == 0, "edited");
    cc__order__free_unpacked(o, NULL);
    EXPECT("0", "SELECT reserved FROM commerce.stock WHERE product_code = 'TV-55' AND warehouse_code = 'WH2'");
    EXPECT("4", "SELECT reserved FROM commerce.stock WHERE product_code = 'HDMI'");
    EXPECT("release TV-55 3,release HDMI 2,reserve HDMI 4", "SELECT string_agg(kind || ' ' || product_code || ' ' || quantity,"
           " ',' ORDER BY id) FROM commerce.stock_movements WHERE order_number = '%s' AND id > 2", s_first);
    EXPECT("edit", "SELECT action FROM commerce.order_audit WHERE order_number = '%s' ORDER BY id DESC LIMIT 1", s_first);
    EXPECT("order.created,order.updated", "SELECT string_agg(type, ',' ORDER BY id) FROM commerce.outbox WHERE subject = '%s'",
           s_first);
    l.quantity = 1000;
    char *before = s_state();
    s_refused("order.edit", &m.base, CC__STATUS__STATUS_CONFLICT, "not enough stock of HDMI");
    char *after = s_state();
    CHECK(strcmp(before, after) == 0, "a refused edit keeps the old lines and reservations");
    free(before);
    free(after);
    TEST_PASS(__func__);
}

static void
review_assigns_a_carrier_or_rejects_and_releases(void)
{
    TEST_BEGIN(__func__);
    s_drain_events();
    Cc__OrderReview m = CC__ORDER_REVIEW__INIT;
    m.order_number = s_first;
    s_refused("order.review", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "carrier");
    m.carrier = "SF Express";
    m.fee_minor = 1200;
    m.by = "supervisor-1";
    Cc__Order *o = s_order_reply("order.review", &m.base);
    CHECK(o->status == CC__ORDER_STATUS__ORDER_REVIEWED && strcmp(o->carrier, "SF Express") == 0, "reviewed");
    cc__order__free_unpacked(o, NULL);
    EXPECT("pending SF Express 1200 WH1 1", "SELECT s.status || ' ' || carrier || ' ' || fee_minor || ' ' || warehouse_code"
           " || ' ' || (SELECT count(*) FROM commerce.shipment_items i WHERE i.shipment_id = s.id)"
           " FROM commerce.shipments s WHERE order_number = '%s'", s_first);
    Cc__Envelope *env = s_event("shipment.updated", s_first);
    Cc__ShipmentUpdated *su = cc__shipment_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(su && strcmp(su->shipment->carrier, "SF Express") == 0 && strcmp(su->shipment->status, "pending") == 0,
          "shipment.updated");
    cc__shipment_updated__free_unpacked(su, NULL);
    cc__envelope__free_unpacked(env, NULL);

    /* Rejected: cancelled with the reason, its stock back. */
    Cc__Order *bad = s_create("13800000002", "shop1", "TV-55", 2, NULL, 0);
    EXPECT("2", "SELECT reserved FROM commerce.stock WHERE product_code = 'TV-55' AND warehouse_code = 'WH2'");
    Cc__OrderReview rj = CC__ORDER_REVIEW__INIT;
    rj.order_number = bad->order_number;
    rj.reject = true;
    s_refused("order.review", &rj.base, CC__STATUS__STATUS_BAD_REQUEST, "reason");
    rj.reason = "address does not exist";
    o = s_order_reply("order.review", &rj.base);
    CHECK(o->status == CC__ORDER_STATUS__ORDER_CANCELLED, "rejected order is cancelled");
    cc__order__free_unpacked(o, NULL);
    EXPECT("0", "SELECT reserved FROM commerce.stock WHERE product_code = 'TV-55' AND warehouse_code = 'WH2'");
    EXPECT("ordered>cancelled review address does not exist", "SELECT from_status || '>' || to_status || ' ' || action"
           " || ' ' || detail FROM commerce.order_audit WHERE order_number = '%s' ORDER BY id DESC LIMIT 1", bad->order_number);
    EXPECT("order.created,order.cancelled", "SELECT string_agg(type, ',' ORDER BY id) FROM commerce.outbox"
           " WHERE subject = '%s'", bad->order_number);
    EXPECT("address does not exist", "SELECT body::jsonb #>> '{data,reason}' FROM commerce.outbox WHERE subject = '%s'"
           " AND type = 'order.cancelled'", bad->order_number);
    cc__order__free_unpacked(bad, NULL);
    TEST_PASS(__func__);
}

static void
disallowed_transitions_are_refused(void)
{
    TEST_BEGIN(__func__);
    Cc__Order *o = s_create("13800000003", "shop1", "HDMI", 1, NULL, 0);
    char *before = s_state();
    Cc__OrderShip sh = CC__ORDER_SHIP__INIT;
    sh.order_number = o->order_number;
    sh.tracking_number = "SF100";
    s_refused("order.ship", &sh.base, CC__STATUS__STATUS_CONFLICT, "status ordered -> shipped is not allowed");
    Cc__ReturnLine rl = CC__RETURN_LINE__INIT, *rlp[] = { &rl };
    rl.line = 1;
    rl.quantity = 1;
    Cc__ReturnRegister rr = CC__RETURN_REGISTER__INIT;
    rr.order_number = o->order_number;
    rr.lines = rlp;
    rr.n_lines = 1;
    s_refused("order.return", &rr.base, CC__STATUS__STATUS_CONFLICT, "status ordered -> returned is not allowed");
    Cc__OrderCancel c = CC__ORDER_CANCEL__INIT;
    c.order_number = "TEL-999999";
    s_refused("order.cancel", &c.base, CC__STATUS__STATUS_NOT_FOUND, "no order TEL-999999");
    Cc__OrderReview rv = CC__ORDER_REVIEW__INIT;
    rv.order_number = s_first;   /* reviewed already */
    rv.carrier = "EMS";
    s_refused("order.review", &rv.base, CC__STATUS__STATUS_CONFLICT, "only an ordered order is reviewed");
    Cc__OrderEdit e = CC__ORDER_EDIT__INIT;
    e.order_number = s_first;
    e.note = "x";
    s_refused("order.edit", &e.base, CC__STATUS__STATUS_CONFLICT, "only an order not yet reviewed can be edited");
    char *after = s_state();
    CHECK(strcmp(before, after) == 0, "nothing changed:\n%s\n%s", before, after);
    free(before);
    free(after);
    c.order_number = o->order_number;
    cc__order__free_unpacked(s_order_reply("order.cancel", &c.base), NULL);
    s_refused("order.cancel", &c.base, CC__STATUS__STATUS_CONFLICT, "status cancelled -> cancelled is not allowed");
    cc__order__free_unpacked(o, NULL);
    /* Cancelled after its review: the shipping note is void, the stock back. */
    o = s_create("13800000003", "shop1", "HDMI", 2, NULL, 0);
    Cc__OrderReview rv2 = CC__ORDER_REVIEW__INIT;
    rv2.order_number = o->order_number;
    rv2.carrier = "EMS";
    cc__order__free_unpacked(s_order_reply("order.review", &rv2.base), NULL);
    s_drain_events();
    c.order_number = o->order_number;
    Cc__Order *x = s_order_reply("order.cancel", &c.base);
    CHECK(x->status == CC__ORDER_STATUS__ORDER_CANCELLED, "reviewed -> cancelled");
    cc__order__free_unpacked(x, NULL);
    EXPECT("cancelled", "SELECT status FROM commerce.shipments WHERE order_number = '%s'", o->order_number);
    EXPECT("0", "SELECT coalesce(sum(reserved), 0) FROM commerce.order_items WHERE order_number = '%s'", o->order_number);
    Cc__Envelope *env = s_event("shipment.updated", o->order_number);
    Cc__ShipmentUpdated *su = cc__shipment_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(su && strcmp(su->shipment->status, "cancelled") == 0 && strcmp(su->previous, "pending") == 0, "note void");
    cc__shipment_updated__free_unpacked(su, NULL);
    cc__envelope__free_unpacked(env, NULL);
    cc__order__free_unpacked(o, NULL);
    TEST_PASS(__func__);
}

static void
shipping_takes_the_stock_out(void)
{
    TEST_BEGIN(__func__);
    s_drain_events();
    Cc__OrderShip m = CC__ORDER_SHIP__INIT;
    m.order_number = s_first;
    s_refused("order.ship", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "tracking number");
    m.tracking_number = "SF1234567890";
    Cc__Order *o = s_order_reply("order.ship", &m.base);
    CHECK(o->status == CC__ORDER_STATUS__ORDER_SHIPPED && strcmp(o->tracking_number, "SF1234567890") == 0, "shipped");
    cc__order__free_unpacked(o, NULL);
    EXPECT("16:0", "SELECT on_hand || ':' || reserved FROM commerce.stock WHERE product_code = 'HDMI'");
    EXPECT("out WH1 4", "SELECT kind || ' ' || from_warehouse || ' ' || quantity FROM commerce.stock_movements"
           " WHERE order_number = '%s' ORDER BY id DESC LIMIT 1", s_first);
    EXPECT("in_transit SF1234567890 true", "SELECT status || ' ' || tracking_number || ' ' || (shipped_at IS NOT NULL)"
           " FROM commerce.shipments WHERE order_number = '%s'", s_first);
    EXPECT("SF1234567890", "SELECT body::jsonb #>> '{data,shipment,tracking_number}' FROM commerce.outbox"
           " WHERE subject = '%s' ORDER BY id DESC LIMIT 1", s_first);
    Cc__Envelope *env = s_event("shipment.updated", s_first);
    Cc__ShipmentUpdated *su = cc__shipment_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(su && strcmp(su->shipment->status, "in_transit") == 0 && strcmp(su->previous, "pending") == 0, "in transit");
    cc__shipment_updated__free_unpacked(su, NULL);
    cc__envelope__free_unpacked(env, NULL);
    env = s_event("stock.changed", "HDMI");
    Cc__StockChanged *sc = cc__stock_changed__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(sc && sc->on_hand == 16 && sc->reserved == 0, "stock.changed after shipping");
    cc__stock_changed__free_unpacked(sc, NULL);
    cc__envelope__free_unpacked(env, NULL);
    TEST_PASS(__func__);
}

static void
payments_up_to_what_is_due(void)
{
    TEST_BEGIN(__func__);
    Cc__PaymentRecord m = CC__PAYMENT_RECORD__INIT;
    m.order_number = s_first;
    m.method = "bitcoin";
    m.amount_minor = 100;
    s_refused("order.pay", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "unknown payment method");
    m.method = "card";
    m.amount_minor = -5;
    s_refused("order.pay", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "amount_minor");
    m.amount_minor = 1000;
    m.reference = "AUTH-1";
    Cc__Reply *r = s_call("order.pay", &m.base);
    CHECK(r->status == 0, "paid: %s", r->error);
    Cc__PaymentRecorded *p = cc__payment_recorded__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(p && p->paid_minor == 1000 && p->due_minor == 4 * 990 - 1000, "due after the payment");
    char want_receipt[40];
    snprintf(want_receipt, sizeof want_receipt, "RCP-%lld", (long long) p->payment_id);
    CHECK(strcmp(p->receipt_number, want_receipt) == 0, "receipt %s", p->receipt_number);
    EXPECT("receipt 1000", "SELECT kind || ' ' || amount_minor FROM commerce.receipts WHERE receipt_number = 'RCP-%lld'",
           (long long) p->payment_id);
    cc__payment_recorded__free_unpacked(p, NULL);
    cc__reply__free_unpacked(r, NULL);
    m.amount_minor = 3000;
    s_refused("order.pay", &m.base, CC__STATUS__STATUS_CONFLICT, "has 2960 due, 3000 offered");
    EXPECT("1 1000 card AUTH-1", "SELECT count(*) || ' ' || sum(amount_minor) || ' ' || min(method) || ' ' || min(reference)"
           " FROM commerce.payments WHERE order_number = '%s'", s_first);
    EXPECT("payment", "SELECT action FROM commerce.order_audit WHERE order_number = '%s' ORDER BY id DESC LIMIT 1", s_first);
    TEST_PASS(__func__);
}

static void
returns_and_exchanges(void)
{
    TEST_BEGIN(__func__);
    Cc__ReturnLine rl = CC__RETURN_LINE__INIT, *rlp[] = { &rl };
    rl.line = 1;
    rl.quantity = 5;
    Cc__ReturnRegister m = CC__RETURN_REGISTER__INIT;
    m.order_number = s_first;
    m.lines = rlp;
    m.n_lines = 1;
    m.reason = "one cable is broken";
    s_refused("order.return", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "quantity 5 is not 1 to 4");
    rl.line = 7;
    rl.quantity = 1;
    s_refused("order.return", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "has no line 7");
    rl.line = 1;
    Cc__Reply *r = s_call("order.return", &m.base);
    CHECK(r->status == 0, "return: %s", r->error);
    Cc__ReturnRegistered *rr = cc__return_registered__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(rr && strcmp(rr->return_number, "RMA-1") == 0 && rr->order->status == CC__ORDER_STATUS__ORDER_RETURNED,
          "RMA-1, order returned");
    cc__return_registered__free_unpacked(rr, NULL);
    cc__reply__free_unpacked(r, NULL);
    EXPECT("return requested 990 1", "SELECT kind || ' ' || status || ' ' || refund_minor || ' ' || (SELECT sum(quantity)"
           " FROM commerce.return_items i WHERE i.return_id = r.id) FROM commerce.returns r WHERE order_number = '%s'", s_first);
    EXPECT("order.returned RMA-1", "SELECT type || ' ' || (body::jsonb #>> '{data,return,number}') FROM commerce.outbox"
           " WHERE subject = '%s' ORDER BY id DESC LIMIT 1", s_first);
    /* The cable comes back: in stock again, refunded. */
    Cc__ReturnReceive rc = CC__RETURN_RECEIVE__INIT;
    rc.return_number = "RMA-404";
    s_refused("order.return_receive", &rc.base, CC__STATUS__STATUS_NOT_FOUND, "no return RMA-404");
    rc.return_number = "RMA-1";
    rc.warehouse = "WH9";
    s_refused("order.return_receive", &rc.base, CC__STATUS__STATUS_BAD_REQUEST, "unknown warehouse WH9");
    rc.warehouse = "";
    Cc__Order *back = s_order_reply("order.return_receive", &rc.base);
    CHECK(back->paid_minor == 1000 - 990, "refund deducted from what was paid: %lld", (long long) back->paid_minor);
    cc__order__free_unpacked(back, NULL);
    EXPECT("17:0", "SELECT on_hand || ':' || reserved FROM commerce.stock WHERE product_code = 'HDMI'");
    EXPECT("in WH1 1 RMA-1", "SELECT kind || ' ' || to_warehouse || ' ' || quantity || ' ' || reason FROM commerce.stock_movements"
           " WHERE order_number = '%s' ORDER BY id DESC LIMIT 1", s_first);
    EXPECT("refunded", "SELECT status FROM commerce.returns WHERE return_number = 'RMA-1'");
    EXPECT("refund 990", "SELECT kind || ' ' || amount_minor FROM commerce.payments WHERE order_number = '%s'"
           " ORDER BY id DESC LIMIT 1", s_first);
    s_refused("order.return_receive", &rc.base, CC__STATUS__STATUS_CONFLICT, "is refunded already");
    /* An exchange, on a delivered order. */
    Cc__Order *o = s_create("13800000004", "shop1", "TV-55", 1, NULL, 0);
    free(s_one("UPDATE commerce.orders SET status = 'delivered' WHERE order_number = '%s' RETURNING 1", o->order_number));
    Cc__ReturnLine xl = CC__RETURN_LINE__INIT, *xlp[] = { &xl };
    xl.line = 1;
    xl.quantity = 1;
    xl.replacement_sku = "NOPE";
    m.order_number = o->order_number;
    m.lines = xlp;
    m.exchange = true;
    s_refused("order.return", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "unknown sku NOPE");
    xl.replacement_sku = "TV-65";
    r = s_call("order.return", &m.base);
    CHECK(r->status == 0, "exchange: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    EXPECT("exchanged exchange TV-65", "SELECT o.status || ' ' || r.kind || ' ' || i.replacement_code FROM commerce.orders o"
           " JOIN commerce.returns r USING (order_number) JOIN commerce.return_items i ON i.return_id = r.id"
           " WHERE o.order_number = '%s'", o->order_number);
    /* The replacement is held for the exchange, and leaves when the old TV arrives. */
    EXPECT("3:1", "SELECT on_hand || ':' || reserved FROM commerce.stock WHERE product_code = 'TV-65'");
    EXPECT("reserve TV-65 WH1 1 RMA-2", "SELECT kind || ' ' || product_code || ' ' || from_warehouse || ' ' || quantity"
           " || ' ' || reason FROM commerce.stock_movements WHERE order_number = '%s' ORDER BY id DESC LIMIT 1", o->order_number);
    Cc__ReturnReceive xr = CC__RETURN_RECEIVE__INIT;
    xr.return_number = "RMA-2";
    cc__order__free_unpacked(s_order_reply("order.return_receive", &xr.base), NULL);
    EXPECT("2:0", "SELECT on_hand || ':' || reserved FROM commerce.stock WHERE product_code = 'TV-65'");
    EXPECT("exchanged", "SELECT status FROM commerce.returns WHERE return_number = 'RMA-2'");
    EXPECT("in TV-55 WH2,out TV-65 WH1", "SELECT string_agg(kind || ' ' || product_code || ' ' || coalesce(to_warehouse,"
           " from_warehouse), ',' ORDER BY id) FROM commerce.stock_movements WHERE order_number = '%s' AND reason = 'RMA-2'"
           " AND kind <> 'reserve'", o->order_number);
    /* Not enough of the replacement: nothing registered. */
    Cc__Order *o2 = s_create("13800000004", "shop1", "TV-55", 1, NULL, 0);
    free(s_one("UPDATE commerce.orders SET status = 'delivered' WHERE order_number = '%s' RETURNING 1", o2->order_number));
    xl.quantity = 1;
    m.order_number = o2->order_number;
    free(s_one("UPDATE commerce.stock SET reserved = on_hand WHERE product_code = 'TV-65' RETURNING 1"));
    s_refused("order.return", &m.base, CC__STATUS__STATUS_CONFLICT, "not enough stock of TV-65 for the exchange");
    EXPECT("0", "SELECT count(*) FROM commerce.returns WHERE order_number = '%s'", o2->order_number);
    free(s_one("UPDATE commerce.stock SET reserved = 0 WHERE product_code = 'TV-65' RETURNING 1"));
    cc__order__free_unpacked(o2, NULL);
    cc__order__free_unpacked(o, NULL);
    TEST_PASS(__func__);
}

static void
customer_points_product_stock_and_lookups_by_phone(void)
{
    TEST_BEGIN(__func__);
    free(s_one("INSERT INTO commerce.points_ledger (customer_id, delta, reason, ref) SELECT id, 500, 'purchase', 'o1'"
          " FROM commerce.customers WHERE phone = '13800000001' UNION ALL SELECT id, -120, 'redeem', 'r1'"
          " FROM commerce.customers WHERE phone = '13800000001' RETURNING 1"));
    Cc__CustomerLookup cl = CC__CUSTOMER_LOOKUP__INIT;
    cl.phone = "13800000001";
    Cc__Reply *r = s_call("customer.lookup", &cl.base);
    CHECK(r->status == 0, "customer.lookup: %s", r->error);
    Cc__CustomerList *c = cc__customer_list__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(c && c->n_customers == 1 && c->customers[0]->points == 380 && strcmp(c->customers[0]->name, "Han Meimei") == 0,
          "points balance 380");
    cc__customer_list__free_unpacked(c, NULL);
    cc__reply__free_unpacked(r, NULL);
    cl.phone = "13811111111";
    s_refused("customer.lookup", &cl.base, CC__STATUS__STATUS_NOT_FOUND, "no customer");
    cl.phone = "' OR 1=1 --";
    s_refused("customer.lookup", &cl.base, CC__STATUS__STATUS_BAD_REQUEST, "phone number");

    Cc__ProductLookup pl = CC__PRODUCT_LOOKUP__INIT;
    pl.sku = "TV-55";
    r = s_call("product.lookup", &pl.base);
    CHECK(r->status == 0, "product.lookup: %s", r->error);
    Cc__Product *p = cc__product__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(p && p->price->minor == 12990 && p->n_stock == 2 && strcmp(p->stock[0]->warehouse, "WH1") == 0
          && p->stock[0]->available == 5 && p->stock[1]->on_hand == 11 && p->stock[1]->available == 9
          && strstr(p->specification, "55"), "price and stock per warehouse");
    cc__product__free_unpacked(p, NULL);
    cc__reply__free_unpacked(r, NULL);
    pl.sku = "NOPE";
    s_refused("product.lookup", &pl.base, CC__STATUS__STATUS_NOT_FOUND, "no such product");

    Cc__OrderLookup ol = CC__ORDER_LOOKUP__INIT;
    ol.phone = "13800000001";
    r = s_call("order.lookup", &ol.base);
    CHECK(r->status == 0, "order.lookup");
    Cc__OrderList *l = cc__order_list__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(l && l->n_orders == 2 && strcmp(l->orders[1]->order_number, s_first) == 0
          && l->orders[1]->status == CC__ORDER_STATUS__ORDER_RETURNED && l->orders[1]->paid_minor == 10
          && strcmp(l->orders[1]->tracking_number, "SF1234567890") == 0 && l->orders[1]->n_items == 0,
          "the phone's orders, newest first, summed up");
    cc__order_list__free_unpacked(l, NULL);
    cc__reply__free_unpacked(r, NULL);
    ol.with_items = true;
    ol.limit = 1;
    r = s_call("order.lookup", &ol.base);
    l = r->status == 0 ? cc__order_list__unpack(NULL, r->payload.len, r->payload.data) : NULL;
    CHECK(l && l->n_orders == 1 && l->orders[0]->n_items == 1 && strcmp(l->orders[0]->items[0]->sku, "TV-55") == 0,
          "limit 1 with its items");
    cc__order_list__free_unpacked(l, NULL);
    cc__reply__free_unpacked(r, NULL);
    /* A second number of the same customer finds the same orders. */
    free(s_one("INSERT INTO commerce.customer_phones (customer_id, phone, kind) SELECT id, '02155550000', 'home'"
               " FROM commerce.customers WHERE phone = '13800000001' RETURNING 1"));
    ol.phone = "02155550000";
    ol.with_items = false;
    ol.limit = 0;
    r = s_call("order.lookup", &ol.base);
    l = r->status == 0 ? cc__order_list__unpack(NULL, r->payload.len, r->payload.data) : NULL;
    CHECK(l && l->n_orders == 2 && strcmp(l->orders[1]->order_number, s_first) == 0, "by the home number");
    cc__order_list__free_unpacked(l, NULL);
    cc__reply__free_unpacked(r, NULL);
    ol.phone = "";
    ol.order_number = s_first;
    r = s_call("order.lookup", &ol.base);
    l = r->status == 0 ? cc__order_list__unpack(NULL, r->payload.len, r->payload.data) : NULL;
    CHECK(l && l->n_orders == 1 && l->orders[0]->n_items == 1 && l->orders[0]->items[0]->quantity == 4
          && strcmp(l->orders[0]->carrier, "SF Express") == 0, "by number, in full");
    cc__order_list__free_unpacked(l, NULL);
    cc__reply__free_unpacked(r, NULL);
    ol.order_number = "NO\"PE\\";
    s_refused("order.lookup", &ol.base, CC__STATUS__STATUS_NOT_FOUND, "no such order");
    TEST_PASS(__func__);
}

/* ---- many lookups in flight at once: each gets its own answer ---- */

typedef struct { int *pending, *wrong; char want[65]; int want_n; cc_loop_t *loop; } s_flight_t;

static void
s_landed(void *arg, const Cc__Reply *reply)
{
    s_flight_t *f = arg;
    Cc__OrderList *l = reply->status == 0 ? cc__order_list__unpack(NULL, reply->payload.len, reply->payload.data) : NULL;
    bool ok = f->want_n == 0 ? reply->status == CC__STATUS__STATUS_NOT_FOUND
                             : l && (int) l->n_orders == f->want_n && strcmp(l->orders[0]->order_number, f->want) == 0;
    if (!ok && (*f->wrong)++ < 5)
        fprintf(stderr, "wrong: want %s x%d, got status %d '%s' n=%zu first=%s\n", f->want, f->want_n, reply->status,
                reply->error, l ? l->n_orders : 0, l && l->n_orders ? l->orders[0]->order_number : "-");
    cc__order_list__free_unpacked(l, NULL);
    if (--(*f->pending) == 0) cc_loop_stop(f->loop);
    free(f);
}

static void
concurrent_lookups_each_get_their_own_answer(void)
{
    TEST_BEGIN(__func__);
    free(s_one("INSERT INTO commerce.customers (platform, external_id, name, phone) SELECT 'shop1', 'lc' || g, 'L', '1570000' || lpad(g::text, 4, '0')"
          " FROM generate_series(1, 40) g RETURNING 1"));
    free(s_one("INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version, created_at)"
          " SELECT 'L' || g || '-' || k, 'shop1', c.id, 'ordered', 100, 'CNY', 1, now() - (k || ' minutes')::interval"
          " FROM generate_series(1, 40) g, generate_series(1, 1 + g %% 3) k JOIN commerce.customers c ON true"
          " WHERE c.external_id = 'lc' || g RETURNING 1"));
    cc_loop_t *loop = cc_loop_new();
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "ops_test_async", .retry_ms = 3000,
                               .max_attempts = 2 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    cc_rpc_client_attach(c, loop);
    int pending = 0, wrong = 0;
    for (int i = 0; i < 600; i++) {
        int g = 1 + i % 40;
        char number[32], phone[32];
        Cc__OrderLookup q = CC__ORDER_LOOKUP__INIT;
        s_flight_t *f = calloc(1, sizeof *f);
        f->pending = &pending;
        f->wrong = &wrong;
        f->loop = loop;
        if (i % 5 == 4) {
            snprintf(number, sizeof number, "L%d-9", g);           /* no such order */
            q.order_number = number;
        } else if (i % 2) {
            snprintf(number, sizeof number, "L%d-%d", g, 1 + i % (1 + g % 3));
            q.order_number = number;
            snprintf(f->want, sizeof f->want, "%s", number);
            f->want_n = 1;
        } else {
            snprintf(phone, sizeof phone, "1570000%04d", g);
            q.phone = phone;
            snprintf(f->want, sizeof f->want, "L%d-1", g);          /* the newest first */
            f->want_n = 1 + g % 3;
        }
        uint8_t buf[128];
        size_t len = cc__order_lookup__pack(&q, buf);
        pending++;
        cc_rpc_call(c, "order.lookup", NULL, buf, len, 10000, s_landed, f);
    }
    cc_loop_run(loop);
    CHECK(pending == 0 && wrong == 0, "%d of 600 lookups answered wrongly, %d unanswered", wrong, pending);
    cc_rpc_client_destroy(&c);
    cc_loop_destroy(&loop);
    TEST_PASS(__func__);
}

static void
back_in_stock_subscription(void)
{
    TEST_BEGIN(__func__);
    Cc__StockSubscribe m = CC__STOCK_SUBSCRIBE__INIT;
    m.sku = "TV-65";
    m.phone = "13800000001";
    for (int i = 0; i < 2; i++) {
        Cc__Reply *r = s_call("product.subscribe", &m.base);
        CHECK(r->status == 0, "subscribe: %s", r->error);
        cc__reply__free_unpacked(r, NULL);
    }
    EXPECT("1 back_in_stock sms", "SELECT count(*) || ' ' || min(kind) || ' ' || min(channel) FROM commerce.subscriptions"
           " WHERE product_code = 'TV-65'");
    m.sku = "NOPE";
    s_refused("product.subscribe", &m.base, CC__STATUS__STATUS_NOT_FOUND, "no product NOPE");
    m.sku = "TV-65";
    m.phone = "13811111111";
    s_refused("product.subscribe", &m.base, CC__STATUS__STATUS_NOT_FOUND, "no customer");
    m.phone = "13800000001";
    m.channel = "pigeon";
    s_refused("product.subscribe", &m.base, CC__STATUS__STATUS_BAD_REQUEST, "channel");
    TEST_PASS(__func__);
}

/* ---- two instances selling the last units at once ---- */

typedef struct { int *pending, *ok, *short_of, *other; cc_loop_t *loop; } s_sale_t;

static void
s_sold(void *arg, const Cc__Reply *reply)
{
    s_sale_t *s = arg;
    if (reply->status == CC__STATUS__STATUS_OK) (*s->ok)++;
    else if (reply->status == CC__STATUS__STATUS_CONFLICT && strstr(reply->error, "not enough stock of LAST-5")) (*s->short_of)++;
    else (*s->other)++;
    if (--(*s->pending) == 0) cc_loop_stop(s->loop);
    free(s);
}

static void
two_instances_never_sell_more_than_is_in_stock(void)
{
    TEST_BEGIN(__func__);
    free(s_one("INSERT INTO commerce.products (code, name, price_minor, currency) VALUES ('LAST-5', 'Last five', 500, 'CNY');"
               "INSERT INTO commerce.stock (product_code, warehouse_code, on_hand) VALUES ('LAST-5', 'WH1', 3), ('LAST-5', 'WH2', 2)"
               " RETURNING 1"));
    char v[16], rpc2[64];
    int admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", cc_harness_free_port());
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(rpc2, sizeof rpc2, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", rpc2, 1);
    pid_t os2 = cc_harness_spawn_as(s_h, "order-sync-2", "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "second instance healthy");
    cc_loop_t *loop = cc_loop_new();
    const char *eps[] = { s_rpc, rpc2 };
    cc_rpc_client_t *c[2];
    for (int i = 0; i < 2; i++) {
        cc_rpc_client_opts_t o = { .endpoint = eps[i], .source = "ops_test_sale", .retry_ms = 5000, .max_attempts = 1 };
        c[i] = cc_rpc_client_new(&o);
        cc_rpc_client_attach(c[i], loop);
    }
    int pending = 0, ok = 0, short_of = 0, other = 0;
    Cc__OrderLine l = CC__ORDER_LINE__INIT, *lp[] = { &l };
    l.sku = "LAST-5";
    l.quantity = 1;
    Cc__OrderCreate m = CC__ORDER_CREATE__INIT;
    m.phone = "13800000001";
    m.lines = lp;
    m.n_lines = 1;
    uint8_t buf[256];
    size_t len = cc__order_create__pack(&m, buf);
    for (int i = 0; i < 30; i++) {
        s_sale_t *s = calloc(1, sizeof *s);
        *s = (s_sale_t) { &pending, &ok, &short_of, &other, loop };
        pending++;
        cc_rpc_call(c[i % 2], "order.create", NULL, buf, len, 10000, s_sold, s);
    }
    cc_loop_run(loop);
    CHECK(ok == 5 && short_of == 25 && other == 0, "5 sold, 25 refused: %d sold, %d refused, %d other", ok, short_of, other);
    EXPECT("5:5", "SELECT sum(on_hand) || ':' || sum(reserved) FROM commerce.stock WHERE product_code = 'LAST-5'");
    EXPECT("5", "SELECT count(*) FROM commerce.stock_movements WHERE product_code = 'LAST-5' AND kind = 'reserve'");
    for (int i = 0; i < 2; i++) cc_rpc_client_destroy(&c[i]);
    cc_loop_destroy(&loop);
    CHECK(cc_harness_stop(s_h, os2, SIGTERM, 10000) == 0, "second instance stops cleanly");
    setenv("ORDER_SYNC_RPC", s_rpc, 1);
    TEST_PASS(__func__);
}

static void
the_database_down_is_unavailable_then_served_again(void)
{
    TEST_BEGIN(__func__);
    cc_harness_stop_pg(s_h);
    Cc__OrderLookup ol = CC__ORDER_LOOKUP__INIT;
    ol.order_number = s_first;
    s_refused("order.lookup", &ol.base, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable");
    ol.order_number = "";
    ol.phone = "13800000001";
    s_refused("order.lookup", &ol.base, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable");
    Cc__OrderCancel c = CC__ORDER_CANCEL__INIT;
    c.order_number = s_first;
    s_refused("order.cancel", &c.base, CC__STATUS__STATUS_UNAVAILABLE, "retry later");
    cc_harness_restart_pg(s_h);
    /* The first requests after the restart may still find the old connections gone. */
    Cc__Status st = CC__STATUS__STATUS_UNAVAILABLE;
    for (int i = 0; i < 20 && st != CC__STATUS__STATUS_OK; i++) {
        Cc__Reply *r = s_call("order.lookup", &ol.base);
        st = r->status;
        cc__reply__free_unpacked(r, NULL);
        if (st != CC__STATUS__STATUS_OK) cc_sleep_ms(100);
    }
    CHECK(st == CC__STATUS__STATUS_OK, "lookups served again after the restart: %d", st);
    ol.phone = "";
    ol.order_number = s_first;
    Cc__Reply *r = s_call("order.lookup", &ol.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "by number too: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("ops_test", "ops_test");
    cc_harness_t *h = s_h = cc_harness_new("order-ops");
    cc_harness_start_pg(h);
    cc_harness_start_forwarder(h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "order_sync", OS_SOURCE_DIR "/sql", NULL) == 0, "migrate");
    /* The platform's endpoint answers nothing: pushes wait in the outbox. */
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO commerce.platforms (name, secret, endpoint) VALUES ('shop1', 'whsec_AAAA', 'http://127.0.0.1:%d/');"
             "INSERT INTO commerce.warehouses (code, name) VALUES ('WH1', 'Main'), ('WH2', 'East');"
             "INSERT INTO commerce.products (code, name, price_minor, currency, specification, status) VALUES"
             " ('TV-55', 'TV 55 inch', 12990, 'CNY', '{\"size\": \"55 inch\"}', 'active'),"
             " ('HDMI', 'HDMI cable', 990, 'CNY', '{}', 'active'), ('TV-65', 'TV 65 inch', 19990, 'CNY', '{}', 'active'),"
             " ('OLD-1', 'Old TV', 100, 'CNY', '{}', 'discontinued');"
             "INSERT INTO commerce.stock (product_code, warehouse_code, on_hand) VALUES"
             " ('TV-55', 'WH1', 5), ('TV-55', 'WH2', 10), ('HDMI', 'WH1', 20), ('OLD-1', 'WH1', 5), ('TV-65', 'WH1', 3);",
             cc_harness_free_port());
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "shop: %s", cc_pg_error(s_pg));
    char v[16], *rpc = s_rpc;
    int admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", cc_harness_free_port());
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", rpc, 1);
    setenv("ORDER_SYNC_PUSH_BACKOFF_MS", "600000", 1);
    setenv("CC_RECONNECT_MS", "500", 1);     /* a request waits this long for the database, then UNAVAILABLE */
    pid_t os = cc_harness_spawn(h, "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "order-sync healthy");
    cc_bus_opts_t bo = { .service = "test", .instance = "ops", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "");
    cc_rpc_client_opts_t o = { .endpoint = rpc, .source = "ops_test", .retry_ms = 1000, .max_attempts = 3 };
    s_client = cc_rpc_client_new(&o);
    cc_sleep_ms(300);

    order_by_phone_reserves_stock_audits_and_queues_its_push();
    bad_orders_get_a_clear_error_and_change_nothing();
    edit_redoes_the_reservations();
    review_assigns_a_carrier_or_rejects_and_releases();
    disallowed_transitions_are_refused();
    shipping_takes_the_stock_out();
    payments_up_to_what_is_due();
    returns_and_exchanges();
    customer_points_product_stock_and_lookups_by_phone();
    back_in_stock_subscription();
    concurrent_lookups_each_get_their_own_answer();
    two_instances_never_sell_more_than_is_in_stock();
    the_database_down_is_unavailable_then_served_again();

    CHECK(cc_harness_stop(h, os, SIGTERM, 10000) == 0, "order-sync stops cleanly");
    cc_rpc_client_destroy(&s_client);
    cc_bus_destroy(&s_events);
    cc_pg_destroy(&s_pg);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("ops_test: 13 passed, 0 failed\n");
    return 0;
}
