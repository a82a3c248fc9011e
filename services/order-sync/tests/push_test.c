/* push_test: orders placed and changed over the bus are pushed to a platform
 * simulator (an HTTP server in this test) that checks every Standard Webhooks
 * signature and fails some pushes on purpose; two order-sync instances share
 * the outbox.
 *
 * pushes_arrive_signed_once_in_order
 * failed_pushes_are_retried_until_they_arrive
 * retry_after_is_honoured
 * permanent_refusals_and_exhausted_retries_become_dead_letters
 * gone_stops_the_platform_until_replay
 * dead_letters_are_listed_and_replayed_with_the_same_webhook_id
 * old_delivered_pushes_are_purged
 * two_instances_never_push_one_row_twice */
#define _GNU_SOURCE
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_http.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "order.pb-c.h"
#include "order_ops.pb-c.h"

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef OS_SOURCE_DIR
#error "OS_SOURCE_DIR must be defined"
#endif

#define MAX_SEEN 512

/* ---- the platform simulator ---- */

typedef struct {
    char id[32], type[32], order[65], note[32];
    int status;          /* what the simulator answered */
    int64_t at_ms;
    bool signed_ok;
} s_seen_t;

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static s_seen_t s_seen[MAX_SEEN];
static int s_nseen;
static bool s_gone_fixed, s_refuse_fixed, s_down_fixed;
static unsigned char s_key[32];

