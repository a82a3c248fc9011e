/* acd_sessions: the writer thread of acd.sessions (a czmq actor with its own
 * PostgreSQL connection, fed in order over an inproc PAIR socket). */
#include "acd_sessions.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_util.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _acd_sessions_t {
    char *db_url;
    int retry_ms;
    char endpoint[64];
    zsock_t *out;              /* the loop's end: writes and syncs in, syncs' answers back */
    zactor_t *actor;
    bool started;              /* set by the actor before it signals */
    uint64_t sync_seq;
};

/* The statements, by the name the messages carry. */
static const struct { const char *name, *sql; } s_statements[] = {
    { "login", "INSERT INTO acd.sessions (agent_id, extension, skills, queues, state, reason, since)"
               " VALUES ($1, $2, $3, $4, 'ready', '', now())"
               " ON CONFLICT (agent_id) DO UPDATE SET extension = EXCLUDED.extension, skills = EXCLUDED.skills,"
               " queues = EXCLUDED.queues, state = 'ready', reason = '', call_id = '', call_queue = '',"
               " since = now()" },
    { "state", "UPDATE acd.sessions SET state = $2, reason = $3, call_id = '', call_queue = '', since = now()"
               " WHERE agent_id = $1" },
    { "call", "UPDATE acd.sessions SET state = 'on_call', reason = '', call_id = $2, call_queue = $3, since = now()"
              " WHERE agent_id = $1" },
    { "call_ended", "UPDATE acd.sessions SET state = 'ready', reason = '', call_id = '', call_queue = '', since = now()"
                    " WHERE call_id = $1 AND state = 'on_call'" },
    { "end", "DELETE FROM acd.sessions WHERE agent_id = $1" },
    /* A callback done stays as a marker (done, kept a day at least) that a
     * late or repeated write (another instance's, a retry's) cannot undo. */
    { "cb_add", "INSERT INTO acd.callbacks (call_id, queue, number, prio, rank, enq_ms, expires_ms, customer, caller, skills,"
                " qenq_ms) VALUES ($1, $2, $3, $4::integer, $5::bigint, $6::bigint, $7::bigint, $8, $9, $10, $11::bigint)"
                " ON CONFLICT (call_id) DO UPDATE SET queue = EXCLUDED.queue, number = EXCLUDED.number,"
                " expires_ms = EXCLUDED.expires_ms WHERE NOT acd.callbacks.done" },
    { "cb_attempt", "UPDATE acd.callbacks SET attempts = greatest(attempts, $2::integer), hold_until_ms = $3::bigint"
                    " WHERE call_id = $1 AND NOT done" },
    { "cb_done", "INSERT INTO acd.callbacks (call_id, queue, number, rank, enq_ms, expires_ms, done)"
                 " VALUES ($1, '', '', 0, 0, (extract(epoch FROM now()) * 1000)::bigint + 86400000, true)"
                 " ON CONFLICT (call_id) DO UPDATE SET done = true,"
                 " expires_ms = greatest(acd.callbacks.expires_ms, EXCLUDED.expires_ms)" },
};
#define MAX_PARAMS 11

/* Runs one queued message: a write ("W", statement, parameters) or a sync
 * ("SYNC", seq: answered once everything before it is done). Returns 0 when
 * it is done (or dropped), CC_ECONN to try it again later. */
static int
s_apply(cc_pg_t *pg, zsock_t *in, zmsg_t *msg, bool failing)
{
    zframe_t *kind = zmsg_first(msg);
    if (zframe_streq(kind, "SYNC")) {
        char *seq = zframe_strdup(zmsg_next(msg));
        zstr_sendx(in, "SYNCED", seq, NULL);
        free(seq);
        return 0;
    }
    /* While failing, one quiet reconnect first (cc_pg logs every lost call). */
    if (failing && cc_pg_check(pg)) return CC_ECONN;
    char *name = zframe_strdup(zmsg_next(msg));
    const char *params[MAX_PARAMS];
    char *owned[MAX_PARAMS];
    int n = 0;
    for (zframe_t *f = zmsg_next(msg); f && n < MAX_PARAMS; f = zmsg_next(msg)) {
        owned[n] = zframe_strdup(f);
        params[n] = owned[n];
        n++;
    }
    int rc = cc_pg_exec(pg, name, n, params, NULL);
    if (rc && rc != CC_ECONN)
        CC_ERROR("session or callback not saved: refused", "statement=%s key=%s error=\"%s\"", name, n ? params[0] : "",
                 cc_pg_error(pg));
    for (int i = 0; i < n; i++) free(owned[i]);
    free(name);
    return rc == CC_ECONN ? CC_ECONN : 0;
}

