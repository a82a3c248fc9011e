/* acd_server: turns bus requests into acd.lua operations and their actions
 * into events and offers to the gateway. */
#include "acd_server.h"
#include "acd_router.h"
#include "acd_sessions.h"
#include "cc/cc_log.h"
#include "cc/cc_rpc.h"
#include "cc/cc_util.h"
#include "agent.pb-c.h"
#include "queue.pb-c.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 128

static const cc_cfg_key_t s_keys[] = {
    { "ACD_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port (/healthz, /metrics)" },
    { "ACD_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Endpoint the acd request server binds" },
    { "ACD_GATEWAY_RPC", CC_CFG_STR, 0, 255, NULL, 0, "Gateway request endpoint for ringing agents; empty: offers are events only" },
    { "ACD_TICK_MS", CC_CFG_INT, 10, 10000, NULL, 0, "How often offer timeouts, wrap-ups, holds, overflows and maximum waits are checked" },
    { "ACD_RELOAD_MS", CC_CFG_INT, 1000, 3600000, NULL, 0, "How often queue settings and business hours are read again from PostgreSQL" },
    { "ACD_SESSION_RETRY_MS", CC_CFG_INT, 50, 60000, NULL, 0, "How often an agent session write PostgreSQL could not take is tried again" },
    { "ACD_RESTORE_HOLD_MS", CC_CFG_INT, 0, 600000, NULL, 0, "After Redis lost its data, how long a restored ready agent is offered nothing (its phone may ring with an offer Redis forgot, which the gateway tells again)" },
    CC_CFG_END
};

const cc_service_def_t acd_service_def = {
    .name = "acd",
    .summary = "Automatic call distribution: queues, skills, routing, live agent state.",
    .keys = s_keys,
    .admin_port_key = "ACD_ADMIN_PORT",
    .needs = CC_NEED_BUS | CC_NEED_PG | CC_NEED_REDIS,
};

struct _acd_server_t {
    cc_service_t *svc;
    cc_bus_t *bus;
    acd_router_t *router;
    acd_sessions_t *sessions;  /* acd.sessions, written off the loop */
    cc_rpc_server_t *rpc;
    cc_rpc_client_t *gateway;
    uv_timer_t *tick;
    uv_timer_t *reload;
    unsigned ticks;
    bool stopping;
    bool restoring;            /* putting sessions back: they are in PostgreSQL already */
    char restore_hold_ms[16];
    int64_t reload_ms;         /* ACD_RELOAD_MS */
    cc_metric_t *m_offers, *m_entered, *m_abandoned, *m_answered, *m_requeued, *m_errors;
    cc_metric_t *m_overflowed, *m_left, *m_callbacks;
};

/* One operation in flight: who waits for its outcome. */
typedef struct {
    acd_server_t *server;
    cc_rpc_call_t *call;       /* NULL for the service's own operations */
    bool enqueue;              /* reply with Enqueued */
    bool ended;                /* acd.ended: call_id set */
    char call_id[ID_MAX + 1];
    uint32_t position;
    uint32_t estimated_wait_s;
    char music[64];
    bool replayed;             /* a retry of a request run already: no event again */
    char *session[4];          /* a login's agent, extension, skills, queues: kept when it succeeds */
} op_ctx_t;

static int64_t s_now_ms(void) { return cc_wall_us() / 1000; }

/* ------------------------------------------------------------- actions */

static Cc__AgentState
s_state(const char *name)
{
    static const struct { const char *name; Cc__AgentState state; } map[] = {
        { "logged_out", CC__AGENT_STATE__AGENT_LOGGED_OUT }, { "ready", CC__AGENT_STATE__AGENT_READY },
        { "not_ready", CC__AGENT_STATE__AGENT_NOT_READY }, { "reserved", CC__AGENT_STATE__AGENT_RESERVED },
        { "on_call", CC__AGENT_STATE__AGENT_ON_CALL }, { "wrap_up", CC__AGENT_STATE__AGENT_WRAP_UP },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(map[i].name, name) == 0) return map[i].state;
    return CC__AGENT_STATE__AGENT_LOGGED_OUT;
}

static Cc__Status s_run(acd_server_t *self, const char *op, int argc, const char *const *args);
static Cc__Status s_run_error(acd_server_t *self, const char *op, int argc, const char *const *args,
                              const char **error_p);

static void
s_on_offer_reply(void *arg, const Cc__Reply *reply)
{
    /* arg: "call\0agent" allocated by s_offer */
    char *ids = arg;
    acd_server_t *self = *(acd_server_t **) ids;
    const char *call = ids + sizeof(acd_server_t *);
    const char *agent = call + strlen(call) + 1;
    if (reply->status != CC__STATUS__STATUS_OK && !self->stopping) {
        CC_WARN("gateway could not ring the agent; offer withdrawn", "call_id=%s agent_id=%s error=\"%s\"",
                call, agent, reply->error);
        const char *args[] = { call, agent, "unreachable" };
        s_run(self, "rejected", 3, args);
    }
    free(ids);
}

/* Asks the gateway to ring the agent of offer v (offer call agent queue wait
 * ext customer caller flags kind number). */
static void
s_ring(acd_server_t *self, const char *const *v)
{
    if (!self->gateway) return;
    Cc__AgentOffer offer = CC__AGENT_OFFER__INIT;
    offer.call_id = (char *) v[1];
    offer.agent_id = (char *) v[2];
    offer.queue = (char *) v[3];
    offer.wait_ms = atoll(v[4]);
    offer.extension = (char *) v[5];
    offer.customer_id = (char *) v[6];
    offer.caller = (char *) v[7];
    offer.kind = (char *) v[9];
    offer.callback_number = (char *) v[10];
    char *flags[64];
    char flagbuf[512];
    snprintf(flagbuf, sizeof flagbuf, "%s", v[8]);
    size_t nflags = 0;
    for (char *save, *f = strtok_r(flagbuf, ",", &save); f && nflags < 64; f = strtok_r(NULL, ",", &save))
        flags[nflags++] = f;
    offer.blacklist_flags = flags;
    offer.n_blacklist_flags = nflags;
    size_t len = protobuf_c_message_get_packed_size(&offer.base);
    uint8_t *buf = malloc(len ? len : 1);
    protobuf_c_message_pack(&offer.base, buf);
    size_t cl = strlen(v[1]), al = strlen(v[2]);
    char *ids = malloc(sizeof(acd_server_t *) + cl + al + 2);
    if (!buf || !ids) abort();
    *(acd_server_t **) ids = self;
    memcpy(ids + sizeof(acd_server_t *), v[1], cl + 1);
    memcpy(ids + sizeof(acd_server_t *) + cl + 1, v[2], al + 1);
    cc_rpc_call(self->gateway, "gateway.offer", v[1], buf, len, 5000, s_on_offer_reply, ids);
    free(buf);
}

