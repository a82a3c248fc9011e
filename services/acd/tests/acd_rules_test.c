/* acd_rules_test: each routing rule, one scenario each, checked on the
 * state in Redis and on the events published on the bus.
 *
 * offer_timeout_puts_agent_not_ready_and_call_back_at_head
 * wrap_up_then_ready_takes_the_next_call
 * higher_priority_is_served_first
 * oldest_call_wins_across_queues
 * sticky_call_waits_for_its_last_agent_then_anyone
 * skills_widen_as_the_wait_grows
 * full_queue_refuses_and_not_ready_waits_for_the_call_to_end
 * bad_requests_get_clear_errors_and_change_nothing
 * overflow_after_a_while_keeps_the_callers_place
 * max_wait_leaves_the_queue_with_an_event
 * empty_queue_rules_refuse_and_release_callers
 * closed_queue_rejects_or_overflows
 * overflow_applies_the_target_queues_admission_rules
 * status_lists_queues_and_agents_with_the_oldest_wait
 * callback_keeps_its_place_and_is_retried
 * callbacks_wait_for_their_queues_calling_hours
 * held_callbacks_do_not_hide_the_callers_behind_them
 * refusals_for_the_calls_sake_leave_the_agent_ready
 * supervisor_force_logout_takes_a_ringing_agent_off
 * flagged_callers_go_to_their_queue_and_positions_are_announced
 * deleted_queue_is_pruned_on_reload
 * strategy_edited_while_agents_are_logged_in_applies
 * queue_closed_by_another_version_is_seen_at_once
 * retry_of_a_request_an_older_acd_ran_gets_its_results */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fx_t s_fx;
static cc_bus_t *s_events;

static const char *s_sql =
    "INSERT INTO acd.queues (name, strategy, skills, widen, offer_timeout_ms, wrap_up_ms, max_len, sticky_ms) VALUES"
    " ('r1', 'longest_idle', '', '', 1000, 0, 0, 0),"
    " ('r2', 'longest_idle', '', '', 60000, 600, 0, 0),"
    " ('r3', 'longest_idle', '', '', 60000, 0, 0, 0),"
    " ('r4', 'longest_idle', '', '', 60000, 0, 0, 0),"
    " ('r5', 'longest_idle', '', '', 60000, 0, 0, 1500),"
    " ('r6', 'longest_idle', 'sales:5', '800:0', 60000, 0, 0, 0),"
    " ('r7', 'longest_idle', '', '', 60000, 0, 2, 0);"
    "INSERT INTO acd.queues (name, overflow_queue, overflow_after_ms, max_wait_ms, max_wait_action, join_empty,"
    "  leave_when_empty, closed_action, callback_retry_ms, callback_max_attempts, wrap_up_ms) VALUES"
    " ('r9', '', 0, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r8', 'r9', 500, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r10', '', 0, 500, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r11', '', 0, 0, 'leave', false, false, 'reject', 300000, 3, 0),"
    " ('r12', '', 0, 0, 'leave', true, true, 'reject', 300000, 3, 0),"
    " ('r13', '', 0, 0, 'leave', true, false, 'overflow:r9', 300000, 3, 0),"
    " ('r14', '', 0, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r15', '', 0, 0, 'leave', true, false, 'reject', 1000, 2, 0),"
    " ('r19', 'r20', 400, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r20', '', 0, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r21', 'r14', 400, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r22', 'r11', 400, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r23', 'r20', 0, 400, 'overflow', true, false, 'reject', 300000, 3, 0),"
    " ('r24', '', 0, 0, 'leave', true, false, 'reject', 300000, 3, 0),"
    " ('r25', '', 0, 0, 'leave', true, false, 'reject', 300000, 3, 0);"
    "UPDATE acd.queues SET max_len = 1 WHERE name = 'r20';"
    "INSERT INTO acd.queues (name, music, announce_ms, service_level_ms, wrap_up_ms) VALUES"
    " ('r16', 'jazz', 1000, 60000, 0), ('r17', 'default', 0, 20000, 0);"
    "UPDATE acd.queues SET blacklist_queue = 'r17' WHERE name = 'r16';"
    "INSERT INTO acd.holidays (queue, day, name) VALUES"
    " ('r13', (now() AT TIME ZONE 'UTC')::date, 'test day'), ('r14', (now() AT TIME ZONE 'UTC')::date, 'test day');"
    /* r26 calls back on one weekday only, three days from today. */
    "INSERT INTO acd.queues (name, wrap_up_ms) VALUES ('r26', 0);"
    "INSERT INTO acd.queues (name, wrap_up_ms, leave_when_empty) VALUES ('r27', 0, true);"
    "INSERT INTO acd.callback_hours (queue, dow, opens, closes) VALUES"
    " ('r26', (extract(dow FROM now() AT TIME ZONE 'UTC')::int + 3) % 7, '00:00', '24:00'),"
    " ('r27', (extract(dow FROM now() AT TIME ZONE 'UTC')::int + 3) % 7, '00:00', '24:00');"
    "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms, callback_retry_ms) VALUES ('r28', 1000, 0, 300000);";

static fx_snap_t s_snap;

static fx_agent_t *
s_agent(const char *id)
{
    fx_snapshot(&s_fx, &s_snap);
    fx_agent_t *a = fx_snap_agent(&s_snap, id);
    CHECK(a, "agent %s", id);
    return a;
}

static fx_call_t *
s_call(const char *id)
{
    fx_snapshot(&s_fx, &s_snap);
    return fx_snap_call(&s_snap, id);
}

/* Waits up to timeout_ms for an event of type about call (or agent). Returns
 * the envelope (caller frees) or fails the test. */
static Cc__Envelope *
s_event(const char *type, const char *trace, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    Cc__Envelope *env;
    while (cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 100) != 0) continue;
        if (strcmp(env->type, type) == 0 && (!trace || strcmp(env->trace_id, trace) == 0)) return env;
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(0, "no %s event for %s within %d ms", type, trace ? trace : "-", timeout_ms);
    return NULL;
}

/* Waits until agent id is in state (tick-driven changes). */
static fx_agent_t *
s_wait_state(const char *id, const char *state, int timeout_ms)
{
    int64_t end = cc_mono_ms() + timeout_ms;
    for (;;) {
        fx_agent_t *a = s_agent(id);
        if (strcmp(a->state, state) == 0) return a;
        CHECK(cc_mono_ms() < end, "agent %s stayed %s, not %s", id, a->state, state);
        cc_sleep_ms(20);
    }
}

/* Enqueues call in queue through instance 0, expecting a refusal: its
 * status, with the error's text in err. */
static int
s_enqueue_refused(const char *call, const char *queue, char *err, size_t cap)
{
    Cc__Enqueue m = CC__ENQUEUE__INIT;
    m.call_id = (char *) call;
    m.queue = (char *) queue;
    uint8_t buf[128];
    size_t len = cc__enqueue__pack(&m, buf);
    return fx_request(&s_fx, 0, "acd.enqueue", buf, len, err, cap);
}

static void
offer_timeout_puts_agent_not_ready_and_call_back_at_head(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t1a", "", "r1") == 0, "login");
    CHECK(fx_enqueue(&s_fx, 0, "t1-c1", "r1", 0, NULL, NULL) == 0, "enqueue");
    unsigned pos = 0;
    CHECK(fx_enqueue(&s_fx, 1, "t1-c2", "r1", 0, NULL, &pos) == 0 && pos == 1, "second waits at position %u", pos);
    Cc__Envelope *env = s_event("queue.offered", "t1-c1", 2000);
    Cc__QueueOffered *off = cc__queue_offered__unpack(NULL, env->payload.len, env->payload.data);
    CHECK(off && strcmp(off->agent_id, "t1a") == 0 && strcmp(off->queue, "r1") == 0, "offered to t1a");
    cc__queue_offered__free_unpacked(off, NULL);
    cc__envelope__free_unpacked(env, NULL);
    /* Nobody answers for the queue's 1000 ms. */
    s_wait_state("t1a", "not_ready", 3000);
    env = s_event("agent.state", "", 2000);
    Cc__AgentStateChanged *st = cc__agent_state_changed__unpack(NULL, env->payload.len, env->payload.data);
    while (st && !(strcmp(st->agent_id, "t1a") == 0 && st->state == CC__AGENT_STATE__AGENT_NOT_READY)) {
        cc__agent_state_changed__free_unpacked(st, NULL);
        cc__envelope__free_unpacked(env, NULL);
        env = s_event("agent.state", "", 2000);
        st = cc__agent_state_changed__unpack(NULL, env->payload.len, env->payload.data);
    }
    CHECK(strcmp(st->reason, "no_answer") == 0 && st->previous == CC__AGENT_STATE__AGENT_RESERVED, "reason %s", st->reason);
    CHECK(st->time_in_previous_ms >= 1000 && st->time_in_previous_ms < 3000, "rang %lld ms", (long long) st->time_in_previous_ms);
    cc__agent_state_changed__free_unpacked(st, NULL);
    cc__envelope__free_unpacked(env, NULL);
    fx_call_t *c1 = s_call("t1-c1");
    CHECK(c1 && strcmp(c1->state, "waiting") == 0, "c1 back waiting");
    /* Back at the head: the next agent gets c1, not c2. */
    CHECK(fx_login(&s_fx, 1, "t1b", "", "r1") == 0, "login b");
    c1 = s_call("t1-c1");
    CHECK(strcmp(c1->state, "offered") == 0 && strcmp(c1->agent, "t1b") == 0, "c1 offered to t1b first (%s %s)", c1->state, c1->agent);
    /* t1a's phone answers late: refused (the gateway drops that leg), and
     * neither the new offer nor t1a's state changes. */
    CHECK(fx_call_op(&s_fx, 1, "acd.answered", "t1-c1", "t1a") == CC__STATUS__STATUS_CONFLICT, "a late answer is refused");
    fx_snapshot(&s_fx, &s_snap);
    c1 = fx_snap_call(&s_snap, "t1-c1");
    fx_agent_t *late = fx_snap_agent(&s_snap, "t1a");
    CHECK(c1 && late && strcmp(c1->state, "offered") == 0 && strcmp(c1->agent, "t1b") == 0 && strcmp(late->state, "not_ready") == 0,
          "c1 still offered to t1b (%s %s), t1a %s", c1->state, c1->agent, late->state);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t1-c1", NULL) == 0 && fx_call_op(&s_fx, 0, "acd.ended", "t1-c2", NULL) == 0, "end");
    fx_state(&s_fx, 0, "t1a", "logged_out", "");
    fx_state(&s_fx, 0, "t1b", "logged_out", "");
    TEST_PASS(__func__);
}

