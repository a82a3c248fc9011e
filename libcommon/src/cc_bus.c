/* cc_bus: publish and subscribe with envelopes, sequences and gap counting. */
#include "cc/cc_bus.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define INLINE_BUF 4096

/* Sequence state of one (publisher, type) pair; a small open hash. */
typedef struct {
    uint64_t publisher_id;
    char *type;
    uint64_t last;
} seq_t;

typedef struct {
    seq_t *slots;
    size_t cap, used;
    seq_t *mru;         /* most events come from the same pair in a row */
} seqmap_t;

struct _cc_bus_t {
    char *service, *instance;
    zsock_t *pub, *sub;
    uint64_t publisher_id;
    seqmap_t out;       /* next sequence per type we publish */
    seqmap_t in;        /* last sequence per (publisher, type) we received */
    uint64_t gaps, dups, malformed, received, published;
    cc_metric_t *m_gaps, *m_dups, *m_malformed, *m_received, *m_published;
    cc_loop_t *loop;
    cc_bus_event_fn *fn;
    void *fn_arg;
};

static uint64_t
s_hash(uint64_t pid, const char *type)
{
    uint64_t h = 1469598103934665603ULL ^ pid;
    for (; *type; type++) h = (h ^ (unsigned char) *type) * 1099511628211ULL;
    return h;
}

static void
s_seqmap_free(seqmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].type);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static seq_t *s_seqmap_get(seqmap_t *m, uint64_t pid, const char *type, bool *created);

static void
s_seqmap_grow(seqmap_t *m)
{
    seqmap_t bigger = { 0 };
    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.slots = calloc(bigger.cap, sizeof(seq_t));
    if (!bigger.slots) abort();
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].type) {
            bool created;
            seq_t *s = s_seqmap_get(&bigger, m->slots[i].publisher_id, m->slots[i].type, &created);
            s->last = m->slots[i].last;
        }
    s_seqmap_free(m);
    *m = bigger;
}

/* Returns the pair's slot, creating it (last = 0) when new. */
static seq_t *
s_seqmap_get(seqmap_t *m, uint64_t pid, const char *type, bool *created)
{
    *created = false;
    if (m->mru && m->mru->publisher_id == pid && strcmp(m->mru->type, type) == 0) return m->mru;
    if ((m->used + 1) * 2 > m->cap) s_seqmap_grow(m);
    size_t i = s_hash(pid, type) & (m->cap - 1);
    while (m->slots[i].type) {
        if (m->slots[i].publisher_id == pid && strcmp(m->slots[i].type, type) == 0)
            return m->mru = &m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i].publisher_id = pid;
    m->slots[i].type = strdup(type);
    if (!m->slots[i].type) abort();
    m->slots[i].last = 0;
    m->used++;
    *created = true;
    return m->mru = &m->slots[i];
}

static zsock_t *
s_socket(int type, const char *endpoint, const cc_bus_opts_t *opts)
{
    zsock_t *s = zsock_new(type);
    if (!s) return NULL;
    if (opts->hwm > 0) {
        zsock_set_sndhwm(s, opts->hwm);
        zsock_set_rcvhwm(s, opts->hwm);
    }
    zsock_set_linger(s, type == ZMQ_PUB ? 1000 : 0);
    if (type == ZMQ_PUB && opts->nodrop) zsock_set_xpub_nodrop(s, 1);
    if (zsock_connect(s, "%s", endpoint) != 0) {
        CC_ERROR("zmq_connect failed", "endpoint=%s error=\"%s\"", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&s);
    }
    return s;
}

