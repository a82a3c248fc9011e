/* callpath_test: calls that leave the inbound path, through acd and the
 * gateway with every part real (SIPp plays the agent's phone, the caller and
 * the customers behind the outbound trunk).
 *
 * A caller asks to be called back; acd keeps the place and, when the agent
 * is free, offers the callback; the gateway rings the agent's phone first,
 * then dials the customer's number and bridges them. A caller talking to an
 * agent is transferred blind to a number, then back to the queue.
 *
 * callback_rings_the_agent_then_the_customer_and_bridges_them
 * busy_customer_fails_the_callback_and_frees_the_agent
 * agent_transfers_the_caller_to_a_number_then_back_to_the_queue
 * originate_rings_a_registered_phone
 * ringing_call_survives_a_redis_restart
 * offer_given_up_by_acd_stops_the_phone_ringing
 * late_answer_is_refused_and_the_agent_leg_dropped */
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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CC_SOURCE_DIR
#error "CC_SOURCE_DIR must be defined"
#endif

static cc_harness_t *s_h;
static int s_sip_port, s_trunk_port;
static char s_phone_port[16];
static cc_pg_t *s_pg;
static cc_bus_t *s_events;
static cc_rpc_client_t *s_acd, *s_gw;
static cc_redis_t *s_redis;

/* SIPp running scenario (services/gateway/tests/sipp) against the gateway. */
static pid_t
s_sipp(const char *label, const char *scenario, const char *service, const char *port, const char *const *extra)
{
    char sf[512], remote[64], lp[16], mp[16];
    snprintf(sf, sizeof sf, "%s/services/gateway/tests/sipp/%s.xml", CC_SOURCE_DIR, scenario);
    snprintf(remote, sizeof remote, "127.0.0.1:%d", s_sip_port);
    snprintf(lp, sizeof lp, "%s", port ? port : "");
    if (!port) snprintf(lp, sizeof lp, "%d", cc_harness_free_ports(1));
    snprintf(mp, sizeof mp, "%d", cc_harness_free_ports(3));   /* SIPp binds mp and mp + 2 */
    const char *args[32] = { "-sf", sf, "-s", service, "-m", "1", "-p", lp, "-mp", mp, "-nostdin",
                             "-timeout", "60s", "-timeout_error" };
    int n = 14;
    for (; extra && *extra && n < 30; extra++) args[n++] = *extra;
    args[n++] = remote;
    args[n] = NULL;
    return cc_harness_spawn_as(s_h, label, "/usr/bin/sipp", args);
}

/* Waits until the SIPp started on port listens (it is called next). */
static void
s_listening(const char *port)
{
    CHECK(cc_harness_wait_udp_bound(atoi(port), 30000), "the SIPp on port %s listens (see %s)", port, cc_harness_dir(s_h));
}

static int
s_wait(pid_t pid, int ms)
{
    int status = cc_harness_stop(s_h, pid, 0, ms);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
s_sql(const char *sql)
{
    CHECK(cc_pg_run(s_pg, sql, NULL) == 0, "%s: %s", sql, cc_pg_error(s_pg));
}

static Cc__Reply *
s_call(cc_rpc_client_t *c, const char *method, const ProtobufCMessage *m)
{
    uint8_t buf[512];
    size_t len = protobuf_c_message_pack(m, buf);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(c, method, buf, len, 10000, &r) == 0, "%s: no reply", method);
    return r;
}

/* The next event of type (about call_id, when given). */
static Cc__Envelope *
s_event(const char *type, const char *call_id, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    Cc__Envelope *env;
    while (cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, type) == 0 && (!call_id || strcmp(env->trace_id, call_id) == 0)) return env;
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no %s event", type);
    return NULL;
}

