/* cc_rpc: request/reply with deadlines, bounded retries and at-most-once
 * execution per request id. */
#include "cc/cc_rpc.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define REPLY_GRACE_US (5 * 1000000LL)   /* keep a reply this long past the deadline */
#define PURGE_EVERY_MS 1000
#define MAX_KEEP_US (60 * 1000000LL)
#define EXPIRY_BUCKETS 128   /* one per second of expiry, round robin (> keep + grace) */

/* Packs a protobuf message into a new buffer (caller frees). */
static uint8_t *
s_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf) abort();
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* ---------------------------------------------------------------- server */

typedef enum { ENTRY_RUNNING, ENTRY_DONE } entry_state_t;

/* One request id's entry, kept until its reply expires: under load there
 * are hundreds of thousands, so it is one allocation with its id (the
 * table's key, not copied), plus the routing id and the reply. */
typedef struct {
    entry_state_t state;
    uint8_t *peer;        /* routing id of the latest copy of the request */
    size_t peer_len;
    uint8_t *reply;       /* packed Reply when done */
    size_t reply_len;
    int64_t expires_us;
    char id[];            /* the request id */
} entry_t;

struct _cc_rpc_call_t {
    cc_rpc_server_t *server;
    entry_t *entry;          /* running: deleted only once it has its reply */
    char *request_id;
    Cc__Request *req;
    cc_rpc_call_t *prev, *next;
};

struct _cc_rpc_server_t {
    zsock_t *router;
    const cc_rpc_method_t *methods;
    void *arg;
    zhashx_t *entries;       /* request id -> entry_t */
    cc_rpc_call_t *calls;    /* outstanding calls */
    cc_loop_t *loop;
    uv_timer_t *purge;       /* when attached; freed by its close callback */
    int64_t last_purge_us;
    /* Kept replies (their entries) by the second they expire (modulo the
     * bucket count), so a purge reads only what is due. An entry with its
     * reply leaves the table only through a purge, so these never point to
     * a freed one. */
    zlistx_t *expiring[EXPIRY_BUCKETS];
    int64_t purged_s;        /* every bucket of an earlier second is purged */
    uint64_t executed;
    cc_metric_t *m_requests, *m_dups, *m_expired, *m_malformed;
};

static void
s_entry_free(void **item)
{
    entry_t *e = *item;
    if (!e) return;
    free(e->peer);
    free(e->reply);
    free(e);
    *item = NULL;
}

cc_rpc_server_t *
cc_rpc_server_new(const char *endpoint, const cc_rpc_method_t *methods, void *arg,
                  cc_metrics_t *metrics)
{
    cc_rpc_server_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router) abort();
    zsock_set_linger(self->router, 0);
    zsock_set_router_mandatory(self->router, 0);
    if (zsock_bind(self->router, "%s", endpoint) < 0) {
        CC_ERROR("zmq_bind failed", "endpoint=%s error=\"%s\"", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&self->router);
        free(self);
        return NULL;
    }
    self->methods = methods;
    self->arg = arg;
    self->entries = zhashx_new();
    zhashx_set_destructor(self->entries, s_entry_free);
    zhashx_set_key_duplicator(self->entries, NULL);   /* the key is the entry's own id */
    zhashx_set_key_destructor(self->entries, NULL);
    for (int i = 0; i < EXPIRY_BUCKETS; i++) self->expiring[i] = zlistx_new();
    self->purged_s = cc_mono_us() / 1000000 - 1;
    if (metrics) {
        self->m_requests = cc_metrics_counter(metrics, "cc_rpc_requests_total", NULL, "Requests executed");
        self->m_dups = cc_metrics_counter(metrics, "cc_rpc_duplicates_total", NULL, "Retried requests not executed again");
        self->m_expired = cc_metrics_counter(metrics, "cc_rpc_expired_total", NULL, "Requests dropped past their deadline");
        self->m_malformed = cc_metrics_counter(metrics, "cc_rpc_malformed_total", NULL, "Requests that could not be decoded");
    }
    return self;
}

