/* cc_service: configuration, logging, dependencies, admin HTTP and the loop. */
#define _GNU_SOURCE
#include "cc/cc_service.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"

#include <assert.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOOKS 16
#define MAX_CHECKS 16

const cc_cfg_key_t cc_service_common_keys[] = {
    { "CC_LOG_LEVEL", CC_CFG_ENUM, 0, 0, "debug|info|warn|error", 0, "Lowest level of log lines written" },
    { "CC_INSTANCE", CC_CFG_STR, 0, 64, NULL, 0, "Instance name in logs and events; empty: <service>-<pid>" },
    { "CC_BIND_HOST", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Address the admin and HTTP ports listen on" },
    { "CC_BUS_PUB", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Forwarder endpoint publishers connect to (its XSUB side)" },
    { "CC_BUS_SUB", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Forwarder endpoint subscribers connect to (its XPUB side)" },
    { "CC_BUS_HWM", CC_CFG_INT, 100, 10000000, NULL, 0, "High-water mark of each bus socket, in messages" },
    { "CC_BUS_NODROP", CC_CFG_BOOL, 0, 0, NULL, 0, "Hold publishers back at the high-water mark instead of dropping" },
    { "CC_BUS_HEARTBEAT_MS", CC_CFG_INT, 100, 60000, NULL, 0, "Interval of the bus heartbeat that /healthz checks" },
    { "CC_RPC_RETRY_MS", CC_CFG_INT, 10, 60000, NULL, 0, "Resend a request after this long without a reply" },
    { "CC_RPC_MAX_ATTEMPTS", CC_CFG_INT, 1, 10, NULL, 0, "Sends of one request at most, the first included" },
    { "DATABASE_URL", CC_CFG_STR, 0, 1024, NULL, CC_CFG_SECRET, "PostgreSQL connection URI" },
    { "REDIS_URL", CC_CFG_STR, 0, 1024, NULL, CC_CFG_SECRET, "Redis URL redis://[:password@]host:port[/db]" },
    { "CC_RECONNECT_MS", CC_CFG_INT, 0, 600000, NULL, 0, "How long a call may spend reconnecting to PostgreSQL or Redis" },
    { "CC_HTTP_THREADS", CC_CFG_INT, 1, 256, NULL, 0, "Worker threads of each HTTP server" },
    CC_CFG_END
};

typedef struct { cc_service_hook_fn *fn; void *arg; } hook_t;
typedef struct { const char *name; cc_service_check_fn *fn; void *arg; } check_t;
typedef struct { char prefix[64]; cc_bus_event_fn *fn; void *arg; } listener_t;
#define MAX_LISTENERS 16

struct _cc_service_t {
    const cc_service_def_t *def;
    char *instance;
    cc_cfg_t *cfg;
    cc_loop_t *loop;
    cc_metrics_t *metrics;
    cc_http_t *admin;
    cc_bus_t *bus;
    cc_pg_t *pg;
    cc_redis_t *redis;
    hook_t stop_hooks[MAX_HOOKS];
    int nstop;
    hook_t reload_hooks[MAX_HOOKS];
    int nreload;
    listener_t listeners[MAX_LISTENERS];
    int nlisteners;
    check_t checks[MAX_CHECKS];
    _Atomic int nchecks;       /* HTTP threads read entries below it */
    uv_timer_t health_timer;
    char heartbeat_topic[128];
    _Atomic int64_t last_heartbeat_ms;
    int64_t heartbeat_ms;
    time_t started;
    bool stopping;
};

static void
s_usage(const cc_service_def_t *def, cc_cfg_t *cfg, FILE *out)
{
    fprintf(out, "Usage: %s [--config FILE] [--print-config] [--check-config] [--help]\n%s\n\n",
            def->name, def->summary ? def->summary : "");
    fprintf(out, "  --config FILE    defaults file (default %s, or $CC_CONFIG_FILE)\n"
                 "  --print-config   print the effective configuration (secrets masked) and exit\n"
                 "  --check-config   validate the configuration and exit\n\n", cc_cfg_default_path());
    cc_cfg_help(cfg, out);
}

/* ---- admin endpoints ---- */

static bool s_check_bus(void *arg)
{
    cc_service_t *self = arg;
    int64_t last = atomic_load(&self->last_heartbeat_ms);
    return last && cc_mono_ms() - last < 3 * self->heartbeat_ms + 500;
}
static bool s_check_pg(void *arg) { return cc_pg_healthy(((cc_service_t *) arg)->pg); }
static bool s_check_redis(void *arg) { return cc_redis_healthy(((cc_service_t *) arg)->redis); }

static int
s_healthz(struct mg_connection *conn, void *arg)
{
    cc_service_t *self = arg;
    json_t *checks = json_object();
    bool ok = true;
    int n = atomic_load_explicit(&self->nchecks, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        bool up = self->checks[i].fn(self->checks[i].arg);
        ok = ok && up;
        json_object_set_new(checks, self->checks[i].name, json_string(up ? "ok" : "down"));
    }
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:o}", "service", self->def->name, "instance", self->instance,
                          "status", ok ? "ok" : "down", "uptime_s", (json_int_t) (time(NULL) - self->started),
                          "checks", checks);
    char *text = json_dumps(j, JSON_COMPACT);
    int status = cc_http_send(conn, ok ? 200 : 503, "application/json", text, strlen(text));
    free(text);
    json_decref(j);
    return status;
}

static int
s_metrics(struct mg_connection *conn, void *arg)
{
    cc_service_t *self = arg;
    char *text = cc_metrics_render(self->metrics);
    int status = cc_http_send(conn, 200, "text/plain; version=0.0.4", text, strlen(text));
    free(text);
    return status;
}

/* ---- loop callbacks ---- */

static void
s_on_event(void *arg, const Cc__Envelope *env)
{
    cc_service_t *self = arg;
    if (strcmp(env->type, self->heartbeat_topic) == 0)
        atomic_store(&self->last_heartbeat_ms, cc_mono_ms());
    for (int i = 0; i < self->nlisteners; i++)
        if (strncmp(env->type, self->listeners[i].prefix, strlen(self->listeners[i].prefix)) == 0)
            self->listeners[i].fn(self->listeners[i].arg, env);
}

/* Keeps the health of every dependency current and publishes the heartbeat. */
static void
s_on_health_timer(uv_timer_t *t)
{
    cc_service_t *self = t->data;
    if (self->bus) cc_bus_publish(self->bus, self->heartbeat_topic, NULL, NULL, 0);
    if (self->pg) cc_pg_check(self->pg);
    if (self->redis) cc_redis_check(self->redis);
}

static void
s_on_signal(void *arg, int signum)
{
    cc_service_t *self = arg;
    if (signum == SIGHUP) {
        CC_INFO("reload requested", "signal=SIGHUP");
        for (int i = 0; i < self->nreload; i++) self->reload_hooks[i].fn(self->reload_hooks[i].arg);
        return;
    }
    CC_INFO("stop requested", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    cc_service_stop(self);
}

void
cc_service_stop(cc_service_t *self)
{
    if (self->stopping) return;
    self->stopping = true;
    for (int i = self->nstop - 1; i >= 0; i--) self->stop_hooks[i].fn(self->stop_hooks[i].arg);
    cc_loop_stop(self->loop);
}

/* ---- set-up ---- */

static int
s_connect(cc_service_t *self)
{
    cc_cfg_t *cfg = self->cfg;
    int reconnect = (int) cc_cfg_int(cfg, "CC_RECONNECT_MS");
    if (self->def->needs & CC_NEED_PG) {
        self->pg = cc_pg_new(cc_cfg_str(cfg, "DATABASE_URL"), reconnect, self->metrics);
        if (cc_pg_connect(self->pg)) return CC_ECONN;
        cc_service_add_check(self, "postgres", s_check_pg, self);
    }
    if (self->def->needs & CC_NEED_REDIS) {
        self->redis = cc_redis_new(cc_cfg_str(cfg, "REDIS_URL"), reconnect, self->metrics);
        if (!self->redis) return CC_ECONFIG;
        if (cc_redis_connect(self->redis)) return CC_ECONN;
        cc_service_add_check(self, "redis", s_check_redis, self);
    }
    if (self->def->needs & CC_NEED_BUS) {
        cc_bus_opts_t o = {
            .service = self->def->name, .instance = self->instance,
            .pub_endpoint = cc_cfg_str(cfg, "CC_BUS_PUB"), .sub_endpoint = cc_cfg_str(cfg, "CC_BUS_SUB"),
            .hwm = (int) cc_cfg_int(cfg, "CC_BUS_HWM"), .nodrop = cc_cfg_bool(cfg, "CC_BUS_NODROP"),
            .metrics = self->metrics,
        };
        self->bus = cc_bus_new(&o);
        if (!self->bus) return CC_ECONFIG;
        snprintf(self->heartbeat_topic, sizeof self->heartbeat_topic, "heartbeat.%s", self->instance);
        cc_bus_subscribe(self->bus, self->heartbeat_topic);
        cc_bus_attach(self->bus, self->loop, s_on_event, self);
        cc_service_add_check(self, "bus", s_check_bus, self);
    }
    return 0;
}

cc_service_t *
cc_service_new(const cc_service_def_t *def, int argc, char **argv, int *exit_code)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "print-config", no_argument, NULL, 'p' },
        { "check-config", no_argument, NULL, 'k' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const cc_cfg_key_t *tables[] = { cc_service_common_keys, def->keys, NULL };
    cc_service_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->def = def;
    self->cfg = cc_cfg_new(tables);
    const char *path = cc_cfg_default_path();
    int print = 0, check = 0, help = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:pkh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': print = 1; break;
        case 'k': check = 1; break;
        case 'h': help = 1; break;
        default: *exit_code = 2; goto err;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", def->name, argv[optind]);
        *exit_code = 2;
        goto err;
    }
    int rc = cc_cfg_load(self->cfg, path);
    if (help) {
        s_usage(def, self->cfg, stdout);
        *exit_code = 0;
        goto err;
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", def->name, cc_cfg_error(self->cfg));
        *exit_code = 2;
        goto err;
    }
    if (print || check) {
        if (print) cc_cfg_print(self->cfg, stdout);
        else printf("%s: configuration is valid\n", def->name);
        *exit_code = 0;
        goto err;
    }
    const char *inst = cc_cfg_str(self->cfg, "CC_INSTANCE");
    if (*inst) self->instance = strdup(inst);
    else if (asprintf(&self->instance, "%s-%d", def->name, (int) getpid()) < 0) abort();
    cc_log_init(def->name, self->instance);
    cc_log_set_level_name(cc_cfg_str(self->cfg, "CC_LOG_LEVEL"));
    self->started = time(NULL);
    self->metrics = cc_metrics_new();
    cc_metric_set(cc_metrics_gauge(self->metrics, "cc_start_time_seconds", NULL, "Unix time the service started"),
                  (int64_t) self->started);
    self->loop = cc_loop_new();
    self->heartbeat_ms = cc_cfg_int(self->cfg, "CC_BUS_HEARTBEAT_MS");
    *exit_code = 1;
    if (s_connect(self)) goto err;

    self->admin = cc_http_new(cc_cfg_str(self->cfg, "CC_BIND_HOST"), (int) cc_cfg_int(self->cfg, def->admin_port_key),
                              (int) cc_cfg_int(self->cfg, "CC_HTTP_THREADS"));
    if (!self->admin) goto err;
    cc_http_route(self->admin, "/healthz$", s_healthz, self);
    cc_http_route(self->admin, "/metrics$", s_metrics, self);

    cc_loop_on_signal(self->loop, SIGTERM, s_on_signal, self);
    cc_loop_on_signal(self->loop, SIGINT, s_on_signal, self);
    cc_loop_on_signal(self->loop, SIGHUP, s_on_signal, self);
    signal(SIGPIPE, SIG_IGN);
    uv_timer_init(cc_loop_uv(self->loop), &self->health_timer);
    self->health_timer.data = self;
    uv_timer_start(&self->health_timer, s_on_health_timer, 0, (uint64_t) self->heartbeat_ms);
    CC_INFO("service started", "admin=http://%s:%d config=%s", cc_cfg_str(self->cfg, "CC_BIND_HOST"),
            cc_http_port(self->admin), path);
    *exit_code = 0;
    return self;
err:
    cc_service_destroy(&self);
    return NULL;
}