/* The call id (64 bytes) the next event of type is about. */
static void
s_event_call(const char *type, char *call_id)
{
    Cc__Envelope *env = s_event(type, NULL, 10000);
    snprintf(call_id, 64, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
}

/* A Redis hash field ("" when missing); the caller frees. */
static char *
s_hget(const char *key, const char *field)
{
    redisReply *rep = cc_redis_cmdf(s_redis, "HGET %s %s", key, field);
    char *v = strdup(rep && rep->type == REDIS_REPLY_STRING ? rep->str : "");
    if (rep) freeReplyObject(rep);
    return v;
}

static void
s_wait_agent(const char *want)
{
    for (int i = 0; i < 100; i++) {
        char *st = s_hget("acd:agent:1001", "state");
        bool ok = strcmp(st, want) == 0;
        if (!ok && i == 99) CHECK(0, "agent state %s, want %s", st, want);
        free(st);
        if (ok) return;
        cc_sleep_ms(100);
    }
}

/* Ends call_id through the media API. */
static void
s_hangup(const char *call_id, const char *reason)
{
    Cc__MediaHangup h = CC__MEDIA_HANGUP__INIT;
    h.call_id = (char *) call_id;
    h.reason = (char *) reason;
    Cc__Reply *r = s_call(s_gw, "media.hangup", &h.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "hangup: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
}

/* Agent 1001 ready (asked for when it is not). */
static void
s_agent_ready(void)
{
    char *st = s_hget("acd:agent:1001", "state");
    bool ready = strcmp(st, "ready") == 0;
    free(st);
    if (ready) return;
    Cc__AgentSetState m = CC__AGENT_SET_STATE__INIT;
    m.agent_id = "1001";
    m.state = CC__AGENT_STATE__AGENT_READY;
    Cc__Reply *r = s_call(s_acd, "agent.set_state", &m.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "agent ready: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    s_wait_agent("ready");
}

/* A caller dials the sales queue while no agent is free, asks for a
 * callback to number and hangs up. Returns the call id (static). */
static const char *
s_caller_asks_for_callback(const char *label, const char *number)
{
    static char call_id[64];
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 50) == 0) cc__envelope__free_unpacked(env, NULL);
    pid_t caller = s_sipp(label, "uac_queue", "100", NULL, NULL);
    env = s_event("queue.entered", NULL, 10000);
    snprintf(call_id, sizeof call_id, "%s", env->trace_id);
    cc__envelope__free_unpacked(env, NULL);
    Cc__CallbackRequest cb = CC__CALLBACK_REQUEST__INIT;
    cb.call_id = call_id;
    cb.number = (char *) number;
    Cc__Reply *r = s_call(s_acd, "acd.callback", &cb.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "acd.callback: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    CHECK(s_wait(caller, 30000) == 0, "the caller hung up after asking for the callback");
    return call_id;
}

static void
s_login(void)
{
    Cc__AgentLogin login = CC__AGENT_LOGIN__INIT;
    login.agent_id = "1001";
    Cc__Reply *r = s_call(s_acd, "agent.login", &login.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "agent login: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
}

static void
callback_rings_the_agent_then_the_customer_and_bridges_them(void)
{
    TEST_BEGIN(__func__);
    const char *id = s_caller_asks_for_callback("sipp-caller-1", "5550100");
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", id);
    char tp[16];
    snprintf(tp, sizeof tp, "%d", s_trunk_port);
    pid_t customer = s_sipp("sipp-customer-1", "uas_trunk", "c", tp, NULL);
    const char *echo[] = { "-rtp_echo", NULL };   /* the agent answers what they hear */
    pid_t phone = s_sipp("sipp-phone-1", "uas_agent", "a", s_phone_port, echo);
    s_listening(tp);
    s_listening(s_phone_port);
    s_login();          /* the free agent takes the callback */

    /* The customer answered: acd counts the callback answered, the legs are bridged. */
    bool answered = false, bridged = false;
    int64_t end = cc_mono_ms() + 20000;
    Cc__Envelope *env;
    while (!(answered && bridged) && cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->trace_id, call_id) == 0) {
            answered |= strcmp(env->type, "queue.answered") == 0;
            bridged |= strcmp(env->type, "call.bridged") == 0;
        }
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(answered && bridged, "events: queue.answered %d, call.bridged %d", answered, bridged);
    char *st = s_hget("acd:agent:1001", "state");
    CHECK(strcmp(st, "on_call") == 0, "agent on the callback: %s", st);
    free(st);
    cc_sleep_ms(1500);   /* they talk */
    s_hangup(call_id, "callback done");
    CHECK(s_wait(customer, 30000) == 0, "the customer answered and got the BYE (see %s)", cc_harness_dir(s_h));
    CHECK(s_wait(phone, 30000) == 0, "the agent's phone answered and got the BYE");

    /* Three legs: the original caller, the agent, the customer called back. */
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT leg, dialled, codec, rtp_sent, rtp_received, answered_at IS NOT NULL, reason"
             " FROM telephony.cdr WHERE call_id = '%s' ORDER BY leg", call_id);
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr query");
        if (PQntuples(res) == 3) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 3, "three legs, got %d", PQntuples(res));
    for (int i = 0; i < 3; i++)
        printf("leg %s dialled %s codec %s sent %s received %s answered %s reason '%s'\n", PQgetvalue(res, i, 0),
               PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
               PQgetvalue(res, i, 5), PQgetvalue(res, i, 6));
    /* ORDER BY leg: agent, caller, customer. */
    CHECK(strcmp(PQgetvalue(res, 0, 0), "agent") == 0 && strcmp(PQgetvalue(res, 0, 5), "t") == 0
          && strcmp(PQgetvalue(res, 0, 6), "callback done") == 0, "the agent answered; the leg ended with the call");
    CHECK(strcmp(PQgetvalue(res, 2, 0), "customer") == 0 && strcmp(PQgetvalue(res, 2, 1), "5550100") == 0
          && strcmp(PQgetvalue(res, 2, 2), "PCMA") == 0 && strcmp(PQgetvalue(res, 2, 5), "t") == 0
          && strcmp(PQgetvalue(res, 2, 6), "callback done") == 0, "the customer's number was called and answered");
    long agent_sent = atol(PQgetvalue(res, 0, 3)), agent_recv = atol(PQgetvalue(res, 0, 4));
    long cust_sent = atol(PQgetvalue(res, 2, 3)), cust_recv = atol(PQgetvalue(res, 2, 4));
    /* 1.5 s bridged: 75 packets each way, give or take the set-up (slow
     * under --asan); nothing is relayed before the bridge. */
    CHECK(cust_recv >= 40 && agent_sent >= 30, "the customer's audio reached the agent: received %ld, relayed %ld",
          cust_recv, agent_sent);
    CHECK(agent_recv >= 40 && cust_sent >= 30, "the agent's audio reached the customer: received %ld, relayed %ld",
          agent_recv, cust_sent);
    PQclear(res);
    s_wait_agent("ready");   /* wrap-up, then ready */
    TEST_PASS(__func__);
}

