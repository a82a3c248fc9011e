/* acd_rebuild_test: Redis loses every key while agents work; acd puts the
 * agents' sessions back from PostgreSQL and says so with acd.rebuilt.
 *
 * agents_come_back_as_they_were: one agent on a call, one at lunch, one
 *   ready, one logged out before the loss (it stays out). After the loss
 *   the first is on the same call (answered, in its queue), the second
 *   still at lunch, the third held (its phone might ring with an offer
 *   Redis forgot): a call arriving then waits, and is offered to it when
 *   the hold is over; the call's end puts its agent through wrap-up to ready.
 * ringing_agents_come_back_with_their_offers_outcome: two agents (in queues
 *   b5 and b3) have their phones ring for b3's calls at the loss. The
 *   gateway tells acd again of one (acd.reoffer); a new call meanwhile
 *   waits. The agent that did not answer the other is not_ready
 *   (no_answer) and acd says it lost that call (the gateway enqueues the
 *   caller again); the one that answered is on its call, in b3 (not in its
 *   first queue), and at its end takes the call that waited.
 * a_call_ended_before_the_restore_frees_its_agent: the call's end reaches
 *   acd after the loss but before it noticed (acd knows no such call); the
 *   agent comes back ready, not stuck on that call.
 * callbacks_come_back_in_their_place: two callbacks (their callers hung
 *   up: nobody else holds them) are kept in acd.callbacks, one of them after
 *   a try the customer did not answer. After the loss both wait again in
 *   their places, ahead of a new call, the tried one still held for its
 *   retry; the free agent takes the other, whose answer marks its row
 *   done. A row marked done, and one of a queue that is gone, do not come
 *   back. A callback asked for after an overflow keeps when it entered its
 *   queue (its widen rules count from then).
 * sessions_written_while_postgres_is_down_are_kept: a login and a move to
 *   not_ready while PostgreSQL is stopped are answered at once and reach
 *   acd.sessions when it is back, in order.
 * a_callback_ringing_at_the_loss_ends_as_its_try_did: the loss comes while
 *   the gateway offers two callbacks (the agents' phones ring). They come
 *   back waiting from PostgreSQL; one agent's answer makes the first
 *   answered by that agent (its row done), the other's customer not
 *   answering counts as a try of the second (held for its retry): neither
 *   is offered to a third agent, no customer is called twice.
 */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"
#include "queue.pb-c.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fx_t s_fx;
static fx_snap_t s_snap;

/* Waits (up to 30 s: acd looks every ten ticks) for acd.rebuilt. */
static bool
s_rebuilt(cc_bus_t *bus)
{
    Cc__Envelope *env;
    for (int64_t end = cc_mono_ms() + 30000; cc_mono_ms() < end;)
        if (cc_bus_recv(bus, &env, 100) == 0) {
            bool rebuilt = strcmp(env->type, "acd.rebuilt") == 0;
            cc__envelope__free_unpacked(env, NULL);
            if (rebuilt) return true;
        }
    return false;
}

static void
s_flushall(void)
{
    redisReply *r = cc_redis_cmdf(s_fx.redis, "FLUSHALL");
    CHECK(r && r->type == REDIS_REPLY_STATUS, "Redis loses every key");
    freeReplyObject(r);
}

/* Field of the hash acd:<kind>:<id> ("" when none); the caller frees it. */
static char *
s_field(const char *kind, const char *id, const char *field)
{
    redisReply *r = cc_redis_cmdf(s_fx.redis, "HGET acd:%s:%s %s", kind, id, field);
    char *v = strdup(r && r->type == REDIS_REPLY_STRING ? r->str : "");
    if (r) freeReplyObject(r);
    return v;
}

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

    s_flushall();
    CHECK(s_rebuilt(bus), "acd published acd.rebuilt");

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
    char *held = s_field("agent", "rb-ready", "reason");
    CHECK(a && strcmp(a->state, "not_ready") == 0 && strcmp(held, "restoring") == 0 && !a->in_ready[fx_snap_queue(&s_snap, "b2")],
          "rb-ready is held (%s %s)", a ? a->state : "absent", held);
    free(held);
    CHECK(fx_enqueue(&s_fx, 0, "rb-c2", "b2", 0, NULL, NULL) == 0, "a new call in b2");
    fx_call_t *c2 = fx_snap_call((fx_snapshot(&s_fx, &s_snap), &s_snap), "rb-c2");
    CHECK(c2 && strcmp(c2->state, "waiting") == 0, "waits while rb-ready is held (%s)", c2 ? c2->state : "absent");
    for (int i = 0; i < 100 && strcmp(s_agent("rb-ready")->state, "reserved") != 0; i++) cc_sleep_ms(50);
    c2 = fx_snap_call(&s_snap, "rb-c2");
    CHECK(c2 && strcmp(c2->state, "offered") == 0 && strcmp(c2->agent, "rb-ready") == 0,
          "offered to rb-ready once the hold is over (%s)", c2 ? c2->agent : "-");
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
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "rb-c2", NULL) == 0, "rb-c2 ends");
    TEST_PASS(__func__);
}