static void
s_offer(acd_server_t *self, const char *const *v)
{
    Cc__QueueOffered ev = CC__QUEUE_OFFERED__INIT;
    ev.call_id = (char *) v[1];
    ev.agent_id = (char *) v[2];
    ev.queue = (char *) v[3];
    ev.wait_ms = atoll(v[4]);
    cc_bus_publish_msg(self->bus, "queue.offered", v[1], &ev);
    cc_metric_add(self->m_offers, 1);
    s_ring(self, v);
}

/* Announcements and withdrawals are best effort: a late or lost one is not
 * retried. */
static void
s_ignore_reply(void *arg, const Cc__Reply *reply)
{
    if (reply->status != CC__STATUS__STATUS_OK)
        CC_DEBUG("best-effort gateway request not done", "method=%s request_id=%s error=\"%s\"",
                 (const char *) arg, reply->request_id, reply->error);
}

/* acd gave an offer up itself (not answered in time, a supervisor): the
 * gateway stops the agent's phone ringing (best effort: it also gives up at
 * its own ring time). */
static void
s_withdraw(acd_server_t *self, const char *call_id, const char *agent)
{
    if (!self->gateway) return;
    Cc__CallRef r = CC__CALL_REF__INIT;
    r.call_id = (char *) call_id;
    r.agent_id = (char *) agent;
    uint8_t buf[512];
    size_t len = cc__call_ref__get_packed_size(&r);
    if (len > sizeof buf) return;
    cc__call_ref__pack(&r, buf);
    cc_rpc_call(self->gateway, "gateway.withdraw", call_id, buf, len, 2000, s_ignore_reply, "gateway.withdraw");
}

/* ------------------------------------------------------------ sessions */

/* Agents' sessions are kept in acd.sessions (what an agent asked for last:
 * logged in to which queues with which skills, ready or not_ready, or the
 * call it answered), so that they come back when Redis loses its data.
 * Written by acd_sessions's thread, in order, never on the loop. */

/* An agent state change, as the script reported it (agent, state, previous,
 * ms, reason): the durable part of it, if any. A call's end makes the agent
 * ready again (through wrap-up) unless it asked for not_ready. */
static void
s_session_state(acd_server_t *self, const char *const *v)
{
    if (self->restoring) return;
    const char *agent = v[1], *state = v[2], *previous = v[3], *reason = v[5];
    bool after_call = strcmp(previous, "on_call") == 0;
    if (strcmp(state, "logged_out") == 0)
        acd_sessions_end(self->sessions, agent);
    else if (strcmp(state, "not_ready") == 0)
        acd_sessions_state(self->sessions, agent, state, reason);
    else if ((strcmp(state, "ready") == 0 && (after_call || strcmp(previous, "not_ready") == 0))
             || (strcmp(state, "wrap_up") == 0 && after_call))
        acd_sessions_state(self->sessions, agent, "ready", "");
}

/* A call answered (call, agent, queue, ...): the agent's session is on it. */
static void
s_session_call(acd_server_t *self, const char *const *v)
{
    if (self->restoring) return;
    acd_sessions_call(self->sessions, v[2], v[1], v[3]);
}

/* Puts every kept session back into Redis after it lost its data, once the
 * writes queued before are in. Returns the number restored, or -1 when
 * PostgreSQL could not be read. */
static int
s_restore_sessions(acd_server_t *self)
{
    PGresult *res = NULL;
    if (acd_sessions_sync(self->sessions, 2000))
        CC_WARN("agent sessions restored without the latest writes (PostgreSQL unreachable)", "%s", "");
    if (cc_pg_exec(cc_service_pg(self->svc), "acd_sessions", 0, NULL, &res)) {
        CC_ERROR("agent sessions not restored", "error=\"%s\"", cc_pg_error(cc_service_pg(self->svc)));
        return -1;
    }
    int n = PQntuples(res), restored = 0;
    self->restoring = true;
    for (int i = 0; i < n; i++) {
        const char *args[9];
        for (int c = 0; c < 8; c++) args[c] = PQgetvalue(res, i, c);
        args[8] = self->restore_hold_ms;
        restored += s_run(self, "restore", 9, args) == CC__STATUS__STATUS_OK;
    }
    self->restoring = false;
    PQclear(res);
    return restored;
}

/* Puts the kept callbacks back into Redis after it lost its data, each in
 * its place (after s_restore_sessions, which waited for the writes queued
 * before). Returns the number put back, or -1 when PostgreSQL could not be
 * read. */
static int
s_restore_callbacks(acd_server_t *self)
{
    PGresult *res = NULL;
    if (cc_pg_exec(cc_service_pg(self->svc), "acd_callbacks", 0, NULL, &res)) {
        CC_ERROR("callbacks not restored", "error=\"%s\"", cc_pg_error(cc_service_pg(self->svc)));
        return -1;
    }
    int n = PQntuples(res), restored = 0;
    for (int i = 0; i < n; i++) {
        const char *args[13];
        for (int c = 0; c < 13; c++) args[c] = PQgetvalue(res, i, c);
        const char *err = "";
        if (s_run_error(self, "restore_callback", 13, args, &err) == CC__STATUS__STATUS_OK) restored++;
        else CC_WARN("callback not restored", "call_id=%s queue=%s error=\"%s\"", args[0], args[1], err);
    }
    PQclear(res);
    return restored;
}

