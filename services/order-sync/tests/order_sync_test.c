/* order_sync_test: a platform simulator sends signed Standard Webhooks to a
 * real order-sync over HTTP; the rows in PostgreSQL and the bus lookups say
 * what was kept.
 *
 * signed_order_is_stored_with_its_items_customer_and_audit
 * duplicate_event_is_acknowledged_not_applied_twice
 * forged_or_stale_or_malformed_webhooks_are_refused_and_store_nothing
 * status_machine_is_enforced_and_late_updates_do_not_win
 * status_walks_are_the_shortest_over_the_transition_table
 * lookups_by_order_number_and_phone
 * a_platform_added_is_taken_after_sighup
 * shopify_orders_as_shopify_sends_them_are_mapped_exactly
 * shopify_forged_or_malformed_webhooks_store_nothing
 * woocommerce_orders_are_mapped
 * customers_products_stock_payments_and_shipments_are_kept_and_told
 * bulk_import_of_events_and_csv_of_customers_and_products
 * csv_export_reads_back_as_it_was
 * two_instances_given_the_same_deliveries_apply_each_once
 * database_down_webhooks_get_503_and_apply_once_when_delivered_again
 * kill_9_during_a_burst_loses_no_acknowledged_webhook */
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

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

static int s_http;
static cc_pg_t *s_pg;
static unsigned char s_key[32];
static char s_rpc[64];
static cc_bus_t *s_events;
static cc_harness_t *s_h;
static pid_t s_os;
static int s_admin;

/* The next event of type about key (fails after 3 s); events before it are
 * passed over. The caller frees it. */
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

/* The next order.* event about number. */
static Cc__OrderUpdated *
s_order_event(const char *type, const char *number)
{
    Cc__Envelope *env = s_event(type, number);
    Cc__OrderUpdated *u = cc__order_updated__unpack(NULL, env->payload.len, env->payload.data);
    cc__envelope__free_unpacked(env, NULL);
    CHECK(u, "%s payload", type);
    return u;
}

/* The Standard Webhooks headers for body, signed as the platform does. */
static void s_sign(const char *event_id, long long ts, const char *body, bool forge, char *headers, size_t cap);

/* Signs body as the platform does and posts it to path. Returns the HTTP status. */
static int
s_post_to(const char *path, const char *event_id, long long ts, const char *body, bool forge, char **reply)
{
    char headers[512];
    s_sign(event_id, ts, body, forge, headers, sizeof headers);
    return cc_harness_http_post(s_http, path, headers, body, reply);
}

static void
s_sign(const char *event_id, long long ts, const char *body, bool forge, char *headers, size_t cap)
{
    char stamp[24], sig[128];
    snprintf(stamp, sizeof stamp, "%lld", ts);
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    crypto_auth_hmacsha256_init(&st, s_key, sizeof s_key);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) event_id, strlen(event_id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) stamp, strlen(stamp));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    if (forge) mac[0] ^= 1;
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(sig, sizeof sig, "v1,%s", b64);
    snprintf(headers, cap, "webhook-id: %s\r\nwebhook-timestamp: %s\r\nwebhook-signature: %s\r\n", event_id, stamp, sig);
}

static int
s_post(const char *event_id, long long ts, const char *body, bool forge, char **reply)
{
    return s_post_to("/webhooks/shop1", event_id, ts, body, forge, reply);
}

/* Posts body as Shopify or WooCommerce do: the base64 HMAC-SHA256 of the raw
 * body keyed with secret, in sig_header, beside the dialect's other headers. */
static int
s_post_body_signed(const char *path, const char *secret, const char *sig_header, const char *other_headers,
                   const char *body, bool forge, char **reply)
{
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *) secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    if (forge) mac[31] ^= 0x80;
    char b64[64], headers[1024];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(headers, sizeof headers, "%s: %s\r\n%s", sig_header, b64, other_headers);
    return cc_harness_http_post(s_http, path, headers, body, reply);
}

#define SHOPIFY_SECRET "shpss_2f9c8e0d7a6b5c4d3e2f1a0b"
#define WOO_SECRET "woo-secret: with spaces & symbols"

static int
s_shopify(const char *topic, const char *webhook_id, const char *body, bool forge, char **reply)
{
    char h[512];
    snprintf(h, sizeof h, "X-Shopify-Topic: %s\r\nX-Shopify-Shop-Domain: acme-store.myshopify.com\r\n"
             "X-Shopify-Webhook-Id: %s\r\nX-Shopify-API-Version: 2024-01\r\n", topic, webhook_id);
    return s_post_body_signed("/webhooks/shopify", SHOPIFY_SECRET, "X-Shopify-Hmac-Sha256", h, body, forge, reply);
}

static char *
s_order(const char *number, const char *status, int version, int qty, const char *name)
{
    char *b = NULL;
    if (asprintf(&b, "{\"type\":\"order.updated\",\"data\":{\"order_number\":\"%s\",\"status\":\"%s\","
                     "\"total\":25980,\"currency\":\"CNY\",\"version\":%d,"
                     "\"customer\":{\"id\":\"c-77\",\"name\":\"%s\",\"phone\":\"13800138000\",\"email\":\"a@example.com\"},"
                     "\"items\":[{\"sku\":\"TV-55\",\"name\":\"TV\",\"quantity\":%d,\"unit_price\":12990},"
                     "{\"sku\":\"HDMI\",\"name\":\"Cable\",\"quantity\":1,\"unit_price\":0}]}}",
                 number, status, version, name, qty) < 0)
        abort();
    return b;
}

