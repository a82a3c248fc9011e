/* os_outbox: the outbox's rows written with a change, and the worker thread
 * that pushes them (libcurl) and records each outcome. */
#include "os_outbox.h"
#include "os_webhook.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"
#include "cc/cc_util.h"
#include "cc/cc_worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_CHANNEL "commerce_outbox"
/* The platform's due pushes, the head of each order's queue only. */
#define HEAD_OF_QUEUE \
    " o.delivered_at IS NULL AND p.endpoint IS NOT NULL AND p.push_gone_at IS NULL" \
    " AND NOT EXISTS (SELECT 1 FROM commerce.outbox e WHERE e.platform = o.platform AND e.subject = o.subject" \
    " AND e.delivered_at IS NULL AND e.id < o.id)"

static const struct { const char *name, *sql; } s_worker_stmts[] = {
    { "ob_take", "SELECT o.id, o.body, o.attempts, p.endpoint, coalesce(p.push_secret, p.secret), o.platform, o.subject"
                 " FROM commerce.outbox o JOIN commerce.platforms p ON p.name = o.platform"
                 " WHERE o.next_at <= now() AND" HEAD_OF_QUEUE
                 " ORDER BY o.next_at, o.id LIMIT 1 FOR UPDATE OF o SKIP LOCKED" },
    { "ob_next", "SELECT coalesce(ceil(extract(epoch FROM min(o.next_at) - now()) * 1000)::bigint, -1)"
                 " FROM commerce.outbox o JOIN commerce.platforms p ON p.name = o.platform"
                 " WHERE o.next_at > now() AND" HEAD_OF_QUEUE },
    { "ob_done", "UPDATE commerce.outbox SET delivered_at = now(), attempts = attempts + 1, last_status = $2::int,"
                 " last_error = '' WHERE id = $1::bigint" },
    { "ob_retry", "UPDATE commerce.outbox SET attempts = attempts + 1, last_status = $2::int, last_error = $3,"
                  " next_at = now() + $4::bigint * interval '1 millisecond' WHERE id = $1::bigint" },
    { "ob_dead", "WITH d AS (DELETE FROM commerce.outbox WHERE id = $1::bigint RETURNING *)"
                 " INSERT INTO commerce.outbox_dead (id, platform, type, subject, body, attempts, last_status, last_error,"
                 " created_at) SELECT id, platform, type, subject, body, attempts + 1, $2::int, $3, created_at FROM d" },
    { "ob_gone", "UPDATE commerce.platforms SET push_gone_at = now() WHERE name = $1" },
    { "ob_depth", "SELECT (SELECT count(*) FROM commerce.outbox WHERE delivered_at IS NULL),"
                  " (SELECT count(*) FROM commerce.outbox_dead)" },
    { "ob_purge", "DELETE FROM commerce.outbox WHERE delivered_at < now() - $1::int * interval '1 day'" },
};

struct _os_outbox_t {
    os_outbox_opts_t opts;
    char *db_url;
    cc_pg_t *pg;
    CURL *curl;
    int listen_pid;            /* backend that has LISTENed, 0 when none */
    bool failing;              /* "outbox not read" logged until it is read again */
    cc_worker_t *worker;       /* pushes on its own thread */
    cc_metric_t *m_delivered, *m_retried, *m_dead;
    cc_metric_t *g_waiting, *g_dead;   /* the database's, whichever instance reports it */
};

void
os_outbox_statements(cc_pg_t *pg)
{
    cc_pg_statement(pg, "ob_put",
                    "INSERT INTO commerce.outbox (platform, type, subject, body)"
                    " SELECT o.platform, $1, o.order_number, commerce.order_push_body($1, o.order_number,"
                    " coalesce($3::jsonb, '{}'::jsonb)) FROM commerce.orders o JOIN commerce.platforms p"
                    " ON p.name = o.platform WHERE o.order_number = $2 AND p.endpoint IS NOT NULL");
}

int
os_outbox_put(cc_pg_t *pg, const char *type, const char *order_number, const char *extra_json)
{
    const char *p[] = { type, order_number, extra_json };
    return cc_pg_exec(pg, "ob_put", 3, p, NULL);
}

