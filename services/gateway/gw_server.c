/* gw_server: wires the media thread to the service: CDRs and phones' bindings to PostgreSQL,
 * health, metrics, shutdown. */
#include "gw_server.h"
#include "gw_media.h"
#include "gw_tts.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "cc/cc_rpc.h"
#include "queue.pb-c.h"
#include "media.pb-c.h"

#include <czmq.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDR_ENDPOINT "inproc://gateway-cdr"
#define MAX_BACKLOG 100000

static const cc_cfg_key_t s_keys[] = {
    { "GATEWAY_ADMIN_PORT", CC_CFG_INT, 0, 65535, NULL, 0, "Admin HTTP port (/healthz, /metrics)" },
    { "GATEWAY_SIP_HOST", CC_CFG_STR, 0, 64, NULL, CC_CFG_NONEMPTY, "Address SIP (UDP and TCP) and RTP listen on" },
    { "GATEWAY_SIP_PORT", CC_CFG_INT, 1, 65535, NULL, 0, "SIP port, UDP and TCP" },
    { "GATEWAY_RTP_MIN", CC_CFG_INT, 1024, 65534, NULL, 0, "Lowest RTP port" },
    { "GATEWAY_RTP_MAX", CC_CFG_INT, 1025, 65535, NULL, 0, "Highest RTP port" },
    { "GATEWAY_TRUNKS", CC_CFG_STR, 0, 1024, NULL, CC_CFG_NONEMPTY, "Sources allowed to send INVITEs: addresses or CIDRs, comma-separated" },
    { "GATEWAY_MAX_CALLS", CC_CFG_INT, 1, 100000, NULL, 0, "Call legs at once (a bridged call is two; originate counts); more get 503" },
    { "GATEWAY_INVITES_PER_S", CC_CFG_INT, 1, 100000, NULL, 0, "New INVITEs per second per source; more get 503" },
    { "GATEWAY_ROUTES", CC_CFG_STR, 0, 4096, NULL, CC_CFG_NONEMPTY,
      "Dialled number (exact, prefix*, or *) to action: play:PROMPT (loop), announce:PROMPT (once, then hang up),"
      " queue:NAME[/MUSIC], or wait:MUSIC (rings until media.answer); @MS rings that long first" },
    { "GATEWAY_PROMPTS_DIR", CC_CFG_STR, 0, 1024, NULL, CC_CFG_NONEMPTY, "Folder of 8 kHz mono WAV prompts (relative to the defaults file)" },
    { "GATEWAY_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "Endpoint of the gateway's request server (gateway.offer...)" },
    { "GATEWAY_ACD_RPC", CC_CFG_STR, 0, 255, NULL, CC_CFG_NONEMPTY, "acd's request endpoint, for queue routes" },
    { "GATEWAY_RING_MS", CC_CFG_INT, 1000, 300000, NULL, 0, "How long an agent's phone rings before the offer is given back" },
    { "GATEWAY_ACD_TIMEOUT_MS", CC_CFG_INT, 100, 60000, NULL, 0, "How long acd may take to accept a call before the fallback" },
    { "GATEWAY_FALLBACK_QUEUE", CC_CFG_STR, 0, 64, NULL, 0, "Queue tried when a call's own queue refuses it; empty: none" },
    { "GATEWAY_RECORDINGS_DIR", CC_CFG_STR, 0, 1024, NULL, CC_CFG_NONEMPTY,
      "Folder media.record writes WAV files to (relative to the defaults file)" },
    { "GATEWAY_TTS_DIR", CC_CFG_STR, 0, 1024, NULL, CC_CFG_NONEMPTY,
      "Cache folder of rendered speech (media.say), relative to the defaults file" },
    { "GATEWAY_FALLBACK_PROMPT", CC_CFG_STR, 0, 128, NULL, CC_CFG_NONEMPTY,
      "Prompt a caller hears once before being released because no queue took the call" },
    { "GATEWAY_TRUNK_OUT", CC_CFG_STR, 0, 128, NULL, 0,
      "host:port numbers are dialled through (media.originate, media.transfer, callbacks); empty: none" },
    { "GATEWAY_DIAL_RING_MS", CC_CFG_INT, 1000, 300000, NULL, 0, "How long an outbound call rings before it is given up" },
    { "GATEWAY_HOLD_MUSIC", CC_CFG_STR, 0, 128, NULL, CC_CFG_NONEMPTY, "Prompt a held caller hears (media.hold without music)" },
    { "GATEWAY_MEDIA_PRIORITY", CC_CFG_INT, 0, 99, NULL, 0,
      "Real-time priority (SCHED_RR) of the SIP and RTP thread, 1-99; 0: none. Needs CAP_SYS_NICE, else a warning" },
    { "GATEWAY_NONCE_TTL_S", CC_CFG_INT, 1, 3600, NULL, 0,
      "How long a REGISTER digest nonce stays good; older ones get a fresh challenge (stale=true)" },
    { "GATEWAY_MIN_EXPIRES_S", CC_CFG_INT, 1, 3600, NULL, 0,
      "Shortest registration granted; a REGISTER asking less gets 423 Interval Too Brief with Min-Expires" },
    CC_CFG_END
};

const cc_service_def_t gw_service_def = {
    .name = "gateway",
    .summary = "Telephony gateway: SIP trunks, RTP media, DTMF, CDRs.",
    .keys = s_keys,
    .admin_port_key = "GATEWAY_ADMIN_PORT",
    .needs = CC_NEED_BUS | CC_NEED_PG,
};

struct _gw_server_t {
    cc_service_t *svc;
    gw_media_t *media;
    zsock_t *cdr;
    gw_cdr_t *backlog;         /* CDRs not stored yet (database down) */
    size_t nbacklog;
    uv_timer_t *timer;
    cc_metric_t *m_calls, *m_cdrs, *m_cdr_refused, *m_cdr_backlog, *m_regs, *m_reg_refused, *m_rtcp_in, *m_late_p99,
        *m_frames;
    cc_rpc_server_t *rpc;
    cc_rpc_client_t *acd;
    int ring_ms, acd_timeout_ms;
    char fallback_queue[65];
    zhashx_t *ops;             /* token -> media request waiting for its end */
    uint64_t next_token;
    char tts_dir[1024];
    int renders;               /* speech being rendered on the thread pool */
    zhashx_t *bindings;        /* user -> binding_t not stored yet */
    bool bindings_told;        /* that they wait for the database: logged once an outage */
};

/* A binding on its way to telephony.registrations. */
typedef struct {
    gw_binding_t b;
    int64_t expires_at_us;     /* wall clock, fixed when the REGISTER was accepted */
} binding_t;

/* media.say on its way: rendered on the thread pool, then played. */
typedef struct {
    uv_work_t work;
    gw_server_t *server;
    cc_rpc_call_t *call;       /* NULL for a queue announcement: nobody waits */
    char call_id[64], text[1024], language[16];
    int rc;
} say_t;

typedef struct { cc_rpc_call_t *call; int kind; } media_wait_t;

typedef struct {
    gw_server_t *server;
    char call_id[64], agent[64], queue[64], caller[64];
    int type;
} pending_t;

static void s_acd(gw_server_t *self, int type, const char *method, const char *call_id, const char *agent,
                  const void *msg, const char *queue, const char *caller);

static void
s_enqueue(gw_server_t *self, const char *call_id, const char *queue, const char *caller)
{
    Cc__Enqueue e = CC__ENQUEUE__INIT;
    e.call_id = (char *) call_id;
    e.queue = (char *) queue;
    e.caller = (char *) caller;
    s_acd(self, GW_MSG_ENQUEUE, "acd.enqueue", call_id, NULL, &e.base, queue, caller);
}

/* The leg's row and every recording's, in one statement. */
static const char *s_insert =
    "WITH leg AS (INSERT INTO telephony.cdr (call_id, sip_call_id, direction, caller, dialled, source, codec, started_at,"
    " answered_at, ended_at, sip_cause, hangup_by, reason, rtp_sent, rtp_received, dtmf, instance, leg, recording)"
    " VALUES ($1, $2, $17, $3, $4, $5, $6, to_timestamp($7::float8 / 1e6),"
    " CASE WHEN $8::bigint = 0 THEN NULL ELSE to_timestamp($8::float8 / 1e6) END, to_timestamp($9::float8 / 1e6),"
    " $10::int, $11, $12, $13::bigint, $14::bigint, $15, $16, $18, $19) RETURNING id, call_id)"
    " INSERT INTO telephony.cdr_recording (cdr_id, call_id, seq, path, started_at, duration_ms)"
    " SELECT leg.id, leg.call_id, r.seq, r.path, to_timestamp(r.started::float8 / 1e6), r.ms"
    " FROM leg, unnest($20::text[], $21::bigint[], $22::bigint[]) WITH ORDINALITY AS r(path, started, ms, seq)";

/* Registrations: one row per user, written as REGISTERs are accepted. */
static const char *s_binding_put =
    "INSERT INTO telephony.registrations (username, contact, transport, source, expires_at, instance)"
    " VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1e6), $6)"
    " ON CONFLICT (username) DO UPDATE SET contact = EXCLUDED.contact, transport = EXCLUDED.transport,"
    " source = EXCLUDED.source, expires_at = EXCLUDED.expires_at, instance = EXCLUDED.instance, updated_at = now()";
static const char *s_bindings_live =
    "SELECT username, contact, transport, source, (extract(epoch FROM expires_at - now()) * 1000)::bigint"
    " FROM telephony.registrations WHERE expires_at > now()";

/* Stores every binding waiting (the newest of each user), removing what
 * is stored; stops when the database cannot be reached (logged once an
 * outage), the rest wait for the next try. One the database refuses (an
 * SQL error) is logged and dropped. */
static void
s_bindings_flush(gw_server_t *self)
{
    cc_pg_t *pg = cc_service_pg(self->svc);
    for (binding_t *w = zhashx_first(self->bindings); w; w = zhashx_first(self->bindings)) {
        int rc;
        if (w->b.expires_ms > 0) {
            char at[24];
            snprintf(at, sizeof at, "%" PRId64, w->expires_at_us);
            const char *p[] = { w->b.user, w->b.contact, w->b.transport, w->b.source, at, cc_service_instance(self->svc) };
            rc = cc_pg_exec(pg, "gw_binding_put", 6, p, NULL);
        } else {
            const char *p[] = { w->b.user };
            rc = cc_pg_exec(pg, "gw_binding_del", 1, p, NULL);
        }
        if (rc == CC_ECONN) {
            if (!self->bindings_told)
                CC_ERROR("registration not stored; kept for retry", "user=%s pending=%zu error=\"%s\"", w->b.user,
                         zhashx_size(self->bindings), cc_pg_error(pg));
            self->bindings_told = true;
            return;
        }
        if (rc) CC_ERROR("registration refused by the database; dropped", "user=%s error=\"%s\"", w->b.user, cc_pg_error(pg));
        char user[sizeof w->b.user];
        snprintf(user, sizeof user, "%s", w->b.user);   /* the key outlives the item it names */
        zhashx_delete(self->bindings, user);
    }
    self->bindings_told = false;
}

/* The timer's turn: stores the bindings waiting when the database answers
 * (checked first: one that went away never holds the loop for the
 * reconnect budget); says once an outage that they wait. */
static void
s_bindings_store(gw_server_t *self)
{
    cc_pg_t *pg = cc_service_pg(self->svc);
    if (cc_pg_check(pg) == 0) {
        s_bindings_flush(self);
    } else if (!self->bindings_told) {
        CC_ERROR("registration not stored; kept for retry", "pending=%zu error=\"%s\"", zhashx_size(self->bindings),
                 cc_pg_error(pg));
        self->bindings_told = true;
    }
}

/* A REGISTER accepted: its binding (or its removal) to be stored by the
 * next tick of the timer, which checks the connection first: a database
 * gone away never holds the loop for the reconnect budget. */
static void
s_binding_keep(gw_server_t *self, const gw_binding_t *b)
{
    binding_t *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->b = *b;
    w->expires_at_us = cc_wall_us() + b->expires_ms * 1000;
    zhashx_update(self->bindings, b->user, w);   /* replaces an older one of the user */
}

/* The stored bindings still live go to the registrar; expired ones are
 * deleted. */
static void
s_load_bindings(gw_server_t *self)
{
    cc_pg_t *pg = cc_service_pg(self->svc);
    PGresult *res = NULL;
    if (cc_pg_exec(pg, "gw_bindings_expired", 0, NULL, &res) == 0) {
        if (atoi(PQcmdTuples(res)) > 0) CC_INFO("expired registrations deleted", "count=%s", PQcmdTuples(res));
        PQclear(res);
        res = NULL;
    }
    if (cc_pg_exec(pg, "gw_bindings", 0, NULL, &res)) {
        CC_ERROR("stored registrations not loaded", "error=\"%s\"", cc_pg_error(pg));
        return;
    }
    int n = PQntuples(res);
    gw_binding_t *b = calloc((size_t) n + 1, sizeof *b);
    if (!b) abort();
    for (int i = 0; i < n; i++) {
        snprintf(b[i].user, sizeof b[i].user, "%s", PQgetvalue(res, i, 0));
        snprintf(b[i].contact, sizeof b[i].contact, "%s", PQgetvalue(res, i, 1));
        snprintf(b[i].transport, sizeof b[i].transport, "%s", PQgetvalue(res, i, 2));
        snprintf(b[i].source, sizeof b[i].source, "%s", PQgetvalue(res, i, 3));
        b[i].expires_ms = atoll(PQgetvalue(res, i, 4));
    }
    PQclear(res);
    gw_media_set_bindings(self->media, b, (size_t) n);
}

/* Stores one CDR. Returns 0 when done with it (stored, or refused by the
 * database for good: logged, counted and dropped, so that it never holds
 * back the CDRs behind it), CC_ECONN when the database could not be
 * reached (the caller keeps it for later). */
static int
s_store(gw_server_t *self, const gw_cdr_t *c)
{
    char started[24], answered[24], ended[24], cause[12], sent[24], received[24];
    snprintf(started, sizeof started, "%" PRId64, c->started_us);
    snprintf(answered, sizeof answered, "%" PRId64, c->answered_us);
    snprintf(ended, sizeof ended, "%" PRId64, c->ended_us);
    snprintf(cause, sizeof cause, "%d", c->sip_cause);
    snprintf(sent, sizeof sent, "%" PRIu64, c->rtp_sent);
    snprintf(received, sizeof received, "%" PRIu64, c->rtp_received);
    /* Array literals; recording names are letters, digits and -_. only,
     * quoted all the same. */
    char paths[GW_MAX_RECORDINGS * 164 + 4], starts[GW_MAX_RECORDINGS * 22 + 4], lengths[GW_MAX_RECORDINGS * 22 + 4];
    size_t np = 0, ns = 0, nl = 0;
    paths[np++] = starts[ns++] = lengths[nl++] = '{';
    for (int i = 0; i < c->nrecs && i < GW_MAX_RECORDINGS; i++) {
        const char *sep = i ? "," : "";
        np += (size_t) snprintf(paths + np, sizeof paths - np, "%s\"%s\"", sep, c->recs[i].path);
        ns += (size_t) snprintf(starts + ns, sizeof starts - ns, "%s%" PRId64, sep, c->recs[i].started_us);
        nl += (size_t) snprintf(lengths + nl, sizeof lengths - nl, "%s%" PRId64, sep, c->recs[i].ms);
    }
    snprintf(paths + np, sizeof paths - np, "}");
    snprintf(starts + ns, sizeof starts - ns, "}");
    snprintf(lengths + nl, sizeof lengths - nl, "}");
    const char *p[] = { c->call_id, c->sip_call_id, c->caller, c->dialled, c->source, c->codec, started, answered,
                        ended, cause, c->hangup_by, c->reason, sent, received, c->dtmf,
                        cc_service_instance(self->svc), c->direction[0] ? c->direction : "inbound",
                        c->leg[0] ? c->leg : "caller", c->recording, paths, starts, lengths };
    cc_pg_t *pg = cc_service_pg(self->svc);
    int rc = cc_pg_exec(pg, "gw_cdr", 22, p, NULL);
    if (rc == CC_ECONN) {
        CC_ERROR("CDR not stored; kept for retry", "call_id=%s error=\"%s\"", c->call_id, cc_pg_error(pg));
        return rc;
    }
    if (rc) {
        CC_ERROR("CDR refused by the database; dropped", "call_id=%s error=\"%s\"", c->call_id, cc_pg_error(pg));
        cc_metric_add(self->m_cdr_refused, 1);
        return 0;
    }
    cc_metric_add(self->m_cdrs, 1);
    return 0;
}

static void
s_keep(gw_server_t *self, const gw_cdr_t *c)
{
    if (self->nbacklog == MAX_BACKLOG) {
        CC_ERROR("CDR backlog full; oldest dropped", "call_id=%s", self->backlog[0].call_id);
        memmove(self->backlog, self->backlog + 1, (MAX_BACKLOG - 1) * sizeof *self->backlog);
        self->nbacklog--;
    }
    self->backlog = realloc(self->backlog, (self->nbacklog + 1) * sizeof *self->backlog);
    if (!self->backlog) abort();
    self->backlog[self->nbacklog++] = *c;
    cc_metric_set(self->m_cdr_backlog, (int64_t) self->nbacklog);
}

static void
s_wait_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* ------------------------------------------------------------ acd requests */

static void
s_on_acd_reply(void *arg, const Cc__Reply *reply)
{
    pending_t *p = arg;
    gw_server_t *self = p->server;
    bool already = reply->status == CC__STATUS__STATUS_CONFLICT && strstr(reply->error, "already queued");
    if (reply->status != CC__STATUS__STATUS_OK && self->media && !already) {
        if (p->type == GW_MSG_ENQUEUE && self->fallback_queue[0] && strcmp(p->queue, self->fallback_queue) != 0
            && reply->status != CC__STATUS__STATUS_TIMEOUT) {
            /* Refused by its queue (closed, full...): the default queue next. */
            CC_WARN("queue refused the call; trying the fallback queue", "call_id=%s queue=%s error=\"%s\"",
                    p->call_id, p->queue, reply->error);
            s_enqueue(self, p->call_id, self->fallback_queue, p->caller);
        } else if (p->type == GW_MSG_ENQUEUE) {
            /* No dead air: the caller hears why, then is released. */
            CC_WARN("no queue took the call; fallback message and release", "call_id=%s queue=%s error=\"%s\"",
                    p->call_id, p->queue, reply->error);
            gw_media_hangup(self->media, p->call_id,
                            reply->status == CC__STATUS__STATUS_TIMEOUT ? "acd did not answer" : "queue unavailable", true);
        } else if (p->type == GW_MSG_REJECTED && reply->status == CC__STATUS__STATUS_NOT_FOUND) {
            /* acd lost the call while the agent's phone rang (Redis lost its
             * data): the caller goes back to it, like the others after acd.rebuilt. */
            CC_WARN("acd no longer knew the call an agent gave back; waiting callers enqueued again",
                    "call_id=%s agent_id=%s", p->call_id, p->agent);
            gw_media_requeue_all(self->media);
        } else if (p->type == GW_MSG_REOFFER) {
            /* Not taken back (its queue is gone...): enqueued as any caller, with the fallbacks. */
            CC_WARN("acd did not take back a ringing call; enqueued again", "call_id=%s agent_id=%s error=\"%s\"",
                    p->call_id, p->agent, reply->error);
            s_enqueue(self, p->call_id, p->queue, p->caller);
        } else if (p->type == GW_MSG_ANSWERED) {
            CC_WARN("acd did not accept the answer; agent leg dropped", "call_id=%s agent_id=%s error=\"%s\"",
                    p->call_id, p->agent, reply->error);
            gw_media_drop_agent(self->media, p->call_id);
        } else {
            CC_WARN("acd request failed", "call_id=%s type=%d error=\"%s\"", p->call_id, p->type, reply->error);
        }
    }
    free(p);
}

static void
s_acd(gw_server_t *self, int type, const char *method, const char *call_id, const char *agent, const void *msg,
      const char *queue, const char *caller)
{
    pending_t *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->server = self;
    p->type = type;
    snprintf(p->call_id, sizeof p->call_id, "%s", call_id);
    snprintf(p->agent, sizeof p->agent, "%s", agent ? agent : "");
    snprintf(p->queue, sizeof p->queue, "%s", queue ? queue : "");
    snprintf(p->caller, sizeof p->caller, "%s", caller ? caller : "");
    uint8_t buf[1024];
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > sizeof buf) { free(p); return; }
    protobuf_c_message_pack(msg, buf);
    cc_rpc_call(self->acd, method, call_id, buf, len, type == GW_MSG_ENQUEUE ? self->acd_timeout_ms : 5000,
                s_on_acd_reply, p);
}

