/* os_writer: the group-commit writer thread (a czmq actor with a ROUTER that
 * the HTTP threads' DEALERs talk to). */
#define _GNU_SOURCE
#include "os_writer.h"
#include "os_webhook.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "commerce.pb-c.h"
#include "order.pb-c.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _os_writer_t {
    os_writer_opts_t opts;
    char endpoint[64];
    char *changes;
    zactor_t *actor;
    bool started;              /* set by the actor before it signals */
    pthread_key_t tls;
    cc_metric_t *m_batches, *m_events, *m_failed, *m_dropped;
};

/* A caller thread's socket to the writer. */
typedef struct { zsock_t *dealer; uint64_t seq; } s_caller_t;

/* One request waiting in the writer. */
typedef struct {
    zframe_t *identity;
    uint64_t seq;
    char *events;
    int count;
} s_request_t;

static void
s_caller_free(void *p)
{
    s_caller_t *c = p;
    zsock_destroy(&c->dealer);
    free(c);
}

static void
s_request_free(s_request_t *r)
{
    zframe_destroy(&r->identity);
    free(r->events);
    r->events = NULL;
}

/* Reads one request off router into *r. Returns false on a malformed one. */
static bool
s_recv_request(zsock_t *router, s_request_t *r)
{
    zmsg_t *m = zmsg_recv(router);
    if (!m) return false;
    memset(r, 0, sizeof *r);
    r->identity = zmsg_pop(m);
    zframe_t *seq = zmsg_pop(m), *count = zmsg_pop(m);
    char *events = zmsg_popstr(m);
    bool ok = r->identity && seq && zframe_size(seq) == sizeof r->seq && count && zframe_size(count) == sizeof r->count
              && events;
    if (ok) {
        memcpy(&r->seq, zframe_data(seq), sizeof r->seq);
        memcpy(&r->count, zframe_data(count), sizeof r->count);
        r->events = events;
        events = NULL;
    }
    zframe_destroy(&seq);
    zframe_destroy(&count);
    free(events);
    zmsg_destroy(&m);
    if (!ok) s_request_free(r);
    return ok;
}

static void
s_reply(zsock_t *router, s_request_t *r, int status, const char *results)
{
    zmsg_t *m = zmsg_new();
    zmsg_append(m, &r->identity);
    zmsg_addmem(m, &r->seq, sizeof r->seq);
    zmsg_addmem(m, &status, sizeof status);
    zmsg_addstr(m, results ? results : "");
    zmsg_send(&m, router);
}

static const char *
s_get(json_t *ev, const char *key)
{
    const char *s = json_string_value(json_object_get(ev, key));
    return s ? s : "";
}

