/* reconcile_test: order-sync polls a platform simulator's list endpoint (an
 * HTTP server in this test) and repairs the changes its webhooks missed,
 * through the webhooks' own path, so versions decide.
 *
 * missed_changes_are_repaired_by_version
 * a_second_pass_asks_since_the_first_and_changes_nothing
 * shopify_lists_are_followed_by_their_link_header
 * a_failed_page_keeps_the_cursor
 * an_order_the_database_did_not_store_keeps_the_cursor
 * a_next_page_on_another_server_is_not_fetched */
#define _GNU_SOURCE
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_http.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static int s_port, s_requests, s_failing, s_failed, s_busy_requests, s_other_port, s_other_requests,
    s_elsewhere_requests;
static char s_other_token[128];
static char s_first_query[256], s_last_query[256], s_last_auth[128], s_shopify_query[256];
static cc_pg_t *s_pg;

static const char *
s_order(char *buf, size_t cap, const char *number, const char *status, int version, int qty)
{
    snprintf(buf, cap,
             "{\"order_number\":\"%s\",\"status\":\"%s\",\"total\":%d,\"currency\":\"CNY\",\"version\":%d,"
             "\"customer\":{\"id\":\"c-%s\",\"name\":\"Wang\",\"phone\":\"1361111%s\",\"email\":\"\"},"
             "\"items\":[{\"sku\":\"TV-55\",\"name\":\"TV\",\"quantity\":%d,\"unit_price\":100},"
             "{\"sku\":\"HDMI\",\"name\":\"Cable\",\"quantity\":1,\"unit_price\":0}]}",
             number, status, qty * 100, version, number, number + 1, qty);
    return buf;
}

/* GET /orders: page 1 (three orders, a link to page 2), page 2 (a malformed
 * order and a transition the status machine refuses). */
static int
s_list(struct mg_connection *conn, void *arg)
{
    (void) arg;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *auth = mg_get_header(conn, "Authorization");
    pthread_mutex_lock(&s_mu);
    s_requests++;
    bool page2 = ri->query_string && strstr(ri->query_string, "page=2");
    if (!page2) {
        snprintf(s_last_query, sizeof s_last_query, "%s", ri->query_string ? ri->query_string : "");
        if (!s_first_query[0]) snprintf(s_first_query, sizeof s_first_query, "%s", s_last_query);
        snprintf(s_last_auth, sizeof s_last_auth, "%s", auth ? auth : "");
    }
    bool fail = s_failing > 0;
    if (fail) s_failed++;
    pthread_mutex_unlock(&s_mu);
    if (fail) return cc_http_error(conn, 500, "list unavailable");
    if (!auth || strcmp(auth, "Bearer tok-1") != 0) return cc_http_error(conn, 401, "token");
    char a[512], b[512], c[512], body[2048];
    if (!page2)
        snprintf(body, sizeof body, "{\"orders\":[%s,%s,%s],\"next\":\"http://127.0.0.1:%d/orders?page=2\"}",
                 s_order(a, sizeof a, "R1", "reviewed", 3, 2), s_order(b, sizeof b, "R2", "ordered", 1, 4),
                 s_order(c, sizeof c, "R3", "ordered", 1, 1), s_port);
    else
        snprintf(body, sizeof body, "{\"orders\":[%s,%s],\"next\":null}", s_order(a, sizeof a, "R4", "ordered", 1, 0),
                 s_order(b, sizeof b, "R5", "ordered", 9, 1));
    return cc_http_send(conn, 200, "application/json", body, strlen(body));
}

/* GET /busy: one new order, B1, on a single page. */
static int
s_busy_list(struct mg_connection *conn, void *arg)
{
    (void) arg;
    pthread_mutex_lock(&s_mu);
    s_busy_requests++;
    pthread_mutex_unlock(&s_mu);
    char a[512], body[1024];
    snprintf(body, sizeof body, "{\"orders\":[%s],\"next\":null}", s_order(a, sizeof a, "B1", "ordered", 1, 1));
    return cc_http_send(conn, 200, "application/json", body, strlen(body));
}

/* GET /elsewhere/orders.json: an empty Shopify page whose Link rel=next
 * names another server (another port of the same host). */