/* The end of a media operation: its reply. */
static void
s_media_done(gw_server_t *self, const gw_msg_t *msg)
{
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long) msg->token);
    media_wait_t *w = self->ops ? zhashx_lookup(self->ops, key) : NULL;
    if (!w) return;
    if (strcmp(msg->result, "gone") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_NOT_FOUND, "no such answered call", NULL, 0);
    } else if (strcmp(msg->result, "no_prompt") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_BAD_REQUEST, "prompt unreadable", NULL, 0);
    } else if (w->kind == GW_MEDIA_RECORD && strcmp(msg->result, "exists") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_CONFLICT, "recording file exists", NULL, 0);
    } else if (strcmp(msg->result, "bridged") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_CONFLICT, "the call is bridged: hold or unbridge it to play to it", NULL, 0);
    } else if (w->kind == GW_MEDIA_DTMF && strcmp(msg->result, "failed") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_UNAVAILABLE, "the digits could not be sent (SIP INFO refused)", NULL, 0);
    } else if (strcmp(msg->result, "other_gone") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_NOT_FOUND, "no such answered call to bridge with", NULL, 0);
    } else if (strcmp(msg->result, "conflict") == 0 || strcmp(msg->result, "not_bridged") == 0) {
        cc_rpc_reply(w->call, CC__STATUS__STATUS_CONFLICT,
                     strcmp(msg->result, "conflict") == 0 ? "the call is bridged or ringing already (or bridged by acd)"
                                                          : "the call is not bridged", NULL, 0);
    } else if (w->kind == GW_MEDIA_ORIGINATE && strcmp(msg->result, "answered") != 0) {
        /* busy, no_answer, not_found, rejected, unregistered, no_trunk, over_capacity, unreachable */
        cc_rpc_reply(w->call, CC__STATUS__STATUS_UNAVAILABLE, msg->result, NULL, 0);
    } else if (w->kind == GW_MEDIA_ORIGINATE) {
        Cc__MediaOriginated out = CC__MEDIA_ORIGINATED__INIT;
        out.call_id = (char *) msg->call_id;
        cc_rpc_reply_msg(w->call, &out);
    } else if (w->kind == GW_MEDIA_COLLECT) {
        Cc__MediaCollected out = CC__MEDIA_COLLECTED__INIT;
        out.call_id = (char *) msg->call_id;
        out.digits = (char *) msg->digits;
        out.ended_by = (char *) msg->result;
        cc_rpc_reply_msg(w->call, &out);
    } else {
        Cc__MediaDone out = CC__MEDIA_DONE__INIT;
        out.call_id = (char *) msg->call_id;
        out.result = (char *) msg->result;
        cc_rpc_reply_msg(w->call, &out);
    }
    zhashx_delete(self->ops, key);
}