static bool
s_signature_ok(const char *id, const char *ts, const char *body, size_t len, const char *sig)
{
    if (!id || !ts || !sig) return false;
    if (llabs(atoll(ts) - (long long) time(NULL)) > 300) return false;
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    crypto_auth_hmacsha256_init(&st, s_key, sizeof s_key);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    char b64[64], want[80];
    sodium_bin2base64(b64, sizeof b64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(want, sizeof want, "v1,%s", b64);
    return strcmp(sig, want) == 0;
}

/* Attempts already seen for a webhook-id (under s_mu). */
static int
s_attempts(const char *id)
{
    int n = 0;
    for (int i = 0; i < s_nseen; i++) n += strcmp(s_seen[i].id, id) == 0;
    return n;
}

/* The platform: the order's note says how to answer. ok: 200; flaky: 500
 * twice, then 200; busy: 429 with Retry-After: 1, then 200; refuse: 400 (200
 * once fixed); down: 500 (200 once fixed). /gone answers 410 until fixed. */
static int
s_platform(struct mg_connection *conn, void *arg)
{
    bool gone_path = arg != NULL;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    enum { CAP = 65536 };
    char *body = malloc(CAP);   /* not on the small stack of CivetWeb's threads */
    CHECK(body, "malloc");
    size_t got = 0;
    for (int n; got < CAP - 1 && (n = mg_read(conn, body + got, CAP - 1 - got)) > 0;) got += (size_t) n;
    body[got] = '\0';
    s_seen_t s;
    memset(&s, 0, sizeof s);
    const char *id = mg_get_header(conn, "webhook-id");
    snprintf(s.id, sizeof s.id, "%s", id ? id : "");
    s.signed_ok = s_signature_ok(id, mg_get_header(conn, "webhook-timestamp"), body, got,
                                 mg_get_header(conn, "webhook-signature"))
                  && strcmp(ri->request_method, "POST") == 0;
    json_t *j = json_loadb(body, got, 0, NULL);
    snprintf(s.type, sizeof s.type, "%s", json_string_value(json_object_get(j, "type")) ?: "");
    json_t *data = json_object_get(j, "data");
    snprintf(s.order, sizeof s.order, "%s", json_string_value(json_object_get(data, "order_number")) ?: "");
    snprintf(s.note, sizeof s.note, "%s", json_string_value(json_object_get(data, "note")) ?: "");
    json_decref(j);
    free(body);
    s.at_ms = cc_mono_ms();
    pthread_mutex_lock(&s_mu);
    int before = s_attempts(s.id);
    int status = 200;
    if (gone_path) status = s_gone_fixed ? 200 : 410;
    else if (strcmp(s.note, "flaky") == 0) status = before < 2 ? 500 : 200;
    else if (strcmp(s.note, "busy") == 0) status = before < 1 ? 429 : 200;
    else if (strcmp(s.note, "refuse") == 0) status = s_refuse_fixed ? 200 : 400;
    else if (strcmp(s.note, "down") == 0) status = s_down_fixed ? 200 : 500;
    if (!s.signed_ok) status = 401;
    s.status = status;
    if (s_nseen < MAX_SEEN) s_seen[s_nseen++] = s;
    pthread_mutex_unlock(&s_mu);
    if (status == 429) {
        mg_printf(conn, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return 429;
    }
    return cc_http_send(conn, status, "application/json", "{}", 2);
}

/* Requests seen for order (any webhook-id), and how many were answered 2xx. */
static void
s_count(const char *order, const char *type, int *requests, int *accepted)
{
    *requests = *accepted = 0;
    pthread_mutex_lock(&s_mu);
    for (int i = 0; i < s_nseen; i++) {
        if (strcmp(s_seen[i].order, order) != 0 || (type && strcmp(s_seen[i].type, type) != 0)) continue;
        (*requests)++;
        *accepted += s_seen[i].status == 200;
    }
    pthread_mutex_unlock(&s_mu);
}

/* ---- order-sync, its database and its bus ---- */

static cc_pg_t *s_pg;
static char s_rpc[64], s_rpc2[64];
static cc_rpc_client_t *s_client;
static cc_harness_t *s_h;
static int s_admin;   /* the first instance's admin port */

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
    char *v = strdup(PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return v;
}

#define EXPECT(want, ...) do { char *got_ = s_one(__VA_ARGS__); \
    CHECK(strcmp(got_, want) == 0, "gave '%s', want '%s'", got_, want); free(got_); } while (0)

/* Waits (up to 30 s, so a broken build fails instead of hanging) until the
 * query gives want. */
static void
s_until(const char *want, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *got = NULL;
    for (int64_t end = cc_mono_ms() + 30000; cc_mono_ms() < end; cc_sleep_ms(20)) {
        free(got);
        got = s_one("%s", sql);
        if (strcmp(got, want) == 0) break;
    }
    CHECK(strcmp(got, want) == 0, "%s gave '%s', want '%s'", sql, got, want);
    free(got);
}

/* Places an order by phone with note (the simulator's instruction). Returns
 * the order number (caller frees). */
static char *
s_place(const char *platform, const char *phone, const char *note)
{
    Cc__OrderLine l = CC__ORDER_LINE__INIT, *lp[] = { &l };
    l.sku = "TV-55";
    l.quantity = 1;
    Cc__OrderCreate m = CC__ORDER_CREATE__INIT;
    m.phone = (char *) phone;
    m.platform = (char *) platform;
    m.customer_name = "Han Meimei";
    m.lines = lp;
    m.n_lines = 1;
    m.note = (char *) note;
    m.by = "agent-7";
    uint8_t buf[512];
    size_t len = cc__order_create__pack(&m, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(s_client, "order.create", buf, len, 5000, &r) == 0, "order.create answered");
    CHECK(r->status == CC__STATUS__STATUS_OK, "order.create: %s", r->error);
    Cc__Order *o = cc__order__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(o && strncmp(o->order_number, "TEL-", 4) == 0, "an automatic order number");
    char *n = strdup(o->order_number);
    cc__order__free_unpacked(o, NULL);
    cc__reply__free_unpacked(r, NULL);
    return n;
}

static void
s_cancel(const char *number)
{
    Cc__OrderCancel m = CC__ORDER_CANCEL__INIT;
    m.order_number = (char *) number;
    m.reason = "changed my mind";
    m.by = "agent-7";
    uint8_t buf[256];
    size_t len = cc__order_cancel__pack(&m, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(s_client, "order.cancel", buf, len, 5000, &r) == 0 && r->status == 0, "order.cancel");
    cc__reply__free_unpacked(r, NULL);
}

static void
pushes_arrive_signed_once_in_order(void)
{
    TEST_BEGIN(__func__);
    char *n = s_place("shop1", "13900000001", "ok");
    s_cancel(n);
    s_until("2", "SELECT count(*) FROM commerce.outbox WHERE subject = '%s' AND delivered_at IS NOT NULL", n);
    pthread_mutex_lock(&s_mu);
    int k = 0;
    for (int i = 0; i < s_nseen; i++) {
        if (strcmp(s_seen[i].order, n) != 0) continue;
        CHECK(s_seen[i].signed_ok, "push %s signed", s_seen[i].id);
        CHECK(strcmp(s_seen[i].type, k == 0 ? "order.created" : "order.cancelled") == 0, "push %d is %s", k,
              s_seen[i].type);
        k++;
    }
    pthread_mutex_unlock(&s_mu);
    CHECK(k == 2, "two pushes for %s, not %d", n, k);
    EXPECT("1,1", "SELECT string_agg(attempts::text, ',' ORDER BY id) FROM commerce.outbox WHERE subject = '%s'", n);
    free(n);
    TEST_PASS(__func__);
}

static void
failed_pushes_are_retried_until_they_arrive(void)
{
    TEST_BEGIN(__func__);
    char *n = s_place("shop1", "13900000002", "flaky");
    s_until("1", "SELECT count(*) FROM commerce.outbox WHERE subject = '%s' AND delivered_at IS NOT NULL", n);
    int req, ok;
    s_count(n, NULL, &req, &ok);
    CHECK(req == 3 && ok == 1, "500, 500, then 200: %d requests, %d accepted", req, ok);
    EXPECT("3 200", "SELECT attempts || ' ' || last_status FROM commerce.outbox WHERE subject = '%s'", n);
    free(n);
    TEST_PASS(__func__);
}

static void
retry_after_is_honoured(void)
{
    TEST_BEGIN(__func__);
    char *n = s_place("shop1", "13900000003", "busy");
    s_until("1", "SELECT count(*) FROM commerce.outbox WHERE subject = '%s' AND delivered_at IS NOT NULL", n);
    int64_t t[2] = { 0, 0 };
    int k = 0;
    pthread_mutex_lock(&s_mu);
    for (int i = 0; i < s_nseen && k < 2; i++) if (strcmp(s_seen[i].order, n) == 0) t[k++] = s_seen[i].at_ms;
    pthread_mutex_unlock(&s_mu);
    CHECK(k == 2, "429 then 200");
    /* The backoff alone would retry after 50 ms; Retry-After asked for 1 s. */
    CHECK(t[1] - t[0] >= 950, "second attempt %lld ms after the 429", (long long) (t[1] - t[0]));
    free(n);
    TEST_PASS(__func__);
}

static void
permanent_refusals_and_exhausted_retries_become_dead_letters(void)
{
    TEST_BEGIN(__func__);
    char *refused = s_place("shop1", "13900000004", "refuse"), *down = s_place("shop1", "13900000005", "down");
    s_until("400 1", "SELECT last_status || ' ' || attempts FROM commerce.outbox_dead WHERE subject = '%s'", refused);
    s_until("500 4", "SELECT last_status || ' ' || attempts FROM commerce.outbox_dead WHERE subject = '%s'", down);
    EXPECT("0", "SELECT count(*) FROM commerce.outbox WHERE subject IN ('%s', '%s')", refused, down);
    int req, ok;
    s_count(refused, NULL, &req, &ok);
    CHECK(req == 1 && ok == 0, "a 400 is not retried: %d requests", req);
    s_count(down, NULL, &req, &ok);
    CHECK(req == 4 && ok == 0, "500 four times (ORDER_SYNC_PUSH_MAX_ATTEMPTS): %d requests", req);
    /* Other pushes of the platform go on. */
    char *after = s_place("shop1", "13900000006", "ok");
    s_until("1", "SELECT count(*) FROM commerce.outbox WHERE subject = '%s' AND delivered_at IS NOT NULL", after);
    free(refused);
    free(down);
    free(after);
    TEST_PASS(__func__);
}

static void
gone_stops_the_platform_until_replay(void)
{
    TEST_BEGIN(__func__);
    char *a = s_place("shop2", "13900000007", "ok");
    s_until("410", "SELECT last_status FROM commerce.outbox_dead WHERE subject = '%s'", a);
    EXPECT("t", "SELECT push_gone_at IS NOT NULL FROM commerce.platforms WHERE name = 'shop2'");
    char *b = s_place("shop2", "13900000007", "ok");
    /* shop1's push, written after b, arrives: the one worker passed b by. */
    char *c = s_place("shop1", "13900000008", "ok");
    s_until("1", "SELECT count(*) FROM commerce.outbox WHERE subject = '%s' AND delivered_at IS NOT NULL", c);
    EXPECT("0", "SELECT attempts FROM commerce.outbox WHERE subject = '%s'", b);
    /* What an operator's dashboard shows: three dead letters, b waiting. */
    bool shown = false;
    for (int64_t end = cc_mono_ms() + 30000; !shown && cc_mono_ms() < end; cc_sleep_ms(50)) {
        char *m = NULL;
        cc_harness_http_get(s_admin, "/metrics", &m);
        shown = m && strstr(m, "\norder_sync_outbox_dead 3\n") && strstr(m, "\norder_sync_outbox_waiting 1\n");
        free(m);
    }
    CHECK(shown, "order_sync_outbox_dead 3 and order_sync_outbox_waiting 1 in /metrics");
    int req, ok;
    s_count(b, NULL, &req, &ok);
    CHECK(req == 0, "nothing sent to a platform that said 410: %d", req);
    free(a);
    free(b);
    free(c);
    TEST_PASS(__func__);
}

/* Runs order-syncctl with args; returns its exit status and output. */
static int
s_ctl(const char *args, char **out)
{
    char cmd[1024], bin[512];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", cc_harness_bin(OS_BUILD_DIR "/order-syncctl", bin, sizeof bin), args);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen %s", cmd);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, p);
    buf[n] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
