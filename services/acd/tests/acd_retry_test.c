/* acd_retry_test: a reply lost between Redis and acd never turns an
 * operation Redis ran into a failure, nor runs it twice.
 *
 * acd reaches Redis through a small TCP relay in this test. Armed with a
 * call or agent id, the relay lets the next command naming it through to
 * Redis, which runs it, then drops the reply and closes the connection, as a
 * network failure would. acd reconnects and sends the operations again; with
 * their request ids they return the first run's outcome.
 *
 * lost_enqueue_reply_is_not_a_conflict: the caller is told the call is
 *   queued (not "already queued"), it is in Redis once, and a new request
 *   for the same call is refused as a duplicate.
 * lost_login_reply_is_not_already_logged_in: the agent is ready, once.
 * lost_rerun_reply_is_sent_once_more: the reply is lost three times: the
 *   batch as first sent, then as sent again and as resent after the
 *   reconnection that follows (cc_redis's own retry). acd sends it once more
 *   and the caller is told the first run's outcome (its batch id makes every
 *   run after the first return the first's results).
 * lost_ended_reply_is_not_unknown_call: the hang-up is told ok (not "no
 *   call"), the agent it freed is ready and the call is gone.
 * retry_through_another_instance_replies_alike_once: a request retried with
 *   its id through a second instance (directly on Redis) after the first
 *   answered gets the same reply; the call is offered once and its events
 *   are published once.
 * retried_callback_request_after_its_answer_stays_done: a callback request
 *   retried through the second instance after the callback was answered
 *   (its first run's actions are carried out again) leaves the callback
 *   done in acd.callbacks: it would come back after a Redis loss else. */
#define _GNU_SOURCE   /* accept4 */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_bus.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "queue.pb-c.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static fx_t s_fx;
static fx_snap_t s_snap;
static cc_bus_t *s_events;

/* ------------------------------------------------------------- the relay */

static int s_redis_port;
static pthread_mutex_t s_arm_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_armed[64];             /* drop the reply to the next commands naming this */
static int s_armed_left;             /* how many more times */
static atomic_int s_dropped;

static int
s_connect_redis(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) s_redis_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof a) == 0, "relay: connect to Redis");
    return fd;
}

/* Whether buf holds the armed id (then disarmed). */
static bool
s_take_armed(const char *buf, size_t n)
{
    pthread_mutex_lock(&s_arm_lock);
    size_t m = strlen(s_armed);
    bool hit = false;
    for (size_t i = 0; m && i + m <= n && !hit; i++) hit = memcmp(buf + i, s_armed, m) == 0;
    if (hit && --s_armed_left <= 0) s_armed[0] = '\0';
    pthread_mutex_unlock(&s_arm_lock);
    return hit;
}

static void *
s_relay_conn(void *arg)
{
    int client = (int) (intptr_t) arg, server = s_connect_redis();
    bool drop_next = false;
    char buf[65536];
    for (;;) {
        struct pollfd p[2] = { { .fd = client, .events = POLLIN }, { .fd = server, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) break;
        if (p[0].revents) {
            ssize_t n = read(client, buf, sizeof buf);
            if (n <= 0) break;
            if (s_take_armed(buf, (size_t) n)) drop_next = true;
            if (write(server, buf, (size_t) n) != n) break;
        }
        if (p[1].revents) {
            ssize_t n = read(server, buf, sizeof buf);
            if (n <= 0) break;
            if (drop_next) {
                /* Redis ran it; its reply never arrives. */
                atomic_fetch_add(&s_dropped, 1);
                break;
            }
            if (write(client, buf, (size_t) n) != n) break;
        }
    }
    close(client);
    close(server);
    return NULL;
}

static void *
s_relay(void *arg)
{
    int listener = (int) (intptr_t) arg;
    for (;;) {
        /* Close-on-exec: an acd started later must not hold a copy of a
         * connection the relay closes (it would never see the close). */
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) return NULL;
        pthread_t t;
        pthread_create(&t, NULL, s_relay_conn, (void *) (intptr_t) fd);
        pthread_detach(t);
    }
}