static void
wrap_up_then_ready_takes_the_next_call(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t2a", "", "r2") == 0, "login");
    CHECK(fx_enqueue(&s_fx, 0, "t2-c1", "r2", 0, NULL, NULL) == 0, "enqueue");
    CHECK(fx_call_op(&s_fx, 1, "acd.answered", "t2-c1", "t2a") == 0, "answer");
    CHECK(strcmp(s_agent("t2a")->state, "on_call") == 0, "on call");
    CHECK(fx_enqueue(&s_fx, 0, "t2-c2", "r2", 0, NULL, NULL) == 0, "enqueue 2");
    CHECK(fx_call_op(&s_fx, 1, "acd.ended", "t2-c1", NULL) == 0, "hang up");
    CHECK(strcmp(s_agent("t2a")->state, "wrap_up") == 0, "wrap-up after the call");
    CHECK(s_call("t2-c1") == NULL, "ended call removed");
    CHECK(strcmp(s_call("t2-c2")->state, "waiting") == 0, "c2 waits during wrap-up");
    s_wait_state("t2a", "reserved", 3000);
    CHECK(strcmp(s_call("t2-c2")->agent, "t2a") == 0, "after wrap-up t2a gets c2");
    fx_call_op(&s_fx, 0, "acd.ended", "t2-c2", NULL);
    fx_state(&s_fx, 0, "t2a", "logged_out", "");
    TEST_PASS(__func__);
}

static void
higher_priority_is_served_first(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t3-low", "r3", 0, NULL, NULL) == 0, "low");
    cc_sleep_ms(5);
    unsigned pos = 0;
    CHECK(fx_enqueue(&s_fx, 0, "t3-vip", "r3", 9, NULL, &pos) == 0, "vip");
    CHECK(pos == 1, "the VIP call enters ahead of the waiting one (position %u)", pos);
    CHECK(fx_login(&s_fx, 0, "t3a", "", "r3") == 0, "login");
    CHECK(strcmp(s_call("t3-vip")->state, "offered") == 0 && strcmp(s_call("t3-low")->state, "waiting") == 0, "vip first");
    fx_call_op(&s_fx, 0, "acd.ended", "t3-vip", NULL);
    CHECK(strcmp(s_call("t3-low")->agent, "t3a") == 0, "then the low one");
    fx_call_op(&s_fx, 0, "acd.ended", "t3-low", NULL);
    fx_state(&s_fx, 0, "t3a", "logged_out", "");
    TEST_PASS(__func__);
}

static void
oldest_call_wins_across_queues(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t4-old", "r4", 0, NULL, NULL) == 0, "old in r4");
    cc_sleep_ms(10);
    CHECK(fx_enqueue(&s_fx, 0, "t4-new", "r3", 0, NULL, NULL) == 0, "new in r3");
    CHECK(fx_login(&s_fx, 1, "t4a", "", "r3,r4") == 0, "login to r3 then r4");
    CHECK(strcmp(s_call("t4-old")->agent, "t4a") == 0, "the older call of r4 wins over r3's, listed first");
    fx_call_op(&s_fx, 0, "acd.ended", "t4-old", NULL);
    fx_call_op(&s_fx, 0, "acd.ended", "t4-new", NULL);
    fx_state(&s_fx, 0, "t4a", "logged_out", "");
    TEST_PASS(__func__);
}

static void
sticky_call_waits_for_its_last_agent_then_anyone(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t5last", "", "r5") == 0 && fx_login(&s_fx, 0, "t5other", "", "r5") == 0, "logins");
    CHECK(fx_state(&s_fx, 0, "t5last", "not_ready", "lunch") == 0, "last agent away");
    CHECK(fx_enqueue(&s_fx, 0, "t5-c1", "r5", 0, "t5last", NULL) == 0, "returning customer");
    CHECK(strcmp(s_call("t5-c1")->state, "waiting") == 0, "held for t5last although t5other is ready");
    CHECK(fx_state(&s_fx, 0, "t5last", "ready", "") == 0, "last agent back");
    CHECK(strcmp(s_call("t5-c1")->agent, "t5last") == 0, "goes to the agent who served them");
    fx_call_op(&s_fx, 0, "acd.ended", "t5-c1", NULL);
    /* Last agent does not come back in time: normal routing after the hold. */
    CHECK(fx_state(&s_fx, 0, "t5last", "not_ready", "lunch") == 0, "away again");
    CHECK(fx_enqueue(&s_fx, 0, "t5-c2", "r5", 0, "t5last", NULL) == 0, "returning again");
    CHECK(strcmp(s_call("t5-c2")->state, "waiting") == 0, "held");
    s_wait_state("t5other", "reserved", 3000);
    CHECK(strcmp(s_call("t5-c2")->agent, "t5other") == 0, "after 1.5 s anyone may take it");
    fx_call_op(&s_fx, 0, "acd.ended", "t5-c2", NULL);
    fx_state(&s_fx, 0, "t5last", "logged_out", "");
    fx_state(&s_fx, 0, "t5other", "logged_out", "");
    TEST_PASS(__func__);
}

static void
skills_widen_as_the_wait_grows(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t6junior", "sales:2", "r6") == 0, "login");
    CHECK(fx_enqueue(&s_fx, 0, "t6-c1", "r6", 0, NULL, NULL) == 0, "needs sales:5");
    CHECK(strcmp(s_call("t6-c1")->state, "waiting") == 0, "a sales:2 agent does not get it at once");
    s_wait_state("t6junior", "reserved", 3000);
    CHECK(strcmp(s_call("t6-c1")->agent, "t6junior") == 0, "after 800 ms any sales level will do");
    fx_call_op(&s_fx, 0, "acd.ended", "t6-c1", NULL);
    fx_state(&s_fx, 0, "t6junior", "logged_out", "");
    TEST_PASS(__func__);
}

static void
full_queue_refuses_and_not_ready_waits_for_the_call_to_end(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t7-c1", "r7", 0, NULL, NULL) == 0 && fx_enqueue(&s_fx, 0, "t7-c2", "r7", 0, NULL, NULL) == 0, "two");
    char err[256];
    CHECK(s_enqueue_refused("t7-c3", "r7", err, sizeof err) == CC__STATUS__STATUS_CONFLICT
          && strstr(err, "full"), "third refused: %s", err);
    CHECK(fx_login(&s_fx, 0, "t7a", "", "r7") == 0, "login");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "t7-c1", "t7a") == 0, "answer");
    CHECK(fx_state(&s_fx, 0, "t7a", "logged_out", "") == CC__STATUS__STATUS_CONFLICT, "no logout during a call");
    CHECK(fx_state(&s_fx, 0, "t7a", "not_ready", "training") == 0, "not_ready is accepted for after the call");
    CHECK(strcmp(s_agent("t7a")->state, "on_call") == 0, "still on the call");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t7-c1", NULL) == 0, "end");
    fx_agent_t *a = s_agent("t7a");
    CHECK(strcmp(a->state, "not_ready") == 0, "not_ready after the call, not given t7-c2 (%s)", a->state);
    CHECK(strcmp(s_call("t7-c2")->state, "waiting") == 0, "c2 still waits");
    fx_call_op(&s_fx, 0, "acd.ended", "t7-c2", NULL);
    fx_state(&s_fx, 0, "t7a", "logged_out", "");
    TEST_PASS(__func__);
}