int
os_outbox_replay(cc_pg_t *pg, long long id)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *p[] = { ids };
    cc_pg_statement(pg, "ob_replay",
                    "WITH d AS (DELETE FROM commerce.outbox_dead WHERE $1::bigint = 0 OR id = $1::bigint RETURNING *),"
                    " g AS (UPDATE commerce.platforms SET push_gone_at = NULL WHERE name IN (SELECT platform FROM d))"
                    " INSERT INTO commerce.outbox (id, platform, type, subject, body, created_at, last_status, last_error)"
                    " SELECT id, platform, type, subject, body, created_at, last_status, 'replayed after: ' || last_error"
                    " FROM d RETURNING id");
    PGresult *res = NULL;
    int rc = cc_pg_exec(pg, "ob_replay", 1, p, &res);
    if (rc) return rc;
    int n = PQntuples(res);
    PQclear(res);
    return n;
}

static size_t
s_discard(char *data, size_t size, size_t n, void *arg)
{
    (void) data;
    (void) arg;
    return size * n;
}

/* POSTs body to url. Returns the HTTP status (0 when there was no answer,
 * with the reason in err) and the Retry-After the server asked for. */
static long
s_post(os_outbox_t *self, const char *url, const char *secret, const char *msg_id, const char *body,
       long *retry_after_s, char *err, size_t cap)
{
    char stamp[24], sig[128], h_id[96], h_ts[64], h_sig[160];
    snprintf(stamp, sizeof stamp, "%lld", (long long) time(NULL));
    *retry_after_s = 0;
    err[0] = '\0';
    if (os_sign(secret, msg_id, stamp, body, strlen(body), sig, sizeof sig, false)) {
        snprintf(err, cap, "the platform's push secret is not usable (whsec_ followed by bad base64)");
        return 0;
    }
    snprintf(h_id, sizeof h_id, "webhook-id: %s", msg_id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %s", stamp);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, h_id);
    h = curl_slist_append(h, h_ts);
    h = curl_slist_append(h, h_sig);
    h = curl_slist_append(h, "Expect:");
    CURL *c = self->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) self->opts.timeout_ms);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "callcenter-order-sync");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(err, cap, "%s", curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_off_t ra = 0;
        if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) *retry_after_s = (long) ra;
        snprintf(err, cap, "HTTP %ld", status);
    }
    curl_slist_free_all(h);
    return status;
}

static bool
s_retryable(long status)
{
    return status == 0 || status >= 500 || status == 408 || status == 425 || status == 429;
}

/* Takes one due push, sends it, records the outcome. Returns 1 when one was
 * handled, 0 when none was due, -1 on a database failure (logged). */
