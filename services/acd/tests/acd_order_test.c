/* acd_order_test: requests sent back to back, without waiting for their
 * replies, are applied in the order they arrived, although acd sends a
 * batch to Redis without waiting for the previous one's reply.
 *
 * pipelined_offer_rejection_cancel_and_ready_keep_their_order: 100 rounds
 *   of enqueue (offered to the only agent), rejected (the agent not_ready,
 *   no_answer; the call back in its queue), cancel (the call leaves) and
 *   ready, all 400 sent at once over one connection: each is accepted (a
 *   reordering makes rejected, cancel or ready fail), the agent ends
 *   ready with no call left, and it went not_ready(no_answer) 100 times.
 * connection_cut_with_batches_out_loses_and_repeats_nothing: the same 400
 *   requests (another agent, another queue) while acd's Redis connections
 *   are killed again and again (CLIENT KILL after every 40 requests sent,
 *   then every 8 ms for 60 ms): the batches out when a connection dies run
 *   again, in order, from their kept results when Redis ran them already.
 *   Every request is still accepted once, the agent ends ready with no call
 *   left, and not_ready(no_answer) is published 100 times, no more. */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 100

static fx_t s_fx;
static cc_bus_t *s_bus;   /* agent.state events */

/* Sends one request frame (no waiting) with id "<tag>-<n>" (ids are
 * unique: the RPC server answers a repeated one from its cache). */
static void
s_send(zsock_t *dealer, const char *tag, int n, const char *method, const ProtobufCMessage *m)
{
    uint8_t payload[512];
    size_t plen = protobuf_c_message_pack(m, payload);
    char id[32];
    snprintf(id, sizeof id, "%s-%d", tag, n);
    Cc__Request req = CC__REQUEST__INIT;
    req.request_id = id;
    req.method = (char *) method;
    req.attempt = 1;
    req.source = "acd-order-test";
    req.payload.data = payload;
    req.payload.len = plen;
    req.timeout_us = 30000000;
    uint8_t buf[1024];
    size_t len = cc__request__pack(&req, buf);
    zframe_t *f = zframe_new(buf, len);
    CHECK(zframe_send(&f, dealer, 0) == 0, "request %d sent", n);
}

/* The 400 requests of ROUNDS rounds for agent, sent at once; with cut, acd's
 * Redis connections are killed meanwhile. Checks what both cases promise. */
