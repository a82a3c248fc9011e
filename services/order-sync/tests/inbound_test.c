/* inbound_test: what the platforms send in, beyond the first cut: nothing
 * accepted is lost for want of a status, two shops may use the same order
 * numbers, customers inside orders are told, payments settle orders, Shopify
 * products with variants, exports on a kept connection. A real order-sync
 * against a real PostgreSQL; the rows and the bus events say what was kept.
 *
 * platform_status_that_would_move_back_applies_the_rest_and_keeps_the_status
 * two_shops_with_the_same_order_number_each_keep_theirs
 * customers_inside_orders_are_told_when_they_change
 * new_orders_of_a_batch_go_set_wise_and_tell_their_customers
 * payments_in_full_settle_a_delivered_order_partial_ones_do_not
 * shopify_products_with_variants_are_one_product_per_variant
 * exports_use_a_connection_kept_by_the_http_thread */
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

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

#define ACME_SECRET "shpss_acme_0f1e2d3c4b5a69788796a5b4"
#define BETA_SECRET "shpss_beta_a1b2c3d4e5f60718293a4b5c"
#define WOO_SECRET "woo-secret-inbound"

static int s_http;
static cc_pg_t *s_pg;
static unsigned char s_key[32];
static char s_rpc[64];
static cc_bus_t *s_events;

/* The next event of type about key (fails after 3 s); others are passed over.
 * The caller frees it. */
static Cc__Envelope *
s_event(const char *type, const char *key)
{
    int64_t end = cc_mono_ms() + 3000;
    while (cc_mono_ms() < end) {
        Cc__Envelope *env;
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, type) == 0 && strcmp(env->trace_id, key) == 0) return env;
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no %s event for %s", type, key);
    return NULL;
}

static Cc__OrderUpdated *
s_order_event(const char *type, const char *number)
{
    Cc__Envelope *env = s_event(type, number);
    Cc__OrderUpdated *u = cc__order_updated__unpack(NULL, env->payload.len, env->payload.data);
    cc__envelope__free_unpacked(env, NULL);
    CHECK(u && u->order, "%s payload", type);
    return u;
}

static Cc__CustomerUpdated *
s_customer_event(const char *id)
{
    Cc__Envelope *env = s_event("customer.updated", id);
    Cc__CustomerUpdated *u = cc__customer_updated__unpack(NULL, env->payload.len, env->payload.data);
    cc__envelope__free_unpacked(env, NULL);
    CHECK(u && u->customer, "customer.updated payload");
    return u;
}

static char *
s_one(const char *sql)
{
    PGresult *res = NULL;
    CHECK(cc_pg_run(s_pg, sql, &res) == 0, "%s: %s", sql, cc_pg_error(s_pg));
    char *v = strdup(PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return v;
}

static void
s_expect(const char *sql, const char *want)
{
    char *got = s_one(sql);
    CHECK(strcmp(got, want) == 0, "%s gave '%s', want '%s'", sql, got, want);
    free(got);
}

/* Standard Webhooks headers for body, signed with the shared test key. */
static void
s_sign(const char *event_id, const char *body, char *headers, size_t cap)
{
    char stamp[24], b64[64];
    snprintf(stamp, sizeof stamp, "%lld", (long long) time(NULL));
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    crypto_auth_hmacsha256_init(&st, s_key, sizeof s_key);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) event_id, strlen(event_id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) stamp, strlen(stamp));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(headers, cap, "webhook-id: %s\r\nwebhook-timestamp: %s\r\nwebhook-signature: v1,%s\r\n", event_id, stamp, b64);
}

/* Posts a Standard Webhook to /webhooks/<platform>; the HTTP status. */
static int
s_standard(const char *platform, const char *event_id, const char *body, char **reply)
{
    char headers[512], path[96];
    s_sign(event_id, body, headers, sizeof headers);
    snprintf(path, sizeof path, "/webhooks/%s", platform);
    return cc_harness_http_post(s_http, path, headers, body, reply);
}

static void
s_standard_code(const char *platform, const char *event_id, const char *body, int code, const char *want)
{
    char *reply = NULL;
    int st = s_standard(platform, event_id, body, &reply);
    CHECK(st == code && reply && strstr(reply, want), "%s: %d %s (want %d %s)", event_id, st, reply, code, want);
    free(reply);
}

/* Posts body signed with secret in sig_header (Shopify, WooCommerce). */
static int
s_body_signed(const char *path, const char *secret, const char *sig_header, const char *headers, const char *body,
              char **reply)
{
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *) secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    char b64[64], all[1024];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(all, sizeof all, "%s: %s\r\n%s", sig_header, b64, headers);
    return cc_harness_http_post(s_http, path, all, body, reply);
}

/* A Shopify webhook from shop ("acme" or "beta"). */
static int
s_shopify(const char *shop, const char *topic, const char *webhook_id, const char *body, char **reply)
{
    char h[512];
    snprintf(h, sizeof h, "X-Shopify-Topic: %s\r\nX-Shopify-Shop-Domain: %s-store.myshopify.com\r\n"
             "X-Shopify-Webhook-Id: %s\r\nX-Shopify-API-Version: 2024-01\r\n", topic, shop, webhook_id);
    return s_body_signed("/webhooks/shopify", strcmp(shop, "acme") == 0 ? ACME_SECRET : BETA_SECRET,
                         "X-Shopify-Hmac-Sha256", h, body, reply);
}

