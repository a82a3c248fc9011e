/* rpc_test: request/reply against a real service process (echo_service).
 *
 * handler_death_returns_timeout_at_deadline: the service dies mid-request;
 *   the caller gets a timeout at its deadline, not a hang.
 * retried_request_is_executed_once: a slow handler makes the client resend
 *   four times; the handler ran once, and one reply reached the caller.
 * malformed_request_gets_bad_request: garbage gets an error reply and the
 *   service keeps serving.
 * thousand_async_requests_each_answered_once: the loop client under load. */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"

#include <czmq.h>
#include <string.h>
#include <sys/wait.h>

static char s_rpc[64];
static int s_admin;

static pid_t
s_start_echo(cc_harness_t *h)
{
    char admin[16];
    s_admin = cc_harness_free_port();
    snprintf(admin, sizeof admin, "%d", s_admin);
    setenv("ECHO_ADMIN_PORT", admin, 1);
    setenv("ECHO_RPC", s_rpc, 1);
    pid_t pid = cc_harness_spawn(h, ECHO_BIN, NULL);
    CHECK(cc_harness_wait_http(s_admin, "/healthz", 20000), "echo service healthy (see %s)", cc_harness_dir(h));
    return pid;
}

static cc_rpc_client_t *
s_client(int retry_ms, int attempts)
{
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "rpc_test", .retry_ms = retry_ms, .max_attempts = attempts };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    CHECK(c, "client");
    return c;
}

static char *
s_text(const Cc__Reply *r)
{
    char *t = malloc(r->payload.len + 1);
    memcpy(t, r->payload.data, r->payload.len);
    t[r->payload.len] = 0;
    return t;
}

static void
handler_death_returns_timeout_at_deadline(cc_harness_t *h, pid_t *echo)
{
    TEST_BEGIN(__func__);
    cc_rpc_client_t *c = s_client(100, 3);
    Cc__Reply *reply = NULL;
    int64_t t0 = zclock_mono();
    int rc = cc_rpc_call_sync(c, "echo.die", NULL, 0, 1000, &reply);
    int64_t took = zclock_mono() - t0;
    CHECK(rc == CC_ETIMEDOUT, "rc=%s", cc_errname(rc));
    CHECK(took >= 990 && took < 3000, "timed out after %lld ms for a 1000 ms deadline", (long long) took);
    int status = cc_harness_stop(h, *echo, SIGTERM, 5000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3, "the service died in its handler (status %d)", status);
    cc_rpc_client_destroy(&c);
    *echo = s_start_echo(h);
    TEST_PASS(__func__);
}

typedef struct { int replies; Cc__Status status; char *payload; cc_loop_t *loop; int want; } got_t;

static void
s_on_reply(void *arg, const Cc__Reply *r)
{
    got_t *g = arg;
    g->replies++;
    g->status = r->status;
    free(g->payload);
    g->payload = s_text(r);
    if (g->replies >= g->want) cc_loop_stop(g->loop);
}

static void
s_on_guard(uv_timer_t *t)
{
    cc_loop_stop(t->data);
}

/* Runs the loop until want replies or 10 s. */
static void
s_run_loop(cc_loop_t *loop)
{
    uv_timer_t guard;
    uv_timer_init(cc_loop_uv(loop), &guard);
    guard.data = loop;
    uv_timer_start(&guard, s_on_guard, 10000, 0);
    cc_loop_run(loop);
    uv_close((uv_handle_t *) &guard, NULL);
    uv_run(cc_loop_uv(loop), UV_RUN_NOWAIT);
}

