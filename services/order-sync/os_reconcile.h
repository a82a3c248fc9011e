/* os_reconcile: repairs the changes a platform's webhooks missed.
 *
 * A worker thread (its own PostgreSQL connection and HTTP client) polls the
 * list endpoint of every platform that has one (commerce.platforms
 * reconcile_url) every every_ms: the orders updated since the last pass
 * (minus an overlap), page by page, each mapped by the platform's dialect and
 * applied through the same path as its webhooks (os_check, then the writers),
 * so the version decides: a newer copy repairs, an older or equal one changes
 * nothing. One instance at a time works on a platform (an advisory lock). The
 * list formats:
 *   standard:    GET <url>?updated_since=<epoch s>: {"orders": [<data of an
 *                order.updated>...], "next": "<url of the next page>" | null}
 *   shopify:     GET <url>?updated_at_min=<ISO 8601>&status=any&limit=250:
 *                {"orders": [...]}, the next page in the Link header (rel="next")
 *   woocommerce: GET <url>?modified_after=<ISO 8601>&per_page=100&page=N: [...],
 *                pages up to X-WP-TotalPages
 * with the platform's reconcile_token as "Authorization: Bearer" (standard),
 * X-Shopify-Access-Token (shopify) or HTTP basic "key:secret" (woocommerce). */
#ifndef OS_RECONCILE_H
#define OS_RECONCILE_H

#include "cc/cc_metrics.h"

#include <jansson.h>

typedef struct _os_reconcile_t os_reconcile_t;

/* Applies events (a JSON array of {"kind", "platform", "event_id", "data"})
 * the way webhooks are applied. Returns their results (a new JSON array, one
 * {"code", "result" | "error"} per event, in order). Called on the worker. */
typedef json_t *(os_reconcile_apply_fn)(void *arg, json_t *events);

typedef struct {
    const char *db_url;
    int reconnect_ms;
    int every_ms;              /* between passes */
    int overlap_s;             /* each pass looks this far before the last one began */
    int timeout_ms;            /* per HTTP request */
    os_reconcile_apply_fn *apply;
    void *apply_arg;           /* outlives this */
    cc_metrics_t *metrics;
} os_reconcile_opts_t;

/* Starts the worker (curl_global_init() must have run). NULL when it
 * cannot start (logged). */
os_reconcile_t *os_reconcile_new(const os_reconcile_opts_t *opts);
/* Stops the worker after the page it is on. */
void os_reconcile_destroy(os_reconcile_t **self_p);

#endif