static void
s_shopify_ok(const char *shop, const char *topic, const char *webhook_id, const char *body, const char *want)
{
    char *reply = NULL;
    int st = s_shopify(shop, topic, webhook_id, body, &reply);
    CHECK(st == 200 && reply && strstr(reply, want), "%s %s: %d %s (want %s)", shop, webhook_id, st, reply, want);
    free(reply);
}

/* A Shopify order as its REST JSON has it (trimmed to what we read). */
static char *
s_shopify_order(const char *id, const char *number, const char *updated_at, const char *fulfillment_status,
                const char *total, const char *city, const char *lines, const char *fulfillments)
{
    char *b = NULL;
    if (asprintf(&b,
                 "{\"id\":%s,\"admin_graphql_api_id\":\"gid://shopify/Order/%s\",\"name\":\"#%s\",\"order_number\":%s,"
                 "\"email\":\"jane.doe@example.com\",\"created_at\":\"2026-12-01T09:00:00-05:00\",\"updated_at\":\"%s\","
                 "\"cancelled_at\":null,\"closed_at\":null,\"currency\":\"USD\",\"financial_status\":\"paid\","
                 "\"fulfillment_status\":%s,\"total_price\":\"%s\",\"customer\":{\"id\":7391124537517,"
                 "\"email\":\"jane.doe@example.com\",\"first_name\":\"Jane\",\"last_name\":\"Doe\",\"phone\":\"+16135550142\"},"
                 "\"shipping_address\":{\"name\":\"Jane Doe\",\"address1\":\"150 Elgin Street\",\"city\":\"%s\","
                 "\"zip\":\"K2P 1L4\",\"country_code\":\"CA\",\"phone\":\"+16135550142\"},"
                 "\"line_items\":[%s],\"fulfillments\":[%s]}",
                 id, id, number, number, updated_at, fulfillment_status, total, city, lines, fulfillments) < 0)
        abort();
    return b;
}

#define LINE_ESPRESSO "{\"id\":14621785833645,\"variant_id\":43720158675117,\"title\":\"Espresso Machine\"," \
                      "\"sku\":\"ESP-100-STL\",\"quantity\":1,\"price\":\"199.99\"}"
#define LINE_JUG "{\"id\":14621785866413,\"variant_id\":43720158707885,\"title\":\"Milk Jug\",\"sku\":\"JUG-350\"," \
                 "\"quantity\":2,\"price\":\"14.50\"}"
#define PARCEL(id, status, updated, line) \
    "{\"id\":" id ",\"status\":\"success\",\"shipment_status\":" status ",\"created_at\":\"" updated "\"," \
    "\"updated_at\":\"" updated "\",\"tracking_company\":\"UPS\",\"tracking_number\":\"1Z" id "\"," \
    "\"line_items\":[{\"id\":" line ",\"quantity\":1}]}"

static char *
s_std_order(const char *number, const char *status, int version, const char *customer, const char *name,
            const char *phone, const char *extra)
{
    char *b = NULL;
    if (asprintf(&b, "{\"type\":\"order.updated\",\"data\":{\"order_number\":\"%s\",\"status\":\"%s\","
                     "\"total\":25980,\"currency\":\"CNY\",\"version\":%d,%s"
                     "\"customer\":{\"id\":\"%s\",\"name\":\"%s\",\"phone\":\"%s\"},"
                     "\"items\":[{\"sku\":\"TV-55\",\"name\":\"TV\",\"quantity\":2,\"unit_price\":12990}]}}",
                 number, status, version, extra, customer, name, phone) < 0)
        abort();
    return b;
}

