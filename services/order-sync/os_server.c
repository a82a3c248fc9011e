/* os_server: platform webhooks over HTTP (CivetWeb threads, one PostgreSQL
 * connection each) and order lookups over the bus (the loop's connection). */
#include "os_server.h"
#include "os_webhook.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"
#include "order.pb-c.h"

#include <czmq.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BODY (1024 * 1024)

static const cc_cfg_key_t s_keys[] = {
    { "ORDER_SYNC_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port (/healthz, /metrics)" },
    { "ORDER_SYNC_HTTP_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Platform API port (webhooks)" },
    { "ORDER_SYNC_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Endpoint of the order lookups on the bus" },
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
    char *db_url;
    int reconnect_ms;
    pthread_key_t pg_key;      /* one connection per HTTP worker thread */
    pthread_key_t push_key;    /* and one socket to tell the loop what changed */
    zsock_t *changes;          /* the loop's end: publishes order.* events */
    cc_metric_t *m_applied, *m_refused;
};

static void s_pg_free(void *pg) { cc_pg_destroy((cc_pg_t **) &pg); }
static void s_push_free(void *sock) { zsock_destroy((zsock_t **) &sock); }

#define CHANGES_ENDPOINT "inproc://order-sync-changes"

/* An HTTP thread hands a committed change to the loop, which publishes it
 * (bus sockets belong to one thread). */
static void
s_tell_change(os_server_t *self, const os_change_t *change)
{
    zsock_t *push = pthread_getspecific(self->push_key);
    if (!push) {
        push = zsock_new_push(">" CHANGES_ENDPOINT);
        if (!push) return;
        pthread_setspecific(self->push_key, push);
    }
    zmq_send(zsock_resolve(push), change, sizeof *change, 0);
}

static const char *s_status_names[] = { "", "ordered", "reviewed", "shipped", "delivered", "settled", "returned",
                                        "exchanged", "cancelled" };

static Cc__OrderStatus
s_status(const char *name)
{
    for (int k = 1; k < 9; k++) if (strcmp(name, s_status_names[k]) == 0) return (Cc__OrderStatus) k;
    return CC__ORDER_STATUS__ORDER_UNKNOWN;
}

static void
s_on_change(void *arg, void *sock)
{
    os_server_t *self = arg;
    zframe_t *f = zframe_recv(sock);
    if (!f) return;
    if (zframe_size(f) == sizeof(os_change_t)) {
        os_change_t c;
        memcpy(&c, zframe_data(f), sizeof c);
        Cc__Money total = CC__MONEY__INIT;
        total.minor = c.total_minor;
        total.currency = c.currency;
        Cc__Order order = CC__ORDER__INIT;
        order.order_number = c.order_number;
        order.status = s_status(c.status);
        order.total = &total;
        Cc__OrderUpdated ev = CC__ORDER_UPDATED__INIT;
        ev.order = &order;
        ev.previous = s_status(c.previous);
        ev.by = "webhook";
        cc_bus_publish_msg(cc_service_bus(self->svc), c.previous[0] ? "order.updated" : "order.created",
                           c.order_number, &ev);
    }
    zframe_destroy(&f);
}

static cc_pg_t *
s_thread_pg(os_server_t *self)
{
    cc_pg_t *pg = pthread_getspecific(self->pg_key);
    if (!pg) {
        pg = cc_pg_new(self->db_url, self->reconnect_ms, NULL);
        os_statements(pg);
        cc_pg_statement(pg, "os_secret", "SELECT secret FROM commerce.platforms WHERE name = $1 AND dialect = 'standard'");
        pthread_setspecific(self->pg_key, pg);
    }
    return pg;
}

