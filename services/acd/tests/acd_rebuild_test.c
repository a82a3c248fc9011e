/* acd_rebuild_test: Redis loses every key while agents work; acd puts the
 * agents' sessions back from PostgreSQL and says so with acd.rebuilt.
 *
 * agents_come_back_as_they_were: one agent on a call, one at lunch, one
 *   ready, one logged out before the loss (it stays out). After the loss
 *   the first is on the same call (answered, in its queue), the second
 *   still at lunch, the third ready; the call's end puts its agent through
 *   wrap-up to ready, and a new call is offered to the ready agent. */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <stdio.h>
#include <string.h>

static fx_t s_fx;
static fx_snap_t s_snap;

static fx_agent_t *
s_agent(const char *id)
{
    fx_snapshot(&s_fx, &s_snap);
    return fx_snap_agent(&s_snap, id);
}

static void
agents_come_back_as_they_were(cc_bus_t *bus)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "rb-call", "sales:3", "b1") == 0, "login rb-call");
    CHECK(fx_enqueue(&s_fx, 0, "rb-c1", "b1", 0, NULL, NULL) == 0, "a call for rb-call");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "rb-c1", "rb-call") == 0, "answered");
    CHECK(fx_login(&s_fx, 0, "rb-lunch", "sales:2", "b1,b2") == 0 && fx_state(&s_fx, 0, "rb-lunch", "not_ready", "lunch") == 0,
          "rb-lunch at lunch");
    CHECK(fx_login(&s_fx, 0, "rb-ready", "english:1", "b2") == 0, "rb-ready ready");
    CHECK(fx_login(&s_fx, 0, "rb-gone", "", "b2") == 0 && fx_state(&s_fx, 0, "rb-gone", "logged_out", "") == 0,
          "rb-gone logged out");
    Cc__Envelope *env;
    while (cc_bus_recv(bus, &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);

    redisReply *r = cc_redis_cmdf(s_fx.redis, "FLUSHALL");
    CHECK(r && r->type == REDIS_REPLY_STATUS, "Redis loses every key");
    freeReplyObject(r);
    bool rebuilt = false;
    for (int i = 0; i < 100 && !rebuilt; i++)
        if (cc_bus_recv(bus, &env, 100) == 0) {
            rebuilt = strcmp(env->type, "acd.rebuilt") == 0;
            cc__envelope__free_unpacked(env, NULL);
        }
    CHECK(rebuilt, "acd published acd.rebuilt");

    fx_agent_t *a = s_agent("rb-call");
    CHECK(a && strcmp(a->state, "on_call") == 0 && strcmp(a->call, "rb-c1") == 0 && strcmp(a->queues, "b1") == 0
          && fx_qualifies(a->skills, "sales:3"), "rb-call is back on rb-c1 (%s, %s)", a ? a->state : "absent",
          a ? a->call : "-");
    fx_call_t *c = fx_snap_call(&s_snap, "rb-c1");
    CHECK(c && strcmp(c->state, "answered") == 0 && strcmp(c->agent, "rb-call") == 0 && strcmp(c->queue, "b1") == 0,
          "rb-c1 is answered by rb-call in b1");
    a = fx_snap_agent(&s_snap, "rb-lunch");
    CHECK(a && strcmp(a->state, "not_ready") == 0 && strcmp(a->queues, "b1,b2") == 0, "rb-lunch still away");
    a = fx_snap_agent(&s_snap, "rb-ready");
    CHECK(a && strcmp(a->state, "ready") == 0 && a->in_ready[fx_snap_queue(&s_snap, "b2")], "rb-ready ready in b2");
    a = fx_snap_agent(&s_snap, "rb-gone");
    CHECK(!a || strcmp(a->state, "logged_out") == 0, "rb-gone stays logged out");
    redisReply *reason = cc_redis_cmdf(s_fx.redis, "HGET acd:agent:rb-lunch reason");
    CHECK(reason && reason->type == REDIS_REPLY_STRING && strcmp(reason->str, "lunch") == 0, "with its reason");
    freeReplyObject(reason);

    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "rb-c1", NULL) == 0, "the gateway ends the call: acd knows it");
    a = s_agent("rb-call");
    CHECK(a && strcmp(a->state, "wrap_up") == 0, "rb-call wraps up (%s)", a ? a->state : "absent");
    for (int i = 0; i < 100 && strcmp(s_agent("rb-call")->state, "ready") != 0; i++) cc_sleep_ms(50);
    CHECK(strcmp(s_agent("rb-call")->state, "ready") == 0, "then is ready");
    CHECK(fx_enqueue(&s_fx, 0, "rb-c2", "b2", 0, NULL, NULL) == 0, "a new call in b2");
    fx_snapshot(&s_fx, &s_snap);
    c = fx_snap_call(&s_snap, "rb-c2");
    CHECK(c && strcmp(c->state, "offered") == 0 && strcmp(c->agent, "rb-ready") == 0, "offered to rb-ready (%s)",
          c ? c->agent : "-");
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_rebuild_test", "acd_rebuild_test");
    fx_start(&s_fx, "acd-rebuild", 1,
             "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms) VALUES ('b1', 300000, 2000), ('b2', 300000, 0)");
    cc_bus_opts_t o = { .service = "test", .instance = "rebuild", .sub_endpoint = getenv("CC_BUS_SUB") };
    cc_bus_t *bus = cc_bus_new(&o);
    cc_bus_subscribe(bus, "acd.rebuilt");
    cc_sleep_ms(1500);   /* acd's first epoch check (a fresh Redis) has passed */
    agents_come_back_as_they_were(bus);
    cc_bus_destroy(&bus);
    fx_stop(&s_fx);
    cc_log_shutdown();
    printf("acd_rebuild_test: 1 passed, 0 failed\n");
    return 0;
}
