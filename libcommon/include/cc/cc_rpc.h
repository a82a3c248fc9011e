/* cc_rpc: request/reply over ROUTER (server) and DEALER (client).
 *
 * Each request carries a request id, a method, an absolute deadline and its
 * attempt number. The client resends the same request id until it gets a
 * reply, up to max_attempts, and gives up at the deadline with
 * CC__STATUS__STATUS_TIMEOUT: never a hang. The server runs a request id at
 * most once: a duplicate of a request still running is dropped (its reply
 * will come), a duplicate of a finished one gets the stored reply again. */
#ifndef CC_RPC_H
#define CC_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "cc/cc_loop.h"
#include "cc/cc_metrics.h"
#include "rpc.pb-c.h"

typedef struct _cc_rpc_server_t cc_rpc_server_t;
typedef struct _cc_rpc_client_t cc_rpc_client_t;
typedef struct _cc_rpc_call_t cc_rpc_call_t;

/* A request handler. It (or code it schedules) must call cc_rpc_reply()
 * exactly once for call; req is valid until then. */
typedef void (cc_rpc_handler_fn)(void *arg, cc_rpc_call_t *call, const Cc__Request *req);

typedef struct {
    const char *method;        /* "acd.enqueue" */
    cc_rpc_handler_fn *fn;
    const char *doc;           /* one line for --help and docs */
} cc_rpc_method_t;

#define CC_RPC_METHODS_END { NULL, NULL, NULL }

/* The longest request id a server takes (longer: bad request). */
#define CC_RPC_ID_MAX 128

/* Binds endpoint. methods is a NULL-terminated table, borrowed for the
 * server's life; arg is passed to every handler. NULL on bind failure. */
cc_rpc_server_t *cc_rpc_server_new(const char *endpoint, const cc_rpc_method_t *methods,
                                   void *arg, cc_metrics_t *metrics);
void cc_rpc_server_destroy(cc_rpc_server_t **self_p);
int cc_rpc_server_attach(cc_rpc_server_t *self, cc_loop_t *loop);
/* Without a loop: handles requests arriving within timeout_ms. Returns the
 * number handled. */
int cc_rpc_server_poll(cc_rpc_server_t *self, int timeout_ms);
/* How many times a handler ran (not counting duplicates). */
uint64_t cc_rpc_server_executed(cc_rpc_server_t *self);

/* Completes call with status (CC__STATUS__STATUS_OK...), an error text for
 * failures (NULL when none) and a reply payload. Frees call. */
void cc_rpc_reply(cc_rpc_call_t *call, Cc__Status status, const char *error,
                  const void *payload, size_t len);
void cc_rpc_reply_msg(cc_rpc_call_t *call, const void *protobuf_msg);

typedef struct {
    const char *endpoint;      /* server's ROUTER endpoint(s), comma-separated */
    const char *source;        /* this instance, for logs and request ids */
    int retry_ms;              /* resend after this long without a reply */
    int max_attempts;          /* sends per request, the first included */
    cc_metrics_t *metrics;
} cc_rpc_client_opts_t;

/* Called once per request: with the server's reply, or with a reply whose
 * status is TIMEOUT when the deadline passed. reply is valid during the call. */
typedef void (cc_rpc_reply_fn)(void *arg, const Cc__Reply *reply);

cc_rpc_client_t *cc_rpc_client_new(const cc_rpc_client_opts_t *opts);
void cc_rpc_client_destroy(cc_rpc_client_t **self_p);
int cc_rpc_client_attach(cc_rpc_client_t *self, cc_loop_t *loop);

/* Sends a request on the loop; fn gets exactly one reply. Returns 0, or
 * CC_EINVAL when the client is not attached. */
int cc_rpc_call(cc_rpc_client_t *self, const char *method, const char *trace_id,
                const void *payload, size_t len, int timeout_ms,
                cc_rpc_reply_fn *fn, void *arg);

/* Blocking call for tools and tests (client must not be attached). Returns 0
 * with *reply_p (free with cc__reply__free_unpacked) or CC_ETIMEDOUT. */
int cc_rpc_call_sync(cc_rpc_client_t *self, const char *method, const void *payload,
                     size_t len, int timeout_ms, Cc__Reply **reply_p);

void cc_rpc_test(void);

#endif
