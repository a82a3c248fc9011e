/* os_reconcile: the reconciliation worker: list pages fetched with libcurl,
 * mapped by dialect, applied like webhooks. */
#define _GNU_SOURCE
#include "os_reconcile.h"
#include "os_dialects.h"
#include "os_webhook.h"
#include "cc/cc_log.h"
#include "cc/cc_pg.h"
#include "cc/cc_worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAGE (8 * 1024 * 1024)
#define MAX_PAGES 1000
#define BATCH 64                  /* events handed to apply at once */

struct _os_reconcile_t {
    os_reconcile_opts_t opts;
    char *db_url;
    cc_pg_t *pg;
    CURL *curl;
    cc_worker_t *worker;       /* polls on its own thread */
    cc_metric_t *m_applied, *m_unchanged, *m_refused, *m_failed;
};

typedef struct { char *data; size_t len; bool over; } s_buf_t;

/* The paging headers of a list answer: Shopify's Link, WooCommerce's
 * X-WP-TotalPages. */
typedef struct { char link[2048]; int total_pages; } s_paging_t;

static size_t
s_header(char *data, size_t size, size_t n, void *arg)
{
    s_paging_t *pg = arg;
    size_t len = size * n;
    char line[2100];
    if (len >= sizeof line) return len;
    memcpy(line, data, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "link:", 5) == 0) snprintf(pg->link, sizeof pg->link, "%s", line + 5);
    else if (strncasecmp(line, "x-wp-totalpages:", 16) == 0) pg->total_pages = atoi(line + 16);
    return len;
}

/* The URL marked rel="next" in a Link header value ('<url>; rel="next",
 * <url2>; rel="previous"'), or NULL. Caller frees. */
static char *
s_link_next(const char *link)
{
    for (const char *p = link; (p = strchr(p, '<')) != NULL;) {
        const char *end = strchr(p, '>');
        if (!end) return NULL;
        const char *params = end + 1, *stop = strchr(params, ',');
        size_t plen = stop ? (size_t) (stop - params) : strlen(params);
        char rel[256];
        snprintf(rel, sizeof rel, "%.*s", (int) (plen < sizeof rel ? plen : sizeof rel - 1), params);
        if (strstr(rel, "rel=\"next\"") || strstr(rel, "rel=next")) {
            char *url = strndup(p + 1, (size_t) (end - p - 1));
            if (!url) abort();
            return url;
        }
        p = end + 1;
    }
    return NULL;
}

static size_t
s_collect(char *data, size_t size, size_t n, void *arg)
{
    s_buf_t *b = arg;
    size_t add = size * n;
    if (b->len + add > MAX_PAGE) {
        b->over = true;
        return 0;
    }
    char *p = realloc(b->data, b->len + add + 1);
    if (!p) abort();
    b->data = p;
    memcpy(b->data + b->len, data, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* GETs url. Returns the HTTP status (0: no answer, reason in err) with the
 * body in *body (caller frees). */
static long
s_get(os_reconcile_t *self, const char *url, const char *dialect, const char *token, char **body, s_paging_t *paging,
      char *err, size_t cap)
{
    s_buf_t b = { 0 };
    memset(paging, 0, sizeof *paging);
    CURL *c = self->curl;
    curl_easy_reset(c);
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    char auth[600];
    if (*token && strcmp(dialect, "shopify") == 0) {
        snprintf(auth, sizeof auth, "X-Shopify-Access-Token: %s", token);
        h = curl_slist_append(h, auth);
    } else if (*token && strcmp(dialect, "woocommerce") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, token);
    } else if (*token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) self->opts.timeout_ms);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "callcenter-order-sync");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, paging);
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) snprintf(err, cap, "%s", b.over ? "page over 8 MiB" : curl_easy_strerror(rc));
    else curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    *body = b.data;
    return rc == CURLE_OK ? status : 0;
}

/* Applies a batch of events; adds to the counts and empties the batch.
 * Returns -1 when some event was not stored (a 5xx: storage busy or
 * unavailable; the pass must not move the cursor past it), else 0. A 4xx
 * (malformed or refused order) is counted and the pass goes on. */