static void
ringing_agents_come_back_with_their_offers_outcome(cc_bus_t *bus)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "rg-1", "", "b5,b3") == 0 && fx_login(&s_fx, 0, "rg-2", "", "b5,b3") == 0, "logins");
    CHECK(fx_enqueue(&s_fx, 0, "rg-c1", "b3", 0, NULL, NULL) == 0 && fx_enqueue(&s_fx, 0, "rg-c2", "b3", 0, NULL, NULL) == 0,
          "two calls");
    fx_snapshot(&s_fx, &s_snap);
    fx_call_t *c1 = fx_snap_call(&s_snap, "rg-c1"), *c2 = fx_snap_call(&s_snap, "rg-c2");
    CHECK(c1 && c2 && strcmp(c1->state, "offered") == 0 && strcmp(c2->state, "offered") == 0, "both ring");
    char unanswered[64], answering[64];
    snprintf(unanswered, sizeof unanswered, "%s", c1->agent);
    snprintf(answering, sizeof answering, "%s", c2->agent);

    s_flushall();
    CHECK(s_rebuilt(bus), "acd published acd.rebuilt");
    /* The gateway tells of the caller whose agent's phone still rings. */
    Cc__Enqueue re = CC__ENQUEUE__INIT;
    re.call_id = "rg-c2";
    re.queue = "b3";
    re.ringing_agent_id = answering;
    CHECK(fx_request_as(&s_fx, 0, "rg-reoffer-1", "acd.reoffer", &re.base, NULL) == 0, "acd.reoffer rg-c2");
    fx_agent_t *held = s_agent(answering);
    CHECK(held && strcmp(held->state, "reserved") == 0 && strcmp(held->call, "rg-c2") == 0, "%s is offered rg-c2 again",
          answering);
    CHECK(fx_enqueue(&s_fx, 0, "rg-c3", "b3", 0, NULL, NULL) == 0, "a new call in b3");
    fx_snapshot(&s_fx, &s_snap);
    fx_call_t *c3 = fx_snap_call(&s_snap, "rg-c3");
    CHECK(c3 && strcmp(c3->state, "waiting") == 0, "waits: no ringing agent is offered it (%s)", c3 ? c3->state : "-");
    CHECK(fx_rejected(&s_fx, 0, "rg-c1", unanswered, "no_answer") == CC__STATUS__STATUS_NOT_FOUND,
          "acd says it lost rg-c1 (the gateway enqueues the caller again)");
    fx_agent_t *a = s_agent(unanswered);
    char *reason = s_field("agent", unanswered, "reason");
    CHECK(a && strcmp(a->state, "not_ready") == 0 && strcmp(reason, "no_answer") == 0,
          "%s did not answer: not_ready (%s), not %s", unanswered, reason, a ? a->state : "absent");
    free(reason);

    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "rg-c2", answering) == 0, "the other answered");
    a = s_agent(answering);
    fx_call_t *c = fx_snap_call(&s_snap, "rg-c2");
    CHECK(a && strcmp(a->state, "on_call") == 0 && strcmp(a->call, "rg-c2") == 0, "%s is on rg-c2 (%s)", answering,
          a ? a->state : "absent");
    CHECK(c && strcmp(c->state, "answered") == 0 && strcmp(c->queue, "b3") == 0, "rg-c2 answered in b3 (%s)",
          c ? c->queue : "-");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "rg-c2", NULL) == 0, "the call ends");
    a = s_agent(answering);
    CHECK(a && strcmp(a->state, "reserved") == 0 && strcmp(a->call, "rg-c3") == 0,
          "%s is free (b3 has no wrap-up) and takes the waiting rg-c3: %s", answering, a ? a->state : "absent");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "rg-c3", NULL) == 0, "rg-c3 ends");
    /* The gateway's new enqueue of the caller who was ringing. */
    CHECK(fx_enqueue(&s_fx, 0, "rg-c1", "b3", 0, NULL, NULL) == 0, "rg-c1 enqueued again");
    fx_snapshot(&s_fx, &s_snap);
    c = fx_snap_call(&s_snap, "rg-c1");
    CHECK(c && strcmp(c->state, "offered") == 0 && strcmp(c->agent, answering) == 0, "offered to %s", answering);
    TEST_PASS(__func__);
}

