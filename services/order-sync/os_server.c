/* os_server: platform webhooks over HTTP (CivetWeb threads verify, parse and
 * validate, then wait on the group-commit writers), order lookups and changes
 * over the bus (os_ops), the pushes back to the platforms (os_outbox) and
 * the reconciliation with their list endpoints (os_reconcile). */
#include "os_server.h"
#include "os_dialects.h"
#include "os_ops.h"
#include "os_outbox.h"
#include "os_import.h"
#include "os_platforms.h"
#include "os_reconcile.h"
#include "os_webhook.h"
#include "os_writer.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"
#include "order.pb-c.h"

#include <curl/curl.h>
#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_BODY (1024 * 1024)
#define MAX_IMPORT_BODY (8 * 1024 * 1024)
#define OS_MAX_WRITERS 16

static const cc_cfg_key_t s_keys[] = {
    { "ORDER_SYNC_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port (/healthz, /metrics)" },
    { "ORDER_SYNC_HTTP_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Platform API port (webhooks)" },
    { "ORDER_SYNC_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Endpoint of order-sync's requests on the bus (lookups, orders by phone)" },
    { "ORDER_SYNC_HTTP_THREADS", CC_CFG_INT, 1, 256, NULL, 0,
      "Platform API worker threads (each holds one webhook while its batch commits)" },
    { "ORDER_SYNC_WRITERS", CC_CFG_INT, 1, OS_MAX_WRITERS, NULL, 0,
      "Writer threads (database connections) applying webhook batches; one entity always goes to the same one" },
    { "ORDER_SYNC_BATCH_MAX", CC_CFG_INT, 1, OS_BATCH_LIMIT, NULL, 0, "Webhook events applied per transaction at most" },
    { "ORDER_SYNC_PLATFORM_REFRESH_MS", CC_CFG_INT, 100, 600000, NULL, 0, "commerce.platforms is re-read this often" },
    { "ORDER_SYNC_WRITE_WAIT_MS", CC_CFG_INT, 100, 60000, NULL, 0,
      "A webhook waits this long for its commit before a 503 (platforms time out at about 5 s)" },
    { "ORDER_SYNC_LOOKUP_CONNECTIONS", CC_CFG_INT, 1, 16, NULL, 0,
      "PostgreSQL connections for order lookups: batches answered at once" },
    { "ORDER_SYNC_PUSH_BACKOFF_MS", CC_CFG_INT, 1, 3600000, NULL, 0, "First retry delay of a failed push (doubled each time)" },
    { "ORDER_SYNC_PUSH_BACKOFF_MAX_MS", CC_CFG_INT, 1, 86400000, NULL, 0, "Longest delay between push attempts (Retry-After too)" },
    { "ORDER_SYNC_PUSH_MAX_ATTEMPTS", CC_CFG_INT, 1, 100, NULL, 0, "Attempts before a push becomes a dead letter" },
    { "ORDER_SYNC_PUSH_TIMEOUT_MS", CC_CFG_INT, 100, 120000, NULL, 0,
      "Timeout of one push attempt (and of one reconciliation page)" },
    { "ORDER_SYNC_PUSH_POLL_MS", CC_CFG_INT, 10, 600000, NULL, 0, "Look for due pushes at least this often" },
    { "ORDER_SYNC_PUSH_KEEP_DAYS", CC_CFG_INT, 1, 3650, NULL, 0, "Delivered pushes are deleted from the outbox after this" },
    { "ORDER_SYNC_RECONCILE_MS", CC_CFG_INT, 100, 86400000, NULL, 0,
      "Platforms with a reconcile_url are polled for missed changes this often" },
    { "ORDER_SYNC_RECONCILE_OVERLAP_S", CC_CFG_INT, 0, 86400, NULL, 0,
      "Each reconciliation pass looks this far before the previous one began" },
    CC_CFG_END
};

const cc_service_def_t os_service_def = {
    .name = "order-sync",
    .summary = "Commerce data from the shops' platforms: webhooks in, lookups for agents and the ivr.",
    .keys = s_keys,
    .admin_port_key = "ORDER_SYNC_ADMIN_PORT",
    .needs = CC_NEED_BUS | CC_NEED_PG,
};

