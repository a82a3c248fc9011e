/* os_lookup: order.lookup requests batched per loop turn, answered on the
 * thread pool with a few queries per batch. */
#include "os_lookup.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "order.pb-c.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MAX 256
#define MAX_CONNECTIONS 16
#define MAX_WAITING 32        /* full batches waiting for a connection; past that, UNAVAILABLE */

/* Orders by number with their latest shipment and what was paid, each of
 * those read once for the whole batch (not once per order). */
static const struct { const char *name, *sql; } s_stmts[] = {
    /* Each phone request's order numbers, newest first, grouped by request
     * (= ANY (ARRAY (...)): several times cheaper than IN (... UNION ...)). */
    { "lk_phones", "SELECT k.i, x.order_number FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS k(phone, lim, i)"
                   " CROSS JOIN LATERAL (SELECT o.order_number, o.created_at FROM commerce.orders o"
                   "  WHERE o.customer_id = ANY (ARRAY (SELECT c.id FROM commerce.customers c WHERE c.phone = k.phone"
                   "   UNION ALL SELECT p.customer_id FROM commerce.customer_phones p WHERE p.phone = k.phone))"
                   "  ORDER BY o.created_at DESC, o.order_number DESC LIMIT k.lim) x"
                   " ORDER BY k.i, x.created_at DESC, x.order_number DESC" },
    { "lk_orders", "WITH s AS (SELECT DISTINCT ON (order_number) order_number, carrier, tracking_number"
                   "   FROM commerce.shipments WHERE order_number = ANY ($1::text[]) ORDER BY order_number, id DESC),"
                   " p AS (SELECT order_number, sum(CASE kind WHEN 'refund' THEN -amount_minor ELSE amount_minor END) paid"
                   "   FROM commerce.payments WHERE order_number = ANY ($1::text[]) AND status = 'paid'"
                   "   GROUP BY order_number)"
                   " SELECT o.order_number, coalesce(c.external_id, ''), o.status, o.total_minor, o.currency, o.platform,"
                   " (extract(epoch FROM o.created_at) * 1e6)::bigint, (extract(epoch FROM o.updated_at) * 1e6)::bigint,"
                   " o.note, o.placed_via, coalesce(p.paid, 0), coalesce(s.carrier, ''), coalesce(s.tracking_number, ''),"
                   " o.platform_number"
                   " FROM commerce.orders o LEFT JOIN commerce.customers c ON c.id = o.customer_id"
                   " LEFT JOIN s ON s.order_number = o.order_number LEFT JOIN p ON p.order_number = o.order_number"
                   " WHERE o.order_number = ANY ($1::text[]) ORDER BY o.order_number COLLATE \"C\"" },
    /* Requests naming a shop: its own numbers to ours, by the request's place among them (1-based). */
    { "lk_resolve", "SELECT k.i, o.order_number FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(p, n, i)"
                    " JOIN commerce.orders o ON o.platform = k.p AND o.platform_number = k.n ORDER BY k.i" },
    { "lk_items", "SELECT order_number, line, sku, name, quantity, unit_minor, coalesce(warehouse_code, '')"
                  " FROM commerce.order_items WHERE order_number = ANY ($1::text[])"
                  " ORDER BY order_number COLLATE \"C\", line" },
};

typedef struct {
    cc_rpc_call_t *call;
    char number[65], phone[33], platform[65];   /* platform: number is that shop's own */
    int limit;
    bool with_items;
    bool unresolved;          /* the shop has no order of that number */
    Cc__Status status;
    const char *error;
    uint8_t *reply;
    size_t len;
} s_req_t;

typedef struct s_batch {
    uv_work_t work;
    struct s_batch *next;     /* in the waiting queue */
    os_lookup_t *owner;
    int conn;                 /* index of the connection it runs on */
    int n;
    s_req_t req[BATCH_MAX];
} s_batch_t;

struct _os_lookup_t {
    cc_loop_t *loop;
    cc_pg_t *pool[MAX_CONNECTIONS];
    bool busy[MAX_CONNECTIONS];
    int npool, inflight;
    s_batch_t *cur;           /* gathering during this turn */
    s_batch_t *head, *tail;   /* full, waiting for a connection */
    int nwaiting;
    bool stopping;
    atomic_bool failing;      /* logged once until a batch succeeds again */
    cc_metric_t *m_batches, *m_lookups, *m_failed;
};

/* ---- on the pool thread ---- */