/* Listens on a free port for acd. Returns the port. */
static int
s_start_relay(void)
{
    const char *url = getenv("REDIS_URL");
    s_redis_port = atoi(strrchr(url, ':') + 1);
    int port = cc_harness_free_port();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof a) == 0 && listen(fd, 16) == 0, "relay listens");
    pthread_t t;
    pthread_create(&t, NULL, s_relay, (void *) (intptr_t) fd);
    pthread_detach(t);
    return port;
}

/* Drops the replies to the next n commands naming id. */
static void
s_arm_n(const char *id, int n)
{
    pthread_mutex_lock(&s_arm_lock);
    snprintf(s_armed, sizeof s_armed, "%s", id);
    s_armed_left = n;
    pthread_mutex_unlock(&s_arm_lock);
}

static void
s_arm(const char *id)
{
    s_arm_n(id, 1);
}

/* ----------------------------------------------------------------- tests */

static int
s_count_calls(const char *id)
{
    fx_snapshot(&s_fx, &s_snap);
    int n = 0;
    for (int i = 0; i < s_snap.nc; i++) n += strcmp(s_snap.calls[i].id, id) == 0;
    return n;
}

static void
lost_login_reply_is_not_already_logged_in(void)
{
    TEST_BEGIN(__func__);
    int before = atomic_load(&s_dropped);
    s_arm("lostagent");
    int st = fx_login(&s_fx, 0, "lostagent", "sales:3", "l1");
    CHECK(st == 0, "login told ok (%d)", st);
    CHECK(atomic_load(&s_dropped) == before + 1, "the relay dropped the reply to the login");
    fx_snapshot(&s_fx, &s_snap);
    fx_agent_t *a = fx_snap_agent(&s_snap, "lostagent");
    CHECK(a && strcmp(a->state, "ready") == 0, "the agent is ready (%s)", a ? a->state : "absent");
    CHECK(fx_login(&s_fx, 0, "lostagent", "sales:3", "l1") == CC__STATUS__STATUS_CONFLICT,
          "a new login request is still refused as a second login");
    TEST_PASS(__func__);
}

static void
lost_enqueue_reply_is_not_a_conflict(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_state(&s_fx, 0, "lostagent", "not_ready", "away") == 0, "nobody ready: the call will wait");
    int before = atomic_load(&s_dropped);
    s_arm("lost-call-1");
    unsigned position = 0;
    CHECK(fx_enqueue(&s_fx, 0, "lost-call-1", "l1", 0, NULL, &position) == 0, "enqueue told ok");
    CHECK(atomic_load(&s_dropped) == before + 1, "the relay dropped the reply to the enqueue");
    CHECK(position == 1, "with its position from the first run (%u)", position);
    CHECK(s_count_calls("lost-call-1") == 1, "the call is in Redis once");
    fx_call_t *c = fx_snap_call(&s_snap, "lost-call-1");
    CHECK(strcmp(c->state, "waiting") == 0 && c->waiting_in == 1, "waiting in one wait set");
    CHECK(fx_enqueue(&s_fx, 0, "lost-call-1", "l1", 0, NULL, NULL) == CC__STATUS__STATUS_CONFLICT,
          "a new request for the same call is refused as a duplicate");
    TEST_PASS(__func__);
}

static void
lost_rerun_reply_is_sent_once_more(void)
{
    TEST_BEGIN(__func__);
    int before = atomic_load(&s_dropped);
    s_arm_n("lost-call-2", 3);
    unsigned position = 0;
    CHECK(fx_enqueue(&s_fx, 0, "lost-call-2", "l1", 0, NULL, &position) == 0, "enqueue told ok");
    CHECK(atomic_load(&s_dropped) == before + 3, "the relay dropped the reply three times (%d)",
          atomic_load(&s_dropped) - before);
    CHECK(position == 2, "with its position from the first run (%u)", position);
    CHECK(s_count_calls("lost-call-2") == 1, "the call is in Redis once");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "lost-call-2", NULL) == 0, "the caller hangs up");
    CHECK(s_count_calls("lost-call-2") == 0, "the call is gone");
    TEST_PASS(__func__);
}