cc_bus_t *
cc_bus_new(const cc_bus_opts_t *opts)
{
    cc_bus_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->service = strdup(opts->service ? opts->service : "unknown");
    self->instance = strdup(opts->instance ? opts->instance : self->service);
    if (getrandom(&self->publisher_id, sizeof self->publisher_id, 0) != sizeof self->publisher_id)
        self->publisher_id = (uint64_t) cc_wall_us() ^ ((uint64_t) getpid() << 32);
    if (opts->pub_endpoint && !(self->pub = s_socket(ZMQ_PUB, opts->pub_endpoint, opts))) goto err;
    if (opts->sub_endpoint && !(self->sub = s_socket(ZMQ_SUB, opts->sub_endpoint, opts))) goto err;
    if (opts->metrics) {
        cc_metrics_t *m = opts->metrics;
        self->m_gaps = cc_metrics_counter(m, "cc_bus_events_lost_total", NULL, "Events missing from sequences (gaps)");
        self->m_dups = cc_metrics_counter(m, "cc_bus_events_duplicate_total", NULL, "Events repeated or out of order");
        self->m_malformed = cc_metrics_counter(m, "cc_bus_events_malformed_total", NULL, "Messages that were not a valid envelope");
        self->m_received = cc_metrics_counter(m, "cc_bus_events_received_total", NULL, "Events received");
        self->m_published = cc_metrics_counter(m, "cc_bus_events_published_total", NULL, "Events published");
    }
    return self;
err:
    cc_bus_destroy(&self);
    return NULL;
}

void
cc_bus_destroy(cc_bus_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_bus_t *self = *self_p;
    cc_bus_detach(self);
    zsock_destroy(&self->pub);
    zsock_destroy(&self->sub);
    s_seqmap_free(&self->out);
    s_seqmap_free(&self->in);
    free(self->service);
    free(self->instance);
    free(self);
    *self_p = NULL;
}

int
cc_bus_publish(cc_bus_t *self, const char *type, const char *trace_id,
               const void *payload, size_t len)
{
    if (!self->pub) return CC_EINVAL;
    bool created;
    seq_t *seq = s_seqmap_get(&self->out, self->publisher_id, type, &created);
    /* "<publisher id, hex>-<type>-<sequence>": written out (events are
     * published by the thousand per second; snprintf is dearer). */
    char event_id[200];
    size_t tlen = strlen(type);
    if (tlen > CC_BUS_TYPE_MAX) {
        CC_ERROR("event not published: type too long", "bytes=%zu max=%d", tlen, CC_BUS_TYPE_MAX);
        return CC_EINVAL;
    }
    char *at = cc_hex64_text(event_id, self->publisher_id);
    *at++ = '-';
    memcpy(at, type, tlen);
    at += tlen;
    *at++ = '-';
    *cc_u64_text(at, seq->last + 1) = '\0';

    Cc__Envelope env = CC__ENVELOPE__INIT;
    env.event_id = event_id;
    env.type = (char *) type;
    env.source = self->service;
    env.instance = self->instance;
    env.publisher_id = self->publisher_id;
    env.sequence = seq->last + 1;
    env.time_us = cc_wall_us();
    env.trace_id = (char *) (trace_id ? trace_id : "");
    env.payload.data = (uint8_t *) payload;
    env.payload.len = len;

    uint8_t inline_buf[INLINE_BUF];
    size_t size = cc__envelope__get_packed_size(&env);
    uint8_t *buf = size <= sizeof inline_buf ? inline_buf : malloc(size);
    if (!buf) abort();
    cc__envelope__pack(&env, buf);

    void *raw = zsock_resolve(self->pub);
    int rc = 0;
    if (zmq_send(raw, type, tlen, ZMQ_SNDMORE) < 0 || zmq_send(raw, buf, size, 0) < 0) {
        CC_ERROR("zmq_send failed", "type=%s error=\"%s\"", type, zmq_strerror(zmq_errno()));
        rc = CC_EIO;
    } else {
        /* The number is used only once it is sent, so receivers see no hole
         * for a send that failed here. */
        seq->last++;
        self->published++;
        if (self->m_published) cc_metric_add(self->m_published, 1);
    }
    if (buf != inline_buf) free(buf);
    return rc;
}

int
cc_bus_publish_msg(cc_bus_t *self, const char *type, const char *trace_id, const void *msg)
{
    const ProtobufCMessage *m = msg;
    uint8_t inline_buf[INLINE_BUF];
    size_t size = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = size <= sizeof inline_buf ? inline_buf : malloc(size);
    if (!buf) abort();
    protobuf_c_message_pack(m, buf);
    int rc = cc_bus_publish(self, type, trace_id, buf, size);
    if (buf != inline_buf) free(buf);
    return rc;
}

int
cc_bus_subscribe(cc_bus_t *self, const char *prefix)
{
    if (!self->sub) return CC_EINVAL;
    zsock_set_subscribe(self->sub, prefix);
    return 0;
}