static void
s_call_free(cc_rpc_call_t *call)
{
    cc_rpc_server_t *self = call->server;
    if (call->prev) call->prev->next = call->next;
    else self->calls = call->next;
    if (call->next) call->next->prev = call->prev;
    cc__request__free_unpacked(call->req, NULL);
    free(call->request_id);
    free(call);
}

void
cc_rpc_server_destroy(cc_rpc_server_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_rpc_server_t *self = *self_p;
    while (self->calls) s_call_free(self->calls);   /* outstanding calls are dropped */
    if (self->loop) {
        cc_loop_remove_zsock(self->loop, self->router);
        cc_loop_timer_close(&self->purge);
    }
    zhashx_destroy(&self->entries);
    for (int i = 0; i < EXPIRY_BUCKETS; i++) zlistx_destroy(&self->expiring[i]);
    zsock_destroy(&self->router);
    free(self);
    *self_p = NULL;
}

/* Files entry e for the purge of the second it expires. */
static void
s_expire_at(cc_rpc_server_t *self, entry_t *e)
{
    zlistx_add_end(self->expiring[(e->expires_us / 1000000) % EXPIRY_BUCKETS], e);
}

/* Keeps a copy of routing id peer as e's. */
static void
s_entry_peer(entry_t *e, const zframe_t *peer)
{
    free(e->peer);
    e->peer_len = zframe_size((zframe_t *) peer);
    e->peer = malloc(e->peer_len ? e->peer_len : 1);
    if (!e->peer) abort();
    memcpy(e->peer, zframe_data((zframe_t *) peer), e->peer_len);
}

static void
s_send_reply(cc_rpc_server_t *self, const uint8_t *peer, size_t peer_len, const uint8_t *buf, size_t len)
{
    void *raw = zsock_resolve(self->router);
    if (zmq_send(raw, peer, peer_len, ZMQ_SNDMORE) < 0
        || zmq_send(raw, buf, len, 0) < 0)
        CC_WARN("rpc reply not sent", "error=\"%s\"", zmq_strerror(zmq_errno()));
}

static void
s_reply_error(cc_rpc_server_t *self, zframe_t *peer, const char *request_id,
              Cc__Status status, const char *error)
{
    Cc__Reply reply = CC__REPLY__INIT;
    reply.request_id = (char *) request_id;
    reply.status = status;
    reply.error = (char *) error;
    size_t len;
    uint8_t *buf = s_pack(&reply.base, &len);
    s_send_reply(self, zframe_data(peer), zframe_size(peer), buf, len);
    free(buf);
}

void
cc_rpc_reply(cc_rpc_call_t *call, Cc__Status status, const char *error,
             const void *payload, size_t len)
{
    cc_rpc_server_t *self = call->server;
    Cc__Reply reply = CC__REPLY__INIT;
    reply.request_id = call->request_id;
    reply.status = status;
    reply.error = (char *) (error ? error : "");
    reply.payload.data = (uint8_t *) payload;
    reply.payload.len = len;
    entry_t *e = call->entry;
    assert(e && e->state == ENTRY_RUNNING);
    e->reply = s_pack(&reply.base, &e->reply_len);
    e->state = ENTRY_DONE;
    /* Kept while the client may still retry: its time left, at most a minute. */
    int64_t left = call->req->timeout_us > 0 ? call->req->timeout_us : 0;
    if (left > MAX_KEEP_US) left = MAX_KEEP_US;
    e->expires_us = cc_mono_us() + left + REPLY_GRACE_US;
    s_send_reply(self, e->peer, e->peer_len, e->reply, e->reply_len);
    /* "Unavailable" is not an outcome: a retry may find the dependency back. */
    if (status == CC__STATUS__STATUS_UNAVAILABLE) zhashx_delete(self->entries, call->request_id);
    else s_expire_at(self, e);
    s_call_free(call);
}

void
cc_rpc_reply_msg(cc_rpc_call_t *call, const void *msg)
{
    size_t len;
    uint8_t *buf = s_pack(msg, &len);
    cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, buf, len);
    free(buf);
}

/* Deletes the kept replies that expired: only the buckets of the seconds
 * past since the last purge are read (the table holds every reply of the
 * last seconds: hundreds of thousands under load). An id whose reply is
 * not due yet (a bucket read late, a request id used again) goes to the
 * bucket of its own expiry. */
