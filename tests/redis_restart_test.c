/* redis_restart_test: Redis loses the live state while a caller waits.
 *
 * Two agents are logged in: one in sales gone not_ready (lunch), one ready
 * in support. A SIPp caller dials sales; acd holds the call in Redis. Redis
 * restarts empty. acd notices, loads the queues again, puts the agents'
 * sessions back from PostgreSQL (each in the state it asked for last) and
 * publishes acd.rebuilt; the gateway, which still has the caller, enqueues
 * it again: the call is back in its queue in Redis, nobody hung up. The
 * sales agent comes back from lunch and is offered the call at once. The
 * caller is then released through the media API and the call leaves acd's
 * state. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "media.pb-c.h"
#include "queue.pb-c.h"

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

/* The agent's state and reason in Redis ("" when absent). */
static void
s_agent(cc_redis_t *r, const char *agent, char *state, char *reason, char *queues)
{
    redisReply *rep = cc_redis_cmdf(r, "HMGET acd:agent:%s state reason queues", agent);
    state[0] = reason[0] = queues[0] = '\0';
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3) {
        if (rep->element[0]->type == REDIS_REPLY_STRING) snprintf(state, 32, "%s", rep->element[0]->str);
        if (rep->element[1]->type == REDIS_REPLY_STRING) snprintf(reason, 32, "%s", rep->element[1]->str);
        if (rep->element[2]->type == REDIS_REPLY_STRING) snprintf(queues, 64, "%s", rep->element[2]->str);
    }
    if (rep) freeReplyObject(rep);
}

static int
s_ask(cc_rpc_client_t *c, const char *method, const ProtobufCMessage *m)
{
    uint8_t buf[512];
    size_t len = protobuf_c_message_pack(m, buf);
    Cc__Reply *reply = NULL;
    if (cc_rpc_call_sync(c, method, buf, len, 5000, &reply)) return -1;
    int st = reply->status;
    cc__reply__free_unpacked(reply, NULL);
    return st;
}

static int
s_login(cc_rpc_client_t *c, const char *agent, const char *queue)
{
    Cc__AgentLogin m = CC__AGENT_LOGIN__INIT;
    Cc__AgentSkill sk = CC__AGENT_SKILL__INIT, *skp[] = { &sk };
    char *queues[] = { (char *) queue };
    sk.name = "english";
    sk.level = 3;
    m.agent_id = (char *) agent;
    m.extension = (char *) agent;
    m.skills = skp;
    m.n_skills = 1;
    m.queues = queues;
    m.n_queues = 1;
    return s_ask(c, "agent.login", &m.base);
}

static int
s_set_state(cc_rpc_client_t *c, const char *agent, Cc__AgentState state, const char *reason)
{
    Cc__AgentSetState m = CC__AGENT_SET_STATE__INIT;
    m.agent_id = (char *) agent;
    m.state = state;
    m.reason = (char *) reason;
    return s_ask(c, "agent.set_state", &m.base);
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
    CHECK(cc_pg_run(pg, "INSERT INTO acd.queues (name) VALUES ('sales'), ('support')", NULL) == 0, "queues");
    cc_pg_destroy(&pg);

    cc_callpath_t path;
    cc_harness_start_callpath(h, &path, "100=queue:sales", 36000 + (getpid() % 30) * 100);
    int sip = path.sip_port;
    const char *gw_rpc = path.gw_rpc;

    cc_bus_opts_t bo = { .service = "test", .instance = "rr", .sub_endpoint = getenv("CC_BUS_SUB") };
    cc_bus_t *bus = cc_bus_new(&bo);
    cc_bus_subscribe(bus, "call.started");
    cc_bus_subscribe(bus, "acd.rebuilt");
    cc_bus_subscribe(bus, "queue.offered");
    cc_sleep_ms(2000);   /* acd's first epoch check (a fresh Redis) has passed */
    cc_rpc_client_opts_t ao = { .endpoint = path.acd_rpc, .source = "rr", .retry_ms = 2000, .max_attempts = 2 };
    cc_rpc_client_t *acd = cc_rpc_client_new(&ao);
    CHECK(s_login(acd, "rr-sales", "sales") == 0, "sales agent logged in");
    CHECK(s_set_state(acd, "rr-sales", CC__AGENT_STATE__AGENT_NOT_READY, "lunch") == 0, "sales agent at lunch");
    CHECK(s_login(acd, "rr-support", "support") == 0, "support agent logged in, ready");
    Cc__Envelope *env;
    while (cc_bus_recv(bus, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);

    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/services/gateway/tests/sipp/uac_ivr.xml", CC_SOURCE_DIR);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", sip);
    snprintf(lp, sizeof lp, "%d", cc_harness_free_ports(1));
    snprintf(mp, sizeof mp, "%d", cc_harness_free_ports(3));   /* SIPp binds mp and mp + 2 */
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
    char state[32], reason[32], queues[64];
    s_agent(r, "rr-sales", state, reason, queues);
    CHECK(strcmp(state, "not_ready") == 0 && strcmp(reason, "lunch") == 0 && strcmp(queues, "sales") == 0,
          "the sales agent is back, still at lunch (%s, %s, in %s)", state, reason, queues);
    /* Ready after the hold that lets an offer Redis forgot come back. */
    for (int i = 0; i < 100; i++) {
        s_agent(r, "rr-support", state, reason, queues);
        if (strcmp(state, "ready") == 0) break;
        CHECK(strcmp(state, "not_ready") == 0 && strcmp(reason, "restoring") == 0, "held meanwhile (%s %s)", state, reason);
        cc_sleep_ms(100);
    }
    CHECK(strcmp(state, "ready") == 0 && strcmp(queues, "support") == 0, "the support agent is back ready (%s, in %s)",
          state, queues);
    redisReply *lvl = cc_redis_cmdf(r, "HGET acd:agent:rr-sales:skills english");
    CHECK(lvl && lvl->type == REDIS_REPLY_STRING && strcmp(lvl->str, "3") == 0, "with their skills");
    freeReplyObject(lvl);

    cc_sleep_ms(2500);   /* the caller's scenario has reached its wait for the BYE */
    CHECK(s_waiting(r, call_id), "still waiting in its queue");
    CHECK(s_set_state(acd, "rr-sales", CC__AGENT_STATE__AGENT_READY, "") == 0, "the sales agent is back from lunch");
    bool offered = false;
    for (int i = 0; i < 50 && !offered; i++)
        if (cc_bus_recv(bus, &env, 100) == 0) {
            if (strcmp(env->type, "queue.offered") == 0) {
                Cc__QueueOffered *o = cc__queue_offered__unpack(NULL, env->payload.len, env->payload.data);
                offered = o && strcmp(o->call_id, call_id) == 0 && strcmp(o->agent_id, "rr-sales") == 0;
                if (o) cc__queue_offered__free_unpacked(o, NULL);
            }
            cc__envelope__free_unpacked(env, NULL);
        }
    CHECK(offered, "the waiting call is offered to the restored sales agent");
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
    cc_rpc_client_destroy(&acd);
    cc_redis_destroy(&r);
    cc_bus_destroy(&bus);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    TEST_PASS("waiting_caller_survives_a_redis_restart");
    printf("redis_restart_test: 1 passed, 0 failed\n");
    return 0;
}