/* Packs the bus event ev ({"topic", "key", fields}) and hands it to the loop. */
static void
s_publish(zsock_t *push, json_t *ev, cc_metric_t *dropped)
{
    const char *topic = s_get(ev, "topic");
    long long n = json_integer_value(json_object_get(ev, "total"));
    uint8_t *buf = NULL;
    size_t len = 0;
    if (strncmp(topic, "order.", 6) == 0) {
        Cc__Money total = CC__MONEY__INIT;
        total.minor = n;
        total.currency = (char *) s_get(ev, "currency");
        Cc__Order order = CC__ORDER__INIT;
        char pnum[65];
        order.order_number = (char *) s_get(ev, "key");
        order.customer_id = (char *) s_get(ev, "customer_id");
        order.platform = (char *) s_get(ev, "platform");
        order.platform_number = os_platform_number(order.order_number, order.platform, pnum, sizeof pnum);
        order.status = os_order_status(s_get(ev, "status"));
        order.total = &total;
        order.updated_us = cc_wall_us();
        Cc__OrderUpdated u = CC__ORDER_UPDATED__INIT;
        u.order = &order;
        u.previous = os_order_status(s_get(ev, "previous"));
        u.by = "webhook";
        len = cc__order_updated__get_packed_size(&u);
        buf = malloc(len + 1);
        if (!buf) abort();
        cc__order_updated__pack(&u, buf);
    } else if (strcmp(topic, "customer.updated") == 0) {
        json_t *phones = json_object_get(ev, "phones");
        size_t np = json_array_size(phones);
        char **pv = calloc(np + 1, sizeof *pv);
        if (!pv) abort();
        for (size_t i = 0; i < np; i++) pv[i] = (char *) (json_string_value(json_array_get(phones, i)) ?: "");
        Cc__Customer c = CC__CUSTOMER__INIT;
        c.customer_id = (char *) s_get(ev, "customer_id");
        c.platform = (char *) s_get(ev, "platform");
        c.name = (char *) s_get(ev, "name");
        c.phone = (char *) s_get(ev, "phone");
        c.phones = pv;
        c.n_phones = np;
        c.email = (char *) s_get(ev, "email");
        c.category = (char *) s_get(ev, "category");
        c.birthday = (char *) s_get(ev, "birthday");
        c.points = json_integer_value(json_object_get(ev, "points"));
        Cc__CustomerUpdated u = CC__CUSTOMER_UPDATED__INIT;
        u.customer = &c;
        u.by = "webhook";
        len = cc__customer_updated__get_packed_size(&u);
        buf = malloc(len + 1);
        if (!buf) abort();
        cc__customer_updated__pack(&u, buf);
        free(pv);
    } else if (strcmp(topic, "shipment.updated") == 0) {
        Cc__Money fee = CC__MONEY__INIT;
        fee.minor = json_integer_value(json_object_get(ev, "fee"));
        fee.currency = (char *) s_get(ev, "currency");
        Cc__Shipment s = CC__SHIPMENT__INIT;
        s.order_number = (char *) s_get(ev, "order_number");
        s.carrier = (char *) s_get(ev, "carrier");
        s.tracking_number = (char *) s_get(ev, "tracking_number");
        s.status = (char *) s_get(ev, "status");
        s.fee = &fee;
        s.platform = (char *) s_get(ev, "platform");
        s.shipment_id = (char *) s_get(ev, "shipment_id");
        Cc__ShipmentUpdated u = CC__SHIPMENT_UPDATED__INIT;
        u.shipment = &s;
        u.previous = (char *) s_get(ev, "previous");
        u.by = "webhook";
        len = cc__shipment_updated__get_packed_size(&u);
        buf = malloc(len + 1);
        if (!buf) abort();
        cc__shipment_updated__pack(&u, buf);
    } else if (strcmp(topic, "stock.changed") == 0) {
        Cc__StockChanged s = CC__STOCK_CHANGED__INIT;
        s.sku = (char *) s_get(ev, "sku");
        s.warehouse = (char *) s_get(ev, "warehouse");
        s.on_hand = json_integer_value(json_object_get(ev, "on_hand"));
        s.reserved = json_integer_value(json_object_get(ev, "reserved"));
        len = cc__stock_changed__get_packed_size(&s);
        buf = malloc(len + 1);
        if (!buf) abort();
        cc__stock_changed__pack(&s, buf);
    } else {
        return;
    }
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, topic);
    zmsg_addstr(m, s_get(ev, "key"));
    zmsg_addmem(m, buf, len);
    if (zmsg_send(&m, push) != 0) {
        zmsg_destroy(&m);
        cc_metric_add(dropped, 1);
    }
    free(buf);
}