struct _os_server_t {
    cc_service_t *svc;
    cc_http_t *http;
    cc_rpc_server_t *rpc;
    os_ops_t *ops;
    os_outbox_t *outbox;
    os_reconcile_t *reconcile;
    os_platforms_t *platforms;
    os_writer_t *writers[OS_MAX_WRITERS];
    int nwriters;
    zsock_t *changes;          /* the loop's end: the writer's committed changes, published as events */
    int batch_max;
    char *db_url;
    int reconnect_ms;
    pthread_key_t export_pg;   /* an HTTP thread's connection for exports, made at its first */
    bool export_key;
    cc_metric_t *m_applied, *m_refused;
};

#define CHANGES_ENDPOINT "inproc://order-sync-changes"

/* Frames topic, key, payload from the writer: published on the bus (its
 * sockets belong to the loop's thread). */
static void
s_on_change(void *arg, void *sock)
{
    os_server_t *self = arg;
    zmsg_t *m = zmsg_recv(sock);
    if (!m) return;
    char *topic = zmsg_popstr(m), *key = zmsg_popstr(m);
    zframe_t *payload = zmsg_pop(m);
    if (topic && key && payload)
        cc_bus_publish(cc_service_bus(self->svc), topic, key, zframe_data(payload), zframe_size(payload));
    free(topic);
    free(key);
    zframe_destroy(&payload);
    zmsg_destroy(&m);
}

/* Reads the whole body (at most MAX_BODY). Returns it (caller frees) with
 * *len, or NULL after answering 400/413 (*status set). */
static char *
s_read_body(struct mg_connection *conn, long long max, size_t *len, int *status)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->content_length < 0 || ri->content_length > max) {
        *status = cc_http_error(conn, 413, max == MAX_BODY ? "body missing or over 1 MiB" : "body missing or over 8 MiB");
        return NULL;
    }
    char *body = malloc((size_t) ri->content_length + 1);
    if (!body) abort();
    size_t got = 0;
    while (got < (size_t) ri->content_length) {
        int n = mg_read(conn, body + got, (size_t) ri->content_length - got);
        if (n <= 0) break;
        got += (size_t) n;
    }
    body[got] = '\0';
    if (got != (size_t) ri->content_length) {
        free(body);
        *status = cc_http_error(conn, 400, "body shorter than Content-Length");
        return NULL;
    }
    *len = got;
    return body;
}

/* The writer of the entity event is about, so that one entity's events are
 * applied in the order they came, by one connection (FNV-1a of its key). */
static os_writer_t *
s_writer_for(os_server_t *self, json_t *event)
{
    static const char *const keys[] = { "order_number", "order_external_id", "product_code", "code", "id", NULL };
    json_t *data = json_object_get(event, "data");
    const char *key = "";
    for (int i = 0; keys[i] && !*key; i++) {
        const char *v = json_string_value(json_object_get(data, keys[i]));
        if (v) key = v;
    }
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *) key; *p; p++) h = (h ^ *p) * 16777619u;
    return self->writers[h % (uint32_t) self->nwriters];
}

/* A delivery id (webhook-id, X-Shopify-Webhook-Id, X-WC-Webhook-Delivery-ID)
 * is 1-128 printable ASCII characters. Shopify's and WooCommerce's are not
 * covered by the signature, so anything else is refused before it is used. */
static bool
s_delivery_id_ok(const char *id)
{
    if (!id || !*id || strlen(id) > 128) return false;
    for (const char *p = id; *p; p++)
        if (*p < 0x21 || *p > 0x7e) return false;
    return true;
}

/* Hands one event to its writer and answers with its result. Takes event
 * (NULL, when it could not be built, is a 400). */