static void
a_call_ended_before_the_restore_frees_its_agent(cc_bus_t *bus)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "eb-1", "", "b4") == 0, "login");
    CHECK(fx_enqueue(&s_fx, 0, "eb-c1", "b4", 0, NULL, NULL) == 0, "a call");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "eb-c1", "eb-1") == 0, "answered");
    s_flushall();
    /* acd looks for the loss every ten ticks (10 s here): the end comes first. */
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "eb-c1", NULL) == CC__STATUS__STATUS_NOT_FOUND,
          "the call's end reaches acd before it noticed the loss");
    CHECK(s_rebuilt(bus), "acd published acd.rebuilt");
    for (int i = 0; i < 100 && strcmp(s_agent("eb-1")->state, "ready") != 0; i++) cc_sleep_ms(50);
    fx_agent_t *a = s_agent("eb-1");
    CHECK(a && strcmp(a->state, "ready") == 0, "eb-1 is back ready after its hold, not stuck on the ended call (%s %s)",
          a ? a->state : "absent", a ? a->call : "");
    CHECK(!fx_snap_call(&s_snap, "eb-c1"), "eb-c1 is not back");
    TEST_PASS(__func__);
}


/* call's score in b6's wait set (-1 when not in it). */
static double
s_wait_score(const char *call)
{
    redisReply *r = cc_redis_cmdf(s_fx.redis, "ZSCORE acd:queue:b6:wait %s", call);
    double v = r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : -1;
    if (r) freeReplyObject(r);
    return v;
}