static void
platform_status_that_would_move_back_applies_the_rest_and_keeps_the_status(void)
{
    TEST_BEGIN(__func__);
    /* Delivered: the one parcel is delivered. */
    char *body = s_shopify_order("6001", "2001", "2026-12-03T10:00:00-05:00", "\"fulfilled\"", "228.99", "Ottawa",
                                 LINE_ESPRESSO "," LINE_JUG,
                                 PARCEL("4001", "\"delivered\"", "2026-12-03T10:00:00-05:00", "14621785833645"));
    s_shopify_ok("acme", "orders/create", "back-1", body, "applied");
    free(body);
    s_expect("SELECT status FROM commerce.orders WHERE order_number = '2001'", "delivered");
    /* A second, partial fulfillment (not yet delivered), another line, a new
     * total and address: Shopify's status now reads as shipped. */
    body = s_shopify_order("6001", "2001", "2026-12-04T08:00:00-05:00", "\"partial\"", "241.49", "Kanata",
                           LINE_ESPRESSO "," LINE_JUG ",{\"id\":14621785899181,\"variant_id\":43720158740653,"
                           "\"title\":\"Tamper\",\"sku\":\"TMP-58\",\"quantity\":1,\"price\":\"12.50\"}",
                           PARCEL("4001", "\"delivered\"", "2026-12-03T10:00:00-05:00", "14621785833645") ","
                           PARCEL("4002", "null", "2026-12-04T08:00:00-05:00", "14621785899181"));
    char *reply = NULL;
    int st = s_shopify("acme", "orders/updated", "back-2", body, &reply);
    CHECK(st == 200 && strstr(reply, "\"applied\"") && strstr(reply, "shipped was not applied"), "%d %s", st, reply);
    free(reply);
    free(body);
    s_expect("SELECT status || ' ' || total_minor || ' ' || fulfillment_status || ' ' || (shipping_address->>'city')"
             " FROM commerce.orders WHERE order_number = '2001'", "delivered 24149 partial Kanata");
    s_expect("SELECT string_agg(sku || ' x' || quantity || ' @' || unit_minor, ', ' ORDER BY line)"
             " FROM commerce.order_items WHERE order_number = '2001'",
             "ESP-100-STL x1 @19999, JUG-350 x2 @1450, TMP-58 x1 @1250");
    s_expect("SELECT string_agg(external_id || ' ' || status, ', ' ORDER BY external_id) FROM commerce.shipments"
             " WHERE order_number = '2001'", "4001 delivered, 4002 in_transit");
    s_expect("SELECT from_status || ' ' || to_status || ' ' || by_whom || ' ' || detail FROM commerce.order_audit"
             " WHERE order_number = '2001' AND action = 'status_not_applied'",
             "delivered delivered acme the platform's status shipped was not applied: delivered -> shipped is not allowed;"
             " the order stays delivered");
    Cc__OrderUpdated *u = s_order_event("order.updated", "2001");
    CHECK(u->order->status == CC__ORDER_STATUS__ORDER_DELIVERED && u->order->total->minor == 24149, "order.updated");
    cc__order_updated__free_unpacked(u, NULL);

    /* WooCommerce: completed (delivered), then processing (reviewed) with a new line. */
    const char *woo = "{\"id\":%d,\"number\":\"W-%d\",\"status\":\"%s\",\"currency\":\"EUR\","
                      "\"date_created_gmt\":\"2026-12-01T09:00:00\",\"date_modified_gmt\":\"%s\",\"total\":\"%s\","
                      "\"customer_id\":0,\"line_items\":[%s]}";
    const char *l1 = "{\"id\":1,\"name\":\"Notebook\",\"product_id\":93,\"quantity\":2,\"subtotal\":\"25.00\",\"sku\":\"NB-A5\"}";
    char *w1 = NULL, *w2 = NULL, lines[512];
    snprintf(lines, sizeof lines, "%s,{\"id\":2,\"name\":\"Pencil\",\"product_id\":94,\"quantity\":5,"
             "\"subtotal\":\"15.50\",\"sku\":\"PN-2B\"}", l1);
    if (asprintf(&w1, woo, 801, 801, "completed", "2026-12-02T09:00:00", "25.00", l1) < 0) abort();
    if (asprintf(&w2, woo, 801, 801, "processing", "2026-12-02T10:00:00", "40.50", lines) < 0) abort();
    const char *wh = "X-WC-Webhook-Source: https://woo.example.com/\r\nX-WC-Webhook-Topic: order.updated\r\n"
                     "X-WC-Webhook-Delivery-ID: %s\r\n";
    char h[256];
    snprintf(h, sizeof h, wh, "wb-1");
    st = s_body_signed("/webhooks/woocommerce", WOO_SECRET, "X-WC-Webhook-Signature", h, w1, &reply);
    CHECK(st == 200 && strstr(reply, "applied"), "woo completed: %d %s", st, reply);
    free(reply);
    snprintf(h, sizeof h, wh, "wb-2");
    st = s_body_signed("/webhooks/woocommerce", WOO_SECRET, "X-WC-Webhook-Signature", h, w2, &reply);
    CHECK(st == 200 && strstr(reply, "reviewed was not applied"), "woo processing after completed: %d %s", st, reply);
    free(reply);
    free(w1);
    free(w2);
    s_expect("SELECT status || ' ' || total_minor || ' ' || (SELECT count(*) FROM commerce.order_items i"
             " WHERE i.order_number = o.order_number) FROM commerce.orders o WHERE order_number = 'W-801'", "delivered 4050 2");

    /* Our dialect names its status: shipped -> ordered is still refused, and
     * saying the status was derived does not change that. */
    body = s_std_order("S-1", "shipped", 1, "c-1", "Li Lei", "13800138000", "");
    s_standard_code("shop1", "s1-1", body, 200, "applied");
    free(body);
    body = s_std_order("S-1", "ordered", 2, "c-1", "Li Lei", "13800138000", "\"status_derived\":true,\"note\":\"late\",");
    s_standard_code("shop1", "s1-2", body, 422, "shipped -> ordered is not allowed");
    free(body);
    s_expect("SELECT status || ' ' || note FROM commerce.orders WHERE order_number = 'S-1'", "shipped ");
    TEST_PASS(__func__);
}

/* order.lookup of number (platform's own when platform is not ""): the
 * orders found, or NULL when NOT_FOUND. The caller frees the list. */