static void
busy_customer_fails_the_callback_and_frees_the_agent(void)
{
    TEST_BEGIN(__func__);
    /* The agent steps away so the caller waits, then comes back. */
    Cc__AgentLogout out = CC__AGENT_LOGOUT__INIT;
    out.agent_id = "1001";
    Cc__Reply *r = s_call(s_acd, "agent.logout", &out.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "logout: %s", r->error);
    cc__reply__free_unpacked(r, NULL);
    const char *id = s_caller_asks_for_callback("sipp-caller-2", "5550200");
    char call_id[64], key[96];
    snprintf(call_id, sizeof call_id, "%s", id);
    snprintf(key, sizeof key, "acd:call:%s", call_id);
    char tp[16];
    snprintf(tp, sizeof tp, "%d", s_trunk_port);
    pid_t customer = s_sipp("sipp-customer-2", "uas_trunk_busy", "c", tp, NULL);
    pid_t phone = s_sipp("sipp-phone-2", "uas_agent", "a", s_phone_port, NULL);
    s_listening(tp);
    s_listening(s_phone_port);
    s_login();
    CHECK(s_wait(customer, 30000) == 0, "the customer's line answered busy");
    CHECK(s_wait(phone, 30000) == 0, "the agent's phone answered and got the BYE when the customer was busy");
    /* acd: the callback waits for its next try; the agent is free. */
    char *attempts = NULL;
    for (int i = 0; i < 50; i++) {
        free(attempts);
        attempts = s_hget(key, "attempts");
        if (strcmp(attempts, "1") == 0) break;
        cc_sleep_ms(100);
    }
    CHECK(strcmp(attempts, "1") == 0, "one failed attempt counted: '%s'", attempts);
    free(attempts);
    char *state = s_hget(key, "state"), *kind = s_hget(key, "kind");
    CHECK(strcmp(state, "waiting") == 0 && strcmp(kind, "callback") == 0, "the callback keeps its place: %s %s", state, kind);
    free(state);
    free(kind);
    s_wait_agent("ready");
    PGresult *res = NULL;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT sip_cause, hangup_by FROM telephony.cdr WHERE call_id = '%s' AND leg = 'customer'",
             call_id);
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr query");
        if (PQntuples(res) == 1) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "486") == 0 && strcmp(PQgetvalue(res, 0, 1), "callee") == 0,
          "the customer's leg: busy");
    PQclear(res);
    TEST_PASS(__func__);
}