static int
s_apply_one(os_server_t *self, struct mg_connection *conn, json_t *event)
{
    if (!event) return cc_http_error(conn, 400, "the event could not be built from this delivery");
    os_writer_t *writer = s_writer_for(self, event);
    json_t *batch = json_pack("[o]", event);
    char *text = json_dumps(batch, JSON_COMPACT), *results = NULL;
    json_decref(batch);
    int rc = os_writer_apply(writer, text, 1, &results);
    free(text);
    if (rc) return cc_http_error(conn, 503, "storage unavailable; retry later");
    json_t *all = json_loads(results, 0, NULL), *r = json_array_get(all, 0);
    int code = (int) json_integer_value(json_object_get(r, "code"));
    int status;
    if (code == 200) {
        char *body = NULL;
        json_t *ok = json_pack("{s:O}", "result", json_object_get(r, "result"));
        if (json_object_get(r, "note")) json_object_set(ok, "note", json_object_get(r, "note"));
        body = json_dumps(ok, JSON_COMPACT);
        status = cc_http_send(conn, 200, "application/json", body, strlen(body));
        free(body);
        json_decref(ok);
    } else {
        const char *why = json_string_value(json_object_get(r, "error"));
        status = cc_http_error(conn, code >= 400 && code < 600 ? code : 500, why ? why : "not applied");
    }
    json_decref(all);
    free(results);
    return status;
}

/* The host of a URL ("https://shop.example.com/" -> "shop.example.com"). */
static void
s_url_host(const char *url, char *host, size_t cap)
{
    const char *p = url ? strstr(url, "://") : NULL;
    p = p ? p + 3 : (url ? url : "");
    size_t n = strcspn(p, "/:?#");
    snprintf(host, cap, "%.*s", (int) (n < cap ? n : cap - 1), p);
}

/* POST /webhooks/<platform>: Standard Webhooks, Shopify (X-Shopify-*) or
 * WooCommerce (X-WC-Webhook-*). Acknowledged once committed. */
static int
s_webhook(struct mg_connection *conn, void *arg)
{
    os_server_t *self = arg;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (strcmp(ri->request_method, "POST") != 0) return cc_http_error(conn, 405, "POST only");
    const char *name = ri->local_uri + strlen("/webhooks/");
    if (!*name || strlen(name) > 64 || strchr(name, '/')) return cc_http_error(conn, 404, "no such platform");
    const char *shopify_topic = mg_get_header(conn, "X-Shopify-Topic");
    const char *woo_topic = mg_get_header(conn, "X-WC-Webhook-Topic");
    os_platform_t pf;
    bool found;
    char host[256];
    if (shopify_topic) {
        const char *domain = mg_get_header(conn, "X-Shopify-Shop-Domain");
        found = domain && os_platforms_find(self->platforms, domain, true, &pf);
    } else if (woo_topic) {
        s_url_host(mg_get_header(conn, "X-WC-Webhook-Source"), host, sizeof host);
        found = os_platforms_find(self->platforms, host, true, &pf);
    } else {
        found = os_platforms_find(self->platforms, name, false, &pf);
    }
    const char *dialect = shopify_topic ? "shopify" : woo_topic ? "woocommerce" : "standard";
    if (!woo_topic && strcmp(name, "woocommerce") == 0 && mg_get_header(conn, "X-WC-Webhook-ID")) {
        /* WooCommerce's ping when a webhook is saved ("webhook_id=N", no
         * topic, no signature): answered 200 so it is not counted a failed
         * delivery; nothing is read or stored. */
        return cc_http_send(conn, 200, "application/json", "{\"result\":\"ping\"}", 17);
    }
    if (!found || strcmp(pf.dialect, dialect) != 0 || (strcmp(name, dialect) != 0 && strcmp(name, pf.name) != 0)) {
        cc_metric_add(self->m_refused, 1);
        return cc_http_error(conn, 404, "no such platform");
    }
    size_t len = 0;
    int status = 0;
    char *body = s_read_body(conn, MAX_BODY, &len, &status);
    if (!body) {
        cc_metric_add(self->m_refused, 1);
        return status;
    }
    const char *why = NULL, *id;
    int bad;
    if (shopify_topic) {
        id = mg_get_header(conn, "X-Shopify-Webhook-Id");
        bad = os_verify_body(pf.secret, body, len, mg_get_header(conn, "X-Shopify-Hmac-Sha256"), &why);
    } else if (woo_topic) {
        id = mg_get_header(conn, "X-WC-Webhook-Delivery-ID");
        bad = os_verify_body(pf.secret, body, len, mg_get_header(conn, "X-WC-Webhook-Signature"), &why);
    } else {
        id = mg_get_header(conn, "webhook-id");
        bad = os_verify(pf.secret, id, mg_get_header(conn, "webhook-timestamp"), body, len,
                        mg_get_header(conn, "webhook-signature"), (int64_t) time(NULL), &why);
    }
    if (!bad && !s_delivery_id_ok(id)) {
        bad = 400;
        why = "the delivery id header is missing, longer than 128 characters or not printable ASCII";
    }
    if (bad) {
        CC_WARN("webhook refused", "platform=%s dialect=%s reason=\"%s\"", pf.name, dialect, why);
        status = cc_http_error(conn, bad, why);
    } else {
        char msg[256];
        const char *kind = NULL;
        json_t *data = NULL;
        int code = os_dialect_map_shop(dialect, shopify_topic ? shopify_topic : woo_topic, pf.currency, body, len,
                                       &kind, &data, msg, sizeof msg);
        if (code == 200 && !os_check(kind, data, msg, sizeof msg)) code = 400;
        if (code != 200) {
            json_decref(data);
            status = cc_http_error(conn, code, msg);
        } else {
            status = s_apply_one(self, conn, os_event(kind, pf.name, id, data));
        }
    }
    cc_metric_add(status == 200 ? self->m_applied : self->m_refused, 1);
    free(body);
    return status;
}