static int
s_apply(os_reconcile_t *self, const char *platform, json_t *batch, int *applied, int *unchanged, int *refused)
{
    if (json_array_size(batch) == 0) return 0;
    json_t *all = self->opts.apply(self->opts.apply_arg, batch);
    json_array_clear(batch);
    int rc = 0;
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *r = json_array_get(all, i);
        const char *result = json_string_value(json_object_get(r, "result"));
        json_int_t code = json_integer_value(json_object_get(r, "code"));
        if (code != 200) {
            const char *why = json_string_value(json_object_get(r, "error"));
            if (code >= 500) {
                rc = -1;
                CC_WARN("reconciled order not stored", "platform=%s code=%lld reason=\"%s\"", platform,
                        (long long) code, why ? why : "");
            } else {
                (*refused)++;
                CC_WARN("reconciled order refused", "platform=%s reason=\"%s\"", platform, why ? why : "");
            }
        } else if (result && strcmp(result, "applied") == 0) {
            (*applied)++;
        } else {
            (*unchanged)++;
        }
    }
    json_decref(all);
    return rc;
}

/* Whether url names the same scheme, host and port as base (the configured
 * list URL): only there do the platform's credentials go. The host url
 * names goes in host (for the log). */
static bool
s_same_origin(const char *base, const char *url, char *host, size_t cap)
{
    CURLU *b = curl_url(), *u = curl_url();
    if (!b || !u) abort();
    char *bs = NULL, *bh = NULL, *bp = NULL, *us = NULL, *uh = NULL, *up = NULL;
    bool same = curl_url_set(b, CURLUPART_URL, base, 0) == CURLUE_OK && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
                && curl_url_get(b, CURLUPART_SCHEME, &bs, 0) == CURLUE_OK
                && curl_url_get(b, CURLUPART_HOST, &bh, 0) == CURLUE_OK
                && curl_url_get(b, CURLUPART_PORT, &bp, CURLU_DEFAULT_PORT) == CURLUE_OK
                && curl_url_get(u, CURLUPART_SCHEME, &us, 0) == CURLUE_OK
                && curl_url_get(u, CURLUPART_HOST, &uh, 0) == CURLUE_OK
                && curl_url_get(u, CURLUPART_PORT, &up, CURLU_DEFAULT_PORT) == CURLUE_OK
                && strcasecmp(bs, us) == 0 && strcasecmp(bh, uh) == 0 && strcmp(bp, up) == 0;
    snprintf(host, cap, "%s%s%s", uh ? uh : "(unparsable)", up ? ":" : "", up ? up : "");
    curl_free(bs);
    curl_free(bh);
    curl_free(bp);
    curl_free(us);
    curl_free(uh);
    curl_free(up);
    curl_url_cleanup(b);
    curl_url_cleanup(u);
    return same;
}

/* The URL of the first page: url with the dialect's "changed since" query. */
static char *
s_first_url(CURL *c, const char *url, const char *dialect, long long since)
{
    char value[40], *q = NULL;
    const char *key = "updated_since", *extra = "";
    if (strcmp(dialect, "standard") == 0) {
        snprintf(value, sizeof value, "%lld", since);
    } else {
        time_t t = (time_t) since;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(value, sizeof value, "%Y-%m-%dT%H:%M:%SZ", &tm);
        key = strcmp(dialect, "shopify") == 0 ? "updated_at_min" : "modified_after";
        extra = strcmp(dialect, "shopify") == 0 ? "&status=any&limit=250" : "&per_page=100&page=1";
    }
    char *v = curl_easy_escape(c, value, 0);
    if (asprintf(&q, "%s%c%s=%s%s", url, strchr(url, '?') ? '&' : '?', key, v, extra) < 0) abort();
    curl_free(v);
    return q;
}

/* One pass over a platform. Returns 0 when every page was read and every
 * order in them stored or refused as malformed (the cursor moves on), -1
 * otherwise (logged; the next pass asks again). */
