/* redis_restart_test: Redis loses the live state while a caller waits.
 *
 * A SIPp caller dials a queue with no agent; acd holds the call in Redis.
 * Redis restarts empty. acd notices, loads the queues again and publishes
 * acd.rebuilt; the gateway, which still has the caller, enqueues it again:
 * the call is back in its queue in Redis, nobody hung up. The caller is then
 * released through the media API and the call leaves acd's state. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "media.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CC_SOURCE_DIR
#error "CC_SOURCE_DIR must be defined"
#endif

static bool
s_waiting(cc_redis_t *r, const char *call_id)
{
    redisReply *rep = cc_redis_cmdf(r, "ZSCORE acd:queue:sales:wait %s", call_id);
    bool there = rep && rep->type == REDIS_REPLY_STRING;
    if (rep) freeReplyObject(rep);
    return there;
}

int
main(void)
{
    cc_log_init("redis_restart_test", "redis_restart_test");
    TEST_BEGIN("waiting_caller_survives_a_redis_restart");
    cc_harness_t *h = cc_harness_new("redis-restart");
    cc_harness_start_pg(h);
    cc_harness_start_redis(h);
    cc_harness_start_forwarder(h, false, 100000);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(pg) == 0, "pg");
    CHECK(cc_pg_migrate(pg, "acd", CC_SOURCE_DIR "/services/acd/sql", NULL) == 0, "acd sql");
    CHECK(cc_pg_migrate(pg, "gateway", CC_SOURCE_DIR "/services/gateway/sql", NULL) == 0, "gateway sql");
    CHECK(cc_pg_run(pg, "INSERT INTO acd.queues (name) VALUES ('sales')", NULL) == 0, "queue");
    cc_pg_destroy(&pg);

    cc_callpath_t path;
    cc_harness_start_callpath(h, &path, "100=queue:sales", 36000 + (getpid() % 30) * 100);
    int sip = path.sip_port;
    const char *gw_rpc = path.gw_rpc;

    cc_bus_opts_t bo = { .service = "test", .instance = "rr", .sub_endpoint = getenv("CC_BUS_SUB") };
    cc_bus_t *bus = cc_bus_new(&bo);
    cc_bus_subscribe(bus, "call.started");
    cc_bus_subscribe(bus, "acd.rebuilt");
    cc_sleep_ms(2000);   /* acd's first epoch check (a fresh Redis) has passed */
    Cc__Envelope *env;
    while (cc_bus_recv(bus, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);

    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/services/gateway/tests/sipp/uac_ivr.xml", CC_SOURCE_DIR);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", sip);
    snprintf(lp, sizeof lp, "%d", cc_harness_free_port());
    snprintf(mp, sizeof mp, "%d", 47000 + (getpid() % 90) * 10);
    const char *args[] = { "-sf", sf, "-s", "100", "-m", "1", "-p", lp, "-mp", mp, "-nostdin", "-timeout", "60s",
                           "-timeout_error", remote, NULL };
    pid_t caller = cc_harness_spawn_as(h, "sipp-caller", "/usr/bin/sipp", args);
    char call_id[64] = "";
    for (int i = 0; i < 50 && !call_id[0]; i++)
        if (cc_bus_recv(bus, &env, 100) == 0) {
            if (strcmp(env->type, "call.started") == 0) snprintf(call_id, sizeof call_id, "%s", env->trace_id);
            cc__envelope__free_unpacked(env, NULL);
        }
    CHECK(call_id[0], "call started");
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(cc_redis_connect(r) == 0, "redis");
    for (int i = 0; i < 50 && !s_waiting(r, call_id); i++) cc_sleep_ms(100);
    CHECK(s_waiting(r, call_id), "the caller waits in sales");

    cc_harness_restart_redis(h);
    CHECK(!s_waiting(r, call_id), "Redis came back empty");
    bool rebuilt = false;
    for (int i = 0; i < 100 && !(rebuilt && s_waiting(r, call_id)); i++) {
        if (cc_bus_recv(bus, &env, 50) == 0) {
            rebuilt |= strcmp(env->type, "acd.rebuilt") == 0;
            cc__envelope__free_unpacked(env, NULL);
        }
    }
    CHECK(rebuilt, "acd published acd.rebuilt");
    CHECK(s_waiting(r, call_id), "the gateway's caller is back in its queue");

    cc_sleep_ms(2500);   /* the caller's scenario has reached its wait for the BYE */
    CHECK(s_waiting(r, call_id), "still waiting in its queue");
    cc_rpc_client_opts_t o = { .endpoint = gw_rpc, .source = "rr", .retry_ms = 2000, .max_attempts = 2 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__MediaHangup hang = CC__MEDIA_HANGUP__INIT;
    hang.call_id = call_id;
    hang.reason = "test over";
    uint8_t buf[256];
    size_t len = cc__media_hangup__pack(&hang, buf);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(c, "media.hangup", buf, len, 5000, &reply) == 0 && reply->status == 0, "hangup");
    cc__reply__free_unpacked(reply, NULL);
    int status = cc_harness_stop(h, caller, 0, 30000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the caller stayed on the line until the BYE");
    for (int i = 0; i < 50 && s_waiting(r, call_id); i++) cc_sleep_ms(100);
    CHECK(!s_waiting(r, call_id), "the ended call left acd's state");
    cc_rpc_client_destroy(&c);
    cc_redis_destroy(&r);
    cc_bus_destroy(&bus);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    TEST_PASS("waiting_caller_survives_a_redis_restart");
    printf("redis_restart_test: 1 passed, 0 failed\n");
    return 0;
}