static void
s_actor(zsock_t *pipe, void *arg)
{
    acd_sessions_t *self = arg;
    zsock_t *in = zsock_new(ZMQ_PAIR);
    if (in) {
        zsock_set_rcvhwm(in, 0);   /* never blocks the loop: what waits is queued here */
        zsock_set_sndhwm(in, 0);
    }
    cc_pg_t *pg = cc_pg_new(self->db_url, 0, NULL);
    for (size_t i = 0; i < sizeof s_statements / sizeof *s_statements; i++)
        cc_pg_statement(pg, s_statements[i].name, s_statements[i].sql);
    self->started = in && zsock_connect(in, "%s", self->endpoint) == 0;
    zsock_signal(pipe, 0);   /* zactor_new waits for this */
    if (!self->started) {
        zsock_destroy(&in);
        cc_pg_destroy(&pg);
        return;
    }
    cc_pg_check(pg);   /* connects now; a failure shows at the first write */
    zlistx_t *queue = zlistx_new();
    zpoller_t *poller = zpoller_new(pipe, in, NULL);
    bool failing = false, stop = false;
    int64_t retry_at = 0;
    while (!stop) {
        while (zsock_events(in) & ZMQ_POLLIN) {
            zmsg_t *m = zmsg_recv(in);
            if (m) zlistx_add_end(queue, m);
        }
        while (zlistx_size(queue) && cc_mono_ms() >= retry_at) {
            zmsg_t *m = zlistx_first(queue);
            if (s_apply(pg, in, m, failing) == CC_ECONN) {
                if (!failing)
                    CC_ERROR("agent sessions not saved: PostgreSQL unreachable; kept and retried", "waiting=%zu retry_ms=%d",
                             zlistx_size(queue), self->retry_ms);
                failing = true;
                retry_at = cc_mono_ms() + self->retry_ms;
                break;
            }
            if (failing) CC_INFO("agent sessions saved again", "waiting=%zu", zlistx_size(queue) - 1);
            failing = false;
            zlistx_detach_cur(queue);
            zmsg_destroy(&m);
            if (zsock_events(in) & ZMQ_POLLIN) break;   /* keep the order: take the new ones in behind */
        }
        int64_t wait = zlistx_size(queue) ? retry_at - cc_mono_ms() : -1;
        if (zlistx_size(queue) && wait < 0) wait = 0;
        void *which = zpoller_wait(poller, (int) wait);
        if (which == pipe) {
            char *cmd = zstr_recv(pipe);
            stop = !cmd || strcmp(cmd, "$TERM") == 0;
            zstr_free(&cmd);
        } else if (!which && zpoller_terminated(poller)) {
            stop = true;
        }
    }
    size_t lost = 0;
    for (zmsg_t *m = zlistx_first(queue); m; m = zlistx_next(queue)) {
        if (!zframe_streq(zmsg_first(m), "SYNC")) lost++;
        zmsg_destroy(&m);
    }
    if (lost) CC_ERROR("agent sessions not saved at shutdown: PostgreSQL unreachable", "writes=%zu", lost);
    zlistx_destroy(&queue);
    zpoller_destroy(&poller);
    zsock_destroy(&in);
    cc_pg_destroy(&pg);
}