static void
bad_requests_get_clear_errors_and_change_nothing(void)
{
    TEST_BEGIN(__func__);
    char err[256];
    fx_snap_t before;
    fx_snapshot(&s_fx, &before);
    CHECK(fx_request(&s_fx, 0, "acd.enqueue", "\xff\xfe garbage", 10, err, sizeof err) == CC__STATUS__STATUS_BAD_REQUEST,
          "garbage payload");
    CHECK(strstr(err, "malformed"), "%s", err);
    CHECK(fx_enqueue(&s_fx, 0, "has space", "r3", 0, NULL, NULL) == CC__STATUS__STATUS_BAD_REQUEST, "id with a space");
    CHECK(fx_enqueue(&s_fx, 0, "x,y", "r3", 0, NULL, NULL) == CC__STATUS__STATUS_BAD_REQUEST, "id with a comma");
    char big[300];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(fx_enqueue(&s_fx, 0, big, "r3", 0, NULL, NULL) == CC__STATUS__STATUS_BAD_REQUEST, "over-long id");
    CHECK(fx_enqueue(&s_fx, 0, "t8-c1", "nosuch", 0, NULL, NULL) == CC__STATUS__STATUS_NOT_FOUND, "unknown queue");
    CHECK(fx_enqueue(&s_fx, 0, "t8-c1", "r3", 99, NULL, NULL) == CC__STATUS__STATUS_BAD_REQUEST, "priority 99");
    CHECK(fx_enqueue(&s_fx, 0, "t8-c1", "r3", -1, NULL, NULL) == CC__STATUS__STATUS_BAD_REQUEST, "priority -1");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "nosuch", "x") == CC__STATUS__STATUS_NOT_FOUND, "answer unknown call");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "nosuch", NULL) == CC__STATUS__STATUS_NOT_FOUND, "end unknown call");
    CHECK(fx_state(&s_fx, 0, "nobody", "ready", "") == CC__STATUS__STATUS_NOT_FOUND, "unknown agent");
    CHECK(fx_login(&s_fx, 0, "t8a", "", "nosuch") == CC__STATUS__STATUS_NOT_FOUND, "login to an unknown queue");
    CHECK(fx_login(&s_fx, 0, "t8a", "sales:500", "r3") == CC__STATUS__STATUS_BAD_REQUEST, "absurd skill level");
    CHECK(fx_login(&s_fx, 0, "unknown-agent", "", "") == CC__STATUS__STATUS_NOT_FOUND, "login without definition");
    Cc__Enqueue re = CC__ENQUEUE__INIT;
    re.call_id = "t8-re";
    re.queue = "r3";
    uint8_t rebuf[128];
    size_t relen = cc__enqueue__pack(&re, rebuf);
    CHECK(fx_request(&s_fx, 0, "acd.reoffer", rebuf, relen, err, sizeof err) == CC__STATUS__STATUS_BAD_REQUEST,
          "a reoffer without its ringing agent");
    Cc__AgentSetState m = CC__AGENT_SET_STATE__INIT;
    m.agent_id = "t8a";
    m.state = CC__AGENT_STATE__AGENT_ON_CALL;
    uint8_t buf[64];
    size_t len = cc__agent_set_state__pack(&m, buf);
    CHECK(fx_request(&s_fx, 0, "agent.set_state", buf, len, err, sizeof err) == CC__STATUS__STATUS_BAD_REQUEST,
          "on_call cannot be requested");
    fx_snap_t after;
    fx_snapshot(&s_fx, &after);
    CHECK(after.nc == before.nc && after.na == before.na, "nothing stored (calls %d->%d, agents %d->%d)",
          before.nc, after.nc, before.na, after.na);
    CHECK(fx_login(&s_fx, 0, "t8b", "", "r3") == 0, "login t8b");
    CHECK(fx_state(&s_fx, 0, "t8b", "not_ready", "caf\xc3") == CC__STATUS__STATUS_BAD_REQUEST, "a reason cut mid-character");
    /* UTF-8, quotes, a slash and a backslash come back exactly as given
     * (the script's JSON escapes them; acd's reader undoes it). */
    static const char reason[] = "caf\xc3\xa9 \"break\" 1/2 \\ x";
    CHECK(fx_state(&s_fx, 0, "t8b", "not_ready", reason) == 0, "a UTF-8 reason is taken");
    CHECK(strcmp(s_agent("t8b")->state, "not_ready") == 0, "t8b not ready");
    bool seen = false;
    for (int i = 0; i < 50 && !seen; i++) {
        Cc__Envelope *env = s_event("agent.state", "", 2000);
        Cc__AgentStateChanged *st = cc__agent_state_changed__unpack(NULL, env->payload.len, env->payload.data);
        if (st && strcmp(st->agent_id, "t8b") == 0 && st->state == CC__AGENT_STATE__AGENT_NOT_READY) {
            CHECK(strcmp(st->reason, reason) == 0, "the event's reason is the one given: [%s]", st->reason);
            seen = true;
        }
        if (st) cc__agent_state_changed__free_unpacked(st, NULL);
        cc__envelope__free_unpacked(env, NULL);
    }
    CHECK(seen, "t8b's not_ready event");
    CHECK(fx_state(&s_fx, 0, "t8b", "logged_out", "") == 0, "t8b leaves");
    /* And the service still serves. */
    CHECK(fx_enqueue(&s_fx, 0, "t8-ok", "r3", 0, NULL, NULL) == 0, "still serving");
    fx_call_op(&s_fx, 0, "acd.ended", "t8-ok", NULL);
    TEST_PASS(__func__);
}

/* Reads an event of type about call and returns its decoded payload. */
#define EVENT(type_name, fn, type, call, ms) \
    ({ Cc__Envelope *e_ = s_event(type_name, call, ms); \
       type *m_ = fn##__unpack(NULL, e_->payload.len, e_->payload.data); \
       cc__envelope__free_unpacked(e_, NULL); CHECK(m_, "decode " type_name); m_; })

static void
overflow_after_a_while_keeps_the_callers_place(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t9-first", "r9", 0, NULL, NULL) == 0, "a call already in r9");
    cc_sleep_ms(20);
    CHECK(fx_enqueue(&s_fx, 0, "t9-c1", "r8", 0, NULL, NULL) == 0, "enqueue in r8 (nobody there)");
    Cc__QueueOverflowed *o = EVENT("queue.overflowed", cc__queue_overflowed, Cc__QueueOverflowed, "t9-c1", 3000);
    CHECK(strcmp(o->queue, "r8") == 0 && strcmp(o->to_queue, "r9") == 0 && o->wait_ms >= 500, "r8 -> r9 after %lld ms",
          (long long) o->wait_ms);
    cc__queue_overflowed__free_unpacked(o, NULL);
    fx_call_t *c = s_call("t9-c1");
    CHECK(c && strcmp(c->queue, "r9") == 0 && strcmp(c->state, "waiting") == 0, "now waiting in r9");
    /* It arrived after t9-first: it stays behind it, not at the back. */
    CHECK(fx_enqueue(&s_fx, 0, "t9-later", "r9", 0, NULL, NULL) == 0, "a later call");
    CHECK(fx_login(&s_fx, 0, "t9a", "", "r9") == 0, "agent");
    CHECK(strcmp(s_call("t9-first")->agent, "t9a") == 0, "first served first");
    fx_call_op(&s_fx, 0, "acd.ended", "t9-first", NULL);
    CHECK(strcmp(s_call("t9-c1")->agent, "t9a") == 0, "the overflowed call keeps its arrival rank");
    fx_call_op(&s_fx, 0, "acd.ended", "t9-c1", NULL);
    fx_call_op(&s_fx, 0, "acd.ended", "t9-later", NULL);
    fx_state(&s_fx, 0, "t9a", "logged_out", "");
    TEST_PASS(__func__);
}

static void
max_wait_leaves_the_queue_with_an_event(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t10-c1", "r10", 0, NULL, NULL) == 0, "enqueue");
    Cc__QueueLeft *l = EVENT("queue.left", cc__queue_left, Cc__QueueLeft, "t10-c1", 3000);
    CHECK(strcmp(l->reason, "timeout") == 0 && l->wait_ms >= 500, "left after %lld ms: %s", (long long) l->wait_ms, l->reason);
    cc__queue_left__free_unpacked(l, NULL);
    CHECK(s_call("t10-c1") == NULL, "gone from Redis");
    TEST_PASS(__func__);
}