/* Appends s to the PostgreSQL array literal being built in *buf (quoted,
 * '"' and '\\' escaped); s_array_done() closes it. */
static void
s_array_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + 2 * strlen(s) + 8;
    if (need > *cap) {
        *cap = need * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf) abort();
    }
    char *p = *buf + *len;
    *p++ = *len == 0 ? '{' : ',';
    *p++ = '"';
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') *p++ = '\\';
        *p++ = *c;
    }
    *p++ = '"';
    *len = (size_t) (p - *buf);
}

/* Returns the literal (caller frees): "{}" when nothing was added. */
static char *
s_array_done(char *buf, size_t len)
{
    if (!buf) {
        buf = strdup("{}");
        if (!buf) abort();
        return buf;
    }
    buf[len] = '}';
    buf[len + 1] = '\0';
    return buf;
}

/* Row of res whose column 0 equals key (rows sorted bytewise), or -1. */
static int
s_find(PGresult *res, const char *key)
{
    int lo = 0, hi = PQntuples(res) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(PQgetvalue(res, mid, 0), key);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static Cc__OrderStatus
s_status(const char *name)
{
    static const char *names[] = { "", "ordered", "reviewed", "shipped", "delivered", "settled", "returned",
                                   "exchanged", "cancelled" };
    for (int k = 1; k < 9; k++) if (strcmp(name, names[k]) == 0) return (Cc__OrderStatus) k;
    return CC__ORDER_STATUS__ORDER_UNKNOWN;
}

static void
s_fail_all(s_batch_t *b, Cc__Status status, const char *error)
{
    for (int i = 0; i < b->n; i++) {
        b->req[i].status = status;
        b->req[i].error = error;
    }
}

/* Fills o from row of res, whose order columns start at col. */
static void
s_order_row(PGresult *res, int row, int col, Cc__Order *o, Cc__Money *total)
{
    cc__order__init(o);
    cc__money__init(total);
    o->order_number = PQgetvalue(res, row, col);
    o->customer_id = PQgetvalue(res, row, col + 1);
    o->status = s_status(PQgetvalue(res, row, col + 2));
    total->minor = atoll(PQgetvalue(res, row, col + 3));
    total->currency = PQgetvalue(res, row, col + 4);
    o->total = total;
    o->platform = PQgetvalue(res, row, col + 5);
    o->created_us = atoll(PQgetvalue(res, row, col + 6));
    o->updated_us = atoll(PQgetvalue(res, row, col + 7));
    o->note = PQgetvalue(res, row, col + 8);
    o->placed_via = PQgetvalue(res, row, col + 9);
    o->paid_minor = atoll(PQgetvalue(res, row, col + 10));
    o->carrier = PQgetvalue(res, row, col + 11);
    o->tracking_number = PQgetvalue(res, row, col + 12);
    o->platform_number = PQgetvalue(res, row, col + 13);
}

/* Points o's items at its rows of items (sorted bytewise by order number). */
static void
s_attach_items(PGresult *items, Cc__OrderItem *iv, Cc__OrderItem **ip, Cc__Money *prices, Cc__Order *o)
{
    int lo = 0, hi = PQntuples(items);
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(PQgetvalue(items, mid, 0), o->order_number) < 0) lo = mid + 1;
        else hi = mid;
    }
    o->items = &ip[lo];
    for (int it = lo; it < PQntuples(items) && strcmp(PQgetvalue(items, it, 0), o->order_number) == 0; it++) {
        Cc__OrderItem *x = &iv[it];
        cc__order_item__init(x);
        cc__money__init(&prices[it]);
        x->line = (uint32_t) atoi(PQgetvalue(items, it, 1));
        x->sku = PQgetvalue(items, it, 2);
        x->name = PQgetvalue(items, it, 3);
        x->quantity = (uint32_t) atoi(PQgetvalue(items, it, 4));
        prices[it].minor = atoll(PQgetvalue(items, it, 5));
        prices[it].currency = o->total->currency;
        x->unit_price = &prices[it];
        x->warehouse = PQgetvalue(items, it, 6);
        ip[it] = x;
        o->n_items++;
    }
}