static void
s_purge(cc_rpc_server_t *self)
{
    int64_t now = cc_mono_us(), now_s = now / 1000000;
    self->last_purge_us = now;
    int64_t from = self->purged_s + 1;
    if (now_s - from > EXPIRY_BUCKETS) from = now_s - EXPIRY_BUCKETS;
    for (int64_t sec = from; sec < now_s; sec++) {
        int b = (int) (sec % EXPIRY_BUCKETS);
        zlistx_t *due = self->expiring[b];
        self->expiring[b] = zlistx_new();
        for (entry_t *e = zlistx_first(due); e; e = zlistx_next(due)) {
            if (e->expires_us < now) zhashx_delete(self->entries, e->id);
            else s_expire_at(self, e);
        }
        zlistx_destroy(&due);
    }
    if (now_s - 1 > self->purged_s) self->purged_s = now_s - 1;
}

static const cc_rpc_method_t *
s_method(cc_rpc_server_t *self, const char *name)
{
    for (const cc_rpc_method_t *m = self->methods; m && m->method; m++)
        if (strcmp(m->method, name) == 0) return m;
    return NULL;
}

/* Reads and handles one request. Returns false when nothing was waiting. */
static bool
s_handle_one(cc_rpc_server_t *self)
{
    zmsg_t *msg = zmsg_recv_nowait(self->router);
    if (!msg) return false;
    zframe_t *peer = zmsg_pop(msg);
    zframe_t *body = zmsg_pop(msg);
    Cc__Request *req = body && zmsg_size(msg) == 0
        ? cc__request__unpack(NULL, zframe_size(body), zframe_data(body)) : NULL;
    zframe_destroy(&body);
    zmsg_destroy(&msg);
    if (!peer) return true;
    size_t id_len = req && req->request_id ? strlen(req->request_id) : 0;
    if (!req || id_len == 0 || id_len > CC_RPC_ID_MAX || !req->method) {
        if (self->m_malformed) cc_metric_add(self->m_malformed, 1);
        CC_WARN("rpc request malformed", "id_bytes=%zu", id_len);
        s_reply_error(self, peer, req && req->request_id && id_len <= CC_RPC_ID_MAX ? req->request_id : "",
                      CC__STATUS__STATUS_BAD_REQUEST,
                      id_len > CC_RPC_ID_MAX ? "malformed request: request id over 128 bytes" : "malformed request");
        if (req) cc__request__free_unpacked(req, NULL);
        zframe_destroy(&peer);
        return true;
    }
    entry_t *e = zhashx_lookup(self->entries, req->request_id);
    if (e) {
        /* A retry: never run twice. */
        if (self->m_dups) cc_metric_add(self->m_dups, 1);
        if (e->state == ENTRY_DONE) s_send_reply(self, zframe_data(peer), zframe_size(peer), e->reply, e->reply_len);
        s_entry_peer(e, peer);
        zframe_destroy(&peer);
        cc__request__free_unpacked(req, NULL);
        return true;
    }
    if (req->timeout_us < 0) {
        if (self->m_expired) cc_metric_add(self->m_expired, 1);
        CC_WARN("rpc request past its deadline dropped", "method=%s request_id=%s", req->method, req->request_id);
        cc__request__free_unpacked(req, NULL);
        zframe_destroy(&peer);
        return true;
    }
    const cc_rpc_method_t *m = s_method(self, req->method);
    if (!m) {
        CC_WARN("rpc unknown method", "method=%s request_id=%s", req->method, req->request_id);
        s_reply_error(self, peer, req->request_id, CC__STATUS__STATUS_NOT_FOUND, "unknown method");
        cc__request__free_unpacked(req, NULL);
        zframe_destroy(&peer);
        return true;
    }
    e = calloc(1, sizeof *e + id_len + 1);
    if (!e) abort();
    e->state = ENTRY_RUNNING;
    memcpy(e->id, req->request_id, id_len + 1);
    s_entry_peer(e, peer);
    zframe_destroy(&peer);
    zhashx_insert(self->entries, e->id, e);
    cc_rpc_call_t *call = calloc(1, sizeof *call);
    if (!call) abort();
    call->server = self;
    call->entry = e;
    call->request_id = strdup(req->request_id);
    call->req = req;
    call->next = self->calls;
    if (self->calls) self->calls->prev = call;
    self->calls = call;
    self->executed++;
    if (self->m_requests) cc_metric_add(self->m_requests, 1);
    cc_log_set_trace(req->trace_id);
    m->fn(self->arg, call, req);
    cc_log_set_trace(NULL);
    return true;
}

