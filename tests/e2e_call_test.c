/* e2e_call_test: a call through the whole path, every part real.
 *
 * A SIPp caller dials 100, routed by the gateway to acd's "sales" queue. The
 * agent's phone (SIPp) registered with digest authentication (a wrong
 * password is refused); the agent logged in to acd. acd reserves the agent,
 * asks the gateway to ring the phone; the phone answers; the gateway bridges
 * the legs and tells acd; RTP flows both ways (packet counts on both legs in
 * the CDRs); the caller hangs up; the agent's phone gets its BYE and the
 * agent goes through wrap-up to ready. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CC_SOURCE_DIR
#error "CC_SOURCE_DIR must be defined"
#endif

static cc_harness_t *s_h;
static int s_sip_port;

static pid_t
s_sipp(const char *label, const char *scenario, const char *service, const char *const *extra)
{
    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/services/gateway/tests/sipp/%s.xml", CC_SOURCE_DIR, scenario);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    snprintf(lp, sizeof lp, "%d", cc_harness_free_ports(1));
    snprintf(mp, sizeof mp, "%d", cc_harness_free_ports(3));   /* SIPp binds mp and mp + 2 */
    const char *args[32] = { "-sf", sf, "-s", service, "-m", "1", "-p", lp, "-mp", mp, "-nostdin",
                             "-timeout", "60s", "-timeout_error" };
    int n = 14;
    for (; extra && *extra && n < 30; extra++) args[n++] = *extra;
    args[n++] = remote;
    args[n] = NULL;
    return cc_harness_spawn_as(s_h, label, "/usr/bin/sipp", args);
}

