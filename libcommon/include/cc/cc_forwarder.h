/* cc_forwarder: the bus's XSUB/XPUB forwarder, on its own thread.
 *
 * Publishers connect to the XSUB endpoint, subscribers to the XPUB endpoint;
 * subscriptions flow upstream, events downstream, frame by frame, zero-copy.
 * With nodrop, a subscriber at its high-water mark holds the forwarder (and
 * so the publishers) back instead of losing events. */
#ifndef CC_FORWARDER_H
#define CC_FORWARDER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct _cc_forwarder_t cc_forwarder_t;

/* Binds both endpoints and starts the thread. NULL on bind failure (logged). */
cc_forwarder_t *cc_forwarder_new(const char *xsub_endpoint, const char *xpub_endpoint,
                                 int hwm, bool nodrop);
/* Stops the thread and closes the sockets. */
void cc_forwarder_destroy(cc_forwarder_t **self_p);

/* Thread-safe counters. */
uint64_t cc_forwarder_messages(cc_forwarder_t *self);
uint64_t cc_forwarder_subscriptions(cc_forwarder_t *self);

#endif