static Cc__OrderList *
s_lookup_in(cc_rpc_client_t *c, const char *platform, const char *number)
{
    Cc__OrderLookup q = CC__ORDER_LOOKUP__INIT;
    q.order_number = (char *) number;
    q.platform = (char *) platform;
    uint8_t buf[256];
    size_t len = cc__order_lookup__pack(&q, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(c, "order.lookup", buf, len, 3000, &r) == 0, "lookup %s %s", platform, number);
    if (r->status == CC__STATUS__STATUS_NOT_FOUND) {
        cc__reply__free_unpacked(r, NULL);
        return NULL;
    }
    CHECK(r->status == 0, "lookup %s %s: %d %s", platform, number, r->status, r->error);
    Cc__OrderList *l = cc__order_list__unpack(NULL, r->payload.len, r->payload.data);
    cc__reply__free_unpacked(r, NULL);
    CHECK(l, "OrderList");
    return l;
}

static Cc__OrderList *
s_lookup(cc_rpc_client_t *c, const char *number)
{
    Cc__OrderList *l = s_lookup_in(c, "", number);
    CHECK(l, "lookup %s found", number);
    return l;
}

static void
two_shops_with_the_same_order_number_each_keep_theirs(void)
{
    TEST_BEGIN(__func__);
    char *a = s_shopify_order("7001", "3001", "2026-12-05T09:00:00-05:00", "null", "199.99", "Ottawa", LINE_ESPRESSO, "");
    char *b = s_shopify_order("9001", "3001", "2026-12-05T09:30:00-05:00", "null", "29.00", "Toronto", LINE_JUG, "");
    s_shopify_ok("acme", "orders/create", "same-1", a, "applied");
    s_shopify_ok("beta", "orders/create", "same-1", b, "applied");   /* the same webhook id, another shop: its own */
    free(b);
    s_expect("SELECT string_agg(order_number || ' ' || platform || ' ' || platform_number || ' ' || total_minor, ', '"
             " ORDER BY order_number) FROM commerce.orders WHERE platform_number = '3001'",
             "3001 acme 3001 19999, 3001@beta beta 3001 2900");
    /* Each shop's updates and parcels reach its own order. */
    b = s_shopify_order("9001", "3001", "2026-12-05T10:00:00-05:00", "null", "31.00", "Toronto", LINE_JUG, "");
    s_shopify_ok("beta", "orders/updated", "same-2", b, "applied");
    free(b);
    s_shopify_ok("beta", "fulfillments/create", "same-3",
                 "{\"id\":5001,\"order_id\":9001,\"status\":\"success\",\"shipment_status\":\"in_transit\","
                 "\"created_at\":\"2026-12-05T11:00:00-05:00\",\"updated_at\":\"2026-12-05T11:00:00-05:00\","
                 "\"tracking_company\":\"Canada Post\",\"tracking_number\":\"CP123\",\"line_items\":[]}", "applied");
    s_expect("SELECT string_agg(o.order_number || ' ' || o.status || ' ' || o.total_minor || ' ' ||"
             " coalesce((SELECT string_agg(s.tracking_number, ',') FROM commerce.shipments s"
             " WHERE s.order_number = o.order_number), '-'), ', ' ORDER BY o.order_number)"
             " FROM commerce.orders o WHERE o.platform_number = '3001'",
             "3001 reviewed 19999 -, 3001@beta shipped 3100 CP123");
    /* The bus tells each order with the shop's own number. */
    Cc__OrderUpdated *u = s_order_event("order.updated", "3001@beta");
    CHECK(strcmp(u->order->platform_number, "3001") == 0 && strcmp(u->order->platform, "beta") == 0
          && u->order->total->minor == 3100, "order.updated 3001@beta: platform_number %s", u->order->platform_number);
    cc__order_updated__free_unpacked(u, NULL);
    /* A re-delivery of acme's creation is still a duplicate of acme's. */
    s_shopify_ok("acme", "orders/create", "same-1", a, "duplicate");
    free(a);

    /* Our dialect too: two shops' "S-9"; a payment by the second shop's number. */
    char *o1 = s_std_order("S-9", "ordered", 1, "c-91", "One", "13900000001", "");
    char *o2 = s_std_order("S-9", "ordered", 1, "c-92", "Two", "13900000002", "");
    s_standard_code("shop1", "s9-1", o1, 200, "applied");
    s_standard_code("shop2", "s9-1", o2, 200, "applied");
    free(o1);
    free(o2);
    s_standard_code("shop2", "s9-pay", "{\"type\":\"payment.updated\",\"data\":{\"id\":\"pay-s9\",\"order_number\":\"S-9\","
                    "\"method\":\"card\",\"amount\":1000,\"currency\":\"CNY\",\"version\":1}}", 200, "applied");
    s_expect("SELECT string_agg(order_number || ' ' || platform, ', ') FROM commerce.payments WHERE external_id = 'pay-s9'",
             "S-9@shop2 shop2");

    /* The bus: each by our number; an operation on the second shop's order
     * leaves the first shop's alone. */
    cc_rpc_client_opts_t ro = { .endpoint = s_rpc, .source = "inbound_test", .retry_ms = 500, .max_attempts = 3 };
    cc_rpc_client_t *c = cc_rpc_client_new(&ro);
    Cc__OrderList *l = s_lookup(c, "3001");
    CHECK(l->n_orders == 1 && strcmp(l->orders[0]->platform, "acme") == 0 && l->orders[0]->total->minor == 19999,
          "3001 is acme's");
    cc__order_list__free_unpacked(l, NULL);
    l = s_lookup(c, "3001@beta");
    CHECK(l->n_orders == 1 && strcmp(l->orders[0]->platform, "beta") == 0 && l->orders[0]->total->minor == 3100
          && strcmp(l->orders[0]->tracking_number, "CP123") == 0, "3001@beta is beta's");
    cc__order_list__free_unpacked(l, NULL);
    /* By a shop's own number: each shop's 3001, and none for a number the shop does not have. */
    l = s_lookup_in(c, "beta", "3001");
    CHECK(l && l->n_orders == 1 && strcmp(l->orders[0]->order_number, "3001@beta") == 0
          && strcmp(l->orders[0]->platform_number, "3001") == 0 && l->orders[0]->n_items == 1, "beta's 3001");
    cc__order_list__free_unpacked(l, NULL);
    l = s_lookup_in(c, "acme", "3001");
    CHECK(l && l->n_orders == 1 && strcmp(l->orders[0]->order_number, "3001") == 0 && l->orders[0]->total->minor == 19999,
          "acme's 3001");
    cc__order_list__free_unpacked(l, NULL);
    CHECK(s_lookup_in(c, "beta", "3001@beta") == NULL && s_lookup_in(c, "beta", "2001") == NULL,
          "beta has no order 3001@beta nor 2001 of its own");
    l = s_lookup(c, "S-9@shop2");
    CHECK(l->n_orders == 1 && strcmp(l->orders[0]->platform, "shop2") == 0 && l->orders[0]->paid_minor == 1000,
          "S-9@shop2 with its payment");
    cc__order_list__free_unpacked(l, NULL);
    Cc__OrderCancel m = CC__ORDER_CANCEL__INIT;
    m.order_number = "S-9@shop2";
    m.reason = "asked by phone";
    m.by = "agent-7";
    uint8_t buf[256];
    size_t len = cc__order_cancel__pack(&m, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(c, "order.cancel", buf, len, 3000, &r) == 0 && r->status == 0, "cancel S-9@shop2: %s",
          r ? r->error : "no reply");
    Cc__Order *done = cc__order__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(done && strcmp(done->order_number, "S-9@shop2") == 0 && strcmp(done->platform_number, "S-9") == 0
          && done->status == CC__ORDER_STATUS__ORDER_CANCELLED, "the cancelled order, with the shop's own number");
    cc__order__free_unpacked(done, NULL);
    cc__reply__free_unpacked(r, NULL);
    cc_rpc_client_destroy(&c);
    s_expect("SELECT string_agg(order_number || ' ' || status, ', ' ORDER BY order_number) FROM commerce.orders"
             " WHERE platform_number = 'S-9'", "S-9 ordered, S-9@shop2 cancelled");
    /* The push to the second shop names the order by its number there. */
    s_expect("SELECT string_agg(type || ' ' || subject || ' ' || (body::jsonb->'data'->>'order_number'), ', ')"
             " FROM commerce.outbox WHERE platform = 'shop2'", "order.cancelled S-9@shop2 S-9");
    TEST_PASS(__func__);
}

