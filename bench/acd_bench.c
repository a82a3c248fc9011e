/* acd_bench: routing decisions per second and enqueue-to-offer latency,
 * with 1,000 agents in 100 queues over 5 skills, against the bound Redis
 * itself sets for a script of the same shape (redis-benchmark, EVALSHA,
 * 50 clients, no pipelining), measured on the same Redis in the same run.
 *
 * The load keeps W calls in flight: each call is enqueued (the routing
 * decision: a ready agent with the skills is reserved in the same atomic
 * step), then ended, which frees the agent; then the next call comes.
 * Latency is from sending the enqueue to its reply, when the offer is made.
 * Besides the rates, prints the Redis time inside acd's Lua and the CPU
 * Redis and acd used per decision (these move little when the machine is
 * shared), how busy Redis was, and acd's resident memory at the end. The
 * bound is the mean of a measurement before and one after the load (both
 * printed). BENCH_SECONDS, BENCH_WINDOW and BENCH_ACD_INSTANCES (1-4) vary
 * the run. Prints "acd.<figure> <value> <unit>" lines. */
#include "acd_bound.h"
#include "cc_harness.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_redis.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#ifndef ACD_SOURCE_DIR
#error "ACD_SOURCE_DIR must be defined"
#endif

#define AGENTS 1000
#define QUEUES 100
#define SKILLS 5

static int s_window = 64;
static int s_seconds = 5;

typedef struct {
    cc_loop_t *loop;
    cc_rpc_client_t *client[4];
    int nclients;
    int64_t deadline;
    uint64_t next_call;
    uint64_t decisions, failures;
    cc_samples_t lat;
    int inflight;
} load_t;

typedef struct { load_t *load; int64_t sent_us; char call[32]; int client; } call_t;

static void s_next(load_t *l, int client);

static void
s_on_ended(void *arg, const Cc__Reply *reply)
{
    call_t *c = arg;
    load_t *l = c->load;
    if (reply->status != CC__STATUS__STATUS_OK) l->failures++;
    l->inflight--;
    int client = c->client;
    free(c);
    s_next(l, client);
}

static void
s_on_enqueued(void *arg, const Cc__Reply *reply)
{
    call_t *c = arg;
    load_t *l = c->load;
    if (reply->status == CC__STATUS__STATUS_OK) {
        l->decisions++;
        cc_samples_add(&l->lat, (double) (cc_wall_us() - c->sent_us) / 1000.0);
    } else {
        l->failures++;
    }
    Cc__CallRef m = CC__CALL_REF__INIT;
    m.call_id = c->call;
    uint8_t buf[64];
    size_t len = cc__call_ref__pack(&m, buf);
    cc_rpc_call(l->client[c->client], "acd.ended", NULL, buf, len, 5000, s_on_ended, c);
}

static void
s_next(load_t *l, int client)
{
    if (cc_mono_ms() >= l->deadline) {
        if (l->inflight == 0) cc_loop_stop(l->loop);
        return;
    }
    call_t *c = calloc(1, sizeof *c);
    c->load = l;
    c->client = client;
    uint64_t n = l->next_call++;
    snprintf(c->call, sizeof c->call, "b%llu", (unsigned long long) n);
    char queue[16], skill[16], *skills[] = { skill };
    snprintf(queue, sizeof queue, "q%03llu", (unsigned long long) (n % QUEUES));
    snprintf(skill, sizeof skill, "s%llu:1", (unsigned long long) (n % SKILLS));
    Cc__Enqueue m = CC__ENQUEUE__INIT;
    m.call_id = c->call;
    m.queue = queue;
    m.skills = skills;
    m.n_skills = 0;   /* the queue's own skill requirement applies */
    uint8_t buf[128];
    size_t len = cc__enqueue__pack(&m, buf);
    c->sent_us = cc_wall_us();
    l->inflight++;
    cc_rpc_call(l->client[client], "acd.enqueue", c->call, buf, len, 5000, s_on_enqueued, c);
}

/* Redis time spent in acd's functions per decision (INFO commandstats), in
 * microseconds: what a decision costs Redis itself, without the network. */