/* What acd.callbacks keeps of action v (each write idempotent, so done
 * again for a retry's replayed actions): a callback requested (callback
 * call queue number position prio rank enq expires customer caller skills
 * qenq)
 * is written; one answered (answered ... kind), gone (left ... kind) or
 * otherwise done (callback_done call) is marked done, for good. */
static void
s_callback_kept(acd_server_t *self, int argc, const char *const *v)
{
    if (strcmp(v[0], "callback") == 0 && argc >= 12) {
        /* qenq: none from an older version's action (0: at its arrival). */
        const char *row[11] = { v[1], v[2], v[3], v[5], v[6], v[7], v[8], v[9], v[10], v[11], argc >= 13 ? v[12] : "0" };
        acd_sessions_callback(self->sessions, row);
    } else if ((strcmp(v[0], "answered") == 0 && argc >= 7 && strcmp(v[6], "callback") == 0)
               || (strcmp(v[0], "left") == 0 && argc >= 6 && strcmp(v[5], "callback") == 0)
               || (strcmp(v[0], "callback_done") == 0 && argc >= 2)) {
        acd_sessions_callback_done(self->sessions, v[1]);
    }
}

/* An enqueue's place (position call position estimated_wait_ms music), for its reply. */
static void
s_reply_position(op_ctx_t *ctx, const char *const *v)
{
    ctx->position = (uint32_t) atoi(v[2]);
    ctx->estimated_wait_s = (uint32_t) (atoll(v[3]) / 1000);
    snprintf(ctx->music, sizeof ctx->music, "%s", v[4]);
}

static void
s_on_action(void *arg, int argc, const char *const *v)
{
    op_ctx_t *ctx = arg;
    acd_server_t *self = ctx->server;
    const char *kind = v[0];
    if (strcmp(kind, "replayed") == 0) {
        ctx->replayed = true;
        return;
    }
    if (ctx->replayed) {
        /* The first run's actions, for a retry: its events were published
         * then; what the retry may have missed is done again (each is
         * idempotent): the agent rung, the session written, the reply. */
        if (strcmp(kind, "offer") == 0 && argc >= 11) s_ring(self, v);
        else if (strcmp(kind, "agent") == 0 && argc >= 7) s_session_state(self, v);
        else if (strcmp(kind, "answered") == 0 && argc >= 5) s_session_call(self, v);
        else if (strcmp(kind, "position") == 0 && argc >= 5) s_reply_position(ctx, v);
        s_callback_kept(self, argc, v);
        return;
    }
    if (strcmp(kind, "offer") == 0 && argc >= 11) {
        s_offer(self, v);
    } else if (strcmp(kind, "agent") == 0 && argc >= 7) {
        Cc__AgentStateChanged ev = CC__AGENT_STATE_CHANGED__INIT;
        ev.agent_id = (char *) v[1];
        ev.state = s_state(v[2]);
        ev.previous = s_state(v[3]);
        ev.time_in_previous_ms = atoll(v[4]);
        ev.reason = (char *) v[5];
        ev.call_id = (char *) v[6];
        cc_bus_publish_msg(self->bus, "agent.state", v[6], &ev);
        s_session_state(self, v);
    } else if (strcmp(kind, "entered") == 0 && argc >= 5) {
        Cc__QueueEntered ev = CC__QUEUE_ENTERED__INIT;
        ev.call_id = (char *) v[1];
        ev.queue = (char *) v[2];
        ev.priority = atoi(v[3]);
        ev.position = (uint32_t) atoi(v[4]);
        cc_bus_publish_msg(self->bus, "queue.entered", v[1], &ev);
        cc_metric_add(self->m_entered, 1);
    } else if (strcmp(kind, "answered") == 0 && argc >= 5) {
        Cc__QueueAnswered ev = CC__QUEUE_ANSWERED__INIT;
        ev.call_id = (char *) v[1];
        ev.agent_id = (char *) v[2];
        ev.queue = (char *) v[3];
        ev.wait_ms = atoll(v[4]);
        ev.within_service_level = argc > 5 && v[5][0] == '1';
        cc_bus_publish_msg(self->bus, "queue.answered", v[1], &ev);
        cc_metric_add(self->m_answered, 1);
        s_session_call(self, v);
        s_callback_kept(self, argc, v);
    } else if (strcmp(kind, "abandoned") == 0 && argc >= 5) {
        Cc__QueueAbandoned ev = CC__QUEUE_ABANDONED__INIT;
        ev.call_id = (char *) v[1];
        ev.queue = (char *) v[2];
        ev.wait_ms = atoll(v[3]);
        ev.position = (uint32_t) atoi(v[4]);
        cc_bus_publish_msg(self->bus, "queue.abandoned", v[1], &ev);
        cc_metric_add(self->m_abandoned, 1);
    } else if (strcmp(kind, "position") == 0 && argc >= 5) {
        s_reply_position(ctx, v);
    } else if (strcmp(kind, "announce") == 0 && argc >= 5) {
        Cc__QueuePosition ev = CC__QUEUE_POSITION__INIT;
        ev.call_id = (char *) v[1];
        ev.queue = (char *) v[2];
        ev.position = (uint32_t) atoi(v[3]);
        ev.estimated_wait_s = (uint32_t) (atoll(v[4]) / 1000);
        cc_bus_publish_msg(self->bus, "queue.position", v[1], &ev);
        if (self->gateway) {
            uint8_t buf[256];
            size_t len = cc__queue_position__get_packed_size(&ev);
            if (len <= sizeof buf) {
                cc__queue_position__pack(&ev, buf);
                cc_rpc_call(self->gateway, "gateway.announce", v[1], buf, len, 2000, s_ignore_reply, "gateway.announce");
            }
        }
    } else if (strcmp(kind, "overflowed") == 0 && argc >= 5) {
        Cc__QueueOverflowed ev = CC__QUEUE_OVERFLOWED__INIT;
        ev.call_id = (char *) v[1];
        ev.queue = (char *) v[2];
        ev.to_queue = (char *) v[3];
        ev.wait_ms = atoll(v[4]);
        cc_bus_publish_msg(self->bus, "queue.overflowed", v[1], &ev);
        cc_metric_add(self->m_overflowed, 1);
    } else if (strcmp(kind, "left") == 0 && argc >= 5) {
        Cc__QueueLeft ev = CC__QUEUE_LEFT__INIT;
        ev.call_id = (char *) v[1];
        ev.queue = (char *) v[2];
        ev.wait_ms = atoll(v[3]);
        ev.reason = (char *) v[4];
        cc_bus_publish_msg(self->bus, "queue.left", v[1], &ev);
        cc_metric_add(self->m_left, 1);
        s_callback_kept(self, argc, v);
    } else if (strcmp(kind, "callback") == 0 && argc >= 5) {
        Cc__CallbackRequested ev = CC__CALLBACK_REQUESTED__INIT;
        ev.call_id = (char *) v[1];
        ev.queue = (char *) v[2];
        ev.number = (char *) v[3];
        ev.position = (uint32_t) atoi(v[4]);
        cc_bus_publish_msg(self->bus, "callback.requested", v[1], &ev);
        cc_metric_add(self->m_callbacks, 1);
        s_callback_kept(self, argc, v);
    } else if (strcmp(kind, "requeued") == 0 && argc >= 5) {
        Cc__QueueRequeued ev = CC__QUEUE_REQUEUED__INIT;
        ev.call_id = (char *) v[1];
        ev.agent_id = (char *) v[2];
        ev.queue = (char *) v[3];
        ev.reason = (char *) v[4];
        cc_bus_publish_msg(self->bus, "queue.requeued", v[1], &ev);
        cc_metric_add(self->m_requeued, 1);
        if (strcmp(v[4], "no_answer") == 0 || strcmp(v[4], "forced") == 0) s_withdraw(self, v[1], v[2]);
        if (strcmp(v[4], "callback_no_answer") == 0 && argc >= 7)
            acd_sessions_callback_attempt(self->sessions, v[1], v[6], v[5]);
    }
}