static int
s_elsewhere_list(struct mg_connection *conn, void *arg)
{
    (void) arg;
    pthread_mutex_lock(&s_mu);
    s_elsewhere_requests++;
    pthread_mutex_unlock(&s_mu);
    const char *body = "{\"orders\":[]}";
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Link: <http://127.0.0.1:%d/shopify/orders.json?limit=250&page_info=p2>; rel=\"next\"\r\n"
                    "Connection: close\r\n\r\n%s", strlen(body), s_other_port, body);
    return 200;
}

/* The other server: counts what it is asked, with which token. */
static int
s_other_list(struct mg_connection *conn, void *arg)
{
    (void) arg;
    const char *token = mg_get_header(conn, "X-Shopify-Access-Token");
    pthread_mutex_lock(&s_mu);
    s_other_requests++;
    snprintf(s_other_token, sizeof s_other_token, "%s", token ? token : "");
    pthread_mutex_unlock(&s_mu);
    const char *body = "{\"orders\":[]}";
    return cc_http_send(conn, 200, "application/json", body, strlen(body));
}

static int
s_counter(int *n)
{
    pthread_mutex_lock(&s_mu);
    int v = *n;
    pthread_mutex_unlock(&s_mu);
    return v;
}

static void
s_wait_counter(int *n, int want, const char *what)
{
    for (int64_t end = cc_mono_ms() + 30000; s_counter(n) < want && cc_mono_ms() < end;) cc_sleep_ms(20);
    CHECK(s_counter(n) >= want, "%d %s, want %d", s_counter(n), what, want);
}

/* A Shopify REST order as its list endpoint returns it. */
static void
s_shopify_order(char *buf, size_t cap, long long id, int number, const char *updated_at)
{
    snprintf(buf, cap,
             "{\"id\":%lld,\"name\":\"#%d\",\"order_number\":%d,\"email\":\"jane.doe@example.com\",\"phone\":null,"
             "\"created_at\":\"2026-12-01T09:15:02-05:00\",\"updated_at\":\"%s\",\"cancelled_at\":null,"
             "\"closed_at\":null,\"currency\":\"USD\",\"financial_status\":\"paid\",\"fulfillment_status\":null,"
             "\"subtotal_price\":\"29.00\",\"total_tax\":\"0.00\",\"total_discounts\":\"0.00\",\"total_price\":\"29.00\","
             "\"note\":null,\"customer\":{\"id\":%lld,\"email\":\"jane.doe@example.com\",\"first_name\":\"Jane\","
             "\"last_name\":\"Doe\",\"phone\":\"+16135550142\"},"
             "\"line_items\":[{\"id\":%lld,\"variant_id\":43720158707885,\"title\":\"Milk Jug\",\"name\":\"Milk Jug\","
             "\"sku\":\"JUG-350\",\"quantity\":2,\"price\":\"14.50\"}],\"fulfillments\":[]}",
             id, number, number, updated_at, id + 1, id + 2);
}

/* GET /shopify/orders.json: two pages, the second named by the Link header. */
static int
s_shopify_list(struct mg_connection *conn, void *arg)
{
    (void) arg;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *token = mg_get_header(conn, "X-Shopify-Access-Token");
    if (!token || strcmp(token, "shpat_test") != 0) return cc_http_error(conn, 401, "token");
    bool page2 = ri->query_string && strstr(ri->query_string, "page_info=p2");
    pthread_mutex_lock(&s_mu);
    if (!page2 && !s_shopify_query[0])
        snprintf(s_shopify_query, sizeof s_shopify_query, "%s", ri->query_string ? ri->query_string : "");
    pthread_mutex_unlock(&s_mu);
    char o[2048], body[2300];
    s_shopify_order(o, sizeof o, page2 ? 5832014900002LL : 5832014900001LL, page2 ? 2002 : 2001,
                    "2026-12-01T10:00:00-05:00");
    snprintf(body, sizeof body, "{\"orders\":[%s]}", o);
    if (page2) return cc_http_send(conn, 200, "application/json", body, strlen(body));
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Link: <http://127.0.0.1:%d/shopify/orders.json?limit=250&page_info=p0>; rel=\"previous\", "
                    "<http://127.0.0.1:%d/shopify/orders.json?limit=250&page_info=p2>; rel=\"next\"\r\n"
                    "Connection: close\r\n\r\n%s", strlen(body), s_port, s_port, body);
    return 200;
}