/* A message from the media thread. */
static void
s_on_media_msg(void *arg, void *sock)
{
    gw_server_t *self = arg;
    zframe_t *f = zframe_recv(sock);
    if (!f) return;
    if (zframe_size(f) == sizeof(gw_msg_t)) {
        gw_msg_t msg;
        memcpy(&msg, zframe_data(f), sizeof msg);
        if (msg.type == GW_MSG_MEDIA_DONE) {
            s_media_done(self, &msg);
        } else if (msg.type == GW_MSG_CDR) {
            if (self->nbacklog || s_store(self, &msg.cdr)) s_keep(self, &msg.cdr);   /* keep the order */
        } else if (msg.type == GW_MSG_ENQUEUE) {
            s_enqueue(self, msg.call_id, msg.queue, msg.caller);
        } else if (msg.type == GW_MSG_REOFFER) {
            Cc__Enqueue e = CC__ENQUEUE__INIT;
            e.call_id = msg.call_id;
            e.queue = msg.queue;
            e.caller = msg.caller;
            e.ringing_agent_id = msg.agent;
            s_acd(self, GW_MSG_REOFFER, "acd.reoffer", msg.call_id, msg.agent, &e.base, msg.queue, msg.caller);
        } else if (msg.type == GW_MSG_BINDING) {
            s_binding_keep(self, &msg.binding);
        } else {
            Cc__CallRef r = CC__CALL_REF__INIT;
            r.call_id = msg.call_id;
            r.agent_id = msg.agent;
            r.reason = msg.reason;
            const char *method = msg.type == GW_MSG_ANSWERED ? "acd.answered"
                               : msg.type == GW_MSG_REJECTED ? "acd.rejected"
                               : msg.type == GW_MSG_CALLBACK_FAILED ? "acd.callback_failed" : "acd.ended";
            s_acd(self, msg.type, method, msg.call_id, msg.agent, &r.base, NULL, NULL);
        }
    }
    zframe_destroy(&f);
}