static void
s_count_error(acd_server_t *self, Cc__Status st)
{
    if (st == CC__STATUS__STATUS_UNAVAILABLE || st == CC__STATUS__STATUS_INTERNAL) cc_metric_add(self->m_errors, 1);
}

/* Runs one of the service's own operations now (tick, queue loading);
 * *error_p (when given) gets the error's text, valid until the next run. */
static Cc__Status
s_run_error(acd_server_t *self, const char *op, int argc, const char *const *args, const char **error_p)
{
    op_ctx_t ctx = { .server = self };
    const char *err;
    Cc__Status st = acd_router_run(self->router, s_now_ms(), op, argc, args, s_on_action, &ctx, &err);
    s_count_error(self, st);
    if (error_p) *error_p = err;
    return st;
}

static Cc__Status
s_run(acd_server_t *self, const char *op, int argc, const char *const *args)
{
    return s_run_error(self, op, argc, args, NULL);
}

static void
s_on_done(void *arg, Cc__Status st, const char *error)
{
    op_ctx_t *ctx = arg;
    s_count_error(ctx->server, st);
    if (st == CC__STATUS__STATUS_OK && ctx->session[0])
        acd_sessions_login(ctx->server->sessions, ctx->session[0], ctx->session[1], ctx->session[2], ctx->session[3]);
    if (st == CC__STATUS__STATUS_NOT_FOUND && ctx->ended)
        acd_sessions_call_ended(ctx->server->sessions, ctx->call_id);   /* lost with Redis: not on it any more */
    for (int i = 0; i < 4; i++) free(ctx->session[i]);
    if (st == CC__STATUS__STATUS_OK && ctx->enqueue) {
        Cc__Enqueued out = CC__ENQUEUED__INIT;
        out.call_id = ctx->call_id;
        out.position = ctx->position;
        out.estimated_wait_s = ctx->estimated_wait_s;
        out.music = ctx->music;
        cc_rpc_reply_msg(ctx->call, &out);
    } else {
        cc_rpc_reply(ctx->call, st, st == CC__STATUS__STATUS_OK ? NULL : error, NULL, 0);
    }
    free(ctx);
}

/* Queues a request's operation; the reply goes out when the loop turn's
 * operations are flushed to Redis together. Returns its context (owned by
 * the router's callbacks: valid until the flush). */
static op_ctx_t *
s_submit(acd_server_t *self, cc_rpc_call_t *call, const Cc__Request *req, const char *op, int argc,
         const char *const *args, bool enqueue)
{
    op_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) abort();
    ctx->server = self;
    ctx->call = call;
    ctx->enqueue = enqueue;
    ctx->ended = strcmp(op, "ended") == 0;
    if (enqueue || ctx->ended) snprintf(ctx->call_id, sizeof ctx->call_id, "%s", args[0]);
    acd_router_submit(self->router, s_now_ms(), req->request_id, req->attempt > 1, op, argc, args, s_on_action,
                      s_on_done, ctx);
    return ctx;
}

/* ------------------------------------------------------------ requests */

/* An id from the wire: 1..128 printable characters without spaces or commas
 * (commas separate lists inside acd.lua). */
static bool
s_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ID_MAX) return false;
    for (; *s; s++)
        if (!isgraph((unsigned char) *s) || *s == ',' || *s == ':') return false;
    return true;
}

/* Free text (a not-ready reason): up to max bytes of valid UTF-8 (the
 * script's results come back as JSON). */
static bool
s_text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    json_t *j = n <= max ? json_stringn(s, n) : NULL;
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

static void
s_reply_status(cc_rpc_call_t *call, Cc__Status st, const char *error)
{
    cc_rpc_reply(call, st, st == CC__STATUS__STATUS_OK ? NULL : error, NULL, 0);
}

#define DECODE(type, fn, var)                                                       \
    type *var = fn##__unpack(NULL, req->payload.len, req->payload.data);            \
    if (!var) {                                                                     \
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "malformed " #type, NULL, 0); \
        return;                                                                     \
    }