static char *
s_one(const char *sql)
{
    PGresult *res = NULL;
    CHECK(cc_pg_run(s_pg, sql, &res) == 0, "%s: %s", sql, cc_pg_error(s_pg));
    char *v = strdup(PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
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

static void
signed_order_is_stored_with_its_items_customer_and_audit(void)
{
    TEST_BEGIN(__func__);
    char *body = s_order("A1001", "ordered", 1, 2, "Li Lei"), *reply = NULL;
    int st = s_post("evt-1", time(NULL), body, false, &reply);
    CHECK(st == 200 && strstr(reply, "applied"), "%d %s", st, reply);
    free(reply);
    free(body);
    s_expect("SELECT status || ' ' || total_minor || ' ' || currency FROM commerce.orders WHERE order_number = 'A1001'",
             "ordered 25980 CNY");
    s_expect("SELECT count(*) || ' ' || sum(quantity) FROM commerce.order_items WHERE order_number = 'A1001'", "2 3");
    s_expect("SELECT name || ' ' || phone FROM commerce.customers WHERE external_id = 'c-77'", "Li Lei 13800138000");
    s_expect("SELECT to_status || ' ' || by_whom FROM commerce.order_audit WHERE order_number = 'A1001'", "ordered shop1");
    Cc__OrderUpdated *u = s_order_event("order.created", "A1001");
    CHECK(u->order->status == CC__ORDER_STATUS__ORDER_ORDERED && u->order->total->minor == 25980, "order.created event");
    cc__order_updated__free_unpacked(u, NULL);
    TEST_PASS(__func__);
}

static void
duplicate_event_is_acknowledged_not_applied_twice(void)
{
    TEST_BEGIN(__func__);
    char *body = s_order("A1001", "ordered", 1, 2, "Li Lei"), *reply = NULL;
    CHECK(s_post("evt-1", time(NULL), body, false, &reply) == 200 && strstr(reply, "duplicate"), "%s", reply);
    free(reply);
    free(body);
    s_expect("SELECT count(*) FROM commerce.order_items WHERE order_number = 'A1001'", "2");
    s_expect("SELECT count(*) FROM commerce.order_audit WHERE order_number = 'A1001'", "1");
    TEST_PASS(__func__);
}

static void
forged_or_stale_or_malformed_webhooks_are_refused_and_store_nothing(void)
{
    TEST_BEGIN(__func__);
    char *body = s_order("X9", "ordered", 1, 1, "Eve"), *reply = NULL;
    CHECK(s_post("evt-x1", time(NULL), body, true, &reply) == 401 && strstr(reply, "signature"), "forged: %s", reply);
    free(reply);
    CHECK(s_post("evt-x2", time(NULL) - 600, body, false, &reply) == 401 && strstr(reply, "replay"), "stale: %s", reply);
    free(reply);
    free(body);
    CHECK(s_post("evt-x3", time(NULL), "{\"type\": \"order.updated\", \"data\": {", false, &reply) == 400
          && strstr(reply, "malformed JSON"), "malformed: %s", reply);
    free(reply);
    body = s_order("X9", "ordered", 1, 0, "Eve");
    CHECK(s_post("evt-x4", time(NULL), body, false, &reply) == 400 && strstr(reply, "quantity"), "quantity 0: %s", reply);
    free(reply);
    free(body);
    body = s_order("X9", "ordered", 1, 1000000000, "Eve");
    CHECK(s_post("evt-x5", time(NULL), body, false, &reply) == 400, "absurd quantity: %s", reply);
    free(reply);
    free(body);
    body = s_order("X9", "lost", 1, 1, "Eve");
    CHECK(s_post("evt-x6", time(NULL), body, false, &reply) == 400 && strstr(reply, "status"), "unknown status: %s", reply);
    free(reply);
    free(body);
    char *none = NULL;
    CHECK(cc_harness_http_post(s_http, "/webhooks/shop1", "", "{}", &none) == 401, "unsigned");
    free(none);
    CHECK(cc_harness_http_post(s_http, "/webhooks/nosuch", "", "{}", &none) == 404, "unknown platform");
    free(none);
    s_expect("SELECT count(*) FROM commerce.orders WHERE order_number = 'X9'", "0");
    s_expect("SELECT count(*) FROM commerce.webhook_events WHERE event_id LIKE 'evt-x%'", "0");
    /* SQL in a name is a name. */
    body = s_order("A1002", "ordered", 1, 1, "Robert'); DROP TABLE commerce.orders; --");
    CHECK(s_post("evt-2", time(NULL), body, false, &reply) == 200, "%s", reply);
    free(reply);
    free(body);
    s_expect("SELECT name FROM commerce.customers WHERE external_id = 'c-77'", "Robert'); DROP TABLE commerce.orders; --");
    TEST_PASS(__func__);
}

static void
status_machine_is_enforced_and_late_updates_do_not_win(void)
{
    TEST_BEGIN(__func__);
    const struct { const char *id, *status; int version, code; } steps[] = {
        { "evt-3", "reviewed", 2, 200 }, { "evt-4", "shipped", 3, 200 },
        { "evt-5", "ordered", 4, 422 },      /* shipped -> ordered: refused */
        { "evt-6", "reviewed", 2, 200 },     /* a late, older update: acknowledged, not applied */
    };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        char *body = s_order("A1001", steps[i].status, steps[i].version, 2, "Li Lei"), *reply = NULL;
        int st = s_post(steps[i].id, time(NULL), body, false, &reply);
        CHECK(st == steps[i].code, "%s v%d: %d %s", steps[i].status, steps[i].version, st, reply);
        if (i == 3) CHECK(strstr(reply, "stale"), "late update: %s", reply);
        free(reply);
        free(body);
    }
    s_expect("SELECT status || ' ' || version FROM commerce.orders WHERE order_number = 'A1001'", "shipped 3");
    Cc__OrderUpdated *u = s_order_event("order.updated", "A1001");
    CHECK(u->order->status == CC__ORDER_STATUS__ORDER_REVIEWED && u->previous == CC__ORDER_STATUS__ORDER_ORDERED, "reviewed");
    cc__order_updated__free_unpacked(u, NULL);
    u = s_order_event("order.updated", "A1001");
    CHECK(u->order->status == CC__ORDER_STATUS__ORDER_SHIPPED && u->previous == CC__ORDER_STATUS__ORDER_REVIEWED, "shipped");
    cc__order_updated__free_unpacked(u, NULL);
    s_expect("SELECT string_agg(coalesce(from_status, '-') || '>' || to_status, ',' ORDER BY id)"
             " FROM commerce.order_audit WHERE order_number = 'A1001'", "->ordered,ordered>reviewed,reviewed>shipped");
    TEST_PASS(__func__);
}

/* commerce.status_path, for every pair of statuses, against a breadth-first
 * walk of commerce.status_transitions done here: the same reachability, the
 * shortest length, every step a row of the table. */
static void
status_walks_are_the_shortest_over_the_transition_table(void)
{
    TEST_BEGIN(__func__);
    static const char *const st[] = { "ordered", "reviewed", "shipped", "delivered", "settled", "returned", "exchanged",
                                      "cancelled" };
    enum { N = 8 };
    bool edge[N][N] = { { false } };
    PGresult *res = NULL;
    CHECK(cc_pg_run(s_pg, "SELECT from_status, to_status FROM commerce.status_transitions", &res) == 0, "transitions");
    for (int r = 0; r < PQntuples(res); r++) {
        int a = -1, b = -1;
        for (int k = 0; k < N; k++) {
            if (strcmp(PQgetvalue(res, r, 0), st[k]) == 0) a = k;
            if (strcmp(PQgetvalue(res, r, 1), st[k]) == 0) b = k;
        }
        CHECK(a >= 0 && b >= 0, "a transition between known statuses");
        edge[a][b] = true;
    }
    PQclear(res);
    for (int a = 0; a < N; a++) {
        int dist[N], queue[N], head = 0, tail = 0;
        for (int k = 0; k < N; k++) dist[k] = -1;
        dist[a] = 0;
        queue[tail++] = a;
        while (head < tail) {
            int u = queue[head++];
            for (int v = 0; v < N; v++) if (edge[u][v] && dist[v] < 0) { dist[v] = dist[u] + 1; queue[tail++] = v; }
        }
        for (int b = 0; b < N; b++) {
            if (a == b) continue;
            char sql[256];
            snprintf(sql, sizeof sql, "SELECT coalesce(array_to_string(commerce.status_path('%s', '%s'), ' '), '-')", st[a], st[b]);
            char *path = s_one(sql);
            if (dist[b] < 0) {
                CHECK(strcmp(path, "-") == 0, "%s -> %s has no walk, got %s", st[a], st[b], path);
            } else {
                int steps = 0, prev = a;
                for (char *save = NULL, *t = strtok_r(path, " ", &save); t; t = strtok_r(NULL, " ", &save), steps++) {
                    int k = -1;
                    for (int i = 0; i < N; i++) if (strcmp(t, st[i]) == 0) k = i;
                    CHECK(k >= 0 && edge[prev][k], "%s -> %s: step %s is not a transition", st[a], st[b], t);
                    prev = k;
                }
                CHECK(prev == b && steps == dist[b], "%s -> %s: %d steps ending at %s, shortest is %d", st[a], st[b], steps,
                      st[prev], dist[b]);
            }
            free(path);
        }
    }
    s_expect("SELECT coalesce(array_to_string(commerce.status_path('shipped', 'ordered'), ' '), '-')", "-");
    s_expect("SELECT count(*) FROM commerce.status_transitions WHERE from_status = 'cancelled'", "0");
    s_expect("SELECT array_to_string(commerce.status_path('ordered', 'shipped'), ' ')", "reviewed shipped");
    TEST_PASS(__func__);
}

static void
lookups_by_order_number_and_phone(void)
{
    TEST_BEGIN(__func__);
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "os_test", .retry_ms = 500, .max_attempts = 3 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__OrderLookup q = CC__ORDER_LOOKUP__INIT;
    q.order_number = "A1001";
    uint8_t buf[128];
    size_t len = cc__order_lookup__pack(&q, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(c, "order.lookup", buf, len, 3000, &r) == 0 && r->status == 0, "by number");
    Cc__OrderList *l = cc__order_list__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(l && l->n_orders == 1 && l->orders[0]->status == CC__ORDER_STATUS__ORDER_SHIPPED
          && l->orders[0]->total->minor == 25980, "A1001 shipped, 259.80");
    cc__order_list__free_unpacked(l, NULL);
    cc__reply__free_unpacked(r, NULL);
    q.order_number = "";
    q.phone = "13800138000";
    len = cc__order_lookup__pack(&q, buf);
    CHECK(cc_rpc_call_sync(c, "order.lookup", buf, len, 3000, &r) == 0 && r->status == 0, "by phone");
    l = cc__order_list__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(l && l->n_orders == 2, "the phone's two orders: %zu", l ? l->n_orders : 0);
    cc__order_list__free_unpacked(l, NULL);
    cc__reply__free_unpacked(r, NULL);
    q.phone = "";
    q.order_number = "NOPE";
    len = cc__order_lookup__pack(&q, buf);
    CHECK(cc_rpc_call_sync(c, "order.lookup", buf, len, 3000, &r) == 0 && r->status == CC__STATUS__STATUS_NOT_FOUND, "none");
    cc__reply__free_unpacked(r, NULL);
    cc_rpc_client_destroy(&c);
    TEST_PASS(__func__);
}

static void
a_platform_added_is_taken_after_sighup(void)
{
    TEST_BEGIN(__func__);
    char b64[64], sql[256], *reply = NULL;
    sodium_bin2base64(b64, sizeof b64, s_key, sizeof s_key, sodium_base64_VARIANT_ORIGINAL);
    snprintf(sql, sizeof sql, "INSERT INTO commerce.platforms (name, secret) VALUES ('late-shop', 'whsec_%s')", b64);
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "%s", cc_pg_error(s_pg));
    char *body = s_order("LATE-1", "ordered", 1, 1, "Late");
    /* The table is re-read every 10 minutes in this test: not yet known. */
    CHECK(s_post_to("/webhooks/late-shop", "late-1", time(NULL), body, false, &reply) == 404, "before SIGHUP: %s", reply);
    free(reply);
    kill(s_os, SIGHUP);
    int st = 404;
    for (int attempt = 0; attempt < 100 && st == 404; attempt++) {
        if (attempt) cc_sleep_ms(20);
        st = s_post_to("/webhooks/late-shop", "late-1", time(NULL), body, false, &reply);
        if (st != 404) CHECK(st == 200 && strstr(reply, "applied"), "after SIGHUP: %d %s", st, reply);
        free(reply);
    }
    CHECK(st == 200, "late-shop taken after SIGHUP");
    free(body);
    s_expect("SELECT platform FROM commerce.orders WHERE order_number = 'LATE-1'", "late-shop");
    TEST_PASS(__func__);
}