/* Waits for events of both types about call_id, in either order. */
static void
s_events_both(const char *a, const char *b, const char *call_id, int timeout_ms)
{
    bool got_a = false, got_b = false;
    int64_t end = cc_mono_ms() + timeout_ms;
    Cc__Envelope *env;
    while (!(got_a && got_b) && cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->trace_id, call_id) == 0) {
            got_a |= strcmp(env->type, a) == 0;
            got_b |= strcmp(env->type, b) == 0;
        }
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(got_a && got_b, "events for %s: %s %d, %s %d", call_id, a, got_a, b, got_b);
}

static void
agent_transfers_the_caller_to_a_number_then_back_to_the_queue(void)
{
    TEST_BEGIN(__func__);
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 50) == 0) cc__envelope__free_unpacked(env, NULL);
    const char *echo[] = { "-rtp_echo", NULL };
    pid_t phone = s_sipp("sipp-phone-3", "uas_agent", "a", s_phone_port, echo);
    s_listening(s_phone_port);
    /* The caller waits for the gateway's BYE; the agent answers. */
    pid_t caller = s_sipp("sipp-caller-3", "uac_ivr", "100", NULL, NULL);
    char call_id[64];
    s_event_call("call.started", call_id);
    s_events_both("queue.answered", "call.bridged", call_id, 20000);

    /* Blind transfer to a number: the agent's phone gets its BYE, acd lets
     * the agent go (wrap-up, then ready), the number answers. */
    char tp[16];
    snprintf(tp, sizeof tp, "%d", s_trunk_port);
    pid_t number = s_sipp("sipp-number-3", "uas_trunk", "c", tp, NULL);
    s_listening(tp);
    Cc__MediaTransfer tr = CC__MEDIA_TRANSFER__INIT;
    tr.call_id = call_id;
    tr.destination = "5550300";
    Cc__Reply *r = s_call(s_gw, "media.transfer", &tr.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "transfer: %s", r->error);
    Cc__MediaDone *d = cc__media_done__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(d && strcmp(d->result, "answered") == 0, "the number answered: %s", d ? d->result : "?");
    cc__media_done__free_unpacked(d, NULL);
    cc__reply__free_unpacked(r, NULL);
    CHECK(s_wait(phone, 30000) == 0, "the agent's phone got its BYE at the transfer");
    s_wait_agent("ready");

    /* And back to the queue: the number's leg ends, acd offers the call
     * again and the agent's phone answers it. */
    phone = s_sipp("sipp-phone-4", "uas_agent", "a", s_phone_port, echo);
    s_listening(s_phone_port);
    while (cc_bus_recv(s_events, &env, 50) == 0) cc__envelope__free_unpacked(env, NULL);
    tr.destination = "queue:sales";
    r = s_call(s_gw, "media.transfer", &tr.base);
    d = r->status == CC__STATUS__STATUS_OK ? cc__media_done__unpack(NULL, r->payload.len, r->payload.data) : NULL;
    CHECK(d && strcmp(d->result, "queued") == 0, "transfer to the queue: %s %s", r->error, d ? d->result : "?");
    cc__media_done__free_unpacked(d, NULL);
    cc__reply__free_unpacked(r, NULL);
    CHECK(s_wait(number, 30000) == 0, "the number's leg got its BYE at the transfer back");
    s_events_both("queue.answered", "call.bridged", call_id, 20000);
    s_hangup(call_id, "served");
    CHECK(s_wait(caller, 30000) == 0, "the caller got the BYE");
    CHECK(s_wait(phone, 30000) == 0, "the agent's phone got the BYE");

    char sql[512];
    snprintf(sql, sizeof sql, "SELECT leg, dialled, reason, answered_at IS NOT NULL FROM telephony.cdr"
             " WHERE call_id = '%s' ORDER BY id", call_id);
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr query");
        if (PQntuples(res) == 4) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 4, "four legs, got %d", PQntuples(res));
    for (int i = 0; i < 4; i++)
        printf("leg %s dialled %s reason '%s' answered %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
               PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
    /* In the order they ended: the first agent, the number, the caller and the second agent. */
    CHECK(strcmp(PQgetvalue(res, 0, 0), "agent") == 0 && strcmp(PQgetvalue(res, 0, 2), "transferred") == 0, "first agent leg");
    CHECK(strcmp(PQgetvalue(res, 1, 0), "transfer") == 0 && strcmp(PQgetvalue(res, 1, 1), "5550300") == 0
          && strcmp(PQgetvalue(res, 1, 2), "transferred") == 0 && strcmp(PQgetvalue(res, 1, 3), "t") == 0, "the number's leg");
    CHECK(strcmp(PQgetvalue(res, 2, 0), "caller") == 0 && strcmp(PQgetvalue(res, 2, 2), "served") == 0, "the caller's leg");
    CHECK(strcmp(PQgetvalue(res, 3, 0), "agent") == 0 && strcmp(PQgetvalue(res, 3, 2), "served") == 0, "second agent leg");
    PQclear(res);
    s_wait_agent("ready");
    TEST_PASS(__func__);
}