void
cc_service_destroy(cc_service_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_service_t *self = *self_p;
    cc_http_destroy(&self->admin);       /* no HTTP thread reads us after this */
    cc_bus_destroy(&self->bus);
    cc_redis_destroy(&self->redis);
    cc_pg_destroy(&self->pg);
    cc_loop_destroy(&self->loop);        /* closes the timer and signal handles */
    cc_metrics_destroy(&self->metrics);
    cc_cfg_destroy(&self->cfg);
    if (self->instance) CC_INFO("service stopped", "%s", "");
    free(self->instance);
    free(self);
    *self_p = NULL;
    cc_log_shutdown();
}

int
cc_service_run(cc_service_t *self)
{
    cc_loop_run(self->loop);
    return 0;
}

void
cc_service_on_stop(cc_service_t *self, cc_service_hook_fn *fn, void *arg)
{
    assert(self->nstop < MAX_HOOKS);
    self->stop_hooks[self->nstop++] = (hook_t) { fn, arg };
}

void
cc_service_on_reload(cc_service_t *self, cc_service_hook_fn *fn, void *arg)
{
    assert(self->nreload < MAX_HOOKS);
    self->reload_hooks[self->nreload++] = (hook_t) { fn, arg };
}

void
cc_service_on_event(cc_service_t *self, const char *prefix, cc_bus_event_fn *fn, void *arg)
{
    assert(self->bus && self->nlisteners < MAX_LISTENERS);
    listener_t *l = &self->listeners[self->nlisteners++];
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->fn = fn;
    l->arg = arg;
    cc_bus_subscribe(self->bus, prefix);
}

