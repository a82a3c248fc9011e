/* acd_fixture: see acd_fixture.h. */
#include "acd_fixture.h"
#include "cc_check.h"
#include "cc/cc_errno.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ACD_SOURCE_DIR
#error "ACD_SOURCE_DIR must be defined"
#endif

void
fx_start_instance(fx_t *fx, int i)
{
    char admin[16], name[32];
    snprintf(admin, sizeof admin, "%d", fx->admin[i]);
    snprintf(name, sizeof name, "acd-%d", i);
    setenv("ACD_ADMIN_PORT", admin, 1);
    setenv("ACD_RPC", fx->rpc[i], 1);
    setenv("CC_INSTANCE", name, 1);
    fx->pid[i] = cc_harness_spawn_as(fx->h, name, "acd", NULL);
    unsetenv("CC_INSTANCE");
    CHECK(cc_harness_wait_http(fx->admin[i], "/healthz", 20000), "acd instance %d healthy (logs in %s)", i,
          cc_harness_dir(fx->h));
}

void
fx_start(fx_t *fx, const char *name, int n, const char *queues_sql)
{
    memset(fx, 0, sizeof *fx);
    fx->h = cc_harness_new(name);
    fx->n = n;
    cc_harness_start_pg(fx->h);
    cc_harness_start_redis(fx->h);
    cc_harness_start_forwarder(fx->h, false, 100000);
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    CHECK(cc_pg_connect(pg) == 0, "pg");
    CHECK(cc_pg_migrate(pg, "acd", ACD_SOURCE_DIR "/sql", NULL) == 0, "migrate: %s", cc_pg_error(pg));
    CHECK(cc_pg_run(pg, queues_sql, NULL) == 0, "queues: %s", cc_pg_error(pg));
    cc_pg_destroy(&pg);
    /* A test may slow the tick (FX_ACD_TICK_MS): Redis's loss is then noticed
     * only every ten ticks. */
    setenv("ACD_TICK_MS", getenv("FX_ACD_TICK_MS") ? getenv("FX_ACD_TICK_MS") : "50", 1);
    setenv("ACD_GATEWAY_RPC", "", 1);
    for (int i = 0; i < n; i++) {
        snprintf(fx->rpc[i], sizeof fx->rpc[i], "tcp://127.0.0.1:%d", cc_harness_free_port());
        fx->admin[i] = cc_harness_free_port();
        fx_start_instance(fx, i);
        cc_rpc_client_opts_t o = { .endpoint = fx->rpc[i], .source = "acd-test", .retry_ms = 300, .max_attempts = 3 };
        fx->client[i] = cc_rpc_client_new(&o);
    }
    fx->redis = cc_redis_new(getenv("REDIS_URL"), 5000, NULL);
    CHECK(fx->redis && cc_redis_connect(fx->redis) == 0, "redis");
}

void
fx_stop(fx_t *fx)
{
    for (int i = 0; i < fx->n; i++) cc_rpc_client_destroy(&fx->client[i]);
    cc_redis_destroy(&fx->redis);
    cc_harness_destroy(&fx->h);
}

int
fx_request(fx_t *fx, int i, const char *method, const void *payload, size_t len, char *error, size_t cap)
{
    Cc__Reply *r = NULL;
    if (cc_rpc_call_sync(fx->client[i], method, payload, len, 3000, &r) != 0) {
        if (error) snprintf(error, cap, "no reply");
        return -1;
    }
    int st = r->status;
    if (error) snprintf(error, cap, "%s", r->error);
    cc__reply__free_unpacked(r, NULL);
    return st;
}

static int
s_send(fx_t *fx, int i, const char *method, const ProtobufCMessage *m, Cc__Reply **reply_p)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    protobuf_c_message_pack(m, buf);
    Cc__Reply *r = NULL;
    int rc = cc_rpc_call_sync(fx->client[i], method, buf, len, 3000, &r);
    free(buf);
    if (rc) return -1;
    int st = r->status;
    if (reply_p) *reply_p = r;
    else cc__reply__free_unpacked(r, NULL);
    return st;
}

