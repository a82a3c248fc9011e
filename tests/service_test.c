/* service_test: what every service gets from the cc_service skeleton, seen
 * from outside the process, as an operator would.
 *
 * bad_config_exits_nonzero_naming_key_and_value
 * print_config_masks_secrets
 * help_lists_every_key
 * healthz_reports_each_dependency_and_follows_outages: redis and the bus go
 *   down and come back; /healthz says so each time.
 * metrics_are_prometheus_text
 * sigterm_stops_cleanly */
#include "cc_check.h"
#include "cc_harness.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"

#include <czmq.h>
#include <string.h>
#include <sys/wait.h>

static int s_admin;
static char s_rpc[64];

/* Runs a binary to completion with extra env assignments; returns the exit
 * code and its output (caller frees). */
static int
s_run(cc_harness_t *h, const char *bin, const char *const *args, const char *const *env, char **out)
{
    char *saved[16] = { 0 };
    int n = 0;
    for (const char *const *e = env; e && *e && n < 16; e += 2, n++) {
        const char *old = getenv(e[0]);
        saved[n] = old ? strdup(old) : NULL;
        setenv(e[0], e[1], 1);
    }
    /* A log of its own: the long-running services keep theirs. */
    char log[512];
    snprintf(log, sizeof log, "%s/oneshot.log", cc_harness_dir(h));
    unlink(log);
    pid_t pid = cc_harness_spawn_as(h, "oneshot", bin, args);
    int status = cc_harness_stop(h, pid, 0, 10000);   /* signal 0: just wait */
    n = 0;
    for (const char *const *e = env; e && *e && n < 16; e += 2, n++) {   /* put back what was there */
        if (saved[n]) setenv(e[0], saved[n], 1);
        else unsetenv(e[0]);
        free(saved[n]);
    }
    *out = cc_harness_read_file(log);
    if (!*out) *out = strdup("");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
bad_config_exits_nonzero_naming_key_and_value(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    char *out;
    const char *port[] = { "FORWARDER_ADMIN_PORT", "http", NULL };
    int code = s_run(h, "forwarder", NULL, port, &out);
    CHECK(code == 2, "exit %d", code);
    CHECK(strstr(out, "FORWARDER_ADMIN_PORT=\"http\" (from env): not an integer in [0, 65535]"), "message: %s", out);
    free(out);
    const char *level[] = { "CC_LOG_LEVEL", "loud", NULL };
    code = s_run(h, "forwarder", NULL, level, &out);
    CHECK(code == 2 && strstr(out, "CC_LOG_LEVEL=\"loud\""), "exit %d: %s", code, out);
    free(out);
    const char *hwm[] = { "CC_BUS_HWM", "-5", NULL };
    code = s_run(h, "forwarder", NULL, hwm, &out);
    CHECK(code == 2 && strstr(out, "CC_BUS_HWM=\"-5\""), "exit %d: %s", code, out);
    free(out);
    const char *missing[] = { "--config", "/nonexistent/callcenter.env", NULL };
    code = s_run(h, "forwarder", missing, NULL, &out);
    CHECK(code == 2 && strstr(out, "cannot open defaults file /nonexistent/callcenter.env"), "exit %d: %s", code, out);
    free(out);
    const char *junk[] = { "--bogus", NULL };
    code = s_run(h, "forwarder", junk, NULL, &out);
    CHECK(code == 2, "unknown option: exit %d", code);
    free(out);
    /* A port already in use: a clear message and exit 1, not a crash. */
    const char *taken[] = { "FORWARDER_ADMIN_PORT", getenv("ECHO_ADMIN_PORT"), "CC_BUS_PUB", "tcp://127.0.0.1:1",
                            "CC_BUS_SUB", "tcp://127.0.0.1:2", NULL };
    code = s_run(h, "forwarder", NULL, taken, &out);
    CHECK(code == 1, "exit %d: %s", code, out);
    free(out);
    TEST_PASS(__func__);
}

static void
print_config_masks_secrets(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    char *out;
    const char *args[] = { "--print-config", NULL };
    const char *env[] = { "DATABASE_URL", "postgresql://cc:hunter2@127.0.0.1:5432/cc",
                          "REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0", NULL };
    int code = s_run(h, ECHO_BIN, args, env, &out);
    CHECK(code == 0, "exit %d", code);
    CHECK(strstr(out, "DATABASE_URL=postgresql://cc:****@127.0.0.1:5432/cc  # env"), "%s", out);
    CHECK(strstr(out, "REDIS_URL=redis://:****@127.0.0.1:6379/0  # env"), "%s", out);
    CHECK(!strstr(out, "hunter2") && !strstr(out, "s3cret"), "a secret was printed");
    CHECK(strstr(out, "CC_RPC_RETRY_MS=250  # file"), "defaults come from deploy/callcenter.env: %s", out);
    free(out);
    TEST_PASS(__func__);
}

static void
help_lists_every_key(cc_harness_t *h)
{
    TEST_BEGIN(__func__);
    char *out;
    const char *args[] = { "--help", NULL };
    int code = s_run(h, ECHO_BIN, args, NULL, &out);
    CHECK(code == 0, "exit %d", code);
    const char *keys[] = { "ECHO_ADMIN_PORT", "ECHO_RPC", "DATABASE_URL", "CC_BUS_PUB", "CC_LOG_LEVEL", NULL };
    for (const char **k = keys; *k; k++) CHECK(strstr(out, *k), "--help lacks %s", *k);
    free(out);
    TEST_PASS(__func__);
}

static char *
s_health(int *status)
{
    char *body = NULL;
    *status = cc_harness_http_get(s_admin, "/healthz", &body);
    return body ? body : strdup("");
}

/* Waits until /healthz has the wanted status and contains text. */
static void
s_wait_health(int want_status, const char *text)
{
    int status = 0;
    char *body = NULL;
    for (int i = 0; i < 200; i++) {
        free(body);
        body = s_health(&status);
        if (status == want_status && strstr(body, text)) { free(body); return; }
        zclock_sleep(50);
    }
    CHECK(0, "health never became %d with %s; last %d %s", want_status, text, status, body);
}

static void
healthz_reports_each_dependency_and_follows_outages(cc_harness_t *h, pid_t *forwarder)
{
    TEST_BEGIN(__func__);
    s_wait_health(200, "\"checks\":{\"postgres\":\"ok\",\"redis\":\"ok\",\"bus\":\"ok\"}");
    int status;
    char *body = s_health(&status);
    CHECK(strstr(body, "\"service\":\"echo\"") && strstr(body, "\"status\":\"ok\""), "%s", body);
    free(body);

    cc_harness_stop_redis(h);
    s_wait_health(503, "\"redis\":\"down\"");
    cc_harness_restart_redis(h);
    s_wait_health(200, "\"redis\":\"ok\"");

    int fstatus = cc_harness_stop(h, *forwarder, SIGTERM, 5000);
    CHECK(WIFEXITED(fstatus) && WEXITSTATUS(fstatus) == 0, "forwarder stops cleanly on SIGTERM (status %d)", fstatus);
    s_wait_health(503, "\"bus\":\"down\"");
    *forwarder = cc_harness_spawn(h, "forwarder", NULL);   /* same ports, from the environment */
    s_wait_health(200, "\"bus\":\"ok\"");

    cc_harness_stop_pg(h);
    s_wait_health(503, "\"postgres\":\"down\"");
    cc_harness_restart_pg(h);
    s_wait_health(200, "\"postgres\":\"ok\"");
    /* And the service works through it all. */
    cc_rpc_client_opts_t o = { .endpoint = s_rpc, .source = "t", .retry_ms = 200, .max_attempts = 3 };
    cc_rpc_client_t *c = cc_rpc_client_new(&o);
    Cc__Reply *r = NULL;
    CHECK(cc_rpc_call_sync(c, "echo.pg", NULL, 0, 5000, &r) == 0 && r->status == CC__STATUS__STATUS_OK, "pg after restart");
    cc__reply__free_unpacked(r, NULL);
    CHECK(cc_rpc_call_sync(c, "echo.redis", NULL, 0, 5000, &r) == 0 && r->status == CC__STATUS__STATUS_OK, "redis after restart");
    CHECK(r->payload.len == 1 && r->payload.data[0] == '1', "fresh redis counter");
    cc__reply__free_unpacked(r, NULL);
    cc_rpc_client_destroy(&c);
    TEST_PASS(__func__);
}

static void
metrics_are_prometheus_text(void)
{
    TEST_BEGIN(__func__);
    char *body = NULL;
    int status = cc_harness_http_get(s_admin, "/metrics", &body);
    CHECK(status == 200, "status %d", status);
    CHECK(strstr(body, "# TYPE cc_rpc_requests_total counter\ncc_rpc_requests_total 2\n"), "%s", body);
    CHECK(strstr(body, "# TYPE cc_bus_events_published_total counter"), "%s", body);
    CHECK(strstr(body, "# TYPE cc_start_time_seconds gauge"), "%s", body);
    free(body);
    status = cc_harness_http_get(s_admin, "/nope", NULL);
    CHECK(status == 404, "unknown path: %d", status);
    TEST_PASS(__func__);
}

static void
sigterm_stops_cleanly(cc_harness_t *h, pid_t echo)
{
    TEST_BEGIN(__func__);
    int status = cc_harness_stop(h, echo, SIGTERM, 5000);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    CHECK(cc_harness_http_get(s_admin, "/healthz", NULL) == 0, "admin port closed");
    TEST_PASS(__func__);
}

int
main(void)
{
    cc_log_init("service_test", "service_test");
    cc_harness_t *h = cc_harness_new("service");
    cc_harness_start_pg(h);
    cc_harness_start_redis(h);
    pid_t forwarder = cc_harness_start_forwarder(h, false, 10000);
    char admin[16];
    s_admin = cc_harness_free_port();
    snprintf(admin, sizeof admin, "%d", s_admin);
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", cc_harness_free_port());
    setenv("ECHO_ADMIN_PORT", admin, 1);
    setenv("ECHO_RPC", s_rpc, 1);
    setenv("CC_BUS_HEARTBEAT_MS", "200", 1);
    setenv("CC_RECONNECT_MS", "2000", 1);
    pid_t echo = cc_harness_spawn(h, ECHO_BIN, NULL);
    CHECK(cc_harness_wait_http(s_admin, "/healthz", 20000), "echo healthy");

    bad_config_exits_nonzero_naming_key_and_value(h);
    print_config_masks_secrets(h);
    help_lists_every_key(h);
    healthz_reports_each_dependency_and_follows_outages(h, &forwarder);
    metrics_are_prometheus_text();
    sigterm_stops_cleanly(h, echo);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    printf("service_test: 6 passed, 0 failed\n");
    return 0;
}