/* ------------------------------------------------------- gateway requests */

/* A number to dial: digits with an optional leading +, and * or #. */
static bool
s_number_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > 32) return false;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= '0' && n[i] <= '9') || n[i] == '*' || n[i] == '#' || (n[i] == '+' && i == 0))) return false;
    return true;
}

static void
s_offer(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    gw_server_t *self = arg;
    Cc__AgentOffer *o = cc__agent_offer__unpack(NULL, req->payload.len, req->payload.data);
    if (!o || !o->call_id[0] || !o->agent_id[0] || strlen(o->call_id) > 63 || strlen(o->agent_id) > 63
        || strlen(o->extension) > 63) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "malformed AgentOffer", NULL, 0);
    } else if (strcmp(o->kind, "callback") == 0 && !s_number_ok(o->callback_number)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "a callback wants a number (digits, +, *, #; up to 32)", NULL, 0);
    } else if (gw_media_offer(self->media, o->call_id, o->agent_id, o->extension, self->ring_ms,
                              strcmp(o->kind, "callback") == 0 ? o->callback_number : NULL)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "media thread unavailable", NULL, 0);
    } else {
        cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, NULL, 0);   /* ringing; the answer comes as acd.answered */
    }
    if (o) cc__agent_offer__free_unpacked(o, NULL);
}