/* Applies reqs[0..n) in one transaction and answers each. */
static void
s_apply(os_writer_t *self, cc_pg_t *pg, zsock_t *router, zsock_t *push, s_request_t *reqs, int n)
{
    size_t cap = 2;
    for (int i = 0; i < n; i++) cap += strlen(reqs[i].events) + 1;
    char *batch = malloc(cap), *w = batch;
    if (!batch) abort();
    *w++ = '[';
    int total = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(reqs[i].events);
        if (i) *w++ = ',';
        memcpy(w, reqs[i].events + 1, len - 2);   /* the array's inside */
        w += len - 2;
        total += reqs[i].count;
    }
    *w++ = ']';
    *w = '\0';
    PGresult *res = NULL;
    const char *p[] = { batch };
    json_t *results = NULL;
    if (cc_pg_begin(pg) == 0 && cc_pg_exec(pg, "os_apply_batch", 1, p, &res) == 0) {
        results = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        PQclear(res);
        if (!results || json_array_size(results) != (size_t) total || cc_pg_commit(pg) != 0) {
            json_decref(results);
            results = NULL;
        }
    }
    if (!results) {
        cc_pg_rollback(pg);
        CC_ERROR("batch not committed", "events=%d error=\"%s\"", total, cc_pg_error(pg));
        cc_metric_add(self->m_failed, total);
        for (int i = 0; i < n; i++) s_reply(router, &reqs[i], CC_ECONN, NULL);
        free(batch);
        return;
    }
    cc_metric_add(self->m_batches, 1);
    cc_metric_add(self->m_events, total);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        json_t *mine = json_array();
        for (int k = 0; k < reqs[i].count; k++, at++) {
            json_t *r = json_array_get(results, at);
            json_t *evs = json_object_get(r, "events");
            for (size_t e = 0; push && e < json_array_size(evs); e++) s_publish(push, json_array_get(evs, e), self->m_dropped);
            json_object_del(r, "events");
            json_array_append(mine, r);
        }
        char *text = json_dumps(mine, JSON_COMPACT);
        s_reply(router, &reqs[i], 0, text);
        free(text);
        json_decref(mine);
    }
    json_decref(results);
    free(batch);
}

static void
s_actor(zsock_t *pipe, void *arg)
{
    os_writer_t *self = arg;
    zsock_t *router = zsock_new_router(self->endpoint);
    zsock_t *push = self->changes ? zsock_new_push(self->changes) : NULL;
    if (push) {
        /* Events are facts for the live view: when the loop falls behind they
         * are dropped (and counted), the writer never waits for it. */
        zsock_set_sndhwm(push, 100000);
        zsock_set_sndtimeo(push, 0);
    }
    cc_pg_t *pg = cc_pg_new(self->opts.db_url, self->opts.reconnect_ms, NULL);
    cc_pg_statement(pg, "os_apply_batch", "SELECT commerce.apply_batch($1::jsonb)");
    if (router && self->opts.platforms) os_platforms_load(self->opts.platforms, pg);
    self->started = router != NULL;
    zsock_signal(pipe, 0);   /* zactor_new waits for this */
    if (!router) {
        cc_pg_destroy(&pg);
        zsock_destroy(&push);
        return;
    }
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    int max = self->opts.batch_max;
    s_request_t *reqs = calloc((size_t) max + 1, sizeof *reqs);
    if (!reqs) abort();
    s_request_t carry = { 0 };
    bool has_carry = false, stop = false;
    int64_t next_refresh = cc_mono_ms() + self->opts.refresh_ms;
    while (!stop) {
        int64_t wait = next_refresh - cc_mono_ms();
        void *which = has_carry ? router : zpoller_wait(poller, wait > 0 ? (int) wait : 0);
        if (which == pipe) {
            char *cmd = zstr_recv(pipe);
            stop = !cmd || strcmp(cmd, "$TERM") == 0;
            if (cmd && strcmp(cmd, "RELOAD") == 0) next_refresh = cc_mono_ms();
            zstr_free(&cmd);
            if (!stop) continue;
            /* Answer what is already queued before stopping. */
        }
        if (!which && zpoller_terminated(poller)) stop = true;
        int n = 0, events = 0;
        if (has_carry) {
            reqs[n++] = carry;
            events = carry.count;
            has_carry = false;
        }
        while (zsock_events(router) & ZMQ_POLLIN) {
            s_request_t r;
            if (!s_recv_request(router, &r)) continue;
            if (r.count < 1 || r.count > max) {
                s_reply(router, &r, CC_EINVAL, NULL);
                s_request_free(&r);
                continue;
            }
            if (events + r.count > max) {
                carry = r;
                has_carry = true;
                break;
            }
            reqs[n++] = r;
            events += r.count;
        }
        if (n) s_apply(self, pg, router, push, reqs, n);
        for (int i = 0; i < n; i++) s_request_free(&reqs[i]);
        if (stop && has_carry) {
            s_reply(router, &carry, CC_ECONN, NULL);
            s_request_free(&carry);
            has_carry = false;
        }
        if (cc_mono_ms() >= next_refresh) {
            if (self->opts.platforms) os_platforms_load(self->opts.platforms, pg);
            next_refresh = cc_mono_ms() + self->opts.refresh_ms;
        }
    }
    free(reqs);
    zpoller_destroy(&poller);
    zsock_destroy(&router);
    zsock_destroy(&push);
    cc_pg_destroy(&pg);
}