static double
s_script_us(uint64_t decisions)
{
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    if (!r || cc_redis_connect(r)) return 0;
    redisReply *x = cc_redis_cmdf(r, "INFO commandstats");
    double usec = 0;
    if (getenv("BENCH_COMMANDSTATS") && x && x->type == REDIS_REPLY_STRING) fputs(x->str, stderr);
    /* acd runs a function library (FCALL); a script would be EVALSHA. */
    const char *p = x && x->type == REDIS_REPLY_STRING ? strstr(x->str, "cmdstat_fcall:") : NULL;
    if (!p && x && x->type == REDIS_REPLY_STRING) p = strstr(x->str, "cmdstat_evalsha:");
    if (p && (p = strstr(p, "usec="))) usec = strtod(p + 5, NULL);
    if (getenv("BENCH_PROF")) {
        redisReply *u = cc_redis_cmdf(r, "HGETALL prof:us"), *n = cc_redis_cmdf(r, "HGETALL prof:n");
        for (size_t i = 0; u && i + 1 < u->elements; i += 2) {
            const char *cnt = "?";
            for (size_t j = 0; n && j + 1 < n->elements; j += 2) if (!strcmp(n->element[j]->str, u->element[i]->str)) cnt = n->element[j + 1]->str;
            fprintf(stderr, "prof %-20s %10.2f us/decision  n=%s\n", u->element[i]->str, strtod(u->element[i + 1]->str, NULL) / (double) decisions, cnt);
        }
    }
    if (x) freeReplyObject(x);
    cc_redis_destroy(&r);
    return decisions ? usec / (double) decisions : 0;
}

/* CPU seconds (user + system) Redis has used, from INFO cpu. */
static double
s_redis_cpu(void)
{
    cc_redis_t *r = cc_redis_new(getenv("REDIS_URL"), 2000, NULL);
    if (!r || cc_redis_connect(r)) return 0;
    redisReply *x = cc_redis_cmdf(r, "INFO cpu");
    double cpu = 0;
    const char *p;
    if (x && x->type == REDIS_REPLY_STRING) {
        if ((p = strstr(x->str, "used_cpu_sys:"))) cpu += strtod(p + 13, NULL);
        if ((p = strstr(x->str, "used_cpu_user:"))) cpu += strtod(p + 14, NULL);
    }
    if (x) freeReplyObject(x);
    cc_redis_destroy(&r);
    return cpu;
}

/* CPU seconds (user + system) process pid has used, from /proc. */
static double
s_proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');   /* fields after the command name */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return 0;
    return (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
}

/* Resident memory of process pid in MB, from /proc (0 when unknown). */
static double
s_proc_rss_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) mb = strtod(line + 6, NULL) / 1024.0;
    if (f) fclose(f);
    return mb;
}