int
cc_bus_unsubscribe(cc_bus_t *self, const char *prefix)
{
    if (!self->sub) return CC_EINVAL;
    zsock_set_unsubscribe(self->sub, prefix);
    return 0;
}

static void
s_count(cc_bus_t *self, uint64_t *field, cc_metric_t *m, uint64_t n)
{
    (void) self;
    *field += n;
    if (m) cc_metric_add(m, (int64_t) n);
}

/* Checks env's sequence against the last one seen from its publisher. */
static void
s_track(cc_bus_t *self, const Cc__Envelope *env)
{
    bool created;
    seq_t *seq = s_seqmap_get(&self->in, env->publisher_id, env->type, &created);
    if (created || env->sequence == seq->last + 1) {
        /* A new publisher may have started before we subscribed: its first
         * number seen is where we begin. */
        seq->last = env->sequence;
        return;
    }
    if (env->sequence > seq->last + 1) {
        uint64_t lost = env->sequence - seq->last - 1;
        s_count(self, &self->gaps, self->m_gaps, lost);
        CC_WARN("bus gap: events lost", "type=%s source=%s instance=%s from_seq=%" PRIu64 " lost=%" PRIu64
                " total_lost=%" PRIu64, env->type, env->source, env->instance, seq->last + 1, lost, self->gaps);
        seq->last = env->sequence;
    } else {
        s_count(self, &self->dups, self->m_dups, 1);
    }
}

/* Reads one message (two frames) without waiting. Returns 0 with *env_p,
 * CC_ETIMEDOUT when nothing is there, CC_EPROTO when malformed. */
static int
s_read_one(cc_bus_t *self, Cc__Envelope **env_p)
{
    void *raw = zsock_resolve(self->sub);
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    if (zmq_msg_recv(&topic, raw, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&topic);
        return CC_ETIMEDOUT;
    }
    int more = zmq_msg_more(&topic);
    zmq_msg_close(&topic);
    if (!more) {
        s_count(self, &self->malformed, self->m_malformed, 1);
        CC_WARN("bus message without envelope frame", "%s", "");
        return CC_EPROTO;
    }
    zmq_msg_init(&body);
    zmq_msg_recv(&body, raw, 0);
    /* Discard any extra frames of a malformed message. */
    bool extra = false;
    while (zmq_msg_more(&body)) {
        extra = true;
        zmq_msg_t skip;
        zmq_msg_init(&skip);
        zmq_msg_recv(&skip, raw, 0);
        int m = zmq_msg_more(&skip);
        zmq_msg_close(&skip);
        if (!m) break;
    }
    Cc__Envelope *env = extra ? NULL
        : cc__envelope__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
    zmq_msg_close(&body);
    if (!env || !env->type || !*env->type) {
        if (env) cc__envelope__free_unpacked(env, NULL);
        s_count(self, &self->malformed, self->m_malformed, 1);
        CC_WARN("bus message is not a valid envelope", "%s", "");
        return CC_EPROTO;
    }
    s_count(self, &self->received, self->m_received, 1);
    s_track(self, env);
    *env_p = env;
    return 0;
}

int
cc_bus_recv(cc_bus_t *self, Cc__Envelope **env_p, int timeout_ms)
{
    if (!self->sub) return CC_EINVAL;
    int rc = s_read_one(self, env_p);
    if (rc != CC_ETIMEDOUT) return rc;
    zmq_pollitem_t item = { zsock_resolve(self->sub), 0, ZMQ_POLLIN, 0 };
    int64_t deadline = timeout_ms < 0 ? -1 : zclock_mono() + timeout_ms;
    for (;;) {
        long wait = deadline < 0 ? -1 : (long) (deadline - zclock_mono());
        if (deadline >= 0 && wait < 0) return CC_ETIMEDOUT;
        if (zmq_poll(&item, 1, wait) < 0) return CC_EIO;
        rc = s_read_one(self, env_p);
        if (rc != CC_ETIMEDOUT) return rc;
    }
}

static void
s_on_readable(void *arg, void *sock)
{
    (void) sock;
    cc_bus_t *self = arg;
    Cc__Envelope *env = NULL;
    if (s_read_one(self, &env) == 0) {
        cc_log_set_trace(env->trace_id);
        self->fn(self->fn_arg, env);
        cc_log_set_trace(NULL);
        cc__envelope__free_unpacked(env, NULL);
    }
}