static int
s_pass(os_reconcile_t *self, const char *platform, const char *dialect, const char *list_url, const char *token,
       long long since)
{
    char *url = s_first_url(self->curl, list_url, dialect, since), *body = NULL, err[256] = "";
    json_t *batch = json_array();
    int applied = 0, unchanged = 0, refused = 0, rc = 0, pages = 0;
    while (url && pages++ < MAX_PAGES && !cc_worker_stopping(self->worker)) {
        s_paging_t paging;
        long status = s_get(self, url, dialect, token, &body, &paging, err, sizeof err);
        if (status != 200) {
            CC_WARN("reconciliation page not read", "platform=%s status=%ld reason=\"%s\"", platform, status,
                    status ? "not 200" : err);
            rc = -1;
            break;
        }
        json_error_t jerr;
        json_t *page = json_loads(body ? body : "", 0, &jerr);
        json_t *orders = json_is_array(page) ? page : json_object_get(page, "orders");
        const char *next = json_string_value(json_object_get(page, "next"));
        if (!json_is_array(orders)) {
            CC_WARN("reconciliation page malformed", "platform=%s reason=\"no orders array\"", platform);
            json_decref(page);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < json_array_size(orders); i++) {
            json_t *o = json_array_get(orders, i);
            json_t *wrapped = strcmp(dialect, "standard") == 0 ? json_pack("{s:s,s:O}", "type", "order.updated", "data", o)
                                                              : json_incref(o);
            char *text = json_dumps(wrapped, JSON_COMPACT), why[256];
            json_decref(wrapped);
            const char *kind = NULL;
            json_t *data = NULL;
            const char *topic = strcmp(dialect, "shopify") == 0 ? "orders/updated" : "order.updated";
            int code = os_dialect_map(dialect, strcmp(dialect, "standard") == 0 ? NULL : topic, text, strlen(text),
                                      &kind, &data, why, sizeof why);
            free(text);
            if (code == 200 && os_check(kind, data, why, sizeof why)) {
                json_array_append_new(batch, os_event(kind, platform, NULL, data));
            } else {
                json_decref(data);
                refused++;
                CC_WARN("reconciled order refused", "platform=%s reason=\"%s\"", platform, why);
            }
            if (json_array_size(batch) == BATCH && s_apply(self, platform, batch, &applied, &unchanged, &refused))
                rc = -1;
        }
        free(url);
        url = NULL;
        if (strcmp(dialect, "standard") == 0) {
            if (next && *next && !(url = strdup(next))) abort();
        } else if (strcmp(dialect, "shopify") == 0) {
            url = s_link_next(paging.link);
        } else if (pages < paging.total_pages) {
            url = s_first_url(self->curl, list_url, dialect, since);
            char *at = strstr(url, "&page=1");
            if (at) {
                char *paged = NULL;
                if (asprintf(&paged, "%.*s&page=%d%s", (int) (at - url), url, pages + 1, at + 7) < 0) abort();
                free(url);
                url = paged;
            }
        }
        char host[300];
        if (url && !s_same_origin(list_url, url, host, sizeof host)) {
            CC_WARN("reconciliation next page refused", "platform=%s host=%s reason=\"not the list URL's scheme,"
                    " host and port\"", platform, host);
            free(url);
            url = NULL;
            rc = -1;
        }
        json_decref(page);
        free(body);
        body = NULL;
        if (rc) break;
    }
    bool unread = url != NULL;   /* MAX_PAGES reached or stopping, with a next page left */
    if (!rc && s_apply(self, platform, batch, &applied, &unchanged, &refused)) rc = -1;
    if (unread && !rc) {
        CC_WARN("reconciliation pass not finished", "platform=%s pages=%d reason=\"%s\"", platform, pages - 1,
                cc_worker_stopping(self->worker) ? "stopping" : "page limit");
        rc = -1;
    }
    free(url);
    free(body);
    json_decref(batch);
    cc_metric_add(self->m_applied, applied);
    cc_metric_add(self->m_unchanged, unchanged);
    cc_metric_add(self->m_refused, refused);
    if (rc) cc_metric_add(self->m_failed, 1);
    if (applied || refused) CC_INFO("reconciled", "platform=%s repaired=%d unchanged=%d refused=%d", platform, applied,
                                    unchanged, refused);
    return rc;
}