int
main(void)
{
    if (getenv("BENCH_WINDOW")) s_window = atoi(getenv("BENCH_WINDOW"));
    if (getenv("BENCH_SECONDS")) s_seconds = atoi(getenv("BENCH_SECONDS"));
    int instances = getenv("BENCH_ACD_INSTANCES") ? atoi(getenv("BENCH_ACD_INSTANCES")) : 1;
    if (instances < 1 || instances > 4) instances = 1;
    cc_log_init("bench", "bench");
    cc_log_set_level(CC_LOG_WARN);
    cc_harness_t *h = cc_harness_new("acd-bench");
    setenv("CC_LOG_LEVEL", "warn", 1);
    cc_harness_start_pg(h);
    const char *redis_url = cc_harness_start_redis(h);
    int redis_port = atoi(strrchr(redis_url, ':') + 1);
    cc_harness_start_forwarder(h, false, 100000);

    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    if (cc_pg_connect(pg) || cc_pg_migrate(pg, "acd", ACD_SOURCE_DIR "/sql", NULL)) return 1;
    char sql[256];
    for (int q = 0; q < QUEUES; q++) {
        snprintf(sql, sizeof sql, "INSERT INTO acd.queues (name, skills, wrap_up_ms, offer_timeout_ms)"
                                  " VALUES ('q%03d', 's%d:1', 0, 300000)", q, q % SKILLS);
        cc_pg_run(pg, sql, NULL);
    }
    cc_pg_destroy(&pg);

    char rpc[4][64];
    pid_t acd_pid[4];
    for (int i = 0; i < instances; i++) {
        char admin[16], name[16];
        snprintf(rpc[i], sizeof rpc[i], "tcp://127.0.0.1:%d", cc_harness_free_port());
        int port = cc_harness_free_port();
        snprintf(admin, sizeof admin, "%d", port);
        snprintf(name, sizeof name, "acd-%d", i);
        setenv("ACD_RPC", rpc[i], 1);
        setenv("ACD_ADMIN_PORT", admin, 1);
        setenv("ACD_GATEWAY_RPC", "", 1);
        acd_pid[i] = cc_harness_spawn_as(h, name, "acd", NULL);
        if (!cc_harness_wait_http(port, "/healthz", 20000)) { fprintf(stderr, "acd not healthy\n"); return 1; }
    }

    /* 1,000 agents, each in 3 queues, with every skill at levels 1..5. */
    load_t l = { 0 };
    l.loop = cc_loop_new();
    l.nclients = instances;
    for (int i = 0; i < instances; i++) {
        cc_rpc_client_opts_t o = { .endpoint = rpc[i], .source = "bench", .retry_ms = 2000, .max_attempts = 2 };
        l.client[i] = cc_rpc_client_new(&o);
    }
    for (int a = 0; a < AGENTS; a++) {
        char id[16], qs[3][8], sk[SKILLS][8];
        Cc__AgentSkill skills[SKILLS], *skp[SKILLS];
        char *queues[3];
        snprintf(id, sizeof id, "ag%04d", a);
        for (int k = 0; k < 3; k++) { snprintf(qs[k], sizeof qs[k], "q%03d", (a + k * 37) % QUEUES); queues[k] = qs[k]; }
        for (int k = 0; k < SKILLS; k++) {
            cc__agent_skill__init(&skills[k]);
            snprintf(sk[k], sizeof sk[k], "s%d", k);
            skills[k].name = sk[k];
            skills[k].level = (uint32_t) (1 + (a + k) % 5);
            skp[k] = &skills[k];
        }
        Cc__AgentLogin m = CC__AGENT_LOGIN__INIT;
        m.agent_id = id;
        m.extension = id;
        m.skills = skp;
        m.n_skills = SKILLS;
        m.queues = queues;
        m.n_queues = 3;
        uint8_t buf[512];
        size_t len = cc__agent_login__pack(&m, buf);
        Cc__Reply *reply = NULL;
        if (cc_rpc_call_sync(l.client[0], "agent.login", buf, len, 5000, &reply) || reply->status) {
            fprintf(stderr, "login %s failed\n", id);
            return 1;
        }
        cc__reply__free_unpacked(reply, NULL);
    }
    for (int i = 0; i < instances; i++) cc_rpc_client_attach(l.client[i], l.loop);

    /* The bound is measured before and after the load: this machine's speed
     * moves (shared hosts), and the two tell how much it moved in the run. */
    double bound_before = acd_bound_evalsha_per_s(redis_port);
    l.deadline = cc_mono_ms() + s_seconds * 1000;
    double redis_cpu0 = s_redis_cpu(), acd_cpu0 = 0;
    for (int i = 0; i < instances; i++) acd_cpu0 += s_proc_cpu(acd_pid[i]);
    int64_t t0 = cc_mono_ms();
    for (int i = 0; i < s_window; i++) s_next(&l, i % instances);
    cc_loop_run(l.loop);
    double secs = (cc_mono_ms() - t0) / 1000.0;
    double redis_cpu = s_redis_cpu() - redis_cpu0, acd_cpu = -acd_cpu0, acd_rss = 0;
    for (int i = 0; i < instances; i++) acd_cpu += s_proc_cpu(acd_pid[i]);
    for (int i = 0; i < instances; i++) acd_rss += s_proc_rss_mb(acd_pid[i]);
    double script_us = s_script_us(l.decisions);
    double bound_after = acd_bound_evalsha_per_s(redis_port);
    double bound = (bound_before + bound_after) / 2;

    double rate = l.decisions / secs;
    printf("acd.decisions_per_s %.0f decisions/s\n", rate);
    printf("acd.offer_p50_ms %.3f ms\n", cc_samples_quantile(&l.lat, 0.50));
    printf("acd.offer_p99_ms %.3f ms\n", cc_samples_quantile(&l.lat, 0.99));
    printf("acd.redis_evalsha_per_s %.0f requests/s\n", bound);
    printf("acd.redis_evalsha_before_per_s %.0f requests/s\n", bound_before);
    printf("acd.redis_evalsha_after_per_s %.0f requests/s\n", bound_after);
    printf("acd.ratio %.2f ratio\n", bound > 0 ? rate / bound : 0);
    printf("acd.redis_us_per_decision %.1f us\n", script_us);
    /* CPU per decision: what the machine spends, however loaded it is. */
    double per = l.decisions ? 1e6 / (double) l.decisions : 0;
    printf("acd.redis_cpu_us_per_decision %.1f us\n", redis_cpu * per);
    printf("acd.acd_cpu_us_per_decision %.1f us\n", acd_cpu * per);
    /* How busy Redis was (1 = a whole core): below 1, the routing rate is
     * bound by the round trips of the calls in flight, not by Redis. */
    printf("acd.redis_busy %.2f cores\n", secs > 0 ? redis_cpu / secs : 0);
    /* acd's memory at the end of the load (mostly the rpc server's kept
     * replies: every request's, until its deadline and a grace). */
    printf("acd.acd_rss_mb %.0f MB\n", acd_rss);
    printf("acd.failures %llu requests\n", (unsigned long long) l.failures);
    printf("acd.instances %d processes\n", instances);
    printf("acd.window %d calls\n", s_window);
    for (int i = 0; i < instances; i++) cc_rpc_client_destroy(&l.client[i]);
    cc_loop_destroy(&l.loop);
    cc_samples_free(&l.lat);
    cc_harness_destroy(&h);
    cc_log_shutdown();
    return 0;
}