int
fx_request_as(fx_t *fx, int i, const char *request_id, const char *method, const ProtobufCMessage *m,
              Cc__Reply **reply_p)
{
    Cc__Request req = CC__REQUEST__INIT;
    req.request_id = (char *) request_id;
    req.method = (char *) method;
    req.attempt = 2;
    req.source = "fx";
    req.timeout_us = 3000000;
    req.deadline_us = cc_wall_us() + req.timeout_us;
    uint8_t payload[1024], body[2048];
    size_t plen = protobuf_c_message_get_packed_size(m);
    CHECK(plen <= sizeof payload, "request fits");
    protobuf_c_message_pack(m, payload);
    req.payload.data = payload;
    req.payload.len = plen;
    size_t len = cc__request__pack(&req, body);
    zsock_t *s = zsock_new_dealer(fx->rpc[i]);
    CHECK(s, "dealer to %s", fx->rpc[i]);
    zsock_set_rcvtimeo(s, 3000);
    zframe_t *f = zframe_new(body, len);
    zframe_send(&f, s, 0);
    zframe_t *got = zframe_recv(s);
    zsock_destroy(&s);
    if (!got) return -1;
    Cc__Reply *r = cc__reply__unpack(NULL, zframe_size(got), zframe_data(got));
    zframe_destroy(&got);
    CHECK(r, "a reply that unpacks");
    int st = r->status;
    if (reply_p) *reply_p = r;
    else cc__reply__free_unpacked(r, NULL);
    return st;
}

/* "sales:5,english:2" -> AgentSkill list (up to 8). */
int
fx_login(fx_t *fx, int i, const char *agent, const char *skills, const char *queues)
{
    Cc__AgentLogin m = CC__AGENT_LOGIN__INIT;
    m.agent_id = (char *) agent;
    m.extension = (char *) agent;
    Cc__AgentSkill sk[8], *skp[8];
    char names[8][32];
    char buf[256];
    snprintf(buf, sizeof buf, "%s", skills ? skills : "");
    size_t n = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t && n < 8; t = strtok_r(NULL, ",", &save)) {
        cc__agent_skill__init(&sk[n]);
        char *colon = strchr(t, ':');
        snprintf(names[n], sizeof names[n], "%.*s", colon ? (int) (colon - t) : (int) strlen(t), t);
        sk[n].name = names[n];
        sk[n].level = colon ? (uint32_t) atoi(colon + 1) : 0;
        skp[n] = &sk[n];
        n++;
    }
    m.skills = skp;
    m.n_skills = n;
    char qbuf[256], *qs[8];
    snprintf(qbuf, sizeof qbuf, "%s", queues ? queues : "");
    size_t nq = 0;
    for (char *save, *t = strtok_r(qbuf, ",", &save); t && nq < 8; t = strtok_r(NULL, ",", &save)) qs[nq++] = t;
    m.queues = qs;
    m.n_queues = nq;
    return s_send(fx, i, "agent.login", &m.base, NULL);
}

int
fx_state(fx_t *fx, int i, const char *agent, const char *state, const char *reason)
{
    Cc__AgentSetState m = CC__AGENT_SET_STATE__INIT;
    m.agent_id = (char *) agent;
    m.state = strcmp(state, "ready") == 0 ? CC__AGENT_STATE__AGENT_READY
            : strcmp(state, "not_ready") == 0 ? CC__AGENT_STATE__AGENT_NOT_READY : CC__AGENT_STATE__AGENT_LOGGED_OUT;
    m.reason = (char *) (reason ? reason : "");
    return s_send(fx, i, "agent.set_state", &m.base, NULL);
}

int
fx_enqueue(fx_t *fx, int i, const char *call, const char *queue, int prio, const char *last_agent, unsigned *position)
{
    Cc__Enqueue m = CC__ENQUEUE__INIT;
    m.call_id = (char *) call;
    m.queue = (char *) queue;
    m.priority = prio;
    m.last_agent_id = (char *) (last_agent ? last_agent : "");
    Cc__Reply *r = NULL;
    int st = s_send(fx, i, "acd.enqueue", &m.base, &r);
    if (r) {
        Cc__Enqueued *e = st == 0 ? cc__enqueued__unpack(NULL, r->payload.len, r->payload.data) : NULL;
        if (e && position) *position = e->position;
        if (e) cc__enqueued__free_unpacked(e, NULL);
        cc__reply__free_unpacked(r, NULL);
    }
    return st;
}

int
fx_call_op(fx_t *fx, int i, const char *method, const char *call, const char *agent)
{
    Cc__CallRef m = CC__CALL_REF__INIT;
    m.call_id = (char *) call;
    m.agent_id = (char *) (agent ? agent : "");
    return s_send(fx, i, method, &m.base, NULL);
}