uint64_t cc_rpc_server_executed(cc_rpc_server_t *self) { return self->executed; }

static void
s_server_readable(void *arg, void *sock)
{
    (void) sock;
    s_handle_one(arg);
}

static void
s_purge_timer(uv_timer_t *t)
{
    s_purge(t->data);
}

int
cc_rpc_server_attach(cc_rpc_server_t *self, cc_loop_t *loop)
{
    if (self->loop) return CC_EINVAL;
    self->loop = loop;
    self->purge = cc_loop_timer(loop, s_purge_timer, self, PURGE_EVERY_MS);
    uv_unref((uv_handle_t *) self->purge);
    return cc_loop_add_zsock(loop, self->router, s_server_readable, self);
}

int
cc_rpc_server_poll(cc_rpc_server_t *self, int timeout_ms)
{
    int handled = 0;
    int64_t deadline = zclock_mono() + timeout_ms;
    zmq_pollitem_t item = { zsock_resolve(self->router), 0, ZMQ_POLLIN, 0 };
    for (;;) {
        while (s_handle_one(self)) handled++;
        if (cc_mono_us() - self->last_purge_us > PURGE_EVERY_MS * 1000LL) s_purge(self);
        long wait = (long) (deadline - zclock_mono());
        if (wait <= 0 || handled) return handled;
        if (zmq_poll(&item, 1, wait) < 0) return handled;
    }
}

/* ---------------------------------------------------------------- client */

typedef struct pending {
    uv_timer_t timer;          /* first: the handle is the allocation */
    cc_rpc_client_t *client;
    char *request_id;
    char *method;
    char *trace_id;
    uint8_t *payload;
    size_t len;
    int64_t deadline_us;
    int attempts;
    cc_rpc_reply_fn *fn;
    void *arg;
} pending_t;

struct _cc_rpc_client_t {
    zsock_t *dealer;
    char *source;
    char boot[17];
    uint64_t counter;
    int retry_ms, max_attempts;
    zhashx_t *pending;          /* request id -> pending_t (attached mode) */
    cc_loop_t *loop;
    cc_metric_t *m_retries, *m_timeouts;
};

cc_rpc_client_t *
cc_rpc_client_new(const cc_rpc_client_opts_t *opts)
{
    cc_rpc_client_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer) abort();
    zsock_set_linger(self->dealer, 0);
    char *eps = strdup(opts->endpoint);
    for (char *save, *ep = strtok_r(eps, ",", &save); ep; ep = strtok_r(NULL, ",", &save))
        if (zsock_connect(self->dealer, "%s", ep) < 0) {
            CC_ERROR("zmq_connect failed", "endpoint=%s error=\"%s\"", ep, zmq_strerror(zmq_errno()));
            free(eps);
            zsock_destroy(&self->dealer);
            free(self);
            return NULL;
        }
    free(eps);
    self->source = strdup(opts->source ? opts->source : "client");
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint32_t) cc_wall_us();
    snprintf(self->boot, sizeof self->boot, "%08x", r);
    self->retry_ms = opts->retry_ms > 0 ? opts->retry_ms : 250;
    self->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : 3;
    self->pending = zhashx_new();
    if (opts->metrics) {
        self->m_retries = cc_metrics_counter(opts->metrics, "cc_rpc_retries_total", NULL, "Requests sent again");
        self->m_timeouts = cc_metrics_counter(opts->metrics, "cc_rpc_timeouts_total", NULL, "Requests whose deadline passed");
    }
    return self;
}

static void s_pending_closed(uv_handle_t *h);

static void
s_pending_finish(pending_t *p, const Cc__Reply *reply)
{
    cc_rpc_client_t *self = p->client;
    zhashx_delete(self->pending, p->request_id);
    uv_timer_stop(&p->timer);
    p->fn(p->arg, reply);
    uv_close((uv_handle_t *) &p->timer, s_pending_closed);
}

