/* order_sync_test: a platform simulator sends signed Standard Webhooks to a
 * real order-sync over HTTP; the rows in PostgreSQL and the bus lookups say
 * what was kept.
 *
 * signed_order_is_stored_with_its_items_customer_and_audit
 * duplicate_event_is_acknowledged_not_applied_twice
 * forged_or_stale_or_malformed_webhooks_are_refused_and_store_nothing
 * status_machine_is_enforced_and_late_updates_do_not_win
 * lookups_by_order_number_and_phone */
#define _GNU_SOURCE
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "order.pb-c.h"

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

/* The next order.* event about number (fails after 3 s). */
static Cc__OrderUpdated *
s_order_event(const char *type, const char *number)
{
    int64_t end = cc_mono_ms() + 3000;
    while (cc_mono_ms() < end) {
        Cc__Envelope *env;
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        Cc__OrderUpdated *u = strcmp(env->type, type) == 0 && strcmp(env->trace_id, number) == 0
            ? cc__order_updated__unpack(NULL, env->payload.len, env->payload.data) : NULL;
        cc__envelope__free_unpacked(env, NULL);
        if (u) return u;
    }
    CHECK(0, "no %s event for %s", type, number);
    return NULL;
}

/* Signs body as the platform does and posts it. Returns the HTTP status. */
static int
s_post(const char *event_id, long long ts, const char *body, bool forge, char **reply)
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
    char headers[512];
    snprintf(headers, sizeof headers, "webhook-id: %s\r\nwebhook-timestamp: %s\r\nwebhook-signature: %s\r\n",
             event_id, stamp, sig);
    return cc_harness_http_post(s_http, "/webhooks/shop1", headers, body, reply);
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

int
main(void)
{
    cc_log_init("order_sync_test", "order_sync_test");
    CHECK(sodium_init() >= 0, "sodium");
    cc_harness_t *h = cc_harness_new("order-sync");
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
    char v[16];
    s_http = cc_harness_free_port();
    int admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", s_http);
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", s_rpc, 1);
    pid_t os = cc_harness_spawn(h, "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "order-sync healthy");
    cc_bus_opts_t bo = { .service = "test", .instance = "os", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "order.");
    cc_sleep_ms(300);
    signed_order_is_stored_with_its_items_customer_and_audit();
    duplicate_event_is_acknowledged_not_applied_twice();
    forged_or_stale_or_malformed_webhooks_are_refused_and_store_nothing();
    status_machine_is_enforced_and_late_updates_do_not_win();
    lookups_by_order_number_and_phone();
    int status = cc_harness_stop(h, os, SIGTERM, 10000);
    CHECK(status == 0, "order-sync stops cleanly (%d)", status);
    cc_pg_destroy(&s_pg);
    cc_bus_destroy(&s_events);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("order_sync_test: 5 passed, 0 failed\n");
    return 0;
}