/* gateway.withdraw (CallRef): acd gave the offer up; the agent's phone stops ringing. */
static void
s_withdraw(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    gw_server_t *self = arg;
    Cc__CallRef *r = cc__call_ref__unpack(NULL, req->payload.len, req->payload.data);
    if (!r || !r->call_id[0] || !r->agent_id[0] || strlen(r->call_id) > 63 || strlen(r->agent_id) > 63)
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id and an agent id", NULL, 0);
    else if (gw_media_withdraw(self->media, r->call_id, r->agent_id))
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "media thread unavailable", NULL, 0);
    else
        cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, NULL, 0);
    if (r) cc__call_ref__free_unpacked(r, NULL);
}

/* Hands op to the media thread; the reply waits for its end. */
static void
s_start_op(gw_server_t *self, cc_rpc_call_t *call, gw_media_op_t *op)
{
    op->token = ++self->next_token;
    media_wait_t *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->call = call;
    w->kind = op->kind;
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long) op->token);
    zhashx_insert(self->ops, key, w);
    if (gw_media_op(self->media, op)) {
        zhashx_delete(self->ops, key);
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "media thread unavailable", NULL, 0);
    }
}

static bool
s_id_fits(const char *s, size_t max)
{
    return s && *s && strlen(s) < max;
}

static void
s_media_play(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaPlay *m = cc__media_play__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_PLAY };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || m->n_files != 1 || !s_id_fits(m->files[0], sizeof op.prompt)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id and one prompt", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.prompt, sizeof op.prompt, "%s", m->files[0]);
        op.loop = m->loop;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_play__free_unpacked(m, NULL);
}

/* 0 (the default) or a length of 40 ms to 2 s. */
static bool
s_dtmf_ms_ok(uint32_t ms)
{
    return ms == 0 || (ms >= 40 && ms <= 2000);
}

static void
s_media_dtmf(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaDtmf *m = cc__media_dtmf__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_DTMF };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || !m->digits || !*m->digits || strlen(m->digits) > GW_DTMF_MAX
        || strspn(m->digits, "0123456789*#ABCD") != strlen(m->digits) || !s_dtmf_ms_ok(m->duration_ms)
        || !s_dtmf_ms_ok(m->gap_ms)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST,
                     "want a call id, 1-32 digits of 0-9 * # A-D, duration and gap of 40-2000 ms", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.digits, sizeof op.digits, "%s", m->digits);
        op.duration_ms = m->duration_ms ? (int) m->duration_ms : 100;
        op.gap_ms = m->gap_ms ? (int) m->gap_ms : 100;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_dtmf__free_unpacked(m, NULL);
}

static void
s_media_collect(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaCollect *m = cc__media_collect__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_COLLECT };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || m->max_digits < 1 || m->max_digits > 32
        || strlen(m->terminators) >= sizeof op.terminators || m->first_digit_timeout_ms < 100
        || m->first_digit_timeout_ms > 120000 || m->inter_digit_timeout_ms < 100 || m->inter_digit_timeout_ms > 60000
        || m->n_prompt_files > 1 || (m->n_prompt_files && !s_id_fits(m->prompt_files[0], sizeof op.prompt))) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST,
                     "want a call id, 1-32 digits, timeouts of 100 ms to 2 min, at most one prompt", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.terminators, sizeof op.terminators, "%s", m->terminators);
        if (m->n_prompt_files) snprintf(op.prompt, sizeof op.prompt, "%s", m->prompt_files[0]);
        op.max_digits = (int) m->max_digits;
        op.first_ms = (int) m->first_digit_timeout_ms;
        op.inter_ms = (int) m->inter_digit_timeout_ms;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_collect__free_unpacked(m, NULL);
}

static void
s_media_hangup(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaHangup *m = cc__media_hangup__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_HANGUP };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || (m->sip_cause && (m->sip_cause < 200 || m->sip_cause > 699))) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id and a cause of 200-699", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.reason, sizeof op.reason, "%s", m->reason);
        op.cause = (int) m->sip_cause;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_hangup__free_unpacked(m, NULL);
}

/* A recording's file name: letters, digits, '-', '_', '.', one optional
 * folder level, ending in .wav; nothing that climbs out of the folder. */
static bool
s_record_path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n < 5 || n > 150 || strcmp(p + n - 4, ".wav") != 0 || p[0] == '.' || strstr(p, "..")) return false;
    int slashes = 0;
    for (const char *c = p; *c; c++) {
        if (*c == '/') slashes++;
        else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
                   || *c == '-' || *c == '_' || *c == '.'))
            return false;
    }
    return slashes == 0;
}

static void
s_media_record(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaRecord *m = cc__media_record__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_RECORD };
    int cmds = m ? (m->pause != 0) + (m->resume != 0) + (m->stop != 0) : 0;
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || cmds > 1
        || (cmds == 0 && !s_record_path_ok(m->path)) || m->max_ms > 4 * 3600 * 1000) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST,
                     "want a call id and either a file name.wav (start) or one of pause, resume, stop", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.path, sizeof op.path, "%s", m->path);
        op.record_cmd = m->pause ? GW_REC_PAUSE : m->resume ? GW_REC_RESUME : m->stop ? GW_REC_STOP : GW_REC_START;
        op.max_ms = (int) m->max_ms;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_record__free_unpacked(m, NULL);
}

static void
s_say_render(uv_work_t *w)
{
    say_t *s = w->data;
    s->rc = gw_tts_render(s->server->tts_dir, s->text, s->language);
}

static void
s_say_rendered(uv_work_t *w, int status)
{
    say_t *s = w->data;
    gw_server_t *self = s->server;
    self->renders--;
    if (status || s->rc || !self->media) {
        if (s->call) cc_rpc_reply(s->call, CC__STATUS__STATUS_INTERNAL, "speech could not be rendered", NULL, 0);
    } else {
        gw_media_op_t op = { .kind = GW_MEDIA_PLAY, .then_music = !s->call };
        char name[64];
        gw_tts_name(s->text, s->language, name, sizeof name);
        snprintf(op.call_id, sizeof op.call_id, "%s", s->call_id);
        snprintf(op.prompt, sizeof op.prompt, "tts:%s", name);
        if (s->call) s_start_op(self, s->call, &op);   /* the reply comes when it has been said */
        else gw_media_op(self->media, &op);             /* an announcement: no one waits for it */
    }
    free(s);
}