/* Joins skills as "name:level,..." into buf. Returns false when a name is bad. */
static bool
s_join_skills(Cc__AgentSkill **skills, size_t n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!s_id_ok(skills[i]->name) || skills[i]->level > 100) return false;
        at += (size_t) snprintf(buf + at, cap - at, "%s%s:%u", i ? "," : "", skills[i]->name, skills[i]->level);
        if (at >= cap) return false;
    }
    return true;
}

static bool
s_join_ids(char **ids, size_t n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!s_id_ok(ids[i])) return false;
        at += (size_t) snprintf(buf + at, cap - at, "%s%s", i ? "," : "", ids[i]);
        if (at >= cap) return false;
    }
    return true;
}

static void
s_agent_login(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    DECODE(Cc__AgentLogin, cc__agent_login, m);
    char skills[1024], queues[1024], ext[ID_MAX + 1];
    Cc__Status st = CC__STATUS__STATUS_OK;
    const char *err = NULL;
    (void) st;
    if (!s_id_ok(m->agent_id) || !s_join_skills(m->skills, m->n_skills, skills, sizeof skills)
        || !s_join_ids(m->queues, m->n_queues, queues, sizeof queues)
        || (m->extension[0] && !s_id_ok(m->extension))) {
        st = CC__STATUS__STATUS_BAD_REQUEST;
        err = "invalid agent id, extension, skill or queue name";
        goto out;
    }
    snprintf(ext, sizeof ext, "%s", m->extension);
    if (!m->n_skills && !m->n_queues) {
        /* The agent's definition in acd.agents. */
        PGresult *res = NULL;
        const char *p[] = { m->agent_id };
        if (cc_pg_exec(cc_service_pg(self->svc), "acd_agent", 1, p, &res)) {
            st = CC__STATUS__STATUS_UNAVAILABLE;
            err = "database unavailable";
            goto out;
        }
        if (PQntuples(res) != 1) {
            PQclear(res);
            st = CC__STATUS__STATUS_NOT_FOUND;
            err = "unknown agent and no skills or queues given";
            goto out;
        }
        if (!ext[0]) snprintf(ext, sizeof ext, "%s", PQgetvalue(res, 0, 0));
        snprintf(skills, sizeof skills, "%s", PQgetvalue(res, 0, 1));
        snprintf(queues, sizeof queues, "%s", PQgetvalue(res, 0, 2));
        PQclear(res);
    }
    const char *args[] = { m->agent_id, ext[0] ? ext : m->agent_id, queues, skills };
    op_ctx_t *ctx = s_submit(self, call, req, "login", 4, args, false);
    const char *session[] = { args[0], args[1], skills, queues };   /* the order of acd_sessions_login */
    for (int i = 0; i < 4; i++) {
        ctx->session[i] = strdup(session[i]);
        if (!ctx->session[i]) abort();
    }
    cc__agent_login__free_unpacked(m, NULL);
    return;
out:
    s_reply_status(call, st, err);
    cc__agent_login__free_unpacked(m, NULL);
}

static void
s_agent_set_state(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    DECODE(Cc__AgentSetState, cc__agent_set_state, m);
    const char *state = m->state == CC__AGENT_STATE__AGENT_READY ? "ready"
                      : m->state == CC__AGENT_STATE__AGENT_NOT_READY ? "not_ready"
                      : m->state == CC__AGENT_STATE__AGENT_LOGGED_OUT ? "logged_out" : NULL;
    if (!s_id_ok(m->agent_id) || !s_text_ok(m->reason, 64)) {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "invalid agent id, or reason (up to 64 bytes of UTF-8)");
    } else if (!state) {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "state must be ready, not_ready or logged_out");
    } else {
        /* A request naming who asks ("by": a supervisor) is a forced change. */
        const char *args[] = { m->agent_id, state, m->reason, m->by[0] ? "1" : "0" };
        if (m->by[0]) CC_INFO("agent state set", "agent_id=%s state=%s by=%s", m->agent_id, state, m->by);
        s_submit(self, call, req, "set_state", 4, args, false);
    }
    cc__agent_set_state__free_unpacked(m, NULL);
}

static void
s_agent_logout(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    DECODE(Cc__AgentLogout, cc__agent_logout, m);
    if (s_id_ok(m->agent_id)) {
        const char *args[] = { m->agent_id, "logged_out", m->by[0] ? m->by : "logout", m->by[0] ? "1" : "0" };
        s_submit(self, call, req, "set_state", 4, args, false);
    } else {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "invalid agent id");
    }
    cc__agent_logout__free_unpacked(m, NULL);
}

static void
s_enqueue(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    DECODE(Cc__Enqueue, cc__enqueue, m);
    char skills[1024], flags[512], prio[8];
    if (s_id_ok(m->call_id) && s_id_ok(m->queue) && s_join_ids(m->skills, m->n_skills, skills, sizeof skills)
        && s_join_ids(m->blacklist_flags, m->n_blacklist_flags, flags, sizeof flags)
        && m->priority >= 0 && m->priority <= 9
        && (!m->customer_id[0] || s_id_ok(m->customer_id)) && (!m->last_agent_id[0] || s_id_ok(m->last_agent_id))
        && (!m->caller[0] || s_id_ok(m->caller))) {
        snprintf(prio, sizeof prio, "%d", m->priority);
        const char *args[] = { m->call_id, m->queue, prio, skills, m->customer_id, m->last_agent_id, m->caller, flags };
        s_submit(self, call, req, "enqueue", 8, args, true);
    } else {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "invalid call id, queue, skills, flags or priority");
    }
    cc__enqueue__free_unpacked(m, NULL);
}

/* acd.reoffer (after acd.rebuilt, from the gateway): a caller whose agent's
 * phone rings; the call is offered to that agent again. */
static void
s_reoffer(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    DECODE(Cc__Enqueue, cc__enqueue, m);
    if (s_id_ok(m->call_id) && s_id_ok(m->queue) && s_id_ok(m->ringing_agent_id) && (!m->caller[0] || s_id_ok(m->caller))) {
        const char *args[] = { m->call_id, m->queue, m->ringing_agent_id, m->caller };
        s_submit(self, call, req, "reoffer", 4, args, true);
    } else {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "invalid call id, queue, ringing agent or caller");
    }
    cc__enqueue__free_unpacked(m, NULL);
}