acd_sessions_t *
acd_sessions_new(const char *db_url, int retry_ms)
{
    acd_sessions_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->db_url = strdup(db_url);
    if (!self->db_url) abort();
    self->retry_ms = retry_ms > 0 ? retry_ms : 500;
    snprintf(self->endpoint, sizeof self->endpoint, "inproc://acd-sessions-%p", (void *) self);
    self->out = zsock_new(ZMQ_PAIR);
    if (!self->out) goto err;
    zsock_set_sndhwm(self->out, 0);
    zsock_set_rcvhwm(self->out, 0);
    if (zsock_bind(self->out, "%s", self->endpoint) != 0) goto err;
    self->actor = zactor_new(s_actor, self);
    if (!self->actor || !self->started) goto err;
    return self;
err:
    CC_ERROR("agent session writer not started", "endpoint=%s", self->endpoint);
    acd_sessions_destroy(&self, 0);
    return NULL;
}

void
acd_sessions_destroy(acd_sessions_t **self_p, int drain_ms)
{
    if (!self_p || !*self_p) return;
    acd_sessions_t *self = *self_p;
    if (self->actor && self->started && drain_ms > 0) acd_sessions_sync(self, drain_ms);
    zactor_destroy(&self->actor);
    zsock_destroy(&self->out);
    free(self->db_url);
    free(self);
    *self_p = NULL;
}

/* Queues statement name with n text parameters. */
static void
s_write(acd_sessions_t *self, const char *name, int n, const char *const *params)
{
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "W");
    zmsg_addstr(m, name);
    for (int i = 0; i < n; i++) zmsg_addstr(m, params[i] ? params[i] : "");
    if (zmsg_send(&m, self->out) != 0) {
        CC_ERROR("agent session write not queued", "statement=%s key=%s", name, params[0]);
        zmsg_destroy(&m);
    }
}

void
acd_sessions_login(acd_sessions_t *self, const char *agent, const char *ext, const char *skills, const char *queues)
{
    const char *p[] = { agent, ext, skills, queues };
    s_write(self, "login", 4, p);
}

void
acd_sessions_state(acd_sessions_t *self, const char *agent, const char *state, const char *reason)
{
    const char *p[] = { agent, state, reason };
    s_write(self, "state", 3, p);
}

void
acd_sessions_call(acd_sessions_t *self, const char *agent, const char *call, const char *queue)
{
    const char *p[] = { agent, call, queue };
    s_write(self, "call", 3, p);
}

void
acd_sessions_call_ended(acd_sessions_t *self, const char *call)
{
    const char *p[] = { call };
    s_write(self, "call_ended", 1, p);
}

void
acd_sessions_end(acd_sessions_t *self, const char *agent)
{
    const char *p[] = { agent };
    s_write(self, "end", 1, p);
}

void
acd_sessions_callback(acd_sessions_t *self, const char *const fields[11])
{
    s_write(self, "cb_add", 11, fields);
}

void
acd_sessions_callback_attempt(acd_sessions_t *self, const char *call, const char *attempts, const char *hold_until_ms)
{
    const char *p[] = { call, attempts, hold_until_ms };
    s_write(self, "cb_attempt", 3, p);
}

void
acd_sessions_callback_done(acd_sessions_t *self, const char *call)
{
    const char *p[] = { call };
    s_write(self, "cb_done", 1, p);
}

int
acd_sessions_sync(acd_sessions_t *self, int timeout_ms)
{
    char seq[24];
    snprintf(seq, sizeof seq, "%llu", (unsigned long long) ++self->sync_seq);
    if (zstr_sendx(self->out, "SYNC", seq, NULL) != 0) return -1;
    int64_t deadline = cc_mono_ms() + timeout_ms;
    zpoller_t *poller = zpoller_new(self->out, NULL);
    int rc = -1;
    for (;;) {
        int64_t left = deadline - cc_mono_ms();
        if (left < 0 || !zpoller_wait(poller, (int) left)) break;
        char *kind = NULL, *got = NULL;
        zstr_recvx(self->out, &kind, &got, NULL);
        bool done = kind && got && strcmp(kind, "SYNCED") == 0 && strcmp(got, seq) == 0;   /* else an older sync's */
        zstr_free(&kind);
        zstr_free(&got);
        if (done) {
            rc = 0;
            break;
        }
    }
    zpoller_destroy(&poller);
    return rc;
}