static void
s_media_say(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    gw_server_t *self = arg;
    Cc__MediaSay *m = cc__media_say__unpack(NULL, req->payload.len, req->payload.data);
    say_t *s = calloc(1, sizeof *s);
    if (!s) abort();
    if (!m || !s_id_fits(m->call_id, sizeof s->call_id) || !s_id_fits(m->text, sizeof s->text)
        || !s_id_fits(m->language[0] ? m->language : "en", sizeof s->language)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id, text up to 1000 bytes, a language", NULL, 0);
        free(s);
    } else if (!gw_tts_supported(m->language[0] ? m->language : "en")) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "no voice for that language (en, zh, yue, de, fr, es)", NULL, 0);
        free(s);
    } else if (self->renders >= 64) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "speech renderer busy", NULL, 0);
        free(s);
    } else {
        s->server = self;
        s->call = call;
        s->work.data = s;
        snprintf(s->call_id, sizeof s->call_id, "%s", m->call_id);
        snprintf(s->text, sizeof s->text, "%s", m->text);
        snprintf(s->language, sizeof s->language, "%s", m->language[0] ? m->language : "en");
        self->renders++;
        uv_queue_work(cc_loop_uv(cc_service_loop(self->svc)), &s->work, s_say_render, s_say_rendered);
    }
    if (m) cc__media_say__free_unpacked(m, NULL);
}

/* gateway.announce: acd tells a waiting caller where they stand. Spoken
 * between the music; an agent answering cuts it off (the legs are bridged at
 * once). acd is answered at once: it does not wait for the speech. */
static void
s_announce(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    gw_server_t *self = arg;
    Cc__QueuePosition *m = cc__queue_position__unpack(NULL, req->payload.len, req->payload.data);
    if (!m || !s_id_fits(m->call_id, 64)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "malformed QueuePosition", NULL, 0);
    } else if (self->renders >= 64) {
        cc_rpc_reply(call, CC__STATUS__STATUS_UNAVAILABLE, "speech renderer busy", NULL, 0);
    } else {
        say_t *s = calloc(1, sizeof *s);
        if (!s) abort();
        s->server = self;
        s->work.data = s;
        snprintf(s->call_id, sizeof s->call_id, "%s", m->call_id);
        unsigned minutes = (m->estimated_wait_s + 59) / 60;
        snprintf(s->text, sizeof s->text, "You are number %u in the queue. The estimated wait is %u minute%s.",
                 m->position, minutes, minutes == 1 ? "" : "s");
        snprintf(s->language, sizeof s->language, "en");
        self->renders++;
        uv_queue_work(cc_loop_uv(cc_service_loop(self->svc)), &s->work, s_say_render, s_say_rendered);
        cc_rpc_reply(call, CC__STATUS__STATUS_OK, NULL, NULL, 0);
    }
    if (m) cc__queue_position__free_unpacked(m, NULL);
}

static void
s_media_answer(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaAnswer *m = cc__media_answer__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_ANSWER };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_answer__free_unpacked(m, NULL);
}

static void
s_media_bridge(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaBridge *m = cc__media_bridge__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_BRIDGE };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || !s_id_fits(m->other_call_id, sizeof op.other)
        || strcmp(m->call_id, m->other_call_id) == 0) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want two different call ids", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.other, sizeof op.other, "%s", m->other_call_id);
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_bridge__free_unpacked(m, NULL);
}

static void
s_media_unbridge(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaUnbridge *m = cc__media_unbridge__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_UNBRIDGE };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_unbridge__free_unpacked(m, NULL);
}

static void
s_media_hold(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaHold *m = cc__media_hold__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_HOLD };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || strlen(m->music) >= sizeof op.prompt) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id (and a music prompt name)", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.prompt, sizeof op.prompt, "%s", m->music);
        op.hold = m->hold;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_hold__free_unpacked(m, NULL);
}

static void
s_media_originate(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaOriginate *m = cc__media_originate__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_ORIGINATE };
    bool agent = m && m->agent_id[0];
    if (!m || (agent ? !s_id_fits(m->agent_id, sizeof op.destination - 6) : !s_number_ok(m->destination))
        || strlen(m->caller_id) >= sizeof op.caller_id || m->timeout_ms > 300000) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST,
                     "want a number (digits, +, *, #) or an agent id, a caller id, a timeout up to 5 min", NULL, 0);
    } else {
        if (agent) snprintf(op.destination, sizeof op.destination, "agent:%s", m->agent_id);
        else snprintf(op.destination, sizeof op.destination, "%s", m->destination);
        snprintf(op.caller_id, sizeof op.caller_id, "%s", m->caller_id);
        op.timeout_ms = (int) m->timeout_ms;
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_originate__free_unpacked(m, NULL);
}

/* A transfer's destination: queue:NAME, agent:ID or a number. */
static bool
s_destination_ok(const char *d)
{
    if (!d || strlen(d) >= 64) return false;
    if (strncmp(d, "queue:", 6) == 0 || strncmp(d, "agent:", 6) == 0) return d[6] != '\0';
    return s_number_ok(d);
}

static void
s_media_transfer(void *arg, cc_rpc_call_t *call, const Cc__Request *req)
{
    Cc__MediaTransfer *m = cc__media_transfer__unpack(NULL, req->payload.len, req->payload.data);
    gw_media_op_t op = { .kind = GW_MEDIA_TRANSFER };
    if (!m || !s_id_fits(m->call_id, sizeof op.call_id) || !s_destination_ok(m->destination)) {
        cc_rpc_reply(call, CC__STATUS__STATUS_BAD_REQUEST, "want a call id and queue:NAME, agent:ID or a number", NULL, 0);
    } else {
        snprintf(op.call_id, sizeof op.call_id, "%s", m->call_id);
        snprintf(op.destination, sizeof op.destination, "%s", m->destination);
        s_start_op(arg, call, &op);
    }
    if (m) cc__media_transfer__free_unpacked(m, NULL);
}