static int
s_wait(pid_t pid, int ms)
{
    int status = cc_harness_stop(s_h, pid, 0, ms);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
s_sql(cc_pg_t *pg, const char *sql)
{
    CHECK(cc_pg_run(pg, sql, NULL) == 0, "%s: %s", sql, cc_pg_error(pg));
}

static char *
s_agent_state(cc_redis_t *r)
{
    redisReply *rep = cc_redis_cmdf(r, "HGET acd:agent:1001 state");
    char *st = strdup(rep && rep->type == REDIS_REPLY_STRING ? rep->str : "?");
    if (rep) freeReplyObject(rep);
    return st;
}

int
main(void)
{
    cc_log_init("e2e_call_test", "e2e_call_test");
    TEST_BEGIN("caller_reaches_a_registered_agent_through_acd_and_audio_flows_both_ways");
    s_h = cc_harness_new("e2e");
    cc_harness_start_pg(s_h);
    cc_harness_start_redis(s_h);
    cc_harness_start_forwarder(s_h, false, 100000);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(pg) == 0, "pg");
    CHECK(cc_pg_migrate(pg, "acd", CC_SOURCE_DIR "/services/acd/sql", NULL) == 0, "acd migrations");
    CHECK(cc_pg_migrate(pg, "gateway", CC_SOURCE_DIR "/services/gateway/sql", NULL) == 0, "gateway migrations");
    s_sql(pg, "INSERT INTO acd.queues (name, skills, wrap_up_ms, offer_timeout_ms) VALUES ('sales', 'sales:1', 1500, 20000)");
    s_sql(pg, "INSERT INTO acd.agents (id, extension, skills, queues) VALUES ('1001', '1001', 'sales:3', 'sales')");
    s_sql(pg, "INSERT INTO telephony.sip_users (username, ha1) VALUES ('1001', md5('1001:callcenter:secret1001'))");

    cc_callpath_t path;
    cc_harness_start_callpath(s_h, &path, "100=queue:sales", 33000 + (getpid() % 30) * 100);
    s_sip_port = path.sip_port;
    const char *acd_rpc = path.acd_rpc;

    cc_bus_opts_t bo = { .service = "test", .instance = "e2e", .sub_endpoint = getenv("CC_BUS_SUB") };
    cc_bus_t *events = cc_bus_new(&bo);
    cc_bus_subscribe(events, "queue.answered");
    cc_bus_subscribe(events, "call.bridged");

    /* The phone: its SIP port answers calls; another SIPp registers it there. */
    char phone_port[16];
    snprintf(phone_port, sizeof phone_port, "%d", cc_harness_free_ports(1));
    char phone_media[16];
    snprintf(phone_media, sizeof phone_media, "%d", cc_harness_free_ports(3));
    const char *phone_args[] = { "-p", phone_port, "-mp", phone_media, NULL };
    char sf[512], remote[64];
    snprintf(sf, sizeof sf, "%s/services/gateway/tests/sipp/uas_agent.xml", CC_SOURCE_DIR);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    const char *uas[] = { "-sf", sf, "-m", "1", "-p", phone_port, "-mp", phone_media, "-nostdin", "-timeout", "60s",
                          "-timeout_error", remote, NULL };
    (void) phone_args;
    pid_t phone = cc_harness_spawn_as(s_h, "sipp-phone", "/usr/bin/sipp", uas);

    const char *bad[] = { "-au", "1001", "-ap", "wrong", "-key", "contact_port", phone_port, NULL };
    CHECK(s_wait(s_sipp("sipp-register-bad", "register_bad", "1001", bad), 30000) == 0, "a wrong password gets 403");
    const char *good[] = { "-au", "1001", "-ap", "secret1001", "-key", "contact_port", phone_port, NULL };
    CHECK(s_wait(s_sipp("sipp-register", "register", "1001", good), 30000) == 0, "registered with the right password");

    cc_rpc_client_opts_t ro = { .endpoint = acd_rpc, .source = "e2e", .retry_ms = 300, .max_attempts = 3 };
    cc_rpc_client_t *acd = cc_rpc_client_new(&ro);
    Cc__AgentLogin login = CC__AGENT_LOGIN__INIT;
    login.agent_id = "1001";
    uint8_t buf[128];
    size_t len = cc__agent_login__pack(&login, buf);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(acd, "agent.login", buf, len, 5000, &reply) == 0 && reply->status == 0, "agent login");
    cc__reply__free_unpacked(reply, NULL);

    CHECK(s_wait(s_sipp("sipp-caller", "uac_queue", "100", NULL), 60000) == 0, "the caller's call");
    CHECK(s_wait(phone, 30000) == 0, "the phone rang, answered and got the BYE (see %s)", cc_harness_dir(s_h));

    Cc__Envelope *env = NULL;
    bool answered = false, bridged = false;
    for (int i = 0; i < 50 && !(answered && bridged); i++)
        if (cc_bus_recv(events, &env, 100) == 0) {
            answered |= strcmp(env->type, "queue.answered") == 0;
            bridged |= strcmp(env->type, "call.bridged") == 0;
            cc__envelope__free_unpacked(env, NULL);
        }
    CHECK(answered && bridged, "events: queue.answered %d, call.bridged %d", answered, bridged);

    /* Both legs' CDRs, with audio counted both ways. */
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(pg, "SELECT leg, sip_cause, hangup_by, rtp_sent, rtp_received FROM telephony.cdr"
                            " WHERE caller = '13800138009' ORDER BY leg", &res) == 0, "cdr query");
        if (PQntuples(res) == 2) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 2, "two legs, got %d", PQntuples(res));
    CHECK(strcmp(PQgetvalue(res, 0, 0), "agent") == 0 && strcmp(PQgetvalue(res, 1, 0), "caller") == 0, "legs");
    long agent_sent = atol(PQgetvalue(res, 0, 3)), agent_recv = atol(PQgetvalue(res, 0, 4));
    long caller_sent = atol(PQgetvalue(res, 1, 3)), caller_recv = atol(PQgetvalue(res, 1, 4));
    printf("agent leg: sent %ld received %ld; caller leg: sent %ld received %ld\n", agent_sent, agent_recv,
           caller_sent, caller_recv);
    CHECK(agent_sent >= 10, "the caller's packets reached the agent: %ld", agent_sent);
    CHECK(agent_recv >= 10, "the agent's packets reached the gateway: %ld", agent_recv);
    CHECK(caller_sent >= agent_recv, "the agent's packets were relayed to the caller (%ld >= %ld)", caller_sent, agent_recv);
    CHECK(strcmp(PQgetvalue(res, 1, 2), "caller") == 0, "the caller hung up");
    PQclear(res);

    /* The agent: wrap-up, then ready. */
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    CHECK(cc_redis_connect(r) == 0, "redis");
    char *st = s_agent_state(r);
    CHECK(strcmp(st, "wrap_up") == 0 || strcmp(st, "ready") == 0, "agent after the call: %s", st);
    free(st);
    for (int i = 0; i < 50; i++) {
        st = s_agent_state(r);
        bool ready = strcmp(st, "ready") == 0;
        free(st);
        if (ready) break;
        CHECK(i < 49, "agent never came back from wrap-up");
        cc_sleep_ms(100);
    }
    cc_redis_destroy(&r);
    cc_rpc_client_destroy(&acd);
    cc_bus_destroy(&events);
    cc_pg_destroy(&pg);
    cc_harness_destroy(&s_h);
    cc_log_shutdown();
    TEST_PASS("caller_reaches_a_registered_agent_through_acd_and_audio_flows_both_ways");
    printf("e2e_call_test: 1 passed, 0 failed\n");
    return 0;
}