int
cc_bus_attach(cc_bus_t *self, cc_loop_t *loop, cc_bus_event_fn *fn, void *arg)
{
    if (!self->sub || self->loop) return CC_EINVAL;
    self->loop = loop;
    self->fn = fn;
    self->fn_arg = arg;
    return cc_loop_add_zsock(loop, self->sub, s_on_readable, self);
}

void
cc_bus_detach(cc_bus_t *self)
{
    if (!self->loop) return;
    cc_loop_remove_zsock(self->loop, self->sub);
    self->loop = NULL;
}

uint64_t cc_bus_gaps(cc_bus_t *self) { return self->gaps; }
uint64_t cc_bus_duplicates(cc_bus_t *self) { return self->dups; }
uint64_t cc_bus_malformed(cc_bus_t *self) { return self->malformed; }
uint64_t cc_bus_received(cc_bus_t *self) { return self->received; }
uint64_t cc_bus_published(cc_bus_t *self) { return self->published; }
uint64_t cc_bus_publisher_id(cc_bus_t *self) { return self->publisher_id; }

/* --- selftest: publisher and subscriber joined directly, no forwarder --- */
void
cc_bus_test(void)
{
    zsock_t *xsub = zsock_new_xsub("@inproc://cc_bus_test_in");
    zsock_t *xpub = zsock_new_xpub("@inproc://cc_bus_test_out");
    assert(xsub && xpub);
    cc_bus_opts_t o = { .service = "t", .instance = "t-1",
                        .pub_endpoint = "inproc://cc_bus_test_in",
                        .sub_endpoint = "inproc://cc_bus_test_out" };
    cc_bus_t *bus = cc_bus_new(&o);
    assert(bus);
    assert(cc_bus_subscribe(bus, "call.") == 0);
    /* Forward the subscription by hand (the forwarder's job). */
    zframe_t *f = zframe_recv(xpub);
    assert(f && zframe_size(f) == 6 && zframe_data(f)[0] == 1);
    zframe_send(&f, xsub, 0);
    zclock_sleep(50);
    for (int i = 0; i < 3; i++) assert(cc_bus_publish(bus, "call.dtmf", "c-1", "12", 2) == 0);
    for (int i = 0; i < 3; i++) {
        zmsg_t *m = zmsg_recv(xsub);
        assert(m && zmsg_size(m) == 2);
        if (i == 1) { zmsg_destroy(&m); continue; }   /* lose the 2nd event */
        zmsg_send(&m, xpub);
    }
    Cc__Envelope *env = NULL;
    assert(cc_bus_recv(bus, &env, 1000) == 0);
    assert(strcmp(env->type, "call.dtmf") == 0 && env->sequence == 1);
    assert(strcmp(env->trace_id, "c-1") == 0 && env->payload.len == 2);
    assert(strcmp(env->source, "t") == 0 && strcmp(env->instance, "t-1") == 0);
    cc__envelope__free_unpacked(env, NULL);
    assert(cc_bus_recv(bus, &env, 1000) == 0 && env->sequence == 3);
    cc__envelope__free_unpacked(env, NULL);
    assert(cc_bus_gaps(bus) == 1);
    /* A malformed message is counted and skipped. */
    zstr_sendm(xpub, "call.x");
    zstr_send(xpub, "\xff\xff\xff garbage");
    assert(cc_bus_recv(bus, &env, 1000) == CC_EPROTO);
    assert(cc_bus_malformed(bus) == 1);
    assert(cc_bus_recv(bus, &env, 50) == CC_ETIMEDOUT);
    /* Types up to CC_BUS_TYPE_MAX bytes go (heartbeats carry the instance). */
    char type[CC_BUS_TYPE_MAX + 2];
    memset(type, 'h', sizeof type - 1);
    type[sizeof type - 1] = '\0';
    assert(cc_bus_publish(bus, type, NULL, NULL, 0) == CC_EINVAL);
    type[CC_BUS_TYPE_MAX] = '\0';
    assert(cc_bus_publish(bus, type, NULL, NULL, 0) == 0);
    cc_bus_destroy(&bus);
    assert(!bus);
    zsock_destroy(&xsub);
    zsock_destroy(&xpub);
}