static void
originate_rings_a_registered_phone(void)
{
    TEST_BEGIN(__func__);
    pid_t phone = s_sipp("sipp-phone-5", "uas_agent", "a", s_phone_port, NULL);
    s_listening(s_phone_port);
    Cc__MediaOriginate org = CC__MEDIA_ORIGINATE__INIT;
    org.agent_id = "1001";
    org.caller_id = "supervisor";
    Cc__Reply *r = s_call(s_gw, "media.originate", &org.base);
    CHECK(r->status == CC__STATUS__STATUS_OK, "originate to the phone: %d %s", r->status, r->error);
    Cc__MediaOriginated *made = cc__media_originated__unpack(NULL, r->payload.len, r->payload.data);
    CHECK(made && made->call_id[0], "the new call's id");
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", made->call_id);
    cc__media_originated__free_unpacked(made, NULL);
    cc__reply__free_unpacked(r, NULL);
    s_hangup(call_id, "briefing done");
    CHECK(s_wait(phone, 30000) == 0, "the phone answered and got the BYE");
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT leg, direction, caller, dialled, reason FROM telephony.cdr WHERE call_id = '%s'", call_id);
    PGresult *res = NULL;
    for (int i = 0; i < 50; i++) {
        if (res) PQclear(res);
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr query");
        if (PQntuples(res) == 1) break;
        cc_sleep_ms(100);
    }
    CHECK(PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "outbound") == 0
          && strcmp(PQgetvalue(res, 0, 1), "outbound") == 0 && strcmp(PQgetvalue(res, 0, 2), "supervisor") == 0
          && strcmp(PQgetvalue(res, 0, 3), "1001") == 0 && strcmp(PQgetvalue(res, 0, 4), "briefing done") == 0,
          "the originated call's CDR");
    PQclear(res);
    TEST_PASS(__func__);
}

