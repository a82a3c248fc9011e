/* os_server: platform webhooks over HTTP (CivetWeb threads verify, parse and
 * validate, then wait on the group-commit writer), order lookups and changes
 * over the bus (os_ops, the loop's connection) and the pushes back to the
 * platforms (os_outbox, its own thread and connection). */
#include "os_server.h"
#include "os_dialects.h"
#include "os_ops.h"
#include "os_outbox.h"
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_BODY (1024 * 1024)

static const cc_cfg_key_t s_keys[] = {
    { "ORDER_SYNC_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port (/healthz, /metrics)" },
    { "ORDER_SYNC_HTTP_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Platform API port (webhooks)" },
    { "ORDER_SYNC_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Endpoint of the order lookups on the bus" },
    { "ORDER_SYNC_HTTP_THREADS", CC_CFG_INT, 1, 256, NULL, 0,
      "Platform API worker threads (each holds one webhook while its batch commits)" },
    { "ORDER_SYNC_BATCH_MAX", CC_CFG_INT, 1, OS_BATCH_LIMIT, NULL, 0, "Webhook events applied per transaction at most" },
    { "ORDER_SYNC_PLATFORM_REFRESH_MS", CC_CFG_INT, 100, 600000, NULL, 0, "commerce.platforms is re-read this often" },
    { "ORDER_SYNC_WRITE_WAIT_MS", CC_CFG_INT, 100, 60000, NULL, 0,
      "A webhook waits this long for its commit before a 503 (platforms time out at about 5 s)" },
    { "ORDER_SYNC_PUSH_BACKOFF_MS", CC_CFG_INT, 1, 3600000, NULL, 0, "First retry delay of a failed push (doubled each time)" },
    { "ORDER_SYNC_PUSH_BACKOFF_MAX_MS", CC_CFG_INT, 1, 86400000, NULL, 0, "Longest delay between push attempts (Retry-After too)" },
    { "ORDER_SYNC_PUSH_MAX_ATTEMPTS", CC_CFG_INT, 1, 100, NULL, 0, "Attempts before a push becomes a dead letter" },
    { "ORDER_SYNC_PUSH_TIMEOUT_MS", CC_CFG_INT, 100, 120000, NULL, 0,
      "Timeout of one push attempt (and of one reconciliation page)" },
    { "ORDER_SYNC_RECONCILE_MS", CC_CFG_INT, 100, 86400000, NULL, 0,
      "Platforms with a reconcile_url are polled for missed changes this often" },
    { "ORDER_SYNC_RECONCILE_OVERLAP_S", CC_CFG_INT, 0, 86400, NULL, 0,
      "Each reconciliation pass looks this far before the previous one began" },
    { "ORDER_SYNC_LOOKUP_CONNECTIONS", CC_CFG_INT, 1, 16, NULL, 0,
      "PostgreSQL connections for order lookups: batches answered at once" },
    { "ORDER_SYNC_PUSH_POLL_MS", CC_CFG_INT, 10, 600000, NULL, 0, "Look for due pushes at least this often" },
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
    os_writer_t *writer;
    zsock_t *changes;          /* the loop's end: the writer's committed changes, published as events */
    int batch_max;
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
s_read_body(struct mg_connection *conn, size_t *len, int *status)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (ri->content_length < 0 || ri->content_length > MAX_BODY) {
        *status = cc_http_error(conn, 413, "body missing or over 1 MiB");
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

/* Hands one event to the writer and answers with its result. Takes event. */
static int
s_apply_one(os_server_t *self, struct mg_connection *conn, json_t *event)
{
    json_t *batch = json_pack("[o]", event);
    char *text = json_dumps(batch, JSON_COMPACT), *results = NULL;
    json_decref(batch);
    int rc = os_writer_apply(self->writer, text, 1, &results);
    free(text);
    if (rc) return cc_http_error(conn, 503, "storage unavailable; retry later");
    json_t *all = json_loads(results, 0, NULL), *r = json_array_get(all, 0);
    int code = (int) json_integer_value(json_object_get(r, "code"));
    int status;
    if (code == 200) {
        char *body = NULL;
        json_t *ok = json_pack("{s:O}", "result", json_object_get(r, "result"));
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
    if (!found || strcmp(pf.dialect, dialect) != 0 || (strcmp(name, dialect) != 0 && strcmp(name, pf.name) != 0)) {
        cc_metric_add(self->m_refused, 1);
        return cc_http_error(conn, 404, "no such platform");
    }
    size_t len = 0;
    int status = 0;
    char *body = s_read_body(conn, &len, &status);
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
    if (!bad && (!id || !*id || strlen(id) > 128)) {
        bad = 400;
        why = "the delivery id header is missing or longer than 128 characters";
    }
    if (bad) {
        CC_WARN("webhook refused", "platform=%s dialect=%s reason=\"%s\"", pf.name, dialect, why);
        status = cc_http_error(conn, bad, why);
    } else {
        char msg[256];
        const char *kind = NULL;
        json_t *data = NULL;
        int code = os_dialect_map(dialect, shopify_topic ? shopify_topic : woo_topic, body, len, &kind, &data,
                                  msg, sizeof msg);
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
    self->writer = os_writer_new(&wo);
    if (!self->writer) goto err;
    self->ops = os_ops_new(svc);
    self->rpc = cc_rpc_server_new(cc_cfg_str(cfg, "ORDER_SYNC_RPC"), os_ops_methods, self->ops, m);
    if (!self->rpc) goto err;
    cc_rpc_server_attach(self->rpc, cc_service_loop(svc));
    self->http = cc_http_new(cc_cfg_str(cfg, "CC_BIND_HOST"), (int) cc_cfg_int(cfg, "ORDER_SYNC_HTTP_PORT"),
                             (int) cc_cfg_int(cfg, "ORDER_SYNC_HTTP_THREADS"));
    if (!self->http) goto err;
    cc_http_route(self->http, "/webhooks/", s_webhook, self);
    os_outbox_opts_t oo = {
        .db_url = cc_cfg_str(cfg, "DATABASE_URL"),
        .reconnect_ms = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS"),
        .backoff_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_BACKOFF_MS"),
        .backoff_max_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_BACKOFF_MAX_MS"),
        .max_attempts = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_MAX_ATTEMPTS"),
        .timeout_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_TIMEOUT_MS"),
        .poll_ms = (int) cc_cfg_int(cfg, "ORDER_SYNC_PUSH_POLL_MS"),
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
        .writer = self->writer,
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
    cc_http_destroy(&self->http);   /* no more webhooks come in */
    os_reconcile_destroy(&self->reconcile);   /* it applies through the writer */
    os_writer_destroy(&self->writer);   /* what was queued is committed and its changes handed over */
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
    free(self);
    curl_global_cleanup();
    *self_p = NULL;
}