static void
customers_inside_orders_are_told_when_they_change(void)
{
    TEST_BEGIN(__func__);
    /* New orders (the batch's set-wise path): a new customer is told... */
    char *body = s_std_order("C-1", "ordered", 1, "c-500", "Ann", "13700000001", "");
    s_standard_code("shop1", "cu-1", body, 200, "applied");
    free(body);
    Cc__CustomerUpdated *u = s_customer_event("c-500");
    CHECK(strcmp(u->customer->name, "Ann") == 0 && strcmp(u->customer->phone, "13700000001") == 0
          && strcmp(u->customer->platform, "shop1") == 0, "new customer told: %s", u->customer->name);
    cc__customer_updated__free_unpacked(u, NULL);
    /* ...an unchanged one is not (the next event is the change after it)... */
    body = s_std_order("C-2", "ordered", 1, "c-500", "Ann", "13700000001", "");
    s_standard_code("shop1", "cu-2", body, 200, "applied");
    free(body);
    body = s_std_order("C-3", "ordered", 1, "c-500", "Ann Lee", "13700000001", "");
    s_standard_code("shop1", "cu-3", body, 200, "applied");
    free(body);
    u = s_customer_event("c-500");
    CHECK(strcmp(u->customer->name, "Ann Lee") == 0, "changed name told next, not the unchanged copy: %s",
          u->customer->name);
    cc__customer_updated__free_unpacked(u, NULL);
    /* ...and the same for updates of an order (one by one). */
    body = s_std_order("C-1", "reviewed", 2, "c-500", "Ann Lee", "13700000001", "");
    s_standard_code("shop1", "cu-4", body, 200, "applied");
    free(body);
    body = s_std_order("C-1", "reviewed", 3, "c-500", "Ann Lee", "13700000009", "");
    s_standard_code("shop1", "cu-5", body, 200, "applied");
    free(body);
    u = s_customer_event("c-500");
    CHECK(strcmp(u->customer->phone, "13700000009") == 0, "new phone told next: %s", u->customer->phone);
    cc__customer_updated__free_unpacked(u, NULL);
    s_expect("SELECT name || ' ' || phone FROM commerce.customers WHERE platform = 'shop1' AND external_id = 'c-500'",
             "Ann Lee 13700000009");
    TEST_PASS(__func__);
}

