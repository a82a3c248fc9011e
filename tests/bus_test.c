/* bus_test: events through the real forwarder process.
 *
 * events_arrive_in_order_to_two_subscribers: 100,000 events, a lossless
 *   (nodrop) forwarder, two subscribers on their own threads: each gets all
 *   of them, in order, with no gap.
 * slow_subscriber_sees_its_gaps_counted: a subscriber that does not read while
 *   20,000 events pass a dropping forwarder with a small high-water mark: what
 *   it gets plus what its gap counter says it lost is exactly what was sent. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "call.pb-c.h"

#include <czmq.h>
#include <pthread.h>
#include <string.h>

#define EVENTS 100000

typedef struct {
    int received;
    uint64_t last_seq;
    bool in_order;
    uint64_t gaps;
    cc_bus_t *bus;
} sub_t;

static cc_bus_t *
s_subscriber(int hwm)
{
    cc_bus_opts_t o = { .service = "test", .instance = "sub", .sub_endpoint = getenv("CC_BUS_SUB"), .hwm = hwm };
    cc_bus_t *bus = cc_bus_new(&o);
    CHECK(bus, "subscriber");
    cc_bus_subscribe(bus, "call.");
    return bus;
}

static void *
s_read_all(void *arg)
{
    sub_t *s = arg;
    s->in_order = true;
    Cc__Envelope *env;
    while (s->received < EVENTS && cc_bus_recv(s->bus, &env, 10000) == 0) {
        Cc__CallDtmf *d = cc__call_dtmf__unpack(NULL, env->payload.len, env->payload.data);
        CHECK(d && strcmp(d->call_id, env->trace_id) == 0, "payload decodes and matches the trace id");
        if (env->sequence != s->last_seq + 1) s->in_order = false;
        s->last_seq = env->sequence;
        s->received++;
        cc__call_dtmf__free_unpacked(d, NULL);
        cc__envelope__free_unpacked(env, NULL);
    }
    s->gaps = cc_bus_gaps(s->bus);
    return NULL;
}

/* Publishes probes until the subscriber sees one: ZeroMQ subscriptions
 * travel asynchronously ("slow joiner"). Returns the probes' type count. */
static void
s_wait_joined(cc_bus_t *pub, cc_bus_t **subs, int nsubs)
{
    for (int i = 0; i < nsubs; i++) cc_bus_subscribe(subs[i], "probe.");
    for (int tries = 0; tries < 200; tries++) {
        cc_bus_publish(pub, "probe.join", NULL, NULL, 0);
        int seen = 0;
        for (int i = 0; i < nsubs; i++) {
            Cc__Envelope *env;
            if (cc_bus_recv(subs[i], &env, 50) == 0) {
                cc__envelope__free_unpacked(env, NULL);
                seen++;
            }
        }
        if (seen == nsubs) {
            for (int i = 0; i < nsubs; i++) {
                cc_bus_unsubscribe(subs[i], "probe.");
                Cc__Envelope *env;   /* drain leftover probes */
                while (cc_bus_recv(subs[i], &env, 100) == 0) cc__envelope__free_unpacked(env, NULL);
            }
            return;
        }
    }
    CHECK(0, "subscribers never joined");
}

static void
events_arrive_in_order_to_two_subscribers(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    cc_harness_start_forwarder(h, true, 1000);
    cc_bus_opts_t po = { .service = "test", .instance = "pub", .pub_endpoint = getenv("CC_BUS_PUB"),
                         .hwm = 1000, .nodrop = true };
    cc_bus_t *pub = cc_bus_new(&po);
    sub_t subs[2] = { { .bus = s_subscriber(1000) }, { .bus = s_subscriber(1000) } };
    cc_bus_t *buses[2] = { subs[0].bus, subs[1].bus };
    s_wait_joined(pub, buses, 2);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, s_read_all, &subs[i]);
    for (int i = 0; i < EVENTS; i++) {
        char call_id[32];
        snprintf(call_id, sizeof call_id, "call-%d", i);
        Cc__CallDtmf d = CC__CALL_DTMF__INIT;
        d.call_id = call_id;
        d.digit = "5";
        d.duration_ms = 100;
        d.method = "rfc4733";
        CHECK(cc_bus_publish_msg(pub, "call.dtmf", call_id, &d) == 0, "publish %d", i);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(subs[i].received == EVENTS, "subscriber %d got %d of %d", i, subs[i].received, EVENTS);
        CHECK(subs[i].in_order, "subscriber %d saw events out of order", i);
        CHECK(subs[i].gaps == 0, "subscriber %d counted %llu lost", i, (unsigned long long) subs[i].gaps);
        CHECK(subs[i].last_seq == EVENTS, "last sequence %llu", (unsigned long long) subs[i].last_seq);
        cc_bus_destroy(&subs[i].bus);
    }
    cc_bus_destroy(&pub);
    TEST_PASS(__func__);
}

static void
slow_subscriber_sees_its_gaps_counted(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    const int sent = 20000;
    cc_harness_start_forwarder(h, false, 100);
    cc_bus_opts_t po = { .service = "test", .instance = "pub2", .pub_endpoint = getenv("CC_BUS_PUB"), .hwm = 100000 };
    cc_bus_t *pub = cc_bus_new(&po);
    cc_bus_t *slow = s_subscriber(100);
    s_wait_joined(pub, &slow, 1);
    /* The subscriber reads nothing while the burst passes. */
    char payload[200];
    memset(payload, 'x', sizeof payload);
    for (int i = 0; i < sent - 1; i++) CHECK(cc_bus_publish(pub, "call.audio", NULL, payload, sizeof payload) == 0, "publish");
    zclock_sleep(500);
    int received = 0;
    Cc__Envelope *env;
    while (cc_bus_recv(slow, &env, 300) == 0) { received++; cc__envelope__free_unpacked(env, NULL); }
    /* One last event after the backlog is read: it reveals the hole before it. */
    CHECK(cc_bus_publish(pub, "call.audio", NULL, payload, sizeof payload) == 0, "publish last");
    CHECK(cc_bus_recv(slow, &env, 5000) == 0, "last event arrives");
    CHECK(env->sequence == (uint64_t) sent, "last sequence %llu", (unsigned long long) env->sequence);
    cc__envelope__free_unpacked(env, NULL);
    received++;
    uint64_t lost = cc_bus_gaps(slow);
    printf("slow subscriber: received %d, counted lost %llu, sent %d\n", received, (unsigned long long) lost, sent);
    CHECK(lost > 0, "a subscriber that did not read lost nothing? (hwm not applied)");
    CHECK((uint64_t) received + lost == (uint64_t) sent, "received %d + lost %llu != sent %d: a silent loss",
          received, (unsigned long long) lost, sent);
    cc_bus_destroy(&slow);
    cc_bus_destroy(&pub);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("bus_test", "bus_test");
    cc_harness_t *h = cc_harness_new("bus");
    events_arrive_in_order_to_two_subscribers(h);
    cc_harness_destroy(&h);
    h = cc_harness_new("bus2");
    slow_subscriber_sees_its_gaps_counted(h);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("bus_test: 2 passed, 0 failed\n");
    return 0;
}