static void
callbacks_come_back_in_their_place(cc_bus_t *bus)
{
    TEST_BEGIN(__func__);
    const char *ids[] = { "cb-c1", "cb-c2", "cb-c3" };
    for (int i = 0; i < 3; i++) CHECK(fx_enqueue(&s_fx, 0, ids[i], "b6", 0, NULL, NULL) == 0, "enqueue %s", ids[i]);
    char err[128];
    CHECK(fx_callback(&s_fx, 0, "cb-c1", "+4930111", err, sizeof err) == 0
          && fx_callback(&s_fx, 0, "cb-c3", "+4930333", err, sizeof err) == 0, "two callbacks: %s", err);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "cb-c1", NULL) == 0 && fx_call_op(&s_fx, 0, "acd.ended", "cb-c3", NULL) == 0,
          "their callers hang up");
    fx_snapshot(&s_fx, &s_snap);
    double rank1 = fx_snap_call(&s_snap, "cb-c1")->rank, rank3 = fx_snap_call(&s_snap, "cb-c3")->rank;
    CHECK(fx_login(&s_fx, 0, "cb-a", "", "b6") == 0, "an agent");
    CHECK(strcmp(s_agent("cb-a")->call, "cb-c1") == 0, "takes the first callback");
    CHECK(fx_call_op(&s_fx, 0, "acd.callback_failed", "cb-c1", "cb-a") == 0, "the customer does not answer");
    CHECK(strcmp(s_agent("cb-a")->call, "cb-c2") == 0, "the agent takes the caller behind (cb-c1 waits for its retry)");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "cb-c2", "cb-a") == 0, "and answers");
    CHECK(fx_pg_until("SELECT string_agg(call_id || ':' || number || ':' || attempts || ':' || (hold_until_ms > 0), ','"
                     " ORDER BY rank, call_id) FROM acd.callbacks", "cb-c1:+4930111:1:true,cb-c3:+4930333:0:false"),
          "both callbacks are in acd.callbacks, the first with its try");
    /* A caller moved on to b9 (overflow) asks for a callback there. */
    CHECK(fx_enqueue(&s_fx, 0, "cb-o1", "b8", 0, NULL, NULL) == 0, "a caller in b8");
    char *queue = NULL;
    for (int i = 0; i < 60; i++, cc_sleep_ms(50)) {
        free(queue);
        queue = s_field("call", "cb-o1", "queue");
        if (strcmp(queue, "b9") == 0) break;
    }
    CHECK(strcmp(queue, "b9") == 0, "overflows to b9 (%s)", queue);
    free(queue);
    char *qenq = s_field("call", "cb-o1", "qenq"), *enq = s_field("call", "cb-o1", "enq");
    CHECK(atoll(qenq) > atoll(enq), "entered b9 after arriving (%s > %s)", qenq, enq);
    CHECK(fx_callback(&s_fx, 0, "cb-o1", "+4930444", err, sizeof err) == 0
          && fx_call_op(&s_fx, 0, "acd.ended", "cb-o1", NULL) == 0, "asks for a callback and hangs up: %s", err);
    char want[64];
    snprintf(want, sizeof want, "b9:%s", qenq);
    CHECK(fx_pg_until("SELECT queue || ':' || qenq_ms FROM acd.callbacks WHERE call_id = 'cb-o1'", want),
          "kept with when it entered b9");
    /* Two rows that must not come back: one done, one of a queue gone. */
    CHECK(fx_pg_until("WITH i AS (INSERT INTO acd.callbacks (call_id, queue, number, rank, enq_ms, expires_ms, done) VALUES"
                     " ('cb-done', 'b6', '+1', 1, 1, 9999999999999, true),"
                     " ('cb-gone', 'nosuch', '+2', 1, 1, 9999999999999, false) RETURNING 1) SELECT count(*)::text FROM i",
                     "2"), "rows added");

    s_flushall();
    CHECK(s_rebuilt(bus), "acd published acd.rebuilt");
    CHECK(fx_enqueue(&s_fx, 0, "cb-c4", "b6", 0, NULL, NULL) == 0, "a new caller");
    fx_snapshot(&s_fx, &s_snap);
    fx_call_t *c1 = fx_snap_call(&s_snap, "cb-c1"), *c3 = fx_snap_call(&s_snap, "cb-c3"), *c4 = fx_snap_call(&s_snap, "cb-c4");
    CHECK(c1 && c3 && c4 && strcmp(c1->state, "waiting") == 0 && strcmp(c3->state, "waiting") == 0
          && c1->waiting_in == 1 && c3->waiting_in == 1, "both callbacks wait again");
    CHECK(c1->rank == rank1 && c3->rank == rank3 && c3->rank < c4->rank, "in their places, ahead of the new caller");
    CHECK(s_wait_score("cb-c1") == rank1 && s_wait_score("cb-c3") == rank3, "ranked so in the wait set");
    CHECK(!fx_snap_call(&s_snap, "cb-done") && !fx_snap_call(&s_snap, "cb-gone"), "a done callback is not back, nor one of a queue gone");
    char *qenq_back = s_field("call", "cb-o1", "qenq"), *queue_back = s_field("call", "cb-o1", "queue");
    CHECK(strcmp(queue_back, "b9") == 0 && strcmp(qenq_back, qenq) == 0, "cb-o1 is back in b9, entered at %s (%s)", qenq,
          qenq_back);
    free(qenq_back);
    free(queue_back);
    free(qenq);
    free(enq);
    CHECK(fx_call_op(&s_fx, 0, "acd.cancel", "cb-o1", NULL) == 0, "cb-o1 is cancelled");
    CHECK(fx_pg_until("SELECT done::text FROM acd.callbacks WHERE call_id = 'cb-gone'", "true"), "which is marked done");
    char *kind = s_field("call", "cb-c3", "kind"), *number = s_field("call", "cb-c3", "number"),
         *attempts = s_field("call", "cb-c1", "attempts"), *hold = s_field("call", "cb-c1", "hold_until");
    CHECK(strcmp(kind, "callback") == 0 && strcmp(number, "+4930333") == 0, "cb-c3 is a callback to %s", number);
    CHECK(strcmp(attempts, "1") == 0 && atoll(hold) > (long long) (cc_wall_us() / 1000), "cb-c1 tried once, held (%s)", hold);
    free(kind);
    free(number);
    free(attempts);
    free(hold);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "cb-c2", NULL) == 0, "the agent's call (back from its session) ends");
    fx_agent_t *a = s_agent("cb-a");
    CHECK(a && strcmp(a->state, "reserved") == 0 && strcmp(a->call, "cb-c3") == 0,
          "the free agent takes cb-c3, ahead of cb-c4 (%s %s)", a ? a->state : "absent", a ? a->call : "-");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "cb-c3", "cb-a") == 0, "the customer answers");
    CHECK(fx_pg_until("SELECT string_agg(call_id, ',' ORDER BY call_id) FROM acd.callbacks WHERE NOT done", "cb-c1"),
          "cb-c3 is done");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "cb-c3", NULL) == 0 && fx_call_op(&s_fx, 0, "acd.cancel", "cb-c1", NULL) == 0,
          "cb-c3 ends, cb-c1 is cancelled");
    CHECK(fx_pg_until("SELECT count(*) FROM acd.callbacks WHERE NOT done", "0"), "cb-c1 is done");
    TEST_PASS(__func__);
}

