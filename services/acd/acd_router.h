/* acd_router: the live ACD state in Redis, changed only through acd.lua.
 *
 * Each operation is atomic and returns the actions to carry out (offer a
 * call to an agent, publish an event). Several acd instances share one Redis
 * safely: no agent is ever given two calls, no call two agents. Operations
 * submitted in one turn of the loop go to Redis together, as one script call
 * (one round trip, one script run, for many decisions). Nothing runs twice:
 * a batch sent again after its reply was lost gets its first results (and
 * their actions are carried out then); a retried request that ran already,
 * maybe through another instance, gets its first reply, led by a
 * "replayed" action (its events were published by the first run). */
#ifndef ACD_ROUTER_H
#define ACD_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cc/cc_metrics.h"
#include "cc/cc_redis.h"
#include "rpc.pb-c.h"

typedef struct _acd_router_t acd_router_t;

/* One action from the script: argv[0] is its kind ("offer", "agent", ...). */
typedef void (acd_action_fn)(void *arg, int argc, const char *const *argv);
/* The operation's outcome, after its actions: STATUS_OK or the script's
 * error (BAD_REQUEST, NOT_FOUND, CONFLICT; UNAVAILABLE when Redis is down,
 * INTERNAL when the script failed) with its text (valid during the call). */
typedef void (acd_done_fn)(void *arg, Cc__Status status, const char *error);

/* Borrows redis (and loop, may be NULL) for its life. Never NULL. With a
 * loop, a batch is sent without waiting for its reply: the loop reads it
 * when it comes, and the operations queued meanwhile go next, or before it
 * comes once they fill a batch. metrics (may be NULL) gets the batches'
 * counters. */
acd_router_t *acd_router_new(cc_redis_t *redis, uv_loop_t *loop, cc_metrics_t *metrics);
void acd_router_destroy(acd_router_t **self_p);

/* Queues operation op at now_ms with args (copied). request_id (may be NULL
 * or empty: no idempotence) names the request it serves; retried: the
 * request may have run already (a retry, maybe through another instance),
 * so its first outcome is looked for (only retries pay for the lookup). fn
 * gets the actions and done the outcome, both at the next flush. */
void acd_router_submit(acd_router_t *self, int64_t now_ms, const char *request_id, bool retried, const char *op,
                       int argc, const char *const *args, acd_action_fn *fn, acd_done_fn *done, void *arg);
/* Delivers the batches whose replies are in, then sends the queued
 * operations as one batch: at once when none is out, else once they are a
 * full batch (or when the replies are in). Without a loop, the same as
 * flush. Several batches may be out: Redis runs them in order, and their
 * results are delivered in that order. */
void acd_router_kick(acd_router_t *self);
/* Runs every queued operation (and the batch out) now, waiting for Redis,
 * and calls their callbacks. Plain Redis commands may follow. */
void acd_router_flush(acd_router_t *self);
int acd_router_pending(acd_router_t *self);

/* Submits (without a request id) and flushes at once. Returns the status;
 * *error_p points to the error text until the next call. */
Cc__Status acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
                          const char *const *args, acd_action_fn *fn, void *arg, const char **error_p);

/* Marks this version's library in use (acd:lib:<library>, for mark_s
 * seconds) and removes the libraries of other acd versions that no running
 * acd has marked: those left by an upgrade. Returns how many it removed,
 * -1 when Redis could not be asked. */
int acd_router_housekeep(acd_router_t *self, int mark_s);

#endif