/* Packs out into r's reply (NOT_FOUND when empty). */
static void
s_pack(s_req_t *r, Cc__OrderList *out)
{
    if (out->n_orders == 0) {
        r->status = CC__STATUS__STATUS_NOT_FOUND;
        r->error = "no such order";
        return;
    }
    r->len = cc__order_list__get_packed_size(out);
    r->reply = malloc(r->len ? r->len : 1);
    if (!r->reply) abort();
    cc__order_list__pack(out, r->reply);
    r->status = CC__STATUS__STATUS_OK;
}

/* Turns the shop's own numbers of requests naming a platform into ours (in
 * place), marking those the shop has no order of. Returns 0, or -1 when the
 * database failed. */
static int
s_resolve(s_batch_t *b, cc_pg_t *pg)
{
    char *plats = NULL, *nums = NULL;
    size_t al = 0, ac = 0, nl = 0, nc = 0;
    for (int i = 0; i < b->n; i++) {
        if (!b->req[i].platform[0]) continue;
        s_array_add(&plats, &al, &ac, b->req[i].platform);
        s_array_add(&nums, &nl, &nc, b->req[i].number);
    }
    if (!al) return 0;
    plats = s_array_done(plats, al);
    nums = s_array_done(nums, nl);
    const char *p[] = { plats, nums };
    PGresult *res = NULL;
    int rc = cc_pg_exec(pg, "lk_resolve", 2, p, &res);
    if (rc == 0) {
        for (int i = 0, q = 0, row = 0; i < b->n; i++) {
            s_req_t *r = &b->req[i];
            if (!r->platform[0]) continue;
            q++;
            if (row < PQntuples(res) && atoi(PQgetvalue(res, row, 0)) == q) {
                snprintf(r->number, sizeof r->number, "%s", PQgetvalue(res, row, 1));
                row++;
            } else {
                r->unresolved = true;
            }
        }
    }
    PQclear(res);
    free(plats);
    free(nums);
    return rc ? -1 : 0;
}

/* The batch's queries: the phones' order numbers, every order asked (by
 * number or through a phone), and the items where wanted. */
static void
s_run(uv_work_t *work)
{
    s_batch_t *b = work->data;
    cc_pg_t *pg = b->owner->pool[b->conn];
    char *phones = NULL, *lims = NULL, *numbers = NULL, *with_items = NULL;
    size_t pl = 0, pc = 0, ll = 0, lc = 0, nl = 0, nc = 0, wl = 0, wc = 0;
    int nphones = 0;
    PGresult *ph = NULL, *orders = NULL, *items = NULL;
    if (s_resolve(b, pg)) goto failed;
    for (int i = 0; i < b->n; i++) {
        s_req_t *r = &b->req[i];
        if (r->unresolved) continue;
        if (r->number[0]) {
            s_array_add(&numbers, &nl, &nc, r->number);
            s_array_add(&with_items, &wl, &wc, r->number);
        } else {
            char lim[12];
            snprintf(lim, sizeof lim, "%d", r->limit);
            s_array_add(&phones, &pl, &pc, r->phone);
            s_array_add(&lims, &ll, &lc, lim);
            nphones++;
        }
    }
    phones = s_array_done(phones, pl);
    lims = s_array_done(lims, ll);
    if (nphones) {
        const char *p[] = { phones, lims };
        if (cc_pg_exec(pg, "lk_phones", 2, p, &ph)) goto failed;
        for (int i = 0, q = 0, row = 0; i < b->n; i++) {
            if (b->req[i].number[0]) continue;
            q++;
            for (; row < PQntuples(ph) && atoi(PQgetvalue(ph, row, 0)) == q; row++) {
                s_array_add(&numbers, &nl, &nc, PQgetvalue(ph, row, 1));
                if (b->req[i].with_items) s_array_add(&with_items, &wl, &wc, PQgetvalue(ph, row, 1));
            }
        }
    }
    numbers = s_array_done(numbers, nl);
    with_items = s_array_done(with_items, wl);
    const char *np[] = { numbers }, *wp[] = { with_items };
    if ((nl && cc_pg_exec(pg, "lk_orders", 1, np, &orders)) || (wl && cc_pg_exec(pg, "lk_items", 1, wp, &items)))
        goto failed;

    /* Every order found once with its items; a phone's summary is a copy
     * without them (unless asked). */
    int no = PQntuples(orders), nph = PQntuples(ph), ni = PQntuples(items);
    Cc__Order *ov = calloc((size_t) no + 1, sizeof *ov), *pv = calloc((size_t) nph + 1, sizeof *pv);
    Cc__Money *totals = calloc((size_t) no + 1, sizeof *totals), *prices = calloc((size_t) ni + 1, sizeof *prices);
    Cc__OrderItem *iv = calloc((size_t) ni + 1, sizeof *iv), **ip = calloc((size_t) ni + 1, sizeof *ip);
    Cc__Order **list = calloc(51, sizeof *list);
    if (!ov || !pv || !totals || !prices || !iv || !ip || !list) abort();
    for (int k = 0; k < no; k++) {
        s_order_row(orders, k, 0, &ov[k], &totals[k]);
        s_attach_items(items, iv, ip, prices, &ov[k]);
    }
    for (int i = 0, q = 0, row = 0; i < b->n; i++) {
        s_req_t *r = &b->req[i];
        Cc__OrderList out = CC__ORDER_LIST__INIT;
        out.orders = list;
        if (r->unresolved) {
            /* answered NOT_FOUND below */
        } else if (r->number[0]) {
            int k = s_find(orders, r->number);
            if (k >= 0) list[out.n_orders++] = &ov[k];
        } else {
            /* lk_phones rows are grouped by the request's place among the phones (1-based). */
            q++;
            for (; row < nph && atoi(PQgetvalue(ph, row, 0)) == q; row++) {
                int k = s_find(orders, PQgetvalue(ph, row, 1));
                if (k < 0 || out.n_orders == 50) continue;
                pv[row] = ov[k];
                if (!r->with_items) {
                    pv[row].items = NULL;
                    pv[row].n_items = 0;
                }
                list[out.n_orders++] = &pv[row];
            }
        }
        s_pack(r, &out);
    }
    free(ov);
    free(pv);
    free(totals);
    free(prices);
    free(iv);
    free(ip);
    free(list);
    if (atomic_exchange(&b->owner->failing, false)) CC_INFO("order lookups answered again", "batch=%d", b->n);
    goto done;
failed:
    if (!atomic_exchange(&b->owner->failing, true))
        CC_ERROR("order lookups failed", "batch=%d error=\"%s\"", b->n, cc_pg_error(pg));
    cc_metric_add(b->owner->m_failed, 1);
    s_fail_all(b, CC__STATUS__STATUS_UNAVAILABLE, "storage unavailable");
done:
    PQclear(ph);
    PQclear(orders);
    PQclear(items);
    free(phones);
    free(lims);
    free(numbers);
    free(with_items);
}