static char *
s_one(const char *fmt, ...)
{
    char sql[1024];
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

/* Waits (30 s at most: a broken build fails instead of hanging). */
static void
s_until(const char *want, const char *sql)
{
    char *got = NULL;
    for (int64_t end = cc_mono_ms() + 30000; cc_mono_ms() < end; cc_sleep_ms(20)) {
        free(got);
        got = s_one("%s", sql);
        if (strcmp(got, want) == 0) break;
    }
    CHECK(strcmp(got, want) == 0, "%s gave '%s', want '%s'", sql, got, want);
    free(got);
}

static int
s_count_requests(void)
{
    pthread_mutex_lock(&s_mu);
    int n = s_requests;
    pthread_mutex_unlock(&s_mu);
    return n;
}

static void
s_wait_requests(int n)
{
    for (int64_t end = cc_mono_ms() + 30000; s_count_requests() < n && cc_mono_ms() < end;) cc_sleep_ms(20);
    CHECK(s_count_requests() >= n, "%d list requests, want %d", s_count_requests(), n);
}

static void
missed_changes_are_repaired_by_version(void)
{
    TEST_BEGIN(__func__);
    s_until("t", "SELECT reconcile_since > 0 FROM commerce.platforms WHERE name = 'shop1'");
    pthread_mutex_lock(&s_mu);
    CHECK(strcmp(s_first_query, "updated_since=0") == 0, "first pass asks for everything: %s", s_first_query);
    CHECK(strcmp(s_last_auth, "Bearer tok-1") == 0, "with the platform's token");
    pthread_mutex_unlock(&s_mu);
    EXPECT("reviewed 3", "SELECT status || ' ' || version FROM commerce.orders WHERE order_number = 'R1'");
    EXPECT("ordered>reviewed shop1", "SELECT from_status || '>' || to_status || ' ' || by_whom FROM commerce.order_audit"
           " WHERE order_number = 'R1'");
    EXPECT("ordered 1 2 5", "SELECT o.status || ' ' || o.version || ' ' || count(i.*) || ' ' || sum(i.quantity)"
           " FROM commerce.orders o JOIN commerce.order_items i USING (order_number) WHERE o.order_number = 'R2'"
           " GROUP BY o.status, o.version");
    EXPECT("reviewed 5", "SELECT status || ' ' || version FROM commerce.orders WHERE order_number = 'R3'");
    EXPECT("0", "SELECT count(*) FROM commerce.orders WHERE order_number = 'R4'");
    EXPECT("shipped 1", "SELECT status || ' ' || version FROM commerce.orders WHERE order_number = 'R5'");
    TEST_PASS(__func__);
}

static void
a_second_pass_asks_since_the_first_and_changes_nothing(void)
{
    TEST_BEGIN(__func__);
    char *since = s_one("SELECT reconcile_since FROM commerce.platforms WHERE name = 'shop1'");
    char *audits = s_one("SELECT count(*) FROM commerce.order_audit");
    int seen = s_count_requests();
    s_wait_requests(seen + 2);   /* a whole pass: both pages */
    char want[64];
    snprintf(want, sizeof want, "updated_since=%s", since);
    pthread_mutex_lock(&s_mu);
    bool asked_since = strcmp(s_last_query, want) == 0;
    char q[256];
    snprintf(q, sizeof q, "%s", s_last_query);
    pthread_mutex_unlock(&s_mu);
    /* The cursor may have moved on again by now: the query names one of them. */
    long long asked = atoll(strchr(q, '=') + 1);
    CHECK(asked_since || asked >= atoll(since), "asks since the last pass: %s (cursor %s)", q, since);
    CHECK(asked > 0, "a later pass does not ask for everything again: %s", q);
    EXPECT(audits, "SELECT count(*) FROM commerce.order_audit");
    EXPECT("reviewed 3", "SELECT status || ' ' || version FROM commerce.orders WHERE order_number = 'R1'");
    free(since);
    free(audits);
    TEST_PASS(__func__);
}

static int
s_failures(void)
{
    pthread_mutex_lock(&s_mu);
    int n = s_failed;
    pthread_mutex_unlock(&s_mu);
    return n;
}

static void
s_wait_failures(int n)
{
    for (int64_t end = cc_mono_ms() + 30000; s_failures() < n && cc_mono_ms() < end;) cc_sleep_ms(20);
    CHECK(s_failures() >= n, "%d failed pages, want %d", s_failures(), n);
}

static void
shopify_lists_are_followed_by_their_link_header(void)
{
    TEST_BEGIN(__func__);
    s_until("2", "SELECT count(*) FROM commerce.orders WHERE platform = 'acme' AND order_number IN ('2001', '2002')");
    EXPECT("29.00 USD 2", "SELECT to_char(total_minor / 100.0, 'FM990.00') || ' ' || currency || ' ' ||"
           " (SELECT sum(quantity) FROM commerce.order_items i WHERE i.order_number = o.order_number)"
           " FROM commerce.orders o WHERE order_number = '2002'");
    pthread_mutex_lock(&s_mu);
    CHECK(strstr(s_shopify_query, "updated_at_min=1970-01-01T00%3A00%3A00Z") && strstr(s_shopify_query, "status=any"),
          "Shopify's query: %s", s_shopify_query);
    pthread_mutex_unlock(&s_mu);
    TEST_PASS(__func__);
}

static void
a_failed_page_keeps_the_cursor(void)
{
    TEST_BEGIN(__func__);
    pthread_mutex_lock(&s_mu);
    s_failing = 1;
    pthread_mutex_unlock(&s_mu);
    s_wait_failures(1);   /* from now on no pass moves the cursor */
    free(s_one("UPDATE commerce.platforms SET reconcile_since = 12345 WHERE name = 'shop1' RETURNING 1"));
    s_wait_failures(s_failures() + 2);
    pthread_mutex_lock(&s_mu);
    CHECK(strcmp(s_last_query, "updated_since=12345") == 0, "asked again from the same cursor: %s", s_last_query);
    pthread_mutex_unlock(&s_mu);
    EXPECT("12345", "SELECT reconcile_since FROM commerce.platforms WHERE name = 'shop1'");
    pthread_mutex_lock(&s_mu);
    s_failing = 0;
    pthread_mutex_unlock(&s_mu);
    s_until("t", "SELECT reconcile_since > 12345 FROM commerce.platforms WHERE name = 'shop1'");
    TEST_PASS(__func__);
}

/* The database refuses B1 for a while (a serialization failure: the writer
 * answers 503 for it): the passes meanwhile keep the cursor, and once the
 * database takes it again B1 is stored and the cursor moves on. */
static void
an_order_the_database_did_not_store_keeps_the_cursor(void)
{
    TEST_BEGIN(__func__);
    CHECK(cc_pg_run(s_pg,
                    "CREATE FUNCTION public.t_refuse_b1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                    " RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = 'test: B1 refused';"
                    " END $$;"
                    "CREATE TRIGGER t_refuse_b1 BEFORE INSERT ON commerce.orders FOR EACH ROW"
                    " WHEN (NEW.order_number = 'B1') EXECUTE FUNCTION public.t_refuse_b1();",
                    NULL) == 0, "trigger: %s", cc_pg_error(s_pg));
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO commerce.platforms (name, secret, reconcile_url) VALUES"
                              " ('busy1', 'whsec_BBBB', 'http://127.0.0.1:%d/busy')", s_port);
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "platform: %s", cc_pg_error(s_pg));
    /* The second request starts the second pass: the first one's cursor is saved by then. */
    s_wait_counter(&s_busy_requests, 2, "busy list requests");
    EXPECT("0", "SELECT count(*) FROM commerce.orders WHERE order_number = 'B1'");
    EXPECT("0", "SELECT reconcile_since FROM commerce.platforms WHERE name = 'busy1'");
    CHECK(cc_pg_run(s_pg, "DROP TRIGGER t_refuse_b1 ON commerce.orders; DROP FUNCTION public.t_refuse_b1();", NULL) == 0,
          "drop trigger: %s", cc_pg_error(s_pg));
    s_until("ordered 1", "SELECT status || ' ' || version FROM commerce.orders WHERE order_number = 'B1'");
    s_until("t", "SELECT reconcile_since > 0 FROM commerce.platforms WHERE name = 'busy1'");
    TEST_PASS(__func__);
}