/* Applies items ({"event"} or a refusal, from os_import) through the writers,
 * batch_max events a transaction, and answers with a count per result and
 * each item's result. 503 when a writer could not take some (their result
 * says so; importing again applies them, de-duplicated by id or version). */
static int
s_apply_items(os_server_t *self, struct mg_connection *conn, json_t *items)
{
    size_t n = json_array_size(items);
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(results, json_null());
    bool unavailable = false;
    for (int w = 0; w < self->nwriters; w++) {
        size_t at[OS_BATCH_LIMIT];
        int count = 0;
        json_t *batch = json_array();
        for (size_t i = 0; i <= n; i++) {
            json_t *ev = i < n ? json_object_get(json_array_get(items, i), "event") : NULL;
            if (ev && s_writer_for(self, ev) == self->writers[w]) {
                at[count++] = i;
                json_array_append(batch, ev);
            }
            if (count == self->batch_max || (i == n && count)) {
                char *text = json_dumps(batch, JSON_COMPACT), *out = NULL;
                json_t *got = os_writer_apply(self->writers[w], text, count, &out) == 0 ? json_loads(out, 0, NULL) : NULL;
                for (int k = 0; k < count; k++) {
                    json_t *r = json_array_get(got, (size_t) k);
                    if (!r) unavailable = true;
                    json_array_set(results, at[k], r ? r : json_pack("{s:i, s:s}", "code", 503, "error",
                                                                       "storage unavailable; import again"));
                    if (!r) json_decref(json_array_get(results, at[k]));
                }
                json_decref(got);
                free(text);
                free(out);
                json_array_clear(batch);
                count = 0;
            }
        }
        json_decref(batch);
    }
    int applied = 0, duplicate = 0, stale = 0, refused = 0;
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(results, i);
        if (json_is_null(r)) r = json_array_get(items, i);   /* refused before the writer */
        const char *res = json_string_value(json_object_get(r, "result"));
        if (res && strcmp(res, "applied") == 0) applied++;
        else if (res && strcmp(res, "duplicate") == 0) duplicate++;
        else if (res && strcmp(res, "stale") == 0) stale++;
        else refused++;
        json_t *one = json_pack("{s:I, s:O*}", "index", (json_int_t) i, "code", json_object_get(r, "code"));
        if (res) json_object_set_new(one, "result", json_string(res));
        if (json_object_get(r, "note")) json_object_set(one, "note", json_object_get(r, "note"));
        else json_object_set(one, "error", json_object_get(r, "error"));
        json_array_append_new(list, one);
    }
    json_t *reply = json_pack("{s:i, s:i, s:i, s:i, s:o}", "applied", applied, "duplicate", duplicate, "stale", stale,
                              "refused", refused, "results", list);
    char *text = json_dumps(reply, JSON_COMPACT);
    int status = cc_http_send(conn, unavailable ? 503 : 200, "application/json", text, strlen(text));
    free(text);
    json_decref(reply);
    json_decref(results);
    return status;
}

