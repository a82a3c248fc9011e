/* echo_service: a small service on the cc_service skeleton, used by the
 * integration tests to exercise what every real service gets (config,
 * health, metrics, bus, RPC, PostgreSQL, Redis, clean shutdown). */
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"
#include "cc/cc_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cc_cfg_key_t s_keys[] = {
    { "ECHO_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port" },
    { "ECHO_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Endpoint the request server binds" },
    CC_CFG_END
};

static const cc_service_def_t s_def = {
    .name = "echo", .summary = "Test service: echoes requests, counts executions.",
    .keys = s_keys, .admin_port_key = "ECHO_ADMIN_PORT",
    .needs = CC_NEED_BUS | CC_NEED_PG | CC_NEED_REDIS,
};

typedef struct {
    cc_service_t *svc;
    cc_rpc_server_t *rpc;
    int executed;
} echo_t;

typedef struct { uv_timer_t timer; cc_rpc_call_t *call; } deferred_t;

static void
s_echo(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    echo_t *e = arg;
    e->executed++;
    cc_bus_publish(cc_service_bus(e->svc), "echo.done", req->trace_id, req->payload.data, req->payload.len);
    cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, req->payload.data, req->payload.len);
}

static void
s_count(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    echo_t *e = arg;
    char text[32];
    int n = snprintf(text, sizeof text, "%d", e->executed);
    cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, text, (size_t) n);
}

static void s_closed(uv_handle_t *h) { free(h); }

static void
s_on_deferred(uv_timer_t *t)
{
    deferred_t *d = (deferred_t *) t;
    cc_rpc_reply(d->call, CC__STATUS__STATUS_OK, NULL, "slow", 4);
    uv_close((uv_handle_t *) t, s_closed);
}

/* Replies after the number of milliseconds in the payload. */
static void
s_slow(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    echo_t *e = arg;
    e->executed++;
    char text[16] = "";
    snprintf(text, sizeof text, "%.*s", (int) req->payload.len, (const char *) req->payload.data);
    long ms = strtol(text, NULL, 10);
    if (ms < 0 || ms > 60000) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "delay out of range", NULL, 0);
        return;
    }
    deferred_t *d = calloc(1, sizeof *d);
    d->call = call;
    uv_timer_init(cc_loop_uv(cc_service_loop(e->svc)), &d->timer);
    uv_timer_start(&d->timer, s_on_deferred, (uint64_t) ms, 0);
}

/* Dies in the middle of handling: the caller must get a timeout. */
static void
s_die(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    CC_WARN("dying mid-request as asked", "request_id=%s", req->request_id);
    _exit(3);
}

static void
s_pg(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    echo_t *e = arg;
    PGresult *res = NULL;
    if (cc_pg_exec(cc_service_pg(e->svc), "echo_now", 0, NULL, &res)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, cc_pg_error(cc_service_pg(e->svc)), NULL, 0);
        return;
    }
    const char *v = PQgetvalue(res, 0, 0);
    cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, v, strlen(v));
    PQclear(res);
}

static void
s_redis(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    echo_t *e = arg;
    const char *keys[] = { "echo:counter" };
    redisReply *r = cc_redis_eval(cc_service_redis(e->svc), "incr", 1, keys, 0, NULL);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "redis", NULL, 0);
    } else {
        char text[32];
        int n = snprintf(text, sizeof text, "%lld", r->integer);
        cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, text, (size_t) n);
    }
    if (r) freeReplyObject(r);
}

static const cc_rpc_method_t s_methods[] = {
    { "echo.echo", s_echo, "replies with the payload and publishes echo.done" },
    { "echo.count", s_count, "replies with the number of executions" },
    { "echo.slow", s_slow, "replies after <payload> ms" },
    { "echo.die", s_die, "exits mid-request" },
    { "echo.pg", s_pg, "replies with the database time" },
    { "echo.redis", s_redis, "increments a counter with a Lua script" },
    CC_RPC_METHODS_END
};

int
main(int argc, char **argv)
{
    int code;
    cc_service_t *svc = cc_service_new(&s_def, argc, argv, &code);
    if (!svc) return code;
    echo_t e = { .svc = svc };
    e.rpc = cc_rpc_server_new(cc_cfg_str(cc_service_cfg(svc), "ECHO_RPC"), s_methods, &e, cc_service_metrics(svc));
    int rc = 1;
    if (e.rpc) {
        cc_pg_statement(cc_service_pg(svc), "echo_now", "SELECT 'pg-ok'");
        cc_redis_script(cc_service_redis(svc), "incr", "return redis.call('INCR', KEYS[1])");
        cc_rpc_server_attach(e.rpc, cc_service_loop(svc));
        rc = cc_service_run(svc);
    }
    cc_rpc_server_destroy(&e.rpc);
    cc_service_destroy(&svc);
    return rc;
}