static void
empty_queue_rules_refuse_and_release_callers(void)
{
    TEST_BEGIN(__func__);
    char err[256];
    CHECK(s_enqueue_refused("t11-c1", "r11", err, sizeof err) == CC__STATUS__STATUS_CONFLICT
          && strstr(err, "no agent logged in"), "join-empty off: %s", err);
    CHECK(fx_login(&s_fx, 0, "t11a", "", "r11") == 0 && fx_state(&s_fx, 0, "t11a", "not_ready", "x") == 0, "agent away");
    CHECK(fx_enqueue(&s_fx, 0, "t11-c1", "r11", 0, NULL, NULL) == 0, "a logged-in agent is enough to join");
    fx_call_op(&s_fx, 0, "acd.ended", "t11-c1", NULL);
    fx_state(&s_fx, 0, "t11a", "logged_out", "");
    /* leave-when-empty: the last agent logs out, waiting callers are released. */
    CHECK(fx_login(&s_fx, 0, "t12a", "", "r12") == 0 && fx_state(&s_fx, 0, "t12a", "not_ready", "x") == 0, "agent away");
    CHECK(fx_enqueue(&s_fx, 0, "t12-c1", "r12", 0, NULL, NULL) == 0, "waiting");
    CHECK(fx_state(&s_fx, 0, "t12a", "logged_out", "") == 0, "last agent leaves");
    Cc__QueueLeft *l = EVENT("queue.left", cc__queue_left, Cc__QueueLeft, "t12-c1", 3000);
    CHECK(strcmp(l->reason, "empty") == 0, "reason %s", l->reason);
    cc__queue_left__free_unpacked(l, NULL);
    CHECK(s_call("t12-c1") == NULL, "released");
    TEST_PASS(__func__);
}

static void
closed_queue_rejects_or_overflows(void)
{
    TEST_BEGIN(__func__);
    char err[256];
    CHECK(s_enqueue_refused("t14-c1", "r14", err, sizeof err) == CC__STATUS__STATUS_CONFLICT
          && strstr(err, "closed"), "holiday: %s", err);
    CHECK(fx_enqueue(&s_fx, 0, "t13-c1", "r13", 0, NULL, NULL) == 0, "closed with overflow");
    fx_call_t *c = s_call("t13-c1");
    CHECK(c && strcmp(c->queue, "r9") == 0, "went to r9 (%s)", c ? c->queue : "-");
    fx_call_op(&s_fx, 0, "acd.ended", "t13-c1", NULL);
    TEST_PASS(__func__);
}

static void
overflow_applies_the_target_queues_admission_rules(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t19-full", "r20", 0, NULL, NULL) == 0, "r20 holds its one call");
    CHECK(fx_enqueue(&s_fx, 0, "t19-c1", "r19", 0, NULL, NULL) == 0, "r19 overflows to the full r20");
    CHECK(fx_enqueue(&s_fx, 0, "t21-c1", "r21", 0, NULL, NULL) == 0, "r21 overflows to r14, closed today");
    CHECK(fx_enqueue(&s_fx, 1, "t22-c1", "r22", 0, NULL, NULL) == 0, "r22 overflows to r11: join-empty off, nobody in");
    CHECK(fx_enqueue(&s_fx, 1, "t23-c1", "r23", 0, NULL, NULL) == 0, "r23's maximum wait overflows to the full r20");
    CHECK(fx_enqueue(&s_fx, 0, "t19-ctl", "r8", 0, NULL, NULL) == 0, "a control call in r8 (overflows after 500 ms)");
    /* The maximum wait is over and the overflow refused: the caller leaves. */
    Cc__QueueLeft *l = EVENT("queue.left", cc__queue_left, Cc__QueueLeft, "t23-c1", 3000);
    CHECK(strcmp(l->reason, "timeout") == 0 && strcmp(l->queue, "r23") == 0, "t23 left %s: %s", l->queue, l->reason);
    cc__queue_left__free_unpacked(l, NULL);
    /* The tick that moved the control call had the others due before it. */
    Cc__QueueOverflowed *o = EVENT("queue.overflowed", cc__queue_overflowed, Cc__QueueOverflowed, "t19-ctl", 3000);
    CHECK(strcmp(o->to_queue, "r9") == 0, "control overflowed to %s", o->to_queue);
    cc__queue_overflowed__free_unpacked(o, NULL);
    static const char *stay[][2] = { { "t19-c1", "r19" }, { "t21-c1", "r21" }, { "t22-c1", "r22" }, { "t19-full", "r20" } };
    for (size_t i = 0; i < sizeof stay / sizeof *stay; i++) {
        fx_call_t *c = s_call(stay[i][0]);
        CHECK(c && strcmp(c->queue, stay[i][1]) == 0 && strcmp(c->state, "waiting") == 0 && c->waiting_in == 1,
              "%s still waits in %s (%s, %s)", stay[i][0], stay[i][1], c ? c->queue : "gone", c ? c->state : "-");
    }
    CHECK(s_call("t23-c1") == NULL, "t23 is gone from Redis");
    const char *ids[] = { "t19-c1", "t21-c1", "t22-c1", "t19-full", "t19-ctl" };
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
        CHECK(fx_call_op(&s_fx, 0, "acd.ended", ids[i], NULL) == 0, "end %s", ids[i]);
    TEST_PASS(__func__);
}

static void
status_lists_queues_and_agents_with_the_oldest_wait(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t24a", "sales:4,english:2", "r24") == 0, "login");
    CHECK(fx_state(&s_fx, 0, "t24a", "not_ready", "coffee") == 0, "away");
    CHECK(fx_enqueue(&s_fx, 0, "t24-old", "r24", 0, NULL, NULL) == 0, "an ordinary call waits");
    cc_sleep_ms(300);   /* the ordinary call has waited this long at least */
    CHECK(fx_enqueue(&s_fx, 1, "t24-vip", "r24", 9, NULL, NULL) == 0, "a VIP call waits ahead of it");
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(s_fx.client[1], "acd.status", NULL, 0, 3000, &r) == 0 && r->status == 0, "status");
    Cc__AcdStatus *st = cc__acd_status__unpack(NULL, r->payload.len, r->payload.data);
    cc__reply__free_unpacked(r, NULL);
    CHECK(st && st->n_queues >= 20, "every queue listed (%zu)", st ? st->n_queues : 0);
    const Cc__QueueStatus *q = NULL;
    for (size_t i = 0; i < st->n_queues; i++) if (strcmp(st->queues[i]->queue, "r24") == 0) q = st->queues[i];
    CHECK(q && q->waiting == 2 && q->ready == 0 && q->longest_wait_ms >= 300 && q->longest_wait_ms < 60000,
          "r24: 2 waiting, the oldest (behind the VIP) for %lld ms, none ready", q ? (long long) q->longest_wait_ms : -1LL);
    const Cc__AgentStatus *a = NULL;
    for (size_t i = 0; i < st->n_agents; i++) if (strcmp(st->agents[i]->agent_id, "t24a") == 0) a = st->agents[i];
    CHECK(a && strcmp(a->state, "not_ready") == 0 && strcmp(a->reason, "coffee") == 0 && strcmp(a->queues, "r24") == 0
          && strcmp(a->skills, "english:2,sales:4") == 0 && strcmp(a->extension, "t24a") == 0 && a->since_ms > 0,
          "t24a: %s (%s) in %s with %s", a ? a->state : "-", a ? a->reason : "-", a ? a->queues : "-", a ? a->skills : "-");
    cc__acd_status__free_unpacked(st, NULL);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t24-old", NULL) == 0 && fx_call_op(&s_fx, 0, "acd.ended", "t24-vip", NULL) == 0,
          "end");
    CHECK(fx_state(&s_fx, 0, "t24a", "logged_out", "") == 0, "logout");
    TEST_PASS(__func__);
}