static int
s_push_one(os_outbox_t *self)
{
    cc_pg_t *pg = self->pg;
    PGresult *res = NULL;
    if (cc_pg_begin(pg) || cc_pg_exec(pg, "ob_take", 0, NULL, &res)) {
        if (!self->failing) CC_ERROR("outbox not read", "error=\"%s\"", cc_pg_error(pg));
        self->failing = true;
        cc_pg_rollback(pg);
        return -1;
    }
    if (self->failing) CC_INFO("outbox read again", "component=outbox");
    self->failing = false;
    if (PQntuples(res) == 0) {
        PQclear(res);
        cc_pg_commit(pg);
        return 0;
    }
    char id[24], msg_id[32], platform[65], subject[65];
    snprintf(id, sizeof id, "%s", PQgetvalue(res, 0, 0));
    snprintf(msg_id, sizeof msg_id, "msg_%s", id);
    snprintf(platform, sizeof platform, "%s", PQgetvalue(res, 0, 5));
    snprintf(subject, sizeof subject, "%s", PQgetvalue(res, 0, 6));
    int attempts = atoi(PQgetvalue(res, 0, 2));
    long retry_after = 0;
    char err[256];
    long status = s_post(self, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4), msg_id, PQgetvalue(res, 0, 1),
                         &retry_after, err, sizeof err);
    PQclear(res);
    char st[16];
    snprintf(st, sizeof st, "%ld", status);
    int rc;
    if (status >= 200 && status < 300) {
        const char *p[] = { id, st };
        rc = cc_pg_exec(pg, "ob_done", 2, p, NULL);
        cc_metric_add(self->m_delivered, 1);
        CC_DEBUG("push delivered", "platform=%s order=%s webhook_id=%s attempts=%d", platform, subject, msg_id,
                 attempts + 1);
    } else if (s_retryable(status) && attempts + 1 < self->opts.max_attempts) {
        long long delay = (long long) self->opts.backoff_ms << (attempts < 30 ? attempts : 30);
        if (retry_after * 1000LL > delay) delay = retry_after * 1000LL;
        if (delay > self->opts.backoff_max_ms) delay = self->opts.backoff_max_ms;
        char ds[24];
        snprintf(ds, sizeof ds, "%lld", delay);
        const char *p[] = { id, st, err, ds };
        rc = cc_pg_exec(pg, "ob_retry", 4, p, NULL);
        cc_metric_add(self->m_retried, 1);
        CC_WARN("push failed, will retry", "platform=%s order=%s webhook_id=%s attempt=%d reason=\"%s\" retry_in_ms=%lld",
                platform, subject, msg_id, attempts + 1, err, delay);
    } else {
        char why[320];
        snprintf(why, sizeof why, "%s%s", err, s_retryable(status) ? " (too many attempts)" : "");
        const char *p[] = { id, st, why };
        const char *g[] = { platform };
        rc = cc_pg_exec(pg, "ob_dead", 3, p, NULL);
        if (!rc && status == 410) rc = cc_pg_exec(pg, "ob_gone", 1, g, NULL);
        cc_metric_add(self->m_dead, 1);
        CC_ERROR("push given up: dead letter", "platform=%s order=%s webhook_id=%s attempts=%d reason=\"%s\"%s",
                 platform, subject, msg_id, attempts + 1, why,
                 status == 410 ? " platform_pushes=stopped_until_replay" : "");
    }
    if (rc || cc_pg_commit(pg)) {
        /* Sent but not recorded: it goes again with the same webhook-id, which
         * the platform de-duplicates. */
        CC_ERROR("push outcome not recorded", "platform=%s webhook_id=%s error=\"%s\"", platform, msg_id,
                 cc_pg_error(pg));
        cc_pg_rollback(pg);
        return -1;
    }
    return 1;
}

/* Milliseconds until the next push is due, or -1 when none is waiting. */
static long long
s_next_ms(os_outbox_t *self)
{
    PGresult *res = NULL;
    if (cc_pg_exec(self->pg, "ob_next", 0, NULL, &res)) return -1;
    long long ms = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    return ms;
}

/* True when a notification is already queued (drained). LISTENs again
 * after a reconnect. */
static bool
s_notified(os_outbox_t *self)
{
    PGconn *conn = cc_pg_conn(self->pg);
    if (!conn || PQstatus(conn) != CONNECTION_OK) return false;
    if (PQbackendPID(conn) != self->listen_pid) {
        if (cc_pg_run(self->pg, "LISTEN " LISTEN_CHANNEL, NULL)) return false;
        self->listen_pid = PQbackendPID(conn);
    }
    bool any = false;
    PQconsumeInput(conn);
    for (PGnotify *n; (n = PQnotifies(conn)) != NULL;) {
        PQfreemem(n);
        any = true;
    }
    return any;
}

/* Sleeps up to ms, waking for a notification or destroy. */
static void
s_wait(os_outbox_t *self, long long ms)
{
    if (s_notified(self)) return;
    PGconn *conn = cc_pg_conn(self->pg);
    int fd = conn && PQstatus(conn) == CONNECTION_OK && self->listen_pid ? PQsocket(conn) : -1;
    if (cc_worker_wait(self->worker, (int) ms, fd) == 1) s_notified(self);
}

