/* cc_redis: one Redis connection (hiredis) with reconnect and Lua scripts.
 *
 * A command that fails on a broken connection reconnects with backoff (up to
 * the reconnect budget) and is sent once more. Scripts and function libraries
 * are registered by name and run with EVALSHA or FCALL; after a Redis restart
 * (NOSCRIPT, function not found) they are loaded again and run. Not
 * thread-safe: one per thread. */
#ifndef CC_REDIS_H
#define CC_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "cc/cc_metrics.h"

typedef struct _cc_redis_t cc_redis_t;

/* url: redis://[:password@]host[:port][/db]. NULL for a malformed url.
 * Does not connect yet. */
cc_redis_t *cc_redis_new(const char *url, int reconnect_ms, cc_metrics_t *metrics);
void cc_redis_destroy(cc_redis_t **self_p);

/* Connects (AUTH and SELECT as the url says). Returns 0 or CC_ECONN. */
int cc_redis_connect(cc_redis_t *self);
bool cc_redis_healthy(cc_redis_t *self);
int cc_redis_ping(cc_redis_t *self);
/* For health probes: one PING or one reconnect attempt, no backoff. */
int cc_redis_check(cc_redis_t *self);

/* Runs a command given as an argv vector. Returns the reply (caller
 * freeReplyObject()s) or NULL when Redis could not be reached (logged, see
 * cc_redis_error). An error reply is returned as REDIS_REPLY_ERROR. */
redisReply *cc_redis_cmd(cc_redis_t *self, int argc, const char **argv);
/* printf-style variant: cc_redis_cmdf(r, "HSET %s %s %d", key, field, n). */
redisReply *cc_redis_cmdf(cc_redis_t *self, const char *fmt, ...);

/* Registers a Lua script under name (the text is copied). */
void cc_redis_script(cc_redis_t *self, const char *name, const char *lua);
/* Registers a Lua function library under name, run like a script (by
 * cc_redis_eval and cc_redis_pipeline_eval). Unlike a script's, its body
 * runs once, when Redis loads it: what it builds there (its functions,
 * tables, patterns) is not rebuilt on every call. It is loaded as library
 * "<name>_<digest of body>" with `local FUNCTION_NAME` set to that name,
 * and registers one function of that name. Its top level may use only the
 * `redis` table (Redis's rule for loading). */
void cc_redis_function(cc_redis_t *self, const char *name, const char *body);
/* The library name ("<name>_<digest>") a registered function library is
 * loaded as; NULL for a name not registered as one. */
const char *cc_redis_function_name(cc_redis_t *self, const char *name);
/* Whether r says the script or library is not loaded (NOSCRIPT, or the
 * function not found): after a Redis restart or flush. */
bool cc_redis_reply_unloaded(const redisReply *r);
/* Runs a registered script: keys then args. Same returns as cc_redis_cmd. */
redisReply *cc_redis_eval(cc_redis_t *self, const char *name, int nkeys,
                          const char **keys, int nargs, const char **args);

/* Pipelining: queues a registered script call without waiting (loading the
 * script first when needed). Returns 0, or CC_ECONN when Redis cannot be
 * reached. Replies come back in order from cc_redis_pipeline_reply(). */
int cc_redis_pipeline_eval(cc_redis_t *self, const char *name, int nkeys, const char **keys,
                           int nargs, const char **args);
/* The next reply of the pipeline (caller frees), or NULL when the connection
 * broke (every queued call is then lost: the caller fails them). A not-loaded
 * error reply (cc_redis_reply_unloaded) is returned as is; cc_redis_eval()
 * then runs that call. */
redisReply *cc_redis_pipeline_reply(cc_redis_t *self);
/* Calls queued and not yet read. */
int cc_redis_pipeline_pending(cc_redis_t *self);

/* Pipelining without blocking on the replies, for a caller whose loop
 * watches the connection: cc_redis_fd() is the socket (-1 when not
 * connected; it changes after a reconnect); cc_redis_pipeline_send() writes
 * the queued calls out (0, or CC_ECONN when the connection broke: every
 * queued call is then lost); once the socket is readable,
 * cc_redis_pipeline_poll() reads what arrived and returns 1 with the next
 * reply in *reply_p (caller frees), 0 when it is not complete yet, or
 * CC_ECONN when the connection broke (every queued call lost). */
int cc_redis_fd(cc_redis_t *self);
int cc_redis_pipeline_send(cc_redis_t *self);
int cc_redis_pipeline_poll(cc_redis_t *self, redisReply **reply_p);
/* Whether cc_redis_pipeline_poll() has something to read without blocking
 * (bytes of a reply buffered or arrived, or a broken connection to tell):
 * with several calls out, the next reply may not have come yet, and the
 * socket blocks. */
bool cc_redis_pipeline_ready(cc_redis_t *self);

const char *cc_redis_error(cc_redis_t *self);

void cc_redis_test(void);

#endif
