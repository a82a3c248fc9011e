/* cc_bus: events over ZeroMQ through the XSUB/XPUB forwarder.
 *
 * Frame 1 is the topic (the event type, e.g. "call.started"); frame 2 a
 * protobuf cc.Envelope. Every publisher numbers its events per type from 1,
 * under a random publisher id chosen at start; a subscriber tracks the last
 * number per (publisher, type) and counts every hole as lost events (a gap),
 * logged once per hole. Subscriptions are by topic prefix, so a subscriber sees
 * either every event of a type or none, and the count is exact. */
#ifndef CC_BUS_H
#define CC_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cc/cc_loop.h"
#include "cc/cc_metrics.h"
#include "envelope.pb-c.h"

typedef struct {
    const char *service;       /* "acd" */
    const char *instance;      /* "acd-1" */
    const char *pub_endpoint;  /* forwarder's XSUB side; NULL: no publishing */
    const char *sub_endpoint;  /* forwarder's XPUB side; NULL: no subscribing */
    int hwm;                   /* high-water mark of each socket; 0: libzmq's */
    bool nodrop;               /* hold the publisher back at the HWM instead of dropping */
    cc_metrics_t *metrics;     /* optional; counters cc_bus_* are added */
} cc_bus_opts_t;

typedef struct _cc_bus_t cc_bus_t;

/* Called for each event received; env is valid during the call only. */
typedef void (cc_bus_event_fn)(void *arg, const Cc__Envelope *env);

/* Connects the sockets (ZeroMQ connects in the background). Returns NULL on a
 * bad endpoint, logged. */
cc_bus_t *cc_bus_new(const cc_bus_opts_t *opts);
void cc_bus_destroy(cc_bus_t **self_p);

/* The longest event type (heartbeats carry the instance's name). */
#define CC_BUS_TYPE_MAX 150

/* Publishes one event of type with payload bytes. Returns 0, CC_EINVAL when
 * there is no publisher socket or the type is over CC_BUS_TYPE_MAX bytes,
 * CC_EBUSY when a nodrop publisher is held back past timeout, CC_EIO on a
 * send failure (logged). */
int cc_bus_publish(cc_bus_t *self, const char *type, const char *trace_id,
                   const void *payload, size_t len);
/* Same with a protobuf message as the payload. */
int cc_bus_publish_msg(cc_bus_t *self, const char *type, const char *trace_id,
                       const void *protobuf_msg);

/* Subscribes to every type starting with prefix ("" for all). */
int cc_bus_subscribe(cc_bus_t *self, const char *prefix);
int cc_bus_unsubscribe(cc_bus_t *self, const char *prefix);

/* Waits up to timeout_ms (-1: forever) for one event. Returns 0 with the
 * envelope in *env_p (the caller frees it with cc__envelope__free_unpacked),
 * CC_ETIMEDOUT, or CC_EPROTO for a malformed message (counted, skipped). */
int cc_bus_recv(cc_bus_t *self, Cc__Envelope **env_p, int timeout_ms);

/* Receives events on loop: fn is called for each one. */
int cc_bus_attach(cc_bus_t *self, cc_loop_t *loop, cc_bus_event_fn *fn, void *arg);
void cc_bus_detach(cc_bus_t *self);

/* Counters: events lost (holes in sequences), duplicates or reordered,
 * malformed messages, received, published. */
uint64_t cc_bus_gaps(cc_bus_t *self);
uint64_t cc_bus_duplicates(cc_bus_t *self);
uint64_t cc_bus_malformed(cc_bus_t *self);
uint64_t cc_bus_received(cc_bus_t *self);
uint64_t cc_bus_published(cc_bus_t *self);

/* The publisher socket's ZeroMQ handle, for a service's own heartbeat probe. */
uint64_t cc_bus_publisher_id(cc_bus_t *self);

void cc_bus_test(void);

#endif
