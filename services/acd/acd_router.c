/* acd_router: runs acd.lua, a batch of operations per call, and hands their
 * actions to the caller. */
#include "acd_router.h"
#include "cc/cc_log.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char acd_lua[];   /* acd.lua, embedded by the build */

#define MAX_ARGS 24

typedef struct {
    acd_action_fn *fn;
    acd_done_fn *done;
    void *arg;
    char *argv[MAX_ARGS + 4];  /* field count, request id, op, time, args */
    int argc;
} op_t;

struct _acd_router_t {
    cc_redis_t *redis;
    op_t *ops;
    int nops, cap;
    char error[256];
};

acd_router_t *
acd_router_new(cc_redis_t *redis)
{
    acd_router_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->redis = redis;
    cc_redis_script(redis, "acd", acd_lua);
    return self;
}

static void
s_op_free(op_t *op)
{
    for (int i = 0; i < op->argc; i++) free(op->argv[i]);
}

void
acd_router_destroy(acd_router_t **self_p)
{
    if (!self_p || !*self_p) return;
    acd_router_t *self = *self_p;
    acd_router_flush(self);
    free(self->ops);
    free(self);
    *self_p = NULL;
}

static Cc__Status
s_status(const char *code)
{
    if (strcmp(code, "not_found") == 0) return CC__STATUS__STATUS_NOT_FOUND;
    if (strcmp(code, "conflict") == 0 || strcmp(code, "full") == 0 || strcmp(code, "empty") == 0
        || strcmp(code, "closed") == 0)
        return CC__STATUS__STATUS_CONFLICT;
    if (strcmp(code, "internal") == 0) return CC__STATUS__STATUS_INTERNAL;
    return CC__STATUS__STATUS_BAD_REQUEST;
}

/* Hands one operation's result (its list of actions; NULL when Redis could
 * not be reached, an error reply when the script failed) to its callbacks. */
static void
s_deliver(acd_router_t *self, op_t *op, redisReply *r)
{
    Cc__Status status = CC__STATUS__STATUS_OK;
    const char *error = NULL;
    if (!r) {
        status = CC__STATUS__STATUS_UNAVAILABLE;
        error = "redis unavailable";
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(self->error, sizeof self->error, "%s", r->str);
        status = CC__STATUS__STATUS_INTERNAL;
        error = self->error;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *a = r->element[i];
            if (a->type != REDIS_REPLY_ARRAY || a->elements == 0) continue;
            const char *v[16];
            int n = 0;
            for (size_t j = 0; j < a->elements && n < 16; j++)
                v[n++] = a->element[j]->type == REDIS_REPLY_STRING ? a->element[j]->str : "";
            if (strcmp(v[0], "error") == 0 && n >= 3) {
                status = s_status(v[1]);
                if (status == CC__STATUS__STATUS_INTERNAL)
                    CC_ERROR("acd operation failed in the script", "op=%s error=\"%s\"", op->argv[2], v[2]);
                snprintf(self->error, sizeof self->error, "%s", v[2]);
                error = self->error;
                continue;
            }
            if (op->fn) op->fn(op->arg, n, v);
        }
    }
    if (op->done) op->done(op->arg, status, error);
}

void
acd_router_submit(acd_router_t *self, int64_t now_ms, const char *request_id, const char *op_name, int argc,
                  const char *const *args, acd_action_fn *fn, acd_done_fn *done, void *arg)
{
    assert(argc <= MAX_ARGS && "too many script arguments");
    if (self->nops == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->ops = realloc(self->ops, (size_t) self->cap * sizeof *self->ops);
        if (!self->ops) abort();
    }
    op_t *op = &self->ops[self->nops++];
    memset(op, 0, sizeof *op);
    op->fn = fn;
    op->done = done;
    op->arg = arg;
    char count[16], now[32];
    snprintf(count, sizeof count, "%d", argc + 3);
    snprintf(now, sizeof now, "%lld", (long long) now_ms);
    op->argv[op->argc++] = strdup(count);
    op->argv[op->argc++] = strdup(request_id ? request_id : "");
    op->argv[op->argc++] = strdup(op_name);
    op->argv[op->argc++] = strdup(now);
    for (int i = 0; i < argc; i++) op->argv[op->argc++] = strdup(args[i] ? args[i] : "");
    for (int i = 0; i < op->argc; i++) if (!op->argv[i]) abort();
}

void
acd_router_flush(acd_router_t *self)
{
    int n = self->nops;
    if (n == 0) return;
    /* The callbacks may submit again: take the batch first. */
    op_t *ops = self->ops;
    self->ops = NULL;
    self->nops = self->cap = 0;
    size_t nargs = 1;
    for (int i = 0; i < n; i++) nargs += (size_t) ops[i].argc;
    const char **argv = malloc(nargs * sizeof *argv);
    if (!argv) abort();
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    size_t at = 0;
    argv[at++] = count;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ops[i].argc; j++) argv[at++] = ops[i].argv[j];
    /* cc_redis_eval sends the batch once more after a broken connection:
     * operations with a request id then return their first outcome. */
    redisReply *r = cc_redis_eval(self->redis, "acd", 0, NULL, (int) nargs, argv);
    free(argv);
    if (r && r->type == REDIS_REPLY_ERROR)
        CC_ERROR("acd script failed", "ops=%d first=%s error=\"%s\"", n, ops[0].argv[2], r->str);
    bool whole = r && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t) n;
    if (r && r->type == REDIS_REPLY_ARRAY && !whole)
        CC_ERROR("acd script returned a short batch", "ops=%d results=%zu", n, r->elements);
    for (int i = 0; i < n; i++) {
        redisReply *one = whole ? r->element[i] : r && r->type == REDIS_REPLY_ERROR ? r : NULL;
        s_deliver(self, &ops[i], one);
        s_op_free(&ops[i]);
    }
    if (r) freeReplyObject(r);
    free(ops);
}

int acd_router_pending(acd_router_t *self) { return self->nops; }

typedef struct { acd_action_fn *fn; void *arg; Cc__Status status; char error[256]; } run_t;

static void
s_run_action(void *arg, int argc, const char *const *argv)
{
    run_t *r = arg;
    if (r->fn) r->fn(r->arg, argc, argv);
}

static void
s_run_done(void *arg, Cc__Status status, const char *error)
{
    run_t *r = arg;
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
}

Cc__Status
acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
               const char *const *args, acd_action_fn *fn, void *arg, const char **error_p)
{
    run_t r = { fn, arg, CC__STATUS__STATUS_INTERNAL, "" };
    acd_router_submit(self, now_ms, NULL, op, argc, args, s_run_action, s_run_done, &r);
    acd_router_flush(self);
    snprintf(self->error, sizeof self->error, "%s", r.error);
    *error_p = self->error;
    return r.status;
}