/* Shopify's REST order JSON, trimmed to what a real orders/create carries
 * about money, lines, the customer and the address. */
static const char *s_shopify_order_1001 =
    "{\"id\":5832014807213,\"admin_graphql_api_id\":\"gid://shopify/Order/5832014807213\",\"name\":\"#1001\","
    "\"order_number\":1001,\"email\":\"jane.doe@example.com\",\"phone\":null,"
    "\"created_at\":\"2026-12-01T09:15:02-05:00\",\"updated_at\":\"%s\",\"cancelled_at\":null,\"closed_at\":null,"
    "\"currency\":\"USD\",\"presentment_currency\":\"USD\",\"financial_status\":\"%s\",\"fulfillment_status\":%s,"
    "\"subtotal_price\":\"289.90\",\"total_tax\":\"23.19\",\"total_discounts\":\"0.00\",\"total_price\":\"318.09\","
    "\"total_shipping_price_set\":{\"shop_money\":{\"amount\":\"5.00\",\"currency_code\":\"USD\"}},"
    "\"note\":\"Leave at the back door\","
    "\"customer\":{\"id\":7391124537517,\"email\":\"jane.doe@example.com\",\"first_name\":\"Jane\",\"last_name\":\"Doe\","
    "\"phone\":\"+16135550142\",\"state\":\"enabled\",\"currency\":\"USD\"},"
    "\"shipping_address\":{\"first_name\":\"Jane\",\"last_name\":\"Doe\",\"name\":\"Jane Doe\",\"address1\":\"150 Elgin Street\","
    "\"address2\":\"Suite 800\",\"city\":\"Ottawa\",\"province\":\"Ontario\",\"province_code\":\"ON\",\"zip\":\"K2P 1L4\","
    "\"country\":\"Canada\",\"country_code\":\"CA\",\"phone\":\"+16135550142\"},"
    "\"line_items\":["
    "{\"id\":14621785833645,\"variant_id\":43720158675117,\"product_id\":7951734308013,\"title\":\"Espresso Machine\","
    "\"name\":\"Espresso Machine - Steel\",\"sku\":\"ESP-100-STL\",\"quantity\":1,\"price\":\"199.99\",\"fulfillable_quantity\":1},"
    "{\"id\":14621785866413,\"variant_id\":43720158707885,\"title\":\"Milk Jug\",\"name\":\"Milk Jug\",\"sku\":\"JUG-350\","
    "\"quantity\":2,\"price\":\"14.50\"},"
    "{\"id\":14621785899181,\"variant_id\":43720158740653,\"title\":\"Coffee Beans\",\"name\":\"Coffee Beans - 1kg\","
    "\"sku\":\"\",\"quantity\":3,\"price\":\"19.98\"},"
    "{\"id\":14621785931949,\"variant_id\":43720158773421,\"title\":\"Tamper\",\"name\":\"Tamper\",\"sku\":\"TMP-58\","
    "\"quantity\":1,\"price\":\"0.97\"},"
    "{\"id\":14621785964717,\"variant_id\":null,\"title\":\"Gift wrap\",\"name\":\"Gift wrap\",\"sku\":null,\"quantity\":1,"
    "\"price\":\"0.00\"}],"
    "\"fulfillments\":[%s]}";

static char *
s_shopify_1001(const char *updated_at, const char *financial, const char *fulfillment, const char *fulfillments)
{
    char *b = NULL;
    if (asprintf(&b, s_shopify_order_1001, updated_at, financial, fulfillment, fulfillments) < 0) abort();
    return b;
}