/* Forgets pushes delivered more than keep_days ago (at start, then hourly). */
static void
s_purge(os_outbox_t *self, int64_t *last_ms)
{
    int64_t now = cc_mono_ms();
    if (*last_ms && now - *last_ms < 3600 * 1000) return;
    *last_ms = now;
    char days[16];
    snprintf(days, sizeof days, "%d", self->opts.keep_days);
    const char *p[] = { days };
    PGresult *res = NULL;
    if (cc_pg_exec(self->pg, "ob_purge", 1, p, &res)) {
        CC_WARN("delivered pushes not purged", "error=\"%s\"", cc_pg_error(self->pg));
        return;
    }
    const char *n = PQcmdTuples(res);
    if (n && atoi(n) > 0) CC_INFO("delivered pushes purged", "rows=%s older_than_days=%d", n, self->opts.keep_days);
    PQclear(res);
}

/* Pushes waiting and dead letters, for /metrics (at most once a second). */
static void
s_depth(os_outbox_t *self, int64_t *last_ms)
{
    int64_t now = cc_mono_ms();
    if (!self->g_waiting || now - *last_ms < 1000) return;
    *last_ms = now;
    PGresult *res = NULL;
    if (cc_pg_exec(self->pg, "ob_depth", 0, NULL, &res) == 0 && PQntuples(res) == 1) {
        cc_metric_set(self->g_waiting, atoll(PQgetvalue(res, 0, 0)));
        cc_metric_set(self->g_dead, atoll(PQgetvalue(res, 0, 1)));
    }
    PQclear(res);
}

static void
s_run(cc_worker_t *worker, void *arg)
{
    os_outbox_t *self = arg;
    int64_t purged_ms = 0, depth_ms = 0;
    while (!cc_worker_stopping(worker)) {
        s_purge(self, &purged_ms);
        s_depth(self, &depth_ms);
        int rc = s_push_one(self);
        if (rc == 1) continue;
        long long wait = self->opts.poll_ms;
        if (rc == 0) {
            long long next = s_next_ms(self);
            if (next >= 0 && next < wait) wait = next;
        }
        s_wait(self, wait);
    }
}

os_outbox_t *
os_outbox_new(const os_outbox_opts_t *opts)
{
    os_outbox_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->opts = *opts;
    self->db_url = strdup(opts->db_url);
    self->opts.db_url = self->db_url;
    self->pg = cc_pg_new(opts->db_url, opts->reconnect_ms, opts->metrics);
    for (size_t i = 0; i < sizeof s_worker_stmts / sizeof *s_worker_stmts; i++)
        cc_pg_statement(self->pg, s_worker_stmts[i].name, s_worker_stmts[i].sql);
    self->curl = curl_easy_init();
    if (opts->metrics) {
        self->m_delivered = cc_metrics_counter(opts->metrics, "order_sync_pushes_total", "result=\"delivered\"",
                                               "Pushes to platforms, by outcome of the attempt");
        self->m_retried = cc_metrics_counter(opts->metrics, "order_sync_pushes_total", "result=\"retry\"",
                                             "Pushes to platforms, by outcome of the attempt");
        self->m_dead = cc_metrics_counter(opts->metrics, "order_sync_pushes_total", "result=\"dead\"",
                                          "Pushes to platforms, by outcome of the attempt");
        self->g_waiting = cc_metrics_gauge(opts->metrics, "order_sync_outbox_waiting", NULL,
                                           "Pushes not yet delivered (all instances)");
        self->g_dead = cc_metrics_gauge(opts->metrics, "order_sync_outbox_dead", NULL,
                                        "Dead letters waiting for an operator (tools/order-sync dead)");
    }
    if (!self->curl) {
        CC_ERROR("curl_easy_init failed", "component=outbox");
        goto err;
    }
    self->worker = cc_worker_new("outbox");
    if (!self->worker || cc_worker_start(self->worker, s_run, self)) goto err;
    return self;
err:
    cc_worker_destroy(&self->worker);
    if (self->curl) curl_easy_cleanup(self->curl);
    cc_pg_destroy(&self->pg);
    free(self->db_url);
    free(self);
    return NULL;
}

void
os_outbox_destroy(os_outbox_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_outbox_t *self = *self_p;
    cc_worker_destroy(&self->worker);   /* after its current push */
    curl_easy_cleanup(self->curl);
    cc_pg_destroy(&self->pg);
    free(self->db_url);
    free(self);
    *self_p = NULL;
}