/* Every platform with a list endpoint, each under its advisory lock. */
static void
s_round(os_reconcile_t *self)
{
    PGresult *res = NULL;
    if (cc_pg_exec(self->pg, "rc_platforms", 0, NULL, &res)) {
        CC_ERROR("platforms not read for reconciliation", "error=\"%s\"", cc_pg_error(self->pg));
        return;
    }
    for (int i = 0; i < PQntuples(res) && !cc_worker_stopping(self->worker); i++) {
        const char *name = PQgetvalue(res, i, 0);
        const char *p[] = { name };
        PGresult *lock = NULL;
        if (cc_pg_exec(self->pg, "rc_lock", 1, p, &lock) || strcmp(PQgetvalue(lock, 0, 0), "t") != 0) {
            PQclear(lock);
            continue;   /* another instance is on it */
        }
        PQclear(lock);
        long long started = atoll(PQgetvalue(res, i, 5));
        if (s_pass(self, name, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                   atoll(PQgetvalue(res, i, 4))) == 0) {
            char since[24];
            snprintf(since, sizeof since, "%lld", started - self->opts.overlap_s);
            const char *u[] = { name, since };
            if (cc_pg_exec(self->pg, "rc_done", 2, u, NULL))
                CC_ERROR("reconciliation cursor not saved", "platform=%s error=\"%s\"", name, cc_pg_error(self->pg));
        }
        cc_pg_exec(self->pg, "rc_unlock", 1, p, NULL);
    }
    PQclear(res);
}

static void
s_run(cc_worker_t *worker, void *arg)
{
    os_reconcile_t *self = arg;
    while (cc_worker_wait(worker, self->opts.every_ms, -1) == 0) s_round(self);
}

os_reconcile_t *
os_reconcile_new(const os_reconcile_opts_t *opts)
{
    os_reconcile_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->opts = *opts;
    self->db_url = strdup(opts->db_url);
    self->opts.db_url = self->db_url;
    self->pg = cc_pg_new(opts->db_url, opts->reconnect_ms, opts->metrics);
    cc_pg_statement(self->pg, "rc_platforms",
                    "SELECT name, dialect, reconcile_url, coalesce(reconcile_token, ''), reconcile_since,"
                    " extract(epoch FROM now())::bigint FROM commerce.platforms WHERE reconcile_url IS NOT NULL"
                    " ORDER BY name");
    cc_pg_statement(self->pg, "rc_lock", "SELECT pg_try_advisory_lock(hashtext('order-sync reconcile ' || $1))");
    cc_pg_statement(self->pg, "rc_unlock", "SELECT pg_advisory_unlock(hashtext('order-sync reconcile ' || $1))");
    cc_pg_statement(self->pg, "rc_done", "UPDATE commerce.platforms SET reconcile_since = greatest($2::bigint, 0)"
                                         " WHERE name = $1");
    const char *help = "Orders read from the platforms' list endpoints, by outcome";
    self->m_applied = cc_metrics_counter(opts->metrics, "order_sync_reconciled_total", "result=\"repaired\"", help);
    self->m_unchanged = cc_metrics_counter(opts->metrics, "order_sync_reconciled_total", "result=\"unchanged\"", help);
    self->m_refused = cc_metrics_counter(opts->metrics, "order_sync_reconciled_total", "result=\"refused\"", help);
    self->m_failed = cc_metrics_counter(opts->metrics, "order_sync_reconcile_failures_total", NULL,
                                        "Reconciliation passes that did not read every page");
    self->curl = curl_easy_init();
    if (!self->curl) {
        CC_ERROR("curl_easy_init failed", "component=reconcile");
        goto err;
    }
    self->worker = cc_worker_new("reconcile");
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
os_reconcile_destroy(os_reconcile_t **self_p)
{
    if (!self_p || !*self_p) return;
    os_reconcile_t *self = *self_p;
    cc_worker_destroy(&self->worker);   /* after its current pass */
    curl_easy_cleanup(self->curl);
    cc_pg_destroy(&self->pg);
    free(self->db_url);
    free(self);
    *self_p = NULL;
}