static void
lost_ended_reply_is_not_unknown_call(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_state(&s_fx, 0, "lostagent", "ready", "") == 0, "the agent takes the call");
    fx_snapshot(&s_fx, &s_snap);
    fx_agent_t *a = fx_snap_agent(&s_snap, "lostagent");
    CHECK(a && strcmp(a->state, "reserved") == 0 && strcmp(a->call, "lost-call-1") == 0, "offered");
    int before = atomic_load(&s_dropped);
    s_arm("lost-call-1");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "lost-call-1", NULL) == 0, "hang-up told ok");
    CHECK(atomic_load(&s_dropped) == before + 1, "the relay dropped the reply to the hang-up");
    CHECK(s_count_calls("lost-call-1") == 0, "the call is gone");
    a = fx_snap_agent(&s_snap, "lostagent");
    CHECK(a && strcmp(a->state, "ready") == 0 && !a->call[0], "the agent is free (%s)", a ? a->state : "absent");
    CHECK(fx_call_op(&s_fx, 0, "acd.ended", "lost-call-1", NULL) == CC__STATUS__STATUS_NOT_FOUND,
          "a new hang-up request finds no call");
    TEST_PASS(__func__);
}

/* How many events of type about call arrive within ms. */
static int
s_count_events(const char *type, const char *call, int ms)
{
    int n = 0;
    int64_t end = cc_mono_ms() + ms;
    Cc__Envelope *env;
    while (cc_mono_ms() < end) {
        if (cc_bus_recv(s_events, &env, 50) != 0) continue;
        n += strcmp(env->type, type) == 0 && strcmp(env->trace_id, call) == 0;
        cc__envelope__free_unpacked(env, NULL);
    }
    return n;
}

static void
retry_through_another_instance_replies_alike_once(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_state(&s_fx, 0, "lostagent", "logged_out", "") == 0, "the other agent leaves");
    CHECK(fx_login(&s_fx, 0, "xagent", "", "l1") == 0, "login");
    Cc__Enqueue m = CC__ENQUEUE__INIT;
    m.call_id = "x-call-1";
    m.queue = "l1";
    Cc__Reply *first = NULL, *again = NULL;
    CHECK(fx_request_as(&s_fx, 0, "x-req-1", "acd.enqueue", &m.base, &first) == 0, "enqueue through instance 0");
    CHECK(fx_request_as(&s_fx, 1, "x-req-1", "acd.enqueue", &m.base, &again) == 0,
          "the retry through instance 1 is told ok, not a duplicate");
    CHECK(first->payload.len == again->payload.len
          && memcmp(first->payload.data, again->payload.data, first->payload.len) == 0,
          "with the first reply's payload");
    cc__reply__free_unpacked(first, NULL);
    cc__reply__free_unpacked(again, NULL);
    CHECK(s_count_calls("x-call-1") == 1, "the call is in Redis once");
    fx_agent_t *a = fx_snap_agent(&s_snap, "xagent");
    CHECK(a && strcmp(a->state, "reserved") == 0 && strcmp(a->call, "x-call-1") == 0, "offered to the agent");
    CHECK(a->last_offer > 0, "offered");
    int64_t offer = a->last_offer;
    CHECK(s_count_events("queue.entered", "x-call-1", 500) == 1, "queue.entered published once");
    CHECK(fx_request_as(&s_fx, 1, "x-req-2", "acd.enqueue", &m.base, NULL) == CC__STATUS__STATUS_CONFLICT,
          "a new request for the call is a duplicate");
    fx_snapshot(&s_fx, &s_snap);
    CHECK(fx_snap_agent(&s_snap, "xagent")->last_offer == offer, "and no second offer was made");
    CHECK(fx_call_op(&s_fx, 1, "acd.ended", "x-call-1", NULL) == 0, "hang-up");
    TEST_PASS(__func__);
}