dead_letters_are_listed_and_replayed_with_the_same_webhook_id(void)
{
    TEST_BEGIN(__func__);
    char *out = NULL;
    CHECK(s_ctl("dead", &out) == 0, "dead: %s", out);
    char *ids = s_one("SELECT string_agg(id::text || E'\\tshop', ',' ORDER BY id) FROM commerce.outbox_dead");
    for (char *tok = strtok(ids, ","); tok; tok = strtok(NULL, ",")) CHECK(strstr(out, tok), "'%s' listed in:\n%s", tok, out);
    CHECK(strstr(out, "HTTP 410") && strstr(out, "HTTP 400") && strstr(out, "too many attempts"), "reasons:\n%s", out);
    free(ids);
    free(out);
    CHECK(s_ctl("replay 999999", &out) == 1 && strstr(out, "no dead letter"), "unknown id: %s", out);
    free(out);
    CHECK(s_ctl("replay nonsense", &out) == 2, "bad id: %s", out);
    free(out);

    /* One: the refused push, now accepted, with the webhook-id of its first try. */
    char *refused = s_one("SELECT subject FROM commerce.outbox_dead WHERE last_status = 400");
    char *id = s_one("SELECT id FROM commerce.outbox_dead WHERE last_status = 400");
    pthread_mutex_lock(&s_mu);
    s_refuse_fixed = s_down_fixed = s_gone_fixed = true;
    pthread_mutex_unlock(&s_mu);
    char args[64];
    snprintf(args, sizeof args, "replay %s", id);
    CHECK(s_ctl(args, &out) == 0 && strstr(out, "replayed 1"), "replay one: %s", out);
    free(out);
    s_until("1", "SELECT count(*) FROM commerce.outbox WHERE id = %s AND delivered_at IS NOT NULL", id);
    int req, ok;
    s_count(refused, NULL, &req, &ok);
    CHECK(req == 2 && ok == 1, "refused once, accepted once on replay: %d/%d", req, ok);
    pthread_mutex_lock(&s_mu);
    char want[32];
    snprintf(want, sizeof want, "msg_%s", id);
    for (int i = 0; i < s_nseen; i++) if (strcmp(s_seen[i].order, refused) == 0) CHECK(strcmp(s_seen[i].id, want) == 0, "same id");
    pthread_mutex_unlock(&s_mu);

    /* All: the rest, and shop2 (stopped by 410) takes its held push too. */
    CHECK(s_ctl("replay all", &out) == 0 && strstr(out, "replayed 2"), "replay all: %s", out);
    free(out);
    s_until("0", "SELECT count(*) FROM commerce.outbox WHERE delivered_at IS NULL");
    EXPECT("0", "SELECT count(*) FROM commerce.outbox_dead");
    EXPECT("f", "SELECT push_gone_at IS NOT NULL FROM commerce.platforms WHERE name = 'shop2'");
    /* Every push accepted exactly once. */
    pthread_mutex_lock(&s_mu);
    for (int i = 0; i < s_nseen; i++) {
        int accepted = 0;
        for (int k = 0; k < s_nseen; k++) accepted += strcmp(s_seen[k].id, s_seen[i].id) == 0 && s_seen[k].status == 200;
        CHECK(accepted == 1, "%s accepted %d times", s_seen[i].id, accepted);
    }
    pthread_mutex_unlock(&s_mu);
    CHECK(s_ctl("outbox", &out) == 0 && strstr(out, "(none)"), "outbox empty: %s", out);
    free(out);
    free(refused);
    free(id);
    TEST_PASS(__func__);
}