static void
s_pending_closed(uv_handle_t *h)
{
    pending_t *p = (pending_t *) h;
    free(p->request_id);
    free(p->method);
    free(p->trace_id);
    free(p->payload);
    free(p);
}

static void
s_finish_status(pending_t *p, Cc__Status status, const char *error)
{
    Cc__Reply reply = CC__REPLY__INIT;
    reply.request_id = p->request_id;
    reply.status = status;
    reply.error = (char *) error;
    s_pending_finish(p, &reply);
}

void
cc_rpc_client_destroy(cc_rpc_client_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_rpc_client_t *self = *self_p;
    /* Every outstanding request still gets its one reply. */
    pending_t *p;
    while ((p = zhashx_first(self->pending)))
        s_finish_status(p, CC__STATUS__STATUS_UNAVAILABLE, "client closed");
    if (self->loop) cc_loop_remove_zsock(self->loop, self->dealer);
    zhashx_destroy(&self->pending);
    zsock_destroy(&self->dealer);
    free(self->source);
    free(self);
    *self_p = NULL;
}

static void
s_new_id(cc_rpc_client_t *self, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s-%s-%" PRIu64, self->source, self->boot, ++self->counter);
}

/* deadline_us is on the monotonic clock; the wire carries the time left. */
static int
s_send_request(cc_rpc_client_t *self, const char *id, const char *method, const char *trace_id,
               const void *payload, size_t len, int64_t deadline_us, int attempt)
{
    Cc__Request req = CC__REQUEST__INIT;
    int64_t left = deadline_us - cc_mono_us();
    req.request_id = (char *) id;
    req.method = (char *) method;
    req.timeout_us = left > 0 ? left : 1;
    req.deadline_us = cc_wall_us() + req.timeout_us;
    req.attempt = (uint32_t) attempt;
    req.source = self->source;
    req.trace_id = (char *) (trace_id ? trace_id : "");
    req.payload.data = (uint8_t *) payload;
    req.payload.len = len;
    size_t size;
    uint8_t *buf = s_pack(&req.base, &size);
    int rc = zmq_send(zsock_resolve(self->dealer), buf, size, ZMQ_DONTWAIT);
    free(buf);
    if (rc < 0) {
        CC_WARN("rpc request not sent", "method=%s request_id=%s error=\"%s\"", method, id, zmq_strerror(zmq_errno()));
        return CC_EIO;
    }
    if (attempt > 1 && self->m_retries) cc_metric_add(self->m_retries, 1);
    return 0;
}

/* Reads one reply without waiting; returns it or NULL. */
static Cc__Reply *
s_read_reply(cc_rpc_client_t *self, bool *got_any)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    *got_any = false;
    if (zmq_msg_recv(&msg, zsock_resolve(self->dealer), ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return NULL;
    }
    *got_any = true;
    Cc__Reply *reply = zmq_msg_more(&msg) ? NULL
        : cc__reply__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    while (zmq_msg_more(&msg)) {        /* skip extra frames */
        zmq_msg_close(&msg);
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, zsock_resolve(self->dealer), 0) < 0) break;
    }
    zmq_msg_close(&msg);
    if (!reply) CC_WARN("rpc reply malformed", "%s", "");
    return reply;
}

static void s_arm(pending_t *p);

static void
s_pending_timer(uv_timer_t *t)
{
    pending_t *p = (pending_t *) t;
    cc_rpc_client_t *self = p->client;
    if (cc_mono_us() >= p->deadline_us) {
        if (self->m_timeouts) cc_metric_add(self->m_timeouts, 1);
        CC_WARN("rpc request timed out", "method=%s request_id=%s attempts=%d", p->method, p->request_id, p->attempts);
        s_finish_status(p, CC__STATUS__STATUS_TIMEOUT, "deadline passed");
        return;
    }
    if (p->attempts < self->max_attempts) {
        p->attempts++;
        s_send_request(self, p->request_id, p->method, p->trace_id, p->payload, p->len,
                       p->deadline_us, p->attempts);
    }
    s_arm(p);
}