/* Agent 1001 ready, its phone (SIPp) answering after ring_ms, and a caller
 * of queue back (102) offered to it. Returns the phone; *caller_p and
 * call_id get the caller and its call id. */
static pid_t
s_offer_to_slow_phone(const char *tag, const char *ring_ms, pid_t *caller_p, char call_id[64])
{
    s_agent_ready();
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 50) == 0) cc__envelope__free_unpacked(env, NULL);
    const char *slow[] = { "-d", ring_ms, NULL };
    char label[64];
    snprintf(label, sizeof label, "sipp-phone-%s", tag);
    pid_t phone = s_sipp(label, "uas_agent_slow", "a", s_phone_port, slow);
    s_listening(s_phone_port);
    snprintf(label, sizeof label, "sipp-caller-%s", tag);
    *caller_p = s_sipp(label, "uac_ivr", "102", NULL, NULL);
    s_event_call("queue.offered", call_id);
    s_wait_agent("reserved");
    return phone;
}

/* The reason in the CDR of call_id's agent leg, once written (up to 5 s;
 * caller frees), or NULL. */
static char *
s_agent_leg_reason(const char *call_id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT reason FROM telephony.cdr WHERE call_id = '%s' AND leg = 'agent'", call_id);
    char *reason = NULL;
    for (int i = 0; i < 50 && !reason; i++) {
        PGresult *res = NULL;
        CHECK(cc_pg_run(s_pg, sql, &res) == 0, "cdr query");
        if (PQntuples(res) == 1) reason = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (!reason) cc_sleep_ms(100);
    }
    return reason;
}

/* Redis loses its data while the agent's phone rings for a caller of the
 * agent's third queue: acd holds the restored agent, the gateway tells it
 * again of the ringing call (acd.reoffer), and the answer puts the agent on
 * the call in that queue (not in the agent's first). */
static void
ringing_call_survives_a_redis_restart(void)
{
    TEST_BEGIN(__func__);
    pid_t caller;
    char call_id[64];
    pid_t phone = s_offer_to_slow_phone("restart", "7000", &caller, call_id);
    Cc__Envelope *env;

    cc_harness_restart_redis(s_h);
    cc_redis_destroy(&s_redis);
    s_redis = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    CHECK(cc_redis_connect(s_redis) == 0, "redis back");
    env = s_event("acd.rebuilt", NULL, 10000);
    cc__envelope__free_unpacked(env, NULL);
    char key[96];
    snprintf(key, sizeof key, "acd:call:%s", call_id);
    char *state = NULL, *agent = NULL, *queue = NULL;
    for (int i = 0; i < 40; i++, cc_sleep_ms(50)) {
        free(state), free(agent), free(queue);
        state = s_hget(key, "state"), agent = s_hget(key, "agent"), queue = s_hget(key, "queue");
        if (strcmp(state, "offered") == 0) break;
    }
    CHECK(strcmp(state, "offered") == 0 && strcmp(agent, "1001") == 0 && strcmp(queue, "back") == 0,
          "acd knows again that 1001's phone rings for the caller of back (%s to %s in %s)", state, agent, queue);
    free(state), free(agent), free(queue);

    env = s_event("queue.answered", call_id, 15000);
    Cc__QueueAnswered *ans = cc__queue_answered__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(ans && strcmp(ans->agent_id, "1001") == 0 && strcmp(ans->queue, "back") == 0,
          "the phone answered: the call is 1001's, in back (%s)", ans ? ans->queue : "?");
    cc__queue_answered__free_unpacked(ans, NULL);
    cc__envelope__free_unpacked(env, NULL);
    s_wait_agent("on_call");
    s_hangup(call_id, "served");
    CHECK(s_wait(caller, 30000) == 0, "the caller got the BYE");
    CHECK(s_wait(phone, 30000) == 0, "the agent's phone answered and got the BYE");
    s_wait_agent("ready");
    TEST_PASS(__func__);
}

/* The "slow" queue gives an offer 1 s; the gateway would ring the phone
 * for 15 s: when acd gives the offer up, the phone gets its CANCEL then,
 * and the caller keeps waiting. */