/* POST /webhooks/<platform>: Standard Webhooks. Acknowledged once committed. */
static int
s_webhook(struct mg_connection *conn, void *arg)
{
    os_server_t *self = arg;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (strcmp(ri->request_method, "POST") != 0) return cc_http_error(conn, 405, "POST only");
    const char *platform = ri->local_uri + strlen("/webhooks/");
    if (!*platform || strlen(platform) > 64 || strchr(platform, '/')) return cc_http_error(conn, 404, "no such platform");
    if (ri->content_length < 0 || ri->content_length > MAX_BODY) return cc_http_error(conn, 413, "body missing or over 1 MiB");
    char *body = malloc((size_t) ri->content_length + 1);
    if (!body) abort();
    size_t got = 0;
    while (got < (size_t) ri->content_length) {
        int n = mg_read(conn, body + got, (size_t) ri->content_length - got);
        if (n <= 0) break;
        got += (size_t) n;
    }
    body[got] = '\0';
    int status;
    char reply[512];
    cc_pg_t *pg = s_thread_pg(self);
    PGresult *res = NULL;
    const char *p[] = { platform };
    if (got != (size_t) ri->content_length) {
        status = cc_http_error(conn, 400, "body shorter than Content-Length");
    } else if (cc_pg_exec(pg, "os_secret", 1, p, &res)) {
        status = cc_http_error(conn, 503, "storage unavailable; retry later");
    } else if (PQntuples(res) != 1) {
        status = cc_http_error(conn, 404, "no such platform");
    } else {
        const char *why = NULL;
        const char *id = mg_get_header(conn, "webhook-id");
        int bad = os_verify(PQgetvalue(res, 0, 0), id, mg_get_header(conn, "webhook-timestamp"), body, got,
                            mg_get_header(conn, "webhook-signature"), (int64_t) time(NULL), &why);
        if (bad) {
            CC_WARN("webhook refused", "platform=%s reason=\"%s\"", platform, why);
            status = cc_http_error(conn, bad, why);
        } else if (strlen(id) > 128) {
            status = cc_http_error(conn, 400, "webhook-id longer than 128 characters");
        } else {
            os_change_t change;
            int code = os_store(pg, platform, id, body, got, reply, sizeof reply, &change);
            status = cc_http_send(conn, code, "application/json", reply, strlen(reply));
            if (change.applied) s_tell_change(self, &change);
        }
    }
    cc_metric_add(status == 200 ? self->m_applied : self->m_refused, 1);
    PQclear(res);
    free(body);
    return status;
}

/* order.lookup: by order number, or the orders of a phone number's customers. */
static void
s_lookup(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    os_server_t *self = arg;
    Cc__OrderLookup *q = cc__order_lookup__unpack(NULL, req->payload.len, req->payload.data);
    if (!q || (!q->order_number[0] && !q->phone[0]) || strlen(q->order_number) > 64 || strlen(q->phone) > 32) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want an order number or a phone", NULL, 0);
        if (q) cc__order_lookup__free_unpacked(q, NULL);
        return;
    }
    char limit[12];
    snprintf(limit, sizeof limit, "%u", q->limit ? (q->limit > 50 ? 50 : q->limit) : 10);
    cc_pg_t *pg = cc_service_pg(self->svc);
    PGresult *res = NULL;
    const char *p[] = { q->order_number, q->phone, limit };
    if (cc_pg_exec(pg, "os_lookup", 3, p, &res)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable", NULL, 0);
        cc__order_lookup__free_unpacked(q, NULL);
        return;
    }
    int n = PQntuples(res);
    Cc__Order *orders = calloc((size_t) n + 1, sizeof *orders), **op = calloc((size_t) n + 1, sizeof *op);
    Cc__Money *totals = calloc((size_t) n + 1, sizeof *totals);
    if (!orders || !op || !totals) abort();
    for (int i = 0; i < n; i++) {
        cc__order__init(&orders[i]);
        cc__money__init(&totals[i]);
        orders[i].order_number = PQgetvalue(res, i, 0);
        orders[i].customer_id = PQgetvalue(res, i, 1);
        orders[i].status = s_status(PQgetvalue(res, i, 2));
        totals[i].minor = atoll(PQgetvalue(res, i, 3));
        totals[i].currency = PQgetvalue(res, i, 4);
        orders[i].total = &totals[i];
        orders[i].platform = PQgetvalue(res, i, 5);
        orders[i].updated_us = (int64_t) (atof(PQgetvalue(res, i, 6)) * 1e6);
        op[i] = &orders[i];
    }
    Cc__OrderList out = CC__ORDER_LIST__INIT;
    out.orders = op;
    out.n_orders = (size_t) n;
    if (n == 0) cc_rpc_reply(call, CC__STATUS__STATUS_NOT_FOUND, "no such order", NULL, 0);
    else cc_rpc_reply_msg(call, &out);
    free(orders);
    free(op);
    free(totals);
    PQclear(res);
    cc__order_lookup__free_unpacked(q, NULL);
}