/* Arms the timer for the next retry or the deadline, whichever is first. */
static void
s_arm(pending_t *p)
{
    int64_t left_ms = (p->deadline_us - cc_mono_us() + 999) / 1000;
    if (left_ms < 0) left_ms = 0;
    int64_t wait = p->attempts < p->client->max_attempts && p->client->retry_ms < left_ms
                 ? p->client->retry_ms : left_ms;
    uv_timer_start(&p->timer, s_pending_timer, (uint64_t) wait, 0);
}

static void
s_client_readable(void *arg, void *sock)
{
    (void) sock;
    cc_rpc_client_t *self = arg;
    bool got;
    Cc__Reply *reply = s_read_reply(self, &got);
    if (!reply) return;
    pending_t *p = zhashx_lookup(self->pending, reply->request_id);
    if (p) s_pending_finish(p, reply);   /* else: a late duplicate, already answered */
    cc__reply__free_unpacked(reply, NULL);
}

int
cc_rpc_client_attach(cc_rpc_client_t *self, cc_loop_t *loop)
{
    if (self->loop) return CC_EINVAL;
    self->loop = loop;
    return cc_loop_add_zsock(loop, self->dealer, s_client_readable, self);
}

int
cc_rpc_call(cc_rpc_client_t *self, const char *method, const char *trace_id,
            const void *payload, size_t len, int timeout_ms, cc_rpc_reply_fn *fn, void *arg)
{
    if (!self->loop) return CC_EINVAL;
    pending_t *p = calloc(1, sizeof *p);
    if (!p) abort();
    char id[128];
    s_new_id(self, id, sizeof id);
    p->client = self;
    p->request_id = strdup(id);
    p->method = strdup(method);
    p->trace_id = strdup(trace_id ? trace_id : "");
    p->payload = malloc(len ? len : 1);
    if (!p->request_id || !p->method || !p->trace_id || !p->payload) abort();
    if (len) memcpy(p->payload, payload, len);
    p->len = len;
    p->deadline_us = cc_mono_us() + (int64_t) timeout_ms * 1000;
    p->attempts = 1;
    p->fn = fn;
    p->arg = arg;
    uv_timer_init(cc_loop_uv(self->loop), &p->timer);
    zhashx_insert(self->pending, p->request_id, p);
    s_send_request(self, p->request_id, method, trace_id, payload, len, p->deadline_us, 1);
    s_arm(p);
    return 0;
}

int
cc_rpc_call_sync(cc_rpc_client_t *self, const char *method, const void *payload, size_t len,
                 int timeout_ms, Cc__Reply **reply_p)
{
    assert(!self->loop);
    char id[128];
    s_new_id(self, id, sizeof id);
    int64_t deadline_us = cc_mono_us() + (int64_t) timeout_ms * 1000;
    int attempts = 1;
    s_send_request(self, id, method, NULL, payload, len, deadline_us, attempts);
    int64_t next_retry = cc_mono_us() + self->retry_ms * 1000LL;
    zmq_pollitem_t item = { zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0 };
    for (;;) {
        bool got;
        Cc__Reply *reply;
        while ((reply = s_read_reply(self, &got)) || got) {
            if (reply && strcmp(reply->request_id, id) == 0) {
                *reply_p = reply;
                return 0;
            }
            if (reply) cc__reply__free_unpacked(reply, NULL);   /* stale */
        }
        int64_t now = cc_mono_us();
        if (now >= deadline_us) {
            if (self->m_timeouts) cc_metric_add(self->m_timeouts, 1);
            return CC_ETIMEDOUT;
        }
        if (attempts < self->max_attempts && now >= next_retry) {
            attempts++;
            s_send_request(self, id, method, NULL, payload, len, deadline_us, attempts);
            next_retry = now + self->retry_ms * 1000LL;
        }
        int64_t until = attempts < self->max_attempts && next_retry < deadline_us ? next_retry : deadline_us;
        long wait = (long) ((until - now + 999) / 1000);
        zmq_poll(&item, 1, wait > 0 ? wait : 0);
    }
}

/* --------------------------------------------------------------- selftest */

static int s_test_slow_first;

static void
s_test_echo(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    (void) arg;
    cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, req->payload.data, req->payload.len);
}