static void
offer_given_up_by_acd_stops_the_phone_ringing(void)
{
    TEST_BEGIN(__func__);
    s_agent_ready();
    Cc__Envelope *env;
    while (cc_bus_recv(s_events, &env, 50) == 0) cc__envelope__free_unpacked(env, NULL);
    pid_t phone = s_sipp("sipp-phone-forever", "uas_ring_forever", "a", s_phone_port, NULL);
    s_listening(s_phone_port);
    pid_t caller = s_sipp("sipp-caller-withdrawn", "uac_ivr", "101", NULL, NULL);
    char call_id[64];
    s_event_call("queue.offered", call_id);
    int64_t offered = cc_mono_ms();
    env = s_event("queue.requeued", call_id, 10000);
    cc__envelope__free_unpacked(env, NULL);
    CHECK(s_wait(phone, 5000) == 0, "the phone got its CANCEL when acd gave the offer up, not at the gateway's 15 s");
    printf("CANCEL %lld ms after the offer\n", (long long) (cc_mono_ms() - offered));
    s_wait_agent("not_ready");
    char key[96];
    snprintf(key, sizeof key, "acd:call:%s", call_id);
    char *state = s_hget(key, "state");
    CHECK(strcmp(state, "waiting") == 0, "the caller keeps waiting (%s)", state);
    free(state);
    cc_sleep_ms(2000);   /* the caller's scenario has reached its wait for the BYE */
    s_hangup(call_id, "test over");
    CHECK(s_wait(caller, 30000) == 0, "the caller got the BYE");
    char *reason = s_agent_leg_reason(call_id);
    CHECK(reason && strcmp(reason, "acd withdrew the offer") == 0, "the agent leg's CDR says why (%s)",
          reason ? reason : "none");
    free(reason);
    TEST_PASS(__func__);
}

/* A late answer: the agent's phone answers an offer acd no longer gives it
 * (the fault injected here: Redis says the offer is another agent's, as
 * when acd gave it up and its withdrawal crossed the answer). acd refuses
 * the answer; the gateway hangs up the agent's leg, whose CDR says why, and
 * the caller stays, back to the music. */