static void
callback_keeps_its_place_and_is_retried(void)
{
    TEST_BEGIN(__func__);
    unsigned pos = 0;
    CHECK(fx_enqueue(&s_fx, 0, "t15-c1", "r15", 0, NULL, &pos) == 0, "first");
    CHECK(fx_enqueue(&s_fx, 0, "t15-c2", "r15", 0, NULL, NULL) == 0, "second");
    char err[256];
    CHECK(fx_callback(&s_fx, 0, "t15-c1", "+8613800138000", err, sizeof err) == 0, "callback: %s", err);
    Cc__CallbackRequested *ev = EVENT("callback.requested", cc__callback_requested, Cc__CallbackRequested, "t15-c1", 2000);
    CHECK(strcmp(ev->number, "+8613800138000") == 0 && ev->position == 1, "position %u", ev->position);
    cc__callback_requested__free_unpacked(ev, NULL);
    /* The caller hangs up: not an abandon, the place is kept. */
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t15-c1", NULL) == 0, "hang up");
    CHECK(s_call("t15-c1") && strcmp(s_call("t15-c1")->state, "waiting") == 0, "callback still waiting");
    CHECK(fx_login(&s_fx, 0, "t15a", "", "r15") == 0, "agent");
    CHECK(strcmp(s_call("t15-c1")->agent, "t15a") == 0, "the callback is served in its place, before t15-c2");
    /* The caller's hang-up reaching acd only now, with the callback offered: the offer stands. */
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t15-c1", NULL) == 0, "late hang-up");
    CHECK(s_call("t15-c1") && strcmp(s_call("t15-c1")->agent, "t15a") == 0 && strcmp(s_agent("t15a")->state, "reserved") == 0,
          "the callback offer survives the caller's late hang-up");
    /* Nobody answers at home: retried after 1 s, then given up after 2 tries. */
    CHECK(fx_call_op(&s_fx, 0, "acd.callback_failed", "t15-c1", "t15a") == 0, "no answer");
    CHECK(strcmp(s_call("t15-c2")->agent, "t15a") == 0, "meanwhile the agent takes t15-c2");
    fx_call_op(&s_fx, 0, "acd.ended", "t15-c2", NULL);
    s_wait_state("t15a", "reserved", 3000);
    CHECK(strcmp(s_call("t15-c1")->agent, "t15a") == 0, "second try after the retry delay");
    CHECK(fx_call_op(&s_fx, 0, "acd.callback_failed", "t15-c1", "t15a") == 0, "no answer again");
    Cc__QueueLeft *l = EVENT("queue.left", cc__queue_left, Cc__QueueLeft, "t15-c1", 2000);
    CHECK(strcmp(l->reason, "callback_failed") == 0, "reason %s", l->reason);
    cc__queue_left__free_unpacked(l, NULL);
    CHECK(strcmp(s_agent("t15a")->state, "ready") == 0, "agent free");
    fx_state(&s_fx, 0, "t15a", "logged_out", "");
    TEST_PASS(__func__);
}

/* The gateway refusing an offer for the call's sake (call_gone, call_busy,
 * no_trunk) leaves the agent ready; any other reason does not. */
static void
refusals_for_the_calls_sake_leave_the_agent_ready(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t33a", "", "r28") == 0 && fx_state(&s_fx, 0, "t33a", "not_ready", "brief") == 0, "agent");
    /* no_trunk: a callback that cannot be dialled is a failed try. */
    CHECK(fx_enqueue(&s_fx, 0, "t33-cb", "r28", 0, NULL, NULL) == 0, "a caller waits");
    char err[256];
    CHECK(fx_callback(&s_fx, 0, "t33-cb", "+4930555", err, sizeof err) == 0, "callback: %s", err);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t33-cb", NULL) == 0, "the caller hangs up");
    CHECK(fx_state(&s_fx, 0, "t33a", "ready", "") == 0 && strcmp(s_agent("t33a")->call, "t33-cb") == 0,
          "the callback is offered");
    CHECK(fx_rejected(&s_fx, 0, "t33-cb", "t33a", "no_trunk") == 0, "no trunk to dial it");
    fx_agent_t *a = s_agent("t33a");
    CHECK(strcmp(a->state, "ready") == 0, "t33a stays ready (%s)", a->state);
    fx_call_t *c = s_call("t33-cb");
    CHECK(c && strcmp(c->state, "waiting") == 0 && c->waiting_in == 1, "the callback keeps its place");
    CHECK(fx_pg_until("SELECT attempts || ':' || (hold_until_ms > 0) FROM acd.callbacks WHERE call_id = 't33-cb'",
                      "1:true"), "a try counted, the next held off");
    /* call_gone: the caller is gone, an abandon. */
    CHECK(fx_enqueue(&s_fx, 0, "t33-c1", "r28", 0, NULL, NULL) == 0 && strcmp(s_agent("t33a")->call, "t33-c1") == 0,
          "a caller is offered to t33a (the held callback is not)");
    CHECK(fx_rejected(&s_fx, 0, "t33-c1", "t33a", "call_gone") == 0, "the gateway has no such call");
    Cc__QueueAbandoned *ab = EVENT("queue.abandoned", cc__queue_abandoned, Cc__QueueAbandoned, "t33-c1", 2000);
    cc__queue_abandoned__free_unpacked(ab, NULL);
    CHECK(!s_call("t33-c1") && strcmp(s_agent("t33a")->state, "ready") == 0, "t33-c1 is gone, t33a ready");
    /* call_busy: the gateway is busy with the call; it waits, offered to
     * nobody for the offer time (1 s), then to the next agent. */
    CHECK(fx_enqueue(&s_fx, 0, "t33-c2", "r28", 0, NULL, NULL) == 0 && strcmp(s_agent("t33a")->call, "t33-c2") == 0,
          "another caller is offered");
    CHECK(fx_rejected(&s_fx, 0, "t33-c2", "t33a", "call_busy") == 0, "the gateway is busy with it");
    Cc__QueueRequeued *rq = EVENT("queue.requeued", cc__queue_requeued, Cc__QueueRequeued, "t33-c2", 2000);
    CHECK(strcmp(rq->reason, "call_busy") == 0, "requeued: %s", rq->reason);
    cc__queue_requeued__free_unpacked(rq, NULL);
    a = s_agent("t33a");
    c = s_call("t33-c2");
    CHECK(strcmp(a->state, "ready") == 0 && c && strcmp(c->state, "waiting") == 0 && c->waiting_in == 1,
          "t33a ready, t33-c2 waiting in its place, not offered again at once (%s, %s)", a->state, c ? c->state : "-");
    int64_t end = cc_mono_ms() + 5000;
    while (strcmp(s_agent("t33a")->call, "t33-c2") != 0 && cc_mono_ms() < end) cc_sleep_ms(50);
    CHECK(strcmp(s_agent("t33a")->state, "reserved") == 0, "after the hold it is offered again");
    /* Any other reason is the agent's. */
    CHECK(fx_rejected(&s_fx, 0, "t33-c2", "t33a", "busy") == 0, "the agent's phone is busy");
    a = s_agent("t33a");
    CHECK(strcmp(a->state, "not_ready") == 0, "t33a is not ready (%s)", a->state);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t33-c2", NULL) == 0 && fx_call_op(&s_fx, 0, "acd.cancel", "t33-cb", NULL) == 0,
          "end");
    CHECK(fx_state(&s_fx, 0, "t33a", "logged_out", "") == 0, "logout");
    TEST_PASS(__func__);
}

/* The score of member in sorted set key, -1 when it is not there. */
static double
s_score(const char *key, const char *member)
{
    redisReply *r = cc_redis_cmdf(s_fx.redis, "ZSCORE %s %s", key, member);
    double v = r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : -1;
    if (r) freeReplyObject(r);
    return v;
}

/* Queue q as acd.status (through instance 1) tells it; fails the test if
 * it is not listed. */
static Cc__QueueStatus
s_queue_status(const char *q)
{
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(s_fx.client[1], "acd.status", NULL, 0, 3000, &r) == 0 && r->status == 0, "status");
    Cc__AcdStatus *st = cc__acd_status__unpack(NULL, r->payload.len, r->payload.data);
    cc__reply__free_unpacked(r, NULL);
    CHECK(st, "status decodes");
    Cc__QueueStatus copy = CC__QUEUE_STATUS__INIT;
    bool found = false;
    for (size_t i = 0; i < st->n_queues; i++)
        if (strcmp(st->queues[i]->queue, q) == 0) {
            copy = *st->queues[i];
            copy.queue = NULL;   /* freed with st */
            found = true;
        }
    cc__acd_status__free_unpacked(st, NULL);
    CHECK(found, "queue %s listed", q);
    return copy;
}

/* Runs sql on PostgreSQL, then has instance i read the queues again. */
static void
s_pg_reload(int i, const char *sql)
{
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(pg) == 0 && cc_pg_run(pg, sql, NULL) == 0, "%s", sql);
    cc_pg_destroy(&pg);
    char err[256];
    CHECK(fx_request(&s_fx, i, "acd.reload", NULL, 0, err, sizeof err) == 0, "reload: %s", err);
}

/* A callback keeps its place outside its queue's calling hours but is
 * offered to nobody (the calls behind it are served meanwhile, and a
 * holiday counts as closed); when the hours begin, an agent already ready
 * takes it at once. */