static const cc_rpc_method_t s_test_methods[] = {
    { "test.echo", s_test_echo, "replies with the request payload" },
    CC_RPC_METHODS_END
};

static void *
s_test_server_thread(void *arg)
{
    cc_rpc_server_t *server = arg;
    int64_t end = zclock_mono() + 1500;
    while (zclock_mono() < end) {
        if (s_test_slow_first) {
            /* Simulate a lost reply: read the first request and say nothing;
             * forget it too, as a crashed instance would. */
            zmsg_t *m = zmsg_recv(server->router);
            zmsg_destroy(&m);
            s_test_slow_first = 0;
        }
        cc_rpc_server_poll(server, 50);
    }
    return NULL;
}

void
cc_rpc_test(void)
{
    cc_rpc_server_t *server = cc_rpc_server_new("inproc://cc_rpc_test", s_test_methods, NULL, NULL);
    assert(server);
    cc_rpc_client_opts_t o = { .endpoint = "inproc://cc_rpc_test", .source = "t", .retry_ms = 100, .max_attempts = 3 };
    cc_rpc_client_t *client = cc_rpc_client_new(&o);
    assert(client);
    s_test_slow_first = 1;
    pthread_t th;
    pthread_create(&th, NULL, s_test_server_thread, server);
    Cc__Reply *reply = NULL;
    /* First attempt is swallowed: the retry is answered. */
    assert(cc_rpc_call_sync(client, "test.echo", "hi", 2, 1000, &reply) == 0);
    assert(reply->status == CC__STATUS__STATUS_OK && reply->payload.len == 2);
    cc__reply__free_unpacked(reply, NULL);
    assert(cc_rpc_call_sync(client, "test.nope", NULL, 0, 1000, &reply) == 0);
    assert(reply->status == CC__STATUS__STATUS_NOT_FOUND);
    cc__reply__free_unpacked(reply, NULL);
    pthread_join(th, NULL);
    assert(cc_rpc_server_executed(server) == 1);
    /* The kept reply stays until it expires, then the purge of its second
     * forgets it (here read late: every bucket is read again). */
    assert(zhashx_size(server->entries) == 1);
    s_purge(server);
    assert(zhashx_size(server->entries) == 1);
    entry_t *kept = zhashx_first(server->entries);
    kept->expires_us = cc_mono_us() - 1;
    server->purged_s -= EXPIRY_BUCKETS + 10;
    s_purge(server);
    assert(zhashx_size(server->entries) == 0);
    /* A request id over CC_RPC_ID_MAX bytes is a bad request, not run. */
    zsock_t *raw = zsock_new_dealer(">inproc://cc_rpc_test");
    assert(raw);
    char long_id[CC_RPC_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    Cc__Request bad = CC__REQUEST__INIT;
    bad.request_id = long_id;
    bad.method = "test.echo";
    bad.timeout_us = 1000000;
    size_t bad_len;
    uint8_t *bad_buf = s_pack(&bad.base, &bad_len);
    assert(zsock_send(raw, "b", bad_buf, bad_len) == 0);
    free(bad_buf);
    assert(cc_rpc_server_poll(server, 1000) == 1);
    zframe_t *answer = NULL;
    zsock_set_rcvtimeo(raw, 1000);
    assert(zsock_recv(raw, "f", &answer) == 0 && answer);
    Cc__Reply *refused = cc__reply__unpack(NULL, zframe_size(answer), zframe_data(answer));
    assert(refused && refused->status == CC__STATUS__STATUS_BAD_REQUEST && strstr(refused->error, "128 bytes"));
    cc__reply__free_unpacked(refused, NULL);
    zframe_destroy(&answer);
    zsock_destroy(&raw);
    assert(cc_rpc_server_executed(server) == 1);
    /* Nobody serving: the deadline is kept. */
    int64_t t0 = zclock_mono();
    assert(cc_rpc_call_sync(client, "test.echo", NULL, 0, 300, &reply) == CC_ETIMEDOUT);
    int64_t took = zclock_mono() - t0;
    assert(took >= 290 && took < 1000);
    cc_rpc_client_destroy(&client);
    cc_rpc_server_destroy(&server);
    assert(!client && !server);
}