static void
retried_callback_request_after_its_answer_stays_done(void)
{
    TEST_BEGIN(__func__);
    CHECK(fx_state(&s_fx, 1, "xagent", "not_ready", "brief") == 0, "the agent steps away");
    CHECK(fx_enqueue(&s_fx, 1, "x-cb-1", "l1", 0, NULL, NULL) == 0, "a caller waits");
    Cc__CallbackRequest cb = CC__CALLBACK_REQUEST__INIT;
    cb.call_id = "x-cb-1";
    cb.number = "+4930555";
    CHECK(fx_request_as(&s_fx, 0, "x-req-cb", "acd.callback", &cb.base, NULL) == 0, "asks for a callback");
    CHECK(fx_call_op(&s_fx, 1, "acd.ended", "x-cb-1", NULL) == 0, "and hangs up");
    CHECK(fx_state(&s_fx, 1, "xagent", "ready", "") == 0, "the agent is back");
    CHECK(fx_call_op(&s_fx, 1, "acd.answered", "x-cb-1", "xagent") == 0, "the customer answers the callback");
    CHECK(fx_pg_until("SELECT done::text FROM acd.callbacks WHERE call_id = 'x-cb-1'", "true"), "the callback is done");
    CHECK(fx_request_as(&s_fx, 1, "x-req-cb", "acd.callback", &cb.base, NULL) == 0,
          "the request retried through instance 1 gets its first reply");
    CHECK(fx_call_op(&s_fx, 1, "acd.ended", "x-cb-1", NULL) == 0, "the call ends");
    /* Instance 1's writes are applied in order: the agent's logout after the retry's. */
    CHECK(fx_state(&s_fx, 1, "xagent", "logged_out", "") == 0, "the agent leaves");
    CHECK(fx_pg_until("SELECT count(*)::text FROM acd.sessions WHERE agent_id = 'xagent'", "0"), "its session is gone");
    char done[16];
    fx_pg_text("SELECT done::text FROM acd.callbacks WHERE call_id = 'x-cb-1'", done, sizeof done);
    CHECK(strcmp(done, "true") == 0, "the retry's write left the callback done (%s)", done);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("acd_retry_test", "acd_retry_test");
    fx_start(&s_fx, "acd-retry", 0, "INSERT INTO acd.queues (name, offer_timeout_ms, wrap_up_ms) VALUES ('l1', 300000, 0)");
    /* One instance, reaching Redis through the relay. */
    char relay[64], redis[128];
    snprintf(redis, sizeof redis, "%s", getenv("REDIS_URL"));
    snprintf(relay, sizeof relay, "redis://127.0.0.1:%d", s_start_relay());
    setenv("REDIS_URL", relay, 1);
    s_fx.n = 1;
    snprintf(s_fx.rpc[0], sizeof s_fx.rpc[0], "tcp://127.0.0.1:%d", cc_harness_free_port());
    s_fx.admin[0] = cc_harness_free_port();
    fx_start_instance(&s_fx, 0);
    cc_rpc_client_opts_t o = { .endpoint = s_fx.rpc[0], .source = "acd-retry", .retry_ms = 2000, .max_attempts = 1 };
    s_fx.client[0] = cc_rpc_client_new(&o);
    /* A second instance, on Redis directly. */
    setenv("REDIS_URL", redis, 1);
    s_fx.n = 2;
    snprintf(s_fx.rpc[1], sizeof s_fx.rpc[1], "tcp://127.0.0.1:%d", cc_harness_free_port());
    s_fx.admin[1] = cc_harness_free_port();
    fx_start_instance(&s_fx, 1);
    o.endpoint = s_fx.rpc[1];
    s_fx.client[1] = cc_rpc_client_new(&o);
    cc_bus_opts_t bo = { .service = "test", .instance = "retry", .sub_endpoint = getenv("CC_BUS_SUB") };
    s_events = cc_bus_new(&bo);
    cc_bus_subscribe(s_events, "queue.");
    lost_login_reply_is_not_already_logged_in();
    lost_enqueue_reply_is_not_a_conflict();
    lost_rerun_reply_is_sent_once_more();
    lost_ended_reply_is_not_unknown_call();
    retry_through_another_instance_replies_alike_once();
    retried_callback_request_after_its_answer_stays_done();
    cc_bus_destroy(&s_events);
    fx_stop(&s_fx);
    cc_log_shutdown();
    printf("acd_retry_test: 6 passed, 0 failed\n");
    return 0;
}
