/* cc_forwarder: XSUB/XPUB forwarding loop with counters. */
#include "cc/cc_forwarder.h"
#include "cc/cc_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <zmq.h>

struct _cc_forwarder_t {
    void *ctx;
    void *xsub, *xpub;
    pthread_t thread;
    _Atomic uint64_t messages, subscriptions;
};

/* Moves one whole multipart message from one socket to the other. Returns 0,
 * or -1 when the context is terminating. */
static int
s_move(void *from, void *to)
{
    zmq_msg_t msg;
    for (;;) {
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, from, 0) < 0) {
            zmq_msg_close(&msg);
            return zmq_errno() == ETERM ? -1 : 0;
        }
        int more = zmq_msg_more(&msg);
        if (zmq_msg_send(&msg, to, more ? ZMQ_SNDMORE : 0) < 0) {
            zmq_msg_close(&msg);
            return zmq_errno() == ETERM ? -1 : 0;
        }
        if (!more) return 0;
    }
}

static void *
s_run(void *arg)
{
    cc_forwarder_t *self = arg;
    zmq_pollitem_t items[] = { { self->xsub, 0, ZMQ_POLLIN, 0 }, { self->xpub, 0, ZMQ_POLLIN, 0 } };
    for (;;) {
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == ETERM) break;
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            /* Drain a batch of events before looking at subscriptions again. */
            for (int i = 0; i < 1024; i++) {
                if (s_move(self->xsub, self->xpub) < 0) goto out;
                atomic_fetch_add_explicit(&self->messages, 1, memory_order_relaxed);
                int events;
                size_t len = sizeof events;
                zmq_getsockopt(self->xsub, ZMQ_EVENTS, &events, &len);
                if (!(events & ZMQ_POLLIN)) break;
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            if (s_move(self->xpub, self->xsub) < 0) break;
            atomic_fetch_add_explicit(&self->subscriptions, 1, memory_order_relaxed);
        }
    }
out:
    zmq_close(self->xsub);
    zmq_close(self->xpub);
    return NULL;
}

static void *
s_socket(void *ctx, int type, const char *endpoint, int hwm)
{
    void *s = zmq_socket(ctx, type);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (hwm > 0) {
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    }
    if (zmq_bind(s, endpoint) < 0) {
        CC_ERROR("zmq_bind failed", "endpoint=%s error=\"%s\"", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

cc_forwarder_t *
cc_forwarder_new(const char *xsub_endpoint, const char *xpub_endpoint, int hwm, bool nodrop)
{
    cc_forwarder_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->ctx = zmq_ctx_new();
    self->xsub = s_socket(self->ctx, ZMQ_XSUB, xsub_endpoint, hwm);
    self->xpub = s_socket(self->ctx, ZMQ_XPUB, xpub_endpoint, hwm);
    if (!self->xsub || !self->xpub) {
        if (self->xsub) zmq_close(self->xsub);
        if (self->xpub) zmq_close(self->xpub);
        zmq_ctx_term(self->ctx);
        free(self);
        return NULL;
    }
    int on = 1;
    if (nodrop) zmq_setsockopt(self->xpub, ZMQ_XPUB_NODROP, &on, sizeof on);
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) abort();
    CC_INFO("forwarder listening", "xsub=%s xpub=%s hwm=%d nodrop=%d", xsub_endpoint, xpub_endpoint, hwm, nodrop);
    return self;
}

void
cc_forwarder_destroy(cc_forwarder_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_forwarder_t *self = *self_p;
    zmq_ctx_shutdown(self->ctx);      /* wakes the thread with ETERM */
    pthread_join(self->thread, NULL);
    zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

uint64_t cc_forwarder_messages(cc_forwarder_t *self) { return atomic_load(&self->messages); }
uint64_t cc_forwarder_subscriptions(cc_forwarder_t *self) { return atomic_load(&self->subscriptions); }