static void
a_callback_ringing_at_the_loss_ends_as_its_try_did(cc_bus_t *bus)
{
    TEST_BEGIN(__func__);
    /* Restored agents held for a minute: the outcomes come before the hold
     * is over (after it, acd would offer the callbacks again itself). */
    setenv("ACD_RESTORE_HOLD_MS", "60000", 1);
    cc_harness_stop(s_fx.h, s_fx.pid[0], SIGTERM, 10000);
    fx_start_instance(&s_fx, 0);
    const char *agents[] = { "cr-a", "cr-b" }, *calls[] = { "cr-c1", "cr-c2" };
    for (int i = 0; i < 2; i++)
        CHECK(fx_login(&s_fx, 0, agents[i], "", "b7") == 0 && fx_state(&s_fx, 0, agents[i], "not_ready", "lunch") == 0,
              "%s logs in, away", agents[i]);
    char err[128];
    for (int i = 0; i < 2; i++)
        CHECK(fx_enqueue(&s_fx, 0, calls[i], "b7", 0, NULL, NULL) == 0
              && fx_callback(&s_fx, 0, calls[i], "+4930999", err, sizeof err) == 0
              && fx_call_op(&s_fx, 0, "acd.ended", calls[i], NULL) == 0, "%s asks for a callback and hangs up: %s",
              calls[i], err);
    for (int i = 0; i < 2; i++) {
        CHECK(fx_state(&s_fx, 0, agents[i], "ready", "") == 0, "%s is back", agents[i]);
        fx_agent_t *a = s_agent(agents[i]);
        CHECK(a && strcmp(a->state, "reserved") == 0 && strcmp(a->call, calls[i]) == 0, "and is offered %s", calls[i]);
    }
    CHECK(fx_pg_until("SELECT count(*) FROM acd.callbacks WHERE call_id LIKE 'cr-%' AND NOT done", "2"), "both kept");

    s_flushall();   /* while the agents' phones ring for them */
    CHECK(s_rebuilt(bus), "acd published acd.rebuilt");
    fx_snapshot(&s_fx, &s_snap);
    for (int i = 0; i < 2; i++) {
        fx_call_t *c = fx_snap_call(&s_snap, calls[i]);
        CHECK(c && strcmp(c->state, "waiting") == 0, "%s is back, waiting", calls[i]);
    }
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "cr-c1", "cr-a") == 0, "cr-a answers the offer made before the loss");
    CHECK(fx_call_op(&s_fx, 0, "acd.callback_failed", "cr-c2", "cr-b") == 0, "cr-c2's customer does not answer");
    fx_snapshot(&s_fx, &s_snap);
    fx_call_t *c = fx_snap_call(&s_snap, "cr-c1");
    fx_agent_t *a = fx_snap_agent(&s_snap, "cr-a");
    CHECK(c && strcmp(c->state, "answered") == 0 && strcmp(c->agent, "cr-a") == 0 && c->waiting_in == 0,
          "cr-c1 is answered by cr-a, out of the wait set (%s %s)", c ? c->state : "absent", c ? c->agent : "-");
    CHECK(a && strcmp(a->state, "on_call") == 0 && strcmp(a->call, "cr-c1") == 0, "cr-a is on it");
    c = fx_snap_call(&s_snap, "cr-c2");
    CHECK(c && strcmp(c->state, "waiting") == 0 && c->waiting_in == 1, "cr-c2 keeps its place");
    CHECK(fx_pg_until("SELECT string_agg(call_id || ':' || done || ':' || attempts || ':' || (hold_until_ms > 0), ','"
                      " ORDER BY call_id) FROM acd.callbacks WHERE call_id LIKE 'cr-%'",
                      "cr-c1:true:0:false,cr-c2:false:1:true"),
          "cr-c1 is done, cr-c2 tried once and held for its retry");
    CHECK(fx_login(&s_fx, 0, "cr-d", "", "b7") == 0, "another agent comes");
    a = s_agent("cr-d");
    CHECK(a && strcmp(a->state, "ready") == 0, "and is offered neither again (%s %s)", a ? a->state : "absent",
          a ? a->call : "-");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "cr-c1", NULL) == 0 && fx_call_op(&s_fx, 0, "acd.cancel", "cr-c2", NULL) == 0,
          "cr-c1's call ends, cr-c2 is cancelled");
    a = s_agent("cr-a");
    CHECK(a && strcmp(a->state, "ready") == 0, "cr-a is ready again");
    const char *all[] = { "cr-a", "cr-b", "cr-d" };
    for (int i = 0; i < 3; i++) CHECK(fx_state(&s_fx, 0, all[i], "logged_out", "") == 0, "%s logs out", all[i]);
    TEST_PASS(__func__);
}