/* ---- on the loop ---- */

static void s_flush(void *arg);

static void
s_ran(uv_work_t *work, int status)
{
    s_batch_t *b = work->data;
    os_lookup_t *self = b->owner;
    if (status) s_fail_all(b, CC__STATUS__STATUS_UNAVAILABLE, "lookup cancelled");
    for (int i = 0; i < b->n; i++) {
        s_req_t *r = &b->req[i];
        cc_rpc_reply(r->call, r->status, r->status == CC__STATUS__STATUS_OK ? NULL : r->error, r->reply, r->len);
        free(r->reply);
    }
    cc_metric_add(self->m_batches, 1);
    cc_metric_add(self->m_lookups, b->n);
    self->busy[b->conn] = false;
    self->inflight--;
    free(b);
    s_flush(self);
}

/* Queues cur (full) behind the waiting batches. */
static void
s_park(os_lookup_t *self)
{
    if (self->tail) self->tail->next = self->cur;
    else self->head = self->cur;
    self->tail = self->cur;
    self->cur = NULL;
    self->nwaiting++;
}

/* Sends the waiting batches, then the one being gathered, to the pool while
 * connections are free. */
static void
s_flush(void *arg)
{
    os_lookup_t *self = arg;
    for (;;) {
        int conn = -1;
        for (int i = 0; i < self->npool && conn < 0; i++) if (!self->busy[i]) conn = i;
        if (conn < 0) return;   /* sent when a batch comes back */
        s_batch_t *b = self->head;
        if (b) {
            self->head = b->next;
            if (!self->head) self->tail = NULL;
            self->nwaiting--;
        } else if (self->cur && self->cur->n > 0) {
            b = self->cur;
            self->cur = NULL;
        } else {
            return;
        }
        b->next = NULL;
        b->conn = conn;
        b->work.data = b;
        self->busy[conn] = true;
        self->inflight++;
        int rc = uv_queue_work(cc_loop_uv(self->loop), &b->work, s_run, s_ran);
        if (rc) {
            CC_ERROR("uv_queue_work failed", "error=\"%s\"", uv_strerror(rc));
            s_fail_all(b, CC__STATUS__STATUS_UNAVAILABLE, "lookup not started");
            s_ran(&b->work, 0);
        }
    }
}