static void
shopify_orders_as_shopify_sends_them_are_mapped_exactly(void)
{
    TEST_BEGIN(__func__);
    char *reply = NULL, *body = s_shopify_1001("2026-12-01T09:15:04-05:00", "pending", "null", "");
    int st = s_shopify("orders/create", "b4b1c7d2-0001", body, false, &reply);
    CHECK(st == 200 && strstr(reply, "applied"), "orders/create: %d %s", st, reply);
    free(reply);
    free(body);
    s_expect("SELECT status || ' ' || total_minor || ' ' || currency || ' ' || external_id || ' ' || platform"
             " FROM commerce.orders WHERE order_number = '1001'", "ordered 31809 USD 5832014807213 acme");
    s_expect("SELECT string_agg(sku || ' x' || quantity || ' @' || unit_minor, ', ' ORDER BY line)"
             " FROM commerce.order_items WHERE order_number = '1001'",
             "ESP-100-STL x1 @19999, JUG-350 x2 @1450, variant-43720158740653 x3 @1998, TMP-58 x1 @97,"
             " item-14621785964717 x1 @0");
    s_expect("SELECT c.name || ' ' || c.phone || ' ' || c.email FROM commerce.orders o JOIN commerce.customers c"
             " ON c.id = o.customer_id WHERE o.order_number = '1001'", "Jane Doe +16135550142 jane.doe@example.com");
    s_expect("SELECT shipping_address->>'line1' || ', ' || (shipping_address->>'city') || ' ' ||"
             " (shipping_address->>'postal_code') || ' ' || (shipping_address->>'country') || ' / ' || note"
             " FROM commerce.orders WHERE order_number = '1001'", "150 Elgin Street, Ottawa K2P 1L4 CA / Leave at the back door");
    Cc__OrderUpdated *u = s_order_event("order.created", "1001");
    CHECK(u->order->total->minor == 31809 && strcmp(u->order->platform, "acme") == 0, "order.created 318.09");
    cc__order_updated__free_unpacked(u, NULL);

    body = s_shopify_1001("2026-12-01T09:16:30-05:00", "paid", "null", "");
    CHECK(s_shopify("orders/paid", "b4b1c7d2-0002", body, false, &reply) == 200 && strstr(reply, "applied"), "%s", reply);
    free(reply);
    /* Shopify delivers again when unsure: the same webhook id is not applied twice. */
    CHECK(s_shopify("orders/paid", "b4b1c7d2-0002", body, false, &reply) == 200 && strstr(reply, "duplicate"), "%s", reply);
    free(reply);
    free(body);
    s_expect("SELECT status || ' ' || financial_status FROM commerce.orders WHERE order_number = '1001'", "reviewed paid");

    const char *fulfillment =
        "{\"id\":4903759724717,\"order_id\":5832014807213,\"status\":\"success\",\"created_at\":\"2026-12-02T11:00:00-05:00\","
        "\"service\":\"manual\",\"updated_at\":\"2026-12-02T11:00:00-05:00\",\"tracking_company\":\"UPS\","
        "\"shipment_status\":null,\"location_id\":null,\"line_items\":[{\"id\":14621785833645,\"quantity\":1}],"
        "\"tracking_number\":\"1Z999AA10123456784\",\"tracking_numbers\":[\"1Z999AA10123456784\"],"
        "\"tracking_url\":\"https://www.ups.com/WebTracking?trackNums=1Z999AA10123456784\",\"name\":\"#1001.1\"}";
    CHECK(s_shopify("fulfillments/create", "b4b1c7d2-0003", fulfillment, false, &reply) == 200
          && strstr(reply, "applied"), "fulfillments/create: %s", reply);
    free(reply);
    s_expect("SELECT carrier || ' ' || tracking_number || ' ' || status FROM commerce.shipments"
             " WHERE platform = 'acme' AND external_id = '4903759724717'", "UPS 1Z999AA10123456784 in_transit");
    s_expect("SELECT status FROM commerce.orders WHERE order_number = '1001'", "shipped");
    Cc__Envelope *env = s_event("shipment.updated", "1001");
    Cc__ShipmentUpdated *su = cc__shipment_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(su && strcmp(su->shipment->tracking_number, "1Z999AA10123456784") == 0 && strcmp(su->shipment->carrier, "UPS") == 0,
          "shipment.updated with the tracking number");
    cc__shipment_updated__free_unpacked(su, NULL);
    cc__envelope__free_unpacked(env, NULL);

    /* The order again, fulfilled and delivered, as orders/updated carries it. */
    char delivered[1024];
    snprintf(delivered, sizeof delivered,
             "{\"id\":4903759724717,\"order_id\":5832014807213,\"status\":\"success\",\"created_at\":\"2026-12-02T11:00:00-05:00\","
             "\"updated_at\":\"2026-12-03T14:59:00-05:00\",\"tracking_company\":\"UPS\",\"shipment_status\":\"delivered\","
             "\"line_items\":[{\"id\":14621785833645,\"quantity\":1}],\"tracking_number\":\"1Z999AA10123456784\","
             "\"tracking_numbers\":[\"1Z999AA10123456784\"]}");
    body = s_shopify_1001("2026-12-03T15:00:00-05:00", "paid", "\"fulfilled\"", delivered);
    CHECK(s_shopify("orders/updated", "b4b1c7d2-0004", body, false, &reply) == 200 && strstr(reply, "applied"), "%s", reply);
    free(reply);
    free(body);
    s_expect("SELECT o.status || ' ' || s.status || ' ' || (SELECT string_agg(line || ':' || quantity, ',')"
             " FROM commerce.shipment_items WHERE shipment_id = s.id)"
             " FROM commerce.orders o JOIN commerce.shipments s USING (order_number) WHERE o.order_number = '1001'",
             "delivered delivered 1:1");
    /* An older orders/updated arriving late changes nothing. */
    body = s_shopify_1001("2026-12-01T09:16:00-05:00", "pending", "null", "");
    CHECK(s_shopify("orders/updated", "b4b1c7d2-0005", body, false, &reply) == 200 && strstr(reply, "stale"), "%s", reply);
    free(reply);
    free(body);
    s_expect("SELECT string_agg(coalesce(from_status, '-') || '>' || to_status, ',' ORDER BY id)"
             " FROM commerce.order_audit WHERE order_number = '1001'",
             "->ordered,ordered>reviewed,reviewed>shipped,shipped>delivered");

    /* A yen order (no minor unit) cancelled before payment. */
    const char *yen =
        "{\"id\":5832014807214,\"name\":\"#1002\",\"order_number\":1002,\"updated_at\":\"2026-12-01T12:00:00+09:00\","
        "\"cancelled_at\":\"2026-12-01T12:00:00+09:00\",\"cancel_reason\":\"customer\",\"currency\":\"JPY\","
        "\"financial_status\":\"voided\",\"fulfillment_status\":null,\"total_price\":\"12800\","
        "\"customer\":{\"id\":7391124537518,\"first_name\":\"Taro\",\"last_name\":\"Yamada\",\"phone\":\"+81312345678\"},"
        "\"line_items\":[{\"id\":14621785997485,\"variant_id\":43720158806189,\"title\":\"Kettle\",\"sku\":\"KTL-1\","
        "\"quantity\":1,\"price\":\"12800\"}],\"fulfillments\":[]}";
    CHECK(s_shopify("orders/cancelled", "b4b1c7d2-0006", yen, false, &reply) == 200, "%s", reply);
    free(reply);
    s_expect("SELECT status || ' ' || total_minor || ' ' || currency FROM commerce.orders WHERE order_number = '1002'",
             "cancelled 12800 JPY");
    /* Created and paid in the same second: Shopify's updated_at cannot tell
     * them apart, the status machine does (in either order of arrival). */
    const char *same_second[2] = {
        "{\"id\":5832014807215,\"name\":\"#1005\",\"updated_at\":\"2026-12-01T10:00:00Z\",\"currency\":\"USD\","
        "\"financial_status\":\"paid\",\"fulfillment_status\":null,\"total_price\":\"10.00\","
        "\"line_items\":[{\"id\":1,\"sku\":\"A\",\"quantity\":1,\"price\":\"10.00\"}]}",
        "{\"id\":5832014807215,\"name\":\"#1005\",\"updated_at\":\"2026-12-01T10:00:00Z\",\"currency\":\"USD\","
        "\"financial_status\":\"pending\",\"fulfillment_status\":null,\"total_price\":\"10.00\","
        "\"line_items\":[{\"id\":1,\"sku\":\"A\",\"quantity\":1,\"price\":\"10.00\"}]}" };
    CHECK(s_shopify("orders/create", "b4b1c7d2-0007", same_second[1], false, &reply) == 200 && strstr(reply, "applied"), "%s", reply);
    free(reply);
    CHECK(s_shopify("orders/paid", "b4b1c7d2-0008", same_second[0], false, &reply) == 200 && strstr(reply, "applied"), "%s", reply);
    free(reply);
    CHECK(s_shopify("orders/updated", "b4b1c7d2-0009", same_second[1], false, &reply) == 200 && strstr(reply, "stale"), "%s", reply);
    free(reply);
    s_expect("SELECT status FROM commerce.orders WHERE order_number = '1005'", "reviewed");

    /* customers/update: Shopify's customer JSON, two addresses, no phone of its own. */
    const char *customer =
        "{\"id\":7391124537517,\"email\":\"jane.doe@example.com\",\"created_at\":\"2026-11-02T08:00:00-05:00\","
        "\"updated_at\":\"2026-12-04T10:00:00-05:00\",\"first_name\":\"Jane\",\"last_name\":\"Doe-Smith\","
        "\"orders_count\":1,\"state\":\"enabled\",\"total_spent\":\"318.09\",\"note\":\"Prefers evening calls\","
        "\"verified_email\":true,\"tags\":\"\",\"currency\":\"USD\",\"phone\":null,\"addresses\":["
        "{\"id\":9075409068205,\"customer_id\":7391124537517,\"first_name\":\"Jane\",\"last_name\":\"Doe-Smith\","
        "\"address1\":\"150 Elgin Street\",\"address2\":\"Suite 800\",\"city\":\"Ottawa\",\"province\":\"Ontario\","
        "\"country\":\"Canada\",\"zip\":\"K2P 1L4\",\"phone\":\"+16135550142\",\"name\":\"Jane Doe-Smith\","
        "\"province_code\":\"ON\",\"country_code\":\"CA\",\"default\":true},"
        "{\"id\":9075409068206,\"customer_id\":7391124537517,\"first_name\":\"Jane\",\"last_name\":\"Doe-Smith\","
        "\"address1\":\"1 Rideau St\",\"city\":\"Ottawa\",\"province\":\"Ontario\",\"country\":\"Canada\","
        "\"zip\":\"K1N 8S7\",\"phone\":\"+16135550199\",\"name\":\"Jane Doe-Smith\",\"country_code\":\"CA\","
        "\"default\":false}],"
        "\"default_address\":{\"id\":9075409068205,\"phone\":\"+16135550142\",\"default\":true}}";
    CHECK(s_shopify("customers/update", "b4b1c7d2-0010", customer, false, &reply) == 200 && strstr(reply, "applied"),
          "customers/update: %s", reply);
    free(reply);
    s_expect("SELECT name || ' | ' || phone || ' | ' || note FROM commerce.customers WHERE platform = 'acme'"
             " AND external_id = '7391124537517'", "Jane Doe-Smith | +16135550142 | Prefers evening calls");
    s_expect("SELECT string_agg(a.postal_code || ':' || a.is_default || ':' || p.phone, ',' ORDER BY a.postal_code)"
             " FROM commerce.customer_addresses a JOIN commerce.customers c ON c.id = a.customer_id"
             " JOIN commerce.customer_phones p ON p.customer_id = c.id AND p.phone = a.phone"
             " WHERE c.platform = 'acme' AND c.external_id = '7391124537517'",
             "K1N 8S7:false:+16135550199,K2P 1L4:true:+16135550142");
    env = s_event("customer.updated", "7391124537517");
    Cc__CustomerUpdated *cu = cc__customer_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(cu && cu->customer->n_phones == 2 && strcmp(cu->customer->platform, "acme") == 0, "customer.updated");
    cc__customer_updated__free_unpacked(cu, NULL);
    cc__envelope__free_unpacked(env, NULL);
    TEST_PASS(__func__);
}

static void
shopify_forged_or_malformed_webhooks_store_nothing(void)
{
    TEST_BEGIN(__func__);
    char *reply = NULL, *body = s_shopify_1001("2026-12-05T09:00:00-05:00", "paid", "null", "");
    char *other = strdup(body);
    memcpy(strstr(other, "\"#1001\""), "\"#1003\"", 7);
    CHECK(s_shopify("orders/create", "forged-1", other, true, &reply) == 401 && strstr(reply, "signature"), "forged: %s", reply);
    free(reply);
    CHECK(s_shopify("orders/create", "bad-json-1", "{\"id\":1,\"name\":", false, &reply) == 400
          && strstr(reply, "malformed JSON"), "malformed: %s", reply);
    free(reply);
    char *sub = strstr(other, "\"price\":\"199.99\"");
    memcpy(sub, "\"price\":\"19.999\"", 16);
    CHECK(s_shopify("orders/create", "fine-1", other, false, &reply) == 400 && strstr(reply, "price"), "19.999 USD: %s", reply);
    free(reply);
    CHECK(s_shopify("collections/create", "topic-1", "{\"id\":1}", false, &reply) == 400 && strstr(reply, "topic"), "%s", reply);
    free(reply);
    /* A SKU too long for the model (here 40 two-byte characters) is refused
     * with the order, never cut mid-character and its line dropped. */
    char *longsku = NULL;
    const char *at = strstr(body, "\"JUG-350\"");
    CHECK(at && asprintf(&longsku, "%.*s\"%s\"%s", (int) (at - body),
                         body, "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                         "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
                         at + strlen("\"JUG-350\"")) > 0, "long sku body");
    memcpy(strstr(longsku, "\"#1001\""), "\"#1004\"", 7);
    memcpy(strstr(longsku, "\"id\":5832014807213"), "\"id\":5832014807299", 18);   /* another order */
    memcpy(strstr(longsku, "\"order_number\":1001"), "\"order_number\":1004", 19);
    CHECK(s_shopify("orders/create", "sku-1", longsku, false, &reply) == 400 && strstr(reply, "sku"), "long sku: %s", reply);
    free(reply);
    free(longsku);
    s_expect("SELECT count(*) FROM commerce.orders WHERE order_number = '1004'", "0");
    char h[256];
    snprintf(h, sizeof h, "X-Shopify-Topic: orders/create\r\nX-Shopify-Shop-Domain: other.myshopify.com\r\n"
             "X-Shopify-Webhook-Id: dom-1\r\n");
    CHECK(s_post_body_signed("/webhooks/shopify", SHOPIFY_SECRET, "X-Shopify-Hmac-Sha256", h, body, false, &reply) == 404,
          "unknown shop: %s", reply);
    free(reply);
    /* The delivery id is not signed: a captured delivery with an edited id
     * (invalid UTF-8, control characters) is refused, and order-sync serves on. */
    CHECK(s_shopify("orders/create", "dup-\xc3\x28", body, false, &reply) == 400 && strstr(reply, "delivery id"),
          "invalid UTF-8 id: %s", reply);
    free(reply);
    CHECK(s_shopify("orders/create", "tab\there", body, false, &reply) == 400, "control character in the id: %s", reply);
    free(reply);
    CHECK(s_shopify("collections/create", "topic-2", "{\"id\":1}", false, &reply) == 400, "still serving: %s", reply);
    free(reply);
    free(other);
    free(body);
    s_expect("SELECT count(*) FROM commerce.orders WHERE order_number = '1003'", "0");
    s_expect("SELECT count(*) FROM commerce.webhook_events WHERE event_id IN ('forged-1', 'bad-json-1', 'fine-1', 'topic-1', 'dom-1')",
             "0");
    s_expect("SELECT status FROM commerce.orders WHERE order_number = '1001'", "delivered");
    TEST_PASS(__func__);
}