int
fx_rejected(fx_t *fx, int i, const char *call, const char *agent, const char *reason)
{
    Cc__CallRef m = CC__CALL_REF__INIT;
    m.call_id = (char *) call;
    m.agent_id = (char *) agent;
    m.reason = (char *) reason;
    return s_send(fx, i, "acd.rejected", &m.base, NULL);
}

/* ---------------------------------------------------------------- snapshot */

static const char *s_snapshot_lua =
    "local out = {}\n"
    "local queues = redis.call('SMEMBERS', 'acd:queues')\n"
    "table.sort(queues)\n"
    "out[1] = queues\n"
    "local ready = {}\n"
    "for _, q in ipairs(queues) do ready[#ready + 1] = redis.call('ZRANGE', 'acd:queue:' .. q .. ':ready', 0, -1) end\n"
    "out[2] = ready\n"
    "local waits = {}\n"
    "for _, q in ipairs(queues) do waits[#waits + 1] = redis.call('ZRANGE', 'acd:queue:' .. q .. ':wait', 0, -1, 'WITHSCORES') end\n"
    "out[3] = waits\n"
    "local agents = {}\n"
    "for _, a in ipairs(redis.call('KEYS', 'acd:agent:*')) do\n"
    "  if not string.find(a, ':skills$') then\n"
    "    local f = redis.call('HMGET', a, 'state', 'call', 'queues', 'since', 'calls', 'last_offer')\n"
    "    local sk = redis.call('HGETALL', a .. ':skills')\n"
    "    local s = {}\n"
    "    for i = 1, #sk, 2 do s[#s + 1] = sk[i] .. ':' .. sk[i + 1] end\n"
    "    agents[#agents + 1] = { string.sub(a, 11), f[1] or '', f[2] or '', f[3] or '', table.concat(s, ','),\n"
    "                            f[4] or '0', f[5] or '0', f[6] or '0' }\n"
    "  end\n"
    "end\n"
    "out[4] = agents\n"
    "local calls = {}\n"
    "for _, c in ipairs(redis.call('KEYS', 'acd:call:*')) do\n"
    "  local f = redis.call('HMGET', c, 'queue', 'state', 'agent', 'rank', 'skills', 'prio', 'enq')\n"
    "  calls[#calls + 1] = { string.sub(c, 10), f[1] or '', f[2] or '', f[3] or '', f[4] or '0', f[5] or '',\n"
    "                        f[6] or '0', f[7] or '0' }\n"
    "end\n"
    "out[5] = calls\n"
    "return out\n";

static const char *
s_str(redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? r->str : "";
}

void
fx_snapshot(fx_t *fx, fx_snap_t *s)
{
    memset(s, 0, sizeof *s);
    const char *argv[] = { "EVAL", s_snapshot_lua, "0" };
    redisReply *r = cc_redis_cmd(fx->redis, 3, argv);
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 5, "snapshot: %s", r && r->str ? r->str : "no reply");
    redisReply *q = r->element[0], *ready = r->element[1], *waits = r->element[2];
    redisReply *agents = r->element[3], *calls = r->element[4];
    s->nq = (int) q->elements;
    CHECK(s->nq <= 32, "snapshot holds 32 queues, Redis has %d", s->nq);
    for (int i = 0; i < s->nq; i++) snprintf(s->queues[i], sizeof s->queues[i], "%s", s_str(q->element[i]));
    s->na = (int) agents->elements;
    for (int i = 0; i < s->na; i++) {
        redisReply *a = agents->element[i];
        fx_agent_t *x = &s->agents[i];
        snprintf(x->id, sizeof x->id, "%s", s_str(a->element[0]));
        snprintf(x->state, sizeof x->state, "%s", s_str(a->element[1]));
        snprintf(x->call, sizeof x->call, "%s", s_str(a->element[2]));
        snprintf(x->queues, sizeof x->queues, "%s", s_str(a->element[3]));
        snprintf(x->skills, sizeof x->skills, "%s", s_str(a->element[4]));
        x->since = atoll(s_str(a->element[5]));
        x->calls = atoll(s_str(a->element[6]));
        x->last_offer = atoll(s_str(a->element[7]));
    }
    s->nc = (int) calls->elements;
    for (int i = 0; i < s->nc; i++) {
        redisReply *c = calls->element[i];
        fx_call_t *x = &s->calls[i];
        snprintf(x->id, sizeof x->id, "%s", s_str(c->element[0]));
        snprintf(x->queue, sizeof x->queue, "%s", s_str(c->element[1]));
        snprintf(x->state, sizeof x->state, "%s", s_str(c->element[2]));
        snprintf(x->agent, sizeof x->agent, "%s", s_str(c->element[3]));
        x->rank = strtod(s_str(c->element[4]), NULL);
        snprintf(x->skills, sizeof x->skills, "%s", s_str(c->element[5]));
        x->prio = atoi(s_str(c->element[6]));
        x->enq = atoll(s_str(c->element[7]));
    }
    for (int qi = 0; qi < s->nq; qi++) {
        redisReply *members = ready->element[qi];
        for (size_t j = 0; j < members->elements; j++) {
            s->ready_entries++;
            fx_agent_t *a = fx_snap_agent(s, s_str(members->element[j]));
            if (a && strcmp(a->state, "ready") == 0) a->in_ready[qi] = true;
            else s->ready_unknown++;
        }
        redisReply *w = waits->element[qi];
        for (size_t j = 0; j < w->elements; j += 2) {
            fx_call_t *c = fx_snap_call(s, s_str(w->element[j]));
            CHECK(c, "wait set of %s holds %s, which has no call record", s->queues[qi], s_str(w->element[j]));
            c->waiting_in++;
            CHECK(strcmp(c->queue, s->queues[qi]) == 0, "call %s of queue %s waits in %s", c->id, c->queue, s->queues[qi]);
        }
    }
    freeReplyObject(r);
}