/* The set-wise path of commerce.apply_batch (0009) is taken for new orders,
 * and tells their customers: no event goes through commerce.apply_event
 * (counted in the transaction's function statistics), rolled back after. */
static void
new_orders_of_a_batch_go_set_wise_and_tell_their_customers(void)
{
    TEST_BEGIN(__func__);
    CHECK(cc_pg_run(s_pg, "BEGIN", NULL) == 0, "begin");
    CHECK(cc_pg_run(s_pg, "SET LOCAL track_functions = 'pl'", NULL) == 0, "%s", cc_pg_error(s_pg));
    s_expect("SELECT string_agg(e->>'topic' || ' ' || (e->>'key'), ', ' ORDER BY r.n, e->>'topic')"
             " FROM jsonb_array_elements(commerce.apply_batch('["
             "{\"kind\":\"order\",\"platform\":\"shop1\",\"event_id\":\"sw-1\",\"data\":{\"order_number\":\"SW-1\","
             "\"status\":\"ordered\",\"total\":100,\"currency\":\"CNY\",\"version\":1,"
             "\"customer\":{\"id\":\"c-sw1\",\"name\":\"Sw\"},\"items\":[{\"sku\":\"X\",\"quantity\":1,\"unit_price\":100}]}},"
             "{\"kind\":\"order\",\"platform\":\"shop1\",\"event_id\":\"sw-2\",\"data\":{\"order_number\":\"SW-2\","
             "\"status\":\"ordered\",\"total\":100,\"currency\":\"CNY\",\"version\":1,"
             "\"customer\":{\"id\":\"c-500\",\"name\":\"Ann Lee\",\"phone\":\"13700000009\"},"
             "\"items\":[{\"sku\":\"X\",\"quantity\":1,\"unit_price\":100}]}}]'::jsonb))"
             " WITH ORDINALITY AS r (x, n), jsonb_array_elements(r.x->'events') e",
             "customer.updated c-sw1, order.created SW-1, order.created SW-2");
    s_expect("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'apply_event'", "0");
    CHECK(cc_pg_run(s_pg, "ROLLBACK", NULL) == 0, "rollback");
    TEST_PASS(__func__);
}

static void
payments_in_full_settle_a_delivered_order_partial_ones_do_not(void)
{
    TEST_BEGIN(__func__);
    char *body = s_std_order("P-1", "delivered", 1, "c-600", "Bo", "13600000001", "");
    s_standard_code("shop1", "pay-o1", body, 200, "applied");
    free(body);
    const char *pay = "{\"type\":\"payment.updated\",\"data\":{\"id\":\"%s\",\"order_number\":\"P-1\",\"method\":\"card\","
                      "\"amount\":%d,\"currency\":\"CNY\",\"version\":1}}";
    char b[256];
    snprintf(b, sizeof b, pay, "pay-1", 10000);
    s_standard_code("shop1", "pay-1", b, 200, "applied");
    s_expect("SELECT status || ' ' || (SELECT count(*) FROM commerce.order_audit a WHERE a.order_number = o.order_number"
             " AND a.action = 'payment') FROM commerce.orders o WHERE order_number = 'P-1'", "delivered 0");
    snprintf(b, sizeof b, pay, "pay-2", 15980);
    s_standard_code("shop1", "pay-2", b, 200, "applied");
    s_expect("SELECT status FROM commerce.orders WHERE order_number = 'P-1'", "settled");
    s_expect("SELECT from_status || ' ' || to_status || ' ' || by_whom || ' ' || source || ' ' || detail"
             " FROM commerce.order_audit WHERE order_number = 'P-1' AND action = 'payment'",
             "delivered settled shop1 webhook paid in full: 25980 of 25980 CNY (minor units) by payment pay-2");
    Cc__OrderUpdated *u = s_order_event("order.updated", "P-1");
    CHECK(u->order->status == CC__ORDER_STATUS__ORDER_SETTLED && u->previous == CC__ORDER_STATUS__ORDER_DELIVERED,
          "order.updated settled from delivered");
    cc__order_updated__free_unpacked(u, NULL);
    /* A shipped order paid in full waits for its delivery. */
    body = s_std_order("P-2", "shipped", 1, "c-600", "Bo", "13600000001", "");
    s_standard_code("shop1", "pay-o2", body, 200, "applied");
    free(body);
    s_standard_code("shop1", "pay-3", "{\"type\":\"payment.updated\",\"data\":{\"id\":\"pay-3\",\"order_number\":\"P-2\","
                    "\"method\":\"card\",\"amount\":25980,\"currency\":\"CNY\",\"version\":1}}", 200, "applied");
    s_expect("SELECT status FROM commerce.orders WHERE order_number = 'P-2'", "shipped");
    TEST_PASS(__func__);
}