static void
woocommerce_orders_are_mapped(void)
{
    TEST_BEGIN(__func__);
    const char *order =
        "{\"id\":727,\"parent_id\":0,\"number\":\"727\",\"order_key\":\"wc_order_58d2d042d1d\",\"created_via\":\"checkout\","
        "\"version\":\"8.3.1\",\"status\":\"processing\",\"currency\":\"EUR\",\"date_created\":\"2026-12-01T10:00:00\","
        "\"date_created_gmt\":\"2026-12-01T09:00:00\",\"date_modified\":\"2026-12-01T10:05:00\","
        "\"date_modified_gmt\":\"2026-12-01T09:05:00\",\"discount_total\":\"0.00\",\"shipping_total\":\"4.90\","
        "\"total\":\"45.40\",\"total_tax\":\"0.00\",\"customer_id\":26,\"customer_note\":\"\","
        "\"billing\":{\"first_name\":\"Marie\",\"last_name\":\"Curie\",\"address_1\":\"11 Rue Pierre et Marie Curie\","
        "\"city\":\"Paris\",\"postcode\":\"75005\",\"country\":\"FR\",\"email\":\"marie@example.fr\",\"phone\":\"+33142345678\"},"
        "\"shipping\":{\"first_name\":\"Marie\",\"last_name\":\"Curie\",\"address_1\":\"11 Rue Pierre et Marie Curie\","
        "\"address_2\":\"\",\"city\":\"Paris\",\"state\":\"\",\"postcode\":\"75005\",\"country\":\"FR\"},"
        "\"payment_method\":\"bacs\",\"line_items\":["
        "{\"id\":315,\"name\":\"Lab Notebook\",\"product_id\":93,\"variation_id\":0,\"quantity\":2,\"subtotal\":\"25.00\","
        "\"total\":\"25.00\",\"sku\":\"NB-A5\",\"price\":12.5},"
        "{\"id\":316,\"name\":\"Pencil\",\"product_id\":94,\"variation_id\":0,\"quantity\":5,\"subtotal\":\"15.50\","
        "\"total\":\"15.50\",\"sku\":\"\",\"price\":3.1}]}";
    const char *headers = "X-WC-Webhook-Source: https://woo.example.com/\r\nX-WC-Webhook-Topic: order.created\r\n"
                          "X-WC-Webhook-Resource: order\r\nX-WC-Webhook-Event: created\r\nX-WC-Webhook-ID: 12\r\n"
                          "X-WC-Webhook-Delivery-ID: 9f1c2a\r\n";
    char *reply = NULL;
    /* Saving a webhook in WooCommerce pings it first. */
    CHECK(cc_harness_http_post(s_http, "/webhooks/woocommerce", "X-WC-Webhook-ID: 12\r\n", "webhook_id=12", &reply) == 200
          && strstr(reply, "ping"), "ping: %s", reply);
    free(reply);
    CHECK(s_post_body_signed("/webhooks/woocommerce", WOO_SECRET, "X-WC-Webhook-Signature", headers, order, true, &reply) == 401,
          "forged: %s", reply);
    free(reply);
    int st = s_post_body_signed("/webhooks/woocommerce", WOO_SECRET, "X-WC-Webhook-Signature", headers, order, false, &reply);
    CHECK(st == 200 && strstr(reply, "applied"), "%d %s", st, reply);
    free(reply);
    s_expect("SELECT o.status || ' ' || o.total_minor || ' ' || o.currency || ' ' || c.name || ' ' || c.phone"
             " FROM commerce.orders o JOIN commerce.customers c ON c.id = o.customer_id WHERE o.order_number = '727'",
             "reviewed 4540 EUR Marie Curie +33142345678");
    s_expect("SELECT string_agg(sku || ' x' || quantity || ' @' || unit_minor, ', ' ORDER BY line)"
             " FROM commerce.order_items WHERE order_number = '727'", "NB-A5 x2 @1250, product-94 x5 @310");
    /* A product: WooCommerce's JSON names no currency; the shop's (EUR) is used. */
    const char *product =
        "{\"id\":93,\"name\":\"Lab Notebook\",\"slug\":\"lab-notebook\",\"type\":\"simple\",\"status\":\"publish\","
        "\"sku\":\"NB-A5\",\"price\":\"12.50\",\"regular_price\":\"12.50\",\"sale_price\":\"\","
        "\"date_created_gmt\":\"2026-11-01T08:00:00\",\"date_modified_gmt\":\"2026-12-01T08:00:00\","
        "\"short_description\":\"A5, dotted, 120 pages\",\"categories\":[{\"id\":9,\"name\":\"Stationery\","
        "\"slug\":\"stationery\"}],\"stock_quantity\":120,\"stock_status\":\"instock\"}";
    const char *ph = "X-WC-Webhook-Source: https://woo.example.com/\r\nX-WC-Webhook-Topic: product.updated\r\n"
                     "X-WC-Webhook-Delivery-ID: 9f1c2b\r\n";
    st = s_post_body_signed("/webhooks/woocommerce", WOO_SECRET, "X-WC-Webhook-Signature", ph, product, false, &reply);
    CHECK(st == 200 && strstr(reply, "applied"), "product: %d %s", st, reply);
    free(reply);
    s_expect("SELECT name || ' ' || price_minor || ' ' || currency || ' ' || category || ' ' || status || ' ' || platform"
             " FROM commerce.products WHERE code = 'NB-A5'", "Lab Notebook 1250 EUR Stationery active woo1");
    TEST_PASS(__func__);
}

static void
s_standard_ok(const char *id, const char *body, const char *want)
{
    char *reply = NULL;
    int st = s_post(id, time(NULL), body, false, &reply);
    CHECK(st == 200 && strstr(reply, want), "%s: %d %s", id, st, reply);
    free(reply);
}

static void
s_standard_refused(const char *id, const char *body, int code, const char *want)
{
    char *reply = NULL;
    int st = s_post(id, time(NULL), body, false, &reply);
    CHECK(st == code && strstr(reply, want), "%s: %d %s (want %d %s)", id, st, reply, code, want);
    free(reply);
}