static void
retried_request_is_executed_once(void)
{
    TEST_BEGIN(__func__);
    cc_loop_t *loop = cc_loop_new();
    cc_rpc_client_t *c = s_client(50, 5);
    cc_rpc_client_attach(c, loop);
    got_t got = { .loop = loop, .want = 1 };
    CHECK(cc_rpc_call(c, "echo.slow", "t-1", "400", 3, 3000, s_on_reply, &got) == 0, "call");
    s_run_loop(loop);
    /* Let late duplicate replies (if any) arrive: still one reply. */
    uv_run(cc_loop_uv(loop), UV_RUN_NOWAIT);
    zclock_sleep(200);
    uv_run(cc_loop_uv(loop), UV_RUN_NOWAIT);
    CHECK(got.replies == 1, "replies=%d", got.replies);
    CHECK(got.status == CC__STATUS__STATUS_OK && strcmp(got.payload, "slow") == 0, "status=%d", got.status);
    cc_rpc_client_destroy(&c);
    cc_loop_destroy(&loop);
    free(got.payload);

    cc_rpc_client_t *sync = s_client(100, 3);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(sync, "echo.count", NULL, 0, 2000, &reply) == 0, "count");
    char *n = s_text(reply);
    CHECK(strcmp(n, "1") == 0, "the slow handler ran %s times for one request sent 5 times", n);
    free(n);
    cc__reply__free_unpacked(reply, NULL);
    cc_rpc_client_destroy(&sync);
    TEST_PASS(__func__);
}

static void
malformed_request_gets_bad_request(void)
{
    TEST_BEGIN(__func__);
    zsock_t *raw = zsock_new_dealer(s_rpc);
    zstr_send(raw, "\x0a\xff\xff\xff garbage that is not a Request");
    zsock_set_rcvtimeo(raw, 3000);
    zframe_t *f = zframe_recv(raw);
    CHECK(f, "an error reply to garbage");
    Cc__Reply *r = cc__reply__unpack(NULL, zframe_size(f), zframe_data(f));
    CHECK(r && r->status == CC__STATUS__STATUS_BAD_REQUEST, "status %d", r ? (int) r->status : -1);
    cc__reply__free_unpacked(r, NULL);
    zframe_destroy(&f);
    zsock_destroy(&raw);
    cc_rpc_client_t *c = s_client(100, 3);
    Cc__Reply *reply = NULL;
    CHECK(cc_rpc_call_sync(c, "echo.echo", "still here", 10, 2000, &reply) == 0, "still serving");
    CHECK(reply->payload.len == 10, "echo");
    cc__reply__free_unpacked(reply, NULL);
    CHECK(cc_rpc_call_sync(c, "no.such.method", NULL, 0, 2000, &reply) == 0, "reply to unknown method");
    CHECK(reply->status == CC__STATUS__STATUS_NOT_FOUND, "status %d", reply->status);
    cc__reply__free_unpacked(reply, NULL);
    cc_rpc_client_destroy(&c);
    TEST_PASS(__func__);
}

static void
thousand_async_requests_each_answered_once(void)
{
    TEST_BEGIN(__func__);
    cc_loop_t *loop = cc_loop_new();
    cc_rpc_client_t *c = s_client(1000, 3);
    cc_rpc_client_attach(c, loop);
    got_t got = { .loop = loop, .want = 1000 };
    for (int i = 0; i < 1000; i++) CHECK(cc_rpc_call(c, "echo.echo", NULL, "x", 1, 5000, s_on_reply, &got) == 0, "call");
    s_run_loop(loop);
    CHECK(got.replies == 1000, "replies=%d", got.replies);
    cc_rpc_client_destroy(&c);
    cc_loop_destroy(&loop);
    free(got.payload);
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("rpc_test", "rpc_test");
    cc_harness_t *h = cc_harness_new("rpc");
    cc_harness_start_pg(h);
    cc_harness_start_redis(h);
    cc_harness_start_forwarder(h, false, 10000);
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    pid_t echo = s_start_echo(h);
    handler_death_returns_timeout_at_deadline(h, &echo);
    retried_request_is_executed_once();
    malformed_request_gets_bad_request();
    thousand_async_requests_each_answered_once();
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("rpc_test: 4 passed, 0 failed\n");
    return 0;
}