/* Shopify's REST product JSON (products/create), as Shopify documents it. */
static const char *s_ipod =
    "{\"id\":632910392,\"title\":\"IPod Nano - 8GB\",\"body_html\":\"<p>It's the small iPod with one very big idea: "
    "Video.</p>\",\"vendor\":\"Apple\",\"product_type\":\"Cult Products\",\"created_at\":\"2026-11-01T09:00:00-05:00\","
    "\"handle\":\"ipod-nano\",\"updated_at\":\"%s\",\"published_at\":\"2026-11-01T09:00:00-05:00\","
    "\"template_suffix\":null,\"published_scope\":\"web\",\"tags\":\"Emotive, Flash Memory, MP3, Music\","
    "\"status\":\"active\",\"admin_graphql_api_id\":\"gid://shopify/Product/632910392\","
    "\"variants\":["
    "{\"id\":808950810,\"product_id\":632910392,\"title\":\"Pink\",\"price\":\"%s\",\"sku\":\"IPOD2008PINK\","
    "\"position\":1,\"inventory_policy\":\"continue\",\"compare_at_price\":null,\"fulfillment_service\":\"manual\","
    "\"inventory_management\":\"shopify\",\"option1\":\"Pink\",\"option2\":null,\"option3\":null,"
    "\"created_at\":\"2026-11-01T09:00:00-05:00\",\"updated_at\":\"2026-11-01T09:00:00-05:00\",\"taxable\":true,"
    "\"barcode\":\"1234_pink\",\"grams\":567,\"weight\":1.25,\"weight_unit\":\"lb\",\"inventory_quantity\":10},"
    "{\"id\":49148385,\"product_id\":632910392,\"title\":\"Red\",\"price\":\"199.00\",\"sku\":\"IPOD2008RED\","
    "\"position\":2,\"option1\":\"Red\",\"option2\":null,\"option3\":null,\"created_at\":\"2026-11-01T09:00:00-05:00\","
    "\"updated_at\":\"2026-11-01T09:00:00-05:00\",\"inventory_quantity\":20},"
    "{\"id\":457924702,\"product_id\":632910392,\"title\":\"Black\",\"price\":\"%s\",\"sku\":\"\",\"position\":3,"
    "\"option1\":\"Black\",\"option2\":null,\"option3\":null,\"created_at\":\"2026-11-01T09:00:00-05:00\","
    "\"updated_at\":\"2026-11-01T09:00:00-05:00\",\"inventory_quantity\":20}],"
    "\"options\":[{\"id\":594680422,\"product_id\":632910392,\"name\":\"Color\",\"position\":1,"
    "\"values\":[\"Pink\",\"Red\",\"Black\"]}],"
    "\"images\":[],\"image\":null}";

static char *
s_ipod_json(const char *updated_at, const char *pink, const char *black)
{
    char *b = NULL;
    if (asprintf(&b, s_ipod, updated_at, pink, black) < 0) abort();
    return b;
}

static void
shopify_products_with_variants_are_one_product_per_variant(void)
{
    TEST_BEGIN(__func__);
    char *body = s_ipod_json("2026-11-01T09:00:00-05:00", "199.00", "abc"), *reply = NULL;
    int st = s_shopify("acme", "products/create", "prod-0", body, &reply);
    CHECK(st == 400 && strstr(reply, "variants[2]"), "a variant without a price: %d %s", st, reply);
    free(reply);
    free(body);
    s_expect("SELECT count(*) FROM commerce.products WHERE code LIKE 'IPOD%' OR code LIKE 'variant-4579%'", "0");

    body = s_ipod_json("2026-11-01T09:00:00-05:00", "199.00", "189.95");
    s_shopify_ok("acme", "products/create", "prod-1", body, "applied");
    free(body);
    s_expect("SELECT string_agg(code || '|' || name || '|' || price_minor || ' ' || currency || '|' || category || '|'"
             " || (specification->>'Color') || '|' || external_id || '|' || status || '|' || platform, ', ' ORDER BY code)"
             " FROM commerce.products WHERE specification->>'product_id' = '632910392'",
             "IPOD2008PINK|IPod Nano - 8GB - Pink|19900 USD|Cult Products|Pink|808950810|active|acme, "
             "IPOD2008RED|IPod Nano - 8GB - Red|19900 USD|Cult Products|Red|49148385|active|acme, "
             "variant-457924702|IPod Nano - 8GB - Black|18995 USD|Cult Products|Black|457924702|active|acme");
    /* products/update: a new price for Pink; an older copy is stale. */
    body = s_ipod_json("2026-11-20T12:00:00-05:00", "189.99", "189.95");
    s_shopify_ok("acme", "products/update", "prod-2", body, "applied");
    free(body);
    body = s_ipod_json("2026-11-10T12:00:00-05:00", "150.00", "150.00");
    s_shopify_ok("acme", "products/update", "prod-3", body, "stale");
    free(body);
    s_expect("SELECT string_agg(code || ' ' || price_minor, ', ' ORDER BY code) FROM commerce.products"
             " WHERE specification->>'product_id' = '632910392'",
             "IPOD2008PINK 18999, IPOD2008RED 19900, variant-457924702 18995");
    /* The Black variant deleted in the shop: no longer sold here either. */
    body = s_ipod_json("2026-11-25T12:00:00-05:00", "189.99", "189.95");
    char *black = strstr(body, ",{\"id\":457924702"), *end = black ? strstr(black, "],\"options\"") : NULL;
    CHECK(black && end, "the Black variant in the JSON");
    memmove(black, end, strlen(end) + 1);
    s_shopify_ok("acme", "products/update", "prod-4", body, "applied");
    free(body);
    s_expect("SELECT string_agg(code || ' ' || status, ', ' ORDER BY code) FROM commerce.products"
             " WHERE specification->>'product_id' = '632910392'",
             "IPOD2008PINK active, IPOD2008RED active, variant-457924702 discontinued");
    TEST_PASS(__func__);
}