static void
customers_products_stock_payments_and_shipments_are_kept_and_told(void)
{
    TEST_BEGIN(__func__);
    s_standard_ok("cu-1", "{\"type\":\"customer.updated\",\"data\":{\"id\":\"c-77\",\"name\":\"李雷\",\"phone\":\"13800138000\","
                  "\"phones\":[{\"phone\":\"13800138000\"},{\"phone\":\"010-62345678\",\"kind\":\"home\"}],"
                  "\"email\":\"li@example.com\",\"category\":\"vip\",\"birthday\":\"1990-05-17\","
                  "\"custom_fields\":{\"wechat\":\"lilei90\"},\"addresses\":[{\"kind\":\"shipping\",\"name\":\"李雷\","
                  "\"line1\":\"1 Zhongguancun St\",\"city\":\"Beijing\",\"postal_code\":\"100080\",\"country\":\"CN\","
                  "\"is_default\":true}],\"version\":10}}", "applied");
    s_expect("SELECT name || ' ' || category || ' ' || birthday || ' ' || (custom_fields->>'wechat')"
             " FROM commerce.customers WHERE platform = 'shop1' AND external_id = 'c-77'", "李雷 vip 1990-05-17 lilei90");
    s_expect("SELECT string_agg(p.phone || ':' || p.kind, ',' ORDER BY p.phone) FROM commerce.customer_phones p"
             " JOIN commerce.customers c ON c.id = p.customer_id WHERE c.platform = 'shop1' AND c.external_id = 'c-77'",
             "010-62345678:home,13800138000:mobile");
    s_expect("SELECT a.city || ' ' || a.postal_code || ' ' || a.is_default FROM commerce.customer_addresses a"
             " JOIN commerce.customers c ON c.id = a.customer_id WHERE c.platform = 'shop1' AND c.external_id = 'c-77'", "Beijing 100080 true");
    Cc__Envelope *env = s_event("customer.updated", "c-77");
    Cc__CustomerUpdated *cu = cc__customer_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(cu && cu->customer->n_phones == 2 && strcmp(cu->customer->category, "vip") == 0
          && strcmp(cu->customer->name, "李雷") == 0, "customer.updated with two phones, vip");
    cc__customer_updated__free_unpacked(cu, NULL);
    cc__envelope__free_unpacked(env, NULL);
    s_standard_ok("cu-2", "{\"type\":\"customer.updated\",\"data\":{\"id\":\"c-77\",\"category\":\"regular\",\"version\":9}}",
                  "stale");
    s_expect("SELECT category FROM commerce.customers WHERE platform = 'shop1' AND external_id = 'c-77'", "vip");

    s_standard_ok("pr-1", "{\"type\":\"product.updated\",\"data\":{\"code\":\"TV-55\",\"name\":\"55-inch OLED TV\","
                  "\"price\":1299000,\"currency\":\"CNY\",\"category\":\"tv\",\"specification\":{\"size\":\"55 inch\","
                  "\"panel\":\"OLED\"},\"version\":3}}", "applied");
    s_expect("SELECT name || ' ' || price_minor || ' ' || (specification->>'panel') FROM commerce.products WHERE code = 'TV-55'",
             "55-inch OLED TV 1299000 OLED");
    s_standard_ok("st-1", "{\"type\":\"stock.changed\",\"data\":{\"product_code\":\"TV-55\",\"warehouse\":\"BJ-1\","
                  "\"on_hand\":40,\"version\":1}}", "applied");
    s_standard_ok("st-2", "{\"type\":\"stock.changed\",\"data\":{\"product_code\":\"TV-55\",\"warehouse\":\"BJ-1\","
                  "\"on_hand\":35,\"version\":2}}", "applied");
    s_standard_ok("st-3", "{\"type\":\"stock.changed\",\"data\":{\"product_code\":\"TV-55\",\"warehouse\":\"BJ-1\","
                  "\"on_hand\":99,\"version\":1}}", "stale");
    s_standard_refused("st-4", "{\"type\":\"stock.changed\",\"data\":{\"product_code\":\"NOPE\",\"warehouse\":\"BJ-1\","
                       "\"on_hand\":1,\"version\":1}}", 422, "no such product");
    s_standard_refused("st-5", "{\"type\":\"stock.changed\",\"data\":{\"product_code\":\"TV-55\",\"warehouse\":\"BJ-1\","
                       "\"on_hand\":-3,\"version\":3}}", 400, "on_hand");
    s_expect("SELECT on_hand || ' ' || reserved FROM commerce.stock WHERE product_code = 'TV-55' AND warehouse_code = 'BJ-1'",
             "35 0");
    s_expect("SELECT string_agg(coalesce(from_warehouse, '-') || '>' || coalesce(to_warehouse, '-') || ' ' || quantity, ','"
             " ORDER BY id) FROM commerce.stock_movements WHERE product_code = 'TV-55'", "->BJ-1 40,BJ-1>- 5");
    env = s_event("stock.changed", "TV-55");
    cc__envelope__free_unpacked(env, NULL);
    env = s_event("stock.changed", "TV-55");
    Cc__StockChanged *sc = cc__stock_changed__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(sc && sc->on_hand == 35 && strcmp(sc->warehouse, "BJ-1") == 0, "stock.changed 35 in BJ-1");
    cc__stock_changed__free_unpacked(sc, NULL);
    cc__envelope__free_unpacked(env, NULL);

    s_standard_ok("pa-1", "{\"type\":\"payment.updated\",\"data\":{\"id\":\"pay-1\",\"order_number\":\"A1001\","
                  "\"method\":\"card\",\"amount\":25980,\"currency\":\"CNY\",\"reference\":\"ch_3Nq\",\"version\":1}}", "applied");
    s_standard_refused("pa-2", "{\"type\":\"payment.updated\",\"data\":{\"id\":\"pay-2\",\"order_number\":\"NOPE\","
                       "\"method\":\"card\",\"amount\":1,\"currency\":\"CNY\",\"version\":1}}", 422, "no such order");
    s_expect("SELECT order_number || ' ' || method || ' ' || amount_minor || ' ' || status FROM commerce.payments"
             " WHERE external_id = 'pay-1'", "A1001 card 25980 paid");

    s_standard_ok("sh-1", "{\"type\":\"shipment.updated\",\"data\":{\"id\":\"sh-1\",\"order_number\":\"A1002\","
                  "\"carrier\":\"SF Express\",\"tracking_number\":\"SF1234567890\",\"fee\":1200,\"currency\":\"CNY\","
                  "\"status\":\"in_transit\",\"version\":1,\"events\":[{\"at\":\"2026-12-01T08:00:00Z\","
                  "\"status\":\"picked_up\",\"location\":\"Beijing\"}]}}", "applied");
    s_expect("SELECT s.carrier || ' ' || s.fee_minor || ' ' || e.status || ' ' || e.location FROM commerce.shipments s"
             " JOIN commerce.shipment_events e ON e.shipment_id = s.id WHERE s.external_id = 'sh-1'",
             "SF Express 1200 picked_up Beijing");
    s_expect("SELECT string_agg(coalesce(from_status, '-') || '>' || to_status, ',' ORDER BY id)"
             " FROM commerce.order_audit WHERE order_number = 'A1002'", "->ordered,ordered>reviewed,reviewed>shipped");
    env = s_event("shipment.updated", "A1002");
    Cc__ShipmentUpdated *su = cc__shipment_updated__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(su && strcmp(su->shipment->status, "in_transit") == 0 && su->shipment->fee->minor == 1200, "shipment.updated");
    cc__shipment_updated__free_unpacked(su, NULL);
    cc__envelope__free_unpacked(env, NULL);
    Cc__OrderUpdated *u = s_order_event("order.updated", "A1002");
    CHECK(u->order->status == CC__ORDER_STATUS__ORDER_SHIPPED, "A1002 shipped");
    cc__order_updated__free_unpacked(u, NULL);
    s_standard_refused("sh-2", "{\"type\":\"shipment.updated\",\"data\":{\"id\":\"sh-2\",\"order_number\":\"A1002\","
                       "\"status\":\"teleported\",\"version\":1}}", 400, "status");
    s_standard_refused("ty-1", "{\"type\":\"order.deleted\",\"data\":{}}", 400, "type");
    char longname[400], *body = NULL;
    memset(longname, 'x', 201);
    longname[201] = '\0';
    if (asprintf(&body, "{\"type\":\"customer.updated\",\"data\":{\"id\":\"c-long\",\"name\":\"%s\",\"version\":1}}",
                 longname) < 0)
        abort();
    s_standard_refused("lo-1", body, 400, "data.name must be text of 0 to 200 characters");
    free(body);
    s_expect("SELECT count(*) FROM commerce.customers WHERE external_id = 'c-long'", "0");
    TEST_PASS(__func__);
}