static const cc_rpc_method_t s_methods[] = {
    { "media.answer", s_media_answer, "MediaAnswer -> MediaDone: answers a ringing call (a wait route's)" },
    { "media.bridge", s_media_bridge, "MediaBridge -> MediaDone: relays RTP between two answered calls" },
    { "media.unbridge", s_media_unbridge, "MediaUnbridge -> MediaDone: splits a media.bridge; both back to their music" },
    { "media.hold", s_media_hold, "MediaHold -> MediaDone: music on hold, nothing relayed (hold=false: back)" },
    { "media.originate", s_media_originate,
      "MediaOriginate -> MediaOriginated: calls a number (trunk) or an agent; replies when answered, UNAVAILABLE if not" },
    { "media.transfer", s_media_transfer,
      "MediaTransfer -> MediaDone: blind transfer to queue:NAME (queued), agent:ID or a number (answered, busy...)" },
    { "gateway.announce", s_announce, "QueuePosition -> ok: speaks the caller's position and wait between the music" },
    { "media.say", s_media_say, "MediaSay -> MediaDone: speaks text (espeak-ng, cached by text) and replies when said" },
    { "media.record", s_media_record, "MediaRecord -> MediaDone: records the caller to WAV; pause, resume, stop" },
    { "gateway.offer", s_offer, "AgentOffer -> ok: rings the agent's registered phone for the caller" },
    { "gateway.withdraw", s_withdraw, "CallRef -> ok: acd gave the offer up; the agent's phone stops ringing" },
    { "media.play", s_media_play, "MediaPlay -> MediaDone: plays a prompt (in a loop: done at once; else when played)" },
    { "media.collect", s_media_collect, "MediaCollect -> MediaCollected: digits until max, a terminator or a timeout" },
    { "media.dtmf", s_media_dtmf,
      "MediaDtmf -> MediaDone: sends digits (RFC 4733, else SIP INFO) and replies when the last is sent" },
    { "media.hangup", s_media_hangup, "MediaHangup -> MediaDone: ends the call (BYE) with a cause and reason" },
    CC_RPC_METHODS_END
};

/* The phones' credentials (HA1 values) from telephony.sip_users. */
static void
s_load_users(gw_server_t *self)
{
    PGresult *res = NULL;
    if (cc_pg_exec(cc_service_pg(self->svc), "gw_users", 0, NULL, &res)) return;
    int n = PQntuples(res);
    gw_user_t *users = calloc((size_t) n + 1, sizeof *users);
    if (!users) abort();
    int good = 0;
    for (int i = 0; i < n; i++) {
        const char *hex = PQgetvalue(res, i, 1);
        if (strlen(hex) != 32) continue;
        snprintf(users[good].user, sizeof users[good].user, "%s", PQgetvalue(res, i, 0));
        for (int k = 0; k < 16; k++) {
            unsigned v;
            sscanf(hex + 2 * k, "%2x", &v);
            users[good].ha1[k] = (uint8_t) v;
        }
        good++;
    }
    PQclear(res);
    gw_media_set_users(self->media, users, (size_t) good);
}

/* Every second: stores what waited for the database, and the call gauge. */
static void
s_on_timer(uv_timer_t *t)
{
    gw_server_t *self = t->data;
    if (!self->media) return;
    cc_metric_set(self->m_calls, gw_media_calls(self->media));
    cc_metric_set(self->m_regs, gw_media_registrations(self->media));
    cc_metric_set(self->m_reg_refused, gw_media_register_refused(self->media));
    cc_metric_set(self->m_rtcp_in, gw_media_rtcp_received(self->media));
    uint64_t frames;
    cc_metric_set(self->m_late_p99, gw_media_send_late_us(self->media, 0.99, &frames));
    cc_metric_set(self->m_frames, (int64_t) frames);
    static int ticks;
    if (++ticks % 30 == 0) s_load_users(self);
    if (zhashx_size(self->bindings)) s_bindings_store(self);
    size_t done = 0;
    while (done < self->nbacklog && cc_pg_check(cc_service_pg(self->svc)) == 0 && s_store(self, &self->backlog[done]) == 0)
        done++;
    if (done) {
        memmove(self->backlog, self->backlog + done, (self->nbacklog - done) * sizeof *self->backlog);
        self->nbacklog -= done;
        cc_metric_set(self->m_cdr_backlog, (int64_t) self->nbacklog);
        CC_INFO("stored CDRs kept during an outage", "count=%zu left=%zu", done, self->nbacklog);
    }
}

/* acd lost its live state: the callers waiting here go back to it. */
static void
s_on_acd_rebuilt(void *arg, const Cc__Envelope *env)
{
    gw_server_t *self = arg;
    (void) env;
    CC_WARN("acd rebuilt its state; waiting callers enqueued again", "%s", "");
    if (self->media) gw_media_requeue_all(self->media);
}

/* SIGTERM: calls get a BYE and their CDRs are stored before the loop ends. */
static void
s_on_stop(void *arg)
{
    gw_server_t *self = arg;
    gw_media_stop(&self->media);
    while (self->cdr && (zsock_events(self->cdr) & ZMQ_POLLIN)) s_on_media_msg(self, self->cdr);
    if (zhashx_size(self->bindings)) s_bindings_store(self);
}

