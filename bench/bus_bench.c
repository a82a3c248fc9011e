/* bus_bench: throughput and latency of the bus, ours against plain libzmq.
 *
 * Events: 1 publisher -> the forwarder process -> 1 subscriber, 200-byte
 * payloads, lossless (nodrop: the publisher is held back, not dropped).
 * Ours wraps each payload in the protobuf Envelope and decodes it with
 * sequence tracking; raw sends the same two frames (topic, 200 bytes) with
 * plain libzmq through the same forwarder.
 * Request/reply: one outstanding request over TCP loopback; ours is
 * cc_rpc_client -> cc_rpc_server on a libuv loop; raw is DEALER -> ROUTER
 * echo with plain libzmq.
 * Prints "bus.<figure> <value> <unit>" lines. */
#include "cc_harness.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"

#include <czmq.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAYLOAD 200

static int s_events = 1000000;
static int s_round_trips = 20000;

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ events */

typedef struct { int got; double end; uint64_t gaps; bool raw; } sub_result_t;

static void *
s_our_subscriber(void *arg)
{
    sub_result_t *r = arg;
    cc_bus_opts_t o = { .service = "bench", .instance = "sub", .sub_endpoint = getenv("CC_BUS_SUB"), .hwm = 10000 };
    cc_bus_t *bus = cc_bus_new(&o);
    cc_bus_subscribe(bus, "bench.");
    Cc__Envelope *env;
    while (r->got < s_events && cc_bus_recv(bus, &env, 5000) == 0) {
        if (strcmp(env->type, "bench.event") == 0 && env->payload.len == PAYLOAD) r->got++;
        cc__envelope__free_unpacked(env, NULL);
    }
    r->end = s_now();
    r->gaps = cc_bus_gaps(bus);
    cc_bus_destroy(&bus);
    return NULL;
}

static void *
s_raw_subscriber(void *arg)
{
    sub_result_t *r = arg;
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int hwm = 10000, tmo = 5000;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_connect(sub, getenv("CC_BUS_SUB"));
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "raw.", 4);
    char topic[64], body[1024];
    while (r->got < s_events) {
        if (zmq_recv(sub, topic, sizeof topic, 0) < 0) break;
        int n = zmq_recv(sub, body, sizeof body, 0);
        if (n == PAYLOAD && strncmp(topic, "raw.event", 9) == 0) r->got++;
    }
    r->end = s_now();
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return NULL;
}

/* Publishes probes until the subscriber thread has joined, then the run. */
static double
s_events_run(bool raw, uint64_t *lost)
{
    sub_result_t r = { .raw = raw };
    pthread_t th;
    pthread_create(&th, NULL, raw ? s_raw_subscriber : s_our_subscriber, &r);
    char payload[PAYLOAD];
    memset(payload, 'p', sizeof payload);
    cc_bus_t *bus = NULL;
    void *ctx = NULL, *pub = NULL;
    if (raw) {
        ctx = zmq_ctx_new();
        pub = zmq_socket(ctx, ZMQ_PUB);
        int hwm = 10000, on = 1;
        zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(pub, ZMQ_XPUB_NODROP, &on, sizeof on);
        zmq_connect(pub, getenv("CC_BUS_PUB"));
    } else {
        cc_bus_opts_t o = { .service = "bench", .instance = "pub", .pub_endpoint = getenv("CC_BUS_PUB"),
                            .hwm = 10000, .nodrop = true };
        bus = cc_bus_new(&o);
    }
    zclock_sleep(500);   /* subscriptions travel up through the forwarder */
    double start = s_now();
    for (int i = 0; i < s_events; i++) {
        if (raw) {
            zmq_send(pub, "raw.event", 9, ZMQ_SNDMORE);
            zmq_send(pub, payload, sizeof payload, 0);
        } else {
            cc_bus_publish(bus, "bench.event", "call-1", payload, sizeof payload);
        }
    }
    pthread_join(th, NULL);
    double rate = r.got / (r.end - start);
    *lost = (uint64_t) (s_events - r.got) + r.gaps;
    if (raw) { zmq_close(pub); zmq_ctx_term(ctx); }
    cc_bus_destroy(&bus);
    return rate;
}

/* ---------------------------------------------------------- req/rep */


static void
s_echo(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, req->payload.data, req->payload.len);
}

static const cc_rpc_method_t s_methods[] = { { "bench.echo", s_echo, "echo" }, CC_RPC_METHODS_END };

typedef struct { const char *endpoint; uv_async_t stop; cc_loop_t *loop; volatile int ready; } server_t;

static void s_on_stop(uv_async_t *a) { cc_loop_stop(((server_t *) a->data)->loop); }

static void *
s_our_server(void *arg)
{
    server_t *s = arg;
    s->loop = cc_loop_new();
    cc_rpc_server_t *server = cc_rpc_server_new(s->endpoint, s_methods, NULL, NULL);
    cc_rpc_server_attach(server, s->loop);
    uv_async_init(cc_loop_uv(s->loop), &s->stop, s_on_stop);
    s->stop.data = s;
    s->ready = 1;
    cc_loop_run(s->loop);
    cc_rpc_server_destroy(&server);
    cc_loop_destroy(&s->loop);
    return NULL;
}