/* acd.answered, acd.rejected, acd.ended share one shape. */
static void
s_call_op(acd_server_t *self, const char *op, cc_rpc_call_t *call, const Cc__Request *req)
{
    DECODE(Cc__CallRef, cc__call_ref, m);
    bool need_agent = strcmp(op, "ended") != 0 && strcmp(op, "cancel") != 0;
    if (s_id_ok(m->call_id) && (!need_agent || s_id_ok(m->agent_id)) && s_text_ok(m->reason, 64)) {
        const char *args[] = { m->call_id, m->agent_id, m->reason };
        s_submit(self, call, req, op, need_agent ? 3 : 1, args, false);   /* ended, cancel: the call only */
    } else {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "invalid call or agent id, or reason (up to 64 bytes of UTF-8)");
    }
    cc__call_ref__free_unpacked(m, NULL);
}

static void s_answered(void *arg, cc_rpc_call_t *call, const Cc__Request *req) { s_call_op(arg, "answered", call, req); }
static void s_callback_failed(void *arg, cc_rpc_call_t *call, const Cc__Request *req) { s_call_op(arg, "callback_failed", call, req); }
static void s_cancel(void *arg, cc_rpc_call_t *call, const Cc__Request *req) { s_call_op(arg, "cancel", call, req); }

static void
s_callback(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    DECODE(Cc__CallbackRequest, cc__callback_request, m);
    if (s_id_ok(m->call_id) && s_id_ok(m->number) && strlen(m->number) <= 32) {
        const char *args[] = { m->call_id, m->number };
        s_submit(self, call, req, "callback", 2, args, false);
    } else {
        s_reply_status(call, CC__STATUS__STATUS_BAD_REQUEST, "invalid call id or number");
    }
    cc__callback_request__free_unpacked(m, NULL);
}
static void s_rejected(void *arg, cc_rpc_call_t *call, const Cc__Request *req) { s_call_op(arg, "rejected", call, req); }
static void s_ended(void *arg, cc_rpc_call_t *call, const Cc__Request *req) { s_call_op(arg, "ended", call, req); }

/* acd.status: queues and agents as the script reads them in one atomic
 * step, batched with the turn's other operations (no round trip of its own). */
typedef struct {
    cc_rpc_call_t *call;
    Cc__QueueStatus **queues;
    size_t nq, capq;
    Cc__AgentStatus **agents;
    size_t na, capa;
} status_ctx_t;

static char *
s_dup(const char *s)
{
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

static void *
s_grow(void *array, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return array;
    *cap = *cap ? *cap * 2 : 16;
    array = realloc(array, *cap * size);
    if (!array) abort();
    return array;
}

static void
s_status_action(void *arg, int argc, const char *const *v)
{
    status_ctx_t *ctx = arg;
    if (strcmp(v[0], "queue_status") == 0 && argc >= 5) {
        ctx->queues = s_grow(ctx->queues, &ctx->capq, ctx->nq, sizeof *ctx->queues);
        Cc__QueueStatus *q = calloc(1, sizeof *q);
        if (!q) abort();
        cc__queue_status__init(q);
        q->queue = s_dup(v[1]);
        q->waiting = (uint32_t) atoi(v[2]);
        q->ready = (uint32_t) atoi(v[3]);
        q->longest_wait_ms = atoll(v[4]);
        q->callbacks = argc >= 7 ? (uint32_t) atoi(v[5]) : 0;
        q->calling_hours_closed = argc >= 7 && v[6][0] == '1';
        ctx->queues[ctx->nq++] = q;
    } else if (strcmp(v[0], "agent_status") == 0 && argc >= 9) {
        ctx->agents = s_grow(ctx->agents, &ctx->capa, ctx->na, sizeof *ctx->agents);
        Cc__AgentStatus *a = calloc(1, sizeof *a);
        if (!a) abort();
        cc__agent_status__init(a);
        a->agent_id = s_dup(v[1]);
        a->state = s_dup(v[2]);
        a->since_ms = atoll(v[3]);
        a->reason = s_dup(v[4]);
        a->call_id = s_dup(v[5]);
        a->queues = s_dup(v[6]);
        a->extension = s_dup(v[7]);
        a->skills = s_dup(v[8]);
        ctx->agents[ctx->na++] = a;
    }
}

static void
s_status_done(void *arg, Cc__Status st, const char *error)
{
    status_ctx_t *ctx = arg;
    if (st == CC__STATUS__STATUS_OK) {
        Cc__AcdStatus out = CC__ACD_STATUS__INIT;
        out.queues = ctx->queues;
        out.n_queues = ctx->nq;
        out.agents = ctx->agents;
        out.n_agents = ctx->na;
        cc_rpc_reply_msg(ctx->call, &out);
    } else {
        cc_rpc_reply(ctx->call, st, error, NULL, 0);
    }
    for (size_t i = 0; i < ctx->nq; i++) {
        free(ctx->queues[i]->queue);
        free(ctx->queues[i]);
    }
    for (size_t i = 0; i < ctx->na; i++) {
        Cc__AgentStatus *a = ctx->agents[i];
        free(a->agent_id);
        free(a->state);
        free(a->reason);
        free(a->call_id);
        free(a->queues);
        free(a->extension);
        free(a->skills);
        free(a);
    }
    free(ctx->queues);
    free(ctx->agents);
    free(ctx);
}

static void
s_status(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    (void) req;
    status_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) abort();
    ctx->call = call;
    acd_router_submit(self->router, s_now_ms(), NULL, false, "status", 0, NULL, s_status_action, s_status_done, ctx);
}

static int s_load_queues(acd_server_t *self);

static void
s_reload(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    acd_server_t *self = arg;
    int n = s_load_queues(self);
    char text[32];
    snprintf(text, sizeof text, "%d", n);
    if (n < 0) cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "could not load queues", NULL, 0);
    else cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, text, strlen(text));
}

