/* acd_router: runs acd.lua and hands its actions to the caller. */
#include "acd_router.h"
#include "cc/cc_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char acd_lua[];   /* acd.lua, embedded by the build */

struct _acd_router_t {
    cc_redis_t *redis;
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

void
acd_router_destroy(acd_router_t **self_p)
{
    if (!self_p || !*self_p) return;
    free(*self_p);
    *self_p = NULL;
}

static Cc__Status
s_status(const char *code)
{
    if (strcmp(code, "not_found") == 0) return CC__STATUS__STATUS_NOT_FOUND;
    if (strcmp(code, "conflict") == 0 || strcmp(code, "full") == 0) return CC__STATUS__STATUS_CONFLICT;
    return CC__STATUS__STATUS_BAD_REQUEST;
}

Cc__Status
acd_router_run(acd_router_t *self, int64_t now_ms, const char *op, int argc,
               const char *const *args, acd_action_fn *fn, void *arg, const char **error_p)
{
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long) now_ms);
    const char *argv[40];
    if (argc > 38) argc = 38;
    argv[0] = op;
    argv[1] = now;
    for (int i = 0; i < argc; i++) argv[2 + i] = args[i] ? args[i] : "";
    *error_p = NULL;
    redisReply *r = cc_redis_eval(self->redis, "acd", 0, NULL, argc + 2, argv);
    if (!r) {
        *error_p = "redis unavailable";
        return CC__STATUS__STATUS_UNAVAILABLE;
    }
    Cc__Status status = CC__STATUS__STATUS_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        CC_ERROR("acd script failed", "op=%s error=\"%s\"", op, r->str);
        snprintf(self->error, sizeof self->error, "%s", r->str);
        *error_p = self->error;
        status = CC__STATUS__STATUS_INTERNAL;
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
                *error_p = self->error;
                continue;
            }
            if (fn) fn(arg, n, v);
        }
    }
    freeReplyObject(r);
    return status;
}