/* The export connections order-sync opened since t0 (pids, comma-separated). */
static char *
s_new_backends(const char *t0)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity"
             " WHERE application_name = 'order-sync-export' AND backend_start > '%s'", t0);
    return s_one(sql);
}

static void
exports_use_a_connection_kept_by_the_http_thread(void)
{
    TEST_BEGIN(__func__);
    char *t0 = s_one("SELECT clock_timestamp()::text");
    char *first = NULL;
    for (int i = 0; i < 4; i++) {
        char id[32], headers[512], *csv = NULL;
        snprintf(id, sizeof id, "export-%d", i);
        s_sign(id, "", headers, sizeof headers);
        int st = cc_harness_http_get_with(s_http, i % 2 ? "/export/shop2/customers.csv" : "/export/shop1/customers.csv",
                                          headers, &csv);
        CHECK(st == 200 && csv && strstr(csv, i % 2 ? "c-92" : "c-500") != NULL,
              "export %d: %d", i, st);
        free(csv);
        char *now = s_new_backends(t0);
        if (i == 0) {
            CHECK(*now && !strchr(now, ','), "the first export opened one connection: '%s'", now);
            first = now;
        } else {
            CHECK(strcmp(now, first) == 0, "export %d on the same connection: '%s', first '%s'", i, now, first);
            free(now);
        }
    }
    free(first);
    free(t0);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_harness_t *h = cc_harness_new("inbound");
    cc_harness_start_pg(h);
    cc_harness_start_forwarder(h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "order_sync", OS_SOURCE_DIR "/sql", NULL) == 0, "migrate");
    randombytes_buf(s_key, sizeof s_key);
    char b64[64], sql[512];
    sodium_bin2base64(b64, sizeof b64, s_key, sizeof s_key, sodium_base64_VARIANT_ORIGINAL);
    /* shop2 takes pushes at a port where nothing listens: they wait in the outbox. */
    snprintf(sql, sizeof sql, "INSERT INTO commerce.platforms (name, secret, currency, endpoint) VALUES"
             " ('shop1', 'whsec_%s', 'CNY', NULL), ('shop2', 'whsec_%s', 'CNY', 'http://127.0.0.1:%d/hooks')",
             b64, b64, cc_harness_free_port());
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "%s", cc_pg_error(s_pg));
    CHECK(cc_pg_run(s_pg, "INSERT INTO commerce.platforms (name, dialect, secret, domain, currency) VALUES"
                          " ('acme', 'shopify', '" ACME_SECRET "', 'acme-store.myshopify.com', 'USD'),"
                          " ('beta', 'shopify', '" BETA_SECRET "', 'beta-store.myshopify.com', 'USD'),"
                          " ('woo1', 'woocommerce', '" WOO_SECRET "', 'woo.example.com', 'EUR')", NULL) == 0, "%s",
          cc_pg_error(s_pg));
    char v[16];
    s_http = cc_harness_free_port();
    int admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", s_http);
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", s_rpc, 1);
    setenv("ORDER_SYNC_HTTP_THREADS", "1", 1);   /* every request on the one thread: its export connection is seen */
    pid_t os = cc_harness_spawn(h, "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "order-sync healthy");
    cc_bus_opts_t bo = { .service = "test", .instance = "inbound", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "order.");
    cc_bus_subscribe(s_events, "customer.");
    cc_sleep_ms(300);
    platform_status_that_would_move_back_applies_the_rest_and_keeps_the_status();
    two_shops_with_the_same_order_number_each_keep_theirs();
    customers_inside_orders_are_told_when_they_change();
    new_orders_of_a_batch_go_set_wise_and_tell_their_customers();
    payments_in_full_settle_a_delivered_order_partial_ones_do_not();
    shopify_products_with_variants_are_one_product_per_variant();
    exports_use_a_connection_kept_by_the_http_thread();
    int status = cc_harness_stop(h, os, SIGTERM, 10000);
    CHECK(status == 0, "order-sync stops cleanly (%d)", status);
    cc_pg_destroy(&s_pg);
    cc_bus_destroy(&s_events);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("inbound_test: 7 passed, 0 failed\n");
    return 0;
}