static void *
s_raw_server(void *arg)
{
    server_t *s = arg;
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int tmo = 2000;
    zmq_setsockopt(router, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_bind(router, s->endpoint);
    s->ready = 1;
    char id[256], body[1024];
    for (;;) {
        int idn = zmq_recv(router, id, sizeof id, 0);
        if (idn < 0) break;
        int n = zmq_recv(router, body, sizeof body, 0);
        if (n == 4 && memcmp(body, "stop", 4) == 0) break;
        zmq_send(router, id, (size_t) idn, ZMQ_SNDMORE);
        zmq_send(router, body, (size_t) n, 0);
    }
    zmq_close(router);
    zmq_ctx_term(ctx);
    return NULL;
}

/* Returns round trips per second; fills p50/p99 in microseconds. */
static double
s_rr_run(bool raw, double *p50, double *p99)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", cc_harness_free_port());
    server_t s = { .endpoint = endpoint };
    pthread_t th;
    pthread_create(&th, NULL, raw ? s_raw_server : s_our_server, &s);
    while (!s.ready) zclock_sleep(1);
    cc_samples_t lat = { 0 };
    char payload[PAYLOAD];
    memset(payload, 'r', sizeof payload);
    double start = 0;
    if (raw) {
        void *ctx = zmq_ctx_new();
        void *dealer = zmq_socket(ctx, ZMQ_DEALER);
        zmq_connect(dealer, endpoint);
        char buf[1024];
        for (int i = -1000; i < s_round_trips; i++) {   /* 1000 warm-up trips */
            if (i == 0) start = s_now();
            double t0 = s_now();
            zmq_send(dealer, payload, sizeof payload, 0);
            zmq_recv(dealer, buf, sizeof buf, 0);
            if (i >= 0) cc_samples_add(&lat, (s_now() - t0) * 1e6);
        }
        zmq_send(dealer, "stop", 4, 0);
        zmq_close(dealer);
        zmq_ctx_term(ctx);
    } else {
        cc_rpc_client_opts_t o = { .endpoint = endpoint, .source = "bench", .retry_ms = 1000, .max_attempts = 3 };
        cc_rpc_client_t *c = cc_rpc_client_new(&o);
        for (int i = -1000; i < s_round_trips; i++) {
            if (i == 0) start = s_now();
            double t0 = s_now();
            Cc__Reply *reply = NULL;
            if (cc_rpc_call_sync(c, "bench.echo", payload, sizeof payload, 2000, &reply) == 0)
                cc__reply__free_unpacked(reply, NULL);
            if (i >= 0) cc_samples_add(&lat, (s_now() - t0) * 1e6);
        }
        cc_rpc_client_destroy(&c);
        uv_async_send(&s.stop);
    }
    double rate = s_round_trips / (s_now() - start);
    pthread_join(th, NULL);
    *p50 = cc_samples_quantile(&lat, 0.50);
    *p99 = cc_samples_quantile(&lat, 0.99);
    cc_samples_free(&lat);
    return rate;
}

int
main(int argc, char **argv)
{
    if (getenv("BENCH_EVENTS")) s_events = atoi(getenv("BENCH_EVENTS"));
    if (getenv("BENCH_ROUND_TRIPS")) s_round_trips = atoi(getenv("BENCH_ROUND_TRIPS"));
    cc_log_init("bench", "bench");
    cc_log_set_level(CC_LOG_WARN);
    cc_harness_t *h = cc_harness_new("bench");
    setenv("CC_LOG_LEVEL", "warn", 1);
    cc_harness_start_forwarder(h, true, 10000);

    uint64_t lost = 0, raw_lost = 0;
    double raw = s_events_run(true, &raw_lost);
    double ours = s_events_run(false, &lost);
    double rr_p50, rr_p99, raw_p50, raw_p99;
    double raw_rr = s_rr_run(true, &raw_p50, &raw_p99);
    double rr = s_rr_run(false, &rr_p50, &rr_p99);

    printf("bus.events_per_s %.0f events/s\n", ours);
    printf("bus.raw_events_per_s %.0f events/s\n", raw);
    printf("bus.events_ratio %.2f ratio\n", ours / raw);
    printf("bus.events_lost %llu events\n", (unsigned long long) lost);
    printf("bus.raw_events_lost %llu events\n", (unsigned long long) raw_lost);
    printf("bus.rr_per_s %.0f requests/s\n", rr);
    printf("bus.rr_p50_us %.1f us\n", rr_p50);
    printf("bus.rr_p99_us %.1f us\n", rr_p99);
    printf("bus.raw_rr_per_s %.0f requests/s\n", raw_rr);
    printf("bus.raw_rr_p50_us %.1f us\n", raw_p50);
    printf("bus.raw_rr_p99_us %.1f us\n", raw_p99);
    printf("bus.rr_p99_ratio %.2f ratio\n", rr_p99 / raw_p99);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    (void) argc;
    (void) argv;
    return 0;
}