static void
two_instances_never_push_one_row_twice(void)
{
    TEST_BEGIN(__func__);
    int before = s_nseen;
    char *first = NULL;
    for (int i = 0; i < 40; i++) {
        char phone[32];
        snprintf(phone, sizeof phone, "1370000%04d", i);
        char *n = s_place("shop1", phone, "ok");
        if (i == 0) first = n;
        else free(n);
    }
    s_until("0", "SELECT count(*) FROM commerce.outbox WHERE delivered_at IS NULL");
    pthread_mutex_lock(&s_mu);
    int pushes = s_nseen - before;
    for (int i = before; i < s_nseen; i++)
        for (int k = i + 1; k < s_nseen; k++) CHECK(strcmp(s_seen[i].id, s_seen[k].id) != 0, "%s pushed twice", s_seen[i].id);
    pthread_mutex_unlock(&s_mu);
    CHECK(pushes == 40, "40 orders, %d pushes", pushes);
    free(first);
    TEST_PASS(__func__);
}

static pid_t
s_start_order_sync(const char *label, char *rpc, size_t cap)
{
    char v[16];
    int http = cc_harness_free_port(), admin = cc_harness_free_port();
    if (!s_admin) s_admin = admin;
    snprintf(v, sizeof v, "%d", http);
    setenv("ORDER_SYNC_HTTP_PORT", v, 1);
    snprintf(v, sizeof v, "%d", admin);
    setenv("ORDER_SYNC_ADMIN_PORT", v, 1);
    snprintf(rpc, cap, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ORDER_SYNC_RPC", rpc, 1);
    setenv("CC_INSTANCE", label, 1);
    pid_t pid = cc_harness_spawn_as(s_h, label, "order-sync", NULL);
    CHECK(cc_harness_wait_http(admin, "/healthz", 20000), "%s healthy", label);
    return pid;
}

int
main(void)
{
    cc_log_init("push_test", "push_test");
    CHECK(sodium_init() >= 0, "sodium");
    s_h = cc_harness_new("push");
    cc_harness_start_pg(s_h);
    cc_harness_start_forwarder(s_h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "order_sync", OS_SOURCE_DIR "/sql", NULL) == 0, "migrate");

    int sim_port = cc_harness_free_port();
    cc_http_t *sim = cc_http_new("127.0.0.1", sim_port, 4);
    CHECK(sim, "simulator listens");
    cc_http_route(sim, "/hooks", s_platform, NULL);
    cc_http_route(sim, "/gone", s_platform, (void *) 1);
    randombytes_buf(s_key, sizeof s_key);
    char b64[64], sql[1024];
    sodium_bin2base64(b64, sizeof b64, s_key, sizeof s_key, sodium_base64_VARIANT_ORIGINAL);
    snprintf(sql, sizeof sql,
             "INSERT INTO commerce.platforms (name, secret, push_secret, endpoint) VALUES"
             " ('shop1', 'whsec_AAAA', 'whsec_%s', 'http://127.0.0.1:%d/hooks'),"
             " ('shop2', 'whsec_%s', NULL, 'http://127.0.0.1:%d/gone');"
             "INSERT INTO commerce.warehouses (code, name) VALUES ('WH1', 'Main');"
             "INSERT INTO commerce.products (code, name, price_minor, currency) VALUES ('TV-55', 'TV 55 inch', 12990, 'CNY');"
             "INSERT INTO commerce.stock (product_code, warehouse_code, on_hand) VALUES ('TV-55', 'WH1', 1000);",
             b64, sim_port, b64, sim_port);
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "platforms: %s", cc_pg_error(s_pg));

    setenv("ORDER_SYNC_PUSH_BACKOFF_MS", "50", 1);
    setenv("ORDER_SYNC_PUSH_MAX_ATTEMPTS", "4", 1);
    setenv("ORDER_SYNC_PUSH_POLL_MS", "200", 1);
    setenv("ORDER_SYNC_PUSH_KEEP_DAYS", "30", 1);
    pid_t os1 = s_start_order_sync("order-sync-1", s_rpc, sizeof s_rpc);
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "push_test", .retry_ms = 1000, .max_attempts = 3 };
    s_client = cc_rpc_client_new(&o);

    pushes_arrive_signed_once_in_order();
    failed_pushes_are_retried_until_they_arrive();
    retry_after_is_honoured();
    permanent_refusals_and_exhausted_retries_become_dead_letters();
    gone_stops_the_platform_until_replay();
    dead_letters_are_listed_and_replayed_with_the_same_webhook_id();
    /* A push delivered 40 days ago: the next instance to start forgets it
     * (ORDER_SYNC_PUSH_KEEP_DAYS=30); one delivered yesterday stays. */
    char *old = s_one("UPDATE commerce.outbox SET delivered_at = now() - interval '40 days' WHERE id ="
                      " (SELECT min(id) FROM commerce.outbox) RETURNING id");
    char *recent = s_one("UPDATE commerce.outbox SET delivered_at = now() - interval '1 day' WHERE id ="
                         " (SELECT max(id) FROM commerce.outbox) RETURNING id");
    pid_t os2 = s_start_order_sync("order-sync-2", s_rpc2, sizeof s_rpc2);
    TEST_BEGIN("old_delivered_pushes_are_purged");
    s_until("0", "SELECT count(*) FROM commerce.outbox WHERE id = %s", old);
    EXPECT("1", "SELECT count(*) FROM commerce.outbox WHERE id = %s", recent);
    TEST_PASS("old_delivered_pushes_are_purged");
    free(old);
    free(recent);
    two_instances_never_push_one_row_twice();

    CHECK(cc_harness_stop(s_h, os2, SIGTERM, 10000) == 0, "second instance stops cleanly");
    CHECK(cc_harness_stop(s_h, os1, SIGTERM, 10000) == 0, "order-sync stops cleanly");
    cc_rpc_client_destroy(&s_client);
    cc_http_destroy(&sim);
    cc_pg_destroy(&s_pg);
    cc_harness_destroy(&s_h);
    cc_log_shutdown();
    printf("push_test: 8 passed, 0 failed\n");
    return 0;
}