static void
bulk_import_of_events_and_csv_of_customers_and_products(void)
{
    TEST_BEGIN(__func__);
    const char *events =
        "[{\"type\":\"product.updated\",\"id\":\"imp-1\",\"data\":{\"code\":\"KB-1\",\"name\":\"Keyboard\",\"price\":4999,"
        "\"currency\":\"USD\",\"version\":1}},"
        "{\"type\":\"product.updated\",\"id\":\"imp-2\",\"data\":{\"code\":\"KB-2\",\"name\":\"Mouse\",\"price\":-1,"
        "\"currency\":\"USD\",\"version\":1}},"
        "{\"type\":\"stock.changed\",\"id\":\"imp-3\",\"data\":{\"product_code\":\"KB-1\",\"warehouse\":\"SH-2\","
        "\"on_hand\":12,\"version\":1}},"
        "{\"type\":\"product.updated\",\"id\":\"imp-1\",\"data\":{\"code\":\"KB-1\",\"name\":\"Keyboard\",\"price\":4999,"
        "\"currency\":\"USD\",\"version\":1}},"
        "{\"type\":\"customer.updated\",\"data\":{\"id\":\"c-900\",\"name\":\"Zhao Min\",\"phone\":\"13900139000\",\"version\":1}}]";
    char *reply = NULL;
    int st = s_post_to("/import/shop1", "bulk-1", time(NULL), events, false, &reply);
    CHECK(st == 200 && strstr(reply, "\"applied\":3") && strstr(reply, "\"duplicate\":1") && strstr(reply, "\"refused\":1")
          && strstr(reply, "price"), "%d %s", st, reply);
    free(reply);
    s_expect("SELECT p.name || ' ' || p.price_minor || ' ' || s.on_hand FROM commerce.products p JOIN commerce.stock s"
             " ON s.product_code = p.code WHERE p.code = 'KB-1' AND s.warehouse_code = 'SH-2'", "Keyboard 4999 12");
    s_expect("SELECT count(*) FROM commerce.products WHERE code = 'KB-2'", "0");
    s_expect("SELECT name FROM commerce.customers WHERE external_id = 'c-900'", "Zhao Min");
    /* New orders go in set-wise; one the database refuses (a currency in
     * lower case) sends its batch the one-by-one way: only it is refused. */
    char *orders = NULL, *list = strdup("[");
    for (int i = 0; i < 8; i++) {
        char *next = NULL;
        if (asprintf(&next, "%s%s{\"type\":\"order.created\",\"id\":\"bi-%d\",\"data\":{\"order_number\":\"BI-%d\","
                            "\"status\":\"ordered\",\"total\":1000,\"currency\":\"%s\",\"version\":1,"
                            "\"customer\":{\"id\":\"bi-c%d\",\"name\":\"Batch\",\"phone\":\"1390000000%d\"},"
                            "\"items\":[{\"sku\":\"A\",\"quantity\":1,\"unit_price\":500},"
                            "{\"sku\":\"B\",\"quantity\":1,\"unit_price\":500}]}}",
                     list, i ? "," : "", i, i, i == 3 ? "cny" : "CNY", i, i) < 0)
            abort();
        free(list);
        list = next;
    }
    if (asprintf(&orders, "%s]", list) < 0) abort();
    free(list);
    st = s_post_to("/import/shop1", "bulk-7", time(NULL), orders, false, &reply);
    CHECK(st == 200 && strstr(reply, "\"applied\":7") && strstr(reply, "\"refused\":1") && strstr(reply, "currency"),
          "orders: %d %s", st, reply);
    free(reply);
    free(orders);
    s_expect("SELECT string_agg(o.order_number || ':' || (SELECT count(*) FROM commerce.order_items i"
             " WHERE i.order_number = o.order_number), ',' ORDER BY o.order_number) FROM commerce.orders o"
             " WHERE o.order_number LIKE 'BI-%'", "BI-0:2,BI-1:2,BI-2:2,BI-4:2,BI-5:2,BI-6:2,BI-7:2");
    s_expect("SELECT count(*) FROM commerce.webhook_events WHERE event_id = 'bi-3'", "0");
    CHECK(s_post_to("/import/shop1", "bulk-2", time(NULL), events, true, &reply) == 401, "forged import: %s", reply);
    free(reply);
    CHECK(s_post_to("/import/shop1", "bulk-3", time(NULL), "[{\"type\":", false, &reply) == 400
          && strstr(reply, "malformed JSON"), "%s", reply);
    free(reply);

    const char *customers =
        "id,name,phone,email,category,birthday,phones\r\n"
        "c-901,\"Wang, \"\"Xiao\"\" Ming\",+8613912345678,wxm@example.cn,vip,1988-08-08,+8613912345678;021-5555-0101\r\n"
        "c-902,Chen Jing,13700137000,,regular,,\r\n"
        "c-903,Bad Date,13600136000,,regular,1990-13-45,\r\n"
        "c-904,Too,Many,Fields,x,y,z,w\r\n";
    st = s_post_to("/import/shop1/customers.csv", "bulk-4", time(NULL), customers, false, &reply);
    CHECK(st == 200 && strstr(reply, "\"applied\":2") && strstr(reply, "\"refused\":2") && strstr(reply, "line 5: has 8 fields"),
          "customers.csv: %d %s", st, reply);
    free(reply);
    s_expect("SELECT name || ' | ' || phone || ' | ' || category || ' | ' || birthday FROM commerce.customers"
             " WHERE external_id = 'c-901'", "Wang, \"Xiao\" Ming | +8613912345678 | vip | 1988-08-08");
    s_expect("SELECT count(*) FROM commerce.customer_phones p JOIN commerce.customers c ON c.id = p.customer_id"
             " WHERE c.external_id = 'c-901'", "2");
    s_expect("SELECT count(*) FROM commerce.customers WHERE external_id IN ('c-903', 'c-904')", "0");

    const char *products = "code,name,price,currency,category\n"
                           "TEA-1,Oolong Tea,12.50,USD,tea\n"
                           "TEA-2,\"Jasmine, premium\",8,USD,tea\n"
                           "TEA-3,Bad Price,1.234,USD,tea\n";
    st = s_post_to("/import/shop1/products.csv", "bulk-5", time(NULL), products, false, &reply);
    CHECK(st == 200 && strstr(reply, "\"applied\":2") && strstr(reply, "\"refused\":1"), "products.csv: %d %s", st, reply);
    free(reply);
    s_expect("SELECT string_agg(code || '=' || price_minor, ',' ORDER BY code) FROM commerce.products WHERE category = 'tea'",
             "TEA-1=1250,TEA-2=800");
    CHECK(s_post_to("/import/shop1/products.csv", "bulk-6", time(NULL), "sku,name\nX,Y\n", false, &reply) == 400
          && strstr(reply, "unknown column sku"), "%s", reply);
    free(reply);
    TEST_PASS(__func__);
}

static void
csv_export_reads_back_as_it_was(void)
{
    TEST_BEGIN(__func__);
    char headers[512], *csv = NULL, *reply = NULL;
    s_sign("export-1", time(NULL), "", false, headers, sizeof headers);
    int st = cc_harness_http_get_with(s_http, "/export/shop1/customers.csv", headers, &csv);
    CHECK(st == 200 && csv, "export: %d", st);
    CHECK(strncmp(csv, "id,name,phone,email,category,birthday,gender,language,note,phones,version\r\n", 74) == 0, "header: %s", csv);
    CHECK(strstr(csv, "\r\nc-901,\"Wang, \"\"Xiao\"\" Ming\",\"'+8613912345678\",wxm@example.cn,vip,1988-08-08,,,,"
                      "\"'+8613912345678;021-5555-0101\","), "c-901 row quoted and guarded: %s", csv);
    /* Importing the export again: every row read back whole, nothing newer. */
    st = s_post_to("/import/shop1/customers.csv", "export-2", time(NULL), csv, false, &reply);
    CHECK(st == 200 && strstr(reply, "\"refused\":0") && strstr(reply, "\"applied\":0"), "re-import: %d %s", st, reply);
    free(reply);
    free(csv);
    s_expect("SELECT name || ' | ' || phone FROM commerce.customers WHERE external_id = 'c-901'",
             "Wang, \"Xiao\" Ming | +8613912345678");
    s_sign("export-3", time(NULL), "", false, headers, sizeof headers);
    CHECK(cc_harness_http_get_with(s_http, "/export/shop1/products.csv", headers, &csv) == 200
          && strstr(csv, "\r\nTEA-1,Oolong Tea,12.50,USD,tea,,active,") && strstr(csv, "\r\nTEA-2,\"Jasmine, premium\",8.00,USD,"),
          "products.csv: %s", csv);
    free(csv);
    CHECK(cc_harness_http_get(s_http, "/export/shop1/products.csv", &csv) == 401, "unsigned export");
    free(csv);
    TEST_PASS(__func__);
}

/* --------------------------------- two instances, the same deliveries */

#define TWIN_EVENTS 100

typedef struct { int ports[2]; int first; int applied; } s_twin_t;

static void *
s_twin(void *arg)
{
    s_twin_t *t = arg;
    for (int i = 0; i < TWIN_EVENTS; i++) {
        char number[32], id[32], headers[512], *reply = NULL;
        snprintf(number, sizeof number, "TW-%d", i);
        snprintf(id, sizeof id, "twin-%d", i);
        char *body = s_order(number, "ordered", 1, 1, "Twin");
        int st = 0;
        for (int attempt = 0; attempt < 10 && st != 200; attempt++) {   /* a platform delivers again on 503 */
            free(reply);
            reply = NULL;
            s_sign(id, time(NULL), body, false, headers, sizeof headers);
            st = cc_harness_http_post(t->ports[(i + t->first + attempt) % 2], "/webhooks/shop1", headers, body, &reply);
        }
        CHECK(st == 200, "%s: %d %s", id, st, reply);
        if (strstr(reply, "applied")) t->applied++;
        free(reply);
        free(body);
    }
    return NULL;
}

static void
two_instances_given_the_same_deliveries_apply_each_once(void)
{
    TEST_BEGIN(__func__);
    char v[64], saved_http[16], saved_admin[16], saved_rpc[64];
    snprintf(saved_http, sizeof saved_http, "%s", getenv("ORDER_SYNC_HTTP_PORT"));
    snprintf(saved_admin, sizeof saved_admin, "%s", getenv("ORDER_SYNC_ADMIN_PORT"));
    snprintf(saved_rpc, sizeof saved_rpc, "%s", getenv("ORDER_SYNC_RPC"));
    int http2 = cc_harness_free_port(), admin2 = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", http2);
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin2);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(v, sizeof v, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", v, 1);
    pid_t second = cc_harness_spawn_as(s_h, "order-sync-2", "order-sync", NULL);
    setenv("ORDER_SYNC_HTTP_PORT", saved_http, 1);
    setenv("ORDER_SYNC_ADMIN_PORT", saved_admin, 1);
    setenv("ORDER_SYNC_RPC", saved_rpc, 1);
    CHECK(cc_harness_wait_http(admin2, "/healthz", 20000), "second order-sync healthy");
    /* Four senders deliver every event, to both instances at once. */
    s_twin_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (s_twin_t) { .ports = { s_http, http2 }, .first = i, .applied = 0 };
        pthread_create(&th[i], NULL, s_twin, &t[i]);
    }
    int applied = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        applied += t[i].applied;
    }
    CHECK(applied == TWIN_EVENTS, "%d deliveries said applied, want %d", applied, TWIN_EVENTS);
    s_expect("SELECT count(*) || ' ' || (SELECT count(*) FROM commerce.order_items WHERE order_number LIKE 'TW-%') || ' ' ||"
             " (SELECT count(*) FROM commerce.order_audit WHERE order_number LIKE 'TW-%')"
             " FROM commerce.orders WHERE order_number LIKE 'TW-%'", "100 200 100");
    CHECK(cc_harness_stop(s_h, second, SIGTERM, 10000) == 0, "second order-sync stops cleanly");
    TEST_PASS(__func__);
}