gw_server_t *
gw_server_new(cc_service_t *svc)
{
    gw_server_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->svc = svc;
    cc_cfg_t *cfg = cc_service_cfg(svc);
    cc_metrics_t *m = cc_service_metrics(svc);
    self->m_calls = cc_metrics_gauge(m, "gateway_calls", NULL, "Calls in progress");
    self->m_cdrs = cc_metrics_counter(m, "gateway_cdrs_stored_total", NULL, "CDR rows written");
    self->m_cdr_refused = cc_metrics_counter(m, "gateway_cdr_refused_total", NULL,
                                             "CDRs the database refused for good (dropped)");
    self->m_cdr_backlog = cc_metrics_gauge(m, "gateway_cdr_backlog", NULL, "CDRs waiting for the database");
    self->m_regs = cc_metrics_gauge(m, "gateway_registrations", NULL, "Phones registered");
    self->m_reg_refused = cc_metrics_counter(m, "gateway_register_refused_total", NULL,
                                             "REGISTERs refused: wrong password, malformed Authorization or Contact");
    self->m_rtcp_in = cc_metrics_counter(m, "gateway_rtcp_received_total", NULL, "RTCP packets received from peers");
    self->ops = zhashx_new();
    zhashx_set_destructor(self->ops, s_wait_free);
    self->bindings = zhashx_new();
    zhashx_set_destructor(self->bindings, s_wait_free);
    self->m_late_p99 = cc_metrics_gauge(m, "gateway_rtp_send_late_p99_us", NULL,
                                        "99th percentile of how late RTP frames left their 20 ms slot");
    self->m_frames = cc_metrics_gauge(m, "gateway_rtp_frames_sent", NULL, "RTP frames sent from prompts");
    self->ring_ms = (int) cc_cfg_int(cfg, "GATEWAY_RING_MS");
    self->acd_timeout_ms = (int) cc_cfg_int(cfg, "GATEWAY_ACD_TIMEOUT_MS");
    snprintf(self->fallback_queue, sizeof self->fallback_queue, "%s", cc_cfg_str(cfg, "GATEWAY_FALLBACK_QUEUE"));
    cc_pg_statement(cc_service_pg(svc), "gw_cdr", s_insert);
    cc_pg_statement(cc_service_pg(svc), "gw_users", "SELECT username, ha1 FROM telephony.sip_users WHERE enabled");
    cc_pg_statement(cc_service_pg(svc), "gw_binding_put", s_binding_put);
    cc_pg_statement(cc_service_pg(svc), "gw_binding_del", "DELETE FROM telephony.registrations WHERE username = $1");
    cc_pg_statement(cc_service_pg(svc), "gw_bindings", s_bindings_live);
    cc_pg_statement(cc_service_pg(svc), "gw_bindings_expired", "DELETE FROM telephony.registrations WHERE expires_at <= now()");
    self->cdr = zsock_new_pull("@" CDR_ENDPOINT);
    if (!self->cdr) goto err;
    zsock_set_rcvhwm(self->cdr, 0);
    cc_loop_add_zsock(cc_service_loop(svc), self->cdr, s_on_media_msg, self);
    char prompts[1024], recordings[1024];
    cc_cfg_resolve(cfg, cc_cfg_str(cfg, "GATEWAY_PROMPTS_DIR"), prompts, sizeof prompts);
    cc_cfg_resolve(cfg, cc_cfg_str(cfg, "GATEWAY_RECORDINGS_DIR"), recordings, sizeof recordings);
    cc_cfg_resolve(cfg, cc_cfg_str(cfg, "GATEWAY_TTS_DIR"), self->tts_dir, sizeof self->tts_dir);
    mkdir(self->tts_dir, 0755);
    if (cc_cfg_int(cfg, "GATEWAY_RTP_MIN") >= cc_cfg_int(cfg, "GATEWAY_RTP_MAX")) {
        CC_ERROR("GATEWAY_RTP_MIN must be below GATEWAY_RTP_MAX", "%s", "");
        goto err;
    }
    gw_media_opts_t o = {
        .sip_host = cc_cfg_str(cfg, "GATEWAY_SIP_HOST"), .sip_port = (int) cc_cfg_int(cfg, "GATEWAY_SIP_PORT"),
        .rtp_min = (int) cc_cfg_int(cfg, "GATEWAY_RTP_MIN"), .rtp_max = (int) cc_cfg_int(cfg, "GATEWAY_RTP_MAX"),
        .trunks = cc_cfg_str(cfg, "GATEWAY_TRUNKS"), .max_calls = (int) cc_cfg_int(cfg, "GATEWAY_MAX_CALLS"),
        .invites_per_s = (int) cc_cfg_int(cfg, "GATEWAY_INVITES_PER_S"), .routes = cc_cfg_str(cfg, "GATEWAY_ROUTES"),
        .prompts_dir = prompts, .bus_pub = cc_cfg_str(cfg, "CC_BUS_PUB"), .bus_hwm = (int) cc_cfg_int(cfg, "CC_BUS_HWM"),
        .cdr_endpoint = CDR_ENDPOINT, .service = "gateway", .instance = cc_service_instance(svc),
        .fallback = cc_cfg_str(cfg, "GATEWAY_FALLBACK_PROMPT"), .recordings_dir = recordings,
        .tts_dir = self->tts_dir, .trunk_out = cc_cfg_str(cfg, "GATEWAY_TRUNK_OUT"),
        .hold_music = cc_cfg_str(cfg, "GATEWAY_HOLD_MUSIC"), .dial_ring_ms = (int) cc_cfg_int(cfg, "GATEWAY_DIAL_RING_MS"),
        .media_priority = (int) cc_cfg_int(cfg, "GATEWAY_MEDIA_PRIORITY"),
        .nonce_ttl_s = (int) cc_cfg_int(cfg, "GATEWAY_NONCE_TTL_S"),
        .min_expires_s = (int) cc_cfg_int(cfg, "GATEWAY_MIN_EXPIRES_S"),
    };
    self->media = gw_media_start(&o);
    if (!self->media) goto err;
    s_load_users(self);
    s_load_bindings(self);
    cc_rpc_client_opts_t co = { .endpoint = cc_cfg_str(cfg, "GATEWAY_ACD_RPC"), .source = cc_service_instance(svc),
                                .retry_ms = (int) cc_cfg_int(cfg, "CC_RPC_RETRY_MS"),
                                .max_attempts = (int) cc_cfg_int(cfg, "CC_RPC_MAX_ATTEMPTS"), .metrics = m };
    self->acd = cc_rpc_client_new(&co);
    if (!self->acd) goto err;
    cc_rpc_client_attach(self->acd, cc_service_loop(svc));
    self->rpc = cc_rpc_server_new(cc_cfg_str(cfg, "GATEWAY_RPC"), s_methods, self, m);
    if (!self->rpc) goto err;
    cc_rpc_server_attach(self->rpc, cc_service_loop(svc));
    self->timer = cc_loop_timer(cc_service_loop(svc), s_on_timer, self, 1000);
    cc_service_on_stop(svc, s_on_stop, self);
    cc_service_on_event(svc, "acd.rebuilt", s_on_acd_rebuilt, self);
    return self;
err:
    gw_server_destroy(&self);
    return NULL;
}

void
gw_server_destroy(gw_server_t **self_p)
{
    if (!self_p || !*self_p) return;
    gw_server_t *self = *self_p;
    cc_service_off(self->svc, self);
    /* Speech still rendering finishes first: its callbacks use self. */
    while (self->renders) uv_run(cc_loop_uv(cc_service_loop(self->svc)), UV_RUN_ONCE);
    gw_media_stop(&self->media);
    if (self->cdr) {
        /* What the media thread said last: CDRs, and the ends of media
         * operations (their replies still go out). */
        while (zsock_events(self->cdr) & ZMQ_POLLIN) s_on_media_msg(self, self->cdr);
        cc_loop_remove_zsock(cc_service_loop(self->svc), self->cdr);
        zsock_destroy(&self->cdr);
    }
    zhashx_destroy(&self->ops);   /* the RPC server drops the calls they point to */
    cc_rpc_server_destroy(&self->rpc);
    cc_rpc_client_destroy(&self->acd);
    cc_loop_timer_close(&self->timer);
    if (self->nbacklog) CC_ERROR("CDRs not stored at shutdown", "count=%zu", self->nbacklog);
    if (self->bindings && zhashx_size(self->bindings))
        CC_ERROR("registrations not stored at shutdown", "count=%zu", zhashx_size(self->bindings));
    zhashx_destroy(&self->bindings);
    free(self->backlog);
    free(self);
    *self_p = NULL;
}