fx_agent_t *
fx_snap_agent(fx_snap_t *s, const char *id)
{
    for (int i = 0; i < s->na; i++) if (strcmp(s->agents[i].id, id) == 0) return &s->agents[i];
    return NULL;
}

fx_call_t *
fx_snap_call(fx_snap_t *s, const char *id)
{
    for (int i = 0; i < s->nc; i++) if (strcmp(s->calls[i].id, id) == 0) return &s->calls[i];
    return NULL;
}

int
fx_snap_queue(fx_snap_t *s, const char *q)
{
    for (int i = 0; i < s->nq; i++) if (strcmp(s->queues[i], q) == 0) return i;
    return -1;
}

bool
fx_qualifies(const char *agent_skills, const char *required)
{
    char req[256];
    snprintf(req, sizeof req, "%s", required);
    for (char *save, *t = strtok_r(req, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        int need = colon ? atoi(colon + 1) : 0;
        if (colon) *colon = '\0';
        /* find "name:level" in agent_skills */
        const char *p = agent_skills;
        bool ok = false;
        size_t n = strlen(t);
        while ((p = strstr(p, t))) {
            if ((p == agent_skills || p[-1] == ',') && p[n] == ':') { ok = atoi(p + n + 1) >= need; break; }
            p += n;
        }
        if (!ok) return false;
    }
    return true;
}

void
fx_pg_text(const char *sql, char *out, size_t cap)
{
    cc_pg_t *pg = cc_pg_new(getenv("DATABASE_URL"), 5000, NULL);
    PGresult *res = NULL;
    snprintf(out, cap, "?");
    if (cc_pg_connect(pg) == 0 && cc_pg_run(pg, sql, &res) == 0)
        snprintf(out, cap, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    if (res) PQclear(res);
    cc_pg_destroy(&pg);
}

bool
fx_pg_until(const char *sql, const char *want)
{
    char got[512];
    for (int64_t end = cc_mono_ms() + 10000; cc_mono_ms() < end; cc_sleep_ms(50)) {
        fx_pg_text(sql, got, sizeof got);
        if (strcmp(got, want) == 0) return true;
    }
    fprintf(stderr, "fx_pg_until: %s\n  gave \"%s\", not \"%s\"\n", sql, got, want);
    return false;
}

int
fx_callback(fx_t *fx, int i, const char *call, const char *number, char *error, size_t cap)
{
    Cc__CallbackRequest m = CC__CALLBACK_REQUEST__INIT;
    m.call_id = (char *) call;
    m.number = (char *) number;
    uint8_t buf[256];
    if (cc__callback_request__get_packed_size(&m) > sizeof buf) return -1;
    size_t len = cc__callback_request__pack(&m, buf);
    return fx_request(fx, i, "acd.callback", buf, len, error, cap);
}