/* A page naming its next page on another server: that server is not asked
 * (the platform's token goes only to the list URL's scheme, host and port)
 * and the cursor stays, the pass not being whole. */
static void
a_next_page_on_another_server_is_not_fetched(void)
{
    TEST_BEGIN(__func__);
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO commerce.platforms (name, dialect, secret, domain, reconcile_url,"
                              " reconcile_token) VALUES ('elsewhere', 'shopify', 'shpss_y', 'elsewhere.myshopify.com',"
                              " 'http://127.0.0.1:%d/elsewhere/orders.json', 'shpat_elsewhere')", s_port);
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "platform: %s", cc_pg_error(s_pg));
    /* The second request starts the second pass: the first one is over. */
    s_wait_counter(&s_elsewhere_requests, 2, "elsewhere list requests");
    pthread_mutex_lock(&s_mu);
    CHECK(s_other_requests == 0, "the other server was asked %d times (token '%s')", s_other_requests, s_other_token);
    pthread_mutex_unlock(&s_mu);
    EXPECT("0", "SELECT reconcile_since FROM commerce.platforms WHERE name = 'elsewhere'");
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("reconcile_test", "reconcile_test");
    cc_harness_t *h = cc_harness_new("reconcile");
    cc_harness_start_pg(h);
    cc_harness_start_forwarder(h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "order_sync", OS_SOURCE_DIR "/sql", NULL) == 0, "migrate");
    s_port = cc_harness_free_port();
    cc_http_t *sim = cc_http_new("127.0.0.1", s_port, 2);
    CHECK(sim, "simulator listens");
    cc_http_route(sim, "/orders", s_list, NULL);
    cc_http_route(sim, "/shopify/orders.json", s_shopify_list, NULL);
    cc_http_route(sim, "/busy", s_busy_list, NULL);
    cc_http_route(sim, "/elsewhere/orders.json", s_elsewhere_list, NULL);
    s_other_port = cc_harness_free_port();
    cc_http_t *other = cc_http_new("127.0.0.1", s_other_port, 2);
    CHECK(other, "the other server listens");
    cc_http_route(other, "/shopify/orders.json", s_other_list, NULL);
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO commerce.platforms (name, secret, reconcile_url, reconcile_token) VALUES"
             " ('shop1', 'whsec_AAAA', 'http://127.0.0.1:%d/orders', 'tok-1');"
             "INSERT INTO commerce.platforms (name, dialect, secret, domain, reconcile_url, reconcile_token) VALUES"
             " ('acme', 'shopify', 'shpss_x', 'acme-store.myshopify.com', 'http://127.0.0.1:%d/shopify/orders.json',"
             " 'shpat_test');"
             "INSERT INTO commerce.customers (platform, external_id, name, phone) VALUES ('shop1', 'c-R', 'Wang', '1');"
             "INSERT INTO commerce.orders (order_number, platform, customer_id, status, total_minor, currency, version)"
             " SELECT n, 'shop1', (SELECT id FROM commerce.customers), s, 100, 'CNY', v FROM (VALUES ('R1', 'ordered', 1),"
             " ('R3', 'reviewed', 5), ('R5', 'shipped', 1)) x(n, s, v);"
             "INSERT INTO commerce.order_items (order_number, line, sku, quantity, unit_minor)"
             " SELECT n, 1, 'TV-55', 1, 100 FROM (VALUES ('R1'), ('R3'), ('R5')) x(n);",
             s_port, s_port);
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "seed: %s", cc_pg_error(s_pg));
    char v[16], rpc[64];
    int admin = cc_harness_free_port();
    snprintf(v, sizeof v, "%d", cc_harness_free_port());
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", rpc, 1);
    setenv("ORDER_SYNC_RECONCILE_MS", "200", 1);
    setenv("ORDER_SYNC_RECONCILE_OVERLAP_S", "60", 1);
    pid_t os = cc_harness_spawn(h, "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "order-sync healthy");

    missed_changes_are_repaired_by_version();
    a_second_pass_asks_since_the_first_and_changes_nothing();
    shopify_lists_are_followed_by_their_link_header();
    a_failed_page_keeps_the_cursor();
    an_order_the_database_did_not_store_keeps_the_cursor();
    a_next_page_on_another_server_is_not_fetched();

    char *metrics = NULL;
    CHECK(cc_harness_http_get(admin, "/metrics", &metrics) == 200
          && strstr(metrics, "order_sync_reconciled_total{result=\"repaired\"} 5")
          && strstr(metrics, "order_sync_reconcile_failures_total"), "metrics:\n%s", metrics);
    free(metrics);
    CHECK(cc_harness_stop(h, os, SIGTERM, 10000) == 0, "order-sync stops cleanly");
    cc_http_destroy(&sim);
    cc_http_destroy(&other);
    cc_pg_destroy(&s_pg);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("reconcile_test: 6 passed, 0 failed\n");
    return 0;
}