/* Checks the Standard Webhooks headers of a bulk request against the
 * platform's secret. Returns 0, or the status sent. */
static int
s_bulk_auth(os_server_t *self, struct mg_connection *conn, const char *name, const char *body, size_t len,
            os_platform_t *pf)
{
    if (!os_platforms_find(self->platforms, name, false, pf)) return cc_http_error(conn, 404, "no such platform");
    const char *why = NULL;
    int bad = os_verify(pf->secret, mg_get_header(conn, "webhook-id"), mg_get_header(conn, "webhook-timestamp"), body, len,
                        mg_get_header(conn, "webhook-signature"), (int64_t) time(NULL), &why);
    if (bad) {
        CC_WARN("bulk request refused", "platform=%s reason=\"%s\"", pf->name, why);
        return cc_http_error(conn, bad, why);
    }
    return 0;
}

/* Splits "/<prefix>/<platform>[/<what>.csv]" into name and what ("" when
 * none). Returns false when the path is not one of those. */
static bool
s_bulk_path(const char *uri, const char *prefix, char *name, size_t cap, char *what, size_t wcap)
{
    const char *p = uri + strlen(prefix);
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= cap || n > 64) return false;
    snprintf(name, cap, "%.*s", (int) n, p);
    p += n;
    *what = '\0';
    if (!*p) return true;
    if (strcmp(p, "/customers.csv") == 0) snprintf(what, wcap, "customers");
    else if (strcmp(p, "/products.csv") == 0) snprintf(what, wcap, "products");
    else return false;
    return true;
}

/* POST /import/<platform> (a JSON array of events) and
 * POST /import/<platform>/customers.csv or products.csv. */
static int
s_import(struct mg_connection *conn, void *arg)
{
    os_server_t *self = arg;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (strcmp(ri->request_method, "POST") != 0) return cc_http_error(conn, 405, "POST only");
    char name[80], what[16];
    if (!s_bulk_path(ri->local_uri, "/import/", name, sizeof name, what, sizeof what))
        return cc_http_error(conn, 404, "no such import (/import/<platform>, /import/<platform>/customers.csv or products.csv)");
    size_t len = 0;
    int status = 0;
    char *body = s_read_body(conn, MAX_IMPORT_BODY, &len, &status);
    if (!body) return status;
    os_platform_t pf;
    if ((status = s_bulk_auth(self, conn, name, body, len, &pf)) == 0) {
        char why[256];
        json_t *items = *what ? os_import_csv(pf.name, what, body, len, why, sizeof why)
                              : os_import_json(pf.name, body, len, why, sizeof why);
        status = items ? s_apply_items(self, conn, items) : cc_http_error(conn, 400, why);
        json_decref(items);
    }
    free(body);
    return status;
}

static void
s_export_pg_free(void *p)
{
    cc_pg_t *pg = p;
    cc_pg_destroy(&pg);
}

/* The calling HTTP thread's connection for exports (made at its first
 * export, kept until the thread ends; cc_pg reconnects it when needed). */
static cc_pg_t *
s_export_pg(os_server_t *self)
{
    cc_pg_t *pg = pthread_getspecific(self->export_pg);
    if (!pg) {
        /* Named, so that pg_stat_activity tells these from the writers'. */
        char url[2048];
        if (strncmp(self->db_url, "postgres://", 11) == 0 || strncmp(self->db_url, "postgresql://", 13) == 0)
            snprintf(url, sizeof url, "%s%capplication_name=order-sync-export", self->db_url,
                     strchr(self->db_url, '?') ? '&' : '?');
        else
            snprintf(url, sizeof url, "%s application_name=order-sync-export", self->db_url);
        pg = cc_pg_new(url, self->reconnect_ms, NULL);
        pthread_setspecific(self->export_pg, pg);
    }
    return pg;
}