static void
database_down_webhooks_get_503_and_apply_once_when_delivered_again(void)
{
    TEST_BEGIN(__func__);
    cc_pg_destroy(&s_pg);
    cc_harness_stop_pg(s_h);
    char *reply = NULL, *body = s_order("PGD-1", "ordered", 1, 3, "Down Time");
    int st = s_post("pgdown-1", time(NULL), body, false, &reply);
    CHECK(st == 503 && strstr(reply, "retry"), "while the database is down: %d %s", st, reply);
    free(reply);
    cc_harness_restart_pg(s_h);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 10000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg back");
    /* The platform delivers again until it gets a 200 (bounded). */
    for (int attempt = 0; attempt < 20; attempt++) {
        st = s_post("pgdown-1", time(NULL), body, false, &reply);
        bool done = st == 200;
        CHECK(done || st == 503, "delivery %d: %d %s", attempt, st, reply);
        if (done) CHECK(strstr(reply, "applied") || strstr(reply, "duplicate"), "%s", reply);
        free(reply);
        if (done) break;
    }
    CHECK(st == 200, "delivered once the database is back");
    free(body);
    s_expect("SELECT count(*) || ' ' || (SELECT count(*) FROM commerce.order_items WHERE order_number = 'PGD-1') || ' ' ||"
             " (SELECT count(*) FROM commerce.order_audit WHERE order_number = 'PGD-1')"
             " FROM commerce.orders WHERE order_number = 'PGD-1'", "1 2 1");
    TEST_PASS(__func__);
}

/* ------------------------------------------------ kill -9 during a burst */

#define BURST_THREADS 8
#define BURST_MAX 4000

typedef struct {
    int thread;
    int sent;
    int status[BURST_MAX];
    volatile int *acked, *done;
} s_burst_t;

static char *
s_burst_order(int thread, int i)
{
    char number[32];
    snprintf(number, sizeof number, "K-%d-%d", thread, i);
    return s_order(number, "ordered", 1, 1, "Burst");
}

static void *
s_burst(void *arg)
{
    s_burst_t *b = arg;
    for (int i = 0; i < BURST_MAX; i++) {
        char id[32], *reply = NULL, *body = s_burst_order(b->thread, i);
        snprintf(id, sizeof id, "kill-%d-%d", b->thread, i);
        b->status[i] = s_post(id, time(NULL), body, false, &reply);
        b->sent = i + 1;
        free(reply);
        free(body);
        if (b->status[i] == 200) __atomic_add_fetch(b->acked, 1, __ATOMIC_RELAXED);
        else break;   /* the service is gone */
    }
    __atomic_add_fetch(b->done, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void
kill_9_during_a_burst_loses_no_acknowledged_webhook(void)
{
    TEST_BEGIN(__func__);
    static s_burst_t b[BURST_THREADS];
    volatile int acked = 0, done = 0;
    pthread_t t[BURST_THREADS];
    for (int i = 0; i < BURST_THREADS; i++) {
        b[i].thread = i;
        b[i].acked = &acked;
        b[i].done = &done;
        pthread_create(&t[i], NULL, s_burst, &b[i]);
    }
    while (__atomic_load_n(&acked, __ATOMIC_RELAXED) < 300 && __atomic_load_n(&done, __ATOMIC_RELAXED) == 0) cc_sleep_ms(5);
    CHECK(__atomic_load_n(&done, __ATOMIC_RELAXED) == 0, "a sender stopped before the kill");
    kill(s_os, SIGKILL);
    for (int i = 0; i < BURST_THREADS; i++) pthread_join(t[i], NULL);
    cc_harness_stop(s_h, s_os, SIGKILL, 5000);
    int ok = 0, unanswered = 0;
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    for (int i = 0; i < BURST_THREADS; i++) {
        for (int k = 0; k < b[i].sent; k++) {
            if (b[i].status[k] == 200) {
                fprintf(f, "%s'K-%d-%d'", ok ? "," : "", i, k);
                ok++;
            } else {
                unanswered++;
            }
        }
    }
    fclose(f);
    CHECK(ok >= 300 && unanswered >= 1, "acknowledged %d, cut off %d", ok, unanswered);
    char *sql = NULL, want[16];
    if (asprintf(&sql, "SELECT count(*) FROM commerce.orders WHERE order_number IN (%s)", list) < 0) abort();
    snprintf(want, sizeof want, "%d", ok);
    s_expect(sql, want);   /* every 200 has its order */
    free(sql);
    if (asprintf(&sql, "SELECT count(*) FROM commerce.order_items WHERE order_number IN (%s)", list) < 0) abort();
    snprintf(want, sizeof want, "%d", ok * 2);
    s_expect(sql, want);   /* and its items */
    free(sql);
    free(list);

    /* Back up; the platform retries what got no answer: each is applied once. */
    s_os = cc_harness_spawn(s_h, "order-sync", NULL);
    CHECK(cc_harness_wait_http(s_admin, "/healthz", 20000), "order-sync back");
    int total = 0;
    for (int i = 0; i < BURST_THREADS; i++) {
        for (int k = 0; k < b[i].sent; k++) {
            total++;
            if (b[i].status[k] == 200) continue;
            char id[32], *reply = NULL, *body = s_burst_order(i, k);
            snprintf(id, sizeof id, "kill-%d-%d", i, k);
            int st = s_post(id, time(NULL), body, false, &reply);
            CHECK(st == 200 && (strstr(reply, "applied") || strstr(reply, "duplicate")), "retry %s: %d %s", id, st, reply);
            free(reply);
            free(body);
        }
    }
    snprintf(want, sizeof want, "%d", total);
    s_expect("SELECT count(*) FROM commerce.orders WHERE order_number LIKE 'K-%'", want);
    s_expect("SELECT count(*) FROM commerce.webhook_events WHERE event_id LIKE 'kill-%'", want);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("order_sync_test", "order_sync_test");
    CHECK(sodium_init() >= 0, "sodium");
    cc_harness_t *h = s_h = cc_harness_new("order-sync");
    cc_harness_start_pg(h);
    cc_harness_start_forwarder(h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "order_sync", OS_SOURCE_DIR "/sql", NULL) == 0, "migrate");
    randombytes_buf(s_key, sizeof s_key);
    char b64[64], sql[256];
    sodium_bin2base64(b64, sizeof b64, s_key, sizeof s_key, sodium_base64_VARIANT_ORIGINAL);
    snprintf(sql, sizeof sql, "INSERT INTO commerce.platforms (name, secret) VALUES ('shop1', 'whsec_%s')", b64);
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "platform");
    CHECK(cc_pg_run(s_pg, "INSERT INTO commerce.platforms (name, dialect, secret, domain, currency) VALUES"
                          " ('acme', 'shopify', '" SHOPIFY_SECRET "', 'acme-store.myshopify.com', 'USD'),"
                          " ('woo1', 'woocommerce', '" WOO_SECRET "', 'woo.example.com', 'EUR')", NULL) == 0, "%s",
          cc_pg_error(s_pg));
    char v[16];
    s_http = cc_harness_free_port();
    int admin = s_admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", s_http);
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", s_rpc, 1);
    setenv("ORDER_SYNC_PLATFORM_REFRESH_MS", "600000", 1);   /* only a SIGHUP re-reads the platforms */
    s_os = cc_harness_spawn(h, "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "order-sync healthy");
    cc_bus_opts_t bo = { .service = "test", .instance = "os", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "order.");
    cc_bus_subscribe(s_events, "customer.");
    cc_bus_subscribe(s_events, "stock.");
    cc_bus_subscribe(s_events, "shipment.");
    cc_sleep_ms(300);
    signed_order_is_stored_with_its_items_customer_and_audit();
    duplicate_event_is_acknowledged_not_applied_twice();
    forged_or_stale_or_malformed_webhooks_are_refused_and_store_nothing();
    status_machine_is_enforced_and_late_updates_do_not_win();
    status_walks_are_the_shortest_over_the_transition_table();
    lookups_by_order_number_and_phone();
    a_platform_added_is_taken_after_sighup();
    shopify_orders_as_shopify_sends_them_are_mapped_exactly();
    shopify_forged_or_malformed_webhooks_store_nothing();
    woocommerce_orders_are_mapped();
    customers_products_stock_payments_and_shipments_are_kept_and_told();
    bulk_import_of_events_and_csv_of_customers_and_products();
    csv_export_reads_back_as_it_was();
    two_instances_given_the_same_deliveries_apply_each_once();
    database_down_webhooks_get_503_and_apply_once_when_delivered_again();
    kill_9_during_a_burst_loses_no_acknowledged_webhook();
    int status = cc_harness_stop(h, s_os, SIGTERM, 10000);
    CHECK(status == 0, "order-sync stops cleanly (%d)", status);
    cc_pg_destroy(&s_pg);
    cc_bus_destroy(&s_events);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("order_sync_test: 16 passed, 0 failed\n");
    return 0;
}