static const cc_rpc_method_t s_methods[] = {
    { "agent.login", s_agent_login, "AgentLogin -> ok: logs an agent in, ready (skills and queues from acd.agents when not given)" },
    { "agent.logout", s_agent_logout, "AgentLogout -> ok: logs an agent out (not while reserved or on a call)" },
    { "agent.set_state", s_agent_set_state, "AgentSetState -> ok: ready, not_ready(reason) or logged_out" },
    { "acd.enqueue", s_enqueue, "Enqueue -> Enqueued: puts a call in a queue and routes it" },
    { "acd.reoffer", s_reoffer, "Enqueue (ringing_agent_id) -> Enqueued: after acd.rebuilt, a caller whose agent's phone rings" },
    { "acd.answered", s_answered, "CallRef -> ok: the agent answered the offer" },
    { "acd.rejected", s_rejected, "CallRef -> ok: the agent declined; the call keeps its place" },
    { "acd.ended", s_ended, "CallRef -> ok: the call ended (an abandon while waiting)" },
    { "acd.callback", s_callback, "CallbackRequest -> ok: the waiting caller is called back, keeping their place" },
    { "acd.callback_failed", s_callback_failed, "CallRef -> ok: the customer did not answer a callback; retried later" },
    { "acd.cancel", s_cancel, "CallRef -> ok: removes a waiting call or callback" },
    { "acd.status", s_status, "-> AcdStatus: queues and agents" },
    { "acd.reload", s_reload, "-> number of queues loaded from acd.queues" },
    CC_RPC_METHODS_END
};

/* ---------------------------------------------------------------- set-up */

/* Copies acd.queues into Redis. Returns the number of queues or -1. */
static int
s_load_queues(acd_server_t *self)
{
    /* Marked for three reloads (at least a minute): a running acd's library
     * is never taken for one an upgrade left behind. */
    int mark_s = (int) (3 * self->reload_ms / 1000);
    acd_router_housekeep(self->router, mark_s < 60 ? 60 : mark_s);
    PGresult *res = NULL;
    if (cc_pg_exec(cc_service_pg(self->svc), "acd_queues", 0, NULL, &res)) return -1;
    int n = PQntuples(res);
    char *names = NULL;
    size_t names_len = 0;
    FILE *list = open_memstream(&names, &names_len);
    if (!list) abort();
    for (int i = 0; i < n; i++) fprintf(list, "%s%s", i ? "," : "", PQgetvalue(res, i, 0));
    fclose(list);
    for (int i = 0; i < n; i++) {
        const char *args[25];
        for (int c = 0; c < 25; c++) args[c] = PQgetvalue(res, i, c);
        if (s_run(self, "queue", 25, args) != CC__STATUS__STATUS_OK) {
            PQclear(res);
            free(names);
            return -1;
        }
    }
    PQclear(res);
    /* Callbacks past their expiry, and the markers of those done, go. */
    if (cc_pg_exec(cc_service_pg(self->svc), "acd_callbacks_expired", 0, NULL, NULL))
        CC_WARN("expired callbacks not deleted", "error=\"%s\"", cc_pg_error(cc_service_pg(self->svc)));
    const char *prune[] = { names };
    Cc__Status st = s_run(self, "prune", 1, prune);
    free(names);
    if (st != CC__STATUS__STATUS_OK) return -1;
    CC_DEBUG("queues loaded", "count=%d", n);
    return n;
}

/* Redis lost its data (a restart without persistence, a flush): the queues
 * are loaded again at once; the first instance to notice puts the agents'
 * sessions back from acd.sessions and tells everyone with acd.rebuilt, so
 * the gateway puts its waiting callers back. */
static void
s_check_epoch(acd_server_t *self)
{
    cc_redis_t *r = cc_service_redis(self->svc);
    acd_router_flush(self->router);
    redisReply *rep = cc_redis_cmdf(r, "EXISTS acd:epoch");
    bool lost = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
    if (rep) freeReplyObject(rep);
    if (!lost) return;
    s_load_queues(self);
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long) s_now_ms());
    const char *argv[] = { "SET", "acd:epoch", now, "NX" };
    rep = cc_redis_cmd(r, 4, argv);
    bool first = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep) freeReplyObject(rep);
    if (first) {
        int agents = s_restore_sessions(self);
        int callbacks = agents < 0 ? -1 : s_restore_callbacks(self);
        if (agents < 0 || callbacks < 0) {
            /* Not read: the next check (or another instance) tries again. */
            freeReplyObject(cc_redis_cmdf(r, "DEL acd:epoch"));
            return;
        }
        CC_WARN("Redis state was empty: queues loaded, agents' sessions and callbacks restored, calls asked to come back",
                "epoch=%s agents=%d callbacks=%d", now, agents, callbacks);
        cc_bus_publish(self->bus, "acd.rebuilt", NULL, now, strlen(now));
    }
}

static void
s_on_tick(uv_timer_t *t)
{
    acd_server_t *self = t->data;
    if (++self->ticks % 10 == 0) s_check_epoch(self);
    s_run(self, "tick", 0, NULL);
}

static void
s_on_reload(void *arg)
{
    s_load_queues(arg);
}

/* Settings edited in PostgreSQL and the calendar's open/closed verdicts
 * reach Redis without a restart. */
static void
s_on_reload_timer(uv_timer_t *t)
{
    if (s_load_queues(t->data) < 0) CC_WARN("queue settings not refreshed", "%s", "");
}

/* End of a loop turn: the operations the turn's requests queued go to
 * Redis together, without waiting; their replies go out when Redis answers
 * (meanwhile the loop takes the next requests, which go as the next batch). */
static void
s_on_turn_end(void *arg)
{
    acd_server_t *self = arg;
    acd_router_kick(self->router);
}