static const cc_rpc_method_t s_methods[] = {
    { "order.lookup", s_lookup, "OrderLookup -> OrderList: by order number, or a phone's orders (newest first)" },
    CC_RPC_METHODS_END
};

os_server_t *
os_server_new(cc_service_t *svc)
{
    if (sodium_init() < 0) return NULL;
    os_server_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->svc = svc;
    cc_cfg_t *cfg = cc_service_cfg(svc);
    cc_metrics_t *m = cc_service_metrics(svc);
    self->m_applied = cc_metrics_counter(m, "order_sync_webhooks_total", "result=\"accepted\"", "Webhooks answered");
    self->m_refused = cc_metrics_counter(m, "order_sync_webhooks_total", "result=\"refused\"", "Webhooks answered");
    self->db_url = strdup(cc_cfg_str(cfg, "DATABASE_URL"));
    self->reconnect_ms = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS");
    pthread_key_create(&self->pg_key, s_pg_free);
    pthread_key_create(&self->push_key, s_push_free);
    self->changes = zsock_new_pull("@" CHANGES_ENDPOINT);
    if (!self->changes) goto err;
    cc_loop_add_zsock(cc_service_loop(svc), self->changes, s_on_change, self);
    cc_pg_statement(cc_service_pg(svc), "os_lookup",
                    "SELECT o.order_number, coalesce(c.external_id, ''), o.status, o.total_minor, o.currency, o.platform,"
                    " extract(epoch FROM o.updated_at) FROM commerce.orders o LEFT JOIN commerce.customers c"
                    " ON c.id = o.customer_id WHERE ($1 <> '' AND o.order_number = $1) OR ($1 = '' AND c.phone = $2)"
                    " ORDER BY o.created_at DESC LIMIT $3::int");
    self->rpc = cc_rpc_server_new(cc_cfg_str(cfg, "ORDER_SYNC_RPC"), s_methods, self, m);
    if (!self->rpc) goto err;
    cc_rpc_server_attach(self->rpc, cc_service_loop(svc));
    self->http = cc_http_new(cc_cfg_str(cfg, "CC_BIND_HOST"), (int) cc_cfg_int(cfg, "ORDER_SYNC_HTTP_PORT"),
                             (int) cc_cfg_int(cfg, "CC_HTTP_THREADS"));
    if (!self->http) goto err;
    cc_http_route(self->http, "/webhooks/", s_webhook, self);
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
    cc_http_destroy(&self->http);   /* its threads end: their connections close */
    cc_rpc_server_destroy(&self->rpc);
    if (self->changes) {
        while (zsock_events(self->changes) & ZMQ_POLLIN) s_on_change(self, self->changes);
        cc_loop_remove_zsock(cc_service_loop(self->svc), self->changes);
        zsock_destroy(&self->changes);
    }
    pthread_key_delete(self->pg_key);
    pthread_key_delete(self->push_key);
    free(self->db_url);
    free(self);
    *self_p = NULL;
}