/* GET /export/<platform>/customers.csv or products.csv (signed like a
 * webhook with an empty body). */
static int
s_export(struct mg_connection *conn, void *arg)
{
    os_server_t *self = arg;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (strcmp(ri->request_method, "GET") != 0) return cc_http_error(conn, 405, "GET only");
    char name[80], what[16];
    if (!s_bulk_path(ri->local_uri, "/export/", name, sizeof name, what, sizeof what) || !*what)
        return cc_http_error(conn, 404, "no such export (/export/<platform>/customers.csv or products.csv)");
    os_platform_t pf;
    int status = s_bulk_auth(self, conn, name, "", 0, &pf);
    if (status) return status;
    size_t len = 0;
    char *csv = os_export_csv(s_export_pg(self), pf.name, what, &len);
    if (!csv) return cc_http_error(conn, 503, "storage unavailable; retry later");
    status = cc_http_send(conn, 200, "text/csv; charset=utf-8", csv, len);
    free(csv);
    return status;
}

/* SIGHUP: the platform table is read again at once. */
static void
s_on_reload(void *arg)
{
    os_server_t *self = arg;
    os_writer_reload(self->writers[0]);
}

/* For os_reconcile: events applied by their writers (as webhooks are), in
 * batches of batch_max; a result per event, in order. */
static json_t *
s_apply_events(void *arg, json_t *events)
{
    os_server_t *self = arg;
    size_t n = json_array_size(events);
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(results, json_pack("{s:i, s:s}", "code", 503, "error",
                                                                             "storage unavailable"));
    for (int w = 0; w < self->nwriters; w++) {
        size_t at[OS_BATCH_LIMIT];
        int count = 0;
        json_t *batch = json_array();
        for (size_t i = 0; i <= n; i++) {
            json_t *ev = i < n ? json_array_get(events, i) : NULL;
            if (ev && s_writer_for(self, ev) == self->writers[w]) {
                at[count++] = i;
                json_array_append(batch, ev);
            }
            if (count == self->batch_max || (i == n && count)) {
                char *text = json_dumps(batch, JSON_COMPACT), *out = NULL;
                json_t *got = os_writer_apply(self->writers[w], text, count, &out) == 0 ? json_loads(out, 0, NULL) : NULL;
                for (int k = 0; k < count; k++)
                    if (json_array_get(got, (size_t) k)) json_array_set(results, at[k], json_array_get(got, (size_t) k));
                json_decref(got);
                free(text);
                free(out);
                json_array_clear(batch);
                count = 0;
            }
        }
        json_decref(batch);
    }
    return results;
}