static void
late_answer_is_refused_and_the_agent_leg_dropped(void)
{
    TEST_BEGIN(__func__);
    pid_t caller;
    char call_id[64];
    pid_t phone = s_offer_to_slow_phone("late", "3000", &caller, call_id);
    redisReply *x = cc_redis_cmdf(s_redis, "HSET acd:call:%s agent someone-else", call_id);
    CHECK(x && x->type == REDIS_REPLY_INTEGER, "the offer is another agent's now");
    freeReplyObject(x);
    CHECK(s_wait(phone, 15000) == 0, "the phone answered and the gateway hung its leg up");
    char *reason = s_agent_leg_reason(call_id);
    CHECK(reason && strcmp(reason, "acd did not accept the answer") == 0, "the agent leg's CDR says why (%s)",
          reason ? reason : "none");
    free(reason);
    CHECK(waitpid(caller, NULL, WNOHANG) == 0, "the caller is still on the line");
    char key[96];
    snprintf(key, sizeof key, "acd:call:%s", call_id);
    char *state = s_hget(key, "state");
    CHECK(strcmp(state, "offered") == 0, "and still in acd's hands (%s)", state);
    free(state);
    /* The offer given back to 1001, the caller's end frees the agent. */
    x = cc_redis_cmdf(s_redis, "HSET acd:call:%s agent 1001", call_id);
    freeReplyObject(x);
    s_hangup(call_id, "test over");
    CHECK(s_wait(caller, 30000) == 0, "the caller got the BYE");
    s_wait_agent("ready");
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("callpath_test", "callpath_test");
    s_h = cc_harness_new("callpath");
    cc_harness_start_pg(s_h);
    cc_harness_start_redis(s_h);
    cc_harness_start_forwarder(s_h, false, 100000);
    s_pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(s_pg) == 0, "pg");
    CHECK(cc_pg_migrate(s_pg, "acd", CC_SOURCE_DIR "/services/acd/sql", NULL) == 0, "acd migrations");
    CHECK(cc_pg_migrate(s_pg, "gateway", CC_SOURCE_DIR "/services/gateway/sql", NULL) == 0, "gateway migrations");
    s_sql("INSERT INTO acd.queues (name, skills, wrap_up_ms, offer_timeout_ms, callback_retry_ms)"
          " VALUES ('sales', 'sales:1', 1000, 20000, 600000)");
    s_sql("INSERT INTO acd.queues (name, skills, wrap_up_ms, offer_timeout_ms, callback_retry_ms)"
          " VALUES ('slow', 'sales:1', 1000, 1000, 600000)");
    s_sql("INSERT INTO acd.queues (name, skills, wrap_up_ms, offer_timeout_ms, callback_retry_ms)"
          " VALUES ('back', 'sales:1', 1000, 20000, 600000)");
    s_sql("INSERT INTO acd.agents (id, extension, skills, queues) VALUES ('1001', '1001', 'sales:3', 'sales,slow,back')");
    s_sql("INSERT INTO telephony.sip_users (username, ha1) VALUES ('1001', md5('1001:callcenter:secret1001'))");
    s_trunk_port = cc_harness_free_port();
    char trunk[32];
    snprintf(trunk, sizeof trunk, "127.0.0.1:%d", s_trunk_port);
    setenv("GATEWAY_TRUNK_OUT", trunk, 1);
    setenv("GATEWAY_RING_MS", "15000", 1);
    cc_callpath_t path;
    cc_harness_start_callpath(s_h, &path, "100=queue:sales,101=queue:slow,102=queue:back", 35000 + (getpid() % 30) * 100);
    s_sip_port = path.sip_port;
    cc_bus_opts_t bo = { .service = "test", .instance = "callpath", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "queue.");
    cc_bus_subscribe(s_events, "call.");
    cc_bus_subscribe(s_events, "acd.rebuilt");
    cc_rpc_client_opts_t ro = { .endpoint = path.acd_rpc, .source = "callpath_test", .retry_ms = 300, .max_attempts = 3 };
    s_acd = cc_rpc_client_new(&ro);
    cc_rpc_client_opts_t go = { .endpoint = path.gw_rpc, .source = "callpath_test", .retry_ms = 5000, .max_attempts = 1 };
    s_gw = cc_rpc_client_new(&go);
    s_redis = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    CHECK(cc_redis_connect(s_redis) == 0, "redis");

    /* The agent's phone registers from the port its SIPp answers on. */
    snprintf(s_phone_port, sizeof s_phone_port, "%d", cc_harness_free_ports(1));
    const char *good[] = { "-au", "1001", "-ap", "secret1001", "-key", "contact_port", s_phone_port, NULL };
    CHECK(s_wait(s_sipp("sipp-register", "register", "1001", NULL, good), 30000) == 0, "phone registered");
    cc_sleep_ms(300);

    callback_rings_the_agent_then_the_customer_and_bridges_them();
    busy_customer_fails_the_callback_and_frees_the_agent();
    agent_transfers_the_caller_to_a_number_then_back_to_the_queue();
    originate_rings_a_registered_phone();
    ringing_call_survives_a_redis_restart();
    offer_given_up_by_acd_stops_the_phone_ringing();
    late_answer_is_refused_and_the_agent_leg_dropped();

    /* Every leg freed, nothing left behind (under --asan: no leak reports). */
    int status = cc_harness_stop(s_h, path.gateway, SIGTERM, 10000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "gateway stops cleanly (status %d, see %s/gateway.log)", status,
          cc_harness_dir(s_h));

    cc_redis_destroy(&s_redis);
    cc_rpc_client_destroy(&s_gw);
    cc_rpc_client_destroy(&s_acd);
    cc_bus_destroy(&s_events);
    cc_pg_destroy(&s_pg);
    cc_harness_destroy(&s_h);
    cc_log_shutdown();
    printf("callpath_test: 7 passed, 0 failed\n");
    return 0;
}
