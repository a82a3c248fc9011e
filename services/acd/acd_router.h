/* acd_router: the live ACD state in Redis, changed only through acd.lua.
 *
 * Each operation is one atomic script call that returns the actions to carry
 * out (offer a call to an agent, publish an event). Several acd instances
 * share one Redis safely: no agent is ever given two calls, no call two
 * agents. Operations submitted in one turn of the loop are pipelined to
 * Redis and flushed together: one round trip for many decisions. */
#ifndef ACD_ROUTER_H
#define ACD_ROUTER_H

#include <stdint.h>

#include "cc/cc_redis.h"
#include "rpc.pb-c.h"

typedef struct _acd_router_t acd_router_t;

/* One action from the script: argv[0] is its kind ("offer", "agent", ...). */
typedef void (acd_action_fn)(void *arg, int argc, const char *const *argv);
/* The operation's outcome, after its actions: STATUS_OK or the script's
 * error (BAD_REQUEST, NOT_FOUND, CONFLICT; UNAVAILABLE when Redis is down,
 * INTERNAL when the script failed) with its text (valid during the call). */
typedef void (acd_done_fn)(void *arg, Cc__Status status, const char *error);

/* Borrows redis for its life. Never NULL. */
acd_router_t *acd_router_new(cc_redis_t *redis);
void acd_router_destroy(acd_router_t **self_p);

/* Queues operation op at now_ms with args (copied). fn gets the actions and
 * done the outcome, both at the next flush (or at once if Redis is down). */
void acd_router_submit(acd_router_t *self, int64_t now_ms, const char *op, int argc,
                       const char *const *args, acd_action_fn *fn, acd_done_fn *done, void *arg);
/* Reads the replies of every queued operation and calls their callbacks. */
void acd_router_flush(acd_router_t *self);
int acd_router_pending(acd_router_t *self);

/* Submits and flushes at once. Returns the status; *error_p points to the
 * error text until the next call. */
Cc__Status acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
                          const char *const *args, acd_action_fn *fn, void *arg, const char **error_p);

#endif