os_server_t *
os_server_new(cc_service_t *svc)
{
    if (sodium_init() < 0) return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
    os_server_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->svc = svc;
    cc_cfg_t *cfg = cc_service_cfg(svc);
    cc_metrics_t *m = cc_service_metrics(svc);
    self->m_applied = cc_metrics_counter(m, "order_sync_webhooks_total", "result=\"accepted\"", "Webhooks answered");
    self->m_refused = cc_metrics_counter(m, "order_sync_webhooks_total", "result=\"refused\"", "Webhooks answered");
    self->batch_max = (int) cc_cfg_int(cfg, "ORDER_SYNC_BATCH_MAX");
    self->db_url = strdup(cc_cfg_str(cfg, "DATABASE_URL"));
    self->reconnect_ms = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS");
    if (pthread_key_create(&self->export_pg, s_export_pg_free) != 0) goto err;
    self->export_key = true;
    self->changes = zsock_new_pull("@" CHANGES_ENDPOINT);
    if (!self->changes) goto err;
    cc_loop_add_zsock(cc_service_loop(svc), self->changes, s_on_change, self);
    self->platforms = os_platforms_new();
    os_writer_opts_t wo = {
        .db_url = cc_cfg_str(cfg, "DATABASE_URL"),
        .reconnect_ms = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS"),
        .batch_max = self->batch_max,
        .refresh_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PLATFORM_REFRESH_MS"),
        .wait_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_WRITE_WAIT_MS"),
        .platforms = self->platforms,
        .changes = CHANGES_ENDPOINT,
        .metrics = m,
    };
    self->nwriters = (int) cc_cfg_int(cfg, "ORDER_SYNC_WRITERS");
    for (int i = 0; i < self->nwriters; i++) {
        self->writers[i] = os_writer_new(&wo);
        if (!self->writers[i]) goto err;
        wo.platforms = NULL;   /* the first writer keeps the platform table */
    }
    self->ops = os_ops_new(svc);
    self->rpc = cc_rpc_server_new(cc_cfg_str(cfg, "ORDER_SYNC_RPC"), os_ops_methods, self->ops, m);
    if (!self->rpc) goto err;
    cc_rpc_server_attach(self->rpc, cc_service_loop(svc));
    self->http = cc_http_new(cc_cfg_str(cfg, "CC_BIND_HOST"), (int) cc_cfg_int(cfg, "ORDER_SYNC_HTTP_PORT"),
                             (int) cc_cfg_int(cfg, "ORDER_SYNC_HTTP_THREADS"));
    if (!self->http) goto err;
    cc_service_on_reload(svc, s_on_reload, self);
    cc_http_route(self->http, "/webhooks/", s_webhook, self);
    cc_http_route(self->http, "/import/", s_import, self);
    cc_http_route(self->http, "/export/", s_export, self);
    os_outbox_opts_t oo = {
        .db_url = cc_cfg_str(cfg, "DATABASE_URL"),
        .reconnect_ms = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS"),
        .backoff_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_BACKOFF_MS"),
        .backoff_max_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_BACKOFF_MAX_MS"),
        .max_attempts = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_MAX_ATTEMPTS"),
        .timeout_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_TIMEOUT_MS"),
        .poll_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_POLL_MS"),
        .keep_days = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_KEEP_DAYS"),
        .metrics = m,
    };
    self->outbox = os_outbox_new(&oo);
    if (!self->outbox) goto err;
    os_reconcile_opts_t ro = {
        .db_url = cc_cfg_str(cfg, "DATABASE_URL"),
        .reconnect_ms = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS"),
        .every_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_RECONCILE_MS"),
        .overlap_s = (int) cc_cfg_int(cfg, "ORDER_SYNC_RECONCILE_OVERLAP_S"),
        .timeout_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_TIMEOUT_MS"),
        .apply = s_apply_events,
        .apply_arg = self,
        .metrics = m,
    };
    self->reconcile = os_reconcile_new(&ro);
    if (!self->reconcile) goto err;
    return self;
err:
    os_server_destroy(&self);
    return NULL;
}

void
os_server_destroy(os_server_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_server_t *self = *self_p;
    cc_service_off(self->svc, self);
    cc_http_destroy(&self->http);   /* no more webhooks come in */
    os_reconcile_destroy(&self->reconcile);   /* it applies through the writers */
    for (int i = 0; i < self->nwriters; i++)
        os_writer_destroy(&self->writers[i]);   /* what was queued is committed and its changes handed over */
    os_outbox_destroy(&self->outbox);   /* after its current push */
    os_ops_drain(self->ops);            /* lookups in flight are answered */
    cc_rpc_server_destroy(&self->rpc);
    os_ops_destroy(&self->ops);
    if (self->changes) {
        while (zsock_events(self->changes) & ZMQ_POLLIN) s_on_change(self, self->changes);
        cc_loop_remove_zsock(cc_service_loop(self->svc), self->changes);
        zsock_destroy(&self->changes);
    }
    os_platforms_destroy(&self->platforms);
    if (self->export_key) pthread_key_delete(self->export_pg);   /* the HTTP threads, gone, closed theirs */
    free(self->db_url);
    free(self);
    curl_global_cleanup();
    *self_p = NULL;
}