static void
callbacks_wait_for_their_queues_calling_hours(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t31-c1", "r26", 0, NULL, NULL) == 0, "first caller");
    char err[256];
    CHECK(fx_callback(&s_fx, 0, "t31-c1", "+4930123456", err, sizeof err) == 0, "callback: %s", err);
    cc__callback_requested__free_unpacked(
        EVENT("callback.requested", cc__callback_requested, Cc__CallbackRequested, "t31-c1", 2000), NULL);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t31-c1", NULL) == 0, "the caller hangs up");
    CHECK(fx_enqueue(&s_fx, 1, "t31-c2", "r26", 0, NULL, NULL) == 0, "a caller behind the callback");
    CHECK(fx_login(&s_fx, 1, "t31a", "", "r26") == 0, "agent");
    fx_call_t *c = s_call("t31-c2");
    CHECK(c && strcmp(c->agent, "t31a") == 0, "the caller behind is served (%s)", c ? c->agent : "gone");
    c = s_call("t31-c1");
    CHECK(c && strcmp(c->state, "waiting") == 0 && c->waiting_in == 0 && s_score("acd:queue:r26:held", "t31-c1") == c->rank,
          "the callback keeps its place, held, not offered");
    CHECK(fx_call_op(&s_fx, 1, "acd.ended", "t31-c2", NULL) == 0, "that call ends");
    CHECK(strcmp(s_agent("t31a")->state, "ready") == 0 && strcmp(s_call("t31-c1")->state, "waiting") == 0,
          "the agent is ready, the callback still held");
    Cc__QueueStatus qs = s_queue_status("r26");
    CHECK(qs.waiting == 1 && qs.callbacks == 1 && qs.calling_hours_closed && qs.ready == 1,
          "status: 1 waiting, a callback, held (%u %u %d)", qs.waiting, qs.callbacks, qs.calling_hours_closed);

    /* Calling hours today, but today is a holiday of r26: still held. */
    s_pg_reload(0, "UPDATE acd.callback_hours SET dow = extract(dow FROM now() AT TIME ZONE 'UTC')::int"
                   " WHERE queue = 'r26';"
                   "INSERT INTO acd.holidays (queue, day, name) VALUES ('r26', (now() AT TIME ZONE 'UTC')::date, 'x')");
    CHECK(strcmp(s_call("t31-c1")->state, "waiting") == 0 && strcmp(s_agent("t31a")->state, "ready") == 0,
          "no callbacks on a holiday");

    /* The hours begin: the agent already ready takes the callback at once. */
    s_pg_reload(1, "DELETE FROM acd.holidays WHERE queue = 'r26'");
    Cc__QueueOffered *o = EVENT("queue.offered", cc__queue_offered, Cc__QueueOffered, "t31-c1", 2000);
    CHECK(strcmp(o->agent_id, "t31a") == 0 && strcmp(o->queue, "r26") == 0, "offered to %s", o->agent_id);
    cc__queue_offered__free_unpacked(o, NULL);
    c = s_call("t31-c1");
    CHECK(c && strcmp(c->state, "offered") == 0 && strcmp(s_agent("t31a")->state, "reserved") == 0
          && s_score("acd:queue:r26:held", "t31-c1") < 0, "offered, held no more");
    qs = s_queue_status("r26");
    CHECK(qs.waiting == 0 && qs.callbacks == 0 && !qs.calling_hours_closed, "status: none waiting, hours open");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "t31-c1", "t31a") == 0
          && fx_call_op(&s_fx, 0, "acd.ended", "t31-c1", NULL) == 0, "the customer answers, then hangs up");
    CHECK(fx_state(&s_fx, 0, "t31a", "logged_out", "") == 0, "logout");
    TEST_PASS(__func__);
}

/* More callbacks held by the calling hours than an agent becoming ready
 * looks at (64) do not hide the caller behind them, and count in that
 * caller's position; the queue emptying (leave_when_empty) sends its
 * callers away but keeps the callbacks. */
static void
held_callbacks_do_not_hide_the_callers_behind_them(void)
{
    TEST_BEGIN(__func__);
    enum { HELD = 70 };
    for (int i = 0; i < HELD; i++) {
        char call[32];
        snprintf(call, sizeof call, "t32-cb%d", i);
        CHECK(fx_enqueue(&s_fx, i % 2, call, "r27", 0, NULL, NULL) == 0, "enqueue %s", call);
        char err[256];
        CHECK(fx_callback(&s_fx, i % 2, call, "+4930999", err, sizeof err) == 0, "callback %s: %s", call, err);
        CHECK(fx_call_op(&s_fx, i % 2, "acd.ended", call, NULL) == 0, "hang-up %s", call);
    }
    unsigned pos = 0;
    CHECK(fx_enqueue(&s_fx, 0, "t32-x", "r27", 0, NULL, &pos) == 0 && pos == HELD + 1,
          "a caller behind them is told position %u (of %d)", pos, HELD + 1);
    CHECK(fx_login(&s_fx, 1, "t32a", "", "r27") == 0, "an agent becomes ready");
    fx_call_t *c = s_call("t32-x");
    CHECK(c && strcmp(c->state, "offered") == 0 && strcmp(c->agent, "t32a") == 0, "and takes the caller behind (%s)",
          c ? c->state : "gone");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t32-x", NULL) == 0, "that call ends");
    CHECK(fx_state(&s_fx, 0, "t32a", "not_ready", "meeting") == 0, "the agent steps away");
    CHECK(fx_enqueue(&s_fx, 0, "t32-y", "r27", 0, NULL, NULL) == 0, "another caller waits");
    CHECK(fx_state(&s_fx, 1, "t32a", "logged_out", "") == 0, "the last agent leaves");
    Cc__QueueLeft *l = EVENT("queue.left", cc__queue_left, Cc__QueueLeft, "t32-y", 2000);
    CHECK(strcmp(l->reason, "empty") == 0, "the caller is sent away: %s", l->reason);
    cc__queue_left__free_unpacked(l, NULL);
    Cc__QueueStatus qs = s_queue_status("r27");
    CHECK(qs.waiting == HELD && qs.callbacks == HELD && qs.calling_hours_closed,
          "the %d callbacks stay (%u waiting, %u callbacks)", HELD, qs.waiting, qs.callbacks);
    TEST_PASS(__func__);
}

static void
supervisor_force_logout_takes_a_ringing_agent_off(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t16a", "", "r9") == 0, "agent");
    CHECK(fx_enqueue(&s_fx, 0, "t16-c1", "r9", 0, NULL, NULL) == 0, "call");
    CHECK(strcmp(s_agent("t16a")->state, "reserved") == 0, "ringing");
    CHECK(fx_state(&s_fx, 0, "t16a", "logged_out", "") == CC__STATUS__STATUS_CONFLICT, "the agent alone cannot leave a ringing offer");
    Cc__AgentLogout m = CC__AGENT_LOGOUT__INIT;
    m.agent_id = "t16a";
    m.by = "supervisor-7";
    uint8_t buf[64];
    size_t len = cc__agent_logout__pack(&m, buf);
    char err[256];
    CHECK(fx_request(&s_fx, 0, "agent.logout", buf, len, err, sizeof err) == 0, "forced logout: %s", err);
    CHECK(strcmp(s_agent("t16a")->state, "logged_out") == 0, "logged out");
    fx_call_t *c = s_call("t16-c1");
    CHECK(c && strcmp(c->state, "waiting") == 0, "the call keeps its place");
    fx_call_op(&s_fx, 0, "acd.ended", "t16-c1", NULL);
    TEST_PASS(__func__);
}

static void
flagged_callers_go_to_their_queue_and_positions_are_announced(void)
{
    TEST_BEGIN(__func__);
    Cc__Enqueue m = CC__ENQUEUE__INIT;
    char *flags[] = { "abusive" };
    m.call_id = "t17-c1";
    m.queue = "r16";
    m.blacklist_flags = flags;
    m.n_blacklist_flags = 1;
    uint8_t buf[128];
    size_t len = cc__enqueue__pack(&m, buf);
    char err[256];
    CHECK(fx_request(&s_fx, 0, "acd.enqueue", buf, len, err, sizeof err) == 0, "flagged: %s", err);
    CHECK(strcmp(s_call("t17-c1")->queue, "r17") == 0, "went to the flagged callers' queue");
    fx_call_op(&s_fx, 0, "acd.ended", "t17-c1", NULL);

    /* r16 plays jazz and announces the position every second. */
    CHECK(fx_enqueue(&s_fx, 0, "t17-c2", "r16", 0, NULL, NULL) == 0, "first");
    Cc__Enqueue m2 = CC__ENQUEUE__INIT;
    m2.call_id = "t17-c3";
    m2.queue = "r16";
    len = cc__enqueue__pack(&m2, buf);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(s_fx.client[0], "acd.enqueue", buf, len, 3000, &reply) == 0 && reply->status == 0, "second");
    Cc__Enqueued *e = cc__enqueued__unpack(NULL, reply->payload.len, reply->payload.data);
    CHECK(e && e->position == 2 && strcmp(e->music, "jazz") == 0 && e->estimated_wait_s > 0,
          "position %u, music %s, estimated wait %u s", e->position, e->music, e->estimated_wait_s);
    cc__enqueued__free_unpacked(e, NULL);
    cc__reply__free_unpacked(reply, NULL);
    Cc__QueuePosition *p = EVENT("queue.position", cc__queue_position, Cc__QueuePosition, "t17-c3", 3000);
    CHECK(p->position == 2 && strcmp(p->queue, "r16") == 0, "announced position %u", p->position);
    cc__queue_position__free_unpacked(p, NULL);
    CHECK(fx_login(&s_fx, 0, "t17a", "", "r16") == 0, "agent");
    CHECK(fx_call_op(&s_fx, 0, "acd.answered", "t17-c2", "t17a") == 0, "answer");
    Cc__QueueAnswered *a = EVENT("queue.answered", cc__queue_answered, Cc__QueueAnswered, "t17-c2", 2000);
    CHECK(a->within_service_level, "answered within the 60 s service level");
    cc__queue_answered__free_unpacked(a, NULL);
    fx_call_op(&s_fx, 0, "acd.ended", "t17-c2", NULL);
    fx_call_op(&s_fx, 0, "acd.ended", "t17-c3", NULL);
    fx_state(&s_fx, 0, "t17a", "logged_out", "");
    TEST_PASS(__func__);
}