void
os_lookup_request(os_lookup_t *self, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__OrderLookup *q = cc__order_lookup__unpack(NULL, req->payload.len, req->payload.data);
    if (!q || (!q->order_number[0] && !q->phone[0]) || strlen(q->order_number) > 64 || strlen(q->phone) > 32
        || strlen(q->platform) > 64 || (q->platform[0] && !q->order_number[0])) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want an order number (with its shop, or ours) or a phone",
                     NULL, 0);
        if (q) cc__order_lookup__free_unpacked(q, NULL);
        return;
    }
    if (self->stopping) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "stopping", NULL, 0);
        cc__order_lookup__free_unpacked(q, NULL);
        return;
    }
    if (self->cur && self->cur->n == BATCH_MAX) {
        if (self->nwaiting < MAX_WAITING) s_park(self);
        s_flush(self);
    }
    if (self->cur && self->cur->n == BATCH_MAX) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "too many lookups waiting; retry", NULL, 0);
        cc__order_lookup__free_unpacked(q, NULL);
        return;
    }
    if (!self->cur) {
        self->cur = calloc(1, sizeof *self->cur);
        if (!self->cur) abort();
        self->cur->owner = self;
    }
    s_req_t *r = &self->cur->req[self->cur->n++];
    memset(r, 0, sizeof *r);
    r->call = call;
    snprintf(r->number, sizeof r->number, "%s", q->order_number);
    snprintf(r->phone, sizeof r->phone, "%s", q->phone);
    snprintf(r->platform, sizeof r->platform, "%s", q->platform);
    r->limit = q->limit ? (q->limit > 50 ? 50 : (int) q->limit) : 10;
    r->with_items = q->with_items;
    cc__order_lookup__free_unpacked(q, NULL);
}

os_lookup_t *
os_lookup_new(cc_loop_t *loop, const char *db_url, int reconnect_ms, int connections, cc_metrics_t *metrics)
{
    os_lookup_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->loop = loop;
    self->npool = connections < 1 ? 1 : connections > MAX_CONNECTIONS ? MAX_CONNECTIONS : connections;
    /* Generic plans: a batch's arrays change length every time, and planning
     * each one again would cost more than running it. */
    char url[2048];
    if (strncmp(db_url, "postgres://", 11) == 0 || strncmp(db_url, "postgresql://", 13) == 0)
        snprintf(url, sizeof url, "%s%coptions=-c%%20plan_cache_mode%%3Dforce_generic_plan", db_url,
                 strchr(db_url, '?') ? '&' : '?');
    else
        snprintf(url, sizeof url, "%s options='-c plan_cache_mode=force_generic_plan'", db_url);
    for (int i = 0; i < self->npool; i++) {
        self->pool[i] = cc_pg_new(url, reconnect_ms, metrics);
        for (size_t k = 0; k < sizeof s_stmts / sizeof *s_stmts; k++)
            cc_pg_statement(self->pool[i], s_stmts[k].name, s_stmts[k].sql);
    }
    self->m_batches = cc_metrics_counter(metrics, "order_sync_lookup_batches_total", NULL, "Batches of order lookups run");
    self->m_lookups = cc_metrics_counter(metrics, "order_sync_lookups_total", NULL, "Order lookups answered in batches");
    self->m_failed = cc_metrics_counter(metrics, "order_sync_lookup_batches_failed_total", NULL,
                                        "Batches of order lookups answered UNAVAILABLE (the database failed)");
    cc_loop_on_turn_end(loop, s_flush, self);
    return self;
}

void
os_lookup_drain(os_lookup_t *self)
{
    if (!self) return;
    self->stopping = true;
    s_flush(self);
    while (self->inflight > 0 || self->head || (self->cur && self->cur->n > 0)) {
        uv_run(cc_loop_uv(self->loop), UV_RUN_ONCE);
        s_flush(self);
    }
}

void
os_lookup_destroy(os_lookup_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_lookup_t *self = *self_p;
    os_lookup_drain(self);
    cc_loop_off_turn_end(self->loop, s_flush, self);
    free(self->cur);
    for (int i = 0; i < self->npool; i++) cc_pg_destroy(&self->pool[i]);
    free(self);
    *self_p = NULL;
}