static PGresult *
s_session(cc_pg_t *pg, const char *agent)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT state, reason, queues FROM acd.sessions WHERE agent_id = '%s'", agent);
    PGresult *res = NULL;
    if (cc_pg_run(pg, sql, &res)) return NULL;
    return res;
}

static void
sessions_written_while_postgres_is_down_are_kept(void)
{
    TEST_BEGIN(__func__);
    cc_harness_stop_pg(s_fx.h);
    CHECK(fx_login(&s_fx, 0, "pg-1", "sales:1", "b4") == 0, "a login answered while PostgreSQL is down");
    CHECK(fx_state(&s_fx, 0, "pg-1", "not_ready", "training") == 0, "then not_ready(training)");
    fx_agent_t *a = s_agent("pg-1");
    CHECK(a && strcmp(a->state, "not_ready") == 0, "live state moved on");
    cc_harness_restart_pg(s_fx.h);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(pg) == 0, "pg back");
    PGresult *res = NULL;
    for (int64_t end = cc_mono_ms() + 20000; cc_mono_ms() < end; cc_sleep_ms(100)) {
        if (res) PQclear(res);
        res = s_session(pg, "pg-1");
        if (res && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "not_ready") == 0) break;
    }
    CHECK(res && PQntuples(res) == 1, "pg-1's session reached acd.sessions");
    CHECK(strcmp(PQgetvalue(res, 0, 0), "not_ready") == 0 && strcmp(PQgetvalue(res, 0, 1), "training") == 0
          && strcmp(PQgetvalue(res, 0, 2), "b4") == 0, "login then not_ready(training), in order: %s(%s) in %s",
          PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    PQclear(res);
    cc_pg_destroy(&pg);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_rebuild_test", "acd_rebuild_test");
    setenv("FX_ACD_TICK_MS", "1000", 1);   /* Redis's loss noticed within 10 s */
    setenv("ACD_RESTORE_HOLD_MS", "1500", 1);
    cc_bus_opts_t o = { .service = "test", .instance = "rebuild", .sub_endpoint = NULL };
    fx_start(&s_fx, "acd-rebuild", 1,
             "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms) VALUES ('b1', 300000, 2000), ('b2', 300000, 0),"
             " ('b3', 300000, 0), ('b4', 300000, 0), ('b5', 300000, 0);"
             "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms, callback_retry_ms) VALUES ('b6', 300000, 0, 600000),"
             " ('b7', 300000, 0, 600000), ('b9', 300000, 0, 600000);"
             "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms, overflow_queue, overflow_after_ms)"
             " VALUES ('b8', 300000, 0, 'b9', 300)");
    o.sub_endpoint = getenv("CC_BUS_SUB");
    cc_bus_t *bus = cc_bus_new(&o);
    cc_bus_subscribe(bus, "acd.rebuilt");
    CHECK(s_rebuilt(bus), "acd's first look at a fresh Redis");
    agents_come_back_as_they_were(bus);
    ringing_agents_come_back_with_their_offers_outcome(bus);
    a_call_ended_before_the_restore_frees_its_agent(bus);
    callbacks_come_back_in_their_place(bus);
    sessions_written_while_postgres_is_down_are_kept();
    a_callback_ringing_at_the_loss_ends_as_its_try_did(bus);
    cc_bus_destroy(&bus);
    fx_stop(&s_fx);
    cc_log_shutdown();
    printf("acd_rebuild_test: 6 passed, 0 failed\n");
    return 0;
}