/* Drops every hook whose argument is arg, keeping the others' order. */
static int
s_hooks_without(hook_t *hooks, int n, void *arg)
{
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (hooks[i].arg != arg) hooks[kept++] = hooks[i];
    return kept;
}

void
cc_service_off(cc_service_t *self, void *arg)
{
    self->nstop = s_hooks_without(self->stop_hooks, self->nstop, arg);
    int kept = 0;
    for (int i = 0; i < self->nlisteners; i++)
        if (self->listeners[i].arg != arg) self->listeners[kept++] = self->listeners[i];
    self->nlisteners = kept;
    self->nreload = s_hooks_without(self->reload_hooks, self->nreload, arg);
}

void
cc_service_add_check(cc_service_t *self, const char *name, cc_service_check_fn *fn, void *arg)
{
    int n = atomic_load(&self->nchecks);
    assert(n < MAX_CHECKS);
    self->checks[n] = (check_t) { name, fn, arg };
    atomic_store_explicit(&self->nchecks, n + 1, memory_order_release);   /* entry first, then the count */
}

cc_cfg_t *cc_service_cfg(cc_service_t *self) { return self->cfg; }
cc_loop_t *cc_service_loop(cc_service_t *self) { return self->loop; }
cc_metrics_t *cc_service_metrics(cc_service_t *self) { return self->metrics; }
cc_http_t *cc_service_admin(cc_service_t *self) { return self->admin; }
cc_bus_t *cc_service_bus(cc_service_t *self) { return self->bus; }
cc_pg_t *cc_service_pg(cc_service_t *self) { return self->pg; }
cc_redis_t *cc_service_redis(cc_service_t *self) { return self->redis; }
const char *cc_service_name(cc_service_t *self) { return self->def->name; }
const char *cc_service_instance(cc_service_t *self) { return self->instance; }
