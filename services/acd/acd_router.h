/* acd_router: the live ACD state in Redis, changed only through acd.lua.
 *
 * Each operation is one atomic script call that returns the actions to carry
 * out (offer a call to an agent, publish an event). Several acd instances
 * share one Redis safely: no agent is ever given two calls, no call two
 * agents. */
#ifndef ACD_ROUTER_H
#define ACD_ROUTER_H

#include <stdint.h>

#include "cc/cc_redis.h"
#include "rpc.pb-c.h"

typedef struct _acd_router_t acd_router_t;

/* One action from the script: argv[0] is its kind ("offer", "agent", ...). */
typedef void (acd_action_fn)(void *arg, int argc, const char *const *argv);

/* Borrows redis for its life. Never NULL. */
acd_router_t *acd_router_new(cc_redis_t *redis);
void acd_router_destroy(acd_router_t **self_p);

/* Runs operation op at now_ms with args; calls fn for each action. Returns
 * STATUS_OK, or the status of the script's error (BAD_REQUEST, NOT_FOUND,
 * CONFLICT, UNAVAILABLE when Redis is down), with its text in *error_p
 * (static or owned by the router until the next call). */
Cc__Status acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
                          const char *const *args, acd_action_fn *fn, void *arg, const char **error_p);

#endif
