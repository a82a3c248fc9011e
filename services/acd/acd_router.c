/* acd_router: runs acd.lua, pipelined, and hands its actions to the caller. */
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
    char *argv[MAX_ARGS + 2];  /* kept to run again after NOSCRIPT */
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
    return CC__STATUS__STATUS_BAD_REQUEST;
}

/* Hands one reply's actions and outcome to the op's callbacks. */
static void
s_deliver(acd_router_t *self, op_t *op, redisReply *r)
{
    Cc__Status status = CC__STATUS__STATUS_OK;
    const char *error = NULL;
    if (!r) {
        status = CC__STATUS__STATUS_UNAVAILABLE;
        error = "redis unavailable";
    } else if (r->type == REDIS_REPLY_ERROR) {
        CC_ERROR("acd script failed", "op=%s error=\"%s\"", op->argv[0], r->str);
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
acd_router_submit(acd_router_t *self, int64_t now_ms, const char *op_name, int argc,
                  const char *const *args, acd_action_fn *fn, acd_done_fn *done, void *arg)
{
    assert(argc <= MAX_ARGS && "too many script arguments");
    if (self->nops == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->ops = realloc(self->ops, (size_t) self->cap * sizeof *self->ops);
        if (!self->ops) abort();
    }
    op_t *op = &self->ops[self->nops];
    memset(op, 0, sizeof *op);
    op->fn = fn;
    op->done = done;
    op->arg = arg;
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long) now_ms);
    op->argv[op->argc++] = strdup(op_name);
    op->argv[op->argc++] = strdup(now);
    for (int i = 0; i < argc; i++) op->argv[op->argc++] = strdup(args[i] ? args[i] : "");
    for (int i = 0; i < op->argc; i++) if (!op->argv[i]) abort();
    if (cc_redis_pipeline_eval(self->redis, "acd", 0, NULL, op->argc, (const char **) op->argv)) {
        /* Not queued: fail it now, after the ones already queued (the flush
         * frees the array op points into: copy it first). */
        op_t copy = *op;
        acd_router_flush(self);
        s_deliver(self, &copy, NULL);
        s_op_free(&copy);
        return;
    }
    self->nops++;
}

void
acd_router_flush(acd_router_t *self)
{
    int n = self->nops;
    if (n == 0) return;
    /* Read every reply first: a NOSCRIPT one is run again synchronously,
     * which needs the pipeline empty. */
    redisReply **replies = calloc((size_t) n, sizeof *replies);
    if (!replies) abort();
    for (int i = 0; i < n; i++) {
        replies[i] = cc_redis_pipeline_reply(self->redis);
        if (!replies[i]) break;   /* connection lost: the rest fail */
    }
    op_t *ops = self->ops;
    self->ops = NULL;
    self->nops = self->cap = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = replies[i];
        if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            r = cc_redis_eval(self->redis, "acd", 0, NULL, ops[i].argc, (const char **) ops[i].argv);
        }
        s_deliver(self, &ops[i], r);
        if (r) freeReplyObject(r);
        s_op_free(&ops[i]);
    }
    free(ops);
    free(replies);
}

int acd_router_pending(acd_router_t *self) { return self->nops; }

typedef struct { Cc__Status status; char error[256]; } sync_t;

static void
s_sync_done(void *arg, Cc__Status status, const char *error)
{
    sync_t *s = arg;
    s->status = status;
    snprintf(s->error, sizeof s->error, "%s", error ? error : "");
}

typedef struct { acd_action_fn *fn; void *arg; sync_t sync; } run_t;

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
    s_sync_done(&r->sync, status, error);
}

Cc__Status
acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
               const char *const *args, acd_action_fn *fn, void *arg, const char **error_p)
{
    run_t r = { fn, arg, { CC__STATUS__STATUS_INTERNAL, "" } };
    acd_router_submit(self, now_ms, op, argc, args, s_run_action, s_run_done, &r);
    acd_router_flush(self);
    snprintf(self->error, sizeof self->error, "%s", r.sync.error);
    *error_p = self->error;
    return r.sync.status;
}