static void
deleted_queue_is_pruned_on_reload(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t18-c1", "r4", 0, NULL, NULL) == 0, "a call waits in r4");
    s_pg_reload(1, "DELETE FROM acd.queues WHERE name = 'r4'");
    Cc__QueueLeft *l = EVENT("queue.left", cc__queue_left, Cc__QueueLeft, "t18-c1", 2000);
    CHECK(strcmp(l->reason, "queue_removed") == 0, "reason %s", l->reason);
    cc__queue_left__free_unpacked(l, NULL);
    CHECK(fx_enqueue(&s_fx, 0, "t18-c2", "r4", 0, NULL, NULL) == CC__STATUS__STATUS_NOT_FOUND, "r4 is gone");
    TEST_PASS(__func__);
}

/* A queue's strategy edited while its agents are logged in ranks them by
 * the new one from their next ready on. */
static void
strategy_edited_while_agents_are_logged_in_applies(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "t25-low", "support:1", "r25") == 0, "login low");
    cc_sleep_ms(20);
    CHECK(fx_login(&s_fx, 0, "t25-high", "support:5", "r25") == 0, "login high");
    /* r25 becomes best_skill. */
    s_pg_reload(1, "UPDATE acd.queues SET strategy = 'best_skill', skills = 'support:1' WHERE name = 'r25'");
    /* Both come back, the less skilled one first (longest idle). */
    CHECK(fx_state(&s_fx, 0, "t25-low", "not_ready", "brief") == 0 && fx_state(&s_fx, 0, "t25-high", "not_ready", "brief") == 0,
          "both not ready");
    CHECK(fx_state(&s_fx, 0, "t25-low", "ready", "") == 0, "low ready");
    cc_sleep_ms(20);
    CHECK(fx_state(&s_fx, 0, "t25-high", "ready", "") == 0, "high ready");
    CHECK(fx_enqueue(&s_fx, 1, "t25-c1", "r25", 0, NULL, NULL) == 0, "a call");
    fx_agent_t *a = s_agent("t25-high");
    CHECK(strcmp(a->state, "reserved") == 0 && strcmp(a->call, "t25-c1") == 0,
          "the most skilled agent gets it (%s %s)", a->state, a->call);
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t25-c1", NULL) == 0, "hang-up");
    TEST_PASS(__func__);
}

/* acd.lua as acd loads it, or with a line added: another version of the
 * library (as during an upgrade: its own copy of what it keeps between
 * calls). */
static const char *
s_lib_text(bool other)
{
    static char *lib[2];
    if (!lib[other]) {
        FILE *f = fopen(ACD_SOURCE_DIR "/lua/acd.lua", "r");
        CHECK(f, "read acd.lua");
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        lib[other] = calloc(1, (size_t) n + 64);
        CHECK(lib[other] && fread(lib[other], 1, (size_t) n, f) == (size_t) n, "read acd.lua");
        fclose(f);
        if (other) strcat(lib[other], "\n-- another version\n");
    }
    return lib[other];
}

/* Runs one operation (request id rid, arguments a1 and a2 or NULL) straight
 * on Redis, through this version's library or another's. Its reply text
 * goes to out. Returns 0 when Redis answered with one. */
static int
s_library_op(bool other, const char *rid, const char *op, const char *a1, const char *a2, char *out, size_t cap)
{
    const char *name = other ? "acdnext" : "acd";
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(r && cc_redis_connect(r) == 0, "connect to Redis");
    cc_redis_function(r, name, s_lib_text(other));
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long) (cc_wall_us() / 1000));
    const char *args[] = { "1", "", a2 ? "5" : "4", rid, op, now, a1, a2 };
    redisReply *rep = cc_redis_eval(r, name, 0, NULL, a2 ? 8 : 7, args);
    int rc = rep && rep->type == REDIS_REPLY_STRING ? 0 : -1;
    snprintf(out, cap, "%s", rep && rep->str ? rep->str : "");
    if (rep) freeReplyObject(rep);
    cc_redis_destroy(&r);
    return rc;
}

static int
s_other_version_op(const char *op, const char *a1, const char *a2)
{
    char text[512];
    return s_library_op(true, "", op, a1, a2, text, sizeof text) == 0 && strstr(text, "\"ok\"") ? 0 : -1;
}

/* A queue closed by another acd version is closed for this one at its next
 * call, though each keeps the queues' settings from call to call. */
static void
queue_closed_by_another_version_is_seen_at_once(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_enqueue(&s_fx, 0, "t26-c1", "r25", 0, NULL, NULL) == 0, "r25 takes a call (its settings are read)");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t26-c1", NULL) == 0, "hang-up");
    CHECK(s_other_version_op("open", "r25", "0") == 0, "the other version closes r25");
    char err[256];
    CHECK(s_enqueue_refused("t26-c2", "r25", err, sizeof err) == CC__STATUS__STATUS_CONFLICT
          && strstr(err, "closed"), "this version finds r25 closed: %s", err);
    CHECK(s_other_version_op("open", "r25", "1") == 0, "the other version opens r25 again");
    CHECK(fx_enqueue(&s_fx, 1, "t26-c3", "r25", 0, NULL, NULL) == 0, "and this one takes calls again");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t26-c3", NULL) == 0, "hang-up");
    TEST_PASS(__func__);
}

/* A request retried after an acd older than the period hashes ran it (its
 * results under acd:batch:<id>, as those versions kept them) gets those
 * results back and does not run again. */
static void
retry_of_a_request_an_older_acd_ran_gets_its_results(void)
{
    TEST_BEGIN(__func__);
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(r && cc_redis_connect(r) == 0, "connect to Redis");
    long long bucket = (long long) (cc_wall_us() / 1000 / 10000);
    char key[64];
    snprintf(key, sizeof key, "acd:req:%lld", bucket);
    const char *hset[] = { "HSET", key, "t27-req", "oldbatch-1 1" };
    redisReply *x = cc_redis_cmd(r, 4, hset);
    CHECK(x && x->type == REDIS_REPLY_INTEGER, "the old version's request id");
    freeReplyObject(x);
    const char *set[] = { "SET", "acd:batch:oldbatch-1", "[[[\"ok\",\"run by an older acd\"]]]", "PX", "20000" };
    x = cc_redis_cmd(r, 5, set);
    CHECK(x && x->type == REDIS_REPLY_STATUS, "and its batch's results");
    freeReplyObject(x);
    cc_redis_destroy(&r);
    char text[512];
    CHECK(s_library_op(false, "?t27-req", "enqueue", "t27-c1", "r25", text, sizeof text) == 0, "the retry runs");
    CHECK(strstr(text, "\"replayed\"") && strstr(text, "run by an older acd"), "with the first results: %s", text);
    CHECK(s_call("t27-c1") == NULL, "and the call was not enqueued again");
    TEST_PASS(__func__);
}

/* The names of the acd_* libraries in Redis, comma-separated, into out. */
static void
s_libraries(char *out, size_t cap)
{
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(r && cc_redis_connect(r) == 0, "connect to Redis");
    redisReply *x = cc_redis_cmdf(r, "FUNCTION LIST LIBRARYNAME acd_*");
    CHECK(x && x->type == REDIS_REPLY_ARRAY, "FUNCTION LIST");
    out[0] = '\0';
    for (size_t i = 0; i < x->elements; i++) {
        CHECK(x->element[i]->elements >= 2, "a library's name");
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? "," : "", x->element[i]->element[1]->str);
    }
    freeReplyObject(x);
    cc_redis_destroy(&r);
}

/* Loads (or replaces) library name, whose one function answers body (a
 * Lua expression, which may use n, the number of operations of the batch:
 * a request may share its batch with acd's own tick); with body NULL,
 * deletes it. */
static void
s_load_library(const char *name, const char *body)
{
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(r && cc_redis_connect(r) == 0, "connect to Redis");
    redisReply *x;
    if (body) {
        char lua[1024];
        snprintf(lua, sizeof lua,
                 "#!lua name=%s\n"
                 "redis.register_function('%s', function(_, args) local n = tonumber(args[1]) return %s end)",
                 name, name, body);
        const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", lua };
        x = cc_redis_cmd(r, 4, argv);
    } else {
        const char *argv[] = { "FUNCTION", "DELETE", name };
        x = cc_redis_cmd(r, 3, argv);
    }
    CHECK(x && x->type != REDIS_REPLY_ERROR, "library %s replaced: %s", name, x && x->str ? x->str : "");
    freeReplyObject(x);
    cc_redis_destroy(&r);
}