static void
s_rounds(const char *agent, const char *queue, const char *prefix, bool cut)
{
    CHECK(fx_login(&s_fx, 0, agent, "", queue) == 0, "login");
    zsock_t *dealer = zsock_new_dealer(s_fx.rpc[0]);
    CHECK(dealer, "dealer");
    zsock_set_rcvtimeo(dealer, 30000);
    cc_bus_t *bus = s_bus;
    int n = 0;
    for (int r = 0; r < ROUNDS; r++) {
        char call[32];
        snprintf(call, sizeof call, "%s%d", prefix, r);
        Cc__Enqueue e = CC__ENQUEUE__INIT;
        e.call_id = call;
        e.queue = (char *) queue;
        s_send(dealer, agent, n++, "acd.enqueue", &e.base);
        Cc__CallRef rj = CC__CALL_REF__INIT;
        rj.call_id = call;
        rj.agent_id = (char *) agent;
        rj.reason = "no_answer";
        s_send(dealer, agent, n++, "acd.rejected", &rj.base);
        Cc__CallRef cn = CC__CALL_REF__INIT;
        cn.call_id = call;
        s_send(dealer, agent, n++, "acd.cancel", &cn.base);
        Cc__AgentSetState st = CC__AGENT_SET_STATE__INIT;
        st.agent_id = (char *) agent;
        st.state = CC__AGENT_STATE__AGENT_READY;
        s_send(dealer, agent, n++, "agent.set_state", &st.base);
        if (cut && r % 10 == 9) {   /* while acd has batches out */
            cc_sleep_ms(1);
            redisReply *k = cc_redis_cmdf(s_fx.redis, "CLIENT KILL TYPE normal SKIPME yes");
            if (k) freeReplyObject(k);
        }
    }
    for (int64_t end = cc_mono_ms() + 60; cut && cc_mono_ms() < end; cc_sleep_ms(8)) {
        redisReply *k = cc_redis_cmdf(s_fx.redis, "CLIENT KILL TYPE normal SKIPME yes");
        if (k) freeReplyObject(k);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        zframe_t *f = zframe_recv(dealer);
        CHECK(f, "reply %d of %d", i + 1, n);
        Cc__Reply *rep = cc__reply__unpack(NULL, zframe_size(f), zframe_data(f));
        zframe_destroy(&f);
        CHECK(rep, "reply decodes");
        CHECK(rep->status == CC__STATUS__STATUS_OK, "%s: status %d (%s)", rep->request_id, rep->status, rep->error);
        ok++;
        cc__reply__free_unpacked(rep, NULL);
    }
    CHECK(ok == 4 * ROUNDS, "every request accepted: %d", ok);
    fx_snap_t *snap = calloc(1, sizeof *snap);
    CHECK(snap, "alloc");
    fx_snapshot(&s_fx, snap);
    fx_agent_t *a = fx_snap_agent(snap, agent);
    CHECK(a && strcmp(a->state, "ready") == 0, "%s ends ready (%s)", agent, a ? a->state : "absent");
    CHECK(snap->nc == 0, "no call left (%d)", snap->nc);
    free(snap);
    int no_answer = 0;
    Cc__Envelope *env;
    for (int64_t end = cc_mono_ms() + 10000; no_answer < ROUNDS && cc_mono_ms() < end;) {
        if (cc_bus_recv(bus, &env, 100) != 0) continue;
        Cc__AgentStateChanged *ev = cc__agent_state_changed__unpack(NULL, env->payload.len, env->payload.data);
        cc__envelope__free_unpacked(env, NULL);
        if (ev && ev->state == CC__AGENT_STATE__AGENT_NOT_READY && strcmp(ev->reason, "no_answer") == 0
            && strcmp(ev->agent_id, agent) == 0)
            no_answer++;
        if (ev) cc__agent_state_changed__free_unpacked(ev, NULL);
    }
    CHECK(no_answer == ROUNDS, "%s went not_ready(no_answer) %d times, not %d", agent, no_answer, ROUNDS);
    /* None more comes (a batch run twice would publish its events twice). */
    for (int64_t end = cc_mono_ms() + 500; cc_mono_ms() < end;) {
        if (cc_bus_recv(bus, &env, 100) != 0) continue;
        Cc__AgentStateChanged *ev = cc__agent_state_changed__unpack(NULL, env->payload.len, env->payload.data);
        cc__envelope__free_unpacked(env, NULL);
        CHECK(!ev || strcmp(ev->agent_id, agent) != 0 || ev->state != CC__AGENT_STATE__AGENT_NOT_READY,
              "no repeated not_ready for %s", agent);
        if (ev) cc__agent_state_changed__free_unpacked(ev, NULL);
    }
    zsock_destroy(&dealer);
}

static void
pipelined_offer_rejection_cancel_and_ready_keep_their_order(void)
{
    TEST_BEGIN(__func__);
    s_rounds("or-1", "o1", "or-c", false);
    TEST_PASS(__func__);
}

static void
connection_cut_with_batches_out_loses_and_repeats_nothing(void)
{
    TEST_BEGIN(__func__);
    s_rounds("or-2", "o2", "oc-c", true);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_order_test", "acd_order_test");
    fx_start(&s_fx, "acd-order", 1, "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms) VALUES ('o1', 300000, 0), ('o2', 300000, 0)");
    cc_bus_opts_t bo = { .service = "test", .instance = "order", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_bus = cc_bus_new(&bo);
    cc_bus_subscribe(s_bus, "agent.state");
    cc_sleep_ms(300);   /* the subscription reaches the forwarder */
    pipelined_offer_rejection_cancel_and_ready_keep_their_order();
    connection_cut_with_batches_out_loses_and_repeats_nothing();
    cc_bus_destroy(&s_bus);
    fx_stop(&s_fx);
    cc_log_shutdown();
    printf("acd_order_test: 2 passed, 0 failed\n");
    return 0;
}
