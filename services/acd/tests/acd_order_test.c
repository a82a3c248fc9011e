/* acd_order_test: requests sent back to back, without waiting for their
 * replies, are applied in the order they arrived, although acd sends a
 * batch to Redis without waiting for the previous one's reply.
 *
 * pipelined_offer_rejection_cancel_and_ready_keep_their_order: 100 rounds
 *   of enqueue (offered to the only agent), rejected (the agent not_ready,
 *   no_answer; the call back in its queue), cancel (the call leaves) and
 *   ready, all 400 sent at once over one connection: each is accepted (a
 *   reordering makes rejected, cancel or ready fail), the agent ends
 *   ready with no call left, and it went not_ready(no_answer) 100 times. */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 100

static fx_t s_fx;

/* Sends one request frame (no waiting) with id "<n>". */
static void
s_send(zsock_t *dealer, int n, const char *method, const ProtobufCMessage *m)
{
    uint8_t payload[512];
    size_t plen = protobuf_c_message_pack(m, payload);
    char id[32];
    snprintf(id, sizeof id, "order-%d", n);
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

static void
pipelined_offer_rejection_cancel_and_ready_keep_their_order(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_login(&s_fx, 0, "or-1", "", "o1") == 0, "login");
    zsock_t *dealer = zsock_new_dealer(s_fx.rpc[0]);
    CHECK(dealer, "dealer");
    zsock_set_rcvtimeo(dealer, 30000);
    cc_bus_opts_t bo = { .service = "test", .instance = "order", .sub_endpoint = getenv("CC_BUS_SUB") };
    cc_bus_t *bus = cc_bus_new(&bo);
    cc_bus_subscribe(bus, "agent.state");
    cc_sleep_ms(300);   /* the subscription reaches the forwarder */
    int n = 0;
    for (int r = 0; r < ROUNDS; r++) {
        char call[32];
        snprintf(call, sizeof call, "or-c%d", r);
        Cc__Enqueue e = CC__ENQUEUE__INIT;
        e.call_id = call;
        e.queue = "o1";
        s_send(dealer, n++, "acd.enqueue", &e.base);
        Cc__CallRef rj = CC__CALL_REF__INIT;
        rj.call_id = call;
        rj.agent_id = "or-1";
        rj.reason = "no_answer";
        s_send(dealer, n++, "acd.rejected", &rj.base);
        Cc__CallRef cn = CC__CALL_REF__INIT;
        cn.call_id = call;
        s_send(dealer, n++, "acd.cancel", &cn.base);
        Cc__AgentSetState st = CC__AGENT_SET_STATE__INIT;
        st.agent_id = "or-1";
        st.state = CC__AGENT_STATE__AGENT_READY;
        s_send(dealer, n++, "agent.set_state", &st.base);
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
    fx_agent_t *a = fx_snap_agent(snap, "or-1");
    CHECK(a && strcmp(a->state, "ready") == 0, "or-1 ends ready (%s)", a ? a->state : "absent");
    CHECK(snap->nc == 0, "no call left (%d)", snap->nc);
    free(snap);
    int no_answer = 0;
    Cc__Envelope *env;
    for (int64_t end = cc_mono_ms() + 10000; no_answer < ROUNDS && cc_mono_ms() < end;) {
        if (cc_bus_recv(bus, &env, 100) != 0) continue;
        Cc__AgentStateChanged *ev = cc__agent_state_changed__unpack(NULL, env->payload.len, env->payload.data);
        cc__envelope__free_unpacked(env, NULL);
        if (ev && ev->state == CC__AGENT_STATE__AGENT_NOT_READY && strcmp(ev->reason, "no_answer") == 0) no_answer++;
        if (ev) cc__agent_state_changed__free_unpacked(ev, NULL);
    }
    CHECK(no_answer == ROUNDS, "or-1 went not_ready(no_answer) %d times, not %d", no_answer, ROUNDS);
    cc_bus_destroy(&bus);
    zsock_destroy(&dealer);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_order_test", "acd_order_test");
    fx_start(&s_fx, "acd-order", 1, "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms) VALUES ('o1', 300000, 0)");
    pipelined_offer_rejection_cancel_and_ready_keep_their_order();
    fx_stop(&s_fx);
    cc_log_shutdown();
    printf("acd_order_test: 1 passed, 0 failed\n");
    return 0;
}