/* Replaces the running library (named acd_<hash>, as every acd of this
 * version calls it) by one whose function answers body, or, with body
 * NULL, deletes it (acd loads its own again). */
static void
s_fake_library(const char *body)
{
    char names[256];
    s_libraries(names, sizeof names);
    CHECK(strlen(names) == 20 && !strchr(names, ','), "one library of this acd version: %s", names);
    s_load_library(names, body);
}

/* A reply of the script that acd cannot read (not JSON, not a list of
 * lists of actions, not one result per operation) fails the request as
 * internal, with a clear error; a well-formed one with numbers or empty
 * results is read; and acd goes on serving once its library is back. */
static void
unreadable_script_reply_is_an_internal_error_and_acd_recovers(void)
{
    TEST_BEGIN(__func__);
    static const char *bad[] = {
        "'not json'", "'[[[\"position\",\"x\"'", "'[]'", "'[' .. string.rep('[],', n) .. '[]]'", "'{\"a\":1}'", "'[{\"a\":1}]'",
        "'[[[[\"x\"]]]]'", "'\"text\"'", "42", "{ 1, 2 }",
    };
    char err[256], call[32];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_fake_library(bad[i]);
        snprintf(call, sizeof call, "t28-c%zu", i);
        Cc__Status st = s_enqueue_refused(call, "r25", err, sizeof err);
        CHECK(st == CC__STATUS__STATUS_INTERNAL && strstr(err, "acd script returned"),
              "reply %s: internal (%d): %s", bad[i], st, err);
    }
    /* Read right: numbers are given as their text, {} is no action. */
    unsigned pos = 0;
    s_fake_library("'[' .. string.rep('[[\"position\",\"t28-x\",7,0,null]],', n - 1) .. '[[\"position\",\"t28-x\",7,0,null]]]'");
    CHECK(fx_enqueue(&s_fx, 0, "t28-x", "r25", 0, NULL, &pos) == 0 && pos == 7, "a number read as such: %u", pos);
    s_fake_library("'[' .. string.rep('{},', n - 1) .. '{}]'");
    pos = 99;
    CHECK(fx_enqueue(&s_fx, 1, "t28-y", "r25", 0, NULL, &pos) == 0 && pos == 0, "an empty result: %u", pos);
    s_fake_library(NULL);
    CHECK(fx_enqueue(&s_fx, 0, "t28-z", "r25", 0, NULL, NULL) == 0, "acd loads its library again and serves");
    CHECK(s_call("t28-z") != NULL, "the call is in Redis");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t28-z", NULL) == 0, "hang-up");
    TEST_PASS(__func__);
}

/* A library an upgrade left behind (another acd version's, which no
 * running acd marks as its own) is removed at the next reload; one that a
 * running acd of another version marks stays, and so does this one's. */
static void
library_no_acd_runs_is_removed_at_reload(void)
{
    TEST_BEGIN(__func__);
    char own[256], names[256], err[256];
    s_libraries(own, sizeof own);
    s_load_library("acd_00000000deadbeef", "'[]'");
    s_load_library("acd_00000000cafef00d", "'[]'");
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(r && cc_redis_connect(r) == 0, "connect to Redis");
    freeReplyObject(cc_redis_cmdf(r, "SET acd:lib:acd_00000000cafef00d 1 EX 60"));
    CHECK(fx_request(&s_fx, 1, "acd.reload", NULL, 0, err, sizeof err) == 0, "reload: %s", err);
    s_libraries(names, sizeof names);
    CHECK(!strstr(names, "deadbeef"), "the unmarked library is gone: %s", names);
    CHECK(strstr(names, "cafef00d") && strstr(names, own), "the marked one and this version's stay: %s", names);
    redisReply *ttl = cc_redis_cmdf(r, "TTL acd:lib:%s", own);
    CHECK(ttl && ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 40, "this version's mark lasts: %lld s",
          ttl ? ttl->integer : -1);
    freeReplyObject(ttl);
    freeReplyObject(cc_redis_cmdf(r, "DEL acd:lib:acd_00000000cafef00d"));
    cc_redis_destroy(&r);
    s_load_library("acd_00000000cafef00d", NULL);
    CHECK(fx_enqueue(&s_fx, 0, "t29-c1", "r25", 0, NULL, NULL) == 0, "acd serves");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "t29-c1", NULL) == 0, "hang-up");
    TEST_PASS(__func__);
}

/* A counter of instance i's /metrics (-1 when absent). */
static long long
s_metric(int i, const char *name)
{
    char *body = NULL;
    CHECK(cc_harness_http_get(s_fx.admin[i], "/metrics", &body) == 200 && body, "GET /metrics");
    long long v = -1;
    size_t n = strlen(name);
    for (const char *p = body; (p = strstr(p, name)); p += n)
        if ((p == body || p[-1] == '\n') && p[n] == ' ') { v = atoll(p + n + 1); break; }
    free(body);
    return v;
}

/* /metrics tells how Redis keeps up: batches run, their operations and the
 * time waited for their replies grow with the requests. */
static void
metrics_count_batches_their_operations_and_waits(void)
{
    TEST_BEGIN(__func__);
    long long b0 = s_metric(0, "acd_batches_total"), o0 = s_metric(0, "acd_batch_operations_total"),
              w0 = s_metric(0, "acd_batch_wait_microseconds_total");
    CHECK(b0 >= 0 && o0 >= b0 && w0 >= 0, "the counters are there (%lld %lld %lld)", b0, o0, w0);
    for (int k = 0; k < 5; k++) {
        char call[32];
        snprintf(call, sizeof call, "t30-c%d", k);
        CHECK(fx_enqueue(&s_fx, 0, call, "r25", 0, NULL, NULL) == 0, "enqueue %s", call);
        CHECK(fx_call_op(&s_fx, 0, "acd.ended", call, NULL) == 0, "hang-up %s", call);
    }
    long long b1 = s_metric(0, "acd_batches_total"), o1 = s_metric(0, "acd_batch_operations_total"),
              w1 = s_metric(0, "acd_batch_wait_microseconds_total");
    /* Each request waits for its reply: its own batch at least (the tick
     * runs batches too). */
    CHECK(b1 - b0 >= 10 && o1 - o0 >= 10 && o1 - o0 >= b1 - b0 && w1 > w0,
          "batches %lld -> %lld, operations %lld -> %lld, wait %lld -> %lld us", b0, b1, o0, o1, w0, w1);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_rules_test", "acd_rules_test");
    fx_start(&s_fx, "acd-rules", 2, s_sql);
    cc_bus_opts_t o = { .service = "test", .instance = "rules", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&o);
    cc_bus_subscribe(s_events, "queue.");
    cc_bus_subscribe(s_events, "agent.");
    cc_bus_subscribe(s_events, "callback.");
    cc_sleep_ms(300);
    offer_timeout_puts_agent_not_ready_and_call_back_at_head();
    wrap_up_then_ready_takes_the_next_call();
    higher_priority_is_served_first();
    oldest_call_wins_across_queues();
    sticky_call_waits_for_its_last_agent_then_anyone();
    skills_widen_as_the_wait_grows();
    full_queue_refuses_and_not_ready_waits_for_the_call_to_end();
    bad_requests_get_clear_errors_and_change_nothing();
    overflow_after_a_while_keeps_the_callers_place();
    max_wait_leaves_the_queue_with_an_event();
    empty_queue_rules_refuse_and_release_callers();
    closed_queue_rejects_or_overflows();
    overflow_applies_the_target_queues_admission_rules();
    status_lists_queues_and_agents_with_the_oldest_wait();
    callback_keeps_its_place_and_is_retried();
    callbacks_wait_for_their_queues_calling_hours();
    held_callbacks_do_not_hide_the_callers_behind_them();
    refusals_for_the_calls_sake_leave_the_agent_ready();
    supervisor_force_logout_takes_a_ringing_agent_off();
    flagged_callers_go_to_their_queue_and_positions_are_announced();
    deleted_queue_is_pruned_on_reload();
    strategy_edited_while_agents_are_logged_in_applies();
    queue_closed_by_another_version_is_seen_at_once();
    retry_of_a_request_an_older_acd_ran_gets_its_results();
    unreadable_script_reply_is_an_internal_error_and_acd_recovers();
    library_no_acd_runs_is_removed_at_reload();
    metrics_count_batches_their_operations_and_waits();
    cc_bus_destroy(&s_events);
    fx_stop(&s_fx);
    cc_log_shutdown();
    printf("acd_rules_test: 27 passed, 0 failed\n");
    return 0;
}