os_writer_t *
os_writer_new(const os_writer_opts_t *opts)
{
    assert(opts->batch_max >= 1 && opts->batch_max <= OS_BATCH_LIMIT);
    os_writer_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->opts = *opts;
    snprintf(self->endpoint, sizeof self->endpoint, "@inproc://os-writer-%p", (void *) self);
    if (opts->changes && asprintf(&self->changes, ">%s", opts->changes) < 0) abort();
    pthread_key_create(&self->tls, s_caller_free);
    if (opts->metrics) {   /* the same counters for every writer: cc_metrics hands back the one registered */
        self->m_batches = cc_metrics_counter(opts->metrics, "order_sync_batches_total", NULL, "Transactions committed by the writer");
        self->m_events = cc_metrics_counter(opts->metrics, "order_sync_batch_events_total", NULL, "Events in committed batches");
        self->m_failed = cc_metrics_counter(opts->metrics, "order_sync_batch_failed_events_total", NULL,
                                            "Events of batches the database did not take");
        self->m_dropped = cc_metrics_counter(opts->metrics, "order_sync_events_dropped_total", NULL,
                                             "Bus events of committed changes dropped because the loop fell behind");
    }
    self->actor = zactor_new(s_actor, self);
    if (!self->actor || !self->started) {
        CC_ERROR("writer not started", "endpoint=%s", self->endpoint + 1);
        os_writer_destroy(&self);
        return NULL;
    }
    return self;
}

void
os_writer_destroy(os_writer_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_writer_t *self = *self_p;
    zactor_destroy(&self->actor);
    pthread_key_delete(self->tls);
    free(self->changes);
    free(self);
    *self_p = NULL;
}

void
os_writer_reload(os_writer_t *self)
{
    zstr_send(self->actor, "RELOAD");
}

int
os_writer_apply(os_writer_t *self, const char *events, int count, char **results_p)
{
    *results_p = NULL;
    s_caller_t *c = pthread_getspecific(self->tls);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) abort();
        c->dealer = zsock_new_dealer(self->endpoint + 1);   /* a DEALER connects by default */
        if (!c->dealer) {
            free(c);
            CC_ERROR("writer socket not made", "endpoint=%s", self->endpoint + 1);
            return CC_ECONN;
        }
        zsock_set_rcvtimeo(c->dealer, self->opts.wait_ms);
        pthread_setspecific(self->tls, c);
    }
    uint64_t seq = ++c->seq;
    zmsg_t *m = zmsg_new();
    zmsg_addmem(m, &seq, sizeof seq);
    zmsg_addmem(m, &count, sizeof count);
    zmsg_addstr(m, events);
    if (zmsg_send(&m, c->dealer) != 0) {
        zmsg_destroy(&m);
        return CC_ECONN;
    }
    int64_t deadline = cc_mono_ms() + self->opts.wait_ms;
    while (cc_mono_ms() < deadline) {
        zmsg_t *r = zmsg_recv(c->dealer);
        if (!r) break;
        zframe_t *s = zmsg_pop(r), *st = zmsg_pop(r);
        char *text = zmsg_popstr(r);
        uint64_t got = 0;
        int status = CC_EPROTO;
        if (s && zframe_size(s) == sizeof got) memcpy(&got, zframe_data(s), sizeof got);
        if (st && zframe_size(st) == sizeof status) memcpy(&status, zframe_data(st), sizeof status);
        zframe_destroy(&s);
        zframe_destroy(&st);
        zmsg_destroy(&r);
        if (got != seq) {   /* the late answer to a request that timed out */
            free(text);
            continue;
        }
        if (status == 0) *results_p = text;
        else free(text);
        return status == 0 ? 0 : CC_ECONN;
    }
    CC_WARN("writer did not answer", "wait_ms=%d", self->opts.wait_ms);
    return CC_ETIMEDOUT;
}