acd_server_t *
acd_server_new(cc_service_t *svc)
{
    acd_server_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->svc = svc;
    self->bus = cc_service_bus(svc);
    cc_cfg_t *cfg = cc_service_cfg(svc);
    cc_metrics_t *m = cc_service_metrics(svc);
    self->m_offers = cc_metrics_counter(m, "acd_offers_total", NULL, "Calls offered to agents");
    self->m_entered = cc_metrics_counter(m, "acd_calls_entered_total", NULL, "Calls that entered a queue");
    self->m_abandoned = cc_metrics_counter(m, "acd_calls_abandoned_total", NULL, "Calls ended while waiting or ringing");
    self->m_answered = cc_metrics_counter(m, "acd_calls_answered_total", NULL, "Offers answered by agents");
    self->m_requeued = cc_metrics_counter(m, "acd_offers_withdrawn_total", NULL, "Offers not answered or rejected");
    self->m_errors = cc_metrics_counter(m, "acd_errors_total", NULL, "Operations that failed on Redis");
    self->m_overflowed = cc_metrics_counter(m, "acd_calls_overflowed_total", NULL, "Calls moved to an overflow queue");
    self->m_left = cc_metrics_counter(m, "acd_calls_left_total", NULL, "Calls that left a queue without an agent");
    self->m_callbacks = cc_metrics_counter(m, "acd_callbacks_requested_total", NULL, "Callbacks requested");
    cc_pg_statement(cc_service_pg(svc), "acd_queues",
                    "SELECT name, strategy, offer_timeout_ms, wrap_up_ms, widen, max_len, sticky_ms, skills,"
                    " overflow_queue, overflow_after_ms, max_wait_ms, max_wait_action,"
                    " CASE WHEN join_empty THEN '1' ELSE '0' END, CASE WHEN leave_when_empty THEN '1' ELSE '0' END,"
                    " closed_action, callback_max_attempts, callback_retry_ms, callback_expire_ms,"
                    " CASE WHEN acd.is_open(name, now()) THEN '1' ELSE '0' END,"
                    " service_level_ms, blacklist_queue, music, announce_ms,"
                    " CASE WHEN acd.may_call_back(name, now()) THEN '1' ELSE '0' END,"
                    " (extract(epoch FROM now()) * 1000)::bigint::text"
                    " FROM acd.queues ORDER BY name");
    cc_pg_statement(cc_service_pg(svc), "acd_callbacks_expired",
                    "DELETE FROM acd.callbacks WHERE expires_ms < (extract(epoch FROM now()) * 1000)::bigint");
    cc_pg_statement(cc_service_pg(svc), "acd_callbacks",
                    "SELECT call_id, queue, number, prio::text, rank::text, enq_ms::text, expires_ms::text,"
                    " attempts::text, hold_until_ms::text, customer, caller, skills, qenq_ms::text FROM acd.callbacks"
                    " WHERE NOT done ORDER BY rank, call_id");
    cc_pg_statement(cc_service_pg(svc), "acd_agent",
                    "SELECT extension, skills, queues FROM acd.agents WHERE id = $1");
    cc_pg_statement(cc_service_pg(svc), "acd_sessions",
                    "SELECT agent_id, extension, queues, skills, state, reason, call_id, call_queue"
                    " FROM acd.sessions ORDER BY since");
    self->sessions = acd_sessions_new(cc_cfg_str(cfg, "DATABASE_URL"), (int) cc_cfg_int(cfg, "ACD_SESSION_RETRY_MS"));
    snprintf(self->restore_hold_ms, sizeof self->restore_hold_ms, "%lld", (long long) cc_cfg_int(cfg, "ACD_RESTORE_HOLD_MS"));
    if (!self->sessions) goto err;
    self->router = acd_router_new(cc_service_redis(svc), cc_loop_uv(cc_service_loop(svc)), m);
    self->reload_ms = cc_cfg_int(cfg, "ACD_RELOAD_MS");
    /* The gateway first: loading the queues may offer calls already (a
     * queue's calling hours began while no acd ran), whose agents it rings. */
    const char *gw = cc_cfg_str(cfg, "ACD_GATEWAY_RPC");
    if (*gw) {
        cc_rpc_client_opts_t o = { .endpoint = gw, .source = cc_service_instance(svc),
                                   .retry_ms = (int) cc_cfg_int(cfg, "CC_RPC_RETRY_MS"),
                                   .max_attempts = (int) cc_cfg_int(cfg, "CC_RPC_MAX_ATTEMPTS"), .metrics = m };
        self->gateway = cc_rpc_client_new(&o);
        if (!self->gateway) goto err;
        cc_rpc_client_attach(self->gateway, cc_service_loop(svc));
    }
    if (s_load_queues(self) < 0) {
        CC_ERROR("cannot load queues from acd.queues (migrations applied?)", "error=\"%s\"",
                 cc_pg_error(cc_service_pg(svc)));
        goto err;
    }
    self->rpc = cc_rpc_server_new(cc_cfg_str(cfg, "ACD_RPC"), s_methods, self, m);
    if (!self->rpc) goto err;
    cc_rpc_server_attach(self->rpc, cc_service_loop(svc));
    self->tick = cc_loop_timer(cc_service_loop(svc), s_on_tick, self, (uint64_t) cc_cfg_int(cfg, "ACD_TICK_MS"));
    cc_loop_on_turn_end(cc_service_loop(svc), s_on_turn_end, self);
    self->reload = cc_loop_timer(cc_service_loop(svc), s_on_reload_timer, self,
                                 (uint64_t) cc_cfg_int(cfg, "ACD_RELOAD_MS"));
    cc_service_on_reload(svc, s_on_reload, self);
    CC_INFO("acd ready", "rpc=%s gateway=%s", cc_cfg_str(cfg, "ACD_RPC"), *gw ? gw : "(none)");
    return self;
err:
    acd_server_destroy(&self);
    return NULL;
}

void
acd_server_destroy(acd_server_t **self_p)
{
    if (!self_p || !*self_p) return;
    acd_server_t *self = *self_p;
    self->stopping = true;   /* offers still ringing expire by the tick of another instance */
    cc_loop_off_turn_end(cc_service_loop(self->svc), s_on_turn_end, self);
    cc_service_off(self->svc, self);
    if (self->router) acd_router_flush(self->router);   /* answer what was asked */
    cc_loop_timer_close(&self->tick);
    cc_loop_timer_close(&self->reload);
    cc_rpc_client_destroy(&self->gateway);
    cc_rpc_server_destroy(&self->rpc);
    acd_router_destroy(&self->router);
    acd_sessions_destroy(&self->sessions, 3000);   /* what the last operations wrote */
    free(self);
    *self_p = NULL;
}
